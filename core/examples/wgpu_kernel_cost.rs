//! What each real decode kernel of SmolLM2-135M costs on this machine's wgpu adapter, as a
//! chain of dependent dispatches (each op reads the previous op's output, as in a decode
//! step), recorded once as a decode-step graph and replayed (tessera's own ops, the backend's
//! current switches: run it under different `TESSERA_WGPU_*` values to compare). Run by
//! scripts/wgpu-bench/compare.sh when carried:
//!
//! ```text
//! cargo run --release -p tessera-core --features wgpu --example wgpu_kernel_cost [f16|q4_1]...
//! chain                one link (hidden 576, 9 heads / 3 kv heads of 64, intermediate 1536)
//! qkv                  norm_matmul_many (input norm + residual, q/k/v 576 -> 576 + 192 + 192)
//! o_proj               matmul 576 -> 576
//! mlp                  norm_gated_matmul (576 -> 2 x 1536, silu) + down matmul 1536 -> 576
//! attn@L               write_kv + paged_attention of one row over L keys (fused on decode)
//! layer@L              qkv, attention, o_proj, mlp (the 5-6 dispatches of a decoder layer),
//!                      with the model's `prefetch` hint after qkv (this layer's o_proj and
//!                      MLP, the next layer's q/k/v)
//! model@L              layer@L cycling through 30 layers of distinct weights (as a decode
//!                      step reads them: from HBM, where the chains above hit the L2 cache)
//! tail                 embedding (tied Q8_0 / f16 table) + rms_norm + lm_head 576 -> 49152 + argmax
//! ```
//! µs per link = (wall of a replay of N2 links - wall of N1 links) / (N2 - N1), median of
//! several replays each followed by a read-back (the replay is prepared while the GPU runs
//! the previous one, as in the engine), so the fixed submit / read-back cost cancels out.

use std::time::Instant;

use tessera_core::backend::wgpu::{WgpuBackend, WgpuOptions};
use tessera_core::backend::{AttentionMetadata, AttentionParams, Backend, Normed, Tensor};
use tessera_core::tensor::{DType, HostTensor};

type T = <WgpuBackend as Backend>::Tensor;

const HIDDEN: usize = 576;
const HEADS: usize = 9;
const KV_HEADS: usize = 3;
const HD: usize = 64;
const INTER: usize = 1536;
const VOCAB: usize = 49152;
const BLOCK: usize = 16;
const MAX_CTX: usize = 1024;
/// Decoder layers of distinct weights the "model" chain cycles through (SmolLM2's 30).
const LAYERS: usize = 30;

fn values(seed: u32, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed.wrapping_mul(97_003)) >> 9;
            (h as f32 / (1u32 << 23) as f32 - 0.5) * scale
        })
        .collect()
}

fn f16_tensor(be: &WgpuBackend, v: &[f32], shape: &[usize]) -> T {
    let bytes: Vec<u8> = v.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect();
    be.upload(&HostTensor { dtype: DType::F16, shape: shape.to_vec(), data: bytes.into() }).unwrap()
}

/// A weight [n, k] of `dtype` (F16, Q4_1 or Q8_0 blocks with small scales).
fn weight(be: &WgpuBackend, seed: u32, n: usize, k: usize, dtype: DType) -> T {
    let scale = 1.0 / (k as f32).sqrt();
    if dtype == DType::F16 {
        return f16_tensor(be, &values(seed, n * k, 2.0 * scale), &[n, k]);
    }
    let blocks = n * k / 32;
    let bb = dtype.block_bytes();
    let mut data = Vec::with_capacity(blocks * bb);
    let raw = values(seed, blocks * 32, 1.0);
    for b in 0..blocks {
        let q = &raw[b * 32..b * 32 + 32];
        match dtype {
            DType::Q4_1 => {
                data.extend_from_slice(&half::f16::from_f32(scale / 8.0).to_le_bytes());
                data.extend_from_slice(&half::f16::from_f32(-scale).to_le_bytes());
                for i in 0..16 {
                    let lo = ((q[i] + 0.5) * 15.99) as u8 & 15;
                    let hi = ((q[i + 16] + 0.5) * 15.99) as u8 & 15;
                    data.push(lo | (hi << 4));
                }
            }
            DType::Q8_0 => {
                data.extend_from_slice(&half::f16::from_f32(scale / 64.0).to_le_bytes());
                data.extend(q.iter().map(|&x| (x * 254.0) as i8 as u8));
            }
            d => panic!("no blocks of {d}"),
        }
    }
    be.upload(&HostTensor { dtype, shape: vec![n, k], data: data.into() }).unwrap()
}

/// One decoder layer's matrices.
struct Layer {
    q: T,
    k: T,
    v: T,
    o: T,
    gate: T,
    up: T,
    down: T,
}

