//! Pointwise (1×1) convolution with few input channels, with AVX2.
//!
//! With `cin ≤ 32` the multiply-adds are few (at most 16 `vpmaddwd` per pixel and 8 output
//! channels) and the per-output work dominates: requantisation, packing, stores. So:
//!
//! - pixels are taken as a linear run (`p = y·w + x`: input at `iv.off + p·pixel_stride`), [`G`]
//!   at a time, widened once into `i16` pairs (`kp = ⌈cin/2⌉` per pixel; one widening of the
//!   whole run when the input is dense and `cin` even, else 16-byte widenings per pixel);
//! - the weights of up to [`CB`] blocks of 16 output channels (all of them in the face model)
//!   are packed once per layer as `[block][pair][16 channels × 2]` `i16`, with the constants;
//!   the pair count is a const generic for 8, 16 and 32 input channels (fully unrolled);
//! - micro-tiles of 8 accumulator vectors: 2 pixels × 32 channels when two whole blocks
//!   follow (one 32-byte store per pixel), else 4 pixels × 16 channels (pixel pairs packed
//!   together, one 32-byte store when the output is dense with 16 channels), or × 8;
//! - the *fast form* of the requantisation, chosen once per layer when every channel has
//!   non-negative multipliers and shifts ≥ 33 (or a zero multiplier; the face model's layers
//!   all do): 9 vector ops per 8 outputs plus 1.5 for the rounding, zero point and packing
//!   ([`rq_fast`], [`pack_fast`]) instead of 12 plus 1 ([`requant8_short`](super::requant8_short),
//!   [`pack4`]). Its weights are packed in a lane order ([`lane`]) that makes one `vshufps`
//!   gather the high halves of both `vpmuldq`; the shift is picked on the sign of that high
//!   half; the halving with rounding and the zero point are done in `i16` lanes. Otherwise the
//!   general [`requant8`] and [`pack4`].
//!
//! Stack: 8 KiB of weights, 4 KiB of widened pixels, 6.4 KiB of constants.
//!
//! Face model at 320×256, best of 300 (ms, dense kernel → this one, measured alternately on
//! a noisy 2-core Zen3): 160×128×8→16 0.157 → 0.124; 80×64×16→32 0.092 → 0.081;
//! 80×64×32→32 0.129 → 0.116; 40×32×32→64 0.062 → 0.057 (0.440 → 0.378 in all). The layers
//! with 32 input channels are bound by the multiply-adds (64 `vpmaddwd` + 64 `vpaddd` per pixel).
//!
//! Products and sums are those of [`crate::nn::ops::conv_generic`] (exact `vpmaddwd` pairs,
//! wrapping `i32` adds), so the output is bit-identical.

use core::arch::x86_64::__m256i;

use pulp::x86::V3;

use super::{pack4, pack_weights, pick, put, requant8, widen16, widen_pairs, with_avx2};
use super::{ConvArgs, Kernel, QBlock, FAST_SHIFT, OB};
use crate::nn::blob::{CHAN_REC, MAX_SHIFT};
use crate::nn::ops::{read_q, ChanQ, ConvGeom, View};
use crate::nn::NnError;

/// Largest number of input channels.
pub(in crate::nn) const MAX_CIN: usize = 32;
/// Largest number of `i16` pairs of an input pixel.
const MAX_KP: usize = MAX_CIN / 2;
/// Blocks of 16 output channels whose weights and constants are held at a time.
const CB: usize = 8;
/// Pixels widened at a time.
const G: usize = 64;
/// Pixels per micro-tile of one block.
const P: usize = 4;

/// Whether [`conv_pw`] takes this convolution: 1×1, stride 1, no padding, one group,
/// `1..=MAX_CIN` input channels (any number of output channels, pixel strides and offsets).
pub(in crate::nn) fn applies(iv: &View, _ov: &View, g: &ConvGeom) -> bool {
    g.k == 1 && g.stride == 1 && g.pad == 0 && g.groups == 1 && (1..=MAX_CIN).contains(&iv.c)
}

