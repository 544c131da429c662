//! The real SmolLM2-135M-Instruct Q4_1 GGUF through the *quantized* CPU path (blocks kept,
//! Q8 activations, integer dots — what `tessera` runs by default) against the same model
//! dequantized to f32 on load and against transformers' greedy tokens
//! (tests/fixtures/gguf/smollm2/reference.json):
//!   * last-position logits of every fixture prompt within 3% of the logit range of the
//!     f32 path, with the same top token;
//!   * greedy tokens equal to transformers' up to the first step whose transformers top-1 /
//!     top-2 margin is small (< 0.5 logit), where Q8 rounding may legitimately flip a tie.

mod gguf_common;

use gguf_common::{fixture, smollm2_path};
use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::Backend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::ModelRunner;
use tessera_core::models::{load_model, BatchInput};
use tessera_core::weights::{GgufWeights, WeightSource};

const BLOCK: usize = 16;

struct Case {
    name: String,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    margins: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture("gguf/smollm2/reference.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            prompt: ids(&c["prompt_token_ids"]),
            greedy: ids(&c["greedy_token_ids"]),
            margins: c["greedy_margins"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
        })
        .collect()
}

fn runner(dequantize: bool) -> ModelRunner<CpuBackend> {
    let mut w = GgufWeights::open(&smollm2_path()).unwrap();
    w.set_dequantize_on_load(dequantize);
    let config = ModelConfig::from_map(&w.hf_config().unwrap()).unwrap();
    let b = CpuBackend::with_threads(2).unwrap();
    let model = load_model(&b, &config, &w as &dyn WeightSource).unwrap();
    ModelRunner::new(b, model, 2048 / BLOCK + 1, BLOCK).unwrap()
}

/// Logits of the last position of `tokens`, running `tokens[start..]` as one step (the
/// earlier ones are in the KV cache, in blocks 1, 2, ...).
fn logits(r: &mut ModelRunner<CpuBackend>, tokens: &[u32], start: usize) -> Vec<f32> {
    let (s, n) = (start as u32, tokens.len() as u32);
    let table: Vec<u32> = (1..=tokens.len().div_ceil(BLOCK) as u32).collect();
    let input = BatchInput {
        input_ids: tokens[start..].to_vec(),
        positions: (s..n).collect(),
        slot_mapping: (s..n).map(|p| table[(p / BLOCK as u32) as usize] * BLOCK as u32 + p % BLOCK as u32).collect(),
        query_start_loc: vec![0, n - s],
        seq_lens: vec![n],
        block_tables: vec![table],
        logits_indices: vec![n - s - 1],
    };
    let t = r.execute(&input).unwrap();
    pollster::block_on(r.backend.to_host(&t)).unwrap().to_f32()
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b }) as u32
}

#[test]
fn quantized_path_tracks_f32_and_transformers() {
    let mut quant = runner(false);
    let mut f32_path = runner(true);
    for c in cases() {
        let q = logits(&mut quant, &c.prompt, 0);
        let f = logits(&mut f32_path, &c.prompt, 0);
        let range = f.iter().cloned().fold(f32::MIN, f32::max) - f.iter().cloned().fold(f32::MAX, f32::min);
        let err = q.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / range;
        println!("{}: quantized vs f32 logits: max |Δ| = {:.3} of the range", c.name, err);
        assert!(err < 0.03, "{}: quantized logits differ from f32 by {err} of the range", c.name);
        assert_eq!(argmax(&q), argmax(&f), "{}: top token", c.name);

        // Greedy decoding: the prompt's logits above, then one token per step.
        let mut tokens = c.prompt.clone();
        let mut next = argmax(&q);
        for (step, (&want, &margin)) in c.greedy.iter().zip(&c.margins).enumerate() {
            let got = next;
            if got != want {
                println!("{}: diverges at step {step} (transformers margin {margin:.3})", c.name);
                assert!(margin < 0.5, "{}: step {step}: {got} vs transformers' {want} with margin {margin}", c.name);
                break;
            }
            tokens.push(got);
            next = argmax(&logits(&mut quant, &tokens, tokens.len() - 1));
            if step + 1 == c.greedy.len() {
                println!("{}: all {} greedy tokens equal transformers'", c.name, c.greedy.len());
            }
        }
    }
}
