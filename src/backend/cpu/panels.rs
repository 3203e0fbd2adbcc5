//! f32 weights in column panels, multiplied by outer products (native, where the CPU has
//! AVX-512 F).
//!
//! The row kernel ([`super::matmul::dot_block`]) dots each weight row with each input row:
//! sixteen partial sums per output, summed across lanes at the end (a `_mm512_reduce_add_ps`
//! per output: at k = 384 that is a quarter of a 4 × 4 tile's work), and each step loads one
//! vector per weight row and per input row for 16 FMAs. Here the weights are packed once at
//! load into panels of [`PANEL`] output columns, k-major (`[panels, k, PANEL]`, the last panel
//! zero-padded), as BLAS packs its B operand: a step loads one row of a panel (two vectors),
//! broadcasts one activation per input row and does two FMAs per row into accumulators that
//! are the outputs themselves, 12 rows × 32 columns in 24 of the 32 zmm registers. No
//! reductions, two loads per 24 FMAs, and the panel streams in order. Each output's sum runs
//! over k in order whatever the tile, so a row's result does not depend on its place in a batch.
//!
//! Measured with examples/skinny.rs (2 cores, MiniLM's shapes, weights cycled through 12 sets;
//! 2026-12-08, three runs): at 12 rows (one short text) 1.15-1.55x the row kernel, at 48 rows
//! 1.2-2x, at 400 rows (a batch) 1.7-3.3x the `gemm` crate that took those before.
//!
//! Where there is no AVX-512 (wasm, AVX2-only CPUs) the weights stay in rows
//! ([`wanted`] says which), so the row kernels there are unchanged. [`portable`] is the same
//! loop in plain Rust, which the tests hold the AVX-512 kernel to.

use rayon::prelude::*;

use super::matmul::{Columns, finish_row};
use crate::config::Activation;

/// Output columns per panel: two zmm registers of f32.
pub const PANEL: usize = 32;
/// Input rows per tile: 12 × 2 accumulators, two panel vectors and a broadcast use 27 of the
/// 32 zmm registers.
const TILE_ROWS: usize = 12;
/// Panels per task: 64 columns, as the row kernel's tiles.
const PANELS_PER_TASK: usize = 2;
/// Input rows per task when a batch has many: 96 rows of activations (590 KB at k = 1536) stay
/// in L2 while the task's panels pass over them, and a batch splits into enough tasks for every
/// core even where n is one strip wide.
const ROWS_PER_TASK: usize = 96;

/// Whether the CPU has AVX-512 F (detected once; never in wasm): f32 weights are packed in
/// panels then, and the row kernel's few products left (attention's) take its AVX-512 tile.
pub fn wanted() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// A weight matrix `[rows, cols]` (`rows` outputs of `cols` inputs) packed in panels.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Panels {
    pub rows: usize,
    pub cols: usize,
    /// `[rows.div_ceil(PANEL), cols, PANEL]`; the last panel's columns past `rows` are zero.
    data: Vec<f32>,
}

impl F32Panels {
    /// Packs `w` (`[rows, cols]`, row-major).
    pub fn new(rows: usize, cols: usize, w: &[f32]) -> F32Panels {
        assert_eq!(w.len(), rows * cols, "weights of [{rows}, {cols}]");
        let mut data = vec![0.0f32; rows.div_ceil(PANEL) * cols * PANEL];
        for (j, row) in w.chunks_exact(cols.max(1)).enumerate().take(rows) {
            let panel = &mut data[(j / PANEL) * cols * PANEL..][..cols * PANEL];
            for (t, &v) in row.iter().enumerate() {
                panel[t * PANEL + j % PANEL] = v;
            }
        }
        F32Panels { rows, cols, data }
    }

    /// Row `r` (output `r`'s weights) into `out` (`cols` long).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let panel = self.panel(r / PANEL);
        for (t, o) in out[..self.cols].iter_mut().enumerate() {
            *o = panel[t * PANEL + r % PANEL];
        }
    }

    fn panel(&self, p: usize) -> &[f32] {
        &self.data[p * self.cols * PANEL..][..self.cols * PANEL]
    }

    fn panels(&self) -> usize {
        self.rows.div_ceil(PANEL)
    }
}

