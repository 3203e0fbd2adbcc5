//! The wasm integer kernels, on weights interleaved by output column.
//!
//! [`qmatmul`](super::qmatmul)'s x86 kernels give each i32 lane a share of one block's
//! elements and sum the lanes at the end. In wasm that costs a widening, a conversion and a
//! scaling per (weight row, input row, block) on four lanes that hold one output between them.
//! Here each lane is an output column instead: a tile's weight rows are interleaved in groups
//! of [`COLS`] ([`Interleaved`], built per tile from the [`Panel`]), an activation pair (or
//! quad) is splatted to all lanes, and one vector instruction advances four outputs. A block's
//! four i32 sums are converted and scaled by the four columns' block scales in one f32x4
//! multiply. Counted per block of 32, per input row and group of four outputs (128 products):
//! 16 `i32x4_dot_i16x8` and 16 adds, 3 f32 operations and a sixth of the weights' widening,
//! against ~56 vector operations in the lane-per-element layout.
//!
//! Two instances of one loop ([`dot_panel`]):
//! - [`Order::Pairs`] (SIMD128): a quad of k as 16 bytes, `[c0 k0, c0 k1, c1 k0, .., c3 k1 |
//!   c0 k2, c0 k3, .., c3 k3]`; each half widened to i16x8, `i32x4_dot_i16x8` against the
//!   activations' i16 pair splatted (`v128_load32_splat`);
//! - [`Order::Quads`] (relaxed SIMD): `[c0 k0..k3, c1 k0..k3, c2 .., c3 ..]`, one
//!   `i32x4_relaxed_dot_i8x16_i7x16_add` per digit against four 7-bit digits splatted
//!   ([`ActRows::digits`]): one `vpdpbusd` where the CPU has AVX-VNNI. Each lane's block sum is
//!   `128 · Σ w·hi + Σ w·lo - 8192 · Σ w`, the last term per column and block from
//!   [`Interleaved::wsum`], all exact in i32.
//!
//! Both form each block's exact integer sum and add `f32(sum) · d` in block order, as
//! [`portable_dot_panel`](super::qmatmul::portable_dot_panel) does, so their results equal the
//! portable kernel's bit for bit. [`ScalarPairs`] and [`ScalarQuads`] run the same loop natively
//! on plain arrays (the tests run them); only the lane operations differ in wasm.

use super::qmatmul::{ActRows, Panel};
use crate::quant::BLOCK;

/// Output columns per group: one i32x4 lane each.
pub const COLS: usize = 4;
/// Bytes of one quad of k across a group's columns.
const QUAD: usize = 4 * COLS;
/// Quads per block.
const QUADS: usize = BLOCK / 4;
/// Input rows per tile: six i32x4 block sums and six f32x4 totals, with the weights and a
/// splat, stay within the 16 vector registers V8 has on x86-64. Measured in Node (q8
/// all-MiniLM-L6-v2, 256 STS-B sentences at batch 32, three alternating runs on a noisy
/// machine): 4 rows 92-162 sentences/s (mean 113), 6 rows 101-158 (133), 8 rows 94-140 (121).
/// The rows past the last whole tile go in pairs, then alone.
const ROWS: usize = 6;

/// How a group's bytes are ordered within a quad of k (see the module's doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Order {
    Pairs,
    Quads,
}

/// Where element `r` of a quad of k of column `c` of a group lies in the quad's bytes.
#[inline(always)]
fn position(order: Order, c: usize, r: usize) -> usize {
    match order {
        Order::Pairs => (r / 2) * (QUAD / 2) + 2 * c + r % 2,
        Order::Quads => 4 * c + r,
    }
}

/// A panel's weight rows in groups of [`COLS`], interleaved in `order`; rows past the panel's
/// end are zero with scale 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Interleaved {
    pub order: Order,
    pub groups: usize,
    pub rows: usize,
    pub per: usize,
    /// `[groups, per, QUADS, QUAD]`.
    qs: Vec<i8>,
    /// `[groups, per, COLS]`: the columns' block scales.
    d: Vec<f32>,
    /// [`Order::Quads`] only (empty otherwise): `-8192 · Σ w` of each column's block,
    /// `[groups, per, COLS]`.
    wsum: Vec<i32>,
}

