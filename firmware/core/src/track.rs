//! Stage 2 — `track`: keep redacting an object between, and just after, its detections.
//!
//! A [`Tracker`] turns per-frame detections into [`Track`]s. Each frame ([`Tracker::update`]):
//!
//! 1. every track predicts where it is now: its box moved by its velocity (Q8 px/frame, the
//!    sub-pixel remainder is carried, so slow motion accumulates exactly);
//! 2. tracks and detections are associated greedily, highest IoU first. A pair is eligible when
//!    the classes are equal and the detection's IoU with the track's predicted box *or* its
//!    previous box is positive and at least [`TrackerConfig::iou_match_q16`]. Ties are broken
//!    by track age (older track first), then by detection order, so the result is a pure
//!    function of the input;
//! 3. a matched track takes the detection's box exactly (so every detection is redacted where
//!    it was seen) and its velocity is updated: the displacement of the box centre since the
//!    last detection divided by the frames elapsed, averaged with the previous estimate;
//! 4. an unmatched track keeps its predicted box and counts a miss; it is removed once it has
//!    missed more than [`TrackerConfig::hold_frames`] frames in a row — so after a detection
//!    its track lives for at least `hold_frames` more frames, and a single missed detection
//!    never un-redacts an object;
//! 5. every unmatched detection starts a new track (ids are sequential, wrapping `u32`).
//!
//! [`Tracker::coast`] is for frames where detection is skipped on purpose: tracks move along
//! their velocity without counting a miss.
//!
//! [`Track::redact_rect`] is the area to redact for a track: its box swept along
//! `velocity × velocity_gain_q8 / 256` (so the next position is covered too), joined with the
//! box of its last detection (so an object that stopped while undetected stays covered).
//!
//! Invariants, enforced here and checked by the tests below:
//! - at most `N` live tracks; when more are needed, [`Tracker::update`] keeps what fits (a new
//!   detection displaces the track that has missed longest) and returns
//!   [`TrackError::CapacityExceeded`] so the pipeline fails closed;
//! - after an `Ok` update every non-empty detection is the box of a live track of its class;
//! - `redact_rect()` always contains `rect`;
//! - no allocation, no floats, no panic on any input (all coordinate arithmetic saturates).
//!
//! Cost: association is `O(N·D)` IoU evaluations for `D` detections in the usual case (each
//! track's best candidate is cached and only recomputed when another track takes it), bounded
//! by `O(N²·D)`; the stack holds two `N`-entry scratch arrays.

use heapless::Vec;

use crate::detect::{Class, Detection, Score};
use crate::frame::Rect;

/// Largest velocity component, Q8 px/frame (4096 px/frame, far beyond any frame size).
const MAX_VELOCITY_Q8: i64 = 4096 << 8;

/// Tracker settings. The defaults suit 15–30 fps video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TrackerConfig {
    /// Minimum IoU (Q16, `65536` = 1.0) for a detection to continue a track. Default 0.3.
    /// A pair with IoU 0 never matches, even when this is 0.
    pub iou_match_q16: u32,
    /// Frames a track stays after its last detection: it is removed on the
    /// `hold_frames + 1`-th consecutive miss. Default 5. `u16::MAX` holds tracks until
    /// [`Tracker::reset`].
    pub hold_frames: u16,
    /// How much of the per-frame velocity the redaction box is grown by, Q8: `256` covers one
    /// frame of motion ahead, `0` disables the growth. Default 256.
    pub velocity_gain_q8: u32,
}

impl TrackerConfig {
    /// The default settings, usable in `const` contexts (IoU 0.3 = 19 661 / 65 536, rounded).
    pub const DEFAULT: TrackerConfig =
        TrackerConfig { iou_match_q16: 19_661, hold_frames: 5, velocity_gain_q8: 256 };

    /// Stable canonical encoding for config hashing: `iou_match_q16` (u32 LE), `hold_frames`
    /// (u16 LE), `velocity_gain_q8` (u32 LE).
    pub fn code(&self) -> [u8; 10] {
        let [a0, a1, a2, a3] = self.iou_match_q16.to_le_bytes();
        let [b0, b1] = self.hold_frames.to_le_bytes();
        let [c0, c1, c2, c3] = self.velocity_gain_q8.to_le_bytes();
        [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3]
    }
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig::DEFAULT
    }
}

