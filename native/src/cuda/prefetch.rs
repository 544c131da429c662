//! `Backend::prefetch` on CUDA: the weights a decode step reads next (o_proj, then the first
//! rows of gate/up) pulled into L2 on a side stream while the latency-bound write_kv /
//! attention / combine leave HBM idle. Opt-in: `TESSERA_CUDA_PREFETCH=1` (or
//! [`CudaBackend::set_prefetch`]), `TESSERA_CUDA_PREFETCH_MB` bytes a hint (default 32 MiB).
//!
//! ```text
//! main ── q/k/v GEMV ─●─ write_kv ─ attention ─ combine ─ o_proj ─ gate/up ─ … ─●─ read-back / graph end
//!                fork │                                                    join │
//! side                └─ prefetch_l2(o_proj, gate[..b], up[..b]) ───────────────┘
//! ```
//! - Only after a q/k/v product that took the GEMV kernels (small M: decode); a prefill's
//!   GEMMs read every weight anyway.
//! - The budget is shared out by water-filling in the hint's order (each weight gets at most
//!   an equal share of what is left; what a small one leaves goes to the others): at 32 MiB
//!   SmolLM3-3B's o_proj (8 MiB) whole and ~12 MiB of gate and of up each. gemv.cu reads
//!   rows in block order (the persistent normed grid too, block b then b + grid), so the
//!   first rows are the ones read first.
//! - The join is lazy: the main stream waits for the side stream only before a read-back,
//!   a synchronize, a pool release, and around a graph capture (begin, and before its end:
//!   a capture must join every stream it forked), never before the GEMV that reads the bytes.
//!   Inside a capture the fork/join become a parallel branch of the graph.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaEvent, CudaStream, LaunchConfig, PushKernelArg};
use tessera_core::backend::{Op, Result};

use super::device::{dev_err, setup_err};
use super::{CudaBackend, CudaTensor};

/// Byte ranges one `prefetch_l2` launch takes (kernels/prefetch.cu).
const MAX_RANGES: usize = 4;
/// Bytes one thread prefetches at a time (`PREFETCH_CHUNK` in kernels/prefetch.cu).
const CHUNK: usize = 8192;
/// Threads per block of `prefetch_l2`: one warp, so the blocks spread over many SMs (each
/// SM's TMA unit fetches its own chunks) and fit beside the GEMV's one 256-thread block.
const THREADS: u32 = 32;
/// Default budget per hint.
pub(crate) const DEFAULT_MIB: usize = 32;

/// The side stream and the two events of the fork and the join.
struct Side {
    stream: Arc<CudaStream>,
    fork: CudaEvent,
    join: CudaEvent,
}

/// Prefetch state of a backend.
#[derive(Default)]
pub(crate) struct Prefetch {
    /// Bytes a hint may prefetch (0 = off).
    budget: AtomicUsize,
    /// The latest q/k/v product (`matmul_many` / `norm_matmul_many`) ran on the GEMV kernels.
    qkv_gemv: AtomicBool,
    side: Mutex<Option<Side>>,
    /// The side stream has work the main stream has not joined yet.
    pending: AtomicBool,
    /// `prefetch_l2` launches so far (recorded ones count once, when recorded).
    launches: AtomicU64,
}

impl Prefetch {
    /// Off, or on with `TESSERA_CUDA_PREFETCH=1` (budget `TESSERA_CUDA_PREFETCH_MB` MiB).
    pub(crate) fn from_env() -> Option<usize> {
        if std::env::var("TESSERA_CUDA_PREFETCH").as_deref() != Ok("1") {
            return None;
        }
        Some(super::switches::env_usize("TESSERA_CUDA_PREFETCH_MB").unwrap_or(DEFAULT_MIB))
    }

    /// Records which kernels the latest q/k/v product took.
    pub(crate) fn note_qkv(&self, gemv: bool) {
        self.qkv_gemv.store(gemv, Ordering::Relaxed);
    }
}

/// Bytes of each of `wants` within `budget`: in order of size, each takes at most an equal
/// share of what is left (water-filling), rounded down to 16 bytes.
pub(crate) fn split_budget(wants: &[usize], budget: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| wants[i]);
    let mut give = vec![0usize; wants.len()];
    let mut left = budget;
    for (done, &i) in order.iter().enumerate() {
        let share = left / (wants.len() - done);
        give[i] = wants[i].min(share) / 16 * 16;
        left -= give[i];
    }
    give
}

impl CudaBackend {
    /// L2 prefetch of the weights a decode step reads next (`Some(MiB)` a hint) or off
    /// (`None`, the default unless `TESSERA_CUDA_PREFETCH=1`); see native/src/cuda/prefetch.rs.
    pub fn set_prefetch(&self, mib: Option<usize>) -> Result<()> {
        let bytes = mib.unwrap_or(0).saturating_mul(1 << 20);
        if bytes > 0 {
            self.prefetch_side()?;
        }
        self.prefetch.budget.store(bytes, Ordering::Relaxed);
        Ok(())
    }

    /// `prefetch_l2` launches so far (a recorded one counts once, however often replayed).
    pub fn prefetch_launches(&self) -> u64 {
        self.prefetch.launches.load(Ordering::Relaxed)
    }

    /// Creates the side stream and its events (outside any capture: `set_prefetch`).
    fn prefetch_side(&self) -> Result<()> {
        let mut side = self.prefetch.side.lock().map_err(|_| setup_err("prefetch state poisoned"))?;
        if side.is_none() {
            let ctx = &self.device.ctx;
            let err = |e| setup_err(format!("creating the prefetch stream: {e}"));
            *side = Some(Side { stream: ctx.new_stream().map_err(err)?, fork: ctx.new_event(None).map_err(err)?, join: ctx.new_event(None).map_err(err)? });
        }
        Ok(())
    }

