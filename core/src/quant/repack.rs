//! The "x8" weight layout: Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 rows regrouped eight at a time
//! at upload, so
//! one 64-byte vector holds 4-byte slices of 16 blocks (8 rows × 2 blocks) and a single
//! integer-dot instruction advances all of them (the idea of llama.cpp's repacked
//! `block_q4_0x8`, laid out for 16-lane i32 dots).
//!
//! ```text
//! panel = 8 rows; group = blocks 2p, 2p+1 of each of them; lane L = 2·r + j  (r < 8, j < 2)
//! W_g (g < 8): 64 bytes, bytes 4L..4L+4 = quants 4g..4g+4 of block j of row r, unsigned:
//!     Q4_*: the 4-bit quant (0..15);  Q5_*: the 5-bit quant (0..31);
//!     Q8_0: the i8 quant + 128 (x ^ 0x80)
//! group bytes
//!   Q4_*: [0, 256)   P_0..P_3, P_q = low nibbles of W_2q | W_2q+1 << 4   (16 B / block)
//!         [256, 288) d, f16 × 16 lanes      Q4_1: [288, 320) m, f16 × 16 lanes
//!   Q5_*: [0, 256)   as Q4 (the low 4 bits)
//!         [256, 320) H: bit g of byte 4L + t = 5th bit of quant 4g + t of lane L
//!         [320, 352) d                      Q5_1: [352, 384) m
//!   Q8_0: [0, 512)   W_0..W_7                [512, 544) d, f16 × 16 lanes
//! tensor = panels in row order; panel = K/64 groups in column order. Same bytes as ggml's.
//!
//! kernel: with activations in `ActFormat::Q8Pairs` (8 bytes per g: 4 of block 2p, 4 of 2p+1),
//!   lane L accumulates  dot(W_g lane, broadcast act bytes)  over g -> isum of (r, block 2p+j)
//!   acc_L += isum · d_L · da_j + coef_L · s_j
//!   coef = −8d (Q4_0), −16d (Q5_0), m (Q4_1, Q5_1), −128d (Q8_0)
//!   out[r] = acc_{2r} + acc_{2r+1}
//! ```

use half::f16;

use super::isa::Isa;
#[cfg(target_arch = "x86_64")]
use super::isa::Level;
use super::q8::Q8Row;
use crate::tensor::DType;

/// Rows per panel.
pub const PANEL_ROWS: usize = 8;
/// Elements per group along a row (two 32-element blocks).
pub const GROUP_K: usize = 64;
/// Activation rows one kernel call handles at most.
pub const MAX_MR: usize = 4;

/// Which block format a repacked tensor came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X8Kind {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
}

impl X8Kind {
    /// The repackable kinds.
    pub fn of(dtype: DType) -> Option<X8Kind> {
        match dtype {
            DType::Q4_0 => Some(X8Kind::Q4_0),
            DType::Q4_1 => Some(X8Kind::Q4_1),
            DType::Q5_0 => Some(X8Kind::Q5_0),
            DType::Q5_1 => Some(X8Kind::Q5_1),
            DType::Q8_0 => Some(X8Kind::Q8_0),
            _ => None,
        }
    }

    pub fn dtype(self) -> DType {
        match self {
            X8Kind::Q4_0 => DType::Q4_0,
            X8Kind::Q4_1 => DType::Q4_1,
            X8Kind::Q5_0 => DType::Q5_0,
            X8Kind::Q5_1 => DType::Q5_1,
            X8Kind::Q8_0 => DType::Q8_0,
        }
    }

    /// Bytes of one group (16 blocks).
    pub const fn group_bytes(self) -> usize {
        match self {
            X8Kind::Q4_0 => 288,
            X8Kind::Q4_1 => 320,
            X8Kind::Q5_0 => 352,
            X8Kind::Q5_1 => 384,
            X8Kind::Q8_0 => 544,
        }
    }

    /// Offset of the f16 scales within a group.
    pub const fn scale_offset(self) -> usize {
        match self {
            X8Kind::Q4_0 | X8Kind::Q4_1 => 256,
            X8Kind::Q5_0 | X8Kind::Q5_1 => 320,
            X8Kind::Q8_0 => 512,
        }
    }
}

/// Whether an `[n, k]` tensor of `dtype` can take the x8 layout.
pub fn can_repack(dtype: DType, n: usize, k: usize) -> bool {
    X8Kind::of(dtype).is_some() && n % PANEL_ROWS == 0 && k % GROUP_K == 0 && n > 0 && k > 0
}

/// The 32 unsigned quants of one ggml block of `kind` (Q8_0: value + 128).
fn block_quants(kind: X8Kind, blk: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    match kind {
        X8Kind::Q4_0 | X8Kind::Q4_1 | X8Kind::Q5_0 | X8Kind::Q5_1 => {
            let qs = &blk[blk.len() - 16..];
            let qh = match kind {
                X8Kind::Q5_0 => u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]),
                X8Kind::Q5_1 => u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]),
                _ => 0,
            };
            for e in 0..16 {
                q[e] = (qs[e] & 0xF) | (((qh >> e) & 1) << 4) as u8;
                q[e + 16] = (qs[e] >> 4) | (((qh >> (e + 16)) & 1) << 4) as u8;
            }
        }
        X8Kind::Q8_0 => {
            for e in 0..32 {
                q[e] = blk[2 + e] ^ 0x80;
            }
        }
    }
    q
}

