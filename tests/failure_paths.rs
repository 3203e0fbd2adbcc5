//! Failure paths that used to abort, hang, leak or cap silently (issue 10): absurd configs,
//! non-finite forward passes, the GPU's token limit and binding limit, f16 range, buffers
//! that must stay at their steady level, what `dtype` a quantized file reports, the model
//! digest, and chunks that leave room for the prompt. Each case starts from a good tiny
//! model and breaks one thing.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::*;
use safetensors::Dtype;
use wembed::backend::Backend;
use wembed::backend::gpu::{GpuWeights, Tiles};
use wembed::embedder::length_groups;
use wembed::tokenizer::Encoded;
use wembed::weights::{FileDtype, HostTensor};
use wembed::{AnyEmbedder, Cpu, Device, Dtype as WDtype, EmbedOptions, Embedder, Gpu, LoadOptions, ModelFiles};

fn tiny(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("model");
    copy_dir(&root().join("tests/fixtures/tiny").join(name), &dst);
    (tmp, dst)
}

fn cpu_load(dir: &Path) -> wembed::Result<Embedder<Cpu>> {
    Embedder::load(Cpu::new(), &ModelFiles::from_dir(dir)?)
}

fn gpu(weights: GpuWeights) -> Gpu {
    pollster::block_on(Gpu::with_weights(weights)).unwrap_or_else(|e| panic!("the GPU tests need an adapter: {e}"))
}

fn err_of<T>(r: wembed::Result<T>) -> wembed::Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn absurd_config_sizes_are_bad_files_before_anything_is_allocated() {
    for (field, value, words) in [
        ("num_hidden_layers", serde_json::json!(1u64 << 31), "num_hidden_layers"),
        ("vocab_size", serde_json::json!(1u64 << 40), "vocab_size"),
        ("hidden_size", serde_json::json!(1u64 << 20), "hidden_size"),
        ("max_position_embeddings", serde_json::json!(1u64 << 30), "max_position_embeddings"),
        ("layer_norm_eps", serde_json::json!(-1e-12), "layer_norm_eps"),
        ("layer_norm_eps", serde_json::json!(0.0), "layer_norm_eps"),
        ("layer_norm_eps", serde_json::json!(1e-60), "layer_norm_eps"),
    ] {
        let (_t, d) = tiny("mean-erf-norm");
        edit_json(&d.join("config.json"), |v| v[field] = value.clone());
        let err = err_of(cpu_load(&d));
        assert_eq!(err.code(), "BAD_FILE", "{field} = {value}: {err}");
        assert!(err.to_string().contains(words), "{field} = {value}: {err}");
    }
}

/// Weights so large that the forward pass overflows f32 in the second layer.
fn overflowing_model() -> (tempfile::TempDir, PathBuf) {
    let (t, d) = tiny("mean-erf-norm");
    edit_weights(&d, |m| {
        let w = m.get_mut("encoder.layer.1.intermediate.dense.weight").unwrap();
        for b in w.2.chunks_exact_mut(4) {
            b.copy_from_slice(&1e38f32.to_le_bytes());
        }
    });
    (t, d)
}

#[test]
fn a_forward_pass_that_overflows_is_bad_weights_naming_the_layer() {
    let (_t, d) = overflowing_model();
    let files = ModelFiles::from_dir(&d).unwrap();
    let texts = ["a short text", "another one, a little longer than the first"];
    let cpu = Embedder::load(Cpu::new(), &files).unwrap();
    let gpu = Embedder::load(gpu(GpuWeights::F32), &files).unwrap();
    for (device, err) in [
        ("cpu", err_of(cpu.embed(&texts, &EmbedOptions::default()))),
        ("gpu", err_of(gpu.embed(&texts, &EmbedOptions::default()))),
    ] {
        assert_eq!(err.code(), "BAD_WEIGHTS", "{device}: {err}");
        assert!(
            err.to_string().contains("encoder.layer.1") && err.to_string().contains("non-finite"),
            "{device}: {err}"
        );
    }
}

