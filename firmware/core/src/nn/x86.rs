//! AVX2 kernels for x86-64 hosts, chosen at run time (feature `simd`).
//!
//! The CPU is probed once per call through [`pulp`] (`V3` = x86-64-v3: AVX2, FMA, BMI); on a
//! CPU without AVX2, or without the feature, [`super::ops`] runs its portable kernels. Every
//! kernel here computes exactly the same integers as the portable ones (the tests compare them
//! byte for byte with [`super::ops::conv_generic`]):
//!
//! - products: `vpmaddwd` multiplies sign-extended int8 operands in pairs, `a0·b0 + a1·b1`
//!   into `i32`, which is exact (|each pair| ≤ 2·128·128); the accumulator wraps like the
//!   portable `i32` sums;
//! - requantisation ([`requant8`]): the 64-bit product and rounding shift of
//!   [`super::ops::finish`], done in 64-bit lanes (`vpmuldq`, `vpsrlvq` with the sign folded
//!   in around it, since AVX2 has no 64-bit arithmetic shift), then the same clamp to `i32`,
//!   wrapping zero-point add and saturation to int8.
//!
//! No `unsafe` here: `pulp` checks the CPU features and hands out a `V3` token whose methods
//! are the AVX2 intrinsics; vectors are converted from and to plain arrays with `pulp::cast`.

use core::arch::x86_64::{__m128i, __m256i};

use pulp::x86::V3;

use super::blob::{CHAN_REC, MAX_SHIFT};
use super::ops::{add_rows, pad_values, read_q, AddK, ChanQ, ConvGeom, Pad, View, MAX_PAD};
use super::NnError;

/// The AVX2 token, if this CPU has x86-64-v3.
#[inline]
pub(super) fn v3() -> Option<V3> {
    V3::try_new()
}

/// The arguments of a convolution kernel (those of [`super::ops::conv2d`]).
pub(super) struct ConvArgs<'a> {
    pub input: &'a [u8],
    pub iv: &'a View,
    pub output: &'a mut [u8],
    pub ov: &'a View,
    pub g: &'a ConvGeom,
    pub weights: &'a [u8],
    pub params: &'a [u8],
    pub pad: Pad<'a>,
    pub zp_out: i8,
}

/// A convolution kernel to run inside the AVX2 context: `run` (and all it calls on the hot path)
/// must be `#[inline(always)]` so that it is compiled with AVX2 enabled; portable kernels get
/// LLVM's AVX2 vectorisation that way.
trait Kernel {
    /// Run the kernel.
    fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError>;
}

/// Run kernel `K` compiled for AVX2.
#[inline]
fn with_avx2<K: Kernel>(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Op<'a, K>(V3, ConvArgs<'a>, core::marker::PhantomData<K>);
    impl<K: Kernel> pulp::NullaryFnOnce for Op<'_, K> {
        type Output = Result<(), NnError>;
        #[inline(always)]
        fn call(self) -> Self::Output {
            K::run(self.0, self.1)
        }
    }
    s.vectorize(Op::<K>(s, a, core::marker::PhantomData))
}

/// The portable 3×3 depthwise kernel ([`super::depthwise`]) compiled for AVX2.
pub(super) fn conv_dw3x3(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Dw;
    impl Kernel for Dw {
        #[inline(always)]
        fn run(_: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            super::depthwise::conv_dw3x3(
                a.input, a.iv, a.output, a.ov, a.g, a.weights, a.params, a.pad, a.zp_out,
            )
        }
    }
    with_avx2::<Dw>(s, a)
}

/// [`super::ops::add`]'s loops compiled for AVX2.
#[allow(clippy::too_many_arguments)]
pub(super) fn with_avx2_add(
    s: V3,
    k: &AddK,
    a: &[u8],
    av: &View,
    b: &[u8],
    bv: &View,
    out: &mut [u8],
    ov: &View,
) -> Result<(), NnError> {
    struct Op<'a>(&'a AddK, &'a [u8], &'a View, &'a [u8], &'a View, &'a mut [u8], &'a View);
    impl pulp::NullaryFnOnce for Op<'_> {
        type Output = Result<(), NnError>;
        #[inline(always)]
        fn call(self) -> Self::Output {
            add_rows(self.0, self.1, self.2, self.3, self.4, self.5, self.6)
        }
    }
    s.vectorize(Op(k, a, av, b, bv, out, ov))
}

/// Output channels per micro-tile (two vectors of eight `i32`).
const OB: usize = 16;
/// Output pixels per micro-tile.
const PB: usize = 4;
/// Packed weight pairs held at a time (32 KiB of stack): `[pair][16 channels][2]` `i16`.
const WP: usize = 512;
/// Blocks of 16 output channels whose packed weights and requantisation constants are held at a
/// time (5 KiB of constants).
const QB: usize = 16;
/// Largest `k²·cin` of the dense kernel (its pixel buffer is `PB × MAX_K/2` pairs, 18 KiB).
pub(super) const MAX_K: usize = 2304;

