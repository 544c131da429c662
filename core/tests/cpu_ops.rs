//! CPU reference backend, op by op: each op against an independent naive reference (f64
//! where it matters) on seeded random inputs with odd shapes, hand-checked small cases, and
//! errors (never panics) for bad shapes, dtypes and ids.

use tessera_core::backend::cpu::{CpuBackend, CpuTensor};
use tessera_core::backend::{
    Activation, AttentionMetadata, AttentionParams, Backend, BackendError, Op, RopeParams,
    RopeStyle, Tensor,
};
use tessera_core::tensor::{DType, HostTensor};

// ---- helpers --------------------------------------------------------------------------------

/// xorshift64*: a tiny seeded PRNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, amp: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * amp).collect()
    }
}

fn up(be: &CpuBackend, data: &[f32], shape: &[usize]) -> CpuTensor {
    be.upload(&HostTensor::from_f32(data, shape))
        .expect("upload")
}

fn up_u32(be: &CpuBackend, data: &[u32], shape: &[usize]) -> CpuTensor {
    be.upload_u32(data, shape).expect("upload_u32")
}

fn host(be: &CpuBackend, t: &CpuTensor) -> Vec<f32> {
    let h = pollster::block_on(be.to_host(t)).expect("to_host");
    assert_eq!(h.dtype, DType::F32);
    assert_eq!(h.shape, t.shape());
    h.to_f32()
}

fn host_u32(be: &CpuBackend, t: &CpuTensor) -> Vec<u32> {
    pollster::block_on(be.to_host(t)).expect("to_host").to_u32()
}

/// ‖out − ref‖∞ / ‖ref‖∞.
fn rel_err(out: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(out.len(), reference.len(), "length");
    let diff = out
        .iter()
        .zip(reference)
        .map(|(&o, &r)| (o as f64 - r).abs())
        .fold(0.0, f64::max);
    let norm = reference.iter().map(|r| r.abs()).fold(0.0, f64::max);
    if norm == 0.0 {
        diff
    } else {
        diff / norm
    }
}

fn assert_close(out: &[f32], reference: &[f64], tol: f64, what: &str) {
    let e = rel_err(out, reference);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

fn is_shape_err<T: std::fmt::Debug>(r: Result<T, BackendError>, op: Op) {
    match r {
        Err(BackendError::Shape { op: got, detail }) => {
            assert_eq!(got, op, "{detail}");
            assert!(!detail.is_empty());
        }
        other => panic!("expected a Shape error for {op:?}, got {other:?}"),
    }
}

fn is_unsupported<T: std::fmt::Debug>(r: Result<T, BackendError>, op: Op, dtype: DType) {
    match r {
        Err(e @ BackendError::Unsupported { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("{op:?}"))
                    && msg.contains(dtype.hf_name())
                    && msg.contains("cpu"),
                "{msg}"
            );
        }
        other => panic!("expected Unsupported for {op:?}, got {other:?}"),
    }
}

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

fn ref_matmul(
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

// ---- paged attention ------------------------------------------------------------------------

const BS: usize = 4;

/// One sequence of a batch: its whole K/V history `[len, kv_width]` and its block table.
struct Seq {
    k: Vec<f32>,
    v: Vec<f32>,
    len: usize,
    q_len: usize,
    blocks: Vec<u32>,
}

fn rand_seq(rng: &mut Rng, kv_width: usize, len: usize, q_len: usize, blocks: &[u32]) -> Seq {
    Seq {
        k: rng.vec(len * kv_width, 1.0),
        v: rng.vec(len * kv_width, 1.0),
        len,
        q_len,
        blocks: blocks.to_vec(),
    }
}

fn params(h: usize, kvh: usize, d: usize) -> AttentionParams {
    AttentionParams {
        num_heads: h,
        num_kv_heads: kvh,
        head_dim: d,
        scale: 1.0 / (d as f32).sqrt(),
        sliding_window: None,
        softcap: None,
    }
}

fn meta(
    be: &CpuBackend,
    qsl: &[u32],
    seq_lens: &[u32],
    tables: &[u32],
    mb: usize,
) -> AttentionMetadata<CpuTensor> {
    let b = seq_lens.len();
    AttentionMetadata {
        query_start_loc: up_u32(be, qsl, &[b + 1]),
        seq_lens: up_u32(be, seq_lens, &[b]),
        block_tables: up_u32(be, tables, &[b, mb]),
        num_seqs: b,
        max_blocks_per_seq: mb,
        block_size: BS,
        max_query_len: qsl
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]) as usize)
            .max()
            .unwrap_or(0),
        max_seq_len: seq_lens.iter().copied().max().unwrap_or(0) as usize,
    }
}