/// A pass whose products overflow f16 but not f32 (block 1's intermediate weights at 60,000,
/// which f16 stores: one product with an input past 1.1 is past f16's 65,504) runs again in
/// f32 arithmetic, and the GPU keeps f32 from then on: the vectors are those of f32
/// arithmetic, not an error. Forced on lavapipe (a software adapter computes in f32 by
/// default), in the tiled kernel (more than 32 rows; the few-row one computes in f32).
#[test]
fn a_pass_that_overflows_f16_arithmetic_runs_again_in_f32() {
    let (_t, d) = tiny("mean-erf-norm");
    edit_weights(&d, |m| {
        let w = m.get_mut("encoder.layer.1.intermediate.dense.weight").unwrap();
        assert_eq!(w.0, Dtype::F32);
        for b in w.2.chunks_exact_mut(4) {
            b.copy_from_slice(&60_000f32.to_le_bytes());
        }
    });
    let files = ModelFiles::from_dir(&d).unwrap();
    // 3 texts of 13-17 tokens: one batch of more than 32 rows.
    let texts = [
        "the first of three texts, a sentence of some length",
        "a second text, about as long as the first one is",
        "and a third, which makes the batch longer than thirty-two rows",
    ];
    let load = |half| {
        let mut g = gpu(GpuWeights::F16);
        g.force_tiles(Some(Tiles::Narrow));
        g.force_half_math(Some(half));
        Embedder::load(g, &files).unwrap()
    };
    let f32_math = load(false).embed(&texts, &EmbedOptions::default()).unwrap();
    assert!(f32_math.iter().flatten().all(|v| v.is_finite()), "finite in f32 arithmetic");
    let half = load(true);
    assert!(half.backend().half_math());
    let got = half.embed(&texts, &EmbedOptions::default()).unwrap();
    assert!(!half.backend().half_math(), "f32 arithmetic from now on");
    assert_eq!(got, f32_math, "the f32 pass's vectors");
}

/// The tiny model with a 1,024-position table (the 64 rows repeated), so it takes texts longer
/// than the GPU's attention does.
fn long_model() -> (tempfile::TempDir, PathBuf) {
    let (t, d) = tiny("mean-erf-norm");
    edit_json(&d.join("config.json"), |v| v["max_position_embeddings"] = 1024.into());
    std::fs::remove_file(d.join("sentence_bert_config.json")).ok();
    edit_weights(&d, |m| {
        let p = m.get_mut("embeddings.position_embeddings.weight").unwrap();
        let rows = p.2.clone();
        p.1[0] = 1024;
        p.2 = rows.iter().copied().cycle().take(rows.len() * 16).collect();
    });
    (t, d)
}

#[test]
fn the_gpu_takes_texts_as_long_as_the_model_does() {
    // 1024 positions; a 1000-token text is past the 512-float score row the GPU's attention
    // once held, and 16 of its key tiles (64 keys each for these 12-dim heads). The CPU is the
    // oracle: the same texts, the same vectors.
    let (_t, d) = long_model();
    let files = ModelFiles::from_dir(&d).unwrap();
    let cpu = Embedder::load(Cpu::new(), &files).unwrap();
    let on_gpu = Embedder::load(gpu(GpuWeights::F32), &files).unwrap();
    assert_eq!((cpu.max_tokens(), on_gpu.max_tokens()), (1024, 1024));
    let long = "word ".repeat(998);
    let texts = [long.as_str(), "and a short one beside it", &long[..1500]];
    let want = cpu.embed(&texts, &EmbedOptions::default()).unwrap();
    let got = on_gpu.embed(&texts, &EmbedOptions::default()).unwrap();
    for (w, g) in want.iter().zip(&got) {
        assert!(cosine(w, g) > 0.99999, "cosine {}", cosine(w, g));
    }
    // Past the model's own table, both refuse alike when told not to truncate.
    let longer = "word ".repeat(1100);
    let strict = EmbedOptions { truncate: false, ..Default::default() };
    for err in [err_of(cpu.embed(&[longer.as_str()], &strict)), err_of(on_gpu.embed(&[longer.as_str()], &strict))] {
        assert!(err.to_string().contains("1024"), "{err}");
    }
}

