//! GGUF files as llama.cpp's `convert_hf_to_gguf.py` writes them, for the architectures
//! `bert`, `nomic-bert`, `qwen3` and `llama` (Mistral, E5-mistral): the header, metadata and
//! tensor table parsed with every offset and length checked, tensors F32, F16, BF16, Q8_0, Q4_0,
//! Q4_1 and the K-quants Q4_K, Q5_K, Q6_K.
//!
//! A GGUF file carries what a model folder spreads over several files. [`companion_files`]
//! turns its metadata into those files (`config.json`, the pooling config, `tokenizer.json`
//! rebuilt from the WordPiece, GPT-2 BPE, SentencePiece BPE or XLM-R Unigram vocabulary), so the
//! rest of wembed loads it like any folder; files the user put beside it (a real
//! `tokenizer.json`, `sentence_bert_config.json`, `config_sentence_transformers.json` with its
//! prompts) win.
//! Reference: ggml/docs/gguf.md; llama.cpp `convert_hf_to_gguf.py` (BertModel, NomicBertModel,
//! Qwen3Model, LlamaModel and its `permute`), `gguf-py/gguf/constants.py` (tensor names,
//! metadata keys, pooling types), `gguf-py/gguf/tensor_mapping.py` (which checkpoint name becomes
//! which tensor), `gguf-py/gguf/vocab.py` (SpecialVocab: merges, add_eos_token) and
//! `_create_vocab_sentencepiece` / `_xlmroberta_set_vocab` (SentencePiece pieces, scores, types).

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::config::ModelFiles;
use crate::error::{Error, Result};

/// The name a GGUF file has inside [`ModelFiles`].
pub const GGUF_FILE: &str = "model.gguf";

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// ggml tensor types wembed reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q5K,
    Q6K,
}

impl GgmlType {
    fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// (elements, bytes) of one block.
    fn block(self) -> (u64, u64) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q4K => (256, 144),
            GgmlType::Q5K => (256, 176),
            GgmlType::Q6K => (256, 210),
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    fn as_int(&self) -> Option<i64> {
        match self {
            MetaValue::Int(v) => Some(*v),
            _ => None,
        }
    }
}

/// One tensor's entry in the table.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    /// Row-major shape (GGUF lists dimensions innermost first; this is reversed).
    pub shape: Vec<usize>,
    pub dtype: GgmlType,
    /// Byte range in the file.
    pub start: usize,
    pub end: usize,
}

/// A parsed GGUF file: metadata and tensor table; the tensor bytes stay in the caller's buffer.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: HashMap<String, TensorInfo>,
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    file: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::bad_file(self.file, format!("{what} (at byte {}); is the GGUF file truncated or corrupt?", self.pos))
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let end = (self.pos as u64).checked_add(n).filter(|&e| e <= self.bytes.len() as u64);
        let Some(end) = end else {
            return Err(self.err(format!("{what}: {n} bytes run past the end of the {}-byte file", self.bytes.len())));
        };
        let out = &self.bytes[self.pos..end as usize];
        self.pos = end as usize;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    /// A count of items at least `min_size` bytes each, checked against what is left.
    fn count(&mut self, what: &str, min_size: u64) -> Result<usize> {
        let n = self.u64(what)?;
        let left = (self.bytes.len() - self.pos) as u64;
        if n.saturating_mul(min_size.max(1)) > left {
            return Err(self.err(format!("{what} says {n} items, more than the file holds")));
        }
        Ok(n as usize)
    }

    fn value(&mut self, ty: u32, key: &str, depth: u32) -> Result<MetaValue> {
        let b = |r: &mut Self, n: u64| -> Result<&'a [u8]> { r.take(n, key) };
        Ok(match ty {
            0 => MetaValue::Int(b(self, 1)?[0] as i64),
            1 => MetaValue::Int(b(self, 1)?[0] as i8 as i64),
            2 => MetaValue::Int(u16::from_le_bytes(b(self, 2)?.try_into().expect("2")) as i64),
            3 => MetaValue::Int(i16::from_le_bytes(b(self, 2)?.try_into().expect("2")) as i64),
            4 => MetaValue::Int(self.u32(key)? as i64),
            5 => MetaValue::Int(self.u32(key)? as i32 as i64),
            6 => MetaValue::Float(f32::from_le_bytes(b(self, 4)?.try_into().expect("4")) as f64),
            7 => MetaValue::Bool(b(self, 1)?[0] != 0),
            8 => MetaValue::Str(self.string(key)?),
            9 => {
                if depth > 2 {
                    return Err(self.err(format!("metadata `{key}`: arrays nested too deep")));
                }
                let item = self.u32(key)?;
                // The smallest encoding of one item, so a forged count is caught before the
                // loop (and nothing is reserved past what the file could hold).
                let min_item = match item {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(self.err(format!("metadata `{key}` has arrays of unknown type {other}"))),
                };
                let n = self.count(key, min_item)?;
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::Int(self.u64(key)? as i64),
            11 => MetaValue::Int(self.u64(key)? as i64),
            12 => MetaValue::Float(f64::from_le_bytes(b(self, 8)?.try_into().expect("8"))),
            other => return Err(self.err(format!("metadata `{key}` has unknown value type {other}"))),
        })
    }
}

