//! Read side of the Hugging Face cache layout (shared with Python's `huggingface_hub`).
//!
//! ```text
//! <cache_dir>/models--owner--name/
//!   blobs/<etag>                     file contents, one per distinct etag
//!   refs/<revision>                  text file: the commit a branch/tag pointed at last time
//!   snapshots/<commit>/<file>        relative symlink -> ../../blobs/<etag>
//!   .no_exist/<commit>/<file>        empty marker: `file` does not exist at `commit`
//! ```
//!
//! hf-hub writes `blobs`, `snapshots` and `refs`; its own lookup (`CacheRepo::get`) only goes
//! through `refs/<revision>`, so it cannot see a snapshot requested by commit hash, nor the
//! `.no_exist` markers. This module does those lookups, and writes the markers the way Python
//! does, so a second resolve of a repo without (say) `chat_template.jinja` asks nothing.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

/// One repository's folder inside the cache.
pub(super) struct RepoCache {
    cache_dir: PathBuf,
    repo: String,
    root: PathBuf,
}

/// A git commit id as the hub writes it: 40 lowercase hex digits (Python's
/// `REGEX_COMMIT_HASH`). Revisions that are commits need no `refs/` lookup.
pub(super) fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl RepoCache {
    pub(super) fn new(cache_dir: &Path, repo: &str) -> Self {
        let folder = Repo::new(repo.to_string(), RepoType::Model).folder_name();
        Self {
            cache_dir: cache_dir.to_path_buf(),
            repo: repo.to_string(),
            root: cache_dir.join(folder),
        }
    }

    /// The commit `revision` resolves to without asking the network, if the cache knows one.
    pub(super) fn commit_for(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let commit = std::fs::read_to_string(self.ref_path(revision)).ok()?;
        let commit = commit.trim();
        (!commit.is_empty()).then(|| commit.to_string())
    }

    pub(super) fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.root.join("snapshots").join(commit)
    }

    /// The snapshot entry for `file`, if present and not a dangling link.
    pub(super) fn cached_file(&self, commit: &str, file: &str) -> Option<PathBuf> {
        let path = self.snapshot_dir(commit).join(file);
        path.is_file().then_some(path)
    }

    /// Whether an earlier resolve saw `file` missing at `commit` (Python's `.no_exist` marker).
    pub(super) fn known_missing(&self, commit: &str, file: &str) -> bool {
        self.no_exist_path(commit, file).exists()
    }

    /// Best effort: a failure only costs one more request next time.
    pub(super) fn mark_missing(&self, commit: &str, file: &str) {
        let path = self.no_exist_path(commit, file);
        let made = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map(drop)
            });
        if let Err(e) = made {
            tracing::debug!("cannot write {}: {e}", path.display());
        }
    }

    /// If `blobs/<etag>` is already here, links `snapshots/<commit>/<file>` to it the way
    /// hf-hub and Python do (relative symlink) and returns the link; `None` if not cached.
    pub(super) fn link_blob(
        &self,
        commit: &str,
        file: &str,
        etag: &str,
    ) -> std::io::Result<Option<PathBuf>> {
        let blob = self.root.join("blobs").join(etag);
        if !blob.is_file() {
            return Ok(None);
        }
        let pointer = self.snapshot_dir(commit).join(file);
        if let Some(parent) = pointer.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // From snapshots/<commit>/<file> back up to the repo folder: 2 + the file's depth.
        let mut target: PathBuf =
            std::iter::repeat_n("..", 2 + file.matches('/').count()).collect();
        target.push("blobs");
        target.push(etag);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &pointer)?;
        #[cfg(not(unix))]
        std::fs::copy(&blob, &pointer).map(drop)?;
        Ok(Some(pointer))
    }

    /// Points `refs/<revision>` at `commit` (nothing for a revision that is itself a commit,
    /// as Python does). Goes through hf-hub so both write the same bytes.
    pub(super) fn write_ref(&self, revision: &str, commit: &str) -> std::io::Result<()> {
        if revision == commit {
            return Ok(());
        }
        let repo = Repo::with_revision(self.repo.clone(), RepoType::Model, revision.to_string());
        Cache::new(self.cache_dir.clone())
            .repo(repo)
            .create_ref(commit)
    }

    pub(super) fn ref_path(&self, revision: &str) -> PathBuf {
        self.root.join("refs").join(revision)
    }

    fn no_exist_path(&self, commit: &str, file: &str) -> PathBuf {
        self.root.join(".no_exist").join(commit).join(file)
    }
}
