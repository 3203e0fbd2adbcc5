//! The f32 products on all-MiniLM-L6-v2's shapes, by rows: the skinny row kernel
//! (`matmul::tiled`), the `gemm` crate, and, where the CPU has AVX-512, the same weights packed
//! in panels for the outer-product kernel (`panels`) (a development aid, not a test). Each
//! product reads the next of 12 weight sets, as a forward pass reads each matrix once. The
//! rows / gemm crossover sets `matmul::SKINNY_MAX_ROWS`; the panels column is what AVX-512
//! machines run. Usage: cargo run --release --example skinny
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
    let packed = panels::wanted();
    if !packed {
        println!("no AVX-512 F here: no panels column (f32 weights stay in rows on this CPU)");
    }
    for (n, k) in [(1152, 384), (1536, 384), (384, 1536)] {
        let sets = 12;
        let ws: Vec<Vec<f32>> =
            (0..sets).map(|s| (0..n * k).map(|i| ((i * 7 + s) % 11) as f32 * 0.1 - 0.5).collect()).collect();
        let ps: Vec<panels::F32Panels> =
            if packed { ws.iter().map(|w| panels::F32Panels::new(n, k, w)).collect() } else { Vec::new() };
        let b = vec![0.0; n];
        for m in [3, 12, 24, 48, 64, 128, 400] {
            let x: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
            let out = std::cell::RefCell::new(vec![0.0; m * n]);
            let gf = |s: f64| format!("{:7.1} us ({:5.1} GFLOP/s)", s * 1e6, 2.0 * (m * n * k) as f64 / s / 1e9);
            let rows = time(|r| {
                let w = matmul::WeightRows::F32(&ws[r % sets]);
                matmul::tiled(m, n, k, &x, w, &b, None, &mut out.borrow_mut())
            });
            let gemm = time(|r| matmul::gemm_linear(m, n, k, &x, &ws[r % sets], &b, &mut out.borrow_mut()));
            let mut line = format!("[{n}, {k}] x {m:3} rows: rows {}  gemm {}", gf(rows), gf(gemm));
            if packed {
                let p = time(|r| {
                    let w = matmul::WeightRows::Panels(&ps[r % sets]);
                    matmul::linear(m, n, k, &x, w, &b, &mut out.borrow_mut())
                });
                line += &format!("  panels {}", gf(p));
            }
            println!("{line}");
        }
    }
}
