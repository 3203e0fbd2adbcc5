//! Element-wise and row-wise numerics of the CPU backend: activations, layer norm, softmax,
//! pooling, normalization. Written as plain loops LLVM vectorizes; on x86-64 the hot ones are
//! compiled a second time with AVX2 and picked at run time (see `simd!` in the backend's module).

use std::ops::Range;

use crate::config::{Activation, PoolMode};

// erf for f32 without a libm call, so the GELU loop vectorizes (and so the WGSL kernel, which has
// no erf builtin, can use the very same formula). A rational approximation on [-4, 4] (outside it
// erf is ±1 in f32): odd degree-13 numerator over even degree-8 denominator, the coefficients
// Eigen and XLA use for float erf. Max abs error vs the exact erf: 4e-7 (test `erf_is_accurate`).
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

// exp for f32 without a libm call, so softmax vectorizes: Cephes' expf. x = n·ln2 + r with
// |r| <= ln2/2 (ln2 split in two parts for exactness), a degree-7 polynomial for e^r, and 2^n
// put straight into the exponent bits. Rounding to nearest uses the 1.5·2^23 trick instead of
// floor(), which is a libm call on baseline x86-64. Relative error below 2e-7 (test
// `exp_is_accurate`); inputs are clamped to [-87, 88] where f32 exp is finite and normal.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4 * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let p = p * r * r + r + 1.0;
    // The low mantissa bits of t hold n (as a two's-complement offset from MAGIC's bits).
    let n_int = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    p * f32::from_bits(((n_int + 127) << 23) as u32)
}

/// Applies an activation in place. GELU is `x·Φ(x)` with the erf, as in BERT; the tanh form is
/// the `gelu_new` approximation some checkpoints were trained with, computed as
/// `x·sigmoid(2u)`, which equals `0.5·x·(1 + tanh(u))` and needs only [`exp`].
pub fn activate(act: Activation, xs: &mut [f32]) {
    simd!(match act {
        Activation::GeluErf => {
            for x in xs.iter_mut() {
                *x = 0.5 * *x * (1.0 + erf(*x * std::f32::consts::FRAC_1_SQRT_2));
            }
        }
        Activation::GeluTanh => {
            const C: f32 = 0.797_884_6; // sqrt(2 / pi)
            for x in xs.iter_mut() {
                let u = C * (*x + 0.044715 * *x * *x * *x);
                *x /= 1.0 + exp(-2.0 * u);
            }
        }
        Activation::Relu => {
            for x in xs.iter_mut() {
                *x = x.max(0.0);
            }
        }
        Activation::Tanh => {
            // 1 - 2 / (e^2x + 1): only exp, so it vectorizes; exp's clamp keeps it finite.
            for x in xs.iter_mut() {
                *x = 1.0 - 2.0 / (exp(2.0 * *x) + 1.0);
            }
        }
        Activation::Silu => {
            // x / (1 + e^-x); exp's clamp keeps the denominator finite (silu(-100) = -0).
            for x in xs.iter_mut() {
                *x /= 1.0 + exp(-*x);
            }
        }
    })
}

/// One row of a gated linear unit: `out[j] = act(x[j]) * x[n + j]`, x `[2n]`, out `[n]`
/// (see `Backend::glu`).
pub fn glu_row(act: Activation, x: &[f32], out: &mut [f32]) {
    let n = out.len();
    out.copy_from_slice(&x[..n]);
    activate(act, out);
    for (o, up) in out.iter_mut().zip(&x[n..2 * n]) {
        *o *= up;
    }
}

/// One head's rotary embedding at one position, in place (see `Backend::rotary`): `x`
/// `[head_dim]`, `row` = (cos, sin) of this position's `head_dim / 2` angles.
#[inline]
pub fn rotate_half_row(x: &mut [f32], row: &[f32]) {
    let half = x.len() / 2;
    let (cos, sin) = row.split_at(half);
    let (x1, x2) = x.split_at_mut(half);
    for i in 0..half {
        let (a, b) = (x1[i], x2[i]);
        // As torch's q * cos + rotate_half(q) * sin: two products, then their sum.
        x1[i] = a * cos[i] - b * sin[i];
        x2[i] = b * cos[i] + a * sin[i];
    }
}

