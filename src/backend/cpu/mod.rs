//! The CPU backend: plain, readable f32 code that is also the oracle every GPU kernel is
//! tested against. Big matmuls go through the `gemm` crate; the numerics are in [`kernels`],
//! the matmul regimes in [`matmul`], the integer products of quantized weights in [`qmatmul`]
//! (only the linear layers: attention, layer norm, softmax and GELU stay f32, see there why);
//! work is spread over rayon's pool.

/// Runs `$body` in a copy of the function compiled with AVX2+FMA when the CPU has them, else in
/// the baseline build (SSE2 on x86-64, simd128 where the wasm build enables it).
macro_rules! simd {
    ($body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
                f()
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA (checked just above).
                return unsafe { wide(|| $body) };
            }
        }
        $body
    }};
}

pub mod kernels;
pub mod matmul;
pub mod panels;
pub mod qcols;
pub mod qmatmul;

use std::future::Future;
use std::ops::Range;

use rayon::prelude::*;

use super::{Attention, Backend, SeqMeta, check_embed_input, check_rms_norm, check_rotary};
use crate::config::{Activation, PoolMode};
use crate::error::{Error, Result};
use crate::quant::{QuantFormat, QuantMatrix};
use crate::weights::HostTensor;
use kernels::{add_layer_norm_row, attend, glu_row, l2_normalize, pool_sequence, rms_norm_row, rotate_half_row};
use matmul::WeightRows;
use panels::F32Panels;
use qmatmul::PackedMatrix;

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

    /// Rows `r` of this tensor (a split forward pass's own rows, [`crate::split`]).
    pub fn rows(&self, r: std::ops::Range<usize>) -> CpuTensor {
        CpuTensor::new(r.len(), self.cols, self.data[r.start * self.cols..r.end * self.cols].to_vec())
    }

    /// Parts of `cols`-wide rows one after another (what [`crate::split::Exchange`] gathers).
    pub fn stack(parts: Vec<Vec<f32>>, cols: usize) -> Result<CpuTensor> {
        let data: Vec<f32> = parts.concat();
        if cols == 0 || !data.len().is_multiple_of(cols) {
            return Err(Error::Backend(format!("stack: {} values in rows of {cols}", data.len())));
        }
        Ok(CpuTensor::new(data.len() / cols, cols, data))
    }
}

/// How the CPU backend stores the weights of a float checkpoint (biases and layer norms stay
/// f32; a quantized file's blocks are kept as they are whatever this says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuWeights {
    #[default]
    F32,
    /// Matrices and the word-embedding table in ggml q8_0 blocks (8.5 bits per weight).
    Q8_0,
    /// The word-embedding table in q4_1 blocks (5 bits per weight), matrices in q8_0: see
    /// [`crate::quant`] for why the matrices stay 8-bit.
    Q4,
}

impl CpuWeights {
    /// The block formats of (matrices, word table); None keeps f32.
    pub fn formats(self) -> (Option<QuantFormat>, Option<QuantFormat>) {
        match self {
            CpuWeights::F32 => (None, None),
            CpuWeights::Q8_0 => (Some(QuantFormat::Q8_0), Some(QuantFormat::Q8_0)),
            CpuWeights::Q4 => (Some(QuantFormat::Q8_0), Some(QuantFormat::Q4_1)),
        }
    }
}

/// A weight matrix `[rows, cols]` as the CPU backend keeps it.
#[derive(Debug, Clone, PartialEq)]
pub enum CpuMatrix {
    F32(CpuTensor),
    /// Blocks, multiplied in integer arithmetic by the matmul ([`qmatmul`]) and dequantized a
    /// row at a time by `embed`.
    Quant(QuantMatrix),
    /// q8_0 or q4_1 blocks interleaved by column for the wasm integer kernels
    /// ([`qcols`](qcols)), once at load in place of the blocks.
    Packed(PackedMatrix),
    /// f32 matrices packed in column panels where the CPU has AVX-512 ([`panels`]), once at
    /// load in place of the rows.
    Panels(F32Panels),
}

