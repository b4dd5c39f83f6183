//! Metric tests on hand-computed cases.

use image::{Rgb, RgbImage};
use veil_core::detect::{Class, Detection};
use veil_core::frame::Rect;
use veil_core::redact::Shape;
use veil_sim::eval::metrics::{bucket_of, evaluate, iou, voc_ap, wider_ap, ApImage, DetStatus, Tally};
use veil_sim::eval::report::{EvalReport, Extra};
use veil_sim::eval::{self, redacted_mask, Anonymised, EvalOptions, GtBox, Mask, Params};

fn face(x: i32, y: i32, w: i32, h: i32) -> GtBox {
    GtBox { rect: Rect::from_xywh(x, y, w, h), class: Class::Face, ignore: false }
}

fn det(x: i32, y: i32, w: i32, h: i32, score: u16) -> Detection {
    Detection { rect: Rect::from_xywh(x, y, w, h), class: Class::Face, score }
}

#[test]
fn buckets_by_shorter_side() {
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 15, 300)), 0);
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 16, 16)), 1);
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 40, 31)), 1);
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 32, 64)), 2);
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 127, 500)), 3);
    assert_eq!(bucket_of(&Rect::from_xywh(0, 0, 128, 128)), 4);
    assert!(
        (iou(&Rect::from_xywh(0, 0, 10, 10), &Rect::from_xywh(5, 0, 10, 10)) - 50.0 / 150.0).abs() < 1e-12
    );
}

#[test]
fn half_covered_box() {
    let gt = [face(0, 0, 10, 10)];
    let mut m = Mask::new(20, 20);
    m.fill_rect(&Rect::new(0, 0, 5, 10)); // left half of the box
    let r = evaluate(&gt, &[], &m, None, &Params::default());
    assert_eq!(r.gts[0].coverage, Some(0.5));
    assert!(!r.gts[0].covered, "50% < 90%");
    assert_eq!((r.redacted, r.redacted_outside, r.pixels), (50, 0, 400));
    let half = Params { coverage: 0.5, ..Params::default() };
    assert!(evaluate(&gt, &[], &m, None, &half).gts[0].covered, "50% >= 50%");
    // 9 of 10 columns: exactly 90%, which counts.
    let mut m9 = Mask::new(20, 20);
    m9.fill_rect(&Rect::new(0, 0, 9, 10));
    m9.fill_rect(&Rect::new(15, 15, 20, 20)); // 25 pixels outside the box
    let r9 = evaluate(&gt, &[], &m9, None, &Params::default());
    assert!(r9.gts[0].covered);
    assert_eq!((r9.redacted, r9.redacted_outside), (115, 25));
}

#[test]
fn two_detections_on_one_face() {
    let gt = [face(10, 10, 20, 20)];
    let a = det(10, 10, 20, 20, 60000);
    let b = det(12, 12, 20, 20, 50000); // IoU 324/476 = 0.68 with the face
    let r = evaluate(&gt, &[b, a], &Mask::new(64, 64), None, &Params::default());
    assert!(r.gts[0].detected);
    let status = |d: Detection| r.dets.iter().find(|x| x.det == d).map(|x| x.status);
    assert_eq!(status(a), Some(DetStatus::TruePositive), "the higher score matches");
    assert_eq!(status(b), Some(DetStatus::FalsePositive), "a second detection is a false positive");
    let mut t = Tally::default();
    t.add(r);
    let c = t.total(Class::Face);
    assert_eq!((c.gt, c.detected, c.dets, c.det_tp), (1, 1, 2, 1));
    // WIDER AP: at the top threshold P = 1, R = 1, so AP = 1 although precision overall is 0.5.
    assert_eq!(wider_ap(&t.ap[0], None), Some(1.0));
    let rep = EvalReport::new(&t, &Extra::default(), &EvalOptions::default());
    let all = &rep.classes[0].all;
    assert_eq!((all.precision, all.detection_recall, all.coverage_recall), (Some(0.5), Some(1.0), Some(0.0)));
}

