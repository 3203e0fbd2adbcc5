//! Encoder architectures (and decoders used as encoders), each written once against [`crate::backend::Backend`].

pub mod bert;
pub mod gemma;
pub mod modernbert;
pub mod nomic;
pub mod qwen3;

use crate::backend::{Backend, SeqMeta};
use crate::config::{DenseConfig, ModelConfig, ModelFiles};
use crate::error::Result;
use crate::quant::QuantMatrix;
use crate::weights::{HostTensor, WeightFile, Weights};
use bert::Stored;

/// A `[n]` vector of zeros: the bias of a layer that has none (`bias=False`). The linear and
/// layer-norm ops always add one; zeros cost `n` floats per layer and no kernel variant.
fn zeros<B: Backend>(b: &B, n: usize) -> Result<B::Vector> {
    b.vector(HostTensor::new(vec![n], vec![0.0; n]))
}

/// Weights stacked row-wise into one matrix (one matmul for several projections): blocks of one
/// format stay blocks; anything else is stacked as floats (blocks dequantized) and stored as
/// the backend stores float weights.
fn stack<B: Backend, const N: usize>(b: &B, parts: [Stored; N]) -> Result<B::Matrix> {
    if parts.iter().all(|p| matches!(p, Stored::Quant(_))) {
        let blocks: Vec<QuantMatrix> =
            parts.into_iter().filter_map(|p| if let Stored::Quant(q) = p { Some(q) } else { None }).collect();
        return match QuantMatrix::vstack(&blocks) {
            Some(q) => b.quantized_matrix(q),
            None => b.matrix(HostTensor::vstack(&blocks.into_iter().map(dequantized).collect::<Vec<_>>())),
        };
    }
    // Floats, or a mix of floats and blocks (a partly quantized file): all as floats, in order.
    let floats: Vec<HostTensor> = parts
        .into_iter()
        .map(|p| match p {
            Stored::F32(t) => t,
            Stored::Quant(q) => dequantized(q),
        })
        .collect();
    b.matrix(HostTensor::vstack(&floats))
}

/// The word-embedding table `weights.name` `[rows, cols]` as the backend stores it: blocks from
/// the file as they are; floats quantized a slice of rows at a time where the backend keeps the
/// table in blocks (its f32 copy, half of a small model, is never whole); else floats.
fn word_table<B: Backend>(b: &B, weights: &Weights, name: &str, rows: usize, cols: usize) -> Result<B::Matrix> {
    if let Some(q) = weights.get_quant(name, rows, cols)? {
        return b.quantized_matrix(q);
    }
    match b.word_table_format() {
        Some(format) => b.quantized_word_table(weights.get_quantized(name, rows, cols, format)?),
        None => b.word_table(weights.get(name, &[rows, cols])?),
    }
}

/// A block matrix as floats.
fn dequantized(q: QuantMatrix) -> HostTensor {
    let mut data = vec![0.0; q.rows * q.cols];
    q.dequantize_rows(0, q.rows, &mut data);
    HostTensor::new(vec![q.rows, q.cols], data)
}

/// A sentence-transformers `Dense` module on the pooled vectors:
/// `[batch, in_features]` -> `[batch, out_features]`.
/// Reference: sentence_transformers/base/modules/dense.py (Dense.forward).
pub struct Dense<B: Backend> {
    pub config: DenseConfig,
    weight: B::Matrix,
    bias: B::Vector,
}

impl<B: Backend> Dense<B> {
    pub fn load(b: &B, config: &DenseConfig, files: &ModelFiles) -> Result<Self> {
        let name = format!("{}/model.safetensors", config.path);
        let origin = format!("{}/{name}", files.origin());
        let bytes = files.get(&name).ok_or_else(|| {
            crate::Error::io(&origin, "file not found; the Dense module's weights must be in safetensors form")
        })?;
        let file = WeightFile::parse(bytes, origin)?;
        let w = file.root().pp("linear");
        let (out, inp) = (config.out_features, config.in_features);
        let weight = b.matrix(w.get("weight", &[out, inp])?)?;
        let bias = if config.bias { w.get("bias", &[out])? } else { HostTensor::new(vec![out], vec![0.0; out]) };
        Ok(Dense { config: config.clone(), weight, bias: b.vector(bias)? })
    }

    pub fn forward(&self, b: &B, x: &B::Tensor) -> Result<B::Tensor> {
        b.linear(x, &self.weight, &self.bias, self.config.activation)
    }
}

/// A loaded encoder of any supported family.
pub enum Encoder<B: Backend> {
    Bert(bert::BertModel<B>),
    Nomic(nomic::NomicBertModel<B>),
    ModernBert(modernbert::ModernBertModel<B>),
    Gemma3(gemma::Gemma3TextModel<B>),
    /// Qwen3, Qwen2, Mistral.
    Decoder(qwen3::DecoderModel<B>),
}

