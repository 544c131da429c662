//! Turns what the scheduler reports each step (`EngineCoreOutput`: new token ids, logprobs,
//! finish) into vLLM-shaped `RequestOutput`s: incremental text, stop strings, and the fan-in
//! of `n > 1` child requests into one output per parent request.
//!
//! ```text
//! parent "req"  n = 3  ->  children "0_req", "1_req", "2_req" (independent requests to the
//!                          scheduler; seeds seed, seed+1, seed+2; the prefix cache shares the
//!                          prompt's full blocks)
//! one step's child outputs -> one RequestOutput for "req" (per its output_kind)
//! ```

use std::collections::HashMap;

use super::detokenizer::IncrementalDetokenizer;
use super::output::{CompletionOutput, FinishReason, RequestOutput};
use crate::error::Result;
use crate::sample::{RequestOutputKind, SamplingParams};
use crate::sched::{EngineCoreOutput, StopReason, TopLogprobs};
use crate::tokenizer::Tokenizer;

struct ChildState {
    parent_id: String,
    index: usize,
    detok: Option<IncrementalDetokenizer>,
    token_ids: Vec<u32>,
    logprobs: Option<Vec<TopLogprobs>>,
    cumulative_logprob: f64,
    sent_tokens: usize,
    finish_reason: Option<FinishReason>,
    stop_reason: Option<StopReason>,
}

struct ParentState {
    prompt: Option<String>,
    prompt_token_ids: Vec<u32>,
    prompt_logprobs: Option<Vec<Option<TopLogprobs>>>,
    sent_prompt_logprobs: bool,
    kind: RequestOutputKind,
    children: Vec<String>,
    latest: Vec<Option<CompletionOutput>>,
    num_cached_tokens: usize,
}

impl ParentState {
    fn finished(&self) -> bool {
        self.latest.iter().all(|c| c.as_ref().is_some_and(CompletionOutput::finished))
    }
}

#[derive(Default)]
pub struct OutputProcessor {
    parents: HashMap<String, ParentState>,
    children: HashMap<String, ChildState>,
}

impl OutputProcessor {
    pub fn contains(&self, request_id: &str) -> bool {
        self.parents.contains_key(request_id)
    }

    pub fn num_unfinished(&self) -> usize {
        self.parents.len()
    }

    /// Registers a request and its child ids (one per completion).
    pub fn add_request(&mut self, request_id: &str, prompt: Option<String>, prompt_token_ids: Vec<u32>, params: &SamplingParams, children: Vec<String>, detokenize: bool) {
        for (index, child) in children.iter().enumerate() {
            self.children.insert(
                child.clone(),
                ChildState {
                    parent_id: request_id.to_string(),
                    index,
                    detok: detokenize.then(|| IncrementalDetokenizer::new(&prompt_token_ids, params)),
                    token_ids: Vec::new(),
                    logprobs: params.logprobs.map(|_| Vec::new()),
                    cumulative_logprob: 0.0,
                    sent_tokens: 0,
                    finish_reason: None,
                    stop_reason: None,
                },
            );
        }
        let n = children.len();
        self.parents.insert(
            request_id.to_string(),
            ParentState {
                prompt,
                prompt_logprobs: params.prompt_logprobs.map(|_| vec![None; prompt_token_ids.len()]),
                prompt_token_ids,
                sent_prompt_logprobs: false,
                kind: params.output_kind,
                children,
                latest: vec![None; n],
                num_cached_tokens: 0,
            },
        );
    }

    /// Forgets a request; returns its child ids (to abort in the scheduler).
    pub fn remove(&mut self, request_id: &str) -> Vec<String> {
        let Some(p) = self.parents.remove(request_id) else { return Vec::new() };
        for c in &p.children {
            self.children.remove(c);
        }
        p.children
    }

