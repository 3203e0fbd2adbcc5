//! Encoder architectures, each written once against [`crate::backend::Backend`].

pub mod bert;

use crate::backend::{Backend, SeqMeta};
use crate::config::{DenseConfig, ModelConfig, ModelFiles};
use crate::error::Result;
use crate::weights::{HostTensor, WeightFile};

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
}

impl<B: Backend> Encoder<B> {
    pub fn load(backend: &B, config: &ModelConfig, files: &ModelFiles) -> Result<Self> {
        let file = match files.get(crate::gguf::GGUF_FILE) {
            Some(bytes) => WeightFile::parse_gguf(bytes, files.origin())?,
            None => {
                let name = "model.safetensors";
                WeightFile::parse(files.require(name)?, format!("{}/{name}", files.origin()))?
            }
        };
        match config {
            ModelConfig::Bert(c) => Ok(Encoder::Bert(bert::BertModel::load(backend, c.clone(), &file)?)),
        }
    }

    /// What the weights are stored as, in the names `dtype` options use: "f32", "f16", "q8"
    /// (q8_0 everywhere), "q4" (q4_1 word table, q8_0 matrices), or the two formats spelt out
    /// for other mixes (a GGUF file in 4 bits: "q4_1 matrices, q4_1 word table").
    pub fn dtype_name(&self, backend: &B) -> String {
        let (word, matrices) = match self {
            Encoder::Bert(m) => m.stored_as(backend),
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
        match self {
            Encoder::Bert(m) => {
                let mut x = m.embeddings(b, ids, type_ids, meta)?;
                if !finite(&b.read(&x).await?) {
                    return Ok(Some("embeddings".into()));
                }
                for i in 0..m.num_layers() {
                    x = m.layer(b, i, &x, meta)?;
                    if !finite(&b.read(&x).await?) {
                        return Ok(Some(format!("encoder.layer.{i}")));
                    }
                }
                Ok(None)
            }
        }
    }
}
