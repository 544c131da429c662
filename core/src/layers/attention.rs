//! Self-attention over the paged KV cache: projections, optional q/k norms, RoPE,
//! `write_kv`, `paged_attention`, output projection. The input norm and q/k/v are one
//! `norm_matmul_many` (one launch on CUDA for decode batches). Right after it, a
//! `prefetch` hint names the weights read next (o_proj, then what the caller passes: the
//! MLP's gate/up), so a backend can pull them into cache while the latency-bound
//! write_kv / attention run.
//!
//! ```text
//! norm(x) ─┬─ q_proj ─ q_norm? ─ rope? ─┐
//!          ├─ k_proj ─ k_norm? ─ rope? ─┼─ write_kv(slot_mapping) ─ paged_attention(block_tables) ─ o_proj
//!          └─ v_proj ───────────────────┘
//! ```

use super::{Linear, RmsNorm, Rope};
use crate::backend::{AttentionParams, Backend, Normed, Tensor};
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
        let (qkv, sum) = b.norm_matmul_many(
            x,
            &[
                self.w.q_proj.parts(),
                self.w.k_proj.parts(),
                self.w.v_proj.parts(),
            ],
        )?;
        let [mut q, mut k, v]: [T; 3] =
            qkv.try_into()
                .map_err(|_| crate::backend::BackendError::Shape {
                    op: crate::backend::Op::Matmul,
                    detail: "matmul_many: not 3 outputs for q/k/v".into(),
                })?;
        let mut next = Vec::with_capacity(1 + then.len());
        next.push(self.w.o_proj.whole_weight());
        next.extend_from_slice(then);
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
        let o = b.paged_attention(&q, k_cache, v_cache, &batch.attn, &self.params)?;
        Ok((self.w.o_proj.forward(b, &o)?, sum))
    }
}
