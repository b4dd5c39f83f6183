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
//!   wrapping zero-point add, and saturation to int8 by the signed packs that turn the lanes
//!   into bytes.
//!
//! Stack: the kernels keep their packed weights and staged inputs in stack buffers, up to about
//! 128 KiB (Winograd, [`wino`]); host threads have far more (Rust's default for spawned threads
//! is 2 MiB). The device never runs this module.
//!
//! No `unsafe` here: `pulp` checks the CPU features and hands out a `V3` token whose methods
//! are the AVX2 intrinsics; vectors are converted from and to plain arrays with `pulp::cast`.

use core::arch::x86_64::{__m128i, __m256i};

use pulp::x86::V3;

use super::blob::{CHAN_REC, MAX_SHIFT};
use super::ops::{add_rows, pad_values, read_q, AddK, ChanQ, ConvGeom, Pad, View, MAX_PAD};
use super::NnError;

pub(super) mod dw;
pub(super) mod first;
pub(super) mod pw;
pub(super) mod wino;

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

/// [`super::ops::add`]'s loops compiled for AVX2: [`add_split`] when the shift allows it (the
/// models' adds have shifts 29 and 30), else the portable loops.
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
    struct Op<'a>(&'a AddK, &'a [u8], &'a View, &'a [u8], &'a View, &'a mut [u8], &'a View, V3);
    impl pulp::NullaryFnOnce for Op<'_> {
        type Output = Result<(), NnError>;
        #[inline(always)]
        fn call(self) -> Self::Output {
            if SPLIT_SHIFTS.contains(&self.0.shift) {
                add_split(self.7, self.0, self.1, self.2, self.3, self.4, self.5, self.6)
            } else {
                add_rows(self.0, self.1, self.2, self.3, self.4, self.5, self.6)
            }
        }
    }
    s.vectorize(Op(k, a, av, b, bv, out, ov, s))
}

/// Bytes `j .. j + 8` of `r`, sign-extended to eight `i32` lanes.
#[inline(always)]
fn widen8(s: V3, r: &[u8], j: usize) -> Result<__m256i, NnError> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(r.get(j..j + 8).ok_or(NnError::Malformed)?);
    Ok(s.avx2._mm256_cvtepi8_epi32(pulp::cast(b)))
}

/// Shifts for which [`add_split`] is exact.
const SPLIT_SHIFTS: core::ops::RangeInclusive<u8> = 17..=47;

