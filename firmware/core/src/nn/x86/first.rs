//! Dense 3×3 convolution of few input channels (the first layer) with AVX2.
//!
//! The generic dense kernel gathers each output pixel's `9·cin`-byte receptive field and, with 8
//! output channels, leaves half of its 16-channel tiles idle. Here the lanes are 8 output
//! channels (one `i32` vector per output pixel and block of 8), and no field is gathered:
//!
//! - each input row of a strip of up to [`SW`] output columns is widened once to `i16` pairs
//!   (a row of a dense tensor straight from the input; padding columns hold the per-channel pad
//!   values, padding rows are rows of pad values). The kernel row of output pixel `ox` is then
//!   the run of `3·cin` values starting at element `E·ox` of the strip, `E = stride·cin`. When
//!   `E` is odd, every other pixel's run starts at an odd element, so a second copy of the row
//!   shifted by one element is kept, in which those runs start on a pair. The three rows an
//!   output row needs are kept in a ring of three slots keyed by input row, so each input row
//!   is widened once per strip and block of channels;
//! - the weights are packed once per block of up to 16 output channels as `[ky][pair][8
//!   channels × 2]` `i16` vectors, the last pair of a kernel row padded with a zero weight (so
//!   whatever the element past the run holds is multiplied by 0);
//! - per group of [`P`] output pixels (half as many with 16 channels) and kernel row: one
//!   `vpbroadcastd` of each input pair (the runs of neighbouring pixels overlap, a broadcast
//!   serves every pixel that reads it) and one `vpmaddwd` per pixel, pair and block of 8;
//! - requantisation with [`requant8`](super::requant8); four vectors are packed into 32 output
//!   bytes at once, stored as one run when the output is dense.
//!
//! Products and sums are those of [`crate::nn::ops::conv_generic`] (exact `vpmaddwd` pairs,
//! wrapping `i32` adds), so the output is bit-identical.

use core::arch::x86_64::__m256i;

use pulp::x86::V3;

use super::{pack4, requant8, widen_pairs, with_avx2, ConvArgs, Kernel, QBlock, OB};
use crate::nn::blob::CHAN_REC;
use crate::nn::ops::{pad_values, read_q, ChanQ, ConvGeom, View};
use crate::nn::NnError;

/// Largest number of input channels.
pub(in crate::nn) const MAX_CIN: usize = 4;
/// Largest number of output channels (done in blocks of 16).
pub(in crate::nn) const MAX_COUT: usize = 64;
/// Output pixels per micro-kernel call with one block of 8 channels (half as many with two).
const P: usize = 4;
/// Pairs of one row a group of [`P`] pixels reads: at most `E·(P−1)/2 + KP ≤ 12 + 6`.
const WIN: usize = 24;
/// Output columns per strip.
const SW: usize = 256;
/// Bytes of a padded strip row: `(stride·(SW−1) + 3)·cin`.
const RB: usize = (2 * (SW - 1) + 3) * MAX_CIN;
/// `i32` pairs of a widened strip row, with room for a last group's window past its end.
const RP: usize = RB / 2 + WIN + 8;
/// Largest pairs per kernel row (`3·cin / 2` rounded up).
const MAX_KP: usize = (3 * MAX_CIN).div_ceil(2);

// Windows stay in the buffer: the base of the last group is at most `E·(SW−1)/2`.
const _: () = assert!(2 * MAX_CIN * (SW - 1) / 2 + WIN <= RP);
const _: () = assert!(2 * MAX_CIN * (P - 1) / 2 + MAX_KP <= WIN && P.is_multiple_of(2));

/// Whether [`conv_first`] takes this convolution: one group, 3×3 kernel, stride 1 or 2,
/// padding 0 or 1, `1..=MAX_CIN` input and `1..=MAX_COUT` output channels (any pixel strides,
/// offsets and pad values).
pub(in crate::nn) fn applies(iv: &View, ov: &View, g: &ConvGeom) -> bool {
    g.groups == 1
        && g.k == 3
        && (g.stride == 1 || g.stride == 2)
        && g.pad <= 1
        && (1..=MAX_CIN).contains(&iv.c)
        && (1..=MAX_COUT).contains(&ov.c)
}

