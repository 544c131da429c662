//! x86-64 kernels for one x8 panel (see `repack.rs` for the layout) times up to four
//! `Q8Pairs` activation rows.
//!
//! ```text
//! avx512  16 lanes = the panel's 16 (row, block) pairs; per group and act row:
//!         8 × vpdpbusd(W_g, broadcast 8 act bytes), cvt, 2 fma
//! avx2    the same layout in two 8-lane halves (rows 0..4, 4..8); maddubs into i16
//!         (Q4: 8 × 2·15·127 < 2¹⁵; Q5: two sums of 4 × 2·31·127) then madd; Q8_0 uses
//!         the sign trick per g
//! Q5_*: the 5th bits (H, bit g of each byte) are shifted to bit 4 and or-ed in per g.
//! ```
//! Safety contract of every `unsafe fn` here: the CPU has the target features named on it
//! (the caller holds an `Isa` of that level), `panels` holds whole panels of `panel_bytes`
//! (groups of `kind`), every act row has 64 quants and 2 scales per group, and `out` holds
//! `(acts.len() − 1) · stride + 8 · panels` values (asserted by `repack::panels_dot`),
//! which bound every pointer read and write.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::q8::Q8Row;
use super::repack::{X8Kind, GROUP_K, MAX_MR};

const _: () = assert!(MAX_MR <= 6, "dispatch_mr! instantiates kernels for up to 6 act rows");

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;
const Q5_0: u8 = 3;
const Q5_1: u8 = 4;

const fn kind_id(kind: X8Kind) -> u8 {
    match kind {
        X8Kind::Q4_0 => Q4_0,
        X8Kind::Q4_1 => Q4_1,
        X8Kind::Q5_0 => Q5_0,
        X8Kind::Q5_1 => Q5_1,
        X8Kind::Q8_0 => Q8_0,
    }
}

const fn group_bytes(kind: u8) -> usize {
    match kind {
        Q4_0 => 288,
        Q4_1 => 320,
        Q5_0 => 352,
        Q5_1 => 384,
        _ => 544,
    }
}

const fn scale_offset(kind: u8) -> usize {
    match kind {
        Q8_0 => 512,
        Q5_0 | Q5_1 => 320,
        _ => 256,
    }
}

const fn is_q5(kind: u8) -> bool {
    kind == Q5_0 || kind == Q5_1
}

/// Reads 8 bytes at `p` as an i64 (unaligned).
#[inline(always)]
unsafe fn read8(p: *const u8) -> i64 {
    std::ptr::read_unaligned(p as *const i64)
}

#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn x8_avx512<const KIND: u8, const MR: usize>(panels: &[u8], panel_bytes: usize, acts: &[Q8Row], out: &mut [f32], stride: usize) {
    for (pi, panel) in panels.chunks_exact(panel_bytes).enumerate() {
        let rows = x8_panel_avx512::<KIND, MR>(panel, acts);
        for (c, r) in rows.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(c * stride + 8 * pi), *r);
        }
    }
}

