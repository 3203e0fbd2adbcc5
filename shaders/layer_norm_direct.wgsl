// Layer norm for software adapters (lavapipe, SwiftShader): appended to layer_norm.wgsl (its
// Params and bindings) as a second entry point `direct`: one thread per row, the same two
// passes in a loop, no workgroup memory and no barriers. Workgroups of 16 rows; more than
// 65535 of them spill into the grid's y.
//
// Measured in headless Chromium on SwiftShader (2026-12-07, a page timing one dispatch, rows
// of 384 with a residual): `main`, a workgroup of 64 per row reducing through workgroup memory
// (14 barriers a row, each a switch through its 64 invocations), took 55.7 ms for 400 rows and
// 4.9 ms for 16 (52.1 and 2.8 in a second run); this one 5.3 and 2.6 ms. A GPU keeps `main`.

const DIRECT_ROWS: u32 = 16u;

@compute @workgroup_size(16)
fn direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = (wg.x + wg.y * 65535u) * DIRECT_ROWS + lid;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var i = 0u; i < p.cols; i++) {
        var v = x[base + i];
        if (p.has_residual == 1u) {
            v += residual[base + i];
            x[base + i] = v;
        }
        s += v;
    }
    let mean = s / f32(p.cols);
    var d = 0.0;
    for (var i = 0u; i < p.cols; i++) {
        let v = x[base + i] - mean;
        d += v * v;
    }
    let inv = inverseSqrt(d / f32(p.cols) + p.eps);
    for (var i = 0u; i < p.cols; i++) {
        x[base + i] = (x[base + i] - mean) * inv * gamma[i] + beta[i];
    }
}
