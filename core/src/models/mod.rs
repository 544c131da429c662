//! Model graphs, written once against `Backend`, and the registry that builds one from a
//! config. One decoder graph (`decoder.rs`) serves every family; each family's file knows
//! its HF tensor names and layout quirks.

mod batch;
mod decoder;
mod gemma3;
mod llama;
mod phi3;

pub use batch::{BatchInput, ForwardBatch};
pub use decoder::{DecoderLayer, DecoderModel};

use crate::backend::Backend;
use crate::config::{Family, ModelConfig};
use crate::error::Result;
use crate::kv::KvCache;
use crate::layers::Loader;
use crate::weights::WeightSource;

/// A causal language model: token ids in, logits of the selected rows out.
pub trait CausalLM<B: Backend> {
    /// Runs one step; returns logits `[batch.num_logits, vocab]` for `batch.logits_indices`.
    fn forward(&self, b: &B, batch: &ForwardBatch<B::Tensor>, kv: &mut KvCache<B::Tensor>) -> Result<B::Tensor>;
    fn config(&self) -> &ModelConfig;
}

/// Builds the model `config.architecture` names, loading weights from `weights`.
pub fn load_model<B: Backend>(b: &B, config: &ModelConfig, weights: &dyn WeightSource) -> Result<DecoderModel<B::Tensor>> {
    let l = Loader { backend: b, weights };
    match config.family {
        Family::Llama | Family::Mistral | Family::Qwen2 | Family::Qwen3 | Family::SmolLM3 => llama::load(&l, config),
        Family::Gemma3 => gemma3::load(&l, config),
        Family::Phi3 => phi3::load(&l, config),
    }
}
