//! The engine on the tiny fixture models: batch invariance under chunked prefill and
//! preemption (against each prompt alone and against transformers), no leaked blocks, seeded
//! sampling independent of the batch, stop conditions, n > 1 over the prefix cache, logprobs.

use std::path::PathBuf;

use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, Engine, EngineConfig, FinishReason, GenerateParams, ModelRunner, RequestOutput};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::sched::StopReason;
use tessera_core::weights::SafetensorsWeights;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

fn runner(name: &str, num_blocks: usize) -> ModelRunner<CpuBackend> {
    let d = dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = CpuBackend::new();
    let model = load_model(&b, &config, &weights).unwrap();
    ModelRunner::new(b, model, num_blocks, 16).unwrap()
}

fn engine(name: &str, num_blocks: usize, budget: usize, caching: bool) -> Engine<CpuBackend> {
    let config = EngineConfig { max_num_batched_tokens: budget, enable_prefix_caching: caching, ..EngineConfig::new(512) };
    Engine::new(runner(name, num_blocks), config, None, vec![2]).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// Runs until idle; returns the finished outputs by request id.
fn run_all(e: &mut Engine<CpuBackend>) -> std::collections::BTreeMap<String, RequestOutput> {
    let mut done = std::collections::BTreeMap::new();
    let mut steps = 0;
    while e.has_unfinished_requests() {
        for o in e.step().unwrap() {
            if o.finished {
                done.insert(o.request_id.clone(), o);
            }
        }
        steps += 1;
        assert!(steps < 100_000, "no progress");
    }
    done
}

fn assert_no_leaks(e: &Engine<CpuBackend>) {
    let kv = &e.scheduler().kv_cache_manager;
    assert_eq!(kv.pool().num_free_blocks(), kv.num_usable_blocks(), "every block is free or cached-evictable");
    assert_eq!(e.stats().kv_cache_usage, 0.0);
    assert!(!e.scheduler().has_unfinished_requests());
}

#[test]
fn batch_invariance_under_chunked_prefill_and_preemption() {
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let steps = reference["greedy_steps"].as_u64().unwrap() as usize;
        let cases: Vec<(Vec<u32>, Vec<u32>)> =
            reference["cases"].as_array().unwrap().iter().map(|c| (ids(&c["prompt_token_ids"]), ids(&c["greedy_token_ids"]))).collect();
        assert_eq!(cases.len(), 32);
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(steps) };

        // All 32 together: 64 tokens a step, 48 blocks of 16 (the longest prompt alone needs 20).
        let mut e = engine(name, 48, 64, true);
        for (i, (p, _)) in cases.iter().enumerate() {
            e.add_request(i.to_string(), p.clone(), params.clone()).unwrap();
        }
        let mut max_batch = 0;
        let mut done = std::collections::BTreeMap::new();
        while e.has_unfinished_requests() {
            for o in e.step().unwrap() {
                done.insert(o.request_id.parse::<usize>().unwrap(), o);
            }
            let s = e.stats();
            assert!(s.last_step_tokens <= 64);
            max_batch = max_batch.max(s.num_running);
        }
        let stats = e.stats();
        eprintln!(
            "{name}: {} steps, {} preemptions, up to {max_batch} running, {} prefix-cache hit tokens",
            stats.num_steps_total, stats.num_preemptions_total, stats.prefix_cache_hits_total
        );
        assert!(stats.num_preemptions_total >= 2, "{name}: only {} preemptions", stats.num_preemptions_total);
        assert!(max_batch >= 4, "{name}: at most {max_batch} requests ran together");
        assert!(stats.prefix_cache_hits_total > 0, "{name}: the shared-prefix prompts hit the cache");
        assert_no_leaks(&e);

        // Each alone, through the sequential reference generator.
        let mut alone = runner(name, 64);
        for (i, (p, want)) in cases.iter().enumerate() {
            let got = &done[&i].outputs[0];
            assert_eq!(&got.token_ids, want, "{name} case {i} (len {}): batched vs transformers", p.len());
            assert_eq!(got.finish_reason, Some(FinishReason::Length));
            let gp = GenerateParams {
                max_tokens: steps,
                temperature: 0.0,
                ignore_eos: true,
                logprobs: None,
                seed: 0,
                eos_token_ids: vec![],
                max_model_len: 512,
            };
            let solo = generate(&mut alone, p, &gp).unwrap();
            assert_eq!(&solo.outputs[0].token_ids, want, "{name} case {i}: alone vs transformers");
        }
    }
}

