//! The GEMV micro-benches' shared pieces (cuda_ops' `gemv_bench`, cuda_gemv1's `gemv1_bench`):
//! random bf16 weights in rotating device copies, and one product's time inside a CUDA graph.

use std::time::Instant;

use tessera::cuda::{CudaBackend, CudaTensor};
use tessera_core::backend::Backend;
use tessera_core::tensor::{DType, HostTensor};

use super::Rng;

/// A `[rows, k]` bf16 tensor of random bits in ±[2^-7, 1): sign, exponent 120..126, random
/// mantissa.
pub fn random_bf16(rng: &mut Rng, rows: usize, k: usize) -> HostTensor<'static> {
    let mut data = Vec::with_capacity(rows * k * 2);
    for _ in 0..rows * k {
        let r = rng.next_u64();
        let bits = (((r >> 16) & 1) << 15) as u16
            | ((120 + (r >> 20) % 7) << 7) as u16
            | (r & 0x7f) as u16;
        data.extend_from_slice(&bits.to_le_bytes());
    }
    HostTensor {
        dtype: DType::BF16,
        shape: vec![rows, k],
        data: data.into(),
    }
}

/// Random bf16 `[n, k]` weights for each `n` of `ns`, uploaded in enough copies (1..64) to
/// span 256 MiB, so a graph over the copies streams from HBM rather than L2. Returns the
/// copies (`[matrix][copy]`), their count and the bytes of one copy of all the matrices.
pub fn weight_copies(
    be: &CudaBackend,
    rng: &mut Rng,
    ns: &[usize],
    k: usize,
) -> (Vec<Vec<CudaTensor>>, usize, usize) {
    let bytes: usize = ns.iter().map(|n| n * k * 2).sum();
    let copies = (256usize << 20).div_ceil(bytes).clamp(1, 64);
    let mats = ns
        .iter()
        .map(|&n| {
            let h = random_bf16(rng, n, k);
            (0..copies).map(|_| be.upload(&h).unwrap()).collect()
        })
        .collect();
    (mats, copies, bytes)
}

/// Seconds per call of `run(c)`, `c` over `0..copies`: eager once (compiles, allocates), then
/// one graph over every copy, replayed (at least 2000 calls a sample, 3..200 replays); the
/// median of 5 samples.
pub fn graph_secs_per_call<T>(be: &CudaBackend, copies: usize, run: impl Fn(usize) -> T) -> f64 {
    drop(run(0));
    be.synchronize().unwrap();
    be.graph_begin().unwrap();
    let mut outs = Vec::new();
    for c in 0..copies {
        outs.push(run(c));
    }
    drop(outs);
    let id = be.graph_end(true).unwrap();
    be.graph_replay(id).unwrap();
    be.synchronize().unwrap();
    let reps = (2000 / copies).clamp(3, 200);
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for _ in 0..reps {
            be.graph_replay(id).unwrap();
        }
        be.synchronize().unwrap();
        times.push(t0.elapsed().as_secs_f64() / (reps * copies) as f64);
    }
    times.sort_by(f64::total_cmp);
    times[2]
}