impl Interleaved {
    pub fn new(p: &Panel, order: Order) -> Interleaved {
        let (per, groups) = (p.per, p.rows.div_ceil(COLS));
        let mut qs = vec![0i8; groups * per * BLOCK * COLS];
        let mut d = vec![0.0f32; groups * per * COLS];
        let mut wsum = vec![0i32; if order == Order::Quads { groups * per * COLS } else { 0 }];
        for j in 0..p.rows {
            let (g, c) = (j / COLS, j % COLS);
            for b in 0..per {
                let gb = g * per + b;
                let w = p.block(j, b);
                d[gb * COLS + c] = p.d[j * per + b];
                if order == Order::Quads {
                    wsum[gb * COLS + c] = -8192 * w.iter().map(|&v| v as i32).sum::<i32>();
                }
                let dst = &mut qs[gb * BLOCK * COLS..][..BLOCK * COLS];
                for (t, &v) in w.iter().enumerate() {
                    dst[t / 4 * QUAD + position(order, c, t % 4)] = v;
                }
            }
        }
        Interleaved { order, groups, rows: p.rows, per, qs, d, wsum }
    }

    /// Row `j`'s element `t` (its level) and the scale of its block.
    pub fn level(&self, j: usize, t: usize) -> (i8, f32) {
        let (g, c, b, t) = (j / COLS, j % COLS, t / BLOCK, t % BLOCK);
        (self.qs[self.quad(g, b, t / 4) + position(self.order, c, t % 4)], self.d[(g * self.per + b) * COLS + c])
    }

    /// Offset of quad `q` of block `b` of group `g` in `qs`.
    #[inline(always)]
    fn quad(&self, g: usize, b: usize, q: usize) -> usize {
        ((g * self.per + b) * QUADS + q) * QUAD
    }
}

/// The lane operations of [`dot_panel`]: `W` one quad of a group's weights as the kernel holds
/// it, `I` a block's integer sums (one lane per column), `F` four f32 totals.
///
/// Safety of the `unsafe fn`s: `g < x.groups`, `b < x.per == a.per`, `q < QUADS`, `i < a.rows`,
/// and `a` has the buffers the order needs (checked once by [`dot_panel`]).
pub trait ColLanes {
    const ORDER: Order;
    type W: Copy;
    type I: Copy;
    type F: Copy;
    /// # Safety
    /// The indices exist (see the trait's doc).
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> Self::W;
    fn zero_i() -> Self::I;
    fn zero_f() -> Self::F;
    /// `acc` plus quad `q` of block `b`: weights `w` against activation row `i`.
    /// # Safety
    /// The indices exist (see the trait's doc).
    unsafe fn dot(acc: Self::I, w: &Self::W, a: &ActRows, i: usize, b: usize, q: usize) -> Self::I;
    /// `sum + f32(block sums) · d`, lane-wise, for block `b` of group `g`.
    /// # Safety
    /// The indices exist (see the trait's doc).
    unsafe fn fold(sum: Self::F, acc: Self::I, x: &Interleaved, g: usize, b: usize) -> Self::F;
    fn lanes(v: Self::F) -> [f32; COLS];
}

/// Input rows `r0..r0+R` against group `g`, written to `acc[(r0 + r) · x.rows + column]`.
/// Safety: as [`ColLanes`], for rows `r0..r0+R`.
#[inline(always)]
unsafe fn tile<L: ColLanes, const R: usize>(x: &Interleaved, a: &ActRows, g: usize, r0: usize, acc: &mut [f32]) {
    let mut sum = [L::zero_f(); R];
    for b in 0..x.per {
        let mut s = [L::zero_i(); R];
        for q in 0..QUADS {
            // SAFETY (all three): the caller's guarantee.
            let w = unsafe { L::weights(x, g, b, q) };
            for (r, s) in s.iter_mut().enumerate() {
                *s = unsafe { L::dot(*s, &w, a, r0 + r, b, q) };
            }
        }
        for (total, s) in sum.iter_mut().zip(s) {
            *total = unsafe { L::fold(*total, s, x, g, b) };
        }
    }
    let cols = COLS.min(x.rows - g * COLS);
    for (r, total) in sum.into_iter().enumerate() {
        let row = &mut acc[(r0 + r) * x.rows + g * COLS..][..cols];
        row.copy_from_slice(&L::lanes(total)[..cols]);
    }
}

