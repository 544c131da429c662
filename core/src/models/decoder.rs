//! The decoder-only transformer every supported family runs as.
//!
//! ```text
//! ids ─ embed(×scale) ─┬─ [input_norm ─ attn ─ post_attn_norm? ─(+)─ pre_mlp_norm ─ mlp ─ post_mlp_norm?] ×L ─(+)─ norm
//!                      └─ residual stream (added inside the fused add+RMSNorm of the next norm) ─┘
//! ─ gather(logits_indices) ─ lm_head ─ softcap? ─ logits
//! ```
//! Llama-style layers have no `post_attn_norm`/`post_mlp_norm`; Gemma 3 has all four norms.

use super::{CausalLM, ForwardBatch};
use crate::backend::{Backend, Tensor};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kv::KvCache;
use crate::layers::{Attention, GatedMlp, RmsNorm};

pub struct DecoderLayer<T> {
    pub input_layernorm: RmsNorm<T>,
    pub self_attn: Attention<T>,
    /// Gemma's `post_attention_layernorm` (applied to the attention output).
    pub post_attention_norm: Option<RmsNorm<T>>,
    /// The norm before the MLP (`post_attention_layernorm` in Llama, `pre_feedforward_layernorm` in Gemma).
    pub pre_mlp_norm: RmsNorm<T>,
    pub mlp: GatedMlp<T>,
    /// Gemma's `post_feedforward_layernorm`.
    pub post_mlp_norm: Option<RmsNorm<T>>,
}

pub struct DecoderModel<T> {
    pub config: ModelConfig,
    pub embed_tokens: T,
    /// Embeddings are multiplied by this (Gemma: `sqrt(hidden_size)`).
    pub embed_scale: f32,
    pub layers: Vec<DecoderLayer<T>>,
    pub norm: RmsNorm<T>,
    /// `None` when tied to `embed_tokens`.
    pub lm_head: Option<T>,
}

impl<T: Tensor> DecoderLayer<T> {
    /// One layer. `residual` is the stream before this layer's input norm (None at layer 0);
    /// returns (this layer's MLP output, the stream it will be added to). `next`: the next
    /// layer, whose q/k/v the `prefetch` hint names after this layer's own weights.
    #[allow(clippy::too_many_arguments)]
    fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: T,
        residual: Option<T>,
        batch: &ForwardBatch<T>,
        k_cache: &mut T,
        v_cache: &mut T,
        next: Option<&DecoderLayer<T>>,
    ) -> Result<(T, T)> {
        let x_in = self.input_layernorm.input(&x, residual.as_ref());
        let mut then = self.mlp.weights_in_order().to_vec();
        if let Some(n) = next {
            then.extend(n.self_attn.w.qkv_in_order());
        }
        let (mut a, sum) = self.self_attn.forward(b, x_in, batch, k_cache, v_cache, &then)?;
        let residual = sum.unwrap_or(x);
        if let Some(n) = &self.post_attention_norm {
            a = n.forward(b, &a)?;
        }
        let (mut m, sum) = self.mlp.forward(b, self.pre_mlp_norm.input(&a, Some(&residual)))?;
        let residual = sum.ok_or_else(|| crate::backend::BackendError::Shape {
            op: crate::backend::Op::AddRmsNorm,
            detail: "norm_gated_matmul with a residual returned no residual stream".into(),
        })?;
        if let Some(n) = &self.post_mlp_norm {
            m = n.forward(b, &m)?;
        }
        Ok((m, residual))
    }
}

impl<B: Backend> CausalLM<B> for DecoderModel<B::Tensor> {
    fn forward(&self, b: &B, batch: &ForwardBatch<B::Tensor>, kv: &mut KvCache<B::Tensor>) -> Result<B::Tensor> {
        if kv.k.len() != self.layers.len() {
            return Err(Error::InvalidRequest(format!(
                "KV cache has {} layers, model has {}",
                kv.k.len(),
                self.layers.len()
            )));
        }
        let mut x = b.embedding(&self.embed_tokens, &batch.input_ids, self.embed_scale)?;
        let mut residual = None;
        for (i, layer) in self.layers.iter().enumerate() {
            let _span = tracing::trace_span!("layer", i).entered();
            let (m, r) = layer.forward(b, x, residual, batch, &mut kv.k[i], &mut kv.v[i], self.layers.get(i + 1))?;
            x = m;
            residual = Some(r);
        }
        let h = match residual {
            Some(r) => self.norm.forward_residual(b, &x, &r)?.0,
            None => self.norm.forward(b, &x)?,
        };
        let h = b.gather_rows(&h, &batch.logits_indices)?;
        let logits = b.matmul(&h, self.lm_head.as_ref().unwrap_or(&self.embed_tokens), None)?;
        match self.config.final_logit_softcapping {
            Some(cap) => Ok(b.softcap(&logits, cap)?),
            None => Ok(logits),
        }
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }
}

/// Wraps a layer's projections with its RoPE and attention parameters from the config.
pub(crate) fn attention<B: Backend>(b: &B, c: &ModelConfig, layer: usize, w: crate::layers::AttentionWeights<B::Tensor>) -> Result<Attention<B::Tensor>> {
    let spec = &c.layers[layer];
    let rope = match &spec.rope {
        Some(r) => Some(crate::layers::Rope::new(b, r.clone(), c.head_dim, crate::backend::RopeStyle::Neox)?),
        None => None,
    };
    let params = crate::backend::AttentionParams {
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        scale: c.attention_scale,
        sliding_window: spec.sliding_window,
        softcap: c.attn_logit_softcapping,
    };
    Ok(Attention { w, rope, params })
}

/// `lm_head.weight`, or `None` when tied to the embeddings. A checkpoint that has an
/// `lm_head.weight` although the config says tied still uses the embeddings, as HF does.
pub(crate) fn lm_head<B: Backend>(l: &crate::layers::Loader<B>, c: &ModelConfig) -> Result<Option<B::Tensor>> {
    if c.tie_word_embeddings {
        return Ok(None);
    }
    Ok(Some(l.tensor("lm_head.weight", &[c.vocab_size, c.hidden_size])?))
}