/// Per-channel requantisation constants of one block of 16 output channels, as vectors.
#[derive(Clone, Copy)]
struct QBlock {
    bias: [__m256i; 2],
    m_pos: [__m256i; 2],
    m_neg: [__m256i; 2],
    sh_pos: [__m256i; 2],
    sh_neg: [__m256i; 2],
    /// Short form ([`requant8_short`]): `m_pos ^ m_neg`, `sh_pos − 33`, and its XOR with
    /// `sh_neg − 33`; valid when `fast`.
    m_x: [__m256i; 2],
    s_pos: [__m256i; 2],
    s_x: [__m256i; 2],
    fast: bool,
}

impl QBlock {
    /// Vectors of the records of channels `q` (up to 16; missing lanes are zero).
    #[inline(always)]
    fn new(q: &[ChanQ]) -> QBlock {
        let mut f = [[0i32; OB]; 5];
        for (i, r) in q.iter().take(OB).enumerate() {
            f[0][i] = r.bias;
            f[1][i] = r.m_pos;
            f[2][i] = r.m_neg;
            f[3][i] = r.sh_pos as i32;
            f[4][i] = r.sh_neg as i32;
        }
        let v = |a: [i32; OB]| -> [__m256i; 2] { pulp::cast(a) };
        // The short form needs both shifts ≥ FAST_SHIFT (or a zero multiplier) on every channel.
        let short = |m: i32, sh: u8| {
            if m == 0 {
                Some(0)
            } else if (FAST_SHIFT..=MAX_SHIFT).contains(&sh) {
                Some((sh - FAST_SHIFT) as i32)
            } else {
                None
            }
        };
        let mut g = [[0i32; OB]; 3];
        let mut fast = true;
        for (i, r) in q.iter().take(OB).enumerate() {
            match (short(r.m_pos, r.sh_pos), short(r.m_neg, r.sh_neg)) {
                (Some(sp), Some(sn)) => {
                    g[0][i] = r.m_pos ^ r.m_neg;
                    g[1][i] = sp;
                    g[2][i] = sp ^ sn;
                }
                _ => fast = false,
            }
        }
        QBlock {
            bias: v(f[0]),
            m_pos: v(f[1]),
            m_neg: v(f[2]),
            sh_pos: v(f[3]),
            sh_neg: v(f[4]),
            m_x: v(g[0]),
            s_pos: v(g[1]),
            s_x: v(g[2]),
            fast,
        }
    }
}

/// Shifts from which the short requantisation applies.
const FAST_SHIFT: u8 = 33;

/// [`finish`](super::ops::finish) of eight accumulators when every channel of the block has both shifts at least
/// [`FAST_SHIFT`] (or a zero multiplier). With `a = bias + acc`, `p = a·m` and
/// `sh = 33 + s`, `⌊(p + 2^(sh−1)) / 2^sh⌋ = ⌊(⌊hi / 2^s⌋ + 1) / 2⌋` where `hi = ⌊p / 2^32⌋` is the
/// high half of the product (nested floor divisions), in `[−2^30, 2^30]`; so the result lies in
/// `[−2^29, 2^29]`, the clamp to `i32` of [`finish`](super::ops::finish) never acts and the zero-point add never
/// wraps. A zero multiplier gives 0 either way.
#[inline(always)]
fn requant8_short(s: V3, acc: __m256i, q: &QBlock, h: usize, zp: __m256i) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let a = avx2._mm256_add_epi32(acc, q.bias[h]);
    let neg = avx2._mm256_srai_epi32::<31>(a);
    let m = avx2._mm256_xor_si256(q.m_pos[h], avx2._mm256_and_si256(q.m_x[h], neg));
    let sh = avx2._mm256_xor_si256(q.s_pos[h], avx2._mm256_and_si256(q.s_x[h], neg));
    let pe = avx2._mm256_mul_epi32(a, m);
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    // High halves: the even lanes' moved down, the odd lanes' already in place.
    let hi = avx2._mm256_blend_epi32::<0b1010_1010>(avx2._mm256_srli_epi64::<32>(pe), po);
    let r = avx2._mm256_srai_epi32::<1>(
        avx2._mm256_add_epi32(avx2._mm256_srav_epi32(hi, sh), avx._mm256_set1_epi32(1)),
    );
    let r = avx2._mm256_add_epi32(r, zp);
    avx2._mm256_max_epi32(avx2._mm256_min_epi32(r, avx._mm256_set1_epi32(127)), avx._mm256_set1_epi32(-128))
}

/// `round(p / 2^sh)` (ties up) of 64-bit lanes, then clamped to the `i32` range; `sh ≤ 62`.
#[inline(always)]
fn round_shift_clamp(s: V3, p: __m256i, sh: __m256i) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let one = avx._mm256_set1_epi64x(1);
    // (1 << sh) >> 1: the rounding term, 0 for sh = 0.
    let rnd = avx2._mm256_srli_epi64::<1>(avx2._mm256_sllv_epi64(one, sh));
    let x = avx2._mm256_add_epi64(p, rnd);
    // Arithmetic shift from a logical one: !(!x >> sh) for negative x.
    let sign = avx2._mm256_cmpgt_epi64(avx._mm256_setzero_si256(), x);
    let r = avx2._mm256_xor_si256(avx2._mm256_srlv_epi64(avx2._mm256_xor_si256(x, sign), sh), sign);
    let hi = avx._mm256_set1_epi64x(i32::MAX as i64);
    let lo = avx._mm256_set1_epi64x(i32::MIN as i64);
    let r = avx2._mm256_blendv_epi8(r, hi, avx2._mm256_cmpgt_epi64(r, hi));
    avx2._mm256_blendv_epi8(r, lo, avx2._mm256_cmpgt_epi64(lo, r))
}

