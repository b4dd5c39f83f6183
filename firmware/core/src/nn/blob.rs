//! The `.vlnn` model blob: a versioned, checksummed, flat little-endian format parsed zero-copy.
//!
//! Layout (version 1). Every multi-byte field is little-endian; sections are aligned as stated
//! and the parser rejects a blob that breaks the rule ([`NnError::Misaligned`]).
//!
//! ```text
//! offset  size  field
//!  0       4    magic "VLNN"
//!  4       2    version (1)
//!  6       2    header length (64)
//!  8       4    total length, including the 32-byte trailer
//! 12       2    number of tensors          14  2  number of ops
//! 16       1    number of anchor levels    17  1  class (0 face, 1 plate)
//! 18       1    landmark points per anchor 19  1  channel order of the input (0 RGB, 1 BGR)
//! 20       3    per-channel mean (input order), the value of "real zero" padding
//! 23       1    reserved
//! 24       4    arena units: arena bytes per 32×32 input cell
//! 28       4    tensor table offset (4-aligned), 12-byte records
//! 32       4    op table offset (4-aligned), 32-byte records
//! 36       4    level table offset (4-aligned), 32-byte records
//! 40       4    data section offset (16-aligned)   44  4  data section length
//! 48      16    reserved
//! ...           tables and data
//! end-32  32    SHA-256 of every byte before the trailer
//! ```
//!
//! Tensor record (activations are int8, NHWC, in the arena): `buf_units u32` (offset of the
//! backing buffer, in arena units), `channels u16`, `pixel_stride u16` (channels of the backing
//! buffer: larger than `channels` for a slice of a concatenation), `chan_off u16`,
//! `stride_log2 u8` (spatial size is input size >> this, at most 5), `zero_point i8`.
//! Tensor 0 is the model input: 3 channels at full resolution, `q = pixel - 128`.
//!
//! Op record: `kind u8` (1 conv, 2 add), `_ u8`, `kernel u8`, `stride u8`, `pad u8`, `_ u8`,
//! `groups u16`, `in0 u16`, `in1 u16`, `out u16`, `_ u16`, `w_off u32`, `q_off u32`,
//! `pad_off u32` (`u32::MAX`: pad with the input's zero point), `_ u32`. Offsets are into the
//! data section. A conv has `cout × kernel² × cin/groups` int8 weights (`[cout][ky][kx][ci]`)
//! at `w_off` and one 16-byte record per output channel at `q_off` (4-aligned): `bias i32`,
//! `m_pos i32`, `m_neg i32`, `shift_pos u8`, `shift_neg u8`, `_ u16`: the int32 accumulator
//! `acc` becomes `zp_out + round(acc × m / 2^shift)`, with the `_neg` pair when `acc < 0`
//! (ReLU: `m_neg = 0`; LeakyReLU: `m_neg ≈ α·m_pos`). An add has `m0 i32, m1 i32, shift u32`
//! at `q_off`; `in1` may be at half the resolution of `in0` (nearest 2× upsampling).
//!
//! Level record (one per anchor stride): `step u16`, `min_size0 u16`, `min_size1 u16`,
//! `anchors u16`, `loc u16`, `conf u16`, `landm u16` (`u16::MAX`: none), `_ u16`, then data
//! offsets of four tables: `loc_lin` (256 × i32, Q16 of `variance0 × value`, indexed by the
//! int8 code + 128), `loc_exp` (256 × i32, Q16 of `exp(variance1 × value)`), `score`
//! (512 × u16, Q16 probability of class 1 for `q1 − q0 + 255`), `landm_lin` (like `loc_lin`).

use super::NnError;
use crate::detect::Class;

