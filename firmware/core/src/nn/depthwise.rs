//! Depthwise 3×3 convolution (stride 1 or 2, padding 1), vectorised along whole rows.
//!
//! Per-pixel channel vectors are short at the large resolutions (8 and 16 channels), so this
//! kernel does not vectorise across the channels of one pixel but across a *segment*: `n`
//! consecutive output pixels × a block of `cb` channels, flattened into one vector of
//! `L = n·cb ≤ SEG` lanes (lane `j` is channel `c0 + j mod cb` of pixel `ox0 + j / cb`). With
//!
//! - the three input rows a segment needs *staged* (copied, padding filled in) as flat byte
//!   rows: for stride 1, pixels `ox0 − 1 ..= ox0 + n`, so that tap `kx` of lane `j` is byte
//!   `j + kx·cb`; for stride 2, the odd pixels `2(ox0 + p) − 1` (`p = 0..=n`) followed by the
//!   even pixels `2(ox0 + p)` (`p < n`), so that taps 0, 1, 2 of lane `j` are bytes `j`,
//!   `(n + 1)·cb + j` and `cb + j`;
//! - the nine tap weights replicated along a segment (`w[t][j]` = weight `t` of the lane's
//!   channel), once per channel block;
//!
//! an output row segment is nine multiply-adds of contiguous slices, `acc[j] = Σ_t x_t[j] ·
//! w[t][j]`, which LLVM vectorises at every channel count. The staged rows are kept in a ring
//! of three, so each input row is staged once per segment column.
//!
//! Two details make the loop cheap on x86 (`vpmaddwd` with a memory operand, no `vpmulld`):
//! staged bytes are stored offset by 128 (`x ^ 0x80`, i.e. `x + 128` as an unsigned byte), so
//! they zero-extend, with `128·Σ_t w_t` subtracted from the bias once per channel; and weights
//! are held as `i32` whose low halves are the `i16` values. The accumulator is then the same
//! integer as the wrapping sum of `super::ops::conv_generic` (each product is below 2^15 in
//! magnitude, so the sum of nine cannot overflow; the bias is added wrapping).
//!
//! Requantisation: with nine products per output byte, `finish` (an `i64` multiply, a
//! variable 64-bit shift, clamps) would cost as much as the convolution, so channel blocks
//! whose shifts are all at least 33 (or whose multipliers are 0) use `FastQ`, an exact `i32`
//! form of it fused into the multiply-add loop (see `requant_fast`; vectorised it costs about
//! a third of `finish`); other blocks fall back to `finish` itself. The models' multipliers
//! are normalised (`2^30 ≤ m < 2^31`), so shifts of 33 and more are requantisation scales
//! below 1/4 (every depthwise layer of the face model).
//!
//! Stack: about 37 KiB (`SEG` = 512 lanes: weights 18 KiB, requantisation constants 10 KiB,
//! three staged rows 4.5 KiB, accumulators 2 KiB, padding and output bytes 1 KiB; measured
//! frames 37.9 KB on x86-64, 37.0 KB on thumbv7em).

use super::blob::{CHAN_REC, MAX_SHIFT};
use super::ops::{finish, ChanQ, ConvGeom, Pad, View};
use super::NnError;

/// Lanes per segment (output pixels × channels of one block).
const SEG: usize = 512;
/// Bytes of one staged row: `(n + 2)·cb` (stride 1) or `(2n + 1)·cb` (stride 2), at most
/// `2·SEG + cb ≤ 3·SEG`.
const ROW: usize = 3 * SEG;
/// Taps of a 3×3 kernel.
const TAPS: usize = 9;
/// Smallest shift [`FastQ`] handles (for a non-zero multiplier).
pub(super) const FAST_MIN_SHIFT: u8 = 33;

/// True when [`conv_dw3x3`] computes this convolution: depthwise (`groups = cin = cout`),
/// 3×3 kernel, stride 1 or 2, padding 1; any channel count, pixel strides and offsets.
pub fn applies(iv: &View, ov: &View, g: &ConvGeom) -> bool {
    g.k == 3 && g.pad == 1 && (g.stride == 1 || g.stride == 2) && iv.c > 0 && g.groups == iv.c && ov.c == iv.c
}

/// Requantisation constants in the fast form, valid when each side's shift is at least 33 or
/// its multiplier is 0. Shifts are stored as `s = shift − 33` (`0..=29`); the negative side as
/// its XOR with the positive one, so that choosing a side is a mask, not a select (a select
/// of two loaded values can be compiled into per-lane address selection, i.e. a gather).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct FastQ {
    bias: i32,
    m_pos: i32,
    /// `m_pos ^ m_neg`.
    m_x: i32,
    s_pos: i32,
    /// `s_pos ^ s_neg`.
    s_x: i32,
}

