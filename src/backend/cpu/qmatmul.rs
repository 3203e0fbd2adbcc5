//! Integer matrix products for block-quantized weights (q8_0, q4_1).
//!
//! `y[m, n] = x[m, k] · w[n, k]ᵀ` with `w` in ggml blocks of 32. Each activation row is
//! quantized on the fly to i16 with one f32 scale ([`quantize_act_row`], which says why 16 bits
//! and not ggml's int8 blocks: those cost 0.0006 of worst cosine on MiniLM and fail the 0.999
//! bar). Each (weight block, activation block) pair is multiplied and summed in integer
//! arithmetic to an i32, scaled by the weight block's f32 scale and accumulated in f32; the
//! row's activation scale is applied once at the end. q4_1 weights take the same path with
//! their levels 0..15 as the integer side and the minimum as `m · Σa`, from the activation
//! block's precomputed sum.
//!
//! Weights are read in their stored precision: q8_0 blocks in place (34-byte strides), q4_1
//! nibbles unpacked per tile. A task takes one tile of weight rows and every input row passes
//! over it while it is in cache, so the same code serves one short query (few rows: the tiles
//! spread the weight stream over all cores, each weight row read once) and a batch (input rows
//! in chunks that stay in L2 beside the tile).
//!
//! Only the linear layers' products are integer. Attention's `q·kᵀ` and `p·v` stay f32: both
//! operands are activations (both would need quantizing, for ~2% of the FLOPs at these
//! lengths), and layer norm, softmax and GELU are not products and need f32's range.
//!
//! Kernels, detected at run time ([`Kernel::available`]; [`Kernel::best`] says which one runs
//! and why): AVX-512 VNNI (`vpdpwssd` on zmm, one block per register), AVX-VNNI (`vpdpwssd`
//! on ymm), AVX2 (`vpmaddwd`), wasm SIMD128 (`i32x4.dot_i16x8_s`, weights widened with
//! `i16x8.extend_*_i8x16`), and a portable one that is also their reference.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::quant::{BLOCK, Blocks, QuantMatrix, f16_to_f32_finite, quantize_act_row};

/// Activation rows `[rows, k]` as i16, `per = k.div_ceil(32)` blocks per row.
#[derive(Debug, Clone)]
pub struct ActRows {
    pub rows: usize,
    pub per: usize,
    /// `[rows, per · 32]`, zero past each row's end.
    pub qs: Vec<i16>,
    /// `[rows]`: `x ≈ scale · q`.
    pub scale: Vec<f32>,
    /// `[rows, per]`: `Σq` of each block.
    pub isum: Vec<i32>,
    /// For the relaxed-SIMD kernel (empty otherwise): each level as two 7-bit digits,
    /// `q + 8192 = 128 · hi + lo` with `hi, lo` in 0..=127 (|q| <= [`ACT_MAX`] = 8191), the
    /// operand `i32x4.relaxed_dot_i8x16_i7x16_add` wants in 7 bits. `[rows, per, 2, 32]`: a
    /// block's 32 high digits, then its 32 low ones. Then
    /// `Σ w·q = 128 · Σ w·hi + Σ w·lo - 8192 · Σ w`, exact in i32.
    pub digits: Vec<i8>,
}

impl ActRows {
    /// `digits`: also fill [`ActRows::digits`] (the relaxed kernel reads them).
    pub fn quantize(m: usize, k: usize, x: &[f32], digits: bool) -> ActRows {
        let per = k.div_ceil(BLOCK);
        let mut a = ActRows {
            rows: m,
            per,
            qs: vec![0; m * per * BLOCK],
            scale: vec![0.0; m],
            isum: vec![0; m * per],
            digits: Vec::new(),
        };
        if per == 0 {
            return a;
        }
        let rows = a.qs.par_chunks_mut(per * BLOCK).zip(a.isum.par_chunks_mut(per)).zip(a.scale.par_iter_mut());
        rows.enumerate()
            .with_min_len(16)
            .for_each(|(i, ((qs, sums), d))| *d = quantize_act_row(&x[i * k..(i + 1) * k], qs, sums));
        if digits {
            a.digits = vec![0; m * per * 2 * BLOCK];
            for (q, d) in a.qs.chunks_exact(BLOCK).zip(a.digits.chunks_exact_mut(2 * BLOCK)) {
                let (hi, lo) = d.split_at_mut(BLOCK);
                for ((&q, h), l) in q.iter().zip(hi).zip(lo) {
                    let u = (q as i32 + 8192) as u16;
                    (*h, *l) = ((u >> 7) as i8, (u & 127) as i8);
                }
            }
        }
        a
    }

    /// The 32 levels of block `b` of row `i`.
    #[inline(always)]
    pub fn block(&self, i: usize, b: usize) -> &[i16] {
        &self.qs[(i * self.per + b) * BLOCK..][..BLOCK]
    }

    /// The high and the low digits of block `b` of row `i` (see [`ActRows::digits`]).
    #[inline(always)]
    pub fn digit_block(&self, i: usize, b: usize) -> (&[i8], &[i8]) {
        self.digits[(i * self.per + b) * 2 * BLOCK..][..2 * BLOCK].split_at(BLOCK)
    }
}

