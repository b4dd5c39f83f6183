//! Stage 0 — `frame`: validated views of caller-owned pixel buffers.
//!
//! A [`Layout`] describes a frame (pixel format, width, height, row stride in bytes). A
//! [`FrameMut`] or [`Frame`] can only be built by `new_checked`, which proves once that the buffer
//! holds every row of every plane; afterwards **no accessor can panic**: every index is either
//! derived from the validated layout or checked and reported as `None`.
//!
//! Every format is seen as a small set of [`Channel`]s (R, G, B or Y, U, V), each sampled on its
//! own grid (chroma of YUYV is shared by 2×1 pixels, of NV12 by 2×2). Redaction works on channel
//! samples, so one implementation serves every format, and its [`PixelFormat::block`] tells
//! how far a region must be widened so shared chroma never leaks across its edge.

/// Largest accepted width or height, in pixels.
pub const MAX_DIM: u32 = 16_384;

/// Pixel formats accepted by the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PixelFormat {
    /// 8-bit luma, one byte per pixel.
    Gray8,
    /// R, G, B bytes.
    Rgb888,
    /// B, G, R bytes.
    Bgr888,
    /// 16-bit little-endian `rrrrrggg gggbbbbb`.
    Rgb565,
    /// Packed YUV 4:2:2: `Y0 U Y1 V` for each pair of pixels; width must be even.
    Yuyv422,
    /// Planar YUV 4:2:0: a Y plane, then an interleaved `U V` plane of half height, both with the
    /// same row stride; width and height must be even.
    Nv12,
}

/// How one channel's samples are laid out in the buffer.
///
/// Sample `(sx, sy)` of the channel lives at byte
/// `plane_offset(stride, height) + sy * stride + sx * step + offset`; for Rgb565 the sample is a
/// bit-field `bits` wide at `shift` of the little-endian `u16` at that byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Channel {
    /// 0 for the first plane, 1 for NV12's chroma plane.
    pub plane: u8,
    /// Byte offset of sample 0 within a row.
    pub offset: u8,
    /// Bytes between consecutive samples of this channel.
    pub step: u8,
    /// Horizontal subsampling: pixels per sample (1 or 2).
    pub sub_x: u8,
    /// Vertical subsampling: pixels per sample (1 or 2).
    pub sub_y: u8,
    /// Bit shift of the field inside a 16-bit word (Rgb565 only, else 0).
    pub shift: u8,
    /// Bits per sample: 8, or 5/6 for Rgb565.
    pub bits: u8,
}

impl Channel {
    const fn byte(offset: u8, step: u8) -> Self {
        Channel { plane: 0, offset, step, sub_x: 1, sub_y: 1, shift: 0, bits: 8 }
    }
    /// Largest value a sample can take.
    pub const fn max(&self) -> u16 {
        (1u16 << self.bits) - 1
    }
    /// True when the sample is a bit-field of a 16-bit word.
    pub const fn is_packed16(&self) -> bool {
        self.bits != 8
    }
}

const GRAY: [Channel; 1] = [Channel::byte(0, 1)];
const RGB: [Channel; 3] = [Channel::byte(0, 3), Channel::byte(1, 3), Channel::byte(2, 3)];
// Channels are always listed in R, G, B (or Y, U, V) order, whatever the byte order.
const BGR: [Channel; 3] = [Channel::byte(2, 3), Channel::byte(1, 3), Channel::byte(0, 3)];
const RGB565: [Channel; 3] = [
    Channel { plane: 0, offset: 0, step: 2, sub_x: 1, sub_y: 1, shift: 11, bits: 5 },
    Channel { plane: 0, offset: 0, step: 2, sub_x: 1, sub_y: 1, shift: 5, bits: 6 },
    Channel { plane: 0, offset: 0, step: 2, sub_x: 1, sub_y: 1, shift: 0, bits: 5 },
];
const YUYV: [Channel; 3] = [
    Channel::byte(0, 2),
    Channel { plane: 0, offset: 1, step: 4, sub_x: 2, sub_y: 1, shift: 0, bits: 8 },
    Channel { plane: 0, offset: 3, step: 4, sub_x: 2, sub_y: 1, shift: 0, bits: 8 },
];
const NV12: [Channel; 3] = [
    Channel::byte(0, 1),
    Channel { plane: 1, offset: 0, step: 2, sub_x: 2, sub_y: 2, shift: 0, bits: 8 },
    Channel { plane: 1, offset: 1, step: 2, sub_x: 2, sub_y: 2, shift: 0, bits: 8 },
];