/// [`finish`](super::ops::finish) of eight accumulators (channels `8h .. 8h+8` of `q`), as `i32` in `-128..=127`.
#[inline(always)]
fn requant8(s: V3, acc: __m256i, q: &QBlock, h: usize, zp: __m256i) -> __m256i {
    if q.fast {
        return requant8_short(s, acc, q, h, zp);
    }
    let (avx, avx2) = (s.avx, s.avx2);
    let a = avx2._mm256_add_epi32(acc, q.bias[h]);
    let neg = avx2._mm256_srai_epi32::<31>(a);
    let m = avx2._mm256_blendv_epi8(q.m_pos[h], q.m_neg[h], neg);
    let sh = avx2._mm256_blendv_epi8(q.sh_pos[h], q.sh_neg[h], neg);
    let low = avx._mm256_set1_epi64x(0xFFFF_FFFF);
    // Even lanes: vpmuldq reads the low (signed) half of each 64-bit lane.
    let pe = avx2._mm256_mul_epi32(a, m);
    let re = round_shift_clamp(s, pe, avx2._mm256_and_si256(sh, low));
    // Odd lanes, moved down.
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    let ro = round_shift_clamp(s, po, avx2._mm256_srli_epi64::<32>(sh));
    // Both clamped into i32: their low halves are the values; interleave them back.
    let r = avx2._mm256_blend_epi32::<0b1010_1010>(re, avx2._mm256_slli_epi64::<32>(ro));
    let r = avx2._mm256_add_epi32(r, zp);
    avx2._mm256_max_epi32(avx2._mm256_min_epi32(r, avx._mm256_set1_epi32(127)), avx._mm256_set1_epi32(-128))
}

/// Sixteen `i32` lanes already in `-128..=127` (channels 0–7 in `lo`, 8–15 in `hi`) as bytes.
#[inline(always)]
fn to_bytes(s: V3, lo: __m256i, hi: __m256i) -> [u8; 16] {
    let (avx, avx2) = (s.avx, s.avx2);
    // packs works within 128-bit halves: lo0-3 hi0-3 | lo4-7 hi4-7; put the quarters in order.
    let w = avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(avx2._mm256_packs_epi32(lo, hi));
    let b = s.sse2._mm_packs_epi16(avx._mm256_castsi256_si128(w), avx2._mm256_extracti128_si256::<1>(w));
    pulp::cast(b)
}

/// Write the first `n` bytes of `b` at `output[at..]`: whole 16- and 8-byte stores when `n` is
/// 16 or 8 (a variable-length copy would be a `memcpy` call per pixel).
#[inline(always)]
fn put(output: &mut [u8], at: usize, b: &[u8; 16], n: usize) -> Result<(), NnError> {
    let out = output.get_mut(at..at + n).ok_or(NnError::Malformed)?;
    if let Ok(o) = <&mut [u8; 16]>::try_from(&mut *out) {
        *o = *b;
    } else if let (Ok(o), Some(v)) = (<&mut [u8; 8]>::try_from(&mut *out), b.first_chunk::<8>()) {
        *o = *v;
    } else {
        for (o, v) in out.iter_mut().zip(b) {
            *o = *v;
        }
    }
    Ok(())
}

/// Sign-extend 16 int8 bytes into 16 `i16` lanes, i.e. 8 little-endian pairs.
#[inline(always)]
fn widen16(s: V3, b: &[u8; 16]) -> [i32; 8] {
    let v: __m128i = pulp::cast(*b);
    pulp::cast(s.avx2._mm256_cvtepi8_epi16(v))
}

/// Write `src` (int8 bytes, any length) as sign-extended `i16` pairs into `dst` (its length
/// in pairs is `src.len().div_ceil(2)`; an odd last byte is paired with 0).
#[inline(always)]
fn widen_pairs(s: V3, dst: &mut [i32], src: &[u8]) {
    let full = src.len() / 16;
    let (dh, dt) = dst.split_at_mut((full * 8).min(dst.len()));
    let (sh, st) = src.split_at(full * 16);
    for (d8, c16) in dh.chunks_exact_mut(8).zip(sh.chunks_exact(16)) {
        if let Ok(b) = <&[u8; 16]>::try_from(c16) {
            d8.copy_from_slice(&widen16(s, b));
        }
    }
    // The last 0–15 bytes, zero-padded to 16.
    let mut b = [0u8; 16];
    if let Some(d) = b.get_mut(..st.len()) {
        d.copy_from_slice(st);
    }
    for (p, v) in dt.iter_mut().zip(widen16(s, &b)) {
        *p = v;
    }
}

