//! `wembed bench`: sentences/s at batch 1 and 32 on a fixed corpus of real sentences, with
//! onnxruntime fp32 and int8 (dynamic quantization, transformers.js' q8 recipe) on the same
//! model, machine and token ids in the same run, and each row's worst cosine to the fp32
//! vectors.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::{DEFAULT_MODEL, DEFAULT_STSB, LoadArgs, RunArgs, load, options};
use wembed::EmbedOptions;
use wembed::eval::{cosine, read_stsb_english};

const DEFAULT_PYTHON: &str = "assets/venv-bench/bin/python";

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    run: RunArgs,
    /// STS-B file the sentences come from [default: assets/data/stsbenchmark.tsv.gz]
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// distinct sentences in the corpus
    #[arg(long, value_name = "N", default_value_t = 512)]
    sentences: usize,
    /// alternating rounds; each system's best is reported
    #[arg(long, value_name = "N", default_value_t = 3)]
    repeats: usize,
    /// Python with onnxruntime (scripts/bench.sh sets it up)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_PYTHON)]
    python: PathBuf,
}

/// The corpus: distinct sentences of the STS-Benchmark test split, in file order.
pub(super) fn corpus(data: Option<&Path>, n: usize) -> Result<Vec<String>, String> {
    let path = data.unwrap_or(Path::new(DEFAULT_STSB));
    let pairs = read_stsb_english(path, "test").map_err(|e| format!("{e} (run scripts/fetch-assets.sh)"))?;
    let mut seen = std::collections::HashSet::new();
    let sentences: Vec<String> =
        pairs.iter().flat_map(|p| [p.s1.clone(), p.s2.clone()]).filter(|s| seen.insert(s.clone())).take(n).collect();
    if sentences.len() < n {
        return Err(format!("the corpus has only {} distinct sentences, {n} asked", sentences.len()));
    }
    Ok(sentences)
}

struct OrtRun {
    batch1: f64,
    batch32: f64,
    embeddings: Vec<f32>,
}

struct OrtResult {
    version: String,
    fp32: OrtRun,
    int8: OrtRun,
}

