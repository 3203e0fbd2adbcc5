//! The integer kernels, on weights interleaved by output column.
//!
//! A lane-per-element kernel gives each i32 lane a share of one block's elements and sums the
//! lanes at the end: it pays a conversion and a scaling per (weight row, input row, block) on a
//! vector that holds one output, and a horizontal sum per output. Here each lane is an output
//! column instead: a tile's weight rows are interleaved in groups of `COLS` (one lane each;
//! [`Interleaved`], built per tile from the [`Panel`] once at load), an activation pair (or
//! quad) is broadcast to all lanes, and one vector instruction advances `COLS` outputs. A
//! block's `COLS` i32 sums are converted and scaled by the columns' block scales in one f32
//! multiply. Counted per block of 32, per input row and group of four outputs (128 products) in
//! wasm: 16 `i32x4_dot_i16x8` and 16 adds, 3 f32 operations and a sixth of the weights'
//! widening, against ~56 vector operations in the lane-per-element layout. On x86 the
//! broadcasts are loads (no ALU work), so the products and their adds are nearly all that is
//! left.
//!
//! One loop ([`dot_panel`]), its lanes ([`ColLanes`]) per instruction set:
//! - [`Order::Pairs`]: a quad of k as `4 · COLS` bytes, `[c0 k0, c0 k1, c1 k0, .., | c0 k2,
//!   c0 k3, ..]`; each half widened to i16 and multiplied against the activations' i16 pair
//!   broadcast, pairs summed into the i32 lanes: wasm SIMD128 (`i32x4_dot_i16x8`, 4 columns),
//!   AVX2 (`vpmaddwd`, 8), AVX-VNNI (`vpdpwssd` on ymm, 8), AVX-512 VNNI (`vpdpwssd` on zmm,
//!   16; the broadcast folds into the instruction);
//! - [`Order::Quads`] (wasm relaxed SIMD): `[c0 k0..k3, c1 k0..k3, c2 .., c3 ..]`, one
//!   `i32x4_relaxed_dot_i8x16_i7x16_add` per digit against four 7-bit digits splatted
//!   ([`ActRows::digits`]): one `vpdpbusd` where the CPU has AVX-VNNI. Each lane's block sum is
//!   `128 · Σ w·hi + Σ w·lo - 8192 · Σ w`, the last term per column and block from
//!   [`Interleaved::wsum`], all exact in i32.
//!
//! All form each block's exact integer sum and add `f32(sum) · d` (a multiply, then an add: no
//! fused multiply-add) in block order, as
//! [`portable_dot_panel`](super::qmatmul::portable_dot_panel) does, so their results equal the
//! portable kernel's bit for bit. [`ScalarPairs`] and [`ScalarQuads`] run the wasm kernels' loop
//! natively on plain arrays (the tests run them); only the lane operations differ in wasm.

use super::qmatmul::{ActRows, Panel};
use crate::quant::BLOCK;

/// Output columns per group of the wasm kernels: one i32x4 lane each.
pub const WASM_COLS: usize = 4;
/// Quads per block.
const QUADS: usize = BLOCK / 4;
/// Input rows per tile where the ISA has 16 vector registers: six i32 block sums and six f32
/// totals, with the weights and a broadcast, stay within them (V8 has 16 on x86-64 too).
/// Measured in Node (q8 all-MiniLM-L6-v2, 256 STS-B sentences at batch 32, three alternating
/// runs on a noisy machine): 4 rows 92-162 sentences/s (mean 113), 6 rows 101-158 (133), 8 rows
/// 94-140 (121). The rows past the last whole tile go in pairs, then alone.
const ROWS_16_REGISTERS: usize = 6;

/// How a group's bytes are ordered within a quad of k (see the module's doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    Pairs,
    Quads,
}

/// The interleaved layout a kernel reads: the byte order and the columns per group (its lanes).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Layout {
    pub order: Order,
    pub cols: usize,
}

impl Layout {
    /// Where element `r` of a quad of k of column `c` of a group lies in the quad's bytes.
    #[inline(always)]
    fn position(self, c: usize, r: usize) -> usize {
        match self.order {
            Order::Pairs => (r / 2) * 2 * self.cols + 2 * c + r % 2,
            Order::Quads => 4 * c + r,
        }
    }
}

