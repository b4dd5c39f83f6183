//! Stage 5 — `evidence`: one fixed-layout, SHA-256-chained record per frame.
//!
//! For every frame the pipeline appends a [`Record`] to a [`Chain`]: what was redacted (a count
//! and a [`RegionDigest`] of the regions), how the frame was handled ([`Outcome`]), which model
//! and configuration did it, and the digest of the previous record. Each record's `prev` is the
//! SHA-256 of the previous record's 136 bytes ([`Record::digest`]), starting from [`GENESIS`], so
//! altering, dropping, inserting or reordering any record breaks a link that [`verify_chain`]
//! (or [`verify_bytes`] for a file) reports.
//!
//! # What the chain cannot prove on its own
//!
//! Nothing after the **last** record covers it: changing it, or cutting records off the end,
//! leaves a chain that still verifies. The chain is also unkeyed, so anyone can recompute a whole
//! forged chain. Both are closed the same way: the caller keeps the head digest
//! ([`Chain::head`], returned by [`verify_chain`] / [`verify_bytes`]) somewhere the records
//! cannot reach — signed, or stored separately (the audit harness signs it) — and compares the
//! head returned by verification with it. Only then are all records covered.
//!
//! # Record layout
//!
//! [`RECORD_LEN`] = 136 bytes, integers little-endian:
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! |      0 |    4 | magic [`MAGIC`] = `VLEV`                 |
//! |      4 |    1 | version [`VERSION`]                      |
//! |      5 |    1 | outcome ([`Outcome`] code)               |
//! |      6 |    2 | regions (`u16`)                          |
//! |      8 |    8 | seq (`u64`)                              |
//! |     16 |    8 | time_us (`u64`)                          |
//! |     24 |   16 | model_id                                 |
//! |     40 |   32 | config_hash                              |
//! |     72 |   32 | regions_digest                           |
//! |    104 |   32 | prev                                     |
//!
//! Every field except magic, version and outcome is opaque, so [`Record::parse`] and
//! [`Record::emit`] are exact inverses: `parse(emit(r)) == r`, and `emit(parse(b)) == b[..136]`
//! for every `b` that parses.
//!
//! # Invariants of a chain
//!
//! Records carry consecutive `seq` numbers (wrapping at `u64::MAX`), each `prev` is the digest of
//! the record before it, and `time_us` never decreases. [`Chain::append`] is the only way to
//! advance a chain and upholds all three.

use sha2::Digest as _;
use sha2::Sha256;

use crate::frame::Rect;

/// Length of one encoded record in bytes.
pub const RECORD_LEN: usize = 136;
/// The first four bytes of every record.
pub const MAGIC: [u8; 4] = *b"VLEV";
/// The record layout version this crate reads and writes.
pub const VERSION: u8 = 1;

/// A SHA-256 digest.
pub type Digest = [u8; 32];
/// The `prev` digest of the first record of a chain.
pub const GENESIS: Digest = [0; 32];

// Field sizes in layout order; their sum must be the record length.
const _: () = assert!(4 + 1 + 1 + 2 + 8 + 8 + 16 + 32 + 32 + 32 == RECORD_LEN);

/// How a frame was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
#[repr(u8)]
pub enum Outcome {
    /// Detection ran; the regions come from detections and tracks.
    Normal = 0,
    /// Detection was skipped on purpose (frame skipping); the regions come from tracks.
    Coasted = 1,
    /// Fail-closed: the detector returned an error; the whole frame was redacted.
    FailDetector = 2,
    /// Fail-closed: the frame's deadline was overrun; the whole frame was redacted.
    FailDeadline = 3,
    /// Fail-closed: more detections or tracks than capacity; the whole frame was redacted.
    FailOverflow = 4,
}

impl Outcome {
    /// All outcomes, in code order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Normal,
        Outcome::Coasted,
        Outcome::FailDetector,
        Outcome::FailDeadline,
        Outcome::FailOverflow,
    ];

    /// True when the frame was redacted whole because a stage failed.
    pub fn is_fail_closed(self) -> bool {
        matches!(self, Outcome::FailDetector | Outcome::FailDeadline | Outcome::FailOverflow)
    }

    /// The outcome with code `v`, or `None` for an unknown code.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Outcome::Normal),
            1 => Some(Outcome::Coasted),
            2 => Some(Outcome::FailDetector),
            3 => Some(Outcome::FailDeadline),
            4 => Some(Outcome::FailOverflow),
            _ => None,
        }
    }

    /// The lower-case, hyphenated name (`normal`, `coasted`, `fail-detector`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Normal => "normal",
            Outcome::Coasted => "coasted",
            Outcome::FailDetector => "fail-detector",
            Outcome::FailDeadline => "fail-deadline",
            Outcome::FailOverflow => "fail-overflow",
        }
    }
}

