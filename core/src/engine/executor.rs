//! One step on the device: build the flat batch, run the model, sample.
//!
//! Sampling takes the cheapest path the batch allows:
//! ```text
//! every row greedy, no logprobs, no history-dependent processors -> Backend::argmax (device)
//! no logprobs, no history-dependent processors                  -> Backend::sample_ids (device
//!                                                                  op; its default samples on
//!                                                                  the host and uploads)
//! otherwise                                                     -> logits to host: logprobs of
//!                                                                  the raw logits, processors,
//!                                                                  sample_row
//! ```
//! Each row's draw is `Rng::nth_f64(seed, num_output_tokens)`: the request's own stream.
//!
//! A step is `launch`ed, then `collect`ed. Between the two, a step sampled on the device
//! keeps its ids there (a read-back started): async scheduling launches the next step then,
//! its input ids fed from those ids, before collecting this one. A step sampled on the host
//! is complete when launched.

use std::collections::HashMap;

use super::input_batch::{CachedRequestState, InputBatch, RowPlan};
use super::runner::{ModelRunner, TokenFeed};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::sample::{apply_logits_processors, log_softmax, sample_row, top_logprobs, Rng, RowContext, RowSampling};
use crate::sched::{ModelRunnerOutput, SampledOutput, SchedulerOutput};

fn row_sampling(s: &CachedRequestState) -> RowSampling {
    let p = &s.sampling_params;
    if p.is_greedy() {
        return RowSampling::greedy();
    }
    let seed = p.seed.unwrap_or(0);
    RowSampling {
        temperature: p.temperature,
        top_k: p.top_k().map_or(0, |k| k.min(u32::MAX as usize) as u32),
        top_p: p.top_p,
        min_p: p.min_p,
        uniform: Rng::nth_f64(seed, s.num_output_tokens() as u64),
    }
}

/// A launched step: its outputs, complete or waiting for the sampled ids on the device.
pub struct StepInFlight<T> {
    pub so: SchedulerOutput,
    outputs: Vec<SampledOutput>,
    /// Sampled ids of the sample rows (a read-back started), and each row's output index.
    ids: Option<(T, Vec<usize>)>,
    /// Request id -> row of `ids` (the next step's feed).
    rows: HashMap<String, u32>,
    /// Prompt tokens this step runs through the model.
    pub num_prompt_tokens: usize,
}

impl<T> StepInFlight<T> {
    /// Whether its sampled ids are still on the device.
    pub fn is_pending(&self) -> bool {
        self.ids.is_some()
    }
}

/// Runs `so` through the model and samples (see the module doc). `prev`: the step still in
/// flight, whose sampled ids feed this one; this step must then sample on the device too.
pub async fn launch<B: Backend>(
    r: &mut ModelRunner<B>,
    batch: &mut InputBatch,
    so: SchedulerOutput,
    prev: Option<&StepInFlight<B::Tensor>>,
) -> Result<StepInFlight<B::Tensor>> {
    batch.update_states(&so);
    let mut num_prompt_tokens = 0;
    for (id, n) in so.num_scheduled_tokens() {
        if let Some(s) = batch.requests.get(id) {
            let start = s.num_computed_tokens.min(s.num_prompt_tokens);
            num_prompt_tokens += (s.num_computed_tokens + n).min(s.num_prompt_tokens) - start;
        }
    }
    let mut step = StepInFlight { so, outputs: Vec::new(), ids: None, rows: HashMap::new(), num_prompt_tokens };
    if step.so.is_empty() {
        return Ok(step);
    }
    let no_feed = HashMap::new();
    let prev_rows = prev.map_or(&no_feed, |p| &p.rows);
    let (mut input, plans, pairs) = batch.prepare(&step.so, r.block_size(), prev_rows)?;
    let feed = match (prev, pairs.is_empty()) {
        (_, true) => None,
        (Some(p), false) => Some(TokenFeed { ids: &p.ids.as_ref().expect("rows imply ids").0, pairs }),
        (None, false) => return Err(Error::Internal("a step needs tokens still in flight, but none is".into())),
    };
    let no_rows = input.logits_indices.is_empty();
    if no_rows {
        input.logits_indices.push(0); // the forward pass must still write K/V
    }
    let logits = r.execute_fed(&input, feed)?;
    step.outputs = plans.iter().map(|p| SampledOutput { request_id: p.request_id.clone(), prompt_logprobs_start: p.prompt_first_token, ..Default::default() }).collect();
    if no_rows {
        return Ok(step);
    }
    let state = |p: &RowPlan| &batch.requests[&p.request_id];
    let sampled: Vec<usize> = (0..plans.len()).filter(|&i| plans[i].sample_row.is_some()).collect();
    let host_path = plans.iter().any(|p| {
        let sp = &state(p).sampling_params;
        p.prompt_rows.is_some() || (p.sample_row.is_some() && (sp.logprobs.is_some() || sp.needs_logits_processing()))
    });
    if !host_path {
        // Every logits row is a sample row, in order: ids stay on the device until collected.
        let ids = if sampled.iter().all(|&i| state(&plans[i]).sampling_params.is_greedy()) {
            r.backend.argmax(&logits)?
        } else {
            let rows: Vec<RowSampling> = sampled.iter().map(|&i| row_sampling(state(&plans[i]))).collect();
            r.backend.sample_ids(&logits, &rows).await?
        };
        r.backend.read_begin(&ids)?;
        for (row, &i) in sampled.iter().enumerate() {
            step.rows.insert(plans[i].request_id.clone(), row as u32);
            if let Some(s) = batch.requests.get_mut(&plans[i].request_id) {
                s.num_pending += 1;
            }
        }
        step.ids = Some((ids, sampled));
        return Ok(step);
    }
    if prev.is_some() {
        return Err(Error::Internal("a step launched behind one in flight must sample on the device".into()));
    }
    let host = r.backend.to_host(&logits).await?.to_f32();
    host_sample(&host, input.logits_indices.len(), &plans, batch, &mut step.outputs);
    push_tokens(batch, &step.outputs, false);
    Ok(step)
}

