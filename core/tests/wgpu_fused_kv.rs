//! `write_kv` folded into the `paged_attention` right after it (wgpu, decode rows): one
//! dispatch instead of two, with the same attention output and the same K/V caches as the
//! two separate dispatches (forced by a `flush` between them), k's deferred rope included;
//! a prefill batch (q_len 2) keeps the separate write. Parity with the CPU backend is the
//! `rope_kv_attention` cases of `wgpu_ops`.

use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{AttentionMetadata, AttentionParams, Backend, RopeParams, RopeStyle};
use tessera_core::tensor::{DType, HostTensor};

type T = <WgpuBackend as Backend>::Tensor;

/// `a` and `b` equal in length and within `tol` (absolute) everywhere, NaN nowhere.
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a.iter().zip(b).map(|(x, y)| if x.is_nan() || y.is_nan() { f32::INFINITY } else { (x - y).abs() }).fold(0.0f32, f32::max);
    assert!(worst <= tol, "{what}: largest difference {worst} > {tol}");
}

fn values(seed: u32, n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97_003)) >> 9) as f32 / (1u32 << 23) as f32 - 0.5).collect()
}

fn upload(be: &WgpuBackend, v: &[f32], shape: &[usize], dtype: DType) -> T {
    match dtype {
        DType::F16 => {
            let bytes: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
            be.upload(&HostTensor { dtype: DType::F16, shape: shape.to_vec(), data: bytes.into() }).unwrap()
        }
        _ => be.upload(&HostTensor::from_f32(v, shape)).unwrap(),
    }
}

fn host(be: &WgpuBackend, t: &T) -> Vec<f32> {
    pollster::block_on(be.to_host(t)).unwrap().to_f32()
}

/// One attention step of `q_lens` rows per sequence over `seq_lens` (roped q and k);
/// `split`: flush between write_kv and paged_attention. Returns (dispatches recorded for
/// write_kv + paged_attention, or for paged_attention alone when split; output, k cache,
/// v cache).
fn step(be: &WgpuBackend, dtype: DType, seq_lens: &[usize], q_len: usize, split: bool) -> (usize, Vec<f32>, Vec<f32>, Vec<f32>) {
    let (heads, kv_heads, hd, bs) = (4usize, 2usize, 64usize, 4usize);
    let n = seq_lens.len();
    let tokens = n * q_len;
    let max_blocks = seq_lens.iter().map(|l| l.div_ceil(bs)).max().unwrap();
    let num_blocks = n * max_blocks + 1;
    let mut tables = vec![0u32; n * max_blocks];
    let (mut slots, mut positions) = (Vec::new(), Vec::new());
    for (b, &l) in seq_lens.iter().enumerate() {
        for j in 0..l.div_ceil(bs) {
            // Blocks in reverse order, so the table matters.
            tables[b * max_blocks + j] = (num_blocks - 1 - (b * max_blocks + j)) as u32;
        }
        for pos in l - q_len..l {
            slots.push(tables[b * max_blocks + pos / bs] * bs as u32 + (pos % bs) as u32);
            positions.push(pos as u32);
        }
    }
    let width = kv_heads * hd;
    let mut q = upload(be, &values(1, tokens * heads * hd), &[tokens, heads * hd], dtype);
    let mut k = upload(be, &values(2, tokens * width), &[tokens, width], dtype);
    let v = upload(be, &values(3, tokens * width), &[tokens, width], dtype);
    let mut kc = upload(be, &values(4, num_blocks * bs * width), &[num_blocks, bs, width], dtype);
    let mut vc = upload(be, &values(5, num_blocks * bs * width), &[num_blocks, bs, width], dtype);
    let freqs: Vec<f32> = (0..hd / 2).map(|i| 10000f32.powf(-((2 * i) as f32) / hd as f32)).collect();
    let inv_freq = be.upload(&HostTensor::from_f32(&freqs, &[hd / 2])).unwrap();
    let positions = be.upload_u32(&positions, &[tokens]).unwrap();
    let slots = be.upload_u32(&slots, &[tokens]).unwrap();
    let qsl: Vec<u32> = (0..=n).map(|b| (b * q_len) as u32).collect();
    let (order, decodes) = tessera_core::backend::decode_first(&qsl);
    let meta = AttentionMetadata {
        query_start_loc: be.upload_u32(&qsl, &[n + 1]).unwrap(),
        seq_lens: be.upload_u32(&seq_lens.iter().map(|&l| l as u32).collect::<Vec<_>>(), &[n]).unwrap(),
        block_tables: be.upload_u32(&tables, &[n, max_blocks]).unwrap(),
        seq_order: be.upload_u32(&order, &[n]).unwrap(),
        num_seqs: n,
        num_decode_seqs: decodes,
        max_blocks_per_seq: max_blocks,
        block_size: bs,
        max_query_len: q_len,
        max_seq_len: *seq_lens.iter().max().unwrap(),
    };
    let p = AttentionParams { num_heads: heads, num_kv_heads: kv_heads, head_dim: hd, scale: 0.125, sliding_window: None, softcap: None };
    let rp = RopeParams { head_dim: hd, rotary_dim: hd, style: RopeStyle::Neox, attention_scaling: 1.0 };
    be.flush().unwrap();
    let before = be.pending_dispatches();
    be.rope(&mut q, &positions, &inv_freq, rp).unwrap();
    be.rope(&mut k, &positions, &inv_freq, rp).unwrap();
    be.write_kv(&mut kc, &mut vc, &k, &v, &slots).unwrap();
    if split {
        be.flush().unwrap();
    }
    let o = be.paged_attention(&q, &kc, &vc, &meta, &p).unwrap();
    // Split: the attention's alone (the write went with the flush).
    let dispatches = be.pending_dispatches() - if split { 0 } else { before };
    (dispatches, host(be, &o), host(be, &kc), host(be, &vc))
}

