//! The scheduler: pure data in, pure data out. Every step gives each running request some of
//! its not-yet-computed tokens within a token budget — no separate prefill and decode phases.
//!
//! ```text
//! schedule():
//!   budget = max_num_batched_tokens
//!   1. running requests, decodes (1 token left) first, then unfinished prefills (chunked to
//!      the budget). When allocate_slots finds no blocks, preempt the newest running request
//!      (FCFS) or the lowest-priority one (`priority`): free its blocks, reset it to 0 computed
//!      tokens, put it back at the front of the waiting queue; retry. Preempting the request
//!      itself ends the pass.
//!   2. if nobody was preempted: admit waiting requests in order (FCFS, or by (priority,
//!      arrival)) while the budget, max_num_seqs and the free blocks allow, each starting from
//!      its prefix-cache hit and chunked to the budget.
//!   3. num_computed_tokens += scheduled tokens; with async scheduling, a request whose
//!      computed tokens reach its end gets an output placeholder (its token is in flight).
//! update_from_output(): append sampled tokens of requests whose computed tokens reached the
//!   end, check stop (eos, stop tokens, max_tokens, max_model_len), free finished requests.
//!
//! Async scheduling counts placeholders as known tokens, so a decoding request is scheduled
//! again while its previous token is in flight, except when that token is its last one
//! (max_tokens / max_model_len): nothing is computed that length rules out. A request that
//! stops on a token (eos, stop) has one extra step computed; its token is dropped.
//! ```

use std::collections::{HashMap, VecDeque};

use super::output::{CachedRequestData, EngineCoreOutput, ModelRunnerOutput, NewRequestData, SchedulerOutput};
use super::request::{Request, RequestStatus};
use crate::engine::FinishReason;
use crate::error::{Error, Result};
use crate::kv::{blocks_for, KVCacheManager, PrefixCacheStats};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulingPolicy {
    /// First come, first served; preemption takes the newest running request.
    #[default]
    Fcfs,
    /// Lowest `priority` value first, then arrival; preemption takes the largest
    /// (priority, arrival).
    Priority,
}

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub max_num_seqs: usize,
    pub max_num_batched_tokens: usize,
    pub max_model_len: usize,
    pub policy: SchedulingPolicy,
    /// Schedule the next step before this one's sampled tokens are back (vLLM's
    /// `async_scheduling`): a request whose step will sample gets an output placeholder.
    pub async_scheduling: bool,
}

/// Counters for logs and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SchedulerStats {
    pub num_running: usize,
    pub num_waiting: usize,
    /// Fraction of the usable KV blocks in use.
    pub kv_cache_usage: f32,
    pub num_preemptions_total: u64,
    pub prefix_cache: PrefixCacheStats,
}

pub struct Scheduler {
    pub config: SchedulerConfig,
    pub kv_cache_manager: KVCacheManager,
    requests: HashMap<String, Request>,
    waiting: VecDeque<String>,
    running: Vec<String>,
    finished_req_ids: Vec<String>,
    next_arrival: u64,
    num_preemptions_total: u64,
}

struct Scheduled {
    id: String,
    num_tokens: usize,
    new_blocks: Vec<u32>,
    cached_before: usize,
}

impl Scheduler {
    pub fn new(config: SchedulerConfig, kv_cache_manager: KVCacheManager) -> Result<Self> {
        if config.max_num_seqs == 0 || config.max_num_batched_tokens == 0 || config.max_model_len < 2 {
            return Err(Error::InvalidRequest(format!(
                "scheduler limits must be positive (max_num_seqs {}, max_num_batched_tokens {}, max_model_len {})",
                config.max_num_seqs, config.max_num_batched_tokens, config.max_model_len
            )));
        }
        Ok(Scheduler {
            config,
            kv_cache_manager,
            requests: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            finished_req_ids: Vec::new(),
            next_arrival: 0,
            num_preemptions_total: 0,
        })
    }

