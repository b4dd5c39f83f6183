//! `veil synth`: a deterministic generator of labelled test images.
//!
//! Each image is a crop of a real background (e.g. the dlib dashcam scenes, OpenCV's sample
//! photographs) onto which the generator pastes
//! * real faces, cut from the dlib example photographs by their XML boxes (a 1.5× context crop
//!   with a feathered elliptic edge), at a controlled size (the five evaluation buckets drawn
//!   evenly), mirrored or not, rotated (±30°), with lighting (gain, tint, offset) and sometimes
//!   blur; the label is the box of the rotated ellipse inscribed in the face box;
//! * synthetic Vietnamese plates ([`plate`]), one-line car and two-line motorbike, white /
//!   yellow / blue, drawn with the built-in stroke font ([`font`]), under a perspective warp,
//!   with blur, noise, lighting and sometimes an occluder covering part of the plate, placed in
//!   the lower part of the frame (roads, vehicles); the label is the warped plate's box.
//!
//! Everything is drawn from the seed with a small PRNG ([`rng`]), item by item (image `i` uses
//! its own fork), so a set is reproducible from `(seed, inputs, options)`: the same call writes
//! byte-identical PNG files and labels. Objects never overlap each other, nor boxes the
//! background's own labels give (e.g. real plates in a dashcam scene, from the dev set): those
//! are copied into the output labels as `ignore` boxes, so unlabelled real objects do not count
//! as false redactions.

pub mod font;
pub mod paste;
pub mod plate;
pub mod rng;

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::RgbImage;
use veil_core::detect::Class;
use veil_core::frame::Rect;

use crate::eval::annot::{self, Coords, Format, LoadOptions, VeilBox, VeilFile, VeilImage, VEIL_FORMAT};
use crate::eval::metrics::BUCKETS;
use crate::eval::{decode, usage, Error};
use paste::{homography, project, warp, Patch, Texture};
use plate::Plate;
use rng::Rng;

/// Generator settings.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Output folder (images and `labels.json`).
    pub out: PathBuf,
    /// Number of images.
    pub count: usize,
    /// Seed.
    pub seed: u64,
    /// dlib XML files whose (non-ignored) boxes are the face sources.
    pub faces: Vec<PathBuf>,
    /// Background images, or folders of them.
    pub backgrounds: Vec<PathBuf>,
    /// Veil label files for the backgrounds (matched by file name); their boxes are kept out of
    /// the way and copied as ignored boxes.
    pub background_labels: Vec<PathBuf>,
    /// Largest output size; bigger backgrounds are cropped.
    pub max_size: (u32, u32),
    /// Faces per image, inclusive range.
    pub faces_per_image: (u32, u32),
    /// Plates per image, inclusive range.
    pub plates_per_image: (u32, u32),
}

impl SynthOptions {
    /// Defaults: the committed dlib faces and dashcam scenes of this repository.
    pub fn with_repo_defaults(out: PathBuf, count: usize, seed: u64) -> Self {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data");
        SynthOptions {
            out,
            count,
            seed,
            faces: vec![data.join("dlib/faces/training.xml"), data.join("dlib/faces/testing.xml")],
            backgrounds: vec![
                data.join("dlib/mmod_cars_test_image.jpg"),
                data.join("dlib/mmod_cars_test_image2.jpg"),
            ],
            background_labels: Vec::new(),
            max_size: (960, 720),
            faces_per_image: (0, 3),
            plates_per_image: (0, 2),
        }
    }
}

/// What was generated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SynthSummary {
    /// Images written.
    pub images: usize,
    /// Faces pasted.
    pub faces: usize,
    /// Plates pasted.
    pub plates: usize,
    /// The label file.
    pub labels: PathBuf,
}

struct FaceSource {
    image: usize,
    rect: Rect,
    name: String,
}

