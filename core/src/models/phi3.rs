//! Phi-3: fused `qkv_proj` (q rows, then k, then v) and `gate_up_proj` (gate rows first),
//! split into separate projections at load time so the shared decoder graph runs it.

use super::decoder::{attention, lm_head};
use super::{DecoderLayer, DecoderModel};
use crate::backend::Backend;
use crate::config::ModelConfig;
use crate::error::Result;
use crate::layers::{AttentionWeights, GatedMlp, Linear, Loader, RmsNorm};

pub fn load<B: Backend>(l: &Loader<B>, c: &ModelConfig) -> Result<DecoderModel<B::Tensor>> {
    let (h, eps, b) = (c.hidden_size, c.rms_norm_eps, l.backend);
    let (q, kv, inter) = (c.q_size(), c.kv_size(), c.intermediate_size);
    let mut layers = Vec::with_capacity(c.num_hidden_layers);
    for i in 0..c.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let qkv = l.weights.get(&format!("{p}.self_attn.qkv_proj.weight"), &[q + 2 * kv, h])?;
        let w = AttentionWeights {
            q_proj: Linear::from_host(b, &qkv.narrow_rows(0, q), None)?,
            k_proj: Linear::from_host(b, &qkv.narrow_rows(q, kv), None)?,
            v_proj: Linear::from_host(b, &qkv.narrow_rows(q + kv, kv), None)?,
            o_proj: Linear::load(l, &format!("{p}.self_attn.o_proj"), q, h, false)?,
            q_norm: None,
            k_norm: None,
        };
        let gate_up = l.weights.get(&format!("{p}.mlp.gate_up_proj.weight"), &[2 * inter, h])?;
        let mlp = GatedMlp {
            gate_proj: Linear::from_host(b, &gate_up.narrow_rows(0, inter), None)?,
            up_proj: Linear::from_host(b, &gate_up.narrow_rows(inter, inter), None)?,
            down_proj: Linear::load(l, &format!("{p}.mlp.down_proj"), inter, h, false)?,
            act: c.hidden_act,
        };
        layers.push(DecoderLayer {
            input_layernorm: RmsNorm::load(l, &format!("{p}.input_layernorm"), h, eps, 0.0)?,
            self_attn: attention(b, c, i, w)?,
            post_attention_norm: None,
            pre_mlp_norm: RmsNorm::load(l, &format!("{p}.post_attention_layernorm"), h, eps, 0.0)?,
            mlp,
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
