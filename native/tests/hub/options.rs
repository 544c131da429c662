//! HubOptions from the environment, with huggingface_hub's precedence.

use super::*;

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
