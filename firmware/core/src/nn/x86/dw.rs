//! 3×3 depthwise convolution (stride 1 or 2, padding 1) with AVX2.
//!
//! Channels go across lanes: eight channels are one vector of eight `i32` accumulators (a
//! *half*), and the image is processed *group* by group: 16 channels (two halves, one 16-byte
//! load per pixel and row) while 16 remain, then at most 8 (the last may be partial: its
//! missing lanes have zero weights and are never stored).
//!
//! Taps are paired vertically. *Pair row* `Q_i` holds, for every input column of a segment and
//! each half, the channels of input rows `2i − 1` and `2i` sign-extended to `i16` and
//! interleaved (lane `l` = (row `2i − 1`, row `2i`) of channel `l`): a ready `vpmaddwd`
//! operand. Rows and columns outside the image hold the padding values, so the pixel loops
//! have no borders. Output row `2j` (stride 1) reads input rows `2j − 1 ..= 2j + 1`: `Q_j` times
//! the weight pairs `(w0, w1)` and `Q_{j+1}` times `(w2, 0)`; output row `2j + 1` reads `Q_j`
//! times `(0, w0)` and `Q_{j+1}` times `(w1, w2)`. So each step makes two output rows from two
//! pair rows, each pair row is staged once, and an output vector costs six `vpmaddwd` for nine
//! taps. Stride 2 is the same with one output row `j` per step (`Q_j`, `Q_{j+1}`, the first set
//! of weights). Pair rows are kept in a ring of two; wide images are cut into column segments of
//! at most [`QCOLS`] staged vectors.
//!
//! Each step runs in two passes over up to [`CW`] output columns: the multiply-adds (the six
//! weight vectors of one row and half held in registers, the staged operands read from memory)
//! into a buffer of accumulators, then their requantisation and stores. Accumulators start at
//! the bias, so they hold `bias + Σ products`, wrapping: the `i32` that `conv_generic` hands to
//! [`finish`](crate::nn::ops::finish), bias included.
//!
//! Requantisation, when every channel of the group has both shifts ≥ 33 (or a zero multiplier;
//! every depthwise layer of the models): `t = hi >> (shift − 33)` with `hi` the high half of
//! the 64-bit product (`vpmuldq` of the even lanes and of the odd ones moved down), then, in
//! 16-bit lanes after a saturating pack, `zp + ((t + 1) >> 1)` as `(t + 1 + 2·zp) >> 1` with a
//! saturating add, and the saturating pack to int8 does the final clamp. That is `finish`
//! exactly: `t` lies in `[−2^30, 2^30]`, so `(t + 1) >> 1` needs no clamp to `i32`; wherever a
//! 16-bit step saturates, `|t| > 2^15 − 2^8` and the int8 result saturates to the same side.
//! Other groups use the general vector requantisation ([`super::requant8`]), also exact.
//!
//! Nothing is left to the portable kernel: every convolution [`crate::nn::depthwise::applies`]
//! accepts runs here.
//!
//! Stack: the ring of two pair rows (2 × [`QCOLS`] × 32 bytes = 24 KiB), the accumulators
//! (4 KiB), one group's constants (2.5 KiB); the frame measured 33.5 KiB.

use core::arch::x86_64::{__m128i, __m256, __m256i};

use pulp::x86::V3;

use super::{requant8, with_avx2, ConvArgs, Kernel, QBlock, FAST_SHIFT};
use crate::nn::blob::MAX_SHIFT;
use crate::nn::depthwise::check_args;
use crate::nn::ops::{read_q, ChanQ, Pad, View};
use crate::nn::NnError;

/// Channels per half group (lanes of one accumulator vector).
const G: usize = 8;
/// Staged vectors of one pair row (columns × halves per group).
const QCOLS: usize = 384;
/// Output columns whose accumulators are held at a time (per row and half).
const CW: usize = 32;
/// Taps of a 3×3 kernel.
const TAPS: usize = 9;

/// 3×3 depthwise convolution, stride 1 or 2, padding 1 (where
/// [`crate::nn::depthwise::applies`]: `groups = cin = cout ≥ 1`), any channel count, pixel
/// strides and offsets; bit-identical to `conv_generic`. Returns `NnError::Malformed` on
/// inconsistent arguments.
pub(in crate::nn) fn conv_dw3x3(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    struct Dw;
    impl Kernel for Dw {
        #[inline(always)]
        fn run(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
            dw_impl(s, a)
        }
    }
    with_avx2::<Dw>(s, a)
}

/// The constants of eight channels (one accumulator vector).
struct Half {
    /// Weight pairs against `Q_j` for the first (`[0]`) and second (`[1]`) output row of a
    /// step, per kernel column.
    wa: [[__m256i; 3]; 2],
    /// Weight pairs against `Q_{j+1}`.
    wb: [[__m256i; 3]; 2],
    /// The accumulators' start.
    bias: __m256i,
    /// Short requantisation (valid when the whole group has it): multipliers and
    /// `shift − 33` of each side, as `f32` bit patterns for `vblendvps` on the accumulator's
    /// sign.
    m_pos: __m256,
    m_neg: __m256,
    s_pos: __m256,
    s_neg: __m256,
    /// General requantisation (zero bias: the accumulators hold it; empty unless needed).
    qb: QBlock,
}

