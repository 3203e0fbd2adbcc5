//! Model files and their configs: HF `config.json` and the sentence-transformers files
//! (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`,
//! `config_sentence_transformers.json`) turned into typed, checked configs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::weights::ReadAt;

/// The bytes of a model's files, keyed by their path inside the model folder
/// (`config.json`, `1_Pooling/config.json`, …). Filled from a folder natively and from fetched
/// bytes in the browser, so everything after this point is the same on both.
#[derive(Default, Clone)]
pub struct ModelFiles {
    origin: String,
    /// Shared, so that adding the files a GGUF file implies copies no weights.
    files: HashMap<String, std::sync::Arc<FileBytes>>,
}

/// One file's bytes: read into memory, or (natively, for the weights) mapped from the disk so
/// that a load never holds a heap copy of the file beside the model it builds.
enum FileBytes {
    Owned(Vec<u8>),
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    /// Left with the caller, read a range at a time (the weights, in the browser: see
    /// [`ModelFiles::insert_reader`]).
    At(Box<dyn ReadAt + Send + Sync>),
}

impl FileBytes {
    /// The bytes in memory; None for a file read through a [`ReadAt`].
    fn as_slice(&self) -> Option<&[u8]> {
        match self {
            FileBytes::Owned(v) => Some(v),
            #[cfg(not(target_arch = "wasm32"))]
            FileBytes::Mapped(m) => Some(m),
            FileBytes::At(_) => None,
        }
    }
}

/// Weight files are mapped, not read: their pages come in as each tensor is converted and
/// [`ModelFiles::release`] lets them go after, so the peak of a load is the model being built
/// plus a tensor or so (measured in tests/load_memory.rs), not the file plus the model.
#[cfg(not(target_arch = "wasm32"))]
fn read_weights(path: &Path) -> Result<FileBytes> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    if file.metadata().map_err(|e| Error::io(path.display(), e))?.len() == 0 {
        return Ok(FileBytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only and lives as long as the bytes borrowed from it. As with
    // every mapped model file (safetensors, llama.cpp), the file must not be truncated or
    // rewritten while this ModelFiles lives (a load reads it once; the model keeps copies).
    match unsafe { memmap2::Mmap::map(&file) } {
        Ok(map) => Ok(FileBytes::Mapped(map)),
        // A file system that cannot map files: read it, as before.
        Err(_) => std::fs::read(path).map(FileBytes::Owned).map_err(|e| Error::io(path.display(), e)),
    }
}

#[cfg(target_arch = "wasm32")]
fn read_weights(path: &Path) -> Result<FileBytes> {
    std::fs::read(path).map(FileBytes::Owned).map_err(|e| Error::io(path.display(), e))
}

/// Bytes of a [`ReadAt`] file hashed at a time by [`ModelFiles::digest`] (a multiple of 8).
const DIGEST_PART: usize = 1 << 20;

/// The last word of a part of [`ModelFiles::digest`]: its `tail` (under 8 bytes), zero-padded.
fn finish(tail: &[u8], mix: &mut dyn FnMut(u64)) {
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    mix(u64::from_le_bytes(last));
}

/// Files read from a model folder; the rest of a sentence-transformers folder is not needed.
const MODEL_FILE_NAMES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
];

impl ModelFiles {
    /// A model folder ([`ModelFiles::from_dir`]) or a `.gguf` file, read with the
    /// sentence-transformers files beside it (a `tokenizer.json` there wins over the GGUF
    /// vocabulary).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut out = Self::read_names(dir, &[])?;
            out.origin = path.display().to_string();
            out.files.retain(|name, _| name != "model.safetensors" && name != "config.json");
            out.files.insert(crate::gguf::GGUF_FILE.into(), std::sync::Arc::new(read_weights(path)?));
            return Ok(out);
        }
        Self::from_dir(path)
    }

    /// Reads a sentence-transformers / Hugging Face model folder: `model.safetensors`, or, when
    /// there is none, the folder's single `.gguf` file.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(Error::io(
                dir.display(),
                "not a folder (expected a model folder with config.json, tokenizer.json and model.safetensors)",
            ));
        }
        if !dir.join("model.safetensors").is_file() {
            let ggufs: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir.display(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")))
                .collect();
            if let [one] = &ggufs[..] {
                return Self::from_path(one);
            }
        }
        Self::read_names(dir, &[])
    }

    fn read_names(dir: &Path, extra: &[&str]) -> Result<Self> {
        let mut out = ModelFiles { origin: dir.display().to_string(), files: HashMap::new() };
        let mut names: Vec<String> = MODEL_FILE_NAMES.iter().chain(extra).map(|s| s.to_string()).collect();
        // Module folders are named by modules.json; read it first to know which to fetch.
        if let Ok(bytes) = std::fs::read(dir.join("modules.json"))
            && let Ok(modules) = serde_json::from_slice::<Vec<ModuleEntry>>(&bytes)
        {
            for m in modules.iter().filter(|m| !m.path.is_empty()) {
                names.push(format!("{}/config.json", m.path));
                if m.kind.ends_with("Dense") {
                    names.push(format!("{}/model.safetensors", m.path));
                }
            }
        }
        for name in names {
            let path: PathBuf = dir.join(&name);
            if name == "model.safetensors" && path.is_file() {
                out.files.insert(name, std::sync::Arc::new(read_weights(&path)?));
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => {
                    out.insert(name, bytes);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path.display(), e)),
            }
        }
        Ok(out)
    }

    /// Builds the file set from bytes already in memory (fetched in a browser, bundled…).
    pub fn from_map(origin: impl Into<String>, files: HashMap<String, Vec<u8>>) -> Self {
        let files = files.into_iter().map(|(k, v)| (k, std::sync::Arc::new(FileBytes::Owned(v)))).collect();
        ModelFiles { origin: origin.into(), files }
    }

    pub fn insert(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.insert(name.into(), std::sync::Arc::new(FileBytes::Owned(bytes)));
    }

    /// Adds a `model.safetensors` that stays with the caller and is read a tensor at a time
    /// (in wasm, the `Uint8Array` JavaScript passed: the file is never copied into wasm memory
    /// whole). Other files, and GGUF files, are read whole: use [`ModelFiles::insert`].
    pub fn insert_reader(&mut self, name: impl Into<String>, reader: Box<dyn ReadAt + Send + Sync>) {
        self.files.insert(name.into(), std::sync::Arc::new(FileBytes::At(reader)));
    }

    /// The reader of a file added by [`ModelFiles::insert_reader`].
    pub fn reader(&self, name: &str) -> Option<&dyn ReadAt> {
        match self.files.get(name).map(|f| &**f) {
            Some(FileBytes::At(r)) => Some(&**r),
            _ => None,
        }
    }

    /// Says that `part` of file `name` (a tensor's bytes) has been converted and is not needed
    /// again soon: a mapped file gives those pages back to the kernel (they are read from the
    /// disk again if anything touches them). Bytes in memory stay as they are.
    pub fn release(&self, name: &str, part: &[u8]) {
        // madvise is Unix's; elsewhere a mapped file's pages stay until the map is dropped.
        #[cfg(unix)]
        if let Some(FileBytes::Mapped(map)) = self.files.get(name).map(|f| &**f) {
            let start = (part.as_ptr() as usize).wrapping_sub(map.as_ptr() as usize);
            if start <= map.len() && part.len() <= map.len() - start && !part.is_empty() {
                // SAFETY: DONTNEED on a read-only file mapping only drops the pages from this
                // process; the next read of them faults the same file bytes back in, so the
                // slices borrowed from the map keep their contents. Failing to advise only
                // costs memory, so an error is ignored.
                let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, part.len()) };
            }
        }
        #[cfg(not(unix))]
        let _ = (name, part);
    }

    /// These files plus the ones a GGUF file implies (see [`crate::gguf::companion_files`]);
    /// a plain copy otherwise. Cheap: the weights are shared, not copied.
    pub fn resolved(&self) -> Result<ModelFiles> {
        let mut out = self.clone();
        if self.get(crate::gguf::GGUF_FILE).is_some() {
            for (name, bytes) in crate::gguf::companion_files(self)? {
                out.insert(name, bytes);
            }
        }
        Ok(out)
    }

    /// A 128-bit fingerprint of every file's name and bytes, in hex: what identifies the
    /// vectors a model makes (an index records it). Not cryptographic; fast enough to run over
    /// a 90 MB model at load (~1 GB/s in wasm).
    pub fn digest(&self) -> Result<String> {
        let mut names: Vec<&String> = self.files.keys().collect();
        names.sort();
        let mut h = [0x243f_6a88_85a3_08d3u64, 0x1319_8a2e_0370_7344];
        let mut mix = |w: u64| {
            h[0] = (h[0] ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(31);
            h[1] = (h[1].wrapping_add(w)).wrapping_mul(0xc2b2_ae3d_27d4_eb4f).rotate_left(29) ^ h[0];
        };
        // The same words whether a file is in memory or read through a ReadAt (in parts of a
        // multiple of 8 bytes): the digest does not depend on how the bytes arrived.
        let words = |part: &[u8], mix: &mut dyn FnMut(u64)| {
            let mut words = part.chunks_exact(8);
            for w in &mut words {
                mix(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
            }
            words.remainder().len()
        };
        for name in names {
            mix(name.len() as u64);
            let tail = words(name.as_bytes(), &mut mix);
            finish(&name.as_bytes()[name.len() - tail..], &mut mix);
            match &*self.files[name] {
                FileBytes::At(r) => {
                    let len = r.len();
                    mix(len as u64);
                    let mut last = Vec::new();
                    for start in (0..len).step_by(DIGEST_PART) {
                        let part = r.read_at(start, DIGEST_PART.min(len - start))?;
                        let tail = words(&part, &mut mix);
                        last = part[part.len() - tail..].to_vec();
                    }
                    finish(&last, &mut mix);
                }
                bytes => {
                    let bytes = bytes.as_slice().unwrap_or_default();
                    mix(bytes.len() as u64);
                    let tail = words(bytes, &mut mix);
                    finish(&bytes[bytes.len() - tail..], &mut mix);
                }
            }
        }
        Ok(format!("{:016x}{:016x}", h[0], h[1]))
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The names of the files read, sorted (`wembed pack` writes exactly these).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.files.keys().map(|s| s.as_str()).collect();
        names.sort();
        names
    }

    /// A file's bytes; None for a missing file and for one read through a [`ReadAt`].
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).and_then(|v| v.as_slice())
    }

    pub fn require(&self, name: &str) -> Result<&[u8]> {
        self.get(name)
            .ok_or_else(|| Error::io(format!("{}/{name}", self.origin), "file not found; the model folder needs it"))
    }

    pub(crate) fn json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let Some(bytes) = self.get(name) else { return Ok(None) };
        serde_json::from_slice(bytes).map(Some).map_err(|e| Error::bad_file(format!("{}/{name}", self.origin), e))
    }
}

