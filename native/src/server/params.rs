//! Request validation: the wire fields of a (chat) completion request become a checked
//! `SamplingConfig`, with vLLM's rules and messages (numbers included), and the per-prompt
//! `max_tokens` is checked against `max_model_len`.
//!
//! ```text
//! SamplingFields (+ logprobs, max_tokens) ──validate()──> SamplingConfig (max_tokens: Option)
//!        + generation defaults (--generation-config auto)        │
//!                                        prompt length ──resolve_max_tokens()──> usize
//! ```

use super::error::ApiError;
use super::protocol::SamplingFields;

/// Requests may not ask for more top logprobs than this (vLLM's `--max-logprobs` default).
pub const MAX_LOGPROBS: usize = 20;
/// Largest `n` accepted (OpenAI's own limit).
pub const MAX_N: usize = 128;

/// Generation defaults: the model's generation_config.json (`--generation-config auto`) or
/// none (`vllm`). A field the request leaves out takes the default, else vLLM's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenDefaults {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_tokens: Option<usize>,
}

/// What validation needs to know about the model.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_model_len: usize,
    pub vocab_size: usize,
}

/// Validated sampling parameters (vLLM's `SamplingParams` vocabulary).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingConfig {
    pub n: usize,
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = off (vLLM's -1 is mapped to 0).
    pub top_k: u32,
    pub min_p: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub repetition_penalty: f32,
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    /// None: up to `max_model_len` (decided per prompt by [`resolve_max_tokens`]).
    pub max_tokens: Option<usize>,
    pub min_tokens: usize,
    /// Top logprobs per generated token (0 = only the chosen token's).
    pub logprobs: Option<usize>,
    pub prompt_logprobs: Option<usize>,
    pub logit_bias: Vec<(u32, f32)>,
    pub allowed_token_ids: Option<Vec<u32>>,
    pub bad_words: Vec<String>,
    pub skip_special_tokens: bool,
    pub spaces_between_special_tokens: bool,
    pub priority: i32,
}

fn finite(name: &str, v: f64) -> Result<f64, ApiError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ApiError::param(name, format!("{name} must be a finite number, got {v}")))
    }
}

fn token_id(name: &str, id: i64, vocab: usize) -> Result<u32, ApiError> {
    if id < 0 || id as u64 >= vocab as u64 {
        return Err(ApiError::param(name, format!("{name} contains token id {id}, which is out of range for the model's vocabulary of {vocab} tokens")));
    }
    Ok(id as u32)
}

