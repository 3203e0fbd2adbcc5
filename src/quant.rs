//! Block-quantized weight formats and their plain reference quantize/dequantize functions,
//! with ggml's semantics (so GGUF files map onto them directly). Each block covers 32
//! consecutive weights of one row; scales are stored as f16 bits.
//!
//! These are the reference the backends' kernels are tested against: the kernels read blocks
//! directly and never build a full-precision copy of a quantized matrix.
//!
//! Which 4-bit format: on all-MiniLM-L6-v2's matmul weights (examples/quant_error.rs) the
//! relative RMS error is 0.0806 for q4_1 (scale + min, 5.0 bits per weight) against 0.0899 for
//! q4_0 (symmetric, 4.5 bits), and 0.0057 for q8_0. q4_1 is wembed's q4: 10% less error for
//! 11% more bytes. Both are read (GGUF files carry either).

use bytemuck::{Pod, Zeroable};

/// Weights per block, in every format here.
pub const BLOCK: usize = 32;

/// ggml `block_q8_0`: `x ≈ d · q`, `d = max|x| / 127`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: u16,
    pub qs: [i8; BLOCK],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

/// ggml `block_q4_0`: symmetric 4-bit, `x ≈ d · (q - 8)`, `d = max / -8` where `max` is the
/// value of largest magnitude (sign kept). Nibbles: weight `i` in the low half of `qs[i]`,
/// weight `i + 16` in the high half.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: u16,
    pub qs: [u8; BLOCK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);

/// ggml `block_q4_1`: 4-bit with a minimum, `x ≈ d · q + m`, `d = (max - min) / 15`, `m = min`.
/// Nibbles as in [`BlockQ4_0`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: u16,
    pub m: u16,
    pub qs: [u8; BLOCK / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);

/// A weight matrix `[rows, cols]` already in q8_0 blocks, `cols.div_ceil(32)` per row: read
/// from a quantized file, handed to a backend without ever being dequantized whole.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    pub blocks: Vec<BlockQ8_0>,
}

impl QuantMatrix {
    pub fn quantize(rows: usize, cols: usize, data: &[f32]) -> QuantMatrix {
        QuantMatrix { rows, cols, blocks: data.chunks_exact(cols.max(1)).flat_map(quantize_q8_0).collect() }
    }

    /// Rows stacked: `[a, k]` and `[b, k]` -> `[a + b, k]`.
    pub fn vstack(parts: &[QuantMatrix]) -> QuantMatrix {
        QuantMatrix {
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: parts[0].cols,
            blocks: parts.iter().flat_map(|p| p.blocks.iter().copied()).collect(),
        }
    }
}

fn f16_bits(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

fn f16_value(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

/// Splits a row into blocks of [`BLOCK`], the last one zero-padded.
fn blocks(row: &[f32]) -> impl Iterator<Item = [f32; BLOCK]> + '_ {
    row.chunks(BLOCK).map(|c| {
        let mut b = [0.0f32; BLOCK];
        b[..c.len()].copy_from_slice(c);
        b
    })
}

pub fn quantize_q8_0(row: &[f32]) -> Vec<BlockQ8_0> {
    blocks(row)
        .map(|x| {
            let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut qs = [0i8; BLOCK];
            for (q, v) in qs.iter_mut().zip(&x) {
                *q = (v * id).round() as i8;
            }
            BlockQ8_0 { d: f16_bits(d), qs }
        })
        .collect()
}

pub fn dequantize_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_mut(BLOCK)) {
        let d = f16_value(b.d);
        for (o, q) in out.iter_mut().zip(&b.qs) {
            *o = d * *q as f32;
        }
    }
}

pub fn quantize_q4_0(row: &[f32]) -> Vec<BlockQ4_0> {
    blocks(row)
        .map(|x| {
            // The value of largest magnitude, sign kept: it lands exactly on q = 0 (-8·d).
            let max = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let d = max / -8.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
            let mut qs = [0u8; BLOCK / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                *byte = q(x[i]) | (q(x[i + BLOCK / 2]) << 4);
            }
            BlockQ4_0 { d: f16_bits(d), qs }
        })
        .collect()
}

pub fn dequantize_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_mut(BLOCK)) {
        let d = f16_value(b.d);
        let mut vals = [0.0f32; BLOCK];
        for (i, byte) in b.qs.iter().enumerate() {
            vals[i] = ((byte & 0x0f) as f32 - 8.0) * d;
            vals[i + BLOCK / 2] = ((byte >> 4) as f32 - 8.0) * d;
        }
        out.copy_from_slice(&vals[..out.len()]);
    }
}

