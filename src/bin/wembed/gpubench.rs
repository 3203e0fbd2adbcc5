//! `wembed gpu-bench`: what the GPU backend costs, on whatever adapter wgpu finds. The host
//! time per dispatch (CPU microseconds spent recording, the GPU idle), sentences/s of the model
//! in every weight format at batch 1 / 32 / 256 on the STS-B corpus, the per-kernel table
//! (timestamp queries) with GFLOP/s and GB/s, and a peak probe (an FMA loop, a large matmul).

use std::path::PathBuf;
use std::time::Instant;

use super::{DEFAULT_MODEL, bench};
use wembed::backend::gpu::{GpuWeights, HostTimes, KernelTime, Tiles};
use wembed::backend::{Attention, Backend, SeqMeta};
use wembed::config::Activation;
use wembed::eval::cosine;
use wembed::weights::HostTensor;
use wembed::{EmbedOptions, Embedder, Gpu, ModelFiles};

/// Deterministic values in [-1, 1): weights and inputs whose contents do not matter.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn err(e: wembed::Error) -> String {
    e.to_string()
}

/// Host CPU time per dispatch: `layers` encoder layers of MiniLM's shapes (384 wide, 1536
/// inner, 12 heads) on one 16-token text, seven dispatches each, recorded and then submitted
/// once; the backend's own clocks (see `HostTimes`) count only the CPU's work (recording,
/// `finish`, `submit`), never the wait for the GPU. Best of `rounds` (the first one also
/// creates the pooled buffers).
fn host_times(gpu: &Gpu, layers: usize, rounds: usize) -> Result<HostTimes, String> {
    let (dim, inner, heads, tokens) = (384, 1536, 12, 16);
    let m = |rows: usize, cols: usize, seed| gpu.matrix(HostTensor::new(vec![rows, cols], noise(rows * cols, seed)));
    let v = |n: usize, seed| gpu.vector(HostTensor::new(vec![n], noise(n, seed)));
    let (qkv_w, qkv_b) = (m(3 * dim, dim, 1).map_err(err)?, v(3 * dim, 2).map_err(err)?);
    let (out_w, out_b) = (m(dim, dim, 3).map_err(err)?, v(dim, 4).map_err(err)?);
    let (up_w, up_b) = (m(inner, dim, 5).map_err(err)?, v(inner, 6).map_err(err)?);
    let (down_w, down_b) = (m(dim, inner, 7).map_err(err)?, v(dim, 8).map_err(err)?);
    let (gamma, beta) = (v(dim, 9).map_err(err)?, v(dim, 10).map_err(err)?);
    let meta = SeqMeta::new(vec![tokens as u32], vec![0]);
    let input = gpu.table(HostTensor::new(vec![tokens, dim], noise(tokens * dim, 11))).map_err(err)?;
    let mut best: Option<HostTimes> = None;
    let total = |t: &HostTimes| t.record_s + t.finish_s + t.submit_s;
    for _ in 0..rounds {
        gpu.take_host_times();
        // The first layer reads the table-like input; each output feeds the next layer.
        let mut h = None;
        for _ in 0..layers {
            let x = h.as_ref().unwrap_or(&input);
            let qkv = gpu.linear(x, &qkv_w, &qkv_b, None).map_err(err)?;
            let ctx = gpu.attention(&qkv, &meta, &Attention::multi_head(dim, heads)).map_err(err)?;
            let att = gpu.linear(&ctx, &out_w, &out_b, None).map_err(err)?;
            let att = gpu.layer_norm(att, Some(x), &gamma, &beta, 1e-12).map_err(err)?;
            let up = gpu.linear(&att, &up_w, &up_b, Some(Activation::GeluErf)).map_err(err)?;
            let down = gpu.linear(&up, &down_w, &down_b, None).map_err(err)?;
            h = Some(gpu.layer_norm(down, Some(&att), &gamma, &beta, 1e-12).map_err(err)?);
        }
        pollster::block_on(gpu.read(h.as_ref().unwrap_or(&input))).map_err(err)?;
        let t = gpu.take_host_times();
        if best.is_none_or(|b| total(&t) < total(&b)) {
            best = Some(t);
        }
    }
    best.ok_or_else(|| "no round ran".to_string())
}

