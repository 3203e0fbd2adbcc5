//! GGUF files written by the `gguf` PyPI package (tests/fixtures/gguf/generate.py) for a tiny
//! random-weight BERT: every tensor type loads, tokenizes like the Hugging Face tokenizer from
//! the GGUF vocabulary alone, dequantizes exactly as gguf-py does, and embeds like PyTorch
//! within each type's budget. Damaged files give named errors. The K-quants (Q4_K, Q5_K, Q6_K)
//! on random blocks (bit for bit against gguf-py) and on a 256-wide tiny BERT. NomicBERT and
//! Qwen3 files of the tiny fixtures (F32, F16, BF16, Q8_0) against PyTorch, the tiny Mistral as
//! `llama` (BF16, F16) against its checkpoint, and random-weight ones whose rows split into
//! blocks (64 wide: Q8_0, Q4_0, Q4_1; 256 wide, Mistral too: the K-quants) against the f32
//! weights they were made from. A SentencePiece vocabulary (`llama`, as E5-mistral's) against
//! transformers 5's LlamaTokenizer.

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
    // a type wembed does not read (ggml Q2_K = 10).
    let name = b"token_embd.weight";
    let table = find(&good[good.len() / 100..], name) + good.len() / 100;
    let mut ty = good.clone();
    let at = table + name.len() + 4 + 16;
    ty[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    check("tensor type", ty, "UNSUPPORTED", &["token_embd.weight", "ggml type 10"]);
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
    // The first other tensor in the file (not any: the table is a hash map, and one near the
    // end put the moved tensor past the end of the file instead, a failure found by CI).
    let other = parsed
        .tensors
        .iter()
        .filter(|(n, t)| *n != "token_embd.weight" && t.end > t.start)
        .min_by_key(|(_, t)| t.start)
        .unwrap()
        .1;
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

// ---- K-quants (Q4_K, Q5_K, Q6_K) ----

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const K_FORMATS: [(&str, wembed::quant::QuantFormat); 3] = [
    ("q4_k", wembed::quant::QuantFormat::Q4K),
    ("q5_k", wembed::quant::QuantFormat::Q5K),
    ("q6_k", wembed::quant::QuantFormat::Q6K),
];

#[test]
fn k_quant_blocks_dequantize_bit_for_bit_as_gguf_py_does() {
    // Four super-blocks of random bytes per type (every level, scale and minimum pattern,
    // finite f16 scales, one subnormal), dequantized by gguf-py in the generator.
    #[derive(Deserialize)]
    struct Case {
        hex: String,
        values: Vec<f64>,
    }
    #[derive(Deserialize)]
    struct Blocks {
        blocks: std::collections::HashMap<String, Case>,
    }
    let fixture: Blocks = serde_json::from_slice(&std::fs::read(dir().join("kquant-blocks.json")).unwrap()).unwrap();
    for (name, format) in K_FORMATS {
        let case = &fixture.blocks[name];
        let bytes = unhex(&case.hex);
        assert_eq!(bytes.len(), 4 * format.block_bytes());
        let q = wembed::quant::QuantMatrix::from_bytes(format, 2, 512, &bytes).unwrap();
        let mut got = vec![0.0f32; 1024];
        q.dequantize_rows(0, 2, &mut got);
        assert_eq!(case.values.len(), 1024);
        for (i, (g, w)) in got.iter().zip(&case.values).enumerate() {
            assert_eq!(g.to_bits(), (*w as f32).to_bits(), "{name} value {i}: {g} vs gguf-py {w}");
        }
    }
}

fn reference_256() -> Reference {
    serde_json::from_slice(&std::fs::read(dir().join("reference-256.json")).unwrap()).unwrap()
}

fn k_path(ty: &str) -> PathBuf {
    dir().join(format!("tiny-bert-256-{ty}.gguf"))
}

/// (type, worst cosine allowed to PyTorch's fp32 vectors) for the 256-wide tiny BERT with every
/// matrix, the word and the position table in the K-quant (our min/max reference quantizer;
/// llama.cpp's searched one does better). Measured on the CPU: q4_k 0.995201, q5_k 0.999014,
/// q6_k 0.999734.
const K_TYPES: [(&str, f64); 3] = [("q4_k", 0.99), ("q5_k", 0.998), ("q6_k", 0.999)];

#[test]
fn k_quant_files_load_and_embed_like_pytorch_within_their_bars() {
    let reference = reference_256();
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    for (ty, bar) in K_TYPES {
        let bytes = std::fs::read(k_path(ty)).unwrap();
        // The file's blocks, as read, equal gguf-py's dequantization of them (to the bit).
        let file = WeightFile::parse_gguf(&bytes, ty).unwrap();
        let q = file.root().get_quant("encoder.layer.0.intermediate.dense.weight", 256, 256).unwrap().unwrap();
        assert_eq!(q.format().name(), ty);
        let mut rows = vec![0.0f32; 2 * 256];
        q.dequantize_rows(0, 2, &mut rows);
        for (i, (g, w)) in rows.iter().zip(&reference.probe_rows[ty]).enumerate() {
            assert_eq!(g.to_bits(), (*w as f32).to_bits(), "{ty} value {i}: {g} vs gguf-py {w}");
        }
        let files = ModelFiles::from_path(k_path(ty)).unwrap();
        let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("{ty}: {e}"));
        for (t, enc) in reference.texts.iter().zip(embedder.tokenize(&texts).unwrap()) {
            assert_eq!(enc.ids, t.ids, "{ty}: ids of {:?}", t.text);
        }
        let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
        let worst = reference.texts.iter().zip(&vectors).map(|(t, v)| cosine(v, &t.embedding)).fold(1.0, f64::min);
        eprintln!("{ty}: worst cosine {worst:.6}");
        assert!(worst >= bar, "{ty}: worst cosine {worst:.6} (budget {bar})");
    }
}

