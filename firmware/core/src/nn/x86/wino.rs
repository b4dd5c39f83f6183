//! Winograd convolution with AVX2: F(4×2, 3×3), i.e. F(4, 3) along the rows and F(2, 3)
//! along the columns, exact in integers.
//!
//! # The arithmetic
//!
//! A *tile* is 4 rows × 2 columns of outputs; it reads a 6 × 4 window `d` of the input (rows
//! `4ty − 1 ..= 4ty + 4`, columns `2tx − 1 ..= 2tx + 2`, the padding values outside the
//! tensor). With Lavin's F(4, 3) matrices (interpolation points 0, ±1, ±2) scaled to integers
//! along the rows and those of [`crate::nn::winograd`] (F(2, 3)) along the columns,
//!
//! ```text
//!  B₄ᵀ = [4  0 −5  0  1  0]   G₄' = 24·G₄ = [ 6  0  0]   A₄ᵀ = [1  1  1  1  1  0]
//!        [0 −4 −4  1  1  0]                 [−4 −4 −4]         [0  1 −1  2 −2  0]
//!        [0  4 −4 −1  1  0]                 [−4  4 −4]         [0  1  1  4  4  0]
//!        [0 −2 −1  2  1  0]                 [ 1  2  4]         [0  1 −1  8 −8  1]
//!        [0  2 −1 −2  1  0]                 [ 1 −2  4]
//!        [0  4  0 −5  0  1]                 [ 0  0 24]
//! ```
//!
//! `V = B₄ᵀ·d·B₂` (6 × 4, `|V| ≤ 10·2·128 = 2560`) per input channel and
//! `U' = G₄'·g·G₂'ᵀ = 48·G₄·g·G₂ᵀ` (6 × 4, `|U'| ≤ 24·3·128 = 9216`) per (output, input)
//! channel are exact in `i16`; at each of the 24 positions ξ of the transform domain
//! `M_ξ[tile][oc] = Σ_c V_ξ[tile][c]·U'_ξ[oc][c]` (`vpmaddwd`: the pair sums are exact, the
//! rest wraps in `i32`), then `Y = A₄ᵀ·M·A₂ = 48·acc` modulo 2³², `acc` the exact sum of the
//! direct convolution's products. Since `|48·acc| ≤ 48·9·64·128·128 < 2³¹` (`cin ≤ 64`),
//! `Y` *is* `48·acc`: `Y >> 4 = 3·acc` exactly, and `acc` is that times the inverse of 3
//! modulo 2³² (`vpmulld`). 24 products per 8 outputs instead of F(2×2, 3×3)'s 16 per 4.
//!
//! # Blocking
//!
//! - Output channels go in blocks of 16 ([`OB`]); the transformed weights of as many blocks
//!   as fit in 96 KiB are held at a time (two at 64 input channels, four at 32 or fewer),
//!   packed as `[block][ξ][pair][16 channels][2]` `i16`: each block is transformed with
//!   vectors along the input channels, then transposed (8×8 `i32` transposes) into that layout.
//! - Tiles go in groups of [`R`] = 5 along a row of tiles (5, 10 and 20 tiles in the model's
//!   rows). A group's input window (6 rows × `2R + 2` pixels) is read in place: one byte
//!   slice per pixel, the padding values outside the image, a zero-padded copy for the last
//!   pixels of the input; for each vector of 16 channels, the column transforms `B₄ᵀ·d` of the
//!   window's columns (each shared by the two tiles that read it), then the row transforms
//!   give each tile's 24 positions, stored as `[ξ][tile][pair]` `i32` pairs (15 KiB at 64
//!   channels). Bytes past `cin` in a pixel's last vector are whatever follows it in the
//!   input: their weights are zero.
//! - For each block and each ξ the micro-kernel [`gemm`] keeps 5 tiles × 16 channels of sums
//!   in 10 registers (per channel pair: 2 weight loads, 5 broadcasts, 10 `vpmaddwd`); then
//!   `A₄ᵀ·M·A₂`, the division by 48 and the requantisation of the group's pixels, both halves
//!   of a block packed into one 16-byte store per pixel.
//!
//! The input is transformed once per chunk of blocks (twice at 64 → 64 channels). With 48 KiB
//! of weights it was four times, about a quarter of the time at 64 → 64 channels (the products
//! 55 %, the output stage 13 %); 96 KiB took the 40×32, 64 → 64 layer from 0.353 to 0.304 ms
//! and 64 → 32 from 0.177 to 0.153 (best of 300, alternately; 192 KiB gained nothing more). The micro-kernel runs at about 7 cycles per channel pair (10 `vpmaddwd`, 10
//! `vpaddd`, 5 `vpbroadcastd`, which on Zen 3 also takes a vector ALU slot: 6.25 cycles at 4
//! vector ops per cycle, the bound for any number of tiles).
//!
//! Measured (best of 300, alternately, 320×256 face model, AMD EPYC Zen 3), against
//! F(2×2, 3×3) with groups of 4 tiles: 40×32, 64 → 64 channels 0.363 → 0.351 ms; 64 → 32
//! 0.181 → 0.176; 64 → 16 0.098 → 0.088; 16 → 16 0.035 → 0.034; 20×16, 64 → 64 0.111 →
//! 0.095, 64 → 32 0.056 → 0.048, 64 → 16 0.031 → 0.025.
//!
//! Stack: about 128 KiB (weights 96 KiB, transformed group 15 KiB, products 7.5 KiB, which
//! also hold the weight transform's scratch, copies of the input's last pixels 4.5 KiB,
//! column transforms 2.3 KiB, pixel slices 1.1 KiB, requantisation constants 2 KiB). This
//! code runs only on x86-64 hosts, whose threads have at least Rust's default 2 MiB of stack;
//! the device's kernels are the portable ones.

