//! Bad input gives clear errors naming what is wrong, never a panic: configs, safetensors
//! files, tensor names / shapes / dtypes, prompts.

use std::path::PathBuf;

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::weights::{DummyWeights, FileBytes, SafetensorsWeights, WeightSource};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

fn llama_config_json() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("llama").join("config.json")).unwrap()).unwrap()
}

fn err_of<T>(r: Result<T, impl std::fmt::Display>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let mut c = llama_config_json();
    c["architectures"] = serde_json::json!(["FooForCausalLM"]);
    let msg = err_of(ModelConfig::from_json_str(&c.to_string()));
    assert!(msg.contains("FooForCausalLM"), "{msg}");
    for a in ["LlamaForCausalLM", "Qwen3ForCausalLM", "Gemma3ForCausalLM", "Phi3ForCausalLM", "SmolLM3ForCausalLM"] {
        assert!(msg.contains(a), "{msg} should list {a}");
    }
}

#[test]
fn config_errors_name_the_field() {
    let mut c = llama_config_json();
    c.as_object_mut().unwrap().remove("hidden_size");
    assert!(err_of(ModelConfig::from_json_str(&c.to_string())).contains("hidden_size"));
    let mut c = llama_config_json();
    c["num_key_value_heads"] = serde_json::json!(3);
    assert!(err_of(ModelConfig::from_json_str(&c.to_string())).contains("num_key_value_heads"));
    let mut c = llama_config_json();
    c["rope_parameters"] = serde_json::json!({"rope_type": "su", "rope_theta": 1e4});
    let msg = err_of(ModelConfig::from_json_str(&c.to_string()));
    assert!(msg.contains("rope_type") && msg.contains("su"), "{msg}");
    assert!(err_of(ModelConfig::from_json_str("{not json")).contains("config.json"));
}

fn weights_from_bytes(bytes: Vec<u8>) -> Result<SafetensorsWeights, tessera_core::weights::WeightsError> {
    SafetensorsWeights::from_files(vec![("model.safetensors".into(), FileBytes::Owned(bytes))])
}

#[test]
fn truncated_and_corrupt_safetensors_name_the_file() {
    let good = std::fs::read(fixture("llama").join("model.safetensors")).unwrap();
    for bad in [good[..good.len() - 10].to_vec(), good[..4].to_vec(), b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk".to_vec(), {
        let mut b = good.clone();
        b[8] = b'#'; // break the JSON header
        b
    }] {
        let msg = err_of(weights_from_bytes(bad));
        assert!(msg.contains("model.safetensors") && msg.contains("not a valid safetensors"), "{msg}");
    }
}

/// A one-tensor safetensors file.
fn one_tensor(name: &str, dtype: &str, shape: &[usize], elem: usize) -> Vec<u8> {
    let n: usize = shape.iter().product::<usize>() * elem;
    let header = serde_json::json!({ name: {"dtype": dtype, "shape": shape, "data_offsets": [0, n]} }).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat(0u8).take(n));
    out
}

#[test]
fn wrong_shape_wrong_dtype_and_missing_tensors_are_named() {
    let w = weights_from_bytes(one_tensor("a.weight", "F32", &[2, 3], 4)).unwrap();
    let msg = err_of(w.get("a.weight", &[3, 2]));
    assert!(msg.contains("a.weight") && msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}");
    let msg = err_of(w.get("b.weight", &[2, 3]));
    assert!(msg.contains("missing tensor `b.weight`"), "{msg}");
    let w = weights_from_bytes(one_tensor("a.weight", "I64", &[2, 3], 8)).unwrap();
    let msg = err_of(w.get("a.weight", &[2, 3]));
    assert!(msg.contains("a.weight") && msg.contains("I64"), "{msg}");
}

#[test]
fn a_model_missing_a_tensor_names_it() {
    // The untied llama config wants lm_head.weight; the tied f16 checkpoint lacks it.
    let mut c = llama_config_json();
    c["tie_word_embeddings"] = serde_json::json!(false);
    let config = ModelConfig::from_json_str(&c.to_string()).unwrap();
    let weights = SafetensorsWeights::from_dir(&fixture("llama_tied_f16")).unwrap();
    let msg = err_of(load_model(&CpuBackend::new(), &config, &weights));
    assert!(msg.contains("lm_head.weight"), "{msg}");
}

#[test]
fn missing_weights_folder_is_explained() {
    let dir = std::env::temp_dir().join(format!("tessera-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let msg = err_of(SafetensorsWeights::from_dir(&dir));
    assert!(msg.contains("model.safetensors") && msg.contains("--load-format dummy"), "{msg}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn prompt_too_long_or_out_of_vocab_is_rejected() {
    let config = ModelConfig::from_json_str(&llama_config_json().to_string()).unwrap();
    let b = CpuBackend::new();
    let model = load_model(&b, &config, &DummyWeights::default()).unwrap();
    let mut r = ModelRunner::new(b, model, 16, 16).unwrap();
    let p = GenerateParams {
        max_tokens: 4,
        temperature: 0.0,
        ignore_eos: true,
        logprobs: None,
        seed: 0,
        eos_token_ids: vec![],
        max_model_len: 8,
    };
    let msg = err_of(generate(&mut r, &[1; 8], &p));
    assert!(msg.contains("8 tokens") && msg.contains("max_model_len is 8"), "{msg}");
    let msg = err_of(generate(&mut r, &[1, 100_000], &p));
    assert!(msg.contains("100000") && msg.contains("vocab_size 512"), "{msg}");
    // Nothing leaked, and a good prompt still runs.
    assert_eq!(generate(&mut r, &[1, 2, 3], &p).unwrap().outputs[0].token_ids.len(), 4);
}

#[test]
fn dummy_weights_build_every_architecture_from_config_alone() {
    for name in ["llama", "mistral", "qwen2", "qwen3", "smollm3", "gemma3", "phi3"] {
        let text = std::fs::read_to_string(fixture(name).join("config.json")).unwrap();
        let config = ModelConfig::from_json_str(&text).unwrap();
        let b = CpuBackend::new();
        let model = load_model(&b, &config, &DummyWeights::default()).unwrap();
        let mut r = ModelRunner::new(b, model, 16, 16).unwrap();
        let p = GenerateParams {
            max_tokens: 3,
            temperature: 0.0,
            ignore_eos: true,
            logprobs: None,
            seed: 0,
            eos_token_ids: vec![],
            max_model_len: 64,
        };
        let out = generate(&mut r, &[1, 2, 3, 4], &p).unwrap();
        assert_eq!(out.outputs[0].token_ids.len(), 3, "{name}");
        assert!(out.outputs[0].token_ids.iter().all(|&t| (t as usize) < config.vocab_size));
    }
}