#[test]
fn empty_image() {
    let r = evaluate(&[], &[], &Mask::new(8, 8), None, &Params::default());
    assert!(r.gts.is_empty() && r.dets.is_empty());
    let mut t = Tally::default();
    t.add(r);
    let rep = EvalReport::new(&t, &Extra::default(), &EvalOptions::default());
    for c in &rep.classes {
        assert_eq!(c.all.coverage_recall, None);
        assert_eq!(c.all.precision, None);
        assert_eq!(c.all.ap, None);
    }
    assert_eq!(rep.pixels.false_redaction, None);
    assert_eq!(rep.images, 1);
    // A detection and its redaction on an empty image: all false.
    let mut m = Mask::new(8, 8);
    m.fill_rect(&Rect::new(0, 0, 4, 4));
    let r = evaluate(&[], &[det(0, 0, 4, 4, 40000)], &m, None, &Params::default());
    let mut t = Tally::default();
    t.add(r);
    let rep = EvalReport::new(&t, &Extra::default(), &EvalOptions::default());
    assert_eq!(rep.pixels.false_redaction, Some(1.0));
    assert_eq!(rep.classes[0].all.precision, Some(0.0));
}

#[test]
fn ignored_boxes_and_classes() {
    let ign = GtBox { rect: Rect::from_xywh(0, 0, 10, 10), class: Class::Face, ignore: true };
    let plate = GtBox { rect: Rect::from_xywh(20, 0, 10, 10), class: Class::Plate, ignore: false };
    // A face detection on the plate is not a match (class-aware); one on the ignored box is
    // neither true nor false.
    let d1 = det(0, 0, 10, 10, 50000);
    let d2 = det(20, 0, 10, 10, 50000);
    let mut m = Mask::new(40, 10);
    m.fill_rect(&Rect::new(0, 0, 10, 10));
    let r = evaluate(&[ign, plate], &[d1, d2], &m, None, &Params::default());
    let st: Vec<_> = r.dets.iter().map(|d| d.status).collect();
    assert!(st.contains(&DetStatus::Ignored) && st.contains(&DetStatus::FalsePositive));
    assert!(!r.gts[1].detected && !r.gts[1].covered);
    assert_eq!(r.redacted_outside, 0, "redacting an ignored box is not false redaction");
}

#[test]
fn residual_counts_same_class_overlaps() {
    let gt = [face(0, 0, 20, 20), face(40, 0, 20, 20)];
    let res = [
        det(2, 2, 20, 20, 30000),
        Detection { rect: Rect::from_xywh(40, 0, 20, 20), class: Class::Plate, score: 1 },
    ];
    let r = evaluate(&gt, &[], &Mask::new(64, 32), Some(&res), &Params::default());
    assert_eq!(r.gts[0].residual, Some(true));
    assert_eq!(r.gts[1].residual, Some(false), "a plate detection does not count for a face");
    let r = evaluate(&gt, &[], &Mask::new(64, 32), None, &Params::default());
    assert_eq!(r.gts[0].residual, None);
}

#[test]
fn wider_ap_hand_computed() {
    // Two boxes; three detections: 0.9 on box 0, 0.8 false, 0.7 on box 1.
    // Normalised scores 1, 0.5, 0. PR points: (R .5, P 1), (R .5, P .5), (R 1, P 2/3).
    // AP = 0.5 * 1 + 0.5 * 2/3.
    let im = ApImage {
        gts: vec![(2, false), (2, false)],
        preds: vec![(59000, Some(0)), (52000, None), (45000, Some(1))],
    };
    let ap = wider_ap(std::slice::from_ref(&im), None).unwrap();
    assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-9, "{ap}");
    // Subset: only bucket 3 (no box) → no AP; a box in another bucket is ignored.
    assert_eq!(wider_ap(std::slice::from_ref(&im), Some(3)), None);
    let im2 = ApImage {
        gts: vec![(2, false), (4, false)],
        preds: vec![(59000, Some(0)), (52000, None), (45000, Some(1))],
    };
    // Bucket 2: the detection on box 1 (bucket 4) is not counted: PR (1, 1), (1, .5) → AP 1.
    assert_eq!(wider_ap(&[im2], Some(2)), Some(1.0));
    assert!((voc_ap(&[0.5, 1.0], &[1.0, 0.5]) - 0.75).abs() < 1e-12);
}

