//! `KVCacheManager`: which blocks each request holds, prefix-cache lookups and the
//! `allocate_slots` / `free` calls the scheduler makes (vLLM v1's names and rules).
//!
//! ```text
//! request tokens   [ computed (in KV) | new this step | not yet scheduled ]
//! req_to_blocks    [ b7 ][ b2 ][ b9 ][ b4 ]   enough blocks for computed + new tokens
//!                   ^^^^^^^^^^ full blocks, registered in the prefix cache when allocated
//! ```
//! Only full blocks are ever shared (by prefix hits), and a request only writes at positions
//! `>= num_computed_tokens`, which lie past its hit prefix: no request ever writes into a
//! block another request holds, so shared blocks need no copy-on-write. A block is
//! registered when allocated, so a request admitted in the same step may already hit it:
//! that is sound because every layer writes all of the step's K/V (`write_kv`) before its
//! attention reads any (`paged_attention`).

use std::collections::HashMap;

use super::block_pool::BlockPool;
use super::hash::{extend_block_hashes, BlockHash};
use super::blocks_for;
use crate::error::Result;
use crate::sched::Request;

/// Prefix-cache counters (tokens), cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixCacheStats {
    /// Lookups made (one per request admission).
    pub requests: u64,
    /// Tokens looked up.
    pub queries: u64,
    /// Tokens found in the cache.
    pub hits: u64,
}

#[derive(Debug)]
pub struct KVCacheManager {
    pub block_size: usize,
    pub enable_caching: bool,
    pool: BlockPool,
    req_to_blocks: HashMap<String, Vec<u32>>,
    req_to_block_hashes: HashMap<String, Vec<BlockHash>>,
    num_cached_block: HashMap<String, usize>,
    pub stats: PrefixCacheStats,
}