pub fn quantize_q4_1(row: &[f32]) -> Vec<BlockQ4_1> {
    blocks(row)
        .enumerate()
        .map(|(bi, mut x)| {
            // The zero padding of a short last block must not widen its range.
            let real = (row.len() - bi * BLOCK).min(BLOCK);
            let (min, max) = x[..real].iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            x[real..].fill(min);
            let d = (max - min) / 15.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let q = |v: f32| (((v - min) * id + 0.5) as i32).clamp(0, 15) as u8;
            let mut qs = [0u8; BLOCK / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                *byte = q(x[i]) | (q(x[i + BLOCK / 2]) << 4);
            }
            BlockQ4_1 { d: f16_bits(d), m: f16_bits(min), qs }
        })
        .collect()
}

pub fn dequantize_q4_1(blocks: &[BlockQ4_1], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_mut(BLOCK)) {
        let (d, m) = (f16_value(b.d), f16_value(b.m));
        let mut vals = [0.0f32; BLOCK];
        for (i, byte) in b.qs.iter().enumerate() {
            vals[i] = (byte & 0x0f) as f32 * d + m;
            vals[i + BLOCK / 2] = (byte >> 4) as f32 * d + m;
        }
        out.copy_from_slice(&vals[..out.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with the shapes and quirks weights have: odd lengths (a padded last block), a zero
    /// block, an outlier, all-negative and all-equal blocks.
    fn rows() -> Vec<Vec<f32>> {
        let mut s = 0x9e3779b9u32;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        };
        let mut out = vec![];
        for len in [1, 7, 32, 33, 100, 384] {
            out.push((0..len).map(|_| rnd() * 0.1).collect());
        }
        out.push(vec![0.0; 64]);
        let mut outlier: Vec<f32> = (0..64).map(|_| rnd() * 0.01).collect();
        outlier[5] = 3.0;
        out.push(outlier);
        out.push((0..64).map(|_| -rnd().abs() - 0.5).collect());
        out.push(vec![0.25; 40]);
        out
    }

    /// Max abs error of each block against its budget, which takes the block's own range.
    fn check(name: &str, row: &[f32], deq: &[f32], budget: impl Fn(&[f32]) -> f32) {
        for (bi, (x, y)) in row.chunks(BLOCK).zip(deq.chunks(BLOCK)).enumerate() {
            let err = x.iter().zip(y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let allowed = budget(x);
            assert!(err <= allowed, "{name}: block {bi} of a {}-long row off by {err} (budget {allowed})", row.len());
        }
    }

    fn amax(x: &[f32]) -> f32 {
        x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    // Budgets: half a quantization step, plus the relative error of the f16 scale (2^-11)
    // applied to the largest weight.
    const F16_EPS: f32 = 1.0 / 2048.0;

    #[test]
    fn q8_0_round_trip_within_half_a_step() {
        for row in rows() {
            let mut deq = vec![0.0; row.len()];
            dequantize_q8_0(&quantize_q8_0(&row), &mut deq);
            check("q8_0", &row, &deq, |x| amax(x) / 127.0 * 0.5 + amax(x) * F16_EPS + 1e-12);
        }
    }

    #[test]
    fn q4_0_round_trip_within_one_step() {
        // The largest-magnitude value sits on q = 0; the other end of the range can be clamped
        // at q = 15 (7·d), so the budget there is a whole step d = amax / 8.
        for row in rows() {
            let mut deq = vec![0.0; row.len()];
            dequantize_q4_0(&quantize_q4_0(&row), &mut deq);
            check("q4_0", &row, &deq, |x| amax(x) / 8.0 + amax(x) * F16_EPS + 1e-12);
        }
    }

    #[test]
    fn q4_1_round_trip_within_half_a_step() {
        for row in rows() {
            let mut deq = vec![0.0; row.len()];
            dequantize_q4_1(&quantize_q4_1(&row), &mut deq);
            check("q4_1", &row, &deq, |x| {
                let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                (hi - lo) / 15.0 * 0.5 + amax(x) * 2.0 * F16_EPS + 1e-12
            });
        }
    }

    #[test]
    fn nibbles_follow_ggml_order() {
        // Weight i in the low nibble of byte i, weight i + 16 in the high nibble.
        let row: Vec<f32> = (0..32).map(|i| if i < 16 { -8.0 } else { 7.0 }).collect();
        let b = quantize_q4_0(&row)[0];
        assert_eq!(f16_value(b.d), 1.0);
        assert!(b.qs.iter().all(|&q| q == 0x0f << 4), "{:?}", b.qs);
    }
}
