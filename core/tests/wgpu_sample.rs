//! Device sampling (`WgpuBackend::sample`, `sample.wgsl`) against the host reference
//! `sample::sample_rows` (cases in `wgpu_sample/common.rs`): greedy, temperature, top-k,
//! top-p, min-p and their mixes, rows with NaN / -inf, f32 and f16 logits (f16: many exact
//! ties), odd vocab sizes, 64-invocation workgroups; the whole call is one submission.
//!
//! The device sums weights in f32 (the reference in f64), so draws and top-p limits are
//! moved away from the reference's CDF boundaries (by 2e-5 of the mass) before the
//! comparison; the tokens must then be identical.

#[path = "wgpu_sample/common.rs"]
mod common;

use common::sample_case;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::Backend;
use tessera_core::sample::RowSampling;
use tessera_core::tensor::{DType, HostTensor};

fn backend(dtype: DType, max_workgroup_invocations: Option<u32>) -> WgpuBackend {
    WgpuBackend::new_blocking(WgpuOptions { dtype: Some(dtype), poison_outputs: true, max_workgroup_invocations, ..Default::default() })
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"))
}

fn check(dtype: DType, vocab: usize, seed: u64, max_workgroup_invocations: Option<u32>) {
    let be = backend(dtype, max_workgroup_invocations);
    let before = be.submissions();
    pollster::block_on(sample_case(&be, dtype, vocab, seed)).unwrap_or_else(|e| panic!("{e}"));
    // The upload does not submit; the sample and its read-back are one submission.
    assert_eq!(be.submissions(), before + 1, "sampling must be one submission");
}

#[test]
fn device_sampling_matches_reference_f32() {
    check(DType::F32, 1000, 11, None);
    check(DType::F32, 3001, 12, None);
    // 64-invocation workgroups (sizes from the limits).
    check(DType::F32, 517, 14, Some(64));
}

#[test]
fn device_sampling_matches_reference_f16() {
    check(DType::F16, 2049, 13, None);
}

#[test]
fn sampling_rejects_bad_shapes() {
    let be = backend(DType::F32, None);
    let t = be.upload(&HostTensor::from_f32(&[0.0; 6], &[2, 3])).unwrap();
    assert!(pollster::block_on(be.sample(&t, &[RowSampling::greedy()])).is_err());
}
