//! The device and the host give bit-identical results.
//!
//! Builds the MPS2-AN500 board binary (`firmware/app`), boots it in `qemu-system-arm` (Cortex-M7,
//! `-icount shift=0`), and runs the same pipeline with the same models, configuration and frame on
//! the host. Detections, redacted regions and the regions digest must match exactly; the second
//! frame must fail closed on the device with every byte redacted.

use std::path::{Path, PathBuf};
use std::process::Command;

use veil_core::frame::{FrameMut, Layout, PixelFormat};
use veil_core::nn::{BuiltinDetector, DetectorConfig};
use veil_core::pipeline::{Config, Pipeline};

#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

static FACE: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/int8/retinaface-mnet025.vlnn"));
static PLATE: &Aligned<[u8]> = &Aligned(*include_bytes!("../../models/int8/clp-det.vlnn"));
static CAMERA: &[u8] = include_bytes!("../../firmware/app/assets/frame-320x240.rgb");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Build the board binary and run it in QEMU; returns its semihosting output.
fn run_board() -> String {
    let app = repo().join("firmware/app");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .args(["build", "--release", "--quiet"])
        .current_dir(&app)
        // The outer `cargo test` sets these for the host; the board build must not inherit them.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .status()
        .expect("cargo runs");
    assert!(st.success(), "building firmware/app failed");
    let elf = app.join("target/thumbv7em-none-eabihf/release/veil-board-mps2");
    let out = Command::new("timeout")
        .arg("600")
        .arg("qemu-system-arm")
        .args(["-machine", "mps2-an500", "-cpu", "cortex-m7", "-nographic"])
        .args(["-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel"])
        .arg(&elf)
        .output()
        .expect("qemu-system-arm is installed (cargo xtask setup)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "board exited with {}:\n{text}", out.status);
    assert!(text.contains("VEIL-BOARD-OK"), "board output:\n{text}");
    text
}

#[test]
fn qemu_cortex_m7_matches_host_bit_for_bit() {
    let board = run_board();
    eprintln!("{board}");

    let mut arena = vec![0u8; 1536 * 1024];
    let det = BuiltinDetector::new(Some(&FACE.0), Some(&PLATE.0), &mut arena, DetectorConfig::default())
        .expect("models parse");
    let model_id = veil_core::Detector::model_id(&det);
    let mut p: Pipeline<_, 32> = Pipeline::new(det, Config::default()).unwrap();
    let mut buf = CAMERA.to_vec();
    let frame = FrameMut::new_checked(&mut buf, Layout::new(PixelFormat::Rgb888, 320, 240)).unwrap();
    let out = p.process(&mut || 0u64, frame);
    let rec = out.record;

    assert!(board.contains(&format!("veil-board model={}", hex(&model_id))));
    let frame0 = board.lines().find(|l| l.starts_with("frame0 ")).expect("frame0 line");
    assert!(frame0.contains("outcome=normal"), "{frame0}");
    assert!(frame0.contains(&format!("regions={} ", rec.regions)), "{frame0}");
    assert!(frame0.ends_with(&format!("digest={}", hex(&rec.regions_digest))), "{frame0}");
    assert!(rec.regions >= 1, "the sample frame has faces");

    let host_dets: Vec<String> = p
        .detections()
        .iter()
        .map(|d| {
            format!(
                "det {} {} {} {} {} {}",
                d.class.name(),
                d.rect.x0,
                d.rect.y0,
                d.rect.x1,
                d.rect.y1,
                d.score
            )
        })
        .collect();
    let board_dets: Vec<&str> = board.lines().filter(|l| l.starts_with("det ")).collect();
    assert_eq!(board_dets, host_dets, "detections differ between device and host");

    // The board's record differs from the host's only in the time field (virtual clock): compare
    // everything else byte for byte.
    let line = board.lines().find(|l| l.starts_with("record ")).expect("record line");
    let dev = line.trim_start_matches("record ");
    let host = hex(&rec.emit());
    assert_eq!(dev.len(), host.len());
    assert_eq!(dev[..16], host[..16], "magic, version, outcome, regions, seq");
    assert_eq!(dev[48..], host[48..], "model, config, regions digest, previous digest");

    let frame1 = board.lines().find(|l| l.starts_with("frame1 outcome")).expect("frame1 line");
    assert!(frame1.contains("outcome=fail-deadline regions=1 "), "{frame1}");
    assert!(board.contains("frame1 nonzero_bytes=0"), "the fail-closed frame is entirely black");
}