impl FastQ {
    /// The fast form of `q`, if it has one (never for shifts above [`MAX_SHIFT`]).
    #[inline(always)]
    pub(super) fn new(q: &ChanQ) -> Option<FastQ> {
        let side = |m: i32, sh: u8| -> Option<i32> {
            if sh > MAX_SHIFT {
                None
            } else if m == 0 {
                // p = 0: finish gives ⌊2^sh / 2⌋ >> sh = 0 for every shift, so does s = 0.
                Some(0)
            } else if sh >= FAST_MIN_SHIFT {
                Some((sh - FAST_MIN_SHIFT) as i32)
            } else {
                None
            }
        };
        let (s_pos, s_neg) = (side(q.m_pos, q.sh_pos)?, side(q.m_neg, q.sh_neg)?);
        Some(FastQ { bias: q.bias, m_pos: q.m_pos, m_x: q.m_pos ^ q.m_neg, s_pos, s_x: s_pos ^ s_neg })
    }

    /// Exactly `finish(q, acc, zp_out)` for the `q` this was made from.
    #[cfg(test)]
    pub(super) fn apply(&self, acc: i32, zp_out: i8) -> u8 {
        requant_fast(acc, self.bias, self.m_pos, self.m_x, self.s_pos, self.s_x, zp_out as i32)
    }
}

/// [`finish`] in the fast form ([`FastQ`]), on plain values so that the row loop vectorises.
///
/// With `a = bias + acc` (wrapping), `p = a·m` (`|p| ≤ 2^62`) and `sh = 33 + s`, [`finish`]
/// computes `⌊(p + 2^(sh−1)) / 2^sh⌋`. Since `2^(sh−1) = 2^32·2^s`, nested floor divisions
/// give `⌊(⌊p / 2^32⌋ + 2^s) / 2^(s+1)⌋ = ⌊(⌊hi / 2^s⌋ + 1) / 2⌋` with `hi = ⌊p / 2^32⌋`, the
/// high half of the product, in `[−2^30, 2^30]`: nothing overflows `i32`, the result lies in
/// `[−2^29, 2^29]`, so the clamp to `i32` of [`finish`] never acts and the zero point add never
/// wraps. (A zero multiplier gives 0 either way.)
#[inline(always)]
fn requant_fast(acc: i32, bias: i32, m_pos: i32, m_x: i32, s_pos: i32, s_x: i32, zp: i32) -> u8 {
    let a = acc.wrapping_add(bias);
    let neg = a >> 31;
    let m = m_pos ^ (m_x & neg);
    let s = (s_pos ^ (s_x & neg)) as u32;
    let hi = ((a as i64 * m as i64) >> 32) as i32;
    let r = (hi.wrapping_shr(s) + 1) >> 1;
    zp.wrapping_add(r).clamp(-128, 127) as u8
}

/// Per-lane constants of one channel block, replicated along a segment.
struct Lanes {
    /// `w[t][j]`: weight of tap `t` of lane `j`'s channel (an `i16` value held in an `i32`).
    w: [[i32; SEG]; TAPS],
    /// Bias minus `128·Σ_t w_t` (the staged bytes are offset by 128).
    bias: [i32; SEG],
    m_pos: [i32; SEG],
    /// `m_pos ^ m_neg`.
    m_x: [i32; SEG],
    /// `shift − 33` (fast blocks: `0..=29`).
    s_pos: [i32; SEG],
    /// `s_pos ^ s_neg`.
    s_x: [i32; SEG],
    /// Whether every channel of the block has a [`FastQ`] form.
    fast: bool,
}

/// The argument checks of a 3×3 depthwise kernel (this one and the AVX2 one): where
/// [`applies`], both views inside their buffers, the output size that stride and padding give,
/// and weights, records and per-channel padding for every channel; else [`NnError::Malformed`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn check_args(
    input: &[u8],
    iv: &View,
    output: &[u8],
    ov: &View,
    g: &ConvGeom,
    weights: &[u8],
    params: &[u8],
    pad: Pad<'_>,
) -> Result<(), NnError> {
    let bad = Err(NnError::Malformed);
    if !applies(iv, ov, g) || !iv.fits(input.len()) || !ov.fits(output.len()) {
        return bad;
    }
    let (c, s) = (iv.c, g.stride);
    if ov.h != (iv.h - 1) / s + 1 || ov.w != (iv.w - 1) / s + 1 {
        return bad;
    }
    if weights.len() < c * TAPS || params.len() < c * CHAN_REC {
        return bad;
    }
    if let Pad::PerChannel(p) = pad {
        if p.len() < c {
            return bad;
        }
    }
    Ok(())
}