/// The activation between the two feed-forward matmuls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x * Φ(x)` with the exact erf, as `hidden_act: "gelu"` in transformers.
    GeluErf,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    GeluTanh,
    Relu,
    /// `torch.nn.Tanh`, the default activation of sentence-transformers' `Dense` module.
    Tanh,
    /// `x * sigmoid(x)` (`silu`, `swish`): the gate of SwiGLU (NomicBERT).
    Silu,
}

impl Activation {
    fn from_hf(name: &str) -> Result<Self> {
        match name {
            "gelu" | "gelu_python" => Ok(Activation::GeluErf),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            other => Err(Error::Unsupported(format!(
                "hidden_act `{other}` (supported: gelu, gelu_new, gelu_pytorch_tanh, gelu_fast, relu, silu)"
            ))),
        }
    }
}

#[derive(Deserialize)]
struct RawBertConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    position_embedding_type: Option<String>,
    /// XLM-RoBERTa and MPNet count positions from `pad_token_id + 1`.
    pad_token_id: Option<usize>,
    /// ERNIE: task-type embeddings are added when set.
    #[serde(default)]
    use_task_id: bool,
    task_type_vocab_size: Option<usize>,
    /// MPNet's relative-position buckets.
    relative_attention_num_buckets: Option<usize>,
}
fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

/// The largest value wembed accepts for each size in a config.
const DIM_LIMITS: &[(&str, usize)] = &[
    ("vocab_size", 1 << 22),
    ("hidden_size", 1 << 14),
    ("num_hidden_layers", 256),
    ("num_attention_heads", 1 << 10),
    ("intermediate_size", 1 << 16),
    ("max_position_embeddings", 1 << 17),
    ("type_vocab_size", 1 << 12),
];

/// The members of the BERT family: one forward pass (post-LayerNorm layers, absolute
/// positions), differing in their checkpoint keys, where positions start, and one extra term
/// each. Which one a folder holds is its `config.json` `model_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BertFamily {
    /// `bert`: transformers/models/bert/modeling_bert.py.
    Bert,
    /// `xlm-roberta`: transformers/models/xlm_roberta/modeling_xlm_roberta.py. BERT with
    /// positions counted from `pad_token_id + 1` and (in practice) one token type.
    XlmRoberta,
    /// `ernie`: transformers/models/ernie/modeling_ernie.py. BERT plus task-type embeddings.
    Ernie,
    /// `mpnet`: transformers/models/mpnet/modeling_mpnet.py. Positions from `pad_token_id + 1`,
    /// no token types, a relative-position bias added to every layer's attention scores.
    MPNet,
}

impl BertFamily {
    /// `model_type` values wembed runs, for error messages.
    pub const MODEL_TYPES: &'static str = "bert, xlm-roberta, ernie, mpnet";

    fn from_model_type(t: &str) -> Option<Self> {
        Some(match t {
            "bert" => BertFamily::Bert,
            "xlm-roberta" => BertFamily::XlmRoberta,
            "ernie" => BertFamily::Ernie,
            "mpnet" => BertFamily::MPNet,
            _ => return None,
        })
    }

    /// The transformers `base_model_prefix`: `XForMaskedLM`-style checkpoints nest the encoder
    /// under it (`bert.embeddings…`), bare `XModel` ones do not.
    pub fn prefix(self) -> &'static str {
        match self {
            BertFamily::Bert => "bert",
            BertFamily::XlmRoberta => "roberta",
            BertFamily::Ernie => "ernie",
            BertFamily::MPNet => "mpnet",
        }
    }
}

/// MPNet's relative-position buckets (`MPNetEncoder.relative_position_bucket`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeBuckets {
    pub num_buckets: usize,
    /// Distances from this on share the last bucket; transformers fixes it at 128.
    pub max_distance: usize,
}

/// A BERT-family encoder's shape, from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub family: BertFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    /// 0 for MPNet, which has no token-type table.
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    /// Row of the position table of a text's first token: `pad_token_id + 1` for XLM-RoBERTa
    /// and MPNet (their position ids are a cumulative count of non-pad tokens after
    /// `padding_idx`), 0 for BERT and ERNIE.
    pub position_offset: usize,
    /// ERNIE's `task_type_vocab_size` when `use_task_id` is on.
    pub task_type_vocab_size: Option<usize>,
    /// MPNet's relative-position bias.
    pub relative_buckets: Option<RelativeBuckets>,
}

impl BertConfig {
    /// The longest text the position table takes.
    pub fn max_text_positions(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.position_offset)
    }
}

/// The longest text a rotary model takes here, whatever its config allows (Gemma 3's default is
/// 131,072): its cos/sin tables hold a row per position, `[positions, head_dim]` each, and at
/// head_dim 256 this many rows are 32 MB, a quarter of what WebGPU guarantees one binding.
pub const MAX_ROTARY_POSITIONS: usize = 32_768;

/// A NomicBERT encoder's shape (`model_type: nomic_bert`, nomic-embed-text-v1/v1.5), from
/// `config.json` in either spelling: the published one (GPT-2 names: `n_embd`, `n_layer`,
/// `rotary_emb_base`, `activation_function: swiglu`) or transformers 5's (`hidden_size`, …,
/// `rope_parameters`), which `NomicBertConfig` reads both of.
#[derive(Debug, Clone, PartialEq)]
pub struct NomicConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f32,
    pub rope_theta: f32,
    /// The longest text: rotary positions have no table, so this only sizes the cos/sin table.
    pub max_positions: usize,
}

/// A ModernBERT encoder's shape (`model_type: modernbert`), from `config.json` as published
/// (`global_attn_every_n_layers`, `global_rope_theta`, `local_rope_theta`) or as transformers 5
/// writes it (`layer_types`, `rope_parameters`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModernBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_activation: Activation,
    pub norm_eps: f32,
    pub max_position_embeddings: usize,
    /// Per layer: true for global (full) attention, false for the local sliding window.
    pub global_layers: Vec<bool>,
    pub global_rope_theta: f32,
    pub local_rope_theta: f32,
    /// Local layers attend to keys with `|i - j| <= local_attention / 2`.
    pub local_attention: usize,
}

