//! Redaction throughput: every mode × every pixel format on 640×480 and 1920×1080, with a
//! realistic load per frame (4 faces of 10–20 % of the frame height, ellipse-shaped, and
//! 2 licence plates, rectangular, all dilated by the default mask scale), against a `memcpy` of
//! the same frame. Throughput is reported in frame bytes per second, so "Fill at 5 GiB/s" on a
//! 1 MiB frame means 5 Ki frames/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use veil_core::frame::{FrameMut, Layout, PixelFormat, Rect, Rgb};
use veil_core::redact::{redact, region_for, Mode, Shape, DEFAULT_MASK_SCALE_Q8};

const SIZES: [(u32, u32); 2] = [(640, 480), (1920, 1080)];

const MODES: [(&str, Mode); 4] = [
    ("fill", Mode::Fill(Rgb::BLACK)),
    ("pixelate16", Mode::Pixelate { block: 16 }),
    ("blur8", Mode::Blur { radius: 8 }),
    ("noise16", Mode::Noise { block: 16, amplitude: 32 }),
];

/// Detection boxes scaled to the frame: faces of 10, 13, 16 and 20 % of the height (width 0.8 ×
/// height) and two plates (12 % × 4 % of the frame), placed apart as in a street scene.
fn regions(l: &Layout) -> [(Rect, Shape); 6] {
    let (w, h) = (l.width as i32, l.height as i32);
    let face = |cx: i32, cy: i32, pct: i32| {
        let fh = h * pct / 100;
        let fw = fh * 4 / 5;
        Rect::from_xywh(w * cx / 100 - fw / 2, h * cy / 100 - fh / 2, fw, fh)
    };
    let plate = |cx: i32, cy: i32| {
        let (pw, ph) = (w * 12 / 100, h * 4 / 100);
        Rect::from_xywh(w * cx / 100 - pw / 2, h * cy / 100 - ph / 2, pw, ph)
    };
    let boxes = [
        (face(15, 30, 10), Shape::Ellipse),
        (face(40, 25, 13), Shape::Ellipse),
        (face(65, 35, 16), Shape::Ellipse),
        (face(85, 30, 20), Shape::Ellipse),
        (plate(30, 80), Shape::Rect),
        (plate(70, 85), Shape::Rect),
    ];
    boxes.map(|(r, s)| (region_for(l, r, DEFAULT_MASK_SCALE_Q8), s))
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn bench(c: &mut Criterion) {
    for (w, h) in SIZES {
        let mut g = c.benchmark_group(format!("redact/{w}x{h}"));
        g.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
        for format in PixelFormat::ALL {
            let l = Layout::new(format, w, h);
            let len = l.required_len().expect("valid layout");
            g.throughput(Throughput::Bytes(len as u64));
            let regs = regions(&l);
            let mut buf = pattern(len);
            let src = pattern(len);
            g.bench_function(BenchmarkId::new("memcpy", format!("{format:?}")), |b| {
                b.iter(|| buf.copy_from_slice(black_box(&src)))
            });
            for (name, mode) in MODES {
                g.bench_function(BenchmarkId::new(name, format!("{format:?}")), |b| {
                    b.iter(|| {
                        let mut f = FrameMut::new_checked(&mut buf, l).expect("valid frame");
                        for &(r, shape) in &regs {
                            black_box(redact(&mut f, r, mode, shape, 7).expect("valid mode"));
                        }
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
