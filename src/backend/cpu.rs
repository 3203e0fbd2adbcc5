//! The CPU backend: plain, readable f32 code that is also the oracle every GPU kernel is
//! tested against. Matmuls go through the `gemm` crate (runtime-dispatched SIMD); the rest is
//! written out here, parallel over rows with rayon.

use std::future::Future;

use gemm::Parallelism;
use rayon::prelude::*;

use super::{Backend, SeqMeta};
use crate::config::{Activation, PoolMode};
use crate::error::{Error, Result};
use crate::weights::HostTensor;

/// Row-major `[rows, cols]` f32 matrix: activations and weights alike.
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
}

fn threads() -> usize {
    rayon::current_num_threads()
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]` for strided views. Strides are in elements.
#[allow(clippy::too_many_arguments)]
fn matmul(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: &[f32],
    rhs_rs: usize,
    rhs_cs: usize,
    alpha: f32,
    par: Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds checked here once, so the unsafe call below stays inside the slices.
    let last = |rows: usize, rs: usize, cols: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(m, dst_rs, n, 1) < dst.len());
    if k > 0 {
        assert!(last(m, lhs_rs, k, lhs_cs) < lhs.len());
        assert!(last(k, rhs_rs, n, rhs_cs) < rhs.len());
    }
    // SAFETY: the three views were bounds-checked above; dst does not alias lhs or rhs
    // (it is a distinct &mut slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

// erf for f32 without a libm call, so the GELU loop vectorizes (and so the WGSL kernel, which has
// no erf builtin, can use the very same formula). A rational approximation on [-4, 4] (outside it
// erf is ±1 in f32): odd degree-13 numerator over even degree-8 denominator, the coefficients used
// by Eigen and XLA for float erf. Measured max abs error vs the exact erf is in
// `tests::erf_matches_libm` (below 5e-7 over [-6, 6]).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906_3e-4;
    p = x2 * p + -2.954_600_1e-3;
    p = x2 * p + -1.609_603_3e-2;
    p *= x;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329_4e-3;
    q = x2 * q + -1.426_474e-2;
    p / q
}

/// Applies an activation in place. GELU is `x·Φ(x)` with the erf, as in BERT; the tanh form is
/// the `gelu_new` approximation that some checkpoints were trained with.
pub fn activate(act: Activation, xs: &mut [f32]) {
    match act {
        Activation::GeluErf => {
            for x in xs {
                *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            for x in xs {
                *x = 0.5 * *x * (1.0 + (C * (*x + 0.044715 * *x * *x * *x)).tanh());
            }
        }
        Activation::Relu => {
            for x in xs {
                *x = x.max(0.0);
            }
        }
    }
}

/// `LayerNorm(x)` of one row, in place; statistics in f64 so rounding never depends on width.
pub fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps as f64).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = ((*v as f64 - mean) * inv) as f32 * g + b;
    }
}

/// Softmax of one row in place, subtracting the row max first so exp never overflows.
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Pools one sequence's token vectors `[len, dim]` into `out` `[modes.len() * dim]`.
/// Mean and max look at tokens `start..len` only; padding is never seen.
pub fn pool_sequence(tokens: &[f32], dim: usize, len: usize, start: usize, modes: &[PoolMode], out: &mut [f32]) {
    for (mode, out) in modes.iter().zip(out.chunks_exact_mut(dim)) {
        let row = |t: usize| &tokens[t * dim..(t + 1) * dim];
        match mode {
            PoolMode::Cls => out.copy_from_slice(row(0)),
            PoolMode::LastToken => out.copy_from_slice(row(len - 1)),
            PoolMode::Max => {
                out.fill(f32::NEG_INFINITY);
                for t in start..len {
                    for (o, v) in out.iter_mut().zip(row(t)) {
                        *o = o.max(*v);
                    }
                }
            }
            PoolMode::Mean | PoolMode::MeanSqrtLen => {
                let mut acc = vec![0.0f64; dim];
                for t in start..len {
                    for (a, v) in acc.iter_mut().zip(row(t)) {
                        *a += *v as f64;
                    }
                }
                let count = (len - start) as f64;
                let div = if *mode == PoolMode::Mean { count } else { count.sqrt() };
                for (o, a) in out.iter_mut().zip(&acc) {
                    *o = (*a / div) as f32;
                }
            }
        }
    }
}

/// `x / max(‖x‖₂, 1e-12)`, as torch.nn.functional.normalize.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12);
    for x in v {
        *x = (*x as f64 / norm) as f32;
    }
}

fn check_rows(what: &str, t: &CpuTensor, meta: &SeqMeta) -> Result<()> {
    if t.rows != meta.batch * meta.seq {
        return Err(Error::Backend(format!(
            "{what}: tensor has {} rows, batch {}x{} needs {}",
            t.rows,
            meta.batch,
            meta.seq,
            meta.batch * meta.seq
        )));
    }
    Ok(())
}

/// Rows per rayon task for cheap element-wise work: enough to amortise the task overhead.
const ROWS_PER_TASK: usize = 16;

impl Backend for Cpu {
    type Tensor = CpuTensor;
    type Matrix = CpuTensor;
    type Vector = Vec<f32>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", threads())
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
        let rows = meta.batch * meta.seq;
        if ids.len() != rows || type_ids.len() != rows {
            return Err(Error::Backend(format!("embed: {} ids for {rows} positions", ids.len())));
        }
        if meta.seq > pos.rows {
            return Err(Error::Input(format!(
                "sequence of {} tokens, the model has {} positions",
                meta.seq, pos.rows
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
        out.data.par_chunks_mut(dim).enumerate().for_each(|(r, o)| {
            let s = r % meta.seq;
            let w = &word.data[ids[r] as usize * dim..][..dim];
            let p = &pos.data[s * dim..][..dim];
            let t = &types.data[type_ids[r] as usize * dim..][..dim];
            for i in 0..dim {
                o[i] = w[i] + p[i] + t[i];
            }
        });
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
        let (m, n, k) = (x.rows, w.rows, w.cols);
        let mut out = CpuTensor::zeros(m, n);
        for row in out.data.chunks_exact_mut(n) {
            row.copy_from_slice(b);
        }
        let par = if m * n * k >= 1 << 18 { Parallelism::Rayon(0) } else { Parallelism::None };
        matmul(m, n, k, &mut out.data, n, true, &x.data, k, 1, &w.data, 1, k, 1.0, par);
        if let Some(act) = act {
            out.data.par_chunks_mut(n * ROWS_PER_TASK).for_each(|c| activate(act, c));
        }
        Ok(out)
    }

    fn layer_norm(
        &self,
        x: &CpuTensor,
        residual: Option<&CpuTensor>,
        gamma: &Vec<f32>,
        beta: &Vec<f32>,
        eps: f32,
    ) -> Result<CpuTensor> {
        if gamma.len() != x.cols || beta.len() != x.cols || residual.is_some_and(|r| r.data.len() != x.data.len()) {
            return Err(Error::Backend(format!("layer_norm: x [{}, {}] with mismatched parameters", x.rows, x.cols)));
        }
        let mut out = x.clone();
        if let Some(r) = residual {
            out.data.iter_mut().zip(&r.data).for_each(|(o, r)| *o += r);
        }
        out.data
            .par_chunks_mut(x.cols)
            .for_each(|row| layer_norm_row(row, gamma, beta, eps));
        Ok(out)
    }

    fn attention(&self, qkv: &CpuTensor, meta: &SeqMeta, heads: usize) -> Result<CpuTensor> {
        check_rows("attention", qkv, meta)?;
        if qkv.cols % 3 != 0 || (qkv.cols / 3) % heads != 0 {
            return Err(Error::Backend(format!("attention: {} columns for {heads} heads", qkv.cols)));
        }
        let dim = qkv.cols / 3;
        let hd = dim / heads;
        let stride = qkv.cols;
        let scale = 1.0 / (hd as f32).sqrt();
        let mut ctx = CpuTensor::zeros(qkv.rows, dim);
        // One task per sequence; heads inside, each writing its own column block of ctx.
        ctx.data.par_chunks_mut(meta.seq * dim).enumerate().for_each(|(b, out)| {
            let len = meta.lens[b] as usize;
            let seq_qkv = &qkv.data[b * meta.seq * stride..];
            let mut scores = vec![0.0f32; len * len];
            for h in 0..heads {
                let q = &seq_qkv[h * hd..];
                let k = &seq_qkv[dim + h * hd..];
                let v = &seq_qkv[2 * dim + h * hd..];
                // scores[i, j] = scale · q_i · k_j   (only the real tokens: padding is masked out
                // by never being computed)
                matmul(len, len, hd, &mut scores, len, false, q, stride, 1, k, 1, stride, scale, Parallelism::None);
                for row in scores.chunks_exact_mut(len) {
                    softmax_row(row);
                }
                // out[i, h*hd..] = Σ_j scores[i, j] · v_j
                matmul(len, hd, len, &mut out[h * hd..], dim, false, &scores, len, 1, v, stride, 1, 1.0, Parallelism::None);
            }
        });
        Ok(ctx)
    }

    fn pool(&self, hidden: &CpuTensor, meta: &SeqMeta, modes: &[PoolMode], normalize: bool) -> Result<CpuTensor> {
        check_rows("pool", hidden, meta)?;
        let dim = hidden.cols;
        let width = modes.len() * dim;
        let mut out = CpuTensor::zeros(meta.batch, width);
        out.data.par_chunks_mut(width).enumerate().for_each(|(b, o)| {
            let tokens = &hidden.data[b * meta.seq * dim..(b + 1) * meta.seq * dim];
            let len = (meta.lens[b] as usize).max(1);
            pool_sequence(tokens, dim, len, meta.starts[b] as usize, modes, o);
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
    fn erf_matches_libm() {
        let mut worst = (0.0f32, 0.0f32);
        for i in -60_000..=60_000 {
            let x = i as f32 * 1e-4;
            let err = (erf(x) - libm::erf(x as f64) as f32).abs();
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 < 5e-7, "erf approximation off by {} at x = {}", worst.0, worst.1);
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let mut row = [1000.0f32, 1001.0, 999.0];
        softmax_row(&mut row);
        let e = [(-1.0f64).exp(), 1.0, (-2.0f64).exp()];
        let s: f64 = e.iter().sum();
        for (r, e) in row.iter().zip(e) {
            assert!((*r as f64 - e / s).abs() < 1e-6);
        }
    }

    #[test]
    fn linear_matches_naive_on_odd_shapes() {
        let cpu = Cpu::new();
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 33, 65), (64, 96, 130)] {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.1).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.1).collect();
            let b: Vec<f32> = (0..n).map(|i| i as f32 * 0.01).collect();
            let got = cpu
                .linear(&CpuTensor::new(m, k, x.clone()), &CpuTensor::new(n, k, w.clone()), &b, None)
                .unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = b[j] as f64 + (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum::<f64>();
                    let g = got.data[i * n + j] as f64;
                    assert!((g - want).abs() < 1e-4, "({m},{n},{k}) at [{i},{j}]: {g} vs {want}");
                }
            }
        }
    }
}
