//! Dequantization of ggml block formats to f32, exactly as ggml's reference
//! `dequantize_row_*` (and the `gguf` Python package's `gguf.quants.dequantize`) compute it.
//!
//! Every product below is evaluated in the same order and precision as ggml's C (f32, no
//! fused multiply-add), so results are bit-identical to the reference. Block layouts
//! (little-endian; `f16` is IEEE half):
//!
//! ```text
//! Q4_0  [d:f16][qs:16]                     x = (nibble - 8) * d        (low nibbles 0..16, high 16..32)
//! Q4_1  [d:f16][m:f16][qs:16]              x = nibble * d + m
//! Q5_0  [d:f16][qh:u32][qs:16]             x = ((nibble | bit<<4) - 16) * d
//! Q5_1  [d:f16][m:f16][qh:u32][qs:16]      x = (nibble | bit<<4) * d + m
//! Q8_0  [d:f16][qs:i8 x32]                 x = q * d
//! Q2_K  [scales:16][qs:64][d:f16][dmin:f16]                      (256 elements, 16 sub-blocks of 16)
//! Q3_K  [hmask:32][qs:64][scales:12][d:f16]                      (6-bit signed scales, 16 x 16)
//! Q4_K  [d:f16][dmin:f16][scales:12][qs:128]                     (6-bit scales/mins, 8 x 32)
//! Q5_K  [d:f16][dmin:f16][scales:12][qh:32][qs:128]
//! Q6_K  [ql:128][qh:64][scales:i8 x16][d:f16]
//! ```

use half::f16;

use crate::tensor::DType;

/// Why a buffer could not be dequantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DequantError {
    #[error("{dtype} is not a block format")]
    NotQuantized { dtype: DType },
    #[error("{dtype}: {elements} elements are not a whole number of {block_len}-element blocks")]
    PartialBlock { dtype: DType, elements: usize, block_len: usize },
    #[error("{dtype}: {elements} elements need {expected} bytes, got {actual}")]
    Length { dtype: DType, elements: usize, expected: usize, actual: usize },
}

/// Dequantize `blocks` (whole blocks of `dtype`) into `out` (`numel` floats).
///
/// A length mismatch (which callers rule out beforehand) leaves NaN in whatever part of `out`
/// has no source bytes rather than panicking; use [`try_dequantize`] to get an error instead.
pub fn dequantize(dtype: DType, blocks: &[u8], out: &mut [f32]) {
    if try_dequantize(dtype, blocks, out).is_err() {
        debug_assert!(false, "dequantize: {dtype} with {} bytes into {} floats", blocks.len(), out.len());
        out.fill(f32::NAN);
        let n = (blocks.len() / dtype.block_bytes()).min(out.len() / dtype.block_len());
        if dtype.is_quantized() && n > 0 {
            let _ = try_dequantize(dtype, &blocks[..n * dtype.block_bytes()], &mut out[..n * dtype.block_len()]);
        }
    }
}

/// Dequantize `blocks` into `out`, checking that the lengths agree.
pub fn try_dequantize(dtype: DType, blocks: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    if !dtype.is_quantized() {
        return Err(DequantError::NotQuantized { dtype });
    }
    let (bl, bb) = (dtype.block_len(), dtype.block_bytes());
    let Some(expected) = dtype.bytes_for(out.len()) else {
        return Err(DequantError::PartialBlock { dtype, elements: out.len(), block_len: bl });
    };
    if expected != blocks.len() {
        return Err(DequantError::Length { dtype, elements: out.len(), expected, actual: blocks.len() });
    }
    let block_fn: fn(&[u8], &mut [f32]) = match dtype {
        DType::Q4_0 => q4_0,
        DType::Q4_1 => q4_1,
        DType::Q5_0 => q5_0,
        DType::Q5_1 => q5_1,
        DType::Q8_0 => q8_0,
        DType::Q2_K => q2_k,
        DType::Q3_K => q3_k,
        DType::Q4_K => q4_k,
        DType::Q5_K => q5_k,
        DType::Q6_K => q6_k,
        DType::F32 | DType::F16 | DType::BF16 | DType::U32 => return Err(DequantError::NotQuantized { dtype }),
    };
    for (b, y) in blocks.chunks_exact(bb).zip(out.chunks_exact_mut(bl)) {
        block_fn(b, y);
    }
    Ok(())
}

