//! Bodies of the veil-core fuzz targets.
//!
//! Each `fuzz_targets/*.rs` binary is a one-line `fuzz_target!` around a function here, so the
//! same code runs under libFuzzer (`cargo fuzz run`, nightly) and under the stable test in
//! `tests/targets.rs`, which feeds it a deterministic set of generated inputs.
//!
//! The bodies do more than "must not panic": every accessor's result is checked against what the
//! validated layout says it must be, and parsing and chain verification are checked against an
//! independent re-computation. A failed check panics, which both harnesses report.

use veil_core::evidence::{self, Chain, ParseError, Record, VerifyError, GENESIS, RECORD_LEN};
use veil_core::frame::{Frame, FrameError, FrameMut, Layout, PixelFormat};

/// Largest buffer the frame target allocates (larger layouts are exercised through rejection).
pub const MAX_BUF: usize = 1 << 18;
/// Bytes allocated past a valid layout's required length, at most.
const SLACK: usize = 64;

/// Fixed-width little-endian fields off the front of the input; missing bytes read as 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

/// What [`frame_layout`] did with one input, for the stable test's coverage counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameOutcome {
    /// The layout was accepted and `points` coordinate pairs were exercised.
    Accepted {
        /// Coordinate pairs tried (each on every accessor).
        points: usize,
    },
    /// The layout or buffer was rejected.
    Rejected(FrameError),
}

/// Encode the input [`frame_layout`] reads: header, then `tail` (pixel fill and coordinates).
pub fn frame_input(format: u8, width: u32, height: u32, stride: u32, buf_len: u32, tail: &[u8]) -> Vec<u8> {
    let mut v = vec![format];
    for x in [width, height, stride, buf_len] {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.extend_from_slice(tail);
    v
}

/// Fuzz body: arbitrary bytes → format index, width, height, stride, buffer length →
/// `Frame::new_checked` / `FrameMut::new_checked`; if accepted, every accessor at arbitrary and
/// edge coordinates, each result checked against the layout.
///
/// Input: `format u8 | width u32 | height u32 | stride u32 | buf_len u32 | tail`, little-endian,
/// missing bytes read as 0. `format` is taken modulo the number of formats; `buf_len` is capped
/// at [`MAX_BUF`] and at 64 bytes past what the layout needs; the buffer is filled by repeating
/// `tail`; `tail` is then also read as up to 64
/// `(x u32, y u32, value u16)` triples.
pub fn frame_layout(data: &[u8]) -> FrameOutcome {
    let mut inp = Input(data);
    let format = PixelFormat::ALL[inp.u8() as usize % PixelFormat::ALL.len()];
    let (width, height, stride, buf_len) = (inp.u32(), inp.u32(), inp.u32(), inp.u32());
    let tail = inp.0;
    let layout = Layout::with_stride(format, width, height, stride);
    // A few bytes past the frame are enough to see a stray write; more would only cost time.
    let slack = layout.validate().map_or(0, |n| n.saturating_add(SLACK));
    let buf_len = (buf_len as usize).min(MAX_BUF).min(slack.max(SLACK));

    let mut buf: Vec<u8> = if tail.is_empty() {
        vec![0x5A; buf_len]
    } else {
        tail.iter().copied().cycle().take(buf_len).collect()
    };
    let original = buf.clone();

    let validated = layout.validate();
    assert_eq!(layout.required_len(), validated);
    let ro = Frame::new_checked(&buf, layout).map(|f| f.as_bytes().len());
    let needed = match (validated, ro) {
        (Err(e), r) => {
            assert_eq!(r, Err(e), "Frame::new_checked must report the layout error");
            assert_eq!(FrameMut::new_checked(&mut buf, layout).err(), Some(e));
            return FrameOutcome::Rejected(e);
        }
        (Ok(needed), Err(e)) => {
            assert!(needed > buf_len, "accepted layout rejected with {e:?}");
            let expected = FrameError::BufferTooShort { needed: needed as u32, got: buf_len as u32 };
            assert_eq!(e, expected);
            assert_eq!(FrameMut::new_checked(&mut buf, layout).err(), Some(expected));
            return FrameOutcome::Rejected(e);
        }
        (Ok(needed), Ok(len)) => {
            assert!(needed <= buf_len);
            assert_eq!(len, needed, "Frame::as_bytes must be exactly required_len");
            needed
        }
    };

    let (w, h) = (width, height);
    let mut points: Vec<(u32, u32, u16)> = [
        (0, 0),
        (w - 1, h - 1),
        (w, h),
        (w - 1, h),
        (w, h - 1),
        (w / 2, h / 2),
        (u32::MAX, 0),
        (0, u32::MAX),
        (u32::MAX, u32::MAX),
    ]
    .iter()
    .map(|&(x, y)| (x, y, 0xFFFF))
    .collect();
    let mut coords = Input(tail);
    while !coords.0.is_empty() && points.len() < 9 + 64 {
        let (x, y) = (coords.u32(), coords.u32());
        let v = u16::from_le_bytes([coords.u8(), coords.u8()]);
        // Small coordinates matter most: fold large ones into the frame half of the time.
        let fold = |c: u32, n: u32| if c & 0x8000_0000 == 0 { c % n.saturating_add(2) } else { c };
        points.push((fold(x, w), fold(y, h), v));
    }

    {
        let mut f =
            FrameMut::new_checked(&mut buf, layout).expect("FrameMut must accept what Frame accepted");
        assert_eq!((f.layout(), f.width(), f.height(), f.format()), (layout, w, h, format));
        assert_eq!(f.as_frame().as_bytes().len(), needed);
        let bpp = format.bytes_per_pixel() as usize;
        for &(x, y, value) in &points {
            let in_frame = x < w && y < h;
            for ch in format.channels() {
                let (sw, sh) = layout.samples(ch);
                let in_range = x < sw && y < sh;
                let before = f.sample(ch, x, y);
                assert_eq!(before.is_some(), in_range, "sample({x},{y}) of {ch:?} in {layout:?}");
                assert_eq!(f.as_frame().sample(ch, x, y), before);
                if let Some(v) = before {
                    assert!(v <= ch.max());
                }
                assert_eq!(f.set_sample(ch, x, y, value), in_range);
                if in_range {
                    assert_eq!(f.sample(ch, x, y), Some(value.min(ch.max())), "write then read back");
                }
            }
            let frame = f.as_frame();
            let rgb = frame.rgb(x, y);
            assert_eq!(rgb.is_some(), in_frame, "rgb({x},{y}) in {layout:?}");
            let luma = frame.luma(x, y);
            assert_eq!(luma.is_some(), in_frame);
            if format == PixelFormat::Gray8 {
                assert_eq!(rgb.map(|c| c.r), luma);
            }
            let row = f.row_mut(y);
            assert_eq!(row.as_ref().map(|r| r.len()), (y < h).then_some(w as usize * bpp));
            if let Some(row) = row {
                if let Some(b) = row.last_mut() {
                    *b = b.wrapping_add(1);
                }
            }
        }
        let r = layout.rect();
        assert_eq!((r.width() as u32, r.height() as u32), (w, h));
        assert_eq!(r.clip(w, h), r);
    }
    // Nothing past the frame's bytes was touched.
    assert_eq!(buf.get(needed..), original.get(needed..));
    FrameOutcome::Accepted { points: points.len() }
}

/// What [`evidence_parse`] saw, for the stable test's coverage counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvidenceOutcome {
    /// `Record::parse` of the input.
    pub parse: Result<(), ParseError>,
    /// `verify_bytes(Chain::new(), input)`.
    pub from_genesis: Result<(), VerifyError>,
    /// When the first record parses: `verify_bytes` starting from that record's own `seq` and
    /// `prev` (so any parsable first record links), with the number of records verified.
    pub from_first: Option<Result<usize, VerifyError>>,
}

