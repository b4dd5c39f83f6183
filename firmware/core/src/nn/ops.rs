//! Integer operators on int8 NHWC tensors: convolution (full, depthwise, grouped) with fused
//! ReLU / LeakyReLU, and add with optional nearest 2× upsampling of the second input.
//!
//! Arithmetic: int8 × int8 products accumulate in `i32`; the accumulator is requantised with a
//! per-channel multiplier and right shift (`round(acc × m / 2^shift)`, computed exactly in `i64`,
//! ties rounded up), the output zero point added, and the result clamped to `-128..=127`. The
//! converter folds the input zero point into the bias (`bias' = bias − Σ w·zp`), so padded taps
//! read the padding value (the input zero point, i.e. real 0) like any other pixel.
//!
//! Invariant: callers pass slices whose lengths match the geometry (checked by
//! [`crate::nn::exec`]); the kernels still never index out of bounds on any input, they return
//! [`NnError::Malformed`] instead.

use super::blob::{rd_i32, CHAN_REC, MAX_SHIFT};
use super::NnError;

/// `round(acc × m / 2^shift)` with ties towards +∞, exact.
#[inline]
pub fn requant(acc: i32, m: i32, shift: u8) -> i32 {
    let p = acc as i64 * m as i64;
    let r = if shift == 0 { p } else { (p + (1i64 << (shift - 1))) >> shift };
    r.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

#[inline]
fn sat8(v: i32) -> u8 {
    v.clamp(-128, 127) as i8 as u8
}

/// Per-output-channel requantisation record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChanQ {
    /// Bias with the input zero point folded in, in accumulator units.
    pub bias: i32,
    /// Multiplier for `acc >= 0`.
    pub m_pos: i32,
    /// Multiplier for `acc < 0` (0 for ReLU, α·m for LeakyReLU, `m_pos` for none).
    pub m_neg: i32,
    /// Shift for `acc >= 0`.
    pub sh_pos: u8,
    /// Shift for `acc < 0`.
    pub sh_neg: u8,
}

impl ChanQ {
    /// Decode a 16-byte record.
    pub fn read(b: &[u8]) -> Option<ChanQ> {
        Some(ChanQ {
            bias: rd_i32(b, 0)?,
            m_pos: rd_i32(b, 4)?,
            m_neg: rd_i32(b, 8)?,
            sh_pos: *b.get(12)?,
            sh_neg: *b.get(13)?,
        })
    }
    /// Encode as a 16-byte record.
    pub fn write(&self) -> [u8; CHAN_REC] {
        let mut r = [0u8; CHAN_REC];
        r[0..4].copy_from_slice(&self.bias.to_le_bytes());
        r[4..8].copy_from_slice(&self.m_pos.to_le_bytes());
        r[8..12].copy_from_slice(&self.m_neg.to_le_bytes());
        r[12] = self.sh_pos;
        r[13] = self.sh_neg;
        r
    }
    /// Requantise an accumulator (before the output zero point).
    #[inline]
    pub fn apply(&self, acc: i32) -> i32 {
        if acc >= 0 {
            requant(acc, self.m_pos, self.sh_pos)
        } else {
            requant(acc, self.m_neg, self.sh_neg)
        }
    }
}

/// A tensor's placement in a byte slice: element `(y, x, c)` is at
/// `off + (y × width + x) × pixel_stride + c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    /// Height in pixels.
    pub h: usize,
    /// Width in pixels.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Bytes between pixels.
    pub pixel_stride: usize,
    /// Offset of channel 0 of pixel 0.
    pub off: usize,
}

impl View {
    /// True when every element lies in a slice of `len` bytes.
    pub fn fits(&self, len: usize) -> bool {
        if self.h == 0 || self.w == 0 || self.c == 0 {
            return false;
        }
        // Every step checked: a view from a malformed blob must not overflow.
        let last = self
            .h
            .checked_mul(self.w)
            .and_then(|n| (n - 1).checked_mul(self.pixel_stride))
            .and_then(|v| v.checked_add(self.off))
            .and_then(|v| v.checked_add(self.c));
        self.c <= self.pixel_stride && matches!(last, Some(e) if e <= len)
    }
}

/// How padded taps are filled.
#[derive(Clone, Copy, Debug)]
pub enum Pad<'a> {
    /// Every channel pads with this value (the input zero point).
    Zp(i8),
    /// One value per input channel (the first layer: the per-channel mean).
    PerChannel(&'a [u8]),
}

/// Convolution geometry.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// Square kernel size (odd).
    pub k: usize,
    /// Stride (1 or 2).
    pub stride: usize,
    /// Padding on each side.
    pub pad: usize,
    /// Channel groups.
    pub groups: usize,
}

#[inline]
fn dot(w: &[u8], x: &[u8]) -> i32 {
    let mut acc = 0i32;
    for (a, b) in w.iter().zip(x) {
        acc = acc.wrapping_add((*a as i8 as i32) * (*b as i8 as i32));
    }
    acc
}

#[inline]
fn dot16(w: &[i16], x: &[i16]) -> i32 {
    let mut acc = 0i32;
    for (a, b) in w.iter().zip(x) {
        acc = acc.wrapping_add((*a as i32) * (*b as i32));
    }
    acc
}

