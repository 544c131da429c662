//! The CUDA backend's fused decode paths against the CPU backend (the specification) and
//! against its own unfused paths, on fresh random inputs (seed printed; `TESSERA_SEED`
//! replays), outputs poisoned before every kernel:
//! - `norm_matmul_many` / `norm_gated_matmul` with the RMSNorm folded into the GEMV kernels
//!   (`TESSERA_CUDA_FUSE_NORM`): with and without a residual, Gemma's offset 1, f32/f16/bf16,
//!   M 1..8 and M above the cutover (the unfused body), K on the warp (<= 1024) and block
//!   paths of the norm and K that the fused kernels refuse (not whole vectors, >= 8192);
//! - the deferred rope (`TESSERA_CUDA_FUSE_ROPE`): rope -> write_kv -> decode attention
//!   (k rotated into the cache, q as the kernel loads it), a mixed decode + prefill step
//!   (q settled first), rope then plain reads (to_host, matmul, a second rope), NoPE.
//!
//! Each case prints a `PARITY` line; against the unfused GPU path the tolerance is 1e-6
//! (the fused kernels round exactly where the unfused ones store; measured: identical, rel
//! 0 in f32 and f16), against the CPU the usual 1e-5 / 1e-2. Runs on the GPU machine
//! (scripts/gpu-suite.sh); without a GPU it fails (CI only builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{Ctx, DTYPES};
use tessera::cuda::CudaTensor;
use tessera_core::backend::cpu::CpuTensor;
use tessera_core::backend::{decode_first, Activation, AttentionMetadata, AttentionParams, Backend, Normed, RopeParams, RopeStyle};
use tessera_core::tensor::HostTensor;

/// A GPU result as a CPU tensor (to compare two GPU paths with `Ctx::check_tol`).
fn as_cpu(c: &Ctx, t: &CudaTensor) -> CpuTensor {
    let h = pollster::block_on(c.gpu.to_host(t)).expect("gpu read-back");
    c.cpu.upload(&HostTensor::from_f32(&h.to_f32(), &h.shape)).expect("cpu upload")
}

