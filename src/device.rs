//! The device choice, made once at the edge: [`AnyEmbedder`] holds an embedder on the CPU or
//! the GPU and forwards to it, so callers (the CLI, the wasm bindings) need no generics.

use crate::backend::Backend;
use crate::backend::cpu::Cpu;
use crate::backend::gpu::Gpu;
use crate::config::ModelFiles;
use crate::embedder::{EmbedOptions, Embedder};
use crate::error::{Error, Result};
use crate::tokenizer::Encoded;

/// Where to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// A hardware GPU if there is one, else the CPU (software GPU adapters are slower than the
    /// CPU backend, so they count as none).
    Auto,
    Cpu,
    /// Any GPU adapter, software ones (lavapipe, SwiftShader) included.
    Gpu,
}

impl std::str::FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "gpu" | "webgpu" => Ok(Device::Gpu),
            other => Err(Error::Input(format!("device `{other}`: choose auto, cpu or gpu"))),
        }
    }
}

/// An embedder on the device chosen at load time.
pub enum AnyEmbedder {
    Cpu(Embedder<Cpu>),
    Gpu(Embedder<Gpu>),
}

macro_rules! forward {
    ($self:ident, $e:ident => $body:expr) => {
        match $self {
            AnyEmbedder::Cpu($e) => $body,
            AnyEmbedder::Gpu($e) => $body,
        }
    };
}

impl AnyEmbedder {
    /// Loads the model on `device`. Returns the embedder and, for `Auto`, why it chose what it
    /// did.
    pub async fn load(files: &ModelFiles, device: Device) -> Result<(AnyEmbedder, String)> {
        match device {
            Device::Cpu => Ok((AnyEmbedder::Cpu(Embedder::load(Cpu::new(), files)?), "CPU requested".into())),
            Device::Gpu => {
                let gpu = Gpu::new().await?;
                let why = format!("GPU requested: {}", gpu.adapter_info().name);
                Ok((AnyEmbedder::Gpu(Embedder::load(gpu, files)?), why))
            }
            Device::Auto => {
                let why = match Gpu::new().await {
                    Ok(gpu) if gpu.adapter_info().device_type != wgpu::DeviceType::Cpu => {
                        let why = format!("GPU adapter found: {}", gpu.adapter_info().name);
                        return Ok((AnyEmbedder::Gpu(Embedder::load(gpu, files)?), why));
                    }
                    Ok(gpu) => format!(
                        "only a software GPU adapter ({}), slower than the CPU backend",
                        gpu.adapter_info().name
                    ),
                    Err(e) => e.to_string(),
                };
                Ok((AnyEmbedder::Cpu(Embedder::load(Cpu::new(), files)?), format!("using the CPU: {why}")))
            }
        }
    }

    pub fn device_name(&self) -> String {
        forward!(self, e => e.backend().name())
    }

    pub fn dim(&self) -> usize {
        forward!(self, e => e.dim())
    }

    pub fn max_tokens(&self) -> usize {
        forward!(self, e => e.max_tokens())
    }

    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoded>> {
        forward!(self, e => e.tokenize(texts))
    }

    pub async fn embed_async(
        &self,
        texts: &[&str],
        opts: &EmbedOptions,
        progress: impl FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        forward!(self, e => e.embed_async(texts, opts, progress).await)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Vec<f32>>> {
        forward!(self, e => e.embed(texts, opts))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn embed_with_progress(
        &self,
        texts: &[&str],
        opts: &EmbedOptions,
        progress: impl FnMut(usize, usize) + Send,
    ) -> Result<Vec<Vec<f32>>> {
        forward!(self, e => e.embed_with_progress(texts, opts, progress))
    }
}