/// The first-layer kernel (where [`applies`]).
///
/// Stack: three row slots of two widened copies (`6 · RP · 4` B ≈ 25 KiB), one padded byte row
/// (2 KiB), the packed weights (≤ 1.2 KiB) and requantisation constants (0.6 KiB).
pub(in crate::nn) fn conv_first(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct First;
    impl Kernel for First {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            first_impl(s, a)
        }
    }
    with_avx2::<First>(s, a)
}

#[inline(always)]
fn first_impl(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let (cin, cout) = (a.iv.c, a.ov.c);
    if !applies(a.iv, a.ov, a.g) || !a.iv.fits(a.input.len()) || !a.ov.fits(a.output.len()) {
        return Err(NnError::Malformed);
    }
    if a.weights.len() < cout * 9 * cin || a.params.len() < cout * CHAN_REC {
        return Err(NnError::Malformed);
    }
    let expect = |n: usize| (n + 2 * a.g.pad).checked_sub(3).map(|v| v / a.g.stride + 1);
    if expect(a.iv.h) != Some(a.ov.h) || expect(a.iv.w) != Some(a.ov.w) {
        return Err(NnError::Malformed);
    }
    // E = stride·cin elements between neighbouring output pixels' runs, KP pairs per kernel row.
    match (cin, a.g.stride) {
        (1, 1) => blocks::<1, 2>(s, a),
        (1, 2) => blocks::<2, 2>(s, a),
        (2, 1) => blocks::<2, 3>(s, a),
        (2, 2) => blocks::<4, 3>(s, a),
        (3, 1) => blocks::<3, 5>(s, a),
        (3, 2) => blocks::<6, 5>(s, a),
        (4, 1) => blocks::<4, 6>(s, a),
        (4, 2) => blocks::<8, 6>(s, a),
        _ => Err(NnError::Malformed),
    }
}

/// Every block of up to 16 output channels, one after the other.
#[inline(always)]
fn blocks<const E: usize, const KP: usize>(s: V3, mut a: ConvArgs<'_>) -> Result<(), NnError> {
    let cout = a.ov.c;
    let padv = pad_values(a.pad, a.iv.c)?;
    let mut oc0 = 0;
    while oc0 < cout {
        let n = (cout - oc0).min(OB);
        if n <= OB / 2 {
            block::<E, KP, 1, 4>(s, &mut a, &padv, oc0, n)?;
        } else {
            block::<E, KP, 2, 2>(s, &mut a, &padv, oc0, n)?;
        }
        oc0 += n;
    }
    Ok(())
}

/// The weights of channels `oc0 .. oc0 + 8·NB` (zero past `cout`) as `[ky][pair][block]`
/// vectors: lane `l` of block `h`, pair `j` holds elements `2j, 2j+1` of kernel row `ky`
/// (`kx·cin + c`) of channel `oc0 + 8h + l`, zero past `3·cin`.
#[inline(always)]
fn pack<const KP: usize, const NB: usize>(
    weights: &[u8],
    cin: usize,
    cout: usize,
    oc0: usize,
) -> Result<[[[__m256i; NB]; KP]; 3], NnError> {
    let kr = 3 * cin;
    let mut w = [[[[0i16; 16]; NB]; KP]; 3];
    for h in 0..NB {
        for l in 0..8 {
            let oc = oc0 + 8 * h + l;
            if oc >= cout {
                continue;
            }
            let wr = weights.get(oc * 3 * kr..(oc + 1) * 3 * kr).ok_or(NnError::Malformed)?;
            for (wk, row) in w.iter_mut().zip(wr.chunks_exact(kr)) {
                for (e, &v) in row.iter().enumerate() {
                    let lane =
                        wk.get_mut(e / 2).and_then(|p| p.get_mut(h)).and_then(|b| b.get_mut(2 * l + e % 2));
                    *lane.ok_or(NnError::Malformed)? = v as i8 as i16;
                }
            }
        }
    }
    let z = pulp::cast([0i16; 16]);
    let mut v = [[[z; NB]; KP]; 3];
    for (vk, wk) in v.iter_mut().zip(&w) {
        for (vj, wj) in vk.iter_mut().zip(wk) {
            for (vh, wh) in vj.iter_mut().zip(wj) {
                *vh = pulp::cast(*wh);
            }
        }
    }
    Ok(v)
}

