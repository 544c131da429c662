//! The CUDA backend: the compute trait on an NVIDIA GPU through cudarc (driver, NVRTC and
//! cuBLAS loaded at run time), kernels from `kernels/*.cu` compiled for the device's own
//! architecture, GEMMs through cuBLAS.
//!
//! ```text
//! CudaBackend ── Device  (context, one stream, memory pool, error word)   device.rs
//!             ── Kernels (NVRTC, disk cache, modules)                      compile.rs
//!             ── Blas    (cuBLAS handle on the stream)                     blas.rs
//!             ── GEMV    (small-M products, q/k/v and gate/up fused)       gemv.rs
//! ops: ops.rs (elementwise, norms, rope, embedding, selection), attention.rs (KV cache and
//! paged attention), qkv_kv.rs (q/k/v + RoPE + write_kv as one launch); the trait's entry
//! points: backend.rs; tensors: tensor.rs; device-side index errors: error.rs; decode-step
//! CUDA graphs (capture, replay, in-place input writes): graph.rs; L2 prefetch of the next
//! weights on a side stream (opt-in): prefetch.rs; the switches (env knobs' setters, variant
//! enums): switches.rs; programmatic dependent and cluster launches: pdl.rs
//! ```
//! Everything is queued on one stream (but the opt-in prefetches, on a side stream joined
//! back before any wait); only `to_host` (and `synchronize`) wait. Errors a
//! kernel finds (a token id out of range, a bad block id) are recorded on the device and
//! returned by the next `to_host`.

mod attention;
mod attention_plan;
mod backend;
mod blas;
pub mod compile;
mod device;
mod error;
mod gemv;
mod graph;
mod host_times;
mod ops;
mod pdl;
mod prefetch;
mod qkv_kv;
mod readback;
mod staging;
mod sampling;
mod switches;
mod tensor;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use cudarc::driver::{CudaFunction, LaunchConfig};
use tessera_core::backend::{BackendError, Op, Result, Tensor as _};
use tessera_core::tensor::DType;

pub use device::{check_libraries, gpu_present, DeviceInfo};
pub use switches::{DecodePipeline, TensorCorePrefill};
pub use tensor::CudaTensor;

use device::{dev_err, Arg, Device};
use switches::env_usize;
use tensor::suffix;

/// The backend's name in logs and errors.
pub(crate) const NAME: &str = "cuda";

/// Threads per block of the simple kernels.
const THREADS: u32 = 256;

/// Last-block-done counters of `argmax_split` an SM (`CudaBackend::argmax_counters`): one a
/// row, so rows up to 4 an SM (more rows take the one-block-a-row kernel: sampling.rs).
pub(crate) const ARGMAX_COUNTERS_PER_SM: usize = 4;

