//! `write_kv` and `paged_attention` on the device (kernels/kv_cache.cu, kernels/attention.cu,
//! kernels/attention_decode.cu, kernels/attention_prefill.cu): host-side checks of shapes and dtypes, which kernel takes
//! which sequences, the split-K choices, shared-memory sizing, launches.
//!
//! ```text
//! cache [num_blocks, block_size, num_kv_heads * head_dim]
//! decode sequences (seq_order[..num_decode_seqs], head_dim 64/128/256): attention_decode,
//!   grid x = decode seqs * splits, y = kv heads * ceil(G / GH) (GH = 1, 2, 4, 8 q heads a block:
//!   the group's, one for a single sequence, `decode_heads_for`);
//!   the registers variant, or the pipelined one (`DecodePipeline`: large grids by default,
//!   48 KB of dynamic shared memory, its own keys per tile); grids and splits: attention_plan.rs
//!   splits > 1 (grid short of 4 blocks an SM): partials [splits, decode seqs, H, D | 2],
//!   every split writes its (max, sum) (no zero fill), merged by attention_decode_combine
//! other sequences (prefill chunks; all of them for other head dims):
//!   bf16/f16, head_dim 64/128/256, grid of >= SMs / 2 blocks (TensorCorePrefill):
//!   attention_prefill (tensor cores), grid x = seqs, y = kv heads,
//!   z = ceil(max_query_len * G / 64) row tiles, no key split
//!   otherwise (f32, other head dims, small grids, forced splits): attention, grid
//!   x = seqs * splits, y = kv heads, z = ceil(max_query_len * G / 8) row tiles;
//!   splits > 1 (few blocks for the SMs): each split writes f32 partials
//!   acc [splits, T, H, D], (max, sum) [splits, T, H, 2]; attention_combine merges them
//! ```
//! Both write disjoint rows of one zeroed output. Deferred ropes (tensor.rs): write_kv
//! applies k's as it writes the cache and, in the same launch, rotates the latest pending
//! tensor of the same positions in place (q); attention settles whatever is still pending. The split counts depend only on the batch
//! size and the (hinted) longest context, so a decode graph replays the same launches.
//! Per-sequence metadata (query_start_loc, seq_lens, block tables) stays on the device and is
//! checked there; a bad entry is reported by the next `to_host`.

use std::sync::atomic::Ordering;

use cudarc::driver::LaunchConfig;
use tessera_core::backend::attention_checks::{check_shapes, check_write_kv, StepDims};
use tessera_core::backend::{AttentionMetadata, AttentionParams, Op, Result};
use tessera_core::tensor::DType;

use super::device::{dev_err, Arg};
use super::ops::{float, u32_arg, u32s};
use super::tensor::{suffix, vec_elems};
use super::attention_plan::*;
pub(crate) use super::attention_plan::DecodeGrid;
use super::{shape_err, CudaBackend, CudaTensor, TensorCorePrefill};