/// One panel: the 8 row dots for each act row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn x8_panel_avx512<const KIND: u8, const MR: usize>(panel: &[u8], acts: &[Q8Row]) -> [__m256; MR] {
    let gb = group_bytes(KIND);
    let so = scale_offset(KIND);
    let groups = panel.len() / gb;
    let m4 = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); MR];
    for p in 0..groups {
        let g = panel.as_ptr().add(p * gb);
        let mut w = [_mm512_setzero_si512(); 8];
        if KIND == Q8_0 {
            for (i, wi) in w.iter_mut().enumerate() {
                *wi = _mm512_loadu_si512(g.add(64 * i) as *const __m512i);
            }
        } else {
            for q in 0..4 {
                let v = _mm512_loadu_si512(g.add(64 * q) as *const __m512i);
                w[2 * q] = _mm512_and_si512(v, m4);
                w[2 * q + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            }
            if is_q5(KIND) {
                let h = _mm512_loadu_si512(g.add(256) as *const __m512i);
                let bit4 = _mm512_set1_epi8(0x10);
                for (i, wi) in w.iter_mut().enumerate() {
                    // Bit i of each byte -> bit 4 (16-bit shifts; the mask drops what crosses bytes).
                    let moved = if i <= 4 {
                        _mm512_sll_epi16(h, _mm_cvtsi32_si128(4 - i as i32))
                    } else {
                        _mm512_srl_epi16(h, _mm_cvtsi32_si128(i as i32 - 4))
                    };
                    *wi = _mm512_or_si512(*wi, _mm512_and_si512(moved, bit4));
                }
            }
        }
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(g.add(so) as *const __m256i));
        let coef = match KIND {
            Q4_0 => _mm512_mul_ps(dw, _mm512_set1_ps(-8.0)),
            Q5_0 => _mm512_mul_ps(dw, _mm512_set1_ps(-16.0)),
            Q4_1 | Q5_1 => _mm512_cvtph_ps(_mm256_loadu_si256(g.add(so + 32) as *const __m256i)),
            _ => _mm512_mul_ps(dw, _mm512_set1_ps(-128.0)),
        };
        for c in 0..MR {
            let a = acts[c].qs.as_ptr().add(GROUP_K * p) as *const u8;
            // Two partial sums halve the dependency chain of the 8 dots.
            let mut i0 = _mm512_setzero_si512();
            let mut i1 = _mm512_setzero_si512();
            for q in 0..4 {
                i0 = _mm512_dpbusd_epi32(i0, w[2 * q], _mm512_set1_epi64(read8(a.add(16 * q))));
                i1 = _mm512_dpbusd_epi32(i1, w[2 * q + 1], _mm512_set1_epi64(read8(a.add(16 * q + 8))));
            }
            let idot = _mm512_add_epi32(i0, i1);
            let da = _mm512_castpd_ps(_mm512_set1_pd(f64::from_bits(read8(acts[c].d.as_ptr().add(2 * p) as *const u8) as u64)));
            let sa = _mm512_castpd_ps(_mm512_set1_pd(f64::from_bits(read8(acts[c].s.as_ptr().add(2 * p) as *const u8) as u64)));
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(idot), _mm512_mul_ps(dw, da), acc[c]);
            acc[c] = _mm512_fmadd_ps(coef, sa, acc[c]);
        }
    }
    let mut rows = [_mm256_setzero_ps(); MR];
    for c in 0..MR {
        // Lanes (2r, 2r+1) -> row r: add the pair-swapped vector, keep the even lanes.
        let pairs = _mm512_add_ps(acc[c], _mm512_permute_ps(acc[c], 0b10_11_00_01));
        rows[c] = _mm512_castps512_ps256(_mm512_maskz_compress_ps(0x5555, pairs));
    }
    rows
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn x8_avx2<const KIND: u8, const MR: usize>(panels: &[u8], panel_bytes: usize, acts: &[Q8Row], out: &mut [f32], stride: usize) {
    for (pi, panel) in panels.chunks_exact(panel_bytes).enumerate() {
        let rows = x8_panel_avx2::<KIND, MR>(panel, acts);
        for (c, r) in rows.iter().enumerate() {
            _mm256_storeu_ps(out.as_mut_ptr().add(c * stride + 8 * pi), *r);
        }
    }
}