/// One tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Track {
    /// Sequential id (wrapping), unique among live tracks unless 2³² tracks were started.
    pub id: u32,
    /// Class of the detections that formed the track.
    pub class: Class,
    /// Score of the last detection.
    pub score: Score,
    /// The last detected box, or the box predicted from it when frames passed since.
    pub rect: Rect,
    /// Detections associated with this track (saturating).
    pub hits: u32,
    /// Consecutive detection frames without a detection (coasted frames do not count).
    pub misses: u16,
    /// Velocity of the box centre, Q8 px/frame.
    vel: (i32, i32),
    /// Sub-pixel part of the box position, Q8 in `0..256`: the box is at `rect + frac / 256`.
    frac: (i32, i32),
    /// Box of the last detection.
    last_det: Rect,
    /// Frames (missed or coasted) since the last detection.
    since_det: u32,
    /// Copy of [`TrackerConfig::velocity_gain_q8`], for [`Track::redact_rect`].
    gain_q8: u32,
}

impl Track {
    fn start(id: u32, d: &Detection, gain_q8: u32) -> Self {
        Track {
            id,
            class: d.class,
            score: d.score,
            rect: d.rect,
            hits: 1,
            misses: 0,
            vel: (0, 0),
            frac: (0, 0),
            last_det: d.rect,
            since_det: 0,
            gain_q8,
        }
    }

    /// Velocity of the box centre in Q8 pixels per frame (`256` = 1 px/frame), `(x, y)`.
    pub fn velocity_q8(&self) -> (i32, i32) {
        self.vel
    }

    /// The area to redact for this track: the box swept from its current (sub-pixel) position
    /// to that position moved by `velocity × gain`, rounded outward, joined with the box of the
    /// last detection. Always contains [`Track::rect`].
    pub fn redact_rect(&self) -> Rect {
        let g = self.gain_q8 as i64;
        // Offsets in Q16 px of the sweep's ends relative to `rect`, rounded outward to pixels.
        let span = |frac: i32, v: i32| {
            let a = (frac as i64) << 8;
            let b = a + v as i64 * g;
            let lo = a.min(b).div_euclid(1 << 16);
            let hi = -((-a.max(b)).div_euclid(1 << 16));
            (lo, hi)
        };
        let (lx, hx) = span(self.frac.0, self.vel.0);
        let (ly, hy) = span(self.frac.1, self.vel.1);
        let r = &self.rect;
        let swept = Rect::new(
            sat(r.x0 as i64 + lx),
            sat(r.y0 as i64 + ly),
            sat(r.x1 as i64 + hx),
            sat(r.y1 as i64 + hy),
        );
        swept.union(&self.last_det)
    }

    /// The box and sub-pixel remainder one frame of motion ahead.
    fn predicted(&self) -> (Rect, (i32, i32)) {
        let step = |frac: i32, v: i32| {
            let t = frac as i64 + v as i64;
            (t.div_euclid(256), t.rem_euclid(256) as i32)
        };
        let (dx, fx) = step(self.frac.0, self.vel.0);
        let (dy, fy) = step(self.frac.1, self.vel.1);
        let r = &self.rect;
        let moved = Rect::new(
            sat(r.x0 as i64 + dx),
            sat(r.y0 as i64 + dy),
            sat(r.x1 as i64 + dx),
            sat(r.y1 as i64 + dy),
        );
        (moved, (fx, fy))
    }

    /// Move along the velocity by one frame.
    fn advance(&mut self) {
        let (rect, frac) = self.predicted();
        self.rect = rect;
        self.frac = frac;
        self.since_det = self.since_det.saturating_add(1);
    }

    /// IoU used for association: the better of the previous and the predicted box.
    fn match_iou(&self, predicted: &Rect, d: &Detection) -> u32 {
        // Most pairs do not overlap at all: skip the divisions for them.
        let iou = |r: &Rect| if d.rect.intersect(r).is_empty() { 0 } else { d.rect.iou_q16(r) };
        iou(&self.rect).max(iou(predicted))
    }

    /// Take detection `d`, seen `since_det + 1` frames after the previous one.
    fn observe(&mut self, d: &Detection) {
        let frames = self.since_det.saturating_add(1) as i64;
        // Doubled centres keep odd sizes exact; ×128 turns a doubled pixel offset into Q8.
        let meas = |p0: i32, p1: i32, c0: i32, c1: i32| {
            let d2 = (c0 as i64 + c1 as i64) - (p0 as i64 + p1 as i64);
            (d2 * 128 / frames).clamp(-MAX_VELOCITY_Q8, MAX_VELOCITY_Q8)
        };
        let (p, c) = (&self.last_det, &d.rect);
        let mx = meas(p.x0, p.x1, c.x0, c.x1);
        let my = meas(p.y0, p.y1, c.y0, c.y1);
        // The first measurement is taken as is, later ones averaged in (division truncates
        // toward zero, so motion to the left and to the right is treated alike).
        self.vel = if self.hits >= 2 {
            (((self.vel.0 as i64 + mx) / 2) as i32, ((self.vel.1 as i64 + my) / 2) as i32)
        } else {
            (mx as i32, my as i32)
        };
        self.rect = d.rect;
        self.last_det = d.rect;
        self.frac = (0, 0);
        self.since_det = 0;
        self.score = d.score;
        self.hits = self.hits.saturating_add(1);
        self.misses = 0;
    }
}