/// A Gemma 3 text encoder's shape as EmbeddingGemma uses it (`model_type: gemma3_text` with
/// `use_bidirectional_attention`), from `config.json` as published (`rope_theta`,
/// `rope_local_base_freq`, `sliding_window_pattern`) or as transformers 5 writes it
/// (`rope_parameters`, `layer_types`).
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma3Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: each key/value head serves `heads / kv_heads` query heads.
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub hidden_activation: Activation,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    /// Attention scores are scaled by `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`).
    pub query_pre_attn_scalar: f32,
    /// Per layer: true for full attention, false for the sliding window.
    pub global_layers: Vec<bool>,
    pub global_rope_theta: f32,
    pub local_rope_theta: f32,
    /// Sliding layers see keys with `|i - j| <= window`: transformers turns the config's
    /// `sliding_window` into the exclusive bound `sliding_window / 2 + 1` when attention is
    /// bidirectional (Gemma3TextConfig.__post_init__), so this is `sliding_window / 2`.
    pub window: usize,
}

/// `model_type: gemma3_text`. Reference: transformers/models/gemma3/configuration_gemma3.py
/// (Gemma3TextConfig).
fn gemma3_config(raw: &RawJson) -> Result<Gemma3Config> {
    if !raw.flag(&["use_bidirectional_attention"]) {
        return Err(raw.refuse(
            "use_bidirectional_attention",
            "is not true (a causal Gemma 3 decoder; wembed runs the bidirectional encoder of EmbeddingGemma)",
        ));
    }
    if raw.flag(&["attention_bias"]) {
        return Err(raw.refuse("attention_bias", "is true (Gemma 3 checkpoints have no biases)"));
    }
    if raw.get(&["attn_logit_softcapping"]).is_some() {
        return Err(raw.refuse("attn_logit_softcapping", "is set (attention logit soft-capping is not implemented)"));
    }
    if raw.get(&["rope_scaling"]).is_some() {
        return Err(raw.refuse("rope_scaling", "is set (only default rotary positions)"));
    }
    let hidden_size = raw.size(&["hidden_size"], None)?;
    let heads = raw.size(&["num_attention_heads"], None)?;
    let kv_heads = raw.size(&["num_key_value_heads"], Some(heads))?;
    let head_dim = raw.size(&["head_dim"], Some(hidden_size / heads))?;
    if !heads.is_multiple_of(kv_heads) || !head_dim.is_multiple_of(2) {
        return Err(Error::bad_file(
            &raw.file,
            format!("{heads} attention heads over {kv_heads} key/value heads of width {head_dim}"),
        ));
    }
    let num_hidden_layers = raw.size(&["num_hidden_layers"], None)?;
    let global_layers = match raw.get(&["layer_types"]).and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(true),
                Some("sliding_attention") => Ok(false),
                other => Err(raw.refuse("layer_types", &format!("names {other:?}"))),
            })
            .collect::<Result<Vec<bool>>>()?,
        None => {
            let every = raw.size(&["sliding_window_pattern", "_sliding_window_pattern"], Some(6))?;
            (0..num_hidden_layers).map(|i| (i + 1) % every == 0).collect()
        }
    };
    if global_layers.len() != num_hidden_layers {
        return Err(Error::bad_file(
            &raw.file,
            format!("{} layer_types for {num_hidden_layers} layers", global_layers.len()),
        ));
    }
    let rope = |kind: &str, old: &str, default: f64| -> Result<f32> {
        let params = raw.get(&["rope_parameters"]).and_then(|r| r.get(kind));
        if let Some(t) = params.and_then(|p| p.get("rope_type")).and_then(|t| t.as_str())
            && t != "default"
        {
            return Err(raw.refuse("rope_parameters", &format!("has rope_type `{t}` (only `default`)")));
        }
        match params.and_then(|p| p.get("rope_theta")).and_then(|t| t.as_f64()) {
            Some(t) => raw.float(&[&format!("rope_parameters.{kind}.rope_theta")], t),
            None => raw.float(&[old], default),
        }
    };
    let act = raw.string(&["hidden_activation", "hidden_act"]).unwrap_or("gelu_pytorch_tanh");
    Ok(Gemma3Config {
        vocab_size: raw.size(&["vocab_size"], None)?,
        hidden_size,
        intermediate_size: raw.size(&["intermediate_size"], None)?,
        num_hidden_layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        hidden_activation: Activation::from_hf(act)?,
        max_position_embeddings: raw.size(&["max_position_embeddings"], Some(131_072))?,
        rms_norm_eps: raw.float(&["rms_norm_eps"], 1e-6)?,
        query_pre_attn_scalar: raw.float(&["query_pre_attn_scalar"], 256.0)?,
        global_layers,
        global_rope_theta: rope("full_attention", "rope_theta", 1_000_000.0)?,
        local_rope_theta: rope("sliding_attention", "rope_local_base_freq", 10_000.0)?,
        window: raw.size(&["sliding_window"], Some(4096))? / 2,
    })
}

/// Which decoder family a [`DecoderConfig`] comes from (its `model_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderFamily {
    /// `qwen3`: per-head RMSNorm of q and k; `attention_bias` puts biases on q, k, v and o.
    Qwen3,
    /// `qwen2`: biases on q, k and v (never on o), no q/k norm.
    Qwen2,
    /// `mistral`: no biases, no q/k norm, a sliding window on every layer when set.
    Mistral,
}

/// A decoder LLM used as an embedder (Qwen3-Embedding, gte-Qwen2, E5-mistral): pre-norm RMSNorm
/// layers, rotary positions, causal grouped-query attention, a SwiGLU feed-forward layer and a
/// final norm, from `config.json` as published (`rope_theta`) or as transformers 5 writes it
/// (`rope_parameters`).
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    pub family: DecoderFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    /// Grouped-query attention: each key/value head serves `heads / kv_heads` query heads.
    pub num_key_value_heads: usize,
    /// Need not be `hidden_size / heads` (Qwen3).
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f32,
    pub rope_theta: f32,
    /// Per-head RMSNorm of q and k after their projections (Qwen3's `q_norm`, `k_norm`).
    pub qk_norm: bool,
    /// Biases on `q_proj`, `k_proj`, `v_proj`.
    pub qkv_bias: bool,
    /// A bias on `o_proj`.
    pub o_bias: bool,
    /// Per layer: true where the layer attends within the sliding window only.
    pub sliding_layers: Vec<bool>,
    /// Sliding layers see keys `i - window <= j <= i`: transformers' mask keeps
    /// `kv_idx > q_idx - sliding_window` (masking_utils.sliding_window_overlay), so this is
    /// `sliding_window - 1`.
    pub window: usize,
}

