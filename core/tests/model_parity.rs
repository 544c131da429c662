//! Model parity with HF transformers: tiny random-weight models of every supported family
//! (tests/fixtures/models, made by tests/fixtures/make_models.py) must give the same greedy
//! tokens and last-position logits within 1e-4 of the logit range, alone and batched.

use std::path::PathBuf;

use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::Backend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::kv::{blocks_for, BlockPool};
use tessera_core::models::{load_model, BatchInput};
use tessera_core::weights::SafetensorsWeights;

const MODELS: &[&str] = &["llama", "llama_tied_f16", "mistral", "qwen2", "qwen3", "smollm3", "gemma3", "phi3"];
const BLOCK: usize = 16;

fn dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

struct Case {
    name: String,
    prompt: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
}

fn cases(name: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(dir(name).join("reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            prompt: ids(&c["prompt_token_ids"]),
            logits: c["last_logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            greedy: ids(&c["greedy_token_ids"]),
        })
        .collect()
}

fn runner(name: &str) -> ModelRunner<CpuBackend> {
    let d = dir(name);
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
    let weights = SafetensorsWeights::from_dir(&d).unwrap();
    let b = CpuBackend::new();
    let model = load_model(&b, &config, &weights).unwrap();
    ModelRunner::new(b, model, 64, BLOCK).unwrap()
}

/// max |a - b| / (max(b) - min(b)).
fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let range = want.iter().cloned().fold(f32::MIN, f32::max) - want.iter().cloned().fold(f32::MAX, f32::min);
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / range
}

/// Prefill several prompts in ONE batch (distinct, non-contiguous blocks) and return each
/// prompt's last-position logits.
fn batched_last_logits(r: &mut ModelRunner<CpuBackend>, prompts: &[&[u32]]) -> Vec<Vec<f32>> {
    let mut pool = BlockPool::new(r.num_blocks(), false).unwrap();
    let mut input = BatchInput { query_start_loc: vec![0], ..Default::default() };
    let mut tables = Vec::new();
    for p in prompts {
        // Interleave allocations so block tables are not contiguous.
        let table: Vec<u32> = pool.get_new_blocks(blocks_for(p.len(), BLOCK)).unwrap();
        let _spacer = pool.get_new_blocks(1).unwrap();
        for (pos, &t) in p.iter().enumerate() {
            input.input_ids.push(t);
            input.positions.push(pos as u32);
            input.slot_mapping.push(table[pos / BLOCK] * BLOCK as u32 + (pos % BLOCK) as u32);
        }
        input.query_start_loc.push(input.input_ids.len() as u32);
        input.seq_lens.push(p.len() as u32);
        input.logits_indices.push(input.input_ids.len() as u32 - 1);
        input.block_tables.push(table.clone());
        tables.push(table);
    }
    let logits = r.execute(&input).unwrap();
    let host = pollster::block_on(r.backend.to_host(&logits)).unwrap().to_f32();
    let vocab = host.len() / prompts.len();
    host.chunks(vocab).map(|c| c.to_vec()).collect()
}

#[test]
fn last_logits_match_transformers_alone_and_batched() {
    for name in MODELS {
        let cases = cases(name);
        let mut r = runner(name);
        for c in &cases {
            let got = &batched_last_logits(&mut r, &[&c.prompt])[0];
            let err = rel_err(got, &c.logits);
            assert!(err < 1e-4, "{name}/{}: last logits differ from HF by {err:e} of the range", c.name);
        }
        // All prompts of the model in one mixed batch give the same logits.
        let prompts: Vec<&[u32]> = cases.iter().map(|c| c.prompt.as_slice()).collect();
        let all = batched_last_logits(&mut r, &prompts);
        for (c, got) in cases.iter().zip(&all) {
            let err = rel_err(got, &c.logits);
            assert!(err < 1e-4, "{name}/{} (batched): last logits differ from HF by {err:e}", c.name);
        }
    }
}

#[test]
fn greedy_tokens_match_transformers() {
    for name in MODELS {
        let mut r = runner(name);
        for c in cases(name) {
            let p = GenerateParams {
                max_tokens: c.greedy.len(),
                temperature: 0.0,
                ignore_eos: true,
                logprobs: None,
                seed: 0,
                eos_token_ids: vec![],
                max_model_len: 512,
            };
            let out = generate(&mut r, &c.prompt, &p).unwrap();
            assert_eq!(out.outputs[0].token_ids, c.greedy, "{name}/{}: greedy tokens differ from HF", c.name);
        }
    }
}

#[test]
fn logprobs_are_log_softmax_of_the_logits_and_include_the_chosen_token() {
    let c = &cases("llama")[0];
    let mut r = runner("llama");
    let p = GenerateParams {
        max_tokens: 1,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: Some(3),
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: 512,
    };
    let out = generate(&mut r, &c.prompt, &p).unwrap();
    let step = &out.outputs[0].logprobs.as_ref().unwrap()[0];
    assert_eq!(step.len(), 3);
    assert_eq!(step[0].0, c.greedy[0], "top logprob is the greedy token");
    let lse = {
        let m = c.logits.iter().cloned().fold(f32::MIN, f32::max) as f64;
        m + c.logits.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln()
    };
    for (id, lp) in step {
        let want = c.logits[*id as usize] as f64 - lse;
        assert!((*lp as f64 - want).abs() < 1e-3, "logprob of {id}: {lp} vs {want}");
    }
}
