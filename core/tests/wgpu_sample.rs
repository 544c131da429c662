//! Device sampling (`WgpuBackend::sample`, `sample.wgsl`) against the host reference
//! `sample::sample_rows`: greedy, temperature, top-k, top-p, min-p and their mixes, rows with
//! NaN / -inf, f32 and f16 logits (f16: many exact ties), odd vocab sizes, 64-invocation
//! workgroups; the whole call is one submission.
//!
//! The device sums weights in f32 (the reference in f64), so draws and top-p limits are
//! moved away from the reference's CDF boundaries (by 2e-5 of the mass) before the
//! comparison; the tokens must then be identical.

use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::Backend;
use tessera_core::sample::{candidate_set, sample_rows, RowSampling};
use tessera_core::tensor::{DType, HostTensor};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn backend(dtype: DType, max_workgroup_invocations: Option<u32>) -> WgpuBackend {
    WgpuBackend::new_blocking(WgpuOptions { dtype: Some(dtype), poison_outputs: true, max_workgroup_invocations, ..Default::default() })
        .unwrap_or_else(|e| panic!("no wgpu adapter ({e}); install Mesa lavapipe: bash scripts/ci-deps.sh"))
}

/// Distance of `x` from the nearest prefix sum of `weights` (in order), relative to the total.
fn boundary_gap(weights: &[f64], x: f64) -> f64 {
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    let mut gap = f64::INFINITY;
    for w in weights {
        acc += w;
        gap = gap.min((acc - x).abs());
    }
    gap / total
}

/// Moves `r`'s top-p limit and draw off the reference's boundaries (at least 2e-5 of the mass
/// away: the device's f32 sums are good to ~1e-6).
fn make_unambiguous(row: &[f32], r: &mut RowSampling) {
    const GAP: f64 = 2e-5;
    if r.is_greedy() {
        return;
    }
    if r.top_p < 1.0 {
        let before = RowSampling { top_p: 1.0, min_p: 0.0, ..*r };
        let c: Vec<f64> = candidate_set(row, &before).iter().map(|x| x.1).collect();
        let total: f64 = c.iter().sum();
        for _ in 0..1000 {
            if boundary_gap(&c, r.top_p as f64 * total) >= GAP {
                break;
            }
            r.top_p = (r.top_p - 3e-5).max(0.0);
        }
        assert!(boundary_gap(&c, r.top_p as f64 * total) >= GAP || r.top_p == 0.0);
    }
    let c: Vec<f64> = candidate_set(row, r).iter().map(|x| x.1).collect();
    let total: f64 = c.iter().sum();
    for _ in 0..1000 {
        if c.len() == 1 || boundary_gap(&c, r.uniform * total) >= GAP {
            return;
        }
        r.uniform = (r.uniform + 3e-5) % 1.0;
    }
    panic!("no unambiguous draw for {r:?}");
}

fn rows_and_logits(vocab: usize, seed: u64) -> (Vec<RowSampling>, Vec<f32>) {
    let mut rng = Rng(seed | 1);
    let mut params = vec![
        RowSampling::greedy(),
        RowSampling { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 0.7, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 1.3, top_k: 40, top_p: 1.0, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 1.0, top_k: 1, top_p: 1.0, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 0.8, top_k: 0, top_p: 0.9, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 1.0, top_k: 0, top_p: 0.3, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.05, uniform: 0.0 },
        RowSampling { temperature: 0.6, top_k: 50, top_p: 0.95, min_p: 0.02, uniform: 0.0 },
        RowSampling { temperature: 2.0, top_k: 5000, top_p: 1.0, min_p: 0.0, uniform: 0.0 },
        RowSampling { temperature: 1.0, top_k: 0, top_p: 0.0, min_p: 0.0, uniform: 0.0 },
    ];
    // Each setting three times with different draws.
    params = params.iter().flat_map(|p| [*p; 3]).collect();
    let mut logits = Vec::with_capacity(params.len() * vocab);
    for (i, r) in params.iter_mut().enumerate() {
        let mut row: Vec<f32> = (0..vocab).map(|_| ((rng.unit() * 2.0 - 1.0) * 6.0) as f32).collect();
        // Some peaked rows, some NaN / -inf entries.
        if i % 4 == 1 {
            row[(rng.next() % vocab as u64) as usize] += 8.0;
        }
        if i % 5 == 2 {
            row[(rng.next() % vocab as u64) as usize] = f32::NAN;
            row[(rng.next() % vocab as u64) as usize] = f32::NEG_INFINITY;
        }
        r.uniform = rng.unit();
        logits.extend_from_slice(&row);
    }
    (params, logits)
}

fn check(dtype: DType, vocab: usize, seed: u64, max_workgroup_invocations: Option<u32>) {
    let be = backend(dtype, max_workgroup_invocations);
    let (mut rows, mut logits) = rows_and_logits(vocab, seed);
    if dtype == DType::F16 {
        logits = logits.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect();
    }
    for (i, r) in rows.iter_mut().enumerate() {
        make_unambiguous(&logits[i * vocab..(i + 1) * vocab], r);
    }
    let want = sample_rows(&logits, &rows);
    let host = match dtype {
        DType::F16 => HostTensor {
            dtype,
            shape: vec![rows.len(), vocab],
            data: logits.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect::<Vec<u8>>().into(),
        },
        _ => HostTensor::from_f32(&logits, &[rows.len(), vocab]),
    };
    let t = be.upload(&host).unwrap();
    let before = be.submissions();
    let got = pollster::block_on(be.sample(&t, &rows)).unwrap();
    assert_eq!(be.submissions(), before + 1, "sampling must be one submission");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "{dtype} vocab {vocab} row {i} ({:?}): device {g}, reference {w}", rows[i]);
    }
    assert_eq!(got.len(), rows.len());
    // Draws matter: the non-greedy rows do not all sample their argmax.
    let argmax = sample_rows(&logits, &vec![RowSampling::greedy(); rows.len()]);
    assert!(got.iter().zip(&argmax).filter(|(a, b)| a != b).count() >= 3);
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
