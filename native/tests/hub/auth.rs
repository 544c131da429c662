//! HF_TOKEN: sent as a bearer token; gated and private repos say how to get access.

use super::*;

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