/// A panel's weight rows in groups of `layout.cols`, interleaved in `layout.order`; rows past
/// the panel's end are zero with scale 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Interleaved {
    pub layout: Layout,
    pub groups: usize,
    pub rows: usize,
    pub per: usize,
    /// `[groups, per, QUADS, 4 · cols]`.
    qs: Vec<i8>,
    /// `[groups, per, cols]`: the columns' block scales.
    d: Vec<f32>,
    /// [`Order::Quads`] only (empty otherwise): `-8192 · Σ w` of each column's block,
    /// `[groups, per, cols]`.
    wsum: Vec<i32>,
}

impl Interleaved {
    pub fn new(p: &Panel, layout: Layout) -> Interleaved {
        let cols = layout.cols;
        let (per, groups) = (p.per, p.rows.div_ceil(cols));
        let quads = layout.order == Order::Quads;
        let mut qs = vec![0i8; groups * per * BLOCK * cols];
        let mut d = vec![0.0f32; groups * per * cols];
        let mut wsum = vec![0i32; if quads { groups * per * cols } else { 0 }];
        for j in 0..p.rows {
            let (g, c) = (j / cols, j % cols);
            for b in 0..per {
                let gb = g * per + b;
                let w = p.block(j, b);
                d[gb * cols + c] = p.d[j * per + b];
                if quads {
                    wsum[gb * cols + c] = -8192 * w.iter().map(|&v| v as i32).sum::<i32>();
                }
                let dst = &mut qs[gb * BLOCK * cols..][..BLOCK * cols];
                for (t, &v) in w.iter().enumerate() {
                    dst[t / 4 * 4 * cols + layout.position(c, t % 4)] = v;
                }
            }
        }
        Interleaved { layout, groups, rows: p.rows, per, qs, d, wsum }
    }

    /// Row `j`'s element `t` (its level) and the scale of its block.
    pub fn level(&self, j: usize, t: usize) -> (i8, f32) {
        let cols = self.layout.cols;
        let (g, c, b, t) = (j / cols, j % cols, t / BLOCK, t % BLOCK);
        (self.qs[self.quad(g, b, t / 4) + self.layout.position(c, t % 4)], self.d[(g * self.per + b) * cols + c])
    }

    /// Offset of quad `q` of block `b` of group `g` in `qs`.
    #[inline(always)]
    fn quad(&self, g: usize, b: usize, q: usize) -> usize {
        ((g * self.per + b) * QUADS + q) * 4 * self.layout.cols
    }

    /// Offset of block `b` of group `g`'s scales (and sums) in `d` (and `wsum`).
    #[inline(always)]
    fn scales(&self, g: usize, b: usize) -> usize {
        (g * self.per + b) * self.layout.cols
    }
}

/// The lane operations of [`dot_panel`]: `W` one quad of a group's weights as the kernel holds
/// it, `I` a block's integer sums (one lane per column), `F` the columns' f32 totals.
///
/// Safety of the `unsafe fn`s: the CPU has the instructions the lanes use (the x86 lanes run
/// only inside the functions of [`x86`] that enable them); `g < x.groups`, `b < x.per ==
/// a.per`, `q < QUADS`, `i < a.rows`, and `a` has the buffers the order needs (checked once by
/// [`dot_panel`]).
pub trait ColLanes {
    const LAYOUT: Layout;
    /// The most input rows per tile (see [`ROWS_16_REGISTERS`]): 6 or 12.
    const ROWS: usize;
    type W: Copy;
    type I: Copy;
    type F: Copy;
    /// # Safety
    /// See the trait's doc.
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> Self::W;
    /// # Safety
    /// See the trait's doc.
    unsafe fn zero_i() -> Self::I;
    /// # Safety
    /// See the trait's doc.
    unsafe fn zero_f() -> Self::F;
    /// `acc` plus quad `q` of block `b`: weights `w` against activation row `i`.
    /// # Safety
    /// See the trait's doc.
    unsafe fn dot(acc: Self::I, w: &Self::W, a: &ActRows, i: usize, b: usize, q: usize) -> Self::I;
    /// `sum + f32(block sums) · d`, lane-wise, for block `b` of group `g`.
    /// # Safety
    /// See the trait's doc.
    unsafe fn fold(sum: Self::F, acc: Self::I, x: &Interleaved, g: usize, b: usize) -> Self::F;
    /// The first `out.len()` (at most the layout's `cols`) lanes of `v` into `out`.
    /// # Safety
    /// See the trait's doc.
    unsafe fn store(v: Self::F, out: &mut [f32]);
}

