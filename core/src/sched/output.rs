//! What crosses the scheduler's boundary, all plain data: `SchedulerOutput` (what runs this
//! step), `ModelRunnerOutput` (what the model sampled) and `EngineCoreOutput` (what each
//! request gained, for the output processor).

use super::request::StopReason;
use crate::engine::FinishReason;
use crate::sample::SamplingParams;

/// `(token_id, logprob)` pairs for one position: the top-k plus the chosen/actual token.
pub type TopLogprobs = Vec<(u32, f32)>;

/// A request the runner has no state for: first scheduled, or resumed after preemption.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRequestData {
    pub request_id: String,
    /// Every known token (prompt, plus outputs when resumed).
    pub token_ids: Vec<u32>,
    pub num_prompt_tokens: usize,
    pub block_ids: Vec<u32>,
    /// Tokens already in the KV cache before this step (prefix-cache hits).
    pub num_computed_tokens: usize,
    pub num_scheduled_tokens: usize,
    pub sampling_params: SamplingParams,
    pub eos_token_ids: Vec<u32>,
}

/// A request the runner already tracks: only what changed.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedRequestData {
    pub request_id: String,
    pub new_block_ids: Vec<u32>,
    pub num_computed_tokens: usize,
    pub num_scheduled_tokens: usize,
}

/// One step's plan. The batch order is `scheduled_cached_reqs` then `scheduled_new_reqs`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SchedulerOutput {
    pub scheduled_new_reqs: Vec<NewRequestData>,
    pub scheduled_cached_reqs: Vec<CachedRequestData>,
    pub total_num_scheduled_tokens: usize,
    /// Sent back to waiting this step (their blocks are freed; runner state must go).
    pub preempted_req_ids: Vec<String>,
    /// Finished (or aborted) since the previous step (runner state must go).
    pub finished_req_ids: Vec<String>,
}

impl SchedulerOutput {
    /// `(request_id, num_scheduled_tokens)` in batch order.
    pub fn num_scheduled_tokens(&self) -> Vec<(&str, usize)> {
        let cached = self.scheduled_cached_reqs.iter().map(|r| (r.request_id.as_str(), r.num_scheduled_tokens));
        cached.chain(self.scheduled_new_reqs.iter().map(|r| (r.request_id.as_str(), r.num_scheduled_tokens))).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.total_num_scheduled_tokens == 0
    }
}

/// What the model runner produced for one scheduled request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SampledOutput {
    pub request_id: String,
    /// `None` for a chunk of a prefill that does not reach the end of the known tokens.
    pub token_id: Option<u32>,
    pub logprobs: Option<TopLogprobs>,
    /// Logprobs of prompt tokens `prompt_logprobs_start..` computed this step.
    pub prompt_logprobs: Vec<TopLogprobs>,
    pub prompt_logprobs_start: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelRunnerOutput {
    /// In batch order.
    pub outputs: Vec<SampledOutput>,
}

/// What one request gained in one step.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineCoreOutput {
    pub request_id: String,
    pub new_token_ids: Vec<u32>,
    pub new_logprobs: Vec<TopLogprobs>,
    pub new_prompt_logprobs: Vec<TopLogprobs>,
    /// Index of the prompt token `new_prompt_logprobs[0]` belongs to.
    pub prompt_logprobs_start: usize,
    pub finish_reason: Option<FinishReason>,
    pub stop_reason: Option<StopReason>,
    pub num_cached_tokens: usize,
}
