//! End-to-end frames per second of the host pipeline at 1920×1080, one ONNX Runtime thread:
//! - `frame_1080p/<detector>`: one RGB frame through detect → track → redact → evidence;
//! - `video_1080p/<detector>`: a 10-frame H.264 clip through ffmpeg decode → pipeline → ffmpeg
//!   encode (criterion's throughput is frames per second).
//!
//! Detectors: the built-in int8 engine (default input 320×256, and 640×360), CenterFace (full
//! size and 640×360) and RetinaFace through ONNX Runtime. The ONNX cases need the library and
//! models (`cargo xtask setup`) and are skipped with a message otherwise. Run with `cargo bench -p veil-sim --bench pipeline_fps`.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use veil_core::frame::{Layout, PixelFormat};
use veil_sim::cli::{Cli, Command as Sub, VideoFormat};
use veil_sim::engine::{Engine, Timing};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn engine(extra: &[&str]) -> Option<Engine> {
    let mut argv = vec!["veil", "anonymise", "--threads", "1"];
    argv.extend(extra);
    let Sub::Anonymise(a) = Cli::parse_from(argv).command else { return None };
    let det = match veil_sim::app::open_detector(&a.pipeline) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pipeline_fps: skipped {extra:?}: {e}");
            return None;
        }
    };
    Engine::new(det, a.config(false).ok()?, 1).ok()
}

fn bench(c: &mut Criterion) {
    let photo = image::open(repo().join("data/dlib/faces/2008_002470.jpg")).unwrap().to_rgb8();
    let big = image::imageops::resize(&photo, 1920, 1080, image::imageops::FilterType::Triangle);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("veil-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let png = dir.join("frame.png");
    big.save(&png).unwrap();
    let video = dir.join("clip1080.mp4");
    let have_video = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-loop", "1", "-framerate", "25", "-i"])
        .arg(&png)
        .args(["-frames:v", "10", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .is_ok_and(|s| s.success());

    let cases: [(&str, &[&str]); 5] = [
        ("builtin", &["--detector", "builtin"]),
        ("builtin-detect-640x360", &["--detector", "builtin", "--detect-scale", "640x360"]),
        ("centerface", &["--detector", "centerface"]),
        ("centerface-detect-640x360", &["--detector", "centerface", "--detect-scale", "640x360"]),
        ("retinaface", &["--detector", "retinaface"]),
    ];
    let mut g = c.benchmark_group("frame_1080p");
    g.sample_size(10).throughput(Throughput::Elements(1));
    for (name, args) in cases {
        let Some(mut e) = engine(args) else { continue };
        let layout = Layout::new(PixelFormat::Rgb888, 1920, 1080);
        let mut buf = big.as_raw().clone();
        g.bench_function(name, |b| {
            b.iter(|| {
                buf.copy_from_slice(big.as_raw());
                let mut s = e.stream("bench").unwrap();
                s.process(&mut buf, layout, &Timing::Synthetic(0)).unwrap().record
            })
        });
    }
    g.finish();

    if !have_video {
        eprintln!("pipeline_fps: skipped video benches: ffmpeg unavailable");
        return;
    }
    let mut g = c.benchmark_group("video_1080p");
    g.sample_size(10).throughput(Throughput::Elements(10));
    for (name, args) in cases {
        let Some(mut e) = engine(args) else { continue };
        let out = dir.join(format!("out-{name}.mp4"));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut s = e.stream("clip").unwrap();
                let bar = indicatif::ProgressBar::hidden();
                veil_sim::io_video::process_video(&video, Some(&out), &mut s, VideoFormat::Rgb24, &bar, None)
                    .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
