//! Quantisation and arena planning: [`Graph`] + calibration ranges → [`QModel`].
//!
//! - Activations: per-tensor asymmetric int8, `real = scale·(q − zp)`, from the calibrated
//!   `[min, max]` widened to include 0. Inputs of a channel concatenation share the concat's
//!   parameters and are written in place into its buffer (the concat costs nothing).
//! - Weights: per-output-channel symmetric int8 (`scale = max|w| / 127`); bias in accumulator
//!   units with the input zero point folded in.
//! - Requantisation multipliers as `m / 2^shift` with `m ∈ [2^30, 2^31)` (gemmlowp style).
//! - The model input is `q = pixel − 128` (scale 1) with a per-channel zero point
//!   `mean − 128`, which also pads the first conv.
//! - Arena: every buffer's size is `pixel_stride × 1024 / 4^stride_log2` bytes per 32×32 input
//!   cell; buffers are placed first-fit by birth order so that buffers alive at the same op never
//!   overlap; the peak is the model's arena units.

use crate::graph::{Act, Graph, Node};
use crate::reference::exp;
use crate::{Error, ModelSpec};
use veil_core::nn::ops::ChanQ;

/// Per-tensor quantisation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QParams {
    /// Real value of one step.
    pub scale: f64,
    /// Code of real zero.
    pub zp: i8,
}

impl QParams {
    /// Parameters covering `[min, max] ∪ {0}`.
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (mn, mx) = ((min as f64).min(0.0), (max as f64).max(0.0));
        let scale = if mx - mn > 0.0 { (mx - mn) / 255.0 } else { 1.0 };
        let zp = (-128.0 - mn / scale).round().clamp(-128.0, 127.0) as i8;
        QParams { scale, zp }
    }
}

/// A real multiplier as `(m, shift)`: `real ≈ m / 2^shift`.
pub fn multiplier(real: f64) -> Result<(i32, u8), Error> {
    if real == 0.0 {
        return Ok((0, 0));
    }
    if real.is_nan() || real < 0.0 || !real.is_finite() {
        return Err(Error::Quant(format!("bad multiplier {real}")));
    }
    let mut f = real;
    let mut shift: i32 = 31;
    while f >= 1.0 {
        f /= 2.0;
        shift -= 1;
    }
    while f < 0.5 {
        f *= 2.0;
        shift += 1;
    }
    let mut m = (f * 2147483648.0).round() as i64;
    if m == 1 << 31 {
        m >>= 1;
        shift -= 1;
    }
    if shift > 62 {
        // Too small to represent with a normalised mantissa: denormalise.
        let m2 = (real * 2f64.powi(62)).round() as i64;
        return Ok((m2 as i32, 62));
    }
    if shift < 0 {
        return Err(Error::Quant(format!("multiplier {real} too large")));
    }
    Ok((m as i32, shift as u8))
}

/// A quantised tensor and where it lives.
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    /// Backing buffer.
    pub buf: usize,
    /// First channel in the buffer.
    pub chan_off: usize,
    /// Channels.
    pub channels: usize,
    /// log2 stride.
    pub stride_log2: u8,
    /// Quantisation.
    pub q: QParams,
}

/// An arena buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    /// Channels (bytes per pixel).
    pub pixel_stride: usize,
    /// log2 stride.
    pub stride_log2: u8,
    /// First op writing it (0 = before the first op).
    pub birth: usize,
    /// Last op reading it.
    pub death: usize,
    /// Placement in arena units.
    pub off_units: u32,
}

impl Buffer {
    /// Size in arena units.
    pub fn units(&self) -> u32 {
        (self.pixel_stride * (1024 >> (2 * self.stride_log2 as usize))) as u32
    }
}