/// Four dot products of `x` with four weight rows, sharing every load of `x`. Operands are
/// `i16` (sign-extended once, outside the hot loop) so that LLVM vectorises the loop into
/// 16-bit multiply-adds (`pmaddwd` on x86) and can pair loads into `smlad` on Cortex-M.
#[inline]
fn dot4(x: &[i16], w: [&[i16]; 4]) -> [i32; 4] {
    let n = x.len();
    let (w0, w1, w2, w3) = (&w[0][..n], &w[1][..n], &w[2][..n], &w[3][..n]);
    let mut a = [0i32; 4];
    for i in 0..n {
        let xi = x[i] as i32;
        a[0] = a[0].wrapping_add(xi * (w0[i] as i32));
        a[1] = a[1].wrapping_add(xi * (w1[i] as i32));
        a[2] = a[2].wrapping_add(xi * (w2[i] as i32));
        a[3] = a[3].wrapping_add(xi * (w3[i] as i32));
    }
    a
}

/// Sign-extend int8 bytes into `i16`s.
#[inline]
fn widen(dst: &mut [i16], src: &[u8]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s as i8 as i16;
    }
}

/// Output channels whose [`ChanQ`] records are decoded at a time.
const CHUNK: usize = 64;
/// Largest `k²·cin` (one output pixel's receptive field) the dense path gathers on the stack.
const MAX_FIELD: usize = 2304;
/// `i16` weights of one block of output channels of the dense path (16 KiB of stack).
const W_BUF: usize = 8192;
/// Largest channel count of the fast paths' padding buffer.
pub(super) const MAX_PAD: usize = 256;
/// Largest kernel side of the depthwise fast path.
const DW_MAX_K: usize = 3;
/// Channels the depthwise fast path processes at a time.
const DW_CHUNK: usize = 64;

/// 2-D convolution: `input` (view `iv`) → `output` (view `ov`). `weights` is
/// `[cout][k][k][cin/groups]` int8, `params` holds `cout` [`ChanQ`] records.
///
/// Dispatches to a specialised kernel for the shapes the models use (dense convolutions
/// including 1×1, and depthwise 3×3), or to a general one; every kernel computes exactly the
/// same integers (the accumulator is a wrapping `i32` sum, so the order of the products does
/// not matter).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
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
    conv2d_on(true, input, iv, output, ov, g, weights, params, pad, zp_out)
}

/// [`conv2d`], with the AVX2 kernels allowed or not (the tests run both paths on any host).
#[allow(clippy::too_many_arguments)]
pub(super) fn conv2d_on(
    simd: bool,
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
    let (cin, cout, groups, k) = (iv.c, ov.c, g.groups, g.k);
    if groups == 0 || cin % groups != 0 || cout % groups != 0 || k == 0 || g.stride == 0 {
        return Err(NnError::Malformed);
    }
    if !iv.fits(input.len()) || !ov.fits(output.len()) {
        return Err(NnError::Malformed);
    }
    let ksz = k * k * (cin / groups);
    if weights.len() < cout * ksz || params.len() < cout * CHAN_REC {
        return Err(NnError::Malformed);
    }
    if let Pad::PerChannel(p) = pad {
        if p.len() < cin {
            return Err(NnError::Malformed);
        }
    }
    // Output size must be what the stride and padding give.
    let expect = |n: usize| (n + 2 * g.pad).checked_sub(k).map(|v| v / g.stride + 1);
    if expect(iv.h) != Some(ov.h) || expect(iv.w) != Some(ov.w) {
        return Err(NnError::Malformed);
    }
    // Shifts as the blob parser checks them (the kernels rely on it).
    let shifts_ok = |r: &[u8]| r[12] <= MAX_SHIFT && r[13] <= MAX_SHIFT;
    if !params[..cout * CHAN_REC].chunks_exact(CHAN_REC).all(shifts_ok) {
        return Err(NnError::Malformed);
    }
    #[cfg(not(all(feature = "simd", target_arch = "x86_64")))]
    let _ = simd;
    let depthwise = super::depthwise::applies(iv, ov, g);
    let winograd = super::winograd::applies(iv, ov, g);
    #[cfg(all(feature = "simd", target_arch = "x86_64"))]
    if let Some(s) = super::x86::v3().filter(|_| simd) {
        let dense = groups == 1 && ksz <= super::x86::MAX_K && cin <= MAX_PAD;
        let first = super::x86::first::applies(iv, ov, g);
        let pw = super::x86::pw::applies(iv, ov, g);
        if first || winograd || dense || depthwise || pw {
            let a = super::x86::ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out };
            return if first {
                super::x86::first::conv_first(s, a)
            } else if pw {
                super::x86::pw::conv_pw(s, a)
            } else if winograd {
                super::x86::wino::conv3x3_winograd(s, a)
            } else if dense {
                super::x86::conv_dense(s, a)
            } else {
                super::x86::dw::conv_dw3x3(s, a)
            };
        }
    }
    if depthwise {
        return super::depthwise::conv_dw3x3(input, iv, output, ov, g, weights, params, pad, zp_out);
    }
    if winograd {
        return super::winograd::conv3x3_winograd(input, iv, output, ov, g, weights, params, pad, zp_out);
    }
    if groups == 1 && ksz <= MAX_FIELD && cin <= MAX_PAD {
        conv_dense(input, iv, output, ov, g, weights, params, pad, zp_out)
    } else if groups == cin && groups == cout && k <= DW_MAX_K {
        conv_depthwise(input, iv, output, ov, g, weights, params, pad, zp_out)
    } else {
        conv_generic(input, iv, output, ov, g, weights, params, pad, zp_out)
    }
}

