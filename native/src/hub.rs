//! `--model PATH_OR_ID` -> a local folder of model files, through the Hugging Face cache and hub.
//!
//! ```text
//! resolve_model("owner/name")                       (blocking: call before the runtime
//!   |                                                or inside spawn_blocking)
//!   |- existing local path?  -> returned as is (folder, or a file such as a .gguf)
//!   |- not `owner/name`?     -> HubError::NotFound
//!   |- which commit?  online:  HEAD .../resolve/{revision}/config.json -> x-repo-commit
//!   |                          (network down + cached refs/{revision} -> the cached commit)
//!   |                 offline: refs/{revision} in the cache (or the revision is a commit)
//!   '- each file, pinned to that commit:
//!        snapshots/<commit>/<file> exists  -> use it   (no request)
//!        .no_exist/<commit>/<file> exists  -> absent   (no request)
//!        offline                           -> required: error; optional: absent
//!        HEAD the file at <commit>         -> 404: absent (+ .no_exist marker)
//!        blobs/<etag> exists               -> link it into the snapshot
//!        else download through hf-hub
//!      config.json (required), the OPTIONAL_FILES, then weights:
//!      model.safetensors.index.json -> every shard of its weight_map, else model.safetensors
//! ```
//!
//! The result is `<cache>/models--owner--name/snapshots/<commit>/`, the layout Python's
//! `huggingface_hub` uses, so caches are shared both ways. The network half lives in
//! [`remote`] (what hf-hub does and what we add), the cache lookups in [`cache`].

mod cache;
mod error;
mod remote;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub use error::{BoxError, HubError};

use cache::RepoCache;
use remote::Remote;

/// The one file every Hugging Face model repo must have.
pub const CONFIG_FILE: &str = "config.json";
/// Fetched when present; a 404 for them is fine.
pub const OPTIONAL_FILES: &[&str] = &[
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
];
/// Sharded weights: `{"weight_map": {"tensor.name": "model-00001-of-00002.safetensors", ..}}`.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// Unsharded weights.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Where and how to look for models. Build it with [`HubOptions::from_env`] in the CLI, or
/// literally (tests, embedders) so nothing is read from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Hub base URL without a trailing `/` (`HF_ENDPOINT`; default `https://huggingface.co`).
    pub endpoint: String,
    /// The hub cache folder holding `models--owner--name/` (`HF_HUB_CACHE`, `$HF_HOME/hub`).
    pub cache_dir: PathBuf,
    /// Sent as `Authorization: Bearer <token>` (`HF_TOKEN`, or the token file).
    pub token: Option<String>,
    /// Use only the cache, never the network (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Branch, tag or commit to resolve (default `main`).
    pub revision: String,
}

impl fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubOptions")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("revision", &self.revision)
            .finish()
    }
}

impl HubOptions {
    pub const DEFAULT_ENDPOINT: &'static str = "https://huggingface.co";
    pub const DEFAULT_REVISION: &'static str = "main";

    /// Reads the variables Python's `huggingface_hub` reads, with its precedence:
    ///
    /// - endpoint: `HF_ENDPOINT`, else `https://huggingface.co`
    /// - `HF_HOME`: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`
    /// - cache: `HF_HUB_CACHE` (or the older `HUGGINGFACE_HUB_CACHE`), else `$HF_HOME/hub`
    /// - token: `HF_TOKEN` (or the older `HUGGING_FACE_HUB_TOKEN`), else the file
    ///   `HF_TOKEN_PATH`, else `$HF_HOME/token` (written by `huggingface-cli login`)
    /// - offline: `HF_HUB_OFFLINE` is `1`, `true`, `yes` or `on` (any case)
    ///
    /// Empty variables count as unset; a leading `~/` in paths is expanded.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with the variables coming from `var` (for tests).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let home = var("HOME")
            .or_else(|| var("USERPROFILE"))
            .map(PathBuf::from)
            .or_else(dirs::home_dir)
            .unwrap_or_else(|| PathBuf::from("."));
        let path = |value: String| match value.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(value),
        };
        let hf_home = var("HF_HOME").map(path).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(path)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(path)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .map(|t| t.trim().to_string())
            .or_else(|| {
                let file = var("HF_TOKEN_PATH")
                    .map(path)
                    .unwrap_or_else(|| hf_home.join("token"));
                let token = std::fs::read_to_string(file).ok()?;
                let token = token.trim();
                (!token.is_empty()).then(|| token.to_string())
            });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        });
        let endpoint = var("HF_ENDPOINT").unwrap_or_else(|| Self::DEFAULT_ENDPOINT.to_string());
        Self {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            cache_dir,
            token,
            offline,
            revision: Self::DEFAULT_REVISION.to_string(),
        }
    }

    /// The same options at another revision (`--revision`).
    pub fn with_revision(mut self, revision: impl Into<String>) -> Self {
        self.revision = revision.into();
        self
    }
}

