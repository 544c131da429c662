//! The engine on the GPU, as core/tests/engine.rs on the CPU: 32 prompts of each tiny fixture
//! (llama, qwen2, gemma3) at once through the CUDA backend in f32, with chunked prefill (64
//! tokens a step) and a KV cache small enough to force preemption, give exactly the greedy
//! tokens transformers gave each prompt alone (engine_reference.json); no block leaks.
//!
//! `TESSERA_FIXTURES` points at the models folder (the GPU bundle carries a copy); without a
//! GPU it fails (CI only builds it). Run on the GPU machine by scripts/gpu-suite.sh.

#![cfg(feature = "cuda")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tessera::cuda::CudaBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, FinishReason, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::tensor::DType;
use tessera_core::weights::SafetensorsWeights;

fn dir(name: &str) -> PathBuf {
    std::env::var_os("TESSERA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models"))
        .join(name)
}

fn engine(name: &str, num_blocks: usize, budget: usize) -> Engine<CudaBackend> {
    let d = dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = CudaBackend::new(0, DType::F32).unwrap_or_else(|e| panic!("the CUDA backend is not available here ({e}); run on the GPU machine"));
    let model = load_model(&b, &config, &weights).unwrap();
    let runner = ModelRunner::new(b, model, num_blocks, 16).unwrap();
    let ec = EngineConfig { max_num_batched_tokens: budget, enable_prefix_caching: true, ..EngineConfig::new(512) };
    Engine::new(runner, ec, None, vec![2]).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn gpu_batch_invariance_under_chunked_prefill_and_preemption() {
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let steps = reference["greedy_steps"].as_u64().unwrap() as usize;
        let cases: Vec<(Vec<u32>, Vec<u32>)> =
            reference["cases"].as_array().unwrap().iter().map(|c| (ids(&c["prompt_token_ids"]), ids(&c["greedy_token_ids"]))).collect();
        assert_eq!(cases.len(), 32);
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(steps) };
        let mut e = engine(name, 48, 64);
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
            "ENGINE {name}: {} steps, {} preemptions, up to {max_batch} running, {} prefix-cache hit tokens",
            stats.num_steps_total, stats.num_preemptions_total, stats.prefix_cache_hits_total
        );
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
