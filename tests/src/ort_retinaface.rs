//! RetinaFace fp32 in ONNX Runtime on exactly the int8 engine's input tensor, decoded in
//! floating point: the reference of the parity test (`tests/ort_parity.rs`) and of the latency
//! bench (`benches/detectors.rs`).
//!
//! The frame is letterboxed and area-averaged by `veil_models::prepare_input` (the engine's own
//! resize); ONNX Runtime gets it as floats (`q + 128 − mean`, NCHW, BGR). Anchors are decoded
//! level by level (rows, columns, then the level's anchor sizes) and mapped back to frame pixels
//! the way the engine maps its own.
//!
//! Needs the ONNX Runtime library (`cargo xtask setup`, or `ORT_DYLIB_PATH`) and the source ONNX
//! (`cargo xtask models`); these are fixtures, so a missing piece panics with what to run.

use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;
use veil_models::reference::input_from_q;
use veil_models::{prepare_input, retinaface_spec, HostDet, ModelSpec, RgbImage};

/// A one-thread ONNX Runtime session on the RetinaFace ONNX, with its input buffer.
pub struct OrtRetinaFace {
    session: Session,
    spec: ModelSpec,
    chw: Vec<f32>,
}

impl OrtRetinaFace {
    /// Load `onnx` into a session with one intra- and one inter-op thread.
    pub fn open(onnx: &Path) -> OrtRetinaFace {
        let bytes = std::fs::read(onnx).unwrap_or_else(|e| {
            panic!("{}: {e}; the source ONNX is fetched by `cargo xtask models`", onnx.display())
        });
        let env = veil_sim::detectors::ort_environment().unwrap_or_else(|e| panic!("{e}"));
        let session = Session::builder(&env)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_intra_threads(1).map_err(|e| e.to_string()))
            .and_then(|b| b.with_inter_threads(1).map_err(|e| e.to_string()))
            .and_then(|mut b| b.commit_from_memory(&bytes).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| panic!("ONNX Runtime could not load {}: {e}", onnx.display()));
        OrtRetinaFace { session, spec: retinaface_spec(), chw: Vec::new() }
    }

    /// Letterbox `img` into at most `max`, run, and decode every anchor scoring at least
    /// `floor` (no NMS), in frame pixels, with its five landmarks.
    pub fn run(&mut self, img: &RgbImage, max: (u32, u32), floor: f32) -> Vec<HostDet> {
        let spec = &self.spec;
        let (lb, q) = prepare_input(img, spec, max).expect("letterbox");
        let (w, h) = (lb.input_w as usize, lb.input_h as usize);
        // NHWC floats, exactly as the Rust fp32 reference is fed, then NCHW for ONNX.
        let hwc = input_from_q(&q, w, h, spec.mean);
        self.chw.clear();
        self.chw.resize(3 * w * h, 0.0);
        for (i, v) in hwc.data.iter().enumerate() {
            self.chw[(i % 3) * w * h + i / 3] = *v;
        }
        let input = TensorRef::from_array_view(([1usize, 3, h, w], &self.chw[..])).expect("input tensor");
        let outputs = self.session.run(ort::inputs!["input" => input]).expect("ONNX Runtime run");
        let get = |name: &str| {
            let (shape, data) = outputs[name].try_extract_tensor::<f32>().expect("f32 output");
            (shape.iter().copied().collect::<Vec<i64>>(), data)
        };
        let (loc_shape, loc) = get("loc");
        let (conf_shape, conf) = get("conf");
        let (lm_shape, lm) = get("landmarks");

        let n: usize = spec.steps.iter().map(|&s| (w / s as usize) * (h / s as usize) * 2).sum();
        assert_eq!(loc_shape, [1, n as i64, 4], "loc shape");
        assert_eq!(conf_shape, [1, n as i64, 2], "conf shape");
        assert_eq!(lm_shape, [1, n as i64, 10], "landmarks shape");
        let (sx, sy) = (lb.frame_w as f64 / lb.content_w as f64, lb.frame_h as f64 / lb.content_h as f64);
        let [v0, v1] = spec.variances;
        let mut out = Vec::new();
        let mut k = 0usize;
        for (li, &step) in spec.steps.iter().enumerate() {
            let step = step as usize;
            for gy in 0..h / step {
                for gx in 0..w / step {
                    for &size in &spec.min_sizes[li] {
                        // `conf` is the softmax of the two class logits.
                        let score = conf[2 * k + 1];
                        if score >= floor {
                            let s = size as f64;
                            let (acx, acy) =
                                ((gx as f64 + 0.5) * step as f64, (gy as f64 + 0.5) * step as f64);
                            let d = |i: usize| loc[4 * k + i] as f64;
                            let (cx, cy) = (acx + d(0) * v0 * s, acy + d(1) * v0 * s);
                            let (bw, bh) = (s * (d(2) * v1).exp(), s * (d(3) * v1).exp());
                            let points = (0..5)
                                .map(|p| {
                                    let (px, py) = (lm[10 * k + 2 * p] as f64, lm[10 * k + 2 * p + 1] as f64);
                                    (((acx + px * v0 * s) * sx) as f32, ((acy + py * v0 * s) * sy) as f32)
                                })
                                .collect();
                            out.push(HostDet {
                                score,
                                rect: [
                                    ((cx - bw / 2.0) * sx) as f32,
                                    ((cy - bh / 2.0) * sy) as f32,
                                    ((cx + bw / 2.0) * sx) as f32,
                                    ((cy + bh / 2.0) * sy) as f32,
                                ],
                                points,
                            });
                        }
                        k += 1;
                    }
                }
            }
        }
        out
    }
}
