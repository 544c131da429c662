//! Small-batch products on the GEMV kernels of kernels/gemv.cu: `matmul`, `matmul_many` (q/k/v
//! in one launch) and `gated_matmul` (gate/up + activation in one launch) when x has few rows
//! (decode steps; the cutovers are measured: M <= 2 for one matrix, M <= 1 for the lm_head,
//! M <= 4 fused); larger M goes to cuBLAS (blas.rs).
//!
//! ```text
//! kernel gemv{_gated}_m{MM}_<dtype>, MM = the smallest of 1/2/4/8 >= M
//! block  = 8 warps in groups of ks (K splits); a group owns R rows (PLAIN_ROWS / GATED_ROWS)
//! ks     = 1, doubled while < 2 blocks per SM and each lane keeps >= 4 chunks of a row;
//!          plain M = 1: then doubled while a lane needs > 1 batch of 8 loads (long K)
//! grid   = Σ_j ceil(N_j / (8/ks · R)) blocks, matrix j after matrix j-1 (<= 4 per launch)
//! ```
//! `norm_matmul_many` / `norm_gated_matmul` (`TESSERA_CUDA_FUSE_NORM`, on by default) run
//! the `gemv_norm` kernels on the GEMV path: x before its RMSNorm, each block normalizing the
//! rows itself in its prologue (K < 8192, whole 16-byte vectors, m·K of x in 48 KiB of
//! shared memory); otherwise (and for cuBLAS-sized M) the unfused body.
//! Even grid (`TESSERA_GEMV_EVEN_GRID`, on by default): a persistent normed grid of one row
//! of x has as few blocks as run its blocks of work in the same number of rounds
//! (`persistent_grid`).
//! Early W (`TESSERA_GEMV_EARLY_W`, on by default): a normed launch also gets room in shared
//! memory for one batch of W loads a thread (`stage_bytes`) when x leaves it (within
//! `NORM_SMEM`), and each block's first batch is copied there (`cp.async`) while the block
//! normalizes x; the same sums in the same order, so the same bits as with it off.
//! No allocation besides the outputs (stream-ordered, like every op) and no host sync, so the
//! launches record into decode-step CUDA graphs. `TESSERA_GEMV_MAX_M` (one cutover for every
//! product, <= 8; 0 = always cuBLAS) and `TESSERA_GEMV_SPLITS` (force ks) override the
//! choices, for measurements.

use std::sync::atomic::Ordering;

use tessera_core::backend::{normalize, Activation, Normed, Op, Result};
use tessera_core::tensor::DType;

use super::device::{dev_err, Arg};
use super::ops::{dims1, dims2, float, u32_arg};
use tessera_core::backend::Tensor as _;
use super::tensor::{suffix, vec_elems};
use super::{shape_err, CudaBackend, CudaTensor};

/// (MM, R): the most rows of x a kernel takes, and output rows per warp group; keep in sync
/// with GEMV_ALL in kernels/gemv.cu.
const PLAIN_ROWS: [(usize, usize); 4] = [(1, 1), (2, 2), (4, 2), (8, 4)];
const GATED_ROWS: [(usize, usize); 4] = [(1, 1), (2, 1), (4, 1), (8, 2)];
const WARPS: usize = 8;
/// 16-byte chunks of its row a lane of the plain M = 1 kernel loads at once (`U` of
/// `gemv_dot` in kernels/gemv.cu for one x row and R = 1).
const M1_BATCH: usize = 8;
/// Matrices one plain launch takes.
const MAX_MATS: usize = 4;
/// The largest M the kernels take.
pub(crate) const GEMV_LIMIT: usize = 8;
/// Default cutovers (largest M on the GEMV kernels), measured against cuBLAS on an H200
/// (BENCHMARKS.md, `cuda_ops gemv_bench`): one matrix (o/down proj win up to M 2, M 4 loses
/// on down), one matrix wider than `WIDE_N` (lm_head: M 2 loses), several matrices or
/// gate+up fused into one launch (q/k/v win up to M 8, gate/up tie at M 4).
const DEFAULT_MAX_M_SINGLE: usize = 2;
const DEFAULT_MAX_M_WIDE: usize = 1;
const DEFAULT_MAX_M_FUSED: usize = 4;
const WIDE_N: usize = 32768;
/// `gemv_max_m` value meaning "the defaults above".
pub(crate) const GEMV_MAX_M_DEFAULT: usize = usize::MAX;

