// Weight format for linear.wgsl: f16. Each u32 of `w` holds two consecutive f16 of a row (low
// half first); rows are padded to an even length. unpack2x16float is core WGSL, so this runs
// on every adapter, with or without the shader-f16 feature; the arithmetic stays f32. vec4
// path when k % 8 == 0 (a vec4<u32> holds 8 weights).

@group(0) @binding(2) var<storage, read> w: array<u32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<u32>>;

fn stage_w(col0: u32, k0: u32, li: u32) {
    if (p.vec4 == 1u) {
        // 64 rows x 2 vec4<u32>: the first 128 threads stage w.
        if (li < 128u) {
            let r = li / 2u;
            let c = k0 + (li % 2u) * 8u;
            var packed = vec4<u32>(0u);
            if (col0 + r < p.n && c < p.k) {
                packed = w4[((col0 + r) * p.k + c) / 8u];
            }
            for (var q = 0u; q < 4u; q++) {
                let pair = unpack2x16float(packed[q]);
                put_w(r, (li % 2u) * 8u + 2u * q, pair.x);
                put_w(r, (li % 2u) * 8u + 2u * q + 1u, pair.y);
            }
        }
    } else {
        for (var s = 0u; s < 4u; s++) {
            let e = li + s * 256u;
            let r = e / TK;
            let c = k0 + e % TK;
            var wv = 0.0;
            if (col0 + r < p.n && c < p.k) {
                let pair = unpack2x16float(w[(col0 + r) * ((p.k + 1u) / 2u) + c / 2u]);
                wv = select(pair.x, pair.y, c % 2u == 1u);
            }
            put_w(r, e % TK, wv);
        }
    }
}

// For linear_gemv.wgsl: weights 8j .. 8j + 8 of row n, one vec4<u32> (k % 8 == 0).
fn w8(n: u32, j: u32) -> W8 {
    let q = w4[n * (p.k / 8u) + j];
    let lo = vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y));
    let hi = vec4<f32>(unpack2x16float(q.z), unpack2x16float(q.w));
    return W8(lo, hi);
}
