//! Weight sources: safetensors (mmap on native, bytes in the browser), GGUF, dummy (random) weights.
//!
//! Models ask for each tensor by its HF name and the shape they expect; the source checks
//! the shape and dtype and names the tensor in every error. A source that has no such file
//! (dummy) makes the tensor up.

mod dummy;
pub mod gguf;
mod safetensors;

pub use self::dummy::DummyWeights;
pub use self::gguf::{GgufError, GgufWeights};
pub use self::safetensors::{shard_names, FileBytes, SafetensorsWeights};

use crate::tensor::HostTensor;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: {message}")]
    Corrupt { file: String, message: String },
    #[error("missing tensor `{name}` (looked in {where_})")]
    Missing { name: String, where_: String },
    #[error("tensor `{name}` in {file} has shape {actual:?}, expected {expected:?}")]
    Shape { name: String, file: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("tensor `{name}` in {file} has dtype {dtype}, which is not supported (expected F32, F16 or BF16)")]
    Dtype { name: String, file: String, dtype: String },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

pub type Result<T> = std::result::Result<T, WeightsError>;

/// Where a model's tensors come from.
pub trait WeightSource {
    /// The tensor called `name`, checked against `shape`.
    fn get(&self, name: &str, shape: &[usize]) -> Result<HostTensor<'_>>;
    /// Whether a tensor exists (e.g. an untied `lm_head.weight`).
    fn contains(&self, name: &str) -> bool;
    /// Where tensors come from, for messages ("model.safetensors", "dummy weights").
    fn describe(&self) -> String;
}
