//! The GPU backend on a real adapter (Mesa's lavapipe in CI: software Vulkan). No adapter is a
//! failure, never a skip. Every kernel is compared with the CPU oracle on random shapes,
//! odd sizes included; end to end the models match the PyTorch fixtures.

mod common;

use std::sync::OnceLock;

use common::*;
use wembed::backend::cpu::{CpuMatrix, CpuTensor, CpuWeights};
use wembed::backend::gpu::{GpuFormat, GpuTensor, GpuWeights, Tiles};
use wembed::backend::{Attention, Backend, SeqMeta};
use wembed::config::{Activation, PoolMode};
use wembed::quant::{QuantFormat, QuantMatrix};
use wembed::weights::HostTensor;
use wembed::{Cpu, EmbedOptions, Embedder, Gpu, ModelFiles};

/// Kernel tolerances: f32 on both sides, different summation orders.
const TOL_LINEAR: f32 = 1e-4;
const TOL_ROWWISE: f32 = 1e-5;

fn gpu() -> Gpu {
    gpu_with(GpuWeights::F32)
}

fn gpu_with(weights: GpuWeights) -> Gpu {
    let gpu =
        pollster::block_on(Gpu::with_weights(weights)).unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}"));
    // CI sets WGPU_BACKEND=vulkan: prove that lavapipe's Vulkan path ran, not a GL fallback.
    if let Ok(want) = std::env::var("WGPU_BACKEND") {
        let got = format!("{:?}", gpu.adapter_info().backend).to_lowercase();
        assert_eq!(got, want.to_lowercase(), "adapter {:?}", gpu.adapter_info());
    }
    gpu
}

/// One device for the kernel tests (opening one on lavapipe takes a moment).
fn shared() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(gpu)
}

/// A device whose tiled matmuls all run in `tiles`' shape, with profiling on, so a test can
/// say which kernel ran.
fn tiled_gpu(weights: GpuWeights, tiles: Tiles) -> Gpu {
    let mut g = gpu_with(weights);
    g.force_tiles(Some(tiles));
    assert!(g.enable_profiling(), "lavapipe has timestamp queries");
    g
}

/// `linear` on `g`, asserting that the tiled kernel of `tiles`' shape ran (`name` is the
/// narrow one's, the wide one's adds "_wide").
fn tiled_linear(
    g: &Gpu,
    tiles: Tiles,
    name: &str,
    x: &GpuTensor,
    w: &GpuTensor,
    b: &GpuTensor,
    act: Option<Activation>,
) -> Vec<f32> {
    g.take_kernel_times();
    let got = read(g, &g.linear(x, w, b, act).unwrap());
    let ran: Vec<_> = g.take_kernel_times().into_iter().map(|(name, _, _)| name).collect();
    let want = if tiles == Tiles::Wide { format!("{name}_wide") } else { name.to_string() };
    assert_eq!(ran, [want.as_str()], "[{}, {}] · [{}, {}]ᵀ", x.rows, x.cols, w.rows, w.cols);
    got
}

/// Deterministic pseudo-random numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn read(g: &Gpu, t: &GpuTensor) -> Vec<f32> {
    pollster::block_on(g.read(t)).unwrap()
}

/// Asserts `got` ≈ `want` within `tol`, reporting the worst element and where it is.
fn check(what: &str, got: &[f32], want: &[f32], cols: usize, tol: f32) {
    let (diff, at) = max_abs_diff(got, want);
    assert!(
        diff <= tol,
        "{what}: max abs error {diff:e} at row {}, col {} (gpu {}, cpu {}), tolerance {tol:e}",
        at / cols,
        at % cols,
        got[at],
        want[at]
    );
}

/// An activation (or table) on both backends.
fn both(rows: usize, cols: usize, data: Vec<f32>) -> (CpuTensor, GpuTensor) {
    let g = shared().table(HostTensor::new(vec![rows, cols], data.clone())).unwrap();
    (CpuTensor::new(rows, cols, data), g)
}

/// An embedding table on both backends.
fn both_table(rows: usize, cols: usize, data: Vec<f32>) -> (CpuMatrix, GpuTensor) {
    let h = HostTensor::new(vec![rows, cols], data);
    (Cpu::new().table(h.clone()).unwrap(), shared().table(h).unwrap())
}

fn both_vec(data: Vec<f32>) -> (Vec<f32>, GpuTensor) {
    let h = HostTensor::new(vec![data.len()], data);
    (Cpu::new().vector(h.clone()).unwrap(), shared().vector(h).unwrap())
}

/// The tiled matmul (linear.wgsl) in both its shapes: 64x64 tiles with 4x4 outputs a thread,
/// and 128x128 with 8x8; shapes past one tile, partial tiles and k not a multiple of the step.
#[test]
fn linear_matches_cpu_on_odd_shapes() {
    let mut rng = Rng(1);
    let acts = [
        None,
        Some(Activation::GeluErf),
        Some(Activation::GeluTanh),
        Some(Activation::Relu),
        Some(Activation::Tanh),
        Some(Activation::Silu),
    ];
    for tiles in [Tiles::Narrow, Tiles::Wide] {
        let g = tiled_gpu(GpuWeights::F32, tiles);
        // k % 4 == 0 takes the vec4 path, the others the scalar one; 1-32 rows with k % 8 != 0
        // stay on the tiled kernel.
        for (i, (m, n, k)) in [
            (1, 1, 1),
            (3, 5, 7),
            (17, 65, 33),
            (64, 64, 64),
            (70, 129, 100),
            (33, 384, 384),
            (5, 3, 4),
            (66, 67, 20),
            (130, 67, 36),
            (131, 200, 19),
            (257, 130, 48),
        ]
        .into_iter()
        .enumerate()
        {
            let act = acts[i % acts.len()];
            let (x, w, b) = (rng.vec(m * k, 1.0), rng.vec(n * k, 0.3), rng.vec(n, 1.0));
            let cpu = Cpu::new();
            let wc = cpu.matrix(HostTensor::new(vec![n, k], w.clone())).unwrap();
            let want = cpu.linear(&CpuTensor::new(m, k, x.clone()), &wc, &b, act).unwrap();
            let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
            let wg = g.matrix(HostTensor::new(vec![n, k], w)).unwrap();
            let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
            let got = tiled_linear(&g, tiles, "linear", &xg, &wg, &bg, act);
            check(&format!("linear {tiles:?} {m}x{n}x{k} {act:?}"), &got, &want.data, n, TOL_LINEAR);
        }
    }
}

#[test]
fn f16_weights_match_cpu_on_the_same_rounded_weights() {
    let mut rng = Rng(5);
    for tiles in [Tiles::Narrow, Tiles::Wide] {
        let g = tiled_gpu(GpuWeights::F16, tiles);
        // k % 8 == 0 takes the vec4 path, the others the scalar one.
        for (m, n, k) in [(1, 1, 1), (5, 9, 7), (33, 130, 65), (40, 384, 384), (3, 70, 9), (65, 9, 24), (140, 70, 24)] {
            let x = rng.vec(m * k, 1.0);
            // Weights already representable in f16, so both sides compute the same product.
            let w: Vec<f32> = rng.vec(n * k, 0.3).into_iter().map(|v| half::f16::from_f32(v).to_f32()).collect();
            let b = rng.vec(n, 1.0);
            let cpu = Cpu::new();
            let wc = cpu.matrix(HostTensor::new(vec![n, k], w.clone())).unwrap();
            let want = cpu.linear(&CpuTensor::new(m, k, x.clone()), &wc, &b, Some(Activation::GeluErf)).unwrap();
            let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
            let wg = g.matrix(HostTensor::new(vec![n, k], w)).unwrap();
            assert_eq!(wg.format, GpuFormat::F16);
            let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
            let got = tiled_linear(&g, tiles, "linear_f16", &xg, &wg, &bg, Some(Activation::GeluErf));
            check(&format!("linear_f16 {tiles:?} {m}x{n}x{k}"), &got, &want.data, n, TOL_LINEAR);
        }
    }
}

