//! The reductions of the decode kernels on every path they can take: the matrix-vector
//! kernels (`matmul`, `qmatmul`, the fused `matmul_many` / `gated_matmul` / `norm_*`) and
//! paged attention against the CPU reference (the `matmul` and `attention` cases of
//! `wgpu_ops/cases.rs`), in f32 and f16, with subgroup reductions off (the workgroup-memory
//! trees) and on with a column's lanes inside one subgroup (butterfly shuffles: 8 lanes on
//! lavapipe's subgroups of 8) or spread over several (subgroup sums added in workgroup
//! memory: 64 lanes). Where the adapter has no subgroups every configuration runs the trees.
//! Paged attention also over key splits (4 workgroups per (row, head), `attention_merge`),
//! with and without subgroups.

#[path = "wgpu_ops/cases.rs"]
mod cases;

use cases::{compare, run, select, Dt};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::tensor::DType;

fn parity(be: &WgpuBackend, dt: Dt, filter: &str, label: &str) -> Vec<String> {
    let cpu = CpuBackend::new();
    let mut failures = Vec::new();
    for c in &select(Some(filter)).unwrap_or_else(|e| panic!("{e}")) {
        let want = pollster::block_on(run(&cpu, c, dt)).unwrap_or_else(|e| panic!("{}: cpu failed: {e}", c.name));
        match pollster::block_on(run(be, c, dt)).map_err(|e| e.to_string()).and_then(|got| compare(&got, &want, dt)) {
            Ok(err) => eprintln!("ok   {label} {dt:?} {:<32} rel err {err:.2e}", c.name),
            Err(e) => failures.push(format!("{label} {dt:?} {}: {e}", c.name)),
        }
    }
    failures
}

#[test]
fn decode_reductions_on_every_path() {
    let configs = [
        ("no subgroups", Some(false), None, None),
        ("8 lanes", None, Some(8), None),
        ("64 lanes", None, Some(64), None),
        ("4 key splits", None, None, Some(4)),
        ("4 key splits, no subgroups", Some(false), None, Some(4)),
    ];
    let mut failures = Vec::new();
    let mut subgroup_sizes = Vec::new();
    for (label, subgroups, vec_lanes, attn_splits) in configs {
        for (dtype, dt) in [(DType::F32, Dt::F32), (DType::F16, Dt::F16)] {
            let opts = WgpuOptions { dtype: Some(dtype), poison_outputs: true, subgroups, vec_lanes, attn_splits, ..Default::default() };
            let be = WgpuBackend::new_blocking(opts).expect("a wgpu adapter (lavapipe in CI)");
            if subgroups == Some(false) {
                assert_eq!(be.subgroup_size(), 0, "subgroups asked off");
            }
            subgroup_sizes.push(be.subgroup_size());
            // The matvec cases only in one dtype per lane count (the kernels are the same).
            let filters: &[&str] = match (attn_splits, dt, vec_lanes) {
                (Some(_), _, _) => &["attention"],
                (None, Dt::F32, _) | (None, _, None) => &["matmul", "attention"],
                _ => &["qmatmul", "norm_"],
            };
            for f in filters {
                failures.extend(parity(&be, dt, f, label));
            }
        }
    }
    eprintln!("subgroup sizes: {subgroup_sizes:?}");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// Key splits bind one more storage buffer: with 12 (the fused K/V write's own need) the
/// attention runs unsplit and still matches.
#[test]
fn key_splits_need_a_spare_storage_binding() {
    let opts = WgpuOptions { dtype: Some(DType::F32), poison_outputs: true, attn_splits: Some(4), max_storage_buffers: Some(12), ..Default::default() };
    let be = WgpuBackend::new_blocking(opts).expect("a wgpu adapter (lavapipe in CI)");
    let failures = parity(&be, Dt::F32, "attention", "12 storage buffers");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}
