//! Quantized weights through the CPU backend: upload (x8 repacking or plain blocks),
//! `matmul` against dequantize-then-f64 for every block format, odd M (1, 3, 17), both
//! layouts, every SIMD level and thread count; embedding rows; clear errors (not panics);
//! and a tiny model whose quantized weights give nearly the logits of its dequantized
//! f32 version.

mod cpu_quant_util;

use std::borrow::Cow;
use std::path::PathBuf;

use cpu_quant_util::{dequant, q8_bound, quantize, random_blocks, Rng, ALL};
use tessera_core::backend::cpu::{CpuBackend, CpuStorage, CpuTensor, QuantLayout};
use tessera_core::backend::{Backend, BackendError, Op, Tensor};
use tessera_core::config::ModelConfig;
use tessera_core::models::{load_model, BatchInput};
use tessera_core::quant::isa::Isa;
use tessera_core::tensor::{DType, HostTensor};
use tessera_core::weights::{SafetensorsWeights, WeightSource, WeightsError};

fn quant_host(dtype: DType, shape: &[usize], data: Vec<u8>) -> HostTensor<'static> {
    HostTensor { dtype, shape: shape.to_vec(), data: Cow::Owned(data) }
}

fn host(be: &CpuBackend, t: &CpuTensor) -> Vec<f32> {
    pollster::block_on(be.to_host(t)).expect("to_host").to_f32()
}

fn layout(t: &CpuTensor) -> QuantLayout {
    match t.storage() {
        CpuStorage::Quant(q) => q.layout,
        _ => panic!("not quantized"),
    }
}

/// Backends at every SIMD level, with 1 and 2 threads.
fn backends() -> Vec<(String, CpuBackend)> {
    let mut out = Vec::new();
    for isa in Isa::available() {
        for threads in [1, 2] {
            let be = CpuBackend::with_threads(threads).unwrap().with_isa(isa.level()).unwrap();
            out.push((format!("{isa}/{threads}t"), be));
        }
    }
    out
}

/// `(n, k)` cases per type: an x8-repackable shape and a plain one where the type repacks.
fn shapes(dtype: DType) -> Vec<(usize, usize)> {
    match dtype.block_len() {
        256 => vec![(12, 256), (5, 512)],
        _ => vec![(24, 128), (8, 576), (12, 96), (5, 32)],
    }
}

#[test]
fn quantized_matmul_matches_dequantized_reference() {
    let mut rng = Rng::new(3);
    let backends = backends();
    for dtype in ALL {
        for (n, k) in shapes(dtype) {
            let w = random_blocks(&mut rng, dtype, n * k / dtype.block_len());
            let wf = dequant(dtype, &w);
            let host_w = quant_host(dtype, &[n, k], w);
            let bias = rng.vec(n, 1.0);
            for m in [1usize, 3, 17] {
                let x = rng.vec(m * k, 2.0);
                let mut first: Option<Vec<f32>> = None;
                for (name, be) in &backends {
                    let wt = be.upload(&host_w).unwrap();
                    let repacked = matches!(dtype, DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0) && n % 8 == 0 && k % 64 == 0;
                    assert_eq!(matches!(layout(&wt), QuantLayout::X8(_)), repacked, "{dtype} [{n}, {k}]");
                    assert_eq!(wt.dtype(), dtype);
                    let xt = be.upload(&HostTensor::from_f32(&x, &[m, k])).unwrap();
                    let bt = be.upload(&HostTensor::from_f32(&bias, &[n])).unwrap();
                    let out = host(be, &be.matmul(&xt, &wt, Some(&bt)).unwrap());
                    assert_eq!(out.len(), m * n);
                    for i in 0..m {
                        for j in 0..n {
                            let (wr, xr) = (&wf[j * k..(j + 1) * k], &x[i * k..(i + 1) * k]);
                            let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() + bias[j] as f64;
                            let got = out[i * n + j] as f64;
                            let bound = q8_bound(wr, xr, dtype.block_len()) + 1e-6 * bias[j].abs() as f64;
                            assert!((got - exact).abs() <= bound, "{dtype} [{n},{k}] m={m} {name} ({i},{j}): {got} vs {exact} (bound {bound})");
                        }
                    }
                    // Same level, any thread count: bit-identical results.
                    if name.ends_with("/1t") {
                        first = Some(out);
                    } else if let Some(f) = first.take() {
                        assert_eq!(f, out, "{dtype} m={m} {name}: thread count changed the result");
                    }
                }
            }
        }
    }
}