/// The tiled matmuls on reduced weights in f16 arithmetic (linear.wgsl with T = f16: a GPU's
/// default where the device has shader-f16, as lavapipe does) in both shapes and every reduced
/// format, against the CPU's f32 matmul on the weights as stored (f16-rounded, or the blocks
/// dequantized). x and the weights are rounded to f16 (relative error 2^-11 each) and the
/// products summed in f16 over one step of 16 (each addition rounds, 2^-11 of the partial
/// sum), then in f32: each output is within (2 + 16) 2^-11 of the sum of |x w| of its row
/// (GELU's slope is at most 1.13), and over all outputs of a format and shape the RMS error
/// stays within 2^-10 of the RMS output (the f16 rounding of the result alone is 2^-11).
#[test]
fn half_arithmetic_matmuls_stay_within_f16_rounding() {
    let mut rng = Rng(6);
    // k % 8 == 0 takes the vec4 staging (f16), the others the scalar one; k past one step of
    // 16 and not a multiple of it, and not of the blocks' 32; rows and outputs past one tile.
    let shapes = [(1, 1, 1), (5, 9, 7), (33, 130, 65), (40, 384, 384), (140, 70, 24), (70, 200, 1536)];
    let formats = [
        (GpuWeights::F16, "linear_f16h", None),
        (GpuWeights::Q8_0, "linear_q8h", None),
        (GpuWeights::Q4, "linear_q4h", None),
        (GpuWeights::F32, "linear_kh", Some(QuantFormat::Q4K)),
        (GpuWeights::F32, "linear_kh", Some(QuantFormat::Q6K)),
    ];
    for tiles in [Tiles::Narrow, Tiles::Wide] {
        for (weights, kernel, k_quant) in formats {
            let mut g = tiled_gpu(weights, tiles);
            assert!(g.has_shader_f16(), "lavapipe has shader-f16");
            assert!(!g.half_math(), "a software adapter computes in f32 unless told");
            g.force_half_math(Some(true));
            assert!(g.half_math());
            let (mut err2, mut val2) = (0.0f64, 0.0f64);
            let k_shapes = [(33, 67, 256), (70, 130, 512)];
            for &(m, n, k) in if k_quant.is_some() { &k_shapes[..] } else { &shapes[..] } {
                let x = rng.vec(m * k, 1.0);
                let b = rng.vec(n, 1.0);
                let raw = rng.vec(n * k, 0.3);
                let (wg, w) = match k_quant {
                    Some(format) => {
                        let q = QuantMatrix::quantize(format, n, k, &raw);
                        let mut w = vec![0.0; n * k];
                        q.dequantize_rows(0, n, &mut w);
                        (g.quantized_matrix(q).unwrap(), w)
                    }
                    None => stored_and_exact(&g, weights, n, k, raw),
                };
                let cpu = Cpu::new();
                let wc = cpu.matrix(HostTensor::new(vec![n, k], w.clone())).unwrap();
                let want = cpu.linear(&CpuTensor::new(m, k, x.clone()), &wc, &b, Some(Activation::GeluErf)).unwrap();
                let xg = g.table(HostTensor::new(vec![m, k], x.clone())).unwrap();
                let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
                let got = tiled_linear(&g, tiles, kernel, &xg, &wg, &bg, Some(Activation::GeluErf));
                for i in 0..m {
                    for j in 0..n {
                        let abs: f32 = (0..k).map(|c| (x[i * k + c] * w[j * k + c]).abs()).sum();
                        let bound = 1.13 * 18.0 * abs / 2048.0;
                        let (g, c) = (got[i * n + j], want.data[i * n + j]);
                        assert!(
                            (g - c).abs() <= bound,
                            "{kernel} {tiles:?} {m}x{n}x{k} at ({i}, {j}): gpu {g}, cpu {c}, bound {bound:e}"
                        );
                        err2 += f64::from(g - c).powi(2);
                        val2 += f64::from(c).powi(2);
                    }
                }
            }
            let rel = (err2 / val2).sqrt();
            eprintln!("{kernel} {tiles:?} {k_quant:?}: RMS error {rel:e} of the RMS output");
            assert!(rel <= 1.0 / 1024.0, "{kernel} {tiles:?}: RMS error {rel:e} of the RMS output");
        }
    }
}

/// Random x [m, k], weights [n, k] quantized to `format` and a bias, with the oracle: the
/// CPU's f32 matmul on the blocks dequantized (what the GPU's matmuls multiply by).
fn blocks_and_oracle(
    rng: &mut Rng,
    format: QuantFormat,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f32>, QuantMatrix, Vec<f32>, Vec<f32>) {
    let x = rng.vec(m * k, 1.0);
    let q = QuantMatrix::quantize(format, n, k, &rng.vec(n * k, 0.3));
    let b = rng.vec(n, 1.0);
    let mut dequantized = vec![0.0; n * k];
    q.dequantize_rows(0, n, &mut dequantized);
    let cpu = Cpu::new();
    let wc = cpu.matrix(HostTensor::new(vec![n, k], dequantized)).unwrap();
    let want = cpu.linear(&CpuTensor::new(m, k, x.clone()), &wc, &b, None).unwrap().data;
    (x, q, b, want)
}

#[test]
fn block_weights_match_the_cpu_matmul_on_the_same_blocks() {
    // The GPU multiplies the dequantized blocks by f32 activations; the CPU's integer kernel
    // quantizes activations to i16 (src/backend/cpu/qmatmul.rs), so the oracle here is the
    // CPU's f32 matmul on the same blocks dequantized.
    let mut rng = Rng(6);
    for tiles in [Tiles::Narrow, Tiles::Wide] {
        let g = tiled_gpu(GpuWeights::F32, tiles);
        for (format, name) in [(QuantFormat::Q8_0, "linear_q8"), (QuantFormat::Q4_1, "linear_q4")] {
            // k % 32 == 0 takes the vec4 paths, the others the scalar ones.
            for (m, n, k) in
                [(1, 1, 1), (5, 9, 7), (33, 130, 65), (40, 384, 384), (3, 70, 33), (65, 9, 96), (140, 70, 64)]
            {
                let (x, q, b, want) = blocks_and_oracle(&mut rng, format, m, n, k);
                let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
                let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
                let got = tiled_linear(&g, tiles, name, &xg, &g.quantized_matrix(q).unwrap(), &bg, None);
                check(&format!("{name} {tiles:?} {m}x{n}x{k}"), &got, &want, n, TOL_LINEAR);
            }
        }
    }
}

/// `n` x `k` weights from `raw` as `weights` stores them on `g`, and the same values in f32
/// for the CPU oracle (f16-rounded, or the blocks dequantized).
fn stored_and_exact(g: &Gpu, weights: GpuWeights, n: usize, k: usize, raw: Vec<f32>) -> (GpuTensor, Vec<f32>) {
    match weights {
        GpuWeights::F16 | GpuWeights::F32 => {
            let w: Vec<f32> = match weights {
                GpuWeights::F16 => raw.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
                _ => raw,
            };
            (g.matrix(HostTensor::new(vec![n, k], w.clone())).unwrap(), w)
        }
        _ => {
            let format = if weights == GpuWeights::Q4 { QuantFormat::Q4_1 } else { QuantFormat::Q8_0 };
            let q = QuantMatrix::quantize(format, n, k, &raw);
            let mut w = vec![0.0; n * k];
            q.dequantize_rows(0, n, &mut w);
            (g.quantized_matrix(q).unwrap(), w)
        }
    }
}

