//! Test support shared by the kernel tests: a small deterministic generator of int8 data and
//! requantisation constants with extremes mixed in.

use super::blob::MAX_SHIFT;
use super::depthwise::FAST_MIN_SHIFT;
use super::ops::ChanQ;

/// Linear congruential generator with a tempered output.
pub(super) struct Rng(pub(super) u32);

impl Rng {
    /// The next 32 random bits.
    pub(super) fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
        self.0 ^ (self.0 >> 15)
    }
    /// A byte, one in four an int8 extreme.
    pub(super) fn byte(&mut self) -> u8 {
        let v = self.next();
        match v & 7 {
            0 => 0x80,
            1 => 0x7f,
            _ => (v >> 8) as u8,
        }
    }
    /// An `i32` of random magnitude, sometimes an extreme.
    pub(super) fn int(&mut self) -> i32 {
        let v = self.next();
        match v % 16 {
            0 => i32::MIN,
            1 => i32::MAX,
            2 => 0,
            _ => (self.next() as i32) >> (v % 31),
        }
    }
    /// A requantisation record: `fast` draws both shifts in `33..=MAX_SHIFT` (where the short
    /// requantisation forms apply), otherwise anywhere in `0..=MAX_SHIFT`; zero multipliers now
    /// and then (one in six positive-side, one in four negative-side).
    pub(super) fn chan_q(&mut self, fast: bool) -> ChanQ {
        let lo = if fast { FAST_MIN_SHIFT as u32 } else { 0 };
        let mut sh = || (lo + self.next() % (MAX_SHIFT as u32 + 1 - lo)) as u8;
        let (sh_pos, sh_neg) = (sh(), sh());
        let m_pos = if self.next().is_multiple_of(6) { 0 } else { self.int() };
        let m_neg = if self.next().is_multiple_of(4) { 0 } else { self.int() };
        ChanQ { bias: self.int(), m_pos, m_neg, sh_pos, sh_neg }
    }
}

/// Pixel-stride padding and offsets of a test case's input and output tensors.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Bytes between input pixels beyond the channels.
    pub(super) in_extra: usize,
    /// Offset of the input view.
    pub(super) in_off: usize,
    /// Bytes between output pixels beyond the channels.
    pub(super) out_extra: usize,
    /// Offset of the output view.
    pub(super) out_off: usize,
}

impl Layout {
    /// Dense tensors at offset 0.
    pub(super) const DENSE: Layout = Layout { in_extra: 0, in_off: 0, out_extra: 0, out_off: 0 };
    /// Gaps between pixels and offsets.
    pub(super) const WIDE: Layout = Layout { in_extra: 3, in_off: 5, out_extra: 4, out_off: 3 };
    /// Channel slices of wider tensors, as in a concatenation.
    pub(super) const SLICE: Layout = Layout { in_extra: 16, in_off: 7, out_extra: 32, out_off: 16 };
}
