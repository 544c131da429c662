//! Incremental detokenization: text grows token by token without ever emitting half of a
//! multi-byte character, and stop strings are found even when they span tokens.
//!
//! ```text
//! tokens   ... p p p p p | o o o o
//!              ^prefix_offset  ^read_offset
//! delta = decode(tokens[prefix..]) minus decode(tokens[prefix..read]), emitted only when it
//! grew and does not end in U+FFFD (an incomplete UTF-8 sequence); then prefix = read,
//! read = end. Starting a few prompt tokens back gives the first output token its context
//! (e.g. the leading space SentencePiece decoders drop at the start of a text).
//! ```
//! While a request streams, the last `max(stop len) - 1` characters are held back so a stop
//! string that is only partly generated is never shown.

use crate::error::Result;
use crate::sample::SamplingParams;
use crate::tokenizer::Tokenizer;

/// Prompt tokens kept as decoding context (vLLM's `INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET`).
const CONTEXT_TOKENS: usize = 5;

#[derive(Clone, Debug)]
pub struct IncrementalDetokenizer {
    tokens: Vec<u32>,
    prefix_offset: usize,
    read_offset: usize,
    skip_special_tokens: bool,
    /// All text so far (truncated at a stop string).
    pub output_text: String,
    stop: Vec<String>,
    include_stop_str_in_output: bool,
    min_tokens: usize,
    num_output_tokens: usize,
    holdback_chars: usize,
    sent: usize,
}

impl IncrementalDetokenizer {
    pub fn new(prompt_token_ids: &[u32], params: &SamplingParams) -> Self {
        let ctx = &prompt_token_ids[prompt_token_ids.len().saturating_sub(CONTEXT_TOKENS)..];
        let holdback = if params.include_stop_str_in_output {
            0
        } else {
            params.stop.iter().map(|s| s.chars().count()).max().unwrap_or(0).saturating_sub(1)
        };
        IncrementalDetokenizer {
            tokens: ctx.to_vec(),
            prefix_offset: 0,
            read_offset: ctx.len(),
            skip_special_tokens: params.skip_special_tokens,
            output_text: String::new(),
            stop: params.stop.clone(),
            include_stop_str_in_output: params.include_stop_str_in_output,
            min_tokens: params.min_tokens,
            num_output_tokens: 0,
            holdback_chars: holdback,
            sent: 0,
        }
    }

    /// Decodes `new_token_ids` and appends their text. Returns the stop string that ended
    /// the text, if one did (the text is then truncated as `include_stop_str_in_output` says,
    /// and later tokens of `new_token_ids` are ignored).
    pub fn update(&mut self, tok: &Tokenizer, new_token_ids: &[u32]) -> Result<Option<String>> {
        for &t in new_token_ids {
            self.tokens.push(t);
            self.num_output_tokens += 1;
            let prefix_text = tok.decode(&self.tokens[self.prefix_offset..self.read_offset], self.skip_special_tokens)?;
            let new_text = tok.decode(&self.tokens[self.prefix_offset..], self.skip_special_tokens)?;
            let mut delta_len = 0;
            if new_text.len() > prefix_text.len() && !new_text.ends_with('\u{FFFD}') {
                let mut cut = if new_text.starts_with(&prefix_text) { prefix_text.len() } else { common_prefix(&new_text, &prefix_text) };
                while !new_text.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.output_text.push_str(&new_text[cut..]);
                delta_len = new_text.len() - cut;
                self.prefix_offset = self.read_offset;
                self.read_offset = self.tokens.len();
            }
            if delta_len > 0 && self.num_output_tokens >= self.min_tokens {
                if let Some(s) = self.check_stop_strings(delta_len) {
                    return Ok(Some(s));
                }
            }
        }
        Ok(None)
    }

    /// vLLM's `check_stop_strings`: looks for each stop string in the tail that the last
    /// `delta_len` bytes could have completed.
    fn check_stop_strings(&mut self, delta_len: usize) -> Option<String> {
        let text_len = self.output_text.len();
        for stop in &self.stop {
            let mut from = text_len.saturating_sub(delta_len + stop.len() - 1);
            while !self.output_text.is_char_boundary(from) {
                from -= 1;
            }
            let Some(i) = self.output_text[from..].find(stop.as_str()) else { continue };
            let at = from + i;
            let end = if self.include_stop_str_in_output { at + stop.len() } else { at };
            self.output_text.truncate(end);
            return Some(stop.clone());
        }
        None
    }

    /// The text to report now: all of it (`delta` false) or what is new since the last call
    /// (`delta` true), holding back a possible partial stop string until `finished`.
    pub fn get_next_output_text(&mut self, finished: bool, delta: bool) -> String {
        let mut end = self.output_text.len();
        if !finished {
            for _ in 0..self.holdback_chars {
                match self.output_text[..end].char_indices().next_back() {
                    Some((i, _)) => end = i,
                    None => break,
                }
            }
        }
        if !delta {
            return self.output_text[..end].to_string();
        }
        let start = self.sent.min(end);
        self.sent = self.sent.max(end);
        self.output_text[start..end].to_string()
    }
}

fn common_prefix(a: &str, b: &str) -> usize {
    a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
}
