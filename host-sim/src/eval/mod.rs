//! `veil eval`: how well the pipeline anonymises labelled images.
//!
//! The loop streams: label files (small) are read up front, then each image is decoded, run
//! through the pipeline exactly as `veil anonymise` runs a still image (a fresh tracker per
//! file, synthetic time 0, the same configuration), measured, optionally drawn to an overlay,
//! and dropped before the next one, so memory is bounded by one image.
//!
//! **What counts as redacted** ([`redacted_mask`]): the union of
//! 1. the regions the pipeline reports it redacted, rasterised with `veil-core`'s own
//!    [`redact`](veil_core::redact::redact) (a `Fill` on a `Gray8` mask frame with the region's
//!    shape, so rectangle/ellipse edges are exactly the pixels the pipeline wrote), or the whole
//!    frame when it failed closed; and
//! 2. every pixel whose output differs from its input.
//!
//! The reported regions make the measure independent of the redaction mode (a pixelated or
//! blurred pixel can keep its value by chance, a fill colour can equal the original), and the
//! pixel comparison makes sure nothing the pipeline changed without reporting is missed.
//! Both disagreements are counted in the report (`changed_outside_regions` should be 0;
//! `unchanged_inside_regions` is the share of chance-equal pixels). The output image itself,
//! redacted in the configured mode, is what the residual detector sees.
//!
//! Modules: [`annot`] (label formats), [`metrics`] (matching and measures), [`overlay`]
//! (review images), [`report`] (table and JSON).

pub mod annot;
pub mod metrics;
pub mod overlay;
pub mod report;

use std::path::{Path, PathBuf};

use image::{ImageReader, RgbImage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use veil_core::detect::{postprocess, Detection, Detector, Filter};
use veil_core::frame::{Frame, FrameMut, Layout, PixelFormat, Rect, Rgb};
use veil_core::redact::{redact, Mode, Shape};

use crate::cli::{DetectorChoice, PipelineArgs};
use crate::engine::{Engine, Timing};

pub use annot::{ClassMap, Format, GtBox, ImageLabels, LoadOptions};
pub use metrics::{Mask, Params};
pub use report::EvalReport;

pub use crate::error::Error;

/// A usage error of `veil eval` or `veil synth`.
pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::usage("eval/synth option", msg)
}

/// What the pipeline did to one image.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Anonymised {
    /// Detections after filtering and NMS.
    pub detections: Vec<Detection>,
    /// Regions redacted, with their shape.
    pub regions: Vec<(Rect, Shape)>,
    /// The pipeline failed closed and redacted the whole frame.
    pub whole_frame: bool,
}

/// Something that redacts an RGB image in place, as `veil anonymise` would.
pub trait Anonymiser {
    /// Redact `image` (named `name` in messages) in place.
    fn anonymise(&mut self, name: &Path, image: &mut RgbImage) -> Result<Anonymised, Error>;
}

impl<F: FnMut(&Path, &mut RgbImage) -> Result<Anonymised, Error>> Anonymiser for F {
    fn anonymise(&mut self, name: &Path, image: &mut RgbImage) -> Result<Anonymised, Error> {
        self(name, image)
    }
}

/// The `veil anonymise` engine: each image is its own stream (fresh tracks), at time 0.
impl Anonymiser for Engine {
    fn anonymise(&mut self, name: &Path, image: &mut RgbImage) -> Result<Anonymised, Error> {
        let shapes = self.config().shape;
        let (w, h) = image.dimensions();
        let perr = |e: crate::Error| Error::Pipeline { path: name.to_path_buf(), msg: e.to_string() };
        let mut stream = self.stream(&name.to_string_lossy()).map_err(perr)?;
        let r = stream
            .process(image, Layout::new(PixelFormat::Rgb888, w, h), &Timing::Synthetic(0))
            .map_err(perr)?;
        Ok(Anonymised {
            regions: r.regions.iter().map(|g| (g.rect, shapes[g.class.index()])).collect(),
            whole_frame: r.outcome().is_fail_closed(),
            detections: r.detections,
        })
    }
}

