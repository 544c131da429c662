//! The model runner: owns the backend, the model and the paged KV cache, and runs one
//! `BatchInput` through the model. Which request owns which block is the scheduler's
//! business (`kv::KVCacheManager`), not the runner's.
//!
//! Decode-step graphs (`enable_decode_graphs`, backends with `Backend::graph_supported`):
//! ```text
//! decode-only step of n seqs ─ bucket = smallest size >= n (1 2 4 8 16 24 32 48 64 96 128 ...)
//!   pad to the bucket: dummy rows (token 0, position 0, slot 0 = the null block, seq_len 1)
//!   write ids/positions/slots/seq_lens/block tables into the bucket's persistent tensors
//!   graph for (bucket, backend's variant of the longest context)?
//!     yes: replay it                    no: run eagerly on the persistent tensors, then record
//!   logits rows 0..n of the bucket's persistent logits tensor
//! prefill / mixed steps, more seqs than the largest bucket, too-long block tables: eager
//! ```
//! A recording that fails is logged once and that (bucket, variant) stays eager.

use std::collections::HashMap;

use crate::backend::{AttentionMetadata, Backend};
use crate::error::Result;
use crate::kv::KvCache;
use crate::models::{BatchInput, CausalLM, DecoderModel, ForwardBatch};

pub struct ModelRunner<B: Backend> {
    pub backend: B,
    pub model: DecoderModel<B::Tensor>,
    pub kv: KvCache<B::Tensor>,
    graphs: Option<DecodeGraphs<B::Tensor>>,
}

/// Batch sizes that get their own decode graph (up to the engine's `max_num_seqs`).
const GRAPH_SIZES: [usize; 16] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 256, 512];

/// The decode graphs of one padded batch size, and the persistent tensors they read and write.
struct GraphBucket<T> {
    batch: ForwardBatch<T>,
    /// Logits `[size, vocab]`, written by every replay (set by the first eager step).
    logits: Option<T>,
    /// Variant -> graph id; `None`: recording failed, this variant stays eager.
    graphs: HashMap<u64, Option<u64>>,
    /// Row indices 0..n for each real batch size n this bucket served.
    rows: HashMap<usize, T>,
}

struct DecodeGraphs<T> {
    sizes: Vec<usize>,
    max_blocks_per_seq: usize,
    buckets: HashMap<usize, GraphBucket<T>>,
    warned: bool,
    replays: u64,
    captures: u64,
}

impl<B: Backend> ModelRunner<B> {
    /// A runner with a KV cache of `num_blocks` blocks (block 0 is the null block) of
    /// `block_size` tokens.
    pub fn new(backend: B, model: DecoderModel<B::Tensor>, num_blocks: usize, block_size: usize) -> Result<Self> {
        let c = &model.config;
        let kv = KvCache::new(&backend, c.num_hidden_layers, num_blocks, block_size, c.kv_size())?;
        Ok(ModelRunner { backend, model, kv, graphs: None })
    }

    /// Turns on decode-step graphs for batches of up to `max_num_seqs` sequences of up to
    /// `max_model_len` tokens. Returns false (and stays eager) where the backend has none.
    pub fn enable_decode_graphs(&mut self, max_num_seqs: usize, max_model_len: usize) -> bool {
        if !self.backend.graph_supported() || max_num_seqs == 0 || max_model_len == 0 {
            return false;
        }
        let sizes: Vec<usize> = GRAPH_SIZES.iter().copied().filter(|&s| s < max_num_seqs).chain([max_num_seqs.min(512)]).collect();
        let max_blocks_per_seq = max_model_len.div_ceil(self.kv.block_size).min(self.kv.num_blocks.max(1));
        tracing::info!(?sizes, max_blocks_per_seq, "decode graphs on");
        self.graphs = Some(DecodeGraphs { sizes, max_blocks_per_seq, buckets: HashMap::new(), warned: false, replays: 0, captures: 0 });
        true
    }

    /// (graphs recorded, graph replays) so far.
    pub fn graph_stats(&self) -> (u64, u64) {
        self.graphs.as_ref().map_or((0, 0), |g| (g.captures, g.replays))
    }

    pub fn block_size(&self) -> usize {
        self.kv.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.kv.num_blocks
    }