impl Half {
    /// The constants of channels `c0 .. c0 + n` (`1 ≤ n ≤ G`), and whether they all have the
    /// short requantisation.
    #[inline(always)]
    fn new(
        s: V3,
        weights: &[u8],
        params: &[u8],
        c0: usize,
        n: usize,
        empty: &QBlock,
    ) -> Result<(Half, bool), NnError> {
        let mut q = [ChanQ::default(); G];
        let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
        read_q(params, c0, q)?;
        // Tap t of the channels, one byte per lane (little-endian).
        let mut t = [0u64; TAPS];
        // bias, m_pos, m_neg, s_pos, s_neg.
        let mut f = [[0i32; G]; 5];
        let mut fast = true;
        let short = |m: i32, sh: u8| {
            if m == 0 {
                Some(0)
            } else if sh >= FAST_SHIFT {
                Some((sh - FAST_SHIFT) as i32)
            } else {
                None
            }
        };
        let wts = weights.get(c0 * TAPS..(c0 + n) * TAPS).ok_or(NnError::Malformed)?;
        for (l, (r, wc)) in q.iter().zip(wts.chunks_exact(TAPS)).enumerate() {
            if r.sh_pos > MAX_SHIFT || r.sh_neg > MAX_SHIFT {
                return Err(NnError::Malformed);
            }
            for (t, &w) in t.iter_mut().zip(wc) {
                *t |= (w as u64) << (8 * l);
            }
            let (sp, sn) = match (short(r.m_pos, r.sh_pos), short(r.m_neg, r.sh_neg)) {
                (Some(sp), Some(sn)) => (sp, sn),
                _ => {
                    fast = false;
                    (0, 0)
                }
            };
            for (fi, v) in f.iter_mut().zip([r.bias, r.m_pos, r.m_neg, sp, sn]) {
                *fi.get_mut(l).ok_or(NnError::Malformed)? = v;
            }
        }
        macro_rules! w {
            ($a:expr, $b:expr) => {
                pair(s, $a, $b)
            };
        }
        let half = Half {
            wa: [[w!(t[0], t[3]), w!(t[1], t[4]), w!(t[2], t[5])], [w!(0, t[0]), w!(0, t[1]), w!(0, t[2])]],
            wb: [[w!(t[6], 0), w!(t[7], 0), w!(t[8], 0)], [w!(t[3], t[6]), w!(t[4], t[7]), w!(t[5], t[8])]],
            bias: pulp::cast(f[0]),
            m_pos: pulp::cast(f[1]),
            m_neg: pulp::cast(f[2]),
            s_pos: pulp::cast(f[3]),
            s_neg: pulp::cast(f[4]),
            qb: *empty,
        };
        Ok((half, fast))
    }

    /// Set up the general requantisation of channels `c0 .. c0 + n` (for a group that is not
    /// fast as a whole).
    #[inline(always)]
    fn general(&mut self, params: &[u8], c0: usize, n: usize) -> Result<(), NnError> {
        let mut q = [ChanQ::default(); G];
        let q = q.get_mut(..n).ok_or(NnError::Malformed)?;
        read_q(params, c0, q)?;
        for r in q.iter_mut() {
            // Zero bias: the accumulators hold it.
            r.bias = 0;
        }
        self.qb = QBlock::new(q);
        Ok(())
    }
}

/// Constants of the whole call.
struct Kc {
    /// `1 + 2·zp_out` in 16-bit lanes (short requantisation).
    rnd16: __m256i,
    /// `zp_out` in 32-bit lanes (general requantisation).
    zp32: __m256i,
    /// Dword order that gathers the packed bytes of four vectors.
    order: __m256i,
}

impl Kc {
    #[inline(always)]
    fn new(s: V3, zp_out: i8) -> Kc {
        let avx = s.avx;
        Kc {
            rnd16: avx._mm256_set1_epi16(1 + 2 * zp_out as i16),
            zp32: avx._mm256_set1_epi32(zp_out as i32),
            order: avx._mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
        }
    }
}

/// The input side of one group: channels `c0 .. c0 + n` of `input` (view `iv`), padding bytes
/// of each half (little-endian, zero past `n`).
struct Src<'a> {
    input: &'a [u8],
    iv: &'a View,
    c0: usize,
    n: usize,
    pad: [u64; 2],
}

/// The kernel's buffers: the ring of two staged pair rows, and the accumulators of up to
/// [`CW`] output columns of two rows (two halves each). (In this order, which measured up to
/// 10 % faster than the others tried: loads from the pair rows and stores to the accumulators
/// can alias in their low 12 address bits.)
#[repr(C)]
struct Bufs {
    q: [[__m256i; QCOLS]; 2],
    acc: [[__m256i; 2 * CW]; 2],
}

/// The arguments every segment shares.
struct Job<'a, 'b> {
    src: Src<'a>,
    out: &'b mut [u8],
    ov: &'a View,
    stride: usize,
    k: &'b Kc,
}

