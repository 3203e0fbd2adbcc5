// Peak probe (not a model op): the adapter's f16 FMA rate as WGSL reaches it, where the
// adapter has the `shader-f16` feature (the f32 twin is peak_fma.wgsl). Each thread runs
// eight independent vec4 chains of fma for p.iterations steps (64 FLOPs a step), enough
// independent work to hide FMA latency on any GPU, and writes one value so the compiler
// cannot drop the loop. `wembed gpu-bench` reports it as the peak the matmul is measured
// against.

enable f16;

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
    let seed = f32(i % 7u) * 1e-3;
    // a·x + b with a just under 1 stays finite for any number of steps.
    let a = vec4<f16>(0.999h, 0.998h, 0.997h, 0.996h);
    let b = vec4<f16>(f16(seed));
    var c0 = vec4<f16>(f16(seed));
    var c1 = c0 + 1.0h;
    var c2 = c0 + 2.0h;
    var c3 = c0 + 3.0h;
    var c4 = c0 + 4.0h;
    var c5 = c0 + 5.0h;
    var c6 = c0 + 6.0h;
    var c7 = c0 + 7.0h;
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