#[test]
fn damaged_k_quant_files_give_named_errors() {
    let good = std::fs::read(k_path("q4_k")).unwrap();
    let check = |name: &str, bytes: Vec<u8>, code: &str, words: &[&str]| {
        let err = load_err(bytes);
        let msg = err.to_string();
        assert_eq!(err.code(), code, "{name}: {msg}");
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} lacks {w:?}");
        }
    };
    // Short tensor data: the file cut inside the last tensors.
    for cut in [good.len() - 100, good.len() * 2 / 3] {
        check(&format!("cut at {cut}"), good[..cut].to_vec(), "BAD_FILE", &["truncated"]);
    }
    // token_embd.weight's row length (its first GGUF dimension) 256 -> 128: no whole super-blocks.
    let name = b"token_embd.weight";
    let table = find(&good[good.len() / 100..], name) + good.len() / 100;
    let mut rows = good.clone();
    let at = table + name.len() + 4;
    assert_eq!(u64::from_le_bytes(rows[at..at + 8].try_into().unwrap()), 256);
    rows[at..at + 8].copy_from_slice(&128u64.to_le_bytes());
    check("row length", rows, "BAD_FILE", &["token_embd.weight", "rows of 128", "blocks of 256"]);
    // A NaN super-block scale (f16 0x7e00) in the word table's first block (d: its first bytes).
    let start = wembed::gguf::Gguf::parse(&good, "x").unwrap().tensors["token_embd.weight"].start;
    let mut nan = good.clone();
    nan[start..start + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    check("NaN scale", nan, "BAD_WEIGHTS", &["embeddings.word_embeddings.weight", "non-finite scale in block 0"]);
}

// ---- NomicBERT and Qwen3 (`nomic-bert`, `qwen3`) ----

/// (GGUF file stem, tiny fixture it was written from).
const ARCHS: [(&str, &str); 2] = [("tiny-nomic", "nomic-swiglu"), ("tiny-qwen3", "qwen3-lasttoken")];

/// (type, worst cosine allowed to the fixture's PyTorch vectors). The tiny models are 36 wide,
/// so no matrix row splits into 32-weight blocks: llama.cpp's converter falls back to F16 for
/// every matrix of a Q8_0 file, and so does the generator; q8_0 therefore has f16's bar.
/// BF16 keeps 8 bits of mantissa to F16's 11, and has F16's bar. Measured worst: NomicBERT
/// 1.0000000, 0.9999999, 0.9999956, 0.9999999; Qwen3 1.0000000, 0.9999987, 0.9999390, 0.9999987.
const ARCH_TYPES: [(&str, f64); 4] = [("f32", 0.99999), ("f16", 0.9999), ("bf16", 0.9999), ("q8_0", 0.9999)];

