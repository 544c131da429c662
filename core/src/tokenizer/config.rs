//! `TokenizerConfig` (tokenizer_config.json) and which chat template wins, as transformers 5 decides.
//!
//! Template precedence (transformers 5 `from_pretrained`):
//!
//! ```text
//! chat_template.jinja present?  ── yes ──> its text is the template (config's entry ignored)
//!        │ no
//!        v
//! tokenizer_config.json "chat_template":
//!    string                        -> that template
//!    [{"name", "template"}, ...]   -> named set: "tool_use" when tools are passed and it
//!                                     exists, else "default", else an error naming the set
//!    absent / null                 -> no template
//! ```

use serde_json::Value;

use super::error::{describe_json, Result, TokenizerError};

const CONFIG_FILE: &str = "tokenizer_config.json";
const JINJA_FILE: &str = "chat_template.jinja";

/// The chat template entry of a tokenizer config: one template or a named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplateSpec {
    Single(String),
    /// `(name, template)` pairs in file order.
    Named(Vec<(String, String)>),
}

impl ChatTemplateSpec {
    /// The template transformers' `get_chat_template` picks when no template is passed.
    pub fn select(&self, with_tools: bool) -> Result<&str> {
        match self {
            ChatTemplateSpec::Single(s) => Ok(s),
            ChatTemplateSpec::Named(set) => {
                let find =
                    |name: &str| set.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str());
                let picked = if with_tools {
                    find("tool_use").or_else(|| find("default"))
                } else {
                    find("default")
                };
                picked.ok_or_else(|| TokenizerError::NoSuchChatTemplate {
                    file: CONFIG_FILE,
                    wanted: "default".into(),
                    available: set.iter().map(|(n, _)| n.clone()).collect(),
                })
            }
        }
    }

    /// A template by name (`"default"`, `"tool_use"`, `"rag"`, ...).
    pub fn named(&self, name: &str) -> Option<&str> {
        match self {
            ChatTemplateSpec::Single(s) => (name == "default").then_some(s.as_str()),
            ChatTemplateSpec::Named(set) => {
                set.iter().find(|(n, _)| n == name).map(|(_, t)| t.as_str())
            }
        }
    }
}

/// The fields of tokenizer_config.json the engine uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenizerConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub unk_token: Option<String>,
    pub add_bos_token: Option<bool>,
    pub add_eos_token: Option<bool>,
    pub clean_up_tokenization_spaces: Option<bool>,
    pub chat_template: Option<ChatTemplateSpec>,
    /// `None` when absent or set to transformers' "no limit" sentinel (`int(1e30)`).
    pub model_max_length: Option<u64>,
}

impl TokenizerConfig {
    /// Parse tokenizer_config.json text.
    pub fn from_json_str(text: &str) -> Result<Self> {
        let root: Value = serde_json::from_str(text).map_err(|e| TokenizerError::InvalidFile {
            file: CONFIG_FILE,
            message: format!("invalid JSON: {e}"),
        })?;
        let Value::Object(obj) = &root else {
            return Err(TokenizerError::InvalidFile {
                file: CONFIG_FILE,
                message: format!("must be a JSON object, got {}", describe_json(&root)),
            });
        };
        let get = |k: &str| obj.get(k).filter(|v| !v.is_null());
        Ok(TokenizerConfig {
            bos_token: special_token(get("bos_token"), "bos_token")?,
            eos_token: special_token(get("eos_token"), "eos_token")?,
            pad_token: special_token(get("pad_token"), "pad_token")?,
            unk_token: special_token(get("unk_token"), "unk_token")?,
            add_bos_token: boolean(get("add_bos_token"), "add_bos_token")?,
            add_eos_token: boolean(get("add_eos_token"), "add_eos_token")?,
            clean_up_tokenization_spaces: boolean(
                get("clean_up_tokenization_spaces"),
                "clean_up_tokenization_spaces",
            )?,
            chat_template: chat_template(get("chat_template"))?,
            model_max_length: max_length(get("model_max_length"))?,
        })
    }

