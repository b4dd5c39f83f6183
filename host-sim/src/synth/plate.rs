//! Synthetic Vietnamese licence plates: registration numbers, colour schemes, and rendering of
//! the plate face (border, rounded corners, glyphs of [`super::font`]) as a [`Texture`].
//!
//! Layouts (sizes in millimetres, after the Vietnamese formats):
//! * car, one line, 520 × 110: `51F-123.45` (or `51F-1234`);
//! * motorbike, two lines, 190 × 140: `59-X1` over `123.45` (or `1234`).
//!
//! Schemes: white with black characters (private), yellow with black (commercial transport),
//! blue with white (state).

use super::font::{self, coverage, glyph, text_width, GRID_H, SERIES_LETTERS};
use super::paste::Texture;
use super::rng::Rng;

/// Plate layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One-line car plate.
    CarLong,
    /// Two-line motorbike plate.
    Motorbike,
}

impl Layout {
    /// Width and height in millimetres.
    pub fn size_mm(self) -> (f32, f32) {
        match self {
            Layout::CarLong => (520.0, 110.0),
            Layout::Motorbike => (190.0, 140.0),
        }
    }
    /// Width / height.
    pub fn aspect(self) -> f64 {
        let (w, h) = self.size_mm();
        f64::from(w / h)
    }
}

/// Colour scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// White plate, black characters.
    White,
    /// Yellow plate, black characters.
    Yellow,
    /// Blue plate, white characters.
    Blue,
}

impl Scheme {
    /// Background and ink colours.
    pub fn colours(self) -> ([f32; 3], [f32; 3]) {
        match self {
            Scheme::White => ([236.0, 236.0, 230.0], [22.0, 22.0, 24.0]),
            Scheme::Yellow => ([244.0, 194.0, 22.0], [22.0, 22.0, 24.0]),
            Scheme::Blue => ([24.0, 60.0, 150.0], [244.0, 244.0, 244.0]),
        }
    }
    /// Name.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::White => "white",
            Scheme::Yellow => "yellow",
            Scheme::Blue => "blue",
        }
    }
}

/// A plate to draw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plate {
    /// Layout.
    pub layout: Layout,
    /// Colours.
    pub scheme: Scheme,
    /// Text lines (one or two).
    pub lines: Vec<String>,
}

impl Plate {
    /// A random plate.
    pub fn random(rng: &mut Rng) -> Plate {
        let layout = if rng.chance(0.5) { Layout::CarLong } else { Layout::Motorbike };
        let scheme = match rng.below(20) {
            0..=11 => Scheme::White,
            12..=16 => Scheme::Yellow,
            _ => Scheme::Blue,
        };
        let province = rng.int(11, 99);
        let letter = char::from(*rng.pick(SERIES_LETTERS).unwrap_or(&b'A'));
        let five = rng.chance(0.8);
        let digits = |rng: &mut Rng, n: usize| {
            (0..n).map(|_| char::from(b'0' + rng.below(10) as u8)).collect::<String>()
        };
        let number = |d: String| if d.len() == 5 { format!("{}.{}", &d[..3], &d[3..]) } else { d };
        let lines = match layout {
            Layout::CarLong => {
                let n = number(digits(rng, if five { 5 } else { 4 }));
                vec![format!("{province:02}{letter}-{n}")]
            }
            Layout::Motorbike => {
                let d = digits(rng, 1);
                let n = number(digits(rng, if five { 5 } else { 4 }));
                vec![format!("{province:02}-{letter}{d}"), n]
            }
        };
        Plate { layout, scheme, lines }
    }

    /// The text on one line, ` / ` between lines.
    pub fn text(&self) -> String {
        self.lines.join(" / ")
    }