/// A folder holding the GGUF file and the fixture's sentence-transformers configs that GGUF
/// has no keys for (`max_seq_length`; the query prompt), but no tokenizer.json: the vocabulary
/// comes from the GGUF metadata, the pooling from `<arch>.pooling_type`.
fn arch_folder(stem: &str, variant: &str, ty: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir().join(format!("{stem}-{ty}.gguf")), tmp.path().join("model.gguf")).unwrap();
    let tiny = root().join("tests/fixtures/tiny").join(variant);
    for name in ["sentence_bert_config.json", "config_sentence_transformers.json"] {
        std::fs::copy(tiny.join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

/// Embeds the fixture's texts with and without its prompt; returns the worst cosine to PyTorch.
fn worst_cosine<B>(embedder: &Embedder<B>, reference: &TinyRef, what: &str) -> f64
where
    B: wembed::Backend + Sync,
    B::Tensor: Send,
    B::Matrix: Sync,
    B::Vector: Sync,
{
    let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
    for (s, enc) in reference.sentences.iter().zip(embedder.tokenize(&texts).unwrap()) {
        assert_eq!(enc.ids, s.ids, "{what}: ids of {:?}", s.text);
    }
    let mut worst = 1.0f64;
    for prompt in [reference.prompt_name.clone(), None] {
        let opts = EmbedOptions { prompt_name: prompt.clone(), ..Default::default() };
        let vectors = embedder.embed(&texts, &opts).unwrap();
        for (s, v) in reference.sentences.iter().zip(&vectors) {
            let want = if prompt.is_some() { Some(&s.pooled) } else { s.pooled_no_prompt.as_ref() };
            if let Some(want) = want {
                worst = worst.min(cosine(v, want));
            }
        }
    }
    worst
}

#[test]
fn nomic_bert_and_qwen3_files_load_tokenize_and_embed_like_pytorch() {
    for (stem, variant) in ARCHS {
        let reference = tiny_ref(&root().join("tests/fixtures/tiny").join(variant));
        for (ty, bar) in ARCH_TYPES {
            let folder = arch_folder(stem, variant, ty);
            let files = ModelFiles::from_dir(folder.path()).unwrap();
            assert!(files.get("tokenizer.json").is_none());
            let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("{stem}-{ty}: {e}"));
            let worst = worst_cosine(&embedder, &reference, &format!("{stem}-{ty}"));
            eprintln!("{stem}-{ty}: worst cosine {worst:.7}");
            assert!(worst >= bar, "{stem}-{ty}: worst cosine {worst:.7} (bar {bar})");
        }
    }
}

#[test]
fn nomic_bert_and_qwen3_files_embed_like_pytorch_on_the_gpu() {
    let gpu = || {
        pollster::block_on(wembed::Gpu::with_weights(wembed::backend::gpu::GpuWeights::F32))
            .unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}"))
    };
    for (stem, variant) in ARCHS {
        let reference = tiny_ref(&root().join("tests/fixtures/tiny").join(variant));
        let folder = arch_folder(stem, variant, "f32");
        let files = ModelFiles::from_dir(folder.path()).unwrap();
        let embedder = Embedder::load(gpu(), &files).unwrap();
        let worst = worst_cosine(&embedder, &reference, &format!("{stem}-f32 on the GPU"));
        eprintln!("{stem}-f32 on the GPU: worst cosine {worst:.7}");
        assert!(worst >= 0.99999, "{stem}-f32 on the GPU: worst cosine {worst:.7}");
    }
    // Q8_0 blocks in every matrix (the 64-wide files): the GPU's block kernels as the CPU's.
    for arch in ["nomic", "qwen3"] {
        let files = ModelFiles::from_path(dir().join(format!("wide-{arch}-q8_0.gguf"))).unwrap();
        let texts = ["the quick brown fox", "", "a b c d e f g h"];
        let cpu = Embedder::load(Cpu::new(), &files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        let gpu = Embedder::load(gpu(), &files).unwrap();
        assert_eq!(gpu.dtype_name(), "q8");
        let worst = gpu
            .embed(&texts, &EmbedOptions::default())
            .unwrap()
            .iter()
            .zip(&cpu)
            .map(|(g, c)| cosine(g, c))
            .fold(1.0, f64::min);
        eprintln!("wide-{arch}-q8_0 on the GPU: worst cosine to the CPU {worst:.7}");
        assert!(worst >= 0.99999, "wide-{arch}-q8_0 on the GPU: worst cosine to the CPU {worst:.7}");
    }
    // Mistral as `llama` (q/k rows put back in the Hugging Face order at load) and a 256-wide
    // K-quant file of each architecture, each K-quant once (lavapipe takes ~0.8 s a file; the
    // K-quant kernels themselves are tests/gpu.rs's): the GPU's kernels as the CPU's on the same
    // file.
    let texts = ["the quick brown fox", "", "a b c d e f g h"];
    let mistral = arch_folder("tiny-mistral", "mistral-window", "bf16");
    let mut files = vec![ModelFiles::from_dir(mistral.path()).unwrap()];
    for wide in ["wide-nomic-q4_k", "wide-qwen3-q5_k", "wide-mistral-q6_k"] {
        files.push(ModelFiles::from_path(dir().join(format!("{wide}.gguf"))).unwrap());
    }
    for files in &files {
        let what = files.origin().to_string();
        let cpu = Embedder::load(Cpu::new(), files).unwrap().embed(&texts, &EmbedOptions::default()).unwrap();
        let gpu = Embedder::load(gpu(), files).unwrap();
        let worst = gpu
            .embed(&texts, &EmbedOptions::default())
            .unwrap()
            .iter()
            .zip(&cpu)
            .map(|(g, c)| cosine(g, c))
            .fold(1.0, f64::min);
        eprintln!("{what} on the GPU: worst cosine to the CPU {worst:.7}");
        assert!(worst >= 0.99999, "{what} on the GPU: worst cosine to the CPU {worst:.7}");
    }
}

#[test]
fn damaged_nomic_bert_qwen3_and_llama_files_give_named_errors() {
    // (file, a tensor to lose: its wembed and GGUF names, a matrix to misshape: the same).
    for (stem, lost, lost_gguf, bent, bent_gguf) in [
        (
            "tiny-mistral-bf16",
            "layers.1.mlp.up_proj.weight",
            "blk.1.ffn_up.weight",
            "layers.0.self_attn.k_proj.weight",
            "blk.0.attn_k.weight",
        ),
        (
            "tiny-nomic-f32",
            "encoder.layers.1.mlp.fc12.weight",
            "blk.1.ffn_gate.weight",
            "encoder.layers.0.attn.Wqkv.weight",
            "blk.0.attn_qkv.weight",
        ),
        (
            "tiny-qwen3-f32",
            "layers.2.self_attn.k_norm.weight",
            "blk.2.attn_k_norm.weight",
            "layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
        ),
    ] {
        let good = std::fs::read(dir().join(format!("{stem}.gguf"))).unwrap();
        let check = |what: &str, bytes: Vec<u8>, words: &[&str]| {
            let err = load_err(bytes);
            let msg = err.to_string();
            assert_eq!(err.code(), "BAD_WEIGHTS", "{stem} {what}: {msg}");
            for w in words {
                assert!(msg.contains(w), "{stem} {what}: {msg:?} lacks {w:?}");
            }
        };
        // Renamed (same length) to a name the architecture does not have: missing.
        let mut missing = good.clone();
        let at = find(&missing, lost_gguf.as_bytes());
        missing[at..at + 4].copy_from_slice(b"xxx.");
        check("missing", missing, &[lost, lost_gguf, "missing"]);
        // Half as wide and twice as many rows (the same bytes, so the table stays valid).
        let mut bent_file = good.clone();
        let dims = find(&good, bent_gguf.as_bytes()) + bent_gguf.len() + 4;
        let read = |at: usize| u64::from_le_bytes(good[at..at + 8].try_into().unwrap());
        let (cols, rows) = (read(dims), read(dims + 8));
        bent_file[dims..dims + 8].copy_from_slice(&(cols / 2).to_le_bytes());
        bent_file[dims + 8..dims + 16].copy_from_slice(&(rows * 2).to_le_bytes());
        let want = format!("[{}, {}]", rows * 2, cols / 2);
        check("misshapen", bent_file, &[bent, &want, "the config implies"]);
    }
}

/// (arch, type, what wembed stores, worst cosine to the F32 file of the same weights) for the
/// 64-wide random-weight `nomic-bert` and `qwen3` files, whose every matrix and word table is in
/// real blocks (so the stacking of q/k/v and gate/up blocks is exercised; a misplaced block
/// scores near 0). Q4_0 blocks are kept as q4_1 (an exact re-encoding). Measured: nomic-bert
/// q8_0 0.999976, q4_0 0.996511, q4_1 0.995717; qwen3 q8_0 0.999313, q4_0 0.901273, q4_1
/// 0.932599 — 4-bit matrices cost a random causal decoder pooled at one token far more, as they
/// cost MiniLM (README).
const WIDE_TYPES: [(&str, &str, &str, f64); 6] = [
    ("nomic", "q8_0", "q8", 0.9999),
    ("nomic", "q4_0", "q4_1 matrices, q4_1 word table", 0.99),
    ("nomic", "q4_1", "q4_1 matrices, q4_1 word table", 0.99),
    ("qwen3", "q8_0", "q8", 0.999),
    ("qwen3", "q4_0", "q4_1 matrices, q4_1 word table", 0.85),
    ("qwen3", "q4_1", "q4_1 matrices, q4_1 word table", 0.85),
];

#[test]
fn wide_nomic_bert_and_qwen3_block_files_stay_close_to_their_f32_file() {
    for (arch, variant) in [("nomic", "nomic-swiglu"), ("qwen3", "qwen3-lasttoken")] {
        let reference = tiny_ref(&root().join("tests/fixtures/tiny").join(variant));
        let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
        let load = |ty: &str| {
            let files = ModelFiles::from_path(dir().join(format!("wide-{arch}-{ty}.gguf"))).unwrap();
            Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("wide-{arch}-{ty}: {e}"))
        };
        let f32 = load("f32").embed(&texts, &EmbedOptions::default()).unwrap();
        for (_, ty, stored, bar) in WIDE_TYPES.into_iter().filter(|t| t.0 == arch) {
            let embedder = load(ty);
            assert_eq!(embedder.dtype_name(), stored, "wide-{arch}-{ty}");
            let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
            let worst = vectors.iter().zip(&f32).map(|(v, w)| cosine(v, w)).fold(1.0, f64::min);
            eprintln!("wide-{arch}-{ty}: worst cosine to f32 {worst:.6}");
            assert!(worst >= bar, "wide-{arch}-{ty}: worst cosine {worst:.6} to the f32 file (bar {bar})");
        }
    }
}