/// `model_type: qwen3`, `qwen2`, `mistral`. Reference: transformers/models/qwen3/configuration_qwen3.py,
/// qwen2/configuration_qwen2.py, mistral/configuration_mistral.py.
fn decoder_config(raw: &RawJson, family: DecoderFamily) -> Result<DecoderConfig> {
    let act = raw.string(&["hidden_act"]).unwrap_or("silu");
    if act != "silu" {
        return Err(raw.refuse("hidden_act", &format!("is `{act}` (these decoders gate with silu)")));
    }
    if let Some(t) = raw.get(&["rope_parameters"]).and_then(|r| r.get("rope_type")).and_then(|t| t.as_str())
        && t != "default"
    {
        return Err(raw.refuse("rope_parameters.rope_type", &format!("is `{t}` (only `default`)")));
    }
    if let Some(s) = raw.get(&["rope_scaling"])
        && s.get("rope_type").or(s.get("type")).and_then(|t| t.as_str()) != Some("default")
    {
        return Err(raw.refuse("rope_scaling", "is set (only default rotary positions)"));
    }
    if raw.flag(&["mlp_bias"]) {
        return Err(raw.refuse("mlp_bias", "is true (these decoders' feed-forward layers have no biases)"));
    }
    // transformers runs these classes causally whatever the config says; a checkpoint asking for
    // bidirectional attention was trained for code wembed does not mirror.
    if raw.flag(&["use_bidirectional_attention"]) || raw.get(&["is_causal"]).and_then(|v| v.as_bool()) == Some(false) {
        return Err(raw.refuse(
            "use_bidirectional_attention / is_causal",
            "asks for bidirectional attention (wembed runs these decoders causally, as transformers does)",
        ));
    }
    let hidden_size = raw.size(&["hidden_size"], None)?;
    let heads = raw.size(&["num_attention_heads"], None)?;
    let kv_heads = raw.size(&["num_key_value_heads"], Some(heads))?;
    let head_dim = raw.size(&["head_dim"], Some(hidden_size / heads))?;
    if !heads.is_multiple_of(kv_heads) || !head_dim.is_multiple_of(2) {
        return Err(Error::bad_file(
            &raw.file,
            format!("{heads} attention heads over {kv_heads} key/value heads of width {head_dim}"),
        ));
    }
    let num_hidden_layers = raw.size(&["num_hidden_layers"], None)?;
    // Qwen: `sliding_window` counts only with `use_sliding_window`, from layer
    // `max_window_layers` on (unless `layer_types` says); Mistral: on every layer when set.
    let sliding_window = match family {
        DecoderFamily::Mistral => {
            raw.get(&["sliding_window"]).map(|_| raw.size(&["sliding_window"], None)).transpose()?
        }
        _ if raw.flag(&["use_sliding_window"]) => Some(raw.size(&["sliding_window"], Some(4096))?),
        _ => None,
    };
    let sliding_layers = match raw.get(&["layer_types"]).and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(false),
                // Without a window transformers runs a sliding layer on the whole text.
                Some("sliding_attention") => Ok(sliding_window.is_some()),
                other => Err(raw.refuse("layer_types", &format!("names {other:?}"))),
            })
            .collect::<Result<Vec<bool>>>()?,
        None => {
            let from = match family {
                DecoderFamily::Mistral => 0,
                _ => raw.get(&["max_window_layers"]).and_then(|v| v.as_u64()).unwrap_or(28) as usize,
            };
            (0..num_hidden_layers).map(|i| sliding_window.is_some() && i >= from).collect()
        }
    };
    if sliding_layers.len() != num_hidden_layers {
        return Err(Error::bad_file(
            &raw.file,
            format!("{} layer_types for {num_hidden_layers} layers", sliding_layers.len()),
        ));
    }
    let theta = raw.get(&["rope_parameters"]).and_then(|r| r.get("rope_theta")).and_then(|t| t.as_f64());
    let rope_theta = match theta {
        Some(t) => raw.float(&["rope_parameters.rope_theta"], t)?,
        None => raw.float(&["rope_theta"], 10_000.0)?,
    };
    let attention_bias = raw.flag(&["attention_bias"]);
    Ok(DecoderConfig {
        family,
        vocab_size: raw.size(&["vocab_size"], None)?,
        hidden_size,
        intermediate_size: raw.size(&["intermediate_size"], None)?,
        num_hidden_layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        head_dim,
        max_position_embeddings: raw.size(&["max_position_embeddings"], Some(32_768))?,
        rms_norm_eps: raw.float(&["rms_norm_eps"], 1e-6)?,
        rope_theta,
        qk_norm: family == DecoderFamily::Qwen3,
        qkv_bias: match family {
            DecoderFamily::Qwen3 => attention_bias,
            DecoderFamily::Qwen2 => true,
            DecoderFamily::Mistral => false,
        },
        o_bias: family == DecoderFamily::Qwen3 && attention_bias,
        sliding_layers,
        window: sliding_window.map_or(0, |w| w - 1),
    })
}

/// Model families wembed runs.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Bert(BertConfig),
    Nomic(NomicConfig),
    ModernBert(ModernBertConfig),
    Gemma3(Gemma3Config),
    /// Qwen3, Qwen2, Mistral.
    Decoder(DecoderConfig),
}

/// `config.json` as JSON, read field by field for the families whose files come in more than
/// one spelling.
struct RawJson<'a> {
    value: &'a serde_json::Value,
    file: String,
}

impl RawJson<'_> {
    fn get(&self, names: &[&str]) -> Option<&serde_json::Value> {
        names.iter().find_map(|n| self.value.get(*n).filter(|v| !v.is_null()))
    }

    /// A size under the first of `names` present, checked against [`DIM_LIMITS`] (under the
    /// first name).
    fn size(&self, names: &[&str], default: Option<usize>) -> Result<usize> {
        let v = match self.get(names) {
            Some(v) => v
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::bad_file(&self.file, format!("`{}` is not a non-negative integer", names[0])))?,
            None => default.ok_or_else(|| Error::bad_file(&self.file, format!("no `{}`", names[0])))?,
        };
        let limit_name = names.iter().find(|n| DIM_LIMITS.iter().any(|(f, _)| f == *n)).unwrap_or(&names[0]);
        let most = DIM_LIMITS.iter().find(|(f, _)| f == limit_name).map_or(1 << 20, |(_, m)| *m);
        if v == 0 || v > most {
            return Err(Error::bad_file(&self.file, format!("`{}` is {v}; wembed takes 1 to {most}", names[0])));
        }
        Ok(v)
    }

    fn float(&self, names: &[&str], default: f64) -> Result<f32> {
        let v = match self.get(names) {
            Some(v) => {
                v.as_f64().ok_or_else(|| Error::bad_file(&self.file, format!("`{}` is not a number", names[0])))?
            }
            None => default,
        };
        if !(v.is_finite() && v > 0.0 && (v as f32) > 0.0) {
            return Err(Error::bad_file(&self.file, format!("`{}` is {v}; it must be a positive number", names[0])));
        }
        Ok(v as f32)
    }

    fn flag(&self, names: &[&str]) -> bool {
        self.get(names).and_then(|v| v.as_bool()).unwrap_or(false)
    }

    fn string(&self, names: &[&str]) -> Option<&str> {
        self.get(names).and_then(|v| v.as_str())
    }

    /// Refuses what this family's forward pass does not compute, naming the field.
    fn refuse(&self, field: &str, why: &str) -> Error {
        Error::Unsupported(format!("`{field}` {why} in {}", self.file))
    }

    fn heads_divide(&self, hidden: usize, heads: usize) -> Result<()> {
        if !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return Err(Error::bad_file(
                &self.file,
                format!("hidden size {hidden} is not {heads} heads of an even width (rotary positions need one)"),
            ));
        }
        Ok(())
    }
}

/// `model_type: nomic_bert`. Reference: transformers/models/nomic_bert/configuration_nomic_bert.py
/// and the published nomic-embed-text-v1.5 config.json.
fn nomic_config(raw: &RawJson) -> Result<NomicConfig> {
    // What transformers' NomicBertModel computes: SwiGLU without biases, post-norm, full
    // rotary positions in rotate-half pairs. The nomic code's other options are refused.
    let act = raw.string(&["activation_function"]).map(|a| if a == "swiglu" { "silu" } else { a });
    let act = act.or(raw.string(&["hidden_act"])).unwrap_or("silu");
    if act != "silu" {
        return Err(raw.refuse("activation_function", &format!("`{act}` (wembed runs NomicBERT with swiglu)")));
    }
    for field in ["qkv_proj_bias", "mlp_fc1_bias", "mlp_fc2_bias", "prenorm", "rotary_emb_interleaved", "use_rms_norm"]
    {
        if raw.flag(&[field]) {
            return Err(raw.refuse(field, "is true (wembed runs the nomic-embed-text layout, where it is false)"));
        }
    }
    if let Some(f) = raw.get(&["rotary_emb_fraction"]).and_then(|v| v.as_f64())
        && f != 1.0
    {
        return Err(raw.refuse("rotary_emb_fraction", &format!("is {f} (wembed rotates whole heads: 1.0)")));
    }
    if raw.get(&["rotary_scaling_factor"]).is_some() {
        return Err(raw.refuse("rotary_scaling_factor", "is set (dynamic NTK scaling is not implemented)"));
    }
    if let Some(t) = raw.get(&["rope_parameters"]).and_then(|r| r.get("rope_type")).and_then(|t| t.as_str())
        && t != "default"
    {
        return Err(raw.refuse("rope_parameters.rope_type", &format!("is `{t}` (only `default`)")));
    }
    let hidden_size = raw.size(&["hidden_size", "n_embd"], None)?;
    let num_attention_heads = raw.size(&["num_attention_heads", "n_head"], None)?;
    raw.heads_divide(hidden_size, num_attention_heads)?;
    let theta = raw.get(&["rope_parameters"]).and_then(|r| r.get("rope_theta")).and_then(|t| t.as_f64());
    let rope_theta = match theta {
        Some(t) => raw.float(&["rope_parameters.rope_theta"], t)?,
        None => raw.float(&["rotary_emb_base"], 1000.0)?,
    };
    Ok(NomicConfig {
        vocab_size: raw.size(&["vocab_size"], None)?,
        hidden_size,
        num_hidden_layers: raw.size(&["num_hidden_layers", "n_layer"], None)?,
        num_attention_heads,
        intermediate_size: raw.size(&["intermediate_size", "n_inner"], Some(4 * hidden_size))?,
        type_vocab_size: raw.size(&["type_vocab_size"], Some(2))?,
        layer_norm_eps: raw.float(&["layer_norm_eps", "layer_norm_epsilon"], 1e-12)?,
        rope_theta,
        // nomic-embed-text-v1.5 publishes n_positions 8192 (it was trained at 2048 and
        // extends); transformers 5 writes max_position_embeddings.
        max_positions: raw.size(&["max_position_embeddings", "n_positions"], Some(2048))?,
    })
}

