//! `ForwardBatch`: the flat per-step input of every model, the same for every batch mix.
//!
//! ```text
//! tokens of all sequences, concatenated:      t0 t1 t2 t3 | t4 | t5 t6
//! query_start_loc                              0            4    5     7
//! positions (per token)                        0  1  2  3  | 9  | 3  4
//! slot_mapping (block * block_size + offset, where each token's K/V goes)
//! seq_lens (context after this step)           4            10   5
//! block_tables [B, max_blocks]                 physical blocks of each sequence, in order
//! seq_order                                    decode sequences first (1), then the rest (0, 2)
//! logits_indices                               rows that need logits (3, 4, 6)
//! ```

use crate::backend::{decode_first, AttentionMetadata, Backend};
use crate::error::{Error, Result};

/// The host half: plain vectors, filled by the model runner from the scheduler's decision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchInput {
    pub input_ids: Vec<u32>,
    pub positions: Vec<u32>,
    pub slot_mapping: Vec<u32>,
    pub query_start_loc: Vec<u32>,
    pub seq_lens: Vec<u32>,
    pub block_tables: Vec<Vec<u32>>,
    pub logits_indices: Vec<u32>,
}

/// The device half, uploaded once per step.
pub struct ForwardBatch<T> {
    pub input_ids: T,
    pub positions: T,
    pub slot_mapping: T,
    pub logits_indices: T,
    pub attn: AttentionMetadata<T>,
    pub num_tokens: usize,
    pub num_logits: usize,
    /// Host copies of the per-sequence layout, for ops whose arguments depend on it
    /// (dynamic-NTK RoPE builds per-token frequencies from each sequence's length).
    pub host_query_start_loc: Vec<u32>,
    pub host_seq_lens: Vec<u32>,
}

impl BatchInput {
    /// Checks the invariants the kernels rely on, then uploads.
    pub fn upload<B: Backend>(&self, b: &B, block_size: usize) -> Result<ForwardBatch<B::Tensor>> {
        let t = self.input_ids.len();
        let n = self.seq_lens.len();
        let bad = |m: String| Err(Error::InvalidRequest(format!("malformed batch: {m}")));
        if self.positions.len() != t || self.slot_mapping.len() != t {
            return bad(format!("{t} tokens but {} positions, {} slots", self.positions.len(), self.slot_mapping.len()));
        }
        if self.query_start_loc.len() != n + 1 || self.block_tables.len() != n || t == 0 {
            return bad(format!("{n} sequences, {} query_start_loc, {} block tables", self.query_start_loc.len(), self.block_tables.len()));
        }
        if self.query_start_loc.last().copied() != Some(t as u32) {
            return bad("query_start_loc does not end at the token count".into());
        }
        let max_blocks = self.block_tables.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut tables = vec![0u32; n * max_blocks];
        for (i, row) in self.block_tables.iter().enumerate() {
            tables[i * max_blocks..i * max_blocks + row.len()].copy_from_slice(row);
        }
        let max_query_len = self.query_start_loc.windows(2).map(|w| w[1].saturating_sub(w[0]) as usize).max().unwrap_or(0);
        let (seq_order, num_decode_seqs) = decode_first(&self.query_start_loc);
        let attn = AttentionMetadata {
            query_start_loc: b.upload_u32(&self.query_start_loc, &[n + 1])?,
            seq_lens: b.upload_u32(&self.seq_lens, &[n])?,
            block_tables: b.upload_u32(&tables, &[n, max_blocks])?,
            seq_order: b.upload_u32(&seq_order, &[n])?,
            num_seqs: n,
            num_decode_seqs,
            max_blocks_per_seq: max_blocks,
            block_size,
            max_query_len,
            max_seq_len: self.seq_lens.iter().copied().max().unwrap_or(0) as usize,
        };
        Ok(ForwardBatch {
            input_ids: b.upload_u32(&self.input_ids, &[t])?,
            positions: b.upload_u32(&self.positions, &[t])?,
            slot_mapping: b.upload_u32(&self.slot_mapping, &[t])?,
            logits_indices: b.upload_u32(&self.logits_indices, &[self.logits_indices.len()])?,
            attn,
            num_tokens: t,
            num_logits: self.logits_indices.len(),
            host_query_start_loc: self.query_start_loc.clone(),
            host_seq_lens: self.seq_lens.clone(),
        })
    }
}