/// `linear` on `g` and the names of the kernels it ran (profiling on).
fn linear_and_kernels(
    g: &Gpu,
    x: &GpuTensor,
    w: &GpuTensor,
    b: &GpuTensor,
    act: Option<Activation>,
) -> (Vec<f32>, Vec<&'static str>) {
    g.take_kernel_times();
    let got = read(g, &g.linear(x, w, b, act).unwrap());
    (got, g.take_kernel_times().into_iter().map(|(name, _, _)| name).collect())
}

/// `linear` on `g` with random x [m, k], bias and weights stored as `weights`, checked against
/// the CPU's f32 matmul on the same values; the kernels that ran, and a label for asserts.
fn random_linear_matches_cpu(
    g: &Gpu,
    rng: &mut Rng,
    weights: GpuWeights,
    (m, n, k): (usize, usize, usize),
    act: Option<Activation>,
) -> (Vec<&'static str>, String) {
    let cpu = Cpu::new();
    let x = rng.vec(m * k, 1.0);
    let b = rng.vec(n, 1.0);
    // What the GPU holds, and the same values in f32 for the CPU.
    let (wg, exact) = stored_and_exact(g, weights, n, k, rng.vec(n * k, 0.3));
    let wc = cpu.matrix(HostTensor::new(vec![n, k], exact)).unwrap();
    let want = cpu.linear(&CpuTensor::new(m, k, x.clone()), &wc, &b, act).unwrap();
    let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
    let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
    let (got, ran) = linear_and_kernels(g, &xg, &wg, &bg, act);
    let what = format!("{weights:?} {m}x{n}x{k} {act:?} on {ran:?}");
    check(&what, &got, &want.data, n, TOL_LINEAR);
    (ran, what)
}

/// The few-row matmul (linear_gemv.wgsl) in every weight format against the CPU oracle: one
/// row, five rows (a short query), blocks of 8 rows full (8, 32) and part-filled (9, 31), up
/// to its 32-row limit, odd output counts, k a multiple of 8 but not of 32 (blocks padded
/// within the row); 33 rows go to the tiled kernel, and the profile shows which kernel each
/// shape ran. A GPU's kernels: lavapipe, a software adapter, takes the direct one by default,
/// so a tile shape is forced.
#[test]
fn few_row_matmuls_match_cpu_in_every_format() {
    let mut rng = Rng(10);
    let shapes = [
        (1, 384, 384),
        (5, 1536, 384),
        (5, 384, 1536),
        (1, 1, 8),
        (7, 3, 24),
        (8, 17, 16),
        (9, 40, 64),
        (32, 67, 40),
        (31, 129, 200),
    ];
    for weights in [GpuWeights::F32, GpuWeights::F16, GpuWeights::Q8_0, GpuWeights::Q4] {
        let g = tiled_gpu(weights, Tiles::Narrow);
        for (i, &(m, n, k)) in shapes.iter().chain(&[(33, 67, 40)]).enumerate() {
            let act = if i % 2 == 0 { None } else { Some(Activation::GeluErf) };
            let (ran, what) = random_linear_matches_cpu(&g, &mut rng, weights, (m, n, k), act);
            let few = m <= 32;
            assert_eq!(ran.len(), 1, "{what}");
            assert_eq!(ran[0].starts_with("gemv"), few, "{what}: the kernel chosen for {m} rows");
        }
    }
}

/// The software adapters' matmul (linear_direct.wgsl) in every weight format against the CPU
/// oracle, as lavapipe (a software adapter) picks it by default: 1 row, a query's 5 and 13,
/// one block of 6 rows and 7 (a second block nearly empty), 33 and 131 rows, outputs not a
/// multiple of its 4 a thread or 64 a workgroup, k a multiple of 8 but not of 32; k % 8 != 0
/// goes to the tiled kernel, and the profile shows which kernel each shape ran.
#[test]
fn direct_matmuls_match_cpu_in_every_format() {
    let mut rng = Rng(15);
    let shapes =
        [(1, 1, 8), (1, 384, 384), (5, 1536, 384), (6, 4, 16), (7, 5, 24), (13, 67, 40), (33, 130, 64), (131, 67, 200)];
    for weights in [GpuWeights::F32, GpuWeights::F16, GpuWeights::Q8_0, GpuWeights::Q4] {
        let mut g = gpu_with(weights);
        assert!(g.enable_profiling(), "lavapipe has timestamp queries");
        let direct = match weights {
            GpuWeights::F16 => "direct_f16",
            GpuWeights::Q8_0 => "direct_q8",
            GpuWeights::Q4 => "direct_q4",
            _ => "direct",
        };
        for (i, &(m, n, k)) in shapes.iter().chain(&[(9, 70, 36)]).enumerate() {
            let act = if i % 2 == 0 { None } else { Some(Activation::GeluTanh) };
            let (ran, what) = random_linear_matches_cpu(&g, &mut rng, weights, (m, n, k), act);
            assert_eq!(ran.len(), 1, "{what}");
            assert_eq!(ran[0] == direct, k % 8 == 0, "{what}: the kernel chosen for k = {k}");
        }
    }
    // K-quants: rows of 256 and 512 weights.
    let mut g = gpu_with(GpuWeights::F32);
    assert!(g.enable_profiling());
    for format in [QuantFormat::Q4K, QuantFormat::Q5K, QuantFormat::Q6K] {
        for (m, n, k) in [(1, 67, 256), (13, 70, 512), (33, 5, 256)] {
            let (x, q, b, want) = blocks_and_oracle(&mut rng, format, m, n, k);
            let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
            let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
            let (got, ran) = linear_and_kernels(&g, &xg, &g.quantized_matrix(q).unwrap(), &bg, None);
            let what = format!("{format:?} {m}x{n}x{k} on {ran:?}");
            assert_eq!(ran, ["direct_k"], "{what}");
            check(&what, &got, &want, n, TOL_LINEAR);
        }
    }
}