    /// Queues `request`, or rejects it when it could never run: empty, no room to generate
    /// within `max_model_len`, or more tokens than the whole KV cache holds.
    pub fn add_request(&mut self, mut request: Request) -> Result<()> {
        let id = &request.request_id;
        let len = request.num_prompt_tokens();
        if len == 0 {
            return Err(Error::InvalidRequest(format!("request {id}: the prompt is empty")));
        }
        if self.requests.contains_key(id) {
            return Err(Error::InvalidRequest(format!("request id {id} is already in use")));
        }
        let max_len = self.config.max_model_len;
        if len >= max_len {
            return Err(Error::InvalidRequest(format!(
                "request {id}: the prompt is {len} tokens long, but max_model_len is {max_len} (no room to generate)"
            )));
        }
        request.max_tokens = request.sampling_params.max_tokens.unwrap_or(usize::MAX).min(max_len - len);
        // The last sampled token is never written to the cache.
        let bs = self.kv_cache_manager.block_size;
        let need = blocks_for(len + request.max_tokens - 1, bs);
        let have = self.kv_cache_manager.num_usable_blocks();
        if need > have {
            return Err(Error::InvalidRequest(format!(
                "request {id} can never fit: {len} prompt tokens + {} max_tokens need {need} KV blocks of {bs} tokens, \
                 but the KV cache has {have}; lower max_tokens or give the cache more memory \
                 (--kv-cache-memory / --num-gpu-blocks-override)",
                request.max_tokens
            )));
        }
        request.arrival = self.next_arrival;
        self.next_arrival += 1;
        request.status = RequestStatus::Waiting;
        let id = request.request_id.clone();
        self.requests.insert(id.clone(), request);
        self.enqueue_waiting(id, false);
        Ok(())
    }

    fn enqueue_waiting(&mut self, id: String, front: bool) {
        match self.config.policy {
            SchedulingPolicy::Fcfs if front => self.waiting.push_front(id),
            SchedulingPolicy::Fcfs => self.waiting.push_back(id),
            SchedulingPolicy::Priority => {
                let key = |r: &Request| (r.priority, r.arrival);
                let k = key(&self.requests[&id]);
                let pos = self.waiting.iter().position(|w| key(&self.requests[w]) > k).unwrap_or(self.waiting.len());
                self.waiting.insert(pos, id);
            }
        }
    }

    pub fn get_request(&self, id: &str) -> Option<&Request> {
        self.requests.get(id)
    }

    /// Every unfinished request, running or waiting.
    pub fn requests(&self) -> impl Iterator<Item = &Request> {
        self.requests.values()
    }

    pub fn running_ids(&self) -> &[String] {
        &self.running
    }

    pub fn waiting_ids(&self) -> Vec<&str> {
        self.waiting.iter().map(String::as_str).collect()
    }

    pub fn num_unfinished_requests(&self) -> usize {
        self.running.len() + self.waiting.len()
    }

    pub fn has_unfinished_requests(&self) -> bool {
        self.num_unfinished_requests() > 0
    }

    pub fn stats(&self) -> SchedulerStats {
        SchedulerStats {
            num_running: self.running.len(),
            num_waiting: self.waiting.len(),
            kv_cache_usage: self.kv_cache_manager.usage(),
            num_preemptions_total: self.num_preemptions_total,
            prefix_cache: self.kv_cache_manager.stats,
        }
    }

    fn pick_victim(&self) -> String {
        match self.config.policy {
            SchedulingPolicy::Fcfs => self.running.last().cloned().expect("running is not empty"),
            SchedulingPolicy::Priority => self
                .running
                .iter()
                .max_by_key(|id| {
                    let r = &self.requests[*id];
                    (r.priority, r.arrival)
                })
                .cloned()
                .expect("running is not empty"),
        }
    }

    fn preempt(&mut self, victim: &str, scheduled: &mut Vec<Scheduled>, budget: &mut usize) {
        if let Some(i) = scheduled.iter().position(|s| s.id == victim) {
            let s = scheduled.remove(i);
            *budget += s.num_tokens;
            self.kv_cache_manager.free_unscheduled(victim, s.cached_before);
        } else {
            self.kv_cache_manager.free(victim);
        }
        self.running.retain(|r| r != victim);
        let r = self.requests.get_mut(victim).expect("running request exists");
        r.status = RequestStatus::Preempted;
        r.num_computed_tokens = 0;
        r.num_preemptions += 1;
        self.num_preemptions_total += 1;
        self.enqueue_waiting(victim.to_string(), true);
    }

