//! BERT encoder (all-MiniLM, BGE, GTE v1, E5 v2, text2vec-base-chinese): absolute positions,
//! token types, post-LayerNorm. Names follow the checkpoint keys.
//! Reference: transformers/models/bert/modeling_bert.py (BertEmbeddings, BertLayer).

use crate::backend::{Backend, SeqMeta};
use crate::config::BertConfig;
use crate::error::Result;
use crate::quant::QuantMatrix;
use crate::weights::{HostTensor, WeightFile, Weights};

struct LayerNorm<B: Backend> {
    weight: B::Vector,
    bias: B::Vector,
}

impl<B: Backend> LayerNorm<B> {
    fn load(b: &B, w: &Weights, dim: usize) -> Result<Self> {
        // Old TF-converted checkpoints name them gamma/beta; transformers renames on load.
        let (wn, bn) = if w.contains("gamma") { ("gamma", "beta") } else { ("weight", "bias") };
        Ok(LayerNorm { weight: b.vector(w.get(wn, &[dim])?)?, bias: b.vector(w.get(bn, &[dim])?)? })
    }
}

struct Linear<B: Backend> {
    weight: B::Matrix,
    bias: B::Vector,
}

/// A weight stored as floats, or as blocks in a quantized file.
enum Stored {
    F32(HostTensor),
    Quant(QuantMatrix),
}

fn stored(w: &Weights, name: &str, rows: usize, cols: usize) -> Result<Stored> {
    Ok(match w.get_quant(name, rows, cols)? {
        Some(q) => Stored::Quant(q),
        None => Stored::F32(w.get(name, &[rows, cols])?),
    })
}

fn matrix<B: Backend>(b: &B, s: Stored) -> Result<B::Matrix> {
    match s {
        Stored::F32(t) => b.matrix(t),
        Stored::Quant(q) => b.quantized_matrix(q),
    }
}

impl<B: Backend> Linear<B> {
    fn load(b: &B, w: &Weights, out: usize, inp: usize) -> Result<Self> {
        Ok(Linear { weight: matrix(b, stored(w, "weight", out, inp)?)?, bias: b.vector(w.get("bias", &[out])?)? })
    }
}

/// `embeddings.*`
struct BertEmbeddings<B: Backend> {
    word_embeddings: B::Matrix,
    position_embeddings: B::Matrix,
    token_type_embeddings: B::Matrix,
    layer_norm: LayerNorm<B>,
}

/// `encoder.layer.N.*`. Query, key and value are stacked into one `[3 * hidden, hidden]` matmul.
struct BertLayer<B: Backend> {
    qkv: Linear<B>,
    attention_output: Linear<B>,
    attention_norm: LayerNorm<B>,
    intermediate: Linear<B>,
    output: Linear<B>,
    output_norm: LayerNorm<B>,
}

pub struct BertModel<B: Backend> {
    pub config: BertConfig,
    embeddings: BertEmbeddings<B>,
    layers: Vec<BertLayer<B>>,
}