impl Gguf {
    /// Parses the header, metadata and tensor table of `bytes` (named `file` in errors) and
    /// checks that every tensor lies inside the file.
    pub fn parse(bytes: &[u8], file: &str) -> Result<Gguf> {
        let mut r = Reader { bytes, pos: 0, file };
        if r.take(4, "magic")? != MAGIC {
            return Err(Error::bad_file(file, "not a GGUF file (it does not start with `GGUF`)"));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(Error::Unsupported(format!("GGUF version {version} in {file} (wembed reads 2 and 3)")));
        }
        // A tensor entry takes at least 8 + 4 + 4 + 8 bytes, a metadata entry 8 + 4 + 1.
        let tensor_count = r.count("tensor count", 24)?;
        let meta_count = r.count("metadata count", 13)?;
        let mut metadata = HashMap::with_capacity(meta_count.min(1 << 12));
        for _ in 0..meta_count {
            let key = r.string("metadata key")?;
            let ty = r.u32(&key)?;
            let value = r.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut table = Vec::with_capacity(tensor_count.min(1 << 12));
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let dims = r.u32(&name)?;
            if dims == 0 || dims > 4 {
                return Err(r.err(format!("tensor `{name}` has {dims} dimensions")));
            }
            let mut shape = (0..dims).map(|_| r.u64(&name)).collect::<Result<Vec<u64>>>()?;
            shape.reverse();
            if shape.iter().any(|&d| d > u32::MAX as u64) {
                return Err(r.err(format!("tensor `{name}` has a dimension over 2^32: {shape:?}")));
            }
            let type_id = r.u32(&name)?;
            let dtype = GgmlType::from_id(type_id).ok_or_else(|| {
                Error::Unsupported(format!(
                    "tensor `{name}` in {file} has ggml type {type_id}; wembed reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K"
                ))
            })?;
            let offset = r.u64(&name)?;
            table.push((name, shape, dtype, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(MetaValue::Int(a)) if *a > 0 && (*a as u64).is_power_of_two() => *a as u64,
            Some(other) => return Err(Error::bad_file(file, format!("general.alignment {other:?}"))),
        };
        let data_start = (r.pos as u64).next_multiple_of(alignment);
        let mut tensors = HashMap::with_capacity(tensor_count.min(1 << 12));
        for (name, shape, dtype, offset) in table {
            if !offset.is_multiple_of(alignment) {
                return Err(Error::bad_file(
                    file,
                    format!("tensor `{name}` starts at offset {offset}, not a multiple of the alignment {alignment}"),
                ));
            }
            let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            let (per_block, block_bytes) = dtype.block();
            let cols = *shape.last().expect("at least one dimension");
            let size = elements.and_then(|n| (n / per_block).checked_mul(block_bytes));
            let start = data_start.checked_add(offset);
            let end = start.zip(size).and_then(|(s, n)| s.checked_add(n));
            match (end, start) {
                _ if !cols.is_multiple_of(per_block) => {
                    return Err(Error::bad_file(
                        file,
                        format!("tensor `{name}`: rows of {cols} do not split into {dtype:?} blocks of {per_block}"),
                    ));
                }
                (Some(end), Some(start)) if end <= bytes.len() as u64 => {
                    let shape = shape.iter().map(|&d| d as usize).collect();
                    let info = TensorInfo { shape, dtype, start: start as usize, end: end as usize };
                    if tensors.insert(name.clone(), info).is_some() {
                        return Err(Error::bad_file(file, format!("tensor `{name}` is listed twice")));
                    }
                }
                _ => {
                    return Err(Error::bad_file(
                        file,
                        format!(
                            "tensor `{name}` ({dtype:?} {shape:?} at offset {offset}) runs past the end of the \
                             {}-byte file; is it truncated?",
                            bytes.len()
                        ),
                    ));
                }
            }
        }
        // Tensors may not share bytes: one that overlaps another is a forged table.
        let mut spans: Vec<(&String, usize, usize)> = tensors.iter().map(|(n, t)| (n, t.start, t.end)).collect();
        spans.sort_by_key(|&(_, s, e)| (s, e));
        for pair in spans.windows(2) {
            let ((a, _, a_end), (b, b_start, b_end)) = (pair[0], pair[1]);
            if b_start < a_end && b_end > b_start {
                return Err(Error::bad_file(file, format!("tensors `{a}` and `{b}` overlap in the file")));
            }
        }
        Ok(Gguf { metadata, tensors })
    }

    fn int(&self, key: &str, file: &str) -> Result<i64> {
        match self.metadata.get(key) {
            Some(v) => v.as_int().ok_or_else(|| Error::bad_file(file, format!("metadata `{key}` is not an integer"))),
            None => Err(Error::bad_file(file, format!("metadata `{key}` is missing"))),
        }
    }

    fn float(&self, key: &str, file: &str) -> Result<f64> {
        match self.metadata.get(key) {
            Some(MetaValue::Float(v)) => Ok(*v),
            Some(MetaValue::Int(v)) => Ok(*v as f64),
            Some(_) => Err(Error::bad_file(file, format!("metadata `{key}` is not a number"))),
            None => Err(Error::bad_file(file, format!("metadata `{key}` is missing"))),
        }
    }

    /// A number that may be missing (then `default`), but not malformed.
    fn float_or(&self, key: &str, file: &str, default: f64) -> Result<f64> {
        if self.metadata.contains_key(key) { self.float(key, file) } else { Ok(default) }
    }

    fn string(&self, key: &str) -> Option<&str> {
        match self.metadata.get(key) {
            Some(MetaValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// `general.architecture` (empty when missing).
    pub fn architecture(&self) -> &str {
        self.string("general.architecture").unwrap_or("")
    }

    /// The rows of a 2-D tensor the architecture requires.
    fn rows(&self, name: &str, file: &str) -> Result<usize> {
        self.tensors
            .get(name)
            .map(|t| t.shape[0])
            .ok_or_else(|| Error::weight(name, format!("missing from {file}; is this the right model file?")))
    }
}

/// The GGUF tensor name of a Hugging Face weight name, as llama.cpp's tensor map names it for
/// the file's architecture (`bert`, `nomic-bert`, `qwen3`), or None for names GGUF does not
/// have. The weight names are the ones wembed's model code asks for (`model::bert`,
/// `model::nomic`, `model::qwen3`).
pub fn gguf_name(arch: &str, hf: &str) -> Option<String> {
    let (stem, leaf) = hf.rsplit_once('.')?;
    if !matches!(leaf, "weight" | "bias") {
        return None;
    }
    // (whole-model names, the layer prefix, per-layer names), each as (Hugging Face, GGUF).
    type Names = &'static [(&'static str, &'static str)];
    let (fixed, layers, parts): (Names, &str, Names) = match arch {
        "bert" => (
            &[
                ("embeddings.word_embeddings", "token_embd"),
                ("embeddings.position_embeddings", "position_embd"),
                ("embeddings.token_type_embeddings", "token_types"),
                ("embeddings.LayerNorm", "token_embd_norm"),
            ],
            "encoder.layer.",
            &[
                ("attention.self.query", "attn_q"),
                ("attention.self.key", "attn_k"),
                ("attention.self.value", "attn_v"),
                ("attention.output.dense", "attn_output"),
                ("attention.output.LayerNorm", "attn_output_norm"),
                ("intermediate.dense", "ffn_up"),
                ("output.dense", "ffn_down"),
                ("output.LayerNorm", "layer_output_norm"),
            ],
        ),
        "nomic-bert" => (
            &[
                ("embeddings.word_embeddings", "token_embd"),
                ("embeddings.token_type_embeddings", "token_types"),
                ("emb_ln", "token_embd_norm"),
            ],
            "encoder.layers.",
            &[
                ("attn.Wqkv", "attn_qkv"),
                ("attn.out_proj", "attn_output"),
                ("norm1", "attn_output_norm"),
                ("mlp.fc11", "ffn_up"),
                ("mlp.fc12", "ffn_gate"),
                ("mlp.fc2", "ffn_down"),
                ("norm2", "layer_output_norm"),
            ],
        ),
        // Qwen3Model's names; llama.cpp's LlamaModel (Mistral) writes the same ones, without q/k norms.
        "qwen3" | "llama" => (
            &[("embed_tokens", "token_embd"), ("norm", "output_norm")],
            "layers.",
            &[
                ("input_layernorm", "attn_norm"),
                ("self_attn.q_proj", "attn_q"),
                ("self_attn.k_proj", "attn_k"),
                ("self_attn.v_proj", "attn_v"),
                ("self_attn.o_proj", "attn_output"),
                ("self_attn.q_norm", "attn_q_norm"),
                ("self_attn.k_norm", "attn_k_norm"),
                ("post_attention_layernorm", "ffn_norm"),
                ("mlp.gate_proj", "ffn_gate"),
                ("mlp.up_proj", "ffn_up"),
                ("mlp.down_proj", "ffn_down"),
            ],
        ),
        _ => return None,
    };
    if let Some((_, base)) = fixed.iter().find(|(hf, _)| *hf == stem) {
        return Some(format!("{base}.{leaf}"));
    }
    let (i, part) = stem.strip_prefix(layers)?.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let (_, base) = parts.iter().find(|(hf, _)| *hf == part)?;
    Some(format!("blk.{i}.{base}.{leaf}"))
}

/// Where each row of a `llama` file's `attn_q` / `attn_k` weight (GGUF name `gguf`, `rows`
/// rows) lies in the file, for the rows in the Hugging Face order: None for any other tensor or
/// architecture. llama.cpp rotates adjacent pairs where transformers rotates halves, so its
/// converter (LlamaModel.permute) interleaves each head's two halves: Hugging Face row
/// `head * head_dim + half * head_dim / 2 + j` is file row `head * head_dim + 2 * j + half`.
/// Qwen3 and NomicBERT files keep the halves (llama.cpp's NEOX rotary): no permutation.
pub fn llama_row_order(g: &Gguf, gguf: &str, rows: usize, file: &str) -> Result<Option<Vec<usize>>> {
    if g.architecture() != "llama" {
        return Ok(None);
    }
    let heads = if gguf.ends_with(".attn_q.weight") {
        g.int("llama.attention.head_count", file)?
    } else if gguf.ends_with(".attn_k.weight") {
        let kv = "llama.attention.head_count_kv";
        if g.metadata.contains_key(kv) { g.int(kv, file)? } else { g.int("llama.attention.head_count", file)? }
    } else {
        return Ok(None);
    };
    let heads = usize::try_from(heads).unwrap_or(0);
    if heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(Error::bad_file(
            file,
            format!("tensor `{gguf}`: {rows} rows do not split into {heads} heads of an even width"),
        ));
    }
    let (head_dim, half) = (rows / heads, rows / heads / 2);
    Ok(Some(
        (0..rows)
            .map(|r| {
                let (head, within) = (r / head_dim, r % head_dim);
                head * head_dim + 2 * (within % half) + within / half
            })
            .collect(),
    ))
}

/// The model-folder files a GGUF file implies, for those not already in `files`:
/// `config.json`, `modules.json` + `1_Pooling/config.json`, `sentence_bert_config.json` and
/// `tokenizer.json`.
pub fn companion_files(files: &ModelFiles) -> Result<Vec<(String, Vec<u8>)>> {
    let file = format!("{}/{GGUF_FILE}", files.origin());
    let g = Gguf::parse(files.require(GGUF_FILE)?, &file)?;
    let arch = g.architecture();
    // llama.cpp's pooling types: 1 mean, 2 cls, 3 last. A file without one pools as the
    // family's embedders do: BERT and NomicBERT by the mean, Qwen3-Embedding by the last token.
    let (config, default_pooling) = match arch {
        "bert" => (bert_config(&g, &file)?, 1),
        "nomic-bert" => (nomic_config(&g, &file)?, 1),
        "qwen3" | "llama" => (decoder_config(&g, &file)?, 3),
        _ => {
            return Err(Error::Unsupported(format!(
                "GGUF architecture `{arch}` in {file}; wembed reads `bert`, `nomic-bert`, `qwen3` and `llama` GGUF files"
            )));
        }
    };
    let hidden = g.int(&format!("{arch}.embedding_length"), &file)?;
    let mut out = vec![("config.json".to_string(), config.to_string().into_bytes())];
    if files.get("modules.json").is_none() {
        // llama.cpp normalizes embeddings by default, and so does a GGUF file here.
        let key = format!("{arch}.pooling_type");
        let pooling = match g.metadata.get(&key).and_then(MetaValue::as_int).unwrap_or(default_pooling) {
            1 => "pooling_mode_mean_tokens",
            2 => "pooling_mode_cls_token",
            3 => "pooling_mode_lasttoken",
            other => {
                return Err(Error::Unsupported(format!(
                    "{key} {other} in {file} (wembed pools mean 1, cls 2, last 3; 0 is none, 4 rank)"
                )));
            }
        };
        let modules = json!([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ]);
        out.push(("modules.json".into(), modules.to_string().into_bytes()));
        out.push((
            "1_Pooling/config.json".into(),
            json!({ "word_embedding_dimension": hidden, pooling: true }).to_string().into_bytes(),
        ));
    }
    if files.get("tokenizer.json").is_none() {
        let tokenizer = match g.string("tokenizer.ggml.model") {
            Some("bert") => wordpiece_tokenizer(&g, &file)?,
            Some("gpt2") => bpe_tokenizer(&g, &file)?,
            Some("llama") => spm_tokenizer(&g, &file)?,
            Some("t5") if arch != "qwen3" && arch != "llama" => unigram_tokenizer(&g, &file)?,
            other => {
                return Err(Error::Unsupported(format!(
                    "tokenizer.ggml.model {other:?} in {file}; wembed rebuilds WordPiece (`bert`), GPT-2 BPE \
                     (`gpt2`), SentencePiece BPE (`llama`) and, in encoders, XLM-RoBERTa's Unigram (`t5`) \
                     vocabularies — put the model's tokenizer.json beside the GGUF file"
                )));
            }
        };
        out.push(("tokenizer.json".into(), tokenizer.to_string().into_bytes()));
    }
    Ok(out)
}

/// `config.json` of a `bert` file (llama.cpp's BertModel keys).
fn bert_config(g: &Gguf, file: &str) -> Result<Value> {
    let types = g.tensors.get("token_types.weight").map_or(1, |t| t.shape[0]);
    Ok(json!({
        "model_type": "bert",
        "vocab_size": g.rows("token_embd.weight", file)?,
        "hidden_size": g.int("bert.embedding_length", file)?,
        "num_hidden_layers": g.int("bert.block_count", file)?,
        "num_attention_heads": g.int("bert.attention.head_count", file)?,
        "intermediate_size": g.int("bert.feed_forward_length", file)?,
        "hidden_act": "gelu",
        "max_position_embeddings": g.int("bert.context_length", file)?,
        "type_vocab_size": types,
        "layer_norm_eps": g.float("bert.attention.layer_norm_epsilon", file)?,
    }))
}

/// `config.json` of a `nomic-bert` file (llama.cpp's NomicBertModel: BertModel's keys and the
/// rotary base; the converter asserts the SwiGLU, bias-free, post-norm layout wembed runs).
fn nomic_config(g: &Gguf, file: &str) -> Result<Value> {
    let a = "nomic-bert";
    if g.metadata.contains_key(&format!("{a}.expert_count")) {
        return Err(Error::Unsupported(format!("{a}.expert_count in {file}: mixture-of-experts NomicBERT (v2-moe)")));
    }
    Ok(json!({
        "model_type": "nomic_bert",
        "activation_function": "swiglu",
        "vocab_size": g.rows("token_embd.weight", file)?,
        "hidden_size": g.int(&format!("{a}.embedding_length"), file)?,
        "num_hidden_layers": g.int(&format!("{a}.block_count"), file)?,
        "num_attention_heads": g.int(&format!("{a}.attention.head_count"), file)?,
        "intermediate_size": g.int(&format!("{a}.feed_forward_length"), file)?,
        "max_position_embeddings": g.int(&format!("{a}.context_length"), file)?,
        "type_vocab_size": g.rows("token_types.weight", file)?,
        "layer_norm_eps": g.float(&format!("{a}.attention.layer_norm_epsilon"), file)?,
        // llama.cpp's default when the key is missing.
        "rotary_emb_base": g.float_or(&format!("{a}.rope.freq_base"), file, 10_000.0)?,
    }))
}

/// `config.json` of a `qwen3` file (llama.cpp's Qwen3Model: the decoder keys, `key_length` the
/// head width) or a `llama` one (LlamaModel, which is what the converter makes of a
/// `MistralForCausalLM` or `LlamaModel` checkpoint: E5-mistral), run as transformers'
/// `MistralModel`. A `llama` file stores `attn_q` and `attn_k` with each head's rows permuted for
/// llama.cpp's adjacent-pair rotary; [`crate::weights`] puts them back when it reads them.
///
/// Mistral's sliding window: the converter writes none for `llama` and llama.cpp runs these files
/// with full causal attention, so wembed does too. E5-mistral's window (4,096) is as long as the
/// longest text its model card allows (4,096 tokens), so it never cuts one there; a model whose
/// window is shorter than its texts gives other vectors from its GGUF file than from its
/// checkpoint (the tiny fixture's window of 4 does: tests/gguf.rs runs it without). A file that does carry
/// `llama.attention.sliding_window` (gguf-py's key; the converter does not write it for `llama`)
/// gets that window on every layer, as `MistralModel` applies it.
fn decoder_config(g: &Gguf, file: &str) -> Result<Value> {
    let a = g.architecture();
    if let Some(kind) = g.string(&format!("{a}.rope.scaling.type"))
        && kind != "none"
    {
        return Err(Error::Unsupported(format!(
            "{a}.rope.scaling.type `{kind}` in {file} (only unscaled rotary positions)"
        )));
    }
    let hidden = g.int(&format!("{a}.embedding_length"), file)?;
    let heads = g.int(&format!("{a}.attention.head_count"), file)?;
    let kv_key = format!("{a}.attention.head_count_kv");
    let kv_heads = if g.metadata.contains_key(&kv_key) { g.int(&kv_key, file)? } else { heads };
    let head_dim = match g.metadata.get(&format!("{a}.attention.key_length")) {
        Some(_) => g.int(&format!("{a}.attention.key_length"), file)?,
        None if heads > 0 => hidden / heads,
        None => 0,
    };
    if let Some(v) = g.metadata.get(&format!("{a}.attention.value_length")).and_then(MetaValue::as_int)
        && v != head_dim
    {
        return Err(Error::Unsupported(format!(
            "{a}.attention.value_length {v} in {file}, unlike key_length {head_dim} (wembed's heads are one width)"
        )));
    }
    if matches!(g.metadata.get(&format!("{a}.attention.causal")), Some(MetaValue::Bool(false))) {
        return Err(Error::Unsupported(format!(
            "{a}.attention.causal false in {file} (wembed runs these decoders causally, as transformers does)"
        )));
    }
    let mut config = json!({
        "model_type": "qwen3",
        "hidden_act": "silu",
        "vocab_size": g.rows("token_embd.weight", file)?,
        "hidden_size": hidden,
        "intermediate_size": g.int(&format!("{a}.feed_forward_length"), file)?,
        "num_hidden_layers": g.int(&format!("{a}.block_count"), file)?,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": g.int(&format!("{a}.context_length"), file)?,
        "rms_norm_eps": g.float(&format!("{a}.attention.layer_norm_rms_epsilon"), file)?,
        // llama.cpp's default when the key is missing.
        "rope_theta": g.float_or(&format!("{a}.rope.freq_base"), file, 10_000.0)?,
    });
    if a == "llama" {
        // What `llama` can hold that MistralModel does not compute: a mixture of experts
        // (Mixtral), Llama 3's frequency factors, partial rotary, biases.
        if g.metadata.contains_key("llama.expert_count") {
            return Err(Error::Unsupported(format!("llama.expert_count in {file}: mixture-of-experts (Mixtral)")));
        }
        if g.tensors.contains_key("rope_freqs.weight") {
            return Err(Error::Unsupported(format!(
                "rope_freqs.weight in {file}: Llama 3 rotary frequency scaling (only unscaled rotary positions)"
            )));
        }
        if let Some(dims) = g.metadata.get("llama.rope.dimension_count").and_then(MetaValue::as_int)
            && dims != head_dim
        {
            return Err(Error::Unsupported(format!(
                "llama.rope.dimension_count {dims} in {file}: rotary over part of a {head_dim}-wide head"
            )));
        }
        if let Some(bias) = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
            .iter()
            .map(|t| format!("blk.0.{t}.bias"))
            .find(|n| g.tensors.contains_key(n))
        {
            return Err(Error::Unsupported(format!(
                "tensor `{bias}` in {file}: a `llama` model with biases (wembed runs it as MistralModel, which has none)"
            )));
        }
        config["model_type"] = json!("mistral");
        let window = "llama.attention.sliding_window";
        if g.metadata.contains_key(window) {
            config["sliding_window"] = json!(g.int(window, file)?);
        }
    }
    Ok(config)
}

/// A `tokenizer.json` for the WordPiece vocabulary in the metadata. llama.cpp's converter
/// respells it ("phantom space": a word-initial piece gains U+2581, a `##` continuation loses
/// its prefix, control tokens stay); this undoes that. llama.cpp's WordPiece lowercases and
/// strips accents, as uncased BERT does.
fn wordpiece_tokenizer(g: &Gguf, file: &str) -> Result<Value> {
    let Some(MetaValue::Array(tokens)) = g.metadata.get("tokenizer.ggml.tokens") else {
        return Err(Error::bad_file(file, "metadata `tokenizer.ggml.tokens` is missing"));
    };
    let kinds = token_kinds(g);
    const CONTROL: i64 = 3;
    let mut vocab = serde_json::Map::new();
    let mut special: Vec<(usize, String)> = vec![];
    for (id, (tok, kind)) in tokens.iter().zip(kinds.iter().chain(std::iter::repeat(&1))).enumerate() {
        let MetaValue::Str(tok) = tok else {
            return Err(Error::bad_file(file, format!("token {id} is not a string")));
        };
        let bracketed = tok.starts_with('[') && tok.ends_with(']');
        let piece = if *kind == CONTROL || bracketed {
            special.push((id, tok.clone()));
            tok.clone()
        } else if let Some(word) = tok.strip_prefix('\u{2581}') {
            word.to_string()
        } else {
            format!("##{tok}")
        };
        vocab.entry(piece).or_insert(json!(id));
    }
    // The first key present names the token; else the conventional spelling.
    let token_id = |keys: &[&str], fallback: &str| -> Result<(String, usize)> {
        let key = keys[0];
        let id = match keys.iter().find_map(|k| g.metadata.get(*k).and_then(MetaValue::as_int)) {
            Some(id) => id as usize,
            None => vocab.get(fallback).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| {
                Error::bad_file(file, format!("metadata `{key}` is missing and there is no {fallback} token"))
            })?,
        };
        match tokens.get(id) {
            Some(MetaValue::Str(s)) => Ok((s.clone(), id)),
            _ => Err(Error::bad_file(file, format!("metadata `{key}` = {id} is outside the vocabulary"))),
        }
    };
    // gguf-py has no CLS key; llama.cpp's BERT uses the BOS token as [CLS].
    let (cls, cls_id) = token_id(&["tokenizer.ggml.cls_token_id", "tokenizer.ggml.bos_token_id"], "[CLS]")?;
    let (sep, sep_id) = token_id(&["tokenizer.ggml.seperator_token_id", "tokenizer.ggml.eos_token_id"], "[SEP]")?;
    let (unk, _) = token_id(&["tokenizer.ggml.unknown_token_id"], "[UNK]")?;
    let added: Vec<Value> = special
        .iter()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    let special_token = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
    let sequence = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special_token(&cls, 0), sequence("A", 0), special_token(&sep, 0)],
            "pair": [special_token(&cls, 0), sequence("A", 0), special_token(&sep, 0), sequence("B", 1),
                     special_token(&sep, 1)],
            "special_tokens": {
                cls.clone(): {"id": cls, "ids": [cls_id], "tokens": [cls]},
                sep.clone(): {"id": sep, "ids": [sep_id], "tokens": [sep]},
            },
        },
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": unk, "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }))
}