#[inline(always)]
fn dw_impl(s: V3, a: ConvArgs<'_>) -> Result<(), NnError> {
    let ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out } = a;
    check_args(input, iv, output, ov, g, weights, params, pad)?;
    let (c, stride) = (iv.c, g.stride);
    let k = Kc::new(s, zp_out);
    let z = s.avx._mm256_setzero_si256();
    let mut bufs = Bufs { q: [[z; QCOLS]; 2], acc: [[z; 2 * CW]; 2] };
    let mut job = Job { src: Src { input, iv, c0: 0, n: 0, pad: [0; 2] }, out: output, ov, stride, k: &k };
    let empty = QBlock::new(&[]);
    let mut c0 = 0;
    while c0 < c {
        // Groups of 16 channels, then of at most 8.
        let n = if c - c0 >= 2 * G { 2 * G } else { (c - c0).min(G) };
        let mut pv = [0u8; 2 * G];
        let pd = pv.get_mut(..n).ok_or(NnError::Malformed)?;
        match pad {
            Pad::Zp(z) => pd.fill(z as u8),
            Pad::PerChannel(p) => pd.copy_from_slice(p.get(c0..c0 + n).ok_or(NnError::Malformed)?),
        }
        let [p0, p1]: [[u8; G]; 2] = pulp::cast(pv);
        job.src = Src { input, iv, c0, n, pad: [u64::from_le_bytes(p0), u64::from_le_bytes(p1)] };
        if n == 2 * G {
            let (mut h0, f0) = Half::new(s, weights, params, c0, G, &empty)?;
            let (mut h1, f1) = Half::new(s, weights, params, c0 + G, G, &empty)?;
            if f0 && f1 {
                group::<true, 2>(s, &mut job, &[h0, h1], &mut bufs)?;
            } else {
                h0.general(params, c0, G)?;
                h1.general(params, c0 + G, G)?;
                group::<false, 2>(s, &mut job, &[h0, h1], &mut bufs)?;
            }
        } else {
            let (mut h0, f0) = Half::new(s, weights, params, c0, n, &empty)?;
            if f0 {
                group::<true, 1>(s, &mut job, &[h0], &mut bufs)?;
            } else {
                h0.general(params, c0, n)?;
                group::<false, 1>(s, &mut job, &[h0], &mut bufs)?;
            }
        }
        c0 += n;
    }
    Ok(())
}

/// One group of `8·H` channels (`H` = 2: 16 whole channels; 1: up to 8), in column segments.
#[inline(always)]
fn group<const FAST: bool, const H: usize>(
    s: V3,
    job: &mut Job<'_, '_>,
    hs: &[Half; H],
    bufs: &mut Bufs,
) -> Result<(), NnError> {
    // Output columns per segment (the staged columns, see `segment`, fit QCOLS).
    let seg = ((QCOLS / H - 3) / job.stride + 1) / 4 * 4;
    let mut ox0 = 0;
    while ox0 < job.ov.w {
        let nout = (job.ov.w - ox0).min(seg);
        segment::<FAST, H>(s, job, hs, ox0, nout, bufs)?;
        ox0 += nout;
    }
    Ok(())
}

/// Eight bytes of `input` at `o` as a little-endian `u64`; near the end of the slice only the
/// first `n` (the rest zero).
#[inline(always)]
fn load8(input: &[u8], o: usize, n: usize) -> Result<u64, NnError> {
    if let Some(b) = input.get(o..o + G).and_then(|b| <[u8; G]>::try_from(b).ok()) {
        return Ok(u64::from_le_bytes(b));
    }
    let mut b = [0u8; G];
    let d = b.get_mut(..n).ok_or(NnError::Malformed)?;
    d.copy_from_slice(input.get(o..o + n).ok_or(NnError::Malformed)?);
    Ok(u64::from_le_bytes(b))
}

/// Two rows' eight bytes (little-endian) sign-extended and interleaved: a `vpmaddwd` operand.
#[inline(always)]
fn pair(s: V3, xa: u64, xb: u64) -> __m256i {
    let sse2 = s.sse2;
    s.avx2._mm256_cvtepi8_epi16(
        sse2._mm_unpacklo_epi8(sse2._mm_set_epi64x(0, xa as i64), sse2._mm_set_epi64x(0, xb as i64)),
    )
}

/// The first eight bytes of `b` as a little-endian `u64`.
#[inline(always)]
fn first8(b: &[u8]) -> Result<u64, NnError> {
    b.first_chunk::<G>().map(|v| u64::from_le_bytes(*v)).ok_or(NnError::Malformed)
}

/// The 16 bytes at the start of `a` and `b` as the pairs of their two halves.
#[inline(always)]
fn pair16(s: V3, a: &[u8], b: &[u8]) -> Result<[__m256i; 2], NnError> {
    let (Some(a), Some(b)) = (a.first_chunk::<{ 2 * G }>(), b.first_chunk::<{ 2 * G }>()) else {
        return Err(NnError::Malformed);
    };
    let (sse2, avx2) = (s.sse2, s.avx2);
    let (va, vb): (__m128i, __m128i) = (pulp::cast(*a), pulp::cast(*b));
    let lo = avx2._mm256_cvtepi8_epi16(sse2._mm_unpacklo_epi8(va, vb));
    let hi = avx2._mm256_cvtepi8_epi16(sse2._mm_unpackhi_epi8(va, vb));
    Ok([lo, hi])
}

