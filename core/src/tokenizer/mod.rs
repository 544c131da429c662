//! Tokenizer wrapper (tokenizer.json), tokenizer_config.json and chat templates, matching transformers 5.
//!
//! Everything takes bytes or strings so it works in the browser; `from_file` helpers exist on
//! native targets only. Parity with transformers is tested byte for byte against fixtures
//! recorded by `tests/fixtures/make_templates.py`.
//!
//! ```text
//! tokenizer.json ───────────> Tokenizer::from_bytes ──> encode / decode / token_to_id
//! tokenizer_config.json ──┬─> TokenizerConfig::from_json_str (special tokens, flags)
//! chat_template.jinja ────┴─> effective_chat_template ──> ChatTemplate::new ──> render
//! ```

mod chat_template;
mod config;
mod error;
mod gguf;
mod hf;
mod jinja_env;
pub mod pyfmt;

pub use chat_template::{ChatTemplate, ChatTemplateInputs};
pub use config::{effective_chat_template, ChatTemplateSpec, TokenizerConfig};
pub use error::{Result, TokenizerError};
pub use gguf::{gguf_chat_template, gguf_tokenizer_config, gguf_tokenizer_json};
pub use hf::{clean_up_tokenization, Tokenizer};
pub use jinja_env::{system_clock, Clock};
