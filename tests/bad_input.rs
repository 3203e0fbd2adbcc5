//! Bad input gets a clear error (or a defined result), never a panic. Each case starts from a
//! good tiny model, breaks one thing, and checks the message names what is wrong.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use safetensors::Dtype;
use wembed::{Cpu, EmbedOptions, Embedder, Error, ModelFiles};

/// A copy of the tiny mean-pooling model in a fresh temporary folder.
fn tiny_copy() -> (tempfile::TempDir, PathBuf) {
    let src = root().join("tests/fixtures/tiny/mean-erf-norm");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("model");
    copy_dir(&src, &dst);
    (tmp, dst)
}

fn load(dir: &Path) -> wembed::Result<Embedder<Cpu>> {
    Embedder::load(Cpu::new(), &ModelFiles::from_dir(dir)?)
}

/// Loading fails, and the message contains every one of `needles`.
fn fails_with(dir: &Path, needles: &[&str]) -> Error {
    let err = match load(dir) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    };
    let msg = err.to_string();
    for n in needles {
        assert!(msg.contains(n), "error `{msg}` should mention `{n}`");
    }
    err
}

const WORD: &str = "embeddings.word_embeddings.weight";

#[test]
fn missing_folder() {
    let err = ModelFiles::from_dir("/no/such/model").err().unwrap();
    assert!(err.to_string().contains("/no/such/model"), "{err}");
}

#[test]
fn missing_config() {
    let (_t, d) = tiny_copy();
    std::fs::remove_file(d.join("config.json")).unwrap();
    fails_with(&d, &["config.json", "not found"]);
}

#[test]
fn malformed_config_json() {
    let (_t, d) = tiny_copy();
    std::fs::write(d.join("config.json"), b"{\"model_type\": \"bert\", ").unwrap();
    fails_with(&d, &["config.json", "not valid"]);
}

#[test]
fn unknown_model_type() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| v["model_type"] = "llama".into());
    fails_with(&d, &["model_type `llama`", "bert"]);
    edit_json(&d.join("config.json"), |v| {
        v["model_type"] = "phi3".into();
        v["architectures"] = serde_json::json!(["Phi3Model"]);
    });
    let err = fails_with(
        &d,
        &[
            "model_type `phi3`",
            "Phi3Model",
            "xlm-roberta, ernie, mpnet, nomic_bert, modernbert, gemma3_text, qwen3, qwen2, mistral",
        ],
    );
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
}

/// A copy of another tiny fixture model.
fn tiny_copy_of(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("model");
    copy_dir(&root().join("tests/fixtures/tiny").join(name), &dst);
    (tmp, dst)
}

#[test]
fn family_specific_config_and_weights_are_checked() {
    // Positions counted from pad_token_id + 1 need it.
    let (_t, d) = tiny_copy_of("xlmr-unigram");
    edit_json(&d.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("pad_token_id");
    });
    fails_with(&d, &["config.json", "pad_token_id"]);
    // MPNet buckets into 32 whatever the config says; another count is not guessed at.
    let (_t, d) = tiny_copy_of("mpnet-relative");
    edit_json(&d.join("config.json"), |v| v["relative_attention_num_buckets"] = 64.into());
    let err = fails_with(&d, &["relative_attention_num_buckets 64"]);
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    // truncate_dim within the vector.
    let (_t, d) = tiny_copy_of("mpnet-relative");
    edit_json(&d.join("config_sentence_transformers.json"), |v| v["truncate_dim"] = 37.into());
    fails_with(&d, &["config_sentence_transformers.json", "truncate_dim 37", "36 values"]);
    // Dense modules: activations wembed has, weights in safetensors, widths that chain.
    let (_t, d) = tiny_copy_of("dense-tanh");
    edit_json(&d.join("2_Dense/config.json"), |v| v["activation_function"] = "torch.nn.modules.activation.SiLU".into());
    let err = fails_with(&d, &["Dense activation `torch.nn.modules.activation.SiLU`", "2_Dense/config.json"]);
    assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    let (_t, d) = tiny_copy_of("dense-tanh");
    edit_json(&d.join("3_Dense/config.json"), |v| v["in_features"] = 36.into());
    fails_with(&d, &["3_Dense/config.json", "in_features 36 after a module with 20 outputs"]);
    let (_t, d) = tiny_copy_of("dense-tanh");
    std::fs::remove_file(d.join("2_Dense/model.safetensors")).unwrap();
    fails_with(&d, &["2_Dense/model.safetensors", "safetensors"]);
    // The tables each family adds are required, by name.
    for (name, key) in [
        ("mpnet-relative", "encoder.relative_attention_bias.weight"),
        ("ernie-tasktype", "ernie.embeddings.task_type_embeddings.weight"),
    ] {
        let (_t, d) = tiny_copy_of(name);
        edit_weights(&d, |m| {
            m.remove(key).unwrap();
        });
        fails_with(&d, &[key, "missing"]);
    }
}

