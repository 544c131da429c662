//! Quantized weights on the CPU: upload (x8 repacking where it applies), `matmul` on the
//! blocks directly (activations quantized per row, integer dots), and embedding rows.
//!
//! ```text
//! x f32 [M, K] ──quantize rows (Q8 / Q8Pairs / Q8K, once per call)──▶ acts
//! w [N, K] as QuantWeight { Plain ggml blocks | X8 panels of 8 rows }
//!
//! M < SMALL_M (decode): split N across threads (chunks of whole panels); every chunk
//!                       runs all M act rows against its rows, so weights stream once
//! M ≥ SMALL_M (prefill): split M across threads (contiguous output rows); inside a task,
//!                       MAX_MR act rows per kernel call sweep all panels (the act rows
//!                       stay in L1, the weights stream from L2)
//! ```
//! The activation and transpose buffers are thread-local and reused, so steady-state
//! calls allocate only their output.

use std::cell::RefCell;

use super::{shape_err, CpuBackend};
use crate::backend::{Op, Result};
use crate::quant::dot::{act_format, vec_dot, vec_dot_rows, ActRow};
use crate::quant::q8::{quantize_row_q8, quantize_row_q8k, ActFormat, QuantActs};
use crate::quant::repack::{self, X8Kind, MAX_MR, PANEL_ROWS};
use crate::tensor::DType;

/// Below this many rows, matmuls split N across threads; from it on, M.
const SMALL_M: usize = 8;

/// How a quantized weight's bytes are arranged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantLayout {
    /// ggml's blocks, row after row.
    Plain,
    /// Panels of 8 rows (`quant::repack`), for Q4_0 / Q4_1 / Q8_0.
    X8(X8Kind),
}

/// A quantized `[n, k]` matrix (or any-rank tensor of whole-block rows, kept plain).
#[derive(Clone, Debug)]
pub struct QuantWeight {
    pub dtype: DType,
    pub layout: QuantLayout,
    pub data: Vec<u8>,
}

impl QuantWeight {
    /// Takes ggml blocks of a tensor with rows of `k` (the last dim) elements, repacking
    /// rank-2 Q4_0 / Q4_1 / Q8_0 matrices whose shape allows it.
    pub(crate) fn new(dtype: DType, shape: &[usize], data: &[u8]) -> Result<QuantWeight> {
        let op = Op::Upload;
        let k = shape.last().copied().unwrap_or(1);
        let rows: Option<usize> = shape[..shape.len().saturating_sub(1)].iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if k % dtype.block_len() != 0 {
            return Err(shape_err(
                op,
                format!("{dtype} tensor of shape {shape:?}: rows of {k} are not whole {}-element blocks", dtype.block_len()),
            ));
        }
        let expected = rows.and_then(|r| r.checked_mul(k / dtype.block_len() * dtype.block_bytes()));
        if expected != Some(data.len()) {
            return Err(shape_err(op, format!("{} bytes do not hold a {dtype} tensor of shape {shape:?}", data.len())));
        }
        let n = rows.unwrap_or(0);
        let layout = match X8Kind::of(dtype) {
            Some(kind) if shape.len() == 2 && repack::can_repack(dtype, n, k) => QuantLayout::X8(kind),
            _ => QuantLayout::Plain,
        };
        let data = match layout {
            QuantLayout::X8(kind) => repack::repack(kind, n, k, data),
            QuantLayout::Plain => data.to_vec(),
        };
        Ok(QuantWeight { dtype, layout, data })
    }

    /// Bytes of one row of `k` elements (plain layout).
    fn row_bytes(&self, k: usize) -> usize {
        k / self.dtype.block_len() * self.dtype.block_bytes()
    }

    /// Dequantizes row `row` (of `k` elements) into `out`.
    pub(crate) fn dequantize_row(&self, k: usize, row: usize, out: &mut [f32]) {
        match self.layout {
            QuantLayout::X8(kind) => repack::dequantize_row(kind, k, &self.data, row, out),
            QuantLayout::Plain => {
                let rb = self.row_bytes(k);
                crate::quant::dequantize(self.dtype, &self.data[row * rb..(row + 1) * rb], out)
            }
        }
    }
}

