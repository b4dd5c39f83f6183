//! The fuzz target bodies on stable: each runs over edge cases plus a deterministic set of
//! generated inputs (20 000 per target; `VEIL_FUZZ_CASES` overrides), and the run must reach
//! every outcome (each rejection reason, accepted frames, valid multi-record chains, each chain
//! error) so a generator that stopped reaching a path fails here instead of passing quietly.
//!
//! `cargo test -- --ignored write_seed_corpus` writes some of the same inputs to
//! `corpus/<target>/` as seeds for `cargo fuzz run`.

use std::collections::BTreeMap;

use veil_core::evidence::{Chain, ChainError, Outcome, ParseError, Record, VerifyError, MAGIC, RECORD_LEN};
use veil_core::frame::{FrameError, Layout, PixelFormat, MAX_DIM};
use veil_fuzz::{evidence_parse, frame_input, frame_layout, EvidenceOutcome, FrameOutcome};

/// SplitMix64: small, deterministic, good enough to spread inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0u8; N];
        a.iter_mut().for_each(|b| *b = self.next() as u8);
        a
    }
}

fn cases() -> usize {
    std::env::var("VEIL_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

fn edge_inputs() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![Vec::new(), MAGIC.to_vec()];
    v.extend((0..=255u8).map(|b| vec![b]));
    for len in [1, 17, RECORD_LEN - 1, RECORD_LEN, RECORD_LEN + 1, 2 * RECORD_LEN, 3 * RECORD_LEN - 1] {
        v.push(vec![0; len]);
        v.push(vec![0xFF; len]);
        let mut h = vec![0; len];
        for (d, s) in h.iter_mut().zip(MAGIC.iter().chain(&[1, 0])) {
            *d = *s;
        }
        v.push(h);
    }
    v
}

fn gen_frame(rng: &mut Rng) -> Vec<u8> {
    let edge = [0, 1, 2, 3, MAX_DIM - 1, MAX_DIM, MAX_DIM + 1, u32::MAX / 3, u32::MAX];
    match rng.below(10) {
        0 => {
            let len = rng.below(48) as usize;
            rng.bytes(len)
        }
        1 => {
            let (w, h) = (edge[rng.below(9) as usize], edge[rng.below(9) as usize]);
            let stride = if rng.below(2) == 0 { rng.next() as u32 } else { w.saturating_mul(3) };
            let tail_len = rng.below(64) as usize;
            frame_input(rng.next() as u8, w, h, stride, rng.next() as u32, &rng.bytes(tail_len))
        }
        _ => {
            let fmt = rng.below(6) as u8;
            let format = PixelFormat::ALL[fmt as usize];
            let dim = |rng: &mut Rng| if rng.below(40) == 0 { 0 } else { rng.range(1, 33) as u32 };
            let (w, h) = (dim(rng), dim(rng));
            let row = w * format.bytes_per_pixel();
            let stride = match rng.below(8) {
                0 => row.saturating_sub(1),
                1 => row + rng.below(8) as u32,
                _ => row,
            };
            let needed = Layout::with_stride(format, w, h, stride).validate().unwrap_or(64) as i64;
            let buf_len = (needed + rng.range(-2, 3)).max(0) as u32;
            // A random number of whole (x, y, value) triples, plus a few odd bytes sometimes.
            let tail_len = rng.below(20) as usize * 10 + rng.below(3) as usize;
            // Plenty of zero-heavy bytes so coordinates land inside the frame.
            let tail: Vec<u8> =
                rng.bytes(tail_len).iter().map(|&b| if b & 0x80 == 0 { b & 0x1F } else { b }).collect();
            frame_input(fmt + 6 * rng.below(3) as u8, w, h, stride, buf_len, &tail)
        }
    }
}

fn frame_key(o: FrameOutcome) -> &'static str {
    match o {
        FrameOutcome::Accepted { .. } => "accepted",
        FrameOutcome::Rejected(FrameError::ZeroDimension) => "zero-dimension",
        FrameOutcome::Rejected(FrameError::TooLarge) => "too-large",
        FrameOutcome::Rejected(FrameError::StrideTooSmall) => "stride-too-small",
        FrameOutcome::Rejected(FrameError::OddDimension) => "odd-dimension",
        FrameOutcome::Rejected(FrameError::BufferTooShort { .. }) => "buffer-too-short",
        FrameOutcome::Rejected(_) => "other",
    }
}

#[test]
fn frame_layout_target() {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut points = 0;
    let mut rng = Rng(0x5EED_F4A3);
    let inputs = edge_inputs().into_iter().chain((0..cases()).map(|_| gen_frame(&mut rng)));
    let mut total = 0;
    for input in inputs {
        let o = frame_layout(&input);
        if let FrameOutcome::Accepted { points: p } = o {
            points += p;
        }
        *counts.entry(frame_key(o)).or_default() += 1;
        total += 1;
    }
    println!("frame_layout: {total} inputs, {points} coordinate points on accepted frames: {counts:?}");
    for key in
        ["accepted", "zero-dimension", "too-large", "stride-too-small", "odd-dimension", "buffer-too-short"]
    {
        assert!(counts.get(key).copied().unwrap_or(0) > 0, "no input reached {key}: {counts:?}");
    }
    assert!(counts["accepted"] * 4 >= total, "too few accepted frames: {counts:?}");
}

fn gen_record(rng: &mut Rng, seq: u64, time_us: u64, prev: [u8; 32]) -> Record {
    Record {
        seq,
        time_us,
        model_id: rng.array(),
        config_hash: rng.array(),
        regions: rng.next() as u16,
        regions_digest: rng.array(),
        outcome: Outcome::ALL[rng.below(Outcome::ALL.len() as u64) as usize],
        prev,
    }
}