impl PixelFormat {
    /// All formats, for tests and tools.
    pub const ALL: [PixelFormat; 6] = [
        PixelFormat::Gray8,
        PixelFormat::Rgb888,
        PixelFormat::Bgr888,
        PixelFormat::Rgb565,
        PixelFormat::Yuyv422,
        PixelFormat::Nv12,
    ];

    /// Bytes of the first plane per pixel, as a fraction `num / den` (YUYV: 2/1, NV12: 1/1).
    pub const fn bytes_per_pixel(self) -> u32 {
        match self {
            PixelFormat::Gray8 | PixelFormat::Nv12 => 1,
            PixelFormat::Rgb565 | PixelFormat::Yuyv422 => 2,
            PixelFormat::Rgb888 | PixelFormat::Bgr888 => 3,
        }
    }

    /// The channels of this format, in R,G,B or Y,U,V order.
    pub const fn channels(self) -> &'static [Channel] {
        match self {
            PixelFormat::Gray8 => &GRAY,
            PixelFormat::Rgb888 => &RGB,
            PixelFormat::Bgr888 => &BGR,
            PixelFormat::Rgb565 => &RGB565,
            PixelFormat::Yuyv422 => &YUYV,
            PixelFormat::Nv12 => &NV12,
        }
    }

    /// True for the Y,U,V formats (Gray8 is luma only and counts as YUV).
    pub const fn is_yuv(self) -> bool {
        matches!(self, PixelFormat::Gray8 | PixelFormat::Yuyv422 | PixelFormat::Nv12)
    }

    /// The pixel block that shares samples: regions are widened to multiples of it.
    /// `(1, 1)` except YUYV `(2, 1)` and NV12 `(2, 2)`.
    pub const fn block(self) -> (u32, u32) {
        match self {
            PixelFormat::Yuyv422 => (2, 1),
            PixelFormat::Nv12 => (2, 2),
            _ => (1, 1),
        }
    }

    /// Encode an sRGB colour as this format's channel sample values (BT.601 full range for YUV).
    pub fn encode(self, c: Rgb) -> [u16; 3] {
        match self {
            PixelFormat::Rgb888 | PixelFormat::Bgr888 => [c.r as u16, c.g as u16, c.b as u16],
            PixelFormat::Rgb565 => [(c.r >> 3) as u16, (c.g >> 2) as u16, (c.b >> 3) as u16],
            PixelFormat::Gray8 | PixelFormat::Yuyv422 | PixelFormat::Nv12 => {
                let (y, u, v) = c.to_yuv();
                [y as u16, u as u16, v as u16]
            }
        }
    }
}

/// An sRGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rgb {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

impl Rgb {
    /// Black.
    pub const BLACK: Rgb = Rgb { r: 0, g: 0, b: 0 };
    /// Build a colour.
    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Rgb { r, g, b }
    }
    /// BT.601 full-range Y, Cb, Cr in integer arithmetic (coefficients ×256).
    pub fn to_yuv(self) -> (u8, u8, u8) {
        let (r, g, b) = (self.r as i32, self.g as i32, self.b as i32);
        let y = (77 * r + 150 * g + 29 * b + 128) >> 8;
        let u = ((-43 * r - 85 * g + 128 * b + 128) >> 8) + 128;
        let v = ((128 * r - 107 * g - 21 * b + 128) >> 8) + 128;
        (y.clamp(0, 255) as u8, u.clamp(0, 255) as u8, v.clamp(0, 255) as u8)
    }
}

/// Why a frame layout or buffer was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum FrameError {
    /// Width or height is zero.
    ZeroDimension,
    /// Width or height exceeds [`MAX_DIM`].
    TooLarge,
    /// The row stride is shorter than a row of pixels.
    StrideTooSmall,
    /// The format needs an even width (YUYV, NV12) or height (NV12).
    OddDimension,
    /// The buffer is shorter than the layout requires.
    BufferTooShort {
        /// Bytes the layout needs.
        needed: u32,
        /// Bytes given.
        got: u32,
    },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::ZeroDimension => f.write_str("frame width or height is zero"),
            FrameError::TooLarge => write!(f, "frame width or height exceeds {MAX_DIM}"),
            FrameError::StrideTooSmall => f.write_str("row stride is shorter than a row"),
            FrameError::OddDimension => f.write_str("format needs even width (and height for NV12)"),
            FrameError::BufferTooShort { needed, got } => {
                write!(f, "frame buffer too short: need {needed} bytes, got {got}")
            }
        }
    }
}

