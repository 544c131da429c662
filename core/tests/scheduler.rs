//! The scheduler without a model: exact block ids through chunked prefill, decodes first,
//! preemption decisions (FCFS and priority), resumption from the prefix cache, limits and
//! rejection of requests that can never fit.

use tessera_core::kv::KVCacheManager;
use tessera_core::sample::SamplingParams;
use tessera_core::sched::{
    EngineCoreOutput, ModelRunnerOutput, Request, SampledOutput, Scheduler, SchedulerConfig, SchedulerOutput, SchedulingPolicy,
};
use tessera_core::engine::FinishReason;

fn sched(num_blocks: usize, block_size: usize, budget: usize, max_seqs: usize, policy: SchedulingPolicy, caching: bool) -> Scheduler {
    let kv = KVCacheManager::new(num_blocks, block_size, caching).unwrap();
    let config = SchedulerConfig { max_num_seqs: max_seqs, max_num_batched_tokens: budget, max_model_len: 1000, policy, async_scheduling: false };
    Scheduler::new(config, kv).unwrap()
}

fn req(id: &str, len: u32, max_tokens: usize) -> Request {
    Request::new(id, (0..len).map(|i| 10 + i + 100 * id.len() as u32 + id.as_bytes()[0] as u32).collect(), SamplingParams::greedy(max_tokens))
}

/// Schedules one step and plays the model: every request whose computed tokens reach its end
/// samples `token`.
fn step(s: &mut Scheduler, token: u32) -> (SchedulerOutput, Vec<EngineCoreOutput>) {
    let so = s.schedule();
    let outputs = so
        .num_scheduled_tokens()
        .iter()
        .map(|(id, _)| {
            let r = s.get_request(id).unwrap();
            SampledOutput { request_id: id.to_string(), token_id: (r.num_computed_tokens == r.num_tokens()).then_some(token), ..Default::default() }
        })
        .collect();
    let eo = s.update_from_output(&so, &ModelRunnerOutput { outputs });
    (so, eo)
}

fn ids(so: &SchedulerOutput) -> Vec<(String, usize)> {
    so.num_scheduled_tokens().into_iter().map(|(a, b)| (a.to_string(), b)).collect()
}

#[test]
fn chunked_prefill_then_decode_with_exact_blocks() {
    let mut s = sched(16, 4, 8, 4, SchedulingPolicy::Fcfs, true);
    s.add_request(req("a", 20, 3)).unwrap();
    let (so, eo) = step(&mut s, 7);
    assert_eq!(so.scheduled_new_reqs.len(), 1);
    let n = &so.scheduled_new_reqs[0];
    assert_eq!((n.block_ids.clone(), n.num_computed_tokens, n.num_scheduled_tokens), (vec![1, 2], 0, 8));
    assert!(eo.is_empty(), "a partial prefill samples nothing");
    let (so, _) = step(&mut s, 7);
    let c = &so.scheduled_cached_reqs[0];
    assert_eq!((c.new_block_ids.clone(), c.num_computed_tokens, c.num_scheduled_tokens), (vec![3, 4], 8, 8));
    let (so, eo) = step(&mut s, 7);
    assert_eq!(so.scheduled_cached_reqs[0].new_block_ids, vec![5]);
    assert_eq!(so.total_num_scheduled_tokens, 4);
    assert_eq!(eo[0].new_token_ids, vec![7], "the last chunk samples");
    // Decode: token 20 starts block 6; token 21 fits in it.
    let (so, _) = step(&mut s, 8);
    assert_eq!((so.scheduled_cached_reqs[0].new_block_ids.clone(), so.total_num_scheduled_tokens), (vec![6], 1));
    let (so, eo) = step(&mut s, 9);
    assert!(so.scheduled_cached_reqs[0].new_block_ids.is_empty());
    assert_eq!(eo[0].finish_reason, Some(FinishReason::Length));
    assert!(s.get_request("a").is_none());
    assert_eq!(s.kv_cache_manager.pool().num_free_blocks(), 15, "everything is free again");
    let so = s.schedule();
    assert_eq!(so.finished_req_ids, vec!["a".to_string()]);
    assert!(so.is_empty());
}

#[test]
fn decodes_go_first_and_prefills_take_the_rest_of_the_budget() {
    let mut s = sched(32, 4, 6, 8, SchedulingPolicy::Fcfs, false);
    s.add_request(req("a", 3, 10)).unwrap();
    step(&mut s, 1); // a: prefill done, 4 tokens now
    s.add_request(req("b", 20, 10)).unwrap();
    let (so, _) = step(&mut s, 1);
    assert_eq!(ids(&so), vec![("a".into(), 1), ("b".into(), 5)]);
    assert!(so.scheduled_cached_reqs[0].new_block_ids.is_empty(), "a's 4th token still fits in block 1");
    assert_eq!(so.scheduled_new_reqs[0].block_ids, vec![2, 3]);
    let (so, _) = step(&mut s, 1);
    assert_eq!(ids(&so), vec![("a".into(), 1), ("b".into(), 5)]);
    assert_eq!(so.scheduled_cached_reqs[0].new_block_ids, vec![4], "a's 5th token opens its 2nd block");
}

