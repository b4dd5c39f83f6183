//! Stage 1 — `detect`: the [`Detector`] trait and the post-processing every detector shares.
//!
//! A detector fills a caller-owned `heapless` vector with [`Detection`]s. [`postprocess`] then
//! applies, in this order: per-class score thresholds, minimum/maximum box size, exclusion zones,
//! and non-maximum suppression (the highest score wins; ties broken by position so the result is
//! deterministic). Scores are Q16 fixed point: `65535` ≈ 1.0.

use heapless::vec::VecView;

use crate::frame::{Frame, Rect};

/// What was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Class {
    /// A human face.
    Face = 0,
    /// A vehicle licence plate.
    Plate = 1,
}

impl Class {
    /// Number of classes (size of per-class tables).
    pub const COUNT: usize = 2;
    /// All classes.
    pub const ALL: [Class; 2] = [Class::Face, Class::Plate];
    /// Index into per-class tables.
    pub const fn index(self) -> usize {
        self as usize
    }
    /// The lower-case name (`face`, `plate`).
    pub const fn name(self) -> &'static str {
        match self {
            Class::Face => "face",
            Class::Plate => "plate",
        }
    }
    /// Inverse of [`Class::index`].
    pub const fn from_index(i: u8) -> Option<Class> {
        match i {
            0 => Some(Class::Face),
            1 => Some(Class::Plate),
            _ => None,
        }
    }
}

/// A detection score in Q16 fixed point (`0` = 0.0, `65535` ≈ 1.0).
pub type Score = u16;

/// Convert a score in thousandths (0..=1000) to [`Score`].
pub const fn score_from_milli(milli: u16) -> Score {
    let m = if milli > 1000 { 1000 } else { milli } as u32;
    ((m * 65535 + 500) / 1000) as Score
}

/// One detected object in frame pixel coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Detection {
    /// The bounding box.
    pub rect: Rect,
    /// The class.
    pub class: Class,
    /// Confidence, Q16.
    pub score: Score,
}

/// Why detection failed. Any of these makes the pipeline fail closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DetectError {
    /// More detections than the output vector holds.
    CapacityExceeded,
    /// The detector cannot read this pixel format or size.
    UnsupportedInput,
    /// The model or its working memory is unusable (see the detector's own diagnostics).
    Model,
    /// A detector-specific failure code.
    Failed(u16),
}

impl core::fmt::Display for DetectError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DetectError::CapacityExceeded => f.write_str("more detections than capacity"),
            DetectError::UnsupportedInput => f.write_str("detector cannot read this frame"),
            DetectError::Model => f.write_str("detector model unusable"),
            DetectError::Failed(c) => write!(f, "detector failed (code {c})"),
        }
    }
}

/// A face/plate detector. Implementations must not allocate on the device; they write into
/// `out` (already cleared by the caller) and return [`DetectError::CapacityExceeded`] rather than
/// silently dropping detections when it is full.
pub trait Detector {
    /// Detect objects in `frame`, appending them to `out`.
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError>;

    /// A 16-byte identifier of the model and its version, recorded in the evidence chain.
    fn model_id(&self) -> [u8; 16];
}

impl<D: Detector + ?Sized> Detector for &mut D {
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError> {
        (**self).detect(frame, out)
    }
    fn model_id(&self) -> [u8; 16] {
        (**self).model_id()
    }
}

/// Maximum number of exclusion zones in a [`Filter`].
pub const MAX_EXCLUSIONS: usize = 8;

/// Post-processing settings shared by every detector.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Filter {
    /// Minimum score per class, Q16 (index with [`Class::index`]).
    pub threshold: [Score; Class::COUNT],
    /// Minimum of a box's shorter side, in pixels.
    pub min_size: u32,
    /// Maximum of a box's longer side, in pixels (0 = no limit).
    pub max_size: u32,
    /// Detections whose centre lies in one of these zones are dropped (e.g. a poster, a mirror).
    pub exclusions: heapless::Vec<Rect, MAX_EXCLUSIONS>,
    /// Classes to keep (index with [`Class::index`]).
    pub enabled: [bool; Class::COUNT],
    /// IoU above which the lower-scored of two same-class boxes is suppressed, Q16.
    pub nms_iou: u32,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            threshold: [score_from_milli(500), score_from_milli(500)],
            min_size: 0,
            max_size: 0,
            exclusions: heapless::Vec::new(),
            enabled: [true; Class::COUNT],
            nms_iou: 0x6666, // 0.4
        }
    }
}