/// Pair row `Q_i` (input rows `2i − 1`, `2i`) for input columns `col0 ..` into `dst`
/// (`H` vectors per column, one per half).
#[inline(always)]
fn stage<const H: usize>(
    s: V3,
    src: &Src<'_>,
    i: usize,
    col0: isize,
    dst: &mut [__m256i],
) -> Result<(), NnError> {
    let (iv, input) = (src.iv, src.input);
    let ps = iv.pixel_stride;
    let row = |r: usize| (r < iv.h).then(|| iv.off + r * iv.w * ps + src.c0);
    let (ra, rb) = ((2 * i).checked_sub(1).and_then(row), row(2 * i));
    let pad = [pair(s, src.pad[0], src.pad[0]), pair(s, src.pad[1], src.pad[1])];
    let pad = pad.first_chunk::<H>().ok_or(NnError::Malformed)?;
    // Columns left of the image (only col0 = −1), inside, right of it.
    let (lead, first) = if col0 < 0 { (col0.unsigned_abs(), 0) } else { (0, col0 as usize) };
    let (dl, dr) = dst.split_at_mut((lead * H).min(dst.len()));
    let (inner, right) = dr.split_at_mut((iv.w.saturating_sub(first) * H).min(dr.len()));
    for d in dl.chunks_exact_mut(H).chain(right.chunks_exact_mut(H)) {
        d.copy_from_slice(pad);
    }
    let cnt = inner.len() / H;
    // Leading columns whose whole pixel (`ps` bytes from the group's first channel) lies in
    // `input` (all but the last pixel or so of the tensor), for pixel strides of at least 8:
    // one tight loop per row kind; the rest one by one.
    let fits = |r: Option<usize>| match r {
        // (The division only near the end of the tensor.)
        Some(b) if ps >= G * H && b + (first + cnt) * ps <= input.len() => cnt,
        Some(b) if ps >= G * H => (input.len().saturating_sub(b + first * ps) / ps).min(cnt),
        Some(_) => 0,
        None => cnt,
    };
    let nt = fits(ra).min(fits(rb));
    let (tight, rest) = inner.split_at_mut(nt * H);
    let run = |r: Option<usize>| {
        r.map(|b| input.get(b + first * ps..b + (first + nt) * ps).ok_or(NnError::Malformed)).transpose()
    };
    match (run(ra)?, run(rb)?) {
        (Some(sa), Some(sb)) if H == 2 => {
            for ((d, ca), cb) in tight.chunks_exact_mut(2).zip(sa.chunks_exact(ps)).zip(sb.chunks_exact(ps)) {
                d.copy_from_slice(&pair16(s, ca, cb)?);
            }
        }
        (Some(sa), Some(sb)) if ps == G => {
            // Two pixels per 16-byte load.
            let mut d2 = tight.chunks_exact_mut(2);
            for ((d, ca), cb) in (&mut d2).zip(sa.chunks_exact(2 * G)).zip(sb.chunks_exact(2 * G)) {
                d.copy_from_slice(&pair16(s, ca, cb)?);
            }
            if let Some(d) = d2.into_remainder().first_mut() {
                let k = (nt - 1) * ps;
                *d = pair(s, first8(sa.get(k..).unwrap_or(&[]))?, first8(sb.get(k..).unwrap_or(&[]))?);
            }
        }
        (sa, sb) => {
            // One row or none (the top and bottom padding rows).
            let mut ca = sa.map(|v| v.chunks_exact(ps));
            let mut cb = sb.map(|v| v.chunks_exact(ps));
            for d in tight.chunks_exact_mut(H) {
                let xa = ca.as_mut().map(|c| c.next().ok_or(NnError::Malformed)).transpose()?;
                let xb = cb.as_mut().map(|c| c.next().ok_or(NnError::Malformed)).transpose()?;
                for (h, (dh, &p)) in d.iter_mut().zip(&src.pad).enumerate() {
                    let ya = xa.map(|x| first8(x.get(G * h..).unwrap_or(&[]))).transpose()?;
                    let yb = xb.map(|x| first8(x.get(G * h..).unwrap_or(&[]))).transpose()?;
                    *dh = pair(s, ya.unwrap_or(p), yb.unwrap_or(p));
                }
            }
        }
    }
    for (q, d) in rest.chunks_exact_mut(H).enumerate() {
        let ix = first + nt + q;
        for (h, (dh, &p)) in d.iter_mut().zip(&src.pad).enumerate() {
            let nh = src.n.saturating_sub(G * h).min(G);
            let px = |r: Option<usize>| match r {
                Some(b) => load8(input, b + ix * ps + G * h, nh),
                None => Ok(p),
            };
            *dh = pair(s, px(ra)?, px(rb)?);
        }
    }
    Ok(())
}

/// One output pixel's accumulators: `bias + Σ_kx a[kx]·wa[kx] + b[kx]·wb[kx]`.
#[inline(always)]
fn px(
    s: V3,
    bias: __m256i,
    wa: &[__m256i; 3],
    wb: &[__m256i; 3],
    a: [__m256i; 3],
    b: [__m256i; 3],
) -> __m256i {
    let avx2 = s.avx2;
    // (Macros, not closures: a closure would be compiled outside the AVX2 context.)
    macro_rules! t {
        ($kx:literal) => {
            avx2._mm256_add_epi32(
                avx2._mm256_madd_epi16(a[$kx], wa[$kx]),
                avx2._mm256_madd_epi16(b[$kx], wb[$kx]),
            )
        };
    }
    let (t0, t1, t2) = (t!(0), t!(1), t!(2));
    avx2._mm256_add_epi32(avx2._mm256_add_epi32(bias, t0), avx2._mm256_add_epi32(t1, t2))
}

/// Short requantisation up to the shift: `t = ⌊a·m / 2^32⌋ >> s` per lane, the side (`m`,
/// `s = shift − 33`) chosen by the sign of `a`.
#[inline(always)]
fn shift_hi(s: V3, h: &Half, a: __m256i) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let af = avx._mm256_castsi256_ps(a);
    let m = avx._mm256_castps_si256(avx._mm256_blendv_ps(h.m_pos, h.m_neg, af));
    let sh = avx._mm256_castps_si256(avx._mm256_blendv_ps(h.s_pos, h.s_neg, af));
    let pe = avx2._mm256_mul_epi32(a, m);
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    // High halves: the even lanes' moved down, the odd lanes' already in place.
    let hi = avx2._mm256_blend_epi32::<0b1010_1010>(avx2._mm256_srli_epi64::<32>(pe), po);
    avx2._mm256_srav_epi32(hi, sh)
}

