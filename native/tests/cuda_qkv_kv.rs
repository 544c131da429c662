//! `norm_qkv_write_kv` as one GEMV launch (native/src/cuda/qkv_kv.rs, `gemv_norm_kv_m*` in
//! kernels/gemv.cu) against the same op as its ops on the GPU (`set_fuse_qkv_kv(false)`:
//! normed GEMV, deferred rope, write_kv) and against the CPU backend, on fresh random inputs
//! (seed printed; `TESSERA_SEED` replays), outputs poisoned before every kernel.
//!
//! Cases: SmolLM3-3B's shapes (16/4 heads of 128, neox), Qwen2's (biases on q/k/v, head_dim
//! 64), partial interleaved rotary with per-token tables, NoPE, M 1..8 (M 1 and 2 put a RoPE
//! pair's rows in two warp groups and in one), forced K splits (8 is halved to keep pairs in a
//! block), a padding slot, M 12 (cuBLAS: the unfused body), and a slot past the cache
//! (reported as an error, nothing written). Against the unfused GPU path every output (q,
//! k, v, the residual sum, both caches) must be the same bits (but with forced 8 K splits,
//! which the one launch halves); against the CPU the usual 1e-5 / 1e-2. Each case prints `PARITY` lines. Runs on the GPU machine
//! (scripts/gpu-suite.sh); without a GPU it fails (CI only builds it).

#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{Ctx, DTYPES};
use tessera::cuda::CudaTensor;
use tessera_core::backend::cpu::CpuTensor;
use tessera_core::backend::{Backend, KvWrite, Normed, RopeArgs, RopeParams, RopeStyle};
use tessera_core::tensor::HostTensor;

/// A GPU result as a CPU tensor (to compare two GPU paths with `Ctx::check_tol`).
fn as_cpu(c: &Ctx, t: &CudaTensor) -> CpuTensor {
    let h = pollster::block_on(c.gpu.to_host(t)).expect("gpu read-back");
    c.cpu.upload(&HostTensor::from_f32(&h.to_f32(), &h.shape)).expect("cpu upload")
}

struct Case {
    k: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// (rotary_dim, style, per-token table); `None`: NoPE.
    rope: Option<(usize, RopeStyle, bool)>,
    bias: bool,
    ms: &'static [usize],
}

type Pair = (CudaTensor, CpuTensor);

struct Inputs {
    x: Pair,
    res: Pair,
    norm_w: Pair,
    w: [Pair; 3],
    b: [Pair; 3],
    kc: Pair,
    vc: Pair,
    slots: Pair,
    pos: Pair,
    freq: Option<Pair>,
}

fn inputs(c: &mut Ctx, a: &Case, m: usize, pad_slot: bool) -> Inputs {
    let d = a.head_dim;
    let ns = [a.heads * d, a.kv_heads * d, a.kv_heads * d];
    let (bs, blocks) = (16, 2 + m.div_ceil(16) * 2);
    let mut free: Vec<u32> = (0..(blocks * bs) as u32).collect();
    c.rng.shuffle(&mut free);
    let mut slots: Vec<u32> = free[..m].to_vec();
    if pad_slot && m > 1 {
        slots[1] = u32::MAX;
    }
    let positions: Vec<u32> = (0..m).map(|_| c.rng.below(4000) as u32).collect();
    let freq = a.rope.map(|(rd, _, per_token)| {
        let half = rd / 2;
        let shape = if per_token { vec![m, half] } else { vec![half] };
        let v: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|i| 10000f32.powf(-2.0 * (i % half) as f32 / rd as f32) * (1.0 + 0.05 * c.rng.unit()))
            .collect();
        // Flat, as the layers upload per-token tables (a 2-D upload takes the activation dtype).
        c.pair_exact(&v, &[v.len()])
    });
    Inputs {
        x: c.rand(&[m, a.k], 2.0),
        res: c.rand(&[m, a.k], 2.0),
        norm_w: c.rand(&[a.k], 1.0),
        w: ns.map(|n| c.rand(&[n, a.k], 0.5)),
        b: ns.map(|n| c.rand(&[n], 1.0)),
        kc: c.rand(&[blocks, bs, ns[1]], 1.0),
        vc: c.rand(&[blocks, bs, ns[2]], 1.0),
        slots: c.pair_u32(&slots, &[m]),
        pos: c.pair_u32(&positions, &[m]),
        freq,
    }
}

/// The op on backend `b`, reading each input's half `t` of its pair -> [q, k, v, sum,
/// k_cache, v_cache].
fn run<B: Backend>(b: &B, a: &Case, i: &Inputs, t: impl Fn(&Pair) -> &B::Tensor) -> [B::Tensor; 6]
where
    B::Tensor: Clone,
{
    let n = Normed { x: t(&i.x), residual: Some(t(&i.res)), weight: t(&i.norm_w), eps: 1e-6, offset: 0.0 };
    let qkv = [0, 1, 2].map(|j| (t(&i.w[j]), a.bias.then_some(t(&i.b[j]))));
    let params = a.rope.map(|(rd, style, _)| RopeParams { head_dim: a.head_dim, rotary_dim: rd, style, attention_scaling: 1.0 });
    let rope = params.map(|p| RopeArgs { positions: t(&i.pos), inv_freq: t(i.freq.as_ref().unwrap()), params: p });
    // Clones share the buffers: the op copies them before writing (copy-on-write).
    let (mut kc, mut vc) = (t(&i.kc).clone(), t(&i.vc).clone());
    let kv = KvWrite { k_cache: &mut kc, v_cache: &mut vc, slot_mapping: t(&i.slots) };
    let ([q, k, v], sum) = b.norm_qkv_write_kv(n, qkv, rope, kv).expect("norm_qkv_write_kv");
    [q, k, v, sum.expect("sum"), kc, vc]
}