fn layer(be: &WgpuBackend, seed: u32, wt: DType) -> Layer {
    let width = KV_HEADS * HD;
    Layer {
        q: weight(be, seed, HIDDEN, HIDDEN, wt),
        k: weight(be, seed + 1, width, HIDDEN, wt),
        v: weight(be, seed + 2, width, HIDDEN, wt),
        o: weight(be, seed + 3, HIDDEN, HIDDEN, wt),
        gate: weight(be, seed + 4, INTER, HIDDEN, wt),
        up: weight(be, seed + 5, INTER, HIDDEN, wt),
        down: weight(be, seed + 6, HIDDEN, INTER, wt),
    }
}

struct Model {
    /// Layer 0 serves every chain but "model", which cycles through all of them.
    layers: Vec<Layer>,
    lm: T,
    norm: T,
    res: T,
    k_new: T,
    v_new: T,
    k_cache: T,
    v_cache: T,
    slots: T,
    meta: Vec<(usize, AttentionMetadata<T>)>,
}

/// The model's shared tensors and `n_layers` layers of distinct weights.
fn model(be: &WgpuBackend, wt: DType, lm: DType, n_layers: usize) -> Model {
    let norm = be.upload(&HostTensor::from_f32(&values(9, HIDDEN, 0.2).iter().map(|x| 1.0 + x).collect::<Vec<_>>(), &[HIDDEN])).unwrap();
    let blocks = MAX_CTX / BLOCK + 1;
    let width = KV_HEADS * HD;
    let cache = |seed| f16_or_act(be, &values(seed, blocks * BLOCK * width, 1.0), &[blocks, BLOCK, width]);
    let meta = [16usize, 128, 272, 528, 1000]
        .iter()
        .map(|&l| {
            let nb = l.div_ceil(BLOCK);
            let tables: Vec<u32> = (0..nb as u32).map(|j| blocks as u32 - 1 - j).collect();
            let m = AttentionMetadata {
                query_start_loc: be.upload_u32(&[0, 1], &[2]).unwrap(),
                seq_lens: be.upload_u32(&[l as u32], &[1]).unwrap(),
                block_tables: be.upload_u32(&tables, &[1, nb]).unwrap(),
                seq_order: be.upload_u32(&[0], &[1]).unwrap(),
                num_seqs: 1,
                num_decode_seqs: 1,
                max_blocks_per_seq: nb,
                block_size: BLOCK,
                max_query_len: 1,
                max_seq_len: l,
            };
            (l, m)
        })
        .collect();
    Model {
        layers: (0..n_layers.max(1)).map(|i| layer(be, 1 + 100 * i as u32, wt)).collect(),
        lm: weight(be, 8, VOCAB, HIDDEN, lm),
        norm,
        res: f16_or_act(be, &values(10, HIDDEN, 1.0), &[1, HIDDEN]),
        k_new: f16_or_act(be, &values(11, width, 1.0), &[1, width]),
        v_new: f16_or_act(be, &values(12, width, 1.0), &[1, width]),
        k_cache: cache(13),
        v_cache: cache(14),
        // The new row goes to a slot no key reads (the last block's last slot).
        slots: be.upload_u32(&[(blocks * BLOCK - 1) as u32], &[1]).unwrap(),
        meta,
    }
}

fn f16_or_act(be: &WgpuBackend, v: &[f32], shape: &[usize]) -> T {
    if be.activation_dtype() == DType::F16 {
        f16_tensor(be, v, shape)
    } else {
        be.upload(&HostTensor::from_f32(v, shape)).unwrap()
    }
}

const PARAMS: AttentionParams = AttentionParams { num_heads: HEADS, num_kv_heads: KV_HEADS, head_dim: HD, scale: 0.125, sliding_window: None, softcap: None };

fn normed<'a>(m: &'a Model, x: &'a T) -> Normed<'a, T> {
    Normed { x, residual: Some(&m.res), weight: &m.norm, eps: 1e-5, offset: 0.0 }
}

fn qkv(be: &WgpuBackend, m: &Model, w: &Layer, x: &T) -> T {
    let (mut outs, _) = be.norm_matmul_many(normed(m, x), &[(&w.q, None), (&w.k, None), (&w.v, None)]).unwrap();
    outs.swap_remove(0)
}

fn attention(be: &WgpuBackend, m: &mut Model, x: &T, ctx: usize) -> T {
    let (kc, vc) = (&mut m.k_cache, &mut m.v_cache);
    be.write_kv(kc, vc, &m.k_new, &m.v_new, &m.slots).unwrap();
    let meta = &m.meta.iter().find(|(l, _)| *l == ctx).unwrap().1;
    be.paged_attention(x, &m.k_cache, &m.v_cache, meta, &PARAMS).unwrap()
}

fn mlp(be: &WgpuBackend, m: &Model, w: &Layer, x: &T) -> T {
    let (h, _) = be.norm_gated_matmul(normed(m, x), (&w.gate, None), (&w.up, None), tessera_core::backend::Activation::Silu).unwrap();
    be.matmul(&h, &w.down, None).unwrap()
}