#[test]
fn larger_prefill_and_decode_shapes() {
    // SmolLM2-like projection shapes through both thread splits (M = 1 and M = 70).
    let mut rng = Rng::new(5);
    for dtype in [DType::Q4_1, DType::Q8_0, DType::Q4_K] {
        let (n, k) = (192, 768);
        let w = random_blocks(&mut rng, dtype, n * k / dtype.block_len());
        let wf = dequant(dtype, &w);
        for m in [1usize, 70] {
            let x = rng.vec(m * k, 1.0);
            let be = CpuBackend::with_threads(2).unwrap();
            let wt = be.upload(&quant_host(dtype, &[n, k], w.clone())).unwrap();
            let out = host(&be, &be.matmul(&be.upload(&HostTensor::from_f32(&x, &[m, k])).unwrap(), &wt, None).unwrap());
            for i in 0..m {
                for j in 0..n {
                    let (wr, xr) = (&wf[j * k..(j + 1) * k], &x[i * k..(i + 1) * k]);
                    let exact: f64 = wr.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                    assert!((out[i * n + j] as f64 - exact).abs() <= q8_bound(wr, xr, dtype.block_len()), "{dtype} m={m} ({i},{j})");
                }
            }
        }
    }
}

#[test]
fn quantized_embedding_dequantizes_the_gathered_rows() {
    let mut rng = Rng::new(9);
    let be = CpuBackend::with_threads(2).unwrap();
    for (dtype, vocab, hidden) in [(DType::Q8_0, 16, 64), (DType::Q4_1, 10, 96), (DType::Q6_K, 3, 256), (DType::Q4_K, 4, 512)] {
        let w = random_blocks(&mut rng, dtype, vocab * hidden / dtype.block_len());
        let wf = dequant(dtype, &w);
        let table = be.upload(&quant_host(dtype, &[vocab, hidden], w)).unwrap();
        assert!(be.supports(Op::Embedding, dtype) && be.supports(Op::Matmul, dtype));
        let ids = [0u32, (vocab - 1) as u32, 2, 2];
        let idt = be.upload_u32(&ids, &[4]).unwrap();
        for scale in [1.0f32, 8.0] {
            let out = host(&be, &be.embedding(&table, &idt, scale).unwrap());
            for (t, &id) in ids.iter().enumerate() {
                let want: Vec<f32> = wf[id as usize * hidden..][..hidden].iter().map(|v| v * scale).collect();
                assert_eq!(&out[t * hidden..(t + 1) * hidden], &want[..], "{dtype} id {id} scale {scale}");
            }
        }
        assert!(matches!(be.embedding(&table, &be.upload_u32(&[vocab as u32], &[1]).unwrap(), 1.0), Err(BackendError::Shape { .. })));
    }
}

