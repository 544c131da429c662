//! `config.json` -> [`ModelConfig`]: one normalized view of every supported architecture.
//!
//! Field names follow the HF configs verbatim. Both transformers 5.x files
//! (`rope_parameters`, `layer_types`) and older ones (`rope_theta` + `rope_scaling`,
//! `sliding_window_pattern`, `use_sliding_window` + `max_window_layers`) are read; where a
//! field is absent the default is the one of that architecture's transformers config class.

mod generation;
mod registry;
mod rope;

pub use generation::GenerationConfig;
pub use registry::{Family, SUPPORTED_ARCHITECTURES};
pub use rope::{RopeConfig, RopeScaling};

use serde_json::{Map, Value};

use crate::backend::Activation;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: not valid JSON: {source}")]
    Json { file: String, source: serde_json::Error },
    #[error("{file}: expected a JSON object at the top level")]
    NotObject { file: String },
    #[error("config.json: missing required field `{0}`")]
    Missing(&'static str),
    #[error("config.json: field `{field}` has an invalid value {value}: {why}")]
    Invalid { field: String, value: String, why: String },
    #[error("config.json: unknown architecture {name:?}; supported: {}", SUPPORTED_ARCHITECTURES.join(", "))]
    UnknownArchitecture { name: String },
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// Whether a layer attends to all previous tokens or to a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerType {
    FullAttention,
    SlidingAttention,
}

/// What differs between layers of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    pub layer_type: LayerType,
    /// `None` for NoPE layers (SmolLM3's `no_rope_layers` entries that are 0).
    pub rope: Option<RopeConfig>,
    /// Keys `j` with `p - W < j <= p` are visible, for sliding layers.
    pub sliding_window: Option<usize>,
}

/// A model's architecture, normalized across families.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// `architectures[0]`, e.g. `LlamaForCausalLM`.
    pub architecture: String,
    pub family: Family,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f32,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    pub hidden_act: Activation,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// One entry per layer.
    pub layers: Vec<LayerSpec>,
    /// Attention scores are multiplied by this (`head_dim^-0.5`, or Gemma's
    /// `query_pre_attn_scalar^-0.5`).
    pub attention_scale: f32,
    pub attn_logit_softcapping: Option<f32>,
    pub final_logit_softcapping: Option<f32>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// `torch_dtype` / `dtype` as written (e.g. "bfloat16").
    pub torch_dtype: Option<String>,
}

impl ModelConfig {
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Json { file: "config.json".into(), source })?;
        let obj = v.as_object().ok_or(ConfigError::NotObject { file: "config.json".into() })?;
        Self::from_map(obj)
    }

    pub fn from_map(c: &Map<String, Value>) -> Result<Self> {
        let archs = c.get("architectures").and_then(Value::as_array).ok_or(ConfigError::Missing("architectures"))?;
        let architecture =
            archs.first().and_then(Value::as_str).ok_or(ConfigError::Missing("architectures[0]"))?.to_string();
        let family = Family::from_architecture(&architecture)
            .ok_or_else(|| ConfigError::UnknownArchitecture { name: architecture.clone() })?;
        let d = family.defaults();
        let f = Fields(c);

        let hidden_size = f.usize("hidden_size")?;
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_hidden_layers = f.usize("num_hidden_layers")?;
        let num_key_value_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_attention_heads);
        let head_dim = match f.opt_usize("head_dim")? {
            Some(h) => h,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.invalid("hidden_size", "not divisible by num_attention_heads and no head_dim"));
                }
                hidden_size / num_attention_heads
            }
        };
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(f.invalid("num_key_value_heads", "must divide num_attention_heads"));
        }
        let act_name = f.opt_str("hidden_activation")?.or(f.opt_str("hidden_act")?).unwrap_or(d.hidden_act);
        let hidden_act = match act_name {
            "silu" | "swish" => Activation::Silu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Activation::GeluTanh,
            "gelu" => Activation::Gelu,
            _ => return Err(f.invalid("hidden_act", "supported: silu, gelu, gelu_pytorch_tanh, gelu_new")),
        };
        let max_position_embeddings = f.opt_usize("max_position_embeddings")?.unwrap_or(d.max_position_embeddings);
        let rope_ctx = rope::RopeContext { head_dim, max_position_embeddings };
        let ropes = rope::parse_rope(c, family, &rope_ctx)?;
        let layers = layer_specs(&f, family, num_hidden_layers, &ropes)?;

        let attention_scale = match (family, f.opt_f64("query_pre_attn_scalar")?) {
            (Family::Gemma3, Some(s)) => (s as f32).powf(-0.5),
            (Family::Gemma3, None) => 256f32.powf(-0.5),
            _ => (head_dim as f32).powf(-0.5),
        };
        let eos_token_ids = token_ids(c.get("eos_token_id"), "eos_token_id")?;
        Ok(ModelConfig {
            architecture,
            family,
            model_type: f.opt_str("model_type")?.unwrap_or("").to_string(),
            vocab_size: f.usize("vocab_size")?,
            hidden_size,
            intermediate_size: f.usize("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(d.rms_norm_eps) as f32,
            max_position_embeddings,
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(d.tie_word_embeddings),
            hidden_act,
            // Qwen2 always has q/k/v biases; there is no flag.
            attention_bias: family == Family::Qwen2 || f.opt_bool("attention_bias")?.unwrap_or(false),
            mlp_bias: f.opt_bool("mlp_bias")?.unwrap_or(false),
            layers,
            attention_scale,
            attn_logit_softcapping: f.opt_f64("attn_logit_softcapping")?.map(|v| v as f32),
            final_logit_softcapping: f.opt_f64("final_logit_softcapping")?.map(|v| v as f32),
            bos_token_id: token_ids(c.get("bos_token_id"), "bos_token_id")?.first().copied(),
            eos_token_ids,
            torch_dtype: f.opt_str("dtype")?.or(f.opt_str("torch_dtype")?).map(str::to_string),
        })
    }

    /// Number of query/key/value rows of the attention projections.
    pub fn q_size(&self) -> usize {
        self.num_attention_heads * self.head_dim
    }

    pub fn kv_size(&self) -> usize {
        self.num_key_value_heads * self.head_dim
    }
}