/// A convolution for which [`applies`] holds.
pub(in crate::nn) fn conv_pw(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Pw;
    impl Kernel for Pw {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            pw_impl(s, a)
        }
    }
    with_avx2::<Pw>(s, a)
}

/// The accumulator lane of channel `i` of a block in the fast form (an involution): within each
/// group of four, channels 1 and 2 trade places, so that the high halves of the even-lane and
/// odd-lane products come out in channel order from one `vshufps` (see [`rq_fast`]).
const fn lane(i: usize) -> usize {
    match i % 4 {
        1 => i + 1,
        2 => i - 1,
        _ => i,
    }
}

/// Requantisation constants of one block of 16 output channels: the general ones, and those
/// of the fast form (valid when `fast`): bias and multipliers in accumulator-lane order
/// ([`lane`]), shifts minus 33 in channel order.
#[derive(Clone, Copy)]
struct Blk {
    qb: QBlock,
    bias: [__m256i; 2],
    m_pos: [__m256i; 2],
    m_neg: [__m256i; 2],
    s_pos: [__m256i; 2],
    s_neg: [__m256i; 2],
    fast: bool,
}

impl Blk {
    #[inline(always)]
    fn new(q: &[ChanQ]) -> Blk {
        let mut f = [[0i32; OB]; 5];
        let mut fast = true;
        // The fast form needs non-negative multipliers (the sign of the product is that of the
        // sum, or the product is 0) and both shifts at least 33 (or a zero multiplier).
        let short = |m: i32, sh: u8| {
            if m == 0 {
                Some(0)
            } else if m > 0 && (FAST_SHIFT..=MAX_SHIFT).contains(&sh) {
                Some((sh - FAST_SHIFT) as i32)
            } else {
                None
            }
        };
        for (i, r) in q.iter().take(OB).enumerate() {
            let l = lane(i);
            f[0][l] = r.bias;
            f[1][l] = r.m_pos;
            f[2][l] = r.m_neg;
            match (short(r.m_pos, r.sh_pos), short(r.m_neg, r.sh_neg)) {
                (Some(sp), Some(sn)) => {
                    f[3][i] = sp;
                    f[4][i] = sn;
                }
                _ => fast = false,
            }
        }
        let v = |a: [i32; OB]| -> [__m256i; 2] { pulp::cast(a) };
        Blk {
            qb: QBlock::new(q),
            bias: v(f[0]),
            m_pos: v(f[1]),
            m_neg: v(f[2]),
            s_pos: v(f[3]),
            s_neg: v(f[4]),
            fast,
        }
    }
}

/// The fast form of [`finish`](crate::nn::ops::finish) of eight accumulators (channels
/// `8h .. 8h+8`, in accumulator-lane order), up to its rounding halving: with `a = bias + acc`,
/// `p = a·m` and `sh = 33 + s`, the result is `⌊(u + 1) / 2⌋` with `u = ⌊hi / 2^s⌋`, `hi = ⌊p /
/// 2^32⌋` (nested floor divisions; `|hi| ≤ 2^30`, so the clamp to `i32` never acts); this
/// returns `u`, in channel order, for [`pack_fast`]. `hi` has the sign of `a` or is 0 (the
/// multipliers are non-negative), so it picks the shift.
#[inline(always)]
fn rq_fast(s: V3, acc: __m256i, b: &Blk, h: usize) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let a = avx2._mm256_add_epi32(acc, b.bias[h]);
    let m = pick(s, b.m_pos[h], b.m_neg[h], a);
    let pe = avx2._mm256_mul_epi32(a, m);
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    // High halves of lanes (0, 2 | 1, 3) of each 128-bit half: channels in order.
    let hi = avx._mm256_castps_si256(
        avx._mm256_shuffle_ps::<0b11_01_11_01>(avx._mm256_castsi256_ps(pe), avx._mm256_castsi256_ps(po)),
    );
    let sh = pick(s, b.s_pos[h], b.s_neg[h], hi);
    avx2._mm256_srav_epi32(hi, sh)
}

