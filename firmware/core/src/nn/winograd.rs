//! Winograd F(2×2, 3×3) convolution: dense 3×3, stride 1, padding 1, exact in integers.
//!
//! [`conv3x3_winograd`] computes the same bytes as `ops::conv_generic` for the convolutions
//! [`applies`] accepts, with 16 multiplications per 2×2 output tile and (input, output) channel
//! pair instead of 36.
//!
//! # The arithmetic
//!
//! Each 2×2 block of outputs (a *tile*) reads a 4×4 window `d` of the input (rows and columns
//! `2ty − 1 ..= 2ty + 2`, `2tx − 1 ..= 2tx + 2`; positions outside the tensor read the padding
//! value, as in `conv_generic`, including positions past the bottom and right edges: they only
//! contribute to outputs past the edges, which are not written). With
//!
//! ```text
//!      Bᵀ = [1  0 −1  0]      G' = 2G = [2  0  0]      Aᵀ = [1  1  1  0]
//!           [0  1  1  0]                [1  1  1]           [0  1 −1 −1]
//!           [0 −1  1  0]                [1 −1  1]
//!           [0  1  0 −1]                [0  0  2]
//! ```
//!
//! `V = Bᵀ d B` per input channel, `U' = G' g G'ᵀ = 4·G g Gᵀ` per (output, input) channel and
//! `Y' = Aᵀ (Σ_c U' ⊙ V) A`, Lavin's identity `Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A = g ⋆ d` gives over ℤ
//! `Y' = 4·acc`, `acc` the exact sum of the 9·cin products of the direct convolution. Bounds
//! (int8 values in `[−128, 127]`):
//!
//! - `|Bᵀd| ≤ 2·128`, `|V| ≤ 4·128 = 512`: `i16`;
//! - `|G'g| ≤ (1+1+1)·128 = 384`, `|U'| ≤ 3·384 = 1152`: `i16`;
//! - `|V·U'| ≤ 589 824`; every sum (over channels, `pmaddwd` pairs, `Aᵀ·A`) is taken in
//!   wrapping `i32`, i.e. mod 2³², where it equals the true integer `Y' = 4·acc`;
//! - `|acc| ≤ 9·cin·128·128`, so `|4·acc| < 2³¹` as long as `cin ≤ 3640`: then the `i32`
//!   value of `Y'` *is* `4·acc`, `Y' >> 2 = acc` exactly, and `acc` is also the value of
//!   `conv_generic`'s wrapping accumulator (no wrap there either). [`MAX_CIN`] = 64 is far
//!   below (compile-time check below); the only non-modular step is the final `>> 2`.
//!
//! The output bytes are then `finish(q[oc], acc, zp_out)`, as in `conv_generic`.
//!
//! # Layout and blocking
//!
//! The element-wise products are 16 independent matrix products (one per position ξ of the
//! 4×4 transform domain), `M_ξ[tile][oc] = Σ_c V_ξ[tile][c] · U'_ξ[oc][c]`. They are laid out
//! so that the innermost step is one `pmaddwd` (two channels × 16 values of ξ in 16 `i32`
//! lanes, two `ymm` vectors) accumulated in registers:
//!
//! - a transformed tile is `[p][ξ][2]` `i16` (`p` the channel pair, `⌈cin/2⌉ · 64` bytes);
//! - transformed kernels are in groups of four, `[p][o][ξ][2]`, for a block of up to
//!   `MAX_OB` output channels held in a 32 KiB buffer (16 channels at 64 input channels,
//!   64 at 16; the kernels are transformed once per block);
//! - for each tile (transformed once per output-channel block, into a 2 KiB buffer), each
//!   group of four kernels is one pass over the channel pairs with 4 × 16 sums in registers
//!   (`gemm14`: 2 loads, 8 `pmaddwd`, 8 subtractions per pair), then `Aᵀ M A`, `>> 2` and the
//!   requantisation of the tile's (up to) four pixels, vectorised along the output channels.
//!
//! Stack: about 39 KiB (kernels 32 KiB, tile 2 KiB, requantisation records, output values and
//! transform temporaries 5 KiB).
//!
//! # Vectorisation
//!
//! Everything is portable Rust written for LLVM's vectorisers (no `unsafe`, no intrinsics),
//! `#[inline(always)]` throughout so that it compiles with AVX2 when called from a
//! runtime-dispatched AVX2 context. Two details matter (`mac_pair`, `gemm14`): the products
//! are *subtracted* from the accumulators (with the kernels stored negated), because LLVM
//! reassociates `a + (x0·w0 + x1·w1)` and loses the pairwise shape it maps to `pmaddwd`; and
//! the pair loop holds an empty `asm` statement (`black_box(())`), which keeps the loop
//! vectoriser from vectorising across channel pairs (with gathers) so that the SLP vectoriser
//! vectorises across ξ instead. With both, the inner loop is the ideal one in the AVX2
//! context, with or without LTO-style multi-unit builds.
//!
//! Measured on the model's shapes (AMD EPYC Zen 3, one thread; effective GMAC/s counting the
//! `9·cin·cout·h·w` direct multiply-accumulates; `ops::conv_dense` in brackets): without AVX2
//! 40×32×64→64 24 (10.8), 40×32×16→16 14 (9.0), 10×8×64→16 19 (9.9); compiled for
//! x86-64-v3 44 (22), 28 (13), 25 (17); inside a `pulp` AVX2 dispatch 47, 29, 33. A 64 KiB
//! kernel buffer (32 output channels per block at 64 input channels) would make the 64→32 and
//! 64→64 shapes about 17 % faster.

