// out = a + b element-wise, [rows, cols]: a pre-norm layer's residual stream. Mirrors
// backend::cpu `add`. One thread per element, one workgroup row per row.

struct Params {
    rows: u32,
    cols: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.y;
    let c = gid.x;
    if (r >= p.rows || c >= p.cols) {
        return;
    }
    let i = r * p.cols + c;
    out[i] = a[i] + b[i];
}
