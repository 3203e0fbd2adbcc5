//! The dozen ops a sentence encoder needs, as a trait each compute device implements.
//!
//! The model (`crate::model`) is written once against [`Backend`]. Activations live in
//! `Backend::Tensor` as row-major `[rows, cols]` matrices, where `rows = batch * seq`; weights are
//! handed over once at load time and may be stored however the device likes (quantized, f16…).

pub mod cpu;

use std::future::Future;

use crate::config::{Activation, PoolMode};
use crate::error::Result;
use crate::weights::HostTensor;

/// Shape of the padded batch the ops work on: `batch` sequences of `seq` positions, of which the
/// first `lens[b]` are real tokens.
#[derive(Debug, Clone, Copy)]
pub struct SeqMeta<'a> {
    pub batch: usize,
    pub seq: usize,
    pub lens: &'a [u32],
    /// First token pooled by mean/max (prompt tokens before it are left out).
    pub starts: &'a [u32],
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

    /// Takes ownership of a weight matrix `[out, in]` (or embedding table `[rows, dim]`).
    fn matrix(&self, w: HostTensor) -> Result<Self::Matrix>;
    fn vector(&self, v: HostTensor) -> Result<Self::Vector>;

    /// `out[b, s] = word[ids[b, s]] + pos[s] + types[type_ids[b, s]]` -> `[batch * seq, dim]`.
    fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        meta: &SeqMeta,
        word: &Self::Matrix,
        pos: &Self::Matrix,
        types: &Self::Matrix,
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
    fn layer_norm(
        &self,
        x: &Self::Tensor,
        residual: Option<&Self::Tensor>,
        gamma: &Self::Vector,
        beta: &Self::Vector,
        eps: f32,
    ) -> Result<Self::Tensor>;

    /// Bidirectional multi-head attention with the padding mask.
    /// `qkv` `[batch * seq, 3 * dim]` (q, k, v side by side) -> context `[batch * seq, dim]`.
    fn attention(&self, qkv: &Self::Tensor, meta: &SeqMeta, heads: usize) -> Result<Self::Tensor>;

    /// Sentence vectors from token vectors: `[batch * seq, dim]` -> `[batch, modes.len() * dim]`,
    /// each mode's result side by side, then L2-normalized if asked.
    fn pool(
        &self,
        hidden: &Self::Tensor,
        meta: &SeqMeta,
        modes: &[PoolMode],
        normalize: bool,
    ) -> Result<Self::Tensor>;

    /// Copies a tensor to host memory, row-major. Async because WebGPU readback is.
    fn read(&self, t: &Self::Tensor) -> impl Future<Output = Result<Vec<f32>>>;
}
