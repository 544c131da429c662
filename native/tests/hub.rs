//! `tessera::hub` against a loopback server speaking the hub protocol (`hub_server`). Every
//! test has its own temp cache and passes `HubOptions` explicitly; only `from_env_*` touches
//! the process environment, under `ENV_LOCK`.

mod hub_server;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hub_server::{etag_of, FakeRepo, HubServer};
use tessera::hub::{resolve_file, resolve_model, HubError, HubOptions, ModelSource, ResolvedModel};

const REPO: &str = "tiny/test-model";
const CONFIG: &str = r#"{"architectures":["LlamaForCausalLM"],"hidden_size":8}"#;

fn weights(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// config, tokenizer files, one LFS `model.safetensors`; no chat_template.jinja and no
/// special_tokens_map.json.
fn single_file_repo() -> FakeRepo {
    FakeRepo::new(0xa1)
        .file("config.json", CONFIG)
        .file("generation_config.json", r#"{"eos_token_id":2}"#)
        .file("tokenizer.json", r#"{"model":{"type":"BPE"}}"#)
        .file("tokenizer_config.json", r#"{"bos_token":"<s>"}"#)
        .lfs_file("model.safetensors", weights(1, 100_000))
}

fn sharded_repo() -> FakeRepo {
    let index = r#"{"metadata":{"total_size":3000},"weight_map":{
        "model.embed_tokens.weight":"model-00001-of-00002.safetensors",
        "model.layers.0.mlp.up_proj.weight":"model-00001-of-00002.safetensors",
        "lm_head.weight":"model-00002-of-00002.safetensors"}}"#;
    FakeRepo::new(0xb2)
        .file("config.json", CONFIG)
        .file("tokenizer.json", "{}")
        .file("model.safetensors.index.json", index)
        .lfs_file("model-00001-of-00002.safetensors", weights(2, 2000))
        .lfs_file("model-00002-of-00002.safetensors", weights(3, 1000))
}

struct Env {
    server: HubServer,
    _tmp: tempfile::TempDir,
    opts: HubOptions,
}

fn setup(repos: &[(&str, FakeRepo)]) -> Env {
    // ureq (under hf-hub) sends everything through these when set, NO_PROXY or not.
    for proxy in [
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        assert!(
            std::env::var_os(proxy).is_none(),
            "unset {proxy}: hf-hub's HTTP client would send loopback requests to the proxy"
        );
    }
    let server = HubServer::start();
    for (id, repo) in repos {
        server.add_repo(id, repo.clone());
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: server.endpoint(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: false,
        revision: "main".into(),
    };
    Env {
        server,
        _tmp: tmp,
        opts,
    }
}

/// An endpoint where nothing listens.
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn snapshot(opts: &HubOptions, repo: &str, commit: &str) -> PathBuf {
    opts.cache_dir
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(commit)
}

fn hub_commit(resolved: &ResolvedModel) -> &str {
    match &resolved.source {
        ModelSource::Hub { commit, .. } => commit,
        other => panic!("expected a hub model, got {other:?}"),
    }
}

fn count(server: &HubServer, method: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == method)
        .count()
}

#[test]
fn single_file_repo_lands_in_one_snapshot_in_the_standard_layout() {
    let repo = single_file_repo();
    let env = setup(&[(REPO, repo.clone())]);
    let resolved = resolve_model(REPO, &env.opts).unwrap();

    let snap = snapshot(&env.opts, REPO, &repo.commit);
    assert_eq!(resolved.path, snap);
    assert_eq!(
        resolved.source,
        ModelSource::Hub {
            repo: REPO.into(),
            revision: "main".into(),
            commit: repo.commit.clone()
        }
    );
    for (name, file) in &repo.files {
        assert_eq!(
            std::fs::read(snap.join(name)).unwrap(),
            file.content,
            "{name}"
        );
    }
    assert!(!snap.join("chat_template.jinja").exists());
    assert!(!snap.join("model.safetensors.index.json").exists());

    // Python's layout: refs/main -> commit; snapshot entries are relative links to blobs.
    let root = env.opts.cache_dir.join("models--tiny--test-model");
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        repo.commit
    );
    let link = std::fs::read_link(snap.join("model.safetensors")).unwrap();
    let etag = etag_of(&repo.files["model.safetensors"].content);
    assert_eq!(link, Path::new("../../blobs").join(&etag));
    assert!(root.join("blobs").join(&etag).is_file());
    // No `refs/<commit>` left behind by the pinned downloads; `.no_exist` markers written.
    assert!(!root.join("refs").join(&repo.commit).exists());
    assert!(root
        .join(".no_exist")
        .join(&repo.commit)
        .join("chat_template.jinja")
        .exists());

    // The LFS file went through the redirect to the CDN.
    assert!(env
        .server
        .requests()
        .iter()
        .any(|r| r.path == "/cdn/tiny/test-model/model.safetensors"));
}

#[test]
fn sharded_repo_fetches_every_shard_of_the_index() {
    let repo = sharded_repo();
    let env = setup(&[(REPO, repo.clone())]);
    let resolved = resolve_model(REPO, &env.opts).unwrap();
    for name in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        assert_eq!(
            std::fs::read(resolved.path.join(name)).unwrap(),
            repo.files[name].content
        );
    }
    assert!(resolved.path.join("model.safetensors.index.json").is_file());
    // With an index, model.safetensors is not even asked for.
    assert!(!env
        .server
        .requests()
        .iter()
        .any(|r| r.path.ends_with("/model.safetensors")));
}