/// Which layers slide, and which use RoPE, from whichever fields this file has.
fn layer_specs(f: &Fields, family: Family, n: usize, ropes: &rope::LayerRopes) -> Result<Vec<LayerSpec>> {
    let window = f.opt_usize("sliding_window")?;
    let types: Vec<LayerType> = if let Some(v) = f.0.get("layer_types").filter(|v| !v.is_null()) {
        let arr = v.as_array().ok_or_else(|| f.invalid("layer_types", "must be a list"))?;
        if arr.len() != n {
            return Err(f.invalid("layer_types", &format!("has {} entries for {n} layers", arr.len())));
        }
        arr.iter()
            .map(|t| match t.as_str() {
                Some("full_attention") => Ok(LayerType::FullAttention),
                Some("sliding_attention") => Ok(LayerType::SlidingAttention),
                _ => Err(f.invalid("layer_types", "entries must be full_attention or sliding_attention")),
            })
            .collect::<Result<_>>()?
    } else {
        (0..n)
            .map(|i| {
                let sliding = match family {
                    Family::Gemma3 => {
                        let pattern = f.opt_usize("sliding_window_pattern").ok().flatten().unwrap_or(6);
                        (i + 1) % pattern.max(1) != 0
                    }
                    Family::Qwen2 | Family::Qwen3 | Family::SmolLM3 => {
                        let max_window_layers = f.opt_usize("max_window_layers").ok().flatten().unwrap_or(n);
                        f.opt_bool("use_sliding_window").ok().flatten().unwrap_or(false) && i >= max_window_layers
                    }
                    Family::Mistral | Family::Phi3 => window.is_some(),
                    Family::Llama => false,
                };
                if sliding {
                    LayerType::SlidingAttention
                } else {
                    LayerType::FullAttention
                }
            })
            .collect()
    };
    // Qwen-style configs keep `sliding_window` in the file but ignore it unless
    // `use_sliding_window` is set (transformers sets it to None then).
    let window = match family {
        Family::Qwen2 | Family::Qwen3 | Family::SmolLM3 if !f.opt_bool("use_sliding_window")?.unwrap_or(false) => None,
        _ => window,
    };
    let use_rope = no_rope_layers(f, family, n)?;
    Ok(types
        .into_iter()
        .enumerate()
        .map(|(i, layer_type)| LayerSpec {
            layer_type,
            rope: if use_rope[i] { Some(ropes.for_layer(layer_type).clone()) } else { None },
            sliding_window: if layer_type == LayerType::SlidingAttention { window } else { None },
        })
        .collect())
}

/// SmolLM3's `no_rope_layers`: per layer, 1 = use RoPE, 0 = skip it (NoPE).
fn no_rope_layers(f: &Fields, family: Family, n: usize) -> Result<Vec<bool>> {
    if family != Family::SmolLM3 {
        return Ok(vec![true; n]);
    }
    if let Some(v) = f.0.get("no_rope_layers").filter(|v| !v.is_null()) {
        let arr = v.as_array().ok_or_else(|| f.invalid("no_rope_layers", "must be a list of 0/1"))?;
        if arr.len() != n {
            return Err(f.invalid("no_rope_layers", &format!("has {} entries for {n} layers", arr.len())));
        }
        return arr
            .iter()
            .map(|x| x.as_i64().map(|x| x != 0).ok_or_else(|| f.invalid("no_rope_layers", "entries must be 0 or 1")))
            .collect();
    }
    let interval = f.opt_usize("no_rope_layer_interval")?.unwrap_or(4).max(1);
    Ok((0..n).map(|i| (i + 1) % interval != 0).collect())
}

/// `eos_token_id` may be an int, a list of ints, or null.
pub(crate) fn token_ids(v: Option<&Value>, field: &str) -> Result<Vec<u32>> {
    let bad = |v: &Value| ConfigError::Invalid {
        field: field.into(),
        value: v.to_string(),
        why: "must be a token id or a list of token ids".into(),
    };
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(|| bad(v.unwrap()))? as u32]),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().map(|x| x as u32).ok_or_else(|| bad(x))).collect(),
        Some(other) => Err(bad(other)),
    }
}

/// Typed access to config fields with errors naming the field.
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    pub fn invalid(&self, field: &str, why: &str) -> ConfigError {
        let value = self.0.get(field).map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into());
        ConfigError::Invalid { field: field.into(), value, why: why.into() }
    }
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    pub fn usize(&self, k: &'static str) -> Result<usize> {
        self.opt_usize(k)?.ok_or(ConfigError::Missing(k))
    }
    pub fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        self.get(k).map(|v| v.as_u64().map(|x| x as usize).ok_or_else(|| self.invalid(k, "must be a non-negative integer"))).transpose()
    }
    pub fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        self.get(k).map(|v| v.as_f64().ok_or_else(|| self.invalid(k, "must be a number"))).transpose()
    }
    pub fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        self.get(k).map(|v| v.as_bool().ok_or_else(|| self.invalid(k, "must be true or false"))).transpose()
    }
    pub fn opt_str(&self, k: &str) -> Result<Option<&'a str>> {
        self.get(k).map(|v| v.as_str().ok_or_else(|| self.invalid(k, "must be a string"))).transpose()
    }
}
