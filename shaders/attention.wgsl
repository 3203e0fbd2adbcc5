// Attention within each text, of any length: ctx = softmax(scale · q kᵀ + bias) v, per head.
// Mirrors kernels::attend. qkv rows hold [q | k | v]: `heads` query heads, then heads / group
// key heads and as many value heads, head_dim wide each (group > 1: grouped-query attention,
// query head h reads key/value head h / group). Texts lie back to back (seqs[s] = (first row,
// length, _, _)), so keys of other texts are never read.
//
// Flash-attention style: one workgroup per (tile of QT queries of one text, head). The keys go
// through workgroup memory in tiles, shared by the tile's queries, and each query keeps a
// running max `m` and sum `l` of its exponentials and rescales its accumulated output when the
// max grows, so no score row is ever stored whole (the kernel before this one held a 512-float
// row per query, and that was the GPU's text-length cap).
//
// Threads: LANES per query. Lane `sub` scores keys sub, sub + LANES, .. of a tile, and owns
// output dims sub, sub + LANES, .. of its query (in registers: head_dim <= LANES · MAX_DIMS).
//
// With bias_span > 0, `bias` is a relative-position table [heads, 2 * span - 1] and query i,
// key j (positions in their text) add bias[h][clamp(j - i, 1 - span, span - 1) + span - 1]
// (MPNet); with 0 it is a placeholder and never read. With window != NO_WINDOW, query i sees
// keys with |j - i| <= window only (sliding-window attention); with causal = 1, keys j <= i
// only (decoders).

struct Params {
    tiles: u32,
    heads: u32,
    group: u32,
    head_dim: u32,
    scale: f32,
    bias_span: u32,
    window: u32,
    // Keys per tile, set by the host: as many as fit in `mem` beside the queries, <= MAX_KT.
    key_tile: u32,
    causal: u32,
    _pad1: u32,
    _pad2: u32,
    _pad3: u32,
}

@group(1) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> tiles: array<vec4<u32>>; // (text, first query, _, _)
@group(0) @binding(3) var<storage, read> seqs: array<vec4<u32>>; // (first row, len, _, _)
@group(0) @binding(4) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;

const WG: u32 = 64u;
const QT: u32 = 8u;
const LANES: u32 = 8u;
const MAX_KT: u32 = 64u;
const MAX_DIMS: u32 = 32u;
const NO_WINDOW: u32 = 0xffffffffu;
// A masked score: below any real one, and exp(NEG - m) is 0 for any real max m.
const NEG: f32 = -3.0e38;
// Queries [QT, head_dim], then keys and values [key_tile, head_dim] each. With `scores`,
// 16 KiB: WebGPU's default maxComputeWorkgroupStorageSize.
const MEM: u32 = 3584u;
var<workgroup> mem: array<f32, 3584>;
var<workgroup> scores: array<f32, 512>; // [QT, MAX_KT]

// Where query head h of text `text` lies: its rows in qkv (first, len; stride floats apart),
// the columns of its key and value heads, and the width of a ctx row (q_dim).
struct Head {
    first: u32,
    len: u32,
    q_dim: u32,
    stride: u32,
    k_col: u32,
    v_col: u32,
}

fn head_of(text: u32, h: u32) -> Head {
    let seq = seqs[text];
    let q_dim = p.heads * p.head_dim;
    let kv_dim = q_dim / p.group;
    let k_col = q_dim + (h / p.group) * p.head_dim;
    return Head(seq.x, seq.y, q_dim, q_dim + 2u * kv_dim, k_col, k_col + kv_dim);
}

