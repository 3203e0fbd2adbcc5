//! Matrix products for the CPU backend.
//!
//! `linear` computes `y[m, n] = x[m, k] · w[n, k]ᵀ`. Where the CPU has AVX-512, f32 weights are
//! packed in column panels at load and every product goes to the outer-product kernel of
//! [`super::panels`]. Elsewhere (wasm, AVX2) they stay in their checkpoint layout, in two
//! regimes:
//! - many rows (a batch of texts): the `gemm` crate natively, which packs both operands and runs
//!   runtime-dispatched SIMD micro-kernels; in wasm the row-blocked kernel below;
//! - few rows (one short text): packing the weight costs more than using it, and the run is bound
//!   by streaming the weights from memory (42 MB for all-MiniLM-L6). A "skinny" kernel reads each
//!   weight row once, straight from its checkpoint layout, and dots it with every input row held
//!   in L1.
//!
//! Blocks (q8, q4, K-quants) go to the integer kernels of [`super::qmatmul`].

use gemm::Parallelism;
use rayon::prelude::*;

use super::kernels::activate;
use super::panels::{self, F32Panels};
use super::qmatmul::{self, PackedMatrix};
use crate::config::Activation;
use crate::quant::QuantMatrix;

/// Up to this many input rows, `linear` uses the skinny kernel. Measured with
/// examples/skinny.rs on 2 cores, cold weights: skinny 74 vs gemm 35 GFLOP/s at 8 rows, 112 vs
/// 83 at 32, even at 48, gemm ahead from 64.
pub const SKINNY_MAX_ROWS: usize = 48;

