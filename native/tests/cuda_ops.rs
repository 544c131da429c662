//! CUDA backend op parity: every op against the CPU backend (the specification) on fresh random
//! inputs (seed printed; `TESSERA_SEED` replays one), f32 / f16 / bf16, many shapes including
//! odd ones, outputs poisoned with NaN before every kernel, NaN checks, and
//! ‖out − ref‖₂ / ‖ref‖₂ below 1e-5 (f32) or 1e-2 (f16, bf16). Matmul shapes cover both
//! sides of the GEMV / cuBLAS cutover (M <= 8 / M >= 9); `gemv_bench` (ignored) times them. Each case prints one
//! `PARITY <op> <dtype> <case> rel=<err> ...` line that scripts/gpu-suite.sh tabulates.
//!
//! These tests run on the GPU machine (scripts/gpu-suite.sh); without a GPU they fail (CI only
//! builds them; `nvrtc_compiles_every_kernel_module` needs only libnvrtc). Inputs are uploaded to the GPU first and read back,
//! so the CPU computes on exactly the (rounded) values the GPU holds.

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{pair_attention_case, AttnCase, Ctx, DTYPES};
use tessera::cuda::TensorCorePrefill;
use tessera_core::backend::{Activation, Backend, BackendError, Op, RopeParams, RopeStyle};
use tessera_core::tensor::{DType, HostTensor};

#[test]
fn no_gpu_is_a_clear_error_or_a_device() {
    match tessera::cuda::CudaBackend::new(0, DType::BF16) {
        Ok(b) => {
            let info = b.device_info();
            println!("GPU {} (sm_{}{}), {} SMs, {:.1} GiB", info.name, info.compute_capability.0, info.compute_capability.1,
                info.multiprocessors, info.total_memory as f64 / (1u64 << 30) as f64);
            let secs = b.load_kernels().expect("every kernel module compiles and loads");
            println!("KERNELS compiled/loaded in {secs:.2}s for {}", b.arch());
            assert_eq!(b.name(), "cuda");
            assert!(b.supports(Op::PagedAttention, DType::BF16) && !b.supports(Op::Matmul, DType::U32));
        }
        Err(e) => {
            let msg = e.to_string();
            println!("no GPU here: {msg}");
            assert!(msg.contains("cuda backend"), "{msg}");
            assert!(!cuda_common::require_gpu(), "TESSERA_REQUIRE_GPU=1 but: {msg}");
        }
    }
}

#[test]
fn nvrtc_compiles_every_kernel_module() {
    // Needs only libnvrtc (the PyPI wheel works: see scripts/check-kernels.sh), no GPU.
    if !tessera::cuda::compile::nvrtc_present() {
        panic!("libnvrtc not found: set LD_LIBRARY_PATH to a CUDA 13 lib folder (scripts/check-kernels.sh installs one)");
    }
    let include = tessera::cuda::compile::include_dirs();
    assert!(!include.is_empty(), "cuda_bf16.h not found (set TESSERA_CUDA_INCLUDE)");
    for (module, _) in tessera::cuda::compile::SOURCES {
        let (cubin, log) = tessera::cuda::compile::compile_module(module, "sm_90", &include).unwrap();
        assert!(!cubin.is_empty(), "{module}: empty cubin");
        // Register arrays must not spill (sincosf's slow path has a small legitimate stack frame).
        let spills = log.lines().filter(|l| l.contains("spill stores") && !l.contains(" 0 bytes spill stores")).count();
        assert_eq!(spills, 0, "{module}: kernels spill registers:\n{log}");
        println!("NVRTC {module}: cubin {} bytes", cubin.len());
    }
}

