//! One step on the device: build the flat batch, run the model, sample.
//!
//! Sampling takes the cheapest path the batch allows:
//! ```text
//! every row greedy, no logprobs, no history-dependent processors -> Backend::argmax (device)
//! no logprobs, no history-dependent processors                  -> Backend::sample (device op;
//!                                                                  its default reads back)
//! otherwise                                                     -> logits to host: logprobs of
//!                                                                  the raw logits, processors,
//!                                                                  sample_row
//! ```
//! Each row's draw is `Rng::nth_f64(seed, num_output_tokens)`: the request's own stream.

use super::input_batch::{CachedRequestState, InputBatch, RowPlan};
use super::runner::ModelRunner;
use crate::backend::Backend;
use crate::error::Result;
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
        uniform: Rng::nth_f64(seed, s.output_token_ids().len() as u64),
    }
}

/// Runs `so` through the model and samples; updates `batch` with the sampled tokens.
pub async fn execute_model<B: Backend>(r: &mut ModelRunner<B>, batch: &mut InputBatch, so: &SchedulerOutput) -> Result<ModelRunnerOutput> {
    batch.update_states(so);
    if so.is_empty() {
        return Ok(ModelRunnerOutput::default());
    }
    let (mut input, plans) = batch.prepare(so, r.block_size());
    let no_rows = input.logits_indices.is_empty();
    if no_rows {
        input.logits_indices.push(0); // the forward pass must still write K/V
    }
    let logits = r.execute(&input)?;
    let mut outputs: Vec<SampledOutput> =
        plans.iter().map(|p| SampledOutput { request_id: p.request_id.clone(), ..Default::default() }).collect();
    if !no_rows {
        let sampled: Vec<(usize, &RowPlan)> = plans.iter().enumerate().filter(|(_, p)| p.sample_row.is_some()).collect();
        let state = |p: &RowPlan| &batch.requests[&p.request_id];
        let host_path = plans.iter().any(|p| {
            let sp = &state(p).sampling_params;
            p.prompt_rows.is_some() || (p.sample_row.is_some() && (sp.logprobs.is_some() || sp.needs_logits_processing()))
        });
        if !host_path {
            // Every logits row is a sample row, in order.
            let rows: Vec<RowSampling> = sampled.iter().map(|(_, p)| row_sampling(state(p))).collect();
            let ids = if rows.iter().all(RowSampling::is_greedy) {
                r.backend.to_host(&r.backend.argmax(&logits)?).await?.to_u32()
            } else {
                r.backend.sample(&logits, &rows).await?
            };
            for ((i, _), id) in sampled.iter().zip(ids) {
                outputs[*i].token_id = Some(id);
            }
        } else {
            let host = r.backend.to_host(&logits).await?.to_f32();
            let vocab = host.len() / input.logits_indices.len();
            let row = |i: usize| &host[i * vocab..(i + 1) * vocab];
            for (i, p) in plans.iter().enumerate() {
                let s = state(p);
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
    }
    for (o, p) in outputs.iter_mut().zip(&plans) {
        o.prompt_logprobs_start = p.prompt_first_token;
        if let Some(t) = o.token_id {
            if let Some(s) = batch.requests.get_mut(&p.request_id) {
                s.token_ids.push(t);
            }
        }
    }
    Ok(ModelRunnerOutput { outputs })
}
