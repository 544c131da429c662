//! The cache: second resolves, offline mode, an unreachable hub, moved branches, commit revisions and caches written by Python's huggingface_hub.

use super::*;

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
