//! [`GgufWeights`]: a GGUF file as a [`WeightSource`] answering HF tensor names.
//!
//! Tensors come out in HF layout (row-major `[out_features, in_features]`, Q/K rows un-permuted,
//! Gemma norms without the +1), either as the file's own block format (a borrowed slice when no
//! fix-up is needed) or, with [`GgufWeights::set_dequantize_on_load`], as f32 for backends that
//! have no quantized matmul.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::config::{architecture, hf_config};
use super::error::GgufError;
use super::names::{gguf_to_hf_name, hf_to_gguf_name, unpermute_rows, Fixup};
use super::reader::{GgufFile, GgufTensorInfo};
use crate::tensor::{DType, HostTensor};
use crate::weights::{FileBytes, Result, WeightSource, WeightsError};

/// A parsed GGUF file and its bytes.
pub struct GgufWeights {
    gguf: GgufFile,
    bytes: FileBytes,
    arch: String,
    heads: usize,
    kv_heads: usize,
    dequantize_on_load: bool,
}

impl GgufWeights {
    /// Parse a GGUF file given as bytes (`file` names it in errors).
    pub fn from_bytes(file: &str, bytes: FileBytes) -> std::result::Result<Self, GgufError> {
        let gguf = GgufFile::parse(file, bytes.as_slice())?;
        let arch = architecture(&gguf)?.to_string();
        let heads = gguf.u64(&format!("{arch}.attention.head_count"))?.unwrap_or(0) as usize;
        let kv_heads = gguf
            .get(&format!("{arch}.attention.head_count_kv"))
            .and_then(|v| v.as_u64())
            .map_or(heads, |v| v as usize);
        Ok(GgufWeights { gguf, bytes, arch, heads, kv_heads, dequantize_on_load: false })
    }

    /// Memory-map and parse a `.gguf` file (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Self> {
        let io = |source| WeightsError::Io { path: path.display().to_string(), source };
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only mapping; like every mmap loader we assume the file is not truncated
        // by another process while tessera runs (all offsets were checked against its length).
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        Ok(Self::from_bytes(&path.display().to_string(), FileBytes::Mmap(map))?)
    }

    /// Hand out f32 instead of block formats (for backends without quantized matmul).
    pub fn set_dequantize_on_load(&mut self, on: bool) {
        self.dequantize_on_load = on;
    }

    pub fn dequantize_on_load(&self) -> bool {
        self.dequantize_on_load
    }

    /// The file name used in messages.
    pub fn describe_file(&self) -> String {
        self.gguf.file.clone()
    }

    /// The parsed header and metadata.
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    /// `general.architecture` (e.g. `llama`).
    pub fn architecture(&self) -> &str {
        &self.arch
    }

    /// The HF config.json map this file's metadata amounts to.
    pub fn hf_config(&self) -> std::result::Result<Map<String, Value>, GgufError> {
        hf_config(&self.gguf)
    }

    /// Every tensor of the file under its HF name (file order); unmapped tensors are skipped.
    pub fn hf_names(&self) -> Vec<String> {
        self.gguf.tensors().iter().filter_map(|t| gguf_to_hf_name(&self.arch, &t.name)).collect()
    }

    /// The tensor called `name` (HF) in HF layout, whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<HostTensor<'_>> {
        let (info, fix) = self.lookup(name)?;
        let shape = info.shape();
        self.load(name, info, fix, shape)
    }

    /// Shape (HF order) and dtype of a tensor, if present and readable.
    pub fn info(&self, name: &str) -> Option<(Vec<usize>, DType)> {
        let (info, _) = self.lookup(name).ok()?;
        Some((info.shape(), info.ggml_type.dtype()?))
    }

    fn lookup(&self, name: &str) -> Result<(&GgufTensorInfo, Fixup)> {
        let missing = |where_: String| WeightsError::Missing { name: name.into(), where_ };
        let (gname, fix) = hf_to_gguf_name(&self.arch, name)
            .ok_or_else(|| missing(format!("{} (no GGUF name for it in a `{}` file)", self.describe(), self.arch)))?;
        let info = self.gguf.tensor(&gname).ok_or_else(|| missing(format!("{} as `{gname}`", self.describe())))?;
        Ok((info, fix))
    }

    fn load(&self, name: &str, info: &GgufTensorInfo, fix: Fixup, shape: Vec<usize>) -> Result<HostTensor<'_>> {
        let file = &self.gguf.file;
        let dtype = info.ggml_type.dtype().ok_or_else(|| GgufError::UnsupportedType {
            file: file.clone(),
            name: info.name.clone(),
            ggml_type: info.ggml_type.name().into(),
        })?;
        let raw = &self.bytes.as_slice()[info.start..info.start + info.size];
        let mut t = HostTensor { dtype, shape, data: Cow::Borrowed(raw) };
        let heads = match fix {
            Fixup::UnpermuteQ => Some(self.heads),
            Fixup::UnpermuteK => Some(self.kv_heads),
            _ => None,
        };
        if let Some(heads) = heads {
            let rows = t.shape.first().copied().unwrap_or(0);
            let row_bytes = raw.len().checked_div(rows).unwrap_or(0);
            let data = unpermute_rows(raw, rows, row_bytes, heads).ok_or_else(|| WeightsError::Corrupt {
                file: file.clone(),
                message: format!("tensor `{}` ({name}): {rows} rows do not split into {heads} heads of an even size", info.name),
            })?;
            t.data = Cow::Owned(data);
        }
        if fix == Fixup::MinusOne {
            let v: Vec<f32> = t.to_f32().into_iter().map(|x| x - 1.0).collect();
            return Ok(HostTensor::from_f32(&v, &t.shape));
        }
        if self.dequantize_on_load && dtype.is_quantized() {
            return Ok(HostTensor::from_f32(&t.to_f32(), &t.shape));
        }
        Ok(t)
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'_>> {
        let (info, fix) = self.lookup(name)?;
        let actual = info.shape();
        if actual != shape {
            return Err(WeightsError::Shape {
                name: name.into(),
                file: format!("{} (`{}`)", self.gguf.file, info.name),
                expected: shape.to_vec(),
                actual,
            });
        }
        self.load(name, info, fix, actual)
    }

    fn contains(&self, name: &str) -> bool {
        self.lookup(name).is_ok()
    }

    fn describe(&self) -> String {
        self.gguf.file.clone()
    }
}
