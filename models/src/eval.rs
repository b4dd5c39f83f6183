//! Evaluation helpers: dlib imglab box files and int8-vs-fp32 parity on annotated faces.

use std::path::Path;

use crate::{iou, nms, run_int8, Error, Fp32Model, HostDet, RgbImage};

/// Boxes of a dlib imglab XML file: `(image file, [x0, y0, x1, y1] per box)`.
pub fn dlib_boxes(xml: &str) -> Vec<(String, Vec<[f32; 4]>)> {
    let attr = |s: &str, k: &str| -> Option<f32> {
        let p = s.find(&format!("{k}='"))? + k.len() + 2;
        s[p..].split('\'').next()?.parse().ok()
    };
    let mut out: Vec<(String, Vec<[f32; 4]>)> = Vec::new();
    for line in xml.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("<image file='") {
            out.push((rest.split('\'').next().unwrap_or_default().to_string(), Vec::new()));
        } else if l.starts_with("<box ") {
            if let (Some(t), Some(le), Some(w), Some(h), Some(last)) =
                (attr(l, "top"), attr(l, "left"), attr(l, "width"), attr(l, "height"), out.last_mut())
            {
                last.1.push([le, t, le + w, t + h]);
            }
        }
    }
    out
}

/// Result of [`parity`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parity {
    /// Annotated faces.
    pub annotated: usize,
    /// Found by fp32 (IoU ≥ 0.5 with the annotation).
    pub fp32_found: usize,
    /// Found by int8.
    pub int8_found: usize,
    /// Found by fp32 but not by int8.
    pub int8_missed: usize,
    /// IoU between the int8 and fp32 boxes matched to the same annotation.
    pub ious: Vec<f32>,
}

impl Parity {
    /// Mean of [`Parity::ious`].
    pub fn mean_iou(&self) -> f32 {
        self.ious.iter().sum::<f32>() / self.ious.len().max(1) as f32
    }
}

fn best<'a>(dets: &'a [HostDet], g: &[f32; 4]) -> Option<&'a HostDet> {
    dets.iter().filter(|d| iou(&d.rect, g) >= 0.5).max_by(|a, b| iou(&a.rect, g).total_cmp(&iou(&b.rect, g)))
}

/// Run the int8 blob and the fp32 model on every annotated image (`dir` holds the images, `xmls`
/// the dlib files) at `max` input size, score threshold `thr`, NMS 0.4, and compare.
pub fn parity(
    blob: &[u8],
    fp: &Fp32Model,
    dir: &Path,
    xmls: &[&str],
    max: (u32, u32),
    thr: f32,
) -> Result<Parity, Error> {
    let mut p = Parity::default();
    for xml in xmls {
        for (file, boxes) in dlib_boxes(xml) {
            let img = RgbImage::load_jpeg(&dir.join(&file))?;
            let d32 = nms(fp.detect(&img, max, thr)?, 0.4);
            let d8 = nms(run_int8(blob, &img, max, thr)?, 0.4);
            for g in &boxes {
                p.annotated += 1;
                let (a, b) = (best(&d32, g), best(&d8, g));
                p.fp32_found += a.is_some() as usize;
                p.int8_found += b.is_some() as usize;
                match (a, b) {
                    (Some(a), Some(b)) => p.ious.push(iou(&a.rect, &b.rect)),
                    (Some(_), None) => p.int8_missed += 1,
                    _ => {}
                }
            }
        }
    }
    Ok(p)
}