impl KVCacheManager {
    pub fn new(num_blocks: usize, block_size: usize, enable_caching: bool) -> Result<Self> {
        if block_size == 0 {
            return Err(crate::Error::OutOfBlocks("block_size must be at least 1".into()));
        }
        Ok(KVCacheManager {
            block_size,
            enable_caching,
            pool: BlockPool::new(num_blocks, enable_caching)?,
            req_to_blocks: HashMap::new(),
            req_to_block_hashes: HashMap::new(),
            num_cached_block: HashMap::new(),
            stats: PrefixCacheStats::default(),
        })
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Blocks a request may ever use: all but the null block.
    pub fn num_usable_blocks(&self) -> usize {
        self.pool.num_blocks() - 1
    }

    pub fn usage(&self) -> f32 {
        self.pool.usage()
    }

    /// The blocks `request_id` holds, in logical order.
    pub fn get_block_ids(&self, request_id: &str) -> &[u32] {
        self.req_to_blocks.get(request_id).map_or(&[], Vec::as_slice)
    }

    /// Full blocks of `request_id` registered in the prefix cache.
    pub fn num_cached_blocks(&self, request_id: &str) -> usize {
        self.num_cached_block.get(request_id).copied().unwrap_or(0)
    }

    fn block_hashes(&mut self, request: &Request) -> &[BlockHash] {
        let hashes = self.req_to_block_hashes.entry(request.request_id.clone()).or_default();
        extend_block_hashes(hashes, &request.all_token_ids, self.block_size, request.cache_salt.as_deref().map(str::as_bytes));
        hashes
    }

    /// The longest cached prefix of `request`'s tokens: `(blocks, num_computed_tokens)`.
    /// At least the last token is always left to compute (its logits are needed), and
    /// requests asking for prompt logprobs skip the cache (they need every position's logits).
    pub fn get_computed_blocks(&mut self, request: &Request) -> (Vec<u32>, usize) {
        if !self.enable_caching || request.sampling_params.prompt_logprobs.is_some() {
            return (Vec::new(), 0);
        }
        let bs = self.block_size;
        let max_hit_blocks = (request.num_tokens() - 1) / bs;
        let hashes: Vec<BlockHash> = self.block_hashes(request).iter().take(max_hit_blocks).copied().collect();
        let mut blocks = Vec::new();
        for h in hashes {
            match self.pool.get_cached_block(h) {
                Some(b) => blocks.push(b),
                None => break,
            }
        }
        let n = blocks.len() * bs;
        (blocks, n)
    }

    /// Counts one prefix-cache lookup of `request` that found `num_hit_tokens` (called when
    /// the request is admitted, so a lookup retried over several steps counts once).
    pub fn record_lookup(&mut self, request: &Request, num_hit_tokens: usize) {
        if self.enable_caching && request.sampling_params.prompt_logprobs.is_none() {
            self.stats.requests += 1;
            self.stats.queries += request.num_tokens() as u64;
            self.stats.hits += num_hit_tokens as u64;
        }
    }

    /// Makes room for `num_new_tokens` more tokens of `request` after its
    /// `num_computed_tokens` plus `num_new_computed_tokens` prefix-hit tokens
    /// (`new_computed_blocks`, from `get_computed_blocks`). Returns the newly allocated blocks,
    /// or `None` (changing nothing) when the pool cannot supply them. Full blocks are registered
    /// in the prefix cache right away: their tokens are known and computed in this step.
    pub fn allocate_slots(
        &mut self,
        request: &Request,
        num_new_tokens: usize,
        new_computed_blocks: &[u32],
        num_new_computed_tokens: usize,
    ) -> Option<Vec<u32>> {
        let bs = self.block_size;
        let num_computed_tokens = request.num_computed_tokens + num_new_computed_tokens;
        let total = num_computed_tokens + num_new_tokens;
        debug_assert!(total <= request.num_tokens_with_placeholders(), "cannot schedule tokens that are not known yet");
        let held = self.get_block_ids(&request.request_id).len();
        let num_required = blocks_for(total, bs);
        let num_new_blocks = num_required.saturating_sub(held + new_computed_blocks.len());
        // Hit blocks sitting in the free queue stop being evictable once touched.
        let evictable_hits = new_computed_blocks.iter().filter(|&&b| self.pool.block(b).ref_cnt == 0).count();
        if num_new_blocks + evictable_hits > self.pool.num_free_blocks() {
            return None;
        }
        self.pool.touch(new_computed_blocks);
        let new_blocks = self.pool.get_new_blocks(num_new_blocks).expect("checked above");
        let req_blocks = self.req_to_blocks.entry(request.request_id.clone()).or_default();
        req_blocks.extend_from_slice(new_computed_blocks);
        req_blocks.extend_from_slice(&new_blocks);
        if self.enable_caching {
            let num_cached = self.num_cached_block.get(&request.request_id).copied().unwrap_or(new_computed_blocks.len());
            // A block is hashed once its tokens are known (not while one is a placeholder).
            let num_full = total.min(request.num_tokens()) / bs;
            let hashes: Vec<BlockHash> = self.block_hashes(request).to_vec();
            let blocks = self.req_to_blocks[&request.request_id].clone();
            self.pool.cache_full_blocks(&blocks, &hashes, num_cached, num_full);
            self.num_cached_block.insert(request.request_id.clone(), num_cached.max(num_full));
        }
        Some(new_blocks)
    }

    /// Releases every block of `request_id`, last block first, so a finished request's tail
    /// is evicted before its (more shareable) head.
    pub fn free(&mut self, request_id: &str) {
        if let Some(blocks) = self.req_to_blocks.remove(request_id) {
            self.pool.free_blocks(blocks.into_iter().rev());
        }
        self.num_cached_block.remove(request_id);
    }

    /// Like [`free`](Self::free) for a request whose scheduled step is cancelled before it ran
    /// (preempted after being scheduled): blocks registered in the prefix cache beyond the
    /// first `keep_cached` are taken out again, as their KV will never be written.
    pub fn free_unscheduled(&mut self, request_id: &str, keep_cached: usize) {
        let now = self.num_cached_blocks(request_id);
        if now > keep_cached {
            let ids: Vec<u32> = self.get_block_ids(request_id)[keep_cached..now].to_vec();
            self.pool.uncache_blocks(&ids);
        }
        self.free(request_id);
    }

    /// Forgets the block hashes of a finished request (kept across preemption for reuse).
    pub fn free_block_hashes(&mut self, request_id: &str) {
        self.req_to_block_hashes.remove(request_id);
    }

    pub fn reset_prefix_cache(&mut self) -> bool {
        self.pool.reset_prefix_cache()
    }
}
