//! `WebError`: what the browser bindings report, turned into JavaScript `Error`s.

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Core(#[from] tessera_core::Error),
    #[error(transparent)]
    Gguf(#[from] tessera_core::weights::GgufError),
    #[error("invalid JSON in {what}: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("model files: {0}")]
    Files(String),
    #[error("WebGPU is not available: {0}")]
    NoWebGpu(String),
    #[error("unknown device {0:?}: expected \"webgpu\", \"cpu\" or \"auto\"")]
    Device(String),
    #[error("the engine is busy (a step is running); call it between steps")]
    Busy,
    #[error("the engine was unloaded")]
    Unloaded,
}

pub type Result<T> = std::result::Result<T, WebError>;

/// A core sub-error (config, tokenizer, weights, ...) as a `WebError`, for `map_err`.
pub fn core<E: Into<tessera_core::Error>>(e: E) -> WebError {
    WebError::Core(e.into())
}

/// `serde_json::from_str` with the input named in the error.
pub fn parse_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| WebError::Json { what, source })
}
