//! The measurements: size buckets, the redacted-pixel [`Mask`], per-image evaluation
//! ([`evaluate`]) and the running totals ([`Tally`]) that become the report.
//!
//! Definitions (all per class, and per size bucket of the box's shorter side):
//! * **coverage recall**: share of non-ignored ground-truth boxes with at least
//!   [`Params::coverage`] of their pixels (clipped to the image) redacted;
//! * **detection recall / precision**: greedy matching at IoU ≥ [`Params::iou`], detections in
//!   descending score order, each to the unmatched non-ignored box of its class it overlaps most;
//!   a second detection on an already matched box is a false positive; a detection matching only
//!   an ignored box is neither. Precision buckets use the detection's own size;
//! * **average precision**: the WIDER FACE protocol (each detection is assigned to the box of
//!   its class it overlaps most; if that IoU ≥ 0.5 and the box is ignored or outside the bucket,
//!   the detection is not counted; scores min-max normalised, 1000 thresholds, VOC all-point
//!   interpolation). Buckets are evaluated like WIDER's easy/medium/hard subsets: boxes of the
//!   other buckets are ignored;
//! * **residual**: non-ignored boxes in which the residual detector, run on the redacted output,
//!   finds an object of the same class with IoU ≥ [`Params::residual_iou`];
//! * **false redaction**: redacted pixels outside every ground-truth box (ignored ones
//!   included) over all redacted pixels.

use veil_core::detect::{Class, Detection};
use veil_core::frame::Rect;

use super::annot::GtBox;

/// Number of size buckets.
pub const BUCKETS: usize = 5;
/// Bucket names, by the shorter side of a box in pixels.
pub const BUCKET_NAMES: [&str; BUCKETS] = ["<16", "16-32", "32-64", "64-128", ">=128"];

/// The size bucket of a box: its shorter side `< 16`, `16..32`, `32..64`, `64..128`, `>= 128`.
pub fn bucket_of(r: &Rect) -> usize {
    match r.width().min(r.height()) {
        s if s < 16 => 0,
        s if s < 32 => 1,
        s if s < 64 => 2,
        s if s < 128 => 3,
        _ => 4,
    }
}

/// Intersection over union, exact.
pub fn iou(a: &Rect, b: &Rect) -> f64 {
    let inter = a.intersect(b).area();
    let union = a.area() + b.area() - inter;
    if union <= 0 || inter <= 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

/// Which pixels of an image were redacted, one byte per pixel (0 or 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    width: u32,
    height: u32,
    bits: Vec<u8>,
}

impl Mask {
    /// An empty mask.
    pub fn new(width: u32, height: u32) -> Self {
        Mask { width, height, bits: vec![0; width as usize * height as usize] }
    }
    /// Width.
    pub fn width(&self) -> u32 {
        self.width
    }
    /// Height.
    pub fn height(&self) -> u32 {
        self.height
    }
    /// The bytes, row-major, 0 or 1.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }
    /// The bytes, mutably (callers store only 0 or 1).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bits
    }
    /// Mark every pixel of `r` (clipped).
    pub fn fill_rect(&mut self, r: &Rect) {
        let c = r.clip(self.width, self.height);
        for y in c.y0.max(0)..c.y1.max(0) {
            let row = y as usize * self.width as usize;
            if let Some(s) = self.bits.get_mut(row + c.x0.max(0) as usize..row + c.x1.max(0) as usize) {
                s.fill(1);
            }
        }
    }
    /// Is `(x, y)` redacted? (False outside the image.)
    pub fn get(&self, x: u32, y: u32) -> bool {
        x < self.width
            && self.bits.get(y as usize * self.width as usize + x as usize).is_some_and(|&b| b != 0)
    }
    /// Redacted pixels inside `r` (clipped).
    pub fn count_in(&self, r: &Rect) -> u64 {
        let c = r.clip(self.width, self.height);
        let mut n = 0u64;
        for y in c.y0.max(0)..c.y1.max(0) {
            let row = y as usize * self.width as usize;
            if let Some(s) = self.bits.get(row + c.x0.max(0) as usize..row + c.x1.max(0) as usize) {
                n += s.iter().filter(|&&b| b != 0).count() as u64;
            }
        }
        n
    }
    /// Redacted pixels in the image.
    pub fn count(&self) -> u64 {
        self.bits.iter().filter(|&&b| b != 0).count() as u64
    }
}

/// Thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Share of a box's pixels that must be redacted for it to count as anonymised (0.9).
    pub coverage: f64,
    /// IoU for a detection to match a box (0.5).
    pub iou: f64,
    /// IoU for a residual detection to count against a box (0.3).
    pub residual_iou: f64,
}

impl Default for Params {
    fn default() -> Self {
        Params { coverage: 0.9, iou: 0.5, residual_iou: 0.3 }
    }
}

/// One ground-truth box after evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GtResult {
    /// The box.
    pub gt: GtBox,
    /// Its bucket.
    pub bucket: usize,
    /// Share of its pixels (inside the image) redacted, `0..=1`; `None` when it lies outside.
    pub coverage: Option<f64>,
    /// Coverage reached the threshold.
    pub covered: bool,
    /// A detection matched it at IoU ≥ `iou`.
    pub detected: bool,
    /// The residual detector still found it (`None`: not run).
    pub residual: Option<bool>,
}

/// What became of a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetStatus {
    /// Matched a box.
    TruePositive,
    /// Matched nothing (or a box already matched).
    FalsePositive,
    /// Matched only an ignored box.
    Ignored,
}

/// One detection after evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DetResult {
    /// The detection.
    pub det: Detection,
    /// Its bucket (its own size).
    pub bucket: usize,
    /// Its status.
    pub status: DetStatus,
}

/// Per image and class, what WIDER's AP needs: boxes (bucket, ignored) and detections (score,
/// index of the box with the highest IoU if that IoU reaches the threshold), by descending score.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApImage {
    /// `(bucket, ignored)` per box of the class.
    pub gts: Vec<(u8, bool)>,
    /// `(score, matched box)` per detection of the class.
    pub preds: Vec<(u16, Option<u32>)>,
}

/// Everything measured on one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageResult {
    /// Per ground-truth box.
    pub gts: Vec<GtResult>,
    /// Per detection.
    pub dets: Vec<DetResult>,
    /// AP inputs per class.
    pub ap: [ApImage; Class::COUNT],
    /// Pixels in the image.
    pub pixels: u64,
    /// Redacted pixels.
    pub redacted: u64,
    /// Redacted pixels outside every ground-truth box.
    pub redacted_outside: u64,
}

