//! The GPU backend: the CPU backend's ops as WGSL compute shaders (`shaders/*.wgsl`, one file
//! per op) driven by `wgpu`, natively (Vulkan, Metal, DX12) and in the browser (WebGPU).
//!
//! Per batch, every op records its dispatch into one command encoder; [`Backend::read`] ends
//! it with a copy to a mappable buffer, submits once and awaits the mapping. Runtime sizes go
//! through a small `Params` uniform per dispatch (all of them packed into one buffer, written
//! just before the submit), so the pipelines are compiled once at load whatever the shapes.
//! Intermediate buffers come from a pool keyed by size and are reused across calls.

mod kernels;
mod pool;
mod probe;
mod record;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use super::{Attention, Backend, BatchSize, SeqMeta, check_embed_input, check_rms_norm, check_rotary};
use crate::config::{Activation, PoolMode};
use crate::error::{Error, Result};
use crate::quant::{BLOCK, Blocks, QuantFormat, QuantMatrix};
use crate::weights::HostTensor;
use kernels::{Kernel, Pipelines};
use pool::{Binding, BufferPool, Ledger, StagingBuffers, Tracked};
use record::{State, Work};

/// The most rows `linear` gives the few-row kernel (shaders/linear_gemv.wgsl: four blocks of 8
/// rows, each reading the weights again; past that the tiled kernel reuses each staged weight).
const GEMV_MAX_ROWS: usize = 32;

/// Tokens per forward pass when the caller sets no batch size (see `default_batch`), on a
/// hardware adapter: not yet measured on one (`gpu-bench` prints the sweep that is to set it).
pub const BATCH_TOKENS: usize = 4096;
/// The same on a software adapter (lavapipe, SwiftShader): on lavapipe (MiniLM f32, 2 cores,
/// `gpu-bench --quick --sentences 64`, 2026-12-07, the register-tiled matmul) 512 tokens per
/// batch gave 32.8 sentences/s, 1024 35.7, 2048 36.6, 4096 36.7, 8192 37.5. With the 4x4
/// scalar-read matmul before it, 512 had been fastest (8.1 against 6.7 at 4096, f16). With
/// the direct matmul (f16, `--sentences 32`) every budget from 512 to 16384 gave 57-58.
pub const BATCH_TOKENS_SOFTWARE: usize = 2048;

/// Which kernels run, when forced ([`Gpu::force_tiles`]): by default a hardware adapter takes
/// the few-row matmul up to [`GEMV_MAX_ROWS`] rows and a tile shape by [`WIDE_MIN_TILES`] past
/// them, with the tiled attention and the reducing layer norm; a software one `Direct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiles {
    /// linear.wgsl's 64x64 tiles, 4x4 outputs a thread: four times the workgroups of `Wide`
    /// (the few-row kernel still takes up to 32 rows).
    Narrow,
    /// 128x128 tiles, 8x8 outputs a thread: half the workgroup-memory reads per multiply-add
    /// (likewise).
    Wide,
    /// No tiles: linear_direct.wgsl, 6x4 outputs a thread read straight from storage, for
    /// every row count (a software adapter's matmul; the tiled kernels where k % 8 != 0),
    /// attention_direct.wgsl (the tiled attention where head_dim % 32 != 0) and
    /// layer_norm_direct.wgsl. `Narrow` and `Wide` take a GPU's attention and layer norm.
    Direct,
}

/// On a hardware adapter, the tiled matmul takes the wide tiles from this many 128x128 tiles
/// of output on. A wide workgroup does four narrow ones' work with half their reads of
/// workgroup memory, which pays once the narrow grid would fill the GPU several times over;
/// below that, four times the workgroups finish sooner. WebGPU does not say how many compute
/// units there are, so this is a guess (64 wide = 256 narrow workgroups: several per unit of a
/// laptop GPU, one per SM of a large one) until a lent GPU measures the crossover: `gpu-bench`
/// prints both shapes on MiniLM's matmuls for that.
const WIDE_MIN_TILES: usize = 64;
/// The same on a software adapter, where the tiled kernel runs only for k % 8 != 0 (the direct
/// one takes the rest), measured: lavapipe on 2 cores (`gpu-bench`, 2026-12-07, f16
/// weights) ran 64 x 384 x 384 (3 wide tiles: one core idles for the last) at 2.9-4.1 GFLOP/s
/// narrow and 2.7-3.1 wide, 64 x 384 x 1536 at 4.4-5.2 and 3.1-3.7, 256 x 384 x 384 (6) at 4.1
/// and 7.2, and from 256 rows on 4.1-5.7 narrow against 7.2-9.3 wide.
const WIDE_MIN_TILES_SOFTWARE: usize = 4;

/// Queries per attention workgroup (shaders/attention.wgsl's QT).
const ATTENTION_QUERIES: usize = 8;
/// shaders/attention.wgsl: keys per tile at most (MAX_KT), head dims at most
/// (LANES · MAX_DIMS), and the floats of workgroup memory for queries, keys and values (MEM).
const ATTENTION_MAX_KEY_TILE: usize = 64;
const ATTENTION_MAX_HEAD_DIM: usize = 256;
const ATTENTION_MEM: usize = 3584;

/// The software adapters' kernels' blocks, as their shaders declare them: linear_direct.wgsl's
/// x rows (DIRECT_MR) and weight rows (DIRECT_THREADS · DIRECT_NR) a workgroup,
/// attention_direct.wgsl's head dims a thread (DIRECT_DIMS), layer_norm_direct.wgsl's rows a
/// workgroup (DIRECT_ROWS).
const DIRECT_X_ROWS: usize = 6;
const DIRECT_W_ROWS: usize = 64;
const DIRECT_HEAD_DIMS: usize = 32;
const DIRECT_NORM_ROWS: usize = 16;

/// How the GPU backend stores the weights of a float checkpoint (biases, layer norms and the
/// small embedding tables stay f32; a quantized file's blocks are kept as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuWeights {
    /// f16 where the adapter unpacks f16 in shaders (every WebGPU adapter), else f32: on an
    /// H200 (Vulkan) f16 ran 1.9x the sentences/s of f32 at batch 1 and 32, q8 and q4 no faster
    /// than f32, and f16 keeps cosine 0.9999997 to PyTorch.
    #[default]
    Auto,
    F32,
    /// Matrices and the word-embedding table in IEEE half precision, two per u32, unpacked in
    /// the shaders (`unpack2x16float`, core WGSL: no `shader-f16` feature needed); arithmetic
    /// and accumulation stay f32.
    F16,
    /// Matrices and the word-embedding table in q8_0 blocks (see `crate::quant`).
    Q8_0,
    /// The word-embedding table in q4_1 blocks, matrices in q8_0 (see `crate::quant` for why).
    Q4,
}

/// The layout of a weight in a GPU buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuFormat {
    F32,
    /// f16 pairs in u32s, rows padded to an even length.
    F16,
    /// int8 four per u32 (rows padded to a multiple of 32), then every block's f32 scale.
    Q8_0,
    /// 4-bit levels eight per u32, in order (rows padded to a multiple of 32), then every
    /// block's f32 (scale, min) pair.
    Q4_1,
    /// llama.cpp's K-quant super-blocks exactly as the file stores them, back to back (the
    /// bytes padded to a whole u32), decoded by shaders/kquant.wgsl.
    Q4K,
    Q5K,
    Q6K,
}

impl GpuFormat {
    /// The `format` code shaders/embed.wgsl switches on.
    fn code(self) -> u32 {
        match self {
            GpuFormat::F32 => 0,
            GpuFormat::F16 => 1,
            GpuFormat::Q8_0 => 2,
            GpuFormat::Q4_1 => 3,
            GpuFormat::Q4K => 4,
            GpuFormat::Q5K => 5,
            GpuFormat::Q6K => 6,
        }
    }
}

/// A word-embedding table too large for one storage binding on this adapter (a 250k-token
/// vocabulary in f32 is 768 MB; WebGPU guarantees 128 MB): kept in host memory, and `embed`
/// gathers the batch's rows there and uploads only those.
enum HostTable {
    F32(Vec<f32>),
    Blocks(QuantMatrix),
}