/// Input rows `r0..r0+R` against group `g`, written to `acc[(r0 + r) · x.rows + column]`.
/// Natively inlined into the function of [`x86`] that enables its instructions. In wasm each
/// height is its own function: V8 first runs wasm in its baseline compiler and optimizes hot
/// functions in the background, and one function holding every height (twice the code of
/// three heights) took long enough to optimize that a fresh worker ran its first batches at a
/// third of the speed (44.8 against 165.1 sentences/s later in the same process, Node 20).
/// `inline(never)` holds for LLVM; wasm-opt's -O3 inlined each height into its one caller
/// anyway (one 64 KB function again, until 2026-12-07), so scripts/build-wasm.sh tells it not
/// to. Headless Chromium 156, one fresh worker, six passes over 128 STS-B sentences at batch
/// 32: 202-221 sentences/s merged, 209-230 apart; the first pass as fast as the rest either way.
/// Safety: as [`ColLanes`], for rows `r0..r0+R`.
#[cfg_attr(target_arch = "wasm32", inline(never))]
#[cfg_attr(not(target_arch = "wasm32"), inline(always))]
unsafe fn tile<L: ColLanes, const R: usize>(x: &Interleaved, a: &ActRows, g: usize, r0: usize, acc: &mut [f32]) {
    // SAFETY (every lane call): the caller's guarantee.
    let mut sum = [unsafe { L::zero_f() }; R];
    for b in 0..x.per {
        let mut s = [unsafe { L::zero_i() }; R];
        for q in 0..QUADS {
            let w = unsafe { L::weights(x, g, b, q) };
            for (r, s) in s.iter_mut().enumerate() {
                *s = unsafe { L::dot(*s, &w, a, r0 + r, b, q) };
            }
        }
        for (total, s) in sum.iter_mut().zip(s) {
            *total = unsafe { L::fold(*total, s, x, g, b) };
        }
    }
    let cols = L::LAYOUT.cols;
    let n = cols.min(x.rows - g * cols);
    for (r, total) in sum.into_iter().enumerate() {
        unsafe { L::store(total, &mut acc[(r0 + r) * x.rows + g * cols..][..n]) };
    }
}

/// Rows `i0..i1` against group `g` in as few tiles as `L::ROWS` allows, of equal heights (one
/// apart): 10 rows (a short query) are one tile of 10, not 8 and a pair whose weight loads
/// serve two rows and whose accumulators wait on each other's latency; 64 rows at 12 a tile
/// are 11, 11, 11, 11, 10, 10.
/// Safety: as [`ColLanes`], for rows `i0..i1`.
#[inline(always)]
unsafe fn rows<L: ColLanes>(x: &Interleaved, a: &ActRows, g: usize, i0: usize, i1: usize, acc: &mut [f32]) {
    const { assert!(L::ROWS == 6 || L::ROWS == 12, "tile heights are instantiated up to 6 or 12") };
    let m = i1 - i0;
    if m == 0 {
        return;
    }
    let tiles = m.div_ceil(L::ROWS);
    let (base, taller) = (m / tiles, m % tiles);
    let mut i = i0;
    for t in 0..tiles {
        let h = base + usize::from(t < taller);
        macro_rules! heights {
            ($($r:literal)*) => {
                match h {
                    // SAFETY: rows i..i+h lie within i0..i1 (the heights sum to m), the caller's
                    // guarantee for the rest.
                    $($r => unsafe { tile::<L, $r>(x, a, g, i, acc) },)*
                    _ => unreachable!("tiles are at most ROWS = {} high", L::ROWS),
                }
            };
        }
        if L::ROWS > 8 {
            heights!(1 2 3 4 5 6 7 8 9 10 11 12);
        } else {
            heights!(1 2 3 4 5 6);
        }
        i += h;
    }
}

