//! Quantized model files (`wembed quantize` output: safetensors with `wembed.dtype` and U8
//! tensors of ggml blocks). The seed corpus holds q8 and q4 files of the tiny model, so the
//! fuzzer starts inside the block-reading paths; the input's first byte picks which
//! precision `auto` would otherwise choose.
#![no_main]
#[path = "common.rs"]
mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else { return };
    // Also the block decoders on their own, on the same bytes.
    let format = if pick & 1 == 0 { wembed::quant::QuantFormat::Q8_0 } else { wembed::quant::QuantFormat::Q4_1 };
    let cols = 32 * (1 + (pick as usize >> 1) % 4);
    let rows = file.len() / format.block_bytes().max(1) / (cols / 32);
    if let Ok(q) = wembed::quant::QuantMatrix::from_bytes(format, rows, cols, &file[..rows * (cols / 32) * format.block_bytes()]) {
        let mut out = vec![0.0; rows * cols];
        q.dequantize_rows(0, rows, &mut out);
    }
    common::load_and_embed(&[("model.safetensors", Some(file))]);
});