/// Geometry and format of a frame. Construct with [`Layout::new`] or [`Layout::with_stride`];
/// validity is checked by [`Layout::validate`] (called by the frame constructors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Layout {
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes from one row to the next (each plane).
    pub stride: u32,
}

impl Layout {
    /// A tightly packed layout (stride = width × bytes per pixel).
    pub const fn new(format: PixelFormat, width: u32, height: u32) -> Self {
        Layout { format, width, height, stride: width.saturating_mul(format.bytes_per_pixel()) }
    }

    /// A layout with an explicit row stride in bytes.
    pub const fn with_stride(format: PixelFormat, width: u32, height: u32, stride: u32) -> Self {
        Layout { format, width, height, stride }
    }

    /// Check the layout and return the number of bytes a buffer must hold.
    pub fn validate(&self) -> Result<usize, FrameError> {
        if self.width == 0 || self.height == 0 {
            return Err(FrameError::ZeroDimension);
        }
        if self.width > MAX_DIM || self.height > MAX_DIM {
            return Err(FrameError::TooLarge);
        }
        let (bx, by) = self.format.block();
        if !self.width.is_multiple_of(bx) || !self.height.is_multiple_of(by) {
            return Err(FrameError::OddDimension);
        }
        let row = self.width as u64 * self.format.bytes_per_pixel() as u64;
        if (self.stride as u64) < row {
            return Err(FrameError::StrideTooSmall);
        }
        // Last row needs only `row` bytes, not a full stride.
        let luma = (self.height as u64 - 1) * self.stride as u64 + row;
        let total = match self.format {
            PixelFormat::Nv12 => {
                self.stride as u64 * self.height as u64
                    + (self.height as u64 / 2 - 1) * self.stride as u64
                    + row
            }
            _ => luma,
        };
        u32::try_from(total).map(|t| t as usize).map_err(|_| FrameError::TooLarge)
    }

    /// Validate the layout and that a buffer of `len` bytes holds it; returns the bytes used
    /// (the frame constructors slice the buffer to exactly that, so no later index can overrun).
    fn check_buffer(&self, len: usize) -> Result<usize, FrameError> {
        let needed = self.validate()?;
        if len < needed {
            return Err(FrameError::BufferTooShort {
                needed: needed as u32,
                got: len.min(u32::MAX as usize) as u32,
            });
        }
        Ok(needed)
    }

    /// Bytes a buffer must hold, or the reason the layout is invalid.
    pub fn required_len(&self) -> Result<usize, FrameError> {
        self.validate()
    }

    /// The frame as a rectangle at the origin.
    pub const fn rect(&self) -> Rect {
        Rect::new(0, 0, self.width as i32, self.height as i32)
    }

    /// Byte offset of the start of a channel's plane.
    const fn plane_offset(&self, plane: u8) -> usize {
        if plane == 0 {
            0
        } else {
            self.stride as usize * self.height as usize
        }
    }

    /// Samples of `ch` per row and per column: `(width / sub_x, height / sub_y)`.
    pub const fn samples(&self, ch: &Channel) -> (u32, u32) {
        (self.width / ch.sub_x as u32, self.height / ch.sub_y as u32)
    }

    /// Byte index of sample `(sx, sy)` of `ch`. Only valid for in-range samples of a validated
    /// layout; callers check the range first.
    const fn index(&self, ch: &Channel, sx: u32, sy: u32) -> usize {
        self.plane_offset(ch.plane)
            + sy as usize * self.stride as usize
            + sx as usize * ch.step as usize
            + ch.offset as usize
    }
}