/// Decode the [`ChanQ`] records of output channels `oc0..oc0 + q.len()`.
pub(super) fn read_q(params: &[u8], oc0: usize, q: &mut [ChanQ]) -> Result<(), NnError> {
    for (i, qi) in q.iter_mut().enumerate() {
        let o = (oc0 + i) * CHAN_REC;
        *qi = params.get(o..o + CHAN_REC).and_then(ChanQ::read).ok_or(NnError::Malformed)?;
    }
    Ok(())
}

/// Requantise one accumulator (without bias) into an output byte: exactly
/// `sat8(zp_out + q.apply(bias + acc))` (with the `i32` sum wrapping), computed without
/// branches because the sign of the accumulator is unpredictable. Needs both shifts at most
/// [`MAX_SHIFT`] (checked by [`conv2d`]).
#[inline(always)]
pub(super) fn finish(q: &ChanQ, acc: i32, zp_out: i8) -> u8 {
    let a = q.bias.wrapping_add(acc);
    let neg = a < 0;
    let m = if neg { q.m_neg } else { q.m_pos };
    let sh = (if neg { q.sh_neg } else { q.sh_pos } & 63) as u32;
    let p = a as i64 * m as i64;
    // For sh = 0 the rounding term is 0, as in `requant`; |p| < 2^62 so the sum cannot overflow.
    let r = (p + ((1i64 << sh) >> 1)) >> sh;
    let r = r.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    sat8((zp_out as i32).wrapping_add(r))
}

/// The padding value of each of the first `n` input channels, in a stack buffer.
pub(super) fn pad_values(pad: Pad<'_>, n: usize) -> Result<[u8; MAX_PAD], NnError> {
    let mut b = [0u8; MAX_PAD];
    let dst = b.get_mut(..n).ok_or(NnError::Malformed)?;
    match pad {
        Pad::Zp(z) => dst.fill(z as u8),
        Pad::PerChannel(p) => dst.copy_from_slice(p.get(..n).ok_or(NnError::Malformed)?),
    }
    Ok(b)
}

/// Dense convolution (one group, any kernel), as a matrix product of output pixels × receptive
/// fields by fields × output channels. Output channels go in blocks whose weight rows are
/// widened to `i16` once into a stack buffer; for each output pixel the `k × k × cin` receptive
/// field is gathered (padding taps read the padding values) and widened into one contiguous
/// vector, whose dot products with the block's rows are taken four at a time.
#[allow(clippy::too_many_arguments)]
fn conv_dense(
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
    let (cin, cout, k) = (iv.c, ov.c, g.k);
    let field = k * k * cin;
    let padv = pad_values(pad, cin)?;
    let padv = padv.get(..cin).ok_or(NnError::Malformed)?;
    let weights = weights.get(..cout * field).ok_or(NnError::Malformed)?;
    let contiguous = iv.pixel_stride == cin;
    let mut xbuf = [0i16; MAX_FIELD];
    let xbuf = xbuf.get_mut(..field).ok_or(NnError::Malformed)?;
    let mut wbuf = [0i16; W_BUF];
    // Rows per block: as many as the buffer holds, a multiple of four when possible.
    let rows = (W_BUF / field).clamp(1, CHUNK);
    let rows = if rows >= 4 { rows & !3 } else { rows };
    let mut q = [ChanQ::default(); CHUNK];
    let mut oc0 = 0;
    while oc0 < cout {
        let n = (cout - oc0).min(rows);
        let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
        read_q(params, oc0, q)?;
        let wb = wbuf.get_mut(..n * field).ok_or(NnError::Malformed)?;
        widen(wb, weights.get(oc0 * field..(oc0 + n) * field).ok_or(NnError::Malformed)?);
        let wb: &[i16] = wb;
        for oy in 0..ov.h {
            let iy0 = (oy * g.stride) as isize - g.pad as isize;
            for ox in 0..ov.w {
                let ix0 = (ox * g.stride) as isize - g.pad as isize;
                for (ky, xrow) in xbuf.chunks_exact_mut(k * cin).enumerate() {
                    let iy = iy0 + ky as isize;
                    let row_in = iy >= 0 && (iy as usize) < iv.h;
                    let rb = iv.off + (iy.max(0) as usize * iv.w) * iv.pixel_stride;
                    if row_in && contiguous && ix0 >= 0 && ix0 as usize + k <= iv.w {
                        // The whole kernel row is one run of input bytes.
                        let xb = rb + ix0 as usize * cin;
                        widen(xrow, input.get(xb..xb + k * cin).ok_or(NnError::Malformed)?);
                        continue;
                    }
                    for (kx, dst) in xrow.chunks_exact_mut(cin).enumerate() {
                        let ix = ix0 + kx as isize;
                        if row_in && ix >= 0 && (ix as usize) < iv.w {
                            let xb = rb + ix as usize * iv.pixel_stride;
                            widen(dst, input.get(xb..xb + cin).ok_or(NnError::Malformed)?);
                        } else {
                            widen(dst, padv);
                        }
                    }
                }
                let x: &[i16] = xbuf;
                let ob = ov.off + (oy * ov.w + ox) * ov.pixel_stride + oc0;
                let out = output.get_mut(ob..ob + n).ok_or(NnError::Malformed)?;
                let mut wr = wb.chunks_exact(4 * field);
                let mut qr = q.chunks_exact(4);
                let mut or = out.chunks_exact_mut(4);
                for ((w4, q4), o4) in (&mut wr).zip(&mut qr).zip(&mut or) {
                    let (w0, rest) = w4.split_at(field);
                    let (w1, rest) = rest.split_at(field);
                    let (w2, w3) = rest.split_at(field);
                    let acc = dot4(x, [w0, w1, w2, w3]);
                    for ((o, qi), a) in o4.iter_mut().zip(q4).zip(acc) {
                        *o = finish(qi, a, zp_out);
                    }
                }
                for ((w1, qi), o) in
                    wr.remainder().chunks_exact(field).zip(qr.remainder()).zip(or.into_remainder())
                {
                    *o = finish(qi, dot16(w1, x), zp_out);
                }
            }
        }
        oc0 += n;
    }
    Ok(())
}

