//! The converter's graph IR: a RetinaFace-style detector lowered from ONNX.
//!
//! Lowering walks the ONNX nodes in order and keeps only the computation on activations:
//! `Conv` (batch norm folded in, ReLU/LeakyReLU fused when the conv is its only producer),
//! `Add` (with a preceding nearest `Resize` fused as 2× upsampling of the second operand),
//! channel `Concat` (a following ReLU fused), and the detection heads: 1×1 convs whose outputs
//! are transposed to NHWC, reshaped to `[B, anchors, K]` and concatenated (optionally through a
//! `Softmax`) into the graph outputs. Shape arithmetic (`Shape`, `Gather`, `Unsqueeze`, `Cast`,
//! `Slice`, `Constant`, axis-0 `Concat`) is dropped; anything else is an error.

use std::collections::HashMap;

use crate::onnx;
use crate::Error;

/// Activation fused after a conv or concat.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// None.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive else `alpha · x`.
    Leaky(f32),
}

/// An activation tensor of the IR (NHWC at run time).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// ONNX name.
    pub name: String,
    /// Channels.
    pub channels: usize,
    /// log2 of the spatial stride relative to the input.
    pub stride_log2: u8,
}

/// An IR node.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// Convolution, weights in ONNX layout `[cout][cin/groups][k][k]`.
    Conv {
        /// Input tensor.
        input: usize,
        /// Output tensor.
        output: usize,
        /// Weights.
        w: Vec<f32>,
        /// Bias.
        b: Vec<f32>,
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Kernel size.
        k: usize,
        /// Stride.
        stride: usize,
        /// Padding.
        pad: usize,
        /// Groups.
        groups: usize,
        /// Fused activation.
        act: Act,
    },
    /// `a + up(b)`; `up` is nearest 2× when `b` has twice `a`'s stride.
    Add {
        /// First operand.
        a: usize,
        /// Second operand.
        b: usize,
        /// Output.
        output: usize,
    },
    /// Channel concatenation with a fused activation.
    Concat {
        /// Inputs, in channel order.
        inputs: Vec<usize>,
        /// Output.
        output: usize,
        /// Fused activation.
        act: Act,
    },
}

/// One anchor level of the heads.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadLevel {
    /// Box regression tensor (`anchors × 4` channels).
    pub loc: usize,
    /// Class logits tensor (`anchors × 2`).
    pub conf: usize,
    /// Landmark tensor (`anchors × 2 × points`), if any.
    pub landm: Option<usize>,
}

/// The lowered graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    /// Tensors; 0 is the 3-channel input.
    pub tensors: Vec<TensorInfo>,
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Head levels in output order (stride 8, 16, 32 for RetinaFace).
    pub levels: Vec<HeadLevel>,
    /// Landmark points per anchor (0 when there is no landmark output).
    pub n_points: usize,
    /// Anchors per cell.
    pub anchors: usize,
}

#[derive(Clone, Debug)]
enum Sym {
    T(usize),
    Up(usize),
    Head(usize),
    Out(Vec<usize>),
}