/// An axis-aligned rectangle in pixel coordinates, half-open: `[x0, x1) × [y0, y1)`.
/// May extend beyond a frame; [`Rect::clip`] bounds it. Empty when `x1 <= x0` or `y1 <= y0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Rect {
    /// Left edge (inclusive).
    pub x0: i32,
    /// Top edge (inclusive).
    pub y0: i32,
    /// Right edge (exclusive).
    pub x1: i32,
    /// Bottom edge (exclusive).
    pub y1: i32,
}

impl Rect {
    /// A rectangle from its edges.
    pub const fn new(x0: i32, y0: i32, x1: i32, y1: i32) -> Self {
        Rect { x0, y0, x1, y1 }
    }
    /// A rectangle from its top-left corner and size (saturating).
    pub const fn from_xywh(x: i32, y: i32, w: i32, h: i32) -> Self {
        Rect { x0: x, y0: y, x1: x.saturating_add(w), y1: y.saturating_add(h) }
    }
    /// Width (0 when empty).
    pub const fn width(&self) -> i32 {
        if self.x1 > self.x0 {
            self.x1.saturating_sub(self.x0)
        } else {
            0
        }
    }
    /// Height (0 when empty).
    pub const fn height(&self) -> i32 {
        if self.y1 > self.y0 {
            self.y1.saturating_sub(self.y0)
        } else {
            0
        }
    }
    /// True when the rectangle covers no pixel.
    pub const fn is_empty(&self) -> bool {
        self.x1 <= self.x0 || self.y1 <= self.y0
    }
    /// Area in pixels.
    pub const fn area(&self) -> i64 {
        self.width() as i64 * self.height() as i64
    }
    /// Intersection (possibly empty).
    pub fn intersect(&self, o: &Rect) -> Rect {
        Rect { x0: self.x0.max(o.x0), y0: self.y0.max(o.y0), x1: self.x1.min(o.x1), y1: self.y1.min(o.y1) }
    }
    /// Smallest rectangle holding both.
    pub fn union(&self, o: &Rect) -> Rect {
        if self.is_empty() {
            return *o;
        }
        if o.is_empty() {
            return *self;
        }
        Rect { x0: self.x0.min(o.x0), y0: self.y0.min(o.y0), x1: self.x1.max(o.x1), y1: self.y1.max(o.y1) }
    }
    /// Clip to a `width × height` frame.
    pub fn clip(&self, width: u32, height: u32) -> Rect {
        self.intersect(&Rect::new(
            0,
            0,
            width.min(i32::MAX as u32) as i32,
            height.min(i32::MAX as u32) as i32,
        ))
    }
    /// True when `(x, y)` lies inside.
    pub const fn contains(&self, x: i32, y: i32) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }
    /// Intersection over union as a Q16 fixed-point fraction (65536 = 1.0).
    pub fn iou_q16(&self, o: &Rect) -> u32 {
        let inter = self.intersect(o).area();
        let union = self.area() + o.area() - inter;
        if union <= 0 {
            return 0;
        }
        ((inter as i128) << 16).checked_div(union as i128).unwrap_or(0).clamp(0, 1 << 16) as u32
    }
    /// Scale width and height about the centre by `scale_q8 / 256` (integer, rounds outward).
    pub fn scale_q8(&self, scale_q8: u32) -> Rect {
        if self.is_empty() {
            return *self;
        }
        let (w, h) = (self.width() as i64, self.height() as i64);
        // New size rounded up, then centred; doubled coordinates keep the centre exact.
        let nw = (w * scale_q8 as i64 + 255) >> 8;
        let nh = (h * scale_q8 as i64 + 255) >> 8;
        let cx2 = self.x0 as i64 + self.x1 as i64;
        let cy2 = self.y0 as i64 + self.y1 as i64;
        let x0 = (cx2 - nw).div_euclid(2);
        let y0 = (cy2 - nh).div_euclid(2);
        let sat = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        Rect::new(
            sat(x0),
            sat(y0),
            sat(x0 + nw + (cx2 - nw).rem_euclid(2)),
            sat(y0 + nh + (cy2 - nh).rem_euclid(2)),
        )
    }
    /// Widen outward to multiples of a `(bx, by)` block grid.
    pub fn align_out(&self, bx: u32, by: u32) -> Rect {
        let (bx, by) = (bx.max(1) as i32, by.max(1) as i32);
        let down = |v: i32, b: i32| v.div_euclid(b) * b;
        let up = |v: i32, b: i32| {
            let d = v.div_euclid(b) * b;
            if d == v {
                v
            } else {
                d.saturating_add(b)
            }
        };
        Rect::new(down(self.x0, bx), down(self.y0, by), up(self.x1, bx), up(self.y1, by))
    }
}

