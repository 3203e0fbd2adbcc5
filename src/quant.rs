//! Block-quantized weight formats and their plain reference quantize/dequantize functions,
//! with ggml's semantics (so GGUF files map onto them directly). Each block covers 32
//! consecutive weights of one row (the K-quants Q4_K, Q5_K, Q6_K: 256, see below); scales are
//! stored as f16 bits.
//!
//! These are the reference the backends' kernels are tested against: the kernels read blocks
//! directly and never build a full-precision copy of a quantized matrix.
//!
//! Which 4-bit format: on all-MiniLM-L6-v2's matmul weights (examples/quant_error.rs) the
//! relative RMS error is 0.0806 for q4_1 (scale + min, 5.0 bits per weight) against 0.0899 for
//! q4_0 (symmetric, 4.5 bits), and 0.0057 for q8_0. q4_1 is wembed's q4: 10% less error for
//! 11% more bytes, and less again with the searched scales of [`quantize_q4_1_search`]. q4_0
//! is read too (GGUF files carry it) and converts to q4_1 exactly.
//!
//! Where 4 bits go. Measured with examples/q4_search.rs (worst / mean cosine to the PyTorch
//! fixtures, 36 texts; the bar is 0.99 worst):
//!
//! | 4-bit where | worst | mean |
//! |---|---|---|
//! | every matmul, q4_1 min/max | 0.916 | 0.961 |
//! | every matmul, q4_1 searched scales | 0.931 | 0.969 |
//! | every matmul, q4_0 searched scales | 0.906 | 0.960 |
//! | every matmul, GPTQ q4_1 (256 STS-B calibration texts, PyTorch) | 0.935 | 0.970 |
//! | one layer's matmuls only (each of the six) | 0.972–0.994 | |
//! | word-embedding table only, q4_1 searched (matmuls q8_0) | 0.9975 | 0.999 |
//!
//! A 384-wide six-layer encoder has no slack for 4-bit matmuls: each single layer costs
//! 0.006–0.028 cosine and they add up. The word-embedding table, though, is half the model's
//! bytes and takes 4 bits almost for free. So wembed's `q4` stores the word table in q4_1 and
//! keeps the matrices in q8_0: 19.3 MB against 90.9 MB in f32 (4.7x smaller), worst cosine
//! 0.9975, STS-B 81.94 against 82.03. 4-bit matrices are still computed (GGUF q4 files), on both
//! backends, by the same kernels.
//!
//! The K-quants per GGUF architecture. Worst cosine to f32 over the fixture texts, every matrix
//! and the word table in the one K-quant (one-layer 256-wide models: `bert` the tiny BERT against
//! PyTorch, the others random weights against a float64 pass over the f32 weights they were
//! quantized from, wembed's vectors equal to that pass over the dequantized weights to 1e-7);
//! the bar tests/gguf.rs asserts in brackets (`K_TYPES`, `WIDE_256`):
//!
//! | GGUF architecture | Q4_K | Q5_K | Q6_K |
//! |---|---|---|---|
//! | `bert` (mean pooling) | 0.9952 (0.99) | 0.99901 (0.998) | 0.9997 (0.999) |
//! | `nomic-bert` (mean pooling) | 0.9982 (0.99) | 0.9995 (0.999) | 0.9999 (0.999) |
//! | `qwen3` (last token) | 0.9497 (0.94) | 0.98996 (0.985) | 0.9970 (0.99) |
//! | `llama`, as Mistral (last token) | 0.9755 (0.97) | 0.9940 (0.99) | 0.9984 (0.99) |
//!
//! So >= 0.999 holds for the encoders from Q5_K up (`bert` just: 0.99901), >= 0.99 for the
//! encoders in every K-quant and for the decoders in Q6_K (and `llama` in Q5_K); Q4_K costs a
//! decoder 0.025–0.05. A decoder's vector is one token's, so its errors are not averaged away as
//! a mean over tokens averages an encoder's. Where Qwen3's Q4_K loss comes from (the generator's
//! numpy pass, one tensor kind in Q4_K at a time): the word table 0.017 (the last token's own
//! row runs down the residual stream into the vector), k_proj 0.010, o_proj 0.009, q_proj 0.006,
//! v_proj 0.004, the MLP 0.002 each; and the same Q4_K weights run without the q/k norms lose
//! 0.034, not 0.050. These figures compare formats and architectures on small random models with
//! a plain min/max quantizer ([`quantize_q4_k`] & co.) and every tensor in one type; llama.cpp's
//! searched quantizer and its mixes (Q4_K_M keeps `attn_v` and `ffn_down` in Q6_K in some layers)
//! lose less, and a real checkpoint is measured with its own fixtures, as MiniLM's q4 was above.
//! For scale, Q8_0 on the 64-wide random files: 0.99998 `nomic-bert`, 0.9993 `qwen3`.

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

/// The block formats a [`QuantMatrix`] holds. q4_0 (symmetric) has no variant of its own: a
/// q4_0 block converts to q4_1 exactly (`m = -8·d`, a power-of-two multiple of an f16), so GGUF
/// q4_0 files load as q4_1 and the kernels have one 4-bit path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantFormat {
    Q8_0,
    Q4_1,
    /// llama.cpp's K-quants: super-blocks of [`QK_K`] = 256 weights (see [`BlockQ4K`]).
    Q4K,
    Q5K,
    Q6K,
}

