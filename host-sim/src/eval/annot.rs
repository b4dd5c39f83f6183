//! Ground-truth annotations: one in-memory form ([`ImageLabels`]) and loaders for WIDER FACE,
//! dlib/imglab XML, COCO JSON, YOLO text files, CCPD file names and Veil JSON.
//!
//! Every loader reads only the (small) label files; images are opened later, one at a time, by the
//! evaluation loop. Parse errors name the file and the line ([`Error::Parse`]).
//!
//! Classes: a label name is mapped to a [`Class`] by a [`ClassMap`] (`face`, `plate`,
//! `license_plate`, ... by default); names that map to nothing are dropped, so a COCO file with
//! people and cars can still be used for its faces. WIDER FACE and dlib boxes are faces unless
//! a dlib box carries a `<label>` the map knows; CCPD boxes are plates; YOLO class ids are
//! looked up in an ordered list of names (default `face,plate`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use veil_core::detect::Class;
use veil_core::frame::Rect;

use super::{usage, Error};

/// Annotation file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Guess from the file name and content.
    Auto,
    /// WIDER FACE `wider_face_*_bbx_gt.txt`.
    Wider,
    /// dlib / imglab XML.
    Dlib,
    /// COCO JSON (`images`, `annotations`, `categories`).
    Coco,
    /// YOLO: one `.txt` per image, `class cx cy w h` normalised.
    Yolo,
    /// CCPD: the plate box is encoded in each image's file name.
    Ccpd,
    /// Veil JSON (see `EVAL.md`).
    Veil,
}

/// A box's coordinates as the label file gives them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coords {
    /// Pixels, half-open `[x0, x1) × [y0, y1)`.
    Pixels(Rect),
    /// YOLO: centre and size as fractions of the image size.
    Normalised {
        /// Centre x / width.
        cx: f64,
        /// Centre y / height.
        cy: f64,
        /// Width / image width.
        w: f64,
        /// Height / image height.
        h: f64,
    },
}

/// One labelled object.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelBox {
    /// Where it is.
    pub coords: Coords,
    /// What it is.
    pub class: Class,
    /// Ignored boxes (dlib `ignore='1'`, WIDER `invalid`, COCO `iscrowd`) count neither as hits
    /// nor misses, and redacting them is not a false redaction.
    pub ignore: bool,
}

/// A ground-truth box in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GtBox {
    /// The box, half-open.
    pub rect: Rect,
    /// Its class.
    pub class: Class,
    /// See [`LabelBox::ignore`].
    pub ignore: bool,
}

impl LabelBox {
    /// The box in pixels of a `width × height` image (YOLO boxes rounded to the nearest pixel).
    pub fn to_pixels(&self, width: u32, height: u32) -> GtBox {
        let rect = match self.coords {
            Coords::Pixels(r) => r,
            Coords::Normalised { cx, cy, w, h } => {
                let (fw, fh) = (f64::from(width), f64::from(height));
                let px = |v: f64| v.round().clamp(i32::MIN as f64, i32::MAX as f64) as i32;
                Rect::new(
                    px((cx - w / 2.0) * fw),
                    px((cy - h / 2.0) * fh),
                    px((cx + w / 2.0) * fw),
                    px((cy + h / 2.0) * fh),
                )
            }
        };
        GtBox { rect, class: self.class, ignore: self.ignore }
    }
}

/// The labels of one image.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageLabels {
    /// The image file.
    pub path: PathBuf,
    /// Its name relative to the image root (`/`-separated); used for sharding, reports and
    /// overlay file names.
    pub name: String,
    /// Size the label file states, checked against the decoded image when present.
    pub size: Option<(u32, u32)>,
    /// The objects.
    pub boxes: Vec<LabelBox>,
}

/// Maps label names to classes. Unknown names map to `None` (dropped).
#[derive(Clone, Debug)]
pub struct ClassMap {
    names: BTreeMap<String, Option<Class>>,
    /// YOLO class ids in order.
    pub yolo: Vec<Option<Class>>,
}

