//! The built-in detector: a small integer-only inference engine for RetinaFace-style models.
//!
//! A model arrives as a `.vlnn` blob (see [`blob`] for the format), produced on the host by the
//! `veil-models` converter from an ONNX file. The blob is parsed zero-copy from flash
//! ([`Model::parse`]), every offset and shape checked once, so that running it cannot index out
//! of bounds. Running a model:
//!
//! ```text
//!  Frame ──► resize::fill_input (area average, letterbox) ──► int8 NHWC input tensor (arena)
//!        ──► exec::run (conv / depthwise / grouped conv with fused ReLU·LeakyReLU, add with
//!            nearest 2× upsampling; int32 accumulators, per-channel fixed-point requantisation)
//!        ──► decode (anchors, LUT sigmoid scores, LUT exp box sizes, corners) ──► Detections
//! ```
//!
//! Activations live in one caller-provided arena (`&mut [u8]`); the converter planned the offsets
//! of every tensor in units of one 32×32 input cell, so the arena needed for an input of
//! `w × h` (multiples of 32) is `Model::arena_units() × (w/32) × (h/32)` bytes
//! ([`Model::arena_len`]). Everything is integer: results are bit-identical on every CPU.
//!
//! Kernels ([`ops::conv2d`] dispatches): dense convolutions (1×1 and k×k) through a gathered
//! receptive field; 3×3 depthwise convolutions on flat rows ([`depthwise`]); exact integer
//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions ([`winograd`]); on x86-64 hosts with
//! AVX2 and the `simd` feature, AVX2 kernels picked at run time, one per kind of layer
//! (`x86`: a `vpmaddwd` micro-kernel of six pixels × 16 channels for dense convolutions, 1×1
//! layers with few input channels, the first layer, 3×3 depthwise, exact integer Winograd
//! F(4×2, 3×3) for 3×3 stride-1 convolutions, the additions, and vectorised requantisation). Every kernel computes the same integers as the reference
//! `conv_generic` (the tests compare them byte for byte), so the device and any host agree
//! bit for bit. The `simd` feature adds the `pulp` crate, whose own code holds the CPU-feature
//! probe and the `unsafe` call into AVX2 code; veil-core itself has no `unsafe`.
//!
//! [`BuiltinDetector`] implements [`crate::detect::Detector`] on top, running a face model, a
//! plate model, or both on each frame.

pub mod blob;
pub mod decode;
pub mod depthwise;
pub mod detector;
pub mod exec;
pub mod ops;
pub mod resize;
#[cfg(test)]
mod testutil;
pub mod winograd;
#[cfg(all(feature = "simd", target_arch = "x86_64"))]
mod x86;

pub use blob::{Model, BLOB_MAGIC, BLOB_VERSION};
pub use decode::Candidate;
pub use detector::{BuiltinDetector, DetectorConfig};

/// Why a model blob was rejected or could not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NnError {
    /// The blob is shorter than its header or than the length it declares.
    Truncated,
    /// The magic bytes are wrong: not a model blob.
    BadMagic,
    /// The format version is not one this engine reads.
    UnsupportedVersion(u16),
    /// The SHA-256 trailer does not match the content.
    Checksum,
    /// A section or record offset breaks the alignment rules of the format.
    Misaligned,
    /// An offset, length, tensor index or shape in the blob is inconsistent.
    Malformed,
    /// The caller's arena is smaller than the model needs at this input size.
    ArenaTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        given: usize,
    },
    /// The input size is zero, not a multiple of 32, or too large.
    BadInputSize,
}

impl core::fmt::Display for NnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NnError::Truncated => f.write_str("model blob truncated"),
            NnError::BadMagic => f.write_str("not a model blob (bad magic)"),
            NnError::UnsupportedVersion(v) => write!(f, "unsupported model blob version {v}"),
            NnError::Checksum => f.write_str("model blob checksum mismatch"),
            NnError::Misaligned => f.write_str("model blob section misaligned"),
            NnError::Malformed => f.write_str("model blob malformed"),
            NnError::ArenaTooSmall { needed, given } => {
                write!(f, "arena too small: {needed} bytes needed, {given} given")
            }
            NnError::BadInputSize => f.write_str("input size must be a non-zero multiple of 32"),
        }
    }
}