/// `model_type: modernbert`. Reference: transformers/models/modernbert/configuration_modernbert.py.
fn modernbert_config(raw: &RawJson) -> Result<ModernBertConfig> {
    for field in ["attention_bias", "mlp_bias", "norm_bias"] {
        if raw.flag(&[field]) {
            return Err(raw.refuse(field, "is true (ModernBERT checkpoints have no biases; wembed runs those)"));
        }
    }
    let hidden_size = raw.size(&["hidden_size"], None)?;
    let num_attention_heads = raw.size(&["num_attention_heads"], None)?;
    raw.heads_divide(hidden_size, num_attention_heads)?;
    let num_hidden_layers = raw.size(&["num_hidden_layers"], None)?;
    let global_layers = match raw.get(&["layer_types"]).and_then(|v| v.as_array()) {
        Some(types) => types
            .iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(true),
                Some("sliding_attention") => Ok(false),
                other => Err(raw.refuse("layer_types", &format!("names {other:?}"))),
            })
            .collect::<Result<Vec<bool>>>()?,
        None => {
            let every = raw.size(&["global_attn_every_n_layers"], Some(3))?;
            (0..num_hidden_layers).map(|i| i % every == 0).collect()
        }
    };
    if global_layers.len() != num_hidden_layers {
        return Err(Error::bad_file(
            &raw.file,
            format!("{} layer_types for {num_hidden_layers} layers", global_layers.len()),
        ));
    }
    let rope = |kind: &str, old: &str, default: f64| -> Result<f32> {
        let params = raw.get(&["rope_parameters"]).and_then(|r| r.get(kind));
        if let Some(t) = params.and_then(|p| p.get("rope_type")).and_then(|t| t.as_str())
            && t != "default"
        {
            return Err(raw.refuse("rope_parameters", &format!("has rope_type `{t}` (only `default`)")));
        }
        match params.and_then(|p| p.get("rope_theta")).and_then(|t| t.as_f64()) {
            Some(t) => raw.float(&[&format!("rope_parameters.{kind}.rope_theta")], t),
            None => raw.float(&[old], default),
        }
    };
    let act = raw.string(&["hidden_activation"]).unwrap_or("gelu");
    Ok(ModernBertConfig {
        vocab_size: raw.size(&["vocab_size"], None)?,
        hidden_size,
        num_hidden_layers,
        num_attention_heads,
        intermediate_size: raw.size(&["intermediate_size"], None)?,
        hidden_activation: Activation::from_hf(act)?,
        norm_eps: raw.float(&["norm_eps"], 1e-5)?,
        max_position_embeddings: raw.size(&["max_position_embeddings"], Some(8192))?,
        global_layers,
        global_rope_theta: rope("full_attention", "global_rope_theta", 160_000.0)?,
        local_rope_theta: rope("sliding_attention", "local_rope_theta", 10_000.0)?,
        local_attention: raw.size(&["local_attention"], Some(128))?,
    })
}

impl ModelConfig {
    pub fn from_files(files: &ModelFiles) -> Result<Self> {
        let name = "config.json";
        let file = || format!("{}/{name}", files.origin());
        let bytes = files.require(name)?;
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| Error::bad_file(file(), e))?;
        let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("").to_string();
        let model_type = model_type.as_str();
        match model_type {
            "nomic_bert" => return Ok(ModelConfig::Nomic(nomic_config(&RawJson { value: &value, file: file() })?)),
            "modernbert" => {
                return Ok(ModelConfig::ModernBert(modernbert_config(&RawJson { value: &value, file: file() })?));
            }
            "gemma3_text" => return Ok(ModelConfig::Gemma3(gemma3_config(&RawJson { value: &value, file: file() })?)),
            "qwen3" | "qwen2" | "mistral" => {
                let family = match model_type {
                    "qwen3" => DecoderFamily::Qwen3,
                    "qwen2" => DecoderFamily::Qwen2,
                    _ => DecoderFamily::Mistral,
                };
                return Ok(ModelConfig::Decoder(decoder_config(&RawJson { value: &value, file: file() }, family)?));
            }
            _ => {}
        }
        let family = match BertFamily::from_model_type(model_type) {
            Some(f) => f,
            None if model_type.is_empty() => return Err(Error::bad_file(file(), "no `model_type` field")),
            None => {
                let arch = value.get("architectures").and_then(|a| a.get(0)).and_then(|a| a.as_str());
                let arch = arch.map(|a| format!(" ({a})")).unwrap_or_default();
                return Err(Error::Unsupported(format!(
                    "model_type `{model_type}`{arch} in {}; wembed runs: {}, nomic_bert, modernbert, gemma3_text, qwen3, qwen2, mistral",
                    file(),
                    BertFamily::MODEL_TYPES
                )));
            }
        };
        let raw: RawBertConfig = serde_json::from_value(value).map_err(|e| Error::bad_file(file(), e))?;
        debug_assert_eq!(raw.model_type.as_deref(), Some(model_type));
        if let Some(p) = raw.position_embedding_type.as_deref()
            && p != "absolute"
        {
            return Err(Error::Unsupported(format!("position_embedding_type `{p}` in {} (only `absolute`)", file())));
        }
        let dims = [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("max_position_embeddings", raw.max_position_embeddings),
            ("type_vocab_size", raw.type_vocab_size),
        ];
        for (field, v) in dims {
            if v == 0 {
                return Err(Error::bad_file(file(), format!("`{field}` is 0")));
            }
            // Bounded before anything is allocated from them. Far above any published
            // encoder (the largest vocabularies are ~256k, widths 8k, depths 100).
            let most = DIM_LIMITS.iter().find(|(f, _)| *f == field).map_or(usize::MAX, |(_, m)| *m);
            if v > most {
                return Err(Error::bad_file(file(), format!("`{field}` is {v}; wembed takes at most {most}")));
            }
        }
        if !(raw.layer_norm_eps.is_finite() && raw.layer_norm_eps > 0.0 && (raw.layer_norm_eps as f32) > 0.0) {
            return Err(Error::bad_file(
                file(),
                format!("`layer_norm_eps` is {}; it must be a positive number", raw.layer_norm_eps),
            ));
        }
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(Error::bad_file(
                file(),
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    raw.hidden_size, raw.num_attention_heads
                ),
            ));
        }
        let position_offset = match family {
            BertFamily::Bert | BertFamily::Ernie => 0,
            // transformers' create_position_ids_from_input_ids: padding_idx + 1 onwards.
            BertFamily::XlmRoberta | BertFamily::MPNet => {
                let pad = raw.pad_token_id.ok_or_else(|| {
                    Error::bad_file(
                        file(),
                        format!("no `pad_token_id` (a {model_type} model counts positions from it)"),
                    )
                })?;
                pad + 1
            }
        };
        if position_offset >= raw.max_position_embeddings {
            return Err(Error::bad_file(
                file(),
                format!("positions start at {position_offset}, past max_position_embeddings"),
            ));
        }
        let task_type_vocab_size = match (family, raw.use_task_id) {
            (BertFamily::Ernie, true) => match raw.task_type_vocab_size {
                Some(n) if (1..=1 << 12).contains(&n) => Some(n),
                other => {
                    return Err(Error::bad_file(
                        file(),
                        format!("`task_type_vocab_size` is {other:?} with use_task_id"),
                    ));
                }
            },
            _ => None,
        };
        let relative_buckets = match family {
            BertFamily::MPNet => {
                let n = raw.relative_attention_num_buckets.unwrap_or(32);
                // MPNetEncoder.compute_position_bias calls relative_position_bucket with its
                // default of 32 buckets whatever the config says; a table of another size
                // would be read differently there than here.
                if n != 32 {
                    return Err(Error::Unsupported(format!(
                        "relative_attention_num_buckets {n} in {} (MPNet buckets positions into 32)",
                        file()
                    )));
                }
                Some(RelativeBuckets { num_buckets: n, max_distance: 128 })
            }
            _ => None,
        };
        // MPNet has no token-type table; its tokenizer gives type id 0 everywhere.
        let type_vocab_size = if family == BertFamily::MPNet { 0 } else { raw.type_vocab_size };
        Ok(ModelConfig::Bert(BertConfig {
            family,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act: Activation::from_hf(&raw.hidden_act)?,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps as f32,
            position_offset,
            task_type_vocab_size,
            relative_buckets,
        }))
    }

    /// Whether the model's activations stay well inside f16's range (±65,504), so that a
    /// backend may multiply them in f16 ([`crate::backend::Backend::keep_f32_arithmetic`]):
    /// the BERT-style encoders, which transformers.js and others ship and run in fp16. Not
    /// Gemma 3 (EmbeddingGemma's card: its activations do not support float16) nor the decoder
    /// LLMs (Qwen, Mistral), whose "massive activations" reach thousands on a few channels
    /// (Sun et al. 2024), where a sum of 16 products in f16 can overflow.
    pub fn activations_fit_f16(&self) -> bool {
        match self {
            ModelConfig::Bert(_) | ModelConfig::Nomic(_) | ModelConfig::ModernBert(_) => true,
            ModelConfig::Gemma3(_) | ModelConfig::Decoder(_) => false,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => c.hidden_size,
            ModelConfig::Nomic(c) => c.hidden_size,
            ModelConfig::ModernBert(c) => c.hidden_size,
            ModelConfig::Gemma3(c) => c.hidden_size,
            ModelConfig::Decoder(c) => c.hidden_size,
        }
    }

    /// Floats per token of the widest activation of a forward pass (the stacked q/k/v or the
    /// feed-forward's inner layer, both halves of a gated one): what bounds a batch on a GPU.
    pub fn widest_activation(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => (3 * c.hidden_size).max(c.intermediate_size),
            ModelConfig::Nomic(c) => (3 * c.hidden_size).max(2 * c.intermediate_size),
            ModelConfig::ModernBert(c) => (3 * c.hidden_size).max(2 * c.intermediate_size),
            // q, k and v of the grouped-query heads, or both GLU halves.
            ModelConfig::Gemma3(c) => {
                ((c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim).max(2 * c.intermediate_size)
            }
            ModelConfig::Decoder(c) => {
                ((c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim).max(2 * c.intermediate_size)
            }
        }
    }

    pub fn max_positions(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => c.max_text_positions(),
            ModelConfig::Nomic(c) => c.max_positions.min(MAX_ROTARY_POSITIONS),
            ModelConfig::ModernBert(c) => c.max_position_embeddings.min(MAX_ROTARY_POSITIONS),
            ModelConfig::Gemma3(c) => c.max_position_embeddings.min(MAX_ROTARY_POSITIONS),
            ModelConfig::Decoder(c) => c.max_position_embeddings.min(MAX_ROTARY_POSITIONS),
        }
    }
}

