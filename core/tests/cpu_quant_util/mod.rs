//! Helpers shared by the quantized-kernel tests: a seeded PRNG, random ggml blocks with sane
//! scales, ggml's reference quantizers for Q8_0 / Q4_0 / Q4_1, and the rounding bound of
//! Q8 activations.

#![allow(dead_code)]

use half::f16;
use tessera_core::quant::dequantize;
use tessera_core::tensor::DType;

/// Every block format.
pub const ALL: [DType; 10] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2_K,
    DType::Q3_K,
    DType::Q4_K,
    DType::Q5_K,
    DType::Q6_K,
];

/// xorshift64*: a tiny seeded PRNG.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * amp).collect()
    }
}

/// Byte offsets of the f16 scale fields of one block.
fn f16_fields(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

/// `blocks` random blocks: random quants and sub-scales, f16 scales of either sign in a
/// range real files have (so products stay finite and informative).
pub fn random_blocks(rng: &mut Rng, dtype: DType, blocks: usize) -> Vec<u8> {
    let bb = dtype.block_bytes();
    let mut out: Vec<u8> = (0..blocks * bb).map(|_| rng.next_u64() as u8).collect();
    for blk in out.chunks_exact_mut(bb) {
        for &at in f16_fields(dtype) {
            let v = f16::from_f32(rng.f32() * 0.02);
            blk[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The f32 values of whole blocks.
pub fn dequant(dtype: DType, blocks: &[u8]) -> Vec<f32> {
    let mut out = vec![0.0f32; blocks.len() / dtype.block_bytes() * dtype.block_len()];
    dequantize(dtype, blocks, &mut out);
    out
}

/// Elements per activation scale for `dtype` weights (Q8: 32, Q8K: 256).
pub fn act_block(dtype: DType) -> usize {
    dtype.block_len()
}

/// `Σ_k |w_k| · d_k / 2` (d_k = the activation scale of k's block, amax/127): how far
/// `dot(w, x)` can move when `x` is rounded to Q8, plus a little float slack.
pub fn q8_bound(w: &[f32], x: &[f32], block: usize) -> f64 {
    let mut bound = 0.0f64;
    for (wb, xb) in w.chunks(block).zip(x.chunks(block)) {
        let amax = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let d = amax / 127.0;
        bound += wb.iter().map(|&v| v.abs() as f64).sum::<f64>() * d / 2.0;
    }
    let scale: f64 = w.iter().zip(x).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
    bound * 1.001 + scale * 1e-5 + 1e-6
}

/// ggml's `quantize_row_q8_0_ref`.
pub fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend(b.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    out
}

/// ggml's `quantize_row_q4_0_ref`.
pub fn quantize_q4_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        let max = b.iter().fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        let q = |v: f32| ((v * id + 8.5) as i32).min(15) as u8;
        out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
    }
    out
}

/// ggml's `quantize_row_q4_1_ref`.
pub fn quantize_q4_1(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in x.chunks_exact(32) {
        let min = b.iter().fold(f32::MAX, |m, &v| m.min(v));
        let max = b.iter().fold(f32::MIN, |m, &v| m.max(v));
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
        out.extend_from_slice(&f16::from_f32(min).to_le_bytes());
        let q = |v: f32| (((v - min) * id + 0.5) as i32).min(15) as u8;
        out.extend((0..16).map(|j| q(b[j]) | (q(b[j + 16]) << 4)));
    }
    out
}

/// Quantizes rows of `x` to `dtype` (Q8_0, Q4_0 or Q4_1).
pub fn quantize(dtype: DType, x: &[f32]) -> Vec<u8> {
    match dtype {
        DType::Q8_0 => quantize_q8_0(x),
        DType::Q4_0 => quantize_q4_0(x),
        DType::Q4_1 => quantize_q4_1(x),
        other => panic!("no test quantizer for {other}"),
    }
}