/// A `[rows, cols]` tensor in a GPU buffer: f32, or a weight stored as [`GpuWeights`] says.
/// Intermediate tensors go back to the pool when dropped.
pub struct GpuTensor {
    pub rows: usize,
    pub cols: usize,
    pub format: GpuFormat,
    /// Blocks: the word where the block scales start.
    scale_offset: u32,
    buffer: Option<Tracked>,
    pool: Option<Arc<Mutex<BufferPool>>>,
    /// Set (with a placeholder buffer) for a word table kept on the host.
    host: Option<HostTable>,
}

impl GpuTensor {
    /// Its buffer: `None` only inside `drop`, which hands it back to the pool.
    fn tracked(&self) -> &Tracked {
        self.buffer.as_ref().expect("a live tensor always holds its buffer")
    }
    fn buffer(&self) -> &wgpu::Buffer {
        &self.tracked().buffer
    }
    /// Bytes of an f32 tensor (activations; what `read` copies).
    fn bytes(&self) -> u64 {
        (self.rows * self.cols * 4) as u64
    }
    /// What a dispatch binds: an activation's own bytes (its pooled buffer may be larger),
    /// rounded to 16 for the vec4 views, where the whole buffer is over the binding limit; a
    /// weight's whole buffer.
    fn binding(&self) -> Binding {
        let size = if self.pool.is_some() { self.bytes().max(16).next_multiple_of(16) } else { 0 };
        self.tracked().binding(size)
    }
}

impl Drop for GpuTensor {
    fn drop(&mut self) {
        if let (Some(pool), Some(buffer)) = (&self.pool, self.buffer.take())
            && let Ok(mut pool) = pool.lock()
        {
            pool.give_back(buffer);
        }
    }
}

/// The batch layout uploaded for the ops that need it, kept while the same batch is processed.
struct MetaBuffers {
    meta: SeqMeta,
    /// Per token: (id, type id, position in its text, text index); ids are filled by `embed`.
    toks: Tracked,
    /// Per text: (first row, len, pool start, 0).
    seqs: Tracked,
    /// Per attention workgroup: (text, first query in the text, 0, 0), ATTENTION_QUERIES
    /// queries each.
    tiles: Tracked,
    tile_count: usize,
}

/// Timestamp queries around every dispatch, when the adapter has them and profiling is on.
struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// Per kernel since the last `take_kernel_profile`: nanoseconds, dispatches, and the work
    /// of those dispatches.
    totals: Mutex<Vec<(f64, usize, Work)>>,
}

/// CPU time the host spent on the GPU's behalf since the last [`Gpu::take_host_times`]: what a
/// browser pays per dispatch on top of the GPU's own time. Natively only (`Instant` does not
/// exist on wasm32-unknown-unknown); zeros in the browser.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostTimes {
    /// Dispatches recorded.
    pub dispatches: u64,
    /// Seconds in the ops' recording (params, bind groups, passes).
    pub record_s: f64,
    /// Seconds in `CommandEncoder::finish` (wgpu encodes the recorded passes there).
    pub finish_s: f64,
    /// Seconds in `Queue::submit` (and the params upload just before it).
    pub submit_s: f64,
    /// Submits.
    pub submits: u64,
}

/// One kernel's line of the profile (see [`Gpu::take_kernel_profile`]).
#[derive(Debug, Clone)]
pub struct KernelTime {
    pub kernel: &'static str,
    /// GPU seconds, from timestamp queries around each dispatch.
    pub seconds: f64,
    pub dispatches: usize,
    /// Floating-point operations of those dispatches (a multiply-add counts two).
    pub flops: f64,
    /// Bytes they must read and write at the least (each input once, each output once).
    pub bytes: f64,
}

/// A clock where there is one (not on wasm32-unknown-unknown, where `Instant::now` panics).
#[cfg(not(target_arch = "wasm32"))]
fn clock() -> Option<std::time::Instant> {
    Some(std::time::Instant::now())
}
#[cfg(target_arch = "wasm32")]
fn clock() -> Option<std::time::Instant> {
    None
}

fn seconds_since(t: Option<std::time::Instant>) -> f64 {
    t.map_or(0.0, |t| t.elapsed().as_secs_f64())
}

/// Passes timed per submit; later ones in the same submit go untimed.
const MAX_TIMED_PASSES: u32 = 2048;

/// The GPU backend.
pub struct Gpu {
    weights: GpuWeights,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    /// The device's limits, read once (`Device::limits` builds a fresh copy per call).
    limits: wgpu::Limits,
    pipelines: Pipelines,
    pool: Arc<Mutex<BufferPool>>,
    state: Mutex<State>,
    /// Set by wgpu's callbacks when the device is lost or a command fails.
    failure: Arc<Mutex<Option<String>>>,
    /// A 4-byte buffer bound where an op has no tensor to give (layer norm without residual).
    placeholder: Tracked,
    profiler: Option<Profiler>,
    /// Bytes of every buffer this backend holds now (weights, pooled activations, params,
    /// staging): what a soak test watches; and the buffers dropped, for the bind-group cache.
    ledger: Arc<Ledger>,
    staging: StagingBuffers,
    /// A smaller binding limit than the adapter's, for tests of the large-model paths.
    binding_cap: Option<u64>,
    /// The tiled matmul's shape when set (tests, gpu-bench), else chosen per dispatch.
    tiles: Option<Tiles>,
    /// f16 arithmetic in the tiled matmuls on reduced weights when set (tests, gpu-bench),
    /// else by default.
    half_math: Option<bool>,
    /// The model's activations may leave f16's range, or a pass in f16 went non-finite: f32
    /// arithmetic whatever else says.
    f32_only: AtomicBool,
}

impl Gpu {
    /// Finds an adapter and opens a device, weights in f32. Errors (no adapter, no device) say
    /// what was tried; the automatic device choice falls back to the CPU on them.
    pub async fn new() -> Result<Gpu> {
        Self::with_weights(GpuWeights::F32).await
    }

    /// How this backend stores float weights (`Auto` resolved when the device opened).
    pub fn weights(&self) -> GpuWeights {
        self.weights
    }