impl QuantFormat {
    pub fn name(self) -> &'static str {
        match self {
            QuantFormat::Q8_0 => "q8_0",
            QuantFormat::Q4_1 => "q4_1",
            QuantFormat::Q4K => "q4_k",
            QuantFormat::Q5K => "q5_k",
            QuantFormat::Q6K => "q6_k",
        }
    }

    /// Bytes per block ([`QuantFormat::block_len`] weights).
    pub fn block_bytes(self) -> usize {
        match self {
            QuantFormat::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            QuantFormat::Q4_1 => std::mem::size_of::<BlockQ4_1>(),
            QuantFormat::Q4K => std::mem::size_of::<BlockQ4K>(),
            QuantFormat::Q5K => std::mem::size_of::<BlockQ5K>(),
            QuantFormat::Q6K => std::mem::size_of::<BlockQ6K>(),
        }
    }

    /// Weights per block: 32, or 256 for the K-quants.
    pub fn block_len(self) -> usize {
        if self.is_k() { QK_K } else { BLOCK }
    }

    /// A K-quant (super-blocks of 256; rows must be a multiple of 256 long, as in ggml).
    pub fn is_k(self) -> bool {
        matches!(self, QuantFormat::Q4K | QuantFormat::Q5K | QuantFormat::Q6K)
    }
}

/// The blocks of a [`QuantMatrix`], row by row.
#[derive(Debug, Clone, PartialEq)]
pub enum Blocks {
    Q8_0(Vec<BlockQ8_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
}

/// A weight matrix `[rows, cols]` in blocks, `cols.div_ceil(32)` per row (K-quants:
/// `cols / 256`, and `cols` a multiple of 256): read from a quantized
/// file or quantized at load, handed to a backend without ever being dequantized whole.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    pub blocks: Blocks,
}

impl QuantMatrix {
    /// Quantizes a row-major f32 matrix. q4_1 uses the error-minimizing search
    /// ([`quantize_q4_1_search`]), which loses 14% less than min/max on all-MiniLM-L6-v2.
    pub fn quantize(format: QuantFormat, rows: usize, cols: usize, data: &[f32]) -> QuantMatrix {
        let rows_of = || data.chunks_exact(cols.max(1));
        let blocks = match format {
            QuantFormat::Q8_0 => Blocks::Q8_0(rows_of().flat_map(quantize_q8_0).collect()),
            // The search costs ~20 µs a block: rows in parallel (a 30k-word table is 366k blocks).
            QuantFormat::Q4_1 => {
                use rayon::prelude::*;
                let rows: Vec<Vec<BlockQ4_1>> =
                    data.par_chunks_exact(cols.max(1)).map(|r| quantize_q4_1_search(r, None)).collect();
                Blocks::Q4_1(rows.into_iter().flatten().collect())
            }
            // Rows that are not a multiple of 256 long have no K-quant form (ggml refuses them
            // too): callers check `cols % 256` first ([`QuantMatrix::from_bytes`] does).
            QuantFormat::Q4K => Blocks::Q4K(rows_of().flat_map(quantize_q4_k).collect()),
            QuantFormat::Q5K => Blocks::Q5K(rows_of().flat_map(quantize_q5_k).collect()),
            QuantFormat::Q6K => Blocks::Q6K(rows_of().flat_map(quantize_q6_k).collect()),
        };
        QuantMatrix { rows, cols, blocks }
    }

    /// A matrix from a file's raw ggml blocks (`rows * cols.div_ceil(32)` of them, or
    /// `rows * cols / 256` for a K-quant, packed back to back), checking that every scale is
    /// finite.
    pub fn from_bytes(format: QuantFormat, rows: usize, cols: usize, bytes: &[u8]) -> Result<QuantMatrix, String> {
        if format.is_k() && !cols.is_multiple_of(QK_K) {
            return Err(format!(
                "rows of {cols} weights; {} stores rows in super-blocks of {QK_K}, so they must be a multiple of \
                 {QK_K} long (as in ggml)",
                format.name()
            ));
        }
        let count = rows * cols.div_ceil(format.block_len());
        if bytes.len() != count * format.block_bytes() {
            return Err(format!(
                "{} bytes of {} blocks; a [{rows}, {cols}] matrix takes {}",
                bytes.len(),
                format.name(),
                count * format.block_bytes()
            ));
        }
        fn read<T: Pod>(bytes: &[u8]) -> Vec<T> {
            bytes.chunks_exact(std::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()
        }
        let blocks = match format {
            QuantFormat::Q8_0 => Blocks::Q8_0(read(bytes)),
            QuantFormat::Q4_1 => Blocks::Q4_1(read(bytes)),
            QuantFormat::Q4K => Blocks::Q4K(read(bytes)),
            QuantFormat::Q5K => Blocks::Q5K(read(bytes)),
            QuantFormat::Q6K => Blocks::Q6K(read(bytes)),
        };
        let m = QuantMatrix { rows, cols, blocks };
        let finite = |bits: u16| half::f16::from_bits(bits).is_finite();
        let bad = match &m.blocks {
            Blocks::Q8_0(b) => b.iter().position(|b| !finite(b.d)),
            Blocks::Q4_1(b) => b.iter().position(|b| !finite(b.d) || !finite(b.m)),
            Blocks::Q4K(b) => b.iter().position(|b| !finite(b.d) || !finite(b.dmin)),
            Blocks::Q5K(b) => b.iter().position(|b| !finite(b.d) || !finite(b.dmin)),
            Blocks::Q6K(b) => b.iter().position(|b| !finite(b.d)),
        };
        match bad {
            Some(i) => Err(format!("non-finite scale in block {i}")),
            None => Ok(m),
        }
    }

    /// q4_0 blocks as q4_1, exactly: `d·(q − 8) = d·q + (−8·d)`.
    pub fn from_q4_0(rows: usize, cols: usize, blocks: &[BlockQ4_0]) -> QuantMatrix {
        let blocks =
            blocks.iter().map(|b| BlockQ4_1 { d: b.d, m: f16_bits(-8.0 * f16_value(b.d)), qs: b.qs }).collect();
        QuantMatrix { rows, cols, blocks: Blocks::Q4_1(blocks) }
    }

    pub fn format(&self) -> QuantFormat {
        match self.blocks {
            Blocks::Q8_0(_) => QuantFormat::Q8_0,
            Blocks::Q4_1(_) => QuantFormat::Q4_1,
            Blocks::Q4K(_) => QuantFormat::Q4K,
            Blocks::Q5K(_) => QuantFormat::Q5K,
            Blocks::Q6K(_) => QuantFormat::Q6K,
        }
    }

    /// Blocks per row.
    pub fn per_row(&self) -> usize {
        self.cols.div_ceil(self.format().block_len())
    }

    /// The blocks as the bytes a file stores.
    pub fn bytes(&self) -> &[u8] {
        match &self.blocks {
            Blocks::Q8_0(b) => bytemuck::cast_slice(b),
            Blocks::Q4_1(b) => bytemuck::cast_slice(b),
            Blocks::Q4K(b) => bytemuck::cast_slice(b),
            Blocks::Q5K(b) => bytemuck::cast_slice(b),
            Blocks::Q6K(b) => bytemuck::cast_slice(b),
        }
    }

    /// Rows `r0..r1` dequantized into `out` (`(r1 - r0) * cols` long).
    pub fn dequantize_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let (k, per) = (self.cols, self.per_row());
        for (r, dst) in (r0..r1).zip(out.chunks_exact_mut(k.max(1))) {
            match &self.blocks {
                Blocks::Q8_0(b) => dequantize_q8_0(&b[r * per..(r + 1) * per], dst),
                Blocks::Q4_1(b) => dequantize_q4_1(&b[r * per..(r + 1) * per], dst),
                Blocks::Q4K(b) => dequantize_q4_k(&b[r * per..(r + 1) * per], dst),
                Blocks::Q5K(b) => dequantize_q5_k(&b[r * per..(r + 1) * per], dst),
                Blocks::Q6K(b) => dequantize_q6_k(&b[r * per..(r + 1) * per], dst),
            }
        }
    }

