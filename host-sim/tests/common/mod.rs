//! Helpers shared by the integration tests, which run the real `veil` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A public-domain photo with six faces (500×375), from dlib's examples.
pub fn face_jpg() -> PathBuf {
    repo().join("data/dlib/faces/2008_002470.jpg")
}

/// Centres of two faces in [`face_jpg`] and a point far from every face.
pub const FACE_CENTRES: [(u32, u32); 2] = [(301, 201), (76, 175)];
/// A background point.
pub const BACKGROUND: (u32, u32) = (470, 60);

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("veil-sim").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `veil` with arguments.
pub fn veil(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_veil"));
    c.args(args);
    c
}

/// Run and capture.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("running veil");
    eprintln!(
        "--- veil exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The ONNX Runtime library the binary will load.
pub fn ort_lib() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/onnxruntime/libonnxruntime.so"))
}

/// The CenterFace detector arguments, or `None` (with the reason printed) when the model cache
/// is absent. CI has it after `cargo xtask setup`.
pub fn centerface() -> Option<[&'static str; 2]> {
    let model = std::env::var_os("VEIL_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cache/models"))
        .join("centerface-dynamic.onnx");
    if !ort_lib().is_file() {
        println!("skipped: no ONNX Runtime library at {} (run `cargo xtask setup`)", ort_lib().display());
        return None;
    }
    if !model.is_file() {
        println!("skipped: no model at {} (run `cargo xtask setup`)", model.display());
        return None;
    }
    Some(["--detector", "centerface"])
}

/// The built-in int8 detector (the default; needs no set-up): for tests of I/O behaviour.
pub const BUILTIN: [&str; 2] = ["--detector", "builtin"];

/// True when `bin` runs.
pub fn have(bin: &str) -> bool {
    Command::new(bin).arg("-version").output().is_ok()
}

/// Decode an image file to RGB8.
pub fn rgb(path: &Path) -> image::RgbImage {
    image::ImageReader::open(path).unwrap().with_guessed_format().unwrap().decode().unwrap().to_rgb8()
}

/// True when `a` is within `tol` of `b` on every channel.
pub fn near(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

/// Magenta, the fill colour the tests use.
pub const MAGENTA: [u8; 3] = [255, 0, 255];

/// Every file under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut v = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut v);
    }
    v.sort();
    v
}

/// ffprobe one value per stream: `(codec_type, nb_frames, avg_frame_rate)`.
pub fn streams(path: &Path) -> Vec<(String, String, String)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames,avg_frame_rate",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), f.get(2).unwrap_or(&"").to_string(), f.get(1).unwrap_or(&"").to_string())
        })
        .collect()
}

/// Make a 2-second 25 fps H.264 + AAC video of the face photo.
pub fn make_face_video(dest: &Path, seconds: &str) {
    let st = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-loop", "1", "-framerate", "25", "-i"])
        .arg(face_jpg())
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", seconds])
        .args([
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            "-metadata",
            "title=veil-test",
        ])
        .arg(dest)
        .status()
        .unwrap();
    assert!(st.success());
}