impl<B: Backend> Encoder<B> {
    pub fn load(backend: &B, config: &ModelConfig, files: &ModelFiles) -> Result<Self> {
        let (name, file) = match files.get(crate::gguf::GGUF_FILE) {
            Some(bytes) => (crate::gguf::GGUF_FILE, WeightFile::parse_gguf(bytes, files.origin())?),
            None => {
                let name = "model.safetensors";
                let path = format!("{}/{name}", files.origin());
                match files.reader(name) {
                    Some(reader) => (name, WeightFile::parse_at(reader, path)?),
                    None => (name, WeightFile::parse(files.require(name)?, path)?),
                }
            }
        };
        // Tensor by tensor: each one's file pages go once it is in the backend's format.
        let release = |part: &[u8]| files.release(name, part);
        let file = file.releasing(&release);
        match config {
            ModelConfig::Bert(c) => Ok(Encoder::Bert(bert::BertModel::load(backend, c.clone(), &file)?)),
            ModelConfig::Nomic(c) => Ok(Encoder::Nomic(nomic::NomicBertModel::load(backend, c.clone(), &file)?)),
            ModelConfig::ModernBert(c) => {
                Ok(Encoder::ModernBert(modernbert::ModernBertModel::load(backend, c.clone(), &file)?))
            }
            ModelConfig::Gemma3(c) => Ok(Encoder::Gemma3(gemma::Gemma3TextModel::load(backend, c.clone(), &file)?)),
            ModelConfig::Decoder(c) => Ok(Encoder::Decoder(qwen3::DecoderModel::load(backend, c.clone(), &file)?)),
        }
    }

    /// What the weights are stored as, in the names `dtype` options use: "f32", "f16", "q8"
    /// (q8_0 everywhere), "q4" (q4_1 word table, q8_0 matrices), or the two formats spelt out
    /// for other mixes (a GGUF file in 4 bits: "q4_1 matrices, q4_1 word table").
    pub fn dtype_name(&self, backend: &B) -> String {
        let (word, matrices) = match self {
            Encoder::Bert(m) => m.stored_as(backend),
            Encoder::Nomic(m) => m.stored_as(backend),
            Encoder::ModernBert(m) => m.stored_as(backend),
            Encoder::Gemma3(m) => m.stored_as(backend),
            Encoder::Decoder(m) => m.stored_as(backend),
        };
        match (word, matrices) {
            ("f32", "f32") => "f32".into(),
            ("f16", "f16") => "f16".into(),
            ("q8_0", "q8_0") => "q8".into(),
            ("q4_1", "q8_0") => "q4".into(),
            (w, m) => format!("{m} matrices, {w} word table"),
        }
    }

    /// Token ids `[tokens]` -> last hidden state `[tokens, hidden]`.
    pub fn forward(&self, backend: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        match self {
            Encoder::Bert(m) => m.forward(backend, ids, type_ids, meta),
            Encoder::Nomic(m) => m.forward(backend, ids, type_ids, meta),
            Encoder::ModernBert(m) => m.forward(backend, ids, meta),
            Encoder::Gemma3(m) => m.forward(backend, ids, meta),
            Encoder::Decoder(m) => m.forward(backend, ids, meta),
        }
    }

    /// Where a forward pass first goes non-finite (NaN or ±Inf), reading back after the
    /// embeddings and after every layer: the name of that block, or None if all stay finite.
    /// Only run once a result came back non-finite, so the normal path pays nothing.
    pub async fn first_non_finite(
        &self,
        b: &B,
        ids: &[u32],
        type_ids: &[u32],
        meta: &SeqMeta,
    ) -> Result<Option<String>> {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        let (first, layers) = match self {
            Encoder::Bert(m) => (m.embeddings(b, ids, type_ids, meta)?, m.num_layers()),
            Encoder::Nomic(m) => (m.embeddings(b, ids, type_ids, meta)?, m.num_layers()),
            Encoder::ModernBert(m) => (m.embeddings(b, ids, meta)?, m.num_layers()),
            Encoder::Gemma3(m) => (m.embeddings(b, ids, meta)?, m.num_layers()),
            Encoder::Decoder(m) => (m.embeddings(b, ids, meta)?, m.num_layers()),
        };
        if !finite(&b.read(&first).await?) {
            return Ok(Some("embeddings".into()));
        }
        // What each layer reads: the last output (post-norm families); for ModernBERT the
        // residual stream and its norm (see its `layer`), the norm being what is checked.
        let (mut x, mut normed) = (first, None);
        for i in 0..layers {
            let (name, out) = match self {
                Encoder::Bert(m) => (format!("encoder.layer.{i}"), m.layer(b, i, &x, meta)?),
                Encoder::Nomic(m) => (format!("encoder.layers.{i}"), m.layer(b, i, &x, meta)?),
                Encoder::Gemma3(m) => (format!("layers.{i}"), m.layer(b, i, &x, meta)?),
                Encoder::Decoder(m) => (format!("layers.{i}"), m.layer(b, i, &x, meta)?),
                Encoder::ModernBert(m) => {
                    let (stream, n) = m.layer(b, i, &x, normed.as_ref().unwrap_or(&x), meta)?;
                    x = stream;
                    (format!("layers.{i}"), n)
                }
            };
            if !finite(&b.read(&out).await?) {
                return Ok(Some(name));
            }
            match self {
                Encoder::ModernBert(_) => normed = Some(out),
                _ => x = out,
            }
        }
        let last = match self {
            Encoder::Gemma3(m) => Some(m.final_norm(b, &x)?),
            Encoder::Decoder(m) => Some(m.final_norm(b, &x)?),
            _ => None,
        };
        if let Some(last) = last
            && !finite(&b.read(&last).await?)
        {
            return Ok(Some("norm".into()));
        }
        Ok(None)
    }
}
