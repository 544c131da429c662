//! Row dot products of ggml weight blocks with quantized activations, dispatched on the
//! weight type and the instruction set: `vec_dot(isa, dtype, w_row, acts_row)`.
//!
//! ```text
//! weight type                     activations   SIMD (x86-64: avx2, avx512vnni)
//! Q4_0 Q4_1 Q5_0 Q5_1 Q8_0        Q8            yes
//! Q4_K Q5_K Q6_K                  Q8K           yes
//! Q2_K Q3_K                       Q8K           scalar
//! ```
//! Every path computes the formulas of `dot_scalar` and agrees with dequantize-then-f32 up
//! to the Q8 rounding of the activations.

use super::dot_scalar as scalar;
use super::isa::{Isa, Level};
use super::q8::{ActFormat, Q8KRow, Q8Row, QK_K};
use crate::tensor::DType;

/// The activation format `dtype` weights pair with (`None` for non-block types).
pub fn act_format(dtype: DType) -> Option<ActFormat> {
    match dtype {
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => Some(ActFormat::Q8),
        DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => Some(ActFormat::Q8K),
        _ => None,
    }
}

/// Whether `dtype` has a SIMD kernel at `isa` (else the scalar one runs).
pub fn has_simd(isa: Isa, dtype: DType) -> bool {
    isa.level() > Level::Scalar
        && matches!(
            dtype,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 | DType::Q4_K | DType::Q5_K | DType::Q6_K
        )
}

/// `R` rows at once through the SIMD K-quant kernels (`isa` ≥ AVX2, `dtype` Q4_K/Q5_K/Q6_K,
/// lengths checked by the caller).
#[cfg(target_arch = "x86_64")]
fn vec_dot_q8k_simd<const R: usize>(isa: Isa, dtype: DType, w: &[u8], a: [Q8KRow; R]) -> [f32; R] {
    use super::dot_x86::{avx2, vnni};
    // SAFETY (every arm): an `Isa` of this level exists only when its CPU features were
    // detected, and the callers asserted that every row in `a` covers every block of `w`.
    unsafe {
        match (isa.level(), dtype) {
            (Level::Avx512Vnni, DType::Q4_K) => vnni::q45_k::<false, R>(w, &a),
            (Level::Avx512Vnni, DType::Q5_K) => vnni::q45_k::<true, R>(w, &a),
            (Level::Avx512Vnni, _) => vnni::q6_k::<R>(w, &a),
            (_, DType::Q4_K) => avx2::q45_k::<false, R>(w, &a),
            (_, DType::Q5_K) => avx2::q45_k::<true, R>(w, &a),
            _ => avx2::q6_k::<R>(w, &a),
        }
    }
}

/// `out[c] = vec_dot(w, acts[c])` for every activation row: the K-quant SIMD kernels take
/// four rows per pass over the weight row (bit-identical to one at a time).
pub fn vec_dot_rows(isa: Isa, dtype: DType, w: &[u8], acts: &[ActRow], out: &mut [f32]) {
    assert_eq!(acts.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if isa.level() > Level::Scalar && matches!(dtype, DType::Q4_K | DType::Q5_K | DType::Q6_K) {
        let k = w.len() / dtype.block_bytes() * dtype.block_len();
        assert_eq!(w.len() % dtype.block_bytes(), 0, "{dtype}: partial block");
        fn row<'a>(a: &ActRow<'a>, dtype: DType, k: usize) -> Q8KRow<'a> {
            match *a {
                ActRow::Q8K(r) if r.qs.len() == k && r.d.len() == k / QK_K && r.bsums.len() == k / 16 => r,
                _ => panic!("{dtype}: activation rows must be Q8K rows of {k}"),
            }
        }
        let mut c = 0;
        while c + 4 <= acts.len() {
            let four = [row(&acts[c], dtype, k), row(&acts[c + 1], dtype, k), row(&acts[c + 2], dtype, k), row(&acts[c + 3], dtype, k)];
            out[c..c + 4].copy_from_slice(&vec_dot_q8k_simd(isa, dtype, w, four));
            c += 4;
        }
        for (o, a) in out[c..].iter_mut().zip(&acts[c..]) {
            *o = vec_dot_q8k_simd(isa, dtype, w, [row(a, dtype, k)])[0];
        }
        return;
    }
    for (o, a) in out.iter_mut().zip(acts) {
        *o = vec_dot(isa, dtype, w, *a);
    }
}

