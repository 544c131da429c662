//! The engine on the GPU, as core/tests/engine.rs on the CPU: 32 prompts of each tiny fixture
//! (llama, qwen2, gemma3) at once through the CUDA backend in f32, with chunked prefill (64
//! tokens a step) and a KV cache small enough to force preemption, give exactly the greedy
//! tokens transformers gave each prompt alone (engine_reference.json); no block leaks.
//!
//! Decode-step CUDA graphs: the same requests with graphs on and eagerly (`--enforce-eager`)
//! give identical greedy tokens, in f32 and bf16, at batch sizes between the graph buckets
//! (padding), with requests finishing at different steps (the batch shrinks), and the graphs
//! are really replayed.
//!
//! Async scheduling (each step launched before the previous one's ids are read back, its
//! input ids fed on the device): the same tokens as the synchronous engine, through graphs
//! and eagerly, and under chunked prefill and preemption.
//!
//! Programmatic dependent launch (the decode chain's kernels start while the one before
//! finishes, sm_90+): the same tokens as plain launches, through graphs and eagerly.
//!
//! `TESSERA_FIXTURES` points at the models folder (the GPU bundle carries a copy); without a
//! GPU it fails (CI only builds it). Run on the GPU machine by scripts/gpu-suite.sh.

#![cfg(feature = "cuda")]

mod cuda_common;

use std::collections::BTreeMap;

use cuda_common::engine::{cuda_backend, fixture_dir as dir, json_ids as ids};
use serde_json::Value;
use tessera::cuda::CudaBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, FinishReason, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::tensor::DType;
use tessera_core::weights::SafetensorsWeights;


/// Greedy tokens of `prompts` run together and the runner's (graphs recorded, replays).
fn run_batch(name: &str, dtype: DType, graphs: bool, async_scheduling: bool, prompts: &[Vec<u32>], lens: &[usize]) -> (Vec<Vec<u32>>, (u64, u64)) {
    let (tokens, stats, ()) = cuda_common::engine::run_batch(name, dtype, graphs, async_scheduling, prompts, lens, |_| (), |_| ());
    (tokens, stats)
}

fn engine(name: &str, num_blocks: usize, budget: usize, async_scheduling: bool) -> Engine<CudaBackend> {
    let d = dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = cuda_backend(DType::F32);
    let model = load_model(&b, &config, &weights).unwrap();
    let runner = ModelRunner::new(b, model, num_blocks, 16).unwrap();
    let ec = EngineConfig { max_num_batched_tokens: budget, enable_prefix_caching: true, async_scheduling, ..EngineConfig::new(512) };
    Engine::new(runner, ec, None, vec![2]).unwrap()
}


#[test]
fn gpu_decode_graphs_match_eager() {
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let all: Vec<Vec<u32>> = reference["cases"].as_array().unwrap().iter().map(|c| ids(&c["prompt_token_ids"])).collect();
        let mut wrong = Vec::new();
        for dtype in [DType::F32, DType::BF16] {
            // 1 (a bucket), 3 and 13 (padded to 4 and 16); lengths differ so the batch
            // shrinks through other sizes as requests finish.
            for n in [1usize, 3, 13] {
                let prompts: Vec<Vec<u32>> = all.iter().take(n).cloned().collect();
                let lens: Vec<usize> = (0..n).map(|i| 24 + 5 * i).collect();
                let (eager, _) = run_batch(name, dtype, false, false, &prompts, &lens);
                let (graphed, (captures, replays)) = run_batch(name, dtype, true, false, &prompts, &lens);
                let (pipelined, _) = run_batch(name, dtype, true, true, &prompts, &lens);
                let (pipelined_eager, _) = run_batch(name, dtype, false, true, &prompts, &lens);
                for (what, got) in [("async + graphs", &pipelined), ("async eager", &pipelined_eager)] {
                    if got != &eager {
                        wrong.push(format!("{name} {dtype} batch {n}: {what} differs from sync eager"));
                    }
                }
                println!("GRAPHS {name} {dtype} batch {n}: {captures} graphs recorded, {replays} replays");
                assert!(captures > 0 && replays > 0, "{name} {dtype} batch {n}: graphs were not used ({captures} recorded, {replays} replays)");
                for (i, (g, w)) in graphed.iter().zip(&eager).enumerate() {
                    if g != w {
                        let first = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                        wrong.push(format!("{name} {dtype} batch {n}, request {i}: first difference at token {first}"));
                    }
                }
            }
        }
        for w in &wrong {
            println!("GRAPHS MISMATCH {w}");
        }
        assert!(wrong.is_empty(), "{name}: graphs vs eager differ:\n{}", wrong.join("\n"));
    }
}