#[test]
fn auto_never_picks_a_device_that_takes_less_than_the_cpu() {
    // lavapipe is a software adapter, so `auto` runs on the CPU here; what matters is that the
    // model's own limit comes through whole.
    let (_t, d) = long_model();
    let files = ModelFiles::from_dir(&d).unwrap();
    let opts = LoadOptions { device: Device::Auto, ..Default::default() };
    let (e, why) = pollster::block_on(AnyEmbedder::load(&files, &opts)).unwrap();
    assert!(matches!(e, AnyEmbedder::Cpu(_)), "{why}");
    assert_eq!(e.max_tokens(), 1024, "{why}");
}

#[test]
fn batches_are_cut_by_tokens_but_never_split_a_text() {
    let enc = |n: usize| Encoded { ids: vec![1; n], type_ids: vec![0; n], truncated: false };
    let encoded: Vec<Encoded> = [5, 40, 3, 30, 30, 100].iter().map(|&n| enc(n)).collect();
    let groups = length_groups(&encoded, 32, 64);
    for g in &groups {
        let tokens: usize = g.iter().map(|&i| encoded[i].ids.len()).sum();
        assert!(tokens <= 64 || g.len() == 1, "{groups:?}");
    }
    let mut all: Vec<usize> = groups.concat();
    all.sort();
    assert_eq!(all, (0..6).collect::<Vec<_>>(), "every text once: {groups:?}");
    assert_eq!(length_groups(&encoded, 2, usize::MAX).len(), 3, "the count limit still holds");
}

#[test]
fn a_word_table_over_the_binding_limit_is_gathered_on_the_host() {
    let dir = root().join("tests/fixtures/tiny/mean-erf-norm");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let texts = ["a short text", "another one, a little longer than the first", "x"];
    let normal = Embedder::load(gpu(GpuWeights::F32), &files).unwrap();
    let want = normal.embed(&texts, &EmbedOptions::default()).unwrap();
    for weights in [GpuWeights::F32, GpuWeights::Q8_0] {
        // The word table (148 x 36 floats, 21 kB) is over this limit; every activation is under.
        let mut small = gpu(weights);
        small.cap_binding_size(20_000);
        let e = Embedder::load(small, &files).unwrap();
        let got = e.embed(&texts, &EmbedOptions::default()).unwrap();
        for (w, g) in want.iter().zip(&got) {
            let bar = if weights == GpuWeights::F32 { 0.999999 } else { 0.999 };
            assert!(cosine(w, g) > bar, "{weights:?}: cosine {}", cosine(w, g));
        }
    }
}

#[test]
fn f16_storage_keeps_weights_beyond_its_range_in_f32() {
    let g = gpu(GpuWeights::F16);
    let plain = g.matrix(HostTensor::new(vec![2, 4], vec![0.5; 8])).unwrap();
    assert_eq!(g.stored_as(&plain), "f16");
    let mut data = vec![0.5; 8];
    data[3] = 1e5;
    let big = g.matrix(HostTensor::new(vec![2, 4], data.clone())).unwrap();
    assert_eq!(g.stored_as(&big), "f32", "1e5 would round to infinity in f16");
}

/// The tiny model, 8 layers deep (layers 0 and 1 repeated).
fn deep_model() -> (tempfile::TempDir, PathBuf) {
    let (t, d) = tiny("mean-erf-norm");
    edit_json(&d.join("config.json"), |v| v["num_hidden_layers"] = 8.into());
    edit_weights(&d, |m| {
        let layer: Vec<(String, (Dtype, Vec<usize>, Vec<u8>))> =
            m.iter().filter(|(n, _)| n.starts_with("encoder.layer.")).map(|(n, v)| (n.clone(), v.clone())).collect();
        for i in 2..8 {
            for (name, v) in &layer {
                let from = if name.starts_with("encoder.layer.0.") { "encoder.layer.0." } else { "encoder.layer.1." };
                if (i % 2 == 0) == (from == "encoder.layer.0.") {
                    m.insert(name.replacen(from, &format!("encoder.layer.{i}."), 1), v.clone());
                }
            }
        }
    });
    (t, d)
}