/// `out[m, n] = act(bias + x[m, k] · wᵀ)`: tasks of up to [`ROWS_PER_TASK`] input rows by
/// [`PANELS_PER_TASK`] panels, each panel passing over its task's rows in tiles of
/// [`TILE_ROWS`].
#[allow(clippy::too_many_arguments)]
pub fn linear_act(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &F32Panels,
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    assert!(w.rows == n && w.cols == k && x.len() == m * k && bias.len() == n && out.len() == m * n);
    let kernel = Kernel::best();
    let strips = w.panels().div_ceil(PANELS_PER_TASK);
    let chunks = m.div_ceil(ROWS_PER_TASK);
    let out = Columns::new(out, m, n);
    (0..chunks * strips).into_par_iter().for_each(|t| {
        let (i0, s) = ((t / strips) * ROWS_PER_TASK, t % strips);
        let i1 = (i0 + ROWS_PER_TASK).min(m);
        let mut acc = [0.0f32; TILE_ROWS * PANEL];
        for p in s * PANELS_PER_TASK..((s + 1) * PANELS_PER_TASK).min(w.panels()) {
            let (j0, width) = (p * PANEL, PANEL.min(n - p * PANEL));
            let mut i = i0;
            while i < i1 {
                let h = (i1 - i).min(TILE_ROWS);
                kernel.tile(h, k, &x[i * k..(i + h) * k], w.panel(p), &mut acc);
                for (r, acc) in acc.chunks_exact(PANEL).take(h).enumerate() {
                    // SAFETY: rows i0..i1 and columns j0..j0 + width are this task's alone
                    // (tasks split the rows in chunks and the columns in strips).
                    let dst = unsafe { out.row_of(i + r, j0, width) };
                    finish_row(dst, &acc[..width], 1.0, &bias[j0..j0 + width], act);
                }
                i += h;
            }
        }
    });
}

/// Which tile kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// AVX-512 where the CPU has it.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if wanted() {
            return Kernel::Avx512;
        }
        Kernel::Portable
    }

    /// `acc[r, c] = Σ_t x[r, t] · panel[t, c]` for the `h <= TILE_ROWS` rows of `x` (`[h, k]`):
    /// `acc` is `[TILE_ROWS, PANEL]`, its first `h` rows written.
    pub fn tile(self, h: usize, k: usize, x: &[f32], panel: &[f32], acc: &mut [f32; TILE_ROWS * PANEL]) {
        assert!(h <= TILE_ROWS && x.len() == h * k && panel.len() == k * PANEL);
        match self {
            Kernel::Portable => portable(h, k, x, panel, acc),
            // SAFETY: Avx512 is only chosen where the CPU has AVX-512 F (or by a test that
            // checked); the lengths were asserted.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::tile(h, k, x, panel, acc) },
        }
    }
}

