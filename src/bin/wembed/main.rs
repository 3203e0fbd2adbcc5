//! The `wembed` command line: embed texts, evaluate on STS-B, benchmark against onnxruntime.

mod bench;
mod gpubench;
mod output;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use output::{Progress, npy_bytes, write_out};
use wembed::eval::{StsPair, cosine, read_stsb_chinese, read_stsb_english, spearman};
use wembed::weights::{FileDtype, quantize_file};
use wembed::{AnyEmbedder, Device, Dtype, EmbedOptions, LoadOptions, ModelFiles};

const DEFAULT_MODEL: &str = "assets/models/all-MiniLM-L6-v2";
const DEFAULT_STSB: &str = "assets/data/stsbenchmark.tsv.gz";
const DEFAULT_STSB_ZH: &str = "assets/data/STS-B.test.data";
const DEFAULT_REFERENCE: &str = "tests/fixtures/minilm.json";

const USAGE: &str = "\
wembed: sentence embeddings, equal to sentence-transformers, on the CPU or a GPU

USAGE:
  wembed embed [--model PATH] [--file FILE] [--format json|npy] [--out PATH] [TEXT...]
  wembed eval stsb [--model PATH] [--data FILE] [--reference FILE]
  wembed eval stsb-zh [--model PATH] [--data FILE]
  wembed quantize --dtype q8|q4|f16 IN_DIR OUT_DIR
  wembed bench [--model PATH] [--data FILE] [--sentences N] [--repeats N] [--python PATH]
               [--device cpu|gpu] [--dtype f32|f16|q8|q4]
  wembed gpu-bench [--quick] [--model PATH] [--data FILE] [--sentences N] [--repeats N]
                   [--dtype f32|f16|q8|q4] [--peak-size N]

COMMON OPTIONS:
  --model PATH        sentence-transformers model folder, or a BERT .gguf file (default:
                      assets/models/all-MiniLM-L6-v2, fetched by scripts/fetch-assets.sh)
  --threads N         CPU threads (default: one per core)
  --batch-size N      texts per encoder run (default: 32 on the CPU; the GPU fills by tokens)
  --batch-tokens N    tokens per encoder run (default: none on the CPU; on the GPU 4096, 512
                      on a software adapter)
  --device D          cpu (default), gpu (any adapter, software ones too) or auto (a hardware
                      GPU if there is one, else the CPU)
  --dtype D           weight precision: auto (default: f32 on the CPU, f16 on a GPU), f32,
                      f16 (GPU backend only), q8 (8-bit blocks), q4 (4-bit word embeddings,
                      8-bit matrices)

EMBED OPTIONS:
  --file FILE         read texts from FILE, one per line ('-' for stdin)
  --format json|npy   output format (default: json; npy is a [count, dim] float32 matrix)
  --out PATH          output file (default: stdout)
  --prompt-name NAME  prepend the model's named prompt (config_sentence_transformers.json)
  --no-normalize      skip L2 normalization even if the model has a Normalize module
  --no-truncate       fail on texts longer than the model's limit instead of cutting them
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Parsed command line: positional words, `--key value` options and `--switch`es.
struct Args {
    words: Vec<String>,
    opts: HashMap<String, String>,
    switches: Vec<String>,
}

const VALUE_OPTS: &[&str] = &[
    "model",
    "file",
    "format",
    "out",
    "threads",
    "batch-size",
    "batch-tokens",
    "prompt-name",
    "data",
    "reference",
    "sentences",
    "python",
    "repeats",
    "device",
    "dtype",
    "peak-size",
];
const SWITCHES: &[&str] = &["no-normalize", "no-truncate", "help", "quick"];

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut a = Args { words: vec![], opts: HashMap::new(), switches: vec![] };
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                a.words.extend(it.by_ref().cloned());
            } else if let Some(name) = arg.strip_prefix("--") {
                let (name, inline) = match name.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_string())),
                    None => (name, None),
                };
                if VALUE_OPTS.contains(&name) {
                    let value = match inline {
                        Some(v) => v,
                        None => it.next().cloned().ok_or_else(|| format!("--{name} needs a value"))?,
                    };
                    a.opts.insert(name.to_string(), value);
                } else if SWITCHES.contains(&name) {
                    a.switches.push(name.to_string());
                } else {
                    return Err(format!("unknown option --{name}\n\n{USAGE}"));
                }
            } else if arg == "-h" {
                a.switches.push("help".into());
            } else {
                a.words.push(arg.clone());
            }
        }
        Ok(a)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.opts.get(name).map(|s| s.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    fn number(&self, name: &str, default: usize) -> Result<usize, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name} wants a whole number, got `{v}`")),
        }
    }

    fn path(&self, name: &str, default: &str) -> PathBuf {
        PathBuf::from(self.get(name).unwrap_or(default))
    }
}

fn run(raw: &[String]) -> Result<(), String> {
    let args = Args::parse(raw)?;
    if args.has("help") || args.words.is_empty() {
        print!("{USAGE}");
        return if args.words.is_empty() && !args.has("help") { Err("no command given".into()) } else { Ok(()) };
    }
    if let Some(threads) = args.get("threads") {
        let n: usize = threads.parse().map_err(|_| format!("--threads wants a whole number, got `{threads}`"))?;
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().map_err(|e| e.to_string())?;
    }
    match args.words[0].as_str() {
        "embed" => embed(&args),
        "eval" => match args.words.get(1).map(|s| s.as_str()) {
            Some("stsb") => eval_stsb(&args, false),
            Some("stsb-zh") => eval_stsb(&args, true),
            other => Err(format!("eval wants `stsb` or `stsb-zh`, got {other:?}")),
        },
        "bench" => bench::run(&args),
        "gpu-bench" => gpubench::run(&args),
        "quantize" => quantize(&args),
        other => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    }
}

