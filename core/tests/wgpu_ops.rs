//! The wgpu backend against the CPU reference: every case of `wgpu_ops/cases.rs` in f32 and
//! f16 (outputs NaN-poisoned before each op, so unwritten elements fail), weights split over
//! several storage bindings, error kinds, pipeline caching, one submission per read-back, and
//! the tiny HF fixtures' greedy tokens through `engine::generate` on the wgpu backend.
//!
//! Needs a GPU adapter; on CI that is Mesa's lavapipe (scripts/ci-deps.sh). Without one these
//! tests fail, they do not skip. `TESSERA_OP_FILTER=substring` runs only matching cases.

#[path = "wgpu_ops/cases.rs"]
mod cases;

use std::path::PathBuf;

use cases::{compare, run, select, Dt};
use serde_json::Value;
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{Backend, BackendError, Op, Tensor};
use tessera_core::config::ModelConfig;
use tessera_core::engine::{generate, GenerateParams, ModelRunner};
use tessera_core::models::load_model;
use tessera_core::tensor::{DType, HostTensor};
use tessera_core::weights::SafetensorsWeights;

fn backend(opts: WgpuOptions) -> WgpuBackend {
    match WgpuBackend::new_blocking(opts) {
        Ok(b) => b,
        Err(e) => panic!("no usable wgpu adapter ({e}). Install one: bash scripts/ci-deps.sh (Mesa lavapipe)"),
    }
}

fn poisoned(dtype: DType) -> WgpuBackend {
    backend(WgpuOptions { dtype: Some(dtype), poison_outputs: true, ..Default::default() })
}

/// Runs the selected cases on `be` and the CPU; returns the failures.
fn parity(be: &WgpuBackend, dt: Dt, filter: Option<&str>) -> Vec<String> {
    let cpu = CpuBackend::new();
    let cases = select(filter).unwrap_or_else(|e| panic!("{e}"));
    let mut failures = Vec::new();
    for c in &cases {
        let want = pollster::block_on(run(&cpu, c, dt)).unwrap_or_else(|e| panic!("{}: cpu failed: {e}", c.name));
        match pollster::block_on(run(be, c, dt)).map_err(|e| e.to_string()).and_then(|got| compare(&got, &want, dt)) {
            Ok(err) => eprintln!("ok   {dt:?} {:<32} rel err {err:.2e}", c.name),
            Err(e) => {
                eprintln!("FAIL {dt:?} {:<32} {e}", c.name);
                failures.push(format!("{}: {e}", c.name));
            }
        }
    }
    failures
}

fn filter() -> Option<String> {
    std::env::var("TESSERA_OP_FILTER").ok().filter(|f| !f.is_empty())
}