/// Regroups `src` (`n` rows of `k / 32` ggml blocks) into the x8 layout.
/// Requires [`can_repack`]; the result has the same length as `src`.
pub fn repack(kind: X8Kind, n: usize, k: usize, src: &[u8]) -> Vec<u8> {
    let bb = kind.dtype().block_bytes();
    let row_bytes = k / 32 * bb;
    assert!(can_repack(kind.dtype(), n, k) && src.len() == n * row_bytes);
    let gb = kind.group_bytes();
    let so = kind.scale_offset();
    let mut out = vec![0u8; src.len()];
    for (panel, dst_panel) in out.chunks_exact_mut(k / GROUP_K * gb).enumerate() {
        for (p, group) in dst_panel.chunks_exact_mut(gb).enumerate() {
            for r in 0..PANEL_ROWS {
                for j in 0..2 {
                    let lane = 2 * r + j;
                    let at = (panel * PANEL_ROWS + r) * row_bytes + (2 * p + j) * bb;
                    let blk = &src[at..at + bb];
                    let q = block_quants(kind, blk);
                    match kind {
                        X8Kind::Q4_0 | X8Kind::Q4_1 | X8Kind::Q5_0 | X8Kind::Q5_1 => {
                            for v in 0..4 {
                                for t in 0..4 {
                                    group[64 * v + 4 * lane + t] = (q[8 * v + t] & 0xF) | ((q[8 * v + 4 + t] & 0xF) << 4);
                                }
                            }
                            if matches!(kind, X8Kind::Q5_0 | X8Kind::Q5_1) {
                                for t in 0..4 {
                                    let bits = (0..8).fold(0u8, |h, g| h | ((q[4 * g + t] >> 4) << g));
                                    group[256 + 4 * lane + t] = bits;
                                }
                            }
                        }
                        X8Kind::Q8_0 => {
                            for g in 0..8 {
                                group[64 * g + 4 * lane..64 * g + 4 * lane + 4].copy_from_slice(&q[4 * g..4 * g + 4]);
                            }
                        }
                    }
                    group[so + 2 * lane..so + 2 * lane + 2].copy_from_slice(&blk[0..2]);
                    if matches!(kind, X8Kind::Q4_1 | X8Kind::Q5_1) {
                        group[so + 32 + 2 * lane..so + 32 + 2 * lane + 2].copy_from_slice(&blk[2..4]);
                    }
                }
            }
        }
    }
    out
}

/// Unsigned quant `e` (< 32) of lane `lane` in `group`.
#[inline]
fn quant_at(kind: X8Kind, group: &[u8], lane: usize, e: usize) -> u8 {
    let (g, t) = (e / 4, e % 4);
    match kind {
        X8Kind::Q4_0 | X8Kind::Q4_1 | X8Kind::Q5_0 | X8Kind::Q5_1 => {
            let byte = group[64 * (g / 2) + 4 * lane + t];
            let low = if g % 2 == 0 { byte & 0xF } else { byte >> 4 };
            let high = if matches!(kind, X8Kind::Q5_0 | X8Kind::Q5_1) { ((group[256 + 4 * lane + t] >> g) & 1) << 4 } else { 0 };
            low | high
        }
        X8Kind::Q8_0 => group[64 * g + 4 * lane + t],
    }
}

/// `(d, coef)` of lane `lane`: the element value is `d · u + coef` for unsigned quant `u`.
#[inline]
fn lane_scales(kind: X8Kind, group: &[u8], lane: usize) -> (f32, f32) {
    let so = kind.scale_offset();
    let h = |at: usize| f16::from_le_bytes([group[at], group[at + 1]]).to_f32();
    let d = h(so + 2 * lane);
    let coef = match kind {
        X8Kind::Q4_0 => -8.0 * d,
        X8Kind::Q5_0 => -16.0 * d,
        X8Kind::Q4_1 | X8Kind::Q5_1 => h(so + 32 + 2 * lane),
        X8Kind::Q8_0 => -128.0 * d,
    };
    (d, coef)
}

