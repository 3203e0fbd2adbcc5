//! The integer kernels on all-MiniLM-L6-v2's matrix shapes, one after another on the same
//! weights (a development aid, not a test): GOP/s of each kernel this CPU has, best of several
//! alternating rounds, for a 10-row query and a 480-row batch (32 texts of 15 tokens).
//! Usage: RAYON_NUM_THREADS=1 cargo run --release --example qkernels
use std::time::Instant;
use wembed::backend::cpu::qmatmul::{Kernel, PackedMatrix, linear_packed, linear_with};
use wembed::quant::{QuantFormat, QuantMatrix};

fn main() {
    let shapes = [(384, 384), (1536, 384), (384, 1536)];
    let kernels = Kernel::available();
    println!("kernels: {kernels:?}; best: {:?}", Kernel::best());
    for m in [10usize, 480] {
        for (n, k) in shapes {
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 104_729) % 251) as f32 / 251.0 - 0.5).collect();
            let q = QuantMatrix::quantize(QuantFormat::Q8_0, n, k, &w);
            let bias = vec![0.0; n];
            let mut out = vec![0.0; m * n];
            let packed: Vec<Option<PackedMatrix>> =
                kernels.iter().map(|&kr| kr.layout().map(|l| PackedMatrix::new(&q, l))).collect();
            let mut best = vec![f64::MAX; kernels.len()];
            let reps = (2_000_000_000 / (m * n * k)).clamp(3, 2000);
            for _round in 0..5 {
                for (t, &kr) in kernels.iter().enumerate() {
                    let start = Instant::now();
                    for _ in 0..reps {
                        match &packed[t] {
                            Some(p) => linear_packed(kr, m, n, k, &x, p, &bias, None, &mut out),
                            None => linear_with(kr, m, n, k, &x, &q, &bias, &mut out),
                        }
                    }
                    best[t] = best[t].min(start.elapsed().as_secs_f64() / reps as f64);
                }
            }
            let row: Vec<String> = kernels
                .iter()
                .zip(&best)
                .map(|(kr, s)| format!("{kr:?} {:6.1}", 2.0 * (m * n * k) as f64 / s / 1e9))
                .collect();
            println!("m={m:3} n={n:4} k={k:4}: {}", row.join("  "));
        }
    }
}
