// Gated linear unit: y[r, j] = act(x[r, j]) * x[r, n + j], x [rows, 2n] -> y [rows, n]
// (SwiGLU, GeGLU). Mirrors backend::cpu `glu` (kernels::glu_row). A separate pass after one
// matmul on the stacked [gate; up] weights rather than an epilogue of the matmul kernels: the
// four weight formats and two matmul shapes stay one kernel each, and this pass moves 3n floats
// per row against the matmul's k·2n multiply-adds. One thread per output. activate.wgsl
// (`activate`, on p.act) is appended to this file.

struct Params {
    rows: u32,
    n: u32,
    // activate.wgsl's codes: 1: GELU (erf), 2: GELU (tanh form), 3: ReLU, 4: tanh, 5: SiLU
    act: u32,
    _pad: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

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
