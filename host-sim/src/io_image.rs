//! Still images: decode with the `image` crate, redact through the pipeline, encode in the same
//! format.
//!
//! 8-bit grey images run as `Gray8` frames, 8-bit colour as `Rgb888`; alpha is kept as it was.
//! Deeper images (16-bit, float) run as `Rgb888` and only the redacted area is written back into
//! the original buffer, so the rest keeps its full precision. Animated GIFs run frame by frame,
//! as a stream (tracks follow faces across frames), and keep their delays.

use std::io::{BufWriter, Cursor};
use std::path::Path;

use image::{AnimationDecoder, DynamicImage, ImageFormat, ImageReader, RgbImage};
use veil_core::frame::{Layout, PixelFormat, Rect};

use crate::engine::{FrameResult, Stream, Timing};
use crate::error::{Error, IoContext, Result};

/// A decoded image ready for the pipeline.
struct Prepared {
    buf: Vec<u8>,
    layout: Layout,
}

fn decode_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Decode { path: path.to_path_buf(), msg: e.to_string() }
}

/// Redact one image file. `dest` is the temporary output path (`None`: dry run).
/// Returns the number of frames (1, or the GIF's frame count).
pub fn process_image(input: &Path, dest: Option<&Path>, stream: &mut Stream<'_>) -> Result<u64> {
    let bytes = std::fs::read(input).at(input)?;
    let reader = ImageReader::new(Cursor::new(&bytes)).with_guessed_format().at(input)?;
    let format = reader.format().or_else(|| ImageFormat::from_path(input).ok()).ok_or_else(|| {
        Error::Unsupported { path: input.to_path_buf(), why: "unknown image format".into() }
    })?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
        // The JPEG decoder conceals a missing tail with grey; a cut file is an error here.
        return Err(decode_err(input, "truncated JPEG (no end-of-image marker after the last scan)"));
    }
    if format == ImageFormat::Gif {
        return process_gif(input, &bytes, dest, stream);
    }
    let mut reader = ImageReader::with_format(Cursor::new(&bytes), format);
    reader.no_limits();
    let img = reader.decode().map_err(|e| decode_err(input, e))?;
    let out = redact_image(img, input, stream, &Timing::Synthetic(0))?;
    if let Some(dest) = dest {
        encode(&out, output_format(dest, format), dest)?;
    }
    Ok(1)
}

/// True when the end-of-image marker follows the last start-of-scan (entropy-coded data never
/// holds `FF D9`, since a data byte `FF` is stuffed as `FF 00`).
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(i) => bytes[i..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => false,
    }
}

/// The format to write: the output's extension when it names a format the `image` crate writes
/// (an explicit `-o photo.png` for a JPEG input), else the input's format.
pub fn output_format(dest: &Path, input: ImageFormat) -> ImageFormat {
    match ImageFormat::from_path(dest) {
        Ok(f) if f.writing_enabled() => f,
        _ => input,
    }
}

fn encode(img: &DynamicImage, format: ImageFormat, dest: &Path) -> Result<()> {
    let f = std::fs::File::create(dest).at(dest)?;
    let mut w = BufWriter::new(f);
    let img = match format {
        // JPEG has no alpha channel.
        ImageFormat::Jpeg if img.color().has_alpha() => DynamicImage::ImageRgb8(img.to_rgb8()),
        _ => img.clone(),
    };
    img.write_to(&mut w, format)
        .map_err(|e| Error::Encode { path: dest.to_path_buf(), msg: e.to_string() })?;
    let f = w.into_inner().map_err(|e| Error::io(dest, e.into_error()))?;
    f.sync_all().at(dest)
}

/// Run one decoded image through the pipeline and give back the redacted image, same type.
pub fn redact_image(
    img: DynamicImage,
    path: &Path,
    stream: &mut Stream<'_>,
    timing: &Timing,
) -> Result<DynamicImage> {
    let (w, h) = (img.width(), img.height());
    let frame_err =
        |e: veil_core::frame::FrameError| Error::Frame { path: path.to_path_buf(), msg: e.to_string() };
    match img {
        DynamicImage::ImageLuma8(mut g) => {
            let layout = Layout::new(PixelFormat::Gray8, w, h);
            layout.validate().map_err(frame_err)?;
            stream.process(&mut g, layout, timing)?;
            Ok(DynamicImage::ImageLuma8(g))
        }
        DynamicImage::ImageRgb8(mut rgb) => {
            let layout = Layout::new(PixelFormat::Rgb888, w, h);
            layout.validate().map_err(frame_err)?;
            stream.process(&mut rgb, layout, timing)?;
            Ok(DynamicImage::ImageRgb8(rgb))
        }
        DynamicImage::ImageLumaA8(mut la) => {
            let mut p = Prepared {
                buf: la.pixels().map(|p| p.0[0]).collect(),
                layout: Layout::new(PixelFormat::Gray8, w, h),
            };
            p.layout.validate().map_err(frame_err)?;
            stream.process(&mut p.buf, p.layout, timing)?;
            for (px, v) in la.pixels_mut().zip(p.buf) {
                px.0[0] = v;
            }
            Ok(DynamicImage::ImageLumaA8(la))
        }
        DynamicImage::ImageRgba8(mut rgba) => {
            let mut p = Prepared {
                buf: rgba.pixels().flat_map(|p| [p.0[0], p.0[1], p.0[2]]).collect(),
                layout: Layout::new(PixelFormat::Rgb888, w, h),
            };
            p.layout.validate().map_err(frame_err)?;
            stream.process(&mut p.buf, p.layout, timing)?;
            for (px, c) in rgba.pixels_mut().zip(p.buf.chunks_exact(3)) {
                px.0[..3].copy_from_slice(c);
            }
            Ok(DynamicImage::ImageRgba8(rgba))
        }
        deep => {
            let mut rgb: RgbImage = deep.to_rgb8();
            let layout = Layout::new(PixelFormat::Rgb888, w, h);
            layout.validate().map_err(frame_err)?;
            let r = stream.process(&mut rgb, layout, timing)?;
            Ok(write_back_deep(deep, &rgb, &redacted_area(&r, w, h)))
        }
    }
}