/// Rows `j0..j1` of a quantized matrix as the kernels read them: the int8 values of block
/// `(j, b)` at `qs[(j · per + b) · stride + offset..][..32]`, its f32 scale at `d[j · per + b]`.
#[derive(Debug)]
pub struct Panel<'a> {
    pub rows: usize,
    pub per: usize,
    /// q8_0: the blocks' bytes in place (stride 34, values after the 2-byte scale); q4_1: the
    /// unpacked levels (stride 32).
    qs: Cow<'a, [i8]>,
    stride: usize,
    offset: usize,
    pub d: Vec<f32>,
    /// q4_1's minimums `[rows, per]`.
    pub min: Option<Vec<f32>>,
    /// For the relaxed-SIMD kernel (empty otherwise): `-8192 · Σ w` over each of a block's four
    /// relaxed-dot lanes (lane `l`: elements `4l..4l+4` and `16+4l..16+4l+4`), `[rows, per]`.
    /// Per lane, so that each lane sums to its own share of `Σ w·q`: one correction for the
    /// whole block left lanes of ±8192·Σ|w| that cancel only in the final f32 sum (measured:
    /// vectors off by 1e-3 of their q8 error; the outlier test catches it).
    wsum: Vec<[i32; 4]>,
}

impl<'a> Panel<'a> {
    /// `sums`: also fill [`Panel::wsum`] (the relaxed kernel reads it).
    pub fn new(w: &'a QuantMatrix, j0: usize, j1: usize, sums: bool) -> Panel<'a> {
        let mut p = Panel::values(w, j0, j1);
        if sums {
            p.wsum = (0..p.rows * p.per)
                .map(|jb| {
                    let q = p.block(jb / p.per, jb % p.per);
                    std::array::from_fn(|l| {
                        -8192 * (0..4).map(|t| q[4 * l + t] as i32 + q[16 + 4 * l + t] as i32).sum::<i32>()
                    })
                })
                .collect();
        }
        p
    }

    fn values(w: &'a QuantMatrix, j0: usize, j1: usize) -> Panel<'a> {
        let per = w.per_row();
        let rows = j1 - j0;
        match &w.blocks {
            Blocks::Q8_0(b) => {
                let b = &b[j0 * per..j1 * per];
                let d = b.iter().map(|b| f16_to_f32_finite(b.d)).collect();
                let qs = Cow::Borrowed(bytemuck::cast_slice(b));
                Panel { rows, per, qs, stride: std::mem::size_of_val(&b[0]), offset: 2, d, min: None, wsum: Vec::new() }
            }
            Blocks::Q4_1(b) => {
                let b = &b[j0 * per..j1 * per];
                let qs = Cow::Owned(b.iter().flat_map(|b| b.levels()).collect());
                let d = b.iter().map(|b| f16_to_f32_finite(b.d)).collect();
                let min = Some(b.iter().map(|b| f16_to_f32_finite(b.m)).collect());
                Panel { rows, per, qs, stride: BLOCK, offset: 0, d, min, wsum: Vec::new() }
            }
            Blocks::Q4K(_) | Blocks::Q5K(_) | Blocks::Q6K(_) => {
                unreachable!("K-quants go to matmul::tiled's dequantizing path, never to these kernels")
            }
        }
    }

    /// The 32 values of block `b` of row `j`.
    #[inline(always)]
    pub fn block(&self, j: usize, b: usize) -> &[i8] {
        &self.qs[(j * self.per + b) * self.stride + self.offset..][..BLOCK]
    }

    /// `-8192 · Σ w` per relaxed-dot lane of block `b` of row `j` (a panel made with `sums`).
    #[inline(always)]
    pub fn wsum(&self, j: usize, b: usize) -> &[i32; 4] {
        &self.wsum[j * self.per + b]
    }

    /// Pointer to the values of block `b` of row `j`, for the SIMD kernels. Safety: `j < rows`
    /// and `b < per` (then 32 bytes are readable there; checked once by `check`).
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn ptr(&self, j: usize, b: usize) -> *const i8 {
        // SAFETY: the caller's guarantee.
        unsafe { self.qs.as_ptr().add((j * self.per + b) * self.stride + self.offset) }
    }
}

/// An integer dot-product kernel. Each computes `acc[i, j] = Σ_b d_jb · Σ(w·a)` over the blocks
/// of weight row `j` of a [`Panel`] and activation row `i` (the activation scale comes later);
/// they differ only in how `Σ(w·a)` over a block of 32 is formed and in the order of the f32
/// additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust (LLVM vectorizes it to what the baseline target has).
    Portable,
    /// `_mm256_madd_epi16` on the weights sign-extended to i16.
    Avx2,
    /// `_mm256_dpwssd_avx_epi32`, two per block.
    AvxVnni,
    /// `_mm512_dpwssd_epi32`, one per block (a block of i16 is one zmm).
    Avx512Vnni,
    /// wasm SIMD128: weights widened to i16, then `i32x4_dot_i16x8`.
    Simd128,
    /// wasm relaxed SIMD: `i32x4_relaxed_dot_i8x16_i7x16_add` on the weights and the
    /// activations' 7-bit digits (only in the `+relaxed-simd` build).
    Relaxed,
}

impl Kernel {
    /// Every kernel this CPU can run.
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut ks = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                ks.push(Kernel::Avx2);
                if has!("avxvnni") {
                    ks.push(Kernel::AvxVnni);
                }
                if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                    ks.push(Kernel::Avx512Vnni);
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        ks.push(Kernel::Simd128);
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        ks.push(Kernel::Relaxed);
        ks
    }

    /// Whether the kernel reads [`ActRows::digits`] and [`Panel::wsum`].
    fn digits(self) -> bool {
        self == Kernel::Relaxed
    }

