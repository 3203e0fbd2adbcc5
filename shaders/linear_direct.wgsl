// Matmul for software adapters (lavapipe, SwiftShader: WebGPU run by the CPU): y[m, n] =
// act(x[m, k] · w[n, k]ᵀ + b[n]) with no workgroup memory and no barriers.
//
// Appended to linear.wgsl, a weight-format file and linear_gemv.wgsl (their Params, bindings,
// `activate`, `store_row`, W8 and the format's `w8`: eight consecutive weights of a row,
// dequantized in registers), as a third entry point `direct` of the same module. Each thread
// computes a block of DIRECT_MR = 6 x rows by DIRECT_NR = 4 weight rows, reading both straight
// from the storage buffers eight steps of k at a time (one W8 per weight row, two vec4s per x
// row) into 6 vec4 accumulators (one per x row, a component per weight row); a workgroup is
// 16 threads side by side along n (64 weight rows by 6 x rows). Rows past p.m and p.n read the
// last row again, so the loop has no tests, and write nothing. Needs k % 8 == 0; the host
// takes the tiled kernel otherwise.
//
// Why a kernel of its own: on a CPU, workgroup memory is more memory, a barrier is a switch of
// every invocation of the workgroup, and the caches do what staging does on a GPU; what costs
// is each load (a gather over the SIMD lanes) and the registers (16 vector registers: larger
// blocks spill). Measured in headless Chromium on SwiftShader (2026-12-07, f16 weights, GFLOP/s,
// a page timing one dispatch per shape; the tiled kernels' best shape beside):
// - 512 x 1536 x 384: tiled wide 2.1, this 3.6; 512 x 384 x 1536: 2.8 against 4.1; 2048 rows
//   likewise (2.2 / 2.9 against 3.7 / 4.2);
// - 16 rows (a query) x 1536 x 384: the few-row kernel (linear_gemv.wgsl) 0.7, this 2.9;
//   16 x 384 x 1536: 1.6 against 3.2; 16 x 384 x 384: 0.6 against 1.8;
// - other blocks on the same page, 512 x 1536 x 384: 4x4 3.2, 6x4 3.6, 7x4 3.3, 8x4 2.5,
//   8x8 2.9, 4x8 2.0, 6x5 2.5, 2x4 2.2; k unrolled twice 2.1 (spills); lanes splitting k so
//   that every load is one scalar at consecutive addresses, 1.1-1.3;
// - workgroups of 16 threads (6 x rows) or 64 (24 x rows) alike from 512 rows on; 16 faster
//   on few rows (45 x 384 x 384: 2.7 against 2.2).
// A hardware GPU takes the tiled and few-row kernels (backend::gpu `Gpu::linear`).

const DIRECT_MR: u32 = 6u;
const DIRECT_NR: u32 = 4u;
const DIRECT_THREADS: u32 = 16u;

// One step of k: eight x values (lo, hi) against eight weights of each of four rows.
fn dot8x4(lo: vec4<f32>, hi: vec4<f32>, w0: W8, w1: W8, w2: W8, w3: W8) -> vec4<f32> {
    return vec4<f32>(
        dot(lo, w0.lo) + dot(hi, w0.hi),
        dot(lo, w1.lo) + dot(hi, w1.hi),
        dot(lo, w2.lo) + dot(hi, w2.hi),
        dot(lo, w3.lo) + dot(hi, w3.hi),
    );
}

@compute @workgroup_size(16)
fn direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n0 = (wg.x * DIRECT_THREADS + li) * DIRECT_NR;
    let m0 = wg.y * DIRECT_MR;
    // x rows as offsets into x4 (vec4s), weight rows as row numbers (w8 takes those).
    let kv = p.k / 4u;
    let x0 = min(m0, p.m - 1u) * kv;
    let x1 = min(m0 + 1u, p.m - 1u) * kv;
    let x2 = min(m0 + 2u, p.m - 1u) * kv;
    let x3 = min(m0 + 3u, p.m - 1u) * kv;
    let x4r = min(m0 + 4u, p.m - 1u) * kv;
    let x5 = min(m0 + 5u, p.m - 1u) * kv;
    let r0 = min(n0, p.n - 1u);
    let r1 = min(n0 + 1u, p.n - 1u);
    let r2 = min(n0 + 2u, p.n - 1u);
    let r3 = min(n0 + 3u, p.n - 1u);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    for (var q = 0u; q < p.k / 8u; q++) {
        let w0 = w8(r0, q);
        let w1 = w8(r1, q);
        let w2 = w8(r2, q);
        let w3 = w8(r3, q);
        let at = 2u * q;
        acc0 += dot8x4(x4[x0 + at], x4[x0 + at + 1u], w0, w1, w2, w3);
        acc1 += dot8x4(x4[x1 + at], x4[x1 + at + 1u], w0, w1, w2, w3);
        acc2 += dot8x4(x4[x2 + at], x4[x2 + at + 1u], w0, w1, w2, w3);
        acc3 += dot8x4(x4[x3 + at], x4[x3 + at + 1u], w0, w1, w2, w3);
        acc4 += dot8x4(x4[x4r + at], x4[x4r + at + 1u], w0, w1, w2, w3);
        acc5 += dot8x4(x4[x5 + at], x4[x5 + at + 1u], w0, w1, w2, w3);
    }
    if (n0 >= p.n) {
        return;
    }
    store_row(m0, n0, acc0);
    store_row(m0 + 1u, n0, acc1);
    store_row(m0 + 2u, n0, acc2);
    store_row(m0 + 3u, n0, acc3);
    store_row(m0 + 4u, n0, acc4);
    store_row(m0 + 5u, n0, acc5);
}
