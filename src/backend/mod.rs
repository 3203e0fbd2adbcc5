//! The dozen ops a sentence encoder needs, as a trait each compute device implements.
//!
//! The model (`crate::model`) is written once against [`Backend`]. Activations live in
//! `Backend::Tensor` as row-major `[tokens, cols]` matrices holding the sequences of a batch one
//! after another, unpadded ([`SeqMeta`] says where each starts), so no op ever computes on
//! padding. Weights are handed over once at load time and may be stored however the device
//! likes (quantized, f16…).

pub mod cpu;
pub mod gpu;

use std::future::Future;

use crate::config::{Activation, PoolMode};
use crate::error::Result;
use crate::quant::{QuantFormat, QuantMatrix};
use crate::weights::HostTensor;

/// Where the sequences of a batch lie in a `[tokens, cols]` tensor: sequence `b` is rows
/// `offsets[b] .. offsets[b] + lens[b]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqMeta {
    pub lens: Vec<u32>,
    pub offsets: Vec<u32>,
    /// First token pooled by mean/max in each sequence (prompt tokens before it are left out).
    pub starts: Vec<u32>,
    /// Total tokens: the row count of the batch's tensors.
    pub tokens: usize,
    pub max_len: usize,
}

impl SeqMeta {
    /// Sequences of `lens` tokens back to back; `starts` as in the field (clamped into range).
    pub fn new(lens: Vec<u32>, starts: Vec<u32>) -> SeqMeta {
        let mut offsets = Vec::with_capacity(lens.len());
        let mut tokens = 0u32;
        for &l in &lens {
            offsets.push(tokens);
            tokens += l;
        }
        let starts = lens.iter().zip(starts).map(|(&l, s)| s.min(l.saturating_sub(1))).collect();
        let max_len = lens.iter().copied().max().unwrap_or(0) as usize;
        SeqMeta { lens, offsets, starts, tokens: tokens as usize, max_len }
    }

    pub fn batch(&self) -> usize {
        self.lens.len()
    }

    /// Row range of sequence `b`.
    pub fn rows(&self, b: usize) -> std::ops::Range<usize> {
        let o = self.offsets[b] as usize;
        o..o + self.lens[b] as usize
    }
}

/// What every backend's `embed` checks first: ids for every token, texts no longer than the
/// position table, and ids inside their tables (a tokenizer that does not match the model).
/// `tables` are the (word, position, token type) row counts; None for a table the model does
/// not have (no limit from it; type ids unread).
pub(crate) fn check_embed_input(
    ids: &[u32],
    type_ids: &[u32],
    meta: &SeqMeta,
    words: usize,
    positions: Option<usize>,
    types: Option<usize>,
) -> Result<()> {
    if ids.len() != meta.tokens || (types.is_some() && type_ids.len() != meta.tokens) {
        return Err(crate::Error::Backend(format!("embed: {} ids for {} tokens", ids.len(), meta.tokens)));
    }
    if let Some(positions) = positions
        && meta.max_len > positions
    {
        return Err(crate::Error::Input(format!(
            "a text of {} tokens; the model has {positions} positions",
            meta.max_len
        )));
    }
    let typed = types.map(|t| ("token type id", type_ids, t));
    for (what, list, rows) in [("token id", ids, words)].into_iter().chain(typed) {
        if let Some(bad) = list.iter().find(|&&i| i as usize >= rows) {
            return Err(crate::Error::Input(format!(
                "{what} {bad} is outside the model's table of {rows} (tokenizer and model do not match)"
            )));
        }
    }
    Ok(())
}

/// The shape and the mask of one [`Backend::attention`] call.
///
/// `qkv` rows are `[q | k | v]`: `heads` query heads, then `kv_heads` key heads and as many
/// value heads, `head_dim` wide each. `kv_heads == heads` is multi-head attention (BERT);
/// fewer is grouped-query attention, query head `h` reading key/value head
/// `h / (heads / kv_heads)` (Qwen3, Mistral). `head_dim` need not be `hidden / heads` (Qwen3).
pub struct Attention<'a, M> {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// A relative-position table from [`Backend::table`] `[heads, 2 * span - 1]`: query i, key j
    /// (positions in their text) add `bias[h, clamp(j - i, 1 - span, span - 1) + span - 1]` to
    /// the scaled score (MPNet's buckets, T5-style biases).
    pub bias: Option<&'a M>,
    /// Query i sees only keys with `|j - i| <= window` (sliding-window attention: ModernBERT's
    /// local layers, `local_attention / 2`); None: the whole text.
    pub window: Option<usize>,
    /// Query i sees only keys `j <= i` (decoders used as embedders).
    pub causal: bool,
}

impl<M> Clone for Attention<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<M> Copy for Attention<'_, M> {}

