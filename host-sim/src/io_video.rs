//! Video files through `ffmpeg` subprocesses: `ffprobe` reads the geometry and rate, one
//! `ffmpeg` decodes the first video stream to raw frames on a pipe (rgb24, nv12 or yuyv422,
//! each a `veil-core` pixel format), and another encodes the redacted frames, copying audio,
//! subtitles, chapters and metadata from the original.
//!
//! Timing: frames are decoded without dropping or duplicating (`-fps_mode passthrough`) and
//! re-encoded at the stream's average frame rate, starting at its original start time; the
//! pipeline sees deterministic time `index × frame duration`. A variable-frame-rate input is
//! therefore re-timed to constant rate (same frame count and duration).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use veil_core::frame::{Layout, PixelFormat};

use crate::cli::VideoFormat;
use crate::engine::{FrameResult, Stream, Timing};
use crate::error::{Error, Result};

fn ff_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Ffmpeg { path: path.to_path_buf(), msg: msg.into() }
}

/// What `ffprobe` says about a video.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    /// Width of decoded frames (after rotation).
    pub width: u32,
    /// Height of decoded frames (after rotation).
    pub height: u32,
    /// Frame rate numerator.
    pub fps_num: u32,
    /// Frame rate denominator.
    pub fps_den: u32,
    /// Frame count from the container, when it says.
    pub frames: Option<u64>,
    /// Codec of the video stream.
    pub codec: String,
    /// Pixel format of the video stream.
    pub pix_fmt: String,
    /// Start time of the video stream, seconds.
    pub start_time: f64,
    /// Start time of the file (earliest stream), seconds.
    pub format_start_time: f64,
    /// Duration, seconds, when known.
    pub duration: Option<f64>,
    /// True when the file has an audio stream.
    pub has_audio: bool,
}

impl Probe {
    /// Frame duration in microseconds.
    pub fn frame_us(&self) -> u64 {
        (1_000_000u64 * u64::from(self.fps_den)) / u64::from(self.fps_num.max(1))
    }
    /// Expected number of frames (container count, else duration × rate).
    pub fn expected_frames(&self) -> Option<u64> {
        self.frames.or_else(|| {
            self.duration
                .map(|d| (d * f64::from(self.fps_num) / f64::from(self.fps_den.max(1))).round() as u64)
        })
    }
}

fn parse_rate(s: &str) -> Option<(u32, u32)> {
    let (n, d) = s.split_once('/')?;
    let (n, d): (u32, u32) = (n.parse().ok()?, d.parse().ok()?);
    (n > 0 && d > 0).then_some((n, d))
}

/// Run `ffprobe` on `path`.
pub fn probe(path: &Path) -> Result<Probe> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_streams", "-show_format"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            ff_err(path, format!("cannot run ffprobe ({e}); install ffmpeg (`cargo xtask setup`)"))
        })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(Error::Decode { path: path.to_path_buf(), msg: format!("ffprobe: {msg}") });
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Decode { path: path.to_path_buf(), msg: format!("ffprobe output: {e}") })?;
    let streams = v["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"].as_i64().unwrap_or(0) == 0)
        .ok_or_else(|| Error::Decode { path: path.to_path_buf(), msg: "no video stream".into() })?;
    let dim = |k: &str| video[k].as_u64().filter(|v| *v > 0 && *v <= 16_384).map(|v| v as u32);
    let (mut width, mut height) = match (dim("width"), dim("height")) {
        (Some(w), Some(h)) => (w, h),
        _ => {
            return Err(Error::Decode {
                path: path.to_path_buf(),
                msg: "video stream has no valid size".into(),
            })
        }
    };
    let rotation = video["side_data_list"]
        .as_array()
        .and_then(|l| l.iter().find_map(|sd| sd["rotation"].as_f64()))
        .or_else(|| video["tags"]["rotate"].as_str().and_then(|r| r.parse().ok()))
        .unwrap_or(0.0);
    if (rotation.abs().round() as i64) % 180 == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let (fps_num, fps_den) = video["avg_frame_rate"]
        .as_str()
        .and_then(parse_rate)
        .or_else(|| video["r_frame_rate"].as_str().and_then(parse_rate))
        .unwrap_or((25, 1));
    let num =
        |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<f64>().ok()).filter(|f| f.is_finite());
    Ok(Probe {
        width,
        height,
        fps_num,
        fps_den,
        frames: video["nb_frames"].as_str().and_then(|s| s.parse().ok()).filter(|n| *n > 0),
        codec: video["codec_name"].as_str().unwrap_or("").to_string(),
        pix_fmt: video["pix_fmt"].as_str().unwrap_or("").to_string(),
        start_time: num(&video["start_time"]).unwrap_or(0.0),
        format_start_time: num(&v["format"]["start_time"]).unwrap_or(0.0),
        duration: num(&video["duration"]).or_else(|| num(&v["format"]["duration"])),
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
    })
}

