//! `write_kv` and `paged_attention` on the device (kernels/kv_cache.cu, kernels/attention.cu):
//! host-side checks of shapes and dtypes, the split-K choice, shared-memory sizing, launches.
//!
//! ```text
//! cache [num_blocks, block_size, num_kv_heads * head_dim]
//! attention grid: x = seqs * splits, y = kv heads, z = ceil(max_query_len * G / 8) row tiles
//! splits > 1 (few blocks for the SMs, long contexts: decode): each split writes f32 partials
//!   acc [splits, T, H, D], (max, sum) [splits, T, H, 2]; attention_combine merges them
//! ```
//! Per-sequence metadata (query_start_loc, seq_lens, block tables) stays on the device and is
//! checked there; a bad entry is reported by the next `to_host`.

use cudarc::driver::LaunchConfig;
use tessera_core::backend::attention_checks::{check_shapes, check_write_kv};
use tessera_core::backend::{AttentionMetadata, AttentionParams, Op, Result};
use tessera_core::tensor::DType;

use super::device::{dev_err, Arg};
use super::ops::{float, u32_arg, u32s};
use super::tensor::{suffix, vec_elems};
use super::{shape_err, CudaBackend, CudaTensor};

/// Rows (token, head) per block, warps per block, keys per warp tile: kernels/attention.cu.
const ATT_ROWS: usize = 8;
const ATT_WARPS: usize = 4;
const ATT_KEYS: usize = 32;
/// The largest head_dim the kernels take (32 lanes x 8 dims).
pub(crate) const MAX_HEAD_DIM: usize = 256;

/// Dynamic shared memory of one attention block (see the layout in attention.cu).
pub(crate) fn attention_smem(dtype: DType, head_dim: usize) -> usize {
    let n = vec_elems(dtype);
    let dp = head_dim.div_ceil(n) * n;
    let q = ATT_ROWS * dp * 4;
    let main = q + ATT_WARPS * ATT_KEYS * (dp + n) * dtype.size() + ATT_WARPS * ATT_ROWS * ATT_KEYS * 4;
    let combine = q + (ATT_WARPS * ATT_ROWS * head_dim + 2 * ATT_WARPS * ATT_ROWS) * 4;
    main.max(combine)
}

