// Weight format for linear.wgsl: llama.cpp's K-quants (Q4_K, Q5_K, Q6_K; p.format says which),
// `w` holding the file's super-blocks as they are, decoded by kquant.wgsl (appended after this
// file). Rows are a multiple of 256 long (the loader refuses others, as ggml does), so no tile
// or gemv step runs past a row's end and eight consecutive weights always share a sub-block
// scale. The weights are decoded in registers from bytes: simple, not yet tuned (no vec4 weight
// path; x still takes linear.wgsl's vec4 path).

@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<u32>>;

fn kq_word(i: u32) -> u32 {
    return w[i];
}

// 64 rows x 16 weights: the first 128 threads stage eight weights each.
fn stage_w(col0: u32, k0: u32, li: u32) {
    if (li < 128u) {
        let r = li / 2u;
        let c0 = k0 + (li % 2u) * 8u;
        let row = col0 + r;
        var vals = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        if (row < p.n) {
            vals = kq8(p.format, row * (p.k / 256u) + c0 / 256u, c0 % 256u);
        }
        for (var q = 0u; q < 8u; q++) {
            put_w(r, (li % 2u) * 8u + q, vals[q]);
        }
    }
}

// For linear_gemv.wgsl: weights 8j .. 8j + 8 of row n.
fn w8(n: u32, j: u32) -> W8 {
    let v = kq8(p.format, n * (p.k / 256u) + (8u * j) / 256u, (8u * j) % 256u);
    return W8(vec4<f32>(v[0], v[1], v[2], v[3]), vec4<f32>(v[4], v[5], v[6], v[7]));
}