impl Default for ClassMap {
    fn default() -> Self {
        let mut names = BTreeMap::new();
        for n in ["face", "faces", "human face", "human_face", "head"] {
            names.insert(n.to_string(), Some(Class::Face));
        }
        for n in [
            "plate",
            "plates",
            "license_plate",
            "licence_plate",
            "license plate",
            "licence plate",
            "license-plate",
            "number_plate",
            "number plate",
            "lp",
            "vehicle registration plate",
        ] {
            names.insert(n.to_string(), Some(Class::Plate));
        }
        ClassMap { names, yolo: vec![Some(Class::Face), Some(Class::Plate)] }
    }
}

impl ClassMap {
    /// The class of a label name (case-insensitive), `None` when it is not redacted.
    pub fn get(&self, name: &str) -> Option<Class> {
        self.names.get(&name.trim().to_lowercase()).copied().flatten()
    }
    /// `Some(class or None for skip)` when the name is known at all.
    pub fn lookup(&self, name: &str) -> Option<Option<Class>> {
        self.names.get(&name.trim().to_lowercase()).copied()
    }
    /// Add `name=face|plate|skip` rules, comma separated.
    pub fn extend(&mut self, rules: &str) -> Result<(), Error> {
        for rule in rules.split(',').filter(|r| !r.trim().is_empty()) {
            let (n, c) = rule
                .split_once('=')
                .ok_or_else(|| usage(format!("class map {rule:?}: expected NAME=face|plate|skip")))?;
            self.names.insert(n.trim().to_lowercase(), parse_target(c)?);
        }
        Ok(())
    }
    /// Set the YOLO id order, e.g. `face,plate` or `car,plate,face` (unknown names are skipped).
    pub fn set_yolo(&mut self, order: &str) {
        self.yolo = order.split(',').map(|n| self.get(n)).collect();
    }
}

fn parse_target(c: &str) -> Result<Option<Class>, Error> {
    match c.trim() {
        "face" => Ok(Some(Class::Face)),
        "plate" => Ok(Some(Class::Plate)),
        "skip" | "none" | "" => Ok(None),
        o => Err(usage(format!("class map target {o:?}: expected face, plate or skip"))),
    }
}

/// What a loader needs besides the label file.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Folder the image names are relative to (default: depends on the format, see each loader).
    pub images: Option<PathBuf>,
    /// Label name → class.
    pub classes: ClassMap,
}

/// Load `labels` in `format` (guessing for [`Format::Auto`]).
pub fn load(labels: &Path, format: Format, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let format = if format == Format::Auto { guess(labels)? } else { format };
    match format {
        Format::Wider => load_wider(labels, opts),
        Format::Dlib => load_dlib(labels, opts),
        Format::Coco => load_coco(labels, opts),
        Format::Yolo => load_yolo(labels, opts),
        Format::Ccpd => load_ccpd(labels),
        Format::Veil => load_veil(labels, opts),
        Format::Auto => unreachable_auto(),
    }
}

fn unreachable_auto() -> Result<Vec<ImageLabels>, Error> {
    Err(usage("annotation format could not be determined"))
}

/// Guess the format: a directory is YOLO (with `.txt` files) or CCPD (images only); `.xml` is
/// dlib; `*bbx_gt.txt` is WIDER FACE; `.json` is Veil when it has `"images"` entries with
/// `"boxes"`, else COCO.
pub fn guess(labels: &Path) -> Result<Format, Error> {
    if labels.is_dir() {
        let has_txt = std::fs::read_dir(labels)
            .map_err(|e| Error::io(labels, e))?
            .filter_map(|e| e.ok())
            .any(|e| e.path().extension().is_some_and(|x| x == "txt"));
        return Ok(if has_txt { Format::Yolo } else { Format::Ccpd });
    }
    let name = labels.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    if name.ends_with(".xml") {
        Ok(Format::Dlib)
    } else if name.ends_with(".txt") {
        Ok(Format::Wider)
    } else if name.ends_with(".json") {
        let text = read(labels)?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| json_err(labels, &e))?;
        let veil = v
            .get("images")
            .and_then(|i| i.as_array())
            .is_some_and(|a| a.iter().any(|i| i.get("boxes").is_some()))
            || v.get("format").and_then(|f| f.as_str()) == Some(VEIL_FORMAT);
        Ok(if veil { Format::Veil } else { Format::Coco })
    } else {
        Err(usage(format!("{}: cannot tell the annotation format; pass --format", labels.display())))
    }
}