/// [`AddK::apply`](super::ops::AddK) on 16 channels at a time in 32-bit lanes, exact for
/// `17 ≤ shift ≤ 47`.
///
/// With `va = a − za`, `vb = b − zb` (|each| ≤ 255) and each multiplier split as
/// `m = mh·2^16 + ml` (`mh = m >> 16`, `0 ≤ ml < 2^16`): `va·m0 + vb·m1 = H·2^16 + L` with
/// `H = va·mh0 + vb·mh1` (|H| < 2^24) and `L = va·ml0 + vb·ml1` (|L| < 2^25), all in `i32`.
/// The rounding term is `2^(shift−1) = R·2^16` with `R = 2^(shift−17)`, so the sum is
/// `T·2^16 + (L mod 2^16)` with `T = H + R + ⌊L / 2^16⌋` (|T| < 2^31), and
/// `⌊(T·2^16 + u) / 2^shift⌋ = ⌊T / 2^(shift−16)⌋` for `0 ≤ u < 2^16` (nested floor
/// divisions). Then `zo` is added and the packs saturate to int8, as `apply` clamps. Channels
/// past the last multiple of 8 use `apply`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add_split(
    s: V3,
    k: &AddK,
    a: &[u8],
    av: &View,
    b: &[u8],
    bv: &View,
    out: &mut [u8],
    ov: &View,
) -> Result<(), NnError> {
    let (avx, avx2) = (s.avx, s.avx2);
    let set = |v: i32| avx._mm256_set1_epi32(v);
    let (mh0, ml0, mh1, ml1) =
        (set(k.m[0] >> 16), set(k.m[0] & 0xFFFF), set(k.m[1] >> 16), set(k.m[1] & 0xFFFF));
    let (za, zb, zo) = (set(k.za as i32), set(k.zb as i32), set(k.zo as i32));
    let rnd = set(1 << (k.shift.clamp(17, 47) - 17));
    let count = s.sse2._mm_cvtsi32_si128(k.shift as i32 - 16);
    let c8 = ov.c / 8 * 8;
    for y in 0..ov.h {
        for x in 0..ov.w {
            let (ra, rb, ro) = k.pixel(a, av, b, bv, out, ov, y, x)?;
            let mut i = 0;
            while i < c8 {
                // 16 channels, or the last 8 (then both halves are the same).
                let n = if i + 16 <= c8 { 16 } else { 8 };
                let mut v = [avx._mm256_setzero_si256(); 2];
                for (h, vh) in v.iter_mut().enumerate() {
                    let j = i + 8 * h.min(n / 8 - 1);
                    let va = avx2._mm256_sub_epi32(widen8(s, ra, j)?, za);
                    let vb = avx2._mm256_sub_epi32(widen8(s, rb, j)?, zb);
                    let hi = avx2
                        ._mm256_add_epi32(avx2._mm256_mullo_epi32(va, mh0), avx2._mm256_mullo_epi32(vb, mh1));
                    let lo = avx2
                        ._mm256_add_epi32(avx2._mm256_mullo_epi32(va, ml0), avx2._mm256_mullo_epi32(vb, ml1));
                    let t = avx2
                        ._mm256_add_epi32(avx2._mm256_add_epi32(hi, rnd), avx2._mm256_srai_epi32::<16>(lo));
                    *vh = avx2._mm256_add_epi32(avx2._mm256_sra_epi32(t, count), zo);
                }
                put(ro, i, &to_bytes(s, v[0], v[1]), n)?;
                i += n;
            }
            for ((o, &va), &vb) in ro.iter_mut().zip(ra).zip(rb).skip(c8) {
                *o = k.apply(va, vb);
            }
        }
    }
    Ok(())
}

/// Output channels per micro-tile (two vectors of eight `i32`).
const OB: usize = 16;
/// Output pixels per micro-tile of the dense kernel (six: fewer passes per pixel over the
/// weights and constants than four, which matters when `k²·cin` is small).
const DP: usize = 6;
/// Packed weight pairs held at a time (16 KiB of stack): `[pair][16 channels][2]` `i16`.
const WP: usize = 256;
/// Blocks of 16 output channels whose packed weights and requantisation constants are held at a
/// time (4.5 KiB of constants).
const QB: usize = 8;
/// Largest `k²·cin` of the dense kernel (its pixel buffer is `DP × MAX_K/2` pairs, 27 KiB).
pub(super) const MAX_K: usize = 2304;

