// Gated linear unit: y[r, j] = act(x[r, j]) * x[r, n + j], x [rows, 2n] -> y [rows, n]
// (SwiGLU, GeGLU). Mirrors backend::cpu `glu` (kernels::glu_row). A separate pass after one
// matmul on the stacked [gate; up] weights rather than an epilogue of the matmul kernels: the
// four weight formats and two matmul shapes stay one kernel each, and this pass moves 3n floats
// per row against the matmul's k·2n multiply-adds. One thread per output.

struct Params {
    rows: u32,
    n: u32,
    // The codes of linear.wgsl: 1: GELU (erf), 2: GELU (tanh form), 3: ReLU, 4: tanh, 5: SiLU
    act: u32,
    _pad: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// linear.wgsl's erf and activate, repeated (WGSL has no includes): the rational erf on
// [-4, 4] of backend::cpu::kernels::erf, max abs error 4e-7.
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

fn activate(v: f32) -> f32 {
    switch p.act {
        case 1u: {
            return 0.5 * v * (1.0 + erf(v * 0.70710678));
        }
        case 2u: {
            let u = 0.7978846 * (v + 0.044715 * v * v * v);
            return v / (1.0 + exp(clamp(-2.0 * u, -80.0, 80.0)));
        }
        case 3u: {
            return max(v, 0.0);
        }
        case 4u: {
            return 1.0 - 2.0 / (exp(clamp(2.0 * v, -80.0, 80.0)) + 1.0);
        }
        case 5u: {
            // x · sigmoid(x); the exponent clamped as above.
            return v / (1.0 + exp(clamp(-v, -80.0, 80.0)));
        }
        default: {
            return v;
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y;
    let j = gid.x;
    if (r >= p.rows || j >= p.n) {
        return;
    }
    let base = r * 2u * p.n;
    y[r * p.n + j] = activate(x[base + j]) * x[base + p.n + j];
}
