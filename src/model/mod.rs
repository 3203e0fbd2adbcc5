//! Encoder architectures, each written once against [`crate::backend::Backend`].

pub mod bert;

use crate::backend::{Backend, SeqMeta};
use crate::config::{ModelConfig, ModelFiles};
use crate::error::Result;
use crate::weights::WeightFile;

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

    /// Token ids `[tokens]` -> last hidden state `[tokens, hidden]`.
    pub fn forward(&self, backend: &B, ids: &[u32], type_ids: &[u32], meta: &SeqMeta) -> Result<B::Tensor> {
        match self {
            Encoder::Bert(m) => m.forward(backend, ids, type_ids, meta),
        }
    }
}