pub struct CudaBackend {
    // Field order is drop order: graphs, cuBLAS and the modules go before the context's stream.
    graphs: Mutex<Vec<graph::Graph>>,
    blas: blas::Blas,
    kernels: compile::Kernels,
    /// The side stream of the L2 prefetches (dropped before the context's stream).
    prefetch: prefetch::Prefetch,
    /// Started read-backs and their pinned buffers (readback.rs).
    reads: Mutex<readback::ReadBacks>,
    /// Pinned memory the step inputs are copied to the device from (staging.rs).
    staging: Mutex<staging::Staging>,
    /// `TESSERA_CUDA_HOST_TIMES=1`: host time per queueing call (host_times.rs).
    host_times: host_times::HostTimes,
    device: Device,
    dtype: DType,
    /// Fill every op's output with 0xff bytes (NaN for floats) before the kernel runs.
    poison: AtomicBool,
    /// Synchronise after every launch (blames a device fault on the op that caused it).
    sync_launches: AtomicBool,
    /// Force the number of key splits of paged attention (0 = choose).
    attention_splits: AtomicU32,
    /// Force the query heads a decode attention block takes (1/2/4/8, at most the group; 0 = choose).
    decode_heads: AtomicU32,
    /// A stream capture is on (graph.rs): host copies refuse.
    capturing: AtomicBool,
    /// The real longest context of a batch whose metadata carries a bound (0 = none).
    attention_hint: AtomicUsize,
    /// Products with at most this many rows of x run on the GEMV kernels (0 = cuBLAS only,
    /// `gemv::GEMV_MAX_M_DEFAULT` = the measured defaults).
    gemv_max_m: AtomicUsize,
    /// Force the GEMV kernels' K splits (0 = choose).
    gemv_splits: AtomicU32,
    /// Whether the normed GEMV kernels load their first W batch under the norm prologue (gemv.rs).
    gemv_early_w: AtomicBool,
    /// Persistent normed GEMV grids evened out so every block runs as many blocks of work (gemv.rs).
    gemv_even_grid: AtomicBool,
    /// Decode splits merged inside a thread block cluster (`TESSERA_ATTN_CLUSTER`).
    decode_cluster: AtomicBool,
    /// The decode attention loads its first tile's older keys before `pdl_wait`
    /// (`TESSERA_ATTN_EARLY_KV`, default on; kernels/attention_decode.cu).
    decode_early_kv: AtomicBool,
    /// When bf16/f16 prefill rows take the tensor-core kernel: a [`TensorCorePrefill`] as u32.
    tc_prefill: AtomicU32,
    /// Which decode-attention variant decode rows take: a [`DecodePipeline`] as u32.
    decode_pipeline: AtomicU32,
    /// Decode key splits of one tile a block for small grids (`TESSERA_ATTN_TILE_SPLITS`,
    /// default on; attention_plan.rs `choose_decode_splits`).
    tile_splits: AtomicBool,
    /// Zeroed u32 counters of `argmax_split`'s last-block-done merge, one a row: each launch
    /// leaves them zero again. Allocated once, so recorded graphs keep pointing at them.
    argmax_counters: CudaTensor,
    /// `norm_*` ops fold the RMSNorm into the GEMV kernels (`TESSERA_CUDA_FUSE_NORM`, default on).
    fuse_norm: AtomicBool,
    /// `rope` is deferred into write_kv (`TESSERA_CUDA_FUSE_ROPE`, default on).
    fuse_rope: AtomicBool,
    /// `norm_qkv_write_kv` runs as one GEMV launch (`TESSERA_CUDA_FUSE_QKV_KV`, default on).
    fuse_qkv_kv: AtomicBool,
    /// One-launch `norm_qkv_write_kv`s queued so far (tests check the path was taken).
    qkv_kv_launches: std::sync::atomic::AtomicU64,
    /// The latest tensors whose rope is deferred (write_kv settles q with k's launch).
    deferred: Mutex<Vec<tensor::Deferred>>,
    /// Attention grids per sequence of the decode-only launches seen.
    decode_grids: Mutex<std::collections::BTreeSet<attention::DecodeGrid>>,
    /// Graph replays so far, and the replays `[first, first + count)` run inside
    /// cuProfilerStart/Stop (`TESSERA_CUDA_PROFILER_REPLAYS=first:count`, for
    /// `ncu --profile-from-start off`); count 0 = never.
    replays: std::sync::atomic::AtomicU64,
    profiler_replays: (u64, u64),
    /// gate/up and k/v products above the GEMV cutover as one cuBLAS strided batch of 2
    /// (gemv.rs `cublas_pair`), opt-in: `TESSERA_CUDA_PAIRED_GEMM=1` (BENCHMARKS.md: 3 % less
    /// GPU time a batch-256 decode step, but slower eager / recording steps).
    paired_gemm: AtomicBool,
    /// Nanoseconds the host spent blocked in `to_host` (waiting for queued device work).
    host_wait_ns: std::sync::atomic::AtomicU64,
}

