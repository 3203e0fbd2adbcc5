//! `wembed pack`: the folder a web page loads. The weights in one dtype, every other file the
//! loader reads (exactly those: `ModelFiles` names them), and `manifest.json` with each file's
//! size and SHA-256, which the npm package checks when it fetches a pack (www/src/files.js).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use serde::Serialize;
use sha2::{Digest, Sha256};
use wembed::ModelFiles;
use wembed::weights::{DTYPE_KEY, FileDtype, quantize_file};

/// The manifest's name in a pack; the loaders look for it under this name.
pub const MANIFEST: &str = "manifest.json";

#[derive(clap::Args, Debug)]
pub struct PackArgs {
    /// weights in the pack: q8 (matrices and word table in q8_0), q4 (word table in q4_1,
    /// matrices in q8_0), f16, or f32 (the checkpoint's f32 weights unchanged)
    #[arg(long, value_enum, default_value_t = PackDtype::Q8)]
    dtype: PackDtype,
    /// a sentence-transformers folder with safetensors weights
    model_dir: PathBuf,
    /// where to write the pack: a new or empty folder
    out_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PackDtype {
    Q8,
    Q4,
    F16,
    F32,
}

impl PackDtype {
    fn name(self) -> &'static str {
        match self {
            PackDtype::Q8 => "q8",
            PackDtype::Q4 => "q4",
            PackDtype::F16 => "f16",
            PackDtype::F32 => "f32",
        }
    }

    fn file_dtype(self) -> Option<FileDtype> {
        match self {
            PackDtype::Q8 => Some(FileDtype::Q8_0),
            PackDtype::Q4 => Some(FileDtype::Q4),
            PackDtype::F16 => Some(FileDtype::F16),
            PackDtype::F32 => None,
        }
    }
}

#[derive(Serialize)]
struct Manifest {
    format: &'static str,
    version: u32,
    dtype: &'static str,
    files: BTreeMap<String, Entry>,
}

#[derive(Serialize)]
struct Entry {
    size: u64,
    sha256: String,
}

pub fn run(args: &PackArgs) -> Result<(), String> {
    let (input, output) = (args.model_dir.as_path(), args.out_dir.as_path());
    let files = ModelFiles::from_dir(input).map_err(|e| e.to_string())?;
    let Some(weights) = files.get("model.safetensors") else {
        return Err(format!(
            "{} has no model.safetensors: pack takes a sentence-transformers folder (a .gguf file \
             loads as it is: serve it with tokenizer.json beside it)",
            input.display()
        ));
    };
    // The weights record where they came from: the folder's name, not a local path (a pack is
    // published).
    let folder =
        std::fs::canonicalize(input).ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let label = format!("{}/model.safetensors", folder.as_deref().unwrap_or("model"));
    let packed = pack_weights(weights, args.dtype, &label)?;
    create_empty(output)?;

    let mut manifest = Manifest { format: "wembed-pack", version: 1, dtype: args.dtype.name(), files: BTreeMap::new() };
    for name in files.names() {
        let bytes = if name == "model.safetensors" { packed.as_slice() } else { files.get(name).unwrap_or_default() };
        let target = output.join(name);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&target, bytes).map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        let sha256 = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        manifest.files.insert(name.to_string(), Entry { size: bytes.len() as u64, sha256 });
    }
    let mut json = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    json.push('\n');
    let target = output.join(MANIFEST);
    std::fs::write(&target, json).map_err(|e| format!("cannot write {}: {e}", target.display()))?;

    let total: u64 = manifest.files.values().map(|e| e.size).sum();
    println!("{} -> {} ({} weights)", input.display(), output.display(), args.dtype.name());
    for (name, entry) in &manifest.files {
        println!("  {:>12}  {name}", entry.size);
    }
    println!(
        "{} files, {:.1} MB (weights {:.1} -> {:.1} MB), and {MANIFEST} with their SHA-256",
        manifest.files.len(),
        total as f64 / 1e6,
        weights.len() as f64 / 1e6,
        packed.len() as f64 / 1e6
    );
    Ok(())
}

/// The weights in `dtype` (`source` names them in messages and in the file's metadata). A file already in that dtype (a `wembed quantize` file) is copied;
/// f32 is the checkpoint itself, so only a checkpoint that is f32 throughout can be packed as f32.
fn pack_weights(bytes: &[u8], dtype: PackDtype, source: &str) -> Result<Vec<u8>, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| format!("{source}: {e}"))?;
    let stored = meta.metadata().as_ref().and_then(|m| m.get(DTYPE_KEY)).cloned();
    match (dtype.file_dtype(), stored) {
        (Some(want), Some(have)) if want.name() == have => Ok(bytes.to_vec()),
        (Some(want), _) => quantize_file(bytes, want, source).map_err(|e| e.to_string()),
        (None, Some(have)) => Err(format!("{source} is a {have} file, not f32: pack its float checkpoint")),
        (None, None) => {
            let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(|e| format!("{source}: {e}"))?;
            let halves = tensors
                .tensors()
                .into_iter()
                .find(|(_, t)| matches!(t.dtype(), safetensors::Dtype::F16 | safetensors::Dtype::BF16));
            match halves {
                Some((name, t)) => Err(format!(
                    "{source} stores `{name}` in {:?}, so it is not an f32 checkpoint: pack it with --dtype f16, q8 or q4",
                    t.dtype()
                )),
                None => Ok(bytes.to_vec()),
            }
        }
    }
}

/// Creates `dir`, or accepts it empty: files left from something else would be served with the
/// pack but not listed in its manifest.
fn create_empty(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    if entries.next().is_some() {
        return Err(format!("{} is not empty: give a new or empty folder for the pack", dir.display()));
    }
    Ok(())
}