    /// Rows `order[0]`, `order[1]`, … (each `< rows`) as a new matrix, their blocks copied as
    /// they are: `[rows, k]` -> `[order.len(), k]`.
    pub fn select_rows(&self, order: &[usize]) -> QuantMatrix {
        let per = self.per_row();
        macro_rules! pick {
            ($v:ident, $b:expr) => {
                Blocks::$v(order.iter().flat_map(|&r| $b[r * per..(r + 1) * per].iter().copied()).collect())
            };
        }
        let blocks = match &self.blocks {
            Blocks::Q8_0(b) => pick!(Q8_0, b),
            Blocks::Q4_1(b) => pick!(Q4_1, b),
            Blocks::Q4K(b) => pick!(Q4K, b),
            Blocks::Q5K(b) => pick!(Q5K, b),
            Blocks::Q6K(b) => pick!(Q6K, b),
        };
        QuantMatrix { rows: order.len(), cols: self.cols, blocks }
    }

    /// Rows stacked: `[a, k]` and `[b, k]` -> `[a + b, k]`; None when the formats or widths
    /// differ.
    pub fn vstack(parts: &[QuantMatrix]) -> Option<QuantMatrix> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.format() != first.format() || p.cols != first.cols) {
            return None;
        }
        macro_rules! stack {
            ($v:ident) => {
                Blocks::$v(
                    parts.iter().flat_map(|p| if let Blocks::$v(b) = &p.blocks { b.clone() } else { vec![] }).collect(),
                )
            };
        }
        let blocks = match first.format() {
            QuantFormat::Q8_0 => stack!(Q8_0),
            QuantFormat::Q4_1 => stack!(Q4_1),
            QuantFormat::Q4K => stack!(Q4K),
            QuantFormat::Q5K => stack!(Q5K),
            QuantFormat::Q6K => stack!(Q6K),
        };
        Some(QuantMatrix { rows: parts.iter().map(|p| p.rows).sum(), cols: first.cols, blocks })
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
            let amax = abs_max(&x);
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

/// The largest activation level of [`quantize_act_row`]: 14 bits, so that the relaxed-SIMD
/// kernel can split `q + 8192` into two 7-bit digits (`i32x4.relaxed_dot_i8x16_i7x16_add`
/// wants one side in 0..=127), and a q8_0 weight times it, summed over a block of 32, stays in
/// i32 with room. 14 bits against 15 changed no fixture: the step is still 1/8191 of the row's
/// largest value, far below q8_0's 1/127 of a block's.
pub const ACT_MAX: i16 = 8191;

/// `max |v|` over `row` (0 for an empty row) in eight lanes of compares, which vectorize.
#[inline(always)]
pub fn abs_max(row: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *l = if a > *l { a } else { *l };
        }
    }
    for v in tail {
        let a = v.abs();
        lanes[0] = if a > lanes[0] { a } else { lanes[0] };
    }
    lanes.into_iter().fold(0.0, |m, a| if a > m { a } else { m })
}

