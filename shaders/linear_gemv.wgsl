// Few-row matmul (matrix-vector): y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]) for m <= 32 rows,
// the shape of one query (5-30 tokens), where the tiled kernel (linear.wgsl's `main`) would
// fill a 64-row tile mostly with nothing and the work is bound by reading the weights once.
//
// Appended to linear.wgsl and a weight-format file (their Params, bindings, `activate`, and
// the format's `w8`: eight consecutive weights of a row, dequantized in registers), as a
// second entry point `gemv` of the same module. A workgroup covers GEMV_NR = 8 weight rows
// and a block of GEMV_MB = 8 x rows (the grid's y holds the blocks: 16 rows are two);
// GEMV_TPR = 8 threads on each weight row stride over k eight weights at a time, so the
// threads of a row read neighbouring words of it in its stored format (coalesced), and each
// thread keeps one partial sum per x row of its block in registers: eight named
// accumulators, every index a constant, as llama.cpp's few-column matrix-vector kernels
// template theirs. The 8 partials of each (x row, weight row) are added in workgroup memory.
// Rows of the last block past p.m read row p.m - 1 again (no test in the loop) and write
// nothing. Needs k % 8 == 0 (x is read as vec4s); the host falls back to the tiled kernel
// otherwise, and for more than 32 rows. A second block reads the weights again: from cache,
// and it is what gives a query's few weight rows enough workgroups to fill a GPU.
//
// Before (to 2026-12-07): one workgroup for all rows, a 32-slot accumulator array indexed in
// a loop that stopped at p.m, which compilers keep in memory, not registers (lavapipe: 0.5
// GFLOP/s, 97.6% of a query's GPU time). Eight rows a workgroup, not one: with one, k = 384
// left a quarter of the threads idle and the dispatch held 8x the workgroups, which
// SwiftShader (Chromium's CPU WebGPU) pays for each. Also tried: eight named vec4
// accumulators (32 rows), each group of four behind a test of p.m: lavapipe's query halved
// but SwiftShader's slowed (1107-1599 ms against 904-1055), as if every group ran whatever
// p.m; a block of a fixed 8 rows has no such test.

const GEMV_NR: u32 = 8u;
const GEMV_TPR: u32 = 8u;
const GEMV_MB: u32 = 8u;

// Eight weights, k .. k + 8 of one row.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

var<workgroup> partial: array<f32, 512>; // [GEMV_MB][GEMV_NR][GEMV_TPR]

// One x row's share: the dot product of eight weights with x's vec4s at `at`, `at + 1`.
fn dot8(wv: W8, at: u32) -> f32 {
    return dot(wv.lo, x4[at]) + dot(wv.hi, x4[at + 1u]);
}

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = li / GEMV_TPR;
    let t = li % GEMV_TPR;
    let blocks = (p.m + GEMV_MB - 1u) / GEMV_MB;
    let m0 = (wg.y % blocks) * GEMV_MB;
    // More than 65535 workgroups of weight rows spill into the grid's y, beside the blocks.
    let n0 = (wg.x + (wg.y / blocks) * 65535u) * GEMV_NR;
    let n = n0 + r;
    // The first vec4 of each x row of the block.
    let kv = p.k / 4u;
    let last = p.m - 1u;
    let at0 = min(m0, last) * kv;
    let at1 = min(m0 + 1u, last) * kv;
    let at2 = min(m0 + 2u, last) * kv;
    let at3 = min(m0 + 3u, last) * kv;
    let at4 = min(m0 + 4u, last) * kv;
    let at5 = min(m0 + 5u, last) * kv;
    let at6 = min(m0 + 6u, last) * kv;
    let at7 = min(m0 + 7u, last) * kv;
    var a0 = 0.0;
    var a1 = 0.0;
    var a2 = 0.0;
    var a3 = 0.0;
    var a4 = 0.0;
    var a5 = 0.0;
    var a6 = 0.0;
    var a7 = 0.0;
    if (n < p.n) {
        for (var j = t; j < p.k / 8u; j += GEMV_TPR) {
            let wv = w8(n, j);
            let o = 2u * j;
            a0 += dot8(wv, at0 + o);
            a1 += dot8(wv, at1 + o);
            a2 += dot8(wv, at2 + o);
            a3 += dot8(wv, at3 + o);
            a4 += dot8(wv, at4 + o);
            a5 += dot8(wv, at5 + o);
            a6 += dot8(wv, at6 + o);
            a7 += dot8(wv, at7 + o);
        }
    }
    partial[li] = a0;
    partial[64u + li] = a1;
    partial[128u + li] = a2;
    partial[192u + li] = a3;
    partial[256u + li] = a4;
    partial[320u + li] = a5;
    partial[384u + li] = a6;
    partial[448u + li] = a7;
    workgroupBarrier();
    // One output a thread: x row m0 + li / 8, weight row n0 + li % 8, from its 8 partials.
    let mi = li / GEMV_NR;
    let row = li % GEMV_NR;
    if (m0 + mi < p.m && n0 + row < p.n) {
        var s = 0.0;
        for (var q = 0u; q < GEMV_TPR; q++) {
            s += partial[mi * 64u + row * GEMV_TPR + q];
        }
        y[(m0 + mi) * p.n + n0 + row] = activate(s + b[n0 + row]);
    }
}
