//! `ChatTemplate`: renders a model's Jinja chat template exactly like transformers'
//! `apply_chat_template(messages, tokenize=False, ...)`.
//!
//! What the template sees (transformers 5 `apply_chat_template` -> `render_jinja_template`):
//!
//! ```text
//! messages               the conversation, each message with null-valued keys dropped and a
//!                        reasoning field ("reasoning_content" | "thinking" | "reasoning")
//!                        copied to "thinking" (first key) and "reasoning_content"
//! tools, documents       the JSON given, or none (always defined)
//! add_generation_prompt  bool
//! bos_token, eos_token   only when set (transformers passes its special_tokens_map)
//! <extra kwargs>         e.g. enable_thinking, date_string, xml_tools; they override
//!                        bos_token/eos_token of the same name
//! ```

use serde_json::{Map, Value as Json};

use minijinja::Value;

use super::error::{Result, TokenizerError};
use super::jinja_env::{
    new_environment, rewrite_generation_tags, set_clock, system_clock, Clock, RaisedException,
};

const TEMPLATE_NAME: &str = "chat_template";
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];
const RESERVED: [&str; 4] = ["messages", "tools", "documents", "add_generation_prompt"];

/// Everything a chat template is rendered with.
#[derive(Debug, Clone, Copy)]
pub struct ChatTemplateInputs<'a> {
    /// A JSON array of message objects; `content` may be a string or a list of parts.
    pub messages: &'a Json,
    pub add_generation_prompt: bool,
    pub bos_token: Option<&'a str>,
    pub eos_token: Option<&'a str>,
    /// A JSON array of tool schemas (objects).
    pub tools: Option<&'a Json>,
    /// A JSON array of documents (objects) for RAG templates.
    pub documents: Option<&'a Json>,
    /// Extra template variables (`enable_thinking`, `date_string`, ...).
    pub extra: &'a Map<String, Json>,
}

impl<'a> ChatTemplateInputs<'a> {
    /// Inputs with no generation prompt, tokens, tools or documents.
    pub fn new(messages: &'a Json, extra: &'a Map<String, Json>) -> Self {
        ChatTemplateInputs {
            messages,
            add_generation_prompt: false,
            bos_token: None,
            eos_token: None,
            tools: None,
            documents: None,
            extra,
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compile `source`; a syntax error is [`TokenizerError::TemplateSyntax`].
    pub fn new(source: &str) -> Result<Self> {
        Self::with_clock(source, system_clock())
    }

    /// Compile `source` with `strftime_now` reading `clock` (tests pin the date this way).
    pub fn with_clock(source: &str, clock: Clock) -> Result<Self> {
        let mut env = new_environment(clock);
        let source = rewrite_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, source).map_err(|e| {
            TokenizerError::TemplateSyntax {
                message: error_chain(&e),
            }
        })?;
        Ok(ChatTemplate { env })
    }

    /// Replace the clock behind `strftime_now`.
    pub fn set_clock(&mut self, clock: Clock) {
        set_clock(&mut self.env, clock);
    }

    /// Render the conversation to the prompt text.
    pub fn render(&self, inputs: &ChatTemplateInputs<'_>) -> Result<String> {
        let messages = normalize_messages(inputs.messages)?;
        let tools = checked_list(
            inputs.tools,
            "tools",
            "Tools should be a list of JSON schemas (objects)",
        )?;
        let documents = checked_list(
            inputs.documents,
            "documents",
            "Documents should be a list of dicts with 'title' and 'text' keys!",
        )?;
        if let Some(key) = RESERVED.iter().find(|k| inputs.extra.contains_key(**k)) {
            return Err(TokenizerError::InvalidInput {
                message: format!(
                    "`{key}` is set by the renderer and cannot be passed as an extra variable"
                ),
            });
        }

        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), to_value(&messages)),
            (
                "tools".into(),
                tools.map(to_value).unwrap_or(Value::from(())),
            ),
            (
                "documents".into(),
                documents.map(to_value).unwrap_or(Value::from(())),
            ),
            (
                "add_generation_prompt".into(),
                Value::from(inputs.add_generation_prompt),
            ),
        ];
        for (name, token) in [
            ("bos_token", inputs.bos_token),
            ("eos_token", inputs.eos_token),
        ] {
            if let Some(token) = token {
                if !inputs.extra.contains_key(name) {
                    ctx.push((name.into(), Value::from(token)));
                }
            }
        }
        for (k, v) in inputs.extra {
            ctx.push((k.clone(), to_value(v)));
        }

        let template =
            self.env
                .get_template(TEMPLATE_NAME)
                .map_err(|e| TokenizerError::TemplateRender {
                    message: error_chain(&e),
                })?;
        let ctx: std::collections::BTreeMap<String, Value> = ctx.into_iter().collect();
        template.render(Value::from(ctx)).map_err(render_error)
    }
}

fn to_value(json: &Json) -> Value {
    Value::from(minijinja::value::Serde(json))
}

/// transformers' `_normalize_chat_messages` + `_alias_reasoning_fields` on one conversation.
fn normalize_messages(messages: &Json) -> Result<Json> {
    let Json::Array(list) = messages else {
        return Err(TokenizerError::InvalidInput {
            message: format!(
                "messages must be a JSON array of message objects, got {}",
                kind_of(messages)
            ),
        });
    };
    if list.is_empty() {
        return Err(TokenizerError::InvalidInput {
            message:
                "Cannot apply chat template to an empty conversation. Provide at least one message."
                    .into(),
        });
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, message) in list.iter().enumerate() {
        let Json::Object(fields) = message else {
            return Err(TokenizerError::InvalidInput {
                message: format!("messages[{i}] must be an object, got {}", kind_of(message)),
            });
        };
        let mut msg: Map<String, Json> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(reasoning) = REASONING_FIELDS.iter().find_map(|k| msg.get(*k).cloned()) {
            // {"thinking": r, **message, "reasoning_content": r}
            let mut aliased = Map::with_capacity(msg.len() + 2);
            aliased.insert("thinking".into(), reasoning.clone());
            for (k, v) in std::mem::take(&mut msg) {
                aliased.insert(k, v);
            }
            aliased.insert("reasoning_content".into(), reasoning);
            msg = aliased;
        }
        out.push(Json::Object(msg));
    }
    Ok(Json::Array(out))
}

fn checked_list<'a>(value: Option<&'a Json>, name: &str, what: &str) -> Result<Option<&'a Json>> {
    match value {
        None | Some(Json::Null) => Ok(None),
        Some(v @ Json::Array(items)) if items.iter().all(Json::is_object) => Ok(Some(v)),
        Some(v) => Err(TokenizerError::InvalidInput {
            message: format!("{name}: {what}, got {}", kind_of(v)),
        }),
    }
}

fn kind_of(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn render_error(err: minijinja::Error) -> TokenizerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return TokenizerError::TemplateException {
                message: raised.0.clone(),
            };
        }
        source = e.source();
    }
    TokenizerError::TemplateRender {
        message: error_chain(&err),
    }
}

/// minijinja's message plus its causes, on one line.
fn error_chain(err: &minijinja::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        message.push_str(": ");
        message.push_str(&e.to_string());
        source = e.source();
    }
    message
}
