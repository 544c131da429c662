//! Sampling: `SamplingParams` (vLLM's knobs and validation), the host logits processors,
//! the sampling kernel (temperature / top-k / top-p / min-p), logprobs, and the per-request
//! counter-based RNG. Greedy batches run on the device through `Backend::argmax`, and the
//! kernel's per-row arguments are what `Backend::sample` takes.

mod params;
mod processors;
mod sampler;

pub use params::{RequestOutputKind, SamplingError, SamplingParams, SAMPLING_EPS};
pub use processors::{apply_logits_processors, RowContext};
pub use sampler::{argmax, candidate_set, sample_row, sample_rows, RowSampling};

/// Natural-log softmax of one row of raw logits, accumulated in f64.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    logits.iter().map(|&x| (x as f64 - lse) as f32).collect()
}

/// The `k` most likely tokens of a logprob row (ties: lower id first), plus `chosen` if it
/// is not among them, as `(token_id, logprob)`.
pub fn top_logprobs(logprobs: &[f32], k: usize, chosen: u32) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logprobs.len() as u32).collect();
    let k = k.min(idx.len());
    if k > 0 {
        idx.select_nth_unstable_by(k - 1, |&a, &b| logprobs[b as usize].total_cmp(&logprobs[a as usize]).then(a.cmp(&b)));
    }
    idx.truncate(k);
    idx.sort_by(|&a, &b| logprobs[b as usize].total_cmp(&logprobs[a as usize]).then(a.cmp(&b)));
    let mut out: Vec<(u32, f32)> = idx.into_iter().map(|i| (i, logprobs[i as usize])).collect();
    if !out.iter().any(|(i, _)| *i == chosen) {
        out.push((chosen, logprobs[chosen as usize]));
    }
    out
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small, stable, seedable PRNG (SplitMix64) so a seed gives the same tokens everywhere.
/// Its n-th output is a pure function of (seed, n) ([`Rng::nth_u64`]), which is how a request
/// gets its own stream: draw `k` of request r is `nth_f64(seed_r, k)` for its k-th output
/// token, whatever else runs in the batch and however often it was preempted.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The `n`-th (0-based) output of `Rng::new(seed)`, without generating the others.
    pub fn nth_u64(seed: u64, n: u64) -> u64 {
        mix(seed.wrapping_add(GAMMA.wrapping_mul(n.wrapping_add(1))))
    }

    /// The `n`-th uniform in [0, 1) of `Rng::new(seed)`.
    pub fn nth_f64(seed: u64, n: u64) -> f64 {
        (Self::nth_u64(seed, n) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draw from `softmax(logits / temperature)`.
pub fn sample_temperature(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let r = RowSampling { temperature, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: rng.next_f64() };
    sample_row(logits, &r)
}