#[test]
fn embedding_matmul_add() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "embedding_matmul_add") else { return };
        for (vocab, hidden, scale) in [(1000, 64, 1.0f32), (37, 13, 8.0), (300, 1024, 0.5)] {
            let table = c.rand(&[vocab, hidden], 1.0);
            let mut ids: Vec<u32> = (0..23).map(|_| c.rng.below(vocab) as u32).collect();
            ids[0] = 0;
            ids[1] = vocab as u32 - 1;
            let (gi, ci) = c.pair_u32(&ids, &[ids.len()]);
            let g = c.gpu.embedding(&table.0, &gi, scale).unwrap();
            let r = c.cpu.embedding(&table.1, &ci, scale).unwrap();
            c.check("embedding", &format!("V{vocab} H{hidden} s{scale}"), &g, &r);
        }
        for (m, k, n, bias) in [(1, 64, 64, false), (7, 129, 33, true), (128, 512, 384, false), (33, 1000, 255, true), (300, 2048, 96, true)] {
            let x = c.rand(&[m, k], 1.0);
            let w = c.rand(&[n, k], 0.5);
            let b = c.rand(&[n], 1.0);
            let g = c.gpu.matmul(&x.0, &w.0, bias.then_some(&b.0)).unwrap();
            let r = c.cpu.matmul(&x.1, &w.1, bias.then_some(&b.1)).unwrap();
            c.check("matmul", &format!("M{m} K{k} N{n} bias={bias}"), &g, &r);
        }
        for shape in [vec![5, 13], vec![64, 1024], vec![3, 7]] {
            let a = c.rand(&shape, 2.0);
            let b = c.rand(&shape, 2.0);
            let g = c.gpu.add(&a.0, &b.0).unwrap();
            let r = c.cpu.add(&a.1, &b.1).unwrap();
            c.check("add", &format!("{shape:?}"), &g, &r);
        }
        c.finish();
    }
}

/// The small-M GEMV kernels (M <= 8) and the cuBLAS path (M >= 9) behind `matmul`: every
/// SmolLM3-3B projection shape, tiny and odd N and K (K not a multiple of the 16-byte vector
/// takes the scalar loop), with and without bias; forced K splits.
#[test]
fn gemv_shapes() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "gemv_shapes") else { return };
        // Every M <= 8 on the GEMV kernels (the defaults send only the smallest M there).
        c.gpu.set_gemv_max_m(Some(8));
        // (N, K, rows M to try)
        let cases: [(usize, usize, &[usize]); 12] = [
            (1, 64, &[1, 2, 8, 9]),
            (7, 576, &[1, 3, 4, 9]),
            (7, 100, &[1, 2, 5, 8]),
            (33, 72, &[1, 6, 7, 8, 16]),
            (512, 2048, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 16]),
            (2048, 2048, &[1, 4, 8, 9]),
            (11008, 2048, &[1, 2, 8]),
            (2048, 11008, &[1, 3, 8, 12]),
            (512, 72, &[1, 8]),
            (100, 33, &[1, 3]),
            (2048, 100, &[2, 7]),
            (128_256, 2048, &[1, 5, 8]),
        ];
        for (n, k, ms) in cases {
            let w = c.rand(&[n, k], 0.5);
            let b = c.rand(&[n], 1.0);
            for (i, &m) in ms.iter().enumerate() {
                let bias = i % 2 == 1 || n == 7;
                let x = c.rand(&[m, k], 1.0);
                let g = c.gpu.matmul(&x.0, &w.0, bias.then_some(&b.0)).unwrap();
                let r = c.cpu.matmul(&x.1, &w.1, bias.then_some(&b.1)).unwrap();
                let path = if m <= 8 { "gemv" } else { "cublas" };
                c.check("matmul", &format!("{path} M{m} K{k} N{n} bias={bias}"), &g, &r);
            }
        }
        // Every K split on one shape (the reduction across warps of a block).
        let (x, w, b) = (c.rand(&[3, 2048], 1.0), c.rand(&[520, 2048], 0.5), c.rand(&[520], 1.0));
        let r = c.cpu.matmul(&x.1, &w.1, Some(&b.1)).unwrap();
        for ks in [1, 2, 4, 8] {
            c.gpu.set_gemv_splits(ks);
            let g = c.gpu.matmul(&x.0, &w.0, Some(&b.0)).unwrap();
            c.check("matmul", &format!("gemv M3 K2048 N520 ks{ks}"), &g, &r);
        }
        c.gpu.set_gemv_splits(0);
        // The default cutovers (GEMV up to M 2 here, cuBLAS above).
        c.gpu.set_gemv_max_m(None);
        for m in [1, 2, 3] {
            let x = c.rand(&[m, 2048], 1.0);
            let g = c.gpu.matmul(&x.0, &w.0, Some(&b.0)).unwrap();
            let r = c.cpu.matmul(&x.1, &w.1, Some(&b.1)).unwrap();
            c.check("matmul", &format!("default M{m} K2048 N520"), &g, &r);
        }
        c.finish();
    }
}