use core::arch::x86_64::__m256i;

use pulp::x86::V3;

use super::{put, requant8, to_bytes, with_avx2, ConvArgs, Kernel, QBlock, OB};
use crate::nn::blob::CHAN_REC;
use crate::nn::ops::{pad_values, read_q, ChanQ, MAX_PAD};
use crate::nn::winograd::MAX_CIN;
use crate::nn::NnError;

/// Tiles per group (rows of the micro-kernel).
const R: usize = 5;
/// Positions of the transform domain (6 rows × 4 columns), `ξ = 4·row + column`.
const NX: usize = 24;
/// Transformed-weight rows held at a time (96 KiB of `[i16; 32]`): positions × pairs × blocks.
const WU: usize = 1536;
/// Most blocks of transformed weights held at a time (a bound on the requantisation constants
/// held).
const NB_MAX: usize = 4;
/// Channel pairs of [`MAX_CIN`] channels, rounded up to whole vectors of 16 channels.
const MAX_KP: usize = MAX_NCH * 8;
/// Vectors of 16 channels of [`MAX_CIN`] channels.
const MAX_NCH: usize = MAX_CIN.div_ceil(16);
/// Window columns of a group.
const WC: usize = 2 * R + 2;
/// The inverse of 3 modulo 2³².
const INV3: i32 = 0xAAAA_AAABu32 as i32;
const _: () = assert!(NX * MAX_KP <= WU && MAX_CIN <= MAX_PAD && 8 * NX <= NX * 2 * R);
// Exactness: |48·acc| ≤ 48 · 9 · cin · 128 · 128 < 2³¹ (see the module docs).
const _: () = assert!(48 * 9 * (MAX_CIN as u64) * 128 * 128 < (1u64 << 31));

