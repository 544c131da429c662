//! The real SmolLM2-135M-Instruct Q4_1 GGUF on the wgpu backend with its weights kept
//! quantized in GPU memory (Q4_1 matrices, Q8_0 embedding / tied lm_head, dequantized inside
//! `qmatmul.wgsl` / `qembedding.wgsl`), against the CPU backend on the same file dequantized
//! to f32 on load: the same greedy tokens for two chat prompts of the transformers fixture
//! (tests/fixtures/gguf/smollm2/reference.json).
//!
//! The reference is the dequantize-then-f32 CPU path, not the CPU's default quantized path:
//! the shaders decode exactly the f32 values `quant::dequantize` gives and accumulate in f32,
//! so only summation order differs; the CPU quantized path rounds activations to Q8 and may
//! flip near-ties. Runs on f32 activations (lavapipe in CI; fails, never skips, without an
//! adapter or the model file — scripts/fetch-default-model.sh fetches it).

mod gguf_common;

use gguf_common::{fixture, smollm2_path};
use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{Backend, Op};
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::tensor::DType;
use tessera_core::weights::{GgufWeights, WeightSource};

const BLOCK: usize = 16;
const TOKENS: usize = 16;

fn prompts() -> Vec<(String, Vec<u32>)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(fixture("gguf/smollm2/reference.json")).unwrap()).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| matches!(c["name"].as_str(), Some("chat_greeting" | "chat_system")))
        .map(|c| {
            let ids = c["prompt_token_ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
            (c["name"].as_str().unwrap().to_string(), ids)
        })
        .collect()
}

fn greedy<B: Backend>(r: &mut ModelRunner<B>, prompt: &[u32]) -> Vec<u32> {
    let p = GenerateParams {
        max_tokens: TOKENS,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: None,
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: 512,
    };
    generate(r, prompt, &p).unwrap().outputs[0].token_ids.clone()
}

#[test]
fn smollm2_q4_1_greedy_tokens_on_wgpu_equal_cpu_f32() {
    let path = smollm2_path();
    let prompts = prompts();
    assert_eq!(prompts.len(), 2);

    let mut w = GgufWeights::open(&path).unwrap();
    let config = ModelConfig::from_map(&w.hf_config().unwrap()).unwrap();
    w.set_dequantize_on_load(true);
    let cpu = CpuBackend::with_threads(2).unwrap();
    let model = load_model(&cpu, &config, &w as &dyn WeightSource).unwrap();
    let mut cpu_runner = ModelRunner::new(cpu, model, 512 / BLOCK + 1, BLOCK).unwrap();

    let mut w = GgufWeights::open(&path).unwrap();
    w.set_dequantize_on_load(false);
    let be = WgpuBackend::new_blocking(WgpuOptions { dtype: Some(DType::F32), ..Default::default() })
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"));
    assert!(be.supports(Op::Matmul, DType::Q4_1) && be.supports(Op::Embedding, DType::Q8_0));
    let model = load_model(&be, &config, &w as &dyn WeightSource).unwrap();
    // Q4_1 / Q8_0 blocks are ~100 MB; dequantized to f32 the weights would take ~540 MB.
    let weight_bytes = be.bytes_allocated();
    eprintln!("wgpu weights: {:.1} MB on {:?}", weight_bytes as f64 / 1e6, be.adapter_info().name);
    assert!(weight_bytes < 140_000_000, "weights take {weight_bytes} bytes: not kept quantized");
    let mut gpu_runner = ModelRunner::new(be, model, 512 / BLOCK + 1, BLOCK).unwrap();

    for (name, prompt) in &prompts {
        let want = greedy(&mut cpu_runner, prompt);
        let got = greedy(&mut gpu_runner, prompt);
        eprintln!("{name}: cpu {want:?}\n{name}: gpu {got:?}");
        assert_eq!(got, want, "{name}: wgpu Q4_1 greedy tokens differ from the CPU f32 path");
    }
}