/// The tile in plain Rust: the same products, each output's sum in the same order over k.
pub fn portable(h: usize, k: usize, x: &[f32], panel: &[f32], acc: &mut [f32; TILE_ROWS * PANEL]) {
    for r in 0..h {
        let out = &mut acc[r * PANEL..(r + 1) * PANEL];
        out.fill(0.0);
        for (t, row) in panel.chunks_exact(PANEL).enumerate().take(k) {
            let a = x[r * k + t];
            for (o, w) in out.iter_mut().zip(row) {
                *o = a.mul_add(*w, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PANEL, TILE_ROWS};
    use std::arch::x86_64::*;

    /// How far ahead of the loads the panel is prefetched, in steps of k (a step is a 128-byte
    /// row of the panel): 8 was the best of 0, 8, 16 and 32 on the products alone (the panels
    /// column of examples/skinny.rs, the distance edited between runs; 2026-12-08). In `wembed
    /// bench --dtype f32` 8 and 16 were the same within the machine's noise.
    const PREFETCH_STEPS: usize = 8;

    /// `R` rows of `x` (`[R, k]` at `x`) against a panel; the sums go to `acc` (`[R, PANEL]`).
    /// Safety: AVX-512 F; `x` holds `R · k` floats, `panel` `k · PANEL`, `acc` `R · PANEL`.
    #[target_feature(enable = "avx512f")]
    unsafe fn rows<const R: usize>(k: usize, x: *const f32, panel: *const f32, acc: *mut f32) {
        let mut sum = [[_mm512_setzero_ps(); 2]; R];
        for t in 0..k {
            // SAFETY: row t of the panel and element t of each row lie within the caller's
            // buffers; the prefetch may point past the panel (it never faults).
            unsafe {
                let p = panel.add(t * PANEL);
                let ahead = p.wrapping_add(PREFETCH_STEPS * PANEL) as *const i8;
                _mm_prefetch::<_MM_HINT_T0>(ahead);
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
                let (w0, w1) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16)));
                for (r, s) in sum.iter_mut().enumerate() {
                    let a = _mm512_set1_ps(*x.add(r * k + t));
                    s[0] = _mm512_fmadd_ps(a, w0, s[0]);
                    s[1] = _mm512_fmadd_ps(a, w1, s[1]);
                }
            }
        }
        for (r, s) in sum.iter().enumerate() {
            // SAFETY: row r of acc has PANEL floats.
            unsafe {
                _mm512_storeu_ps(acc.add(r * PANEL), s[0]);
                _mm512_storeu_ps(acc.add(r * PANEL + 16), s[1]);
            }
        }
    }

    /// [`super::Kernel::tile`] in AVX-512. Safety: AVX-512 F; the lengths as there.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile(h: usize, k: usize, x: &[f32], panel: &[f32], acc: &mut [f32; TILE_ROWS * PANEL]) {
        let (x, p, a) = (x.as_ptr(), panel.as_ptr(), acc.as_mut_ptr());
        macro_rules! heights {
            ($($r:literal)*) => {
                match h {
                    // SAFETY: h rows of x, the panel and h rows of acc exist (the caller's
                    // guarantee).
                    $($r => unsafe { rows::<$r>(k, x, p, a) },)*
                    _ => {}
                }
            };
        }
        heights!(1 2 3 4 5 6 7 8 9 10 11 12);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// f64 products: `(Σ x·w + b, Σ |x·w| + |b|)` per output.
    fn reference(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<(f64, f64)> {
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut a) = (b[j] as f64, (b[j] as f64).abs());
                for t in 0..k {
                    let p = x[i * k + t] as f64 * w[j * k + t] as f64;
                    s += p;
                    a += p.abs();
                }
                out.push((s, a));
            }
        }
        out
    }

    #[test]
    fn packing_keeps_every_row() {
        for (n, k) in [(1, 1), (31, 5), (32, 3), (33, 7), (70, 13)] {
            let w = data(n * k, 1);
            let p = F32Panels::new(n, k, &w);
            let mut row = vec![0.0; k];
            for j in 0..n {
                p.row(j, &mut row);
                assert_eq!(row, w[j * k..(j + 1) * k], "row {j} of [{n}, {k}]");
            }
        }
    }

    #[test]
    fn panel_products_match_f64_on_odd_shapes() {
        // 1 row, a tile and one more, several row tasks; n off the panel width; k odd. Each
        // output's sum runs over k in f32 with FMA: off by at most k · 2^-24 of Σ|x·w| (the
        // bound of a sequential sum), far tighter in practice.
        let mut kernels = vec![Kernel::Portable];
        if Kernel::best() != Kernel::Portable {
            kernels.push(Kernel::best());
        }
        eprintln!("panel kernels tested: {kernels:?}");
        for (m, n, k) in [(1, 1, 1), (1, 33, 384), (5, 31, 7), (12, 64, 100), (13, 70, 33), (200, 97, 65)] {
            let (x, w, b) = (data(m * k, 2), data(n * k, 3), data(n, 4));
            let want = reference(m, n, k, &x, &w, &b);
            let p = F32Panels::new(n, k, &w);
            let mut got = vec![0.0; m * n];
            linear_act(m, n, k, &x, &p, &b, None, &mut got);
            for (o, (g, (e, mag))) in got.iter().zip(&want).enumerate() {
                let bound = (k + 1) as f64 * 2f64.powi(-24) * mag;
                assert!((*g as f64 - e).abs() <= bound, "({m},{n},{k}) output {o}: {g} vs {e}");
            }
            // Each kernel alone, tile by tile, against the other: the same sums.
            for kernel in &kernels {
                for i in (0..m).step_by(TILE_ROWS) {
                    let h = (m - i).min(TILE_ROWS);
                    let (mut a, mut b) = ([0.0; TILE_ROWS * PANEL], [0.0; TILE_ROWS * PANEL]);
                    kernel.tile(h, k, &x[i * k..(i + h) * k], p.panel(0), &mut a);
                    Kernel::Portable.tile(h, k, &x[i * k..(i + h) * k], p.panel(0), &mut b);
                    assert_eq!(a[..h * PANEL], b[..h * PANEL], "{kernel:?} ({m},{n},{k}) rows {i}..");
                }
            }
        }
    }

    #[test]
    fn a_row_gets_the_same_result_alone_and_in_a_batch() {
        let (m, n, k) = (150, 40, 50);
        let (x, w, b) = (data(m * k, 5), data(n * k, 6), data(n, 7));
        let p = F32Panels::new(n, k, &w);
        let mut all = vec![0.0; m * n];
        linear_act(m, n, k, &x, &p, &b, Some(Activation::GeluErf), &mut all);
        for i in [0, 11, 12, 95, 96, 149] {
            let mut one = vec![0.0; n];
            linear_act(1, n, k, &x[i * k..(i + 1) * k], &p, &b, Some(Activation::GeluErf), &mut one);
            assert_eq!(one, all[i * n..(i + 1) * n], "row {i}");
        }
    }
}
