//! ModernBERT (`model_type: modernbert`): gte-modernbert-base, modernbert-embed-base and other
//! ModernBERT embedders. Pre-LayerNorm layers without biases, rotary positions with one base on
//! global layers and another on local ones, local layers attending within a sliding window, a
//! global layer every `global_attn_every_n_layers`, a fused `Wqkv`, a GeGLU feed-forward layer
//! (`Wi` makes both halves) and a final norm. Names follow the checkpoint keys
//! (`embeddings.tok_embeddings`, `layers.N.attn.Wqkv`, `layers.N.mlp.Wi`, `final_norm`).
//! Reference: transformers/models/modernbert/modeling_modernbert.py (ModernBertEmbeddings,
//! ModernBertRotaryEmbedding, ModernBertAttention, ModernBertMLP, ModernBertEncoderLayer,
//! ModernBertModel).

use super::bert::{matrix, stored};
use super::zeros;
use crate::backend::{Attention, Backend, SeqMeta, rotary_table};
use crate::config::{MAX_ROTARY_POSITIONS, ModernBertConfig};
use crate::error::Result;
use crate::weights::WeightFile;

/// `layers.N.*` (ModernBertEncoderLayer).
struct ModernBertLayer<B: Backend> {
    /// `attn.Wqkv` `[3 * hidden, hidden]`: q, k, v stacked, as the attention op takes them.
    wqkv: B::Matrix,
    /// `attn.Wo`
    attn_wo: B::Matrix,
    /// `mlp_norm.weight` (no bias).
    mlp_norm: B::Vector,
    /// `mlp.Wi` `[2 * intermediate, hidden]`: its first half is the GELU'd `input`, the second
    /// the `gate` (ModernBertMLP: `input, gate = Wi(x).chunk(2)`; `act(input) * gate`), the
    /// order the glu op takes.
    mlp_wi: B::Matrix,
    /// `mlp.Wo`
    mlp_wo: B::Matrix,
    /// Global (full) attention, or local within the sliding window.
    global: bool,
}

pub struct ModernBertModel<B: Backend> {
    pub config: ModernBertConfig,
    /// `embeddings.tok_embeddings`
    tok_embeddings: B::Matrix,
    /// `embeddings.norm.weight`
    embeddings_norm: B::Vector,
    layers: Vec<ModernBertLayer<B>>,
    /// `layers.N.attn_norm.weight` for N >= 1 (layer 0's is an Identity), then `final_norm.weight`:
    /// entry i is the norm in front of block i + 1, which layer i applies to its output.
    next_norms: Vec<B::Vector>,
    /// The cos/sin tables `[max_position_embeddings, head_dim]` of `global_rope_theta` and
    /// `local_rope_theta`.
    rotary_global: B::Matrix,
    rotary_local: B::Matrix,
    /// Zeros for the biases ModernBERT has none of: `[3 * hidden]`, `[hidden]`,
    /// `[2 * intermediate]`; the LayerNorms' `bias=False` is the `[hidden]` one.
    no_bias: [B::Vector; 3],
}