/// Depthwise 3×3 convolution, stride 1 or 2, padding 1 (see [`applies`] and the module
/// docs): same arguments and result as [`super::ops::conv2d`], bit-identical to
/// `super::ops::conv_generic`. Returns `NnError::Malformed` (never panics) on any
/// inconsistent argument.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn conv_dw3x3(
    input: &[u8],
    iv: &View,
    output: &mut [u8],
    ov: &View,
    g: &ConvGeom,
    weights: &[u8],
    params: &[u8],
    pad: Pad<'_>,
    zp_out: i8,
) -> Result<(), NnError> {
    check_args(input, iv, output, ov, g, weights, params, pad)?;
    let (c, s) = (iv.c, g.stride);
    let nblk = c.div_ceil(SEG);
    let cbmax = c.div_ceil(nblk);
    let mut lanes = Lanes {
        w: [[0; SEG]; TAPS],
        bias: [0; SEG],
        m_pos: [0; SEG],
        m_x: [0; SEG],
        s_pos: [0; SEG],
        s_x: [0; SEG],
        fast: true,
    };
    let mut padv = [0u8; SEG];
    let mut work = Work { rows: [[0; ROW]; 3], acc: [0; SEG], obuf: [0; SEG] };
    let mut c0 = 0;
    while c0 < c {
        let cb = cbmax.min(c - c0);
        let np = (SEG / cb).max(1);
        fill_lanes(&mut lanes, weights, params, c0, cb, np * cb)?;
        let pv = padv.get_mut(..cb).ok_or(NnError::Malformed)?;
        match pad {
            Pad::Zp(z) => pv.fill(z as u8),
            Pad::PerChannel(p) => pv.copy_from_slice(p.get(c0..c0 + cb).ok_or(NnError::Malformed)?),
        }
        let pv: &[u8] = pv;
        let mut ox0 = 0;
        while ox0 < ov.w {
            let n = np.min(ov.w - ox0);
            let sg = Seg { c0, cb, ox0, n, stride: s };
            strip(input, iv, output, ov, &lanes, &mut work, pv, &sg, zp_out)?;
            ox0 += n;
        }
        c0 += cb;
    }
    Ok(())
}

/// Replicate the weights and requantisation constants of channels `c0 .. c0 + cb` along the
/// first `len` lanes.
#[inline(always)]
fn fill_lanes(
    lanes: &mut Lanes,
    weights: &[u8],
    params: &[u8],
    c0: usize,
    cb: usize,
    len: usize,
) -> Result<(), NnError> {
    lanes.fast = true;
    for i in 0..cb.min(len) {
        let ch = c0 + i;
        let q = params.get(ch * CHAN_REC..(ch + 1) * CHAN_REC).and_then(ChanQ::read);
        let q = q.ok_or(NnError::Malformed)?;
        if q.sh_pos > MAX_SHIFT || q.sh_neg > MAX_SHIFT {
            return Err(NnError::Malformed);
        }
        let f = FastQ::new(&q).unwrap_or_else(|| {
            lanes.fast = false;
            let s = |sh: u8| sh as i32 - FAST_MIN_SHIFT as i32;
            let (s_pos, s_neg) = (s(q.sh_pos), s(q.sh_neg));
            FastQ { bias: q.bias, m_pos: q.m_pos, m_x: q.m_pos ^ q.m_neg, s_pos, s_x: s_pos ^ s_neg }
        });
        let wc = weights.get(ch * TAPS..(ch + 1) * TAPS).ok_or(NnError::Malformed)?;
        let wsum: i32 = wc.iter().map(|&v| v as i8 as i32).sum();
        let bias = f.bias.wrapping_sub(wsum * 128);
        let mut j = i;
        while j < len {
            for (row, &wv) in lanes.w.iter_mut().zip(wc) {
                *row.get_mut(j).ok_or(NnError::Malformed)? = wv as i8 as i32;
            }
            let set = |a: &mut [i32; SEG], v: i32| a.get_mut(j).map(|d| *d = v).ok_or(NnError::Malformed);
            set(&mut lanes.bias, bias)?;
            set(&mut lanes.m_pos, f.m_pos)?;
            set(&mut lanes.m_x, f.m_x)?;
            set(&mut lanes.s_pos, f.s_pos)?;
            set(&mut lanes.s_x, f.s_x)?;
            j += cb;
        }
    }
    Ok(())
}

/// Buffers of [`strip`]: the ring of three staged rows, accumulators (blocks without the fast
/// requantisation) and output bytes (strided output views).
struct Work {
    rows: [[u8; ROW]; 3],
    acc: [i32; SEG],
    obuf: [u8; SEG],
}

/// One segment column: output pixels `ox0 .. ox0 + n`, channels `c0 .. c0 + cb`.
struct Seg {
    c0: usize,
    cb: usize,
    ox0: usize,
    n: usize,
    stride: usize,
}