/// Checks the fields of a request. `max_tokens` is the request's `max_tokens` (chat: or
/// `max_completion_tokens`), `default_max_tokens` what applies when it is absent (16 for
/// completions, as vLLM and OpenAI; None for chat), `logprobs` the requested top logprobs.
pub fn validate(
    f: &SamplingFields,
    max_tokens: Option<i64>,
    default_max_tokens: Option<usize>,
    logprobs: Option<i64>,
    defaults: &GenDefaults,
    limits: Limits,
) -> Result<SamplingConfig, ApiError> {
    let n = f.n.unwrap_or(1);
    if n < 1 {
        return Err(ApiError::param("n", format!("n must be at least 1, got {n}.")));
    }
    if n as u64 > MAX_N as u64 {
        return Err(ApiError::param("n", format!("n must be at most {MAX_N}, got {n}.")));
    }
    if let Some(b) = f.best_of {
        if b != n {
            return Err(ApiError::param("best_of", format!("best_of is not supported: it must be unset or equal to n ({n}), got {b}.")));
        }
    }
    let temperature = match f.temperature {
        Some(t) => finite("temperature", t)?,
        None => defaults.temperature.map_or(1.0, f64::from),
    };
    if temperature < 0.0 {
        return Err(ApiError::param("temperature", format!("temperature must be non-negative, got {temperature}.")));
    }
    let top_p = match f.top_p {
        Some(p) => finite("top_p", p)?,
        None => defaults.top_p.map_or(1.0, f64::from),
    };
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::param("top_p", format!("top_p must be in (0, 1], got {top_p}.")));
    }
    let top_k = f.top_k.or(defaults.top_k.map(i64::from)).unwrap_or(0);
    if top_k < -1 {
        return Err(ApiError::param("top_k", format!("top_k must be 0 or -1 (disable), or at least 1, got {top_k}.")));
    }
    let top_k = if top_k <= 0 { 0 } else { top_k.min(u32::MAX as i64) as u32 };
    let min_p = match f.min_p {
        Some(p) => finite("min_p", p)?,
        None => defaults.min_p.map_or(0.0, f64::from),
    };
    if !(0.0..=1.0).contains(&min_p) {
        return Err(ApiError::param("min_p", format!("min_p must be in [0, 1], got {min_p}.")));
    }
    let penalty = |name: &str, v: Option<f64>| -> Result<f32, ApiError> {
        let v = finite(name, v.unwrap_or(0.0))?;
        if !(-2.0..=2.0).contains(&v) {
            return Err(ApiError::param(name, format!("{name} must be in [-2, 2], got {v}.")));
        }
        Ok(v as f32)
    };
    let presence_penalty = penalty("presence_penalty", f.presence_penalty)?;
    let frequency_penalty = penalty("frequency_penalty", f.frequency_penalty)?;
    let repetition_penalty = match f.repetition_penalty {
        Some(r) => finite("repetition_penalty", r)?,
        None => defaults.repetition_penalty.map_or(1.0, f64::from),
    };
    if repetition_penalty <= 0.0 {
        return Err(ApiError::param("repetition_penalty", format!("repetition_penalty must be greater than zero, got {repetition_penalty}.")));
    }
    let max_tokens = match max_tokens {
        Some(m) if m < 1 => {
            return Err(ApiError::param("max_tokens", format!("max_tokens must be at least 1, got {m}.")));
        }
        Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        None => defaults.max_tokens.or(default_max_tokens),
    };
    let min_tokens = f.min_tokens.unwrap_or(0);
    if min_tokens < 0 {
        return Err(ApiError::param("min_tokens", format!("min_tokens must be greater than or equal to 0, got {min_tokens}.")));
    }
    let min_tokens = min_tokens as usize;
    if let Some(m) = max_tokens {
        if min_tokens > m {
            return Err(ApiError::param("min_tokens", format!("min_tokens must be less than or equal to max_tokens={m}, got {min_tokens}.")));
        }
    }
    let logprobs = check_logprobs("logprobs", logprobs)?;
    let prompt_logprobs = check_logprobs("prompt_logprobs", f.prompt_logprobs)?;
    let stop = f.stop.clone().map(|s| s.into_vec()).unwrap_or_default();
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::param("stop", "stop cannot contain an empty string."));
    }
    let vocab = limits.vocab_size;
    let stop_token_ids = f
        .stop_token_ids
        .iter()
        .flatten()
        .map(|&t| token_id("stop_token_ids", t, vocab))
        .collect::<Result<Vec<_>, _>>()?;
    let mut logit_bias = Vec::new();
    for (k, &v) in f.logit_bias.iter().flatten() {
        let id: i64 = k
            .trim()
            .parse()
            .map_err(|_| ApiError::param("logit_bias", format!("logit_bias keys must be token ids, got {k:?}")))?;
        let id = token_id("logit_bias", id, vocab)?;
        let v = finite("logit_bias", v)?;
        logit_bias.push((id, v.clamp(-100.0, 100.0) as f32));
    }
    let allowed_token_ids = match &f.allowed_token_ids {
        Some(ids) if ids.is_empty() => return Err(ApiError::param("allowed_token_ids", "allowed_token_ids is not allowed to be empty.")),
        Some(ids) => Some(ids.iter().map(|&t| token_id("allowed_token_ids", t, vocab)).collect::<Result<Vec<_>, _>>()?),
        None => None,
    };
    let priority = f.priority.unwrap_or(0);
    if priority.unsigned_abs() > i32::MAX as u64 {
        return Err(ApiError::param("priority", format!("priority must fit in 32 bits, got {priority}")));
    }
    if f.stream_options.is_some() && f.stream != Some(true) {
        return Err(ApiError::param("stream_options", "Stream options can only be defined when `stream=True`."));
    }
    Ok(SamplingConfig {
        n: n as usize,
        temperature: temperature as f32,
        top_p: top_p as f32,
        top_k,
        min_p: min_p as f32,
        presence_penalty,
        frequency_penalty,
        repetition_penalty: repetition_penalty as f32,
        seed: f.seed.map(|s| s as u64),
        stop,
        stop_token_ids,
        include_stop_str_in_output: f.include_stop_str_in_output.unwrap_or(false),
        ignore_eos: f.ignore_eos.unwrap_or(false),
        max_tokens,
        min_tokens,
        logprobs,
        prompt_logprobs,
        logit_bias,
        allowed_token_ids,
        bad_words: f.bad_words.clone().unwrap_or_default(),
        skip_special_tokens: f.skip_special_tokens.unwrap_or(true),
        spaces_between_special_tokens: f.spaces_between_special_tokens.unwrap_or(true),
        priority: priority as i32,
    })
}

fn check_logprobs(name: &str, v: Option<i64>) -> Result<Option<usize>, ApiError> {
    match v {
        None => Ok(None),
        Some(k) if k < 0 => Err(ApiError::param(name, format!("{name} must be non-negative, got {k}."))),
        Some(k) if k as u64 > MAX_LOGPROBS as u64 => Err(ApiError::param(
            name,
            format!("Requested {name} of {k}, which is greater than max allowed: {MAX_LOGPROBS}"),
        )),
        Some(k) => Ok(Some(k as usize)),
    }
}

/// The number of tokens to generate for a prompt of `prompt_len` tokens: the request's
/// `max_tokens`, or all the room left; an error with the numbers when it does not fit.
pub fn resolve_max_tokens(prompt_len: usize, max_tokens: Option<usize>, max_model_len: usize) -> Result<usize, ApiError> {
    if prompt_len >= max_model_len {
        return Err(ApiError::param(
            "messages",
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, your request has {prompt_len} input tokens. Please reduce the length of the input messages."
            ),
        ));
    }
    match max_tokens {
        None => Ok(max_model_len - prompt_len),
        Some(m) if m > max_model_len - prompt_len => Err(ApiError::param(
            "max_tokens",
            format!(
                "This model's maximum context length is {max_model_len} tokens. However, you requested {} tokens ({prompt_len} in the messages, {m} in the completion). Please reduce the length of the messages or completion.",
                prompt_len.saturating_add(m)
            ),
        )),
        Some(m) => Ok(m),
    }
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