/// The four magic bytes at the start of every blob.
pub const BLOB_MAGIC: [u8; 4] = *b"VLNN";
/// The format version this engine reads.
pub const BLOB_VERSION: u16 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 64;
/// Trailer (SHA-256) length in bytes.
pub const TRAILER_LEN: usize = 32;
/// Bytes of one tensor record.
pub const TENSOR_REC: usize = 12;
/// Bytes of one op record.
pub const OP_REC: usize = 32;
/// Bytes of one level record.
pub const LEVEL_REC: usize = 32;
/// Bytes of one per-channel conv record.
pub const CHAN_REC: usize = 16;
/// Op kind: convolution.
pub const OP_CONV: u8 = 1;
/// Op kind: element-wise add (second input optionally upsampled 2×).
pub const OP_ADD: u8 = 2;
/// `pad_off` value meaning "pad with the input tensor's zero point".
pub const PAD_ZP: u32 = u32::MAX;
/// `landm` value meaning "no landmark head".
pub const NO_TENSOR: u16 = u16::MAX;
/// Largest `stride_log2` of a tensor (so sizes scale exactly with 32×32 cells).
pub const MAX_STRIDE_LOG2: u8 = 5;
/// Largest requantisation shift.
pub const MAX_SHIFT: u8 = 62;

/// Read a little-endian `u16` at `off`, or `None` past the end.
pub(crate) fn rd_u16(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

/// Read a little-endian `u32` at `off`, or `None` past the end.
pub(crate) fn rd_u32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Read a little-endian `i32` at `off`, or `None` past the end.
pub(crate) fn rd_i32(b: &[u8], off: usize) -> Option<i32> {
    rd_u32(b, off).map(|v| v as i32)
}

/// One activation tensor (see the module docs for the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorDesc {
    /// Offset of the backing buffer in arena units.
    pub buf_units: u32,
    /// Channels of this tensor.
    pub channels: u16,
    /// Channels of the backing buffer (bytes between pixels).
    pub pixel_stride: u16,
    /// First channel of this tensor in the backing buffer.
    pub chan_off: u16,
    /// Spatial downsampling relative to the input, as a power of two.
    pub stride_log2: u8,
    /// Zero point of the int8 quantisation.
    pub zero_point: i8,
}

impl TensorDesc {
    /// Arena units the backing buffer spans.
    pub fn buf_len_units(&self) -> u32 {
        self.pixel_stride as u32 * 1024u32.checked_shr(2 * self.stride_log2 as u32).unwrap_or(0)
    }
}

/// One op (see the module docs for the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpDesc {
    /// [`OP_CONV`] or [`OP_ADD`].
    pub kind: u8,
    /// Square kernel size (conv).
    pub kernel: u8,
    /// Spatial stride, 1 or 2 (conv).
    pub stride: u8,
    /// Zero padding on each side (conv): `kernel / 2`.
    pub pad: u8,
    /// Channel groups (conv).
    pub groups: u16,
    /// First input tensor.
    pub in0: u16,
    /// Second input tensor (add).
    pub in1: u16,
    /// Output tensor.
    pub out: u16,
    /// Weights offset in the data section (conv).
    pub w_off: u32,
    /// Quantisation parameters offset in the data section.
    pub q_off: u32,
    /// Per-input-channel padding values offset, or [`PAD_ZP`].
    pub pad_off: u32,
}

/// One anchor level of the detection head (see the module docs for the record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LevelDesc {
    /// Anchor step in input pixels (= tensor stride).
    pub step: u16,
    /// Anchor sizes in input pixels, one per anchor of a cell.
    pub min_sizes: [u16; 2],
    /// Anchors per cell (1 or 2).
    pub anchors: u16,
    /// Box regression tensor.
    pub loc: u16,
    /// Class logits tensor.
    pub conf: u16,
    /// Landmark regression tensor or [`NO_TENSOR`].
    pub landm: u16,
    /// Data offset of the `loc_lin` table.
    pub loc_lin: u32,
    /// Data offset of the `loc_exp` table.
    pub loc_exp: u32,
    /// Data offset of the score table.
    pub score: u32,
    /// Data offset of the `landm_lin` table.
    pub landm_lin: u32,
}

/// A parsed, validated model borrowing its blob.
#[derive(Clone, Copy, Debug)]
pub struct Model<'m> {
    blob: &'m [u8],
    data: &'m [u8],
    n_tensors: u16,
    n_ops: u16,
    n_levels: u8,
    class: Class,
    n_points: u8,
    bgr: bool,
    mean: [u8; 3],
    arena_units: u32,
    tensors_off: usize,
    ops_off: usize,
    levels_off: usize,
    id: [u8; 16],
}