/// Writes every sequence's K/V into fresh caches (through `write_kv`) and builds the metadata.
fn paged(
    be: &CpuBackend,
    seqs: &[Seq],
    num_blocks: usize,
    p: &AttentionParams,
) -> (CpuTensor, CpuTensor, AttentionMetadata<CpuTensor>) {
    let kvw = p.num_kv_heads * p.head_dim;
    let (mut kc, mut vc) = (
        be.zeros(&[num_blocks, BS, kvw]).unwrap(),
        be.zeros(&[num_blocks, BS, kvw]).unwrap(),
    );
    for s in seqs {
        let slots: Vec<u32> = (0..s.len)
            .map(|j| s.blocks[j / BS] * BS as u32 + (j % BS) as u32)
            .collect();
        let (k, v) = (up(be, &s.k, &[s.len, kvw]), up(be, &s.v, &[s.len, kvw]));
        be.write_kv(&mut kc, &mut vc, &k, &v, &up_u32(be, &slots, &[s.len]))
            .unwrap();
    }
    let mb = seqs.iter().map(|s| s.blocks.len()).max().unwrap_or(0);
    let tables: Vec<u32> = seqs
        .iter()
        .flat_map(|s| (0..mb).map(|i| s.blocks.get(i).copied().unwrap_or(0)))
        .collect();
    let mut qsl = vec![0u32];
    for s in seqs {
        qsl.push(qsl.last().unwrap() + s.q_len as u32);
    }
    let lens: Vec<u32> = seqs.iter().map(|s| s.len as u32).collect();
    (kc, vc, meta(be, &qsl, &lens, &tables, mb))
}

fn run_attn(
    be: &CpuBackend,
    q: &[f32],
    seqs: &[Seq],
    num_blocks: usize,
    p: &AttentionParams,
) -> Vec<f32> {
    let (kc, vc, m) = paged(be, seqs, num_blocks, p);
    let rows = q.len() / (p.num_heads * p.head_dim);
    let out = be
        .paged_attention(
            &up(be, q, &[rows, p.num_heads * p.head_dim]),
            &kc,
            &vc,
            &m,
            p,
        )
        .unwrap();
    host(be, &out)
}

/// Dense attention in f64 over each sequence's contiguous K/V with an explicit mask.
fn ref_attn(q: &[f32], seqs: &[Seq], p: &AttentionParams) -> Vec<f64> {
    let (h, d) = (p.num_heads, p.head_dim);
    let kvw = p.num_kv_heads * d;
    let mut out = vec![0.0f64; q.len()];
    let mut row = 0;
    for s in seqs {
        for i in 0..s.q_len {
            let pos = s.len - s.q_len + i;
            for head in 0..h {
                let kv = head / (h / p.num_kv_heads);
                let qr = &q[row * h * d + head * d..][..d];
                let visible = |j: usize| {
                    j <= pos
                        && p.sliding_window
                            .is_none_or(|w| j as i64 > pos as i64 - w as i64)
                };
                let scores: Vec<f64> = (0..s.len)
                    .map(|j| {
                        if !visible(j) {
                            return f64::NEG_INFINITY;
                        }
                        let dot: f64 = (0..d)
                            .map(|c| qr[c] as f64 * s.k[j * kvw + kv * d + c] as f64)
                            .sum();
                        let sc = dot * p.scale as f64;
                        p.softcap
                            .map_or(sc, |cap| (sc / cap as f64).tanh() * cap as f64)
                    })
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|&x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    out[row * h * d + head * d + c] = (0..s.len)
                        .map(|j| e[j] / z * s.v[j * kvw + kv * d + c] as f64)
                        .sum();
                }
            }
            row += 1;
        }
    }
    out
}

