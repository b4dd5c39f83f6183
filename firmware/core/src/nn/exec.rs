//! Running a parsed [`Model`]'s ops in order over the caller's arena.
//!
//! Tensor `t` of a `w × h` input occupies arena bytes
//! `[t.buf_units × cells, (t.buf_units + buf_len_units) × cells)` with `cells = (w/32)·(h/32)`;
//! the parser checked that an op's output never overlaps its inputs, so the arena can be split
//! into a mutable output part and read-only input parts without copying.

use super::blob::{self, rd_u32, Model, TensorDesc, OP_ADD, OP_CONV, PAD_ZP};
use super::ops::{self, ConvGeom, Pad, View};
use super::NnError;

/// Byte range of a tensor's backing buffer and its view inside that range.
pub fn tensor_view(t: &TensorDesc, w: u32, h: u32, cells: usize) -> Result<(usize, usize, View), NnError> {
    let start = (t.buf_units as usize).checked_mul(cells).ok_or(NnError::BadInputSize)?;
    let len = (t.buf_len_units() as usize).checked_mul(cells).ok_or(NnError::BadInputSize)?;
    let v = View {
        h: (h >> t.stride_log2) as usize,
        w: (w >> t.stride_log2) as usize,
        c: t.channels as usize,
        pixel_stride: t.pixel_stride as usize,
        off: t.chan_off as usize,
    };
    Ok((start, len, v))
}

/// Check the size and arena, returning the number of 32×32 cells.
pub fn check_arena(model: &Model<'_>, arena_len: usize, w: u32, h: u32) -> Result<usize, NnError> {
    let cells = blob::cells(w, h)?;
    let needed = model.arena_len(w, h)?;
    if arena_len < needed {
        return Err(NnError::ArenaTooSmall { needed, given: arena_len });
    }
    Ok(cells)
}

/// Read-only slice `[start, start+len)` of the arena minus the output hole `[hole, hole_end)`.
fn ro<'x>(
    left: &'x [u8],
    right: &'x [u8],
    hole_end: usize,
    start: usize,
    len: usize,
) -> Result<&'x [u8], NnError> {
    let end = start.checked_add(len).ok_or(NnError::Malformed)?;
    if end <= left.len() {
        left.get(start..end).ok_or(NnError::Malformed)
    } else if start >= hole_end {
        right.get(start - hole_end..end - hole_end).ok_or(NnError::Malformed)
    } else {
        Err(NnError::Malformed)
    }
}

/// Run every op of `model` on a `w × h` input already written to tensor 0 (see
/// [`crate::nn::resize`]). Afterwards the head tensors hold the raw outputs for
/// [`crate::nn::decode`].
pub fn run(model: &Model<'_>, arena: &mut [u8], w: u32, h: u32) -> Result<(), NnError> {
    let cells = check_arena(model, arena.len(), w, h)?;
    let data = model.data();
    for i in 0..model.n_ops() {
        let op = model.op(i).ok_or(NnError::Malformed)?;
        let t_out = model.tensor(op.out).ok_or(NnError::Malformed)?;
        let (os, ol, ov) = tensor_view(&t_out, w, h, cells)?;
        let oe = os.checked_add(ol).ok_or(NnError::Malformed)?;
        if oe > arena.len() {
            return Err(NnError::Malformed);
        }
        let (left, rest) = arena.split_at_mut(os);
        let (out, right) = rest.split_at_mut(ol);
        let (left, right): (&[u8], &[u8]) = (left, right);
        let t_in = model.tensor(op.in0).ok_or(NnError::Malformed)?;
        let (is, il, iv) = tensor_view(&t_in, w, h, cells)?;
        let input = ro(left, right, oe, is, il)?;
        match op.kind {
            OP_CONV => {
                let cout = ov.c;
                let cin = iv.c;
                let k = op.kernel as usize;
                let wlen = cout * k * k * (cin / (op.groups.max(1) as usize));
                let wts = data.get(op.w_off as usize..op.w_off as usize + wlen).ok_or(NnError::Malformed)?;
                let plen = cout * blob::CHAN_REC;
                let params =
                    data.get(op.q_off as usize..op.q_off as usize + plen).ok_or(NnError::Malformed)?;
                let pad = if op.pad_off == PAD_ZP {
                    Pad::Zp(t_in.zero_point)
                } else {
                    Pad::PerChannel(
                        data.get(op.pad_off as usize..op.pad_off as usize + cin).ok_or(NnError::Malformed)?,
                    )
                };
                let g = ConvGeom {
                    k,
                    stride: op.stride as usize,
                    pad: op.pad as usize,
                    groups: op.groups as usize,
                };
                ops::conv2d(input, &iv, out, &ov, &g, wts, params, pad, t_out.zero_point)?;
            }
            OP_ADD => {
                let t_b = model.tensor(op.in1).ok_or(NnError::Malformed)?;
                let (bs, bl, bv) = tensor_view(&t_b, w, h, cells)?;
                let b = ro(left, right, oe, bs, bl)?;
                let q = op.q_off as usize;
                let m0 = rd_u32(data, q).ok_or(NnError::Malformed)? as i32;
                let m1 = rd_u32(data, q + 4).ok_or(NnError::Malformed)? as i32;
                let sh = rd_u32(data, q + 8).ok_or(NnError::Malformed)?;
                let sh = u8::try_from(sh).map_err(|_| NnError::Malformed)?;
                ops::add(
                    input,
                    &iv,
                    t_in.zero_point,
                    b,
                    &bv,
                    t_b.zero_point,
                    out,
                    &ov,
                    t_out.zero_point,
                    [m0, m1],
                    sh,
                )?;
            }
            _ => return Err(NnError::Malformed),
        }
    }
    Ok(())
}