#[test]
fn gpu_buffers_come_back_to_their_steady_level() {
    // 8 layers at batch size 1: a wave of 8 batches records ~480 dispatches, more params than
    // one 64 KiB uniform chunk holds (the arena used to leak one chunk per such wave).
    let (_t, d) = deep_model();
    let e = Embedder::load(gpu(GpuWeights::F32), &ModelFiles::from_dir(&d).unwrap()).unwrap();
    let texts: Vec<String> = (0..16).map(|i| "word ".repeat(1 + (i * 7) % 23)).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let opts = EmbedOptions { batch_size: Some(1), ..Default::default() };
    let mut levels = vec![];
    for _ in 0..5 {
        e.embed(&refs, &opts).unwrap();
        levels.push(e.backend().live_buffer_bytes());
    }
    assert!(levels[1..].iter().all(|&l| l <= levels[1]), "live GPU bytes grew: {levels:?}");
    // A long batch's large buffers go once short ones follow.
    let long = vec!["word ".repeat(60); 32];
    let long: Vec<&str> = long.iter().map(|s| s.as_str()).collect();
    e.embed(&long, &EmbedOptions::default()).unwrap();
    let peak = e.backend().live_buffer_bytes();
    for _ in 0..3 {
        e.embed(&refs[..2], &opts).unwrap();
    }
    let after = e.backend().live_buffer_bytes();
    assert!(after <= levels[1] && peak > levels[1], "steady {}, after a long batch {peak}, then {after}", levels[1]);
}

#[test]
fn dtype_says_what_the_weights_are_stored_as() {
    let dir = root().join("tests/fixtures/tiny/mean-erf-norm");
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_t, q8) = tiny("mean-erf-norm");
    std::fs::write(q8.join("model.safetensors"), wembed::weights::quantize_file(&bytes, FileDtype::Q8_0, "t").unwrap())
        .unwrap();
    let name = |dir: &Path, device: Device, dtype: WDtype| {
        let files = ModelFiles::from_dir(dir).unwrap();
        let (e, _) =
            pollster::block_on(AnyEmbedder::load(&files, &LoadOptions { device, dtype, profile: false })).unwrap();
        e.dtype_name()
    };
    assert_eq!(name(&dir, Device::Cpu, WDtype::Auto), "f32");
    assert_eq!(name(&dir, Device::Cpu, WDtype::Q4), "q4");
    assert_eq!(name(&dir, Device::Gpu, WDtype::F16), "f16");
    // A q8 file is q8 wherever it runs, whatever `auto` would pick for floats.
    assert_eq!(name(&q8, Device::Cpu, WDtype::Auto), "q8");
    assert_eq!(name(&q8, Device::Gpu, WDtype::Auto), "q8");
}

#[test]
fn the_digest_tells_models_apart_and_not_copies() {
    let a = ModelFiles::from_dir(root().join("tests/fixtures/tiny/mean-erf-norm")).unwrap();
    let b = ModelFiles::from_dir(root().join("tests/fixtures/tiny/cls-tanh-f16")).unwrap();
    let (_t, copy) = tiny("mean-erf-norm");
    let a2 = ModelFiles::from_dir(&copy).unwrap();
    assert_eq!(a.digest().unwrap(), a2.digest().unwrap());
    assert_ne!(a.digest().unwrap(), b.digest().unwrap());
    edit_weights(&copy, |m| {
        let w = m.get_mut("encoder.layer.0.output.dense.bias").unwrap();
        w.2[0] ^= 1;
    });
    assert_ne!(a.digest().unwrap(), ModelFiles::from_dir(&copy).unwrap().digest().unwrap(), "one flipped bit");
}