    /// Render the plate face `px_w` texels wide (height from the aspect ratio).
    pub fn render(&self, px_w: u32) -> Texture {
        let (mm_w, mm_h) = self.layout.size_mm();
        let k = px_w.max(8) as f32 / mm_w; // texels per millimetre
        let (tw, th) = ((mm_w * k).round().max(1.0) as u32, (mm_h * k).round().max(1.0) as u32);
        let (bg, ink) = self.scheme.colours();
        let mut t = Texture::new(tw, th);
        // Text placement in millimetres: (line, origin x, origin y, unit).
        let gap = 0.9f32;
        let pen = 1.15f32;
        let placed: Vec<(&str, f32, f32, f32)> = match self.layout {
            Layout::CarLong => {
                let tw_u = text_width(&self.lines[0], gap);
                let u = (470.0 / tw_u).min(78.0 / GRID_H);
                vec![(self.lines[0].as_str(), (mm_w - tw_u * u) / 2.0, (mm_h - GRID_H * u) / 2.0, u)]
            }
            Layout::Motorbike => {
                let widest = self.lines.iter().map(|l| text_width(l, gap)).fold(0.0f32, f32::max);
                let u = (168.0 / widest).min(50.0 / GRID_H);
                let line_h = GRID_H * u;
                let spacing = (mm_h - 2.0 * line_h) / 3.0;
                self.lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        let w = text_width(l, gap) * u;
                        (l.as_str(), (mm_w - w) / 2.0, spacing + i as f32 * (line_h + spacing), u)
                    })
                    .collect()
            }
        };
        let corner = 8.0f32; // corner radius, mm
        let (b_out, b_in) = (3.0f32, 5.5f32); // border band, mm from the edge
        let aa = 1.0 / k; // one texel, in mm
        for y in 0..th {
            for x in 0..tw {
                let (mx, my) = ((x as f32 + 0.5) / k, (y as f32 + 0.5) / k);
                // Signed distance (mm, negative inside) to the rounded rectangle.
                let dx = (mx - mm_w / 2.0).abs() - (mm_w / 2.0 - corner);
                let dy = (my - mm_h / 2.0).abs() - (mm_h / 2.0 - corner);
                let outside =
                    (dx.max(0.0).powi(2) + dy.max(0.0).powi(2)).sqrt() + dx.max(dy).min(0.0) - corner;
                let alpha = (0.5 - outside / aa).clamp(0.0, 1.0);
                if alpha <= 0.0 {
                    continue;
                }
                let depth = -outside; // distance from the edge, inside
                let mut ink_cov = ((depth - b_out) / aa + 0.5).clamp(0.0, 1.0)
                    * ((b_in - depth) / aa + 0.5).clamp(0.0, 1.0);
                for &(line, ox, oy, u) in &placed {
                    let gy = (my - oy) / u;
                    if !(-1.0..=GRID_H + 1.0).contains(&gy) {
                        continue;
                    }
                    let mut cx = ox;
                    for c in line.chars() {
                        let Some(g) = glyph(c) else { continue };
                        let gx = (mx - cx) / u;
                        if gx >= -1.0 && gx <= g.advance + 1.0 {
                            ink_cov = ink_cov.max(coverage(&g, (gx, gy), pen, aa / u));
                        }
                        cx += (g.advance + gap) * u;
                    }
                }
                let i = y as usize * tw as usize + x as usize;
                for c in 0..3 {
                    t.rgb[i][c] = (bg[c] * (1.0 - ink_cov) + ink[c] * ink_cov) * alpha;
                }
                t.a[i] = alpha;
            }
        }
        t
    }
}

/// Every character a generated plate can hold is in the font.
pub fn font_covers_plates() -> bool {
    "0123456789-."
        .chars()
        .chain(SERIES_LETTERS.iter().map(|&b| char::from(b)))
        .all(|c| font::glyph(c).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plates_look_vietnamese() {
        let mut r = Rng::new(3);
        assert!(font_covers_plates());
        for _ in 0..200 {
            let p = Plate::random(&mut r);
            match p.layout {
                Layout::CarLong => {
                    let l = &p.lines[0];
                    assert_eq!(p.lines.len(), 1);
                    assert!(l.len() == 10 || l.len() == 8, "{l}");
                    assert_eq!(&l[3..4], "-");
                }
                Layout::Motorbike => {
                    assert_eq!(p.lines.len(), 2);
                    assert_eq!(p.lines[0].len(), 5);
                    assert_eq!(&p.lines[0][2..3], "-");
                }
            }
        }
    }

    #[test]
    fn render_has_ink_and_background() {
        let p = Plate { layout: Layout::CarLong, scheme: Scheme::Yellow, lines: vec!["51F-123.45".into()] };
        let t = p.render(260);
        assert_eq!((t.w, t.h), (260, 55));
        let dark = t.rgb.iter().filter(|c| c[0] < 60.0).count();
        let yellow = t.rgb.iter().filter(|c| c[0] > 200.0 && c[2] < 60.0).count();
        assert!(dark > 1000 && yellow > 5000, "{dark} {yellow}");
        assert_eq!(t.a[0], 0.0, "rounded corner is transparent");
    }
}
