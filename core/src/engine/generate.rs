//! A simple sequential generator: one prompt at a time, whole-prompt prefill, then one token
//! per step, no scheduler. It is the reference the continuous-batching engine must agree with
//! (greedy tokens; and seeded temperature sampling uses the same per-request stream).

use super::{CompletionOutput, FinishReason, ModelRunner, RequestOutput};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::kv::{blocks_for, BlockPool};
use crate::models::BatchInput;
use crate::sample::{log_softmax, sample_row, top_logprobs, Rng, RowSampling};

#[derive(Clone, Debug)]
pub struct GenerateParams {
    pub max_tokens: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub ignore_eos: bool,
    /// Top-K logprobs per generated token.
    pub logprobs: Option<usize>,
    pub seed: u64,
    /// Generation stops after any of these (unless `ignore_eos`).
    pub eos_token_ids: Vec<u32>,
    /// Prompt + generated tokens may not exceed this.
    pub max_model_len: usize,
}

/// Generates a continuation of `prompt` (token ids). `text` is left empty (the caller owns
/// the tokenizer).
pub fn generate<B: Backend>(r: &mut ModelRunner<B>, prompt: &[u32], p: &GenerateParams) -> Result<RequestOutput> {
    let vocab = r.model.config.vocab_size as u32;
    if prompt.is_empty() {
        return Err(Error::InvalidRequest("the prompt is empty".into()));
    }
    if let Some(bad) = prompt.iter().find(|&&t| t >= vocab) {
        return Err(Error::InvalidRequest(format!("prompt token id {bad} is out of range for vocab_size {vocab}")));
    }
    if prompt.len() >= p.max_model_len {
        return Err(Error::InvalidRequest(format!(
            "the prompt is {} tokens long, but max_model_len is {} (no room to generate)",
            prompt.len(),
            p.max_model_len
        )));
    }
    let max_tokens = p.max_tokens.min(p.max_model_len - prompt.len());
    let bs = r.block_size();
    // The runner's cache is this call's alone: a fresh pool hands out its blocks.
    let table = BlockPool::new(r.num_blocks(), false)?.get_new_blocks(blocks_for(prompt.len() + max_tokens, bs))?;
    run(r, prompt, p, max_tokens, &table)
}

fn run<B: Backend>(r: &mut ModelRunner<B>, prompt: &[u32], p: &GenerateParams, max_tokens: usize, table: &[u32]) -> Result<RequestOutput> {
    let bs = r.block_size() as u32;
    let slot = |pos: u32| table[(pos / bs) as usize] * bs + pos % bs;
    let mut tokens = prompt.to_vec();
    let mut out = Vec::new();
    let mut logprobs = p.logprobs.map(|_| Vec::new());
    let mut finish = FinishReason::Length;
    let mut computed = 0usize;
    while out.len() < max_tokens {
        let new = &tokens[computed..];
        let positions: Vec<u32> = (computed as u32..tokens.len() as u32).collect();
        let input = BatchInput {
            input_ids: new.to_vec(),
            slot_mapping: positions.iter().map(|&q| slot(q)).collect(),
            positions,
            query_start_loc: vec![0, new.len() as u32],
            seq_lens: vec![tokens.len() as u32],
            block_tables: vec![table.to_vec()],
            logits_indices: vec![new.len() as u32 - 1],
            ..Default::default()
        };
        let logits = r.execute(&input)?;
        computed = tokens.len();
        let next = if p.temperature == 0.0 && p.logprobs.is_none() {
            let ids = pollster::block_on(r.backend.to_host(&r.backend.argmax(&logits)?))?;
            ids.to_u32()[0]
        } else {
            let row = pollster::block_on(r.backend.to_host(&logits))?.to_f32();
            // The engine's per-request stream: draw k is a function of (seed, k) only.
            let uniform = Rng::nth_f64(p.seed, out.len() as u64);
            let rs = RowSampling { temperature: p.temperature, top_k: 0, top_p: 1.0, min_p: 0.0, uniform };
            let next = sample_row(&row, &rs);
            if let (Some(k), Some(lp)) = (p.logprobs, logprobs.as_mut()) {
                lp.push(top_logprobs(&log_softmax(&row), k, next));
            }
            next
        };
        tokens.push(next);
        out.push(next);
        if !p.ignore_eos && p.eos_token_ids.contains(&next) {
            finish = FinishReason::Stop;
            break;
        }
    }
    let cumulative_logprob = logprobs.as_ref().map(|steps: &Vec<Vec<(u32, f32)>>| {
        steps.iter().zip(&out).map(|(s, t)| s.iter().find(|(id, _)| id == t).map_or(0.0, |x| x.1 as f64)).sum()
    });
    Ok(RequestOutput {
        request_id: "0".into(),
        prompt: None,
        prompt_token_ids: prompt.to_vec(),
        prompt_logprobs: None,
        outputs: vec![CompletionOutput {
            index: 0,
            text: String::new(),
            token_ids: out,
            cumulative_logprob,
            logprobs,
            finish_reason: Some(finish),
            stop_reason: None,
        }],
        finished: true,
        num_cached_tokens: 0,
    })
}
