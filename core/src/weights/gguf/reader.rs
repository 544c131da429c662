//! The GGUF container (v2 and v3, little-endian): header, typed metadata, tensor infos.
//!
//! ```text
//! "GGUF" | version u32 | tensor_count u64 | kv_count u64
//! kv_count x   { key: string, type: u32, value }            string = len u64 + UTF-8 bytes
//! tensor_count x { name: string, n_dims u32, ne[n_dims] u64, ggml_type u32, offset u64 }
//! padding to `general.alignment` (default 32)
//! tensor data: each tensor at data_start + offset (offset a multiple of the alignment)
//! ```
//!
//! Parsing takes the whole file as bytes and checks everything before it returns: every count
//! is bounded by the bytes that remain, every read is bounds-checked, every tensor's byte range
//! lies inside the file. A hostile file gives a [`GgufError`], never a panic or an
//! out-of-bounds read, and never a huge allocation.

use std::collections::HashMap;

use super::error::{GgufError, Result};
use super::types::GgmlType;

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v as i64),
            GgufValue::I16(v) => Some(v as i64),
            GgufValue::I32(v) => Some(v as i64),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v as f64),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value's GGUF type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            GgufValue::U8(_) => "u8",
            GgufValue::I8(_) => "i8",
            GgufValue::U16(_) => "u16",
            GgufValue::I16(_) => "i16",
            GgufValue::U32(_) => "u32",
            GgufValue::I32(_) => "i32",
            GgufValue::F32(_) => "f32",
            GgufValue::Bool(_) => "bool",
            GgufValue::String(_) => "string",
            GgufValue::Array(_) => "array",
            GgufValue::U64(_) => "u64",
            GgufValue::I64(_) => "i64",
            GgufValue::F64(_) => "f64",
        }
    }
}

/// One tensor's header entry, validated against the file.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub start: usize,
    /// Bytes of data.
    pub size: usize,
}

impl GgufTensorInfo {
    /// Row-major (PyTorch/HF) shape: ggml's dims reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }
}

/// A parsed GGUF header: metadata in file order and every tensor's location.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub file: String,
    pub version: u32,
    pub alignment: u64,
    /// Byte offset where tensor data begins.
    pub data_start: usize,
    metadata: Vec<(String, GgufValue)>,
    by_key: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    by_name: HashMap<String, usize>,
}

const MAX_TENSORS: u64 = 1 << 20;
const MAX_KVS: u64 = 1 << 20;
const MAX_DIMS: u32 = 4;
const MAX_ARRAY_DEPTH: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;

