//! The CPU reference backend: plain f32 math, the specification every other backend is tested
//! against op by op.
//!
//! ```text
//! CpuTensor = shape (row-major) + CpuStorage
//!   CpuStorage::F32(Vec<f32>)  activations, KV pages, every float weight (f16/bf16 widened
//!                              exactly on upload)
//!   CpuStorage::U32(Vec<u32>)  ids, positions, slot mappings, block tables, argmax results
//!   CpuStorage::Quant(..)      GGUF block weights (Q4_0 .. Q6_K), kept quantized: `matmul`
//!                              runs integer dots on them, `embedding` dequantizes its rows
//! ```
//!
//! Threads: on native, gemm, attention and large row-wise ops run on rayon (the global pool,
//! or a private pool from [`CpuBackend::with_threads`]); on wasm32 everything runs on the
//! calling thread. Results do not depend on the thread count.
//!
//! SIMD: the quantized kernels run at the instruction-set level of [`CpuBackend::isa`]
//! (detected at construction; [`CpuBackend::with_isa`] forces a lower one for tests).
//!
//! Submodules: `tensor` (CpuTensor and argument checks), `kernels` (row-wise and elementwise
//! math), `matmul` (f32), `qmatmul` (quantized weights), `attention` (`write_kv`,
//! `paged_attention`).

mod attention;
mod attn_kernel;
mod attn_x86;
mod fastmath;
mod kernels;
mod matmul;
mod qmatmul;
mod tensor;

use tensor::{dims1, dims2, f32_mut, f32_of, f32_tensor, shape_err, u32_of};
pub use qmatmul::{QuantLayout, QuantWeight};
pub use tensor::{CpuStorage, CpuTensor};

use super::{Activation, AttentionMetadata, AttentionParams, Backend, Op, Result, RopeParams};
use crate::quant::isa::{Isa, Level};
use crate::tensor::{DType, HostTensor};

/// The backend's name in logs and errors.
pub(crate) const NAME: &str = "cpu";

/// Row-wise ops with fewer elements than this run on the calling thread.
const PAR_MIN_ELEMS: usize = 1 << 15;

/// The level [`CpuBackend::new`] and `with_threads` pick: 0 = the best detected, else
/// `Level as u8 + 1` (set by [`set_default_isa`]).
static DEFAULT_ISA: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn default_isa() -> Isa {
    let forced = match DEFAULT_ISA.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Isa::new(Level::Scalar),
        2 => Isa::new(Level::Avx2),
        3 => Isa::new(Level::Avx512Vnni),
        _ => None,
    };
    forced.unwrap_or_else(Isa::detect)
}