impl<'a, M> Attention<'a, M> {
    /// Bidirectional multi-head attention over `dim`-wide q, k and v: BERT's.
    pub fn multi_head(dim: usize, heads: usize) -> Self {
        let head_dim = dim.checked_div(heads).unwrap_or(0);
        Attention { heads, kv_heads: heads, head_dim, bias: None, window: None, causal: false }
    }

    /// Width of the context it returns: `heads * head_dim`.
    pub fn out_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Width of the `qkv` rows it reads.
    pub fn qkv_dim(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// What every backend checks first: a shape that divides, `qkv` as wide as it says, and a
    /// bias table of one row per head and an odd width, whose span it returns (0: none).
    pub(crate) fn check(
        &self,
        qkv_rows: usize,
        qkv_cols: usize,
        meta: &SeqMeta,
        bias_shape: Option<(usize, usize)>,
    ) -> Result<usize> {
        let (heads, kv) = (self.heads, self.kv_heads);
        if heads == 0 || kv == 0 || self.head_dim == 0 || !heads.is_multiple_of(kv) {
            return Err(crate::Error::Backend(format!(
                "attention: {heads} query heads, {kv} key/value heads of {} dims",
                self.head_dim
            )));
        }
        if qkv_rows != meta.tokens || qkv_cols != self.qkv_dim() {
            return Err(crate::Error::Backend(format!(
                "attention: qkv [{qkv_rows}, {qkv_cols}] for {} tokens and ({heads} + 2 x {kv}) heads of {} dims",
                meta.tokens, self.head_dim
            )));
        }
        match bias_shape {
            None => Ok(0),
            Some((rows, cols)) if rows != heads || cols.is_multiple_of(2) => Err(crate::Error::Backend(format!(
                "attention: a bias table [{rows}, {cols}] for {heads} heads (want [{heads}, 2 * span - 1])"
            ))),
            Some((_, cols)) => Ok(cols.div_ceil(2)),
        }
    }
}

/// The cos/sin table [`Backend::rotary`] reads, `[positions, head_dim]`: row p holds
/// `cos(p · θ_i)` for i < head_dim / 2, then `sin(p · θ_i)`, with `θ_i = base^(-2i / head_dim)`.
/// Computed as transformers' default RoPE does in f32 (`inv_freq = 1 / base^(arange(0, d, 2) /
/// d)`, `freqs = position * inv_freq`), the cos and sin of those f32 angles taken in f64 and
/// rounded once. On the host, once per model: WGSL's sin/cos are only specified to 2^-11 on
/// [-π, π], far from the 1e-4 a text's last positions need. The power is correctly rounded;
/// torch's own f32 pow (SLEEF on x86-64) is an ulp off in one to three `inv_freq` entries for
/// some (head_dim, base) pairs. Measured against torch 2.15 over positions 0..8192: cos/sin
/// within 6e-8 at head_dim 64 (NomicBERT, ModernBERT, all four bases), 2.4e-7 at 256 with
/// EmbeddingGemma's 1e4/1e6, but 1.2e-4 at 128 or 256 with base 160000 (no such model here).
pub fn rotary_table(base: f32, head_dim: usize, positions: usize) -> HostTensor {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = (2 * i) as f32 / head_dim as f32;
            1.0 / (base as f64).powf(exponent as f64) as f32
        })
        .collect();
    let mut data = vec![0.0f32; positions * head_dim];
    for (p, row) in data.chunks_exact_mut(head_dim.max(1)).enumerate() {
        for (i, f) in inv_freq.iter().enumerate() {
            let angle = (p as f32 * f) as f64;
            row[i] = angle.cos() as f32;
            row[half + i] = angle.sin() as f32;
        }
    }
    HostTensor::new(vec![positions, head_dim], data)
}

/// What every backend's `rotary` checks: `qkv` as wide as the attention shape says, an even
/// head_dim, and a table `[rows, head_dim]` with a row for every position of the batch. Returns
/// the number of head-wide pieces of a row to rotate (the q and k heads).
pub(crate) fn check_rotary<M>(
    cols: usize,
    a: &Attention<'_, M>,
    table: (usize, usize),
    meta: &SeqMeta,
) -> Result<usize> {
    let hd = a.head_dim;
    if hd == 0 || !hd.is_multiple_of(2) || table.1 != hd || cols != a.qkv_dim() {
        return Err(crate::Error::Backend(format!(
            "rotary: {cols} columns for {} + 2 x {} heads of {hd} with a [{}, {}] table",
            a.heads, a.kv_heads, table.0, table.1
        )));
    }
    if meta.max_len > table.0 {
        return Err(crate::Error::Input(format!(
            "a text of {} tokens; the model's rotary table has {} positions",
            meta.max_len, table.0
        )));
    }
    Ok(a.heads + a.kv_heads)
}

