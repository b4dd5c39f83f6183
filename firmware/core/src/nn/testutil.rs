//! Test support shared by the kernel tests: a small deterministic generator of int8 data and
//! requantisation constants with extremes mixed in.

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
}