impl<B: Backend> BertModel<B> {
    pub fn load(b: &B, config: BertConfig, file: &WeightFile) -> Result<Self> {
        let root = file.root();
        // BertModel checkpoints have bare names; BertForX ones nest them under `bert.`.
        let w = if root.contains("bert.embeddings.word_embeddings.weight") { root.pp("bert") } else { root };
        let h = config.hidden_size;
        let e = w.pp("embeddings");
        let embeddings = BertEmbeddings {
            word_embeddings: match stored(&e, "word_embeddings.weight", config.vocab_size, h)? {
                Stored::F32(t) => b.word_table(t)?,
                Stored::Quant(q) => b.quantized_matrix(q)?,
            },
            position_embeddings: b.table(e.get("position_embeddings.weight", &[config.max_position_embeddings, h])?)?,
            token_type_embeddings: b.table(e.get("token_type_embeddings.weight", &[config.type_vocab_size, h])?)?,
            layer_norm: LayerNorm::load(b, &e.pp("LayerNorm"), h)?,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = w.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let parts = ["query", "key", "value"];
            let ws = parts.iter().map(|p| stored(&a.pp("self").pp(p), "weight", h, h)).collect::<Result<Vec<_>>>()?;
            let bs = parts.iter().map(|p| a.pp("self").pp(p).get("bias", &[h])).collect::<Result<Vec<_>>>()?;
            let stacked = match <[Stored; 3]>::try_from(ws) {
                Ok([Stored::F32(q), Stored::F32(k), Stored::F32(v)]) => {
                    Some(Stored::F32(HostTensor::vstack(&[q, k, v])))
                }
                Ok([Stored::Quant(q), Stored::Quant(k), Stored::Quant(v)]) => {
                    QuantMatrix::vstack(&[q, k, v]).map(Stored::Quant)
                }
                _ => None,
            };
            let Some(qkv) = stacked else {
                let name = format!("encoder.layer.{i}.attention.self");
                return Err(crate::Error::weight(name, "query, key and value are stored in different formats"));
            };
            layers.push(BertLayer {
                qkv: Linear { weight: matrix(b, qkv)?, bias: b.vector(HostTensor::concat(&bs))? },
                attention_output: Linear::load(b, &a.pp("output.dense"), h, h)?,
                attention_norm: LayerNorm::load(b, &a.pp("output.LayerNorm"), h)?,
                intermediate: Linear::load(b, &l.pp("intermediate.dense"), config.intermediate_size, h)?,
                output: Linear::load(b, &l.pp("output.dense"), h, config.intermediate_size)?,
                output_norm: LayerNorm::load(b, &l.pp("output.LayerNorm"), h)?,
            });
        }
        Ok(BertModel { config, embeddings, layers })
    }

    /// How the word table and the matrices are stored, as (word table, matrices).
    pub fn stored_as(&self, b: &B) -> (&'static str, &'static str) {
        let matrices = self.layers.first().map_or("f32", |l| b.stored_as(&l.qkv.weight));
        (b.stored_as(&self.embeddings.word_embeddings), matrices)
    }

    /// ids, type_ids `[tokens]` (sequences back to back, see [`SeqMeta`]) -> last hidden state
    /// `[tokens, hidden]`.
    pub fn forward(&self, b: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let mut x = self.embeddings(b, ids, type_ids, meta)?;
        for i in 0..self.layers.len() {
            x = self.layer(b, i, &x, meta)?;
        }
        Ok(x)
    }

    /// `embeddings.*`: `[tokens]` -> `[tokens, hidden]`.
    pub fn embeddings(&self, b: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        let e = &self.embeddings;
        let x = b.embed(ids, type_ids, meta, &e.word_embeddings, &e.position_embeddings, &e.token_type_embeddings)?;
        b.layer_norm(x, None, &e.layer_norm.weight, &e.layer_norm.bias, self.config.layer_norm_eps)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `encoder.layer.{i}`: `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn layer(&self, b: &B, i: usize, x: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let eps = c.layer_norm_eps;
        // BertSelfAttention + BertSelfOutput: LayerNorm(dense(attn(x)) + x)
        let qkv = b.linear(x, &layer.qkv.weight, &layer.qkv.bias, None)?;
        let ctx = b.attention(&qkv, meta, c.num_attention_heads)?;
        let a = b.linear(&ctx, &layer.attention_output.weight, &layer.attention_output.bias, None)?;
        let n = &layer.attention_norm;
        let x1 = b.layer_norm(a, Some(x), &n.weight, &n.bias, eps)?;
        // BertIntermediate + BertOutput: LayerNorm(dense(act(dense(x1))) + x1)
        let i = b.linear(&x1, &layer.intermediate.weight, &layer.intermediate.bias, Some(c.hidden_act))?;
        let o = b.linear(&i, &layer.output.weight, &layer.output.bias, None)?;
        let n = &layer.output_norm;
        b.layer_norm(o, Some(&x1), &n.weight, &n.bias, eps)
    }
}
