// llama.cpp's K-quant super-blocks (ggml-common.h block_q4_K / block_q5_K / block_q6_K, 256
// weights each), decoded from the file's own bytes: a K-quant weight is uploaded as its raw
// blocks back to back, read here as u32 words through `kq_word(i)`, which the including shader
// defines over its own binding (linear_kquant.wgsl: `w`; embed.wgsl: `word`), since WGSL cannot
// pass a storage array to a function. Mirrors crate::quant's dequantize_q4_k / _q5_k / _q6_k
// (the reference, bit-exact against gguf-py): the same f32 operations, (d·sc)·q − dmin·m.
// `fmt`: 4 Q4_K (144 bytes a block), 5 Q5_K (176), 6 Q6_K (210; blocks start on any even
// byte, which is why everything here goes through bytes, not aligned words).

fn kq_block_bytes(fmt: u32) -> u32 {
    switch fmt {
        case 4u: {
            return 144u;
        }
        case 5u: {
            return 176u;
        }
        default: {
            return 210u;
        }
    }
}

fn kq_byte(b: u32) -> u32 {
    return (kq_word(b / 4u) >> (8u * (b % 4u))) & 255u;
}

// The little-endian u16 at an even byte offset (never straddles two words).
fn kq_u16(b: u32) -> u32 {
    return (kq_word(b / 4u) >> (8u * (b % 4u))) & 65535u;
}

// f16 bits as f32, by bits (as embed.wgsl's half_to_f32: unpack2x16float is missing on some GL
// ES adapters); the loader rejects non-finite scales.
fn kq_f16(h: u32) -> f32 {
    let sign = select(1.0, -1.0, ((h >> 15u) & 1u) == 1u);
    let e = (h >> 10u) & 31u;
    let m = h & 1023u;
    if (e == 0u) {
        return sign * f32(m) * 5.9604645e-8;
    }
    return sign * bitcast<f32>(((e + 112u) << 23u) | (m << 13u));
}

// Q4_K / Q5_K: the 6-bit scale and minimum of sub-block j (0..8), ggml get_scale_min_k4, from
// the 12 scale bytes at `s`.
fn kq_scale_min(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(kq_byte(s + j) & 63u), f32(kq_byte(s + j + 4u) & 63u));
    }
    let sc = (kq_byte(s + j + 4u) & 15u) | ((kq_byte(s + j - 4u) >> 6u) << 4u);
    let m = (kq_byte(s + j + 4u) >> 4u) | ((kq_byte(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

// Weights e0 .. e0 + 8 (e0 % 8 == 0, so they share one sub-block and its scale) of block `blk`.
fn kq8(fmt: u32, blk: u32, e0: u32) -> array<f32, 8> {
    let base = blk * kq_block_bytes(fmt);
    var out: array<f32, 8>;
    if (fmt == 6u) {
        // ql[128], qh[64], int8 scales[16], f16 d
        let d = kq_f16(kq_u16(base + 208u));
        let sc = f32(bitcast<i32>(kq_byte(base + 192u + e0 / 16u) << 24u) >> 24u);
        let ds = d * sc;
        let h = e0 / 128u;
        for (var i = 0u; i < 8u; i++) {
            let r = e0 % 128u + i;
            let lo = (kq_byte(base + 64u * h + r % 64u) >> (4u * (r / 64u))) & 15u;
            let hi = (kq_byte(base + 128u + 32u * h + r % 32u) >> (2u * (r / 32u))) & 3u;
            out[i] = ds * (f32(lo | (hi << 4u)) - 32.0);
        }
        return out;
    }
    // f16 d, f16 dmin, scales[12], (Q5_K: qh[32]), qs[128]
    let sm = kq_scale_min(base + 4u, e0 / 32u);
    let ds = kq_f16(kq_u16(base)) * sm.x;
    let dm = kq_f16(kq_u16(base + 2u)) * sm.y;
    let qs = base + select(16u, 48u, fmt == 5u);
    for (var i = 0u; i < 8u; i++) {
        let e = e0 + i;
        var q = (kq_byte(qs + (e / 64u) * 32u + e % 32u) >> (4u * ((e / 32u) % 2u))) & 15u;
        if (fmt == 5u) {
            q |= ((kq_byte(base + 16u + e % 32u) >> (e / 32u)) & 1u) << 4u;
        }
        out[i] = ds * f32(q) - dm;
    }
    return out;
}

// Weight `e` of row `row` of a [rows, cols] K-quant matrix (cols % 256 == 0).
fn kq_value(fmt: u32, cols: u32, row: u32, e: u32) -> f32 {
    var v = kq8(fmt, row * (cols / 256u) + e / 256u, (e % 256u) & ~7u);
    return v[e % 8u];
}