#[test]
fn quantized_word_tables_gather_the_cpu_values() {
    // embed.wgsl reads the word table in every stored format; the CPU dequantizes the same
    // blocks row by row.
    let mut rng = Rng(7);
    let meta = SeqMeta::new(vec![4, 1, 9], vec![2, 0, 3]);
    let ids: Vec<u32> = (0..meta.tokens as u32).map(|i| (i * 7) % 50).collect();
    let types: Vec<u32> = (0..meta.tokens as u32).map(|i| i % 3).collect();
    for dim in [37, 64] {
        let word = rng.vec(50 * dim, 1.0);
        let (pos, types_table) = (rng.vec(16 * dim, 1.0), rng.vec(3 * dim, 1.0));
        let pc = Cpu::new().table(HostTensor::new(vec![16, dim], pos.clone())).unwrap();
        let tc = Cpu::new().table(HostTensor::new(vec![3, dim], types_table.clone())).unwrap();
        for (weights, cpu_weights) in [
            (GpuWeights::F16, None),
            (GpuWeights::Q8_0, Some(CpuWeights::Q8_0)),
            (GpuWeights::Q4, Some(CpuWeights::Q4)),
        ] {
            // Tensors belong to one device: the tables are uploaded to this one.
            let g = gpu_with(weights);
            let pg = g.table(HostTensor::new(vec![16, dim], pos.clone())).unwrap();
            let tg = g.table(HostTensor::new(vec![3, dim], types_table.clone())).unwrap();
            let host = HostTensor::new(vec![50, dim], word.clone());
            let wg = g.word_table(host.clone()).unwrap();
            let want = match cpu_weights {
                Some(w) => {
                    let cpu = Cpu::with_weights(w);
                    cpu.embed(&ids, &types, &meta, &cpu.word_table(host).unwrap(), Some(&pc), Some(&tc)).unwrap().data
                }
                None => {
                    // f16: the values rounded to half precision, gathered in f32.
                    let halves = word.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect();
                    let wc = Cpu::new().table(HostTensor::new(vec![50, dim], halves)).unwrap();
                    Cpu::new().embed(&ids, &types, &meta, &wc, Some(&pc), Some(&tc)).unwrap().data
                }
            };
            let got = g.embed(&ids, &types, &meta, &wg, Some(&pg), Some(&tg)).unwrap();
            check(&format!("embed {weights:?} dim {dim}"), &read(&g, &got), &want, dim, 1e-6);
        }
    }
}

#[test]
fn layer_norm_matches_cpu() {
    // Both kernels: lavapipe's default (a software adapter's, layer_norm_direct.wgsl) and a
    // GPU's (forced). Rows within one and past one workgroup of the direct one (16 rows).
    for (mut g, kernel) in [(gpu(), "layer_norm_direct"), (tiled_gpu(GpuWeights::F32, Tiles::Narrow), "layer_norm")] {
        assert!(g.enable_profiling(), "lavapipe has timestamp queries");
        let mut rng = Rng(2);
        for (rows, cols, residual) in [(1, 1, false), (3, 37, true), (33, 384, true), (5, 1000, false), (17, 64, true)]
        {
            let (x, r) = (rng.vec(rows * cols, 3.0), rng.vec(rows * cols, 1.0));
            let (gamma, beta) = (rng.vec(cols, 1.0), rng.vec(cols, 1.0));
            let (xc, rc) = (CpuTensor::new(rows, cols, x.clone()), CpuTensor::new(rows, cols, r.clone()));
            let want = Cpu::new().layer_norm(xc, residual.then_some(&rc), &gamma, &beta, 1e-12).unwrap();
            let xg = g.table(HostTensor::new(vec![rows, cols], x)).unwrap();
            let rg = g.table(HostTensor::new(vec![rows, cols], r)).unwrap();
            let gg = g.vector(HostTensor::new(vec![cols], gamma)).unwrap();
            let bg = g.vector(HostTensor::new(vec![cols], beta)).unwrap();
            g.take_kernel_times();
            let got = read(&g, &g.layer_norm(xg, residual.then_some(&rg), &gg, &bg, 1e-12).unwrap());
            let ran: Vec<_> = g.take_kernel_times().into_iter().map(|(name, _, _)| name).collect();
            let what = format!("layer_norm {rows}x{cols} residual={residual} on {ran:?}");
            assert_eq!(ran, [kernel], "{what}");
            check(&what, &got, &want.data, cols, TOL_ROWWISE * 10.0);
        }
    }
}

#[test]
fn attention_matches_cpu_with_uneven_texts() {
    // Both kernels: lavapipe's default (a software adapter's: attention_direct.wgsl where the
    // head dim is a multiple of 32, else the tiled one) and a GPU's (the tiled one, forced).
    let mut direct = gpu_with(GpuWeights::F32);
    let mut tiled = gpu_with(GpuWeights::F32);
    tiled.force_tiles(Some(Tiles::Narrow));
    for g in [&mut direct, &mut tiled] {
        assert!(g.enable_profiling(), "lavapipe has timestamp queries");
    }
    attention_cases(&direct, true);
    attention_cases(&tiled, false);
}

/// The attention cases of `attention_matches_cpu_with_uneven_texts` on `g`, which takes the
/// direct kernel (where it can) or not.
fn attention_cases(g: &Gpu, direct: bool) {
    let mut rng = Rng(3);
    let cpu = Cpu::new();
    // span: a relative-position bias table [heads, 2 * span - 1] (0: none); spans shorter
    // than the texts take the clamped ends. window: keys within that distance only. Texts
    // longer than one key tile (64 keys; 3 for 256-dim heads) and than the 512-token cap the
    // kernel once had; head dims not a multiple of the shader's 8 lanes. kv: key/value heads
    // (fewer than heads: grouped-query attention); causal: keys up to the query only.
    for (lens, heads, kv, hd, span, window, causal) in [
        (vec![1u32], 1, 1, 1, 0, None, false),
        (vec![5, 1, 13], 3, 3, 7, 0, None, false),
        (vec![2, 40, 17, 3], 12, 12, 32, 0, None, false),
        (vec![300], 2, 2, 16, 0, None, false),
        (vec![1u32], 1, 1, 1, 1, None, false),
        (vec![5, 1, 13], 3, 3, 7, 4, None, false),
        (vec![2, 40, 17, 3], 12, 12, 32, 64, None, false),
        (vec![300], 2, 2, 16, 512, None, false),
        (vec![1300, 9], 2, 2, 32, 0, None, false),
        (vec![70, 3], 1, 1, 64, 0, None, false),
        (vec![70, 3], 1, 1, 128, 0, None, false),
        (vec![70, 3], 2, 2, 256, 8, None, false),
        (vec![70, 1, 9], 1, 1, 250, 0, None, false),
        (vec![9, 1, 40, 200], 2, 2, 16, 0, Some(3), false),
        (vec![9, 1, 40, 200], 2, 2, 16, 0, Some(0), false),
        (vec![200, 5], 3, 3, 12, 6, Some(40), false),
        (vec![700], 2, 2, 32, 0, Some(64), false),
        (vec![20, 3], 2, 2, 16, 0, Some(25), false),
        (vec![9, 1, 150, 33], 2, 2, 16, 0, None, true),
        (vec![9, 1, 150, 33], 8, 2, 16, 0, None, true),
        (vec![80, 5], 6, 1, 20, 0, None, false),
        (vec![100, 7], 4, 2, 128, 0, Some(10), true),
    ] {
        let meta = SeqMeta::new(lens.clone(), vec![0; lens.len()]);
        let cols = (heads + 2 * kv) * hd;
        let q = rng.vec(meta.tokens * cols, 2.0);
        let (qc, qg) = (
            CpuTensor::new(meta.tokens, cols, q.clone()),
            g.table(HostTensor::new(vec![meta.tokens, cols], q)).unwrap(),
        );
        let bias = (span > 0).then(|| {
            let table = HostTensor::new(vec![heads, 2 * span - 1], rng.vec(heads * (2 * span - 1), 3.0));
            (cpu.table(table.clone()).unwrap(), g.table(table).unwrap())
        });
        let on_cpu = Attention { heads, kv_heads: kv, head_dim: hd, bias: bias.as_ref().map(|b| &b.0), window, causal };
        let on_gpu = Attention { heads, kv_heads: kv, head_dim: hd, bias: bias.as_ref().map(|b| &b.1), window, causal };
        let want = cpu.attention(&qc, &meta, &on_cpu).unwrap();
        g.take_kernel_times();
        let got = read(g, &g.attention(&qg, &meta, &on_gpu).unwrap());
        let ran: Vec<_> = g.take_kernel_times().into_iter().map(|(name, _, _)| name).collect();
        let what = format!(
            "attention lens={lens:?} heads={heads}/{kv} hd={hd} bias span={span} window={window:?} causal={causal} on {ran:?}"
        );
        let kernel = if direct && hd % 32 == 0 { "attention_direct" } else { "attention" };
        assert_eq!(ran, [kernel], "{what}");
        check(&what, &got, &want.data, heads * hd, TOL_ROWWISE * 10.0);
    }
    // Heads wider than the shader's registers hold are refused by name, not computed wrong.
    let meta = SeqMeta::new(vec![4], vec![0]);
    let qg = g.table(HostTensor::new(vec![4, 3 * 264], rng.vec(4 * 3 * 264, 1.0))).unwrap();
    let err = g.attention(&qg, &meta, &Attention::multi_head(264, 1)).err().expect("264-dim heads ran");
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    assert!(err.to_string().contains("264 dims"), "{err}");
}

