//! `Request`: one sequence as the scheduler sees it — plain data, built in one line in tests.
//!
//! ```text
//! all_token_ids   [ prompt_token_ids ............ | output_token_ids ... ]
//!                 [ num_computed_tokens (in KV) ........ | to compute     ]
//! num_tokens = prompt + output; a running request computes up to num_tokens, then the
//! sampled token is appended (so decode = 1 new token per step). Under async scheduling a
//! step is scheduled before the previous one's token is back: that token is a placeholder
//! (`num_output_placeholders`) until `update_from_output` appends it.
//! ```

use serde::Serialize;

use crate::sample::SamplingParams;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestStatus {
    Waiting,
    Running,
    /// Back in the waiting queue after its blocks were taken (recompute).
    Preempted,
    FinishedStopped,
    FinishedLengthCapped,
    FinishedAborted,
}

impl RequestStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::FinishedStopped | Self::FinishedLengthCapped | Self::FinishedAborted)
    }
}

/// Why a request ended with `finish_reason: "stop"`: a stop token id or a stop string
/// (`null` for an eos token), as vLLM's `stop_reason`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum StopReason {
    Token(u32),
    Str(String),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub request_id: String,
    pub prompt_token_ids: Vec<u32>,
    pub output_token_ids: Vec<u32>,
    /// `prompt_token_ids ++ output_token_ids`.
    pub all_token_ids: Vec<u32>,
    /// Tokens whose K/V are in the cache (or are being computed in the current step).
    pub num_computed_tokens: usize,
    pub sampling_params: SamplingParams,
    /// The model's end-of-sequence ids (ignored with `ignore_eos`).
    pub eos_token_ids: Vec<u32>,
    pub status: RequestStatus,
    /// Lower runs first under the `priority` policy (vLLM's convention).
    pub priority: i32,
    /// Admission order, set by the scheduler (ties of `priority` break on it).
    pub arrival: u64,
    /// `max_tokens` resolved against `max_model_len`.
    pub max_tokens: usize,
    pub num_preemptions: usize,
    pub stop_reason: Option<StopReason>,
    /// Extra key of the first block's hash: requests with different salts share no blocks.
    pub cache_salt: Option<String>,
    /// Prompt tokens found in the prefix cache the first time it was scheduled.
    pub num_cached_tokens: Option<usize>,
    /// Async scheduling: tokens sampled by steps still in flight, not yet appended (vLLM's
    /// `num_output_placeholders`). The scheduler counts them as known tokens.
    pub num_output_placeholders: usize,
}

impl Request {
    /// A waiting request; `max_tokens` comes from `params` (16 when unset, fixed at admission).
    pub fn new(request_id: impl Into<String>, prompt_token_ids: Vec<u32>, params: SamplingParams) -> Self {
        Request {
            request_id: request_id.into(),
            all_token_ids: prompt_token_ids.clone(),
            prompt_token_ids,
            output_token_ids: Vec::new(),
            num_computed_tokens: 0,
            max_tokens: params.max_tokens.unwrap_or(usize::MAX),
            sampling_params: params,
            eos_token_ids: Vec::new(),
            status: RequestStatus::Waiting,
            priority: 0,
            arrival: 0,
            num_preemptions: 0,
            stop_reason: None,
            cache_salt: None,
            num_cached_tokens: None,
            num_output_placeholders: 0,
        }
    }

    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_eos(mut self, eos_token_ids: Vec<u32>) -> Self {
        self.eos_token_ids = eos_token_ids;
        self
    }

    pub fn num_tokens(&self) -> usize {
        self.all_token_ids.len()
    }

    /// Known tokens plus those still being sampled (async scheduling).
    pub fn num_tokens_with_placeholders(&self) -> usize {
        self.all_token_ids.len() + self.num_output_placeholders
    }

    pub fn num_prompt_tokens(&self) -> usize {
        self.prompt_token_ids.len()
    }

    pub fn num_output_tokens(&self) -> usize {
        self.output_token_ids.len()
    }

    pub fn append_output_token(&mut self, t: u32) {
        self.output_token_ids.push(t);
        self.all_token_ids.push(t);
    }

    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// vLLM's `check_stop` after a token was appended: stop tokens / eos (once `min_tokens`
    /// are out), then length. Sets `status` (and `stop_reason`) and returns whether it ended.
    pub fn check_stop(&mut self, max_model_len: usize) -> bool {
        let p = &self.sampling_params;
        if self.num_output_tokens() >= p.min_tokens {
            if let Some(&last) = self.output_token_ids.last() {
                if !p.ignore_eos && self.eos_token_ids.contains(&last) {
                    self.status = RequestStatus::FinishedStopped;
                    return true;
                }
                if p.stop_token_ids.contains(&last) {
                    self.status = RequestStatus::FinishedStopped;
                    self.stop_reason = Some(StopReason::Token(last));
                    return true;
                }
            }
        }
        if self.num_tokens() >= max_model_len || self.num_output_tokens() >= self.max_tokens {
            self.status = RequestStatus::FinishedLengthCapped;
            return true;
        }
        false
    }
}
