//! Quantized kernels on their own, at every instruction-set level this CPU has (scalar
//! always): activation quantization, the row dot of every block format, and the x8 panel
//! kernels — each against dequantize-then-f64 references:
//!   * with the *quantized* activations: equal up to float rounding (1e-4 of Σ|w·a|);
//!   * with the original f32 activations: within the Q8 rounding bound Σ|w|·d/2.

mod cpu_quant_util;

use cpu_quant_util::{dequant, q8_bound, random_blocks, Rng, ALL};
use tessera_core::quant::dot::{act_format, has_simd, vec_dot, ActRow};
use tessera_core::quant::isa::{Isa, Level};
use tessera_core::quant::q8::{quantize_row_q8, ActFormat, QuantActs};
use tessera_core::quant::repack::{self, X8Kind};
use tessera_core::tensor::DType;

/// The natural-order f64 values a quantized activation row stands for.
fn act_values(acts: &QuantActs, r: usize) -> Vec<f64> {
    let k = acts.k;
    let mut out = vec![0.0f64; k];
    match acts.format.unwrap() {
        ActFormat::Q8K => {
            let row = acts.q8k_row(r);
            for (e, o) in out.iter_mut().enumerate() {
                *o = row.qs[e] as f64 * row.d[e / 256] as f64;
            }
        }
        f => {
            let row = acts.q8_row(r);
            for (e, o) in out.iter_mut().enumerate() {
                let at = if f == ActFormat::Q8Pairs {
                    let (p, j, g, t) = (e / 64, (e % 64) / 32, (e % 32) / 4, e % 4);
                    64 * p + 8 * g + 4 * j + t
                } else {
                    e
                };
                *o = row.qs[at] as f64 * row.d[e / 32] as f64;
            }
        }
    }
    out
}

fn dot64(w: &[f32], a: &[f64]) -> (f64, f64) {
    let exact: f64 = w.iter().zip(a).map(|(&x, &y)| x as f64 * y).sum();
    let scale: f64 = w.iter().zip(a).map(|(&x, &y)| (x as f64 * y).abs()).sum();
    (exact, scale)
}

fn ks(dtype: DType) -> &'static [usize] {
    if dtype.block_len() == 256 {
        &[256, 512, 1536]
    } else {
        &[32, 96, 576, 1536]
    }
}

#[test]
fn every_level_is_listed_and_scalar_is_first() {
    let levels = Isa::available();
    assert_eq!(levels[0], Isa::SCALAR);
    assert_eq!(Isa::detect(), *levels.last().unwrap());
    for l in Level::ALL {
        assert_eq!(Isa::new(l).is_some(), levels.iter().any(|i| i.level() == l));
        assert_eq!(Level::from_name(l.name()), Some(l));
    }
    println!("levels on this CPU: {levels:?}");
}

#[test]
fn activation_quantization_round_trips() {
    let mut rng = Rng::new(1);
    for isa in Isa::available() {
        for &k in &[64usize, 576] {
            let mut x = rng.vec(3 * k, 2.0);
            x[5] = 0.0;
            x[k..k + 32].fill(0.0); // an all-zero block
            let mut nat = QuantActs::default();
            let mut pairs = QuantActs::default();
            let mut kq = QuantActs::default();
            nat.quantize(isa, ActFormat::Q8, &x, 3, k);
            pairs.quantize(isa, ActFormat::Q8Pairs, &x, 3, k);
            let k256 = k / 256 * 256;
            for r in 0..3 {
                let row = nat.q8_row(r);
                let a = act_values(&nat, r);
                assert_eq!(a, act_values(&pairs, r), "{isa}: pair layout holds the same values");
                for b in 0..k / 32 {
                    let q = &row.qs[32 * b..32 * b + 32];
                    let sum: i32 = q.iter().map(|&v| v as i32).sum();
                    assert_eq!(row.s[b], row.d[b] * sum as f32, "{isa}: s = d·Σq");
                    assert!(q.iter().all(|&v| v >= -127));
                    for e in 32 * b..32 * b + 32 {
                        let err = (x[r * k + e] as f64 - a[e]).abs();
                        assert!(err <= row.d[b] as f64 * 0.5 + 1e-7, "{isa}: rounding {err} at {e}");
                    }
                }
            }
            // Zero block: zero scale and quants, no NaN.
            assert_eq!(nat.q8_row(1).d[0], 0.0);
            if k256 > 0 {
                kq.quantize(isa, ActFormat::Q8K, &x[..3 * k256], 3, k256);
                let row = kq.q8k_row(2);
                for (i, &bs) in row.bsums.iter().enumerate() {
                    assert_eq!(bs as i32, row.qs[16 * i..16 * i + 16].iter().map(|&v| v as i32).sum::<i32>());
                }
            }
            // Every level quantizes bit-identically to scalar.
            let mut reference = QuantActs::default();
            reference.quantize(Isa::SCALAR, ActFormat::Q8Pairs, &x, 3, k);
            assert_eq!((&reference.qs, &reference.d, &reference.s), (&pairs.qs, &pairs.d, &pairs.s), "{isa}");
        }
    }
}