#[test]
fn config_without_model_type() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("model_type");
    });
    fails_with(&d, &["config.json", "model_type"]);
}

#[test]
fn config_missing_a_dimension() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| {
        v.as_object_mut().unwrap().remove("hidden_size");
    });
    fails_with(&d, &["config.json", "hidden_size"]);
}

#[test]
fn heads_do_not_divide_hidden_size() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| v["num_attention_heads"] = 5.into());
    fails_with(&d, &["num_attention_heads"]);
}

#[test]
fn unsupported_activation() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| v["hidden_act"] = "mish".into());
    fails_with(&d, &["hidden_act `mish`"]);
}

#[test]
fn relative_positions_are_refused() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| v["position_embedding_type"] = "relative_key".into());
    fails_with(&d, &["relative_key"]);
}

#[test]
fn truncated_safetensors() {
    let (_t, d) = tiny_copy();
    let p = d.join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&d, &["model.safetensors", "truncated or corrupt"]);
}

#[test]
fn garbage_safetensors() {
    let (_t, d) = tiny_copy();
    std::fs::write(d.join("model.safetensors"), b"this is not a tensor file at all").unwrap();
    fails_with(&d, &["model.safetensors", "not a readable safetensors file"]);
}

#[test]
fn empty_safetensors_file() {
    let (_t, d) = tiny_copy();
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    fails_with(&d, &["model.safetensors"]);
}

#[test]
fn missing_tensor() {
    let (_t, d) = tiny_copy();
    edit_weights(&d, |m| {
        m.remove("encoder.layer.1.output.dense.weight");
    });
    fails_with(&d, &["encoder.layer.1.output.dense.weight", "missing"]);
}

#[test]
fn wrong_shape() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("config.json"), |v| v["intermediate_size"] = 40.into());
    fails_with(&d, &["encoder.layer.0.intermediate.dense.weight", "shape"]);
}

#[test]
fn wrong_dtype() {
    let (_t, d) = tiny_copy();
    edit_weights(&d, |m| {
        let (_, shape, bytes) = m.remove(WORD).unwrap();
        let as_i32: Vec<u8> = bytes
            .chunks_exact(4)
            .flat_map(|b| (f32::from_le_bytes(b.try_into().unwrap()) as i32).to_le_bytes())
            .collect();
        m.insert(WORD.into(), (Dtype::I32, shape, as_i32));
    });
    fails_with(&d, &[WORD, "dtype I32"]);
}

#[test]
fn nan_in_weights() {
    let (_t, d) = tiny_copy();
    edit_weights(&d, |m| {
        let w = m.get_mut("encoder.layer.0.attention.self.key.weight").unwrap();
        w.2[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    });
    fails_with(&d, &["encoder.layer.0.attention.self.key.weight", "non-finite", "index 2"]);
}

#[test]
fn missing_tokenizer() {
    let (_t, d) = tiny_copy();
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    fails_with(&d, &["tokenizer.json", "not found"]);
}

#[test]
fn malformed_tokenizer() {
    let (_t, d) = tiny_copy();
    std::fs::write(d.join("tokenizer.json"), b"{\"model\": 42}").unwrap();
    fails_with(&d, &["tokenizer.json", "not valid"]);
}

#[test]
fn unsupported_sentence_transformers_module() {
    // A module wembed does not run; and Dense, which runs between Pooling and Normalize (as
    // published models have it), not after.
    for (path, kind, needle) in [
        ("3_LayerNorm", "LayerNorm", "sentence_transformers.models.LayerNorm"),
        ("3_Dense", "Dense", "Dense module after Normalize"),
    ] {
        let (_t, d) = tiny_copy();
        edit_json(&d.join("modules.json"), |v| {
            let kind = format!("sentence_transformers.models.{kind}");
            v.as_array_mut().unwrap().push(serde_json::json!({"idx": 3, "name": "3", "path": path, "type": kind}));
        });
        let err = fails_with(&d, &[needle, "modules.json"]);
        assert_eq!(err.code(), "UNSUPPORTED", "{err}");
    }
}

#[test]
fn malformed_modules_json() {
    let (_t, d) = tiny_copy();
    std::fs::write(d.join("modules.json"), b"[{\"type\": 1}]").unwrap();
    fails_with(&d, &["modules.json", "not valid"]);
}

#[test]
fn pooling_with_no_mode() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("1_Pooling/config.json"), |v| v["pooling_mode_mean_tokens"] = false.into());
    fails_with(&d, &["1_Pooling/config.json", "no pooling mode"]);
}

