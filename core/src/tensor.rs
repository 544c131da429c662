//! Host tensors: dtype + shape + little-endian bytes, borrowed (mmap) or owned.
//!
//! Every weight source (safetensors, GGUF, dummy) hands out `HostTensor`s and every backend
//! uploads them, converting to its own storage. Nothing here computes.

use std::borrow::Cow;

use half::{bf16, f16};

/// Element types a tensor can hold, on the host or on a device.
///
/// The `Q*` types are GGUF (ggml) block formats: a tensor's bytes are consecutive blocks,
/// each holding [`DType::block_len`] elements in [`DType::block_bytes`] bytes, blocks along
/// the last (row) dimension. Their layouts and dequantization live in `crate::quant`.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    U32,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl DType {
    /// Elements per block (1 for plain types).
    pub fn block_len(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 | DType::U32 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q2_K | DType::Q3_K | DType::Q4_K | DType::Q5_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block (the element size for plain types), as ggml lays them out.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q2_K => 84,
            DType::Q3_K => 110,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of a tensor of `numel` elements, or `None` if `numel` is not a whole number of
    /// blocks.
    pub fn bytes_for(self, numel: usize) -> Option<usize> {
        (numel % self.block_len() == 0).then(|| numel / self.block_len() * self.block_bytes())
    }

    /// Bytes per element of a plain type (quantized types: bytes per block).
    pub fn size(self) -> usize {
        self.block_bytes()
    }

    /// The name transformers / vLLM use (`--dtype`), or ggml's for block formats.
    pub fn hf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::U32 => "uint32",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q2_K => "Q2_K",
            DType::Q3_K => "Q3_K",
            DType::Q4_K => "Q4_K",
            DType::Q5_K => "Q5_K",
            DType::Q6_K => "Q6_K",
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

    /// Values widened to f32 (exact for f16/bf16; block formats are dequantized).
    /// `U32` values are converted numerically.
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.data;
        match self.dtype {
            DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            DType::F16 => b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::BF16 => b.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            DType::U32 => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32).collect(),
            q => {
                let mut out = vec![0.0; self.numel()];
                crate::quant::dequantize(q, b, &mut out);
                out
            }
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
        let row_elems: usize = self.shape[1..].iter().product();
        let row = self.dtype.bytes_for(row_elems).expect("rows hold whole blocks");
        let mut shape = self.shape.clone();
        shape[0] = len;
        HostTensor { dtype: self.dtype, shape, data: Cow::Borrowed(&self.data[start * row..(start + len) * row]) }
    }

    pub fn into_owned(self) -> HostTensor<'static> {
        HostTensor { dtype: self.dtype, shape: self.shape, data: Cow::Owned(self.data.into_owned()) }
    }
}
