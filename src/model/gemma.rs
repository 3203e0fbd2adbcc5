//! Gemma 3's text model as EmbeddingGemma uses it (`model_type: gemma3_text`,
//! `Gemma3TextModel` with `use_bidirectional_attention`): scaled word embeddings, pre- and
//! post-norm RMSNorm layers with the Gemma `(1 + w)` gain, per-head RMSNorm of q and k, rotary
//! positions with a global and a local base, sliding-window layers with a full one every few,
//! grouped-query attention (the attention op's kv_heads), a GeGLU (tanh) feed-forward layer and
//! a final norm; the sentence-transformers `Dense` modules after pooling are [`super::Dense`].
//! Names follow the checkpoint keys (`embed_tokens`, `layers.N.self_attn.q_proj`, `layers.N.mlp.gate_proj`, `norm`).
//! Reference: transformers/models/gemma3/modeling_gemma3.py (Gemma3TextScaledWordEmbedding,
//! Gemma3RMSNorm, Gemma3Attention, Gemma3MLP, Gemma3DecoderLayer, Gemma3TextModel).

use super::bert::{Stored, stored};
use super::{stack, zeros};
use crate::backend::{Attention, Backend, SeqMeta, rotary_table};
use crate::config::{Gemma3Config, MAX_ROTARY_POSITIONS};
use crate::error::Result;
use crate::quant::Blocks;
use crate::weights::{HostTensor, WeightFile, Weights};

/// Gemma3RMSNorm's gain as the rms_norm op takes it: `1 + weight`, in f32 as torch forms it.
fn gemma_gain(w: &Weights, name: &str, dim: usize) -> Result<HostTensor> {
    let mut t = w.get(name, &[dim])?;
    for v in &mut t.data {
        *v += 1.0;
    }
    Ok(t)
}

/// `layers.N.*` (Gemma3DecoderLayer).
struct Gemma3Layer<B: Backend> {
    /// `input_layernorm`, `post_attention_layernorm`, `pre_feedforward_layernorm`,
    /// `post_feedforward_layernorm`: `1 + weight`.
    norms: [B::Vector; 4],
    /// `self_attn.q_proj`, `k_proj`, `v_proj` stacked: `[(heads + 2 * kv_heads) * head_dim,
    /// hidden]`, the grouped-query layout the attention op reads.
    qkv: B::Matrix,
    /// `self_attn.q_norm` for every query head, then `k_norm` for every key head,
    /// `[(heads + kv_heads) * head_dim]` (the value heads after them are left alone); q's
    /// times `sqrt(head_dim / query_pre_attn_scalar)`, which turns the attention op's
    /// `head_dim^-0.5` into Gemma's `query_pre_attn_scalar^-0.5` (rotary is linear, so the
    /// factor passes through it).
    qk_norm: B::Vector,
    /// `self_attn.o_proj`
    o_proj: B::Matrix,
    /// `mlp.gate_proj` over `mlp.up_proj`: `[2 * intermediate, hidden]`.
    gate_up: B::Matrix,
    /// `mlp.down_proj`
    down_proj: B::Matrix,
    global: bool,
}

pub struct Gemma3TextModel<B: Backend> {
    pub config: Gemma3Config,
    /// `embed_tokens` times `sqrt(hidden_size)` (Gemma3TextScaledWordEmbedding), folded in at
    /// load: for floats the same single f32 product torch forms per lookup.
    embed_tokens: B::Matrix,
    layers: Vec<Gemma3Layer<B>>,
    /// `norm`: `1 + weight`.
    norm: B::Vector,
    rotary_global: B::Matrix,
    rotary_local: B::Matrix,
    /// Zeros for the biases Gemma has none of: `[(heads + 2 * kv_heads) * head_dim]`, `[hidden]`,
    /// `[2 * intermediate]`.
    no_bias: [B::Vector; 3],
}

