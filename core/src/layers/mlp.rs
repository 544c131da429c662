//! Gated MLP: `down(act(gate(x)) * up(x))` of a normalized input; the norm and the first half
//! are one `norm_gated_matmul` (one fused launch on CUDA for decode batches).

use super::{Linear, Loader};
use crate::backend::{Activation, Backend, Normed, Tensor};
use crate::error::Result;

pub struct GatedMlp<T> {
    pub gate_proj: Linear<T>,
    pub up_proj: Linear<T>,
    pub down_proj: Linear<T>,
    pub act: Activation,
}

impl<T> GatedMlp<T> {
    /// `{prefix}.gate_proj`, `{prefix}.up_proj`, `{prefix}.down_proj`.
    pub fn load<B: Backend<Tensor = T>>(l: &Loader<B>, prefix: &str, hidden: usize, inter: usize, bias: bool, act: Activation) -> Result<Self> {
        Ok(GatedMlp {
            gate_proj: Linear::load(l, &format!("{prefix}.gate_proj"), hidden, inter, bias)?,
            up_proj: Linear::load(l, &format!("{prefix}.up_proj"), hidden, inter, bias)?,
            down_proj: Linear::load(l, &format!("{prefix}.down_proj"), inter, hidden, bias)?,
            act,
        })
    }

    /// Returns `(down(...), x + residual)` (the second `None` without residual).
    pub fn forward<B: Backend<Tensor = T>>(&self, b: &B, x: Normed<'_, T>) -> Result<(T, Option<T>)> {
        let (h, sum) = b.norm_gated_matmul(x, self.gate_proj.parts(), self.up_proj.parts(), self.act)?;
        Ok((self.down_proj.forward(b, &h)?, sum))
    }
}

impl<T: Tensor> GatedMlp<T> {
    /// gate_proj, up_proj and down_proj, whole, in the order the MLP reads them, for the
    /// attention layer's [`Backend::prefetch`] hint.
    pub fn weights_in_order(&self) -> [(&T, usize); 3] {
        [self.gate_proj.whole_weight(), self.up_proj.whole_weight(), self.down_proj.whole_weight()]
    }
}
