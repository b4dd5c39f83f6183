//! Reports: the per-frame JSON lines (`--boxes`), the evidence file (`--evidence`) and the
//! run summary (`--json`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use veil_core::detect::Detection;
use veil_core::evidence::Record;
use veil_core::frame::Rect;
use veil_core::pipeline::Region;
use veil_core::track::Track;

use crate::batch::temp_path;
use crate::error::{Error, IoContext, Result};

/// Print `v` as pretty JSON on standard output (`--json`). A closed standard output
/// (`veil … | head`) is not an error.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| Error::Encode { path: PathBuf::from("<stdout>"), msg: e.to_string() })?;
    let _ = writeln!(std::io::stdout(), "{s}");
    Ok(())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A box in JSON.
#[derive(Debug, Serialize)]
pub struct JsonRect {
    /// Left (inclusive).
    pub x0: i32,
    /// Top (inclusive).
    pub y0: i32,
    /// Right (exclusive).
    pub x1: i32,
    /// Bottom (exclusive).
    pub y1: i32,
}

impl From<Rect> for JsonRect {
    fn from(r: Rect) -> Self {
        JsonRect { x0: r.x0, y0: r.y0, x1: r.x1, y1: r.y1 }
    }
}

/// A detection in JSON.
#[derive(Debug, Serialize)]
pub struct JsonDetection {
    /// `face` or `plate`.
    pub class: &'static str,
    /// Score, Q16.
    pub score_q16: u16,
    /// Score as a fraction.
    pub score: f64,
    /// The box.
    #[serde(flatten)]
    pub rect: JsonRect,
}

impl From<&Detection> for JsonDetection {
    fn from(d: &Detection) -> Self {
        JsonDetection {
            class: d.class.name(),
            score_q16: d.score,
            score: f64::from(d.score) / 65535.0,
            rect: d.rect.into(),
        }
    }
}

/// A track in JSON.
#[derive(Debug, Serialize)]
pub struct JsonTrack {
    /// Track id.
    pub id: u32,
    /// `face` or `plate`.
    pub class: &'static str,
    /// Last score, Q16.
    pub score_q16: u16,
    /// Detections so far.
    pub hits: u32,
    /// Consecutive misses.
    pub misses: u16,
    /// The track's box.
    pub rect: JsonRect,
    /// The box it redacts (grown along its motion).
    pub redact: JsonRect,
}

impl From<&Track> for JsonTrack {
    fn from(t: &Track) -> Self {
        JsonTrack {
            id: t.id,
            class: t.class.name(),
            score_q16: t.score,
            hits: t.hits,
            misses: t.misses,
            rect: t.rect.into(),
            redact: t.redact_rect().into(),
        }
    }
}

/// A redacted region in JSON.
#[derive(Debug, Serialize)]
pub struct JsonRegion {
    /// Source track.
    pub track: u32,
    /// `face` or `plate`.
    pub class: &'static str,
    /// Area redacted.
    #[serde(flatten)]
    pub rect: JsonRect,
}

impl From<&Region> for JsonRegion {
    fn from(r: &Region) -> Self {
        JsonRegion { track: r.track, class: r.class.name(), rect: r.rect.into() }
    }
}

/// An evidence record in JSON.
#[derive(Debug, Serialize)]
pub struct JsonRecord {
    /// Sequence number.
    pub seq: u64,
    /// Frame time, µs.
    pub time_us: u64,
    /// Model id, hex.
    pub model_id: String,
    /// Configuration digest, hex.
    pub config_hash: String,
    /// Regions redacted.
    pub regions: u16,
    /// Digest of the regions, hex.
    pub regions_digest: String,
    /// Outcome name.
    pub outcome: &'static str,
    /// Previous record's digest, hex.
    pub prev: String,
    /// This record's digest, hex.
    pub digest: String,
}