/// Evaluate one image: `gts` ground truth, `dets` the pipeline's detections, `mask` the redacted
/// pixels of the output, `residual` the residual detector's detections on the output.
pub fn evaluate(
    gts: &[GtBox],
    dets: &[Detection],
    mask: &Mask,
    residual: Option<&[Detection]>,
    p: &Params,
) -> ImageResult {
    let (w, h) = (mask.width(), mask.height());
    let mut res: Vec<GtResult> = gts
        .iter()
        .map(|g| {
            let clipped = g.rect.clip(w, h);
            let coverage =
                (!clipped.is_empty()).then(|| mask.count_in(&clipped) as f64 / clipped.area() as f64);
            GtResult {
                gt: *g,
                bucket: bucket_of(&g.rect),
                coverage,
                // Compare with a small tolerance so 0.9 of 10 pixels (9/10) counts.
                covered: coverage.is_some_and(|c| c + 1e-9 >= p.coverage),
                detected: false,
                residual: None,
            }
        })
        .collect();

    // Greedy matching in descending score order (stable tie-break by position).
    let mut order: Vec<usize> = (0..dets.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(dets[i].score), dets[i].rect.y0, dets[i].rect.x0, i));
    let mut det_res: Vec<Option<DetResult>> = vec![None; dets.len()];
    for &i in &order {
        let d = dets[i];
        let mut best: Option<(usize, f64)> = None;
        let mut hits_ignored = false;
        for (j, g) in res.iter().enumerate() {
            if g.gt.class != d.class {
                continue;
            }
            let v = iou(&d.rect, &g.gt.rect);
            if v + 1e-12 < p.iou {
                continue;
            }
            if g.gt.ignore {
                hits_ignored = true;
            } else if !g.detected && best.is_none_or(|(_, b)| v > b) {
                best = Some((j, v));
            }
        }
        let status = match best {
            Some((j, _)) => {
                res[j].detected = true;
                DetStatus::TruePositive
            }
            None if hits_ignored => DetStatus::Ignored,
            None => DetStatus::FalsePositive,
        };
        det_res[i] = Some(DetResult { det: d, bucket: bucket_of(&d.rect), status });
    }

    if let Some(r) = residual {
        for g in res.iter_mut().filter(|g| !g.gt.ignore) {
            g.residual = Some(
                r.iter().any(|d| d.class == g.gt.class && iou(&d.rect, &g.gt.rect) + 1e-12 >= p.residual_iou),
            );
        }
    }

    // WIDER AP inputs.
    let ap = Class::ALL.map(|c| {
        let idx: Vec<usize> = (0..gts.len()).filter(|&j| gts[j].class == c).collect();
        let gts_c: Vec<(u8, bool)> =
            idx.iter().map(|&j| (bucket_of(&gts[j].rect) as u8, gts[j].ignore)).collect();
        let mut preds: Vec<(u16, Option<u32>)> = order
            .iter()
            .map(|&i| dets[i])
            .filter(|d| d.class == c)
            .map(|d| {
                let mut best: Option<(u32, f64)> = None;
                for (k, &j) in idx.iter().enumerate() {
                    let v = iou(&d.rect, &gts[j].rect);
                    if best.is_none_or(|(_, b)| v > b) {
                        best = Some((k as u32, v));
                    }
                }
                (d.score, best.filter(|&(_, v)| v + 1e-12 >= 0.5).map(|(k, _)| k))
            })
            .collect();
        preds.sort_by_key(|&(s, _)| std::cmp::Reverse(s));
        ApImage { gts: gts_c, preds }
    });

    // Pixels: redacted, and redacted outside every box.
    let mut inside = Mask::new(w, h);
    for g in gts {
        inside.fill_rect(&g.rect);
    }
    let redacted = mask.count();
    let redacted_inside =
        mask.as_bytes().iter().zip(inside.as_bytes()).filter(|(&m, &i)| m != 0 && i != 0).count() as u64;
    ImageResult {
        gts: res,
        dets: det_res.into_iter().flatten().collect(),
        ap,
        pixels: u64::from(w) * u64::from(h),
        redacted,
        redacted_outside: redacted - redacted_inside,
    }
}

/// Counts of one (class, bucket) cell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Non-ignored boxes.
    pub gt: u64,
    /// Ignored boxes.
    pub ignored: u64,
    /// Boxes lying entirely outside their image (not counted in `gt`).
    pub outside: u64,
    /// Boxes redacted to the coverage threshold.
    pub covered: u64,
    /// Boxes matched by a detection.
    pub detected: u64,
    /// Boxes the residual detector was run on.
    pub residual_checked: u64,
    /// Boxes the residual detector still found.
    pub residual: u64,
    /// Detections (bucketed by their own size), ignored ones excluded.
    pub dets: u64,
    /// True-positive detections.
    pub det_tp: u64,
}

/// Running totals over a data set.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Counts per class and bucket.
    pub counts: [[Counts; BUCKETS]; Class::COUNT],
    /// AP inputs per class, one entry per image with boxes or detections of that class.
    pub ap: [Vec<ApImage>; Class::COUNT],
    /// Images evaluated.
    pub images: u64,
    /// Pixels over all images.
    pub pixels: u64,
    /// Redacted pixels.
    pub redacted: u64,
    /// Redacted pixels outside every box.
    pub redacted_outside: u64,
}

impl Tally {
    /// Add one image.
    pub fn add(&mut self, r: ImageResult) {
        self.images += 1;
        self.pixels += r.pixels;
        self.redacted += r.redacted;
        self.redacted_outside += r.redacted_outside;
        for g in &r.gts {
            let c = &mut self.counts[g.gt.class.index()][g.bucket];
            if g.gt.ignore {
                c.ignored += 1;
                continue;
            }
            if g.coverage.is_none() {
                c.outside += 1;
                continue;
            }
            c.gt += 1;
            c.covered += u64::from(g.covered);
            c.detected += u64::from(g.detected);
            if let Some(res) = g.residual {
                c.residual_checked += 1;
                c.residual += u64::from(res);
            }
        }
        for d in &r.dets {
            let c = &mut self.counts[d.det.class.index()][d.bucket];
            match d.status {
                DetStatus::TruePositive => {
                    c.dets += 1;
                    c.det_tp += 1;
                }
                DetStatus::FalsePositive => c.dets += 1,
                DetStatus::Ignored => {}
            }
        }
        for (k, a) in r.ap.into_iter().enumerate() {
            if !(a.gts.is_empty() && a.preds.is_empty()) {
                self.ap[k].push(a);
            }
        }
    }

