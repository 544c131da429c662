//! A simple sequential generator: one prompt at a time, whole-prompt prefill, then one token
//! per step. It is the reference the continuous-batching engine must agree with.

use super::{CompletionOutput, FinishReason, ModelRunner, RequestOutput};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::kv::blocks_for;
use crate::models::BatchInput;
use crate::sample::{log_softmax, sample_temperature, top_logprobs, Rng};

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
    let table = r.blocks.allocate(blocks_for(prompt.len() + max_tokens, bs))?;
    let result = run(r, prompt, p, max_tokens, &table);
    r.blocks.free(&table);
    result
}

fn run<B: Backend>(r: &mut ModelRunner<B>, prompt: &[u32], p: &GenerateParams, max_tokens: usize, table: &[u32]) -> Result<RequestOutput> {
    let bs = r.block_size() as u32;
    let slot = |pos: u32| table[(pos / bs) as usize] * bs + pos % bs;
    let mut rng = Rng::new(p.seed);
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
        };
        let logits = r.execute(&input)?;
        computed = tokens.len();
        let next = if p.temperature == 0.0 && p.logprobs.is_none() {
            let ids = pollster::block_on(r.backend.to_host(&r.backend.argmax(&logits)?))?;
            ids.to_u32()[0]
        } else {
            let row = pollster::block_on(r.backend.to_host(&logits))?.to_f32();
            let next = if p.temperature == 0.0 { argmax(&row) } else { sample_temperature(&row, p.temperature, &mut rng) };
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
    Ok(RequestOutput {
        prompt: None,
        prompt_token_ids: prompt.to_vec(),
        outputs: vec![CompletionOutput { index: 0, token_ids: out, text: String::new(), finish_reason: finish, logprobs }],
    })
}

/// First index of the largest value (matches the device `argmax`).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}
