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
    /// The K-quants (Q4_K, Q5_K, Q6_K: one module, the format a Params field).
    LinearK,
    /// The same matmuls in linear.wgsl's wide shape (128x128 tiles, 8x8 outputs a thread);
    /// the five above are its narrow one (64x64, 4x4).
    LinearWide,
    LinearF16Wide,
    LinearQ8Wide,
    LinearQ4Wide,
    LinearKWide,
    /// f16 weights in f16 arithmetic (linear.wgsl with T = f16: `half`), narrow and wide: a
    /// GPU with the `shader-f16` feature.
    LinearF16H,
    LinearF16HWide,
    /// The few-row matmuls (linear_gemv.wgsl's `gemv`), one per weight format.
    GemvF32,
    GemvF16,
    GemvQ8,
    GemvQ4,
    GemvK,
    /// The software adapters' matmuls (linear_direct.wgsl's `direct`), one per weight format.
    DirectF32,
    DirectF16,
    DirectQ8,
    DirectQ4,
    DirectK,
    LayerNorm,
    /// layer_norm.wgsl's `direct` entry point (layer_norm_direct.wgsl): software adapters.
    LayerNormDirect,
    Attention,
    /// attention.wgsl's `direct` entry point (attention_direct.wgsl): software adapters.
    AttentionDirect,
    Pool,
    Normalize,
    Rotary,
    Glu,
    Add,
    RmsNorm,
    /// Peak probes of `wembed gpu-bench`, not model ops: compiled when first used.
    PeakFma,
    PeakFmaF16,
}

