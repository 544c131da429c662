//! The wgpu backend (feature `wgpu`): the compute trait on WGSL shaders (`shaders/*.wgsl`),
//! natively on Vulkan / Metal / DX12 and in the browser on WebGPU.
//!
//! ```text
//! WgpuBackend
//!   gpu        device, queue, limits -> Sizes (workgroup sizes, binding limits), error sink
//!   pipelines  (shader, entry, dtype aliases, sizes, layout) -> compiled pipeline, built once
//!   recorder   one pending command encoder + compute pass; ops only record dispatches;
//!              `to_host` (the one async op) submits, copies out and maps; decode-step
//!              graphs (the trait's graph_*): a step's dispatches with their bind groups
//!              recorded once and re-encoded by each replay (no op code, no allocations)
//!   dtype      activations and KV pages: f16 where the adapter has shader-f16 (or as asked),
//!              else f32; math is always f32 inside the shaders
//! ```
//! Uploads: u32 stays u32; f32 stays f32 (norm weights, biases, RoPE frequencies keep their
//! precision; an f32 checkpoint keeps f32 weights); f16 / bf16 become the activation dtype
//! (f16 on an f16 backend, widened to f32 otherwise); GGUF block matrices (Q4_0 .. Q6_K) keep
//! their raw blocks and `matmul` / `embedding` dequantize them in the shader (`quant`).
//! Kernels are specialized on the dtypes of their actual arguments, so mixed f16 activations
//! x f32 weights need no conversions. `sample` runs on the device (`sample`): only ids return.
//!
//! Weights larger than one storage binding (`maxStorageBufferBindingSize`, 128 MiB on most
//! adapters) live in one buffer and are bound in row chunks by `matmul` and `embedding`.
//! Submodules: `backend` (the trait's entry points), `device` (opening, limits, errors),
//! `kernels` (WGSL + pipeline cache), `encoder` (recording, arena, read-back), `tensor`,
//! `ops` (row-wise and elementwise ops),
//! `matmul`, `matmul_many` (q/k/v and gate/up in one dispatch at decode, the input norm
//! folded in: `norm_matmul_many`, `norm_gated_matmul`), `quant` (GGUF block weights),
//! `attention` (`write_kv`, `paged_attention`), `prefetch` (the weights a layer reads next,
//! read into L2 by its decode attention), `sample` (top-k / top-p / min-p sampling),
//! `profile` (`TESSERA_WGPU_PROFILE=1`: where a step's time goes). Speed switches (natively
//! on; `=0` off, for comparisons): `TESSERA_WGPU_TRUSTED` (`kernels`), `TESSERA_WGPU_SUBGROUPS`
//! (`device`), `TESSERA_WGPU_ATTN_SPLIT` (`attention`; `=1` off), `TESSERA_WGPU_FUSE_MERGE`
//! (`attention`, `matmul`: the split attention's merge in o_proj's prologue),
//! `TESSERA_WGPU_ARGMAX_CHUNK` (`ops`: values per workgroup of a long row's argmax; `=0`: one
//! workgroup a row), `TESSERA_WGPU_PREFETCH` (`prefetch`; `=N`: at most N weights).

mod attention;
mod backend;
mod device;
mod encoder;
mod kernels;
mod matmul;
mod matmul_many;
mod ops;
mod prefetch;
mod profile;
mod quant;
mod sample;
mod tensor;

use std::sync::Arc;

use wgpu::util::DeviceExt;

pub use device::WgpuOptions;
pub use tensor::WgpuTensor;

use super::{Op, Result};
use crate::tensor::DType;
use device::Gpu;
use encoder::{grid, Binding, Recorder};
use kernels::{Kernel, PipelineCache};
use tensor::{numel_of, shape_err, BufferPool, DeviceBuffer, HostCopy};

