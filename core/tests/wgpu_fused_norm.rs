//! The RMSNorm folded into the wgpu decode matvecs (`norm_matmul_many`,
//! `norm_gated_matmul`): one dispatch at decode size where the unfused path takes two, the
//! same numbers as that path (the normalized rows rounded as `rms_norm` rounds them), and
//! the fallbacks (M >= 8, too few storage buffers) still right. Op parity against the CPU
//! backend is in `wgpu_ops` (`norm_*` cases).

use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{normalize, Activation, Backend, Normed};
use tessera_core::tensor::{DType, HostTensor};

fn backend(dtype: DType, storage_buffers: Option<u32>) -> WgpuBackend {
    WgpuBackend::new_blocking(WgpuOptions { dtype: Some(dtype), max_storage_buffers: storage_buffers, ..Default::default() })
        .expect("a wgpu adapter (lavapipe in CI)")
}

/// Deterministic values in [-amp, amp), different for each `seed`.
fn values(seed: u32, n: usize, amp: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(40_503)) >> 8;
            (h % 2001) as f32 / 1000.0 * amp - amp
        })
        .collect()
}

fn upload(be: &WgpuBackend, v: &[f32], shape: &[usize], dtype: DType) -> <WgpuBackend as Backend>::Tensor {
    let t = HostTensor::from_f32(v, shape);
    match dtype {
        DType::F16 => {
            let bytes: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
            be.upload(&HostTensor { dtype: DType::F16, shape: shape.to_vec(), data: bytes.into() }).unwrap()
        }
        _ => be.upload(&t).unwrap(),
    }
}

fn host(be: &WgpuBackend, t: &<WgpuBackend as Backend>::Tensor) -> Vec<f32> {
    pollster::block_on(be.to_host(t)).unwrap().to_f32()
}

/// Runs both fused ops and the unfused path on the same inputs: returns (dispatches of the
/// fused qkv, of the fused gated, max |fused - unfused| over all outputs).
fn fused_vs_unfused(be: &WgpuBackend, dtype: DType, m: usize, residual: bool, offset: f32) -> (usize, usize, f32) {
    let k = 576;
    let x = upload(be, &values(1, m * k, 3.0), &[m, k], dtype);
    let r = upload(be, &values(2, m * k, 3.0), &[m, k], dtype);
    // GGUF keeps norm weights f32 while activations are f16.
    let nw = upload(be, &values(3, k, 1.0), &[k], DType::F32);
    let w = |seed: u32, n: usize| upload(be, &values(seed, n * k, 0.5), &[n, k], dtype);
    let (wq, wk, wv, gate, up) = (w(4, 64), w(5, 32), w(6, 32), w(7, 96), w(8, 96));
    let normed = || Normed { x: &x, residual: residual.then_some(&r), weight: &nw, eps: 1e-5, offset };
    let ws = [(&wq, None), (&wk, None), (&wv, None)];

    let before = be.pending_dispatches();
    let (qkv, sum) = be.norm_matmul_many(normed(), &ws).unwrap();
    let qkv_dispatches = be.pending_dispatches() - before;
    let before = be.pending_dispatches();
    let (h, sum2) = be.norm_gated_matmul(normed(), (&gate, None), (&up, None), Activation::Silu).unwrap();
    let gated_dispatches = be.pending_dispatches() - before;
    assert_eq!(sum.is_some(), residual);
    assert_eq!(sum2.is_some(), residual);

    let (hn, want_sum) = normalize(be, normed()).unwrap();
    let want_qkv = be.matmul_many(&hn, &ws).unwrap();
    let want_h = be.gated_matmul(&hn, (&gate, None), (&up, None), Activation::Silu).unwrap();
    let mut worst = 0.0f32;
    let mut pairs: Vec<(&str, &_, &_)> = ["q", "k", "v"].into_iter().zip(qkv.iter().zip(&want_qkv)).map(|(n, (a, b))| (n, a, b)).collect();
    pairs.push(("gated", &h, &want_h));
    if let (Some(a), Some(b), Some(c)) = (&sum, &sum2, &want_sum) {
        pairs.push(("qkv sum", a, c));
        pairs.push(("gated sum", b, c));
    }
    // The normalized input itself, fused (staged in the matvec) vs `normalize`: only visible
    // through the products, so the worst element of each pair is printed to tell them apart.
    for (what, got, want) in pairs {
        let (g, w) = (host(be, got), host(be, want));
        assert_eq!(g.len(), w.len());
        assert!(g.iter().all(|v| v.is_finite()), "non-finite output");
        let (i, d) = g.iter().zip(&w).map(|(a, b)| (a - b).abs() / b.abs().max(1.0)).enumerate().fold((0, 0.0f32), |a, (i, d)| if d > a.1 { (i, d) } else { a });
        if d > 0.0 {
            println!("NORM {dtype} M = {m} residual {residual}: {what} worst at {i}: fused {} unfused {} (rel {d})", g[i], w[i]);
        }
        worst = worst.max(d);
    }
    (qkv_dispatches, gated_dispatches, worst)
}

#[test]
fn one_dispatch_at_decode_and_same_numbers_as_unfused() {
    for dtype in [DType::F32, DType::F16] {
        let be = backend(dtype, None);
        for (m, residual, offset) in [(1, true, 0.0), (3, false, 1.0), (7, true, 1.0)] {
            let (qkv, gated, worst) = fused_vs_unfused(&be, dtype, m, residual, offset);
            assert_eq!((qkv, gated), (1, 1), "{dtype} M = {m}: dispatches");
            // Same rounding points as the unfused path: only summation order may differ.
            let tol = if dtype == DType::F16 { 2e-3 } else { 1e-5 };
            assert!(worst < tol, "{dtype} M = {m} residual {residual}: fused differs from unfused by {worst}");
        }
        // M = 8: the norm, then the tiled matmuls (3 + 3 dispatches with act_mul).
        let (qkv, gated, worst) = fused_vs_unfused(&be, dtype, 8, true, 0.0);
        assert_eq!((qkv, gated), (4, 4), "{dtype} M = 8");
        assert_eq!(worst, 0.0);
    }
}

#[test]
fn too_few_storage_buffers_fall_back() {
    // 8 storage buffers (WebGPU's minimum): qkv = norm + 2 fused matvecs (3 weights need 10
    // bindings), gated = norm + gated matvec (6 bindings; 9 with the norm's).
    let be = backend(DType::F32, Some(8));
    let (qkv, gated, worst) = fused_vs_unfused(&be, DType::F32, 1, true, 0.0);
    assert_eq!((qkv, gated), (3, 2));
    assert_eq!(worst, 0.0);
    // 10: the gated one fuses with its norm; q/k/v (13 bindings) do not: norm + one matvec.
    let be = backend(DType::F32, Some(10));
    let (qkv, gated, worst) = fused_vs_unfused(&be, DType::F32, 1, true, 0.0);
    assert_eq!((qkv, gated), (2, 1));
    assert!(worst < 1e-5);
}