fn table(total: usize, off: u32, n: usize, rec: usize, align: u32) -> Result<usize, NnError> {
    if !off.is_multiple_of(align) {
        return Err(NnError::Misaligned);
    }
    let off = off as usize;
    let end = n.checked_mul(rec).and_then(|l| l.checked_add(off)).ok_or(NnError::Malformed)?;
    if off < HEADER_LEN || end > total - TRAILER_LEN {
        return Err(NnError::Malformed);
    }
    Ok(off)
}

impl<'m> Model<'m> {
    /// Parse and fully validate a blob. After this, running the model cannot read or write out
    /// of bounds: every error is reported here or as an [`NnError`] at run time.
    pub fn parse(blob: &'m [u8]) -> Result<Self, NnError> {
        Self::parse_inner(blob, true)
    }

    /// [`Model::parse`] without comparing the SHA-256 trailer (every structural check still
    /// runs, so running the result is just as safe). For fuzzing the validator past the
    /// checksum; the model id is then the stored trailer, not a computed digest.
    pub fn parse_skip_checksum(blob: &'m [u8]) -> Result<Self, NnError> {
        Self::parse_inner(blob, false)
    }

    fn parse_inner(blob: &'m [u8], verify: bool) -> Result<Self, NnError> {
        if blob.len() < HEADER_LEN + TRAILER_LEN {
            return Err(NnError::Truncated);
        }
        if blob.get(0..4) != Some(&BLOB_MAGIC[..]) {
            return Err(NnError::BadMagic);
        }
        let version = rd_u16(blob, 4).ok_or(NnError::Truncated)?;
        if version != BLOB_VERSION {
            return Err(NnError::UnsupportedVersion(version));
        }
        let h = |o| rd_u32(blob, o).ok_or(NnError::Truncated);
        if rd_u16(blob, 6) != Some(HEADER_LEN as u16) {
            return Err(NnError::Malformed);
        }
        let total = h(8)? as usize;
        if total > blob.len() {
            return Err(NnError::Truncated);
        }
        if total < HEADER_LEN + TRAILER_LEN {
            return Err(NnError::Malformed);
        }
        let blob = &blob[..total];
        let body = &blob[..total - TRAILER_LEN];
        let trailer = &blob[total - TRAILER_LEN..];
        if verify {
            use sha2::Digest as _;
            if sha2::Sha256::digest(body).as_slice() != trailer {
                return Err(NnError::Checksum);
            }
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&trailer[..16]);

        let n_tensors = rd_u16(blob, 12).ok_or(NnError::Truncated)?;
        let n_ops = rd_u16(blob, 14).ok_or(NnError::Truncated)?;
        let n_levels = blob[16];
        let class = Class::from_index(blob[17]).ok_or(NnError::Malformed)?;
        let n_points = blob[18];
        let bgr = match blob[19] {
            0 => false,
            1 => true,
            _ => return Err(NnError::Malformed),
        };
        let mean = [blob[20], blob[21], blob[22]];
        let arena_units = h(24)?;
        let tensors_off = table(total, h(28)?, n_tensors as usize, TENSOR_REC, 4)?;
        let ops_off = table(total, h(32)?, n_ops as usize, OP_REC, 4)?;
        let levels_off = table(total, h(36)?, n_levels as usize, LEVEL_REC, 4)?;
        let data_off = table(total, h(40)?, h(44)? as usize, 1, 16)?;
        let data = &blob[data_off..data_off + h(44)? as usize];
        if n_tensors == 0 || n_levels == 0 || n_points > 8 {
            return Err(NnError::Malformed);
        }
        let m = Model {
            blob,
            data,
            n_tensors,
            n_ops,
            n_levels,
            class,
            n_points,
            bgr,
            mean,
            arena_units,
            tensors_off,
            ops_off,
            levels_off,
            id,
        };
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<(), NnError> {
        for i in 0..self.n_tensors {
            let t = self.tensor(i).ok_or(NnError::Malformed)?;
            let end = t.buf_units as u64 + t.buf_len_units() as u64;
            if t.channels == 0
                || t.stride_log2 > MAX_STRIDE_LOG2
                || t.chan_off as u32 + t.channels as u32 > t.pixel_stride as u32
                || end > self.arena_units as u64
            {
                return Err(NnError::Malformed);
            }
        }
        let input = self.tensor(0).ok_or(NnError::Malformed)?;
        if input.channels != 3 || input.pixel_stride != 3 || input.stride_log2 != 0 {
            return Err(NnError::Malformed);
        }
        for i in 0..self.n_ops {
            let op = self.op(i).ok_or(NnError::Malformed)?;
            self.validate_op(&op)?;
        }
        for i in 0..self.n_levels {
            let l = self.level(i as usize).ok_or(NnError::Malformed)?;
            let a = l.anchors;
            if a == 0 || a > 2 || l.step == 0 {
                return Err(NnError::Malformed);
            }
            let check = |id: u16, ch: u32| -> Result<(), NnError> {
                let t = self.tensor(id).ok_or(NnError::Malformed)?;
                if t.channels as u32 != ch || (1u32 << t.stride_log2) != l.step as u32 {
                    return Err(NnError::Malformed);
                }
                Ok(())
            };
            check(l.loc, a as u32 * 4)?;
            check(l.conf, a as u32 * 2)?;
            if l.landm != NO_TENSOR {
                check(l.landm, a as u32 * 2 * self.n_points as u32)?;
            }
            self.data_range(l.loc_lin, 1024, 4)?;
            self.data_range(l.loc_exp, 1024, 4)?;
            self.data_range(l.score, 1024, 4)?;
            self.data_range(l.landm_lin, 1024, 4)?;
        }
        Ok(())
    }

    fn validate_op(&self, op: &OpDesc) -> Result<(), NnError> {
        let t_in = self.tensor(op.in0).ok_or(NnError::Malformed)?;
        let t_out = self.tensor(op.out).ok_or(NnError::Malformed)?;
        let disjoint = |a: &TensorDesc, b: &TensorDesc| {
            let (a0, a1) = (a.buf_units as u64, a.buf_units as u64 + a.buf_len_units() as u64);
            let (b0, b1) = (b.buf_units as u64, b.buf_units as u64 + b.buf_len_units() as u64);
            a1 <= b0 || b1 <= a0
        };
        if !disjoint(&t_in, &t_out) {
            return Err(NnError::Malformed);
        }
        match op.kind {
            OP_CONV => {
                let (cin, cout, g) = (t_in.channels as usize, t_out.channels as usize, op.groups as usize);
                let k = op.kernel as usize;
                if g == 0
                    || cin % g != 0
                    || cout % g != 0
                    || k.is_multiple_of(2)
                    || k > 7
                    || op.pad as usize != k / 2
                    || !(op.stride == 1 || op.stride == 2)
                    || t_out.stride_log2 != t_in.stride_log2 + (op.stride - 1)
                {
                    return Err(NnError::Malformed);
                }
                let wlen = cout.checked_mul(k * k * (cin / g)).ok_or(NnError::Malformed)?;
                self.data_range(op.w_off, wlen, 1)?;
                self.data_range(op.q_off, cout * CHAN_REC, 4)?;
                let q = self.data.get(op.q_off as usize..op.q_off as usize + cout * CHAN_REC);
                let q = q.ok_or(NnError::Malformed)?;
                if q.chunks_exact(CHAN_REC).any(|r| r[12] > MAX_SHIFT || r[13] > MAX_SHIFT) {
                    return Err(NnError::Malformed);
                }
                if op.pad_off != PAD_ZP {
                    self.data_range(op.pad_off, cin, 1)?;
                }
            }
            OP_ADD => {
                let t_b = self.tensor(op.in1).ok_or(NnError::Malformed)?;
                if !disjoint(&t_b, &t_out)
                    || t_in.channels != t_out.channels
                    || t_b.channels != t_out.channels
                    || t_in.stride_log2 != t_out.stride_log2
                    || !(t_b.stride_log2 == t_out.stride_log2 || t_b.stride_log2 == t_out.stride_log2 + 1)
                {
                    return Err(NnError::Malformed);
                }
                self.data_range(op.q_off, 12, 4)?;
                let sh = rd_u32(self.data, op.q_off as usize + 8).ok_or(NnError::Malformed)?;
                if sh > MAX_SHIFT as u32 {
                    return Err(NnError::Malformed);
                }
            }
            _ => return Err(NnError::Malformed),
        }
        Ok(())
    }

    fn data_range(&self, off: u32, len: usize, align: u32) -> Result<(), NnError> {
        if !off.is_multiple_of(align) {
            return Err(NnError::Misaligned);
        }
        let end = (off as usize).checked_add(len).ok_or(NnError::Malformed)?;
        if end > self.data.len() {
            return Err(NnError::Malformed);
        }
        Ok(())
    }

    /// The whole blob.
    pub fn bytes(&self) -> &'m [u8] {
        self.blob
    }
    /// The data section (weights, parameters, tables).
    pub fn data(&self) -> &'m [u8] {
        self.data
    }
    /// First 16 bytes of the blob's SHA-256: the model id recorded in the evidence chain.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
    /// What the model detects.
    pub fn class(&self) -> Class {
        self.class
    }
    /// Landmark points per anchor (5 for faces, 4 plate corners).
    pub fn n_points(&self) -> u8 {
        self.n_points
    }
    /// True when the model expects B, G, R channel order.
    pub fn bgr(&self) -> bool {
        self.bgr
    }
    /// Per-channel mean in the model's channel order (the padding value).
    pub fn mean(&self) -> [u8; 3] {
        self.mean
    }
    /// Arena bytes per 32×32 input cell.
    pub fn arena_units(&self) -> u32 {
        self.arena_units
    }
    /// Number of tensors.
    pub fn n_tensors(&self) -> u16 {
        self.n_tensors
    }
    /// Number of ops.
    pub fn n_ops(&self) -> u16 {
        self.n_ops
    }
    /// Number of anchor levels.
    pub fn n_levels(&self) -> usize {
        self.n_levels as usize
    }

    /// Arena bytes needed for a `w × h` input (both multiples of 32).
    pub fn arena_len(&self, w: u32, h: u32) -> Result<usize, NnError> {
        let cells = cells(w, h)?;
        (self.arena_units as usize).checked_mul(cells).ok_or(NnError::BadInputSize)
    }

    /// Tensor `i`, or `None` when out of range.
    pub fn tensor(&self, i: u16) -> Option<TensorDesc> {
        if i >= self.n_tensors {
            return None;
        }
        let o = self.tensors_off + i as usize * TENSOR_REC;
        let b = self.blob.get(o..o + TENSOR_REC)?;
        Some(TensorDesc {
            buf_units: rd_u32(b, 0)?,
            channels: rd_u16(b, 4)?,
            pixel_stride: rd_u16(b, 6)?,
            chan_off: rd_u16(b, 8)?,
            stride_log2: b[10],
            zero_point: b[11] as i8,
        })
    }

    /// Op `i`, or `None` when out of range.
    pub fn op(&self, i: u16) -> Option<OpDesc> {
        if i >= self.n_ops {
            return None;
        }
        let o = self.ops_off + i as usize * OP_REC;
        let b = self.blob.get(o..o + OP_REC)?;
        Some(OpDesc {
            kind: b[0],
            kernel: b[2],
            stride: b[3],
            pad: b[4],
            groups: rd_u16(b, 6)?,
            in0: rd_u16(b, 8)?,
            in1: rd_u16(b, 10)?,
            out: rd_u16(b, 12)?,
            w_off: rd_u32(b, 16)?,
            q_off: rd_u32(b, 20)?,
            pad_off: rd_u32(b, 24)?,
        })
    }

    /// Level `i`, or `None` when out of range.
    pub fn level(&self, i: usize) -> Option<LevelDesc> {
        if i >= self.n_levels as usize {
            return None;
        }
        let o = self.levels_off + i * LEVEL_REC;
        let b = self.blob.get(o..o + LEVEL_REC)?;
        Some(LevelDesc {
            step: rd_u16(b, 0)?,
            min_sizes: [rd_u16(b, 2)?, rd_u16(b, 4)?],
            anchors: rd_u16(b, 6)?,
            loc: rd_u16(b, 8)?,
            conf: rd_u16(b, 10)?,
            landm: rd_u16(b, 12)?,
            loc_lin: rd_u32(b, 16)?,
            loc_exp: rd_u32(b, 20)?,
            score: rd_u32(b, 24)?,
            landm_lin: rd_u32(b, 28)?,
        })
    }
}