    /// The kernel [`linear`] uses (detected once): AVX2 where the CPU has it; in wasm, relaxed
    /// SIMD in the build that has it, else SIMD128.
    /// The VNNI kernels are exact and tested but measured slower on this project's machine (a
    /// 2-core Xeon with AVX-512 VNNI and AVX-VNNI; all-MiniLM-L6-v2 q8, `wembed bench`, 512
    /// STS-B sentences, sentences/s at batch 1 / batch 32): AVX2 277 / 442, AVX-512 VNNI 221 /
    /// 452; the micro-benchmark of the four model shapes agreed (10 rows: 68 vs 70 GOP/s, 333
    /// rows: 84 vs 75, AVX-VNNI 62 and 68). With i16 activations `vpdpwssd` does the 16
    /// products per 256 bits that `vpmaddwd` does, saving only the add, and zmm code lowers the
    /// core's clock for the f32 work around it.
    pub fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let ks = Kernel::available();
            [Kernel::Avx2, Kernel::Relaxed, Kernel::Simd128]
                .into_iter()
                .find(|k| ks.contains(k))
                .unwrap_or(Kernel::Portable)
        })
    }

    /// `acc[i, j]` (`acc` is `[a.rows, p.rows]`) for activation rows `i0..i1` and every row of
    /// `p`.
    fn dot_panel(self, p: &Panel, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        assert!(a.per == p.per && i0 <= i1 && i1 <= a.rows && acc.len() >= a.rows * p.rows);
        assert!(p.rows == 0 || p.per == 0 || p.qs.len() >= ((p.rows * p.per - 1) * p.stride + p.offset + BLOCK));
        assert!(p.d.len() >= p.rows * p.per && a.qs.len() >= a.rows * a.per * BLOCK);
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY (all three): `available` saw the features, and the shapes were asserted.
            Kernel::Avx2 => unsafe { avx2::dot_panel(p, a, i0, i1, acc) },
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => unsafe { avxvnni::dot_panel(p, a, i0, i1, acc) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => unsafe { avx512vnni::dot_panel(p, a, i0, i1, acc) },
            #[cfg(target_arch = "wasm32")]
            Kernel::Simd128 => dot_panel_2x2::<simd128::Simd128>(p, a, i0, i1, acc),
            // Natively, Simd128 runs its loop on the scalar twin of its lanes (for the tests).
            #[cfg(not(target_arch = "wasm32"))]
            Kernel::Simd128 => dot_panel_2x2::<ScalarLanes>(p, a, i0, i1, acc),
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            Kernel::Relaxed => dot_panel_2x2::<relaxed::Relaxed>(p, a, i0, i1, acc),
            // Elsewhere Relaxed runs its loop on the scalar twin of its lanes (for the tests).
            #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
            Kernel::Relaxed => dot_panel_2x2::<ScalarRelaxed>(p, a, i0, i1, acc),
            _ => portable_dot_panel(p, a, i0, i1, acc),
        }
    }
}

/// Weight rows per task: large enough to amortize the task, small enough to split a 384-row
/// matrix between cores (one query must use them all) and keep a 1536-wide tile in L2.
const ROWS_PER_TILE: usize = 64;
/// Input rows per pass over a tile: their i16 rows (192 KB at k = 1536) stay in L2 beside it.
const ROWS_PER_CHUNK: usize = 64;

/// `out[m, n] = bias + x[m, k] · w[n, k]ᵀ` with the integer kernel [`Kernel::best`].
pub fn linear(m: usize, n: usize, k: usize, x: &[f32], w: &QuantMatrix, bias: &[f32], out: &mut [f32]) {
    linear_with(Kernel::best(), m, n, k, x, w, bias, out)
}

/// [`linear`] with a given kernel (tests call each one the CPU has).
#[allow(clippy::too_many_arguments)]
pub fn linear_with(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &QuantMatrix,
    bias: &[f32],
    out: &mut [f32],
) {
    assert!(x.len() == m * k && w.rows == n && w.cols == k && bias.len() == n && out.len() == m * n);
    let acts = ActRows::quantize(m, k, x, kernel.digits());
    let per = acts.per;
    let tiles: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(ROWS_PER_TILE))
        .into_par_iter()
        .map(|t| {
            let j0 = t * ROWS_PER_TILE;
            let j1 = (j0 + ROWS_PER_TILE).min(n);
            let panel = Panel::new(w, j0, j1, kernel.digits());
            let nb = j1 - j0;
            let mut acc = vec![0.0f32; m * nb];
            for i0 in (0..m).step_by(ROWS_PER_CHUNK) {
                kernel.dot_panel(&panel, &acts, i0, (i0 + ROWS_PER_CHUNK).min(m), &mut acc);
            }
            for i in 0..m {
                let row = &mut acc[i * nb..(i + 1) * nb];
                if let Some(mins) = &panel.min {
                    // q4_1: `Σ (d·l + m)·a = d·Σ l·a + m·Σa`, the second term per block from the
                    // activation block's sum: per/32 of the product's work.
                    let sums = &acts.isum[i * per..(i + 1) * per];
                    for (j, v) in row.iter_mut().enumerate() {
                        let mins = &mins[j * per..(j + 1) * per];
                        *v += mins.iter().zip(sums).map(|(m, &s)| m * s as f32).sum::<f32>();
                    }
                }
                let scale = acts.scale[i];
                for v in row.iter_mut() {
                    *v *= scale;
                }
            }
            (j0, acc)
        })
        .collect();
    for (j0, acc) in tiles {
        let width = acc.len() / m.max(1);
        for i in 0..m {
            let dst = &mut out[i * n + j0..i * n + j0 + width];
            for ((d, a), b) in dst.iter_mut().zip(&acc[i * width..(i + 1) * width]).zip(&bias[j0..j0 + width]) {
                *d = a + b;
            }
        }
    }
}

