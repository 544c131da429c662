//! The network side: one HEAD to learn which commit a revision points at, then hf-hub
//! downloads pinned to that commit, with hub errors turned into [`HubError`]s.
//!
//! What hf-hub 0.4 (`api::sync`, ureq 2) does for `ApiRepo::download(file)`:
//!
//! ```text
//! 1. GET {endpoint}/{repo}/resolve/{rev}/{file}   Range: bytes=0-0, redirects off
//!      follows only *relative* 3xx itself (renamed repos); reads `x-repo-commit` and
//!      `x-linked-etag` (LFS) or `etag`, quotes stripped -> blob name
//!    if the answer is a 3xx to another host (LFS/Xet CDN):
//!      GET {Location}  Range: bytes=0-0  (with the same default headers, Authorization too)
//!    size <- the number after '/' in `Content-Range` (so the server must honour Range)
//! 2. GET {endpoint}/{repo}/resolve/{rev}/{file}   Range: bytes=0-   redirects followed
//!      (Authorization kept only on the same host), body -> blobs/<etag>.part, then renamed
//!      to blobs/<etag>; snapshots/<commit>/<file> -> ../../blobs/<etag> (relative symlink);
//!      refs/<rev> <- commit
//! ```
//!
//! Every request carries `User-Agent` and, with a token, `Authorization: Bearer <token>`.
//! A status >= 400 comes back as `ApiError::RequestError(ureq::Error::Status(code, response))`,
//! so the hub's `x-error-code` header (`RepoNotFound`, `RevisionNotFound`, `EntryNotFound`,
//! `GatedRepo`) can still be read; a connection failure is `ureq::Error::Transport`.
//!
//! What hf-hub does not do, and this module adds:
//! - It has no way to ask "which commit is `main` now?" without downloading (`metadata` is
//!   private), and `ApiRepo::get` never asks: a cached `refs/main` is trusted forever. We send
//!   one HEAD for the first file instead (what Python's `hf_hub_download` sends), so an
//!   updated branch is picked up and an up-to-date cache costs one request and no bytes.
//! - It downloads again a blob the cache already has (it never looks in `blobs/`), so a
//!   branch moving for a README edit would fetch every weight again. Before a download we
//!   HEAD the file: a 404 means absent, and a known etag is just linked into the snapshot.
//! - Downloads are pinned to that commit (`Repo::with_revision(.., commit)`), so every file of
//!   one resolve lands in the same `snapshots/<commit>/` even if the branch moves meanwhile.
//!   hf-hub then writes `refs/<commit>`, which Python never does; the caller removes it.
//! - Progress: hf-hub's own bar is shown for every file, even a 1 kB config; ours only for
//!   big files and only on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{HubError, HubOptions};

/// Files at least this big get a progress bar.
const PROGRESS_MIN_BYTES: usize = 8 << 20;
/// Relative redirects (renamed repos) followed by the HEAD probe.
const MAX_RELATIVE_REDIRECTS: usize = 5;

/// Where a request was going, for error messages.
struct Target<'a> {
    repo: &'a str,
    revision: &'a str,
    file: &'a str,
    url: &'a str,
}

/// What a HEAD on a file says.
pub(super) struct FileInfo {
    pub(super) commit: String,
    /// The blob name in the cache (`blobs/<etag>`); `None` if absent or unusable as a name.
    pub(super) etag: Option<String>,
}

pub(super) struct Remote {
    endpoint: String,
    cache_dir: PathBuf,
    token_sent: bool,
    /// Redirects off: the HEAD probe handles relative ones itself, like hf-hub and Python.
    probe: ureq::Agent,
    auth: Option<String>,
    api: Api,
}

impl Remote {
    pub(super) fn new(opts: &HubOptions) -> Result<Self, HubError> {
        let user_agent = format!(
            "tessera/{}; hf-hub/0.4; rust/unknown",
            env!("CARGO_PKG_VERSION")
        );
        let probe = ureq::AgentBuilder::new()
            .redirects(0)
            .try_proxy_from_env(true)
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(&user_agent)
            .build();
        // `from_cache` would also read `<cache_dir>/../token`; `with_token` overrides that, so
        // the token is exactly `opts.token`.
        let api = ApiBuilder::from_cache(Cache::new(opts.cache_dir.clone()))
            .with_endpoint(opts.endpoint.clone())
            .with_token(opts.token.clone())
            .with_progress(false)
            .with_user_agent("tessera", env!("CARGO_PKG_VERSION"))
            .build()
            .map_err(|e| HubError::Protocol {
                url: opts.endpoint.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            endpoint: opts.endpoint.clone(),
            cache_dir: opts.cache_dir.clone(),
            token_sent: opts.token.is_some(),
            probe,
            auth: opts.token.as_ref().map(|t| format!("Bearer {t}")),
            api,
        })
    }

    fn url(&self, repo: &str, revision: &str, file: &str) -> String {
        // Same URL hf-hub builds (`ApiRepo::url`): `/` in a revision is escaped.
        format!(
            "{}/{repo}/resolve/{}/{file}",
            self.endpoint,
            revision.replace('/', "%2F")
        )
    }

