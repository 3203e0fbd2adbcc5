// The activations of the ops that fuse one (linear.wgsl's matmuls, glu.wgsl), appended to
// their modules (WGSL has no includes), as backend::gpu::kernels composes them. Each such
// module's Params has `act`: 0 none, 1 GELU (erf), 2 GELU (tanh form), 3 ReLU, 4 tanh,
// 5 SiLU. Mirrors backend::cpu::kernels::activate.

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
        case 4u: {
            // tanh(v) = 1 - 2 / (exp(2v) + 1), as kernels::activate; clamped as above.
            return 1.0 - 2.0 / (exp(clamp(2.0 * v, -80.0, 80.0)) + 1.0);
        }
        case 5u: {
            // SiLU: v · sigmoid(v), as kernels::activate; clamped as above.
            return v / (1.0 + exp(clamp(-v, -80.0, 80.0)));
        }
        default: {
            return v;
        }
    }
}
