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

fn greedy_cases(name: &str) -> Vec<(Vec<u64>, Value)> {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fixture(name).join("reference.json")).unwrap()).unwrap();
    reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["prompt_token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect(), c["greedy_token_ids"].clone()))
        .collect()
}

#[test]
fn prompts_file_runs_a_batch_with_chunking_and_preemption() {
    let cases = greedy_cases("llama");
    let dir = std::env::temp_dir().join(format!("tessera-cli-prompts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prompts.jsonl");
    let mut lines = Vec::new();
    for i in 0..30 {
        let (ids, _) = &cases[i % cases.len()];
        lines.push(serde_json::json!({"prompt_token_ids": ids}).to_string());
        if i % 7 == 0 {
            lines.push(String::new()); // blank lines are skipped
        }
    }
    std::fs::write(&file, lines.join("\n")).unwrap();
    let model = fixture("llama");
    let (ok, stdout, stderr) = tessera(&[
        "generate", "--model", model.to_str().unwrap(), "--prompts-file", file.to_str().unwrap(), "--max-tokens", "20",
        "--temperature", "0", "--ignore-eos", "--max-num-batched-tokens", "48", "--num-gpu-blocks-override", "24",
        "--max-model-len", "256", "--json",
    ]);
    assert!(ok, "{stderr}");
    let outs: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(outs.len(), 30, "one line per prompt, in order");
    for (i, o) in outs.iter().enumerate() {
        let (ids, want) = &cases[i % cases.len()];
        assert_eq!(o["prompt_token_ids"], serde_json::json!(ids));
        assert_eq!(&o["outputs"][0]["token_ids"], want, "prompt {i}");
        assert_eq!(o["finished"], true);
    }
    // A bad line is named.
    std::fs::write(&file, "{\"prompt_token_ids\": [1, 2]}\n{\"nope\": 1}\n").unwrap();
    let (ok, _, stderr) = tessera(&["generate", "--model", model.to_str().unwrap(), "--prompts-file", file.to_str().unwrap()]);
    assert!(!ok && stderr.contains("prompts.jsonl:2") && stderr.contains("prompt_token_ids"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sampling_flags_reach_the_engine() {
    let (ids, _) = &greedy_cases("qwen2")[0];
    let prompt: Vec<String> = ids.iter().map(|v| v.to_string()).collect();
    let model = fixture("qwen2");
    let run = |extra: &[&str]| {
        let p = prompt.join(",");
        let mut args = vec!["generate", "--model", model.to_str().unwrap(), "--prompt-token-ids", &p, "--max-tokens", "8", "--json"];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = tessera(&args);
        assert!(ok, "{stderr}");
        serde_json::from_str::<Value>(stdout.trim()).unwrap()
    };
    let a = run(&["--n", "3", "--seed", "11", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.01", "--ignore-eos"]);
    assert_eq!(a["outputs"].as_array().unwrap().len(), 3);
    let b = run(&["--n", "3", "--seed", "11", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.01", "--ignore-eos", "--no-enable-prefix-caching"]);
    assert_eq!(a["outputs"], b["outputs"], "same seed, same tokens, with or without prefix caching");
    let first = a["outputs"][0]["token_ids"][0].as_u64().unwrap().to_string();
    let s = run(&["--seed", "11", "--top-k", "20", "--top-p", "0.9", "--min-p", "0.01", "--stop-token-ids", &first]);
    assert_eq!(s["outputs"][0]["finish_reason"], "stop");
    assert_eq!(s["outputs"][0]["stop_reason"].as_u64().unwrap().to_string(), first);
    let pen = run(&["--temperature", "0", "--repetition-penalty", "1.5", "--presence-penalty", "-0.5", "--frequency-penalty", "0.5", "--ignore-eos"]);
    assert_eq!(pen["outputs"][0]["token_ids"].as_array().unwrap().len(), 8);
    for (flag, value, needle) in [("--top-p", "1.5", "--top-p"), ("--n", "0", "--n"), ("--min-p", "2", "--min-p"), ("--temperature", "-1", "--temperature")] {
        let (ok, _, stderr) = tessera(&["generate", "--model", model.to_str().unwrap(), "--prompt-token-ids", "1,2", flag, value]);
        assert!(!ok && stderr.contains(needle), "{flag} {value}: {stderr}");
    }
}

#[test]
fn chat_streams_replies_and_keeps_history() {
    // A tiny random model with SmolLM2's vocabulary, tokenizer and chat template.
    let dir = std::env::temp_dir().join(format!("tessera-cli-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(fixture("llama").join("config.json")).unwrap()).unwrap();
    config["vocab_size"] = serde_json::json!(49152);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let tok = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tokenizers/smollm2");
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"] {
        std::fs::copy(tok.join(f), dir.join(f)).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["chat", "--model", dir.to_str().unwrap(), "--load-format", "dummy", "--max-tokens", "5", "--seed", "1", "--ignore-eos"])
        .env("HF_HUB_OFFLINE", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"Hello there\n\nHow are you?\n/exit\nnot read\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Four prompts shown (two turns, the blank line re-prompts, then /exit), a reply line after
    // each turn; what follows /exit is never read.
    assert!(stdout.starts_with("> ") && stdout.ends_with("\n> "), "{stdout:?}");
    assert!(stdout.matches("> ").count() >= 4 && stdout.matches('\n').count() >= 2, "{stdout:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