/// A validated, read-only frame.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    buf: &'a [u8],
    layout: Layout,
}

/// A validated, writable frame over a caller-owned buffer.
#[derive(Debug)]
pub struct FrameMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> Frame<'a> {
    /// Check `layout` and that `buf` holds it. After this, no accessor panics.
    pub fn new_checked(buf: &'a [u8], layout: Layout) -> Result<Self, FrameError> {
        let needed = layout.check_buffer(buf.len())?;
        Ok(Frame { buf: &buf[..needed], layout })
    }
    /// The layout.
    pub const fn layout(&self) -> Layout {
        self.layout
    }
    /// Width in pixels.
    pub const fn width(&self) -> u32 {
        self.layout.width
    }
    /// Height in pixels.
    pub const fn height(&self) -> u32 {
        self.layout.height
    }
    /// The pixel format.
    pub const fn format(&self) -> PixelFormat {
        self.layout.format
    }
    /// The bytes of the frame (exactly `layout.required_len()` long).
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    /// Sample `(sx, sy)` of channel `ch`, or `None` when out of range.
    pub fn sample(&self, ch: &Channel, sx: u32, sy: u32) -> Option<u16> {
        read_sample(self.buf, &self.layout, ch, sx, sy)
    }
    /// The pixel at `(x, y)` as R, G, B (YUV formats converted with BT.601), or `None` when out
    /// of range.
    pub fn rgb(&self, x: u32, y: u32) -> Option<Rgb> {
        read_rgb(self.buf, &self.layout, x, y)
    }
    /// The luma (or BT.601 luma of RGB) at `(x, y)`.
    pub fn luma(&self, x: u32, y: u32) -> Option<u8> {
        let chs = self.layout.format.channels();
        if self.layout.format.is_yuv() {
            return self.sample(&chs[0], x, y).map(|v| v as u8);
        }
        self.rgb(x, y).map(|c| c.to_yuv().0)
    }
}

impl<'a> FrameMut<'a> {
    /// Check `layout` and that `buf` holds it. After this, no accessor panics.
    pub fn new_checked(buf: &'a mut [u8], layout: Layout) -> Result<Self, FrameError> {
        let needed = layout.check_buffer(buf.len())?;
        Ok(FrameMut { buf: &mut buf[..needed], layout })
    }
    /// A read-only view.
    pub fn as_frame(&self) -> Frame<'_> {
        Frame { buf: self.buf, layout: self.layout }
    }
    /// The layout.
    pub const fn layout(&self) -> Layout {
        self.layout
    }
    /// Width in pixels.
    pub const fn width(&self) -> u32 {
        self.layout.width
    }
    /// Height in pixels.
    pub const fn height(&self) -> u32 {
        self.layout.height
    }
    /// The pixel format.
    pub const fn format(&self) -> PixelFormat {
        self.layout.format
    }
    /// Sample `(sx, sy)` of channel `ch`, or `None` when out of range.
    pub fn sample(&self, ch: &Channel, sx: u32, sy: u32) -> Option<u16> {
        read_sample(self.buf, &self.layout, ch, sx, sy)
    }
    /// Write sample `(sx, sy)` of channel `ch` (value clamped to the channel's range). Returns
    /// `false` (and writes nothing) when out of range.
    pub fn set_sample(&mut self, ch: &Channel, sx: u32, sy: u32, value: u16) -> bool {
        let (w, h) = self.layout.samples(ch);
        if sx >= w || sy >= h {
            return false;
        }
        let i = self.layout.index(ch, sx, sy);
        let v = value.min(ch.max());
        if ch.is_packed16() {
            let (Some(&lo), Some(&hi)) = (self.buf.get(i), self.buf.get(i + 1)) else {
                return false;
            };
            let word = u16::from_le_bytes([lo, hi]);
            let mask = ch.max() << ch.shift;
            let word = (word & !mask) | (v << ch.shift);
            let [lo, hi] = word.to_le_bytes();
            if let Some(b) = self.buf.get_mut(i..i + 2) {
                b[0] = lo;
                b[1] = hi;
            }
            true
        } else if let Some(b) = self.buf.get_mut(i) {
            *b = v as u8;
            true
        } else {
            false
        }
    }
    /// Raw bytes of one row of the frame's first plane, or `None` when out of range. Used by
    /// redaction fast paths; the row holds `width × bytes_per_pixel` bytes.
    pub fn row_mut(&mut self, y: u32) -> Option<&mut [u8]> {
        if y >= self.layout.height {
            return None;
        }
        let start = y as usize * self.layout.stride as usize;
        let len = self.layout.width as usize * self.layout.format.bytes_per_pixel() as usize;
        self.buf.get_mut(start..start + len)
    }
    /// All bytes of the frame, mutable. Crate-internal: only the pipeline hands a buffer back out,
    /// and only inside a [`crate::pipeline::Redacted`].
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.buf
    }
    /// Give the buffer back. Crate-internal for the same reason as [`FrameMut::bytes_mut`].
    pub(crate) fn into_bytes(self) -> &'a mut [u8] {
        self.buf
    }
}