use super::ops::{finish, pad_values, read_q, ChanQ, ConvGeom, Pad, View, MAX_PAD};
use super::NnError;

/// Largest input channel count [`conv3x3_winograd`] takes (set by its buffers; exactness alone
/// would allow 3640, see the module docs).
pub const MAX_CIN: usize = 64;
/// Channels transformed at a time (one vector of `i16`).
const CH: usize = 16;
/// Kernels per group of the products (see `gemm14`).
const OG: usize = 4;
/// `i16` capacity of the transformed-kernel buffer (32 KiB).
const U_BUF: usize = 16384;
/// `i16` capacity of the transformed-tile buffer (2 KiB): one tile at [`MAX_CIN`].
const V_BUF: usize = 32 * MAX_CIN.div_ceil(2);
/// Largest block of output channels (requantisation records and output values held at a time).
const MAX_OB: usize = 64;

// Exactness: |4·acc| ≤ 4 · 9 · cin · 128 · 128 < 2³¹ (see the module docs).
const _: () = assert!(4 * 9 * (MAX_CIN as u64) * 128 * 128 < (1u64 << 31));
// At least one group of four transformed kernels fits; the padding values fit `pad_values`.
const _: () = assert!(U_BUF >= OG * V_BUF && MAX_CIN <= MAX_PAD);

/// True when [`conv3x3_winograd`] computes this convolution: a dense (one group) 3×3
/// convolution with stride 1 and padding 1 (so the output has the input's height and width),
/// `1 ..= MAX_CIN` input channels and at least one output channel. Any pixel strides and
/// offsets, either kind of padding, any output-channel count.
pub fn applies(iv: &View, ov: &View, g: &ConvGeom) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.groups == 1
        && (1..=MAX_CIN).contains(&iv.c)
        && ov.c >= 1
        && iv.h >= 1
        && iv.w >= 1
        && iv.h == ov.h
        && iv.w == ov.w
}

/// Store the 16 transformed vectors of `CH` channels (`t[ξ][c]`) as channel pairs: pair `p`
/// at `dst[p·stride ..][ξ][2]`, for the pairs `dst` holds (at most `CH / 2`).
#[inline(always)]
fn store_pairs(dst: &mut [i16], stride: usize, t: &[[i16; CH]; 16]) {
    for (p, d) in dst.chunks_mut(stride).take(CH / 2).enumerate() {
        if let Some(d) = d.get_mut(..32) {
            for (x, tx) in t.iter().enumerate() {
                d[2 * x] = tx[2 * p];
                d[2 * x + 1] = tx[2 * p + 1];
            }
        }
    }
}

#[inline(always)]
fn add(a: &[i16; CH], b: &[i16; CH]) -> [i16; CH] {
    core::array::from_fn(|i| a[i].wrapping_add(b[i]))
}

#[inline(always)]
fn sub(a: &[i16; CH], b: &[i16; CH]) -> [i16; CH] {
    core::array::from_fn(|i| a[i].wrapping_sub(b[i]))
}

/// `Bᵀ d B` of one 4×4 tile `d[4a + b]` (channel vectors).
#[inline(always)]
fn input_transform(d: &[[i16; CH]; 16]) -> [[i16; CH]; 16] {
    let mut t = [[0i16; CH]; 16];
    for b in 0..4 {
        t[b] = sub(&d[b], &d[8 + b]);
        t[4 + b] = add(&d[4 + b], &d[8 + b]);
        t[8 + b] = sub(&d[8 + b], &d[4 + b]);
        t[12 + b] = sub(&d[4 + b], &d[12 + b]);
    }
    let mut v = [[0i16; CH]; 16];
    for i in 0..4 {
        let r = 4 * i;
        v[r] = sub(&t[r], &t[r + 2]);
        v[r + 1] = add(&t[r + 1], &t[r + 2]);
        v[r + 2] = sub(&t[r + 2], &t[r + 1]);
        v[r + 3] = sub(&t[r + 1], &t[r + 3]);
    }
    v
}