fn sat(v: i64) -> i32 {
    v.clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

/// Why a tracker update could not keep every object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TrackError {
    /// More live tracks were needed than the tracker holds: some detections got no track, or
    /// held tracks were dropped early to make room. The tracker is still consistent.
    CapacityExceeded,
}

impl core::fmt::Display for TrackError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TrackError::CapacityExceeded => f.write_str("more live tracks than tracker capacity"),
        }
    }
}

/// Associates detections over frames; holds at most `N` tracks. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct Tracker<const N: usize> {
    cfg: TrackerConfig,
    /// Live tracks, in creation order (oldest first).
    tracks: Vec<Track, N>,
    next_id: u32,
}

impl<const N: usize> Tracker<N> {
    /// An empty tracker. `N` must be at least 1 (checked at compile time).
    pub const fn new(cfg: TrackerConfig) -> Self {
        const { assert!(N > 0, "Tracker capacity N must be at least 1") };
        Tracker { cfg, tracks: Vec::new(), next_id: 0 }
    }

    /// The settings.
    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Live tracks, oldest first.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Forget every track and restart ids at 0: the tracker is then identical to a new one.
    pub fn reset(&mut self) {
        self.tracks.clear();
        self.next_id = 0;
    }

    /// A frame where detection was skipped on purpose: every track moves along its velocity;
    /// no miss is counted and no track is removed.
    pub fn coast(&mut self) {
        for t in self.tracks.iter_mut() {
            t.advance();
        }
    }

    /// One frame's detections (after filtering and NMS). See the [module docs](self) for the
    /// steps. Detections with an empty box cover no pixel and are ignored.
    ///
    /// Returns [`TrackError::CapacityExceeded`] when more than `N` tracks would be live; the
    /// tracker then holds `N` tracks: every matched track, new tracks for the detections in
    /// slice order as far as they fit, displacing held (unmatched) tracks with the most misses
    /// first. The caller should redact the whole frame.
    pub fn update(&mut self, detections: &[Detection]) -> Result<(), TrackError> {
        let n = self.tracks.len();
        // assigned[i]: detection taken by track i this frame.
        let mut assigned: [Option<usize>; N] = [None; N];
        // best[i]: track i's best still-free candidate (IoU, detection index).
        let mut best: [Option<(u32, usize)>; N] = [None; N];
        let taken = |assigned: &[Option<usize>; N], j: usize| assigned.iter().take(n).any(|a| *a == Some(j));

        for (i, slot) in best.iter_mut().enumerate().take(n) {
            *slot = self.best_candidate(i, detections, &assigned);
        }
        // Greedy: repeatedly take the globally best pair (IoU desc, track index asc, detection
        // index asc). A cached candidate stays valid until another track takes it.
        loop {
            let mut pick: Option<(usize, u32, usize)> = None;
            for i in 0..n {
                if assigned.get(i).copied().flatten().is_some() {
                    continue;
                }
                if let Some(Some((iou, j))) = best.get(i).copied() {
                    if pick.is_none_or(|(_, p, _)| iou > p) {
                        pick = Some((i, iou, j));
                    }
                }
            }
            let Some((i, _, j)) = pick else { break };
            if let Some(a) = assigned.get_mut(i) {
                *a = Some(j);
            }
            for k in 0..n {
                let free = assigned.get(k).copied().flatten().is_none();
                let stale = matches!(best.get(k), Some(Some((_, bj))) if *bj == j);
                if free && stale {
                    let candidate = self.best_candidate(k, detections, &assigned);
                    if let Some(b) = best.get_mut(k) {
                        *b = candidate;
                    }
                }
            }
        }

        for (t, a) in self.tracks.iter_mut().zip(assigned.iter()) {
            match a.and_then(|j| detections.get(j)) {
                Some(d) => t.observe(d),
                None => {
                    t.advance();
                    t.misses = t.misses.saturating_add(1);
                }
            }
        }
        let hold = self.cfg.hold_frames;
        self.tracks.retain(|t| t.misses <= hold);

        let mut overflow = 0u32;
        for (j, d) in detections.iter().enumerate() {
            if d.rect.is_empty() || taken(&assigned, j) {
                continue;
            }
            if self.tracks.is_full() {
                overflow = overflow.saturating_add(1);
                // Displace the held track that has gone longest without a detection (oldest
                // first on ties); tracks detected this frame have `misses == 0` and stay.
                let mut victim: Option<(usize, u16)> = None;
                for (k, t) in self.tracks.iter().enumerate() {
                    if t.misses > 0 && victim.is_none_or(|(_, m)| t.misses > m) {
                        victim = Some((k, t.misses));
                    }
                }
                match victim {
                    Some((k, _)) if k < self.tracks.len() => {
                        self.tracks.remove(k);
                    }
                    _ => continue,
                }
            }
            if self.tracks.push(Track::start(self.next_id, d, self.cfg.velocity_gain_q8)).is_ok() {
                self.next_id = self.next_id.wrapping_add(1);
            }
        }
        if overflow > 0 {
            veil_warn!("tracker full: {} detections needed room beyond capacity {}", overflow, N as u32);
            return Err(TrackError::CapacityExceeded);
        }
        Ok(())
    }

