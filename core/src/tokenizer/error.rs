//! `TokenizerError`: everything the tokenizer wrapper, its config loader and chat templates can fail with.

/// Errors name the file (`tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`) and,
/// where there is one, the field.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// tokenizer.json could not be parsed by the `tokenizers` crate.
    #[error("tokenizer.json: {message}")]
    TokenizerJson { message: String },

    /// A file could not be read from disk (native helpers only).
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// A file is not valid JSON / UTF-8.
    #[error("{file}: {message}")]
    InvalidFile { file: &'static str, message: String },

    /// A field has the wrong type, e.g.
    /// `tokenizer_config.json: field `eos_token` must be a string or {"content": ...}, got 3`.
    #[error("{file}: field `{field}` must be {expected}, got {got}")]
    InvalidField {
        file: &'static str,
        field: String,
        expected: &'static str,
        got: String,
    },

    /// The config holds several named chat templates and none fits the request.
    #[error("{file}: no chat template named {wanted:?}; available: {available:?}")]
    NoSuchChatTemplate {
        file: &'static str,
        wanted: String,
        available: Vec<String>,
    },

    #[error("encode failed: {message}")]
    Encode { message: String },

    #[error("decode failed: {message}")]
    Decode { message: String },

    /// The chat template does not parse.
    #[error("chat template syntax error: {message}")]
    TemplateSyntax { message: String },

    /// The template called `raise_exception(message)`.
    #[error("chat template raised an exception: {message}")]
    TemplateException { message: String },

    /// Any other failure while rendering (type errors, unknown filters, ...).
    #[error("chat template render failed: {message}")]
    TemplateRender { message: String },

    /// The inputs cannot be rendered (empty conversation, a message that is not an object,
    /// an extra kwarg that collides with a reserved variable).
    #[error("chat template inputs: {message}")]
    InvalidInput { message: String },
}

pub type Result<T, E = TokenizerError> = std::result::Result<T, E>;

/// Short JSON spelling of a value for error messages.
pub(crate) fn describe_json(value: &serde_json::Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 80 {
        let head: String = s.chars().take(77).collect();
        format!("{head}...")
    } else {
        s
    }
}
