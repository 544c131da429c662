//! Host-side sampling helpers: log-softmax, top-k logprobs, seeded temperature sampling.
//! (Greedy runs on the device through `Backend::argmax`.)

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
    idx.sort_by(|&a, &b| logprobs[b as usize].total_cmp(&logprobs[a as usize]).then(a.cmp(&b)));
    let mut out: Vec<(u32, f32)> = idx.into_iter().take(k).map(|i| (i, logprobs[i as usize])).collect();
    if !out.iter().any(|(i, _)| *i == chosen) {
        out.push((chosen, logprobs[chosen as usize]));
    }
    out
}

/// A small, stable, seedable PRNG (SplitMix64) so a seed gives the same tokens everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Draw from `softmax(logits / temperature)`.
pub fn sample_temperature(logits: &[f32], temperature: f32, rng: &mut Rng) -> u32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits.iter().map(|&x| (((x - max) / temperature) as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut r = rng.next_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        r -= w;
        if r < 0.0 {
            return i as u32;
        }
    }
    (logits.len() - 1) as u32
}