#[test]
fn paged_attention_matches_dense_reference() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(7);
    let configs = [
        (4, 2, 16, None, None, 1.0f32),
        (4, 2, 16, Some(3), Some(2.0), 3.0),
        (6, 6, 8, Some(5), None, 1.0),
        (3, 1, 5, None, Some(1.5), 2.0),
    ];
    for (h, kvh, d, window, cap, amp) in configs {
        let p = AttentionParams {
            sliding_window: window,
            softcap: cap,
            ..params(h, kvh, d)
        };
        let kvw = kvh * d;
        let seqs = vec![
            rand_seq(&mut rng, kvw, 9, 9, &[7, 1, 4]),     // prefill
            rand_seq(&mut rng, kvw, 6, 1, &[0, 5]),        // decode
            rand_seq(&mut rng, kvw, 13, 3, &[2, 8, 3, 6]), // chunk of a prefill
            rand_seq(&mut rng, kvw, 0, 0, &[]),            // empty (padding) sequence
        ];
        let rows: usize = seqs.iter().map(|s| s.q_len).sum();
        let q = rng.vec(rows * h * d, amp);
        let out = run_attn(&be, &q, &seqs, 10, &p);
        assert_close(
            &out,
            &ref_attn(&q, &seqs, &p),
            1e-5,
            &format!("attention {p:?}"),
        );
        let serial = run_attn(&CpuBackend::with_threads(1).unwrap(), &q, &seqs, 10, &p);
        assert_eq!(out, serial, "thread count must not change results");
    }
}

#[test]
fn attention_hand_checked_cases() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(8);

    // One key: the output is that key's V, exactly, for every head of the group.
    let s = rand_seq(&mut rng, 3, 1, 1, &[2]);
    let out = run_attn(&be, &rng.vec(2 * 3, 1.0), &[s], 3, &params(2, 1, 3));
    let v = &out; // both heads read kv head 0
    let seq_v = rand_seq(&mut Rng::new(8), 3, 1, 1, &[2]).v; // same draw as above
    assert_eq!((&v[0..3], &v[3..6]), (&seq_v[..], &seq_v[..]));

    // Sliding window W = 3: with q = 0 every visible key weighs the same, and V_j = 2^j
    // identifies the visible set: query p sees exactly keys p-2..=p (keys <= p-W masked).
    let p = AttentionParams {
        sliding_window: Some(3),
        ..params(1, 1, 1)
    };
    let s = Seq {
        k: vec![0.5; 6],
        v: (0..6).map(|j| (1u32 << j) as f32).collect(),
        len: 6,
        q_len: 6,
        blocks: vec![0, 1],
    };
    let out = run_attn(&be, &[0.0; 6], &[s], 2, &p);
    for (pos, &o) in out.iter().enumerate() {
        let keys = pos.saturating_sub(2)..=pos;
        let want = keys.clone().map(|j| (1u32 << j) as f32).sum::<f32>() / keys.count() as f32;
        assert!((o - want).abs() <= 1e-6 * want, "pos {pos}: {o} vs {want}");
    }

    // GQA: 4 query heads over 2 kv heads; heads 0,1 read kv head 0 (V = 1), heads 2,3 kv head 1 (V = 2).
    let s = Seq {
        k: rng.vec(5 * 4, 1.0),
        v: [[1.0f32, 1.0, 2.0, 2.0]; 5].concat(),
        len: 5,
        q_len: 2,
        blocks: vec![3, 1],
    };
    let out = run_attn(&be, &rng.vec(2 * 8, 1.0), &[s], 4, &params(4, 2, 2));
    for row in out.chunks(8) {
        for (i, &x) in row.iter().enumerate() {
            let want = if i < 4 { 1.0 } else { 2.0 };
            assert!((x - want).abs() < 1e-6, "{row:?}");
        }
    }

    // Softcap: scores 10 and 0 with cap 5 become 5·tanh(2) and 0.
    let p = AttentionParams {
        scale: 1.0,
        softcap: Some(5.0),
        ..params(1, 1, 1)
    };
    let s = Seq {
        k: vec![10.0, 0.0],
        v: vec![1.0, 0.0],
        len: 2,
        q_len: 1,
        blocks: vec![0],
    };
    let out = run_attn(&be, &[1.0], &[s], 1, &p);
    let e = (5.0 * 2f64.tanh()).exp();
    assert!((out[0] as f64 - e / (e + 1.0)).abs() < 1e-6, "{out:?}");
}