/// Pack the weight rows of output channels `oc0 .. oc0 + 16·nb` (rows of `kk` int8 values)
/// into `dst`: block `b`, pair `j`, lane `l` = weights `2j, 2j+1` of channel `oc0 + 16b + l`
/// (zero past `cout` or past `kk`).
fn pack_weights(dst: &mut [[i16; 2 * OB]], weights: &[u8], kk: usize, cout: usize, oc0: usize, nb: usize) {
    let kp = kk.div_ceil(2);
    for (b, blk) in dst.chunks_exact_mut(kp).take(nb).enumerate() {
        for (l, oc) in (oc0 + b * OB..oc0 + (b + 1) * OB).enumerate() {
            let row = if oc < cout { weights.get(oc * kk..(oc + 1) * kk) } else { None };
            for (j, pair) in blk.iter_mut().enumerate() {
                let w = |i: usize| row.and_then(|r| r.get(i)).map_or(0, |&v| v as i8 as i16);
                pair[2 * l] = w(2 * j);
                pair[2 * l + 1] = w(2 * j + 1);
            }
        }
    }
}

/// The micro-kernel: `PB` pixels (rows of at least `kp = w.len()` pairs) × 16 channels (packed
/// pairs), or only the first 8 channels when `NV` is 1. A row shorter than `kp` is an error.
#[inline(always)]
fn tile<const NV: usize>(s: V3, x: [&[i32]; PB], w: &[[i16; 2 * OB]]) -> Result<[[__m256i; 2]; PB], NnError> {
    let (avx, avx2) = (s.avx, s.avx2);
    let kp = w.len();
    let z = avx._mm256_setzero_si256();
    let mut acc = [[z; 2]; PB];
    let (Some(x0), Some(x1), Some(x2), Some(x3)) =
        (x[0].get(..kp), x[1].get(..kp), x[2].get(..kp), x[3].get(..kp))
    else {
        return Err(NnError::Malformed);
    };
    for (i, wi) in w.iter().enumerate() {
        let wv: [__m256i; 2] = pulp::cast(*wi);
        for (a, xv) in acc.iter_mut().zip([x0[i], x1[i], x2[i], x3[i]]) {
            let b = avx._mm256_set1_epi32(xv);
            a[0] = avx2._mm256_add_epi32(a[0], avx2._mm256_madd_epi16(b, wv[0]));
            if NV == 2 {
                a[1] = avx2._mm256_add_epi32(a[1], avx2._mm256_madd_epi16(b, wv[1]));
            }
        }
    }
    Ok(acc)
}

/// Dense convolution (one group, any kernel, stride and padding; `k²·cin ≤ MAX_K`,
/// `cin ≤ MAX_PAD`) with AVX2: output pixels four at a time, their receptive fields widened
/// into `i16` pairs, times blocks of 16 packed output channels, requantised eight at a time.
pub(super) fn conv_dense(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Dense;
    impl Kernel for Dense {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            dense_impl(s, a)
        }
    }
    with_avx2::<Dense>(s, a)
}

