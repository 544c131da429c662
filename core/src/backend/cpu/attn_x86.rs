//! AVX2 / AVX-512 versions of attention's per-block steps (see `attn_kernel.rs`):
//! `scores` (q · k for up to 16 keys), `softmax_block` (exp(s − m), its sum) and `pv`
//! (o = o·c + Σ p_j v_j). Head dims must be multiples of the vector width (8 / 16 floats);
//! `attn_kernel` falls back to the portable steps otherwise.
//!
//! `exp` is the same Cody–Waite + degree-5 polynomial as `fastmath::exp`, lane-wise.
//!
//! Safety contract of every `unsafe fn` here: the CPU has the function's target features
//! (callers hold a `Simd` value made from a detected `Isa`), `q`, every key/value row and
//! `o` have `d` elements, and `1 ≤ kb ≤ 16`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::attn_kernel::KB;

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const P: [f32; 6] = [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
const LO: f32 = -87.336_54;
const HI: f32 = 88.722_83;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
fn exp512(x: __m512) -> __m512 {
    let xc = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(LO)), _mm512_set1_ps(HI));
    let n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), xc);
    let r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    let mut p = _mm512_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let er = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0));
    // er · 2^n; below LO the true value is under f32's normal range: 0, as the portable exp.
    let out = _mm512_scalef_ps(er, n);
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(LO), _CMP_GE_OQ), out)
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn exp256(x: __m256) -> __m256 {
    let xc = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(LO)), _mm256_set1_ps(HI));
    let n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), xc);
    let r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    let mut p = _mm256_set1_ps(P[0]);
    for &c in &P[1..] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let er = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0));
    // 2^n as two factors 2^(n/2) so n = 128 does not overflow the exponent field.
    let ni = _mm256_cvtps_epi32(n);
    let half = _mm256_srai_epi32(ni, 1);
    let pow = |e: __m256i| _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
    let out = _mm256_mul_ps(_mm256_mul_ps(er, pow(half)), pow(_mm256_sub_epi32(ni, half)));
    _mm256_and_ps(out, _mm256_cmp_ps(x, _mm256_set1_ps(LO), _CMP_GE_OQ))
}

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

// ---- AVX-512 --------------------------------------------------------------------------------

/// All 16 lanes are computed (keys past `kb` repeat the last valid one and get masked by
/// the caller), then reduced together: a key's arithmetic depends only on its lane.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn scores512(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]) {
    let d = q.len();
    let mut v = [_mm512_setzero_ps(); KB];
    // Dims outer, keys inner: 16 independent accumulators.
    for c in (0..d).step_by(16) {
        let qc = _mm512_loadu_ps(q.as_ptr().add(c));
        for (jj, vj) in v.iter_mut().enumerate() {
            let k = keys[jj.min(kb - 1)];
            *vj = _mm512_fmadd_ps(qc, _mm512_loadu_ps(k.as_ptr().add(c)), *vj);
        }
    }
    // 16 vectors -> one vector of their sums. Per 128-bit block: pairs of keys (2 partials
    // each), then quads (1 partial each); then the four blocks are summed across.
    let mut w = [_mm512_setzero_ps(); 8];
    for (i, wi) in w.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        *wi = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    }
    let mut x = [_mm512_setzero_ps(); 4];
    for (i, xi) in x.iter_mut().enumerate() {
        let (a, b) = (_mm512_castps_pd(w[2 * i]), _mm512_castps_pd(w[2 * i + 1]));
        *xi = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    let z01 = _mm512_add_ps(_mm512_shuffle_f32x4(x[0], x[1], 0b10_00_10_00), _mm512_shuffle_f32x4(x[0], x[1], 0b11_01_11_01));
    let z23 = _mm512_add_ps(_mm512_shuffle_f32x4(x[2], x[3], 0b10_00_10_00), _mm512_shuffle_f32x4(x[2], x[3], 0b11_01_11_01));
    let sums = _mm512_add_ps(_mm512_shuffle_f32x4(z01, z23, 0b10_00_10_00), _mm512_shuffle_f32x4(z01, z23, 0b11_01_11_01));
    _mm512_storeu_ps(out.as_mut_ptr(), sums);
}

