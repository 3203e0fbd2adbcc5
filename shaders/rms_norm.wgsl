// RMSNorm out of place: y = x / sqrt(mean(x²) + eps) * gamma over pieces of `width` values of
// each row; pieces past gamma's (pieces * width values) are copied. Mirrors backend::cpu
// `rms_norm` (kernels::rms_norm_row). One piece per workgroup: x the piece, y the row.

struct Params {
    rows: u32,
    cols: u32,
    width: u32,
    // Pieces of a row that are normalized (gamma holds normed * width values).
    normed: u32,
    eps: f32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let piece = wg.x;
    let row = wg.y;
    if (row >= p.rows || piece * p.width >= p.cols) {
        return;
    }
    let lid = lid3.x;
    let base = row * p.cols + piece * p.width;
    if (piece >= p.normed) {
        for (var i = lid; i < p.width; i += WG) {
            y[base + i] = x[base + i];
        }
        return;
    }
    var s = 0.0;
    for (var i = lid; i < p.width; i += WG) {
        let v = x[base + i];
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
    let inv = 1.0 / sqrt(red[0] / f32(p.width) + p.eps);
    let g = piece * p.width;
    for (var i = lid; i < p.width; i += WG) {
        y[base + i] = (x[base + i] * inv) * gamma[g + i];
    }
}