#[test]
fn block_layout_and_chunking_do_not_change_results() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(9);
    let (h, kvh, d) = (4, 2, 8);
    let p = params(h, kvh, d);
    let base = rand_seq(&mut rng, kvh * d, 11, 11, &[0, 1, 2]);
    let q = rng.vec(11 * h * d, 1.0);
    let contiguous = run_attn(&be, &q, &[base], 10, &p);

    // The same data in blocks 5, 2, 9.
    let mut rng = Rng::new(9);
    let scattered = rand_seq(&mut rng, kvh * d, 11, 11, &[5, 2, 9]);
    assert_eq!(run_attn(&be, &q, &[scattered], 10, &p), contiguous);

    // 3 cached tokens + 2 new = the last rows of full causal attention over 5 tokens.
    let mut rng = Rng::new(10);
    let full = rand_seq(&mut rng, kvh * d, 5, 5, &[4, 1]);
    let q = rng.vec(5 * h * d, 1.0);
    let all = run_attn(&be, &q, &[full], 6, &p);
    let mut rng = Rng::new(10);
    let chunk = rand_seq(&mut rng, kvh * d, 5, 2, &[4, 1]);
    let last = run_attn(&be, &q[3 * h * d..], &[chunk], 6, &p);
    assert_eq!(last, all[3 * h * d..]);

    // Rows past query_start_loc[B] (padding) come out as zeros.
    let mut rng = Rng::new(10);
    let chunk = rand_seq(&mut rng, kvh * d, 5, 2, &[4, 1]);
    let padded = [&q[3 * h * d..], &[7.0; 32][..]].concat();
    let out = run_attn(&be, &padded, &[chunk], 6, &p);
    assert_eq!(out[..2 * h * d], all[3 * h * d..]);
    assert!(out[2 * h * d..].iter().all(|&x| x == 0.0));
}

#[test]
fn attention_errors_not_panics() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(11);
    let p = params(2, 1, 4);
    let s = rand_seq(&mut rng, 4, 6, 2, &[1, 3]);
    let (kc, vc, good) = paged(&be, &[s], 4, &p);
    let q = up(&be, &rng.vec(2 * 8, 1.0), &[2, 8]);
    be.paged_attention(&q, &kc, &vc, &good, &p).unwrap();
    let op = Op::PagedAttention;

    // Unused table entries may hold anything; a used block id outside the cache is an error.
    be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[6], &[1, 3, 99], 3), &p)
        .unwrap();
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[6], &[1, 4], 2), &p),
        op,
    );
    // query_start_loc must be non-decreasing and fit q.
    is_shape_err(
        be.paged_attention(
            &q,
            &kc,
            &vc,
            &meta(&be, &[0, 2, 1], &[6, 6], &[1, 3, 1, 3], 2),
            &p,
        ),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 3], &[6], &[1, 3], 2), &p),
        op,
    );
    // More query tokens than context, or more context than the table covers.
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[1], &[1, 3], 2), &p),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &meta(&be, &[0, 2], &[9], &[1, 3], 2), &p),
        op,
    );
    // max_seq_len understated.
    let mut m = meta(&be, &[0, 2], &[6], &[1, 3], 2);
    m.max_seq_len = 5;
    is_shape_err(be.paged_attention(&q, &kc, &vc, &m, &p), op);
    // Shapes and params.
    is_shape_err(
        be.paged_attention(&up(&be, &[0.0; 12], &[2, 6]), &kc, &vc, &good, &p),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &good, &params(2, 2, 4)),
        op,
    );
    is_shape_err(
        be.paged_attention(&q, &kc, &vc, &good, &params(3, 2, 4)),
        op,
    );
    is_shape_err(
        be.paged_attention(
            &q,
            &kc,
            &vc,
            &good,
            &AttentionParams {
                sliding_window: Some(0),
                ..p
            },
        ),
        op,
    );
    is_unsupported(
        be.paged_attention(&up_u32(&be, &[0; 16], &[2, 8]), &kc, &vc, &good, &p),
        op,
        DType::U32,
    );
}