/// `matmul_many` (q/k/v in one launch; more than 4 matrices take several) and `gated_matmul`
/// (gate/up + activation in one launch) against the CPU backend's composition, GEMV and
/// cuBLAS paths.
#[test]
fn gemv_fused_ops() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "gemv_fused_ops") else { return };
        c.gpu.set_gemv_max_m(Some(8));
        // (K, [(N, bias)])
        let sets: [(usize, &[(usize, bool)]); 3] = [
            (2048, &[(2048, false), (512, false), (512, false)]),
            (72, &[(64, true), (7, false), (33, true), (512, false), (100, true)]),
            (100, &[(33, true), (1, true)]),
        ];
        for (k, mats) in sets {
            let ws: Vec<_> = mats.iter().map(|&(n, _)| (c.rand(&[n, k], 0.5), c.rand(&[n], 1.0))).collect();
            for m in [1, 3, 8, 9, 17] {
                let x = c.rand(&[m, k], 1.0);
                let gp: Vec<_> = ws.iter().zip(mats).map(|((w, b), &(_, bias))| (&w.0, bias.then_some(&b.0))).collect();
                let cp: Vec<_> = ws.iter().zip(mats).map(|((w, b), &(_, bias))| (&w.1, bias.then_some(&b.1))).collect();
                let g = c.gpu.matmul_many(&x.0, &gp).unwrap();
                let r = c.cpu.matmul_many(&x.1, &cp).unwrap();
                assert_eq!(g.len(), mats.len());
                for (j, (g, r)) in g.iter().zip(&r).enumerate() {
                    c.check("matmul_many", &format!("M{m} K{k} mat{j} N{} of {}", mats[j].0, mats.len()), g, r);
                }
            }
        }
        // (N, K, activation, bias)
        let gated = [
            (11008, 2048, Activation::Silu, false),
            (7, 100, Activation::GeluTanh, true),
            (33, 576, Activation::Gelu, true),
            (1000, 72, Activation::Silu, true),
        ];
        for (n, k, act, bias) in gated {
            let (gw, uw) = (c.rand(&[n, k], 0.5), c.rand(&[n, k], 0.5));
            let (gb, ub) = (c.rand(&[n], 1.0), c.rand(&[n], 1.0));
            for m in [1, 2, 4, 5, 8, 9] {
                let x = c.rand(&[m, k], 1.0);
                let g = c.gpu.gated_matmul(&x.0, (&gw.0, bias.then_some(&gb.0)), (&uw.0, bias.then_some(&ub.0)), act).unwrap();
                let r = c.cpu.gated_matmul(&x.1, (&gw.1, bias.then_some(&gb.1)), (&uw.1, bias.then_some(&ub.1)), act).unwrap();
                // f32: the GPU's expf/erff against the CPU's (see act_mul's tolerance).
                let tol = if dtype == DType::F32 { 1e-4 } else { c.tolerance() };
                c.check_tol("gated_matmul", &format!("{act:?} M{m} K{k} N{n} bias={bias}"), &g, &r, tol);
            }
        }
        // Shape errors are immediate, as on the CPU.
        let x = c.rand(&[2, 64], 1.0);
        let (a, b) = (c.rand(&[8, 64], 1.0), c.rand(&[9, 64], 1.0));
        let bad_k = c.rand(&[8, 65], 1.0);
        assert!(matches!(c.gpu.matmul_many(&x.0, &[(&a.0, None), (&bad_k.0, None)]), Err(BackendError::Shape { op: Op::Matmul, .. })));
        assert!(matches!(c.gpu.gated_matmul(&x.0, (&a.0, None), (&b.0, None), Activation::Silu), Err(BackendError::Shape { op: Op::ActMul, .. })));
        c.finish();
    }
}

