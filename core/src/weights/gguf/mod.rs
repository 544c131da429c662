//! GGUF models (llama.cpp's format): the container, ggml types, the architecture mapping to
//! HF names and config, and a [`WeightSource`](super::WeightSource) over it.
//!
//! ```text
//! bytes ──> GgufFile::parse (header, metadata, tensor infos; all validated)
//!             ├─> config::hf_config   general.architecture + llama.* keys -> HF config.json map
//!             ├─> names::TensorMap     HF name <-> GGUF name (+ Q/K un-permutation, fusions)
//!             ├─> GgufWeights          WeightSource answering HF names, quantized or f32
//!             └─> export_hf            the same model as an HF folder (config, safetensors, tokenizer)
//! ```

mod config;
mod error;
mod export;
mod names;
mod reader;
mod types;
mod weights;

pub use config::{hf_architecture, hf_config};
pub use error::{GgufError, Result};
pub use export::{export_hf, export_safetensors, HfFolder};
pub use names::{gguf_to_hf_name, hf_to_gguf_name, unpermute_rows, Fixup};
pub use reader::{GgufFile, GgufTensorInfo, GgufValue};
pub use types::GgmlType;
pub use weights::GgufWeights;
