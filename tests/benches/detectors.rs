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
//! The frame is `data/dlib/faces/2007_007763.jpg` (500×375, 7 faces) resized (nearest) to each
//! size. Needs the ONNX Runtime library (`cargo xtask setup`) and the source ONNX
//! (`cargo xtask models`). Run: `cargo bench -p veil-tests --bench detectors`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ort::session::Session;
use ort::value::TensorRef;
use veil_core::detect::{Detection, Detector};
use veil_core::nn::{BuiltinDetector, DetectorConfig};
use veil_models::reference::input_from_q;
use veil_models::{nms, prepare_input, retinaface_spec, HostDet, ModelSpec, RgbImage};

const SIZES: [(u32, u32); 2] = [(320, 240), (640, 480)];
/// Lowest score kept before NMS, as the built-in detector's default floor.
const FLOOR: f32 = 0.2;

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

struct Ort {
    session: Session,
    spec: ModelSpec,
    tensor: Vec<f32>,
    boxes: Vec<HostDet>,
}

impl Ort {
    fn new(onnx: &Path) -> Ort {
        let bytes = std::fs::read(onnx)
            .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask models`", onnx.display()));
        let env = veil_sim::detectors::ort_environment().unwrap_or_else(|e| panic!("{e}"));
        let session = Session::builder(&env)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_intra_threads(1).map_err(|e| e.to_string()))
            .and_then(|b| b.with_inter_threads(1).map_err(|e| e.to_string()))
            .and_then(|mut b| b.commit_from_memory(&bytes).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("ONNX Runtime could not load {}: {e}", onnx.display()));
        Ort { session, spec: retinaface_spec(), tensor: Vec::new(), boxes: Vec::new() }
    }

    /// Letterbox like the engine, run, decode, NMS; returns the number of boxes.
    fn detect(&mut self, img: &RgbImage, max: (u32, u32)) -> usize {
        let spec = &self.spec;
        let (lb, q) = prepare_input(img, spec, max).expect("letterbox");
        let (w, h) = (lb.input_w as usize, lb.input_h as usize);
        let hwc = input_from_q(&q, w, h, spec.mean);
        self.tensor.clear();
        self.tensor.resize(3 * w * h, 0.0);
        for (i, v) in hwc.data.iter().enumerate() {
            self.tensor[(i % 3) * w * h + i / 3] = *v;
        }
        let input = TensorRef::from_array_view(([1usize, 3, h, w], &self.tensor[..])).expect("input");
        let outputs = self.session.run(ort::inputs!["input" => input]).expect("ONNX Runtime run");
        let (_, loc) = outputs["loc"].try_extract_tensor::<f32>().expect("loc");
        let (_, conf) = outputs["conf"].try_extract_tensor::<f32>().expect("conf");
        let (sx, sy) = (lb.frame_w as f32 / lb.content_w as f32, lb.frame_h as f32 / lb.content_h as f32);
        let [v0, v1] = spec.variances.map(|v| v as f32);
        let mut dets = Vec::new();
        let mut k = 0usize;
        // Anchors: level by level, rows, columns, then the level's anchor sizes.
        for (li, &step) in spec.steps.iter().enumerate() {
            let step = step as usize;
            for gy in 0..h / step {
                for gx in 0..w / step {
                    for &size in &spec.min_sizes[li] {
                        let score = conf.get(2 * k + 1).copied().unwrap_or(0.0);
                        if score >= FLOOR {
                            let (s, d) = (size as f32, &loc[4 * k..4 * k + 4]);
                            let (acx, acy) =
                                ((gx as f32 + 0.5) * step as f32, (gy as f32 + 0.5) * step as f32);
                            let (cx, cy) = (acx + d[0] * v0 * s, acy + d[1] * v0 * s);
                            let (bw, bh) = (s * (d[2] * v1).exp(), s * (d[3] * v1).exp());
                            let rect = [
                                (cx - bw / 2.0) * sx,
                                (cy - bh / 2.0) * sy,
                                (cx + bw / 2.0) * sx,
                                (cy + bh / 2.0) * sy,
                            ];
                            dets.push(HostDet { score, rect, points: Vec::new() });
                        }
                        k += 1;
                    }
                }
            }
        }
        drop(outputs);
        self.boxes = nms(dets, 0.4);
        self.boxes.len()
    }
}

fn detectors(c: &mut Criterion) {
    let root = repo();
    let src = RgbImage::load_jpeg(&root.join("data/dlib/faces/2007_007763.jpg")).expect("frame");
    let blob = std::fs::read(root.join("models/int8/retinaface-mnet025.vlnn")).expect("int8 blob");
    let onnx = root.join(".cache/models/retinaface-mnet025.onnx");
    assert!(onnx.is_file(), "{} is missing: run `cargo xtask models`", onnx.display());
    let mut ort = Ort::new(&onnx);
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
        let n_ort = ort.detect(&img, max);
        let faces_ort = ort.boxes.iter().filter(|b| b.score >= 0.5).count();
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
            b.iter(|| ort.detect(black_box(i), max))
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

criterion_group!(benches, detectors);
criterion_main!(benches);