/// Quantizes one activation row on the fly for the integer matmuls: one f32 scale for the row,
/// `d = max|x| / ACT_MAX`, and `q = round(x / d)` as i16, so each value is off by at most `d / 2`;
/// returns `d`. Also `Σq` per block of 32 (q4_1's minimum needs it). `qs` is `sums.len() * 32`
/// long and zero past the row's end (the weights' last block is zero-padded the same way).
///
/// Why 16 bits and not ggml's q8_0 activations (int8, a scale per block of 32): on
/// all-MiniLM-L6-v2 those took the worst cosine to the PyTorch fixtures from 0.99948 (q8_0
/// weights alone) to 0.99864, under the 0.999 bar; blocks of 16 gave 0.99888 and of 8
/// 0.99912. Row-scaled i16 gives 0.99948, the same as f32 activations, and keeps the scale
/// out of the inner loop. Measured by fake-quantizing the activations of every linear layer.
#[inline(always)]
pub fn quantize_act_row(row: &[f32], qs: &mut [i16], sums: &mut [i32]) -> f32 {
    // Round to nearest (ties to even) by the 1.5·2^23 trick, exact for |v| < 2^22: after the
    // add, the sum's low mantissa bits are the rounded integer (offset by MAGIC's bits), read
    // without a float-to-int conversion. `f32::round` is a libm call on baseline x86-64; a
    // saturating `as i32` is a NaN test and two compares per element there and kept the loop
    // scalar (9% of a native q8 pass). In wasm, `f32::max` and `clamp` are calls to fmaxf /
    // fminf (their NaN rules are not wasm's), which took 12% of a q8 pass in Node: the loop is
    // an add, a subtract and an integer clamp, vector instructions everywhere. (A NaN input
    // gives a clamped level, not 0: it has no right level.)
    const MAGIC: f32 = 12_582_912.0;
    let magic_bits = MAGIC.to_bits() as i32;
    let amax = abs_max(row);
    let d = amax / ACT_MAX as f32;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    qs.fill(0);
    for (q, v) in qs.iter_mut().zip(row) {
        let level = ((v * id + MAGIC).to_bits() as i32).wrapping_sub(magic_bits);
        *q = level.clamp(-(ACT_MAX as i32), ACT_MAX as i32) as i16;
    }
    for (s, q) in sums.iter_mut().zip(qs.chunks(BLOCK)) {
        *s = q.iter().map(|&q| q as i32).sum();
    }
    d
}

impl BlockQ8_0 {
    pub fn scale(&self) -> f32 {
        f16_value(self.d)
    }
}

/// f16 bits to f32 without a table or a branch, for finite values (the loaders reject others):
/// the exponent and mantissa moved into place and rebiased by one multiplication by 2^112,
/// which also turns f16 subnormals into the right normal f32. Vectorizes, unlike a call into
/// `half` per block.
#[inline(always)]
pub fn f16_to_f32_finite(h: u16) -> f32 {
    let magnitude = f32::from_bits(((h & 0x7fff) as u32) << 13) * f32::from_bits(0x7780_0000); // 2^112
    f32::from_bits(magnitude.to_bits() | (((h & 0x8000) as u32) << 16))
}