/// Not a parity test: times the SmolLM3-3B decode products (bf16) on the GEMV kernels and on
/// cuBLAS, each inside a CUDA graph over rotating weight copies (> 2x L2), and prints
/// `GEMV_BENCH` lines with the achieved weight bandwidth. Run on the GPU machine with
/// `cuda_ops gemv_bench --ignored --nocapture`.
#[test]
#[ignore]
fn gemv_bench() {
    use cuda_common::bench::{graph_secs_per_call, random_bf16, weight_copies};
    let be = tessera::cuda::CudaBackend::new(0, DType::BF16).expect("a GPU");
    let info = be.device_info().clone();
    println!("GEMV_BENCH device {} ({} SMs)", info.name, info.multiprocessors);
    let mut rng = cuda_common::Rng::new(cuda_common::run_seed());
    // (name, K, N of each matrix, gated)
    let ops: [(&str, usize, &[usize], bool); 6] = [
        ("qkv", 2048, &[2048, 512, 512], false),
        ("kv", 2048, &[512], false),
        ("o", 2048, &[2048], false),
        ("gate_up", 2048, &[11008, 11008], true),
        ("down", 11008, &[2048], false),
        ("lm_head", 2048, &[128_256], false),
    ];
    let mut table = Vec::new();
    for (name, k, ns, gated) in ops {
        let (mats, copies, bytes) = weight_copies(&be, &mut rng, ns, k);
        for m in [1usize, 2, 4, 8, 16] {
            let x = be.upload(&random_bf16(&mut rng, m, k)).unwrap();
            // (label, cutover, forced K splits): cuBLAS, GEMV, the defaults, forced splits.
            let mut variants: Vec<(String, Option<usize>, u32)> =
                vec![("cublas".into(), Some(0), 0), ("gemv".into(), Some(8), 0), ("default".into(), None, 0)];
            if m <= 2 {
                variants.extend([1, 2, 4, 8].map(|ks| (format!("gemv_ks{ks}"), Some(8), ks)));
            }
            for (variant, max_m, ks) in variants {
                if m > 8 && max_m != Some(0) {
                    continue;
                }
                be.set_gemv_max_m(max_m);
                be.set_gemv_splits(ks);
                let run = |c: usize| -> Vec<tessera::cuda::CudaTensor> {
                    if gated {
                        vec![be.gated_matmul(&x, (&mats[0][c], None), (&mats[1][c], None), Activation::Silu).unwrap()]
                    } else {
                        let parts: Vec<_> = mats.iter().map(|w| (&w[c], None)).collect();
                        be.matmul_many(&x, &parts).unwrap()
                    }
                };
                let secs = graph_secs_per_call(&be, copies, run);
                let (us, gbs) = (secs * 1e6, bytes as f64 / secs / 1e9);
                let line = format!("GEMV_BENCH {name:<8} M{m:<2} {variant:<10} {us:>9.2} us {gbs:>7.0} GB/s  ({:.1} MB, {copies} copies)", bytes as f64 / 1e6);
                println!("{line}");
                table.push(line);
            }
        }
    }
    be.set_gemv_max_m(None);
    be.set_gemv_splits(0);
    println!("GEMV_BENCH {} configurations timed", table.len());
}

#[test]
fn norms_and_activations() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "norms_and_activations") else { return };
        // (rows x width, group): warp path, block path, per-head groups, odd groups.
        for (rows, width, group) in [(9, 1024, 1024), (3, 4096, 4096), (2, 10000, 10000), (7, 256, 64), (5, 39, 13), (4, 2048, 2048)] {
            for offset in [0.0f32, 1.0] {
                let x = c.rand(&[rows, width], 3.0);
                let res = c.rand(&[rows, width], 3.0);
                let w = c.rand(&[group], 1.0);
                let case = format!("{rows}x{width} group{group} offset{offset}");
                let g = c.gpu.rms_norm(&x.0, &w.0, 1e-6, offset).unwrap();
                let r = c.cpu.rms_norm(&x.1, &w.1, 1e-6, offset).unwrap();
                c.check("rms_norm", &case, &g, &r);
                let (gn, gs) = c.gpu.add_rms_norm(&x.0, &res.0, &w.0, 1e-5, offset).unwrap();
                let (rn, rs) = c.cpu.add_rms_norm(&x.1, &res.1, &w.1, 1e-5, offset).unwrap();
                c.check("add_rms_norm.sum", &case, &gs, &rs);
                c.check("add_rms_norm.out", &case, &gn, &rn);
            }
        }
        for (act, name) in [(Activation::Silu, "silu"), (Activation::GeluTanh, "gelu_tanh"), (Activation::Gelu, "gelu")] {
            for shape in [vec![7, 257], vec![64, 1024], vec![1, 3]] {
                let gate = c.rand(&shape, 4.0);
                let up = c.rand(&shape, 2.0);
                let g = c.gpu.act_mul(&gate.0, &up.0, act).unwrap();
                let r = c.cpu.act_mul(&gate.1, &up.1, act).unwrap();
                // The CPU reference's tanh has ~1e-7 absolute error, which the cancellation in
                // 1 + tanh(z) (large negative gates) turns into ~1e-5 relative on a short row.
                let tol = if act == Activation::GeluTanh && dtype == DType::F32 { 1e-4 } else { c.tolerance() };
                c.check_tol(&format!("act_mul.{name}"), &format!("{shape:?}"), &g, &r, tol);
            }
        }
        for (shape, cap) in [(vec![5, 1000], 30.0f32), (vec![3, 7], 2.0)] {
            let x = c.rand(&shape, 60.0);
            let g = c.gpu.softcap(&x.0, cap).unwrap();
            let r = c.cpu.softcap(&x.1, cap).unwrap();
            c.check("softcap", &format!("{shape:?} cap{cap}"), &g, &r);
        }
        c.finish();
    }
}

