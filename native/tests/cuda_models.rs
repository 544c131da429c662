//! CUDA model parity with HF transformers: every tiny fixture model (tests/fixtures/models,
//! with reference.json from HF) runs greedy decoding on the GPU through the real model code.
//! f32: the same greedy tokens as HF and last-position logits within 1e-4 of the logit
//! range (asserted). bf16 / f16 are measured against the same f32 reference (2e-2 of the
//! range and the same first token, else WARN) and their logits dumped with
//! `TESSERA_LOGITS_DUMP=DIR` for scripts/hf_parity.py, which holds them to HF in the same
//! dtype on the same card (the contract).
//! Prints one `MODEL <name> <dtype> <case> ...` line per case for scripts/gpu-suite.sh.
//! `full_size_smollm3_matches_transformers` does the same for a SmolLM3-3B-config model with
//! random weights that scripts/hf_big_model.py writes on the GPU machine (`TESSERA_BIG_MODEL`).
//!
//! `TESSERA_FIXTURES` points at the models folder (the GPU bundle carries a copy); without a
//! GPU it fails (CI only builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use std::path::PathBuf;

use serde_json::Value;
use tessera::cuda::CudaBackend;
use tessera_core::backend::Backend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::ModelRunner;
use tessera_core::models::{load_model, BatchInput};
use tessera_core::tensor::DType;
use tessera_core::tensor::HostTensor;
use tessera_core::weights::{SafetensorsWeights, WeightSource};

const MODELS: &[&str] = &["llama", "llama_tied_f16", "mistral", "qwen2", "qwen3", "smollm3", "gemma3", "phi3"];
const BLOCK: usize = 16;

fn models_dir() -> PathBuf {
    std::env::var_os("TESSERA_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models"))
}

struct Case {
    name: String,
    prompt: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
}

fn cases(name: &str) -> Vec<Case> {
    cases_at(&models_dir().join(name))
}

fn cases_at(dir: &std::path::Path) -> Vec<Case> {
    let path = dir.join("reference.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("reference.json");
    let ids = |v: &Value| v.as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect::<Vec<_>>();
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap_or("?").to_string(),
            prompt: ids(&c["prompt_token_ids"]),
            logits: c["last_logits"].as_array().expect("logits").iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32).collect(),
            greedy: ids(&c["greedy_token_ids"]),
        })
        .collect()
}

/// The weights rounded to bf16 and widened back: run in f32 they show the logit error that
/// bf16 weights alone cause, the floor under any bf16 engine's error on these fixtures.
struct Bf16Weights(SafetensorsWeights);

fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let b = x.to_bits();
    f32::from_bits(b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
}

impl WeightSource for Bf16Weights {
    fn get(&self, name: &str, shape: &[usize]) -> tessera_core::weights::Result<HostTensor<'_>> {
        let t = self.0.get(name, shape)?;
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Ok(t);
        }
        let v: Vec<f32> = t.to_f32().into_iter().map(round_bf16).collect();
        Ok(HostTensor::from_f32(&v, &t.shape))
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn describe(&self) -> String {
        format!("{} rounded to bf16", self.0.describe())
    }
}

fn runner(name: &str, dtype: DType, num_blocks: usize, bf16_weights: bool) -> Result<ModelRunner<CudaBackend>, String> {
    runner_at(&models_dir().join(name), dtype, num_blocks, bf16_weights)
}

fn runner_at(d: &std::path::Path, dtype: DType, num_blocks: usize, bf16_weights: bool) -> Result<ModelRunner<CudaBackend>, String> {
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let st = SafetensorsWeights::from_dir(d).map_err(|e| e.to_string())?;
    let weights: Box<dyn WeightSource> = if bf16_weights { Box::new(Bf16Weights(st)) } else { Box::new(st) };
    let b = CudaBackend::new(0, dtype).map_err(|e| e.to_string())?;
    let model = load_model(&b, &config, weights.as_ref()).map_err(|e| e.to_string())?;
    ModelRunner::new(b, model, num_blocks, BLOCK).map_err(|e| e.to_string())
}

