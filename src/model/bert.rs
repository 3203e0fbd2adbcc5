//! The BERT family: BERT (all-MiniLM, BGE, GTE v1, E5 v2, text2vec-base-chinese), XLM-RoBERTa
//! (multilingual-e5, paraphrase-multilingual, bge-m3), ERNIE 3.0 and MPNet (all-mpnet-base-v2).
//! One forward pass: learned absolute positions, post-LayerNorm layers; the members differ in
//! their checkpoint keys and in one term each (see [`BertFamily`]). Names follow the keys.
//! References (transformers/models/…):
//!   bert/modeling_bert.py (BertEmbeddings, BertLayer)
//!   xlm_roberta/modeling_xlm_roberta.py (XLMRobertaEmbeddings: create_position_ids_from_input_ids)
//!   ernie/modeling_ernie.py (ErnieEmbeddings: task_type_embeddings)
//!   mpnet/modeling_mpnet.py (MPNetEmbeddings, MPNetAttention, MPNetEncoder.compute_position_bias)

use crate::backend::cpu::{Cpu, CpuTensor};
use crate::backend::{Attention, Backend, SeqMeta};
use crate::config::{BertConfig, BertFamily, RelativeBuckets};
use crate::error::Result;
use crate::quant::QuantMatrix;
use crate::split::{Exchange, split_rows};
use crate::tokenizer::Batch;
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
pub(super) enum Stored {
    F32(HostTensor),
    Quant(QuantMatrix),
}

pub(super) fn stored(w: &Weights, name: &str, rows: usize, cols: usize) -> Result<Stored> {
    Ok(match w.get_quant(name, rows, cols)? {
        Some(q) => Stored::Quant(q),
        None => Stored::F32(w.get(name, &[rows, cols])?),
    })
}

pub(super) fn matrix<B: Backend>(b: &B, s: Stored) -> Result<B::Matrix> {
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
    /// From row `position_offset` of the checkpoint's table on, so row s is position s of a text.
    position_embeddings: B::Matrix,
    /// ERNIE's task-type row 0 folded in; one row of zeros for MPNet (see `load`).
    token_type_embeddings: B::Matrix,
    layer_norm: LayerNorm<B>,
}

/// Where a family keeps a layer's attention weights, under `encoder.layer.N.attention`.
struct AttentionKeys {
    /// query, key, value
    qkv: [&'static str; 3],
    output: &'static str,
    norm: &'static str,
}

impl AttentionKeys {
    fn of(family: BertFamily) -> Self {
        match family {
            // MPNetAttention: attn.{q,k,v,o}, LayerNorm beside attn.
            BertFamily::MPNet => {
                AttentionKeys { qkv: ["attn.q", "attn.k", "attn.v"], output: "attn.o", norm: "LayerNorm" }
            }
            BertFamily::Bert | BertFamily::XlmRoberta | BertFamily::Ernie => AttentionKeys {
                qkv: ["self.query", "self.key", "self.value"],
                output: "output.dense",
                norm: "output.LayerNorm",
            },
        }
    }
}

/// MPNetEncoder.relative_position_bucket: the bucket of key position j seen from query i, as
/// `rel = j - i`. In f32 like PyTorch's, whose float results decide the bucket edges
/// (checked against torch's buckets in tests/reference.rs).
pub fn relative_position_bucket(rel: i64, buckets: RelativeBuckets) -> usize {
    let n = -rel;
    let half = (buckets.num_buckets / 2) as i64;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        return (ret + n) as usize;
    }
    let ratio = ((n as f32) / (max_exact as f32)).ln() / ((buckets.max_distance as f64 / max_exact as f64).ln() as f32);
    let large = max_exact + (ratio * (half - max_exact) as f32) as i64;
    ret += large.min(half - 1);
    ret as usize
}

/// MPNetEncoder.compute_position_bias as the attention op takes it: `[heads, 2 * span - 1]`,
/// entry `(j - i) + span - 1` of row h being `relative_attention_bias[bucket(j - i), h]`.
fn relative_bias_table(bias: &HostTensor, heads: usize, span: usize, buckets: RelativeBuckets) -> HostTensor {
    let width = 2 * span - 1;
    let mut out = vec![0.0; heads * width];
    for d in 0..width {
        let bucket = relative_position_bucket(d as i64 - (span as i64 - 1), buckets);
        for h in 0..heads {
            out[h * width + d] = bias.data[bucket * heads + h];
        }
    }
    HostTensor::new(vec![heads, width], out)
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
    /// MPNet: one relative-position bias for all layers (`encoder.relative_attention_bias`).
    relative_bias: Option<B::Matrix>,
}