#[test]
fn rotary_matches_cpu_with_uneven_texts() {
    // Positions count within each text: a batch of texts of several lengths, two bases (the
    // large one is ModernBERT's global 160k), head widths from 2 up, grouped-query layouts
    // (EmbeddingGemma's 3 query heads on 1 key head), a table longer than the texts.
    let g = shared();
    let mut rng = Rng(11);
    for (lens, heads, kv_heads, hd, base) in [
        (vec![1u32], 1, 1, 2, 10_000.0),
        (vec![5, 1, 13], 3, 3, 12, 1000.0),
        (vec![2, 40, 17, 3], 12, 12, 64, 160_000.0),
        (vec![300], 2, 2, 6, 10_000.0),
        (vec![7, 30], 3, 1, 256, 1_000_000.0),
        (vec![9, 2, 33], 8, 2, 16, 10_000.0),
    ] {
        let meta = SeqMeta::new(lens.clone(), vec![0; lens.len()]);
        let cpu_shape: Attention<'_, CpuMatrix> =
            Attention { heads, kv_heads, head_dim: hd, bias: None, window: None, causal: false };
        let gpu_shape: Attention<'_, GpuTensor> =
            Attention { heads, kv_heads, head_dim: hd, bias: None, window: None, causal: false };
        let cols = (heads + 2 * kv_heads) * hd;
        let x = rng.vec(meta.tokens * cols, 2.0);
        let table = wembed::backend::rotary_table(base, hd, 512);
        let (tc, tg) = both_table(512, hd, table.data);
        let x_cpu = CpuTensor::new(meta.tokens, cols, x.clone());
        let want = Cpu::new().rotary(x_cpu, &meta, &cpu_shape, &tc).unwrap();
        let xg = shared().table(HostTensor::new(vec![meta.tokens, cols], x.clone())).unwrap();
        let got = g.rotary(xg, &meta, &gpu_shape, &tg).unwrap();
        let what = format!("rotary lens={lens:?} heads={heads}/{kv_heads} hd={hd} base={base}");
        check(&what, &read(g, &got), &want.data, cols, TOL_ROWWISE);
        // The value heads (after q and k) are left as they were; the last k head turns (past
        // position 0, where every angle is 0).
        let v = (heads + kv_heads) * hd;
        let mut turned = false;
        for (row, orig) in want.data.chunks_exact(cols).zip(x.chunks_exact(cols)) {
            assert_eq!(row[v..], orig[v..], "{what}: values changed");
            turned |= row[v - hd..v] != orig[v - hd..v];
        }
        assert!(turned || meta.max_len == 1, "{what}: the last key head never turned");
    }
}

#[test]
fn glu_and_add_match_cpu() {
    let g = shared();
    let mut rng = Rng(12);
    for (rows, n) in [(1, 1), (3, 37), (33, 1152), (70, 65)] {
        let (xc, xg) = both(rows, 2 * n, rng.vec(rows * 2 * n, 4.0));
        for act in [Activation::Silu, Activation::GeluErf, Activation::GeluTanh, Activation::Relu] {
            let want = Cpu::new().glu(&xc, act).unwrap();
            let got = g.glu(&xg, act).unwrap();
            check(&format!("glu {rows}x{n} {act:?}"), &read(g, &got), &want.data, n, TOL_ROWWISE * 4.0);
        }
        let (yc, yg) = both(rows, 2 * n, rng.vec(rows * 2 * n, 4.0));
        let want = Cpu::new().add(&xc, &yc).unwrap();
        check(&format!("add {rows}x{}", 2 * n), &read(g, &g.add(&xg, &yg).unwrap()), &want.data, 2 * n, 0.0);
    }
}

#[test]
fn rms_norm_matches_cpu_on_rows_and_head_pieces() {
    // Whole rows (a hidden state), and head-wide pieces of a packed qkv with only q and k
    // normed (Gemma's q_norm/k_norm), widths below, at and above the 64 threads.
    let g = shared();
    let mut rng = Rng(14);
    for (rows, cols, width, normed) in
        [(1, 1, 1, 1), (3, 37, 37, 1), (33, 768, 768, 1), (5, 3 * 4 * 12, 12, 8), (9, 3 * 3 * 256, 256, 6)]
    {
        let (xc, xg) = both(rows, cols, rng.vec(rows * cols, 3.0));
        let (gc, gg) = both_vec(rng.vec(normed * width, 1.5));
        let want = Cpu::new().rms_norm(&xc, &gc, 1e-6, width).unwrap();
        let got = g.rms_norm(&xg, &gg, 1e-6, width).unwrap();
        check(
            &format!("rms_norm {rows}x{cols} in pieces of {width}, {normed} normed"),
            &read(g, &got),
            &want.data,
            cols,
            TOL_ROWWISE * 4.0,
        );
        // Pieces past the gain are copied.
        for (o, x) in want.data.chunks_exact(cols).zip(xc.data.chunks_exact(cols)) {
            assert_eq!(o[normed * width..], x[normed * width..]);
        }
    }
}

#[test]
fn embed_without_position_or_type_tables_matches_cpu() {
    // Rotary models: no position table (NomicBERT), neither table (ModernBERT).
    let g = shared();
    let mut rng = Rng(13);
    let dim = 37;
    let meta = SeqMeta::new(vec![4, 1, 9], vec![0, 0, 0]);
    let (wc, wg) = both_table(50, dim, rng.vec(50 * dim, 1.0));
    let (tc, tg) = both_table(2, dim, rng.vec(2 * dim, 1.0));
    let ids: Vec<u32> = (0..meta.tokens as u32).map(|i| (i * 7) % 50).collect();
    let types: Vec<u32> = (0..meta.tokens as u32).map(|i| i % 2).collect();
    let want = Cpu::new().embed(&ids, &types, &meta, &wc, None, Some(&tc)).unwrap();
    check(
        "embed, no positions",
        &read(g, &g.embed(&ids, &types, &meta, &wg, None, Some(&tg)).unwrap()),
        &want.data,
        dim,
        0.0,
    );
    let want = Cpu::new().embed(&ids, &[], &meta, &wc, None, None).unwrap();
    check(
        "embed, word table only",
        &read(g, &g.embed(&ids, &[], &meta, &wg, None, None).unwrap()),
        &want.data,
        dim,
        0.0,
    );
    // The word rows themselves.
    for (t, &id) in ids.iter().enumerate() {
        let CpuMatrix::F32(w) = &wc else { unreachable!() };
        assert_eq!(want.data[t * dim..(t + 1) * dim], w.data[id as usize * dim..(id as usize + 1) * dim]);
    }
}

