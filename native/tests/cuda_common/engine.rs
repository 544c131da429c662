//! Engine-level helpers of the CUDA test files: the fixture models folder, and a batch of
//! greedy requests run to completion on a fresh CUDA backend (graphs on or off).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tessera::cuda::CudaBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{Engine, EngineConfig, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::sample::SamplingParams;
use tessera_core::tensor::DType;
use tessera_core::weights::SafetensorsWeights;

/// The fixture model `name`: under `TESSERA_FIXTURES` (the GPU bundle's copy), else the repo's.
pub fn fixture_dir(name: &str) -> PathBuf {
    std::env::var_os("TESSERA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models"))
        .join(name)
}

/// A JSON array of token ids.
pub fn json_ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

pub fn cuda_backend(dtype: DType) -> CudaBackend {
    CudaBackend::new(0, dtype).unwrap_or_else(|e| panic!("the CUDA backend is not available here ({e}); run on the GPU machine"))
}

/// Greedy tokens of `prompts` run together (request i asks for `lens[i]` tokens), the
/// runner's (graphs recorded, replays), and what `after` reads off the backend at the end;
/// `setup` configures the backend before the model loads. `async_scheduling`: the engine's
/// pipelined steps (it asserts most steps were).
#[allow(clippy::too_many_arguments)]
pub fn run_batch<R>(
    name: &str,
    dtype: DType,
    graphs: bool,
    async_scheduling: bool,
    prompts: &[Vec<u32>],
    lens: &[usize],
    setup: impl FnOnce(&CudaBackend),
    after: impl FnOnce(&CudaBackend) -> R,
) -> (Vec<Vec<u32>>, (u64, u64), R) {
    let d = fixture_dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = cuda_backend(dtype);
    setup(&b);
    let model = load_model(&b, &config, &weights).unwrap();
    let mut runner = ModelRunner::new(b, model, 256, 16).unwrap();
    let ec = EngineConfig { max_num_batched_tokens: 2048, max_num_seqs: 64, enable_prefix_caching: false, async_scheduling, ..EngineConfig::new(512) };
    if graphs {
        assert!(runner.enable_decode_graphs(ec.max_num_seqs, 512), "the CUDA backend refused graphs");
    }
    let mut e = Engine::new(runner, ec, None, vec![2]).unwrap();
    for (i, (p, &n)) in prompts.iter().zip(lens).enumerate() {
        let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(n) };
        e.add_request(i.to_string(), p.clone(), params).unwrap();
    }
    let mut done = BTreeMap::new();
    while e.has_unfinished_requests() {
        for o in e.step().unwrap() {
            if o.finished {
                done.insert(o.request_id.parse::<usize>().unwrap(), o.outputs[0].token_ids.clone());
            }
        }
    }
    assert_eq!(done.len(), prompts.len());
    let s = e.stats();
    if async_scheduling {
        assert!(s.num_pipelined_steps_total * 10 >= s.num_steps_total * 8, "{name}: {} of {} steps pipelined", s.num_pipelined_steps_total, s.num_steps_total);
    }
    let extra = after(&e.runner.backend);
    (done.into_values().collect(), e.runner.graph_stats(), extra)
}
