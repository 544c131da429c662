//! `HubError`: everything that can go wrong turning `--model` into a local folder.
//!
//! Messages name what the user has to act on: the repo, the file, the endpoint, the cache
//! folder, and the environment variable that fixes it (`HF_TOKEN`, `HF_HUB_OFFLINE`).

use std::path::PathBuf;

/// Boxed cause of a transport failure (connection refused, DNS, TLS, timeout, ...).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a model or file could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Neither a local path nor something shaped like `owner/name`.
    #[error(
        "`{model}` is neither an existing local path nor a Hugging Face repo id of the form \
         `owner/name`"
    )]
    NotFound { model: String },

    /// Shaped like a repo id, not a local path, and the hub does not know it either.
    #[error(
        "`{model}` is not an existing local path, and the repository `{model}` was not found on \
         {endpoint} (if it is private or gated, set HF_TOKEN to a token that can read it)"
    )]
    ModelNotFound { model: String, endpoint: String },

    #[error("invalid repo id `{repo}`: {reason} (expected `owner/name`)")]
    InvalidRepoId { repo: String, reason: &'static str },

    #[error("invalid revision `{revision}`: {reason}")]
    InvalidRevision {
        revision: String,
        reason: &'static str,
    },

    /// A file name that would escape the snapshot folder, or is otherwise unusable.
    #[error("invalid file name `{file}` in repository `{repo}`: {reason}")]
    InvalidFileName {
        repo: String,
        file: String,
        reason: &'static str,
    },

    #[error(
        "repository `{repo}` not found on {endpoint} (if it is private or gated, set HF_TOKEN \
         to a token that can read it)"
    )]
    RepoNotFound { repo: String, endpoint: String },

    #[error("revision `{revision}` not found in repository `{repo}` on {endpoint}")]
    RevisionNotFound {
        repo: String,
        revision: String,
        endpoint: String,
    },

    #[error("file `{file}` not found in repository `{repo}` at revision `{revision}`")]
    FileNotFound {
        repo: String,
        file: String,
        revision: String,
    },

    #[error(
        "repository `{repo}` has no safetensors weights at revision `{revision}` (neither \
         `model.safetensors.index.json` nor `model.safetensors`)"
    )]
    NoWeights { repo: String, revision: String },

    /// HTTP 401/403: gated or private repo, missing or insufficient token.
    #[error(
        "access to repository `{repo}` was denied by {endpoint} (HTTP {status}): {}",
        auth_hint(.repo, .endpoint, *.gated, *.token_sent)
    )]
    Unauthorized {
        repo: String,
        endpoint: String,
        status: u16,
        gated: bool,
        token_sent: bool,
    },

    /// Offline (`HF_HUB_OFFLINE`) and the file is not in the cache.
    #[error(
        "offline mode (HF_HUB_OFFLINE) is on and `{file}` of `{repo}` at revision `{revision}` \
         is not in the cache {cache_dir}; run once online (or unset HF_HUB_OFFLINE) to download it"
    )]
    OfflineNotCached {
        repo: String,
        file: String,
        revision: String,
        cache_dir: PathBuf,
    },

    /// The hub could not be reached at all.
    #[error(
        "cannot reach the Hugging Face hub at {endpoint} (check the network or HF_ENDPOINT; \
         HF_HUB_OFFLINE=1 uses only the local cache)"
    )]
    Network {
        endpoint: String,
        #[source]
        source: BoxError,
    },

    /// Any other HTTP status.
    #[error("HTTP {status} from {url}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },

    /// The server answered, but not the way the hub protocol says (missing headers, ...).
    #[error("unexpected response from {url}: {message}")]
    Protocol { url: String, message: String },

    #[error("cannot parse the weight index {path}")]
    InvalidIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("timed out waiting for another process downloading {path}")]
    Locked { path: PathBuf },

    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn auth_hint(repo: &str, endpoint: &str, gated: bool, token_sent: bool) -> String {
    match (gated, token_sent) {
        (true, false) => format!(
            "`{repo}` is a gated model: accept its terms on {endpoint}/{repo}, then set HF_TOKEN \
             (or run `huggingface-cli login`) with a token of that account"
        ),
        (true, true) => format!(
            "`{repo}` is a gated model and the account of the token in use (HF_TOKEN or the token \
             file) has no access yet: accept its terms on {endpoint}/{repo}"
        ),
        (false, false) => "the repository is private or needs authentication: set HF_TOKEN \
                           (or run `huggingface-cli login`) to a token that can read it"
            .to_string(),
        (false, true) => "the token in use (HF_TOKEN or the token file) was rejected or cannot \
                          read this repository"
            .to_string(),
    }
}