/// `acc[i, j]` (`acc` is `[a.rows, x.rows]`) for activation rows `i0..i1` and every row of `x`:
/// tiles of `L::ROWS` input rows by one group, each block's integer sums in registers.
///
/// # Safety
/// The CPU has the instructions of `L` (the wasm lanes and the scalar ones need none beyond
/// the build's); the shapes are checked here.
#[inline(always)]
pub unsafe fn dot_panel<L: ColLanes>(x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
    let cols = L::LAYOUT.cols;
    assert!(x.layout == L::LAYOUT, "weights interleaved as {:?}, read as {:?}", x.layout, L::LAYOUT);
    assert!(a.per == x.per && i0 <= i1 && i1 <= a.rows && acc.len() >= a.rows * x.rows);
    assert!(x.qs.len() == x.groups * x.per * BLOCK * cols && x.d.len() == x.groups * x.per * cols);
    assert!(a.qs.len() >= a.rows * a.per * BLOCK);
    if L::LAYOUT.order == Order::Quads {
        assert!(a.digits.len() >= a.rows * a.per * 2 * BLOCK && x.wsum.len() == x.d.len());
    }
    for g in 0..x.groups {
        // SAFETY: g < groups, rows i0..i1 <= a.rows, the buffers were asserted, and the
        // caller's guarantee for the instructions.
        unsafe { rows::<L>(x, a, g, i0, i1, acc) }
    }
}

/// [`Order::Pairs`] on plain arrays, lane for lane what [`Simd128`](simd128::Simd128) does.
pub struct ScalarPairs;

/// Bytes of one quad of k across a wasm group's columns.
const WASM_QUAD: usize = 4 * WASM_COLS;

impl ColLanes for ScalarPairs {
    const LAYOUT: Layout = Layout { order: Order::Pairs, cols: WASM_COLS };
    const ROWS: usize = ROWS_16_REGISTERS;
    type W = [i32; WASM_QUAD];
    type I = [i32; WASM_COLS];
    type F = [f32; WASM_COLS];
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> [i32; WASM_QUAD] {
        let w = &x.qs[x.quad(g, b, q)..][..WASM_QUAD];
        std::array::from_fn(|t| w[t] as i32)
    }
    unsafe fn zero_i() -> [i32; WASM_COLS] {
        [0; WASM_COLS]
    }
    unsafe fn zero_f() -> [f32; WASM_COLS] {
        [0.0; WASM_COLS]
    }
    unsafe fn dot(
        acc: [i32; WASM_COLS],
        w: &[i32; WASM_QUAD],
        a: &ActRows,
        i: usize,
        b: usize,
        q: usize,
    ) -> [i32; WASM_COLS] {
        let v = &a.block(i, b)[4 * q..][..4];
        let h = WASM_QUAD / 2;
        std::array::from_fn(|c| {
            let lo = w[2 * c] * v[0] as i32 + w[2 * c + 1] * v[1] as i32;
            let hi = w[h + 2 * c] * v[2] as i32 + w[h + 2 * c + 1] * v[3] as i32;
            acc[c] + (lo + hi)
        })
    }
    unsafe fn fold(
        sum: [f32; WASM_COLS],
        acc: [i32; WASM_COLS],
        x: &Interleaved,
        g: usize,
        b: usize,
    ) -> [f32; WASM_COLS] {
        let d = &x.d[x.scales(g, b)..][..WASM_COLS];
        std::array::from_fn(|c| sum[c] + acc[c] as f32 * d[c])
    }
    unsafe fn store(v: [f32; WASM_COLS], out: &mut [f32]) {
        out.copy_from_slice(&v[..out.len()]);
    }
}

/// [`Order::Quads`] on plain arrays, lane for lane what [`Relaxed`](relaxed::Relaxed) does.
pub struct ScalarQuads;