/// Every output row of one segment column.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn strip(
    input: &[u8],
    iv: &View,
    output: &mut [u8],
    ov: &View,
    lanes: &Lanes,
    work: &mut Work,
    padv: &[u8],
    sg: &Seg,
    zp_out: i8,
) -> Result<(), NnError> {
    let (cb, n) = (sg.cb, sg.n);
    let l = n * cb;
    // Staged row length and the offsets of taps kx = 0, 1, 2 in it.
    let (rlen, offs) = if sg.stride == 1 {
        ((n + 2) * cb, [0, cb, 2 * cb])
    } else {
        ((2 * n + 1) * cb, [0, (n + 1) * cb, cb])
    };
    if l > SEG || rlen > ROW {
        return Err(NnError::Malformed);
    }
    let Work { rows, acc, obuf } = work;
    // Which input row (plus one, so that the top padding row is 0) each ring slot holds.
    let mut tag = [usize::MAX; 3];
    let out_contig = ov.pixel_stride == cb;
    for oy in 0..ov.h {
        let mut slot = [0usize; 3];
        for (ky, sl) in slot.iter_mut().enumerate() {
            let t = oy * sg.stride + ky;
            let k = t % 3;
            if tag.get(k) != Some(&t) {
                let row = rows.get_mut(k).and_then(|r| r.get_mut(..rlen)).ok_or(NnError::Malformed)?;
                // Fixed channel counts make the pixel copies of stride 2 and of strided views
                // inline moves.
                match cb {
                    8 => stage::<8>(input, iv, row, padv, sg, t)?,
                    16 => stage::<16>(input, iv, row, padv, sg, t)?,
                    32 => stage::<32>(input, iv, row, padv, sg, t)?,
                    64 => stage::<64>(input, iv, row, padv, sg, t)?,
                    _ => stage::<0>(input, iv, row, padv, sg, t)?,
                }
                for b in row.iter_mut() {
                    *b ^= 0x80;
                }
                *tag.get_mut(k).ok_or(NnError::Malformed)? = t;
            }
            *sl = k;
        }
        let r = |ky: usize| rows.get(slot[ky]).ok_or(NnError::Malformed);
        let x = [r(0)?, r(1)?, r(2)?];
        let ob = ov.off + (oy * ov.w + sg.ox0) * ov.pixel_stride + sg.c0;
        if out_contig {
            let out = output.get_mut(ob..ob + l).ok_or(NnError::Malformed)?;
            row_out(out, acc, x, offs, lanes, zp_out)?;
        } else {
            let ob2 = obuf.get_mut(..l).ok_or(NnError::Malformed)?;
            row_out(ob2, acc, x, offs, lanes, zp_out)?;
            for (p, px) in ob2.chunks_exact(cb).enumerate() {
                let o = ob + p * ov.pixel_stride;
                output.get_mut(o..o + cb).ok_or(NnError::Malformed)?.copy_from_slice(px);
            }
        }
    }
    Ok(())
}

/// `d.copy_from_slice(s)` for one pixel (`cb` bytes), with a compile-time length when `N` is
/// not 0.
#[inline(always)]
fn copy_px<const N: usize>(d: &mut [u8], s: &[u8]) {
    if N != 0 {
        if let (Some(d), Some(s)) = (d.get_mut(..N), s.get(..N)) {
            d.copy_from_slice(s);
        }
    } else if d.len() == s.len() {
        d.copy_from_slice(s);
    }
}

