//! Saved vector indexes (`VectorIndex::from_bytes`), then a search over what loaded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(index) = wembed::index::VectorIndex::from_bytes(data) {
        let query = vec![1.0 / (index.dim() as f32).sqrt(); index.dim()];
        let _ = index.search(&query, 5, &|_| true);
        let _ = index.to_bytes();
    }
});
