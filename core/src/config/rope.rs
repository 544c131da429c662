//! RoPE parameters (`rope_parameters` of transformers 5, `rope_theta` + `rope_scaling` of
//! older files) and the inverse frequencies they give, computed as transformers'
//! `modeling_rope_utils` does (f32 where it uses f32).

use serde_json::{Map, Value};

use super::{ConfigError, Family, Fields, LayerType, Result};

/// How the base frequencies are rescaled for longer contexts.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    Default,
    Linear { factor: f64 },
    /// NTK-aware, recomputed from the longest sequence in the batch once it exceeds
    /// `max_position_embeddings` (as HF's `dynamic_rope_update`).
    Dynamic { factor: f64 },
    Yarn {
        factor: f64,
        original_max_position_embeddings: usize,
        attention_factor: Option<f64>,
        beta_fast: f64,
        beta_slow: f64,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        truncate: bool,
    },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: usize },
}

/// RoPE of one layer type.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
    /// Rotated dims per head (`head_dim * partial_rotary_factor`).
    pub rotary_dim: usize,
    pub max_position_embeddings: usize,
}

impl RopeConfig {
    /// Inverse frequencies `[rotary_dim / 2]` and the cos/sin multiplier, for a batch whose
    /// longest sequence is `seq_len` tokens (only `Dynamic` looks at it).
    pub fn inv_freq(&self, seq_len: usize) -> (Vec<f32>, f32) {
        let dim = self.rotary_dim;
        let base_inv = |base: f64| -> Vec<f32> {
            (0..dim / 2).map(|i| 1.0 / (base as f32).powf((2 * i) as f32 / dim as f32)).collect()
        };
        match &self.scaling {
            RopeScaling::Default => (base_inv(self.theta), 1.0),
            RopeScaling::Linear { factor } => {
                (base_inv(self.theta).into_iter().map(|f| f / *factor as f32).collect(), 1.0)
            }
            RopeScaling::Dynamic { factor } => {
                let max = self.max_position_embeddings as f64;
                if (seq_len as f64) <= max {
                    return (base_inv(self.theta), 1.0);
                }
                let s = seq_len as f64;
                let base = self.theta * ((factor * s / max) - (factor - 1.0)).powf(dim as f64 / (dim as f64 - 2.0));
                (base_inv(base), 1.0)
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } => {
                let old = *original_max_position_embeddings as f64;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let inv = base_inv(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f as f64;
                        let scaled = if wavelen > low_wavelen { f / *factor as f32 } else { f };
                        let medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
                        if medium {
                            let smooth = ((old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)) as f32;
                            (1.0 - smooth) * scaled / *factor as f32 + smooth * scaled
                        } else {
                            scaled
                        }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings,
                attention_factor,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                truncate,
            } => {
                let get_mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
                let attention = attention_factor.unwrap_or_else(|| match (mscale, mscale_all_dim) {
                    (Some(m), Some(a)) if *m != 0.0 && *a != 0.0 => get_mscale(*factor, *m) / get_mscale(*factor, *a),
                    _ => get_mscale(*factor, 1.0),
                });
                let base = self.theta;
                let orig = *original_max_position_embeddings as f64;
                let correction_dim = |rot: f64| {
                    (dim as f64 * (orig / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction_dim(*beta_fast), correction_dim(*beta_slow));
                if *truncate {
                    low = low.floor();
                    high = high.ceil();
                }
                let low = low.max(0.0);
                let high = high.min(dim as f64 - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                let inv = (0..dim / 2)
                    .map(|i| {
                        let pos_freq = (base as f32).powf((2 * i) as f32 / dim as f32);
                        let extrapolation = 1.0 / pos_freq;
                        let interpolation = 1.0 / (*factor as f32 * pos_freq);
                        let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
                        let extrapolation_factor = 1.0 - ramp;
                        interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
                    })
                    .collect();
                (inv, attention as f32)
            }
        }
    }
}

pub(crate) struct RopeContext {
    pub head_dim: usize,
    pub max_position_embeddings: usize,
}

/// RoPE for full-attention layers and for sliding layers (they differ only in Gemma 3).
pub(crate) struct LayerRopes {
    full: RopeConfig,
    sliding: RopeConfig,
}

impl LayerRopes {
    pub fn for_layer(&self, t: LayerType) -> &RopeConfig {
        match t {
            LayerType::FullAttention => &self.full,
            LayerType::SlidingAttention => &self.sliding,
        }
    }
}

pub(crate) fn parse_rope(c: &Map<String, Value>, family: Family, ctx: &RopeContext) -> Result<LayerRopes> {
    let f = Fields(c);
    let params = c.get("rope_parameters").filter(|v| !v.is_null());
    let partial = |p: Option<&Map<String, Value>>| -> Result<f64> {
        let inner = p.and_then(|p| p.get("partial_rotary_factor")).and_then(Value::as_f64);
        Ok(inner.or(f.opt_f64("partial_rotary_factor")?).unwrap_or(1.0))
    };
    let default_theta = f.opt_f64("rope_theta")?.unwrap_or(family.defaults().rope_theta);
    // transformers 5: rope_parameters, possibly keyed by layer type (Gemma 3).
    if let Some(p) = params {
        let p = p.as_object().ok_or_else(|| f.invalid("rope_parameters", "must be an object"))?;
        if p.contains_key("full_attention") || p.contains_key("sliding_attention") {
            let get = |k: &str| -> Result<RopeConfig> {
                let sub = p.get(k).or_else(|| p.get("full_attention")).and_then(Value::as_object);
                let sub = sub.ok_or_else(|| f.invalid("rope_parameters", "per-layer-type entries must be objects"))?;
                one_rope(sub, default_theta, partial(Some(sub))?, ctx, "rope_parameters")
            };
            return Ok(LayerRopes { full: get("full_attention")?, sliding: get("sliding_attention")? });
        }
        let r = one_rope(p, default_theta, partial(Some(p))?, ctx, "rope_parameters")?;
        return Ok(LayerRopes { full: r.clone(), sliding: r });
    }
    // Older files: rope_theta + rope_scaling (Gemma 3: rope_local_base_freq for sliding layers,
    // rope_scaling for full layers only).
    let empty = Map::new();
    let scaling = match c.get("rope_scaling").filter(|v| !v.is_null()) {
        Some(v) => v.as_object().ok_or_else(|| f.invalid("rope_scaling", "must be an object or null"))?,
        None => &empty,
    };
    let full = one_rope(scaling, default_theta, partial(None)?, ctx, "rope_scaling")?;
    let sliding = if family == Family::Gemma3 {
        let theta = f.opt_f64("rope_local_base_freq")?.unwrap_or(10000.0);
        one_rope(&empty, theta, partial(None)?, ctx, "rope_scaling")?
    } else {
        full.clone()
    };
    Ok(LayerRopes { full, sliding })
}

fn one_rope(p: &Map<String, Value>, default_theta: f64, partial: f64, ctx: &RopeContext, field: &str) -> Result<RopeConfig> {
    let num = |k: &str| p.get(k).and_then(Value::as_f64);
    let need = |k: &str| {
        num(k).ok_or_else(|| ConfigError::Invalid {
            field: format!("{field}.{k}"),
            value: p.get(k).map(|v| v.to_string()).unwrap_or_else(|| "(absent)".into()),
            why: "required number for this rope_type".into(),
        })
    };
    let kind = p.get("rope_type").or_else(|| p.get("type")).and_then(Value::as_str).unwrap_or("default");
    let orig = num("original_max_position_embeddings").map(|x| x as usize);
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: need("factor")? },
        "dynamic" => RopeScaling::Dynamic { factor: need("factor")? },
        "llama3" => RopeScaling::Llama3 {
            factor: need("factor")?,
            low_freq_factor: need("low_freq_factor")?,
            high_freq_factor: need("high_freq_factor")?,
            original_max_position_embeddings: need("original_max_position_embeddings")? as usize,
        },
        "yarn" => {
            // transformers 5: `factor` as given; without one, the ratio of the two lengths.
            let factor = match (num("factor"), orig) {
                (Some(f), _) => f,
                (None, Some(o)) => ctx.max_position_embeddings as f64 / o as f64,
                (None, None) => need("factor")?,
            };
            RopeScaling::Yarn {
                factor,
                original_max_position_embeddings: orig.unwrap_or(ctx.max_position_embeddings),
                attention_factor: num("attention_factor"),
                beta_fast: num("beta_fast").unwrap_or(32.0),
                beta_slow: num("beta_slow").unwrap_or(1.0),
                mscale: num("mscale"),
                mscale_all_dim: num("mscale_all_dim"),
                truncate: p.get("truncate").and_then(Value::as_bool).unwrap_or(true),
            }
        }
        other => {
            return Err(ConfigError::Invalid {
                field: format!("{field}.rope_type"),
                value: format!("{other:?}"),
                why: "supported: default, linear, dynamic, yarn, llama3".into(),
            })
        }
    };
    Ok(RopeConfig {
        theta: num("rope_theta").unwrap_or(default_theta),
        scaling,
        rotary_dim: (ctx.head_dim as f64 * partial) as usize,
        max_position_embeddings: ctx.max_position_embeddings,
    })
}
