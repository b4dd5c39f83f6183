//! Running `veil-core`'s pipeline over streams of frames: one evidence chain for the whole run,
//! a fresh tracker for every input (tracks never leak from one file into the next), `--every N`
//! coasting, and the per-frame reports.

use std::time::Instant;

use veil_core::detect::Detection;
use veil_core::evidence::{Chain, Outcome, Record};
use veil_core::frame::{FrameMut, Layout};
use veil_core::pipeline::{Config, Pipeline, Region};
use veil_core::track::Track;

use crate::detectors::AnyDetector;
use crate::error::{Error, Result};
use crate::report::{FrameLine, JsonRecord, Stats, StreamFile};

/// Detections and tracks per frame the host pipeline can hold; more fail the frame closed.
pub const CAPACITY: usize = 128;

/// Where frame times come from.
pub enum Timing {
    /// Deterministic synthetic time (files): the frame's time within its input, read before
    /// and after detection, so a deadline can never be overrun. Each input's timeline starts
    /// 1 µs after the previous input's last record, so record times never go back in a run.
    Synthetic(u64),
    /// A monotonic clock (live sources), so `--deadline-ms` applies.
    Live(Instant),
}

/// What one frame produced, for previews and reports.
#[derive(Clone, Debug)]
pub struct FrameResult {
    /// The evidence record.
    pub record: Record,
    /// True when the detector ran.
    pub detected: bool,
    /// Detections after filtering and NMS.
    pub detections: Vec<Detection>,
    /// Live tracks.
    pub tracks: Vec<Track>,
    /// Regions redacted (empty when the whole frame was).
    pub regions: Vec<Region>,
    /// Detector failure message, when the detector said why.
    pub detector_error: Option<String>,
}

impl FrameResult {
    /// The frame's outcome.
    pub fn outcome(&self) -> Outcome {
        self.record.outcome
    }
}

/// The run: detector, configuration, evidence chain and report files.
pub struct Engine {
    detector: AnyDetector,
    config: Config,
    chain: Chain,
    every: u32,
    boxes: Option<StreamFile>,
    evidence: Option<StreamFile>,
    /// Counters over every frame processed.
    pub stats: Stats,
}

impl Engine {
    /// Check `config` and start a chain at genesis.
    pub fn new(detector: AnyDetector, config: Config, every: u32) -> Result<Self> {
        // Validate once up front (the per-stream pipelines are built the same way).
        let mut d = detector;
        Pipeline::<&mut AnyDetector, CAPACITY>::new(&mut d, config.clone())
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Engine {
            detector: d,
            config,
            chain: Chain::new(),
            every: every.max(1),
            boxes: None,
            evidence: None,
            stats: Stats::default(),
        })
    }
    /// Write per-frame JSON lines to this file.
    pub fn set_boxes(&mut self, f: StreamFile) {
        self.boxes = Some(f);
    }
    /// Write the evidence records to this file.
    pub fn set_evidence(&mut self, f: StreamFile) {
        self.evidence = Some(f);
    }
    /// The detector.
    pub fn detector(&self) -> &AnyDetector {
        &self.detector
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The evidence chain state.
    pub fn chain(&self) -> Chain {
        self.chain
    }
    /// Rename the report files into place.
    pub fn finish_reports(&mut self) -> Result<Vec<std::path::PathBuf>> {
        let mut out = Vec::new();
        if let Some(b) = self.boxes.take() {
            out.push(b.finish()?);
        }
        if let Some(e) = self.evidence.take() {
            out.push(e.finish()?);
        }
        Ok(out)
    }

    /// Start a new input: fresh tracks, the chain continues.
    pub fn stream(&mut self, source: &str) -> Result<Stream<'_>> {
        let Engine { detector, config, chain, every, boxes, evidence, stats } = self;
        let pipeline =
            Pipeline::resume(detector, config.clone(), *chain).map_err(|e| Error::Config(e.to_string()))?;
        let base_us = if chain.next_seq() == 0 { 0 } else { chain.last_time_us().saturating_add(1) };
        Ok(Stream {
            base_us,
            pipeline,
            chain,
            every: *every,
            boxes,
            evidence,
            stats,
            source: source.to_string(),
            index: 0,
            failed_closed: 0,
        })
    }
}