/// One block of `n ≤ 8·NB` output channels from `oc0`, over the whole output, `PP` output
/// pixels at a time (`PP · NB = 4` accumulators, packed into 32 bytes).
#[inline(always)]
fn block<const E: usize, const KP: usize, const NB: usize, const PP: usize>(
    s: V3,
    a: &mut ConvArgs<'_>,
    padv: &[u8],
    oc0: usize,
    n: usize,
) -> Result<(), NnError> {
    let (iv, ov, g) = (a.iv, a.ov, a.g);
    let cin = iv.c;
    let padv = padv.get(..cin).ok_or(NnError::Malformed)?;
    let wv = pack::<KP, NB>(a.weights, cin, ov.c, oc0)?;
    let mut q = [ChanQ::default(); OB];
    let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
    read_q(a.params, oc0, q)?;
    let qb = QBlock::new(q);
    let zpv = s.avx._mm256_set1_epi32(a.zp_out as i32);
    // Whole groups of pixels are one run of output bytes.
    let dense = ov.pixel_stride == 8 * NB && n == 8 * NB;
    let mut bytes = [0u8; RB + 1];
    // Slot, copy (0: the row, 1: shifted by one element), pairs.
    let mut rows = [[[0i32; RP]; 2]; 3];
    let mut ox0 = 0;
    while ox0 < ov.w {
        let nox = (ov.w - ox0).min(SW);
        // Input columns of the strip (some may be padding).
        let ix0 = (g.stride * ox0) as isize - g.pad as isize;
        let nin = g.stride * (nox - 1) + 3;
        let mut held = [isize::MIN; 3];
        for oy in 0..ov.h {
            let iy0 = (g.stride * oy) as isize - g.pad as isize;
            for iy in iy0..iy0 + 3 {
                let slot = iy.rem_euclid(3) as usize;
                let held = held.get_mut(slot).ok_or(NnError::Malformed)?;
                if *held == iy {
                    continue;
                }
                let slot = rows.get_mut(slot).ok_or(NnError::Malformed)?;
                fill_slot::<E>(s, a.input, iv, iy, ix0, nin, padv, &mut bytes, slot)?;
                *held = iy;
            }
            let slot = |ky: isize| rows.get((iy0 + ky).rem_euclid(3) as usize).ok_or(NnError::Malformed);
            let r = [slot(0)?, slot(1)?, slot(2)?];
            let orow = ov.off + (oy * ov.w + ox0) * ov.pixel_stride + oc0;
            let mut ox = 0;
            while ox < nox {
                // ox is a multiple of PP (even), so E·ox is even: the base is a pair in both copies.
                let base = E * ox / 2;
                let win = |ky: usize, c: usize| {
                    r.get(ky)
                        .and_then(|r| r.get(c))
                        .and_then(|b| b.get(base..base + WIN))
                        .and_then(|v| <&[i32; WIN]>::try_from(v).ok())
                        .ok_or(NnError::Malformed)
                };
                let c1 = if E % 2 == 1 { 1 } else { 0 };
                let wins = [[win(0, 0)?, win(0, c1)?], [win(1, 0)?, win(1, c1)?], [win(2, 0)?, win(2, c1)?]];
                let acc = group::<E, KP, NB, PP>(s, &wins, &wv);
                let b = requant_pack(s, &acc, &qb, zpv);
                let np = (nox - ox).min(PP);
                let at = orow + ox * ov.pixel_stride;
                if dense && np == PP {
                    let o = a.output.get_mut(at..at + 32).ok_or(NnError::Malformed)?;
                    let o = <&mut [u8; 32]>::try_from(o).map_err(|_| NnError::Malformed)?;
                    *o = b;
                } else {
                    for p in 0..np {
                        let rec = b.get(8 * NB * p..8 * NB * (p + 1)).ok_or(NnError::Malformed)?;
                        put_rec(a.output, at + p * ov.pixel_stride, rec, n)?;
                    }
                }
                ox += PP;
            }
        }
        ox0 += nox;
    }
    Ok(())
}