fn read_sample(buf: &[u8], layout: &Layout, ch: &Channel, sx: u32, sy: u32) -> Option<u16> {
    let (w, h) = layout.samples(ch);
    if sx >= w || sy >= h {
        return None;
    }
    let i = layout.index(ch, sx, sy);
    if ch.is_packed16() {
        let word = u16::from_le_bytes([*buf.get(i)?, *buf.get(i + 1)?]);
        Some((word >> ch.shift) & ch.max())
    } else {
        buf.get(i).map(|&b| b as u16)
    }
}

fn read_rgb(buf: &[u8], layout: &Layout, x: u32, y: u32) -> Option<Rgb> {
    let chs = layout.format.channels();
    let get = |c: &Channel| read_sample(buf, layout, c, x / c.sub_x as u32, y / c.sub_y as u32);
    match layout.format {
        PixelFormat::Gray8 => {
            let v = get(&chs[0])? as u8;
            Some(Rgb::new(v, v, v))
        }
        PixelFormat::Rgb888 | PixelFormat::Bgr888 => {
            Some(Rgb::new(get(&chs[0])? as u8, get(&chs[1])? as u8, get(&chs[2])? as u8))
        }
        PixelFormat::Rgb565 => {
            let (r, g, b) = (get(&chs[0])?, get(&chs[1])?, get(&chs[2])?);
            Some(Rgb::new(
                ((r << 3) | (r >> 2)) as u8,
                ((g << 2) | (g >> 4)) as u8,
                ((b << 3) | (b >> 2)) as u8,
            ))
        }
        PixelFormat::Yuyv422 | PixelFormat::Nv12 => {
            Some(yuv_to_rgb(get(&chs[0])? as u8, get(&chs[1])? as u8, get(&chs[2])? as u8))
        }
    }
}

