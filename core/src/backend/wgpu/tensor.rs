//! `WgpuTensor` (a storage buffer + shape + dtype) and the argument checks the wgpu ops share.
//!
//! ```text
//! WgpuTensor
//!   buffer     Arc<DeviceBuffer> (a wgpu::Buffer, STORAGE | COPY_SRC | COPY_DST, size padded
//!              to 4 bytes; op outputs come from and return to the backend's BufferPool)
//!   dtype      F32 | F16 (floats)  or  U32 (ids, positions, slots, tables, argmax)
//!              or a GGUF block dtype (raw blocks) for matmul / embedding weights
//!   host_u32   for u32 tensors uploaded from the host: a copy of the values, so ops can
//!              validate ids / slots / block tables without a device read-back (kept
//!              current by `write_u32`, the one in-place write of a u32 tensor)
//! ```
//! Tensors are immutable except through `&mut` ops (`rope`, `write_kv`), so sharing the
//! buffer through an `Arc` is safe; there is deliberately no `Clone` (a clone would alias).
//!
//! A `rope` is deferred (`pending_rope`): `write_kv` and `paged_attention` apply it while
//! reading k / q (one dispatch fewer each, per layer), every other reader first records it
//! in place (`WgpuBackend::settle`), so every op still sees the rotated values.
//!
//! Likewise the `attention_merge` of a paged attention over key splits (`pending_merge`):
//! the decode matvec right after it (o_proj) merges the partials as it stages its input row
//! (`merge_matmul.wgsl`); every other reader records the merge first (`settle`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::NAME;
use crate::backend::{BackendError, Op, Result, Tensor};
use crate::tensor::DType;

/// Freed op outputs by buffer size, reused by later outputs of the same size (a decode step
/// allocates the same few hundred activations every time; creating device buffers is the
/// slow part of recording). Reuse inside one pass is safe: wgpu orders the dispatches that
/// read a buffer before the ones that write it again.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<HashMap<u64, Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    pub fn take(&self, size: u64) -> Option<wgpu::Buffer> {
        self.free.lock().ok()?.get_mut(&size)?.pop()
    }

    fn put(&self, b: wgpu::Buffer) {
        if let Ok(mut m) = self.free.lock() {
            m.entry(b.size()).or_default().push(b);
        }
    }
}

/// A device buffer; an op output's goes back to its pool when the last tensor on it drops.
pub struct DeviceBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Option<Arc<BufferPool>>,
}

impl DeviceBuffer {
    /// A buffer that is freed on drop (uploads, caches, zeros).
    pub(crate) fn owned(buffer: wgpu::Buffer) -> Arc<Self> {
        Arc::new(DeviceBuffer { buffer: Some(buffer), pool: None })
    }

    /// A buffer that returns to `pool` on drop (op outputs: always fully written).
    pub(crate) fn pooled(buffer: wgpu::Buffer, pool: Arc<BufferPool>) -> Arc<Self> {
        Arc::new(DeviceBuffer { buffer: Some(buffer), pool: Some(pool) })
    }
}

impl std::ops::Deref for DeviceBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("present until drop")
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let (Some(b), Some(pool)) = (self.buffer.take(), &self.pool) {
            pool.put(b);
        }
    }
}

/// A tensor in a wgpu storage buffer.
pub struct WgpuTensor {
    pub(super) buffer: Arc<DeviceBuffer>,
    pub(super) shape: Vec<usize>,
    pub(super) dtype: DType,
    pub(super) host_u32: HostCopy,
    /// A `rope` of this tensor not yet recorded (see the module doc).
    pub(super) pending_rope: Deferred,
    /// The `attention_merge` that completes this tensor, not yet recorded (see the module doc).
    pub(super) pending_merge: DeferredMerge,
}

/// A deferred in-place `rope`: its parameter words (as `rope.wgsl` takes them) and inputs.
#[derive(Clone)]
pub(crate) struct PendingRope {
    pub params: [u32; 8],
    pub positions: Arc<DeviceBuffer>,
    pub inv_freq: Arc<DeviceBuffer>,
}

/// The slot of a tensor's deferred rope.
#[derive(Default)]
pub(crate) struct Deferred(Mutex<Option<PendingRope>>);

impl Deferred {
    pub fn take(&self) -> Option<PendingRope> {
        self.0.lock().ok()?.take()
    }