/// Several batches in one wave (one submit), as the embedder records them: each keeps its own
/// batch layout though the layouts are queued writes into pooled buffers, and a second wave,
/// which finds its bind groups cached and its buffers handed back by the pool, gives the same
/// bits.
#[test]
fn batches_of_one_wave_keep_their_layouts_across_waves() {
    let g = shared();
    let mut rng = Rng(9);
    let (heads, hd) = (2, 8);
    let cols = 3 * heads * hd;
    let metas = [vec![3u32, 9], vec![7], vec![1, 1, 30], vec![3, 9]];
    let inputs: Vec<_> = metas
        .iter()
        .map(|lens| {
            let meta = SeqMeta::new(lens.clone(), vec![0; lens.len()]);
            let (qc, qg) = both(meta.tokens, cols, rng.vec(meta.tokens * cols, 2.0));
            (meta, qc, qg)
        })
        .collect();
    let wave = || {
        let outs: Vec<GpuTensor> = inputs
            .iter()
            .map(|(meta, _, qg)| g.attention(qg, meta, &Attention::multi_head(heads * hd, heads)).unwrap())
            .collect();
        pollster::block_on(g.read_many(&outs.iter().collect::<Vec<_>>())).unwrap()
    };
    let first = wave();
    for ((meta, qc, _), got) in inputs.iter().zip(&first) {
        let want = Cpu::new().attention(qc, meta, &Attention::multi_head(heads * hd, heads)).unwrap();
        check(&format!("attention lens={:?} in a wave", meta.lens), got, &want.data, heads * hd, TOL_ROWWISE * 10.0);
    }
    assert_eq!(wave(), first, "the second wave (cached bind groups, reused buffers) differs from the first");
}

#[test]
fn normalize_matches_cpu() {
    let g = shared();
    let mut rng = Rng(8);
    for (rows, cols) in [(1, 1), (3, 20), (33, 768), (2, 1000)] {
        let (xc, xg) = both(rows, cols, rng.vec(rows * cols, 3.0));
        let want = Cpu::new().normalize(xc).unwrap();
        let got = g.normalize(xg).unwrap();
        check(&format!("normalize {rows}x{cols}"), &read(g, &got), &want.data, cols, TOL_ROWWISE);
    }
}

#[test]
fn embed_and_pool_match_cpu() {
    let g = shared();
    let mut rng = Rng(4);
    let dim = 37;
    let meta = SeqMeta::new(vec![4, 1, 9], vec![2, 0, 3]);
    let (wc, wg) = both_table(50, dim, rng.vec(50 * dim, 1.0));
    let (pc, pg) = both_table(16, dim, rng.vec(16 * dim, 1.0));
    let (tc, tg) = both_table(3, dim, rng.vec(3 * dim, 1.0));
    let ids: Vec<u32> = (0..meta.tokens as u32).map(|i| (i * 7) % 50).collect();
    let types: Vec<u32> = (0..meta.tokens as u32).map(|i| i % 3).collect();
    let want = Cpu::new().embed(&ids, &types, &meta, &wc, Some(&pc), Some(&tc)).unwrap();
    let got = g.embed(&ids, &types, &meta, &wg, Some(&pg), Some(&tg)).unwrap();
    check("embed", &read(g, &got), &want.data, dim, 0.0);
    let hidden_gpu = g.embed(&ids, &types, &meta, &wg, Some(&pg), Some(&tg)).unwrap();
    let modes = [PoolMode::Cls, PoolMode::Max, PoolMode::Mean, PoolMode::MeanSqrtLen, PoolMode::LastToken];
    for normalize in [false, true] {
        for k in 1..=modes.len() {
            let modes = &modes[..k];
            let want = Cpu::new().pool(&want, &meta, modes, normalize).unwrap();
            let got = g.pool(&hidden_gpu, &meta, modes, normalize).unwrap();
            check(&format!("pool {modes:?} normalize={normalize}"), &read(g, &got), &want.data, dim * k, TOL_ROWWISE);
        }
    }
}

#[test]
fn tiny_models_match_their_references_on_the_gpu() {
    for dir in tiny_dirs() {
        let reference = tiny_ref(&dir);
        // f16 arithmetic asked for (it changes nothing here: the weights are f32) and kept
        // only where the model's activations fit f16: not Gemma 3's nor the decoders'.
        let mut g = gpu();
        g.force_half_math(Some(true));
        let embedder = Embedder::load(g, &ModelFiles::from_dir(&dir).unwrap()).unwrap();
        let kind = model_type(&dir);
        let wide_range = ["gemma3_text", "qwen3", "qwen2", "mistral"].contains(&kind.as_str());
        assert_eq!(embedder.backend().half_math(), !wide_range, "{kind}: f16 arithmetic");
        let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
        let name = &reference.variant;
        let mut worst_hidden = 0.0f32;
        for (s, st) in reference.sentences.iter().zip(embedder.token_states(&texts).unwrap()) {
            let (diff, at) = max_abs_diff(&st.hidden, &s.hidden);
            assert!(diff <= 1e-4, "{name}: hidden state of {:?} off by {diff:e} at {at}", s.text);
            worst_hidden = worst_hidden.max(diff);
        }
        let mut worst_cos = 1.0f64;
        // Each text alone, then all in batches of mixed lengths.
        for batch_size in [1, 3] {
            let opts = EmbedOptions {
                prompt_name: reference.prompt_name.clone(),
                batch_size: Some(batch_size),
                ..Default::default()
            };
            let pooled = embedder.embed(&texts, &opts).unwrap_or_else(|e| panic!("{name}, batch {batch_size}: {e}"));
            for (s, v) in reference.sentences.iter().zip(pooled) {
                let cos = cosine(&v, &s.pooled);
                assert!(cos >= 1.0 - 1e-5, "{name}, batch {batch_size}: pooled {:?} cosine {cos}", s.text);
                worst_cos = worst_cos.min(cos);
            }
        }
        eprintln!(
            "{name} on the GPU: hidden states within {worst_hidden:.1e}, worst pooled cosine 1 - {:.1e}",
            1.0 - worst_cos
        );
    }
}

#[test]
fn tiny_decoders_match_their_references_on_the_gpu_with_and_without_the_prompt() {
    // Qwen3, Qwen2, Mistral: the vectors with the query prompt and without, each text alone and
    // all in mixed batches, and one text's vector the same alone and anywhere in a batch.
    for (dir, _) in tiny_decoders() {
        let reference = tiny_ref(&dir);
        let name = &reference.variant;
        let embedder = Embedder::load(gpu(), &ModelFiles::from_dir(&dir).unwrap()).unwrap();
        let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
        let mut worst = [1.0f64; 2];
        for batch_size in [1, 4] {
            for (k, prompt_name) in [None, Some("query".to_string())].into_iter().enumerate() {
                let opts = EmbedOptions {
                    prompt_name: prompt_name.clone(),
                    batch_size: Some(batch_size),
                    ..Default::default()
                };
                for (s, v) in reference.sentences.iter().zip(embedder.embed(&texts, &opts).unwrap()) {
                    let want = if k == 0 { s.pooled_no_prompt.as_ref().unwrap() } else { &s.pooled };
                    let cos = cosine(&v, want);
                    assert!(
                        cos >= 1.0 - 1e-5,
                        "{name}, batch {batch_size}, prompt {prompt_name:?}: {:?} cosine {cos}",
                        s.text
                    );
                    worst[k] = worst[k].min(cos);
                }
            }
        }
        let target = "  the dog runs  ";
        let opts = EmbedOptions { prompt_name: Some("query".into()), ..Default::default() };
        let alone = embedder.embed(&[target], &opts).unwrap().remove(0);
        let mut in_batch = texts.clone();
        in_batch.insert(3, target);
        let all = embedder.embed(&in_batch, &EmbedOptions { batch_size: Some(5), ..opts }).unwrap();
        let (diff, _) = max_abs_diff(&all[3], &alone);
        assert!(diff <= 1e-5, "{name}: in a batch {diff:e} from alone");
        eprintln!(
            "{name} on the GPU: worst pooled cosine 1 - {:.1e} without the prompt, 1 - {:.1e} with it; in a batch within {diff:.1e} of alone",
            1.0 - worst[0],
            1.0 - worst[1]
        );
    }
}

