// Few-row matmul (matrix-vector): y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]) for m <= 32 rows,
// the shape of one query (5-30 tokens), where the tiled kernel (linear.wgsl's `main`) would
// fill a 64-row tile mostly with nothing and the work is bound by reading the weights once.
//
// Appended to linear.wgsl and a weight-format file (their Params, bindings, `activate`, and
// the format's `w8`: eight consecutive weights of a row, dequantized in registers), as a
// second entry point `gemv` of the same module. One workgroup per weight row n, its 64
// threads striding over k eight weights at a time, so neighbouring threads read neighbouring
// words of the row in its stored format (coalesced); each thread keeps one partial sum per
// x row in registers (a loop of constant trip count, so the array is unrolled into registers),
// and the 64 partials of each row are added in workgroup memory. Needs k % 8 == 0 (x is read
// as vec4s); the host falls back to the tiled kernel otherwise, and for more than 32 rows.

const GEMV_WG: u32 = 64u;
const GEMV_ROWS: u32 = 32u;

// Eight weights, k .. k + 8 of one row.
struct W8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

var<workgroup> partial: array<f32, 2048>; // [GEMV_ROWS][GEMV_WG]

@compute @workgroup_size(64)
fn gemv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    // More than 65535 weight rows spill into the grid's second dimension.
    let n = wg.x + wg.y * 65535u;
    var acc: array<f32, 32>;
    if (n < p.n) {
        for (var j = li; j < p.k / 8u; j += GEMV_WG) {
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
        partial[m * GEMV_WG + li] = acc[m];
    }
    workgroupBarrier();
    if (n < p.n && li < p.m) {
        var s = 0.0;
        for (var t = 0u; t < GEMV_WG; t++) {
            s += partial[li * GEMV_WG + t];
        }
        y[li * p.n + n] = activate(s + b[n]);
    }
}
