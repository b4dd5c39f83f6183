//! Head decoding in fixed point: anchors, scores, boxes and landmarks.
//!
//! For every anchor (level, row, column, anchor size — the order the ONNX model emits them), the
//! score is `score[q1 − q0 + 255]`, a table of the two-class softmax (= the sigmoid of the logit
//! difference) that the converter computed for that head's quantisation scale. Anchors scoring
//! at least the caller's floor are decoded like RetinaFace's `decode`:
//! `centre = anchor + variance0·loc·size`, `side = size·exp(variance1·loc)`, with both factors
//! read from Q16 tables indexed by the int8 code, so no arithmetic is done in floating point.
//! Coordinates are then mapped from the model input back to the frame through the
//! [`Letterbox`].

use super::blob::{rd_i32, rd_u16, Model, NO_TENSOR};
use super::exec::{check_arena, tensor_view};
use super::resize::Letterbox;
use super::NnError;
use crate::detect::{Class, Detection, Score};
use crate::frame::Rect;

/// Most landmark points a candidate carries.
pub const MAX_POINTS: usize = 5;

/// One decoded anchor above the score floor, in frame coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Class of the model.
    pub class: Class,
    /// Q16 score (probability of the object class).
    pub score: Score,
    /// The box.
    pub rect: Rect,
    /// Landmarks (face: eyes, nose, mouth corners; plate: four corners), `(x, y)`.
    pub points: [(i32, i32); MAX_POINTS],
    /// Number of valid entries in `points`.
    pub n_points: u8,
}

impl Candidate {
    /// As a [`Detection`].
    pub fn detection(&self) -> Detection {
        Detection { rect: self.rect, class: self.class, score: self.score }
    }
}

fn lut_i32(data: &[u8], table: u32, q: u8) -> Result<i64, NnError> {
    let idx = (q as i8 as i32 + 128) as usize;
    rd_i32(data, table as usize + idx * 4).map(|v| v as i64).ok_or(NnError::Malformed)
}

/// Decode every anchor of `model` whose score is at least `floor`, calling `emit` for each, in
/// anchor order. The model must have been run on the input described by `lb`.
pub fn decode<E: From<NnError>>(
    model: &Model<'_>,
    arena: &[u8],
    lb: &Letterbox,
    floor: Score,
    mut emit: impl FnMut(&Candidate) -> Result<(), E>,
) -> Result<(), E> {
    let (w, h) = (lb.input_w, lb.input_h);
    let cells = check_arena(model, arena.len(), w, h)?;
    let data = model.data();
    let np = (model.n_points() as usize).min(MAX_POINTS);
    for li in 0..model.n_levels() {
        let l = model.level(li).ok_or(NnError::Malformed)?;
        let view = |id: u16| -> Result<(&[u8], super::ops::View), NnError> {
            let t = model.tensor(id).ok_or(NnError::Malformed)?;
            let (s, n, v) = tensor_view(&t, w, h, cells)?;
            let b = arena.get(s..s + n).ok_or(NnError::Malformed)?;
            if !v.fits(b.len()) {
                return Err(NnError::Malformed);
            }
            Ok((b, v))
        };
        let (conf, cv) = view(l.conf)?;
        let (loc, lv) = view(l.loc)?;
        let landm = if l.landm != NO_TENSOR { Some(view(l.landm)?) } else { None };
        let step = l.step as i64;
        for y in 0..cv.h {
            for x in 0..cv.w {
                let pix = y * cv.w + x;
                for a in 0..l.anchors as usize {
                    let cb = cv.off + pix * cv.pixel_stride + a * 2;
                    let q0 = *conf.get(cb).ok_or(NnError::Malformed)? as i8 as i32;
                    let q1 = *conf.get(cb + 1).ok_or(NnError::Malformed)? as i8 as i32;
                    let si = (q1 - q0 + 255) as usize;
                    let score = rd_u16(data, l.score as usize + si * 2).ok_or(NnError::Malformed)?;
                    if score < floor {
                        continue;
                    }
                    let size = *l.min_sizes.get(a).ok_or(NnError::Malformed)? as i64;
                    let acx = ((2 * x as i64 + 1) * step) << 15;
                    let acy = ((2 * y as i64 + 1) * step) << 15;
                    let lb0 = lv.off + pix * lv.pixel_stride + a * 4;
                    let code = |i: usize| loc.get(lb0 + i).copied().ok_or(NnError::Malformed);
                    let cx = acx + lut_i32(data, l.loc_lin, code(0)?)? * size;
                    let cy = acy + lut_i32(data, l.loc_lin, code(1)?)? * size;
                    let bw = lut_i32(data, l.loc_exp, code(2)?)? * size;
                    let bh = lut_i32(data, l.loc_exp, code(3)?)? * size;
                    let rect = Rect::new(
                        lb.x_to_frame(cx - bw / 2),
                        lb.y_to_frame(cy - bh / 2),
                        lb.x_to_frame(cx + bw / 2),
                        lb.y_to_frame(cy + bh / 2),
                    );
                    let mut points = [(0i32, 0i32); MAX_POINTS];
                    if let Some((lm, mv)) = landm {
                        let base = mv.off + pix * mv.pixel_stride + a * 2 * model.n_points() as usize;
                        for (p, pt) in points.iter_mut().enumerate().take(np) {
                            let qx = *lm.get(base + 2 * p).ok_or(NnError::Malformed)?;
                            let qy = *lm.get(base + 2 * p + 1).ok_or(NnError::Malformed)?;
                            let px = acx + lut_i32(data, l.landm_lin, qx)? * size;
                            let py = acy + lut_i32(data, l.landm_lin, qy)? * size;
                            *pt = (lb.x_to_frame(px), lb.y_to_frame(py));
                        }
                    }
                    let c = Candidate {
                        class: model.class(),
                        score,
                        rect,
                        points,
                        n_points: if landm.is_some() { np as u8 } else { 0 },
                    };
                    emit(&c)?;
                }
            }
        }
    }
    Ok(())
}