    /// Decides this step: see the module docs.
    pub fn schedule(&mut self) -> SchedulerOutput {
        let mut budget = self.config.max_num_batched_tokens;
        let mut scheduled: Vec<Scheduled> = Vec::new();
        let mut preempted: Vec<String> = Vec::new();

        let max_len = self.config.max_model_len;
        let is_decode = |r: &Request| num_new_tokens(r, max_len) == 1;
        let (decodes, prefills): (Vec<String>, Vec<String>) =
            self.running.iter().cloned().partition(|id| is_decode(&self.requests[id]));
        'running: for id in decodes.into_iter().chain(prefills) {
            if budget == 0 {
                break;
            }
            if !self.running.contains(&id) {
                continue; // preempted earlier in this pass
            }
            let n = num_new_tokens(&self.requests[&id], max_len).min(budget);
            if n == 0 {
                continue;
            }
            loop {
                let cached_before = self.kv_cache_manager.num_cached_blocks(&id);
                if let Some(new_blocks) = self.kv_cache_manager.allocate_slots(&self.requests[&id], n, &[], 0) {
                    scheduled.push(Scheduled { id: id.clone(), num_tokens: n, new_blocks, cached_before });
                    budget -= n;
                    break;
                }
                let victim = self.pick_victim();
                self.preempt(&victim, &mut scheduled, &mut budget);
                preempted.push(victim.clone());
                if victim == id {
                    break 'running;
                }
            }
        }

        let mut new_reqs = Vec::new();
        if preempted.is_empty() {
            while budget > 0 && self.running.len() < self.config.max_num_seqs {
                let Some(id) = self.waiting.front().cloned() else { break };
                let r = &self.requests[&id];
                if r.num_output_placeholders > 0 {
                    break; // preempted with a token in flight: resumes once it is back
                }
                let (hit_blocks, num_hit) = if r.num_computed_tokens == 0 {
                    self.kv_cache_manager.get_computed_blocks(r)
                } else {
                    (Vec::new(), 0)
                };
                let n = (r.num_tokens() - r.num_computed_tokens - num_hit).min(budget);
                if self.kv_cache_manager.allocate_slots(r, n, &hit_blocks, num_hit).is_none() {
                    break;
                }
                self.kv_cache_manager.record_lookup(r, num_hit);
                self.waiting.pop_front();
                self.running.push(id.clone());
                let block_ids = self.kv_cache_manager.get_block_ids(&id).to_vec();
                let r = self.requests.get_mut(&id).expect("waiting request exists");
                r.status = RequestStatus::Running;
                r.num_computed_tokens += num_hit;
                r.num_cached_tokens.get_or_insert(num_hit);
                new_reqs.push(NewRequestData {
                    request_id: id,
                    token_ids: r.all_token_ids.clone(),
                    num_prompt_tokens: r.num_prompt_tokens(),
                    block_ids,
                    num_computed_tokens: r.num_computed_tokens,
                    num_scheduled_tokens: n,
                    sampling_params: r.sampling_params.clone(),
                    eos_token_ids: r.eos_token_ids.clone(),
                });
                r.num_computed_tokens += n;
                budget -= n;
            }
        }