/// The output bytes of four accumulator vectors (`a[i]` with the constants `h[i]`): those of
/// `a[i]` in bytes `8i .. 8i + 8`. (Kept in a register up to the stores: a vector stored whole
/// and read back in parts stalls.)
#[inline(always)]
fn pack4<const FAST: bool>(s: V3, h: [&Half; 4], k: &Kc, a: [__m256i; 4]) -> __m256i {
    let avx2 = s.avx2;
    // (Macros, not closures: a closure would be compiled outside the AVX2 context.)
    macro_rules! round_zp {
        // zp + ((t + 1) >> 1) = (t + 1 + 2·zp) >> 1, saturating: where it saturates, so does
        // the final pack to int8.
        ($w:expr) => {
            avx2._mm256_srai_epi16::<1>(avx2._mm256_adds_epi16($w, k.rnd16))
        };
    }
    macro_rules! req {
        ($i:literal) => {
            requant8(s, a[$i], &h[$i].qb, 0, k.zp32)
        };
    }
    // 16-bit lanes of w01: a0 0–3, a1 0–3 | a0 4–7, a1 4–7 (w23 alike).
    let (w01, w23) = if FAST {
        let (t0, t1) = (shift_hi(s, h[0], a[0]), shift_hi(s, h[1], a[1]));
        let (t2, t3) = (shift_hi(s, h[2], a[2]), shift_hi(s, h[3], a[3]));
        (round_zp!(avx2._mm256_packs_epi32(t0, t1)), round_zp!(avx2._mm256_packs_epi32(t2, t3)))
    } else {
        (avx2._mm256_packs_epi32(req!(0), req!(1)), avx2._mm256_packs_epi32(req!(2), req!(3)))
    };
    // Dwords: a0 0–3, a1 0–3, a2 0–3, a3 0–3 | a0 4–7, a1 4–7, a2 4–7, a3 4–7.
    avx2._mm256_permutevar8x32_epi32(avx2._mm256_packs_epi16(w01, w23), k.order)
}

/// The `n` low bytes of `v` (little-endian) to `out[at..]` (one 8-byte store when `n` is 8).
#[inline(always)]
fn put8(out: &mut [u8], at: usize, v: u64, n: usize) -> Result<(), NnError> {
    let d = out.get_mut(at..at + n).ok_or(NnError::Malformed)?;
    if let Ok(d8) = <&mut [u8; G]>::try_from(&mut *d) {
        *d8 = v.to_le_bytes();
    } else {
        for (o, b) in d.iter_mut().zip(v.to_le_bytes()) {
            *o = b;
        }
    }
    Ok(())
}

/// Store the `n` channels of the two pixels of `v` (8 bytes each) at `row[o..]` and
/// `row[o + ps..]`, the second only if the row holds it (`row` ends with the last pixel's `n`
/// bytes); one store when the pixels are adjacent and whole.
#[inline(always)]
fn store2(row: &mut [u8], o: usize, ps: usize, v: __m128i, n: usize) -> Result<(), NnError> {
    let d = row.get_mut(o..).ok_or(NnError::Malformed)?;
    if ps == G && n == G {
        if let Some(d16) = d.first_chunk_mut::<{ 2 * G }>() {
            *d16 = pulp::cast(v);
            return Ok(());
        }
    }
    let [lo, hi]: [u64; 2] = pulp::cast(v);
    put8(d, 0, lo, n)?;
    if d.len() > ps {
        put8(d, ps, hi, n)?;
    }
    Ok(())
}

/// [`store2`] of up to four pixels.
#[inline(always)]
fn store4(s: V3, row: &mut [u8], o: usize, ps: usize, v: __m256i, n: usize) -> Result<(), NnError> {
    let d = row.get_mut(o..).ok_or(NnError::Malformed)?;
    if ps == G && n == G {
        if let Some(d32) = d.first_chunk_mut::<{ 4 * G }>() {
            *d32 = pulp::cast(v);
            return Ok(());
        }
    }
    store2(d, 0, ps, s.avx._mm256_castsi256_si128(v), n)?;
    if d.len() > 2 * ps {
        store2(d, 2 * ps, ps, s.avx2._mm256_extracti128_si256::<1>(v), n)?;
    }
    Ok(())
}

/// The 16 bytes of one pixel of a 16-channel group to `row[o..]`.
#[inline(always)]
fn put16(row: &mut [u8], o: usize, v: __m128i) -> Result<(), NnError> {
    let d = row.get_mut(o..o + 2 * G).ok_or(NnError::Malformed)?;
    *<&mut [u8; 2 * G]>::try_from(d).map_err(|_| NnError::Malformed)? = pulp::cast(v);
    Ok(())
}

