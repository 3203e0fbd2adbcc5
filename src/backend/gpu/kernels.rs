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
    /// The tiled matmuls in f16 arithmetic (linear.wgsl with T = f16: `half`), narrow and
    /// wide, per reduced weight format (f32 weights keep f32 arithmetic: their cosine bar is
    /// 0.99999): a GPU with the `shader-f16` feature.
    LinearF16H,
    LinearF16HWide,
    LinearQ8H,
    LinearQ8HWide,
    LinearQ4H,
    LinearQ4HWide,
    LinearKH,
    LinearKHWide,
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
    pub const ALL: [Kernel; 41] = [
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
        Kernel::LinearQ8H,
        Kernel::LinearQ8HWide,
        Kernel::LinearQ4H,
        Kernel::LinearQ4HWide,
        Kernel::LinearKH,
        Kernel::LinearKHWide,
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
            Kernel::LinearQ8H => "linear_q8h",
            Kernel::LinearQ8HWide => "linear_q8h_wide",
            Kernel::LinearQ4H => "linear_q4h",
            Kernel::LinearQ4HWide => "linear_q4h_wide",
            Kernel::LinearKH => "linear_kh",
            Kernel::LinearKHWide => "linear_kh_wide",
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
            // x, w, b, y, x4, w4
            _ => {
                debug_assert!(self.matmul().is_some(), "{}: a matmul", self.name());
                &[R, R, R, W, R, R]
            }
        }
    }

    /// A matmul's module, which is linear.wgsl with one weight-format file (and the few-row
    /// and direct entry points), as (format, wide shape, f16 arithmetic); None for the other
    /// kernels. The one table of which matmul kernel is which.
    fn matmul(self) -> Option<(WeightFile, bool, bool)> {
        use Kernel::*;
        use WeightFile as F;
        Some(match self {
            Linear | GemvF32 | DirectF32 => (F::F32, false, false),
            LinearF16 | GemvF16 | DirectF16 => (F::F16, false, false),
            LinearQ8 | GemvQ8 | DirectQ8 => (F::Q8, false, false),
            LinearQ4 | GemvQ4 | DirectQ4 => (F::Q4, false, false),
            LinearK | GemvK | DirectK => (F::K, false, false),
            LinearWide => (F::F32, true, false),
            LinearF16Wide => (F::F16, true, false),
            LinearQ8Wide => (F::Q8, true, false),
            LinearQ4Wide => (F::Q4, true, false),
            LinearKWide => (F::K, true, false),
            LinearF16H => (F::F16, false, true),
            LinearQ8H => (F::Q8, false, true),
            LinearQ4H => (F::Q4, false, true),
            LinearKH => (F::K, false, true),
            LinearF16HWide => (F::F16, true, true),
            LinearQ8HWide => (F::Q8, true, true),
            LinearQ4HWide => (F::Q4, true, true),
            LinearKHWide => (F::K, true, true),
            _ => return None,
        })
    }

    /// One of linear.wgsl's wide-shape matmuls.
    pub fn is_wide(self) -> bool {
        self.matmul().is_some_and(|(_, wide, _)| wide)
    }

    /// One of the tiled matmuls in f16 arithmetic (`half`).
    pub fn is_half(self) -> bool {
        self.matmul().is_some_and(|(_, _, half)| half)
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
    /// adapters' `direct`; linear.wgsl as written is the wide shape in f32 arithmetic,
    /// [`narrow`] makes the narrow one and [`half`] the f16 arithmetic. activate.wgsl (the
    /// fused activations) is appended to the matmuls and to glu.wgsl.
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
        if let Some((file, wide, f16)) = self.matmul() {
            let format = match file {
                WeightFile::F32 => F32.into(),
                WeightFile::F16 => F16.into(),
                WeightFile::Q8 => Q8.into(),
                WeightFile::Q4 => Q4.into(),
                WeightFile::K => format!("{K}\n{KQUANT}"),
            };
            let shape = if wide { LINEAR.into() } else { narrow(LINEAR) };
            let module = format!("{shape}\n{ACTIVATE}\n{format}\n{GEMV}\n{DIRECT}");
            return if f16 { half(&module) } else { module }.into();
        }
        match self {
            Kernel::Embed => format!("{}\n{KQUANT}", include_str!("../../../shaders/embed.wgsl")).into(),
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
            _ => unreachable!("{}: the matmuls return above", self.name()),
        }
    }
}

/// The weight-format file of a matmul module: shaders/linear_f32.wgsl, linear_f16.wgsl,
/// linear_q8.wgsl, linear_q4.wgsl, linear_kquant.wgsl (with kquant.wgsl).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WeightFile {
    F32,
    F16,
    Q8,
    Q4,
    K,
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
/// (direct and wide on a software adapter, few-row and narrow on a GPU, the narrow tiles of
/// reduced weights in f16 arithmetic where it has shader-f16: `Gpu::linear`); the
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
        let f16 = pipelines.shader_f16;
        let later = |k: Kernel| match k {
            Kernel::PeakFma | Kernel::PeakFmaF16 => true,
            // A software adapter's matmuls are the direct ones, the wide tiles where k % 8 != 0.
            // A GPU with shader-f16 runs the tiles of reduced weights in f16 arithmetic
            // (`Gpu::half_math`): those then, the f32 ones when a model keeps f32.
            Kernel::Linear => software,
            Kernel::LinearF16 | Kernel::LinearQ8 | Kernel::LinearQ4 | Kernel::LinearK => software || f16,
            _ if k.is_half() => software || !f16 || k.is_wide(),
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
        let unpacks_f16 = k.matmul().is_some_and(|(file, _, _)| file == WeightFile::F16);
        let f16_math = k == Kernel::PeakFmaF16 || k.is_half();
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

    /// The device has the `shader-f16` feature (read once, when the device opened).
    pub fn shader_f16(&self) -> bool {
        self.shader_f16
    }

    /// The group-1 layout: the params uniform with a dynamic offset.
    pub fn params_layout(&self) -> &wgpu::BindGroupLayout {
        &self.params
    }
}

fn layout_entry(binding: u32, ty: wgpu::BindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry { binding, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None }
}
