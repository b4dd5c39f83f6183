//! Live preview window (minifb, X11): the redacted frame as the camera would emit it, with
//! detection boxes (green), coasting or held tracks (yellow), scores and frames per second.
//!
//! The window shows only redacted pixels: it draws the buffer after the pipeline returned it.

use std::time::{Duration, Instant};

use veil_core::frame::{Frame, Layout, Rect};

use crate::engine::FrameResult;
use crate::error::{Error, Result};

/// Largest window size; bigger frames are shown scaled down.
pub const MAX_WINDOW: (usize, usize) = (1280, 720);

/// Box colour for detections (0RGB).
pub const DETECTION_COLOR: u32 = 0x00_00FF00;
/// Box colour for tracks without a detection this frame.
pub const TRACK_COLOR: u32 = 0x00_FFFF00;

/// Glyphs 3×5 for the overlay text (digits, `.`, `f`, `p`, `s`, space).
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        'f' => [0b011, 0b100, 0b110, 0b100, 0b100],
        'p' => [0b110, 0b101, 0b110, 0b100, 0b100],
        's' => [0b011, 0b100, 0b010, 0b001, 0b110],
        _ => [0; 5],
    }
}

/// The drawing surface (0RGB pixels), separate from the window so it can be tested headless.
#[derive(Debug, Default)]
pub struct Canvas {
    /// Pixels, row-major.
    pub buf: Vec<u32>,
    /// Width.
    pub w: usize,
    /// Height.
    pub h: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    /// Draw a redacted frame scaled to `w × h` with the overlay for `r` and the `fps` text.
    pub fn draw(&mut self, bytes: &[u8], layout: Layout, r: &FrameResult, fps: f64) {
        let (fw, fh) = (layout.width as usize, layout.height as usize);
        let Ok(frame) = Frame::new_checked(bytes, layout) else { return };
        crate::detectors::to_rgb(&frame, &mut self.rgb);
        let (w, h) = (self.w, self.h);
        self.buf.resize(w * h, 0);
        for y in 0..h {
            let sy = y * fh / h;
            for x in 0..w {
                let sx = x * fw / w;
                let i = (sy * fw + sx) * 3;
                let px =
                    self.rgb.get(i..i + 3).map(|c| (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32);
                self.buf[y * w + x] = px.unwrap_or(0);
            }
        }
        let (sx, sy) = (w as f64 / fw.max(1) as f64, h as f64 / fh.max(1) as f64);
        let map = |rc: Rect| {
            Rect::new(
                (rc.x0 as f64 * sx) as i32,
                (rc.y0 as f64 * sy) as i32,
                (rc.x1 as f64 * sx) as i32,
                (rc.y1 as f64 * sy) as i32,
            )
        };
        for t in &r.tracks {
            let detected = r.detected && t.misses == 0;
            if !detected {
                self.rect(map(t.rect), TRACK_COLOR);
            }
        }
        for d in &r.detections {
            let m = map(d.rect);
            self.rect(m, DETECTION_COLOR);
            let s = format!("{:.2}", f64::from(d.score) / 65535.0);
            self.text(m.x0 + 2, m.y0 - 12, &s, DETECTION_COLOR);
        }
        self.text(6, 6, &format!("{fps:.1} fps"), 0x00FF_FFFF);
    }

    fn put(&mut self, x: i32, y: i32, c: u32) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            self.buf[y as usize * self.w + x as usize] = c;
        }
    }

    fn rect(&mut self, r: Rect, c: u32) {
        for t in 0..2 {
            for x in r.x0..r.x1 {
                self.put(x, r.y0 + t, c);
                self.put(x, r.y1 - 1 - t, c);
            }
            for y in r.y0..r.y1 {
                self.put(r.x0 + t, y, c);
                self.put(r.x1 - 1 - t, y, c);
            }
        }
    }

    /// Text at 2× scale on a black background.
    fn text(&mut self, x: i32, y: i32, s: &str, c: u32) {
        let y = y.max(0);
        let n = s.chars().count() as i32;
        for yy in y - 1..y + 11 {
            for xx in x - 1..x + n * 8 + 1 {
                self.put(xx, yy, 0);
            }
        }
        for (k, ch) in s.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.put(x + k as i32 * 8 + col * 2 + dx, y + row as i32 * 2 + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// Window size for a frame: the frame's size, scaled down to fit [`MAX_WINDOW`].
pub fn window_size(fw: u32, fh: u32) -> (usize, usize) {
    let (fw, fh) = (fw.max(1) as f64, fh.max(1) as f64);
    let k = (MAX_WINDOW.0 as f64 / fw).min(MAX_WINDOW.1 as f64 / fh).min(1.0);
    (((fw * k) as usize).max(1), ((fh * k) as usize).max(1))
}

/// The preview window.
#[cfg(feature = "preview")]
pub struct Preview {
    title: String,
    window: Option<minifb::Window>,
    canvas: Canvas,
    last: Option<Instant>,
    fps: f64,
}

#[cfg(feature = "preview")]
impl Preview {
    /// Prepare a preview; the window opens with the first frame (its size follows the frame).
    pub fn open(title: &str) -> Result<Self> {
        if std::env::var_os("DISPLAY").is_none() && std::env::var_os("WAYLAND_DISPLAY").is_none() {
            return Err(Error::Preview("no display (DISPLAY is not set); run under X11 or Xvfb".into()));
        }
        Ok(Preview {
            title: title.to_string(),
            window: None,
            canvas: Canvas::default(),
            last: None,
            fps: 0.0,
        })
    }

    fn ensure_window(&mut self, fw: u32, fh: u32) -> Result<()> {
        let (w, h) = window_size(fw, fh);
        if self.window.is_some() && (w, h) == (self.canvas.w, self.canvas.h) {
            return Ok(());
        }
        self.window = None;
        let win = minifb::Window::new(&self.title, w, h, minifb::WindowOptions::default())
            .map_err(|e| Error::Preview(format!("cannot open a window: {e}")))?;
        self.canvas.w = w;
        self.canvas.h = h;
        self.window = Some(win);
        Ok(())
    }

    /// Show one redacted frame. Returns `false` when the user closed the window or pressed Esc.
    pub fn show(&mut self, bytes: &[u8], layout: Layout, r: &FrameResult) -> bool {
        let now = Instant::now();
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f64();
            if dt > 0.0 {
                let inst = 1.0 / dt;
                self.fps = if self.fps == 0.0 { inst } else { self.fps * 0.9 + inst * 0.1 };
            }
        }
        self.last = Some(now);
        if let Err(e) = self.ensure_window(layout.width, layout.height) {
            eprintln!("veil: {e}");
            return false;
        }
        self.canvas.draw(bytes, layout, r, self.fps);
        match self.window.as_mut() {
            Some(w) => {
                w.set_title(&format!("{} — {:.1} fps", self.title, self.fps));
                let ok = w.update_with_buffer(&self.canvas.buf, self.canvas.w, self.canvas.h).is_ok();
                ok && w.is_open() && !w.is_key_down(minifb::Key::Escape)
            }
            None => false,
        }
    }

    /// Keep the last frame on screen for `secs` seconds or until the window is closed.
    pub fn hold(&mut self, secs: f64) {
        if secs.is_nan() || secs <= 0.0 {
            return;
        }
        let until = Instant::now() + Duration::from_secs_f64(secs.min(86_400.0));
        while Instant::now() < until {
            match self.window.as_mut() {
                Some(w) if w.is_open() && !w.is_key_down(minifb::Key::Escape) => {
                    if w.update_with_buffer(&self.canvas.buf, self.canvas.w, self.canvas.h).is_err() {
                        return;
                    }
                }
                _ => return,
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

/// Stand-in when the crate is built without the `preview` feature.
#[cfg(not(feature = "preview"))]
pub struct NoPreview;

#[cfg(not(feature = "preview"))]
impl NoPreview {
    /// Always an error: no preview in this build.
    pub fn open(_title: &str) -> Result<Self> {
        Err(Error::Preview("this build of veil has no preview (feature `preview`)".into()))
    }
    /// Never called.
    pub fn show(&mut self, _b: &[u8], _l: Layout, _r: &FrameResult) -> bool {
        false
    }
    /// Never called.
    pub fn hold(&mut self, _secs: f64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_core::evidence::{Chain, Outcome, RegionDigest};
    use veil_core::frame::PixelFormat;
    use veil_core::{Class, Detection};

    #[test]
    fn canvas_draws_frame_boxes_and_text() {
        let layout = Layout::new(PixelFormat::Rgb888, 64, 32);
        let bytes: Vec<u8> = (0..64 * 32).flat_map(|_| [10u8, 20, 30]).collect();
        let mut chain = Chain::new();
        let record = chain.append(0, [0; 16], [0; 32], 0, RegionDigest::new().finish(), Outcome::Normal);
        let r = FrameResult {
            record,
            detected: true,
            detections: vec![Detection { rect: Rect::new(20, 16, 40, 30), class: Class::Face, score: 65535 }],
            tracks: vec![],
            regions: vec![],
            detector_error: None,
        };
        let mut c = Canvas { w: 64, h: 32, ..Canvas::default() };
        c.draw(&bytes, layout, &r, 12.5);
        assert_eq!(c.buf[31 * 64 + 63], 0x0A141E, "frame pixel");
        assert_eq!(c.buf[29 * 64 + 30], DETECTION_COLOR, "bottom edge of the box");
        assert!(c.buf[..12 * 64].contains(&0x00FF_FFFF), "fps text");
        assert_eq!(window_size(1920, 1080), (1280, 720));
        assert_eq!(window_size(320, 240), (320, 240));
    }
}