#[test]
fn quantized_errors_are_errors_not_panics() {
    let be = CpuBackend::new();
    let mut rng = Rng::new(2);
    // K not a multiple of the block size.
    for (dtype, k) in [(DType::Q4_0, 48usize), (DType::Q8_0, 16), (DType::Q4_K, 384), (DType::Q6_K, 128)] {
        let bytes = 4 * k.div_ceil(dtype.block_len()) * dtype.block_bytes();
        let r = be.upload(&quant_host(dtype, &[4, k], vec![0; bytes]));
        assert!(matches!(r, Err(BackendError::Shape { op: Op::Upload, .. })), "{dtype} k={k}: {r:?}");
    }
    // Byte counts that do not match the shape.
    let r = be.upload(&quant_host(DType::Q4_1, &[8, 64], vec![0; 8 * 2 * 20 - 1]));
    assert!(matches!(r, Err(BackendError::Shape { .. })), "{r:?}");
    let w = be.upload(&quant_host(DType::Q4_1, &[8, 64], random_blocks(&mut rng, DType::Q4_1, 16))).unwrap();
    // Inner dimensions differ.
    let x = be.upload(&HostTensor::from_f32(&rng.vec(2 * 32, 1.0), &[2, 32])).unwrap();
    assert!(matches!(be.matmul(&x, &w, None), Err(BackendError::Shape { op: Op::Matmul, .. })));
    // Quantized tensors are weights: other ops and read-back say so.
    assert!(matches!(be.add(&w, &w), Err(BackendError::Unsupported { dtype: DType::Q4_1, .. })));
    assert!(matches!(pollster::block_on(be.to_host(&w)), Err(BackendError::Unsupported { op: Op::ToHost, .. })));
    assert!(matches!(be.matmul(&w, &w, None), Err(BackendError::Unsupported { .. })));
    // A quantized 1-D tensor uploads (plain) but is no matmul weight.
    let v = be.upload(&quant_host(DType::Q8_0, &[64], random_blocks(&mut rng, DType::Q8_0, 2))).unwrap();
    let x = be.upload(&HostTensor::from_f32(&rng.vec(64, 1.0), &[1, 64])).unwrap();
    assert!(matches!(be.matmul(&x, &v, None), Err(BackendError::Shape { .. })));
}

// ---- model level ----------------------------------------------------------------------------

/// The llama fixture with every 2-D weight quantized to `dtype` — served either as blocks or
/// as their dequantized f32 values (`dequantized`).
struct QuantizedSource {
    inner: SafetensorsWeights,
    dtype: DType,
    dequantized: bool,
}

impl WeightSource for QuantizedSource {
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'_>, WeightsError> {
        let t = self.inner.get(name, shape)?;
        if shape.len() != 2 || shape[1] % 32 != 0 {
            return Ok(t);
        }
        let blocks = quantize(self.dtype, &t.to_f32());
        Ok(if self.dequantized {
            HostTensor::from_f32(&dequant(self.dtype, &blocks), shape).into_owned()
        } else {
            quant_host(self.dtype, shape, blocks)
        })
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn describe(&self) -> String {
        format!("{} quantized to {}", self.inner.describe(), self.dtype)
    }
}

fn last_logits(dtype: DType, dequantized: bool, prompt: &[u32]) -> Vec<f32> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/llama");
    let config = ModelConfig::from_json_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let source = QuantizedSource { inner: SafetensorsWeights::from_dir(&dir).unwrap(), dtype, dequantized };
    let be = CpuBackend::with_threads(2).unwrap();
    let model = load_model(&be, &config, &source).unwrap();
    let mut r = tessera_core::engine::ModelRunner::new(be, model, 16, 16).unwrap();
    // Blocks 1.. (block 0 is the null block).
    let table: Vec<u32> = (1..=prompt.len().div_ceil(16) as u32).collect();
    let input = BatchInput {
        input_ids: prompt.to_vec(),
        positions: (0..prompt.len() as u32).collect(),
        slot_mapping: (0..prompt.len() as u32).map(|p| table[p as usize / 16] * 16 + p % 16).collect(),
        query_start_loc: vec![0, prompt.len() as u32],
        seq_lens: vec![prompt.len() as u32],
        block_tables: vec![table],
        logits_indices: vec![prompt.len() as u32 - 1],
    };
    let logits = r.execute(&input).unwrap();
    host(&r.backend, &logits)
}

#[test]
fn quantized_model_matches_its_dequantized_f32_version() {
    let prompt: Vec<u32> = (0..40).map(|i| (i * 37 + 11) % 512).collect();
    for dtype in [DType::Q8_0, DType::Q4_1, DType::Q4_0] {
        let q = last_logits(dtype, false, &prompt);
        let f = last_logits(dtype, true, &prompt);
        let range = f.iter().cloned().fold(f32::MIN, f32::max) - f.iter().cloned().fold(f32::MAX, f32::min);
        let err = q.iter().zip(&f).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / range;
        println!("{dtype}: max |Δlogit| / range = {err:.2e}");
        assert!(err < 5e-2, "{dtype}: quantized vs dequantized logits differ by {err} of the range");
        let argmax = |v: &[f32]| v.iter().enumerate().fold(0, |b, (i, &x)| if x > v[b] { i } else { b });
        assert_eq!(argmax(&q), argmax(&f), "{dtype}: same greedy token");
    }
}