impl CpuMatrix {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            CpuMatrix::F32(t) => (t.rows, t.cols),
            CpuMatrix::Quant(q) => (q.rows, q.cols),
            CpuMatrix::Packed(q) => (q.rows, q.cols),
            CpuMatrix::Panels(p) => (p.rows, p.cols),
        }
    }

    fn rows_view(&self) -> WeightRows<'_> {
        match self {
            CpuMatrix::F32(t) => WeightRows::F32(&t.data),
            CpuMatrix::Quant(q) => WeightRows::Quant(q),
            CpuMatrix::Packed(q) => WeightRows::Packed(q),
            CpuMatrix::Panels(p) => WeightRows::Panels(p),
        }
    }

    /// Adds row `r` to `out`.
    fn add_row(&self, r: usize, out: &mut [f32], scratch: &mut [f32]) {
        let row = match self {
            CpuMatrix::F32(t) => &t.data[r * t.cols..(r + 1) * t.cols],
            CpuMatrix::Quant(q) => {
                q.dequantize_rows(r, r + 1, scratch);
                scratch
            }
            CpuMatrix::Packed(q) => {
                q.dequantize_row(r, scratch);
                scratch
            }
            CpuMatrix::Panels(p) => {
                p.row(r, scratch);
                scratch
            }
        };
        for (o, v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}

/// The CPU backend. Uses rayon's global pool (one thread per core by default).
#[derive(Debug, Clone, Default)]
pub struct Cpu {
    weights: CpuWeights,
}

impl Cpu {
    /// f32 weights.
    pub fn new() -> Self {
        Cpu::default()
    }

    /// Weight matrices stored as `weights` says.
    pub fn with_weights(weights: CpuWeights) -> Self {
        Cpu { weights }
    }

    /// `(rows, cols)` of a weight matrix.
    pub fn matrix_shape(&self, m: &CpuMatrix) -> (usize, usize) {
        m.shape()
    }

    /// [`Backend::attention`] of one text for its query rows `queries` only (`[queries.len(),
    /// out_dim]`): a part of a split forward pass ([`crate::split`]) attends for its own rows,
    /// with every key and value. Equal to those rows of the whole to f32 rounding (a block of
    /// queries starts at `queries.start`, not at a multiple of 64).
    pub fn attention_rows(
        &self,
        qkv: &CpuTensor,
        meta: &SeqMeta,
        a: &Attention<'_, CpuMatrix>,
        queries: Range<usize>,
    ) -> Result<CpuTensor> {
        if meta.batch() != 1 || queries.start > queries.end || queries.end > qkv.rows {
            return Err(Error::Backend(format!(
                "attention_rows: rows {queries:?} of one text of {} rows ({} texts)",
                qkv.rows,
                meta.batch()
            )));
        }
        self.attention_of(qkv, meta, a, Some(queries))
    }

    /// [`Backend::attention`], of the query rows `queries` of a single text when given.
    fn attention_of(
        &self,
        qkv: &CpuTensor,
        meta: &SeqMeta,
        a: &Attention<'_, CpuMatrix>,
        queries: Option<Range<usize>>,
    ) -> Result<CpuTensor> {
        check_rows("attention", qkv, meta)?;
        let bias = match a.bias {
            None => None,
            Some(CpuMatrix::F32(t)) => Some(t),
            Some(CpuMatrix::Quant(_) | CpuMatrix::Packed(_) | CpuMatrix::Panels(_)) => {
                return Err(Error::Backend("attention: a bias table in blocks or panels".into()));
            }
        };
        let span = a.check(qkv.rows, qkv.cols, meta, bias.map(|t| (t.rows, t.cols)))?;
        let (heads, hd) = (a.heads, a.head_dim);
        let (dim, kv_dim) = (a.out_dim(), a.kv_heads * hd);
        let group = heads / a.kv_heads;
        let stride = qkv.cols;
        let scale = 1.0 / (hd as f32).sqrt();
        // Each (sequence, head) writes a contiguous [rows, hd] block of a head-major buffer
        // (its query rows: all, or `queries` of the one sequence); blocks are grouped into a
        // few tasks per thread (one block is too little work for a task, while a single text
        // must still spread its heads over the cores).
        let asked = |b: usize| queries.clone().unwrap_or(0..meta.lens[b] as usize);
        let out_rows: usize = (0..meta.batch()).map(|b| asked(b).len()).sum();
        let mut head_major = vec![0.0f32; out_rows * dim];
        let mut blocks: Vec<(usize, usize, &mut [f32])> = Vec::with_capacity(meta.batch() * heads);
        let mut rest = head_major.as_mut_slice();
        for b in 0..meta.batch() {
            for h in 0..heads {
                let (block, tail) = rest.split_at_mut(asked(b).len() * hd);
                blocks.push((b, h, block));
                rest = tail;
            }
        }
        let min_len = (blocks.len() / (4 * rayon::current_num_threads())).max(1);
        blocks.into_par_iter().with_min_len(min_len).for_each_init(Vec::new, |scores, (b, h, out)| {
            let rows = meta.rows(b);
            let base = &qkv.data[rows.start * stride..rows.end * stride];
            let kv = (h / group) * hd;
            let (q, k, v) = (&base[h * hd..], &base[dim + kv..], &base[dim + kv_dim + kv..]);
            let bias = bias.map(|t| (&t.data[h * t.cols..(h + 1) * t.cols], span));
            attend(rows.len(), asked(b), hd, stride, scale, q, k, v, bias, a.window, a.causal, scores, out);
        });
        let mut ctx = CpuTensor::zeros(out_rows, dim);
        let mut start = 0;
        for b in 0..meta.batch() {
            let rows = start..start + asked(b).len();
            start = rows.end;
            if rows.is_empty() {
                continue;
            }
            let seq_blocks = &head_major[rows.start * dim..rows.end * dim];
            for (h, block) in seq_blocks.chunks_exact(rows.len() * hd).enumerate() {
                for (row, src) in rows.clone().zip(block.chunks_exact(hd)) {
                    ctx.data[row * dim + h * hd..row * dim + (h + 1) * hd].copy_from_slice(src);
                }
            }
        }
        Ok(ctx)
    }
}

/// A linear layer's blocks as the integer kernel [`qmatmul::linear`] runs reads them: interleaved
/// once here where it interleaves (wasm), else as they are.
fn linear_weights(q: QuantMatrix) -> CpuMatrix {
    match PackedMatrix::for_best_kernel(&q) {
        Some(p) => CpuMatrix::Packed(p),
        None => CpuMatrix::Quant(q),
    }
}

/// A 2-D host tensor as a CpuTensor, its data moved, not copied.
fn two_d(w: HostTensor) -> Result<CpuTensor> {
    match w.shape[..] {
        [rows, cols] => Ok(CpuTensor::new(rows, cols, w.data)),
        _ => Err(Error::Backend(format!("matrix must be 2-D, got shape {:?}", w.shape))),
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
    type Matrix = CpuMatrix;
    type Vector = Vec<f32>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn matrix(&self, w: HostTensor) -> Result<CpuMatrix> {
        let t = two_d(w)?;
        Ok(match self.weights.formats().0 {
            None if panels::wanted() => CpuMatrix::Panels(F32Panels::new(t.rows, t.cols, &t.data)),
            None => CpuMatrix::F32(t),
            Some(f) => linear_weights(QuantMatrix::quantize(f, t.rows, t.cols, &t.data)),
        })
    }

    fn quantized_matrix(&self, w: QuantMatrix) -> Result<CpuMatrix> {
        Ok(linear_weights(w))
    }

    fn table(&self, w: HostTensor) -> Result<CpuMatrix> {
        Ok(CpuMatrix::F32(two_d(w)?))
    }

    fn word_table(&self, w: HostTensor) -> Result<CpuMatrix> {
        let t = two_d(w)?;
        Ok(match self.weights.formats().1 {
            None => CpuMatrix::F32(t),
            Some(f) => CpuMatrix::Quant(QuantMatrix::quantize(f, t.rows, t.cols, &t.data)),
        })
    }

    fn word_table_format(&self) -> Option<QuantFormat> {
        self.weights.formats().1
    }

    fn quantized_word_table(&self, w: QuantMatrix) -> Result<CpuMatrix> {
        Ok(CpuMatrix::Quant(w))
    }

    fn batches_per_read(&self) -> usize {
        1
    }

    fn stored_as(&self, m: &CpuMatrix) -> &'static str {
        match m {
            CpuMatrix::F32(_) | CpuMatrix::Panels(_) => "f32",
            CpuMatrix::Quant(q) => q.format().name(),
            CpuMatrix::Packed(q) => q.format.name(),
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
        word: &CpuMatrix,
        pos: Option<&CpuMatrix>,
        types: Option<&CpuMatrix>,
    ) -> Result<CpuTensor> {
        let dim = word.shape().1;
        let rows = meta.tokens;
        if [pos, types].into_iter().flatten().any(|t| t.shape().1 != dim) {
            return Err(Error::Backend(format!("embed: tables of other widths than the word table's {dim}")));
        }
        let rows_of = |t: Option<&CpuMatrix>| t.map(|t| t.shape().0);
        check_embed_input(ids, type_ids, meta, word.shape().0, rows_of(pos), rows_of(types))?;
        let mut out = CpuTensor::zeros(rows, dim);
        let mut scratch = vec![0.0; dim];
        for b in 0..meta.batch() {
            for (s, r) in meta.rows(b).enumerate() {
                let o = &mut out.data[r * dim..(r + 1) * dim];
                word.add_row(ids[r] as usize, o, &mut scratch);
                if let Some(pos) = pos {
                    pos.add_row(s, o, &mut scratch);
                }
                if let Some(types) = types {
                    types.add_row(type_ids[r] as usize, o, &mut scratch);
                }
            }
        }
        Ok(out)
    }

    fn linear(&self, x: &CpuTensor, w: &CpuMatrix, b: &Vec<f32>, act: Option<Activation>) -> Result<CpuTensor> {
        let (n, k) = w.shape();
        if x.cols != k || b.len() != n {
            return Err(Error::Backend(format!(
                "linear: x [{}, {}] · w [{n}, {k}]ᵀ + b [{}]",
                x.rows,
                x.cols,
                b.len()
            )));
        }
        let mut out = CpuTensor::zeros(x.rows, n);
        matmul::linear_act(x.rows, n, k, &x.data, w.rows_view(), b, act, &mut out.data);
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

    fn attention(&self, qkv: &CpuTensor, meta: &SeqMeta, a: &Attention<'_, CpuMatrix>) -> Result<CpuTensor> {
        self.attention_of(qkv, meta, a, None)
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

    fn rotary(
        &self,
        mut qkv: CpuTensor,
        meta: &SeqMeta,
        a: &Attention<'_, CpuMatrix>,
        table: &CpuMatrix,
    ) -> Result<CpuTensor> {
        check_rows("rotary", &qkv, meta)?;
        let CpuMatrix::F32(table) = table else {
            return Err(Error::Backend("rotary: a cos/sin table in blocks".into()));
        };
        let pieces = check_rotary(qkv.cols, a, (table.rows, table.cols), meta)?;
        let hd = a.head_dim;
        let cols = qkv.cols;
        // Position of each row within its text, then rows spread over the cores.
        let mut positions = vec![0usize; meta.tokens];
        for b in 0..meta.batch() {
            for (s, r) in meta.rows(b).enumerate() {
                positions[r] = s;
            }
        }
        qkv.data.par_chunks_mut(cols).zip(positions.par_iter()).with_min_len(ROWS_PER_TASK).for_each(|(row, &p)| {
            let angles = &table.data[p * hd..(p + 1) * hd];
            // q and k: the first heads + kv_heads head-wide pieces of the row.
            for x in row[..pieces * hd].chunks_exact_mut(hd) {
                rotate_half_row(x, angles);
            }
        });
        Ok(qkv)
    }

    fn rms_norm(&self, x: &CpuTensor, gamma: &Vec<f32>, eps: f32, width: usize) -> Result<CpuTensor> {
        check_rms_norm(x.cols, gamma.len(), width)?;
        let mut out = x.clone();
        if x.cols > 0 {
            out.data.par_chunks_mut(x.cols).zip(x.data.par_chunks(x.cols)).with_min_len(ROWS_PER_TASK).for_each(
                |(o, row)| {
                    for ((o, x), g) in
                        o.chunks_exact_mut(width).zip(row.chunks_exact(width)).zip(gamma.chunks_exact(width))
                    {
                        rms_norm_row(x, g, eps, o);
                    }
                },
            );
        }
        Ok(out)
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(Error::Backend(format!("add: [{}, {}] + [{}, {}]", a.rows, a.cols, b.rows, b.cols)));
        }
        let data = a.data.par_iter().zip(&b.data).with_min_len(4096).map(|(x, y)| x + y).collect();
        Ok(CpuTensor::new(a.rows, a.cols, data))
    }

    fn glu(&self, x: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        if !x.cols.is_multiple_of(2) {
            return Err(Error::Backend(format!("glu: {} columns (want 2 * n)", x.cols)));
        }
        let n = x.cols / 2;
        let mut out = CpuTensor::zeros(x.rows, n);
        if n > 0 {
            out.data
                .par_chunks_mut(n)
                .zip(x.data.par_chunks(x.cols))
                .with_min_len(ROWS_PER_TASK)
                .for_each(|(o, row)| glu_row(act, row, o));
        }
        Ok(out)
    }

    fn normalize(&self, mut x: CpuTensor) -> Result<CpuTensor> {
        let cols = x.cols.max(1);
        x.data.par_chunks_mut(cols).for_each(l2_normalize);
        Ok(x)
    }

    fn read(&self, t: &CpuTensor) -> impl Future<Output = Result<Vec<f32>>> {
        std::future::ready(Ok(t.data.clone()))
    }

    /// Measured with `wembed bench` (512 STS-B sentences, batches of 32, 2 cores): two batches
    /// side by side gave 860 sentences/s against 765 one after the other, the ops' own
    /// threading left on in both.
    fn concurrent_batches(&self) -> usize {
        rayon::current_num_threads()
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
        let a = Cpu::new()
            .attention(&CpuTensor::new(5, 3 * dim, qkv.clone()), &meta, &Attention::multi_head(dim, heads))
            .unwrap();
        for v in &mut qkv[3 * 3 * dim..] {
            *v = 1e3;
        }
        let b =
            Cpu::new().attention(&CpuTensor::new(5, 3 * dim, qkv), &meta, &Attention::multi_head(dim, heads)).unwrap();
        assert_eq!(a.data[..3 * dim], b.data[..3 * dim]);
        assert_ne!(a.data[3 * dim..], b.data[3 * dim..]);
    }

    #[test]
    fn attention_rows_are_those_rows_of_the_whole() {
        // One text of 150 tokens (three blocks of 64 queries), query ranges that start inside
        // a block, end inside one, cross one, or are one row; with a window, causal, grouped
        // heads, and a relative-position bias.
        let meta = SeqMeta::new(vec![150], vec![0]);
        let bias = CpuTensor::new(2, 2 * 40 - 1, (0..2 * 79).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.05).collect());
        let bias = CpuMatrix::F32(bias);
        let shapes = [
            Attention::<CpuMatrix>::multi_head(16, 2),
            Attention { window: Some(20), ..Attention::multi_head(16, 2) },
            Attention { heads: 4, kv_heads: 2, head_dim: 8, bias: None, window: None, causal: true },
            Attention { bias: Some(&bias), ..Attention::multi_head(16, 2) },
        ];
        for a in shapes {
            let stride = a.qkv_dim();
            let x =
                CpuTensor::new(150, stride, (0..150 * stride).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13).collect());
            let whole = Cpu::new().attention(&x, &meta, &a).unwrap();
            let dim = whole.cols;
            for rows in [0..150, 37..150, 0..75, 75..150, 70..71, 64..128, 5..5] {
                let got = Cpu::new().attention_rows(&x, &meta, &a, rows.clone()).unwrap();
                assert_eq!((got.rows, got.cols), (rows.len(), dim));
                let want = &whole.data[rows.start * dim..rows.end * dim];
                let worst = got.data.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
                assert!(
                    worst <= 1e-6,
                    "{:?} window {:?} causal {} rows {rows:?}: off by {worst}",
                    a.heads,
                    a.window,
                    a.causal
                );
            }
        }
        // One text only, rows within it.
        let a = Attention::<CpuMatrix>::multi_head(4, 2);
        let two = SeqMeta::new(vec![3, 2], vec![0, 0]);
        let x = CpuTensor::new(5, 12, vec![0.1; 60]);
        assert!(Cpu::new().attention_rows(&x, &two, &a, 0..3).is_err());
        let one = SeqMeta::new(vec![5], vec![0]);
        assert!(Cpu::new().attention_rows(&x, &one, &a, 2..6).is_err());
    }

    #[test]
    fn masks_and_grouped_heads_do_what_the_definition_says() {
        // The definition, written out in f64: per text and query head h, keys of key/value
        // head h / (heads / kv_heads), scores of keys outside the window or after the query
        // (causal) set to -inf before the softmax.
        let meta = SeqMeta::new(vec![9, 1, 5], vec![0, 0, 0]);
        for (heads, kv_heads, hd, window, causal) in [
            (2, 2, 3, Some(0), false),
            (2, 2, 3, Some(1), false),
            (2, 2, 3, Some(2), false),
            (2, 2, 3, Some(8), false),
            (2, 2, 3, None, true),
            (2, 2, 3, Some(2), true),
            (4, 2, 3, None, false),
            (6, 1, 5, None, true),
        ] {
            let a = Attention { heads, kv_heads, head_dim: hd, bias: None, window, causal };
            let (dim, kv_dim, stride) = (a.out_dim(), kv_heads * hd, a.qkv_dim());
            let qkv: Vec<f32> = (0..meta.tokens * stride).map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13).collect();
            let x = CpuTensor::new(meta.tokens, stride, qkv.clone());
            let got = Cpu::new().attention(&x, &meta, &a).unwrap();
            assert_eq!((got.rows, got.cols), (meta.tokens, dim));
            for b in 0..meta.batch() {
                let rows = meta.rows(b);
                for (i, r) in rows.clone().enumerate() {
                    for h in 0..heads {
                        let kv = h / (heads / kv_heads) * hd;
                        let q = |d: usize| qkv[r * stride + h * hd + d] as f64;
                        let k = |row: usize, d: usize| qkv[row * stride + dim + kv + d] as f64;
                        let v = |row: usize, d: usize| qkv[row * stride + dim + kv_dim + kv + d] as f64;
                        let seen = |j: usize| window.is_none_or(|w| i.abs_diff(j) <= w) && (!causal || j <= i);
                        let scores: Vec<f64> = rows
                            .clone()
                            .enumerate()
                            .map(|(j, c)| match seen(j) {
                                true => (0..hd).map(|d| q(d) * k(c, d)).sum::<f64>() / (hd as f64).sqrt(),
                                false => f64::NEG_INFINITY,
                            })
                            .collect();
                        let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let sum: f64 = e.iter().sum();
                        for d in 0..hd {
                            let want: f64 = rows.clone().zip(&e).map(|(c, p)| p / sum * v(c, d)).sum();
                            let g = got.data[r * dim + h * hd + d] as f64;
                            let at = format!("{heads}/{kv_heads} heads, window {window:?}, causal {causal}");
                            assert!(
                                (g - want).abs() < 1e-5,
                                "{at}: text {b} query {i} head {h} dim {d}: {g} vs {want}"
                            );
                        }
                    }
                }
            }
        }
        // A window as wide as the longest text is no window.
        let a = Attention::<CpuMatrix>::multi_head(6, 2);
        let x = CpuTensor::new(meta.tokens, 18, (0..meta.tokens * 18).map(|i| (i % 7) as f32 * 0.3).collect());
        let full = Cpu::new().attention(&x, &meta, &a).unwrap();
        let wide = Cpu::new().attention(&x, &meta, &Attention { window: Some(8), ..a }).unwrap();
        assert_eq!(full.data, wide.data);
        // Shapes that do not divide are refused.
        for bad in [Attention { kv_heads: 4, ..a }, Attention { heads: 3, kv_heads: 2, ..a }] {
            assert!(Cpu::new().attention(&x, &meta, &bad).is_err());
        }
    }
}
