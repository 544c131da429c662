//! `tessera bench latency` end to end on the small fixtures: it runs, reports positive
//! throughputs and the thread count and ISA it used, for f32 safetensors and quantized GGUF
//! weights, and rejects bad arguments with a clear message.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

fn tessera(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", std::env::temp_dir().join("tessera-bench-test-hf-home"))
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn bench_latency_reports_json_for_f32_and_quantized_models() {
    for (model, threads) in [(fixture("models/llama"), "2"), (fixture("gguf/tiny.gguf"), "1")] {
        let (ok, stdout, stderr) = tessera(&[
            "bench",
            "latency",
            "--model",
            model.to_str().unwrap(),
            "--batch-size",
            "2",
            "--input-len",
            "12",
            "--output-len",
            "4",
            "--num-iters",
            "2",
            "--threads",
            threads,
            "--json",
        ]);
        assert!(ok, "{}: {stderr}", model.display());
        let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(v["threads"].as_u64(), Some(threads.parse().unwrap()), "{v}");
        assert_eq!(v["batch_size"].as_u64(), Some(2));
        for key in ["prefill_tok_s", "decode_tok_s", "ttft_s", "tpot_ms", "avg_latency_s"] {
            let x = v[key].as_f64().unwrap_or(f64::NAN);
            assert!(x.is_finite() && x > 0.0, "{key} = {x} in {v}");
        }
        assert_eq!(v["latencies_s"].as_array().unwrap().len(), 2);
        assert!(!v["isa"].as_str().unwrap().is_empty());
    }
}

#[test]
fn bench_latency_rejects_bad_arguments() {
    let model = fixture("models/llama");
    let (ok, _, stderr) = tessera(&["bench", "latency", "--model", model.to_str().unwrap(), "--output-len", "0"]);
    assert!(!ok && stderr.contains("--output-len"), "{stderr}");
    let (ok, _, stderr) = tessera(&["bench", "latency", "--model", model.to_str().unwrap(), "--isa", "neon"]);
    assert!(!ok && stderr.contains("--isa"), "{stderr}");
}
