//! `generateGreedy`: the whole core on the CPU backend in one call — a model from its
//! config.json text and safetensors bytes, greedy-decoded from token ids.

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::kv::blocks_for;
use tessera_core::models::load_model;
use tessera_core::weights::{FileBytes, SafetensorsWeights};
use wasm_bindgen::prelude::*;

/// Greedy continuation of `prompt` (token ids) by the model in `config_json` +
/// `safetensors` (one file), `max_tokens` long.
#[wasm_bindgen(js_name = generateGreedy)]
pub fn generate_greedy(config_json: &str, safetensors: Vec<u8>, prompt: Vec<u32>, max_tokens: usize) -> Result<Vec<u32>, JsError> {
    Ok(run(config_json, safetensors, &prompt, max_tokens)?)
}

fn run(config_json: &str, safetensors: Vec<u8>, prompt: &[u32], max_tokens: usize) -> tessera_core::Result<Vec<u32>> {
    let config = ModelConfig::from_json_str(config_json)?;
    let weights = SafetensorsWeights::from_files(vec![("model.safetensors".into(), FileBytes::Owned(safetensors))])?;
    let backend = CpuBackend::new();
    let model = load_model(&backend, &config, &weights)?;
    let max_model_len = prompt.len() + max_tokens;
    let mut runner = ModelRunner::new(backend, model, blocks_for(max_model_len, 16) + 1, 16)?;
    let params = GenerateParams {
        max_tokens,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: None,
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: max_model_len + 1,
    };
    Ok(generate(&mut runner, prompt, &params)?.outputs.remove(0).token_ids)
}

#[cfg(test)]
mod tests {
    /// The same entry point, natively, on the llama fixture.
    #[test]
    fn greedy_matches_the_transformers_fixture() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/llama");
        let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
        let weights = std::fs::read(dir.join("model.safetensors")).unwrap();
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap();
        let case = &r["cases"][0];
        let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let got = super::run(&config, weights, &ids(&case["prompt_token_ids"]), 20).unwrap();
        assert_eq!(got, ids(&case["greedy_token_ids"]));
    }
}