/// Fuzz body: arbitrary bytes → `Record::parse`; if it parses, emit must give back the input's
/// first 136 bytes. Then `verify_bytes` over the whole input, from genesis and from the first
/// record's own start, each checked against a re-computation with `Record::parse` +
/// `verify_chain`.
pub fn evidence_parse(data: &[u8]) -> EvidenceOutcome {
    let parsed = Record::parse(data);
    match parsed {
        Ok(r) => {
            let bytes = r.emit();
            assert_eq!(Some(&bytes[..]), data.get(..RECORD_LEN), "emit(parse(b)) != b[..136]");
            assert_eq!(Record::parse(&bytes), Ok(r));
            let mut out = [0u8; RECORD_LEN + 1];
            assert_eq!(r.emit_into(&mut out), Ok(()));
            assert_eq!(out[..RECORD_LEN], bytes[..]);
            assert_eq!(r.emit_into(&mut out[..RECORD_LEN - 1]), Err(ParseError::BufferTooShort));
        }
        Err(e) => {
            let expected = match data.get(..RECORD_LEN) {
                None => ParseError::BufferTooShort,
                Some(b) if b[..4] != evidence::MAGIC => ParseError::BadMagic,
                Some(b) if b[4] != evidence::VERSION => ParseError::UnsupportedVersion(b[4]),
                Some(b) => ParseError::BadOutcome(b[5]),
            };
            assert_eq!(e, expected);
        }
    }

    let from_genesis = check_stream(Chain::new(), data);
    let from_first = parsed.ok().map(|r| {
        let res = check_stream(Chain::resume(r.seq, r.prev), data);
        res.map(|c| c.next_seq().wrapping_sub(r.seq) as usize)
    });
    EvidenceOutcome { parse: parsed.map(|_| ()), from_genesis: from_genesis.map(|_| ()), from_first }
}

/// `verify_bytes(start, data)`, checked against parsing each record and `verify_chain`.
fn check_stream(start: Chain, data: &[u8]) -> Result<Chain, VerifyError> {
    let got = evidence::verify_bytes(start, data);

    let chunks = data.chunks_exact(RECORD_LEN);
    let trailing = !chunks.remainder().is_empty();
    let mut records = Vec::new();
    let mut parse_error = None;
    for (index, chunk) in chunks.enumerate() {
        match Record::parse(chunk) {
            Ok(r) => records.push(r),
            Err(error) => {
                parse_error = Some(VerifyError::Parse { index, error });
                break;
            }
        }
    }
    let expected = match (evidence::verify_chain(start, &records), parse_error) {
        (Err(e), _) => Err(VerifyError::Chain(e)),
        (Ok(_), Some(e)) => Err(e),
        (Ok(_), None) if trailing => Err(VerifyError::TrailingBytes),
        (Ok(end), None) => {
            // The head is the last record's digest; seq advanced by the number of records.
            let head = records.last().map_or(start.head(), Record::digest);
            assert_eq!(end.head(), head);
            assert_eq!(end.next_seq(), start.next_seq().wrapping_add(records.len() as u64));
            for pair in records.windows(2) {
                assert_eq!(pair[1].prev, pair[0].digest());
                assert!(pair[1].time_us >= pair[0].time_us);
            }
            if records.is_empty() {
                assert_eq!(end, start);
            } else if start == Chain::new() {
                assert_eq!(records[0].prev, GENESIS);
            }
            Ok(end)
        }
    };
    assert_eq!(got, expected, "verify_bytes disagrees with parse + verify_chain");
    got
}