/// Stage input row `t − 1` (a padding row for `t = 0` and `t = h + 1`) of segment `sg` into
/// `row` (layout in the module docs). `N` is `cb` when it is a compile-time constant, else 0.
#[inline(always)]
fn stage<const N: usize>(
    input: &[u8],
    iv: &View,
    row: &mut [u8],
    padv: &[u8],
    sg: &Seg,
    t: usize,
) -> Result<(), NnError> {
    let (cb, ox0, n) = (sg.cb, sg.ox0, sg.n);
    let padv = padv.get(..cb).ok_or(NnError::Malformed)?;
    if t == 0 || t > iv.h {
        for d in row.chunks_exact_mut(cb) {
            copy_px::<N>(d, padv);
        }
        return Ok(());
    }
    let ps = iv.pixel_stride;
    let base = iv.off + (t - 1) * iv.w * ps + sg.c0;
    let src = Src { input, w: iv.w, ps, base, padv };
    let put = |row: &mut [u8], slot: usize, ix1: usize| put_px::<N>(row, slot, ix1, &src, cb);
    if sg.stride == 1 {
        // Pixels ox0 − 1 ..= ox0 + n, i.e. ix1 = ox0 ..= ox0 + n + 1, in slots 0 ..= n + 1.
        if ps == cb {
            // Those inside the row are one run of input bytes.
            let lo = ox0.max(1);
            let hi = (ox0 + n + 1).min(iv.w);
            if lo <= hi {
                let src = input.get(base + (lo - 1) * ps..base + hi * ps).ok_or(NnError::Malformed)?;
                let d0 = (lo - ox0) * cb;
                row.get_mut(d0..d0 + src.len()).ok_or(NnError::Malformed)?.copy_from_slice(src);
            }
            if ox0 == 0 {
                put(row, 0, 0)?;
            }
            if ox0 + n + 1 > iv.w {
                put(row, n + 1, ox0 + n + 1)?;
            }
        } else {
            for p in 0..n + 2 {
                put(row, p, ox0 + p)?;
            }
        }
    } else {
        // Odd pixels 2(ox0 + p) − 1 (ix1 = 2(ox0 + p)) in slots p = 0 ..= n, even pixels
        // 2(ox0 + p) in slots n + 1 + p. Even pixels are inside the row (2(ow − 1) < w), odd
        // ones except pixel −1 and, for odd widths, pixel w.
        let p0 = usize::from(ox0 == 0);
        if p0 == 1 {
            put(row, 0, 0)?;
            put(row, n + 1, 1)?;
        }
        put(row, n, 2 * (ox0 + n))?;
        if ps == cb && p0 < n {
            // Pairs (odd, even) of pixels p0 .. n are one run of input bytes.
            let first = 2 * (ox0 + p0) - 1;
            let src = input.get(base + first * ps..base + (first + 2 * (n - p0)) * ps);
            let src = src.ok_or(NnError::Malformed)?;
            let (odd, even) = row.split_at_mut((n + 1) * cb);
            let odd = odd.get_mut(p0 * cb..n * cb).ok_or(NnError::Malformed)?;
            let even = even.get_mut(p0 * cb..n * cb).ok_or(NnError::Malformed)?;
            for ((pair, o), e) in
                src.chunks_exact(2 * cb).zip(odd.chunks_exact_mut(cb)).zip(even.chunks_exact_mut(cb))
            {
                let (a, b) = pair.split_at(cb);
                copy_px::<N>(o, a);
                copy_px::<N>(e, b);
            }
        } else {
            for p in p0..n {
                put(row, p, 2 * (ox0 + p))?;
                put(row, n + 1 + p, 2 * (ox0 + p) + 1)?;
            }
        }
    }
    Ok(())
}

/// One staged input row: pixel `ix` is at `input[base + ix·ps ..][..cb]`, `w` pixels.
struct Src<'a> {
    input: &'a [u8],
    w: usize,
    ps: usize,
    base: usize,
    padv: &'a [u8],
}

/// Input pixel `ix1 − 1` of `src` (the padding for `ix1 = 0` or past the row) into pixel slot
/// `slot` of `row`.
#[inline(always)]
fn put_px<const N: usize>(
    row: &mut [u8],
    slot: usize,
    ix1: usize,
    src: &Src<'_>,
    cb: usize,
) -> Result<(), NnError> {
    let d = row.get_mut(slot * cb..slot * cb + cb).ok_or(NnError::Malformed)?;
    if ix1 == 0 || ix1 > src.w {
        copy_px::<N>(d, src.padv);
    } else {
        let o = src.base + (ix1 - 1) * src.ps;
        copy_px::<N>(d, src.input.get(o..o + cb).ok_or(NnError::Malformed)?);
    }
    Ok(())
}

