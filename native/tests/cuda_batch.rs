//! CUDA ops at throughput batch sizes (M = 16..256 rows, above the GEMV cutover) against the
//! CPU backend: `gated_matmul` (gate/up) and `matmul_many` (q/k/v: k and v paired) with the
//! equal-shape pairs as ONE cuBLAS strided batch of 2 (the A and C strides are the distances
//! between the two weights and the two outputs, so both argument orders are run: one of them
//! has the higher address first) and as separate GEMMs (`set_paired_gemm(false)`), checked
//! against the CPU and against each other. Fresh random inputs (seed printed), outputs
//! poisoned, a sync after every launch (cuda_common::Ctx). GPU machine only (CI builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{Ctx, DTYPES};
use tessera_core::backend::{Activation, Backend};
use tessera_core::tensor::DType;

#[test]
fn paired_gate_up_gemm_matches_the_cpu() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "paired_gate_up_gemm") else { return };
        // (M, K, N, activation): SmolLM2-like, odd N/K (unaligned second output), a wide one.
        let cases = [
            (16, 576, 1536, Activation::Silu),
            (64, 576, 1536, Activation::GeluTanh),
            (256, 576, 1536, Activation::Silu),
            (37, 100, 77, Activation::Gelu),
            (256, 2048, 2816, Activation::Silu),
        ];
        let tol = if dtype == DType::F32 { 1e-4 } else { c.tolerance() };
        for (m, k, n, act) in cases {
            let (a, b) = (c.rand(&[n, k], 0.5), c.rand(&[n, k], 0.5));
            let x = c.rand(&[m, k], 1.0);
            // Both orders: (gate, up) = (a, b) and (b, a); one has the lower address as up.
            for (order, (g, u)) in [("ab", (&a, &b)), ("ba", (&b, &a))] {
                let want = c.cpu.gated_matmul(&x.1, (&g.1, None), (&u.1, None), act).unwrap();
                let mut outs = Vec::new();
                for paired in [true, false] {
                    c.gpu.set_paired_gemm(paired);
                    let got = c.gpu.gated_matmul(&x.0, (&g.0, None), (&u.0, None), act).unwrap();
                    c.check_tol("gated_matmul", &format!("{act:?} M{m} K{k} N{n} {order} paired={paired}"), &got, &want, tol);
                    outs.push(pollster::block_on(c.gpu.to_host(&got)).unwrap().to_f32());
                }
                // Same products, same accumulation type: the two paths agree closely.
                let (p, s) = (&outs[0], &outs[1]);
                let (mut d, mut nrm) = (0f64, 0f64);
                for (x, y) in p.iter().zip(s) {
                    d += (*x as f64 - *y as f64).powi(2);
                    nrm += (*y as f64).powi(2);
                }
                let rel = (d / nrm.max(1e-30)).sqrt();
                println!("PAIRED-vs-TWO {} M{m} K{k} N{n} {order} rel={rel:.2e}", dtype.hf_name());
                assert!(rel < tol, "paired vs two GEMMs differ: rel {rel:.2e} (M{m} K{k} N{n} {order} {dtype})");
            }
            // gate and up the same tensor: no pairing possible, still right.
            c.gpu.set_paired_gemm(true);
            let got = c.gpu.gated_matmul(&x.0, (&a.0, None), (&a.0, None), act).unwrap();
            let want = c.cpu.gated_matmul(&x.1, (&a.1, None), (&a.1, None), act).unwrap();
            c.check_tol("gated_matmul", &format!("{act:?} M{m} K{k} N{n} same-weight"), &got, &want, tol);
        }
        // With a bias the pair falls back to two GEMMs + bias adds.
        let (gw, uw, gb, ub) = (c.rand(&[96, 64], 0.5), c.rand(&[96, 64], 0.5), c.rand(&[96], 1.0), c.rand(&[96], 1.0));
        let x = c.rand(&[40, 64], 1.0);
        let got = c.gpu.gated_matmul(&x.0, (&gw.0, Some(&gb.0)), (&uw.0, Some(&ub.0)), Activation::Silu).unwrap();
        let want = c.cpu.gated_matmul(&x.1, (&gw.1, Some(&gb.1)), (&uw.1, Some(&ub.1)), Activation::Silu).unwrap();
        c.check_tol("gated_matmul", "Silu M40 K64 N96 bias", &got, &want, tol);
        c.finish();
    }
}

#[test]
fn paired_kv_gemm_matches_the_cpu() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "paired_kv_gemm") else { return };
        // (K, [(N, bias)]): q/k/v of SmolLM3 (k, v paired), Qwen2-like biases (no pairing), four
        // equal matrices (two pairs), an odd N.
        let sets: [(usize, &[(usize, bool)]); 4] = [
            (2048, &[(2048, false), (512, false), (512, false)]),
            (576, &[(576, true), (192, true), (192, true)]),
            (320, &[(128, false), (128, false), (128, false), (128, false)]),
            (130, &[(77, false), (77, false)]),
        ];
        for (k, mats) in sets {
            let ws: Vec<_> = mats.iter().map(|&(n, _)| (c.rand(&[n, k], 0.5), c.rand(&[n], 1.0))).collect();
            for m in [16, 64, 256] {
                let x = c.rand(&[m, k], 1.0);
                for reversed in [false, true] {
                    let mut order: Vec<usize> = (0..mats.len()).collect();
                    if reversed {
                        order.reverse();
                    }
                    let gp: Vec<_> = order.iter().map(|&j| (&ws[j].0 .0, mats[j].1.then_some(&ws[j].1 .0))).collect();
                    let cp: Vec<_> = order.iter().map(|&j| (&ws[j].0 .1, mats[j].1.then_some(&ws[j].1 .1))).collect();
                    let want = c.cpu.matmul_many(&x.1, &cp).unwrap();
                    for paired in [true, false] {
                        c.gpu.set_paired_gemm(paired);
                        let got = c.gpu.matmul_many(&x.0, &gp).unwrap();
                        assert_eq!(got.len(), mats.len());
                        for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                            let n = mats[order[i]].0;
                            c.check("matmul_many", &format!("M{m} K{k} mat{i} N{n} of {} rev={reversed} paired={paired}", mats.len()), g, r);
                        }
                    }
                }
            }
        }
        c.gpu.set_paired_gemm(true);
        c.finish();
    }
}