/// `dir`'s files in memory, the weights left behind a [`wembed::weights::ReadAt`] (the
/// browser's path: the bytes stay in JavaScript's heap) holding `weights`.
fn with_reader(dir: &Path, weights: Vec<u8>) -> ModelFiles {
    let mut files = ModelFiles::from_dir(dir).unwrap();
    files.insert_reader("model.safetensors", Box::new(weights));
    files
}

#[test]
fn weights_read_a_tensor_at_a_time_load_as_from_memory() {
    let dir = minilm_dir();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let whole = ModelFiles::from_dir(&dir).unwrap();
    let read = with_reader(&dir, bytes.clone());
    // The digest reads the same words either way: an index made natively opens in a browser.
    assert_eq!(read.digest().unwrap(), whole.digest().unwrap());
    let texts = ["A man is playing a guitar.", "Semantic search ranks documents by meaning."];
    for dtype in [WDtype::F32, WDtype::Q8, WDtype::Q4] {
        let load = |files: &ModelFiles| {
            let opts = LoadOptions { device: Device::Cpu, dtype, profile: false };
            let (e, _) = pollster::block_on(AnyEmbedder::load(files, &opts)).unwrap();
            pollster::block_on(e.embed_async(&texts, &EmbedOptions::default(), |_, _| {})).unwrap()
        };
        assert_eq!(load(&read), load(&whole), "{dtype:?}: the same vectors, bit for bit");
    }
    // Damaged: named as from memory (the file, and what is wrong).
    let bad = |b: Vec<u8>| {
        let opts = LoadOptions { device: Device::Cpu, dtype: WDtype::F32, profile: false };
        match pollster::block_on(AnyEmbedder::load(&with_reader(&dir, b), &opts)) {
            Ok(_) => panic!("a damaged file loaded"),
            Err(e) => (e.code(), e.to_string()),
        }
    };
    let truncated = bad(bytes[..bytes.len() - 100].to_vec());
    assert_eq!(truncated.0, "BAD_FILE", "{truncated:?}");
    assert!(truncated.1.contains("model.safetensors") && truncated.1.contains("bytes of data"), "{truncated:?}");
    let (code, message) = bad(bytes[..5].to_vec());
    assert_eq!(code, "BAD_FILE", "{message}");
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let (code, message) = bad(huge);
    assert!(code == "BAD_FILE" && message.contains("header"), "{message}");
    let mut garbled = bytes;
    garbled[8..20].copy_from_slice(b"not a header");
    let (code, message) = bad(garbled);
    assert_eq!(code, "BAD_FILE", "{message}");
}

#[test]
fn query_key_and_value_in_different_formats_load_as_floats() {
    // A partly quantized file, as llama.cpp's K_M mixes are (some layers' value projection in
    // Q6_K beside Q4_K query and key): here q8_0 query and key beside an f32 value.
    let (_t, dir) = tiny("mean-erf-norm");
    let path = dir.join("model.safetensors");
    let f32_bytes = std::fs::read(&path).unwrap();
    let want = cpu_load(&dir).unwrap().embed(&["a mixed file loads"], &EmbedOptions::default()).unwrap();
    let q8 = wembed::weights::quantize_file(&f32_bytes, FileDtype::Q8_0, "t").unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&q8).unwrap();
    let original = safetensors::SafeTensors::deserialize(&f32_bytes).unwrap();
    let quantized = safetensors::SafeTensors::deserialize(&q8).unwrap();
    let value = "encoder.layer.0.attention.self.value.weight";
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = quantized.tensors();
    for (name, view) in tensors.iter_mut() {
        if name == value {
            *view = original.tensor(value).unwrap();
        }
    }
    assert!(tensors.iter().any(|(n, v)| n == value && v.dtype() == Dtype::F32));
    std::fs::write(&path, safetensors::serialize(tensors, meta.metadata().clone()).unwrap()).unwrap();
    let got = cpu_load(&dir)
        .expect("a mix of formats in one layer loads")
        .embed(&["a mixed file loads"], &EmbedOptions::default());
    let c = wembed::eval::cosine(&got.unwrap()[0], &want[0]);
    assert!(c >= 0.999, "q8_0 query and key, f32 value: cosine {c} to f32");
}