#[inline(always)]
fn dense_impl(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out } = a;
    let (cin, cout, k) = (iv.c, ov.c, g.k);
    let kk = k * k * cin;
    let kp = kk.div_ceil(2);
    if kk > MAX_K || cin > MAX_PAD || kp == 0 || params.len() < cout * CHAN_REC {
        return Err(NnError::Malformed);
    }
    let padv = pad_values(pad, cin)?;
    let padv = padv.get(..cin).ok_or(NnError::Malformed)?;
    let contiguous = iv.pixel_stride == cin;
    // A 1×1 convolution over whole rows of a dense tensor reads PB pixels in one run.
    let layer_run = k == 1 && g.stride == 1 && g.pad == 0 && contiguous && kk % 2 == 0;
    // Receptive fields of PB pixels as i16 pairs, rows `xs` pairs apart: whole vectors of 8
    // pairs, except for runs. Pairs past `kp` hold anything: their weights are zero.
    let xs = if layer_run { kp } else { kp.div_ceil(8) * 8 };
    let mut xbuf = [0i32; PB * MAX_K / 2];
    // The gathered bytes of one field, with room for whole 16-byte loads past its end.
    let mut field = [0u8; MAX_K + 16];
    let row_len = k * cin;
    let mut wbuf = [[0i16; 2 * OB]; WP];
    let zpv = s.avx._mm256_set1_epi32(zp_out as i32);
    let nblocks = cout.div_ceil(OB);
    let per_chunk = (WP / kp).clamp(1, QB);
    if kp > WP {
        return Err(NnError::Malformed);
    }
    let npix = ov.h * ov.w;
    let mut q = [ChanQ::default(); OB];
    let mut qbs = [QBlock::new(&[]); QB];
    let mut b0 = 0;
    while b0 < nblocks {
        let nb = (nblocks - b0).min(per_chunk);
        let wb = wbuf.get_mut(..nb * kp).ok_or(NnError::Malformed)?;
        pack_weights(wb, weights, kk, cout, b0 * OB, nb);
        let wb: &[[i16; 2 * OB]] = wb;
        for (bi, qb) in qbs.iter_mut().take(nb).enumerate() {
            let oc0 = (b0 + bi) * OB;
            let qs = q.get_mut(..(cout - oc0).min(OB)).ok_or(NnError::Malformed)?;
            read_q(params, oc0, qs)?;
            *qb = QBlock::new(qs);
        }
        let mut p0 = 0;
        while p0 < npix {
            let np = (npix - p0).min(PB);
            // Gather and widen the fields of pixels p0 .. p0 + np (the rest repeat the last).
            let run = layer_run && np == PB;
            if run {
                let xb = iv.off + p0 * cin;
                let src = input.get(xb..xb + PB * cin).ok_or(NnError::Malformed)?;
                widen_pairs(s, xbuf.get_mut(..PB * kp).ok_or(NnError::Malformed)?, src);
            }
            for (j, xr) in xbuf.chunks_exact_mut(xs).take(if run { 0 } else { PB }).enumerate() {
                let p = p0 + j.min(np - 1);
                let (oy, ox) = (p / ov.w, p % ov.w);
                let iy0 = (oy * g.stride) as isize - g.pad as isize;
                let ix0 = (ox * g.stride) as isize - g.pad as isize;
                let inside = iy0 >= 0 && ix0 >= 0 && iy0 as usize + k <= iv.h && ix0 as usize + k <= iv.w;
                if k == 1 && inside {
                    let xb = iv.off + (iy0 as usize * iv.w + ix0 as usize) * iv.pixel_stride;
                    let xr = xr.get_mut(..kp).ok_or(NnError::Malformed)?;
                    widen_pairs(s, xr, input.get(xb..xb + cin).ok_or(NnError::Malformed)?);
                    continue;
                }
                for ky in 0..k {
                    let f0 = ky * row_len;
                    let iy = iy0 + ky as isize;
                    let row_in = iy >= 0 && (iy as usize) < iv.h;
                    let rb = iv.off + (iy.max(0) as usize * iv.w) * iv.pixel_stride;
                    if row_in && contiguous && ix0 >= 0 && ix0 as usize + k <= iv.w {
                        // The whole kernel row is one run of input bytes; a short one is
                        // copied as 16 bytes (the next row, or the zero-weight tail, overwrites
                        // the excess).
                        let xb = rb + ix0 as usize * cin;
                        let wide = input.get(xb..xb + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok());
                        match (row_len <= 16, wide) {
                            (true, Some(v)) => {
                                let d = field.get_mut(f0..f0 + 16).ok_or(NnError::Malformed)?;
                                d.copy_from_slice(v);
                            }
                            _ => {
                                let d = field.get_mut(f0..f0 + row_len).ok_or(NnError::Malformed)?;
                                d.copy_from_slice(input.get(xb..xb + row_len).ok_or(NnError::Malformed)?);
                            }
                        }
                        continue;
                    }
                    for kx in 0..k {
                        let ix = ix0 + kx as isize;
                        let d = f0 + kx * cin;
                        let dst = field.get_mut(d..d + cin).ok_or(NnError::Malformed)?;
                        if row_in && ix >= 0 && (ix as usize) < iv.w {
                            let xb = rb + ix as usize * iv.pixel_stride;
                            dst.copy_from_slice(input.get(xb..xb + cin).ok_or(NnError::Malformed)?);
                        } else {
                            dst.copy_from_slice(padv);
                        }
                    }
                }
                for (c, d8) in xr.chunks_exact_mut(8).enumerate() {
                    let b = field.get(16 * c..16 * c + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok());
                    d8.copy_from_slice(&widen16(s, b.ok_or(NnError::Malformed)?));
                }
            }
            let mut xr = xbuf.chunks_exact(xs);
            let (Some(x0), Some(x1), Some(x2), Some(x3)) = (xr.next(), xr.next(), xr.next(), xr.next())
            else {
                return Err(NnError::Malformed);
            };
            for (bi, (wblk, qb)) in wb.chunks_exact(kp).zip(&qbs).enumerate() {
                let oc0 = (b0 + bi) * OB;
                let n = (cout - oc0).min(OB);
                let half = n <= OB / 2;
                let acc = if half {
                    tile::<1>(s, [x0, x1, x2, x3], wblk)?
                } else {
                    tile::<2>(s, [x0, x1, x2, x3], wblk)?
                };
                for (j, a) in acc.iter().enumerate().take(np) {
                    let lo = requant8(s, a[0], qb, 0, zpv);
                    let hi = if half { lo } else { requant8(s, a[1], qb, 1, zpv) };
                    let b = to_bytes(s, lo, hi);
                    let ob = ov.off + (p0 + j) * ov.pixel_stride + oc0;
                    put(output, ob, &b, n)?;
                }
            }
            p0 += np;
        }
        b0 += nb;
    }
    Ok(())
}

/// Transformed weight entries held at a time: 16 positions × pairs × blocks of 16 channels
/// (32 KiB of stack: one block of 16 output channels at [`super::winograd::MAX_CIN`] input
/// channels, the limit the shared [`super::winograd::applies`] sets).
const WU: usize = 512;
const _: () = assert!(16 * (super::winograd::MAX_CIN.div_ceil(16) * 8) <= WU);

