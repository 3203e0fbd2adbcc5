//! GGUF files written by the `gguf` PyPI package (tests/fixtures/gguf/generate.py) for a tiny
//! random-weight BERT: every tensor type loads, tokenizes like the Hugging Face tokenizer from
//! the GGUF vocabulary alone, dequantizes exactly as gguf-py does, and embeds like PyTorch
//! within each type's budget. Damaged files give named errors.

mod common;

use std::path::PathBuf;

use common::*;
use serde::Deserialize;
use wembed::weights::WeightFile;
use wembed::{Cpu, EmbedOptions, Embedder, Error, ModelFiles};

#[derive(Deserialize)]
struct Text {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct Reference {
    texts: Vec<Text>,
    probe: String,
    probe_rows: std::collections::HashMap<String, Vec<f64>>,
}

fn dir() -> PathBuf {
    root().join("tests/fixtures/gguf")
}

fn reference() -> Reference {
    serde_json::from_slice(&std::fs::read(dir().join("reference.json")).unwrap()).unwrap()
}

/// (type, worst cosine allowed to PyTorch's fp32 vectors): the bars per precision
/// (measured on this model: f32 and f16 1.000000, q8_0 0.999989, q4_0 0.9978, q4_1 0.9983).
const TYPES: [(&str, f64); 5] = [("f32", 0.99999), ("f16", 0.9999), ("q8_0", 0.999), ("q4_0", 0.99), ("q4_1", 0.99)];

fn gguf_path(ty: &str) -> PathBuf {
    dir().join(format!("tiny-bert-{ty}.gguf"))
}

#[test]
fn every_tensor_type_loads_tokenizes_and_embeds_like_pytorch() {
    let reference = reference();
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    for (ty, bar) in TYPES {
        // No tokenizer.json beside these files: the vocabulary comes from the GGUF metadata.
        let files = ModelFiles::from_path(gguf_path(ty)).unwrap();
        assert!(files.get("tokenizer.json").is_none());
        let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("{ty}: {e}"));
        for (t, enc) in reference.texts.iter().zip(embedder.tokenize(&texts).unwrap()) {
            assert_eq!(enc.ids, t.ids, "{ty}: ids of {:?}", t.text);
        }
        let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
        let worst = reference.texts.iter().zip(&vectors).map(|(t, v)| cosine(v, &t.embedding)).fold(1.0, f64::min);
        assert!(worst >= bar, "{ty}: worst cosine {worst:.6} (budget {bar})");
        eprintln!("{ty}: worst cosine {worst:.6}");
    }
}

#[test]
fn blocks_dequantize_exactly_as_gguf_py_does() {
    let reference = reference();
    for ty in ["q8_0", "q4_0", "q4_1"] {
        let bytes = std::fs::read(gguf_path(ty)).unwrap();
        let file = WeightFile::parse_gguf(&bytes, ty).unwrap();
        // blk.0.ffn_up.weight is encoder.layer.0.intermediate.dense.weight: [128, 64].
        assert_eq!(reference.probe, "blk.0.ffn_up.weight");
        let q = file.root().get_quant("encoder.layer.0.intermediate.dense.weight", 128, 64).unwrap().unwrap();
        let mut rows = vec![0.0f32; 2 * 64];
        q.dequantize_rows(0, 2, &mut rows);
        let want = &reference.probe_rows[ty];
        for (i, (g, w)) in rows.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= 1e-6 * w.abs().max(1e-3), "{ty} value {i}: {g} vs gguf-py {w}");
        }
    }
}

#[test]
fn a_tokenizer_json_beside_the_file_wins_and_gives_the_same_ids() {
    let reference = reference();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(gguf_path("q8_0"), tmp.path().join("model-q8_0.gguf")).unwrap();
    std::fs::copy(dir().join("tiny-bert/tokenizer.json"), tmp.path().join("tokenizer.json")).unwrap();
    // A folder with one .gguf and no model.safetensors loads that file.
    let files = ModelFiles::from_dir(tmp.path()).unwrap();
    assert!(files.get("tokenizer.json").is_some());
    let embedder = Embedder::load(Cpu::new(), &files).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    for (t, enc) in reference.texts.iter().zip(embedder.tokenize(&texts).unwrap()) {
        assert_eq!(enc.ids, t.ids, "{:?}", t.text);
    }
}