/// `−G' g G'ᵀ` of one 3×3 kernel `g[3ky + kx]` (channel vectors), `G' = 2G` (negated: the
/// products are subtracted, see [`mac_pair`]).
#[inline(always)]
fn weight_transform(g: &[[i16; CH]; 9]) -> [[i16; CH]; 16] {
    let mut t = [[0i16; CH]; 12];
    for kx in 0..3 {
        let (g0, g1, g2) = (&g[kx], &g[3 + kx], &g[6 + kx]);
        let s = add(g0, g2);
        t[kx] = add(g0, g0);
        t[3 + kx] = add(&s, g1);
        t[6 + kx] = sub(&s, g1);
        t[9 + kx] = add(g2, g2);
    }
    let mut u = [[0i16; CH]; 16];
    let zero = [0i16; CH];
    for i in 0..4 {
        let (t0, t1, t2) = (&t[3 * i], &t[3 * i + 1], &t[3 * i + 2]);
        let s = add(t0, t2);
        u[4 * i] = sub(&zero, &add(t0, t0));
        u[4 * i + 1] = sub(&sub(&zero, &s), t1);
        u[4 * i + 2] = sub(t1, &s);
        u[4 * i + 3] = sub(&zero, &add(t2, t2));
    }
    u
}

/// `Aᵀ M A` of one 4×4 product: the four outputs (×4), row-major.
#[inline(always)]
fn output_transform(m: &[i32; 16]) -> [i32; 4] {
    let r = |i: usize| -> [i32; 4] { core::array::from_fn(|j| m[4 * i + j]) };
    let (r0, r1, r2, r3) = (r(0), r(1), r(2), r(3));
    // Rows: z0 = R0 + R1 + R2, z1 = R1 − R2 − R3; then the same along each row.
    let z0: [i32; 4] = core::array::from_fn(|j| r0[j].wrapping_add(r1[j]).wrapping_add(r2[j]));
    let z1: [i32; 4] = core::array::from_fn(|j| r1[j].wrapping_sub(r2[j]).wrapping_sub(r3[j]));
    let col = |z: [i32; 4]| {
        [z[0].wrapping_add(z[1]).wrapping_add(z[2]), z[1].wrapping_sub(z[2]).wrapping_sub(z[3])]
    };
    let (y0, y1) = (col(z0), col(z1));
    [y0[0], y0[1], y1[0], y1[1]]
}

/// `a[ξ] −= Σ_l x[ξ][l] · w[ξ][l]`: one channel pair of one tile and one kernel.
///
/// LLVM's SLP vectoriser turns each `x0·w0 + x1·w1` into one lane of `pmaddwd`. The
/// subtraction is on purpose (the kernels are stored negated): with `a += …` LLVM reassociates
/// the sum into `(a + even) + odd` and the pairwise shape is lost.
#[inline(always)]
fn mac_pair(a: &mut [i32; 16], x: &[i16; 32], w: &[i16]) {
    let Ok(w) = <&[i16; 32]>::try_from(w) else { return };
    for k in 0..16 {
        let s = (x[2 * k] as i32)
            .wrapping_mul(w[2 * k] as i32)
            .wrapping_add((x[2 * k + 1] as i32).wrapping_mul(w[2 * k + 1] as i32));
        a[k] = a[k].wrapping_sub(s);
    }
}

/// Products of one transformed tile (`v`: `[p][ξ][2]`) with a group of four transformed
/// kernels (`u`: `[p][4][ξ][2]`), summed over the channel pairs `p` and transformed back:
/// `y[o]` are the four outputs (×4) of kernel `o`.
#[inline(always)]
fn gemm14(v: &[i16], u: &[i16]) -> [[i32; 4]; OG] {
    let mut a = [[0i32; 16]; OG];
    for (x, w) in v.chunks_exact(32).zip(u.chunks_exact(32 * OG)) {
        // An empty `asm` statement: keeps LLVM's loop vectoriser off this loop (it would
        // vectorise across channel pairs, with gathers), leaving it to the SLP vectoriser,
        // which keeps the 4 × 16 sums in registers.
        core::hint::black_box(());
        let Ok(x) = <&[i16; 32]>::try_from(x) else { continue };
        for (ao, wo) in a.iter_mut().zip(w.chunks_exact(32)) {
            mac_pair(ao, x, wo);
        }
    }
    let a = core::hint::black_box(a);
    core::array::from_fn(|i| output_transform(&a[i]))
}