// The keys [x, y) that any of the queries q_first ..= q_last of a text of `len` may see.
fn key_range(q_first: u32, q_last: u32, len: u32) -> vec2<u32> {
    var lo = 0u;
    var hi = len;
    if (p.window != NO_WINDOW) {
        lo = select(0u, q_first - p.window, q_first > p.window);
        hi = min(len, q_last + p.window + 1u);
    }
    if (p.causal == 1u) {
        hi = min(hi, q_last + 1u);
    }
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>) {
    if (wg.x >= p.tiles) {
        return;
    }
    let tile = tiles[wg.x];
    let h = wg.y;
    let lid = lid3.x;
    let qi = lid / LANES;
    let sub = lid % LANES;
    let head = head_of(tile.x, h);
    let first = head.first;
    let len = head.len;
    let hd = p.head_dim;
    let q_dim = head.q_dim;
    let stride = head.stride;
    let k_col = head.k_col;
    let v_col = head.v_col;
    let q_last = min(tile.y + QT, len) - 1u;
    let i = min(tile.y + qi, q_last); // this lane's query, as a position in its text

    // Keys any query of the tile may see.
    let keys = key_range(tile.y, q_last, len);
    let k_lo = keys.x;
    let k_hi = keys.y;

    for (var e = lid; e < QT * hd; e += WG) {
        let row = min(tile.y + e / hd, q_last);
        mem[e] = qkv[(first + row) * stride + h * hd + e % hd];
    }
    let k_at = QT * hd;
    let v_at = k_at + p.key_tile * hd;
    let span = i32(p.bias_span);
    let nd = (hd + LANES - 1u) / LANES;

    var m = NEG;
    var l = 0.0;
    var acc: array<f32, 32>;
    for (var j0 = k_lo; j0 < k_hi; j0 += p.key_tile) {
        let n = min(p.key_tile, k_hi - j0);
        workgroupBarrier(); // the previous tile's reads are done (and the queries written)
        for (var e = lid; e < n * hd; e += WG) {
            let row = (first + j0 + e / hd) * stride + e % hd;
            mem[k_at + e] = qkv[row + k_col];
            mem[v_at + e] = qkv[row + v_col];
        }
        workgroupBarrier();
        for (var j = sub; j < n; j += LANES) {
            let key = j0 + j;
            var s = NEG;
            let in_window = p.window == NO_WINDOW || max(key, i) - min(key, i) <= p.window;
            if (in_window && (p.causal == 0u || key <= i)) {
                var dot = 0.0;
                for (var d = 0u; d < hd; d++) {
                    dot = fma(mem[qi * hd + d], mem[k_at + j * hd + d], dot);
                }
                s = dot * p.scale;
                if (span > 0) {
                    let rel = clamp(i32(key) - i32(i), 1 - span, span - 1) + span - 1;
                    s += bias[h * (2u * p.bias_span - 1u) + u32(rel)];
                }
            }
            scores[qi * MAX_KT + j] = s;
        }
        workgroupBarrier();
        var tile_max = NEG;
        for (var j = 0u; j < n; j++) {
            tile_max = max(tile_max, scores[qi * MAX_KT + j]);
        }
        let m_new = max(m, tile_max);
        workgroupBarrier(); // every lane has its max before any score becomes a probability
        for (var j = sub; j < n; j += LANES) {
            let s = scores[qi * MAX_KT + j];
            scores[qi * MAX_KT + j] = select(0.0, exp(s - m_new), s > NEG);
        }
        workgroupBarrier();
        // m_new >= m; while both are NEG nothing has been accumulated and the factor is 1.
        let alpha = exp(m - m_new);
        m = m_new;
        l *= alpha;
        for (var k = 0u; k < MAX_DIMS; k++) {
            acc[k] *= alpha;
        }
        for (var j = 0u; j < n; j++) {
            let pj = scores[qi * MAX_KT + j];
            l += pj;
            let row = v_at + j * hd;
            for (var k = 0u; k < MAX_DIMS; k++) {
                let d = sub + k * LANES;
                if (k >= nd) {
                    break;
                }
                if (d < hd) {
                    acc[k] = fma(pj, mem[row + d], acc[k]);
                }
            }
        }
    }
    if (tile.y + qi < len) {
        // Every query sees at least itself, so l > 0.
        let inv = 1.0 / l;
        let out = (first + i) * q_dim + h * hd;
        for (var k = 0u; k < MAX_DIMS; k++) {
            let d = sub + k * LANES;
            if (k >= nd) {
                break;
            }
            if (d < hd) {
                ctx[out + d] = acc[k] * inv;
            }
        }
    }
}
