//! `Engine`: requests in, `RequestOutput`s out, one `step` at a time — the scheduler, the
//! model runner and the output processor wired together (vLLM's `LLMEngine` + `EngineCore`).
//!
//! ```text
//! add_request ─> validate, tokenize, fan out n>1 ─> Scheduler::add_request (waiting)
//! step():  Scheduler::schedule ─> launch (forward + sample) ─> collect ─> update_from_output
//!          ─> OutputProcessor (detokenize, stop strings, n>1 fan-in) ─> Vec<RequestOutput>
//! ```
//! Async scheduling (`EngineConfig::async_scheduling`, vLLM's): while step N's sampled ids
//! are on the device, step N+1 is scheduled and launched behind it (its input ids fed from
//! N's on the device), then N is collected; `step` returns N's outputs and leaves N+1 in
//! flight. The device never waits for the host between steps. Any request that needs its
//! logits or history on the host (logprobs, penalties, bad words, ...) turns it off until the
//! step in flight is collected.
//! After a step returns an error the engine's state is unspecified: drop it.

use super::executor::{collect, launch, StepInFlight};
use super::input_batch::InputBatch;
use super::output::RequestOutput;
use super::output_processor::OutputProcessor;
use super::runner::ModelRunner;
use crate::backend::{Backend, Op};
use crate::tensor::DType;
use crate::error::{Error, Result};
use crate::kv::KVCacheManager;
use crate::sample::{Rng, SamplingParams};
use crate::sched::{Request, RequestStatus, Scheduler, SchedulerConfig, SchedulerStats, SchedulingPolicy};
use crate::tokenizer::Tokenizer;

/// A prompt: text (tokenized with special tokens, e.g. BOS) or token ids.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    Text(String),
    Tokens(Vec<u32>),
    /// Token ids with the text they came from (a rendered chat, say), reported as `prompt`.
    TextTokens(String, Vec<u32>),
}

impl From<&str> for Prompt {
    fn from(s: &str) -> Self {
        Prompt::Text(s.to_string())
    }
}
impl From<String> for Prompt {
    fn from(s: String) -> Self {
        Prompt::Text(s)
    }
}
impl From<Vec<u32>> for Prompt {
    fn from(t: Vec<u32>) -> Self {
        Prompt::Tokens(t)
    }
}
impl From<&[u32]> for Prompt {
    fn from(t: &[u32]) -> Self {
        Prompt::Tokens(t.to_vec())
    }
}

/// Scheduling limits and switches (vLLM's engine args of the same names).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_model_len: usize,
    pub enable_prefix_caching: bool,
    pub policy: SchedulingPolicy,
    /// Seeds the per-request seeds of requests that give none.
    pub seed: u64,
    /// Schedule and launch step N+1 before step N's tokens are read back (vLLM's
    /// `--async-scheduling`): the device feeds N's sampled ids into N+1's input, so it never
    /// idles while the host reads back and processes a step. Steps that need logits on the
    /// host (logprobs, penalties, ...) run synchronously.
    pub async_scheduling: bool,
}

impl EngineConfig {
    /// Defaults: 256 sequences, 2048 tokens a step, prefix caching on, FCFS, seed 0.
    pub fn new(max_model_len: usize) -> Self {
        EngineConfig {
            max_num_seqs: 256,
            max_num_batched_tokens: 2048,
            max_model_len,
            enable_prefix_caching: true,
            policy: SchedulingPolicy::Fcfs,
            seed: 0,
            async_scheduling: false,
        }
    }
}

/// Counters for logs and the server's /metrics (cumulative ones end in `_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EngineStats {
    pub num_running: usize,
    pub num_waiting: usize,
    /// Fraction of the usable KV blocks in use.
    pub kv_cache_usage: f32,
    pub num_preemptions_total: u64,
    pub prefix_cache_queries_total: u64,
    pub prefix_cache_hits_total: u64,
    /// Prompt tokens run through the model (recomputation after preemption included; prefix
    /// cache hits not).
    pub prompt_tokens_total: u64,
    pub generation_tokens_total: u64,
    pub num_steps_total: u64,
    pub num_finished_total: u64,
    /// Tokens in the last step.
    pub last_step_tokens: usize,
    /// Steps launched while the previous one was still on the device (async scheduling).
    pub num_pipelined_steps_total: u64,
}

pub struct Engine<B: Backend> {
    pub runner: ModelRunner<B>,
    scheduler: Scheduler,
    batch: InputBatch,
    outputs: OutputProcessor,
    tokenizer: Option<Tokenizer>,
    eos_token_ids: Vec<u32>,
    rng: Rng,
    stats: EngineStats,
    async_scheduling: bool,
    in_flight: Option<StepInFlight<B::Tensor>>,
}