/// Loads `bytes` as a GGUF model and returns the error.
fn load_err(bytes: Vec<u8>) -> Error {
    let mut files = ModelFiles::from_map("damaged", Default::default());
    files.insert("model.gguf", bytes);
    match Embedder::load(Cpu::new(), &files) {
        Ok(_) => panic!("a damaged file loaded"),
        Err(e) => e,
    }
}

/// Byte offset of the first occurrence of `needle`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn damaged_files_give_named_errors() {
    let good = std::fs::read(gguf_path("q4_1")).unwrap();
    let check = |name: &str, bytes: Vec<u8>, code: &str, words: &[&str]| {
        let err = load_err(bytes);
        let msg = err.to_string();
        assert_eq!(err.code(), code, "{name}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
        }
    };
    // Cut inside the header, the metadata, the tensor table, and the tensor data.
    for cut in [3, 20, 200, good.len() / 3, good.len() - 100] {
        check(&format!("cut at {cut}"), good[..cut].to_vec(), "BAD_FILE", &["truncated"]);
    }
    let mut magic = good.clone();
    magic[..4].copy_from_slice(b"GGML");
    check("magic", magic, "BAD_FILE", &["not a GGUF file"]);
    let mut version = good.clone();
    version[4] = 7;
    check("version", version, "UNSUPPORTED", &["GGUF version 7"]);
    // The architecture string: same length, another family.
    let mut arch = good.clone();
    let at = find(&arch, b"general.architecture") + "general.architecture".len() + 4 + 8;
    arch[at..at + 4].copy_from_slice(b"gpt2");
    check("architecture", arch, "UNSUPPORTED", &["architecture `gpt2`"]);
    // The first tensor's type id (after its name, dimension count and two dimensions) set to
    // a type wembed does not read (ggml Q5_K = 13).
    let name = b"token_embd.weight";
    let table = find(&good[good.len() / 100..], name) + good.len() / 100;
    let mut ty = good.clone();
    let at = table + name.len() + 4 + 16;
    ty[at..at + 4].copy_from_slice(&13u32.to_le_bytes());
    check("tensor type", ty, "UNSUPPORTED", &["token_embd.weight", "ggml type 13"]);
    // Its offset moved past the end.
    let mut offset = good.clone();
    let at = table + name.len() + 4 + 16 + 4;
    offset[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    check("offset", offset, "BAD_FILE", &["token_embd.weight", "runs past the end"]);
    // Its offset moved off the alignment, and onto another tensor's bytes.
    let parsed = wembed::gguf::Gguf::parse(&good, "x").unwrap();
    let data_start = parsed.tensors.values().map(|t| t.start).min().unwrap();
    let own = u64::from_le_bytes(good[at..at + 8].try_into().unwrap());
    let mut unaligned = good.clone();
    unaligned[at..at + 8].copy_from_slice(&(own + 1).to_le_bytes());
    check("unaligned", unaligned, "BAD_FILE", &["token_embd.weight", "alignment"]);
    let other = parsed.tensors.iter().find(|(n, t)| *n != "token_embd.weight" && t.end > t.start).unwrap().1;
    let mut overlap = good.clone();
    overlap[at..at + 8].copy_from_slice(&((other.start - data_start) as u64).to_le_bytes());
    check("overlap", overlap, "BAD_FILE", &["overlap"]);
    // A layer count of 2^32 - 1 (it used to reserve that many layers and abort).
    let mut layers = good.clone();
    let at = find(&layers, b"bert.block_count") + "bert.block_count".len() + 4;
    layers[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    check("block count", layers, "BAD_FILE", &["num_hidden_layers"]);
    // A metadata array claiming 2^32 - 1 strings.
    let mut tokens = good.clone();
    let at = find(&tokens, b"tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".len() + 4 + 4;
    tokens[at..at + 8].copy_from_slice(&(u32::MAX as u64).to_le_bytes());
    check("array count", tokens, "BAD_FILE", &["tokenizer.ggml.tokens", "more than the file holds"]);
    // A block scale set to NaN (f16 0x7e00) in the word table's first block.
    let start = wembed::gguf::Gguf::parse(&good, "x").unwrap().tensors["token_embd.weight"].start;
    let mut nan = good.clone();
    nan[start..start + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    check("NaN scale", nan, "BAD_WEIGHTS", &["embeddings.word_embeddings.weight", "non-finite scale in block 0"]);
}
