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
//! and why): AVX-512 VNNI (`vpdpwssd` on zmm), AVX-VNNI (`vpdpwssd` on ymm), AVX2
//! (`vpmaddwd`), wasm SIMD128 (`i32x4.dot_i16x8_s`) and relaxed SIMD
//! (`i32x4.relaxed_dot_i8x16_i7x16_add`), all on weights interleaved by output column, one
//! output per lane ([`qcols`]), and a portable one on the blocks as stored that is also their
//! reference.

use std::borrow::Cow;

use rayon::prelude::*;

use super::matmul::{Columns, finish_row, with_tile};
use super::qcols::{self, Interleaved, Layout};
use crate::config::Activation;
use crate::quant::{BLOCK, Blocks, QuantFormat, QuantMatrix, f16_to_f32_finite, quantize_act_row};

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
            .for_each(|(i, ((qs, sums), d))| *d = quantize_row(&x[i * k..(i + 1) * k], qs, sums));
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

/// [`quantize_act_row`], compiled with AVX2 where the CPU has it (in the baseline build its two
/// passes run 4 lanes wide: 6.6% of a native q8 pass).
fn quantize_row(x: &[f32], qs: &mut [i16], sums: &mut [i32]) -> f32 {
    simd!(quantize_act_row(x, qs, sums))
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
}