impl<B: Backend> Engine<B> {
    /// An engine over `runner`'s KV cache (all its blocks go to the block pool).
    pub fn new(runner: ModelRunner<B>, config: EngineConfig, tokenizer: Option<Tokenizer>, eos_token_ids: Vec<u32>) -> Result<Self> {
        let kv = KVCacheManager::new(runner.num_blocks(), runner.block_size(), config.enable_prefix_caching)?;
        let async_scheduling = config.async_scheduling && runner.backend.supports(Op::ScatterIds, DType::U32);
        if config.async_scheduling && !async_scheduling {
            tracing::warn!(backend = runner.backend.name(), "async scheduling needs scatter_ids, which this backend lacks; steps run synchronously");
        }
        let sched_config = SchedulerConfig {
            max_num_seqs: config.max_num_seqs,
            max_num_batched_tokens: config.max_num_batched_tokens,
            max_model_len: config.max_model_len,
            policy: config.policy,
            async_scheduling,
        };
        Ok(Engine {
            runner,
            scheduler: Scheduler::new(sched_config, kv)?,
            batch: InputBatch::default(),
            outputs: OutputProcessor::default(),
            tokenizer,
            eos_token_ids,
            rng: Rng::new(config.seed),
            stats: EngineStats::default(),
            async_scheduling,
            in_flight: None,
        })
    }

    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    pub fn max_model_len(&self) -> usize {
        self.scheduler.config.max_model_len
    }

    /// Queues a request with priority 0.
    pub fn add_request(&mut self, request_id: impl Into<String>, prompt: impl Into<Prompt>, params: SamplingParams) -> Result<()> {
        self.add_request_with_priority(request_id, prompt, params, 0)
    }

