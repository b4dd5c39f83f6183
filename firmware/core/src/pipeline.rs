//! Stage 5 — `pipeline`: frame → detect → track → redact → evidence, failing closed.
//!
//! [`Pipeline::process`] takes ownership of a validated [`FrameMut`] and gives back only a
//! [`Redacted`] frame: the type is the proof that the buffer went through redaction, and outputs
//! (a UART, a file writer, an encoder) should accept nothing else. Redaction happens in place, so
//! the caller's buffer is redacted once `process` returns, whatever happened inside.
//!
//! Fail-closed rules, enforced here:
//! - the detector returns an error → the whole frame is redacted with `Config::fallback`
//!   ([`Outcome::FailDetector`]);
//! - the detector returns later than `Config::deadline_us` after the frame's start time, measured
//!   with the caller's [`Clock`] → whole frame ([`Outcome::FailDeadline`]);
//! - more detections than the capacity `N`, or more live tracks than `N` → whole frame
//!   ([`Outcome::FailOverflow`]);
//! - a redaction mode that fails validation is rejected by [`Pipeline::new`], so redaction of a
//!   region cannot fail at run time; should it anyway, the whole frame is filled black.
//!
//! Each frame appends one [`evidence::Record`] to the chain.

use heapless::Vec;
use sha2::{Digest as _, Sha256};

use crate::detect::{self, Class, DetectError, Detection, Detector, Filter};
use crate::evidence::{self, Chain, Digest, Outcome, Record, RegionDigest};
use crate::frame::{FrameMut, Layout, Rect, Rgb};
use crate::redact::{self, Mode, RedactError, Shape};
use crate::track::{Track, TrackError, Tracker, TrackerConfig};

/// A source of monotonic time in microseconds, supplied by the caller (sans-IO: the pipeline
/// never reads a clock itself). Any `FnMut() -> u64` is a clock.
pub trait Clock {
    /// Microseconds since an arbitrary epoch; must not go backwards.
    fn now_us(&mut self) -> u64;
}

impl<F: FnMut() -> u64> Clock for F {
    fn now_us(&mut self) -> u64 {
        self()
    }
}

/// Pipeline settings. All fields are plain data; [`Config::hash`] gives the digest recorded in
/// every evidence record.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// Thresholds, size limits, classes, exclusion zones, NMS.
    pub filter: Filter,
    /// Redaction mode per class (index with [`Class::index`]).
    pub mode: [Mode; Class::COUNT],
    /// Region shape per class (ellipse is usual for faces).
    pub shape: [Shape; Class::COUNT],
    /// Mode used to redact the whole frame when failing closed.
    pub fallback: Mode,
    /// Region dilation, Q8 (`333` ≈ 1.3).
    pub mask_scale_q8: u32,
    /// Detection budget in microseconds from the frame's start; `0` disables the check.
    pub deadline_us: u64,
    /// Tracker settings.
    pub tracker: TrackerConfig,
    /// Seed for the noise mode (combined with the frame sequence number).
    pub seed: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            filter: Filter::default(),
            mode: [Mode::Pixelate { block: 16 }, Mode::Pixelate { block: 16 }],
            shape: [Shape::Ellipse, Shape::Rect],
            fallback: Mode::Fill(Rgb::BLACK),
            mask_scale_q8: redact::DEFAULT_MASK_SCALE_Q8,
            deadline_us: 0,
            tracker: TrackerConfig::default(),
            seed: 0x5645_494C, // "VEIL"
        }
    }
}