impl<'a> Panel<'a> {
    pub fn new(w: &'a QuantMatrix, j0: usize, j1: usize) -> Panel<'a> {
        let per = w.per_row();
        let rows = j1 - j0;
        match &w.blocks {
            Blocks::Q8_0(b) => {
                let b = &b[j0 * per..j1 * per];
                let d = b.iter().map(|b| f16_to_f32_finite(b.d)).collect();
                let qs = Cow::Borrowed(bytemuck::cast_slice(b));
                Panel { rows, per, qs, stride: std::mem::size_of_val(&b[0]), offset: 2, d, min: None }
            }
            Blocks::Q4_1(b) => {
                let b = &b[j0 * per..j1 * per];
                let qs = Cow::Owned(b.iter().flat_map(|b| b.levels()).collect());
                let d = b.iter().map(|b| f16_to_f32_finite(b.d)).collect();
                let min = Some(b.iter().map(|b| f16_to_f32_finite(b.m)).collect());
                Panel { rows, per, qs, stride: BLOCK, offset: 0, d, min }
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
}

/// An integer dot-product kernel. Each computes `acc[i, j] = Σ_b d_jb · Σ(w·a)` over the blocks
/// of weight row `j` of a [`Panel`] and activation row `i` (the activation scale comes later);
/// they differ only in how `Σ(w·a)` over a block of 32 is formed and in the order of the f32
/// additions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Plain Rust on the blocks as stored (LLVM vectorizes it to what the baseline target has).
    Portable,
    /// `vpmaddwd` on 8 interleaved columns sign-extended to i16 ([`qcols::x86::Avx2`]).
    Avx2,
    /// `vpdpwssd` on ymm, 8 columns ([`qcols::x86::AvxVnni`]).
    AvxVnni,
    /// `vpdpwssd` on zmm, 16 columns ([`qcols::x86::Avx512Vnni`]).
    Avx512Vnni,
    /// wasm SIMD128: weights interleaved by column and widened to i16, `i32x4_dot_i16x8`
    /// ([`qcols`]).
    Simd128,
    /// wasm relaxed SIMD: `i32x4_relaxed_dot_i8x16_i7x16_add` on the interleaved weights and the
    /// activations' 7-bit digits (only in the `+relaxed-simd` build; [`qcols`]).
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

    /// Whether this CPU can run the kernel: one of [`Kernel::available`], or a wasm kernel (off
    /// wasm, its loop runs on scalar lanes).
    fn runs_here(self) -> bool {
        static AVAILABLE: std::sync::OnceLock<Vec<Kernel>> = std::sync::OnceLock::new();
        matches!(self, Kernel::Simd128 | Kernel::Relaxed) || AVAILABLE.get_or_init(Kernel::available).contains(&self)
    }

    /// Whether the kernel reads [`ActRows::digits`].
    fn digits(self) -> bool {
        self == Kernel::Relaxed
    }

    /// The column-interleaved layout the kernel reads its weights in ([`qcols`]); the portable
    /// kernel reads the blocks as stored.
    pub fn layout(self) -> Option<Layout> {
        use qcols::ColLanes;
        match self {
            Kernel::Portable => None,
            Kernel::Simd128 => Some(qcols::ScalarPairs::LAYOUT),
            Kernel::Relaxed => Some(qcols::ScalarQuads::LAYOUT),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some(qcols::x86::Avx2::LAYOUT),
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => Some(qcols::x86::AvxVnni::LAYOUT),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => Some(qcols::x86::Avx512Vnni::LAYOUT),
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2 | Kernel::AvxVnni | Kernel::Avx512Vnni => None,
        }
    }

    /// The kernel [`linear`] uses (detected once): the widest x86 one the CPU has; in wasm,
    /// SIMD128, or in the relaxed-SIMD build the one [`Kernel::plan_wasm`] planned. Measured on this project's machine
    /// (a 2-core Xeon with AVX-512 VNNI and AVX-VNNI), one thread, all-MiniLM-L6-v2's three
    /// shapes at 10 and 480 rows (`cargo run --release --example qkernels`): AVX-512 VNNI
    /// 87-127 GOP/s, AVX-VNNI 53-71, AVX2 43-53, portable 10-14; end to end (`wembed bench
    /// --dtype q8`, 2 threads, batch 32) AVX-512 VNNI ~1,050 sentences/s against AVX2's ~690.
    /// The zmm kernel wins despite the clock it may cost the f32 work around it: one
    /// `vpdpwssd` with its broadcast folded in does 32 products.
    ///
    /// The relaxed-SIMD wasm build has two kernels and no instruction set to read: its first
    /// call races them as the first load on the thread planned ([`Kernel::plan_wasm`]).
    pub fn best() -> Kernel {
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        {
            WASM_CHOICE.get_or_init(Kernel::choose_wasm).0
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        {
            static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
            *BEST.get_or_init(|| {
                let ks = Kernel::available();
                [Kernel::Avx512Vnni, Kernel::AvxVnni, Kernel::Avx2, Kernel::Simd128]
                    .into_iter()
                    .find(|k| ks.contains(k))
                    .unwrap_or(Kernel::Portable)
            })
        }
    }

    /// How the relaxed-SIMD wasm build is to choose its integer kernel, when [`Kernel::best`]
    /// is first asked (a CPU model interleaving its weights; a model on the GPU or in f32
    /// never asks, and nothing is raced): `Relaxed` if `force_relaxed`, else the winner of
    /// [`Kernel::race`] between `Simd128` and `Relaxed` timed by `now` (milliseconds). The
    /// first call on a thread decides; other builds keep the plan unread.
    ///
    /// Why a race: which one is faster depends on how the engine lowers
    /// `i32x4.relaxed_dot_i8x16_i7x16_add`, which no API tells. One `vpdpbusd` where V8 uses
    /// AVX-VNNI, an `sdot` on ARM with the dot-product extension, else three instructions or
    /// more; the relaxed kernel needs two of them per 16 products (14-bit activations as two
    /// 7-bit digits), SIMD128 two `pmaddwd` and two adds. Measured in headless Chromium 156 on
    /// this project's Xeon (2026-12-07), a loop of independent accumulators: 5.25 G relaxed
    /// dots/s against 9.35 G `i32x4.dot_i16x8_s` + add, so 0.38 ns per 16 products against
    /// 0.21. The whole kernels are closer (loads, addressing and V8's spills take their
    /// share): the race's rounds read 1.3-1.5 ms for SIMD128 and 1.5 for relaxed, and one
    /// worker ran 184.1 sentences/s on SIMD128 against 183.1 on relaxed, where on 2026-12-01
    /// relaxed had run 215.6 against 173.8 (a machine and a day apart: hence a race, not a
    /// rule).
    pub fn plan_wasm(force_relaxed: bool, now: fn() -> f64) {
        // Kept in every build: the SIMD128 build's JS glue must import what the relaxed one's
        // does (scripts/build-wasm.sh checks), and `now` is what brings `Date.now` in.
        let _ = WASM_PLAN.set((force_relaxed, now));
    }

    /// [`Kernel::plan_wasm`] carried out.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    fn choose_wasm() -> (Kernel, String) {
        match WASM_PLAN.get() {
            Some(&(true, _)) => (Kernel::Relaxed, "asked for by simd: 'relaxed'".into()),
            Some(&(false, now)) => {
                let (k, times) = Kernel::race(&[Kernel::Simd128, Kernel::Relaxed], &now);
                (k, format!("raced here: simd128 {:.3} ms, relaxed {:.3} ms a round", times[0], times[1]))
            }
            None => (Kernel::Relaxed, "the relaxed build's own (no load planned a race)".into()),
        }
    }

    /// The kernel [`Kernel::best`] runs and why, once it is decided: in the relaxed-SIMD wasm
    /// build only after its first call (`None` before).
    pub fn chosen() -> Option<(Kernel, String)> {
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        {
            WASM_CHOICE.get().cloned()
        }
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        {
            let why = if cfg!(target_arch = "wasm32") {
                "the one integer kernel of this build"
            } else {
                "the instruction set's"
            };
            Some((Kernel::best(), why.into()))
        }
    }

    /// Which of `candidates` (each of which [`Kernel::runs_here`]; none: Portable) multiplies a
    /// tile of all-MiniLM-L6-v2's shape (64 weight rows of 384, 6 input rows) fastest on this
    /// machine, with each one's best time per round of [`RACE_REPS`] products (`now()` in
    /// milliseconds). See [`race_with`] for how the rounds run and decide.
    pub fn race(candidates: &[Kernel], now: &dyn Fn() -> f64) -> (Kernel, Vec<f64>) {
        let (n, k, m) = (ROWS_PER_TILE, 384, 6);
        // Weights and activations of a model's spread, from a fixed sequence: what is measured
        // is the instructions' speed, not the values.
        let value = |i: usize| ((i.wrapping_mul(2_654_435_761) >> 7) % 2001) as f32 / 1000.0 - 1.0;
        let w = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &(0..n * k).map(value).collect::<Vec<_>>());
        let x: Vec<f32> = (0..m * k).map(|i| value(i + n * k)).collect();
        let panel = Panel::new(&w, 0, n);
        let digits = candidates.iter().any(|c| c.digits());
        let acts = ActRows::quantize(m, k, &x, digits);
        let tiles: Vec<Option<Interleaved>> =
            candidates.iter().map(|c| c.layout().map(|l| Interleaved::new(&panel, l))).collect();
        let mut acc = vec![0.0f32; m * n];
        race_with(
            candidates.len(),
            |c| match &tiles[c] {
                Some(x) => candidates[c].dot_interleaved(x, &acts, 0, m, &mut acc),
                None => portable_dot_panel(&panel, &acts, 0, m, &mut acc),
            },
            now,
        )
        .map_or((Kernel::Portable, vec![]), |(c, t)| (candidates[c], t))
    }

    /// `acc[i, j]` (`acc` is `[a.rows, x.rows]`) for activation rows `i0..i1` and every row of
    /// a tile interleaved in the kernel's layout (`qcols::dot_panel` asserts it).
    fn dot_interleaved(self, x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        // SAFETY (every arm): the x86 kernels are only in `available()` where the CPU has their
        // features (and `linear_packed` takes no other); the others need none beyond the build's.
        unsafe {
            match self {
                #[cfg(target_arch = "wasm32")]
                Kernel::Simd128 => qcols::dot_panel::<qcols::simd128::Simd128>(x, a, i0, i1, acc),
                // Natively, Simd128 runs its loop on the scalar twin of its lanes (for the tests).
                #[cfg(not(target_arch = "wasm32"))]
                Kernel::Simd128 => qcols::dot_panel::<qcols::ScalarPairs>(x, a, i0, i1, acc),
                #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
                Kernel::Relaxed => qcols::dot_panel::<qcols::relaxed::Relaxed>(x, a, i0, i1, acc),
                // Elsewhere Relaxed runs its loop on the scalar twin of its lanes (for the tests).
                #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
                Kernel::Relaxed => qcols::dot_panel::<qcols::ScalarQuads>(x, a, i0, i1, acc),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => qcols::x86::avx2(x, a, i0, i1, acc),
                #[cfg(target_arch = "x86_64")]
                Kernel::AvxVnni => qcols::x86::avxvnni(x, a, i0, i1, acc),
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx512Vnni => qcols::x86::avx512vnni(x, a, i0, i1, acc),
                _ => unreachable!("{self:?} reads the blocks as stored, not interleaved weights"),
            }
        }
    }
}

/// How the relaxed-SIMD wasm build chooses its integer kernel ([`Kernel::plan_wasm`]).
static WASM_PLAN: std::sync::OnceLock<(bool, fn() -> f64)> = std::sync::OnceLock::new();
/// The relaxed-SIMD wasm build's integer kernel and why ([`Kernel::best`]).
#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
static WASM_CHOICE: std::sync::OnceLock<(Kernel, String)> = std::sync::OnceLock::new();

/// Products per timed round of [`Kernel::race`]: ~1.4 ms of SIMD128 work on this project's
/// machine (in Chromium, one worker), 14 times the 0.1 ms to which a page that is not
/// cross-origin isolated rounds `performance.now()` (rounds of 32 products all read 0.1 ms).
const RACE_REPS: usize = 256;
/// Rounds at the least, and milliseconds the race runs at the least (rounds continue until
/// both have passed, up to [`RACE_MAX_ROUNDS`]): V8 runs wasm in its baseline compiler first
/// and swaps in optimized code in the background, so early rounds can time the baseline
/// code; only the later half of the rounds counts.
const RACE_MIN_ROUNDS: usize = 8;
const RACE_MIN_MS: f64 = 24.0;
const RACE_MAX_ROUNDS: usize = 64;
/// Another candidate beats the first only when this much faster (its time below this share
/// of the first's): within noise the first, the plainer kernel, stays.
const RACE_MARGIN: f64 = 0.95;

/// The race of [`Kernel::race`] over `count` candidates run by `run(i)` (one product each
/// call), timed by `now()` in milliseconds: rounds time [`RACE_REPS`] calls of every
/// candidate, in an order that rotates each round; the later half of the rounds gives each
/// candidate its best time; the fastest wins if [`RACE_MARGIN`] ahead of candidate 0, else
/// candidate 0. Returns the winner and the best times, `None` for no candidates.
fn race_with(count: usize, mut run: impl FnMut(usize), now: &dyn Fn() -> f64) -> Option<(usize, Vec<f64>)> {
    if count == 0 {
        return None;
    }
    let start = now();
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); count];
    let mut round = 0;
    while round < RACE_MIN_ROUNDS || (now() - start < RACE_MIN_MS && round < RACE_MAX_ROUNDS) {
        for c in (0..count).map(|i| (i + round) % count) {
            let t = now();
            for _ in 0..RACE_REPS {
                run(c);
            }
            times[c].push(now() - t);
        }
        round += 1;
    }
    let best: Vec<f64> = times.iter().map(|t| t[t.len() / 2..].iter().copied().fold(f64::INFINITY, f64::min)).collect();
    let fastest = (0..count).min_by(|&a, &b| best[a].total_cmp(&best[b])).unwrap_or(0);
    let winner = if best[fastest] < RACE_MARGIN * best[0] { fastest } else { 0 };
    Some((winner, best))
}

