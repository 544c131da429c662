//! `POST /v1/chat/completions`: messages (system/developer/user/assistant/tool, content as a
//! string or text parts) rendered by the model's chat template (or `--chat-template`, or the
//! request's `chat_template`), with `chat_template_kwargs`; whole or streamed.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use tessera_core::tokenizer::{ChatTemplate, ChatTemplateInputs};

use super::engine::TokenLogprobs;
use super::error::ApiError;
use super::generate::{blocking, submit, Merged, PromptJob};
use super::json::{json_kind, ApiJson};
use super::params::{resolve_max_tokens, validate, MAX_LOGPROBS};
use super::protocol::{
    ChatChoice, ChatChunkChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse, ChatDelta, ChatLogprobs,
    ChatMessageOut, ChatTokenLogprob, ChatTopLogprob, Skip, Usage,
};
use super::sse::{sse_response, SseSender};
use super::state::{unix_now, AppState, ModelInfo};

const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// Checks the messages and flattens text parts into strings (joined with newlines, as
/// vLLM's "string" content format does).
pub fn normalize_messages(msgs: &[Value]) -> Result<Value, ApiError> {
    if msgs.is_empty() {
        return Err(ApiError::param("messages", "messages must contain at least one message"));
    }
    let mut out = Vec::with_capacity(msgs.len());
    for (i, m) in msgs.iter().enumerate() {
        let Some(obj) = m.as_object() else {
            return Err(ApiError::param("messages", format!("messages[{i}] must be an object, got {}", json_kind(m))));
        };
        let role = match obj.get("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.as_str(),
            Some(Value::String(r)) => {
                return Err(ApiError::param("messages", format!("messages[{i}].role must be one of {ROLES:?}, got {r:?}")))
            }
            _ => return Err(ApiError::param("messages", format!("messages[{i}].role is required and must be a string"))),
        };
        let mut obj = obj.clone();
        let content = match obj.get("content") {
            None | Some(Value::Null) if role == "assistant" => Value::Null,
            None | Some(Value::Null) => {
                return Err(ApiError::param("messages", format!("messages[{i}].content is required for role {role:?}")))
            }
            Some(Value::String(s)) => Value::String(s.clone()),
            Some(Value::Array(parts)) => Value::String(join_parts(i, parts)?),
            Some(other) => {
                return Err(ApiError::param(
                    "messages",
                    format!("messages[{i}].content must be a string or a list of content parts, got {}", json_kind(other)),
                ))
            }
        };
        obj.insert("content".into(), content);
        out.push(Value::Object(obj));
    }
    Ok(Value::Array(out))
}