impl Config {
    /// SHA-256 over a canonical encoding of every setting (versioned).
    pub fn hash(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"veil-config-v1");
        let f = &self.filter;
        for t in f.threshold {
            h.update(t.to_le_bytes());
        }
        h.update(f.min_size.to_le_bytes());
        h.update(f.max_size.to_le_bytes());
        h.update(f.nms_iou.to_le_bytes());
        for e in f.enabled {
            h.update([e as u8]);
        }
        h.update((f.exclusions.len() as u32).to_le_bytes());
        for z in &f.exclusions {
            for v in [z.x0, z.y0, z.x1, z.y1] {
                h.update(v.to_le_bytes());
            }
        }
        for m in &self.mode {
            h.update(m.code());
        }
        for s in &self.shape {
            h.update([*s as u8]);
        }
        h.update(self.fallback.code());
        h.update(self.mask_scale_q8.to_le_bytes());
        h.update(self.deadline_us.to_le_bytes());
        h.update(self.tracker.code());
        h.update(self.seed.to_le_bytes());
        h.finalize().into()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for m in self.mode.iter().chain(core::iter::once(&self.fallback)) {
            m.validate().map_err(ConfigError::Mode)?;
            // Parameters that are valid for the redaction routine but leave faces recognisable.
            let weak = match *m {
                Mode::Pixelate { block } | Mode::Noise { block, .. } => block < MIN_BLOCK,
                Mode::Blur { radius } => radius < MIN_BLUR_RADIUS,
                _ => false,
            };
            if weak {
                return Err(ConfigError::TooWeak);
            }
        }
        Ok(())
    }
}

/// Why a pipeline could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// A redaction mode has out-of-range parameters.
    Mode(RedactError),
    /// A pixelation block below [`MIN_BLOCK`] or a blur radius below [`MIN_BLUR_RADIUS`]: too weak
    /// to anonymise.
    TooWeak,
}

/// Smallest pixelation (and noise) cell the pipeline accepts, in pixels.
pub const MIN_BLOCK: u16 = 4;
/// Smallest blur radius the pipeline accepts, in pixels.
pub const MIN_BLUR_RADIUS: u16 = 4;

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::Mode(e) => write!(f, "invalid redaction mode: {e:?}"),
            ConfigError::TooWeak => write!(
                f,
                "redaction too weak: pixelate/noise block must be >= {MIN_BLOCK}, blur radius >= {MIN_BLUR_RADIUS}"
            ),
        }
    }
}

/// A frame that has been through the pipeline. The only way to get a buffer back out.
#[derive(Debug)]
pub struct Redacted<'f> {
    frame: FrameMut<'f>,
}

impl<'f> Redacted<'f> {
    /// The redacted bytes (exactly the layout's length).
    pub fn as_bytes(&self) -> &[u8] {
        self.frame.as_frame().as_bytes()
    }
    /// The layout.
    pub fn layout(&self) -> Layout {
        self.frame.layout()
    }
    /// Give the buffer back; it holds the redacted frame.
    pub fn into_bytes(self) -> &'f mut [u8] {
        self.frame.into_bytes()
    }
}

/// What [`Pipeline::process`] returns: the redacted frame and its evidence record.
#[derive(Debug)]
pub struct Processed<'f> {
    /// The frame, redacted in place.
    pub frame: Redacted<'f>,
    /// This frame's evidence record (already appended to the pipeline's chain).
    pub record: Record,
}

impl Processed<'_> {
    /// The outcome recorded for this frame.
    pub fn outcome(&self) -> Outcome {
        self.record.outcome
    }
}

/// One region redacted in the last frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// Area actually redacted (dilated, block-aligned, clipped).
    pub rect: Rect,
    /// Class of the track it came from.
    pub class: Class,
    /// Id of the track it came from.
    pub track: u32,
}

/// The anonymisation pipeline with capacity for `N` detections and `N` tracks per frame.
pub struct Pipeline<D: Detector, const N: usize> {
    detector: D,
    config: Config,
    config_hash: Digest,
    tracker: Tracker<N>,
    chain: Chain,
    detections: Vec<Detection, N>,
    regions: Vec<Region, N>,
}

impl<D: Detector, const N: usize> Pipeline<D, N> {
    /// Build a pipeline; the evidence chain starts at genesis.
    pub fn new(detector: D, config: Config) -> Result<Self, ConfigError> {
        Self::resume(detector, config, Chain::new())
    }

