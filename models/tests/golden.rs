//! Golden test: the committed face blob, run through `BuiltinDetector` on the dlib faces, gives
//! exactly the detections in `models/golden/dlib_faces.txt`. Set `VEIL_BLESS=1` to rewrite it
//! after an intended change (and review the diff).

use std::fmt::Write as _;
use std::path::PathBuf;

use heapless::Vec as HVec;
use veil_core::detect::{score_from_milli, Detection, Detector};
use veil_core::frame::{Frame, Layout, PixelFormat};
use veil_core::nn::{BuiltinDetector, DetectorConfig, Model, NnError};
use veil_models::RgbImage;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

const FACE: &[u8] = include_bytes!("../int8/retinaface-mnet025.vlnn");
const PLATE: &[u8] = include_bytes!("../int8/clp-det.vlnn");

fn cfg() -> DetectorConfig {
    DetectorConfig {
        max_w: 640,
        max_h: 480,
        floor: [score_from_milli(500), score_from_milli(500)],
        nms_iou: 0x6666,
    }
}

fn detect(det: &mut BuiltinDetector<'_, '_>, frame: &Frame<'_>) -> Vec<Detection> {
    let mut out: HVec<Detection, 64> = HVec::new();
    det.detect(frame, out.as_mut_view()).unwrap();
    out.to_vec()
}

#[test]
fn dlib_faces_golden() {
    let dir = root().join("data/dlib/faces");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    let mut arena = vec![0u8; BuiltinDetector::arena_len_for(&[FACE], 640, 480).unwrap()];
    let mut det = BuiltinDetector::new(Some(FACE), None, &mut arena, cfg()).unwrap();
    let mut text = String::new();
    for f in &files {
        let img = RgbImage::load_jpeg(f).unwrap();
        let frame = img.frame().unwrap();
        let dets = detect(&mut det, &frame);
        // The same pixels as BGR must give the same detections.
        let bgr: Vec<u8> = img.data.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
        let fb = Frame::new_checked(&bgr, Layout::new(PixelFormat::Bgr888, img.width, img.height)).unwrap();
        assert_eq!(detect(&mut det, &fb), dets);
        for d in &dets {
            let r = d.rect;
            let name = f.file_name().unwrap().to_string_lossy();
            writeln!(text, "{name} {} {} {} {} {} {}", d.class.name(), d.score, r.x0, r.y0, r.x1, r.y1)
                .unwrap();
        }
    }
    let golden = root().join("models/golden/dlib_faces.txt");
    if std::env::var_os("VEIL_BLESS").is_some() {
        std::fs::write(&golden, &text).unwrap();
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (VEIL_BLESS=1 to create)");
    assert_eq!(text, want, "detections changed");
    assert!(text.lines().count() >= 40, "the face model should find most of the 43 dlib faces");
}

#[test]
fn detector_config_errors_and_ids() {
    let mut small = vec![0u8; 1000];
    assert!(matches!(
        BuiltinDetector::new(Some(FACE), None, &mut small, cfg()),
        Err(NnError::ArenaTooSmall { .. })
    ));
    let need = BuiltinDetector::arena_len_for(&[FACE, PLATE], 320, 256).unwrap();
    let mut arena = vec![0u8; need];
    let c = DetectorConfig { max_w: 320, max_h: 256, ..DetectorConfig::default() };
    let both = BuiltinDetector::new(Some(FACE), Some(PLATE), &mut arena, c).unwrap();
    let id_both = both.model_id();
    let face_only = BuiltinDetector::new(Some(FACE), None, &mut arena, c).unwrap();
    assert_eq!(face_only.model_id(), Model::parse(FACE).unwrap().id());
    assert_ne!(face_only.model_id(), id_both);
}

#[test]
fn faces_and_plates_in_one_pass_on_every_pixel_format() {
    let img = RgbImage::load_jpeg(&root().join("data/dlib/faces/2008_002506.jpg")).unwrap();
    let need = BuiltinDetector::arena_len_for(&[FACE, PLATE], 320, 256).unwrap();
    let mut arena = vec![0u8; need];
    let c = DetectorConfig { max_w: 320, max_h: 256, ..DetectorConfig::default() };
    let mut det = BuiltinDetector::new(Some(FACE), Some(PLATE), &mut arena, c).unwrap();
    for fmt in PixelFormat::ALL {
        let (w, h) = (img.width & !1, img.height & !1);
        let layout = Layout::new(fmt, w, h);
        let mut buf = vec![0u8; layout.required_len().unwrap()];
        let mut fm = veil_core::frame::FrameMut::new_checked(&mut buf, layout).unwrap();
        let chs = fmt.channels();
        for y in 0..h {
            for x in 0..w {
                let i = ((y * img.width + x) * 3) as usize;
                let rgb = veil_core::frame::Rgb::new(img.data[i], img.data[i + 1], img.data[i + 2]);
                let s = fmt.encode(rgb);
                for (k, ch) in chs.iter().enumerate() {
                    if x % ch.sub_x as u32 == 0 && y % ch.sub_y as u32 == 0 {
                        fm.set_sample(ch, x / ch.sub_x as u32, y / ch.sub_y as u32, s[k]);
                    }
                }
            }
        }
        let frame = fm.as_frame();
        let dets = detect(&mut det, &frame);
        let faces = dets
            .iter()
            .filter(|d| d.class == veil_core::Class::Face && d.score >= score_from_milli(500))
            .count();
        // The image has 3 annotated faces; gray input loses colour but not faces.
        assert!(faces >= 2, "{fmt:?}: {faces} faces in {dets:?}");
    }
}