#[test]
fn rope_variants() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "rope_variants") else { return };
        // (tokens, heads, head_dim, rotary_dim, style, per-token table, scaling)
        let cases = [
            (9, 4, 64, 64, RopeStyle::Neox, false, 1.0f32),
            (9, 4, 64, 64, RopeStyle::Interleaved, false, 1.0),
            (5, 2, 128, 32, RopeStyle::Neox, false, 1.2),
            (7, 3, 10, 6, RopeStyle::Interleaved, true, 1.0),
            (33, 8, 128, 128, RopeStyle::Neox, true, 0.9),
            (1, 1, 256, 256, RopeStyle::Neox, false, 1.0),
        ];
        for (t, heads, hd, rd, style, per_token, scaling) in cases {
            let x = c.rand(&[t, heads * hd], 2.0);
            let pos: Vec<u32> = (0..t).map(|_| c.rng.below(8192) as u32).collect();
            let (gp, cp) = c.pair_u32(&pos, &[t]);
            let half = rd / 2;
            let freq_shape = if per_token { vec![t, half] } else { vec![half] };
            let freqs: Vec<f32> = (0..freq_shape.iter().product::<usize>())
                .map(|i| 10000f32.powf(-2.0 * (i % half) as f32 / rd as f32) * (1.0 + 0.1 * c.rng.unit()))
                .collect();
            // RoPE tables are f32 on both backends (rank 1 stays f32; rank 2 is compared as uploaded).
            let (gf, cf) = c.pair_exact(&freqs, &freq_shape);
            let p = RopeParams { head_dim: hd, rotary_dim: rd, style, attention_scaling: scaling };
            let (mut gx, mut cx) = (x.0.clone(), x.1.clone());
            c.gpu.rope(&mut gx, &gp, &gf, p).unwrap();
            c.cpu.rope(&mut cx, &cp, &cf, p).unwrap();
            c.check("rope", &format!("T{t} h{heads} d{hd} r{rd} {style:?} per_token={per_token}"), &gx, &cx);
            // The input tensor shares nothing with the rotated copy (copy-on-write).
            c.check("rope.input_untouched", &format!("T{t} d{hd}"), &x.0, &x.1);
        }
        c.finish();
    }
}

#[test]
fn selection_ops() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "selection_ops") else { return };
        for (rows, cols) in [(10, 257), (64, 4096), (3, 8), (5, 128_256)] {
            let x = c.rand(&[rows, cols], 5.0);
            let idx: Vec<u32> = vec![rows as u32 - 1, 0, 2 % rows as u32, rows as u32 - 1];
            let (gi, ci) = c.pair_u32(&idx, &[idx.len()]);
            let g = c.gpu.gather_rows(&x.0, &gi).unwrap();
            let r = c.cpu.gather_rows(&x.1, &ci).unwrap();
            c.check("gather_rows", &format!("{rows}x{cols}"), &g, &r);
            let g = c.gpu.argmax(&x.0).unwrap();
            let r = c.cpu.argmax(&x.1).unwrap();
            c.check_u32("argmax", &format!("{rows}x{cols}"), &g, &r);
        }
        // Ties (first index wins), all equal, -inf, and NaN rows.
        let mut v = vec![1.0f32; 4 * 300];
        v[300 + 17] = 2.0;
        v[300 + 200] = 2.0;
        v[600..900].iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
        v[900 + 5] = f32::NAN;
        v[900 + 9] = f32::NAN;
        v[900 + 100] = 7.0;
        let (gx, cx) = c.pair_exact(&v, &[4, 300]);
        let g = c.gpu.argmax(&gx).unwrap();
        let r = c.cpu.argmax(&cx).unwrap();
        c.check_u32("argmax", "ties/-inf/NaN", &g, &r);
        c.finish();
    }
}

