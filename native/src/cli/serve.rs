//! `tessera serve [MODEL]`: the OpenAI-compatible HTTP server, with vLLM's flag names.
//! It listens first and loads the model on the engine thread (503 until it is ready).

use std::path::Path;

use anyhow::{bail, Context, Result};
use tessera_core::config::GenerationConfig;
use tessera_core::engine::Engine;
use tessera_core::tokenizer::ChatTemplate;

use crate::cli::args::{EngineArgs, UsageContext};
use crate::load::{load, resolve_device, DeviceArg, LoadedModel, ModelArgs};
use tessera_core::backend::Backend;
use crate::server::core_engine::CoreEngine;
use crate::server::params::GenDefaults;
use crate::server::state::{unix_now, ModelInfo, ServerConfig};
use crate::server::ServeOptions;

/// `--generation-config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GenerationConfigArg {
    /// Sampling defaults from the model's generation_config.json.
    Auto,
    /// vLLM's own defaults (temperature 1, top_p 1, ...).
    Vllm,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The model to serve (same as --model).
    #[arg(value_name = "MODEL")]
    pub model_tag: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Require `Authorization: Bearer KEY` on /v1 endpoints (also read from VLLM_API_KEY).
    #[arg(long, env = "VLLM_API_KEY")]
    pub api_key: Option<String>,
    /// Names the model answers to (the first is reported); default: the --model value.
    #[arg(long, num_args = 1..)]
    pub served_model_name: Vec<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// A Jinja chat template (a file, or the template itself) replacing the model's.
    #[arg(long)]
    pub chat_template: Option<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub generation_config: GenerationConfigArg,
    /// CORS origins allowed (`*` = any).
    #[arg(long, num_args = 1.., default_values_t = vec!["*".to_string()])]
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes (413 above).
    #[arg(long, default_value_t = 8 << 20)]
    pub max_request_body_bytes: usize,
    /// On SIGINT/SIGTERM, seconds to let in-flight requests finish before aborting them.
    #[arg(long, default_value_t = 5.0)]
    pub shutdown_timeout: f64,
}

fn chat_template_source(arg: &str) -> Result<String> {
    let p = Path::new(arg);
    if p.is_file() {
        return std::fs::read_to_string(p).with_context(|| format!("reading --chat-template {}", p.display()));
    }
    if arg.contains("{{") || arg.contains("{%") {
        return Ok(arg.to_string());
    }
    bail!("--chat-template {arg:?}: no such file, and it does not look like a Jinja template")
}

fn gen_defaults(g: &GenerationConfig, mode: GenerationConfigArg) -> GenDefaults {
    if mode == GenerationConfigArg::Vllm {
        return GenDefaults::default();
    }
    GenDefaults {
        temperature: g.temperature,
        top_p: g.top_p,
        top_k: g.top_k.map(|k| k.clamp(-1, i32::MAX as i64) as i32),
        min_p: g.min_p,
        repetition_penalty: g.repetition_penalty,
        max_tokens: g.max_new_tokens,
    }
}

pub fn run(mut args: ServeArgs) -> Result<()> {
    // `tessera serve MODEL` or `--model MODEL`; neither = the default model.
    match (args.model_tag.take(), args.model.model.is_empty()) {
        (Some(tag), true) => args.model.model = tag,
        (Some(tag), false) if tag != args.model.model => bail!("the model is given twice: {tag:?} and --model {:?}", args.model.model),
        _ => {}
    }
    if args.engine.max_num_seqs == 0 || args.engine.max_num_batched_tokens == Some(0) {
        bail!("--max-num-seqs and --max-num-batched-tokens must be at least 1");
    }
    // Fail fast on a bad template or model path before listening.
    let template_override = args.chat_template.as_deref().map(chat_template_source).transpose()?;
    if let Some(t) = &template_override {
        ChatTemplate::new(t).context("--chat-template")?;
    }
    let names = if args.served_model_name.is_empty() { vec![args.model.model_name().to_string()] } else { args.served_model_name.clone() };
    let opts = ServeOptions {
        host: args.host.clone(),
        port: args.port,
        config: ServerConfig {
            max_body_bytes: args.max_request_body_bytes,
            api_key: args.api_key.clone().filter(|k| !k.is_empty()),
            allowed_origins: args.allowed_origins.clone(),
        },
        shutdown_timeout: std::time::Duration::from_secs_f64(args.shutdown_timeout.max(0.0)),
    };
    let names_ = names;
    let template_ = template_override;
    match resolve_device(args.model.device) {
        #[cfg(feature = "cuda")]
        DeviceArg::Cuda => crate::server::serve(opts, move || {
            debug_load_delay();
            let m = crate::load::load_cuda(&args.model).map_err(|e| format!("{e:#}"))?;
            core_engine(m, &args, names_, template_)
        }),
        #[cfg(not(feature = "cuda"))]
        DeviceArg::Cuda => bail!("--device cuda: this build of tessera has no CUDA backend; rebuild with `--features cuda`"),
        _ => crate::server::serve(opts, move || {
            debug_load_delay();
            let m = load(&args.model).map_err(|e| format!("{e:#}"))?;
            core_engine(m, &args, names_, template_)
        }),
    }
}

/// Test hook: a slow load, to observe the 503s served while the model loads.
fn debug_load_delay() {
    if let Some(ms) = std::env::var("TESSERA_DEBUG_LOAD_DELAY_MS").ok().and_then(|v| v.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The engine the server drives, over a model loaded on any backend.
fn core_engine<B: Backend>(
    mut m: LoadedModel<B>,
    args: &ServeArgs,
    names: Vec<String>,
    template_override: Option<String>,
) -> Result<(CoreEngine<B>, ModelInfo), String> {
    let e = &args.engine;
    e.apply_graphs(&mut m.runner, m.max_model_len);
    let max_num_batched_tokens = e.max_num_batched_tokens(UsageContext::Server, &m);
    let config = e.engine_config(m.max_model_len, max_num_batched_tokens, m.runner.backend.name());
    let eos = m.eos_token_ids();
    let template = template_override.or(m.chat_template.clone());
    let chat_template = template.as_deref().map(ChatTemplate::new).transpose().map_err(|e| format!("chat template: {e}"))?;
    let token = |id: Option<u32>| id.and_then(|i| m.tokenizer.as_ref()?.id_to_token(i));
    let info = ModelInfo {
        names,
        root: m.path.display().to_string(),
        created: unix_now(),
        max_model_len: m.max_model_len,
        vocab_size: m.config.vocab_size,
        bos_token: token(m.config.bos_token_id),
        eos_token: token(eos.first().copied()),
        chat_template,
        tokenizer: m.tokenizer.clone(),
        defaults: gen_defaults(&m.generation, args.generation_config),
    };
    let engine = Engine::new(m.runner, config, m.tokenizer, eos).map_err(|e| e.to_string())?;
    Ok((CoreEngine::new(engine), info))
}