impl GgufFile {
    /// Parse and validate the header of a GGUF file (`file` names it in errors).
    pub fn parse(file: &str, bytes: &[u8]) -> Result<GgufFile> {
        let mut r = Cursor { file, bytes, pos: 0 };
        let magic = r.take(4, "magic")?;
        if magic != b"GGUF" {
            let found = String::from_utf8_lossy(magic).escape_debug().to_string();
            return Err(GgufError::BadMagic { file: file.into(), found });
        }
        let version = r.u32("version")?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err(GgufError::BigEndian { file: file.into() });
        }
        if version != 2 && version != 3 {
            return Err(GgufError::Version { file: file.into(), version });
        }
        let n_tensors = r.u64("tensor_count")?;
        let n_kv = r.u64("metadata_kv_count")?;
        // Each tensor info takes at least 24 bytes, each kv at least 13.
        r.check_count("tensor_count", n_tensors, 24, MAX_TENSORS)?;
        r.check_count("metadata_kv_count", n_kv, 13, MAX_KVS)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut by_key = HashMap::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key = r.string(&format!("metadata key #{i}"))?;
            let type_id = r.u32(&format!("type of metadata `{key}`"))?;
            let value = r.value(&key, type_id, 0)?;
            if by_key.insert(key.clone(), metadata.len()).is_some() {
                return Err(GgufError::DuplicateKey { file: file.into(), key });
            }
            metadata.push((key, value));
        }
        let alignment = match by_key.get("general.alignment").map(|&i| &metadata[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(GgufValue::U32(a)) if a.is_power_of_two() => *a as u64,
            Some(v) => {
                return Err(GgufError::Metadata {
                    file: file.into(),
                    key: "general.alignment".into(),
                    why: format!("must be a u32 power of two, got {v:?}"),
                })
            }
        };

        let mut infos = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = r.string(&format!("name of tensor #{i}"))?;
            let n_dims = r.u32(&format!("n_dims of tensor `{name}`"))?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(GgufError::Dims { file: file.into(), name, dims: vec![], why: format!("n_dims = {n_dims}, expected 1..={MAX_DIMS}") });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&format!("dim {d} of tensor `{name}`"))?);
            }
            let type_id = r.u32(&format!("type of tensor `{name}`"))?;
            let offset = r.u64(&format!("offset of tensor `{name}`"))?;
            infos.push((name, dims, type_id, offset));
        }
        let header_end = r.pos as u64;
        let data_start = header_end.div_ceil(alignment) * alignment;
        let len = bytes.len() as u64;

        let mut tensors = Vec::with_capacity(infos.len());
        let mut by_name = HashMap::with_capacity(infos.len());
        for (name, dims, type_id, offset) in infos {
            let err_dims = |why: String| GgufError::Dims { file: file.into(), name: name.clone(), dims: dims.clone(), why };
            let ggml_type = GgmlType::from_id(type_id)
                .ok_or_else(|| GgufError::UnknownType { file: file.into(), name: name.clone(), type_id })?;
            let numel = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| err_dims("the element count overflows".into()))?;
            let (block_len, block_bytes) = ggml_type.block();
            if dims[0] % block_len != 0 {
                return Err(err_dims(format!("rows of {} elements are not whole {ggml_type} blocks of {block_len}", dims[0])));
            }
            let size = (numel / block_len)
                .checked_mul(block_bytes)
                .ok_or_else(|| err_dims("the byte size overflows".into()))?;
            if offset % alignment != 0 {
                return Err(GgufError::Misaligned { file: file.into(), name, offset, alignment });
            }
            let start = data_start.checked_add(offset);
            let end = start.and_then(|s| s.checked_add(size));
            match (start, end) {
                (Some(s), Some(e)) if e <= len => {
                    if by_name.insert(name.clone(), tensors.len()).is_some() {
                        return Err(GgufError::DuplicateTensor { file: file.into(), name });
                    }
                    tensors.push(GgufTensorInfo { name, dims, ggml_type, start: s as usize, size: size as usize });
                }
                _ => {
                    return Err(GgufError::PastEof {
                        file: file.into(),
                        name,
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        len,
                    })
                }
            }
        }
        Ok(GgufFile { file: file.into(), version, alignment, data_start: data_start as usize, metadata, by_key, tensors, by_name })
    }

    /// Metadata in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.by_key.get(key).map(|&i| &self.metadata[i].1)
    }

    pub fn tensors(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    /// A metadata error naming `key`.
    pub fn bad(&self, key: &str, why: impl Into<String>) -> GgufError {
        GgufError::Metadata { file: self.file.clone(), key: key.into(), why: why.into() }
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        self.get(key).map(|v| v.as_str().ok_or_else(|| self.bad(key, format!("must be a string, got {}", v.type_name())))).transpose()
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| v.as_u64().ok_or_else(|| self.bad(key, format!("must be a non-negative integer, got {}", v.type_name()))))
            .transpose()
    }

    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.get(key).map(|v| v.as_f64().ok_or_else(|| self.bad(key, format!("must be a number, got {}", v.type_name())))).transpose()
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        self.get(key).map(|v| v.as_bool().ok_or_else(|| self.bad(key, format!("must be a bool, got {}", v.type_name())))).transpose()
    }

    pub fn array(&self, key: &str) -> Result<Option<&[GgufValue]>> {
        self.get(key).map(|v| v.as_array().ok_or_else(|| self.bad(key, format!("must be an array, got {}", v.type_name())))).transpose()
    }
}

/// Bounds-checked little-endian reads over the file's bytes.
struct Cursor<'a> {
    file: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                file: self.file.into(),
                what: what.into(),
                offset: self.pos as u64,
                need: n,
                len: self.bytes.len() as u64,
            });
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N as u64, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// `count` items of at least `min_bytes` each must fit in what remains.
    fn check_count(&self, what: &str, count: u64, min_bytes: u64, max: u64) -> Result<()> {
        if count > max || count.saturating_mul(min_bytes) > self.remaining() {
            return Err(GgufError::Count { file: self.file.into(), what: what.into(), count, len: self.bytes.len() as u64 });
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(&format!("length of {what}"))?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::Utf8 { file: self.file.into(), what: what.into() })
    }

    fn value(&mut self, key: &str, type_id: u32, depth: u32) -> Result<GgufValue> {
        Ok(match type_id {
            0 => GgufValue::U8(self.array::<1>(key)?[0]),
            1 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => GgufValue::U32(self.u32(key)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => {
                    return Err(GgufError::Metadata { file: self.file.into(), key: key.into(), why: format!("bool byte {b} is not 0 or 1") })
                }
            },
            8 => GgufValue::String(self.string(&format!("value of `{key}`"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(GgufError::Metadata { file: self.file.into(), key: key.into(), why: "arrays nested too deeply".into() });
                }
                let elem_type = self.u32(&format!("element type of `{key}`"))?;
                let n = self.u64(&format!("length of array `{key}`"))?;
                let min = match elem_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    _ => return Err(GgufError::ValueType { file: self.file.into(), key: key.into(), type_id: elem_type }),
                };
                self.check_count(&format!("length of array `{key}`"), n, min, u64::MAX)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(key, elem_type, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(key)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            _ => return Err(GgufError::ValueType { file: self.file.into(), key: key.into(), type_id }),
        })
    }
}
