//! Building blocks shared by every model family: linear, RMSNorm, RoPE, attention, MLP,
//! and the loader that turns named HF tensors into backend tensors.

mod attention;
mod linear;
mod mlp;
mod norm;
mod rope;

pub use attention::{Attention, AttentionWeights};
pub use linear::Linear;
pub use mlp::GatedMlp;
pub use norm::RmsNorm;
pub use rope::Rope;

use crate::backend::Backend;
use crate::error::Result;
use crate::weights::WeightSource;

/// Uploads named weights, checked against the shapes the model expects.
pub struct Loader<'a, B: Backend> {
    pub backend: &'a B,
    pub weights: &'a dyn WeightSource,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<B::Tensor> {
        let host = self.weights.get(name, shape)?;
        Ok(self.backend.upload(&host)?)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(name)
    }
}
