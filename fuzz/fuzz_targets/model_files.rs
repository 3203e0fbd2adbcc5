//! Any one file of a model folder replaced by arbitrary bytes (or removed): the first input
//! byte picks the file, the rest is its content.
#![no_main]
#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let (name, _) = common::TINY[pick as usize % common::TINY.len()];
    let bytes = if pick >= 0xf0 { None } else { Some(rest) };
    common::load_and_embed(&[(name, bytes)]);
});