/// Weight rows per task: large enough to amortize the task, small enough to split a 384-row
/// matrix between cores (one query must use them all) and keep a 1536-wide tile in L2.
const ROWS_PER_TILE: usize = 64;
/// Input rows per pass over a tile: their i16 rows (192 KB at k = 1536) stay in L2 beside it.
const ROWS_PER_CHUNK: usize = 64;
/// Bytes of i16 activations per pass of [`linear_packed`]: a batch's rows go through the whole
/// matrix a pass of at most this many bytes at a time (256 rows at k = 1536, 1024 at k = 384),
/// so that a pass's activations stay in L2 while every tile of weights reads them, instead of
/// each tile streaming the whole batch's from memory (32 paragraphs of ~146 tokens: 14 MB at
/// k = 1536, read once per tile of 64 weight rows). Rows are quantized and multiplied one by
/// one, so the passes change no bit. Node, one thread, q8 all-MiniLM-L6-v2 (2026-12-07): 32
/// paragraphs at batch 32 went from 9.37 to 9.96 per second with passes of 256 rows (batch 1:
/// 10.3, unchanged); STS-B sentences at batch 32 (~400 rows) unchanged at 198.
pub(super) const BYTES_PER_PASS: usize = 768 << 10;

/// `out[m, n] = bias + x[m, k] · w[n, k]ᵀ` with the integer kernel [`Kernel::best`].
pub fn linear(m: usize, n: usize, k: usize, x: &[f32], w: &QuantMatrix, bias: &[f32], out: &mut [f32]) {
    linear_act(Kernel::best(), m, n, k, x, w, bias, None, out)
}