/// `acc[i, j]` (`acc` is `[a.rows, x.rows]`) for activation rows `i0..i1` and every row of `x`:
/// tiles of [`ROWS`] input rows by one group, each block's integer sums in registers.
pub fn dot_panel<L: ColLanes>(x: &Interleaved, a: &ActRows, i0: usize, i1: usize, acc: &mut [f32]) {
    assert!(a.per == x.per && i0 <= i1 && i1 <= a.rows && acc.len() >= a.rows * x.rows);
    assert!(x.qs.len() == x.groups * x.per * BLOCK * COLS && x.d.len() == x.groups * x.per * COLS);
    assert!(a.qs.len() >= a.rows * a.per * BLOCK);
    if L::ORDER == Order::Quads {
        assert!(a.digits.len() >= a.rows * a.per * 2 * BLOCK && x.wsum.len() == x.d.len());
    }
    for g in 0..x.groups {
        let mut i = i0;
        while i + ROWS <= i1 {
            // SAFETY: g < groups, rows i..i+ROWS < i1 <= a.rows, and the buffers were asserted.
            unsafe { tile::<L, ROWS>(x, a, g, i, acc) };
            i += ROWS;
        }
        while i + 2 <= i1 {
            // SAFETY: as above, for rows i, i+1.
            unsafe { tile::<L, 2>(x, a, g, i, acc) };
            i += 2;
        }
        while i < i1 {
            // SAFETY: as above, for row i.
            unsafe { tile::<L, 1>(x, a, g, i, acc) };
            i += 1;
        }
    }
}

/// [`Order::Pairs`] on plain arrays, lane for lane what [`Simd128`](simd128::Simd128) does.
pub struct ScalarPairs;

impl ColLanes for ScalarPairs {
    const ORDER: Order = Order::Pairs;
    type W = [i32; QUAD];
    type I = [i32; COLS];
    type F = [f32; COLS];
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> [i32; QUAD] {
        let w = &x.qs[x.quad(g, b, q)..][..QUAD];
        std::array::from_fn(|t| w[t] as i32)
    }
    fn zero_i() -> [i32; COLS] {
        [0; COLS]
    }
    fn zero_f() -> [f32; COLS] {
        [0.0; COLS]
    }
    unsafe fn dot(acc: [i32; COLS], w: &[i32; QUAD], a: &ActRows, i: usize, b: usize, q: usize) -> [i32; COLS] {
        let v = &a.block(i, b)[4 * q..][..4];
        let h = QUAD / 2;
        std::array::from_fn(|c| {
            let lo = w[2 * c] * v[0] as i32 + w[2 * c + 1] * v[1] as i32;
            let hi = w[h + 2 * c] * v[2] as i32 + w[h + 2 * c + 1] * v[3] as i32;
            acc[c] + (lo + hi)
        })
    }
    unsafe fn fold(sum: [f32; COLS], acc: [i32; COLS], x: &Interleaved, g: usize, b: usize) -> [f32; COLS] {
        let d = &x.d[(g * x.per + b) * COLS..][..COLS];
        std::array::from_fn(|c| sum[c] + acc[c] as f32 * d[c])
    }
    fn lanes(v: [f32; COLS]) -> [f32; COLS] {
        v
    }
}

/// [`Order::Quads`] on plain arrays, lane for lane what [`Relaxed`](relaxed::Relaxed) does.
pub struct ScalarQuads;