// ---- Mistral as `llama` (what llama.cpp's converter makes of MistralModel / E5-mistral) ----

/// The tiny Mistral fixture's folder with `sliding_window` taken out of its config.json: the
/// model a `llama` GGUF file of its weights describes (GGUF `llama` has no window; see
/// `wembed::gguf`'s `decoder_config`).
fn mistral_without_window() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let tiny = root().join("tests/fixtures/tiny/mistral-window");
    for entry in std::fs::read_dir(&tiny).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(tmp.path().join("1_Pooling")).unwrap();
    std::fs::copy(tiny.join("1_Pooling/config.json"), tmp.path().join("1_Pooling/config.json")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["sliding_window"], 4);
    config.as_object_mut().unwrap().remove("sliding_window");
    std::fs::write(tmp.path().join("config.json"), config.to_string()).unwrap();
    tmp
}

/// (type, worst cosine allowed to the same weights run from the safetensors folder without the
/// window, with and without the query prompt). The fixture is stored in bf16, so the bf16 file
/// holds its exact values, and so does the f16 one (bf16's 8 mantissa bits fit in f16's 11 at
/// these magnitudes). Measured worst: 1.0000000 for both, and 1.0000000 to PyTorch's vector of
/// the one text the window does not cut.
const MISTRAL_TYPES: [(&str, f64); 2] = [("bf16", 0.99999), ("f16", 0.9999)];