#[test]
fn rotary_models_with_f16_and_q8_weights_stay_close_on_the_gpu() {
    // What a browser gets by default (f16 matrices and word table) and q8, for the families
    // whose matrices are stacked (fused Wqkv, GLU halves, Gemma's grouped-query q/k/v).
    for name in ["nomic-swiglu", "modernbert-local", "gemma3-bidirectional", "qwen3-lasttoken"] {
        let dir = root().join("tests/fixtures/tiny").join(name);
        let reference = tiny_ref(&dir);
        let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
        for (weights, bar) in [(GpuWeights::F16, 0.9999), (GpuWeights::Q8_0, 0.998)] {
            let embedder = Embedder::load(gpu_with(weights), &ModelFiles::from_dir(&dir).unwrap()).unwrap();
            let opts = EmbedOptions { prompt_name: reference.prompt_name.clone(), ..Default::default() };
            let mut worst = 1.0f64;
            for (s, v) in reference.sentences.iter().zip(embedder.embed(&texts, &opts).unwrap()) {
                let cos = cosine(&v, &s.pooled);
                assert!(cos >= bar, "{name} {weights:?}: {:?} cosine {cos}", s.text);
                worst = worst.min(cos);
            }
            eprintln!("{name}, {weights:?} weights on the GPU: worst cosine {worst:.6}");
        }
    }
}