    /// Runs one step; returns the logits `[input.logits_indices.len(), vocab]` on the device.
    pub fn execute(&mut self, input: &BatchInput) -> Result<B::Tensor> {
        self.execute_fed(input, None)
    }

    /// [`execute`](Self::execute) with some input ids taken from `feed` on the device (async
    /// scheduling: tokens the previous step sampled and nobody has read back yet).
    pub fn execute_fed(&mut self, input: &BatchInput, feed: Option<TokenFeed<'_, B::Tensor>>) -> Result<B::Tensor> {
        let _span = tracing::debug_span!("forward", tokens = input.input_ids.len(), seqs = input.seq_lens.len()).entered();
        if let Some(out) = self.execute_graph(input, &feed)? {
            return Ok(out);
        }
        let mut batch = input.upload(&self.backend, self.kv.block_size)?;
        if let Some(f) = &feed {
            f.apply(&self.backend, &mut batch.input_ids)?;
        }
        self.model.forward(&self.backend, &batch, &mut self.kv)
    }

    /// A decode-only step through a graph (see the module doc); `None`: run it eagerly.
    fn execute_graph(&mut self, input: &BatchInput, feed: &Option<TokenFeed<'_, B::Tensor>>) -> Result<Option<B::Tensor>> {
        let Some(g) = self.graphs.as_mut() else { return Ok(None) };
        let n = input.seq_lens.len();
        let decode_only = n > 0
            && input.input_ids.len() == n
            && input.query_start_loc.iter().enumerate().all(|(i, &q)| q as usize == i)
            && input.logits_indices.iter().enumerate().all(|(i, &r)| r as usize == i)
            && input.logits_indices.len() == n
            && input.block_tables.iter().all(|t| t.len() <= g.max_blocks_per_seq)
            // Dynamic-NTK RoPE builds per-step tables on the host past this length.
            && input.seq_lens.iter().all(|&l| l as usize <= self.model.config.max_position_embeddings);
        let Some(&size) = g.sizes.iter().find(|&&s| s >= n) else { return Ok(None) };
        if !decode_only {
            return Ok(None);
        }
        let b = &self.backend;
        let mb = g.max_blocks_per_seq;
        let block_size = self.kv.block_size;
        if !g.buckets.contains_key(&size) {
            let z = |len: usize, shape: &[usize]| b.upload_u32(&vec![0u32; len], shape);
            let batch = ForwardBatch {
                input_ids: z(size, &[size])?,
                positions: z(size, &[size])?,
                slot_mapping: z(size, &[size])?,
                logits_indices: b.upload_u32(&(0..size as u32).collect::<Vec<_>>(), &[size])?,
                attn: AttentionMetadata {
                    query_start_loc: b.upload_u32(&(0..=size as u32).collect::<Vec<_>>(), &[size + 1])?,
                    seq_lens: z(size, &[size])?,
                    block_tables: z(size * mb, &[size, mb])?,
                    seq_order: b.upload_u32(&(0..size as u32).collect::<Vec<_>>(), &[size])?,
                    num_seqs: size,
                    num_decode_seqs: size,
                    max_blocks_per_seq: mb,
                    block_size,
                    max_query_len: 1,
                    // The longest context any replay may see (the kernels read the real ones).
                    max_seq_len: mb * block_size,
                },
                num_tokens: size,
                num_logits: size,
                host_query_start_loc: (0..=size as u32).collect(),
                host_seq_lens: vec![1; size],
            };
            g.buckets.insert(size, GraphBucket { batch, logits: None, graphs: HashMap::new(), rows: HashMap::new() });
        }
        let bucket = g.buckets.get_mut(&size).expect("inserted above");
        // Pad to the bucket: dummy rows write K/V into the null block and attend to it alone.
        let pad = |v: &[u32], fill: u32| v.iter().copied().chain(std::iter::repeat(fill)).take(size).collect::<Vec<u32>>();
        let seq_lens = pad(&input.seq_lens, 1);
        let mut tables = vec![0u32; size * mb];
        for (i, row) in input.block_tables.iter().enumerate() {
            tables[i * mb..i * mb + row.len()].copy_from_slice(row);
        }
        b.write_u32(&bucket.batch.input_ids, &pad(&input.input_ids, 0))?;
        b.write_u32(&bucket.batch.positions, &pad(&input.positions, 0))?;
        b.write_u32(&bucket.batch.slot_mapping, &pad(&input.slot_mapping, 0))?;
        b.write_u32(&bucket.batch.attn.seq_lens, &seq_lens)?;
        b.write_u32(&bucket.batch.attn.block_tables, &tables)?;
        bucket.batch.host_seq_lens = seq_lens;
        // After every write: a backend may submit its pending work before a write (wgpu).
        if let Some(f) = feed {
            f.apply(b, &mut bucket.batch.input_ids)?;
        }
        let max_seq_len = input.seq_lens.iter().copied().max().unwrap_or(1) as usize;

        let variant = b.graph_variant(size, max_seq_len);
        let graph = variant.and_then(|v| bucket.graphs.get(&v).copied());
        match (graph, &bucket.logits) {
            (Some(Some(id)), Some(_)) => {
                b.graph_replay(id)?;
                g.replays += 1;
            }
            _ => {
                // Eager on the persistent tensors (this step's result), then record the variant.
                b.set_attention_hint(Some(max_seq_len));
                let logits = self.model.forward(b, &bucket.batch, &mut self.kv);
                b.set_attention_hint(None);
                let logits = logits?;
                match &bucket.logits {
                    Some(buf) => b.copy_into(buf, &logits)?,
                    None => bucket.logits = Some(logits),
                }
                let buf = bucket.logits.as_ref().expect("set above");
                if let Some(v) = b.graph_variant(size, max_seq_len) {
                    if !bucket.graphs.contains_key(&v) {
                        let id = record(b, &self.model, &bucket.batch, &mut self.kv, buf, max_seq_len);
                        match &id {
                            Err(e) if !g.warned => {
                                tracing::warn!(batch = size, error = %e, "recording a decode graph failed; that batch shape runs eagerly");
                                g.warned = true;
                            }
                            Err(_) => {}
                            Ok(_) => {
                                g.captures += 1;
                                tracing::debug!(batch = size, variant = v, "decode graph recorded");
                            }
                        }
                        bucket.graphs.insert(v, id.ok());
                    }
                }
            }
        }
        // Rows 0..n, copied out: the next replay overwrites the bucket's logits.
        let logits = bucket.logits.as_ref().expect("set by the first step of this bucket");
        if !bucket.rows.contains_key(&n) {
            bucket.rows.insert(n, b.upload_u32(&(0..n as u32).collect::<Vec<_>>(), &[n])?);
        }
        Ok(Some(b.gather_rows(logits, &bucket.rows[&n])?))
    }
}