/// The outputs of a launched step: reads its sampled ids back when they are on the device.
pub async fn collect<B: Backend>(r: &ModelRunner<B>, batch: &mut InputBatch, mut step: StepInFlight<B::Tensor>) -> Result<(SchedulerOutput, ModelRunnerOutput, usize)> {
    if let Some((ids, out_index)) = step.ids.take() {
        let ids = r.backend.to_host(&ids).await?.to_u32();
        for (&i, id) in out_index.iter().zip(ids) {
            step.outputs[i].token_id = Some(id);
        }
        push_tokens(batch, &step.outputs, true);
    }
    Ok((step.so, ModelRunnerOutput { outputs: step.outputs }, step.num_prompt_tokens))
}

/// Appends the sampled tokens to the runner's request states (`pending`: they were counted
/// in `num_pending` when launched).
fn push_tokens(batch: &mut InputBatch, outputs: &[SampledOutput], pending: bool) {
    for o in outputs {
        if let (Some(t), Some(s)) = (o.token_id, batch.requests.get_mut(&o.request_id)) {
            s.token_ids.push(t);
            if pending {
                s.num_pending = s.num_pending.saturating_sub(1);
            }
        }
    }
}

/// The host path: logprobs of the raw logits `host` (`rows` rows), logits processors,
/// `sample_row`.
fn host_sample(host: &[f32], rows: usize, plans: &[RowPlan], batch: &InputBatch, outputs: &mut [SampledOutput]) {
    let vocab = host.len() / rows;
    let row = |i: usize| &host[i * vocab..(i + 1) * vocab];
    for (i, p) in plans.iter().enumerate() {
        let s = &batch.requests[&p.request_id];
        let sp = &s.sampling_params;
        if let (Some((first, len)), Some(k)) = (p.prompt_rows, sp.prompt_logprobs) {
            for j in 0..len {
                let actual = s.token_ids[p.prompt_first_token + j];
                outputs[i].prompt_logprobs.push(top_logprobs(&log_softmax(row(first + j)), k, actual));
            }
        }
        let Some(sr) = p.sample_row else { continue };
        let raw = row(sr);
        let id = if sp.needs_logits_processing() {
            let mut l = raw.to_vec();
            let cx = RowContext {
                params: sp,
                prompt: &s.token_ids[..s.num_prompt_tokens],
                output: s.output_token_ids(),
                eos_token_ids: &s.eos_token_ids,
                bad_words: &sp.bad_words_token_ids,
            };
            apply_logits_processors(&mut l, &cx);
            sample_row(&l, &row_sampling(s))
        } else {
            sample_row(raw, &row_sampling(s))
        };
        outputs[i].token_id = Some(id);
        if let Some(k) = sp.logprobs {
            outputs[i].logprobs = Some(top_logprobs(&log_softmax(raw), k, id));
        }
    }
}