impl<B: Backend> ModernBertModel<B> {
    pub fn load(b: &B, config: ModernBertConfig, file: &WeightFile) -> Result<Self> {
        let root = file.root();
        // ModernBertModel checkpoints have bare names; ModernBertForMaskedLM ones (the base
        // models) nest them under `model.`.
        let w = if root.contains("model.embeddings.tok_embeddings.weight") { root.pp("model") } else { root };
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let norm = |name: String| -> Result<B::Vector> { b.vector(w.get(&name, &[h])?) };
        let tok_embeddings = super::word_table(b, &w, "embeddings.tok_embeddings.weight", config.vocab_size, h)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        let mut next_norms = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = w.pp(format!("layers.{i}"));
            layers.push(ModernBertLayer {
                wqkv: matrix(b, stored(&l, "attn.Wqkv.weight", 3 * h, h)?)?,
                attn_wo: matrix(b, stored(&l, "attn.Wo.weight", h, h)?)?,
                mlp_norm: norm(format!("layers.{i}.mlp_norm.weight"))?,
                mlp_wi: matrix(b, stored(&l, "mlp.Wi.weight", 2 * inter, h)?)?,
                mlp_wo: matrix(b, stored(&l, "mlp.Wo.weight", h, inter)?)?,
                global: config.global_layers[i],
            });
            if i > 0 {
                next_norms.push(norm(format!("layers.{i}.attn_norm.weight"))?);
            }
        }
        next_norms.push(norm("final_norm.weight".into())?);
        let head_dim = h / config.num_attention_heads;
        let positions = config.max_position_embeddings.min(MAX_ROTARY_POSITIONS);
        Ok(ModernBertModel {
            tok_embeddings,
            embeddings_norm: norm("embeddings.norm.weight".into())?,
            layers,
            next_norms,
            rotary_global: b.table(rotary_table(config.global_rope_theta, head_dim, positions))?,
            rotary_local: b.table(rotary_table(config.local_rope_theta, head_dim, positions))?,
            no_bias: [zeros(b, 3 * h)?, zeros(b, h)?, zeros(b, 2 * inter)?],
            config,
        })
    }

    /// How the word table and the matrices are stored, as (word table, matrices).
    pub fn stored_as(&self, b: &B) -> (&'static str, &'static str) {
        let matrices = self.layers.first().map_or("f32", |l| b.stored_as(&l.wqkv));
        (b.stored_as(&self.tok_embeddings), matrices)
    }

    /// ids `[tokens]` -> last hidden state (after `final_norm`) `[tokens, hidden]`.
    pub fn forward(&self, b: &B, ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let e = self.embeddings(b, ids, meta)?;
        let (mut x, mut normed) = self.layer(b, 0, &e, &e, meta)?;
        for i in 1..self.layers.len() {
            (x, normed) = self.layer(b, i, &x, &normed, meta)?;
        }
        Ok(normed)
    }

    /// ModernBertEmbeddings: `norm(tok_embeddings(ids))`, no positions, no token types:
    /// `[tokens]` -> `[tokens, hidden]`.
    pub fn embeddings(&self, b: &B, ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let x = b.embed(ids, &[], meta, &self.tok_embeddings, None, None)?;
        b.layer_norm(x, None, &self.embeddings_norm, &self.no_bias[1], self.config.norm_eps)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `layers.{i}` (ModernBertEncoderLayer, pre-norm) on the residual stream `x` and its
    /// `attn_norm` (`x` itself in layer 0, whose attn_norm is an Identity), both
    /// `[tokens, hidden]` -> the new stream and its norm for the next block (the next layer's
    /// `attn_norm`, or `final_norm` after the last layer: then it is the model's output).
    pub fn layer(
        &self,
        b: &B,
        i: usize,
        x: &B::Tensor,
        attn_in: &B::Tensor,
        meta: &SeqMeta,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let [bias_qkv, bias_h, bias_mlp] = &self.no_bias;
        let heads = c.num_attention_heads;
        // ModernBertAttention: rotary q and k with this layer type's base, then attention
        // (within the window on local layers); x + Wo(ctx).
        // ModernBertAttention: the sliding-window mask is |i - j| <= local_attention / 2.
        let window = (!layer.global).then_some(c.local_attention / 2);
        let shape = Attention { window, ..Attention::multi_head(c.hidden_size, heads) };
        let qkv = b.linear(attn_in, &layer.wqkv, bias_qkv, None)?;
        let table = if layer.global { &self.rotary_global } else { &self.rotary_local };
        let qkv = b.rotary(qkv, meta, &shape, table)?;
        let ctx = b.attention(&qkv, meta, &shape)?;
        let a = b.linear(&ctx, &layer.attn_wo, bias_h, None)?;
        let x1 = b.add(&a, x)?;
        let mlp_in = b.layer_norm(a, Some(x), &layer.mlp_norm, bias_h, c.norm_eps)?;
        // ModernBertMLP: Wo(act(input) * gate); x1 + that.
        let wi = b.linear(&mlp_in, &layer.mlp_wi, bias_mlp, None)?;
        let m = b.glu(&wi, c.hidden_activation)?;
        let o = b.linear(&m, &layer.mlp_wo, bias_h, None)?;
        let x2 = b.add(&o, &x1)?;
        let next = b.layer_norm(o, Some(&x1), &self.next_norms[i], bias_h, c.norm_eps)?;
        Ok((x2, next))
    }
}
