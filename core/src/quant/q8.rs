//! Activations quantized per row for the integer dot products, as ggml does before a
//! quantized matmul: `Q8` (32-element blocks, for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights) and
//! `Q8K` (256-element blocks with 16-element sums, for the K-quants).
//!
//! ```text
//! Q8   block b of a row: qs[32b..32b+32] i8 in [-127, 127], d[b] = amax/127,
//!                        s[b] = d[b] * Σ qs   (ggml's q8_1 "s": the *_1 mins and the
//!                                              unsigned offsets of *_0 weights need it)
//! Q8   pair-interleaved (`ActFormat::Q8Pairs`, for the x8-repacked weights): the two
//!      blocks 2p, 2p+1 are stored as 4-byte words alternating between them,
//!        element 64p + 32j + 4g + t  ->  offset 64p + 8g + 4j + t   (j < 2, g < 8, t < 4)
//!      so one 8-byte broadcast feeds both blocks to a 16-lane integer dot.
//! Q8K  block b: qs[256b..] i8 in [-127, 127], d[b] = amax/127, bsums[16b + i] = Σ of
//!      qs[256b + 16i ..][..16]
//! ```
//! Scales are f32 (ggml keeps f16 for q8_0/q8_1); the values are within the same rounding.
//! Rows are quantized with round-half-even, using the 1.5·2²³ trick so the loops vectorize.

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Level;

/// Elements per Q8 block.
pub const QK8: usize = 32;
/// Elements per K-quant super-block.
pub const QK_K: usize = 256;

/// How activations are laid out for a given weight layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActFormat {
    /// 32-element blocks in natural order.
    Q8,
    /// 32-element blocks, pairs interleaved by 4-byte words (rows of x8-repacked weights).
    Q8Pairs,
    /// 256-element blocks with 16-element sums.
    Q8K,
}

impl ActFormat {
    /// Elements per block; a row's length must be a multiple of it (Q8Pairs: two blocks).
    pub fn row_multiple(self) -> usize {
        match self {
            ActFormat::Q8 => QK8,
            ActFormat::Q8Pairs => 2 * QK8,
            ActFormat::Q8K => QK_K,
        }
    }
}

/// One quantized row of the 32-element formats.
#[derive(Clone, Copy, Debug)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

/// One quantized row of the Q8K format.
#[derive(Clone, Copy, Debug)]
pub struct Q8KRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub bsums: &'a [i16],
}

/// Quantized activations of `rows` rows of length `k`: reusable buffers (resizing keeps
/// their capacity, so steady-state matmuls do not allocate).
#[derive(Debug, Default)]
pub struct QuantActs {
    pub format: Option<ActFormat>,
    pub rows: usize,
    pub k: usize,
    pub qs: Vec<i8>,
    /// One scale per block.
    pub d: Vec<f32>,
    /// Q8 formats: `d * Σ qs` per block.
    pub s: Vec<f32>,
    /// Q8K: sums of 16 consecutive quants.
    pub bsums: Vec<i16>,
}

impl QuantActs {
    /// Blocks (scales) per row.
    pub fn blocks_per_row(&self) -> usize {
        match self.format {
            Some(ActFormat::Q8K) => self.k / QK_K,
            _ => self.k / QK8,
        }
    }

    /// Sizes the buffers for `rows` rows of `k` in `format`; `k` must be a multiple of
    /// `format.row_multiple()` (checked by the caller).
    pub fn reset(&mut self, format: ActFormat, rows: usize, k: usize) {
        debug_assert_eq!(k % format.row_multiple(), 0);
        self.format = Some(format);
        self.rows = rows;
        self.k = k;
        self.qs.resize(rows * k, 0);
        match format {
            ActFormat::Q8 | ActFormat::Q8Pairs => {
                self.d.resize(rows * k / QK8, 0.0);
                self.s.resize(rows * k / QK8, 0.0);
                self.bsums.clear();
            }
            ActFormat::Q8K => {
                self.d.resize(rows * k / QK_K, 0.0);
                self.s.clear();
                self.bsums.resize(rows * k / 16, 0);
            }
        }
    }

    /// Quantizes `x` (`rows * k` values) on the calling thread.
    pub fn quantize(&mut self, isa: Isa, format: ActFormat, x: &[f32], rows: usize, k: usize) {
        self.reset(format, rows, k);
        let nb = self.blocks_per_row();
        for r in 0..rows {
            let xr = &x[r * k..(r + 1) * k];
            let qs = &mut self.qs[r * k..(r + 1) * k];
            let d = &mut self.d[r * nb..(r + 1) * nb];
            match format {
                ActFormat::Q8 | ActFormat::Q8Pairs => {
                    let s = &mut self.s[r * nb..(r + 1) * nb];
                    quantize_row_q8(isa, xr, qs, d, s, format == ActFormat::Q8Pairs);
                }
                ActFormat::Q8K => {
                    let bs = &mut self.bsums[r * k / 16..(r + 1) * k / 16];
                    quantize_row_q8k(isa, xr, qs, d, bs);
                }
            }
        }
    }

