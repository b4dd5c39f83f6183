//! Review images: the input with the redacted area tinted magenta, ground-truth boxes
//! (green: covered, red: missed, grey: ignored; 2 px, drawn just outside the box), pipeline
//! detections (cyan, 1 px) and residual detections (yellow, 1 px, inside the box).

use image::{Rgb, RgbImage};
use veil_core::detect::Detection;
use veil_core::frame::Rect;

use super::metrics::{ImageResult, Mask};

/// Colour of a covered box.
pub const COVERED: [u8; 3] = [40, 220, 40];
/// Colour of a missed box.
pub const MISSED: [u8; 3] = [255, 30, 30];
/// Colour of an ignored box.
pub const IGNORED: [u8; 3] = [160, 160, 160];
/// Colour of a detection.
pub const DETECTION: [u8; 3] = [0, 220, 255];
/// Colour of a residual detection.
pub const RESIDUAL: [u8; 3] = [255, 230, 0];

/// Draw the review image.
pub fn render(input: &RgbImage, mask: &Mask, r: &ImageResult, residual: &[Detection]) -> RgbImage {
    let mut img = input.clone();
    for (i, p) in img.pixels_mut().enumerate() {
        if mask.as_bytes().get(i).is_some_and(|&m| m != 0) {
            let t = [255u16, 0, 255];
            for (v, t) in p.0.iter_mut().zip(t) {
                *v = ((u16::from(*v) * 5 + t * 3) / 8) as u8;
            }
        }
    }
    for d in &r.dets {
        rect(&mut img, &d.det.rect, DETECTION, 1, 0);
    }
    for d in residual {
        rect(&mut img, &d.rect, RESIDUAL, 1, -1);
    }
    for g in &r.gts {
        let c = if g.gt.ignore {
            IGNORED
        } else if g.covered {
            COVERED
        } else {
            MISSED
        };
        rect(&mut img, &g.gt.rect, c, 2, 1);
    }
    img
}

/// Outline `r` with `thick` lines starting `offset` pixels outside it (negative: inside).
pub fn rect(img: &mut RgbImage, r: &Rect, colour: [u8; 3], thick: i32, offset: i32) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut put = |x: i32, y: i32| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    };
    for t in 0..thick {
        let k = offset + t;
        let (x0, y0, x1, y1) = (r.x0 - k, r.y0 - k, r.x1 - 1 + k, r.y1 - 1 + k);
        if x1 < x0 || y1 < y0 {
            continue;
        }
        for x in x0..=x1 {
            put(x, y0);
            put(x, y1);
        }
        for y in y0..=y1 {
            put(x0, y);
            put(x1, y);
        }
    }
}