/// ffmpeg's name and `veil-core`'s format for a video pixel format, falling back to rgb24 when
/// the size does not suit the subsampled formats.
pub fn pixel_format(want: VideoFormat, w: u32, h: u32) -> (&'static str, PixelFormat) {
    match want {
        VideoFormat::Nv12 if w.is_multiple_of(2) && h.is_multiple_of(2) => ("nv12", PixelFormat::Nv12),
        VideoFormat::Yuyv422 if w.is_multiple_of(2) => ("yuyv422", PixelFormat::Yuyv422),
        _ => ("rgb24", PixelFormat::Rgb888),
    }
}

fn drain(r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let mut r = r;
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        s.push_str(&String::from_utf8_lossy(&buf));
        s
    })
}

/// An `ffmpeg` process decoding a video to raw frames.
pub struct FrameReader {
    path: PathBuf,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
}

impl FrameReader {
    /// Start decoding the first video stream of `path` as `pix_fmt`.
    pub fn spawn(path: &Path, pix_fmt: &str) -> Result<Self> {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
            .arg(path)
            .args([
                "-map",
                "0:v:0",
                "-fps_mode",
                "passthrough",
                "-f",
                "rawvideo",
                "-pix_fmt",
                pix_fmt,
                "pipe:1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                ff_err(path, format!("cannot run ffmpeg ({e}); install ffmpeg (`cargo xtask setup`)"))
            })?;
        let stdout = child.stdout.take().ok_or_else(|| ff_err(path, "no stdout pipe"))?;
        let stderr = child.stderr.take().map(drain);
        Ok(FrameReader { path: path.to_path_buf(), child, stdout, stderr })
    }

    /// Fill `buf` with the next frame; `Ok(false)` at the end of the stream.
    pub fn read_frame(&mut self, buf: &mut [u8]) -> Result<bool> {
        let mut got = 0;
        while got < buf.len() {
            match self.stdout.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        if got == 0 {
            return Ok(false);
        }
        if got < buf.len() {
            return Err(Error::Decode {
                path: self.path.clone(),
                msg: "truncated frame at the end of the stream".into(),
            });
        }
        Ok(true)
    }

    /// Wait for the decoder; its error output if it failed.
    pub fn finish(mut self) -> Result<String> {
        let status = self.child.wait().map_err(|e| Error::io(&self.path, e))?;
        let err = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(Error::Decode { path: self.path.clone(), msg: first_lines(&err) });
        }
        Ok(err)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_lines(s: &str) -> String {
    let t: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).take(3).collect();
    if t.is_empty() {
        "ffmpeg failed".into()
    } else {
        t.join("; ")
    }
}

/// What the encoder copies from the original file.
pub struct Source<'a> {
    /// The original video.
    pub path: &'a Path,
    /// Its probe.
    pub probe: &'a Probe,
}

/// An `ffmpeg` process encoding raw frames to a video file.
pub struct FrameWriter {
    path: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
}

fn encoder_for(codec: &str) -> Option<&'static str> {
    match codec {
        "h264" => Some("libx264"),
        "vp8" => Some("libvpx"),
        "vp9" => Some("libvpx-vp9"),
        "mpeg4" => Some("mpeg4"),
        "mjpeg" => Some("mjpeg"),
        _ => None,
    }
}

impl FrameWriter {
    /// Start encoding `w × h` frames of `pix_fmt` at `fps` into `out`, copying the other
    /// streams and metadata of `source`.
    pub fn spawn(
        out: &Path,
        pix_fmt: &str,
        w: u32,
        h: u32,
        fps: (u32, u32),
        source: Option<Source<'_>>,
    ) -> Result<Self> {
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"]);
        if let Some(s) = &source {
            // ffmpeg rebases the copied streams to the file's start; the video keeps its lead.
            let lead = s.probe.start_time - s.probe.format_start_time;
            if lead.abs() > 1e-6 {
                cmd.args(["-itsoffset", &format!("{lead:.6}")]);
            }
        }
        cmd.args(["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", &format!("{w}x{h}")]).args([
            "-framerate",
            &format!("{}/{}", fps.0, fps.1),
            "-i",
            "pipe:0",
        ]);
        match &source {
            Some(s) => {
                cmd.arg("-i").arg(s.path);
                cmd.args([
                    "-map",
                    "0:v:0",
                    "-map",
                    "1:a?",
                    "-map",
                    "1:s?",
                    "-map_metadata",
                    "1",
                    "-map_chapters",
                    "1",
                ]);
                cmd.args(["-c:a", "copy", "-c:s", "copy"]);
                if let Some(enc) = encoder_for(&s.probe.codec) {
                    cmd.args(["-c:v", enc]);
                }
                if !s.probe.pix_fmt.is_empty() {
                    cmd.args(["-pix_fmt", &s.probe.pix_fmt]);
                }
            }
            None => {
                cmd.args(["-pix_fmt", "yuv420p"]);
            }
        }
        if encoder_for(source.as_ref().map(|s| s.probe.codec.as_str()).unwrap_or("")) == Some("mjpeg") {
            cmd.args(["-q:v", "2"]);
        }
        cmd.arg(out);
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| {
                ff_err(out, format!("cannot run ffmpeg ({e}); install ffmpeg (`cargo xtask setup`)"))
            })?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(drain);
        Ok(FrameWriter { path: out.to_path_buf(), child, stdin, stderr })
    }

    /// Send one frame.
    pub fn write_frame(&mut self, bytes: &[u8]) -> Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s
                .write_all(bytes)
                .map_err(|e| ff_err(&self.path, format!("encoder stopped accepting frames ({e})"))),
            None => Err(ff_err(&self.path, "encoder closed")),
        }
    }

    /// Close the input and wait for the encoder.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| Error::io(&self.path, e))?;
        let err = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        if !status.success() {
            return Err(Error::Encode {
                path: self.path.clone(),
                msg: format!("ffmpeg: {}", first_lines(&err)),
            });
        }
        Ok(())
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            drop(self.stdin.take());
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Called after every redacted frame (e.g. the preview); returning `false` stops the video.
pub type FrameHook<'a> = dyn FnMut(&[u8], Layout, &FrameResult) -> bool + 'a;

