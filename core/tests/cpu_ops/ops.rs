//! CPU backend: uploads, matmul (plain, many, gated), embedding, add, gather, softcap and
//! argmax vs naive references.

use super::*;
use tessera_core::backend::Backend;
// ---- basics ---------------------------------------------------------------------------------

#[test]
fn supports_and_uploads() {
    let be = CpuBackend::new();
    assert_eq!(be.name(), "cpu");
    assert_eq!(be.activation_dtype(), DType::F32);
    assert!(be.supports(Op::Matmul, DType::F32) && be.supports(Op::PagedAttention, DType::F32));
    assert!(!be.supports(Op::Matmul, DType::F16) && !be.supports(Op::RmsNorm, DType::BF16));
    assert!(be.supports(Op::Upload, DType::BF16) && be.supports(Op::Upload, DType::U32));
    assert!(be.supports(Op::ToHost, DType::U32) && !be.supports(Op::ToHost, DType::F16));

    // f16 / bf16 widen exactly to f32.
    let vals = [0.5f32, -1.75, 3.0e-5, 65504.0, 0.0];
    for dtype in [DType::F16, DType::BF16] {
        let data: Vec<u8> = match dtype {
            DType::F16 => vals
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            _ => vals
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let t = be
            .upload(&HostTensor {
                dtype,
                shape: vec![5],
                data: data.clone().into(),
            })
            .unwrap();
        assert_eq!(t.dtype(), DType::F32);
        let want: Vec<f32> = match dtype {
            DType::F16 => data
                .chunks(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => data
                .chunks(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        };
        assert_eq!(host(&be, &t), want);
    }
    let ids = up_u32(&be, &[1, 2, 3, u32::MAX], &[2, 2]);
    assert_eq!((ids.dtype(), ids.shape()), (DType::U32, &[2usize, 2][..]));
    assert_eq!(host_u32(&be, &ids), vec![1, 2, 3, u32::MAX]);
    let z = be.zeros(&[3, 0, 2]).unwrap();
    assert_eq!(z.numel(), 0);

    // Bad sizes are errors.
    is_shape_err(be.upload_u32(&[1, 2, 3], &[2, 2]), Op::Upload);
    let bad = HostTensor {
        dtype: DType::F32,
        shape: vec![3],
        data: vec![0u8; 8].into(),
    };
    is_shape_err(be.upload(&bad), Op::Upload);
}

#[test]
fn thread_counts() {
    assert_eq!(CpuBackend::with_threads(1).unwrap().threads(), 1);
    assert_eq!(CpuBackend::with_threads(3).unwrap().threads(), 3);
    assert!(CpuBackend::with_threads(0).unwrap().threads() >= 1);
}

// ---- matmul ---------------------------------------------------------------------------------

pub(crate) fn ref_matmul(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<f64> {
    let mut out = vec![0.0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k)
                .map(|l| x[i * k + l] as f64 * w[j * k + l] as f64)
                .sum();
            out[i * n + j] = dot + bias.map_or(0.0, |b| b[j] as f64);
        }
    }
    out
}

#[test]
fn matmul_matches_f64_reference() {
    let mut rng = Rng::new(1);
    let backends = [
        CpuBackend::new(),
        CpuBackend::with_threads(1).unwrap(),
        CpuBackend::with_threads(3).unwrap(),
    ];
    let mut shapes: Vec<(usize, usize, usize)> = vec![(70, 300, 257), (128, 64, 96)];
    for m in [1, 3, 17] {
        for k in [5, 64, 130] {
            for n in [7, 33] {
                shapes.push((m, k, n));
            }
        }
    }
    for (m, k, n) in shapes {
        let x = rng.vec(m * k, 1.0);
        let w = rng.vec(n * k, 0.5);
        let b = rng.vec(n, 1.0);
        for with_bias in [false, true] {
            let bias = with_bias.then_some(&b[..]);
            let reference = ref_matmul(&x, &w, bias, m, k, n);
            for be in &backends {
                let bt = bias.map(|b| up(be, b, &[n]));
                let out = be
                    .matmul(&up(be, &x, &[m, k]), &up(be, &w, &[n, k]), bt.as_ref())
                    .unwrap();
                assert_eq!(out.shape(), &[m, n]);
                assert_close(
                    &host(be, &out),
                    &reference,
                    2e-6,
                    &format!("matmul {m}x{k}x{n} bias={with_bias}"),
                );
            }
        }
    }
}

/// `matmul_many` and `gated_matmul` (the trait's composite defaults, which GPU backends
/// override with fused kernels) against the f64 reference and the ops they compose.
#[test]
fn matmul_many_and_gated_matmul_match_composition() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(9);
    for (m, k) in [(1, 64), (3, 72), (9, 100)] {
        let x = rng.vec(m * k, 1.0);
        let xt = up(&be, &x, &[m, k]);
        // q/k/v-like: different N, bias on some.
        let ns = [33usize, 7, 7];
        let ws: Vec<Vec<f32>> = ns.iter().map(|&n| rng.vec(n * k, 0.5)).collect();
        let bs: Vec<Option<Vec<f32>>> = ns
            .iter()
            .enumerate()
            .map(|(i, &n)| (i != 1).then(|| rng.vec(n, 1.0)))
            .collect();
        let wt: Vec<CpuTensor> = ws
            .iter()
            .zip(&ns)
            .map(|(w, &n)| up(&be, w, &[n, k]))
            .collect();
        let bt: Vec<Option<CpuTensor>> = bs
            .iter()
            .zip(&ns)
            .map(|(b, &n)| b.as_ref().map(|b| up(&be, b, &[n])))
            .collect();
        let parts: Vec<(&CpuTensor, Option<&CpuTensor>)> =
            wt.iter().zip(&bt).map(|(w, b)| (w, b.as_ref())).collect();
        let outs = be.matmul_many(&xt, &parts).unwrap();
        assert_eq!(outs.len(), 3);
        for (i, out) in outs.iter().enumerate() {
            assert_eq!(out.shape(), &[m, ns[i]]);
            let reference = ref_matmul(&x, &ws[i], bs[i].as_deref(), m, k, ns[i]);
            assert_close(&host(&be, out), &reference, 2e-6, &format!("matmul_many {i}"));
            let single = be.matmul(&xt, &wt[i], bt[i].as_ref()).unwrap();
            assert_eq!(host(&be, out), host(&be, &single), "matmul_many {i} vs matmul");
        }
        assert!(be.matmul_many(&xt, &[]).unwrap().is_empty());

        // Gated: act(x·gateᵀ + bg) * (x·upᵀ + bu).
        let n = 19;
        let (g, u) = (rng.vec(n * k, 0.5), rng.vec(n * k, 0.5));
        let (gb, ub) = (rng.vec(n, 1.0), rng.vec(n, 1.0));
        let (gt, ut) = (up(&be, &g, &[n, k]), up(&be, &u, &[n, k]));
        let (gbt, ubt) = (up(&be, &gb, &[n]), up(&be, &ub, &[n]));
        for act in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
            for with_bias in [false, true] {
                let (bg, bu) = if with_bias {
                    (Some(&gbt), Some(&ubt))
                } else {
                    (None, None)
                };
                let out = be.gated_matmul(&xt, (&gt, bg), (&ut, bu), act).unwrap();
                assert_eq!(out.shape(), &[m, n]);
                let composed = be
                    .act_mul(
                        &be.matmul(&xt, &gt, bg).unwrap(),
                        &be.matmul(&xt, &ut, bu).unwrap(),
                        act,
                    )
                    .unwrap();
                assert_eq!(host(&be, &out), host(&be, &composed), "gated {act:?}");
                if act == Activation::Silu {
                    let rg = ref_matmul(&x, &g, with_bias.then_some(&gb[..]), m, k, n);
                    let ru = ref_matmul(&x, &u, with_bias.then_some(&ub[..]), m, k, n);
                    let reference: Vec<f64> = rg
                        .iter()
                        .zip(&ru)
                        .map(|(&a, &b)| a / (1.0 + (-a).exp()) * b)
                        .collect();
                    assert_close(&host(&be, &out), &reference, 1e-5, "gated silu vs f64");
                }
            }
        }
        // Errors of the composed ops surface: mismatched K, gate/up of different N.
        let bad = up(&be, &rng.vec(n * (k + 1), 1.0), &[n, k + 1]);
        is_shape_err(be.matmul_many(&xt, &[(&wt[0], None), (&bad, None)]), Op::Matmul);
        let other = up(&be, &rng.vec((n + 1) * k, 1.0), &[n + 1, k]);
        is_shape_err(
            be.gated_matmul(&xt, (&gt, None), (&other, None), Activation::Silu),
            Op::ActMul,
        );
    }
}