/// The strings of a metadata array.
fn strings<'g>(g: &'g Gguf, key: &str, file: &str) -> Result<Vec<&'g str>> {
    let Some(MetaValue::Array(items)) = g.metadata.get(key) else {
        return Err(Error::bad_file(file, format!("metadata `{key}` is missing")));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            MetaValue::Str(s) => Ok(s.as_str()),
            _ => Err(Error::bad_file(file, format!("metadata `{key}` item {i} is not a string"))),
        })
        .collect()
}

/// The pre-tokenizer split of each `tokenizer.ggml.pre` wembed rebuilds, as the Hugging Face
/// tokenizer of that family spells it (llama.cpp's llama-vocab.cpp keeps the same regexes).
fn bpe_pre_tokenizer(pre: &str) -> Option<(&'static str, Value)> {
    match pre {
        // Qwen2Tokenizer (Qwen2, Qwen2.5, Qwen3): NFC, then this split, then byte-level.
        "qwen2" => Some((
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
            json!({"type": "NFC"}),
        )),
        _ => None,
    }
}

/// A `tokenizer.json` for the GPT-2 style byte-level BPE vocabulary in the metadata
/// (`tokenizer.ggml.model` `gpt2`): tokens and merges as the Hugging Face file had them
/// (gguf-py writes a merge as `a b`), control and user-defined tokens as added tokens, and the
/// BOS / EOS the file says to add (`add_bos_token`, `add_eos_token`: Qwen3-Embedding appends
/// `<|endoftext|>`, which gguf-py records as the EOS it adds).
fn bpe_tokenizer(g: &Gguf, file: &str) -> Result<Value> {
    let pre = g.string("tokenizer.ggml.pre").unwrap_or("default");
    let Some((split, normalizer)) = bpe_pre_tokenizer(pre) else {
        return Err(Error::Unsupported(format!(
            "tokenizer.ggml.pre `{pre}` in {file}; wembed rebuilds the `qwen2` BPE pre-tokenizer — put the \
             model's tokenizer.json beside the GGUF file"
        )));
    };
    let tokens = strings(g, "tokenizer.ggml.tokens", file)?;
    let kinds = token_kinds(g);
    // gguf-py's TokenType: 3 control, 4 user-defined (added, not special).
    const CONTROL: i64 = 3;
    const USER_DEFINED: i64 = 4;
    let mut vocab = serde_json::Map::new();
    let mut added = vec![];
    for (id, tok) in tokens.iter().enumerate() {
        vocab.entry(tok.to_string()).or_insert(json!(id));
        let kind = kinds.get(id).copied().unwrap_or(1);
        if kind == CONTROL || kind == USER_DEFINED {
            added.push(json!({"id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": kind != CONTROL, "special": kind == CONTROL}));
        }
    }
    let merges = strings(g, "tokenizer.ggml.merges", file)?
        .into_iter()
        .enumerate()
        .map(|(i, m)| match m.split_once(' ') {
            Some((a, b)) => Ok(json!([a, b])),
            None => Err(Error::bad_file(file, format!("merge {i} `{m}` is not two tokens"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let post_processor = bos_eos_template(g, &tokens, file, (false, false))?;
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": split}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]},
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

/// `tokenizer.ggml.token_type`: gguf-py's TokenType per token (1 normal, 2 unknown, 3 control,
/// 4 user-defined), empty where the file has none (callers read a missing one as 1).
fn token_kinds(g: &Gguf) -> Vec<i64> {
    match g.metadata.get("tokenizer.ggml.token_type") {
        Some(MetaValue::Array(k)) => k.iter().map(|v| v.as_int().unwrap_or(1)).collect(),
        _ => vec![],
    }
}

/// A `tokenizer.json` for the SentencePiece vocabulary in the metadata (`tokenizer.ggml.model`
/// `llama`: Llama, Mistral, E5-mistral; the converter's `_create_vocab_sentencepiece` writes the
/// pieces of tokenizer.model in id order, with scores and types, byte pieces `<0xXX>` among
/// them, and no merges), rebuilt as transformers 5 builds `LlamaTokenizer` from that
/// tokenizer.model (tokenization_llama.py with convert_slow_tokenizer's SentencePieceExtractor):
/// a BPE with byte fallback whose merges are every split of a piece into two pieces, ranked by
/// the piece's id (`generate_merges` without scores; a BPE tokenizer.model stores its pieces
/// best score first, the order llama.cpp merges in by score), no normalizer, and a Metaspace
/// pre-tokenizer that turns spaces into `▁` and prepends one (`prepend_scheme` `first`, the
/// class's `legacy=False`; none when the file says `add_space_prefix` false). Control and
/// unknown pieces are special added tokens, user-defined ones plain added tokens; BOS is added
/// unless `add_bos_token` says not (llama.cpp's and LlamaTokenizer's default), EOS if
/// `add_eos_token` (E5-mistral's tokenizer appends `</s>`).
fn spm_tokenizer(g: &Gguf, file: &str) -> Result<Value> {
    let tokens = strings(g, "tokenizer.ggml.tokens", file)?;
    let kinds = token_kinds(g);
    // gguf-py's TokenType: 2 unknown, 3 control, 4 user-defined.
    const UNKNOWN: i64 = 2;
    const CONTROL: i64 = 3;
    const USER_DEFINED: i64 = 4;
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut added = vec![];
    for (id, tok) in tokens.iter().enumerate() {
        // A Python dict of the pieces: the last of equal pieces wins.
        ids.insert(tok, id);
        let kind = kinds.get(id).copied().unwrap_or(1);
        if matches!(kind, UNKNOWN | CONTROL | USER_DEFINED) {
            added.push(json!({"id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": kind != USER_DEFINED}));
        }
    }
    // generate_merges(vocab): for each piece in id order, each split (left shortest first) into
    // two pieces of the vocabulary.
    let mut merges = vec![];
    for tok in &tokens {
        for (at, _) in tok.char_indices().skip(1) {
            let (left, right) = tok.split_at(at);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push(json!([left, right]));
            }
        }
    }
    let vocab: serde_json::Map<String, Value> = ids.iter().map(|(t, id)| (t.to_string(), json!(id))).collect();
    let unk = match g.metadata.get("tokenizer.ggml.unknown_token_id").and_then(MetaValue::as_int) {
        Some(id) => match tokens.get(id as usize) {
            Some(t) if id >= 0 => json!(t),
            _ => {
                return Err(Error::bad_file(
                    file,
                    format!("metadata `tokenizer.ggml.unknown_token_id` = {id} is outside the vocabulary"),
                ));
            }
        },
        None if ids.contains_key("<unk>") => json!("<unk>"),
        None => Value::Null,
    };
    let prepend = match g.metadata.get("tokenizer.ggml.add_space_prefix") {
        Some(MetaValue::Bool(false)) => "never",
        _ => "first",
    };
    let post_processor = bos_eos_template(g, &tokens, file, (true, false))?;
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prepend, "split": false},
        "post_processor": post_processor,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

/// A `tokenizer.json` for the Unigram vocabulary llama.cpp's converter writes for XLM-RoBERTa
/// encoders (`tokenizer.ggml.model` `t5` in a `bert` or `nomic-bert` file: bge-m3,
/// multilingual-e5, nomic-embed-text-v2; `_xlmroberta_set_vocab` puts `<s> <pad> </s> <unk>`
/// first, as the Hugging Face vocabulary has them, with each piece's score and the
/// SentencePiece `precompiled_charsmap`), rebuilt as transformers 5 builds
/// `XLMRobertaTokenizer` (tokenization_xlm_roberta.py, as [`crate::tokenizer`] rebuilds a
/// tokenizer.json of `model_type` xlm-roberta): the charsmap as the only normalizer, split on
/// whitespace, Metaspace prepending `▁` to every word (none if `add_space_prefix` is false),
/// and `<s> $A </s>` around every text.
fn unigram_tokenizer(g: &Gguf, file: &str) -> Result<Value> {
    let tokens = strings(g, "tokenizer.ggml.tokens", file)?;
    let Some(MetaValue::Array(scores)) = g.metadata.get("tokenizer.ggml.scores") else {
        return Err(Error::bad_file(file, "metadata `tokenizer.ggml.scores` is missing"));
    };
    if scores.len() != tokens.len() {
        return Err(Error::bad_file(file, format!("{} scores for {} tokens", scores.len(), tokens.len())));
    }
    let kinds = token_kinds(g);
    const UNKNOWN: i64 = 2;
    const CONTROL: i64 = 3;
    const USER_DEFINED: i64 = 4;
    let mut vocab = Vec::with_capacity(tokens.len());
    let mut added = vec![];
    for (id, (tok, score)) in tokens.iter().zip(scores).enumerate() {
        let score = match score {
            MetaValue::Float(f) if f.is_finite() => *f,
            _ => return Err(Error::bad_file(file, format!("the score of token {id} is not a finite float"))),
        };
        vocab.push(json!([tok, score]));
        let kind = kinds.get(id).copied().unwrap_or(1);
        if matches!(kind, UNKNOWN | CONTROL | USER_DEFINED) {
            added.push(json!({"id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": kind != USER_DEFINED}));
        }
    }
    let unk_id = match g.metadata.get("tokenizer.ggml.unknown_token_id").and_then(MetaValue::as_int) {
        Some(id) if (0..tokens.len() as i64).contains(&id) => id,
        Some(id) => {
            return Err(Error::bad_file(
                file,
                format!("metadata `tokenizer.ggml.unknown_token_id` = {id} is outside the vocabulary"),
            ));
        }
        None => kinds.iter().position(|&k| k == UNKNOWN).unwrap_or(3) as i64,
    };
    let normalizer = match g.metadata.get("tokenizer.ggml.precompiled_charsmap") {
        Some(MetaValue::Array(bytes)) if !bytes.is_empty() => {
            let bytes = bytes
                .iter()
                .map(|b| b.as_int().and_then(|b| u8::try_from(b).ok()))
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| Error::bad_file(file, "metadata `tokenizer.ggml.precompiled_charsmap` is not bytes"))?;
            if !crate::tokenizer::charsmap_is_sound(&bytes) {
                return Err(Error::bad_file(
                    file,
                    "metadata `tokenizer.ggml.precompiled_charsmap` is damaged (its trie would be read out of bounds)",
                ));
            }
            json!({"type": "Precompiled", "precompiled_charsmap": base64(&bytes)})
        }
        _ => Value::Null,
    };
    let prepend = match g.metadata.get("tokenizer.ggml.add_space_prefix") {
        Some(MetaValue::Bool(false)) => "never",
        _ => "always",
    };
    let metaspace = json!({"type": "Metaspace", "replacement": "\u{2581}", "prepend_scheme": prepend, "split": true});
    // XLMRobertaTokenizer's template: `<s> $A </s>` (pairs `<s> $A </s> </s> $B </s>`).
    let [bos, eos] = ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"].map(|key| {
        match g.metadata.get(key).and_then(MetaValue::as_int) {
            Some(id) if (0..tokens.len() as i64).contains(&id) => Ok((tokens[id as usize].to_string(), id)),
            _ => Err(Error::bad_file(file, format!("metadata `{key}` is missing or outside the vocabulary"))),
        }
    });
    let ((bos, bos_id), (eos, eos_id)) = (bos?, eos?);
    let special = |t: &str| json!({"SpecialToken": {"id": t, "type_id": 0}});
    let sequence = |s: &str| json!({"Sequence": {"id": s, "type_id": 0}});
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, metaspace]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [special(&bos), sequence("A"), special(&eos)],
            "pair": [special(&bos), sequence("A"), special(&eos), special(&eos), sequence("B"), special(&eos)],
            "special_tokens": {
                bos.clone(): {"id": bos, "ids": [bos_id], "tokens": [bos]},
                eos.clone(): {"id": eos, "ids": [eos_id], "tokens": [eos]},
            },
        },
        "decoder": metaspace,
        "model": {"type": "Unigram", "unk_id": unk_id, "vocab": vocab, "byte_fallback": false},
    }))
}