#[test]
fn the_gpu_fills_batches_by_tokens() {
    // As many short texts as fit in 500 tokens: by default one forward pass, under the GPU's
    // token budget (512 on a software adapter), where half as many texts per batch take two
    // and a 40-token budget many more. Every forward records the same dispatches, so their
    // count counts forwards. The vectors do not depend on how the texts were cut.
    let dir = root().join("tests/fixtures/tiny/mean-erf-norm");
    let e = Embedder::load(gpu(), &ModelFiles::from_dir(&dir).unwrap()).unwrap();
    let owned: Vec<String> = (0..200).map(|i| format!("text number {i} of a batch")).collect();
    let lens: Vec<usize> = e
        .tokenize(&owned.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap()
        .iter()
        .map(|t| t.ids.len())
        .collect();
    let n = lens
        .iter()
        .scan(0, |total, l| {
            *total += l;
            Some(*total)
        })
        .take_while(|&t| t <= 500)
        .count()
        & !1;
    assert!(n >= 8, "{n} texts in 500 tokens");
    let texts: Vec<&str> = owned[..n].iter().map(String::as_str).collect();
    let run = |opts: EmbedOptions| {
        e.backend().take_host_times();
        let v = e.embed(&texts, &opts).unwrap();
        (e.backend().take_host_times().dispatches, v)
    };
    let (by_tokens, want) = run(EmbedOptions::default());
    let (by_half, v_half) = run(EmbedOptions { batch_size: Some(n / 2), ..Default::default() });
    let (by_40_tokens, v40) = run(EmbedOptions { batch_tokens: Some(40), ..Default::default() });
    assert_eq!(by_half, 2 * by_tokens, "default {by_tokens} dispatches, {} texts per batch {by_half}", n / 2);
    assert!(by_40_tokens >= 8 * by_tokens, "a 40-token budget: {by_40_tokens} dispatches");
    for got in [v_half, v40] {
        for (w, g) in want.iter().zip(&got) {
            assert!(max_abs_diff(w, g).0 <= 1e-5, "{:?}", max_abs_diff(w, g));
        }
    }
}

#[test]
fn minilm_matches_pytorch_on_the_gpu() {
    let reference = minilm_ref();
    let embedder = Embedder::load(gpu(), &ModelFiles::from_dir(minilm_dir()).unwrap()).unwrap();
    let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
    let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
    let mut worst = 1.0f64;
    for (s, v) in reference.sentences.iter().zip(&vectors) {
        let cos = cosine(v, &s.embedding);
        let (diff, at) = max_abs_diff(v, &s.embedding);
        assert!(cos >= 0.99999 && diff <= 1e-4, "{:?}: cosine {cos:.7}, max abs diff {diff:e} at {at}", s.text);
        worst = worst.min(cos);
    }
    eprintln!("all-MiniLM-L6-v2 on {}: worst cosine {worst:.8}", embedder.backend().name());
}

#[test]
fn mpnet_matches_pytorch_on_the_gpu() {
    // A few short texts: all-mpnet-base-v2 (12 layers, 768 wide) is slow on lavapipe.
    let reference = mpnet_ref();
    let embedder = Embedder::load(gpu(), &ModelFiles::from_dir(mpnet_dir()).unwrap()).unwrap();
    let picked: Vec<_> = reference.sentences.iter().filter(|s| s.ids.len() <= 16).take(6).collect();
    assert!(picked.len() >= 5);
    let texts: Vec<&str> = picked.iter().map(|s| s.text.as_str()).collect();
    let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
    let mut worst = 1.0f64;
    for (s, v) in picked.iter().zip(&vectors) {
        let cos = cosine(v, &s.embedding);
        let (diff, at) = max_abs_diff(v, &s.embedding);
        assert!(cos >= 0.99999 && diff <= 1e-4, "{:?}: cosine {cos:.7}, max abs diff {diff:e} at {at}", s.text);
        worst = worst.min(cos);
    }
    eprintln!("all-mpnet-base-v2 on {}: worst cosine {worst:.8} over {} texts", embedder.backend().name(), texts.len());
}

/// all-MiniLM-L6-v2 on the GPU with reduced weights: every fixture text within `bar` cosine.
fn minilm_stays_close_to_pytorch(weights: GpuWeights, bar: f64) {
    minilm_stays_close_on(gpu_with(weights), weights, bar);
}

fn minilm_stays_close_on(gpu: Gpu, weights: GpuWeights, bar: f64) -> Embedder<Gpu> {
    let reference = minilm_ref();
    let embedder = Embedder::load(gpu, &ModelFiles::from_dir(minilm_dir()).unwrap()).unwrap();
    let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
    let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
    let mut worst = (1.0f64, "");
    for (s, v) in reference.sentences.iter().zip(&vectors) {
        let cos = cosine(v, &s.embedding);
        assert!(cos >= bar, "{:?}: cosine {cos:.7} with {weights:?} weights", s.text);
        if cos < worst.0 {
            worst = (cos, &s.text);
        }
    }
    eprintln!("all-MiniLM-L6-v2, {weights:?} weights: worst cosine {:.7} for {:?}", worst.0, worst.1);
    embedder
}

#[test]
fn minilm_with_f16_weights_stays_close_to_pytorch() {
    minilm_stays_close_to_pytorch(GpuWeights::F16, 0.9999);
    // The same on a GPU's kernels (the few-row and tiled matmuls), which lavapipe, a software
    // adapter, does not take by default.
    let mut gpu = gpu_with(GpuWeights::F16);
    gpu.force_tiles(Some(Tiles::Wide));
    minilm_stays_close_on(gpu, GpuWeights::F16, 0.9999);
    // And in f16 arithmetic (a GPU's default where it has shader-f16), narrow tiles past the
    // few-row matmul's 32 rows: the fixtures' batches are longer than that.
    let mut gpu = tiled_gpu(GpuWeights::F16, Tiles::Narrow);
    gpu.force_half_math(Some(true));
    let embedder = minilm_stays_close_on(gpu, GpuWeights::F16, 0.9999);
    let ran = embedder.backend().take_kernel_times();
    assert!(ran.iter().any(|(name, _, _)| *name == "linear_f16h"), "the f16-arithmetic matmul ran");
}

#[test]
fn minilm_with_q8_0_weights_stays_close_to_pytorch() {
    minilm_stays_close_to_pytorch(GpuWeights::Q8_0, 0.999);
    // And in f16 arithmetic, as a GPU with shader-f16 runs q8 by default.
    let mut gpu = tiled_gpu(GpuWeights::Q8_0, Tiles::Narrow);
    gpu.force_half_math(Some(true));
    let embedder = minilm_stays_close_on(gpu, GpuWeights::Q8_0, 0.999);
    let ran = embedder.backend().take_kernel_times();
    assert!(ran.iter().any(|(name, _, _)| *name == "linear_q8h"), "the f16-arithmetic matmul ran");
}

#[test]
fn minilm_with_q4_weights_stays_close_to_pytorch() {
    minilm_stays_close_to_pytorch(GpuWeights::Q4, 0.99);
}

#[test]
fn gguf_block_files_give_the_cpu_vectors_on_the_gpu() {
    // q4_0 arrives as q4_1 blocks, q8_0 as it is: linear_q4/linear_q8 and the block gather
    // in embed.wgsl, end to end against the CPU on the same blocks.
    let texts = ["hello world", "the quick brown fox", "a b c d e f g h i j k l m n o p", ""];
    for ty in ["q8_0", "q4_0", "q4_1"] {
        let files = ModelFiles::from_path(root().join(format!("tests/fixtures/gguf/tiny-bert-{ty}.gguf"))).unwrap();
        let want = Embedder::load(Cpu::new(), &files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        let got = Embedder::load(gpu(), &files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        for ((w, g), t) in want.iter().zip(&got).zip(texts) {
            let cos = cosine(w, g);
            assert!(cos >= 1.0 - 1e-5, "{ty}: {t:?} cosine {cos}");
        }
    }
}

/// K-quants (linear_kquant.wgsl + kquant.wgsl) against the CPU's f32 matmul on the same blocks
/// dequantized by crate::quant (the reference, bit-exact against gguf-py): one row and few rows
/// (the gemv kernel), 33 and 70 rows (the tiled one), odd output counts, rows of 256 and 512.
#[test]
fn k_quant_matmuls_match_cpu_in_both_kernels() {
    let cpu = Cpu::new();
    let mut rng = Rng(14);
    for tiles in [Tiles::Narrow, Tiles::Wide] {
        let g = tiled_gpu(GpuWeights::F32, tiles);
        for format in [QuantFormat::Q4K, QuantFormat::Q5K, QuantFormat::Q6K] {
            for (m, n, k) in [(1, 1, 256), (1, 67, 512), (5, 9, 256), (33, 70, 256), (70, 5, 512), (130, 131, 256)] {
                let (x, q, b, want) = blocks_and_oracle(&mut rng, format, m, n, k);
                // The CPU backend on the blocks themselves (its dequantizing tile path).
                let on_blocks =
                    cpu.linear(&CpuTensor::new(m, k, x.clone()), &cpu.quantized_matrix(q.clone()).unwrap(), &b, None);
                check(&format!("cpu {format:?} {m}x{n}x{k}"), &on_blocks.unwrap().data, &want, n, TOL_LINEAR);
                let xg = g.table(HostTensor::new(vec![m, k], x)).unwrap();
                let bg = g.vector(HostTensor::new(vec![n], b)).unwrap();
                let wg = g.quantized_matrix(q).unwrap();
                let what = format!("gpu {format:?} {tiles:?} {m}x{n}x{k}");
                let got = if m <= 32 {
                    g.take_kernel_times();
                    let got = read(&g, &g.linear(&xg, &wg, &bg, None).unwrap());
                    let ran: Vec<_> = g.take_kernel_times().into_iter().map(|(name, _, _)| name).collect();
                    assert_eq!(ran, ["gemv_k"], "{what}");
                    got
                } else {
                    tiled_linear(&g, tiles, "linear_k", &xg, &wg, &bg, None)
                };
                check(&what, &got, &want, n, TOL_LINEAR);
            }
        }
    }
}

#[test]
fn k_quant_word_tables_gather_the_cpu_values() {
    // embed.wgsl decodes K-quant rows itself (kquant.wgsl appended); the CPU dequantizes rows.
    let mut rng = Rng(15);
    let meta = SeqMeta::new(vec![4, 1, 9], vec![2, 0, 3]);
    let ids: Vec<u32> = (0..meta.tokens as u32).map(|i| (i * 7) % 50).collect();
    let types: Vec<u32> = (0..meta.tokens as u32).map(|i| i % 3).collect();
    let g = shared();
    let cpu = Cpu::new();
    for (format, dim) in [(QuantFormat::Q4K, 256), (QuantFormat::Q5K, 512), (QuantFormat::Q6K, 256)] {
        let q = QuantMatrix::quantize(format, 50, dim, &rng.vec(50 * dim, 1.0));
        let (pos, types_table) = (rng.vec(16 * dim, 1.0), rng.vec(3 * dim, 1.0));
        let (pc, pg) = both_table(16, dim, pos);
        let (tc, tg) = both_table(3, dim, types_table);
        let want = cpu.embed(&ids, &types, &meta, &cpu.quantized_matrix(q.clone()).unwrap(), Some(&pc), Some(&tc));
        let got = g.embed(&ids, &types, &meta, &g.quantized_matrix(q).unwrap(), Some(&pg), Some(&tg)).unwrap();
        check(&format!("embed {format:?} dim {dim}"), &read(g, &got), &want.unwrap().data, dim, 1e-6);
    }
}

#[test]
fn k_quant_gguf_files_give_the_cpu_vectors_on_the_gpu() {
    let texts = ["hello world", "the quick brown fox", "a b c d e f g h i j k l m n o p", ""];
    for ty in ["q4_k", "q5_k", "q6_k"] {
        let path = root().join(format!("tests/fixtures/gguf/tiny-bert-256-{ty}.gguf"));
        let files = ModelFiles::from_path(path).unwrap();
        let want = Embedder::load(Cpu::new(), &files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        let got = Embedder::load(gpu(), &files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        for ((w, g), t) in want.iter().zip(&got).zip(texts) {
            let cos = cosine(w, g);
            assert!(cos >= 1.0 - 1e-5, "{ty}: {t:?} cosine {cos}");
        }
    }
}

#[test]
fn a_lost_device_is_reported_not_panicked() {
    let dir = root().join("tests/fixtures/tiny/mean-erf-norm");
    let embedder = Embedder::load(gpu(), &ModelFiles::from_dir(&dir).unwrap()).unwrap();
    assert!(embedder.embed(&["hello world"], &EmbedOptions::default()).is_ok());
    embedder.backend().simulate_device_loss();
    let err = embedder.embed(&["hello world"], &EmbedOptions::default()).unwrap_err().to_string();
    assert!(err.contains("lost") && err.contains("load the model again"), "{err}");
}
