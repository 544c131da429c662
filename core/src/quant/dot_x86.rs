//! x86-64 SIMD versions of the row dot products of `dot_scalar` (same formulas), for plain
//! (not repacked) weight rows: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 against Q8 rows; Q4_K, Q5_K,
//! Q6_K against Q8K rows.
//!
//! One macro body, two instantiations that differ only in the u8×i8 → i32 dot of 32 bytes:
//! ```text
//! avx2   maddubs (u8·i8 pairs -> i16) + madd with ones (-> i32): 4 products per i32 lane
//! vnni   vpdpbusd (AVX-512 VNNI on 256-bit vectors): 4 products per i32 lane, one op
//! ```
//! maddubs saturates at ±32767: every use here keeps |u·s + u'·s'| ≤ 2·128·127 = 32512
//! (4/5/6-bit unsigned quants, or |w| for Q8_0 with the sign moved onto the activations).
//!
//! Safety contract of every `unsafe fn` here: the CPU has the function's target features
//! (callers hold an `Isa` of that level), and the slices have the lengths `dot.rs` asserts
//! (`w` = whole blocks, activations covering them), which bound every pointer read.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::dot_scalar::scale_min_k4;
use super::q8::{Q8KRow, Q8Row};

/// f16 bits at `p` (unaligned) -> f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = std::ptr::read_unaligned(p as *const u16);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_avx2(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")]
fn dot_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// 16 packed nibbles at `p` -> 32 bytes: low nibbles (elements 0..16), then high (16..32).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    let x = _mm_loadu_si128(p as *const __m128i);
    let m4 = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(x, 4), m4), _mm_and_si128(x, m4))
}

/// 0x10 in byte i where bit i of the 32 bits at `p` is set (the 5th bits of a Q5 block).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn high_bits32(p: *const u8) -> __m256i {
    let qh = std::ptr::read_unaligned(p as *const u32) as i32;
    // Byte i takes byte i/8 of qh, then tests its bit i%8.
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(qh),
        _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0),
    );
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

