//! The op-parity table of `wgpu_ops/cases.rs` inside a browser (wasm-bindgen-test in headless
//! Chromium, WebGPU on its SwiftShader adapter: f32 only, <= 256 invocations per workgroup),
//! against the CPU reference compiled to wasm32 in the same page.
//!
//! Also device sampling (`wgpu_sample/common.rs`). Run by scripts/web-ops.sh
//! (wasm-bindgen-test-runner + chromedriver with `--enable-unsafe-webgpu`). Native builds
//! compile this file to nothing.
#![cfg(target_arch = "wasm32")]

#[path = "wgpu_ops/cases.rs"]
#[allow(dead_code)] // f16 runs are native only (SwiftShader has no shader-f16)
mod cases;

use cases::{compare, run, select, Dt};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::Backend;
use tessera_core::tensor::DType;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn op_parity_f32_in_the_browser() {
    let be = WgpuBackend::new(WgpuOptions { dtype: Some(DType::F32), poison_outputs: true, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("no WebGPU adapter in this browser: {e}"));
    console_log!("adapter: {:?}", be.adapter_info());
    assert_eq!(be.activation_dtype(), DType::F32);
    let cpu = CpuBackend::new();
    let mut failures = Vec::new();
    let cases = select(None).unwrap();
    for c in &cases {
        let want = run(&cpu, c, Dt::F32).await.unwrap_or_else(|e| panic!("{}: cpu failed: {e}", c.name));
        match run(&be, c, Dt::F32).await.map_err(|e| e.to_string()).and_then(|got| compare(&got, &want, Dt::F32)) {
            Ok(err) => console_log!("ok   {:<32} rel err {err:.2e}", c.name),
            Err(e) => {
                console_log!("FAIL {:<32} {e}", c.name);
                failures.push(format!("{}: {e}", c.name));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    console_log!("{} cases passed", cases.len());
}

#[path = "wgpu_sample/common.rs"]
mod sampling;

/// Device sampling (top-k / top-p / min-p, `sample.wgsl`) in the browser against
/// `sample::sample_rows`, at two vocab sizes.
#[wasm_bindgen_test]
async fn sampling_in_the_browser() {
    let be = WgpuBackend::new(WgpuOptions { dtype: Some(DType::F32), poison_outputs: true, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("no WebGPU adapter in this browser: {e}"));
    for (vocab, seed) in [(1000, 21), (3001, 22)] {
        sampling::sample_case(&be, DType::F32, vocab, seed).await.unwrap_or_else(|e| panic!("{e}"));
        console_log!("ok   sampling/vocab_{vocab}");
    }
}
