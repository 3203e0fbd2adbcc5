// Weight format for linear.wgsl: 4-bit blocks with a scale and a minimum (ggml q4_1
// semantics, 32 weights per block: w = d·q + m). `w` holds each row's levels eight to a u32,
// in order (nibble j of word i = weight 8i + j; rows padded to a multiple of 32), then, from
// word p.scale_offset on, the f32 (d, m) of every block, row by row. Mirrors backend::cpu's
// dequantize-then-multiply. vec4 path when k % 32 == 0 (a vec4<u32> is one whole block, a
// tile row is half of it); otherwise a thread stages one u32 (8 weights) and masks the row's
// end itself.

@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<u32>>;

fn stage_w(col0: u32, k0: u32, li: u32) {
    if (p.vec4 == 1u) {
        // 64 rows x 16 weights: the first 64 threads stage a row each.
        if (li < 64u) {
            let row = col0 + li;
            var vals: array<f32, 16>;
            if (row < p.n) {
                let per_row = p.k / 32u;
                let blk = row * per_row + k0 / 32u;
                let block = w4[blk];
                let words = select(block.zw, block.xy, k0 % 32u == 0u);
                let d = bitcast<f32>(w[p.scale_offset + 2u * blk]);
                let m = bitcast<f32>(w[p.scale_offset + 2u * blk + 1u]);
                for (var q = 0u; q < 16u; q++) {
                    vals[q] = f32((words[q / 8u] >> (4u * (q % 8u))) & 15u) * d + m;
                }
            }
            for (var q = 0u; q < 16u; q++) {
                put_w(li, q, vals[q]);
            }
        }
        return;
    }
    // 64 rows x 2 words: the first 128 threads stage w.
    if (li < 128u) {
        let r = li / 2u;
        let c0 = k0 + (li % 2u) * 8u;
        let row = col0 + r;
        var vals = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        if (row < p.n && c0 < p.k) {
            let per_row = (p.k + 31u) / 32u;
            let word = w[row * per_row * 4u + c0 / 8u];
            let blk = p.scale_offset + 2u * (row * per_row + c0 / 32u);
            let d = bitcast<f32>(w[blk]);
            let m = bitcast<f32>(w[blk + 1u]);
            for (var q = 0u; q < 8u; q++) {
                if (c0 + q < p.k) {
                    vals[q] = f32((word >> (4u * q)) & 15u) * d + m;
                }
            }
        }
        for (var q = 0u; q < 8u; q++) {
            put_w(r, (li % 2u) * 8u + q, vals[q]);
        }
    }
}

// For linear_gemv.wgsl: weights 8j .. 8j + 8 of row n, one word of one block (k % 8 == 0).
fn w8(n: u32, j: u32) -> W8 {
    let padded = (p.k + 31u) / 32u * 32u;
    let word = w[n * (padded / 8u) + j];
    let blk = p.scale_offset + 2u * (n * (padded / 32u) + j / 4u);
    let d = bitcast<f32>(w[blk]);
    let m = bitcast<f32>(w[blk + 1u]);
    let lo = vec4<f32>(vec4<u32>(word, word >> 4u, word >> 8u, word >> 12u) & vec4<u32>(15u));
    let hi = vec4<f32>(vec4<u32>(word >> 16u, word >> 20u, word >> 24u, word >> 28u) & vec4<u32>(15u));
    return W8(lo * d + m, hi * d + m);
}
