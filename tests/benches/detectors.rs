//! Face detector latency on one thread, at 320×240 and 640×480, on the same frame:
//!
//! - `int8`: the built-in detector (`veil_core::nn::BuiltinDetector`, RetinaFace MobileNet-0.25
//!   int8 blob): letterbox + area resize, network, decode, NMS.
//! - `ort_fp32`: the same RetinaFace ONNX in ONNX Runtime (intra- and inter-op threads = 1) on
//!   the same input tensor (the engine's letterbox, as floats), anchors decoded in floating point
//!   and NMS'd (`veil_models::nms`, IoU 0.4).
//! - `rustface`: the pure-Rust SeetaFace port (`rustface` 0.1.7 without `rayon`, its bundled
//!   `seeta_fd_frontal_v1.0.bin`, the crate example's settings: min face 20, score 2.0, pyramid
//!   0.8, step 4) on the grey frame.
//!
//! After criterion's estimates, each size also gets the ratio from [`PAIRS`] paired calls: the
//! int8 detector and ONNX Runtime alternate on the same frame and the int8 / ORT ratio of each
//! pair is taken, so that both meet the machine in the same state. (On a shared machine, speed
//! changes in phases of seconds; criterion measures one detector after the other, so a phase can
//! skew the ratio of its means either way.) The median, 10th and 90th percentiles are printed.
//!
//! The frame is `data/dlib/faces/2007_007763.jpg` (500×375, 7 faces) resized (nearest) to each
//! size. Needs the ONNX Runtime library (`cargo xtask setup`) and the source ONNX
//! (`cargo xtask models`). Run: `cargo bench -p veil-tests --bench detectors`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use veil_core::detect::{Detection, Detector};
use veil_core::nn::{BuiltinDetector, DetectorConfig};
use veil_models::{nms, HostDet, RgbImage};
use veil_tests::ort_retinaface::OrtRetinaFace;

const SIZES: [(u32, u32); 2] = [(320, 240), (640, 480)];
/// Lowest score kept before NMS, as the built-in detector's default floor.
const FLOOR: f32 = 0.2;
/// Paired calls per size for the int8 / ORT ratio.
const PAIRS: usize = 120;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf()
}

/// Nearest-neighbour resize of an RGB image.
fn resize(src: &RgbImage, w: u32, h: u32) -> RgbImage {
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        let sy = (y as u64 * src.height as u64 / h as u64) as usize;
        for x in 0..w {
            let sx = (x as u64 * src.width as u64 / w as u64) as usize;
            let o = (sy * src.width as usize + sx) * 3;
            data.extend_from_slice(&src.data[o..o + 3]);
        }
    }
    RgbImage { width: w, height: h, data }
}

/// Model input limits for a frame: the smallest multiples of 32 that hold it.
fn max_input(w: u32, h: u32) -> (u32, u32) {
    (w.div_ceil(32) * 32, h.div_ceil(32) * 32)
}

/// The crate package's model file, found through `cargo metadata`.
fn rustface_model() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(repo())
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "rustface"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("rustface in cargo metadata");
    let model = Path::new(manifest).with_file_name("model").join("seeta_fd_frontal_v1.0.bin");
    assert!(model.is_file(), "{} is missing from the rustface package", model.display());
    model
}