/// Input ids of a step that are still on the device: `input_ids[pairs[2i]] = ids[pairs[2i+1]]`
/// (`ids`: what the previous step sampled).
pub struct TokenFeed<'a, T> {
    pub ids: &'a T,
    pub pairs: Vec<u32>,
}

impl<T> TokenFeed<'_, T> {
    fn apply<B: Backend<Tensor = T>>(&self, b: &B, input_ids: &mut T) -> Result<()> {
        if self.pairs.is_empty() {
            return Ok(());
        }
        let pairs = b.upload_u32(&self.pairs, &[self.pairs.len() / 2, 2])?;
        Ok(b.scatter_ids(input_ids, self.ids, &pairs)?)
    }
}

/// Records one decode forward over `batch` whose logits land in `logits_buf`; the recording
/// is ended (and discarded) whatever fails.
fn record<B: Backend>(
    b: &B,
    model: &DecoderModel<B::Tensor>,
    batch: &ForwardBatch<B::Tensor>,
    kv: &mut KvCache<B::Tensor>,
    logits_buf: &B::Tensor,
    max_seq_len: usize,
) -> Result<u64> {
    b.set_attention_hint(Some(max_seq_len));
    if let Err(e) = b.graph_begin() {
        b.set_attention_hint(None);
        return Err(e.into());
    }
    let run = (|| -> Result<()> {
        let logits = model.forward(b, batch, kv)?;
        b.copy_into(logits_buf, &logits)?;
        Ok(())
    })();
    let ended = b.graph_end(run.is_ok());
    b.set_attention_hint(None);
    run?;
    Ok(ended?)
}