/// Write the first `n` bytes of `rec` (8 or 16 bytes) at `out[at..]`: one whole store when
/// `n` is the record's length (no iterator adaptors or variable-length copies here: they
/// would be calls per pixel).
#[inline(always)]
fn put_rec(out: &mut [u8], at: usize, rec: &[u8], n: usize) -> Result<(), NnError> {
    let o = out.get_mut(at..at + n).ok_or(NnError::Malformed)?;
    if let (Ok(d), Ok(v)) = (<&mut [u8; 8]>::try_from(&mut *o), <&[u8; 8]>::try_from(rec)) {
        *d = *v;
    } else if let (Ok(d), Ok(v)) = (<&mut [u8; 16]>::try_from(&mut *o), <&[u8; 16]>::try_from(rec)) {
        *d = *v;
    } else {
        for (i, d) in o.iter_mut().enumerate() {
            *d = rec.get(i).copied().unwrap_or(0);
        }
    }
    Ok(())
}

/// Requantise a group's accumulators (`PP · NB = 4` vectors) and pack them as bytes: pixel
/// `p`'s record (channels `0 .. 8·NB`) at bytes `8·NB·p ..`.
#[inline(always)]
fn requant_pack<const NB: usize, const PP: usize>(
    s: V3,
    acc: &[[__m256i; NB]; PP],
    qb: &QBlock,
    zpv: __m256i,
) -> [u8; 32] {
    // Pixel-major: vector k = channels 8h .. 8h + 8 of pixel p, k = NB·p + h.
    let mut v = [s.avx._mm256_setzero_si256(); 4];
    for (vp, ap) in v.chunks_exact_mut(NB).zip(acc) {
        for (h, (d, a)) in vp.iter_mut().zip(ap).enumerate() {
            *d = requant8(s, *a, qb, h, zpv);
        }
    }
    pulp::cast(pack4(s, &v))
}