#[test]
fn gpu_pdl_matches_plain_launches() {
    let mut wrong = Vec::new();
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let all: Vec<Vec<u32>> = reference["cases"].as_array().unwrap().iter().map(|c| ids(&c["prompt_token_ids"])).collect();
        for dtype in [DType::F32, DType::BF16] {
            for (n, graphs) in [(1usize, true), (13, true), (3, false)] {
                let prompts: Vec<Vec<u32>> = all.iter().take(n).cloned().collect();
                let lens: Vec<usize> = (0..n).map(|i| 24 + 5 * i).collect();
                let run = |pdl: bool| {
                    let (tokens, _, on) = cuda_common::engine::run_batch(name, dtype, graphs, true, &prompts, &lens, |b| b.set_pdl(pdl), |b| b.pdl());
                    (tokens, on)
                };
                let (plain, off) = run(false);
                let (pdl, on) = run(true);
                assert!(!off, "set_pdl(false) left PDL on");
                println!("PDL {name} {dtype} batch {n} graphs {graphs}: PDL on = {on}");
                if pdl != plain {
                    wrong.push(format!("{name} {dtype} batch {n} graphs {graphs}: PDL differs from plain launches"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn gpu_batch_invariance_under_chunked_prefill_and_preemption() {
    for (name, async_scheduling) in ["llama", "qwen2", "gemma3"].into_iter().flat_map(|n| [(n, false), (n, true)]) {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let steps = reference["greedy_steps"].as_u64().unwrap() as usize;
        let cases: Vec<(Vec<u32>, Vec<u32>)> =
            reference["cases"].as_array().unwrap().iter().map(|c| (ids(&c["prompt_token_ids"]), ids(&c["greedy_token_ids"]))).collect();
        assert_eq!(cases.len(), 32);
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(steps) };
        let mut e = engine(name, 48, 64, async_scheduling);
        for (i, (p, _)) in cases.iter().enumerate() {
            e.add_request(i.to_string(), p.clone(), params.clone()).unwrap();
        }
        let (mut max_batch, mut done) = (0, BTreeMap::new());
        while e.has_unfinished_requests() {
            for o in e.step().unwrap() {
                done.insert(o.request_id.parse::<usize>().unwrap(), o);
            }
            let s = e.stats();
            assert!(s.last_step_tokens <= 64);
            max_batch = max_batch.max(s.num_running);
        }
        let stats = e.stats();
        println!(
            "ENGINE {name} async {async_scheduling}: {} steps ({} pipelined), {} preemptions, up to {max_batch} running, {} prefix-cache hit tokens",
            stats.num_steps_total, stats.num_pipelined_steps_total, stats.num_preemptions_total, stats.prefix_cache_hits_total
        );
        assert_eq!(stats.num_pipelined_steps_total > 0, async_scheduling);
        assert!(stats.num_preemptions_total >= 2, "{name}: only {} preemptions", stats.num_preemptions_total);
        assert!(max_batch >= 4, "{name}: at most {max_batch} requests ran together");
        let kv = &e.scheduler().kv_cache_manager;
        assert_eq!(kv.pool().num_free_blocks(), kv.num_usable_blocks(), "{name}: leaked KV blocks");
        let mut wrong = Vec::new();
        for (i, (p, want)) in cases.iter().enumerate() {
            let got = &done[&i].outputs[0];
            assert_eq!(got.finish_reason, Some(FinishReason::Length));
            if &got.token_ids != want {
                wrong.push(format!("case {i} (len {}): {:?} vs transformers {:?}", p.len(), got.token_ids, want));
            }
        }
        assert!(wrong.is_empty(), "{name}: batched on the GPU vs transformers:\n{}", wrong.join("\n"));
    }
}