    /// Applies one step's outputs. Returns the `RequestOutput`s to report and the children that
    /// a stop string finished (the scheduler must end them).
    pub fn process(&mut self, outs: Vec<EngineCoreOutput>, tok: Option<&Tokenizer>) -> Result<(Vec<RequestOutput>, Vec<String>)> {
        let mut stopped = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let mut deltas: HashMap<String, Vec<CompletionOutput>> = HashMap::new();
        for o in outs {
            let Some(c) = self.children.get_mut(&o.request_id) else { continue };
            let Some(p) = self.parents.get_mut(&c.parent_id) else { continue };
            if c.index == 0 {
                p.num_cached_tokens = o.num_cached_tokens;
                if let Some(pl) = p.prompt_logprobs.as_mut() {
                    for (j, lp) in o.new_prompt_logprobs.into_iter().enumerate() {
                        if let Some(slot) = pl.get_mut(o.prompt_logprobs_start + j) {
                            slot.get_or_insert(lp);
                        }
                    }
                }
            }
            c.token_ids.extend_from_slice(&o.new_token_ids);
            for lp in &o.new_logprobs {
                if let Some(t) = o.new_token_ids.first() {
                    c.cumulative_logprob += lp.iter().find(|(id, _)| id == t).map_or(0.0, |x| x.1 as f64);
                }
            }
            if let Some(v) = c.logprobs.as_mut() {
                v.extend(o.new_logprobs);
            }
            c.finish_reason = o.finish_reason;
            c.stop_reason = o.stop_reason;
            if let (Some(d), Some(tok)) = (c.detok.as_mut(), tok) {
                if let Some(s) = d.update(tok, &o.new_token_ids)? {
                    if c.finish_reason.is_none() {
                        stopped.push(o.request_id.clone());
                    }
                    c.finish_reason = Some(FinishReason::Stop);
                    c.stop_reason = Some(StopReason::Str(s));
                }
            }
            if o.new_token_ids.is_empty() && c.finish_reason.is_none() && p.kind != RequestOutputKind::Cumulative {
                // Only prompt logprobs arrived; they are reported with the first token.
                continue;
            }
            let finished = c.finish_reason.is_some();
            let delta = p.kind == RequestOutputKind::Delta;
            let text = c.detok.as_mut().map(|d| d.get_next_output_text(finished, delta)).unwrap_or_default();
            let from = if delta { c.sent_tokens } else { 0 };
            let completion = CompletionOutput {
                index: c.index,
                text,
                token_ids: c.token_ids[from..].to_vec(),
                cumulative_logprob: c.logprobs.as_ref().map(|_| c.cumulative_logprob),
                logprobs: c.logprobs.as_ref().map(|v| v[from.min(v.len())..].to_vec()),
                finish_reason: c.finish_reason,
                stop_reason: c.stop_reason.clone(),
            };
            c.sent_tokens = c.token_ids.len();
            if delta {
                deltas.entry(c.parent_id.clone()).or_default().push(completion.clone());
            }
            p.latest[c.index] = Some(completion);
            if !touched.contains(&c.parent_id) {
                touched.push(c.parent_id.clone());
            }
        }

        let mut result = Vec::new();
        for id in touched {
            let p = self.parents.get_mut(&id).expect("touched parent exists");
            let finished = p.finished();
            let outputs: Vec<CompletionOutput> = match p.kind {
                RequestOutputKind::FinalOnly if !finished => continue,
                RequestOutputKind::Delta => deltas.remove(&id).unwrap_or_default(),
                _ => p.latest.iter().flatten().cloned().collect(),
            };
            let send_prompt_lp = !(p.kind == RequestOutputKind::Delta && p.sent_prompt_logprobs);
            p.sent_prompt_logprobs = true;
            result.push(RequestOutput {
                request_id: id.clone(),
                prompt: p.prompt.clone(),
                prompt_token_ids: p.prompt_token_ids.clone(),
                prompt_logprobs: if send_prompt_lp { p.prompt_logprobs.clone() } else { None },
                outputs,
                finished,
                num_cached_tokens: p.num_cached_tokens,
            });
            if finished {
                self.remove(&id);
            }
        }
        Ok((result, stopped))
    }
}
