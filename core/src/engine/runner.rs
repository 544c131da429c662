//! The model runner: owns the backend, the model and the paged KV cache, and runs one
//! `BatchInput` through the model. Which request owns which block is the scheduler's
//! business (`kv::KVCacheManager`), not the runner's.

use crate::backend::Backend;
use crate::error::Result;
use crate::kv::KvCache;
use crate::models::{BatchInput, CausalLM, DecoderModel};

pub struct ModelRunner<B: Backend> {
    pub backend: B,
    pub model: DecoderModel<B::Tensor>,
    pub kv: KvCache<B::Tensor>,
}

impl<B: Backend> ModelRunner<B> {
    /// A runner with a KV cache of `num_blocks` blocks (block 0 is the null block) of
    /// `block_size` tokens.
    pub fn new(backend: B, model: DecoderModel<B::Tensor>, num_blocks: usize, block_size: usize) -> Result<Self> {
        let c = &model.config;
        let kv = KvCache::new(&backend, c.num_hidden_layers, num_blocks, block_size, c.kv_size())?;
        Ok(ModelRunner { backend, model, kv })
    }

    pub fn block_size(&self) -> usize {
        self.kv.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.kv.num_blocks
    }

    /// Runs one step; returns the logits `[input.logits_indices.len(), vocab]` on the device.
    pub fn execute(&mut self, input: &BatchInput) -> Result<B::Tensor> {
        let _span = tracing::debug_span!("forward", tokens = input.input_ids.len(), seqs = input.seq_lens.len()).entered();
        let batch = input.upload(&self.backend, self.kv.block_size)?;
        self.model.forward(&self.backend, &batch, &mut self.kv)
    }
}
