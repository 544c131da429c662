//! The checks of the paged-KV ops (`write_kv`, `paged_attention`) that every backend makes
//! alike, so a malformed step is the same clear error on the CPU, wgpu and CUDA:
//!
//! - [`check_write_kv`] / [`check_slots`]: cache, k / v and slot_mapping shapes; every slot
//!   inside the cache (`u32::MAX` = padding, skipped);
//! - [`check_shapes`]: the params (heads, window, softcap), q / k_cache / v_cache shapes and
//!   the metadata tensors' lengths (seq_order's too; its entries are the backends' to check
//!   where they use them);
//! - [`check_layout`]: the step layout read from the metadata's host copies (query_start_loc
//!   non-decreasing, every sequence within its limits and its blocks inside the cache).
//!
//! They return the detail of a shape error; each backend wraps it with its own error type.
//! Dtype checks stay with the backends (which dtypes they take differs).

use super::{AttentionMetadata, AttentionParams, Tensor};

fn rank1(what: &str, s: &[usize]) -> Result<usize, String> {
    match *s {
        [n] => Ok(n),
        _ => Err(format!("{what} must be rank 1, got shape {s:?}")),
    }
}

fn rank2(what: &str, s: &[usize]) -> Result<(usize, usize), String> {
    match *s {
        [r, c] => Ok((r, c)),
        _ => Err(format!("{what} must be rank 2, got shape {s:?}")),
    }
}

fn cache_dims(what: &str, s: &[usize]) -> Result<(usize, usize, usize), String> {
    match *s {
        [nb, bs, w] => Ok((nb, bs, w)),
        _ => Err(format!("{what} must be [num_blocks, block_size, kv_width], got shape {s:?}")),
    }
}

/// What [`check_write_kv`] found: tokens to write and the caches' geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvDims {
    pub tokens: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub k_width: usize,
    pub v_width: usize,
}

/// Shapes of one `write_kv` call: caches `[num_blocks, block_size, width]` (k and v may
/// differ in width), k / v `[tokens, width]`, slot_mapping `[tokens]`.
pub fn check_write_kv<T: Tensor>(k_cache: &T, v_cache: &T, k: &T, v: &T, slot_mapping: &T) -> Result<KvDims, String> {
    let (nb, bs, kw) = cache_dims("k_cache", k_cache.shape())?;
    let (vnb, vbs, vw) = cache_dims("v_cache", v_cache.shape())?;
    let (kt, kd) = rank2("k", k.shape())?;
    let (vt, vd) = rank2("v", v.shape())?;
    let tokens = rank1("slot_mapping", slot_mapping.shape())?;
    if (vnb, vbs) != (nb, bs) || kd != kw || vd != vw || kt != tokens || vt != tokens {
        return Err(format!(
            "k_cache {:?}, v_cache {:?}, k {:?}, v {:?}, slot_mapping {:?} are inconsistent",
            k_cache.shape(),
            v_cache.shape(),
            k.shape(),
            v.shape(),
            slot_mapping.shape()
        ));
    }
    Ok(KvDims { tokens, num_blocks: nb, block_size: bs, k_width: kw, v_width: vw })
}

/// Every slot of `slots` (the host copy of slot_mapping) is inside the cache or `u32::MAX`.
pub fn check_slots(slots: &[u32], dims: KvDims) -> Result<(), String> {
    let num_slots = dims.num_blocks.saturating_mul(dims.block_size);
    match slots.iter().enumerate().find(|(_, &s)| s != u32::MAX && s as usize >= num_slots) {
        Some((t, s)) => Err(format!(
            "slot {s} of token {t} is outside the cache ({} blocks of {})",
            dims.num_blocks, dims.block_size
        )),
        None => Ok(()),
    }
}

/// What [`check_shapes`] found: query rows and the cache's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepDims {
    pub tokens: usize,
    pub num_blocks: usize,
    pub block_size: usize,
}