#[test]
fn norm_matmul_fused() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "norm_matmul_fused") else { return };
        // Every M <= 8 on the GEMV kernels; 12 takes cuBLAS (the unfused body).
        c.gpu.set_gemv_max_m(Some(8));
        // (K, rows M): K <= 1024 normalizes with a warp per row, larger with the block; 1001
        // is not whole 16-byte vectors and 8192 too large: both take the unfused body.
        let cases: [(usize, &[usize]); 5] = [(64, &[1, 3, 8]), (1024, &[2, 5]), (2048, &[1, 2, 3, 4, 5, 6, 7, 8, 12]), (1001, &[1, 2]), (8192, &[1])];
        for (k, ms) in cases {
            let norm_w = c.rand(&[k], 1.0);
            let mats: Vec<usize> = vec![96, 32, 32];
            let ws: Vec<_> = mats.iter().map(|&n| c.rand(&[n, k], 0.5)).collect();
            let bias = c.rand(&[mats[0]], 1.0);
            let gate = c.rand(&[80, k], 0.5);
            let up = c.rand(&[80, k], 0.5);
            for &m in ms {
                let x = c.rand(&[m, k], 2.0);
                let res = c.rand(&[m, k], 2.0);
                for (residual, offset) in [(true, 0.0f32), (false, 0.0), (true, 1.0)] {
                    let label = format!("M{m} K{k} residual={residual} offset={offset}");
                    let gn = || Normed { x: &x.0, residual: residual.then_some(&res.0), weight: &norm_w.0, eps: 1e-6, offset };
                    let cn = Normed { x: &x.1, residual: residual.then_some(&res.1), weight: &norm_w.1, eps: 1e-6, offset };
                    let gw: Vec<_> = ws.iter().enumerate().map(|(j, w)| (&w.0, (j == 0).then_some(&bias.0))).collect();
                    let cw: Vec<_> = ws.iter().enumerate().map(|(j, w)| (&w.1, (j == 0).then_some(&bias.1))).collect();

                    c.gpu.set_fuse_norm(true);
                    let (g, gs) = c.gpu.norm_matmul_many(gn(), &gw).unwrap();
                    let (gg, ggs) = c.gpu.norm_gated_matmul(gn(), (&gate.0, None), (&up.0, None), Activation::Silu).unwrap();
                    let (g1, _) = c.gpu.norm_matmul_many(gn(), &gw[1..2]).unwrap();
                    c.gpu.set_fuse_norm(false);
                    let (u, us) = c.gpu.norm_matmul_many(gn(), &gw).unwrap();
                    let (ug, _) = c.gpu.norm_gated_matmul(gn(), (&gate.0, None), (&up.0, None), Activation::Silu).unwrap();
                    c.gpu.set_fuse_norm(true);
                    let (r, rs) = c.cpu.norm_matmul_many(Normed { ..cn }, &cw).unwrap();
                    let (rg, rgs) = c.cpu.norm_gated_matmul(Normed { ..cn }, (&gate.1, None), (&up.1, None), Activation::Silu).unwrap();
                    let (r1, _) = c.cpu.norm_matmul_many(Normed { ..cn }, &cw[1..2]).unwrap();

                    assert_eq!(g.len(), 3);
                    for j in 0..3 {
                        c.check("norm_matmul_many", &format!("{label} mat{j}"), &g[j], &r[j]);
                        let uj = as_cpu(&c, &u[j]);
                        c.check_tol("norm_matmul_many.vs_unfused", &format!("{label} mat{j}"), &g[j], &uj, 1e-6);
                    }
                    c.check("norm_matmul_many.single", &label, &g1[0], &r1[0]);
                    c.check("norm_gated_matmul", &label, &gg, &rg);
                    let ugc = as_cpu(&c, &ug);
                    c.check_tol("norm_gated_matmul.vs_unfused", &label, &gg, &ugc, 1e-6);
                    match (gs, ggs, us, rs, rgs) {
                        (Some(gs), Some(ggs), Some(us), Some(rs), Some(rgs)) => {
                            // The CPU keeps x + residual in f32; the GPU rounds it to the dtype.
                            c.check("norm_matmul_many.sum", &label, &gs, &rs);
                            c.check("norm_gated_matmul.sum", &label, &ggs, &rgs);
                            let usc = as_cpu(&c, &us);
                            c.check_tol("norm_matmul_many.sum_vs_unfused", &label, &gs, &usc, 1e-12);
                        }
                        (None, None, None, None, None) => assert!(!residual, "{label}: no residual stream returned"),
                        _ => panic!("{label}: the residual stream is returned by some paths only"),
                    }
                }
            }
        }
        // Gated activations on the fused kernel.
        let k = 2048;
        let norm_w = c.rand(&[k], 1.0);
        let gate = c.rand(&[300, k], 0.5);
        let up = c.rand(&[300, k], 0.5);
        let gb = c.rand(&[300], 1.0);
        for act in [Activation::GeluTanh, Activation::Gelu] {
            let x = c.rand(&[2, k], 2.0);
            let res = c.rand(&[2, k], 2.0);
            let gn = Normed { x: &x.0, residual: Some(&res.0), weight: &norm_w.0, eps: 1e-5, offset: 1.0 };
            let cn = Normed { x: &x.1, residual: Some(&res.1), weight: &norm_w.1, eps: 1e-5, offset: 1.0 };
            let (g, _) = c.gpu.norm_gated_matmul(gn, (&gate.0, Some(&gb.0)), (&up.0, None), act).unwrap();
            let (r, _) = c.cpu.norm_gated_matmul(cn, (&gate.1, Some(&gb.1)), (&up.1, None), act).unwrap();
            c.check("norm_gated_matmul", &format!("M2 K{k} {act:?} gate bias"), &g, &r);
        }
        c.finish();
    }
}

/// One step of a layer's attention on both backends: `seqs` = (q_len, context after the
/// step); q/k rotated (or not: NoPE), k/v written into shuffled pages, paged attention.
struct RopeCase {
    seqs: Vec<(usize, usize)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// `None`: NoPE (no rotation).
    rope: Option<(usize, RopeStyle, bool)>,
}