impl<B: Backend> BertModel<B> {
    pub fn load(b: &B, config: BertConfig, file: &WeightFile) -> Result<Self> {
        let root = file.root();
        // XModel checkpoints have bare names; XForMaskedLM-style ones nest them under `bert.`,
        // `roberta.`, `ernie.`, `mpnet.`.
        let prefix = config.family.prefix();
        let w =
            if root.contains(&format!("{prefix}.embeddings.word_embeddings.weight")) { root.pp(prefix) } else { root };
        let h = config.hidden_size;
        let e = w.pp("embeddings");
        // XLM-RoBERTa and MPNet number a text's tokens padding_idx + 1, + 2, … (pad tokens
        // only ever come after a text, and wembed never pads): the rows before that are never
        // read, so the table starts at the first one that is.
        let positions = e.get("position_embeddings.weight", &[config.max_position_embeddings, h])?;
        let positions = HostTensor::new(
            vec![config.max_text_positions(), h],
            positions.data[config.position_offset * h..].to_vec(),
        );
        let types = if config.type_vocab_size == 0 {
            HostTensor::new(vec![1, h], vec![0.0; h])
        } else {
            let mut types = e.get("token_type_embeddings.weight", &[config.type_vocab_size, h])?;
            if let Some(tasks) = config.task_type_vocab_size {
                // ErnieEmbeddings adds task_type_embeddings(task_type_ids), which default to 0 and
                // which sentence-transformers never passes: the same row 0 for every token,
                // added once here to every token-type row.
                let task = e.get("task_type_embeddings.weight", &[tasks, h])?;
                for row in types.data.chunks_exact_mut(h) {
                    for (t, k) in row.iter_mut().zip(&task.data[..h]) {
                        *t += k;
                    }
                }
            }
            types
        };
        let embeddings = BertEmbeddings {
            word_embeddings: super::word_table(b, &e, "word_embeddings.weight", config.vocab_size, h)?,
            position_embeddings: b.table(positions)?,
            token_type_embeddings: b.table(types)?,
            layer_norm: LayerNorm::load(b, &e.pp("LayerNorm"), h)?,
        };
        let keys = AttentionKeys::of(config.family);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let l = w.pp(format!("encoder.layer.{i}"));
            let a = l.pp("attention");
            let [q, k, v] = keys.qkv.map(|p| stored(&a.pp(p), "weight", h, h));
            let qkv = [q?, k?, v?];
            let bs = keys.qkv.iter().map(|p| a.pp(p).get("bias", &[h])).collect::<Result<Vec<_>>>()?;
            layers.push(BertLayer {
                // Blocks of one format stay blocks; a mix (llama.cpp's K_M files keep some
                // layers' value projection in Q6_K beside Q4_K) is stacked as floats.
                qkv: Linear { weight: super::stack(b, qkv)?, bias: b.vector(HostTensor::concat(&bs))? },
                attention_output: Linear::load(b, &a.pp(keys.output), h, h)?,
                attention_norm: LayerNorm::load(b, &a.pp(keys.norm), h)?,
                intermediate: Linear::load(b, &l.pp("intermediate.dense"), config.intermediate_size, h)?,
                output: Linear::load(b, &l.pp("output.dense"), h, config.intermediate_size)?,
                output_norm: LayerNorm::load(b, &l.pp("output.LayerNorm"), h)?,
            });
        }
        let relative_bias = match config.relative_buckets {
            None => None,
            Some(buckets) => {
                let heads = config.num_attention_heads;
                let bias = w.get("encoder.relative_attention_bias.weight", &[buckets.num_buckets, heads])?;
                let span = config.max_text_positions();
                Some(b.table(relative_bias_table(&bias, heads, span, buckets))?)
            }
        };
        Ok(BertModel { config, embeddings, layers, relative_bias })
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
        let (pos, types) = (Some(&e.position_embeddings), Some(&e.token_type_embeddings));
        let x = b.embed(ids, type_ids, meta, &e.word_embeddings, pos, types)?;
        b.layer_norm(x, None, &e.layer_norm.weight, &e.layer_norm.bias, self.config.layer_norm_eps)
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// `encoder.layer.{i}`: `[tokens, hidden]` -> `[tokens, hidden]`.
    pub fn layer(&self, b: &B, i: usize, x: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        let qkv = self.qkv(b, i, x)?;
        let ctx = self.attend(b, &qkv, meta)?;
        self.after_attention(b, i, &ctx, x)
    }

