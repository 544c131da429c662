//! `CudaTensor`: an `Arc`'d device buffer + shape + dtype. Cloning shares the buffer; ops
//! that write in place (`rope`, `write_kv`) copy a shared buffer first, so a tensor behaves
//! as a value, like the CPU backend's.
//!
//! ```text
//! storage dtype  activations, matrices, KV pages: the backend's activation dtype
//!                vectors (rank <= 1: norm weights, biases, RoPE tables): f32
//!                ids, positions, slots, block tables, argmax results: u32
//! ```

use std::sync::Arc;

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
}

impl CudaTensor {
    /// Bytes of the data (the buffer may be larger).
    pub fn bytes(&self) -> usize {
        self.numel() * self.dtype.size()
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