/// `G'·g·G'ᵀ` for 16 input channels at once, `G' = 2G = [[2,0,0],[1,1,1],[1,−1,1],[0,0,2]]`:
/// the Winograd weights times 4, exact in `i16` (|each| ≤ 9·128).
#[inline(always)]
fn weight_transform(s: V3, g: &[__m256i; 9]) -> [__m256i; 16] {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi16(x, y), |x, y| a._mm256_sub_epi16(x, y));
    let dbl = |x| a._mm256_add_epi16(x, x);
    // Rows: t = G'·g (4×3).
    let mut t = [s.avx._mm256_setzero_si256(); 12];
    for j in 0..3 {
        let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
        let e = add(g0, g2);
        t[j] = dbl(g0);
        t[3 + j] = add(e, g1);
        t[6 + j] = sub(e, g1);
        t[9 + j] = dbl(g2);
    }
    // Columns: u = t·G'ᵀ (4×4).
    let mut u = [s.avx._mm256_setzero_si256(); 16];
    for i in 0..4 {
        let (t0, t1, t2) = (t[3 * i], t[3 * i + 1], t[3 * i + 2]);
        let e = add(t0, t2);
        u[4 * i] = dbl(t0);
        u[4 * i + 1] = add(e, t1);
        u[4 * i + 2] = sub(e, t1);
        u[4 * i + 3] = dbl(t2);
    }
    u
}

/// `Bᵀ·d·B` for 16 channels at once, `Bᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`: exact
/// in `i16` (|each| ≤ 4·128).
#[inline(always)]
fn input_transform(s: V3, d: &[__m256i; 16]) -> [__m256i; 16] {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi16(x, y), |x, y| a._mm256_sub_epi16(x, y));
    let mut t = [s.avx._mm256_setzero_si256(); 16];
    for j in 0..4 {
        let (d0, d1, d2, d3) = (d[j], d[4 + j], d[8 + j], d[12 + j]);
        t[j] = sub(d0, d2);
        t[4 + j] = add(d1, d2);
        t[8 + j] = sub(d2, d1);
        t[12 + j] = sub(d1, d3);
    }
    let mut v = [s.avx._mm256_setzero_si256(); 16];
    for i in 0..4 {
        let (t0, t1, t2, t3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        v[4 * i] = sub(t0, t2);
        v[4 * i + 1] = add(t1, t2);
        v[4 * i + 2] = sub(t2, t1);
        v[4 * i + 3] = sub(t1, t3);
    }
    v
}

/// `Aᵀ·m·A` of one 4×4 block of `i32` lanes, `Aᵀ = [[1,1,1,0],[0,1,−1,−1]]`: the 2×2 outputs
/// (row-major), wrapping.
#[inline(always)]
fn output_transform(s: V3, m: &[__m256i; 16]) -> [__m256i; 4] {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi32(x, y), |x, y| a._mm256_sub_epi32(x, y));
    let mut t = [s.avx._mm256_setzero_si256(); 8];
    for j in 0..4 {
        let (m0, m1, m2, m3) = (m[j], m[4 + j], m[8 + j], m[12 + j]);
        t[j] = add(add(m0, m1), m2);
        t[4 + j] = sub(sub(m1, m2), m3);
    }
    let mut y = [s.avx._mm256_setzero_si256(); 4];
    for i in 0..2 {
        let (t0, t1, t2, t3) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        y[2 * i] = add(add(t0, t1), t2);
        y[2 * i + 1] = sub(sub(t1, t2), t3);
    }
    y
}

/// Load 16 int8 channels `c0..c0+16` of a pixel (or of the padding), zero past `c`, as `i16`.
#[inline(always)]
fn load16(s: V3, px: &[u8], c0: usize) -> __m256i {
    if let Some(b) = px.get(c0..c0 + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok()) {
        return s.avx2._mm256_cvtepi8_epi16(pulp::cast(*b));
    }
    let mut b = [0u8; 16];
    let src = px.get(c0..).unwrap_or(&[]);
    let n = src.len().min(16);
    if let (Some(d), Some(v)) = (b.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(v);
    }
    let v: __m128i = pulp::cast(b);
    s.avx2._mm256_cvtepi8_epi16(v)
}

/// Winograd F(2×2, 3×3) convolution with AVX2 (where [`super::winograd::applies`]): per 4×4 input tile and
/// 16 channels, `V = Bᵀ·d·B` in `i16`; per output-channel block the 16 positions' products
/// `M_ξ = Σ_c V_ξ·U'_ξ` through the dense micro-kernel (four tiles at a time); `Y = Aᵀ·M·A`
/// equals `4·acc` exactly (the weights are scaled by 4 to stay integer, and `|4·acc| < 2^31`
/// for `cin ≤ 3640`), so `acc = Y >> 2`, requantised like every other kernel. Bit-identical to
/// the direct convolution: it computes the same integer sum of products over the padded input.
pub(super) fn conv3x3_winograd(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Wi;
    impl Kernel for Wi {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            wino_impl(s, a)
        }
    }
    with_avx2::<Wi>(s, a)
}