/// What every backend's `rms_norm` checks: pieces that tile the row, a gain of whole pieces.
pub(crate) fn check_rms_norm(cols: usize, gamma: usize, width: usize) -> Result<()> {
    if width == 0 || !cols.is_multiple_of(width) || !gamma.is_multiple_of(width) || gamma > cols {
        return Err(crate::Error::Backend(format!("rms_norm: {cols} columns in pieces of {width}, a gain of {gamma}")));
    }
    Ok(())
}

/// How many texts and tokens one forward pass takes (see [`Backend::default_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    pub texts: usize,
    pub tokens: usize,
}

pub trait Backend {
    /// Activations, `[rows, cols]`.
    type Tensor;
    /// A weight matrix `[out, in]` or an embedding table `[rows, dim]`.
    type Matrix;
    /// A bias or layer-norm parameter `[dim]`.
    type Vector;

    /// Short description for logs and `info` ("cpu (2 threads)").
    fn name(&self) -> String;

    /// The model's activations may leave f16's range
    /// ([`crate::config::ModelConfig::activations_fit_f16`]): a backend that would multiply
    /// in f16 (the GPU's f16 matmul where the device has shader-f16) keeps f32 arithmetic.
    /// Called once, before the weights are loaded.
    fn keep_f32_arithmetic(&mut self) {}

    /// A forward pass gave non-finite values: a backend that computed in reduced arithmetic
    /// (f16 on a GPU) keeps f32 from now on and returns true, so the caller runs the batch
    /// again; false where nothing changed (the values are then the model's own).
    fn fall_back_to_f32(&self) -> bool {
        false
    }

    /// Takes ownership of a weight matrix `[out, in]`, which only `linear` reads: a backend may
    /// store it in a reduced format.
    fn matrix(&self, w: HostTensor) -> Result<Self::Matrix>;
    /// Takes a matrix or embedding table already in blocks (from a quantized file), as it is.
    fn quantized_matrix(&self, w: QuantMatrix) -> Result<Self::Matrix>;
    /// Takes ownership of a small embedding table `[rows, dim]` (positions, token types), which
    /// `embed` gathers rows from.
    fn table(&self, w: HostTensor) -> Result<Self::Matrix>;
    /// Takes ownership of the word-embedding table `[vocab, dim]`: the largest tensor of a small
    /// model, which a backend may store in blocks.
    fn word_table(&self, w: HostTensor) -> Result<Self::Matrix> {
        self.table(w)
    }
    /// The block format `word_table` stores the table in, if any: a loader then quantizes the
    /// table a slice of rows at a time ([`crate::weights::Weights::get_quantized`]) and hands
    /// over the blocks, so the table's f32 copy is never whole.
    fn word_table_format(&self) -> Option<QuantFormat> {
        None
    }
    /// The word table in blocks of [`Backend::word_table_format`], stored as `word_table`
    /// would store it.
    fn quantized_word_table(&self, w: QuantMatrix) -> Result<Self::Matrix> {
        self.quantized_matrix(w)
    }
    fn vector(&self, v: HostTensor) -> Result<Self::Vector>;
    /// How a matrix is stored: "f32", "f16", "q8_0" or "q4_1" (what `info` reports).
    fn stored_as(&self, m: &Self::Matrix) -> &'static str;