#[test]
fn vec_dot_matches_dequantized_reference_for_every_type_and_level() {
    let mut rng = Rng::new(7);
    for dtype in ALL {
        let format = act_format(dtype).unwrap();
        for &k in ks(dtype) {
            let nb = k / dtype.block_len();
            for trial in 0..4 {
                let w = random_blocks(&mut rng, dtype, nb);
                let wf = dequant(dtype, &w);
                assert!(wf.iter().all(|v| v.is_finite()), "{dtype}: reference dequantization is finite");
                // Activations with a wide dynamic range across blocks.
                let x: Vec<f32> = (0..k).map(|i| rng.f32() * (1.0 + (i / 32 % 5) as f32)).collect();
                let mut acts = QuantActs::default();
                acts.quantize(Isa::SCALAR, format, &x, 1, k);
                let a = act_values(&acts, 0);
                let (exact, scale) = dot64(&wf, &a);
                let exact_x: f64 = wf.iter().zip(&x).map(|(&p, &q)| p as f64 * q as f64).sum();
                let bound = q8_bound(&wf, &x, dtype.block_len());
                for isa in Isa::available() {
                    let row = match format {
                        ActFormat::Q8K => ActRow::Q8K(acts.q8k_row(0)),
                        _ => ActRow::Q8(acts.q8_row(0)),
                    };
                    let got = vec_dot(isa, dtype, &w, row) as f64;
                    assert!(
                        (got - exact).abs() <= 1e-4 * scale + 1e-6,
                        "{dtype} k={k} trial {trial} {isa} (simd: {}): {got} vs {exact} (scale {scale})",
                        has_simd(isa, dtype)
                    );
                    assert!(
                        (got - exact_x).abs() <= bound,
                        "{dtype} k={k} {isa}: {got} vs f32 {exact_x}, Q8 bound {bound}"
                    );
                }
            }
        }
    }
}

#[test]
fn x8_repack_round_trips_exactly() {
    let mut rng = Rng::new(11);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0] {
        let kind = X8Kind::of(dtype).unwrap();
        let (n, k) = (16, 192);
        let w = random_blocks(&mut rng, dtype, n * k / 32);
        assert!(repack::can_repack(dtype, n, k));
        assert!(!repack::can_repack(dtype, 12, k) && !repack::can_repack(dtype, n, 96));
        let packed = repack::repack(kind, n, k, &w);
        assert_eq!(packed.len(), w.len(), "same size as ggml's blocks");
        let rb = k / 32 * dtype.block_bytes();
        let mut row = vec![0.0f32; k];
        for r in 0..n {
            repack::dequantize_row(kind, k, &packed, r, &mut row);
            let want = dequant(dtype, &w[r * rb..(r + 1) * rb]);
            assert_eq!(
                row.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{dtype} row {r}"
            );
        }
    }
}

#[test]
fn x8_panel_kernels_match_reference_at_every_level() {
    let mut rng = Rng::new(13);
    for dtype in [DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0] {
        let kind = X8Kind::of(dtype).unwrap();
        for &k in &[64usize, 128, 576, 1536] {
            let n = 16;
            let w = random_blocks(&mut rng, dtype, n * k / 32);
            let packed = repack::repack(kind, n, k, &w);
            let rb = k / 32 * dtype.block_bytes();
            let wf: Vec<Vec<f32>> = (0..n).map(|r| dequant(dtype, &w[r * rb..(r + 1) * rb])).collect();
            for mr in 1..=repack::MAX_MR {
                let x = rng.vec(mr * k, 3.0);
                let mut acts = QuantActs::default();
                acts.quantize(Isa::SCALAR, ActFormat::Q8Pairs, &x, mr, k);
                let rows: Vec<_> = (0..mr).map(|c| acts.q8_row(c)).collect();
                for isa in Isa::available() {
                    // Both panels in one call, outputs at a stride wider than the row.
                    let stride = n + 3;
                    let mut out = vec![f32::NAN; mr * stride];
                    repack::panels_dot(isa, kind, &packed, &rows, &mut out, stride);
                    for c in 0..mr {
                        let a = act_values(&acts, c);
                        assert!(out[c * stride + n..(c + 1) * stride].iter().all(|v| v.is_nan()), "no writes past the row");
                        for j in 0..n {
                            let (exact, scale) = dot64(&wf[j], &a);
                            let got = out[c * stride + j] as f64;
                            assert!(
                                (got - exact).abs() <= 1e-4 * scale + 1e-6,
                                "{dtype} k={k} mr={mr} {isa} row {j} act {c}: {got} vs {exact}"
                            );
                            let exact_x: f64 = wf[j].iter().zip(&x[c * k..]).map(|(&u, &v)| u as f64 * v as f64).sum();
                            assert!((got - exact_x).abs() <= q8_bound(&wf[j], &x[c * k..(c + 1) * k], 32));
                        }
                    }
                }
            }
        }
    }
}

#[test]
#[should_panic]
fn quantize_row_rejects_partial_blocks() {
    let x = vec![0.5f32; 48];
    let (mut qs, mut d, mut s) = (vec![0i8; 48], vec![0.0f32; 1], vec![0.0f32; 1]);
    quantize_row_q8(Isa::SCALAR, &x, &mut qs, &mut d, &mut s, false);
}

#[test]
fn vec_dot_rows_equals_one_row_at_a_time_bitwise() {
    use tessera_core::quant::dot::vec_dot_rows;
    let mut rng = Rng::new(17);
    for dtype in ALL {
        let format = act_format(dtype).unwrap();
        let k = 512;
        let w = random_blocks(&mut rng, dtype, k / dtype.block_len());
        let x = rng.vec(5 * k, 2.0);
        let mut acts = QuantActs::default();
        acts.quantize(Isa::SCALAR, format, &x, 5, k);
        let rows: Vec<ActRow> = (0..5)
            .map(|r| match format {
                ActFormat::Q8K => ActRow::Q8K(acts.q8k_row(r)),
                _ => ActRow::Q8(acts.q8_row(r)),
            })
            .collect();
        for isa in Isa::available() {
            let mut out = vec![0.0f32; 5];
            vec_dot_rows(isa, dtype, &w, &rows, &mut out);
            for (r, &o) in out.iter().enumerate() {
                assert_eq!(o.to_bits(), vec_dot(isa, dtype, &w, rows[r]).to_bits(), "{dtype} {isa} row {r}");
            }
        }
    }
}