impl Kernel {
    pub const ALL: [Kernel; 35] = [
        Kernel::Embed,
        Kernel::Linear,
        Kernel::LinearF16,
        Kernel::LinearQ8,
        Kernel::LinearQ4,
        Kernel::LinearK,
        Kernel::LinearWide,
        Kernel::LinearF16Wide,
        Kernel::LinearQ8Wide,
        Kernel::LinearQ4Wide,
        Kernel::LinearKWide,
        Kernel::LinearF16H,
        Kernel::LinearF16HWide,
        Kernel::GemvF32,
        Kernel::GemvF16,
        Kernel::GemvQ8,
        Kernel::GemvQ4,
        Kernel::GemvK,
        Kernel::DirectF32,
        Kernel::DirectF16,
        Kernel::DirectQ8,
        Kernel::DirectQ4,
        Kernel::DirectK,
        Kernel::LayerNorm,
        Kernel::LayerNormDirect,
        Kernel::Attention,
        Kernel::AttentionDirect,
        Kernel::Pool,
        Kernel::Normalize,
        Kernel::Rotary,
        Kernel::Glu,
        Kernel::Add,
        Kernel::RmsNorm,
        Kernel::PeakFma,
        Kernel::PeakFmaF16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Embed => "embed",
            Kernel::Linear => "linear",
            Kernel::LinearF16 => "linear_f16",
            Kernel::LinearQ8 => "linear_q8",
            Kernel::LinearQ4 => "linear_q4",
            Kernel::LinearK => "linear_k",
            Kernel::LinearWide => "linear_wide",
            Kernel::LinearF16Wide => "linear_f16_wide",
            Kernel::LinearQ8Wide => "linear_q8_wide",
            Kernel::LinearQ4Wide => "linear_q4_wide",
            Kernel::LinearKWide => "linear_k_wide",
            Kernel::LinearF16H => "linear_f16h",
            Kernel::LinearF16HWide => "linear_f16h_wide",
            Kernel::GemvF32 => "gemv",
            Kernel::GemvF16 => "gemv_f16",
            Kernel::GemvQ8 => "gemv_q8",
            Kernel::GemvQ4 => "gemv_q4",
            Kernel::GemvK => "gemv_k",
            Kernel::DirectF32 => "direct",
            Kernel::DirectF16 => "direct_f16",
            Kernel::DirectQ8 => "direct_q8",
            Kernel::DirectQ4 => "direct_q4",
            Kernel::DirectK => "direct_k",
            Kernel::LayerNorm => "layer_norm",
            Kernel::LayerNormDirect => "layer_norm_direct",
            Kernel::Attention => "attention",
            Kernel::AttentionDirect => "attention_direct",
            Kernel::Pool => "pool",
            Kernel::Normalize => "normalize",
            Kernel::Rotary => "rotary",
            Kernel::Glu => "glu",
            Kernel::Add => "add",
            Kernel::RmsNorm => "rms_norm",
            Kernel::PeakFma => "peak_fma",
            Kernel::PeakFmaF16 => "peak_fma_f16",
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
            Kernel::Linear
            | Kernel::LinearF16
            | Kernel::LinearQ8
            | Kernel::LinearQ4
            | Kernel::LinearK
            | Kernel::LinearWide
            | Kernel::LinearF16Wide
            | Kernel::LinearQ8Wide
            | Kernel::LinearQ4Wide
            | Kernel::LinearKWide
            | Kernel::LinearF16H
            | Kernel::LinearF16HWide
            | Kernel::GemvF32
            | Kernel::GemvF16
            | Kernel::GemvQ8
            | Kernel::GemvQ4
            | Kernel::GemvK
            | Kernel::DirectF32
            | Kernel::DirectF16
            | Kernel::DirectQ8
            | Kernel::DirectQ4
            | Kernel::DirectK => &[R, R, R, W, R, R],
            // x (in place), residual, gamma, beta
            Kernel::LayerNorm | Kernel::LayerNormDirect => &[W, R, R, R],
            // qkv, query tiles, seqs, ctx, relative-position bias (a placeholder without one)
            Kernel::Attention | Kernel::AttentionDirect => &[R, R, R, W, R],
            // hidden, seqs, out
            Kernel::Pool => &[R, R, W],
            // qkv (in place), toks, cos/sin table
            Kernel::Rotary => &[W, R, R],
            // x, y
            Kernel::Glu => &[R, W],
            // a, b, out
            Kernel::Add => &[R, R, W],
            // x, gamma, y
            Kernel::RmsNorm => &[R, R, W],
            // x (in place); the probes' one output
            Kernel::Normalize | Kernel::PeakFma | Kernel::PeakFmaF16 => &[W],
        }
    }

    /// One of linear.wgsl's wide-shape matmuls.
    pub fn is_wide(self) -> bool {
        matches!(
            self,
            Kernel::LinearWide
                | Kernel::LinearF16Wide
                | Kernel::LinearQ8Wide
                | Kernel::LinearQ4Wide
                | Kernel::LinearKWide
                | Kernel::LinearF16HWide
        )
    }

    /// One of linear_gemv.wgsl's few-row matmuls.
    pub fn is_gemv(self) -> bool {
        matches!(self, Kernel::GemvF32 | Kernel::GemvF16 | Kernel::GemvQ8 | Kernel::GemvQ4 | Kernel::GemvK)
    }

    /// One of the software adapters' kernels: linear_direct.wgsl's matmuls,
    /// attention_direct.wgsl, layer_norm_direct.wgsl.
    pub fn is_direct(self) -> bool {
        matches!(
            self,
            Kernel::DirectF32
                | Kernel::DirectF16
                | Kernel::DirectQ8
                | Kernel::DirectQ4
                | Kernel::DirectK
                | Kernel::AttentionDirect
                | Kernel::LayerNormDirect
        )
    }

    /// The entry point: `gemv` for the few-row matmuls and `direct` for the software
    /// adapters' matmuls, attention and layer norm, which share their module with the GPU's;
    /// `main` for the rest.
    pub fn entry_point(self) -> &'static str {
        if self.is_gemv() {
            "gemv"
        } else if self.is_direct() {
            "direct"
        } else {
            "main"
        }
    }

    /// The shader source, embedded at build time. The matmuls are linear.wgsl followed by their
    /// weight format's file, linear_gemv.wgsl and linear_direct.wgsl (WGSL has no includes):
    /// one module with the tiled entry point `main`, the few-row one `gemv` and the software
    /// adapters' `direct`; linear.wgsl as written is the wide
    /// shape, [`narrow`] makes the narrow one. activate.wgsl (the fused activations) is
    /// appended to the matmuls and to glu.wgsl.
    pub fn source(self) -> std::borrow::Cow<'static, str> {
        const LINEAR: &str = include_str!("../../../shaders/linear.wgsl");
        const GEMV: &str = include_str!("../../../shaders/linear_gemv.wgsl");
        const DIRECT: &str = include_str!("../../../shaders/linear_direct.wgsl");
        const F32: &str = include_str!("../../../shaders/linear_f32.wgsl");
        const F16: &str = include_str!("../../../shaders/linear_f16.wgsl");
        const Q8: &str = include_str!("../../../shaders/linear_q8.wgsl");
        const Q4: &str = include_str!("../../../shaders/linear_q4.wgsl");
        // The K-quant decoder is shared with embed.wgsl; each includer defines `kq_word`.
        const KQUANT: &str = include_str!("../../../shaders/kquant.wgsl");
        const K: &str = include_str!("../../../shaders/linear_kquant.wgsl");
        const ACTIVATE: &str = include_str!("../../../shaders/activate.wgsl");
        let linear = |format: &str| format!("{}\n{ACTIVATE}\n{format}\n{GEMV}\n{DIRECT}", narrow(LINEAR)).into();
        let wide = |format: &str| format!("{LINEAR}\n{ACTIVATE}\n{format}\n{GEMV}\n{DIRECT}").into();
        match self {
            Kernel::Embed => format!("{}\n{KQUANT}", include_str!("../../../shaders/embed.wgsl")).into(),
            Kernel::Linear | Kernel::GemvF32 | Kernel::DirectF32 => linear(F32),
            Kernel::LinearF16 | Kernel::GemvF16 | Kernel::DirectF16 => linear(F16),
            Kernel::LinearQ8 | Kernel::GemvQ8 | Kernel::DirectQ8 => linear(Q8),
            Kernel::LinearQ4 | Kernel::GemvQ4 | Kernel::DirectQ4 => linear(Q4),
            Kernel::LinearK | Kernel::GemvK | Kernel::DirectK => linear(&format!("{K}\n{KQUANT}")),
            Kernel::LinearWide => wide(F32),
            Kernel::LinearF16Wide => wide(F16),
            Kernel::LinearQ8Wide => wide(Q8),
            Kernel::LinearQ4Wide => wide(Q4),
            Kernel::LinearKWide => wide(&format!("{K}\n{KQUANT}")),
            Kernel::LinearF16H => half(&linear(F16)).into(),
            Kernel::LinearF16HWide => half(&wide(F16)).into(),
            Kernel::LayerNorm | Kernel::LayerNormDirect => format!(
                "{}\n{}",
                include_str!("../../../shaders/layer_norm.wgsl"),
                include_str!("../../../shaders/layer_norm_direct.wgsl")
            )
            .into(),
            Kernel::Attention | Kernel::AttentionDirect => format!(
                "{}\n{}",
                include_str!("../../../shaders/attention.wgsl"),
                include_str!("../../../shaders/attention_direct.wgsl")
            )
            .into(),
            Kernel::Pool => include_str!("../../../shaders/pool.wgsl").into(),
            Kernel::Normalize => include_str!("../../../shaders/normalize.wgsl").into(),
            Kernel::Rotary => include_str!("../../../shaders/rotary.wgsl").into(),
            Kernel::Glu => format!("{}\n{ACTIVATE}", include_str!("../../../shaders/glu.wgsl")).into(),
            Kernel::Add => include_str!("../../../shaders/add.wgsl").into(),
            Kernel::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl").into(),
            Kernel::PeakFma => PEAK_FMA.into(),
            Kernel::PeakFmaF16 => peak_fma_f16().into(),
        }
    }
}

