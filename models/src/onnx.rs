//! A minimal protobuf reader (and field-level writer) for the ONNX messages the converter needs.
//!
//! Only the fields used are decoded; everything else is skipped by wire type. The writer works
//! at field level so a model can be rewritten with unknown fields preserved (used to make
//! CenterFace's input dimensions symbolic).

use crate::Error;

/// One raw protobuf field.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, Error> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or(Error::Onnx("truncated varint"))?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(Error::Onnx("varint too long"))
}

/// Split a message into `(field number, value)` pairs, in order.
pub fn fields(b: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Error> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < b.len() {
        let key = varint(b, &mut pos)?;
        let (num, wt) = ((key >> 3) as u32, key & 7);
        let v = match wt {
            0 => Value::Varint(varint(b, &mut pos)?),
            1 => {
                let s = b.get(pos..pos + 8).ok_or(Error::Onnx("truncated fixed64"))?;
                pos += 8;
                Value::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| Error::Onnx("fixed64"))?))
            }
            2 => {
                let n = varint(b, &mut pos)? as usize;
                let end = pos.checked_add(n).ok_or(Error::Onnx("length overflow"))?;
                let s = b.get(pos..end).ok_or(Error::Onnx("truncated bytes field"))?;
                pos = end;
                Value::Bytes(s)
            }
            5 => {
                let s = b.get(pos..pos + 4).ok_or(Error::Onnx("truncated fixed32"))?;
                pos += 4;
                Value::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| Error::Onnx("fixed32"))?))
            }
            _ => return Err(Error::Onnx("unsupported wire type")),
        };
        out.push((num, v));
    }
    Ok(out)
}

