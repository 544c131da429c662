//! Async scheduling (the next step launched before this one's tokens are read back, its input
//! ids fed on the device) against the synchronous engine on the tiny fixture models: the same
//! tokens, finish reasons and stop reasons under chunked prefill, preemption, stop tokens,
//! eos, length limits, aborts, seeded sampling (pipelined too: sampled on the device) and a
//! request that turns pipelining off (a penalty reads its history on the host); no leaked
//! blocks.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, FinishReason, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::sched::StopReason;
use tessera_core::weights::SafetensorsWeights;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

fn engine(name: &str, num_blocks: usize, budget: usize, async_scheduling: bool, eos: Vec<u32>, max_model_len: usize) -> Engine<CpuBackend> {
    let d = dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = CpuBackend::new();
    let model = load_model(&b, &config, &weights).unwrap();
    let runner = ModelRunner::new(b, model, num_blocks, 16).unwrap();
    let ec = EngineConfig { max_num_batched_tokens: budget, async_scheduling, ..EngineConfig::new(max_model_len) };
    Engine::new(runner, ec, None, eos).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

type Finished = BTreeMap<String, (Vec<u32>, Option<FinishReason>, Option<StopReason>)>;

/// Runs `e` until idle, calling `between(step, e)` after each step; returns every finished
/// completion.
fn run(e: &mut Engine<CpuBackend>, mut between: impl FnMut(usize, &mut Engine<CpuBackend>)) -> Finished {
    let mut done = Finished::new();
    let mut steps = 0;
    while e.has_unfinished_requests() {
        for o in e.step().unwrap() {
            if o.finished {
                for c in &o.outputs {
                    done.insert(format!("{}#{}", o.request_id, c.index), (c.token_ids.clone(), c.finish_reason, c.stop_reason.clone()));
                }
            }
        }
        steps += 1;
        between(steps, e);
        assert!(steps < 10_000, "no progress");
    }
    assert!(e.step().unwrap().is_empty(), "nothing is left in flight");
    let kv = &e.scheduler().kv_cache_manager;
    assert_eq!(kv.pool().num_free_blocks(), kv.num_usable_blocks(), "every block is free or cached-evictable");
    done
}

#[test]
fn async_scheduling_matches_transformers_under_chunking_and_preemption() {
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let steps = reference["greedy_steps"].as_u64().unwrap() as usize;
        let cases: Vec<(Vec<u32>, Vec<u32>)> =
            reference["cases"].as_array().unwrap().iter().map(|c| (ids(&c["prompt_token_ids"]), ids(&c["greedy_token_ids"]))).collect();
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(steps) };
        // 48 blocks of 16 for 32 requests at 64 tokens a step: chunked prefill and preemption.
        let mut e = engine(name, 48, 64, true, vec![2], 512);
        for (i, (p, _)) in cases.iter().enumerate() {
            e.add_request(i.to_string(), p.clone(), params.clone()).unwrap();
        }
        let done = run(&mut e, |_, _| {});
        let s = e.stats();
        eprintln!("{name}: {} steps, {} pipelined, {} preemptions", s.num_steps_total, s.num_pipelined_steps_total, s.num_preemptions_total);
        assert!(s.num_preemptions_total >= 2, "{name}: only {} preemptions", s.num_preemptions_total);
        assert!(s.num_pipelined_steps_total * 10 >= s.num_steps_total * 8, "{name}: most steps are pipelined");
        for (i, (_, want)) in cases.iter().enumerate() {
            let (got, finish, _) = &done[&format!("{i}#0")];
            assert_eq!(got, want, "{name} case {i}: async vs transformers");
            assert_eq!(*finish, Some(FinishReason::Length));
        }
    }
}

fn prompt(i: u32, len: u32) -> Vec<u32> {
    (0..len).map(|t| (t * 7 + i * 13) % 500 + 3).collect()
}

fn g(n: usize) -> SamplingParams {
    SamplingParams { ignore_eos: true, ..SamplingParams::greedy(n) }
}

