//! Crossover between the skinny kernel and gemm for few-row products on cold weights
//! (a development aid, not a test). Usage: cargo run --release --example skinny
use std::time::Instant;
use wembed::backend::cpu::matmul;

fn time(f: impl Fn(usize)) -> f64 {
    let reps = 96;
    f(0);
    let t = Instant::now();
    for r in 0..reps {
        f(r);
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    let (n, k) = (1536, 384);
    let sets = 32; // 75 MB of weights: more than the L3, as in a real forward pass
    let ws: Vec<Vec<f32>> = (0..sets).map(|s| (0..n * k).map(|i| ((i + s) % 5) as f32 * 0.1).collect()).collect();
    let b = vec![0.0; n];
    for m in [1, 8, 16, 24, 32, 48, 64, 96] {
        let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut out = vec![0.0; m * n];
        let out = std::cell::RefCell::new(&mut out);
        let skinny = time(|r| {
            matmul::tiled(m, n, k, &x, matmul::WeightRows::F32(&ws[r % sets]), &b, None, &mut out.borrow_mut())
        });
        let gemm = time(|r| matmul::gemm_linear(m, n, k, &x, &ws[r % sets], &b, &mut out.borrow_mut()));
        let gf = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
        println!(
            "m={m:3}: skinny {:7.1} us ({:5.1} GF/s)   gemm {:7.1} us ({:5.1} GF/s)",
            skinny * 1e6,
            gf(skinny),
            gemm * 1e6,
            gf(gemm)
        );
    }
}
