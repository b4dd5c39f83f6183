//! The evaluation report: per class and size bucket, as a text table or JSON.

use serde::Serialize;
use veil_core::detect::Class;

use super::metrics::{wider_ap, Counts, Tally, BUCKETS, BUCKET_NAMES};
use super::EvalOptions;

/// Totals that are not per box.
#[derive(Clone, Copy, Debug, Default)]
pub struct Extra {
    /// Pixels changed outside the reported regions.
    pub changed_outside_regions: u64,
    /// Pixels inside reported regions left unchanged.
    pub unchanged_inside_regions: u64,
    /// Frames the pipeline redacted entirely (failed closed).
    pub whole_frame: u64,
    /// Images with at least one box not covered.
    pub per_image_missed: u64,
}

/// One row: a class and a bucket (or all buckets).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Bucket name (`all` for the total).
    pub bucket: &'static str,
    /// The counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// covered / gt.
    pub coverage_recall: Option<f64>,
    /// detected / gt.
    pub detection_recall: Option<f64>,
    /// det_tp / dets.
    pub precision: Option<f64>,
    /// WIDER FACE average precision.
    pub ap: Option<f64>,
    /// residual / residual_checked.
    pub residual_rate: Option<f64>,
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl Row {
    fn new(bucket: &'static str, counts: Counts, ap: Option<f64>) -> Self {
        Row {
            bucket,
            counts,
            coverage_recall: ratio(counts.covered, counts.gt),
            detection_recall: ratio(counts.detected, counts.gt),
            precision: ratio(counts.det_tp, counts.dets),
            ap,
            residual_rate: ratio(counts.residual, counts.residual_checked),
        }
    }
}

/// The rows of one class.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClassReport {
    /// `face` or `plate`.
    pub class: &'static str,
    /// All buckets together.
    pub all: Row,
    /// One row per bucket.
    pub buckets: Vec<Row>,
}

/// Pixel totals.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Pixels {
    /// Pixels of all images.
    pub image: u64,
    /// Redacted pixels.
    pub redacted: u64,
    /// Redacted pixels outside every ground-truth box.
    pub redacted_outside_gt: u64,
    /// redacted_outside_gt / redacted.
    pub false_redaction: Option<f64>,
    /// Pixels that changed outside the regions the pipeline reported (should be 0).
    pub changed_outside_regions: u64,
    /// Pixels inside reported regions whose value did not change (by chance).
    pub unchanged_inside_regions: u64,
}

/// The result of `veil eval`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalReport {
    /// Detector of the pipeline.
    pub detector: String,
    /// Residual detector, if one ran.
    pub residual_detector: Option<String>,
    /// Coverage threshold.
    pub coverage_threshold: f64,
    /// IoU threshold.
    pub iou_threshold: f64,
    /// Images evaluated.
    pub images: u64,
    /// Images the pipeline redacted entirely (failed closed).
    pub whole_frame_images: u64,
    /// Images with at least one box not covered.
    pub images_with_miss: u64,
    /// Per class.
    pub classes: Vec<ClassReport>,
    /// Pixel totals.
    pub pixels: Pixels,
}

impl EvalReport {
    /// Assemble the report from the totals.
    pub fn new(t: &Tally, extra: &Extra, opts: &EvalOptions) -> Self {
        let classes = Class::ALL
            .iter()
            .map(|&c| {
                let ap_in = &t.ap[c.index()];
                ClassReport {
                    class: c.name(),
                    all: Row::new("all", t.total(c), wider_ap(ap_in, None)),
                    buckets: (0..BUCKETS)
                        .map(|b| Row::new(BUCKET_NAMES[b], t.counts[c.index()][b], wider_ap(ap_in, Some(b))))
                        .collect(),
                }
            })
            .collect();
        EvalReport {
            detector: opts.detector_name.clone(),
            residual_detector: opts.residual_name.clone(),
            coverage_threshold: opts.params.coverage,
            iou_threshold: opts.params.iou,
            images: t.images,
            whole_frame_images: extra.whole_frame,
            images_with_miss: extra.per_image_missed,
            classes,
            pixels: Pixels {
                image: t.pixels,
                redacted: t.redacted,
                redacted_outside_gt: t.redacted_outside,
                false_redaction: ratio(t.redacted_outside, t.redacted),
                changed_outside_regions: extra.changed_outside_regions,
                unchanged_inside_regions: extra.unchanged_inside_regions,
            },
        }
    }

    /// A plain-text table.
    pub fn table(&self) -> String {
        let pct = |v: Option<f64>| v.map(|x| format!("{:5.1}%", x * 100.0)).unwrap_or_else(|| "    -".into());
        let mut s = String::new();
        s.push_str(&format!(
            "detector {}{}; {} images; coverage >= {:.0}% of a box; IoU {:.2}\n",
            if self.detector.is_empty() { "?" } else { &self.detector },
            self.residual_detector.as_deref().map(|r| format!(", residual {r}")).unwrap_or_default(),
            self.images,
            self.coverage_threshold * 100.0,
            self.iou_threshold,
        ));
        s.push_str("class  size     boxes  ign  covered  cov.rec  det.rec  dets  precis     AP  resid.\n");
        for c in &self.classes {
            if c.all.counts.gt + c.all.counts.ignored + c.all.counts.dets == 0 {
                continue;
            }
            for r in c.buckets.iter().chain(std::iter::once(&c.all)) {
                if r.counts.gt + r.counts.ignored + r.counts.dets == 0 && r.bucket != "all" {
                    continue;
                }
                s.push_str(&format!(
                    "{:<6} {:<7} {:>6} {:>4} {:>8}  {}   {}  {:>4}  {}  {}  {}\n",
                    c.class,
                    r.bucket,
                    r.counts.gt,
                    r.counts.ignored,
                    r.counts.covered,
                    pct(r.coverage_recall),
                    pct(r.detection_recall),
                    r.counts.dets,
                    pct(r.precision),
                    pct(r.ap),
                    pct(r.residual_rate),
                ));
            }
        }
        let p = &self.pixels;
        s.push_str(&format!(
            "false redaction {} of {} redacted pixels ({:.2}% of all pixels); failed-closed images {}; \
             changed outside regions {}; unchanged inside regions {}\n",
            pct(p.false_redaction).trim(),
            p.redacted,
            if p.image > 0 { p.redacted as f64 * 100.0 / p.image as f64 } else { 0.0 },
            self.whole_frame_images,
            p.changed_outside_regions,
            p.unchanged_inside_regions,
        ));
        s
    }
}
