//! NomicBERT (`model_type: nomic_bert`): nomic-embed-text-v1 and v1.5. BERT's post-LayerNorm
//! layers with rotary positions instead of a position table, a fused `Wqkv`, SwiGLU feed-forward
//! layers and no biases but the LayerNorms'. Names follow the checkpoint keys as nomic publishes
//! them (`encoder.layers.N.attn.Wqkv`, `mlp.fc11`/`fc12`/`fc2`, `norm1`/`norm2`, `emb_ln`),
//! which is also what transformers 5 writes (its conversion table renames them on load).
//! Reference: transformers/models/nomic_bert/modeling_nomic_bert.py (NomicBertEmbeddings,
//! NomicBertRotaryEmbedding, NomicBertAttention, NomicBertMLP, NomicBertLayer); the key names:
//! transformers/conversion_mapping.py (`nomic_bert`).

use super::bert::{matrix, stored};
use super::{stack, zeros};
use crate::backend::{Attention, Backend, SeqMeta, rotary_table};
use crate::config::{Activation, MAX_ROTARY_POSITIONS, NomicConfig};
use crate::error::Result;
use crate::weights::{WeightFile, Weights};

/// `nn.LayerNorm` with its weight and bias.
struct LayerNorm<B: Backend> {
    weight: B::Vector,
    bias: B::Vector,
}

impl<B: Backend> LayerNorm<B> {
    fn load(b: &B, w: &Weights, dim: usize) -> Result<Self> {
        Ok(LayerNorm { weight: b.vector(w.get("weight", &[dim])?)?, bias: b.vector(w.get("bias", &[dim])?)? })
    }
}

/// `encoder.layers.N.*` (NomicBertLayer).
struct NomicBertLayer<B: Backend> {
    /// `attn.Wqkv` `[3 * hidden, hidden]`: q, k, v stacked, as the attention op takes them.
    wqkv: B::Matrix,
    /// `attn.out_proj`
    out_proj: B::Matrix,
    norm1: LayerNorm<B>,
    /// `mlp.fc12` (the gate, SiLU'd) over `mlp.fc11` (up): `[2 * intermediate, hidden]`, so one
    /// matmul gives both halves of the SwiGLU.
    fc12_fc11: B::Matrix,
    /// `mlp.fc2`
    fc2: B::Matrix,
    norm2: LayerNorm<B>,
}

pub struct NomicBertModel<B: Backend> {
    pub config: NomicConfig,
    /// `embeddings.word_embeddings`
    word_embeddings: B::Matrix,
    /// `embeddings.token_type_embeddings`
    token_type_embeddings: B::Matrix,
    emb_ln: LayerNorm<B>,
    layers: Vec<NomicBertLayer<B>>,
    /// The cos/sin of every position (NomicBertRotaryEmbedding), `[max_positions, head_dim]`.
    rotary: B::Matrix,
    /// Zeros where transformers has no bias (`bias=False`): `[3 * hidden]`, `[hidden]`,
    /// `[2 * intermediate]`. The linear op always adds one; a zero costs a few floats.
    no_bias: [B::Vector; 3],
}

impl<B: Backend> NomicBertModel<B> {
    pub fn load(b: &B, config: NomicConfig, file: &WeightFile) -> Result<Self> {
        let w = file.root();
        let (h, inter) = (config.hidden_size, config.intermediate_size);
        let e = w.pp("embeddings");
        let word_embeddings = super::word_table(b, &e, "word_embeddings.weight", config.vocab_size, h)?;
        let token_type_embeddings = b.table(e.get("token_type_embeddings.weight", &[config.type_vocab_size, h])?)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = w.pp(format!("encoder.layers.{i}"));
            let mlp = l.pp("mlp");
            let gate_up = [stored(&mlp, "fc12.weight", inter, h)?, stored(&mlp, "fc11.weight", inter, h)?];
            layers.push(NomicBertLayer {
                wqkv: matrix(b, stored(&l, "attn.Wqkv.weight", 3 * h, h)?)?,
                out_proj: matrix(b, stored(&l, "attn.out_proj.weight", h, h)?)?,
                norm1: LayerNorm::load(b, &l.pp("norm1"), h)?,
                fc12_fc11: stack(b, gate_up)?,
                fc2: matrix(b, stored(&mlp, "fc2.weight", h, inter)?)?,
                norm2: LayerNorm::load(b, &l.pp("norm2"), h)?,
            });
        }
        let head_dim = h / config.num_attention_heads;
        let rotary =
            b.table(rotary_table(config.rope_theta, head_dim, config.max_positions.min(MAX_ROTARY_POSITIONS)))?;
        Ok(NomicBertModel {
            word_embeddings,
            token_type_embeddings,
            emb_ln: LayerNorm::load(b, &w.pp("emb_ln"), h)?,
            layers,
            rotary,
            no_bias: [zeros(b, 3 * h)?, zeros(b, h)?, zeros(b, 2 * inter)?],
            config,
        })
    }

    /// How the word table and the matrices are stored, as (word table, matrices).
    pub fn stored_as(&self, b: &B) -> (&'static str, &'static str) {
        let matrices = self.layers.first().map_or("f32", |l| b.stored_as(&l.wqkv));
        (b.stored_as(&self.word_embeddings), matrices)
    }

    /// ids, type_ids `[tokens]` -> last hidden state `[tokens, hidden]`.
    pub fn forward(&self, b: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let mut x = self.embeddings(b, ids, type_ids, meta)?;
        for i in 0..self.layers.len() {
            x = self.layer(b, i, &x, meta)?;
        }
        Ok(x)
    }

    /// NomicBertEmbeddings: `LayerNorm(word + token_type)`, no position table:
    /// `[tokens]` -> `[tokens, hidden]`.
    pub fn embeddings(&self, b: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let x = b.embed(ids, type_ids, meta, &self.word_embeddings, None, Some(&self.token_type_embeddings))?;
        b.layer_norm(x, None, &self.emb_ln.weight, &self.emb_ln.bias, self.config.layer_norm_eps)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `encoder.layers.{i}` (NomicBertLayer, post-norm): `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn layer(&self, b: &B, i: usize, x: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let [bias_qkv, bias_h, bias_mlp] = &self.no_bias;
        // NomicBertAttention: rotary q and k, then attention; norm1(x + out_proj(ctx)).
        let shape = Attention::multi_head(c.hidden_size, c.num_attention_heads);
        let qkv = b.linear(x, &layer.wqkv, bias_qkv, None)?;
        let qkv = b.rotary(qkv, meta, &shape, &self.rotary)?;
        let ctx = b.attention(&qkv, meta, &shape)?;
        let a = b.linear(&ctx, &layer.out_proj, bias_h, None)?;
        let x1 = b.layer_norm(a, Some(x), &layer.norm1.weight, &layer.norm1.bias, c.layer_norm_eps)?;
        // NomicBertMLP: fc2(silu(fc12(x1)) * fc11(x1)); norm2(x1 + that).
        let gate_up = b.linear(&x1, &layer.fc12_fc11, bias_mlp, None)?;
        let m = b.glu(&gate_up, Activation::Silu)?;
        let o = b.linear(&m, &layer.fc2, bias_h, None)?;
        b.layer_norm(o, Some(&x1), &layer.norm2.weight, &layer.norm2.bias, c.layer_norm_eps)
    }
}
