//! Rotary position embedding of one layer: its inverse frequencies live on the device and
//! are recomputed only for dynamic NTK scaling once a sequence outgrows the trained length.

use std::cell::RefCell;

use crate::backend::{Backend, RopeParams, RopeStyle};
use crate::config::{RopeConfig, RopeScaling};
use crate::error::Result;

pub struct Rope<T> {
    pub config: RopeConfig,
    pub head_dim: usize,
    pub style: RopeStyle,
    /// (seq_len the table was built for, inv_freq tensor, attention scaling).
    table: RefCell<(usize, T, f32)>,
}

impl<T> Rope<T> {
    pub fn new<B: Backend<Tensor = T>>(b: &B, config: RopeConfig, head_dim: usize, style: RopeStyle) -> Result<Self> {
        let (inv, scaling) = config.inv_freq(0);
        let t = b.upload(&crate::tensor::HostTensor::from_f32(&inv, &[inv.len()]))?;
        let built_for = config.max_position_embeddings;
        Ok(Rope { config, head_dim, style, table: RefCell::new((built_for, t, scaling)) })
    }

    /// Rotate q or k `[T, n * head_dim]` in place; `max_seq_len` is the batch's longest context.
    pub fn apply<B: Backend<Tensor = T>>(&self, b: &B, x: &mut T, positions: &T, max_seq_len: usize) -> Result<()> {
        if matches!(self.config.scaling, RopeScaling::Dynamic { .. }) {
            let mut table = self.table.borrow_mut();
            let effective = max_seq_len.max(self.config.max_position_embeddings);
            if table.0 != effective {
                let (inv, scaling) = self.config.inv_freq(max_seq_len);
                *table = (effective, b.upload(&crate::tensor::HostTensor::from_f32(&inv, &[inv.len()]))?, scaling);
            }
        }
        let table = self.table.borrow();
        let p = RopeParams { head_dim: self.head_dim, rotary_dim: self.config.rotary_dim, style: self.style, attention_scaling: table.2 };
        Ok(b.rope(x, positions, &table.1, p)?)
    }
}
