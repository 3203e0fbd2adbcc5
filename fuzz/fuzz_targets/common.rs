// Shared by the fuzz targets: the tiny model's files, and loading + embedding on the CPU the
// way the npm package and the CLI do. Any Err is fine; a panic, abort or hang is the bug.
#![allow(dead_code)]

use std::collections::HashMap;

use wembed::{Cpu, EmbedOptions, Embedder, ModelFiles};

macro_rules! tiny {
    ($name:literal) => {
        ($name, include_bytes!(concat!("../../tests/fixtures/tiny/mean-erf-norm/", $name)).as_slice())
    };
}

/// The files of tests/fixtures/tiny/mean-erf-norm, by name inside the model folder.
pub const TINY: &[(&str, &[u8])] = &[
    tiny!("config.json"),
    tiny!("tokenizer.json"),
    tiny!("model.safetensors"),
    tiny!("modules.json"),
    tiny!("1_Pooling/config.json"),
    tiny!("sentence_bert_config.json"),
    tiny!("config_sentence_transformers.json"),
];

/// The tiny model's files with `name` replaced by `bytes` (or removed, for None), loaded and
/// run on two short texts.
pub fn load_and_embed(replace: &[(&str, Option<&[u8]>)]) {
    let mut map: HashMap<String, Vec<u8>> = TINY.iter().map(|(n, b)| (n.to_string(), b.to_vec())).collect();
    for (name, bytes) in replace {
        match bytes {
            Some(b) => map.insert(name.to_string(), b.to_vec()),
            None => map.remove(*name),
        };
    }
    let files = ModelFiles::from_map("fuzz", map);
    if let Ok(e) = Embedder::load(Cpu::new(), &files) {
        let _ = e.embed(&["a short text", "another, a little longer"], &EmbedOptions::default());
        let _ = e.chunks("a text to cut into pieces of a few tokens each", 4, 1);
    }
}
