//! Inference speed of the built-in int8 engine on the face model (RetinaFace MobileNet-0.25),
//! single thread, on the committed camera frame (`firmware/app/assets/frame-320x240.rgb`):
//!
//! - `exec/320x256`, `exec/640x480`: [`exec::run`] alone (the input tensor filled once);
//! - `detect/320x240`, `detect/640x480`: the whole [`BuiltinDetector`] (letterbox, run, decode,
//!   NMS) on a 320×240 frame and on the same frame upscaled 2× (nearest) to 640×480.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use heapless::Vec as HVec;
use veil_core::detect::{Detection, Detector};
use veil_core::frame::{Frame, Layout, PixelFormat};
use veil_core::nn::resize::{fill_input, Letterbox};
use veil_core::nn::{exec, BuiltinDetector, DetectorConfig, Model};

#[repr(C, align(16))]
struct Aligned<B: ?Sized>(B);

static FACE: &Aligned<[u8]> = &Aligned(*include_bytes!("../../../models/int8/retinaface-mnet025.vlnn"));
static CAMERA: &[u8] = include_bytes!("../../app/assets/frame-320x240.rgb");

/// The camera frame scaled up by an integer factor (nearest neighbour).
fn upscale(src: &[u8], w: usize, h: usize, f: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h * f * f * 3);
    for y in 0..h * f {
        for x in 0..w * f {
            let s = ((y / f) * w + x / f) * 3;
            out.extend_from_slice(&src[s..s + 3]);
        }
    }
    out
}

fn frames() -> [(&'static str, u32, u32, Vec<u8>); 2] {
    [("320x240", 320, 240, CAMERA.to_vec()), ("640x480", 640, 480, upscale(CAMERA, 320, 240, 2))]
}

fn bench_nn(c: &mut Criterion) {
    let model = Model::parse(&FACE.0).expect("committed face blob parses");
    let mut g = c.benchmark_group("nn");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for (name, w, h, pixels) in frames() {
        let frame = Frame::new_checked(&pixels, Layout::new(PixelFormat::Rgb888, w, h)).expect("frame");
        // Model inputs are multiples of 32: the 320×240 frame is letterboxed into 320×256.
        let (mw, mh) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
        let lb = Letterbox::plan(w, h, mw, mh).expect("letterbox");
        let mut arena = vec![0u8; model.arena_len(lb.input_w, lb.input_h).expect("arena size")];
        fill_input(&frame, &model, &mut arena, &lb).expect("input");
        let id = format!("exec/{}x{}", lb.input_w, lb.input_h);
        g.bench_function(id, |b| {
            b.iter(|| exec::run(&model, black_box(&mut arena), lb.input_w, lb.input_h).expect("run"))
        });

        let cfg = DetectorConfig { max_w: mw, max_h: mh, ..DetectorConfig::default() };
        let mut arena = vec![0u8; BuiltinDetector::arena_len_for(&[&FACE.0], mw, mh).expect("arena size")];
        let mut det = BuiltinDetector::new(Some(&FACE.0), None, &mut arena, cfg).expect("detector");
        g.bench_function(format!("detect/{name}"), |b| {
            b.iter(|| {
                let mut out: HVec<Detection, 64> = HVec::new();
                det.detect(black_box(&frame), out.as_mut_view()).expect("detect");
                out.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_nn);
criterion_main!(benches);