    pub fn set(&self, r: Option<PendingRope>) {
        if let Ok(mut v) = self.0.lock() {
            *v = r;
        }
    }
}

/// A split paged attention's merge not yet recorded: the `attention_merge` kernel and its
/// parameters, the partials, and their layout (per (row, head, split) `pstride` floats).
pub(crate) struct PendingMerge {
    pub kern: super::kernels::Kernel,
    pub params: Vec<u32>,
    pub part: Arc<DeviceBuffer>,
    pub tokens: usize,
    pub heads: u32,
    pub head_dim: u32,
    pub splits: u32,
    pub pstride: u32,
}

/// The slot of a tensor's deferred merge.
#[derive(Default)]
pub(crate) struct DeferredMerge(Mutex<Option<PendingMerge>>);

impl DeferredMerge {
    pub fn take(&self) -> Option<PendingMerge> {
        self.0.lock().ok()?.take()
    }

    pub fn set(&self, m: Option<PendingMerge>) {
        if let Ok(mut v) = self.0.lock() {
            *v = m;
        }
    }
}

/// The host copy of a u32 tensor's values (see [`WgpuTensor`]); replaced by `write_u32`.
#[derive(Default)]
pub(crate) struct HostCopy(Mutex<Option<Arc<[u32]>>>);

impl HostCopy {
    pub fn new(values: Option<Arc<[u32]>>) -> Self {
        HostCopy(Mutex::new(values))
    }

    /// The values, when the host knows them.
    pub fn get(&self) -> Option<Arc<[u32]>> {
        self.0.lock().ok()?.clone()
    }

    pub fn set(&self, values: Option<Arc<[u32]>>) {
        if let Ok(mut v) = self.0.lock() {
            *v = values;
        }
    }
}

impl WgpuTensor {
    /// Bytes the elements take (the buffer may be padded past this).
    pub fn byte_len(&self) -> u64 {
        self.dtype.bytes_for(self.numel()).unwrap_or(0) as u64
    }

    /// The underlying buffer (for interop, e.g. binding it in a caller's own pass).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

impl Tensor for WgpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}

impl std::fmt::Debug for WgpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WgpuTensor({}, {:?})", self.dtype, self.shape)
    }
}

// ---- argument checks ------------------------------------------------------------------------

pub(super) fn shape_err(op: Op, detail: impl Into<String>) -> BackendError {
    BackendError::Shape { op, detail: detail.into() }
}

pub(super) fn unsupported(op: Op, dtype: DType) -> BackendError {
    BackendError::Unsupported { op, dtype, backend: NAME }
}

pub(super) fn device_err(message: impl Into<String>) -> BackendError {
    BackendError::Device { backend: NAME, message: message.into() }
}

/// `t` must hold floats (f32, or f16 where the device has shader-f16).
pub(super) fn float(op: Op, t: &WgpuTensor, f16_ok: bool) -> Result<DType> {
    match t.dtype {
        DType::F32 => Ok(DType::F32),
        DType::F16 if f16_ok => Ok(DType::F16),
        d => Err(unsupported(op, d)),
    }
}

/// `t` must hold u32 values (ids, positions, slots, tables).
pub(super) fn index(op: Op, t: &WgpuTensor) -> Result<()> {
    match t.dtype {
        DType::U32 => Ok(()),
        d => Err(unsupported(op, d)),
    }
}

pub(super) fn dims2(op: Op, what: &str, t: &WgpuTensor) -> Result<(usize, usize)> {
    match t.shape[..] {
        [r, c] => Ok((r, c)),
        _ => Err(shape_err(op, format!("{what} must be rank 2, got shape {:?}", t.shape))),
    }
}

pub(super) fn dims1(op: Op, what: &str, t: &WgpuTensor) -> Result<usize> {
    match t.shape[..] {
        [n] => Ok(n),
        _ => Err(shape_err(op, format!("{what} must be rank 1, got shape {:?}", t.shape))),
    }
}

/// A count as the u32 the shaders index with, or a shape error.
pub(super) fn u32_of(op: Op, what: &str, n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| shape_err(op, format!("{what} = {n} does not fit the shaders' u32 indices")))
}

/// Product of `shape`, checked.
pub(super) fn numel_of(op: Op, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| shape_err(op, format!("shape {shape:?} overflows")))
}
