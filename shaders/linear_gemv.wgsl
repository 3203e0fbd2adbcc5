// Few-row matmul (matrix-vector): y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]) for m <= 32 rows,
// the shape of one query (5-30 tokens), where the tiled kernel (linear.wgsl's `main`) would
// fill a 64-row tile mostly with nothing and the work is bound by reading the weights once.
//
// Appended to linear.wgsl and a weight-format file (their Params, bindings, `activate`, and
// the format's `w8`: eight consecutive weights of a row, dequantized in registers), as a
// second entry point `gemv` of the same module. A workgroup covers GEMV_NR = 16 weight rows
// and a block of GEMV_MB = 8 x rows (the grid's y holds the blocks: 16 rows are two).
// GEMV_TPR = 8 threads share two weight rows (r and 8 + r) and stride over k eight weights at
// a time, so the threads of a row read neighbouring words of it in its stored format
// (coalesced); each thread keeps one partial sum per (x row, weight row) in registers:
// eight named vec2 accumulators, every index a constant, as llama.cpp's few-column
// matrix-vector kernels template their column count. Each x vec4 a thread loads serves both
// of its weight rows, so a step of k costs 16 x loads and 2 weight loads for 128
// multiply-adds (one row a thread: 16 and 1 for 64). The 8 partials of each (x row, weight
// row) are added in workgroup memory. Rows past p.m (the last block) and past p.n read the
// last row again, so the loop has no tests, and write nothing. Needs k % 8 == 0 (x is read as
// vec4s); the host falls back to the tiled kernel otherwise, and for more than 32 rows. A
// second block reads the weights again, from cache, and doubles a query's workgroups.
//
// Measured (2026-12-07, lavapipe `gpu-bench --quick --dtype f16 --sentences 32`, GPU time
// of 8 single texts' few-row products; Chromium SwiftShader `www/bench/gpu.mjs`, 16-token
// query p50 against transformers.js' on the same page):
// - one workgroup for all rows, a 32-slot accumulator array indexed in a loop that stopped at
//   p.m (compilers keep it in memory): 3,480 ms, 0.5 GFLOP/s; query 0.69x transformers.js;
// - blocks of 8 rows, one weight row a thread, 8 scalar accumulators: 702 ms; 0.51-0.56x;
// - two weight rows a thread (this): 382 ms, 5.0 GFLOP/s; 0.40-0.45x.
// Eight weight rows a workgroup or more, not one: with one, k = 384 left a quarter of the
// threads idle and the dispatch held 8x the workgroups, which SwiftShader pays for each.
// Also tried: eight named vec4 accumulators (32 rows), each group of four behind a test of
// p.m: lavapipe's query halved but SwiftShader's slowed (1107-1599 ms against 904-1055), as
// if every group ran whatever p.m; a block of a fixed 8 rows has no such test.

const GEMV_NR: u32 = 16u;
const GEMV_TPR: u32 = 8u;
const GEMV_MB: u32 = 8u;

// Eight weights, k .. k + 8 of one row.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

var<workgroup> partial: array<f32, 1024>; // [GEMV_MB][GEMV_NR][GEMV_TPR]

// The dot products of eight weights of two rows (u, v) with x's vec4s at `at`, `at + 1`.
fn dot8x2(u: W8, v: W8, at: u32) -> vec2<f32> {
    let a = x4[at];
    let c = x4[at + 1u];
    return vec2<f32>(dot(u.lo, a) + dot(u.hi, c), dot(v.lo, a) + dot(v.hi, c));
}

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let r = li / GEMV_TPR;
    let t = li % GEMV_TPR;
    let blocks = (p.m + GEMV_MB - 1u) / GEMV_MB;
    let m0 = (wg.y % blocks) * GEMV_MB;
    // More than 65535 workgroups of weight rows spill into the grid's y, beside the blocks.
    let n0 = (wg.x + (wg.y / blocks) * 65535u) * GEMV_NR;
    // This thread's two weight rows, n0 + r and n0 + 8 + r; past p.n, the last row again
    // (summed, never written).
    let nu = min(n0 + r, p.n - 1u);
    let nv = min(n0 + 8u + r, p.n - 1u);
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
    var a0 = vec2<f32>(0.0);
    var a1 = vec2<f32>(0.0);
    var a2 = vec2<f32>(0.0);
    var a3 = vec2<f32>(0.0);
    var a4 = vec2<f32>(0.0);
    var a5 = vec2<f32>(0.0);
    var a6 = vec2<f32>(0.0);
    var a7 = vec2<f32>(0.0);
    for (var j = t; j < p.k / 8u; j += GEMV_TPR) {
        let u = w8(nu, j);
        let v = w8(nv, j);
        let o = 2u * j;
        a0 += dot8x2(u, v, at0 + o);
        a1 += dot8x2(u, v, at1 + o);
        a2 += dot8x2(u, v, at2 + o);
        a3 += dot8x2(u, v, at3 + o);
        a4 += dot8x2(u, v, at4 + o);
        a5 += dot8x2(u, v, at5 + o);
        a6 += dot8x2(u, v, at6 + o);
        a7 += dot8x2(u, v, at7 + o);
    }
    // partial[x row][weight row][thread]: row r's at li, row 8 + r's at 64 + li.
    partial[li] = a0.x;
    partial[64u + li] = a0.y;
    partial[128u + li] = a1.x;
    partial[192u + li] = a1.y;
    partial[256u + li] = a2.x;
    partial[320u + li] = a2.y;
    partial[384u + li] = a3.x;
    partial[448u + li] = a3.y;
    partial[512u + li] = a4.x;
    partial[576u + li] = a4.y;
    partial[640u + li] = a5.x;
    partial[704u + li] = a5.y;
    partial[768u + li] = a6.x;
    partial[832u + li] = a6.y;
    partial[896u + li] = a7.x;
    partial[960u + li] = a7.y;
    workgroupBarrier();
    // Two outputs a thread: x row m0 + e / 16, weight row n0 + e % 16, from its 8 partials.
    for (var e = li; e < GEMV_MB * GEMV_NR; e += 64u) {
        let mi = e / GEMV_NR;
        let row = e % GEMV_NR;
        if (m0 + mi < p.m && n0 + row < p.n) {
            var s = 0.0;
            for (var q = 0u; q < GEMV_TPR; q++) {
                s += partial[mi * 128u + row * GEMV_TPR + q];
            }
            y[(m0 + mi) * p.n + n0 + row] = activate(s + b[n0 + row]);
        }
    }
}