    /// Build a pipeline continuing an existing evidence chain (e.g. after a reboot, from the
    /// sequence number and head digest kept in non-volatile memory).
    pub fn resume(detector: D, config: Config, chain: Chain) -> Result<Self, ConfigError> {
        const { assert!(N > 0, "pipeline capacity must be at least 1") };
        config.validate()?;
        Ok(Pipeline {
            detector,
            config_hash: config.hash(),
            tracker: Tracker::new(config.tracker),
            config,
            chain,
            detections: Vec::new(),
            regions: Vec::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The digest of the configuration recorded in the evidence.
    pub fn config_hash(&self) -> Digest {
        self.config_hash
    }
    /// The evidence chain state (next sequence number and head digest).
    pub fn chain(&self) -> Chain {
        self.chain
    }
    /// The detector.
    pub fn detector(&self) -> &D {
        &self.detector
    }
    /// The detector, mutably (e.g. to change its input size).
    pub fn detector_mut(&mut self) -> &mut D {
        &mut self.detector
    }
    /// Take the pipeline apart, keeping the detector (e.g. to rebuild with another config).
    pub fn into_detector(self) -> D {
        self.detector
    }
    /// Detections of the last frame, after filtering and NMS (empty when it coasted or failed).
    pub fn detections(&self) -> &[Detection] {
        &self.detections
    }
    /// Live tracks after the last frame.
    pub fn tracks(&self) -> &[Track] {
        self.tracker.tracks()
    }
    /// Regions redacted in the last frame (empty when the whole frame was redacted).
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Run detection, tracking, redaction and evidence on one frame.
    pub fn process<'f, C: Clock + ?Sized>(&mut self, clock: &mut C, frame: FrameMut<'f>) -> Processed<'f> {
        self.run(clock, frame, true)
    }

    /// Process a frame without running the detector (`--every N` on a host): tracks coast along
    /// their velocity and are redacted; the record's outcome is [`Outcome::Coasted`].
    pub fn process_coasting<'f, C: Clock + ?Sized>(
        &mut self,
        clock: &mut C,
        frame: FrameMut<'f>,
    ) -> Processed<'f> {
        self.run(clock, frame, false)
    }

    fn run<'f, C: Clock + ?Sized>(
        &mut self,
        clock: &mut C,
        mut frame: FrameMut<'f>,
        detect: bool,
    ) -> Processed<'f> {
        let start = clock.now_us();
        self.detections.clear();
        self.regions.clear();
        let outcome = if detect { self.detect_and_track(clock, start, &frame) } else { self.coast() };
        let seq = self.chain.next_seq();
        let seed = self.config.seed ^ (seq as u32).wrapping_mul(0x9E37_79B9);
        let mut digest = RegionDigest::new();
        let outcome = match outcome {
            Outcome::Normal | Outcome::Coasted => match self.redact_tracks(&mut frame, seed, &mut digest) {
                Ok(()) => outcome,
                Err(_) => {
                    // Unreachable for validated configs; fail closed all the same.
                    digest = RegionDigest::new();
                    self.redact_whole(&mut frame, seed, &mut digest);
                    Outcome::FailDetector
                }
            },
            failed => {
                self.redact_whole(&mut frame, seed, &mut digest);
                failed
            }
        };
        if outcome.is_fail_closed() {
            veil_warn!("frame {} failed closed: {}", seq, outcome.name());
        }
        let regions = digest.count();
        let record = self.chain.append(
            start,
            self.detector.model_id(),
            self.config_hash,
            regions,
            digest.finish(),
            outcome,
        );
        Processed { frame: Redacted { frame }, record }
    }

    fn detect_and_track<C: Clock + ?Sized>(
        &mut self,
        clock: &mut C,
        start: u64,
        frame: &FrameMut<'_>,
    ) -> Outcome {
        let result = self.detector.detect(&frame.as_frame(), self.detections.as_mut_view());
        let end = clock.now_us();
        if let Err(e) = result {
            self.detections.clear();
            // The frame is lost but time passes: age the tracks so hold times keep counting.
            let _ = self.tracker.update(&[]);
            return match e {
                DetectError::CapacityExceeded => Outcome::FailOverflow,
                _ => Outcome::FailDetector,
            };
        }
        if self.config.deadline_us != 0 && end.saturating_sub(start) > self.config.deadline_us {
            // Detections that arrive late are discarded: the frame is already overdue.
            self.detections.clear();
            let _ = self.tracker.update(&[]);
            return Outcome::FailDeadline;
        }
        detect::postprocess(self.detections.as_mut_view(), &self.config.filter);
        match self.tracker.update(&self.detections) {
            Ok(()) => Outcome::Normal,
            Err(TrackError::CapacityExceeded) => Outcome::FailOverflow,
        }
    }

    fn coast(&mut self) -> Outcome {
        self.tracker.coast();
        Outcome::Coasted
    }

    fn redact_tracks(
        &mut self,
        frame: &mut FrameMut<'_>,
        seed: u32,
        digest: &mut RegionDigest,
    ) -> Result<(), RedactError> {
        let layout = frame.layout();
        for (i, t) in self.tracker.tracks().iter().enumerate() {
            let region = redact::region_for(&layout, t.redact_rect(), self.config.mask_scale_q8);
            if region.is_empty() {
                continue;
            }
            let c = t.class.index();
            let mode = self.config.mode[c];
            let done =
                redact::redact(frame, region, mode, self.config.shape[c], seed.wrapping_add(i as u32))?;
            digest.add(done, c as u8, &mode.code());
            // Capacity: tracks ≤ N, so regions ≤ N.
            let _ = self.regions.push(Region { rect: done, class: t.class, track: t.id });
        }
        Ok(())
    }

    fn redact_whole(&mut self, frame: &mut FrameMut<'_>, seed: u32, digest: &mut RegionDigest) {
        self.regions.clear();
        let all = frame.layout().rect();
        let mode = self.config.fallback;
        if redact::redact_all(frame, mode, seed).is_err() {
            // The fallback was validated in `new`; if it fails anyway, zero every byte.
            frame.bytes_mut().fill(0);
        }
        digest.add(all, 0xFF, &mode.code());
    }
}