/// Lanes outside `lo..=hi` masked; `m' = max(m, max s)`; `s = exp(s − m')`; returns
/// `(m', Σ s)`.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn softmax512(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32) {
    let keep = (((1u32 << (hi + 1)) - 1) & !((1u32 << lo) - 1)) as __mmask16;
    let x = _mm512_mask_mov_ps(_mm512_set1_ps(f32::NEG_INFINITY), keep, _mm512_loadu_ps(s.as_ptr()));
    let mnew = m.max(_mm512_reduce_max_ps(x));
    let p = exp512(_mm512_sub_ps(x, _mm512_set1_ps(mnew)));
    _mm512_storeu_ps(s.as_mut_ptr(), p);
    (mnew, _mm512_reduce_add_ps(p))
}

/// `o = o·corr + Σ p_jj v_jj`, 64 dims at a time (4 independent accumulators) when the
/// head dim allows, else 16.
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
pub(super) unsafe fn pv512(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize) {
    let d = o.len();
    let cr = _mm512_set1_ps(corr);
    let mut c = 0;
    while c + 64 <= d {
        let mut acc = [_mm512_setzero_ps(); 4];
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm512_mul_ps(_mm512_loadu_ps(o.as_ptr().add(c + 16 * t)), cr);
        }
        for jj in 0..kb {
            let pj = _mm512_set1_ps(p[jj]);
            for (t, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(pj, _mm512_loadu_ps(values[jj].as_ptr().add(c + 16 * t)), *a);
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(o.as_mut_ptr().add(c + 16 * t), *a);
        }
        c += 64;
    }
    while c < d {
        let mut acc = _mm512_mul_ps(_mm512_loadu_ps(o.as_ptr().add(c)), cr);
        for jj in 0..kb {
            acc = _mm512_fmadd_ps(_mm512_set1_ps(p[jj]), _mm512_loadu_ps(values[jj].as_ptr().add(c)), acc);
        }
        _mm512_storeu_ps(o.as_mut_ptr().add(c), acc);
        c += 16;
    }
}

// ---- AVX2 -----------------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scores256(q: &[f32], keys: &[&[f32]; KB], kb: usize, out: &mut [f32; KB]) {
    let d = q.len();
    for (jj, k) in keys.iter().enumerate().take(kb) {
        let mut acc = _mm256_setzero_ps();
        for c in (0..d).step_by(8) {
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr().add(c)), _mm256_loadu_ps(k.as_ptr().add(c)), acc);
        }
        out[jj] = hsum256(acc);
    }
}

/// As `softmax512`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax256(s: &mut [f32; KB], lo: usize, hi: usize, m: f32) -> (f32, f32) {
    let mut x = [_mm256_setzero_ps(); KB / 8];
    let mut mx = _mm256_set1_ps(f32::NEG_INFINITY);
    for (h, xh) in x.iter_mut().enumerate() {
        let idx = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * h as i32));
        let keep = _mm256_and_si256(
            _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo as i32 - 1)),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi as i32 + 1), idx),
        );
        let v = _mm256_loadu_ps(s.as_ptr().add(8 * h));
        *xh = _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), v, _mm256_castsi256_ps(keep));
        mx = _mm256_max_ps(mx, *xh);
    }
    let mx = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    let mx = _mm_max_ps(mx, _mm_movehl_ps(mx, mx));
    let mx = _mm_max_ss(mx, _mm_movehdup_ps(mx));
    let mnew = m.max(_mm_cvtss_f32(mx));
    let mut sum = _mm256_setzero_ps();
    for (h, xh) in x.iter().enumerate() {
        let p = exp256(_mm256_sub_ps(*xh, _mm256_set1_ps(mnew)));
        _mm256_storeu_ps(s.as_mut_ptr().add(8 * h), p);
        sum = _mm256_add_ps(sum, p);
    }
    (mnew, hsum256(sum))
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn pv256(o: &mut [f32], corr: f32, p: &[f32; KB], values: &[&[f32]; KB], kb: usize) {
    let d = o.len();
    for c in (0..d).step_by(8) {
        let mut acc = _mm256_mul_ps(_mm256_loadu_ps(o.as_ptr().add(c)), _mm256_set1_ps(corr));
        for jj in 0..kb {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(p[jj]), _mm256_loadu_ps(values[jj].as_ptr().add(c)), acc);
        }
        _mm256_storeu_ps(o.as_mut_ptr().add(c), acc);
    }
}
