//! GGUF (ggml) block decoders shared by the quantized ops (`qmatmul.wgsl`, `qembedding.wgsl`).
//! The including shader defines `wl(i) -> u32`, word i of the raw block bytes of the bound
//! rows (little-endian, four to a word; `qmatmul`'s reads weight slot `wsel`, see
//! `matmul_many.wgsl`) and the preamble sets `QT`, the block format:
//!
//! ```text
//! QT  format  block  bytes  layout (as core/src/quant/dequant.rs)
//! 0   Q4_0     32     18    [d:f16][qs:16]              (nib - 8) * d
//! 1   Q4_1     32     20    [d][m][qs:16]               nib * d + m
//! 2   Q5_0     32     22    [d][qh:u32][qs:16]          ((nib | h<<4) - 16) * d
//! 3   Q5_1     32     24    [d][m][qh:u32][qs:16]       (nib | h<<4) * d + m
//! 4   Q8_0     32     34    [d][qs:i8 x32]              q * d
//! 5   Q4_K    256    144    [d][dmin][scales:12][qs:128]
//! 6   Q5_K    256    176    [d][dmin][scales:12][qh:32][qs:128]
//! 7   Q6_K    256    210    [ql:128][qh:64][scales:i8 x16][d:f16]
//! ```
//! Blocks start at any even byte (18, 34, 210 are not multiples of 4), so reads go through
//! `ld32` (an unaligned u32 from two words) and `f16_at` (a half at an even byte).
//!
//! The unit of work is a "unit" of 32 consecutive elements of a row (a whole block of the
//! 32-element formats, a sub-block of the K-quants) split into four quarters `q`; `deq8`
//! decodes one quarter: 8 values, `a` at unit offsets `pos8(q).x ..+4` and `b` at
//! `pos8(q).y ..+4`. Every product is done in ggml's order, so the values equal the CPU's.

struct D8 {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn block_bytes() -> u32 {
    switch QT {
        case 0u: { return 18u; }
        case 1u: { return 20u; }
        case 2u: { return 22u; }
        case 3u: { return 24u; }
        case 4u: { return 34u; }
        case 5u: { return 144u; }
        case 6u: { return 176u; }
        default: { return 210u; }
    }
}

/// 32-element units per block.
fn units_per_block() -> u32 {
    return select(1u, 8u, QT >= 5u);
}

/// Unit offsets of the two vec4s `deq8(.., q)` returns.
fn pos8(q: u32) -> vec2<u32> {
    if (QT <= 3u) {
        return vec2<u32>(4u * q, 16u + 4u * q);
    }
    return vec2<u32>(8u * q, 8u * q + 4u);
}

fn ld32(b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) * 8u;
    let lo = wl(i);
    if (s == 0u) {
        return lo;
    }
    return (lo >> s) | (wl(i + 1u) << (32u - s));
}

