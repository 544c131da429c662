//! Host tensors: dtype + shape + little-endian bytes, borrowed (mmap) or owned.
//!
//! Every weight source (safetensors, GGUF, dummy) hands out `HostTensor`s and every backend
//! uploads them, converting to its own storage. Nothing here computes.

use std::borrow::Cow;

use half::{bf16, f16};

/// Element types a tensor can hold, on the host or on a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The name transformers / vLLM use (`--dtype`).
    pub fn hf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::U32 => "uint32",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hf_name())
    }
}

/// A tensor on the host: raw little-endian bytes with a dtype and a row-major shape.
#[derive(Clone, Debug)]
pub struct HostTensor<'a> {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Cow<'a, [u8]>,
}

impl<'a> HostTensor<'a> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn from_f32(values: &[f32], shape: &[usize]) -> HostTensor<'static> {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor { dtype: DType::F32, shape: shape.to_vec(), data: Cow::Owned(data) }
    }

    pub fn from_u32(values: &[u32], shape: &[usize]) -> HostTensor<'static> {
        debug_assert_eq!(values.len(), shape.iter().product::<usize>());
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        HostTensor { dtype: DType::U32, shape: shape.to_vec(), data: Cow::Owned(data) }
    }

    /// Values widened to f32 (exact for f16/bf16). `U32` values are converted numerically.
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.data;
        match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::U32 => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
        }
    }

    pub fn to_u32(&self) -> Vec<u32> {
        match self.dtype {
            DType::U32 => self.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            _ => self.to_f32().into_iter().map(|v| v as u32).collect(),
        }
    }

    /// Rows `start..start+len` of the first dimension (used to split fused projections).
    pub fn narrow_rows(&self, start: usize, len: usize) -> HostTensor<'_> {
        let row: usize = self.shape[1..].iter().product::<usize>() * self.dtype.size();
        let mut shape = self.shape.clone();
        shape[0] = len;
        HostTensor { dtype: self.dtype, shape, data: Cow::Borrowed(&self.data[start * row..(start + len) * row]) }
    }

    pub fn into_owned(self) -> HostTensor<'static> {
        HostTensor { dtype: self.dtype, shape: self.shape, data: Cow::Owned(self.data.into_owned()) }
    }
}
