//! `tessera bench throughput` end to end on the small llama fixture (CPU): the step budget it
//! reports is the backend's default (2048 on the CPU; vLLM's larger budgets apply to big CUDA
//! GPUs only, see `cli::args::default_max_num_batched_tokens`) or the flag's value, and the
//! decode-only steps of the largest batch are counted within the decode-only steps.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn throughput(extra: &[&str]) -> Value {
    let model = fixture("models/llama");
    let mut args = vec![
        "bench",
        "throughput",
        "--model",
        model.to_str().unwrap(),
        "--input-len",
        "24",
        "--output-len",
        "6",
        "--num-prompts",
        "5",
        "--threads",
        "1",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(&args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", std::env::temp_dir().join("tessera-bench-test-hf-home"))
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn bench_throughput_reports_the_step_budget_and_full_batch_steps() {
    let v = throughput(&[]);
    assert_eq!(v["device"].as_str(), Some("cpu"), "{v}");
    assert_eq!(v["max_num_batched_tokens"].as_u64(), Some(2048), "the CPU default: {v}");
    assert_eq!(v["total_output_tokens"].as_u64(), Some(30), "{v}");
    // 5 prompts of 24 tokens fit one step: then 5 decode-only steps at batch 5.
    let (decode, full) = (v["decode_only_steps"].as_u64().unwrap(), v["decode_full_steps"].as_u64().unwrap());
    assert_eq!(v["decode_full_batch"].as_u64(), Some(5), "{v}");
    assert!(full >= 1 && full <= decode, "{v}");
    assert!(v["decode_full_secs"].as_f64().unwrap() <= v["decode_only_secs"].as_f64().unwrap(), "{v}");
    assert_eq!(v["decode_full_wait_secs"].as_f64(), Some(0.0), "the CPU backend does not wait: {v}");

    // The flag wins; a 16-token budget chunks every prompt over two steps.
    let v = throughput(&["--max-num-batched-tokens", "16"]);
    assert_eq!(v["max_num_batched_tokens"].as_u64(), Some(16), "{v}");
    assert!(v["steps"].as_u64().unwrap() > 10, "{v}");
    assert_eq!(v["total_output_tokens"].as_u64(), Some(30), "{v}");
}