/// `G₄'·g·G₂'ᵀ` for 16 input channels at once (`g[3·ky + kx]`; `u[4·i + j]`): the Winograd
/// weights times 48, exact in `i16` (|each| ≤ 24·3·128).
#[inline(always)]
fn weight_transform(s: V3, g: &[__m256i; 9]) -> [__m256i; NX] {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi16(x, y), |x, y| a._mm256_sub_epi16(x, y));
    let mul = |x, k: i16| a._mm256_mullo_epi16(x, s.avx._mm256_set1_epi16(k));
    let dbl = |x| a._mm256_add_epi16(x, x);
    // Rows: t = G₄'·g (6×3).
    let mut t = [s.avx._mm256_setzero_si256(); 18];
    for j in 0..3 {
        let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
        let e = add(g0, g2);
        let f = add(g0, mul(g2, 4));
        t[j] = mul(g0, 6);
        t[3 + j] = mul(add(e, g1), -4);
        t[6 + j] = mul(sub(e, g1), -4);
        t[9 + j] = add(f, dbl(g1));
        t[12 + j] = sub(f, dbl(g1));
        t[15 + j] = mul(g2, 24);
    }
    // Columns: u = t·G₂'ᵀ (6×4).
    let mut u = [s.avx._mm256_setzero_si256(); NX];
    for i in 0..6 {
        let (t0, t1, t2) = (t[3 * i], t[3 * i + 1], t[3 * i + 2]);
        let e = add(t0, t2);
        u[4 * i] = dbl(t0);
        u[4 * i + 1] = add(e, t1);
        u[4 * i + 2] = sub(e, t1);
        u[4 * i + 3] = dbl(t2);
    }
    u
}

/// Transpose 8×8 `i32` lanes: `out[j]` lane `i` = `r[i]` lane `j`.
#[inline(always)]
fn transpose8(s: V3, r: [__m256i; 8]) -> [__m256i; 8] {
    let a = s.avx2;
    let t0 = a._mm256_unpacklo_epi32(r[0], r[1]);
    let t1 = a._mm256_unpackhi_epi32(r[0], r[1]);
    let t2 = a._mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = a._mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = a._mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = a._mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = a._mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = a._mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = a._mm256_unpacklo_epi64(t0, t2);
    let u1 = a._mm256_unpackhi_epi64(t0, t2);
    let u2 = a._mm256_unpacklo_epi64(t1, t3);
    let u3 = a._mm256_unpackhi_epi64(t1, t3);
    let u4 = a._mm256_unpacklo_epi64(t4, t6);
    let u5 = a._mm256_unpackhi_epi64(t4, t6);
    let u6 = a._mm256_unpacklo_epi64(t5, t7);
    let u7 = a._mm256_unpackhi_epi64(t5, t7);
    [
        a._mm256_permute2x128_si256::<0x20>(u0, u4),
        a._mm256_permute2x128_si256::<0x20>(u1, u5),
        a._mm256_permute2x128_si256::<0x20>(u2, u6),
        a._mm256_permute2x128_si256::<0x20>(u3, u7),
        a._mm256_permute2x128_si256::<0x31>(u0, u4),
        a._mm256_permute2x128_si256::<0x31>(u1, u5),
        a._mm256_permute2x128_si256::<0x31>(u2, u6),
        a._mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// `A₄ᵀ·m·A₂` of one 6×4 block of `i32` lanes (`m[4·i + j]`),
/// `A₂ᵀ = [[1,1,1,0],[0,1,−1,−1]]`: the 4×2 outputs (row-major), wrapping.
#[inline(always)]
fn output_transform(s: V3, m: &[__m256i; NX]) -> [__m256i; 8] {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi32(x, y), |x, y| a._mm256_sub_epi32(x, y));
    // Columns: p = m·A₂ (6×2).
    let mut p = [s.avx._mm256_setzero_si256(); 12];
    for i in 0..6 {
        let (m0, m1, m2, m3) = (m[4 * i], m[4 * i + 1], m[4 * i + 2], m[4 * i + 3]);
        p[2 * i] = add(add(m0, m1), m2);
        p[2 * i + 1] = sub(sub(m1, m2), m3);
    }
    // Rows: y = A₄ᵀ·p (4×2).
    let mut y = [s.avx._mm256_setzero_si256(); 8];
    for k in 0..2 {
        let q = |i: usize| p[2 * i + k];
        let (s12, d12) = (add(q(1), q(2)), sub(q(1), q(2)));
        let (s34, d34) = (add(q(3), q(4)), sub(q(3), q(4)));
        y[k] = add(add(q(0), s12), s34);
        y[2 + k] = add(d12, a._mm256_slli_epi32::<1>(d34));
        y[4 + k] = add(s12, a._mm256_slli_epi32::<2>(s34));
        y[6 + k] = add(add(d12, a._mm256_slli_epi32::<3>(d34)), q(5));
    }
    y
}

/// Load 16 int8 channels `c0..c0+16` of a pixel (or of the padding), zero past `c`, as `i16`.
#[inline(always)]
fn load16(s: V3, px: &[u8], c0: usize) -> __m256i {
    s.avx2._mm256_cvtepi8_epi16(pulp::cast(bytes16(px, c0)))
}

/// Bytes `c0..c0+16` of `px`, zero past its end.
#[inline(always)]
fn bytes16(px: &[u8], c0: usize) -> [u8; 16] {
    if let Some(b) = px.get(c0..c0 + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok()) {
        return *b;
    }
    let mut b = [0u8; 16];
    let src = px.get(c0..).unwrap_or(&[]);
    let n = src.len().min(16);
    if let (Some(d), Some(v)) = (b.get_mut(..n), src.get(..n)) {
        d.copy_from_slice(v);
    }
    b
}

/// The micro-kernel: `R` tiles (rows of `KP` pairs) × 16 channels (packed pairs), or only the
/// first 8 channels when `NV` is 1. Two pairs per loop step.
#[inline(always)]
fn gemm<const KP: usize, const NV: usize>(
    s: V3,
    x: &[[i32; KP]; R],
    w: &[[i16; 2 * OB]; KP],
) -> [[__m256i; 2]; R] {
    let (avx, avx2) = (s.avx, s.avx2);
    let z = avx._mm256_setzero_si256();
    let mut acc = [[z; 2]; R];
    for i2 in 0..KP / 2 {
        for u in 0..2 {
            let i = 2 * i2 + u;
            let wv: [__m256i; 2] = pulp::cast(w[i]);
            for (a, xr) in acc.iter_mut().zip(x) {
                let b = avx._mm256_set1_epi32(xr[i]);
                a[0] = avx2._mm256_add_epi32(a[0], avx2._mm256_madd_epi16(b, wv[0]));
                if NV == 2 {
                    a[1] = avx2._mm256_add_epi32(a[1], avx2._mm256_madd_epi16(b, wv[1]));
                }
            }
        }
    }
    acc
}

/// Winograd F(4×2, 3×3) convolution with AVX2 (where [`crate::nn::winograd::applies`]), see
/// the module docs. Bit-identical to the direct convolution: it computes the same integer sum
/// of products over the padded input.
pub(in crate::nn) fn conv3x3_winograd(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Wi;
    impl Kernel for Wi {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            match a.iv.c.div_ceil(16) {
                1 => wino_impl::<8>(s, a),
                2 => wino_impl::<16>(s, a),
                3 => wino_impl::<24>(s, a),
                4 => wino_impl::<32>(s, a),
                _ => Err(NnError::Malformed),
            }
        }
    }
    with_avx2::<Wi>(s, a)
}

