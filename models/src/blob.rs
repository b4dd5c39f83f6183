//! Serialising a [`QModel`] as a `.vlnn` blob (format: `veil_core::nn::blob`).

use sha2::{Digest, Sha256};
use veil_core::nn::blob as fmt;

use crate::quant::{QModel, QOp};
use crate::{Error, ModelSpec};

fn pad_to(v: &mut Vec<u8>, align: usize) {
    while !v.len().is_multiple_of(align) {
        v.push(0);
    }
}

fn u16_of(v: usize, what: &str) -> Result<u16, Error> {
    u16::try_from(v).map_err(|_| Error::Blob(format!("{what} {v} does not fit in u16")))
}

/// Serialise `q` (deterministically: same model, same bytes).
pub fn write(q: &QModel, spec: &ModelSpec) -> Result<Vec<u8>, Error> {
    let n_t = q.tensors.len();
    let n_ops = q.ops.len();
    let n_l = q.levels.len();
    let tensors_off = fmt::HEADER_LEN;
    let ops_off = tensors_off + n_t * fmt::TENSOR_REC;
    let levels_off = ops_off + n_ops * fmt::OP_REC;
    let mut data_off = levels_off + n_l * fmt::LEVEL_REC;
    data_off = data_off.div_ceil(16) * 16;

    let mut data: Vec<u8> = Vec::new();
    let mut op_recs = Vec::with_capacity(n_ops * fmt::OP_REC);
    for op in &q.ops {
        let mut r = [0u8; fmt::OP_REC];
        match op {
            QOp::Conv { input, output, k, stride, groups, weights, chan, pad } => {
                pad_to(&mut data, 4);
                let w_off = data.len() as u32;
                data.extend(weights.iter().map(|&v| v as u8));
                pad_to(&mut data, 4);
                let q_off = data.len() as u32;
                for c in chan {
                    data.extend_from_slice(&c.write());
                }
                let pad_off = match pad {
                    Some(p) => {
                        let o = data.len() as u32;
                        data.extend(p.iter().map(|&v| v as u8));
                        o
                    }
                    None => fmt::PAD_ZP,
                };
                r[0] = fmt::OP_CONV;
                r[2] = *k as u8;
                r[3] = *stride as u8;
                r[4] = (*k / 2) as u8;
                r[6..8].copy_from_slice(&u16_of(*groups, "groups")?.to_le_bytes());
                r[8..10].copy_from_slice(&u16_of(*input, "tensor")?.to_le_bytes());
                r[12..14].copy_from_slice(&u16_of(*output, "tensor")?.to_le_bytes());
                r[16..20].copy_from_slice(&w_off.to_le_bytes());
                r[20..24].copy_from_slice(&q_off.to_le_bytes());
                r[24..28].copy_from_slice(&pad_off.to_le_bytes());
            }
            QOp::Add { a, b, output, m, shift } => {
                pad_to(&mut data, 4);
                let q_off = data.len() as u32;
                data.extend_from_slice(&m[0].to_le_bytes());
                data.extend_from_slice(&m[1].to_le_bytes());
                data.extend_from_slice(&(*shift as u32).to_le_bytes());
                r[0] = fmt::OP_ADD;
                r[8..10].copy_from_slice(&u16_of(*a, "tensor")?.to_le_bytes());
                r[10..12].copy_from_slice(&u16_of(*b, "tensor")?.to_le_bytes());
                r[12..14].copy_from_slice(&u16_of(*output, "tensor")?.to_le_bytes());
                r[20..24].copy_from_slice(&q_off.to_le_bytes());
                r[24..28].copy_from_slice(&fmt::PAD_ZP.to_le_bytes());
            }
        }
        op_recs.extend_from_slice(&r);
    }
    let mut level_recs = Vec::new();
    for l in &q.levels {
        let mut table = |v: &mut Vec<u8>| {
            pad_to(&mut data, 4);
            let o = data.len() as u32;
            data.append(v);
            o
        };
        let b = |xs: &[i32]| xs.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let loc_lin = table(&mut b(&l.loc_lin));
        let loc_exp = table(&mut b(&l.loc_exp));
        let score = table(&mut l.score.iter().flat_map(|x| x.to_le_bytes()).collect());
        let landm_lin = table(&mut b(&l.landm_lin));
        let mut r = [0u8; fmt::LEVEL_REC];
        r[0..2].copy_from_slice(&l.step.to_le_bytes());
        r[2..4].copy_from_slice(&l.min_sizes[0].to_le_bytes());
        r[4..6].copy_from_slice(&l.min_sizes[1].to_le_bytes());
        let anchors = (q.tensors[l.loc].channels / 4) as u16;
        r[6..8].copy_from_slice(&anchors.to_le_bytes());
        r[8..10].copy_from_slice(&u16_of(l.loc, "tensor")?.to_le_bytes());
        r[10..12].copy_from_slice(&u16_of(l.conf, "tensor")?.to_le_bytes());
        let lm = match l.landm {
            Some(t) => u16_of(t, "tensor")?,
            None => fmt::NO_TENSOR,
        };
        r[12..14].copy_from_slice(&lm.to_le_bytes());
        r[16..20].copy_from_slice(&loc_lin.to_le_bytes());
        r[20..24].copy_from_slice(&loc_exp.to_le_bytes());
        r[24..28].copy_from_slice(&score.to_le_bytes());
        r[28..32].copy_from_slice(&landm_lin.to_le_bytes());
        level_recs.extend_from_slice(&r);
    }
    pad_to(&mut data, 4);

    let mut tensor_recs = Vec::with_capacity(n_t * fmt::TENSOR_REC);
    for t in &q.tensors {
        let b = &q.buffers[t.buf];
        let mut r = [0u8; fmt::TENSOR_REC];
        r[0..4].copy_from_slice(&b.off_units.to_le_bytes());
        r[4..6].copy_from_slice(&u16_of(t.channels, "channels")?.to_le_bytes());
        r[6..8].copy_from_slice(&u16_of(b.pixel_stride, "pixel stride")?.to_le_bytes());
        r[8..10].copy_from_slice(&u16_of(t.chan_off, "channel offset")?.to_le_bytes());
        r[10] = t.stride_log2;
        r[11] = t.q.zp as u8;
        tensor_recs.extend_from_slice(&r);
    }

    let total = data_off + data.len() + fmt::TRAILER_LEN;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&fmt::BLOB_MAGIC);
    out.extend_from_slice(&fmt::BLOB_VERSION.to_le_bytes());
    out.extend_from_slice(&(fmt::HEADER_LEN as u16).to_le_bytes());
    out.extend_from_slice(&(total as u32).to_le_bytes());
    out.extend_from_slice(&u16_of(n_t, "tensor count")?.to_le_bytes());
    out.extend_from_slice(&u16_of(n_ops, "op count")?.to_le_bytes());
    out.push(n_l as u8);
    out.push(spec.class.index() as u8);
    out.push(q.n_points as u8);
    out.push(spec.bgr as u8);
    out.extend_from_slice(&spec.mean);
    out.push(0);
    out.extend_from_slice(&q.arena_units.to_le_bytes());
    for off in [tensors_off, ops_off, levels_off, data_off, data.len()] {
        out.extend_from_slice(&(off as u32).to_le_bytes());
    }
    out.resize(fmt::HEADER_LEN, 0);
    out.extend_from_slice(&tensor_recs);
    out.extend_from_slice(&op_recs);
    out.extend_from_slice(&level_recs);
    out.resize(data_off, 0);
    out.extend_from_slice(&data);
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    debug_assert_eq!(out.len(), total);
    Ok(out)
}
