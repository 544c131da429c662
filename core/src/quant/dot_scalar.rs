//! Portable dot products of one row of ggml weight blocks with one quantized activation row:
//! the reference every SIMD kernel is tested against, and the path on wasm32.
//!
//! ```text
//! 32-element types · Q8 (integer dot isum = Σ q·a per block, a = activation quants):
//!   Q4_0  d·(q−8)      ->  d · (da·isum − 8·s)         s = da·Σa (the Q8 row's `s`)
//!   Q4_1  d·q + m      ->  d·da·isum + m·s
//!   Q5_0  d·(q−16)     ->  d · (da·isum − 16·s)
//!   Q5_1  d·q + m      ->  d·da·isum + m·s
//!   Q8_0  d·q          ->  d·da·isum
//! K-quants · Q8K (per 256-element super-block; bsums = sums of 16 activation quants):
//!   Q2_K / Q4_K / Q5_K  d·sc·q − dmin·mn  ->  da · (d·Σ sc·isum − dmin·Σ mn·bsum)
//!   Q3_K / Q6_K         d·sc·q (q signed) ->  da · d · Σ sc·isum
//! ```
//! Block layouts are ggml's (see `DType::block_bytes`); f16 fields are little-endian.

use half::f16;

use super::q8::{Q8KRow, Q8Row, QK8, QK_K};

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Scale and min `j` (< 8) of a Q4_K / Q5_K super-block's 12 packed 6-bit pairs.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 16 signed 6-bit scales of a Q3_K super-block (ggml's kmask unpacking, minus 32).
pub(crate) fn q3k_scales(s: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (t, byte) in w.to_le_bytes().iter().enumerate() {
            out[4 * i + t] = *byte as i8 - 32;
        }
    }
    out
}

/// Σ over blocks of a 32-element type whose 4-bit quants are `qs` (16 bytes, low nibbles =
/// elements 0..16, high = 16..32) plus `hi` (the 5th bit of element i, as 0 or 16).
#[inline(always)]
fn isum_nibbles(qs: &[u8], hi: impl Fn(usize) -> i32, a: &[i8]) -> i32 {
    let mut isum = 0i32;
    for j in 0..16 {
        let lo = (qs[j] & 0xF) as i32 + hi(j);
        let up = (qs[j] >> 4) as i32 + hi(j + 16);
        isum += lo * a[j] as i32 + up * a[j + 16] as i32;
    }
    isum
}

pub fn q4_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0.0f32;
    for (b, blk) in w.chunks_exact(18).enumerate() {
        let isum = isum_nibbles(&blk[2..18], |_| 0, &a.qs[QK8 * b..]);
        sum += f16_at(blk, 0) * (a.d[b] * isum as f32 - 8.0 * a.s[b]);
    }
    sum
}

pub fn q4_1(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0.0f32;
    for (b, blk) in w.chunks_exact(20).enumerate() {
        let isum = isum_nibbles(&blk[4..20], |_| 0, &a.qs[QK8 * b..]);
        sum += f16_at(blk, 0) * a.d[b] * isum as f32 + f16_at(blk, 2) * a.s[b];
    }
    sum
}

pub fn q5_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0.0f32;
    for (b, blk) in w.chunks_exact(22).enumerate() {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let isum = isum_nibbles(&blk[6..22], |i| (((qh >> i) & 1) << 4) as i32, &a.qs[QK8 * b..]);
        sum += f16_at(blk, 0) * (a.d[b] * isum as f32 - 16.0 * a.s[b]);
    }
    sum
}

pub fn q5_1(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0.0f32;
    for (b, blk) in w.chunks_exact(24).enumerate() {
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        let isum = isum_nibbles(&blk[8..24], |i| (((qh >> i) & 1) << 4) as i32, &a.qs[QK8 * b..]);
        sum += f16_at(blk, 0) * a.d[b] * isum as f32 + f16_at(blk, 2) * a.s[b];
    }
    sum
}

pub fn q8_0(w: &[u8], a: Q8Row) -> f32 {
    let mut sum = 0.0f32;
    for (b, blk) in w.chunks_exact(34).enumerate() {
        let aq = &a.qs[QK8 * b..QK8 * (b + 1)];
        let isum: i32 = blk[2..34].iter().zip(aq).map(|(&q, &x)| q as i8 as i32 * x as i32).sum();
        sum += f16_at(blk, 0) * a.d[b] * isum as f32;
    }
    sum
}

pub fn q2_k(w: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(84).enumerate() {
        let (scales, qs) = (&blk[0..16], &blk[16..80]);
        let aq = &a.qs[QK_K * i..QK_K * (i + 1)];
        let (mut isum, mut summ) = (0i32, 0i32);
        // Sub-block g (16 elements) = 2-bit field (g/2 % 4) of bytes qs[32(g/8) + 16(g%2) ..][..16].
        for g in 0..16 {
            let (n, j, h) = (g / 8, (g / 2) % 4, g % 2);
            let q = &qs[32 * n + 16 * h..][..16];
            let dot: i32 = (0..16).map(|l| ((q[l] >> (2 * j)) & 3) as i32 * aq[16 * g + l] as i32).sum();
            isum += (scales[g] & 0xF) as i32 * dot;
            summ += (scales[g] >> 4) as i32 * a.bsums[16 * i + g] as i32;
        }
        sum += a.d[i] * (f16_at(blk, 80) * isum as f32 - f16_at(blk, 82) * summ as f32);
    }
    sum
}