/// The op on the GPU, as one launch or as its ops.
fn run_gpu(c: &Ctx, a: &Case, i: &Inputs, fused: bool) -> [CudaTensor; 6] {
    c.gpu.set_fuse_qkv_kv(fused);
    let r = run(&c.gpu, a, i, |p| &p.0);
    c.gpu.set_fuse_qkv_kv(true);
    r
}

const NAMES: [&str; 6] = ["q", "k", "v", "sum", "k_cache", "v_cache"];

#[test]
fn qkv_write_kv_fused() {
    let cases = [
        // SmolLM3-3B: 16 / 4 heads of 128, neox, no bias.
        Case { k: 2048, heads: 16, kv_heads: 4, head_dim: 128, rope: Some((128, RopeStyle::Neox, false)), bias: false, ms: &[1, 2, 3, 4, 6, 8, 12] },
        // Qwen2-0.5B-like: biases on q/k/v, head_dim 64, 14 / 2 heads.
        Case { k: 896, heads: 14, kv_heads: 2, head_dim: 64, rope: Some((64, RopeStyle::Neox, false)), bias: true, ms: &[1, 4] },
        // Partial interleaved rotary with per-token tables (dynamic NTK's), odd head counts.
        Case { k: 512, heads: 3, kv_heads: 1, head_dim: 64, rope: Some((32, RopeStyle::Interleaved, true)), bias: false, ms: &[1, 3] },
        // Partial neox rotary.
        Case { k: 256, heads: 4, kv_heads: 2, head_dim: 96, rope: Some((64, RopeStyle::Neox, false)), bias: true, ms: &[2] },
        // NoPE.
        Case { k: 256, heads: 2, kv_heads: 1, head_dim: 64, rope: None, bias: false, ms: &[1, 2] },
    ];
    for dtype in DTYPES {
        let Some(mut c) = Ctx::new(dtype, "qkv_write_kv_fused") else { return };
        c.gpu.set_gemv_max_m(Some(8));
        for a in &cases {
            for &m in a.ms {
                for (splits, pad) in [(0u32, false), (0, true), (2, false), (8, false)] {
                    if splits != 0 && m > 2 {
                        continue;
                    }
                    c.gpu.set_gemv_splits(splits);
                    let i = inputs(&mut c, a, m, pad);
                    let before = c.gpu.qkv_kv_launches();
                    let fused = run_gpu(&c, a, &i, true);
                    let launched = c.gpu.qkv_kv_launches() - before;
                    let plain = run_gpu(&c, a, &i, false);
                    let want = run(&c.cpu, a, &i, |p| &p.1);
                    c.gpu.set_gemv_splits(0);
                    let label = format!(
                        "K{} H{}/{} D{} rope{:?} bias={} M{m} splits={splits} pad={pad}",
                        a.k, a.heads, a.kv_heads, a.head_dim, a.rope, a.bias
                    );
                    // M <= 8 takes the one launch when x fits the normed kernels' shared
                    // memory (gemv.rs NORM_SMEM, 44 KiB: f32 stops at M 5 for K 2048); M 12
                    // (cuBLAS) takes the unfused body.
                    let expect = u64::from(m <= 8 && m * a.k * dtype.size() <= 44 * 1024);
                    let ok = if launched == expect { "ok" } else { "FAIL" };
                    println!("PARITY qkv_kv.launches {} [{label}] {launched} expected {expect} {ok}", dtype.hf_name());
                    assert_eq!(launched, expect, "{label}: one-launch path taken {launched} times");
                    // Forced 8 K splits: the one launch halves them (pairs in a block), so its
                    // sums are added in another order than the unfused product's.
                    let tol = if splits == 8 { c.tolerance() } else { 1e-12 };
                    for j in 0..6 {
                        let p = as_cpu(&c, &plain[j]);
                        c.check_tol("qkv_kv.vs_unfused", &format!("{label} {}", NAMES[j]), &fused[j], &p, tol);
                        c.check("qkv_kv.vs_cpu", &format!("{label} {}", NAMES[j]), &fused[j], &want[j]);
                    }
                }
            }
        }
        c.finish();
    }
}

/// A slot past the cache is reported by the next read-back, as write_kv reports it.
#[test]
fn qkv_write_kv_bad_slot() {
    let Some(mut c) = Ctx::new(tessera_core::tensor::DType::BF16, "qkv_write_kv_bad_slot") else { return };
    // Without a sync after each launch, so the error waits for the read-back.
    c.gpu.set_sync_launches(false);
    let a = Case { k: 256, heads: 2, kv_heads: 1, head_dim: 64, rope: Some((64, RopeStyle::Neox, false)), bias: false, ms: &[1] };
    let mut i = inputs(&mut c, &a, 2, false);
    let blocks = tessera_core::backend::Tensor::shape(&i.kc.0)[0];
    i.slots = c.pair_u32(&[3, (blocks * 16 + 5) as u32], &[2]);
    let before = c.gpu.qkv_kv_launches();
    let out = run_gpu(&c, &a, &i, true);
    assert_eq!(c.gpu.qkv_kv_launches() - before, 1);
    let err = pollster::block_on(c.gpu.to_host(&out[0])).expect_err("a slot past the cache must be reported");
    let msg = err.to_string();
    println!("bad slot: {msg}");
    assert!(msg.contains("slot"), "error names the slot: {msg}");
}