fn gen_evidence(rng: &mut Rng) -> Vec<u8> {
    let n = rng.range(1, 8) as usize;
    let records: Vec<Record> = match rng.below(12) {
        0 => {
            let len = rng.below(3 * RECORD_LEN as u64) as usize;
            return rng.bytes(len);
        }
        1 => {
            // Hand-built chains: consecutive links, but times and seqs as the generator likes.
            let mut prev = if rng.below(2) == 0 { [0; 32] } else { rng.array() };
            let mut seq = rng.below(3);
            (0..n)
                .map(|_| {
                    let t = rng.below(1000);
                    let r = gen_record(rng, seq, t, prev);
                    prev = r.digest();
                    seq += 1 + u64::from(rng.below(6) == 0);
                    r
                })
                .collect()
        }
        _ => {
            let mut chain =
                if rng.below(3) == 0 { Chain::resume(rng.next(), rng.array()) } else { Chain::new() };
            let mut t = rng.below(1 << 40);
            (0..n)
                .map(|_| {
                    t += rng.below(40_000);
                    let r = gen_record(rng, 0, 0, [0; 32]);
                    chain.append(t, r.model_id, r.config_hash, r.regions, r.regions_digest, r.outcome)
                })
                .collect()
        }
    };
    let mut recs = records;
    match rng.below(10) {
        0 if recs.len() >= 2 => {
            let (i, j) = (rng.below(recs.len() as u64) as usize, rng.below(recs.len() as u64) as usize);
            recs.swap(i, j);
        }
        1 if recs.len() >= 2 => {
            recs.remove(rng.below(recs.len() as u64) as usize);
        }
        2 => {
            let i = rng.below(recs.len() as u64) as usize;
            let at = rng.below(recs.len() as u64 + 1) as usize;
            recs.insert(at, recs[i]);
        }
        _ => {}
    }
    let mut bytes: Vec<u8> = recs.iter().flat_map(Record::emit).collect();
    match rng.below(8) {
        0 => {
            let bit = rng.below(bytes.len() as u64 * 8) as usize;
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        1 => {
            // Corrupt a header byte of some record: magic, version or outcome.
            let at = rng.below(recs.len() as u64) as usize * RECORD_LEN + rng.below(6) as usize;
            bytes[at] = rng.next() as u8;
        }
        2 => {
            let cut = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(cut);
        }
        3 => {
            let extra = rng.range(1, RECORD_LEN as i64 + 10) as usize;
            bytes.extend(rng.bytes(extra));
        }
        _ => {}
    }
    bytes
}

fn evidence_keys(o: &EvidenceOutcome) -> Vec<String> {
    let parse = match o.parse {
        Ok(()) => "parse:ok".to_string(),
        Err(e) => format!("parse:{}", parse_key(e)),
    };
    let verify = |r: Result<(), VerifyError>| match r {
        Ok(()) => "ok".to_string(),
        Err(VerifyError::Parse { index, error }) => {
            format!("parse-error-{}:{}", if index == 0 { "first" } else { "later" }, parse_key(error))
        }
        Err(VerifyError::Chain(ChainError::BrokenLink { .. })) => "broken-link".into(),
        Err(VerifyError::Chain(ChainError::SequenceGap { .. })) => "sequence-gap".into(),
        Err(VerifyError::Chain(ChainError::TimeWentBack { .. })) => "time-went-back".into(),
        Err(VerifyError::TrailingBytes) => "trailing-bytes".into(),
        Err(e) => format!("other:{e:?}"),
    };
    let mut keys = vec![parse, format!("genesis:{}", verify(o.from_genesis))];
    if let Some(r) = o.from_first {
        keys.push(match r {
            Ok(n) if n >= 2 => "first:ok-multi".into(),
            Ok(_) => "first:ok-single".into(),
            Err(e) => format!("first:{}", verify(Err(e))),
        });
    }
    keys
}

fn parse_key(e: ParseError) -> &'static str {
    match e {
        ParseError::BufferTooShort => "too-short",
        ParseError::BadMagic => "bad-magic",
        ParseError::UnsupportedVersion(_) => "version",
        ParseError::BadOutcome(_) => "outcome",
        _ => "other",
    }
}

#[test]
fn evidence_parse_target() {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut rng = Rng(0xE71D_E9CE);
    let inputs = edge_inputs().into_iter().chain((0..cases()).map(|_| gen_evidence(&mut rng)));
    let mut total = 0;
    for input in inputs {
        for key in evidence_keys(&evidence_parse(&input)) {
            *counts.entry(key).or_default() += 1;
        }
        total += 1;
    }
    println!("evidence_parse: {total} inputs: {counts:?}");
    for key in [
        "parse:ok",
        "parse:too-short",
        "parse:bad-magic",
        "parse:version",
        "parse:outcome",
        "genesis:ok",
        "genesis:broken-link",
        "genesis:sequence-gap",
        "genesis:time-went-back",
        "genesis:trailing-bytes",
        "genesis:parse-error-later:bad-magic",
        "first:ok-multi",
        "first:broken-link",
        "first:sequence-gap",
        "first:time-went-back",
    ] {
        assert!(counts.get(key).copied().unwrap_or(0) > 0, "no input reached {key}: {counts:?}");
    }
}

/// Seeds for `cargo fuzz run`: not a check, so ignored by default.
#[test]
#[ignore = "writes corpus/ seed files; run explicitly"]
fn write_seed_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut rng = Rng(0x00C0_A905);
    for (target, gen) in
        [("frame_layout", gen_frame as fn(&mut Rng) -> Vec<u8>), ("evidence_parse", gen_evidence)]
    {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..200 {
            std::fs::write(d.join(format!("seed-{i:03}")), gen(&mut rng)).unwrap();
        }
    }
}
