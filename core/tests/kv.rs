//! Block pool and KV cache manager: exact block ids for allocation, LRU eviction order,
//! prefix-cache hits (chained hashes, extra keys, the last-token rule) and reference counts.

use tessera_core::kv::{hash_block_tokens, hash_request_tokens, BlockPool, KVCacheManager};
use tessera_core::sample::SamplingParams;
use tessera_core::sched::Request;

fn req(id: &str, tokens: Vec<u32>) -> Request {
    Request::new(id, tokens, SamplingParams::greedy(4))
}

#[test]
fn pool_hands_out_blocks_in_order_and_never_the_null_block() {
    let mut p = BlockPool::new(6, true).unwrap();
    assert_eq!(p.free_block_ids(), vec![1, 2, 3, 4, 5]);
    assert_eq!(p.get_new_blocks(2).unwrap(), vec![1, 2]);
    assert_eq!(p.num_free_blocks(), 3);
    assert!((p.usage() - 0.4).abs() < 1e-6);
    // Freed blocks join the tail in the order given.
    p.free_blocks([2, 1]);
    assert_eq!(p.free_block_ids(), vec![3, 4, 5, 2, 1]);
    assert_eq!(p.get_new_blocks(4).unwrap(), vec![3, 4, 5, 2]);
    let err = p.get_new_blocks(2).unwrap_err().to_string();
    assert!(err.contains("asked for 2 blocks, 1 free of 5"), "{err}");
    assert_eq!(p.num_free_blocks(), 1, "a failed allocation changes nothing");
    assert!(BlockPool::new(1, true).is_err());
}

#[test]
fn hashes_are_chained_stable_and_keyed() {
    let a = hash_request_tokens(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 4, None);
    assert_eq!(a.len(), 2, "only full blocks are hashed");
    assert_eq!(a[0], hash_block_tokens(None, &[1, 2, 3, 4], None));
    assert_eq!(a[1], hash_block_tokens(Some(a[0]), &[5, 6, 7, 8], None));
    // Same block tokens after a different prefix hash differently.
    let b = hash_request_tokens(&[9, 2, 3, 4, 5, 6, 7, 8], 4, None);
    assert_ne!(a[1], b[1]);
    // Extra keys (a cache salt) change the first block and so the whole chain.
    let salted = hash_request_tokens(&[1, 2, 3, 4, 5, 6, 7, 8], 4, Some(b"salt"));
    assert_ne!(salted[0], a[0]);
    assert_ne!(salted[1], a[1]);
    // Stable across runs and machines: a fixed value for a fixed input.
    assert_eq!(hash_block_tokens(None, &[1, 2, 3, 4], None), hash_block_tokens(None, &[1, 2, 3, 4], None));
    let h = hash_block_tokens(None, &[], None).0;
    assert_eq!(h, hash_block_tokens(None, &[], None).0);
    assert_ne!(h, 0);
}

#[test]
fn allocate_slots_then_prefix_hits_share_full_blocks() {
    let mut m = KVCacheManager::new(10, 4, true).unwrap();
    let a = req("a", (100..110).collect()); // 10 tokens: 2 full blocks + 2
    assert_eq!(m.get_computed_blocks(&a), (vec![], 0));
    assert_eq!(m.allocate_slots(&a, 10, &[], 0), Some(vec![1, 2, 3]));
    assert_eq!(m.num_cached_blocks("a"), 2);
    assert!(m.pool().block(1).block_hash.is_some() && m.pool().block(2).block_hash.is_some());
    assert!(m.pool().block(3).block_hash.is_none(), "the partial block is not cached");

    // Same first 8 tokens: both full blocks hit; only the tail is new.
    let mut tokens: Vec<u32> = (100..108).collect();
    tokens.extend([7, 7, 7]);
    let b = req("b", tokens);
    let (hit, n) = m.get_computed_blocks(&b);
    assert_eq!((hit.clone(), n), (vec![1, 2], 8));
    assert_eq!(m.allocate_slots(&b, 3, &hit, n), Some(vec![4]));
    assert_eq!(m.get_block_ids("b"), &[1, 2, 4]);
    assert_eq!(m.pool().block(1).ref_cnt, 2);
    assert_eq!(m.pool().block(4).ref_cnt, 1);

    // a frees last block first; shared blocks stay with b.
    m.free("a");
    assert_eq!(m.pool().free_block_ids(), vec![5, 6, 7, 8, 9, 3]);
    assert_eq!(m.pool().block(1).ref_cnt, 1);
    m.free("b");
    assert_eq!(m.pool().free_block_ids(), vec![5, 6, 7, 8, 9, 3, 4, 2, 1]);
    assert_eq!(m.usage(), 0.0);

    // Freed blocks keep their hashes: a third request still hits them, pulling them out of
    // the free queue.
    let c = req("c", (100..112).collect());
    let (hit, n) = m.get_computed_blocks(&c);
    assert_eq!((hit.clone(), n), (vec![1, 2], 8));
    assert_eq!(m.allocate_slots(&c, 4, &hit, n), Some(vec![5]));
    assert_eq!(m.pool().free_block_ids(), vec![6, 7, 8, 9, 3, 4]);
    assert_eq!(m.num_cached_blocks("c"), 3, "c's third block is full now");
}

