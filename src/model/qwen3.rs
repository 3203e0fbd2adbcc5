//! Decoder LLMs used as embedders: Qwen3 (`model_type: qwen3`, `Qwen3Model`, Qwen3-Embedding)
//! and the Mistral / Qwen2 family it generalizes (`mistral`, `MistralModel`, E5-mistral;
//! `qwen2`, `Qwen2Model`, gte-Qwen2). One forward pass: word embeddings, pre-norm RMSNorm layers,
//! rotary positions, causal grouped-query attention (sliding-window layers where the config
//! says), a SwiGLU feed-forward layer and a final norm. Qwen3 adds per-head RMSNorm of q and k;
//! Qwen2 has biases on q, k and v. Written once: the three families differ in those two terms
//! only (see [`DecoderConfig`]). The sentence vector is the last token's (the EOS the
//! tokenizer appends), pooled by the embedder as `1_Pooling/config.json` says.
//! Names follow the checkpoint keys (`embed_tokens`, `layers.N.self_attn.q_proj`,
//! `layers.N.mlp.gate_proj`, `norm`), bare as `XModel` saves them or under `model.` as
//! `XForCausalLM` checkpoints nest them.
//! Reference: transformers/models/qwen3/modeling_qwen3.py (Qwen3RMSNorm, Qwen3Attention,
//! Qwen3MLP, Qwen3DecoderLayer, Qwen3Model); transformers/models/qwen2/modeling_qwen2.py and
//! transformers/models/mistral/modeling_mistral.py for the others; the causal and
//! sliding-window masks: transformers/masking_utils.py.

use super::bert::{matrix, stored};
use super::{stack, zeros};
use crate::backend::{Attention, Backend, SeqMeta, rotary_table};
use crate::config::{Activation, DecoderConfig, MAX_ROTARY_POSITIONS};
use crate::error::Result;
use crate::weights::{HostTensor, WeightFile};

/// `layers.N.*` (Qwen3DecoderLayer, MistralDecoderLayer, Qwen2DecoderLayer).
struct DecoderLayer<B: Backend> {
    /// `input_layernorm`, `post_attention_layernorm`.
    norms: [B::Vector; 2],
    /// `self_attn.q_proj`, `k_proj`, `v_proj` stacked: `[(heads + 2 * kv_heads) * head_dim,
    /// hidden]`, the grouped-query layout the attention op reads.
    qkv: B::Matrix,
    /// Their biases (zeros where the family has none): `[(heads + 2 * kv_heads) * head_dim]`.
    qkv_bias: B::Vector,
    /// Qwen3's `self_attn.q_norm` for every query head, then `k_norm` for every key head,
    /// `[(heads + kv_heads) * head_dim]` (the value heads after them are left alone).
    qk_norm: Option<B::Vector>,
    /// `self_attn.o_proj` and its bias (zeros where none).
    o_proj: B::Matrix,
    o_bias: B::Vector,
    /// `mlp.gate_proj` over `mlp.up_proj`: `[2 * intermediate, hidden]`, one matmul for both
    /// halves of the SwiGLU.
    gate_up: B::Matrix,
    /// `mlp.down_proj`
    down_proj: B::Matrix,
    sliding: bool,
}

pub struct DecoderModel<B: Backend> {
    pub config: DecoderConfig,
    /// `embed_tokens`
    embed_tokens: B::Matrix,
    layers: Vec<DecoderLayer<B>>,
    /// `norm`
    norm: B::Vector,
    rotary: B::Matrix,
    /// Zeros for the biases none of them has: `[2 * intermediate]`, `[hidden]`.
    no_bias: [B::Vector; 2],
}