#[test]
fn mask_from_regions_and_pixels() {
    let input = RgbImage::from_pixel(16, 16, Rgb([100, 100, 100]));
    let mut output = input.clone();
    // The pipeline "reports" a rectangle region (0,0)-(8,8) but leaves its pixels unchanged (as a
    // pixelate of a flat area would), and changes one pixel outside it without reporting.
    output.put_pixel(15, 15, Rgb([0, 0, 0]));
    let a = Anonymised {
        detections: vec![],
        regions: vec![(Rect::new(0, 0, 8, 8), Shape::Rect)],
        whole_frame: false,
    };
    let info = redacted_mask(&input, &output, &a);
    assert_eq!(info.mask.count(), 65);
    assert_eq!((info.changed_outside_regions, info.unchanged_inside_regions), (1, 64));
    // An ellipse inscribed in an 8x8 square covers fewer pixels than the square.
    let e = Anonymised { regions: vec![(Rect::new(0, 0, 8, 8), Shape::Ellipse)], ..a.clone() };
    let n = redacted_mask(&input, &input, &e).mask.count();
    assert!(n > 40 && n < 64, "{n}");
    assert!(!redacted_mask(&input, &input, &e).mask.get(0, 0), "corner outside the ellipse");
    let all = Anonymised { whole_frame: true, ..a };
    assert_eq!(redacted_mask(&input, &input, &all).mask.count(), 256);
}

#[test]
fn run_end_to_end_with_a_closure() {
    let dir = tempfile::tempdir().unwrap();
    let img = RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 4) as u8, (y * 5) as u8, 77]));
    img.save(dir.path().join("a.png")).unwrap();
    std::fs::write(
        dir.path().join("labels.json"),
        r#"{"format": "veil-labels-v1", "images": [
            {"file": "a.png", "width": 64, "height": 48, "boxes": [
                {"class": "face", "x": 4, "y": 4, "w": 20, "h": 20},
                {"class": "plate", "x": 40, "y": 30, "w": 20, "h": 10}]}]}"#,
    )
    .unwrap();
    // Redacts the face box (and a 4-pixel margin) with black; misses the plate.
    let mut anon = |_: &std::path::Path, im: &mut RgbImage| -> Result<Anonymised, eval::Error> {
        for y in 0..28 {
            for x in 0..28 {
                im.put_pixel(x, y, Rgb([0, 0, 0]));
            }
        }
        Ok(Anonymised {
            detections: vec![det(4, 4, 20, 20, 50000)],
            regions: vec![(Rect::new(0, 0, 28, 28), Shape::Rect)],
            whole_frame: false,
        })
    };
    let overlay = dir.path().join("ov");
    let opts = EvalOptions {
        labels: vec![dir.path().join("labels.json")],
        overlay: Some(overlay.clone()),
        ..EvalOptions::default()
    };
    let rep = eval::run(&opts, &mut anon, None).unwrap();
    assert_eq!(rep.images, 1);
    let f = &rep.classes[0];
    assert_eq!((f.all.counts.gt, f.all.counts.covered, f.all.coverage_recall), (1, 1, Some(1.0)));
    assert_eq!(f.buckets[1].counts.covered, 1, "20 px face is in the 16-32 bucket");
    let p = &rep.classes[1];
    assert_eq!((p.all.counts.gt, p.all.coverage_recall, p.all.detection_recall), (1, Some(0.0), Some(0.0)));
    // 28*28 = 784 redacted, 400 inside the face box.
    assert_eq!((rep.pixels.redacted, rep.pixels.redacted_outside_gt), (784, 384));
    assert_eq!(rep.pixels.changed_outside_regions, 0);
    let ov = image::open(overlay.join("a.png")).unwrap().to_rgb8();
    assert_eq!(ov.get_pixel(41, 29).0, [255, 30, 30], "missed plate drawn in red");
    assert_eq!(ov.get_pixel(3, 3).0, [40, 220, 40], "covered face drawn in green");
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["classes"][0]["all"]["covered"], 1);
    assert!(rep.table().contains("face"));
    assert_eq!(eval::overlay_name("../../x/a.jpg"), std::path::PathBuf::from("x/a.png"));
    assert_eq!(eval::overlay_name("/abs/b.JPG"), std::path::PathBuf::from("abs/b.png"));

    // A size mismatch between labels and image is an error naming the image.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"format": "veil-labels-v1", "images": [{"file": "a.png", "width": 10, "height": 48, "boxes": []}]}"#,
    )
    .unwrap();
    let opts = EvalOptions { labels: vec![dir.path().join("bad.json")], ..EvalOptions::default() };
    let e = eval::run(&opts, &mut anon, None).unwrap_err().to_string();
    assert!(e.contains("a.png") && e.contains("64x48"), "{e}");
}