/// Attention metadata of `[query_start_loc, seq_lens, block_tables, seq_order]` and
/// (num_seqs, num_decode_seqs, max_blocks_per_seq, block_size, max_query_len, max_seq_len).
fn metadata<T>([query_start_loc, seq_lens, block_tables, seq_order]: [T; 4], d: (usize, usize, usize, usize, usize, usize)) -> AttentionMetadata<T> {
    let (num_seqs, num_decode_seqs, max_blocks_per_seq, block_size, max_query_len, max_seq_len) = d;
    AttentionMetadata { query_start_loc, seq_lens, block_tables, seq_order, num_seqs, num_decode_seqs, max_blocks_per_seq, block_size, max_query_len, max_seq_len }
}

fn rope_attention_case(c: &mut Ctx, a: &RopeCase, fuse: bool) -> [(String, CudaTensor, CpuTensor); 3] {
    c.gpu.set_fuse_rope(fuse);
    let bs = 16;
    let d = a.head_dim;
    let need: Vec<usize> = a.seqs.iter().map(|&(_, s)| s.div_ceil(bs)).collect();
    let max_blocks = need.iter().copied().max().unwrap_or(1);
    let num_blocks = need.iter().sum::<usize>() + 2;
    let mut ids: Vec<u32> = (1..num_blocks as u32).collect();
    c.rng.shuffle(&mut ids);
    let mut tables = vec![0u32; a.seqs.len() * max_blocks];
    let (mut qsl, mut positions, mut slots) = (vec![0u32], Vec::new(), Vec::new());
    let mut next = 0;
    for (b, &(q_len, len)) in a.seqs.iter().enumerate() {
        for i in 0..need[b] {
            tables[b * max_blocks + i] = ids[next];
            next += 1;
        }
        for p in len - q_len..len {
            positions.push(p as u32);
            slots.push(tables[b * max_blocks + p / bs] * bs as u32 + (p % bs) as u32);
        }
        qsl.push(qsl[b] + q_len as u32);
    }
    let tokens = positions.len();
    let n = a.seqs.len();
    let kvw = a.kv_heads * d;
    let q = c.rand(&[tokens, a.heads * d], 1.0);
    let k = c.rand(&[tokens, kvw], 1.0);
    let v = c.rand(&[tokens, kvw], 1.0);
    let (mut gkc, mut ckc) = c.rand(&[num_blocks, bs, kvw], 1.0);
    let (mut gvc, mut cvc) = c.rand(&[num_blocks, bs, kvw], 1.0);
    let (gpos, cpos) = c.pair_u32(&positions, &[tokens]);
    let (gslots, cslots) = c.pair_u32(&slots, &[tokens]);
    let (order, num_decode_seqs) = decode_first(&qsl);
    let meta = |c: &mut Ctx| {
        let (gq, cq) = c.pair_u32(&qsl, &[n + 1]);
        let lens: Vec<u32> = a.seqs.iter().map(|s| s.1 as u32).collect();
        let (gs, cs) = c.pair_u32(&lens, &[n]);
        let (gt, ct) = c.pair_u32(&tables, &[n, max_blocks]);
        let (go, co) = c.pair_u32(&order, &[n]);
        let max_query_len = a.seqs.iter().map(|s| s.0).max().unwrap_or(0);
        let max_seq_len = a.seqs.iter().map(|s| s.1).max().unwrap_or(0);
        let dims = (n, num_decode_seqs, max_blocks, bs, max_query_len, max_seq_len);
        (metadata([gq, gs, gt, go], dims), metadata([cq, cs, ct, co], dims))
    };
    let (gmeta, cmeta) = meta(c);
    let (mut gq, mut cq) = (q.0.clone(), q.1.clone());
    let (mut gk, mut ck) = (k.0.clone(), k.1.clone());
    if let Some((rd, style, per_token)) = a.rope {
        let half = rd / 2;
        let freq_shape = if per_token { vec![tokens, half] } else { vec![half] };
        let freqs: Vec<f32> = (0..freq_shape.iter().product::<usize>())
            .map(|i| 10000f32.powf(-2.0 * (i % half) as f32 / rd as f32) * (1.0 + 0.05 * c.rng.unit()))
            .collect();
        let (gf, cf) = c.pair_exact(&freqs, &freq_shape);
        let p = RopeParams { head_dim: d, rotary_dim: rd, style, attention_scaling: 1.0 };
        c.gpu.rope(&mut gq, &gpos, &gf, p).unwrap();
        c.gpu.rope(&mut gk, &gpos, &gf, p).unwrap();
        c.cpu.rope(&mut cq, &cpos, &cf, p).unwrap();
        c.cpu.rope(&mut ck, &cpos, &cf, p).unwrap();
    }
    c.gpu.write_kv(&mut gkc, &mut gvc, &gk, &v.0, &gslots).unwrap();
    c.cpu.write_kv(&mut ckc, &mut cvc, &ck, &v.1, &cslots).unwrap();
    let p = AttentionParams { num_heads: a.heads, num_kv_heads: a.kv_heads, head_dim: d, scale: 1.0 / (d as f32).sqrt(), sliding_window: None, softcap: None };
    let go = c.gpu.paged_attention(&gq, &gkc, &gvc, &gmeta, &p).unwrap();
    let co = c.cpu.paged_attention(&cq, &ckc, &cvc, &cmeta, &p).unwrap();
    let label = format!("seqs{:?} H{} KV{} D{d} rope{:?} fuse={fuse}", a.seqs, a.heads, a.kv_heads, a.rope);
    // Read after attention: q itself (a plain reader settles the pending rotation).
    [("attention", go, co), ("k_cache", gkc, ckc), ("q_read_after", gq, cq)].map(|(w, g, r)| (format!("{w} {label}"), g, r))
}