fn join_parts(i: usize, parts: &[Value]) -> Result<String, ApiError> {
    let mut texts = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        match (kind, p.get("text")) {
            ("text", Some(Value::String(t))) => texts.push(t.as_str()),
            ("text", _) => return Err(ApiError::param("messages", format!("messages[{i}].content[{j}]: a text part needs a string `text`"))),
            ("", _) => return Err(ApiError::param("messages", format!("messages[{i}].content[{j}] needs a `type`"))),
            (other, _) => {
                return Err(ApiError::param(
                    "messages",
                    format!("messages[{i}].content[{j}]: content parts of type {other:?} are not supported by this model (text only)"),
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// Options of one template rendering.
pub struct RenderOpts<'a> {
    pub template: Option<&'a str>,
    pub add_generation_prompt: bool,
    pub continue_final_message: bool,
    pub tools: Option<Value>,
    pub documents: Option<Value>,
    pub kwargs: Map<String, Value>,
}

/// Renders the conversation to the prompt text.
pub fn render(m: &ModelInfo, messages: &Value, o: &RenderOpts<'_>) -> Result<String, ApiError> {
    if o.continue_final_message && o.add_generation_prompt {
        return Err(ApiError::param(
            "continue_final_message",
            "Cannot set both `continue_final_message` and `add_generation_prompt` to True.",
        ));
    }
    let own;
    let template: &ChatTemplate = match o.template {
        Some(src) => {
            own = ChatTemplate::new(src)?;
            &own
        }
        None => m.chat_template.as_ref().ok_or_else(|| {
            ApiError::bad("this model has no chat template: start the server with --chat-template FILE, pass `chat_template`, or use /v1/completions")
        })?,
    };
    let mut inputs = ChatTemplateInputs::new(messages, &o.kwargs);
    inputs.add_generation_prompt = o.add_generation_prompt;
    inputs.bos_token = m.bos_token.as_deref();
    inputs.eos_token = m.eos_token.as_deref();
    inputs.tools = o.tools.as_ref();
    inputs.documents = o.documents.as_ref();
    let mut text = template.render(&inputs)?;
    if o.continue_final_message {
        // Cut what the template appends after the final message (end-of-turn tokens).
        let last = messages.as_array().and_then(|a| a.last()).and_then(|m| m.get("content")).and_then(Value::as_str).unwrap_or("");
        if let Some(pos) = text.rfind(last) {
            text.truncate(pos + last.len());
        }
    }
    Ok(text)
}

pub async fn create_chat_completion(State(state): State<AppState>, ApiJson(req): ApiJson<ChatCompletionRequest>) -> Result<Response, ApiError> {
    let (model, name) = state.model_for(req.sampling.model.as_deref())?;
    let f = &req.sampling;
    let top = match (req.logprobs, req.top_logprobs) {
        (Some(true), k) => Some(k.unwrap_or(0)),
        (_, Some(k)) if k > 0 => return Err(ApiError::param("top_logprobs", "when using `top_logprobs`, `logprobs` must be set to true.")),
        _ => None,
    };
    if let Some(k) = req.top_logprobs {
        if k < 0 || k as u64 > MAX_LOGPROBS as u64 {
            return Err(ApiError::param("top_logprobs", format!("top_logprobs must be between 0 and {MAX_LOGPROBS}, got {k}.")));
        }
    }
    if let Some(rf) = &req.response_format {
        let kind = rf.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "text" {
            return Err(ApiError::param("response_format", format!("response_format of type {kind:?} is not supported (only \"text\")")));
        }
    }
    match req.tool_choice.as_ref() {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "none" => {}
        Some(_) if req.tools.as_ref().is_none_or(Vec::is_empty) => {}
        Some(other) => {
            return Err(ApiError::param("tool_choice", format!("tool_choice {other} is not supported: this server does not parse tool calls")))
        }
    }
    let max_tokens = req.max_completion_tokens.or(f.max_tokens);
    let params = validate(f, max_tokens, None, top, &model.defaults, model.limits())?;
    let messages = normalize_messages(&req.messages)?;
    let add_special = f.add_special_tokens.unwrap_or(false);
    let opts = RenderOpts {
        template: None,
        add_generation_prompt: req.add_generation_prompt.unwrap_or(true),
        continue_final_message: req.continue_final_message.unwrap_or(false),
        tools: req.tools.clone().map(Value::Array),
        documents: req.documents.clone().map(Value::Array),
        kwargs: req.chat_template_kwargs.clone().unwrap_or_default(),
    };
    let request_template = req.chat_template.clone();
    let m = model.clone();
    let max = params.max_tokens;
    let job = blocking(move || {
        let o = RenderOpts { template: request_template.as_deref(), ..opts };
        let text = render(&m, &messages, &o)?;
        let ids = m.tokenizer()?.encode(&text, add_special)?;
        if ids.is_empty() {
            return Err(ApiError::param("messages", "the rendered conversation is empty"));
        }
        let max_tokens = resolve_max_tokens(ids.len(), max, m.max_model_len)?;
        Ok(PromptJob { token_ids: ids, text: Some(text), max_tokens })
    })
    .await?;
    let id = state.request_id("chatcmpl");
    let jobs = [job];
    let merged = submit(&state, &id, &jobs, &params).await?;
    let [job] = jobs;
    let out = Out { id, model: model.clone(), name, created: unix_now(), want_logprobs: top.is_some(), return_ids: f.return_token_ids.unwrap_or(false) };
    if f.stream == Some(true) {
        let include_usage = f.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false);
        return Ok(sse_response(move |tx| stream(out, merged, include_usage, tx)));
    }
    let prompt_tokens = merged.prompt_tokens();
    let choices = merged.collect().await?;
    let completion_tokens = choices.iter().map(|c| c.token_ids.len()).sum();
    let choices = choices
        .into_iter()
        .enumerate()
        .map(|(index, c)| ChatChoice {
            index,
            logprobs: out.want_logprobs.then(|| logprobs(&out.model, &c.logprobs)),
            finish_reason: c.finish_str(),
            message: ChatMessageOut { role: "assistant", content: c.text, tool_calls: Vec::new() },
            stop_reason: c.stop_reason,
            token_ids: out.return_ids.then_some(c.token_ids),
        })
        .collect();
    let resp = ChatCompletionResponse {
        id: out.id,
        object: "chat.completion",
        created: out.created,
        model: out.name,
        choices,
        usage: Usage::new(prompt_tokens, completion_tokens),
        prompt_token_ids: out.return_ids.then_some(job.token_ids),
    };
    Ok(axum::Json(resp).into_response())
}

fn logprobs(m: &ModelInfo, lps: &[TokenLogprobs]) -> ChatLogprobs {
    let entry = |id: u32| {
        let token = m.token_str(id);
        let bytes = token.as_bytes().to_vec();
        (token, bytes)
    };
    ChatLogprobs {
        content: lps
            .iter()
            .map(|lp| {
                let (token, bytes) = entry(lp.token_id);
                let top_logprobs = lp
                    .top
                    .iter()
                    .map(|&(id, logprob)| {
                        let (token, bytes) = entry(id);
                        ChatTopLogprob { token, logprob, bytes }
                    })
                    .collect();
                ChatTokenLogprob { token, logprob: lp.logprob, bytes, top_logprobs }
            })
            .collect(),
    }
}

struct Out {
    id: String,
    model: std::sync::Arc<ModelInfo>,
    name: String,
    created: u64,
    want_logprobs: bool,
    return_ids: bool,
}

impl Out {
    fn chunk(&self, choices: Vec<ChatChunkChoice>, usage: Skip<Usage>) -> ChatCompletionChunk {
        ChatCompletionChunk { id: self.id.clone(), object: "chat.completion.chunk", created: self.created, model: self.name.clone(), choices, usage }
    }
}

async fn stream(out: Out, mut merged: Merged, include_usage: bool, tx: SseSender) {
    let usage_field = if include_usage { Skip::Null } else { Skip::Omit };
    for index in 0..merged.num_choices() {
        let delta = ChatDelta { role: Some("assistant"), content: Some(String::new()) };
        let c = ChatChunkChoice { index, delta, logprobs: None, finish_reason: None, stop_reason: None, token_ids: None };
        if !tx.send_json(&out.chunk(vec![c], usage_field.clone())).await {
            return;
        }
    }
    let mut completion_tokens = 0;
    loop {
        let item = tokio::select! {
            _ = tx.closed() => return,
            item = merged.next() => item,
        };
        let u = match item {
            Some(Ok((_, u))) => u,
            Some(Err(e)) => {
                tx.send_error(&e).await;
                return tx.done().await;
            }
            None => {
                tx.send_error(&ApiError::Unavailable("the server shut down before the request finished".into())).await;
                return tx.done().await;
            }
        };
        for d in u.deltas {
            if d.token_ids.is_empty() && d.text.is_empty() && d.finish_reason.is_none() {
                continue;
            }
            completion_tokens += d.token_ids.len();
            let c = ChatChunkChoice {
                index: d.index,
                logprobs: out.want_logprobs.then(|| logprobs(&out.model, &d.logprobs)),
                finish_reason: d.finish_reason.map(|f| f.as_str()),
                stop_reason: d.stop_reason,
                token_ids: out.return_ids.then_some(d.token_ids),
                delta: ChatDelta { role: None, content: Some(d.text) },
            };
            if !tx.send_json(&out.chunk(vec![c], usage_field.clone())).await {
                return;
            }
        }
        if u.finished {
            break;
        }
    }
    if include_usage {
        let usage = Usage::new(merged.prompt_tokens(), completion_tokens);
        tx.send_json(&out.chunk(Vec::new(), Skip::Some(usage))).await;
    }
    tx.done().await;
}