pub fn q3_k(w: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(110).enumerate() {
        let (hmask, qs) = (&blk[0..32], &blk[32..96]);
        let sc = q3k_scales(&blk[96..108]);
        let aq = &a.qs[QK_K * i..QK_K * (i + 1)];
        let mut isum = 0i32;
        for g in 0..16 {
            let (n, j, h) = (g / 8, (g / 2) % 4, g % 2);
            let m = 1u8 << (4 * n + j);
            let q = &qs[32 * n + 16 * h..][..16];
            let hm = &hmask[16 * h..][..16];
            let dot: i32 = (0..16)
                .map(|l| {
                    let v = ((q[l] >> (2 * j)) & 3) as i32 - if hm[l] & m != 0 { 0 } else { 4 };
                    v * aq[16 * g + l] as i32
                })
                .sum();
            isum += sc[g] as i32 * dot;
        }
        sum += a.d[i] * f16_at(blk, 108) * isum as f32;
    }
    sum
}

pub fn q4_k(w: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(144).enumerate() {
        let (scales, qs) = (&blk[4..16], &blk[16..144]);
        let aq = &a.qs[QK_K * i..QK_K * (i + 1)];
        let (mut isum, mut summ) = (0i32, 0i32);
        for j in 0..4 {
            let (sc0, m0) = scale_min_k4(2 * j, scales);
            let (sc1, m1) = scale_min_k4(2 * j + 1, scales);
            let q = &qs[32 * j..32 * (j + 1)];
            let (mut d0, mut d1) = (0i32, 0i32);
            for l in 0..32 {
                d0 += (q[l] & 0xF) as i32 * aq[64 * j + l] as i32;
                d1 += (q[l] >> 4) as i32 * aq[64 * j + 32 + l] as i32;
            }
            isum += sc0 as i32 * d0 + sc1 as i32 * d1;
            let bs = &a.bsums[16 * i + 4 * j..];
            summ += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
        }
        sum += a.d[i] * (f16_at(blk, 0) * isum as f32 - f16_at(blk, 2) * summ as f32);
    }
    sum
}

pub fn q5_k(w: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(176).enumerate() {
        let (scales, qh, qs) = (&blk[4..16], &blk[16..48], &blk[48..176]);
        let aq = &a.qs[QK_K * i..QK_K * (i + 1)];
        let (mut isum, mut summ) = (0i32, 0i32);
        for j in 0..4 {
            let (sc0, m0) = scale_min_k4(2 * j, scales);
            let (sc1, m1) = scale_min_k4(2 * j + 1, scales);
            let q = &qs[32 * j..32 * (j + 1)];
            let (mut d0, mut d1) = (0i32, 0i32);
            for l in 0..32 {
                let h0 = (((qh[l] >> (2 * j)) & 1) << 4) as i32;
                let h1 = (((qh[l] >> (2 * j + 1)) & 1) << 4) as i32;
                d0 += ((q[l] & 0xF) as i32 + h0) * aq[64 * j + l] as i32;
                d1 += ((q[l] >> 4) as i32 + h1) * aq[64 * j + 32 + l] as i32;
            }
            isum += sc0 as i32 * d0 + sc1 as i32 * d1;
            let bs = &a.bsums[16 * i + 4 * j..];
            summ += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
        }
        sum += a.d[i] * (f16_at(blk, 0) * isum as f32 - f16_at(blk, 2) * summ as f32);
    }
    sum
}

pub fn q6_k(w: &[u8], a: Q8KRow) -> f32 {
    let mut sum = 0.0f32;
    for (i, blk) in w.chunks_exact(210).enumerate() {
        let (ql, qh, sc) = (&blk[0..128], &blk[128..192], &blk[192..208]);
        let aq = &a.qs[QK_K * i..QK_K * (i + 1)];
        let mut isum = 0i32;
        for n in 0..2 {
            let (ql, qh, sc, aq) = (&ql[64 * n..], &qh[32 * n..], &sc[8 * n..], &aq[128 * n..]);
            // Element 32·c + l of this half (c < 4) takes scale sc[2c + l/16].
            let mut dots = [0i32; 8];
            for l in 0..32 {
                let q = [
                    (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                    (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                    (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                    (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                ];
                for (c, &v) in q.iter().enumerate() {
                    dots[2 * c + l / 16] += (v as i32 - 32) * aq[32 * c + l] as i32;
                }
            }
            isum += dots.iter().zip(sc).map(|(&d, &s)| d * s as i8 as i32).sum::<i32>();
        }
        sum += a.d[i] * f16_at(blk, 208) * isum as f32;
    }
    sum
}