/// Per-channel requantisation constants of one block of 16 output channels, as vectors.
#[derive(Clone, Copy)]
struct QBlock {
    bias: [__m256i; 2],
    m_pos: [__m256i; 2],
    m_neg: [__m256i; 2],
    sh_pos: [__m256i; 2],
    sh_neg: [__m256i; 2],
    /// Short form ([`requant8_short`]): `sh_pos − 33` and `sh_neg − 33`; valid when `fast`.
    s_pos: [__m256i; 2],
    s_neg: [__m256i; 2],
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
        let mut g = [[0i32; OB]; 2];
        let mut fast = true;
        for (i, r) in q.iter().take(OB).enumerate() {
            match (short(r.m_pos, r.sh_pos), short(r.m_neg, r.sh_neg)) {
                (Some(sp), Some(sn)) => {
                    g[0][i] = sp;
                    g[1][i] = sn;
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
            s_pos: v(g[0]),
            s_neg: v(g[1]),
            fast,
        }
    }
}

/// Shifts from which the short requantisation applies.
const FAST_SHIFT: u8 = super::depthwise::FAST_MIN_SHIFT;

/// [`finish`](super::ops::finish) of eight accumulators when every channel of the block has both shifts at least
/// [`FAST_SHIFT`] (or a zero multiplier). With `a = bias + acc`, `p = a·m` and
/// `sh = 33 + s`, `⌊(p + 2^(sh−1)) / 2^sh⌋ = ⌊(⌊hi / 2^s⌋ + 1) / 2⌋` where `hi = ⌊p / 2^32⌋` is the
/// high half of the product (nested floor divisions), in `[−2^30, 2^30]`; so the result lies in
/// `[−2^29, 2^29]`, the clamp to `i32` of [`finish`](super::ops::finish) never acts and the zero-point add never
/// wraps. A zero multiplier gives 0 either way. Not saturated to int8: see [`requant8`].
#[inline(always)]
fn requant8_short(s: V3, acc: __m256i, q: &QBlock, h: usize, zp: __m256i) -> __m256i {
    let (avx, avx2) = (s.avx, s.avx2);
    let a = avx2._mm256_add_epi32(acc, q.bias[h]);
    let m = pick(s, q.m_pos[h], q.m_neg[h], a);
    let sh = pick(s, q.s_pos[h], q.s_neg[h], a);
    let pe = avx2._mm256_mul_epi32(a, m);
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    // High halves: the even lanes' moved down, the odd lanes' already in place.
    let hi = avx2._mm256_blend_epi32::<0b1010_1010>(avx2._mm256_srli_epi64::<32>(pe), po);
    // zp + ⌊(t + 1) / 2⌋ = ⌊(t + 1 + 2·zp) / 2⌋ (t is within ±2^30: no overflow); the
    // constant is loop-invariant, so it is computed once per kernel.
    let rnd = avx2._mm256_add_epi32(avx2._mm256_add_epi32(zp, zp), avx._mm256_set1_epi32(1));
    avx2._mm256_srai_epi32::<1>(avx2._mm256_add_epi32(avx2._mm256_srav_epi32(hi, sh), rnd))
}

/// Per `i32` lane, `neg` where `a < 0`, else `pos` (one `vblendvps` on the sign bits).
#[inline(always)]
fn pick(s: V3, pos: __m256i, neg: __m256i, a: __m256i) -> __m256i {
    let avx = s.avx;
    avx._mm256_castps_si256(avx._mm256_blendv_ps(
        avx._mm256_castsi256_ps(pos),
        avx._mm256_castsi256_ps(neg),
        avx._mm256_castsi256_ps(a),
    ))
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

/// [`finish`](super::ops::finish) of eight accumulators (channels `8h .. 8h+8` of `q`) before its
/// saturation to int8: `zp + clamp_i32(round(a·m / 2^sh))` (wrapping), as `i32`. **Callers
/// saturate it to int8 with signed packs** (`vpackssdw` then `vpacksswb`, as [`to_bytes`] does),
/// which is exactly [`finish`](super::ops::finish)'s `sat8`; the clamp is not repeated here.
#[inline(always)]
fn requant8(s: V3, acc: __m256i, q: &QBlock, h: usize, zp: __m256i) -> __m256i {
    if q.fast {
        return requant8_short(s, acc, q, h, zp);
    }
    let (avx, avx2) = (s.avx, s.avx2);
    let a = avx2._mm256_add_epi32(acc, q.bias[h]);
    let m = pick(s, q.m_pos[h], q.m_neg[h], a);
    let sh = pick(s, q.sh_pos[h], q.sh_neg[h], a);
    let low = avx._mm256_set1_epi64x(0xFFFF_FFFF);
    // Even lanes: vpmuldq reads the low (signed) half of each 64-bit lane.
    let pe = avx2._mm256_mul_epi32(a, m);
    let re = round_shift_clamp(s, pe, avx2._mm256_and_si256(sh, low));
    // Odd lanes, moved down.
    let po = avx2._mm256_mul_epi32(avx2._mm256_srli_epi64::<32>(a), avx2._mm256_srli_epi64::<32>(m));
    let ro = round_shift_clamp(s, po, avx2._mm256_srli_epi64::<32>(sh));
    // Both clamped into i32: their low halves are the values; interleave them back.
    let r = avx2._mm256_blend_epi32::<0b1010_1010>(re, avx2._mm256_slli_epi64::<32>(ro));
    avx2._mm256_add_epi32(r, zp)
}

/// Sixteen `i32` lanes (channels 0–7 in `lo`, 8–15 in `hi`) as bytes, each saturated to int8
/// (two signed packs: to `i16`, then to `i8`).
#[inline(always)]
fn to_bytes(s: V3, lo: __m256i, hi: __m256i) -> [u8; 16] {
    let (avx, avx2) = (s.avx, s.avx2);
    // packs works within 128-bit halves: lo0-3 hi0-3 | lo4-7 hi4-7; put the quarters in order.
    let w = avx2._mm256_permute4x64_epi64::<0b11_01_10_00>(avx2._mm256_packs_epi32(lo, hi));
    let b = s.sse2._mm_packs_epi16(avx._mm256_castsi256_si128(w), avx2._mm256_extracti128_si256::<1>(w));
    pulp::cast(b)
}

/// [`requant8`] of the two vectors of a 16-channel block; only the first when `half` (then
/// repeated).
#[inline(always)]
fn requant16(s: V3, a: &[__m256i; 2], q: &QBlock, half: bool, zp: __m256i) -> [__m256i; 2] {
    let lo = requant8(s, a[0], q, 0, zp);
    [lo, if half { lo } else { requant8(s, a[1], q, 1, zp) }]
}

/// Four vectors of `i32` as 32 bytes in order (those of `v[0]`, then `v[1]`, …), each saturated
/// to int8: the packs work within 128-bit halves, the permute puts the 4-byte quarters back in
/// order.
#[inline(always)]
fn pack4(s: V3, v: &[__m256i; 4]) -> __m256i {
    let avx2 = s.avx2;
    let (a, b) = (avx2._mm256_packs_epi32(v[0], v[1]), avx2._mm256_packs_epi32(v[2], v[3]));
    avx2._mm256_permutevar8x32_epi32(
        avx2._mm256_packs_epi16(a, b),
        s.avx._mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7),
    )
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
    // Indexed rather than zipped chunk iterators: those may be left out of line, outside the
    // AVX2 context, with a division per call.
    let full = (src.len() / 16).min(dst.len() / 8);
    for c in 0..full {
        let b = src.get(16 * c..16 * c + 16).and_then(|v| <&[u8; 16]>::try_from(v).ok());
        if let (Some(d8), Some(b)) = (dst.get_mut(8 * c..8 * c + 8), b) {
            d8.copy_from_slice(&widen16(s, b));
        }
    }
    let (dt, st) = (dst.get_mut(8 * full..).unwrap_or_default(), src.get(16 * full..).unwrap_or_default());
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
/// (zero past `cout` or past `kk`). Each row is widened 16 bytes at a time.
#[inline(always)]
fn pack_weights(
    s: V3,
    dst: &mut [[i16; 2 * OB]],
    weights: &[u8],
    kk: usize,
    cout: usize,
    oc0: usize,
    nb: usize,
) {
    let kp = kk.div_ceil(2);
    for (b, blk) in dst.chunks_exact_mut(kp).take(nb).enumerate() {
        for l in 0..OB {
            let oc = oc0 + b * OB + l;
            let row = if oc < cout { weights.get(oc * kk..(oc + 1) * kk).unwrap_or(&[]) } else { &[] };
            let mut c16 = row.chunks_exact(16);
            let mut dsts = blk.chunks_mut(8);
            for (c, d8) in c16.by_ref().zip(dsts.by_ref()) {
                let v = c.try_into().map_or([0; 8], |c| widen16(s, c));
                for (d, p) in d8.iter_mut().zip(v) {
                    d[2 * l] = p as i16;
                    d[2 * l + 1] = (p >> 16) as i16;
                }
            }
            // The last 0–15 bytes, zero-padded (and zero rows past `cout` or a short `weights`).
            let rest = c16.remainder();
            let mut t = [0u8; 16];
            if let (Some(d), Some(v)) = (t.get_mut(..rest.len()), rest.get(..16.min(rest.len()))) {
                d.copy_from_slice(v);
            }
            let v = widen16(s, &t);
            for d8 in dsts {
                for (d, p) in d8.iter_mut().zip(v) {
                    d[2 * l] = p as i16;
                    d[2 * l + 1] = (p >> 16) as i16;
                }
            }
        }
    }
}

/// The micro-kernel: `P` pixels (rows of at least `kp = w.len()` pairs) × 16 channels (packed
/// pairs), or only the first 8 channels when `NV` is 1. A row shorter than `kp` is an error.
#[inline(always)]
fn tile<const NV: usize, const P: usize>(
    s: V3,
    x: [&[i32]; P],
    w: &[[i16; 2 * OB]],
) -> Result<[[__m256i; 2]; P], NnError> {
    let (avx, avx2) = (s.avx, s.avx2);
    let kp = w.len();
    let z = avx._mm256_setzero_si256();
    let mut acc = [[z; 2]; P];
    let mut rows: [&[i32]; P] = [&[]; P];
    for (r, xr) in rows.iter_mut().zip(x) {
        *r = xr.get(..kp).ok_or(NnError::Malformed)?;
    }
    for (i, wi) in w.iter().enumerate() {
        let wv: [__m256i; 2] = pulp::cast(*wi);
        for (a, r) in acc.iter_mut().zip(rows) {
            let b = avx._mm256_set1_epi32(r[i]);
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
    // A 1×1 convolution over whole rows of a dense tensor reads DP pixels in one run.
    let layer_run = k == 1 && g.stride == 1 && g.pad == 0 && contiguous && kk % 2 == 0;
    // Receptive fields of DP pixels as i16 pairs, rows `xs` pairs apart: whole vectors of 8
    // pairs, except for runs. Pairs past `kp` hold anything: their weights are zero.
    let xs = if layer_run { kp } else { kp.div_ceil(8) * 8 };
    let mut xbuf = [0i32; DP * MAX_K / 2];
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
        pack_weights(s, wb, weights, kk, cout, b0 * OB, nb);
        let wb: &[[i16; 2 * OB]] = wb;
        for (bi, qb) in qbs.iter_mut().take(nb).enumerate() {
            let oc0 = (b0 + bi) * OB;
            let qs = q.get_mut(..(cout - oc0).min(OB)).ok_or(NnError::Malformed)?;
            read_q(params, oc0, qs)?;
            *qb = QBlock::new(qs);
        }
        let mut p0 = 0;
        while p0 < npix {
            let np = (npix - p0).min(DP);
            // Gather and widen the fields of pixels p0 .. p0 + np (the rest repeat the last).
            let run = layer_run && np == DP;
            if run {
                let xb = iv.off + p0 * cin;
                let src = input.get(xb..xb + DP * cin).ok_or(NnError::Malformed)?;
                widen_pairs(s, xbuf.get_mut(..DP * kp).ok_or(NnError::Malformed)?, src);
            }
            // (Indexed rather than `chunks_exact`, which divides by `xs` each time.)
            for j in 0..if run { 0 } else { DP } {
                let xr = xbuf.get_mut(j * xs..(j + 1) * xs).ok_or(NnError::Malformed)?;
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
            let mut rows: [&[i32]; DP] = [&[]; DP];
            for (j, r) in rows.iter_mut().enumerate() {
                *r = xbuf.get(j * xs..(j + 1) * xs).ok_or(NnError::Malformed)?;
            }
            for (bi, (wblk, qb)) in wb.chunks_exact(kp).zip(&qbs).enumerate() {
                let oc0 = (b0 + bi) * OB;
                let n = (cout - oc0).min(OB);
                let half = n <= OB / 2;
                let acc = if half { tile::<1, DP>(s, rows, wblk)? } else { tile::<2, DP>(s, rows, wblk)? };
                for (j, a) in acc.iter().enumerate().take(np) {
                    let [lo, hi] = requant16(s, a, qb, half, zpv);
                    let ob = ov.off + (p0 + j) * ov.pixel_stride + oc0;
                    put(output, ob, &to_bytes(s, lo, hi), n)?;
                }
            }
            p0 += np;
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]
        /// The AVX2 add (the split form for shifts 17–47, else the portable loops compiled for
        /// AVX2) gives `add_rows`' bytes on views with gaps and offsets, with and without
        /// upsampling.
        #[test]
        fn avx2_add_is_add_rows(
            (h, w, c) in (1usize..5, 1usize..7, 1usize..41),
            (gap_a, gap_b, gap_o, off) in (0usize..5, 0usize..5, 0usize..5, 0usize..9),
            up in 0usize..2,
            shift in prop_oneof![17u8..=47, 0u8..=62, Just(17), Just(47)],
            m in prop_oneof![proptest::array::uniform2(any::<i32>()), Just([i32::MIN, i32::MAX]), Just([i32::MAX, i32::MIN])],
            (za, zb, zo) in (any::<i8>(), any::<i8>(), any::<i8>()),
            seed: u64,
        ) {
            let Some(s) = v3() else { return Ok(()) };
            let (bh, bw) = if up == 1 { (h.div_ceil(2), w.div_ceil(2)) } else { (h, w) };
            let (h, w) = if up == 1 { (2 * bh, 2 * bw) } else { (h, w) };
            let av = View { h, w, c, pixel_stride: c + gap_a, off };
            let bv = View { h: bh, w: bw, c, pixel_stride: c + gap_b, off: off / 2 };
            let ov = View { h, w, c, pixel_stride: c + gap_o, off: off / 3 };
            let mut x = seed | 1;
            let mut bytes = |n: usize| -> std::vec::Vec<u8> {
                (0..n).map(|i| {
                    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                    // Some extremes, so that the saturation and the largest products are hit.
                    match i % 11 { 0 => 0x80, 1 => 0x7F, _ => x as u8 }
                }).collect()
            };
            let a = bytes(off + h * w * av.pixel_stride);
            let b = bytes(off + bh * bw * bv.pixel_stride);
            let k = AddK { za, zb, zo, m, shift, up };
            let mut want = bytes(off + h * w * ov.pixel_stride);
            let mut got = want.clone();
            add_rows(&k, &a, &av, &b, &bv, &mut want, &ov).unwrap();
            with_avx2_add(s, &k, &a, &av, &b, &bv, &mut got, &ov).unwrap();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn avx2_add_rejects_short_buffers() {
        let Some(s) = v3() else { return };
        let v = View { h: 2, w: 3, c: 16, pixel_stride: 16, off: 0 };
        let k = AddK { za: 1, zb: -2, zo: 3, m: [1 << 29, 1 << 28], shift: 30, up: 0 };
        let (a, b) = ([0u8; 96], [0u8; 96]);
        let mut out = [0u8; 95];
        assert_eq!(with_avx2_add(s, &k, &a, &v, &b, &v, &mut out, &v), Err(NnError::Malformed));
        assert_eq!(with_avx2_add(s, &k, &a[..95], &v, &b, &v, &mut [0u8; 96], &v), Err(NnError::Malformed));
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
