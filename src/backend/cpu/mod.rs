//! The CPU backend: plain, readable f32 code that is also the oracle every GPU kernel is
//! tested against. Big matmuls go through the `gemm` crate; the numerics are in [`kernels`],
//! the matmul regimes in [`matmul`]; work is spread over rayon's pool.

pub mod kernels;
pub mod matmul;

use std::future::Future;

use gemm::Parallelism;
use rayon::prelude::*;

use super::{Backend, SeqMeta};
use crate::config::{Activation, PoolMode};
use crate::error::{Error, Result};
use crate::weights::HostTensor;
use kernels::{activate, add_layer_norm_row, l2_normalize, pool_sequence, softmax_row};

/// Row-major `[rows, cols]` f32 matrix: activations, and weights in their checkpoint layout
/// (`[out, in]`, or `[rows, dim]` for embedding tables).
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl CpuTensor {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(rows * cols, data.len());
        CpuTensor { rows, cols, data }
    }
    fn zeros(rows: usize, cols: usize) -> Self {
        CpuTensor { rows, cols, data: vec![0.0; rows * cols] }
    }
}

/// The CPU backend. Uses rayon's global pool (one thread per core by default).
#[derive(Debug, Clone, Default)]
pub struct Cpu;

impl Cpu {
    pub fn new() -> Self {
        Cpu
    }

    /// `(rows, cols)` of a weight matrix.
    pub fn matrix_shape(&self, m: &CpuTensor) -> (usize, usize) {
        (m.rows, m.cols)
    }
}

fn check_rows(what: &str, t: &CpuTensor, meta: &SeqMeta) -> Result<()> {
    if t.rows != meta.tokens || meta.offsets.len() != meta.batch() || meta.starts.len() != meta.batch() {
        return Err(Error::Backend(format!("{what}: tensor has {} rows, the batch {} tokens", t.rows, meta.tokens)));
    }
    Ok(())
}

