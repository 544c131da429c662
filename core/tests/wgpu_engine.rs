//! The engine on the wgpu backend with device sampling: seeded temperature / top-k / top-p /
//! min-p requests (and a greedy one) batched together on the tiny llama fixture give the same
//! tokens as on the CPU backend; every engine step is exactly one submission (forward, sample
//! and the ids' read-back in one command encoder); a seeded request alone and inside the
//! batch gives the same tokens. Async scheduling (the next step launched before this one's
//! ids are read back, fed on the device) gives the CPU's greedy tokens, still one submission
//! a step.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::Backend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::tensor::DType;
use tessera_core::weights::SafetensorsWeights;

fn engine<B: Backend>(b: B) -> Engine<B> {
    engine_with(b, EngineConfig::new(256))
}

fn engine_with<B: Backend>(b: B, ec: EngineConfig) -> Engine<B> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/llama");
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let model = load_model(&b, &config, &weights).unwrap();
    let runner = ModelRunner::new(b, model, 64, 16).unwrap();
    Engine::new(runner, ec, None, vec![]).unwrap()
}

fn requests() -> Vec<(&'static str, Vec<u32>, SamplingParams)> {
    let base = SamplingParams { ignore_eos: true, max_tokens: Some(12), ..Default::default() };
    vec![
        ("topk_topp", vec![5, 17, 99, 3, 42], SamplingParams { temperature: 0.8, top_k: 20, top_p: 0.9, seed: Some(1), ..base.clone() }),
        ("min_p", vec![7, 7, 300, 12], SamplingParams { temperature: 1.0, min_p: 0.05, seed: Some(2), ..base.clone() }),
        ("greedy", vec![1, 2, 3, 4, 5, 6, 7, 8, 9], SamplingParams { temperature: 0.0, ..base.clone() }),
        ("hot_topp", vec![400, 11], SamplingParams { temperature: 1.5, top_p: 0.7, seed: Some(3), ..base.clone() }),
    ]
}

/// Runs `reqs` to completion; `after_step` sees the engine after every step.
fn run<B: Backend>(
    e: &mut Engine<B>,
    reqs: &[(&'static str, Vec<u32>, SamplingParams)],
    mut after_step: impl FnMut(&Engine<B>),
) -> BTreeMap<String, Vec<u32>> {
    for (id, prompt, params) in reqs {
        e.add_request(*id, prompt.clone(), params.clone()).unwrap();
    }
    let mut out = BTreeMap::new();
    while e.has_unfinished_requests() {
        for o in e.step().unwrap() {
            if o.finished {
                out.insert(o.request_id.clone(), o.outputs[0].token_ids.clone());
            }
        }
        after_step(e);
    }
    out
}

#[test]
fn device_sampling_in_the_engine_matches_cpu_one_submission_per_step() {
    let reqs = requests();
    let want = run(&mut engine(CpuBackend::new()), &reqs, |_| {});
    let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), ..Default::default() })
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"));
    let mut e = engine(be);
    let mut last = e.runner.backend.submissions();
    let mut steps = 0;
    let got = run(&mut e, &reqs, |e| {
        let now = e.runner.backend.submissions();
        assert_eq!(now - last, 1, "step {steps}: {} submissions", now - last);
        last = now;
        steps += 1;
    });
    assert!(steps >= 12);
    assert_eq!(got.len(), reqs.len());
    for (id, tokens) in &want {
        assert_eq!(tokens.len(), 12);
        assert_eq!(&got[id], tokens, "{id}: wgpu tokens differ from the CPU's");
    }
    // The sampled requests really sample (not all equal to the greedy continuation of their prompts).
    let greedy: Vec<_> = reqs.iter().map(|(id, p, s)| (*id, p.clone(), SamplingParams { temperature: 0.0, ..s.clone() })).collect();
    let argmax = run(&mut e, &greedy, |_| {});
    assert!(want.iter().filter(|(id, t)| argmax[*id] != **t).count() >= 2);

    // Seeded: the first request alone gives the tokens it got inside the batch.
    let alone = run(&mut e, &reqs[..1], |_| {});
    assert_eq!(alone[reqs[0].0], got[reqs[0].0]);
}