#[test]
fn aborted_and_finished_requests_leave_no_blocks_behind() {
    let mut e = engine("llama", 40, 32, true);
    let p = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(30) };
    for i in 0..6u32 {
        e.add_request(format!("r{i}"), (0..(20 + 17 * i)).map(|t| (t * 7 + i) % 500 + 3).collect::<Vec<u32>>(), p.clone()).unwrap();
    }
    for _ in 0..8 {
        e.step().unwrap();
    }
    assert!(e.stats().kv_cache_usage > 0.0);
    assert!(e.abort_request("r0") && e.abort_request("r5"));
    assert!(!e.abort_request("r0"), "already gone");
    let done = run_all(&mut e);
    assert_eq!(done.keys().cloned().collect::<Vec<_>>(), vec!["r1", "r2", "r3", "r4"]);
    assert_no_leaks(&e);
    // Abort everything mid-flight, including waiting requests.
    for i in 0..6u32 {
        e.add_request(format!("s{i}"), vec![5 + i; 40], p.clone()).unwrap();
    }
    e.step().unwrap();
    for i in 0..6u32 {
        e.abort_request(&format!("s{i}"));
    }
    assert!(!e.has_unfinished_requests());
    assert!(e.step().unwrap().is_empty());
    assert_no_leaks(&e);
}

fn sampled(p: SamplingParams, prompt: &[u32], crowd: bool) -> Vec<u32> {
    let mut e = engine("qwen2", 64, 24, true);
    if crowd {
        for i in 0..5u32 {
            let other = SamplingParams { seed: Some(1000 + i as u64), temperature: 0.5 + 0.2 * i as f32, ..p.clone() };
            e.add_request(format!("x{i}"), vec![9 + i; 10 + 20 * i as usize], other).unwrap();
        }
        e.add_request("greedy", vec![4; 33], SamplingParams::greedy(12)).unwrap();
    }
    e.add_request("me", prompt.to_vec(), p).unwrap();
    run_all(&mut e).remove("me").unwrap().outputs.remove(0).token_ids
}

#[test]
fn seeded_sampling_is_reproducible_alone_and_in_a_batch() {
    let prompt: Vec<u32> = (0..37).map(|t| (t * 13) % 500 + 3).collect();
    let p = SamplingParams { temperature: 1.0, top_k: 50, top_p: 0.95, seed: Some(42), ignore_eos: true, ..SamplingParams::greedy(16) };
    let alone = sampled(p.clone(), &prompt, false);
    assert_eq!(alone.len(), 16);
    assert_eq!(sampled(p.clone(), &prompt, true), alone, "same seed in a crowd");
    let other = sampled(SamplingParams { seed: Some(43), ..p.clone() }, &prompt, false);
    assert_ne!(other, alone, "different seeds differ");
    // Plain temperature sampling matches the sequential reference generator's stream.
    let t = SamplingParams { temperature: 0.8, top_p: 1.0, top_k: 0, ..p.clone() };
    let gp = GenerateParams { max_tokens: 16, temperature: 0.8, ignore_eos: true, logprobs: None, seed: 42, eos_token_ids: vec![], max_model_len: 512 };
    let reference = generate(&mut runner("qwen2", 64), &prompt, &gp).unwrap();
    assert_eq!(sampled(t, &prompt, true), reference.outputs[0].token_ids);
}