#[test]
fn op_parity_f32() {
    let be = poisoned(DType::F32);
    eprintln!("adapter: {:?}", be.adapter_info());
    let failures = parity(&be, Dt::F32, filter().as_deref());
    assert!(failures.is_empty(), "{} f32 cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn op_parity_f16() {
    let be = poisoned(DType::F16);
    assert!(be.has_shader_f16(), "the adapter lacks shader-f16");
    assert_eq!(be.activation_dtype(), DType::F16);
    let failures = parity(&be, Dt::F16, filter().as_deref());
    assert!(failures.is_empty(), "{} f16 cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The whole table with workgroups capped at 64 invocations (1-D kernels of 64, 8 x 8 matmul
/// tiles): the sizes come from the limits, not from constants.
#[test]
fn op_parity_small_workgroups() {
    let be = backend(WgpuOptions {
        dtype: Some(DType::F32),
        poison_outputs: true,
        max_workgroup_invocations: Some(64),
        ..Default::default()
    });
    let failures = parity(&be, Dt::F32, filter().as_deref());
    assert!(failures.is_empty(), "{} cases failed with 64-invocation workgroups:\n{}", failures.len(), failures.join("\n"));
    let too_small = WgpuBackend::new_blocking(WgpuOptions { max_workgroup_invocations: Some(16), ..Default::default() });
    assert!(matches!(too_small, Err(BackendError::Device { .. })));
}

/// Paged attention with its first chunk's keys loaded after q's barrier (`early_kv` off) and
/// before it (the default), unsplit and over 4 key splits: every attention case matches the
/// CPU either way (the early path's keys are the ones the default parity runs check too).
#[test]
fn attention_parity_with_and_without_early_kv() {
    for (early, splits) in [(false, None), (false, Some(4)), (true, Some(4))] {
        let be = backend(WgpuOptions { dtype: Some(DType::F32), poison_outputs: true, early_kv: Some(early), attn_splits: splits, ..Default::default() });
        let failures = parity(&be, Dt::F32, Some("attention"));
        assert!(failures.is_empty(), "early_kv {early}, splits {splits:?}: {} cases failed:\n{}", failures.len(), failures.join("\n"));
    }
}

/// At decode size `matmul_many` (q/k/v) and `gated_matmul` are one dispatch each (q/k/v two
/// where the adapter allows only 8 storage buffers per stage, WebGPU's minimum and the
/// browsers' fallback adapters'), at M = 8 one tiled matmul per weight (+ `act_mul`); with 8
/// storage buffers the fused cases still match the CPU.
#[test]
fn fused_matmuls_are_one_dispatch_at_decode() {
    for (limit, qkv) in [(None, 1), (Some(8), 2)] {
        let be = backend(WgpuOptions { dtype: Some(DType::F32), max_storage_buffers: limit, ..Default::default() });
        let weight = |n: usize, k: usize| be.upload(&HostTensor::from_f32(&vec![0.25; n * k], &[n, k])).unwrap();
        let (wq, wk, wv, gate, up) = (weight(64, 64), weight(32, 64), weight(32, 64), weight(96, 64), weight(96, 64));
        for m in [1, 5, 8] {
            let x = be.upload(&HostTensor::from_f32(&vec![1.0; m * 64], &[m, 64])).unwrap();
            let before = be.pending_dispatches();
            let qkv_out = be.matmul_many(&x, &[(&wq, None), (&wk, None), (&wv, None)]).unwrap();
            let fused = be.pending_dispatches() - before;
            let before = be.pending_dispatches();
            let h = be.gated_matmul(&x, (&gate, None), (&up, None), tessera_core::backend::Activation::Silu).unwrap();
            let gated = be.pending_dispatches() - before;
            if m < 8 {
                assert_eq!((fused, gated), (qkv, 1), "M = {m}, storage buffers {limit:?}");
            } else {
                assert_eq!((fused, gated), (3, 3), "M = {m}");
            }
            let shapes: Vec<_> = qkv_out.iter().map(|t| t.shape().to_vec()).collect();
            assert_eq!(shapes, [vec![m, 64], vec![m, 32], vec![m, 32]]);
            // Every x · w is 64 * 0.25 = 16; silu(16) * 16.
            let want = 16.0 / (1.0 + (-16.0f32).exp()) * 16.0;
            let got = pollster::block_on(be.to_host(&h)).unwrap().to_f32();
            assert!(got.iter().all(|v| (v - want).abs() < 1e-3), "gated_matmul M = {m}: {:?}", &got[..4]);
            let got = pollster::block_on(be.to_host(&qkv_out[2])).unwrap().to_f32();
            assert!(got.iter().all(|&v| v == 16.0), "matmul_many M = {m}: {:?}", &got[..4]);
        }
    }
    let be = backend(WgpuOptions { dtype: Some(DType::F32), poison_outputs: true, max_storage_buffers: Some(8), ..Default::default() });
    let mut failures = parity(&be, Dt::F32, Some("matmul_many"));
    failures.extend(parity(&be, Dt::F32, Some("gated_matmul")));
    assert!(failures.is_empty(), "{} fused cases failed with 8 storage buffers:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_filter_matching_nothing_is_an_error() {
    assert!(select(Some("no-such-op")).is_err());
    assert!(select(Some("matmul")).unwrap().len() > 5);
}

/// Weights larger than one storage binding are bound in row chunks (binding limit lowered to
/// 4 KiB here: 7 chunks of w, 4 of the embedding table; 2 to 6 chunks of the quantized ones).
#[test]
fn weights_split_over_bindings() {
    for (dt, dtype) in [(Dt::F32, DType::F32), (Dt::F16, DType::F16)] {
        let be = backend(WgpuOptions { dtype: Some(dtype), poison_outputs: true, max_binding_bytes: Some(4096), ..Default::default() });
        let cpu = CpuBackend::new();
        let table = [
            cases::Kind::Matmul { m: 3, k: 64, n: 100, bias: true, f32_weight: false },
            cases::Kind::Matmul { m: 9, k: 64, n: 100, bias: false, f32_weight: false },
            cases::Kind::Embedding { vocab: 100, hidden: 64, tokens: 11, scale: 2.0 },
            // Quantized rows of 54, 210 and 68 bytes: chunks of whole rows at aligned offsets.
            cases::Kind::QMatmul { m: 3, k: 96, n: 100, dtype: DType::Q4_0, bias: true },
            cases::Kind::QMatmul { m: 2, k: 256, n: 100, dtype: DType::Q6_K, bias: false },
            cases::Kind::QMatmul { m: 9, k: 64, n: 100, dtype: DType::Q8_0, bias: true },
            cases::Kind::QEmbedding { vocab: 300, hidden: 64, tokens: 13, dtype: DType::Q8_0, scale: 1.0 },
        ];
        for (i, kind) in table.into_iter().enumerate() {
            let c = cases::Case { name: format!("split/{i}"), seed: 7 + i as u64, kind };
            let want = pollster::block_on(run(&cpu, &c, dt)).unwrap();
            let got = pollster::block_on(run(&be, &c, dt)).unwrap();
            compare(&got, &want, dt).unwrap_or_else(|e| panic!("{dt:?} {}: {e}", c.name));
        }
        // An activation that does not fit one binding is a clear error, not a crash.
        let x = be.upload(&HostTensor::from_f32(&vec![0.0; 2048], &[2, 1024])).unwrap();
        match be.add(&x, &x) {
            Err(BackendError::Shape { op: Op::Add, detail }) => assert!(detail.contains("binding"), "{detail}"),
            other => panic!("expected a Shape error, got {other:?}"),
        }
    }
}

#[test]
fn errors_name_op_dtype_and_backend() {
    let be = poisoned(DType::F32);
    let x = be.upload(&HostTensor::from_f32(&[1.0; 6], &[2, 3])).unwrap();
    let w = be.upload(&HostTensor::from_f32(&[1.0; 8], &[2, 4])).unwrap();
    assert!(matches!(be.matmul(&x, &w, None), Err(BackendError::Shape { op: Op::Matmul, .. })));
    let ids = be.upload_u32(&[0, 5], &[2]).unwrap();
    assert!(matches!(be.embedding(&x, &ids, 1.0), Err(BackendError::Shape { op: Op::Embedding, .. })));
    match be.matmul(&ids, &w, None) {
        Err(e @ BackendError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("Matmul") && msg.contains("uint32") && msg.contains("wgpu"), "{msg}");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
    assert!(matches!(be.softcap(&x, 0.0), Err(BackendError::Shape { op: Op::Softcap, .. })));
    let bad = HostTensor { dtype: DType::F32, shape: vec![3], data: vec![0u8; 8].into() };
    assert!(matches!(be.upload(&bad), Err(BackendError::Shape { op: Op::Upload, .. })));
    assert!(be.supports(Op::PagedAttention, DType::F32) && !be.supports(Op::Matmul, DType::U32));
}

/// Uploads keep f32 as f32, turn f16 / bf16 into the activation dtype, and read back exactly.
#[test]
fn uploads_and_read_backs() {
    let vals = [0.5f32, -1.75, 3.0e-5, 1024.0, 0.0];
    let bf16: Vec<u8> = vals.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
    for dtype in [DType::F32, DType::F16] {
        let be = poisoned(dtype);
        let t = be.upload(&HostTensor::from_f32(&vals, &[5])).unwrap();
        assert_eq!(t.dtype(), DType::F32);
        assert_eq!(pollster::block_on(be.to_host(&t)).unwrap().to_f32(), vals);
        let t = be.upload(&HostTensor { dtype: DType::BF16, shape: vec![5], data: bf16.clone().into() }).unwrap();
        assert_eq!(t.dtype(), dtype);
        let back = pollster::block_on(be.to_host(&t)).unwrap();
        assert_eq!((back.dtype, back.shape.clone()), (dtype, vec![5]));
        let want: Vec<f32> = vals.iter().map(|&v| half::f16::from_f32(half::bf16::from_f32(v).to_f32()).to_f32()).collect();
        let got = back.to_f32();
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= w.abs() * 1e-3, "{got:?} vs {want:?}");
        }
        let z = be.zeros(&[3, 0, 2]).unwrap();
        assert_eq!(pollster::block_on(be.to_host(&z)).unwrap().data.len(), 0);
        let ids = be.upload_u32(&[1, 2, u32::MAX], &[3]).unwrap();
        assert_eq!(pollster::block_on(be.to_host(&ids)).unwrap().to_u32(), vec![1, 2, u32::MAX]);
    }
}

/// Ops only record; one read-back submits everything at once, and pipelines are reused.
#[test]
fn one_submission_per_read_back_and_cached_pipelines() {
    let be = backend(WgpuOptions { dtype: Some(DType::F32), ..Default::default() });
    let x = be.upload(&HostTensor::from_f32(&[1.0, 2.0, 3.0, 4.0], &[2, 2])).unwrap();
    let before = be.submissions();
    let mut y = be.add(&x, &x).unwrap();
    for _ in 0..50 {
        y = be.add(&y, &x).unwrap();
    }
    assert_eq!(be.submissions(), before, "ops must not submit");
    assert_eq!(be.pending_dispatches(), 51);
    let compiled = be.pipelines_compiled();
    assert_eq!(compiled, 1);
    let out = pollster::block_on(be.to_host(&y)).unwrap().to_f32();
    assert_eq!(out, vec![52.0, 104.0, 156.0, 208.0]);
    assert_eq!(be.submissions(), before + 1);
}

// ---- model level ----------------------------------------------------------------------------

const MODELS: &[&str] = &["llama", "llama_tied_f16", "mistral", "qwen2", "qwen3", "smollm3", "gemma3", "phi3"];

/// The fixture model `name`: under `TESSERA_FIXTURES` (a GPU bundle's copy), else the repo's.
fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("TESSERA_FIXTURES").map(PathBuf::from);
    root.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")).join(name)
}

/// The tiny HF fixtures generate transformers' greedy tokens on the wgpu backend (f32).
#[test]
fn greedy_tokens_match_transformers_on_wgpu() {
    let mut checked = 0;
    for name in MODELS {
        let d = fixture(name);
        let config = ModelConfig::from_json_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap();
        let weights = SafetensorsWeights::from_dir(&d).unwrap();
        let be = backend(WgpuOptions { dtype: Some(DType::F32), ..Default::default() });
        let model = load_model(&be, &config, &weights).unwrap();
        let mut r = ModelRunner::new(be, model, 64, 16).unwrap();
        let text = std::fs::read_to_string(d.join("reference.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        for c in v["cases"].as_array().unwrap() {
            let (prompt, greedy) = (ids(&c["prompt_token_ids"]), ids(&c["greedy_token_ids"]));
            let p = GenerateParams {
                max_tokens: greedy.len(),
                temperature: 0.0,
                ignore_eos: true,
                logprobs: None,
                seed: 0,
                eos_token_ids: vec![],
                max_model_len: 512,
            };
            let out = generate(&mut r, &prompt, &p).unwrap();
            assert_eq!(out.outputs[0].token_ids, greedy, "{name}/{}: greedy tokens differ from HF", c["name"]);
            checked += 1;
        }
    }
    assert!(checked >= MODELS.len());
}