/// One way of turning token vectors into a sentence vector. Several may be configured; their
/// results are concatenated in this order, as sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    Cls,
    Max,
    Mean,
    MeanSqrtLen,
    LastToken,
}

/// `1_Pooling/config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolingConfig {
    pub modes: Vec<PoolMode>,
    /// When false, prompt tokens are left out of the pooling (INSTRUCTOR-style models).
    pub include_prompt: bool,
}

#[derive(Deserialize, Default)]
struct RawPooling {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
    #[serde(default = "yes")]
    include_prompt: bool,
}
fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize, Default)]
struct RawSbertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
    /// sentence-transformers 5.x/6.x: the inputs the Transformer module takes and how
    /// (`{"text": {...}, "message": {"method": "forward", ..., "format": "flat"}}`).
    modality_config: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Deserialize, Default)]
struct RawStConfig {
    #[serde(default)]
    prompts: BTreeMap<String, String>,
    default_prompt_name: Option<String>,
    truncate_dim: Option<usize>,
}

/// A sentence-transformers `Dense` module (`N_Dense/config.json`): `act(x · wᵀ + b)` on the
/// pooled vector, weights in `N_Dense/model.safetensors` as `linear.weight` / `linear.bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseConfig {
    /// The module's folder (`2_Dense`).
    pub path: String,
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    /// None: `torch.nn.modules.linear.Identity`.
    pub activation: Option<Activation>,
}

#[derive(Deserialize)]
struct RawDense {
    in_features: usize,
    out_features: usize,
    #[serde(default = "yes")]
    bias: bool,
    activation_function: Option<String>,
    #[serde(default)]
    use_residual: bool,
    module_input_name: Option<String>,
    module_output_name: Option<String>,
}

fn dense_from_raw(raw: RawDense, path: &str, file: &str, width: usize) -> Result<DenseConfig> {
    if raw.in_features != width {
        return Err(Error::bad_file(
            file,
            format!("in_features {} after a module with {width} outputs", raw.in_features),
        ));
    }
    if raw.out_features == 0 || raw.out_features > 1 << 16 {
        return Err(Error::bad_file(file, format!("out_features {}", raw.out_features)));
    }
    if raw.use_residual {
        return Err(Error::Unsupported(format!("a Dense module with use_residual in {file}")));
    }
    for name in [&raw.module_input_name, &raw.module_output_name].into_iter().flatten() {
        if name != "sentence_embedding" {
            return Err(Error::Unsupported(format!("a Dense module on `{name}` in {file} (only sentence_embedding)")));
        }
    }
    // sentence-transformers defaults to Tanh when the config names none.
    let name = raw.activation_function.as_deref().unwrap_or("torch.nn.modules.activation.Tanh");
    let activation = match name.rsplit('.').next().unwrap_or(name) {
        "Identity" => None,
        "Tanh" => Some(Activation::Tanh),
        "ReLU" => Some(Activation::Relu),
        "GELU" => Some(Activation::GeluErf),
        _ => {
            return Err(Error::Unsupported(format!(
                "Dense activation `{name}` in {file} (wembed runs Identity, Tanh, ReLU, GELU)"
            )));
        }
    };
    Ok(DenseConfig {
        path: path.to_string(),
        in_features: raw.in_features,
        out_features: raw.out_features,
        bias: raw.bias,
        activation,
    })
}

/// What sentence-transformers does around the encoder: truncation, pooling, normalization and
/// prompts, read from the model's own files.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceConfig {
    pub max_seq_length: usize,
    pub do_lower_case: bool,
    pub pooling: PoolingConfig,
    pub normalize: bool,
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
    /// Matryoshka models: sentence-transformers keeps the first `truncate_dim` values of each
    /// vector, after the Normalize module (so a cut vector is not renormalized).
    pub truncate_dim: Option<usize>,
    /// `Dense` modules after pooling, in order (before Normalize).
    pub dense: Vec<DenseConfig>,
}

