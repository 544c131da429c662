//! CPU backend: RMSNorm (plain, fused add, folded into the `norm_*` projections), act_mul,
//! RoPE and write_kv vs naive references.

use super::*;
use super::ops::ref_matmul;
use tessera_core::backend::{Backend, Normed};
fn ref_rms_norm(x: &[f32], w: &[f32], eps: f64, offset: f64) -> Vec<f64> {
    x.chunks(w.len())
        .flat_map(|g| {
            let ms = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / g.len() as f64;
            let inv = 1.0 / (ms + eps).sqrt();
            g.iter()
                .zip(w)
                .map(move |(&v, &wi)| v as f64 * inv * (offset + wi as f64))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn rms_norm_and_fused_add() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(3);
    // Whole rows ([3, 130] with w [130]) and per-head groups ([5, 4*33] with w [33]).
    for (rows, width, group, offset) in [
        (3, 130, 130, 0.0f32),
        (5, 132, 33, 1.0),
        (1, 5, 5, 0.0),
        (17, 64, 64, 1.0),
    ] {
        let x = rng.vec(rows * width, 3.0);
        let w = rng.vec(group, 1.0);
        let out = be
            .rms_norm(
                &up(&be, &x, &[rows, width]),
                &up(&be, &w, &[group]),
                1e-6,
                offset,
            )
            .unwrap();
        let reference = ref_rms_norm(&x, &w, 1e-6, offset as f64);
        assert_close(
            &host(&be, &out),
            &reference,
            1e-6,
            &format!("rms_norm {rows}x{width}/{group}"),
        );
    }
    let (x, r, w) = (rng.vec(3 * 10, 1.0), rng.vec(3 * 10, 1.0), rng.vec(10, 1.0));
    let (normed, sum) = be
        .add_rms_norm(
            &up(&be, &x, &[3, 10]),
            &up(&be, &r, &[3, 10]),
            &up(&be, &w, &[10]),
            1e-5,
            0.0,
        )
        .unwrap();
    let s: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
    assert_eq!(host(&be, &sum), s);
    assert_close(
        &host(&be, &normed),
        &ref_rms_norm(&s, &w, 1e-5, 0.0),
        1e-6,
        "add_rms_norm",
    );
    is_shape_err(
        be.rms_norm(&up(&be, &x, &[3, 10]), &up(&be, &w[..7], &[7]), 1e-6, 0.0),
        Op::RmsNorm,
    );
}

/// erf by composite Simpson on 2/√π ∫₀ˣ e^(−t²) dt (independent of the backend's series).
fn erf_simpson(x: f64) -> f64 {
    let n = 2000;
    let h = x / n as f64;
    let f = |t: f64| (-t * t).exp();
    let mut s = f(0.0) + f(x);
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn act_mul_matches_reference() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(4);
    let (g, u) = (rng.vec(17 * 33, 6.0), rng.vec(17 * 33, 2.0));
    type Reference = (Activation, fn(f64) -> f64);
    let refs: [Reference; 3] = [
        (Activation::Silu, |x| x / (1.0 + (-x).exp())),
        (Activation::GeluTanh, |x| {
            0.5 * x
                * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }),
        (Activation::Gelu, |x| {
            0.5 * x * (1.0 + erf_simpson(x / 2f64.sqrt()))
        }),
    ];
    for (act, f) in refs {
        let out = be
            .act_mul(&up(&be, &g, &[17, 33]), &up(&be, &u, &[17, 33]), act)
            .unwrap();
        let reference: Vec<f64> = g
            .iter()
            .zip(&u)
            .map(|(&a, &b)| f(a as f64) * b as f64)
            .collect();
        assert_close(&host(&be, &out), &reference, 1e-6, &format!("{act:?}"));
    }
    // Extremes stay finite and exact-ish.
    let g = [-100.0f32, 100.0, 0.0, -9.0];
    for act in [Activation::Silu, Activation::GeluTanh, Activation::Gelu] {
        let out = host(
            &be,
            &be.act_mul(&up(&be, &g, &[4]), &up(&be, &[1.0; 4], &[4]), act)
                .unwrap(),
        );
        assert!(
            out[0].abs() < 1e-6 && out[1] == 100.0 && out[2] == 0.0,
            "{act:?}: {out:?}"
        );
    }
    is_shape_err(
        be.act_mul(&up(&be, &g, &[4]), &up(&be, &g, &[2, 2]), Activation::Silu),
        Op::ActMul,
    );
}

// ---- rope -----------------------------------------------------------------------------------

fn inv_freq(rotary_dim: usize, theta: f64) -> Vec<f32> {
    (0..rotary_dim / 2)
        .map(|i| (1.0 / theta.powf(2.0 * i as f64 / rotary_dim as f64)) as f32)
        .collect()
}

fn ref_rope(x: &[f32], pos: &[u32], freq: &[f32], p: &RopeParams) -> Vec<f64> {
    let width = x.len() / pos.len();
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for (t, &position) in pos.iter().enumerate() {
        for h in 0..width / p.head_dim {
            let base = t * width + h * p.head_dim;
            for (i, &f) in freq.iter().enumerate() {
                let angle = (position as f32 * f) as f64; // the spec: angle in f32
                let (c, s) = (
                    angle.cos() * p.attention_scaling as f64,
                    angle.sin() * p.attention_scaling as f64,
                );
                let (ia, ib) = match p.style {
                    RopeStyle::Neox => (base + i, base + i + p.rotary_dim / 2),
                    RopeStyle::Interleaved => (base + 2 * i, base + 2 * i + 1),
                };
                let (a, b) = (x[ia] as f64, x[ib] as f64);
                out[ia] = a * c - b * s;
                out[ib] = b * c + a * s;
            }
        }
    }
    out
}

#[test]
fn rope_matches_reference() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(5);
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        for (head_dim, rotary_dim, heads, scaling) in
            [(64, 64, 3, 1.0f32), (32, 16, 2, 1.0), (10, 6, 5, 1.3)]
        {
            let p = RopeParams {
                head_dim,
                rotary_dim,
                style,
                attention_scaling: scaling,
            };
            let t = 7;
            let x = rng.vec(t * heads * head_dim, 1.0);
            let pos = [0u32, 1, 2, 17, 100, 4095, 32000];
            let freq = inv_freq(rotary_dim, 10000.0);
            let mut xt = up(&be, &x, &[t, heads * head_dim]);
            be.rope(
                &mut xt,
                &up_u32(&be, &pos, &[t]),
                &up(&be, &freq, &[rotary_dim / 2]),
                p,
            )
            .unwrap();
            let out = host(&be, &xt);
            assert_close(
                &out,
                &ref_rope(&x, &pos, &freq, &p),
                1e-6,
                &format!("rope {style:?} {p:?}"),
            );
            // Dims past rotary_dim pass through untouched, in every head.
            for (o, i) in out.chunks(head_dim).zip(x.chunks(head_dim)) {
                assert_eq!(o[rotary_dim..], i[rotary_dim..]);
            }
        }
    }
}