/// Four vectors of [`rq_fast`] as 32 output bytes in order: saturated to `i16` (`u` beyond the
/// `i16` range gives a result beyond the int8 range either way), `⌊(u + 1) / 2⌋` by `vpmulhrsw`
/// with 2^14 (exact: `((u·2^14 >> 14) + 1) >> 1`), plus the zero point (`zp16`; no overflow),
/// then saturated to int8 as in [`pack4`].
#[inline(always)]
fn pack_fast(s: V3, v: &[__m256i; 4], zp16: __m256i) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let half = avx._mm256_set1_epi16(1 << 14);
    let a = avx2._mm256_packs_epi32(v[0], v[1]);
    let b = avx2._mm256_packs_epi32(v[2], v[3]);
    let a = avx2._mm256_add_epi16(avx2._mm256_mulhrs_epi16(a, half), zp16);
    let b = avx2._mm256_add_epi16(avx2._mm256_mulhrs_epi16(b, half), zp16);
    avx2._mm256_permutevar8x32_epi32(
        avx2._mm256_packs_epi16(a, b),
        avx._mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    )
}

/// The layer's tensors.
struct Layer<'a> {
    input: &'a [u8],
    iv: &'a View,
    output: &'a mut [u8],
    ov: &'a View,
    npix: usize,
    kp: usize,
    /// The output zero point in `i32` lanes (general form) and `i16` lanes (fast form).
    zpv: __m256i,
    zp16: __m256i,
}

#[inline(always)]
fn pw_impl(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let ConvArgs { input, iv, output, ov, g, weights, params, pad: _, zp_out } = a;
    let (cin, cout) = (iv.c, ov.c);
    if !applies(iv, ov, g)
        || cout == 0
        || iv.h != ov.h
        || iv.w != ov.w
        || weights.len() < cout * cin
        || params.len() < cout * CHAN_REC
    {
        return Err(NnError::Malformed);
    }
    let kp = cin.div_ceil(2);
    let mut l = Layer {
        input,
        iv,
        output,
        ov,
        npix: ov.h * ov.w,
        kp,
        zpv: s.avx._mm256_set1_epi32(zp_out as i32),
        zp16: s.avx._mm256_set1_epi16(zp_out as i16),
    };
    let mut wbuf = [[0i16; 2 * OB]; CB * MAX_KP];
    let mut xbuf = [0i32; G * MAX_KP + 8];
    let mut q = [ChanQ::default(); OB];
    let mut blks = [Blk::new(&[]); CB];
    let nblocks = cout.div_ceil(OB);
    let mut b0 = 0;
    while b0 < nblocks {
        let nb = (nblocks - b0).min(CB);
        let wb = wbuf.get_mut(..nb * kp).ok_or(NnError::Malformed)?;
        pack_weights(s, wb, weights, cin, cout, b0 * OB, nb);
        let mut fast = true;
        for (bi, blk) in blks.iter_mut().take(nb).enumerate() {
            let oc0 = (b0 + bi) * OB;
            let qs = q.get_mut(..(cout - oc0).min(OB)).ok_or(NnError::Malformed)?;
            read_q(params, oc0, qs)?;
            *blk = Blk::new(qs);
            fast &= blk.fast;
        }
        if fast {
            // Weights in accumulator-lane order.
            for wp in wb.iter_mut() {
                let o = *wp;
                for i in 0..OB {
                    let l = lane(i);
                    if let (Some(d), Some(v)) = (wp.get_mut(2 * l..2 * l + 2), o.get(2 * i..2 * i + 2)) {
                        d.copy_from_slice(v);
                    }
                }
            }
        }
        let (wb, blks) = (&*wb, blks.get(..nb).ok_or(NnError::Malformed)?);
        let oc0 = b0 * OB;
        match (kp, fast) {
            (4, true) => chunk::<4, true>(s, &mut l, &mut xbuf, wb, blks, oc0)?,
            (8, true) => chunk::<8, true>(s, &mut l, &mut xbuf, wb, blks, oc0)?,
            (16, true) => chunk::<16, true>(s, &mut l, &mut xbuf, wb, blks, oc0)?,
            (_, true) => chunk::<0, true>(s, &mut l, &mut xbuf, wb, blks, oc0)?,
            (_, false) => chunk::<0, false>(s, &mut l, &mut xbuf, wb, blks, oc0)?,
        }
        b0 += nb;
    }
    Ok(())
}