#[test]
fn sampling_matches_reference() {
    use tessera_core::sample::{sample_rows, RowSampling};
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "sampling") else { return };
        // (temperature, top_k, top_p, min_p)
        let params = [
            (0.0f32, 0, 1.0f32, 0.0f32),
            (1.0, 0, 1.0, 0.0),
            (0.7, 1, 1.0, 0.0),
            (1.3, 5, 1.0, 0.0),
            (1.0, 50, 0.9, 0.0),
            (0.8, 0, 0.5, 0.0),
            (1.0, 0, 1.0, 0.1),
            (2.0, 20, 0.95, 0.05),
            (1.0, 0, 0.999, 0.0),
            (0.5, 3, 0.3, 0.2),
        ];
        for vocab in [7usize, 1000, 50257] {
            let m = 40;
            let mut v: Vec<f32> = (0..m * vocab).map(|_| (c.rng.unit() * 2.0 - 1.0) * 8.0).collect();
            for r in 0..m {
                let row = &mut v[r * vocab..(r + 1) * vocab];
                match r % 8 {
                    1 => row.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0), // many ties
                    2 => {
                        row[r % vocab] = f32::NAN;
                        row[(r * 7) % vocab] = f32::NEG_INFINITY;
                    }
                    3 if r == 3 => row.iter_mut().for_each(|x| *x = f32::NEG_INFINITY),
                    _ => {}
                }
            }
            let (gl, cl) = c.pair_exact(&v, &[m, vocab]);
            let host = pollster::block_on(c.cpu.to_host(&cl)).unwrap().to_f32();
            let rows: Vec<RowSampling> = (0..m)
                .map(|r| {
                    let (temperature, top_k, top_p, min_p) = params[r % params.len()];
                    RowSampling { temperature, top_k, top_p, min_p, uniform: (c.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 }
                })
                .collect();
            let want = sample_rows(&host, &rows);
            match pollster::block_on(c.gpu.sample(&gl, &rows)) {
                Ok(got) => c.check_ids("sample", &format!("V{vocab} M{m}"), &got, &want),
                Err(e) => c.check_ids("sample", &format!("V{vocab} M{m} error {e}"), &[], &want),
            }
        }
        c.finish();
    }
}

#[test]
fn write_kv_scatter() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "write_kv_scatter") else { return };
        for (nb, bs, width, tokens) in [(10, 16, 128, 20), (7, 5, 30, 11), (4, 1, 8, 3)] {
            let kc = c.rand(&[nb, bs, width], 1.0);
            let vc = c.rand(&[nb, bs, width], 1.0);
            let k = c.rand(&[tokens, width], 1.0);
            let v = c.rand(&[tokens, width], 1.0);
            let mut slots: Vec<u32> = (0..(nb * bs) as u32).collect();
            c.rng.shuffle(&mut slots);
            slots.truncate(tokens);
            slots[tokens / 2] = u32::MAX; // a padding token is skipped
            let (gs, cs) = c.pair_u32(&slots, &[tokens]);
            let (mut gk, mut gv, mut ck, mut cv) = (kc.0.clone(), vc.0.clone(), kc.1.clone(), vc.1.clone());
            c.gpu.write_kv(&mut gk, &mut gv, &k.0, &v.0, &gs).unwrap();
            c.cpu.write_kv(&mut ck, &mut cv, &k.1, &v.1, &cs).unwrap();
            let case = format!("nb{nb} bs{bs} w{width} T{tokens}");
            c.check("write_kv.k", &case, &gk, &ck);
            c.check("write_kv.v", &case, &gv, &cv);
        }
        c.finish();
    }
}