#[inline(always)]
fn wino_impl(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out } = a;
    let (cin, cout) = (iv.c, ov.c);
    if !super::winograd::applies(iv, ov, g) || !iv.fits(input.len()) || !ov.fits(output.len()) {
        return Err(NnError::Malformed);
    }
    if weights.len() < cout * 9 * cin || params.len() < cout * CHAN_REC {
        return Err(NnError::Malformed);
    }
    let padv = pad_values(pad, cin)?;
    let padv = padv.get(..cin).ok_or(NnError::Malformed)?;
    let nch = cin.div_ceil(16);
    let kp = nch * 8;
    // Transformed tiles of PB tiles: [ξ][tile][kp] pairs (16 · 4 · 32 · 4 B = 8 KiB).
    let mut vbuf = [0i32; 16 * PB * super::winograd::MAX_CIN / 2];
    let vbuf = vbuf.get_mut(..16 * PB * kp).ok_or(NnError::Malformed)?;
    // Transformed weights of a chunk of output-channel blocks: [block][ξ][kp] of [i16; 32].
    let mut ubuf = [[0i16; 2 * OB]; WU];
    let nblocks = cout.div_ceil(OB);
    let per_chunk = (WU / (16 * kp)).clamp(1, QB);
    if 16 * kp > WU {
        return Err(NnError::Malformed);
    }
    let zpv = s.avx._mm256_set1_epi32(zp_out as i32);
    let (th, tw) = (ov.h.div_ceil(2), ov.w.div_ceil(2));
    let mut q = [ChanQ::default(); OB];
    let mut qbs = [QBlock::new(&[]); QB];
    let mut b0 = 0;
    while b0 < nblocks {
        let nb = (nblocks - b0).min(per_chunk);
        let ub = ubuf.get_mut(..nb * 16 * kp).ok_or(NnError::Malformed)?;
        // Weight transform, 16 input channels at a time, scattered into the packed layout.
        for (bi, blk) in ub.chunks_exact_mut(16 * kp).enumerate() {
            for l in 0..OB {
                let oc = (b0 + bi) * OB + l;
                for ch in 0..nch {
                    let u = if oc < cout {
                        let w = weights.get(oc * 9 * cin..(oc + 1) * 9 * cin).ok_or(NnError::Malformed)?;
                        let mut gv = [s.avx._mm256_setzero_si256(); 9];
                        for (t, gt) in gv.iter_mut().enumerate() {
                            *gt =
                                load16(s, w.get(t * cin..(t + 1) * cin).ok_or(NnError::Malformed)?, ch * 16);
                        }
                        weight_transform(s, &gv)
                    } else {
                        [s.avx._mm256_setzero_si256(); 16]
                    };
                    for (xi, uv) in u.iter().enumerate() {
                        let pairs: [i32; 8] = pulp::cast(*uv);
                        let rows =
                            blk.get_mut(xi * kp + ch * 8..xi * kp + ch * 8 + 8).ok_or(NnError::Malformed)?;
                        for (row, p) in rows.iter_mut().zip(pairs) {
                            row[2 * l] = p as i16;
                            row[2 * l + 1] = (p >> 16) as i16;
                        }
                    }
                }
            }
        }
        let ub: &[[i16; 2 * OB]] = ub;
        for (bi, qb) in qbs.iter_mut().take(nb).enumerate() {
            let oc0 = (b0 + bi) * OB;
            let qs = q.get_mut(..(cout - oc0).min(OB)).ok_or(NnError::Malformed)?;
            read_q(params, oc0, qs)?;
            *qb = QBlock::new(qs);
        }
        for ty in 0..th {
            let mut tx0 = 0;
            while tx0 < tw {
                let nt = (tw - tx0).min(PB);
                // Input transform of tiles tx0 .. tx0 + nt (the rest repeat the last).
                for j in 0..PB {
                    let tx = tx0 + j.min(nt - 1);
                    for ch in 0..nch {
                        let mut d = [s.avx._mm256_setzero_si256(); 16];
                        for (r, drow) in d.chunks_exact_mut(4).enumerate() {
                            let iy = (2 * ty + r) as isize - 1;
                            for (cq, dv) in drow.iter_mut().enumerate() {
                                let ix = (2 * tx + cq) as isize - 1;
                                let inside =
                                    iy >= 0 && ix >= 0 && (iy as usize) < iv.h && (ix as usize) < iv.w;
                                let px = if inside {
                                    let b = iv.off + (iy as usize * iv.w + ix as usize) * iv.pixel_stride;
                                    input.get(b..b + cin).ok_or(NnError::Malformed)?
                                } else {
                                    padv
                                };
                                *dv = load16(s, px, ch * 16);
                            }
                        }
                        let v = input_transform(s, &d);
                        for (xi, vv) in v.iter().enumerate() {
                            let o = (xi * PB + j) * kp + ch * 8;
                            let dst = vbuf.get_mut(o..o + 8).ok_or(NnError::Malformed)?;
                            dst.copy_from_slice(&pulp::cast::<__m256i, [i32; 8]>(*vv));
                        }
                    }
                }
                let vb: &[i32] = vbuf;
                for (bi, (ublk, qb)) in ub.chunks_exact(16 * kp).zip(&qbs).enumerate() {
                    let oc0 = (b0 + bi) * OB;
                    let n = (cout - oc0).min(OB);
                    let half = n <= OB / 2;
                    // M[ξ][tile]: 16 positions of four tiles, 16 channels.
                    let mut m = [[[s.avx._mm256_setzero_si256(); 2]; PB]; 16];
                    for (xi, mx) in m.iter_mut().enumerate() {
                        let w = ublk.get(xi * kp..(xi + 1) * kp).ok_or(NnError::Malformed)?;
                        let base = xi * PB * kp;
                        let x = |t: usize| vb.get(base + t * kp..base + (t + 1) * kp).unwrap_or(&[]);
                        let xs = [x(0), x(1), x(2), x(3)];
                        *mx = if half { tile::<1>(s, xs, w)? } else { tile::<2>(s, xs, w)? };
                    }
                    for j in 0..nt {
                        let tx = tx0 + j;
                        for h in 0..(if half { 1 } else { 2 }) {
                            let mut mv = [s.avx._mm256_setzero_si256(); 16];
                            for (d, mx) in mv.iter_mut().zip(&m) {
                                if let Some(v) = mx.get(j).and_then(|t| t.get(h)) {
                                    *d = *v;
                                }
                            }
                            let y = output_transform(s, &mv);
                            for (yi, yv) in y.iter().enumerate() {
                                let (oy, ox) = (2 * ty + yi / 2, 2 * tx + yi % 2);
                                if oy >= ov.h || ox >= ov.w {
                                    continue;
                                }
                                let acc = s.avx2._mm256_srai_epi32::<2>(*yv);
                                let r = requant8(s, acc, qb, h, zpv);
                                let b = to_bytes(s, r, r);
                                let o0 = h * 8;
                                if o0 >= n {
                                    continue;
                                }
                                let cnt = (n - o0).min(8);
                                let ob = ov.off + (oy * ov.w + ox) * ov.pixel_stride + oc0 + o0;
                                put(output, ob, &b, cnt)?;
                            }
                        }
                    }
                }
                tx0 += nt;
            }
        }
        b0 += nb;
    }
    Ok(())
}