fn read(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let upto = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..upto].iter().filter(|&&b| b == b'\n').count();
        Error::parse(path, line, "not valid UTF-8")
    })
}

fn json_err(path: &Path, e: &serde_json::Error) -> Error {
    Error::parse(path, e.line(), format!("column {}: {e}", e.column()))
}

fn root_of(labels: &Path, opts: &LoadOptions) -> PathBuf {
    opts.images.clone().unwrap_or_else(|| labels.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn pixel_box(path: &Path, line: usize, x: f64, y: f64, w: f64, h: f64) -> Result<Rect, Error> {
    let ok = |v: f64| v.is_finite() && v.abs() < 1e8;
    if !(ok(x) && ok(y) && ok(w) && ok(h)) {
        return Err(Error::parse(path, line, format!("box {x} {y} {w} {h} is not finite or out of range")));
    }
    if w < 0.0 || h < 0.0 {
        return Err(Error::parse(path, line, format!("box size {w}x{h} is negative")));
    }
    let (x0, y0) = (x.round() as i32, y.round() as i32);
    Ok(Rect::new(x0, y0, (x + w).round() as i32, (y + h).round() as i32))
}

// ---- WIDER FACE ------------------------------------------------------------------------------

/// WIDER FACE ground truth: blocks of `image path`, `count`, then `count` lines
/// `x y w h blur expression illumination invalid occlusion pose` (a count of 0 is followed by
/// one line of zeros). `invalid = 1` boxes and boxes with a zero side are ignored. Image paths
/// are relative to `--images` (default: `../WIDER_<split>/images` next to the file when it
/// exists, else the file's folder).
pub fn load_wider(labels: &Path, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let text = read(labels)?;
    let root = opts.images.clone().unwrap_or_else(|| wider_default_root(labels));
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty());
    let mut out = Vec::new();
    while let Some((ln, name)) = lines.next() {
        if !(name.contains('.') && name.split_whitespace().count() == 1) {
            return Err(Error::parse(labels, ln, format!("expected an image path, found {name:?}")));
        }
        let (cl, count) =
            lines.next().ok_or_else(|| Error::parse(labels, ln, "missing box count after image path"))?;
        let n: usize = count
            .parse()
            .map_err(|_| Error::parse(labels, cl, format!("expected a box count, found {count:?}")))?;
        if n > 100_000 {
            return Err(Error::parse(labels, cl, format!("box count {n} is implausible")));
        }
        let mut boxes = Vec::with_capacity(n);
        for k in 0..n.max(1) {
            let (bl, b) = lines
                .next()
                .ok_or_else(|| Error::parse(labels, cl, format!("file ends after {k} of {n} boxes")))?;
            let v: Vec<f64> = b
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| Error::parse(labels, bl, format!("expected numbers, found {b:?}")))?;
            if v.len() < 4 {
                return Err(Error::parse(
                    labels,
                    bl,
                    format!("expected at least 4 numbers (x y w h), found {}", v.len()),
                ));
            }
            if n == 0 {
                break; // the placeholder line
            }
            let rect = pixel_box(labels, bl, v[0], v[1], v[2], v[3])?;
            let invalid = v.get(7).copied().unwrap_or(0.0) != 0.0;
            boxes.push(LabelBox {
                coords: Coords::Pixels(rect),
                class: Class::Face,
                ignore: invalid || rect.is_empty(),
            });
        }
        out.push(ImageLabels { path: root.join(name), name: name.to_string(), size: None, boxes });
    }
    Ok(out)
}