    /// Queues a request; lower `priority` runs first under the `priority` policy.
    pub fn add_request_with_priority(
        &mut self,
        request_id: impl Into<String>,
        prompt: impl Into<Prompt>,
        mut params: SamplingParams,
        priority: i32,
    ) -> Result<()> {
        let request_id = request_id.into();
        let vocab = self.runner.model.config.vocab_size;
        params.validate(Some(vocab))?;
        if self.outputs.contains(&request_id) {
            return Err(Error::InvalidRequest(format!("request id {request_id} is already in use")));
        }
        let (text, ids) = match prompt.into() {
            Prompt::Tokens(ids) => (None, ids),
            Prompt::TextTokens(t, ids) => (Some(t), ids),
            Prompt::Text(t) => {
                let tok = self.tokenizer.as_ref().ok_or_else(|| {
                    Error::InvalidRequest("the model has no tokenizer, so text prompts cannot be tokenized; pass token ids".into())
                })?;
                let ids = tok.encode(&t, true)?;
                (Some(t), ids)
            }
        };
        if let Some(bad) = ids.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidRequest(format!("prompt token id {bad} is out of range for vocab_size {vocab}")));
        }
        let need_tok = (!params.stop.is_empty() && params.detokenize) || !params.bad_words.is_empty();
        if need_tok && self.tokenizer.is_none() {
            return Err(Error::InvalidRequest("stop strings and bad_words need a tokenizer, and this model has none".into()));
        }
        if !params.bad_words.is_empty() {
            params.bad_words_token_ids = self.tokenize_bad_words(&params.bad_words)?;
        }
        let seed = match params.seed {
            Some(s) => s,
            None => self.rng.next_u64(),
        };
        // n > 1 fans out into n requests that share the prompt's full KV blocks through the
        // prefix cache (vLLM v1's way): each child recomputes only the prompt's last partial
        // block, so no block is ever written by two requests and no copy-on-write is needed.
        let n = params.n;
        let children: Vec<String> = if n == 1 { vec![request_id.clone()] } else { (0..n).map(|i| format!("{i}_{request_id}")).collect() };
        for (i, child) in children.iter().enumerate() {
            let mut cp = params.clone();
            cp.n = 1;
            cp.seed = Some(seed.wrapping_add(i as u64));
            let req = Request::new(child.clone(), ids.clone(), cp).with_priority(priority).with_eos(self.eos_token_ids.clone());
            if let Err(e) = self.scheduler.add_request(req) {
                self.scheduler.finish_requests(&children[..i], RequestStatus::FinishedAborted);
                return Err(e);
            }
        }
        let detokenize = params.detokenize && self.tokenizer.is_some();
        self.outputs.add_request(&request_id, text, ids, &params, children, detokenize);
        Ok(())
    }

    /// vLLM's bad-words tokenization: each word alone and after a space, without special tokens.
    fn tokenize_bad_words(&self, words: &[String]) -> Result<Vec<Vec<u32>>> {
        let tok = self.tokenizer.as_ref().expect("checked by the caller");
        let mut out: Vec<Vec<u32>> = Vec::new();
        for w in words {
            let plain = tok.encode(w.trim_start(), false)?;
            let spaced = tok.encode(&format!(" {}", w.trim_start()), false)?;
            let distinct = !spaced.is_empty() && plain.first() != spaced.first() && plain.len() == spaced.len();
            if !plain.is_empty() {
                out.push(plain);
            }
            if distinct {
                out.push(spaced);
            }
        }
        Ok(out)
    }

    /// Ends a request (all of its `n` completions) and frees its blocks; no further output is
    /// reported for it. Returns whether it was running or waiting.
    pub fn abort_request(&mut self, request_id: &str) -> bool {
        let children = self.outputs.remove(request_id);
        self.scheduler.finish_requests(&children, RequestStatus::FinishedAborted);
        !children.is_empty()
    }

    pub fn has_unfinished_requests(&self) -> bool {
        self.outputs.num_unfinished() > 0 || self.scheduler.has_unfinished_requests()
    }

    pub fn num_unfinished_requests(&self) -> usize {
        self.outputs.num_unfinished()
    }

    pub fn stats(&self) -> EngineStats {
        let s: SchedulerStats = self.scheduler.stats();
        EngineStats {
            num_running: s.num_running,
            num_waiting: s.num_waiting,
            kv_cache_usage: s.kv_cache_usage,
            num_preemptions_total: s.num_preemptions_total,
            prefix_cache_queries_total: s.prefix_cache.queries,
            prefix_cache_hits_total: s.prefix_cache.hits,
            ..self.stats
        }
    }

    /// One step (native; blocks on device read-backs).
    pub fn step(&mut self) -> Result<Vec<RequestOutput>> {
        pollster::block_on(self.step_async())
    }

    /// One scheduling step: runs the model once over the scheduled tokens of every running
    /// request and returns the outputs that changed.
    pub async fn step_async(&mut self) -> Result<Vec<RequestOutput>> {
        use tracing::Instrument;
        let span = tracing::debug_span!("step", n = self.stats.num_steps_total);
        self.step_inner().instrument(span).await
    }

    /// Whether the next step may be launched before the one in flight is collected: async
    /// scheduling is on and every request samples on the device (nothing read on the host).
    fn pipelinable(&self) -> bool {
        self.async_scheduling
            && self.scheduler.requests().all(|r| {
                let p = &r.sampling_params;
                p.logprobs.is_none() && p.prompt_logprobs.is_none() && !p.needs_logits_processing()
            })
    }

    async fn step_inner(&mut self) -> Result<Vec<RequestOutput>> {
        let step = match self.in_flight.take() {
            Some(s) => s,
            None => {
                let so = self.scheduler.schedule();
                launch(&mut self.runner, &mut self.batch, so, None).await?
            }
        };
        if step.is_pending() && self.pipelinable() {
            let so = self.scheduler.schedule();
            self.in_flight = Some(launch(&mut self.runner, &mut self.batch, so, Some(&step)).await?);
            self.stats.num_pipelined_steps_total += 1;
        }
        let (so, ro, num_prompt_tokens) = collect(&self.runner, &mut self.batch, step).await?;
        self.stats.prompt_tokens_total += num_prompt_tokens as u64;
        let core_outputs = self.scheduler.update_from_output(&so, &ro);
        self.stats.generation_tokens_total += core_outputs.iter().map(|o| o.new_token_ids.len() as u64).sum::<u64>();
        let (outputs, stopped) = self.outputs.process(core_outputs, self.tokenizer.as_ref())?;
        self.scheduler.finish_requests(&stopped, RequestStatus::FinishedStopped);
        self.stats.num_finished_total += outputs.iter().filter(|o| o.finished).count() as u64;
        if !so.is_empty() {
            self.stats.num_steps_total += 1;
        }
        self.stats.last_step_tokens = so.total_num_scheduled_tokens;
        let s = self.scheduler.stats();
        tracing::debug!(
            running = s.num_running,
            waiting = s.num_waiting,
            scheduled_reqs = so.scheduled_new_reqs.len() + so.scheduled_cached_reqs.len(),
            batched_tokens = so.total_num_scheduled_tokens,
            preempted = so.preempted_req_ids.len(),
            kv_usage = format_args!("{:.1}%", 100.0 * s.kv_cache_usage),
            "engine step"
        );
        Ok(outputs)
    }
}
