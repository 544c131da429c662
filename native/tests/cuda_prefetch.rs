//! The L2 prefetch of the next weights (native/src/cuda/prefetch.rs, `set_prefetch`; the
//! switch is set here through the setter, so `TESSERA_CUDA_PREFETCH` does not matter):
//! - the engine's greedy tokens with prefetch and decode-step graphs equal those without
//!   prefetch run eagerly, on the tiny fixtures (llama, qwen2, gemma3), f32 and bf16, batch
//!   1 and 3 (padded to 4 in the graphs), and prefetches were really launched;
//! - a graph recorded with a prefetch branch (fork after the q/k/v GEMV, join at the end)
//!   instantiates and replays, giving bit for bit the eager results of fresh inputs; eager
//!   prefetches change no result either; no prefetch above the GEMV cutover or when off.
//!
//! Runs on the GPU machine (scripts/gpu-suite.sh `quick`); without a GPU it fails (CI only
//! builds it). `TESSERA_FIXTURES` points at the models folder.

#![cfg(feature = "cuda")]

mod cuda_common;


use cuda_common::engine::{cuda_backend as backend, fixture_dir as dir, json_ids as ids};
use cuda_common::{run_seed, Rng};
use serde_json::Value;
use tessera::cuda::{CudaBackend, CudaTensor};
use tessera_core::backend::{Activation, Backend, Tensor};
use tessera_core::tensor::{DType, HostTensor};

/// Greedy tokens of `prompts` run together (request i asks for `lens[i]` tokens), the
/// runner's (graphs recorded, replays) and the prefetch launches.
fn run_batch(name: &str, dtype: DType, graphs: bool, prefetch: Option<usize>, prompts: &[Vec<u32>], lens: &[usize]) -> (Vec<Vec<u32>>, (u64, u64), u64) {
    cuda_common::engine::run_batch(name, dtype, graphs, false, prompts, lens, |b| b.set_prefetch(prefetch).unwrap(), |b| b.prefetch_launches())
}

#[test]
fn gpu_prefetch_with_graphs_matches_eager_without() {
    let mut wrong = Vec::new();
    for name in ["llama", "qwen2", "gemma3"] {
        let reference: Value = serde_json::from_str(&std::fs::read_to_string(dir(name).join("engine_reference.json")).unwrap()).unwrap();
        let all: Vec<Vec<u32>> = reference["cases"].as_array().unwrap().iter().map(|c| ids(&c["prompt_token_ids"])).collect();
        for dtype in [DType::F32, DType::BF16] {
            for n in [1usize, 3] {
                let prompts: Vec<Vec<u32>> = all.iter().take(n).cloned().collect();
                let lens: Vec<usize> = (0..n).map(|i| 20 + 5 * i).collect();
                let (eager, _, none) = run_batch(name, dtype, false, None, &prompts, &lens);
                assert_eq!(none, 0, "{name} {dtype}: prefetches launched while off");
                let (eager_pf, _, eager_launches) = run_batch(name, dtype, false, Some(1), &prompts, &lens);
                let (graphed, (captures, replays), launches) = run_batch(name, dtype, true, Some(1), &prompts, &lens);
                println!(
                    "PREFETCH {name} {dtype} batch {n}: {captures} graphs recorded, {replays} replays, {launches} prefetch launches \
                     ({eager_launches} eagerly)"
                );
                assert!(captures > 0 && replays > 0, "{name} {dtype} batch {n}: graphs were not used");
                assert!(launches > 0 && eager_launches > 0, "{name} {dtype} batch {n}: no prefetch was launched");
                for (what, got) in [("graphs + prefetch", &graphed), ("eager + prefetch", &eager_pf)] {
                    for (i, (g, w)) in got.iter().zip(&eager).enumerate() {
                        if g != w {
                            let first = g.iter().zip(w).position(|(a, b)| a != b).unwrap_or(0);
                            wrong.push(format!("{name} {dtype} batch {n} {what}, request {i}: first difference at token {first}"));
                        }
                    }
                }
            }
        }
    }
    for w in &wrong {
        println!("PREFETCH MISMATCH {w}");
    }
    assert!(wrong.is_empty(), "prefetch changed greedy tokens:\n{}", wrong.join("\n"));
}

/// A decode-like chain: q/k/v (one GEMV launch for small M), the prefetch hint, o_proj on
/// q, gate/up + SiLU on that.
struct Layer {
    qkv: [CudaTensor; 3],
    o: CudaTensor,
    gate: CudaTensor,
    up: CudaTensor,
}