/// The redacted-pixel mask of one output, and how much the two sources of evidence disagree.
#[derive(Clone, Debug)]
pub struct MaskInfo {
    /// Redacted pixels: reported regions ∪ changed pixels.
    pub mask: Mask,
    /// Pixels that changed outside every reported region.
    pub changed_outside_regions: u64,
    /// Pixels inside reported regions whose value did not change.
    pub unchanged_inside_regions: u64,
}

/// Compute which pixels of `output` are redacted (see the module documentation).
pub fn redacted_mask(input: &RgbImage, output: &RgbImage, a: &Anonymised) -> MaskInfo {
    let (w, h) = input.dimensions();
    let mut mask = Mask::new(w, h);
    if a.whole_frame {
        mask.as_bytes_mut().fill(1);
    } else {
        let layout = Layout::new(PixelFormat::Gray8, w, h);
        let bytes = mask.as_bytes_mut();
        if let Ok(mut fm) = FrameMut::new_checked(bytes, layout) {
            for &(rect, shape) in &a.regions {
                // Fill never fails validation; an empty region writes nothing.
                let _ = redact(&mut fm, rect, Mode::Fill(Rgb::new(255, 255, 255)), shape, 0);
            }
        }
        for b in mask.as_bytes_mut() {
            *b = u8::from(*b != 0);
        }
    }
    let (mut changed_outside, mut unchanged_inside) = (0u64, 0u64);
    let same_size = output.dimensions() == (w, h);
    for (i, m) in mask.as_bytes_mut().iter_mut().enumerate() {
        let changed =
            !same_size || input.as_raw().get(i * 3..i * 3 + 3) != output.as_raw().get(i * 3..i * 3 + 3);
        match (*m != 0, changed) {
            (false, true) => {
                changed_outside += 1;
                *m = 1;
            }
            (true, false) => unchanged_inside += 1,
            _ => {}
        }
    }
    MaskInfo { mask, changed_outside_regions: changed_outside, unchanged_inside_regions: unchanged_inside }
}

/// Run `detector` on `image` at full resolution and keep detections at or above `min_score`
/// (Q16), after `veil-core`'s NMS.
pub fn detect_all(
    detector: &mut dyn Detector,
    image: &RgbImage,
    min_score: u16,
) -> Result<Vec<Detection>, String> {
    let (w, h) = image.dimensions();
    let frame = Frame::new_checked(image.as_raw(), Layout::new(PixelFormat::Rgb888, w, h))
        .map_err(|e| e.to_string())?;
    let mut v: heapless::Vec<Detection, 1024> = heapless::Vec::new();
    detector.detect(&frame, v.as_mut_view()).map_err(|e| e.to_string())?;
    let filter = Filter { threshold: [min_score; veil_core::detect::Class::COUNT], ..Filter::default() };
    postprocess(v.as_mut_view(), &filter);
    Ok(v.to_vec())
}

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Label files (folders for YOLO and CCPD).
    pub labels: Vec<PathBuf>,
    /// Their format.
    pub format: Format,
    /// Image root and class names.
    pub load: LoadOptions,
    /// Thresholds.
    pub params: Params,
    /// Write review images here.
    pub overlay: Option<PathBuf>,
    /// `(index, count)`, 0-based: only images whose name hashes to `index`.
    pub shard: Option<(u64, u64)>,
    /// Evaluate at most this many images (after sharding).
    pub limit: Option<usize>,
    /// Lowest residual-detector score that counts, Q16.
    pub residual_min_score: u16,
    /// Show a progress bar on standard error.
    pub progress: bool,
    /// Name of the detector, for the report.
    pub detector_name: String,
    /// Name of the residual detector, for the report.
    pub residual_name: Option<String>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            labels: Vec::new(),
            format: Format::Auto,
            load: LoadOptions::default(),
            params: Params::default(),
            overlay: None,
            shard: None,
            limit: None,
            residual_min_score: veil_core::detect::score_from_milli(500),
            progress: false,
            detector_name: String::new(),
            residual_name: None,
        }
    }
}