    /// `HEAD .../resolve/{revision}/{file}`: the commit `revision` points at
    /// (`x-repo-commit`) and the file's blob name (`x-linked-etag`, else `etag`).
    /// Errors: the repo, revision or file is missing, access denied, network down.
    pub(super) fn head(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<FileInfo, HubError> {
        let mut url = self.url(repo, revision, file);
        for _ in 0..=MAX_RELATIVE_REDIRECTS {
            let mut request = self.probe.head(&url);
            if let Some(auth) = &self.auth {
                request = request.set("Authorization", auth);
            }
            let target = Target {
                repo,
                revision,
                file,
                url: &url,
            };
            let response = request.call().map_err(|e| self.classify(e, &target))?;
            if (300..400).contains(&response.status()) {
                if let Some(path) = response.header("location").filter(|l| l.starts_with('/')) {
                    url = format!("{}{path}", origin(&url));
                    continue;
                }
            }
            // A 2xx, or a 3xx to a CDN: both carry the commit and the etag.
            let Some(commit) = response.header("x-repo-commit").map(str::trim) else {
                return Err(HubError::Protocol {
                    url,
                    message: "no `x-repo-commit` header (is HF_ENDPOINT a Hugging Face hub?)"
                        .into(),
                });
            };
            let etag = response
                .header("x-linked-etag")
                .or_else(|| response.header("etag"))
                // hf-hub's normalisation, so the name matches the blobs it writes.
                .map(|e| e.replace('"', ""))
                .filter(|e| !e.is_empty() && !e.contains(['/', '\\']) && e != "." && e != "..");
            return Ok(FileInfo {
                commit: commit.to_string(),
                etag,
            });
        }
        Err(HubError::Protocol {
            url,
            message: "too many relative redirects".into(),
        })
    }

    /// Downloads `file` at `commit` into the cache through hf-hub.
    /// `Ok(None)`: the file does not exist at that commit (404).
    pub(super) fn download(
        &self,
        repo: &str,
        commit: &str,
        file: &str,
    ) -> Result<Option<PathBuf>, HubError> {
        let api_repo = self.api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            commit.to_string(),
        ));
        tracing::info!(repo, commit, file, "downloading");
        match api_repo.download_with_progress(file, DownloadProgress::default()) {
            Ok(path) => Ok(Some(path)),
            Err(e) => {
                let url = api_repo.url(file);
                match self.classify_api(
                    e,
                    &Target {
                        repo,
                        revision: commit,
                        file,
                        url: &url,
                    },
                ) {
                    HubError::FileNotFound { .. } => Ok(None),
                    e => Err(e),
                }
            }
        }
    }

    fn classify_api(&self, error: ApiError, target: &Target) -> HubError {
        let protocol = |message: String| HubError::Protocol {
            url: target.url.to_string(),
            message,
        };
        match error {
            ApiError::RequestError(e) => self.classify(*e, target),
            ApiError::TooManyRetries(e) => self.classify_api(*e, target),
            ApiError::MissingHeader(h) => protocol(format!("missing header `{h}`")),
            ApiError::InvalidHeader(h) => protocol(format!("invalid header `{h}`")),
            ApiError::LockAcquisition(path) => HubError::Locked { path },
            ApiError::IoError(source) => HubError::Io {
                path: self.api_cache_hint(target),
                source,
            },
            #[allow(unreachable_patterns)] // `Native(..)` exists only with hf-hub's native-tls.
            other => protocol(other.to_string()),
        }
    }

    fn api_cache_hint(&self, target: &Target) -> PathBuf {
        // hf-hub does not say which path failed; name the repo's cache folder.
        self.cache_dir
            .join(Repo::model(target.repo.to_string()).folder_name())
    }

    /// Maps a ureq error (a status or a transport failure) to a [`HubError`].
    fn classify(&self, error: ureq::Error, target: &Target) -> HubError {
        let response = match error {
            ureq::Error::Transport(t) => {
                return HubError::Network {
                    endpoint: self.endpoint.clone(),
                    source: Box::new(t),
                }
            }
            ureq::Error::Status(_, response) => response,
        };
        let status = response.status();
        let code = response.header("x-error-code").unwrap_or("");
        let repo = target.repo.to_string();
        let endpoint = self.endpoint.clone();
        match (status, code) {
            (_, "GatedRepo") => HubError::Unauthorized {
                repo,
                endpoint,
                status,
                gated: true,
                token_sent: self.token_sent,
            },
            (_, "RepoNotFound") => HubError::RepoNotFound { repo, endpoint },
            (_, "RevisionNotFound") => HubError::RevisionNotFound {
                repo,
                revision: target.revision.to_string(),
                endpoint,
            },
            (_, "EntryNotFound") | (404, _) => HubError::FileNotFound {
                repo,
                file: target.file.to_string(),
                revision: target.revision.to_string(),
            },
            (401 | 403, _) => HubError::Unauthorized {
                repo,
                endpoint,
                status,
                gated: false,
                token_sent: self.token_sent,
            },
            _ => HubError::Http {
                url: target.url.to_string(),
                status,
                message: response
                    .header("x-error-message")
                    .unwrap_or(response.status_text())
                    .to_string(),
            },
        }
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Progress bar on stderr for big files when stderr is a terminal; silent otherwise.
/// hf-hub calls `init` twice per download (before and at the start of the transfer, then
/// `update(already_downloaded)` when resuming a `.part` file), so `init` resets the position.
#[derive(Default)]
struct DownloadProgress {
    bar: Option<ProgressBar>,
}

impl Progress for DownloadProgress {
    fn init(&mut self, size: usize, filename: &str) {
        if let Some(bar) = &self.bar {
            bar.set_length(size as u64);
            bar.set_position(0);
            return;
        }
        if size < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(size as u64), ProgressDrawTarget::stderr());
        let template =
            "{msg:.bold} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(filename.to_string());
        self.bar = Some(bar);
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
