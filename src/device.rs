//! The device choice, made once at the edge: [`AnyEmbedder`] holds an embedder on the CPU or
//! the GPU and forwards to it, so callers (the CLI, the wasm bindings) need no generics.

use crate::backend::Backend;
use crate::backend::cpu::{Cpu, CpuWeights};
use crate::backend::gpu::{Gpu, GpuWeights};
use crate::config::ModelFiles;
use crate::embedder::{EmbedOptions, Embedder};
use crate::error::{Error, Result};
use crate::tokenizer::Encoded;

/// Where to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// A hardware GPU if there is one, else the CPU (software GPU adapters are slower than the
    /// CPU backend, so they count as none).
    #[default]
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

/// Storage precision of the weights (of a float checkpoint; a quantized file keeps its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    /// Chosen per device by measurement. On the CPU natively f32: exact, and the native
    /// integer kernels buy less there (q8 1.7x f32 on 2 AVX-512 VNNI cores). On the CPU in
    /// wasm (browsers, Node) q8: its integer kernels ran 1.36x f32's sentences/s at batch 32 and
    /// took a 16-token query from 16.6 to 10.4 ms (Node, 2 workers; README's wasm bench), at a
    /// worst cosine of 0.9995 to PyTorch; `f32` stays one option away for exact vectors. On a GPU f16
    /// where the adapter unpacks f16 in shaders (1.9x f32's speed on an H200, cosine
    /// 0.9999997), else f32.
    #[default]
    Auto,
    F32,
    /// f16 weights, f32 arithmetic (GPU backend).
    F16,
    /// Matrices and the word-embedding table in ggml q8_0 blocks, dequantized inside the
    /// kernels.
    Q8,
    /// The word-embedding table in 4-bit q4_1 blocks, matrices in q8_0 (4-bit matrices cost
    /// too much quality; see `crate::quant`).
    Q4,
}

impl std::str::FromStr for Dtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Dtype> {
        match s {
            "auto" => Ok(Dtype::Auto),
            "f32" | "fp32" => Ok(Dtype::F32),
            "f16" | "fp16" => Ok(Dtype::F16),
            "q8" | "q8_0" => Ok(Dtype::Q8),
            "q4" => Ok(Dtype::Q4),
            other => Err(Error::Input(format!("dtype `{other}`: choose auto, f32, f16, q8 or q4"))),
        }
    }
}

/// How to load: where, in what precision, and whether to time the GPU kernels.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: Dtype,
    /// Time every GPU dispatch (timestamp queries, where the adapter has them).
    pub profile: bool,
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
    /// Loads the model as `opts` say. Returns the embedder and why it runs where it does.
    pub async fn load(files: &ModelFiles, opts: &LoadOptions) -> Result<(AnyEmbedder, String)> {
        let cpu = || -> Result<AnyEmbedder> {
            let weights = match opts.dtype {
                Dtype::Auto if cfg!(target_arch = "wasm32") => CpuWeights::Q8_0,
                Dtype::F32 | Dtype::Auto => CpuWeights::F32,
                Dtype::Q8 => CpuWeights::Q8_0,
                Dtype::Q4 => CpuWeights::Q4,
                Dtype::F16 => {
                    return Err(Error::Unsupported("f16 weights on the CPU backend (use f32, q8, or the GPU)".into()));
                }
            };
            Ok(AnyEmbedder::Cpu(Embedder::load(Cpu::with_weights(weights), files)?))
        };
        let gpu = || async {
            let weights = match opts.dtype {
                Dtype::Auto => GpuWeights::Auto,
                Dtype::F32 => GpuWeights::F32,
                Dtype::F16 => GpuWeights::F16,
                Dtype::Q8 => GpuWeights::Q8_0,
                Dtype::Q4 => GpuWeights::Q4,
            };
            let mut gpu = Gpu::with_weights(weights).await?;
            if opts.profile {
                gpu.enable_profiling();
            }
            Ok::<Gpu, Error>(gpu)
        };
        match opts.device {
            Device::Cpu => Ok((cpu()?, "CPU requested".into())),
            Device::Gpu => {
                let gpu = gpu().await?;
                let why = format!("GPU requested: {}", gpu.adapter_name());
                Ok((AnyEmbedder::Gpu(Embedder::load(gpu, files)?), why))
            }
            // The GPU when it runs this model as the CPU would, else the CPU, saying why.
            Device::Auto => {
                let why = match gpu().await {
                    Ok(gpu) if gpu.adapter_info().device_type != wgpu::DeviceType::Cpu => {
                        let name = gpu.adapter_name().to_owned();
                        match Embedder::load(gpu, files) {
                            Ok(e) => return Ok((AnyEmbedder::Gpu(e), format!("GPU adapter found: {name}"))),
                            // Limits, memory, a missing feature: the CPU has none of these.
                            Err(e @ Error::Backend(_)) => format!("the GPU ({name}) could not load it: {e}"),
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(gpu) => {
                        format!("only a software GPU adapter ({}), slower than the CPU backend", gpu.adapter_name())
                    }
                    Err(e) => e.to_string(),
                };
                Ok((cpu()?, format!("using the CPU: {why}")))
            }
        }
    }

    pub fn device_name(&self) -> String {
        forward!(self, e => e.backend().name())
    }

    /// On the GPU, the arithmetic of the tiled matmuls (more than 32 rows; fewer take the
    /// few-row kernel, in f32): "f16" where the weights are reduced (f16, q8, q4) and
    /// [`Gpu::half_math`] holds (a GPU with shader-f16, a model whose activations fit f16),
    /// else "f32". None on the CPU.
    pub fn gpu_arithmetic(&self) -> Option<&'static str> {
        match self {
            AnyEmbedder::Cpu(_) => None,
            AnyEmbedder::Gpu(e) => {
                let reduced = !e.dtype_name().starts_with("f32");
                Some(if reduced && e.backend().half_math() { "f16" } else { "f32" })
            }
        }
    }

    /// GPU time per kernel since the last call (see [`Gpu::take_kernel_times`]); empty on the
    /// CPU or without profiling.
    pub fn take_kernel_times(&self) -> Vec<(&'static str, f64, usize)> {
        match self {
            AnyEmbedder::Cpu(_) => vec![],
            AnyEmbedder::Gpu(e) => e.backend().take_kernel_times(),
        }
    }

    /// What the weights are stored as (see [`crate::model::Encoder::dtype_name`]).
    pub fn dtype_name(&self) -> String {
        forward!(self, e => e.dtype_name())
    }

    /// Bytes of GPU buffers the model holds now (0 on the CPU): what a soak test watches.
    pub fn gpu_buffer_bytes(&self) -> u64 {
        match self {
            AnyEmbedder::Cpu(_) => 0,
            AnyEmbedder::Gpu(e) => e.backend().live_buffer_bytes(),
        }
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

    pub fn chunks<'t>(&self, text: &'t str, max_tokens: usize, overlap: usize) -> Result<Vec<&'t str>> {
        forward!(self, e => e.chunks(text, max_tokens, overlap))
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