/// Sign-extend int8 bytes into a channel vector (zeros past `src.len()`).
#[inline(always)]
fn widen(src: &[u8]) -> [i16; CH] {
    match <&[u8; CH]>::try_from(src) {
        Ok(s) => s.map(|b| b as i8 as i16),
        Err(_) => {
            let mut d = [0i16; CH];
            for (d, &b) in d.iter_mut().zip(src) {
                *d = b as i8 as i16;
            }
            d
        }
    }
}

/// Transform one 4×4 input tile (rows `2ty − 1 ..`, columns `2tx − 1 ..`; positions outside
/// the tensor read the padding values) into `dst`: channel pair `p` at `dst[32p ..][ξ][2]`.
#[inline(always)]
fn transform_tile(
    input: &[u8],
    iv: &View,
    padv: &[u8],
    ty: usize,
    tx: usize,
    dst: &mut [i16],
) -> Result<(), NnError> {
    let (cin, ps) = (iv.c, iv.pixel_stride);
    // Offset of each position's pixel; `usize::MAX` for padding.
    let mut base = [usize::MAX; 16];
    for (pos, b) in base.iter_mut().enumerate() {
        let (y, x) = ((2 * ty + pos / 4).wrapping_sub(1), (2 * tx + pos % 4).wrapping_sub(1));
        if y < iv.h && x < iv.w {
            *b = iv.off + (y * iv.w + x) * ps;
        }
    }
    for (ci, dst) in dst.chunks_mut(16 * CH).enumerate() {
        let (c0, c1) = (ci * CH, (ci * CH + CH).min(cin));
        let mut d = [[0i16; CH]; 16];
        for pos in 0..16 {
            let b = base[pos];
            let src = if b == usize::MAX { padv.get(c0..c1) } else { input.get(b + c0..b + c1) };
            d[pos] = widen(src.ok_or(NnError::Malformed)?);
        }
        store_pairs(dst, 32, &input_transform(&d));
    }
    Ok(())
}

/// The [`ChanQ`] records of a block of output channels, field by field (so that the
/// requantisation loop vectorises).
struct QSoa {
    bias: [i32; MAX_OB],
    m_pos: [i32; MAX_OB],
    m_neg: [i32; MAX_OB],
    sh_pos: [u8; MAX_OB],
    sh_neg: [u8; MAX_OB],
}

impl QSoa {
    #[inline(always)]
    fn new(q: &[ChanQ]) -> QSoa {
        let mut s = QSoa {
            bias: [0; MAX_OB],
            m_pos: [0; MAX_OB],
            m_neg: [0; MAX_OB],
            sh_pos: [0; MAX_OB],
            sh_neg: [0; MAX_OB],
        };
        for (i, r) in q.iter().take(MAX_OB).enumerate() {
            s.bias[i] = r.bias;
            s.m_pos[i] = r.m_pos;
            s.m_neg[i] = r.m_neg;
            s.sh_pos[i] = r.sh_pos;
            s.sh_neg[i] = r.sh_neg;
        }
        s
    }
}

/// `out[i] = finish(q[i], acc[i], zp_out)` for the channels of `out`.
#[inline(always)]
fn requant(out: &mut [u8], q: &QSoa, acc: &[i32; MAX_OB], zp_out: i8) {
    let n = out.len().min(MAX_OB);
    let (out, acc) = (&mut out[..n], &acc[..n]);
    let (b, mp, mn, sp, sn) = (&q.bias[..n], &q.m_pos[..n], &q.m_neg[..n], &q.sh_pos[..n], &q.sh_neg[..n]);
    for i in 0..n {
        let qi = ChanQ { bias: b[i], m_pos: mp[i], m_neg: mn[i], sh_pos: sp[i], sh_neg: sn[i] };
        out[i] = finish(&qi, acc[i], zp_out);
    }
}

