//! The crate-level error: each module's own error, plus invalid requests.

use crate::backend::BackendError;
use crate::config::ConfigError;
use crate::tokenizer::TokenizerError;
use crate::weights::WeightsError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A request the engine cannot run as asked (too long, bad ids, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The KV cache cannot hold what was asked of it.
    #[error("out of KV cache blocks: {0}")]
    OutOfBlocks(String),
    /// A broken invariant of the engine itself (a bug, not the caller's fault).
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;
