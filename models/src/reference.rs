//! The fp32 reference executor of a [`Graph`], and float decoding of its heads.
//!
//! Deterministic by construction: single-threaded, fixed summation order, only IEEE `+ × /`
//! (no library transcendental functions: [`exp`] is computed here), so calibration statistics
//! and therefore the converted blobs are the same on every machine.

use crate::graph::{Act, Graph, Node};
use crate::{HostDet, ModelSpec};

/// An NHWC f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct F32Tensor {
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Values, `[h][w][c]`.
    pub data: Vec<f32>,
}

/// `e^x` from IEEE basic operations only (range reduction by ln 2, Taylor series), so results
/// do not depend on the platform's libm.
pub fn exp(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-700.0, 700.0);
    const LN2: f64 = std::f64::consts::LN_2;
    let k = (x / LN2).round();
    let r = x - k * LN2;
    let mut term = 1.0;
    let mut sum = 1.0;
    for i in 1..30 {
        term *= r / i as f64;
        sum += term;
    }
    let bits = ((k as i64 + 1023) as u64) << 52;
    sum * f64::from_bits(bits)
}

fn act(v: f32, a: Act) -> f32 {
    match a {
        Act::None => v,
        Act::Relu => v.max(0.0),
        Act::Leaky(al) => {
            if v < 0.0 {
                v * al
            } else {
                v
            }
        }
    }
}

/// Run the graph on an input tensor (3 channels, already normalised). Returns every tensor.
/// `observe` is called with each tensor's id and values as soon as it is final.
pub fn run(
    g: &Graph,
    input: F32Tensor,
    mut observe: impl FnMut(usize, &F32Tensor),
) -> Vec<Option<F32Tensor>> {
    let mut ts: Vec<Option<F32Tensor>> = vec![None; g.tensors.len()];
    observe(0, &input);
    ts[0] = Some(input);
    for n in &g.nodes {
        match n {
            Node::Conv { input, output, w, b, cin, cout, k, stride, pad, groups, act: a } => {
                let x = ts[*input].as_ref().expect("topological order");
                let oh = (x.h + 2 * pad - k) / stride + 1;
                let ow = (x.w + 2 * pad - k) / stride + 1;
                let (cpi, cpo) = (cin / groups, cout / groups);
                // Weights as [oc][ky][kx][ci] so the inner loop runs over contiguous channels.
                let mut wt = vec![0f32; w.len()];
                for oc in 0..*cout {
                    for ci in 0..cpi {
                        for t in 0..k * k {
                            wt[(oc * k * k + t) * cpi + ci] = w[(oc * cpi + ci) * k * k + t];
                        }
                    }
                }
                let mut out = vec![0f32; oh * ow * cout];
                for oy in 0..oh {
                    for ox in 0..ow {
                        for oc in 0..*cout {
                            let ci0 = (oc / cpo) * cpi;
                            let mut acc = b[oc];
                            for ky in 0..*k {
                                let iy = (oy * stride + ky) as isize - *pad as isize;
                                if iy < 0 || iy as usize >= x.h {
                                    continue;
                                }
                                for kx in 0..*k {
                                    let ix = (ox * stride + kx) as isize - *pad as isize;
                                    if ix < 0 || ix as usize >= x.w {
                                        continue;
                                    }
                                    let xb = (iy as usize * x.w + ix as usize) * x.c + ci0;
                                    let wb = (oc * k * k + ky * k + kx) * cpi;
                                    for (wv, xv) in wt[wb..wb + cpi].iter().zip(&x.data[xb..xb + cpi]) {
                                        acc += wv * xv;
                                    }
                                }
                            }
                            out[(oy * ow + ox) * cout + oc] = act(acc, *a);
                        }
                    }
                }
                let t = F32Tensor { h: oh, w: ow, c: *cout, data: out };
                observe(*output, &t);
                ts[*output] = Some(t);
            }
            Node::Add { a, b, output } => {
                let (ta, tb) = (ts[*a].as_ref().expect("order"), ts[*b].as_ref().expect("order"));
                let mut out = ta.clone();
                for y in 0..ta.h {
                    for x in 0..ta.w {
                        // ONNX nearest, asymmetric, floor: src = floor(dst * in / out).
                        let (sy, sx) = (y * tb.h / ta.h, x * tb.w / ta.w);
                        for c in 0..ta.c {
                            out.data[(y * ta.w + x) * ta.c + c] += tb.data[(sy * tb.w + sx) * tb.c + c];
                        }
                    }
                }
                observe(*output, &out);
                ts[*output] = Some(out);
            }
            Node::Concat { inputs, output, act: a } => {
                let parts: Vec<&F32Tensor> = inputs.iter().map(|i| ts[*i].as_ref().expect("order")).collect();
                let (h, w) = (parts[0].h, parts[0].w);
                let c: usize = parts.iter().map(|p| p.c).sum();
                let mut out = Vec::with_capacity(h * w * c);
                for p in 0..h * w {
                    for t in &parts {
                        out.extend(t.data[p * t.c..(p + 1) * t.c].iter().map(|&v| act(v, *a)));
                    }
                }
                let t = F32Tensor { h, w, c, data: out };
                observe(*output, &t);
                ts[*output] = Some(t);
            }
        }
    }
    ts
}

