//! `cargo xtask` — Veil's project tasks.
//!
//! - `cargo xtask ci`: everything CI checks, installing what it needs first (`setup`).
//! - `cargo xtask setup`: the thumbv7em target, Debian packages (qemu-system-arm, ffmpeg,
//!   libclang, Xvfb) and the ONNX Runtime library from the pinned `onnxruntime` wheel.
//! - `cargo xtask models [--write]`: rebuild the int8 model blobs from their pinned sources and
//!   check them against the committed ones.
//! - `cargo xtask fetch-data`: public test images and videos into `.cache/data/` (pinned sha256).
//! - `cargo xtask firmware`: build `veil-core` and the board binary for the Cortex-M7 target.
//! - `cargo xtask qemu`: boot the board binary on QEMU's MPS2-AN500 (Cortex-M7) and show its report,
//!   with instruction counts (`-icount shift=0`).
//! - `cargo xtask bench`: run the criterion benches.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

mod data;
mod fetch;
mod models;

const THUMB: &str = "thumbv7em-none-eabihf";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    match cmd {
        "ci" => ci(rest),
        "setup" => setup(),
        "models" => models::run(rest),
        "fetch-data" => data::run(rest),
        "firmware" => firmware(),
        "qemu" => qemu(),
        "bench" => bench(rest),
        "ort-path" => {
            println!("{}", ort_library()?.display());
            Ok(())
        }
        "help" | "-h" | "--help" => {
            println!(
                "cargo xtask <task>\n\n  ci         all CI checks (installs what it needs)\n  setup      install the target, Debian packages and ONNX Runtime\n  models     rebuild model blobs and compare (--write to update)\n  fetch-data public test images/videos into .cache/data (pinned)\n  firmware   build veil-core and the board binary for {THUMB}\n  qemu       boot the board binary on the MPS2-AN500 Cortex-M7 in QEMU\n  bench      run criterion benches\n  ort-path   print the ONNX Runtime library path"
            );
            Ok(())
        }
        other => bail!("unknown task `{other}`; try `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    fetch::repo_root()
}

/// Run a command in the repo root, echoing it, failing on a non-zero exit.
fn run(cmd: &mut Command) -> Result<()> {
    run_in(&root(), cmd)
}

/// Run a command in `dir` (the board crate must build from its own folder, so that its
/// `.cargo/config.toml` — target, linker script, QEMU runner — applies).
fn run_in(dir: &std::path::Path, cmd: &mut Command) -> Result<()> {
    cmd.current_dir(dir);
    eprintln!("xtask: $ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn have(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn ensure_target() -> Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match out {
        Ok(o) if String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == THUMB) => Ok(()),
        Ok(_) => run(Command::new("rustup").args(["target", "add", THUMB])),
        Err(e) => bail!("rustup not found ({e}); install the {THUMB} target by hand"),
    }
}

/// Debian packages the tests need, as (binary or file that proves it is installed, package).
const APT: &[(&str, &str)] = &[
    ("qemu-system-arm", "qemu-system-arm"),
    ("ffmpeg", "ffmpeg"),
    ("Xvfb", "xvfb"),
    ("xwd", "x11-apps"),
    ("/usr/lib/x86_64-linux-gnu/libclang-14.so.1", "libclang1-14"),
];

fn ensure_apt() -> Result<()> {
    let missing: Vec<&str> = APT
        .iter()
        .filter(
            |(probe, _)| {
                if probe.starts_with('/') {
                    !std::path::Path::new(probe).exists()
                } else {
                    !have(probe)
                }
            },
        )
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    let sudo = if have("sudo") && !is_root() { vec!["sudo"] } else { vec![] };
    let apt = |args: &[&str]| -> Result<()> {
        let mut all: Vec<&str> = sudo.clone();
        all.push("apt-get");
        all.extend_from_slice(args);
        run(Command::new(all[0]).args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive"))
    };
    apt(&["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(missing);
    apt(&args)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The ONNX Runtime shared library, extracted from the pinned wheel into `.cache/onnxruntime/`.
fn ort_library() -> Result<PathBuf> {
    let dir = fetch::cache_dir("onnxruntime")?;
    let lib = dir.join("libonnxruntime.so");
    if lib.exists() {
        return Ok(lib);
    }
    let wheel = fetch::pypi(&fetch::pins::ONNXRUNTIME)?;
    fetch::unzip_member(&wheel, "onnxruntime/capi/libonnxruntime.so.1.32.0", &lib)?;
    Ok(lib)
}

fn setup() -> Result<()> {
    ensure_target()?;
    ensure_apt()?;
    let lib = ort_library()?;
    eprintln!(
        "xtask: ONNX Runtime library at {} (set ORT_DYLIB_PATH to it, or let veil find it)",
        lib.display()
    );
    // Fetches the pinned model sources into .cache/models/ (the ONNX detectors of `veil`) and
    // checks that they still convert to the committed int8 blobs.
    models::run(&[])
}

fn firmware() -> Result<()> {
    ensure_target()?;
    run(cargo().args(["build", "-p", "veil-core", "--target", THUMB, "--release"]))?;
    run(cargo().args(["build", "-p", "veil-core", "--target", THUMB, "--release", "--features", "defmt"]))?;
    run_in(&board_dir(), cargo().args(["build", "--release"]))
}

fn board_dir() -> PathBuf {
    root().join("firmware/app")
}

fn qemu() -> Result<()> {
    ensure_target()?;
    ensure_apt()?;
    run_in(&board_dir(), cargo().args(["build", "--release"]))?;
    let elf = board_dir().join("target").join(THUMB).join("release/veil-board-mps2");
    run(Command::new("qemu-system-arm")
        .args(["-machine", "mps2-an500", "-cpu", "cortex-m7", "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(elf))
}

fn bench(rest: &[String]) -> Result<()> {
    run(cargo().args(["bench", "--workspace"]).args(rest))
}

fn ci(rest: &[String]) -> Result<()> {
    let quick = rest.iter().any(|a| a == "--quick");
    setup()?;
    let ort = ort_library()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    for manifest in ["firmware/app/Cargo.toml", "fuzz/Cargo.toml"] {
        run(cargo().args(["fmt", "--all", "--check", "--manifest-path", manifest]))?;
    }
    run(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    run_in(&board_dir(), cargo().args(["clippy", "--release", "--", "-D", "warnings"]))?;
    firmware()?;
    // The `log` feature must build too (the shim has three back-ends).
    run(cargo().args(["build", "-p", "veil-core", "--features", "log"]))?;
    run(cargo().args(["test", "--workspace"]).env("ORT_DYLIB_PATH", &ort))?;
    if !quick {
        // Fuzz targets are a separate workspace; their stable smoke tests run every target's body on
        // generated inputs.
        run(cargo().args(["test", "--manifest-path", "fuzz/Cargo.toml"]))?;
    }
    eprintln!("xtask: ci passed");
    Ok(())
}
