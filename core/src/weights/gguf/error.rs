//! Errors of the GGUF reader: each names the file and the field or tensor at fault.

/// Why a GGUF file could not be read or mapped to a model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("{file}: not a GGUF file (starts with {found:?}, expected \"GGUF\")")]
    BadMagic { file: String, found: String },
    #[error("{file}: big-endian GGUF files are not supported")]
    BigEndian { file: String },
    #[error("{file}: GGUF version {version} is not supported (supported: 2, 3)")]
    Version { file: String, version: u32 },
    #[error("{file}: truncated: {what} at byte {offset} needs {need} bytes, but the file has {len}")]
    Truncated { file: String, what: String, offset: u64, need: u64, len: u64 },
    #[error("{file}: {what} = {count} is impossible in a file of {len} bytes")]
    Count { file: String, what: String, count: u64, len: u64 },
    #[error("{file}: {what} is not valid UTF-8")]
    Utf8 { file: String, what: String },
    #[error("{file}: metadata `{key}` has unknown value type {type_id}")]
    ValueType { file: String, key: String, type_id: u32 },
    #[error("{file}: metadata key `{key}` appears twice")]
    DuplicateKey { file: String, key: String },
    #[error("{file}: metadata `{key}`: {why}")]
    Metadata { file: String, key: String, why: String },
    #[error("{file}: tensor `{name}` appears twice")]
    DuplicateTensor { file: String, name: String },
    #[error("{file}: tensor `{name}` has unknown ggml type {type_id}")]
    UnknownType { file: String, name: String, type_id: u32 },
    #[error("{file}: tensor `{name}` has ggml type {ggml_type}, which tessera cannot read (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K)")]
    UnsupportedType { file: String, name: String, ggml_type: String },
    #[error("{file}: tensor `{name}` has invalid dimensions {dims:?}: {why}")]
    Dims { file: String, name: String, dims: Vec<u64>, why: String },
    #[error("{file}: tensor `{name}` data at offset {offset} is not aligned to {alignment} bytes")]
    Misaligned { file: String, name: String, offset: u64, alignment: u64 },
    #[error("{file}: tensor `{name}` data (bytes {start}..{end}) lies past the end of the file ({len} bytes)")]
    PastEof { file: String, name: String, start: u64, end: u64, len: u64 },
    #[error("{file}: general.architecture {arch:?} is not supported (supported: llama, mistral, qwen2, qwen3, gemma3, phi3)")]
    Architecture { file: String, arch: String },
    #[error("{file}: tensor `{name}` has shape {actual:?} (HF order), expected {expected:?}")]
    Shape { file: String, name: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("{file}: tokenizer: {why}")]
    Tokenizer { file: String, why: String },
}

pub type Result<T> = std::result::Result<T, GgufError>;