/// Params, tensor shapes and metadata lengths of one call.
pub fn check_shapes<T: Tensor>(
    q: &T,
    k_cache: &T,
    v_cache: &T,
    meta: &AttentionMetadata<T>,
    p: &AttentionParams,
) -> Result<StepDims, String> {
    let whole_groups = p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0;
    if p.num_heads == 0 || p.head_dim == 0 || !whole_groups {
        return Err(format!(
            "num_heads {} must be a positive multiple of num_kv_heads {}, head_dim {} positive",
            p.num_heads, p.num_kv_heads, p.head_dim
        ));
    }
    if p.sliding_window == Some(0) {
        return Err("sliding_window must be >= 1".into());
    }
    if let Some(cap) = p.softcap {
        if !(cap.is_finite() && cap > 0.0) {
            return Err(format!("softcap must be finite and > 0, got {cap}"));
        }
    }
    let (tokens, q_width) = rank2("q", q.shape())?;
    let (num_blocks, block_size, kv_width) = cache_dims("k_cache", k_cache.shape())?;
    if Some(q_width) != p.num_heads.checked_mul(p.head_dim)
        || Some(kv_width) != p.num_kv_heads.checked_mul(p.head_dim)
        || v_cache.shape() != k_cache.shape()
        || block_size != meta.block_size
        || block_size == 0
    {
        return Err(format!(
            "q {:?}, k_cache {:?}, v_cache {:?} do not fit {} heads, {} kv heads of dim {} with block_size {}",
            q.shape(),
            k_cache.shape(),
            v_cache.shape(),
            p.num_heads,
            p.num_kv_heads,
            p.head_dim,
            meta.block_size
        ));
    }
    let (b_count, mb) = (meta.num_seqs, meta.max_blocks_per_seq);
    if meta.query_start_loc.numel().checked_sub(1) != Some(b_count)
        || meta.seq_lens.numel() != b_count
        || Some(meta.block_tables.numel()) != b_count.checked_mul(mb)
        || meta.seq_order.numel() != b_count
        || meta.num_decode_seqs > b_count
    {
        return Err(format!(
            "query_start_loc {:?}, seq_lens {:?}, block_tables {:?}, seq_order {:?} do not fit \
             num_seqs {b_count}, max_blocks_per_seq {mb}, num_decode_seqs {}",
            meta.query_start_loc.shape(),
            meta.seq_lens.shape(),
            meta.block_tables.shape(),
            meta.seq_order.shape(),
            meta.num_decode_seqs
        ));
    }
    Ok(StepDims { tokens, num_blocks, block_size })
}

/// The step layout, from the host copies of `query_start_loc`, `seq_lens` and
/// `block_tables` (lengths already checked by [`check_shapes`]).
pub fn check_layout<T>(
    qsl: &[u32],
    seq_lens: &[u32],
    tables: &[u32],
    meta: &AttentionMetadata<T>,
    dims: StepDims,
) -> Result<(), String> {
    let (b_count, mb, bs) = (meta.num_seqs, meta.max_blocks_per_seq, dims.block_size);
    if qsl.windows(2).any(|w| w[0] > w[1]) || qsl[b_count] as usize > dims.tokens {
        return Err(format!(
            "query_start_loc {qsl:?} must be non-decreasing and end <= {} query rows",
            dims.tokens
        ));
    }
    for b in 0..b_count {
        let q_len = (qsl[b + 1] - qsl[b]) as usize;
        let seq_len = seq_lens[b] as usize;
        if q_len > seq_len
            || q_len > meta.max_query_len
            || seq_len > meta.max_seq_len
            || seq_len > mb.saturating_mul(bs)
        {
            return Err(format!(
                "seq {b}: {q_len} query tokens, seq_len {seq_len} (need q_len <= seq_len, \
                 q_len <= max_query_len {}, seq_len <= max_seq_len {} and <= {mb} blocks of {bs})",
                meta.max_query_len, meta.max_seq_len
            ));
        }
        let used = &tables[b * mb..b * mb + seq_len.div_ceil(bs)];
        if let Some(&bad) = used.iter().find(|&&blk| blk as usize >= dims.num_blocks) {
            return Err(format!(
                "seq {b}: block id {bad} is outside the cache of {} blocks",
                dims.num_blocks
            ));
        }
    }
    Ok(())
}
