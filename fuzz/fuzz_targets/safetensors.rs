//! model.safetensors as wembed reads it: parse, find every tensor the config names, check
//! shapes and values, embed.
#![no_main]
#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::load_and_embed(&[("model.safetensors", Some(data))]);
});