/// A quantised op.
#[derive(Clone, Debug, PartialEq)]
pub enum QOp {
    /// Convolution.
    Conv {
        /// Input tensor.
        input: usize,
        /// Output tensor.
        output: usize,
        /// Kernel.
        k: usize,
        /// Stride.
        stride: usize,
        /// Groups.
        groups: usize,
        /// `[cout][k][k][cin/groups]`.
        weights: Vec<i8>,
        /// Per output channel.
        chan: Vec<ChanQ>,
        /// Per-input-channel padding (first layer only).
        pad: Option<Vec<i8>>,
    },
    /// Add with optional 2× upsampling of `b`.
    Add {
        /// First operand.
        a: usize,
        /// Second operand.
        b: usize,
        /// Output.
        output: usize,
        /// Multipliers.
        m: [i32; 2],
        /// Shared shift.
        shift: u8,
    },
}

/// Head decoding tables of one level.
#[derive(Clone, Debug, PartialEq)]
pub struct QLevel {
    /// Step.
    pub step: u16,
    /// Anchor sizes.
    pub min_sizes: [u16; 2],
    /// Tensors.
    pub loc: usize,
    /// Tensors.
    pub conf: usize,
    /// Tensors.
    pub landm: Option<usize>,
    /// Q16 `variance0 × real(q)`.
    pub loc_lin: Vec<i32>,
    /// Q16 `exp(variance1 × real(q))`.
    pub loc_exp: Vec<i32>,
    /// Q16 score by `q1 − q0 + 255` (512 entries, last unused).
    pub score: Vec<u16>,
    /// Q16 `variance0 × real(q)` of the landmark head.
    pub landm_lin: Vec<i32>,
}

/// The quantised, planned model, ready to serialise.
#[derive(Clone, Debug, PartialEq)]
pub struct QModel {
    /// Tensors (0 = input).
    pub tensors: Vec<QTensor>,
    /// Buffers.
    pub buffers: Vec<Buffer>,
    /// Ops.
    pub ops: Vec<QOp>,
    /// Levels.
    pub levels: Vec<QLevel>,
    /// Peak arena units.
    pub arena_units: u32,
    /// Landmark points.
    pub n_points: usize,
}

fn lin_table(q: QParams, var: f64) -> Vec<i32> {
    (0..256)
        .map(|i| {
            let code = i as f64 - 128.0;
            (var * (code - q.zp as f64) * q.scale * 65536.0).round().clamp(-2147483648.0, 2147483647.0) as i32
        })
        .collect()
}