/// A quantized activation row in either format.
#[derive(Clone, Copy, Debug)]
pub enum ActRow<'a> {
    Q8(Q8Row<'a>),
    Q8K(Q8KRow<'a>),
}

/// `Σ_k dequant(w)[k] · a[k]` for one row `w` (whole blocks of `dtype`) and one activation
/// row quantized in `act_format(dtype)` with the same length (natural `Q8` layout).
///
/// Panics on mismatched formats or lengths (callers validate shapes first).
pub fn vec_dot(isa: Isa, dtype: DType, w: &[u8], a: ActRow) -> f32 {
    let k = w.len() / dtype.block_bytes() * dtype.block_len();
    assert_eq!(w.len() % dtype.block_bytes(), 0, "{dtype}: partial block");
    match a {
        ActRow::Q8(a) => {
            assert!(a.qs.len() == k && a.d.len() == k / 32 && a.s.len() == k / 32, "{dtype}: act row length");
            vec_dot_q8(isa, dtype, w, a)
        }
        ActRow::Q8K(a) => {
            assert!(a.qs.len() == k && a.d.len() == k / QK_K && a.bsums.len() == k / 16, "{dtype}: act row length");
            vec_dot_q8k(isa, dtype, w, a)
        }
    }
}

fn vec_dot_q8(isa: Isa, dtype: DType, w: &[u8], a: Q8Row) -> f32 {
    match (isa.level(), dtype) {
        // SAFETY (all arms below): an `Isa` of this level exists only when its CPU features
        // were detected, and `vec_dot` asserted that `a` covers every block of `w`.
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni, DType::Q4_0) => unsafe { super::dot_x86::vnni::q4::<18>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni, DType::Q4_1) => unsafe { super::dot_x86::vnni::q4::<20>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni, DType::Q5_0) => unsafe { super::dot_x86::vnni::q5::<22>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni, DType::Q5_1) => unsafe { super::dot_x86::vnni::q5::<24>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni, DType::Q8_0) => unsafe { super::dot_x86::vnni::q8_0(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2, DType::Q4_0) => unsafe { super::dot_x86::avx2::q4::<18>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2, DType::Q4_1) => unsafe { super::dot_x86::avx2::q4::<20>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2, DType::Q5_0) => unsafe { super::dot_x86::avx2::q5::<22>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2, DType::Q5_1) => unsafe { super::dot_x86::avx2::q5::<24>(w, a) },
        #[cfg(target_arch = "x86_64")]
        (Level::Avx2, DType::Q8_0) => unsafe { super::dot_x86::avx2::q8_0(w, a) },
        (_, DType::Q4_0) => scalar::q4_0(w, a),
        (_, DType::Q4_1) => scalar::q4_1(w, a),
        (_, DType::Q5_0) => scalar::q5_0(w, a),
        (_, DType::Q5_1) => scalar::q5_1(w, a),
        (_, DType::Q8_0) => scalar::q8_0(w, a),
        (_, other) => panic!("{other} weights do not pair with Q8 activations"),
    }
}

fn vec_dot_q8k(isa: Isa, dtype: DType, w: &[u8], a: Q8KRow) -> f32 {
    match (isa.level(), dtype) {
        // SAFETY (all arms below): as in `vec_dot_q8`.
        #[cfg(target_arch = "x86_64")]
        (Level::Avx512Vnni | Level::Avx2, DType::Q4_K | DType::Q5_K | DType::Q6_K) => vec_dot_q8k_simd(isa, dtype, w, [a])[0],
        (_, DType::Q2_K) => scalar::q2_k(w, a),
        (_, DType::Q3_K) => scalar::q3_k(w, a),
        (_, DType::Q4_K) => scalar::q4_k(w, a),
        (_, DType::Q5_K) => scalar::q5_k(w, a),
        (_, DType::Q6_K) => scalar::q6_k(w, a),
        (_, other) => panic!("{other} weights do not pair with Q8K activations"),
    }
}
