//! Geometry and compositing for the generator: RGBA textures, inverse-mapped warps with
//! supersampling, a premultiplied patch with blur / lighting / noise, and alpha compositing.

use image::RgbImage;

use super::rng::Rng;

/// A float RGBA image, colour premultiplied by alpha.
#[derive(Clone, Debug)]
pub struct Texture {
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
    /// Premultiplied colour, `0..=255`.
    pub rgb: Vec<[f32; 3]>,
    /// Alpha, `0..=1`.
    pub a: Vec<f32>,
}

impl Texture {
    /// A transparent texture.
    pub fn new(w: u32, h: u32) -> Self {
        let n = w as usize * h as usize;
        Texture { w, h, rgb: vec![[0.0; 3]; n], a: vec![0.0; n] }
    }

    /// Bilinear sample at texel coordinates (texel centres at `i + 0.5`); transparent outside.
    pub fn sample(&self, u: f64, v: f64) -> ([f32; 3], f32) {
        let (x, y) = (u - 0.5, v - 0.5);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = ((x - x0) as f32, (y - y0) as f32);
        let mut rgb = [0f32; 3];
        let mut a = 0f32;
        for (dy, wy) in [(0i64, 1.0 - fy), (1, fy)] {
            for (dx, wx) in [(0i64, 1.0 - fx), (1, fx)] {
                let (xi, yi) = (x0 as i64 + dx, y0 as i64 + dy);
                if xi < 0 || yi < 0 || xi >= i64::from(self.w) || yi >= i64::from(self.h) {
                    continue;
                }
                let i = yi as usize * self.w as usize + xi as usize;
                let wgt = wx * wy;
                for (acc, v) in rgb.iter_mut().zip(self.rgb[i]) {
                    *acc += v * wgt;
                }
                a += self.a[i] * wgt;
            }
        }
        (rgb, a)
    }
}

/// A premultiplied RGBA patch placed at `(x0, y0)` of a target image.
#[derive(Clone, Debug)]
pub struct Patch {
    /// Left edge in the target.
    pub x0: i32,
    /// Top edge in the target.
    pub y0: i32,
    /// The pixels.
    pub tex: Texture,
}

/// Render `tex` through `inv` (target pixel coordinates → texture coordinates) into a patch
/// covering the target rectangle `[x0, x1) × [y0, y1)`, with `ss × ss` samples per pixel.
pub fn warp(
    tex: &Texture,
    inv: impl Fn(f64, f64) -> (f64, f64),
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
    ss: u32,
) -> Patch {
    let (w, h) = ((x1 - x0).max(0) as u32, (y1 - y0).max(0) as u32);
    let mut out = Texture::new(w, h);
    let ss = ss.max(1);
    let norm = 1.0 / (ss * ss) as f32;
    for py in 0..h {
        for px in 0..w {
            let mut rgb = [0f32; 3];
            let mut a = 0f32;
            for sy in 0..ss {
                for sx in 0..ss {
                    let tx = f64::from(x0) + f64::from(px) + (f64::from(sx) + 0.5) / f64::from(ss);
                    let ty = f64::from(y0) + f64::from(py) + (f64::from(sy) + 0.5) / f64::from(ss);
                    let (u, v) = inv(tx, ty);
                    let (c, al) = tex.sample(u, v);
                    for k in 0..3 {
                        rgb[k] += c[k];
                    }
                    a += al;
                }
            }
            let i = py as usize * w as usize + px as usize;
            out.rgb[i] = rgb.map(|c| c * norm);
            out.a[i] = a * norm;
        }
    }
    Patch { x0, y0, tex: out }
}

impl Patch {
    /// Box blur of radius `r` (premultiplied, so edges blur into transparency correctly).
    pub fn blur(&mut self, r: usize) {
        if r == 0 {
            return;
        }
        let (w, h) = (self.tex.w as usize, self.tex.h as usize);
        let mut buf: Vec<[f32; 4]> =
            self.tex.rgb.iter().zip(&self.tex.a).map(|(c, &a)| [c[0], c[1], c[2], a]).collect();
        let pass =
            |buf: &mut Vec<[f32; 4]>, len: usize, count: usize, idx: &dyn Fn(usize, usize) -> usize| {
                let mut line = vec![[0f32; 4]; len];
                for j in 0..count {
                    for (i, l) in line.iter_mut().enumerate() {
                        *l = buf[idx(j, i)];
                    }
                    for i in 0..len {
                        let lo = i.saturating_sub(r);
                        let hi = (i + r).min(len - 1);
                        let mut s = [0f32; 4];
                        for l in &line[lo..=hi] {
                            for k in 0..4 {
                                s[k] += l[k];
                            }
                        }
                        // Outside the patch is transparent: divide by the full window.
                        let n = (2 * r + 1) as f32;
                        buf[idx(j, i)] = s.map(|v| v / n);
                    }
                }
            };
        if w > 0 && h > 0 {
            pass(&mut buf, w, h, &|j, i| j * w + i);
            pass(&mut buf, h, w, &|j, i| i * w + j);
        }
        for (k, v) in buf.into_iter().enumerate() {
            self.tex.rgb[k] = [v[0], v[1], v[2]];
            self.tex.a[k] = v[3];
        }
    }

