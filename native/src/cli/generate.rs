//! `tessera generate`: offline generation for a few prompts, as text or as vLLM-shaped JSON.

use anyhow::{bail, Context, Result};
use tessera_core::engine::{generate, GenerateParams, RequestOutput};

use crate::load::{load, ModelArgs};

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
    /// Tokens to generate per prompt.
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Also return the top-K log-probabilities of every generated token.
    #[arg(long)]
    pub logprobs: Option<usize>,
    /// Print one JSON object per prompt per line, shaped like vLLM's RequestOutput.
    #[arg(long)]
    pub json: bool,
}

fn parse_ids(s: &str) -> Result<Vec<u32>, String> {
    s.split(',')
        .map(|t| t.trim().parse::<u32>().map_err(|_| format!("{t:?} is not a token id (expected e.g. 1,2,3)")))
        .collect()
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if args.prompt.is_empty() && args.prompt_token_ids.is_empty() {
        bail!("give at least one --prompt TEXT or --prompt-token-ids 1,2,3");
    }
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!("--temperature must be a finite number >= 0, got {}", args.temperature);
    }
    let mut m = load(&args.model)?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        ignore_eos: args.ignore_eos,
        logprobs: args.logprobs,
        seed: args.seed,
        eos_token_ids: m.eos_token_ids(),
        max_model_len: m.max_model_len,
    };
    let mut prompts: Vec<(Option<String>, Vec<u32>)> = Vec::new();
    for text in &args.prompt {
        let tok = m.tokenizer.as_ref().with_context(|| {
            format!("{}: no tokenizer.json, so text prompts cannot be tokenized; use --prompt-token-ids", m.path.display())
        })?;
        prompts.push((Some(text.clone()), tok.encode(text, true)?));
    }
    prompts.extend(args.prompt_token_ids.iter().map(|ids| (None, ids.clone())));
    for (text, ids) in prompts {
        let mut out: RequestOutput = generate(&mut m.runner, &ids, &params)?;
        out.prompt = text;
        if let Some(tok) = &m.tokenizer {
            for o in &mut out.outputs {
                o.text = tok.decode(&o.token_ids, true)?;
            }
        }
        if args.json {
            println!("{}", serde_json::to_string(&out)?);
        } else {
            for o in &out.outputs {
                match &m.tokenizer {
                    Some(_) => println!("{}{}", out.prompt.as_deref().unwrap_or(""), o.text),
                    None => println!("{:?} -> {:?}", out.prompt_token_ids, o.token_ids),
                }
            }
        }
    }
    Ok(())
}