/// Build the float input from the engine's int8 input tensor (`q = v − 128`, model channel
/// order): `real = q + 128 − mean`.
pub fn input_from_q(q: &[u8], w: usize, h: usize, mean: [u8; 3]) -> F32Tensor {
    let data = q.iter().enumerate().map(|(i, &v)| (v as i8 as f32) + 128.0 - mean[i % 3] as f32).collect();
    F32Tensor { h, w, c: 3, data }
}

/// Decode the heads in floating point, like the upstream Python (anchors, variances, softmax),
/// returning detections in input-tensor pixels (before letterbox mapping), above `floor`.
pub fn decode(g: &Graph, spec: &ModelSpec, ts: &[Option<F32Tensor>], floor: f32) -> Vec<HostDet> {
    let mut out = Vec::new();
    for (li, lvl) in g.levels.iter().enumerate() {
        let step = spec.steps[li] as f64;
        let (Some(loc), Some(conf)) = (ts[lvl.loc].as_ref(), ts[lvl.conf].as_ref()) else { continue };
        let lm = lvl.landm.and_then(|t| ts[t].as_ref());
        for y in 0..conf.h {
            for x in 0..conf.w {
                let p = y * conf.w + x;
                for a in 0..g.anchors {
                    let l0 = conf.data[p * conf.c + 2 * a] as f64;
                    let l1 = conf.data[p * conf.c + 2 * a + 1] as f64;
                    let score = 1.0 / (1.0 + exp(l0 - l1));
                    if (score as f32) < floor {
                        continue;
                    }
                    let s = spec.min_sizes[li][a] as f64;
                    let (acx, acy) = ((x as f64 + 0.5) * step, (y as f64 + 0.5) * step);
                    let d = |i: usize| loc.data[p * loc.c + 4 * a + i] as f64;
                    let cx = acx + d(0) * spec.variances[0] * s;
                    let cy = acy + d(1) * spec.variances[0] * s;
                    let bw = s * exp(d(2) * spec.variances[1]);
                    let bh = s * exp(d(3) * spec.variances[1]);
                    let mut points = Vec::new();
                    if let Some(lm) = lm {
                        for k in 0..g.n_points {
                            let b = p * lm.c + a * 2 * g.n_points + 2 * k;
                            points.push((
                                (acx + lm.data[b] as f64 * spec.variances[0] * s) as f32,
                                (acy + lm.data[b + 1] as f64 * spec.variances[0] * s) as f32,
                            ));
                        }
                    }
                    out.push(HostDet {
                        score: score as f32,
                        rect: [
                            (cx - bw / 2.0) as f32,
                            (cy - bh / 2.0) as f32,
                            (cx + bw / 2.0) as f32,
                            (cy + bh / 2.0) as f32,
                        ],
                        points,
                    });
                }
            }
        }
    }
    out
}
