//! GGUF -> Hugging Face folder contents (`tessera export-hf`): config.json,
//! generation_config.json, model.safetensors (f32 or f16, HF names and layout), tokenizer.json
//! and tokenizer_config.json (with the chat template). Everything is built as bytes so it works
//! in the browser too; writing files is the caller's job.

use std::borrow::Cow;

use safetensors::tensor::{Dtype, View};
use serde_json::{json, Value};

use super::weights::GgufWeights;
use crate::tensor::{DType, HostTensor};
use crate::tokenizer::{gguf_tokenizer_config, gguf_tokenizer_json};
use crate::weights::{Result, WeightsError};

/// The files of an HF model folder, as (file name, bytes).
pub struct HfFolder {
    pub files: Vec<(String, Vec<u8>)>,
}

struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn corrupt(w: &GgufWeights, message: String) -> WeightsError {
    WeightsError::Corrupt { file: w.describe_file(), message }
}

/// Every tensor of `w` in HF layout as `dtype` (F32 or F16) safetensors bytes.
pub fn export_safetensors(w: &GgufWeights, dtype: DType) -> Result<Vec<u8>> {
    let st_dtype = match dtype {
        DType::F32 => Dtype::F32,
        DType::F16 => Dtype::F16,
        DType::BF16 => Dtype::BF16,
        other => return Err(corrupt(w, format!("export dtype must be float32, float16 or bfloat16, not {other}"))),
    };
    let mut tensors = Vec::new();
    for name in w.hf_names() {
        let t: HostTensor<'_> = w.get_any(&name)?;
        let v = t.to_f32();
        let data: Vec<u8> = match dtype {
            DType::F16 => v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
            DType::BF16 => v.iter().flat_map(|x| half::bf16::from_f32(*x).to_le_bytes()).collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        tensors.push((name, Tensor { dtype: st_dtype, shape: t.shape.clone(), data }));
    }
    let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::tensor::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))
        .map_err(|e| corrupt(w, format!("cannot serialize safetensors: {e}")))
}

/// The whole folder: config.json, generation_config.json, model.safetensors, tokenizer.json,
/// tokenizer_config.json.
pub fn export_hf(w: &GgufWeights, dtype: DType) -> Result<HfFolder> {
    let mut config = w.hf_config()?;
    config.insert("torch_dtype".into(), json!(dtype.hf_name()));
    let tok_err = |e: crate::tokenizer::TokenizerError| corrupt(w, e.to_string());
    let g = w.gguf();
    let tokenizer = gguf_tokenizer_json(g).map_err(tok_err)?;
    let tok_config = gguf_tokenizer_config(g).map_err(tok_err)?;
    let mut generation = serde_json::Map::new();
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(k) {
            generation.insert(k.into(), v.clone());
        }
    }
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    Ok(HfFolder {
        files: vec![
            ("config.json".into(), pretty(&Value::Object(config))),
            ("generation_config.json".into(), pretty(&Value::Object(generation))),
            ("tokenizer.json".into(), serde_json::to_vec(&tokenizer).unwrap_or_default()),
            ("tokenizer_config.json".into(), pretty(&tok_config)),
            ("model.safetensors".into(), export_safetensors(w, dtype)?),
        ],
    })
}