impl ColLanes for ScalarQuads {
    const LAYOUT: Layout = Layout { order: Order::Quads, cols: WASM_COLS };
    const ROWS: usize = ROWS_16_REGISTERS;
    type W = [i32; WASM_QUAD];
    /// The high digits' sums, then the low ones'.
    type I = ([i32; WASM_COLS], [i32; WASM_COLS]);
    type F = [f32; WASM_COLS];
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> [i32; WASM_QUAD] {
        // SAFETY: the same guarantee.
        unsafe { ScalarPairs::weights(x, g, b, q) }
    }
    unsafe fn zero_i() -> ([i32; WASM_COLS], [i32; WASM_COLS]) {
        ([0; WASM_COLS], [0; WASM_COLS])
    }
    unsafe fn zero_f() -> [f32; WASM_COLS] {
        [0.0; WASM_COLS]
    }
    unsafe fn dot(
        (h, l): ([i32; WASM_COLS], [i32; WASM_COLS]),
        w: &[i32; WASM_QUAD],
        a: &ActRows,
        i: usize,
        b: usize,
        q: usize,
    ) -> ([i32; WASM_COLS], [i32; WASM_COLS]) {
        let (hi, lo) = a.digit_block(i, b);
        let lane = |d: &[i8], c: usize| (0..4).map(|t| w[4 * c + t] * d[4 * q + t] as i32).sum::<i32>();
        (std::array::from_fn(|c| h[c] + lane(hi, c)), std::array::from_fn(|c| l[c] + lane(lo, c)))
    }
    unsafe fn fold(
        sum: [f32; WASM_COLS],
        (h, l): ([i32; WASM_COLS], [i32; WASM_COLS]),
        x: &Interleaved,
        g: usize,
        b: usize,
    ) -> [f32; WASM_COLS] {
        let at = x.scales(g, b);
        let (d, corr) = (&x.d[at..at + WASM_COLS], &x.wsum[at..at + WASM_COLS]);
        std::array::from_fn(|c| sum[c] + ((h[c] << 7) + l[c] + corr[c]) as f32 * d[c])
    }
    unsafe fn store(v: [f32; WASM_COLS], out: &mut [f32]) {
        out.copy_from_slice(&v[..out.len()]);
    }
}

#[cfg(target_arch = "wasm32")]
pub mod simd128 {
    use super::{ColLanes, Interleaved, Layout, Order, ROWS_16_REGISTERS, WASM_COLS};
    use crate::backend::cpu::qmatmul::ActRows;
    use crate::quant::BLOCK;
    use std::arch::wasm32::*;

    /// [`ColLanes`] in wasm SIMD128 (the crate is built with `+simd128`, see
    /// .cargo/config.toml).
    pub struct Simd128;