/// Exact Winograd F(2×2, 3×3) convolution: same arguments as `ops::conv2d`, same output bytes
/// as `ops::conv_generic` for the geometries [`applies`] accepts. Never panics: any geometry
/// `applies` rejects, and any slice too short for its view, weights, records or padding
/// values, is [`NnError::Malformed`]. Like `conv_generic`, it does not check the records'
/// shifts (`ops::conv2d` does).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn conv3x3_winograd(
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
    if !applies(iv, ov, g) || !iv.fits(input.len()) || !ov.fits(output.len()) {
        return Err(NnError::Malformed);
    }
    let (cin, cout, h, w) = (iv.c, ov.c, ov.h, ov.w);
    let field = 9 * cin;
    let weights = cout.checked_mul(field).and_then(|n| weights.get(..n)).ok_or(NnError::Malformed)?;
    let padv = pad_values(pad, cin)?;
    let padv = padv.get(..cin).ok_or(NnError::Malformed)?;
    let np = cin.div_ceil(2);
    // Transformed data per tile / kernel: `np` pairs × 16 values of ξ × 2 channels.
    let tlen = 32 * np;
    let (nty, ntx) = (h.div_ceil(2), w.div_ceil(2));
    let ntiles = nty * ntx;
    // Output-channel blocks: as few as the buffer allows, in groups of four.
    let ob_max = ((U_BUF / tlen) / OG * OG).min(MAX_OB);
    let nblk = cout.div_ceil(ob_max);
    let ob = cout.div_ceil(nblk).next_multiple_of(OG).min(ob_max);

    let mut ubuf = [0i16; U_BUF];
    let mut vbuf = [0i16; V_BUF];
    let vbuf = vbuf.get_mut(..tlen).ok_or(NnError::Malformed)?;
    let mut q = [ChanQ::default(); MAX_OB];
    let mut ybuf = [[0i32; MAX_OB]; 4];
    let mut oc0 = 0;
    while oc0 < cout {
        let n = (cout - oc0).min(ob);
        let ng = n.div_ceil(OG);
        let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
        read_q(params, oc0, q)?;
        let qs = QSoa::new(q);
        // Transform the block's kernels: group `gi`, kernel `j` at `ubuf[gi·4·tlen ..][p][j]`.
        let ubuf = ubuf.get_mut(..ng * OG * tlen).ok_or(NnError::Malformed)?;
        for (gi, ug) in ubuf.chunks_exact_mut(OG * tlen).enumerate() {
            for j in 0..OG {
                let o = gi * OG + j;
                let ub = ug.get_mut(32 * j..).ok_or(NnError::Malformed)?;
                if o >= n {
                    for d in ub.chunks_mut(32 * OG) {
                        d.iter_mut().take(32).for_each(|e| *e = 0);
                    }
                    continue;
                }
                let wk = weights.get((oc0 + o) * field..(oc0 + o + 1) * field).ok_or(NnError::Malformed)?;
                for (ci, dst) in ub.chunks_mut(32 * OG * CH / 2).enumerate() {
                    let (c0, c1) = (ci * CH, (ci * CH + CH).min(cin));
                    let mut gk = [[0i16; CH]; 9];
                    for (tap, gt) in gk.iter_mut().enumerate() {
                        *gt = widen(wk.get(tap * cin + c0..tap * cin + c1).ok_or(NnError::Malformed)?);
                    }
                    store_pairs(dst, 32 * OG, &weight_transform(&gk));
                }
            }
        }
        let ubuf = &*ubuf;
        for t in 0..ntiles {
            let (ty, tx) = (t / ntx, t % ntx);
            transform_tile(input, iv, padv, ty, tx, vbuf)?;
            // Products and output transform, four kernels at a time.
            for (gi, ug) in ubuf.chunks_exact(OG * tlen).enumerate() {
                let y = gemm14(vbuf, ug);
                for (j, yj) in y.iter().enumerate() {
                    for (r, yr) in ybuf.iter_mut().enumerate() {
                        if let Some(e) = yr.get_mut(gi * OG + j) {
                            *e = yj[r] >> 2;
                        }
                    }
                }
            }
            // Requantisation of the tile's valid pixels.
            for (r, yr) in ybuf.iter().enumerate() {
                let (oy, ox) = (2 * ty + r / 2, 2 * tx + r % 2);
                if oy < h && ox < w {
                    let b = ov.off + (oy * w + ox) * ov.pixel_stride + oc0;
                    let out = output.get_mut(b..b + n).ok_or(NnError::Malformed)?;
                    requant(out, &qs, yr, zp_out);
                }
            }
        }
        oc0 += n;
    }
    Ok(())
}

/// Checks shared by the tests of both Winograd kernels (this one and the AVX2 one). Each takes
/// the kernel under test as `run`, with the arguments of [`super::ops::conv2d`].
#[cfg(test)]
pub(super) mod shared_tests {
    use super::super::blob::CHAN_REC;
    use super::super::ops::{conv_generic, ChanQ, ConvGeom, Pad, View};
    use super::super::testutil::Rng;
    use super::super::NnError;
    use super::applies;
    use std::format;
    use std::vec;
    use std::vec::Vec;