/// [`linear`] with a given kernel (tests call each one the CPU has). The interleaving kernels
/// get `w` interleaved here, per call; the CPU backend keeps such weights as a
/// [`PackedMatrix`] instead ([`linear_packed`]).
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
    linear_act(kernel, m, n, k, x, w, bias, None, out)
}

/// [`linear_with`], then `act` on each output (applied by the task that writes it).
#[allow(clippy::too_many_arguments)]
pub fn linear_act(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &QuantMatrix,
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    assert!(x.len() == m * k && w.rows == n && w.cols == k && bias.len() == n && out.len() == m * n);
    if let Some(layout) = kernel.layout() {
        return linear_packed(kernel, m, n, k, x, &PackedMatrix::new(w, layout), bias, act, out);
    }
    let acts = ActRows::quantize(m, k, x, kernel.digits());
    let out = Columns::new(out, m, n);
    (0..n.div_ceil(ROWS_PER_TILE)).into_par_iter().for_each(|t| {
        let j0 = t * ROWS_PER_TILE;
        let panel = Panel::new(w, j0, (j0 + ROWS_PER_TILE).min(n));
        tile_product(&acts, j0, panel.rows, panel.min.as_deref(), bias, act, &out, |i0, i1, acc| {
            portable_dot_panel(&panel, &acts, i0, i1, acc)
        });
    });
}