#[test]
fn chunks_leave_room_for_the_default_prompt() {
    let (_t, d) = tiny("tokentypes-prompt");
    edit_json(&d.join("config_sentence_transformers.json"), |v| {
        v["prompts"]["query"] = "search query: ".into();
        v["default_prompt_name"] = "query".into();
    });
    std::fs::write(d.join("sentence_bert_config.json"), r#"{"max_seq_length": 24}"#).unwrap();
    let e = cpu_load(&d).unwrap();
    let text = "the quick brown fox jumps over the lazy dog again and again until it is tired ".repeat(4);
    let chunks = e.chunks(&text, 1000, 0).unwrap();
    let prompt = e.tokenize(&["search query: "]).unwrap()[0].ids.len();
    assert!(chunks.len() > 2, "prompt of {prompt} tokens: {chunks:?}");
    // Each chunk, with the default prompt, fits without truncation.
    let strict = EmbedOptions { truncate: false, ..Default::default() };
    e.embed(&chunks, &strict)
        .unwrap_or_else(|err| panic!("a chunk did not fit ({prompt}-token prompt, {chunks:?}): {err}"));
}

#[test]
fn chunks_need_no_weights() {
    // A page whose model runs in workers keeps only this on its own thread.
    let dir = root().join("tests/fixtures/tiny/tokentypes-prompt");
    let files = ModelFiles::from_dir(&dir).unwrap();
    let embedder = cpu_load(&dir).unwrap();
    let mut map = HashMap::new();
    for name in ["config.json", "tokenizer.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json"]
    {
        map.insert(name.to_string(), files.get(name).unwrap().to_vec());
    }
    let chunker = wembed::embedder::Chunker::load(&ModelFiles::from_map("no weights", map)).unwrap();
    let text = "the quick brown fox jumps over the lazy dog ".repeat(30);
    assert_eq!(chunker.chunks(&text, 16, 4).unwrap(), embedder.chunks(&text, 16, 4).unwrap());
    assert_eq!(chunker.max_tokens(), embedder.max_tokens());
}

#[test]
fn a_rotary_model_that_overflows_is_bad_weights_naming_the_layer() {
    // NomicBERT (post-norm), ModernBERT (pre-norm: the stream and its norm), Gemma 3 (pre- and
    // post-norm), Qwen3 (pre-norm decoder): each family's block names, on the CPU and the GPU.
    for (name, weight, block) in [
        ("nomic-swiglu", "encoder.layers.1.mlp.fc2.weight", "encoder.layers.1"),
        ("modernbert-local", "layers.1.mlp.Wo.weight", "layers.1"),
        ("gemma3-bidirectional", "layers.1.mlp.down_proj.weight", "layers.1"),
        ("qwen3-lasttoken", "layers.1.mlp.down_proj.weight", "layers.1"),
    ] {
        let (_t, d) = tiny(name);
        edit_weights(&d, |m| {
            for b in m.get_mut(weight).unwrap().2.chunks_exact_mut(4) {
                b.copy_from_slice(&1e38f32.to_le_bytes());
            }
        });
        let files = ModelFiles::from_dir(&d).unwrap();
        let texts = ["a short text", "another one, a little longer than the first"];
        let cpu = Embedder::load(Cpu::new(), &files).unwrap();
        let gpu = Embedder::load(gpu(GpuWeights::F32), &files).unwrap();
        for (device, err) in [
            ("cpu", err_of(cpu.embed(&texts, &EmbedOptions::default()))),
            ("gpu", err_of(gpu.embed(&texts, &EmbedOptions::default()))),
        ] {
            assert_eq!(err.code(), "BAD_WEIGHTS", "{name} on the {device}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(block) && msg.contains("non-finite"), "{name} on the {device}: {err}");
        }
    }
}
