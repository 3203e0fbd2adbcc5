//! f32 products on weights in rows (the skinny row kernel up to 48 input rows, `gemm` past it)
//! against the same weights packed in panels (the AVX-512 outer-product kernel), on
//! all-MiniLM-L6-v2's shapes (a development aid, not a test). The weights cycle through 12
//! sets, as a forward pass reads each matrix once. Usage: cargo run --release --example packed_f32
use std::time::Instant;
use wembed::backend::cpu::{matmul, panels};

fn time(f: impl Fn(usize)) -> f64 {
    let reps = 60;
    f(0);
    let t = Instant::now();
    for r in 0..reps {
        f(r);
    }
    t.elapsed().as_secs_f64() / reps as f64
}

fn main() {
    if !panels::wanted() {
        println!("this CPU has no AVX-512 F: f32 weights stay in rows here, nothing to compare");
        return;
    }
    for (n, k) in [(1152, 384), (1536, 384), (384, 1536)] {
        let sets = 12;
        let ws: Vec<Vec<f32>> =
            (0..sets).map(|s| (0..n * k).map(|i| ((i * 7 + s) % 11) as f32 * 0.1 - 0.5).collect()).collect();
        let ps: Vec<panels::F32Panels> = ws.iter().map(|w| panels::F32Panels::new(n, k, w)).collect();
        let b = vec![0.0; n];
        for m in [3, 12, 24, 48, 128, 400] {
            let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let out = std::cell::RefCell::new(vec![0.0; m * n]);
            let rows = time(|r| {
                matmul::linear(m, n, k, &x, matmul::WeightRows::F32(&ws[r % sets]), &b, &mut out.borrow_mut())
            });
            let packed = time(|r| {
                matmul::linear(m, n, k, &x, matmul::WeightRows::Panels(&ps[r % sets]), &b, &mut out.borrow_mut())
            });
            let gf = |s: f64| 2.0 * (m * n * k) as f64 / s / 1e9;
            println!(
                "[{n}, {k}] x {m:3} rows: rows {:7.1} us ({:5.1} GFLOP/s)   panels {:7.1} us ({:5.1} GFLOP/s)",
                rows * 1e6,
                gf(rows),
                packed * 1e6,
                gf(packed)
            );
        }
    }
}
