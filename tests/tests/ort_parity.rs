//! The built-in int8 face detector against ONNX Runtime fp32 on the same model (issue 3).
//!
//! On the 43 annotated faces of the dlib sample images (`data/dlib/faces`, `training.xml` +
//! `testing.xml`): every face that the fp32 RetinaFace run by ONNX Runtime finds (a detection of
//! score ≥ 0.5 after NMS 0.4 with IoU ≥ 0.5 against the annotation), the int8 blob
//! `models/int8/retinaface-mnet025.vlnn` run by `veil_core::nn` finds too, and the boxes the two
//! match to the same face agree with mean IoU ≥ 0.9. Beyond the annotations, every ORT detection
//! of score ≥ 0.5 must have an int8 detection at IoU ≥ 0.5.
//!
//! Both run on the same input tensor: the frame letterboxed into at most 640×480 and area
//! averaged by `veil_models::prepare_input` (the engine's own resize), which ONNX Runtime gets
//! as floats ([`veil_tests::ort_retinaface`]). Both are decoded with the same anchors and mapped
//! back to frame pixels the same way, so the comparison isolates quantisation.
//!
//! Needs the ONNX Runtime library (`cargo xtask setup`, or `ORT_DYLIB_PATH`) and the source ONNX
//! in `.cache/models/` (`cargo xtask models`); `cargo xtask ci` provides both. Per-image figures
//! are printed: `cargo test -p veil-tests --test ort_parity -- --nocapture`.

use std::path::{Path, PathBuf};

use veil_models::eval::dlib_boxes;
use veil_models::{iou, nms, run_int8, HostDet, RgbImage};
use veil_tests::ort_retinaface::OrtRetinaFace;

/// Largest model input (as in the converter's calibration and `models/tests/parity.rs`).
const MAX: (u32, u32) = (640, 480);
/// Score threshold for a detection to count.
const THRESHOLD: f32 = 0.5;
/// NMS IoU of the upstream RetinaFace.
const NMS_IOU: f32 = 0.4;
/// IoU for "the same face".
const MATCH_IOU: f32 = 0.5;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf()
}

/// The detection overlapping `g` the most, if any reaches [`MATCH_IOU`].
fn best<'a>(dets: &'a [HostDet], g: &[f32; 4]) -> Option<(&'a HostDet, f32)> {
    dets.iter()
        .map(|d| (d, iou(&d.rect, g)))
        .filter(|(_, v)| *v >= MATCH_IOU)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[derive(Default)]
struct Tally {
    annotated: usize,
    ort_found: usize,
    int8_found: usize,
    int8_missed: usize,
    /// IoU of the int8 and ORT boxes matched to the same annotated face.
    ious: Vec<f32>,
    /// Every ORT detection (annotated or not), and those with no int8 detection at IoU ≥ 0.5.
    ort_dets: usize,
    ort_dets_unmatched: usize,
    int8_dets: usize,
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len().max(1) as f32
}

#[test]
fn int8_matches_onnx_runtime_fp32_on_dlib_faces() {
    let root = repo();
    let onnx = root.join(".cache/models/retinaface-mnet025.onnx");
    assert!(
        onnx.is_file(),
        "{} is missing: run `cargo xtask models` (it fetches the pinned source ONNX)",
        onnx.display()
    );
    let mut ort = OrtRetinaFace::open(&onnx);
    let blob = std::fs::read(root.join("models/int8/retinaface-mnet025.vlnn")).expect("int8 blob");
    let dir = root.join("data/dlib/faces");

    let mut t = Tally::default();
    println!(
        "{:<16} {:>9} {:>5} {:>5} {:>5} {:>6} {:>8} {:>8} {:>10}",
        "image", "size", "faces", "ort", "int8", "missed", "meanIoU", "minIoU", "ort-unm/all"
    );
    for xml in ["training.xml", "testing.xml"] {
        let xml = std::fs::read_to_string(dir.join(xml)).expect("dlib annotations");
        for (file, boxes) in dlib_boxes(&xml) {
            let img = RgbImage::load_jpeg(&dir.join(&file)).expect("jpeg");
            let d32 = nms(ort.run(&img, MAX, THRESHOLD), NMS_IOU);
            let d8 = nms(run_int8(&blob, &img, MAX, THRESHOLD).expect("int8 engine"), NMS_IOU);
            let (mut ort_found, mut int8_found, mut missed, mut ious) = (0, 0, 0, Vec::new());
            for g in &boxes {
                let (a, b) = (best(&d32, g), best(&d8, g));
                ort_found += a.is_some() as usize;
                int8_found += b.is_some() as usize;
                match (a, b) {
                    (Some((a, _)), Some((b, _))) => ious.push(iou(&a.rect, &b.rect)),
                    (Some(_), None) => missed += 1,
                    _ => {}
                }
            }
            let unmatched = d32.iter().filter(|a| best(&d8, &a.rect).is_none()).count();
            println!(
                "{:<16} {:>4}x{:<4} {:>5} {:>5} {:>5} {:>6} {:>8.4} {:>8.4} {:>6}/{}",
                file,
                img.width,
                img.height,
                boxes.len(),
                ort_found,
                int8_found,
                missed,
                mean(&ious),
                ious.iter().copied().fold(1.0, f32::min),
                unmatched,
                d32.len()
            );
            t.annotated += boxes.len();
            t.ort_found += ort_found;
            t.int8_found += int8_found;
            t.int8_missed += missed;
            t.ious.extend(ious);
            t.ort_dets += d32.len();
            t.ort_dets_unmatched += unmatched;
            t.int8_dets += d8.len();
        }
    }
    println!(
        "total: annotated {}, ONNX Runtime fp32 found {}, int8 found {}, int8 missed {}, \
         matched-box IoU mean {:.4} min {:.4}; all detections ≥ {THRESHOLD}: ORT {}, int8 {}, \
         ORT without an int8 match {}",
        t.annotated,
        t.ort_found,
        t.int8_found,
        t.int8_missed,
        mean(&t.ious),
        t.ious.iter().copied().fold(1.0, f32::min),
        t.ort_dets,
        t.int8_dets,
        t.ort_dets_unmatched
    );
    assert_eq!(t.annotated, 43, "the dlib sample set has 43 annotated faces");
    // Guards the ORT side itself (input layout, output decoding): a broken run finds nothing.
    assert!(t.ort_found >= 40, "ONNX Runtime fp32 found only {} of 43 faces", t.ort_found);
    assert_eq!(t.int8_missed, 0, "faces found by ONNX Runtime fp32 but not by int8");
    assert_eq!(t.ious.len(), t.ort_found);
    assert_eq!(t.ort_dets_unmatched, 0, "ONNX Runtime detections (score ≥ {THRESHOLD}) with no int8 match");
    assert!(mean(&t.ious) >= 0.9, "mean IoU int8 vs ONNX Runtime fp32 {:.4} < 0.9", mean(&t.ious));
}
