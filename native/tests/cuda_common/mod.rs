//! Shared by the CUDA test files: the seeded RNG, the GPU/CPU pair context with its parity
//! check (poisoned outputs, NaN check, relative L2 error, one `PARITY` line per case), and
//! the paged-attention case builder; `bench`: the GEMV micro-benches' weights and graph timing.

#![allow(dead_code)]

pub mod bench;
pub mod engine;

use tessera::cuda::{CudaBackend, CudaTensor};
use tessera_core::backend::cpu::{CpuBackend, CpuTensor};
use tessera_core::backend::{decode_first, AttentionMetadata, AttentionParams, Backend, Tensor};
use tessera_core::tensor::{DType, HostTensor};

pub const DTYPES: [DType; 3] = [DType::F32, DType::F16, DType::BF16];

/// Whether a missing GPU must fail the tests (the GPU suite sets it).
pub fn require_gpu() -> bool {
    std::env::var("TESSERA_REQUIRE_GPU").map(|v| v == "1").unwrap_or(false)
}

/// The run's seed: `TESSERA_SEED`, else fresh from the clock (printed by every context).
pub fn run_seed() -> u64 {
    std::env::var("TESSERA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

pub struct Ctx {
    pub gpu: CudaBackend,
    pub cpu: CpuBackend,
    pub dtype: DType,
    pub rng: Rng,
    test: &'static str,
    failures: Vec<String>,
}

impl Ctx {
    /// A GPU backend of `dtype` with poisoned outputs and a sync after every launch. These
    /// tests exist to run on the GPU machine (scripts/gpu-suite.sh); without a GPU they fail
    /// rather than pass vacuously (CI only builds them).
    pub fn new(dtype: DType, test: &'static str) -> Option<Ctx> {
        let gpu = match CudaBackend::new(0, dtype) {
            Ok(g) => g,
            Err(e) => {
                panic!("{test}: the CUDA backend is not available here ({e}); run on the GPU machine");
            }
        };
        gpu.set_poison_outputs(true);
        gpu.set_sync_launches(true);
        let seed = run_seed() ^ test.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) ^ dtype.size() as u64;
        println!("SEED {test} {dtype}: {seed} (replay with TESSERA_SEED and the same test)");
        Some(Ctx { gpu, cpu: CpuBackend::new(), dtype, rng: Rng::new(seed), test, failures: Vec::new() })
    }

    /// The same values on both backends: uploaded to the GPU (rounded to its storage), read
    /// back, and the read-back values uploaded to the CPU.
    pub fn pair_exact(&mut self, values: &[f32], shape: &[usize]) -> (CudaTensor, CpuTensor) {
        let g = self.gpu.upload(&HostTensor::from_f32(values, shape)).expect("gpu upload");
        let back = pollster::block_on(self.gpu.to_host(&g)).expect("gpu read-back").to_f32();
        let c = self.cpu.upload(&HostTensor::from_f32(&back, shape)).expect("cpu upload");
        (g, c)
    }

    /// Uniform values in [-amp, amp).
    pub fn rand(&mut self, shape: &[usize], amp: f32) -> (CudaTensor, CpuTensor) {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| (self.rng.unit() * 2.0 - 1.0) * amp).collect();
        self.pair_exact(&v, shape)
    }

    pub fn pair_u32(&mut self, values: &[u32], shape: &[usize]) -> (CudaTensor, CpuTensor) {
        (self.gpu.upload_u32(values, shape).expect("gpu upload_u32"), self.cpu.upload_u32(values, shape).expect("cpu upload_u32"))
    }

    pub fn tolerance(&self) -> f64 {
        if self.dtype == DType::F32 {
            1e-5
        } else {
            1e-2
        }
    }

    /// Compares a GPU result with the CPU reference; records a failure instead of panicking
    /// so one run reports every case.
    pub fn check(&mut self, op: &str, case: &str, got: &CudaTensor, want: &CpuTensor) {
        let tol = self.tolerance();
        self.check_tol(op, case, got, want, tol)
    }

    /// [`check`](Self::check) with an explicit tolerance.
    pub fn check_tol(&mut self, op: &str, case: &str, got: &CudaTensor, want: &CpuTensor, tol: f64) {
        let line = match (pollster::block_on(self.gpu.to_host(got)), pollster::block_on(self.cpu.to_host(want))) {
            (Ok(g), Ok(w)) if g.shape == w.shape => {
                let (g, w) = (g.to_f32(), w.to_f32());
                let nan = g.iter().zip(&w).filter(|(a, b)| a.is_nan() && !b.is_nan()).count();
                let (mut diff, mut norm) = (0f64, 0f64);
                for (&a, &b) in g.iter().zip(&w) {
                    if a.is_finite() && b.is_finite() {
                        diff += (a as f64 - b as f64).powi(2);
                        norm += (b as f64).powi(2);
                    } else if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) {
                        diff = f64::INFINITY;
                    }
                }
                let rel = if norm > 0.0 { (diff / norm).sqrt() } else { diff.sqrt() };
                let ok = nan == 0 && rel < tol;
                format!("{} rel={rel:.2e} tol={tol:.0e} nan={nan} {}", g.len(), if ok { "ok" } else { "FAIL" })
            }
            (Ok(g), Ok(w)) => format!("shape {:?} != {:?} FAIL", g.shape, w.shape),
            (Err(e), _) | (_, Err(e)) => format!("error {e} FAIL"),
        };
        self.record(op, case, line);
    }

    /// Exact comparison of u32 results (argmax).
    pub fn check_u32(&mut self, op: &str, case: &str, got: &CudaTensor, want: &CpuTensor) {
        let line = match (pollster::block_on(self.gpu.to_host(got)), pollster::block_on(self.cpu.to_host(want))) {
            (Ok(g), Ok(w)) => {
                let (g, w) = (g.to_u32(), w.to_u32());
                let bad = g.iter().zip(&w).filter(|(a, b)| a != b).count() + g.len().abs_diff(w.len());
                format!("{} mismatches={bad} {}", g.len(), if bad == 0 { "ok" } else { "FAIL" })
            }
            (Err(e), _) | (_, Err(e)) => format!("error {e} FAIL"),
        };
        self.record(op, case, line);
    }

    /// Exact comparison of host id lists (sampling).
    pub fn check_ids(&mut self, op: &str, case: &str, got: &[u32], want: &[u32]) {
        let bad = got.iter().zip(want).filter(|(a, b)| a != b).count() + got.len().abs_diff(want.len());
        let line = format!("{} mismatches={bad} {}", want.len(), if bad == 0 { "ok" } else { "FAIL" });
        self.record(op, case, line);
    }

    fn record(&mut self, op: &str, case: &str, line: String) {
        let dtype = self.dtype.hf_name();
        println!("PARITY {op} {dtype} [{case}] {line}");
        if line.ends_with("FAIL") {
            self.failures.push(format!("{op} {dtype} [{case}]: {line}"));
        }
    }

    /// Fails the test if any case failed (after all of them ran).
    pub fn finish(&mut self) {
        let f = std::mem::take(&mut self.failures);
        assert!(f.is_empty(), "{}: {} case(s) failed:\n{}", self.test, f.len(), f.join("\n"));
    }
}