/// One input's frames going through the pipeline.
pub struct Stream<'e> {
    pipeline: Pipeline<&'e mut AnyDetector, CAPACITY>,
    chain: &'e mut Chain,
    every: u32,
    boxes: &'e mut Option<StreamFile>,
    evidence: &'e mut Option<StreamFile>,
    stats: &'e mut Stats,
    source: String,
    index: u64,
    failed_closed: u64,
    base_us: u64,
}

impl Stream<'_> {
    /// Frames processed so far.
    pub fn frames(&self) -> u64 {
        self.index
    }
    /// Frames that failed closed (redacted whole) so far.
    pub fn failed_closed(&self) -> u64 {
        self.failed_closed
    }

    /// Redact `buf` (a frame of `layout`) in place and record it.
    pub fn process(&mut self, buf: &mut [u8], layout: Layout, timing: &Timing) -> Result<FrameResult> {
        let frame = FrameMut::new_checked(buf, layout)
            .map_err(|e| Error::Frame { path: self.source.clone().into(), msg: e.to_string() })?;
        let detect = self.index.is_multiple_of(u64::from(self.every));
        let record = match timing {
            Timing::Synthetic(t) => {
                let t = self.base_us.saturating_add(*t);
                let mut clock = move || t;
                run(&mut self.pipeline, &mut clock, frame, detect)
            }
            Timing::Live(start) => {
                let start = *start;
                let mut clock = move || start.elapsed().as_micros() as u64;
                run(&mut self.pipeline, &mut clock, frame, detect)
            }
        };
        *self.chain = self.pipeline.chain();
        let detector_error = if record.outcome == Outcome::FailDetector {
            self.pipeline.detector().take_error()
        } else {
            None
        };
        if record.outcome.is_fail_closed() {
            self.failed_closed += 1;
            if self.failed_closed == 1 {
                let why = detector_error.as_deref().unwrap_or("");
                eprintln!(
                    "veil: {}: frame {}: {}, whole frame redacted{}{}",
                    self.source,
                    self.index,
                    record.outcome.name(),
                    if why.is_empty() { "" } else { ": " },
                    why
                );
            }
        }
        let result = FrameResult {
            record,
            detected: detect,
            detections: self.pipeline.detections().to_vec(),
            tracks: self.pipeline.tracks().to_vec(),
            regions: self.pipeline.regions().to_vec(),
            detector_error,
        };
        let s = &mut *self.stats;
        s.frames += 1;
        s.detected_frames += u64::from(detect);
        s.detections += result.detections.len() as u64;
        s.regions += u64::from(record.regions);
        *s.outcomes.entry(record.outcome.name()).or_default() += 1;
        if let Some(f) = self.evidence.as_mut() {
            f.write(&record.emit())?;
        }
        if let Some(f) = self.boxes.as_mut() {
            f.write_json_line(&FrameLine {
                source: &self.source,
                frame: self.index,
                detected: detect,
                detections: result.detections.iter().map(Into::into).collect(),
                tracks: result.tracks.iter().map(Into::into).collect(),
                regions: result.regions.iter().map(Into::into).collect(),
                record: JsonRecord::from(&record),
            })?;
        }
        self.index += 1;
        Ok(result)
    }
}

fn run<C: FnMut() -> u64>(
    p: &mut Pipeline<&mut AnyDetector, CAPACITY>,
    clock: &mut C,
    frame: FrameMut<'_>,
    detect: bool,
) -> Record {
    let out = if detect { p.process(clock, frame) } else { p.process_coasting(clock, frame) };
    out.record
}