impl<B: Backend> DecoderModel<B> {
    pub fn load(b: &B, config: DecoderConfig, file: &WeightFile) -> Result<Self> {
        let root = file.root();
        let w = if root.contains("model.embed_tokens.weight") { root.pp("model") } else { root };
        let c = &config;
        let (h, inter, hd) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (heads, kv) = (c.num_attention_heads, c.num_key_value_heads);
        let embed_tokens = super::word_table(b, &w, "embed_tokens.weight", c.vocab_size, h)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = w.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let q = stored(&a, "q_proj.weight", heads * hd, h)?;
            let k = stored(&a, "k_proj.weight", kv * hd, h)?;
            let v = stored(&a, "v_proj.weight", kv * hd, h)?;
            let qkv_bias = if c.qkv_bias {
                let parts = [
                    a.get("q_proj.bias", &[heads * hd])?,
                    a.get("k_proj.bias", &[kv * hd])?,
                    a.get("v_proj.bias", &[kv * hd])?,
                ];
                b.vector(HostTensor::concat(&parts))?
            } else {
                zeros(b, (heads + 2 * kv) * hd)?
            };
            let qk_norm = if c.qk_norm {
                let (qn, kn) = (a.get("q_norm.weight", &[hd])?, a.get("k_norm.weight", &[hd])?);
                let mut gain = Vec::with_capacity((heads + kv) * hd);
                for _ in 0..heads {
                    gain.extend_from_slice(&qn.data);
                }
                for _ in 0..kv {
                    gain.extend_from_slice(&kn.data);
                }
                Some(b.vector(HostTensor::new(vec![(heads + kv) * hd], gain))?)
            } else {
                None
            };
            let o_bias = if c.o_bias { b.vector(a.get("o_proj.bias", &[h])?)? } else { zeros(b, h)? };
            let mlp = l.pp("mlp");
            let gate_up = [stored(&mlp, "gate_proj.weight", inter, h)?, stored(&mlp, "up_proj.weight", inter, h)?];
            layers.push(DecoderLayer {
                norms: [
                    b.vector(l.get("input_layernorm.weight", &[h])?)?,
                    b.vector(l.get("post_attention_layernorm.weight", &[h])?)?,
                ],
                qkv: stack(b, [q, k, v])?,
                qkv_bias,
                qk_norm,
                o_proj: matrix(b, stored(&a, "o_proj.weight", h, heads * hd)?)?,
                o_bias,
                gate_up: stack(b, gate_up)?,
                down_proj: matrix(b, stored(&mlp, "down_proj.weight", h, inter)?)?,
                sliding: c.sliding_layers[i],
            });
        }
        let positions = c.max_position_embeddings.min(MAX_ROTARY_POSITIONS);
        Ok(DecoderModel {
            embed_tokens,
            layers,
            norm: b.vector(w.get("norm.weight", &[h])?)?,
            rotary: b.table(rotary_table(c.rope_theta, hd, positions))?,
            no_bias: [zeros(b, 2 * inter)?, zeros(b, h)?],
            config,
        })
    }

    /// How the word table and the matrices are stored, as (word table, matrices).
    pub fn stored_as(&self, b: &B) -> (&'static str, &'static str) {
        let matrices = self.layers.first().map_or("f32", |l| b.stored_as(&l.qkv));
        (b.stored_as(&self.embed_tokens), matrices)
    }

    /// ids `[tokens]` -> last hidden state (after `norm`) `[tokens, hidden]`.
    pub fn forward(&self, b: &B, ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let mut x = self.embeddings(b, ids, meta)?;
        for i in 0..self.layers.len() {
            x = self.layer(b, i, &x, meta)?;
        }
        self.final_norm(b, &x)
    }

    /// `embed_tokens(ids)`, no positions, no token types: `[tokens]` -> `[tokens, hidden]`.
    pub fn embeddings(&self, b: &B, ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        b.embed(ids, &[], meta, &self.embed_tokens, None, None)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `norm`: `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn final_norm(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        b.rms_norm(x, &self.norm, self.config.rms_norm_eps, self.config.hidden_size)
    }

    /// `layers.{i}` (pre-norm, causal): `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn layer(&self, b: &B, i: usize, x: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let (eps, h) = (c.rms_norm_eps, c.hidden_size);
        let [input_norm, post_attention_norm] = &layer.norms;
        let [bias_mlp, bias_h] = &self.no_bias;
        // Self-attention: q/k/v projections, Qwen3's q_norm/k_norm per head, rotary, then
        // attention on keys up to the query's own position (within the window on sliding layers).
        let n = b.rms_norm(x, input_norm, eps, h)?;
        let mut qkv = b.linear(&n, &layer.qkv, &layer.qkv_bias, None)?;
        if let Some(qk_norm) = &layer.qk_norm {
            qkv = b.rms_norm(&qkv, qk_norm, eps, c.head_dim)?;
        }
        let shape = Attention {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            bias: None,
            window: layer.sliding.then_some(c.window),
            causal: true,
        };
        let qkv = b.rotary(qkv, meta, &shape, &self.rotary)?;
        let ctx = b.attention(&qkv, meta, &shape)?;
        let x1 = b.add(x, &b.linear(&ctx, &layer.o_proj, &layer.o_bias, None)?)?;
        // MLP: down_proj(silu(gate_proj(x)) * up_proj(x)).
        let n = b.rms_norm(&x1, post_attention_norm, eps, h)?;
        let gate_up = b.linear(&n, &layer.gate_up, bias_mlp, None)?;
        let m = b.glu(&gate_up, Activation::Silu)?;
        b.add(&x1, &b.linear(&m, &layer.down_proj, bias_h, None)?)
    }
}