#[test]
fn pooling_config_missing() {
    let (_t, d) = tiny_copy();
    std::fs::remove_dir_all(d.join("1_Pooling")).unwrap();
    fails_with(&d, &["1_Pooling/config.json", "not found"]);
}

#[test]
fn max_seq_length_without_room() {
    let (_t, d) = tiny_copy();
    edit_json(&d.join("sentence_bert_config.json"), |v| v["max_seq_length"] = 1.into());
    fails_with(&d, &["max_seq_length 1"]);
}

#[test]
fn tokenizer_bigger_than_the_model_vocabulary() {
    let (_t, d) = tiny_copy();
    // Drop the last word rows from the model: ids of those words are now out of range.
    edit_json(&d.join("config.json"), |v| v["vocab_size"] = 100.into());
    edit_weights(&d, |m| {
        let w = m.get_mut(WORD).unwrap();
        w.1[0] = 100;
        w.2.truncate(100 * 36 * 4);
    });
    let e = load(&d).unwrap();
    let err = e.embed(&["music all night"], &EmbedOptions::default()).unwrap_err().to_string();
    assert!(err.contains("outside the model's table of 100"), "{err}");
}

#[test]
fn empty_input_list_gives_empty_output() {
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    assert!(e.embed(&[], &EmbedOptions::default()).unwrap().is_empty());
}

#[test]
fn empty_and_blank_strings_embed_like_sentence_transformers() {
    // WordPiece drops whitespace, so both are [CLS] [SEP] (nothing strips them: sentence-transformers 6
    // does not, nor does wembed); the reference includes "".
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let v = e.embed(&["", "  \t\n "], &EmbedOptions::default()).unwrap();
    assert_eq!(v[0], v[1]);
    let reference = tiny_ref(&d);
    let want = &reference.sentences.iter().find(|s| s.text.is_empty()).unwrap().pooled;
    assert!(cosine(&v[0], want) > 0.99999);
}