/// Standard base64 with padding (the form tokenizer.json stores a Precompiled charsmap in).
#[cfg(test)]
pub(crate) fn tests_base64(bytes: &[u8]) -> String {
    base64(bytes)
}

/// Standard base64 with padding (the form tokenizer.json stores a Precompiled charsmap in).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `TemplateProcessing` that adds the BOS / EOS the file says to add (`add_bos_token`,
/// `add_eos_token`, as gguf-py's SpecialVocab copies them from tokenizer_config.json; a file
/// without them adds what `by_default` says), as transformers'
/// `TokenizersBackend.update_post_processor` builds it.
fn bos_eos_template(g: &Gguf, tokens: &[&str], file: &str, by_default: (bool, bool)) -> Result<Value> {
    // The token a key names, checked against the vocabulary.
    let token = |key: &str| -> Result<Option<(String, usize)>> {
        let Some(id) = g.metadata.get(key).and_then(MetaValue::as_int) else { return Ok(None) };
        match tokens.get(id as usize) {
            Some(t) if id >= 0 => Ok(Some((t.to_string(), id as usize))),
            _ => Err(Error::bad_file(file, format!("metadata `{key}` = {id} is outside the vocabulary"))),
        }
    };
    let flag = |key: &str, default: bool| match g.metadata.get(key) {
        Some(MetaValue::Bool(b)) => *b,
        _ => default,
    };
    let mut ends = vec![];
    for (add, id, default) in [
        ("tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id", by_default.0),
        ("tokenizer.ggml.add_eos_token", "tokenizer.ggml.eos_token_id", by_default.1),
    ] {
        if flag(add, default) {
            let t = token(id)?
                .ok_or_else(|| Error::bad_file(file, format!("metadata `{add}` is true but `{id}` is missing")))?;
            ends.push(Some(t));
        } else {
            ends.push(None);
        }
    }
    let (bos, eos) = (ends[0].clone(), ends[1].clone());
    let special_token = |t: &(String, usize), type_id: u32| json!({"SpecialToken": {"id": t.0, "type_id": type_id}});
    let sequence = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
    let mut single = vec![];
    let mut pair = vec![];
    let mut special_tokens = serde_json::Map::new();
    for (type_id, seq) in [(0, "A"), (1, "B")] {
        let part = if type_id == 0 { &mut single } else { &mut pair };
        if let Some(b) = &bos {
            part.push(special_token(b, type_id));
        }
        part.push(sequence(seq, type_id));
        if let Some(e) = &eos {
            part.push(special_token(e, type_id));
        }
    }
    let pair = [single.clone(), pair].concat();
    for t in [&bos, &eos].into_iter().flatten() {
        special_tokens.insert(t.0.clone(), json!({"id": t.0, "ids": [t.1], "tokens": [t.0]}));
    }
    Ok(json!({"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": special_tokens}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_llama_cpp_tensor_names() {
        let cases = [
            ("embeddings.word_embeddings.weight", Some("token_embd.weight")),
            ("embeddings.LayerNorm.bias", Some("token_embd_norm.bias")),
            ("encoder.layer.3.attention.self.key.weight", Some("blk.3.attn_k.weight")),
            ("encoder.layer.11.output.LayerNorm.weight", Some("blk.11.layer_output_norm.weight")),
            ("encoder.layer.0.intermediate.dense.bias", Some("blk.0.ffn_up.bias")),
            ("embeddings.LayerNorm.gamma", None),
            ("pooler.dense.weight", None),
        ];
        for (hf, want) in cases {
            assert_eq!(gguf_name("bert", hf).as_deref(), want, "{hf}");
        }
        // gguf-py's get_tensor_name_map(NOMIC_BERT / QWEN3) on the tiny fixtures' names.
        for (arch, hf, want) in [
            ("nomic-bert", "emb_ln.bias", Some("token_embd_norm.bias")),
            ("nomic-bert", "encoder.layers.1.attn.Wqkv.weight", Some("blk.1.attn_qkv.weight")),
            ("nomic-bert", "encoder.layers.0.mlp.fc11.weight", Some("blk.0.ffn_up.weight")),
            ("nomic-bert", "encoder.layers.0.mlp.fc12.weight", Some("blk.0.ffn_gate.weight")),
            ("nomic-bert", "encoder.layers.0.norm2.weight", Some("blk.0.layer_output_norm.weight")),
            ("qwen3", "embed_tokens.weight", Some("token_embd.weight")),
            ("qwen3", "norm.weight", Some("output_norm.weight")),
            ("qwen3", "layers.2.self_attn.k_norm.weight", Some("blk.2.attn_k_norm.weight")),
            ("qwen3", "layers.0.post_attention_layernorm.weight", Some("blk.0.ffn_norm.weight")),
            ("qwen3", "model.embed_tokens.weight", None),
            ("llama", "layers.1.self_attn.q_proj.weight", Some("blk.1.attn_q.weight")),
            ("llama", "layers.0.mlp.down_proj.weight", Some("blk.0.ffn_down.weight")),
            ("llama", "norm.weight", Some("output_norm.weight")),
            ("gpt2", "embed_tokens.weight", None),
        ] {
            assert_eq!(gguf_name(arch, hf).as_deref(), want, "{arch} {hf}");
        }
    }

    #[test]
    fn base64_pads_as_tokenizer_json_expects() {
        for (bytes, want) in
            [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"\xff\x00\xfe", "/wD+")]
        {
            assert_eq!(base64(bytes), want);
        }
    }

    /// A vocabulary-only file: `tokens` with `kinds`, plus `extra` metadata.
    fn vocab(model: &str, tokens: &[&str], kinds: &[i64], extra: &[(&str, MetaValue)]) -> Gguf {
        let list = |v: Vec<MetaValue>| MetaValue::Array(v);
        let mut metadata: HashMap<String, MetaValue> = [
            ("tokenizer.ggml.model".to_string(), MetaValue::Str(model.into())),
            ("tokenizer.ggml.tokens".to_string(), list(tokens.iter().map(|t| MetaValue::Str(t.to_string())).collect())),
            ("tokenizer.ggml.token_type".to_string(), list(kinds.iter().map(|&k| MetaValue::Int(k)).collect())),
            (
                "tokenizer.ggml.scores".to_string(),
                list((0..tokens.len()).map(|i| MetaValue::Float(-(i as f64))).collect()),
            ),
        ]
        .into();
        metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Gguf { metadata, tensors: HashMap::new() }
    }

    /// SentencePiece BPE: merges are the two-piece splits in id order; BOS is added unless the
    /// file says not; a bad id or a missing BOS id is a named BAD_FILE.
    #[test]
    fn sentencepiece_vocabularies_rebuild_and_name_their_damage() {
        let tokens = ["<unk>", "<s>", "</s>", "<0x41>", "\u{2581}", "a", "b", "ab", "\u{2581}ab"];
        let kinds = [2, 3, 3, 6, 1, 1, 1, 1, 1];
        let bos = [("tokenizer.ggml.bos_token_id", MetaValue::Int(1))];
        let json = spm_tokenizer(&vocab("llama", &tokens, &kinds, &bos), "x.gguf").unwrap();
        assert_eq!(json["model"]["merges"], json!([["a", "b"], ["\u{2581}", "ab"]]));
        assert_eq!(json["model"]["unk_token"], "<unk>");
        assert_eq!(json["post_processor"]["single"][0]["SpecialToken"]["id"], "<s>");
        assert_eq!(json["added_tokens"].as_array().unwrap().len(), 3, "<unk> <s> </s>");
        let no_prefix = [("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false))];
        let json = spm_tokenizer(&vocab("llama", &tokens, &kinds, &[&bos[..], &no_prefix].concat()), "x").unwrap();
        assert_eq!(json["pre_tokenizer"]["prepend_scheme"], "never");
        for (extra, want) in [
            (vec![], "`tokenizer.ggml.add_bos_token` is true but `tokenizer.ggml.bos_token_id` is missing"),
            (vec![bos[0].clone(), ("tokenizer.ggml.unknown_token_id", MetaValue::Int(99))], "= 99 is outside"),
        ] {
            let err = spm_tokenizer(&vocab("llama", &tokens, &kinds, &extra), "x.gguf").unwrap_err();
            assert_eq!(err.code(), "BAD_FILE", "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    /// XLM-R Unigram: scores and the charsmap come through; damage is a named BAD_FILE.
    #[test]
    fn unigram_vocabularies_rebuild_and_name_their_damage() {
        let tokens = ["<s>", "<pad>", "</s>", "<unk>", "\u{2581}", "a"];
        let kinds = [3, 3, 3, 2, 1, 1];
        let ends =
            [("tokenizer.ggml.bos_token_id", MetaValue::Int(0)), ("tokenizer.ggml.eos_token_id", MetaValue::Int(2))];
        // A charsmap with an empty trie of one block: maps nothing, and is sound.
        let mut empty = vec![0u8, 4, 0, 0];
        empty.extend([0; 1024]);
        let bytes = |b: &[u8]| MetaValue::Array(b.iter().map(|&b| MetaValue::Int(b as i64)).collect());
        let charsmap = ("tokenizer.ggml.precompiled_charsmap", bytes(&empty));
        let g = vocab("t5", &tokens, &kinds, &[&ends[..], &[charsmap]].concat());
        let json = unigram_tokenizer(&g, "x.gguf").unwrap();
        assert_eq!(json["model"]["vocab"][5], json!(["a", -5.0]));
        assert_eq!(json["model"]["unk_id"], 3);
        assert!(json["normalizer"]["precompiled_charsmap"].as_str().unwrap().starts_with("AAQAAAAA"));
        let mut short = g.clone();
        short.metadata.insert("tokenizer.ggml.scores".into(), MetaValue::Array(vec![MetaValue::Float(0.0)]));
        let mut nan = g.clone();
        nan.metadata.insert("tokenizer.ggml.scores".into(), MetaValue::Array(vec![MetaValue::Float(f64::NAN); 6]));
        let mut not_bytes = g.clone();
        not_bytes
            .metadata
            .insert("tokenizer.ggml.precompiled_charsmap".into(), MetaValue::Array(vec![MetaValue::Int(300)]));
        let mut no_eos = g.clone();
        no_eos.metadata.remove("tokenizer.ggml.eos_token_id");
        // The root's offset points past the array.
        let mut forged = empty.clone();
        forged[4..8].copy_from_slice(&(1000u32 << 10).to_le_bytes());
        let mut damaged = g.clone();
        damaged.metadata.insert("tokenizer.ggml.precompiled_charsmap".into(), bytes(&forged));
        // A child whose leaf value falls inside a multi-byte character of the strings.
        let mut inside = empty.clone();
        inside[4 + 4 * 0x61..][..4].copy_from_slice(&(0x61u32 | 1 << 8 | 1 << 10).to_le_bytes());
        inside[4 + 4 * 0x60..][..4].copy_from_slice(&1u32.to_le_bytes());
        inside.extend("é".as_bytes());
        let mut mid_char = g.clone();
        mid_char.metadata.insert("tokenizer.ggml.precompiled_charsmap".into(), bytes(&inside));
        for (g, want) in [
            (short, "1 scores for 6 tokens"),
            (nan, "score of token 0 is not a finite float"),
            (not_bytes, "`tokenizer.ggml.precompiled_charsmap` is not bytes"),
            (no_eos, "`tokenizer.ggml.eos_token_id` is missing"),
            (damaged, "`tokenizer.ggml.precompiled_charsmap` is damaged"),
            (mid_char, "`tokenizer.ggml.precompiled_charsmap` is damaged"),
        ] {
            let err = unigram_tokenizer(&g, "x.gguf").unwrap_err();
            assert_eq!(err.code(), "BAD_FILE", "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn garbage_is_a_named_error() {
        for (bytes, want) in [
            (&b"GGU"[..], "magic"),
            (&b"GGML\x03\0\0\0"[..], "not a GGUF file"),
            (&b"GGUF\x09\0\0\0"[..], "GGUF version 9"),
            (&b"GGUF\x03\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f\0\0\0\0\0\0\0\0"[..], "more than the file holds"),
        ] {
            let err = Gguf::parse(bytes, "x.gguf").unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    /// A `llama` file's metadata and tensor table (no bytes: only what the config reads).
    fn llama(extra: &[(&str, MetaValue)], tensors: &[&str]) -> Gguf {
        let mut metadata: HashMap<String, MetaValue> = [
            ("general.architecture", MetaValue::Str("llama".into())),
            ("llama.embedding_length", MetaValue::Int(64)),
            ("llama.feed_forward_length", MetaValue::Int(128)),
            ("llama.block_count", MetaValue::Int(2)),
            ("llama.context_length", MetaValue::Int(512)),
            ("llama.attention.head_count", MetaValue::Int(4)),
            ("llama.attention.head_count_kv", MetaValue::Int(2)),
            ("llama.attention.layer_norm_rms_epsilon", MetaValue::Float(1e-5)),
            ("llama.rope.dimension_count", MetaValue::Int(16)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        metadata.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        let info = |shape: Vec<usize>| TensorInfo { shape, dtype: GgmlType::F32, start: 0, end: 0 };
        let mut table: HashMap<String, TensorInfo> = [("token_embd.weight".to_string(), info(vec![100, 64]))].into();
        table.extend(tensors.iter().map(|n| (n.to_string(), info(vec![64]))));
        Gguf { metadata, tensors: table }
    }

    #[test]
    fn llama_files_run_as_mistral_and_name_what_they_cannot_run() {
        let config = decoder_config(&llama(&[], &[]), "x.gguf").unwrap();
        assert_eq!(config["model_type"], "mistral");
        assert_eq!((config["head_dim"].as_i64(), config["num_key_value_heads"].as_i64()), (Some(16), Some(2)));
        assert_eq!(config["rope_theta"], 10_000.0);
        assert!(config.get("sliding_window").is_none(), "the converter writes no window: none");
        let window = [("llama.attention.sliding_window", MetaValue::Int(4096))];
        assert_eq!(decoder_config(&llama(&window, &[]), "x.gguf").unwrap()["sliding_window"], 4096);
        for (extra, tensors, want) in [
            (vec![("llama.expert_count", MetaValue::Int(8))], vec![], "mixture-of-experts"),
            (vec![], vec!["rope_freqs.weight"], "Llama 3 rotary"),
            (vec![("llama.rope.dimension_count", MetaValue::Int(8))], vec![], "rotary over part"),
            (vec![], vec!["blk.0.attn_q.bias"], "`blk.0.attn_q.bias`"),
            (vec![("llama.rope.scaling.type", MetaValue::Str("linear".into()))], vec![], "rope.scaling.type"),
            (vec![("llama.attention.causal", MetaValue::Bool(false))], vec![], "causal false"),
        ] {
            let err = decoder_config(&llama(&extra, &tensors), "x.gguf").unwrap_err();
            assert_eq!(err.code(), "UNSUPPORTED", "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    /// The row order undoes convert_hf_to_gguf.py's LlamaModel.permute (reshape to
    /// `[heads, 2, head_dim / 2, cols]`, swap the middle axes), for q (4 heads) and k (2 heads).
    #[test]
    fn llama_row_order_undoes_the_converters_permutation() {
        let g = llama(&[], &[]);
        for (name, heads) in [("blk.0.attn_q.weight", 4), ("blk.1.attn_k.weight", 2)] {
            let (rows, half) = (heads * 16, 8);
            // permute(): file row (head, j, part) holds Hugging Face row (head, part, j).
            let file: Vec<usize> = (0..rows).map(|r| (r / 16) * 16 + (r % 16 % 2) * half + (r % 16) / 2).collect();
            let order = llama_row_order(&g, name, rows, "x.gguf").unwrap().unwrap();
            let back: Vec<usize> = order.iter().map(|&i| file[i]).collect();
            assert_eq!(back, (0..rows).collect::<Vec<_>>(), "{name}");
        }
        assert!(llama_row_order(&g, "blk.0.attn_v.weight", 32, "x").unwrap().is_none());
        let err = llama_row_order(&g, "blk.0.attn_q.weight", 30, "x.gguf").unwrap_err().to_string();
        assert!(err.contains("30 rows do not split into 4 heads"), "{err}");
        let mut qwen = g.clone();
        qwen.metadata.insert("general.architecture".into(), MetaValue::Str("qwen3".into()));
        assert!(llama_row_order(&qwen, "blk.0.attn_q.weight", 64, "x").unwrap().is_none(), "qwen3 keeps halves");
    }
}
