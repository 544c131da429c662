//! Safetensors checkpoints: one file or shards listed by `model.safetensors.index.json`.
//!
//! Files are memory-mapped on native and given as bytes in the browser; headers are parsed
//! and validated up front (a truncated or corrupt file fails at load, naming the file), and
//! tensors are borrowed from the mapping until a backend uploads them.

use std::borrow::Cow;
use std::collections::HashMap;

use safetensors::tensor::{Dtype, Metadata};
use safetensors::SafeTensors;

use super::{Result, WeightSource, WeightsError};
use crate::tensor::{DType, HostTensor};

/// The bytes of one file: a read-only mapping on native, or owned bytes.
pub enum FileBytes {
    Owned(Vec<u8>),
    #[cfg(not(target_arch = "wasm32"))]
    Mmap(memmap2::Mmap),
}

impl FileBytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            FileBytes::Owned(v) => v,
            #[cfg(not(target_arch = "wasm32"))]
            FileBytes::Mmap(m) => m,
        }
    }
}

struct Shard {
    file: String,
    bytes: FileBytes,
    header_len: usize,
    metadata: Metadata,
}

/// All tensors of a checkpoint, by name.
pub struct SafetensorsWeights {
    shards: Vec<Shard>,
    by_name: HashMap<String, usize>,
}

impl SafetensorsWeights {
    /// Parse the given files (name for messages, bytes).
    pub fn from_files(files: Vec<(String, FileBytes)>) -> Result<Self> {
        let mut shards = Vec::with_capacity(files.len());
        let mut by_name = HashMap::new();
        for (file, bytes) in files {
            let (header_len, metadata) = SafeTensors::read_metadata(bytes.as_slice())
                .map_err(|e| WeightsError::Corrupt { file: file.clone(), message: format!("not a valid safetensors file: {e}") })?;
            for name in metadata.tensors().keys() {
                by_name.insert(name.clone(), shards.len());
            }
            shards.push(Shard { file, bytes, header_len, metadata });
        }
        Ok(SafetensorsWeights { shards, by_name })
    }

    /// Open `model.safetensors`, or every shard named in `model.safetensors.index.json`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(dir: &std::path::Path) -> Result<Self> {
        let io = |path: &std::path::Path| {
            let path = path.display().to_string();
            move |source| WeightsError::Io { path, source }
        };
        let index = dir.join("model.safetensors.index.json");
        let names: Vec<String> = if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(io(&index))?;
            shard_names(&text).map_err(|message| WeightsError::Corrupt { file: index.display().to_string(), message })?
        } else if dir.join("model.safetensors").exists() {
            vec!["model.safetensors".into()]
        } else {
            return Err(WeightsError::Io {
                path: dir.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no model.safetensors or model.safetensors.index.json in this folder (use --load-format dummy to run without weights)",
                ),
            });
        };
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let path = dir.join(&name);
            let f = std::fs::File::open(&path).map_err(io(&path))?;
            // SAFETY: the mapping is read-only; like every mmap loader we assume the file is
            // not truncated by another process while tessera runs.
            let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io(&path))?;
            files.push((path.display().to_string(), FileBytes::Mmap(map)));
        }
        Self::from_files(files)
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// The distinct shard files of an index, in first-use order.
pub fn shard_names(index_json: &str) -> std::result::Result<Vec<String>, String> {
    let v: serde_json::Value = serde_json::from_str(index_json).map_err(|e| format!("not valid JSON: {e}"))?;
    let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or("missing object `weight_map`")?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| format!("weight_map[{tensor:?}] must be a file name"))?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(format!("weight_map[{tensor:?}] = {file:?} is not a plain file name"));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    Ok(names)
}

impl WeightSource for SafetensorsWeights {
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'_>> {
        let shard = self.by_name.get(name).map(|&i| &self.shards[i]).ok_or_else(|| WeightsError::Missing {
            name: name.into(),
            where_: self.describe(),
        })?;
        let info = shard.metadata.info(name).expect("indexed name has info");
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(WeightsError::Dtype { name: name.into(), file: shard.file.clone(), dtype: format!("{other:?}") })
            }
        };
        if info.shape != shape {
            return Err(WeightsError::Shape {
                name: name.into(),
                file: shard.file.clone(),
                expected: shape.to_vec(),
                actual: info.shape.clone(),
            });
        }
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        Ok(HostTensor { dtype, shape: info.shape.clone(), data: Cow::Borrowed(&shard.bytes.as_slice()[start..end]) })
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    fn describe(&self) -> String {
        match self.shards.len() {
            1 => self.shards[0].file.clone(),
            n => format!("{n} safetensors shards ({}, ...)", self.shards[0].file),
        }
    }
}