/// The rectangles redacted in a frame (the whole frame when it failed closed).
pub fn redacted_area(r: &FrameResult, w: u32, h: u32) -> Vec<Rect> {
    if r.outcome().is_fail_closed() {
        vec![Rect::new(0, 0, w as i32, h as i32)]
    } else {
        r.regions.iter().map(|g| g.rect.clip(w, h)).collect()
    }
}

/// Copy the redacted 8-bit pixels inside `area` into a deeper image, keeping everything else.
fn write_back_deep(img: DynamicImage, rgb: &RgbImage, area: &[Rect]) -> DynamicImage {
    let inside = |x: u32, y: u32| area.iter().any(|r| r.contains(x as i32, y as i32));
    let px = |x: u32, y: u32| rgb.get_pixel(x, y).0;
    let luma = |c: [u8; 3]| veil_core::frame::Rgb::new(c[0], c[1], c[2]).to_yuv().0;
    match img {
        DynamicImage::ImageLuma16(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    p.0[0] = u16::from(luma(px(x, y))) * 257;
                }
            }
            DynamicImage::ImageLuma16(i)
        }
        DynamicImage::ImageLumaA16(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    p.0[0] = u16::from(luma(px(x, y))) * 257;
                }
            }
            DynamicImage::ImageLumaA16(i)
        }
        DynamicImage::ImageRgb16(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    let c = px(x, y);
                    p.0 = [c[0] as u16 * 257, c[1] as u16 * 257, c[2] as u16 * 257];
                }
            }
            DynamicImage::ImageRgb16(i)
        }
        DynamicImage::ImageRgba16(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    let c = px(x, y);
                    p.0[..3].copy_from_slice(&[c[0] as u16 * 257, c[1] as u16 * 257, c[2] as u16 * 257]);
                }
            }
            DynamicImage::ImageRgba16(i)
        }
        DynamicImage::ImageRgb32F(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    let c = px(x, y);
                    p.0 = [c[0] as f32 / 255.0, c[1] as f32 / 255.0, c[2] as f32 / 255.0];
                }
            }
            DynamicImage::ImageRgb32F(i)
        }
        DynamicImage::ImageRgba32F(mut i) => {
            for (x, y, p) in i.enumerate_pixels_mut() {
                if inside(x, y) {
                    let c = px(x, y);
                    p.0[..3].copy_from_slice(&[
                        c[0] as f32 / 255.0,
                        c[1] as f32 / 255.0,
                        c[2] as f32 / 255.0,
                    ]);
                }
            }
            DynamicImage::ImageRgba32F(i)
        }
        // Unknown future layouts: fall back to the 8-bit result.
        _ => DynamicImage::ImageRgb8(rgb.clone()),
    }
}

fn process_gif(input: &Path, bytes: &[u8], dest: Option<&Path>, stream: &mut Stream<'_>) -> Result<u64> {
    let dec = image::codecs::gif::GifDecoder::new(Cursor::new(bytes)).map_err(|e| decode_err(input, e))?;
    let frames = dec.into_frames().collect_frames().map_err(|e| decode_err(input, e))?;
    if frames.is_empty() {
        return Err(decode_err(input, "GIF has no frames"));
    }
    let mut out = Vec::with_capacity(frames.len());
    let mut t_us = 0u64;
    for f in frames {
        let delay = f.delay();
        let (left, top) = (f.left(), f.top());
        let img = DynamicImage::ImageRgba8(f.into_buffer());
        let red = redact_image(img, input, stream, &Timing::Synthetic(t_us))?;
        let (num, den) = delay.numer_denom_ms();
        t_us += u64::from(num) * 1000 / u64::from(den.max(1));
        out.push(image::Frame::from_parts(red.to_rgba8(), left, top, delay));
    }
    let n = out.len() as u64;
    if let Some(dest) = dest {
        let f = std::fs::File::create(dest).at(dest)?;
        let mut enc = image::codecs::gif::GifEncoder::new(BufWriter::new(f));
        if n > 1 {
            enc.set_repeat(image::codecs::gif::Repeat::Infinite)
                .map_err(|e| Error::Encode { path: dest.to_path_buf(), msg: e.to_string() })?;
        }
        enc.encode_frames(out).map_err(|e| Error::Encode { path: dest.to_path_buf(), msg: e.to_string() })?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness() {
        let mut ok = vec![0xFF, 0xD8, 0xFF, 0xDA, 0, 1, 0xFF, 0, 5, 0xFF, 0xD9];
        assert!(jpeg_is_complete(&ok));
        ok.truncate(8);
        assert!(!jpeg_is_complete(&ok));
        // A thumbnail's EOI before the main scan does not count.
        assert!(!jpeg_is_complete(&[0xFF, 0xDA, 0xFF, 0xD9, 0xFF, 0xDA, 1, 2]));
        assert!(!jpeg_is_complete(&[]));
    }
}