thread_local! {
    /// Quantized activations of the current call (reused across calls).
    static ACTS: RefCell<QuantActs> = RefCell::new(QuantActs::default());
    /// `[N, M]` results of the N-split path before they are transposed into `[M, N]`.
    static TRANSPOSED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[M, N] = x[M, K] · wᵀ`; `out` has `m * n` elements. Shapes are checked by the caller
/// except the block multiple of `k`, checked here.
pub(crate) fn matmul(be: &CpuBackend, x: &[f32], m: usize, k: usize, w: &QuantWeight, n: usize, out: &mut [f32]) -> Result<()> {
    let Some(base) = act_format(w.dtype) else {
        return Err(shape_err(Op::Matmul, format!("{} is not a block format", w.dtype)));
    };
    let format = match (w.layout, base) {
        (QuantLayout::X8(_), _) => ActFormat::Q8Pairs,
        (_, f) => f,
    };
    if k % format.row_multiple() != 0 || k % w.dtype.block_len() != 0 {
        return Err(shape_err(
            Op::Matmul,
            format!("{} weights need K to be a multiple of {}, got {k}", w.dtype, format.row_multiple().max(w.dtype.block_len())),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    ACTS.with_borrow_mut(|acts| {
        quantize(be, format, x, m, k, acts);
        if m < SMALL_M {
            if m == 1 {
                split_n(be, w, acts, n, out);
            } else {
                TRANSPOSED.with_borrow_mut(|t| {
                    t.resize(n * m, 0.0);
                    split_n(be, w, acts, n, t);
                    for (j, col) in t.chunks_exact(m).enumerate() {
                        for (i, &v) in col.iter().enumerate() {
                            out[i * n + j] = v;
                        }
                    }
                });
            }
        } else {
            split_m(be, w, acts, n, out);
        }
    });
    Ok(())
}

/// Quantizes the rows of `x` into `acts` (rows in parallel when there are many).
fn quantize(be: &CpuBackend, format: ActFormat, x: &[f32], m: usize, k: usize, acts: &mut QuantActs) {
    acts.reset(format, m, k);
    let isa = be.isa;
    let nb = acts.blocks_per_row();
    let QuantActs { qs, d, s, bsums, .. } = acts;
    let pairs = format == ActFormat::Q8Pairs;
    #[cfg(not(target_arch = "wasm32"))]
    if be.threads > 1 && m >= SMALL_M {
        use rayon::prelude::*;
        let rp = m.div_ceil(be.threads * 4);
        be.install(|| {
            let rows = qs.par_chunks_mut(k * rp).zip(d.par_chunks_mut(nb * rp)).enumerate();
            if format == ActFormat::Q8K {
                rows.zip(bsums.par_chunks_mut(k / 16 * rp)).for_each(|((c, (qs, d)), bs)| {
                    for i in 0..qs.len() / k {
                        let xr = &x[(c * rp + i) * k..][..k];
                        quantize_row_q8k(isa, xr, &mut qs[i * k..][..k], &mut d[i * nb..][..nb], &mut bs[i * k / 16..][..k / 16]);
                    }
                });
            } else {
                rows.zip(s.par_chunks_mut(nb * rp)).for_each(|((c, (qs, d)), s)| {
                    for i in 0..qs.len() / k {
                        let xr = &x[(c * rp + i) * k..][..k];
                        quantize_row_q8(isa, xr, &mut qs[i * k..][..k], &mut d[i * nb..][..nb], &mut s[i * nb..][..nb], pairs);
                    }
                });
            }
        });
        return;
    }
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        let (qs, d) = (&mut qs[r * k..][..k], &mut d[r * nb..][..nb]);
        if format == ActFormat::Q8K {
            quantize_row_q8k(isa, xr, qs, d, &mut bsums[r * k / 16..][..k / 16]);
        } else {
            quantize_row_q8(isa, xr, qs, d, &mut s[r * nb..][..nb], pairs);
        }
    }
}

/// Row `r` of `acts` in the form `vec_dot` takes.
fn act_row(acts: &QuantActs, r: usize) -> ActRow<'_> {
    match acts.format {
        Some(ActFormat::Q8K) => ActRow::Q8K(acts.q8k_row(r)),
        _ => ActRow::Q8(acts.q8_row(r)),
    }
}

/// Decode-style: threads take chunks of N; `out_t` is `[N, M]` (for M = 1 simply `[N]`).
fn split_n(be: &CpuBackend, w: &QuantWeight, acts: &QuantActs, n: usize, out_t: &mut [f32]) {
    let (m, k, isa) = (acts.rows, acts.k, be.isa);
    // About four chunks per thread, whole panels each.
    let rows_per = n.div_ceil(be.threads * 4).div_ceil(PANEL_ROWS).max(1) * PANEL_ROWS;
    be.for_each_row(out_t, rows_per * m, true, |ci, chunk| {
        let first = ci * rows_per;
        let rows = chunk.len() / m;
        match w.layout {
            QuantLayout::X8(kind) => {
                let panel_bytes = k / repack::GROUP_K * kind.group_bytes();
                let panels = &w.data[first / PANEL_ROWS * panel_bytes..][..rows / PANEL_ROWS * panel_bytes];
                if m == 1 {
                    repack::panels_dot(isa, kind, panels, &[acts.q8_row(0)], chunk, rows);
                    return;
                }
                // [M][rows] here, then transposed into the chunk's [rows][M].
                let mut tmp = vec![0.0f32; m * rows];
                let mut act_rows = [acts.q8_row(0); SMALL_M];
                for (r, row) in act_rows.iter_mut().enumerate().take(m) {
                    *row = acts.q8_row(r);
                }
                for c0 in (0..m).step_by(MAX_MR) {
                    let c1 = (c0 + MAX_MR).min(m);
                    repack::panels_dot(isa, kind, panels, &act_rows[c0..c1], &mut tmp[c0 * rows..], rows);
                }
                for (r, dst) in chunk.chunks_exact_mut(m).enumerate() {
                    for (c, o) in dst.iter_mut().enumerate() {
                        *o = tmp[c * rows + r];
                    }
                }
            }
            QuantLayout::Plain => {
                let rb = w.row_bytes(k);
                for (i, dst) in chunk.chunks_exact_mut(m).enumerate() {
                    let row = &w.data[(first + i) * rb..(first + i + 1) * rb];
                    for (c, o) in dst.iter_mut().enumerate() {
                        *o = vec_dot(isa, w.dtype, row, act_row(acts, c));
                    }
                }
            }
        }
    });
}

/// Prefill-style: threads take contiguous blocks of output rows; each kernel call runs
/// `MAX_MR` act rows (kept in registers / L1) over every panel (streamed from L2).
fn split_m(be: &CpuBackend, w: &QuantWeight, acts: &QuantActs, n: usize, out: &mut [f32]) {
    let (m, k, isa) = (acts.rows, acts.k, be.isa);
    let rows_per = m.div_ceil(be.threads * 2).max(1);
    be.for_each_row(out, rows_per * n, true, |ci, chunk| {
        let first = ci * rows_per;
        let count = chunk.len() / n;
        match w.layout {
            QuantLayout::X8(kind) => {
                let mut rows = [acts.q8_row(first); MAX_MR];
                for c0 in (0..count).step_by(MAX_MR) {
                    let mr = (count - c0).min(MAX_MR);
                    for (c, row) in rows.iter_mut().take(mr).enumerate() {
                        *row = acts.q8_row(first + c0 + c);
                    }
                    repack::panels_dot(isa, kind, &w.data, &rows[..mr], &mut chunk[c0 * n..], n);
                }
            }
            QuantLayout::Plain => {
                let rb = w.row_bytes(k);
                // 16 weight rows stay in cache while the act rows pass over them, 4 at a time.
                let mut rows = [act_row(acts, first); MAX_MR];
                let mut res = [0.0f32; MAX_MR];
                for j0 in (0..n).step_by(16) {
                    for c0 in (0..count).step_by(MAX_MR) {
                        let mr = (count - c0).min(MAX_MR);
                        for (c, row) in rows.iter_mut().take(mr).enumerate() {
                            *row = act_row(acts, first + c0 + c);
                        }
                        for j in j0..(j0 + 16).min(n) {
                            vec_dot_rows(isa, w.dtype, &w.data[j * rb..(j + 1) * rb], &rows[..mr], &mut res[..mr]);
                            for (c, &v) in res.iter().take(mr).enumerate() {
                                chunk[(c0 + c) * n + j] = v;
                            }
                        }
                    }
                }
            }
        }
    });
}
