// Rotary position embedding in place on the query and key heads of qkv
// [tokens, (heads + 2 * kv_heads) * head_dim] (NeoX / rotate-half pairs: element i of a head with element i + head_dim / 2). Mirrors
// backend::cpu `rotary` (kernels::rotate_half_row). The angles' cos and sin come from a host
// table [positions, head_dim] (cos then sin per row): WGSL's sin/cos are only specified to
// 2^-11, and only on [-π, π]. One thread per pair, one workgroup row per token.

struct Params {
    tokens: u32,
    // Head-wide pieces rotated at the start of each row: the q heads, then the k heads.
    pieces: u32,
    head_dim: u32,
    // Row stride of qkv: (heads + 2 * kv_heads) * head_dim.
    cols: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>;
// Per token: (token id, token type id, position in its text, index of its text).
@group(0) @binding(2) var<storage, read> toks: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> table: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let half = p.head_dim / 2u;
    // Pairs of q's heads, then of k's: pieces * head_dim / 2 of them in a row.
    let pair = gid.x;
    if (t >= p.tokens || pair >= p.pieces * half) {
        return;
    }
    let i = pair % half;
    let base = t * p.cols + (pair / half) * p.head_dim;
    let row = toks[t].z * p.head_dim;
    let c = table[row + i];
    let s = table[row + half + i];
    let a = qkv[base + i];
    let b = qkv[base + half + i];
    qkv[base + i] = a * c - b * s;
    qkv[base + half + i] = b * c + a * s;
}