/// Widen the input pixels `p0 .. p0 + np` into `xbuf`, `kp` pairs per pixel.
#[inline(always)]
fn stage(s: V3, l: &Layer<'_>, xbuf: &mut [i32], p0: usize, np: usize) -> Result<(), NnError> {
    let (cin, ips, kp) = (l.iv.c, l.iv.pixel_stride, l.kp);
    let xb = l.iv.off + p0 * ips;
    if ips == cin && cin % 2 == 0 {
        // One run of bytes.
        let src = l.input.get(xb..xb + np * cin).ok_or(NnError::Malformed)?;
        widen_pairs(s, xbuf.get_mut(..np * kp).ok_or(NnError::Malformed)?, src);
        return Ok(());
    }
    for j in 0..np {
        let at = xb + j * ips;
        let d = j * kp;
        // Whole 16-byte widenings where the input allows (the excess pairs are overwritten by
        // the next pixel, or lie past the pairs read; an odd last channel meets a zero weight).
        let w0 = l.input.get(at..at + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok());
        let w1 = l.input.get(at + 16..at + 32).and_then(|v| <&[u8; 16]>::try_from(v).ok());
        match (w0, w1) {
            (Some(b0), _) if cin <= 16 => {
                xbuf.get_mut(d..d + 8).ok_or(NnError::Malformed)?.copy_from_slice(&widen16(s, b0));
            }
            (Some(b0), Some(b1)) => {
                xbuf.get_mut(d..d + 8).ok_or(NnError::Malformed)?.copy_from_slice(&widen16(s, b0));
                xbuf.get_mut(d + 8..d + 16).ok_or(NnError::Malformed)?.copy_from_slice(&widen16(s, b1));
            }
            _ => widen_pairs(
                s,
                xbuf.get_mut(d..d + kp).ok_or(NnError::Malformed)?,
                l.input.get(at..at + cin).ok_or(NnError::Malformed)?,
            ),
        }
    }
    Ok(())
}

/// Run `$body` with `$t` bound to each of the given constants (an unrolled loop: LLVM leaves
/// loops over arrays of vectors rolled, with the vectors spilled).
macro_rules! unroll {
    ($t:ident in [$($i:literal),*] $body:block) => {
        $({
            let $t: usize = $i;
            $body
        })*
    };
}

/// The micro-kernel: `PX` pixels (rows of `kp` pairs) × `8·NV` channels: the first 16 of
/// them from the packed pairs `w[0]`, the next 16 from `w[1]` (`NV` = 4).
#[inline(always)]
fn tile<const PX: usize, const NV: usize, const KP: usize>(
    s: V3,
    rows: [&[i32]; PX],
    w: [&[[i16; 2 * OB]]; 2],
    kp: usize,
) -> [[__m256i; NV]; PX] {
    let (avx, avx2) = (s.avx, s.avx2);
    let kp = if KP > 0 { KP } else { kp };
    let z = avx._mm256_setzero_si256();
    let mut acc = [[z; NV]; PX];
    for i in 0..kp {
        let (Some(w0), Some(w1)) = (w[0].get(i), w[1].get(i)) else { break };
        let w0: [__m256i; 2] = pulp::cast(*w0);
        let w1: [__m256i; 2] = pulp::cast(*w1);
        let wv = [w0[0], w0[1], w1[0], w1[1]];
        for t in 0..PX {
            let b = avx._mm256_set1_epi32(rows[t].get(i).copied().unwrap_or(0));
            for v in 0..NV {
                acc[t][v] = avx2._mm256_add_epi32(acc[t][v], avx2._mm256_madd_epi16(b, wv[v]));
            }
        }
    }
    acc
}