        let mut cached_reqs = Vec::with_capacity(scheduled.len());
        for s in scheduled {
            let r = self.requests.get_mut(&s.id).expect("scheduled request exists");
            cached_reqs.push(CachedRequestData {
                request_id: s.id,
                new_block_ids: s.new_blocks,
                num_computed_tokens: r.num_computed_tokens,
                num_scheduled_tokens: s.num_tokens,
            });
            r.num_computed_tokens += s.num_tokens;
        }
        if self.config.async_scheduling {
            for id in cached_reqs.iter().map(|c| &c.request_id).chain(new_reqs.iter().map(|n| &n.request_id)) {
                let r = self.requests.get_mut(id).expect("scheduled request exists");
                if r.num_computed_tokens == r.num_tokens_with_placeholders() {
                    r.num_output_placeholders += 1;
                }
            }
        }
        let total = self.config.max_num_batched_tokens - budget;
        SchedulerOutput {
            scheduled_new_reqs: new_reqs,
            scheduled_cached_reqs: cached_reqs,
            total_num_scheduled_tokens: total,
            preempted_req_ids: preempted,
            finished_req_ids: std::mem::take(&mut self.finished_req_ids),
        }
    }

    /// Applies what the model sampled; returns what each request gained. Finished requests
    /// release their blocks here.
    pub fn update_from_output(&mut self, _sched: &SchedulerOutput, out: &ModelRunnerOutput) -> Vec<EngineCoreOutput> {
        let mut result = Vec::new();
        for o in &out.outputs {
            let Some(r) = self.requests.get_mut(&o.request_id) else { continue };
            // A token in flight belongs to its request even when a later schedule preempted it.
            let in_flight = o.token_id.is_some() && r.num_output_placeholders > 0;
            if r.is_finished() || (r.status != RequestStatus::Running && !in_flight) {
                continue;
            }
            let mut new_token_ids = Vec::new();
            let mut new_logprobs = Vec::new();
            let mut stopped = false;
            if let Some(t) = o.token_id {
                let expected = if in_flight {
                    r.num_output_placeholders -= 1;
                    true
                } else {
                    r.num_computed_tokens == r.num_tokens()
                };
                if expected {
                    r.append_output_token(t);
                    new_token_ids.push(t);
                    new_logprobs.extend(o.logprobs.clone());
                    stopped = r.check_stop(self.config.max_model_len);
                }
            }
            if new_token_ids.is_empty() && o.prompt_logprobs.is_empty() {
                continue;
            }
            let finish_reason = stopped.then(|| finish_reason_of(r.status)).flatten();
            result.push(EngineCoreOutput {
                request_id: o.request_id.clone(),
                new_token_ids,
                new_logprobs,
                new_prompt_logprobs: o.prompt_logprobs.clone(),
                prompt_logprobs_start: o.prompt_logprobs_start,
                finish_reason,
                stop_reason: r.stop_reason.clone(),
                num_cached_tokens: r.num_cached_tokens.unwrap_or(0),
            });
            if stopped {
                let id = o.request_id.clone();
                self.remove_finished(&id);
            }
        }
        result
    }

    fn remove_finished(&mut self, id: &str) {
        self.running.retain(|r| r != id);
        self.waiting.retain(|r| r != id);
        self.kv_cache_manager.free(id);
        self.kv_cache_manager.free_block_hashes(id);
        self.requests.remove(id);
        self.finished_req_ids.push(id.to_string());
    }

    /// Ends requests from outside (abort, or a stop string found by the detokenizer) and
    /// frees their blocks. Unknown or already finished ids are ignored.
    pub fn finish_requests(&mut self, ids: &[String], status: RequestStatus) {
        debug_assert!(status.is_finished());
        for id in ids {
            if self.requests.contains_key(id) {
                self.remove_finished(id);
            }
        }
    }
}

/// Tokens `r` may compute now: up to its known tokens and placeholders, none while its
/// in-flight token is its last (the length limits end it whatever that token is).
fn num_new_tokens(r: &Request, max_model_len: usize) -> usize {
    if r.num_output_placeholders > 0
        && (r.num_output_tokens() + r.num_output_placeholders >= r.max_tokens || r.num_tokens_with_placeholders() >= max_model_len)
    {
        return 0;
    }
    r.num_tokens_with_placeholders().saturating_sub(r.num_computed_tokens)
}

pub(crate) fn finish_reason_of(status: RequestStatus) -> Option<FinishReason> {
    match status {
        RequestStatus::FinishedStopped => Some(FinishReason::Stop),
        RequestStatus::FinishedLengthCapped => Some(FinishReason::Length),
        RequestStatus::FinishedAborted => Some(FinishReason::Abort),
        _ => None,
    }
}