fn wider_default_root(labels: &Path) -> PathBuf {
    let dir = labels.parent().unwrap_or(Path::new("."));
    let name = labels.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    for split in ["val", "train", "test"] {
        if name.contains(&format!("_{split}_")) {
            for cand in
                [dir.join(format!("../WIDER_{split}/images")), dir.join(format!("WIDER_{split}/images"))]
            {
                if cand.is_dir() {
                    return cand;
                }
            }
        }
    }
    dir.to_path_buf()
}

// ---- dlib / imglab XML -----------------------------------------------------------------------

/// A tag of the tiny XML scanner.
struct Tag<'a> {
    name: &'a str,
    attrs: Vec<(&'a str, String)>,
    closing: bool,
    self_closing: bool,
    line: usize,
}

/// Split an XML document into tags and text, enough for imglab files: no DTDs, no CDATA.
fn xml_tags<'a>(path: &Path, text: &'a str) -> Result<Vec<(Tag<'a>, &'a str)>, Error> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut line = 1usize;
    while let Some(start) = rest.find('<') {
        line += rest[..start].matches('\n').count();
        let after = &rest[start..];
        if let Some(c) = after.strip_prefix("<!--") {
            let end = c.find("-->").ok_or_else(|| Error::parse(path, line, "unterminated comment"))?;
            line += c[..end].matches('\n').count();
            rest = &c[end + 3..];
            continue;
        }
        if after.starts_with("<?") || after.starts_with("<!") {
            let end = after.find('>').ok_or_else(|| Error::parse(path, line, "unterminated declaration"))?;
            line += after[..end].matches('\n').count();
            rest = &after[end + 1..];
            continue;
        }
        let end = find_tag_end(after).ok_or_else(|| Error::parse(path, line, "unterminated tag"))?;
        let inner = &after[1..end];
        let tag_line = line;
        line += inner.matches('\n').count();
        rest = &after[end + 1..];
        let text_end = rest.find('<').unwrap_or(rest.len());
        let following = &rest[..text_end];
        let (closing, body) = match inner.strip_prefix('/') {
            Some(b) => (true, b),
            None => (false, inner),
        };
        let (self_closing, body) = match body.strip_suffix('/') {
            Some(b) => (true, b),
            None => (false, body),
        };
        let body = body.trim();
        let name_end = body.find(|c: char| c.is_whitespace()).unwrap_or(body.len());
        let name = &body[..name_end];
        if name.is_empty() {
            return Err(Error::parse(path, tag_line, "tag without a name"));
        }
        let attrs = parse_attrs(path, tag_line, &body[name_end..])?;
        out.push((Tag { name, attrs, closing, self_closing, line: tag_line }, following));
    }
    Ok(out)
}

/// Index of the `>` closing the tag at the start of `s`, skipping quoted attribute values.
fn find_tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') if i > 0 => return None,
            _ => {}
        }
    }
    None
}

fn parse_attrs<'a>(path: &Path, line: usize, mut s: &'a str) -> Result<Vec<(&'a str, String)>, Error> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        if s.is_empty() {
            return Ok(out);
        }
        let eq = s
            .find('=')
            .ok_or_else(|| Error::parse(path, line, format!("attribute without value near {s:?}")))?;
        let name = s[..eq].trim();
        let v = s[eq + 1..].trim_start();
        let q = v.chars().next().filter(|c| *c == '"' || *c == '\'');
        let q = q.ok_or_else(|| Error::parse(path, line, format!("attribute {name} is not quoted")))?;
        let close = v[1..]
            .find(q)
            .ok_or_else(|| Error::parse(path, line, format!("attribute {name} is not closed")))?;
        out.push((name, unescape(&v[1..1 + close])));
        s = &v[close + 2..];
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn attr<'t>(t: &'t Tag<'_>, name: &str) -> Option<&'t str> {
    t.attrs.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
}