/// The reference kernel: the integer sum of each block pair times the weight block's scale,
/// exactly what the SIMD kernels compute (they differ only in the order of the f32 additions).
pub fn portable_dot_panel(p: &Panel, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
    let per = p.per;
    for j in 0..p.rows {
        for i in i0..i1 {
            let mut s = 0.0f32;
            for b in 0..per {
                s += p.d[j * per + b] * block_dot(p.block(j, b), &a.qs[(i * per + b) * BLOCK..][..BLOCK]) as f32;
            }
            acc[i * p.rows + j] = s;
        }
    }
}

/// `Σ w·a` over one block in i32 (no overflow: 32 · 128 · 8191 < 2^31).
#[inline(always)]
pub fn block_dot(w: &[i8], a: &[i16]) -> i32 {
    w.iter().zip(a).map(|(&w, &a)| w as i32 * a as i32).sum()
}

/// The loops over a panel shared by the x86 kernels: `$tile::<JR, IR>` computes weight rows
/// `j..j+JR` against input rows `i..i+IR`; whole tiles, then the edges.
#[cfg(target_arch = "x86_64")]
macro_rules! panel_loops {
    ($tile:ident, $jr:literal, $ir:literal, $p:expr, $a:expr, $i0:expr, $i1:expr, $acc:expr) => {{
        let (p, a, i0, i1, acc) = ($p, $a, $i0, $i1, $acc);
        let nb = p.rows;
        // SAFETY (every tile call): the loops keep j + JR <= nb and i + IR <= i1 <= a.rows, and
        // the caller asserted the lengths of every buffer for those rows.
        let mut j = 0;
        while j + $jr <= nb {
            let mut i = i0;
            while i + $ir <= i1 {
                unsafe { $tile::<$jr, $ir>(p, a, j, i, acc) };
                i += $ir;
            }
            while i < i1 {
                unsafe { $tile::<$jr, 1>(p, a, j, i, acc) };
                i += 1;
            }
            j += $jr;
        }
        while j < nb {
            for i in i0..i1 {
                unsafe { $tile::<1, 1>(p, a, j, i, acc) };
            }
            j += 1;
        }
    }};
}

/// The 256-bit x86 kernels: one body, the block product `$dot` differing. A block is a pair of
/// i16x16 vectors each side (weights sign-extended once per tile row, shared by the input
/// rows); its i32x8 partial sums are converted and scaled into f32x8 accumulators, summed
/// across lanes at the end. Tiles of 4 weight rows x 2 input rows (eight accumulators: AVX2
/// has 16 registers).
#[cfg(target_arch = "x86_64")]
macro_rules! ymm_kernel {
    ($name:ident, $features:literal, $dot:ident) => {
        mod $name {
            use super::x86::*;
            use super::{ActRows, BLOCK, Panel};
            use std::arch::x86_64::*;

            #[target_feature(enable = $features)]
            unsafe fn tile<const JR: usize, const IR: usize>(
                p: &Panel,
                a: &ActRows,
                j: usize,
                i: usize,
                acc: &mut [f32],
            ) {
                let per = p.per;
                let (aq, wd) = (a.qs.as_ptr(), p.d.as_ptr());
                let mut sum = [[_mm256_setzero_ps(); IR]; JR];
                for b in 0..per {
                    let mut av = [[_mm256_setzero_si256(); 2]; IR];
                    for r in 0..IR {
                        // SAFETY: row i + r < a.rows, block b < per (the caller's guarantee).
                        let at = unsafe { aq.add(((i + r) * per + b) * BLOCK) } as *const __m256i;
                        av[r] = unsafe { [_mm256_loadu_si256(at), _mm256_loadu_si256(at.add(1))] };
                    }
                    for c in 0..JR {
                        // SAFETY: row j + c < p.rows, block b < per.
                        let (wv, d) = unsafe { (widen(p.ptr(j + c, b)), _mm256_set1_ps(*wd.add((j + c) * per + b))) };
                        for r in 0..IR {
                            let dot = $dot(&wv, &av[r]);
                            sum[c][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), d, sum[c][r]);
                        }
                    }
                }
                for c in 0..JR {
                    for r in 0..IR {
                        acc[(i + r) * p.rows + j + c] = hsum(sum[c][r]);
                    }
                }
            }

            #[target_feature(enable = $features)]
            pub unsafe fn dot_panel(p: &Panel, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
                panel_loops!(tile, 4, 2, p, a, i0, i1, acc)
            }
        }
    };
}

/// The pieces the 256-bit x86 kernels are built from.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// 32 int8 weights as two i16x16. Safety: 32 bytes at `p` are readable.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn widen(p: *const i8) -> [__m256i; 2] {
        // SAFETY: the caller's guarantee.
        let (lo, hi) = unsafe { (_mm_loadu_si128(p as *const __m128i), _mm_loadu_si128(p.add(16) as *const __m128i)) };
        [_mm256_cvtepi8_epi16(lo), _mm256_cvtepi8_epi16(hi)]
    }

    /// `vpmaddwd`: i16 pairs multiplied and summed to i32 (exact: |w| <= 128), twice, added.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub fn madd_dot(w: &[__m256i; 2], a: &[__m256i; 2]) -> __m256i {
        _mm256_add_epi32(_mm256_madd_epi16(w[0], a[0]), _mm256_madd_epi16(w[1], a[1]))
    }

    /// `vpdpwssd` (AVX-VNNI): the same pairs, accumulated in the instruction.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    #[inline]
    pub fn dpwssd_dot(w: &[__m256i; 2], a: &[__m256i; 2]) -> __m256i {
        _mm256_dpwssd_avx_epi32(_mm256_dpwssd_avx_epi32(_mm256_setzero_si256(), w[0], a[0]), w[1], a[1])
    }
}

