// Multi-head attention within each text: ctx = softmax(scale · q kᵀ + bias) v, per head.
// Mirrors kernels::attend. qkv rows hold [q | k | v], each `dim` wide; texts lie back to back
// (seqs[s] = (first row, length, _, _)), so keys of other texts and padding are never read.
// One workgroup per (token, head); the softmax subtracts the row max before exp.
// With bias_span > 0, `bias` is a relative-position table [heads, 2 * span - 1] and query i,
// key j (positions in their text) add bias[h][clamp(j - i, 1 - span, span - 1) + span - 1]
// (MPNet); with 0 it is a placeholder and never read.

struct Params {
    tokens: u32,
    heads: u32,
    head_dim: u32,
    dim: u32,
    scale: f32,
    bias_span: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> toks: array<vec4<u32>>; // .w = text index
@group(0) @binding(3) var<storage, read> seqs: array<vec4<u32>>; // (first row, len, _, _)
@group(0) @binding(4) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const WG: u32 = 64u;
const MAX_LEN: u32 = 512u;
var<workgroup> scores: array<f32, 512>;
var<workgroup> red: array<f32, 64>;

fn reduce(v: f32, lid: u32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + s]);
            } else {
                red[lid] += red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    let t = wg.x;
    let h = wg.y;
    if (t >= p.tokens) {
        return;
    }
    let lid = lid3.x;
    let seq = seqs[toks[t].w];
    let first = seq.x;
    let len = min(seq.y, MAX_LEN);
    let stride = 3u * p.dim;
    let q = t * stride + h * p.head_dim;
    let span = i32(p.bias_span);
    let i = i32(t - first);

    var local_max = -3.402823e38;
    for (var j = lid; j < len; j += WG) {
        let k = (first + j) * stride + p.dim + h * p.head_dim;
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            s = fma(qkv[q + d], qkv[k + d], s);
        }
        s *= p.scale;
        if (span > 0) {
            let row = h * (2u * p.bias_span - 1u);
            s += bias[row + u32(clamp(i32(j) - i, 1 - span, span - 1) + span - 1)];
        }
        scores[j] = s;
        local_max = max(local_max, s);
    }
    let m = reduce(local_max, lid, true);
    var local_sum = 0.0;
    for (var j = lid; j < len; j += WG) {
        let e = exp(scores[j] - m);
        scores[j] = e;
        local_sum += e;
    }
    let inv = 1.0 / reduce(local_sum, lid, false);
    for (var d = lid; d < p.head_dim; d += WG) {
        var acc = 0.0;
        for (var j = 0u; j < len; j++) {
            acc = fma(scores[j], qkv[(first + j) * stride + 2u * p.dim + h * p.head_dim + d], acc);
        }
        ctx[t * p.dim + h * p.head_dim + d] = acc * inv;
    }
}