    /// Sum of the buckets of `class`.
    pub fn total(&self, class: Class) -> Counts {
        let mut t = Counts::default();
        for c in &self.counts[class.index()] {
            t.gt += c.gt;
            t.ignored += c.ignored;
            t.outside += c.outside;
            t.covered += c.covered;
            t.detected += c.detected;
            t.residual_checked += c.residual_checked;
            t.residual += c.residual;
            t.dets += c.dets;
            t.det_tp += c.det_tp;
        }
        t
    }
}

/// Average precision of `class` with the WIDER FACE protocol, over the boxes of `bucket` (all
/// buckets when `None`). `None` when there is no such box.
pub fn wider_ap(images: &[ApImage], bucket: Option<usize>) -> Option<f64> {
    const STEPS: usize = 1000;
    let in_subset = |&(b, ign): &(u8, bool)| !ign && bucket.is_none_or(|k| usize::from(b) == k);
    let count_gt: usize = images.iter().map(|im| im.gts.iter().filter(|g| in_subset(g)).count()).sum();
    if count_gt == 0 {
        return None;
    }
    // (score, recalls a new box) for every counted proposal.
    let mut events: Vec<(u16, bool)> = Vec::new();
    for im in images {
        let mut recalled = vec![false; im.gts.len()];
        for &(score, m) in &im.preds {
            match m.and_then(|k| im.gts.get(k as usize).map(|g| (k as usize, g))) {
                Some((_, g)) if !in_subset(g) => {} // matches an ignored box: not a proposal
                Some((k, _)) => {
                    let new = !recalled[k];
                    recalled[k] = true;
                    events.push((score, new));
                }
                None => events.push((score, false)),
            }
        }
    }
    let (lo, hi) = events.iter().fold((u16::MAX, 0u16), |(l, h), &(s, _)| (l.min(s), h.max(s)));
    let norm = |s: u16| if hi > lo { f64::from(s - lo) / f64::from(hi - lo) } else { 1.0 };
    // proposals and recalls at threshold k = 1 - (k + 1) / STEPS.
    let mut prop = [0u64; STEPS];
    let mut rec = [0u64; STEPS];
    for &(s, new) in &events {
        let v = norm(s);
        // Smallest k with v >= 1 - (k + 1) / STEPS, i.e. k >= (1 - v) * STEPS - 1.
        let k = (((1.0 - v) * STEPS as f64 - 1.0 - 1e-9).ceil().max(0.0) as usize).min(STEPS - 1);
        prop[k] += 1;
        rec[k] += u64::from(new);
    }
    let mut recall = Vec::with_capacity(STEPS);
    let mut precision = Vec::with_capacity(STEPS);
    let (mut p, mut r) = (0u64, 0u64);
    for k in 0..STEPS {
        p += prop[k];
        r += rec[k];
        precision.push(if p == 0 { 0.0 } else { r as f64 / p as f64 });
        recall.push(r as f64 / count_gt as f64);
    }
    Some(voc_ap(&recall, &precision))
}

/// VOC all-point interpolated area under a precision-recall curve (recall non-decreasing).
pub fn voc_ap(recall: &[f64], precision: &[f64]) -> f64 {
    let mut mrec = Vec::with_capacity(recall.len() + 2);
    let mut mpre = Vec::with_capacity(recall.len() + 2);
    mrec.push(0.0);
    mpre.push(0.0);
    mrec.extend_from_slice(recall);
    mpre.extend_from_slice(precision);
    mrec.push(1.0);
    mpre.push(0.0);
    for i in (1..mpre.len()).rev() {
        mpre[i - 1] = mpre[i - 1].max(mpre[i]);
    }
    let mut ap = 0.0;
    for i in 0..mrec.len() - 1 {
        if mrec[i + 1] != mrec[i] {
            ap += (mrec[i + 1] - mrec[i]) * mpre[i + 1];
        }
    }
    ap
}
