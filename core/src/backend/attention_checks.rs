//! The checks of a `paged_attention` call that every backend makes alike, so a malformed
//! step is the same clear error on the CPU, wgpu and CUDA:
//!
//! - [`check_shapes`]: the params (heads, window, softcap), q / k_cache / v_cache shapes and
//!   the metadata tensors' lengths;
//! - [`check_layout`]: the step layout read from the metadata's host copies (query_start_loc
//!   non-decreasing, every sequence within its limits and its blocks inside the cache).
//!
//! They return the detail of a shape error; each backend wraps it with its own error type.
//! Dtype checks stay with the backends (which dtypes they take differs).

use super::{AttentionMetadata, AttentionParams, Tensor};

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
    let (tokens, q_width) = match q.shape() {
        &[r, c] => (r, c),
        s => return Err(format!("q must be rank 2, got shape {s:?}")),
    };
    let (num_blocks, block_size, kv_width) = match k_cache.shape() {
        &[nb, bs, w] => (nb, bs, w),
        s => return Err(format!("k_cache must be [num_blocks, block_size, kv_width], got shape {s:?}")),
    };
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
    {
        return Err(format!(
            "query_start_loc {:?}, seq_lens {:?}, block_tables {:?} do not fit num_seqs {b_count}, \
             max_blocks_per_seq {mb}",
            meta.query_start_loc.shape(),
            meta.seq_lens.shape(),
            meta.block_tables.shape()
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