/// The kernel for `KP / 8` vectors of 16 input channels (`KP` pairs).
#[inline(always)]
fn wino_impl<const KP: usize>(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out } = a;
    let (cin, cout) = (iv.c, ov.c);
    let nch = KP / 8;
    if !crate::nn::winograd::applies(iv, ov, g)
        || !iv.fits(input.len())
        || !ov.fits(output.len())
        || cin.div_ceil(16) != nch
        || KP > MAX_KP
    {
        return Err(NnError::Malformed);
    }
    let (Some(wlen), Some(plen)) = (cout.checked_mul(9 * cin), cout.checked_mul(CHAN_REC)) else {
        return Err(NnError::Malformed);
    };
    if weights.len() < wlen || params.len() < plen {
        return Err(NnError::Malformed);
    }
    let padv = pad_values(pad, cin)?;
    let z = s.avx._mm256_setzero_si256();
    // Transformed weights: [block][ξ][KP] rows of [i16; 32] (16 channels × a pair).
    let mut ubuf = [[0i16; 2 * OB]; WU];
    // A transformed group: [ξ][tile][KP] pairs.
    let mut vbuf = [[[0i32; KP]; R]; NX];
    // Copies of the last pixels of the input, and the column transforms of a window.
    let mut tail: Tail = [[0; 2 * MAX_KP]; 6 * WC];
    let mut cols: Cols = [[z; 6]; WC];
    // Products of a group, [ξ][tile][half] (flat); also the weight transform's scratch.
    let mut mbuf = [z; NX * 2 * R];
    let nblocks = cout.div_ceil(OB);
    let per_chunk = (WU / (NX * KP)).clamp(1, NB_MAX);
    let zpv = s.avx._mm256_set1_epi32(zp_out as i32);
    let (th, tw) = (ov.h.div_ceil(4), ov.w.div_ceil(2));
    let mut q = [ChanQ::default(); OB];
    let mut qbs = [QBlock::new(&[]); NB_MAX];
    let mut b0 = 0;
    while b0 < nblocks {
        let nb = (nblocks - b0).min(per_chunk);
        let ub = ubuf.get_mut(..nb * NX * KP).ok_or(NnError::Malformed)?;
        for (bi, blk) in ub.chunks_exact_mut(NX * KP).enumerate() {
            let oc0 = (b0 + bi) * OB;
            pack_block::<KP>(s, blk, weights, cin, cout, oc0, &mut mbuf)?;
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
                let nt = (tw - tx0).min(R);
                let src = window_sources::<KP>(input, iv, &padv, ty, tx0, &mut tail);
                transform_group::<KP>(s, &src, &mut cols, &mut vbuf);
                for (bi, (ublk, qb)) in ub.chunks_exact(NX * KP).zip(&qbs).enumerate() {
                    let oc0 = (b0 + bi) * OB;
                    let n = (cout - oc0).min(OB);
                    let half = n <= OB / 2;
                    for xi in 0..NX {
                        let uw = ublk.get(xi * KP..(xi + 1) * KP).ok_or(NnError::Malformed)?;
                        let w = <&[[i16; 2 * OB]; KP]>::try_from(uw).map_err(|_| NnError::Malformed)?;
                        let x = vbuf.get(xi).ok_or(NnError::Malformed)?;
                        let m = if half { gemm::<KP, 1>(s, x, w) } else { gemm::<KP, 2>(s, x, w) };
                        let mx = mbuf.get_mut(xi * 2 * R..(xi + 1) * 2 * R).ok_or(NnError::Malformed)?;
                        mx.copy_from_slice(&pulp::cast::<_, [__m256i; 2 * R]>(m));
                    }
                    for (j, tx) in (tx0..tx0 + nt).enumerate() {
                        let y = output_pixels(s, &mbuf, j, qb, half, zpv);
                        for (yi, b) in y.iter().enumerate() {
                            let (oy, ox) = (4 * ty + yi / 2, 2 * tx + yi % 2);
                            if oy < ov.h && ox < ov.w {
                                let ob = ov.off + (oy * ov.w + ox) * ov.pixel_stride + oc0;
                                put(output, ob, b, n)?;
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

/// The eight output pixels (row-major, 4 rows × 2 columns) of tile `j` of a group's products
/// `m[ξ][tile][half]` (flat): `A₄ᵀ·M·A₂`, the division by 48 and the requantisation, channels
/// 0–15 (0–7 when `half`) as bytes.
#[inline(always)]
fn output_pixels(
    s: V3,
    m: &[__m256i; NX * 2 * R],
    j: usize,
    qb: &QBlock,
    half: bool,
    zpv: __m256i,
) -> [[u8; 16]; 8] {
    let (avx, avx2) = (s.avx, s.avx2);
    let z = avx._mm256_setzero_si256();
    let inv3 = avx._mm256_set1_epi32(INV3);
    let mut r = [[z; 8]; 2];
    for (h, rh) in r.iter_mut().enumerate().take(if half { 1 } else { 2 }) {
        let mut mv = [z; NX];
        for (xi, d) in mv.iter_mut().enumerate() {
            *d = m.get(xi * 2 * R + 2 * j + h).copied().unwrap_or(z);
        }
        let y = output_transform(s, &mv);
        for (rv, yv) in rh.iter_mut().zip(y) {
            // y = 48·acc exactly: y >> 4 = 3·acc, times 3⁻¹ mod 2³².
            let acc = avx2._mm256_mullo_epi32(avx2._mm256_srai_epi32::<4>(yv), inv3);
            *rv = requant8(s, acc, qb, h, zpv);
        }
    }
    let mut b = [[0u8; 16]; 8];
    for (yi, by) in b.iter_mut().enumerate() {
        *by = to_bytes(s, r[0][yi], r[1][yi]);
    }
    b
}

/// Transform and pack the weights of output channels `oc0 .. oc0 + 16` (zero past `cout`, and
/// past `cin`) into `blk`: row `ξ·KP + p`, lanes `2l, 2l + 1` = `U'_ξ` of channel `oc0 + l`
/// and input channels `2p, 2p + 1`. `tmp` is scratch (`[cout][ξ]` of eight channels).
#[inline(always)]
fn pack_block<const KP: usize>(
    s: V3,
    blk: &mut [[i16; 2 * OB]],
    weights: &[u8],
    cin: usize,
    cout: usize,
    oc0: usize,
    tmp: &mut [__m256i; NX * 2 * R],
) -> Result<(), NnError> {
    let z = s.avx._mm256_setzero_si256();
    for ch in 0..KP / 8 {
        for h in 0..2 {
            for (l, u) in tmp.chunks_exact_mut(NX).enumerate().take(8) {
                let oc = oc0 + 8 * h + l;
                if oc >= cout {
                    u.fill(z);
                    continue;
                }
                let w = weights.get(oc * 9 * cin..(oc + 1) * 9 * cin).ok_or(NnError::Malformed)?;
                let mut gv = [z; 9];
                for (t, gt) in gv.iter_mut().enumerate() {
                    *gt = load16(s, w.get(t * cin..(t + 1) * cin).ok_or(NnError::Malformed)?, ch * 16);
                }
                u.copy_from_slice(&weight_transform(s, &gv));
            }
            for xi in 0..NX {
                let col = |l: usize| tmp.get(NX * l + xi).copied().unwrap_or(z);
                let rows = transpose8(s, [col(0), col(1), col(2), col(3), col(4), col(5), col(6), col(7)]);
                let at = xi * KP + ch * 8;
                let dst = blk.get_mut(at..at + 8).ok_or(NnError::Malformed)?;
                for (d, v) in dst.iter_mut().zip(rows) {
                    let lanes: [i16; OB] = pulp::cast(v);
                    if let Some(d) = d.get_mut(OB * h..OB * h + OB) {
                        d.copy_from_slice(&lanes);
                    }
                }
            }
        }
    }
    Ok(())
}

/// The byte sources of the window of tiles `tx0 .. tx0 + R` of tile row `ty` (rows
/// `4ty − 1 ..= 4ty + 4`, columns `2tx0 − 1 ..= 2tx0 + 2R`), `src[row·WC + column]`, each at
/// least `2·KP` bytes: the pixel in `input` (channels past `cin` are the bytes that follow it:
/// their weights are zero), the padding values outside the image, or, for the last pixels of
/// `input`, a copy of their `cin` bytes in `tail`, then zeros.
#[inline(always)]
fn window_sources<'a, const KP: usize>(
    input: &'a [u8],
    iv: &crate::nn::ops::View,
    padv: &'a [u8; MAX_PAD],
    ty: usize,
    tx0: usize,
    tail: &'a mut Tail,
) -> [&'a [u8]; 6 * WC] {
    // Window columns inside the image: jx0 .. jx1 (column j is image column 2tx0 + j − 1).
    let jx0 = usize::from(tx0 == 0);
    let jx1 = (iv.w + 1 - 2 * tx0).min(WC);
    let len = input.len();
    // Copies of the last pixels of `input` (the caller checked the view: their `cin` bytes
    // are there), in the rows that reach them.
    let mut near_end = [false; 6];
    for (r, ne) in near_end.iter_mut().enumerate() {
        let iy = (4 * ty + r).wrapping_sub(1);
        if iy >= iv.h || jx0 >= jx1 {
            continue;
        }
        let base = iv.off + (iy * iv.w + 2 * tx0 + jx0 - 1) * iv.pixel_stride;
        if base + (jx1 - 1 - jx0) * iv.pixel_stride + 2 * KP <= len {
            continue;
        }
        *ne = true;
        for j in jx0..jx1 {
            let a = base + (j - jx0) * iv.pixel_stride;
            if let (None, Some(t)) = (input.get(a..a + 2 * KP), tail.get_mut(r * WC + j)) {
                let px = input.get(a..a + iv.c.min(2 * KP)).unwrap_or(&[]);
                t.fill(0);
                if let Some(d) = t.get_mut(..px.len()) {
                    d.copy_from_slice(px);
                }
            }
        }
    }
    let tail: &'a Tail = tail;
    let mut src: [&'a [u8]; 6 * WC] = [padv; 6 * WC];
    for (r, row) in src.chunks_exact_mut(WC).enumerate() {
        let iy = (4 * ty + r).wrapping_sub(1);
        if iy >= iv.h || jx0 >= jx1 {
            continue;
        }
        let base = iv.off + (iy * iv.w + 2 * tx0 + jx0 - 1) * iv.pixel_stride;
        for j in jx0..jx1 {
            let a = base + (j - jx0) * iv.pixel_stride;
            if let (Some(d), Some(px)) = (row.get_mut(j), input.get(a..a + 2 * KP)) {
                *d = px;
            } else if let (Some(d), Some(t), true) = (row.get_mut(j), tail.get(r * WC + j), near_end[r]) {
                *d = t;
            }
        }
    }
    src
}

/// Copies of the window's last pixels of the input, zero-padded.
type Tail = [[u8; 2 * MAX_KP]; 6 * WC];

/// The column transforms of a window (`[column][row of B₄ᵀ]`, 16 channels).
type Cols = [[__m256i; 6]; WC];

/// `V = B₄ᵀ·d·B₂` of the `R` tiles of a window (`src` from [`window_sources`]) into
/// `vbuf[ξ][tile]`, `B₂ᵀ = [[1,0,−1,0],[0,1,1,0],[0,−1,1,0],[0,1,0,−1]]`, exact in `i16`
/// (|each| ≤ 2560): for each vector of 16 channels, the column transforms `B₄ᵀ·d` of the
/// window's columns into `c` (each shared by the two tiles that read it), then the row
/// transforms.
#[inline(always)]
fn transform_group<const KP: usize>(
    s: V3,
    src: &[&[u8]; 6 * WC],
    c: &mut Cols,
    vbuf: &mut [[[i32; KP]; R]; NX],
) {
    let a = s.avx2;
    let (add, sub) = (|x, y| a._mm256_add_epi16(x, y), |x, y| a._mm256_sub_epi16(x, y));
    for ch in 0..KP / 8 {
        let ld = |r: usize, j: usize| load16(s, src[r * WC + j], 16 * ch);
        for (j, cj) in c.iter_mut().enumerate() {
            let (d0, d1, d2, d3, d4, d5) = (ld(0, j), ld(1, j), ld(2, j), ld(3, j), ld(4, j), ld(5, j));
            let (e, f) = (sub(d4, d2), sub(d1, d3));
            let f2 = add(f, f);
            cj[0] = add(a._mm256_slli_epi16::<2>(sub(d0, d2)), e);
            cj[1] = sub(add(d3, d4), a._mm256_slli_epi16::<2>(add(d1, d2)));
            cj[2] = add(sub(d4, d3), a._mm256_slli_epi16::<2>(sub(d1, d2)));
            cj[3] = sub(e, f2);
            cj[4] = add(e, f2);
            cj[5] = add(add(f2, f2), sub(d5, d3));
        }
        // Row transforms of each tile.
        for i in 0..6 {
            for t in 0..R {
                let (e0, e1, e2, e3) = (c[2 * t][i], c[2 * t + 1][i], c[2 * t + 2][i], c[2 * t + 3][i]);
                let v = [sub(e0, e2), add(e1, e2), sub(e2, e1), sub(e1, e3)];
                for (k, vv) in v.iter().enumerate() {
                    if let Some(dst) = vbuf[4 * i + k][t].get_mut(ch * 8..ch * 8 + 8) {
                        dst.copy_from_slice(&pulp::cast::<__m256i, [i32; 8]>(*vv));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::ops::{ConvGeom, Pad, View};
    use crate::nn::winograd::shared_tests;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn geom() -> ConvGeom {
        ConvGeom { k: 3, stride: 1, pad: 1, groups: 1 }
    }

    /// This kernel, with the arguments of `ops::conv2d`, as the shared checks call it.
    #[allow(clippy::too_many_arguments)]
    fn run(
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
        let s = super::super::v3().expect("the tests return early without AVX2");
        conv3x3_winograd(s, ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out })
    }

    /// One random case, see [`shared_tests::check`].
    #[allow(clippy::too_many_arguments)]
    fn check(
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        gap: [usize; 2],
        per_chan: bool,
        short: bool,
        seed: u32,
    ) {
        if super::super::v3().is_some() {
            shared_tests::check(run, (h, w, cin, cout), gap, per_chan, short, seed);
        }
    }

    #[test]
    fn matches_generic_on_model_shapes() {
        if super::super::v3().is_some() {
            shared_tests::check_model_shapes(run);
        }
    }

    #[test]
    fn matches_generic_on_odd_sizes_channel_counts_and_views() {
        let mut seed = 100;
        for (h, w) in [(1, 1), (1, 5), (5, 1), (3, 2), (2, 3), (7, 9), (9, 7), (2, 10), (4, 11)] {
            for cin in [1, 15, 16, 17, 33, 48, 64] {
                for cout in [1, 8, 9, 16, 20, 32, 64] {
                    let gap = match seed % 3 {
                        0 => [0, 0],
                        1 => [5, 64 - cout % 64],
                        _ => [1, 3],
                    };
                    check(h, w, cin, cout, gap, seed % 2 == 1, seed % 4 < 2, seed);
                    seed += 1;
                }
            }
        }
    }

    #[test]
    fn matches_generic_on_partial_groups_and_image_ends() {
        // Rows of tiles that are not a multiple of the group (5 tiles = 10 columns), heights
        // not a multiple of the tile (4 rows), and inputs that end right after the last
        // pixel's channels (the window's copies of the last pixels, in several rows when the
        // pixel stride is small).
        let mut seed = 500;
        for (h, w) in [(1, 9), (2, 12), (3, 21), (5, 22), (6, 23), (7, 10), (9, 31), (13, 4)] {
            for cin in [1, 3, 16, 31, 64] {
                for (cout, gap) in [(16, [0, 0]), (24, [2, 40]), (40, [0, 1])] {
                    check(h, w, cin, cout, gap, seed % 2 == 0, seed % 3 != 0, seed);
                    seed += 1;
                }
            }
        }
    }

    #[test]
    fn extreme_accumulators_are_exact() {
        if super::super::v3().is_some() {
            shared_tests::assert_extreme_accumulators_exact(run);
        }
    }

    #[test]
    fn inconsistent_arguments_are_errors() {
        if super::super::v3().is_none() {
            return;
        }
        shared_tests::assert_rejects_inconsistent_arguments(|inp, iv, out, ov, g, w, p, pad| {
            run(inp, iv, out, ov, g, w, p, pad, 0)
        });
        // Beyond the portable kernel's cases: more input channels than this kernel holds.
        let iv = View { h: 4, w: 3, c: MAX_CIN + 1, pixel_stride: MAX_CIN + 1, off: 0 };
        let ov = View { h: 4, w: 3, c: 3, pixel_stride: 3, off: 0 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 40, sh_neg: 40 }.write();
        let params: Vec<u8> = q.iter().cycle().take(3 * CHAN_REC).copied().collect();
        let (big, wb) = (vec![0u8; 12 * (MAX_CIN + 1)], vec![0u8; 3 * 9 * (MAX_CIN + 1)]);
        let r = run(&big, &iv, &mut [0u8; 36], &ov, &geom(), &wb, &params, Pad::Zp(0), 0);
        assert_eq!(r, Err(NnError::Malformed), "cin > MAX_CIN");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_generic(
            h in 1usize..10,
            w in 1usize..12,
            cin in prop_oneof![1usize..=MAX_CIN, Just(16usize), Just(MAX_CIN)],
            cout in prop_oneof![1usize..70, Just(16usize), Just(64usize)],
            gap in (0usize..6, 0usize..50),
            per_chan: bool,
            short: bool,
            seed: u32,
        ) {
            check(h, w, cin, cout, [gap.0, gap.1], per_chan, short, seed);
        }
    }
}