#[test]
fn the_last_token_is_always_recomputed() {
    let mut m = KVCacheManager::new(10, 4, true).unwrap();
    let a = req("a", (0..8).collect());
    m.allocate_slots(&a, 8, &[], 0).unwrap();
    // An identical 8-token prompt: both blocks are cached, but the last token's logits are
    // needed, so only the first block counts as computed.
    let b = req("b", (0..8).collect());
    assert_eq!(m.get_computed_blocks(&b), (vec![1], 4));
}

#[test]
fn lru_eviction_drops_the_oldest_freed_hash_first() {
    let mut m = KVCacheManager::new(5, 2, true).unwrap(); // 4 usable blocks of 2 tokens
    let a = req("a", vec![1, 2, 3, 4, 5]);
    assert_eq!(m.allocate_slots(&a, 5, &[], 0), Some(vec![1, 2, 3]));
    m.free("a"); // queue: 4, 3, 2, 1 (tail block first)
    assert_eq!(m.pool().free_block_ids(), vec![4, 3, 2, 1]);
    // A new unrelated request takes 4 and then 3 (block 2's hash survives).
    let b = req("b", vec![9, 9, 9]);
    assert_eq!(m.allocate_slots(&b, 3, &[], 0), Some(vec![4, 3]));
    let a2 = req("a2", vec![1, 2, 3, 4, 5]);
    assert_eq!(m.get_computed_blocks(&a2), (vec![1, 2], 4));
    // One more block evicts block 2 (the head), cutting a's chain after block 1.
    let c = req("c", vec![8, 8]);
    assert_eq!(m.allocate_slots(&c, 2, &[], 0), Some(vec![2]));
    assert_eq!(m.get_computed_blocks(&a2), (vec![1], 2));
}

#[test]
fn allocation_failure_changes_nothing_and_counts_evictable_hits() {
    let mut m = KVCacheManager::new(4, 2, true).unwrap(); // 3 usable
    let a = req("a", vec![1, 2, 3, 4]);
    m.allocate_slots(&a, 4, &[], 0).unwrap(); // blocks 1, 2
    m.free("a"); // both free but cached
    let b = req("b", vec![1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let (hit, n) = m.get_computed_blocks(&b);
    assert_eq!((hit.clone(), n), (vec![1, 2], 4 ));
    // Needs 5 blocks in all: 2 hits (free, so not extra) + 3 new > 3 free.
    assert_eq!(m.allocate_slots(&b, 5, &hit, n), None);
    assert_eq!(m.pool().num_free_blocks(), 3);
    assert_eq!(m.get_block_ids("b"), &[] as &[u32]);
    assert_eq!(m.pool().block(1).ref_cnt, 0);
}

#[test]
fn salts_and_prompt_logprobs_bypass_sharing() {
    let mut m = KVCacheManager::new(10, 2, true).unwrap();
    let a = req("a", vec![1, 2, 3, 4, 5]);
    m.allocate_slots(&a, 5, &[], 0).unwrap();
    let mut salted = req("s", vec![1, 2, 3, 4, 5]);
    salted.cache_salt = Some("user-1".into());
    assert_eq!(m.get_computed_blocks(&salted), (vec![], 0));
    let lp = Request::new("lp", vec![1, 2, 3, 4, 5], SamplingParams { prompt_logprobs: Some(1), ..SamplingParams::greedy(1) });
    assert_eq!(m.get_computed_blocks(&lp), (vec![], 0));
    let plain = req("p", vec![1, 2, 3, 4, 5]);
    assert_eq!(m.get_computed_blocks(&plain), (vec![1, 2], 4));
    let mut off = KVCacheManager::new(10, 2, false).unwrap();
    off.allocate_slots(&a, 5, &[], 0).unwrap();
    assert_eq!(off.get_computed_blocks(&plain), (vec![], 0));
    assert_eq!(off.pool().num_cached_hashes(), 0);
}