/// A quantized matrix (q8_0 or q4_1) in the column-interleaved layout of an interleaving
/// kernel ([`qcols`]), tile by tile: what the CPU backend keeps in wasm, interleaved once at
/// load in place of the blocks (the same bytes, one f32 scale per block instead of one f16).
#[derive(Debug, Clone, PartialEq)]
pub struct PackedMatrix {
    pub rows: usize,
    pub cols: usize,
    pub format: QuantFormat,
    layout: Layout,
    /// Tiles of [`ROWS_PER_TILE`] rows, with q4_1's minimums `[rows, per]`.
    tiles: Vec<(Interleaved, Option<Vec<f32>>)>,
}

impl PackedMatrix {
    pub fn new(w: &QuantMatrix, layout: Layout) -> PackedMatrix {
        let tiles = (0..w.rows.div_ceil(ROWS_PER_TILE))
            .into_par_iter()
            .map(|t| {
                let j0 = t * ROWS_PER_TILE;
                let panel = Panel::new(w, j0, (j0 + ROWS_PER_TILE).min(w.rows));
                (Interleaved::new(&panel, layout), panel.min)
            })
            .collect();
        PackedMatrix { rows: w.rows, cols: w.cols, format: w.format(), layout, tiles }
    }

    /// Row `r` dequantized into `out` (`cols` long).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let ((x, min), j) = (&self.tiles[r / ROWS_PER_TILE], r % ROWS_PER_TILE);
        for (t, o) in out[..self.cols].iter_mut().enumerate() {
            let (level, d) = x.level(j, t);
            *o = d * level as f32 + min.as_ref().map_or(0.0, |m| m[j * x.per + t / BLOCK]);
        }
    }

    /// `w` interleaved for the kernel [`linear`] runs, if it interleaves and takes `w`'s format.
    pub fn for_best_kernel(w: &QuantMatrix) -> Option<PackedMatrix> {
        let layout = Kernel::best().layout()?;
        matches!(w.blocks, Blocks::Q8_0(_) | Blocks::Q4_1(_)).then(|| PackedMatrix::new(w, layout))
    }
}

