//! `BlockPool`: the arena of KV-cache blocks, their reference counts, the LRU free-block queue
//! and the prefix cache (block hash -> block).
//!
//! ```text
//! blocks      [0: null] [1] [2] [3] [4] [5] ...        block 0 is never handed out
//! free queue  head -> 3 <-> 5 <-> 1 <-> 4 <- tail       (intrusive, linked by block ids)
//!             get_new_blocks pops at the head (evicting its cached hash, if any);
//!             a block whose ref count drops to 0 is appended at the tail and KEEPS its hash,
//!             so it can still be hit (touch() takes it back out of the queue) until reused.
//! cached      BlockHash -> [block ids]    full blocks only; duplicates allowed
//! ```
//! A block is in the free queue iff its ref count is 0. The number of free blocks counts
//! cached-but-unreferenced blocks: they are evictable.

use std::collections::HashMap;

use super::hash::BlockHash;
use crate::error::{Error, Result};

const NIL: u32 = u32::MAX;

/// One KV-cache block's bookkeeping.
#[derive(Clone, Debug)]
pub struct KVCacheBlock {
    pub block_id: u32,
    /// Requests holding this block.
    pub ref_cnt: u32,
    /// Set while the block is registered in the prefix cache (full and computed).
    pub block_hash: Option<BlockHash>,
    prev_free: u32,
    next_free: u32,
}

#[derive(Debug)]
pub struct BlockPool {
    blocks: Vec<KVCacheBlock>,
    free_head: u32,
    free_tail: u32,
    num_free: usize,
    cached: HashMap<BlockHash, Vec<u32>>,
    enable_caching: bool,
}

impl BlockPool {
    /// A pool of `num_blocks` blocks: block 0 is the null block, `1..num_blocks` start free,
    /// in id order.
    pub fn new(num_blocks: usize, enable_caching: bool) -> Result<Self> {
        if num_blocks < 2 || num_blocks > NIL as usize {
            return Err(Error::OutOfBlocks(format!("a KV cache needs 2 to 2^32-1 blocks, got {num_blocks}")));
        }
        let blocks = (0..num_blocks as u32)
            .map(|i| KVCacheBlock { block_id: i, ref_cnt: 0, block_hash: None, prev_free: NIL, next_free: NIL })
            .collect();
        let mut pool = BlockPool { blocks, free_head: NIL, free_tail: NIL, num_free: 0, cached: HashMap::new(), enable_caching };
        for i in 1..num_blocks as u32 {
            pool.push_free(i);
        }
        Ok(pool)
    }

    /// Total blocks including the null block.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks that can be handed out now (free, including cached ones that would be evicted).
    pub fn num_free_blocks(&self) -> usize {
        self.num_free
    }

    /// Fraction of the usable blocks (all but the null block) in use, 0..=1.
    pub fn usage(&self) -> f32 {
        let usable = (self.blocks.len() - 1) as f32;
        1.0 - self.num_free as f32 / usable
    }

    pub fn block(&self, id: u32) -> &KVCacheBlock {
        &self.blocks[id as usize]
    }

    /// The free queue from head (next to be evicted) to tail.
    pub fn free_block_ids(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.num_free);
        let mut i = self.free_head;
        while i != NIL {
            out.push(i);
            i = self.blocks[i as usize].next_free;
        }
        out
    }

    /// Number of distinct hashes in the prefix cache.
    pub fn num_cached_hashes(&self) -> usize {
        self.cached.len()
    }

    /// `n` blocks from the head of the free queue, each with ref count 1; evicts their cached
    /// hashes. Fails, changing nothing, when fewer than `n` are free.
    pub fn get_new_blocks(&mut self, n: usize) -> Result<Vec<u32>> {
        if n > self.num_free {
            return Err(Error::OutOfBlocks(format!("asked for {n} blocks, {} free of {}", self.num_free, self.blocks.len() - 1)));
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.free_head;
            self.remove_free(id);
            self.evict(id);
            self.blocks[id as usize].ref_cnt = 1;
            out.push(id);
        }
        Ok(out)
    }

    /// A cached block holding exactly the prefix `hash` names.
    pub fn get_cached_block(&self, hash: BlockHash) -> Option<u32> {
        self.cached.get(&hash).and_then(|v| v.first().copied())
    }

    /// Takes a reference on each block (a prefix-cache hit); a block at ref count 0 leaves the
    /// free queue.
    pub fn touch(&mut self, ids: &[u32]) {
        for &id in ids {
            if self.blocks[id as usize].ref_cnt == 0 {
                self.remove_free(id);
            }
            self.blocks[id as usize].ref_cnt += 1;
        }
    }

    /// Drops a reference on each block, in the given order; blocks reaching 0 join the tail of
    /// the free queue in that order (so the first given is evicted first).
    pub fn free_blocks(&mut self, ids: impl IntoIterator<Item = u32>) {
        for id in ids {
            let b = &mut self.blocks[id as usize];
            assert!(b.ref_cnt > 0, "block {id} freed more often than taken");
            b.ref_cnt -= 1;
            if b.ref_cnt == 0 {
                self.push_free(id);
            }
        }
    }

    /// Registers `blocks[num_cached..num_full]` under `hashes[num_cached..num_full]`.
    pub fn cache_full_blocks(&mut self, blocks: &[u32], hashes: &[BlockHash], num_cached: usize, num_full: usize) {
        if !self.enable_caching || num_full <= num_cached {
            return;
        }
        for i in num_cached..num_full {
            let id = blocks[i];
            let b = &mut self.blocks[id as usize];
            if b.block_hash.is_some() {
                continue; // a prefix hit: already registered
            }
            b.block_hash = Some(hashes[i]);
            self.cached.entry(hashes[i]).or_default().push(id);
        }
    }

    /// Takes `ids` out of the prefix cache (their KV will not be computed after all).
    pub fn uncache_blocks(&mut self, ids: &[u32]) {
        for &id in ids {
            self.evict(id);
        }
    }

    /// Forgets every cached hash; only when no block is in use. Returns whether it did.
    pub fn reset_prefix_cache(&mut self) -> bool {
        if self.num_free != self.blocks.len() - 1 {
            return false;
        }
        self.cached.clear();
        for b in &mut self.blocks {
            b.block_hash = None;
        }
        true
    }

    fn evict(&mut self, id: u32) {
        if let Some(h) = self.blocks[id as usize].block_hash.take() {
            if let Some(v) = self.cached.get_mut(&h) {
                v.retain(|&b| b != id);
                if v.is_empty() {
                    self.cached.remove(&h);
                }
            }
        }
    }

    fn push_free(&mut self, id: u32) {
        let tail = self.free_tail;
        {
            let b = &mut self.blocks[id as usize];
            b.prev_free = tail;
            b.next_free = NIL;
        }
        if tail == NIL {
            self.free_head = id;
        } else {
            self.blocks[tail as usize].next_free = id;
        }
        self.free_tail = id;
        self.num_free += 1;
    }

    fn remove_free(&mut self, id: u32) {
        let (prev, next) = {
            let b = &self.blocks[id as usize];
            (b.prev_free, b.next_free)
        };
        if prev == NIL {
            self.free_head = next;
        } else {
            self.blocks[prev as usize].next_free = next;
        }
        if next == NIL {
            self.free_tail = prev;
        } else {
            self.blocks[next as usize].prev_free = prev;
        }
        let b = &mut self.blocks[id as usize];
        b.prev_free = NIL;
        b.next_free = NIL;
        self.num_free -= 1;
    }
}
