// y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]) with w in q8_0 blocks (32 weights, one scale):
// linear.wgsl with the weight loads dequantized. `w` holds each row's int8 weights four to a
// u32 (byte b = weight 4i + b; rows padded to a multiple of 32), then, from word
// p.scale_offset on, the f32 scale of every block, row by row. Mirrors backend::cpu's q8_0
// matmul; the arithmetic is f32. The vec4 path (k % 32 == 0 here) reads 16 weights per
// vec4<u32>.
//
// Tiled: each workgroup computes a 64x64 block of y with 16x16 threads, 4x4 outputs each,
// staging 64x16 slices of x and w in workgroup memory per step of k. When k is a multiple of 4
// (p.vec4 = 1) each thread stages one vec4 of x and one of w per step, through the same buffers
// bound a second time as vec4 arrays; otherwise four bounds-checked scalars, so any m, n, k
// works (odd sizes included). 256 threads: SwiftShader's per-workgroup maximum.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // 0: none, 1: GELU (erf), 2: GELU (tanh form), 3: ReLU
    act: u32,
    // 1 when k % 32 == 0: stage tiles with vec4 loads
    vec4: u32,
    // first word of the block scales in `w`
    scale_offset: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<u32>>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> xs: array<f32, 1024>; // [TM][TK]
var<workgroup> ws: array<f32, 1024>; // [TN][TK]

// erf without a builtin (WGSL has none): the rational approximation on [-4, 4] that
// backend::cpu::kernels::erf uses (Eigen/XLA coefficients), max abs error 4e-7; outside
// [-4, 4] erf is ±1 in f32.
fn erf(x_in: f32) -> f32 {
    let x = clamp(x_in, -4.0, 4.0);
    let x2 = x * x;
    var pp = fma(x2, -2.7261423e-10, 2.7706814e-8);
    pp = fma(x2, pp, -2.101024e-6);
    pp = fma(x2, pp, -5.6925064e-5);
    pp = fma(x2, pp, -7.3499063e-4);
    pp = fma(x2, pp, -2.9546001e-3);
    pp = fma(x2, pp, -1.6096033e-2);
    pp = pp * x;
    var q = fma(x2, -1.4566072e-5, -2.1337406e-4);
    q = fma(x2, q, -1.682827e-3);
    q = fma(x2, q, -7.3733294e-3);
    q = fma(x2, q, -1.426474e-2);
    return pp / q;
}

// Weight (row, c) of a q8_0 matrix, dequantized.
fn weight(row: u32, c: u32) -> f32 {
    let padded = (p.k + 31u) / 32u * 32u;
    let word = w[row * (padded / 4u) + c / 4u];
    let q = bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u;
    return f32(q) * bitcast<f32>(w[p.scale_offset + row * (padded / 32u) + c / 32u]);
}

fn activate(v: f32) -> f32 {
    switch p.act {
        case 1u: {
            return 0.5 * v * (1.0 + erf(v * 0.70710678));
        }
        case 2u: {
            // 0.5·v·(1 + tanh(u)) written as v·sigmoid(2u); the exponent is clamped because
            // some implementations return NaN for tanh/exp of large arguments.
            let u = 0.7978846 * (v + 0.044715 * v * v * v);
            return v / (1.0 + exp(clamp(-2.0 * u, -80.0, 80.0)));
        }
        case 3u: {
            return max(v, 0.0);
        }
        default: {
            return v;
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        if (p.vec4 == 1u) {
            // 256 threads, 64 rows x 4 vec4 per tile: one vec4 of x and one of w each.
            let r = li / 4u;
            let c = k0 + (li % 4u) * 4u;
            var xv = vec4<f32>(0.0);
            if (row0 + r < p.m && c < p.k) {
                xv = x4[((row0 + r) * p.k + c) / 4u];
            }
            for (var q = 0u; q < 4u; q++) {
                xs[li * 4u + q] = xv[q];
            }
            // 64 rows x 1 vec4<u32> (16 int8, inside one block): the first 64 threads stage w.
            if (li < 64u) {
                var packed = vec4<u32>(0u);
                var scale = 0.0;
                if (col0 + li < p.n) {
                    packed = w4[((col0 + li) * p.k + k0) / 16u];
                    scale = bitcast<f32>(w[p.scale_offset + (col0 + li) * (p.k / 32u) + k0 / 32u]);
                }
                for (var q = 0u; q < 16u; q++) {
                    let v = bitcast<i32>(packed[q / 4u] << (24u - 8u * (q % 4u))) >> 24u;
                    ws[li * TK + q] = f32(v) * scale;
                }
            }
        } else {
            for (var s = 0u; s < 4u; s++) {
                let e = li + s * 256u;
                let r = e / TK;
                let c = k0 + e % TK;
                var xv = 0.0;
                if (row0 + r < p.m && c < p.k) {
                    xv = x[(row0 + r) * p.k + c];
                }
                xs[e] = xv;
                var wv = 0.0;
                if (col0 + r < p.n && c < p.k) {
                    wv = weight(col0 + r, c);
                }
                ws[e] = wv;
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            var a: array<f32, 4>;
            var bb: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = xs[(lid.y * 4u + i) * TK + kk];
                bb[i] = ws[(lid.x * 4u + i) * TK + kk];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(a[i], bb[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + lid.y * 4u + i;
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + lid.x * 4u + j;
            if (r < p.m && c < p.n) {
                y[r * p.n + c] = activate(acc[i][j] + b[c]);
            }
        }
    }
}