    /// `Backend::prefetch`: forks the side stream off the main one and launches `prefetch_l2`
    /// over the budgeted ranges, when on and the latest q/k/v product was a GEMV.
    pub(crate) fn op_prefetch(&self, weights: &[(&CudaTensor, usize)]) -> Result<()> {
        let op = Op::Matmul;
        let budget = self.prefetch.budget.load(Ordering::Relaxed);
        if budget == 0 || !self.prefetch.qkv_gemv.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Ranges must start 16-byte aligned; lengths are rounded down to 16 (split_budget).
        let wants: Vec<usize> =
            weights.iter().map(|(t, b)| if t.ptr.is_multiple_of(16) { (*b).min(t.bytes()) } else { 0 }).collect();
        let give = split_budget(&wants, budget);
        let ranges: Vec<(u64, u64)> =
            weights.iter().zip(&give).filter(|(_, &n)| n > 0).map(|((t, _), &n)| (t.ptr, n as u64)).collect();
        if ranges.is_empty() {
            return Ok(());
        }
        let guard = self.prefetch.side.lock().map_err(|_| setup_err("prefetch state poisoned"))?;
        let side = guard.as_ref().ok_or_else(|| dev_err(op, "prefetch is on but has no side stream"))?;
        let f = self.kernels.function("prefetch", "prefetch_l2")?;
        let sms = self.device.info.multiprocessors as usize;
        side.fork.record(&self.device.stream).map_err(|e| dev_err(op, format!("prefetch fork (record): {e}")))?;
        side.stream.wait(&side.fork).map_err(|e| dev_err(op, format!("prefetch fork (wait): {e}")))?;
        self.prefetch.pending.store(true, Ordering::Relaxed);
        for group in ranges.chunks(MAX_RANGES) {
            let chunks: usize = group.iter().map(|&(_, n)| (n as usize).div_ceil(CHUNK)).sum();
            let blocks = chunks.div_ceil(THREADS as usize).clamp(1, sms);
            let mut a = [0u64; 2 * MAX_RANGES];
            for (j, &(p, n)) in group.iter().enumerate() {
                a[2 * j] = p;
                a[2 * j + 1] = n;
            }
            let mut b = side.stream.launch_builder(&f);
            for v in &a {
                b.arg(v);
            }
            let cfg = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
            // SAFETY: prefetch_l2 takes 4 (pointer, byte count) pairs, passed as u64s; each
            // range lies inside a live weight allocation (checked against its size above), and
            // the kernel only issues prefetches (no loads into registers, no stores).
            unsafe { b.launch(cfg) }.map_err(|e| dev_err(op, format!("launching prefetch_l2: {e}")))?;
            self.prefetch.launches.fetch_add(1, Ordering::Relaxed);
        }
        if self.sync_launches.load(Ordering::Relaxed) {
            side.stream.synchronize().map_err(|e| dev_err(op, format!("prefetch_l2 failed on the device: {e}")))?;
        }
        Ok(())
    }

    /// Makes the main stream wait for the side stream's queued prefetches (if any): before
    /// read-backs, synchronisations and the end of a capture.
    pub(crate) fn join_prefetch(&self) -> Result<()> {
        if !self.prefetch.pending.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let guard = self.prefetch.side.lock().map_err(|_| setup_err("prefetch state poisoned"))?;
        let Some(side) = guard.as_ref() else { return Ok(()) };
        side.join.record(&side.stream).map_err(|e| setup_err(format!("prefetch join (record): {e}")))?;
        self.device.stream.wait(&side.join).map_err(|e| setup_err(format!("prefetch join (wait): {e}")))
    }

    /// Waits for the side stream's queued prefetches (they read the weights: before anything
    /// is freed when the backend goes).
    pub(crate) fn finish_prefetch(&self) {
        if let Ok(guard) = self.prefetch.side.lock() {
            if let Some(side) = guard.as_ref() {
                if let Err(e) = side.stream.synchronize() {
                    tracing::debug!(error = %e, "waiting for the prefetch stream");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_budget;

    const MIB: usize = 1 << 20;

    #[test]
    fn budget_is_water_filled_in_sixteen_byte_units() {
        // SmolLM3-3B: o_proj 2048x2048, gate/up 11008x2048, bf16.
        let (o, gu) = (2048 * 2048 * 2, 11008 * 2048 * 2);
        assert_eq!(split_budget(&[o, gu, gu], 32 * MIB), vec![o, (32 * MIB - o) / 2, (32 * MIB - o) / 2]);
        let third = (16 * MIB / 3) / 16 * 16;
        assert_eq!(split_budget(&[o, gu, gu], 16 * MIB), vec![third, third, 16 * MIB - 2 * third]);
        assert_eq!(split_budget(&[o, gu, gu], 0), vec![0; 3]);
        assert_eq!(split_budget(&[100, 37, 0], 1 << 30), vec![96, 32, 0]);
        assert_eq!(split_budget(&[], 32 * MIB), Vec::<usize>::new());
        let g = split_budget(&[5 * MIB, 3 * MIB, 40 * MIB, 7], 20 * MIB);
        assert!(g.iter().sum::<usize>() <= 20 * MIB && g[0] == 5 * MIB && g[1] == 3 * MIB && g[3] == 0, "{g:?}");
    }
}