// ---- the f32 ops with SIMD paths agree across levels ----------------------------------------

#[test]
fn attention_and_silu_agree_across_isa_levels() {
    use tessera_core::backend::{Activation, AttentionMetadata, AttentionParams};
    let mut rng = Rng::new(21);
    for (d, window, softcap) in [(64usize, None, None), (32, Some(7), None), (20, None, Some(5.0f32)), (128, None, None)] {
        let (h, kvh, bs) = (4usize, 2usize, 4usize);
        // Two sequences: 19 cached+new tokens (7 new), and a decode row at position 9.
        let seqs = [(19usize, 7usize), (10, 1)];
        let tokens: usize = seqs.iter().map(|s| s.1).sum();
        let blocks = 16;
        let k = rng.vec(blocks * bs * kvh * d, 1.0);
        let v = rng.vec(blocks * bs * kvh * d, 1.0);
        let q = rng.vec(tokens * h * d, 1.0);
        let tables = [[1u32, 3, 5, 7, 9], [2, 4, 6, 0, 0]];
        let mut reference: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let be = CpuBackend::with_threads(2).unwrap().with_isa(isa.level()).unwrap();
            let meta = AttentionMetadata {
                query_start_loc: be.upload_u32(&[0, 7, 8], &[3]).unwrap(),
                seq_lens: be.upload_u32(&[19, 10], &[2]).unwrap(),
                block_tables: be.upload_u32(&tables.concat(), &[2, 5]).unwrap(),
                seq_order: be.upload_u32(&[1, 0], &[2]).unwrap(),
                num_seqs: 2,
                num_decode_seqs: 1,
                max_blocks_per_seq: 5,
                block_size: bs,
                max_query_len: 7,
                max_seq_len: 19,
            };
            let p = AttentionParams { num_heads: h, num_kv_heads: kvh, head_dim: d, scale: 0.3, sliding_window: window, softcap };
            let kc = be.upload(&HostTensor::from_f32(&k, &[blocks, bs, kvh * d])).unwrap();
            let vc = be.upload(&HostTensor::from_f32(&v, &[blocks, bs, kvh * d])).unwrap();
            let qt = be.upload(&HostTensor::from_f32(&q, &[tokens, h * d])).unwrap();
            let out = host(&be, &be.paged_attention(&qt, &kc, &vc, &meta, &p).unwrap());
            let g = rng.vec(300, 8.0);
            let u = rng.vec(300, 1.0);
            let act = host(&be, &be.act_mul(&be.upload(&HostTensor::from_f32(&g, &[3, 100])).unwrap(), &be.upload(&HostTensor::from_f32(&u, &[3, 100])).unwrap(), Activation::Silu).unwrap());
            for ((&a, &gv), &uv) in act.iter().zip(&g).zip(&u) {
                let want = gv as f64 / (1.0 + (-gv as f64).exp()) * uv as f64;
                assert!((a as f64 - want).abs() <= 1e-6 * want.abs().max(1.0), "{isa} silu({gv}) * {uv}: {a} vs {want}");
            }
            let gelu = host(&be, &be.act_mul(&be.upload(&HostTensor::from_f32(&g, &[3, 100])).unwrap(), &be.upload(&HostTensor::from_f32(&u, &[3, 100])).unwrap(), Activation::GeluTanh).unwrap());
            for ((&a, &gv), &uv) in gelu.iter().zip(&g).zip(&u) {
                let x = gv as f64;
                let want = 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()) * uv as f64;
                assert!((a as f64 - want).abs() <= 1e-6 * (x.abs() * uv.abs() as f64).max(1.0), "{isa} gelu_tanh({gv}) * {uv}: {a} vs {want}");
            }
            match &reference {
                None => reference = Some(out),
                Some(r) => {
                    let err = r.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                    assert!(err < 1e-5, "d={d} {isa}: attention differs from scalar by {err}");
                }
            }
        }
    }
}