/// Greedy decoding of `steps` tokens, one sequence, blocks in reverse order (non-contiguous
/// physical layout). Returns the tokens and the logits of the prompt's last position.
fn greedy(r: &mut ModelRunner<CudaBackend>, prompt: &[u32], steps: usize) -> Result<(Vec<u32>, Vec<f32>), String> {
    let total = prompt.len() + steps;
    let table: Vec<u32> = (1..=total.div_ceil(BLOCK) as u32).rev().collect();
    let mut tokens = prompt.to_vec();
    let (mut out, mut first_logits, mut computed) = (Vec::new(), Vec::new(), 0usize);
    while out.len() < steps {
        let new = &tokens[computed..];
        let positions: Vec<u32> = (computed..tokens.len()).map(|p| p as u32).collect();
        let input = BatchInput {
            input_ids: new.to_vec(),
            slot_mapping: positions.iter().map(|&p| table[p as usize / BLOCK] * BLOCK as u32 + p % BLOCK as u32).collect(),
            positions,
            query_start_loc: vec![0, new.len() as u32],
            seq_lens: vec![tokens.len() as u32],
            block_tables: vec![table.clone()],
            logits_indices: vec![new.len() as u32 - 1],
        };
        let logits = r.execute(&input).map_err(|e| e.to_string())?;
        if first_logits.is_empty() {
            first_logits = pollster::block_on(r.backend.to_host(&logits)).map_err(|e| e.to_string())?.to_f32();
        }
        let id = pollster::block_on(r.backend.to_host(&r.backend.argmax(&logits).map_err(|e| e.to_string())?))
            .map_err(|e| e.to_string())?
            .to_u32()[0];
        out.push(id);
        computed = tokens.len();
        tokens.push(id);
    }
    Ok((out, first_logits))
}

/// max |a - b| / (max(b) - min(b)).
fn range_err(got: &[f32], want: &[f32]) -> f32 {
    if got.len() != want.len() {
        return f32::INFINITY;
    }
    let range = want.iter().cloned().fold(f32::MIN, f32::max) - want.iter().cloned().fold(f32::MAX, f32::min);
    let e = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / range;
    if got.iter().any(|x| x.is_nan()) {
        f32::INFINITY
    } else {
        e
    }
}