impl core::fmt::Display for Outcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why bytes could not be read as a record (or a record could not be written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ParseError {
    /// Fewer than [`RECORD_LEN`] bytes.
    BufferTooShort,
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// A layout version this crate does not know.
    UnsupportedVersion(u8),
    /// An unknown [`Outcome`] code.
    BadOutcome(u8),
}

impl core::fmt::Display for ParseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ParseError::BufferTooShort => write!(f, "evidence record needs {RECORD_LEN} bytes"),
            ParseError::BadMagic => f.write_str("not an evidence record (bad magic)"),
            ParseError::UnsupportedVersion(v) => {
                write!(f, "unsupported evidence record version {v} (expected {VERSION})")
            }
            ParseError::BadOutcome(v) => write!(f, "unknown evidence outcome code {v}"),
        }
    }
}

impl core::error::Error for ParseError {}

/// The evidence of one frame. See the [module docs](self) for the byte layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Record {
    /// Position in the chain, consecutive from the chain's start.
    pub seq: u64,
    /// Capture time given by the caller, in microseconds; never decreases along a chain.
    pub time_us: u64,
    /// Identifies the detector model (opaque to this crate).
    pub model_id: [u8; 16],
    /// Digest of the pipeline configuration in force.
    pub config_hash: Digest,
    /// Number of redacted regions (saturating at `u16::MAX`).
    pub regions: u16,
    /// [`RegionDigest`] of the redacted regions.
    pub regions_digest: Digest,
    /// How the frame was handled.
    pub outcome: Outcome,
    /// [`Record::digest`] of the previous record, or [`GENESIS`].
    pub prev: Digest,
}

/// Reads fixed-size fields off the front of a slice; never panics.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(ParseError::BufferTooShort)?;
        self.0 = rest;
        Ok(*head)
    }
}

/// Writes fixed-size fields to the front of a slice; a field that does not fit is dropped (the
/// record length is checked at compile time, so this does not happen).
struct Writer<'a>(&'a mut [u8]);

impl Writer<'_> {
    fn put<const N: usize>(&mut self, v: [u8; N]) {
        let buf = core::mem::take(&mut self.0);
        if let Some((head, rest)) = buf.split_first_chunk_mut::<N>() {
            *head = v;
            self.0 = rest;
        }
    }
}

impl Record {
    /// Encode as [`RECORD_LEN`] bytes.
    pub fn emit(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        let mut w = Writer(&mut out);
        w.put(MAGIC);
        w.put([VERSION]);
        w.put([self.outcome as u8]);
        w.put(self.regions.to_le_bytes());
        w.put(self.seq.to_le_bytes());
        w.put(self.time_us.to_le_bytes());
        w.put(self.model_id);
        w.put(self.config_hash);
        w.put(self.regions_digest);
        w.put(self.prev);
        out
    }

    /// Encode into the first [`RECORD_LEN`] bytes of `out`; the rest of `out` is left alone.
    pub fn emit_into(&self, out: &mut [u8]) -> Result<(), ParseError> {
        let dst = out.first_chunk_mut::<RECORD_LEN>().ok_or(ParseError::BufferTooShort)?;
        *dst = self.emit();
        Ok(())
    }

    /// Decode the first [`RECORD_LEN`] bytes of `bytes` (anything after them is ignored).
    pub fn parse(bytes: &[u8]) -> Result<Record, ParseError> {
        let mut r = Reader(bytes.first_chunk::<RECORD_LEN>().ok_or(ParseError::BufferTooShort)?);
        if r.take::<4>()? != MAGIC {
            return Err(ParseError::BadMagic);
        }
        let [version] = r.take::<1>()?;
        if version != VERSION {
            return Err(ParseError::UnsupportedVersion(version));
        }
        let [code] = r.take::<1>()?;
        let outcome = Outcome::from_u8(code).ok_or(ParseError::BadOutcome(code))?;
        let regions = u16::from_le_bytes(r.take()?);
        let seq = u64::from_le_bytes(r.take()?);
        let time_us = u64::from_le_bytes(r.take()?);
        Ok(Record {
            seq,
            time_us,
            model_id: r.take()?,
            config_hash: r.take()?,
            regions,
            regions_digest: r.take()?,
            outcome,
            prev: r.take()?,
        })
    }

