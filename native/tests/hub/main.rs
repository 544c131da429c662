//! `tessera::hub` against a loopback server speaking the hub protocol (`hub_server`). Every
//! test has its own temp cache and passes `HubOptions` explicitly; only `from_env_*` touches
//! the process environment, under `ENV_LOCK`.

mod hub_server;

mod download;
mod auth;
mod cache;
mod local;
mod options;

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