#[cfg(target_arch = "x86_64")]
ymm_kernel!(avx2, "avx2,fma", madd_dot);
#[cfg(target_arch = "x86_64")]
ymm_kernel!(avxvnni, "avx2,fma,avxvnni", dpwssd_dot);

/// AVX-512 VNNI: a block of 32 i16 is one zmm, so one `vpdpwssd` per block pair; weights
/// sign-extended with `vpmovsxbw`. Tiles of 4 weight rows x 4 input rows (16 accumulators of
/// the 32 registers).
#[cfg(target_arch = "x86_64")]
mod avx512vnni {
    use super::{ActRows, BLOCK, Panel};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const JR: usize, const IR: usize>(p: &Panel, a: &ActRows, j: usize, i: usize, acc: &mut [f32]) {
        let per = p.per;
        let (aq, wd) = (a.qs.as_ptr(), p.d.as_ptr());
        let mut sum = [[_mm512_setzero_ps(); IR]; JR];
        for b in 0..per {
            let mut av = [_mm512_setzero_si512(); IR];
            for (r, v) in av.iter_mut().enumerate() {
                // SAFETY: row i + r < a.rows, block b < per (the caller's guarantee).
                *v = unsafe { _mm512_loadu_si512(aq.add(((i + r) * per + b) * BLOCK) as *const _) };
            }
            for (c, sums) in sum.iter_mut().enumerate() {
                // SAFETY: row j + c < p.rows, block b < per.
                let (wv, d) = unsafe {
                    let w = _mm256_loadu_si256(p.ptr(j + c, b) as *const __m256i);
                    (_mm512_cvtepi8_epi16(w), _mm512_set1_ps(*wd.add((j + c) * per + b)))
                };
                for (s, &a) in sums.iter_mut().zip(&av) {
                    let dot = _mm512_dpwssd_epi32(_mm512_setzero_si512(), wv, a);
                    *s = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), d, *s);
                }
            }
        }
        for c in 0..JR {
            for r in 0..IR {
                acc[(i + r) * p.rows + j + c] = _mm512_reduce_add_ps(sum[c][r]);
            }
        }
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn dot_panel(p: &Panel, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        panel_loops!(tile, 4, 4, p, a, i0, i1, acc)
    }
}

/// The wasm kernels, written once over the lane operations of [`Lanes`]: tiles of 2 weight
/// rows x 2 input rows in four named accumulators (arrays of v128 would live in linear
/// memory). Each weight block is loaded once per tile row (`L::weights`) and shared by the
/// tile's two input rows. Two instances:
/// - [`Simd128`](simd128::Simd128): a weight block is two i8x16 widened to four i16x8, then
///   four `i32x4_dot_i16x8` per pair;
/// - [`Relaxed`](relaxed::Relaxed) (the second wasm build, `+relaxed-simd`): the weights stay
///   i8x16 and meet the activations' two 7-bit digits in four
///   `i32x4_relaxed_dot_i8x16_i7x16_add` (one `vpdpbusd` each where the CPU has AVX-VNNI,
///   `sdot` on Arm), see [`ActRows::digits`].
///
/// [`ScalarLanes`] and [`ScalarRelaxed`] are their twins on plain arrays, so the tests run these
/// very loops natively; only the lane operations differ in wasm. All of them form the same
/// integer sum per block.
pub fn dot_panel_2x2<L: Lanes>(p: &Panel, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
    let (per, nb) = (p.per, p.rows);
    let one = |j: usize, i: usize, acc: &mut [f32]| {
        let mut s = L::zero();
        for b in 0..per {
            s = L::fold(s, L::dot(&L::weights(p, j, b), &L::acts(a, i, b)), p.d[j * per + b]);
        }
        acc[i * nb + j] = L::hsum(s);
    };
    let mut j = 0;
    while j + 2 <= nb {
        let mut i = i0;
        while i + 2 <= i1 {
            let (mut s00, mut s01, mut s10, mut s11) = (L::zero(), L::zero(), L::zero(), L::zero());
            for b in 0..per {
                let (w0, w1) = (L::weights(p, j, b), L::weights(p, j + 1, b));
                let (a0, a1) = (L::acts(a, i, b), L::acts(a, i + 1, b));
                let (d0, d1) = (p.d[j * per + b], p.d[(j + 1) * per + b]);
                s00 = L::fold(s00, L::dot(&w0, &a0), d0);
                s01 = L::fold(s01, L::dot(&w0, &a1), d0);
                s10 = L::fold(s10, L::dot(&w1, &a0), d1);
                s11 = L::fold(s11, L::dot(&w1, &a1), d1);
            }
            acc[i * nb + j] = L::hsum(s00);
            acc[(i + 1) * nb + j] = L::hsum(s01);
            acc[i * nb + j + 1] = L::hsum(s10);
            acc[(i + 1) * nb + j + 1] = L::hsum(s11);
            i += 2;
        }
        if i < i1 {
            one(j, i, acc);
            one(j + 1, i, acc);
        }
        j += 2;
    }
    if j < nb {
        for i in i0..i1 {
            one(j, i, acc);
        }
    }
}

/// The lane operations of [`dot_panel_2x2`]: `W` is one weight block as the kernel holds it,
/// `A` one activation block, `I` integer lanes whose sum is the block's dot, `F` four f32.
pub trait Lanes {
    type W;
    type A;
    type I: Copy;
    type F: Copy;
    /// Block `b` of weight row `j`.
    fn weights(p: &Panel, j: usize, b: usize) -> Self::W;
    /// Block `b` of activation row `i`.
    fn acts(a: &ActRows, i: usize, b: usize) -> Self::A;
    /// Integer lanes summing to `Σ w·q` over the block.
    fn dot(w: &Self::W, a: &Self::A) -> Self::I;
    /// `sum + f32(dot) · scale`, lane-wise.
    fn fold(sum: Self::F, dot: Self::I, scale: f32) -> Self::F;
    fn zero() -> Self::F;
    fn hsum(v: Self::F) -> f32;
}