fn detectors(c: &mut Criterion) {
    let root = repo();
    let src = RgbImage::load_jpeg(&root.join("data/dlib/faces/2007_007763.jpg")).expect("frame");
    let blob = std::fs::read(root.join("models/int8/retinaface-mnet025.vlnn")).expect("int8 blob");
    let onnx = root.join(".cache/models/retinaface-mnet025.onnx");
    assert!(onnx.is_file(), "{} is missing: run `cargo xtask models`", onnx.display());
    let mut ort = OrtRetinaFace::open(&onnx);
    // Letterbox, run, decode and NMS, as the int8 detector does; returns the boxes.
    let mut ort_detect =
        |img: &RgbImage, max: (u32, u32)| -> Vec<HostDet> { nms(ort.run(img, max, FLOOR), 0.4) };
    let mut seeta =
        rustface::create_detector(rustface_model().to_str().expect("utf-8 path")).expect("rustface model");
    seeta.set_min_face_size(20);
    seeta.set_score_thresh(2.0);
    seeta.set_pyramid_scale_factor(0.8);
    seeta.set_slide_window_step(4, 4);

    let mut g = c.benchmark_group("detectors");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for (w, h) in SIZES {
        let img = resize(&src, w, h);
        let frame = img.frame().expect("frame");
        let max = max_input(w, h);
        let size = format!("{w}x{h}");

        let cfg = DetectorConfig { max_w: max.0, max_h: max.1, ..DetectorConfig::default() };
        let mut arena = vec![0u8; BuiltinDetector::arena_len_for(&[&blob], max.0, max.1).expect("arena")];
        let mut int8 = BuiltinDetector::new(Some(&blob), None, &mut arena, cfg).expect("int8 detector");
        let mut dets: heapless::Vec<Detection, 64> = heapless::Vec::new();
        let gray: Vec<u8> = img
            .data
            .chunks_exact(3)
            .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
            .collect();

        // What each one finds on this frame, for context.
        dets.clear();
        int8.detect(&frame, dets.as_mut_view()).expect("int8 detect");
        let faces_int8 = dets.iter().filter(|d| d.score >= veil_core::detect::score_from_milli(500)).count();
        let boxes = ort_detect(&img, max);
        let n_ort = boxes.len();
        let faces_ort = boxes.iter().filter(|b| b.score >= 0.5).count();
        let faces_seeta = seeta.detect(&rustface::ImageData::new(&gray, w, h)).len();
        eprintln!(
            "{size}: model input {}x{}; faces (score >= 0.5): int8 {faces_int8}, ORT fp32 {faces_ort} \
             ({n_ort} boxes >= {FLOOR}); rustface {faces_seeta}",
            max.0, max.1
        );

        g.bench_with_input(BenchmarkId::new("int8", &size), &frame, |b, f| {
            b.iter(|| {
                dets.clear();
                int8.detect(black_box(f), dets.as_mut_view()).expect("int8 detect");
                dets.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("ort_fp32", &size), &img, |b, i| {
            b.iter(|| ort_detect(black_box(i), max).len())
        });
        paired_ratio(&size, || {
            let t = Instant::now();
            dets.clear();
            int8.detect(black_box(&frame), dets.as_mut_view()).expect("int8 detect");
            let a = t.elapsed();
            let t = Instant::now();
            black_box(ort_detect(black_box(&img), max));
            (a, t.elapsed())
        });
        g.bench_with_input(BenchmarkId::new("rustface", &size), &img, |b, i| {
            b.iter(|| {
                let gray: Vec<u8> = black_box(i)
                    .data
                    .chunks_exact(3)
                    .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
                    .collect();
                seeta.detect(&rustface::ImageData::new(&gray, w, h)).len()
            })
        });
    }
    g.finish();
}

/// Run `pair` (which times one int8 call, then one ORT call) [`PAIRS`] times (3 when run as a
/// test) and print the medians and the int8 / ORT ratio's median, 10th and 90th percentiles.
fn paired_ratio(size: &str, mut pair: impl FnMut() -> (Duration, Duration)) {
    let n = if std::env::args().any(|a| a == "--bench") { PAIRS } else { 3 };
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let (x, y) = pair();
        let (x, y) = (x.as_secs_f64() * 1e3, y.as_secs_f64() * 1e3);
        a.push(x);
        b.push(y);
        r.push(x / y);
    }
    let pct = |v: &mut Vec<f64>, q: usize| {
        v.sort_by(f64::total_cmp);
        v[(v.len() - 1) * q / 100]
    };
    eprintln!(
        "{size}: {n} paired calls: int8 median {:.2} ms, ORT fp32 median {:.2} ms; int8 / ORT per pair: \
         median {:.3} (10th percentile {:.3}, 90th {:.3})",
        pct(&mut a, 50),
        pct(&mut b, 50),
        pct(&mut r, 50),
        pct(&mut r, 10),
        pct(&mut r, 90)
    );
}

criterion_group!(benches, detectors);
criterion_main!(benches);
