//! [`BuiltinDetector`]: faces and/or plates with the built-in int8 engine, as a
//! [`crate::detect::Detector`].
//!
//! Per frame and per model: letterbox the frame into the input tensor ([`super::resize`]), run the
//! ops ([`super::exec`]), decode anchors above a low score floor ([`super::decode`]) and keep the
//! output small with [`crate::detect::postprocess`] (class-wise NMS at the configured IoU; run
//! early whenever the output vector fills up). Thresholds proper are left to the pipeline's
//! [`crate::detect::Filter`], which sees the raw model scores.

use heapless::vec::VecView;

use super::blob::Model;
use super::resize::{fill_input, Letterbox};
use super::{decode, exec, NnError};
use crate::detect::{self, score_from_milli, Class, DetectError, Detection, Detector, Filter, Score};
use crate::frame::Frame;

/// Settings of a [`BuiltinDetector`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DetectorConfig {
    /// Largest model input width (multiple of 32); frames are scaled down to fit.
    pub max_w: u32,
    /// Largest model input height (multiple of 32).
    pub max_h: u32,
    /// Lowest score emitted, per class (Q16).
    pub floor: [Score; Class::COUNT],
    /// IoU (Q16) above which the detector's own NMS merges same-class boxes.
    pub nms_iou: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            max_w: 320,
            max_h: 256,
            floor: [score_from_milli(200), score_from_milli(200)],
            nms_iou: 0x6666,
        }
    }
}

/// The built-in detector: up to two parsed models sharing one arena.
#[derive(Debug)]
pub struct BuiltinDetector<'m, 'a> {
    models: [Option<Model<'m>>; 2],
    arena: &'a mut [u8],
    cfg: DetectorConfig,
    id: [u8; 16],
    last_error: Option<NnError>,
}

impl<'m, 'a> BuiltinDetector<'m, 'a> {
    /// Parse the given blobs (a face model, a plate model, or both) and check that `arena` is
    /// large enough for `cfg.max_w × cfg.max_h`.
    pub fn new(
        face: Option<&'m [u8]>,
        plate: Option<&'m [u8]>,
        arena: &'a mut [u8],
        cfg: DetectorConfig,
    ) -> Result<Self, NnError> {
        let mut models = [None, None];
        for (slot, blob) in models.iter_mut().zip([face, plate]) {
            if let Some(b) = blob {
                *slot = Some(Model::parse(b)?);
            }
        }
        let needed = Self::arena_needed(&models, cfg.max_w, cfg.max_h)?;
        if arena.len() < needed {
            return Err(NnError::ArenaTooSmall { needed, given: arena.len() });
        }
        let id = match (&models[0], &models[1]) {
            (Some(a), Some(b)) => {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                h.update(a.id());
                h.update(b.id());
                let d = h.finalize();
                let mut id = [0u8; 16];
                id.copy_from_slice(&d.as_slice()[..16]);
                id
            }
            (Some(a), None) | (None, Some(a)) => a.id(),
            (None, None) => return Err(NnError::Malformed),
        };
        Ok(BuiltinDetector { models, arena, cfg, id, last_error: None })
    }

    fn arena_needed(models: &[Option<Model<'m>>; 2], w: u32, h: u32) -> Result<usize, NnError> {
        let mut n = 0;
        for m in models.iter().flatten() {
            n = n.max(m.arena_len(w, h)?);
        }
        Ok(n)
    }

    /// Arena bytes the given blobs need at `max_w × max_h` (for sizing a static buffer).
    pub fn arena_len_for(blobs: &[&[u8]], max_w: u32, max_h: u32) -> Result<usize, NnError> {
        let mut n = 0;
        for b in blobs {
            n = n.max(Model::parse(b)?.arena_len(max_w, max_h)?);
        }
        Ok(n)
    }

    /// The last engine error behind a [`DetectError::Model`], for diagnostics.
    pub fn last_error(&self) -> Option<NnError> {
        self.last_error
    }

    /// The configuration.
    pub fn config(&self) -> &DetectorConfig {
        &self.cfg
    }

    /// Run one model on `frame` and report every candidate above the model's floor (no NMS),
    /// with its landmarks. For tools and tests; [`Detector::detect`] is the pipeline's entry.
    pub fn candidates<E: From<NnError>>(
        &mut self,
        class: Class,
        frame: &Frame<'_>,
        emit: impl FnMut(&decode::Candidate) -> Result<(), E>,
    ) -> Result<(), E> {
        let model = self.models.get(class.index()).copied().flatten().ok_or(NnError::Malformed)?;
        let lb = Letterbox::plan(frame.width(), frame.height(), self.cfg.max_w, self.cfg.max_h)?;
        fill_input(frame, &model, self.arena, &lb)?;
        exec::run(&model, self.arena, lb.input_w, lb.input_h)?;
        let floor = self.cfg.floor[class.index()];
        decode::decode(&model, self.arena, &lb, floor, emit)
    }

    fn filter(&self) -> Filter {
        Filter { threshold: self.cfg.floor, nms_iou: self.cfg.nms_iou, ..Filter::default() }
    }
}

enum Stop {
    Nn(NnError),
    Full,
}

impl From<NnError> for Stop {
    fn from(e: NnError) -> Self {
        Stop::Nn(e)
    }
}

impl Detector for BuiltinDetector<'_, '_> {
    fn detect(&mut self, frame: &Frame<'_>, out: &mut VecView<Detection>) -> Result<(), DetectError> {
        let filter = self.filter();
        for class in Class::ALL {
            if self.models[class.index()].is_none() {
                continue;
            }
            let r = self.candidates(class, frame, |c: &decode::Candidate| {
                let d = c.detection();
                if out.push(d).is_err() {
                    // Full: merge what we have, then retry once.
                    detect::postprocess(out, &filter);
                    out.push(d).map_err(|_| Stop::Full)?;
                }
                Ok::<(), Stop>(())
            });
            match r {
                Ok(()) => {}
                Err(Stop::Full) => return Err(DetectError::CapacityExceeded),
                Err(Stop::Nn(NnError::BadInputSize)) => {
                    self.last_error = Some(NnError::BadInputSize);
                    return Err(DetectError::UnsupportedInput);
                }
                Err(Stop::Nn(e)) => {
                    veil_warn!("nn: model failed");
                    self.last_error = Some(e);
                    return Err(DetectError::Model);
                }
            }
        }
        detect::postprocess(out, &filter);
        Ok(())
    }

    fn model_id(&self) -> [u8; 16] {
        self.id
    }
}