/// Append a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Append one field.
pub fn put_field(out: &mut Vec<u8>, num: u32, v: &Value<'_>) {
    match v {
        Value::Varint(x) => {
            put_varint(out, (num as u64) << 3);
            put_varint(out, *x);
        }
        Value::Fixed64(x) => {
            put_varint(out, ((num as u64) << 3) | 1);
            out.extend_from_slice(&x.to_le_bytes());
        }
        Value::Bytes(b) => {
            put_varint(out, ((num as u64) << 3) | 2);
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Fixed32(x) => {
            put_varint(out, ((num as u64) << 3) | 5);
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

fn string(v: &Value<'_>) -> Result<String, Error> {
    match v {
        Value::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| Error::Onnx("invalid utf-8")),
        _ => Err(Error::Onnx("expected a string")),
    }
}

fn ints(v: &Value<'_>, out: &mut Vec<i64>) -> Result<(), Error> {
    match v {
        Value::Varint(x) => out.push(*x as i64),
        Value::Bytes(b) => {
            let mut p = 0;
            while p < b.len() {
                out.push(varint(b, &mut p)? as i64);
            }
        }
        _ => return Err(Error::Onnx("expected ints")),
    }
    Ok(())
}

fn floats(v: &Value<'_>, out: &mut Vec<f32>) -> Result<(), Error> {
    match v {
        Value::Fixed32(x) => out.push(f32::from_bits(*x)),
        Value::Bytes(b) => {
            if !b.len().is_multiple_of(4) {
                return Err(Error::Onnx("packed floats length"));
            }
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
        _ => return Err(Error::Onnx("expected floats")),
    }
    Ok(())
}

/// An initializer or constant tensor.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tensor {
    /// Name.
    pub name: String,
    /// Dimensions.
    pub dims: Vec<i64>,
    /// ONNX element type (1 = float, 7 = int64).
    pub data_type: i32,
    /// Values as f32 (float tensors).
    pub floats: Vec<f32>,
    /// Values as i64 (int64 tensors).
    pub ints: Vec<i64>,
}

impl Tensor {
    fn parse(b: &[u8]) -> Result<Tensor, Error> {
        let mut t = Tensor::default();
        let mut raw: &[u8] = &[];
        for (num, v) in fields(b)? {
            match num {
                1 => ints(&v, &mut t.dims)?,
                2 => {
                    if let Value::Varint(x) = v {
                        t.data_type = x as i32
                    }
                }
                4 => floats(&v, &mut t.floats)?,
                7 => ints(&v, &mut t.ints)?,
                8 => t.name = string(&v)?,
                9 => {
                    if let Value::Bytes(r) = v {
                        raw = r
                    }
                }
                _ => {}
            }
        }
        if !raw.is_empty() {
            match t.data_type {
                1 => floats(&Value::Bytes(raw), &mut t.floats)?,
                7 => {
                    if !raw.len().is_multiple_of(8) {
                        return Err(Error::Onnx("raw int64 length"));
                    }
                    t.ints.extend(
                        raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
                    );
                }
                _ => {}
            }
        }
        Ok(t)
    }

    /// Number of elements the dims describe.
    pub fn len(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A node attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// A float.
    Float(f32),
    /// An integer.
    Int(i64),
    /// Bytes (strings).
    Str(Vec<u8>),
    /// A tensor.
    Tensor(Tensor),
    /// Floats.
    Floats(Vec<f32>),
    /// Integers.
    Ints(Vec<i64>),
}

/// A graph node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Node {
    /// Input names.
    pub inputs: Vec<String>,
    /// Output names.
    pub outputs: Vec<String>,
    /// Node name.
    pub name: String,
    /// Operator.
    pub op_type: String,
    /// Attributes, in file order.
    pub attrs: Vec<(String, Attr)>,
}

impl Node {
    fn parse(b: &[u8]) -> Result<Node, Error> {
        let mut n = Node::default();
        for (num, v) in fields(b)? {
            match num {
                1 => n.inputs.push(string(&v)?),
                2 => n.outputs.push(string(&v)?),
                3 => n.name = string(&v)?,
                4 => n.op_type = string(&v)?,
                5 => {
                    if let Value::Bytes(ab) = v {
                        n.attrs.push(parse_attr(ab)?)
                    }
                }
                _ => {}
            }
        }
        Ok(n)
    }

    /// An attribute by name.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
    /// An integer attribute or `default`.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attr(name) {
            Some(Attr::Int(v)) => *v,
            _ => default,
        }
    }
    /// An integer-list attribute or empty.
    pub fn ints(&self, name: &str) -> Vec<i64> {
        match self.attr(name) {
            Some(Attr::Ints(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
    /// A float attribute or `default`.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attr(name) {
            Some(Attr::Float(v)) => *v,
            _ => default,
        }
    }
    /// A string attribute or empty.
    pub fn str(&self, name: &str) -> String {
        match self.attr(name) {
            Some(Attr::Str(v)) => String::from_utf8_lossy(v).into_owned(),
            _ => String::new(),
        }
    }
}

fn parse_attr(b: &[u8]) -> Result<(String, Attr), Error> {
    let mut name = String::new();
    let (mut f, mut i, mut s, mut t) = (None, None, None, None);
    let (mut fl, mut il) = (Vec::new(), Vec::new());
    let mut ty = 0;
    for (num, v) in fields(b)? {
        match (num, &v) {
            (1, _) => name = string(&v)?,
            (2, Value::Fixed32(x)) => f = Some(f32::from_bits(*x)),
            (3, Value::Varint(x)) => i = Some(*x as i64),
            (4, Value::Bytes(x)) => s = Some(x.to_vec()),
            (5, Value::Bytes(x)) => t = Some(Tensor::parse(x)?),
            (7, _) => floats(&v, &mut fl)?,
            (8, _) => ints(&v, &mut il)?,
            (20, Value::Varint(x)) => ty = *x,
            _ => {}
        }
    }
    let a = match ty {
        1 => Attr::Float(f.unwrap_or(0.0)),
        2 => Attr::Int(i.unwrap_or(0)),
        3 => Attr::Str(s.unwrap_or_default()),
        4 => Attr::Tensor(t.unwrap_or_default()),
        6 => Attr::Floats(fl),
        7 => Attr::Ints(il),
        _ => match (f, i, s, t) {
            (Some(f), _, _, _) => Attr::Float(f),
            (_, Some(i), _, _) => Attr::Int(i),
            (_, _, Some(s), _) => Attr::Str(s),
            (_, _, _, Some(t)) => Attr::Tensor(t),
            _ if !fl.is_empty() => Attr::Floats(fl),
            _ => Attr::Ints(il),
        },
    };
    Ok((name, a))
}

/// A graph input or output: name and dims (`None` for a symbolic dimension).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ValueInfo {
    /// Name.
    pub name: String,
    /// Dimensions; symbolic ones are `None`.
    pub dims: Vec<Option<i64>>,
}

fn parse_value_info(b: &[u8]) -> Result<ValueInfo, Error> {
    let mut vi = ValueInfo::default();
    for (num, v) in fields(b)? {
        match (num, v) {
            (1, v) => vi.name = string(&v)?,
            (2, Value::Bytes(tp)) => {
                for (n2, v2) in fields(tp)? {
                    if let (1, Value::Bytes(tt)) = (n2, v2) {
                        for (n3, v3) in fields(tt)? {
                            if let (2, Value::Bytes(shape)) = (n3, v3) {
                                for (n4, v4) in fields(shape)? {
                                    if let (1, Value::Bytes(dim)) = (n4, v4) {
                                        let mut d = None;
                                        for (n5, v5) in fields(dim)? {
                                            if let (1, Value::Varint(x)) = (n5, v5) {
                                                d = Some(x as i64);
                                            }
                                        }
                                        vi.dims.push(d);
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(vi)
}

/// The parts of an ONNX `ModelProto` the converter uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Model {
    /// IR version.
    pub ir_version: i64,
    /// Producer name.
    pub producer: String,
    /// Producer version.
    pub producer_version: String,
    /// Default-domain opset.
    pub opset: i64,
    /// Nodes in file (topological) order.
    pub nodes: Vec<Node>,
    /// Initializers.
    pub initializers: Vec<Tensor>,
    /// Graph inputs.
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
}

impl Model {
    /// Decode a serialized `ModelProto`.
    pub fn parse(b: &[u8]) -> Result<Model, Error> {
        let mut m = Model::default();
        for (num, v) in fields(b)? {
            match (num, v) {
                (1, Value::Varint(x)) => m.ir_version = x as i64,
                (2, v) => m.producer = string(&v)?,
                (3, v) => m.producer_version = string(&v)?,
                (8, Value::Bytes(op)) => {
                    let mut domain = String::new();
                    let mut ver = 0;
                    for (n2, v2) in fields(op)? {
                        match (n2, v2) {
                            (1, v2) => domain = string(&v2)?,
                            (2, Value::Varint(x)) => ver = x as i64,
                            _ => {}
                        }
                    }
                    if domain.is_empty() || domain == "ai.onnx" {
                        m.opset = ver;
                    }
                }
                (7, Value::Bytes(g)) => {
                    for (n2, v2) in fields(g)? {
                        match (n2, v2) {
                            (1, Value::Bytes(nb)) => m.nodes.push(Node::parse(nb)?),
                            (5, Value::Bytes(tb)) => m.initializers.push(Tensor::parse(tb)?),
                            (11, Value::Bytes(vb)) => m.inputs.push(parse_value_info(vb)?),
                            (12, Value::Bytes(vb)) => m.outputs.push(parse_value_info(vb)?),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        if m.nodes.is_empty() {
            return Err(Error::Onnx("model has no graph nodes"));
        }
        Ok(m)
    }

    /// Total number of float parameters in the initializers.
    pub fn param_count(&self) -> usize {
        self.initializers.iter().filter(|t| t.data_type == 1).map(|t| t.floats.len()).sum()
    }
}

/// Rewrite every graph input's and output's dimensions to symbolic names (`<name>_d<i>`),
/// keeping the channel dimension (index 1) of 4-D inputs fixed. Every other byte of the model
/// is preserved. Used to make CenterFace's fixed `[10,3,32,32]` input dynamic.
pub fn make_dims_symbolic(model: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(model.len());
    for (num, v) in fields(model)? {
        match (num, &v) {
            (7, Value::Bytes(g)) => {
                let mut gout = Vec::with_capacity(g.len());
                for (n2, v2) in fields(g)? {
                    match (n2, &v2) {
                        (11, Value::Bytes(vi)) | (12, Value::Bytes(vi)) => {
                            let nv = rewrite_value_info(vi, n2 == 11)?;
                            put_field(&mut gout, n2, &Value::Bytes(&nv));
                        }
                        _ => put_field(&mut gout, n2, &v2),
                    }
                }
                put_field(&mut out, 7, &Value::Bytes(&gout));
            }
            _ => put_field(&mut out, num, &v),
        }
    }
    Ok(out)
}

fn rewrite_value_info(vi: &[u8], is_input: bool) -> Result<Vec<u8>, Error> {
    let info = parse_value_info(vi)?;
    let mut out = Vec::new();
    for (num, v) in fields(vi)? {
        if let (2, Value::Bytes(tp)) = (num, &v) {
            let mut tpo = Vec::new();
            for (n2, v2) in fields(tp)? {
                if let (1, Value::Bytes(tt)) = (n2, &v2) {
                    let mut tto = Vec::new();
                    for (n3, v3) in fields(tt)? {
                        if let (2, Value::Bytes(shape)) = (n3, &v3) {
                            let mut so = Vec::new();
                            let n_dims = fields(shape)?.iter().filter(|(n, _)| *n == 1).count();
                            let mut i = 0;
                            for (n4, v4) in fields(shape)? {
                                if n4 == 1 {
                                    let mut dim = Vec::new();
                                    let keep = is_input && n_dims == 4 && i == 1;
                                    if keep {
                                        if let Value::Bytes(d) = v4 {
                                            dim.extend_from_slice(d);
                                        }
                                    } else {
                                        let name = format!("{}_d{i}", info.name);
                                        put_field(&mut dim, 2, &Value::Bytes(name.as_bytes()));
                                    }
                                    put_field(&mut so, 1, &Value::Bytes(&dim));
                                    i += 1;
                                } else {
                                    put_field(&mut so, n4, &v4);
                                }
                            }
                            put_field(&mut tto, 2, &Value::Bytes(&so));
                        } else {
                            put_field(&mut tto, n3, &v3);
                        }
                    }
                    put_field(&mut tpo, 1, &Value::Bytes(&tto));
                } else {
                    put_field(&mut tpo, n2, &v2);
                }
            }
            put_field(&mut out, 2, &Value::Bytes(&tpo));
        } else {
            put_field(&mut out, num, &v);
        }
    }
    Ok(out)
}

/// Decode a Python `bytes` literal body as written by `repr()` (the text between `b'` and the
/// closing quote): printable ASCII, `\\`, `\'`, `\"`, `\n`, `\r`, `\t`, `\xNN`.
pub fn python_bytes_literal(src: &str) -> Result<Vec<u8>, Error> {
    let start = src.find("b'").map(|i| (i + 2, b'\'')).or_else(|| src.find("b\"").map(|i| (i + 2, b'"')));
    let (start, quote) = start.ok_or(Error::Onnx("no bytes literal found"))?;
    let b = src.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 2);
    let mut i = start;
    loop {
        let c = *b.get(i).ok_or(Error::Onnx("unterminated bytes literal"))?;
        if c == quote {
            return Ok(out);
        }
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *b.get(i + 1).ok_or(Error::Onnx("dangling escape"))?;
        i += 2;
        match e {
            b'\\' | b'\'' | b'"' => out.push(e),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'0' => out.push(0),
            b'x' => {
                let h = b.get(i..i + 2).ok_or(Error::Onnx("short \\x escape"))?;
                let s = std::str::from_utf8(h).map_err(|_| Error::Onnx("bad \\x escape"))?;
                out.push(u8::from_str_radix(s, 16).map_err(|_| Error::Onnx("bad \\x escape"))?);
                i += 2;
            }
            _ => return Err(Error::Onnx("unsupported escape in bytes literal")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_and_fields_round_trip() {
        let mut b = Vec::new();
        put_field(&mut b, 1, &Value::Varint(300));
        put_field(&mut b, 2, &Value::Bytes(b"abc"));
        put_field(&mut b, 5, &Value::Fixed32(7));
        let f = fields(&b).unwrap();
        assert_eq!(f, vec![(1, Value::Varint(300)), (2, Value::Bytes(b"abc")), (5, Value::Fixed32(7))]);
        assert!(fields(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn python_literal() {
        let v = python_bytes_literal("X = b'a\\x00\\\\\\'\\n\"'\n").unwrap();
        assert_eq!(v, b"a\x00\\'\n\"");
    }
}