    /// Track `i`'s best free detection: highest IoU, then lowest index.
    fn best_candidate(
        &self,
        i: usize,
        dets: &[Detection],
        assigned: &[Option<usize>; N],
    ) -> Option<(u32, usize)> {
        let t = self.tracks.get(i)?;
        let (predicted, _) = t.predicted();
        let n = self.tracks.len();
        let mut best: Option<(u32, usize)> = None;
        for (j, d) in dets.iter().enumerate() {
            if d.class != t.class {
                continue;
            }
            let iou = t.match_iou(&predicted, d);
            if iou == 0 || iou < self.cfg.iou_match_q16 || best.is_some_and(|(b, _)| iou <= b) {
                continue;
            }
            if !assigned.iter().take(n).any(|a| *a == Some(j)) {
                best = Some((iou, j));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::string::ToString;
    use std::vec::Vec as StdVec;

    fn det(x: i32, y: i32, w: i32, h: i32, class: Class) -> Detection {
        Detection { rect: Rect::from_xywh(x, y, w, h), class, score: 50_000 }
    }
    fn face(x: i32, y: i32) -> Detection {
        det(x, y, 40, 40, Class::Face)
    }
    fn contains(outer: &Rect, inner: &Rect) -> bool {
        inner.is_empty() || outer.intersect(inner) == *inner
    }

    #[test]
    fn config_defaults_and_code() {
        let c = TrackerConfig::default();
        assert_eq!((c.iou_match_q16, c.hold_frames, c.velocity_gain_q8), (19_661, 5, 256));
        assert_eq!(c.iou_match_q16, (3 * 65536 + 5) / 10);
        let c =
            TrackerConfig { iou_match_q16: 0x0403_0201, hold_frames: 0x0605, velocity_gain_q8: 0x0a09_0807 };
        assert_eq!(c.code(), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(TrackError::CapacityExceeded.to_string(), "more live tracks than tracker capacity");
    }

    #[test]
    fn associates_by_iou_and_starts_new_tracks() {
        let mut t: Tracker<4> = Tracker::new(TrackerConfig::default());
        t.update(&[face(100, 100), face(300, 100)]).unwrap();
        assert_eq!(t.tracks().iter().map(|t| t.id).collect::<StdVec<_>>(), [0, 1]);
        // Both moved a little; a third face appears far away.
        t.update(&[face(305, 102), face(500, 500), face(104, 101)]).unwrap();
        let ids: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.rect.x0, t.hits, t.misses)).collect();
        assert_eq!(ids, [(0, 104, 2, 0), (1, 305, 2, 0), (2, 500, 1, 0)]);
    }

    #[test]
    fn greedy_takes_highest_iou_first() {
        let mut t: Tracker<4> = Tracker::new(TrackerConfig::default());
        // Two overlapping tracks: 0 on [0, 40), 1 on [20, 60).
        t.update(&[face(0, 0), face(20, 0)]).unwrap();
        // A on [18, 58): IoU 22/58 with track 0 (its best), 38/42 with track 1.
        // B on [-20, 20): IoU 20/60 with track 0, none with track 1.
        // Taking tracks in order would give A to track 0 and leave track 1 unmatched; highest IoU
        // first gives A to track 1 and B to track 0.
        t.update(&[face(18, 0), face(-20, 0)]).unwrap();
        let xs: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.rect.x0, t.misses)).collect();
        assert_eq!(xs, [(0, -20, 0), (1, 18, 0)]);
    }

