// Each row divided by max(‖row‖₂, 1e-12), in place, as torch.nn.functional.normalize.
// Mirrors kernels::l2_normalize. One workgroup per row.

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wg.x;
    if (row >= p.rows) {
        return;
    }
    let lid = lid3.x;
    var s = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[row * p.cols + i];
        s += v * v;
    }
    red[lid] = s;
    workgroupBarrier();
    for (var k = WG / 2u; k > 0u; k = k / 2u) {
        if (lid < k) {
            red[lid] += red[lid + k];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / max(sqrt(red[0]), 1e-12);
    for (var i = lid; i < p.cols; i += WG) {
        x[row * p.cols + i] *= inv;
    }
}
