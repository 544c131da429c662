//! `generation_config.json`: the model's own generation defaults (eos ids, sampling knobs).

use serde_json::Value;

use super::{token_ids, ConfigError, Result};

/// The fields of generation_config.json that an engine uses. Absent = not set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationConfig {
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
    pub do_sample: Option<bool>,
}

impl GenerationConfig {
    pub fn from_json_str(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text)
            .map_err(|source| ConfigError::Json { file: "generation_config.json".into(), source })?;
        let c = v.as_object().ok_or(ConfigError::NotObject { file: "generation_config.json".into() })?;
        let f = super::Fields(c);
        Ok(GenerationConfig {
            bos_token_id: token_ids(c.get("bos_token_id"), "bos_token_id")?.first().copied(),
            eos_token_ids: token_ids(c.get("eos_token_id"), "eos_token_id")?,
            pad_token_id: token_ids(c.get("pad_token_id"), "pad_token_id")?.first().copied(),
            temperature: f.opt_f64("temperature")?.map(|x| x as f32),
            top_p: f.opt_f64("top_p")?.map(|x| x as f32),
            top_k: f.opt_f64("top_k")?.map(|x| x as i64),
            min_p: f.opt_f64("min_p")?.map(|x| x as f32),
            repetition_penalty: f.opt_f64("repetition_penalty")?.map(|x| x as f32),
            max_new_tokens: f.opt_usize("max_new_tokens")?,
            do_sample: f.opt_bool("do_sample")?,
        })
    }
}