/// The backend's name in logs and errors.
pub(crate) const NAME: &str = "wgpu";

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// The wgpu backend. Open it with [`WgpuBackend::new`] (async: the browser's adapter and
/// device requests are promises) or, natively, [`WgpuBackend::new_blocking`].
pub struct WgpuBackend {
    gpu: Gpu,
    pipelines: PipelineCache,
    recorder: Recorder,
    dtype: DType,
    poison: bool,
    /// Bound where a shader's optional input is absent (e.g. matmul without bias).
    dummy: wgpu::Buffer,
    /// Bytes of every device buffer created so far (uploads, outputs, caches).
    allocated: std::sync::atomic::AtomicU64,
    /// Freed op outputs, reused by later outputs of the same size.
    pool: Arc<BufferPool>,
    /// Whether decode-step graphs are offered (`graph_supported`).
    graphs: bool,
    /// Whether `rope` is deferred into `write_kv` / `paged_attention` (`TESSERA_WGPU_FUSE_ROPE=0`:
    /// never, for comparisons).
    fuse_rope: bool,
    /// Whether `matmul_many` / `gated_matmul` fuse at decode (`TESSERA_WGPU_FUSE_MATMUL=0`:
    /// never, the trait's defaults run, for comparisons).
    fuse_matmul: bool,
    /// Whether `norm_matmul_many` / `norm_gated_matmul` fold the norm into the decode
    /// matvec (`TESSERA_WGPU_FUSE_NORM=0`: never, for comparisons).
    fuse_norm: bool,
    /// Whether `write_kv` waits for the `paged_attention` after it to do the write
    /// (`TESSERA_WGPU_FUSE_KV=0`: never, for comparisons).
    fuse_kv: bool,
    /// Whether a split decode attention's merge waits for the matvec after it to do it
    /// (`TESSERA_WGPU_FUSE_MERGE=0`: never, for comparisons).
    fuse_merge: bool,
    /// paged attention loads its first chunk's keys before q's barrier (`WgpuOptions::early_kv`).
    early_kv: bool,
    /// The deferred `write_kv` (see `attention`), recorded before any other command.
    pending_kv: std::sync::Mutex<Option<attention::PendingKv>>,
    /// `prefetch` hints, held for the next decode attention (see `prefetch`).
    prefetch: prefetch::PrefetchState,
}

