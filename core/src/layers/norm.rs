//! RMSNorm, with Gemma's `(1 + w)` variant as a weight offset.

use super::Loader;
use crate::backend::{Backend, Normed};
use crate::error::Result;

pub struct RmsNorm<T> {
    pub weight: T,
    pub eps: f32,
    /// 0 for Llama-style `w * x̂`, 1 for Gemma's `(1 + w) * x̂`.
    pub offset: f32,
}

impl<T> RmsNorm<T> {
    pub fn load<B: Backend<Tensor = T>>(l: &Loader<B>, name: &str, dim: usize, eps: f32, offset: f32) -> Result<Self> {
        Ok(RmsNorm { weight: l.tensor(&format!("{name}.weight"), &[dim])?, eps, offset })
    }

    pub fn forward<B: Backend<Tensor = T>>(&self, b: &B, x: &T) -> Result<T> {
        Ok(b.rms_norm(x, &self.weight, self.eps, self.offset)?)
    }

    /// This norm of `x + residual` (of `x` alone without residual), as the input of a
    /// `norm_*` projection that may fold it into its prologue.
    pub fn input<'a>(&'a self, x: &'a T, residual: Option<&'a T>) -> Normed<'a, T> {
        Normed { x, residual, weight: &self.weight, eps: self.eps, offset: self.offset }
    }

    /// `(norm(x + residual), x + residual)`.
    pub fn forward_residual<B: Backend<Tensor = T>>(&self, b: &B, x: &T, residual: &T) -> Result<(T, T)> {
        Ok(b.add_rms_norm(x, residual, &self.weight, self.eps, self.offset)?)
    }
}