#[inline]
fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = h(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        let x0 = (qs[j] & 0x0F) as i32 - 8;
        let x1 = (qs[j] >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    let qs = &b[4..20];
    for j in 0..16 {
        y[j] = (qs[j] & 0x0F) as f32 * d + m;
        y[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = h(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as i32;
        let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
        let x0 = ((qs[j] & 0x0F) as i32 | xh0) - 16;
        let x1 = ((qs[j] >> 4) as i32 | xh1) - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (h(b, 0), h(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        let x0 = (qs[j] & 0x0F) as u32 | xh0;
        let x1 = (qs[j] >> 4) as u32 | xh1;
        y[j] = x0 as f32 * d + m;
        y[j + 16] = x1 as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = h(b, 0);
    for (yj, &q) in y.iter_mut().zip(&b[2..34]) {
        *yj = (q as i8) as f32 * d;
    }
}

fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let (d, min) = (h(b, 80), h(b, 82));
    let mut is = 0;
    let mut out = 0;
    for n in 0..2 {
        let q = &b[16 + n * 32..16 + n * 32 + 32];
        for shift in [0u32, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    let v = ((q[l + half * 16] >> shift) & 3) as f32;
                    y[out] = dl * v - ml;
                    out += 1;
                }
            }
        }
    }
}

fn q3_k(b: &[u8], y: &mut [f32]) {
    let hm = &b[0..32];
    let qs = &b[32..96];
    let sc = &b[96..108];
    let d_all = h(b, 108);
    // 16 six-bit scales: low 4 bits from sc[0..8] (low then high nibbles), top 2 bits from
    // sc[8..12] (2 bits per scale, 4 scales per byte-lane).
    let mut scales = [0i32; 16];
    for (k, s) in scales.iter_mut().enumerate() {
        let low = if k < 8 { sc[k] & 0x0F } else { sc[k - 8] >> 4 };
        let high = (sc[8 + k % 4] >> (2 * (k / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    let mut is = 0;
    let mut out = 0;
    for n in 0..2 {
        let q = &qs[n * 32..n * 32 + 32];
        for j in 0..4 {
            let shift = 2 * j;
            let m = 1u8 << (n * 4 + j);
            for half in 0..2 {
                let dl = d_all * scales[is] as f32;
                is += 1;
                for l in half * 16..half * 16 + 16 {
                    let v = ((q[l] >> shift) & 3) as i32 - if hm[l] & m != 0 { 0 } else { 4 };
                    y[out] = dl * v as f32;
                    out += 1;
                }
            }
        }
    }
}

/// ggml's `get_scale_min_k4`: the `j`-th 6-bit (scale, min) pair of a Q4_K/Q5_K block.
#[inline]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..144];
    for (c, chunk) in y.chunks_exact_mut(64).enumerate() {
        let q = &qs[c * 32..c * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            chunk[l] = d1 * (q[l] & 0x0F) as f32 - m1;
            chunk[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, min) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (c, chunk) in y.chunks_exact_mut(64).enumerate() {
        let ql = &qs[c * 32..c * 32 + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let v1 = (ql[l] & 0x0F) + if qh[l] & u1 != 0 { 16 } else { 0 };
            let v2 = (ql[l] >> 4) + if qh[l] & u2 != 0 { 16 } else { 0 };
            chunk[l] = d1 * v1 as f32 - m1;
            chunk[l + 32] = d2 * v2 as f32 - m2;
        }
    }
}

fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = h(b, 208);
    for n in 0..2 {
        let ql = &b[n * 64..n * 64 + 64];
        let qh = &b[128 + n * 32..128 + n * 32 + 32];
        let sc = &b[192 + n * 8..192 + n * 8 + 8];
        let y = &mut y[n * 128..n * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}