impl SentenceConfig {
    pub fn from_files(files: &ModelFiles, model: &ModelConfig) -> Result<Self> {
        let origin = files.origin();
        let modules: Option<Vec<ModuleEntry>> = files.json("modules.json")?;
        let mut pooling: Option<PoolingConfig> = None;
        let mut normalize = false;
        let mut dense: Vec<DenseConfig> = vec![];
        if let Some(modules) = modules {
            for m in &modules {
                let short = m.kind.rsplit('.').next().unwrap_or(&m.kind);
                match short {
                    "Transformer" => {}
                    "Pooling" => {
                        let name = format!("{}/config.json", m.path);
                        let raw: RawPooling = files.json(&name)?.ok_or_else(|| {
                            Error::io(format!("{origin}/{name}"), "file not found; modules.json names it")
                        })?;
                        pooling = Some(pooling_from_raw(raw, &format!("{origin}/{name}"))?);
                    }
                    "Normalize" => normalize = true,
                    "Dense" => {
                        let name = format!("{}/config.json", m.path);
                        let file = format!("{origin}/{name}");
                        let Some(pool) = &pooling else {
                            return Err(Error::Unsupported(format!(
                                "a Dense module before Pooling in {origin}/modules.json"
                            )));
                        };
                        if normalize {
                            return Err(Error::Unsupported(format!(
                                "a Dense module after Normalize in {origin}/modules.json"
                            )));
                        }
                        let raw: RawDense = files
                            .json(&name)?
                            .ok_or_else(|| Error::io(&file, "file not found; modules.json names it"))?;
                        let width = dense.last().map_or(pool.modes.len() * model.hidden_size(), |d| d.out_features);
                        dense.push(dense_from_raw(raw, &m.path, &file, width)?);
                    }
                    _ => {
                        return Err(Error::Unsupported(format!(
                            "sentence-transformers module `{}` in {origin}/modules.json \
                             (wembed runs Transformer, Pooling, Dense, Normalize)",
                            m.kind
                        )));
                    }
                }
            }
        }
        // A plain Hugging Face model without sentence-transformers files: sentence-transformers
        // itself falls back to mean pooling, so do we.
        let pooling = pooling.unwrap_or(PoolingConfig { modes: vec![PoolMode::Mean], include_prompt: true });
        let sbert: RawSbertConfig = files.json("sentence_bert_config.json")?.unwrap_or_default();
        // A string is the `text` modality to sentence-transformers; a model whose Transformer
        // module does not take `text` but takes `message` gets every string as a chat message,
        // through the tokenizer's chat template (base/modality.py, InputFormatter), which
        // wembed does not run. Taking both, strings go the text path, as here.
        if let Some(modalities) = &sbert.modality_config
            && !modalities.contains_key("text")
        {
            let names: Vec<&str> = modalities.keys().map(String::as_str).collect();
            let why = if modalities.contains_key("message") {
                "texts become chat messages through the tokenizer's chat template, which wembed does not apply"
            } else {
                "wembed embeds text only"
            };
            return Err(Error::Unsupported(format!(
                "input modalities {names:?} in {origin}/sentence_bert_config.json (modality_config has no `text`): {why}"
            )));
        }
        let max_positions = model.max_positions();
        let max_seq_length = sbert.max_seq_length.unwrap_or(max_positions).min(max_positions);
        if max_seq_length < 2 {
            return Err(Error::bad_file(
                format!("{origin}/sentence_bert_config.json"),
                format!("max_seq_length {max_seq_length} leaves no room for text"),
            ));
        }
        let st: RawStConfig = files.json("config_sentence_transformers.json")?.unwrap_or_default();
        let width = dense.last().map_or(pooling.modes.len() * model.hidden_size(), |d| d.out_features);
        if let Some(t) = st.truncate_dim
            && !(1..=width).contains(&t)
        {
            return Err(Error::bad_file(
                format!("{origin}/config_sentence_transformers.json"),
                format!("truncate_dim {t}; the model's vectors have {width} values"),
            ));
        }
        if let Some(name) = &st.default_prompt_name
            && !st.prompts.contains_key(name)
        {
            return Err(Error::bad_file(
                format!("{origin}/config_sentence_transformers.json"),
                format!("default_prompt_name `{name}` is not among the prompts"),
            ));
        }
        Ok(SentenceConfig {
            max_seq_length,
            do_lower_case: sbert.do_lower_case,
            pooling,
            normalize,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            truncate_dim: st.truncate_dim,
            dense,
        })
    }
}