/// dlib / imglab XML: `<image file='...'>` holding `<box top left width height [ignore='1']>`
/// (optionally with a `<label>`). Box rectangles are dlib's inclusive rectangles, so a box covers
/// `width × height` pixels from `(left, top)`. Unlabelled boxes are faces; labelled ones go
/// through the class map (unknown labels are dropped). Image files are relative to the XML's
/// folder (or `--images`).
pub fn load_dlib(labels: &Path, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let text = read(labels)?;
    let root = root_of(labels, opts);
    let tags = xml_tags(labels, &text)?;
    let mut out: Vec<ImageLabels> = Vec::new();
    let mut in_image = false;
    // The box being read: (rect, ignore, line, label).
    let mut open_box: Option<(Rect, bool, usize, Option<String>)> = None;
    let mut in_label = false;
    let finish_box = |b: (Rect, bool, usize, Option<String>), out: &mut Vec<ImageLabels>| {
        let (rect, ignore, _, label) = b;
        let class = match &label {
            None => Some(Class::Face),
            Some(l) => opts.classes.get(l),
        };
        if let (Some(class), Some(img)) = (class, out.last_mut()) {
            img.boxes.push(LabelBox { coords: Coords::Pixels(rect), class, ignore });
        }
    };
    for (tag, following) in &tags {
        match (tag.name, tag.closing) {
            ("image", false) => {
                if in_image {
                    return Err(Error::parse(labels, tag.line, "<image> inside <image>"));
                }
                let file = attr(tag, "file")
                    .ok_or_else(|| Error::parse(labels, tag.line, "<image> without file=''"))?;
                out.push(ImageLabels {
                    path: root.join(file),
                    name: file.to_string(),
                    size: None,
                    boxes: Vec::new(),
                });
                in_image = !tag.self_closing;
            }
            ("image", true) => {
                if let Some(b) = open_box.take() {
                    return Err(Error::parse(labels, b.2, "<box> not closed before </image>"));
                }
                in_image = false;
            }
            ("box", false) => {
                if !in_image {
                    return Err(Error::parse(labels, tag.line, "<box> outside <image>"));
                }
                let num = |n: &str| -> Result<f64, Error> {
                    let v = attr(tag, n)
                        .ok_or_else(|| Error::parse(labels, tag.line, format!("<box> without {n}=''")))?;
                    v.trim().parse().map_err(|_| {
                        Error::parse(labels, tag.line, format!("<box> {n}={v:?} is not a number"))
                    })
                };
                let rect =
                    pixel_box(labels, tag.line, num("left")?, num("top")?, num("width")?, num("height")?)?;
                let ignore = attr(tag, "ignore").is_some_and(|v| v.trim() == "1" || v.trim() == "true");
                let b = (rect, ignore, tag.line, None);
                if tag.self_closing {
                    finish_box(b, &mut out);
                } else {
                    open_box = Some(b);
                }
            }
            ("box", true) => {
                let b =
                    open_box.take().ok_or_else(|| Error::parse(labels, tag.line, "</box> without <box>"))?;
                finish_box(b, &mut out);
            }
            ("label", false) => {
                in_label = !tag.self_closing;
                if let (Some(b), true) = (open_box.as_mut(), in_label) {
                    b.3 = Some(unescape(following.trim()));
                }
            }
            ("label", true) => in_label = false,
            _ => {}
        }
    }
    if let Some(b) = open_box {
        return Err(Error::parse(labels, b.2, "<box> never closed"));
    }
    if in_image || in_label {
        return Err(Error::parse(labels, text.lines().count().max(1), "document ends inside <image>"));
    }
    Ok(out)
}

// ---- COCO ------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnn>,
    #[serde(default)]
    categories: Vec<CocoCat>,
}

#[derive(Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Deserialize)]
struct CocoAnn {
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: u8,
    #[serde(default)]
    ignore: Option<u8>,
}

#[derive(Deserialize)]
struct CocoCat {
    id: u64,
    name: String,
}

