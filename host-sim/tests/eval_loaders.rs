//! Annotation loaders: one small file per format, and malformed files (errors name file + line).

use std::path::{Path, PathBuf};

use veil_core::detect::Class;
use veil_core::frame::Rect;
use veil_sim::eval::annot::{
    self, ccpd_box, ClassMap, Coords, Format, LoadOptions, VeilBox, VeilFile, VeilImage,
};
use veil_sim::eval::Error;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn px(b: &annot::LabelBox) -> Rect {
    match b.coords {
        Coords::Pixels(r) => r,
        Coords::Normalised { .. } => panic!("expected pixels"),
    }
}

fn parse_line(e: Error) -> (PathBuf, usize, String) {
    match e {
        Error::Parse { path, line, msg } => (path, line, msg),
        other => panic!("expected a parse error, got {other}"),
    }
}

#[test]
fn wider_face() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "wider_face_val_bbx_gt.txt",
        "0--Parade/a.jpg\n2\n10 20 30 40 0 0 0 0 0 0 \n5 5 8 9 2 0 0 1 0 0 \n1--Handshaking/b.jpg\n0\n0 0 0 0 0 0 0 0 0 0\n",
    );
    let v = annot::load(&f, Format::Auto, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].name, "0--Parade/a.jpg");
    assert_eq!(v[0].path, d.path().join("0--Parade/a.jpg"));
    assert_eq!(px(&v[0].boxes[0]), Rect::from_xywh(10, 20, 30, 40));
    assert!(!v[0].boxes[0].ignore && v[0].boxes[1].ignore, "invalid=1 is ignored");
    assert!(v[1].boxes.is_empty());

    let bad = write(d.path(), "wider_face_x_bbx_gt.txt", "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n1 2 three 4\n");
    let (p, line, msg) = parse_line(annot::load(&bad, Format::Wider, &LoadOptions::default()).unwrap_err());
    assert_eq!((p, line), (bad.clone(), 4), "{msg}");
    let short = write(d.path(), "w2.txt", "a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n");
    let (_, line, msg) = parse_line(annot::load(&short, Format::Wider, &LoadOptions::default()).unwrap_err());
    assert!(line == 2 && msg.contains("1 of 3"), "{line} {msg}");
    let nocount = write(d.path(), "w3.txt", "a.jpg\nmany\n");
    assert_eq!(parse_line(annot::load(&nocount, Format::Wider, &LoadOptions::default()).unwrap_err()).1, 2);
}