/// `dst[m, n] (+)= alpha · lhs[m, k] · rhs[k, n]` on strided views (strides in elements).
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided(
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
    assert!(last(m, dst_rs, n, 1) < dst.len(), "gemm: dst view out of bounds");
    if k > 0 {
        assert!(last(m, lhs_rs, k, lhs_cs) < lhs.len(), "gemm: lhs view out of bounds");
        assert!(last(k, rhs_rs, n, rhs_cs) < rhs.len(), "gemm: rhs view out of bounds");
    }
    // SAFETY: the three views were bounds-checked above; dst is a distinct &mut slice, so it
    // aliases neither input.
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

/// A weight matrix `[n, k]` as the kernels read it: f32 rows in place, or blocks, which go to
/// the integer kernels of [`super::qmatmul`].
#[derive(Clone, Copy)]
pub enum WeightRows<'a> {
    F32(&'a [f32]),
    Quant(&'a QuantMatrix),
    /// Blocks interleaved once for the wasm integer kernels.
    Packed(&'a PackedMatrix),
    /// f32 in column panels for the AVX-512 outer-product kernel ([`super::panels`]).
    Panels(&'a F32Panels),
}

impl WeightRows<'_> {
    fn fits(&self, n: usize, k: usize) -> bool {
        match *self {
            WeightRows::F32(w) => w.len() == n * k,
            WeightRows::Quant(q) => q.rows == n && q.cols == k,
            WeightRows::Packed(q) => q.rows == n && q.cols == k,
            WeightRows::Panels(p) => p.rows == n && p.cols == k,
        }
    }
}

/// Whether many-row products go to the `gemm` crate. Not in wasm: it has no SIMD128 kernels
/// there, and its scalar path ran batches of 32 at half the speed of single texts (42 vs 82
/// sentences/s, www/bench/wasm.mjs); [`tiled`]'s row-blocked dot products vectorize instead.
const USE_GEMM: bool = !cfg!(target_arch = "wasm32");

/// `out[m, n] = bias + x[m, k] · w[n, k]ᵀ`, picking the kernel by the number of rows.
pub fn linear(m: usize, n: usize, k: usize, x: &[f32], w: WeightRows, bias: &[f32], out: &mut [f32]) {
    linear_act(m, n, k, x, w, bias, None, out)
}

/// [`linear`], then `act` on every output: in the tiled and integer products by the task that
/// writes the output's columns, while they are in cache (a batch's FFN output is ~3 MB, and a
/// separate pass read it back from memory).
#[allow(clippy::too_many_arguments)]
pub fn linear_act(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: WeightRows,
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    assert!(x.len() == m * k && w.fits(n, k) && bias.len() == n && out.len() == m * n);
    match w {
        WeightRows::F32(w) if m > SKINNY_MAX_ROWS && USE_GEMM => {
            gemm_linear(m, n, k, x, w, bias, out);
            if let Some(act) = act {
                out.par_chunks_mut(n * super::ROWS_PER_TASK).for_each(|c| activate(act, c));
            }
        }
        WeightRows::Packed(q) => qmatmul::linear_packed(qmatmul::Kernel::best(), m, n, k, x, q, bias, act, out),
        WeightRows::Panels(p) => panels::linear_act(m, n, k, x, p, bias, act, out),
        // Blocks go to the integer kernels in both regimes (one query or a batch).
        _ => tiled(m, n, k, x, w, bias, act, out),
    }
}

/// The output `[m, n]` of one product, shared by its tasks: each writes only the columns of its
/// own tile ([`Columns::row_of`]), so the tasks' writes never overlap.
pub(super) struct Columns {
    ptr: *mut f32,
    m: usize,
    n: usize,
}

// SAFETY: the tasks reach the buffer only through `row_of`, on disjoint column ranges, while
// `Columns::new`'s borrow of it lasts (the product's scope).
unsafe impl Sync for Columns {}

impl Columns {
    pub(super) fn new(out: &mut [f32], m: usize, n: usize) -> Columns {
        assert!(out.len() == m * n);
        Columns { ptr: out.as_mut_ptr(), m, n }
    }

    /// Row `i`'s columns `j0..j0 + width`.
    /// # Safety
    /// No other task holds these columns of this row (each tile's task has its own columns).
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn row_of(&self, i: usize, j0: usize, width: usize) -> &mut [f32] {
        assert!(i < self.m && j0 + width <= self.n);
        // SAFETY: in bounds (asserted); exclusive by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.n + j0), width) }
    }
}

thread_local! {
    /// Each tile task's `[m, nb]` products before they go out ([`with_tile`]).
    static TILE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's tile buffer, `len` long: reused, so a product does not map and fault in
/// fresh pages per tile (a batch's tile is ~400 KB, past malloc's mmap threshold). It only
/// grows and is not cleared: `f` must write every element before reading it (the f32 and
/// integer kernels all do), and must not start rayon work that could take another tile task
/// on this thread.
pub(super) fn with_tile<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    TILE.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len])
    })
}

/// `dst = act(acc · scale + bias)`, a tile's row of products on its way out (`scale` is the
/// activation row's for the integer products, 1 for f32 ones: `a · 1 + b` is `a + b` exactly).
pub(super) fn finish_row(dst: &mut [f32], acc: &[f32], scale: f32, bias: &[f32], act: Option<Activation>) {
    for ((d, v), b) in dst.iter_mut().zip(acc).zip(bias) {
        *d = v * scale + b;
    }
    if let Some(act) = act {
        activate(act, dst);
    }
}

/// [`linear`] through the `gemm` crate (its own threading: splitting the rows between threads
/// by hand measured the same).
pub fn gemm_linear(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], bias: &[f32], out: &mut [f32]) {
    for row in out.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let par = if m * n * k >= 1 << 18 { Parallelism::Rayon(0) } else { Parallelism::None };
    gemm_strided(m, n, k, out, n, true, x, k, 1, w, 1, k, 1.0, par);
}

/// Weight rows per rayon task in the tiled product: large enough to amortize the task, small
/// enough to split a 384-row matrix between two cores.
const ROWS_PER_TILE: usize = 64;