    /// SHA-256 of [`Record::emit`]: the value the next record's `prev` must hold.
    pub fn digest(&self) -> Digest {
        Sha256::digest(self.emit()).into()
    }
}

/// Incremental digest of the redacted regions of one frame.
///
/// SHA-256 over, for each region in the order added, 25 bytes: the rectangle's `x0, y0, x1, y1`
/// as `i32` little-endian, the class code (`u8`), and the 8-byte redaction mode code given by the
/// caller (opaque here). Order matters: the pipeline adds regions in its deterministic order.
/// A frame with no regions has the digest of the empty string.
#[derive(Clone, Debug, Default)]
pub struct RegionDigest {
    hasher: Sha256,
    count: u16,
}

impl RegionDigest {
    /// An empty digest.
    pub fn new() -> Self {
        RegionDigest::default()
    }

    /// Add one region.
    pub fn add(&mut self, rect: Rect, class: u8, mode_code: &[u8; 8]) {
        let mut buf = [0u8; 25];
        let mut w = Writer(&mut buf);
        w.put(rect.x0.to_le_bytes());
        w.put(rect.y0.to_le_bytes());
        w.put(rect.x1.to_le_bytes());
        w.put(rect.y1.to_le_bytes());
        w.put([class]);
        w.put(*mode_code);
        self.hasher.update(buf);
        self.count = self.count.saturating_add(1);
    }

    /// Regions added so far, saturating at `u16::MAX` (the digest still covers every region).
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The digest of all regions added.
    pub fn finish(self) -> Digest {
        self.hasher.finalize().into()
    }
}

/// Chain state: the next record's sequence number, the previous record's digest (the head) and
/// its time.
///
/// [`Chain::append`] is the only way to advance it; [`verify_chain`] returns the state reached
/// after the records it checked, so verification of a long log can continue from there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Chain {
    next_seq: u64,
    prev: Digest,
    last_time_us: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

impl Chain {
    /// A chain from genesis: next seq 0, head [`GENESIS`].
    pub const fn new() -> Self {
        Chain { next_seq: 0, prev: GENESIS, last_time_us: 0 }
    }

    /// Continue a chain (e.g. after a reboot) whose next record is `next_seq` and whose last
    /// record had digest `prev`. The previous time is unknown, so the next record's time is not
    /// constrained here. Verifying across the resume point in one pass (with the [`Chain`]
    /// returned for the records before it) still requires time not to go back there: if the
    /// caller's clock restarts on reboot, verify each segment from its own `resume` state.
    pub const fn resume(next_seq: u64, prev: Digest) -> Self {
        Chain { next_seq, prev, last_time_us: 0 }
    }

    /// Sequence number of the next record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Digest of the last record (or the start digest when none was added). Compare it with a
    /// separately signed or stored head: that is what covers the last record.
    pub fn head(&self) -> Digest {
        self.prev
    }

    /// Time of the last record (0 when unknown).
    pub fn last_time_us(&self) -> u64 {
        self.last_time_us
    }

    /// Build the next record and advance the chain to it.
    ///
    /// `time_us` is raised to the previous record's time if it is earlier (a clock stepping back
    /// must not produce a chain that fails verification); the record then carries the previous
    /// time. `seq` wraps at `u64::MAX`.
    pub fn append(
        &mut self,
        time_us: u64,
        model_id: [u8; 16],
        config_hash: Digest,
        regions: u16,
        regions_digest: Digest,
        outcome: Outcome,
    ) -> Record {
        if time_us < self.last_time_us {
            veil_warn!("evidence: time went back from {} to {} us; holding", self.last_time_us, time_us);
        }
        let record = Record {
            seq: self.next_seq,
            time_us: time_us.max(self.last_time_us),
            model_id,
            config_hash,
            regions,
            regions_digest,
            outcome,
            prev: self.prev,
        };
        self.advance(&record);
        record
    }

    fn advance(&mut self, r: &Record) {
        self.next_seq = r.seq.wrapping_add(1);
        self.prev = r.digest();
        self.last_time_us = r.time_us;
    }

    /// Check that `r` is the next record of this chain and advance to it.
    fn check(&mut self, index: usize, r: &Record) -> Result<(), ChainError> {
        if r.seq != self.next_seq {
            return Err(ChainError::SequenceGap { index, expected: self.next_seq, found: r.seq });
        }
        if r.prev != self.prev {
            return Err(ChainError::BrokenLink { index });
        }
        if r.time_us < self.last_time_us {
            return Err(ChainError::TimeWentBack { index });
        }
        self.advance(r);
        Ok(())
    }
}

