//! Self-attention over the paged KV cache: projections, optional q/k norms, RoPE,
//! `write_kv`, `paged_attention`, output projection. The input norm and q/k/v are one
//! `norm_matmul_many`; without q/k norms the products, RoPE and `write_kv` are one
//! `norm_qkv_write_kv` (one launch on CUDA for decode batches). Right after them, a
//! `prefetch` hint names the weights read next (o_proj, then what the caller passes: the
//! MLP's gate/up and down, the next layer's q/k/v), so a backend can pull them into cache while the latency-bound
//! write_kv / attention run.
//!
//! ```text
//! norm(x) ─┬─ q_proj ─ q_norm? ─ rope? ─┐
//!          ├─ k_proj ─ k_norm? ─ rope? ─┼─ write_kv(slot_mapping) ─ paged_attention(block_tables) ─ o_proj
//!          └─ v_proj ───────────────────┘
//! ```

use super::{Linear, RmsNorm, Rope};
use crate::backend::{AttentionParams, Backend, KvWrite, Normed, Tensor};
use crate::error::Result;
use crate::models::ForwardBatch;

/// The projections of one attention layer (how they are loaded differs by family).
pub struct AttentionWeights<T> {
    pub q_proj: Linear<T>,
    pub k_proj: Linear<T>,
    pub v_proj: Linear<T>,
    pub o_proj: Linear<T>,
    pub q_norm: Option<RmsNorm<T>>,
    pub k_norm: Option<RmsNorm<T>>,
}

impl<T: Tensor> AttentionWeights<T> {
    /// q_proj, k_proj and v_proj, whole, in the order the layer reads them (for the layer
    /// before's [`Backend::prefetch`] hint).
    pub fn qkv_in_order(&self) -> [(&T, usize); 3] {
        [self.q_proj.whole_weight(), self.k_proj.whole_weight(), self.v_proj.whole_weight()]
    }
}

pub struct Attention<T> {
    pub w: AttentionWeights<T>,
    /// `None` for NoPE layers.
    pub rope: Option<Rope<T>>,
    pub params: AttentionParams,
}

impl<T: Tensor> Attention<T> {
    /// Runs the layer on the normalized `x` `[T, hidden]`, writing this step's K/V into
    /// `k_cache`/`v_cache`; returns `(o_proj output, x + residual)` (the second `None`
    /// without residual). `then`: the weights read after o_proj (with their bytes), for the
    /// `prefetch` hint.
    pub fn forward<B: Backend<Tensor = T>>(
        &self,
        b: &B,
        x: Normed<'_, T>,
        batch: &ForwardBatch<T>,
        k_cache: &mut T,
        v_cache: &mut T,
        then: &[(&T, usize)],
    ) -> Result<(T, Option<T>)> {
        let qkv = [self.w.q_proj.parts(), self.w.k_proj.parts(), self.w.v_proj.parts()];
        let mut next = Vec::with_capacity(1 + then.len());
        next.push(self.w.o_proj.whole_weight());
        next.extend_from_slice(then);
        let (q, sum) = if self.w.q_norm.is_none() && self.w.k_norm.is_none() {
            // Products, RoPE and the cache write as one op (one launch on CUDA for decode).
            let kv = KvWrite { k_cache: &mut *k_cache, v_cache: &mut *v_cache, slot_mapping: &batch.slot_mapping };
            let ([q, _, _], sum) = match &self.rope {
                Some(rope) => rope.with_args(b, batch, |r| Ok(b.norm_qkv_write_kv(x, qkv, Some(r), kv)?))?,
                None => b.norm_qkv_write_kv(x, qkv, None, kv)?,
            };
            b.prefetch(&next)?;
            (q, sum)
        } else {
            let (outs, sum) = b.norm_matmul_many(x, &qkv)?;
            let [mut q, mut k, v]: [T; 3] = outs.try_into().map_err(|_| crate::backend::BackendError::Shape {
                op: crate::backend::Op::Matmul,
                detail: "matmul_many: not 3 outputs for q/k/v".into(),
            })?;
            b.prefetch(&next)?;
            if let Some(n) = &self.w.q_norm {
                q = n.forward(b, &q)?;
            }
            if let Some(n) = &self.w.k_norm {
                k = n.forward(b, &k)?;
            }
            if let Some(rope) = &self.rope {
                rope.apply(b, &mut q, batch)?;
                rope.apply(b, &mut k, batch)?;
            }
            b.write_kv(k_cache, v_cache, &k, &v, &batch.slot_mapping)?;
            (q, sum)
        };
        let o = b.paged_attention(&q, k_cache, v_cache, &batch.attn, &self.params)?;
        Ok((self.w.o_proj.forward(b, &o)?, sum))
    }
}
