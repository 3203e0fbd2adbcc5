// y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]), w in its checkpoint layout [out, in].
// Mirrors backend::cpu `linear` (+ kernels::activate).
//
// This file is the format-independent part: the pipeline's source is this file followed by
// activate.wgsl (`activate`, on p.act) and one weight-format file (linear_f32.wgsl, linear_f16.wgsl, linear_q8.wgsl, linear_q4.wgsl),
// which declares the `w` / `w4` bindings and `stage_w`, the function that fills one tile of
// weights.
//
// Tiled: each workgroup computes a 64x64 block of y with 16x16 threads, 4x4 outputs each (rows
// and columns 16 apart), staging 64x16 slices of x and w in workgroup memory (rows padded to 17
// floats against bank conflicts) per step of k. When the format's alignment holds (p.vec4 = 1;
// k % 4 for f32) tiles are staged with vec4 loads, through the same buffers bound a second
// time as vec4 arrays; otherwise with bounds-checked scalars, so any m, n, k works (odd sizes
// included). 256 threads: SwiftShader's per-workgroup maximum.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // 0: none, 1: GELU (erf), 2: GELU (tanh form), 3: ReLU, 4: tanh, 5: SiLU
    act: u32,
    // 1 when k allows the weight format's vec4 loads
    vec4: u32,
    // blocks: first word of the block scales in `w`
    scale_offset: u32,
    // K-quants: which one (backend::gpu::GpuFormat::code: 4 Q4_K, 5 Q5_K, 6 Q6_K)
    format: u32,
    _pad: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> x4: array<vec4<f32>>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;
// Row stride of the staged tiles: one more than TK, so the 16 threads of a row that read 16
// different tile rows at the same k hit 16 different shared-memory banks (a stride of 16
// floats put them all in one bank: a 16-way conflict on every read).
const TKP: u32 = 17u;

var<workgroup> xs: array<f32, 1088>; // [TM][TKP]
var<workgroup> ws: array<f32, 1088>; // [TN][TKP]

// Fills xs with x[row0 .. row0 + 64, k0 .. k0 + 16], zeros outside.
fn stage_x(row0: u32, k0: u32, li: u32) {
    if (p.vec4 == 1u) {
        // 256 threads, 64 rows x 4 vec4: one each.
        let r = li / 4u;
        let c = k0 + (li % 4u) * 4u;
        var xv = vec4<f32>(0.0);
        if (row0 + r < p.m && c < p.k) {
            xv = x4[((row0 + r) * p.k + c) / 4u];
        }
        for (var q = 0u; q < 4u; q++) {
            xs[r * TKP + (li % 4u) * 4u + q] = xv[q];
        }
    } else {
        for (var s = 0u; s < 4u; s++) {
            let e = li + s * 256u;
            let r = e / TK;
            let c = k0 + e % TK;
            var xv = 0.0;
            if (row0 + r < p.m && c < p.k) {
                xv = x[(row0 + r) * p.k + c];
            }
            xs[r * TKP + e % TK] = xv;
        }
    }
}

// Writes one row of a thread's outputs: y[r, c0 + 16j] = act(v[j] + b), j = 0..3.
fn store_row(r: u32, c0: u32, v: vec4<f32>) {
    if (r >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + 16u * j;
        if (c < p.n) {
            y[r * p.n + c] = activate(v[j] + b[c]);
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * TM;
    let col0 = wg.x * TN;
    // The thread's 4x4 outputs, rows lid.y + 16i and columns lid.x + 16j of the tile (strided,
    // so neighbouring threads read neighbouring tile rows: no bank conflicts, coalesced
    // stores), in four vec4 registers acc_i[j]: no arrays indexed in loops, which some
    // compilers keep in slow local memory.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let xr = lid.y * TKP;
    let wr = lid.x * TKP;
    let step = 16u * TKP;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        stage_x(row0, k0, li);
        stage_w(col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = vec4<f32>(xs[xr + kk], xs[xr + step + kk], xs[xr + 2u * step + kk], xs[xr + 3u * step + kk]);
            let wv = vec4<f32>(ws[wr + kk], ws[wr + step + kk], ws[wr + 2u * step + kk], ws[wr + 3u * step + kk]);
            acc0 = fma(vec4<f32>(a.x), wv, acc0);
            acc1 = fma(vec4<f32>(a.y), wv, acc1);
            acc2 = fma(vec4<f32>(a.z), wv, acc2);
            acc3 = fma(vec4<f32>(a.w), wv, acc3);
        }
        workgroupBarrier();
    }
    let r = row0 + lid.y;
    let c = col0 + lid.x;
    store_row(r, c, acc0);
    store_row(r + 16u, c, acc1);
    store_row(r + 32u, c, acc2);
    store_row(r + 48u, c, acc3);
}