/// Accumulators of half `h` of output columns `x0 ..` of one row (`acc[i·H + h]`, as many
/// columns as `acc` holds), from the two staged pair rows with their weight pairs (a stride `S`
/// convolution).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn mac<const H: usize, const S: usize>(
    s: V3,
    xa: &[__m256i],
    xb: &[__m256i],
    wa: &[__m256i; 3],
    wb: &[__m256i; 3],
    bias: __m256i,
    x0: usize,
    h: usize,
    acc: &mut [__m256i],
) -> Result<(), NnError> {
    let base = x0 * S * H + h;
    let m = acc.len() / H;
    if m == 0 {
        return Ok(());
    }
    let end = base + (m - 1) * S * H + 2 * H + 1;
    let (Some(qa), Some(qb)) = (xa.get(base..end), xb.get(base..end)) else {
        return Err(NnError::Malformed);
    };
    // Weights held in registers for the whole loop.
    let (wa, wb) = (*wa, *wb);
    for (i, d) in acc.iter_mut().skip(h).step_by(H).enumerate() {
        let j = i * S * H;
        let a = [qa.get(j), qa.get(j + H), qa.get(j + 2 * H)];
        let b = [qb.get(j), qb.get(j + H), qb.get(j + 2 * H)];
        let ([Some(&a0), Some(&a1), Some(&a2)], [Some(&b0), Some(&b1), Some(&b2)]) = (a, b) else {
            return Err(NnError::Malformed);
        };
        *d = px(s, bias, &wa, &wb, [a0, a1, a2], [b0, b1, b2]);
    }
    Ok(())
}