/// The vectors of `texts` with and without the query prompt.
fn with_and_without_prompt<B>(embedder: &Embedder<B>, texts: &[&str]) -> Vec<Vec<f32>>
where
    B: wembed::Backend + Sync,
    B::Tensor: Send,
    B::Matrix: Sync,
    B::Vector: Sync,
{
    let query = EmbedOptions { prompt_name: Some("query".into()), ..Default::default() };
    let mut out = embedder.embed(texts, &query).unwrap();
    out.extend(embedder.embed(texts, &EmbedOptions::default()).unwrap());
    out
}

#[test]
fn mistral_files_as_llama_load_tokenize_and_embed_like_the_checkpoint() {
    let reference = tiny_ref(&root().join("tests/fixtures/tiny/mistral-window"));
    let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();
    let unwindowed = mistral_without_window();
    let checkpoint = Embedder::load(Cpu::new(), &ModelFiles::from_dir(unwindowed.path()).unwrap()).unwrap();
    let want = with_and_without_prompt(&checkpoint, &texts);
    for (ty, bar) in MISTRAL_TYPES {
        // No pooling type in the file (LlamaModel writes none): the decoders' last token.
        let folder = arch_folder("tiny-mistral", "mistral-window", ty);
        let files = ModelFiles::from_dir(folder.path()).unwrap();
        assert!(files.get("tokenizer.json").is_none());
        let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("tiny-mistral-{ty}: {e}"));
        assert_eq!(embedder.dtype_name(), "f32", "tiny-mistral-{ty}: floats are read as f32 on the CPU");
        for (s, enc) in reference.sentences.iter().zip(embedder.tokenize(&texts).unwrap()) {
            assert_eq!(enc.ids, s.ids, "tiny-mistral-{ty}: ids of {:?}", s.text);
        }
        let got = with_and_without_prompt(&embedder, &texts);
        let worst = got.iter().zip(&want).map(|(g, w)| cosine(g, w)).fold(1.0, f64::min);
        eprintln!("tiny-mistral-{ty}: worst cosine to the checkpoint without its window {worst:.7}");
        assert!(worst >= bar, "tiny-mistral-{ty}: worst cosine {worst:.7} (bar {bar})");
        // PyTorch's own vectors (window 4) where the window cuts nothing: texts of up to 4 tokens.
        let n = texts.len();
        let mut short = 0;
        for (i, s) in reference.sentences.iter().enumerate() {
            let cos = cosine(&got[n + i], s.pooled_no_prompt.as_ref().unwrap());
            if s.ids.len() <= 4 {
                short += 1;
                eprintln!("tiny-mistral-{ty}: {:?} ({} tokens) cosine {cos:.7} to PyTorch", s.text, s.ids.len());
                assert!(cos >= bar, "tiny-mistral-{ty}: {:?} cosine {cos:.7} to PyTorch", s.text);
            }
        }
        assert!(short >= 1, "no fixture text short enough to tie the file to PyTorch");
    }
}