/// A mixed workload: stop tokens, eos, max_tokens 1 and 2, the max_model_len limit, n = 2,
/// chunked prompts.
fn workload(e: &mut Engine<CpuBackend>, greedy: &[u32]) {
    e.add_request("long", prompt(0, 70), g(40)).unwrap();
    e.add_request("one", prompt(1, 20), g(1)).unwrap();
    e.add_request("two", prompt(2, 33), g(2)).unwrap();
    e.add_request("stop", prompt(3, 18), SamplingParams { stop_token_ids: vec![greedy[2], greedy[5]], ..g(30) }).unwrap();
    e.add_request("eos", prompt(4, 25), SamplingParams::greedy(30)).unwrap();
    e.add_request("to_the_limit", prompt(5, 90), SamplingParams { max_tokens: None, ..g(1) }).unwrap();
    e.add_request("pair", prompt(6, 40), SamplingParams { n: 2, ..g(12) }).unwrap();
    e.add_request("doomed", prompt(7, 30), g(50)).unwrap();
}

#[test]
fn async_scheduling_ends_requests_exactly_as_sync() {
    let (name, max_len) = ("llama", 100);
    // Eos = a token the model emits often from these prompts.
    let probe = {
        let mut e = engine(name, 64, 512, false, vec![], max_len);
        e.add_request("p", (0..25).map(|t| (t * 7 + 4 * 13) % 500 + 3).collect::<Vec<u32>>(), SamplingParams { ignore_eos: true, ..SamplingParams::greedy(12) }).unwrap();
        run(&mut e, |_, _| {}).remove("p#0").unwrap().0
    };
    let eos = vec![probe[6]];
    let mut preemptions = 0;
    for (budget, blocks) in [(512, 64), (24, 40), (40, 20)] {
        for sampled in [false, true] {
            let mut results = Vec::new();
            for async_scheduling in [false, true] {
                let mut e = engine(name, blocks, budget, async_scheduling, eos.clone(), max_len);
                workload(&mut e, &probe);
                // Mid-flight: an abort, and (`sampled`) two seeded temperature requests, one
                // pipelined, one with a penalty, which pauses pipelining until it ends.
                let done = run(&mut e, |step, e| {
                    if step == 6 {
                        assert!(e.abort_request("doomed"));
                    }
                    if step == 3 && sampled {
                        let p = SamplingParams { temperature: 0.9, top_k: 40, seed: Some(5), ..g(30) };
                        e.add_request("sampled", prompt(8, 21), p.clone()).unwrap();
                        let penalized = SamplingParams { repetition_penalty: 1.3, seed: Some(6), ..p.clone() };
                        e.add_request("penalized", prompt(9, 23), SamplingParams { max_tokens: Some(8), ..penalized }).unwrap();
                    }
                });
                let s = e.stats();
                if async_scheduling {
                    assert!(s.num_pipelined_steps_total > 0, "budget {budget}, sampled {sampled}: some steps are pipelined ({s:?})");
                    assert!(!sampled || s.num_pipelined_steps_total + 8 <= s.num_steps_total, "the penalized request's steps are not");
                } else {
                    assert_eq!(s.num_pipelined_steps_total, 0);
                }
                results.push((done, s.num_preemptions_total));
            }
            let (sync, _) = &results[0];
            let (asy, preempted) = &results[1];
            preemptions += preempted;
            assert!(!sync.contains_key("doomed#0"));
            assert_eq!(sync.keys().collect::<Vec<_>>(), asy.keys().collect::<Vec<_>>(), "budget {budget}, blocks {blocks}");
            for (k, v) in sync {
                assert_eq!(&asy[k], v, "{k}: budget {budget}, blocks {blocks}, sampled {sampled}, {preempted} preemptions");
            }
            assert_eq!(sync["eos#0"].1, Some(FinishReason::Stop), "the eos request stops on eos");
            assert!(matches!(sync["stop#0"].2, Some(StopReason::Token(_))), "{:?}", sync["stop#0"]);
            assert_eq!(sync["one#0"].0.len(), 1);
            assert_eq!(sync["two#0"].0.len(), 2);
            assert_eq!(sync["to_the_limit#0"].0.len(), max_len - 90);
            if sampled {
                assert_eq!(sync["sampled#0"].0.len(), 30);
            }
        }
    }
    assert!(preemptions > 0, "the small caches preempt");
}