/// The product one tile of weight rows at a time, tiles in parallel: the skinny kernel, which
/// reads each weight row once (and, in wasm, where there is no gemm, blocks of input rows
/// small enough to stay in cache while the tile passes). Each tile is a column strip of `out`:
/// its task computes into its thread's reused `[m, tile]` buffer ([`with_tile`]) and writes
/// its columns out itself, bias and activation on the way ([`finish_row`]).
/// Quantized weights go to [`super::qmatmul::linear_act`], which tiles the same way.
#[allow(clippy::too_many_arguments)]
pub fn tiled(
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: WeightRows,
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    // K-quants: each task dequantizes its tile of 64 weight rows into f32 (64·k floats, 96 KB at
    // k = 384: it stays in cache while the f32 kernels pass over it) and multiplies that. The
    // integer kernels' trick (one scale per block of 32 outside the dot product) does not carry
    // over as is: a K-quant's sub-block scale is an integer times an f16, and a Q4_K/Q5_K
    // minimum needs per-sub-block sums of the activations; an integer path is future work.
    let (dense, kquant) = match w {
        WeightRows::F32(w) => (w, None),
        WeightRows::Quant(q) if q.format().is_k() => (&[][..], Some(q)),
        WeightRows::Quant(q) => return qmatmul::linear_act(qmatmul::Kernel::best(), m, n, k, x, q, bias, act, out),
        WeightRows::Packed(q) => {
            return qmatmul::linear_packed(qmatmul::Kernel::best(), m, n, k, x, q, bias, act, out);
        }
        WeightRows::Panels(p) => return panels::linear_act(m, n, k, x, p, bias, act, out),
    };
    // In wasm (no gemm), a batch's rows in passes whose f32 activations stay in L2 while every
    // tile reads them, as the integer product does (qmatmul::BYTES_PER_PASS). A pass boundary
    // moves a row's products no more than its place in a batch does (an odd row's dot products
    // sum in another order). Node, one thread, f32 all-MiniLM-L6-v2, 32 paragraphs of ~146
    // tokens (2026-12-07): 7.2 per second at batch 32 before, 7.9 after (batch 1: 8.0).
    let pass = (qmatmul::BYTES_PER_PASS / (4 * k.max(1))).max(SKINNY_MAX_ROWS);
    if !USE_GEMM && kquant.is_none() && m > pass {
        for (xs, outs) in x.chunks(pass * k).zip(out.chunks_mut(pass * n)) {
            tiled(xs.len() / k, n, k, xs, w, bias, act, outs);
        }
        return;
    }
    let out = Columns::new(out, m, n);
    (0..n.div_ceil(ROWS_PER_TILE)).into_par_iter().for_each(|t| {
        let j0 = t * ROWS_PER_TILE;
        let j1 = (j0 + ROWS_PER_TILE).min(n);
        let tile;
        let rows = match kquant {
            None => &dense[j0 * k..j1 * k],
            Some(q) => {
                let mut buf = vec![0.0f32; (j1 - j0) * k];
                q.dequantize_rows(j0, j1, &mut buf);
                tile = buf;
                &tile[..]
            }
        };
        let nb = j1 - j0;
        // Every path below writes all of `acc` (gemm without accumulating).
        with_tile(m * nb, |acc| {
            if m <= SKINNY_MAX_ROWS {
                dot_block(m, k, x, rows, acc);
            } else if USE_GEMM {
                gemm_strided(m, nb, k, acc, nb, false, x, k, 1, rows, 1, k, 1.0, Parallelism::None);
            } else {
                // Blocks of input rows small enough to stay in cache while the tile passes.
                for (xs, accs) in x.chunks(SKINNY_MAX_ROWS * k).zip(acc.chunks_mut(SKINNY_MAX_ROWS * nb)) {
                    dot_block(xs.len() / k, k, xs, rows, accs);
                }
            }
            for i in 0..m {
                // SAFETY: columns j0..j1 are this tile's alone.
                let dst = unsafe { out.row_of(i, j0, nb) };
                finish_row(dst, &acc[i * nb..(i + 1) * nb], 1.0, &bias[j0..j1], act);
            }
        });
    });
}

