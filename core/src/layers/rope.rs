//! Rotary position embedding of one layer: its inverse frequencies live on the device.
//!
//! Dynamic NTK scaling follows HF exactly and per sequence: a step's tokens are rotated with
//! the frequencies for *their own sequence's* length at that step (HF recomputes them from
//! `max(position_ids) + 1` of each forward), so results never depend on what else is batched.
//! Cached keys keep the frequencies they were rotated with, as in HF.

use std::cell::RefCell;

use crate::backend::{Backend, RopeArgs, RopeParams, RopeStyle};
use crate::config::{RopeConfig, RopeScaling};
use crate::error::Result;
use crate::models::ForwardBatch;
use crate::tensor::HostTensor;

pub struct Rope<T> {
    pub config: RopeConfig,
    pub head_dim: usize,
    pub style: RopeStyle,
    /// Frequencies for sequences within the trained length, and their cos/sin multiplier.
    base: (T, f32),
    /// Dynamic NTK only: the per-token table of the current step, keyed by its layout.
    step: RefCell<Option<(Vec<u32>, Vec<u32>, T)>>,
}

impl<T> Rope<T> {
    pub fn new<B: Backend<Tensor = T>>(b: &B, config: RopeConfig, head_dim: usize, style: RopeStyle) -> Result<Self> {
        let (inv, scaling) = config.inv_freq(0);
        let t = b.upload(&HostTensor::from_f32(&inv, &[inv.len()]))?;
        Ok(Rope { config, head_dim, style, base: (t, scaling), step: RefCell::new(None) })
    }

    /// Rotate q or k `[T, n * head_dim]` of `batch` in place.
    pub fn apply<B: Backend<Tensor = T>>(&self, b: &B, x: &mut T, batch: &ForwardBatch<T>) -> Result<()> {
        self.with_args(b, batch, |a| Ok(b.rope(x, a.positions, a.inv_freq, a.params)?))
    }

    /// Runs `f` with `rope`'s arguments for `batch` (a fused op rotates q and k itself).
    pub fn with_args<B: Backend<Tensor = T>, R>(
        &self,
        b: &B,
        batch: &ForwardBatch<T>,
        f: impl FnOnce(RopeArgs<'_, T>) -> Result<R>,
    ) -> Result<R> {
        let p = RopeParams {
            head_dim: self.head_dim,
            rotary_dim: self.config.rotary_dim,
            style: self.style,
            attention_scaling: self.base.1,
        };
        let long = batch.host_seq_lens.iter().any(|&l| l as usize > self.config.max_position_embeddings);
        if !(long && matches!(self.config.scaling, RopeScaling::Dynamic { .. })) {
            return f(RopeArgs { positions: &batch.positions, inv_freq: &self.base.0, params: p });
        }
        let mut step = self.step.borrow_mut();
        let fresh = matches!(&*step, Some((q, s, _)) if *q == batch.host_query_start_loc && *s == batch.host_seq_lens);
        if !fresh {
            let half = self.config.rotary_dim / 2;
            let mut table = Vec::with_capacity(batch.num_tokens * half);
            for (i, &len) in batch.host_seq_lens.iter().enumerate() {
                let (inv, _) = self.config.inv_freq(len as usize);
                let q_len = batch.host_query_start_loc[i + 1] - batch.host_query_start_loc[i];
                for _ in 0..q_len {
                    table.extend_from_slice(&inv);
                }
            }
            // Uploaded flat ([T * half]; the rope ops tell per-token tables by their length): a
            // 2-D upload would take the activation dtype on GPU backends, and bf16 frequencies
            // are off by up to 0.4%, i.e. by radians at positions in the hundreds.
            let t = b.upload(&HostTensor::from_f32(&table, &[batch.num_tokens * half]))?;
            *step = Some((batch.host_query_start_loc.clone(), batch.host_seq_lens.clone(), t));
        }
        let table = &step.as_ref().expect("filled above").2;
        f(RopeArgs { positions: &batch.positions, inv_freq: table, params: p })
    }
}