/// Eight accumulators of block `b` (channels `8h .. 8h+8`) requantised, for [`pk`].
#[inline(always)]
fn rq<const FAST: bool>(s: V3, acc: __m256i, b: &Blk, h: usize, zp: __m256i) -> __m256i {
    if FAST {
        rq_fast(s, acc, b, h)
    } else {
        requant8(s, acc, &b.qb, h, zp)
    }
}

/// Four vectors of [`rq`] as 32 output bytes.
#[inline(always)]
fn pk<const FAST: bool>(s: V3, v: &[__m256i; 4], zp16: __m256i) -> __m256i {
    if FAST {
        pack_fast(s, v, zp16)
    } else {
        pack4(s, v)
    }
}

/// Store 32 bytes at `at`.
#[inline(always)]
fn store32(output: &mut [u8], at: usize, v: __m256i) -> Result<(), NnError> {
    let o = output.get_mut(at..at + 2 * OB).ok_or(NnError::Malformed)?;
    if let Ok(o) = <&mut [u8; 32]>::try_from(o) {
        *o = pulp::cast(v);
    }
    Ok(())
}

/// Store bytes `0..n` of `v` at `at0` and bytes `16..16 + n` at `at1` (if `two`).
#[inline(always)]
fn store2(output: &mut [u8], at0: usize, at1: usize, v: __m256i, n: usize, two: bool) -> Result<(), NnError> {
    if two && n == OB && at1 == at0 + OB {
        return store32(output, at0, v);
    }
    let b: [[u8; 16]; 2] = pulp::cast(v);
    put(output, at0, &b[0], n)?;
    if two {
        put(output, at1, &b[1], n)?;
    }
    Ok(())
}

/// The rows of pixels `j .. j + PX` of the `np` widened ones (the last repeated past `np`).
#[inline(always)]
fn rows_at<const PX: usize>(xbuf: &[i32], j: usize, np: usize, kp: usize) -> Result<[&[i32]; PX], NnError> {
    let mut rows: [&[i32]; PX] = [&[]; PX];
    for (t, r) in rows.iter_mut().enumerate() {
        let px = (j + t).min(np - 1);
        *r = xbuf.get(px * kp..px * kp + kp).ok_or(NnError::Malformed)?;
    }
    Ok(rows)
}