#[test]
fn preemption_takes_the_newest_and_it_resumes_from_the_prefix_cache() {
    // 5 usable blocks of 2 tokens.
    let mut s = sched(6, 2, 16, 4, SchedulingPolicy::Fcfs, true);
    s.add_request(req("a", 4, 3)).unwrap();
    s.add_request(req("b", 4, 6)).unwrap();
    let (so, _) = step(&mut s, 5);
    assert_eq!(so.scheduled_new_reqs.iter().map(|r| r.block_ids.clone()).collect::<Vec<_>>(), vec![vec![1, 2], vec![3, 4]]);
    // Both need a third block; only one is left. b (newest) is preempted.
    let (so, _) = step(&mut s, 5);
    assert_eq!(so.preempted_req_ids, vec!["b".to_string()]);
    assert_eq!(ids(&so), vec![("a".into(), 1)]);
    assert_eq!(so.scheduled_cached_reqs[0].new_block_ids, vec![5]);
    let b = s.get_request("b").unwrap();
    assert_eq!((b.num_computed_tokens, b.num_preemptions, b.output_token_ids.clone()), (0, 1, vec![5]), "outputs are kept");
    assert_eq!(s.waiting_ids(), vec!["b"]);
    assert_eq!(s.stats().num_preemptions_total, 1);
    // b's freed blocks still hold its prompt; it cannot fit back yet (needs 1 more block).
    let (so, eo) = step(&mut s, 5);
    assert_eq!(ids(&so), vec![("a".into(), 1)]);
    assert_eq!(eo[0].finish_reason, Some(FinishReason::Length));
    // a is done: b resumes with its 2 cached blocks (4 tokens) and recomputes only token 4.
    let (so, _) = step(&mut s, 6);
    assert_eq!(so.finished_req_ids, vec!["a".to_string()]);
    let r = &so.scheduled_new_reqs[0];
    assert_eq!(r.request_id, "b");
    assert_eq!(r.token_ids.len(), 5, "prompt + the output sampled before preemption");
    assert_eq!((r.block_ids.clone(), r.num_computed_tokens, r.num_scheduled_tokens), (vec![3, 4, 5], 4, 1));
    assert_eq!(s.get_request("b").unwrap().output_token_ids, vec![5, 6]);
}

#[test]
fn priority_policy_preempts_the_lowest_priority_not_the_newest() {
    for (policy, victim, a_blocks) in [(SchedulingPolicy::Priority, "a", None), (SchedulingPolicy::Fcfs, "b", Some(vec![5]))] {
        let mut s = sched(6, 2, 16, 4, policy, false);
        s.add_request(req("a", 4, 6).with_priority(5)).unwrap();
        step(&mut s, 1); // a: [1, 2], 5 tokens
        s.add_request(req("b", 3, 6).with_priority(0)).unwrap();
        let (so, _) = step(&mut s, 1); // a: +[3]; b: [4, 5]
        assert_eq!(so.scheduled_new_reqs[0].block_ids, vec![4, 5]);
        step(&mut s, 1); // both decode inside their blocks
        let (so, _) = step(&mut s, 1); // a needs a 4th block: none left
        assert_eq!(so.preempted_req_ids, vec![victim.to_string()], "{policy:?}");
        let a = so.scheduled_cached_reqs.iter().find(|r| r.request_id == "a").map(|r| r.new_block_ids.clone());
        assert_eq!(a, a_blocks, "{policy:?}");
    }
}

#[test]
fn priority_policy_orders_the_waiting_queue() {
    let mut s = sched(64, 4, 4, 1, SchedulingPolicy::Priority, false);
    s.add_request(req("low", 2, 1).with_priority(3)).unwrap();
    s.add_request(req("high", 2, 1).with_priority(-1)).unwrap();
    s.add_request(req("mid", 2, 1).with_priority(0)).unwrap();
    s.add_request(req("mid2", 2, 1).with_priority(0)).unwrap();
    assert_eq!(s.waiting_ids(), vec!["high", "mid", "mid2", "low"]);
    let mut order = Vec::new();
    while s.has_unfinished_requests() {
        let (so, _) = step(&mut s, 1);
        order.extend(so.scheduled_new_reqs.iter().map(|r| r.request_id.clone()));
    }
    assert_eq!(order, vec!["high", "mid", "mid2", "low"]);
}

#[test]
fn max_num_seqs_and_the_token_budget_bound_each_step() {
    let mut s = sched(64, 4, 10, 2, SchedulingPolicy::Fcfs, false);
    for id in ["a", "b", "c"] {
        s.add_request(req(id, 3, 4)).unwrap();
    }
    let (so, _) = step(&mut s, 1);
    assert_eq!(ids(&so), vec![("a".into(), 3), ("b".into(), 3)]);
    assert_eq!(s.waiting_ids(), vec!["c"]);
    assert!(so.total_num_scheduled_tokens <= 10);
}

