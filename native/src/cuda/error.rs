//! Decoding the device error word (see kernels/common.cuh) into a `BackendError` that names
//! the op and the offending index. Kernels skip the bad element; the error surfaces at the
//! next synchronisation (`to_host`, `synchronize`).

use tessera_core::backend::{BackendError, Op};

use super::NAME;

// Keep in sync with kernels/common.cuh.
pub(crate) const ERR_EMBEDDING_ID: u32 = 1;
pub(crate) const ERR_GATHER_INDEX: u32 = 2;
pub(crate) const ERR_WRITE_KV_SLOT: u32 = 3;
pub(crate) const ERR_ATTN_METADATA: u32 = 4;
pub(crate) const ERR_ATTN_BLOCK_ID: u32 = 5;

/// The error for a non-zero word `[code, a, b, _]`.
pub(crate) fn decode(word: [u32; 4]) -> BackendError {
    let [code, a, b, _] = word;
    let (op, what) = match code {
        ERR_EMBEDDING_ID => (Op::Embedding, format!("token id {a} at row {b} is out of range for the embedding table")),
        ERR_GATHER_INDEX => (Op::GatherRows, format!("row index {a} (output row {b}) is out of range")),
        ERR_WRITE_KV_SLOT => (Op::WriteKv, format!("slot {a} of token {b} is outside the cache")),
        ERR_ATTN_METADATA => (
            Op::PagedAttention,
            format!(
                "seq {a}: inconsistent metadata (seq_len {b}; need query_start_loc non-decreasing within the tokens, \
                 q_len <= seq_len, q_len <= max_query_len, seq_len <= max_seq_len and <= max_blocks_per_seq * block_size)"
            ),
        ),
        ERR_ATTN_BLOCK_ID => (Op::PagedAttention, format!("seq {b}: block id {a} is outside the cache")),
        other => (Op::ToHost, format!("unknown device error code {other} ({a}, {b})")),
    };
    BackendError::Device { backend: NAME, message: format!("op {op:?} (checked on the device): {what}") }
}