/// Depthwise convolution (`groups = cin = cout`, kernel up to 3×3): channels are the inner,
/// contiguous dimension, so per output pixel and tap the kernel multiplies a run of input
/// channels by that tap's weights (transposed to `[tap][channel]` once per channel chunk).
#[allow(clippy::too_many_arguments)]
fn conv_depthwise(
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
    let (c, k) = (iv.c, g.k);
    let taps = k * k;
    let mut q = [ChanQ::default(); DW_CHUNK];
    let mut wt = [[0i16; DW_CHUNK]; DW_MAX_K * DW_MAX_K];
    let mut c0 = 0;
    while c0 < c {
        let n = (c - c0).min(DW_CHUNK);
        let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
        read_q(params, c0, q)?;
        let wsrc = weights.get(c0 * taps..(c0 + n) * taps).ok_or(NnError::Malformed)?;
        for (j, wc) in wsrc.chunks_exact(taps).enumerate() {
            for (t, &v) in wc.iter().enumerate() {
                wt[t][j] = v as i8 as i16;
            }
        }
        let padv = match pad {
            Pad::Zp(z) => [z as u8; DW_CHUNK],
            Pad::PerChannel(p) => {
                let mut b = [0u8; DW_CHUNK];
                b[..n].copy_from_slice(p.get(c0..c0 + n).ok_or(NnError::Malformed)?);
                b
            }
        };
        let padv = &padv[..n];
        for oy in 0..ov.h {
            let iy0 = (oy * g.stride) as isize - g.pad as isize;
            for ox in 0..ov.w {
                let ix0 = (ox * g.stride) as isize - g.pad as isize;
                let mut acc = [0i32; DW_CHUNK];
                let acc = &mut acc[..n];
                for (ky, wk) in wt.chunks_exact(k).take(k).enumerate() {
                    let iy = iy0 + ky as isize;
                    let row_in = iy >= 0 && (iy as usize) < iv.h;
                    let rb = iv.off + (iy.max(0) as usize * iv.w) * iv.pixel_stride + c0;
                    for (kx, wrow) in wk.iter().enumerate() {
                        let ix = ix0 + kx as isize;
                        let x = if row_in && ix >= 0 && (ix as usize) < iv.w {
                            let xb = rb + ix as usize * iv.pixel_stride;
                            input.get(xb..xb + n).ok_or(NnError::Malformed)?
                        } else {
                            padv
                        };
                        for ((a, &xv), &wv) in acc.iter_mut().zip(x).zip(&wrow[..n]) {
                            *a = a.wrapping_add((xv as i8 as i16 as i32) * (wv as i32));
                        }
                    }
                }
                let ob = ov.off + (oy * ov.w + ox) * ov.pixel_stride + c0;
                let out = output.get_mut(ob..ob + n).ok_or(NnError::Malformed)?;
                for ((o, qi), &a) in out.iter_mut().zip(q.iter()).zip(acc.iter()) {
                    *o = finish(qi, a, zp_out);
                }
            }
        }
        c0 += n;
    }
    Ok(())
}

/// The general convolution (any groups and kernel): one dot product per output element and
/// tap. Also the reference the fast paths are tested against.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_generic(
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
    let (cin, cout, groups, k) = (iv.c, ov.c, g.groups, g.k);
    let (cpg_in, cpg_out) = (cin / groups, cout / groups);
    let ksz = k * k * cpg_in;
    let mut q = [ChanQ::default(); CHUNK];
    let mut oc0 = 0;
    while oc0 < cout {
        let n = (cout - oc0).min(CHUNK);
        read_q(params, oc0, &mut q[..n])?;
        for oy in 0..ov.h {
            let iy0 = (oy * g.stride) as isize - g.pad as isize;
            for ox in 0..ov.w {
                let ix0 = (ox * g.stride) as isize - g.pad as isize;
                let obase = ov.off + (oy * ov.w + ox) * ov.pixel_stride;
                for (i, qi) in q.iter().enumerate().take(n) {
                    let oc = oc0 + i;
                    let ci0 = (oc / cpg_out) * cpg_in;
                    let wrow = weights.get(oc * ksz..(oc + 1) * ksz).ok_or(NnError::Malformed)?;
                    let mut acc = 0i32;
                    for (t, wt) in wrow.chunks_exact(cpg_in).enumerate() {
                        let iy = iy0 + (t / k) as isize;
                        let ix = ix0 + (t % k) as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < iv.h && (ix as usize) < iv.w {
                            let xb = iv.off + (iy as usize * iv.w + ix as usize) * iv.pixel_stride + ci0;
                            let x = input.get(xb..xb + cpg_in).ok_or(NnError::Malformed)?;
                            acc = acc.wrapping_add(dot(wt, x));
                        } else {
                            match pad {
                                Pad::Zp(z) => {
                                    let s: i32 = wt.iter().map(|&v| v as i8 as i32).sum();
                                    acc = acc.wrapping_add(s.wrapping_mul(z as i32));
                                }
                                Pad::PerChannel(p) => {
                                    let p = p.get(ci0..ci0 + cpg_in).ok_or(NnError::Malformed)?;
                                    acc = acc.wrapping_add(dot(wt, p));
                                }
                            }
                        }
                    }
                    let o = output.get_mut(obase + oc).ok_or(NnError::Malformed)?;
                    *o = finish(qi, acc, zp_out);
                }
            }
        }
        oc0 += n;
    }
    Ok(())
}