impl Graph {
    /// Lower an ONNX model.
    pub fn from_onnx(m: &onnx::Model) -> Result<Graph, Error> {
        let inits: HashMap<&str, &onnx::Tensor> =
            m.initializers.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut alias: HashMap<String, String> = HashMap::new();
        let resolve = |alias: &HashMap<String, String>, n: &str| -> String {
            let mut n = n.to_string();
            while let Some(a) = alias.get(&n) {
                n = a.clone();
            }
            n
        };
        let input = m
            .inputs
            .iter()
            .find(|i| !inits.contains_key(i.name.as_str()))
            .ok_or(Error::Graph("no input".into()))?;
        let mut g =
            Graph { tensors: Vec::new(), nodes: Vec::new(), levels: Vec::new(), n_points: 0, anchors: 0 };
        g.tensors.push(TensorInfo { name: input.name.clone(), channels: 3, stride_log2: 0 });
        let mut sym: HashMap<String, Sym> = HashMap::new();
        sym.insert(input.name.clone(), Sym::T(0));
        // Consumers count of each name, to know when a fusion is safe.
        let mut uses: HashMap<String, usize> = HashMap::new();
        for n in &m.nodes {
            for i in &n.inputs {
                *uses.entry(i.clone()).or_default() += 1;
            }
        }
        let producer_node: HashMap<usize, usize> = HashMap::new();
        let mut producer_node = producer_node;
        for n in &m.nodes {
            let ins: Vec<String> = n.inputs.iter().map(|i| resolve(&alias, i)).collect();
            let out = n.outputs.first().cloned().unwrap_or_default();
            let get = |s: &HashMap<String, Sym>, i: usize| ins.get(i).and_then(|n| s.get(n)).cloned();
            let err = |msg: &str| Error::Graph(format!("{} ({}): {msg}", n.op_type, n.name));
            match n.op_type.as_str() {
                "Identity" => {
                    alias.insert(out, ins.first().cloned().unwrap_or_default());
                }
                "Shape" | "Gather" | "Unsqueeze" | "Cast" | "Slice" | "Constant" => {}
                "Conv" => {
                    let Some(Sym::T(x)) = get(&sym, 0) else { return Err(err("input is not an activation")) };
                    let wt = ins
                        .get(1)
                        .and_then(|w| inits.get(w.as_str()))
                        .ok_or_else(|| err("weights not constant"))?;
                    let groups = n.int("group", 1) as usize;
                    let ks = n.ints("kernel_shape");
                    let strides = n.ints("strides");
                    let pads = n.ints("pads");
                    let dil = n.ints("dilations");
                    if wt.dims.len() != 4 || wt.dims[2] != wt.dims[3] {
                        return Err(err("only square 2-D kernels"));
                    }
                    let (cout, cin_g, k) = (wt.dims[0] as usize, wt.dims[1] as usize, wt.dims[2] as usize);
                    if !ks.is_empty() && ks != [k as i64, k as i64] {
                        return Err(err("kernel_shape mismatch"));
                    }
                    if dil.iter().any(|&d| d != 1) {
                        return Err(err("dilation unsupported"));
                    }
                    let stride = *strides.first().unwrap_or(&1) as usize;
                    if strides.iter().any(|&s| s as usize != stride) || !(stride == 1 || stride == 2) {
                        return Err(err("stride must be 1 or 2 in both axes"));
                    }
                    let pad = *pads.first().unwrap_or(&0) as usize;
                    if pads.iter().any(|&p| p as usize != pad) || pad != k / 2 || k % 2 == 0 {
                        return Err(err("padding must be symmetric k/2 with an odd kernel"));
                    }
                    let cin = g.tensors[x].channels;
                    if cin_g * groups != cin || cout % groups != 0 {
                        return Err(err("channel/group mismatch"));
                    }
                    let b = match ins.get(2).filter(|s| !s.is_empty()) {
                        Some(bn) => {
                            inits.get(bn.as_str()).ok_or_else(|| err("bias not constant"))?.floats.clone()
                        }
                        None => vec![0.0; cout],
                    };
                    if b.len() != cout || wt.floats.len() != cout * cin_g * k * k {
                        return Err(err("weight/bias size"));
                    }
                    let stride_log2 = g.tensors[x].stride_log2 + (stride == 2) as u8;
                    let t = g.tensors.len();
                    g.tensors.push(TensorInfo { name: out.clone(), channels: cout, stride_log2 });
                    producer_node.insert(t, g.nodes.len());
                    g.nodes.push(Node::Conv {
                        input: x,
                        output: t,
                        w: wt.floats.clone(),
                        b,
                        cin,
                        cout,
                        k,
                        stride,
                        pad,
                        groups,
                        act: Act::None,
                    });
                    sym.insert(out, Sym::T(t));
                }
                "BatchNormalization" => {
                    let Some(Sym::T(x)) = get(&sym, 0) else { return Err(err("input is not an activation")) };
                    let p =
                        |i: usize| ins.get(i).and_then(|s| inits.get(s.as_str())).map(|t| t.floats.clone());
                    let (Some(sc), Some(bi), Some(mu), Some(var)) = (p(1), p(2), p(3), p(4)) else {
                        return Err(err("parameters not constant"));
                    };
                    let eps = n.float("epsilon", 1e-5);
                    let only_use = uses.get(&g.tensors[x].name).copied() == Some(1);
                    let Some(&pi) = producer_node.get(&x) else { return Err(err("not after a conv")) };
                    let Some(Node::Conv { w, b, cout, act: Act::None, .. }) = g.nodes.get_mut(pi) else {
                        return Err(err("not after a conv"));
                    };
                    if !only_use || sc.len() != *cout {
                        return Err(err("cannot fold"));
                    }
                    let per = w.len() / *cout;
                    for oc in 0..*cout {
                        let f = sc[oc] / (var[oc] + eps).sqrt();
                        for v in &mut w[oc * per..(oc + 1) * per] {
                            *v *= f;
                        }
                        b[oc] = (b[oc] - mu[oc]) * f + bi[oc];
                    }
                    alias.insert(out, g.tensors[x].name.clone());
                }
                "Relu" | "LeakyRelu" => {
                    let act =
                        if n.op_type == "Relu" { Act::Relu } else { Act::Leaky(n.float("alpha", 0.01)) };
                    let Some(Sym::T(x)) = get(&sym, 0) else { return Err(err("input is not an activation")) };
                    let only_use = uses.get(&ins[0]).copied() == Some(1);
                    let Some(&pi) = producer_node.get(&x) else {
                        return Err(err("no producer to fuse into"));
                    };
                    let slot = match g.nodes.get_mut(pi) {
                        Some(Node::Conv { act, .. }) | Some(Node::Concat { act, .. }) => act,
                        _ => return Err(err("no producer to fuse into")),
                    };
                    if !only_use || *slot != Act::None {
                        return Err(err("cannot fuse activation"));
                    }
                    *slot = act;
                    alias.insert(out, ins[0].clone());
                }
                "Resize" | "Upsample" => {
                    let Some(Sym::T(x)) = get(&sym, 0) else { return Err(err("input is not an activation")) };
                    if n.str("mode") != "nearest" {
                        return Err(err("only nearest resize"));
                    }
                    sym.insert(out, Sym::Up(x));
                }
                "Add" => {
                    let (a, b) = match (get(&sym, 0), get(&sym, 1)) {
                        (Some(Sym::T(a)), Some(Sym::Up(b))) | (Some(Sym::Up(b)), Some(Sym::T(a))) => (a, b),
                        (Some(Sym::T(a)), Some(Sym::T(b))) => (a, b),
                        _ => return Err(err("unsupported operands")),
                    };
                    let (ta, tb) = (&g.tensors[a], &g.tensors[b]);
                    if ta.channels != tb.channels
                        || !(tb.stride_log2 == ta.stride_log2 || tb.stride_log2 == ta.stride_log2 + 1)
                    {
                        return Err(err("operand shapes"));
                    }
                    let t = g.tensors.len();
                    g.tensors.push(TensorInfo {
                        name: out.clone(),
                        channels: ta.channels,
                        stride_log2: ta.stride_log2,
                    });
                    g.nodes.push(Node::Add { a, b, output: t });
                    sym.insert(out, Sym::T(t));
                }
                "Transpose" => {
                    let Some(Sym::T(x)) = get(&sym, 0) else { return Err(err("input is not an activation")) };
                    if n.ints("perm") != [0, 2, 3, 1] {
                        return Err(err("only NCHW->NHWC transpose"));
                    }
                    sym.insert(out, Sym::Head(x));
                }
                "Reshape" => {
                    let Some(Sym::Head(x)) = get(&sym, 0) else { return Err(err("only head reshapes")) };
                    sym.insert(out, Sym::Head(x));
                }
                "Softmax" => {
                    let Some(Sym::Out(v)) = get(&sym, 0) else { return Err(err("only on a head output")) };
                    sym.insert(out, Sym::Out(v));
                }
                "Concat" => {
                    let all: Vec<Option<Sym>> = (0..ins.len()).map(|i| get(&sym, i)).collect();
                    if all.iter().all(|s| matches!(s, Some(Sym::Head(_)))) {
                        let v =
                            all.iter()
                                .filter_map(|s| if let Some(Sym::Head(x)) = s { Some(*x) } else { None });
                        sym.insert(out, Sym::Out(v.collect()));
                    } else if all.iter().all(|s| matches!(s, Some(Sym::T(_)))) {
                        if n.int("axis", 0) != 1 {
                            return Err(err("only channel concat"));
                        }
                        let v: Vec<usize> = all
                            .iter()
                            .filter_map(|s| if let Some(Sym::T(x)) = s { Some(*x) } else { None })
                            .collect();
                        let s0 = g.tensors[v[0]].stride_log2;
                        if v.iter().any(|&x| g.tensors[x].stride_log2 != s0) {
                            return Err(err("inputs of different sizes"));
                        }
                        let c: usize = v.iter().map(|&x| g.tensors[x].channels).sum();
                        let t = g.tensors.len();
                        g.tensors.push(TensorInfo { name: out.clone(), channels: c, stride_log2: s0 });
                        producer_node.insert(t, g.nodes.len());
                        g.nodes.push(Node::Concat { inputs: v, output: t, act: Act::None });
                        sym.insert(out, Sym::T(t));
                    } else if all.iter().any(|s| s.is_some()) {
                        return Err(err("mixed operands"));
                    }
                }
                other => return Err(Error::Graph(format!("unsupported operator {other} ({})", n.name))),
            }
        }
        // Graph outputs: loc, conf, landmarks (by position).
        let mut outs = Vec::new();
        for o in &m.outputs {
            match sym.get(&resolve(&alias, &o.name)) {
                Some(Sym::Out(v)) => outs.push(v.clone()),
                _ => return Err(Error::Graph(format!("output {} is not a detection head", o.name))),
            }
        }
        if outs.len() < 2 || outs.iter().any(|v| v.len() != outs[0].len()) {
            return Err(Error::Graph("expected loc, conf[, landmarks] outputs with equal levels".into()));
        }
        let anchors = g.tensors[outs[0][0]].channels / 4;
        for li in 0..outs[0].len() {
            let lvl = HeadLevel { loc: outs[0][li], conf: outs[1][li], landm: outs.get(2).map(|v| v[li]) };
            let ch = |t: usize| g.tensors[t].channels;
            if ch(lvl.loc) != anchors * 4 || ch(lvl.conf) != anchors * 2 {
                return Err(Error::Graph("head channel counts".into()));
            }
            if let Some(lm) = lvl.landm {
                if ch(lm) % (anchors * 2) != 0 {
                    return Err(Error::Graph("landmark channel count".into()));
                }
                g.n_points = ch(lm) / (anchors * 2);
            }
            g.levels.push(lvl);
        }
        g.anchors = anchors;
        g.merge_duplicate_convs();
        Ok(g)
    }