#[test]
fn decode_graphs_replay_the_same_tokens_in_one_submission_per_step() {
    let reqs = requests();
    let want = run(&mut engine(CpuBackend::new()), &reqs, |_| {});
    let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), ..Default::default() })
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"));
    let mut e = engine(be);
    assert!(e.runner.enable_decode_graphs(8, 256), "the wgpu backend refused graphs");
    let mut last = e.runner.backend.submissions();
    let got = run(&mut e, &reqs, |e| {
        let now = e.runner.backend.submissions();
        assert_eq!(now - last, 1, "{} submissions in one step", now - last);
        last = now;
    });
    let (captures, replays) = e.runner.graph_stats();
    assert!(captures >= 1, "no graph recorded");
    assert!(replays >= 8, "only {replays} replays");
    for (id, tokens) in &want {
        assert_eq!(&got[id], tokens, "{id}: tokens through graphs differ from the CPU's");
    }
    // Fewer sequences than the bucket (padded rows) and a second bucket: still the CPU's tokens.
    let alone = run(&mut e, &reqs[2..3], |_| {});
    assert_eq!(alone[reqs[2].0], want[reqs[2].0]);
    let (captures2, replays2) = e.runner.graph_stats();
    assert!(captures2 > captures && replays2 > replays);
}

#[test]
fn async_scheduling_gives_the_cpu_tokens_one_submission_per_step() {
    // Seeded sampled requests and a greedy one, and the same all greedy.
    let greedy: Vec<_> = requests().into_iter().map(|(id, p, s)| (id, p, SamplingParams { temperature: 0.0, ..s })).collect();
    for reqs in [requests(), greedy] {
        async_case(&reqs);
    }
}

fn async_case(reqs: &[(&'static str, Vec<u32>, SamplingParams)]) {
    let want = run(&mut engine(CpuBackend::new()), reqs, |_| {});
    for graphs in [false, true] {
        let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), ..Default::default() })
            .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"));
        let mut e = engine_with(be, EngineConfig { async_scheduling: true, ..EngineConfig::new(256) });
        if graphs {
            assert!(e.runner.enable_decode_graphs(8, 256), "the wgpu backend refused graphs");
        }
        let (mut last, mut steps) = (e.runner.backend.submissions(), 0);
        let got = run(&mut e, reqs, |e| {
            // The first step submits two steps (this one and the next, launched behind it).
            let now = e.runner.backend.submissions();
            assert!(now - last <= if steps == 0 { 2 } else { 1 }, "step {steps}: {} submissions", now - last);
            (last, steps) = (now, steps + 1);
        });
        let s = e.stats();
        assert!(s.num_pipelined_steps_total * 10 >= s.num_steps_total * 8, "{} of {} steps pipelined", s.num_pipelined_steps_total, s.num_steps_total);
        assert_eq!(got, want, "graphs {graphs}: async wgpu tokens differ from the CPU's");
    }
}

/// The decode attention's L2 prefetch of the weights the layer reads next (`prefetch`, on by
/// default on real GPUs, forced here on the software adapter): it is taken at every decode
/// layer, eagerly and through graph replays, and the tokens stay the CPU's.
#[test]
fn prefetching_attention_gives_the_cpu_tokens() {
    let reqs = requests();
    let want = run(&mut engine(CpuBackend::new()), &reqs, |_| {});
    for graphs in [false, true] {
        let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), prefetch: Some(true), ..Default::default() })
            .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"));
        let mut e = engine(be);
        if graphs {
            assert!(e.runner.enable_decode_graphs(8, 256), "the wgpu backend refused graphs");
        }
        let got = run(&mut e, &reqs, |_| {});
        assert_eq!(got, want, "graphs {graphs}: tokens with the prefetch differ from the CPU's");
        // Eagerly every decode step's 2 layers record it; a graph records it once (replays
        // re-encode the captured dispatches).
        let taken = e.runner.backend.prefetch_dispatches();
        let least = if graphs { 2 } else { 2 * 10 };
        assert!(taken >= least, "graphs {graphs}: only {taken} attention dispatches took the prefetch");
    }
    let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), prefetch: Some(false), ..Default::default() }).unwrap();
    let mut e = engine(be);
    run(&mut e, &reqs[..1], |_| {});
    assert_eq!(e.runner.backend.prefetch_dispatches(), 0);
}