#[test]
fn rope_deferred() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "rope_deferred") else { return };
        let cases = [
            // SmolLM3-3B's attention: 16/4 heads, head_dim 128, neox, decode rows only.
            RopeCase { seqs: vec![(1, 37), (1, 1), (1, 300)], heads: 16, kv_heads: 4, head_dim: 128, rope: Some((128, RopeStyle::Neox, false)) },
            // Partial rotary, interleaved, per-token tables, head dims 64 and 256.
            RopeCase { seqs: vec![(1, 20), (1, 65)], heads: 8, kv_heads: 2, head_dim: 64, rope: Some((32, RopeStyle::Interleaved, false)) },
            RopeCase { seqs: vec![(1, 9), (1, 130)], heads: 4, kv_heads: 4, head_dim: 256, rope: Some((256, RopeStyle::Neox, true)) },
            RopeCase { seqs: vec![(1, 50)], heads: 6, kv_heads: 2, head_dim: 128, rope: Some((64, RopeStyle::Neox, false)) },
            // Mixed step: decode rows and a prefill chunk (q settled before the kernels).
            RopeCase { seqs: vec![(1, 40), (17, 17), (1, 3), (5, 70)], heads: 16, kv_heads: 4, head_dim: 128, rope: Some((128, RopeStyle::Neox, false)) },
            // A head dim without a decode kernel (general kernel, settled).
            RopeCase { seqs: vec![(1, 33)], heads: 4, kv_heads: 2, head_dim: 96, rope: Some((96, RopeStyle::Neox, false)) },
            // NoPE.
            RopeCase { seqs: vec![(1, 37), (1, 5)], heads: 16, kv_heads: 4, head_dim: 128, rope: None },
        ];
        for a in &cases {
            let fused = rope_attention_case(&mut c, a, true);
            let plain = rope_attention_case(&mut c, a, false);
            for (label, g, r) in &fused {
                c.check("rope_deferred", label, g, r);
            }
            for (label, g, r) in &plain {
                c.check("rope_deferred", label, g, r);
            }
        }
        // Plain readers of a rotated tensor: matmul, add, a second rope on top, a clone read twice.
        c.gpu.set_fuse_rope(true);
        let (t, hd) = (5, 64);
        let x = c.rand(&[t, 2 * hd], 1.0);
        let pos: Vec<u32> = (0..t as u32).map(|i| 7 * i + 3).collect();
        let (gp, cp) = c.pair_u32(&pos, &[t]);
        let freqs: Vec<f32> = (0..hd / 2).map(|i| 10000f32.powf(-2.0 * i as f32 / hd as f32)).collect();
        let (gf, cf) = c.pair_exact(&freqs, &[hd / 2]);
        let p = RopeParams { head_dim: hd, rotary_dim: hd, style: RopeStyle::Neox, attention_scaling: 1.0 };
        let w = c.rand(&[24, 2 * hd], 0.5);
        let (mut gx, mut cx) = (x.0.clone(), x.1.clone());
        c.gpu.rope(&mut gx, &gp, &gf, p).unwrap();
        c.cpu.rope(&mut cx, &cp, &cf, p).unwrap();
        let alias = gx.clone();
        let g = c.gpu.matmul(&gx, &w.0, None).unwrap();
        let r = c.cpu.matmul(&cx, &w.1, None).unwrap();
        c.check("rope_then_matmul", "T5", &g, &r);
        let g = c.gpu.add(&alias, &gx).unwrap();
        let r = c.cpu.add(&cx, &cx).unwrap();
        c.check("rope_then_add_of_clones", "T5", &g, &r);
        c.check("rope_input_untouched", "T5", &x.0, &x.1);
        let (mut gy, mut cy) = (x.0.clone(), x.1.clone());
        c.gpu.rope(&mut gy, &gp, &gf, p).unwrap();
        c.gpu.rope(&mut gy, &gp, &gf, p).unwrap();
        c.cpu.rope(&mut cy, &cp, &cf, p).unwrap();
        c.cpu.rope(&mut cy, &cp, &cf, p).unwrap();
        c.check("rope_twice", "T5", &gy, &cy);
        // write_kv rotates the latest pending tensor of the same positions (here b, not a)
        // with k; a dropped one is skipped; every tensor still reads back rotated once.
        let kvw = hd;
        let nb = 2;
        let slots: Vec<u32> = (0..t as u32).map(|i| 3 + 2 * i).collect();
        let (gs, cs) = c.pair_u32(&slots, &[t]);
        let (mut gkc, mut ckc) = c.rand(&[nb, 16, kvw], 1.0);
        let (mut gvc, mut cvc) = c.rand(&[nb, 16, kvw], 1.0);
        let v = c.rand(&[t, kvw], 1.0);
        let k = c.rand(&[t, kvw], 1.0);
        let a = c.rand(&[t, 2 * hd], 1.0);
        let b = c.rand(&[t, 3 * hd], 1.0);
        let dropped = c.rand(&[t, 2 * hd], 1.0);
        let (mut ga, mut ca) = (a.0.clone(), a.1.clone());
        let (mut gb, mut cb) = (b.0.clone(), b.1.clone());
        let (mut gk, mut ck) = (k.0.clone(), k.1.clone());
        c.gpu.rope(&mut ga, &gp, &gf, p).unwrap();
        c.gpu.rope(&mut gb, &gp, &gf, p).unwrap();
        let mut gd = dropped.0.clone();
        c.gpu.rope(&mut gd, &gp, &gf, p).unwrap();
        drop(gd);
        c.gpu.rope(&mut gk, &gp, &gf, p).unwrap();
        c.gpu.write_kv(&mut gkc, &mut gvc, &gk, &v.0, &gs).unwrap();
        c.cpu.rope(&mut ca, &cp, &cf, p).unwrap();
        c.cpu.rope(&mut cb, &cp, &cf, p).unwrap();
        c.cpu.rope(&mut ck, &cp, &cf, p).unwrap();
        c.cpu.write_kv(&mut ckc, &mut cvc, &ck, &v.1, &cs).unwrap();
        c.check("write_kv_rope_companion.k_cache", "T5", &gkc, &ckc);
        c.check("write_kv_rope_companion.v_cache", "T5", &gvc, &cvc);
        c.check("write_kv_rope_companion.latest", "T5", &gb, &cb);
        c.check("write_kv_rope_companion.earlier", "T5", &ga, &ca);
        c.check("write_kv_rope_companion.k", "T5", &gk, &ck);
        c.finish();
    }
}