    /// As [`Gpu::new`], storing weight matrices as `weights` says.
    pub async fn with_weights(weights: GpuWeights) -> Result<Gpu> {
        // wgpu's WebGPU build panics creating an instance where there is no navigator.gpu
        // (Node, some workers): ask first.
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(Error::Backend("WebGPU is not available here (no navigator.gpu adapter)".into()));
        }
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle().with_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                Error::Backend(format!(
                    "no GPU adapter found ({e}); on Linux without a GPU, install Mesa's Vulkan driver \
                     (Debian: mesa-vulkan-drivers), or use the CPU backend"
                ))
            })?;
        Self::with_adapter(adapter, weights).await
    }

    pub async fn with_adapter(adapter: wgpu::Adapter, weights: GpuWeights) -> Result<Gpu> {
        let info = adapter.get_info();
        let have = adapter.limits();
        let f16_in_f32 = adapter.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32);
        let weights = match weights {
            GpuWeights::Auto if f16_in_f32 => GpuWeights::F16,
            GpuWeights::Auto => GpuWeights::F32,
            w => w,
        };
        if weights == GpuWeights::F16 && !f16_in_f32 {
            return Err(Error::Backend(format!(
                "GPU adapter `{}` cannot unpack f16 in shaders (a GL ES limitation); use f32 weights",
                info.name
            )));
        }
        // Downlevel defaults run everywhere (WebGPU, GL, old mobile); raise only what the model
        // needs: 6 storage buffers per shader and buffers as large as an embedding table.
        let limits = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 6.min(have.max_storage_buffers_per_shader_stage),
            max_storage_buffer_binding_size: have.max_storage_buffer_binding_size,
            max_buffer_size: have.max_buffer_size,
            max_compute_workgroup_storage_size: have.max_compute_workgroup_storage_size.min(16384),
            ..wgpu::Limits::downlevel_defaults()
        };
        if limits.max_storage_buffers_per_shader_stage < 6 {
            return Err(Error::Backend(format!(
                "GPU adapter `{}` allows {} storage buffers per shader; wembed needs 6",
                info.name, have.max_storage_buffers_per_shader_stage
            )));
        }
        // Timestamps cost nothing unless a pass asks for them; ask for them where they exist.
        // shader-f16 likewise (f16 arithmetic: the f16 peak probe; the f16 weights themselves
        // are unpacked to f32 with core WGSL and need no feature).
        // Subgroups are not asked for, so no kernel uses them: naga 30 parses `enable
        // subgroups;` and wgpu offers Features::SUBGROUP natively (Vulkan), but wgpu 30's
        // browser backend has no mapping for WebGPU's `subgroups` feature (its FEATURES_MAPPING
        // lists 16 features, not that one), so a page could never request it through wgpu,
        // though Chromium's adapters, SwiftShader included, offer it. Kernels written for
        // subgroups would then run natively only, which is not where users are; the reductions
        // (attention's, the few-row matmul's) go through workgroup memory instead.
        let features = adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wembed"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Backend(format!("GPU adapter `{}` refused a device: {e}", info.name)))?;
        let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let lost = failure.clone();
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut f) = lost.lock() {
                f.get_or_insert(format!("GPU device lost ({reason:?}): {message}"));
            }
        });
        // wgpu's default handler panics on a validation or out-of-memory error; record it
        // instead, so the next call returns it as an Error.
        let failed = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut f) = failed.lock() {
                f.get_or_insert(format!("GPU error: {e}"));
            }
        }));
        let software = info.device_type == wgpu::DeviceType::Cpu;
        let pipelines = Pipelines::new(&device, f16_in_f32, software);
        let limits = device.limits();
        let align = limits.min_uniform_buffer_offset_alignment as u64;
        let ledger = Arc::new(Ledger::default());
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wembed placeholder"),
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let placeholder = Tracked::new(placeholder, &ledger);
        let gpu = Gpu {
            weights,
            device,
            queue,
            info,
            limits,
            pipelines,
            pool: Arc::new(Mutex::new(BufferPool::new(&ledger))),
            state: Mutex::new(State::new(align)),
            failure,
            placeholder,
            profiler: None,
            ledger,
            staging: StagingBuffers::new(),
            binding_cap: None,
            tiles: None,
            half_math: None,
            f32_only: AtomicBool::new(false),
        };
        gpu.check()?;
        Ok(gpu)
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The adapter's name, or "unnamed adapter" where the browser hides it.
    pub fn adapter_name(&self) -> &str {
        if self.info.name.is_empty() { "unnamed adapter" } else { &self.info.name }
    }

    /// Times every dispatch with timestamp queries from now on, if the adapter has them (returns
    /// whether it does). Read the totals with [`Gpu::take_kernel_times`].
    pub fn enable_profiling(&mut self) -> bool {
        if !self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            return false;
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("wembed timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * MAX_TIMED_PASSES,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wembed timestamps"),
            size: 16 * MAX_TIMED_PASSES as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let period = self.queue.get_timestamp_period() as f64;
        self.profiler = Some(Profiler {
            queries,
            resolve,
            period,
            totals: Mutex::new(vec![(0.0, 0, Work::default()); Kernel::ALL.len()]),
        });
        true
    }

    /// GPU time per kernel since the last call: (kernel, total seconds, dispatches), busiest
    /// first. Empty unless profiling is on.
    pub fn take_kernel_times(&self) -> Vec<(&'static str, f64, usize)> {
        self.take_kernel_profile().into_iter().map(|k| (k.kernel, k.seconds, k.dispatches)).collect()
    }

    /// As [`Gpu::take_kernel_times`], with the FLOPs and least bytes moved of the timed
    /// dispatches (what GFLOP/s and GB/s per kernel are computed from).
    pub fn take_kernel_profile(&self) -> Vec<KernelTime> {
        let Some(p) = &self.profiler else { return vec![] };
        let Ok(mut totals) = p.totals.lock() else { return vec![] };
        let mut out: Vec<_> = Kernel::ALL
            .iter()
            .zip(totals.iter())
            .filter(|(_, (_, n, _))| *n > 0)
            .map(|(k, (ns, n, work))| KernelTime {
                kernel: k.name(),
                seconds: ns * 1e-9,
                dispatches: *n,
                flops: work.flops,
                bytes: work.bytes,
            })
            .collect();
        totals.iter_mut().for_each(|t| *t = (0.0, 0, Work::default()));
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        out
    }

    /// Host CPU time spent recording and submitting since the last call (see [`HostTimes`]).
    pub fn take_host_times(&self) -> HostTimes {
        self.state.lock().map(|mut s| std::mem::take(&mut s.host)).unwrap_or_default()
    }

    /// Acts as if the adapter bound at most `bytes` per storage binding: tests use it to run
    /// the paths of models larger than the adapter (a host-side word table, smaller batches).
    #[doc(hidden)]
    pub fn cap_binding_size(&mut self, bytes: u64) {
        self.binding_cap = Some(bytes);
    }

    /// Runs every matmul in `tiles`' kernel, and attention and layer norm in the matching ones
    /// (a GPU's for `Narrow` and `Wide`, the direct ones for `Direct`; None: chosen per adapter
    /// class and dispatch, as by default): tests check each, gpu-bench times each.
    #[doc(hidden)]
    pub fn force_tiles(&mut self, tiles: Option<Tiles>) {
        self.tiles = tiles;
    }

    /// Turns the tiled matmuls' f16 arithmetic (reduced weights) on or off (None: the default, see
    /// [`Gpu::half_math`]); it stays off where the device has no `shader-f16`.
    #[doc(hidden)]
    pub fn force_half_math(&mut self, on: Option<bool>) {
        self.half_math = on;
    }

    /// Whether the tiled matmul on reduced weights (f16, q8_0, q4_1, K-quants; f32 weights keep
    /// f32 arithmetic) computes in f16 (Kernel::LinearF16H and the like: products summed in
    /// f16 over 16 terms, then in f32; see shaders/linear.wgsl): where the device has
    /// `shader-f16`, on a GPU by default and on a software adapter only when forced. GPUs
    /// run f16 at least at f32's rate, many two to an instruction (packed pairs: AMD since
    /// Vega, NVIDIA's data-centre parts and Turing, Intel Xe), and the tiles take half the
    /// workgroup memory; exceptions are old parts such as NVIDIA's consumer Pascal, whose f16
    /// is slow. lavapipe emulates it at 19 GFLOP/s against 51 in f32 (`gpu-bench` peak probe,
    /// 2 cores). Not yet measured on a GPU: `gpu-bench`'s sweep prints both (issue 12).
    /// Never for a model whose activations may leave f16's range (Gemma 3, the decoders:
    /// `Backend::keep_f32_arithmetic`), even when forced, nor after a pass in f16 arithmetic
    /// went non-finite (`Backend::fall_back_to_f32`: the embedder runs that batch again).
    pub fn half_math(&self) -> bool {
        !self.f32_only.load(Ordering::Relaxed) && self.half_math.unwrap_or(!self.is_software()) && self.has_shader_f16()
    }

    /// A software adapter (lavapipe, SwiftShader): the CPU behind it sets other defaults.
    fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The tiled matmul's shape for an [m, n] output (see [`WIDE_MIN_TILES`]): `Narrow` or
    /// `Wide`, the one forced or the one the rule picks.
    pub fn tiles_for(&self, m: usize, n: usize) -> Tiles {
        let min = if self.is_software() { WIDE_MIN_TILES_SOFTWARE } else { WIDE_MIN_TILES };
        match self.tiles {
            Some(t @ (Tiles::Narrow | Tiles::Wide)) => t,
            _ if m.div_ceil(128) * n.div_ceil(128) >= min => Tiles::Wide,
            _ => Tiles::Narrow,
        }
    }

    /// Whether the software adapters' kernels run (linear_direct.wgsl, attention_direct.wgsl,
    /// layer_norm_direct.wgsl): on a software adapter unless a tile shape is forced, and
    /// wherever forced.
    fn direct_kernels(&self) -> bool {
        match self.tiles {
            Some(t) => t == Tiles::Direct,
            None => self.is_software(),
        }
    }

    /// Whether `linear` takes linear_direct.wgsl for a product with `k` columns: where the
    /// software adapters' kernels run, and k % 8 == 0.
    pub fn direct_for(&self, k: usize) -> bool {
        k.is_multiple_of(8) && self.direct_kernels()
    }

    /// Bytes of all GPU buffers this backend holds now.
    pub fn live_buffer_bytes(&self) -> u64 {
        self.ledger.live.load(Ordering::Relaxed)
    }

    /// Destroys the device, as a driver reset would: for testing the lost-device path.
    #[doc(hidden)]
    pub fn simulate_device_loss(&self) {
        self.device.destroy();
        // Natively the lost callback runs inside poll.
        let _ = self.device.poll(wgpu::PollType::Poll);
    }

    /// The failure wgpu reported, if any: a lost device or a failed command.
    fn check(&self) -> Result<()> {
        match self.failure.lock().ok().and_then(|f| f.clone()) {
            Some(msg) => Err(Error::Backend(format!("{msg}; load the model again to get a new device"))),
            None => Ok(()),
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| Error::Backend("GPU state poisoned by an earlier failure".into()))
    }

    fn tensor(&self, rows: usize, cols: usize) -> Result<GpuTensor> {
        let bytes = (rows * cols * 4) as u64;
        let buffer =
            self.pool.lock().map_err(|_| Error::Backend("GPU buffer pool poisoned".into()))?.take(&self.device, bytes);
        Ok(GpuTensor {
            rows,
            cols,
            format: GpuFormat::F32,
            scale_offset: 0,
            buffer: Some(buffer),
            pool: Some(self.pool.clone()),
            host: None,
        })
    }

    fn upload(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> Tracked {
        // Padded to 16 bytes, never empty: the matmul binds weights as vec4 arrays too, and a
        // zero-sized binding is invalid.
        let padded;
        let contents = if bytes.is_empty() || !bytes.len().is_multiple_of(16) {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().max(1).next_multiple_of(16), 0);
            padded = v;
            &padded[..]
        } else {
            bytes
        };
        let buffer =
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: Some(label), contents, usage });
        Tracked::new(buffer, &self.ledger)
    }

    /// Uploads the batch layout once per batch; ops of the same batch reuse it. Its buffers
    /// come from the pool (so the bind groups that name them are found again next call) and
    /// stay out of it until the submit: a queued write lands before the whole wave runs.
    fn meta<'s>(&self, state: &'s mut State, meta: &SeqMeta, ids: Option<(&[u32], &[u32])>) -> Result<&'s MetaBuffers> {
        let reuse = ids.is_none() && matches!(&state.meta, Some(m) if m.meta == *meta);
        if !reuse {
            let mut toks = vec![0u32; meta.tokens * 4];
            for b in 0..meta.batch() {
                for (pos, r) in meta.rows(b).enumerate() {
                    toks[r * 4 + 2] = pos as u32;
                    toks[r * 4 + 3] = b as u32;
                }
            }
            if let Some((ids, type_ids)) = ids {
                for r in 0..meta.tokens {
                    toks[r * 4] = ids[r];
                    // A model without token types passes none.
                    toks[r * 4 + 1] = type_ids.get(r).copied().unwrap_or(0);
                }
            }
            let seqs: Vec<u32> =
                (0..meta.batch()).flat_map(|b| [meta.offsets[b], meta.lens[b], meta.starts[b], 0]).collect();
            let write = |words: &[u32]| -> Result<Tracked> {
                let bytes: &[u8] = bytemuck::cast_slice(words);
                let buffer = self
                    .pool
                    .lock()
                    .map_err(|_| Error::Backend("GPU buffer pool poisoned".into()))?
                    .take_for_queue_write(&self.device, bytes.len() as u64);
                if !bytes.is_empty() {
                    self.queue.write_buffer(&buffer, 0, bytes);
                }
                Ok(buffer)
            };
            let tiles: Vec<u32> = (0..meta.batch())
                .flat_map(|b| (0..meta.lens[b]).step_by(ATTENTION_QUERIES).flat_map(move |q| [b as u32, q, 0, 0]))
                .collect();
            let fresh = MetaBuffers {
                meta: meta.clone(),
                toks: write(&toks)?,
                seqs: write(&seqs)?,
                tile_count: tiles.len() / 4,
                tiles: write(&tiles)?,
            };
            if let Some(old) = state.meta.replace(fresh) {
                state.retired.extend([old.toks, old.seqs, old.tiles]);
            }
        }
        state.meta.as_ref().ok_or_else(|| Error::Backend("GPU batch layout missing".into()))
    }
}