/// Redact a video file. `dest` is the temporary output path (`None`: dry run). Returns the
/// number of frames.
pub fn process_video(
    input: &Path,
    dest: Option<&Path>,
    stream: &mut Stream<'_>,
    want: VideoFormat,
    progress: &indicatif::ProgressBar,
    mut hook: Option<&mut FrameHook<'_>>,
) -> Result<u64> {
    let probe = probe(input)?;
    let (ff_fmt, format) = pixel_format(want, probe.width, probe.height);
    let layout = Layout::new(format, probe.width, probe.height);
    let len =
        layout.required_len().map_err(|e| Error::Frame { path: input.to_path_buf(), msg: e.to_string() })?;
    if let Some(n) = probe.expected_frames() {
        progress.set_length(n);
    }
    let mut reader = FrameReader::spawn(input, ff_fmt)?;
    let mut writer = match dest {
        Some(d) => Some(FrameWriter::spawn(
            d,
            ff_fmt,
            probe.width,
            probe.height,
            (probe.fps_num, probe.fps_den),
            Some(Source { path: input, probe: &probe }),
        )?),
        None => None,
    };
    let mut buf = vec![0u8; len];
    let frame_us = probe.frame_us();
    let mut n = 0u64;
    let mut stopped = false;
    while reader.read_frame(&mut buf)? {
        let r = stream.process(&mut buf, layout, &Timing::Synthetic(n * frame_us))?;
        if let Some(w) = writer.as_mut() {
            w.write_frame(&buf)?;
        }
        n += 1;
        progress.inc(1);
        if let Some(h) = hook.as_mut() {
            if !h(&buf, layout, &r) {
                stopped = true;
                break;
            }
        }
    }
    let decoder_log = if stopped {
        drop(reader);
        String::new()
    } else {
        reader.finish()?
    };
    if n == 0 {
        return Err(Error::Decode { path: input.to_path_buf(), msg: "no frame could be decoded".into() });
    }
    if !stopped {
        if let Some(want) = probe.frames {
            // Some containers (AVI) count a frame or two more than they hold; a shortfall is an
            // error when the decoder complained or when it is more than 1% of the frames.
            let complained = !decoder_log.trim().is_empty();
            if n < want && (complained || want - n > (want / 100).max(1)) {
                let detail =
                    if complained { format!(" ({})", first_lines(&decoder_log)) } else { String::new() };
                return Err(Error::Decode {
                    path: input.to_path_buf(),
                    msg: format!("truncated or corrupt: decoded {n} of {want} frames{detail}"),
                });
            }
        }
    }
    if let Some(w) = writer {
        w.finish()?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_formats() {
        assert_eq!(parse_rate("30000/1001"), Some((30000, 1001)));
        assert_eq!(parse_rate("0/0"), None);
        assert_eq!(pixel_format(VideoFormat::Nv12, 64, 48).1, PixelFormat::Nv12);
        assert_eq!(pixel_format(VideoFormat::Nv12, 63, 48).1, PixelFormat::Rgb888);
        assert_eq!(pixel_format(VideoFormat::Yuyv422, 64, 47).1, PixelFormat::Yuyv422);
        let p = Probe {
            width: 1,
            height: 1,
            fps_num: 25,
            fps_den: 1,
            frames: None,
            codec: String::new(),
            pix_fmt: String::new(),
            start_time: 0.0,
            format_start_time: 0.0,
            duration: Some(2.0),
            has_audio: false,
        };
        assert_eq!(p.frame_us(), 40_000);
        assert_eq!(p.expected_frames(), Some(50));
    }
}