impl CudaBackend {
    /// A backend on GPU `ordinal` keeping activations in `dtype` (bf16, f16 or f32). A
    /// machine without an NVIDIA GPU or its libraries gets a clear error, never a panic.
    ///
    /// Env: `TESSERA_CUDA_PROFILE=1` times every launch alone (synchronising around it) and
    /// prints a per-kernel table when the backend is dropped; `TESSERA_CUDA_SYNC=1` synchronises
    /// after every launch, `TESSERA_CUDA_POISON=1`
    /// poisons outputs, `TESSERA_ATTN_SPLITS=n` forces n key splits in paged attention (and
    /// the SIMT kernel for prefill rows), `TESSERA_ATTN_TC=0|1` keeps bf16/f16 prefill rows off
    /// the tensor-core kernel / puts them all on it (default: by grid size, see
    /// [`TensorCorePrefill`]); `TESSERA_ATTN_DECODE_V2=0` keeps decode rows of large grids
    /// off the pipelined decode-attention kernel (`2`: every grid; default: grids of two
    /// waves or more, see [`DecodePipeline`]); `TESSERA_ATTN_CLUSTER=0` merges 2..8 decode
    /// splits with the combine launch instead of inside a thread block cluster (sm_90+, default
    /// on; kernels/attention_decode.cu); `TESSERA_ATTN_TILE_SPLITS=0` splits small
    /// decode grids by the older rule (whole tiles, fewer splits); `TESSERA_GEMV_MAX_M=n` sends products of at most n rows (<= 8; 0 = none; default: by
    /// measurement, see gemv.rs) to the GEMV kernels, `TESSERA_GEMV_SPLITS=n` forces their K
    /// splits (1, 2, 4 or 8), `TESSERA_ATTN_EARLY_KV=0` makes the decode attention load every key
    /// after `pdl_wait` (default: the first tile's keys of earlier steps before it),
    /// `TESSERA_GEMV_EARLY_W=0` makes the normed ones run their norm prologue
    /// before loading W (default: under their first W batch; see gemv.rs),
    /// `TESSERA_GEMV_EVEN_GRID=0` gives their persistent grids every resident block (default:
    /// evened out, see gemv.rs); `TESSERA_CUDA_FUSE_NORM=0` runs `norm_matmul_many` /
    /// `norm_gated_matmul` unfused (RMSNorm launch, then the products), `TESSERA_CUDA_FUSE_ROPE=0`
    /// applies `rope` at once instead of deferring it into write_kv (k and q in one launch);
    /// `TESSERA_CUDA_FUSE_QKV_KV=0` runs `norm_qkv_write_kv` as its ops (qkv_kv.rs);
    /// `TESSERA_CUDA_PAIRED_GEMM=1` runs gate/up and k/v above the GEMV
    /// cutover as one cuBLAS strided batch of 2 each instead of two GEMMs (off by default);
    /// `TESSERA_CUDA_PREFETCH=1` pulls the weights a decode step reads next into L2 while its
    /// attention runs (`TESSERA_CUDA_PREFETCH_MB` MiB a layer, default 32; off by default,
    /// see prefetch.rs); `TESSERA_CUDA_PDL=0` launches the decode chain without programmatic
    /// dependent launch (default on for compute capability 9.0+, see pdl.rs);
    /// `TESSERA_CUDA_PROFILER_REPLAYS=first:count` brackets those
    /// decode-graph replays (0-based) with cuProfilerStart/Stop (`ncu --profile-from-start off`);
    /// `TESSERA_KERNEL_CACHE`, `TESSERA_CUDA_INCLUDE`: see `compile`.
    pub fn new(ordinal: usize, dtype: DType) -> Result<CudaBackend> {
        if suffix(dtype).is_none() {
            return Err(BackendError::Unsupported { op: Op::Upload, dtype, backend: NAME });
        }
        let device = Device::new(ordinal)?;
        let kernels = device::guarded("NVRTC", || compile::Kernels::new(device.ctx.clone(), device.info.compute_capability))?;
        let blas = device::guarded("cuBLAS", || blas::Blas::new(&device.stream))?;
        let env_on = |k: &str| std::env::var(k).map(|v| v == "1").unwrap_or(false);
        let env_off = |k: &str| std::env::var(k).map(|v| v == "0").unwrap_or(false);
        let argmax_counters = {
            let n = ARGMAX_COUNTERS_PER_SM * device.info.multiprocessors.max(1) as usize;
            let (buf, ptr) = device.alloc(Op::Upload, n * 4)?;
            device.memset(Op::Upload, ptr, 0, n * 4)?;
            CudaTensor { buf: std::sync::Arc::new(buf), ptr, shape: vec![n], dtype: DType::U32, rope: None }
        };
        let be = CudaBackend {
            graphs: Mutex::new(Vec::new()),
            blas,
            kernels,
            prefetch: Default::default(),
            device,
            dtype,
            poison: AtomicBool::new(env_on("TESSERA_CUDA_POISON")),
            sync_launches: AtomicBool::new(env_on("TESSERA_CUDA_SYNC")),
            attention_splits: AtomicU32::new(std::env::var("TESSERA_ATTN_SPLITS").ok().and_then(|v| v.parse().ok()).unwrap_or(0)),
            decode_heads: AtomicU32::new(std::env::var("TESSERA_ATTN_GH").ok().and_then(|v| v.parse().ok()).unwrap_or(0)),
            capturing: AtomicBool::new(false),
            attention_hint: AtomicUsize::new(0),
            tc_prefill: AtomicU32::new(match std::env::var("TESSERA_ATTN_TC").as_deref() {
                Ok("0") => TensorCorePrefill::Off,
                Ok("1") => TensorCorePrefill::Always,
                _ => TensorCorePrefill::Auto,
            } as u32),
            decode_pipeline: AtomicU32::new(match std::env::var("TESSERA_ATTN_DECODE_V2").as_deref() {
                Ok("0") => DecodePipeline::Off,
                Ok("2") => DecodePipeline::Always,
                _ => DecodePipeline::Auto,
            } as u32),
            tile_splits: AtomicBool::new(!env_off("TESSERA_ATTN_TILE_SPLITS")),
            argmax_counters,
            decode_grids: Mutex::new(Default::default()),
            deferred: Mutex::new(Vec::new()),
            fuse_norm: AtomicBool::new(!env_off("TESSERA_CUDA_FUSE_NORM")),
            fuse_rope: AtomicBool::new(!env_off("TESSERA_CUDA_FUSE_ROPE")),
            fuse_qkv_kv: AtomicBool::new(!env_off("TESSERA_CUDA_FUSE_QKV_KV")),
            qkv_kv_launches: Default::default(),
            gemv_max_m: AtomicUsize::new(env_usize("TESSERA_GEMV_MAX_M").unwrap_or(gemv::GEMV_MAX_M_DEFAULT)),
            gemv_splits: AtomicU32::new(env_usize("TESSERA_GEMV_SPLITS").unwrap_or(0) as u32),
            gemv_early_w: AtomicBool::new(!env_off("TESSERA_GEMV_EARLY_W")),
            gemv_even_grid: AtomicBool::new(!env_off("TESSERA_GEMV_EVEN_GRID")),
            decode_cluster: AtomicBool::new(!env_off("TESSERA_ATTN_CLUSTER")),
            decode_early_kv: AtomicBool::new(!env_off("TESSERA_ATTN_EARLY_KV")),
            replays: Default::default(),
            host_wait_ns: Default::default(),
            reads: Default::default(),
            staging: Default::default(),
            host_times: host_times::HostTimes::from_env(),
            paired_gemm: AtomicBool::new(env_on("TESSERA_CUDA_PAIRED_GEMM")),
            profiler_replays: std::env::var("TESSERA_CUDA_PROFILER_REPLAYS").ok().and_then(|v| graph::parse_range(&v)).unwrap_or((0, 0)),
        };
        if let Some(mib) = prefetch::Prefetch::from_env() {
            be.set_prefetch(Some(mib))?;
        }
        tracing::info!(
            gpu = %be.device.info.name,
            arch = %be.kernels.arch,
            memory_gib = be.device.info.total_memory as f64 / (1u64 << 30) as f64,
            dtype = %dtype,
            pdl = be.pdl(),
            "CUDA backend ready"
        );
        Ok(be)
    }

