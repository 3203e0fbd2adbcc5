// y[m, n] = act(x[m, k] · w[n, k]ᵀ + b[n]), w in its checkpoint layout [out, in].
// Mirrors backend::cpu `linear` (+ kernels::activate).
//
// This file is the format-independent part: the pipeline's source is this file followed by
// activate.wgsl (`activate`, on p.act) and one weight-format file (linear_f32.wgsl, linear_f16.wgsl, linear_q8.wgsl, linear_q4.wgsl),
// which declares the `w` / `w4` bindings and `stage_w`, the function that fills one tile of
// weights through `put_w`.
//
// Register-tiled, in two shapes from this one source (the host sets RM and RN, and picks the
// shape per dispatch: backend::gpu `Gpu::linear`). Each workgroup computes a TM x TN block of y
// with 16x16 threads, each thread (4 RM) x (4 RN) outputs in vec4 registers:
// - narrow, RM = RN = 1: 64x64 tiles, 4x4 outputs a thread, many workgroups for few rows;
// - wide, RM = RN = 2: 128x128 tiles, 8x8 outputs a thread (rows 4ty .. 4ty + 3 and
//   64 + 4ty .. 64 + 4ty + 3, columns likewise from 4tx), for big products.
// Tiles of x and w are staged 16 steps of k at a time in workgroup memory, k-major, as vec4s
// along m and n, so a step of k costs a thread RM + RN 16-byte workgroup reads for 16 RM RN
// multiply-adds (the kernel before read 8 scalars for 16): on a GPU, workgroup-memory
// instructions rather than FMAs were what bound it. Within a warp the w reads are 16
// consecutive vec4s and the x reads broadcasts: no bank conflicts. When the format's alignment
// holds (p.vec4 = 1; k % 4 for f32) x is staged with vec4 loads, through the same buffer bound
// a second time as a vec4 array, else with bounds-checked scalars, so any m, n, k works (odd
// sizes included); the weight-format file stages 64 weight rows per call of stage_w (twice in
// the wide shape). 256 threads: SwiftShader's per-workgroup maximum. Workgroup memory: 8 KB
// narrow, 16 KB wide (WebGPU's minimum limit).
//
// Half-precision arithmetic (Kernel::LinearF16H, LinearQ8H, ..: reduced weights on a GPU with
// the shader-f16 feature; the host prepends `enable f16;` and sets T to f16 and HALF to true):
// the tiles hold f16 (half the workgroup memory and its traffic; put_w rounds each unpacked or
// dequantized weight) and the products run in f16 (two per instruction on many GPUs), summed
// in f16 over one step of k (16 products) and then added to f32 totals, so the rounding error
// grows with 16 terms, not with k. With T = f32 the totals are never written and the
// accumulators are the sums (compilers drop the dead code).

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

// Outputs a thread in each direction, in fours: the host's source sets them (1 or 2).
const RM: u32 = 2u;
const RN: u32 = 2u;
const TM: u32 = 64u * RM;
const TN: u32 = 64u * RN;
const TK: u32 = 16u;
// The tiles' and the products' number type (see above).
alias T = f32;
const HALF: bool = false;

// xs[kk * TM / 4 + i] holds x rows 4i .. 4i + 3 at k0 + kk; ws[kk * TN / 4 + j], w rows
// 4j .. 4j + 3.
var<workgroup> xs: array<vec4<T>, TK * TM / 4u>;
var<workgroup> ws: array<vec4<T>, TK * TN / 4u>;
// Which 64 rows of the w tile stage_w is filling (0 or 64).
var<private> w_base: u32;

// The weight-format files' one way into the tile: weight row col0 + r at k0 + c.
fn put_w(r: u32, c: u32, v: f32) {
    ws[c * (TN / 4u) + (w_base + r) / 4u][r % 4u] = T(v);
}