/// One panel: the 8 row dots for each act row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn x8_panel_avx2<const KIND: u8, const MR: usize>(panel: &[u8], acts: &[Q8Row]) -> [__m256; MR] {
    let gb = group_bytes(KIND);
    let so = scale_offset(KIND);
    let groups = panel.len() / gb;
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let flip = _mm256_set1_epi8(-128);
    let mut acc = [[_mm256_setzero_ps(); MR]; 2];
    for p in 0..groups {
        let g = panel.as_ptr().add(p * gb);
        for h in 0..2 {
            let mut w = [_mm256_setzero_si256(); 8];
            if KIND == Q8_0 {
                for (i, wi) in w.iter_mut().enumerate() {
                    // Back to signed i8 for the sign trick.
                    *wi = _mm256_xor_si256(_mm256_loadu_si256(g.add(64 * i + 32 * h) as *const __m256i), flip);
                }
            } else {
                for q in 0..4 {
                    let v = _mm256_loadu_si256(g.add(64 * q + 32 * h) as *const __m256i);
                    w[2 * q] = _mm256_and_si256(v, m4);
                    w[2 * q + 1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                }
                if is_q5(KIND) {
                    let hb = _mm256_loadu_si256(g.add(256 + 32 * h) as *const __m256i);
                    let bit4 = _mm256_set1_epi8(0x10);
                    for (i, wi) in w.iter_mut().enumerate() {
                        let moved = if i <= 4 {
                            _mm256_sll_epi16(hb, _mm_cvtsi32_si128(4 - i as i32))
                        } else {
                            _mm256_srl_epi16(hb, _mm_cvtsi32_si128(i as i32 - 4))
                        };
                        *wi = _mm256_or_si256(*wi, _mm256_and_si256(moved, bit4));
                    }
                }
            }
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(g.add(so + 16 * h) as *const __m128i));
            let coef = match KIND {
                Q4_0 => _mm256_mul_ps(dw, _mm256_set1_ps(-8.0)),
                Q5_0 => _mm256_mul_ps(dw, _mm256_set1_ps(-16.0)),
                Q4_1 | Q5_1 => _mm256_cvtph_ps(_mm_loadu_si128(g.add(so + 32 + 16 * h) as *const __m128i)),
                // Signed quants here: no offset to undo.
                _ => _mm256_setzero_ps(),
            };
            for c in 0..MR {
                let a = acts[c].qs.as_ptr().add(GROUP_K * p) as *const u8;
                let idot = if KIND == Q8_0 {
                    let mut s = _mm256_setzero_si256();
                    for (i, &wi) in w.iter().enumerate() {
                        let av = _mm256_set1_epi64x(read8(a.add(8 * i)));
                        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(wi, wi), _mm256_sign_epi8(av, wi));
                        s = _mm256_add_epi32(s, _mm256_madd_epi16(prod, ones));
                    }
                    s
                } else {
                    // i16 sums of at most 4 (Q5) or 8 (Q4) products pairs stay below 2^15.
                    let mut s16 = [_mm256_setzero_si256(); 2];
                    for (i, &wi) in w.iter().enumerate() {
                        let av = _mm256_set1_epi64x(read8(a.add(8 * i)));
                        let part = if is_q5(KIND) { i / 4 } else { 0 };
                        s16[part] = _mm256_add_epi16(s16[part], _mm256_maddubs_epi16(wi, av));
                    }
                    _mm256_add_epi32(_mm256_madd_epi16(s16[0], ones), _mm256_madd_epi16(s16[1], ones))
                };
                let da = _mm256_castpd_ps(_mm256_set1_pd(f64::from_bits(read8(acts[c].d.as_ptr().add(2 * p) as *const u8) as u64)));
                let sa = _mm256_castpd_ps(_mm256_set1_pd(f64::from_bits(read8(acts[c].s.as_ptr().add(2 * p) as *const u8) as u64)));
                acc[h][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(idot), _mm256_mul_ps(dw, da), acc[h][c]);
                if KIND != Q8_0 {
                    acc[h][c] = _mm256_fmadd_ps(coef, sa, acc[h][c]);
                }
            }
        }
    }
    let mut rows = [_mm256_setzero_ps(); MR];
    for c in 0..MR {
        // hadd -> [r0 r1 r4 r5 | r2 r3 r6 r7]; swap the middle 64-bit chunks.
        let s = _mm256_hadd_ps(acc[0][c], acc[1][c]);
        rows[c] = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), 0b11_01_10_00));
    }
    rows
}

macro_rules! dispatch_mr {
    ($f:ident, $kind:expr, $mr:expr; $($arg:expr),*) => {{
        macro_rules! by_mr {
            ($k:expr) => {
                // `panels_dot` asserted 1 ≤ acts.len() ≤ MAX_MR ≤ 6.
                match $mr {
                    1 => $f::<$k, 1>($($arg),*),
                    2 => $f::<$k, 2>($($arg),*),
                    3 => $f::<$k, 3>($($arg),*),
                    4 => $f::<$k, 4>($($arg),*),
                    5 => $f::<$k, 5>($($arg),*),
                    _ => $f::<$k, 6>($($arg),*),
                }
            };
        }
        match kind_id($kind) {
            Q4_0 => by_mr!(Q4_0),
            Q4_1 => by_mr!(Q4_1),
            Q5_0 => by_mr!(Q5_0),
            Q5_1 => by_mr!(Q5_1),
            _ => by_mr!(Q8_0),
        }
    }};
}

/// AVX-512 VNNI kernel over whole panels.
///
/// # Safety
/// The CPU must have AVX-512 F/BW/DQ/VL/VNNI, AVX2, FMA and F16C, and the arguments must
/// satisfy the module's contract (1 ≤ `acts.len()` ≤ `MAX_MR`).
pub(super) unsafe fn panels_avx512(kind: X8Kind, panels: &[u8], panel_bytes: usize, acts: &[Q8Row], out: &mut [f32], stride: usize) {
    if acts.is_empty() {
        return;
    }
    dispatch_mr!(x8_avx512, kind, acts.len(); panels, panel_bytes, acts, out, stride)
}

/// AVX2 kernel over whole panels.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C, and the arguments must satisfy the module's
/// contract (1 ≤ `acts.len()` ≤ `MAX_MR`).
pub(super) unsafe fn panels_avx2(kind: X8Kind, panels: &[u8], panel_bytes: usize, acts: &[Q8Row], out: &mut [f32], stride: usize) {
    if acts.is_empty() {
        return;
    }
    dispatch_mr!(x8_avx2, kind, acts.len(); panels, panel_bytes, acts, out, stride)
}