/// Rows per rayon task for cheap row-wise work: enough to amortise the task overhead.
const ROWS_PER_TASK: usize = 16;

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Matrix = CpuTensor;
    type Vector = Vec<f32>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn matrix(&self, w: HostTensor) -> Result<CpuTensor> {
        match w.shape[..] {
            [rows, cols] => Ok(CpuTensor::new(rows, cols, w.data)),
            _ => Err(Error::Backend(format!("matrix must be 2-D, got shape {:?}", w.shape))),
        }
    }

    fn vector(&self, v: HostTensor) -> Result<Vec<f32>> {
        Ok(v.data)
    }

    fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        meta: &SeqMeta,
        word: &CpuTensor,
        pos: &CpuTensor,
        types: &CpuTensor,
    ) -> Result<CpuTensor> {
        let dim = word.cols;
        let rows = meta.tokens;
        if ids.len() != rows || type_ids.len() != rows || pos.cols != dim || types.cols != dim {
            return Err(Error::Backend(format!("embed: {} ids for {rows} tokens", ids.len())));
        }
        if meta.max_len > pos.rows {
            return Err(Error::Input(format!(
                "sequence of {} tokens, the model has {} positions",
                meta.max_len, pos.rows
            )));
        }
        for (what, list, table) in [("token id", ids, word), ("token type id", type_ids, types)] {
            if let Some(bad) = list.iter().find(|&&i| i as usize >= table.rows) {
                return Err(Error::Input(format!(
                    "{what} {bad} is outside the model's table of {} (tokenizer and model do not match)",
                    table.rows
                )));
            }
        }
        let mut out = CpuTensor::zeros(rows, dim);
        for b in 0..meta.batch() {
            for (s, r) in meta.rows(b).enumerate() {
                let o = &mut out.data[r * dim..(r + 1) * dim];
                let w = &word.data[ids[r] as usize * dim..][..dim];
                let p = &pos.data[s * dim..][..dim];
                let t = &types.data[type_ids[r] as usize * dim..][..dim];
                for i in 0..dim {
                    o[i] = w[i] + p[i] + t[i];
                }
            }
        }
        Ok(out)
    }

    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: &Vec<f32>, act: Option<Activation>) -> Result<CpuTensor> {
        if x.cols != w.cols || b.len() != w.rows {
            return Err(Error::Backend(format!(
                "linear: x [{}, {}] · w [{}, {}]ᵀ + b [{}]",
                x.rows,
                x.cols,
                w.rows,
                w.cols,
                b.len()
            )));
        }
        let mut out = CpuTensor::zeros(x.rows, w.rows);
        matmul::linear(x.rows, w.rows, w.cols, &x.data, &w.data, b, &mut out.data);
        if let Some(act) = act {
            out.data.par_chunks_mut(w.rows * ROWS_PER_TASK).for_each(|c| activate(act, c));
        }
        Ok(out)
    }

    fn layer_norm(
        &self,
        mut x: CpuTensor,
        residual: Option<&CpuTensor>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        eps: f32,
    ) -> Result<CpuTensor> {
        let cols = x.cols;
        if gamma.len() != cols || beta.len() != cols || residual.is_some_and(|r| r.data.len() != x.data.len()) {
            return Err(Error::Backend(format!("layer_norm: x [{}, {cols}] with mismatched parameters", x.rows)));
        }
        let chunk = cols * ROWS_PER_TASK;
        x.data.par_chunks_mut(chunk).enumerate().for_each(|(c, rows)| {
            for (r, row) in rows.chunks_exact_mut(cols).enumerate() {
                let start = (c * ROWS_PER_TASK + r) * cols;
                let res = residual.map(|t| &t.data[start..start + cols]);
                add_layer_norm_row(row, res, gamma, beta, eps);
            }
        });
        Ok(x)
    }

    fn attention(&self, qkv: &CpuTensor, meta: &SeqMeta, heads: usize) -> Result<CpuTensor> {
        check_rows("attention", qkv, meta)?;
        if heads == 0 || qkv.cols % 3 != 0 || (qkv.cols / 3) % heads != 0 {
            return Err(Error::Backend(format!("attention: {} columns for {heads} heads", qkv.cols)));
        }
        let dim = qkv.cols / 3;
        let hd = dim / heads;
        let stride = qkv.cols;
        let scale = 1.0 / (hd as f32).sqrt();
        // One task per (sequence, head), so a single text still uses every core.
        let per_head: Vec<Vec<f32>> = (0..meta.batch() * heads)
            .into_par_iter()
            .map(|bh| {
                let (b, h) = (bh / heads, bh % heads);
                let rows = meta.rows(b);
                let len = rows.len();
                let base = &qkv.data[rows.start * stride..rows.end * stride];
                let (q, k, v) = (&base[h * hd..], &base[dim + h * hd..], &base[2 * dim + h * hd..]);
                // scores[i, j] = scale · q_i · k_j, then softmax over j
                let mut scores = vec![0.0f32; len * len];
                matmul::gemm_strided(len, len, hd, &mut scores, len, false, q, stride, 1, k, 1, stride, scale, Parallelism::None);
                for row in scores.chunks_exact_mut(len) {
                    softmax_row(row);
                }
                // out[i, :] = Σ_j scores[i, j] · v_j
                let mut out = vec![0.0f32; len * hd];
                matmul::gemm_strided(len, hd, len, &mut out, hd, false, &scores, len, 1, v, stride, 1, 1.0, Parallelism::None);
                out
            })
            .collect();
        let mut ctx = CpuTensor::zeros(qkv.rows, dim);
        for (bh, block) in per_head.iter().enumerate() {
            let (b, h) = (bh / heads, bh % heads);
            for (row, src) in meta.rows(b).zip(block.chunks_exact(hd)) {
                ctx.data[row * dim + h * hd..row * dim + (h + 1) * hd].copy_from_slice(src);
            }
        }
        Ok(ctx)
    }

    fn pool(&self, hidden: &CpuTensor, meta: &SeqMeta, modes: &[PoolMode], normalize: bool) -> Result<CpuTensor> {
        check_rows("pool", hidden, meta)?;
        let dim = hidden.cols;
        let width = modes.len() * dim;
        let mut out = CpuTensor::zeros(meta.batch(), width);
        out.data.par_chunks_mut(width).enumerate().for_each(|(b, o)| {
            let rows = meta.rows(b);
            let tokens = &hidden.data[rows.start * dim..rows.end * dim];
            pool_sequence(tokens, dim, rows.len(), meta.starts[b] as usize, modes, o);
            if normalize {
                l2_normalize(o);
            }
        });
        Ok(out)
    }

    fn read(&self, t: &CpuTensor) -> impl Future<Output = Result<Vec<f32>>> {
        std::future::ready(Ok(t.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_keeps_sequences_apart() {
        // Two sequences back to back: changing the second must not change the first's output.
        let (heads, dim) = (2, 4);
        let meta = SeqMeta::new(vec![3, 2], vec![0, 0]);
        let mut qkv: Vec<f32> = (0..5 * 3 * dim).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.1).collect();
        let a = Cpu.attention(&CpuTensor::new(5, 3 * dim, qkv.clone()), &meta, heads).unwrap();
        for v in &mut qkv[3 * 3 * dim..] {
            *v = 1e3;
        }
        let b = Cpu.attention(&CpuTensor::new(5, 3 * dim, qkv), &meta, heads).unwrap();
        assert_eq!(a.data[..3 * dim], b.data[..3 * dim]);
        assert_ne!(a.data[3 * dim..], b.data[3 * dim..]);
    }
}