fn print_host_times(t: &HostTimes) {
    let n = t.dispatches.max(1) as f64;
    let us = |s: f64| s / n * 1e6;
    println!(
        "host CPU time per dispatch: {:.1} us = record {:.1} + finish {:.1} + submit {:.1} ({} dispatches, {} submit)",
        us(t.record_s + t.finish_s + t.submit_s),
        us(t.record_s),
        us(t.finish_s),
        us(t.submit_s),
        t.dispatches,
        t.submits
    );
}

/// The weight formats benched, with the names `--dtype` takes.
const FORMATS: [(&str, GpuWeights); 4] =
    [("f32", GpuWeights::F32), ("f16", GpuWeights::F16), ("q8", GpuWeights::Q8_0), ("q4", GpuWeights::Q4)];

/// One dtype's row of the throughput table.
struct Row {
    dtype: &'static str,
    batch1: f64,
    batch1_p50_ms: f64,
    batch32: f64,
    batch256: f64,
    host: HostTimes,
    vectors: Vec<Vec<f32>>,
    kernels: Vec<KernelTime>,
    /// The same for single texts: where a query's time goes.
    kernels1: Vec<KernelTime>,
}

fn open(
    weights: GpuWeights,
    (matmul, half): Kernels,
    profile: bool,
    files: &ModelFiles,
) -> Result<Embedder<Gpu>, String> {
    let mut gpu = pollster::block_on(Gpu::with_weights(weights)).map_err(err)?;
    gpu.force_tiles(matmul);
    gpu.force_half_math(half);
    if profile && !gpu.enable_profiling() {
        eprintln!("this adapter has no timestamp queries: no per-kernel table");
    }
    Embedder::load(gpu, files).map_err(err)
}

/// The kernels forced, if any: the tiles (`--matmul`) and f16 arithmetic on or off.
type Kernels = (Option<Tiles>, Option<bool>);

/// Sentences/s of one dtype at batch 1 (the first `n1` sentences one by one), 32 and 256 (all
/// of them, best of `rounds` after a warm-up round), then profiled passes for the kernel
/// tables: all sentences at batch 32, and the first 8 one by one.
fn bench_dtype(
    dtype: &'static str,
    weights: GpuWeights,
    matmul: Kernels,
    files: &ModelFiles,
    texts: &[&str],
    n1: usize,
    rounds: usize,
) -> Result<Row, String> {
    let e = open(weights, matmul, false, files)?;
    let opts = |batch_size| EmbedOptions { batch_size: Some(batch_size), ..EmbedOptions::default() };
    e.embed(&texts[..8.min(texts.len())], &opts(32)).map_err(err)?;
    let mut latencies = Vec::with_capacity(n1);
    for t in &texts[..n1] {
        let started = Instant::now();
        e.embed(&[*t], &opts(1)).map_err(err)?;
        latencies.push(started.elapsed().as_secs_f64());
    }
    let batch1 = n1 as f64 / latencies.iter().sum::<f64>();
    latencies.sort_by(f64::total_cmp);
    let batch1_p50_ms = latencies.get(n1 / 2).copied().unwrap_or(0.0) * 1e3;
    let per_s = |batch: usize| -> Result<(f64, Vec<Vec<f32>>, HostTimes), String> {
        let (mut best, mut vectors, mut host) = (0.0f64, vec![], HostTimes::default());
        // An unreported round first: the batch-1 runs before let the pool drop this batch
        // size's buffers, and their re-creation (and the bind groups naming them) is not what
        // a steady stream of calls pays.
        e.embed(texts, &opts(batch)).map_err(err)?;
        for _ in 0..rounds {
            e.backend().take_host_times();
            let started = Instant::now();
            vectors = e.embed(texts, &opts(batch)).map_err(err)?;
            let rate = texts.len() as f64 / started.elapsed().as_secs_f64();
            if rate > best {
                (best, host) = (rate, e.backend().take_host_times());
            }
        }
        Ok((best, vectors, host))
    };
    let (batch32, vectors, host) = per_s(32)?;
    let (batch256, _, _) = per_s(256)?;
    drop(e);
    let profiled = open(weights, matmul, true, files)?;
    profiled.embed(&texts[..8.min(texts.len())], &opts(32)).map_err(err)?;
    profiled.backend().take_kernel_profile();
    profiled.embed(texts, &opts(32)).map_err(err)?;
    let kernels = profiled.backend().take_kernel_profile();
    for t in &texts[..8.min(n1)] {
        profiled.embed(&[*t], &opts(1)).map_err(err)?;
    }
    let kernels1 = profiled.backend().take_kernel_profile();
    Ok(Row { dtype, batch1, batch1_p50_ms, batch32, batch256, host, vectors, kernels, kernels1 })
}