/// Makes backends built from now on use the quantized kernels at `level` (benchmarks compare
/// levels this way); an error if this CPU lacks it.
pub fn set_default_isa(level: Level) -> Result<()> {
    Isa::new(level).ok_or_else(|| super::BackendError::Device {
        backend: NAME,
        message: format!("this CPU does not support the {} kernels", level.name()),
    })?;
    DEFAULT_ISA.store(level as u8 + 1, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Sizes rayon's global pool, which [`CpuBackend::new`] uses: `threads` workers (0 = one
/// per core), the calling thread being one of them. Must run before any parallel work in
/// the process; on wasm32 it does nothing.
///
/// The caller joining the pool matters for decode: every op's parallel loop then starts on
/// the caller's own deque and the caller works on it too, instead of handing the loop to
/// another thread and sleeping until it is done (a futex round trip per op, hundreds per
/// token). Ops must then be called from this thread (the one that runs the model).
pub fn init_global_threads(threads: usize) -> Result<()> {
    #[cfg(not(target_arch = "wasm32"))]
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .use_current_thread()
        .thread_name(|i| format!("tessera-cpu-{i}"))
        .build_global()
        .map_err(|e| super::BackendError::Device {
            backend: NAME,
            message: format!("global thread pool: {e}"),
        })?;
    let _ = threads;
    Ok(())
}

/// The CPU reference backend. Cheap to construct; holds at most a thread pool.
pub struct CpuBackend {
    /// 1 = strictly single-threaded; otherwise the pool's size.
    threads: usize,
    /// The SIMD level of the quantized kernels.
    isa: Isa,
    /// A private pool from `with_threads(n > 1)`; `None` uses rayon's global pool.
    #[cfg(not(target_arch = "wasm32"))]
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// A backend using all cores (rayon's global pool) on native, one thread on wasm32.
    pub fn new() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            CpuBackend {
                threads: rayon::current_num_threads().max(1),
                isa: default_isa(),
                pool: None,
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            CpuBackend { threads: 1, isa: default_isa() }
        }
    }

    /// A backend with `threads` worker threads: 0 = all cores (as [`CpuBackend::new`]),
    /// 1 = everything on the calling thread, n > 1 = a private pool of n threads.
    /// On wasm32 the count is ignored and everything runs on the calling thread.
    pub fn with_threads(threads: usize) -> Result<Self> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            match threads {
                0 => Ok(Self::new()),
                1 => Ok(CpuBackend {
                    threads: 1,
                    isa: default_isa(),
                    pool: None,
                }),
                n => {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(n)
                        .thread_name(|i| format!("tessera-cpu-{i}"))
                        .build()
                        .map_err(|e| super::BackendError::Device {
                            backend: NAME,
                            message: format!("thread pool: {e}"),
                        })?;
                    Ok(CpuBackend {
                        threads: n,
                        isa: default_isa(),
                        pool: Some(std::sync::Arc::new(pool)),
                    })
                }
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = threads;
            Ok(CpuBackend { threads: 1, isa: default_isa() })
        }
    }

    /// The same backend with its quantized kernels at `level` (an error if this CPU lacks
    /// it). Used to test every SIMD path and to compare them.
    pub fn with_isa(mut self, level: Level) -> Result<Self> {
        self.isa = Isa::new(level).ok_or_else(|| super::BackendError::Device {
            backend: NAME,
            message: format!("this CPU does not support the {} kernels", level.name()),
        })?;
        Ok(self)
    }

    /// The SIMD level of the quantized kernels.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// How many threads ops may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` inside this backend's pool (so nested rayon work and gemm use it).
    pub(crate) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(pool) = &self.pool {
            return pool.install(f);
        }
        f()
    }

    /// gemm's threading for this backend.
    pub(crate) fn gemm_parallelism(&self) -> gemm::Parallelism {
        #[cfg(not(target_arch = "wasm32"))]
        if self.threads > 1 {
            return gemm::Parallelism::Rayon(self.threads);
        }
        gemm::Parallelism::None
    }

    /// Calls `f(i, row)` for each consecutive `row_len`-element row `i` of `out`, on threads
    /// when the backend has them and the work is worth it (`heavy` rows, or many elements).
    pub(crate) fn for_each_row<T: Send>(
        &self,
        out: &mut [T],
        row_len: usize,
        heavy: bool,
        f: impl Fn(usize, &mut [T]) + Sync + Send,
    ) {
        if row_len == 0 || out.is_empty() {
            return;
        }
        #[cfg(not(target_arch = "wasm32"))]
        if self.threads > 1 && out.len() > row_len && (heavy || out.len() >= PAR_MIN_ELEMS) {
            use rayon::prelude::*;
            self.install(|| {
                out.par_chunks_mut(row_len)
                    .enumerate()
                    .for_each(|(i, row)| f(i, row))
            });
            return;
        }
        let _ = (heavy, PAR_MIN_ELEMS);
        for (i, row) in out.chunks_mut(row_len).enumerate() {
            f(i, row);
        }
    }
}

