//! `veil synth`: the same seed gives byte-identical files; labels are consistent.

use std::path::Path;

use veil_sim::eval::annot::{self, Format, LoadOptions};
use veil_sim::synth::{generate, SynthOptions};

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn same_seed_same_bytes() {
    let (a, b, c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = |d: &Path, seed| {
        let mut o = SynthOptions::with_repo_defaults(d.to_path_buf(), 6, seed);
        o.max_size = (480, 360);
        o
    };
    let sa = generate(&opts(a.path(), 42)).unwrap();
    let sb = generate(&opts(b.path(), 42)).unwrap();
    assert_eq!((sa.images, sa.faces, sa.plates), (sb.images, sb.faces, sb.plates));
    generate(&opts(c.path(), 43)).unwrap();
    assert_eq!(sa.images, 6);
    assert!(sa.faces + sa.plates >= 6, "{sa:?}");
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 7, "6 images + labels.json");
    assert!(fa == fb, "same seed, same bytes");
    assert!(fa != fc, "another seed, another set");

    // Labels load, match the images and stay inside them.
    let v = annot::load(&sa.labels, Format::Veil, &LoadOptions::default()).unwrap();
    assert_eq!(v.len(), 6);
    let mut boxes = 0;
    for im in &v {
        let img = image::open(&im.path).unwrap();
        assert_eq!(im.size, Some((img.width(), img.height())));
        for b in &im.boxes {
            let g = b.to_pixels(img.width(), img.height());
            assert!(g.rect.x0 >= 0 && g.rect.y0 >= 0, "{g:?}");
            assert!(g.rect.x1 <= img.width() as i32 && g.rect.y1 <= img.height() as i32, "{g:?}");
            boxes += 1;
        }
    }
    assert_eq!(boxes, sa.faces + sa.plates);
}
