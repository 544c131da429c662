//! The adapter from the server's `EngineCore` to tessera-core's continuous-batching `Engine`:
//! validated `SamplingConfig` -> `SamplingParams` (delta outputs), `RequestOutput` deltas ->
//! `RequestUpdate`s, engine counters -> `EngineStats`.

use std::collections::HashMap;

use tessera_core::backend::Backend;
use tessera_core::engine::{Engine, FinishReason, Prompt, RequestOutput};
use tessera_core::sample::{RequestOutputKind, SamplingParams};
use tessera_core::sched::StopReason as CoreStop;

use super::engine::{EngineCore, EngineRequest, EngineStats, Finish, RequestUpdate, SeqDelta, TokenLogprobs};
use super::error::ApiError;
use super::params::SamplingConfig;
use super::protocol::StopReason;

/// `Engine<B>` seen through `EngineCore`.
pub struct CoreEngine<B: Backend> {
    pub engine: Engine<B>,
    /// Requested top logprobs per request id (to split the engine's top-K + chosen lists).
    logprobs: HashMap<String, Option<usize>>,
}

/// The engine's `SamplingParams` for a validated request, streaming deltas.
pub fn sampling_params(c: &SamplingConfig, max_tokens: usize) -> SamplingParams {
    SamplingParams {
        n: c.n,
        presence_penalty: c.presence_penalty,
        frequency_penalty: c.frequency_penalty,
        repetition_penalty: c.repetition_penalty,
        temperature: c.temperature,
        top_p: c.top_p,
        top_k: c.top_k.min(i32::MAX as u32) as i32,
        min_p: c.min_p,
        seed: c.seed,
        stop: c.stop.clone(),
        stop_token_ids: c.stop_token_ids.clone(),
        ignore_eos: c.ignore_eos,
        max_tokens: Some(max_tokens),
        min_tokens: c.min_tokens.min(max_tokens),
        logprobs: c.logprobs,
        prompt_logprobs: c.prompt_logprobs,
        logit_bias: c.logit_bias.iter().copied().collect(),
        allowed_token_ids: c.allowed_token_ids.clone(),
        bad_words: c.bad_words.clone(),
        skip_special_tokens: c.skip_special_tokens,
        include_stop_str_in_output: c.include_stop_str_in_output,
        output_kind: RequestOutputKind::Delta,
        ..SamplingParams::default()
    }
}

fn convert(out: RequestOutput, k: Option<usize>) -> RequestUpdate {
    let deltas = out
        .outputs
        .into_iter()
        .map(|o| {
            let logprobs = match (o.logprobs, k) {
                (Some(steps), Some(k)) => o
                    .token_ids
                    .iter()
                    .zip(steps)
                    .map(|(&id, step)| TokenLogprobs {
                        token_id: id,
                        logprob: step.iter().find(|(t, _)| *t == id).map_or(f32::NEG_INFINITY, |x| x.1),
                        top: step.into_iter().take(k).collect(),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            SeqDelta {
                index: o.index,
                token_ids: o.token_ids,
                text: o.text,
                logprobs,
                finish_reason: o.finish_reason.map(|f| match f {
                    FinishReason::Stop => Finish::Stop,
                    FinishReason::Length => Finish::Length,
                    FinishReason::Abort => Finish::Abort,
                }),
                stop_reason: o.stop_reason.map(|s| match s {
                    CoreStop::Token(t) => StopReason::Token(t),
                    CoreStop::Str(s) => StopReason::Text(s),
                }),
            }
        })
        .collect();
    RequestUpdate { request_id: out.request_id, deltas, finished: out.finished }
}

impl<B: Backend> CoreEngine<B> {
    pub fn new(engine: Engine<B>) -> Self {
        CoreEngine { engine, logprobs: Default::default() }
    }
}

impl<B: Backend> EngineCore for CoreEngine<B> {
    fn add_request(&mut self, req: EngineRequest) -> Result<(), ApiError> {
        let params = sampling_params(&req.params, req.max_tokens);
        self.logprobs.insert(req.request_id.clone(), req.params.logprobs);
        let r = self.engine.add_request_with_priority(
            req.request_id.clone(),
            Prompt::Tokens(req.prompt_token_ids),
            params,
            req.params.priority,
        );
        r.map_err(|e| {
            self.logprobs.remove(&req.request_id);
            match e {
                tessera_core::Error::InvalidRequest(m) => ApiError::bad(m),
                other => ApiError::Internal(other.to_string()),
            }
        })
    }

    fn step(&mut self) -> Result<Vec<RequestUpdate>, String> {
        let outs = self.engine.step().map_err(|e| e.to_string())?;
        Ok(outs
            .into_iter()
            .map(|o| {
                let k = if o.finished { self.logprobs.remove(&o.request_id) } else { self.logprobs.get(&o.request_id).copied() };
                convert(o, k.flatten())
            })
            .collect())
    }

    fn abort(&mut self, request_id: &str) {
        self.logprobs.remove(request_id);
        self.engine.abort_request(request_id);
    }

    fn has_unfinished(&self) -> bool {
        self.engine.has_unfinished_requests()
    }

    fn stats(&self) -> EngineStats {
        let s = self.engine.stats();
        EngineStats {
            num_running: s.num_running,
            num_waiting: s.num_waiting,
            kv_cache_usage: s.kv_cache_usage as f64,
            num_preemptions_total: s.num_preemptions_total,
            prefix_cache_queries_total: s.prefix_cache_queries_total,
            prefix_cache_hits_total: s.prefix_cache_hits_total,
        }
    }
}