/// The f32 half of the scalar twins' [`Lanes`]: four plain lanes, `sum + f32(dot) · scale`,
/// and their sum.
macro_rules! scalar_f32_lanes {
    () => {
        fn fold(sum: [f32; 4], dot: [i32; 4], scale: f32) -> [f32; 4] {
            std::array::from_fn(|l| sum[l] + dot[l] as f32 * scale)
        }
        fn zero() -> [f32; 4] {
            [0.0; 4]
        }
        fn hsum(v: [f32; 4]) -> f32 {
            v[0] + v[1] + v[2] + v[3]
        }
    };
}

/// [`Simd128`](simd128::Simd128)'s lanes on plain arrays, lane for lane what SIMD128 does.
pub struct ScalarLanes;

impl Lanes for ScalarLanes {
    type W = [i32; 32];
    type A = [i32; 32];
    type I = [i32; 4];
    type F = [f32; 4];
    fn weights(p: &Panel, j: usize, b: usize) -> [i32; 32] {
        let q = p.block(j, b);
        std::array::from_fn(|t| q[t] as i32)
    }
    fn acts(a: &ActRows, i: usize, b: usize) -> [i32; 32] {
        let q = a.block(i, b);
        std::array::from_fn(|t| q[t] as i32)
    }
    fn dot(w: &[i32; 32], a: &[i32; 32]) -> [i32; 4] {
        // Four i32x4_dot_i16x8 over the block's quarters, added: lane l of quarter v holds
        // elements 8v + 2l and 8v + 2l + 1.
        let mut out = [0i32; 4];
        for v in 0..4 {
            for (l, o) in out.iter_mut().enumerate() {
                let t = v * 8 + 2 * l;
                *o += w[t] * a[t] + w[t + 1] * a[t + 1];
            }
        }
        out
    }
    scalar_f32_lanes!();
}

/// [`Relaxed`](relaxed::Relaxed)'s lanes on plain arrays: lane l of a relaxed dot of two
/// halves of 16 holds elements 4l..4l+4 of each half.
pub struct ScalarRelaxed;

impl Lanes for ScalarRelaxed {
    /// The 32 weights and the block's correction per lane (see [`Relaxed`](relaxed::Relaxed)).
    type W = ([i32; 32], [i32; 4]);
    /// The high and the low digits.
    type A = ([i32; 32], [i32; 32]);
    type I = [i32; 4];
    type F = [f32; 4];
    fn weights(p: &Panel, j: usize, b: usize) -> ([i32; 32], [i32; 4]) {
        let q = p.block(j, b);
        (std::array::from_fn(|t| q[t] as i32), *p.wsum(j, b))
    }
    fn acts(a: &ActRows, i: usize, b: usize) -> ([i32; 32], [i32; 32]) {
        let (hi, lo) = a.digit_block(i, b);
        (std::array::from_fn(|t| hi[t] as i32), std::array::from_fn(|t| lo[t] as i32))
    }
    fn dot((w, corr): &([i32; 32], [i32; 4]), (hi, lo): &([i32; 32], [i32; 32])) -> [i32; 4] {
        let lanes = |d: &[i32; 32], init: [i32; 4]| -> [i32; 4] {
            std::array::from_fn(|l| {
                init[l]
                    + (0..2)
                        .map(|h| (0..4).map(|t| w[h * 16 + 4 * l + t] * d[h * 16 + 4 * l + t]).sum::<i32>())
                        .sum::<i32>()
            })
        };
        let (h, l) = (lanes(hi, [0; 4]), lanes(lo, *corr));
        std::array::from_fn(|k| (h[k] << 7) + l[k])
    }
    scalar_f32_lanes!();
}

#[cfg(target_arch = "wasm32")]
mod simd128 {
    use super::{ActRows, Panel};
    use std::arch::wasm32::*;

    /// [`super::Lanes`] in wasm SIMD128 (the crate is built with `+simd128`, see
    /// .cargo/config.toml).
    pub struct Simd128;

    /// 32 bytes at `q` as two v128.
    #[inline(always)]
    pub(super) fn load2<T>(q: &[T]) -> [v128; 2] {
        assert!(std::mem::size_of_val(q) >= 32);
        let p = q.as_ptr() as *const v128;
        // SAFETY: 32 bytes are readable (asserted); v128_load has no alignment requirement.
        unsafe { [v128_load(p), v128_load(p.add(1))] }
    }