/// Requantise and store one output row's accumulators (`[column][half]`, a whole number of
/// fours) at `row` (`row` ends with the last pixel's `n` bytes; pixels past it are dropped).
#[inline(always)]
fn emit<const FAST: bool, const H: usize>(
    s: V3,
    hs: &[Half; H],
    k: &Kc,
    acc: &[__m256i],
    row: &mut [u8],
    ps: usize,
    n: usize,
) -> Result<(), NnError> {
    let (Some(h0), Some(h1)) = (hs.first(), hs.last()) else { return Err(NnError::Malformed) };
    let hq = [h0, h1, h0, h1];
    // Pixels per four accumulators.
    let p4 = 4 / H;
    for (i, a) in acc.chunks_exact(4).enumerate() {
        let Some(a) = a.first_chunk::<4>() else { return Err(NnError::Malformed) };
        let v = pack4::<FAST>(s, hq, k, *a);
        let o = i * p4 * ps;
        if o >= row.len() {
            break;
        }
        if H == 1 {
            store4(s, row, o, ps, v, n)?;
        } else {
            let d = row.get_mut(o..).ok_or(NnError::Malformed)?;
            match d.first_chunk_mut::<{ 4 * G }>() {
                Some(d32) if ps == 2 * G => *d32 = pulp::cast(v),
                _ => {
                    put16(d, 0, s.avx._mm256_castsi256_si128(v))?;
                    if d.len() > ps {
                        put16(d, ps, s.avx2._mm256_extracti128_si256::<1>(v))?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// One group over output columns `ox0 .. ox0 + nout`, every output row.
#[inline(always)]
fn segment<const FAST: bool, const H: usize>(
    s: V3,
    job: &mut Job<'_, '_>,
    hs: &[Half; H],
    ox0: usize,
    nout: usize,
    bufs: &mut Bufs,
) -> Result<(), NnError> {
    let Job { src, out, ov, stride, k } = job;
    let (ov, stride, k): (&View, usize, &Kc) = (ov, *stride, k);
    // Staged input columns col0 .. col0 + ncols: those of the segment's columns rounded up to
    // whole fours of accumulators (the last few computed and dropped).
    let ncols = (nout.next_multiple_of(4 / H) - 1) * stride + 3;
    let col0 = (ox0 * stride) as isize - 1;
    let Bufs { q: [b0, b1], acc: accs } = bufs;
    let mut qa = b0.get_mut(..ncols * H).ok_or(NnError::Malformed)?;
    let mut qb = b1.get_mut(..ncols * H).ok_or(NnError::Malformed)?;
    stage::<H>(s, src, 0, col0, qa)?;
    let steps = if stride == 1 { ov.h.div_ceil(2) } else { ov.h };
    let (ps, n) = (ov.pixel_stride, src.n);
    // Bytes of one output row of the segment.
    let span = (nout - 1) * ps + n;
    for j in 0..steps {
        stage::<H>(s, src, j + 1, col0, qb)?;
        let (xa, xb): (&[__m256i], &[__m256i]) = (qa, qb);
        let oy = if stride == 1 { 2 * j } else { j };
        let rows = if stride == 1 && oy + 1 < ov.h { 2 } else { 1 };
        let o0 = ov.off + (oy * ov.w + ox0) * ps + src.c0;
        let o1 = o0 + ov.w * ps;
        // The segment's bytes of both rows (the second empty if there is none).
        let (top, bottom) = out.split_at_mut(o1.min(out.len()));
        let r0 = top.get_mut(o0..o0 + span).ok_or(NnError::Malformed)?;
        let r1 = if rows == 2 { bottom.get_mut(..span).ok_or(NnError::Malformed)? } else { &mut [] };
        let mut x0 = 0;
        while x0 < nout {
            let cnt = (nout - x0).min(CW);
            // Whole fours of accumulators.
            let cr = cnt.next_multiple_of(4 / H) * H;
            for (r, acc) in accs.iter_mut().enumerate().take(rows) {
                let acc = acc.get_mut(..cr).ok_or(NnError::Malformed)?;
                for (h, hf) in hs.iter().enumerate() {
                    if stride == 1 {
                        mac::<H, 1>(s, xa, xb, &hf.wa[r], &hf.wb[r], hf.bias, x0, h, acc)?;
                    } else {
                        mac::<H, 2>(s, xa, xb, &hf.wa[r], &hf.wb[r], hf.bias, x0, h, acc)?;
                    }
                }
            }
            for (acc, row) in accs.iter().zip([&mut *r0, &mut *r1]).take(rows) {
                let acc = acc.get(..cr).ok_or(NnError::Malformed)?;
                let row = row.get_mut(x0 * ps..).ok_or(NnError::Malformed)?;
                emit::<FAST, H>(s, hs, k, acc, row, ps, n)?;
            }
            x0 += cnt;
        }
        core::mem::swap(&mut qa, &mut qb);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::v3;
    use super::*;
    use crate::nn::blob::CHAN_REC;
    use crate::nn::depthwise::shared_tests::{self, Case};
    use crate::nn::ops::{finish, ConvGeom};
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// One random case through [`conv_dw3x3`], see [`shared_tests::check`].
    fn check(k: Case) {
        let Some(s) = v3() else { return };
        shared_tests::check(
            |input, iv, output, ov, g, weights, params, pad, zp_out| {
                conv_dw3x3(s, ConvArgs { input, iv, output, ov, g, weights, params, pad, zp_out })
            },
            k,
        );
    }

    fn case(h: usize, w: usize, c: usize, stride: usize, seed: u32) -> Case {
        Case { h, w, c, stride, gap: [0, 0], per_chan: false, fast: true, extreme: false, seed }
    }

    /// The face model's depthwise layers (channels, stride), at small and at full widths.
    const MODEL: [(usize, usize, usize); 9] = [
        (160, 8, 1),
        (160, 16, 2),
        (80, 32, 1),
        (80, 32, 2),
        (40, 64, 1),
        (40, 64, 2),
        (20, 128, 1),
        (20, 128, 2),
        (10, 256, 1),
    ];

    #[test]
    fn matches_generic_on_model_shapes() {
        for (i, &(w, c, st)) in MODEL.iter().enumerate() {
            let i = i as u32;
            for (j, (h, w)) in [(7, 9), (9, 7), (8, 10), (4, w), (5, w + 1)].into_iter().enumerate() {
                let seed = 100 * i + 10 * j as u32;
                check(case(h, w, c, st, seed));
                check(Case { fast: false, ..case(h, w, c, st, seed + 1) });
                check(Case { per_chan: true, gap: [3, 2], ..case(h, w, c, st, seed + 2) });
            }
        }
    }

    #[test]
    fn matches_generic_on_odd_sizes_and_views() {
        let sizes =
            [(1, 1), (1, 2), (1, 7), (1, 10), (7, 1), (10, 1), (2, 2), (2, 3), (3, 4), (5, 6), (6, 5)];
        let mut seed = 1;
        for c in [1, 3, 8, 16, 24, 32, 64, 128, 256] {
            for stride in [1, 2] {
                for &(h, w) in &sizes {
                    for (per_chan, fast, gap) in
                        [(false, true, [0, 0]), (true, false, [1, 0]), (true, true, [2, 5])]
                    {
                        seed += 1;
                        check(Case { per_chan, fast, gap, ..case(h, w, c, stride, seed) });
                    }
                }
            }
        }
    }

    #[test]
    fn matches_generic_on_int8_extremes() {
        for (i, &(_, c, st)) in MODEL.iter().enumerate() {
            for fast in [true, false] {
                check(Case { extreme: true, fast, ..case(5, 6, c, st, i as u32) });
            }
        }
        check(Case { extreme: true, ..case(3, 3, 5, 1, 99) });
    }

    #[test]
    fn matches_generic_on_several_segments() {
        // Wider than one segment of staged columns (380 output columns of 8 channels at stride
        // 1, 188 at stride 2; 188 and 92 of 16), with and without a one-column last segment.
        for (w, c, st) in [
            (380, 8, 1),
            (381, 8, 1),
            (1000, 8, 1),
            (2 * 188 + 1, 3, 2),
            (2 * QCOLS + 5, 3, 2),
            (189, 32, 1),
            (400, 16, 1),
            (185, 24, 2),
            (800, 16, 2),
        ] {
            check(case(3, w, c, st, w as u32));
            check(Case { gap: [1, 3], per_chan: true, fast: false, ..case(2, w, c, st, w as u32 + 1) });
        }
    }

    #[test]
    fn inconsistent_arguments_are_errors() {
        let Some(s) = v3() else { return };
        let iv = View { h: 4, w: 4, c: 2, pixel_stride: 2, off: 0 };
        let g = ConvGeom { k: 3, stride: 1, pad: 1, groups: 2 };
        let q = ChanQ { bias: 0, m_pos: 1 << 30, m_neg: 1 << 30, sh_pos: 40, sh_neg: 40 }.write();
        let params: Vec<u8> = q.iter().chain(q.iter()).copied().collect();
        let mut out = vec![0u8; 32];
        let run = |inp: &[u8], out: &mut [u8], ov: &View, g: &ConvGeom, w: &[u8], p: &[u8], pad| {
            let a =
                ConvArgs { input: inp, iv: &iv, output: out, ov, g, weights: w, params: p, pad, zp_out: 0 };
            conv_dw3x3(s, a)
        };
        assert_eq!(run(&[0; 32], &mut out, &iv, &g, &[0; 18], &params, Pad::Zp(0)), Ok(()));
        let e = Err(NnError::Malformed);
        assert_eq!(run(&[0; 31], &mut out, &iv, &g, &[0; 18], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &mut out[..31], &iv, &g, &[0; 18], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &mut out, &iv, &g, &[0; 17], &params, Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &mut out, &iv, &g, &[0; 18], &params[..31], Pad::Zp(0)), e);
        assert_eq!(run(&[0; 32], &mut out, &iv, &g, &[0; 18], &params, Pad::PerChannel(&[0])), e);
        assert_eq!(run(&[0; 32], &mut out, &View { h: 3, ..iv }, &g, &[0; 18], &params, Pad::Zp(0)), e);
        let g2 = ConvGeom { stride: 2, ..g };
        assert_eq!(run(&[0; 32], &mut out, &iv, &g2, &[0; 18], &params, Pad::Zp(0)), e);
        let g3 = ConvGeom { groups: 1, ..g };
        assert_eq!(run(&[0; 32], &mut out, &iv, &g3, &[0; 36], &params, Pad::Zp(0)), e);
        let mut big_shift = params.clone();
        big_shift[CHAN_REC + 13] = MAX_SHIFT + 1;
        assert_eq!(run(&[0; 32], &mut out, &iv, &g, &[0; 18], &big_shift, Pad::Zp(0)), e);
    }

    proptest! {
        // No regression file: failures print their case (and `check` its first difference).
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(96) })]
        #[test]
        fn matches_generic(
            h in 1usize..10,
            w in 1usize..24,
            c in prop_oneof![1usize..20, 1usize..70, Just(8), Just(16)],
            stride in 1usize..3,
            gap in (0usize..4, 0usize..4),
            per_chan: bool,
            fast: bool,
            extreme in proptest::bool::weighted(0.1),
            seed: u32,
        ) {
            check(Case { h, w, c, stride, gap: [gap.0, gap.1], per_chan, fast, extreme, seed });
        }
    }

    /// Four vectors of accumulators through [`pack4`] with the constants [`Half::new`] and
    /// [`Half::general`] make: every byte must be `finish` of its lane.
    fn requant_case(qs: &[ChanQ; G], acc: &[i32; 4 * G], zp: i8, fast: bool) {
        let Some(s) = v3() else { return };
        let params: Vec<u8> = qs.iter().flat_map(|q| q.write()).collect();
        let empty = QBlock::new(&[]);
        let (mut h, f) = Half::new(s, &[0; G * TAPS], &params, 0, G, &empty).unwrap();
        assert_eq!(f, fast, "{qs:?}");
        if !f {
            h.general(&params, 0, G).unwrap();
        }
        let k = Kc::new(s, zp);
        // The kernel's accumulators include the bias.
        let biased: [i32; 4 * G] = core::array::from_fn(|i| acc[i].wrapping_add(qs[i % G].bias));
        let a: [__m256i; 4] = pulp::cast(biased);
        let got: [u8; 4 * G] =
            pulp::cast(if f { pack4::<true>(s, [&h; 4], &k, a) } else { pack4::<false>(s, [&h; 4], &k, a) });
        for i in 0..4 * G {
            assert_eq!(
                got[i],
                finish(&qs[i % G], acc[i], zp),
                "lane {i}: {:?} acc {} zp {zp}",
                qs[i % G],
                acc[i]
            );
        }
    }

    fn acc_value() -> impl Strategy<Value = i32> {
        prop_oneof![
            any::<i32>(),
            -200_000i32..200_000,
            -3000i32..3000,
            Just(i32::MIN),
            Just(i32::MAX),
            Just(0),
            Just(-1),
        ]
    }

    fn short_q() -> impl Strategy<Value = ChanQ> {
        let m = prop_oneof![0..=i32::MAX, Just(0), Just(i32::MAX), 1 << 30..i32::MAX];
        let m2 = prop_oneof![0..=i32::MAX, Just(0), Just(i32::MAX), 1 << 30..i32::MAX];
        let m3 = prop_oneof![any::<i32>(), Just(0)];
        (any::<i32>(), prop_oneof![m, m3], m2, FAST_SHIFT..=MAX_SHIFT, FAST_SHIFT..=MAX_SHIFT)
            .prop_map(|(bias, m_pos, m_neg, sh_pos, sh_neg)| ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg })
    }

    /// Any record, often with an output in the int8 range for small accumulators.
    fn any_q() -> impl Strategy<Value = ChanQ> {
        let m = || prop_oneof![any::<i32>(), (any::<i32>(), 0..31u32).prop_map(|(v, k)| v >> k)];
        let sh = || prop_oneof![0..=MAX_SHIFT, 24..=36u8];
        let bias = prop_oneof![any::<i32>(), -5000..5000];
        (bias, m(), m(), sh(), sh()).prop_map(|(bias, m_pos, m_neg, sh_pos, sh_neg)| ChanQ {
            bias,
            m_pos,
            m_neg,
            sh_pos,
            sh_neg,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(3000) })]
        #[test]
        fn short_requantisation_is_finish(
            qs in proptest::array::uniform8(short_q()),
            acc in proptest::array::uniform32(acc_value()),
            zp: i8,
        ) {
            requant_case(&qs, &acc, zp, true);
        }

        #[test]
        fn general_requantisation_is_finish(
            qs in proptest::array::uniform8(any_q()),
            acc in proptest::array::uniform32(acc_value()),
            zp: i8,
        ) {
            let short = |m: i32, sh: u8| m == 0 || sh >= FAST_SHIFT;
            let fast = qs.iter().all(|q| short(q.m_pos, q.sh_pos) && short(q.m_neg, q.sh_neg));
            requant_case(&qs, &acc, zp, fast);
        }
    }
}
