//! Flags shared by `tessera generate` and `tessera chat`: sampling (vLLM's SamplingParams)
//! and engine limits, and building an offline `LLM` from a loaded model with them.

use anyhow::{bail, Result};
use tessera_core::backend::Backend;
use tessera_core::engine::{Engine, EngineConfig, LLM};
use tessera_core::sample::SamplingParams;
use tessera_core::sched::SchedulingPolicy;

use crate::load::LoadedModel;

#[derive(Clone, Debug, clap::Args)]
pub struct SamplingArgs {
    /// Tokens to generate per completion (generate: 16; chat: until max_model_len).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Tokens to generate before eos, stop tokens or stop strings may end a completion.
    #[arg(long, default_value_t = 0)]
    pub min_tokens: usize,
    /// Completions per prompt (they share the prompt's KV blocks).
    #[arg(long, default_value_t = 1)]
    pub n: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pub temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens with this much probability.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0 or -1: all).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub top_k: i32,
    /// Drop tokens less likely than this fraction of the top token.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub presence_penalty: f32,
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub frequency_penalty: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Seed of each request's sampler (same seed, same tokens, alone or batched).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop when the text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Stop after this token id (repeatable).
    #[arg(long)]
    pub stop_token_ids: Vec<u32>,
    /// Keep the matched stop string in the output.
    #[arg(long)]
    pub include_stop_str_in_output: bool,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Also return the top-K log-probabilities of every generated token.
    #[arg(long)]
    pub logprobs: Option<usize>,
    /// Also return the top-K log-probabilities of every prompt token.
    #[arg(long)]
    pub prompt_logprobs: Option<usize>,
}

impl SamplingArgs {
    /// The request's `SamplingParams`; `default_max_tokens` when `--max-tokens` is absent.
    pub fn params(&self, default_max_tokens: Option<usize>) -> Result<SamplingParams> {
        let p = SamplingParams {
            n: self.n,
            max_tokens: self.max_tokens.or(default_max_tokens),
            min_tokens: self.min_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            stop_token_ids: self.stop_token_ids.clone(),
            include_stop_str_in_output: self.include_stop_str_in_output,
            ignore_eos: self.ignore_eos,
            logprobs: self.logprobs,
            prompt_logprobs: self.prompt_logprobs,
            ..SamplingParams::default()
        };
        if let Err(e) = p.validate(None) {
            // Name the flag the way it was typed.
            bail!("--{}: {}", e.field.replace('_', "-"), e.message);
        }
        Ok(p)
    }
}

/// `--scheduling-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    Fcfs,
    Priority,
}

#[derive(Clone, Debug, clap::Args)]
pub struct EngineArgs {
    /// Most sequences in one step.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Token budget of one step (prefills are chunked to it). Default as vLLM's
    /// (`EngineArgs.get_batch_defaults`): on a CUDA GPU with at least 70 GiB that is not an
    /// A100, 16384 offline (generate, chat, bench) and 8192 for `serve`; on other CUDA GPUs
    /// 8192 / 2048; on the CPU and wgpu backends 2048.
    #[arg(long)]
    pub max_num_batched_tokens: Option<usize>,
    /// Automatic prefix caching (on by default, as in vLLM v1).
    #[arg(long, overrides_with = "no_enable_prefix_caching")]
    pub enable_prefix_caching: bool,
    /// Turn automatic prefix caching off.
    #[arg(long, overrides_with = "enable_prefix_caching")]
    pub no_enable_prefix_caching: bool,
    #[arg(long, value_enum, default_value = "fcfs")]
    pub scheduling_policy: PolicyArg,
    /// Run every step eagerly: no CUDA graphs for decode steps (as vLLM's flag; also
    /// `TESSERA_ENFORCE_EAGER=1`). Backends without graphs always run eagerly.
    #[arg(long)]
    pub enforce_eager: bool,
    /// Schedule and launch each step before the previous one's tokens are read back (vLLM's
    /// `--async-scheduling`): the sampled ids feed the next step on the device, so the GPU
    /// does not idle while the host reads back and detokenizes. Pipelines requests
    /// without logprobs or penalties; while any other request is in the engine, steps run
    /// one at a time. Default: on for the GPU backends (cuda, wgpu), off on the CPU (its
    /// steps run on the calling thread: nothing to overlap). Also
    /// `TESSERA_ASYNC_SCHEDULING=1` / `=0`.
    #[arg(long, overrides_with = "no_async_scheduling")]
    pub async_scheduling: bool,
    /// Run every step to completion before scheduling the next.
    #[arg(long, overrides_with = "async_scheduling")]
    pub no_async_scheduling: bool,
}

/// Who drives the engine, for the defaults that depend on it (vLLM's `UsageContext`:
/// `LLM_CLASS` for the offline entry points, `OPENAI_API_SERVER` for `serve`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageContext {
    Offline,
    Server,
}

/// GPUs with at least this much memory (and not A100s) get vLLM's larger step budgets.
const LARGE_GPU_BYTES: u64 = 70 << 30;

/// vLLM's default `max_num_batched_tokens` (`EngineArgs.get_batch_defaults`) for a CUDA GPU
/// `(name, total memory in bytes)`, or `None` for the CPU / wgpu backends, which keep 2048.
/// vLLM excludes the A100 from the large budgets (measured slower there, vLLM PR #17885).
pub fn default_max_num_batched_tokens(usage: UsageContext, gpu: Option<(&str, u64)>) -> usize {
    let Some((name, bytes)) = gpu else { return 2048 };
    let large = bytes >= LARGE_GPU_BYTES && !name.to_lowercase().contains("a100");
    match (large, usage) {
        (true, UsageContext::Offline) => 16384,
        (true, UsageContext::Server) => 8192,
        (false, UsageContext::Offline) => 8192,
        (false, UsageContext::Server) => 2048,
    }
}

