//! The `wembed` command line: embed texts, evaluate on STS-B, quantize and pack models,
//! benchmark against onnxruntime.

mod bench;
mod gpubench;
mod output;
mod pack;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use output::{Progress, npy_bytes, parquet_bytes, write_out};
use wembed::eval::{StsPair, cosine, read_stsb_chinese, read_stsb_english, spearman};
use wembed::weights::{FileDtype, quantize_file};
use wembed::{AnyEmbedder, Device, Dtype, EmbedOptions, LoadOptions, ModelFiles};

const DEFAULT_MODEL: &str = "assets/models/all-MiniLM-L6-v2";
const DEFAULT_STSB: &str = "assets/data/stsbenchmark.tsv.gz";
const DEFAULT_STSB_ZH: &str = "assets/data/STS-B.test.data";
const DEFAULT_REFERENCE: &str = "tests/fixtures/minilm.json";

/// `--model`, `--device`, `--dtype`: the model to load and where.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// sentence-transformers model folder, or a BERT .gguf file [default:
    /// assets/models/all-MiniLM-L6-v2, fetched by scripts/fetch-assets.sh]
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,
    /// cpu, gpu (any adapter, software ones too) or auto (a hardware GPU if there is one, else
    /// the CPU)
    #[arg(long, value_name = "D", default_value = "cpu", value_parser = checked::<Device>)]
    pub device: String,
    /// weight precision: auto (f32 on the CPU, f16 on a GPU), f32, f16 (GPU backend only), q8
    /// (8-bit blocks), q4 (4-bit word embeddings, 8-bit matrices)
    #[arg(long, value_name = "D", default_value = "auto", value_parser = checked::<Dtype>)]
    pub dtype: String,
}

/// How texts are embedded (wembed::EmbedOptions).
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// texts per encoder run [default: 32 on the CPU; the GPU fills by tokens]
    #[arg(long, value_name = "N")]
    batch_size: Option<usize>,
    /// tokens per encoder run [default: none on the CPU; on the GPU 4096, 2048 on a software
    /// adapter]
    #[arg(long, value_name = "N")]
    batch_tokens: Option<usize>,
    /// keep the first N values of each vector (Matryoshka models)
    #[arg(long, value_name = "N")]
    truncate_dim: Option<usize>,
    /// prepend the model's named prompt (config_sentence_transformers.json)
    #[arg(long, value_name = "NAME")]
    prompt_name: Option<String>,
    /// skip L2 normalization even if the model has a Normalize module
    #[arg(long)]
    no_normalize: bool,
    /// fail on texts longer than the model's limit instead of cutting them
    #[arg(long)]
    no_truncate: bool,
}

/// A value that `T::from_str` accepts, kept as written (for the tables that print it).
fn checked<T: std::str::FromStr<Err = wembed::Error>>(s: &str) -> Result<String, String> {
    T::from_str(s).map(|_| s.to_string()).map_err(|e| e.to_string())
}

/// wembed: sentence embeddings, equal to sentence-transformers, on the CPU or a GPU
#[derive(Parser, Debug)]
#[command(name = "wembed", version, arg_required_else_help = true)]
struct Cli {
    /// CPU threads [default: one per core]
    #[arg(long, value_name = "N", global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Embed texts: vectors as JSON (or .npy) on stdout or in a file
    Embed(EmbedArgs),
    /// Spearman x100 on STS-Benchmark's test split, beside PyTorch's
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Copy a model folder with smaller weights (q8, q4 or f16)
    Quantize(QuantizeArgs),
    /// Write the folder a web page loads: weights in one dtype, the files the loader reads, and
    /// manifest.json with their sizes and SHA-256
    Pack(pack::PackArgs),
    /// sentences/s at batch 1 and 32, beside onnxruntime fp32 and int8
    Bench(bench::BenchArgs),
    /// GPU kernels, host overhead and peak throughput, per dtype
    GpuBench(gpubench::GpuBenchArgs),
}

#[derive(clap::Args, Debug)]
struct EmbedArgs {
    #[command(flatten)]
    load: LoadArgs,
    #[command(flatten)]
    run: RunArgs,
    /// read texts from FILE, one per line ('-' for stdin)
    #[arg(long, value_name = "FILE")]
    file: Option<String>,
    /// json, npy (a [count, dim] float32 matrix), or parquet (columns text and embedding, a list
    /// of float32: for DuckDB, LanceDB, Qdrant imports, Spark)
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// output file ('-' for stdout)
    #[arg(long, value_name = "PATH", default_value = "-")]
    out: String,
    /// texts to embed (after those, the lines of --file)
    #[arg(value_name = "TEXT")]
    texts: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Json,
    Npy,
    Parquet,
}

