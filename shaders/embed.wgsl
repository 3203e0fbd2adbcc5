// Embedding gather-add: out[t] = word[id] + position[pos] + token_type[type] for each token t;
// a model without a position or token-type table (rotary positions) leaves that term out.
// Mirrors backend::cpu `embed`. One workgroup row per token, threads across the hidden size.
// The word table comes in any weight layout the matmuls read (see backend::gpu::GpuFormat),
// dequantized here element by element; the position and token-type tables are f32.

struct Params {
    tokens: u32,
    dim: u32,
    // 0: f32, 1: f16 pairs, 2: q8_0, 3: q4_1 (the layouts of linear_*.wgsl); 4, 5, 6: Q4_K,
    // Q5_K, Q6_K super-blocks as the file stores them (kquant.wgsl, appended to this file)
    format: u32,
    // blocks: first word of the block scales in `word`
    scale_offset: u32,
    // 1 when `position` / `token_type` hold a table; 0 when they are placeholders.
    has_position: u32,
    has_token_type: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
// Per token: (token id, token type id, position in its text, index of its text).
@group(0) @binding(1) var<storage, read> toks: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> word: array<u32>;
@group(0) @binding(3) var<storage, read> position: array<f32>;
@group(0) @binding(4) var<storage, read> token_type: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// An f16 (low 16 bits of h) as f32, by bits: unpack2x16float is missing on some GL ES
// adapters, and this shader must run on every one. Weights are finite, so no inf/NaN case.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h >> 15u) & 1u;
    let e = (h >> 10u) & 31u;
    let m = h & 1023u;
    if (e == 0u) {
        return select(1.0, -1.0, sign == 1u) * f32(m) * 5.9604645e-8;
    }
    return bitcast<f32>((sign << 31u) | ((e + 112u) << 23u) | (m << 13u));
}

// For kquant.wgsl.
fn kq_word(i: u32) -> u32 {
    return word[i];
}

fn word_value(row: u32, i: u32) -> f32 {
    let per_row = (p.dim + 31u) / 32u;
    switch p.format {
        case 1u: {
            return half_to_f32(word[row * ((p.dim + 1u) / 2u) + i / 2u] >> (16u * (i % 2u)));
        }
        case 2u: {
            let v = bitcast<i32>(word[row * per_row * 8u + i / 4u] << (24u - 8u * (i % 4u))) >> 24u;
            return f32(v) * bitcast<f32>(word[p.scale_offset + row * per_row + i / 32u]);
        }
        case 3u: {
            let q = (word[row * per_row * 4u + i / 8u] >> (4u * (i % 8u))) & 15u;
            let blk = p.scale_offset + 2u * (row * per_row + i / 32u);
            return f32(q) * bitcast<f32>(word[blk]) + bitcast<f32>(word[blk + 1u]);
        }
        case 4u, 5u, 6u: {
            return kq_value(p.format, p.dim, row, i);
        }
        default: {
            return bitcast<f32>(word[row * p.dim + i]);
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let i = gid.x;
    if (t >= p.tokens || i >= p.dim) {
        return;
    }
    let tok = toks[t];
    var v = word_value(tok.x, i);
    if (p.has_position == 1u) {
        v += position[tok.z * p.dim + i];
    }
    if (p.has_token_type == 1u) {
        v += token_type[tok.y * p.dim + i];
    }
    out[t * p.dim + i] = v;
}
