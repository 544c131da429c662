//! Sampling cases shared by the native (`wgpu_sample.rs`) and browser (`wgpu_ops_web.rs`)
//! runs: random logits rows under many (temperature, top-k, top-p, min-p) settings, draws and
//! top-p limits moved off the reference's CDF boundaries, compared with `sample_rows`.

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
pub fn make_unambiguous(row: &[f32], r: &mut RowSampling) {
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

pub fn rows_and_logits(vocab: usize, seed: u64) -> (Vec<RowSampling>, Vec<f32>) {
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

/// Samples the rows of seed `seed` on `be` and compares with the reference; `Err` says how
/// they differ.
pub async fn sample_case<B: Backend>(be: &B, dtype: DType, vocab: usize, seed: u64) -> Result<(), String> {
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
    let t = be.upload(&host).map_err(|e| e.to_string())?;
    let got = be.sample(&t, &rows).await.map_err(|e| e.to_string())?;
    if got.len() != rows.len() {
        return Err(format!("{} ids for {} rows", got.len(), rows.len()));
    }
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if g != w {
            return Err(format!("{dtype} vocab {vocab} row {i} ({:?}): device {g}, reference {w}", rows[i]));
        }
    }
    // Draws matter: the non-greedy rows do not all sample their argmax.
    let argmax = sample_rows(&logits, &vec![RowSampling::greedy(); rows.len()]);
    if got.iter().zip(&argmax).filter(|(a, b)| a != b).count() < 3 {
        return Err("fewer than 3 rows sampled something other than their argmax".into());
    }
    Ok(())
}