#[test]
fn rope_position_zero_is_identity_and_errors() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(6);
    let x = rng.vec(2 * 4 * 8, 1.0);
    let freq = inv_freq(8, 10000.0);
    for style in [RopeStyle::Neox, RopeStyle::Interleaved] {
        let p = RopeParams {
            head_dim: 8,
            rotary_dim: 8,
            style,
            attention_scaling: 1.0,
        };
        let mut xt = up(&be, &x, &[2, 32]);
        be.rope(
            &mut xt,
            &up_u32(&be, &[0, 0], &[2]),
            &up(&be, &freq, &[4]),
            p,
        )
        .unwrap();
        assert_eq!(host(&be, &xt), x);
    }
    let p = RopeParams {
        head_dim: 8,
        rotary_dim: 8,
        style: RopeStyle::Neox,
        attention_scaling: 1.0,
    };
    let mut xt = up(&be, &x, &[2, 32]);
    is_shape_err(
        be.rope(
            &mut xt,
            &up_u32(&be, &[0, 0, 0], &[3]),
            &up(&be, &freq, &[4]),
            p,
        ),
        Op::Rope,
    );
    is_shape_err(
        be.rope(
            &mut xt,
            &up_u32(&be, &[0, 0], &[2]),
            &up(&be, &freq[..3], &[3]),
            p,
        ),
        Op::Rope,
    );
    let odd = RopeParams { head_dim: 6, ..p };
    is_shape_err(
        be.rope(
            &mut xt,
            &up_u32(&be, &[0, 0], &[2]),
            &up(&be, &freq, &[4]),
            odd,
        ),
        Op::Rope,
    );
    is_unsupported(
        be.rope(
            &mut xt,
            &up(&be, &[0.0, 0.0], &[2]),
            &up(&be, &freq, &[4]),
            p,
        ),
        Op::Rope,
        DType::F32,
    );
}

// ---- write_kv -------------------------------------------------------------------------------