impl Gpu {
    /// The most bytes one storage binding may hold on this device.
    fn max_binding(&self) -> u64 {
        let limits = &self.limits;
        let adapter = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        self.binding_cap.map_or(adapter, |cap| cap.min(adapter))
    }

    fn weight_buffer(&self, rows: usize, cols: usize, bytes: &[u8], format: GpuFormat) -> Result<GpuTensor> {
        let max = self.max_binding();
        if bytes.len() as u64 > max {
            return Err(Error::Backend(format!(
                "a {rows}x{cols} weight is {} bytes; this GPU binds at most {max} (the CPU backend has no such limit)",
                bytes.len()
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
        let buffer = self.upload("wembed weight", bytes, usage);
        Ok(GpuTensor { rows, cols, format, scale_offset: 0, buffer: Some(buffer), pool: None, host: None })
    }

    fn upload_f32(&self, w: HostTensor) -> Result<GpuTensor> {
        let (rows, cols) = matrix_shape(&w)?;
        self.weight_buffer(rows, cols, bytemuck::cast_slice(&w.data), GpuFormat::F32)
    }

    /// Rows of f16 pairs, each row padded to an even length (the layout linear_f16.wgsl reads).
    /// A weight with values beyond f16's range (±65,504) stays f32: rounding it would turn them
    /// into infinities.
    fn upload_f16(&self, w: HostTensor) -> Result<GpuTensor> {
        if w.data.iter().any(|v| v.abs() > f32::from(half::f16::MAX)) {
            return self.upload_f32(w);
        }
        let (rows, cols) = matrix_shape(&w)?;
        let padded = cols.next_multiple_of(2);
        let mut halves = vec![0u16; rows * padded];
        for (dst, src) in halves.chunks_exact_mut(padded).zip(w.data.chunks_exact(cols)) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = half::f16::from_f32(*s).to_bits();
            }
        }
        self.weight_buffer(rows, cols, bytemuck::cast_slice(&halves), GpuFormat::F16)
    }
}

impl Gpu {
    /// Blocks in the layouts linear_q8.wgsl / linear_q4.wgsl and embed.wgsl read: the levels
    /// of every row (each padded to a multiple of 32 weights), then the f32 block scales (and
    /// minimums). Quantized with `crate::quant`, so the values equal the CPU backend's.
    fn upload_blocks(&self, w: QuantMatrix) -> Result<GpuTensor> {
        if w.format().is_k() {
            return self.upload_k(w);
        }
        // Levels plus an f32 scale (and min) per block of 32.
        let per_block = match w.format() {
            QuantFormat::Q8_0 => 32 + 4,
            _ => 16 + 8,
        };
        if (w.rows * w.cols.div_ceil(BLOCK) * per_block) as u64 > self.max_binding() {
            // Only a word table gets this large; `linear` refuses a host-side matrix.
            return Ok(self.host_table(w.rows, w.cols, HostTable::Blocks(w)));
        }
        let f16 = |bits: u16| half::f16::from_bits(bits).to_f32();
        let (mut levels, mut scales): (Vec<u8>, Vec<f32>) = (vec![], vec![]);
        let format = match &w.blocks {
            Blocks::Q8_0(blocks) => {
                for b in blocks {
                    levels.extend(b.qs.iter().map(|&q| q as u8));
                    scales.push(f16(b.d));
                }
                GpuFormat::Q8_0
            }
            Blocks::Q4_1(blocks) => {
                for b in blocks {
                    // ggml keeps weight i in the low nibble of byte i and weight i + 16 in its
                    // high nibble; the shader wants weights 8j..8j+8 in u32 j, in order.
                    let mut q = [0u8; BLOCK];
                    for (i, byte) in b.qs.iter().enumerate() {
                        q[i] = byte & 0x0f;
                        q[i + BLOCK / 2] = byte >> 4;
                    }
                    levels.extend(q.chunks_exact(2).map(|pair| pair[0] | (pair[1] << 4)));
                    scales.extend([f16(b.d), f16(b.m)]);
                }
                GpuFormat::Q4_1
            }
            Blocks::Q4K(_) | Blocks::Q5K(_) | Blocks::Q6K(_) => unreachable!("upload_k takes the K-quants"),
        };
        let scale_offset = (levels.len() / 4) as u32;
        levels.extend_from_slice(bytemuck::cast_slice(&scales));
        let mut t = self.weight_buffer(w.rows, w.cols, &levels, format)?;
        t.scale_offset = scale_offset;
        Ok(t)
    }

    /// K-quant blocks as the file has them (shaders/kquant.wgsl reads their bytes). Rows whose
    /// length is not a multiple of 256 cannot reach here: `QuantMatrix::from_bytes` refuses them.
    fn upload_k(&self, w: QuantMatrix) -> Result<GpuTensor> {
        let format = match w.format() {
            QuantFormat::Q4K => GpuFormat::Q4K,
            QuantFormat::Q5K => GpuFormat::Q5K,
            _ => GpuFormat::Q6K,
        };
        if w.bytes().len() as u64 > self.max_binding() {
            // Only a word table gets this large; `linear` refuses a host-side matrix.
            return Ok(self.host_table(w.rows, w.cols, HostTable::Blocks(w)));
        }
        let mut bytes = w.bytes().to_vec();
        bytes.resize(bytes.len().next_multiple_of(4).max(4), 0);
        self.weight_buffer(w.rows, w.cols, &bytes, format)
    }

    /// A word table kept on the host (see [`HostTable`]), with a placeholder buffer.
    fn host_table(&self, rows: usize, cols: usize, host: HostTable) -> GpuTensor {
        let buffer = self.upload("wembed host-side table", &[0; 16], wgpu::BufferUsages::STORAGE);
        GpuTensor {
            rows,
            cols,
            format: GpuFormat::F32,
            scale_offset: 0,
            buffer: Some(buffer),
            pool: None,
            host: Some(host),
        }
    }

    /// A float weight stored as `format` says (None: f32).
    fn upload_as(&self, w: HostTensor, format: Option<GpuFormat>) -> Result<GpuTensor> {
        let (rows, cols) = matrix_shape(&w)?;
        let quant = |f| self.upload_blocks(QuantMatrix::quantize(f, rows, cols, &w.data));
        match format {
            None | Some(GpuFormat::F32) => self.upload_f32(w),
            Some(GpuFormat::F16) => self.upload_f16(w),
            Some(GpuFormat::Q8_0) => quant(QuantFormat::Q8_0),
            Some(GpuFormat::Q4_1) => quant(QuantFormat::Q4_1),
            Some(GpuFormat::Q4K) => quant(QuantFormat::Q4K),
            Some(GpuFormat::Q5K) => quant(QuantFormat::Q5K),
            Some(GpuFormat::Q6K) => quant(QuantFormat::Q6K),
        }
    }
}

fn matrix_shape(w: &HostTensor) -> Result<(usize, usize)> {
    match w.shape[..] {
        [r, c] => Ok((r, c)),
        _ => Err(Error::Backend(format!("matrix must be 2-D, got shape {:?}", w.shape))),
    }
}

fn groups(n: usize, per: usize) -> u32 {
    n.div_ceil(per) as u32
}

impl Gpu {
    /// shaders/normalize.wgsl over `x` in place.
    fn normalize_rows(&self, state: &mut State, x: &GpuTensor) -> Result<()> {
        let params = kernels::NormalizeParams { rows: x.rows as u32, cols: x.cols as u32, _pad: [0; 2] };
        self.dispatch(
            state,
            Kernel::Normalize,
            bytemuck::bytes_of(&params),
            &[x.binding()],
            (x.rows as u32, 1),
            Work { flops: 3.0 * x.rows as f64 * x.cols as f64, bytes: 2.0 * x.bytes() as f64 },
        )
    }
}

fn act_code(act: Option<Activation>) -> u32 {
    match act {
        None => 0,
        Some(Activation::GeluErf) => 1,
        Some(Activation::GeluTanh) => 2,
        Some(Activation::Relu) => 3,
        Some(Activation::Tanh) => 4,
        Some(Activation::Silu) => 5,
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;
    type Matrix = GpuTensor;
    type Vector = GpuTensor;

    fn name(&self) -> String {
        format!("gpu ({}, {:?})", self.adapter_name(), self.info.backend)
    }

    fn keep_f32_arithmetic(&mut self) {
        self.f32_only.store(true, Ordering::Relaxed);
    }

    fn fall_back_to_f32(&self) -> bool {
        let was = self.half_math();
        self.f32_only.store(true, Ordering::Relaxed);
        was
    }

    fn matrix(&self, w: HostTensor) -> Result<GpuTensor> {
        let format = match self.weights {
            GpuWeights::F32 | GpuWeights::Auto => GpuFormat::F32,
            GpuWeights::F16 => GpuFormat::F16,
            GpuWeights::Q8_0 | GpuWeights::Q4 => GpuFormat::Q8_0,
        };
        self.upload_as(w, Some(format))
    }

    fn table(&self, w: HostTensor) -> Result<GpuTensor> {
        self.upload_f32(w)
    }

    fn word_table(&self, w: HostTensor) -> Result<GpuTensor> {
        let format = match self.weights {
            GpuWeights::F32 | GpuWeights::Auto => GpuFormat::F32,
            GpuWeights::F16 => GpuFormat::F16,
            GpuWeights::Q8_0 => GpuFormat::Q8_0,
            GpuWeights::Q4 => GpuFormat::Q4_1,
        };
        let (rows, cols) = matrix_shape(&w)?;
        let bytes_per = match format {
            GpuFormat::F32 => 4.0,
            GpuFormat::F16 => 2.0,
            GpuFormat::Q8_0 => 34.0 / 32.0,
            GpuFormat::Q4_1 => 20.0 / 32.0,
            // Not reached: float checkpoints are never stored as K-quants.
            GpuFormat::Q4K | GpuFormat::Q5K | GpuFormat::Q6K => 1.0,
        };
        if (rows * cols) as f64 * bytes_per > self.max_binding() as f64 {
            let host = match format {
                GpuFormat::F32 | GpuFormat::F16 => HostTable::F32(w.data),
                GpuFormat::Q8_0 => HostTable::Blocks(QuantMatrix::quantize(QuantFormat::Q8_0, rows, cols, &w.data)),
                _ => HostTable::Blocks(QuantMatrix::quantize(QuantFormat::Q4_1, rows, cols, &w.data)),
            };
            return Ok(self.host_table(rows, cols, host));
        }
        self.upload_as(w, Some(format))
    }

    fn quantized_matrix(&self, w: QuantMatrix) -> Result<GpuTensor> {
        self.upload_blocks(w)
    }

    fn max_batch_tokens(&self, widest: usize) -> usize {
        // One workgroup row per token in embed (attention has at most one per token), and the widest activation
        // `[tokens, widest]` in f32 within one binding.
        let limits = &self.limits;
        let by_grid = limits.max_compute_workgroups_per_dimension as usize;
        let by_binding = (self.max_binding() / (4 * widest.max(1) as u64)) as usize;
        by_grid.min(by_binding).max(1)
    }

    /// Batches by tokens, not texts: 32 short texts leave a GPU idle, 32 long ones may not fit.
    /// `gpu-bench` measures sentences/s across budgets.
    fn default_batch(&self) -> BatchSize {
        BatchSize { texts: usize::MAX, tokens: if self.is_software() { BATCH_TOKENS_SOFTWARE } else { BATCH_TOKENS } }
    }

    fn stored_as(&self, m: &GpuTensor) -> &'static str {
        match m.format {
            GpuFormat::F32 => "f32",
            GpuFormat::F16 => "f16",
            GpuFormat::Q8_0 => "q8_0",
            GpuFormat::Q4_1 => "q4_1",
            GpuFormat::Q4K => "q4_k",
            GpuFormat::Q5K => "q5_k",
            GpuFormat::Q6K => "q6_k",
        }
    }

    fn vector(&self, v: HostTensor) -> Result<GpuTensor> {
        let n = v.data.len();
        self.upload_f32(HostTensor::new(vec![1, n], v.data))
    }

    fn embed(
        &self,
        ids: &[u32],
        type_ids: &[u32],
        meta: &SeqMeta,
        word: &GpuTensor,
        pos: Option<&GpuTensor>,
        types: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        self.check()?;
        let dim = word.cols;
        check_embed_input(ids, type_ids, meta, word.rows, pos.map(|t| t.rows), types.map(|t| t.rows))?;
        if [pos, types].into_iter().flatten().any(|t| t.cols != dim) {
            return Err(Error::Backend(format!("embed: tables of other widths than the word table's {dim}")));
        }
        if [pos, types].into_iter().flatten().any(|t| t.format != GpuFormat::F32) {
            return Err(Error::Backend("embed: position and token-type tables must be f32".into()));
        }
        // A host-side word table: gather this batch's rows here, upload them, and let the
        // kernel read row t for token t.
        let gathered;
        let (word_buf, word_format, scale_offset, ids) = match &word.host {
            None => (word.binding(), word.format, word.scale_offset, std::borrow::Cow::Borrowed(ids)),
            Some(host) => {
                let mut rows = vec![0f32; ids.len() * dim];
                for (dst, &id) in rows.chunks_exact_mut(dim).zip(ids) {
                    let id = id as usize;
                    match host {
                        HostTable::F32(data) => dst.copy_from_slice(&data[id * dim..(id + 1) * dim]),
                        HostTable::Blocks(q) => q.dequantize_rows(id, id + 1, dst),
                    }
                }
                gathered =
                    self.upload("wembed gathered words", bytemuck::cast_slice(&rows), wgpu::BufferUsages::STORAGE);
                let identity: Vec<u32> = (0..ids.len() as u32).collect();
                (gathered.binding(0), GpuFormat::F32, 0, std::borrow::Cow::Owned(identity))
            }
        };
        let out = self.tensor(meta.tokens, dim)?;
        let mut state = self.state()?;
        let toks = self.meta(&mut state, meta, Some((&ids, type_ids)))?.toks.binding(0);
        let params = kernels::EmbedParams {
            tokens: meta.tokens as u32,
            dim: dim as u32,
            format: word_format.code(),
            scale_offset,
            has_position: pos.is_some() as u32,
            has_token_type: types.is_some() as u32,
            _pad: [0; 2],
        };
        let table = |t: Option<&GpuTensor>| t.map(|t| t.binding()).unwrap_or_else(|| self.placeholder.binding(0));
        let bufs = [toks, word_buf, table(pos), table(types), out.binding()];
        // Three rows read and one written per token.
        let work = Work { flops: (2 * meta.tokens * dim) as f64, bytes: (4 * 4 * meta.tokens * dim) as f64 };
        self.dispatch(
            &mut state,
            Kernel::Embed,
            bytemuck::bytes_of(&params),
            &bufs,
            (groups(dim, 64), meta.tokens as u32),
            work,
        )?;
        Ok(out)
    }

    fn linear(&self, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, act: Option<Activation>) -> Result<GpuTensor> {
        self.check()?;
        if x.cols != w.cols || b.cols != w.rows {
            return Err(Error::Backend(format!("linear: x [{}, {}] · w [{}, {}]ᵀ", x.rows, x.cols, w.rows, w.cols)));
        }
        if w.host.is_some() {
            return Err(Error::Backend(format!(
                "a [{}, {}] weight matrix is larger than this GPU can bind (the CPU backend has no such limit)",
                w.rows, w.cols
            )));
        }
        let out = self.tensor(x.rows, w.rows)?;
        // A software adapter: the direct kernel, whatever the rows. A GPU: few rows (one query)
        // take the matrix-vector kernel, which reads each weight once; more the tiled one,
        // which reuses each staged weight for 64 or 128 rows.
        // (Its grid holds 65535 blocks a side; past that the tiled kernel's larger blocks.)
        let direct_grid = (groups(w.rows, DIRECT_W_ROWS), groups(x.rows, DIRECT_X_ROWS));
        let direct = self.direct_for(w.cols) && direct_grid.0 <= 65535 && direct_grid.1 <= 65535;
        let gemv = !direct && x.rows <= GEMV_MAX_ROWS && w.cols.is_multiple_of(8);
        let wide = !direct && !gemv && self.tiles_for(x.rows, w.rows) == Tiles::Wide;
        let tiled = |narrow, wide_shape| if wide { wide_shape } else { narrow };
        // Reduced weights in the tiled kernels: f16 arithmetic where `half_math` says.
        let half = self.half_math();
        let reduced = |narrow, wide_shape, narrow_h, wide_h| {
            if half { tiled(narrow_h, wide_h) } else { tiled(narrow, wide_shape) }
        };
        let (kernel, vec4) = match (w.format, gemv) {
            _ if direct => (
                match w.format {
                    GpuFormat::F32 => Kernel::DirectF32,
                    GpuFormat::F16 => Kernel::DirectF16,
                    GpuFormat::Q8_0 => Kernel::DirectQ8,
                    GpuFormat::Q4_1 => Kernel::DirectQ4,
                    GpuFormat::Q4K | GpuFormat::Q5K | GpuFormat::Q6K => Kernel::DirectK,
                },
                true,
            ),
            (GpuFormat::F32, false) => (tiled(Kernel::Linear, Kernel::LinearWide), w.cols.is_multiple_of(4)),
            (GpuFormat::F16, false) => (
                reduced(Kernel::LinearF16, Kernel::LinearF16Wide, Kernel::LinearF16H, Kernel::LinearF16HWide),
                w.cols.is_multiple_of(8),
            ),
            (GpuFormat::Q8_0, false) => (
                reduced(Kernel::LinearQ8, Kernel::LinearQ8Wide, Kernel::LinearQ8H, Kernel::LinearQ8HWide),
                w.cols.is_multiple_of(32),
            ),
            (GpuFormat::Q4_1, false) => (
                reduced(Kernel::LinearQ4, Kernel::LinearQ4Wide, Kernel::LinearQ4H, Kernel::LinearQ4HWide),
                w.cols.is_multiple_of(32),
            ),
            (GpuFormat::F32, true) => (Kernel::GemvF32, true),
            (GpuFormat::F16, true) => (Kernel::GemvF16, true),
            (GpuFormat::Q8_0, true) => (Kernel::GemvQ8, true),
            (GpuFormat::Q4_1, true) => (Kernel::GemvQ4, true),
            // vec4: x's staging (k is a multiple of 256); the K-quant stage_w has one path.
            (GpuFormat::Q4K | GpuFormat::Q5K | GpuFormat::Q6K, false) => {
                (reduced(Kernel::LinearK, Kernel::LinearKWide, Kernel::LinearKH, Kernel::LinearKHWide), true)
            }
            (GpuFormat::Q4K | GpuFormat::Q5K | GpuFormat::Q6K, true) => (Kernel::GemvK, true),
        };
        let tile = if wide { 128 } else { 64 };
        let grid = if direct {
            direct_grid
        } else if gemv {
            // linear_gemv.wgsl: GEMV_NR = 16 weight rows by GEMV_MB = 8 x rows a workgroup; the
            // blocks of x rows in y, beside the spill of more than 65535 weight-row groups.
            let n = w.rows.div_ceil(16) as u32;
            (n.min(65535), n.div_ceil(65535) * x.rows.div_ceil(8) as u32)
        } else {
            (groups(w.rows, tile), groups(x.rows, tile))
        };
        let params = kernels::LinearParams {
            m: x.rows as u32,
            n: w.rows as u32,
            k: w.cols as u32,
            act: act_code(act),
            vec4: vec4 as u32,
            scale_offset: w.scale_offset,
            format: w.format.code(),
            _pad: 0,
        };
        let mut state = self.state()?;
        // x and w bound twice: as scalars and as vec4s (the shader uses one or the other).
        let bufs = [x.binding(), w.binding(), b.binding(), out.binding(), x.binding(), w.binding()];
        // The weights once, x once, y once: the least a matmul moves.
        let work = Work {
            flops: 2.0 * (x.rows * w.rows * w.cols) as f64,
            bytes: (w.buffer().size() + x.bytes() + out.bytes()) as f64,
        };
        self.dispatch(&mut state, kernel, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        Ok(out)
    }

    fn layer_norm(
        &self,
        x: GpuTensor,
        residual: Option<&GpuTensor>,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        eps: f32,
    ) -> Result<GpuTensor> {
        self.check()?;
        if gamma.cols != x.cols || beta.cols != x.cols || residual.is_some_and(|r| r.bytes() != x.bytes()) {
            return Err(Error::Backend(format!("layer_norm: x [{}, {}] with mismatched parameters", x.rows, x.cols)));
        }
        let params = kernels::LayerNormParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            eps,
            has_residual: residual.is_some() as u32,
        };
        let res = residual.map(|r| r.binding()).unwrap_or_else(|| self.placeholder.binding(0));
        // A software adapter: layer_norm_direct.wgsl, a thread per row, 16 rows a workgroup.
        let (kernel, groups) = if self.direct_kernels() {
            (Kernel::LayerNormDirect, groups(x.rows, DIRECT_NORM_ROWS))
        } else {
            (Kernel::LayerNorm, x.rows as u32)
        };
        let grid = (groups.min(65535), groups.div_ceil(65535));
        let mut state = self.state()?;
        let bufs = [x.binding(), res, gamma.binding(), beta.binding()];
        // x read twice and written twice, the residual read once.
        let passes = if residual.is_some() { 5 } else { 4 };
        let work = Work { flops: (8 * x.rows * x.cols) as f64, bytes: (passes * x.bytes()) as f64 };
        self.dispatch(&mut state, kernel, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        Ok(x)
    }

    fn attention(&self, qkv: &GpuTensor, meta: &SeqMeta, a: &Attention<'_, GpuTensor>) -> Result<GpuTensor> {
        self.check()?;
        if let Some(t) = a.bias
            && (t.format != GpuFormat::F32 || t.host.is_some())
        {
            return Err(Error::Backend("attention: the bias table must be an f32 table on the device".into()));
        }
        let bias_span = a.check(qkv.rows, qkv.cols, meta, a.bias.map(|t| (t.rows, t.cols)))? as u32;
        let (heads, hd, dim) = (a.heads, a.head_dim, a.out_dim());
        if hd > ATTENTION_MAX_HEAD_DIM {
            return Err(Error::Unsupported(format!(
                "attention heads of {hd} dims on the GPU (at most {ATTENTION_MAX_HEAD_DIM})"
            )));
        }
        let key_tile = ((ATTENTION_MEM - ATTENTION_QUERIES * hd) / (2 * hd)).min(ATTENTION_MAX_KEY_TILE);
        let out = self.tensor(meta.tokens, dim)?;
        let mut state = self.state()?;
        let m = self.meta(&mut state, meta, None)?;
        let params = kernels::AttentionParams {
            tiles: m.tile_count as u32,
            heads: heads as u32,
            group: (heads / a.kv_heads) as u32,
            head_dim: hd as u32,
            scale: 1.0 / (hd as f32).sqrt(),
            bias_span,
            // The shader's NO_WINDOW; a window as wide as the longest text is none.
            window: a.window.filter(|&w| w < meta.max_len).map_or(u32::MAX, |w| w as u32),
            key_tile: key_tile as u32,
            causal: a.causal as u32,
            _pad: [0; 3],
        };
        // A software adapter: attention_direct.wgsl, a thread per (query, head, 32 dims).
        let direct = self.direct_kernels() && hd.is_multiple_of(DIRECT_HEAD_DIMS);
        let (kernel, grid) = if direct {
            (Kernel::AttentionDirect, (m.tile_count as u32, (heads * hd / DIRECT_HEAD_DIMS) as u32))
        } else {
            (Kernel::Attention, (m.tile_count as u32, heads as u32))
        };
        let (tiles, seqs) = (m.tiles.binding(0), m.seqs.binding(0));
        let bias = a.bias.map(|t| t.binding()).unwrap_or_else(|| self.placeholder.binding(0));
        let bufs = [qkv.binding(), tiles, seqs, out.binding(), bias];
        // q·kᵀ and p·v: 4·len·keys·dim per text (half the keys when causal); q, k, v read once
        // and the context written once.
        let keys = |l: u32| {
            let seen = a.window.map_or(l as f64, |w| (2 * w + 1).min(l as usize) as f64);
            if a.causal { seen / 2.0 } else { seen }
        };
        let pairs: f64 = meta.lens.iter().map(|&l| l as f64 * keys(l)).sum();
        let work = Work { flops: 4.0 * pairs * dim as f64, bytes: (qkv.bytes() + out.bytes()) as f64 };
        self.dispatch(&mut state, kernel, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        Ok(out)
    }

    fn pool(&self, hidden: &GpuTensor, meta: &SeqMeta, modes: &[PoolMode], normalize: bool) -> Result<GpuTensor> {
        self.check()?;
        if hidden.rows != meta.tokens {
            return Err(Error::Backend(format!("pool: {} rows for {} tokens", hidden.rows, meta.tokens)));
        }
        let dim = hidden.cols;
        let width = modes.len() * dim;
        let out = self.tensor(meta.batch(), width)?;
        let mut state = self.state()?;
        let seqs = self.meta(&mut state, meta, None)?.seqs.binding(0);
        for (i, mode) in modes.iter().enumerate() {
            let params = kernels::PoolParams {
                texts: meta.batch() as u32,
                dim: dim as u32,
                width: width as u32,
                col_offset: (i * dim) as u32,
                mode: match mode {
                    PoolMode::Cls => 0,
                    PoolMode::Max => 1,
                    PoolMode::Mean => 2,
                    PoolMode::MeanSqrtLen => 3,
                    PoolMode::LastToken => 4,
                },
                _pad: [0; 3],
            };
            let bufs = [hidden.binding(), seqs.clone(), out.binding()];
            let work = Work { flops: hidden.rows as f64 * dim as f64, bytes: (hidden.bytes() + out.bytes()) as f64 };
            self.dispatch(
                &mut state,
                Kernel::Pool,
                bytemuck::bytes_of(&params),
                &bufs,
                (groups(dim, 64), meta.batch() as u32),
                work,
            )?;
        }
        if normalize {
            self.normalize_rows(&mut state, &out)?;
        }
        Ok(out)
    }

    fn rotary(
        &self,
        qkv: GpuTensor,
        meta: &SeqMeta,
        a: &Attention<'_, GpuTensor>,
        table: &GpuTensor,
    ) -> Result<GpuTensor> {
        self.check()?;
        if qkv.rows != meta.tokens || table.format != GpuFormat::F32 || table.host.is_some() {
            return Err(Error::Backend(format!(
                "rotary: [{}, {}] for {} tokens, with an f32 table on the device",
                qkv.rows, qkv.cols, meta.tokens
            )));
        }
        let pieces = check_rotary(qkv.cols, a, (table.rows, table.cols), meta)?;
        let hd = a.head_dim;
        let params = kernels::RotaryParams {
            tokens: meta.tokens as u32,
            pieces: pieces as u32,
            head_dim: hd as u32,
            cols: qkv.cols as u32,
        };
        let mut state = self.state()?;
        let toks = self.meta(&mut state, meta, None)?.toks.binding(0);
        let bufs = [qkv.binding(), toks, table.binding()];
        // q and k read and written once, a table row per token.
        let pairs = pieces * hd / 2;
        let work = Work {
            flops: (6 * meta.tokens * pairs) as f64,
            bytes: (4 * 4 * meta.tokens * pairs + 4 * meta.tokens * hd) as f64,
        };
        let grid = (groups(pairs, 64), meta.tokens as u32);
        self.dispatch(&mut state, Kernel::Rotary, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        drop(state);
        Ok(qkv)
    }

    fn rms_norm(&self, x: &GpuTensor, gamma: &GpuTensor, eps: f32, width: usize) -> Result<GpuTensor> {
        self.check()?;
        check_rms_norm(x.cols, gamma.cols, width)?;
        let out = self.tensor(x.rows, x.cols)?;
        let params = kernels::RmsNormParams {
            rows: x.rows as u32,
            cols: x.cols as u32,
            width: width as u32,
            normed: (gamma.cols / width) as u32,
            eps,
            _pad: [0; 3],
        };
        let mut state = self.state()?;
        let work = Work { flops: (4 * x.rows * x.cols) as f64, bytes: (2 * x.bytes()) as f64 };
        let grid = ((x.cols / width) as u32, x.rows as u32);
        let bufs = [x.binding(), gamma.binding(), out.binding()];
        self.dispatch(&mut state, Kernel::RmsNorm, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        drop(state);
        Ok(out)
    }

    fn add(&self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        self.check()?;
        if (a.rows, a.cols) != (b.rows, b.cols) {
            return Err(Error::Backend(format!("add: [{}, {}] + [{}, {}]", a.rows, a.cols, b.rows, b.cols)));
        }
        let out = self.tensor(a.rows, a.cols)?;
        let params = kernels::AddParams { rows: a.rows as u32, cols: a.cols as u32, _pad: [0; 2] };
        let mut state = self.state()?;
        let work = Work { flops: (a.rows * a.cols) as f64, bytes: (3 * a.bytes()) as f64 };
        let grid = (groups(a.cols, 64), a.rows as u32);
        let bufs = [a.binding(), b.binding(), out.binding()];
        self.dispatch(&mut state, Kernel::Add, bytemuck::bytes_of(&params), &bufs, grid, work)?;
        drop(state);
        Ok(out)
    }

    fn glu(&self, x: &GpuTensor, act: Activation) -> Result<GpuTensor> {
        self.check()?;
        if !x.cols.is_multiple_of(2) {
            return Err(Error::Backend(format!("glu: {} columns (want 2 * n)", x.cols)));
        }
        let n = x.cols / 2;
        let out = self.tensor(x.rows, n)?;
        let params = kernels::GluParams { rows: x.rows as u32, n: n as u32, act: act_code(Some(act)), _pad: 0 };
        let mut state = self.state()?;
        let work = Work { flops: (8 * x.rows * n) as f64, bytes: (x.bytes() + out.bytes()) as f64 };
        let grid = (groups(n, 64), x.rows as u32);
        self.dispatch(&mut state, Kernel::Glu, bytemuck::bytes_of(&params), &[x.binding(), out.binding()], grid, work)?;
        drop(state);
        Ok(out)
    }

    fn normalize(&self, x: GpuTensor) -> Result<GpuTensor> {
        self.check()?;
        let mut state = self.state()?;
        self.normalize_rows(&mut state, &x)?;
        Ok(x)
    }

    fn read(&self, t: &GpuTensor) -> impl Future<Output = Result<Vec<f32>>> {
        let staged = self.submit_with_copies(&[t]);
        async move { Ok(self.collect(staged).await?.pop().unwrap_or_default()) }
    }

    fn read_many(&self, ts: &[&GpuTensor]) -> impl Future<Output = Result<Vec<Vec<f32>>>> {
        let staged = self.submit_with_copies(ts);
        self.collect(staged)
    }
}

/// What [`Gpu::submit_with_copies`] leaves to await: the staging buffer and how many of its
/// bytes are mapped, the float count of each tensor in it, the kernels whose timestamps follow
/// them, and the mapping.
type Staged = Result<(Tracked, u64, Vec<usize>, Vec<(Kernel, Work)>, MapFuture)>;

impl Gpu {
    /// Waits for the mapping and splits the staging buffer back into tensors.
    async fn collect(&self, staged: Staged) -> Result<Vec<Vec<f32>>> {
        let (staging, total, sizes, timed, done) = staged?;
        // A failed mapping drops the staging buffer rather than keep one in an unknown state.
        done.await?;
        let out = {
            let view =
                staging.slice(..total).get_mapped_range().map_err(|e| Error::Backend(format!("GPU readback: {e}")))?;
            let floats: usize = sizes.iter().sum();
            let all: &[f32] = bytemuck::cast_slice(&view[..floats * 4]);
            if let (Some(p), false) = (&self.profiler, timed.is_empty()) {
                let ticks: Vec<u64> = view[floats * 4..]
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect();
                if let Ok(mut totals) = p.totals.lock() {
                    for ((k, work), pair) in timed.iter().zip(ticks.chunks_exact(2)) {
                        let t = &mut totals[*k as usize];
                        t.0 += pair[1].saturating_sub(pair[0]) as f64 * p.period;
                        t.1 += 1;
                        t.2.flops += work.flops;
                        t.2.bytes += work.bytes;
                    }
                }
            }
            let mut at = 0;
            sizes
                .iter()
                .map(|&n| {
                    let v = all[at..at + n].to_vec();
                    at += n;
                    v
                })
                .collect()
        };
        staging.unmap();
        self.staging.give_back(staging);
        self.check()?;
        Ok(out)
    }
}

/// Resolves when a buffer mapping finishes.
struct MapFuture {
    slot: Arc<Mutex<MapSlot>>,
}

#[derive(Default)]
struct MapSlot {
    result: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<std::task::Waker>,
}

impl Future for MapFuture {
    type Output = Result<()>;
    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<()>> {
        let Ok(mut slot) = self.slot.lock() else {
            return std::task::Poll::Ready(Err(Error::Backend("GPU readback state poisoned".into())));
        };
        match slot.result.take() {
            Some(Ok(())) => std::task::Poll::Ready(Ok(())),
            Some(Err(e)) => std::task::Poll::Ready(Err(Error::Backend(format!("GPU readback failed: {e}")))),
            None => {
                slot.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }
}

impl Gpu {
    /// Ends the encoder with copies of `ts`, back to back, into one mappable buffer; submits
    /// everything recorded since the last read, and starts mapping.
    fn submit_with_copies(&self, ts: &[&GpuTensor]) -> Staged {
        self.check()?;
        let sizes: Vec<usize> = ts.iter().map(|t| t.rows * t.cols).collect();
        let tensor_bytes = (sizes.iter().sum::<usize>() * 4) as u64;
        let mut state = self.state()?;
        let timed = std::mem::take(&mut state.timed);
        let total = (tensor_bytes + 16 * timed.len() as u64).max(4);
        let staging = self.staging.take(&self.device, &self.ledger, total);
        {
            let encoder = state.encoder(&self.device);
            let mut at = 0;
            for t in ts {
                if t.bytes() > 0 {
                    encoder.copy_buffer_to_buffer(t.buffer(), 0, &staging, at, t.bytes());
                }
                at += t.bytes();
            }
            if let (Some(p), false) = (&self.profiler, timed.is_empty()) {
                let n = 2 * timed.len() as u32;
                encoder.resolve_query_set(&p.queries, 0..n, &p.resolve, 0);
                encoder.copy_buffer_to_buffer(&p.resolve, 0, &staging, at, 8 * n as u64);
            }
            self.submit(&mut state);
        }
        drop(state);
        let slot = Arc::new(Mutex::new(MapSlot::default()));
        let cb_slot = slot.clone();
        staging.slice(..total).map_async(wgpu::MapMode::Read, move |r| {
            if let Ok(mut s) = cb_slot.lock() {
                s.result = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        // Natively the callback only runs inside poll; in the browser the event loop runs it.
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| Error::Backend(format!("waiting for the GPU: {e}")))?;
        Ok((staging, total, sizes, timed, MapFuture { slot }))
    }
}