impl Layer {
    fn new(b: &CudaBackend, rng: &mut Rng, hidden: usize, inter: usize) -> Layer {
        let mut t = |shape: &[usize]| {
            let v: Vec<f32> = (0..shape.iter().product::<usize>()).map(|_| rng.unit() - 0.5).collect();
            b.upload(&HostTensor::from_f32(&v, shape)).unwrap()
        };
        Layer {
            qkv: [t(&[hidden, hidden]), t(&[hidden / 4, hidden]), t(&[hidden / 4, hidden])],
            o: t(&[hidden, hidden]),
            gate: t(&[inter, hidden]),
            up: t(&[inter, hidden]),
        }
    }

    fn forward(&self, b: &CudaBackend, x: &CudaTensor) -> CudaTensor {
        let ws: Vec<_> = self.qkv.iter().map(|w| (w, None)).collect();
        let qkv = b.matmul_many(x, &ws).unwrap();
        let whole = |t: &CudaTensor| t.dtype().size() * t.numel();
        b.prefetch(&[(&self.o, whole(&self.o)), (&self.gate, whole(&self.gate)), (&self.up, whole(&self.up))]).unwrap();
        let a = b.matmul(&qkv[0], &self.o, None).unwrap();
        b.gated_matmul(&a, (&self.gate, None), (&self.up, None), Activation::Silu).unwrap()
    }
}

fn host(b: &CudaBackend, t: &CudaTensor) -> Vec<f32> {
    pollster::block_on(b.to_host(t)).unwrap().to_f32()
}

#[test]
fn gpu_prefetch_inside_a_recorded_graph_replays() {
    for dtype in [DType::F32, DType::BF16] {
        let b = backend(dtype);
        let mut rng = Rng::new(run_seed() ^ dtype.size() as u64);
        // f32: gate/up 4 MiB each, beyond the 2 MiB budget (the split is not trivial).
        let (hidden, inter) = (512, 2048);
        let layer = Layer::new(&b, &mut rng, hidden, inter);
        let inputs: Vec<Vec<f32>> = (0..4).map(|_| (0..hidden).map(|_| rng.unit() * 2.0 - 1.0).collect()).collect();
        let x = b.upload(&HostTensor::from_f32(&inputs[0], &[1, hidden])).unwrap();
        let out = b.zeros(&[1, inter]).unwrap();

        // Eager, prefetch off: the reference of every input.
        b.set_prefetch(None).unwrap();
        let reference: Vec<Vec<f32>> = inputs
            .iter()
            .map(|v| {
                let xi = b.upload(&HostTensor::from_f32(v, &[1, hidden])).unwrap();
                host(&b, &layer.forward(&b, &xi))
            })
            .collect();
        assert_eq!(b.prefetch_launches(), 0, "{dtype}: prefetch launched while off");

        // Eager with prefetch: one launch, same bits.
        b.set_prefetch(Some(2)).unwrap();
        let eager = host(&b, &layer.forward(&b, &x));
        assert_eq!(b.prefetch_launches(), 1, "{dtype}: one eager prefetch expected");
        assert_eq!(eager, reference[0], "{dtype}: an eager prefetch changed the result");

        // Above the GEMV cutover (M 64: cuBLAS) the hint does nothing.
        let big = b.upload(&HostTensor::from_f32(&vec![0.25f32; 64 * hidden], &[64, hidden])).unwrap();
        host(&b, &layer.forward(&b, &big));
        assert_eq!(b.prefetch_launches(), 1, "{dtype}: a prefetch after a cuBLAS-sized q/k/v product");

        // Recorded: the prefetch is a forked branch joined before the capture ends.
        b.graph_begin().unwrap();
        let recorded = {
            // h (a graph allocation) is freed inside the recording, before its end.
            let h = layer.forward(&b, &x);
            b.copy_into(&out, &h)
        };
        let id = b.graph_end(recorded.is_ok()).unwrap_or_else(|e| panic!("{dtype}: recording with a prefetch failed: {e} ({recorded:?})"));
        assert_eq!(b.prefetch_launches(), 2, "{dtype}: the recording launched no prefetch");
        for (i, v) in inputs.iter().enumerate() {
            let xi = b.upload(&HostTensor::from_f32(v, &[1, hidden])).unwrap();
            b.copy_into(&x, &xi).unwrap();
            b.graph_replay(id).unwrap();
            b.graph_replay(id).unwrap();
            let got = host(&b, &out);
            assert_eq!(got, reference[i], "{dtype}: replay {i} of the graph with a prefetch differs from eager");
        }
        b.synchronize().unwrap();
        println!("PREFETCH graph {dtype}: recorded and replayed {} times, results equal to eager", 2 * inputs.len());
    }
}
