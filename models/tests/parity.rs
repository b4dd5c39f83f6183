//! int8 vs fp32 parity on the 43 annotated dlib faces (issue 3's quality bar): the int8 model
//! finds every face the fp32 reference finds (IoU ≥ 0.5 with the annotation, score ≥ 0.5,
//! NMS 0.4) and the matched boxes agree with mean IoU ≥ 0.9.
//!
//! Needs the source ONNX in `.cache/models/`: `cargo xtask models` fetches it (and `cargo xtask ci`
//! runs that before the tests).

use std::path::PathBuf;

use veil_models::eval::parity;
use veil_models::{retinaface_spec, Fp32Model};

#[test]
fn int8_matches_fp32_on_dlib_faces() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let onnx =
        std::fs::read(root.join(".cache/models/retinaface-mnet025.onnx")).expect("run `cargo xtask models`");
    let fp = Fp32Model::from_onnx(&onnx, retinaface_spec()).unwrap();
    let blob = std::fs::read(root.join("models/int8/retinaface-mnet025.vlnn")).unwrap();
    let dir = root.join("data/dlib/faces");
    let xmls = [
        std::fs::read_to_string(dir.join("training.xml")).unwrap(),
        std::fs::read_to_string(dir.join("testing.xml")).unwrap(),
    ];
    let p = parity(&blob, &fp, &dir, &[&xmls[0], &xmls[1]], (640, 480), 0.5).unwrap();
    println!(
        "annotated {}, fp32 found {}, int8 found {}, int8 missed {}, mean IoU {:.4}, min IoU {:.4}",
        p.annotated,
        p.fp32_found,
        p.int8_found,
        p.int8_missed,
        p.mean_iou(),
        p.ious.iter().copied().fold(1.0, f32::min)
    );
    assert_eq!(p.annotated, 43);
    assert_eq!(p.int8_missed, 0);
    assert!(p.mean_iou() >= 0.9);
}