    pub fn device_info(&self) -> &DeviceInfo {
        &self.device.info
    }

    /// The NVRTC target, e.g. `sm_90`.
    pub fn arch(&self) -> &str {
        &self.kernels.arch
    }

    /// Compiles (or loads from the disk cache) every kernel module now; returns the seconds.
    pub fn load_kernels(&self) -> Result<f64> {
        device::guarded("loading kernels", || self.kernels.load_all())
    }

    /// (free, total) device memory in bytes.
    pub fn memory_info(&self) -> Result<(usize, usize)> {
        self.device.ctx.mem_get_info().map_err(|e| device::setup_err(format!("cuMemGetInfo: {e}")))
    }

    /// Waits for queued work and returns the memory pool's unused memory to the driver.
    pub fn release_pool_memory(&self) -> Result<()> {
        self.join_prefetch()?;
        self.device.release_pool_memory()
    }

    /// Waits for all queued work; returns an error a kernel recorded, if any.
    pub fn synchronize(&self) -> Result<()> {
        self.join_prefetch()?;
        self.device.synchronize()
    }

    // ---- helpers shared by the op modules -------------------------------------------------

    /// A new tensor (poisoned when asked), not yet written.
    pub(crate) fn empty(&self, op: Op, dtype: DType, shape: &[usize]) -> Result<CudaTensor> {
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| dev_err(op, format!("shape {shape:?} overflows")))?;
        let (buf, ptr) = self.device.alloc(op, numel)?;
        if self.poison.load(Ordering::Relaxed) {
            self.device.memset(op, ptr, 0xff, numel)?;
        }
        Ok(CudaTensor { buf: std::sync::Arc::new(buf), ptr, shape: shape.to_vec(), dtype, rope: None })
    }

    pub(crate) fn zeroed(&self, op: Op, dtype: DType, shape: &[usize]) -> Result<CudaTensor> {
        let t = self.empty(op, dtype, shape)?;
        self.device.memset(op, t.ptr, 0, t.bytes())?;
        Ok(t)
    }

    /// Kernel `<base>_<dtype suffix>` of `module`.
    pub(crate) fn func(&self, op: Op, module: &'static str, base: &str, dtype: DType) -> Result<(CudaFunction, String)> {
        let s = suffix(dtype).ok_or(BackendError::Unsupported { op, dtype, backend: NAME })?;
        let name = format!("{base}_{s}");
        let f = self.kernels.function(module, &name)?;
        Ok((f, name))
    }

    pub(crate) fn launch(&self, op: Op, f: &(CudaFunction, String), cfg: LaunchConfig, args: &[Arg]) -> Result<()> {
        self.device.launch(op, &f.0, &f.1, cfg, args, self.sync_launches.load(Ordering::Relaxed))
    }

    /// A grid-stride launch over `n` work items.
    pub(crate) fn grid_for(&self, n: u64) -> LaunchConfig {
        let blocks = n.div_ceil(THREADS as u64).clamp(1, self.device.info.multiprocessors as u64 * 16);
        LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
    }

    /// `t` converted to `to` (a new tensor; `t` itself when it already is).
    pub(crate) fn cast(&self, op: Op, t: &CudaTensor, to: DType) -> Result<CudaTensor> {
        if t.dtype == to {
            return Ok(t.clone());
        }
        let (from_s, to_s) = match (suffix(t.dtype), suffix(to)) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(BackendError::Unsupported { op, dtype: t.dtype, backend: NAME }),
        };
        let out = self.empty(op, to, &t.shape)?;
        let name = format!("cast_{from_s}_{to_s}");
        let f = (self.kernels.function("elementwise", &name)?, name);
        let n = t.numel() as u64;
        self.launch(op, &f, self.grid_for(n), &[Arg::Ptr(t.ptr), Arg::Ptr(out.ptr), Arg::U64(n)])?;
        Ok(out)
    }

    /// A float parameter vector as f32 (norm weights, biases, RoPE tables).
    pub(crate) fn as_f32(&self, op: Op, t: &CudaTensor) -> Result<CudaTensor> {
        self.cast(op, t, DType::F32)
    }

    /// `settle` each tensor: the ops that do not fuse a deferred rope call it on their inputs.
    pub(crate) fn settle_all(&self, ts: &[&CudaTensor]) -> Result<()> {
        ts.iter().try_for_each(|t| self.settle(t))
    }

    /// Makes `t`'s buffer unshared before an in-place write (copy-on-write).
    pub(crate) fn make_unique(&self, op: Op, t: &mut CudaTensor) -> Result<()> {
        if std::sync::Arc::strong_count(&t.buf) == 1 {
            return Ok(());
        }
        let mut copy = self.empty(op, t.dtype, &t.shape)?;
        let bytes = t.bytes();
        if bytes > 0 {
            let dst = std::sync::Arc::get_mut(&mut copy.buf).ok_or_else(|| dev_err(op, "fresh buffer is shared"))?;
            self.device
                .stream
                .memcpy_dtod(&t.buf.slice(0..bytes), &mut dst.slice_mut(0..bytes))
                .map_err(|e| dev_err(op, format!("copying a shared tensor before writing it: {e}")))?;
        }
        *t = copy;
        Ok(())
    }
}

impl Drop for CudaBackend {
    /// With `TESSERA_CUDA_PROFILE=1`, prints the per-kernel time table to stderr.
    fn drop(&mut self) {
        self.finish_prefetch();
        if let Some(report) = self.device.profile_report() {
            eprint!("{report}");
        }
        if let Some(report) = self.host_times.report() {
            eprint!("{report}");
        }
    }
}

/// The backend moves between threads (the server's engine loop) and is shared by reference.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CudaBackend>();
    send_sync::<CudaTensor>();
};

fn shape_err(op: Op, detail: impl Into<String>) -> BackendError {
    BackendError::Shape { op, detail: detail.into() }
}