impl From<&Record> for JsonRecord {
    fn from(r: &Record) -> Self {
        JsonRecord {
            seq: r.seq,
            time_us: r.time_us,
            model_id: hex(&r.model_id),
            config_hash: hex(&r.config_hash),
            regions: r.regions,
            regions_digest: hex(&r.regions_digest),
            outcome: r.outcome.name(),
            prev: hex(&r.prev),
            digest: hex(&r.digest()),
        }
    }
}

/// One line of `--boxes`.
#[derive(Debug, Serialize)]
pub struct FrameLine<'a> {
    /// Input (relative path, or `camera:N`).
    pub source: &'a str,
    /// Frame index within the source.
    pub frame: u64,
    /// True when the detector ran on this frame (false: tracks coasted).
    pub detected: bool,
    /// Detections after filtering and NMS.
    pub detections: Vec<JsonDetection>,
    /// Live tracks.
    pub tracks: Vec<JsonTrack>,
    /// Regions redacted.
    pub regions: Vec<JsonRegion>,
    /// The evidence record.
    pub record: JsonRecord,
}

/// A file written progressively and renamed into place by [`StreamFile::finish`]; dropped
/// unfinished, the temporary file is removed.
pub struct StreamFile {
    dest: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
}

impl StreamFile {
    /// Start writing `dest`.
    pub fn create(dest: &Path) -> Result<Self> {
        if let Some(p) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p).at(p)?;
        }
        let tmp = temp_path(dest);
        let f = File::create(&tmp).at(&tmp)?;
        Ok(StreamFile { dest: dest.to_path_buf(), tmp, w: Some(BufWriter::new(f)) })
    }
    /// Append bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.w {
            Some(w) => w.write_all(bytes).at(&self.dest),
            None => Ok(()),
        }
    }
    /// Append one JSON value and a newline.
    pub fn write_json_line<T: Serialize>(&mut self, v: &T) -> Result<()> {
        let mut line = serde_json::to_vec(v)
            .map_err(|e| Error::Encode { path: self.dest.clone(), msg: e.to_string() })?;
        line.push(b'\n');
        self.write(&line)
    }
    /// Flush, sync and rename into place.
    pub fn finish(mut self) -> Result<PathBuf> {
        if let Some(w) = self.w.take() {
            let f = w.into_inner().map_err(|e| Error::io(&self.dest, e.into_error()))?;
            f.sync_all().at(&self.dest)?;
        }
        std::fs::rename(&self.tmp, &self.dest).at(&self.dest)?;
        Ok(self.dest.clone())
    }
}

impl Drop for StreamFile {
    fn drop(&mut self) {
        if self.w.is_some() {
            self.w = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Counters over a run.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Frames processed.
    pub frames: u64,
    /// Frames on which the detector ran.
    pub detected_frames: u64,
    /// Detections kept (after filtering).
    pub detections: u64,
    /// Regions redacted.
    pub regions: u64,
    /// Frames per outcome name.
    pub outcomes: BTreeMap<&'static str, u64>,
}

/// One failed input.
#[derive(Debug, Serialize)]
pub struct Failure {
    /// The input.
    pub input: String,
    /// The error.
    pub error: String,
}

/// The `--json` summary.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Detector name.
    pub detector: String,
    /// Model id, hex.
    pub model_id: String,
    /// Configuration digest, hex.
    pub config_hash: String,
    /// Inputs planned in this shard.
    pub inputs: usize,
    /// Inputs done.
    pub succeeded: usize,
    /// Inputs failed.
    pub failed: usize,
    /// Files in input folders that are not media.
    pub ignored: usize,
    /// Files left to other shards.
    pub other_shards: usize,
    /// Outputs written.
    pub outputs: Vec<String>,
    /// Failures.
    pub failures: Vec<Failure>,
    /// Frame counters.
    pub stats: Stats,
    /// Evidence chain: next sequence number.
    pub chain_next_seq: u64,
    /// Evidence chain head digest, hex.
    pub chain_head: String,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Frames per second over the run.
    pub fps: f64,
    /// True for `--dry-run`.
    pub dry_run: bool,
}