#[test]
fn dlib_xml() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "faces.xml",
        "<?xml version='1.0' encoding='ISO-8859-1'?>\n<?xml-stylesheet type='text/xsl' href='image_metadata_stylesheet.xsl'?>\n\
         <dataset>\n<name>test</name>\n<!-- a comment with <box> inside -->\n<images>\n\
         <image file='2008_002470.jpg'>\n  <box top='181' left='274' width='52' height='53'/>\n\
           <box top='156' left='55' width='44' height='44' ignore='1'/>\n</image>\n\
         <image file=\"sub/b.jpg\">\n  <box top='1' left='2' width='3' height='4'>\n    <label>plate</label>\n    <part name='x' x='1' y='2'/>\n  </box>\n\
           <box top='1' left='2' width='3' height='4'><label>car</label></box>\n</image>\n<image file='empty.jpg'/>\n</images>\n</dataset>\n",
    );
    let v = annot::load(&f, Format::Auto, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 3);
    assert_eq!(px(&v[0].boxes[0]), Rect::from_xywh(274, 181, 52, 53));
    assert_eq!(v[0].boxes[0].class, Class::Face);
    assert!(v[0].boxes[1].ignore);
    assert_eq!(v[1].name, "sub/b.jpg");
    assert_eq!(v[1].boxes.len(), 1, "the `car` box is dropped");
    assert_eq!(v[1].boxes[0].class, Class::Plate);
    assert!(v[2].boxes.is_empty());

    // The committed dlib files load: 43 faces in all.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/dlib/faces");
    let n: usize = ["training.xml", "testing.xml"]
        .iter()
        .map(|x| annot::load(&root.join(x), Format::Auto, &LoadOptions::default()).unwrap())
        .map(|v| {
            assert!(v.iter().all(|i| i.path.is_file()), "images exist");
            v.iter().map(|i| i.boxes.len()).sum::<usize>()
        })
        .sum();
    assert_eq!(n, 43);

    for (text, line, what) in [
        ("<dataset>\n<images>\n<image file='a.jpg'>\n<box top='1' left='x' width='3' height='4'/>\n</image></images></dataset>", 4, "left"),
        ("<dataset>\n<images>\n<image>\n</image></images></dataset>", 3, "file"),
        ("<dataset>\n<box top='1' left='1' width='3' height='4'/>\n</dataset>", 2, "outside"),
        ("<dataset>\n<images>\n<image file='a.jpg'>\n<box top='1' left='2' width='3' height='4'>\n</image>", 4, "closed"),
        ("<dataset>\n\n<image file='a.jpg'\n", 3, "unterminated"),
        ("<dataset>\n<image file='a.jpg'>\n<box top=1 left='2' width='3' height='4'/>", 3, "quoted"),
    ] {
        let b = write(d.path(), "bad.xml", text);
        let (p, l, msg) = parse_line(annot::load(&b, Format::Dlib, &LoadOptions::default()).unwrap_err());
        assert_eq!((p, l), (b, line), "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn coco_json() {
    let d = tempfile::tempdir().unwrap();
    let f = write(
        d.path(),
        "coco.json",
        r#"{
  "images": [{"id": 1, "file_name": "x/a.jpg", "width": 100, "height": 50},
             {"id": 7, "file_name": "b.jpg"}],
  "annotations": [
    {"id": 1, "image_id": 1, "category_id": 3, "bbox": [10.4, 20.6, 30, 10], "iscrowd": 0},
    {"id": 2, "image_id": 1, "category_id": 4, "bbox": [1, 2, 3, 4]},
    {"id": 3, "image_id": 7, "category_id": 5, "bbox": [1, 2, 3, 4], "iscrowd": 1}
  ],
  "categories": [{"id": 3, "name": "license_plate"}, {"id": 4, "name": "person"}, {"id": 5, "name": "face"}]
}"#,
    );
    let v = annot::load(&f, Format::Auto, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].size, Some((100, 50)));
    assert_eq!(v[0].boxes.len(), 1, "person is dropped");
    assert_eq!((px(&v[0].boxes[0]), v[0].boxes[0].class), (Rect::new(10, 21, 40, 31), Class::Plate));
    assert!(v[1].boxes[0].ignore, "iscrowd");
    // The class map can turn `person` into faces.
    let mut o = LoadOptions::default();
    o.classes.extend("person=face").unwrap();
    assert_eq!(annot::load(&f, Format::Coco, &o).unwrap()[0].boxes.len(), 2);
    assert!(ClassMap::default().extend("person=car").is_err());

    let bad = write(d.path(), "c2.json", "{\n  \"images\": [\n    {\"id\": 1, \"file_name\": 5}\n  ]\n}");
    assert_eq!(parse_line(annot::load(&bad, Format::Coco, &LoadOptions::default()).unwrap_err()).1, 3);
    let bad = write(
        d.path(),
        "c3.json",
        "{\"images\": [{\"id\": 1, \"file_name\": \"a.jpg\"}],\n\"categories\": [{\"id\": 1, \"name\": \"face\"}],\n\"annotations\": [\n{\"image_id\": 1, \"category_id\": 1, \"bbox\": [0,0,1,1]},\n{\"image_id\": 9, \"category_id\": 1, \"bbox\": [0,0,1,1]}]}",
    );
    let (_, line, msg) = parse_line(annot::load(&bad, Format::Coco, &LoadOptions::default()).unwrap_err());
    assert!(line == 5 && msg.contains("image_id 9"), "{line} {msg}");
    let trunc = write(d.path(), "c4.json", "{\"images\": [\n");
    assert_eq!(parse_line(annot::load(&trunc, Format::Coco, &LoadOptions::default()).unwrap_err()).1, 2);
}

#[test]
fn yolo_txt() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("images");
    let labels = d.path().join("labels");
    std::fs::create_dir_all(imgs.join("s")).unwrap();
    image::RgbImage::new(200, 100).save(imgs.join("s/a.png")).unwrap();
    image::RgbImage::new(10, 10).save(imgs.join("b.JPG")).unwrap();
    write(&labels, "s/a.txt", "# comment\n0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.1 0.1\n\n");
    write(&labels, "b.txt", "");
    let v = annot::load(&labels, Format::Auto, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 2);
    let a = v.iter().find(|i| i.name == "s/a.png").expect("a.png");
    let g = a.boxes[0].to_pixels(200, 100);
    assert_eq!((g.rect, g.class), (Rect::new(80, 30, 120, 70), Class::Face));
    assert_eq!(a.boxes[1].class, Class::Plate);
    let mut o = LoadOptions::default();
    o.classes.set_yolo("person,face");
    let v = annot::load(&labels, Format::Yolo, &o).unwrap();
    let a = v.iter().find(|i| i.name == "s/a.png").unwrap();
    assert_eq!(a.boxes.len(), 1, "id 0 = person is dropped");
    assert_eq!(a.boxes[0].class, Class::Face);

    write(&labels, "s/a.txt", "0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.2\n");
    let (p, line, _) = parse_line(annot::load(&labels, Format::Yolo, &LoadOptions::default()).unwrap_err());
    assert_eq!((p, line), (labels.join("s/a.txt"), 2));
    write(&labels, "s/a.txt", "7 0.5 0.5 0.2 0.4\n");
    let (_, line, msg) = parse_line(annot::load(&labels, Format::Yolo, &LoadOptions::default()).unwrap_err());
    assert!(line == 1 && msg.contains("class id 7"), "{msg}");
    write(&labels, "s/a.txt", "0 0.5 0.5 0.2 40\n");
    assert_eq!(parse_line(annot::load(&labels, Format::Yolo, &LoadOptions::default()).unwrap_err()).1, 1);
    write(&labels, "s/a.txt", "0 0.5 0.5 0.2 0.4\n");
    write(&labels, "s/c.txt", "0 0.5 0.5 0.2 0.4\n");
    let (_, _, msg) = parse_line(annot::load(&labels, Format::Yolo, &LoadOptions::default()).unwrap_err());
    assert!(msg.contains("no image"), "{msg}");
}