/// Output channels `oc0 .. oc0 + 16·qbs.len()` (packed weights `wb`) of every pixel.
#[inline(always)]
fn chunk<const KP: usize, const FAST: bool>(
    s: V3,
    l: &mut Layer<'_>,
    xbuf: &mut [i32],
    wb: &[[i16; 2 * OB]],
    qbs: &[Blk],
    oc0: usize,
) -> Result<(), NnError> {
    let kp = if KP > 0 { KP } else { l.kp };
    let cout = l.ov.c;
    let (ops, ooff) = (l.ov.pixel_stride, l.ov.off);
    let zpv = l.zpv;
    let nb = qbs.len();
    let mut p0 = 0;
    while p0 < l.npix {
        let np = (l.npix - p0).min(G);
        stage(s, l, xbuf, p0, np)?;
        let xbuf: &[i32] = xbuf;
        let mut bi = 0;
        while bi < nb {
            let w = wb.get(bi * kp..(bi + 1) * kp).ok_or(NnError::Malformed)?;
            let boc = oc0 + bi * OB;
            let n = (cout - boc).min(OB);
            let qb = qbs.get(bi).ok_or(NnError::Malformed)?;
            if let (Some(qb1), true) = (qbs.get(bi + 1), cout - boc >= 2 * OB) {
                // Two whole blocks: two pixels × 32 channels, 32 bytes per pixel.
                let w1 = wb.get((bi + 1) * kp..(bi + 2) * kp).ok_or(NnError::Malformed)?;
                let mut j = 0;
                while j < np {
                    let acc = tile::<2, 4, KP>(s, rows_at::<2>(xbuf, j, np, kp)?, [w, w1], kp);
                    let at = ooff + (p0 + j) * ops + boc;
                    unroll!(t in [0, 1] {
                        let a = &acc[t];
                        let v = pk::<FAST>(s, &[
                            rq::<FAST>(s, a[0], qb, 0, zpv),
                            rq::<FAST>(s, a[1], qb, 1, zpv),
                            rq::<FAST>(s, a[2], qb1, 0, zpv),
                            rq::<FAST>(s, a[3], qb1, 1, zpv),
                        ], l.zp16);
                        if j + t < np {
                            store32(l.output, at + t * ops, v)?;
                        }
                    });
                    j += 2;
                }
                bi += 2;
                continue;
            }
            let mut j = 0;
            while j < np {
                let rows = rows_at::<P>(xbuf, j, np, kp)?;
                let at = ooff + (p0 + j) * ops + boc;
                if n > OB / 2 {
                    let acc = tile::<P, 2, KP>(s, rows, [w, w], kp);
                    unroll!(t in [0, 2] {
                        let v = pk::<FAST>(s, &[
                            rq::<FAST>(s, acc[t][0], qb, 0, zpv),
                            rq::<FAST>(s, acc[t][1], qb, 1, zpv),
                            rq::<FAST>(s, acc[t + 1][0], qb, 0, zpv),
                            rq::<FAST>(s, acc[t + 1][1], qb, 1, zpv),
                        ], l.zp16);
                        if j + t < np {
                            store2(l.output, at + t * ops, at + (t + 1) * ops, v, n, j + t + 1 < np)?;
                        }
                    });
                } else {
                    let acc = tile::<P, 1, KP>(s, rows, [w, w], kp);
                    let mut r = [zpv; P];
                    unroll!(t in [0, 1, 2, 3] {
                        r[t] = rq::<FAST>(s, acc[t][0], qb, 0, zpv);
                    });
                    let b: [[u8; 8]; P] = pulp::cast(pk::<FAST>(s, &r, l.zp16));
                    for (t, bt) in b.iter().enumerate() {
                        if j + t < np {
                            let mut c = [0u8; 16];
                            c[..8].copy_from_slice(bt);
                            put(l.output, at + t * ops, &c, n)?;
                        }
                    }
                }
                j += P;
            }
            bi += 1;
        }
        p0 += np;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::blob::MAX_SHIFT;
    use crate::nn::ops::{conv2d_on, conv_generic, Pad};
    use crate::nn::testutil::{Layout, Rng};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    const DENSE: Layout = Layout::DENSE;
    const WIDE: Layout = Layout::WIDE;
    const SLICE: Layout = Layout::SLICE;

    /// A random case: input, weights, three sets of records (`params[0]` any shifts, `params[1]`
    /// shifts of at least 33, `params[2]` also non-negative multipliers: the fast form), views.
    struct Case {
        input: Vec<u8>,
        iv: View,
        ov: View,
        out_len: usize,
        weights: Vec<u8>,
        params: [Vec<u8>; 3],
        padv: Vec<u8>,
        zp: i8,
        zp_out: i8,
    }

    fn case(h: usize, w: usize, cin: usize, cout: usize, l: Layout, seed: u32) -> Case {
        let mut r = Rng(seed);
        let ips = cin + l.in_extra;
        let iv = View { h, w, c: cin, pixel_stride: ips, off: l.in_off };
        let ops_ = cout + l.out_extra;
        let ov = View { h, w, c: cout, pixel_stride: ops_, off: l.out_off };
        let input: Vec<u8> = (0..l.in_off + h * w * ips).map(|_| r.byte()).collect();
        let weights: Vec<u8> = (0..cout * cin).map(|_| r.byte()).collect();
        let mut params = [Vec::new(), Vec::new(), Vec::new()];
        for (set, ps) in params.iter_mut().enumerate() {
            for _ in 0..cout {
                let mut q = r.chan_q(set >= 1);
                if r.next().is_multiple_of(4) {
                    q.sh_pos = MAX_SHIFT;
                }
                if set == 2 {
                    // Non-negative multipliers: the fast form.
                    q.m_pos = q.m_pos.checked_abs().unwrap_or(i32::MAX);
                    q.m_neg = q.m_neg.checked_abs().unwrap_or(i32::MAX);
                }
                ps.extend_from_slice(&q.write());
            }
        }
        let padv: Vec<u8> = (0..cin).map(|_| r.byte()).collect();
        let (zp, zp_out) = (r.byte() as i8, r.byte() as i8);
        Case { input, iv, ov, out_len: l.out_off + h * w * ops_, weights, params, padv, zp, zp_out }
    }

    /// Run [`conv_pw`] and [`conv_generic`] on a case (both record sets, both pad kinds) and
    /// compare every byte of the output buffers (the bytes outside the view included).
    fn check_case(c: &Case) {
        let Some(s) = super::super::v3() else { return };
        let g = ConvGeom { k: 1, stride: 1, pad: 0, groups: 1 };
        assert!(applies(&c.iv, &c.ov, &g));
        for params in &c.params {
            for pad in [Pad::PerChannel(&c.padv), Pad::Zp(c.zp)] {
                let fill: Vec<u8> = (0..c.out_len).map(|i| (i * 31 % 251) as u8).collect();
                let mut want = fill.clone();
                conv_generic(&c.input, &c.iv, &mut want, &c.ov, &g, &c.weights, params, pad, c.zp_out)
                    .unwrap();
                let mut got = fill.clone();
                let a = ConvArgs {
                    input: &c.input,
                    iv: &c.iv,
                    output: &mut got,
                    ov: &c.ov,
                    g: &g,
                    weights: &c.weights,
                    params,
                    pad,
                    zp_out: c.zp_out,
                };
                conv_pw(s, a).unwrap();
                assert!(got == want, "{:?} {:?}", c.iv, c.ov);
                // And through the dispatcher.
                let mut got = fill;
                conv2d_on(true, &c.input, &c.iv, &mut got, &c.ov, &g, &c.weights, params, pad, c.zp_out)
                    .unwrap();
                assert!(got == want, "dispatch {:?} {:?}", c.iv, c.ov);
            }
        }
    }

    fn check(h: usize, w: usize, cin: usize, cout: usize, l: Layout, seed: u32) {
        check_case(&case(h, w, cin, cout, l, seed));
    }

    #[test]
    fn pw_fast_form_is_taken() {
        let c = case(1, 1, 8, 16, DENSE, 9);
        let mut q = [ChanQ::default(); OB];
        for (set, want) in [(0, false), (2, true)] {
            read_q(&c.params[set], 0, &mut q).unwrap();
            assert_eq!(Blk::new(&q).fast, want);
        }
        // A negative multiplier, or a short shift, rules it out.
        q[3].m_neg = -1;
        assert!(!Blk::new(&q).fast);
        q[3].m_neg = 0;
        assert!(Blk::new(&q).fast);
        (q[5].m_pos, q[5].sh_pos) = (1, 32);
        assert!(!Blk::new(&q).fast);
    }

    #[test]
    fn pw_model_shapes() {
        // The face model's layers at a reduced size, dense and as channel slices.
        for (i, &(cin, cout)) in [(8, 16), (16, 32), (32, 32), (32, 64)].iter().enumerate() {
            for l in [DENSE, WIDE, SLICE] {
                check(5, 23, cin, cout, l, 11 + i as u32);
            }
        }
    }

    #[test]
    fn pw_channel_counts() {
        for cin in 1..=MAX_CIN {
            for cout in [1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 64, 70] {
                let l = if (cin + cout) % 3 == 0 { WIDE } else { DENSE };
                check(2, 7, cin, cout, l, (cin * 100 + cout) as u32);
            }
        }
    }

    #[test]
    fn pw_more_than_a_chunk_of_channels() {
        check(3, 5, 8, CB * OB + 20, DENSE, 5);
        check(3, 5, 13, 2 * CB * OB + 3, WIDE, 6);
    }

    #[test]
    fn pw_odd_sizes() {
        for (h, w) in [(1, 1), (1, 2), (1, 3), (1, 5), (3, 1), (2, 9), (9, 15), (1, G + 1), (2, G - 1)] {
            for (cin, cout) in [(8, 16), (3, 5), (16, 32), (31, 17), (32, 8)] {
                for l in [DENSE, WIDE, SLICE] {
                    check(h, w, cin, cout, l, (h * 7 + w + cin + cout) as u32);
                }
            }
        }
    }

    #[test]
    fn pw_int8_extremes() {
        for (cin, cout) in [(8, 16), (32, 64), (5, 9)] {
            for v in [0x80u8, 0x7f] {
                let mut c = case(3, 11, cin, cout, DENSE, 3);
                c.input.fill(v);
                c.weights.fill(0x80);
                check_case(&c);
                c.weights.fill(0x7f);
                check_case(&c);
            }
        }
    }

    #[test]
    fn pw_rejects_inconsistent_lengths() {
        let Some(s) = super::super::v3() else { return };
        let c = case(3, 4, 8, 16, DENSE, 1);
        let g = ConvGeom { k: 1, stride: 1, pad: 0, groups: 1 };
        let run = |input: &[u8], iv: &View, ov: &View, w: &[u8], p: &[u8], out_len: usize| {
            let mut out = vec![0u8; out_len];
            let a = ConvArgs {
                input,
                iv,
                output: &mut out,
                ov,
                g: &g,
                weights: w,
                params: p,
                pad: Pad::Zp(0),
                zp_out: 0,
            };
            conv_pw(s, a)
        };
        let p = &c.params[1];
        assert_eq!(run(&c.input, &c.iv, &c.ov, &c.weights, p, c.out_len), Ok(()));
        let err = Err(NnError::Malformed);
        assert_eq!(run(&c.input[..c.input.len() - 1], &c.iv, &c.ov, &c.weights, p, c.out_len), err);
        assert_eq!(run(&c.input, &c.iv, &c.ov, &c.weights[..c.weights.len() - 1], p, c.out_len), err);
        assert_eq!(run(&c.input, &c.iv, &c.ov, &c.weights, &p[..p.len() - 1], c.out_len), err);
        assert_eq!(run(&c.input, &c.iv, &c.ov, &c.weights, p, c.out_len - 1), err);
        let ov = View { w: c.ov.w + 1, ..c.ov };
        assert_eq!(run(&c.input, &c.iv, &ov, &c.weights, p, 4 * c.out_len), err);
        let iv = View { c: MAX_CIN + 1, pixel_stride: 64, ..c.iv };
        assert_eq!(run(&vec![0; 4096], &iv, &c.ov, &vec![0; 4096], p, c.out_len), err);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn pw_matches_generic(
            h in 1usize..5,
            w in 1usize..40,
            cin in 1usize..=MAX_CIN,
            cout in 1usize..=70,
            in_extra in prop_oneof![Just(0usize), 0usize..20],
            in_off in 0usize..9,
            out_extra in prop_oneof![Just(0usize), 0usize..20],
            out_off in 0usize..9,
            seed: u32,
        ) {
            check(h, w, cin, cout, Layout { in_extra, in_off, out_extra, out_off }, seed);
        }
    }
}
