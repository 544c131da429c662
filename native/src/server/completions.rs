//! `POST /v1/completions`: prompts as a string, strings, token ids or lists of token ids;
//! `n`, `echo`, `logprobs`, `stop`, `seed`, usage; whole or streamed (SSE).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::engine::TokenLogprobs;
use super::error::ApiError;
use super::generate::{blocking, submit, Choice, Merged, PromptJob};
use super::json::ApiJson;
use super::params::{resolve_max_tokens, validate};
use super::protocol::{CompletionChoice, CompletionLogprobs, CompletionRequest, CompletionResponse, PromptInput, Skip, Usage};
use super::sse::{sse_response, SseSender};
use super::state::{unix_now, AppState, ModelInfo};

/// Default `max_tokens` of the completions API (vLLM's and OpenAI's).
const DEFAULT_MAX_TOKENS: usize = 16;

pub async fn create_completion(State(state): State<AppState>, ApiJson(req): ApiJson<CompletionRequest>) -> Result<Response, ApiError> {
    let (model, name) = state.model_for(req.sampling.model.as_deref())?;
    if req.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::param("suffix", "suffix is not currently supported"));
    }
    let f = &req.sampling;
    let params = validate(f, f.max_tokens, Some(DEFAULT_MAX_TOKENS), req.logprobs, &model.defaults, model.limits())?;
    let prompt = req.prompt.clone().ok_or_else(|| ApiError::param("prompt", "prompt is required"))?;
    let add_special = f.add_special_tokens.unwrap_or(true);
    let echo = f.echo.unwrap_or(false);
    let max_tokens = params.max_tokens;
    let m = model.clone();
    let jobs = blocking(move || prepare(&m, prompt, add_special, echo, max_tokens)).await?;
    let id = state.request_id("cmpl");
    let merged = submit(&state, &id, &jobs, &params).await?;
    let out = Out { id, model: model.clone(), name, created: unix_now(), echo,
        return_ids: f.return_token_ids.unwrap_or(false),
        want_logprobs: params.logprobs.is_some(),
    };
    if f.stream == Some(true) {
        let include_usage = f.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        return Ok(sse_response(move |tx| stream(out, jobs, merged, include_usage, tx)));
    }
    let prompt_tokens = merged.prompt_tokens();
    let n = merged.n;
    let choices = merged.collect().await?;
    let completion_tokens = choices.iter().map(|c| c.token_ids.len()).sum();
    let choices = choices.into_iter().enumerate().map(|(i, c)| out.choice(i, &jobs[i / n], c, true)).collect();
    Ok(axum::Json(out.response(choices, Skip::Some(Usage::new(prompt_tokens, completion_tokens)))).into_response())
}

/// Tokenizes and checks every prompt; each gets its own `max_tokens` within max_model_len.
fn prepare(m: &ModelInfo, prompt: PromptInput, add_special: bool, echo: bool, max_tokens: Option<usize>) -> Result<Vec<PromptJob>, ApiError> {
    let prompts: Vec<(Option<String>, Vec<u32>)> = match prompt {
        PromptInput::Text(t) => vec![(Some(t), Vec::new())],
        PromptInput::Texts(ts) => ts.into_iter().map(|t| (Some(t), Vec::new())).collect(),
        PromptInput::Ids(ids) => vec![(None, check_ids(m, &ids)?)],
        PromptInput::IdLists(ls) => ls.iter().map(|ids| Ok((None, check_ids(m, ids)?))).collect::<Result<_, ApiError>>()?,
    };
    if prompts.is_empty() {
        return Err(ApiError::param("prompt", "prompt must not be an empty list"));
    }
    let mut jobs = Vec::with_capacity(prompts.len());
    for (text, ids) in prompts {
        let ids = match &text {
            Some(t) => m.tokenizer()?.encode(t, add_special)?,
            None => ids,
        };
        if ids.is_empty() {
            return Err(ApiError::param("prompt", "the prompt is empty: it must have at least one token"));
        }
        let max = resolve_max_tokens(ids.len(), max_tokens, m.max_model_len)?;
        let text = match (echo, text) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(m.decode(&ids, false)?),
        };
        jobs.push(PromptJob { token_ids: ids, text, max_tokens: max });
    }
    Ok(jobs)
}