#[test]
fn ccpd_names() {
    let d = tempfile::tempdir().unwrap();
    let name = "025-95_113-154&383_386&473-386&473_177&454_154&383_363&402-0_0_22_27_27_33_16-37-15.jpg";
    image::RgbImage::new(4, 4).save(d.path().join(name)).unwrap();
    image::RgbImage::new(4, 4).save(d.path().join("0001.jpg")).unwrap();
    let v = annot::load(d.path(), Format::Ccpd, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 2);
    let plate = v.iter().find(|i| i.name == name).unwrap();
    assert_eq!(px(&plate.boxes[0]), Rect::new(154, 383, 387, 474));
    assert_eq!(plate.boxes[0].class, Class::Plate);
    assert!(v.iter().find(|i| i.name == "0001.jpg").unwrap().boxes.is_empty(), "CCPD-NP");
    let p = Path::new("x.jpg");
    assert!(ccpd_box(p, "025-95_113-154&383-386&473-0-37-15").is_err());
    let e = ccpd_box(p, "025-95_113-154&383_386-386&473_177&454_154&383_363&402-0_0_22-37-15").unwrap_err();
    assert!(e.to_string().starts_with("x.jpg:1:"), "{e}");
    assert!(ccpd_box(p, "025-95_113-400&383_386&473-386&473_177&454_154&383_363&402-0_0_22-37-15").is_err());
}

#[test]
fn veil_json_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let file = VeilFile {
        format: annot::VEIL_FORMAT.into(),
        notes: "hand-made".into(),
        images: vec![VeilImage {
            file: "a.jpg".into(),
            width: Some(640),
            height: Some(480),
            sha256: None,
            boxes: vec![
                VeilBox { class: "face".into(), x: 1, y: 2, w: 3, h: 4, ignore: false, note: String::new() },
                VeilBox {
                    class: "plate".into(),
                    x: 5,
                    y: 6,
                    w: 7,
                    h: 8,
                    ignore: true,
                    note: "blurred".into(),
                },
            ],
        }],
    };
    let text = annot::veil_to_string(&file);
    let back: VeilFile = serde_json::from_str(&text).unwrap();
    assert_eq!(back, file);
    let f = write(d.path(), "labels.json", &text);
    let v = annot::load(&f, Format::Auto, &LoadOptions::default()).unwrap();
    assert_eq!(v[0].size, Some((640, 480)));
    assert_eq!(px(&v[0].boxes[1]), Rect::new(5, 6, 12, 14));
    assert!(v[0].boxes[1].ignore);

    for (text, line, what) in [
        ("{\"format\": \"veil-labels-v1\",\n \"images\": [\n {\"file\": \"a.jpg\", \"boxes\": [\n {\"class\": \"face\", \"x\": 1, \"y\": 2, \"w\": 0, \"h\": 4}]}]}", 3, "no area"),
        ("{\"format\": \"veil-labels-v1\",\n \"images\": [\n {\"file\": \"a.jpg\", \"boxes\": [\n {\"class\": \"cat\", \"x\": 1, \"y\": 2, \"w\": 3, \"h\": 4}]}]}", 3, "cat"),
        ("{\"format\": \"veil-labels-v1\",\n \"images\": [\n {\"file\": \"a.jpg\", \"boxes\": [\n {\"class\": \"face\", \"x\": 1, \"y\": 2, \"w\": 3}]}]}", 4, "`h`"),
        ("{\"format\": \"veil-labels-v1\",\n \"images\": [\n {\"file\": \"a.jpg\", \"colour\": 1, \"boxes\": []}]}", 3, "colour"),
        ("{\"format\": \"other\",\n \"images\": []}", 1, "format"),
    ] {
        let b = write(d.path(), "bad.json", text);
        let (p, l, msg) = parse_line(annot::load(&b, Format::Veil, &LoadOptions::default()).unwrap_err());
        assert_eq!((p, l), (b, line), "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
}

#[test]
fn format_guessing() {
    let d = tempfile::tempdir().unwrap();
    let v = write(d.path(), "v.json", "{\"format\": \"veil-labels-v1\", \"images\": []}");
    let c = write(d.path(), "c.json", "{\"images\": [], \"annotations\": []}");
    assert_eq!(annot::guess(&v).unwrap(), Format::Veil);
    assert_eq!(annot::guess(&c).unwrap(), Format::Coco);
    assert_eq!(annot::guess(&write(d.path(), "x.xml", "")).unwrap(), Format::Dlib);
    assert!(annot::guess(&write(d.path(), "x.csv", "")).is_err());
    let bin = d.path().join("bin.txt");
    std::fs::write(&bin, b"a.jpg\n1\n\xff\xfe\n").unwrap();
    assert_eq!(parse_line(annot::load(&bin, Format::Wider, &LoadOptions::default()).unwrap_err()).1, 3);
}
