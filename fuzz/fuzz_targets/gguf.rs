//! A GGUF file as wembed reads it: header, metadata, tensor table, the config and tokenizer
//! rebuilt from its metadata, every tensor dequantized, embed.
#![no_main]

use std::collections::HashMap;

use wembed::{Cpu, EmbedOptions, Embedder, ModelFiles};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = wembed::gguf::Gguf::parse(data, "fuzz.gguf");
    let mut files = ModelFiles::from_map("fuzz", HashMap::new());
    files.insert("model.gguf", data.to_vec());
    if let Ok(e) = Embedder::load(Cpu::new(), &files) {
        let _ = e.embed(&["a short text", "another, a little longer"], &EmbedOptions::default());
    }
});
