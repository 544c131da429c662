//! The sampling kernel: temperature, top-k, top-p, min-p, then one draw by inverse CDF.
//!
//! Each row is sampled from its own uniform number, which the caller derives from the request's
//! seed and its output length (`Rng::nth_f64`), so a token never depends on which other
//! requests share the batch. The same per-row arguments (`RowSampling`) are what a device
//! kernel takes (`Backend::sample`); this is the reference implementation.
//!
//! ```text
//! logits / T -> probs (f64) -> sort desc (ties: lower id) -> keep top_k -> keep the prefix
//! whose mass before each token < top_p -> keep p >= min_p x p_max -> u x kept mass -> token
//! ```

use super::params::SAMPLING_EPS;

/// Per-row arguments of the sampling kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowSampling {
    /// Below 1e-5: argmax.
    pub temperature: f32,
    /// 0 = no limit.
    pub top_k: u32,
    /// 1 = no limit.
    pub top_p: f32,
    /// 0 = no limit.
    pub min_p: f32,
    /// The row's draw, uniform in [0, 1).
    pub uniform: f64,
}

impl RowSampling {
    pub fn greedy() -> Self {
        RowSampling { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, uniform: 0.0 }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature < SAMPLING_EPS
    }
}

/// First index of the largest value (matches the device `argmax`; NaNs never win).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] || row[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// The tokens `r` may sample from, most likely first, as `(token_id, unnormalized weight)`.
pub fn candidate_set(logits: &[f32], r: &RowSampling) -> Vec<(u32, f64)> {
    let max = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return vec![(argmax(logits), 1.0)];
    }
    let t = r.temperature as f64;
    let mut c: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter_map(|(i, &x)| {
            let w = ((x as f64 - max as f64) / t).exp();
            (w > 0.0).then_some((i as u32, w))
        })
        .collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if r.top_k > 0 {
        c.truncate(r.top_k as usize);
    }
    if r.top_p < 1.0 {
        let total: f64 = c.iter().map(|x| x.1).sum();
        let limit = r.top_p as f64 * total;
        let mut before = 0.0;
        let mut keep = 0;
        for (_, w) in &c {
            if keep > 0 && before >= limit {
                break;
            }
            before += w;
            keep += 1;
        }
        c.truncate(keep);
    }
    if r.min_p > 0.0 {
        let threshold = r.min_p as f64 * c[0].1;
        c.retain(|x| x.1 >= threshold);
    }
    c
}

/// One token from `logits` (one row) under `r`.
pub fn sample_row(logits: &[f32], r: &RowSampling) -> u32 {
    if r.is_greedy() {
        return argmax(logits);
    }
    let c = candidate_set(logits, r);
    let total: f64 = c.iter().map(|x| x.1).sum();
    let mut left = r.uniform * total;
    for (id, w) in &c {
        left -= w;
        if left < 0.0 {
            return *id;
        }
    }
    c.last().map_or(0, |x| x.0)
}

/// One token per row of `logits` (`rows.len()` rows of equal length).
pub fn sample_rows(logits: &[f32], rows: &[RowSampling]) -> Vec<u32> {
    if rows.is_empty() {
        return Vec::new();
    }
    let vocab = logits.len() / rows.len();
    logits.chunks(vocab).zip(rows).map(|(row, r)| sample_row(row, r)).collect()
}
