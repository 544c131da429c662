//! `argmax` over long rows split across workgroups (`argmax_part` + `argmax_merge`, chunks
//! of `WgpuOptions::argmax_chunk` values) against the CPU backend, in f32 and f16: a
//! vocabulary-sized row (49,152 = SmolLM2's), odd widths, chunks that do not divide the row
//! or the workgroup, ties across parts (the first index must win), NaN in a later part (NaN
//! wins, the first one), rows of -inf only, and the one-workgroup path (`argmax_chunk` 0).

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::Backend;
use tessera_core::tensor::{DType, HostTensor};

/// Deterministic values in [-8, 8).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 16.0
        })
        .collect()
}

/// The rows of one case: (name, rows, cols, values).
fn cases() -> Vec<(String, usize, usize, Vec<f32>)> {
    let mut v = Vec::new();
    for (rows, cols) in [(1, 49_152), (3, 49_152), (2, 3001), (4, 257), (5, 1), (1, 1025)] {
        v.push((format!("random {rows}x{cols}"), rows, cols, values(rows as u64 * 31 + cols as u64, rows * cols)));
    }
    // Ties: the max (9.0) in several parts of every row; the first index must win.
    let cols = 49_152;
    let mut t: Vec<f32> = values(7, 3 * cols).iter().map(|x| x.round()).collect();
    for (r, firsts) in [[5usize, 9000, 40_000], [30_000, 30_001, 49_151], [49_151, 49_151, 49_151]].iter().enumerate() {
        for &j in firsts {
            t[r * cols + j] = 9.0;
        }
    }
    v.push(("ties across parts".into(), 3, cols, t));
    // NaN: row 0 one NaN late, row 1 two NaNs in different parts, row 2 NaN at index 0.
    let mut n = values(8, 3 * cols);
    n[40_000] = f32::NAN;
    n[cols + 20_000] = f32::NAN;
    n[cols + 45_000] = f32::NAN;
    n[2 * cols] = f32::NAN;
    v.push(("nan in a later part".into(), 3, cols, n));
    // -inf only (index 0), and -inf with one finite value at the end.
    let mut m = vec![f32::NEG_INFINITY; 2 * 3001];
    m[2 * 3001 - 1] = -1.0e30;
    v.push(("-inf rows".into(), 2, 3001, m));
    v
}

fn upload<B: Backend>(be: &B, v: &[f32], shape: &[usize], f16: bool) -> B::Tensor {
    let t = if f16 {
        let bytes: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        HostTensor { dtype: DType::F16, shape: shape.to_vec(), data: bytes.into() }
    } else {
        HostTensor::from_f32(v, shape)
    };
    be.upload(&t).unwrap()
}

fn ids<B: Backend>(be: &B, v: &[f32], shape: &[usize], f16: bool) -> Vec<u32> {
    let x = upload(be, v, shape, f16);
    pollster::block_on(be.to_host(&be.argmax(&x).unwrap())).unwrap().to_u32()
}

#[test]
fn split_argmax_matches_the_cpu() {
    let cpu = CpuBackend::new();
    let mut failures = Vec::new();
    let mut checked = 0;
    for chunk in [None, Some(0), Some(7), Some(64), Some(1000), Some(100_000)] {
        for f16 in [false, true] {
            let dtype = if f16 { DType::F16 } else { DType::F32 };
            let opts = WgpuOptions { dtype: Some(dtype), poison_outputs: true, argmax_chunk: chunk, ..Default::default() };
            let Ok(be) = WgpuBackend::new_blocking(opts) else {
                assert!(f16, "a wgpu adapter (lavapipe in CI)");
                continue;
            };
            for (name, rows, cols, v) in cases() {
                // The reference sees the values the device sees (f16-rounded in f16 runs).
                let r: Vec<f32> = if f16 { v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect() } else { v.clone() };
                let want = ids(&cpu, &r, &[rows, cols], false);
                let got = ids(&be, &v, &[rows, cols], f16);
                checked += 1;
                if got != want {
                    failures.push(format!("chunk {chunk:?} {dtype} {name}: got {got:?}, want {want:?}"));
                }
            }
        }
    }
    assert!(checked >= 6 * 8, "only {checked} cases ran");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

/// The ties case really has its answers where the test says (the reference is not vacuous).
#[test]
fn tie_and_nan_cases_have_the_expected_answers() {
    let cpu = CpuBackend::new();
    let all = cases();
    let find = |n: &str| all.iter().find(|c| c.0 == n).unwrap();
    let (_, rows, cols, v) = find("ties across parts");
    assert_eq!(ids(&cpu, v, &[*rows, *cols], false), vec![5, 30_000, 49_151]);
    let (_, rows, cols, v) = find("nan in a later part");
    assert_eq!(ids(&cpu, v, &[*rows, *cols], false), vec![40_000, 20_000, 0]);
    let (_, rows, cols, v) = find("-inf rows");
    assert_eq!(ids(&cpu, v, &[*rows, *cols], false), vec![0, 3000]);
}
