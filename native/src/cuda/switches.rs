//! The CUDA backend's switches: the kernel-variant enums and the setters of every knob
//! `CudaBackend::new` reads from the environment (see its doc for the variables), for tests
//! and benchmarks that compare variants in one process.

use std::sync::atomic::Ordering;

use super::{gemv, CudaBackend};

/// When bf16/f16 prefill rows (head_dim 64/128/256) take the tensor-core attention kernel
/// (kernels/attention_prefill.cu) instead of the SIMT one (kernels/attention.cu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorCorePrefill {
    /// Never.
    Off = 0,
    /// Always (unless key splits are forced).
    Always = 1,
    /// When its grid (64 rows a block) has at least half as many blocks as the device has
    /// SMs: a short lone prompt keeps the SIMT kernel's finer grid (measured: 128 tokens
    /// lost 0.5 ms of TTFT on the tensor cores, 32 blocks; throughput steps gained 6x).
    Auto = 2,
}

/// Which decode-attention variant (kernels/attention_decode.cu) takes decode rows of head_dim
/// 64/128/256: the registers one (default) or the pipelined one (cp.async stages in shared
/// memory, per-warp max, 4 blocks an SM where it fits; `TESSERA_ATTN_DECODE_V2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodePipeline {
    /// Never.
    Off = 0,
    /// The default (BENCHMARKS.md: batch-256 decode-only time 2.89 -> 2.49 s on an H200):
    /// only for grids of at least two waves at the registers variant's occupancy
    /// (attention.rs `PIPELINE_MIN_BLOCKS_PER_SM` blocks an SM): batch 1 keeps the default.
    Auto = 1,
    /// Every decode launch (tests).
    Always = 2,
}

/// A non-negative integer from the environment.
pub(crate) fn env_usize(key: &str) -> Option<usize> {
    std::env::var(key).ok().and_then(|v| v.parse().ok())
}

impl CudaBackend {
    pub fn set_poison_outputs(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub fn set_sync_launches(&self, on: bool) {
        self.sync_launches.store(on, Ordering::Relaxed);
    }

    /// Forces paged attention to split each sequence's keys into `n` ranges (0 = automatic).
    pub fn set_attention_splits(&self, n: u32) {
        self.attention_splits.store(n, Ordering::Relaxed);
    }

    /// Forces the query heads a decode attention block takes (`TESSERA_ATTN_GH`; rounded to
    /// 1/2/4/8 and capped at the automatic choice for the group; 0 = automatic).
    pub fn set_decode_heads_per_block(&self, n: u32) {
        self.decode_heads.store(n, Ordering::Relaxed);
    }

    /// Products with at most `m` rows of x (capped at 8) run on the GEMV kernels; 0 = cuBLAS
    /// only; `None` = the measured defaults (see gemv.rs).
    pub fn set_gemv_max_m(&self, m: Option<usize>) {
        self.gemv_max_m.store(m.unwrap_or(gemv::GEMV_MAX_M_DEFAULT), Ordering::Relaxed);
    }

    /// gate/up and k/v above the GEMV cutover as one paired cuBLAS call or two GEMMs (default).
    pub fn set_paired_gemm(&self, on: bool) {
        self.paired_gemm.store(on, Ordering::Relaxed);
    }

    /// Forces the GEMV kernels' K splits (1, 2, 4 or 8; anything else = choose).
    pub fn set_gemv_splits(&self, ks: u32) {
        self.gemv_splits.store(ks, Ordering::Relaxed);
    }

    /// Whether the normed GEMV kernels stream their first W batch while they normalize x (on by
    /// default; off: the norm prologue first, then W; the same results either way, see gemv.rs).
    pub fn set_gemv_early_w(&self, on: bool) {
        self.gemv_early_w.store(on, Ordering::Relaxed);
    }

    /// Whether the normed GEMV kernels' persistent grids are evened out (on by default; off:
    /// every resident block, some running one block of work more than others; the same
    /// results either way, see gemv.rs).
    pub fn set_gemv_even_grid(&self, on: bool) {
        self.gemv_even_grid.store(on, Ordering::Relaxed);
    }

    /// Whether `norm_matmul_many` / `norm_gated_matmul` fold the RMSNorm into the GEMV kernels.
    pub fn set_fuse_norm(&self, on: bool) {
        self.fuse_norm.store(on, Ordering::Relaxed);
    }

    /// Whether `rope` is deferred into `write_kv` (else applied at once).
    /// `norm_qkv_write_kv` as one GEMV launch (on) or as its ops (`TESSERA_CUDA_FUSE_QKV_KV`).
    pub fn set_fuse_qkv_kv(&self, on: bool) {
        self.fuse_qkv_kv.store(on, Ordering::Relaxed);
    }

    pub fn set_fuse_rope(&self, on: bool) {
        self.fuse_rope.store(on, Ordering::Relaxed);
    }

    /// When bf16/f16 prefill rows take the tensor-core attention kernel (default: auto).
    pub fn set_tensor_core_prefill(&self, mode: TensorCorePrefill) {
        self.tc_prefill.store(mode as u32, Ordering::Relaxed);
    }

    /// Which decode-attention variant decode rows take (default: `TESSERA_ATTN_DECODE_V2`, else `Auto`).
    pub fn set_decode_pipeline(&self, mode: DecodePipeline) {
        self.decode_pipeline.store(mode as u32, Ordering::Relaxed);
    }

    /// Whether the decode chain's kernels launch with programmatic dependent launch (pdl.rs;
    /// default on for compute capability 9.0+, `TESSERA_CUDA_PDL=0` off). Off on older GPUs
    /// whatever `on` says.
    pub fn set_pdl(&self, on: bool) {
        let cc = self.device.info.compute_capability;
        self.device.pdl.store(on && cc.0 >= 9, Ordering::Relaxed);
    }

    /// Whether programmatic dependent launch is on.
    pub fn pdl(&self) -> bool {
        self.device.pdl.load(Ordering::Relaxed)
    }

    /// Whether 2..8 decode splits merge inside a thread block cluster (default on; sm_90+) or
    /// through the combine launch.
    pub fn set_decode_cluster(&self, on: bool) {
        self.decode_cluster.store(on, Ordering::Relaxed);
    }

    /// Whether the decode attention loads its first tile's keys of earlier steps before
    /// `pdl_wait` (default on; the same results either way).
    pub fn set_decode_early_kv(&self, on: bool) {
        self.decode_early_kv.store(on, Ordering::Relaxed);
    }

    /// Decode key splits of one tile a block for small grids (default on).
    pub fn set_decode_tile_splits(&self, on: bool) {
        self.tile_splits.store(on, Ordering::Relaxed);
    }
}