/// What `--model` turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// A folder holding config.json, tokenizer files and weights (for the hub: the snapshot
    /// folder), or, for a local single-file model, that file.
    pub path: PathBuf,
    pub source: ModelSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An existing local path, returned untouched.
    Local,
    /// A hub repository: `revision` as asked, `commit` as resolved (the snapshot folder name).
    Hub {
        repo: String,
        revision: String,
        commit: String,
    },
}

/// Resolves `--model`: an existing local path as is, else a hub repo id `owner/name`, whose
/// config, tokenizer files and safetensors weights are fetched into (or found in) the cache.
/// Blocking (network and disk).
pub fn resolve_model(model: &str, opts: &HubOptions) -> Result<ResolvedModel, HubError> {
    resolve_model_files(model, opts, true)
}

/// [`resolve_model`], fetching the safetensors weights only if `with_weights` (a dummy-weight
/// run needs config and tokenizer files alone).
pub fn resolve_model_files(model: &str, opts: &HubOptions, with_weights: bool) -> Result<ResolvedModel, HubError> {
    let local = Path::new(model);
    if !model.is_empty() && local.exists() {
        return Ok(ResolvedModel {
            path: local.to_path_buf(),
            source: ModelSource::Local,
        });
    }
    if validate_repo_id(model).is_err() {
        return Err(HubError::NotFound {
            model: model.to_string(),
        });
    }
    resolve_repo(model, opts, with_weights).map_err(|e| match e {
        HubError::RepoNotFound { repo, endpoint } => HubError::ModelNotFound {
            model: repo,
            endpoint,
        },
        e => e,
    })
}

/// Fetches (or finds in the cache) one named file of a hub repo, e.g. a GGUF file; returns
/// its path inside the snapshot folder. Blocking.
pub fn resolve_file(repo: &str, filename: &str, opts: &HubOptions) -> Result<PathBuf, HubError> {
    check_repo_id(repo)?;
    check_file_name(repo, filename)?;
    let mut session = Session::open(repo, opts, filename)?;
    session.fetch_required(filename)
}

fn resolve_repo(repo: &str, opts: &HubOptions, with_weights: bool) -> Result<ResolvedModel, HubError> {
    let mut session = Session::open(repo, opts, CONFIG_FILE)?;
    session.fetch_required(CONFIG_FILE)?;
    for file in OPTIONAL_FILES {
        session.fetch(file)?;
    }
    if with_weights {
        fetch_weights(&mut session, repo, opts)?;
    }
    Ok(ResolvedModel {
        path: session.cache.snapshot_dir(&session.commit),
        source: ModelSource::Hub {
            repo: repo.to_string(),
            revision: opts.revision.clone(),
            commit: session.commit.clone(),
        },
    })
}

/// The safetensors weights: every shard of the index, else the single file.
fn fetch_weights(session: &mut Session, repo: &str, opts: &HubOptions) -> Result<(), HubError> {
    if let Some(index) = session.fetch(WEIGHTS_INDEX_FILE)? {
        for shard in shard_names(&index)? {
            check_file_name(repo, &shard)?;
            session.fetch_required(&shard)?;
        }
    } else if session.fetch(WEIGHTS_FILE)?.is_none() {
        if session.remote.is_none() && !session.cache.known_missing(&session.commit, WEIGHTS_FILE) {
            // Only the cache was asked: the weights may well exist, just not here.
            session.fetch_required(WEIGHTS_FILE)?;
        }
        return Err(HubError::NoWeights {
            repo: repo.to_string(),
            revision: opts.revision.clone(),
        });
    }
    Ok(())
}