// ---- the trait ------------------------------------------------------------------------------

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn name(&self) -> &'static str {
        NAME
    }

    fn supports(&self, op: Op, dtype: DType) -> bool {
        match op {
            // Float uploads are widened to f32; ids stay u32.
            Op::Upload => true,
            // Only what storage can hold comes back.
            Op::ToHost => matches!(dtype, DType::F32 | DType::U32),
            Op::ScatterIds => dtype == DType::U32,
            // Quantized weights: matmul on the blocks, embedding rows dequantized.
            Op::Matmul | Op::Embedding => dtype == DType::F32 || dtype.is_quantized(),
            // Every compute op runs on f32 data (its index inputs are u32).
            _ => dtype == DType::F32,
        }
    }

    fn activation_dtype(&self) -> DType {
        DType::F32
    }

    fn upload(&self, t: &HostTensor) -> Result<CpuTensor> {
        if t.dtype.is_quantized() {
            let q = QuantWeight::new(t.dtype, &t.shape, &t.data)?;
            return Ok(CpuTensor {
                shape: t.shape.clone(),
                storage: CpuStorage::Quant(q),
            });
        }
        let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let expected = numel.and_then(|n| n.checked_mul(t.dtype.size()));
        if expected != Some(t.data.len()) {
            return Err(shape_err(
                Op::Upload,
                format!(
                    "{} bytes do not hold a {} tensor of shape {:?}",
                    t.data.len(),
                    t.dtype,
                    t.shape
                ),
            ));
        }
        let storage = match t.dtype {
            DType::U32 => CpuStorage::U32(t.to_u32()),
            _ => CpuStorage::F32(t.to_f32()),
        };
        Ok(CpuTensor {
            shape: t.shape.clone(),
            storage,
        })
    }

    fn upload_u32(&self, values: &[u32], shape: &[usize]) -> Result<CpuTensor> {
        CpuTensor::from_u32(values.to_vec(), shape)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CpuTensor> {
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| shape_err(Op::Upload, format!("zeros: shape {shape:?} overflows")))?;
        Ok(f32_tensor(vec![0.0; numel], shape.to_vec()))
    }

    fn embedding(&self, table: &CpuTensor, ids: &CpuTensor, scale: f32) -> Result<CpuTensor> {
        let op = Op::Embedding;
        let (vocab, hidden) = dims2(op, "table", table)?;
        let id_values = u32_of(op, ids)?;
        let tokens = dims1(op, "ids", ids)?;
        if let Some((t, &id)) = id_values
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= vocab)
        {
            return Err(shape_err(
                op,
                format!(
                    "id {id} at row {t} is out of range for table {:?}",
                    table.shape
                ),
            ));
        }
        let mut out = vec![0.0f32; tokens * hidden];
        match &table.storage {
            // Quantized tables: dequantize the gathered rows only (ggml's get_rows).
            CpuStorage::Quant(q) => self.for_each_row(&mut out, hidden, false, |t, row| {
                q.dequantize_row(hidden, id_values[t] as usize, row);
                if scale != 1.0 {
                    row.iter_mut().for_each(|v| *v *= scale);
                }
            }),
            _ => {
                let data = f32_of(op, table)?;
                self.for_each_row(&mut out, hidden, false, |t, row| {
                    let id = id_values[t] as usize;
                    kernels::embedding_row(&data[id * hidden..(id + 1) * hidden], scale, row);
                });
            }
        }
        Ok(f32_tensor(out, vec![tokens, hidden]))
    }

    fn matmul(&self, x: &CpuTensor, w: &CpuTensor, bias: Option<&CpuTensor>) -> Result<CpuTensor> {
        matmul::matmul(self, x, w, bias)
    }

    fn add(&self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let op = Op::Add;
        let (av, bv) = (f32_of(op, a)?, f32_of(op, b)?);
        if a.shape != b.shape {
            return Err(shape_err(
                op,
                format!("a {:?} and b {:?} differ", a.shape, b.shape),
            ));
        }
        let out = av.iter().zip(bv).map(|(x, y)| x + y).collect();
        Ok(f32_tensor(out, a.shape.clone()))
    }

    fn rms_norm(
        &self,
        x: &CpuTensor,
        weight: &CpuTensor,
        eps: f32,
        weight_offset: f32,
    ) -> Result<CpuTensor> {
        let op = Op::RmsNorm;
        let (xv, wv) = (f32_of(op, x)?, f32_of(op, weight)?);
        let group = wv.len();
        if group == 0 || xv.len() % group != 0 {
            return Err(shape_err(
                op,
                format!(
                    "x {:?} does not split into groups of weight {:?}",
                    x.shape, weight.shape
                ),
            ));
        }
        let mut out = vec![0.0f32; xv.len()];
        self.for_each_row(&mut out, group, false, |g, row| {
            kernels::rms_norm_group(&xv[g * group..(g + 1) * group], wv, eps, weight_offset, row);
        });
        Ok(f32_tensor(out, x.shape.clone()))
    }

    fn rope(
        &self,
        x: &mut CpuTensor,
        positions: &CpuTensor,
        inv_freq: &CpuTensor,
        p: RopeParams,
    ) -> Result<()> {
        let op = Op::Rope;
        let (tokens, width) = dims2(op, "x", x)?;
        let pos = u32_of(op, positions)?;
        let freqs = f32_of(op, inv_freq)?;
        let bad = p.head_dim == 0
            || width % p.head_dim != 0
            || p.rotary_dim % 2 == 1
            || p.rotary_dim > p.head_dim
            || (freqs.len() != p.rotary_dim / 2 && freqs.len() != tokens * (p.rotary_dim / 2))
            || pos.len() != tokens;
        if bad {
            return Err(shape_err(
                op,
                format!(
                    "x {:?}, positions {:?}, inv_freq {:?}, head_dim {}, rotary_dim {}: need x [T, n*head_dim], \
                     positions [T], even rotary_dim <= head_dim, inv_freq [rotary_dim/2] or [T, rotary_dim/2]",
                    x.shape, positions.shape, inv_freq.shape, p.head_dim, p.rotary_dim
                ),
            ));
        }
        let half = p.rotary_dim / 2;
        let per_token = freqs.len() != half;
        let data = f32_mut(op, x)?;
        self.for_each_row(data, width, false, |t, row| {
            let f = if per_token { &freqs[t * half..(t + 1) * half] } else { freqs };
            kernels::rope_row(row, pos[t], f, &p)
        });
        Ok(())
    }

    fn act_mul(&self, gate: &CpuTensor, up: &CpuTensor, act: Activation) -> Result<CpuTensor> {
        let op = Op::ActMul;
        let (g, u) = (f32_of(op, gate)?, f32_of(op, up)?);
        if gate.shape != up.shape {
            return Err(shape_err(
                op,
                format!("gate {:?} and up {:?} differ", gate.shape, up.shape),
            ));
        }
        let row = gate.shape.last().copied().unwrap_or(1).max(1);
        let mut out = vec![0.0f32; g.len()];
        let simd = fastmath::Simd::of(self.isa);
        self.for_each_row(&mut out, row, false, |r, o| {
            let range = r * row..r * row + o.len();
            match act {
                Activation::Silu => fastmath::silu_mul(simd, &g[range.clone()], &u[range], o),
                Activation::GeluTanh => fastmath::gelu_tanh_mul(simd, &g[range.clone()], &u[range], o),
                _ => kernels::act_mul_row(&g[range.clone()], &u[range], act, o),
            }
        });
        Ok(f32_tensor(out, gate.shape.clone()))
    }

    fn write_kv(
        &self,
        k_cache: &mut CpuTensor,
        v_cache: &mut CpuTensor,
        k: &CpuTensor,
        v: &CpuTensor,
        slot_mapping: &CpuTensor,
    ) -> Result<()> {
        attention::write_kv(k_cache, v_cache, k, v, slot_mapping)
    }

    fn paged_attention(
        &self,
        q: &CpuTensor,
        k_cache: &CpuTensor,
        v_cache: &CpuTensor,
        meta: &AttentionMetadata<CpuTensor>,
        p: &AttentionParams,
    ) -> Result<CpuTensor> {
        attention::paged_attention(self, q, k_cache, v_cache, meta, p)
    }

    fn gather_rows(&self, x: &CpuTensor, indices: &CpuTensor) -> Result<CpuTensor> {
        let op = Op::GatherRows;
        let data = f32_of(op, x)?;
        let (rows, cols) = dims2(op, "x", x)?;
        let idx = u32_of(op, indices)?;
        let count = dims1(op, "indices", indices)?;
        if let Some(&bad) = idx.iter().find(|&&i| i as usize >= rows) {
            return Err(shape_err(
                op,
                format!("row index {bad} is out of range for x {:?}", x.shape),
            ));
        }
        let out = idx
            .iter()
            .flat_map(|&i| {
                data[i as usize * cols..(i as usize + 1) * cols]
                    .iter()
                    .copied()
            })
            .collect();
        Ok(f32_tensor(out, vec![count, cols]))
    }

    fn softcap(&self, x: &CpuTensor, cap: f32) -> Result<CpuTensor> {
        let op = Op::Softcap;
        let data = f32_of(op, x)?;
        if !(cap.is_finite() && cap > 0.0) {
            return Err(shape_err(
                op,
                format!("cap must be finite and > 0, got {cap}"),
            ));
        }
        let out = data.iter().map(|&v| kernels::softcap(v, cap)).collect();
        Ok(f32_tensor(out, x.shape.clone()))
    }

    fn argmax(&self, x: &CpuTensor) -> Result<CpuTensor> {
        let op = Op::Argmax;
        let data = f32_of(op, x)?;
        let (rows, cols) = dims2(op, "x", x)?;
        if cols == 0 {
            return Err(shape_err(op, format!("x {:?} has empty rows", x.shape)));
        }
        let out = (0..rows)
            .map(|r| kernels::argmax(&data[r * cols..(r + 1) * cols]))
            .collect();
        Ok(CpuTensor {
            shape: vec![rows],
            storage: CpuStorage::U32(out),
        })
    }

    fn scatter_ids(&self, dst: &mut CpuTensor, src: &CpuTensor, pairs: &CpuTensor) -> Result<()> {
        let op = Op::ScatterIds;
        let src = u32_of(op, src)?.to_vec();
        let pairs = u32_of(op, pairs)?.to_vec();
        let CpuStorage::U32(dst) = &mut dst.storage else {
            return Err(shape_err(op, String::from("dst must be a u32 tensor")));
        };
        for p in pairs.chunks_exact(2) {
            let (d, s) = (p[0] as usize, p[1] as usize);
            if d < dst.len() && s < src.len() {
                dst[d] = src[s];
            }
        }
        Ok(())
    }

    async fn to_host(&self, t: &CpuTensor) -> Result<HostTensor<'static>> {
        Ok(match &t.storage {
            CpuStorage::F32(v) => HostTensor::from_f32(v, &t.shape),
            CpuStorage::U32(v) => HostTensor::from_u32(v, &t.shape),
            CpuStorage::Quant(q) => {
                return Err(super::BackendError::Unsupported {
                    op: Op::ToHost,
                    dtype: q.dtype,
                    backend: NAME,
                })
            }
        })
    }
}
