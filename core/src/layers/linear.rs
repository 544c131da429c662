//! `nn.Linear`: `y = x · Wᵀ + b` with HF's `[out_features, in_features]` weight layout.

use super::Loader;
use crate::backend::{Backend, Tensor};
use crate::error::Result;
use crate::tensor::HostTensor;

pub struct Linear<T> {
    pub weight: T,
    pub bias: Option<T>,
}

impl<T> Linear<T> {
    /// Load `{prefix}.weight` `[out, in]` and, if `bias`, `{prefix}.bias` `[out]`.
    pub fn load<B: Backend<Tensor = T>>(l: &Loader<B>, prefix: &str, in_f: usize, out_f: usize, bias: bool) -> Result<Self> {
        Ok(Linear {
            weight: l.tensor(&format!("{prefix}.weight"), &[out_f, in_f])?,
            bias: if bias { Some(l.tensor(&format!("{prefix}.bias"), &[out_f])?) } else { None },
        })
    }

    /// From host tensors already in hand (rows split off a fused projection).
    pub fn from_host<B: Backend<Tensor = T>>(b: &B, weight: &HostTensor, bias: Option<&HostTensor>) -> Result<Self> {
        Ok(Linear { weight: b.upload(weight)?, bias: bias.map(|t| b.upload(t)).transpose()? })
    }

    /// `(weight, bias)`, as `matmul_many` and `gated_matmul` take them.
    pub fn parts(&self) -> (&T, Option<&T>) {
        (&self.weight, self.bias.as_ref())
    }

    pub fn forward<B: Backend<Tensor = T>>(&self, b: &B, x: &T) -> Result<T> {
        Ok(b.matmul(x, &self.weight, self.bias.as_ref())?)
    }
}

impl<T: Tensor> Linear<T> {
    /// The weight with all of its bytes, as [`Backend::prefetch`] takes it.
    pub fn whole_weight(&self) -> (&T, usize) {
        (&self.weight, self.weight.dtype().bytes_for(self.weight.numel()).unwrap_or(0))
    }
}