#[test]
fn missing_optional_files_are_tolerated() {
    let repo = FakeRepo::new(0xc3)
        .file("config.json", CONFIG)
        .lfs_file("model.safetensors", weights(4, 10));
    let env = setup(&[(REPO, repo)]);
    let resolved = resolve_model(REPO, &env.opts).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&resolved.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["config.json", "model.safetensors"]);
    // Each optional file was asked for and answered 404 EntryNotFound.
    for file in tessera::hub::OPTIONAL_FILES {
        assert!(
            env.server
                .requests()
                .iter()
                .any(|r| r.path.ends_with(&format!("/{file}"))),
            "{file}"
        );
    }
}

#[test]
fn missing_config_json_is_a_clear_error() {
    let repo = FakeRepo::new(0xd4)
        .file("tokenizer.json", "{}")
        .lfs_file("model.safetensors", weights(5, 10));
    let env = setup(&[("tiny/no-config", repo)]);
    let err = resolve_model("tiny/no-config", &env.opts).unwrap_err();
    assert!(
        matches!(err, HubError::FileNotFound { ref file, .. } if file == "config.json"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("tiny/no-config"),
        "{msg}"
    );
}

#[test]
fn missing_weights_is_a_clear_error() {
    let repo = FakeRepo::new(0xd5).file("config.json", CONFIG);
    let env = setup(&[(REPO, repo)]);
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(matches!(err, HubError::NoWeights { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");
}

#[test]
fn token_is_sent_as_bearer_and_opens_a_private_repo() {
    let mut repo = single_file_repo();
    repo.token = Some("hf_secret".into());
    let mut env = setup(&[(REPO, repo)]);
    env.opts.token = Some("hf_secret".into());
    resolve_model(REPO, &env.opts).unwrap();
    let hub_requests: Vec<_> = env
        .server
        .requests()
        .into_iter()
        .filter(|r| !r.path.starts_with("/cdn/"))
        .collect();
    assert!(!hub_requests.is_empty());
    for r in hub_requests {
        assert_eq!(
            r.header("authorization"),
            Some("Bearer hf_secret"),
            "{} {}",
            r.method,
            r.path
        );
    }
}

#[test]
fn gated_repo_without_token_is_401_mentioning_hf_token() {
    let mut repo = single_file_repo();
    repo.token = Some("hf_secret".into());
    repo.gated = true;
    let env = setup(&[(REPO, repo)]);
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Unauthorized {
                status: 401,
                gated: true,
                token_sent: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    assert!(!env
        .server
        .requests()
        .iter()
        .any(|r| r.header("authorization").is_some()));
}

#[test]
fn private_repo_without_or_with_a_wrong_token_mentions_hf_token() {
    let mut repo = single_file_repo();
    repo.token = Some("hf_secret".into());
    let mut env = setup(&[(REPO, repo)]);
    // No token: the hub pretends the repo does not exist.
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(matches!(err, HubError::ModelNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
    // A wrong token: plain 401.
    env.opts.token = Some("hf_wrong".into());
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(
        matches!(
            err,
            HubError::Unauthorized {
                status: 401,
                token_sent: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("HF_TOKEN"), "{err}");
}

#[test]
fn second_resolve_is_served_from_the_cache() {
    let repo = sharded_repo();
    let mut env = setup(&[(REPO, repo)]);
    let first = resolve_model(REPO, &env.opts).unwrap();
    assert!(count(&env.server, "GET") > 0);

    // Online again: one HEAD to learn the commit, no content.
    env.server.clear_requests();
    let second = resolve_model(REPO, &env.opts).unwrap();
    assert_eq!(second, first);
    assert_eq!(count(&env.server, "GET"), 0, "{:#?}", env.server.requests());
    assert_eq!(count(&env.server, "HEAD"), 1);

    // Offline: nothing at all.
    env.server.clear_requests();
    env.opts.offline = true;
    let third = resolve_model(REPO, &env.opts).unwrap();
    assert_eq!(third, first);
    assert!(env.server.requests().is_empty());
}

#[test]
fn offline_with_an_empty_cache_names_the_file_and_the_cache() {
    let mut env = setup(&[(REPO, single_file_repo())]);
    env.opts.offline = true;
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(matches!(err, HubError::OfflineNotCached { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("config.json"), "{msg}");
    assert!(
        msg.contains(&env.opts.cache_dir.display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
    assert!(env.server.requests().is_empty());
}

#[test]
fn offline_with_config_cached_but_not_the_weights_names_the_weights() {
    let mut env = setup(&[(REPO, single_file_repo())]);
    resolve_model(REPO, &env.opts).unwrap();
    let snap = snapshot(&env.opts, REPO, &single_file_repo().commit);
    std::fs::remove_file(snap.join("model.safetensors")).unwrap();
    env.opts.offline = true;
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(
        matches!(err, HubError::OfflineNotCached { ref file, .. } if file == "model.safetensors"),
        "{err:?}"
    );
}

#[test]
fn unreachable_hub_names_the_endpoint_then_falls_back_to_the_cache() {
    let mut env = setup(&[(REPO, single_file_repo())]);
    let endpoint = env.opts.endpoint.clone();
    env.opts.endpoint = dead_endpoint();
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(matches!(err, HubError::Network { .. }), "{err:?}");
    assert!(err.to_string().contains(&env.opts.endpoint), "{err}");

    // Once cached, a network failure falls back to the cached snapshot (as Python does).
    env.opts.endpoint = endpoint;
    let cached = resolve_model(REPO, &env.opts).unwrap();
    env.opts.endpoint = dead_endpoint();
    assert_eq!(resolve_model(REPO, &env.opts).unwrap(), cached);
}

#[test]
fn an_updated_branch_is_picked_up_online() {
    let env = setup(&[(REPO, single_file_repo())]);
    let old = resolve_model(REPO, &env.opts).unwrap();
    let new_repo =
        single_file_repo().file("config.json", r#"{"architectures":["Qwen2ForCausalLM"]}"#);
    let new_repo = FakeRepo {
        commit: "e5".repeat(20),
        ..new_repo
    };
    env.server.add_repo(REPO, new_repo.clone());
    env.server.clear_requests();
    let new = resolve_model(REPO, &env.opts).unwrap();
    assert_eq!(hub_commit(&new), new_repo.commit);
    assert_ne!(new.path, old.path);
    assert!(std::fs::read_to_string(new.path.join("config.json"))
        .unwrap()
        .contains("Qwen2"));
    // The old snapshot is untouched.
    assert!(std::fs::read_to_string(old.path.join("config.json"))
        .unwrap()
        .contains("Llama"));
    // Unchanged weights are not downloaded again: the new snapshot links the same blob.
    assert!(
        !env.server
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("model.safetensors")),
        "{:#?}",
        env.server.requests()
    );
    assert_eq!(
        std::fs::read_link(new.path.join("model.safetensors")).unwrap(),
        std::fs::read_link(old.path.join("model.safetensors")).unwrap()
    );
}

#[test]
fn a_commit_revision_resolves_without_writing_a_ref_for_it() {
    let repo = single_file_repo();
    let mut env = setup(&[(REPO, repo.clone())]);
    env.opts.revision = repo.commit.clone();
    let resolved = resolve_model(REPO, &env.opts).unwrap();
    assert_eq!(resolved.path, snapshot(&env.opts, REPO, &repo.commit));
    let refs = env.opts.cache_dir.join("models--tiny--test-model/refs");
    assert!(!refs.join(&repo.commit).exists() && !refs.join("main").exists());
    // Offline, a commit revision needs no ref.
    env.opts.offline = true;
    assert_eq!(resolve_model(REPO, &env.opts).unwrap(), resolved);
}

#[cfg(unix)]
#[test]
fn a_python_made_cache_is_used_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let root = tmp.path().join("hub/models--tiny--test-model");
    let snap = root.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), commit).unwrap();
    for (name, content) in [
        ("config.json", CONFIG.as_bytes()),
        ("model.safetensors", b"weights"),
    ] {
        let etag = etag_of(content);
        std::fs::write(root.join("blobs").join(&etag), content).unwrap();
        std::os::unix::fs::symlink(Path::new("../../blobs").join(&etag), snap.join(name)).unwrap();
    }
    let opts = HubOptions {
        endpoint: dead_endpoint(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: true,
        revision: "main".into(),
    };
    let resolved = resolve_model(REPO, &opts).unwrap();
    assert_eq!(resolved.path, snap);
    assert_eq!(hub_commit(&resolved), commit);
}

#[test]
fn renamed_repo_follows_the_relative_redirect() {
    let env = setup(&[(REPO, single_file_repo())]);
    env.server.rename("tiny/old-name", REPO);
    let resolved = resolve_model("tiny/old-name", &env.opts).unwrap();
    assert!(resolved.path.join("model.safetensors").is_file());
}

#[test]
fn resolve_file_fetches_one_named_file() {
    let gguf = weights(9, 5000);
    let repo = FakeRepo::new(0xf6)
        .lfs_file("tiny-Q8_0.gguf", gguf.clone())
        .file("README.md", "# hi");
    let env = setup(&[("tiny/test-gguf", repo.clone())]);
    let path = resolve_file("tiny/test-gguf", "tiny-Q8_0.gguf", &env.opts).unwrap();
    assert_eq!(
        path,
        snapshot(&env.opts, "tiny/test-gguf", &repo.commit).join("tiny-Q8_0.gguf")
    );
    assert_eq!(std::fs::read(&path).unwrap(), gguf);
    // Only this file was asked for: no config.json in a GGUF repo.
    assert!(env
        .server
        .requests()
        .iter()
        .all(|r| r.path.contains("tiny-Q8_0.gguf")));

    let err = resolve_file("tiny/test-gguf", "nope.gguf", &env.opts).unwrap_err();
    assert!(
        matches!(err, HubError::FileNotFound { ref file, .. } if file == "nope.gguf"),
        "{err:?}"
    );
    let err = resolve_file("tiny/test-gguf", "../escape.gguf", &env.opts).unwrap_err();
    assert!(matches!(err, HubError::InvalidFileName { .. }), "{err:?}");
}

#[test]
fn a_shard_name_escaping_the_snapshot_is_refused() {
    let index = r#"{"weight_map":{"w":"../../../evil.safetensors"}}"#;
    let repo = FakeRepo::new(0x17)
        .file("config.json", CONFIG)
        .file("model.safetensors.index.json", index);
    let env = setup(&[(REPO, repo)]);
    let err = resolve_model(REPO, &env.opts).unwrap_err();
    assert!(matches!(err, HubError::InvalidFileName { .. }), "{err:?}");
}

#[test]
fn unknown_repo_says_it_is_neither_a_path_nor_a_repo() {
    let env = setup(&[]);
    let err = resolve_model("tiny/does-not-exist", &env.opts).unwrap_err();
    assert!(matches!(err, HubError::ModelNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("local path") && msg.contains(&env.opts.endpoint),
        "{msg}"
    );
}

#[test]
fn local_paths_are_returned_as_is_without_network() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: dead_endpoint(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: false,
        revision: "main".into(),
    };
    let folder = tmp.path().join("my-model");
    std::fs::create_dir(&folder).unwrap();
    let gguf = tmp.path().join("model.Q4_K_M.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    for path in [&folder, &gguf] {
        let resolved = resolve_model(path.to_str().unwrap(), &opts).unwrap();
        assert_eq!(
            resolved,
            ResolvedModel {
                path: path.clone(),
                source: ModelSource::Local
            }
        );
    }
    assert!(!opts.cache_dir.exists());
}

#[test]
fn bad_repo_ids_and_missing_paths_are_refused_without_network() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = HubOptions {
        endpoint: dead_endpoint(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: false,
        revision: "main".into(),
    };
    for model in [
        "./no/such/dir",
        "/no/such/model.gguf",
        "model.gguf",
        "a/b/c",
        "owner/",
        "/name",
        "a--b/c",
        "o/n..x",
        "-o/n",
        "o/n ame",
        "",
    ] {
        let err = resolve_model(model, &opts).unwrap_err();
        assert!(matches!(err, HubError::NotFound { .. }), "{model}: {err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("local path") && msg.contains("owner/name"),
            "{msg}"
        );
    }
    let err = resolve_file("not a repo", "x.gguf", &opts).unwrap_err();
    assert!(matches!(err, HubError::InvalidRepoId { .. }), "{err:?}");
    let bad_revision = HubOptions {
        revision: "../../etc".into(),
        ..opts.clone()
    };
    let err = resolve_model("tiny/test-model", &bad_revision).unwrap_err();
    assert!(matches!(err, HubError::InvalidRevision { .. }), "{err:?}");
}

#[test]
fn options_from_a_lookup_follow_huggingface_hub_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf");
    std::fs::create_dir_all(&hf_home).unwrap();
    std::fs::write(hf_home.join("token"), "hf_from_file\n").unwrap();
    let vars = |pairs: &'static [(&'static str, &'static str)], hf_home: &Path| {
        let hf_home = hf_home.display().to_string();
        move |name: &str| {
            if name == "HF_HOME" {
                return Some(hf_home.clone());
            }
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let o = HubOptions::from_lookup(vars(&[], &hf_home));
    assert_eq!(o.endpoint, "https://huggingface.co");
    assert_eq!(o.cache_dir, hf_home.join("hub"));
    assert_eq!(o.token.as_deref(), Some("hf_from_file"));
    assert!(!o.offline);
    assert_eq!(o.revision, "main");

    let o = HubOptions::from_lookup(vars(
        &[
            ("HF_ENDPOINT", "http://mirror.local/"),
            ("HF_HUB_CACHE", "/data/hub"),
            ("HF_TOKEN", "hf_env"),
            ("HF_HUB_OFFLINE", "TRUE"),
        ],
        &hf_home,
    ));
    assert_eq!(o.endpoint, "http://mirror.local");
    assert_eq!(o.cache_dir, PathBuf::from("/data/hub"));
    assert_eq!(o.token.as_deref(), Some("hf_env"));
    assert!(o.offline);
    assert!(
        !format!("{o:?}").contains("hf_env"),
        "the token must not appear in Debug output"
    );

    let o = HubOptions::from_lookup(|name| match name {
        "HOME" => Some("/home/u".into()),
        "HF_HUB_OFFLINE" => Some("0".into()),
        "HF_TOKEN" => Some("".into()),
        "HF_TOKEN_PATH" => Some("/nonexistent/token".into()),
        _ => None,
    });
    assert_eq!(o.cache_dir, PathBuf::from("/home/u/.cache/huggingface/hub"));
    assert_eq!(o.token, None);
    assert!(!o.offline);
}

/// Guards the process environment: only this test changes it.
static ENV_LOCK: Mutex<()> = Mutex::new(());

#[test]
fn from_env_reads_the_process_environment() {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "HF_ENDPOINT",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
    ];
    let saved: Vec<_> = names.iter().map(|n| (n, std::env::var_os(n))).collect();
    for n in names {
        std::env::remove_var(n);
    }
    std::env::set_var("HF_ENDPOINT", "http://127.0.0.1:9/");
    std::env::set_var("HF_HOME", tmp.path());
    std::env::set_var("HF_TOKEN", "hf_env_token");
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let o = HubOptions::from_env();
    std::env::set_var("HF_HUB_CACHE", tmp.path().join("elsewhere"));
    let o2 = HubOptions::from_env();
    for (n, v) in saved {
        match v {
            Some(v) => std::env::set_var(n, v),
            None => std::env::remove_var(n),
        }
    }
    assert_eq!(o.endpoint, "http://127.0.0.1:9");
    assert_eq!(o.cache_dir, tmp.path().join("hub"));
    assert_eq!(o.token.as_deref(), Some("hf_env_token"));
    assert!(o.offline);
    assert_eq!(o2.cache_dir, tmp.path().join("elsewhere"));
}

#[test]
fn config_only_resolution_skips_the_weights() {
    let repo = sharded_repo();
    let env = setup(&[(REPO, repo.clone())]);
    let resolved = tessera::hub::resolve_model_files(REPO, &env.opts, false).unwrap();
    assert!(resolved.path.join("config.json").is_file());
    assert!(!resolved.path.join("model.safetensors.index.json").exists());
    assert!(
        !env.server.requests().iter().any(|r| r.path.contains("safetensors")),
        "no weight file was asked for"
    );
}