impl BlockQ4_1 {
    pub fn scale(&self) -> f32 {
        f16_value(self.d)
    }
    pub fn min(&self) -> f32 {
        f16_value(self.m)
    }
    /// The 32 levels (0..=15) in weight order: `x ≈ d · level + m`.
    pub fn levels(&self) -> [i8; BLOCK] {
        let mut l = [0i8; BLOCK];
        for (i, byte) in self.qs.iter().enumerate() {
            l[i] = (byte & 0x0f) as i8;
            l[i + BLOCK / 2] = (byte >> 4) as i8;
        }
        l
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

/// Least-squares `(d, m)` for fixed levels `l`: minimizes `Σ w (d·l + m − x)²`.
fn fit_scale_min(x: &[f32; BLOCK], w: &[f32; BLOCK], l: &[u8; BLOCK]) -> Option<(f32, f32)> {
    let (mut sw, mut sl, mut sl2, mut sx, mut sxl) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for i in 0..BLOCK {
        let (w, l, x) = (w[i] as f64, l[i] as f64, x[i] as f64);
        sw += w;
        sl += w * l;
        sl2 += w * l * l;
        sx += w * x;
        sxl += w * x * l;
    }
    let det = sw * sl2 - sl * sl;
    if det <= 0.0 {
        return None;
    }
    Some((((sw * sxl - sx * sl) / det) as f32, ((sl2 * sx - sl * sxl) / det) as f32))
}

/// The real length of block `bi` of a `len`-long row (the last may be short), and its weights
/// in the squared error: `importance` per column, or 1; 0 on the zero padding.
fn block_weights(len: usize, bi: usize, importance: Option<&[f32]>) -> (usize, [f32; BLOCK]) {
    let real = (len - bi * BLOCK).min(BLOCK);
    let mut w = [0.0f32; BLOCK];
    for (i, w) in w[..real].iter_mut().enumerate() {
        *w = importance.map_or(1.0, |imp| imp[bi * BLOCK + i]);
    }
    (real, w)
}

/// q4_1 with the scale and minimum searched for the least (weighted) squared error instead of
/// taken from the block's range: candidate ranges, then a least-squares refit of `d` and `m`
/// for the levels each gives (the idea of ggml's `make_qkx2_quants`).
pub fn quantize_q4_1_search(row: &[f32], importance: Option<&[f32]>) -> Vec<BlockQ4_1> {
    blocks(row)
        .enumerate()
        .map(|(bi, x)| {
            let (real, w) = block_weights(row.len(), bi, importance);
            let (min, max) = x[..real].iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            // Rounding by +0.5 and truncation (values below 0 clamp to 0 either way): f32::round
            // is a libm call, and this runs 50 times per block over a whole vocabulary.
            let levels = |d: f32, m: f32| {
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut l = [0u8; BLOCK];
                for (l, v) in l.iter_mut().zip(&x) {
                    *l = (((v - m) * id + 0.5).max(0.0) as u32).min(15) as u8;
                }
                l
            };
            let error = |d: f32, m: f32, l: &[u8; BLOCK]| -> f32 {
                (0..BLOCK).map(|i| w[i] * (d * l[i] as f32 + m - x[i]).powi(2)).sum()
            };
            let round = |d: f32, m: f32| (f16_value(f16_bits(d)), f16_value(f16_bits(m)));
            let (d0, m0) = round((max - min) / 15.0, min);
            let mut best = (d0, m0, levels(d0, m0));
            let mut best_err = error(best.0, best.1, &best.2);
            if max > min {
                // 13 candidate ranges, one refit each: as good as 25 with two refits on
                // all-MiniLM-L6-v2 (worst cosine 0.9976 vs 0.9975) at a third of the time.
                for step in 0..=12 {
                    let d = (max - min) / (15.0 + (step as f32 - 4.0) * 0.2);
                    let Some((d, m)) = fit_scale_min(&x, &w, &levels(d, min)) else { continue };
                    let (d, m) = round(d, m);
                    let relevel = levels(d, m);
                    let err = error(d, m, &relevel);
                    if err < best_err {
                        best_err = err;
                        best = (d, m, relevel);
                    }
                }
            }
            let (d, m, l) = best;
            let mut qs = [0u8; BLOCK / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                *byte = l[i] | (l[i + BLOCK / 2] << 4);
            }
            BlockQ4_1 { d: f16_bits(d), m: f16_bits(m), qs }
        })
        .collect()
}

/// q4_0 with the scale searched for the least (weighted) squared error (ggml's
/// `make_qx_quants` idea): candidate scales around `max / -8`, each refit by least squares.
pub fn quantize_q4_0_search(row: &[f32], importance: Option<&[f32]>) -> Vec<BlockQ4_0> {
    blocks(row)
        .enumerate()
        .map(|(bi, x)| {
            let (_, w) = block_weights(row.len(), bi, importance);
            let max = x.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
            let levels = |d: f32| {
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut l = [0i8; BLOCK];
                for (l, v) in l.iter_mut().zip(&x) {
                    *l = (v * id).round().clamp(-8.0, 7.0) as i8;
                }
                l
            };
            let error = |d: f32, l: &[i8; BLOCK]| -> f64 {
                (0..BLOCK).map(|i| w[i] as f64 * ((d * l[i] as f32 - x[i]) as f64).powi(2)).sum()
            };
            let d0 = f16_value(f16_bits(max / -8.0));
            let mut best = (d0, levels(d0));
            let mut best_err = error(best.0, &best.1);
            if max != 0.0 {
                for step in -10..=10 {
                    let l = levels(max / -(8.0 + step as f32 * 0.1));
                    let (num, den) = (0..BLOCK).fold((0f64, 0f64), |(n, dd), i| {
                        (n + (w[i] * x[i] * l[i] as f32) as f64, dd + (w[i] * (l[i] as f32).powi(2)) as f64)
                    });
                    if den <= 0.0 {
                        continue;
                    }
                    let d = f16_value(f16_bits((num / den) as f32));
                    let l = levels(d);
                    let err = error(d, &l);
                    if err < best_err {
                        best_err = err;
                        best = (d, l);
                    }
                }
            }
            let (d, l) = best;
            let mut qs = [0u8; BLOCK / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                *byte = (l[i] + 8) as u8 | (((l[i + BLOCK / 2] + 8) as u8) << 4);
            }
            BlockQ4_0 { d: f16_bits(d), qs }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Where K-quants apply, and what they cost (measured 2026-12-01). A K-quant row must be a multiple
// of 256 long, so a model's matrices can be K-quants only where their input width is: in
// all-MiniLM-L6-v2 (384 wide) only `ffn_down` ([384, 1536]); in 768-wide models (BERT-base,
// all-mpnet-base-v2) and Qwen3-Embedding-0.6B (1024) every matrix. llama.cpp's quantizer gives the
// others another type, and so does generate.py (F32, to measure the K-quant alone).
//
// Worst / mean cosine to the PyTorch fp32 vectors, with our min/max reference quantizer (below;
// llama.cpp's searched one loses less):
//
// | model, what is K-quant | q4_k | q5_k | q6_k |
// |---|---|---|---|
// | tiny BERT 256 wide (tests/gguf.rs, 6 texts): every matrix, word and position tables | 0.9952 | 0.9990 | 0.9997 |
// | all-MiniLM-L6-v2 (36 texts of tests/fixtures/minilm.json): the six `ffn_down` only | 0.973 / 0.992 | 0.995 / 0.998 | 0.9987 / 0.9995 |
//
// (MiniLM: `generate.py assets/models/all-MiniLM-L6-v2 OUT.gguf q4_k` with the model's tokenizer
// and sentence-transformers files beside it.) So on MiniLM only q6_k keeps the 0.99 bar with
// margin for the rest of a mix, and none reaches 0.999; q8_0 (0.9995 for every matrix) stays
// wembed's choice for a model it quantizes itself. Relative RMS error on Gaussian weights: q4_k
// 0.078, q5_k 0.038, q6_k 0.019.
//
// K-quants (llama.cpp's `block_q4_K`, `block_q5_K`, `block_q6_K`, ggml-common.h): super-blocks of
// 256 weights with sub-block scales quantized against one or two f16 super-block scales. The
// dequantizations below follow gguf-py's `gguf.quants` (Q4_K / Q5_K / Q6_K `dequantize_blocks`)
// operation for operation in f32 (`(d·sc)·q − dmin·m`), so they are bit-exact against it
// (tests/gguf.rs checks random blocks). gguf-py 0.19 cannot quantize these types
// (`NotImplementedError`), so the quantizers here (and the generator's, in numpy) are simple
// reference quantizers of our own: min/max per sub-block, no error search. They exist to make
// valid blocks for tests; the files people publish come from llama.cpp's quantizer.

/// Weights per K-quant super-block (ggml `QK_K`).
pub const QK_K: usize = 256;

/// ggml `block_q4_K` (144 bytes): eight sub-blocks of 32, each with a 6-bit scale and a 6-bit
/// minimum packed into `scales` (see [`k_scale_min`]); `x ≈ (d·sc)·q − dmin·m`, `q` 4 bits.
/// `qs` byte `32j + l` holds weight `64j + l` in its low nibble and `64j + 32 + l` in its high.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ4K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);

/// ggml `block_q5_K` (176 bytes): [`BlockQ4K`] with a fifth bit per weight, bit `i` of `qh[l]`
/// for weight `32i + l`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; 12],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(std::mem::size_of::<BlockQ5K>() == 176);

/// ggml `block_q6_K` (210 bytes): sixteen sub-blocks of 16 with int8 scales, `x ≈ (d·sc)·(q − 32)`,
/// `q` 6 bits: low four in `ql`, high two in `qh`. In each half `h` of 128 weights, weight
/// `128h + r` has its low bits in nibble `r / 64` of `ql[64h + r % 64]` and its high bits at bit
/// `2·(r / 32)` of `qh[32h + r % 32]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: u16,
}
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);

/// Scale and minimum of sub-block `j` (0..8) of a Q4_K / Q5_K block (ggml `get_scale_min_k4`):
/// bytes 0-3 hold the low six bits of scales 0-3, bytes 4-7 those of minimums 0-3, and bytes
/// 8-11 the low nibbles of scales / minimums 4-7, whose top two bits sit in the top bits of
/// bytes 0-3 / 4-7.
pub fn k_scale_min(s: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// The inverse of [`k_scale_min`]: eight 6-bit scales and minimums into 12 bytes.
fn pack_scale_min(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0f) | ((m[j + 4] & 0x0f) << 4);
    }
    s
}

/// Weight `e` (0..256) of a Q4_K / Q5_K block: its low four bits.
#[inline(always)]
fn k_nibble(qs: &[u8; 128], e: usize) -> u8 {
    (qs[(e / 64) * 32 + e % 32] >> (4 * ((e / 32) % 2))) & 0x0f
}

pub fn dequantize_q4_k(blocks: &[BlockQ4K], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_value(b.d), f16_value(b.dmin));
        for (j, out) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k_scale_min(&b.scales, j);
            let (ds, dm) = (d * sc as f32, dmin * m as f32);
            for (l, o) in out.iter_mut().enumerate() {
                *o = ds * k_nibble(&b.qs, 32 * j + l) as f32 - dm;
            }
        }
    }
}