struct Background {
    img: RgbImage,
    name: String,
    /// Boxes already in the scene (kept free, copied as ignored).
    known: Vec<(Rect, Class)>,
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension().and_then(|x| x.to_str()).is_some_and(|x| {
                        matches!(x.to_lowercase().as_str(), "jpg" | "jpeg" | "png" | "bmp" | "ppm" | "webp")
                    })
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
}

/// Generate the set described by `opts`.
pub fn generate(opts: &SynthOptions) -> Result<SynthSummary, Error> {
    if opts.count == 0 {
        return Err(usage("synth: count must be at least 1"));
    }
    if opts.faces_per_image.0 > opts.faces_per_image.1 || opts.plates_per_image.0 > opts.plates_per_image.1 {
        return Err(usage("synth: per-image ranges must be MIN..MAX with MIN <= MAX"));
    }
    // Face sources.
    let mut face_imgs: Vec<RgbImage> = Vec::new();
    let mut faces: Vec<FaceSource> = Vec::new();
    for xml in &opts.faces {
        for im in annot::load(xml, Format::Dlib, &LoadOptions::default())? {
            let boxes: Vec<Rect> = im
                .boxes
                .iter()
                .filter(|b| !b.ignore && b.class == Class::Face)
                .filter_map(|b| match b.coords {
                    Coords::Pixels(r) if r.width() >= 24 && r.height() >= 24 => Some(r),
                    _ => None,
                })
                .collect();
            if boxes.is_empty() {
                continue;
            }
            face_imgs.push(decode(&im.path)?);
            for (k, r) in boxes.into_iter().enumerate() {
                faces.push(FaceSource {
                    image: face_imgs.len() - 1,
                    rect: r,
                    name: format!("{}#{k}", im.name),
                });
            }
        }
    }
    if faces.is_empty() && opts.faces_per_image.1 > 0 {
        return Err(usage("synth: no face boxes found in the dlib XML files"));
    }
    // Backgrounds and their known objects.
    let mut known: Vec<(String, Vec<(Rect, Class)>)> = Vec::new();
    for l in &opts.background_labels {
        for im in annot::load(l, Format::Veil, &LoadOptions::default())? {
            let boxes = im.boxes.iter().map(|b| b.to_pixels(0, 0)).map(|g| (g.rect, g.class)).collect();
            known.push((file_name(Path::new(&im.name)), boxes));
        }
    }
    let mut backgrounds = Vec::new();
    for p in expand(&opts.backgrounds)? {
        let name = file_name(&p);
        let k = known.iter().filter(|(n, _)| *n == name).flat_map(|(_, b)| b.iter().copied()).collect();
        backgrounds.push(Background { img: decode(&p)?, name, known: k });
    }
    if backgrounds.is_empty() {
        return Err(usage("synth: no background images"));
    }
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;

    let root = Rng::new(opts.seed);
    let mut summary = SynthSummary::default();
    let mut labels = VeilFile {
        format: VEIL_FORMAT.into(),
        notes: format!(
            "veil synth: seed {}, {} images, faces from {} dlib boxes, backgrounds {}",
            opts.seed,
            opts.count,
            faces.len(),
            backgrounds.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
        images: Vec::new(),
    };
    for i in 0..opts.count {
        let mut rng = root.fork(i as u64);
        let bg = &backgrounds[rng.below(backgrounds.len() as u64) as usize];
        let (bw, bh) = bg.img.dimensions();
        let (w, h) = (bw.min(opts.max_size.0), bh.min(opts.max_size.1));
        let (cx, cy) = (rng.int(0, i64::from(bw - w)) as u32, rng.int(0, i64::from(bh - h)) as u32);
        let mut img = image::imageops::crop_imm(&bg.img, cx, cy, w, h).to_image();
        let mut boxes: Vec<VeilBox> = Vec::new();
        let mut taken: Vec<Rect> = Vec::new();
        for &(r, class) in &bg.known {
            let r = Rect::new(r.x0 - cx as i32, r.y0 - cy as i32, r.x1 - cx as i32, r.y1 - cy as i32);
            if r.clip(w, h).is_empty() {
                continue;
            }
            taken.push(r);
            boxes.push(VeilBox {
                class: class.name().into(),
                x: r.x0,
                y: r.y0,
                w: r.width(),
                h: r.height(),
                ignore: true,
                note: "real object of the background".into(),
            });
        }
        let n_faces = rng.int(i64::from(opts.faces_per_image.0), i64::from(opts.faces_per_image.1));
        let mut n_plates = rng.int(i64::from(opts.plates_per_image.0), i64::from(opts.plates_per_image.1));
        if n_faces + n_plates == 0 && opts.plates_per_image.1 + opts.faces_per_image.1 > 0 {
            n_plates = 1.min(i64::from(opts.plates_per_image.1));
        }
        for _ in 0..n_faces {
            if let Some(f) = rng.pick(&faces) {
                if let Some((r, note)) = paste_face(&mut rng, &mut img, &face_imgs[f.image], f, &taken) {
                    taken.push(r);
                    boxes.push(label(Class::Face, r, note));
                    summary.faces += 1;
                }
            }
        }
        for _ in 0..n_plates {
            if let Some((r, note)) = paste_plate(&mut rng, &mut img, &taken) {
                taken.push(r);
                boxes.push(label(Class::Plate, r, note));
                summary.plates += 1;
            }
        }
        let name = format!("synth_{i:05}.png");
        let dest = opts.out.join(&name);
        img.save(&dest).map_err(|e| Error::Encode { path: dest.clone(), msg: e.to_string() })?;
        labels.images.push(VeilImage { file: name, width: Some(w), height: Some(h), sha256: None, boxes });
        summary.images += 1;
    }
    let dest = opts.out.join("labels.json");
    std::fs::write(&dest, annot::veil_to_string(&labels)).map_err(|e| Error::io(&dest, e))?;
    summary.labels = dest;
    Ok(summary)
}

/// A target size (shorter side) drawn evenly over the buckets, limited to `max`.
/// The label of a pasted object.
fn label(class: Class, r: Rect, note: String) -> VeilBox {
    VeilBox { class: class.name().into(), x: r.x0, y: r.y0, w: r.width(), h: r.height(), ignore: false, note }
}

fn draw_size(rng: &mut Rng, max: f64) -> Option<f64> {
    const EDGES: [f64; BUCKETS + 1] = [8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    let b = rng.below(BUCKETS as u64) as usize;
    let (lo, hi) = (EDGES[b], EDGES[b + 1].min(max));
    (hi > lo).then(|| rng.range(lo, hi))
}

/// Find a place for a `bw × bh` box inside `y_range` (fractions of the height) that overlaps
/// none of `taken` (grown by 4 px); its top-left corner.
fn place(
    rng: &mut Rng,
    img: &RgbImage,
    bw: i32,
    bh: i32,
    y_range: (f64, f64),
    taken: &[Rect],
) -> Option<(i32, i32)> {
    let (w, h) = (img.width() as i32, img.height() as i32);
    if bw + 4 > w || bh + 4 > h {
        return None;
    }
    for _ in 0..30 {
        let x = rng.int(2, i64::from(w - bw - 2)) as i32;
        let ylo = ((f64::from(h) * y_range.0) as i32).clamp(2, h - bh - 2);
        let yhi = ((f64::from(h) * y_range.1) as i32 - bh).clamp(ylo, h - bh - 2);
        let y = rng.int(i64::from(ylo), i64::from(yhi)) as i32;
        let r = Rect::from_xywh(x - 4, y - 4, bw + 8, bh + 8);
        if taken.iter().all(|t| t.intersect(&r).is_empty()) {
            return Some((x, y));
        }
    }
    None
}

fn paste_face(
    rng: &mut Rng,
    img: &mut RgbImage,
    src: &RgbImage,
    f: &FaceSource,
    taken: &[Rect],
) -> Option<(Rect, String)> {
    let (iw, ih) = (img.width() as f64, img.height() as f64);
    let s = draw_size(rng, (iw.min(ih) * 0.6).min(256.0))?;
    let fr = f.rect;
    let (fw, fh) = (f64::from(fr.width()), f64::from(fr.height()));
    let scale = s / fw.min(fh);
    let angle = if rng.chance(0.6) { rng.range(-30.0, 30.0) } else { rng.range(-5.0, 5.0) };
    let flip = rng.chance(0.5);
    let (sin, cos) = angle.to_radians().sin_cos();
    // The label: the box of the rotated ellipse inscribed in the scaled face box.
    let (a, b) = (fw * scale / 2.0, fh * scale / 2.0);
    let hx = ((a * cos).powi(2) + (b * sin).powi(2)).sqrt();
    let hy = ((a * sin).powi(2) + (b * cos).powi(2)).sqrt();
    let (bw, bh) = ((2.0 * hx).round() as i32, (2.0 * hy).round() as i32);
    // Room for the feathered context around the face too.
    let margin = (0.3 * s).ceil() as i32;
    let (x, y) = place(rng, img, bw + 2 * margin, bh + 2 * margin, (0.0, 1.0), taken)?;
    let (cx, cy) = (f64::from(x + margin) + f64::from(bw) / 2.0, f64::from(y + margin) + f64::from(bh) / 2.0);

    // Source crop: 1.5× the face box, with a feathered elliptic alpha.
    let (fcx, fcy) = (f64::from(fr.x0) + fw / 2.0, f64::from(fr.y0) + fh / 2.0);
    let crop = Rect::new(
        (fcx - 0.75 * fw).floor() as i32,
        (fcy - 0.75 * fh).floor() as i32,
        (fcx + 0.75 * fw).ceil() as i32,
        (fcy + 0.75 * fh).ceil() as i32,
    )
    .clip(src.width(), src.height());
    // Pre-shrink big reductions so the warp (2×2 samples) does not alias.
    let k = (2.0 * scale).min(1.0);
    let (tw, th) = (
        ((f64::from(crop.width()) * k).round() as u32).max(1),
        ((f64::from(crop.height()) * k).round() as u32).max(1),
    );
    let cut = image::imageops::crop_imm(
        src,
        crop.x0 as u32,
        crop.y0 as u32,
        crop.width() as u32,
        crop.height() as u32,
    )
    .to_image();
    let small = if k < 1.0 { image::imageops::resize(&cut, tw, th, FilterType::Triangle) } else { cut };
    let (tw, th) = small.dimensions();
    let kx = f64::from(tw) / f64::from(crop.width());
    let ky = f64::from(th) / f64::from(crop.height());
    let (tcx, tcy) = ((fcx - f64::from(crop.x0)) * kx, (fcy - f64::from(crop.y0)) * ky);
    let mut tex = Texture::new(tw, th);
    for (px, py, p) in small.enumerate_pixels() {
        let dx = (f64::from(px) + 0.5 - tcx) / (0.5 * fw * kx * 1.45);
        let dy = (f64::from(py) + 0.5 - tcy) / (0.5 * fh * ky * 1.45);
        let e = (dx * dx + dy * dy).sqrt();
        let alpha = ((1.03 - e) / 0.055).clamp(0.0, 1.0) as f32;
        let i = py as usize * tw as usize + px as usize;
        tex.a[i] = alpha;
        tex.rgb[i] = p.0.map(|c| f32::from(c) * alpha);
    }
    let s_tex = scale / kx.min(ky);
    let inv = |x: f64, y: f64| {
        let (dx, dy) = (x - cx, y - cy);
        // Rotate back, unscale, unflip.
        let (mut u, v) = ((cos * dx + sin * dy) / s_tex, (-sin * dx + cos * dy) / s_tex);
        if flip {
            u = -u;
        }
        (u + tcx, v + tcy)
    };
    let ext = (f64::from(tw.max(th)) * s_tex * 0.75).ceil() as i32 + 2;
    let (x0, y0) = (cx as i32 - ext, cy as i32 - ext);
    let mut patch: Patch = warp(&tex, inv, x0, y0, cx as i32 + ext, cy as i32 + ext, 2);
    let gain = rng.range(0.55, 1.35) as f32;
    let tint = [0, 1, 2].map(|_| gain * rng.range(0.94, 1.06) as f32);
    patch.light(tint, rng.range(-25.0, 25.0) as f32);
    if rng.chance(0.3) {
        patch.blur(1);
    }
    let sigma = rng.range(0.0, 4.0) as f32;
    patch.noise(rng, sigma);
    patch.composite(img);
    let r = Rect::from_xywh(x + margin, y + margin, bw, bh);
    Some((
        r,
        format!(
            "face {} size {:.0} rot {:.0} deg{} gain {:.2}",
            f.name,
            s,
            angle,
            if flip { " flipped" } else { "" },
            gain
        ),
    ))
}

fn paste_plate(rng: &mut Rng, img: &mut RgbImage, taken: &[Rect]) -> Option<(Rect, String)> {
    let plate = Plate::random(rng);
    let aspect = plate.layout.aspect();
    let (iw, ih) = (f64::from(img.width()), f64::from(img.height()));
    // Shorter side is the plate height for both layouts.
    let s = draw_size(rng, (iw * 0.8 / aspect).min(ih * 0.5))?;
    let (pw, ph) = (s * aspect, s);
    // Perspective: yaw shrinks one side, pitch the top or bottom edge, plus a small roll and
    // corner jitter.
    let yaw = rng.range(-0.25, 0.25);
    let pitch = rng.range(-0.12, 0.12);
    let roll = rng.range(-8.0f64, 8.0).to_radians();
    let jit = 0.03 * ph;
    let half = (pw / 2.0, ph / 2.0);
    let mut corners = [(-half.0, -half.1), (half.0, -half.1), (half.0, half.1), (-half.0, half.1)];
    for (k, c) in corners.iter_mut().enumerate() {
        let side = if c.0 > 0.0 { 1.0 + yaw } else { 1.0 - yaw };
        let vert = if c.1 < 0.0 { 1.0 - pitch } else { 1.0 + pitch };
        c.1 *= side;
        c.0 *= vert;
        let (sn, cs) = roll.sin_cos();
        *c = (cs * c.0 - sn * c.1 + rng.range(-jit, jit), sn * c.0 + cs * c.1 + rng.range(-jit, jit));
        let _ = k;
    }
    let (minx, maxx) = corners.iter().fold((f64::MAX, f64::MIN), |(a, b), c| (a.min(c.0), b.max(c.0)));
    let (miny, maxy) = corners.iter().fold((f64::MAX, f64::MIN), |(a, b), c| (a.min(c.1), b.max(c.1)));
    let (bw, bh) = ((maxx - minx).ceil() as i32 + 1, (maxy - miny).ceil() as i32 + 1);
    let (x, y) = place(rng, img, bw, bh, (0.45, 1.0), taken)?;
    let (ox, oy) = (f64::from(x) - minx, f64::from(y) - miny);
    let quad = corners.map(|c| (c.0 + ox, c.1 + oy));
    let tex = plate.render(((pw * 2.0).ceil() as u32).max(24));
    let (tw, th) = (f64::from(tex.w), f64::from(tex.h));
    let h = homography(quad, [(0.0, 0.0), (tw, 0.0), (tw, th), (0.0, th)])?;
    let mut patch = warp(&tex, |px, py| project(&h, px, py), x, y, x + bw, y + bh, 2);
    let gain = rng.range(0.5, 1.2) as f32;
    patch.light([gain; 3], rng.range(-20.0, 20.0) as f32);
    let blur = rng.below(if s < 24.0 { 2 } else { 4 }) as usize;
    patch.blur(blur);
    let sigma = rng.range(0.0, 10.0) as f32;
    patch.noise(rng, sigma);
    patch.composite(img);
    let mut note =
        format!("plate {} {} size {:.0} blur {blur} noise {sigma:.1}", plate.text(), plate.scheme.name(), s);
    if rng.chance(0.3) {
        // An occluder (pole, another vehicle's edge, a pedestrian) over 10-35 % of the plate.
        let frac = rng.range(0.10, 0.35);
        let ow = ((f64::from(bw) * frac).ceil() as i32).max(1);
        let from_left = rng.chance(0.5);
        let ox0 = if rng.chance(0.3) {
            x + rng.int(0, i64::from((bw - ow).max(0))) as i32
        } else if from_left {
            x - 2
        } else {
            x + bw - ow + 2
        };
        let shade = rng.range(25.0, 110.0) as f32;
        let mut t = Texture::new(ow as u32, (bh + 6) as u32);
        for (c, a) in t.rgb.iter_mut().zip(t.a.iter_mut()) {
            *c = [shade, shade * 0.95, shade * 0.9];
            *a = 1.0;
        }
        let mut occ = Patch { x0: ox0, y0: y - 3, tex: t };
        occ.noise(rng, 6.0);
        occ.composite(img);
        note.push_str(&format!(" occluded {:.0}%", frac * 100.0));
    }
    Some((Rect::from_xywh(x, y, bw, bh), note))
}

// ---- command line ----------------------------------------------------------------------------

/// `veil synth` options.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output folder (created); receives `synth_NNNNN.png` and `labels.json`.
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// Number of images.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 500)]
    pub count: usize,
    /// Seed; the same seed and inputs give byte-identical files.
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// dlib XML files with the face sources (default: data/dlib/faces/{training,testing}.xml).
    #[arg(long, value_name = "XML", num_args = 1..)]
    pub faces: Vec<PathBuf>,
    /// Background images or folders (default: the dlib dashcam scenes).
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub backgrounds: Vec<PathBuf>,
    /// Veil label files of the backgrounds; their boxes become ignored boxes.
    #[arg(long, value_name = "JSON", num_args = 1..)]
    pub background_labels: Vec<PathBuf>,
    /// Largest output size, WxH.
    #[arg(long, value_name = "WxH", default_value = "960x720")]
    pub max_size: String,
    /// Faces per image, MIN..MAX.
    #[arg(long, value_name = "MIN..MAX", default_value = "0..3")]
    pub faces_per_image: String,
    /// Plates per image, MIN..MAX.
    #[arg(long, value_name = "MIN..MAX", default_value = "0..2")]
    pub plates_per_image: String,
}

fn parse_range(s: &str) -> Result<(u32, u32), Error> {
    let err = || usage(format!("{s:?}: expected MIN..MAX"));
    let (a, b) = s.split_once("..").ok_or_else(err)?;
    let (a, b) = (a.trim().parse().map_err(|_| err())?, b.trim().parse().map_err(|_| err())?);
    if a > b || b > 64 {
        return Err(err());
    }
    Ok((a, b))
}

impl SynthArgs {
    /// The generator options these arguments describe.
    pub fn options(&self) -> Result<SynthOptions, Error> {
        let mut o = SynthOptions::with_repo_defaults(self.output.clone(), self.count, self.seed);
        if !self.faces.is_empty() {
            o.faces = self.faces.clone();
        }
        if !self.backgrounds.is_empty() {
            o.backgrounds = self.backgrounds.clone();
        }
        o.background_labels = self.background_labels.clone();
        o.max_size = crate::cli::parse_size(&self.max_size)?;
        o.faces_per_image = parse_range(&self.faces_per_image)?;
        o.plates_per_image = parse_range(&self.plates_per_image)?;
        Ok(o)
    }
}

/// `veil synth`: generate and print a one-line summary.
pub fn command(a: &SynthArgs) -> crate::Result<()> {
    let s = generate(&a.options()?)?;
    eprintln!(
        "wrote {} images ({} faces, {} plates) and {}",
        s.images,
        s.faces,
        s.plates,
        s.labels.display()
    );
    Ok(())
}