/// Largest input side accepted, in pixels.
pub const MAX_INPUT: u32 = 4096;

/// Number of 32×32 cells of a `w × h` input, checking the size rules.
pub fn cells(w: u32, h: u32) -> Result<usize, NnError> {
    if w == 0 || h == 0 || !w.is_multiple_of(32) || !h.is_multiple_of(32) || w > MAX_INPUT || h > MAX_INPUT {
        return Err(NnError::BadInputSize);
    }
    Ok((w / 32) as usize * (h / 32) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::exec;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    /// The committed face model.
    pub(crate) const FACE: &[u8] = include_bytes!("../../../../models/int8/retinaface-mnet025.vlnn");

    fn rehash(b: &mut [u8]) {
        use sha2::Digest as _;
        let n = b.len() - TRAILER_LEN;
        let d = sha2::Sha256::digest(&b[..n]);
        b[n..].copy_from_slice(d.as_slice());
    }

    #[test]
    fn committed_face_model_parses() {
        let m = Model::parse(FACE).unwrap();
        assert_eq!(m.class(), Class::Face);
        assert_eq!(m.n_levels(), 3);
        assert_eq!(m.n_points(), 5);
        assert!(m.bgr());
        assert_eq!(m.arena_len(320, 256).unwrap(), m.arena_units() as usize * 80);
        assert_eq!(m.arena_len(100, 64), Err(NnError::BadInputSize));
    }

    #[test]
    fn truncation_and_corruption_are_typed_errors() {
        assert_eq!(Model::parse(&FACE[..10]).unwrap_err(), NnError::Truncated);
        assert_eq!(Model::parse(&FACE[..FACE.len() - 1]).unwrap_err(), NnError::Truncated);
        let mut b = FACE.to_vec();
        b[0] = b'X';
        assert_eq!(Model::parse(&b).unwrap_err(), NnError::BadMagic);
        let mut b = FACE.to_vec();
        b[4] = 9;
        assert_eq!(Model::parse(&b).unwrap_err(), NnError::UnsupportedVersion(9));
        let mut b = FACE.to_vec();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        assert_eq!(Model::parse(&b).unwrap_err(), NnError::Checksum);
    }

    #[test]
    fn misaligned_sections_are_rejected() {
        for field in [28usize, 32, 36, 40] {
            let mut b = FACE.to_vec();
            let v = u32::from_le_bytes([b[field], b[field + 1], b[field + 2], b[field + 3]]) + 2;
            b[field..field + 4].copy_from_slice(&v.to_le_bytes());
            rehash(&mut b);
            assert_eq!(Model::parse(&b).unwrap_err(), NnError::Misaligned, "field {field}");
        }
    }

    #[test]
    fn arena_too_small_is_an_error() {
        let m = Model::parse(FACE).unwrap();
        let mut arena = vec![0u8; m.arena_len(32, 32).unwrap() - 1];
        assert!(matches!(exec::run(&m, &mut arena, 32, 32), Err(NnError::ArenaTooSmall { .. })));
        let mut arena = vec![0u8; m.arena_len(32, 32).unwrap()];
        assert_eq!(exec::run(&m, &mut arena, 33, 32), Err(NnError::BadInputSize));
        exec::run(&m, &mut arena, 32, 32).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
            let mut b = bytes;
            if magic && b.len() >= 8 {
                b[..4].copy_from_slice(&BLOB_MAGIC);
                b[4..6].copy_from_slice(&BLOB_VERSION.to_le_bytes());
            }
            let _ = Model::parse(&b);
        }

        /// Any change to the tables, with a valid checksum, is either rejected or runs without
        /// panicking.
        #[test]
        fn mutated_tables_never_panic(edits in proptest::collection::vec((0usize..4096, any::<u8>()), 1..6)) {
            let m = Model::parse(FACE).unwrap();
            let data_start = FACE.len() - TRAILER_LEN - m.data().len();
            let mut b = FACE.to_vec();
            for (pos, v) in edits {
                let p = pos % data_start.min(4096);
                b[p] = v;
            }
            rehash(&mut b);
            if let Ok(m) = Model::parse(&b) {
                let n = m.arena_len(32, 32).unwrap_or(0).min(1 << 22);
                let mut arena: Vec<u8> = vec![0; n];
                let _ = exec::run(&m, &mut arena, 32, 32);
            }
        }
    }
}
