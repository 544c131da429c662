//! Gemma 3 (text): scaled embeddings, `(1 + w)` RMSNorms, four norms per layer (sandwich),
//! per-head q/k norms, per-layer-type RoPE and sliding windows (all from the config).

use super::decoder::{attention, lm_head};
use super::{DecoderLayer, DecoderModel};
use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{AttentionWeights, GatedMlp, Linear, Loader, RmsNorm};

pub fn load<B: Backend>(l: &Loader<B>, c: &ModelConfig) -> Result<DecoderModel<B::Tensor>> {
    let (h, eps) = (c.hidden_size, c.rms_norm_eps);
    let norm = |name: &str, dim: usize| RmsNorm::load(l, name, dim, eps, 1.0);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let a = format!("{p}.self_attn");
        let bias = c.attention_bias;
        let w = AttentionWeights {
            q_proj: Linear::load(l, &format!("{a}.q_proj"), h, c.q_size(), bias)?,
            k_proj: Linear::load(l, &format!("{a}.k_proj"), h, c.kv_size(), bias)?,
            v_proj: Linear::load(l, &format!("{a}.v_proj"), h, c.kv_size(), bias)?,
            o_proj: Linear::load(l, &format!("{a}.o_proj"), c.q_size(), h, bias)?,
            q_norm: Some(norm(&format!("{a}.q_norm"), c.head_dim)?),
            k_norm: Some(norm(&format!("{a}.k_norm"), c.head_dim)?),
        };
        layers.push(DecoderLayer {
            input_layernorm: norm(&format!("{p}.input_layernorm"), h)?,
            self_attn: attention(l.backend, c, i, w)?,
            post_attention_norm: Some(norm(&format!("{p}.post_attention_layernorm"), h)?),
            pre_mlp_norm: norm(&format!("{p}.pre_feedforward_layernorm"), h)?,
            mlp: GatedMlp::load(l, &format!("{p}.mlp"), h, c.intermediate_size, false, c.hidden_act)?,
            post_mlp_norm: Some(norm(&format!("{p}.post_feedforward_layernorm"), h)?),
        });
    }
    Ok(DecoderModel {
        config: c.clone(),
        embed_tokens: l.tensor("model.embed_tokens.weight", &[c.vocab_size, h])?,
        // HF: `embed * torch.tensor(hidden_size ** 0.5, dtype=weight.dtype)`.
        embed_scale: (h as f64).sqrt() as f32,
        layers,
        norm: norm("model.norm", h)?,
        lm_head: lm_head(l, c)?,
    })
}
