//! Winograd F(2×2, 3×3) convolution with AVX2.

use core::arch::x86_64::{__m128i, __m256i};

use pulp::x86::V3;

use super::{put, requant8, tile, to_bytes, with_avx2, ConvArgs, Kernel, QBlock, OB, PB, QB};
use crate::nn::blob::CHAN_REC;
use crate::nn::ops::{pad_values, read_q, ChanQ};
use crate::nn::NnError;

/// Transformed weight entries held at a time: 16 positions × pairs × blocks of 16 channels
/// (32 KiB of stack: one block of 16 output channels at [`crate::nn::winograd::MAX_CIN`] input
/// channels, the limit the shared [`crate::nn::winograd::applies`] sets).
const WU: usize = 512;
const _: () = assert!(16 * (crate::nn::winograd::MAX_CIN.div_ceil(16) * 8) <= WU);

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

/// Winograd F(2×2, 3×3) convolution with AVX2 (where [`crate::nn::winograd::applies`]): per 4×4 input tile and
/// 16 channels, `V = Bᵀ·d·B` in `i16`; per output-channel block the 16 positions' products
/// `M_ξ = Σ_c V_ξ·U'_ξ` through the dense micro-kernel (four tiles at a time); `Y = Aᵀ·M·A`
/// equals `4·acc` exactly (the weights are scaled by 4 to stay integer, and `|4·acc| < 2^31`
/// for `cin ≤ 3640`), so `acc = Y >> 2`, requantised like every other kernel. Bit-identical to
/// the direct convolution: it computes the same integer sum of products over the padded input.
pub(in crate::nn) fn conv3x3_winograd(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
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
    if !crate::nn::winograd::applies(iv, ov, g) || !iv.fits(input.len()) || !ov.fits(output.len()) {
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
    let mut vbuf = [0i32; 16 * PB * crate::nn::winograd::MAX_CIN / 2];
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