    /// Lighting: colour × `gain` (per channel) + `offset`, on the un-premultiplied colour.
    pub fn light(&mut self, gain: [f32; 3], offset: f32) {
        for (c, &a) in self.tex.rgb.iter_mut().zip(&self.tex.a) {
            for k in 0..3 {
                c[k] = (c[k] * gain[k] + offset * a).clamp(0.0, 255.0 * a);
            }
        }
    }

    /// Add roughly Gaussian noise of standard deviation `sigma` (8-bit units).
    pub fn noise(&mut self, rng: &mut Rng, sigma: f32) {
        if sigma <= 0.0 {
            return;
        }
        for (c, &a) in self.tex.rgb.iter_mut().zip(&self.tex.a) {
            if a <= 0.0 {
                continue;
            }
            for v in c.iter_mut() {
                *v = (*v + rng.normal() as f32 * sigma * a).clamp(0.0, 255.0 * a);
            }
        }
    }

    /// Alpha-composite onto `img` (clipped), rounding to 8 bits.
    pub fn composite(&self, img: &mut RgbImage) {
        let (iw, ih) = (img.width() as i64, img.height() as i64);
        for py in 0..self.tex.h as i64 {
            for px in 0..self.tex.w as i64 {
                let (x, y) = (i64::from(self.x0) + px, i64::from(self.y0) + py);
                if x < 0 || y < 0 || x >= iw || y >= ih {
                    continue;
                }
                let i = py as usize * self.tex.w as usize + px as usize;
                let a = self.tex.a[i].clamp(0.0, 1.0);
                if a <= 0.0 {
                    continue;
                }
                let p = img.get_pixel_mut(x as u32, y as u32);
                for k in 0..3 {
                    let v = f32::from(p.0[k]) * (1.0 - a) + self.tex.rgb[i][k];
                    p.0[k] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// The projective map sending `src[i]` to `dst[i]` (row-major 3 × 3, `h[8] = 1`), or `None`
/// for degenerate quads.
pub fn homography(src: [(f64, f64); 4], dst: [(f64, f64); 4]) -> Option<[f64; 9]> {
    let mut m = [[0f64; 9]; 8];
    for i in 0..4 {
        let ((x, y), (u, v)) = (src[i], dst[i]);
        m[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        m[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..8 {
        let piv = (col..8).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[piv][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, piv);
        for r in 0..8 {
            if r != col {
                let f = m[r][col] / m[col][col];
                let pivot_row = m[col];
                for (v, p) in m[r].iter_mut().zip(pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    let mut h = [0f64; 9];
    for i in 0..8 {
        h[i] = m[i][8] / m[i][i];
    }
    h[8] = 1.0;
    Some(h)
}

/// Apply a homography.
pub fn project(h: &[f64; 9], x: f64, y: f64) -> (f64, f64) {
    let w = h[6] * x + h[7] * y + h[8];
    let w = if w.abs() < 1e-12 { 1e-12 } else { w };
    ((h[0] * x + h[1] * y + h[2]) / w, (h[3] * x + h[4] * y + h[5]) / w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn homography_maps_corners() {
        let src = [(0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0)];
        let dst = [(10.0, 5.0), (90.0, 12.0), (95.0, 40.0), (8.0, 30.0)];
        let h = homography(src, dst).unwrap();
        for i in 0..4 {
            let (x, y) = project(&h, src[i].0, src[i].1);
            assert!((x - dst[i].0).abs() < 1e-6 && (y - dst[i].1).abs() < 1e-6);
        }
        assert!(homography(src, [(0.0, 0.0); 4]).is_none());
    }

    #[test]
    fn blur_keeps_mass_inside() {
        let mut t = Texture::new(9, 9);
        t.rgb[40] = [90.0, 90.0, 90.0];
        t.a[40] = 1.0;
        let mut p = Patch { x0: 0, y0: 0, tex: t };
        p.blur(1);
        let s: f32 = p.tex.a.iter().sum();
        assert!((s - 1.0).abs() < 1e-5);
        assert!((p.tex.a[40] - 1.0 / 9.0).abs() < 1e-6);
    }
}
