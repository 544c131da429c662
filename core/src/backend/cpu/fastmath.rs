//! Vectorizable f32 math for the hot loops (softmax, SiLU, tanh-GELU): an `exp` accurate to ~2 ulp
//! built only from arithmetic and bit operations, so loops over it vectorize, and the
//! run-time choice of the widest vector ISA for such loops.
//!
//! ```text
//! exp(x) = 2^n · e^r,  n = round(x / ln2),  r = x − n·ln2 (Cody–Waite split, |r| ≤ ln2/2)
//! e^r    = 1 + r + r²·P(r)   (degree-5 minimax P, Cephes expf)
//! ```
//! x ≤ −87.3 gives 0 (not the f32 subnormals), x ≥ 88.7 gives +inf, NaN stays NaN.
//!
//! `Simd` names the instruction sets the callers compile their loops for: the same portable
//! Rust body wrapped in `#[target_feature]` functions (see `attn_kernel.rs`), selected from
//! the backend's detected [`Isa`].

use crate::quant::isa::{Isa, Level};

/// Which vector ISA f32 loops are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Simd {
    /// The target's baseline (SSE2 on x86-64, simd128 if enabled on wasm32).
    Base,
    Avx2,
    Avx512,
}

impl Simd {
    pub(crate) fn of(isa: Isa) -> Simd {
        match isa.level() {
            Level::Scalar => Simd::Base,
            Level::Avx2 => Simd::Avx2,
            Level::Avx512Vnni => Simd::Avx512,
        }
    }
}

/// `a·b + c`, fused when `FMA` (callers pass `true` only inside FMA-enabled code, where
/// `mul_add` is one instruction; elsewhere it would be a libm call).
#[inline(always)]
pub(crate) fn fma<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `exp(x)` for f32, within ~2 ulp (see the module docs); branch-free so it vectorizes.
#[inline(always)]
pub(crate) fn exp<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let xc = x.clamp(-87.336_54, 88.722_83);
    let t = fma::<FMA>(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = fma::<FMA>(n, -LN2_HI, xc);
    let r = fma::<FMA>(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = fma::<FMA>(p, r, 1.398_199_9e-3);
    p = fma::<FMA>(p, r, 8.333_452e-3);
    p = fma::<FMA>(p, r, 4.166_579_6e-2);
    p = fma::<FMA>(p, r, 1.666_666_5e-1);
    p = fma::<FMA>(p, r, 0.5);
    let er = fma::<FMA>(p, r * r, r) + 1.0;
    // 2^n from the integer bits of t (n in [-126, 128]); n = 128 only when x ≥ 88.72
    // (er · 2^127 · 2 overflows to inf as it should).
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let half = f32::from_bits(((ni.min(127) + 127) as u32) << 23);
    let out = er * half * if ni > 127 { 2.0 } else { 1.0 };
    let out = if x < -87.336_54 { 0.0 } else if x > 88.722_83 { f32::INFINITY } else { out };
    if x.is_nan() {
        x
    } else {
        out
    }
}

/// `silu(g) · u` over slices (`g / (1 + exp(−g)) · u`).
#[inline(always)]
fn silu_mul_body<const FMA: bool>(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp::<FMA>(-g)) * u;
    }
}

/// `gelu_tanh(g) · u` over slices: `0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))`, with
/// `tanh(y) = 1 − 2 / (e^{2y} + 1)` (absolute error ~1e-7; gelu multiplies it by g/2).
#[inline(always)]
fn gelu_tanh_mul_body<const FMA: bool>(gate: &[f32], up: &[f32], out: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = (std::f64::consts::SQRT_2 * std::f64::consts::FRAC_2_SQRT_PI * 0.5) as f32;
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        let inner = SQRT_2_OVER_PI * (g + 0.044715 * (g * g * g));
        let tanh = 1.0 - 2.0 / (exp::<FMA>(2.0 * inner) + 1.0);
        *o = 0.5 * g * (1.0 + tanh) * u;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_tanh_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    gelu_tanh_mul_body::<true>(gate, up, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn gelu_tanh_mul_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
    gelu_tanh_mul_body::<true>(gate, up, out)
}

/// `out = gelu_tanh(gate) · up` elementwise, vectorized for `simd`.
pub(crate) fn gelu_tanh_mul(simd: Simd, gate: &[f32], up: &[f32], out: &mut [f32]) {
    match simd {
        // SAFETY: as in `silu_mul`.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { gelu_tanh_mul_avx512(gate, up, out) },
        // SAFETY: as in `silu_mul`.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { gelu_tanh_mul_avx2(gate, up, out) },
        _ => gelu_tanh_mul_body::<false>(gate, up, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn silu_mul_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    silu_mul_body::<true>(gate, up, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn silu_mul_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
    silu_mul_body::<true>(gate, up, out)
}

/// `out = silu(gate) · up` elementwise, vectorized for `simd`.
pub(crate) fn silu_mul(simd: Simd, gate: &[f32], up: &[f32], out: &mut [f32]) {
    match simd {
        // SAFETY: `Simd::Avx512` / `Simd::Avx2` come from an `Isa` whose features were
        // detected at run time (AVX-512 F/BW/DQ/VL resp. AVX2 + FMA are part of them).
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { silu_mul_avx512(gate, up, out) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { silu_mul_avx2(gate, up, out) },
        _ => silu_mul_body::<false>(gate, up, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_and_handles_the_edges() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            for v in [exp::<false>(x), exp::<true>(x)] {
                let want = (x as f64).exp();
                worst = worst.max(((v as f64 - want) / want).abs());
            }
            x += 0.0137;
        }
        assert!(worst < 3e-7, "max relative error {worst}");
        assert_eq!(exp::<false>(0.0), 1.0);
        assert_eq!(exp::<false>(-100.0), 0.0);
        assert_eq!(exp::<false>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp::<false>(100.0), f32::INFINITY);
        assert!(exp::<false>(f32::NAN).is_nan());
    }
}