/// Quantise `g` with calibrated `(min, max)` per tensor.
pub fn quantise(g: &Graph, spec: &ModelSpec, ranges: &[(f32, f32)]) -> Result<QModel, Error> {
    let nt = g.tensors.len();
    // Concat membership: tensor -> (concat output, channel offset).
    let mut in_concat: Vec<Option<(usize, usize)>> = vec![None; nt];
    let mut concat_act: Vec<Option<Act>> = vec![None; nt];
    let mut consumers = vec![0usize; nt];
    for n in &g.nodes {
        match n {
            Node::Conv { input, .. } => consumers[*input] += 1,
            Node::Add { a, b, .. } => {
                consumers[*a] += 1;
                consumers[*b] += 1;
            }
            Node::Concat { inputs, .. } => inputs.iter().for_each(|i| consumers[*i] += 1),
        }
    }
    for n in &g.nodes {
        if let Node::Concat { inputs, output, act } = n {
            let mut off = 0;
            for &i in inputs {
                if consumers[i] != 1 || in_concat[i].is_some() {
                    return Err(Error::Quant("concat input used elsewhere".into()));
                }
                in_concat[i] = Some((*output, off));
                concat_act[i] = Some(*act);
                off += g.tensors[i].channels;
            }
        }
    }
    // Quantisation parameters.
    let mut qp: Vec<QParams> = ranges.iter().map(|&(a, b)| QParams::from_range(a, b)).collect();
    for t in 0..nt {
        if let Some((c, _)) = in_concat[t] {
            qp[t] = qp[c];
        }
    }
    qp[0] = QParams { scale: 1.0, zp: 0 };
    // Buffers: one per tensor not inside a concat.
    let mut buf_of = vec![usize::MAX; nt];
    let mut buffers = Vec::new();
    for t in 0..nt {
        if in_concat[t].is_none() {
            buf_of[t] = buffers.len();
            buffers.push(Buffer {
                pixel_stride: g.tensors[t].channels,
                stride_log2: g.tensors[t].stride_log2,
                birth: usize::MAX,
                death: 0,
                off_units: 0,
            });
        }
    }
    let mut tensors = Vec::with_capacity(nt);
    for t in 0..nt {
        let (buf, chan_off) = match in_concat[t] {
            Some((c, off)) => (buf_of[c], off),
            None => (buf_of[t], 0),
        };
        tensors.push(QTensor {
            buf,
            chan_off,
            channels: g.tensors[t].channels,
            stride_log2: g.tensors[t].stride_log2,
            q: qp[t],
        });
    }
    buffers[tensors[0].buf].birth = 0;
    // Ops.
    let mut ops = Vec::new();
    let in_zp = |c: usize| spec.mean[c] as i32 - 128;
    for n in &g.nodes {
        match n {
            Node::Conv { input, output, w, b, cin, cout, k, stride, groups, act, .. } => {
                let act = match (concat_act[*output], *act) {
                    (Some(a), Act::None) => a,
                    (None, a) => a,
                    _ => return Err(Error::Quant("activation both on conv and concat".into())),
                };
                let (si, so) = (qp[*input].scale, qp[*output].scale);
                let cpi = cin / groups;
                let mut weights = Vec::with_capacity(w.len());
                let mut chan = Vec::with_capacity(*cout);
                for oc in 0..*cout {
                    let ws = &w[oc * cpi * k * k..(oc + 1) * cpi * k * k];
                    let wmax = ws.iter().fold(0f64, |m, &v| m.max((v as f64).abs()));
                    let sw = if wmax > 0.0 { wmax / 127.0 } else { 1.0 };
                    let mut zp_corr: i64 = 0;
                    for ky in 0..*k {
                        for kx in 0..*k {
                            for ci in 0..cpi {
                                let v = ws[(ci * k + ky) * k + kx] as f64;
                                let q = (v / sw).round().clamp(-127.0, 127.0) as i8;
                                weights.push(q);
                                let zp = if *input == 0 {
                                    in_zp((oc / (cout / groups)) * cpi + ci)
                                } else {
                                    qp[*input].zp as i32
                                };
                                zp_corr += q as i64 * zp as i64;
                            }
                        }
                    }
                    let bq = (b[oc] as f64 / (si * sw)).round() as i64 - zp_corr;
                    let bias = i32::try_from(bq).map_err(|_| Error::Quant("bias overflows i32".into()))?;
                    let real = si * sw / so;
                    let (m_pos, sh_pos) = multiplier(real)?;
                    let (m_neg, sh_neg) = match act {
                        Act::None => (m_pos, sh_pos),
                        Act::Relu => (0, 0),
                        Act::Leaky(a) => multiplier(real * a as f64)?,
                    };
                    chan.push(ChanQ { bias, m_pos, m_neg, sh_pos, sh_neg });
                }
                let pad = (*input == 0).then(|| (0..*cin).map(|c| in_zp(c) as i8).collect());
                ops.push(QOp::Conv {
                    input: *input,
                    output: *output,
                    k: *k,
                    stride: *stride,
                    groups: *groups,
                    weights,
                    chan,
                    pad,
                });
            }
            Node::Add { a, b, output } => {
                let (ra, rb) = (qp[*a].scale / qp[*output].scale, qp[*b].scale / qp[*output].scale);
                let mx = ra.max(rb);
                let mut shift = 30i32;
                while mx * 2f64.powi(shift) >= 2147483648.0 / 2.0 && shift > 0 {
                    shift -= 1;
                }
                let m = [(ra * 2f64.powi(shift)).round() as i32, (rb * 2f64.powi(shift)).round() as i32];
                ops.push(QOp::Add { a: *a, b: *b, output: *output, m, shift: shift as u8 });
            }
            Node::Concat { .. } => {}
        }
    }
    // Lifetimes (op i is step i + 1; the input is born at step 0).
    let head_tensors: Vec<usize> =
        g.levels.iter().flat_map(|l| [Some(l.loc), Some(l.conf), l.landm]).flatten().collect();
    let end = ops.len() + 1;
    for (i, op) in ops.iter().enumerate() {
        let step = i + 1;
        let (ins, out): (Vec<usize>, usize) = match op {
            QOp::Conv { input, output, .. } => (vec![*input], *output),
            QOp::Add { a, b, output, .. } => (vec![*a, *b], *output),
        };
        let ob = tensors[out].buf;
        buffers[ob].birth = buffers[ob].birth.min(step);
        buffers[ob].death = buffers[ob].death.max(step);
        for t in ins {
            let b = tensors[t].buf;
            buffers[b].death = buffers[b].death.max(step);
        }
    }
    for &t in &head_tensors {
        buffers[tensors[t].buf].death = end;
    }
    // First-fit placement in birth order.
    let mut order: Vec<usize> = (0..buffers.len()).filter(|&b| buffers[b].birth != usize::MAX).collect();
    order.sort_by_key(|&b| (buffers[b].birth, b));
    let mut placed: Vec<usize> = Vec::new();
    let mut peak = 0u32;
    for &b in &order {
        let (bb, bd, size) = (buffers[b].birth, buffers[b].death, buffers[b].units());
        let mut busy: Vec<(u32, u32)> = placed
            .iter()
            .filter(|&&p| buffers[p].birth <= bd && bb <= buffers[p].death)
            .map(|&p| (buffers[p].off_units, buffers[p].off_units + buffers[p].units()))
            .collect();
        busy.sort();
        let mut off = 0u32;
        for (s, e) in busy {
            if off + size <= s {
                break;
            }
            off = off.max(e);
        }
        buffers[b].off_units = off;
        peak = peak.max(off + size);
        placed.push(b);
    }
    // Head tables.
    let mut levels = Vec::new();
    for (li, l) in g.levels.iter().enumerate() {
        let (ql, qc) = (qp[l.loc], qp[l.conf]);
        let loc_exp = (0..256)
            .map(|i| {
                let code = i as f64 - 128.0;
                let v = exp(spec.variances[1] * (code - ql.zp as f64) * ql.scale) * 65536.0;
                v.round().clamp(0.0, 2147483647.0) as i32
            })
            .collect();
        let mut score: Vec<u16> = (0..511)
            .map(|i| {
                let d = (i as f64 - 255.0) * qc.scale;
                (65535.0 / (1.0 + exp(-d))).round().clamp(0.0, 65535.0) as u16
            })
            .collect();
        score.push(0);
        levels.push(QLevel {
            step: spec.steps[li],
            min_sizes: spec.min_sizes[li],
            loc: l.loc,
            conf: l.conf,
            landm: l.landm,
            loc_lin: lin_table(ql, spec.variances[0]),
            loc_exp,
            score,
            landm_lin: l.landm.map(|t| lin_table(qp[t], spec.variances[0])).unwrap_or_else(|| vec![0; 256]),
        });
    }
    Ok(QModel { tensors, buffers, ops, levels, arena_units: peak, n_points: g.n_points })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_are_normalised_and_accurate() {
        for &r in &[0.75, 0.0003, 1.5e-9, 0.5, 0.999999999, 3.0] {
            let (m, s) = multiplier(r).unwrap();
            let back = m as f64 / 2f64.powi(s as i32);
            assert!((back - r).abs() / r < 1e-8, "{r} -> {m} >> {s}");
        }
        assert_eq!(multiplier(0.0).unwrap(), (0, 0));
        assert!(multiplier(-1.0).is_err());
    }

    #[test]
    fn qparams_include_zero() {
        let q = QParams::from_range(0.5, 2.0);
        assert_eq!(q.zp, -128);
        let q = QParams::from_range(-1.0, 1.0);
        assert!((q.scale - 2.0 / 255.0).abs() < 1e-12);
        assert_eq!(q.zp, -1); // -128 + 127.5, rounded half away from zero
    }
}