fn pooling_from_raw(raw: RawPooling, file: &str) -> Result<PoolingConfig> {
    if raw.pooling_mode_weightedmean_tokens {
        return Err(Error::Unsupported(format!(
            "weighted-mean pooling in {file} (wembed pools with cls, max, mean, mean_sqrt_len, lasttoken)"
        )));
    }
    let mut modes = Vec::new();
    // sentence-transformers concatenates in this fixed order.
    for (on, mode) in [
        (raw.pooling_mode_cls_token, PoolMode::Cls),
        (raw.pooling_mode_max_tokens, PoolMode::Max),
        (raw.pooling_mode_mean_tokens, PoolMode::Mean),
        (raw.pooling_mode_mean_sqrt_len_tokens, PoolMode::MeanSqrtLen),
        (raw.pooling_mode_lasttoken, PoolMode::LastToken),
    ] {
        if on {
            modes.push(mode);
        }
    }
    if modes.is_empty() {
        return Err(Error::bad_file(file, "no pooling mode is switched on"));
    }
    Ok(PoolingConfig { modes, include_prompt: raw.include_prompt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_of(json: &str) -> Result<ModelConfig> {
        let mut files = ModelFiles::from_map("test", HashMap::new());
        files.insert("config.json", json.as_bytes().to_vec());
        ModelConfig::from_files(&files)
    }

    /// sentence-transformers' `modality_config` in sentence_bert_config.json: text alone or
    /// beside `message` loads; `message` without `text` (a chat template on every string) is
    /// UNSUPPORTED by name.
    #[test]
    fn a_chat_message_modality_without_text_is_unsupported_by_name() {
        let forward = r#"{"method": "forward", "method_output_name": "last_hidden_state"}"#;
        let message = r#"{"method": "forward", "method_output_name": "last_hidden_state", "format": "flat"}"#;
        let sbert = |modalities: &str| {
            let mut files = ModelFiles::from_map("test", HashMap::new());
            files.insert(
                "config.json",
                br#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 8,
                "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16,
                "max_position_embeddings": 16}"#
                    .to_vec(),
            );
            let json = format!(
                r#"{{"transformer_task": "feature-extraction", "modality_config": {modalities},
                "module_output_name": "token_embeddings", "max_seq_length": 12}}"#
            );
            files.insert("sentence_bert_config.json", json.into_bytes());
            let model = ModelConfig::from_files(&files).unwrap();
            SentenceConfig::from_files(&files, &model)
        };
        for ok in [format!(r#"{{"text": {forward}}}"#), format!(r#"{{"text": {forward}, "message": {message}}}"#)] {
            assert_eq!(sbert(&ok).unwrap().max_seq_length, 12, "{ok}");
        }
        let err = sbert(&format!(r#"{{"message": {message}}}"#)).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.code(), "UNSUPPORTED", "{msg}");
        for w in ["\"message\"", "chat template", "sentence_bert_config.json"] {
            assert!(msg.contains(w), "{msg:?} lacks {w:?}");
        }
        let err = sbert(&format!(r#"{{"image": {forward}}}"#)).unwrap_err().to_string();
        assert!(err.contains("\"image\"") && err.contains("text only"), "{err}");
    }

    /// nomic-ai/nomic-embed-text-v1.5's config.json as published (GPT-2 style names, the
    /// nomic code's options), which transformers 5 reads too.
    const NOMIC_V15: &str = r#"{"activation_function": "swiglu", "architectures": ["NomicBertModel"],
        "layer_norm_epsilon": 1e-12, "max_trained_positions": 2048, "mlp_fc1_bias": false,
        "mlp_fc2_bias": false, "model_type": "nomic_bert", "n_embd": 768, "n_head": 12, "n_inner": 3072,
        "n_layer": 12, "n_positions": 8192, "prenorm": false, "qkv_proj_bias": false, "rotary_emb_base": 1000,
        "rotary_emb_fraction": 1.0, "rotary_emb_interleaved": false, "rotary_emb_scale_base": null,
        "rotary_scaling_factor": null, "type_vocab_size": 2, "use_rms_norm": false, "vocab_size": 30528}"#;

    /// Alibaba-NLP/gte-modernbert-base's config.json as published (transformers 4.48 names).
    const GTE_MODERNBERT: &str = r#"{"architectures": ["ModernBertModel"], "attention_bias": false,
        "global_attn_every_n_layers": 3, "global_rope_theta": 160000.0, "hidden_activation": "gelu",
        "hidden_size": 768, "intermediate_size": 1152, "layer_norm_eps": 1e-05, "local_attention": 128,
        "local_rope_theta": 10000.0, "max_position_embeddings": 8192, "mlp_bias": false,
        "model_type": "modernbert", "norm_bias": false, "norm_eps": 1e-05, "num_attention_heads": 12,
        "num_hidden_layers": 22, "pad_token_id": 50283, "vocab_size": 50368}"#;

    /// google/embeddinggemma-300m's config.json as published (transformers 4.57 names).
    const EMBEDDINGGEMMA: &str = r#"{"architectures": ["Gemma3TextModel"], "attention_bias": false,
        "attn_logit_softcapping": null, "final_logit_softcapping": null, "head_dim": 256,
        "hidden_activation": "gelu_pytorch_tanh", "hidden_size": 768, "intermediate_size": 1152,
        "max_position_embeddings": 2048, "model_type": "gemma3_text", "num_attention_heads": 3,
        "num_hidden_layers": 24, "num_key_value_heads": 1, "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
        "rope_local_base_freq": 10000.0, "rope_scaling": null, "rope_theta": 1000000.0, "sliding_window": 512,
        "use_bidirectional_attention": true, "vocab_size": 262144}"#;

    #[test]
    fn published_embeddinggemma_config_reads_as_transformers_reads_it() {
        let ModelConfig::Gemma3(g) = config_of(EMBEDDINGGEMMA).unwrap() else { panic!("not Gemma 3") };
        assert_eq!((g.num_attention_heads, g.num_key_value_heads, g.head_dim), (3, 1, 256));
        assert_eq!((g.global_rope_theta, g.local_rope_theta, g.query_pre_attn_scalar), (1e6, 1e4, 256.0));
        // Gemma3TextConfig: sliding_window // 2 + 1 as an exclusive bound when bidirectional;
        // a full layer every 6 (layers 5, 11, 17, 23) by the default pattern.
        assert_eq!(g.window, 256);
        let full: Vec<usize> = (0..24).filter(|&i| g.global_layers[i]).collect();
        assert_eq!(full, [5, 11, 17, 23]);
        assert_eq!(g.hidden_activation, Activation::GeluTanh);
        let causal =
            EMBEDDINGGEMMA.replace(r#""use_bidirectional_attention": true"#, r#""use_bidirectional_attention": false"#);
        let err = config_of(&causal).unwrap_err();
        assert_eq!(err.code(), "UNSUPPORTED", "{err}");
        assert!(err.to_string().contains("use_bidirectional_attention"), "{err}");
    }

    /// Qwen/Qwen3-Embedding-0.6B's config.json as published (transformers 4.51 names).
    const QWEN3_EMBEDDING: &str = r#"{"architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128,
        "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
        "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen3",
        "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
        "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null, "tie_word_embeddings": true,
        "torch_dtype": "float32", "use_cache": true, "use_sliding_window": false, "vocab_size": 151669}"#;

    /// intfloat/e5-mistral-7b-instruct's config.json as published.
    const E5_MISTRAL: &str = r#"{"architectures": ["MistralModel"], "bos_token_id": 1, "eos_token_id": 2,
        "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
        "max_position_embeddings": 32768, "model_type": "mistral", "num_attention_heads": 32,
        "num_hidden_layers": 32, "num_key_value_heads": 8, "pad_token_id": 2, "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": false, "torch_dtype": "float16",
        "use_cache": false, "vocab_size": 32000}"#;

    #[test]
    fn published_decoder_configs_read_as_transformers_reads_them() {
        let ModelConfig::Decoder(q) = config_of(QWEN3_EMBEDDING).unwrap() else { panic!("not a decoder") };
        assert_eq!(q.family, DecoderFamily::Qwen3);
        assert_eq!((q.num_attention_heads, q.num_key_value_heads, q.head_dim), (16, 8, 128));
        assert_eq!((q.rope_theta, q.rms_norm_eps), (1e6, 1e-6));
        assert!(q.qk_norm && !q.qkv_bias && !q.o_bias);
        assert!(q.sliding_layers.iter().all(|s| !s), "use_sliding_window false: no sliding layers");
        let ModelConfig::Decoder(m) = config_of(E5_MISTRAL).unwrap() else { panic!("not a decoder") };
        assert_eq!(m.family, DecoderFamily::Mistral);
        assert_eq!((m.num_attention_heads, m.num_key_value_heads, m.head_dim), (32, 8, 128));
        assert!(!m.qk_norm && !m.qkv_bias && !m.o_bias);
        // MistralModel: the window on every layer, keys kv_idx > q_idx - 4096.
        assert!(m.sliding_layers.iter().all(|s| *s));
        assert_eq!(m.window, 4095);
        // Qwen2 (gte-Qwen2): q/k/v biases; a window only with use_sliding_window, from
        // max_window_layers on.
        let qwen2 = QWEN3_EMBEDDING
            .replace(r#""model_type": "qwen3""#, r#""model_type": "qwen2""#)
            .replace(r#""use_sliding_window": false"#, r#""use_sliding_window": true"#)
            .replace(r#""sliding_window": null"#, r#""sliding_window": 64"#)
            .replace(r#""max_window_layers": 28"#, r#""max_window_layers": 20"#);
        let ModelConfig::Decoder(g) = config_of(&qwen2).unwrap() else { panic!("not a decoder") };
        assert!(g.qkv_bias && !g.o_bias && !g.qk_norm);
        assert_eq!(g.sliding_layers.iter().position(|s| *s), Some(20));
        assert_eq!(g.window, 63);
    }

    #[test]
    fn decoder_options_wembed_does_not_compute_are_unsupported_by_name() {
        for (json, from, to, field) in [
            (QWEN3_EMBEDDING, r#""hidden_act": "silu""#, r#""hidden_act": "gelu""#, "hidden_act"),
            (
                QWEN3_EMBEDDING,
                r#""rope_scaling": null"#,
                r#""rope_scaling": {"rope_type": "yarn", "factor": 4.0}"#,
                "rope_scaling",
            ),
            (E5_MISTRAL, r#""use_cache": false"#, r#""use_cache": false, "is_causal": false"#, "is_causal"),
            (E5_MISTRAL, r#""use_cache": false"#, r#""use_cache": false, "mlp_bias": true"#, "mlp_bias"),
        ] {
            assert!(json.contains(from), "{from}");
            let err = config_of(&json.replace(from, to)).unwrap_err();
            assert_eq!(err.code(), "UNSUPPORTED", "{to}: {err}");
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
    }

    #[test]
    fn published_nomic_and_modernbert_configs_read_as_transformers_reads_them() {
        let ModelConfig::Nomic(n) = config_of(NOMIC_V15).unwrap() else { panic!("not NomicBERT") };
        assert_eq!(
            (n.hidden_size, n.num_hidden_layers, n.num_attention_heads, n.intermediate_size),
            (768, 12, 12, 3072)
        );
        assert_eq!((n.rope_theta, n.layer_norm_eps, n.max_positions, n.type_vocab_size), (1000.0, 1e-12, 8192, 2));
        let ModelConfig::ModernBert(m) = config_of(GTE_MODERNBERT).unwrap() else { panic!("not ModernBERT") };
        assert_eq!((m.global_rope_theta, m.local_rope_theta, m.local_attention), (160_000.0, 10_000.0, 128));
        assert_eq!(m.global_layers.len(), 22);
        assert_eq!(m.global_layers.iter().filter(|g| **g).count(), 8, "layers 0, 3, .., 21 are global");
        assert!(m.global_layers[0] && !m.global_layers[1] && !m.global_layers[2] && m.global_layers[21]);
        assert_eq!(m.hidden_activation, Activation::GeluErf);
    }

    #[test]
    fn nomic_and_modernbert_options_wembed_does_not_compute_are_unsupported_by_name() {
        for (json, from, to, field) in [
            (
                NOMIC_V15,
                r#""activation_function": "swiglu""#,
                r#""activation_function": "gelu""#,
                "activation_function",
            ),
            (NOMIC_V15, r#""qkv_proj_bias": false"#, r#""qkv_proj_bias": true"#, "qkv_proj_bias"),
            (NOMIC_V15, r#""rotary_emb_fraction": 1.0"#, r#""rotary_emb_fraction": 0.5"#, "rotary_emb_fraction"),
            (NOMIC_V15, r#""rotary_scaling_factor": null"#, r#""rotary_scaling_factor": 2.0"#, "rotary_scaling_factor"),
            (NOMIC_V15, r#""prenorm": false"#, r#""prenorm": true"#, "prenorm"),
            (GTE_MODERNBERT, r#""norm_bias": false"#, r#""norm_bias": true"#, "norm_bias"),
            (GTE_MODERNBERT, r#""hidden_activation": "gelu""#, r#""hidden_activation": "mish""#, "mish"),
        ] {
            assert!(json.contains(from), "{from}");
            let err = config_of(&json.replace(from, to)).unwrap_err();
            assert_eq!(err.code(), "UNSUPPORTED", "{to}: {err}");
            assert!(err.to_string().contains(field), "{to}: {err}");
        }
    }
}
