// Attention for software adapters (lavapipe, SwiftShader): appended to attention.wgsl (its
// Params, bindings and constants) as a second entry point `direct` of the same module, with no
// workgroup memory and no barriers. One thread per (query, head, 32 output dims): it walks the
// keys its query may see, each score a dot product read straight from qkv, with a running max
// and sum (the online softmax of the tiled entry point), and keeps its 32 output dims in eight
// named vec4 registers. A head wider than 32 dims takes head_dim / 32 threads per query, each
// computing the scores again (the grid's y holds heads x pieces of 32 dims); the host sends
// head dims that are not a multiple of 32 to `main`. Workgroups of QT = 8 threads: the tiled
// entry point's query tiles.
//
// Measured in headless Chromium on SwiftShader (2026-12-07, a page timing one dispatch; 12
// heads): 32 texts of 8-30 tokens, head dim 32, 408 ms in `main` against 29 here; 64 dims 468
// against 83; 4 texts of 77-128 tokens 397 against 82; one text of 300 tokens, 64 dims, 739
// against 463; one 16-token query 9.9 against 2.7. On a CPU, `main`'s five barriers per key
// tile (each a switch through the workgroup's 64 invocations) and its 32-slot accumulator
// array indexed in loops cost more than the arithmetic; a GPU keeps `main`.

const DIRECT_DIMS: u32 = 32u;

fn qkv4(at: u32) -> vec4<f32> {
    return vec4<f32>(qkv[at], qkv[at + 1u], qkv[at + 2u], qkv[at + 3u]);
}

@compute @workgroup_size(8)
fn direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (wg.x >= p.tiles) {
        return;
    }
    let tile = tiles[wg.x];
    let pieces = p.head_dim / DIRECT_DIMS;
    let h = wg.y / pieces;
    let d0 = (wg.y % pieces) * DIRECT_DIMS;
    let head = head_of(tile.x, h);
    let first = head.first;
    let len = head.len;
    let hd = p.head_dim;
    let stride = head.stride;
    let k_col = head.k_col;
    let v_col = head.v_col + d0;
    let i = min(tile.y + lid, len - 1u); // this thread's query, as a position in its text
    let keys = key_range(i, i, len);
    let q_at = (first + i) * stride + h * hd;
    let span = i32(p.bias_span);
    var m = NEG;
    var l = 0.0;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);
    for (var j = keys.x; j < keys.y; j++) {
        let row = (first + j) * stride;
        var qk = 0.0;
        for (var d = 0u; d < hd; d += 4u) {
            qk += dot(qkv4(q_at + d), qkv4(row + k_col + d));
        }
        var s = qk * p.scale;
        if (span > 0) {
            let rel = clamp(i32(j) - i32(i), 1 - span, span - 1) + span - 1;
            s += bias[h * (2u * p.bias_span - 1u) + u32(rel)];
        }
        if (s > m) {
            // A new max: what was summed so far shrinks by exp(m - s) (0 on the first key).
            let alpha = exp(m - s);
            l *= alpha;
            a0 *= alpha;
            a1 *= alpha;
            a2 *= alpha;
            a3 *= alpha;
            a4 *= alpha;
            a5 *= alpha;
            a6 *= alpha;
            a7 *= alpha;
            m = s;
        }
        let pj = exp(s - m);
        l += pj;
        let v = row + v_col;
        a0 = fma(vec4<f32>(pj), qkv4(v), a0);
        a1 = fma(vec4<f32>(pj), qkv4(v + 4u), a1);
        a2 = fma(vec4<f32>(pj), qkv4(v + 8u), a2);
        a3 = fma(vec4<f32>(pj), qkv4(v + 12u), a3);
        a4 = fma(vec4<f32>(pj), qkv4(v + 16u), a4);
        a5 = fma(vec4<f32>(pj), qkv4(v + 20u), a5);
        a6 = fma(vec4<f32>(pj), qkv4(v + 24u), a6);
        a7 = fma(vec4<f32>(pj), qkv4(v + 28u), a7);
    }
    if (tile.y + lid >= len) {
        return;
    }
    // Every query sees at least itself, so l > 0.
    let inv = 1.0 / l;
    let out = (first + i) * head.q_dim + h * hd + d0;
    let outs = array<vec4<f32>, 8>(a0 * inv, a1 * inv, a2 * inv, a3 * inv, a4 * inv, a5 * inv, a6 * inv, a7 * inv);
    for (var c = 0u; c < 8u; c++) {
        for (var e = 0u; e < 4u; e++) {
            ctx[out + 4u * c + e] = outs[c][e];
        }
    }
}