impl ColLanes for ScalarQuads {
    const ORDER: Order = Order::Quads;
    type W = [i32; QUAD];
    /// The high digits' sums, then the low ones'.
    type I = ([i32; COLS], [i32; COLS]);
    type F = [f32; COLS];
    unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> [i32; QUAD] {
        // SAFETY: the same guarantee.
        unsafe { ScalarPairs::weights(x, g, b, q) }
    }
    fn zero_i() -> ([i32; COLS], [i32; COLS]) {
        ([0; COLS], [0; COLS])
    }
    fn zero_f() -> [f32; COLS] {
        [0.0; COLS]
    }
    unsafe fn dot(
        (h, l): ([i32; COLS], [i32; COLS]),
        w: &[i32; QUAD],
        a: &ActRows,
        i: usize,
        b: usize,
        q: usize,
    ) -> ([i32; COLS], [i32; COLS]) {
        let (hi, lo) = a.digit_block(i, b);
        let lane = |d: &[i8], c: usize| (0..4).map(|t| w[4 * c + t] * d[4 * q + t] as i32).sum::<i32>();
        (std::array::from_fn(|c| h[c] + lane(hi, c)), std::array::from_fn(|c| l[c] + lane(lo, c)))
    }
    unsafe fn fold(
        sum: [f32; COLS],
        (h, l): ([i32; COLS], [i32; COLS]),
        x: &Interleaved,
        g: usize,
        b: usize,
    ) -> [f32; COLS] {
        let at = (g * x.per + b) * COLS;
        let (d, corr) = (&x.d[at..at + COLS], &x.wsum[at..at + COLS]);
        std::array::from_fn(|c| sum[c] + ((h[c] << 7) + l[c] + corr[c]) as f32 * d[c])
    }
    fn lanes(v: [f32; COLS]) -> [f32; COLS] {
        v
    }
}

#[cfg(target_arch = "wasm32")]
pub mod simd128 {
    use super::{COLS, ColLanes, Interleaved, Order};
    use crate::backend::cpu::qmatmul::ActRows;
    use crate::quant::BLOCK;
    use std::arch::wasm32::*;

    /// [`ColLanes`] in wasm SIMD128 (the crate is built with `+simd128`, see
    /// .cargo/config.toml).
    pub struct Simd128;

    impl ColLanes for Simd128 {
        const ORDER: Order = Order::Pairs;
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
        fn zero_i() -> v128 {
            i32x4_splat(0)
        }
        #[inline(always)]
        fn zero_f() -> v128 {
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
            // SAFETY: the group's block exists (the caller's guarantee): COLS f32 there.
            let d = unsafe { v128_load(x.d.as_ptr().add((g * x.per + b) * COLS) as *const v128) };
            f32x4_add(sum, f32x4_mul(f32x4_convert_i32x4(acc), d))
        }
        #[inline(always)]
        fn lanes(v: v128) -> [f32; COLS] {
            [
                f32x4_extract_lane::<0>(v),
                f32x4_extract_lane::<1>(v),
                f32x4_extract_lane::<2>(v),
                f32x4_extract_lane::<3>(v),
            ]
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
pub mod relaxed {
    use super::simd128::Simd128;
    use super::{COLS, ColLanes, Interleaved, Order};
    use crate::backend::cpu::qmatmul::ActRows;
    use crate::quant::BLOCK;
    use std::arch::wasm32::*;

    /// [`ColLanes`] in wasm relaxed SIMD (the second wasm build, scripts/build-wasm.sh).
    pub struct Relaxed;

    impl ColLanes for Relaxed {
        const ORDER: Order = Order::Quads;
        type W = v128;
        type I = (v128, v128);
        type F = v128;
        #[inline(always)]
        unsafe fn weights(x: &Interleaved, g: usize, b: usize, q: usize) -> v128 {
            // SAFETY: the quad's 16 bytes exist (the caller's guarantee).
            unsafe { v128_load(x.qs.as_ptr().add(x.quad(g, b, q)) as *const v128) }
        }
        #[inline(always)]
        fn zero_i() -> (v128, v128) {
            (i32x4_splat(0), i32x4_splat(0))
        }
        #[inline(always)]
        fn zero_f() -> v128 {
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
            // SAFETY: the group's block exists (the caller's guarantee): COLS i32 there.
            let corr = unsafe { v128_load(x.wsum.as_ptr().add((g * x.per + b) * COLS) as *const v128) };
            // SAFETY: the same.
            unsafe { Simd128::fold(sum, i32x4_add(i32x4_add(i32x4_shl(h, 7), l), corr), x, g, b) }
        }
        #[inline(always)]
        fn lanes(v: v128) -> [f32; COLS] {
            Simd128::lanes(v)
        }
    }
}