/// One output row segment: `out[j]` for every lane, from the three staged rows `x`.
#[inline(always)]
fn row_out(
    out: &mut [u8],
    acc: &mut [i32; SEG],
    x: [&[u8; ROW]; 3],
    offs: [usize; 3],
    lanes: &Lanes,
    zp_out: i8,
) -> Result<(), NnError> {
    let l = out.len().min(SEG);
    let out = out.get_mut(..l).ok_or(NnError::Malformed)?;
    // Every slice below has length exactly l, so the loops index them without checks.
    let xs = |ky: usize, kx: usize| x[ky].get(offs[kx]..offs[kx] + l).ok_or(NnError::Malformed);
    let (x0, x1, x2, x3, x4, x5, x6, x7, x8) =
        (xs(0, 0)?, xs(0, 1)?, xs(0, 2)?, xs(1, 0)?, xs(1, 1)?, xs(1, 2)?, xs(2, 0)?, xs(2, 1)?, xs(2, 2)?);
    #[inline(always)]
    fn lane(a: &[i32; SEG], l: usize) -> Result<&[i32], NnError> {
        a.get(..l).ok_or(NnError::Malformed)
    }
    let w = &lanes.w;
    let (w0, w1, w2, w3, w4, w5, w6, w7, w8) = (
        lane(&w[0], l)?,
        lane(&w[1], l)?,
        lane(&w[2], l)?,
        lane(&w[3], l)?,
        lane(&w[4], l)?,
        lane(&w[5], l)?,
        lane(&w[6], l)?,
        lane(&w[7], l)?,
        lane(&w[8], l)?,
    );
    // Offset byte (0..=255) × weight (an i16 in an i32): |product| < 2^15, nine cannot overflow.
    macro_rules! mac {
        ($j:ident) => {
            (x0[$j] as i32) * (w0[$j] as i16 as i32)
                + (x1[$j] as i32) * (w1[$j] as i16 as i32)
                + (x2[$j] as i32) * (w2[$j] as i16 as i32)
                + (x3[$j] as i32) * (w3[$j] as i16 as i32)
                + (x4[$j] as i32) * (w4[$j] as i16 as i32)
                + (x5[$j] as i32) * (w5[$j] as i16 as i32)
                + (x6[$j] as i32) * (w6[$j] as i16 as i32)
                + (x7[$j] as i32) * (w7[$j] as i16 as i32)
                + (x8[$j] as i32) * (w8[$j] as i16 as i32)
        };
    }
    let (bias, mp, mx, sp, sx) = (
        lane(&lanes.bias, l)?,
        lane(&lanes.m_pos, l)?,
        lane(&lanes.m_x, l)?,
        lane(&lanes.s_pos, l)?,
        lane(&lanes.s_x, l)?,
    );
    let zp = zp_out as i32;
    if lanes.fast {
        for j in 0..l {
            out[j] = requant_fast(mac!(j), bias[j], mp[j], mx[j], sp[j], sx[j], zp);
        }
    } else {
        let acc = acc.get_mut(..l).ok_or(NnError::Malformed)?;
        for (j, a) in acc.iter_mut().enumerate() {
            *a = mac!(j);
        }
        for (j, (o, &a)) in out.iter_mut().zip(acc.iter()).enumerate() {
            let sh = |s: i32| (s + FAST_MIN_SHIFT as i32) as u8;
            let (m_pos, sh_pos) = (mp[j], sh(sp[j]));
            let q = ChanQ { bias: bias[j], m_pos, m_neg: m_pos ^ mx[j], sh_pos, sh_neg: sh(sp[j] ^ sx[j]) };
            *o = finish(&q, a, zp_out);
        }
    }
    Ok(())
}

/// The random-case check shared by the tests of both 3×3 depthwise kernels (this one and the
/// AVX2 one).
#[cfg(test)]
pub(super) mod shared_tests {
    use super::super::ops::{conv_generic, ConvGeom, Pad, View};
    use super::super::testutil::Rng;
    use super::super::NnError;
    use super::{applies, TAPS};
    use std::vec;
    use std::vec::Vec;

    /// How the data of one case is drawn.
    #[derive(Clone, Copy, Debug)]
    pub(in crate::nn) struct Case {
        pub(in crate::nn) h: usize,
        pub(in crate::nn) w: usize,
        pub(in crate::nn) c: usize,
        pub(in crate::nn) stride: usize,
        /// Extra bytes per pixel (input, output); offsets follow from them.
        pub(in crate::nn) gap: [usize; 2],
        pub(in crate::nn) per_chan: bool,
        /// Short-form requantisation on (almost) every channel.
        pub(in crate::nn) fast: bool,
        /// Input and weights only int8 extremes.
        pub(in crate::nn) extreme: bool,
        pub(in crate::nn) seed: u32,
    }