    /// Row `r` of a Q8 / Q8Pairs quantization.
    pub fn q8_row(&self, r: usize) -> Q8Row<'_> {
        let (k, nb) = (self.k, self.k / QK8);
        Q8Row {
            qs: &self.qs[r * k..(r + 1) * k],
            d: &self.d[r * nb..(r + 1) * nb],
            s: &self.s[r * nb..(r + 1) * nb],
        }
    }

    /// Row `r` of a Q8K quantization.
    pub fn q8k_row(&self, r: usize) -> Q8KRow<'_> {
        let (k, nb) = (self.k, self.k / QK_K);
        Q8KRow {
            qs: &self.qs[r * k..(r + 1) * k],
            d: &self.d[r * nb..(r + 1) * nb],
            bsums: &self.bsums[r * k / 16..(r + 1) * k / 16],
        }
    }
}

/// `round_half_even(v)` for |v| < 2²² without a rounding instruction (vectorizes anywhere).
#[inline(always)]
fn round_i32(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    (v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32
}

/// Quantizes `n` values (a multiple of 16 ≤ 256) with one scale; returns `(d, Σq)`.
#[inline(always)]
fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        amax = if a > amax { a } else { amax };
    }
    let d = amax / 127.0;
    let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (o, &v) in q.iter_mut().zip(x) {
        let r = round_i32(v * id);
        *o = r as i8;
        sum += r;
    }
    (d, sum)
}

#[inline(always)]
fn q8_row_body(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], pairs: bool) {
    let mut tmp = [0i8; 2 * QK8];
    for (p, xp) in x.chunks_exact(2 * QK8).enumerate() {
        for j in 0..2 {
            let (db, sum) = quantize_block(&xp[j * QK8..(j + 1) * QK8], &mut tmp[j * QK8..(j + 1) * QK8]);
            d[2 * p + j] = db;
            s[2 * p + j] = db * sum as f32;
        }
        let out = &mut qs[p * 2 * QK8..(p + 1) * 2 * QK8];
        if pairs {
            for g in 0..8 {
                for j in 0..2 {
                    out[8 * g + 4 * j..8 * g + 4 * j + 4].copy_from_slice(&tmp[QK8 * j + 4 * g..QK8 * j + 4 * g + 4]);
                }
            }
        } else {
            out.copy_from_slice(&tmp);
        }
    }
    // An odd trailing block (natural layout only).
    let done = x.len() / (2 * QK8) * 2 * QK8;
    if done < x.len() {
        let b = done / QK8;
        let (db, sum) = quantize_block(&x[done..], &mut qs[done..]);
        d[b] = db;
        s[b] = db * sum as f32;
    }
}

#[inline(always)]
fn q8k_row_body(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    for (b, (xb, qb)) in x.chunks_exact(QK_K).zip(qs.chunks_exact_mut(QK_K)).enumerate() {
        let (db, _) = quantize_block(xb, qb);
        d[b] = db;
        for (i, q16) in qb.chunks_exact(16).enumerate() {
            bsums[16 * b + i] = q16.iter().map(|&v| v as i16).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_row_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], pairs: bool) {
    q8_row_body(x, qs, d, s, pairs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
fn q8_row_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], pairs: bool) {
    q8_row_body(x, qs, d, s, pairs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8k_row_avx2(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    q8k_row_body(x, qs, d, bsums)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")]
fn q8k_row_avx512(x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    q8k_row_body(x, qs, d, bsums)
}

/// Quantizes one row (`x.len()` a multiple of 32; of 64 when `pairs`) to Q8.
pub fn quantize_row_q8(isa: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32], pairs: bool) {
    assert!(x.len() % QK8 == 0 && (!pairs || x.len() % (2 * QK8) == 0));
    assert!(qs.len() == x.len() && d.len() == x.len() / QK8 && s.len() == d.len());
    match isa.level() {
        // SAFETY: an `Isa` of this level exists only when its CPU features were detected.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vnni => unsafe { q8_row_avx512(x, qs, d, s, pairs) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { q8_row_avx2(x, qs, d, s, pairs) },
        _ => q8_row_body(x, qs, d, s, pairs),
    }
}

/// Quantizes one row (`x.len()` a multiple of 256) to Q8K.
pub fn quantize_row_q8k(isa: Isa, x: &[f32], qs: &mut [i8], d: &mut [f32], bsums: &mut [i16]) {
    assert!(x.len() % QK_K == 0);
    assert!(qs.len() == x.len() && d.len() == x.len() / QK_K && bsums.len() == x.len() / 16);
    match isa.level() {
        // SAFETY: an `Isa` of this level exists only when its CPU features were detected.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vnni => unsafe { q8k_row_avx512(x, qs, d, bsums) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { q8k_row_avx2(x, qs, d, bsums) },
        _ => q8k_row_body(x, qs, d, bsums),
    }
}