    impl super::Lanes for Simd128 {
        type W = [v128; 4];
        type A = [v128; 4];
        type I = v128;
        type F = v128;
        #[inline(always)]
        fn weights(p: &Panel, j: usize, b: usize) -> [v128; 4] {
            let [lo, hi] = load2(p.block(j, b));
            [
                i16x8_extend_low_i8x16(lo),
                i16x8_extend_high_i8x16(lo),
                i16x8_extend_low_i8x16(hi),
                i16x8_extend_high_i8x16(hi),
            ]
        }
        #[inline(always)]
        fn acts(a: &ActRows, i: usize, b: usize) -> [v128; 4] {
            let q = a.block(i, b);
            let ([v0, v1], [v2, v3]) = (load2(&q[..16]), load2(&q[16..]));
            [v0, v1, v2, v3]
        }
        #[inline(always)]
        fn dot(w: &[v128; 4], a: &[v128; 4]) -> v128 {
            let s01 = i32x4_add(i32x4_dot_i16x8(w[0], a[0]), i32x4_dot_i16x8(w[1], a[1]));
            let s23 = i32x4_add(i32x4_dot_i16x8(w[2], a[2]), i32x4_dot_i16x8(w[3], a[3]));
            i32x4_add(s01, s23)
        }
        #[inline(always)]
        fn fold(sum: v128, dot: v128, scale: f32) -> v128 {
            f32x4_add(sum, f32x4_mul(f32x4_convert_i32x4(dot), f32x4_splat(scale)))
        }
        #[inline(always)]
        fn zero() -> v128 {
            f32x4_splat(0.0)
        }
        #[inline(always)]
        fn hsum(v: v128) -> f32 {
            crate::backend::cpu::matmul::simd128::hsum(v)
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
mod relaxed {
    use super::simd128::{Simd128, load2};
    use super::{ActRows, Panel};
    use std::arch::wasm32::*;

    /// [`super::Lanes`] in wasm relaxed SIMD (the second wasm build, scripts/build-wasm.sh).
    /// A weight block comes with its correction `-8192 · Σ w` per lane (lane `l` holds
    /// elements `4l..4l+4` and `16+4l..16+4l+4`), [`Panel::wsum`], computed per tile. (Formed in
    /// registers from the weights instead, by relaxed dots against ones or by pairwise widening
    /// adds, the sums came out wrong and different from run to run in Node 20's flagged V8,
    /// though the native twin of each was exact: not understood yet, so the kernel reads them
    /// from memory.)
    pub struct Relaxed;

    impl super::Lanes for Relaxed {
        type W = ([v128; 2], v128);
        type A = ([v128; 2], [v128; 2]);
        type I = v128;
        type F = v128;
        #[inline(always)]
        fn weights(p: &Panel, j: usize, b: usize) -> ([v128; 2], v128) {
            // SAFETY: an [i32; 4] is 16 readable bytes; v128_load has no alignment requirement.
            let corr = unsafe { v128_load(p.wsum(j, b).as_ptr() as *const v128) };
            (load2(p.block(j, b)), corr)
        }
        #[inline(always)]
        fn acts(a: &ActRows, i: usize, b: usize) -> ([v128; 2], [v128; 2]) {
            let (hi, lo) = a.digit_block(i, b);
            (load2(hi), load2(lo))
        }
        #[inline(always)]
        fn dot((w, corr): &([v128; 2], v128), (hi, lo): &([v128; 2], [v128; 2])) -> v128 {
            // The correction is added at the end, not passed as a dot's accumulator (a weight
            // block serves two input rows). This did not mend Node 20's flagged V8, whose batch
            // results stay wrong (www/test/int8.test.mjs tests this build in Chromium).
            let zero = i32x4_splat(0);
            let h =
                i32x4_relaxed_dot_i8x16_i7x16_add(w[1], hi[1], i32x4_relaxed_dot_i8x16_i7x16_add(w[0], hi[0], zero));
            let l =
                i32x4_relaxed_dot_i8x16_i7x16_add(w[1], lo[1], i32x4_relaxed_dot_i8x16_i7x16_add(w[0], lo[0], zero));
            i32x4_add(i32x4_add(i32x4_shl(h, 7), l), *corr)
        }
        // The f32 half is SIMD128's.
        #[inline(always)]
        fn fold(sum: v128, dot: v128, scale: f32) -> v128 {
            <Simd128 as super::Lanes>::fold(sum, dot, scale)
        }
        #[inline(always)]
        fn zero() -> v128 {
            <Simd128 as super::Lanes>::zero()
        }
        #[inline(always)]
        fn hsum(v: v128) -> f32 {
            <Simd128 as super::Lanes>::hsum(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantFormat;

    fn data(len: usize, seed: u32, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e3779b9) | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s as f32 / u32::MAX as f32 * 2.0 - 1.0) * scale;
                // An outlier now and then, as activations have.
                if i % 97 == 13 { v * 20.0 } else { v }
            })
            .collect()
    }

    /// Checks `got` (one kernel's `[m, n]` without bias) against two references per element:
    /// - the f32 product of the dequantized weights and the *unquantized* activations, within
    ///   the bound the activation quantization allows: each activation is off by at most half
    ///   its row's step, `amax_row / ACT_MAX / 2`, so the dot is off by at most that times
    ///   `Σ|w|`; plus f32 rounding, `2e-6 · Σ|w·x|` (q4_1: below);
    /// - the exact (f64) product of the quantized values, within f32 rounding alone: the
    ///   kernels are exact integer sums and differ only in the order of f32 additions. At most
    ///   12 blocks a row here, each lane adding one term per block: 12 · 2^-24 · Σ|w·x| is
    ///   7e-7 of it, so 2e-6 holds any kernel whose lanes stay near their share of the sum
    ///   (lanes carrying large offsets that cancel only at the end fail it).
    fn check(name: &str, m: usize, n: usize, k: usize, x: &[f32], q: &QuantMatrix, got: &[f32]) -> f64 {
        let mut w = vec![0.0; n * k];
        q.dequantize_rows(0, n, &mut w);
        let acts = ActRows::quantize(m, k, x, false);
        let (per, width) = (acts.per, acts.per * BLOCK);
        // q4_1 sums `d·Σl·a` and `m·Σa` separately, terms larger than `w·a` (|d·l| <= |w| + |m|),
        // so its f32 rounding scales with `Σ (|w| + 2|m|)·|x|`.
        let min = |j: usize, b: usize| match &q.blocks {
            Blocks::Q4_1(blocks) => blocks[j * per + b].min().abs() as f64,
            _ => 0.0,
        };
        let mut worst_ratio = 0.0f64;
        for i in 0..m {
            let amax = x[i * k..(i + 1) * k].iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64;
            let half_step = amax / crate::quant::ACT_MAX as f64 / 2.0;
            for j in 0..n {
                let (mut exact, mut quant, mut mag, mut l1) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
                for t in 0..k {
                    let wt = w[j * k + t] as f64;
                    exact += wt * x[i * k + t] as f64;
                    quant += wt * acts.qs[i * width + t] as f64 * acts.scale[i] as f64;
                    mag += (wt.abs() + 2.0 * min(j, t / BLOCK)) * x[i * k + t].abs() as f64;
                    l1 += wt.abs();
                }
                let (bound, rounding) = (half_step * l1, 2e-6 * mag + 1e-7);
                let g = got[i * n + j] as f64;
                let err = (g - exact).abs();
                assert!(
                    err <= bound + rounding,
                    "{name} ({m},{n},{k}) at [{i},{j}]: {g} vs f32 product {exact}, off by {err:e}, bound {bound:e}"
                );
                assert!(
                    (g - quant).abs() <= rounding,
                    "{name} ({m},{n},{k}) at [{i},{j}]: {g} vs the quantized product {quant}"
                );
                if bound > 0.0 {
                    worst_ratio = worst_ratio.max(err / (bound + rounding));
                }
            }
        }
        worst_ratio
    }

    /// Odd shapes: k not a multiple of 32 (the last block zero-padded as QuantMatrix pads it),
    /// 1, 5, 33 and 70 rows (past one chunk of 64), n odd and past one tile of 64.
    const SHAPES: [(usize, usize, usize); 8] =
        [(1, 1, 1), (1, 5, 33), (5, 67, 100), (33, 70, 130), (1, 129, 384), (5, 3, 31), (33, 65, 64), (70, 9, 200)];

    #[test]
    fn every_kernel_matches_the_f32_product_within_the_activation_quantization_bound() {
        // The kernels this CPU runs, plus the wasm kernels' loops on their scalar lanes
        // (natively).
        let mut kernels = Kernel::available();
        for wasm in [Kernel::Simd128, Kernel::Relaxed] {
            if !kernels.contains(&wasm) {
                kernels.push(wasm);
            }
        }
        eprintln!("integer kernels tested here: {kernels:?} (best: {:?})", Kernel::best());
        let mut worst = 0.0f64;
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
            for (m, n, k) in SHAPES {
                let (x, w, b) = (data(m * k, 1, 1.0), data(n * k, 2, 0.05), vec![0.0; n]);
                let q = QuantMatrix::quantize(format, n, k, &w);
                for &kernel in &kernels {
                    let mut got = vec![f32::NAN; m * n];
                    linear_with(kernel, m, n, k, &x, &q, &b, &mut got);
                    let ratio = check(&format!("{format:?} {kernel:?}"), m, n, k, &x, &q, &got);
                    worst = worst.max(ratio);
                }
            }
        }
        eprintln!("worst error: {worst:.2} of the bound (activation quantization + f32 rounding)");
    }