fn first_case(name: &str) -> (Vec<u32>, Vec<u32>) {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("reference.json")).unwrap()).unwrap();
    (ids(&r["cases"][1]["prompt_token_ids"]), ids(&r["cases"][1]["greedy_token_ids"]))
}

fn one(e: &mut Engine<CpuBackend>, prompt: &[u32], p: SamplingParams) -> RequestOutput {
    e.add_request("q", prompt.to_vec(), p).unwrap();
    let out = run_all(e).remove("q").unwrap();
    assert_no_leaks(e);
    out
}

#[test]
fn stop_tokens_eos_min_tokens_and_max_tokens() {
    let (prompt, greedy) = first_case("llama");
    let mut e = engine("llama", 64, 512, true);
    // A stop token id: kept in the output, stop_reason names it.
    let o = one(&mut e, &prompt, SamplingParams { stop_token_ids: vec![greedy[3]], ..SamplingParams::greedy(20) }).outputs.remove(0);
    let first = greedy.iter().position(|&t| t == greedy[3]).unwrap();
    assert_eq!(o.token_ids, greedy[..=first].to_vec());
    assert_eq!((o.finish_reason, o.stop_reason), (Some(FinishReason::Stop), Some(StopReason::Token(greedy[3]))));
    // The model's eos (here: the first greedy token) stops at once...
    let mut e = Engine::new(runner("llama", 64), EngineConfig::new(512), None, vec![greedy[0]]).unwrap();
    let o = one(&mut e, &prompt, SamplingParams::greedy(20)).outputs.remove(0);
    assert_eq!((o.token_ids.clone(), o.finish_reason, o.stop_reason), (vec![greedy[0]], Some(FinishReason::Stop), None));
    // ...unless ignore_eos,
    let o = one(&mut e, &prompt, SamplingParams { ignore_eos: true, ..SamplingParams::greedy(5) }).outputs.remove(0);
    assert_eq!((o.token_ids, o.finish_reason), (greedy[..5].to_vec(), Some(FinishReason::Length)));
    // ...and min_tokens suppresses it: the first token is then never eos.
    let o = one(&mut e, &prompt, SamplingParams { min_tokens: 3, ..SamplingParams::greedy(6) }).outputs.remove(0);
    assert!(o.token_ids.len() >= 3 && o.token_ids[..3].iter().all(|&t| t != greedy[0]), "{:?}", o.token_ids);
    assert_ne!(o.token_ids[0], greedy[0]);
    // max_tokens and max_model_len.
    let o = one(&mut e, &prompt, SamplingParams { ignore_eos: true, ..SamplingParams::greedy(1) }).outputs.remove(0);
    assert_eq!(o.token_ids.len(), 1);
    let mut short = Engine::new(runner("llama", 64), EngineConfig::new(prompt.len() + 3), None, vec![]).unwrap();
    let o = one(&mut short, &prompt, SamplingParams { max_tokens: None, ..SamplingParams::greedy(1) }).outputs.remove(0);
    assert_eq!((o.token_ids.len(), o.finish_reason), (3, Some(FinishReason::Length)));
    // Rejections are clear errors.
    let err = e.add_request("bad", vec![600], SamplingParams::greedy(1)).unwrap_err().to_string();
    assert!(err.contains("out of range for vocab_size 512"), "{err}");
    let err = e.add_request("bad", prompt.clone(), SamplingParams { stop: vec!["x".into()], ..SamplingParams::greedy(1) }).unwrap_err().to_string();
    assert!(err.contains("tokenizer"), "{err}");
    let err = e.add_request("bad", prompt.clone(), SamplingParams { top_p: 2.0, ..SamplingParams::greedy(1) }).unwrap_err().to_string();
    assert!(err.contains("top_p"), "{err}");
}