impl CudaBackend {
    pub(crate) fn op_write_kv(
        &self,
        k_cache: &mut CudaTensor,
        v_cache: &mut CudaTensor,
        k: &CudaTensor,
        v: &CudaTensor,
        slot_mapping: &CudaTensor,
    ) -> Result<()> {
        let op = Op::WriteKv;
        let dt = float(op, k_cache)?;
        for t in [&*v_cache, k, v] {
            if float(op, t)? != dt {
                return Err(shape_err(op, format!("dtypes differ: caches {} and {} {:?}", dt, t.dtype, t.shape)));
            }
        }
        u32s(op, slot_mapping)?;
        let dims = check_write_kv(&*k_cache, &*v_cache, k, v, slot_mapping).map_err(|d| shape_err(op, d))?;
        let (tokens, nb, bs, kw, vw) = (dims.tokens, dims.num_blocks, dims.block_size, dims.k_width, dims.v_width);
        if tokens == 0 || (kw == 0 && vw == 0) {
            return Ok(());
        }
        self.make_unique(op, k_cache)?;
        self.make_unique(op, v_cache)?;
        // A deferred rope of k is applied as the rows are written; v is taken as it is.
        self.settle(v)?;
        let rope = self.rope_args(k, tokens)?;
        // The layer's q (pending with the same positions) is rotated in the same launch.
        let q = match k.pending_rope() {
            Some(r) if self.fuse_rope.load(Ordering::Relaxed) => self.companion_rope(r, k.ptr, tokens, dt),
            _ => None,
        };
        let f = self.func(op, "kv_cache", "write_kv", dt)?;
        let n = vec_elems(dt);
        let [rp, rf, rd, rh, rt, ri, rs] = rope;
        let (q_ptr, q_width, q_pairs) = match &q {
            Some(c) => (c.ptr, c.width, (c.width / c.rope.head_dim) * c.rope.half),
            None => (0, 0, 0),
        };
        let q_rope = q.as_ref().map(|c| c.rope.clone());
        let args = [
            Arg::Ptr(k_cache.ptr),
            Arg::Ptr(v_cache.ptr),
            Arg::Ptr(k.ptr),
            Arg::Ptr(v.ptr),
            Arg::Ptr(slot_mapping.ptr),
            Arg::U32(u32_arg(op, "k width", kw)?),
            Arg::U32(u32_arg(op, "v width", vw)?),
            Arg::U64(nb.saturating_mul(bs) as u64),
            Arg::U32((kw % n == 0) as u32),
            Arg::U32((vw % n == 0) as u32),
            Arg::Ptr(self.device.err_ptr),
            rp,
            rf,
            rd,
            rh,
            rt,
            ri,
            rs,
            Arg::Ptr(q_ptr),
            Arg::Ptr(q_rope.as_ref().map_or(0, |r| r.inv_freq.ptr)),
            Arg::U32(u32_arg(op, "q width", q_width)?),
            Arg::U32(q_rope.as_ref().map_or(0, |r| r.head_dim as u32)),
            Arg::U32(q_rope.as_ref().map_or(0, |r| r.half as u32)),
            Arg::U32(q_rope.as_ref().is_some_and(|r| r.per_token) as u32),
            Arg::U32(q_rope.as_ref().is_some_and(|r| r.interleaved) as u32),
            Arg::F32(q_rope.as_ref().map_or(1.0, |r| r.scaling)),
        ];
        // Block (t, 0) writes token t's K/V; blocks (t, 1..) rotate its q pairs, 128 each.
        let q_blocks = q_pairs.div_ceil(128);
        let cfg = LaunchConfig {
            grid_dim: (u32_arg(op, "tokens", tokens)?, u32_arg(op, "q blocks", 1 + q_blocks)?, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let r = self.launch(op, &f, cfg, &args);
        drop(q);
        r
    }

    pub(crate) fn op_paged_attention(
        &self,
        q: &CudaTensor,
        k_cache: &CudaTensor,
        v_cache: &CudaTensor,
        meta: &AttentionMetadata<CudaTensor>,
        p: &AttentionParams,
    ) -> Result<CudaTensor> {
        let op = Op::PagedAttention;
        let dt = float(op, q)?;
        for t in [k_cache, v_cache] {
            if float(op, t)? != dt {
                return Err(shape_err(op, format!("dtypes differ: q {} and cache {}", dt, t.dtype)));
            }
        }
        for t in [&meta.query_start_loc, &meta.seq_lens, &meta.block_tables, &meta.seq_order] {
            u32s(op, t)?;
        }
        let dims = check_shapes(q, k_cache, v_cache, meta, p).map_err(|d| shape_err(op, d))?;
        let d = p.head_dim;
        if d > MAX_HEAD_DIM {
            return Err(dev_err(op, format!("head_dim {d} is larger than the {MAX_HEAD_DIM} the CUDA kernels take")));
        }
        // Decode rows only, one token each and no other rows: every output row is written
        // (by the decode kernel or its combine), so the output needs no zero fill (a memset
        // node a layer fewer in decode graphs).
        let every_row_decoded =
            decode_head_dim(d) && meta.num_decode_seqs == meta.num_seqs && dims.tokens == meta.num_seqs && meta.max_seq_len > 0;
        let out = if every_row_decoded { self.empty(op, dt, &q.shape)? } else { self.zeroed(op, dt, &q.shape)? };
        if dims.tokens == 0 || meta.num_seqs == 0 || meta.max_query_len == 0 || meta.max_seq_len == 0 {
            return Ok(out);
        }
        let window = match p.sliding_window {
            Some(w) if w < meta.max_seq_len => w as u32,
            _ => 0,
        };
        // Decode rows (the first num_decode_seqs of seq_order) take the decode kernel where it
        // has the head_dim; the rest (prefill rows, or everything) the general one.
        let num_decode = if decode_head_dim(d) { meta.num_decode_seqs } else { 0 };
        // q's deferred rope: write_kv normally applied it already (see op_write_kv).
        self.settle(q)?;
        let l = Launch { q, k_cache, v_cache, out: &out, meta, p, dims, dt, window };
        if num_decode < meta.num_seqs {
            self.launch_general(&l, num_decode, meta.num_seqs - num_decode)?;
        }
        if num_decode > 0 {
            self.launch_decode(&l, num_decode)?;
        }
        Ok(out)
    }

    /// The longest context the split choice is made for: a graph's metadata carries the
    /// longest any replay may see, so the split follows the batch's real one (the hint), as
    /// the eager step before the recording did.
    fn split_basis(&self, max_seq_len: usize) -> usize {
        let hint = self.attention_hint.load(Ordering::Relaxed);
        if hint > 0 {
            hint.min(max_seq_len)
        } else {
            max_seq_len
        }
    }

    /// Records the per-sequence grid of a decode-only launch (graph.rs keys graphs on it).
    fn note_decode_grid(&self, l: &Launch, grid: DecodeGrid) {
        if l.meta.max_query_len == 1 {
            if let Ok(mut seen) = self.decode_grids.lock() {
                seen.insert(grid);
            }
        }
    }

    /// attention.cu over seq_order[first .. first + count] (attention_prefill.cu's tensor-core
    /// kernel instead for 16-bit dtypes and head_dim 64/128/256 as [`TensorCorePrefill`]
    /// says, unless splits are forced).
    fn launch_general(&self, l: &Launch, first: usize, count: usize) -> Result<()> {
        let op = Op::PagedAttention;
        let (meta, p, dt, d) = (l.meta, l.p, l.dt, l.p.head_dim);
        let forced = self.attention_splits.load(Ordering::Relaxed);
        let sms = self.device.info.multiprocessors as usize;
        if forced == 0 && matches!(dt, DType::F16 | DType::BF16) && decode_head_dim(d) {
            let g = p.num_heads / p.num_kv_heads;
            let tc_blocks = count * p.num_kv_heads * meta.max_query_len.saturating_mul(g).div_ceil(PF_ROWS);
            let mode = self.tc_prefill.load(Ordering::Relaxed);
            if mode == TensorCorePrefill::Always as u32 || (mode == TensorCorePrefill::Auto as u32 && 2 * tc_blocks >= sms) {
                return self.launch_prefill_tc(l, first, count);
            }
        }
        let variant = match d {
            0..=64 => "d64",
            65..=128 => "d128",
            _ => "d256",
        };
        let g = p.num_heads / p.num_kv_heads;
        let tiles = (meta.max_query_len.saturating_mul(g)).div_ceil(ATT_ROWS);
        if tiles > 65535 {
            return Err(dev_err(op, format!("max_query_len {} x {g} heads per group is too many rows for one launch", meta.max_query_len)));
        }
        let blocks = count * p.num_kv_heads * tiles;
        self.note_decode_grid(l, DecodeGrid { blocks_per_seq: p.num_kv_heads * tiles, keys_per_tile: 0, pipelined_keys_per_tile: 0 });
        let (splits, split_len) = choose_splits(forced, blocks, sms, self.split_basis(meta.max_seq_len));
        let s = suffix(dt).ok_or_else(|| dev_err(op, "dtype"))?;
        let name = format!("paged_attention_{s}_{variant}");
        // The label (also the profile's row) tells decode-only launches from prefill/mixed ones.
        let label = format!("{name}[{}]", if meta.max_query_len == 1 { "decode" } else { "prefill" });
        let f = (self.kernels.function("attention", &name)?, label);
        let smem = attention_smem(dt, d) as u32;
        if !self.capturing.load(Ordering::Relaxed) {
            // Set by the eager step that precedes every recording.
            self.device.allow_shared(op, &f.0, &f.1, smem)?;
        }
        let tokens = l.dims.tokens;
        let (part_acc, part_ml) = if splits > 1 {
            let rows = splits * tokens * p.num_heads;
            (Some(self.empty(op, DType::F32, &[rows * d])?), Some(self.zeroed(op, DType::F32, &[rows * 2])?))
        } else {
            (None, None)
        };
        let args = [
            Arg::Ptr(l.q.ptr),
            Arg::Ptr(l.k_cache.ptr),
            Arg::Ptr(l.v_cache.ptr),
            Arg::Ptr(l.out.ptr),
            Arg::Ptr(part_acc.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(part_ml.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(meta.query_start_loc.ptr),
            Arg::Ptr(meta.seq_lens.ptr),
            Arg::Ptr(meta.block_tables.ptr),
            Arg::Ptr(meta.seq_order.ptr),
            Arg::U32(u32_arg(op, "first sequence", first)?),
            Arg::U32(u32_arg(op, "num_seqs", meta.num_seqs)?),
            Arg::U32(u32_arg(op, "tokens", tokens)?),
            Arg::U32(u32_arg(op, "max_blocks_per_seq", meta.max_blocks_per_seq)?),
            Arg::U32(u32_arg(op, "block_size", l.dims.block_size)?),
            Arg::U32(u32_arg(op, "num_blocks", l.dims.num_blocks)?),
            Arg::U32(u32_arg(op, "num_heads", p.num_heads)?),
            Arg::U32(u32_arg(op, "num_kv_heads", p.num_kv_heads)?),
            Arg::U32(d as u32),
            Arg::F32(p.scale),
            Arg::F32(p.softcap.unwrap_or(0.0)),
            Arg::U32(l.window),
            Arg::U32(splits as u32),
            Arg::U32(split_len.min(u32::MAX as usize) as u32),
            Arg::U32(u32_arg(op, "max_query_len", meta.max_query_len)?),
            Arg::U32(u32_arg(op, "max_seq_len", meta.max_seq_len)?),
            Arg::U32((d % vec_elems(dt) == 0) as u32),
            Arg::Ptr(self.device.err_ptr),
        ];
        let grid_x = u32_arg(op, "seqs x splits", count * splits)?;
        let cfg = LaunchConfig {
            grid_dim: (grid_x, p.num_kv_heads as u32, tiles as u32),
            block_dim: ((ATT_WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        self.launch(op, &f, cfg, &args)?;

        if let (Some(acc), Some(ml)) = (&part_acc, &part_ml) {
            let fc = self.func(op, "attention", "attention_combine", dt)?;
            let rows = u32_arg(op, "rows", tokens * p.num_heads)?;
            let args = [Arg::Ptr(acc.ptr), Arg::Ptr(ml.ptr), Arg::Ptr(l.out.ptr), Arg::U32(rows), Arg::U32(d as u32), Arg::U32(splits as u32)];
            let cfg = LaunchConfig { grid_dim: (rows, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
            self.launch(op, &fc, cfg, &args)?;
        }
        Ok(())
    }

    /// attention_prefill.cu (mma.sync, 64 rows a block, no key split) over
    /// seq_order[first .. first + count].
    fn launch_prefill_tc(&self, l: &Launch, first: usize, count: usize) -> Result<()> {
        let op = Op::PagedAttention;
        let (meta, p, dt, d) = (l.meta, l.p, l.dt, l.p.head_dim);
        let g = p.num_heads / p.num_kv_heads;
        let tiles = (meta.max_query_len.saturating_mul(g)).div_ceil(PF_ROWS);
        if tiles > 65535 {
            return Err(dev_err(op, format!("max_query_len {} x {g} heads per group is too many rows for one launch", meta.max_query_len)));
        }
        let s = suffix(dt).ok_or_else(|| dev_err(op, "dtype"))?;
        let name = format!("paged_attention_tc_{s}_d{d}");
        let label = format!("{name}[{}]", if meta.max_query_len == 1 { "decode" } else { "prefill" });
        let f = (self.kernels.function("attention_prefill", &name)?, label);
        let smem = (3 * PF_ROWS * (d + 8) * dt.size()) as u32;
        if !self.capturing.load(Ordering::Relaxed) {
            self.device.allow_shared(op, &f.0, &f.1, smem)?;
        }
        let args = [
            Arg::Ptr(l.q.ptr),
            Arg::Ptr(l.k_cache.ptr),
            Arg::Ptr(l.v_cache.ptr),
            Arg::Ptr(l.out.ptr),
            Arg::Ptr(meta.query_start_loc.ptr),
            Arg::Ptr(meta.seq_lens.ptr),
            Arg::Ptr(meta.block_tables.ptr),
            Arg::Ptr(meta.seq_order.ptr),
            Arg::U32(u32_arg(op, "first sequence", first)?),
            Arg::U32(u32_arg(op, "num_seqs", meta.num_seqs)?),
            Arg::U32(u32_arg(op, "tokens", l.dims.tokens)?),
            Arg::U32(u32_arg(op, "max_blocks_per_seq", meta.max_blocks_per_seq)?),
            Arg::U32(u32_arg(op, "block_size", l.dims.block_size)?),
            Arg::U32(u32_arg(op, "num_blocks", l.dims.num_blocks)?),
            Arg::U32(u32_arg(op, "num_heads", p.num_heads)?),
            Arg::U32(u32_arg(op, "num_kv_heads", p.num_kv_heads)?),
            Arg::F32(p.scale),
            Arg::F32(p.softcap.unwrap_or(0.0)),
            Arg::U32(l.window),
            Arg::U32(u32_arg(op, "max_query_len", meta.max_query_len)?),
            Arg::U32(u32_arg(op, "max_seq_len", meta.max_seq_len)?),
            Arg::Ptr(self.device.err_ptr),
        ];
        let cfg = LaunchConfig {
            grid_dim: (u32_arg(op, "sequences", count)?, p.num_kv_heads as u32, tiles as u32),
            block_dim: ((PF_WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        self.launch(op, &f, cfg, &args)
    }

    /// attention_decode.cu over the decode sequences seq_order[.. num_decode].
    fn launch_decode(&self, l: &Launch, num_decode: usize) -> Result<()> {
        let op = Op::PagedAttention;
        let (meta, p, dt, d) = (l.meta, l.p, l.dt, l.p.head_dim);
        let g = p.num_heads / p.num_kv_heads;
        let gh = decode_heads_for(g, num_decode, self.decode_heads.load(Ordering::Relaxed) as usize);
        let chunks = g.div_ceil(gh);
        let sms = self.device.info.multiprocessors as usize;
        let per_seq = p.num_kv_heads * chunks;
        let forced = self.attention_splits.load(Ordering::Relaxed);
        let grid = DecodeGrid {
            blocks_per_seq: per_seq,
            keys_per_tile: decode_keys_per_tile(dt, d, gh, false),
            pipelined_keys_per_tile: decode_keys_per_tile(dt, d, gh, true),
        };
        self.note_decode_grid(l, grid);
        let mode = self.decode_pipeline.load(Ordering::Relaxed);
        let tile = self.tile_splits.load(Ordering::Relaxed);
        let (pipelined, splits, split_len) = grid.launch(forced, mode, tile, num_decode, sms, self.split_basis(meta.max_seq_len));
        let s = suffix(dt).ok_or_else(|| dev_err(op, "dtype"))?;
        // 2..=8 splits of the registers variant merge inside a thread block cluster (sm_90+).
        let cluster = !pipelined
            && (2..=MAX_CLUSTER).contains(&splits)
            && self.decode_cluster.load(Ordering::Relaxed)
            && self.device.info.compute_capability.0 >= 9;
        let (name, smem) = if cluster {
            (format!("paged_attention_decode_cluster_{s}_d{d}_g{gh}"), 0)
        } else if pipelined {
            (format!("paged_attention_decode_pipelined_{s}_d{d}_g{gh}"), decode_pipelined_smem(dt, d, gh) as u32)
        } else {
            (format!("paged_attention_decode_{s}_d{d}_g{gh}"), 0)
        };
        let f = (self.kernels.function("attention_decode", &name)?, name);
        if smem > 0 && !self.capturing.load(Ordering::Relaxed) {
            // Set by the eager step that precedes every recording: 4 blocks of 48 KB an SM
            // need the largest carveout.
            self.device.allow_shared(op, &f.0, &f.1, smem)?;
            self.device.prefer_shared(op, &f.0, &f.1)?;
        }
        // Every split writes its (max, sum), empty ones (-inf, 0): no zero fill (a memset
        // node a layer fewer in a graph). The combine launch below merges them.
        let (part_acc, part_ml) = if splits > 1 && !cluster {
            let rows = splits * num_decode * p.num_heads;
            (Some(self.empty(op, DType::F32, &[rows * d])?), Some(self.empty(op, DType::F32, &[rows * 2])?))
        } else {
            (None, None)
        };
        let args = [
            Arg::Ptr(l.q.ptr),
            Arg::Ptr(l.k_cache.ptr),
            Arg::Ptr(l.v_cache.ptr),
            Arg::Ptr(l.out.ptr),
            Arg::Ptr(part_acc.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(part_ml.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(meta.query_start_loc.ptr),
            Arg::Ptr(meta.seq_lens.ptr),
            Arg::Ptr(meta.block_tables.ptr),
            Arg::Ptr(meta.seq_order.ptr),
            Arg::U32(u32_arg(op, "decode sequences", num_decode)?),
            Arg::U32(u32_arg(op, "num_seqs", meta.num_seqs)?),
            Arg::U32(u32_arg(op, "tokens", l.dims.tokens)?),
            Arg::U32(u32_arg(op, "max_blocks_per_seq", meta.max_blocks_per_seq)?),
            Arg::U32(u32_arg(op, "block_size", l.dims.block_size)?),
            Arg::U32(u32_arg(op, "num_blocks", l.dims.num_blocks)?),
            Arg::U32(u32_arg(op, "num_heads", p.num_heads)?),
            Arg::U32(u32_arg(op, "num_kv_heads", p.num_kv_heads)?),
            Arg::F32(p.scale),
            Arg::F32(p.softcap.unwrap_or(0.0)),
            Arg::U32(l.window),
            Arg::U32(splits as u32),
            Arg::U32(split_len.min(u32::MAX as usize) as u32),
            Arg::U32(u32_arg(op, "max_seq_len", meta.max_seq_len)?),
            Arg::U32(self.decode_early_kv.load(Ordering::Relaxed) as u32),
            Arg::Ptr(self.device.err_ptr),
        ];
        let cfg = LaunchConfig {
            grid_dim: (u32_arg(op, "decode seqs x splits", num_decode * splits)?, u32_arg(op, "kv heads x chunks", per_seq)?, 1),
            block_dim: ((DEC_WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        if cluster {
            let sync = self.sync_launches.load(Ordering::Relaxed);
            self.device.launch_cluster(op, &f.0, &f.1, cfg, &args, sync, splits as u32)?;
        } else {
            self.launch(op, &f, cfg, &args)?;
        }

        if let (Some(acc), Some(ml)) = (&part_acc, &part_ml) {
            let fc = self.func(op, "attention_decode", "attention_decode_combine", dt)?;
            let args = [
                Arg::Ptr(acc.ptr),
                Arg::Ptr(ml.ptr),
                Arg::Ptr(l.out.ptr),
                Arg::Ptr(meta.query_start_loc.ptr),
                Arg::Ptr(meta.seq_order.ptr),
                Arg::U32(num_decode as u32),
                Arg::U32(meta.num_seqs as u32),
                Arg::U32(l.dims.tokens as u32),
                Arg::U32(p.num_heads as u32),
                Arg::U32(d as u32),
                Arg::U32(splits as u32),
            ];
            let cfg = LaunchConfig { grid_dim: (num_decode as u32, p.num_heads as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
            self.launch(op, &fc, cfg, &args)?;
        }
        Ok(())
    }
}

/// Most key splits a decode launch merges inside a thread block cluster (the portable
/// cluster size); more take the combine launch. `DEC_MAX_CLUSTER` in attention_decode.cu.
const MAX_CLUSTER: usize = 8;

/// The arguments both attention launches share.
struct Launch<'a> {
    q: &'a CudaTensor,
    k_cache: &'a CudaTensor,
    v_cache: &'a CudaTensor,
    out: &'a CudaTensor,
    meta: &'a AttentionMetadata<CudaTensor>,
    p: &'a AttentionParams,
    dims: StepDims,
    dt: DType,
    window: u32,
}