// ---- 256-wide random-weight K-quant files of every decoder and NomicBERT ----

#[derive(Deserialize)]
struct WideText {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WideArch {
    texts: Vec<WideText>,
    /// Per K-quant type, the numpy pass over the weights as that file holds them (gguf-py's
    /// dequantization of its blocks), for the texts [`DEQUANTIZED_TEXTS`].
    dequantized: std::collections::HashMap<String, Vec<Vec<f32>>>,
}

/// The texts (indices into `texts`) of [`WideArch::dequantized`], as the generator's list.
const DEQUANTIZED_TEXTS: [usize; 3] = [0, 1, 6];

#[derive(Deserialize)]
struct Wide256 {
    archs: std::collections::HashMap<String, WideArch>,
}

/// (file stem's arch, GGUF architecture, type, worst cosine allowed to the float64 numpy pass over
/// the same f32 weights in tests/fixtures/gguf/reference-wide-256.json): one-layer 256-wide models
/// whose every matrix and word table is in the K-quant (our min/max reference quantizer). The
/// generator checks that numpy pass against the tiny fixtures' PyTorch hidden states first (max
/// abs 3.6e-6), and this test checks that what wembed computes from each file equals that pass
/// over the file's own dequantized weights, so the distance measured is the K-quant's alone.
/// Measured worst on the CPU (the GPU gives the CPU's vectors), the table in `wembed::quant`:
/// NomicBERT 0.998217, 0.999510, 0.999869; Qwen3 0.949740, 0.989963, 0.996994; Mistral as
/// `llama` 0.975493, 0.994021, 0.998390. A random one-layer decoder pooled at one token loses
/// far more than an encoder pooled over every token, as the 64-wide Q4_0 files show too.
const WIDE_256: [(&str, &str, &str, f64); 9] = [
    ("nomic", "nomic-bert", "q4_k", 0.99),
    ("nomic", "nomic-bert", "q5_k", 0.999),
    ("nomic", "nomic-bert", "q6_k", 0.999),
    ("qwen3", "qwen3", "q4_k", 0.94),
    ("qwen3", "qwen3", "q5_k", 0.985),
    ("qwen3", "qwen3", "q6_k", 0.99),
    ("mistral", "llama", "q4_k", 0.97),
    ("mistral", "llama", "q5_k", 0.99),
    ("mistral", "llama", "q6_k", 0.99),
];

/// The tiny fixture whose tokenizer and layout a wide file has.
fn tiny_variant(arch: &str) -> &'static str {
    match arch {
        "nomic" => "nomic-swiglu",
        "qwen3" => "qwen3-lasttoken",
        _ => "mistral-window",
    }
}