#[test]
fn n_completions_share_the_prompt_blocks_through_the_prefix_cache() {
    let prompt: Vec<u32> = (0..40).map(|t| (t * 11) % 500 + 3).collect(); // 2 full blocks + 8
    let p = SamplingParams { n: 3, temperature: 1.0, seed: Some(7), ignore_eos: true, ..SamplingParams::greedy(10) };
    let mut e = engine("gemma3", 64, 512, true);
    let out = one(&mut e, &prompt, p.clone());
    assert_eq!(out.outputs.iter().map(|o| o.index).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!(out.outputs.iter().all(|o| o.token_ids.len() == 10));
    let s = e.stats();
    assert_eq!(s.prefix_cache_hits_total, 64, "children 2 and 3 each reuse the 2 full prompt blocks");
    assert_eq!(s.prefix_cache_queries_total, 120);
    assert_eq!(s.prompt_tokens_total, 40 + 8 + 8, "only the partial block is recomputed");
    assert!(out.outputs[0].token_ids != out.outputs[1].token_ids || out.outputs[1].token_ids != out.outputs[2].token_ids);
    // Child i is the request with seed + i.
    let mut e2 = engine("gemma3", 64, 512, false);
    let single = one(&mut e2, &prompt, SamplingParams { n: 1, seed: Some(8), ..p });
    assert_eq!(single.outputs[0].token_ids, out.outputs[1].token_ids);
}

#[test]
fn logprobs_and_prompt_logprobs_survive_chunking() {
    let r: Value = serde_json::from_str(&std::fs::read_to_string(dir("llama").join("reference.json")).unwrap()).unwrap();
    let prompt = ids(&r["cases"][1]["prompt_token_ids"]);
    let last: Vec<f64> = r["cases"][1]["last_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let p = SamplingParams { logprobs: Some(3), prompt_logprobs: Some(2), ignore_eos: true, ..SamplingParams::greedy(4) };
    let whole = one(&mut engine("llama", 64, 512, true), &prompt, p.clone());
    let chunked = one(&mut engine("llama", 64, 7, true), &prompt, p);
    for out in [&whole, &chunked] {
        let o = &out.outputs[0];
        let lps = o.logprobs.as_ref().unwrap();
        assert_eq!(lps.len(), 4);
        for (lp, t) in lps.iter().zip(&o.token_ids) {
            assert_eq!(lp[0].0, *t, "greedy: the chosen token is the most likely");
            assert!(lp.len() == 3 && lp.iter().all(|x| x.1 <= 0.0));
        }
        let lse = {
            let m = last.iter().cloned().fold(f64::MIN, f64::max);
            m + last.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        };
        for (id, lp) in &lps[0] {
            assert!((*lp as f64 - (last[*id as usize] - lse)).abs() < 1e-3, "logprob of {id}");
        }
        let cum: f64 = lps.iter().map(|s| s[0].1 as f64).sum();
        assert!((o.cumulative_logprob.unwrap() - cum).abs() < 1e-9);
        let pl = out.prompt_logprobs.as_ref().unwrap();
        assert_eq!(pl.len(), prompt.len());
        assert!(pl[0].is_none());
        for (i, step) in pl.iter().enumerate().skip(1) {
            let step = step.as_ref().unwrap_or_else(|| panic!("prompt position {i} has logprobs"));
            assert!(step.iter().any(|(t, _)| *t == prompt[i]), "the actual prompt token is listed");
            assert!(step.len() == 2 || step.len() == 3);
        }
    }
    for (a, b) in whole.prompt_logprobs.unwrap().iter().zip(chunked.prompt_logprobs.unwrap().iter()).skip(1) {
        for (x, y) in a.as_ref().unwrap().iter().zip(b.as_ref().unwrap()) {
            assert_eq!(x.0, y.0);
            assert!((x.1 - y.1).abs() < 1e-4);
        }
    }
    assert_eq!(whole.outputs[0].token_ids, chunked.outputs[0].token_ids);
}
