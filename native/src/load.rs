//! From `--model` to a runnable model: resolve the path (local folder or hub id), read
//! config.json / generation_config.json / tokenizer files, open the weights, build the model
//! on the chosen backend and size its KV cache.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use tessera_core::backend::cpu::CpuBackend;
use tessera_core::config::{GenerationConfig, ModelConfig};
use tessera_core::engine::ModelRunner;
use tessera_core::kv::blocks_for;
use tessera_core::models::load_model;
use tessera_core::tokenizer::{effective_chat_template, Tokenizer, TokenizerConfig};
use tessera_core::weights::{DummyWeights, SafetensorsWeights, WeightSource};

use crate::hub::{resolve_model_files, HubOptions};

/// `--load-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LoadFormat {
    /// safetensors for a folder (GGUF files need `gguf`).
    Auto,
    Safetensors,
    Gguf,
    /// Random weights from config.json alone.
    Dummy,
}

/// `--dtype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DTypeArg {
    Auto,
    Float32,
    Float16,
    Bfloat16,
}

/// `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The best device present (CPU in this build).
    Auto,
    Cpu,
    Cuda,
    Wgpu,
}

/// Everything that decides how a model is loaded.
#[derive(Clone, Debug, clap::Args)]
pub struct ModelArgs {
    /// A local model folder (config.json + safetensors + tokenizer files) or a Hugging Face
    /// repo id (`owner/name`, fetched through the HF cache; honours HF_HOME, HF_ENDPOINT,
    /// HF_TOKEN, HF_HUB_OFFLINE).
    #[arg(long)]
    pub model: String,
    /// Branch, tag or commit of a hub model.
    #[arg(long, default_value = "main")]
    pub revision: String,
    #[arg(long, value_enum, default_value = "auto")]
    pub load_format: LoadFormat,
    /// Compute dtype. The CPU backend computes in float32 (`auto`).
    #[arg(long, value_enum, default_value = "auto")]
    pub dtype: DTypeArg,
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Longest prompt + output, in tokens (default: the model's max_position_embeddings).
    #[arg(long)]
    pub max_model_len: Option<usize>,
    /// Tokens per KV-cache block.
    #[arg(long, default_value_t = 16)]
    pub block_size: usize,
}

/// A loaded model and what surrounds it.
pub struct LoadedModel {
    pub path: PathBuf,
    pub config: ModelConfig,
    pub generation: GenerationConfig,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<String>,
    pub max_model_len: usize,
    pub runner: ModelRunner<CpuBackend>,
}

impl LoadedModel {
    /// eos ids: generation_config.json's, else config.json's.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        if self.generation.eos_token_ids.is_empty() {
            self.config.eos_token_ids.clone()
        } else {
            self.generation.eos_token_ids.clone()
        }
    }
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<String>> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Loads `args.model`, with a KV cache large enough for one sequence of `max_model_len`.
pub fn load(args: &ModelArgs) -> Result<LoadedModel> {
    match args.device {
        DeviceArg::Auto | DeviceArg::Cpu => {}
        DeviceArg::Cuda | DeviceArg::Wgpu => {
            bail!("--device {:?}: this build of tessera has only the CPU backend", args.device)
        }
    }
    if !matches!(args.dtype, DTypeArg::Auto | DTypeArg::Float32) {
        bail!("--dtype {:?}: the CPU backend computes in float32; use --dtype auto or float32", args.dtype);
    }
    if args.load_format == LoadFormat::Gguf || args.model.ends_with(".gguf") {
        bail!("{}: GGUF files are not supported by this build yet; pass a folder with config.json and safetensors", args.model);
    }
    let opts = HubOptions::from_env().with_revision(args.revision.clone());
    let resolved = resolve_model_files(&args.model, &opts, args.load_format != LoadFormat::Dummy)?;
    let dir = resolved.path;
    if !dir.is_dir() {
        bail!("{}: expected a model folder holding config.json", dir.display());
    }
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path)
        .with_context(|| format!("{}: cannot read config.json (is this a Hugging Face model folder?)", dir.display()))?;
    let config = ModelConfig::from_json_str(&config_text).with_context(|| config_path.display().to_string())?;
    let generation = match read_optional(&dir, "generation_config.json")? {
        Some(t) => GenerationConfig::from_json_str(&t).with_context(|| dir.join("generation_config.json").display().to_string())?,
        None => GenerationConfig::default(),
    };
    let tokenizer = if dir.join("tokenizer.json").exists() {
        Some(Tokenizer::from_file(dir.join("tokenizer.json"))?)
    } else {
        None
    };
    let tok_config_text = read_optional(&dir, "tokenizer_config.json")?;
    if let Some(t) = &tok_config_text {
        TokenizerConfig::from_json_str(t).with_context(|| dir.join("tokenizer_config.json").display().to_string())?;
    }
    let jinja = read_optional(&dir, "chat_template.jinja")?;
    let chat_template =
        effective_chat_template(tok_config_text.as_deref().map(str::as_bytes), jinja.as_deref().map(str::as_bytes), false)?;

    let weights: Box<dyn WeightSource> = match args.load_format {
        LoadFormat::Dummy => Box::new(DummyWeights::default()),
        _ => Box::new(SafetensorsWeights::from_dir(&dir)?),
    };
    let backend = CpuBackend::new();
    let t0 = std::time::Instant::now();
    let model = load_model(&backend, &config, weights.as_ref()).map_err(|e| anyhow!("{}: {e}", dir.display()))?;
    tracing::info!(
        architecture = %config.architecture,
        layers = config.num_hidden_layers,
        weights = %weights.describe(),
        secs = t0.elapsed().as_secs_f32(),
        "model loaded"
    );
    let max_model_len = args.max_model_len.unwrap_or(config.max_position_embeddings);
    if args.block_size == 0 {
        bail!("--block-size must be at least 1");
    }
    let num_blocks = blocks_for(max_model_len, args.block_size) + 1;
    let runner = ModelRunner::new(backend, model, num_blocks, args.block_size)?;
    Ok(LoadedModel { path: dir, config, generation, tokenizer, chat_template, max_model_len, runner })
}