    /// Common-subexpression elimination of convolutions: a conv with the same input, geometry,
    /// weights, bias and activation as an earlier one computes the same tensor, so its uses read
    /// the earlier output and it is dropped (with its output tensor). Some exported detectors
    /// repeat a conv whose output feeds two branches (RetinaFace's SSH `conv5X5_1`), which ONNX
    /// Runtime merges the same way. Repeats until nothing merges.
    fn merge_duplicate_convs(&mut self) {
        loop {
            let mut dup = None;
            'find: for (j, nj) in self.nodes.iter().enumerate() {
                for ni in &self.nodes[..j] {
                    if let (Node::Conv { output: keep, .. }, Node::Conv { output: drop, .. }) = (ni, nj) {
                        if same_conv(ni, nj) {
                            dup = Some((j, *keep, *drop));
                            break 'find;
                        }
                    }
                }
            }
            let Some((j, keep, drop)) = dup else { return };
            self.nodes.remove(j);
            self.tensors.remove(drop);
            // Uses of `drop` read `keep`; tensors after `drop` move down by one.
            let map = |t: &mut usize| {
                if *t == drop {
                    *t = keep;
                }
                if *t > drop {
                    *t -= 1;
                }
            };
            for n in &mut self.nodes {
                match n {
                    Node::Conv { input, output, .. } => [input, output].into_iter().for_each(map),
                    Node::Add { a, b, output } => [a, b, output].into_iter().for_each(map),
                    Node::Concat { inputs, output, .. } => inputs.iter_mut().chain([output]).for_each(map),
                }
            }
            for l in &mut self.levels {
                [&mut l.loc, &mut l.conf].into_iter().chain(l.landm.as_mut()).for_each(map);
            }
        }
    }

    /// Output size of a conv on `n` input pixels (ONNX formula).
    fn conv_out(n: usize, k: usize, stride: usize, pad: usize) -> usize {
        (n + 2 * pad - k) / stride + 1
    }

    /// Multiply-accumulates of all convolutions for a `w × h` input (sizes as ONNX Runtime
    /// would compute them, so any size works).
    pub fn macs(&self, w: usize, h: usize) -> u64 {
        let mut dims = vec![(0usize, 0usize); self.tensors.len()];
        dims[0] = (h, w);
        let mut macs = 0u64;
        for n in &self.nodes {
            match n {
                Node::Conv { input, output, cin, cout, k, stride, pad, groups, .. } => {
                    let (ih, iw) = dims[*input];
                    let (oh, ow) =
                        (Self::conv_out(ih, *k, *stride, *pad), Self::conv_out(iw, *k, *stride, *pad));
                    dims[*output] = (oh, ow);
                    macs += (oh * ow * cout * k * k * (cin / groups)) as u64;
                }
                Node::Add { a, output, .. } => dims[*output] = dims[*a],
                Node::Concat { inputs, output, .. } => dims[*output] = dims[inputs[0]],
            }
        }
        macs
    }

    /// Number of weights and biases.
    pub fn params(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match n {
                Node::Conv { w, b, .. } => w.len() + b.len(),
                _ => 0,
            })
            .sum()
    }
}