    /// Layer `i`'s packed query, key and value rows of `x`: `[rows, 3 * hidden]`.
    fn qkv(&self, b: &B, i: usize, x: &B::Tensor) -> Result<B::Tensor> {
        let qkv = &self.layers[i].qkv;
        b.linear(x, &qkv.weight, &qkv.bias, None)
    }

    /// Self-attention over the packed `qkv` of whole texts: the context `[tokens, hidden]`.
    fn attend(&self, b: &B, qkv: &B::Tensor, meta: &SeqMeta) -> Result<B::Tensor> {
        b.attention(qkv, meta, &self.heads())
    }

    /// The attention's shape: multi-head, with MPNet's relative-position bias where it has one.
    fn heads(&self) -> Attention<'_, B::Matrix> {
        let c = &self.config;
        Attention { bias: self.relative_bias.as_ref(), ..Attention::multi_head(c.hidden_size, c.num_attention_heads) }
    }

    /// The rest of layer `i`, row by row: `ctx` and `x` hold the same rows.
    fn after_attention(&self, b: &B, i: usize, ctx: &B::Tensor, x: &B::Tensor) -> Result<B::Tensor> {
        let (c, layer) = (&self.config, &self.layers[i]);
        let eps = c.layer_norm_eps;
        // BertSelfAttention + BertSelfOutput (MPNetAttention): LayerNorm(dense(attn(x)) + x)
        let a = b.linear(ctx, &layer.attention_output.weight, &layer.attention_output.bias, None)?;
        let n = &layer.attention_norm;
        let x1 = b.layer_norm(a, Some(x), &n.weight, &n.bias, eps)?;
        // BertIntermediate + BertOutput: LayerNorm(dense(act(dense(x1))) + x1)
        let i = b.linear(&x1, &layer.intermediate.weight, &layer.intermediate.bias, Some(c.hidden_act))?;
        let o = b.linear(&i, &layer.output.weight, &layer.output.bias, None)?;
        let n = &layer.output_norm;
        b.layer_norm(o, Some(&x1), &n.weight, &n.bias, eps)
    }
}

impl BertModel<Cpu> {
    /// One text's forward pass shared by `parts` callers (wasm workers without shared memory),
    /// this one being `part`: each computes the rows [`split_rows`] gives it, and per layer
    /// the callers trade their rows of `qkv` through `ex` (attention needs every key and
    /// value; each part attends for its own queries; all else in a layer is row by row).
    /// Returns the whole last hidden state `[tokens, hidden]` (every part's rows gathered).
    /// Each row goes through the same kernels as in [`Self::forward`]; only the attention's
    /// blocks of queries start elsewhere, so the result equals it to f32 rounding (the tests
    /// check: within 1e-6).
    pub async fn forward_split(
        &self,
        b: &Cpu,
        batch: &Batch,
        part: usize,
        parts: usize,
        ex: &mut impl Exchange,
    ) -> Result<CpuTensor> {
        let meta = &batch.meta;
        let rows = split_rows(meta.tokens, parts, part);
        let mut x = self.embeddings(b, &batch.ids, &batch.type_ids, meta)?.rows(rows.clone());
        for i in 0..self.layers.len() {
            let qkv = self.qkv(b, i, &x)?;
            let cols = qkv.cols;
            let qkv = CpuTensor::stack(ex.all_gather(qkv.data, parts).await?, cols)?;
            // Every key and value, this part's queries only.
            let ctx = b.attention_rows(&qkv, meta, &self.heads(), rows.clone())?;
            x = self.after_attention(b, i, &ctx, &x)?;
        }
        let cols = x.cols;
        CpuTensor::stack(ex.all_gather(x.data, parts).await?, cols)
    }
}