/// One paged-attention configuration: `seqs` = (q_len, seq_len) per sequence.
pub struct AttnCase {
    pub seqs: Vec<(usize, usize)>,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    pub window: Option<usize>,
    pub softcap: Option<f32>,
    /// Forced key splits (0 = automatic).
    pub splits: u32,
}

/// Random caches, shuffled (non-contiguous) block tables, two padding query rows past the
/// last sequence; runs both backends and returns (gpu out, cpu out, label).
pub fn pair_attention_case(c: &mut Ctx, a: &AttnCase) -> (CudaTensor, CpuTensor, String) {
    let bs = a.block_size;
    let need: Vec<usize> = a.seqs.iter().map(|&(_, s)| s.div_ceil(bs)).collect();
    let max_blocks = need.iter().copied().max().unwrap_or(1).max(1);
    let num_blocks = need.iter().sum::<usize>() + 3;
    let mut ids: Vec<u32> = (1..num_blocks as u32).collect();
    c.rng.shuffle(&mut ids);
    let mut tables = vec![0u32; a.seqs.len() * max_blocks];
    let mut next = 0;
    for (b, &n) in need.iter().enumerate() {
        for i in 0..n {
            tables[b * max_blocks + i] = ids[next];
            next += 1;
        }
    }
    let mut qsl = vec![0u32];
    for &(q, _) in &a.seqs {
        qsl.push(qsl.last().copied().unwrap_or(0) + q as u32);
    }
    let tokens = *qsl.last().unwrap_or(&0) as usize + 2;
    let seq_lens: Vec<u32> = a.seqs.iter().map(|&(_, s)| s as u32).collect();
    let kv_width = a.kv_heads * a.head_dim;
    let q = c.rand(&[tokens, a.heads * a.head_dim], 1.0);
    let kc = c.rand(&[num_blocks, bs, kv_width], 1.0);
    let vc = c.rand(&[num_blocks, bs, kv_width], 1.0);
    let n = a.seqs.len();
    let (gq, cq) = c.pair_u32(&qsl, &[n + 1]);
    let (gs, cs) = c.pair_u32(&seq_lens, &[n]);
    let (gt, ct) = c.pair_u32(&tables, &[n, max_blocks]);
    let max_query_len = a.seqs.iter().map(|s| s.0).max().unwrap_or(0);
    let max_seq_len = a.seqs.iter().map(|s| s.1).max().unwrap_or(0);
    let (order, num_decode_seqs) = decode_first(&qsl);
    let (go, co) = c.pair_u32(&order, &[n]);
    let gmeta = AttentionMetadata {
        query_start_loc: gq,
        seq_lens: gs,
        block_tables: gt,
        seq_order: go,
        num_seqs: n,
        num_decode_seqs,
        max_blocks_per_seq: max_blocks,
        block_size: bs,
        max_query_len,
        max_seq_len,
    };
    let cmeta = AttentionMetadata {
        query_start_loc: cq,
        seq_lens: cs,
        block_tables: ct,
        seq_order: co,
        num_seqs: n,
        num_decode_seqs,
        max_blocks_per_seq: max_blocks,
        block_size: bs,
        max_query_len,
        max_seq_len,
    };
    let p = AttentionParams {
        num_heads: a.heads,
        num_kv_heads: a.kv_heads,
        head_dim: a.head_dim,
        scale: 1.0 / (a.head_dim as f32).sqrt(),
        sliding_window: a.window,
        softcap: a.softcap,
    };
    c.gpu.set_attention_splits(a.splits);
    let g = c.gpu.paged_attention(&q.0, &kc.0, &vc.0, &gmeta, &p).expect("gpu paged_attention");
    let r = c.cpu.paged_attention(&q.1, &kc.1, &vc.1, &cmeta, &p).expect("cpu paged_attention");
    assert_eq!(g.shape(), r.shape());
    let label = format!(
        "seqs{:?} H{} KV{} D{} bs{} W{:?} cap{:?} splits{}",
        a.seqs, a.heads, a.kv_heads, a.head_dim, bs, a.window, a.softcap, a.splits
    );
    (g, r, label)
}