fn load(args: &Args) -> Result<AnyEmbedder, String> {
    let dir = args.path("model", DEFAULT_MODEL);
    if args.get("model").is_none() && !dir.is_dir() {
        return Err(format!(
            "the default model is not at {DEFAULT_MODEL}: run scripts/fetch-assets.sh, or pass --model DIR"
        ));
    }
    let parse_err = |e: wembed::Error| e.to_string();
    let device: Device = args.get("device").unwrap_or("cpu").parse().map_err(parse_err)?;
    let dtype: Dtype = args.get("dtype").unwrap_or("auto").parse().map_err(parse_err)?;
    let opts = LoadOptions { device, dtype, profile: args.words[0] == "bench" };
    let files = ModelFiles::from_path(&dir).map_err(|e| e.to_string())?;
    let (embedder, why) = pollster::block_on(AnyEmbedder::load(&files, &opts)).map_err(|e| e.to_string())?;
    if device == Device::Auto {
        eprintln!("device: {} ({why})", embedder.device_name());
    }
    Ok(embedder)
}

fn options(args: &Args) -> Result<EmbedOptions, String> {
    Ok(EmbedOptions {
        batch_size: args.get("batch-size").map(|_| args.number("batch-size", 0)).transpose()?,
        batch_tokens: args.get("batch-tokens").map(|_| args.number("batch-tokens", 0)).transpose()?,
        prompt_name: args.get("prompt-name").map(String::from),
        prompt: None,
        normalize: if args.has("no-normalize") { Some(false) } else { None },
        truncate: !args.has("no-truncate"),
    })
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

fn embed(args: &Args) -> Result<(), String> {
    let mut texts: Vec<String> = args.words[1..].to_vec();
    if let Some(file) = args.get("file") {
        texts.extend(read_lines(file)?);
    }
    if texts.is_empty() {
        return Err("nothing to embed: give texts as arguments or --file FILE".into());
    }
    let format = args.get("format").unwrap_or("json");
    if format != "json" && format != "npy" {
        return Err(format!("--format wants json or npy, got `{format}`"));
    }
    let out = args.get("out").unwrap_or("-");
    if format == "npy" && out == "-" && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err("refusing to write binary .npy to a terminal: add --out FILE".into());
    }
    let embedder = load(args)?;
    let opts = options(args)?;
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let mut bar = Progress::new("embedding");
    let vectors = embedder.embed_with_progress(&refs, &opts, |d, t| bar.update(d, t)).map_err(|e| e.to_string())?;
    let bytes = match format {
        "npy" => {
            let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
            npy_bytes(vectors.len(), embedder.dim(), &flat)
        }
        _ => {
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

fn eval_stsb(args: &Args, chinese: bool) -> Result<(), String> {
    let data = args.path("data", if chinese { DEFAULT_STSB_ZH } else { DEFAULT_STSB });
    if !data.is_file() {
        return Err(format!("{} not found: run scripts/fetch-assets.sh, or pass --data FILE", data.display()));
    }
    let pairs =
        if chinese { read_stsb_chinese(&data) } else { read_stsb_english(&data, "test") }.map_err(|e| e.to_string())?;
    let embedder = load(args)?;
    let started = std::time::Instant::now();
    let ours = sts_spearman(&embedder, &pairs, &options(args)?, "STS-B")?;
    let name = if chinese { "Chinese STS-B test" } else { "STS-Benchmark test" };
    println!("{name}: {} pairs, {:.1}s on {}", pairs.len(), started.elapsed().as_secs_f64(), embedder.device_name());
    println!("wembed      Spearman x100 = {ours:.4}");
    if !chinese {
        // The PyTorch figure only applies to the model the fixtures were made with.
        let default_model = args.get("model").is_none_or(|m| Path::new(m) == Path::new(DEFAULT_MODEL));
        let ref_path = args.path("reference", DEFAULT_REFERENCE);
        match reference_spearman(&ref_path) {
            Some((sp, versions)) if default_model || args.get("reference").is_some() => {
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
fn quantize(args: &Args) -> Result<(), String> {
    let (Some(input), Some(output)) = (args.words.get(1), args.words.get(2)) else {
        return Err("quantize wants IN_DIR OUT_DIR".into());
    };
    let dtype = match args.get("dtype") {
        Some("q8") | Some("q8_0") => FileDtype::Q8_0,
        Some("q4") => FileDtype::Q4,
        Some("f16") => FileDtype::F16,
        other => return Err(format!("quantize wants --dtype q8, q4 or f16, got {other:?}")),
    };
    let (input, output) = (Path::new(input), Path::new(output));
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

/// Copies every file of a model folder but model.safetensors (and module subfolders).
fn copy_model_folder(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("cannot create {}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("cannot read {}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if src.is_dir() {
            copy_model_folder(&src, &dst)?;
        } else if entry.file_name() != "model.safetensors" {
            std::fs::copy(&src, &dst).map_err(|e| format!("cannot copy {}: {e}", src.display()))?;
        }
    }
    Ok(())
}
