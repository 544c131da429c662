//! GGUF metadata -> an HF `config.json` map, so GGUF and HF folders share one config path
//! (`ModelConfig::from_map`). Keys are llama.cpp's (`{arch}.embedding_length`, ...).

use serde_json::{json, Map, Value};

use super::error::{GgufError, Result};
use super::reader::GgufFile;

/// `general.architecture` -> (HF `architectures[0]`, HF `model_type`).
const ARCHS: &[(&str, &str, &str)] = &[
    ("llama", "LlamaForCausalLM", "llama"),
    ("mistral", "MistralForCausalLM", "mistral"),
    ("qwen2", "Qwen2ForCausalLM", "qwen2"),
    ("qwen3", "Qwen3ForCausalLM", "qwen3"),
    ("gemma3", "Gemma3ForCausalLM", "gemma3_text"),
    ("phi3", "Phi3ForCausalLM", "phi3"),
];

/// The HF architecture name for a GGUF `general.architecture`.
pub fn hf_architecture(gguf_arch: &str) -> Option<&'static str> {
    ARCHS.iter().find(|a| a.0 == gguf_arch).map(|a| a.1)
}

/// `general.architecture`, checked to be one tessera maps.
pub(crate) fn architecture(g: &GgufFile) -> Result<&str> {
    let arch = g.str("general.architecture")?.ok_or_else(|| g.bad("general.architecture", "missing"))?;
    if hf_architecture(arch).is_none() {
        return Err(GgufError::Architecture { file: g.file.clone(), arch: arch.into() });
    }
    Ok(arch)
}

/// The HF config.json (as a JSON object) equivalent to this file's metadata.
pub fn hf_config(g: &GgufFile) -> Result<Map<String, Value>> {
    let arch = architecture(g)?;
    let &(_, hf_arch, model_type) = ARCHS.iter().find(|a| a.0 == arch).expect("checked above");
    let key = |k: &str| format!("{arch}.{k}");
    let req = |k: &str| -> Result<u64> { g.u64(&key(k))?.ok_or_else(|| g.bad(&key(k), "missing")) };

    let hidden = req("embedding_length")?;
    let heads = req("attention.head_count")?;
    let layers = req("block_count")?;
    let kv_heads = match g.get(&key("attention.head_count_kv")) {
        None => heads,
        Some(v) => v.as_u64().ok_or_else(|| g.bad(&key("attention.head_count_kv"), "must be one integer (per-layer KV heads are not supported)"))?,
    };
    if heads == 0 || layers == 0 {
        return Err(g.bad(&key("attention.head_count"), "must be positive"));
    }
    let head_dim = g.u64(&key("attention.key_length"))?.unwrap_or(hidden / heads);
    // The embedding's rows decide (the weights must match); else the token list.
    let vocab = match g.tensor("token_embd.weight").and_then(|t| t.dims.get(1).copied()) {
        Some(v) => v,
        None => match (g.array("tokenizer.ggml.tokens")?, g.u64(&key("vocab_size"))?) {
            (_, Some(v)) => v,
            (Some(t), None) => t.len() as u64,
            (None, None) => return Err(g.bad("tokenizer.ggml.tokens", "missing (and no token_embd.weight or vocab_size)")),
        },
    };
    let mut c = Map::new();
    c.insert("architectures".into(), json!([hf_arch]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert("intermediate_size".into(), json!(req("feed_forward_length")?));
    c.insert("num_hidden_layers".into(), json!(layers));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    if let Some(ctx) = g.u64(&key("context_length"))? {
        c.insert("max_position_embeddings".into(), json!(ctx));
    }
    if let Some(eps) = g.f64(&key("attention.layer_norm_rms_epsilon"))? {
        c.insert("rms_norm_eps".into(), json!(short(eps)));
    }
    c.insert("tie_word_embeddings".into(), json!(g.tensor("output.weight").is_none()));
    if let Some(rot) = g.u64(&key("rope.dimension_count"))? {
        if rot != head_dim {
            c.insert("partial_rotary_factor".into(), json!(rot as f64 / head_dim as f64));
        }
    }
    rope(g, arch, &mut c)?;
    for (gk, hk) in [("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id"), ("tokenizer.ggml.padding_token_id", "pad_token_id")] {
        if let Some(id) = g.u64(gk)? {
            c.insert(hk.into(), json!(id));
        }
    }
    let window = g.u64(&key("attention.sliding_window"))?;
    match arch {
        "gemma3" => {
            c.insert("hidden_activation".into(), json!("gelu_pytorch_tanh"));
            // llama.cpp: 1/sqrt(head_dim), except Gemma 3 27B (62 layers): 1/sqrt(hidden/heads).
            let scalar = if layers == 62 { hidden / heads } else { head_dim };
            c.insert("query_pre_attn_scalar".into(), json!(scalar));
            c.insert("sliding_window".into(), json!(window.unwrap_or(512)));
            c.insert("sliding_window_pattern".into(), json!(6));
            let types: Vec<&str> =
                (0..layers).map(|i| if (i + 1) % 6 == 0 { "full_attention" } else { "sliding_attention" }).collect();
            c.insert("layer_types".into(), json!(types));
        }
        "phi3" | "mistral" => {
            if let Some(w) = window.filter(|&w| w > 0) {
                c.insert("sliding_window".into(), json!(w));
            }
        }
        _ => {}
    }
    if arch == "phi3" && (g.tensor("rope_factors_long.weight").is_some() || g.tensor("rope_factors_short.weight").is_some()) {
        return Err(g.bad("rope_factors_long.weight", "Phi-3 LongRoPE factors are not supported yet"));
    }
    Ok(c)
}

/// `rope_theta`, Gemma's local base, and `rope_scaling` from `{arch}.rope.*`.
fn rope(g: &GgufFile, arch: &str, c: &mut Map<String, Value>) -> Result<()> {
    let key = |k: &str| format!("{arch}.{k}");
    let theta = g.f64(&key("rope.freq_base"))?.unwrap_or(if arch == "gemma3" { 1_000_000.0 } else { 10_000.0 });
    c.insert("rope_theta".into(), json!(short(theta)));
    if arch == "gemma3" {
        c.insert("rope_local_base_freq".into(), json!(10_000.0));
    }
    if g.tensor("rope_freqs.weight").is_some() {
        // Llama 3.1-style frequency factors stored as a tensor: not mapped back to parameters.
        return Err(g.bad("rope_freqs.weight", "RoPE frequency-factor tensors (Llama 3.1 style) are not supported yet"));
    }
    let kind = g.str(&key("rope.scaling.type"))?.unwrap_or("none");
    let factor = g.f64(&key("rope.scaling.factor"))?;
    let orig = g.u64(&key("rope.scaling.original_context_length"))?;
    let scaling = match (kind, factor) {
        ("none", _) | (_, None) => return Ok(()),
        (_, Some(f)) if f == 0.0 || f == 1.0 => return Ok(()),
        ("linear", Some(f)) => json!({"rope_type": "linear", "factor": f}),
        ("yarn", Some(f)) => {
            let mut m = json!({"rope_type": "yarn", "factor": f});
            if let Some(o) = orig {
                m["original_max_position_embeddings"] = json!(o);
            }
            m
        }
        (other, _) => return Err(g.bad(&key("rope.scaling.type"), format!("{other:?} is not supported (linear, yarn)"))),
    };
    c.insert("rope_scaling".into(), scaling);
    Ok(())
}

/// An f32 metadata value as the shortest decimal that rounds to it (1e-5, not 9.99999974e-6).
fn short(x: f64) -> f64 {
    format!("{}", x as f32).parse().unwrap_or(x)
}