/// linear.wgsl's narrow shape (64x64 tiles, 4x4 outputs a thread) from its wide source: the
/// outputs a thread in fours, RM and RN, set from 2 to 1.
pub fn narrow(linear: &str) -> String {
    const WIDE: &str = "const RM: u32 = 2u;\nconst RN: u32 = 2u;";
    debug_assert!(linear.contains(WIDE), "linear.wgsl declares RM and RN as {WIDE:?}");
    linear.replacen(WIDE, "const RM: u32 = 1u;\nconst RN: u32 = 1u;", 1)
}

/// A matmul module (linear.wgsl and the rest) in f16 arithmetic: its tiles' and products' type
/// T set to f16 and HALF to true (the f16 sums added to f32 totals every step of k), with the
/// `enable f16;` that the `shader-f16` feature allows.
pub fn half(linear: &str) -> String {
    const F32: &str = "alias T = f32;\nconst HALF: bool = false;";
    debug_assert!(linear.contains(F32), "linear.wgsl declares T and HALF as {F32:?}");
    format!("enable f16;\n{}", linear.replacen(F32, "alias T = f16;\nconst HALF: bool = true;", 1))
}

const PEAK_FMA: &str = include_str!("../../../shaders/peak_fma.wgsl");

/// shaders/peak_fma.wgsl in f16 arithmetic: the same loop with its number type set to f16
/// (WGSL has no generics, and an `override` cannot be a type).
pub fn peak_fma_f16() -> String {
    format!("enable f16;\n{}", PEAK_FMA.replacen("alias F = f32;", "alias F = f16;", 1))
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
pub const PARAMS_BINDING: u64 = 48;

params!(
    /// `shaders/embed.wgsl` Params.
    EmbedParams {
        tokens: u32, dim: u32, format: u32, scale_offset: u32, has_position: u32, has_token_type: u32, _pad: [u32; 2]
    } = 32
);
params!(
    /// `shaders/linear.wgsl` Params (all weight formats).
    LinearParams { m: u32, n: u32, k: u32, act: u32, vec4: u32, scale_offset: u32, format: u32, _pad: u32 } = 32
);
params!(
    /// `shaders/layer_norm.wgsl` Params.
    LayerNormParams { rows: u32, cols: u32, eps: f32, has_residual: u32 } = 16
);
params!(
    /// `shaders/attention.wgsl` Params.
    /// `tiles`: workgroups along x (query tiles); `group`: query heads per key/value head;
    /// `bias_span`: 0 without a relative-position bias table; `window`: u32::MAX for none;
    /// `key_tile`: keys per workgroup-memory tile; `causal`: 0 or 1.
    AttentionParams {
        tiles: u32,
        heads: u32,
        group: u32,
        head_dim: u32,
        scale: f32,
        bias_span: u32,
        window: u32,
        key_tile: u32,
        causal: u32,
        _pad: [u32; 3],
    } = 48
);
params!(
    /// `shaders/pool.wgsl` Params.
    PoolParams { texts: u32, dim: u32, width: u32, col_offset: u32, mode: u32, _pad: [u32; 3] } = 32
);
params!(
    /// `shaders/rotary.wgsl` Params.
    /// `pieces`: the q and k heads (heads + kv_heads) of a row.
    RotaryParams { tokens: u32, pieces: u32, head_dim: u32, cols: u32 } = 16
);
params!(
    /// `shaders/glu.wgsl` Params.
    GluParams { rows: u32, n: u32, act: u32, _pad: u32 } = 16
);
params!(
    /// `shaders/rms_norm.wgsl` Params.
    RmsNormParams { rows: u32, cols: u32, width: u32, normed: u32, eps: f32, _pad: [u32; 3] } = 32
);
params!(
    /// `shaders/add.wgsl` Params.
    AddParams { rows: u32, cols: u32, _pad: [u32; 2] } = 16
);
params!(
    /// `shaders/normalize.wgsl` Params.
    NormalizeParams { rows: u32, cols: u32, _pad: [u32; 2] } = 16
);
params!(
    /// `shaders/peak_fma.wgsl` Params (both precisions).
    PeakParams { iterations: u32, _pad: [u32; 3] } = 16
);

/// A compute pipeline and its group-0 layout per kernel, and the params layout they share:
/// the model's kernels built when the device opens, with the matmuls the adapter starts with
/// (direct and wide on a software adapter, few-row and narrow on a GPU: `Gpu::linear`); the
/// others and the probes when first used.
pub struct Pipelines {
    device: wgpu::Device,
    pipelines: Vec<std::sync::OnceLock<Option<(wgpu::ComputePipeline, wgpu::BindGroupLayout)>>>,
    params: wgpu::BindGroupLayout,
    /// The adapter has `unpack2x16float` (every WebGPU adapter; not some GL ES).
    f16_in_f32: bool,
    /// The device has the `shader-f16` feature (f16 arithmetic).
    shader_f16: bool,
}

impl Pipelines {
    pub fn new(device: &wgpu::Device, f16_in_f32: bool, software: bool) -> Pipelines {
        let params = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("wembed params"),
            entries: &[layout_entry(
                0,
                wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: std::num::NonZeroU64::new(PARAMS_BINDING),
                },
            )],
        });
        let pipelines = Pipelines {
            device: device.clone(),
            pipelines: Kernel::ALL.iter().map(|_| std::sync::OnceLock::new()).collect(),
            params,
            f16_in_f32,
            shader_f16: device.features().contains(wgpu::Features::SHADER_F16),
        };
        let later = |k: Kernel| match k {
            Kernel::PeakFma | Kernel::PeakFmaF16 => true,
            // A software adapter's matmuls are the direct ones, the wide tiles where k % 8 != 0.
            Kernel::Linear
            | Kernel::LinearF16
            | Kernel::LinearF16H
            | Kernel::LinearQ8
            | Kernel::LinearQ4
            | Kernel::LinearK => software,
            _ if k.is_gemv() => software,
            _ if k.is_direct() => !software,
            _ => k.is_wide() && !software,
        };
        for k in Kernel::ALL.into_iter().filter(|&k| !later(k)) {
            pipelines.get(k);
        }
        pipelines
    }

    /// The pipeline of `k` and its group-0 (storage buffers) layout; None where the adapter
    /// cannot run it.
    pub fn get(&self, k: Kernel) -> Option<&(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        self.pipelines[k as usize].get_or_init(|| self.build(k)).as_ref()
    }

    fn build(&self, k: Kernel) -> Option<(wgpu::ComputePipeline, wgpu::BindGroupLayout)> {
        let unpacks_f16 = matches!(
            k,
            Kernel::LinearF16
                | Kernel::LinearF16Wide
                | Kernel::LinearF16H
                | Kernel::LinearF16HWide
                | Kernel::GemvF16
                | Kernel::DirectF16
        );
        let f16_math = matches!(k, Kernel::PeakFmaF16 | Kernel::LinearF16H | Kernel::LinearF16HWide);
        if (unpacks_f16 && !self.f16_in_f32) || (f16_math && !self.shader_f16) {
            return None;
        }
        let device = &self.device;
        let entries: Vec<_> = k
            .storage()
            .iter()
            .enumerate()
            .map(|(i, &read_only)| {
                let ty = wgpu::BufferBindingType::Storage { read_only };
                layout_entry(
                    i as u32 + 1,
                    wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
                )
            })
            .collect();
        let buffers = device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(k.name()), entries: &entries });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(k.name()),
            bind_group_layouts: &[Some(&buffers), Some(&self.params)],
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
            entry_point: Some(k.entry_point()),
            compilation_options: Default::default(),
            cache: None,
        });
        Some((pipeline, buffers))
    }

    /// The group-1 layout: the params uniform with a dynamic offset.
    pub fn params_layout(&self) -> &wgpu::BindGroupLayout {
        &self.params
    }
}

fn layout_entry(binding: u32, ty: wgpu::BindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None }
}