/// The largest x (m·K elements of the activation dtype) the normed kernels stage in shared
/// memory: within the default 48 KiB a block gets without opt-in, beside the kernels' static
/// shared memory (<= 1.2 KiB).
const NORM_SMEM: usize = 44 * 1024;
/// The normed kernels reproduce rms_norm.cu's sums only for rows it gives a warp or a block
/// of 256 threads (K < 8192).
const NORM_MAX_K: usize = 8191;

/// The fewest blocks (at most `grid`) that run `nblocks` blocks of work in as many rounds as
/// `grid` blocks would (block b takes work b, b + grid', ...).
fn even_grid(nblocks: usize, grid: usize) -> usize {
    let rounds = nblocks.div_ceil(grid.max(1));
    nblocks.div_ceil(rounds.max(1)).max(1)
}

/// Bytes of the early W stage of a normed launch (`GemvBatch::STAGE` in kernels/gemv.cu: one
/// batch of `gemv_dot`'s W loads for every thread): MM rows of x, RR W rows a warp group.
fn stage_bytes(mm: usize, rr: usize) -> usize {
    let u = if mm == 1 {
        (8 / rr).max(1)
    } else {
        let per = 16 / (rr + mm);
        [8, 4, 2, 1].into_iter().find(|&u| per >= u).unwrap_or(1)
    };
    u * rr * WARPS * 32 * 16
}

/// The RMSNorm a normed GEMV launch applies to x first: residual (0 = none), where x +
/// residual goes (0 = none), the weight as f32, eps, offset.
pub(crate) struct NormArgs {
    res: u64,
    sum: u64,
    weight: CudaTensor,
    eps: f32,
    offset: f32,
}

impl NormArgs {
    /// The kernel arguments after x (`nblocks` follows them).
    fn args(&self) -> [Arg; 5] {
        [Arg::Ptr(self.res), Arg::Ptr(self.sum), Arg::Ptr(self.weight.ptr), Arg::F32(self.eps), Arg::F32(self.offset)]
    }
}

/// A checked `x · wᵀ (+ bias)`: the weight, the bias as f32, N.
pub(crate) struct LinearArgs {
    pub w: CudaTensor,
    pub bias: Option<CudaTensor>,
    pub n: usize,
}