    /// A kernel under test, with the arguments of `ops::conv2d`.
    pub(in crate::nn) trait Run:
        FnMut(&[u8], &View, &mut [u8], &View, &ConvGeom, &[u8], &[u8], Pad<'_>, i8) -> Result<(), NnError>
    {
    }
    impl<F> Run for F where
        F: FnMut(&[u8], &View, &mut [u8], &View, &ConvGeom, &[u8], &[u8], Pad<'_>, i8) -> Result<(), NnError>
    {
    }

    fn geom() -> ConvGeom {
        ConvGeom { k: 3, stride: 1, pad: 1, groups: 1 }
    }

    /// Run the kernel and `conv_generic` on the same data and compare every byte of the output
    /// buffers, including those outside the output view.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::nn) fn compare(
        mut run: impl Run,
        input: &[u8],
        iv: &View,
        ov: &View,
        out_len: usize,
        wts: &[u8],
        params: &[u8],
        pad: Pad<'_>,
        zp: i8,
        what: &str,
    ) {
        assert!(applies(iv, ov, &geom()), "{what}");
        let mut got = vec![0x55u8; out_len];
        let mut want = vec![0x55u8; out_len];
        run(input, iv, &mut got, ov, &geom(), wts, params, pad, zp).unwrap();
        conv_generic(input, iv, &mut want, ov, &geom(), wts, params, pad, zp).unwrap();
        assert_eq!(got, want, "{what}");
    }

    /// One random case compared with `conv_generic`: tensors inside wider buffers (`gap` extra
    /// bytes between pixels, and up to 3 before the first; the input ends exactly at the view's
    /// last byte), random data with int8 extremes, either kind of padding, requantisation
    /// records with any shifts or (`short`) shifts of at least 33.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::nn) fn check(
        run: impl Run,
        (h, w, cin, cout): (usize, usize, usize, usize),
        gap: [usize; 2],
        per_chan: bool,
        short: bool,
        seed: u32,
    ) {
        let mut r = Rng(seed);
        let (ips, ioff) = (cin + gap[0], gap[0].min(3));
        let (ops_, ooff) = (cout + gap[1], gap[1].min(3));
        let iv = View { h, w, c: cin, pixel_stride: ips, off: ioff };
        let ov = View { h, w, c: cout, pixel_stride: ops_, off: ooff };
        let input: Vec<u8> = (0..(h * w - 1) * ips + ioff + cin).map(|_| r.byte()).collect();
        let wts: Vec<u8> = (0..cout * 9 * cin).map(|_| r.byte()).collect();
        let params: Vec<u8> = (0..cout).flat_map(|_| r.chan_q(short).write()).collect();
        let padv: Vec<u8> = (0..cin).map(|_| r.byte()).collect();
        let pad = if per_chan { Pad::PerChannel(&padv) } else { Pad::Zp(r.byte() as i8) };
        let zp = r.byte() as i8;
        let what = format!("{h}x{w} {cin}->{cout} gap {gap:?} per_chan {per_chan} short {short} seed {seed}");
        compare(run, &input, &iv, &ov, h * w * ops_ + ooff + 1, &wts, &params, pad, zp, &what);
    }

    /// The face model's Winograd shapes at reduced heights through [`check`], with either kind
    /// of padding and requantisation records.
    pub(in crate::nn) fn check_model_shapes(mut run: impl Run) {
        // The model's shapes at reduced heights (full widths, both parities of the height),
        // some writing channel slices of a 64-channel concat tensor.
        let mut seed = 1;
        for &(h, w, cin, cout, ops_) in &[
            (5, 40, 64, 64, 64),
            (4, 40, 64, 32, 64),
            (3, 40, 64, 16, 16),
            (6, 40, 16, 16, 64),
            (5, 40, 16, 16, 16),
            (4, 20, 64, 64, 64),
            (3, 20, 64, 32, 64),
            (7, 20, 64, 16, 16),
            (16, 20, 16, 16, 64),
            (8, 10, 64, 32, 64),
            (8, 10, 64, 16, 16),
            (8, 10, 16, 16, 64),
        ] {
            for (per_chan, short) in [(false, true), (true, true), (true, false)] {
                check(&mut run, (h, w, cin, cout), [0, ops_ - cout], per_chan, short, seed);
                seed += 1;
            }
        }
    }