pub fn dequantize_q5_k(blocks: &[BlockQ5K], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let (d, dmin) = (f16_value(b.d), f16_value(b.dmin));
        for (j, out) in out.chunks_exact_mut(32).enumerate() {
            let (sc, m) = k_scale_min(&b.scales, j);
            let (ds, dm) = (d * sc as f32, dmin * m as f32);
            for (l, o) in out.iter_mut().enumerate() {
                let q = k_nibble(&b.qs, 32 * j + l) | (((b.qh[l] >> j) & 1) << 4);
                *o = ds * q as f32 - dm;
            }
        }
    }
}

/// Level `e` (0..256, 0..=63) of a Q6_K block.
#[inline(always)]
fn q6_level(b: &BlockQ6K, e: usize) -> u8 {
    let (h, r) = (e / 128, e % 128);
    let lo = (b.ql[64 * h + r % 64] >> (4 * (r / 64))) & 0x0f;
    let hi = (b.qh[32 * h + r % 32] >> (2 * (r / 32))) & 3;
    lo | (hi << 4)
}

pub fn dequantize_q6_k(blocks: &[BlockQ6K], out: &mut [f32]) {
    for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = f16_value(b.d);
        for (j, out) in out.chunks_exact_mut(16).enumerate() {
            let ds = d * b.scales[j] as f32;
            for (l, o) in out.iter_mut().enumerate() {
                *o = ds * (q6_level(b, 16 * j + l) as i32 - 32) as f32;
            }
        }
    }
}

/// Quantizes `v` against `scale` to 0..=max (round to nearest).
fn level(v: f32, scale: f32, max: u8) -> u8 {
    if scale == 0.0 { 0 } else { (v / scale).round().clamp(0.0, max as f32) as u8 }
}

/// Q4_K / Q5_K's shared part: per sub-block of 32 a range `[min(0, lo), hi]`, its step at
/// `max_q` levels, and the 6-bit scales / minimums against the f16 super-block scales; returns
/// (d, dmin, packed scales, every weight's level).
fn quantize_k_scale_min(x: &[f32], max_q: u8) -> (u16, u16, [u8; 12], [u8; QK_K]) {
    let (mut step, mut mins) = ([0f32; 8], [0f32; 8]);
    for j in 0..8 {
        let sub = &x[32 * j..32 * (j + 1)];
        let lo = sub.iter().fold(0f32, |m, &v| m.min(v));
        let hi = sub.iter().fold(f32::MIN, |m, &v| m.max(v));
        step[j] = (hi - lo) / max_q as f32;
        mins[j] = -lo;
    }
    let d = f16_value(f16_bits(step.iter().fold(0f32, |m, &v| m.max(v)) / 63.0));
    let dmin = f16_value(f16_bits(mins.iter().fold(0f32, |m, &v| m.max(v)) / 63.0));
    let (mut sc, mut m) = ([0u8; 8], [0u8; 8]);
    let mut q = [0u8; QK_K];
    for j in 0..8 {
        // The scale rounded up, so the sub-block's top still fits in max_q levels.
        sc[j] = if d == 0.0 { 0 } else { (step[j] / d).ceil().min(63.0) as u8 };
        m[j] = level(mins[j], dmin, 63);
        let (ds, dm) = (d * sc[j] as f32, dmin * m[j] as f32);
        for l in 0..32 {
            q[32 * j + l] = level(x[32 * j + l] + dm, ds, max_q);
        }
    }
    (f16_bits(d), f16_bits(dmin), pack_scale_min(&sc, &m), q)
}

/// A reference Q4_K quantizer (min/max per sub-block; see the section's opening comment).
pub fn quantize_q4_k(row: &[f32]) -> Vec<BlockQ4K> {
    row.chunks_exact(QK_K)
        .map(|x| {
            let (d, dmin, scales, q) = quantize_k_scale_min(x, 15);
            let mut qs = [0u8; QK_K / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                let (j, l) = (i / 32, i % 32);
                *byte = q[64 * j + l] | (q[64 * j + 32 + l] << 4);
            }
            BlockQ4K { d, dmin, scales, qs }
        })
        .collect()
}

