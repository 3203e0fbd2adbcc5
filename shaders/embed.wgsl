// Embedding gather-add: out[t] = word[id] + position[pos] + token_type[type] for each token t.
// Mirrors backend::cpu `embed`. One workgroup row per token, threads across the hidden size.

struct Params {
    tokens: u32,
    dim: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// Per token: (token id, token type id, position in its text, index of its text).
@group(0) @binding(1) var<storage, read> toks: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> position: array<f32>;
@group(0) @binding(4) var<storage, read> token_type: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let i = gid.x;
    if (t >= p.tokens || i >= p.dim) {
        return;
    }
    let tok = toks[t];
    out[t * p.dim + i] = word[tok.x * p.dim + i] + position[tok.z * p.dim + i] + token_type[tok.y * p.dim + i];
}
