// Peak probe (not a model op): the adapter's FMA rate as WGSL reaches it. Each thread runs
// eight independent vec4 chains of fma for p.iterations steps (64 FLOPs a step), enough
// independent work to hide FMA latency on any GPU, and writes one value so the compiler
// cannot drop the loop. `wembed gpu-bench` reports it as the peak the matmul is measured
// against.
//
// Written once for both precisions: this file computes in f32; the f16 probe is this file
// with `enable f16;` in front and the alias below set to f16 (src/backend/gpu/kernels.rs),
// built only where the device has the shader-f16 feature.
alias F = f32;

struct Params {
    iterations: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    let seed = F(f32(i % 7u) * 1e-3);
    // a·c + b with a below 1 (also once rounded to f16) stays finite for any number of steps.
    let a = vec4<F>(F(0.999), F(0.998), F(0.997), F(0.996));
    let b = vec4<F>(seed);
    var c0 = vec4<F>(seed);
    var c1 = c0 + F(1.0);
    var c2 = c0 + F(2.0);
    var c3 = c0 + F(3.0);
    var c4 = c0 + F(4.0);
    var c5 = c0 + F(5.0);
    var c6 = c0 + F(6.0);
    var c7 = c0 + F(7.0);
    for (var n = 0u; n < p.iterations; n++) {
        c0 = fma(c0, a, b);
        c1 = fma(c1, a, b);
        c2 = fma(c2, a, b);
        c3 = fma(c3, a, b);
        c4 = fma(c4, a, b);
        c5 = fma(c5, a, b);
        c6 = fma(c6, a, b);
        c7 = fma(c7, a, b);
    }
    let s = (c0 + c1) + (c2 + c3) + (c4 + c5) + (c6 + c7);
    out[i % 256u] = f32(s.x + s.y + s.z + s.w);
}