/// Widen input row `iy` (a padding row when outside the image), columns `ix0 .. ix0 + nin`
/// (padding columns outside), into `slot`: copy 0 holds pairs of elements `2i, 2i+1`, and when
/// `E` is odd copy 1 holds pairs `2i+1, 2i+2`. A row of a dense tensor is widened straight from
/// the input, only the pairs that hold padding are assembled one by one; other rows are laid
/// out in `bytes` first.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fill_slot<const E: usize>(
    s: V3,
    input: &[u8],
    iv: &View,
    iy: isize,
    ix0: isize,
    nin: usize,
    padv: &[u8],
    bytes: &mut [u8],
    slot: &mut [[i32; RP]; 2],
) -> Result<(), NnError> {
    let cin = iv.c;
    let copies = if E % 2 == 1 { 2 } else { 1 };
    if iy < 0 || iy as usize >= iv.h || iv.pixel_stride != cin {
        let nb = strip_row(input, iv, iy, ix0, nin, padv, bytes)?;
        let src = bytes.get(..nb).ok_or(NnError::Malformed)?;
        for (c, buf) in slot.iter_mut().enumerate().take(copies) {
            let src = src.get(c..).unwrap_or(&[]);
            widen_pairs(s, buf.get_mut(..src.len().div_ceil(2)).ok_or(NnError::Malformed)?, src);
        }
        return Ok(());
    }
    let nb = nin * cin;
    // Strip bytes d0 .. d1 are image columns lo .. hi, the rest padding.
    let lo = ix0.max(0) as usize;
    let hi = ((ix0 + nin as isize).max(0) as usize).min(iv.w).max(lo);
    let (d0, d1) = ((lo as isize - ix0) as usize * cin, (hi as isize - ix0) as usize * cin);
    let rb = iv.off + (iy as usize * iv.w + lo) * cin;
    let row = input.get(rb..rb + (d1 - d0)).ok_or(NnError::Malformed)?;
    for (c, buf) in slot.iter_mut().enumerate().take(copies) {
        let np = (nb - c).div_ceil(2);
        // Pairs i0 .. i1 lie inside the image.
        let i0 = ((d0 + 1 - c) / 2).min(np);
        let i1 = (d1.saturating_sub(c) / 2).max(i0).min(np);
        if i1 > i0 {
            let src = row.get(2 * i0 + c - d0..2 * i1 + c - d0).ok_or(NnError::Malformed)?;
            widen_pairs(s, buf.get_mut(i0..i1).ok_or(NnError::Malformed)?, src);
        }
        // The few pairs that hold padding (a column on each side at most).
        for i in (0..i0).chain(i1..np) {
            let e0 = strip_byte(2 * i + c, d0, d1, nb, row, padv);
            let e1 = strip_byte(2 * i + c + 1, d0, d1, nb, row, padv);
            *buf.get_mut(i).ok_or(NnError::Malformed)? = (e0 as u16 as u32 | (e1 as u16 as u32) << 16) as i32;
        }
    }
    Ok(())
}

/// Byte `b` of a strip row whose bytes `d0 .. d1` are `row` (image columns) and the rest pad
/// columns (`d0`, `d1` multiples of `cin = padv.len()`), sign-extended; 0 past its `nb` bytes
/// (the element after a kernel row's last, whose weight is 0).
#[inline(always)]
fn strip_byte(b: usize, d0: usize, d1: usize, nb: usize, row: &[u8], padv: &[u8]) -> i16 {
    let v = if b >= nb {
        None
    } else if b >= d1 {
        // Channel of the byte: no division for the usual single pad column.
        let mut k = b - d1;
        while k >= padv.len() && !padv.is_empty() {
            k -= padv.len();
        }
        padv.get(k)
    } else if b >= d0 {
        row.get(b - d0)
    } else {
        padv.get(b % padv.len().max(1))
    };
    v.map_or(0, |&v| v as i8 as i16)
}

/// Lay out input row `iy` (a padding row when outside the image), columns `ix0 .. ix0 + nin`
/// (padding columns outside), as `nin · cin` bytes at the start of `dst`; returns their count.
#[inline(always)]
fn strip_row(
    input: &[u8],
    iv: &View,
    iy: isize,
    ix0: isize,
    nin: usize,
    padv: &[u8],
    dst: &mut [u8],
) -> Result<usize, NnError> {
    let cin = iv.c;
    let nb = nin * cin;
    let dst = dst.get_mut(..nb).ok_or(NnError::Malformed)?;
    if iy < 0 || iy as usize >= iv.h {
        for px in dst.chunks_exact_mut(cin) {
            px.copy_from_slice(padv);
        }
        return Ok(nb);
    }
    // Image columns lo .. hi of the strip, at strip columns lo − ix0 ...
    let lo = ix0.max(0) as usize;
    let hi = ((ix0 + nin as isize).max(0) as usize).min(iv.w).max(lo);
    let (d0, d1) = ((lo as isize - ix0) as usize * cin, (hi as isize - ix0) as usize * cin);
    let (left, rest) = dst.split_at_mut(d0.min(nb));
    let (mid, right) = rest.split_at_mut((d1 - d0).min(rest.len()));
    for px in left.chunks_exact_mut(cin).chain(right.chunks_exact_mut(cin)) {
        px.copy_from_slice(padv);
    }
    let rb = iv.off + (iy as usize * iv.w + lo) * iv.pixel_stride;
    if iv.pixel_stride == cin {
        mid.copy_from_slice(input.get(rb..rb + mid.len()).ok_or(NnError::Malformed)?);
    } else {
        for (i, px) in mid.chunks_exact_mut(cin).enumerate() {
            let b = rb + i * iv.pixel_stride;
            px.copy_from_slice(input.get(b..b + cin).ok_or(NnError::Malformed)?);
        }
    }
    Ok(nb)
}

