//! `CudaTensor`: an `Arc`'d device buffer + shape + dtype. Cloning shares the buffer; ops
//! that write in place (`rope`, `write_kv`) copy a shared buffer first, so a tensor behaves
//! as a value, like the CPU backend's.
//!
//! A `rope` may be deferred (`TESSERA_CUDA_FUSE_ROPE`, on by default): the tensor then
//! carries a [`PendingRope`] that `write_kv` applies to k as it writes the cache; every
//! other reader applies it in place first (`settle`, one launch of the rope kernel), once
//! for all clones (they share the buffer and the flag).
//! The backend also remembers the latest deferred tensors (`Deferred`, weakly): write_kv,
//! rotating k into the cache, rotates in the same launch the latest still-pending tensor of
//! the same positions (the layer's q) in place, which is what a settle would do.
//!
//! ```text
//! storage dtype  activations, matrices, KV pages: the backend's activation dtype
//!                vectors (rank <= 1: norm weights, biases, RoPE tables): f32
//!                ids, positions, slots, block tables, argmax results: u32
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use cudarc::driver::CudaSlice;
use tessera_core::backend::Tensor;
use tessera_core::tensor::DType;

#[derive(Clone)]
pub struct CudaTensor {
    pub(crate) buf: Arc<CudaSlice<u8>>,
    /// The device address of `buf` (cached: kernels take raw pointers).
    pub(crate) ptr: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    /// A rotation recorded by a deferred `rope`, not yet in the buffer (see the module docs).
    pub(crate) rope: Option<Arc<PendingRope>>,
}

/// A deferred `rope` of a `[T, n * head_dim]` tensor: what the fused readers need.
pub(crate) struct PendingRope {
    /// u32 `[T]`.
    pub positions: CudaTensor,
    /// f32 `[half]`, or `[T * half]` (`per_token`).
    pub inv_freq: CudaTensor,
    pub head_dim: usize,
    /// rotary_dim / 2.
    pub half: usize,
    pub per_token: bool,
    pub interleaved: bool,
    pub scaling: f32,
    /// Set once the rotation is in the buffer (`settle`): readers then take it as is.
    pub applied: AtomicBool,
}

/// A tensor with a deferred rope, as the backend remembers it (`CudaBackend::deferred`) so
/// that write_kv can rotate q in the launch that rotates k: the buffer only while it lives.
pub(crate) struct Deferred {
    pub buf: Weak<CudaSlice<u8>>,
    pub ptr: u64,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub rope: Arc<PendingRope>,
}

impl PendingRope {
    pub fn is_pending(&self) -> bool {
        !self.applied.load(Ordering::Acquire)
    }
}

impl CudaTensor {
    /// Bytes of the data (the buffer may be larger).
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }

    /// The rotation still to be applied to this tensor's rows, if any.
    pub(crate) fn pending_rope(&self) -> Option<&PendingRope> {
        self.rope.as_deref().filter(|r| r.is_pending())
    }
}

impl Tensor for CudaTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn dtype(&self) -> DType {
        self.dtype
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaTensor({}, {:?})", self.dtype, self.shape)
    }
}

/// The kernel-name suffix of a float storage dtype.
pub(crate) fn suffix(dtype: DType) -> Option<&'static str> {
    match dtype {
        DType::F32 => Some("f32"),
        DType::F16 => Some("f16"),
        DType::BF16 => Some("bf16"),
        _ => None,
    }
}

/// Elements per 16-byte vector of a float dtype.
pub(crate) fn vec_elems(dtype: DType) -> usize {
    16 / dtype.size().max(1)
}
