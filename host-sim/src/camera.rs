//! Webcams through `nokhwa` (V4L2 on Linux): frames are taken in the camera's own format where
//! `veil-core` reads it directly (YUYV, NV12, grey, RGB, BGR), MJPEG is decoded to RGB, and each
//! goes through the pipeline with monotonic time, so `--deadline-ms` applies. The redacted
//! stream can be previewed and/or recorded with ffmpeg (`-o FILE`). Stops after `--frames`,
//! when the preview is closed, or on Ctrl-C (the recording is then finished properly).

use std::path::PathBuf;

use indicatif::MultiProgress;

use crate::cli::AnonymiseArgs;
use crate::engine::Engine;
use crate::error::{Error, Result};

/// Run the webcam. Returns the recording's path, if any.
#[cfg(feature = "camera")]
pub fn run(
    index: u32,
    a: &AnonymiseArgs,
    engine: &mut Engine,
    multi: &MultiProgress,
) -> Result<Option<PathBuf>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use nokhwa::utils::{CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType};
    use veil_core::frame::{Layout, PixelFormat};

    use crate::engine::Timing;
    use crate::io_video::FrameWriter;

    let cam_err = |msg: String| Error::Camera { index, msg };
    if a.output.is_none() && !a.preview && !a.dry_run {
        return Err(Error::usage("--camera", "give -o FILE to record, --preview to watch, or both"));
    }
    if let Some(o) = &a.output {
        if !a.dry_run {
            crate::batch::check_output(o, a.force)?;
        }
    }
    #[cfg(target_os = "linux")]
    {
        let dev = PathBuf::from(format!("/dev/video{index}"));
        if !dev.exists() {
            return Err(cam_err(format!("no such camera ({} does not exist)", dev.display())));
        }
    }
    let formats =
        [FrameFormat::YUYV, FrameFormat::NV12, FrameFormat::MJPEG, FrameFormat::GRAY, FrameFormat::RAWRGB];
    let req = RequestedFormat::with_formats(RequestedFormatType::AbsoluteHighestFrameRate, &formats);
    let mut cam = nokhwa::Camera::new(CameraIndex::Index(index), req)
        .map_err(|e| cam_err(format!("cannot open: {e}")))?;
    cam.open_stream().map_err(|e| cam_err(format!("cannot start streaming: {e}")))?;
    let fmt = cam.camera_format();
    let fps = fmt.frame_rate().max(1);

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        // A second handler cannot be installed; then Ctrl-C just ends the process.
        let _ = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst));
    }
    #[cfg(feature = "preview")]
    let mut preview = if a.preview { Some(crate::preview::Preview::open("veil camera")?) } else { None };
    let bar = multi.add(indicatif::ProgressBar::new_spinner());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} camera {pos} frames ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let source = format!("camera:{index}");
    let mut stream = engine.stream(&source)?;
    let start = Instant::now();
    let dest = if a.dry_run { None } else { a.output.clone() };
    let mut run_loop = |tmp: Option<&std::path::Path>| -> Result<u64> {
        let mut writer: Option<FrameWriter> = None;
        let mut rgb = Vec::new();
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) && a.frames.is_none_or(|max| n < max) {
            let frame = cam.frame().map_err(|e| cam_err(format!("cannot read a frame: {e}")))?;
            let res = frame.resolution();
            let (w, h) = (res.width(), res.height());
            let raw = frame.buffer();
            let (ff, layout, bytes): (&str, Layout, &mut [u8]) = {
                let mut own = |fmt: PixelFormat, ff: &'static str, data: &[u8]| {
                    rgb.clear();
                    rgb.extend_from_slice(data);
                    (ff, Layout::new(fmt, w, h))
                };
                let (ff, layout) = match frame.source_frame_format() {
                    FrameFormat::YUYV => own(PixelFormat::Yuyv422, "yuyv422", raw),
                    FrameFormat::NV12 => own(PixelFormat::Nv12, "nv12", raw),
                    FrameFormat::GRAY => own(PixelFormat::Gray8, "gray", raw),
                    FrameFormat::RAWRGB => own(PixelFormat::Rgb888, "rgb24", raw),
                    FrameFormat::RAWBGR => own(PixelFormat::Bgr888, "bgr24", raw),
                    FrameFormat::MJPEG => {
                        let img = image::load_from_memory_with_format(raw, image::ImageFormat::Jpeg)
                            .map_err(|e| cam_err(format!("bad MJPEG frame: {e}")))?
                            .to_rgb8();
                        let (w, h) = img.dimensions();
                        rgb.clear();
                        rgb.extend_from_slice(img.as_raw());
                        ("rgb24", Layout::new(PixelFormat::Rgb888, w, h))
                    }
                };
                (ff, layout, &mut rgb[..])
            };
            let r = stream.process(bytes, layout, &Timing::Live(start))?;
            if let Some(tmp) = tmp {
                if writer.is_none() {
                    writer = Some(FrameWriter::spawn(tmp, ff, layout.width, layout.height, (fps, 1), None)?);
                }
                if let Some(w) = writer.as_mut() {
                    w.write_frame(bytes)?;
                }
            }
            n += 1;
            bar.inc(1);
            #[cfg(feature = "preview")]
            if let Some(p) = preview.as_mut() {
                if !p.show(bytes, layout, &r) {
                    break;
                }
            }
        }
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(n)
    };
    let out = match dest {
        Some(d) => {
            crate::batch::write_via_temp(&d, |tmp| run_loop(Some(tmp)))?;
            Some(d)
        }
        None => {
            run_loop(None)?;
            None
        }
    };
    bar.finish_and_clear();
    let _ = cam.stop_stream();
    Ok(out)
}

/// Without the `camera` feature: an error.
#[cfg(not(feature = "camera"))]
pub fn run(index: u32, _a: &AnonymiseArgs, _e: &mut Engine, _m: &MultiProgress) -> Result<Option<PathBuf>> {
    Err(Error::Camera { index, msg: "this build of veil has no camera support (feature `camera`)".into() })
}