impl WgpuBackend {
    /// Opens the adapter and device `opts` describe.
    pub async fn new(opts: WgpuOptions) -> Result<Self> {
        let (gpu, dtype) = device::open(&opts).await?;
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera dummy"),
            size: 16,
            usage: STORAGE,
            mapped_at_creation: false,
        });
        let prefetch = prefetch::PrefetchState::new(&gpu, &opts);
        let recorder = Recorder::new(&gpu);
        Ok(WgpuBackend {
            gpu,
            pipelines: PipelineCache::new(),
            recorder,
            dtype,
            poison: opts.poison_outputs,
            dummy,
            allocated: std::sync::atomic::AtomicU64::new(0),
            pool: Arc::default(),
            graphs: std::env::var("TESSERA_WGPU_GRAPHS").map_or(true, |v| v != "0"),
            fuse_rope: std::env::var("TESSERA_WGPU_FUSE_ROPE").map_or(true, |v| v != "0"),
            fuse_matmul: std::env::var("TESSERA_WGPU_FUSE_MATMUL").map_or(true, |v| v != "0"),
            fuse_norm: std::env::var("TESSERA_WGPU_FUSE_NORM").map_or(true, |v| v != "0"),
            fuse_kv: std::env::var("TESSERA_WGPU_FUSE_KV").map_or(true, |v| v != "0"),
            fuse_merge: opts.fuse_merge.unwrap_or_else(|| std::env::var("TESSERA_WGPU_FUSE_MERGE").map_or(true, |v| v != "0")),
            early_kv: opts.early_kv.unwrap_or_else(|| std::env::var("TESSERA_WGPU_EARLY_KV").map_or(true, |v| v != "0")),
            pending_kv: Default::default(),
            prefetch,
        })
    }

    /// [`WgpuBackend::new`], blocking the calling thread (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(opts: WgpuOptions) -> Result<Self> {
        pollster::block_on(Self::new(opts))
    }

    /// The adapter in use (name, driver, backend API).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.gpu.info
    }

    /// Whether the device has `shader-f16`.
    pub fn has_shader_f16(&self) -> bool {
        self.gpu.has_f16
    }

    /// The subgroup size the kernels reduce with (0: none; `device::Sizes::subgroup`).
    pub fn subgroup_size(&self) -> u32 {
        self.gpu.sizes.subgroup
    }

    /// Pipelines compiled so far (each is compiled once).
    pub fn pipelines_compiled(&self) -> usize {
        self.pipelines.len()
    }

    /// Command submissions so far (a step normally needs one).
    pub fn submissions(&self) -> usize {
        self.recorder.submissions()
    }

    /// Bytes of all device buffers created so far (freed ones included): tests use it to
    /// check that quantized weights stay quantized.
    pub fn bytes_allocated(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Dispatches recorded and not yet submitted.
    pub fn pending_dispatches(&self) -> usize {
        self.recorder.pending_dispatches()
    }

    // ---- helpers of the op modules ----------------------------------------------------------

    /// Whether f16 tensors may take part in ops.
    fn f16_ok(&self) -> bool {
        self.gpu.has_f16
    }

    fn sizes(&self) -> &device::Sizes {
        &self.gpu.sizes
    }

    /// Compiles (once) and records one dispatch of `k` (after the deferred `write_kv`).
    fn run(&self, k: Kernel, params: &[u32], bindings: &[Binding<'_>], groups: [u32; 3]) -> Result<()> {
        self.settle_kv()?;
        let pipe = self.pipelines.get(&self.gpu, &k)?;
        self.recorder.dispatch(&self.gpu, &pipe, params, bindings, groups)
    }

    /// A 1-D grid covering `threads` threads in workgroups of `wg`.
    fn grid_threads(&self, op: Op, threads: usize, wg: u32) -> Result<[u32; 3]> {
        let groups = tensor::u32_of(op, "workgroups", threads.div_ceil(wg as usize))?;
        self.grid_groups(op, groups)
    }

    /// A grid of `groups` workgroups (wrapped into y past the per-dimension limit).
    fn grid_groups(&self, op: Op, groups: u32) -> Result<[u32; 3]> {
        let g = grid(groups, self.sizes().max_groups);
        if g[1] > self.sizes().max_groups {
            return Err(shape_err(op, format!("{groups} workgroups exceed the device's grid")));
        }
        Ok(g)
    }

    /// Records `t`'s deferred rope, if any, so its buffer holds what ops expect.
    fn settle(&self, t: &WgpuTensor) -> Result<()> {
        if let Some(m) = t.pending_merge.take() {
            attention::record_merge(self, t, &m)?;
        }
        match t.pending_rope.take() {
            Some(r) => ops::record_rope(self, &t.buffer, t.dtype, &r),
            None => Ok(()),
        }
    }

    /// Binds all of `t`, which must fit one storage binding (its deferred rope recorded first).
    fn bind<'a>(&self, op: Op, index: u32, t: &'a WgpuTensor) -> Result<Binding<'a>> {
        self.settle(t)?;
        if t.byte_len() > self.sizes().max_binding {
            return Err(shape_err(
                op,
                format!(
                    "tensor {:?} of {} bytes exceeds the adapter's largest storage binding ({} bytes)",
                    t.shape,
                    t.byte_len(),
                    self.sizes().max_binding
                ),
            ));
        }
        Ok(Binding::whole(index, &t.buffer))
    }

    /// A device buffer for `bytes` bytes (at least 4, a multiple of 4).
    fn buffer(&self, op: Op, bytes: u64, init: Option<&[u8]>) -> Result<wgpu::Buffer> {
        let size = bytes.div_ceil(4).max(1) * 4;
        if size > self.sizes().max_buffer {
            return Err(shape_err(
                op,
                format!("{bytes} bytes exceed the adapter's largest buffer ({} bytes)", self.sizes().max_buffer),
            ));
        }
        self.allocated.fetch_add(size, std::sync::atomic::Ordering::Relaxed);
        Ok(match init {
            Some(data) => {
                let padded;
                let contents = if data.len() as u64 == size {
                    data
                } else {
                    padded = [data, &[0u8; 4][..(size as usize - data.len())]].concat();
                    &padded[..]
                };
                self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor { label: None, contents, usage: STORAGE })
            }
            None => self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: STORAGE,
                mapped_at_creation: false,
            }),
        })
    }

    /// A fresh output tensor (NaN-poisoned when the options ask for it).
    fn output(&self, op: Op, dtype: DType, shape: Vec<usize>) -> Result<WgpuTensor> {
        let numel = numel_of(op, &shape)?;
        let bytes = (numel * dtype.size()) as u64;
        if bytes > self.sizes().max_binding {
            return Err(shape_err(
                op,
                format!(
                    "output {shape:?} ({bytes} bytes) exceeds the adapter's largest storage binding ({} bytes)",
                    self.sizes().max_binding
                ),
            ));
        }
        let padded = bytes.div_ceil(4).max(1) * 4;
        // While a graph is recorded, outputs come from (and return to) the graph's own pool.
        let (pool, reuse) = self.recorder.capture_output(padded).unwrap_or_else(|| (self.pool.clone(), true));
        let buffer = match reuse.then(|| pool.take(padded)).flatten() {
            Some(b) => b,
            None => self.buffer(op, bytes, None)?,
        };
        let t = WgpuTensor { buffer: DeviceBuffer::pooled(buffer, pool), shape, dtype, host_u32: HostCopy::default(), pending_rope: Default::default(), pending_merge: Default::default() };
        if self.poison && numel > 0 {
            let word = match dtype {
                DType::F16 => 0x7e00_7e00,
                DType::U32 => u32::MAX,
                _ => 0x7fc0_0000,
            };
            let words = bytes.div_ceil(4).max(1);
            let n = tensor::u32_of(op, "poisoned words", words as usize)?;
            let k = Kernel::new(kernels::Shader::Elementwise, "fill")
                .ty("A", DType::F32)
                .ty("B", DType::F32)
                .ty("O", DType::F32)
                .konst("WG", self.sizes().wg)
                .rw(4);
            let groups = self.grid_threads(op, words as usize, self.sizes().wg)?;
            self.run(k, &[n, 0, word, 0], &[Binding::whole(4, &t.buffer)], groups)?;
        }
        Ok(t)
    }
}

/// `f32` parameter as its bits (the uniform structs mix u32 and f32 fields).
fn bits(v: f32) -> u32 {
    v.to_bits()
}