/// BT.601 full-range Y, Cb, Cr to sRGB in integer arithmetic (coefficients ×256).
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> Rgb {
    let (y, u, v) = (y as i32, u as i32 - 128, v as i32 - 128);
    let r = y + ((359 * v + 128) >> 8);
    let g = y - ((88 * u + 183 * v + 128) >> 8);
    let b = y + ((454 * u + 128) >> 8);
    Rgb::new(r.clamp(0, 255) as u8, g.clamp(0, 255) as u8, b.clamp(0, 255) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_bad_layouts() {
        let mut buf = [0u8; 64];
        let l = Layout::new(PixelFormat::Rgb888, 0, 4);
        assert_eq!(FrameMut::new_checked(&mut buf, l).unwrap_err(), FrameError::ZeroDimension);
        let l = Layout::new(PixelFormat::Rgb888, MAX_DIM + 1, 1);
        assert_eq!(FrameMut::new_checked(&mut buf, l).unwrap_err(), FrameError::TooLarge);
        let l = Layout::with_stride(PixelFormat::Rgb888, 4, 4, 11);
        assert_eq!(FrameMut::new_checked(&mut buf, l).unwrap_err(), FrameError::StrideTooSmall);
        let l = Layout::new(PixelFormat::Yuyv422, 3, 2);
        assert_eq!(FrameMut::new_checked(&mut buf, l).unwrap_err(), FrameError::OddDimension);
        let l = Layout::new(PixelFormat::Nv12, 4, 3);
        assert_eq!(FrameMut::new_checked(&mut buf, l).unwrap_err(), FrameError::OddDimension);
        let l = Layout::new(PixelFormat::Rgb888, 8, 8);
        assert_eq!(
            FrameMut::new_checked(&mut buf, l).unwrap_err(),
            FrameError::BufferTooShort { needed: 192, got: 64 }
        );
    }

    #[test]
    fn required_lengths() {
        assert_eq!(Layout::new(PixelFormat::Nv12, 4, 4).required_len(), Ok(24));
        assert_eq!(Layout::new(PixelFormat::Yuyv422, 4, 2).required_len(), Ok(16));
        // Padding after the last row is not required.
        assert_eq!(Layout::with_stride(PixelFormat::Gray8, 3, 2, 8).required_len(), Ok(11));
        assert_eq!(Layout::with_stride(PixelFormat::Nv12, 2, 2, 4).required_len(), Ok(4 * 2 + 2));
    }

    #[test]
    fn rgb565_fields_round_trip() {
        let mut buf = [0u8; 2];
        let mut f = FrameMut::new_checked(&mut buf, Layout::new(PixelFormat::Rgb565, 1, 1)).unwrap();
        let chs = PixelFormat::Rgb565.channels();
        assert!(f.set_sample(&chs[0], 0, 0, 31));
        assert!(f.set_sample(&chs[1], 0, 0, 1));
        assert!(f.set_sample(&chs[2], 0, 0, 2));
        assert_eq!(u16::from_le_bytes(buf), (31 << 11) | (1 << 5) | 2);
    }

    #[test]
    fn yuv_round_trip_is_close() {
        for c in [Rgb::new(255, 0, 0), Rgb::new(0, 255, 0), Rgb::new(10, 20, 200), Rgb::new(128, 128, 128)] {
            let (y, u, v) = c.to_yuv();
            let back = yuv_to_rgb(y, u, v);
            assert!((back.r as i32 - c.r as i32).abs() <= 3, "{c:?} -> {back:?}");
            assert!((back.g as i32 - c.g as i32).abs() <= 3, "{c:?} -> {back:?}");
            assert!((back.b as i32 - c.b as i32).abs() <= 3, "{c:?} -> {back:?}");
        }
    }

    #[test]
    fn rect_ops() {
        let a = Rect::new(0, 0, 10, 10);
        let b = Rect::new(5, 5, 15, 15);
        assert_eq!(a.intersect(&b), Rect::new(5, 5, 10, 10));
        assert_eq!(a.iou_q16(&b), (25u32 << 16) / 175);
        assert_eq!(a.iou_q16(&a), 1 << 16);
        assert_eq!(Rect::new(10, 10, 20, 20).scale_q8(512), Rect::new(5, 5, 25, 25));
        assert_eq!(Rect::new(3, 3, 5, 6).align_out(2, 2), Rect::new(2, 2, 6, 6));
        assert_eq!(Rect::new(-5, -5, 5, 5).clip(4, 4), Rect::new(0, 0, 4, 4));
    }

    proptest! {
        /// Any layout either fails validation or yields a frame whose every accessor is total.
        #[test]
        fn accessors_never_panic(fmt in 0usize..6, w in 0u32..40, h in 0u32..40, pad in 0u32..8, len in 0usize..6000,
                                 x in 0u32..64, y in 0u32..64) {
            let format = PixelFormat::ALL[fmt];
            let layout = Layout::with_stride(format, w, h, w * format.bytes_per_pixel() + pad);
            let mut buf = std::vec![7u8; len];
            if let Ok(mut f) = FrameMut::new_checked(&mut buf, layout) {
                for ch in format.channels() {
                    let _ = f.sample(ch, x, y);
                    let _ = f.set_sample(ch, x, y, 1000);
                }
                let _ = f.as_frame().rgb(x, y);
                let _ = f.as_frame().luma(x, y);
                let _ = f.row_mut(y);
            }
        }

        #[test]
        fn scale_contains_original(x in -100i32..100, y in -100i32..100, w in 1i32..100, h in 1i32..100, s in 256u32..1024) {
            let r = Rect::from_xywh(x, y, w, h);
            let d = r.scale_q8(s);
            prop_assert_eq!(d.intersect(&r), r);
        }
    }
}