/// The accumulators of `PP` neighbouring output pixels (blocks of 8 channels): pixel `p`'s
/// kernel row `ky` is pairs `E·p/2 .. E·p/2 + KP` of window `wins[ky][E·p mod 2]`.
#[inline(always)]
fn group<const E: usize, const KP: usize, const NB: usize, const PP: usize>(
    s: V3,
    wins: &[[&[i32; WIN]; 2]; 3],
    w: &[[[__m256i; NB]; KP]; 3],
) -> [[__m256i; NB]; PP] {
    let (avx, avx2) = (s.avx, s.avx2);
    let mut acc = [[avx._mm256_setzero_si256(); NB]; PP];
    for (win, wk) in wins.iter().zip(w) {
        for (j, wj) in wk.iter().enumerate() {
            for (p, ap) in acc.iter_mut().enumerate() {
                let e = E * p;
                // In range: E·(PP−1)/2 + KP ≤ WIN (asserted for the largest E, PP and KP).
                let x = win[e % 2].get(e / 2 + j).copied().unwrap_or(0);
                let b = avx._mm256_set1_epi32(x);
                for (a, wh) in ap.iter_mut().zip(wj) {
                    *a = avx2._mm256_add_epi32(*a, avx2._mm256_madd_epi16(b, *wh));
                }
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::blob::MAX_SHIFT;
    use crate::nn::ops::{conv_generic, Pad};
    use crate::nn::testutil::{Layout, Rng};
    use std::vec;
    use std::vec::Vec;

    const DENSE: Layout = Layout::DENSE;
    const WIDE: Layout = Layout::WIDE;

    /// Run [`conv_first`] and [`conv_generic`] on the same random case and compare every byte of
    /// the output buffers (the bytes outside the view included).
    #[allow(clippy::too_many_arguments)]
    fn check(h: usize, w: usize, cin: usize, cout: usize, stride: usize, pad: usize, l: Layout, seed: u32) {
        let Some(s) = super::super::v3() else { return };
        let mut r = Rng(seed);
        let g = ConvGeom { k: 3, stride, pad, groups: 1 };
        let ips = cin + l.in_extra;
        let iv = View { h, w, c: cin, pixel_stride: ips, off: l.in_off };
        let (oh, ow) = ((h + 2 * pad - 3) / stride + 1, (w + 2 * pad - 3) / stride + 1);
        let ops_ = cout + l.out_extra;
        let ov = View { h: oh, w: ow, c: cout, pixel_stride: ops_, off: l.out_off };
        let input: Vec<u8> = (0..l.in_off + h * w * ips + 7).map(|_| r.byte()).collect();
        let weights: Vec<u8> = (0..cout * 9 * cin).map(|_| r.byte()).collect();
        // Two sets of requantisation records: any shifts (mostly blocks with a shift below 33
        // somewhere: the full requantisation), and shifts of at least 33 only (the short form).
        let mut params = [Vec::new(), Vec::new()];
        for (set, ps) in params.iter_mut().enumerate() {
            for _ in 0..cout {
                let mut sh = || match (set, r.next() % 4) {
                    (0, 0) => (r.next() % 33) as u8,
                    (_, 1) => MAX_SHIFT,
                    _ => 33 + (r.next() % (MAX_SHIFT as u32 - 32)) as u8,
                };
                let (sh_pos, sh_neg) = (sh(), sh());
                let q = ChanQ {
                    bias: r.int(),
                    m_pos: r.int(),
                    m_neg: if r.next().is_multiple_of(4) { 0 } else { r.int() },
                    sh_pos,
                    sh_neg,
                };
                ps.extend_from_slice(&q.write());
            }
        }
        let padv: Vec<u8> = (0..cin).map(|_| r.byte()).collect();
        let zp = r.byte() as i8;
        let zp_out = r.byte() as i8;
        for (pad_kind, params) in
            [Pad::PerChannel(&padv), Pad::Zp(zp)].into_iter().flat_map(|p| [(p, &params[0]), (p, &params[1])])
        {
            let len = l.out_off + oh * ow * ops_ + 5;
            let mut fast = vec![0x5Au8; len];
            let mut slow = vec![0x5Au8; len];
            assert!(applies(&iv, &ov, &g));
            let a = ConvArgs {
                input: &input,
                iv: &iv,
                output: &mut fast,
                ov: &ov,
                g: &g,
                weights: &weights,
                params,
                pad: pad_kind,
                zp_out,
            };
            conv_first(s, a).unwrap();
            conv_generic(&input, &iv, &mut slow, &ov, &g, &weights, params, pad_kind, zp_out).unwrap();
            assert_eq!(fast, slow, "{h}x{w} {cin}->{cout} s{stride} p{pad} {pad_kind:?}");
        }
    }

    #[test]
    fn model_first_layers_match_generic() {
        // The detector's and the plate model's first layer, on a small frame and a 64×48 one.
        check(9, 11, 3, 8, 2, 1, DENSE, 1);
        check(64, 48, 3, 8, 2, 1, DENSE, 2);
        check(48, 64, 3, 8, 2, 1, WIDE, 3);
        check(64, 48, 3, 16, 1, 1, DENSE, 4);
    }

    #[test]
    fn all_channel_counts_strides_and_pads_match_generic() {
        let mut seed = 10;
        for cin in 1..=MAX_CIN {
            for cout in [1, 5, 8, 16, 20, MAX_COUT] {
                for stride in [1, 2] {
                    for pad in [0, 1] {
                        for (h, w) in [(3, 3), (4, 7), (9, 11), (5, 6)] {
                            let l = if seed % 2 == 0 { DENSE } else { WIDE };
                            check(h, w, cin, cout, stride, pad, l, seed);
                            seed += 1;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn tiny_images_match_generic() {
        let mut seed = 1000;
        for cin in 1..=MAX_CIN {
            for cout in [1, 8, 9] {
                for stride in [1, 2] {
                    for (h, w) in [(1, 1), (2, 3), (3, 2), (1, 5), (6, 1), (2, 2)] {
                        let l = if seed % 2 == 0 { DENSE } else { WIDE };
                        check(h, w, cin, cout, stride, 1, l, seed);
                        seed += 1;
                    }
                    check(3, 3, cin, cout, stride, 0, DENSE, seed);
                    check(3, 4, cin, cout, stride, 0, WIDE, seed + 1);
                    seed += 2;
                }
            }
        }
    }

    #[test]
    fn rows_wider_than_a_strip_match_generic() {
        // Several strips: 2·SW + a bit at stride 2, SW + 3 at stride 1, both parities.
        check(5, 2 * (2 * SW + 5) - 1, 3, 8, 2, 1, DENSE, 2000);
        check(4, SW + 3, 3, 8, 1, 1, WIDE, 2001);
        check(3, SW + 4, 1, 5, 1, 0, DENSE, 2002);
        check(3, 2 * SW + 2, 4, 16, 2, 0, WIDE, 2003);
    }

    #[test]
    fn int8_extremes_match_generic() {
        let Some(s) = super::super::v3() else { return };
        let g = ConvGeom { k: 3, stride: 2, pad: 1, groups: 1 };
        let iv = View { h: 7, w: 9, c: 3, pixel_stride: 3, off: 0 };
        let ov = View { h: 4, w: 5, c: 8, pixel_stride: 8, off: 0 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 40, sh_neg: 40 }.write();
        let params: Vec<u8> = (0..8).flat_map(|_| q).collect();
        for (x, wt, p) in
            [(0x80u8, 0x80u8, 0x80u8), (0x7F, 0x80, 0x7F), (0x80, 0x7F, 0x80), (0x7F, 0x7F, 0x7F)]
        {
            let input = vec![x; 7 * 9 * 3];
            let weights = vec![wt; 8 * 27];
            let pv = [p; 3];
            let mut fast = vec![0u8; 4 * 5 * 8];
            let mut slow = vec![0u8; 4 * 5 * 8];
            let a = ConvArgs {
                input: &input,
                iv: &iv,
                output: &mut fast,
                ov: &ov,
                g: &g,
                weights: &weights,
                params: &params,
                pad: Pad::PerChannel(&pv),
                zp_out: 0,
            };
            conv_first(s, a).unwrap();
            conv_generic(&input, &iv, &mut slow, &ov, &g, &weights, &params, Pad::PerChannel(&pv), 0)
                .unwrap();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn applies_only_to_small_dense_3x3() {
        let v = |c| View { h: 8, w: 6, c, pixel_stride: c, off: 0 };
        let g = |k, stride, pad, groups| ConvGeom { k, stride, pad, groups };
        assert!(applies(&v(3), &v(8), &g(3, 2, 1, 1)));
        assert!(applies(&v(1), &v(1), &g(3, 1, 0, 1)));
        assert!(applies(&v(MAX_CIN), &v(MAX_COUT), &g(3, 1, 1, 1)));
        assert!(!applies(&v(MAX_CIN + 1), &v(8), &g(3, 2, 1, 1)), "too many input channels");
        assert!(!applies(&v(3), &v(MAX_COUT + 1), &g(3, 2, 1, 1)), "too many output channels");
        assert!(!applies(&v(3), &v(8), &g(3, 3, 1, 1)), "stride 3");
        assert!(!applies(&v(3), &v(8), &g(3, 1, 2, 1)), "pad 2");
        assert!(!applies(&v(3), &v(8), &g(1, 1, 0, 1)), "1x1");
        assert!(!applies(&v(3), &v(8), &g(5, 2, 2, 1)), "5x5");
        assert!(!applies(&v(3), &v(3), &g(3, 2, 1, 3)), "depthwise");
    }

    #[test]
    fn short_buffers_are_errors() {
        let Some(s) = super::super::v3() else { return };
        let g = ConvGeom { k: 3, stride: 2, pad: 1, groups: 1 };
        let iv = View { h: 8, w: 8, c: 3, pixel_stride: 3, off: 0 };
        let ov = View { h: 4, w: 4, c: 8, pixel_stride: 8, off: 0 };
        let input = vec![1u8; 8 * 8 * 3];
        let params = vec![0u8; 8 * CHAN_REC];
        let weights = vec![1u8; 8 * 27];
        let mut out = vec![0u8; 4 * 4 * 8];
        let run = |input: &[u8], out: &mut [u8], weights: &[u8], params: &[u8]| {
            let a = ConvArgs {
                input,
                iv: &iv,
                output: out,
                ov: &ov,
                g: &g,
                weights,
                params,
                pad: Pad::Zp(0),
                zp_out: 0,
            };
            conv_first(s, a)
        };
        assert_eq!(run(&input[..10], &mut out, &weights, &params), Err(NnError::Malformed));
        assert_eq!(run(&input, &mut out[..100], &weights, &params), Err(NnError::Malformed));
        assert_eq!(run(&input, &mut out, &weights[..200], &params), Err(NnError::Malformed));
        assert_eq!(run(&input, &mut out, &weights, &params[..100]), Err(NnError::Malformed));
        assert_eq!(run(&input, &mut out, &weights, &params), Ok(()));
    }
}