/// `acc[i, j] = x[i, :] · w[j, :]` for a block of weight rows: `x [m, k]`, `w [nb, k]`,
/// `acc [m, nb]` (also the CPU attention's two products, `kernels::attend`).
pub(super) fn dot_block(m: usize, k: usize, x: &[f32], w: &[f32], acc: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if panels::wanted() {
            // SAFETY: the CPU has AVX-512 F (checked by `wanted`).
            unsafe { avx512::dot_block(m, k, x, w, acc) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { avx2::dot_block(m, k, x, w, acc) };
            return;
        }
    }
    #[cfg(target_arch = "wasm32")]
    {
        simd128::dot_block(m, k, x, w, acc);
        return;
    }
    #[allow(unreachable_code)]
    dot_block_portable(m, k, x, w, acc);
}

/// The wasm SIMD128 [`dot_block`]: tiles of 4 weight rows x 2 input rows in eight f32x4
/// accumulators, as the AVX2 kernel does, so each vector loaded serves two or four products.
/// (The crate is built with `+simd128` for wasm32, see .cargo/config.toml.)
#[cfg(target_arch = "wasm32")]
pub(super) mod simd128 {
    use std::arch::wasm32::*;

    /// The sum of a vector's four lanes (the integer kernels in qmatmul.rs use it too).
    #[inline(always)]
    pub(in crate::backend::cpu) fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v)
            + f32x4_extract_lane::<1>(v)
            + f32x4_extract_lane::<2>(v)
            + f32x4_extract_lane::<3>(v)
    }

    /// `acc + a·b` lane-wise. In the relaxed-SIMD build `f32x4.relaxed_madd`, one `vfmadd` where
    /// the CPU has FMA (every x86-64 since 2013, all 64-bit Arm): half the instructions of
    /// SIMD128's multiply and add, one rounding instead of two.
    #[inline(always)]
    fn madd(a: v128, b: v128, acc: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        return f32x4_relaxed_madd(a, b, acc);
        #[cfg(not(target_feature = "relaxed-simd"))]
        f32x4_add(acc, f32x4_mul(a, b))
    }

    /// Unaligned load of 4 floats at `p`. Safety: `p..p+4` is readable.
    #[inline(always)]
    unsafe fn ld(p: *const f32) -> v128 {
        // SAFETY: the caller's guarantee; v128_load has no alignment requirement.
        unsafe { v128_load(p as *const v128) }
    }

    /// The dot product's tail past the last whole vector, added to `v`'s lanes.
    #[inline(always)]
    fn finish(v: v128, k: usize, k4: usize, a: &[f32], b: &[f32]) -> f32 {
        hsum(v) + (k4..k).map(|q| a[q] * b[q]).sum::<f32>()
    }

    /// Weight rows `j..j+4` against input rows `i..i+2`, full k, in eight named accumulators
    /// (arrays of v128 would live in linear memory). Safety: the rows exist (k long) and
    /// `acc` holds `[i + 2, nb]`; checked by the caller.
    #[inline(always)]
    unsafe fn tile_4x2(k: usize, x: &[f32], i: usize, w: &[f32], j: usize, nb: usize, acc: &mut [f32]) {
        let z = f32x4_splat(0.0);
        let (mut s00, mut s01, mut s10, mut s11, mut s20, mut s21, mut s30, mut s31) = (z, z, z, z, z, z, z, z);
        let k4 = k / 4 * 4;
        let (x0, x1) = (x[i * k..].as_ptr(), x[(i + 1) * k..].as_ptr());
        let (w0, w1, w2, w3) =
            (w[j * k..].as_ptr(), w[(j + 1) * k..].as_ptr(), w[(j + 2) * k..].as_ptr(), w[(j + 3) * k..].as_ptr());
        let mut kk = 0;
        while kk < k4 {
            // SAFETY: kk + 4 <= k and every row is k long (the caller's guarantee).
            unsafe {
                let (a0, a1) = (ld(x0.add(kk)), ld(x1.add(kk)));
                let b = ld(w0.add(kk));
                s00 = madd(b, a0, s00);
                s01 = madd(b, a1, s01);
                let b = ld(w1.add(kk));
                s10 = madd(b, a0, s10);
                s11 = madd(b, a1, s11);
                let b = ld(w2.add(kk));
                s20 = madd(b, a0, s20);
                s21 = madd(b, a1, s21);
                let b = ld(w3.add(kk));
                s30 = madd(b, a0, s30);
                s31 = madd(b, a1, s31);
            }
            kk += 4;
        }
        let row = |r: usize| &x[(i + r) * k..(i + r + 1) * k];
        let wrow = |c: usize| &w[(j + c) * k..(j + c + 1) * k];
        for (c, (a, b)) in [(s00, s01), (s10, s11), (s20, s21), (s30, s31)].into_iter().enumerate() {
            acc[i * nb + j + c] = finish(a, k, k4, wrow(c), row(0));
            acc[(i + 1) * nb + j + c] = finish(b, k, k4, wrow(c), row(1));
        }
    }

    /// One weight row against one input row.
    #[inline(always)]
    fn dot1(k: usize, a: &[f32], b: &[f32]) -> f32 {
        let k4 = k / 4 * 4;
        let mut s = f32x4_splat(0.0);
        let mut kk = 0;
        while kk < k4 {
            // SAFETY: kk + 4 <= k <= both lengths (asserted by the caller's slicing).
            unsafe { s = madd(ld(a.as_ptr().add(kk)), ld(b.as_ptr().add(kk)), s) };
            kk += 4;
        }
        finish(s, k, k4, a, b)
    }

    pub fn dot_block(m: usize, k: usize, x: &[f32], w: &[f32], acc: &mut [f32]) {
        let nb = w.len() / k.max(1);
        assert!(x.len() >= m * k && w.len() >= nb * k && acc.len() >= m * nb);
        let mut j = 0;
        while j + 4 <= nb {
            let mut i = 0;
            while i + 2 <= m {
                // SAFETY: rows i, i+1 < m and j..j+4 <= nb exist (asserted above).
                unsafe { tile_4x2(k, x, i, w, j, nb, acc) };
                i += 2;
            }
            if i < m {
                for c in 0..4 {
                    acc[i * nb + j + c] = dot1(k, &w[(j + c) * k..(j + c + 1) * k], &x[i * k..(i + 1) * k]);
                }
            }
            j += 4;
        }
        while j < nb {
            for i in 0..m {
                acc[i * nb + j] = dot1(k, &w[j * k..(j + 1) * k], &x[i * k..(i + 1) * k]);
            }
            j += 1;
        }
    }
}

