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
use crate::frame::{Frame, PixelFormat};

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
    // Packed 24-bit frames are read straight from their bytes: byte offsets of R, G, B.
    let packed = match frame.format() {
        PixelFormat::Rgb888 => Some([0usize, 1, 2]),
        PixelFormat::Bgr888 => Some([2usize, 1, 0]),
        _ => None,
    };
    let bytes = frame.as_bytes();
    let stride = frame.layout().stride as usize;
    // Same size, packed 8-bit RGB/BGR: every area is one pixel, so the average is the pixel
    // itself (what the general loop below computes, without its divisions).
    if let (Some(order), true) = (packed, fw == cw && fh == ch) {
        let (c0, c2) = if bgr { (order[2], order[0]) } else { (order[0], order[2]) };
        for (oy, row) in dst.chunks_exact_mut(w * 3).take(h).enumerate() {
            let (content, rest) = row.split_at_mut(cw as usize * 3);
            rest.chunks_exact_mut(3).for_each(|px| px.copy_from_slice(&pad));
            if oy as u64 >= ch {
                content.chunks_exact_mut(3).for_each(|px| px.copy_from_slice(&pad));
                continue;
            }
            let b = oy * stride;
            let src = bytes.get(b..b + cw as usize * 3).ok_or(NnError::BadInputSize)?;
            for (d, p) in content.chunks_exact_mut(3).zip(src.chunks_exact(3)) {
                d[0] = p[c0].wrapping_sub(128);
                d[1] = p[1].wrapping_sub(128);
                d[2] = p[c2].wrapping_sub(128);
            }
        }
        return Ok(());
    }
    for (oy, row) in dst.chunks_exact_mut(w * 3).take(h).enumerate() {
        if oy as u64 >= ch {
            row.chunks_exact_mut(3).for_each(|px| px.copy_from_slice(&pad));
            continue;
        }
        let y0 = oy as u64 * fh / ch;
        let y1 = ((oy as u64 + 1) * fh / ch).max(y0 + 1).min(fh);
        // x0 = ⌊ox·fw/cw⌋ stepped incrementally: `next` is ⌊(ox+1)·fw/cw⌋.
        let (step, frac) = (fw / cw, fw % cw);
        let (mut next, mut rem) = (0u64, 0u64);
        for (ox, px) in row.chunks_exact_mut(3).enumerate() {
            if ox as u64 >= cw {
                px.copy_from_slice(&pad);
                continue;
            }
            let x0 = next;
            next += step;
            rem += frac;
            if rem >= cw {
                next += 1;
                rem -= cw;
            }
            let x1 = next.max(x0 + 1).min(fw);
            let mut s = [0u32; 3];
            if let Some(order) = packed {
                for y in y0..y1 {
                    let b = y as usize * stride;
                    let r =
                        bytes.get(b + x0 as usize * 3..b + x1 as usize * 3).ok_or(NnError::BadInputSize)?;
                    for p in r.chunks_exact(3) {
                        s[0] += p[order[0]] as u32;
                        s[1] += p[order[1]] as u32;
                        s[2] += p[order[2]] as u32;
                    }
                }
            } else {
                for y in y0..y1 {
                    for x in x0..x1 {
                        let c = frame.rgb(x as u32, y as u32).ok_or(NnError::BadInputSize)?;
                        s[0] += c.r as u32;
                        s[1] += c.g as u32;
                        s[2] += c.b as u32;
                    }
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

    /// The per-pixel formulation (every block bound divided out, every pixel read through
    /// [`Frame::rgb`]) that the row-stepping, byte-reading [`resize_into`] must equal.
    fn resize_ref(frame: &Frame<'_>, lb: &Letterbox, mean: [u8; 3], bgr: bool) -> std::vec::Vec<u8> {
        let (w, h) = (lb.input_w as usize, lb.input_h as usize);
        let mut dst = std::vec![0u8; w * h * 3];
        let (fw, fh) = (lb.frame_w as u64, lb.frame_h as u64);
        let (cw, ch) = (lb.content_w as u64, lb.content_h as u64);
        for oy in 0..h {
            for ox in 0..w {
                let px = &mut dst[(oy * w + ox) * 3..(oy * w + ox) * 3 + 3];
                if ox as u64 >= cw || oy as u64 >= ch {
                    for (p, m) in px.iter_mut().zip(mean) {
                        *p = m.wrapping_sub(128);
                    }
                    continue;
                }
                let y0 = oy as u64 * fh / ch;
                let y1 = ((oy as u64 + 1) * fh / ch).max(y0 + 1).min(fh);
                let x0 = ox as u64 * fw / cw;
                let x1 = ((ox as u64 + 1) * fw / cw).max(x0 + 1).min(fw);
                let mut s = [0u32; 3];
                for y in y0..y1 {
                    for x in x0..x1 {
                        let c = frame.rgb(x as u32, y as u32).unwrap();
                        s[0] += c.r as u32;
                        s[1] += c.g as u32;
                        s[2] += c.b as u32;
                    }
                }
                let n = ((y1 - y0) * (x1 - x0)) as u32;
                let avg = |v: u32| ((v + n / 2) / n).min(255) as u8;
                let (r, g, b) = (avg(s[0]), avg(s[1]), avg(s[2]));
                let (c0, c2) = if bgr { (b, r) } else { (r, b) };
                px.copy_from_slice(&[c0.wrapping_sub(128), g.wrapping_sub(128), c2.wrapping_sub(128)]);
            }
        }
        dst
    }

    #[test]
    fn resize_matches_the_per_pixel_formulation() {
        use crate::frame::Layout;
        let mut seed = 7u32;
        for (fw, fh, mw, mh) in [
            (100u32, 70u32, 64u32, 64u32),
            (37, 90, 96, 64),
            (320, 240, 320, 256),
            (65, 33, 32, 32),
            (50, 40, 64, 64),
        ] {
            for format in [PixelFormat::Rgb888, PixelFormat::Bgr888, PixelFormat::Rgb565] {
                let bpp = format.bytes_per_pixel();
                let stride = fw * bpp + 5;
                let buf: std::vec::Vec<u8> = (0..stride * fh)
                    .map(|_| {
                        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                        (seed >> 24) as u8
                    })
                    .collect();
                let frame = Frame::new_checked(&buf, Layout::with_stride(format, fw, fh, stride)).unwrap();
                let lb = Letterbox::plan(fw, fh, mw, mh).unwrap();
                for bgr in [false, true] {
                    let mut dst = std::vec![0u8; (lb.input_w * lb.input_h * 3) as usize];
                    resize_into(&frame, &lb, [120, 7, 200], bgr, &mut dst).unwrap();
                    assert_eq!(dst, resize_ref(&frame, &lb, [120, 7, 200], bgr), "{fw}x{fh} {format:?}");
                }
            }
        }
    }

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