    /// `out[t] = word[ids[t]] + pos[position of t in its sequence] + types[type_ids[t]]`
    /// -> `[tokens, dim]`. A model without a position table (rotary positions) or without
    /// token types passes None for it, and that term is left out (`type_ids` are then unread).
    fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        meta: &SeqMeta,
        word: &Self::Matrix,
        pos: Option<&Self::Matrix>,
        types: Option<&Self::Matrix>,
    ) -> Result<Self::Tensor>;

    /// `act(x · wᵀ + b)`: x `[rows, in]`, w `[out, in]` -> `[rows, out]`.
    fn linear(
        &self,
        x: &Self::Tensor,
        w: &Self::Matrix,
        b: &Self::Vector,
        act: Option<Activation>,
    ) -> Result<Self::Tensor>;

    /// `LayerNorm(x + residual)` over the last dimension: `[rows, dim]` -> `[rows, dim]`.
    /// Takes `x` by value so a backend can normalize in place.
    fn layer_norm(
        &self,
        x: Self::Tensor,
        residual: Option<&Self::Tensor>,
        gamma: &Self::Vector,
        beta: &Self::Vector,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// Attention within each sequence, `softmax(q kᵀ / sqrt(head_dim) + bias) v` per head, as
    /// `a` shapes and masks it: `qkv` `[tokens, a.qkv_dim()]` -> context `[tokens, a.out_dim()]`.
    fn attention(&self, qkv: &Self::Tensor, meta: &SeqMeta, a: &Attention<'_, Self::Matrix>) -> Result<Self::Tensor>;

    /// Rotary position embedding (RoPE, the NeoX / rotate-half convention of transformers'
    /// `apply_rotary_pos_emb`), in place on the query and key heads of `qkv`, laid out as `a`
    /// says (`[tokens, (heads + 2 * kv_heads) * head_dim]`); the value heads are left alone.
    /// `table` `[positions, head_dim]`, from [`rotary_table`] through [`Backend::table`], holds
    /// row p = (cos of the head_dim / 2 angles of position p, then their sin); a token's
    /// position is counted within its text. For each q and k head and i < head_dim / 2, with
    /// (x1, x2) = (x[i], x[i + head_dim / 2]): `x[i] = x1 cos - x2 sin`,
    /// `x[i + head_dim / 2] = x2 cos + x1 sin`.
    fn rotary(
        &self,
        qkv: Self::Tensor,
        meta: &SeqMeta,
        a: &Attention<'_, Self::Matrix>,
        table: &Self::Matrix,
    ) -> Result<Self::Tensor>;

    /// RMSNorm, out of place: `x` `[rows, cols]` -> `[rows, cols]`, each row cut into pieces of
    /// `width` values; the first `gamma.len() / width` pieces p of a row become
    /// `x_p / sqrt(mean(x_p²) + eps) * gamma[p * width..(p + 1) * width]`, the others are copied.
    /// One piece per row (`width = cols`, gamma `[cols]`): a hidden state's norm. Pieces of
    /// head_dim: per-head norms of the q and k parts of a packed qkv, v copied (Gemma 3's
    /// q_norm/k_norm). The gain is used as given: Gemma's `(1 + w)` is formed at load.
    fn rms_norm(&self, x: &Self::Tensor, gamma: &Self::Vector, eps: f32, width: usize) -> Result<Self::Tensor>;

    /// `a + b` element-wise: `[rows, cols]` twice -> `[rows, cols]`. The residual stream of a
    /// pre-norm layer (ModernBERT), which needs the sum and its LayerNorm both: the model takes
    /// the sum here and the norm from `layer_norm(a, Some(b))`, rather than copy the sum.
    fn add(&self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;

    /// Gated linear unit on a stacked projection: `x` `[rows, 2 * n]` -> `[rows, n]`,
    /// `out[r, j] = act(x[r, j]) * x[r, n + j]` (SwiGLU with SiLU, GeGLU with GELU). The model
    /// stacks the gated half's weights first, so one matmul makes both halves.
    fn glu(&self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor>;

    /// Sentence vectors from token vectors: `[tokens, dim]` -> `[batch, modes.len() * dim]`,
    /// each mode's result side by side, then L2-normalized if asked.
    fn pool(&self, hidden: &Self::Tensor, meta: &SeqMeta, modes: &[PoolMode], normalize: bool) -> Result<Self::Tensor>;

    /// L2-normalizes every row: `[rows, cols]` -> `[rows, cols]` (the Normalize module when a
    /// `Dense` module comes between it and pooling).
    fn normalize(&self, x: Self::Tensor) -> Result<Self::Tensor>;

    /// Copies a tensor to host memory, row-major. Async because WebGPU readback is.
    fn read(&self, t: &Self::Tensor) -> impl Future<Output = Result<Vec<f32>>>;

    /// Copies several tensors to host memory; a GPU does it in one submit.
    fn read_many(&self, ts: &[&Self::Tensor]) -> impl Future<Output = Result<Vec<Vec<f32>>>> {
        async move {
            let mut out = Vec::with_capacity(ts.len());
            for t in ts {
                out.push(self.read(t).await?);
            }
            Ok(out)
        }
    }

    /// The most tokens one batch may hold when its widest activation is `widest` floats per
    /// token (a GPU's dispatch grid and binding size); the embedder splits batches to fit.
    fn max_batch_tokens(&self, widest: usize) -> usize {
        let _ = widest;
        usize::MAX
    }

    /// The batch the embedder forms when the caller names none: at most `texts` texts and
    /// `tokens` tokens.
    fn default_batch(&self) -> BatchSize {
        BatchSize { texts: 32, tokens: usize::MAX }
    }

    /// How many batches the embedder records before one read-back: a GPU wants few submits
    /// (8: 256 texts at the default batch size, one submit), the CPU computes as it records, so
    /// one lets the caller's event loop run between batches.
    fn batches_per_read(&self) -> usize {
        8
    }

    /// How many batches the embedder may run side by side, each from its own thread. A GPU
    /// wants one stream of work; the CPU backend says one per core, since whole batches side
    /// by side scale better than splitting every op between the cores.
    fn concurrent_batches(&self) -> usize {
        1
    }
}
