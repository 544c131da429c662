//! The paged KV cache: per layer, K and V pages `[num_blocks, block_size, kv_heads * head_dim]`,
//! and a free-list allocator of block ids. Block 0 is the reserved null block: it is never
//! handed out, so a zero in a padded block table never aliases live data.

use crate::backend::Backend;
use crate::error::{Error, Result};

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

/// A LIFO free list of block ids `1..num_blocks` (0 is the null block).
#[derive(Clone, Debug)]
pub struct BlockAllocator {
    free: Vec<u32>,
    num_blocks: usize,
}

impl BlockAllocator {
    pub fn new(num_blocks: usize) -> Self {
        BlockAllocator { free: (1..num_blocks as u32).rev().collect(), num_blocks }
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// `n` blocks, or an error leaving the pool unchanged.
    pub fn allocate(&mut self, n: usize) -> Result<Vec<u32>> {
        if n > self.free.len() {
            return Err(Error::OutOfBlocks(format!("asked for {n} blocks, {} free of {}", self.free.len(), self.num_blocks - 1)));
        }
        Ok(self.free.split_off(self.free.len() - n).into_iter().rev().collect())
    }

    pub fn free(&mut self, blocks: &[u32]) {
        self.free.extend(blocks.iter().rev());
    }
}

/// Blocks needed to hold `tokens` tokens.
pub fn blocks_for(tokens: usize, block_size: usize) -> usize {
    tokens.div_ceil(block_size)
}