#[test]
fn write_kv_scatters_and_validates() {
    let be = CpuBackend::new();
    let (nb, bs, w) = (3, 2, 5);
    let (mut kc, mut vc) = (
        be.zeros(&[nb, bs, w]).unwrap(),
        be.zeros(&[nb, bs, w]).unwrap(),
    );
    let k: Vec<f32> = (0..3 * w).map(|i| i as f32 + 1.0).collect();
    let v: Vec<f32> = k.iter().map(|x| -x).collect();
    let (kt, vt) = (up(&be, &k, &[3, w]), up(&be, &v, &[3, w]));
    be.write_kv(
        &mut kc,
        &mut vc,
        &kt,
        &vt,
        &up_u32(&be, &[5, u32::MAX, 0], &[3]),
    )
    .unwrap();
    let (kh, vh) = (host(&be, &kc), host(&be, &vc));
    assert_eq!(kh[5 * w..6 * w], k[0..w]);
    assert_eq!(kh[0..w], k[2 * w..3 * w]);
    assert_eq!(vh[5 * w..6 * w], v[0..w]);
    assert!(
        kh[w..5 * w].iter().all(|&x| x == 0.0),
        "padding token must not be written"
    );

    // An out-of-range slot is an error and writes nothing.
    let before = host(&be, &kc);
    is_shape_err(
        be.write_kv(&mut kc, &mut vc, &kt, &vt, &up_u32(&be, &[1, 6, 2], &[3])),
        Op::WriteKv,
    );
    assert_eq!(host(&be, &kc), before);
    is_shape_err(
        be.write_kv(&mut kc, &mut vc, &kt, &vt, &up_u32(&be, &[1, 2], &[2])),
        Op::WriteKv,
    );
    is_shape_err(
        be.write_kv(
            &mut kc,
            &mut vc,
            &up(&be, &k[..12], &[3, 4]),
            &vt,
            &up_u32(&be, &[1, 2, 3], &[3]),
        ),
        Op::WriteKv,
    );
}


#[test]
fn norm_matmul_ops_match_norm_then_matmul() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(21);
    let (m, k, n) = (3, 40, 11);
    let (x, r, w) = (rng.vec(m * k, 2.0), rng.vec(m * k, 2.0), rng.vec(k, 1.0));
    let (xt, rt, wt) = (up(&be, &x, &[m, k]), up(&be, &r, &[m, k]), up(&be, &w, &[k]));
    let (q, g, u) = (rng.vec(n * k, 0.5), rng.vec(n * k, 0.5), rng.vec(n * k, 0.5));
    let (qt, gt, ut) = (up(&be, &q, &[n, k]), up(&be, &g, &[n, k]), up(&be, &u, &[n, k]));
    let s: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
    for (residual, offset) in [(None, 0.0f32), (Some(&rt), 0.0), (Some(&rt), 1.0)] {
        let normed = || Normed { x: &xt, residual, weight: &wt, eps: 1e-5, offset };
        let stream = if residual.is_some() { &s } else { &x };
        let h: Vec<f64> = ref_rms_norm(stream, &w, 1e-5, offset as f64);
        let h32: Vec<f32> = h.iter().map(|&v| v as f32).collect();

        let (outs, sum) = be.norm_matmul_many(normed(), &[(&qt, None)]).unwrap();
        assert_eq!(sum.is_some(), residual.is_some(), "stream returned iff residual given");
        if let Some(sum) = &sum {
            assert_eq!(host(&be, sum), s, "x + residual");
        }
        assert_eq!(outs.len(), 1);
        assert_close(&host(&be, &outs[0]), &ref_matmul(&h32, &q, None, m, k, n), 1e-5, "norm_matmul_many");

        let (gated, sum) = be.norm_gated_matmul(normed(), (&gt, None), (&ut, None), Activation::Silu).unwrap();
        assert_eq!(sum.is_some(), residual.is_some());
        let rg = ref_matmul(&h32, &g, None, m, k, n);
        let ru = ref_matmul(&h32, &u, None, m, k, n);
        let reference: Vec<f64> = rg.iter().zip(&ru).map(|(&a, &b)| a / (1.0 + (-a).exp()) * b).collect();
        assert_close(&host(&be, &gated), &reference, 1e-5, "norm_gated_matmul");
    }
    // A norm weight that does not divide the rows is the norm's shape error.
    let short = up(&be, &w[..7], &[7]);
    let bad = Normed { x: &xt, residual: None, weight: &short, eps: 1e-5, offset: 0.0 };
    is_shape_err(be.norm_matmul_many(bad, &[(&qt, None)]), Op::RmsNorm);
}