/// COCO JSON: `bbox` is `[x, y, w, h]` in pixels; `iscrowd` (or `ignore`) boxes are ignored;
/// categories go through the class map. Images are relative to `--images` (default: the JSON's
/// folder). Errors name the line of the JSON, or of the offending annotation's `image_id`.
pub fn load_coco(labels: &Path, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let text = read(labels)?;
    let root = root_of(labels, opts);
    let coco: CocoFile = serde_json::from_str(&text).map_err(|e| json_err(labels, &e))?;
    let cats: BTreeMap<u64, Option<Class>> =
        coco.categories.iter().map(|c| (c.id, opts.classes.get(&c.name))).collect();
    let mut index = BTreeMap::new();
    let mut out = Vec::with_capacity(coco.images.len());
    for im in &coco.images {
        if index.insert(im.id, out.len()).is_some() {
            return Err(Error::parse(
                labels,
                line_of(&text, &format!("\"id\": {}", im.id)),
                format!("duplicate image id {}", im.id),
            ));
        }
        let size = im.width.zip(im.height);
        out.push(ImageLabels {
            path: root.join(&im.file_name),
            name: im.file_name.clone(),
            size,
            boxes: Vec::new(),
        });
    }
    for (k, a) in coco.annotations.iter().enumerate() {
        let where_ = || line_of_nth(&text, "\"image_id\"", k);
        let Some(&i) = index.get(&a.image_id) else {
            return Err(Error::parse(
                labels,
                where_(),
                format!("annotation {k} refers to unknown image_id {}", a.image_id),
            ));
        };
        let class = match cats.get(&a.category_id) {
            Some(c) => *c,
            None => {
                return Err(Error::parse(
                    labels,
                    where_(),
                    format!("annotation {k}: unknown category_id {}", a.category_id),
                ))
            }
        };
        let Some(class) = class else { continue };
        let [x, y, w, h] = a.bbox;
        let rect = pixel_box(labels, where_(), x, y, w, h)?;
        let ignore = a.iscrowd != 0 || a.ignore.unwrap_or(0) != 0;
        out[i].boxes.push(LabelBox { coords: Coords::Pixels(rect), class, ignore });
    }
    Ok(out)
}

/// 1-based line of the first occurrence of `needle` (1 when absent).
fn line_of(text: &str, needle: &str) -> usize {
    text.find(needle).map(|p| 1 + text[..p].matches('\n').count()).unwrap_or(1)
}

/// 1-based line of the `n`-th occurrence of `needle` (1 when absent).
fn line_of_nth(text: &str, needle: &str, n: usize) -> usize {
    text.match_indices(needle).nth(n).map(|(p, _)| 1 + text[..p].matches('\n').count()).unwrap_or(1)
}

// ---- YOLO ------------------------------------------------------------------------------------

const IMAGE_EXTS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff", "ppm"];

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTS.contains(&e.to_lowercase().as_str()))
}

/// Files under `dir`, recursively, sorted by path.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = e.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn rel_name(root: &Path, p: &Path) -> String {
    let r = p.strip_prefix(root).unwrap_or(p);
    r.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// YOLO: `labels` is a folder of `.txt` files, one per image, each line `class cx cy w h` with