#[test]
fn paged_attention_prefill_decode_mixed() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "paged_attention") else { return };
        let mixed = vec![(1, 37), (5, 5), (16, 40), (3, 3), (1, 1), (24, 70)];
        let cases = [
            AttnCase { seqs: mixed.clone(), heads: 8, kv_heads: 2, head_dim: 64, block_size: 16, window: None, softcap: None, splits: 0 },
            AttnCase { seqs: mixed.clone(), heads: 8, kv_heads: 2, head_dim: 128, block_size: 16, window: Some(7), softcap: None, splits: 0 },
            AttnCase { seqs: mixed.clone(), heads: 4, kv_heads: 2, head_dim: 256, block_size: 16, window: Some(16), softcap: Some(20.0), splits: 0 },
            AttnCase { seqs: mixed.clone(), heads: 6, kv_heads: 6, head_dim: 40, block_size: 5, window: None, softcap: Some(5.0), splits: 3 },
            AttnCase { seqs: mixed.clone(), heads: 16, kv_heads: 1, head_dim: 80, block_size: 7, window: None, softcap: None, splits: 7 },
            AttnCase { seqs: mixed, heads: 12, kv_heads: 4, head_dim: 96, block_size: 16, window: Some(3), softcap: None, splits: 2 },
            // Long decode: split-K chosen automatically, then forced.
            AttnCase { seqs: vec![(1, 1500), (1, 977), (2, 2048)], heads: 16, kv_heads: 4, head_dim: 128, block_size: 16, window: None, softcap: None, splits: 0 },
            AttnCase { seqs: vec![(1, 1500), (1, 977)], heads: 8, kv_heads: 8, head_dim: 64, block_size: 32, window: Some(512), softcap: None, splits: 5 },
            // A long prefill chunk after a cached prefix.
            AttnCase { seqs: vec![(64, 300), (100, 100)], heads: 8, kv_heads: 2, head_dim: 128, block_size: 16, window: None, softcap: None, splits: 0 },
        ];
        for case in &cases {
            let (g, r, label) = pair_attention_case(&mut c, case);
            c.check("paged_attention", &label, &g, &r);
        }
        c.gpu.set_attention_splits(0);
        c.finish();
    }
}

/// The decode kernel (kernels/attention_decode.cu) alone and beside the general kernel:
/// decode-only batches with odd context lengths, GQA groups of 1, 2, 4, 7, 8 and 16 (a group
/// of more than 8 takes several blocks), head_dim 64/128/256 (80: the general kernel),
/// block sizes 1 to 32, window, softcap, split-K on a 5000-token context (automatic and
/// forced), batch 256, and mixed steps whose decode rows sit between prefill rows.
#[test]
fn paged_attention_decode_kernel() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "paged_attention_decode") else { return };
        let odd = vec![(1, 1), (1, 17), (1, 129), (1, 333), (1, 1000), (1, 64)];
        let long = vec![(1, 5000), (1, 4097), (1, 3)];
        let batch: Vec<(usize, usize)> = (0..256).map(|_| (1, 1 + c.rng.below(400))).collect();
        let mixed = vec![(7, 300), (1, 37), (1, 513), (33, 33), (1, 1), (5, 140), (1, 200)];
        let case = |seqs: &Vec<(usize, usize)>, heads, kv_heads, head_dim, block_size, window, softcap, splits| AttnCase {
            seqs: seqs.clone(),
            heads,
            kv_heads,
            head_dim,
            block_size,
            window,
            softcap,
            splits,
        };
        let cases = [
            case(&odd, 16, 4, 128, 16, None, None, 0),
            case(&odd, 8, 8, 64, 32, None, None, 0),
            case(&odd, 32, 4, 256, 8, Some(100), Some(30.0), 0),
            case(&odd, 14, 2, 64, 1, None, None, 0),
            case(&odd, 16, 1, 128, 5, Some(1000), None, 0),
            case(&odd, 4, 2, 256, 16, None, Some(10.0), 3),
            case(&odd, 12, 4, 80, 16, Some(50), None, 0),
            case(&long, 16, 4, 128, 16, None, None, 0),
            case(&long, 16, 4, 128, 16, Some(777), None, 0),
            case(&long, 8, 1, 64, 16, None, None, 7),
            case(&batch, 16, 4, 128, 16, None, None, 0),
            case(&mixed, 16, 4, 128, 16, None, None, 0),
            case(&mixed, 16, 2, 64, 7, Some(64), Some(20.0), 0),
            case(&mixed, 8, 8, 256, 32, None, None, 4),
        ];
        for case in &cases {
            let (g, r, label) = pair_attention_case(&mut c, case);
            c.check("paged_attention", &label, &g, &r);
        }
        c.gpu.set_attention_splits(0);
        c.finish();
    }
}

