//! The OpenAI API's request and response bodies (serde), with vLLM's extras, field names
//! exactly as the `openai` client and vLLM spell them.
//!
//! Requests keep every number wide (`i64`/`f64`) and optional so that out-of-range values
//! reach validation (`params.rs`) and get a message with the number in it, instead of a
//! serde type error. Unknown fields are ignored, as vLLM does.

mod response;

pub use response::*;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum StopSeq {
    One(String),
    Many(Vec<String>),
}

impl StopSeq {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopSeq::One(s) => vec![s],
            StopSeq::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    pub include_usage: Option<bool>,
    pub continuous_usage_stats: Option<bool>,
}

/// Sampling and output fields shared by completions and chat completions (OpenAI's and
/// vLLM's extras), flattened into both requests.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub model: Option<String>,
    pub n: Option<i64>,
    pub best_of: Option<i64>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub logit_bias: Option<BTreeMap<String, f64>>,
    pub seed: Option<i64>,
    pub stop: Option<StopSeq>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub user: Option<String>,
    pub echo: Option<bool>,
    // vLLM extras.
    pub top_k: Option<i64>,
    pub min_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub min_tokens: Option<i64>,
    pub ignore_eos: Option<bool>,
    pub skip_special_tokens: Option<bool>,
    pub spaces_between_special_tokens: Option<bool>,
    pub stop_token_ids: Option<Vec<i64>>,
    pub include_stop_str_in_output: Option<bool>,
    pub allowed_token_ids: Option<Vec<i64>>,
    pub bad_words: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub prompt_logprobs: Option<i64>,
    pub add_special_tokens: Option<bool>,
    pub return_token_ids: Option<bool>,
    pub request_id: Option<String>,
}

/// `prompt`: a string, a list of strings, a list of token ids or a list of such lists.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PromptInput {
    Text(String),
    Texts(Vec<String>),
    Ids(Vec<i64>),
    IdLists(Vec<Vec<i64>>),
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub prompt: Option<PromptInput>,
    pub suffix: Option<String>,
    /// Number of top logprobs per token (0 = only the chosen one).
    pub logprobs: Option<i64>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// Kept as JSON: messages go to the chat template with every key they carry
    /// (`tool_calls`, `reasoning_content`, ...); `chat.rs` checks roles and content.
    pub messages: Vec<Value>,
    pub max_completion_tokens: Option<i64>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<i64>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub response_format: Option<Value>,
    pub documents: Option<Vec<Value>>,
    pub add_generation_prompt: Option<bool>,
    pub continue_final_message: Option<bool>,
    pub chat_template: Option<String>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// `POST /tokenize`: either a prompt or chat messages.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizeRequest {
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub messages: Option<Vec<Value>>,
    pub add_special_tokens: Option<bool>,
    pub add_generation_prompt: Option<bool>,
    pub continue_final_message: Option<bool>,
    pub chat_template_kwargs: Option<Map<String, Value>>,
    pub return_token_strs: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TokenizeResponse {
    pub count: usize,
    pub max_model_len: usize,
    pub tokens: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_strs: Option<Vec<String>>,
}

/// `POST /detokenize`.
#[derive(Clone, Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub model: Option<String>,
    pub tokens: Vec<i64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DetokenizeResponse {
    pub prompt: String,
}

/// One entry of `GET /v1/models`.
#[derive(Clone, Debug, Serialize)]
pub struct ModelCard {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
    pub root: String,
    pub parent: Option<String>,
    pub max_model_len: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelCard>,
}
