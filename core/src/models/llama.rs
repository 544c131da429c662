//! Llama and its close relatives, which share HF tensor names: Mistral, Qwen2 (q/k/v bias),
//! Qwen3 (q/k RMSNorm per head), SmolLM3 (NoPE layers, from the config).

use super::decoder::{attention, lm_head};
use super::{DecoderLayer, DecoderModel};
use crate::backend::Backend;
use crate::config::{Family, ModelConfig};
use crate::error::Result;
use crate::layers::{AttentionWeights, GatedMlp, Linear, Loader, RmsNorm};

pub fn load<B: Backend>(l: &Loader<B>, c: &ModelConfig) -> Result<DecoderModel<B::Tensor>> {
    let (h, eps) = (c.hidden_size, c.rms_norm_eps);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        let qk_norm = c.family == Family::Qwen3;
        let norm = |name: &str| RmsNorm::load(l, &format!("{a}.{name}"), c.head_dim, eps, 0.0);
        let w = AttentionWeights {
            q_proj: Linear::load(l, &format!("{a}.q_proj"), h, c.q_size(), c.attention_bias)?,
            k_proj: Linear::load(l, &format!("{a}.k_proj"), h, c.kv_size(), c.attention_bias)?,
            v_proj: Linear::load(l, &format!("{a}.v_proj"), h, c.kv_size(), c.attention_bias)?,
            // Qwen2's o_proj has no bias even though q/k/v do.
            o_proj: Linear::load(l, &format!("{a}.o_proj"), c.q_size(), h, c.attention_bias && c.family != Family::Qwen2)?,
            q_norm: if qk_norm { Some(norm("q_norm")?) } else { None },
            k_norm: if qk_norm { Some(norm("k_norm")?) } else { None },
        };
        layers.push(DecoderLayer {
            input_layernorm: RmsNorm::load(l, &format!("{p}.input_layernorm"), h, eps, 0.0)?,
            self_attn: attention(l.backend, c, i, w)?,
            post_attention_norm: None,
            pre_mlp_norm: RmsNorm::load(l, &format!("{p}.post_attention_layernorm"), h, eps, 0.0)?,
            mlp: GatedMlp::load(l, &format!("{p}.mlp"), h, c.intermediate_size, c.mlp_bias, c.hidden_act)?,
            post_mlp_norm: None,
        });
    }
    Ok(DecoderModel {
        config: c.clone(),
        embed_tokens: l.tensor("model.embed_tokens.weight", &[c.vocab_size, h])?,
        embed_scale: 1.0,
        layers,
        norm: RmsNorm::load(l, "model.norm", h, eps, 0.0)?,
        lm_head: lm_head(l, c)?,
    })
}
