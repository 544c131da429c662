//! Shared server state: the configuration, the model's description once it has loaded
//! (tokenizer, chat template, limits, generation defaults), the engine client and metrics.
//!
//! The server listens before the model has loaded; until `model` is set, every endpoint
//! that needs the model answers 503.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tessera_core::tokenizer::{ChatTemplate, Tokenizer};

use super::engine::EngineClient;
use super::error::ApiError;
use super::metrics::Metrics;
use super::params::{GenDefaults, Limits};

/// Settings fixed at startup.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Requests with a body over this many bytes get 413.
    pub max_body_bytes: usize,
    /// `--api-key`: when set, `/v1/*` requires `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// `--allowed-origins` for CORS (`*` = any).
    pub allowed_origins: Vec<String>,
}

/// The loaded model, as the HTTP side sees it.
pub struct ModelInfo {
    /// `--served-model-name` (or the model path); the first is reported in responses.
    pub names: Vec<String>,
    /// Where the model came from (`root` in /v1/models).
    pub root: String,
    pub created: u64,
    pub max_model_len: usize,
    pub vocab_size: usize,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub defaults: GenDefaults,
}

impl ModelInfo {
    pub fn limits(&self) -> Limits {
        Limits { max_model_len: self.max_model_len, vocab_size: self.vocab_size }
    }

    /// The tokenizer, or a 400 saying why text cannot be handled.
    pub fn tokenizer(&self) -> Result<&Tokenizer, ApiError> {
        self.tokenizer.as_ref().ok_or_else(|| {
            ApiError::bad("this model has no tokenizer (no tokenizer.json): send prompts as token ids to /v1/completions")
        })
    }

    /// The string shown for one token in logprobs: its decoded text, or `token_id:N`
    /// (vLLM's `--return-tokens-as-token-ids` format) when there is no tokenizer.
    pub fn token_str(&self, id: u32) -> String {
        match &self.tokenizer {
            Some(t) => t.decode(&[id], false).unwrap_or_else(|_| format!("token_id:{id}")),
            None => format!("token_id:{id}"),
        }
    }

    /// Decodes ids for echo and /detokenize; empty without a tokenizer.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ApiError> {
        match &self.tokenizer {
            Some(t) => Ok(t.decode(ids, skip_special_tokens)?),
            None => Ok(String::new()),
        }
    }
}

struct Inner {
    config: ServerConfig,
    model: Arc<OnceLock<Arc<ModelInfo>>>,
    engine: EngineClient,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    boot: u64,
}

/// Cheap to clone; handed to every handler.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(config: ServerConfig, model: Arc<OnceLock<Arc<ModelInfo>>>, engine: EngineClient, metrics: Arc<Metrics>) -> Self {
        let boot = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
        AppState(Arc::new(Inner { config, model, engine, metrics, next_id: AtomicU64::new(0), boot }))
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn engine(&self) -> &EngineClient {
        &self.0.engine
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The model, or 503 while it loads.
    pub fn model(&self) -> Result<Arc<ModelInfo>, ApiError> {
        self.0.model.get().cloned().ok_or_else(|| ApiError::Unavailable("the model is still loading; try again shortly".into()))
    }

    pub fn is_ready(&self) -> bool {
        self.0.model.get().is_some()
    }

    /// The model for a request naming `requested` (absent = the served one), with the name
    /// to report; 404 for another name.
    pub fn model_for(&self, requested: Option<&str>) -> Result<(Arc<ModelInfo>, String), ApiError> {
        let m = self.model()?;
        let name = match requested {
            None | Some("") => m.names[0].clone(),
            Some(r) if m.names.iter().any(|n| n == r) => r.to_string(),
            Some(r) => return Err(ApiError::NotFound(format!("The model `{r}` does not exist."))),
        };
        Ok((m, name))
    }

    /// A fresh id such as `cmpl-17a2...-3`.
    pub fn request_id(&self, prefix: &str) -> String {
        let n = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}{n:06x}", self.0.boot & 0xffff_ffff_ffff)
    }
}

/// Seconds since the epoch (`created`).
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