/// coordinates as fractions of the image size. The image of `a/b.txt` is `a/b.<ext>` under
/// `--images` (default: the same folder, or the sibling `images/` folder of a `labels/` folder).
/// Ids go through the YOLO name order of the class map; ids it does not list are an error.
pub fn load_yolo(labels: &Path, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let root = opts.images.clone().unwrap_or_else(|| {
        let sib = labels.parent().map(|p| p.join("images"));
        match sib {
            Some(s) if labels.file_name().is_some_and(|n| n == "labels") && s.is_dir() => s,
            _ => labels.to_path_buf(),
        }
    });
    let mut out = Vec::new();
    for txt in walk(labels)?.into_iter().filter(|p| p.extension().is_some_and(|e| e == "txt")) {
        let rel = txt.strip_prefix(labels).unwrap_or(&txt).with_extension("");
        let stem = root.join(&rel);
        let image = IMAGE_EXTS
            .iter()
            .flat_map(|e| [stem.with_extension(e), stem.with_extension(e.to_uppercase())])
            .find(|p| p.is_file())
            .ok_or_else(|| Error::parse(&txt, 1, format!("no image {}.* found", stem.display())))?;
        let text = read(&txt)?;
        let mut boxes = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 5 {
                return Err(Error::parse(
                    &txt,
                    i + 1,
                    format!("expected `class cx cy w h`, found {} fields", f.len()),
                ));
            }
            let id: usize = f[0]
                .parse()
                .map_err(|_| Error::parse(&txt, i + 1, format!("class id {:?} is not an integer", f[0])))?;
            let v: Vec<f64> = f[1..]
                .iter()
                .map(|s| s.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| Error::parse(&txt, i + 1, format!("expected numbers, found {l:?}")))?;
            if v.iter().any(|x| !x.is_finite() || !(-0.5..=1.5).contains(x)) || v[2] < 0.0 || v[3] < 0.0 {
                return Err(Error::parse(
                    &txt,
                    i + 1,
                    format!("coordinates {l:?} are not fractions of the image size"),
                ));
            }
            let class = *opts.classes.yolo.get(id).ok_or_else(|| {
                Error::parse(
                    &txt,
                    i + 1,
                    format!("class id {id} has no name (ids: {})", opts.classes.yolo.len()),
                )
            })?;
            if let Some(class) = class {
                boxes.push(LabelBox {
                    coords: Coords::Normalised { cx: v[0], cy: v[1], w: v[2], h: v[3] },
                    class,
                    ignore: false,
                });
            }
        }
        out.push(ImageLabels { name: rel_name(&root, &image), path: image, size: None, boxes });
    }
    Ok(out)
}

// ---- CCPD ------------------------------------------------------------------------------------

/// CCPD: every image name is `area-tilt-x0&y0_x1&y1-vertices-plate-brightness-blur.jpg`; the
/// third field is the plate's bounding box (corners inclusive). Names without `-` (CCPD-NP, no
/// plate) have no boxes. `labels` is the image folder.
pub fn load_ccpd(labels: &Path) -> Result<Vec<ImageLabels>, Error> {
    let mut out = Vec::new();
    for p in walk(labels)?.into_iter().filter(|p| is_image(p)) {
        let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let boxes = if stem.contains('-') { vec![ccpd_box(&p, &stem)?] } else { Vec::new() };
        out.push(ImageLabels { name: rel_name(labels, &p), path: p, size: None, boxes });
    }
    Ok(out)
}

/// The plate box encoded in a CCPD file stem.
pub fn ccpd_box(path: &Path, stem: &str) -> Result<LabelBox, Error> {
    let fields: Vec<&str> = stem.split('-').collect();
    let err = |m: String| Error::parse(path, 1, format!("CCPD name: {m}"));
    if fields.len() != 7 {
        return Err(err(format!("expected 7 `-`-separated fields, found {}", fields.len())));
    }
    let corner = |s: &str| -> Result<(i32, i32), Error> {
        let (x, y) = s.split_once('&').ok_or_else(|| err(format!("corner {s:?} is not x&y")))?;
        let x = x.parse().map_err(|_| err(format!("corner {s:?} is not x&y")))?;
        let y = y.parse().map_err(|_| err(format!("corner {s:?} is not x&y")))?;
        Ok((x, y))
    };
    let (a, b) =
        fields[2].split_once('_').ok_or_else(|| err(format!("box {:?} is not x0&y0_x1&y1", fields[2])))?;
    let ((x0, y0), (x1, y1)) = (corner(a)?, corner(b)?);
    if x1 < x0 || y1 < y0 {
        return Err(err(format!("box {:?} has its corners swapped", fields[2])));
    }
    Ok(LabelBox {
        coords: Coords::Pixels(Rect::new(x0, y0, x1 + 1, y1 + 1)),
        class: Class::Plate,
        ignore: false,
    })
}

// ---- Veil JSON -------------------------------------------------------------------------------

/// Value of the `format` field of a Veil label file.
pub const VEIL_FORMAT: &str = "veil-labels-v1";