/// Dequantizes row `row` of an x8 tensor with rows of `k` into `out` (`k` floats), with the
/// same values ggml's dequantization gives for the original blocks.
pub fn dequantize_row(kind: X8Kind, k: usize, data: &[u8], row: usize, out: &mut [f32]) {
    let gb = kind.group_bytes();
    let panel_bytes = k / GROUP_K * gb;
    let panel = &data[row / PANEL_ROWS * panel_bytes..][..panel_bytes];
    let r = row % PANEL_ROWS;
    for (p, group) in panel.chunks_exact(gb).enumerate() {
        for j in 0..2 {
            let lane = 2 * r + j;
            let (d, coef) = lane_scales(kind, group, lane);
            for e in 0..32 {
                let u = quant_at(kind, group, lane, e) as f32;
                // *_0: d·(u − off) exactly as ggml (x·d with x an integer).
                out[GROUP_K * p + 32 * j + e] = match kind {
                    X8Kind::Q4_1 | X8Kind::Q5_1 => u * d + coef,
                    X8Kind::Q4_0 => (u - 8.0) * d,
                    X8Kind::Q5_0 => (u - 16.0) * d,
                    X8Kind::Q8_0 => (u - 128.0) * d,
                };
            }
        }
    }
}

/// Portable kernel, same contract as [`panels_dot`]. Each group is unpacked once into
/// per-lane quants (natural order) and each act row de-interleaved once, so the inner
/// loops are plain u8·i8 dots the compiler can vectorize (SSE2, wasm simd128).
fn panels_scalar(kind: X8Kind, panels: &[u8], panel_bytes: usize, acts: &[Q8Row], out: &mut [f32], stride: usize) {
    let gb = kind.group_bytes();
    let mut q = [[0u8; 32]; 16];
    let mut scales = [(0.0f32, 0.0f32); 16];
    let mut a_nat = [0i8; GROUP_K];
    for (pi, panel) in panels.chunks_exact(panel_bytes).enumerate() {
        let mut acc = [[0.0f32; 16]; MAX_MR];
        for (p, group) in panel.chunks_exact(gb).enumerate() {
            for (lane, ql) in q.iter_mut().enumerate() {
                for t in 0..4 {
                    match kind {
                        X8Kind::Q8_0 => {
                            for g in 0..8 {
                                ql[4 * g + t] = group[64 * g + 4 * lane + t];
                            }
                        }
                        _ => {
                            let high = if matches!(kind, X8Kind::Q5_0 | X8Kind::Q5_1) { group[256 + 4 * lane + t] } else { 0 };
                            for v in 0..4 {
                                let byte = group[64 * v + 4 * lane + t];
                                ql[8 * v + t] = (byte & 0xF) | (((high >> (2 * v)) & 1) << 4);
                                ql[8 * v + 4 + t] = (byte >> 4) | (((high >> (2 * v + 1)) & 1) << 4);
                            }
                        }
                    }
                }
                scales[lane] = lane_scales(kind, group, lane);
            }
            for (c, a) in acts.iter().enumerate() {
                let aq = &a.qs[GROUP_K * p..GROUP_K * (p + 1)];
                for g in 0..8 {
                    for j in 0..2 {
                        a_nat[32 * j + 4 * g..32 * j + 4 * g + 4].copy_from_slice(&aq[8 * g + 4 * j..8 * g + 4 * j + 4]);
                    }
                }
                for (lane, ql) in q.iter().enumerate() {
                    let j = lane % 2;
                    let isum: i32 = ql.iter().zip(&a_nat[32 * j..32 * j + 32]).map(|(&u, &x)| u as i32 * x as i32).sum();
                    let (d, coef) = scales[lane];
                    acc[c][lane] += isum as f32 * (d * a.d[2 * p + j]) + coef * a.s[2 * p + j];
                }
            }
        }
        for (c, acc_c) in acc.iter().enumerate().take(acts.len()) {
            for r in 0..PANEL_ROWS {
                out[c * stride + PANEL_ROWS * pi + r] = acc_c[2 * r] + acc_c[2 * r + 1];
            }
        }
    }
}

/// Whole panels (`panels`: consecutive panels of rows with `k` = `acts[_].qs.len()`
/// elements) times up to [`MAX_MR`] activation rows in `ActFormat::Q8Pairs`:
/// `out[c * stride + 8 * p + r] = dot(row r of panel p, acts[c])`.
pub fn panels_dot(isa: Isa, kind: X8Kind, panels: &[u8], acts: &[Q8Row], out: &mut [f32], stride: usize) {
    let k = acts.first().map_or(0, |a| a.qs.len());
    let panel_bytes = k / GROUP_K * kind.group_bytes();
    assert!(acts.len() <= MAX_MR && k > 0 && k % GROUP_K == 0 && panels.len() % panel_bytes == 0);
    assert!(acts.iter().all(|a| a.qs.len() == k && a.d.len() == k / 32 && a.s.len() == k / 32));
    let width = panels.len() / panel_bytes * PANEL_ROWS;
    assert!(acts.len() == 1 || stride >= width);
    assert!(out.len() >= (acts.len() - 1) * stride + width);
    match isa.level() {
        // SAFETY: an `Isa` of this level exists only when its CPU features were detected;
        // the lengths the kernels read and write within were asserted above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512Vnni => unsafe { super::repack_x86::panels_avx512(kind, panels, panel_bytes, acts, out, stride) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { super::repack_x86::panels_avx2(kind, panels, panel_bytes, acts, out, stride) },
        _ => panels_scalar(kind, panels, panel_bytes, acts, out, stride),
    }
}