impl Filter {
    /// True when `d` passes thresholds, size limits, class selection and exclusion zones.
    pub fn keeps(&self, d: &Detection) -> bool {
        let i = d.class.index();
        if !self.enabled[i] || d.score < self.threshold[i] {
            return false;
        }
        let (w, h) = (d.rect.width() as u32, d.rect.height() as u32);
        if w == 0 || h == 0 || w.min(h) < self.min_size {
            return false;
        }
        if self.max_size != 0 && w.max(h) > self.max_size {
            return false;
        }
        // Centre in doubled coordinates, so odd sizes need no rounding.
        let cx = d.rect.x0 as i64 + d.rect.x1 as i64;
        let cy = d.rect.y0 as i64 + d.rect.y1 as i64;
        !self.exclusions.iter().any(|z| {
            cx >= 2 * z.x0 as i64 && cx < 2 * z.x1 as i64 && cy >= 2 * z.y0 as i64 && cy < 2 * z.y1 as i64
        })
    }
}

/// Apply `filter` and non-maximum suppression to `dets` in place.
///
/// NMS is greedy per class: detections are ordered by score (descending; ties by class, then
/// position, then size, so the order is total and the result deterministic), and each one is
/// kept unless a kept detection of the same class overlaps it with IoU above `filter.nms_iou`.
pub fn postprocess(dets: &mut VecView<Detection>, filter: &Filter) {
    dets.retain(|d| filter.keeps(d));
    sort_by_score(dets);
    let mut kept = 0usize;
    for i in 0..dets.len() {
        let d = dets[i];
        let suppressed =
            dets[..kept].iter().any(|k| k.class == d.class && k.rect.iou_q16(&d.rect) > filter.nms_iou);
        if !suppressed {
            dets[kept] = d;
            kept += 1;
        }
    }
    dets.truncate(kept);
}

/// Sort detections by descending score with a total, deterministic tie-break.
pub fn sort_by_score(dets: &mut [Detection]) {
    let key =
        |d: &Detection| (core::cmp::Reverse(d.score), d.class, d.rect.y0, d.rect.x0, d.rect.y1, d.rect.x1);
    // Insertion sort: no allocation, stable, and detection counts are small.
    for i in 1..dets.len() {
        let mut j = i;
        while j > 0 && key(&dets[j - 1]) > key(&dets[j]) {
            dets.swap(j - 1, j);
            j -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heapless::Vec;

    fn det(x: i32, y: i32, s: i32, score: Score, class: Class) -> Detection {
        Detection { rect: Rect::from_xywh(x, y, s, s), class, score }
    }

    #[test]
    fn nms_keeps_highest_score() {
        let mut v: Vec<Detection, 8> = Vec::new();
        v.push(det(0, 0, 100, 40000, Class::Face)).unwrap();
        v.push(det(5, 5, 100, 60000, Class::Face)).unwrap();
        v.push(det(2, 2, 100, 50000, Class::Plate)).unwrap();
        v.push(det(500, 500, 50, 45000, Class::Face)).unwrap();
        postprocess(v.as_mut_view(), &Filter::default());
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].score, 60000);
        assert_eq!(v[1], det(2, 2, 100, 50000, Class::Plate));
        assert_eq!(v[2].rect.x0, 500);
    }

    #[test]
    fn filter_thresholds_sizes_and_zones() {
        let mut f = Filter {
            threshold: [score_from_milli(600), score_from_milli(300)],
            min_size: 10,
            max_size: 200,
            ..Filter::default()
        };
        f.exclusions.push(Rect::new(0, 0, 50, 50)).unwrap();
        assert!(!f.keeps(&det(100, 100, 20, score_from_milli(599), Class::Face)));
        assert!(f.keeps(&det(100, 100, 20, score_from_milli(600), Class::Face)));
        assert!(f.keeps(&det(100, 100, 20, score_from_milli(300), Class::Plate)));
        assert!(!f.keeps(&det(100, 100, 9, 65535, Class::Face)));
        assert!(!f.keeps(&det(100, 100, 201, 65535, Class::Face)));
        assert!(!f.keeps(&det(10, 10, 20, 65535, Class::Face)), "centre (20,20) is excluded");
        assert!(f.keeps(&det(40, 40, 30, 65535, Class::Face)), "centre (55,55) is not");
        f.enabled[Class::Plate.index()] = false;
        assert!(!f.keeps(&det(100, 100, 20, 65535, Class::Plate)));
    }

    #[test]
    fn score_conversion() {
        assert_eq!(score_from_milli(0), 0);
        assert_eq!(score_from_milli(1000), 65535);
        assert_eq!(score_from_milli(5000), 65535);
        assert_eq!(score_from_milli(500), 32768);
    }
}