#[test]
fn tiny_models_match_transformers() {
    if let Err(e) = CudaBackend::new(0, DType::F32) {
        panic!("tiny_models_match_transformers: the CUDA backend is not available here ({e}); run on the GPU machine");
    }
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        for name in MODELS {
            let cases = cases(name);
            let longest = cases.iter().map(|c| c.prompt.len() + c.greedy.len()).max().unwrap_or(1);
            // bf16: also the floor, f32 compute on bf16-rounded weights.
            let floors: Vec<f32> = match (dtype, runner(name, DType::F32, longest.div_ceil(BLOCK) + 2, true)) {
                (DType::BF16, Ok(mut fr)) => cases
                    .iter()
                    .map(|c| greedy(&mut fr, &c.prompt, 1).map_or(f32::NAN, |(_, l)| range_err(&l, &c.logits)))
                    .collect(),
                _ => vec![f32::NAN; cases.len()],
            };
            let mut r = match runner(name, dtype, longest.div_ceil(BLOCK) + 2, false) {
                Ok(r) => r,
                Err(e) => {
                    println!("MODEL {name} {} load error {e} FAIL", dtype.hf_name());
                    failures.push(format!("{name} {dtype}: {e}"));
                    continue;
                }
            };
            for (c, floor) in cases.iter().zip(&floors) {
                let (tokens, logits) = match greedy(&mut r, &c.prompt, c.greedy.len()) {
                    Ok(x) => x,
                    Err(e) => {
                        println!("MODEL {name} {} [{}] error {e} FAIL", dtype.hf_name(), c.name);
                        failures.push(format!("{name}/{} {dtype}: {e}", c.name));
                        continue;
                    }
                };
                if let Some(dir) = std::env::var_os("TESSERA_LOGITS_DUMP") {
                    // For scripts/hf_parity.py: compare with HF in the same dtype on the same card.
                    let path = PathBuf::from(dir).join(format!("{name}-{}-{}.json", dtype.hf_name(), c.name));
                    let _ = std::fs::create_dir_all(path.parent().unwrap_or(&PathBuf::from(".")));
                    let body = serde_json::json!({"tokens": tokens, "last_logits": logits});
                    if let Err(e) = std::fs::write(&path, body.to_string()) {
                        println!("could not write {}: {e}", path.display());
                    }
                }
                let same = tokens.iter().zip(&c.greedy).take_while(|(a, b)| a == b).count();
                let err = range_err(&logits, &c.logits);
                let ok = if dtype == DType::F32 {
                    same == c.greedy.len() && err < 1e-4
                } else {
                    same >= 1 && err < 2e-2
                };
                println!(
                    "MODEL {name} {} [{}] tokens={same}/{} logits_err={err:.2e} bf16_weight_floor={floor:.2e} {}",
                    dtype.hf_name(),
                    c.name,
                    c.greedy.len(),
                    match (ok, dtype) {
                        (true, _) => "ok",
                        (false, DType::F16 | DType::BF16) => "WARN",
                        _ => "FAIL",
                    }
                );
                // Only f32 is held to the f32 reference; bf16/f16 are compared with HF in the
                // same dtype by scripts/hf_parity.py (the contract), here only reported.
                if !ok && dtype == DType::F32 {
                    failures.push(format!("{name}/{} {dtype}: {same}/{} tokens, logits err {err:e}", c.name, c.greedy.len()));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} model case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// The full-size SmolLM3-3B-config model with random weights that scripts/hf_big_model.py
/// writes on the GPU machine (`TESSERA_BIG_MODEL=DIR`: bf16 safetensors + reference.json from
/// HF in f32). f32: the same 8 greedy tokens and logits within 1e-3 of the range. bf16: HF
/// bf16's first greedy token and logits within max(2e-2, 1.5 x HF bf16's own distance) of
/// the f32 reference (both as max |diff| / logit range).
#[test]
fn full_size_smollm3_matches_transformers() {
    let dir = PathBuf::from(std::env::var_os("TESSERA_BIG_MODEL").expect(
        "TESSERA_BIG_MODEL=DIR (written by scripts/hf_big_model.py on the GPU machine; scripts/gpu-suite.sh sets it)",
    ));
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let raw: Value = serde_json::from_str(&text).expect("reference.json");
    let cases = cases_at(&dir);
    let longest = cases.iter().map(|c| c.prompt.len() + c.greedy.len()).max().unwrap_or(1);
    let mut failures = Vec::new();
    for dtype in [DType::F32, DType::BF16] {
        let t0 = std::time::Instant::now();
        let mut r = runner_at(&dir, dtype, longest.div_ceil(BLOCK) + 2, false).unwrap_or_else(|e| panic!("{dtype}: {e}"));
        println!("BIG load {dtype} {:.1}s", t0.elapsed().as_secs_f64());
        for (i, c) in cases.iter().enumerate() {
            let steps = if dtype == DType::F32 { c.greedy.len() } else { 1 };
            let (tokens, logits) = greedy(&mut r, &c.prompt, steps).unwrap_or_else(|e| panic!("{dtype} {}: {e}", c.name));
            let err = range_err(&logits, &c.logits);
            let same = tokens.iter().zip(&c.greedy).take_while(|(a, b)| a == b).count();
            let hf_err = raw["cases"][i]["hf_bf16_err"].as_f64().unwrap_or(f64::NAN) as f32;
            let hf_first = raw["cases"][i]["hf_bf16_first"].as_u64().map(|x| x as u32);
            let ok = match dtype {
                DType::F32 => same == c.greedy.len() && err < 1e-3,
                _ => Some(tokens[0]) == hf_first && err < (1.5 * hf_err).max(2e-2),
            };
            println!(
                "MODEL smollm3-3b {} [{}] tokens={same}/{steps} logits_err={err:.2e} hf_bf16_err={hf_err:.2e} first={}/{:?} {}",
                dtype.hf_name(),
                c.name,
                tokens[0],
                hf_first,
                if ok { "ok" } else { "FAIL" }
            );
            if !ok {
                failures.push(format!("{dtype} {}: {same}/{steps} tokens, logits err {err:e} (HF bf16 {hf_err:e})", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "full-size SmolLM3 parity failed:\n{}", failures.join("\n"));
}
