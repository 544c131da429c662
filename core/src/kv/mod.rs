//! The paged KV cache: per-layer K/V pages on the device (`KvCache`), and the host-side
//! bookkeeping of who owns which page: the block pool with its prefix cache (`BlockPool`),
//! chained block hashes, and the per-request `KVCacheManager` the scheduler drives.
//!
//! Block 0 is the reserved null block: it is never handed out, so a zero in a padded block
//! table never aliases live data.

mod block_pool;
mod hash;
mod manager;

pub use block_pool::{BlockPool, KVCacheBlock};
pub use hash::{extend_block_hashes, hash_block_tokens, hash_request_tokens, BlockHash};
pub use manager::{KVCacheManager, PrefixCacheStats};

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Device pages `[num_blocks, block_size, kv_heads * head_dim]`, one K and one V per layer.
pub struct KvCache<T> {
    pub k: Vec<T>,
    pub v: Vec<T>,
    pub block_size: usize,
    pub num_blocks: usize,
}

impl<T> KvCache<T> {
    pub fn new<B: Backend<Tensor = T>>(b: &B, num_layers: usize, num_blocks: usize, block_size: usize, kv_size: usize) -> Result<Self> {
        if num_blocks < 2 || block_size == 0 {
            return Err(Error::OutOfBlocks(format!("need at least 2 blocks of at least 1 token, got {num_blocks} x {block_size}")));
        }
        let shape = [num_blocks, block_size, kv_size];
        let mut k = Vec::with_capacity(num_layers);
        let mut v = Vec::with_capacity(num_layers);
        for _ in 0..num_layers {
            k.push(b.zeros(&shape)?);
            v.push(b.zeros(&shape)?);
        }
        Ok(KvCache { k, v, block_size, num_blocks })
    }

    /// Bytes one block takes across all layers (K and V), for sizing the cache from memory.
    pub fn bytes_per_block(num_layers: usize, block_size: usize, kv_size: usize, dtype_size: usize) -> usize {
        2 * num_layers * block_size * kv_size * dtype_size
    }
}

/// How many blocks a KV cache gets (vLLM's `num_gpu_blocks`), including the null block:
/// `override_blocks` if given, else as many as `memory_bytes` holds.
pub fn num_blocks_for(memory_bytes: u64, bytes_per_block: usize, override_blocks: Option<usize>) -> Result<usize> {
    let n = match override_blocks {
        Some(n) => n,
        None => (memory_bytes / bytes_per_block.max(1) as u64).min(u32::MAX as u64 - 1) as usize,
    };
    if n < 2 {
        return Err(Error::OutOfBlocks(format!(
            "the KV cache would have {n} blocks ({memory_bytes} bytes at {bytes_per_block} bytes a block); it needs at least 2"
        )));
    }
    Ok(n)
}

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize, block_size: usize) -> usize {
    tokens.div_ceil(block_size)
}