/// Whether two convs compute the same tensor: same input, geometry, activation, and bitwise
/// equal weights and bias (their outputs aside).
fn same_conv(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (
            Node::Conv { input, w, b: bias, cin, cout, k, stride, pad, groups, act, .. },
            Node::Conv {
                input: input2,
                w: w2,
                b: bias2,
                cin: cin2,
                cout: cout2,
                k: k2,
                stride: stride2,
                pad: pad2,
                groups: groups2,
                act: act2,
                ..
            },
        ) => {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (input, cin, cout, k, stride, pad, groups) == (input2, cin2, cout2, k2, stride2, pad2, groups2)
                && act == act2
                && bits(w) == bits(w2)
                && bits(bias) == bits(bias2)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(input: usize, output: usize, w: f32, act: Act) -> Node {
        Node::Conv {
            input,
            output,
            w: vec![w; 4 * 4 * 9],
            b: vec![0.5; 4],
            cin: 4,
            cout: 4,
            k: 3,
            stride: 1,
            pad: 1,
            groups: 1,
            act,
        }
    }

    fn t(name: &str) -> TensorInfo {
        TensorInfo { name: name.into(), channels: 4, stride_log2: 0 }
    }

    #[test]
    fn repeated_convs_are_merged_and_their_uses_rewired() {
        // 0 → a(1), 0 → a'(2) (a repeat), 0 → b(3) (other weights), 0 → c(4) (other act);
        // a'(2) feeds d(5), and both feed an add (6) and the head level.
        let mut g = Graph {
            tensors: ["in", "a", "a2", "b", "c", "d", "sum"].into_iter().map(t).collect(),
            nodes: vec![
                conv(0, 1, 0.25, Act::Leaky(0.1)),
                conv(0, 2, 0.25, Act::Leaky(0.1)),
                conv(0, 3, -0.25, Act::Leaky(0.1)),
                conv(0, 4, 0.25, Act::Relu),
                conv(2, 5, 1.0, Act::None),
                Node::Add { a: 2, b: 5, output: 6 },
            ],
            levels: vec![HeadLevel { loc: 2, conf: 6, landm: Some(5) }],
            n_points: 0,
            anchors: 1,
        };
        let macs = g.macs(8, 8);
        g.merge_duplicate_convs();
        let names: Vec<&str> = g.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["in", "a", "b", "c", "d", "sum"]);
        assert_eq!(g.nodes.len(), 5);
        assert_eq!(g.nodes[0], conv(0, 1, 0.25, Act::Leaky(0.1)));
        assert_eq!(g.nodes[1], conv(0, 2, -0.25, Act::Leaky(0.1)));
        assert_eq!(g.nodes[2], conv(0, 3, 0.25, Act::Relu));
        assert_eq!(g.nodes[3], conv(1, 4, 1.0, Act::None));
        assert_eq!(g.nodes[4], Node::Add { a: 1, b: 4, output: 5 });
        assert_eq!(g.levels, [HeadLevel { loc: 1, conf: 5, landm: Some(4) }]);
        assert_eq!(g.macs(8, 8), macs - 8 * 8 * 4 * 9 * 4);
    }

    #[test]
    fn chains_of_repeats_merge_fully() {
        // a'(2) repeats a(1); then e'(4) on a' repeats e(3) on a once rewired.
        let mut g = Graph {
            tensors: ["in", "a", "a2", "e", "e2"].into_iter().map(t).collect(),
            nodes: vec![
                conv(0, 1, 0.25, Act::None),
                conv(0, 2, 0.25, Act::None),
                conv(1, 3, 0.5, Act::None),
                conv(2, 4, 0.5, Act::None),
            ],
            levels: vec![HeadLevel { loc: 3, conf: 4, landm: None }],
            n_points: 0,
            anchors: 1,
        };
        g.merge_duplicate_convs();
        assert_eq!(g.nodes, [conv(0, 1, 0.25, Act::None), conv(1, 2, 0.5, Act::None)]);
        assert_eq!(g.levels, [HeadLevel { loc: 2, conf: 2, landm: None }]);
    }
}