/// Element-wise add, `b` optionally at half resolution (nearest upsampling, `floor` mapping):
/// `out = zp_out + round(((a − za)·m0 + (b − zb)·m1) / 2^shift)`.
#[allow(clippy::too_many_arguments)]
pub fn add(
    a: &[u8],
    av: &View,
    za: i8,
    b: &[u8],
    bv: &View,
    zb: i8,
    out: &mut [u8],
    ov: &View,
    zo: i8,
    m: [i32; 2],
    shift: u8,
) -> Result<(), NnError> {
    if !av.fits(a.len()) || !bv.fits(b.len()) || !ov.fits(out.len()) || shift > 62 {
        return Err(NnError::Malformed);
    }
    if av.h != ov.h || av.w != ov.w || av.c != ov.c || bv.c != ov.c {
        return Err(NnError::Malformed);
    }
    let up = if bv.h == ov.h && bv.w == ov.w {
        0
    } else if bv.h * 2 == ov.h && bv.w * 2 == ov.w {
        1
    } else {
        return Err(NnError::Malformed);
    };
    let k = AddK { za, zb, zo, m, shift, up };
    #[cfg(all(feature = "simd", target_arch = "x86_64"))]
    if let Some(s) = super::x86::v3() {
        return super::x86::with_avx2_add(s, &k, a, av, b, bv, out, ov);
    }
    add_rows(&k, a, av, b, bv, out, ov)
}

/// The constants of [`add`].
#[derive(Clone, Copy)]
pub(super) struct AddK {
    pub(super) za: i8,
    pub(super) zb: i8,
    pub(super) zo: i8,
    pub(super) m: [i32; 2],
    pub(super) shift: u8,
    /// 1 when `b` is at half resolution, else 0.
    pub(super) up: usize,
}

impl AddK {
    /// The channels of output pixel `(y, x)` and of the two input pixels it reads.
    #[inline(always)]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    pub(super) fn pixel<'a>(
        &self,
        a: &'a [u8],
        av: &View,
        b: &'a [u8],
        bv: &View,
        out: &'a mut [u8],
        ov: &View,
        y: usize,
        x: usize,
    ) -> Result<(&'a [u8], &'a [u8], &'a mut [u8]), NnError> {
        let c = ov.c;
        let pa = av.off + (y * av.w + x) * av.pixel_stride;
        let pb = bv.off + ((y >> self.up) * bv.w + (x >> self.up)) * bv.pixel_stride;
        let po = ov.off + (y * ov.w + x) * ov.pixel_stride;
        let ra = a.get(pa..pa + c).ok_or(NnError::Malformed)?;
        let rb = b.get(pb..pb + c).ok_or(NnError::Malformed)?;
        Ok((ra, rb, out.get_mut(po..po + c).ok_or(NnError::Malformed)?))
    }

    /// One output element: `zo + round(((va − za)·m0 + (vb − zb)·m1) / 2^shift)`, saturated.
    #[inline(always)]
    pub(super) fn apply(&self, va: u8, vb: u8) -> u8 {
        let round = if self.shift == 0 { 0 } else { 1i64 << (self.shift - 1) };
        let va = (va as i8 as i64 - self.za as i64) * self.m[0] as i64;
        let vb = (vb as i8 as i64 - self.zb as i64) * self.m[1] as i64;
        let r = (va + vb + round) >> self.shift;
        (self.zo as i64 + r).clamp(-128, 127) as i8 as u8
    }
}