    /// Parse tokenizer_config.json bytes (must be UTF-8).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidFile {
            file: CONFIG_FILE,
            message: format!("not UTF-8: {e}"),
        })?;
        Self::from_json_str(text)
    }

    /// Read tokenizer_config.json from disk (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json_bytes(&bytes)
    }

    /// The named special tokens that are set, as transformers passes them to a chat template
    /// (`special_tokens_map`: bos/eos/unk/pad here).
    pub fn special_tokens_map(&self) -> serde_json::Map<String, Value> {
        [
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
            ("unk_token", &self.unk_token),
            ("pad_token", &self.pad_token),
        ]
        .into_iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| (k.to_string(), Value::String(v.clone())))
        })
        .collect()
    }
}

/// The chat template transformers 5 would use, from the optional bytes of tokenizer_config.json
/// and chat_template.jinja (a standalone file wins). `with_tools` picks a `tool_use` entry of a
/// named set. `Ok(None)`: the model has no chat template.
pub fn effective_chat_template(
    tokenizer_config_json: Option<&[u8]>,
    chat_template_jinja: Option<&[u8]>,
    with_tools: bool,
) -> Result<Option<String>> {
    if let Some(bytes) = chat_template_jinja {
        let text = std::str::from_utf8(bytes).map_err(|e| TokenizerError::InvalidFile {
            file: JINJA_FILE,
            message: format!("not UTF-8: {e}"),
        })?;
        return Ok(Some(text.to_string()));
    }
    let Some(bytes) = tokenizer_config_json else {
        return Ok(None);
    };
    let config = TokenizerConfig::from_json_bytes(bytes)?;
    match &config.chat_template {
        Some(spec) => Ok(Some(spec.select(with_tools)?.to_string())),
        None => Ok(None),
    }
}

fn invalid(field: &str, expected: &'static str, got: &Value) -> TokenizerError {
    TokenizerError::InvalidField {
        file: CONFIG_FILE,
        field: field.to_string(),
        expected,
        got: describe_json(got),
    }
}

/// A string or an AddedToken dict `{"content": "...", ...}`.
fn special_token(value: Option<&Value>, field: &str) -> Result<Option<String>> {
    const EXPECTED: &str = "a string or {\"content\": ...}";
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v @ Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(invalid(field, EXPECTED, v)),
        },
        Some(v) => Err(invalid(field, EXPECTED, v)),
    }
}

fn boolean(value: Option<&Value>, field: &str) -> Result<Option<bool>> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(invalid(field, "a boolean", v)),
    }
}

fn chat_template(value: Option<&Value>) -> Result<Option<ChatTemplateSpec>> {
    const EXPECTED: &str = "a string or a list of {\"name\": ..., \"template\": ...}";
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(ChatTemplateSpec::Single(s.clone()))),
        Some(Value::Array(items)) => {
            let mut set = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => set.push((n.to_string(), t.to_string())),
                    _ => {
                        return Err(invalid(
                            &format!("chat_template[{i}]"),
                            "{\"name\": string, \"template\": string}",
                            item,
                        ))
                    }
                }
            }
            Ok(Some(ChatTemplateSpec::Named(set)))
        }
        Some(v) => Err(invalid("chat_template", EXPECTED, v)),
    }
}

fn max_length(value: Option<&Value>) -> Result<Option<u64>> {
    // transformers writes int(1e30) for "unbounded"; anything that large means no limit
    const UNBOUNDED: f64 = 1e18;
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(((u as f64) < UNBOUNDED).then_some(u));
            }
            match n.as_f64() {
                Some(f) if f >= UNBOUNDED => Ok(None),
                Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(Some(f as u64)),
                _ => Err(invalid(
                    "model_max_length",
                    "a non-negative integer",
                    value.unwrap(),
                )),
            }
        }
        Some(v) => Err(invalid("model_max_length", "a non-negative integer", v)),
    }
}