/// Why a sequence of records is not a valid chain. `index` counts records from 0 within the
/// sequence checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ChainError {
    /// The record's `prev` is not the digest of the record before it: that one was altered, or a
    /// record is missing or extra here.
    BrokenLink {
        /// The record whose link is broken.
        index: usize,
    },
    /// The record does not carry the next sequence number: a record was dropped, inserted or moved.
    SequenceGap {
        /// The record with the wrong number.
        index: usize,
        /// The number it should carry.
        expected: u64,
        /// The number it carries.
        found: u64,
    },
    /// The record's time is earlier than the previous record's.
    TimeWentBack {
        /// The record with the earlier time.
        index: usize,
    },
}

impl core::fmt::Display for ChainError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ChainError::BrokenLink { index } => {
                write!(f, "record {index}: prev digest does not match the record before it")
            }
            ChainError::SequenceGap { index, expected, found } => {
                write!(f, "record {index}: sequence number {found}, expected {expected}")
            }
            ChainError::TimeWentBack { index } => {
                write!(f, "record {index}: time is earlier than the record before it")
            }
        }
    }
}

impl core::error::Error for ChainError {}

/// Why a byte stream of records failed verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum VerifyError {
    /// Record `index` could not be parsed.
    Parse {
        /// The record that failed (its bytes start at `index * RECORD_LEN`).
        index: usize,
        /// Why.
        error: ParseError,
    },
    /// The records parse but do not form a chain.
    Chain(ChainError),
    /// Every whole record verified, but the stream ends with a partial record.
    TrailingBytes,
}

impl core::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VerifyError::Parse { index, error } => write!(f, "record {index}: {error}"),
            VerifyError::Chain(e) => e.fmt(f),
            VerifyError::TrailingBytes => {
                write!(f, "stream length is not a multiple of {RECORD_LEN} bytes (partial last record)")
            }
        }
    }
}

impl core::error::Error for VerifyError {}

impl From<ChainError> for VerifyError {
    fn from(e: ChainError) -> Self {
        VerifyError::Chain(e)
    }
}

/// Verify records in order, starting from `start`: the expected `seq` of the first record and
/// its `prev` digest (use [`Chain::new`] for a chain from genesis, or the [`Chain`] returned by
/// an earlier call to continue).
///
/// Any altered, dropped, inserted or reordered record is reported, **except** an altered last
/// record or records cut off the end: for those, compare the head of the returned chain
/// ([`Chain::head`]) with a separately signed or stored head.
pub fn verify_chain<'a, I: IntoIterator<Item = &'a Record>>(
    start: Chain,
    records: I,
) -> Result<Chain, ChainError> {
    let mut chain = start;
    for (index, r) in records.into_iter().enumerate() {
        chain.check(index, r)?;
    }
    Ok(chain)
}