macro_rules! row_kernels {
    ($name:ident, $features:literal, $dot:ident) => {
        pub(super) mod $name {
            use super::*;

            /// Q4_0 / Q4_1 (`BYTES` 18 / 20): `d·(da·isum − 8·s)` or `d·da·isum + m·s`.
            #[target_feature(enable = $features)]
            pub unsafe fn q4<const BYTES: usize>(w: &[u8], a: Q8Row) -> f32 {
                let nb = w.len() / BYTES;
                let qoff = BYTES - 16;
                let (mut acc, mut corr) = (_mm256_setzero_ps(), 0.0f32);
                for b in 0..nb {
                    let blk = w.as_ptr().add(b * BYTES);
                    let wq = nibbles32(blk.add(qoff));
                    let aq = _mm256_loadu_si256(a.qs.as_ptr().add(32 * b) as *const __m256i);
                    let dw = f16_at(blk);
                    let p = _mm256_cvtepi32_ps($dot(wq, aq));
                    acc = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a.d[b]), acc);
                    corr += if BYTES == 20 { f16_at(blk.add(2)) } else { -8.0 * dw } * a.s[b];
                }
                hsum_ps(acc) + corr
            }

            /// Q5_0 / Q5_1 (`BYTES` 22 / 24): `d·(da·isum − 16·s)` or `d·da·isum + m·s`.
            #[target_feature(enable = $features)]
            pub unsafe fn q5<const BYTES: usize>(w: &[u8], a: Q8Row) -> f32 {
                let nb = w.len() / BYTES;
                let (hoff, qoff) = (BYTES - 20, BYTES - 16);
                let (mut acc, mut corr) = (_mm256_setzero_ps(), 0.0f32);
                for b in 0..nb {
                    let blk = w.as_ptr().add(b * BYTES);
                    let wq = _mm256_or_si256(nibbles32(blk.add(qoff)), high_bits32(blk.add(hoff)));
                    let aq = _mm256_loadu_si256(a.qs.as_ptr().add(32 * b) as *const __m256i);
                    let dw = f16_at(blk);
                    let p = _mm256_cvtepi32_ps($dot(wq, aq));
                    acc = _mm256_fmadd_ps(p, _mm256_set1_ps(dw * a.d[b]), acc);
                    corr += if BYTES == 24 { f16_at(blk.add(2)) } else { -16.0 * dw } * a.s[b];
                }
                hsum_ps(acc) + corr
            }

            /// Q8_0: `d·da·isum`, signs moved onto the activations so the dot is u8·i8.
            #[target_feature(enable = $features)]
            pub unsafe fn q8_0(w: &[u8], a: Q8Row) -> f32 {
                let nb = w.len() / 34;
                let mut acc = _mm256_setzero_ps();
                for b in 0..nb {
                    let blk = w.as_ptr().add(b * 34);
                    let wq = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                    let aq = _mm256_loadu_si256(a.qs.as_ptr().add(32 * b) as *const __m256i);
                    let p = $dot(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(aq, wq));
                    let s = _mm256_set1_ps(f16_at(blk) * a.d[b]);
                    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc);
                }
                hsum_ps(acc)
            }

            /// Q4_K (`HIGH` = false) and Q5_K (`HIGH` = true, the 5th bits from `qh`), one
            /// weight row against `R` activation rows (weights unpacked once; each row's
            /// arithmetic is the same for any `R`).
            #[target_feature(enable = $features)]
            pub unsafe fn q45_k<const HIGH: bool, const R: usize>(w: &[u8], a: &[Q8KRow; R]) -> [f32; R] {
                let bytes = if HIGH { 176 } else { 144 };
                let qoff = if HIGH { 48 } else { 16 };
                let nb = w.len() / bytes;
                let m4 = _mm256_set1_epi8(0x0F);
                let (mut acc, mut mins) = ([_mm256_setzero_ps(); R], [0.0f32; R]);
                for i in 0..nb {
                    let blk = w.as_ptr().add(i * bytes);
                    let scales = &w[i * bytes + 4..i * bytes + 16];
                    let hbits = _mm256_loadu_si256(blk.add(16) as *const __m256i);
                    let mut sumi = [_mm256_setzero_si256(); R];
                    let mut summ = [0i32; R];
                    for j in 0..4 {
                        let q4 = _mm256_loadu_si256(blk.add(qoff + 32 * j) as *const __m256i);
                        let mut lo = _mm256_and_si256(q4, m4);
                        let mut hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
                        if HIGH {
                            let (b0, b1) = (_mm256_set1_epi8(1 << (2 * j)), _mm256_set1_epi8((1u8 << (2 * j + 1)) as i8));
                            let sixteen = _mm256_set1_epi8(16);
                            let h0 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b0), b0);
                            let h1 = _mm256_cmpeq_epi8(_mm256_and_si256(hbits, b1), b1);
                            lo = _mm256_add_epi8(lo, _mm256_and_si256(h0, sixteen));
                            hi = _mm256_add_epi8(hi, _mm256_and_si256(h1, sixteen));
                        }
                        let (sc0, m0) = scale_min_k4(2 * j, scales);
                        let (sc1, m1) = scale_min_k4(2 * j + 1, scales);
                        for c in 0..R {
                            let aq = a[c].qs.as_ptr().add(256 * i);
                            let al = _mm256_loadu_si256(aq.add(64 * j) as *const __m256i);
                            let ah = _mm256_loadu_si256(aq.add(64 * j + 32) as *const __m256i);
                            let pl = _mm256_mullo_epi32($dot(lo, al), _mm256_set1_epi32(sc0 as i32));
                            let ph = _mm256_mullo_epi32($dot(hi, ah), _mm256_set1_epi32(sc1 as i32));
                            sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(pl, ph));
                            let bs = &a[c].bsums[16 * i + 4 * j..16 * i + 4 * j + 4];
                            summ[c] += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
                        }
                    }
                    for c in 0..R {
                        let d = f16_at(blk) * a[c].d[i];
                        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
                        mins[c] += f16_at(blk.add(2)) * a[c].d[i] * summ[c] as f32;
                    }
                }
                let mut out = [0.0f32; R];
                for c in 0..R {
                    out[c] = hsum_ps(acc[c]) - mins[c];
                }
                out
            }

            /// Q6_K: unsigned 6-bit quants dotted as u8·i8, the −32 offset through `bsums`;
            /// one weight row against `R` activation rows, as `q45_k`.
            #[target_feature(enable = $features)]
            pub unsafe fn q6_k<const R: usize>(w: &[u8], a: &[Q8KRow; R]) -> [f32; R] {
                let nb = w.len() / 210;
                let (m4, m3) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
                let (mut acc, mut corr) = ([_mm256_setzero_ps(); R], [0.0f32; R]);
                for i in 0..nb {
                    let blk = w.as_ptr().add(i * 210);
                    let sc = &w[i * 210 + 192..i * 210 + 208];
                    let mut sumi = [_mm256_setzero_si256(); R];
                    for n in 0..2 {
                        let b1 = _mm256_loadu_si256(blk.add(64 * n) as *const __m256i);
                        let b2 = _mm256_loadu_si256(blk.add(64 * n + 32) as *const __m256i);
                        let bh = _mm256_loadu_si256(blk.add(128 + 32 * n) as *const __m256i);
                        let h0 = _mm256_slli_epi16(_mm256_and_si256(bh, m3), 4);
                        let h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 2), m3), 4);
                        let h2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 4), m3), 4);
                        let h3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(bh, 6), m3), 4);
                        let q = [
                            _mm256_or_si256(_mm256_and_si256(b1, m4), h0),
                            _mm256_or_si256(_mm256_and_si256(b2, m4), h1),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b1, 4), m4), h2),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b2, 4), m4), h3),
                        ];
                        for (k, &qk) in q.iter().enumerate() {
                            let (s0, s1) = (sc[8 * n + 2 * k] as i8 as i32, sc[8 * n + 2 * k + 1] as i8 as i32);
                            let scv = _mm256_set_m128i(_mm_set1_epi32(s1), _mm_set1_epi32(s0));
                            for c in 0..R {
                                let aq = a[c].qs.as_ptr().add(256 * i);
                                let av = _mm256_loadu_si256(aq.add(128 * n + 32 * k) as *const __m256i);
                                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_mullo_epi32($dot(qk, av), scv));
                            }
                        }
                    }
                    for c in 0..R {
                        let bs = &a[c].bsums[16 * i..16 * i + 16];
                        let off: i32 = sc.iter().zip(bs).map(|(&s, &b)| s as i8 as i32 * b as i32).sum();
                        let d = f16_at(blk.add(208)) * a[c].d[i];
                        acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
                        corr[c] += d * (32 * off) as f32;
                    }
                }
                let mut out = [0.0f32; R];
                for c in 0..R {
                    out[c] = hsum_ps(acc[c]) - corr[c];
                }
                out
            }
        }
    };
}

row_kernels!(avx2, "avx2,fma,f16c", dot_avx2);
row_kernels!(vnni, "avx2,fma,f16c,avx512f,avx512bw,avx512dq,avx512vl,avx512vnni", dot_vnni);
