//! Driving one API request through the engine, shared by completions and chat: submit one
//! engine request per prompt, wait until each is accepted (so a rejection is still a plain
//! 4xx), then merge their events into one stream, or collect them into whole choices.
//!
//! ```text
//! prompts ──submit──> RequestHandle × P ──accepted?──> Merged { select_all(handle events) }
//!                                                        │ (prompt index, Event)
//!                        collect() -> Vec<Choice> <──────┤
//!                        SSE task  -> chunks     <───────┘
//! ```
//! Dropping `Merged` drops the handles, which aborts whatever has not finished.

use std::pin::Pin;

use futures_util::stream::{self, BoxStream, SelectAll, StreamExt};

use super::engine::{EngineRequest, Event, Finish, RequestHandle, RequestUpdate, SeqDelta, TokenLogprobs};
use super::error::ApiError;
use super::params::SamplingConfig;
use super::protocol::StopReason;
use super::state::AppState;

/// One prompt of a request, tokenized.
#[derive(Clone, Debug)]
pub struct PromptJob {
    pub token_ids: Vec<u32>,
    /// Echo text (completions with `echo`).
    pub text: Option<String>,
    pub max_tokens: usize,
}

type Tagged = (usize, Event);

/// The events of all prompts of one API request.
pub struct Merged {
    inner: SelectAll<BoxStream<'static, Tagged>>,
    pub n: usize,
    pub prompt_lens: Vec<usize>,
}

fn events(idx: usize, h: RequestHandle) -> BoxStream<'static, Tagged> {
    stream::unfold(h, move |mut h| async move { h.next().await.map(|e| ((idx, e), h)) }).boxed()
}

/// Submits every prompt and waits for the engine to accept each one.
pub async fn submit(state: &AppState, base_id: &str, jobs: &[PromptJob], params: &SamplingConfig) -> Result<Merged, ApiError> {
    let mut handles = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let req = EngineRequest {
            request_id: if jobs.len() == 1 { base_id.to_string() } else { format!("{base_id}-{i}") },
            prompt_token_ids: job.token_ids.clone(),
            params: params.clone(),
            max_tokens: job.max_tokens,
        };
        tracing::debug!(request_id = %req.request_id, prompt_tokens = req.prompt_token_ids.len(), max_tokens = req.max_tokens, n = params.n, "request received");
        handles.push(state.engine().submit(req)?);
    }
    let mut inner = SelectAll::new();
    for (i, mut h) in handles.into_iter().enumerate() {
        match h.next().await {
            Some(Event::Accepted) => inner.push(events(i, h)),
            Some(Event::Error(e)) => return Err(e),
            Some(Event::Update(_)) => return Err(ApiError::Internal("engine sent output before accepting the request".into())),
            None => return Err(ApiError::Unavailable("the server is shutting down".into())),
        }
    }
    Ok(Merged { inner, n: params.n, prompt_lens: jobs.iter().map(|j| j.token_ids.len()).collect() })
}

impl Merged {
    /// The next (prompt index, update); `Err` for an engine error or a shutdown.
    pub async fn next(&mut self) -> Option<Result<(usize, RequestUpdate), ApiError>> {
        loop {
            let (idx, ev) = Pin::new(&mut self.inner).next().await?;
            return Some(match ev {
                Event::Update(u) => Ok((idx, u)),
                Event::Error(e) => Err(e),
                Event::Accepted => continue,
            });
        }
    }

    /// The API-level choice index of a sequence: prompts in order, `n` choices each.
    pub fn choice_index(&self, prompt: usize, seq: usize) -> usize {
        prompt * self.n + seq
    }

    pub fn num_choices(&self) -> usize {
        self.prompt_lens.len() * self.n
    }

    pub fn prompt_tokens(&self) -> usize {
        self.prompt_lens.iter().sum()
    }

    /// Collects every sequence to its end. A shutdown midway is a 503.
    pub async fn collect(mut self) -> Result<Vec<Choice>, ApiError> {
        let mut choices: Vec<Choice> = (0..self.num_choices()).map(|_| Choice::default()).collect();
        let mut open = self.prompt_lens.len();
        while open > 0 {
            match self.next().await {
                Some(Ok((p, u))) => {
                    for d in u.deltas {
                        let i = self.choice_index(p, d.index);
                        choices.get_mut(i).ok_or_else(|| ApiError::Internal(format!("engine sent sequence index {}", d.index)))?.push(d);
                    }
                    if u.finished {
                        open -= 1;
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Err(ApiError::Unavailable("the server shut down before the request finished".into())),
            }
        }
        Ok(choices)
    }
}

/// One whole choice.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    pub token_ids: Vec<u32>,
    pub text: String,
    pub logprobs: Vec<TokenLogprobs>,
    pub finish_reason: Option<Finish>,
    pub stop_reason: Option<StopReason>,
}

impl Choice {
    pub fn push(&mut self, d: SeqDelta) {
        self.token_ids.extend(d.token_ids);
        self.text.push_str(&d.text);
        self.logprobs.extend(d.logprobs);
        if d.finish_reason.is_some() {
            self.finish_reason = d.finish_reason;
            self.stop_reason = d.stop_reason;
        }
    }

    pub fn finish_str(&self) -> Option<&'static str> {
        self.finish_reason.map(Finish::as_str)
    }
}

/// Runs CPU-bound request preparation (tokenizing, templates) off the async workers.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("request preparation failed: {e}")))?
}