impl<B: Backend> Gemma3TextModel<B> {
    pub fn load(b: &B, config: Gemma3Config, file: &WeightFile) -> Result<Self> {
        let root = file.root();
        // Gemma3TextModel checkpoints (EmbeddingGemma) have bare names; Gemma3ForCausalLM ones
        // nest them under `model.`.
        let w = if root.contains("model.embed_tokens.weight") { root.pp("model") } else { root };
        let c = &config;
        let (h, inter, hd) = (c.hidden_size, c.intermediate_size, c.head_dim);
        let (heads, kv) = (c.num_attention_heads, c.num_key_value_heads);
        // A float table is scaled value by value (torch's own product); a quantized file's
        // blocks have their f16 scales (and q4_1 minimums) scaled instead, so a 262k-word table
        // stays in blocks: one more f16 rounding per block, far below the blocks' own.
        let scale = (h as f64).sqrt() as f32;
        let embed_tokens = match stored(&w, "embed_tokens.weight", c.vocab_size, h)? {
            Stored::F32(mut t) => {
                for v in &mut t.data {
                    *v *= scale;
                }
                b.word_table(t)?
            }
            Stored::Quant(mut q) => {
                let times = |bits: &mut u16| {
                    *bits = half::f16::from_f32(half::f16::from_bits(*bits).to_f32() * scale).to_bits()
                };
                match &mut q.blocks {
                    Blocks::Q8_0(blocks) => blocks.iter_mut().for_each(|b| times(&mut b.d)),
                    Blocks::Q4_1(blocks) => blocks.iter_mut().for_each(|b| {
                        times(&mut b.d);
                        times(&mut b.m);
                    }),
                    Blocks::Q4K(blocks) => blocks.iter_mut().for_each(|b| {
                        times(&mut b.d);
                        times(&mut b.dmin);
                    }),
                    Blocks::Q5K(blocks) => blocks.iter_mut().for_each(|b| {
                        times(&mut b.d);
                        times(&mut b.dmin);
                    }),
                    Blocks::Q6K(blocks) => blocks.iter_mut().for_each(|b| times(&mut b.d)),
                }
                b.quantized_matrix(q)?
            }
        };
        let q_factor = (hd as f32 / c.query_pre_attn_scalar).sqrt();
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = w.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let q = stored(&a, "q_proj.weight", heads * hd, h)?;
            let k = stored(&a, "k_proj.weight", kv * hd, h)?;
            let v = stored(&a, "v_proj.weight", kv * hd, h)?;
            let (qn, kn) = (gemma_gain(&a, "q_norm.weight", hd)?, gemma_gain(&a, "k_norm.weight", hd)?);
            let mut qk = Vec::with_capacity((heads + kv) * hd);
            for _ in 0..heads {
                qk.extend(qn.data.iter().map(|g| g * q_factor));
            }
            for _ in 0..kv {
                qk.extend_from_slice(&kn.data);
            }
            let norm = |name: &str| -> Result<B::Vector> { b.vector(gemma_gain(&l, name, h)?) };
            let mlp = l.pp("mlp");
            let gate_up = [stored(&mlp, "gate_proj.weight", inter, h)?, stored(&mlp, "up_proj.weight", inter, h)?];
            layers.push(Gemma3Layer {
                norms: [
                    norm("input_layernorm.weight")?,
                    norm("post_attention_layernorm.weight")?,
                    norm("pre_feedforward_layernorm.weight")?,
                    norm("post_feedforward_layernorm.weight")?,
                ],
                qkv: stack(b, [q, k, v])?,
                qk_norm: b.vector(HostTensor::new(vec![(heads + kv) * hd], qk))?,
                o_proj: super::bert::matrix(b, stored(&a, "o_proj.weight", h, heads * hd)?)?,
                gate_up: stack(b, gate_up)?,
                down_proj: super::bert::matrix(b, stored(&mlp, "down_proj.weight", h, inter)?)?,
                global: c.global_layers[i],
            });
        }
        let positions = c.max_position_embeddings.min(MAX_ROTARY_POSITIONS);
        Ok(Gemma3TextModel {
            embed_tokens,
            layers,
            norm: b.vector(gemma_gain(&w, "norm.weight", h)?)?,
            rotary_global: b.table(rotary_table(c.global_rope_theta, hd, positions))?,
            rotary_local: b.table(rotary_table(c.local_rope_theta, hd, positions))?,
            no_bias: [zeros(b, (heads + 2 * kv) * hd)?, zeros(b, h)?, zeros(b, 2 * inter)?],
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

    /// Gemma3TextScaledWordEmbedding: `embed_tokens(ids) * sqrt(hidden)`, no positions, no
    /// token types: `[tokens]` -> `[tokens, hidden]`.
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

    /// `layers.{i}` (Gemma3DecoderLayer, bidirectional): `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn layer(&self, b: &B, i: usize, x: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let (eps, h) = (c.rms_norm_eps, c.hidden_size);
        let [input_norm, post_attention_norm, pre_feedforward_norm, post_feedforward_norm] = &layer.norms;
        let [bias_qkv, bias_h, bias_mlp] = &self.no_bias;
        // Gemma3Attention: q_norm/k_norm per head, rotary with this layer type's base, then
        // attention (within the window on sliding layers).
        let n = b.rms_norm(x, input_norm, eps, h)?;
        let qkv = b.linear(&n, &layer.qkv, bias_qkv, None)?;
        let qkv = b.rms_norm(&qkv, &layer.qk_norm, eps, c.head_dim)?;
        let shape = Attention {
            heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            bias: None,
            window: (!layer.global).then_some(c.window),
            causal: false,
        };
        let table = if layer.global { &self.rotary_global } else { &self.rotary_local };
        let qkv = b.rotary(qkv, meta, &shape, table)?;
        let ctx = b.attention(&qkv, meta, &shape)?;
        let a = b.linear(&ctx, &layer.o_proj, bias_h, None)?;
        let x1 = b.add(x, &b.rms_norm(&a, post_attention_norm, eps, h)?)?;
        // Gemma3MLP: down_proj(act(gate_proj(x)) * up_proj(x)), between its two norms.
        let n = b.rms_norm(&x1, pre_feedforward_norm, eps, h)?;
        let gate_up = b.linear(&n, &layer.gate_up, bias_mlp, None)?;
        let m = b.glu(&gate_up, c.hidden_activation)?;
        let d = b.linear(&m, &layer.down_proj, bias_h, None)?;
        b.add(&x1, &b.rms_norm(&d, post_feedforward_norm, eps, h)?)
    }
}