/// A reference Q5_K quantizer (as [`quantize_q4_k`], 31 levels).
pub fn quantize_q5_k(row: &[f32]) -> Vec<BlockQ5K> {
    row.chunks_exact(QK_K)
        .map(|x| {
            let (d, dmin, scales, q) = quantize_k_scale_min(x, 31);
            let (mut qs, mut qh) = ([0u8; QK_K / 2], [0u8; QK_K / 8]);
            for (i, byte) in qs.iter_mut().enumerate() {
                let (j, l) = (i / 32, i % 32);
                *byte = (q[64 * j + l] & 15) | ((q[64 * j + 32 + l] & 15) << 4);
            }
            for (e, &q) in q.iter().enumerate() {
                qh[e % 32] |= (q >> 4) << (e / 32);
            }
            BlockQ5K { d, dmin, scales, qh, qs }
        })
        .collect()
}

/// A reference Q6_K quantizer: per sub-block of 16 the step `max|x| / 31`, as an int8 multiple
/// of the f16 super-block scale `d = max step / 127`, levels `q − 32` in −32..=31.
pub fn quantize_q6_k(row: &[f32]) -> Vec<BlockQ6K> {
    row.chunks_exact(QK_K)
        .map(|x| {
            let steps: Vec<f32> =
                x.chunks_exact(16).map(|s| s.iter().fold(0f32, |m, v| m.max(v.abs())) / 31.0).collect();
            let d = f16_value(f16_bits(steps.iter().fold(0f32, |m, &v| m.max(v)) / 127.0));
            let mut b = BlockQ6K { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; QK_K / 16], d: f16_bits(d) };
            for (j, s) in steps.iter().enumerate() {
                b.scales[j] = if d == 0.0 { 0 } else { (s / d).ceil().min(127.0) as i8 };
                let ds = d * b.scales[j] as f32;
                for l in 0..16 {
                    let e = 16 * j + l;
                    let q = level(x[e] + 32.0 * ds, ds, 63);
                    let (h, r) = (e / 128, e % 128);
                    b.ql[64 * h + r % 64] |= (q & 15) << (4 * (r / 64));
                    b.qh[32 * h + r % 32] |= (q >> 4) << (2 * (r / 32));
                }
            }
            b
        })
        .collect()
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
    fn activation_rows_quantize_within_half_a_step_with_their_sums() {
        for row in rows() {
            let per = row.len().div_ceil(BLOCK);
            let (mut qs, mut sums) = (vec![1i16; per * BLOCK], vec![0; per]);
            let d = quantize_act_row(&row, &mut qs, &mut sums);
            let deq: Vec<f32> = (0..row.len()).map(|i| qs[i] as f32 * d).collect();
            // One f32 scale for the row: half a step of the row's range, plus the f32 rounding of
            // `x / d` (up to 8191 · 2^-23 ≈ 0.001 of a step) and of `q · d`.
            let step = amax(&row) / ACT_MAX as f32;
            check("act i16", &row, &deq, |_| step * (0.5 + 0.01) + 1e-12);
            assert!(qs[row.len()..].iter().all(|&q| q == 0), "padding must be zero");
            for b in 0..per {
                assert_eq!(sums[b], qs[b * BLOCK..(b + 1) * BLOCK].iter().map(|&q| q as i32).sum::<i32>());
            }
        }
    }

    #[test]
    fn fast_f16_conversion_is_exact_for_every_finite_value() {
        for h in 0..=u16::MAX {
            let v = half::f16::from_bits(h);
            if v.is_finite() {
                assert_eq!(f16_to_f32_finite(h).to_bits(), v.to_f32().to_bits(), "{h:#06x}");
            }
        }
    }

    #[test]
    fn q4_1_levels_are_the_nibbles_in_weight_order() {
        let row: Vec<f32> = (0..32).map(|i| i as f32 * 0.1 - 1.0).collect();
        let b = quantize_q4_1(&row)[0];
        let mut deq = [0.0f32; 32];
        dequantize_q4_1(&[b], &mut deq);
        for (i, l) in b.levels().iter().enumerate() {
            assert_eq!(*l as f32 * b.scale() + b.min(), deq[i]);
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

    fn sq_err(row: &[f32], deq: &[f32]) -> f64 {
        row.iter().zip(deq).map(|(a, b)| ((a - b) as f64).powi(2)).sum()
    }

    #[test]
    fn searched_scales_never_lose_to_min_max_and_stay_within_a_step() {
        // The search starts from the min/max solution and keeps a candidate only when its
        // squared error is lower, so it can only gain; each weight stays within one step of
        // the block's range (a refit scale may move the ends by up to half a step).
        for row in rows() {
            let (mut plain, mut searched) = (vec![0.0; row.len()], vec![0.0; row.len()]);
            dequantize_q4_1(&quantize_q4_1(&row), &mut plain);
            dequantize_q4_1(&quantize_q4_1_search(&row, None), &mut searched);
            assert!(sq_err(&row, &searched) <= sq_err(&row, &plain) * (1.0 + 1e-6), "q4_1 search on {row:?}");
            check("q4_1 searched", &row, &searched, |x| {
                let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                (hi - lo) / 15.0 + amax(x) * 4.0 * F16_EPS + 1e-12
            });
            let (mut plain0, mut searched0) = (vec![0.0; row.len()], vec![0.0; row.len()]);
            dequantize_q4_0(&quantize_q4_0(&row), &mut plain0);
            dequantize_q4_0(&quantize_q4_0_search(&row, None), &mut searched0);
            assert!(sq_err(&row, &searched0) <= sq_err(&row, &plain0) * (1.0 + 1e-6), "q4_0 search on {row:?}");
        }
        // On weight-like data the search gains clearly (14% less squared error on MiniLM).
        let mut s = 7u32;
        let gaussianish: Vec<f32> = (0..4096)
            .map(|_| {
                let mut acc = 0.0;
                for _ in 0..4 {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    acc += s as f32 / u32::MAX as f32 - 0.5;
                }
                acc * 0.05
            })
            .collect();
        let (mut plain, mut searched) = (vec![0.0; 4096], vec![0.0; 4096]);
        dequantize_q4_1(&quantize_q4_1(&gaussianish), &mut plain);
        dequantize_q4_1(&quantize_q4_1_search(&gaussianish, None), &mut searched);
        let gain = 1.0 - sq_err(&gaussianish, &searched) / sq_err(&gaussianish, &plain);
        assert!(gain > 0.05, "search gained only {gain:.3}");
    }

    #[test]
    fn q4_0_converts_to_q4_1_exactly() {
        for row in rows() {
            let blocks = quantize_q4_0(&row);
            let q = QuantMatrix::from_q4_0(1, row.len(), &blocks);
            let (mut want, mut got) = (vec![0.0; row.len()], vec![0.0; row.len()]);
            dequantize_q4_0(&blocks, &mut want);
            q.dequantize_rows(0, 1, &mut got);
            assert_eq!(want, got);
        }
    }

    #[test]
    fn blocks_from_bytes_check_length_and_scales() {
        let q = QuantMatrix::quantize(QuantFormat::Q4_1, 2, 40, &[0.5; 80]);
        let back = QuantMatrix::from_bytes(QuantFormat::Q4_1, 2, 40, q.bytes()).unwrap();
        assert_eq!(back, q);
        let err = QuantMatrix::from_bytes(QuantFormat::Q8_0, 2, 40, q.bytes()).unwrap_err();
        assert!(err.contains("a [2, 40] matrix takes 136"), "{err}");
        let mut bad = q.bytes().to_vec();
        bad[20..22].copy_from_slice(&half::f16::NAN.to_bits().to_le_bytes());
        let err = QuantMatrix::from_bytes(QuantFormat::Q4_1, 2, 40, &bad).unwrap_err();
        assert!(err.contains("non-finite scale in block 1"), "{err}");
    }

    #[test]
    fn nibbles_follow_ggml_order() {
        // Weight i in the low nibble of byte i, weight i + 16 in the high nibble.
        let row: Vec<f32> = (0..32).map(|i| if i < 16 { -8.0 } else { 7.0 }).collect();
        let b = quantize_q4_0(&row)[0];
        assert_eq!(f16_value(b.d), 1.0);
        assert!(b.qs.iter().all(|&q| q == 0x0f << 4), "{:?}", b.qs);
    }

    #[test]
    fn k_scales_pack_and_unpack() {
        let sc = [0, 63, 17, 40, 1, 62, 33, 48];
        let m = [63, 0, 5, 31, 32, 16, 9, 63];
        let s = pack_scale_min(&sc, &m);
        for j in 0..8 {
            assert_eq!(k_scale_min(&s, j), (sc[j], m[j]), "sub-block {j}");
        }
    }

    #[test]
    fn k_quants_round_trip_within_their_steps() {
        // Budgets from the quantizers: a sub-block's step is its range over the levels, its
        // 6-bit (8-bit for Q6_K) scale rounded up by at most one unit of d, and the minimum is
        // off by up to half a unit of dmin; every weight within a step plus that.
        let mut s = 11u32;
        let row: Vec<f32> = (0..1024)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                let v = (s as f32 / u32::MAX as f32 - 0.5) * 0.2;
                if i == 300 { 2.0 } else { v }
            })
            .collect();
        let err = |deq: &[f32]| row.iter().zip(deq).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let rms = |deq: &[f32]| (sq_err(&row, deq) / row.len() as f64).sqrt();
        for format in [QuantFormat::Q4K, QuantFormat::Q5K, QuantFormat::Q6K] {
            let q = QuantMatrix::quantize(format, 4, 256, &row);
            assert_eq!(q.bytes().len(), 4 * format.block_bytes());
            let mut deq = vec![0.0; 1024];
            q.dequantize_rows(0, 4, &mut deq);
            let back = QuantMatrix::from_bytes(format, 4, 256, q.bytes()).unwrap();
            assert_eq!(back, q);
            // The block with the outlier has the coarsest steps: 2.1 / 15 for Q4_K.
            let levels = match format {
                QuantFormat::Q4K => 15.0,
                QuantFormat::Q5K => 31.0,
                _ => 31.0,
            };
            let worst = err(&deq);
            assert!(worst <= 2.1 / levels, "{format:?}: off by {worst}");
            eprintln!("{format:?}: max error {worst:.5}, rms {:.5}", rms(&deq));
        }
        let err = QuantMatrix::from_bytes(QuantFormat::Q4K, 1, 384, &[0; 144]).unwrap_err();
        assert!(err.contains("multiple of 256"), "{err}");
        let err = QuantMatrix::from_bytes(QuantFormat::Q6K, 2, 256, &[0; 210]).unwrap_err();
        assert!(err.contains("a [2, 256] matrix takes 420"), "{err}");
    }

    /// Picking rows (how a `llama` GGUF file's permuted q/k rows are put back) moves whole rows
    /// of blocks in every format: each picked row dequantizes to the row it was.
    #[test]
    fn selected_rows_dequantize_to_the_rows_picked() {
        let (rows, cols) = (6, 512);
        let data: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let order = [4, 0, 5, 1, 3];
        for format in [QuantFormat::Q8_0, QuantFormat::Q4_1, QuantFormat::Q4K, QuantFormat::Q5K, QuantFormat::Q6K] {
            let q = QuantMatrix::quantize(format, rows, cols, &data);
            let mut all = vec![0.0; rows * cols];
            q.dequantize_rows(0, rows, &mut all);
            let picked = q.select_rows(&order);
            assert_eq!((picked.rows, picked.cols, picked.format()), (order.len(), cols, format));
            let mut got = vec![0.0; order.len() * cols];
            picked.dequantize_rows(0, order.len(), &mut got);
            for (i, &r) in order.iter().enumerate() {
                assert_eq!(got[i * cols..(i + 1) * cols], all[r * cols..(r + 1) * cols], "{format:?} row {r}");
            }
        }
    }
}