/// Plain version of [`dot_block`], written so that LLVM vectorizes it (eight independent
/// partial sums).
pub fn dot_block_portable(m: usize, k: usize, x: &[f32], w: &[f32], acc: &mut [f32]) {
    let nb = w.len() / k.max(1);
    for j in 0..nb {
        let wr = &w[j * k..(j + 1) * k];
        for i in 0..m {
            let xr = &x[i * k..(i + 1) * k];
            let mut lanes = [0.0f32; 8];
            let (wc, xc) = (wr.chunks_exact(8), xr.chunks_exact(8));
            let tail: f32 = wc.remainder().iter().zip(xc.remainder()).map(|(a, b)| a * b).sum();
            for (a, b) in wc.zip(xc) {
                for l in 0..8 {
                    lanes[l] += a[l] * b[l];
                }
            }
            acc[i * nb + j] = lanes.iter().sum::<f32>() + tail;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// A `JR x IR` tile: weight rows `j..j+JR` against input rows `i..i+IR`, full k.
    /// Safety: the caller guarantees rows `i..i+IR` of x and `j..j+JR` of w exist (k long) and
    /// `acc` holds `[m, nb]`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const JR: usize, const IR: usize, const PREFETCH: bool>(
        k: usize,
        x: &[f32],
        i: usize,
        w: &[f32],
        j: usize,
        nb: usize,
        acc: &mut [f32],
    ) {
        debug_assert!((i + IR) * k <= x.len() && (j + JR) * k <= w.len());
        let mut sum = [[_mm256_setzero_ps(); IR]; JR];
        let k8 = k / 8 * 8;
        let xp = x.as_ptr();
        let wp = w.as_ptr();
        let mut kk = 0;
        while kk < k8 {
            let mut xv = [_mm256_setzero_ps(); IR];
            for r in 0..IR {
                // SAFETY: kk + 8 <= k and row i + r < m (caller's guarantee).
                xv[r] = unsafe { _mm256_loadu_ps(xp.add((i + r) * k + kk)) };
            }
            if PREFETCH && kk % 16 == 0 {
                // The next block's weight rows: streaming from DRAM is latency-bound without it.
                for c in 0..JR {
                    let ahead = wp.wrapping_add((j + JR + c) * k + kk);
                    // SAFETY: prefetch never faults, even past the end of the slice.
                    _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                }
            }
            for c in 0..JR {
                // SAFETY: kk + 8 <= k and row j + c < nb (caller's guarantee).
                let wv = unsafe { _mm256_loadu_ps(wp.add((j + c) * k + kk)) };
                for r in 0..IR {
                    sum[c][r] = _mm256_fmadd_ps(wv, xv[r], sum[c][r]);
                }
            }
            kk += 8;
        }
        for c in 0..JR {
            for r in 0..IR {
                let mut s = hsum(sum[c][r]);
                for t in k8..k {
                    s += w[(j + c) * k + t] * x[(i + r) * k + t];
                }
                acc[(i + r) * nb + j + c] = s;
            }
        }
    }

    /// AVX2+FMA [`super::dot_block`]: tiles of 4 weight rows x 2 input rows (8 accumulators),
    /// so each weight vector loaded is used twice from registers, and the 4-row weight block
    /// stays in L1 while all input rows pass over it.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_block(m: usize, k: usize, x: &[f32], w: &[f32], acc: &mut [f32]) {
        let nb = w.len() / k.max(1);
        assert!(x.len() >= m * k && w.len() >= nb * k && acc.len() >= m * nb);
        // SAFETY (every tile call): the loops keep i + IR <= m and j + JR <= nb, and the
        // lengths were asserted above.
        let mut j = 0;
        while j + 4 <= nb {
            let mut i = 0;
            while i + 2 <= m {
                unsafe { tile::<4, 2, true>(k, x, i, w, j, nb, acc) };
                i += 2;
            }
            if i < m {
                unsafe { tile::<4, 1, true>(k, x, i, w, j, nb, acc) };
            }
            j += 4;
        }
        while j < nb {
            for i in 0..m {
                unsafe { tile::<1, 1, false>(k, x, i, w, j, nb, acc) };
            }
            j += 1;
        }
    }
}

