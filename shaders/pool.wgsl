// One pooling mode for every text: out[s, col_offset + i] from the token vectors of text s.
// Mirrors kernels::pool_sequence (sentence-transformers' Pooling). Mean and max cover tokens
// start..len of each text; cls takes its first token, lasttoken its last.

struct Params {
    texts: u32,
    dim: u32,
    // row width of `out`: modes x dim
    width: u32,
    col_offset: u32,
    // 0: cls, 1: max, 2: mean, 3: mean / sqrt(len), 4: last token
    mode: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> hidden: array<f32>;
@group(0) @binding(2) var<storage, read> seqs: array<vec4<u32>>; // (first row, len, start, _)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    let s = gid.y;
    if (i >= p.dim || s >= p.texts) {
        return;
    }
    let seq = seqs[s];
    let first = seq.x;
    let len = max(seq.y, 1u);
    let start = min(seq.z, len - 1u);
    var v = 0.0;
    switch p.mode {
        case 0u: {
            v = hidden[first * p.dim + i];
        }
        case 1u: {
            v = -3.402823e38;
            for (var t = start; t < len; t++) {
                v = max(v, hidden[(first + t) * p.dim + i]);
            }
        }
        case 4u: {
            v = hidden[(first + len - 1u) * p.dim + i];
        }
        default: {
            for (var t = start; t < len; t++) {
                v += hidden[(first + t) * p.dim + i];
            }
            let count = f32(len - start);
            if (p.mode == 2u) {
                v = v / count;
            } else {
                v = v / sqrt(count);
            }
        }
    }
    out[s * p.width + p.col_offset + i] = v;
}
