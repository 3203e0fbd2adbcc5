//! The WGSL kernels: their `Params` structs (mirrored field by field, size-checked at compile
//! time) and their pipelines, compiled once when the device opens.

use bytemuck::{Pod, Zeroable};

/// One variant per shader in `shaders/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Embed,
    Linear,
    LinearF16,
    LinearQ8,
    LinearQ4,
    LayerNorm,
    Attention,
    Pool,
    Normalize,
}

impl Kernel {
    pub const ALL: [Kernel; 9] = [
        Kernel::Embed,
        Kernel::Linear,
        Kernel::LinearF16,
        Kernel::LinearQ8,
        Kernel::LinearQ4,
        Kernel::LayerNorm,
        Kernel::Attention,
        Kernel::Pool,
        Kernel::Normalize,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Embed => "embed",
            Kernel::Linear => "linear",
            Kernel::LinearF16 => "linear_f16",
            Kernel::LinearQ8 => "linear_q8",
            Kernel::LinearQ4 => "linear_q4",
            Kernel::LayerNorm => "layer_norm",
            Kernel::Attention => "attention",
            Kernel::Pool => "pool",
            Kernel::Normalize => "normalize",
        }
    }

    /// The shader source, embedded at build time. The matmuls are linear.wgsl followed by their
    /// weight format's file (WGSL has no includes).
    pub fn source(self) -> std::borrow::Cow<'static, str> {
        const LINEAR: &str = include_str!("../../../shaders/linear.wgsl");
        let linear = |format: &str| format!("{LINEAR}\n{format}").into();
        match self {
            Kernel::Embed => include_str!("../../../shaders/embed.wgsl").into(),
            Kernel::Linear => linear(include_str!("../../../shaders/linear_f32.wgsl")),
            Kernel::LinearF16 => linear(include_str!("../../../shaders/linear_f16.wgsl")),
            Kernel::LinearQ8 => linear(include_str!("../../../shaders/linear_q8.wgsl")),
            Kernel::LinearQ4 => linear(include_str!("../../../shaders/linear_q4.wgsl")),
            Kernel::LayerNorm => include_str!("../../../shaders/layer_norm.wgsl").into(),
            Kernel::Attention => include_str!("../../../shaders/attention.wgsl").into(),
            Kernel::Pool => include_str!("../../../shaders/pool.wgsl").into(),
            Kernel::Normalize => include_str!("../../../shaders/normalize.wgsl").into(),
        }
    }
}

macro_rules! params {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? } = $size:expr) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Pod, Zeroable)]
        pub struct $name { $(pub $field: $ty),* }
        const _: () = assert!(std::mem::size_of::<$name>() == $size);
    };
}

params!(
    /// `shaders/embed.wgsl` Params.
    EmbedParams { tokens: u32, dim: u32, format: u32, scale_offset: u32 } = 16
);
params!(
    /// `shaders/linear.wgsl` Params (all weight formats).
    LinearParams { m: u32, n: u32, k: u32, act: u32, vec4: u32, scale_offset: u32, _pad: [u32; 2] } = 32
);
params!(
    /// `shaders/layer_norm.wgsl` Params.
    LayerNormParams { rows: u32, cols: u32, eps: f32, has_residual: u32 } = 16
);
params!(
    /// `shaders/attention.wgsl` Params.
    /// `bias_span`: 0 without a relative-position bias table.
    AttentionParams { tokens: u32, heads: u32, head_dim: u32, dim: u32, scale: f32, bias_span: u32, _pad: [u32; 2] } = 32
);
params!(
    /// `shaders/pool.wgsl` Params.
    PoolParams { texts: u32, dim: u32, width: u32, col_offset: u32, mode: u32, _pad: [u32; 3] } = 32
);
params!(
    /// `shaders/normalize.wgsl` Params.
    NormalizeParams { rows: u32, cols: u32, _pad: [u32; 2] } = 16
);

/// A compute pipeline per kernel, built once.
pub struct Pipelines {
    pipelines: Vec<Option<wgpu::ComputePipeline>>,
}

impl Pipelines {
    /// `f16_in_f32`: the adapter has `unpack2x16float` (every WebGPU adapter; not some GL ES).
    pub fn new(device: &wgpu::Device, f16_in_f32: bool) -> Pipelines {
        let pipelines = Kernel::ALL
            .iter()
            .map(|k| {
                if *k == Kernel::LinearF16 && !f16_in_f32 {
                    return None;
                }
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name()),
                    source: wgpu::ShaderSource::Wgsl(k.source()),
                });
                Some(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.name()),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                }))
            })
            .collect();
        Pipelines { pipelines }
    }

    pub fn get(&self, k: Kernel) -> Option<&wgpu::ComputePipeline> {
        self.pipelines[k as usize].as_ref()
    }
}
