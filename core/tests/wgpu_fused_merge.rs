//! A split decode attention's merge folded into the o_proj matvec after it
//! (`merge_matmul.wgsl`): paged attention over key splits (4 workgroups per (row, head))
//! then `matmul` on its output, with the merge fused (default) and recorded on its own
//! (`WgpuOptions::fuse_merge = Some(false)`): the two must agree exactly (the same
//! arithmetic and roundings), and with the CPU backend within the dtype's tolerance; f32 and
//! f16, SmolLM2's heads (9 / 3 of 64) and odd ones (4 / 1 of 40), 1 to 3 decode rows, f32,
//! f16, Q8_0 and Q4_1 weights, with a bias. Readers other than a decode matvec (`to_host`, a
//! matmul of 8+ rows) see the merged values too.

use tessera_core::backend::cpu::CpuBackend;
use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{AttentionMetadata, AttentionParams, Backend};
use tessera_core::tensor::{DType, HostTensor};

const BLOCK: usize = 16;

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
        })
        .collect()
}

fn float(v: &[f32], shape: &[usize], f16: bool) -> HostTensor<'static> {
    if f16 {
        let bytes: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
        HostTensor { dtype: DType::F16, shape: shape.to_vec(), data: bytes.into() }
    } else {
        HostTensor::from_f32(v, shape)
    }
}

/// Random GGUF blocks of `dtype` (Q8_0 or Q4_1) for a weight `[n, k]`.
fn blocks(seed: u64, n: usize, k: usize, dtype: DType) -> HostTensor<'static> {
    let raw = values(seed, n * k, 1.0);
    let scale = 1.0 / (k as f32).sqrt();
    let mut data = Vec::new();
    for q in raw.chunks(32) {
        if dtype == DType::Q8_0 {
            data.extend_from_slice(&half::f16::from_f32(scale / 64.0).to_le_bytes());
            data.extend(q.iter().map(|&x| (x * 254.0) as i8 as u8));
        } else {
            data.extend_from_slice(&half::f16::from_f32(scale / 8.0).to_le_bytes());
            data.extend_from_slice(&half::f16::from_f32(-scale).to_le_bytes());
            data.extend((0..16).map(|i| (((q[i] + 0.5) * 15.99) as u8 & 15) | ((((q[i + 16] + 0.5) * 15.99) as u8 & 15) << 4)));
        }
    }
    HostTensor { dtype, shape: vec![n, k], data: data.into() }
}

struct Case {
    heads: usize,
    kv_heads: usize,
    hd: usize,
    seq_lens: Vec<usize>,
    /// None: float weight of the activation dtype.
    quant: Option<DType>,
    bias: bool,
}

/// (attention output as read by `to_host` after the matmul, matmul output, dispatches
/// from the attention to the matmul by `mark`: the backend's recorded dispatches) for `c`.
fn run<B: Backend>(be: &B, c: &Case, f16: bool, big_m: bool, mark: &dyn Fn() -> usize) -> (Vec<f32>, Vec<f32>, usize) {
    let rows = c.seq_lens.len();
    let (qw, kw) = (c.heads * c.hd, c.kv_heads * c.hd);
    let max_blocks = c.seq_lens.iter().max().unwrap().div_ceil(BLOCK);
    let num_blocks = rows * max_blocks + 1;
    let kc = be.upload(&float(&values(1, num_blocks * BLOCK * kw, 2.0), &[num_blocks, BLOCK, kw], f16)).unwrap();
    let vc = be.upload(&float(&values(2, num_blocks * BLOCK * kw, 2.0), &[num_blocks, BLOCK, kw], f16)).unwrap();
    let q = be.upload(&float(&values(3, rows * qw, 2.0), &[rows, qw], f16)).unwrap();
    // Sequence b's blocks: b, b + rows, b + 2 rows, ... (interleaved, not contiguous).
    let tables: Vec<u32> = (0..rows).flat_map(|b| (0..max_blocks).map(move |j| (b + j * rows) as u32)).collect();
    let meta = AttentionMetadata {
        query_start_loc: be.upload_u32(&(0..=rows as u32).collect::<Vec<_>>(), &[rows + 1]).unwrap(),
        seq_lens: be.upload_u32(&c.seq_lens.iter().map(|&l| l as u32).collect::<Vec<_>>(), &[rows]).unwrap(),
        block_tables: be.upload_u32(&tables, &[rows, max_blocks]).unwrap(),
        seq_order: be.upload_u32(&(0..rows as u32).collect::<Vec<_>>(), &[rows]).unwrap(),
        num_seqs: rows,
        num_decode_seqs: rows,
        max_blocks_per_seq: max_blocks,
        block_size: BLOCK,
        max_query_len: 1,
        max_seq_len: *c.seq_lens.iter().max().unwrap(),
    };
    let p = AttentionParams { num_heads: c.heads, num_kv_heads: c.kv_heads, head_dim: c.hd, scale: 1.0 / (c.hd as f32).sqrt(), sliding_window: None, softcap: None };
    let n = 70;
    let w = match c.quant {
        Some(d) => be.upload(&blocks(4, n, qw, d)).unwrap(),
        None => be.upload(&float(&values(4, n * qw, 0.5), &[n, qw], f16)).unwrap(),
    };
    let b = c.bias.then(|| be.upload(&float(&values(5, n, 1.0), &[n], f16)).unwrap());
    let m0 = mark();
    let a = be.paged_attention(&q, &kc, &vc, &meta, &p).unwrap();
    let o = if big_m {
        // Eight rows of x: the tiled kernel, which must see the merged rows.
        let x8 = be.gather_rows(&a, &be.upload_u32(&(0..8).map(|i| (i % rows) as u32).collect::<Vec<_>>(), &[8]).unwrap()).unwrap();
        be.matmul(&x8, &w, b.as_ref()).unwrap()
    } else {
        be.matmul(&a, &w, b.as_ref()).unwrap()
    };
    let dispatches = mark() - m0;
    let o = pollster::block_on(be.to_host(&o)).unwrap().to_f32();
    let a = pollster::block_on(be.to_host(&a)).unwrap().to_f32();
    (a, o, dispatches)
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for (heads, kv_heads, hd) in [(9, 3, 64), (4, 1, 40)] {
        for seq_lens in [vec![200], vec![33, 300], vec![130, 17, 260]] {
            for (quant, bias) in [(None, false), (None, true), (Some(DType::Q8_0), false), (Some(DType::Q4_1), true)] {
                v.push(Case { heads, kv_heads, hd, seq_lens: seq_lens.clone(), quant, bias });
            }
        }
    }
    v
}

