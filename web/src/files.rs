//! `ModelFiles`: the files of one model handed over from JavaScript (a `.gguf`, or an
//! HF-style folder: config.json, tokenizer files, safetensors shards), and what they become:
//! config, tokenizer, chat template and a weight source.

use std::collections::BTreeMap;

use tessera_core::config::{GenerationConfig, ModelConfig};
use tessera_core::tokenizer::{effective_chat_template, gguf_chat_template, Tokenizer};
use tessera_core::weights::{FileBytes, GgufWeights, SafetensorsWeights, WeightSource};
use wasm_bindgen::prelude::*;

use crate::error::{core, Result, WebError};

/// Files by name, as fetched by the JavaScript side.
#[wasm_bindgen]
#[derive(Default)]
pub struct ModelFiles {
    files: BTreeMap<String, Vec<u8>>,
}

#[wasm_bindgen]
impl ModelFiles {
    #[wasm_bindgen(constructor)]
    pub fn new() -> ModelFiles {
        ModelFiles::default()
    }

    /// Adds (or replaces) a file; `bytes` is copied into wasm memory.
    pub fn add(&mut self, name: String, bytes: Vec<u8>) {
        self.files.insert(name, bytes);
    }

    /// Names of the files held.
    pub fn names(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }
}

/// A model ready to be built on a backend.
pub struct ModelParts {
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<String>,
    pub weights: Weights,
}

/// The weight source, kept concrete so GGUF can choose quantized or dequantized loading.
pub enum Weights {
    Gguf(GgufWeights),
    Safetensors(SafetensorsWeights),
}

impl Weights {
    pub fn source(&self) -> &dyn WeightSource {
        match self {
            Weights::Gguf(w) => w,
            Weights::Safetensors(w) => w,
        }
    }
}

impl ModelFiles {
    /// A `.gguf` file (exactly one) or an HF folder (config.json + *.safetensors).
    pub fn into_parts(mut self) -> Result<ModelParts> {
        let ggufs: Vec<String> = self.files.keys().filter(|n| n.ends_with(".gguf")).cloned().collect();
        match ggufs.as_slice() {
            [one] => {
                let bytes = self.files.remove(one).expect("listed");
                gguf_parts(one, bytes)
            }
            [] => self.hf_parts(),
            _ => Err(WebError::Files(format!("several .gguf files given: {ggufs:?}; pass one"))),
        }
    }

    fn text(&self, name: &str) -> Result<Option<&str>> {
        self.files
            .get(name)
            .map(|b| std::str::from_utf8(b).map_err(|e| WebError::Files(format!("{name} is not UTF-8: {e}"))))
            .transpose()
    }

    fn hf_parts(mut self) -> Result<ModelParts> {
        let config_text = self.text("config.json")?.ok_or_else(|| {
            WebError::Files(format!("no .gguf and no config.json among {:?}", self.files.keys().collect::<Vec<_>>()))
        })?;
        let config = ModelConfig::from_json_str(config_text).map_err(core)?;
        let generation = match self.text("generation_config.json")? {
            Some(t) => GenerationConfig::from_json_str(t).map_err(core)?,
            None => GenerationConfig::default(),
        };
        let tokenizer = self.files.get("tokenizer.json").map(|b| Tokenizer::from_bytes(b)).transpose().map_err(core)?;
        let chat_template = effective_chat_template(
            self.files.get("tokenizer_config.json").map(Vec::as_slice),
            self.files.get("chat_template.jinja").map(Vec::as_slice),
            false,
        ).map_err(core)?;
        let shards: Vec<String> = self.files.keys().filter(|n| n.ends_with(".safetensors")).cloned().collect();
        if shards.is_empty() {
            return Err(WebError::Files("config.json but no .safetensors file".into()));
        }
        let files = shards.into_iter().map(|n| {
            let b = self.files.remove(&n).expect("listed");
            (n, FileBytes::Owned(b))
        });
        let weights = SafetensorsWeights::from_files(files.collect()).map_err(core)?;
        Ok(ModelParts { config, generation, tokenizer, chat_template, weights: Weights::Safetensors(weights) })
    }
}

fn gguf_parts(name: &str, bytes: Vec<u8>) -> Result<ModelParts> {
    let weights = GgufWeights::from_bytes(name, FileBytes::Owned(bytes))?;
    let config = ModelConfig::from_map(&weights.hf_config()?).map_err(core)?;
    let generation =
        GenerationConfig { bos_token_id: config.bos_token_id, eos_token_ids: config.eos_token_ids.clone(), ..Default::default() };
    let tokenizer = Some(Tokenizer::from_gguf(weights.gguf()).map_err(core)?);
    let chat_template = gguf_chat_template(weights.gguf()).map_err(core)?;
    Ok(ModelParts { config, generation, tokenizer, chat_template, weights: Weights::Gguf(weights) })
}
