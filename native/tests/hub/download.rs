//! Downloads into the standard HF cache layout: single files, shards, redirects, named files, config-only resolution, and the clear errors for missing files.

use super::*;

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
