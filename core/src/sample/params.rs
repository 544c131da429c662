//! `SamplingParams`: vLLM's sampling knobs, their defaults and their validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Below this temperature sampling is greedy (vLLM's `_SAMPLING_EPS`).
pub const SAMPLING_EPS: f32 = 1e-5;

/// A sampling parameter out of range; the message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid sampling parameter `{field}`: {message}")]
pub struct SamplingError {
    pub field: &'static str,
    pub message: String,
}

impl From<SamplingError> for crate::Error {
    fn from(e: SamplingError) -> Self {
        crate::Error::InvalidRequest(e.to_string())
    }
}

/// What `Engine::step` returns for a request while it runs (vLLM's `RequestOutputKind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutputKind {
    /// Everything generated so far, every step.
    #[default]
    Cumulative,
    /// Only what is new since the last output (streaming).
    Delta,
    /// One output, when the request finishes.
    FinalOnly,
}

/// How a request is sampled and when it stops. Field names, meanings and defaults follow
/// vLLM's `SamplingParams` (`max_tokens` defaults to 16 as in vLLM's offline API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Completions per prompt; they share the prompt's KV blocks through the prefix cache.
    pub n: usize,
    /// Subtracted once from the logit of every token already generated (-2..=2).
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of generated tokens (-2..=2).
    pub frequency_penalty: f32,
    /// Divides positive / multiplies negative logits of tokens in the prompt or output (> 0).
    pub repetition_penalty: f32,
    /// Softmax temperature; 0 (below 1e-5) = greedy.
    pub temperature: f32,
    /// Nucleus sampling: the smallest set of tokens with cumulative probability >= top_p.
    pub top_p: f32,
    /// Only the k most likely tokens; 0 or -1 = all.
    pub top_k: i32,
    /// Only tokens with probability >= min_p x the top token's.
    pub min_p: f32,
    /// Per-request RNG seed: the same seed gives the same tokens alone or in any batch.
    pub seed: Option<u64>,
    /// Generation stops when the text contains one of these (not included unless asked).
    pub stop: Vec<String>,
    /// Generation stops after one of these tokens (which is kept in the output).
    pub stop_token_ids: Vec<u32>,
    /// Keep generating after end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Most tokens to generate; `None` = until `max_model_len`.
    pub max_tokens: Option<usize>,
    /// Least tokens to generate before eos / stop tokens / stop strings may end the request.
    pub min_tokens: usize,
    /// Top-k log-probabilities of each generated token (plus the chosen one).
    pub logprobs: Option<usize>,
    /// Top-k log-probabilities of each prompt token (plus the actual one).
    pub prompt_logprobs: Option<usize>,
    /// Added to the logits of these token ids (-100..=100).
    pub logit_bias: BTreeMap<u32, f32>,
    /// Only these token ids may be sampled.
    pub allowed_token_ids: Option<Vec<u32>>,
    /// Words that may never be generated (each tokenized with and without a leading space).
    pub bad_words: Vec<String>,
    /// Drop special tokens from the output text.
    pub skip_special_tokens: bool,
    /// Keep the matched stop string at the end of the text.
    pub include_stop_str_in_output: bool,
    /// Fill `text` (needs a tokenizer).
    pub detokenize: bool,
    pub output_kind: RequestOutputKind,
    /// `bad_words` as token-id sequences, filled by the engine from its tokenizer.
    #[serde(skip)]
    pub bad_words_token_ids: Vec<Vec<u32>>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            n: 1,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            repetition_penalty: 1.0,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            max_tokens: Some(16),
            min_tokens: 0,
            logprobs: None,
            prompt_logprobs: None,
            logit_bias: BTreeMap::new(),
            allowed_token_ids: None,
            bad_words: Vec::new(),
            skip_special_tokens: true,
            include_stop_str_in_output: false,
            detokenize: true,
            output_kind: RequestOutputKind::Cumulative,
            bad_words_token_ids: Vec::new(),
        }
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> Result<(), SamplingError> {
    Err(SamplingError { field, message: message.into() })
}

impl SamplingParams {
    /// Greedy decoding of up to `max_tokens` tokens.
    pub fn greedy(max_tokens: usize) -> Self {
        SamplingParams { temperature: 0.0, max_tokens: Some(max_tokens), ..Default::default() }
    }

    /// Greedy (argmax) decoding: temperature below [`SAMPLING_EPS`].
    pub fn is_greedy(&self) -> bool {
        self.temperature < SAMPLING_EPS
    }

    /// `top_k` as a count, `None` when it does not restrict.
    pub fn top_k(&self) -> Option<usize> {
        (self.top_k > 0).then_some(self.top_k as usize)
    }

    /// Whether some knob needs the raw logits on the host before sampling (penalties, biases,
    /// token masks, min_tokens); the rest (temperature, top-k/p, min-p) can run on the device.
    pub fn needs_logits_processing(&self) -> bool {
        self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0
            || self.repetition_penalty != 1.0
            || !self.logit_bias.is_empty()
            || self.allowed_token_ids.is_some()
            || !self.bad_words.is_empty()
            || !self.bad_words_token_ids.is_empty()
            || self.min_tokens > 0
    }

    /// Checks every field against vLLM's rules; the error names the field. `vocab_size`
    /// bounds token ids when given.
    pub fn validate(&self, vocab_size: Option<usize>) -> Result<(), SamplingError> {
        if self.n < 1 {
            return bad("n", format!("must be at least 1, got {}", self.n));
        }
        for (field, v) in [("presence_penalty", self.presence_penalty), ("frequency_penalty", self.frequency_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(field, format!("must be in [-2, 2], got {v}"));
            }
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", format!("must be greater than zero, got {}", self.repetition_penalty));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", format!("must be non-negative, got {}", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", format!("must be in (0, 1], got {}", self.top_p));
        }
        if self.top_k < -1 {
            return bad("top_k", format!("must be -1 or 0 (disable), or at least 1, got {}", self.top_k));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", format!("must be in [0, 1], got {}", self.min_p));
        }
        if self.max_tokens == Some(0) {
            return bad("max_tokens", "must be at least 1, got 0");
        }
        if let Some(m) = self.max_tokens {
            if self.min_tokens > m {
                return bad("min_tokens", format!("must be less than or equal to max_tokens={m}, got {}", self.min_tokens));
            }
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop", "stop strings cannot be empty");
        }
        for (id, b) in &self.logit_bias {
            if !(-100.0..=100.0).contains(b) {
                return bad("logit_bias", format!("bias of token {id} must be in [-100, 100], got {b}"));
            }
        }
        if let Some(a) = &self.allowed_token_ids {
            if a.is_empty() {
                return bad("allowed_token_ids", "cannot be empty");
            }
        }
        if let Some(v) = vocab_size {
            let out = |ids: &mut dyn Iterator<Item = &u32>| ids.copied().find(|&t| t as usize >= v);
            if let Some(t) = out(&mut self.logit_bias.keys()) {
                return bad("logit_bias", format!("token id {t} is out of vocabulary (size {v})"));
            }
            if let Some(t) = out(&mut self.allowed_token_ids.iter().flatten()) {
                return bad("allowed_token_ids", format!("token id {t} is out of vocabulary (size {v})"));
            }
            if let Some(t) = out(&mut self.stop_token_ids.iter()) {
                return bad("stop_token_ids", format!("token id {t} is out of vocabulary (size {v})"));
            }
        }
        Ok(())
    }
}