fn wide_256() -> Wide256 {
    serde_json::from_slice(&std::fs::read(dir().join("reference-wide-256.json")).unwrap()).unwrap()
}

#[test]
fn wide_k_quant_files_of_every_architecture_stay_within_their_bars() {
    let reference = wide_256();
    let mut failed = vec![];
    for (arch, gguf_arch, ty, bar) in WIDE_256 {
        let bytes = std::fs::read(dir().join(format!("wide-{arch}-{ty}.gguf"))).unwrap();
        assert_eq!(wembed::gguf::Gguf::parse(&bytes, ty).unwrap().architecture(), gguf_arch);
        // With the tiny fixture's max_seq_length, as its ids were cut.
        let folder = arch_folder(&format!("wide-{arch}"), tiny_variant(arch), ty);
        let embedder = Embedder::load(Cpu::new(), &ModelFiles::from_dir(folder.path()).unwrap())
            .unwrap_or_else(|e| panic!("wide-{arch}-{ty}: {e}"));
        // Every matrix (q/k/v and gate/up stacked) and the word table kept in the file's blocks.
        assert_eq!(embedder.dtype_name(), format!("{ty} matrices, {ty} word table"), "wide-{arch}-{ty}");
        let want = &reference.archs[arch].texts;
        let texts: Vec<&str> = want.iter().map(|t| t.text.as_str()).collect();
        for (t, enc) in want.iter().zip(embedder.tokenize(&texts).unwrap()) {
            assert_eq!(enc.ids, t.ids, "wide-{arch}-{ty}: ids of {:?}", t.text);
        }
        let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
        // What the file holds, computed right: within f32 rounding of numpy on its dequantized
        // weights. So the distance to the f32 vectors below is what the K-quant loses.
        let held = &reference.archs[arch].dequantized[ty];
        let exact = DEQUANTIZED_TEXTS.iter().zip(held).map(|(&i, d)| cosine(&vectors[i], d)).fold(1.0, f64::min);
        assert!(exact >= 0.99999, "wide-{arch}-{ty}: worst cosine {exact:.7} to its own dequantized weights");
        let worst = vectors.iter().zip(want).map(|(v, t)| cosine(v, &t.embedding)).fold(1.0, f64::min);
        eprintln!(
            "wide-{arch}-{ty} ({gguf_arch}): worst cosine to f32 {worst:.6} (to its dequantized weights {exact:.7})"
        );
        if worst < bar {
            failed.push(format!("wide-{arch}-{ty}: worst cosine {worst:.6} to the f32 reference (bar {bar})"));
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}

// ---- A SentencePiece vocabulary (`tokenizer.ggml.model` "llama", as E5-mistral's files carry) ----

#[derive(Deserialize)]
struct SpmReference {
    texts: Vec<Text>,
}

/// The pieces, scores and types of a SentencePiece BPE model trained by the generator, written as
/// llama.cpp's converter writes a tokenizer.model, give transformers 5's LlamaTokenizer ids
/// (spaces at either end and doubled, digits, accents, CJK and emoji by byte fallback, the empty
/// text, `<s>` inside a text; BOS and the EOS that `add_eos_token` appends), and the file embeds
/// like a float64 numpy pass over the same f16 weights (last token: the appended `</s>`).
/// Measured worst cosine 1.0000000.
#[test]
fn llama_sentencepiece_vocabulary_tokenizes_like_transformers_and_embeds() {
    let reference: SpmReference =
        serde_json::from_slice(&std::fs::read(dir().join("reference-spm.json")).unwrap()).unwrap();
    let files = ModelFiles::from_path(dir().join("tiny-llama-spm-f16.gguf")).unwrap();
    assert!(files.get("tokenizer.json").is_none());
    let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("tiny-llama-spm-f16: {e}"));
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    assert!(texts.len() >= 30 && texts.contains(&"") && texts.contains(&"🙂"));
    for (t, enc) in reference.texts.iter().zip(embedder.tokenize(&texts).unwrap()) {
        assert_eq!(enc.ids, t.ids, "ids of {:?}", t.text);
    }
    let vectors = embedder.embed(&texts, &EmbedOptions::default()).unwrap();
    let worst = reference.texts.iter().zip(&vectors).map(|(t, v)| cosine(v, &t.embedding)).fold(1.0, f64::min);
    eprintln!("tiny-llama-spm-f16: worst cosine {worst:.7} over {} texts", texts.len());
    assert!(worst >= 0.99999, "tiny-llama-spm-f16: worst cosine {worst:.7}");
}

// ---- XLM-RoBERTa's Unigram vocabulary (`tokenizer.ggml.model` "t5" in a `bert` file, as bge-m3's) ----

#[derive(Deserialize)]
struct T5Text {
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct T5Reference {
    texts: Vec<T5Text>,
}

/// The pieces, scores, types and `precompiled_charsmap` of a Unigram model trained by the
/// generator, written as llama.cpp's converter writes XLM-RoBERTa's (bge-m3, multilingual-e5),
/// give transformers 5's XLMRobertaTokenizer ids (the charsmap's full-width letters, ligature and
/// ideographic space; spaces squeezed; `<unk>` for unseen scripts; `<s>` inside a text), and
/// the file embeds exactly as it does with that tokenizer's tokenizer.json beside it.
#[test]
fn xlm_roberta_unigram_vocabulary_tokenizes_like_transformers() {
    let reference: T5Reference =
        serde_json::from_slice(&std::fs::read(dir().join("reference-t5.json")).unwrap()).unwrap();
    let texts: Vec<&str> = reference.texts.iter().map(|t| t.text.as_str()).collect();
    let from_metadata = tempfile::tempdir().unwrap();
    let beside = tempfile::tempdir().unwrap();
    for folder in [&from_metadata, &beside] {
        std::fs::copy(dir().join("tiny-xlmr-t5-f16.gguf"), folder.path().join("model.gguf")).unwrap();
    }
    std::fs::copy(dir().join("tiny-xlmr-t5-tokenizer.json"), beside.path().join("tokenizer.json")).unwrap();
    let mut vectors = vec![];
    for (what, folder) in [("metadata", &from_metadata), ("tokenizer.json", &beside)] {
        let files = ModelFiles::from_dir(folder.path()).unwrap();
        let embedder = Embedder::load(Cpu::new(), &files).unwrap_or_else(|e| panic!("tiny-xlmr-t5 ({what}): {e}"));
        for (t, enc) in reference.texts.iter().zip(embedder.tokenize(&texts).unwrap()) {
            assert_eq!(enc.ids, t.ids, "{what}: ids of {:?}", t.text);
        }
        vectors.push(embedder.embed(&texts, &EmbedOptions::default()).unwrap());
    }
    assert_eq!(vectors[0], vectors[1], "the same ids embed the same");
}
