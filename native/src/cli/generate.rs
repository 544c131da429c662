//! `tessera generate`: offline generation for a batch of prompts (flags, token ids, or a
//! prompts file) through the continuous-batching engine, as text or as vLLM-shaped JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tessera_core::engine::Prompt;
use tessera_core::sample::SamplingParams;

use super::args::{EngineArgs, SamplingArgs};
#[cfg(not(all(feature = "wgpu", feature = "cuda")))]
use crate::load::DeviceArg;
use crate::load::{LoadedModel, ModelArgs};
use tessera_core::backend::Backend;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text prompt (repeatable). Tokenized with the model's tokenizer, special tokens added.
    #[arg(long)]
    pub prompt: Vec<String>,
    /// A prompt given as comma-separated token ids, e.g. `1,2,3` (repeatable).
    #[arg(long, value_parser = parse_ids)]
    pub prompt_token_ids: Vec<Vec<u32>>,
    /// Prompts from a file: one text prompt per line, or JSON lines with "prompt",
    /// "prompt_token_ids" or "messages" (a chat).
    #[arg(long)]
    pub prompts_file: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Print one JSON object per prompt per line, shaped like vLLM's RequestOutput.
    #[arg(long)]
    pub json: bool,
    /// Send each text prompt as one user message through the model's chat template (and print
    /// only the answer).
    #[arg(long)]
    pub chat: bool,
}

fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|t| t.trim().parse::<u32>().map_err(|_| format!("{t:?} is not a token id (expected e.g. 1,2,3)")))
        .collect()
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if args.prompt.is_empty() && args.prompt_token_ids.is_empty() && args.prompts_file.is_none() {
        bail!("give at least one --prompt TEXT, --prompt-token-ids 1,2,3 or --prompts-file FILE");
    }
    let params = args.sampling.params(Some(16))?;
    let file_prompts = match &args.prompts_file {
        Some(f) => read_prompts_file(f)?,
        None => Vec::new(),
    };
    match args.model.device {
        #[cfg(not(feature = "wgpu"))]
        DeviceArg::Wgpu => bail!("--device wgpu: this build of tessera has no wgpu backend; rebuild with `--features wgpu`"),
        #[cfg(not(feature = "cuda"))]
        DeviceArg::Cuda => bail!("--device cuda: this build of tessera has no CUDA backend; rebuild with `--features cuda`"),
        _ => crate::with_model!(&args.model, |m| run_on(&args, params, file_prompts, m)),
    }
}

/// One prompt as given on the command line or in a prompts file.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptSpec {
    Text(String),
    Tokens(Vec<u32>),
    Messages(Value),
}

/// A prompts file: a JSON object per line (`prompt`, `prompt_token_ids` or `messages`), or a
/// plain text prompt per line; blank lines are skipped.
pub fn read_prompts_file(path: &Path) -> Result<Vec<PromptSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let where_ = || format!("{}:{}", path.display(), i + 1);
        if line.trim().is_empty() {
            continue;
        }
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(line) else {
            out.push(PromptSpec::Text(line.to_string()));
            continue;
        };
        if let Some(p) = o.get("prompt") {
            let p = p.as_str().with_context(|| format!("{}: \"prompt\" must be a string", where_()))?;
            out.push(PromptSpec::Text(p.to_string()));
        } else if let Some(ids) = o.get("prompt_token_ids") {
            let ids: Vec<u32> = serde_json::from_value(ids.clone())
                .with_context(|| format!("{}: \"prompt_token_ids\" must be an array of token ids", where_()))?;
            out.push(PromptSpec::Tokens(ids));
        } else if let Some(m) = o.get("messages") {
            if !m.is_array() {
                bail!("{}: \"messages\" must be an array of chat messages", where_());
            }
            out.push(PromptSpec::Messages(m.clone()));
        } else {
            bail!("{}: a JSON line needs \"prompt\", \"prompt_token_ids\" or \"messages\"", where_());
        }
    }
    Ok(out)
}

/// Generates for every prompt of `args` on the loaded model (any backend).
fn run_on<B: Backend>(args: &GenerateArgs, params: SamplingParams, file_prompts: Vec<PromptSpec>, m: LoadedModel<B>) -> Result<()> {
    let path = m.path.clone();
    let has_tokenizer = m.tokenizer.is_some();
    let mut llm = args.engine.build(m)?;
    let mut specs: Vec<PromptSpec> = args.prompt.iter().cloned().map(PromptSpec::Text).collect();
    specs.extend(args.prompt_token_ids.iter().cloned().map(PromptSpec::Tokens));
    specs.extend(file_prompts);
    let mut prompts: Vec<Prompt> = Vec::with_capacity(specs.len());
    let mut is_chat = Vec::with_capacity(specs.len());
    for spec in specs {
        let chat = match &spec {
            PromptSpec::Text(_) => args.chat,
            PromptSpec::Tokens(_) => false,
            PromptSpec::Messages(_) => true,
        };
        if !has_tokenizer && !matches!(spec, PromptSpec::Tokens(_)) {
            bail!("{}: no tokenizer.json, so text prompts cannot be tokenized; use --prompt-token-ids", path.display());
        }
        let prompt = match spec {
            PromptSpec::Text(t) if args.chat => llm.chat_prompt(&serde_json::json!([{"role": "user", "content": t}]))?,
            PromptSpec::Text(t) => Prompt::Text(t),
            PromptSpec::Tokens(ids) => Prompt::Tokens(ids),
            PromptSpec::Messages(m) => llm.chat_prompt(&m)?,
        };
        prompts.push(prompt);
        is_chat.push(chat);
    }
    let bar = ProgressBar::with_draw_target(Some(prompts.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("Processed prompts {wide_bar} {pos}/{len} [{elapsed}<{eta}] {msg}")
            .expect("valid template"),
    );
    let t0 = std::time::Instant::now();
    let outputs = llm.generate_with_progress(prompts, &params, &mut |p| {
        bar.set_position(p.finished as u64);
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "input: {:.1} toks/s, output: {:.1} toks/s",
            p.prompt_tokens as f64 / secs,
            p.generation_tokens as f64 / secs
        ));
    })?;
    bar.finish_and_clear();
    let s = llm.engine.stats();
    tracing::info!(
        prompts = outputs.len(),
        steps = s.num_steps_total,
        prompt_tokens = s.prompt_tokens_total,
        generation_tokens = s.generation_tokens_total,
        preemptions = s.num_preemptions_total,
        prefix_cache_hits = s.prefix_cache_hits_total,
        secs = t0.elapsed().as_secs_f32(),
        "offline batch done"
    );
    let mut stdout = std::io::stdout().lock();
    for (out, chat) in outputs.iter().zip(is_chat) {
        if args.json {
            writeln!(stdout, "{}", serde_json::to_string(out)?)?;
            continue;
        }
        for o in &out.outputs {
            if !has_tokenizer {
                writeln!(stdout, "{:?} -> {:?}", out.prompt_token_ids, o.token_ids)?;
            } else if chat {
                writeln!(stdout, "{}", o.text)?;
            } else {
                writeln!(stdout, "{}{}", out.prompt.as_deref().unwrap_or(""), o.text)?;
            }
        }
    }
    Ok(())
}