/// Convenience: a genesis chain state (re-exported for callers that resume chains).
pub const GENESIS: Digest = evidence::GENESIS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, Rgb};
    use heapless::vec::VecView;

    /// A detector that replays a script, one step per frame.
    struct Scripted<'s> {
        steps: &'s [Step],
        i: usize,
    }

    #[derive(Clone, Copy)]
    enum Step {
        Found(&'static [Detection]),
        Error,
        /// Reports this many detections (more than capacity ⇒ overflow).
        Many(usize),
    }

    impl Detector for Scripted<'_> {
        fn detect(
            &mut self,
            _f: &crate::frame::Frame<'_>,
            out: &mut VecView<Detection>,
        ) -> Result<(), DetectError> {
            let step = self.steps.get(self.i).copied().unwrap_or(Step::Found(&[]));
            self.i += 1;
            match step {
                Step::Found(ds) => {
                    for d in ds {
                        out.push(*d).map_err(|_| DetectError::CapacityExceeded)?;
                    }
                    Ok(())
                }
                Step::Error => Err(DetectError::Failed(7)),
                Step::Many(n) => {
                    for k in 0..n {
                        let d = Detection {
                            rect: Rect::from_xywh(k as i32, 0, 4, 4),
                            class: Class::Face,
                            score: 60000,
                        };
                        out.push(d).map_err(|_| DetectError::CapacityExceeded)?;
                    }
                    Ok(())
                }
            }
        }
        fn model_id(&self) -> [u8; 16] {
            *b"scripted-test-01"
        }
    }

    const FACE: Detection = Detection { rect: Rect::new(8, 8, 24, 24), class: Class::Face, score: 60000 };

    fn frame_bytes(format: PixelFormat) -> (std::vec::Vec<u8>, Layout) {
        let layout = Layout::new(format, 64, 48);
        let len = layout.required_len().unwrap();
        // A pattern with no pixel equal to black.
        let buf = (0..len).map(|i| 50 + (i % 150) as u8).collect();
        (buf, layout)
    }

    fn config() -> Config {
        Config {
            mode: [Mode::Fill(Rgb::new(255, 0, 255)), Mode::Fill(Rgb::new(255, 0, 255))],
            shape: [Shape::Rect, Shape::Rect],
            ..Config::default()
        }
    }

    #[test]
    fn normal_frame_redacts_only_the_detection() {
        let steps = [Step::Found(&[FACE])];
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
        let (mut buf, layout) = frame_bytes(PixelFormat::Rgb888);
        let orig = buf.clone();
        let out = p.process(&mut || 0u64, FrameMut::new_checked(&mut buf, layout).unwrap());
        assert_eq!(out.outcome(), Outcome::Normal);
        assert_eq!(out.record.regions, 1);
        assert_eq!(out.record.seq, 0);
        let region = p.regions()[0].rect;
        assert!(region.intersect(&FACE.rect) == FACE.rect, "dilated region covers the box");
        for y in 0..48 {
            for x in 0..64 {
                let i = (y * 64 + x) * 3;
                let inside = region.contains(x as i32, y as i32);
                assert_eq!(buf[i..i + 3] == [255, 0, 255], inside, "pixel ({x},{y})");
                if !inside {
                    assert_eq!(buf[i..i + 3], orig[i..i + 3]);
                }
            }
        }
    }

    fn assert_whole_frame_black(buf: &[u8], format: PixelFormat) {
        let layout = Layout::new(format, 64, 48);
        let f = crate::frame::Frame::new_checked(buf, layout).unwrap();
        for y in 0..48 {
            for x in 0..64 {
                let c = f.rgb(x, y).unwrap();
                assert!(c.r <= 2 && c.g <= 2 && c.b <= 2, "{format:?} ({x},{y}) = {c:?}");
            }
        }
    }

    #[test]
    fn detector_error_fails_closed_on_every_format() {
        for format in PixelFormat::ALL {
            let steps = [Step::Error];
            let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
            let (mut buf, layout) = frame_bytes(format);
            let out = p.process(&mut || 0u64, FrameMut::new_checked(&mut buf, layout).unwrap());
            assert_eq!(out.outcome(), Outcome::FailDetector);
            assert_eq!(out.record.regions, 1);
            assert_whole_frame_black(&buf, format);
        }
    }

    #[test]
    fn deadline_overrun_fails_closed() {
        let steps = [Step::Found(&[FACE])];
        let cfg = Config { deadline_us: 1000, ..config() };
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, cfg).unwrap();
        let (mut buf, layout) = frame_bytes(PixelFormat::Nv12);
        // The clock reads 0 before detection and 1001 after it.
        let mut t = [0u64, 1001].into_iter();
        let mut clock = move || t.next().unwrap_or(2000);
        let out = p.process(&mut clock, FrameMut::new_checked(&mut buf, layout).unwrap());
        assert_eq!(out.outcome(), Outcome::FailDeadline);
        assert!(p.detections().is_empty());
        assert_whole_frame_black(&buf, PixelFormat::Nv12);
    }

    #[test]
    fn deadline_met_exactly_is_normal() {
        let steps = [Step::Found(&[FACE])];
        let cfg = Config { deadline_us: 1000, ..config() };
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, cfg).unwrap();
        let (mut buf, layout) = frame_bytes(PixelFormat::Gray8);
        let mut t = [5u64, 1005].into_iter();
        let mut clock = move || t.next().unwrap_or(2000);
        let out = p.process(&mut clock, FrameMut::new_checked(&mut buf, layout).unwrap());
        assert_eq!(out.outcome(), Outcome::Normal);
        assert_eq!(out.record.time_us, 5);
    }

    #[test]
    fn overflow_fails_closed() {
        let steps = [Step::Many(5)];
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
        let (mut buf, layout) = frame_bytes(PixelFormat::Yuyv422);
        let out = p.process(&mut || 0u64, FrameMut::new_checked(&mut buf, layout).unwrap());
        assert_eq!(out.outcome(), Outcome::FailOverflow);
        assert_whole_frame_black(&buf, PixelFormat::Yuyv422);
    }

    #[test]
    fn evidence_chain_links_frames_and_verifies() {
        let steps = [Step::Found(&[FACE]), Step::Error, Step::Found(&[]), Step::Many(9)];
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
        let mut records = std::vec::Vec::new();
        for k in 0..6u64 {
            let (mut buf, layout) = frame_bytes(PixelFormat::Rgb565);
            let mut clock = move || k * 40_000;
            let out = p.process(&mut clock, FrameMut::new_checked(&mut buf, layout).unwrap());
            records.push(out.record);
        }
        let outcomes: std::vec::Vec<_> = records.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            [
                Outcome::Normal,
                Outcome::FailDetector,
                Outcome::Normal,
                Outcome::FailOverflow,
                Outcome::Normal,
                Outcome::Normal
            ]
        );
        let head = evidence::verify_chain(Chain::new(), records.iter()).unwrap();
        assert_eq!(head, p.chain());
        assert!(records.iter().all(|r| r.config_hash == p.config_hash()));
        assert!(records.iter().all(|r| r.model_id == *b"scripted-test-01"));
    }

    #[test]
    fn missed_detection_is_held_by_tracker() {
        // Detected, missed, detected: the middle frame is still redacted.
        let steps = [Step::Found(&[FACE]), Step::Found(&[]), Step::Found(&[FACE])];
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
        for _ in 0..3 {
            let (mut buf, layout) = frame_bytes(PixelFormat::Bgr888);
            let out = p.process(&mut || 0u64, FrameMut::new_checked(&mut buf, layout).unwrap());
            assert_eq!(out.record.regions, 1);
            let i = (16 * 64 + 16) * 3;
            assert_eq!(buf[i..i + 3], [255, 0, 255], "BGR order of magenta is the same");
        }
    }

    #[test]
    fn coasting_redacts_tracks_without_detection() {
        let steps = [Step::Found(&[FACE]), Step::Error];
        let mut p: Pipeline<_, 4> = Pipeline::new(Scripted { steps: &steps, i: 0 }, config()).unwrap();
        let (mut buf, layout) = frame_bytes(PixelFormat::Rgb888);
        let _ = p.process(&mut || 0u64, FrameMut::new_checked(&mut buf, layout).unwrap());
        let (mut buf, layout) = frame_bytes(PixelFormat::Rgb888);
        let out = p.process_coasting(&mut || 1u64, FrameMut::new_checked(&mut buf, layout).unwrap());
        // The scripted error is never reached: the detector did not run.
        assert_eq!(out.outcome(), Outcome::Coasted);
        assert_eq!(out.record.regions, 1);
    }

    #[test]
    fn invalid_modes_are_rejected_up_front() {
        let cfg = Config { fallback: Mode::Pixelate { block: 0 }, ..config() };
        let r: Result<Pipeline<_, 4>, _> = Pipeline::new(Scripted { steps: &[], i: 0 }, cfg);
        assert!(matches!(r, Err(ConfigError::Mode(_))));
    }

    #[test]
    fn weak_modes_are_rejected() {
        for weak in
            [Mode::Pixelate { block: 3 }, Mode::Blur { radius: 1 }, Mode::Noise { block: 2, amplitude: 40 }]
        {
            let cfg = Config { mode: [weak, Mode::Pixelate { block: 8 }], ..config() };
            let r: Result<Pipeline<_, 4>, _> = Pipeline::new(Scripted { steps: &[], i: 0 }, cfg);
            assert!(matches!(r, Err(ConfigError::TooWeak)), "{weak:?}");
        }
        let ok = Config {
            mode: [Mode::Pixelate { block: MIN_BLOCK }, Mode::Blur { radius: MIN_BLUR_RADIUS }],
            ..config()
        };
        assert!(Pipeline::<_, 4>::new(Scripted { steps: &[], i: 0 }, ok).is_ok());
    }

    #[test]
    fn config_hash_changes_with_any_setting() {
        let a = Config::default();
        let mut b = a.clone();
        b.mask_scale_q8 += 1;
        let mut c = a.clone();
        c.filter.exclusions.push(Rect::new(0, 0, 1, 1)).unwrap();
        let mut d = a.clone();
        d.shape[0] = Shape::Rect;
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_ne!(a.hash(), d.hash());
        assert_eq!(a.hash(), Config::default().hash());
    }
}