/// [`requant8`] of up to 16 channels as the tests see it: `out[i]` must be
/// `finish(q[i], acc[i], zp)`.
#[cfg(test)]
fn finish16(s: V3, q: &[ChanQ], acc: &[i32; OB], zp_out: i8, out: &mut [u8]) {
    let qb = QBlock::new(q);
    let zpv = s.avx._mm256_set1_epi32(zp_out as i32);
    let a: [__m256i; 2] = pulp::cast(*acc);
    let b = to_bytes(s, requant8(s, a[0], &qb, 0, zpv), requant8(s, a[1], &qb, 1, zpv));
    for (o, v) in out.iter_mut().take(q.len()).zip(b) {
        *o = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::finish;
    use proptest::prelude::*;

    fn arb_q() -> impl Strategy<Value = ChanQ> {
        (any::<i32>(), any::<i32>(), any::<i32>(), 0u8..=super::super::blob::MAX_SHIFT, 0u8..=62)
            .prop_map(|(bias, m_pos, m_neg, sh_pos, sh_neg)| ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg })
    }

    fn arb_q_short() -> impl Strategy<Value = ChanQ> {
        (any::<i32>(), any::<i32>(), prop_oneof![any::<i32>(), Just(0)], 33u8..=62, 33u8..=62)
            .prop_map(|(bias, m_pos, m_neg, sh_pos, sh_neg)| ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn short_requant_is_finish(
            q in proptest::collection::vec(arb_q_short(), 16),
            acc in proptest::array::uniform16(prop_oneof![any::<i32>(), -70000i32..70000, Just(i32::MIN), Just(i32::MAX)]),
            zp: i8,
        ) {
            let Some(s) = v3() else { return Ok(()) };
            prop_assert!(QBlock::new(&q).fast);
            let mut out = [0u8; 16];
            finish16(s, &q, &acc, zp, &mut out);
            for i in 0..16 {
                prop_assert_eq!(out[i], finish(&q[i], acc[i], zp), "lane {}", i);
            }
        }

        #[test]
        fn vector_requant_is_finish(
            q in proptest::collection::vec(arb_q(), 16),
            acc in proptest::array::uniform16(prop_oneof![any::<i32>(), -70000i32..70000, Just(i32::MIN), Just(i32::MAX)]),
            zp: i8,
        ) {
            let Some(s) = v3() else { return Ok(()) };
            let mut out = [0u8; 16];
            finish16(s, &q, &acc, zp, &mut out);
            for i in 0..16 {
                prop_assert_eq!(out[i], finish(&q[i], acc[i], zp), "lane {}", i);
            }
        }
    }

    #[test]
    fn widen_pairs_sign_extends_and_pads() {
        let Some(s) = v3() else { return };
        let all: [u8; 80] = core::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(200));
        for n in 1..all.len() {
            let src = &all[..n];
            let mut dst = [0x5555_5555i32; 40];
            let dst = &mut dst[..n.div_ceil(2)];
            widen_pairs(s, dst, src);
            for (j, &p) in dst.iter().enumerate() {
                let lo = src[2 * j] as i8 as i16;
                let hi = src.get(2 * j + 1).map_or(0, |&v| v as i8 as i16);
                assert_eq!(p as u32 & 0xFFFF, lo as u16 as u32, "n {n} pair {j}");
                assert_eq!((p as u32 >> 16) as u16, hi as u16, "n {n} pair {j}");
            }
        }
    }
}