/// An .npy of f32: 10-byte preamble (the header length at 8..10), header, little-endian data.
fn read_npy(path: &std::path::Path) -> Option<Vec<f32>> {
    let npy = std::fs::read(path).ok()?;
    let header_len = u16::from_le_bytes([*npy.get(8)?, *npy.get(9)?]) as usize;
    let data = npy.get(10 + header_len..)?;
    Some(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

/// Runs scripts/ort_bench.py on the same token ids; None (with the reason printed) if it can't.
fn onnxruntime(args: &BenchArgs, ids: &[Vec<u32>], threads: usize, repeats: usize) -> Option<OrtResult> {
    let python = &args.python;
    if !python.exists() {
        eprintln!("onnxruntime row skipped: no Python at {} (scripts/bench.sh sets it up)", python.display());
        return None;
    }
    let dir = std::env::temp_dir().join(format!("wembed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let ids_path = dir.join("ids.json");
    let npy_path = dir.join("ort.npy");
    std::fs::write(&ids_path, serde_json::json!({ "ids": ids }).to_string()).ok()?;
    let model = args.load.model.as_deref().unwrap_or(Path::new(DEFAULT_MODEL));
    let out = Command::new(python)
        .args(["scripts/ort_bench.py", "--model"])
        .arg(model)
        .args(["--threads", &threads.to_string()])
        .args(["--repeats", &repeats.to_string()])
        .arg("--ids")
        .arg(&ids_path)
        .arg("--out")
        .arg(&npy_path)
        .arg("--int8")
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("onnxruntime run failed:\n{}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("cannot start {}: {e}", python.display());
            return None;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let run = |prefix: &str| -> Option<OrtRun> {
        Some(OrtRun {
            batch1: v[format!("{prefix}batch1_per_s")].as_f64()?,
            batch32: v[format!("{prefix}batch32_per_s")].as_f64()?,
            embeddings: read_npy(std::path::Path::new(v[format!("{prefix}embeddings")].as_str()?))?,
        })
    };
    let result = OrtResult {
        version: v["onnxruntime"].as_str().unwrap_or("?").to_string(),
        fp32: run("")?,
        int8: run("int8_")?,
    };
    std::fs::remove_dir_all(&dir).ok();
    Some(result)
}

pub fn run(args: &BenchArgs) -> Result<(), String> {
    let n = args.sentences;
    let rounds = args.repeats.max(1);
    let sentences = corpus(args.data.as_deref(), n)?;
    let texts: Vec<&str> = sentences.iter().map(|s| s.as_str()).collect();
    let started = Instant::now();
    let embedder = load(&args.load, true)?;
    let load_s = started.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let tokens: Vec<Vec<u32>> =
        embedder.tokenize(&texts).map_err(|e| e.to_string())?.into_iter().map(|e| e.ids).collect();
    let mean_tokens = tokens.iter().map(|t| t.len()).sum::<usize>() as f64 / n as f64;

    let opts32 = EmbedOptions { batch_size: Some(32), ..options(&args.run) };
    let opts1 = EmbedOptions { batch_size: Some(1), ..opts32.clone() };
    embedder.embed(&texts[..8.min(n)], &opts32).map_err(|e| e.to_string())?; // warm-up
    let per_s = |f: &dyn Fn() -> wembed::Result<Vec<Vec<f32>>>| -> Result<(f64, Vec<Vec<f32>>), String> {
        let t = Instant::now();
        let v = f().map_err(|e| e.to_string())?;
        Ok((n as f64 / t.elapsed().as_secs_f64(), v))
    };

    // Rounds alternate between wembed and onnxruntime, so a slow spell of this shared machine
    // hits both; each system's best round is reported.
    let (mut ours1, mut ours32, mut ort1, mut ort32, mut int1, mut int32) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut vectors = vec![];
    let mut ort_info = None;
    let mut ort_ok = true;
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        let (b1, _) = per_s(&|| {
            let mut out = Vec::with_capacity(n);
            for t in &texts {
                out.extend(embedder.embed(&[*t], &opts1)?);
            }
            Ok(out)
        })?;
        let (b32, v) = per_s(&|| embedder.embed(&texts, &opts32))?;
        ours1.push(b1);
        ours32.push(b32);
        vectors = v;
        if ort_ok {
            match onnxruntime(args, &tokens, threads, 1) {
                Some(o) => {
                    ort1.push(o.fp32.batch1);
                    ort32.push(o.fp32.batch32);
                    int1.push(o.int8.batch1);
                    int32.push(o.int8.batch32);
                    ort_info = Some(o);
                }
                None => ort_ok = false,
            }
        }
    }
    let best = |xs: &[f64]| xs.iter().copied().fold(0.0f64, f64::max);

    println!(
        "corpus: {n} distinct STS-B test sentences, mean {mean_tokens:.1} tokens; {threads} threads; \
         best of {rounds} alternating rounds; model loaded in {load_s:.2}s"
    );
    println!(
        "wembed times tokenization + encoder + pooling; onnxruntime times encoder + pooling on wembed's token ids."
    );
    println!();
    println!(
        "| system | device | dtype | batch 1 (sent/s) | batch 32, length-sorted (sent/s) | vs onnxruntime fp32 (b1 / b32) | worst cosine to fp32 |"
    );
    println!("|---|---|---|---|---|---|---|");
    let dim = embedder.dim();
    let version = env!("CARGO_PKG_VERSION");
    let dtype = &args.load.dtype;
    let device = embedder.device_name();
    let (o1, o32) = (best(&ours1), best(&ours32));
    match &ort_info {
        Some(o) => {
            // onnxruntime fp32 equals PyTorch to 1e-6 here: it is the fp32 reference.
            let reference = &o.fp32.embeddings;
            let worst = |v: &mut dyn Iterator<Item = &[f32]>| {
                v.zip(reference.chunks_exact(dim)).map(|(a, b)| cosine(a, b)).fold(1.0f64, f64::min)
            };
            let ours = worst(&mut vectors.iter().map(|v| v.as_slice()));
            let int8 = worst(&mut o.int8.embeddings.chunks_exact(dim));
            let (r1, r32) = (best(&ort1), best(&ort32));
            let (i1, i32_) = (best(&int1), best(&int32));
            println!(
                "| wembed {version} | {device} | {dtype} | {o1:.1} | {o32:.1} | {:.2}x / {:.2}x | {ours:.6} |",
                o1 / r1,
                o32 / r32
            );
            let v = &o.version;
            println!(
                "| onnxruntime {v} | cpu ({threads} threads) | fp32 | {r1:.1} | {r32:.1} | 1.00x / 1.00x | 1.000000 |"
            );
            println!(
                "| onnxruntime {v}, dynamic int8 (transformers.js q8 recipe) | cpu ({threads} threads) | int8 | {i1:.1} | {i32_:.1} | {:.2}x / {:.2}x | {int8:.6} |",
                i1 / r1,
                i32_ / r32
            );
        }
        None => println!("| wembed {version} | {device} | {dtype} | {o1:.1} | {o32:.1} | n/a | n/a |"),
    }
    let kernels = embedder.take_kernel_times();
    if !kernels.is_empty() {
        let total: f64 = kernels.iter().map(|k| k.1).sum();
        println!();
        println!("GPU time per kernel over all rounds (timestamp queries):");
        println!();
        println!("| kernel | GPU time (s) | share | dispatches | mean per dispatch (us) |");
        println!("|---|---|---|---|---|");
        for (name, secs, n) in kernels {
            println!("| {name} | {secs:.3} | {:.1}% | {n} | {:.1} |", secs / total * 100.0, secs / n as f64 * 1e6);
        }
    }
    Ok(())
}
