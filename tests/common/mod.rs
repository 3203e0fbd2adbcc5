//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wembed::{Cpu, Embedder, ModelFiles};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default model, fetched from PyPI by scripts/fetch-assets.sh. Missing is a failure, not a
/// skip: the test command runs that script first.
pub fn minilm_dir() -> PathBuf {
    asset_model("all-MiniLM-L6-v2")
}

/// assets/models/`name`, which must be there.
fn asset_model(name: &str) -> PathBuf {
    let dir = root().join("assets/models").join(name);
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run scripts/fetch-assets.sh (the test command does)",
        dir.display()
    );
    dir
}

/// all-mpnet-base-v2 (MPNet), fetched from PyPI by scripts/fetch-assets.sh; missing fails.
pub fn mpnet_dir() -> PathBuf {
    asset_model("all-mpnet-base-v2")
}

pub fn minilm() -> Embedder<Cpu> {
    Embedder::load(Cpu::new(), &ModelFiles::from_dir(minilm_dir()).unwrap()).unwrap()
}

#[derive(Deserialize)]
pub struct RefSentence {
    pub text: String,
    pub ids: Vec<u32>,
    pub embedding: Vec<f32>,
}

#[derive(Deserialize)]
pub struct StsbRef {
    pub pairs: usize,
    pub spearman_x100: f64,
}

#[derive(Deserialize)]
pub struct MinilmRef {
    pub model: String,
    pub max_seq_length: usize,
    pub sentences: Vec<RefSentence>,
    pub stsb_test: StsbRef,
}

pub fn minilm_ref() -> MinilmRef {
    model_ref("minilm.json")
}

/// tests/fixtures/mpnet.json: all-mpnet-base-v2 on PyTorch.
pub fn mpnet_ref() -> MinilmRef {
    model_ref("mpnet.json")
}

/// A real model's fixture from tests/fixtures/generate.py.
fn model_ref(name: &str) -> MinilmRef {
    let bytes = std::fs::read(root().join("tests/fixtures").join(name)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[derive(Deserialize)]
pub struct TinySentence {
    pub text: String,
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub hidden: Vec<f32>,
    pub pooled: Vec<f32>,
    /// Decoder fixtures: the ids of the query prompt + text, and the vector without the prompt.
    #[serde(default)]
    pub prompt_ids: Option<Vec<u32>>,
    #[serde(default)]
    pub pooled_no_prompt: Option<Vec<f32>>,
}

/// torch's `MPNetEncoder.relative_position_bucket` of the relative positions `from`, `from + 1`, ….
#[derive(Deserialize)]
pub struct BucketsRef {
    pub from: i64,
    pub buckets: Vec<usize>,
}

#[derive(Deserialize)]
pub struct TinyRef {
    pub variant: String,
    pub prompt_name: Option<String>,
    pub sentences: Vec<TinySentence>,
    #[serde(default)]
    pub relative_buckets: Option<BucketsRef>,
}

pub fn tiny_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fixtures/tiny"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.json").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 8, "expected the tiny fixture models, found {dirs:?}");
    dirs
}

/// `model_type` of a model folder's config.json.
pub fn model_type(dir: &Path) -> String {
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    c["model_type"].as_str().unwrap().to_string()
}

/// The tiny decoder LLMs (Qwen3, Qwen2, Mistral), with the query prompt each has.
pub fn tiny_decoders() -> Vec<(PathBuf, String)> {
    let dirs: Vec<(PathBuf, String)> = tiny_dirs()
        .into_iter()
        .filter(|d| ["qwen3", "qwen2", "mistral"].contains(&model_type(d).as_str()))
        .map(|d| {
            let st: serde_json::Value =
                serde_json::from_slice(&std::fs::read(d.join("config_sentence_transformers.json")).unwrap()).unwrap();
            let prompt = st["prompts"]["query"].as_str().expect("a decoder fixture has a query prompt").to_string();
            (d, prompt)
        })
        .collect();
    assert_eq!(dirs.len(), 3, "the tiny decoders: {dirs:?}");
    dirs
}

pub fn tiny_ref(dir: &std::path::Path) -> TinyRef {
    serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap()
}

/// Worst-case comparison of two vectors: (max abs difference, its index).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0.0, 0), |best, (i, d)| if d > best.0 { (d, i) } else { best })
}

pub use wembed::eval::cosine;

/// Copies a model folder (the tests break copies, never the fixtures).
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

/// Rewrites a JSON file through `f`.
pub fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// name -> (dtype, shape, bytes) of a safetensors file.
pub type TensorMap = HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

/// Rewrites `dir`/model.safetensors through `f`.
pub fn edit_weights(dir: &Path, f: impl FnOnce(&mut TensorMap)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut map: TensorMap =
        st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    f(&mut map);
    let views: Vec<(String, safetensors::tensor::TensorView)> = map
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}