/// `row = LayerNorm(row + residual)` in place. Two passes (mean, then variance of the
/// differences) in f32 with eight partial sums: as exact as PyTorch's and it vectorizes.
pub fn add_layer_norm_row(row: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32) {
    simd!({
        if let Some(r) = residual {
            for (v, r) in row.iter_mut().zip(r) {
                *v += r;
            }
        }
        let n = row.len() as f32;
        let mean = sum8(row) / n;
        let var = sum_sq_dev8(row, mean) / n;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = (*v - mean) * inv * g + b;
        }
    })
}

/// `out = x / sqrt(mean(x²) + eps) * gamma` (RMSNorm of one piece), in f32 as torch's
/// Gemma3RMSNorm: the mean of squares with eight partial sums, then one multiply each.
pub fn rms_norm_row(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    simd!({
        let mut lanes = [0.0f32; 8];
        let chunks = x.chunks_exact(8);
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        for c in chunks {
            for l in 0..8 {
                lanes[l] += c[l] * c[l];
            }
        }
        let mean = (lanes.iter().sum::<f32>() + tail) / x.len() as f32;
        let inv = 1.0 / (mean + eps).sqrt();
        for ((o, v), g) in out.iter_mut().zip(x).zip(gamma) {
            *o = (v * inv) * g;
        }
    })
}

