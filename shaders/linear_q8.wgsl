// Weight format for linear.wgsl: q8_0 blocks (32 weights, one scale). `w` holds each row's
// int8 weights four to a u32 (byte b = weight 4i + b; rows padded to a multiple of 32), then,
// from word p.scale_offset on, the f32 scale of every block, row by row. Mirrors
// backend::cpu's q8_0 matmul. vec4 path when k % 32 == 0 (a vec4<u32> holds 16 weights, all in
// one block).

@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<u32>>;

fn stage_w(col0: u32, k0: u32, li: u32) {
    let padded = (p.k + 31u) / 32u * 32u;
    if (p.vec4 == 1u) {
        // 64 rows x 1 vec4<u32>: the first 64 threads stage w.
        if (li < 64u) {
            var packed = vec4<u32>(0u);
            var scale = 0.0;
            if (col0 + li < p.n) {
                packed = w4[((col0 + li) * p.k + k0) / 16u];
                scale = bitcast<f32>(w[p.scale_offset + (col0 + li) * (padded / 32u) + k0 / 32u]);
            }
            for (var q = 0u; q < 16u; q++) {
                let v = bitcast<i32>(packed[q / 4u] << (24u - 8u * (q % 4u))) >> 24u;
                put_w(li, q, f32(v) * scale);
            }
        }
    } else {
        for (var s = 0u; s < 4u; s++) {
            let e = li + s * 256u;
            let r = e / TK;
            let c = k0 + e % TK;
            var wv = 0.0;
            if (col0 + r < p.n && c < p.k) {
                let row = col0 + r;
                let word = w[row * (padded / 4u) + c / 4u];
                let v = bitcast<i32>(word << (24u - 8u * (c % 4u))) >> 24u;
                wv = f32(v) * bitcast<f32>(w[p.scale_offset + row * (padded / 32u) + c / 32u]);
            }
            put_w(r, e % TK, wv);
        }
    }
}

// Four int8 of a u32 (byte b = weight b), sign-extended.
fn i8x4(word: u32) -> vec4<f32> {
    let v = vec4<i32>(
        bitcast<i32>(word << 24u) >> 24u,
        bitcast<i32>(word << 16u) >> 24u,
        bitcast<i32>(word << 8u) >> 24u,
        bitcast<i32>(word) >> 24u,
    );
    return vec4<f32>(v);
}

// For linear_gemv.wgsl: weights 8j .. 8j + 8 of row n, two words of one block (k % 8 == 0).
fn w8(n: u32, j: u32) -> W8 {
    let padded = (p.k + 31u) / 32u * 32u;
    let word = n * (padded / 4u) + 2u * j;
    let scale = bitcast<f32>(w[p.scale_offset + n * (padded / 32u) + j / 4u]);
    return W8(i8x4(w[word]) * scale, i8x4(w[word + 1u]) * scale);
}