    /// Every input and padding value `x`, every weight `wv`: each output's accumulator is
    /// 9 · cin · x · wv, up to 9 · 64 · 128 · 128 in magnitude (`cin` = `MAX_CIN`), the largest
    /// the kernels can see. Biases −acc + k with unit multipliers give outputs zp + k: any error
    /// shows.
    pub(in crate::nn) fn assert_extreme_accumulators_exact(mut run: impl Run) {
        let (h, w, cin, cout) = (3, 5, super::MAX_CIN, 7);
        let iv = View { h, w, c: cin, pixel_stride: cin, off: 0 };
        let ov = View { h, w, c: cout, pixel_stride: cout, off: 0 };
        for (x, wv) in [(-128i8, -128i8), (-128, 127), (127, -128), (127, 127), (-128, 1), (0, -128)] {
            let acc = 9 * cin as i32 * x as i32 * wv as i32;
            let mut params = Vec::new();
            for k in -3..=3 {
                let q = ChanQ { bias: k - acc, m_pos: 1, m_neg: 1, sh_pos: 0, sh_neg: 0 };
                params.extend_from_slice(&q.write());
            }
            let input = vec![x as u8; h * w * cin];
            let wts = vec![wv as u8; cout * 9 * cin];
            compare(&mut run, &input, &iv, &ov, h * w * cout, &wts, &params, Pad::Zp(x), 5, "extremes");
            let mut out = vec![0u8; h * w * cout];
            run(&input, &iv, &mut out, &ov, &geom(), &wts, &params, Pad::Zp(x), 5).unwrap();
            for px in out.chunks_exact(cout) {
                assert_eq!(px.iter().map(|&b| b as i8).collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7, 8]);
            }
        }
    }

    /// The argument checks both Winograd kernels (this one and the AVX2 one) must make: `run`
    /// (a kernel with `zp_out` fixed) must accept a consistent small case and reject, with
    /// [`NnError::Malformed`], a short input, output, weights, records or padding, stride 2, a
    /// pixel stride below the channel count, and views whose extent overflows.
    pub(in crate::nn) fn assert_rejects_inconsistent_arguments(
        mut run: impl FnMut(
            &[u8],
            &View,
            &mut [u8],
            &View,
            &ConvGeom,
            &[u8],
            &[u8],
            Pad<'_>,
        ) -> Result<(), NnError>,
    ) {
        let iv = View { h: 4, w: 3, c: 2, pixel_stride: 2, off: 0 };
        let ov = View { h: 4, w: 3, c: 3, pixel_stride: 3, off: 0 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 40, sh_neg: 40 }.write();
        let params: Vec<u8> = q.iter().cycle().take(3 * CHAN_REC).copied().collect();
        let wts = [1u8; 54];
        let g = ConvGeom { k: 3, stride: 1, pad: 1, groups: 1 };
        let mut out = [0u8; 36];
        assert_eq!(run(&[0; 24], &iv, &mut out, &ov, &g, &wts, &params, Pad::Zp(0)), Ok(()));
        let e = Err(NnError::Malformed);
        assert_eq!(run(&[0; 23], &iv, &mut out, &ov, &g, &wts, &params, Pad::Zp(0)), e, "short input");
        assert_eq!(run(&[0; 24], &iv, &mut out[..35], &ov, &g, &wts, &params, Pad::Zp(0)), e, "short output");
        assert_eq!(
            run(&[0; 24], &iv, &mut out, &ov, &g, &wts[..53], &params, Pad::Zp(0)),
            e,
            "short weights"
        );
        assert_eq!(run(&[0; 24], &iv, &mut out, &ov, &g, &wts, &params[..47], Pad::Zp(0)), e, "short params");
        let short_pad = Pad::PerChannel(&[0]);
        assert_eq!(run(&[0; 24], &iv, &mut out, &ov, &g, &wts, &params, short_pad), e, "short pad");
        let g2 = ConvGeom { stride: 2, ..g };
        assert_eq!(run(&[0; 24], &iv, &mut out, &ov, &g2, &wts, &params, Pad::Zp(0)), e, "stride 2");
        let narrow = View { pixel_stride: 1, ..iv };
        assert_eq!(
            run(&[0; 24], &narrow, &mut out, &ov, &g, &wts, &params, Pad::Zp(0)),
            e,
            "pixel stride < c"
        );
        let far = View { off: usize::MAX - 4, ..iv };
        assert_eq!(run(&[0; 24], &far, &mut out, &ov, &g, &wts, &params, Pad::Zp(0)), e, "offset overflow");
        let huge = View { h: usize::MAX / 2, ..ov };
        assert_eq!(run(&[0; 24], &iv, &mut out, &huge, &g, &wts, &params, Pad::Zp(0)), e, "size overflow");
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::Rng;
    use super::*;
    use proptest::prelude::*;

    /// The portable kernel, as the shared checks call it.
    #[allow(clippy::too_many_arguments)]
    fn run(
        input: &[u8],
        iv: &View,
        output: &mut [u8],
        ov: &View,
        g: &ConvGeom,
        w: &[u8],
        p: &[u8],
        pad: Pad<'_>,
        zp: i8,
    ) -> Result<(), NnError> {
        conv3x3_winograd(input, iv, output, ov, g, w, p, pad, zp)
    }

    /// One random case (any requantisation shifts), see [`shared_tests::check`].
    fn check(h: usize, w: usize, cin: usize, cout: usize, gap: [usize; 2], per_chan: bool, seed: u32) {
        shared_tests::check(run, (h, w, cin, cout), gap, per_chan, false, seed);
    }

    #[test]
    fn matches_generic_on_model_shapes() {
        shared_tests::check_model_shapes(run);
    }

    #[test]
    fn matches_generic_on_odd_sizes_channel_counts_and_views() {
        let mut r = Rng(7);
        for case in 0..150u32 {
            let (h, w) = match case % 5 {
                0 => (1, 1 + r.next() as usize % 12),
                1 => (1 + r.next() as usize % 12, 1),
                _ => (1 + r.next() as usize % 9, 1 + r.next() as usize % 9),
            };
            let cin = match case % 4 {
                0 => [1, 2, 3, 15, 16, 17, 31, 32, 33, 48, 63, 64][r.next() as usize % 12],
                _ => 1 + r.next() as usize % MAX_CIN,
            };
            // Up to several output-channel blocks (16 channels per block at 64 input channels,
            // 64 at 16 or fewer), and block sizes that are not multiples of 4.
            let cout = 1 + r.next() as usize % 70;
            let gap = if case % 3 == 0 { [0, 0] } else { [r.next() as usize % 5, r.next() as usize % 4] };
            check(h, w, cin, cout, gap, case % 2 == 1, case);
        }
    }

    #[test]
    fn extreme_accumulators_are_exact() {
        shared_tests::assert_extreme_accumulators_exact(run);
    }

    #[test]
    fn applies_only_to_dense_3x3_stride_1_pad_1() {
        let v = |c| View { h: 8, w: 6, c, pixel_stride: c, off: 0 };
        let g = |k, stride, pad, groups| ConvGeom { k, stride, pad, groups };
        assert!(applies(&v(16), &v(16), &g(3, 1, 1, 1)));
        assert!(applies(&v(1), &v(1), &g(3, 1, 1, 1)));
        assert!(applies(&v(MAX_CIN), &v(200), &g(3, 1, 1, 1)));
        assert!(!applies(&v(MAX_CIN + 1), &v(16), &g(3, 1, 1, 1)), "too many input channels");
        assert!(!applies(&v(16), &View { h: 4, w: 3, ..v(16) }, &g(3, 2, 1, 1)), "stride 2");
        assert!(!applies(&v(16), &View { h: 6, w: 4, ..v(16) }, &g(3, 1, 0, 1)), "pad 0");
        assert!(!applies(&v(16), &v(16), &g(1, 1, 0, 1)), "1x1");
        assert!(!applies(&v(16), &v(16), &g(5, 1, 2, 1)), "5x5");
        assert!(!applies(&v(16), &v(16), &g(3, 1, 1, 2)), "grouped");
        assert!(!applies(&v(16), &v(16), &g(3, 1, 1, 16)), "depthwise");
        assert!(!applies(&v(16), &View { h: 7, ..v(16) }, &g(3, 1, 1, 1)), "output height");
        assert!(!applies(&v(16), &View { w: 7, ..v(16) }, &g(3, 1, 1, 1)), "output width");
        assert!(!applies(&View { h: 0, ..v(16) }, &View { h: 0, ..v(16) }, &g(3, 1, 1, 1)), "empty");
        assert!(!applies(&v(0), &v(16), &g(3, 1, 1, 1)), "no input channels");
        assert!(!applies(&v(16), &v(0), &g(3, 1, 1, 1)), "no output channels");
    }

    #[test]
    fn inconsistent_arguments_are_errors() {
        shared_tests::assert_rejects_inconsistent_arguments(|inp, iv, out, ov, g, w, p, pad| {
            run(inp, iv, out, ov, g, w, p, pad, 0)
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_generic(
            h in 1usize..10,
            w in 1usize..10,
            cin in prop_oneof![1usize..=MAX_CIN, Just(16usize), Just(MAX_CIN)],
            cout in 1usize..40,
            gap in (0usize..4, 0usize..4),
            per_chan: bool,
            seed: u32,
        ) {
            check(h, w, cin, cout, [gap.0, gap.1], per_chan, seed);
        }
    }
}