fn byte_at(b: u32) -> u32 {
    return (wl(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}

fn f16_at(b: u32) -> f32 {
    return unpack2x16float(wl(b >> 2u) >> ((b & 2u) * 8u)).x;
}

/// Nibbles 0..3 of `v` (low nibble of each byte) or, with `hi`, the high nibbles.
fn nibbles(v: u32, hi: bool) -> vec4<u32> {
    let s = select(0u, 4u, hi);
    return vec4<u32>((v >> s) & 0xfu, (v >> (8u + s)) & 0xfu, (v >> (16u + s)) & 0xfu, (v >> (24u + s)) & 0xfu);
}

/// The four bytes of `v` as signed values.
fn sbytes(v: u32) -> vec4<f32> {
    return vec4<f32>(f32(i32(v << 24u) >> 24u), f32(i32(v << 16u) >> 24u), f32(i32(v << 8u) >> 24u), f32(i32(v) >> 24u));
}

/// Bits `first .. first + 4` of `h`, one per lane, moved to bit 4 (the fifth bit of Q5 values).
fn hbits(h: u32, first: u32) -> vec4<u32> {
    return vec4<u32>((h >> first) & 1u, (h >> (first + 1u)) & 1u, (h >> (first + 2u)) & 1u, (h >> (first + 3u)) & 1u) << vec4<u32>(4u);
}

/// ggml's get_scale_min_k4: the `j`-th 6-bit (scale, min) of a Q4_K / Q5_K block whose
/// 12 scale bytes start at byte `s`.
fn scale_min_k4(s: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(byte_at(s + j) & 63u), f32(byte_at(s + j + 4u) & 63u));
    }
    let hi = byte_at(s + j + 4u);
    let sc = (hi & 0xfu) | ((byte_at(s + j - 4u) >> 6u) << 4u);
    let m = (hi >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

/// Quarter `q` of unit `u` of the row whose blocks start at byte `rb`.
fn deq8(rb: u32, u: u32, q: u32) -> D8 {
    let upb = units_per_block();
    let bb = rb + (u / upb) * block_bytes();
    let sub = u % upb;
    switch QT {
        case 0u: {
            let d = f16_at(bb);
            let v = ld32(bb + 2u + 4u * q);
            return D8((vec4<f32>(nibbles(v, false)) - 8.0) * d, (vec4<f32>(nibbles(v, true)) - 8.0) * d);
        }
        case 1u: {
            let d = f16_at(bb);
            let m = f16_at(bb + 2u);
            let v = ld32(bb + 4u + 4u * q);
            return D8(vec4<f32>(nibbles(v, false)) * d + m, vec4<f32>(nibbles(v, true)) * d + m);
        }
        case 2u: {
            let d = f16_at(bb);
            let h = ld32(bb + 2u);
            let v = ld32(bb + 6u + 4u * q);
            let x0 = vec4<i32>(nibbles(v, false) | hbits(h, 4u * q)) - 16;
            let x1 = vec4<i32>(nibbles(v, true) | hbits(h, 16u + 4u * q)) - 16;
            return D8(vec4<f32>(x0) * d, vec4<f32>(x1) * d);
        }
        case 3u: {
            let d = f16_at(bb);
            let m = f16_at(bb + 2u);
            let h = ld32(bb + 4u);
            let v = ld32(bb + 8u + 4u * q);
            let x0 = nibbles(v, false) | hbits(h, 4u * q);
            let x1 = nibbles(v, true) | hbits(h, 16u + 4u * q);
            return D8(vec4<f32>(x0) * d + m, vec4<f32>(x1) * d + m);
        }
        case 4u: {
            let d = f16_at(bb);
            let o = bb + 2u + 8u * q;
            return D8(sbytes(ld32(o)) * d, sbytes(ld32(o + 4u)) * d);
        }
        case 5u, 6u: {
            // Sub-block `sub`: 64-element chunk c = sub / 2, low (even) or high (odd) nibbles.
            let c = sub / 2u;
            let hi = (sub & 1u) == 1u;
            let smin = scale_min_k4(bb + 4u, sub);
            let d1 = f16_at(bb) * smin.x;
            let m1 = f16_at(bb + 2u) * smin.y;
            let qs = select(bb + 16u, bb + 48u, QT == 6u) + 32u * c + 8u * q;
            var x0 = nibbles(ld32(qs), hi);
            var x1 = nibbles(ld32(qs + 4u), hi);
            if (QT == 6u) {
                let qh = bb + 16u + 8u * q;
                let bit = 2u * c + select(0u, 1u, hi);
                let sh = vec4<u32>(bit);
                x0 = x0 | (((bytes4(ld32(qh)) >> sh) & vec4<u32>(1u)) << vec4<u32>(4u));
                x1 = x1 | (((bytes4(ld32(qh + 4u)) >> sh) & vec4<u32>(1u)) << vec4<u32>(4u));
            }
            return D8(d1 * vec4<f32>(x0) - m1, d1 * vec4<f32>(x1) - m1);
        }
        default: {
            // Q6_K: sub-block `sub` = half n (128 elements) and group g (of 32): low / high
            // nibbles of ql[64n + 32 (g & 1) + l], bits 2g.. of qh[32n + l], scale
            // sc[8n + l / 16 + 2g] for l = 0 .. 32.
            let n = sub / 4u;
            let g = sub % 4u;
            let l = 8u * q;
            let ql = bb + 64u * n + 32u * (g & 1u) + l;
            let qh = bb + 128u + 32u * n + l;
            let sc = f32(i32(byte_at(bb + 192u + 8u * n + l / 16u + 2u * g) << 24u) >> 24u);
            let d = f16_at(bb + 208u) * sc;
            let hs = vec4<u32>(2u * g);
            let x0 = vec4<i32>(nibbles(ld32(ql), g >= 2u) | (((bytes4(ld32(qh)) >> hs) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32;
            let x1 = vec4<i32>(nibbles(ld32(ql + 4u), g >= 2u) | (((bytes4(ld32(qh + 4u)) >> hs) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32;
            return D8(d * vec4<f32>(x0), d * vec4<f32>(x1));
        }
    }
}

/// The four bytes of `v`.
fn bytes4(v: u32) -> vec4<u32> {
    return vec4<u32>(v & 0xffu, (v >> 8u) & 0xffu, (v >> 16u) & 0xffu, v >> 24u);
}