/// The AVX-512 [`dot_block`]: tiles of 4 weight rows x 4 input rows in 16 zmm accumulators (of
/// 32 registers), 16 floats a step, the tail of k by masked loads. Per step 8 loads feed 16
/// FMAs of 16 lanes, against the AVX2 tile's 6 loads for 8 FMAs of 8 lanes: one f32 query
/// (10 rows) ran its products at 1.7x the AVX2 kernel's speed here (`wembed bench --dtype f32`,
/// batch 1).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// A `JR x IR` tile: weight rows `j..j+JR` against input rows `i..i+IR`, full k.
    /// Safety: rows `i..i+IR` of x and `j..j+JR` of w exist (k long), `acc` holds `[m, nb]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const JR: usize, const IR: usize>(
        k: usize,
        x: &[f32],
        i: usize,
        w: &[f32],
        j: usize,
        nb: usize,
        acc: &mut [f32],
    ) {
        debug_assert!((i + IR) * k <= x.len() && (j + JR) * k <= w.len());
        let mut sum = [[_mm512_setzero_ps(); IR]; JR];
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut kk = 0;
        while kk < k {
            // All 16 lanes, or the tail's (masked lanes read nothing and load 0).
            let mask: __mmask16 = if k - kk >= 16 { 0xffff } else { (1u16 << (k - kk)) - 1 };
            let mut xv = [_mm512_setzero_ps(); IR];
            for (r, v) in xv.iter_mut().enumerate() {
                // SAFETY: the unmasked lanes lie within row i + r (the caller's guarantee).
                *v = unsafe { _mm512_maskz_loadu_ps(mask, xp.add((i + r) * k + kk)) };
            }
            for c in 0..JR {
                // The next block's weight rows, a line per row per step: streaming them from
                // DRAM is latency-bound without it (prefetch never faults).
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add((j + JR + c) * k + kk) as *const i8);
                // SAFETY: as above, within row j + c.
                let wv = unsafe { _mm512_maskz_loadu_ps(mask, wp.add((j + c) * k + kk)) };
                for r in 0..IR {
                    sum[c][r] = _mm512_fmadd_ps(wv, xv[r], sum[c][r]);
                }
            }
            kk += 16;
        }
        for c in 0..JR {
            for r in 0..IR {
                acc[(i + r) * nb + j + c] = _mm512_reduce_add_ps(sum[c][r]);
            }
        }
    }

    /// [`super::dot_block`] in AVX-512. Safety: the CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_block(m: usize, k: usize, x: &[f32], w: &[f32], acc: &mut [f32]) {
        let nb = w.len() / k.max(1);
        assert!(x.len() >= m * k && w.len() >= nb * k && acc.len() >= m * nb);
        // SAFETY (every tile call): the loops keep i + IR <= m and j + JR <= nb, and the
        // lengths were asserted above.
        let mut j = 0;
        while j + 4 <= nb {
            let mut i = 0;
            while i + 4 <= m {
                unsafe { tile::<4, 4>(k, x, i, w, j, nb, acc) };
                i += 4;
            }
            match m - i {
                3 => unsafe { tile::<4, 3>(k, x, i, w, j, nb, acc) },
                2 => unsafe { tile::<4, 2>(k, x, i, w, j, nb, acc) },
                1 => unsafe { tile::<4, 1>(k, x, i, w, j, nb, acc) },
                _ => {}
            }
            j += 4;
        }
        while j < nb {
            for i in 0..m {
                unsafe { tile::<1, 1>(k, x, i, w, j, nb, acc) };
            }
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantFormat;

    fn naive(m: usize, n: usize, k: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = b[j] as f64 + (0..k).map(|t| x[i * k + t] as f64 * w[j * k + t] as f64).sum::<f64>();
            }
        }
        out
    }

    fn data(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| (((i * 7 + seed * 13) % 17) as f32 - 8.0) * 0.05).collect()
    }

    #[test]
    fn quantized_weights_take_the_integer_kernels_in_both_regimes() {
        // One query (few rows) and a batch (past SKINNY_MAX_ROWS) alike; the kernels' accuracy
        // is tested in qmatmul.
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
            for (m, n, k) in [(1, 5, 31), (7, 70, 33), (100, 130, 96)] {
                let (x, w, b) = (data(m * k, 4), data(n * k, 5), data(n, 6));
                let q = QuantMatrix::quantize(format, n, k, &w);
                let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
                linear(m, n, k, &x, WeightRows::Quant(&q), &b, &mut got);
                super::super::qmatmul::linear(m, n, k, &x, &q, &b, &mut want);
                assert_eq!(got, want, "{format:?} ({m},{n},{k})");
            }
        }
    }

    #[test]
    fn k_quants_multiply_as_their_dequantized_rows() {
        // The oracle: f64 products over the reference dequantization (crate::quant), for one
        // row (the skinny kernel), many rows (gemm / the row-blocked kernel), odd row counts.
        for format in [QuantFormat::Q4K, QuantFormat::Q5K, QuantFormat::Q6K] {
            for (m, n, k) in [(1, 3, 256), (5, 67, 512), (70, 65, 256)] {
                let (x, w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
                let q = QuantMatrix::quantize(format, n, k, &w);
                let mut deq = vec![0.0; n * k];
                q.dequantize_rows(0, n, &mut deq);
                let want = naive(m, n, k, &x, &deq, &b);
                let mut got = vec![0.0; m * n];
                linear(m, n, k, &x, WeightRows::Quant(&q), &b, &mut got);
                let worst = got.iter().zip(&want).map(|(g, e)| (*g as f64 - e).abs()).fold(0.0, f64::max);
                assert!(worst < 1e-4, "{format:?} ({m},{n},{k}): off by {worst}");
            }
        }
    }

    #[test]
    fn the_fused_activation_equals_a_separate_pass_in_every_path() {
        // f32 one query (tiled), f32 batch (gemm natively), blocks as stored (the integer
        // kernels), interleaved blocks (what the backend keeps), a K-quant (tiled, dequantized);
        // tiles of 64 columns and a partial one.
        let (n, k) = (130, 256);
        let (w, b) = (data(n * k, 2), data(n, 3));
        let q8 = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &w);
        let k4 = QuantMatrix::quantize(QuantFormat::Q4K, n, k, &w);
        let packed = PackedMatrix::for_best_kernel(&q8);
        for m in [3, 70] {
            let x = data(m * k, 1);
            let mut paths =
                vec![("f32", WeightRows::F32(&w)), ("q8", WeightRows::Quant(&q8)), ("q4k", WeightRows::Quant(&k4))];
            if let Some(p) = &packed {
                paths.push(("packed", WeightRows::Packed(p)));
            }
            for (name, rows) in paths {
                for act in [Activation::GeluErf, Activation::Tanh] {
                    let (mut fused, mut separate) = (vec![f32::NAN; m * n], vec![f32::NAN; m * n]);
                    linear_act(m, n, k, &x, rows, &b, Some(act), &mut fused);
                    linear(m, n, k, &x, rows, &b, &mut separate);
                    activate(act, &mut separate);
                    assert_eq!(fused, separate, "{name} {act:?} m={m}");
                }
            }
        }
    }

    #[test]
    fn both_regimes_match_naive_on_odd_shapes() {
        for (m, n, k) in
            [(1, 1, 1), (1, 5, 7), (2, 3, 9), (3, 67, 13), (17, 33, 65), (33, 70, 130), (64, 96, 130), (5, 130, 384)]
        {
            let (x, w, b) = (data(m * k, 1), data(n * k, 2), data(n, 3));
            let want = naive(m, n, k, &x, &w, &b);
            let mut got = vec![0.0; m * n];
            linear(m, n, k, &x, WeightRows::F32(&w), &b, &mut got);
            for (idx, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!((*g as f64 - e).abs() < 1e-4, "({m},{n},{k}) at {idx}: {g} vs {e}");
            }
            // Every kernel of dot_block this CPU runs (the widest ran above), the portable one too.
            #[allow(unused_mut)]
            let mut kernels: Vec<(&str, fn(usize, usize, &[f32], &[f32], &mut [f32]))> =
                vec![("portable", dot_block_portable)];
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    kernels.push(("avx2", |m, k, x, w, acc| unsafe { avx2::dot_block(m, k, x, w, acc) }));
                }
                if panels::wanted() {
                    // SAFETY: the CPU has AVX-512 F (checked just above).
                    kernels.push(("avx512", |m, k, x, w, acc| unsafe { avx512::dot_block(m, k, x, w, acc) }));
                }
            }
            for (name, kernel) in kernels {
                let mut acc = vec![f32::NAN; m * n];
                kernel(m, k, &x, &w, &mut acc);
                for i in 0..m {
                    for j in 0..n {
                        let e = want[i * n + j] - b[j] as f64;
                        assert!((acc[i * n + j] as f64 - e).abs() < 1e-4, "{name} ({m},{n},{k})");
                    }
                }
            }
        }
    }
}
