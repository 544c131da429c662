//! `LLM`: vLLM's offline API over an `Engine` — a batch of prompts (or chats) in, one
//! finished `RequestOutput` per prompt out, in input order.

use serde_json::{Map, Value};

use super::llm_engine::{Engine, Prompt};
use super::output::RequestOutput;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::sample::{RequestOutputKind, SamplingParams};
use crate::tokenizer::{ChatTemplate, ChatTemplateInputs};

/// Where an offline batch stands, for progress bars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub finished: usize,
    pub total: usize,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
}

pub struct LLM<B: Backend> {
    pub engine: Engine<B>,
    chat_template: Option<ChatTemplate>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    next_id: u64,
}

impl<B: Backend> LLM<B> {
    /// `chat_template`: the model's Jinja chat template (needed by [`chat`](Self::chat)).
    /// `bos_token`/`eos_token` are the strings the template sees.
    pub fn new(engine: Engine<B>, chat_template: Option<&str>, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self> {
        let chat_template = chat_template.map(ChatTemplate::new).transpose()?;
        Ok(LLM { engine, chat_template, bos_token, eos_token, next_id: 0 })
    }

    /// Generates a completion for every prompt; outputs come back in input order.
    pub fn generate<P: Into<Prompt>>(&mut self, prompts: impl IntoIterator<Item = P>, params: &SamplingParams) -> Result<Vec<RequestOutput>> {
        self.generate_with_progress(prompts, params, &mut |_| {})
    }

    /// [`generate`](Self::generate), calling `progress` after every step.
    pub fn generate_with_progress<P: Into<Prompt>>(
        &mut self,
        prompts: impl IntoIterator<Item = P>,
        params: &SamplingParams,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Vec<RequestOutput>> {
        let mut params = params.clone();
        params.output_kind = RequestOutputKind::FinalOnly;
        let mut ids: Vec<String> = Vec::new();
        for p in prompts {
            let id = self.next_id.to_string();
            self.next_id += 1;
            if let Err(e) = self.engine.add_request(id.clone(), p, params.clone()) {
                for added in &ids {
                    self.engine.abort_request(added);
                }
                return Err(e);
            }
            ids.push(id);
        }
        let mut done: std::collections::HashMap<String, RequestOutput> = std::collections::HashMap::new();
        let start = self.engine.stats();
        let mut state = Progress { total: ids.len(), ..Default::default() };
        while done.len() < ids.len() {
            let step = match self.engine.step() {
                Ok(s) => s,
                Err(e) => {
                    for id in &ids {
                        self.engine.abort_request(id);
                    }
                    return Err(e);
                }
            };
            for o in step.into_iter().filter(|o| o.finished) {
                done.insert(o.request_id.clone(), o);
            }
            let s = self.engine.stats();
            state.finished = done.len();
            state.prompt_tokens = s.prompt_tokens_total - start.prompt_tokens_total;
            state.generation_tokens = s.generation_tokens_total - start.generation_tokens_total;
            progress(&state);
        }
        Ok(ids.iter().map(|id| done.remove(id).expect("every request finished")).collect())
    }

    /// The chat template applied to one conversation (a JSON array of messages), with the
    /// assistant's generation prompt appended.
    pub fn apply_chat_template(&self, messages: &Value) -> Result<String> {
        let t = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("the model has no chat template (chat_template.jinja / tokenizer_config.json)".into()))?;
        let extra = Map::new();
        let inputs = ChatTemplateInputs {
            add_generation_prompt: true,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
            ..ChatTemplateInputs::new(messages, &extra)
        };
        Ok(t.render(&inputs)?)
    }

    /// A conversation as a prompt: the rendered template, tokenized without adding special
    /// tokens (the template has them), as vLLM's chat does.
    pub fn chat_prompt(&self, messages: &Value) -> Result<Prompt> {
        let text = self.apply_chat_template(messages)?;
        let tok = self.engine.tokenizer().ok_or_else(|| Error::InvalidRequest("chat needs a tokenizer".into()))?;
        let ids = tok.encode(&text, false)?;
        Ok(Prompt::TextTokens(text, ids))
    }

    /// Generates the assistant's reply to every conversation.
    pub fn chat(&mut self, conversations: &[Value], params: &SamplingParams) -> Result<Vec<RequestOutput>> {
        let prompts = conversations.iter().map(|c| self.chat_prompt(c)).collect::<Result<Vec<_>>>()?;
        self.generate(prompts, params)
    }
}
