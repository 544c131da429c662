//! Logits processors that need the request's history, applied on the host in vLLM's order:
//! penalties (repetition, frequency, presence), then logit_bias / allowed_token_ids /
//! bad_words, then min_tokens' suppression of eos and stop tokens. Temperature, top-k,
//! top-p and min-p follow in the sampling kernel (`sampler.rs`).

use std::collections::HashMap;

use super::params::SamplingParams;

/// What the processors of one row look at.
#[derive(Clone, Copy, Debug)]
pub struct RowContext<'a> {
    pub params: &'a SamplingParams,
    pub prompt: &'a [u32],
    pub output: &'a [u32],
    /// The model's eos ids (suppressed under min_tokens unless `ignore_eos`).
    pub eos_token_ids: &'a [u32],
    /// `params.bad_words` as token-id sequences.
    pub bad_words: &'a [Vec<u32>],
}

/// Applies every processor `cx.params` asks for to one row of raw logits.
pub fn apply_logits_processors(logits: &mut [f32], cx: &RowContext<'_>) {
    let p = cx.params;
    let vocab = logits.len();
    let in_vocab = |t: u32| (t as usize) < vocab;
    if p.repetition_penalty != 1.0 {
        let mut seen = vec![false; vocab];
        for &t in cx.prompt.iter().chain(cx.output).filter(|&&t| in_vocab(t)) {
            seen[t as usize] = true;
        }
        for (x, s) in logits.iter_mut().zip(seen) {
            if s {
                *x = if *x > 0.0 { *x / p.repetition_penalty } else { *x * p.repetition_penalty };
            }
        }
    }
    if p.frequency_penalty != 0.0 || p.presence_penalty != 0.0 {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in cx.output.iter().filter(|&&t| in_vocab(t)) {
            *counts.entry(t).or_default() += 1;
        }
        for (t, c) in counts {
            logits[t as usize] -= p.frequency_penalty * c as f32 + p.presence_penalty;
        }
    }
    for (&t, &b) in &p.logit_bias {
        if in_vocab(t) {
            logits[t as usize] += b;
        }
    }
    if let Some(allowed) = &p.allowed_token_ids {
        let mut keep = vec![false; vocab];
        for &t in allowed.iter().filter(|&&t| in_vocab(t)) {
            keep[t as usize] = true;
        }
        for (x, k) in logits.iter_mut().zip(keep) {
            if !k {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    for word in cx.bad_words {
        let Some((&last, prefix)) = word.split_last() else { continue };
        if in_vocab(last) && cx.output.ends_with(prefix) {
            logits[last as usize] = f32::NEG_INFINITY;
        }
    }
    if cx.output.len() < p.min_tokens {
        let eos = if p.ignore_eos { &[][..] } else { cx.eos_token_ids };
        for &t in p.stop_token_ids.iter().chain(eos).filter(|&&t| in_vocab(t)) {
            logits[t as usize] = f32::NEG_INFINITY;
        }
    }
}