impl CudaBackend {
    /// Checks `x` `[M, K]` against `w` `[N, K]` (same float dtype) and `bias` `[N]`; returns
    /// (dtype, M, K) and the weight with its bias as f32.
    pub(crate) fn check_linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        bias: Option<&CudaTensor>,
    ) -> Result<(DType, usize, usize, LinearArgs)> {
        let op = Op::Matmul;
        let dt = float(op, x)?;
        if float(op, w)? != dt {
            return Err(shape_err(op, format!("dtypes differ: {} {:?} and {} {:?}", x.dtype, x.shape, w.dtype, w.shape)));
        }
        let (m, k) = dims2(op, "x", x)?;
        let (n, wk) = dims2(op, "w", w)?;
        if wk != k {
            return Err(shape_err(op, format!("x {:?} · w {:?}ᵀ: inner dims {k} and {wk} differ", x.shape, w.shape)));
        }
        let bias = match bias {
            Some(b) => {
                float(op, b)?;
                if dims1(op, "bias", b)? != n {
                    return Err(shape_err(op, format!("bias {:?} does not match w {:?}", b.shape, w.shape)));
                }
                Some(self.as_f32(op, b)?)
            }
            None => None,
        };
        Ok((dt, m, k, LinearArgs { w: w.clone(), bias, n }))
    }

    /// Whether a product with `m` rows of x and `n` output columns runs on the GEMV kernels
    /// (`fused`: several matrices or gate+up in one launch, which also saves launches).
    pub(crate) fn gemv_takes(&self, m: usize, n: usize, fused: bool) -> bool {
        let limit = match self.gemv_max_m.load(Ordering::Relaxed) {
            GEMV_MAX_M_DEFAULT if fused => DEFAULT_MAX_M_FUSED,
            GEMV_MAX_M_DEFAULT if n > WIDE_N => DEFAULT_MAX_M_WIDE,
            GEMV_MAX_M_DEFAULT => DEFAULT_MAX_M_SINGLE,
            set => set,
        };
        m >= 1 && m <= limit.min(GEMV_LIMIT)
    }

    /// K splits: forced, or doubled while the grid has fewer than 2 blocks per SM and each
    /// lane keeps at least 4 16-byte chunks of a row (measured: o_proj 256 -> 512 blocks
    /// gains 13%, down_proj 256 -> 512 gains 19%; q/k/v's 384 blocks lose 12% at ks 2);
    /// then, with `batch` (the chunks a lane loads at once: plain M = 1 launches), doubled
    /// while a lane would still need more than one batch of loads for its slice of a row, so
    /// each warp issues its whole slice at once instead of waiting out one load round trip a
    /// batch (measured on down_proj, K = 11008, 2048 rows: ks 8 against the 2 above, 18.8 vs
    /// 21.0 µs on an H100, 15.1 vs 16.0 on an H200; o_proj, q/k/v and lm_head, one batch a
    /// lane already, keep their splits).
    fn gemv_splits(&self, chunks: usize, batch: Option<usize>, blocks: impl Fn(usize) -> usize) -> usize {
        let forced = self.gemv_splits.load(Ordering::Relaxed) as usize;
        if matches!(forced, 1 | 2 | 4 | 8) {
            return forced;
        }
        let sms = self.device.info.multiprocessors as usize;
        let mut ks = 1;
        while ks < WARPS && blocks(ks) < 2 * sms && chunks / (2 * ks) >= 4 * 32 {
            ks *= 2;
        }
        if let Some(batch) = batch {
            while ks < WARPS && chunks > 32 * ks * batch {
                ks *= 2;
            }
        }
        ks
    }

    /// Dynamic shared memory of a normed launch (x's m·K, then the early W stage when on and
    /// within `NORM_SMEM`) and its `early` argument; (0, 0) without a norm.
    fn norm_smem(&self, norm: Option<&NormArgs>, dt: DType, (m, k): (usize, usize), mm: usize, rr: usize) -> (u32, u32) {
        if norm.is_none() {
            return (0, 0);
        }
        let xs = m * k * dt.size();
        let staged = xs.next_multiple_of(16) + stage_bytes(mm, rr);
        if self.gemv_early_w.load(Ordering::Relaxed) && staged <= NORM_SMEM {
            (staged as u32, 1)
        } else {
            (xs as u32, 0)
        }
    }

    /// `[x · w_jᵀ (+ b_j)]` on the plain GEMV kernel, up to 4 matrices a launch.
    /// With `norm`, x is the input of an RMSNorm the kernel applies first (`gemv_norm_m*`);
    /// with `kv` too (q, k, v: qkv_kv.rs), the `gemv_norm_kv_m*` kernel, `kv` its arguments
    /// after the matrices' (rows per block kept even: RoPE pairs stay in one block).
    pub(crate) fn gemv_many(
        &self,
        x: &CudaTensor,
        dt: DType,
        (m, k): (usize, usize),
        mats: &[LinearArgs],
        norm: Option<&NormArgs>,
        kv: Option<&[Arg]>,
    ) -> Result<Vec<CudaTensor>> {
        let op = Op::Matmul;
        if kv.is_some() && (norm.is_none() || mats.len() != 3) {
            return Err(dev_err(op, "the q/k/v + write_kv GEMV takes a norm and 3 matrices"));
        }
        let outs = mats.iter().map(|l| self.empty(op, dt, &[m, l.n])).collect::<Result<Vec<_>>>()?;
        let live: Vec<(&LinearArgs, &CudaTensor)> = mats.iter().zip(&outs).filter(|(l, _)| l.n > 0).collect();
        if m == 0 || live.is_empty() {
            return Ok(outs);
        }
        let (mm, r) = *PLAIN_ROWS.iter().find(|(mm, _)| *mm >= m).ok_or_else(|| shape_err(op, format!("GEMV takes M <= 8, got {m}")))?;
        let s = suffix(dt).unwrap_or("?");
        let kind = match (norm, kv) {
            (Some(_), Some(_)) => "gemv_norm_kv",
            (Some(_), None) => "gemv_norm",
            _ => "gemv",
        };
        let f = self.kernels.function("gemv", &format!("{kind}_m{mm}_{s}"))?;
        let ve = vec_elems(dt);
        let chunks = k / ve;
        let (smem, early) = self.norm_smem(norm, dt, (m, k), mm, r);
        for group in live.chunks(MAX_MATS) {
            let vec_ok = k.is_multiple_of(ve) && x.ptr.is_multiple_of(16) && group.iter().all(|(l, _)| l.w.ptr.is_multiple_of(16));
            let per_block = |ks: usize| (WARPS / ks) * r;
            let batch = (mm == 1).then_some(M1_BATCH);
            let ks = self.gemv_splits(chunks, batch, |ks| group.iter().map(|(l, _)| l.n.div_ceil(per_block(ks))).sum());
            let ks = if kv.is_some() && per_block(ks) % 2 == 1 { ks / 2 } else { ks };
            let nblocks: usize = group.iter().map(|(l, _)| l.n.div_ceil(per_block(ks))).sum();
            let grid = if norm.is_some() { self.persistent_grid(op, &f, smem, nblocks, mm)? } else { nblocks };
            let mut args = vec![Arg::Ptr(x.ptr)];
            if let Some(n) = norm {
                args.extend(n.args());
                args.push(Arg::U32(u32_arg(op, "GEMV blocks", nblocks)?));
            }
            args.extend([
                Arg::U32(m as u32),
                Arg::U32(u32_arg(op, "K", k)?),
                Arg::U32(vec_ok as u32),
                Arg::U32(ks as u32),
            ]);
            if norm.is_some() {
                args.push(Arg::U32(early));
            }
            args.push(Arg::U32(group.len() as u32));
            let mut first = 0usize;
            for j in 0..MAX_MATS {
                let (w, b, o, n) = match group.get(j) {
                    Some((l, o)) => (l.w.ptr, l.bias.as_ref().map_or(0, |b| b.ptr), o.ptr, l.n),
                    None => (0, 0, 0, 0),
                };
                if j > 0 {
                    args.push(Arg::U32(u32_arg(op, "GEMV blocks", first)?));
                }
                args.extend([Arg::Ptr(w), Arg::Ptr(b), Arg::Ptr(o), Arg::U32(u32_arg(op, "N", n)?)]);
                first += n.div_ceil(per_block(ks));
            }
            if let Some(kv) = kv {
                if live.len() != 3 {
                    return Err(dev_err(op, "the q/k/v + write_kv GEMV needs q, k and v non-empty"));
                }
                args.extend_from_slice(kv);
            }
            let ns: Vec<String> = group.iter().map(|(l, _)| l.n.to_string()).collect();
            let ew = if norm.is_some() { format!(" ew{early}") } else { String::new() };
            let name = format!("{kind}_m{mm}_{s} n{} k{k} ks{ks}{ew}", ns.join("+"));
            let cfg = cudarc::driver::LaunchConfig {
                grid_dim: (u32_arg(op, "GEMV blocks", grid)?, 1, 1),
                block_dim: ((WARPS * 32) as u32, 1, 1),
                shared_mem_bytes: smem,
            };
            self.launch(op, &(f.clone(), name), cfg, &args)?;
        }
        Ok(outs)
    }

    /// `act(x · gateᵀ + bg) * (x · upᵀ + bu)` on the gated GEMV kernel (one launch).
    pub(crate) fn gemv_gated(
        &self,
        x: &CudaTensor,
        dt: DType,
        (m, k): (usize, usize),
        (gate, up): (&LinearArgs, &LinearArgs),
        act: Activation,
        norm: Option<&NormArgs>,
    ) -> Result<CudaTensor> {
        let op = Op::Matmul;
        if gate.n != up.n {
            return Err(shape_err(Op::ActMul, format!("gate {:?} and up {:?} differ", gate.w.shape, up.w.shape)));
        }
        let n = gate.n;
        let out = self.empty(op, dt, &[m, n])?;
        if m == 0 || n == 0 {
            return Ok(out);
        }
        let (mm, r) = *GATED_ROWS.iter().find(|(mm, _)| *mm >= m).ok_or_else(|| shape_err(op, format!("GEMV takes M <= 8, got {m}")))?;
        let s = suffix(dt).unwrap_or("?");
        let kind = if norm.is_some() { "gemv_gated_norm" } else { "gemv_gated" };
        let f = self.kernels.function("gemv", &format!("{kind}_m{mm}_{s}"))?;
        let ve = vec_elems(dt);
        let vec_ok = k.is_multiple_of(ve) && [x.ptr, gate.w.ptr, up.w.ptr].iter().all(|p| p.is_multiple_of(16));
        let per_block = |ks: usize| (WARPS / ks) * r;
        let ks = self.gemv_splits(k / ve, None, |ks| n.div_ceil(per_block(ks)));
        let code = match act {
            Activation::Silu => 0u32,
            Activation::GeluTanh => 1,
            Activation::Gelu => 2,
        };
        let nblocks = n.div_ceil(per_block(ks));
        let (smem, early) = self.norm_smem(norm, dt, (m, k), mm, 2 * r);
        let grid = if norm.is_some() { self.persistent_grid(op, &f, smem, nblocks, mm)? } else { nblocks };
        let mut args = vec![Arg::Ptr(x.ptr)];
        if let Some(n) = norm {
            args.extend(n.args());
            args.push(Arg::U32(u32_arg(op, "GEMV blocks", nblocks)?));
        }
        args.extend([
            Arg::U32(m as u32),
            Arg::U32(u32_arg(op, "K", k)?),
            Arg::U32(vec_ok as u32),
            Arg::U32(ks as u32),
        ]);
        if norm.is_some() {
            args.push(Arg::U32(early));
        }
        args.extend([
            Arg::U32(code),
            Arg::Ptr(gate.w.ptr),
            Arg::Ptr(gate.bias.as_ref().map_or(0, |b| b.ptr)),
            Arg::Ptr(up.w.ptr),
            Arg::Ptr(up.bias.as_ref().map_or(0, |b| b.ptr)),
            Arg::Ptr(out.ptr),
            Arg::U32(u32_arg(op, "N", n)?),
        ]);
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (u32_arg(op, "GEMV blocks", grid)?, 1, 1),
            block_dim: ((WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        let ew = if norm.is_some() { format!(" ew{early}") } else { String::new() };
        self.launch(op, &(f, format!("{kind}_m{mm}_{s} n{n}x2 k{k} ks{ks}{ew}")), cfg, &args)?;
        Ok(out)
    }

    /// `matmul_many`: the GEMV kernel for small M, else one `matmul` each, equal-shape
    /// neighbours (k/v) paired into one cuBLAS call.
    pub(crate) fn op_matmul_many(&self, x: &CudaTensor, ws: &[(&CudaTensor, Option<&CudaTensor>)]) -> Result<Vec<CudaTensor>> {
        let checked = ws.iter().map(|(w, b)| self.check_linear(x, w, *b)).collect::<Result<Vec<_>>>()?;
        self.prefetch.note_qkv(false);
        match checked.first() {
            Some(&(dt, m, k, ref l)) if self.gemv_takes(m, l.n, ws.len() > 1) => {
                self.prefetch.note_qkv(true);
                let mats: Vec<LinearArgs> = checked.into_iter().map(|c| c.3).collect();
                self.gemv_many(x, dt, (m, k), &mats, None, None)
            }
            Some(&(dt, m, k, _)) if self.paired_gemm.load(Ordering::Relaxed) && ws.len() > 1 => {
                // Neighbours of one shape (k/v) as one paired cuBLAS call each.
                let mut outs = Vec::with_capacity(ws.len());
                let mut j = 0;
                while j < ws.len() {
                    if j + 1 < ws.len() {
                        if let Some((p, q)) = self.cublas_pair(x, dt, (m, k), &checked[j].3, &checked[j + 1].3)? {
                            outs.extend([p, q]);
                            j += 2;
                            continue;
                        }
                    }
                    outs.push(self.op_matmul(x, ws[j].0, ws[j].1)?);
                    j += 1;
                }
                Ok(outs)
            }
            _ => ws.iter().map(|(w, b)| self.op_matmul(x, w, *b)).collect(),
        }
    }

    /// `gated_matmul`: one fused GEMV launch for small M, else cuBLAS twice + `act_mul`.
    pub(crate) fn op_gated_matmul(
        &self,
        x: &CudaTensor,
        gate: (&CudaTensor, Option<&CudaTensor>),
        up: (&CudaTensor, Option<&CudaTensor>),
        act: Activation,
    ) -> Result<CudaTensor> {
        let (dt, m, k, g) = self.check_linear(x, gate.0, gate.1)?;
        let (_, _, _, u) = self.check_linear(x, up.0, up.1)?;
        if self.gemv_takes(m, g.n, true) {
            return self.gemv_gated(x, dt, (m, k), (&g, &u), act, None);
        }
        if let Some((gv, uv)) = self.cublas_pair(x, dt, (m, k), &g, &u)? {
            return self.op_act_mul(&gv, &uv, act);
        }
        let gv = self.op_matmul(x, gate.0, gate.1)?;
        let uv = self.op_matmul(x, up.0, up.1)?;
        self.op_act_mul(&gv, &uv, act)
    }

    /// Blocks of a persistent normed launch: as many as are resident on the SMs at once
    /// (the occupancy the driver reports for `f` with `smem`), at most `nblocks`; then, with
    /// the even grid (default), as few as still take every block of work in the same number
    /// of rounds, so no block runs a round more than another: SmolLM3-3B's gate/up has 1,376
    /// blocks of work for 528 resident blocks on an H200, i.e. 320 blocks of 3 and 208 of 2,
    /// evened out to 459 blocks of 3 (one of 2). Measured +0.6 to +1.0 % single-stream decode
    /// (BENCHMARKS.md, session 13). Only for one row of x (`mm` 1, 4 blocks an SM): the batch
    /// kernels fit 1-2 blocks an SM, where fewer blocks leave some SMs one block (half the
    /// loads in flight of the others): batch 4 measured 1,254 tok/s with it against 1,330.
    /// The same sums either way: a block of work computes the same rows whichever block runs it.
    fn persistent_grid(&self, op: Op, f: &cudarc::driver::CudaFunction, smem: u32, nblocks: usize, mm: usize) -> Result<usize> {
        let grid = nblocks.min(self.resident_blocks(op, f, smem)?).max(1);
        Ok(if mm == 1 && self.gemv_even_grid.load(Ordering::Relaxed) { even_grid(nblocks, grid) } else { grid })
    }

    /// Blocks of `f` (with `smem` bytes of dynamic shared memory) resident on the SMs at once.
    fn resident_blocks(&self, op: Op, f: &cudarc::driver::CudaFunction, smem: u32) -> Result<usize> {
        self.device.bind(op)?;
        let per_sm = f
            .occupancy_max_active_blocks_per_multiprocessor((WARPS * 32) as u32, smem as usize, None)
            .map_err(|e| dev_err(op, format!("occupancy of a GEMV kernel: {e}")))?;
        Ok(self.device.info.multiprocessors as usize * (per_sm as usize).max(1))
    }

    /// The RMSNorm of `n` for a normed GEMV over x `[m, k]`, when the fused kernels take it
    /// (on, vectors whole and aligned, K and m·K in range): the sum output is allocated here.
    pub(crate) fn norm_args(&self, n: &Normed<'_, CudaTensor>, dt: DType, (m, k): (usize, usize)) -> Result<Option<(NormArgs, Option<CudaTensor>)>> {
        let op = Op::AddRmsNorm;
        if !self.fuse_norm.load(Ordering::Relaxed) || n.weight.numel() != k || n.x.shape.len() != 2 {
            return Ok(None);
        }
        let ve = vec_elems(dt);
        let aligned = n.x.ptr.is_multiple_of(16) && n.residual.is_none_or(|r| r.ptr.is_multiple_of(16));
        let residual_ok = n.residual.is_none_or(|r| r.dtype == dt && r.shape == n.x.shape);
        if !(aligned && residual_ok && k.is_multiple_of(ve) && k <= NORM_MAX_K && m * k * dt.size() <= NORM_SMEM) {
            return Ok(None);
        }
        float(op, n.weight)?;
        for t in [Some(n.x), n.residual].into_iter().flatten() {
            self.settle(t)?;
        }
        let weight = self.as_f32(op, n.weight)?;
        let sum = match n.residual {
            Some(_) => Some(self.empty(op, dt, &n.x.shape)?),
            None => None,
        };
        let args = NormArgs {
            res: n.residual.map_or(0, |r| r.ptr),
            sum: sum.as_ref().map_or(0, |s| s.ptr),
            weight,
            eps: n.eps,
            offset: n.offset,
        };
        Ok(Some((args, sum)))
    }

    /// `norm_matmul_many`: RMSNorm folded into the GEMV launch for small M, else the unfused
    /// body (add_rms_norm, then matmul_many).
    pub(crate) fn op_norm_matmul_many(
        &self,
        n: Normed<'_, CudaTensor>,
        ws: &[(&CudaTensor, Option<&CudaTensor>)],
    ) -> Result<(Vec<CudaTensor>, Option<CudaTensor>)> {
        let checked = ws.iter().map(|(w, b)| self.check_linear(n.x, w, *b)).collect::<Result<Vec<_>>>()?;
        if let Some(&(dt, m, k, ref l)) = checked.first() {
            if self.gemv_takes(m, l.n, ws.len() > 1) && checked.iter().any(|c| c.3.n > 0) {
                if let Some((norm, sum)) = self.norm_args(&n, dt, (m, k))? {
                    self.prefetch.note_qkv(true);
                    let mats: Vec<LinearArgs> = checked.into_iter().map(|c| c.3).collect();
                    return Ok((self.gemv_many(n.x, dt, (m, k), &mats, Some(&norm), None)?, sum));
                }
            }
        }
        let (h, sum) = normalize(self, n)?;
        Ok((self.op_matmul_many(&h, ws)?, sum))
    }

    /// `norm_gated_matmul`: RMSNorm, gate/up and the activation in one GEMV launch for small
    /// M, else the unfused body.
    pub(crate) fn op_norm_gated_matmul(
        &self,
        n: Normed<'_, CudaTensor>,
        gate: (&CudaTensor, Option<&CudaTensor>),
        up: (&CudaTensor, Option<&CudaTensor>),
        act: Activation,
    ) -> Result<(CudaTensor, Option<CudaTensor>)> {
        let (dt, m, k, g) = self.check_linear(n.x, gate.0, gate.1)?;
        let (_, _, _, u) = self.check_linear(n.x, up.0, up.1)?;
        if self.gemv_takes(m, g.n, true) && g.n > 0 {
            if let Some((norm, sum)) = self.norm_args(&n, dt, (m, k))? {
                return Ok((self.gemv_gated(n.x, dt, (m, k), (&g, &u), act, Some(&norm))?, sum));
            }
        }
        let (h, sum) = normalize(self, n)?;
        Ok((self.op_gated_matmul(&h, gate, up, act)?, sum))
    }

    /// `(x · aᵀ, x · bᵀ)` as ONE cuBLAS call (a strided batch of 2, blas.rs `gemm_xwt_pair`):
    /// two fresh `[M, N]` outputs, the one at the lower address taking the weight at the
    /// lower address, so both batch strides (the distances between the weights and between
    /// the outputs) are positive. `None` (the caller runs two GEMMs) when the shapes differ, a
    /// bias is present, or pairing is off (the default; `TESSERA_CUDA_PAIRED_GEMM=1` turns it on).
    fn cublas_pair(
        &self,
        x: &CudaTensor,
        dt: DType,
        (m, k): (usize, usize),
        a: &LinearArgs,
        b: &LinearArgs,
    ) -> Result<Option<(CudaTensor, CudaTensor)>> {
        let op = Op::Matmul;
        let n = a.n;
        let usable = self.paired_gemm.load(Ordering::Relaxed)
            && n == b.n
            && m > 0
            && n > 0
            && k > 0
            && a.bias.is_none()
            && b.bias.is_none()
            && a.w.ptr != b.w.ptr;
        if !usable {
            return Ok(None);
        }
        let (o1, o2) = (self.empty(op, dt, &[m, n])?, self.empty(op, dt, &[m, n])?);
        let (lo, hi) = if o1.ptr < o2.ptr { (o1, o2) } else { (o2, o1) };
        let a_low = a.w.ptr < b.w.ptr;
        let (w0, w1) = if a_low { (a.w.ptr, b.w.ptr) } else { (b.w.ptr, a.w.ptr) };
        let es = dt.size() as u64;
        if !(hi.ptr - lo.ptr).is_multiple_of(es) || !(w1 - w0).is_multiple_of(16) {
            return Ok(None);
        }
        self.device.bind(op)?;
        let t0 = self.device.profile_start(op)?;
        self.blas.gemm_xwt_pair(dt, m, n, k, x.ptr, (w0, w1), (lo.ptr, ((hi.ptr - lo.ptr) / es) as usize))?;
        if t0.is_some() {
            self.device.profile_end(op, &format!("cublas_gemm_pair_{}_n{n}x2_k{k}", suffix(dt).unwrap_or("?")), t0)?;
        }
        if self.sync_launches.load(Ordering::Relaxed) {
            self.device.synchronize()?;
        }
        Ok(Some(if a_low { (lo, hi) } else { (hi, lo) }))
    }
}

#[cfg(test)]
mod tests {
    use super::even_grid;

    #[test]
    fn even_grid_keeps_the_rounds_and_evens_the_work() {
        // SmolLM3-3B gate/up on an H200: 1,376 blocks of work, 528 resident.
        assert_eq!(even_grid(1376, 528), 459);
        for (nblocks, grid) in [(1376, 528), (384, 384), (1000, 132), (7, 3), (1, 1), (528, 528), (529, 528), (4096, 1)] {
            let g = even_grid(nblocks, grid);
            let rounds = |g: usize| nblocks.div_ceil(g);
            assert!(g >= 1 && g <= grid, "{nblocks} on {grid}: {g}");
            assert_eq!(rounds(g), rounds(grid), "{nblocks} on {grid}: {g} takes more rounds");
            // Every block of the evened grid runs `rounds` or `rounds - 1` blocks of work, and
            // one block fewer would take another round.
            assert!(g == 1 || rounds(g - 1) > rounds(grid), "{nblocks} on {grid}: {g} is not the fewest");
        }
    }
}