#[test]
fn prefix_hits_are_reported_and_counted_once() {
    let mut s = sched(32, 4, 64, 4, SchedulingPolicy::Fcfs, true);
    let prompt: Vec<u32> = (0..10).collect();
    s.add_request(Request::new("a", prompt.clone(), SamplingParams::greedy(2))).unwrap();
    step(&mut s, 1);
    s.add_request(Request::new("b", prompt, SamplingParams::greedy(2))).unwrap();
    let (so, _) = step(&mut s, 1);
    let b = so.scheduled_new_reqs.iter().find(|r| r.request_id == "b").unwrap();
    assert_eq!((b.num_computed_tokens, b.num_scheduled_tokens), (8, 2));
    assert_eq!(&b.block_ids[..2], &[1, 2], "a's full blocks");
    let st = s.stats().prefix_cache;
    assert_eq!((st.requests, st.queries, st.hits), (2, 20, 8));
}

#[test]
fn requests_that_can_never_fit_are_rejected_with_a_clear_error() {
    let mut s = sched(4, 2, 16, 4, SchedulingPolicy::Fcfs, true); // 3 usable blocks: 6 tokens
    let e = s.add_request(req("big", 5, 4)).unwrap_err().to_string();
    assert!(e.contains("can never fit") && e.contains("KV cache has 3"), "{e}");
    s.add_request(req("ok", 5, 2)).unwrap(); // 5 + 2 - 1 = 6 tokens fit
    let e = s.add_request(req("ok", 1, 1)).unwrap_err().to_string();
    assert!(e.contains("already in use"), "{e}");
    let e = s.add_request(Request::new("empty", vec![], SamplingParams::greedy(1))).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");
    let mut short = Scheduler::new(
        SchedulerConfig { max_num_seqs: 4, max_num_batched_tokens: 8, max_model_len: 4, policy: SchedulingPolicy::Fcfs, async_scheduling: false },
        KVCacheManager::new(64, 2, true).unwrap(),
    )
    .unwrap();
    let e = short.add_request(req("long", 4, 1)).unwrap_err().to_string();
    assert!(e.contains("max_model_len is 4"), "{e}");
    // max_tokens is capped by max_model_len.
    short.add_request(req("x", 2, 100)).unwrap();
    while short.has_unfinished_requests() {
        step(&mut short, 3);
    }
    assert_eq!(short.kv_cache_manager.pool().num_free_blocks(), 63);
}

#[test]
fn finish_requests_frees_running_and_waiting_requests() {
    let mut s = sched(16, 4, 4, 1, SchedulingPolicy::Fcfs, true);
    s.add_request(req("a", 8, 4)).unwrap();
    s.add_request(req("b", 8, 4)).unwrap();
    step(&mut s, 1);
    assert!(s.kv_cache_manager.usage() > 0.0);
    s.finish_requests(&["a".to_string(), "b".to_string()], tessera_core::sched::RequestStatus::FinishedAborted);
    assert!(!s.has_unfinished_requests());
    assert_eq!(s.kv_cache_manager.usage(), 0.0);
    let so = s.schedule();
    assert_eq!(so.finished_req_ids, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn parallel_samples_share_full_blocks_and_never_write_a_shared_one() {
    // n = 3 the vLLM v1 way: three requests with one prompt, admitted in the same step. The
    // first registers its full blocks as it allocates them; the others hit them and recompute
    // only the partial last block into a block of their own, so no copy-on-write is needed.
    let mut s = sched(32, 4, 64, 4, SchedulingPolicy::Fcfs, true);
    let prompt: Vec<u32> = (50..60).collect(); // 2 full blocks + 2 tokens
    for id in ["0_r", "1_r", "2_r"] {
        s.add_request(Request::new(id, prompt.clone(), SamplingParams::greedy(3))).unwrap();
    }
    let (so, _) = step(&mut s, 1);
    let got: Vec<(Vec<u32>, usize, usize)> =
        so.scheduled_new_reqs.iter().map(|r| (r.block_ids.clone(), r.num_computed_tokens, r.num_scheduled_tokens)).collect();
    assert_eq!(got, vec![(vec![1, 2, 3], 0, 10), (vec![1, 2, 4], 8, 2), (vec![1, 2, 5], 8, 2)]);
    let pool = s.kv_cache_manager.pool();
    assert_eq!((pool.block(1).ref_cnt, pool.block(2).ref_cnt, pool.block(4).ref_cnt), (3, 3, 1));
    // The sharers write only into blocks they hold alone. (The first request fills blocks 1
    // and 2 in this very step; the sharers read them in the same forward pass, which writes
    // every token's K/V of a layer before that layer's attention reads any.)
    for r in so.scheduled_new_reqs.iter().skip(1) {
        for pos in r.num_computed_tokens..r.num_computed_tokens + r.num_scheduled_tokens {
            let b = r.block_ids[pos / 4];
            assert_eq!(pool.block(b).ref_cnt, 1, "{} writes position {pos} into shared block {b}", r.request_id);
        }
    }
    // Decodes append to private blocks too.
    let (so, _) = step(&mut s, 1);
    for c in &so.scheduled_cached_reqs {
        assert!(c.num_computed_tokens >= 8 && c.new_block_ids.is_empty(), "{c:?}");
    }
}
