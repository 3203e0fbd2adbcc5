//! wembed: sentence embeddings from Hugging Face / sentence-transformers models, computed on
//! the CPU or a GPU (WebGPU through wgpu) behind one [`Backend`] trait, equal to
//! sentence-transformers on PyTorch.
//!
//! ```no_run
//! use wembed::{Cpu, EmbedOptions, Embedder, ModelFiles};
//! let files = ModelFiles::from_dir("assets/models/all-MiniLM-L6-v2")?;
//! let embedder = Embedder::load(Cpu::new(), &files)?;
//! let vectors = embedder.embed(&["A cat sits on the mat."], &EmbedOptions::default())?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok::<(), wembed::Error>(())
//! ```

pub mod backend;
pub mod config;
pub mod device;
pub mod embedder;
pub mod error;
pub mod eval;
pub mod gguf;
pub mod index;
pub mod model;
pub mod quant;
pub mod split;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
pub mod weights;

pub use backend::Backend;
pub use backend::cpu::Cpu;
pub use backend::gpu::Gpu;
pub use config::{ModelConfig, ModelFiles, PoolMode, SentenceConfig};
pub use device::{AnyEmbedder, Device, Dtype, LoadOptions};
pub use embedder::{EmbedOptions, Embedder};
pub use error::{Error, Result};