/// The loops of [`add`] (views already checked): one pixel's channels at a time, as slices.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn add_rows(
    k: &AddK,
    a: &[u8],
    av: &View,
    b: &[u8],
    bv: &View,
    out: &mut [u8],
    ov: &View,
) -> Result<(), NnError> {
    for y in 0..ov.h {
        for x in 0..ov.w {
            let (ra, rb, ro) = k.pixel(a, av, b, bv, out, ov, y, x)?;
            for ((o, &va), &vb) in ro.iter_mut().zip(ra).zip(rb) {
                *o = k.apply(va, vb);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn i8s(v: &[i8]) -> Vec<u8> {
        v.iter().map(|&x| x as u8).collect()
    }

    /// Float reference of the quantised conv with real-valued input `x - zp`, to check the
    /// integer kernel against.
    #[allow(clippy::too_many_arguments)]
    fn conv_ref(
        x: &[i8],
        h: usize,
        w: usize,
        cin: usize,
        zp_in: i8,
        wts: &[i8],
        bias: &[i32],
        cout: usize,
        g: &ConvGeom,
        scale: f64,
        alpha: f64,
        zp_out: i8,
    ) -> Vec<i8> {
        let oh = (h + 2 * g.pad - g.k) / g.stride + 1;
        let ow = (w + 2 * g.pad - g.k) / g.stride + 1;
        let (cpi, cpo) = (cin / g.groups, cout / g.groups);
        let mut out = vec![0i8; oh * ow * cout];
        for oy in 0..oh {
            for ox in 0..ow {
                for oc in 0..cout {
                    let mut acc = bias[oc] as f64;
                    for ky in 0..g.k {
                        for kx in 0..g.k {
                            let iy = (oy * g.stride + ky) as isize - g.pad as isize;
                            let ix = (ox * g.stride + kx) as isize - g.pad as isize;
                            if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                                continue;
                            }
                            for ci in 0..cpi {
                                let c = (oc / cpo) * cpi + ci;
                                let xv = x[(iy as usize * w + ix as usize) * cin + c] as f64 - zp_in as f64;
                                acc += wts[((oc * g.k + ky) * g.k + kx) * cpi + ci] as f64 * xv;
                            }
                        }
                    }
                    let y = if acc < 0.0 { acc * alpha } else { acc } * scale;
                    out[(oy * ow + ox) * cout + oc] = (y.round() + zp_out as f64).clamp(-128.0, 127.0) as i8;
                }
            }
        }
        out
    }

    fn mult(real: f64) -> (i32, u8) {
        let mut sh = 31u8;
        let mut r = real;
        while r < 0.5 {
            r *= 2.0;
            sh += 1;
        }
        ((r * 2f64.powi(31)).round() as i32, sh)
    }

    fn lcg(seed: &mut u32) -> i8 {
        *seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        (*seed >> 24) as i8
    }

    fn run_case(h: usize, w: usize, cin: usize, cout: usize, g: ConvGeom, alpha: f64, seed: u32) {
        let mut s = seed;
        let zp_in: i8 = -20;
        let x: Vec<i8> = (0..h * w * cin).map(|_| lcg(&mut s)).collect();
        let cpi = cin / g.groups;
        let wts: Vec<i8> = (0..cout * g.k * g.k * cpi).map(|_| lcg(&mut s)).collect();
        let bias: Vec<i32> = (0..cout).map(|_| lcg(&mut s) as i32 * 50).collect();
        let scale = 0.0007;
        let (m, sh) = mult(scale);
        let (mn, shn) = if alpha == 0.0 { (0, 0) } else { mult(scale * alpha) };
        let mut params = Vec::new();
        for oc in 0..cout {
            let sum_w: i32 =
                wts[oc * g.k * g.k * cpi..(oc + 1) * g.k * g.k * cpi].iter().map(|&v| v as i32).sum();
            let q =
                ChanQ { bias: bias[oc] - zp_in as i32 * sum_w, m_pos: m, m_neg: mn, sh_pos: sh, sh_neg: shn };
            params.extend_from_slice(&q.write());
        }
        let oh = (h + 2 * g.pad - g.k) / g.stride + 1;
        let ow = (w + 2 * g.pad - g.k) / g.stride + 1;
        let mut out = vec![0u8; oh * ow * cout];
        let iv = View { h, w, c: cin, pixel_stride: cin, off: 0 };
        let ov = View { h: oh, w: ow, c: cout, pixel_stride: cout, off: 0 };
        conv2d(&i8s(&x), &iv, &mut out, &ov, &g, &i8s(&wts), &params, Pad::Zp(zp_in), 3).unwrap();
        let r = conv_ref(&x, h, w, cin, zp_in, &wts, &bias, cout, &g, scale, alpha, 3);
        for (i, (a, b)) in out.iter().zip(&r).enumerate() {
            let d = (*a as i8 as i32 - *b as i32).abs();
            assert!(d <= 1, "elem {i}: {} vs {}", *a as i8, b);
        }
    }

    #[test]
    fn conv_full_3x3_stride2_leaky() {
        run_case(7, 6, 3, 5, ConvGeom { k: 3, stride: 2, pad: 1, groups: 1 }, 0.1, 1);
    }

    #[test]
    fn conv_depthwise_relu() {
        run_case(6, 5, 8, 8, ConvGeom { k: 3, stride: 1, pad: 1, groups: 8 }, 0.0, 2);
    }

    #[test]
    fn conv_grouped_and_pointwise() {
        run_case(4, 4, 6, 4, ConvGeom { k: 3, stride: 1, pad: 1, groups: 2 }, 1.0, 3);
        run_case(5, 3, 40, 36, ConvGeom { k: 1, stride: 1, pad: 0, groups: 1 }, 1.0, 4);
    }

    #[test]
    fn conv_writes_into_concat_view() {
        // Two convs writing channel slices of one 4-channel buffer.
        let x = i8s(&[1, 2, 3, 4]);
        let iv = View { h: 2, w: 2, c: 1, pixel_stride: 1, off: 0 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 30, sh_neg: 30 }.write();
        let mut buf = vec![0u8; 16];
        for (slot, wv) in [(0usize, 1i8), (3, -1)] {
            let ov = View { h: 2, w: 2, c: 1, pixel_stride: 4, off: slot };
            let g = ConvGeom { k: 1, stride: 1, pad: 0, groups: 1 };
            conv2d(&x, &iv, &mut buf, &ov, &g, &[wv as u8], &q, Pad::Zp(0), 0).unwrap();
        }
        let got: Vec<i8> = buf.iter().map(|&b| b as i8).collect();
        assert_eq!(got, [1, 0, 0, -1, 2, 0, 0, -2, 3, 0, 0, -3, 4, 0, 0, -4]);
    }

    #[test]
    fn per_channel_padding_is_used_at_borders() {
        // 1x1 input, 3x3 kernel of ones: the output sums the input and 8 pad values.
        let x = i8s(&[10, 20]);
        let iv = View { h: 1, w: 1, c: 2, pixel_stride: 2, off: 0 };
        let ov = View { h: 1, w: 1, c: 1, pixel_stride: 1, off: 0 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 30, sh_neg: 30 }.write();
        let mut out = [0u8; 1];
        let g = ConvGeom { k: 3, stride: 1, pad: 1, groups: 1 };
        conv2d(&x, &iv, &mut out, &ov, &g, &[1u8; 18], &q, Pad::PerChannel(&i8s(&[1, 2])), 0).unwrap();
        assert_eq!(out[0] as i8, 30 + 8 * 3);
    }

    #[test]
    fn add_with_upsampling_matches_float() {
        let a: Vec<i8> = (0..4 * 4 * 2).map(|i| (i * 7 % 200) as i8).collect();
        let b: Vec<i8> = (0..2 * 2 * 2).map(|i| (i * 31 % 250 - 125) as i8).collect();
        let (sa, sb, so) = (0.05, 0.08, 0.1);
        let (za, zb, zo) = (-3i8, 5i8, 2i8);
        let sh = 24u8;
        let m =
            [(sa / so * (1u64 << sh) as f64).round() as i32, (sb / so * (1u64 << sh) as f64).round() as i32];
        let mut out = vec![0u8; 32];
        let av = View { h: 4, w: 4, c: 2, pixel_stride: 2, off: 0 };
        let bv = View { h: 2, w: 2, c: 2, pixel_stride: 2, off: 0 };
        add(&i8s(&a), &av, za, &i8s(&b), &bv, zb, &mut out, &av, zo, m, sh).unwrap();
        for y in 0..4 {
            for x in 0..4 {
                for c in 0..2 {
                    let ra = (a[(y * 4 + x) * 2 + c] as f64 - za as f64) * sa;
                    let rb = (b[((y / 2) * 2 + x / 2) * 2 + c] as f64 - zb as f64) * sb;
                    let want = ((ra + rb) / so).round() + zo as f64;
                    let got = out[(y * 4 + x) * 2 + c] as i8 as f64;
                    assert!((got - want.clamp(-128.0, 127.0)).abs() <= 1.0, "{got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn view_extents_that_overflow_do_not_fit() {
        let v = |h, w, off| View { h, w, c: 1, pixel_stride: 1, off };
        assert!(v(4, 4, 0).fits(16));
        assert!(!v(4, 4, 1).fits(16));
        assert!(!v(usize::MAX, 2, 0).fits(usize::MAX));
        assert!(!v(1, 1, usize::MAX).fits(usize::MAX));
    }

    #[test]
    fn bad_geometry_is_an_error() {
        let iv = View { h: 4, w: 4, c: 2, pixel_stride: 2, off: 0 };
        let ov = View { h: 4, w: 4, c: 2, pixel_stride: 2, off: 0 };
        let g = ConvGeom { k: 3, stride: 1, pad: 1, groups: 1 };
        let mut out = vec![0u8; 32];
        // Too few weights, short input, wrong output size.
        assert_eq!(
            conv2d(&[0; 32], &iv, &mut out, &ov, &g, &[0; 3], &[0; 32], Pad::Zp(0), 0),
            Err(NnError::Malformed)
        );
        assert_eq!(
            conv2d(&[0; 8], &iv, &mut out, &ov, &g, &[0; 36], &[0; 32], Pad::Zp(0), 0),
            Err(NnError::Malformed)
        );
        let ov2 = View { h: 3, ..ov };
        assert_eq!(
            conv2d(&[0; 32], &iv, &mut out, &ov2, &g, &[0; 36], &[0; 32], Pad::Zp(0), 0),
            Err(NnError::Malformed)
        );
    }

    /// One random conv case: run the dispatching [`conv2d`] and the general kernel on the same
    /// data (random weights, biases, multipliers of any sign and shifts up to [`MAX_SHIFT`], int8
    /// extremes included) with tensors inside wider buffers, and compare every output byte.
    #[allow(clippy::too_many_arguments)]
    fn fast_vs_generic(
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        g: ConvGeom,
        per_channel_pad: bool,
        seed: u32,
    ) -> (usize, usize) {
        let mut s = seed | 1;
        let byte = |s: &mut u32| {
            let v = lcg(s);
            // One value in eight is an extreme.
            match (*s >> 8) & 7 {
                0 => -128,
                1 => 127,
                _ => v,
            }
        };
        // Odd seeds: tensors inside wider buffers (concat slices); even seeds: dense tensors.
        let (ips, ioff) = if seed % 2 == 1 { (cin + 3, 1) } else { (cin, 0) };
        let (ops_, ooff) = if seed % 2 == 1 { (cout + 2, 2) } else { (cout, 0) };
        let input: Vec<u8> = (0..h * w * ips).map(|_| byte(&mut s) as u8).collect();
        let iv = View { h, w, c: cin, pixel_stride: ips, off: ioff };
        let oh = (h + 2 * g.pad - g.k) / g.stride + 1;
        let ow = (w + 2 * g.pad - g.k) / g.stride + 1;
        let ov = View { h: oh, w: ow, c: cout, pixel_stride: ops_, off: ooff };
        let wts: Vec<u8> = (0..cout * g.k * g.k * cin / g.groups).map(|_| byte(&mut s) as u8).collect();
        let mut params = Vec::new();
        for _ in 0..cout {
            let mut r = || {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                s
            };
            let q = ChanQ {
                bias: r() as i32 >> (r() % 24),
                m_pos: r() as i32 >> (r() % 8),
                m_neg: if r() % 4 == 0 { 0 } else { r() as i32 >> (r() % 8) },
                sh_pos: (r() % (MAX_SHIFT as u32 + 1)) as u8,
                sh_neg: (r() % (MAX_SHIFT as u32 + 1)) as u8,
            };
            params.extend_from_slice(&q.write());
        }
        let padv: Vec<u8> = (0..cin).map(|_| byte(&mut s) as u8).collect();
        let pad = if per_channel_pad { Pad::PerChannel(&padv) } else { Pad::Zp(lcg(&mut s)) };
        let len = oh * ow * ops_ + 2;
        let mut fast = vec![0x55u8; len];
        let mut slow = vec![0x55u8; len];
        conv2d(&input, &iv, &mut fast, &ov, &g, &wts, &params, pad, -7).unwrap();
        conv_generic(&input, &iv, &mut slow, &ov, &g, &wts, &params, pad, -7).unwrap();
        assert_eq!(fast, slow, "{h}x{w} {cin}->{cout} {g:?}");
        // The portable kernels, also on a host whose AVX2 kernels ran above.
        let mut portable = vec![0x55u8; len];
        conv2d_on(false, &input, &iv, &mut portable, &ov, &g, &wts, &params, pad, -7).unwrap();
        assert_eq!(portable, slow, "portable {h}x{w} {cin}->{cout} {g:?}");
        (oh, ow)
    }

    #[test]
    fn fast_paths_match_the_general_kernel_on_model_shapes() {
        let conv = |k, stride, groups| ConvGeom { k, stride, pad: k / 2, groups };
        // First layer, SSH 3×3 convs, pointwise convs, depthwise stride 1 and 2 (more
        // channels than one chunk, and fewer than four).
        fast_vs_generic(9, 11, 3, 8, conv(3, 2, 1), true, 1);
        fast_vs_generic(6, 7, 64, 32, conv(3, 1, 1), false, 2);
        fast_vs_generic(5, 4, 16, 20, conv(3, 1, 1), false, 3);
        fast_vs_generic(4, 6, 256, 64, conv(1, 1, 1), false, 4);
        fast_vs_generic(5, 5, 8, 6, conv(1, 1, 1), false, 5);
        fast_vs_generic(7, 6, 72, 72, conv(3, 1, 72), false, 6);
        fast_vs_generic(8, 9, 3, 3, conv(3, 2, 3), true, 7);
        fast_vs_generic(3, 3, 128, 128, conv(3, 2, 128), false, 8);
        // An odd receptive field (k²·cin = 63) whose pairs fill whole vectors.
        fast_vs_generic(4, 5, 7, 4, conv(3, 2, 1), true, 11);
        fast_vs_generic(4, 1, 7, 2, conv(3, 1, 1), false, 12);
        // Dense tensors (even seeds): the first layer, runs of 1×1 pixels, Winograd tiles.
        fast_vs_generic(9, 11, 3, 8, conv(3, 2, 1), true, 14);
        fast_vs_generic(7, 9, 8, 16, conv(1, 1, 1), false, 16);
        fast_vs_generic(6, 4, 32, 8, conv(1, 1, 1), false, 18);
        fast_vs_generic(7, 5, 64, 24, conv(3, 1, 1), false, 20);
        fast_vs_generic(8, 8, 16, 16, conv(3, 1, 1), true, 22);
        // Outside the fast paths: grouped, and a 5×5 depthwise.
        fast_vs_generic(5, 6, 8, 4, conv(3, 1, 2), false, 9);
        fast_vs_generic(6, 6, 4, 4, conv(5, 1, 4), false, 10);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn fast_paths_match_the_general_kernel(
            h in 1usize..7,
            w in 1usize..7,
            cin in 1usize..40,
            cout in 1usize..40,
            k in proptest::sample::select(vec![1usize, 3]),
            stride in 1usize..3,
            depthwise: bool,
            per_channel_pad: bool,
            seed: u32,
        ) {
            let (cout, groups) = if depthwise { (cin, cin) } else { (cout, 1) };
            let g = ConvGeom { k, stride, pad: k / 2, groups };
            fast_vs_generic(h.max(k), w.max(k), cin, cout, g, per_channel_pad, seed);
        }

        #[test]
        fn finish_is_requant_of_the_biased_accumulator(
            acc: i32,
            bias: i32,
            m_pos: i32,
            m_neg: i32,
            sh_pos in 0u8..=MAX_SHIFT,
            sh_neg in 0u8..=MAX_SHIFT,
            zp: i8,
        ) {
            let q = ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg };
            let want = sat8((zp as i32).wrapping_add(q.apply(bias.wrapping_add(acc))));
            proptest::prop_assert_eq!(finish(&q, acc, zp), want);
        }
    }

    #[test]
    fn requant_rounds_half_up_and_is_exact() {
        assert_eq!(requant(3, 1 << 30, 31), 2); // 1.5 -> 2
        assert_eq!(requant(-3, 1 << 30, 31), -1); // -1.5 -> -1
        assert_eq!(requant(i32::MAX, i32::MAX, 62), 1);
        assert_eq!(requant(100, 7, 0), 700);
    }
}