/// The distinct shard files named by a `model.safetensors.index.json`, sorted.
fn shard_names(index: &Path) -> Result<BTreeSet<String>, HubError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::HashMap<String, String>,
    }
    let text = std::fs::read(index).map_err(|source| HubError::Io {
        path: index.into(),
        source,
    })?;
    let index_json: Index =
        serde_json::from_slice(&text).map_err(|source| HubError::InvalidIndex {
            path: index.into(),
            source,
        })?;
    Ok(index_json.weight_map.into_values().collect())
}

/// One resolve: a repo pinned to one commit, fetching files into its snapshot folder.
struct Session<'a> {
    opts: &'a HubOptions,
    repo: &'a str,
    cache: RepoCache,
    commit: String,
    /// `None`: offline, or the network failed and the cache is used instead.
    remote: Option<Remote>,
    /// Why we are using only the cache although online: the network error, returned if a
    /// file we need turns out not to be cached.
    network_error: Option<HubError>,
    /// `refs/<commit>` existed before; if not, the one hf-hub writes is removed on drop.
    commit_ref_existed: bool,
}

impl<'a> Session<'a> {
    /// Learns the commit: online by a HEAD on `probe` (the first file wanted), offline (or
    /// when the hub is unreachable) from the cache's `refs/`.
    fn open(repo: &'a str, opts: &'a HubOptions, probe: &str) -> Result<Self, HubError> {
        check_revision(&opts.revision)?;
        let cache = RepoCache::new(&opts.cache_dir, repo);
        let offline_error = || HubError::OfflineNotCached {
            repo: repo.to_string(),
            file: probe.to_string(),
            revision: opts.revision.clone(),
            cache_dir: opts.cache_dir.clone(),
        };
        let (commit, remote, network_error) = if opts.offline {
            (
                cache.commit_for(&opts.revision).ok_or_else(offline_error)?,
                None,
                None,
            )
        } else {
            let remote = Remote::new(opts)?;
            match remote
                .head(repo, &opts.revision, probe)
                .map(|info| info.commit)
            {
                Ok(commit) => {
                    if !cache::is_commit_hash(&commit) {
                        return Err(HubError::Protocol {
                            url: opts.endpoint.clone(),
                            message: format!("`x-repo-commit: {commit}` is not a commit id"),
                        });
                    }
                    (commit, Some(remote), None)
                }
                Err(e @ HubError::Network { .. }) => match cache.commit_for(&opts.revision) {
                    Some(commit) => {
                        tracing::warn!("{e}; using the cached snapshot {commit} of {repo}");
                        (commit, None, Some(e))
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        };
        let commit_ref_existed = cache.ref_path(&commit).exists();
        if remote.is_some() {
            // Written now, not at the end, so what was downloaded is found offline even if a
            // later file fails.
            cache
                .write_ref(&opts.revision, &commit)
                .map_err(|source| HubError::Io {
                    path: cache.ref_path(&opts.revision),
                    source,
                })?;
        }
        Ok(Self {
            opts,
            repo,
            cache,
            commit,
            remote,
            network_error,
            commit_ref_existed,
        })
    }

    fn fetch_required(&mut self, file: &str) -> Result<PathBuf, HubError> {
        match self.fetch_inner(file, true)? {
            Some(path) => Ok(path),
            None => Err(HubError::FileNotFound {
                repo: self.repo.to_string(),
                file: file.to_string(),
                revision: self.opts.revision.clone(),
            }),
        }
    }

    /// An optional file: `Ok(None)` when the repo does not have it (or, offline, when the
    /// cache does not).
    fn fetch(&mut self, file: &str) -> Result<Option<PathBuf>, HubError> {
        self.fetch_inner(file, false)
    }

    fn fetch_inner(&mut self, file: &str, required: bool) -> Result<Option<PathBuf>, HubError> {
        if let Some(path) = self.cache.cached_file(&self.commit, file) {
            return Ok(Some(path));
        }
        if self.cache.known_missing(&self.commit, file) {
            return Ok(None);
        }
        let Some(remote) = &self.remote else {
            if required {
                return Err(self.network_error.take().unwrap_or_else(|| {
                    HubError::OfflineNotCached {
                        repo: self.repo.to_string(),
                        file: file.to_string(),
                        revision: self.opts.revision.clone(),
                        cache_dir: self.opts.cache_dir.clone(),
                    }
                }));
            }
            tracing::warn!(
                "{file} of {} is not in the cache; going on without it",
                self.repo
            );
            return Ok(None);
        };
        let info = match remote.head(self.repo, &self.commit, file) {
            Ok(info) => info,
            Err(HubError::FileNotFound { .. }) => {
                self.cache.mark_missing(&self.commit, file);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if let Some(etag) = &info.etag {
            // Same content already downloaded (for another commit): link it, fetch nothing.
            let linked = self.cache.link_blob(&self.commit, file, etag);
            let snapshot = || self.cache.snapshot_dir(&self.commit);
            if let Some(path) = linked.map_err(|source| HubError::Io {
                path: snapshot(),
                source,
            })? {
                return Ok(Some(path));
            }
        }
        let Some(path) = remote.download(self.repo, &self.commit, file)? else {
            self.cache.mark_missing(&self.commit, file);
            return Ok(None);
        };
        let expected = self.cache.snapshot_dir(&self.commit).join(file);
        if path != expected {
            return Err(HubError::Protocol {
                url: self.opts.endpoint.clone(),
                message: format!(
                    "asked for `{file}` at commit {}, got {} (a mirror serving another commit?)",
                    self.commit,
                    path.display()
                ),
            });
        }
        Ok(Some(path))
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        // hf-hub records the pinned commit as a ref (`refs/<commit>`); Python never writes
        // refs for commits, and `huggingface-cli scan-cache` would list it as a branch.
        if !self.commit_ref_existed && self.remote.is_some() {
            let _ = std::fs::remove_file(self.cache.ref_path(&self.commit));
        }
    }
}

fn check_repo_id(repo: &str) -> Result<(), HubError> {
    validate_repo_id(repo).map_err(|reason| HubError::InvalidRepoId {
        repo: repo.to_string(),
        reason,
    })
}

/// The hub's rules (`huggingface_hub.utils.validate_repo_id`), plus: an owner is required.
fn validate_repo_id(repo: &str) -> Result<(), &'static str> {
    if repo.len() > 96 {
        return Err("longer than 96 characters");
    }
    let Some((owner, name)) = repo.split_once('/') else {
        return Err("no `/` between owner and name");
    };
    if name.contains('/') {
        return Err("more than one `/`");
    }
    for part in [owner, name] {
        if part.is_empty() {
            return Err("empty owner or name");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err("only letters, digits, `-`, `_` and `.` are allowed");
        }
        if part.starts_with(['-', '.']) || part.ends_with(['-', '.']) {
            return Err("owner and name cannot start or end with `-` or `.`");
        }
    }
    if repo.contains("--") || repo.contains("..") {
        return Err("`--` and `..` are not allowed");
    }
    Ok(())
}

fn check_revision(revision: &str) -> Result<(), HubError> {
    let bad = |reason| {
        Err(HubError::InvalidRevision {
            revision: revision.to_string(),
            reason,
        })
    };
    if revision.is_empty() {
        return bad("empty");
    }
    if revision
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '\\' | '?' | '#' | '%'))
    {
        return bad("contains whitespace, a control character, `\\`, `?`, `#` or `%`");
    }
    // It becomes a path under refs/: no absolute paths, no `..`.
    if revision
        .split('/')
        .any(|part| matches!(part, "" | "." | ".."))
    {
        return bad("empty, `.` or `..` path component");
    }
    Ok(())
}

/// Repo-relative file names only (subfolders allowed): they become paths in the snapshot.
fn check_file_name(repo: &str, file: &str) -> Result<(), HubError> {
    let bad = |reason| {
        Err(HubError::InvalidFileName {
            repo: repo.to_string(),
            file: file.to_string(),
            reason,
        })
    };
    if file.is_empty() {
        return bad("empty");
    }
    if file
        .chars()
        .any(|c| c.is_control() || matches!(c, '\\' | '?' | '#'))
    {
        return bad("contains a control character, `\\`, `?` or `#`");
    }
    if file.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return bad("must be a relative path without empty, `.` or `..` components");
    }
    Ok(())
}