/// `(num_splits, split_len)`: how the key range of each sequence is cut. `forced` > 0 asks
/// for that many splits; otherwise split only when the grid would not fill the SMs, with at
/// least 128 keys (one 32-key tile per warp) per split: a lone decode sequence of a few
/// hundred keys then runs on 4x more blocks, each a single pass, instead of looping.
pub(crate) fn choose_splits(forced: u32, blocks: usize, sms: usize, max_seq_len: usize) -> (usize, usize) {
    let none = (1, u32::MAX as usize);
    if max_seq_len == 0 {
        return none;
    }
    let want = if forced > 0 {
        forced as usize
    } else if blocks >= sms || max_seq_len < 2 * ATT_WARPS * ATT_KEYS {
        1
    } else {
        (2 * sms).div_ceil(blocks.max(1)).min(max_seq_len / (ATT_WARPS * ATT_KEYS)).clamp(1, 32)
    };
    if want <= 1 {
        return none;
    }
    let mut split_len = max_seq_len.div_ceil(want);
    if forced == 0 {
        split_len = split_len.next_multiple_of(ATT_WARPS * ATT_KEYS);
    }
    let n = max_seq_len.div_ceil(split_len);
    if n <= 1 {
        none
    } else {
        (n, split_len)
    }
}

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
        let f = self.func(op, "kv_cache", "write_kv", dt)?;
        let n = vec_elems(dt);
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
        ];
        let cfg = LaunchConfig { grid_dim: (u32_arg(op, "tokens", tokens)?, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        self.launch(op, &f, cfg, &args)
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
        for t in [&meta.query_start_loc, &meta.seq_lens, &meta.block_tables] {
            u32s(op, t)?;
        }
        let dims = check_shapes(q, k_cache, v_cache, meta, p).map_err(|d| shape_err(op, d))?;
        let (tokens, nb, bs) = (dims.tokens, dims.num_blocks, dims.block_size);
        let (b_count, mb) = (meta.num_seqs, meta.max_blocks_per_seq);
        let d = p.head_dim;
        let variant = match d {
            0..=64 => "d64",
            65..=128 => "d128",
            129..=MAX_HEAD_DIM => "d256",
            _ => return Err(dev_err(op, format!("head_dim {d} is larger than the {MAX_HEAD_DIM} the CUDA kernels take"))),
        };
        let out = self.zeroed(op, dt, &q.shape)?;
        if tokens == 0 || b_count == 0 || meta.max_query_len == 0 || meta.max_seq_len == 0 {
            return Ok(out);
        }
        let g = p.num_heads / p.num_kv_heads;
        let tiles = (meta.max_query_len.saturating_mul(g)).div_ceil(ATT_ROWS);
        if tiles > 65535 {
            return Err(dev_err(op, format!("max_query_len {} x {g} heads per group is too many rows for one launch", meta.max_query_len)));
        }
        let sms = self.device.info.multiprocessors as usize;
        let blocks = b_count * p.num_kv_heads * tiles;
        let forced = self.attention_splits.load(std::sync::atomic::Ordering::Relaxed);
        // A graph's metadata carries the longest context any replay may see; the split is
        // chosen from the batch's real one (the hint), as the eager step would.
        let hint = self.attention_hint.load(std::sync::atomic::Ordering::Relaxed);
        let split_basis = if hint > 0 { hint.min(meta.max_seq_len) } else { meta.max_seq_len };
        if meta.max_query_len == 1 {
            if let Ok(mut seen) = self.decode_grids.lock() {
                seen.insert(p.num_kv_heads * tiles);
            }
        }
        let (splits, split_len) = choose_splits(forced, blocks, sms, split_basis);
        let window = match p.sliding_window {
            Some(w) if w < meta.max_seq_len => w as u32,
            _ => 0,
        };
        let s = suffix(dt).ok_or_else(|| dev_err(op, "dtype"))?;
        let name = format!("paged_attention_{s}_{variant}");
        // The label (also the profile's row) tells decode-only launches from prefill/mixed ones.
        let label = format!("{name}[{}]", if meta.max_query_len == 1 { "decode" } else { "prefill" });
        let f = (self.kernels.function("attention", &name)?, label);
        let smem = attention_smem(dt, d) as u32;
        if !self.capturing.load(std::sync::atomic::Ordering::Relaxed) {
            // Set by the eager step that precedes every recording.
            self.device.allow_shared(op, &f.0, &f.1, smem)?;
        }

        let (part_acc, part_ml) = if splits > 1 {
            let rows = splits * tokens * p.num_heads;
            (Some(self.empty(op, DType::F32, &[rows * d])?), Some(self.zeroed(op, DType::F32, &[rows * 2])?))
        } else {
            (None, None)
        };
        let args = [
            Arg::Ptr(q.ptr),
            Arg::Ptr(k_cache.ptr),
            Arg::Ptr(v_cache.ptr),
            Arg::Ptr(out.ptr),
            Arg::Ptr(part_acc.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(part_ml.as_ref().map_or(0, |t| t.ptr)),
            Arg::Ptr(meta.query_start_loc.ptr),
            Arg::Ptr(meta.seq_lens.ptr),
            Arg::Ptr(meta.block_tables.ptr),
            Arg::U32(u32_arg(op, "tokens", tokens)?),
            Arg::U32(u32_arg(op, "max_blocks_per_seq", mb)?),
            Arg::U32(u32_arg(op, "block_size", bs)?),
            Arg::U32(u32_arg(op, "num_blocks", nb)?),
            Arg::U32(u32_arg(op, "num_heads", p.num_heads)?),
            Arg::U32(u32_arg(op, "num_kv_heads", p.num_kv_heads)?),
            Arg::U32(d as u32),
            Arg::F32(p.scale),
            Arg::F32(p.softcap.unwrap_or(0.0)),
            Arg::U32(window),
            Arg::U32(splits as u32),
            Arg::U32(split_len.min(u32::MAX as usize) as u32),
            Arg::U32(u32_arg(op, "max_query_len", meta.max_query_len)?),
            Arg::U32(u32_arg(op, "max_seq_len", meta.max_seq_len)?),
            Arg::U32((d % vec_elems(dt) == 0) as u32),
            Arg::Ptr(self.device.err_ptr),
        ];
        let grid_x = u32_arg(op, "seqs x splits", b_count * splits)?;
        let cfg = LaunchConfig {
            grid_dim: (grid_x, p.num_kv_heads as u32, tiles as u32),
            block_dim: ((ATT_WARPS * 32) as u32, 1, 1),
            shared_mem_bytes: smem,
        };
        self.launch(op, &f, cfg, &args)?;

        if let (Some(acc), Some(ml)) = (&part_acc, &part_ml) {
            let fc = self.func(op, "attention", "attention_combine", dt)?;
            let rows = u32_arg(op, "rows", tokens * p.num_heads)?;
            let args = [Arg::Ptr(acc.ptr), Arg::Ptr(ml.ptr), Arg::Ptr(out.ptr), Arg::U32(rows), Arg::U32(d as u32), Arg::U32(splits as u32)];
            let cfg = LaunchConfig { grid_dim: (rows, 1, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
            self.launch(op, &fc, cfg, &args)?;
        }
        Ok(out)
    }
}
