//! The WGSL kernels: their `Params` structs (mirrored field by field, size-checked at compile
//! time), their bind-group layouts and their pipelines, all made once when the device opens.
//!
//! Every shader takes its storage buffers in group 0 (bindings 1.. in the order
//! [`Kernel::storage`] lists) and its `Params` in group 1, binding 0: a uniform with a dynamic
//! offset, so one bind group per params buffer serves every dispatch, and the group-0 bind
//! groups (buffers only) can be cached.

use bytemuck::{Pod, Zeroable};

/// One variant per shader in `shaders/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    /// Access of the storage bindings 1, 2, .. of group 0, in order (true: read-only). The
    /// explicit layouts built from this must match the shaders; pipeline creation checks it.
    pub fn storage(self) -> &'static [bool] {
        const R: bool = true;
        const W: bool = false;
        match self {
            // toks, word, position, token_type, out
            Kernel::Embed => &[R, R, R, R, W],
            // x, w, b, y, x4, w4
            Kernel::Linear | Kernel::LinearF16 | Kernel::LinearQ8 | Kernel::LinearQ4 => &[R, R, R, W, R, R],
            // x (in place), residual, gamma, beta
            Kernel::LayerNorm => &[W, R, R, R],
            // qkv, toks, seqs, ctx
            Kernel::Attention => &[R, R, R, W],
            // hidden, seqs, out
            Kernel::Pool => &[R, R, W],
            // x (in place)
            Kernel::Normalize => &[W],
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
        const _: () = assert!(std::mem::size_of::<$name>() == $size && $size <= PARAMS_BINDING as usize);
    };
}

/// Bytes of the params uniform bound per dispatch: at least the largest `Params`.
pub const PARAMS_BINDING: u64 = 32;

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
    AttentionParams { tokens: u32, heads: u32, head_dim: u32, dim: u32, scale: f32, _pad: [u32; 3] } = 32
);
params!(
    /// `shaders/pool.wgsl` Params.
    PoolParams { texts: u32, dim: u32, width: u32, col_offset: u32, mode: u32, _pad: [u32; 3] } = 32
);
params!(
    /// `shaders/normalize.wgsl` Params.
    NormalizeParams { rows: u32, cols: u32, _pad: [u32; 2] } = 16
);

/// A compute pipeline and its group-0 layout per kernel, and the params layout they share,
/// built once.
pub struct Pipelines {
    pipelines: Vec<Option<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>>,
    params: wgpu::BindGroupLayout,
}

impl Pipelines {
    /// `f16_in_f32`: the adapter has `unpack2x16float` (every WebGPU adapter; not some GL ES).
    pub fn new(device: &wgpu::Device, f16_in_f32: bool) -> Pipelines {
        let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        };
        let params = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wembed params"),
            entries: &[entry(
                0,
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: std::num::NonZeroU64::new(PARAMS_BINDING),
                },
            )],
        });
        let pipelines = Kernel::ALL
            .iter()
            .map(|k| {
                if *k == Kernel::LinearF16 && !f16_in_f32 {
                    return None;
                }
                let entries: Vec<_> = k
                    .storage()
                    .iter()
                    .enumerate()
                    .map(|(i, &read_only)| {
                        let ty = wgpu::BufferBindingType::Storage { read_only };
                        let ty = wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
                        entry(i as u32 + 1, ty)
                    })
                    .collect();
                let buffers = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(k.name()),
                    entries: &entries,
                });
                let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                    label: Some(k.name()),
                    bind_group_layouts: &[Some(&buffers), Some(&params)],
                    immediate_size: 0,
                });
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(k.name()),
                    source: wgpu::ShaderSource::Wgsl(k.source()),
                });
                let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(k.name()),
                    layout: Some(&layout),
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: Default::default(),
                    cache: None,
                });
                Some((pipeline, buffers))
            })
            .collect();
        Pipelines { pipelines, params }
    }

    /// The pipeline of `k` and its group-0 (storage buffers) layout.
    pub fn get(&self, k: Kernel) -> Option<&(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        self.pipelines[k as usize].as_ref()
    }

    /// The group-1 layout: the params uniform with a dynamic offset.
    pub fn params_layout(&self) -> &wgpu::BindGroupLayout {
        &self.params
    }
}