    /// Run the kernel `run` (with the arguments of `ops::conv2d`) and `conv_generic` on one
    /// random case, tensors inside wider buffers (the input ending exactly at the view's last
    /// byte); every byte of the output buffers must match, including those outside the view.
    pub(in crate::nn) fn check(
        run: impl FnOnce(
            &[u8],
            &View,
            &mut [u8],
            &View,
            &ConvGeom,
            &[u8],
            &[u8],
            Pad<'_>,
            i8,
        ) -> Result<(), NnError>,
        k: Case,
    ) {
        let Case { h, w, c, stride, gap, per_chan, fast, extreme, seed } = k;
        let mut r = Rng(seed);
        let (ips, ioff) = (c + gap[0], gap[0].min(3));
        let (ops_, ooff) = (c + gap[1], gap[1].min(2));
        let (oh, ow) = ((h - 1) / stride + 1, (w - 1) / stride + 1);
        let iv = View { h, w, c, pixel_stride: ips, off: ioff };
        let ov = View { h: oh, w: ow, c, pixel_stride: ops_, off: ooff };
        let byte = |r: &mut Rng| if extreme { [0x80, 0x7f][r.next() as usize % 2] } else { r.byte() };
        let input: Vec<u8> = (0..(h * w - 1) * ips + c + ioff).map(|_| byte(&mut r)).collect();
        let wts: Vec<u8> = (0..c * TAPS).map(|_| byte(&mut r)).collect();
        let mut params = Vec::new();
        for _ in 0..c {
            // Mostly the requested kind; a channel of the other kind now and then.
            let f = if r.next().is_multiple_of(50) { !fast } else { fast };
            params.extend_from_slice(&r.chan_q(f).write());
        }
        let padv: Vec<u8> = (0..c).map(|_| r.byte()).collect();
        let pad = if per_chan { Pad::PerChannel(&padv) } else { Pad::Zp(r.byte() as i8) };
        let zp = r.byte() as i8;
        let g = ConvGeom { k: 3, stride, pad: 1, groups: c };
        assert!(applies(&iv, &ov, &g));
        let len = oh * ow * ops_ + ooff + 1;
        let mut got = vec![0x55u8; len];
        let mut want = vec![0x55u8; len];
        run(&input, &iv, &mut got, &ov, &g, &wts, &params, pad, zp).unwrap();
        conv_generic(&input, &iv, &mut want, &ov, &g, &wts, &params, pad, zp).unwrap();
        if got != want {
            let i = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{k:?}: first difference at byte {i}: {} vs {}", got[i], want[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rng;
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// One random case through [`conv_dw3x3`], see [`shared_tests::check`].
    #[allow(clippy::too_many_arguments)]
    fn check(
        h: usize,
        w: usize,
        c: usize,
        stride: usize,
        gap: [usize; 2],
        per_chan: bool,
        fast: bool,
        seed: u32,
    ) {
        let k = shared_tests::Case { h, w, c, stride, gap, per_chan, fast, extreme: false, seed };
        shared_tests::check(conv_dw3x3, k);
    }

    #[test]
    fn matches_generic_on_model_shapes() {
        // The model's channel counts and strides at reduced heights, with full-width rows.
        for (i, &(h, w, c, s)) in [
            (6, 160, 8, 1),
            (5, 160, 16, 2),
            (4, 80, 32, 1),
            (5, 80, 32, 2),
            (4, 40, 64, 1),
            (4, 40, 64, 2),
            (5, 20, 128, 1),
            (4, 20, 128, 2),
            (3, 10, 256, 1),
        ]
        .iter()
        .enumerate()
        {
            for fast in [true, false] {
                check(h, w, c, s, [0, 0], false, fast, i as u32);
            }
        }
    }

    #[test]
    fn matches_generic_on_odd_sizes_strides_and_views() {
        let mut r = Rng(7);
        for case in 0..300u32 {
            let c = match case % 6 {
                0 => 1 + r.next() as usize % 8,
                1 => 1 + r.next() as usize % 300,
                2 => [8, 16, 32, 64, 128, 256, 300][r.next() as usize % 7],
                _ => 1 + r.next() as usize % 40,
            };
            let w = 1 + r.next() as usize % 70;
            let h = 1 + r.next() as usize % 8;
            let stride = 1 + r.next() as usize % 2;
            let gap = if case % 3 == 0 { [0, 0] } else { [r.next() as usize % 5, r.next() as usize % 4] };
            check(h, w, c, stride, gap, case % 4 == 1, case % 2 == 0, case);
        }
    }

    #[test]
    fn matches_generic_on_several_channel_blocks() {
        // More channels than one segment: blocks of ⌈c / ⌈c/SEG⌉⌉.
        check(3, 3, SEG + 1, 1, [1, 2], true, true, 1);
        check(4, 5, 2 * SEG + 37, 2, [0, 0], false, false, 2);
        check(2, 2, 700, 1, [0, 3], false, true, 3);
    }

    #[test]
    fn applies_only_to_depthwise_3x3_pad_1() {
        let v = |c| View { h: 8, w: 8, c, pixel_stride: c, off: 0 };
        let g = |k, stride, pad, groups| ConvGeom { k, stride, pad, groups };
        assert!(applies(&v(16), &v(16), &g(3, 1, 1, 16)));
        assert!(applies(&v(16), &View { h: 4, w: 4, ..v(16) }, &g(3, 2, 1, 16)));
        assert!(applies(&v(1), &v(1), &g(3, 1, 1, 1)));
        assert!(!applies(&v(16), &v(16), &g(3, 3, 1, 16)), "stride 3");
        assert!(!applies(&v(16), &v(16), &g(3, 1, 0, 16)), "pad 0");
        assert!(!applies(&v(16), &v(16), &g(5, 1, 2, 16)), "5x5");
        assert!(!applies(&v(16), &v(16), &g(1, 1, 0, 16)), "1x1");
        assert!(!applies(&v(16), &v(16), &g(3, 1, 1, 1)), "dense");
        assert!(!applies(&v(16), &v(16), &g(3, 1, 1, 8)), "grouped");
        assert!(!applies(&v(16), &v(32), &g(3, 1, 1, 16)), "channel multiplier");
    }

    #[test]
    fn inconsistent_arguments_are_errors() {
        let iv = View { h: 4, w: 4, c: 2, pixel_stride: 2, off: 0 };
        let ov = iv;
        let g = ConvGeom { k: 3, stride: 1, pad: 1, groups: 2 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 40, sh_neg: 40 }.write();
        let params: Vec<u8> = q.iter().chain(q.iter()).copied().collect();
        let mut out = vec![0u8; 32];
        let run = |inp: &[u8], iv: &View, out: &mut [u8], ov: &View, w: &[u8], p: &[u8], pad| {
            conv_dw3x3(inp, iv, out, ov, &g, w, p, pad, 0)
        };
        assert_eq!(run(&[0; 32], &iv, &mut out, &ov, &[0; 18], &params, Pad::Zp(0)), Ok(()));
        let e = Err(NnError::Malformed);
        assert_eq!(run(&[0; 31], &iv, &mut out, &ov, &[0; 18], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &iv, &mut out[..31], &ov, &[0; 18], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &iv, &mut out, &ov, &[0; 17], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &iv, &mut out, &ov, &[0; 18], &params[..31], Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &iv, &mut out, &ov, &[0; 18], &params, Pad::PerChannel(&[0])), e);
        assert_eq!(run(&[0; 32], &iv, &mut out, &View { h: 3, ..ov }, &[0; 18], &params, Pad::Zp(0)), e);
        let mut big_shift = params.clone();
        big_shift[12] = MAX_SHIFT + 1;
        assert_eq!(run(&[0; 32], &iv, &mut out, &ov, &[0; 18], &big_shift, Pad::Zp(0)), e);
    }

    /// `i32` values with the extremes and their neighbours drawn often.
    fn int() -> impl Strategy<Value = i32> {
        prop_oneof![
            Just(i32::MIN),
            Just(i32::MIN + 1),
            Just(i32::MAX),
            Just(i32::MAX - 1),
            Just(0),
            Just(-1),
            Just(1),
            Just(1 << 30),
            Just(-(1 << 30)),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            (any::<i32>(), 0u32..31).prop_map(|(v, s)| v >> s),
        ]
    }

    fn shift() -> impl Strategy<Value = u8> {
        prop_oneof![Just(0u8), Just(32), Just(FAST_MIN_SHIFT), Just(MAX_SHIFT), 0u8..=MAX_SHIFT]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_generic(
            h in 1usize..9,
            w in 1usize..71,
            c in prop_oneof![1usize..20, 1usize..301],
            stride in 1usize..3,
            gap in (0usize..4, 0usize..4),
            per_chan: bool,
            fast: bool,
            seed: u32,
        ) {
            check(h, w, c, stride, [gap.0, gap.1], per_chan, fast, seed);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        /// The fast requantisation exists exactly when both sides have shift ≥ 33 or a zero
        /// multiplier, and then equals [`finish`] for every accumulator, bias, multiplier and
        /// zero point.
        #[test]
        fn fast_requant_is_finish(
            acc in int(),
            bias in int(),
            m_pos in prop_oneof![int(), Just(0)],
            m_neg in prop_oneof![int(), Just(0)],
            sh_pos in shift(),
            sh_neg in shift(),
            zp: i8,
        ) {
            let q = ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg };
            let ok = |m: i32, sh: u8| m == 0 || sh >= FAST_MIN_SHIFT;
            match FastQ::new(&q) {
                Some(f) => prop_assert_eq!(f.apply(acc, zp), finish(&q, acc, zp)),
                None => prop_assert!(!(ok(m_pos, sh_pos) && ok(m_neg, sh_neg))),
            }
        }
    }

    #[test]
    fn fast_requant_extremes() {
        let ext = [i32::MIN, i32::MIN + 1, -(1 << 30), -2, -1, 0, 1, 2, 1 << 30, i32::MAX - 1, i32::MAX];
        for &acc in &ext {
            for &bias in &[0, i32::MIN, i32::MAX, -1, 1] {
                for &m in &ext {
                    for sh in [FAST_MIN_SHIFT, 34, 40, 61, MAX_SHIFT] {
                        for zp in [i8::MIN, -1, 0, 1, i8::MAX] {
                            let q = ChanQ { bias, m_pos: m, m_neg: m, sh_pos: sh, sh_neg: sh };
                            let f = FastQ::new(&q).unwrap();
                            assert_eq!(f.apply(acc, zp), finish(&q, acc, zp), "{q:?} {acc} {zp}");
                        }
                    }
                }
            }
        }
        assert!(FastQ::new(&ChanQ { bias: 0, m_pos: 1, m_neg: 0, sh_pos: 32, sh_neg: 0 }).is_none());
        assert!(FastQ::new(&ChanQ { bias: 0, m_pos: 0, m_neg: 0, sh_pos: 0, sh_neg: 0 }).is_some());
        assert!(
            FastQ::new(&ChanQ { bias: 0, m_pos: 0, m_neg: 0, sh_pos: MAX_SHIFT + 1, sh_neg: 0 }).is_none()
        );
    }
}