    impl ColLanes for Simd128 {
        const LAYOUT: Layout = Layout { order: Order::Pairs, cols: WASM_COLS };
        const ROWS: usize = ROWS_16_REGISTERS;
        /// The quad's two halves as i16x8.
        type W = (v128, v128);
        type I = v128;
        type F = v128;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> (v128, v128) {
            // Two loads that sign-extend (`v128.load8x8_s`, one `pmovsxbw` from memory each)
            // instead of a load and two extends (the high one is a shuffle and a `pmovsxbw`).
            // SAFETY: the quad's 16 bytes exist (the caller's guarantee); no alignment needed.
            unsafe {
                let p = x.qs.as_ptr().add(x.quad(g, b, q));
                (i16x8_load_extend_i8x8(p), i16x8_load_extend_i8x8(p.add(8)))
            }
        }
        #[inline(always)]
        unsafe fn zero_i() -> v128 {
            i32x4_splat(0)
        }
        #[inline(always)]
        unsafe fn zero_f() -> v128 {
            f32x4_splat(0.0)
        }
        #[inline(always)]
        unsafe fn dot(acc: v128, w: &(v128, v128), a: &ActRows, i: usize, b: usize, q: usize) -> v128 {
            // SAFETY: row i, block b exist (the caller's guarantee): 32 i16 from there.
            let (lo, hi) = unsafe {
                let p = a.qs.as_ptr().add((i * a.per + b) * BLOCK + 4 * q) as *const u32;
                (v128_load32_splat(p), v128_load32_splat(p.add(1)))
            };
            i32x4_add(acc, i32x4_add(i32x4_dot_i16x8(w.0, lo), i32x4_dot_i16x8(w.1, hi)))
        }
        #[inline(always)]
        unsafe fn fold(sum: v128, acc: v128, x: &Interleaved, g: usize, b: usize) -> v128 {
            // SAFETY: the group's block exists (the caller's guarantee): 4 f32 there.
            let d = unsafe { v128_load(x.d.as_ptr().add(x.scales(g, b)) as *const v128) };
            f32x4_add(sum, f32x4_mul(f32x4_convert_i32x4(acc), d))
        }
        #[inline(always)]
        unsafe fn store(v: v128, out: &mut [f32]) {
            let lanes = [
                f32x4_extract_lane::<0>(v),
                f32x4_extract_lane::<1>(v),
                f32x4_extract_lane::<2>(v),
                f32x4_extract_lane::<3>(v),
            ];
            out.copy_from_slice(&lanes[..out.len()]);
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub mod relaxed {
    use super::simd128::Simd128;
    use super::{ColLanes, Interleaved, Layout, Order, ROWS_16_REGISTERS, WASM_COLS};
    use crate::backend::cpu::qmatmul::ActRows;
    use crate::quant::BLOCK;
    use std::arch::wasm32::*;

    /// [`ColLanes`] in wasm relaxed SIMD (the second wasm build, scripts/build-wasm.sh).
    pub struct Relaxed;

    impl ColLanes for Relaxed {
        const LAYOUT: Layout = Layout { order: Order::Quads, cols: WASM_COLS };
        const ROWS: usize = ROWS_16_REGISTERS;
        type W = v128;
        type I = (v128, v128);
        type F = v128;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> v128 {
            // SAFETY: the quad's 16 bytes exist (the caller's guarantee).
            unsafe { v128_load(x.qs.as_ptr().add(x.quad(g, b, q)) as *const v128) }
        }
        #[inline(always)]
        unsafe fn zero_i() -> (v128, v128) {
            (i32x4_splat(0), i32x4_splat(0))
        }
        #[inline(always)]
        unsafe fn zero_f() -> v128 {
            f32x4_splat(0.0)
        }
        #[inline(always)]
        unsafe fn dot((h, l): (v128, v128), w: &v128, a: &ActRows, i: usize, b: usize, q: usize) -> (v128, v128) {
            // SAFETY: row i, block b exist (the caller's guarantee): 32 high digits, then 32 low.
            let (dh, dl) = unsafe {
                let p = a.digits.as_ptr().add((i * a.per + b) * 2 * BLOCK + 4 * q);
                (v128_load32_splat(p as *const u32), v128_load32_splat(p.add(BLOCK) as *const u32))
            };
            (i32x4_relaxed_dot_i8x16_i7x16_add(*w, dh, h), i32x4_relaxed_dot_i8x16_i7x16_add(*w, dl, l))
        }
        #[inline(always)]
        unsafe fn fold(sum: v128, (h, l): (v128, v128), x: &Interleaved, g: usize, b: usize) -> v128 {
            // SAFETY: the group's block exists (the caller's guarantee): 4 i32 there.
            let corr = unsafe { v128_load(x.wsum.as_ptr().add(x.scales(g, b)) as *const v128) };
            // SAFETY: the same.
            unsafe { Simd128::fold(sum, i32x4_add(i32x4_add(i32x4_shl(h, 7), l), corr), x, g, b) }
        }
        #[inline(always)]
        unsafe fn store(v: v128, out: &mut [f32]) {
            // SAFETY: the same.
            unsafe { Simd128::store(v, out) }
        }
    }
}

/// The x86 lanes, all [`Order::Pairs`] on i16 activations: each runs only inside its function
/// here, which enables its instructions (the lanes' `#[inline(always)]` bodies are compiled
/// there, so the intrinsics inline).
#[cfg(target_arch = "x86_64")]
pub mod x86 {
    use super::{ColLanes, Interleaved, Layout, Order, ROWS_16_REGISTERS};
    use crate::backend::cpu::qmatmul::ActRows;
    use crate::quant::BLOCK;
    use std::arch::x86_64::*;

    /// The activations' pairs `(k 4q, 4q+1)` and `(4q+2, 4q+3)` of block `b` of row `i`, each
    /// as one i32. Safety: row `i`, block `b` exist.
    #[inline(always)]
    unsafe fn pairs(a: &ActRows, i: usize, b: usize, q: usize) -> (i32, i32) {
        // SAFETY: the caller's guarantee: 32 i16 from the block's start.
        unsafe {
            let p = a.qs.as_ptr().add((i * a.per + b) * BLOCK + 4 * q) as *const i32;
            (p.read_unaligned(), p.add(1).read_unaligned())
        }
    }

    /// AVX2: 8 columns, `vpmaddwd` and an add per pair of k.
    pub struct Avx2;

    impl ColLanes for Avx2 {
        const LAYOUT: Layout = Layout { order: Order::Pairs, cols: 8 };
        const ROWS: usize = ROWS_16_REGISTERS;
        /// The quad's two halves (8 columns x 2 k each) as i16x16.
        type W = (__m256i, __m256i);
        type I = __m256i;
        type F = __m256;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> (__m256i, __m256i) {
            // SAFETY: the quad's 32 bytes exist (the caller's guarantee); `vpmovsxbw` from memory.
            unsafe {
                let p = x.qs.as_ptr().add(x.quad(g, b, q)) as *const __m128i;
                (_mm256_cvtepi8_epi16(_mm_loadu_si128(p)), _mm256_cvtepi8_epi16(_mm_loadu_si128(p.add(1))))
            }
        }
        #[inline(always)]
        unsafe fn zero_i() -> __m256i {
            // SAFETY: the caller's guarantee (AVX2).
            unsafe { _mm256_setzero_si256() }
        }
        #[inline(always)]
        unsafe fn zero_f() -> __m256 {
            // SAFETY: the same.
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn dot(acc: __m256i, w: &(__m256i, __m256i), a: &ActRows, i: usize, b: usize, q: usize) -> __m256i {
            // SAFETY: the caller's guarantee.
            unsafe {
                let (lo, hi) = pairs(a, i, b, q);
                let (lo, hi) = (_mm256_set1_epi32(lo), _mm256_set1_epi32(hi));
                _mm256_add_epi32(acc, _mm256_add_epi32(_mm256_madd_epi16(w.0, lo), _mm256_madd_epi16(w.1, hi)))
            }
        }
        #[inline(always)]
        unsafe fn fold(sum: __m256, acc: __m256i, x: &Interleaved, g: usize, b: usize) -> __m256 {
            // SAFETY: the group's block exists: 8 f32 there; AVX2.
            unsafe {
                let d = _mm256_loadu_ps(x.d.as_ptr().add(x.scales(g, b)));
                _mm256_add_ps(sum, _mm256_mul_ps(_mm256_cvtepi32_ps(acc), d))
            }
        }
        #[inline(always)]
        unsafe fn store(v: __m256, out: &mut [f32]) {
            let mut lanes = [0.0f32; 8];
            // SAFETY: 8 f32 fit in `lanes`; AVX2.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
            out.copy_from_slice(&lanes[..out.len()]);
        }
    }

    /// AVX-VNNI: [`Avx2`] with the product and its add in one `vpdpwssd`.
    pub struct AvxVnni;

    impl ColLanes for AvxVnni {
        const LAYOUT: Layout = Avx2::LAYOUT;
        const ROWS: usize = ROWS_16_REGISTERS;
        type W = (__m256i, __m256i);
        type I = __m256i;
        type F = __m256;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> (__m256i, __m256i) {
            // SAFETY (all): the caller's guarantee.
            unsafe { Avx2::weights(x, g, b, q) }
        }
        #[inline(always)]
        unsafe fn zero_i() -> __m256i {
            unsafe { Avx2::zero_i() }
        }
        #[inline(always)]
        unsafe fn zero_f() -> __m256 {
            unsafe { Avx2::zero_f() }
        }
        /// In assembly, as [`Avx512Vnni`]'s (LLVM splits the intrinsic); VEX has no broadcast
        /// operand, so the pairs are broadcast first.
        #[inline]
        #[target_feature(enable = "avx2,avxvnni")]
        unsafe fn dot(acc: __m256i, w: &(__m256i, __m256i), a: &ActRows, i: usize, b: usize, q: usize) -> __m256i {
            let mut acc = acc;
            // SAFETY: the caller's guarantee (the pairs exist); the instructions only write `acc`.
            unsafe {
                let (lo, hi) = pairs(a, i, b, q);
                std::arch::asm!(
                    "{{vex}} vpdpwssd {acc}, {w0}, {lo}",
                    "{{vex}} vpdpwssd {acc}, {w1}, {hi}",
                    acc = inout(ymm_reg) acc,
                    w0 = in(ymm_reg) w.0,
                    w1 = in(ymm_reg) w.1,
                    lo = in(ymm_reg) _mm256_set1_epi32(lo),
                    hi = in(ymm_reg) _mm256_set1_epi32(hi),
                    options(pure, nomem, nostack, preserves_flags),
                );
            }
            acc
        }
        #[inline(always)]
        unsafe fn fold(sum: __m256, acc: __m256i, x: &Interleaved, g: usize, b: usize) -> __m256 {
            unsafe { Avx2::fold(sum, acc, x, g, b) }
        }
        #[inline(always)]
        unsafe fn store(v: __m256, out: &mut [f32]) {
            unsafe { Avx2::store(v, out) }
        }
    }

    /// AVX-512 VNNI: 16 columns, `vpdpwssd` on zmm with the broadcast in the instruction; 32
    /// registers, so tiles of 12 input rows.
    pub struct Avx512Vnni;

    impl ColLanes for Avx512Vnni {
        const LAYOUT: Layout = Layout { order: Order::Pairs, cols: 16 };
        const ROWS: usize = 12;
        type W = (__m512i, __m512i);
        type I = __m512i;
        type F = __m512;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> (__m512i, __m512i) {
            // SAFETY (all): the caller's guarantee; the quad's 64 bytes exist.
            unsafe {
                let p = x.qs.as_ptr().add(x.quad(g, b, q)) as *const __m256i;
                (_mm512_cvtepi8_epi16(_mm256_loadu_si256(p)), _mm512_cvtepi8_epi16(_mm256_loadu_si256(p.add(1))))
            }
        }
        #[inline(always)]
        unsafe fn zero_i() -> __m512i {
            unsafe { _mm512_setzero_si512() }
        }
        #[inline(always)]
        unsafe fn zero_f() -> __m512 {
            unsafe { _mm512_setzero_ps() }
        }
        /// Written in assembly: LLVM splits `_mm512_dpwssd_epi32` into `vpmaddwd` + `vpaddd`
        /// (two uops on the vector ports where one does the work), whatever the target CPU.
        #[inline]
        #[target_feature(enable = "avx512f,avx512vnni")]
        unsafe fn dot(acc: __m512i, w: &(__m512i, __m512i), a: &ActRows, i: usize, b: usize, q: usize) -> __m512i {
            let mut acc = acc;
            // SAFETY: the pairs' 8 bytes exist (the caller's guarantee); the instructions only
            // read them and write `acc`.
            unsafe {
                let p = a.qs.as_ptr().add((i * a.per + b) * BLOCK + 4 * q);
                std::arch::asm!(
                    "vpdpwssd {acc}, {w0}, dword ptr [{p}]{{1to16}}",
                    "vpdpwssd {acc}, {w1}, dword ptr [{p} + 4]{{1to16}}",
                    acc = inout(zmm_reg) acc,
                    w0 = in(zmm_reg) w.0,
                    w1 = in(zmm_reg) w.1,
                    p = in(reg) p,
                    options(pure, readonly, nostack, preserves_flags),
                );
            }
            acc
        }
        #[inline(always)]
        unsafe fn fold(sum: __m512, acc: __m512i, x: &Interleaved, g: usize, b: usize) -> __m512 {
            unsafe {
                let d = _mm512_loadu_ps(x.d.as_ptr().add(x.scales(g, b)));
                _mm512_add_ps(sum, _mm512_mul_ps(_mm512_cvtepi32_ps(acc), d))
            }
        }
        #[inline(always)]
        unsafe fn store(v: __m512, out: &mut [f32]) {
            let mut lanes = [0.0f32; 16];
            unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
            out.copy_from_slice(&lanes[..out.len()]);
        }
    }

    /// [`super::dot_panel`] on [`Avx2`]. Safety: the CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        // SAFETY: the features are enabled here (the caller's guarantee).
        unsafe { super::dot_panel::<Avx2>(x, a, i0, i1, acc) }
    }

    /// [`super::dot_panel`] on [`AvxVnni`]. Safety: the CPU has AVX2, FMA and AVX-VNNI.
    #[target_feature(enable = "avx2,fma,avxvnni")]
    pub unsafe fn avxvnni(x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        // SAFETY: the same.
        unsafe { super::dot_panel::<AvxVnni>(x, a, i0, i1, acc) }
    }

    /// [`super::dot_panel`] on [`Avx512Vnni`]. Safety: the CPU has AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx2,fma,avx512f,avx512bw,avx512vnni")]
    pub unsafe fn avx512vnni(x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
        // SAFETY: the same.
        unsafe { super::dot_panel::<Avx512Vnni>(x, a, i0, i1, acc) }
    }
}