#[derive(Subcommand, Debug)]
enum EvalCommand {
    /// English STS-B (the PyTorch figure comes from tests/fixtures/minilm.json)
    Stsb {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        run: RunArgs,
        /// STS-B file [default: assets/data/stsbenchmark.tsv.gz]
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// PyTorch's figures, a fixture of tests/fixtures [default: tests/fixtures/minilm.json
        /// for the default model]
        #[arg(long, value_name = "FILE")]
        reference: Option<PathBuf>,
    },
    /// Chinese STS-B (for Chinese models)
    StsbZh {
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        run: RunArgs,
        /// STS-B file [default: assets/data/STS-B.test.data]
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct QuantizeArgs {
    /// q8 (matrices and word table in q8_0), q4 (word table in q4_1, matrices in q8_0) or f16
    #[arg(long, value_enum)]
    dtype: QuantDtype,
    /// a sentence-transformers folder with float weights
    in_dir: PathBuf,
    out_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum QuantDtype {
    #[value(alias = "q8_0")]
    Q8,
    Q4,
    F16,
}

impl QuantDtype {
    fn file_dtype(self) -> FileDtype {
        match self {
            QuantDtype::Q8 => FileDtype::Q8_0,
            QuantDtype::Q4 => FileDtype::Q4,
            QuantDtype::F16 => FileDtype::F16,
        }
    }
}

fn main() -> ExitCode {
    // Usage errors (exit 2), --help and --version end here, printed by clap.
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| e.to_string())?;
    }
    match cli.command {
        Command::Embed(a) => embed(&a),
        Command::Eval(EvalCommand::Stsb { load, run, data, reference }) => {
            eval_stsb(&load, &run, data, reference, false)
        }
        Command::Eval(EvalCommand::StsbZh { load, run, data }) => eval_stsb(&load, &run, data, None, true),
        Command::Bench(a) => bench::run(&a),
        Command::GpuBench(a) => gpubench::run(&a),
        Command::Quantize(a) => quantize(&a),
        Command::Pack(a) => pack::run(&a),
    }
}

/// The model `args` name, loaded; `profile` times the GPU kernels (bench).
fn load(args: &LoadArgs, profile: bool) -> Result<AnyEmbedder, String> {
    let dir = args.model.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_MODEL));
    if args.model.is_none() && !dir.is_dir() {
        return Err(format!(
            "the default model is not at {DEFAULT_MODEL}: run scripts/fetch-assets.sh, or pass --model DIR"
        ));
    }
    let parse_err = |e: wembed::Error| e.to_string();
    let device: Device = args.device.parse().map_err(parse_err)?;
    let dtype: Dtype = args.dtype.parse().map_err(parse_err)?;
    let opts = LoadOptions { device, dtype, profile };
    let files = ModelFiles::from_path(&dir).map_err(|e| e.to_string())?;
    let (embedder, why) = pollster::block_on(AnyEmbedder::load(&files, &opts)).map_err(|e| e.to_string())?;
    if device == Device::Auto {
        eprintln!("device: {} ({why})", embedder.device_name());
    }
    Ok(embedder)
}

fn options(args: &RunArgs) -> EmbedOptions {
    EmbedOptions {
        batch_size: args.batch_size,
        batch_tokens: args.batch_tokens,
        prompt_name: args.prompt_name.clone(),
        prompt: None,
        normalize: if args.no_normalize { Some(false) } else { None },
        truncate: !args.no_truncate,
        truncate_dim: args.truncate_dim,
    }
}

/// Texts from a file (or stdin), one per line; a line that is not UTF-8 is an error naming it.
fn read_lines(path: &str) -> Result<Vec<String>, String> {
    let bytes = if path == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map_err(|e| format!("reading stdin: {e}"))?;
        buf
    } else {
        std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?
    };
    let mut lines = Vec::new();
    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).map_err(|e| format!("{path}, line {}: not valid UTF-8 ({e})", n + 1))?;
        lines.push(text.to_string());
    }
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop(); // the newline that ends the file
    }
    Ok(lines)
}

fn embed(args: &EmbedArgs) -> Result<(), String> {
    let mut texts: Vec<String> = args.texts.clone();
    if let Some(file) = &args.file {
        texts.extend(read_lines(file)?);
    }
    if texts.is_empty() {
        return Err("nothing to embed: give texts as arguments or --file FILE".into());
    }
    let out = args.out.as_str();
    if args.format != Format::Json && out == "-" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err("refusing to write a binary format to a terminal: add --out FILE".into());
    }
    let embedder = load(&args.load, false)?;
    let opts = options(&args.run);
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let mut bar = Progress::new("embedding");
    let vectors = embedder.embed_with_progress(&refs, &opts, |d, t| bar.update(d, t)).map_err(|e| e.to_string())?;
    // The vectors' own length: --truncate-dim (or the model's truncate_dim) may cut them.
    let dim = vectors.first().map_or(embedder.dim(), |v| v.len());
    let bytes = match args.format {
        Format::Npy => {
            let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
            npy_bytes(vectors.len(), dim, &flat)
        }
        Format::Parquet => {
            let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
            parquet_bytes(&texts, dim, &flat)?
        }
        Format::Json => {
            let mut s = serde_json::to_string(&vectors).map_err(|e| e.to_string())?;
            s.push('\n');
            s.into_bytes()
        }
    };
    write_out(out, &bytes).map_err(|e| format!("cannot write {out}: {e}"))
}