#[test]
fn write_kv_runs_inside_decode_attention() {
    for dtype in [DType::F32, DType::F16] {
        // One attention dispatch (no key splits, which add a merge on GPUs: wgpu_reductions).
        let opts = WgpuOptions { dtype: Some(dtype), attn_splits: Some(1), ..Default::default() };
        let be = WgpuBackend::new_blocking(opts).expect("a wgpu adapter (lavapipe in CI)");
        let seq_lens = [5, 40, 17, 1];
        let (fused_n, o, kc, vc) = step(&be, dtype, &seq_lens, 1, false);
        let (split_n, o2, kc2, vc2) = step(&be, dtype, &seq_lens, 1, true);
        assert_eq!((fused_n, split_n), (1, 1), "{dtype}: dispatches fused / split");
        assert!(o.iter().all(|x| x.is_finite()));
        // Two different shaders: lavapipe gives the same bits, NVIDIA's Vulkan compiler
        // contracts the rope / dot products differently in each (H100: f16 outputs 1 ulp
        // apart in a few elements), so equal within a couple of ulps of the dtype.
        let tol = if dtype == DType::F16 { 2e-3 } else { 2e-6 };
        assert_close(&o, &o2, tol, &format!("{dtype}: attention output"));
        assert_close(&kc, &kc2, tol, &format!("{dtype}: k cache"));
        assert_close(&vc, &vc2, tol, &format!("{dtype}: v cache"));
        // The new rows did land in the caches.
        for (cache, seed) in [(&kc, 4), (&vc, 5)] {
            let init = host(&be, &upload(&be, &values(seed, cache.len()), &[cache.len()], dtype));
            let changed = cache.iter().zip(&init).filter(|(a, b)| a != b).count();
            assert!(changed > 0 && changed <= seq_lens.len() * 128, "{dtype}: {changed} cache elements changed");
        }
        // Prefill rows (q_len 2): the write stays its own dispatch.
        let (n, o, kc, vc) = step(&be, dtype, &[6, 9], 2, false);
        let (_, o2, kc2, vc2) = step(&be, dtype, &[6, 9], 2, true);
        assert_eq!(n, 2, "{dtype}: prefill dispatches");
        assert_eq!((o, kc, vc), (o2, kc2, vc2));
    }
}
