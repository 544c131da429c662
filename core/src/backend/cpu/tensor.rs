//! `CpuTensor` (shape + `CpuStorage`) and the argument checks the CPU ops share: dtype
//! checks answer `Unsupported`, shape checks answer `Shape` with the offending shapes.

use super::qmatmul::QuantWeight;
use super::NAME;
use crate::backend::{BackendError, Op, Result, Tensor};
use crate::tensor::DType;

/// Storage of a [`CpuTensor`]. Float data is always f32 here; GGUF block formats stay
/// quantized (weights for `matmul` and `embedding`).
#[derive(Clone)]
pub enum CpuStorage {
    F32(Vec<f32>),
    U32(Vec<u32>),
    Quant(QuantWeight),
}

/// A row-major tensor in host memory.
#[derive(Clone)]
pub struct CpuTensor {
    pub(super) shape: Vec<usize>,
    pub(super) storage: CpuStorage,
}

impl CpuTensor {
    /// An f32 tensor; errors if `data.len()` is not the product of `shape`.
    pub fn from_f32(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        check_len(Op::Upload, data.len(), shape)?;
        Ok(CpuTensor {
            shape: shape.to_vec(),
            storage: CpuStorage::F32(data),
        })
    }

    /// A u32 tensor; errors if `data.len()` is not the product of `shape`.
    pub fn from_u32(data: Vec<u32>, shape: &[usize]) -> Result<Self> {
        check_len(Op::Upload, data.len(), shape)?;
        Ok(CpuTensor {
            shape: shape.to_vec(),
            storage: CpuStorage::U32(data),
        })
    }

    pub fn storage(&self) -> &CpuStorage {
        &self.storage
    }

    /// The values if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The values if this is a u32 tensor.
    pub fn as_u32(&self) -> Option<&[u32]> {
        match &self.storage {
            CpuStorage::U32(v) => Some(v),
            _ => None,
        }
    }
}

impl Tensor for CpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn dtype(&self) -> DType {
        match &self.storage {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::U32(_) => DType::U32,
            CpuStorage::Quant(q) => q.dtype,
        }
    }
}

impl std::fmt::Debug for CpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuTensor({}, {:?})", self.dtype(), self.shape)
    }
}
// ---- argument checks shared by the op modules --------------------------------------------

pub(crate) fn shape_err(op: Op, detail: impl Into<String>) -> BackendError {
    BackendError::Shape {
        op,
        detail: detail.into(),
    }
}

pub(super) fn check_len(op: Op, len: usize, shape: &[usize]) -> Result<()> {
    let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if numel != Some(len) {
        return Err(shape_err(
            op,
            format!("{len} values do not fill shape {shape:?}"),
        ));
    }
    Ok(())
}

/// The f32 values of `t`, or `Unsupported` naming its dtype.
pub(crate) fn f32_of(op: Op, t: &CpuTensor) -> Result<&[f32]> {
    match &t.storage {
        CpuStorage::F32(v) => Ok(v),
        _ => Err(BackendError::Unsupported {
            op,
            dtype: t.dtype(),
            backend: NAME,
        }),
    }
}

pub(crate) fn f32_mut(op: Op, t: &mut CpuTensor) -> Result<&mut [f32]> {
    let dtype = t.dtype();
    match &mut t.storage {
        CpuStorage::F32(v) => Ok(v),
        _ => Err(BackendError::Unsupported {
            op,
            dtype,
            backend: NAME,
        }),
    }
}

/// The u32 values of `t`, or `Unsupported` naming its dtype.
pub(crate) fn u32_of(op: Op, t: &CpuTensor) -> Result<&[u32]> {
    match &t.storage {
        CpuStorage::U32(v) => Ok(v),
        _ => Err(BackendError::Unsupported {
            op,
            dtype: t.dtype(),
            backend: NAME,
        }),
    }
}

/// `(rows, cols)` of a rank-2 tensor, or a shape error naming the argument.
pub(crate) fn dims2(op: Op, what: &str, t: &CpuTensor) -> Result<(usize, usize)> {
    match t.shape[..] {
        [r, c] => Ok((r, c)),
        _ => Err(shape_err(
            op,
            format!("{what} must be rank 2, got shape {:?}", t.shape),
        )),
    }
}

/// Length of a rank-1 tensor, or a shape error naming the argument.
pub(crate) fn dims1(op: Op, what: &str, t: &CpuTensor) -> Result<usize> {
    match t.shape[..] {
        [n] => Ok(n),
        _ => Err(shape_err(
            op,
            format!("{what} must be rank 1, got shape {:?}", t.shape),
        )),
    }
}

pub(super) fn f32_tensor(data: Vec<f32>, shape: Vec<usize>) -> CpuTensor {
    CpuTensor {
        shape,
        storage: CpuStorage::F32(data),
    }
}