/// `out[m, n] = act(bias + x[m, k] · w[n, k]ᵀ)` on weights interleaved for `kernel`.
#[allow(clippy::too_many_arguments)]
pub fn linear_packed(
    kernel: Kernel,
    m: usize,
    n: usize,
    k: usize,
    x: &[f32],
    w: &PackedMatrix,
    bias: &[f32],
    act: Option<Activation>,
    out: &mut [f32],
) {
    assert!(x.len() == m * k && w.rows == n && w.cols == k && bias.len() == n && out.len() == m * n);
    assert!(kernel.layout() == Some(w.layout), "{kernel:?} does not read weights interleaved as {:?}", w.layout);
    assert!(kernel.runs_here(), "{kernel:?} does not run on this CPU");
    let pass = (BYTES_PER_PASS / (2 * k.max(1))).max(ROWS_PER_CHUNK);
    if m > pass {
        // Bit for bit the one-pass product (test interleaved_kernels_equal_the_portable_one_bit_for_bit).
        for (xs, outs) in x.chunks(pass * k).zip(out.chunks_mut(pass * n)) {
            linear_packed(kernel, xs.len() / k, n, k, xs, w, bias, act, outs);
        }
        return;
    }
    let acts = ActRows::quantize(m, k, x, kernel.digits());
    let out = Columns::new(out, m, n);
    w.tiles.par_iter().enumerate().for_each(|(t, (cols, min))| {
        tile_product(&acts, t * ROWS_PER_TILE, cols.rows, min.as_deref(), bias, act, &out, |i0, i1, acc| {
            kernel.dot_interleaved(cols, &acts, i0, i1, acc)
        });
    });
}

