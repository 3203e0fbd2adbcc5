// Weight format for linear.wgsl: f32, the checkpoint's own layout. vec4 path when k % 4 == 0.

@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(6) var<storage, read> w4: array<vec4<f32>>;

// Fills ws with w[col0 .. col0 + 64, k0 .. k0 + 16], zeros outside.
fn stage_w(col0: u32, k0: u32, li: u32) {
    if (p.vec4 == 1u) {
        let r = li / 4u;
        let c = k0 + (li % 4u) * 4u;
        var wv = vec4<f32>(0.0);
        if (col0 + r < p.n && c < p.k) {
            wv = w4[((col0 + r) * p.k + c) / 4u];
        }
        for (var q = 0u; q < 4u; q++) {
            put_w(r, (li % 4u) * 4u + q, wv[q]);
        }
    } else {
        for (var s = 0u; s < 4u; s++) {
            let e = li + s * 256u;
            let r = e / TK;
            let c = k0 + e % TK;
            var wv = 0.0;
            if (col0 + r < p.n && c < p.k) {
                wv = w[(col0 + r) * p.k + c];
            }
            put_w(r, e % TK, wv);
        }
    }
}

// For linear_gemv.wgsl: weights 8j .. 8j + 8 of row n (k % 8 == 0).
fn w8(n: u32, j: u32) -> W8 {
    let i = n * (p.k / 4u) + 2u * j;
    return W8(w4[i], w4[i + 1u]);
}
