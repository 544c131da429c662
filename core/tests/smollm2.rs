//! The real SmolLM2-135M-Instruct Q4_1 GGUF (fetched by scripts/fetch-default-model.sh; the
//! test fails, not skips, without it): config and tokenizer from metadata, and greedy 32 tokens
//! equal to transformers loading the same GGUF (tests/fixtures/gguf/smollm2/reference.json, made
//! by tests/fixtures/make_gguf_fixtures.py smollm2) for plain, chat-templated, ~600-token and
//! unicode prompts — straight from the GGUF (dequantized to f32 on load, as transformers does)
//! and after `export_hf` to an HF folder read back by the safetensors loader.

mod gguf_common;

use gguf_common::{fixture, smollm2_path};
use serde_json::{Map, Value};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::tensor::DType;
use tessera_core::tokenizer::{gguf_chat_template, ChatTemplate, ChatTemplateInputs, Tokenizer};
use tessera_core::weights::gguf::export_hf;
use tessera_core::weights::{GgufWeights, SafetensorsWeights, WeightSource};

struct Case {
    name: String,
    prompt_text: String,
    messages: Option<Value>,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    margins: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let path = fixture("gguf/smollm2/reference.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().into(),
            prompt_text: c["prompt_text"].as_str().unwrap().into(),
            messages: c.get("messages").cloned(),
            prompt: ids(&c["prompt_token_ids"]),
            greedy: ids(&c["greedy_token_ids"]),
            margins: c["greedy_margins"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
        })
        .collect()
}

fn weights(dequantize: bool) -> GgufWeights {
    let mut w = GgufWeights::open(&smollm2_path()).unwrap();
    w.set_dequantize_on_load(dequantize);
    w
}

fn runner(config: &ModelConfig, w: &dyn WeightSource) -> ModelRunner<CpuBackend> {
    let b = CpuBackend::new();
    let model = load_model(&b, config, w).unwrap();
    ModelRunner::new(b, model, 8192 / 16 + 1, 16).unwrap()
}

fn greedy(r: &mut ModelRunner<CpuBackend>, prompt: &[u32], n: usize) -> Vec<u32> {
    let p = GenerateParams {
        max_tokens: n,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: None,
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: 8192,
    };
    generate(r, prompt, &p).unwrap().outputs[0].token_ids.clone()
}

#[test]
fn config_from_metadata_matches_the_model() {
    let w = weights(false);
    let c = ModelConfig::from_map(&w.hf_config().unwrap()).unwrap();
    assert_eq!(c.architecture, "LlamaForCausalLM");
    assert_eq!((c.num_hidden_layers, c.hidden_size, c.intermediate_size), (30, 576, 1536));
    assert_eq!((c.num_attention_heads, c.num_key_value_heads, c.head_dim), (9, 3, 64));
    assert_eq!((c.vocab_size, c.max_position_embeddings, c.tie_word_embeddings), (49152, 8192, true));
    assert_eq!((c.rms_norm_eps, c.bos_token_id, c.eos_token_ids.clone()), (1e-5, Some(1), vec![2]));
    assert_eq!(c.layers[0].rope.as_ref().unwrap().theta, 100000.0);
    let (shape, dtype) = w.info("model.embed_tokens.weight").unwrap();
    assert_eq!((shape, dtype), (vec![49152, 576], DType::Q8_0));
    assert_eq!(w.info("model.layers.0.self_attn.q_proj.weight").unwrap(), (vec![576, 576], DType::Q4_1));
    assert_eq!(w.info("model.norm.weight").unwrap(), (vec![576], DType::F32));
    assert_eq!(w.hf_names().len(), 1 + 1 + 30 * 9);
}

#[test]
fn prompts_tokenize_and_render_like_transformers() {
    let w = weights(false);
    let tok = Tokenizer::from_gguf(w.gguf()).unwrap();
    let template = ChatTemplate::new(&gguf_chat_template(w.gguf()).unwrap().unwrap()).unwrap();
    let cases = cases();
    assert!(cases.len() >= 6);
    assert!(cases.iter().any(|c| c.prompt.len() >= 550), "a ~600-token prompt");
    for c in &cases {
        if let Some(m) = &c.messages {
            let extra = Map::new();
            let inputs = ChatTemplateInputs { add_generation_prompt: true, ..ChatTemplateInputs::new(m, &extra) };
            assert_eq!(template.render(&inputs).unwrap(), c.prompt_text, "{}: chat template", c.name);
        }
        assert_eq!(tok.encode(&c.prompt_text, true).unwrap(), c.prompt, "{}: prompt ids", c.name);
    }
}

#[test]
fn greedy_tokens_match_transformers_dequantized_f32() {
    let w = weights(true);
    let config = ModelConfig::from_map(&w.hf_config().unwrap()).unwrap();
    let mut r = runner(&config, &w);
    for c in cases() {
        let got = greedy(&mut r, &c.prompt, c.greedy.len());
        let min_margin = c.margins.iter().cloned().fold(f64::MAX, f64::min);
        assert_eq!(got, c.greedy, "{}: greedy tokens differ from transformers (smallest HF margin {min_margin:.4})", c.name);
    }
}

#[test]
fn export_hf_round_trip_gives_the_same_tokens() {
    let w = weights(false);
    let folder = export_hf(&w, DType::F32).unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-smollm2-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &folder.files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let st = SafetensorsWeights::from_dir(&dir).unwrap();
    assert!(!st.contains("lm_head.weight"), "tied embeddings are not duplicated");
    // Tensors equal the GGUF's, dequantized and un-permuted.
    let wd = weights(true);
    for name in ["model.layers.3.self_attn.q_proj.weight", "model.layers.3.self_attn.k_proj.weight", "model.embed_tokens.weight"] {
        let (shape, _) = wd.info(name).unwrap();
        assert_eq!(st.get(name, &shape).unwrap().to_f32(), wd.get(name, &shape).unwrap().to_f32(), "{name}");
    }
    let tok = Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    let tc: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap()).unwrap();
    assert!(tc["chat_template"].as_str().unwrap().contains("<|im_start|>"));
    let mut r = runner(&config, &st);
    for c in cases().iter().filter(|c| c.name == "chat_greeting" || c.name == "unicode_emoji") {
        assert_eq!(tok.encode(&c.prompt_text, true).unwrap(), c.prompt, "{}: exported tokenizer", c.name);
        assert_eq!(greedy(&mut r, &c.prompt, c.greedy.len()), c.greedy, "{}: exported model", c.name);
    }
    std::fs::remove_dir_all(&dir).ok();
}
