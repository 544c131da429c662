//! Local paths and malformed ids never touch the network.

use super::*;

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