// Fills xs with x[row0 .. row0 + TM, k0 .. k0 + 16], zeros outside. Neighbouring threads
// take neighbouring rows, so their stores land in different banks.
fn stage_x(row0: u32, k0: u32, li: u32) {
    if (p.vec4 == 1u) {
        // TM rows x 4 vec4: TM / 64 each.
        for (var s = 0u; s < TM / 64u; s++) {
            let e = li + s * 256u;
            let r = e % TM;
            let c = (e / TM) * 4u;
            var xv = vec4<f32>(0.0);
            if (row0 + r < p.m && k0 + c < p.k) {
                xv = x4[((row0 + r) * p.k + k0 + c) / 4u];
            }
            for (var q = 0u; q < 4u; q++) {
                xs[(c + q) * (TM / 4u) + r / 4u][r % 4u] = T(xv[q]);
            }
        }
    } else {
        for (var s = 0u; s < TM / 16u; s++) {
            let e = li + s * 256u;
            let r = e % TM;
            let c = e / TM;
            var xv = 0.0;
            if (row0 + r < p.m && k0 + c < p.k) {
                xv = x[(row0 + r) * p.k + k0 + c];
            }
            xs[c * (TM / 4u) + r / 4u][r % 4u] = T(xv);
        }
    }
}

// Writes one row of a thread's outputs: y[r, c0 + j] = act(v[j] + b), j = 0..3.
fn store_row(r: u32, c0: u32, v: vec4<f32>) {
    if (r >= p.m) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j;
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
    // acc_i: the thread's outputs in its row i (4ty + i, then 64 + 4ty + i - 4), columns
    // 4tx .. 4tx + 3; bcc_i the same rows at columns 64 + 4tx ... Named registers, not an
    // array indexed in loops, which some compilers keep in slow local memory; the narrow
    // shape's compiler drops the ones it never touches.
    var acc0 = vec4<T>(0.0);
    var acc1 = vec4<T>(0.0);
    var acc2 = vec4<T>(0.0);
    var acc3 = vec4<T>(0.0);
    var acc4 = vec4<T>(0.0);
    var acc5 = vec4<T>(0.0);
    var acc6 = vec4<T>(0.0);
    var acc7 = vec4<T>(0.0);
    var bcc0 = vec4<T>(0.0);
    var bcc1 = vec4<T>(0.0);
    var bcc2 = vec4<T>(0.0);
    var bcc3 = vec4<T>(0.0);
    var bcc4 = vec4<T>(0.0);
    var bcc5 = vec4<T>(0.0);
    var bcc6 = vec4<T>(0.0);
    var bcc7 = vec4<T>(0.0);
    // HALF: asum_i and bsum_i total acc_i and bcc_i in f32, one step of k at a time.
    var asum0 = vec4<f32>(0.0);
    var asum1 = vec4<f32>(0.0);
    var asum2 = vec4<f32>(0.0);
    var asum3 = vec4<f32>(0.0);
    var asum4 = vec4<f32>(0.0);
    var asum5 = vec4<f32>(0.0);
    var asum6 = vec4<f32>(0.0);
    var asum7 = vec4<f32>(0.0);
    var bsum0 = vec4<f32>(0.0);
    var bsum1 = vec4<f32>(0.0);
    var bsum2 = vec4<f32>(0.0);
    var bsum3 = vec4<f32>(0.0);
    var bsum4 = vec4<f32>(0.0);
    var bsum5 = vec4<f32>(0.0);
    var bsum6 = vec4<f32>(0.0);
    var bsum7 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        stage_x(row0, k0, li);
        for (var h = 0u; h < RN; h++) {
            w_base = 64u * h;
            stage_w(col0 + 64u * h, k0, li);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = xs[kk * (TM / 4u) + lid.y];
            let wv = ws[kk * (TN / 4u) + lid.x];
            acc0 = fma(vec4<T>(a.x), wv, acc0);
            acc1 = fma(vec4<T>(a.y), wv, acc1);
            acc2 = fma(vec4<T>(a.z), wv, acc2);
            acc3 = fma(vec4<T>(a.w), wv, acc3);
            if (RN == 2u) {
                let wv2 = ws[kk * (TN / 4u) + 16u + lid.x];
                bcc0 = fma(vec4<T>(a.x), wv2, bcc0);
                bcc1 = fma(vec4<T>(a.y), wv2, bcc1);
                bcc2 = fma(vec4<T>(a.z), wv2, bcc2);
                bcc3 = fma(vec4<T>(a.w), wv2, bcc3);
            }
            if (RM == 2u) {
                let a2 = xs[kk * (TM / 4u) + 16u + lid.y];
                acc4 = fma(vec4<T>(a2.x), wv, acc4);
                acc5 = fma(vec4<T>(a2.y), wv, acc5);
                acc6 = fma(vec4<T>(a2.z), wv, acc6);
                acc7 = fma(vec4<T>(a2.w), wv, acc7);
                if (RN == 2u) {
                    let wv2 = ws[kk * (TN / 4u) + 16u + lid.x];
                    bcc4 = fma(vec4<T>(a2.x), wv2, bcc4);
                    bcc5 = fma(vec4<T>(a2.y), wv2, bcc5);
                    bcc6 = fma(vec4<T>(a2.z), wv2, bcc6);
                    bcc7 = fma(vec4<T>(a2.w), wv2, bcc7);
                }
            }
        }
        workgroupBarrier();
        if (HALF) {
            asum0 += vec4<f32>(acc0);
            acc0 = vec4<T>(0.0);
            asum1 += vec4<f32>(acc1);
            acc1 = vec4<T>(0.0);
            asum2 += vec4<f32>(acc2);
            acc2 = vec4<T>(0.0);
            asum3 += vec4<f32>(acc3);
            acc3 = vec4<T>(0.0);
            asum4 += vec4<f32>(acc4);
            acc4 = vec4<T>(0.0);
            asum5 += vec4<f32>(acc5);
            acc5 = vec4<T>(0.0);
            asum6 += vec4<f32>(acc6);
            acc6 = vec4<T>(0.0);
            asum7 += vec4<f32>(acc7);
            acc7 = vec4<T>(0.0);
            bsum0 += vec4<f32>(bcc0);
            bcc0 = vec4<T>(0.0);
            bsum1 += vec4<f32>(bcc1);
            bcc1 = vec4<T>(0.0);
            bsum2 += vec4<f32>(bcc2);
            bcc2 = vec4<T>(0.0);
            bsum3 += vec4<f32>(bcc3);
            bcc3 = vec4<T>(0.0);
            bsum4 += vec4<f32>(bcc4);
            bcc4 = vec4<T>(0.0);
            bsum5 += vec4<f32>(bcc5);
            bcc5 = vec4<T>(0.0);
            bsum6 += vec4<f32>(bcc6);
            bcc6 = vec4<T>(0.0);
            bsum7 += vec4<f32>(bcc7);
            bcc7 = vec4<T>(0.0);
        }
    }
    let r = row0 + 4u * lid.y;
    let c = col0 + 4u * lid.x;
    store_row(r, c, asum0 + vec4<f32>(acc0));
    store_row(r + 1u, c, asum1 + vec4<f32>(acc1));
    store_row(r + 2u, c, asum2 + vec4<f32>(acc2));
    store_row(r + 3u, c, asum3 + vec4<f32>(acc3));
    if (RN == 2u) {
        store_row(r, c + 64u, bsum0 + vec4<f32>(bcc0));
        store_row(r + 1u, c + 64u, bsum1 + vec4<f32>(bcc1));
        store_row(r + 2u, c + 64u, bsum2 + vec4<f32>(bcc2));
        store_row(r + 3u, c + 64u, bsum3 + vec4<f32>(bcc3));
    }
    if (RM == 2u) {
        store_row(r + 64u, c, asum4 + vec4<f32>(acc4));
        store_row(r + 65u, c, asum5 + vec4<f32>(acc5));
        store_row(r + 66u, c, asum6 + vec4<f32>(acc6));
        store_row(r + 67u, c, asum7 + vec4<f32>(acc7));
        if (RN == 2u) {
            store_row(r + 64u, c + 64u, bsum4 + vec4<f32>(bcc4));
            store_row(r + 65u, c + 64u, bsum5 + vec4<f32>(bcc5));
            store_row(r + 66u, c + 64u, bsum6 + vec4<f32>(bcc6));
            store_row(r + 67u, c + 64u, bsum7 + vec4<f32>(bcc7));
        }
    }
}