fn max_rel(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
    got.iter().zip(want).fold(0.0f32, |m, (g, w)| if g.is_nan() { f32::INFINITY } else { m.max((g - w).abs() / scale) })
}

#[test]
fn fused_merge_matches_the_separate_merge_and_the_cpu() {
    let cpu = CpuBackend::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for f16 in [false, true] {
        let dtype = if f16 { DType::F16 } else { DType::F32 };
        let open = |fuse| {
            WgpuBackend::new_blocking(WgpuOptions { dtype: Some(dtype), poison_outputs: true, attn_splits: Some(4), fuse_merge: Some(fuse), ..Default::default() })
        };
        let (Ok(fused), Ok(apart)) = (open(true), open(false)) else {
            assert!(f16, "a wgpu adapter (lavapipe in CI)");
            continue;
        };
        for c in cases() {
            for big_m in [false, true] {
                let (fa, fo, fd) = run(&fused, &c, f16, big_m, &|| fused.pending_dispatches());
                let (sa, so, sd) = run(&apart, &c, f16, big_m, &|| apart.pending_dispatches());
                let name = format!("{dtype} heads {}/{} x {} seqs {:?} {:?} bias {} big_m {big_m}", c.heads, c.kv_heads, c.hd, c.seq_lens, c.quant, c.bias);
                ran += 1;
                // One dispatch fewer where the decode matvec merges (the 8-row matmul cannot).
                if fd + usize::from(!big_m) != sd {
                    failures.push(format!("{name}: {fd} dispatches fused, {sd} separate"));
                }
                // The merged rows are bit for bit the same; the products come from two
                // different shaders, which NVIDIA's Vulkan compiler contracts differently
                // (H100: f16 outputs a few ulps apart; lavapipe: the same bits), so f16
                // products agree within a couple of f16 ulps, f32 ones exactly.
                let out_ok = if f16 { max_rel(&fo, &so) <= 2e-3 } else { fo == so };
                if fa != sa || !out_ok {
                    failures.push(format!("{name}: fused differs from the separate merge (attn {:.2e}, out {:.2e})", max_rel(&fa, &sa), max_rel(&fo, &so)));
                }
                if c.quant.is_none() {
                    let (ca, co, _) = run(&cpu, &c, false, big_m, &|| 0);
                    let tol = if f16 { 2e-2 } else { 1e-4 };
                    let (ea, eo) = (max_rel(&fa, &ca), max_rel(&fo, &co));
                    if ea > tol || eo > tol {
                        failures.push(format!("{name}: vs cpu attn {ea:.2e}, out {eo:.2e} (tol {tol:.0e})"));
                    }
                }
            }
        }
    }
    assert!(ran >= 48, "only {ran} cases ran");
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}