/// A decoder layer: qkv, attention over `ctx` keys, o_proj, mlp; after qkv the `prefetch`
/// hint of the weights read next (o_proj, the MLP, the next layer's q/k/v), as the model
/// gives it.
fn decoder_layer(be: &WgpuBackend, m: &mut Model, i: usize, x: &T, ctx: usize) -> T {
    let q = qkv(be, m, &m.layers[i], x);
    let (w, n) = (&m.layers[i], &m.layers[(i + 1) % m.layers.len()]);
    let next: Vec<(&T, usize)> =
        [&w.o, &w.gate, &w.up, &w.down, &n.q, &n.k, &n.v].into_iter().map(|t| (t, t.dtype().bytes_for(t.numel()).unwrap_or(0))).collect();
    be.prefetch(&next).unwrap();
    let a = attention(be, m, &q, ctx);
    let o = be.matmul(&a, &m.layers[i].o, None).unwrap();
    mlp(be, m, &m.layers[i], &o)
}

/// Link `i` of `chain` on `x` (shape [1, 576], or the ids [1] for "tail").
fn link(be: &WgpuBackend, m: &mut Model, chain: &str, i: usize, x: &T) -> T {
    let ctx = chain.split('@').nth(1).map(|c| c.parse().unwrap());
    match chain.split('@').next().unwrap() {
        "qkv" => qkv(be, m, &m.layers[0], x),
        "o_proj" => be.matmul(x, &m.layers[0].o, None).unwrap(),
        "mlp" => mlp(be, m, &m.layers[0], x),
        "attn" => attention(be, m, x, ctx.unwrap()),
        "layer" => decoder_layer(be, m, 0, x, ctx.unwrap()),
        "model" => decoder_layer(be, m, i % m.layers.len(), x, ctx.unwrap()),
        "tail" => {
            let e = be.embedding(&m.lm, x, 1.0).unwrap();
            let h = be.rms_norm(&e, &m.norm, 1e-5, 0.0).unwrap();
            let logits = be.matmul(&h, &m.lm, None).unwrap();
            be.argmax(&logits).unwrap()
        }
        c => panic!("unknown chain {c}"),
    }
}

/// Median wall seconds of a replay of `n` links of `chain` plus its read-back.
fn time_chain(be: &WgpuBackend, m: &mut Model, chain: &str, n: usize, reps: usize) -> f64 {
    let start = if chain == "tail" { be.upload_u32(&[7], &[1]).unwrap() } else { f16_or_act(be, &values(20, HIDDEN, 1.0), &[1, HIDDEN]) };
    be.graph_begin().unwrap();
    let mut x = link(be, m, chain, 0, &start);
    for i in 1..n {
        x = link(be, m, chain, i, &x);
    }
    let id = be.graph_end(true).unwrap();
    let mut t = Vec::with_capacity(reps);
    for i in 0..reps + 3 {
        let t0 = Instant::now();
        be.graph_replay(id).unwrap();
        // (Long chains of random weights may overflow: the values do not matter here.)
        pollster::block_on(be.to_host(&x)).unwrap();
        if i >= 3 {
            t.push(t0.elapsed().as_secs_f64());
        }
    }
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn main() {
    let be = WgpuBackend::new_blocking(WgpuOptions::default()).expect("a wgpu adapter");
    let info = be.adapter_info();
    let software = info.device_type == wgpu::DeviceType::Cpu;
    let switches: Vec<String> = std::env::vars().filter(|(k, _)| k.starts_with("TESSERA_WGPU_")).map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "adapter: {} ({:?}), activations {}, subgroups {} (adapter {}..{}), switches [{}]",
        info.name,
        info.backend,
        be.activation_dtype(),
        be.subgroup_size(),
        info.subgroup_min_size,
        info.subgroup_max_size,
        switches.join(" ")
    );
    let (n1, n2, reps) = if software { (2, 6, 3) } else { (20, 120, 15) };
    let models: Vec<String> = std::env::args().skip(1).collect();
    let models = if models.is_empty() { vec!["q4_1".to_string(), "f16".to_string()] } else { models };
    let chains: Vec<String> = std::env::var("CHAINS")
        .unwrap_or_else(|_| "qkv o_proj mlp attn@16 attn@272 attn@528 attn@1000 layer@272 model@272 tail".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    for name in &models {
        let (wt, lm) = match name.as_str() {
            "f16" => (DType::F16, DType::F16),
            "q4_1" => (DType::Q4_1, DType::Q8_0),
            n => panic!("model {n}: f16 or q4_1"),
        };
        let n_layers = if chains.iter().any(|c| c.starts_with("model")) { LAYERS } else { 1 };
        let mut m = model(&be, wt, lm, n_layers);
        let mut line = format!("{name:<5}");
        for chain in &chains {
            let a = time_chain(&be, &mut m, chain, n1, reps);
            let b = time_chain(&be, &mut m, chain, n2, reps);
            let us = (b - a) / (n2 - n1) as f64 * 1e6;
            line.push_str(&format!("  {chain} {us:.2}"));
        }
        println!("{line}   (µs per link; {} pipelines)", be.pipelines_compiled());
    }
}