    /// Rows with one activation 1000x the others (BERT's hidden states have such dimensions)
    /// quantize most values to a few levels near 0: every kernel must still give the exact
    /// product of the quantized values to f32 rounding, at the model's widest k.
    #[test]
    fn lanes_stay_exact_beside_an_outlier() {
        let (m, n, k) = (3, 8, 1536);
        let mut x = data(m * k, 8, 1.0);
        for i in 0..m {
            x[i * k + 7 + i] = 1000.0;
        }
        let q = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &data(n * k, 9, 0.05));
        for kernel in [Kernel::available(), vec![Kernel::Simd128, Kernel::Relaxed]].concat() {
            let mut got = vec![0.0; m * n];
            linear_with(kernel, m, n, k, &x, &q, &vec![0.0; n], &mut got);
            check(&format!("outlier {kernel:?}"), m, n, k, &x, &q, &got);
        }
    }

    #[test]
    fn bias_is_added_and_the_default_kernel_is_one_of_them() {
        let (m, n, k) = (3, 7, 45);
        let (x, w, b) = (data(m * k, 3, 1.0), data(n * k, 4, 0.1), data(n, 5, 1.0));
        let q = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &w);
        let (mut with, mut without) = (vec![0.0; m * n], vec![0.0; m * n]);
        linear(m, n, k, &x, &q, &b, &mut with);
        linear_with(Kernel::Portable, m, n, k, &x, &q, &vec![0.0; n], &mut without);
        for (idx, (a, c)) in with.iter().zip(&without).enumerate() {
            assert!((a - c - b[idx % n]).abs() < 1e-5, "at {idx}");
        }
    }

    #[test]
    fn zero_rows_and_zero_blocks() {
        // An all-zero activation row has scale 0 and must give 0, not NaN.
        let (m, n, k) = (2, 3, 64);
        let mut x = data(m * k, 6, 1.0);
        x[..k].fill(0.0);
        let q = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &data(n * k, 7, 0.1));
        for kernel in Kernel::available() {
            let mut got = vec![0.0; m * n];
            linear_with(kernel, m, n, k, &x, &q, &[0.0; 3], &mut got);
            assert!(got.iter().all(|v| v.is_finite()), "{kernel:?}: {got:?}");
            check(&format!("{kernel:?}"), m, n, k, &x, &q, &got);
            linear_with(kernel, 0, n, k, &[], &q, &[0.0; 3], &mut []);
        }
    }
}