/// A Veil label file (see `EVAL.md`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VeilFile {
    /// Always [`VEIL_FORMAT`].
    pub format: String,
    /// Free text: where the images come from, how the boxes were made.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
    /// The images.
    pub images: Vec<VeilImage>,
}

/// One image of a Veil label file.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VeilImage {
    /// Path relative to the image root.
    pub file: String,
    /// Image width (checked when the image is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Image height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Hex SHA-256 of the image file, when the labels pin it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The objects.
    pub boxes: Vec<VeilBox>,
}

/// One box of a Veil label file: top-left corner and size in pixels.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VeilBox {
    /// `face` or `plate` (or a name the class map knows).
    pub class: String,
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width.
    pub w: i32,
    /// Height.
    pub h: i32,
    /// Too small, blurred or ambiguous to require (see [`LabelBox::ignore`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// Veil JSON: see `EVAL.md`. Images are relative to `--images` (default: the JSON's folder).
pub fn load_veil(labels: &Path, opts: &LoadOptions) -> Result<Vec<ImageLabels>, Error> {
    let text = read(labels)?;
    let root = root_of(labels, opts);
    let f: VeilFile = serde_json::from_str(&text).map_err(|e| json_err(labels, &e))?;
    if f.format != VEIL_FORMAT {
        return Err(Error::parse(
            labels,
            line_of(&text, "\"format\""),
            format!("format {:?}: expected {VEIL_FORMAT:?}", f.format),
        ));
    }
    let mut out = Vec::with_capacity(f.images.len());
    for (k, im) in f.images.iter().enumerate() {
        let line = line_of_nth(&text, "\"file\"", k);
        let mut boxes = Vec::with_capacity(im.boxes.len());
        for b in &im.boxes {
            if b.w <= 0 || b.h <= 0 {
                return Err(Error::parse(
                    labels,
                    line,
                    format!("{}: box {}x{} has no area", im.file, b.w, b.h),
                ));
            }
            let class = match opts.classes.lookup(&b.class) {
                Some(Some(c)) => c,
                Some(None) => continue, // mapped to skip
                None => {
                    return Err(Error::parse(
                        labels,
                        line,
                        format!("{}: unknown class {:?}", im.file, b.class),
                    ))
                }
            };
            boxes.push(LabelBox {
                coords: Coords::Pixels(Rect::from_xywh(b.x, b.y, b.w, b.h)),
                class,
                ignore: b.ignore,
            });
        }
        out.push(ImageLabels {
            path: root.join(&im.file),
            name: im.file.clone(),
            size: im.width.zip(im.height),
            boxes,
        });
    }
    Ok(out)
}

/// Write `file` as pretty JSON, one box per line (diff-friendly).
pub fn veil_to_string(file: &VeilFile) -> String {
    let mut s = String::new();
    s.push_str("{\n");
    s.push_str(&format!("  \"format\": {},\n", json_str(&file.format)));
    if !file.notes.is_empty() {
        s.push_str(&format!("  \"notes\": {},\n", json_str(&file.notes)));
    }
    s.push_str("  \"images\": [");
    for (i, im) in file.images.iter().enumerate() {
        s.push_str(if i == 0 { "\n" } else { ",\n" });
        s.push_str(&format!("    {{\"file\": {}", json_str(&im.file)));
        if let (Some(w), Some(h)) = (im.width, im.height) {
            s.push_str(&format!(", \"width\": {w}, \"height\": {h}"));
        }
        if let Some(h) = &im.sha256 {
            s.push_str(&format!(", \"sha256\": {}", json_str(h)));
        }
        s.push_str(", \"boxes\": [");
        for (j, b) in im.boxes.iter().enumerate() {
            s.push_str(if j == 0 { "\n" } else { ",\n" });
            s.push_str(&format!("      {}", serde_json::to_string(b).unwrap_or_default()));
        }
        s.push_str(if im.boxes.is_empty() { "]}" } else { "\n    ]}" });
    }
    s.push_str("\n  ]\n}\n");
    s
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}
