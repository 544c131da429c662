//! The model runner's per-request state (vLLM's `InputBatch`), kept in step with the
//! scheduler through `SchedulerOutput` deltas, and the flat `BatchInput` built from it.
//!
//! ```text
//! scheduled:   r0 (decode, 1 tok) | r1 (prefill chunk, 3 toks) | r2 (last prefill chunk, 2)
//! input_ids    t                    t t t                        t t
//! logits rows  row 0 (sample r0)    (none: r1's chunk does not    row 1 (sample r2)
//!                                    reach its last known token)
//! ```
//! A request with `prompt_logprobs` also gets a row for every prompt position whose next
//! token is a prompt token.
//!
//! Async scheduling: a step is prepared while the previous one is still on the device, so a
//! decoding request's newest token (`num_pending`) is not in `token_ids` yet; its input row
//! gets a placeholder and a feed pair `(row, row of the previous step's sampled ids)`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::models::BatchInput;
use crate::sample::SamplingParams;
use crate::sched::SchedulerOutput;

#[derive(Clone, Debug)]
pub struct CachedRequestState {
    pub token_ids: Vec<u32>,
    pub num_prompt_tokens: usize,
    pub block_ids: Vec<u32>,
    pub num_computed_tokens: usize,
    pub sampling_params: SamplingParams,
    pub eos_token_ids: Vec<u32>,
    /// Tokens sampled by launched steps and not read back yet (async scheduling).
    pub num_pending: usize,
}

impl CachedRequestState {
    pub fn output_token_ids(&self) -> &[u32] {
        &self.token_ids[self.num_prompt_tokens..]
    }

    /// Output tokens sampled so far, read back or not (the index of the next draw).
    pub fn num_output_tokens(&self) -> usize {
        self.token_ids.len() + self.num_pending - self.num_prompt_tokens
    }
}

/// Where one scheduled request's logits rows are.
#[derive(Clone, Debug, PartialEq)]
pub struct RowPlan {
    pub request_id: String,
    /// Row of the logits that samples its next token.
    pub sample_row: Option<usize>,
    /// Rows `start..start + len` give the logprobs of prompt tokens `first_token..`.
    pub prompt_rows: Option<(usize, usize)>,
    pub prompt_first_token: usize,
}

#[derive(Default)]
pub struct InputBatch {
    pub requests: HashMap<String, CachedRequestState>,
}

impl InputBatch {
    /// Applies the scheduler's deltas: drops finished and preempted requests, adds new and
    /// resumed ones, extends block tables.
    pub fn update_states(&mut self, so: &SchedulerOutput) {
        for id in so.finished_req_ids.iter().chain(&so.preempted_req_ids) {
            self.requests.remove(id);
        }
        for r in &so.scheduled_cached_reqs {
            if let Some(s) = self.requests.get_mut(&r.request_id) {
                s.block_ids.extend_from_slice(&r.new_block_ids);
                s.num_computed_tokens = r.num_computed_tokens;
            }
        }
        for r in &so.scheduled_new_reqs {
            self.requests.insert(
                r.request_id.clone(),
                CachedRequestState {
                    token_ids: r.token_ids.clone(),
                    num_prompt_tokens: r.num_prompt_tokens,
                    block_ids: r.block_ids.clone(),
                    num_computed_tokens: r.num_computed_tokens,
                    sampling_params: r.sampling_params.clone(),
                    eos_token_ids: r.eos_token_ids.clone(),
                    num_pending: 0,
                },
            );
        }
    }

    /// The flat model input of this step, where each request's logits rows are, and the feed
    /// pairs of tokens still on the device (`prev_rows`: each request's row in the sampled
    /// ids of the step in flight).
    pub fn prepare(&self, so: &SchedulerOutput, block_size: usize, prev_rows: &HashMap<String, u32>) -> Result<(BatchInput, Vec<RowPlan>, Vec<u32>)> {
        let mut input = BatchInput { query_start_loc: vec![0], ..Default::default() };
        let mut plans = Vec::new();
        let mut feed = Vec::new();
        let bs = block_size as u32;
        for (id, n) in so.num_scheduled_tokens() {
            let s = self.requests.get(id).ok_or_else(|| Error::Internal(format!("request {id} is scheduled but the runner has no state for it")))?;
            let start = s.num_computed_tokens;
            let end = start + n;
            let row0 = input.input_ids.len() as u32;
            for pos in start..end {
                match s.token_ids.get(pos) {
                    Some(&t) => input.input_ids.push(t),
                    None => {
                        let row = prev_rows.get(id).filter(|_| pos == s.token_ids.len() && s.num_pending > 0);
                        let row = row.ok_or_else(|| Error::Internal(format!("request {id}: token {pos} is neither known nor in flight")))?;
                        feed.extend([input.input_ids.len() as u32, *row]);
                        input.input_ids.push(0);
                    }
                }
                input.positions.push(pos as u32);
                let p = pos as u32;
                input.slot_mapping.push(s.block_ids[(p / bs) as usize] * bs + p % bs);
            }
            input.query_start_loc.push(input.input_ids.len() as u32);
            input.seq_lens.push(end as u32);
            input.block_tables.push(s.block_ids.clone());
            let mut plan = RowPlan { request_id: id.to_string(), sample_row: None, prompt_rows: None, prompt_first_token: 0 };
            if s.sampling_params.prompt_logprobs.is_some() {
                // Position p predicts token p + 1; prompt tokens 1..num_prompt have logprobs.
                let last = end.min(s.num_prompt_tokens.saturating_sub(1));
                if last > start {
                    let first_row = input.logits_indices.len();
                    for pos in start..last {
                        input.logits_indices.push(row0 + (pos - start) as u32);
                    }
                    plan.prompt_rows = Some((first_row, last - start));
                    plan.prompt_first_token = start + 1;
                }
            }
            if end == s.token_ids.len() + s.num_pending {
                plan.sample_row = Some(input.logits_indices.len());
                input.logits_indices.push(row0 + n as u32 - 1);
            }
            plans.push(plan);
        }
        Ok((input, plans, feed))
    }
}