#[test]
fn matmul_errors() {
    let be = CpuBackend::new();
    let x = up(&be, &[0.0; 6], &[2, 3]);
    is_shape_err(
        be.matmul(&x, &up(&be, &[0.0; 8], &[2, 4]), None),
        Op::Matmul,
    );
    is_shape_err(
        be.matmul(
            &x,
            &up(&be, &[0.0; 6], &[2, 3]),
            Some(&up(&be, &[0.0; 3], &[3])),
        ),
        Op::Matmul,
    );
    is_shape_err(be.matmul(&up(&be, &[0.0; 6], &[6]), &x, None), Op::Matmul);
    is_unsupported(
        be.matmul(&up_u32(&be, &[0; 6], &[2, 3]), &x, None),
        Op::Matmul,
        DType::U32,
    );
    // Empty batch.
    let out = be.matmul(&up(&be, &[], &[0, 3]), &x, None).unwrap();
    assert_eq!(out.shape(), &[0, 2]);
}

// ---- elementwise and row ops ----------------------------------------------------------------

#[test]
fn embedding_add_gather_softcap_argmax() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(2);
    let (vocab, hidden) = (11, 7);
    let table = rng.vec(vocab * hidden, 1.0);
    let ids = [3u32, 0, 10, 3];
    let out = be
        .embedding(
            &up(&be, &table, &[vocab, hidden]),
            &up_u32(&be, &ids, &[4]),
            2.5,
        )
        .unwrap();
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| {
            table[i as usize * hidden..][..hidden]
                .iter()
                .map(|v| v * 2.5)
        })
        .collect();
    assert_eq!(host(&be, &out), want);
    is_shape_err(
        be.embedding(
            &up(&be, &table, &[vocab, hidden]),
            &up_u32(&be, &[11], &[1]),
            1.0,
        ),
        Op::Embedding,
    );
    is_unsupported(
        be.embedding(
            &up(&be, &table, &[vocab, hidden]),
            &up(&be, &[1.0], &[1]),
            1.0,
        ),
        Op::Embedding,
        DType::F32,
    );

    let (a, b) = (rng.vec(15, 1.0), rng.vec(15, 1.0));
    let sum = be
        .add(&up(&be, &a, &[3, 5]), &up(&be, &b, &[3, 5]))
        .unwrap();
    assert_eq!(
        host(&be, &sum),
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
    );
    is_shape_err(
        be.add(&up(&be, &a, &[3, 5]), &up(&be, &b, &[5, 3])),
        Op::Add,
    );

    let x = rng.vec(4 * 6, 1.0);
    let g = be
        .gather_rows(&up(&be, &x, &[4, 6]), &up_u32(&be, &[3, 1, 3], &[3]))
        .unwrap();
    assert_eq!(g.shape(), &[3, 6]);
    assert_eq!(host(&be, &g), [&x[18..24], &x[6..12], &x[18..24]].concat());
    is_shape_err(
        be.gather_rows(&up(&be, &x, &[4, 6]), &up_u32(&be, &[4], &[1])),
        Op::GatherRows,
    );

    let logits = rng.vec(3 * 50, 80.0);
    let capped = host(&be, &be.softcap(&up(&be, &logits, &[3, 50]), 30.0).unwrap());
    let reference: Vec<f64> = logits
        .iter()
        .map(|&v| (v as f64 / 30.0).tanh() * 30.0)
        .collect();
    assert_close(&capped, &reference, 1e-6, "softcap");
    assert!(capped.iter().all(|v| v.abs() < 30.0 + 1e-4));
    is_shape_err(be.softcap(&up(&be, &logits, &[3, 50]), 0.0), Op::Softcap);

    let rows = [
        1.0f32,
        5.0,
        5.0,
        -2.0,
        /**/ -1.0,
        -1.0,
        -1.0,
        -1.0,
        /**/ 0.0,
        2.0,
        f32::NAN,
        9.0,
    ];
    let am = be.argmax(&up(&be, &rows, &[3, 4])).unwrap();
    assert_eq!(am.dtype(), DType::U32);
    assert_eq!(host_u32(&be, &am), vec![1, 0, 2]);
    is_shape_err(be.argmax(&up(&be, &[], &[2, 0])), Op::Argmax);
}