#[test]
fn very_long_text_is_cut_at_max_seq_length_or_refused() {
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let long = "the dog runs ".repeat(100_000 / 13 + 1);
    assert!(long.len() >= 100_000);
    let v = e.embed(&[&long], &EmbedOptions::default()).unwrap();
    // Cut at 24 tokens: the same as any text whose first 22 words agree.
    let short = "the dog runs ".repeat(10);
    let w = e.embed(&[&short], &EmbedOptions::default()).unwrap();
    assert!(max_abs_diff(&v[0], &w[0]).0 < 1e-6);
    let err = e.embed(&[&long], &EmbedOptions { truncate: false, ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("longer than the model's limit of 24 tokens"), "{err}");
}

#[test]
fn zero_batch_size() {
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let err = e.embed(&["a"], &EmbedOptions { batch_size: Some(0), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}

#[test]
fn unknown_prompt_name() {
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let err = e.embed(&["a"], &EmbedOptions { prompt_name: Some("query".into()), ..Default::default() }).unwrap_err();
    assert!(err.to_string().contains("no prompt named `query`"), "{err}");
}

#[test]
fn odd_characters_give_finite_vectors() {
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let texts = ["\0\u{1}\u{7f}", "\u{202e}reversed", "🧪🧪🧪", "\u{fffd}", "a\u{0301}\u{0301}\u{0301}"];
    for v in e.embed(&texts, &EmbedOptions::default()).unwrap() {
        assert!(v.iter().all(|x| x.is_finite()));
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
}

#[test]
fn quantized_file_with_unknown_format() {
    let (_t, d) = tiny_copy();
    let path = d.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let mut q8 = wembed::weights::quantize_file(&bytes, wembed::weights::FileDtype::Q8_0, "tiny").unwrap();
    // Rename the format in the header (same length, so offsets stay valid).
    let at = q8.windows(6).position(|w| w == b"\"q8_0\"").unwrap();
    q8[at..at + 6].copy_from_slice(b"\"q5_9\"");
    std::fs::write(&path, q8).unwrap();
    fails_with(&d, &["model.safetensors", "wembed.dtype `q5_9`"]);
}

#[test]
fn quantizing_a_quantized_file_is_refused() {
    let (_t, d) = tiny_copy();
    let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
    let q8 = wembed::weights::quantize_file(&bytes, wembed::weights::FileDtype::Q8_0, "tiny").unwrap();
    let err = wembed::weights::quantize_file(&q8, wembed::weights::FileDtype::Q8_0, "tiny").unwrap_err();
    assert!(err.to_string().contains("already quantized"), "{err}");
}

#[test]
fn truncated_tokenizer_json_is_a_bad_file_at_every_cut() {
    // The tokenizers crate panicked on some of these (a cut inside the decoder section, found
    // by the npm package's hostile-input corpus) instead of returning its error.
    let (_t, d) = tiny_copy();
    let full = std::fs::read(d.join("tokenizer.json")).unwrap();
    for cut in (0..full.len()).step_by(97).chain([2706.min(full.len() - 1)]) {
        std::fs::write(d.join("tokenizer.json"), &full[..cut]).unwrap();
        let err = fails_with(&d, &["tokenizer.json"]);
        assert_eq!(err.code(), "BAD_FILE", "cut at {cut}: {err}");
    }
}

#[test]
fn inconsistent_post_processor_templates_are_a_bad_file() {
    // The tokenizers crate takes these from JSON unchecked and panicked on them while encoding
    // (found by fuzzing model folders): wembed refuses them at load, naming what is wrong.
    let cases: [(&str, fn(&mut serde_json::Value)); 4] = [
        ("special token \"[MASK]\"", |p| p["single"][0]["SpecialToken"]["id"] = "[MASK]".into()),
        ("second text", |p| p["single"][1]["Sequence"]["id"] = "B".into()),
        ("ids for", |p| p["special_tokens"]["[CLS]"]["ids"] = serde_json::json!([2, 2])),
        // The same, one level down, in a Sequence of processors.
        ("special token \"[MASK]\"", |p| {
            p["pair"][0]["SpecialToken"]["id"] = "[MASK]".into();
            *p = serde_json::json!({"type": "Sequence", "processors": [p.clone()]});
        }),
    ];
    for (needle, edit) in cases {
        let (_t, d) = tiny_copy();
        edit_json(&d.join("tokenizer.json"), |v| edit(&mut v["post_processor"]));
        let err = fails_with(&d, &["tokenizer.json", needle]);
        assert_eq!(err.code(), "BAD_FILE", "{err}");
    }
}

#[test]
fn truncate_dim_keeps_a_prefix_and_refuses_what_the_model_lacks() {
    // As sentence-transformers' truncate_dim: the first n values of the vector as the model
    // gives it (normalized before the cut), not a renormalized prefix.
    let (_t, d) = tiny_copy();
    let e = load(&d).unwrap();
    let texts = ["music all night", "a quiet morning"];
    let full = e.embed(&texts, &EmbedOptions::default()).unwrap();
    let cut = e.embed(&texts, &EmbedOptions { truncate_dim: Some(10), ..Default::default() }).unwrap();
    for (f, c) in full.iter().zip(&cut) {
        assert_eq!(c.as_slice(), &f[..10]);
    }
    assert_eq!(e.dim_for(&EmbedOptions { truncate_dim: Some(10), ..Default::default() }).unwrap(), 10);
    for n in [0, full[0].len() + 1] {
        let err = e.embed(&texts, &EmbedOptions { truncate_dim: Some(n), ..Default::default() }).unwrap_err();
        assert_eq!(err.code(), "INPUT", "{err}");
        assert!(err.to_string().contains(&format!("truncate_dim {n}")), "{err}");
    }
}
