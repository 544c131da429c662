//! Row-wise and elementwise f32 math of the CPU backend, on plain slices: the numerics every
//! other backend must reproduce (HF transformers' float32 formulas, operation for operation).
//!
//! Transcendentals (`exp`, `tanh`, `cos`, `sin`, `erf`) are evaluated in f64 and rounded once,
//! i.e. they are the correctly rounded f32 value in practice; torch's f32 versions are within
//! an ulp of it. Everything else is f32 arithmetic in the order torch performs it. The two
//! hot exponentials — SiLU in `act_mul` and attention's softmax — use `fastmath::exp`
//! instead (vectorized, within ~2 ulp), which keeps them well inside the parity tolerances.

use crate::backend::{Activation, RopeParams, RopeStyle};

/// `exp(x)` rounded to f32.
pub(crate) fn exp_f32(x: f32) -> f32 {
    (x as f64).exp() as f32
}

/// `tanh(x)` rounded to f32.
pub(crate) fn tanh_f32(x: f32) -> f32 {
    (x as f64).tanh() as f32
}

/// `row = table_row * scale` (Gemma multiplies embeddings by `sqrt(hidden_size)`).
pub(crate) fn embedding_row(table_row: &[f32], scale: f32, row: &mut [f32]) {
    for (o, &v) in row.iter_mut().zip(table_row) {
        *o = v * scale;
    }
}

/// RMSNorm of one group, as HF computes it in float32:
///
/// ```text
/// variance = x.pow(2).mean(-1)          # squares in f32, the mean rounded to f32
/// out      = x * rsqrt(variance + eps)  # rsqrt = 1 / sqrt, both rounded to f32
/// out      = out * (offset + w)         # Llama: w * out; Gemma: out * (1 + w)
/// ```
/// The sum of squares is accumulated in f64 and rounded once: torch's vectorized cascade sum
/// lands within a few ulps of the exact sum, which a sequential f32 loop does not.
pub(crate) fn rms_norm_group(x: &[f32], w: &[f32], eps: f32, offset: f32, out: &mut [f32]) {
    let sum_sq: f64 = x.iter().map(|&v| (v * v) as f64).sum();
    let variance = (sum_sq / x.len() as f64) as f32;
    let inv_rms = 1.0 / (variance + eps).sqrt();
    for ((o, &v), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = (v * inv_rms) * (offset + wi);
    }
}

/// RoPE of one token's row `[n_heads * head_dim]` at `position`, in place.
///
/// ```text
/// angle_i = f32(position) * inv_freq[i]                    (f32, as HF's inv_freq @ positions)
/// cos_i   = cos(angle_i) * attention_scaling, sin_i likewise
/// Neox:        (x_i, x_{i+r/2}) -> (x_i cos_i - x_{i+r/2} sin_i, x_{i+r/2} cos_i + x_i sin_i)
/// Interleaved: (x_2i, x_2i+1)   -> (x_2i cos_i - x_2i+1 sin_i,   x_2i+1 cos_i + x_2i sin_i)
/// dims >= rotary_dim of each head pass through.
/// ```
/// This is HF's `q * cos + rotate_half(q) * sin` term by term (`a + (-b)` equals `a - b`).
pub(crate) fn rope_row(row: &mut [f32], position: u32, inv_freq: &[f32], p: &RopeParams) {
    let half = p.rotary_dim / 2;
    let pos = position as f32;
    let (cos, sin): (Vec<f32>, Vec<f32>) = inv_freq
        .iter()
        .map(|&f| {
            let angle = (pos * f) as f64;
            (
                angle.cos() as f32 * p.attention_scaling,
                angle.sin() as f32 * p.attention_scaling,
            )
        })
        .unzip();
    for head in row.chunks_exact_mut(p.head_dim) {
        for i in 0..half {
            let (a_idx, b_idx) = match p.style {
                RopeStyle::Neox => (i, i + half),
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            };
            let (a, b) = (head[a_idx], head[b_idx]);
            head[a_idx] = a * cos[i] - b * sin[i];
            head[b_idx] = b * cos[i] + a * sin[i];
        }
    }
}

/// `silu(g) = g / (1 + exp(-g))` (torch's CPU formula).
pub(crate) fn silu(g: f32) -> f32 {
    g / (1.0 + exp_f32(-g))
}

/// torch `gelu(x, approximate='tanh')`: `0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x³)))`.
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    // torch: kBeta = M_SQRT2 * M_2_SQRTPI * 0.5 in double, then rounded to float.
    const SQRT_2_OVER_PI: f32 =
        (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    const KAPPA: f32 = 0.044715;
    let x_cube = x * x * x;
    let inner = SQRT_2_OVER_PI * (x + KAPPA * x_cube);
    0.5 * x * (1.0 + tanh_f32(inner))
}

/// torch `gelu(x)` (exact): `x * 0.5 * (1 + erf(x / sqrt(2)))`.
pub(crate) fn gelu_erf(x: f32) -> f32 {
    let erf = erf_f64((x * std::f32::consts::FRAC_1_SQRT_2) as f64) as f32;
    x * 0.5 * (1.0 + erf)
}

/// The error function in f64, relative error ~1e-15, from the series with positive terms
///
/// ```text
/// erf(x) = 2/sqrt(pi) * exp(-x²) * Σ_{n>=0} 2ⁿ x^(2n+1) / (1·3·5···(2n+1))
/// ```
/// which converges for every x without cancellation. For |x| >= 6, erfc(|x|) < 3e-17 is below
/// f64 resolution and erf(x) = ±1.
pub(crate) fn erf_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    if ax >= 6.0 {
        return 1.0f64.copysign(x);
    }
    let x2 = ax * ax;
    let (mut term, mut sum) = (ax, ax);
    for n in 1..1000 {
        term *= 2.0 * x2 / (2 * n + 1) as f64;
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
    }
    let two_over_sqrt_pi = std::f64::consts::FRAC_2_SQRT_PI;
    (two_over_sqrt_pi * (-x2).exp() * sum).copysign(x)
}

/// `out = act(gate) * up` elementwise.
pub(crate) fn act_mul_row(gate: &[f32], up: &[f32], act: Activation, out: &mut [f32]) {
    let f: fn(f32) -> f32 = match act {
        Activation::Silu => silu,
        Activation::GeluTanh => gelu_tanh,
        Activation::Gelu => gelu_erf,
    };
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = f(g) * u;
    }
}

/// `tanh(x / cap) * cap` (Gemma's soft-capping, in torch's order).
pub(crate) fn softcap(x: f32, cap: f32) -> f32 {
    tanh_f32(x / cap) * cap
}

/// Index of the largest value, the first one on ties; NaN counts as the largest (as torch).
/// `row` must be non-empty.
pub(crate) fn argmax(row: &[f32]) -> u32 {
    let mut best = 0usize;
    for (j, &v) in row.iter().enumerate().skip(1) {
        let b = row[best];
        if b.is_nan() {
            break;
        }
        if v.is_nan() || v > b {
            best = j;
        }
    }
    best as u32
}
