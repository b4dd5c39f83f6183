//! Frame → model input: area-averaging downscale into the int8 input tensor, letterboxed.
//!
//! The frame is scaled (never enlarged) to fit `w × h` with its aspect ratio kept, placed at the
//! top-left corner, and the rest of the tensor is filled with the model's mean colour (real
//! zero after normalisation). Every output pixel is the rounded mean of the block of source
//! pixels that maps onto it (integer block bounds `⌊i·F/R⌋ .. ⌊(i+1)·F/R⌋`, at least one pixel),
//! read with [`Frame::rgb`], so every pixel format works. Values are stored as `q = v − 128` in
//! the model's channel order.

use super::blob::Model;
use super::exec::{check_arena, tensor_view};
use super::NnError;
use crate::frame::Frame;

/// Where the frame landed in the model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Letterbox {
    /// Frame width in pixels.
    pub frame_w: u32,
    /// Frame height in pixels.
    pub frame_h: u32,
    /// Width of the scaled frame inside the input.
    pub content_w: u32,
    /// Height of the scaled frame inside the input.
    pub content_h: u32,
    /// Input tensor width (multiple of 32).
    pub input_w: u32,
    /// Input tensor height (multiple of 32).
    pub input_h: u32,
}

impl Letterbox {
    /// Plan the scaling of a `frame_w × frame_h` frame into an input of at most
    /// `max_w × max_h` (multiples of 32). The input is the smallest multiple of 32 that holds the
    /// scaled frame.
    pub fn plan(frame_w: u32, frame_h: u32, max_w: u32, max_h: u32) -> Result<Letterbox, NnError> {
        super::blob::cells(max_w, max_h)?;
        if frame_w == 0 || frame_h == 0 {
            return Err(NnError::BadInputSize);
        }
        let (fw, fh) = (frame_w as u64, frame_h as u64);
        let (mw, mh) = (max_w as u64, max_h as u64);
        let (cw, ch) = if fw <= mw && fh <= mh {
            (fw, fh)
        } else if fw * mh >= fh * mw {
            (mw, (fh * mw / fw).max(1))
        } else {
            ((fw * mh / fh).max(1), mh)
        };
        let up32 = |v: u64| v.div_ceil(32) * 32;
        Ok(Letterbox {
            frame_w,
            frame_h,
            content_w: cw as u32,
            content_h: ch as u32,
            input_w: up32(cw) as u32,
            input_h: up32(ch) as u32,
        })
    }

    /// Map an input x coordinate in Q16 to frame pixels (rounded to nearest).
    pub fn x_to_frame(&self, x_q16: i64) -> i32 {
        map(x_q16, self.frame_w, self.content_w)
    }
    /// Map an input y coordinate in Q16 to frame pixels (rounded to nearest).
    pub fn y_to_frame(&self, y_q16: i64) -> i32 {
        map(y_q16, self.frame_h, self.content_h)
    }
}

fn map(v_q16: i64, frame: u32, content: u32) -> i32 {
    let num = v_q16.saturating_mul(frame as i64);
    let den = (content as i64) << 16;
    let r = (num + den / 2).div_euclid(den);
    r.clamp(i32::MIN as i64 / 2, i32::MAX as i64 / 2) as i32
}

/// Write the letterboxed frame into `model`'s input tensor in `arena`.
pub fn fill_input(
    frame: &Frame<'_>,
    model: &Model<'_>,
    arena: &mut [u8],
    lb: &Letterbox,
) -> Result<(), NnError> {
    let (w, h) = (lb.input_w, lb.input_h);
    let cells = check_arena(model, arena.len(), w, h)?;
    let t = model.tensor(0).ok_or(NnError::Malformed)?;
    let (start, len, _) = tensor_view(&t, w, h, cells)?;
    let dst = arena.get_mut(start..start + len).ok_or(NnError::Malformed)?;
    resize_into(frame, lb, model.mean(), model.bgr(), dst)
}

/// The letterboxing and area averaging of [`fill_input`] into a plain `input_h × input_w × 3`
/// buffer (`q = v − 128`, channels in model order), for tools that have no parsed model yet.
pub fn resize_into(
    frame: &Frame<'_>,
    lb: &Letterbox,
    mean: [u8; 3],
    bgr: bool,
    dst: &mut [u8],
) -> Result<(), NnError> {
    let (w, h) = (lb.input_w as usize, lb.input_h as usize);
    if lb.content_w > lb.input_w
        || lb.content_h > lb.input_h
        || lb.frame_w != frame.width()
        || lb.frame_h != frame.height()
        || dst.len() < w * h * 3
    {
        return Err(NnError::BadInputSize);
    }
    let pad = [mean[0].wrapping_sub(128), mean[1].wrapping_sub(128), mean[2].wrapping_sub(128)];
    let (fw, fh) = (lb.frame_w as u64, lb.frame_h as u64);
    let (cw, ch) = (lb.content_w as u64, lb.content_h as u64);
    for oy in 0..h {
        for ox in 0..w {
            let o = (oy * w + ox) * 3;
            let px = dst.get_mut(o..o + 3).ok_or(NnError::Malformed)?;
            if ox as u64 >= cw || oy as u64 >= ch {
                px.copy_from_slice(&pad);
                continue;
            }
            let y0 = oy as u64 * fh / ch;
            let y1 = ((oy as u64 + 1) * fh / ch).max(y0 + 1).min(fh);
            let x0 = ox as u64 * fw / cw;
            let x1 = ((ox as u64 + 1) * fw / cw).max(x0 + 1).min(fw);
            let mut s = [0u32; 3];
            for y in y0..y1 {
                for x in x0..x1 {
                    let c = frame.rgb(x as u32, y as u32).ok_or(NnError::BadInputSize)?;
                    s[0] += c.r as u32;
                    s[1] += c.g as u32;
                    s[2] += c.b as u32;
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            let avg = |v: u32| ((v + n / 2) / n).min(255) as u8;
            let (r, g, b) = (avg(s[0]), avg(s[1]), avg(s[2]));
            let (c0, c2) = if bgr { (b, r) } else { (r, b) };
            px[0] = c0.wrapping_sub(128);
            px[1] = g.wrapping_sub(128);
            px[2] = c2.wrapping_sub(128);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keeps_aspect_and_never_enlarges() {
        let lb = Letterbox::plan(1280, 720, 640, 480).unwrap();
        assert_eq!((lb.content_w, lb.content_h, lb.input_w, lb.input_h), (640, 360, 640, 384));
        let lb = Letterbox::plan(100, 50, 640, 480).unwrap();
        assert_eq!((lb.content_w, lb.content_h, lb.input_w, lb.input_h), (100, 50, 128, 64));
        let lb = Letterbox::plan(360, 480, 320, 320).unwrap();
        assert_eq!((lb.content_w, lb.content_h, lb.input_w, lb.input_h), (240, 320, 256, 320));
        assert_eq!(Letterbox::plan(10, 10, 100, 64), Err(NnError::BadInputSize));
        assert_eq!(lb.x_to_frame(240 << 16), 360);
        assert_eq!(lb.y_to_frame(160 << 16), 240);
    }
}