impl EngineArgs {
    /// `--max-num-batched-tokens`, or the default for `usage` on the model's device.
    /// An explicit value above the step size the GPU's activation reserve was sized for
    /// (`LoadedModel::activation_tokens`) is warned about: such steps may run out of memory.
    pub fn max_num_batched_tokens<B: Backend>(&self, usage: UsageContext, m: &LoadedModel<B>) -> usize {
        let tokens = self.max_num_batched_tokens.unwrap_or_else(|| {
            default_max_num_batched_tokens(usage, m.gpu.as_ref().map(|(name, bytes)| (name.as_str(), *bytes)))
        });
        if let Some(reserved) = m.activation_tokens.filter(|&r| tokens > r) {
            tracing::warn!(
                max_num_batched_tokens = tokens,
                reserved_for = reserved,
                "--max-num-batched-tokens {tokens} is above the {reserved}-token step the GPU memory reserve was sized for; \
                 lower --gpu-memory-utilization if steps run out of memory"
            );
        }
        tokens
    }

    /// Turns on decode-step graphs in `runner` unless `--enforce-eager` /
    /// `TESSERA_ENFORCE_EAGER=1` (or the backend has none).
    pub fn apply_graphs<B: Backend>(&self, runner: &mut tessera_core::engine::ModelRunner<B>, max_model_len: usize) {
        let env = std::env::var("TESSERA_ENFORCE_EAGER").is_ok_and(|v| v == "1");
        if self.enforce_eager || env {
            tracing::info!("enforce-eager: decode steps run without graphs");
            return;
        }
        runner.enable_decode_graphs(self.max_num_seqs, max_model_len);
    }

    /// Whether steps are scheduled asynchronously on the backend named `backend`.
    pub fn async_scheduling(&self, backend: &str) -> bool {
        match std::env::var("TESSERA_ASYNC_SCHEDULING").as_deref() {
            _ if self.async_scheduling => true,
            _ if self.no_async_scheduling => false,
            Ok("1") => true,
            Ok("0") => false,
            _ => backend != "cpu",
        }
    }

    /// The engine's scheduling config from these flags, on the backend named `backend`.
    pub fn engine_config(&self, max_model_len: usize, max_num_batched_tokens: usize, backend: &str) -> EngineConfig {
        let async_scheduling = self.async_scheduling(backend);
        tracing::info!(max_num_batched_tokens, max_num_seqs = self.max_num_seqs, async_scheduling, "engine limits");
        EngineConfig {
            max_num_seqs: self.max_num_seqs,
            max_num_batched_tokens,
            enable_prefix_caching: !self.no_enable_prefix_caching,
            policy: match self.scheduling_policy {
                PolicyArg::Fcfs => SchedulingPolicy::Fcfs,
                PolicyArg::Priority => SchedulingPolicy::Priority,
            },
            async_scheduling,
            ..EngineConfig::new(max_model_len)
        }
    }

    /// The offline engine over a loaded model.
    pub fn build<B: Backend>(&self, mut m: LoadedModel<B>) -> Result<LLM<B>> {
        self.apply_graphs(&mut m.runner, m.max_model_len);
        let max_num_batched_tokens = self.max_num_batched_tokens(UsageContext::Offline, &m);
        let eos = m.eos_token_ids();
        let token = |id: Option<u32>| id.and_then(|id| m.tokenizer.as_ref()?.id_to_token(id));
        let (bos_token, eos_token) = (token(m.config.bos_token_id), token(eos.first().copied()));
        let config = self.engine_config(m.max_model_len, max_num_batched_tokens, m.runner.backend.name());
        let engine = Engine::new(m.runner, config, m.tokenizer, eos)?;
        Ok(LLM::new(engine, m.chat_template.as_deref(), bos_token, eos_token)?)
    }
}

#[cfg(test)]
mod tests {
    use super::{default_max_num_batched_tokens as budget, UsageContext::*};

    const GIB: u64 = 1 << 30;

    #[test]
    fn step_budget_defaults_follow_vllm() {
        // H100 80 GB (79.2 GiB reported) and H200: vLLM's large-GPU budgets.
        assert_eq!(budget(Offline, Some(("NVIDIA H100 80GB HBM3", 79 * GIB + GIB / 4))), 16384);
        assert_eq!(budget(Server, Some(("NVIDIA H100 80GB HBM3", 79 * GIB))), 8192);
        assert_eq!(budget(Offline, Some(("NVIDIA H200", 140 * GIB))), 16384);
        // The A100 80 GB is excluded by name; small GPUs get the smaller pair.
        assert_eq!(budget(Offline, Some(("NVIDIA A100-SXM4-80GB", 79 * GIB))), 8192);
        assert_eq!(budget(Server, Some(("NVIDIA A100-SXM4-80GB", 79 * GIB))), 2048);
        assert_eq!(budget(Offline, Some(("NVIDIA L4", 22 * GIB))), 8192);
        assert_eq!(budget(Server, Some(("NVIDIA L4", 22 * GIB))), 2048);
        assert_eq!(budget(Offline, Some(("NVIDIA GeForce RTX 4090", 69 * GIB))), 8192);
        // CPU / wgpu: unchanged.
        assert_eq!(budget(Offline, None), 2048);
        assert_eq!(budget(Server, None), 2048);
    }

    #[test]
    fn the_flag_overrides_the_default() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            engine: super::EngineArgs,
        }
        assert_eq!(Cli::parse_from(["t"]).engine.max_num_batched_tokens, None);
        assert_eq!(Cli::parse_from(["t", "--max-num-batched-tokens", "4096"]).engine.max_num_batched_tokens, Some(4096));
    }
}