/// [`verify_chain`] over a byte stream of concatenated [`RECORD_LEN`]-byte records (a file).
/// Records are checked in order; the first parse or chain error is returned with its record
/// index. A partial record at the end gives [`VerifyError::TrailingBytes`] once every whole
/// record before it has verified. The same caveat about the last record applies.
pub fn verify_bytes(start: Chain, bytes: &[u8]) -> Result<Chain, VerifyError> {
    let mut chain = start;
    let chunks = bytes.chunks_exact(RECORD_LEN);
    let trailing = !chunks.remainder().is_empty();
    for (index, chunk) in chunks.enumerate() {
        let r = Record::parse(chunk).map_err(|error| VerifyError::Parse { index, error })?;
        chain.check(index, &r)?;
    }
    if trailing {
        return Err(VerifyError::TrailingBytes);
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn sample_record() -> Record {
        Record {
            seq: 0x0807_0605_0403_0201,
            time_us: 0x1112_1314_1516_1718,
            model_id: [0xA0; 16],
            config_hash: [0xC0; 32],
            regions: 0x0102,
            regions_digest: [0xD0; 32],
            outcome: Outcome::FailDeadline,
            prev: [0xE0; 32],
        }
    }

    fn hex(d: &Digest) -> std::string::String {
        d.iter().map(|b| std::format!("{b:02x}")).collect()
    }

    #[test]
    fn layout_is_as_documented() {
        let b = sample_record().emit();
        assert_eq!(&b[0..4], b"VLEV");
        assert_eq!(b[4], 1);
        assert_eq!(b[5], 3);
        assert_eq!(&b[6..8], &[0x02, 0x01]);
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[16..24], &[0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11]);
        assert_eq!(&b[24..40], &[0xA0; 16]);
        assert_eq!(&b[40..72], &[0xC0; 32]);
        assert_eq!(&b[72..104], &[0xD0; 32]);
        assert_eq!(&b[104..136], &[0xE0; 32]);
    }

    #[test]
    fn emit_into_and_parse_lengths() {
        let r = sample_record();
        let mut short = [0u8; RECORD_LEN - 1];
        assert_eq!(r.emit_into(&mut short), Err(ParseError::BufferTooShort));
        assert_eq!(short, [0u8; RECORD_LEN - 1]);
        let mut long = [0x55u8; RECORD_LEN + 4];
        r.emit_into(&mut long).unwrap();
        assert_eq!(&long[..RECORD_LEN], &r.emit()[..]);
        assert_eq!(&long[RECORD_LEN..], &[0x55; 4]);
        assert_eq!(Record::parse(&long), Ok(r));
        assert_eq!(Record::parse(&long[..RECORD_LEN - 1]), Err(ParseError::BufferTooShort));
        assert_eq!(Record::parse(&[]), Err(ParseError::BufferTooShort));
    }

    #[test]
    fn parse_rejects_bad_header() {
        let good = sample_record().emit();
        let mut b = good;
        b[0] = b'X';
        assert_eq!(Record::parse(&b), Err(ParseError::BadMagic));
        let mut b = good;
        b[4] = 2;
        assert_eq!(Record::parse(&b), Err(ParseError::UnsupportedVersion(2)));
        let mut b = good;
        b[5] = 5;
        assert_eq!(Record::parse(&b), Err(ParseError::BadOutcome(5)));
        for code in 0..=255u8 {
            let mut b = good;
            b[5] = code;
            assert_eq!(
                Record::parse(&b).ok().map(|r| r.outcome as u8),
                Outcome::from_u8(code).map(|o| o as u8)
            );
        }
    }

    #[test]
    fn outcomes() {
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(Outcome::from_u8(i as u8), Some(*o));
            assert_eq!(*o as u8, i as u8);
            assert_eq!(o.is_fail_closed(), i >= 2);
        }
        assert_eq!(Outcome::from_u8(5), None);
        assert_eq!(Outcome::FailDetector.name(), "fail-detector");
        assert_eq!(std::format!("{}", Outcome::Coasted), "coasted");
    }

    /// Digests checked against an independent SHA-256 (Python `hashlib`) of the same bytes.
    #[test]
    fn known_digests() {
        assert_eq!(
            hex(&RegionDigest::new().finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut d = RegionDigest::new();
        d.add(Rect::new(1, -2, 300, 0x7FFF_FFFF), 1, b"pixel\0\x10\0");
        assert_eq!(d.count(), 1);
        // bytes: 01000000 feffffff 2c010000 ffffff7f 01 706978656c001000
        assert_eq!(hex(&d.finish()), "403284a36d7b74192603d0cdc7cba02cc138711fc2e5a838c7ae50496aa716a3");
        let r = Record {
            seq: 0,
            time_us: 0,
            model_id: [0; 16],
            config_hash: [0; 32],
            regions: 0,
            regions_digest: [0; 32],
            outcome: Outcome::Normal,
            prev: GENESIS,
        };
        // bytes: "VLEV" 01 00 then 130 zero bytes
        assert_eq!(hex(&r.digest()), "e0e31ac296a61fba01d722e2ae5cbc6ca85b8504f3436c2ed8e64b5a20ebccd3");
    }

    #[test]
    fn region_digest_depends_on_every_field_and_order() {
        let a = (Rect::new(0, 0, 10, 10), 0u8, *b"fill\0\0\0\0");
        let b = (Rect::new(5, 5, 20, 20), 1u8, *b"blur\0\0\0\0");
        let digest = |rs: &[(Rect, u8, [u8; 8])]| {
            let mut d = RegionDigest::new();
            for (r, c, m) in rs {
                d.add(*r, *c, m);
            }
            (d.count(), d.finish())
        };
        let base = digest(&[a, b]);
        assert_eq!(base.0, 2);
        assert_eq!(base, digest(&[a, b]));
        assert_ne!(base.1, digest(&[b, a]).1);
        assert_ne!(base.1, digest(&[a]).1);
        assert_ne!(base.1, digest(&[a, (Rect::new(5, 5, 20, 21), 1, b.2)]).1);
        assert_ne!(base.1, digest(&[a, (b.0, 0, b.2)]).1);
        assert_ne!(base.1, digest(&[a, (b.0, 1, *b"blur\0\0\0\x01")]).1);
    }

    #[test]
    fn region_count_saturates() {
        let mut d = RegionDigest::new();
        for _ in 0..70_000u32 {
            d.add(Rect::new(0, 0, 1, 1), 0, &[0; 8]);
        }
        assert_eq!(d.count(), u16::MAX);
    }

    fn append_n(chain: &mut Chain, n: usize) -> Vec<Record> {
        (0..n)
            .map(|i| {
                chain.append(1000 * i as u64, [i as u8; 16], [1; 32], i as u16, [2; 32], Outcome::Normal)
            })
            .collect()
    }

    #[test]
    fn append_links_records() {
        let mut chain = Chain::new();
        assert_eq!((chain.next_seq(), chain.head()), (0, GENESIS));
        let rs = append_n(&mut chain, 3);
        assert_eq!(rs[0].prev, GENESIS);
        assert_eq!(rs[1].prev, rs[0].digest());
        assert_eq!(rs[2].prev, rs[1].digest());
        assert_eq!((rs[0].seq, rs[1].seq, rs[2].seq), (0, 1, 2));
        assert_eq!(chain.head(), rs[2].digest());
        assert_eq!(chain.next_seq(), 3);
        assert_eq!(verify_chain(Chain::new(), &rs), Ok(chain));
        assert_eq!(verify_chain(Chain::new(), &[]), Ok(Chain::new()));
    }

    #[test]
    fn append_holds_time_when_clock_steps_back() {
        let mut chain = Chain::new();
        let a = chain.append(5000, [0; 16], [0; 32], 0, [0; 32], Outcome::Normal);
        let b = chain.append(4000, [0; 16], [0; 32], 0, [0; 32], Outcome::Normal);
        assert_eq!((a.time_us, b.time_us), (5000, 5000));
        assert_eq!(chain.last_time_us(), 5000);
        assert!(verify_chain(Chain::new(), &[a, b]).is_ok());
    }

    #[test]
    fn verify_reports_each_error() {
        let mut chain = Chain::new();
        let rs = append_n(&mut chain, 4);

        let mut bad = rs.clone();
        bad[1].model_id[0] ^= 1;
        assert_eq!(verify_chain(Chain::new(), &bad), Err(ChainError::BrokenLink { index: 2 }));

        let dropped = [rs[0], rs[2], rs[3]];
        assert_eq!(
            verify_chain(Chain::new(), &dropped),
            Err(ChainError::SequenceGap { index: 1, expected: 1, found: 2 })
        );

        // A record whose time went back, with links recomputed as a forger would.
        let mut forged = Chain::new();
        let a = forged.append(100, [0; 16], [0; 32], 0, [0; 32], Outcome::Normal);
        let b = Record { seq: 1, time_us: 99, prev: a.digest(), ..a };
        assert_eq!(verify_chain(Chain::new(), &[a, b]), Err(ChainError::TimeWentBack { index: 1 }));

        // Starting from the wrong point.
        assert_eq!(verify_chain(Chain::resume(0, [9; 32]), &rs), Err(ChainError::BrokenLink { index: 0 }));
    }

    #[test]
    fn resume_continues_a_chain() {
        let mut chain = Chain::new();
        let first = append_n(&mut chain, 3);
        let mut resumed = Chain::resume(chain.next_seq(), chain.head());
        let second: Vec<Record> = (0..2)
            .map(|i| resumed.append(10_000 + i, [7; 16], [1; 32], 0, [2; 32], Outcome::Coasted))
            .collect();
        let mid = verify_chain(Chain::new(), &first).unwrap();
        let end = verify_chain(mid, &second).unwrap();
        assert_eq!(end.head(), resumed.head());
        assert_eq!(end.next_seq(), 5);
        // The resumed part alone verifies from the resume point.
        assert_eq!(
            verify_chain(Chain::resume(3, first[2].digest()), &second).unwrap().head(),
            resumed.head()
        );
        // A clock that restarted at the resume point only verifies per segment.
        let mut rebooted = Chain::resume(chain.next_seq(), chain.head());
        let early = rebooted.append(5, [7; 16], [1; 32], 0, [2; 32], Outcome::Normal);
        assert_eq!(verify_chain(mid, &[early]), Err(ChainError::TimeWentBack { index: 0 }));
        assert!(verify_chain(Chain::resume(3, mid.head()), &[early]).is_ok());
    }

    #[test]
    fn seq_wraps() {
        let mut chain = Chain::resume(u64::MAX, GENESIS);
        let a = chain.append(0, [0; 16], [0; 32], 0, [0; 32], Outcome::Normal);
        let b = chain.append(0, [0; 16], [0; 32], 0, [0; 32], Outcome::Normal);
        assert_eq!((a.seq, b.seq), (u64::MAX, 0));
        assert!(verify_chain(Chain::resume(u64::MAX, GENESIS), &[a, b]).is_ok());
    }

    fn to_bytes(rs: &[Record]) -> Vec<u8> {
        rs.iter().flat_map(|r| r.emit()).collect()
    }

    #[test]
    fn verify_bytes_errors() {
        let mut chain = Chain::new();
        let rs = append_n(&mut chain, 3);
        let bytes = to_bytes(&rs);
        assert_eq!(verify_bytes(Chain::new(), &bytes), Ok(chain));
        assert_eq!(verify_bytes(Chain::new(), &[]), Ok(Chain::new()));

        let mut b = bytes.clone();
        b.push(0);
        assert_eq!(verify_bytes(Chain::new(), &b), Err(VerifyError::TrailingBytes));
        assert_eq!(verify_bytes(Chain::new(), &bytes[..RECORD_LEN + 5]), Err(VerifyError::TrailingBytes));

        let mut b = bytes.clone();
        b[RECORD_LEN * 2] = b'x';
        assert_eq!(
            verify_bytes(Chain::new(), &b),
            Err(VerifyError::Parse { index: 2, error: ParseError::BadMagic })
        );
        // A chain error before the partial tail wins over the tail.
        let mut b = bytes.clone();
        b[RECORD_LEN + 30] ^= 0x80;
        b.push(0);
        assert_eq!(
            verify_bytes(Chain::new(), &b),
            Err(VerifyError::Chain(ChainError::BrokenLink { index: 2 }))
        );
    }

    #[test]
    fn every_bit_flip_before_the_last_record_is_caught() {
        let mut chain = Chain::new();
        let rs = append_n(&mut chain, 3);
        let bytes = to_bytes(&rs);
        for bit in 0..2 * RECORD_LEN * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(verify_bytes(Chain::new(), &b).is_err(), "bit {bit} not caught");
        }
        for bit in 2 * RECORD_LEN * 8..3 * RECORD_LEN * 8 {
            let mut b = bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            // The last record: only the head shows the change (or it no longer parses).
            if let Ok(end) = verify_bytes(Chain::new(), &b) {
                assert_ne!(end.head(), chain.head(), "bit {bit}");
            }
        }
    }

    #[test]
    fn display_messages() {
        use std::string::ToString;
        assert_eq!(ParseError::BadOutcome(9).to_string(), "unknown evidence outcome code 9");
        assert_eq!(
            ChainError::SequenceGap { index: 3, expected: 4, found: 6 }.to_string(),
            "record 3: sequence number 6, expected 4"
        );
        assert_eq!(
            VerifyError::Parse { index: 2, error: ParseError::UnsupportedVersion(7) }.to_string(),
            "record 2: unsupported evidence record version 7 (expected 1)"
        );
        assert_eq!(
            VerifyError::Chain(ChainError::BrokenLink { index: 1 }).to_string(),
            "record 1: prev digest does not match the record before it"
        );
        assert!(VerifyError::TrailingBytes.to_string().contains("136"));
    }

    fn arb_outcome() -> impl Strategy<Value = Outcome> {
        (0usize..Outcome::ALL.len()).prop_map(|i| Outcome::ALL[i])
    }

    prop_compose! {
        fn arb_record()(seq in any::<u64>(), time_us in any::<u64>(), model_id in any::<[u8; 16]>(),
                        config_hash in any::<[u8; 32]>(), regions in any::<u16>(),
                        regions_digest in any::<[u8; 32]>(), outcome in arb_outcome(),
                        prev in any::<[u8; 32]>()) -> Record {
            Record { seq, time_us, model_id, config_hash, regions, regions_digest, outcome, prev }
        }
    }

    prop_compose! {
        /// A start state and 1..30 records appended to it (times non-decreasing).
        fn arb_chain()(start_seq in prop_oneof![Just(0u64), any::<u64>()], start_prev in any::<[u8; 32]>(),
                       genesis in any::<bool>(),
                       frames in prop::collection::vec(
                           (0u64..50_000, any::<[u8; 16]>(), any::<[u8; 32]>(), any::<u16>(),
                            any::<[u8; 32]>(), arb_outcome()), 1..30))
                      -> (Chain, Vec<Record>, Chain) {
            let start = if genesis { Chain::new() } else { Chain::resume(start_seq, start_prev) };
            let mut chain = start;
            let mut t = 0u64;
            let rs = frames.into_iter().map(|(dt, m, c, n, d, o)| {
                t += dt;
                chain.append(t, m, c, n, d, o)
            }).collect();
            (start, rs, chain)
        }
    }

    proptest! {
        #[test]
        fn emit_parse_round_trip(r in arb_record()) {
            let b = r.emit();
            prop_assert_eq!(Record::parse(&b), Ok(r));
            prop_assert_eq!(r.digest(), Record::parse(&b).unwrap().digest());
        }

        /// Whatever parses re-emits to exactly the bytes it came from.
        #[test]
        fn parse_emit_symmetry(mut b in prop::collection::vec(any::<u8>(), 0..300), header in any::<bool>(),
                               code in 0u8..8) {
            if header && b.len() >= 6 {
                b[..4].copy_from_slice(&MAGIC);
                b[4] = VERSION;
                b[5] = code;
            }
            match Record::parse(&b) {
                Ok(r) => prop_assert_eq!(&r.emit()[..], &b[..RECORD_LEN]),
                Err(_) => prop_assert!(b.len() < RECORD_LEN || b[..4] != MAGIC || b[4] != VERSION || b[5] > 4),
            }
        }

        #[test]
        fn valid_chains_verify((start, rs, end) in arb_chain()) {
            prop_assert_eq!(verify_chain(start, &rs), Ok(end));
            prop_assert_eq!(verify_bytes(start, &to_bytes(&rs)), Ok(end));
        }

        #[test]
        fn bit_flips_are_caught((start, rs, end) in arb_chain(), rec in any::<prop::sample::Index>(),
                                bit in 0..RECORD_LEN * 8) {
            let i = rec.index(rs.len());
            let mut bytes = to_bytes(&rs);
            bytes[i * RECORD_LEN + bit / 8] ^= 1 << (bit % 8);
            let res = verify_bytes(start, &bytes);
            if i + 1 < rs.len() {
                prop_assert!(res.is_err(), "flip in record {} of {} not caught", i, rs.len());
            } else if let Ok(got) = res {
                prop_assert_ne!(got.head(), end.head());
            }
            // The same on parsed records, when the flipped record still parses.
            if let Ok(parsed) = bytes.chunks(RECORD_LEN).map(Record::parse).collect::<Result<Vec<_>, _>>() {
                let res = verify_chain(start, &parsed);
                if i + 1 < rs.len() {
                    prop_assert!(res.is_err());
                } else if let Ok(got) = res {
                    prop_assert_ne!(got.head(), end.head());
                }
            }
        }

        #[test]
        fn dropping_a_record_is_caught((start, rs, end) in arb_chain(), rec in any::<prop::sample::Index>()) {
            let i = rec.index(rs.len());
            let mut cut = rs.clone();
            cut.remove(i);
            let res = verify_chain(start, &cut);
            if i + 1 < rs.len() {
                prop_assert!(res.is_err());
            } else {
                // Dropping the last record: only the head shows it.
                prop_assert_ne!(res.unwrap().head(), end.head());
            }
        }

        #[test]
        fn swapping_two_records_is_caught((start, rs, _end) in arb_chain(), a in any::<prop::sample::Index>(),
                                          b in any::<prop::sample::Index>()) {
            prop_assume!(rs.len() >= 2);
            let (i, j) = (a.index(rs.len()), b.index(rs.len()));
            prop_assume!(i != j);
            let mut sw = rs.clone();
            sw.swap(i, j);
            prop_assert!(verify_chain(start, &sw).is_err());
            prop_assert!(verify_bytes(start, &to_bytes(&sw)).is_err());
        }

        #[test]
        fn inserting_a_duplicate_is_caught((start, rs, _end) in arb_chain(), a in any::<prop::sample::Index>(),
                                           at in any::<prop::sample::Index>()) {
            let i = a.index(rs.len());
            let k = at.index(rs.len() + 1);
            let mut dup = rs.clone();
            dup.insert(k, rs[i]);
            prop_assert!(verify_chain(start, &dup).is_err());
            prop_assert!(verify_bytes(start, &to_bytes(&dup)).is_err());
        }
    }
}