/// Prefill and mixed steps on the tensor-core kernel (kernels/attention_prefill.cu, bf16 and
/// f16; f32 runs the SIMT kernel on the same cases): chunks after cached prefixes, row tiles
/// cut mid-sequence, GQA groups of 1, 4 and 8, head_dim 64/128/256, odd block sizes,
/// window and softcap, decode rows in between; then the same case with the tensor cores off.
#[test]
fn paged_attention_prefill_tensor_cores() {
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "paged_attention_prefill") else { return };
        c.gpu.set_tensor_core_prefill(TensorCorePrefill::Always);
        let case = |seqs: Vec<(usize, usize)>, heads, kv_heads, head_dim, block_size, window, softcap| AttnCase {
            seqs,
            heads,
            kv_heads,
            head_dim,
            block_size,
            window,
            softcap,
            splits: 0,
        };
        let cases = [
            case(vec![(300, 300), (64, 1000), (1, 50), (17, 17)], 16, 4, 128, 16, None, None),
            case(vec![(129, 200), (1, 7), (33, 33)], 8, 1, 64, 7, Some(50), Some(30.0)),
            case(vec![(100, 150), (1, 20), (65, 65)], 8, 8, 256, 32, Some(64), None),
            case(vec![(77, 500), (200, 200), (1, 333)], 32, 4, 128, 5, None, Some(20.0)),
            case(vec![(1024, 1500)], 16, 4, 128, 16, None, None),
            case(vec![(2, 2), (3, 90), (1, 1)], 4, 4, 64, 1, None, None),
        ];
        for case in &cases {
            let (g, r, label) = pair_attention_case(&mut c, case);
            c.check("paged_attention", &label, &g, &r);
        }
        c.gpu.set_tensor_core_prefill(TensorCorePrefill::Off);
        let (g, r, label) = pair_attention_case(&mut c, &cases[0]);
        c.check("paged_attention", &format!("{label} simt"), &g, &r);
        c.gpu.set_tensor_core_prefill(TensorCorePrefill::Auto);
        c.finish();
    }
}

#[test]
fn device_checked_indices_are_errors_not_crashes() {
    let Some(mut c) = Ctx::new(DType::F32, "device_errors") else { return };
    // Without a sync after each launch, device-checked errors surface at the next to_host.
    c.gpu.set_sync_launches(false);
    let table = c.rand(&[10, 8], 1.0);
    let ids = c.gpu.upload_u32(&[1, 10, 2], &[3]).unwrap();
    let out = c.gpu.embedding(&table.0, &ids, 1.0).unwrap();
    let err = pollster::block_on(c.gpu.to_host(&out)).unwrap_err();
    assert!(matches!(&err, BackendError::Device { .. }) && err.to_string().contains("Embedding"), "{err}");
    println!("embedding id 10 of 10: {err}");
    // The error word is cleared: the next op works.
    let ok = c.gpu.embedding(&table.0, &c.gpu.upload_u32(&[9], &[1]).unwrap(), 1.0).unwrap();
    pollster::block_on(c.gpu.to_host(&ok)).unwrap();

    let idx = c.gpu.upload_u32(&[0, 10], &[2]).unwrap();
    let out = c.gpu.gather_rows(&table.0, &idx).unwrap();
    let err = pollster::block_on(c.gpu.to_host(&out)).unwrap_err();
    assert!(err.to_string().contains("GatherRows"), "{err}");

    let mut kc = c.gpu.zeros(&[2, 4, 8]).unwrap();
    let mut vc = c.gpu.zeros(&[2, 4, 8]).unwrap();
    let slots = c.gpu.upload_u32(&[8, 1], &[2]).unwrap();
    let (k, v) = (c.rand(&[2, 8], 1.0).0, c.rand(&[2, 8], 1.0).0);
    c.gpu.write_kv(&mut kc, &mut vc, &k, &v, &slots).unwrap();
    let err = pollster::block_on(c.gpu.to_host(&kc)).unwrap_err();
    assert!(err.to_string().contains("WriteKv"), "{err}");

    // Host-checked shapes and dtypes are immediate errors, as on the CPU.
    let x = c.rand(&[3, 4], 1.0);
    assert!(matches!(c.gpu.add(&x.0, &table.0), Err(BackendError::Shape { op: Op::Add, .. })));
    assert!(matches!(c.gpu.argmax(&ids), Err(BackendError::Unsupported { op: Op::Argmax, dtype: DType::U32, .. })));
    let bad = HostTensor { dtype: DType::F32, shape: vec![3], data: vec![0u8; 8].into() };
    assert!(matches!(c.gpu.upload(&bad), Err(BackendError::Shape { op: Op::Upload, .. })));
    c.finish();
}
