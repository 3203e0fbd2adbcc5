//! `wembed gpu-bench`: what the GPU backend costs, on whatever adapter wgpu finds. The host
//! time per dispatch (CPU microseconds spent recording, the GPU idle), sentences/s of the model
//! in every weight format at batch 1 / 32 / 256 on the STS-B corpus, the per-kernel table
//! (timestamp queries) with GFLOP/s and GB/s, and a peak probe (an FMA loop, a large matmul).

use super::Args;
use wembed::Gpu;
use wembed::backend::gpu::{GpuWeights, HostTimes};
use wembed::backend::{Backend, SeqMeta};
use wembed::config::Activation;
use wembed::weights::HostTensor;

/// Deterministic values in [-1, 1): weights and inputs whose contents do not matter.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn err(e: wembed::Error) -> String {
    e.to_string()
}

/// Host CPU time per dispatch: `layers` encoder layers of MiniLM's shapes (384 wide, 1536
/// inner, 12 heads) on one 16-token text, seven dispatches each, recorded and then submitted
/// once; the backend's own clocks (see `HostTimes`) count only the CPU's work (recording,
/// `finish`, `submit`), never the wait for the GPU. Best of `rounds` (the first one also
/// creates the pooled buffers).
fn host_times(gpu: &Gpu, layers: usize, rounds: usize) -> Result<HostTimes, String> {
    let (dim, inner, heads, tokens) = (384, 1536, 12, 16);
    let m = |rows: usize, cols: usize, seed| gpu.matrix(HostTensor::new(vec![rows, cols], noise(rows * cols, seed)));
    let v = |n: usize, seed| gpu.vector(HostTensor::new(vec![n], noise(n, seed)));
    let (qkv_w, qkv_b) = (m(3 * dim, dim, 1).map_err(err)?, v(3 * dim, 2).map_err(err)?);
    let (out_w, out_b) = (m(dim, dim, 3).map_err(err)?, v(dim, 4).map_err(err)?);
    let (up_w, up_b) = (m(inner, dim, 5).map_err(err)?, v(inner, 6).map_err(err)?);
    let (down_w, down_b) = (m(dim, inner, 7).map_err(err)?, v(dim, 8).map_err(err)?);
    let (gamma, beta) = (v(dim, 9).map_err(err)?, v(dim, 10).map_err(err)?);
    let meta = SeqMeta::new(vec![tokens as u32], vec![0]);
    let input = gpu.table(HostTensor::new(vec![tokens, dim], noise(tokens * dim, 11))).map_err(err)?;
    let mut best: Option<HostTimes> = None;
    let total = |t: &HostTimes| t.record_s + t.finish_s + t.submit_s;
    for _ in 0..rounds {
        gpu.take_host_times();
        // The first layer reads the table-like input; each output feeds the next layer.
        let mut h = None;
        for _ in 0..layers {
            let x = h.as_ref().unwrap_or(&input);
            let qkv = gpu.linear(x, &qkv_w, &qkv_b, None).map_err(err)?;
            let ctx = gpu.attention(&qkv, &meta, heads).map_err(err)?;
            let att = gpu.linear(&ctx, &out_w, &out_b, None).map_err(err)?;
            let att = gpu.layer_norm(att, Some(x), &gamma, &beta, 1e-12).map_err(err)?;
            let up = gpu.linear(&att, &up_w, &up_b, Some(Activation::GeluErf)).map_err(err)?;
            let down = gpu.linear(&up, &down_w, &down_b, None).map_err(err)?;
            h = Some(gpu.layer_norm(down, Some(&att), &gamma, &beta, 1e-12).map_err(err)?);
        }
        pollster::block_on(gpu.read(h.as_ref().unwrap_or(&input))).map_err(err)?;
        let t = gpu.take_host_times();
        if best.is_none_or(|b| total(&t) < total(&b)) {
            best = Some(t);
        }
    }
    best.ok_or_else(|| "no round ran".to_string())
}

fn print_host_times(t: &HostTimes) {
    let n = t.dispatches.max(1) as f64;
    let us = |s: f64| s / n * 1e6;
    println!(
        "host CPU time per dispatch: {:.1} us = record {:.1} + finish {:.1} + submit {:.1} ({} dispatches, {} submit)",
        us(t.record_s + t.finish_s + t.submit_s),
        us(t.record_s),
        us(t.finish_s),
        us(t.submit_s),
        t.dispatches,
        t.submits
    );
}

pub fn run(args: &Args) -> Result<(), String> {
    let quick = args.has("quick");
    let gpu = pollster::block_on(Gpu::with_weights(GpuWeights::F32)).map_err(err)?;
    let info = gpu.adapter_info();
    println!(
        "adapter: {} ({:?}, {:?}, driver {} {})",
        info.name, info.backend, info.device_type, info.driver, info.driver_info
    );
    let layers = if quick { 16 } else { 64 };
    print_host_times(&host_times(&gpu, layers, args.number("repeats", 3)?.max(1))?);
    Ok(())
}