/// Load every label file of `opts`, sharded and limited.
pub fn load_labels(opts: &EvalOptions) -> Result<Vec<ImageLabels>, Error> {
    let mut all = Vec::new();
    for l in &opts.labels {
        all.extend(annot::load(l, opts.format, &opts.load)?);
    }
    if let Some((i, n)) = opts.shard {
        all.retain(|im| crate::batch::shard_of(&im.name, n) == i);
    }
    if let Some(n) = opts.limit {
        all.truncate(n);
    }
    Ok(all)
}

/// Decode an image file (format from its content) to RGB8.
pub(crate) fn decode(path: &Path) -> Result<RgbImage, Error> {
    let mut r = ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    r.no_limits();
    let img = r.decode().map_err(|e| Error::Decode { path: path.to_path_buf(), msg: e.to_string() })?;
    Ok(img.to_rgb8())
}

/// Evaluate `anonymiser` on the labelled images of `opts`; `residual` is run on every output.
pub fn run(
    opts: &EvalOptions,
    anonymiser: &mut dyn Anonymiser,
    mut residual: Option<&mut dyn Detector>,
) -> Result<EvalReport, Error> {
    for (v, n) in [
        (opts.params.coverage, "coverage"),
        (opts.params.iou, "iou"),
        (opts.params.residual_iou, "residual iou"),
    ] {
        if !(v > 0.0 && v <= 1.0) {
            return Err(usage(format!("{n} {v}: expected a fraction in (0, 1]")));
        }
    }
    let images = load_labels(opts)?;
    let bar = if opts.progress {
        ProgressBar::with_draw_target(Some(images.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} eval [{bar:30}] {pos}/{len} ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut tally = metrics::Tally::default();
    let mut extra = report::Extra::default();
    for im in &images {
        bar.set_message(im.name.clone());
        let input = decode(&im.path)?;
        let (w, h) = input.dimensions();
        if let Some((lw, lh)) = im.size {
            if (lw, lh) != (w, h) {
                return Err(Error::SizeMismatch {
                    path: im.path.clone(),
                    got_w: w,
                    got_h: h,
                    want_w: lw,
                    want_h: lh,
                });
            }
        }
        let gts: Vec<GtBox> = im.boxes.iter().map(|b| b.to_pixels(w, h)).collect();
        let mut output = input.clone();
        let a = anonymiser.anonymise(&im.path, &mut output)?;
        let info = redacted_mask(&input, &output, &a);
        extra.changed_outside_regions += info.changed_outside_regions;
        extra.unchanged_inside_regions += info.unchanged_inside_regions;
        extra.whole_frame += u64::from(a.whole_frame);
        let res_dets = match residual.as_deref_mut() {
            Some(d) => Some(
                detect_all(d, &output, opts.residual_min_score)
                    .map_err(|msg| Error::Residual { path: im.path.clone(), msg })?,
            ),
            None => None,
        };
        let r = metrics::evaluate(&gts, &a.detections, &info.mask, res_dets.as_deref(), &opts.params);
        if let Some(dir) = &opts.overlay {
            let img = overlay::render(&input, &info.mask, &r, res_dets.as_deref().unwrap_or(&[]));
            let dest = dir.join(overlay_name(&im.name));
            if let Some(p) = dest.parent() {
                std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
            }
            img.save(&dest).map_err(|e| Error::Encode { path: dest.clone(), msg: e.to_string() })?;
        }
        extra.per_image_missed +=
            u64::from(r.gts.iter().any(|g| !g.gt.ignore && g.coverage.is_some() && !g.covered));
        tally.add(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(EvalReport::new(&tally, &extra, opts))
}

/// The overlay file for an image name: its normal path components only (no `..`, no root), so
/// overlays always land inside the overlay folder, with the extension `.png`.
pub fn overlay_name(name: &str) -> PathBuf {
    let p: PathBuf = Path::new(name)
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    if p.as_os_str().is_empty() {
        PathBuf::from("image.png")
    } else {
        p.with_extension("png")
    }
}

// ---- command line ----------------------------------------------------------------------------

/// `veil eval` options: the label files, the measurement options, and every `veil anonymise`
/// pipeline option (detector, thresholds, mode, ...), so the pipeline runs as it would there.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// Label files, or folders for YOLO/CCPD.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Annotation format of the label files given as INPUT.
    #[arg(long, value_enum, default_value_t = Format::Auto)]
    pub format: Format,
    /// Folder the images named in the labels are relative to (default: per format, usually the
    /// label file's folder).
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// Share of a box's pixels that must be redacted for it to count as anonymised.
    #[arg(long, value_name = "F", default_value_t = 0.9)]
    pub coverage: f64,
    /// IoU for a detection to match a box.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    pub iou: f64,
    /// Write review images (ground truth, detections, misses, redacted area) to this folder.
    #[arg(long, value_name = "DIR")]
    pub overlay: Option<PathBuf>,
    /// Run this detector at full resolution on every redacted output and count the boxes in
    /// which it still finds something.
    #[arg(long, value_enum, value_name = "DETECTOR")]
    pub residual: Option<DetectorChoice>,
    /// Lowest residual-detector score that counts.
    #[arg(long, value_name = "T", default_value_t = 0.5)]
    pub residual_thresh: f64,
    /// IoU for a residual detection to count against a box.
    #[arg(long, value_name = "F", default_value_t = 0.3)]
    pub residual_iou: f64,
    /// Extra label-name rules, `NAME=face|plate|skip,...` (COCO categories, dlib labels, Veil).
    #[arg(long, value_name = "RULES")]
    pub class_map: Option<String>,
    /// YOLO class ids in order, by name.
    #[arg(long, value_name = "NAMES", default_value = "face,plate")]
    pub yolo_classes: String,
    /// Evaluate at most this many images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// The pipeline, as `veil anonymise` runs it.
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

impl EvalArgs {
    /// The evaluation options these arguments describe (detector names left empty).
    pub fn options(&self) -> Result<EvalOptions, Error> {
        let mut classes = ClassMap::default();
        if let Some(m) = &self.class_map {
            classes.extend(m)?;
        }
        classes.set_yolo(&self.yolo_classes);
        if self.inputs.is_empty() {
            return Err(usage("give at least one label file (or folder for YOLO/CCPD)"));
        }
        if !(0.0..=1.0).contains(&self.residual_thresh) {
            return Err(usage(format!("--residual-thresh {}: expected 0..1", self.residual_thresh)));
        }
        let shard = self.pipeline.shard.as_deref().map(crate::cli::parse_shard).transpose()?;
        Ok(EvalOptions {
            labels: self.inputs.clone(),
            format: self.format,
            load: LoadOptions { images: self.images.clone(), classes },
            params: Params { coverage: self.coverage, iou: self.iou, residual_iou: self.residual_iou },
            overlay: self.overlay.clone(),
            shard,
            limit: self.limit,
            residual_min_score: veil_core::detect::score_from_milli(
                (self.residual_thresh * 1000.0).round() as u16
            ),
            progress: !self.pipeline.quiet,
            detector_name: String::new(),
            residual_name: None,
        })
    }
}

/// `veil eval`: print the table (standard output), or JSON with `--json` (the table then goes
/// to standard error unless `--quiet`).
pub fn command(a: &EvalArgs) -> crate::Result<()> {
    let mut opts = a.options()?;
    let p = &a.pipeline;
    let config = p.config()?;
    let detector = crate::app::open_detector(p)?;
    opts.detector_name = detector.name().to_string();
    let mut engine = Engine::new(detector, config, 1)?;
    let mut residual = match a.residual {
        Some(choice) => {
            let dopts = crate::detectors::DetectorOptions {
                model: None,
                models_dir: p.models_dir.clone().unwrap_or_else(crate::detectors::default_models_dir),
                threads: p.threads,
                detect_size: None,
                min_score: (a.residual_thresh as f32 - 1e-4).max(0.0),
            };
            let d = crate::detectors::open(choice, &dopts)?;
            opts.residual_name = Some(d.name().to_string());
            Some(d)
        }
        None => None,
    };
    let report = run(&opts, &mut engine, residual.as_mut().map(|d| d as &mut dyn Detector))?;
    let table = report.table();
    if p.json {
        if !p.quiet {
            eprint!("{table}");
        }
        crate::report::print_json(&report)?;
    } else {
        use std::io::Write as _;
        // A closed standard output (`veil eval … | head`) is not an error.
        let _ = write!(std::io::stdout(), "{table}");
    }
    Ok(())
}