/// Sum with eight independent partial sums (vectorizable, and more exact than one chain).
#[inline(always)]
fn sum8(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += c[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `Σ (x - mean)²` with eight partial sums.
#[inline(always)]
fn sum_sq_dev8(xs: &[f32], mean: f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
    for c in chunks {
        for l in 0..8 {
            lanes[l] += (c[l] - mean) * (c[l] - mean);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Dot product with eight partial sums.
#[inline(always)]
pub fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            lanes[l] += x[l] * y[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Queries per block of [`attend`]'s two products: a block's scores `[64, keys]` stay small
/// (2 MB at 8k keys), and its queries share one copy of the keys they see.
const QUERY_BLOCK: usize = 64;

/// Attention of one head over one sequence: `q`, `k`, `v` are `[len, hd]` views with row
/// stride `stride`; writes `softmax(scale · q kᵀ + bias) v` of the query rows `queries` (all
/// of them: `0..len`) into `out` `[queries.len(), hd]`. `bias` is
/// this head's relative-position row `[2 * span - 1]` with its span: query i, key j add
/// `row[clamp(j - i, 1 - span, span - 1) + span - 1]`. With `window`, query i sees keys
/// `j` with `|j - i| <= window` only, and `causal` keys `j <= i` only (the others are left
/// out of the softmax, as a -inf mask does, and weigh exactly 0). `scratch` is reused
/// between calls.
///
/// Blocks of [`QUERY_BLOCK`] queries, each against the span of keys any of them sees, as two
/// matrix products through the matmul's f32 kernel (`S = Q Kᵀ`, then `S Vᵀᵀ` with V
/// transposed), register-tiled and fused where the CPU has FMA. A loop per query, with a dot
/// product and a horizontal sum per key and a pass over the output per key, ran at a third of
/// that kernel's speed: 18% of a q8 forward pass on 146-token texts in wasm, for 6% of its
/// FLOPs.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    len: usize,
    queries: Range<usize>,
    hd: usize,
    stride: usize,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    bias: Option<(&[f32], usize)>,
    window: Option<usize>,
    causal: bool,
    scratch: &mut Vec<f32>,
    out: &mut [f32],
) {
    // The keys query i sees; both ends grow with i, so a block's span is its first start to
    // its last end.
    let keys = |i: usize| {
        let end = if causal { i + 1 } else { len };
        match window {
            None => 0..end,
            Some(w) => i.saturating_sub(w)..(i.saturating_add(w) + 1).min(end),
        }
    };
    assert!(queries.start <= queries.end && queries.end <= len && out.len() >= queries.len() * hd);
    if hd == 0 {
        return;
    }
    // (simd! returns from the function: it wraps the whole body.)
    simd!({
        for i0 in queries.clone().step_by(QUERY_BLOCK) {
            let i1 = (i0 + QUERY_BLOCK).min(queries.end);
            let (m, a) = (i1 - i0, keys(i0).start);
            let n = keys(i1 - 1).end - a;
            // Every element is written below (the copies, then the first product), so the
            // buffer only grows and is never cleared.
            let need = m * hd + 2 * n * hd + m * n;
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let (qb, rest) = scratch[..need].split_at_mut(m * hd);
            let (kb, rest) = rest.split_at_mut(n * hd);
            let (vt, s) = rest.split_at_mut(n * hd);
            for (r, dst) in qb.chunks_exact_mut(hd).enumerate() {
                dst.copy_from_slice(&q[(i0 + r) * stride..][..hd]);
            }
            for (j, dst) in kb.chunks_exact_mut(hd).enumerate() {
                let (kr, vr) = (&k[(a + j) * stride..][..hd], &v[(a + j) * stride..][..hd]);
                dst.copy_from_slice(kr);
                for (d, &x) in vr.iter().enumerate() {
                    vt[d * n + j] = x;
                }
            }
            super::matmul::dot_block(m, hd, qb, kb, s);
            for (r, row) in s.chunks_exact_mut(n).enumerate() {
                let i = i0 + r;
                let seen = keys(i);
                let (lo, hi) = (seen.start - a, seen.end - a);
                let row_seen = &mut row[lo..hi];
                for x in row_seen.iter_mut() {
                    *x *= scale;
                }
                // As MPNetSelfAttention: the bias is added after scaling.
                if let Some((brow, span)) = bias {
                    let span = span as i64;
                    for (j, x) in seen.zip(row_seen.iter_mut()) {
                        let d = (j as i64 - i as i64).clamp(1 - span, span - 1);
                        *x += brow[(d + span - 1) as usize];
                    }
                }
                softmax_row(row_seen);
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
            }
            let o = i0 - queries.start;
            super::matmul::dot_block(m, n, s, vt, &mut out[o * hd..(o + m) * hd]);
        }
    })
}

/// Softmax of one row in place, subtracting the row max first so exp never overflows.
pub fn softmax_row(row: &mut [f32]) {
    simd!({
        // A compare, not f32::max: that is a call to fmaxf in wasm (2.5% of a forward pass on
        // 146-token texts), and this ignores NaN the same way.
        let max = row.iter().copied().fold(f32::NEG_INFINITY, |m, v| if v > m { v } else { m });
        for v in row.iter_mut() {
            *v = exp(*v - max);
        }
        let inv = 1.0 / sum8(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    })
}

/// Pools one sequence's token vectors `[len, dim]` into `out` `[modes.len() * dim]`, as
/// sentence-transformers' Pooling does. Mean and max look at tokens `start..len` only, so
/// padding is never seen.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_accurate() {
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
    fn exp_is_accurate() {
        let mut worst = (0.0f64, 0.0f32);
        for i in -86_999..=87_999 {
            let x = i as f32 * 1e-3;
            let want = (x as f64).exp();
            let err = ((exp(x) as f64 - want) / want).abs();
            if err > worst.0 {
                worst = (err, x);
            }
        }
        assert!(worst.0 < 2e-7, "exp approximation off by {:e} (relative) at x = {}", worst.0, worst.1);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
    }

    #[test]
    fn gelu_tanh_matches_its_definition() {
        let xs: Vec<f32> = (-800..=800).map(|i| i as f32 * 0.01).collect();
        let mut got = xs.clone();
        activate(Activation::GeluTanh, &mut got);
        for (x, g) in xs.iter().zip(&got) {
            let x = *x as f64;
            let want = 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh());
            assert!((*g as f64 - want).abs() < 1e-6, "gelu_tanh({x}) = {g}, want {want}");
        }
    }

    #[test]
    fn silu_and_glu_match_their_definitions() {
        let xs: Vec<f32> = (-1000..=1000).map(|i| i as f32 * 0.013).collect();
        let mut got = xs.clone();
        activate(Activation::Silu, &mut got);
        for (x, g) in xs.iter().zip(&got) {
            let want = *x as f64 / (1.0 + (-*x as f64).exp());
            assert!((*g as f64 - want).abs() < 1e-6 * want.abs().max(1.0), "silu({x}) = {g}, want {want}");
        }
        // act of the first half times the second, for each gated activation.
        let n = 7;
        let x: Vec<f32> = (0..2 * n).map(|i| (i as f32 - 6.5) * 0.7).collect();
        for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh] {
            let mut out = vec![0.0; n];
            glu_row(act, &x, &mut out);
            for j in 0..n {
                let a = x[j] as f64;
                let gate = match act {
                    Activation::Silu => a / (1.0 + (-a).exp()),
                    Activation::GeluErf => 0.5 * a * (1.0 + libm::erf(a / std::f64::consts::SQRT_2)),
                    _ => 0.5 * a * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a * a * a)).tanh()),
                };
                let want = gate * x[n + j] as f64;
                assert!((out[j] as f64 - want).abs() < 1e-5, "{act:?} glu at {j}: {} vs {want}", out[j]);
            }
        }
    }

    #[test]
    fn rms_norm_matches_f64_reference() {
        for n in [1usize, 7, 256, 385] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3).collect();
            let g: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32 * 0.1).collect();
            let mut got = vec![0.0; n];
            rms_norm_row(&x, &g, 1e-6, &mut got);
            let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n as f64;
            for i in 0..n {
                let want = x[i] as f64 / (ms + 1e-6).sqrt() * g[i] as f64;
                assert!(
                    (got[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                    "n {n}, at {i}: {} vs {want}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn rotate_half_is_a_rotation_of_each_pair() {
        // Pair (x[i], x[i + d/2]) turned by angle p·θ_i, against the complex product in f64.
        let (hd, base) = (8, 10_000.0f32);
        let table = crate::backend::rotary_table(base, hd, 300);
        for p in [0usize, 1, 7, 299] {
            let x: Vec<f32> = (0..hd).map(|i| (i as f32 * 0.37 - 1.1).sin()).collect();
            let mut got = x.clone();
            rotate_half_row(&mut got, &table.data[p * hd..(p + 1) * hd]);
            for i in 0..hd / 2 {
                let theta = (base as f64).powf(-2.0 * i as f64 / hd as f64);
                let (c, s) = ((p as f64 * theta).cos(), (p as f64 * theta).sin());
                let (a, b) = (x[i] as f64, x[i + hd / 2] as f64);
                let want = [a * c - b * s, b * c + a * s];
                for (g, w) in [got[i], got[i + hd / 2]].into_iter().zip(want) {
                    assert!((g as f64 - w).abs() < 1e-4, "position {p}, pair {i}: {g} vs {w}");
                }
            }
        }
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
    fn layer_norm_matches_f64_reference() {
        let row: Vec<f32> = (0..385).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.3 + 1000.0).collect();
        let res: Vec<f32> = (0..385).map(|i| (i % 7) as f32 * 0.01).collect();
        let g: Vec<f32> = (0..385).map(|i| 1.0 + (i % 3) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..385).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut got = row.clone();
        add_layer_norm_row(&mut got, Some(&res), &g, &b, 1e-12);
        let v: Vec<f64> = row.iter().zip(&res).map(|(a, r)| *a as f64 + *r as f64).collect();
        let mean = v.iter().sum::<f64>() / 385.0;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 385.0;
        for i in 0..385 {
            let want = (v[i] - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64;
            assert!((got[i] as f64 - want).abs() < 2e-4, "at {i}: {} vs {want}", got[i]);
        }
    }
}
