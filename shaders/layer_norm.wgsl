// x = LayerNorm(x + residual) over each row, in place. Mirrors kernels::add_layer_norm_row:
// two passes (mean, then the variance of the differences). One workgroup per row.

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    // 1 when `residual` holds a tensor to add; 0 when it is a placeholder.
    has_residual: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> residual: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;

const WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let row = wg.x + wg.y * 65535u;
    if (row >= p.rows) {
        return;
    }
    let lid = lid3.x;
    let base = row * p.cols;
    var s = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        var v = x[base + i];
        if (p.has_residual == 1u) {
            v += residual[base + i];
            x[base + i] = v;
        }
        s += v;
    }
    let mean = reduce_sum(s, lid) / f32(p.cols);
    var d = 0.0;
    for (var i = lid; i < p.cols; i += WG) {
        let v = x[base + i] - mean;
        d += v * v;
    }
    let inv = inverseSqrt(reduce_sum(d, lid) / f32(p.cols) + p.eps);
    for (var i = lid; i < p.cols; i += WG) {
        x[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