    #[test]
    fn equal_iou_ties_go_to_the_older_track_and_first_detection() {
        let mut t: Tracker<4> = Tracker::new(TrackerConfig::default());
        t.update(&[face(0, 0), face(0, 0)]).unwrap();
        // Both tracks see both detections with IoU 1: track 0 gets the first one.
        t.update(&[Detection { score: 1, ..face(0, 0) }, Detection { score: 2, ..face(0, 0) }]).unwrap();
        let v: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.score)).collect();
        assert_eq!(v, [(0, 1), (1, 2)]);
    }

    #[test]
    fn class_mismatch_never_associates() {
        let mut t: Tracker<4> = Tracker::new(TrackerConfig::default());
        t.update(&[face(10, 10)]).unwrap();
        t.update(&[det(10, 10, 40, 40, Class::Plate)]).unwrap();
        let v: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.class, t.misses)).collect();
        assert_eq!(v, [(0, Class::Face, 1), (1, Class::Plate, 0)]);
    }

    #[test]
    fn velocity_prediction_and_redact_rect() {
        let mut t: Tracker<2> = Tracker::new(TrackerConfig::default());
        for k in 0..3 {
            t.update(&[face(100 + 4 * k, 50 - 2 * k)]).unwrap();
        }
        let tr = t.tracks()[0];
        assert_eq!(tr.velocity_q8(), (4 * 256, -2 * 256));
        assert_eq!(tr.rect, Rect::from_xywh(108, 46, 40, 40));
        // Grown one frame ahead along the motion.
        assert_eq!(tr.redact_rect(), Rect::new(108, 44, 152, 86));
        // Missed frame: the box moves on; the redaction still reaches back to the last detection.
        t.update(&[]).unwrap();
        let tr = t.tracks()[0];
        assert_eq!((tr.rect, tr.misses), (Rect::from_xywh(112, 44, 40, 40), 1));
        assert_eq!(tr.redact_rect(), Rect::new(108, 42, 156, 86));
        // Re-detected on the predicted path: same track, velocity unchanged.
        t.update(&[face(116, 42)]).unwrap();
        let tr = t.tracks()[0];
        assert_eq!((tr.id, tr.misses, tr.hits, tr.velocity_q8()), (0, 0, 4, (1024, -512)));
    }

    #[test]
    fn sub_pixel_velocity_accumulates_and_rounds_outward() {
        let cfg = TrackerConfig { hold_frames: 10, ..TrackerConfig::default() };
        let mut t: Tracker<2> = Tracker::new(cfg);
        t.update(&[face(100, 100)]).unwrap();
        // Seen again 4 frames later, 3 px to the left: -0.75 px/frame = -192 Q8.
        for _ in 0..3 {
            t.coast();
        }
        t.update(&[face(97, 100)]).unwrap();
        assert_eq!(t.tracks()[0].velocity_q8(), (-192, 0));
        t.coast();
        // 97 - 0.75 = 96.25: the box sits at 96 with a remainder of 64/256.
        let tr = t.tracks()[0];
        assert_eq!(tr.rect.x0, 96);
        // Sweep from 96.25 to 95.5, rounded outward: [95, 97) for x0..; plus the last detection.
        assert_eq!(tr.redact_rect(), Rect::new(95, 100, 137, 140));
        t.coast();
        t.coast();
        t.coast();
        assert_eq!(t.tracks()[0].rect.x0, 94); // 97 - 3, exactly, after 4 frames
        assert_eq!(t.tracks()[0].misses, 0);
    }

    #[test]
    fn fractional_position_rounds_outward() {
        let mut t: Tracker<2> = Tracker::new(TrackerConfig::default());
        t.update(&[face(100, 100)]).unwrap();
        for _ in 0..3 {
            t.coast();
        }
        t.update(&[face(103, 100)]).unwrap();
        assert_eq!(t.tracks()[0].velocity_q8(), (192, 0));
        t.coast();
        // At 103.75 (rect at 103), swept to 104.5: x1 = 143 + ceil(1.5).
        let tr = t.tracks()[0];
        assert_eq!((tr.rect.x0, tr.redact_rect()), (103, Rect::new(103, 100, 145, 140)));
    }

    #[test]
    fn velocity_is_averaged() {
        let mut t: Tracker<2> = Tracker::new(TrackerConfig::default());
        for x in [0, 4, 6] {
            t.update(&[face(x, 0)]).unwrap();
        }
        // Measurements 4 then 2 px/frame: (4 + 2) / 2 = 3 px/frame.
        assert_eq!(t.tracks()[0].velocity_q8(), (768, 0));
        // Truncation toward zero treats both directions alike.
        let mut t: Tracker<2> = Tracker::new(TrackerConfig::default());
        for x in [0, -4, -6] {
            t.update(&[face(x, 0)]).unwrap();
        }
        assert_eq!(t.tracks()[0].velocity_q8(), (-768, 0));
        for _ in 0..8 {
            t.update(&[face(-6, 0)]).unwrap();
        }
        assert_eq!(t.tracks()[0].velocity_q8(), (-3, 0)); // -768 / 2^8, halved 8 times
    }

    #[test]
    fn reversal_still_associates_through_the_previous_box() {
        let cfg = TrackerConfig { iou_match_q16: 32_768, ..TrackerConfig::default() };
        let mut t: Tracker<2> = Tracker::new(cfg);
        for x in [0, 10, 20] {
            t.update(&[face(x, 0)]).unwrap();
        }
        // Predicted at 30; the object turned back to 10: IoU 1/3 with the prediction, 3/5 with
        // the previous box, so it is still track 0.
        t.update(&[face(10, 0)]).unwrap();
        let v: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.misses)).collect();
        assert_eq!(v, [(0, 0)]);
    }

    #[test]
    fn hold_expires_exactly_after_hold_frames_misses() {
        for hold in [0u16, 1, 3, 5] {
            let mut t: Tracker<2> =
                Tracker::new(TrackerConfig { hold_frames: hold, ..TrackerConfig::default() });
            t.update(&[face(0, 0)]).unwrap();
            for m in 1..=hold {
                t.update(&[]).unwrap();
                assert_eq!(t.tracks().len(), 1, "hold {hold}: gone after {m} misses");
                assert_eq!(t.tracks()[0].misses, m);
            }
            t.update(&[]).unwrap();
            assert!(t.tracks().is_empty(), "hold {hold}: still there after {} misses", hold + 1);
        }
    }

    #[test]
    fn coasting_counts_no_miss() {
        let mut t: Tracker<2> = Tracker::new(TrackerConfig { hold_frames: 0, ..TrackerConfig::default() });
        t.update(&[face(0, 0)]).unwrap();
        t.update(&[face(2, 0)]).unwrap();
        for _ in 0..100 {
            t.coast();
        }
        let tr = t.tracks()[0];
        assert_eq!((tr.misses, tr.rect.x0), (0, 202));
        // The hits counter and velocity came through; the next detection on the path matches.
        t.update(&[face(204, 0)]).unwrap();
        assert_eq!((t.tracks()[0].id, t.tracks()[0].hits, t.tracks()[0].velocity_q8()), (0, 3, (512, 0)));
    }

    #[test]
    fn capacity_error_keeps_what_fits() {
        let mut t: Tracker<2> = Tracker::new(TrackerConfig::default());
        assert_eq!(t.update(&[face(0, 0), face(100, 0), face(200, 0)]), Err(TrackError::CapacityExceeded));
        let xs: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.rect.x0)).collect();
        assert_eq!(xs, [(0, 0), (1, 100)]);
        // Track 1 is missed; a new face takes its place, track 0 (detected) stays.
        assert_eq!(t.update(&[face(0, 0), face(300, 0)]), Err(TrackError::CapacityExceeded));
        let xs: StdVec<_> = t.tracks().iter().map(|t| (t.id, t.rect.x0, t.misses)).collect();
        assert_eq!(xs, [(0, 0, 0), (2, 300, 0)]);
        // Fits again: no error.
        assert_eq!(t.update(&[face(0, 0), face(300, 0)]), Ok(()));
    }

    #[test]
    fn ids_wrap_and_reset_restarts() {
        let mut t: Tracker<3> = Tracker::new(TrackerConfig::default());
        t.next_id = u32::MAX;
        t.update(&[face(0, 0), face(100, 0)]).unwrap();
        assert_eq!(t.tracks().iter().map(|t| t.id).collect::<StdVec<_>>(), [u32::MAX, 0]);
        t.reset();
        assert!(t.tracks().is_empty());
        t.update(&[face(0, 0)]).unwrap();
        assert_eq!(t.tracks()[0].id, 0);
    }

    #[test]
    fn empty_boxes_are_ignored() {
        let mut t: Tracker<1> = Tracker::new(TrackerConfig::default());
        assert_eq!(
            t.update(&[det(5, 5, 0, 10, Class::Face), face(0, 0), det(5, 5, 10, -1, Class::Plate)]),
            Ok(())
        );
        assert_eq!(t.tracks().len(), 1);
    }

    // ---- property tests -------------------------------------------------------------------

    #[derive(Clone, Debug)]
    enum Op {
        Update(StdVec<Detection>),
        Coast,
        Reset,
    }

    fn class() -> impl Strategy<Value = Class> {
        prop_oneof![Just(Class::Face), Just(Class::Plate)]
    }

    /// Boxes in a small area so that overlaps (and associations) are frequent.
    fn crowded_det() -> impl Strategy<Value = Detection> {
        (0i32..80, 0i32..80, 4i32..40, 4i32..40, class(), any::<u16>()).prop_map(
            |(x, y, w, h, class, score)| Detection { rect: Rect::from_xywh(x, y, w, h), class, score },
        )
    }

    /// Anything at all, including empty and extreme boxes.
    fn wild_det() -> impl Strategy<Value = Detection> {
        let coord = prop_oneof![any::<i32>(), -50i32..50, Just(i32::MIN), Just(i32::MAX)];
        (coord.clone(), coord.clone(), coord.clone(), coord, class(), any::<u16>()).prop_map(
            |(x0, y0, x1, y1, class, score)| Detection { rect: Rect::new(x0, y0, x1, y1), class, score },
        )
    }

    fn ops(det: BoxedStrategy<Detection>, max_dets: usize, reset: bool) -> impl Strategy<Value = StdVec<Op>> {
        let update = proptest::collection::vec(det, 0..=max_dets).prop_map(Op::Update);
        let op = if reset {
            prop_oneof![6 => update, 2 => Just(Op::Coast), 1 => Just(Op::Reset)].boxed()
        } else {
            prop_oneof![4 => update, 1 => Just(Op::Coast)].boxed()
        };
        proptest::collection::vec(op, 1..40)
    }

    fn config() -> impl Strategy<Value = TrackerConfig> {
        (prop_oneof![Just(1u32), Just(6_554), Just(19_661), Just(45_000)], 0u16..8, 0u32..1024).prop_map(
            |(iou_match_q16, hold_frames, velocity_gain_q8)| TrackerConfig {
                iou_match_q16,
                hold_frames,
                velocity_gain_q8,
            },
        )
    }

    fn apply<const N: usize>(t: &mut Tracker<N>, op: &Op) -> Result<(), TrackError> {
        match op {
            Op::Update(d) => t.update(d),
            Op::Coast => {
                t.coast();
                Ok(())
            }
            Op::Reset => {
                t.reset();
                Ok(())
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// (a) After a detection starts or updates a track, that track id stays live for the next
        /// `hold_frames` detection frames whatever they contain, and is gone on the one after
        /// unless detected again; capacity errors are the only exception (then the expectations
        /// restart from the tracker's state).
        #[test]
        fn hold_is_honoured(cfg in config(), ops in ops(crowded_det().boxed(), 3, false)) {
            let mut t: Tracker<8> = Tracker::new(cfg);
            let hold = cfg.hold_frames;
            // id -> misses we expect it to have (independently counted).
            let mut expect: BTreeMap<u32, u16> = BTreeMap::new();
            for op in &ops {
                let before: StdVec<u32> = t.tracks().iter().map(|t| t.id).collect();
                let r = apply(&mut t, op);
                let live: BTreeMap<u32, Track> = t.tracks().iter().map(|t| (t.id, *t)).collect();
                prop_assert_eq!(live.len(), t.tracks().len(), "ids unique");
                match op {
                    Op::Coast => {
                        prop_assert_eq!(before, t.tracks().iter().map(|t| t.id).collect::<StdVec<_>>());
                    }
                    Op::Update(dets) => {
                        if r.is_err() {
                            prop_assert_eq!(t.tracks().len(), 8);
                            expect = live.iter().map(|(id, t)| (*id, t.misses)).collect();
                            continue;
                        }
                        for (id, m) in expect.iter_mut() {
                            match live.get(id) {
                                // Detected this frame: its box is one of this frame's detections.
                                Some(tr) if tr.misses == 0 => {
                                    prop_assert!(dets.iter().any(|d| d.rect == tr.rect && d.class == tr.class));
                                    *m = 0;
                                }
                                Some(tr) => {
                                    *m += 1;
                                    prop_assert_eq!(tr.misses, *m);
                                    prop_assert!(*m <= hold);
                                }
                                None => {
                                    *m += 1;
                                    prop_assert_eq!(*m, hold + 1, "track {} removed early", id);
                                }
                            }
                        }
                        expect.retain(|id, _| live.contains_key(id));
                        for (id, tr) in &live {
                            if !expect.contains_key(id) {
                                prop_assert_eq!(tr.misses, 0, "new track {} not from a detection", id);
                                prop_assert_eq!(tr.hits, 1);
                                expect.insert(*id, 0);
                            }
                        }
                    }
                    Op::Reset => unreachable!(),
                }
            }
        }

        /// (b) An object moving at a constant (possibly fractional) speed, detected in frames
        /// `0..=k`, missed in frame `k+1` and detected in `k+2`, is inside one track's
        /// `redact_rect` in every frame, and keeps one track id. Unrelated detections elsewhere
        /// do not disturb it. Motion must have been seen before the miss (`k >= 1`, or still), and
        /// per axis the speed is 0 or at least 1 px/frame (slower creep is below the tracker's
        /// resolution after one observation and is left to the redaction margin).
        #[test]
        fn single_miss_stays_covered(
            (x, y, w, h) in (100i32..400, 100i32..400, 12i32..80, 12i32..80),
            (nx, ny, den) in (-24i32..=24, -24i32..=24, 1i32..=4),
            k in 0u32..6,
            cls in class(),
            gain in 256u32..1024,
            hold in 1u16..8,
            others in proptest::collection::vec((0i32..4, 0i32..4, class()), 0..4),
        ) {
            // "Slowly": at most a fifth of the box per frame, so consecutive boxes keep IoU > 0.3.
            let (bx, by) = (den * (w / 5), den * (h / 5));
            let (nx, ny) = (nx.clamp(-bx, bx), ny.clamp(-by, by));
            let slow = |n: i32| n != 0 && n.abs() < den;
            prop_assume!(!slow(nx) && !slow(ny));
            let (nx, ny) = if k == 0 { (0, 0) } else { (nx, ny) };
            let cfg = TrackerConfig { hold_frames: hold, velocity_gain_q8: gain, ..TrackerConfig::default() };
            let mut t: Tracker<8> = Tracker::new(cfg);
            let at = |f: i32| {
                Rect::from_xywh(x + (nx * f).div_euclid(den), y + (ny * f).div_euclid(den), w, h)
            };
            let mut id = None;
            for f in 0..=(k as i32 + 2) {
                // Distractors far away (x, y >= 2000), of either class.
                let mut dets: StdVec<Detection> = others
                    .iter()
                    .map(|&(gx, gy, c)| det(2000 + 100 * gx, 2000 + 100 * gy, 50, 50, c))
                    .collect();
                if f != k as i32 + 1 {
                    dets.push(Detection { rect: at(f), class: cls, score: 40_000 });
                }
                prop_assert_eq!(t.update(&dets), Ok(()));
                let mine: StdVec<&Track> = t.tracks().iter().filter(|tr| tr.rect.x0 < 1500).collect();
                prop_assert_eq!(mine.len(), 1, "frame {}: {:?}", f, t.tracks());
                let tr = mine[0];
                prop_assert_eq!(tr.class, cls);
                prop_assert!(contains(&tr.redact_rect(), &at(f)),
                    "frame {}: {:?} not inside {:?} of {:?}", f, at(f), tr.redact_rect(), tr);
                prop_assert!(id.is_none() || id == Some(tr.id), "id changed at frame {}", f);
                id = Some(tr.id);
            }
        }

        /// (c) The same input gives identical results and tracks, including after a reset.
        #[test]
        fn deterministic(cfg in config(), warmup in ops(crowded_det().boxed(), 6, true), ops in ops(crowded_det().boxed(), 6, true)) {
            let mut a: Tracker<5> = Tracker::new(cfg);
            let mut b: Tracker<5> = Tracker::new(cfg);
            for op in &warmup {
                let _ = apply(&mut b, op);
            }
            b.reset();
            for op in &ops {
                let ra = apply(&mut a, op);
                let rb = apply(&mut b, op);
                prop_assert_eq!(ra, rb);
                prop_assert_eq!(a.tracks(), b.tracks());
                prop_assert_eq!(a.next_id, b.next_id);
            }
        }

        /// (d) Any configuration and any boxes: no panic, at most N tracks, unique ids, every
        /// non-empty detection is a live track's box after an `Ok` update, `Err` only when full,
        /// `redact_rect` contains `rect`, misses never exceed the hold.
        #[test]
        fn never_panics_and_stays_bounded(
            cfg in (any::<u32>(), any::<u16>(), any::<u32>()).prop_map(|(i, h, g)| TrackerConfig {
                iou_match_q16: i, hold_frames: h, velocity_gain_q8: g }),
            small in config(),
            pick_small in any::<bool>(),
            ops in ops(prop_oneof![wild_det(), crowded_det()].boxed(), 6, true),
        ) {
            let cfg = if pick_small { small } else { cfg };
            let mut t: Tracker<4> = Tracker::new(cfg);
            for op in &ops {
                let r = apply(&mut t, op);
                let tracks = t.tracks();
                prop_assert!(tracks.len() <= 4);
                let mut ids: StdVec<u32> = tracks.iter().map(|t| t.id).collect();
                ids.sort_unstable();
                ids.dedup();
                prop_assert_eq!(ids.len(), tracks.len());
                for tr in tracks {
                    prop_assert!(contains(&tr.redact_rect(), &tr.rect));
                    prop_assert!(tr.misses <= cfg.hold_frames);
                    let _ = tr.velocity_q8();
                }
                if let Op::Update(dets) = op {
                    match r {
                        Ok(()) => {
                            for d in dets.iter().filter(|d| !d.rect.is_empty()) {
                                prop_assert!(tracks.iter().any(|tr| tr.misses == 0 && tr.rect == d.rect
                                    && tr.class == d.class), "{:?} not tracked", d);
                            }
                        }
                        Err(e) => {
                            prop_assert_eq!(e, TrackError::CapacityExceeded);
                            prop_assert_eq!(tracks.len(), 4);
                        }
                    }
                }
            }
        }
    }
}
