// Few-row matmul (matrix-vector): y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]) for m <= 32 rows,
// the shape of one query (5-30 tokens), where the tiled kernel (linear.wgsl's `main`) would
// fill a 64-row tile mostly with nothing and the work is bound by reading the weights once.
//
// Appended to linear.wgsl and a weight-format file (their Params, bindings, `activate`, and
// the format's `w8`: eight consecutive weights of a row, dequantized in registers), as a
// second entry point `gemv` of the same module. One workgroup per GEMV_NR = 8 weight rows,
// GEMV_TPR = 8 threads on each, striding over k eight weights at a time, so the threads of a
// row read neighbouring words of it in its stored format (coalesced); each thread keeps one
// partial sum per x row (an array indexed in a loop that stops at p.m), and the 8 partials of each (x row, weight row) are added in workgroup
// memory. Eight rows a workgroup, not one: with one, k = 384 left a quarter of the threads
// idle, every workgroup summed 64 partials per x row one after another, and the dispatch held
// 8x the workgroups, which SwiftShader (Chromium's CPU WebGPU) pays for each (a 16-token
// query took 2.5x transformers.js' time there). Needs k % 8 == 0 (x is read as vec4s); the
// host falls back to the tiled kernel otherwise, and for more than 32 rows.
//
// Tried and dropped (2026-12-07): eight named vec4 accumulators, each group of four rows behind
// a test of p.m. lavapipe's batch-1 p50 halved (474 -> 248 ms: the indexed array runs from
// memory there, this kernel at 0.4 GFLOP/s), but in Chromium's SwiftShader a 16-token query
// went from 904-1055 ms to 1107-1599 (transformers.js: 1298-1315), as if every group ran
// whatever p.m. Worth trying again on a real GPU, where the array may also spill.

const GEMV_NR: u32 = 8u;
const GEMV_TPR: u32 = 8u;
const GEMV_ROWS: u32 = 32u;

// Eight weights, k .. k + 8 of one row.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

var<workgroup> partial: array<f32, 2048>; // [GEMV_ROWS][GEMV_NR][GEMV_TPR]

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // More than 65535 workgroups spill into the grid's second dimension.
    let r = li / GEMV_TPR;
    let t = li % GEMV_TPR;
    let n0 = (wg.x + wg.y * 65535u) * GEMV_NR;
    let n = n0 + r;
    var acc: array<f32, 32>;
    if (n < p.n) {
        for (var j = t; j < p.k / 8u; j += GEMV_TPR) {
            let wv = w8(n, j);
            for (var m = 0u; m < GEMV_ROWS; m++) {
                if (m >= p.m) {
                    break;
                }
                let xi = m * (p.k / 4u) + 2u * j;
                acc[m] += dot(wv.lo, x4[xi]) + dot(wv.hi, x4[xi + 1u]);
            }
        }
    }
    for (var m = 0u; m < GEMV_ROWS; m++) {
        if (m >= p.m) {
            break;
        }
        partial[m * 64u + li] = acc[m];
    }
    workgroupBarrier();
    // Output (x row m, weight row n0 + e % GEMV_NR): the 8 partials of its threads.
    for (var e = li; e < p.m * GEMV_NR; e += 64u) {
        let m = e / GEMV_NR;
        let row = e % GEMV_NR;
        if (n0 + row < p.n) {
            var s = 0.0;
            for (var q = 0u; q < GEMV_TPR; q++) {
                s += partial[m * 64u + row * GEMV_TPR + q];
            }
            y[m * p.n + n0 + row] = activate(s + b[n0 + row]);
        }
    }
}