/// Spearman x100 of cosine similarity against the gold scores, MTEB style.
pub fn sts_spearman(
    embedder: &AnyEmbedder,
    pairs: &[StsPair],
    opts: &EmbedOptions,
    label: &str,
) -> Result<f64, String> {
    let texts: Vec<&str> = pairs.iter().flat_map(|p| [p.s1.as_str(), p.s2.as_str()]).collect();
    let mut bar = Progress::new(label);
    let v = embedder.embed_with_progress(&texts, opts, |d, t| bar.update(d, t)).map_err(|e| e.to_string())?;
    let sims: Vec<f64> = v.chunks_exact(2).map(|p| cosine(&p[0], &p[1])).collect();
    let gold: Vec<f64> = pairs.iter().map(|p| p.score).collect();
    Ok(spearman(&sims, &gold) * 100.0)
}

fn reference_spearman(path: &Path) -> Option<(f64, String)> {
    let bytes = std::fs::read(path).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let sp = v.get("stsb_test")?.get("spearman_x100")?.as_f64()?;
    let versions = v.get("versions").map(|x| x.to_string()).unwrap_or_default();
    Some((sp, versions))
}

fn eval_stsb(
    load_args: &LoadArgs,
    run: &RunArgs,
    data: Option<PathBuf>,
    reference: Option<PathBuf>,
    chinese: bool,
) -> Result<(), String> {
    let data = data.unwrap_or_else(|| PathBuf::from(if chinese { DEFAULT_STSB_ZH } else { DEFAULT_STSB }));
    if !data.is_file() {
        return Err(format!("{} not found: run scripts/fetch-assets.sh, or pass --data FILE", data.display()));
    }
    let pairs =
        if chinese { read_stsb_chinese(&data) } else { read_stsb_english(&data, "test") }.map_err(|e| e.to_string())?;
    let embedder = load(load_args, false)?;
    let started = std::time::Instant::now();
    let ours = sts_spearman(&embedder, &pairs, &options(run), "STS-B")?;
    let name = if chinese { "Chinese STS-B test" } else { "STS-Benchmark test" };
    println!("{name}: {} pairs, {:.1}s on {}", pairs.len(), started.elapsed().as_secs_f64(), embedder.device_name());
    println!("wembed      Spearman x100 = {ours:.4}");
    if !chinese {
        // The PyTorch figure only applies to the model the fixtures were made with.
        let default_model = load_args.model.as_ref().is_none_or(|m| m == Path::new(DEFAULT_MODEL));
        let ref_path = reference.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_REFERENCE));
        match reference_spearman(&ref_path) {
            Some((sp, versions)) if default_model || reference.is_some() => {
                println!("PyTorch     Spearman x100 = {sp:.4}   (sentence-transformers, {versions})");
                println!("difference  {:+.4}", ours - sp);
            }
            Some(_) => {}
            None => eprintln!("(no PyTorch reference at {}; pass --reference FILE)", ref_path.display()),
        }
    }
    Ok(())
}

/// Copies a model folder with a smaller model.safetensors (see wembed::weights::quantize_file).
fn quantize(args: &QuantizeArgs) -> Result<(), String> {
    let dtype = args.dtype.file_dtype();
    let (input, output) = (args.in_dir.as_path(), args.out_dir.as_path());
    if input == output {
        return Err("OUT_DIR must differ from IN_DIR".into());
    }
    let weights = input.join("model.safetensors");
    let bytes = std::fs::read(&weights).map_err(|e| format!("cannot read {}: {e}", weights.display()))?;
    let smaller = quantize_file(&bytes, dtype, &weights.display().to_string()).map_err(|e| e.to_string())?;
    copy_model_folder(input, output)?;
    let target = output.join("model.safetensors");
    std::fs::write(&target, &smaller).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    println!(
        "{} -> {}: {:.1} MB -> {:.1} MB ({:.1}x smaller)",
        weights.display(),
        target.display(),
        bytes.len() as f64 / 1e6,
        smaller.len() as f64 / 1e6,
        bytes.len() as f64 / smaller.len() as f64
    );
    Ok(())
}

/// Copies every file of a model folder but its own model.safetensors (a Dense module's, in a
/// subfolder, is copied: the model needs it).
fn copy_model_folder(from: &Path, to: &Path) -> Result<(), String> {
    copy_folder(from, to, true)
}

fn copy_folder(from: &Path, to: &Path, top: bool) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_folder(&src, &dst, false)?;
        } else if !(top && entry.file_name() == "model.safetensors") {
            std::fs::copy(&src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        }
    }
    Ok(())
}
