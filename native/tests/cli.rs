//! The `tessera generate` command end to end: `--json` output matches transformers token for
//! token on the fixtures, and bad input exits non-zero with a clear message.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models").join(name)
}

fn tessera(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", std::env::temp_dir().join("tessera-cli-test-hf-home"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn generate_json_matches_transformers_token_for_token() {
    for name in ["llama", "gemma3", "qwen3"] {
        let reference: Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap()).unwrap();
        for case in reference["cases"].as_array().unwrap() {
            let prompt: Vec<String> =
                case["prompt_token_ids"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
            let model = fixture(name);
            let (ok, stdout, stderr) = tessera(&[
                "generate",
                "--model",
                model.to_str().unwrap(),
                "--prompt-token-ids",
                &prompt.join(","),
                "--max-tokens",
                "20",
                "--temperature",
                "0",
                "--ignore-eos",
                "--logprobs",
                "2",
                "--max-model-len",
                "256",
                "--json",
            ]);
            assert!(ok, "{name}: {stderr}");
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), 1, "one JSON line per prompt");
            let out: Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(out["prompt_token_ids"], case["prompt_token_ids"]);
            let o = &out["outputs"][0];
            assert_eq!(o["token_ids"], case["greedy_token_ids"], "{name}/{}", case["name"]);
            assert_eq!(o["finish_reason"], "length");
            assert_eq!(o["text"], "", "no tokenizer, no text");
            let logprobs = o["logprobs"].as_array().unwrap();
            assert_eq!(logprobs.len(), 20);
            for (step, tok) in logprobs.iter().zip(o["token_ids"].as_array().unwrap()) {
                let step = step.as_object().unwrap();
                assert!(step.contains_key(&tok.to_string()), "chosen token in its logprobs");
                assert!(step.values().all(|v| v.as_f64().unwrap() <= 0.0));
            }
        }
    }
}

#[test]
fn stops_at_eos_from_generation_config_unless_ignore_eos() {
    // A copy of the llama fixture whose generation_config.json names the first greedy token
    // of its first case as eos.
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("llama").join("reference.json")).unwrap()).unwrap();
    let case = &reference["cases"][0];
    let first = case["greedy_token_ids"][0].as_u64().unwrap();
    let dir = std::env::temp_dir().join(format!("tessera-cli-eos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("llama").join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("generation_config.json"), format!("{{\"eos_token_id\": [{first}, 9999]}}")).unwrap();
    let prompt: Vec<String> = case["prompt_token_ids"].as_array().unwrap().iter().map(|v| v.to_string()).collect();
    let run = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", dir.to_str().unwrap(), "--prompt-token-ids"];
        let p = prompt.join(",");
        args.push(&p);
        args.extend_from_slice(&["--max-tokens", "5", "--temperature", "0", "--json"]);
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = tessera(&args);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(stdout.trim()).unwrap()["outputs"][0].clone()
    };
    let o = run(&[]);
    assert_eq!(o["token_ids"], serde_json::json!([first]));
    assert_eq!(o["finish_reason"], "stop");
    let o = run(&["--ignore-eos"]);
    assert_eq!(o["token_ids"].as_array().unwrap().len(), 5);
    assert_eq!(o["finish_reason"], "length");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_exits_with_a_clear_message() {
    let empty = std::env::temp_dir().join(format!("tessera-cli-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let llama = fixture("llama");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "--model", empty.to_str().unwrap(), "--prompt-token-ids", "1"], "config.json"),
        (vec!["generate", "--model", "/no/such/folder", "--prompt-token-ids", "1"], "/no/such/folder"),
        (vec!["generate", "--model", llama.to_str().unwrap(), "--prompt", "hi"], "no tokenizer.json"),
        (vec!["generate", "--model", llama.to_str().unwrap(), "--prompt-token-ids", "1,x"], "not a token id"),
        (vec!["generate", "--model", llama.to_str().unwrap(), "--prompt-token-ids", "1,2,3", "--max-model-len", "3"], "max_model_len"),
        (vec!["generate", "--model", llama.to_str().unwrap()], "--prompt"),
    ];
    for (args, needle) in cases {
        let (ok, _, stderr) = tessera(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: stderr {stderr:?} should mention {needle:?}");
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn dummy_load_format_runs_from_config_alone() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-dummy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture("gemma3").join("config.json"), dir.join("config.json")).unwrap();
    let (ok, stdout, stderr) = tessera(&[
        "generate", "--model", dir.to_str().unwrap(), "--load-format", "dummy", "--prompt-token-ids", "1,2,3", "--max-tokens", "4",
        "--temperature", "0", "--ignore-eos", "--json",
    ]);
    assert!(ok, "{stderr}");
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["outputs"][0]["token_ids"].as_array().unwrap().len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