fn check_ids(m: &ModelInfo, ids: &[i64]) -> Result<Vec<u32>, ApiError> {
    ids.iter()
        .map(|&t| {
            if t < 0 || t as u64 >= m.vocab_size as u64 {
                Err(ApiError::param("prompt", format!("prompt token id {t} is out of range for the model's vocabulary of {} tokens", m.vocab_size)))
            } else {
                Ok(t as u32)
            }
        })
        .collect()
}

/// What every choice and chunk of one response shares.
struct Out {
    id: String,
    model: std::sync::Arc<ModelInfo>,
    name: String,
    created: u64,
    echo: bool,
    return_ids: bool,
    want_logprobs: bool,
}

impl Out {
    fn response(&self, choices: Vec<CompletionChoice>, usage: Skip<Usage>) -> CompletionResponse {
        CompletionResponse { id: self.id.clone(), object: "text_completion", created: self.created, model: self.name.clone(), choices, usage }
    }

    /// A choice (or a streamed piece of one); `first` prepends the echo.
    fn choice(&self, index: usize, job: &PromptJob, c: Choice, first: bool) -> CompletionChoice {
        let prefix = if self.echo && first { job.text.clone().unwrap_or_default() } else { String::new() };
        let logprobs = self.want_logprobs.then(|| logprobs(&self.model, &c.logprobs, prefix.len()));
        CompletionChoice {
            index,
            text: prefix + &c.text,
            logprobs,
            finish_reason: c.finish_str(),
            stop_reason: c.stop_reason,
            token_ids: self.return_ids.then_some(c.token_ids),
            prompt_token_ids: (self.return_ids && first).then(|| job.token_ids.clone()),
        }
    }
}

/// The legacy logprobs object: token strings, their logprobs, the top alternatives and the
/// text offset of each token.
fn logprobs(m: &ModelInfo, lps: &[TokenLogprobs], base_offset: usize) -> CompletionLogprobs {
    let mut out = CompletionLogprobs::default();
    let mut offset = base_offset;
    for lp in lps {
        let tok = m.token_str(lp.token_id);
        out.text_offset.push(offset);
        offset += tok.len();
        let mut top = serde_json::Map::new();
        for &(id, l) in &lp.top {
            top.insert(m.token_str(id), serde_json::json!(l));
        }
        top.entry(tok.clone()).or_insert(serde_json::json!(lp.logprob));
        out.token_logprobs.push(Some(lp.logprob));
        out.tokens.push(tok);
        out.top_logprobs.push(Some(top));
    }
    out
}

async fn stream(out: Out, jobs: Vec<PromptJob>, mut merged: Merged, include_usage: bool, tx: SseSender) {
    let mut started = vec![false; merged.num_choices()];
    let mut completion_tokens = 0;
    let mut open = jobs.len();
    while open > 0 {
        let item = tokio::select! {
            _ = tx.closed() => return,
            item = merged.next() => item,
        };
        let (p, u) = match item {
            Some(Ok(x)) => x,
            Some(Err(e)) => {
                tx.send_error(&e).await;
                return tx.done().await;
            }
            None => {
                tx.send_error(&ApiError::Unavailable("the server shut down before the request finished".into())).await;
                return tx.done().await;
            }
        };
        if u.finished {
            open -= 1;
        }
        for d in u.deltas {
            let i = merged.choice_index(p, d.index);
            let Some(first) = started.get_mut(i).map(|s| !std::mem::replace(s, true)) else { continue };
            if d.token_ids.is_empty() && d.text.is_empty() && d.finish_reason.is_none() && !(first && out.echo) {
                continue;
            }
            completion_tokens += d.token_ids.len();
            let mut c = Choice::default();
            c.push(d);
            let chunk = out.response(vec![out.choice(i, &jobs[p], c, first)], Skip::Omit);
            if !tx.send_json(&chunk).await {
                return;
            }
        }
    }
    if include_usage {
        let usage = Usage::new(merged.prompt_tokens(), completion_tokens);
        tx.send_json(&out.response(Vec::new(), Skip::Some(usage))).await;
    }
    tx.done().await;
}