/// One tile's products: `dot(i0, i1, acc)` over chunks of input rows, then, on the way into
/// `out`'s columns `j0..j0 + nb`, q4_1's minimum term, each row's activation scale, the bias
/// and `act`. Every task writes its own columns, in parallel.
#[allow(clippy::too_many_arguments)]
fn tile_product(
    acts: &ActRows,
    j0: usize,
    nb: usize,
    min: Option<&[f32]>,
    bias: &[f32],
    act: Option<Activation>,
    out: &Columns,
    dot: impl Fn(usize, usize, &mut [f32]),
) {
    let (m, per) = (acts.rows, acts.per);
    // The kernels write every element of `[m, nb]`.
    with_tile(m * nb, |acc| {
        for i0 in (0..m).step_by(ROWS_PER_CHUNK) {
            dot(i0, (i0 + ROWS_PER_CHUNK).min(m), acc);
        }
        let bias = &bias[j0..j0 + nb];
        for i in 0..m {
            let row = &mut acc[i * nb..(i + 1) * nb];
            if let Some(mins) = min {
                // q4_1: `Σ (d·l + m)·a = d·Σ l·a + m·Σa`, the second term per block from the
                // activation block's sum: per/32 of the product's work.
                let sums = &acts.isum[i * per..(i + 1) * per];
                for (j, v) in row.iter_mut().enumerate() {
                    let mins = &mins[j * per..(j + 1) * per];
                    *v += mins.iter().zip(sums).map(|(m, &s)| m * s as f32).sum::<f32>();
                }
            }
            // SAFETY: columns j0..j0 + nb are this tile's alone.
            finish_row(unsafe { out.row_of(i, j0, nb) }, row, acts.scale[i], bias, act);
        }
    });
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

    /// The column-interleaved kernels (the x86 ones this CPU has; the wasm ones' loops on scalar
    /// lanes, and in wasm on v128: www/test/int8.test.mjs) form each block's exact integer sum
    /// and add them in block order, as the portable kernel does: equal to it bit for bit, on
    /// shapes that leave partial groups of columns and tiles of rows of every height (1 to 12 rows at a time: 1,
    /// 5, 7, 9, 13, 25, 33 and 70 rows, the last past a chunk of 64; 557 rows at k = 1536, past two passes).
    #[test]
    fn interleaved_kernels_equal_the_portable_one_bit_for_bit() {
        let mut kernels: Vec<Kernel> = Kernel::available().into_iter().filter(|k| k.layout().is_some()).collect();
        for wasm in [Kernel::Simd128, Kernel::Relaxed] {
            if !kernels.contains(&wasm) {
                kernels.push(wasm);
            }
        }
        eprintln!("interleaving kernels checked bit for bit: {kernels:?}");
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1] {
            // The last shape takes two whole passes and a partial third.
            let pass = BYTES_PER_PASS / (2 * 1536);
            let more = [(7, 6, 1536), (9, 131, 96), (13, 17, 64), (25, 40, 96), (2 * pass + 45, 9, 1536)];
            for (m, n, k) in SHAPES.into_iter().chain(more) {
                let (x, w, b) = (data(m * k, 11, 1.0), data(n * k, 12, 0.05), data(n, 13, 0.1));
                let q = QuantMatrix::quantize(format, n, k, &w);
                let mut want = vec![f32::NAN; m * n];
                linear_with(Kernel::Portable, m, n, k, &x, &q, &b, &mut want);
                for &kernel in &kernels {
                    // What the backend keeps: each row dequantizes to the blocks' values.
                    let packed = PackedMatrix::new(&q, kernel.layout().unwrap());
                    let (mut want_row, mut got_row) = (vec![0.0; k], vec![f32::NAN; k]);
                    for r in [0, n / 2, n - 1] {
                        q.dequantize_rows(r, r + 1, &mut want_row);
                        packed.dequantize_row(r, &mut got_row);
                        assert_eq!(got_row, want_row, "{format:?} {kernel:?} row {r} of {n}");
                    }
                    let mut got = vec![f32::NAN; m * n];
                    linear_with(kernel, m, n, k, &x, &q, &b, &mut got);
                    for (at, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(g.to_bits() == w.to_bits(), "{format:?} {kernel:?} ({m},{n},{k}) at {at}: {g} vs {w}");
                    }
                }
            }
        }
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

    /// [`race_with`] on a fake clock that each run advances by its candidate's cost per call:
    /// `costs(c, round)` in milliseconds. Returns the winner and the rounds run.
    fn fake_race(count: usize, costs: impl Fn(usize, usize) -> f64) -> (Option<(usize, Vec<f64>)>, usize) {
        let clock = std::cell::Cell::new(0.0);
        let calls = std::cell::Cell::new(vec![0usize; count]);
        let run = |c: usize| {
            let mut n = calls.take();
            clock.set(clock.get() + costs(c, n[c] / RACE_REPS));
            n[c] += 1;
            calls.set(n);
        };
        let won = race_with(count, run, &|| clock.get());
        (won, calls.take()[0] / RACE_REPS)
    }

    #[test]
    fn race_picks_the_faster_kernel_beyond_the_margin_and_the_first_within_it() {
        let reps = RACE_REPS as f64;
        // 25% faster: it wins, with each one's time per round (binary fractions: exact sums).
        let (won, rounds) = fake_race(2, |c, _| [0.001953125, 0.00146484375][c]);
        assert_eq!(won, Some((1, vec![0.001953125 * reps, 0.00146484375 * reps])));
        // The rounds ran until RACE_MIN_MS had passed.
        let until = (RACE_MIN_MS / ((0.001953125 + 0.00146484375) * reps)).ceil() as usize;
        assert!(until > RACE_MIN_ROUNDS);
        assert_eq!(rounds, until);
        // 3% faster is within the margin: the first stays.
        assert_eq!(fake_race(2, |c, _| [0.01, 0.0097][c]).0.map(|w| w.0), Some(0));
        // The baseline compiler's first rounds, where the second looked 2x faster, do not
        // count: optimized, it is 10% slower.
        let warm = |c: usize, round: usize| if round < 4 { [0.1, 0.05][c] } else { [0.01, 0.011][c] };
        assert_eq!(fake_race(2, warm).0.map(|w| w.0), Some(0));
        // Three candidates: the fastest of the others must beat the first by the margin.
        assert_eq!(fake_race(3, |c, _| [0.01, 0.009, 0.008][c]).0.map(|w| w.0), Some(2));
    }

    #[test]
    fn race_ends_on_a_clock_that_does_not_move_and_without_candidates() {
        // A clock too coarse to see a round: all times 0, the first wins, after at most
        // RACE_MAX_ROUNDS rounds.
        let (won, rounds) = fake_race(2, |_, _| 0.0);
        assert_eq!(won, Some((0, vec![0.0, 0.0])));
        assert_eq!(rounds, RACE_MAX_ROUNDS);
        assert_eq!(race_with(0, |_| unreachable!("no candidate to run"), &|| 0.0), None);
    }

    #[test]
    fn race_runs_every_kernel_this_cpu_has_and_names_one_of_them() {
        let start = std::time::Instant::now();
        let now = || start.elapsed().as_secs_f64() * 1000.0;
        let ks = Kernel::available();
        let (k, times) = Kernel::race(&ks, &now);
        assert!(ks.contains(&k), "{k:?} is not among {ks:?}");
        assert_eq!(times.len(), ks.len());
        assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
        eprintln!("race here: {k:?} of {ks:?}, best round {times:?} ms");
    }
}