fn print_kernels(dtype: &str, what: &str, kernels: &[KernelTime]) {
    if kernels.is_empty() {
        return;
    }
    let total: f64 = kernels.iter().map(|k| k.seconds).sum();
    println!();
    println!("{dtype}, {what}, GPU time per kernel (timestamp queries, one pass per dispatch):");
    println!();
    println!("| kernel | GPU ms | share | dispatches | us per dispatch | GFLOP/s | GB/s (least traffic) |");
    println!("|---|---|---|---|---|---|---|");
    for k in kernels {
        let s = k.seconds.max(1e-12);
        println!(
            "| {} | {:.2} | {:.1}% | {} | {:.1} | {:.1} | {:.1} |",
            k.kernel,
            k.seconds * 1e3,
            k.seconds / total * 100.0,
            k.dispatches,
            k.seconds / k.dispatches.max(1) as f64 * 1e6,
            k.flops / s / 1e9,
            k.bytes / s / 1e9
        );
    }
}

/// GFLOP/s of our matmul kernel on x [n, n] · w [n, n]ᵀ, weights stored as `weights` says,
/// in the tile shape the backend picks, f16 arithmetic on or off where `half` says.
fn matmul_gflops(weights: GpuWeights, half: Option<bool>, n: usize, seconds: f64) -> Result<f64, String> {
    let mut gpu = pollster::block_on(Gpu::with_weights(weights)).map_err(err)?;
    gpu.force_half_math(half);
    // f16 arithmetic is the tiled kernels', which a software adapter takes only when told.
    if half == Some(true) && gpu.direct_for(n) {
        gpu.force_tiles(Some(gpu.tiles_for(n, n)));
    }
    matmul_shape_gflops(&gpu, [n, n, n], seconds)
}

/// GFLOP/s of `gpu`'s matmul on x [m, k] · w [n, k]ᵀ, timed by the wall clock around submits
/// of as many dispatches as last `seconds`.
fn matmul_shape_gflops(gpu: &Gpu, [m, n, k]: [usize; 3], seconds: f64) -> Result<f64, String> {
    let x = gpu.table(HostTensor::new(vec![m, k], noise(m * k, 21))).map_err(err)?;
    let w = gpu.matrix(HostTensor::new(vec![n, k], noise(n * k, 22))).map_err(err)?;
    let b = gpu.vector(HostTensor::new(vec![n], noise(n, 23))).map_err(err)?;
    let mut reps = 1;
    loop {
        let started = Instant::now();
        let mut last = None;
        for _ in 0..reps {
            last = Some(gpu.linear(&x, &w, &b, None).map_err(err)?);
        }
        if let Some(y) = &last {
            pollster::block_on(gpu.read(y)).map_err(err)?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        // The first round also warms up (pipelines, pooled buffers): never the one reported.
        if elapsed >= seconds && reps > 1 || reps >= 1024 {
            return Ok(2.0 * (m * n * k) as f64 * reps as f64 / elapsed / 1e9);
        }
        reps = (reps * 2).max((reps as f64 * 1.5 * seconds / elapsed.max(1e-6)) as usize).min(1024);
    }
}

/// The matmul kernels on MiniLM's products (f16 weights, as `Auto` stores them on a GPU) at
/// growing row counts: both tile shapes (where the wide one starts to win is what sets
/// backend::gpu's WIDE_MIN_TILES on this adapter) and the direct kernel (whether it is the one
/// for this adapter's class), each tile shape also in f16 arithmetic where the device has
/// shader-f16 (whether that pays is what sets backend::gpu's `Gpu::half_math` default). 16
/// rows, a query, take the few-row kernel under both tiles, in f32 arithmetic.
fn print_tile_sweep(rows: &[usize], seconds: f64) -> Result<(), String> {
    let mut gpu = pollster::block_on(Gpu::with_weights(GpuWeights::F16)).map_err(err)?;
    let f16 = gpu.has_shader_f16();
    println!(
        "matmul kernels, f16 weights, GFLOP/s (narrow: 64x64 tiles, 4x4 a thread; wide: 128x128, 8x8; \
         direct: 6x4 a thread from storage, no tiles; h: the tiles in f16 arithmetic{}):",
        if f16 { "" } else { ", n/a: no shader-f16" }
    );
    println!();
    println!("| rows | n x k | narrow | wide | direct | narrow h | wide h | wide tiles | default |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let runs = [
        (Tiles::Narrow, false),
        (Tiles::Wide, false),
        (Tiles::Direct, false),
        (Tiles::Narrow, true),
        (Tiles::Wide, true),
    ];
    for &m in rows {
        for [n, k] in [[384, 384], [1536, 384], [384, 1536]] {
            let mut g = [None; 5];
            for (i, (tiles, half)) in runs.into_iter().enumerate() {
                if half && !f16 {
                    continue;
                }
                gpu.force_tiles(Some(tiles));
                gpu.force_half_math(Some(half));
                g[i] = Some(matmul_shape_gflops(&gpu, [m, n, k], seconds)?);
            }
            gpu.force_tiles(None);
            gpu.force_half_math(None);
            let default = if gpu.direct_for(k) { Tiles::Direct } else { gpu.tiles_for(m, n) };
            let half = if default != Tiles::Direct && gpu.half_math() { " h" } else { "" };
            let default = format!("{default:?}").to_lowercase();
            let tiles = m.div_ceil(128) * n.div_ceil(128);
            let g = g.map(|v| v.map_or("n/a".to_string(), |v| format!("{v:.1}")));
            println!(
                "| {m} | {n} x {k} | {} | {} | {} | {} | {} | {tiles} | {default}{half} |",
                g[0], g[1], g[2], g[3], g[4]
            );
        }
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct GpuBenchArgs {
    /// fewer sentences, rounds and layers, for a lent machine with little time
    #[arg(long)]
    quick: bool,
    /// sentence-transformers model folder [default: assets/models/all-MiniLM-L6-v2]
    #[arg(long, value_name = "PATH")]
    model: Option<PathBuf>,
    /// STS-B file the sentences come from [default: assets/data/stsbenchmark.tsv.gz]
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// distinct sentences in the corpus
    #[arg(long, value_name = "N", default_value_t = 512)]
    sentences: usize,
    /// rounds; the best is reported [default: 3, 1 with --quick]
    #[arg(long, value_name = "N")]
    repeats: Option<usize>,
    /// only this dtype's row [default: every dtype]
    #[arg(long, value_parser = ["f32", "f16", "q8", "q4"])]
    dtype: Option<String>,
    /// matrix size of the matmul peak probe [default: 4096, 1024 with --quick]
    #[arg(long, value_name = "N")]
    peak_size: Option<usize>,
    /// stop after the peak probe (FMA loops and the large matmul): a kernel change's quick check
    #[arg(long)]
    probe_only: bool,
    /// the model on one kind of kernel: `narrow` or `wide` tiles (with the few-row matmul up
    /// to 32 rows and the tiled attention: a GPU's kernels) or `direct` (a software adapter's
    /// matmul and attention) [default: as the adapter's class picks]
    #[arg(long, value_parser = ["narrow", "wide", "direct"])]
    matmul: Option<String>,
    /// the tiled matmuls on reduced weights (f16, q8, q4) in `f16` or `f32` arithmetic (f16
    /// needs shader-f16; with f16, a row of f16 weights in f32 arithmetic follows) [default:
    /// f16 on a GPU with shader-f16, else f32]
    #[arg(long, value_parser = ["f16", "f32"])]
    arithmetic: Option<String>,
}

pub fn run(args: &GpuBenchArgs) -> Result<(), String> {
    let quick = args.quick;
    let n = args.sentences;
    let n1 = if quick { n.min(32) } else { n };
    let rounds = args.repeats.unwrap_or(if quick { 1 } else { 3 }).max(1);
    let peak_n = args.peak_size.unwrap_or(if quick { 1024 } else { 4096 });
    let matmul = match args.matmul.as_deref() {
        Some("narrow") => Some(Tiles::Narrow),
        Some("wide") => Some(Tiles::Wide),
        Some("direct") => Some(Tiles::Direct),
        _ => None,
    };
    let formats: Vec<_> = match &args.dtype {
        None => FORMATS.to_vec(),
        Some(d) => FORMATS.iter().filter(|(name, _)| name == d).copied().collect(),
    };
    let dir = args.model.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    let files =
        ModelFiles::from_path(&dir).map_err(|e| format!("{e} (run scripts/fetch-assets.sh, or pass --model DIR)"))?;
    let sentences = bench::corpus(args.data.as_deref(), n)?;
    let texts: Vec<&str> = sentences.iter().map(|s| s.as_str()).collect();

    let gpu = pollster::block_on(Gpu::with_weights(GpuWeights::F32)).map_err(err)?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver {} {}); shader-f16: {}; wembed {} ({})",
        info.name,
        info.backend,
        info.device_type,
        info.driver,
        info.driver_info,
        if gpu.has_shader_f16() { "yes" } else { "no" },
        env!("CARGO_PKG_VERSION"),
        option_env!("WEMBED_COMMIT").unwrap_or("commit not recorded")
    );
    let layers = if quick { 16 } else { 64 };
    print_host_times(&host_times(&gpu, layers, rounds.max(3))?);
    // Where reduced weights default to f16 arithmetic, f16 also runs in f32 arithmetic: the
    // end-to-end figure that says whether the default is right.
    let half = args.arithmetic.as_deref().map(|a| a == "f16");
    let f16_math = half.unwrap_or(gpu.half_math()) && gpu.has_shader_f16();
    drop(gpu);

    // The peak probe first and each dtype's row as soon as it is measured: on a lent machine
    // with a time limit, what was printed before the limit is what comes back.
    println!();
    let probe_s = if quick { 0.1 } else { 0.3 };
    let gpu = pollster::block_on(Gpu::with_weights(GpuWeights::F32)).map_err(err)?;
    let fma32 = pollster::block_on(gpu.peak_fma_gflops(false, probe_s)).map_err(err)?;
    let fma16 = pollster::block_on(gpu.peak_fma_gflops(true, probe_s)).map_err(err)?;
    drop(gpu);
    let show = |v: Option<f64>| v.map_or("n/a".to_string(), |g| format!("{g:.0}"));
    println!("peak probe: FMA loop f32 {} GFLOP/s, f16 {} GFLOP/s", show(fma32), show(fma16));
    let matmuls = [
        ("f32 weights", GpuWeights::F32, false, fma32, "f32"),
        ("f16 weights, f32 arithmetic", GpuWeights::F16, false, fma32, "f32"),
        ("f16 weights, f16 arithmetic", GpuWeights::F16, true, fma16, "f16"),
    ];
    for (name, weights, half, peak, peak_name) in matmuls {
        if half && fma16.is_none() {
            println!("matmul {peak_n}^3, {name}: n/a (no shader-f16)");
            continue;
        }
        match matmul_gflops(weights, Some(half), peak_n, probe_s) {
            Ok(g) => {
                let share = peak.map_or("n/a".to_string(), |p| format!("{:.1}%", g / p * 100.0));
                println!(
                    "matmul {peak_n}^3, {name} (our linear kernel): {g:.1} GFLOP/s, {share} of the {peak_name} FMA peak"
                );
            }
            Err(e) => println!("matmul {peak_n}^3, {name}: skipped ({e})"),
        }
    }
    println!();
    let sweep: &[usize] = if quick { &[16, 64, 512, 4096] } else { &[16, 64, 256, 1024, 4096, 16384] };
    if let Err(e) = print_tile_sweep(sweep, probe_s / 2.0) {
        println!("tile sweep: skipped ({e})");
    }
    if args.probe_only {
        return Ok(());
    }

    println!();
    println!(
        "{} on {n} distinct STS-B test sentences (batch 1 on the first {n1}), texts grouped by length; \
         best of {rounds}; host us per dispatch from the batch-32 run",
        dir.display()
    );
    println!();
    println!(
        "| dtype | batch 1 (sent/s) | batch 1 p50 (ms) | batch 32 (sent/s) | batch 256 (sent/s) | host us per dispatch (b32) | worst cosine to f32 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut rows: Vec<Row> = vec![];
    let mut runs: Vec<(&'static str, GpuWeights, Kernels)> =
        formats.iter().map(|&(dtype, weights)| (dtype, weights, (matmul, half))).collect();
    if f16_math && formats.iter().any(|(d, _)| *d == "f16") {
        runs.push(("f16, f32 arithmetic", GpuWeights::F16, (matmul, Some(false))));
    }
    for (dtype, weights, kernels) in runs {
        let r = match bench_dtype(dtype, weights, kernels, &files, &texts, n1, rounds) {
            Ok(row) => row,
            // f16 weights need unpack2x16float, which some GL ES adapters lack: say so, go on.
            Err(e) => {
                println!("| {dtype} | skipped: {e} | | | | | |");
                continue;
            }
        };
        let worst = match rows.iter().find(|r| r.dtype == "f32") {
            Some(base) => {
                let w = base.vectors.iter().zip(&r.vectors).map(|(a, b)| cosine(a, b)).fold(1.0f64, f64::min);
                format!("{w:.6}")
            }
            None if r.dtype == "f32" => "1.000000".into(),
            None => "n/a".into(),
        };
        let h = &r.host;
        let host_us = (h.record_s + h.finish_s + h.submit_s) / h.dispatches.max(1) as f64 * 1e6;
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.1} | {host_us:.1} | {worst} |",
            r.dtype, r.batch1, r.batch1_p50_ms, r.batch32, r.batch256
        );
        rows.push(r);
    }
    for r in &rows {
        print_kernels(r.dtype, "batch 32", &r.kernels);
        print_kernels(r.dtype, "batch 1 (8 texts one by one)", &r.kernels1);
    }
    if let Some(&(dtype, weights)) = formats.iter().find(|(d, _)| *d == "f16").or(formats.first()) {
        token_budgets(dtype, weights, (matmul, half), &files, &texts, rounds)?;
    }
    Ok(())
}

/// Sentences/s of the default batching (by tokens, no count limit) across token budgets, on
/// the corpus four times over (so the largest budgets still cut it into several batches): the
/// measurement `gpu::BATCH_TOKENS` is to be chosen by, per adapter class.
fn token_budgets(
    dtype: &str,
    weights: GpuWeights,
    matmul: Kernels,
    files: &ModelFiles,
    texts: &[&str],
    rounds: usize,
) -> Result<(), String> {
    let e = open(weights, matmul, false, files)?;
    let all: Vec<&str> = texts.iter().cycle().take(4 * texts.len()).copied().collect();
    let tokens: usize = e.tokenize(&all).map_err(err)?.iter().map(|t| t.ids.len()).sum();
    println!();
    println!(
        "{dtype}, batches by tokens ({} texts, {tokens} tokens; default budget {}), best of {rounds}:",
        all.len(),
        e.backend().default_batch().tokens
    );
    println!();
    println!("| tokens per batch | sent/s |");
    println!("|---|---|");
    for budget in [512, 1024, 2048, 4096, 8192, 16384] {
        let opts = EmbedOptions { batch_tokens: Some(budget), ..EmbedOptions::default() };
        e.embed(&all, &opts).map_err(err)?;
        let mut best = 0.0f64;
        for _ in 0..rounds {
            let started = Instant::now();
            e.embed(&all, &opts).map_err(err)?;
            best = best.max(all.len() as f64 / started.elapsed().as_secs_f64());
        }
        println!("| {budget} | {best:.1} |");
    }
    Ok(())
}
