//! `tessera bench latency`: the latency of one batch end to end, like `vllm bench latency`:
//! `--batch-size` random prompts of `--input-len` tokens through the real engine (scheduler,
//! paged KV cache, on-device sampling), `--output-len` greedy tokens each (EOS ignored).
//! Prints the average and percentile latency over `--num-iters` runs, plus TTFT, prefill and
//! decode throughput.
//!
//! ```text
//! iteration:  add B requests ─ step (prefill B×input_len, first tokens) ─ step × (output_len-1)
//!             └───────────────── TTFT ─────────────────┘ └─ per-token latency = mean step ─┘
//! ```
//! Every iteration draws fresh prompts, so the prefix cache never shortens a prefill.
//! Shared with `bench throughput`: [`DeviceLabel`], [`random_prompts`], [`percentile`].

use std::time::Instant;

use anyhow::{bail, Result};
use tessera_core::backend::cpu::{init_global_threads, set_default_isa, CpuBackend};
use tessera_core::backend::Backend;
use tessera_core::engine::Engine;
use tessera_core::quant::isa::Level;
use tessera_core::sample::{RequestOutputKind, Rng, SamplingParams};

use super::args::{EngineArgs, UsageContext};
use crate::load::{resolve_device, DeviceArg, LoadedModel, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct BenchLatencyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Prompt length in tokens (random ids).
    #[arg(long, default_value_t = 32)]
    pub input_len: usize,
    /// Tokens generated per sequence.
    #[arg(long, default_value_t = 128)]
    pub output_len: usize,
    /// Measured iterations.
    #[arg(long, default_value_t = 3)]
    pub num_iters: usize,
    /// Unmeasured iterations first.
    #[arg(long, default_value_t = 1)]
    pub num_iters_warmup: usize,
    /// CPU worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// SIMD level of the CPU's quantized kernels: scalar, avx2, avx512vnni (default: the
    /// best this CPU has).
    #[arg(long)]
    pub isa: Option<String>,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a backend reports about itself in benchmark output.
pub trait DeviceLabel {
    /// JSON fields naming the device (`device`, and e.g. `gpu` or `threads`/`isa`).
    fn label(&self) -> serde_json::Map<String, serde_json::Value>;
    /// Seconds the host has spent waiting for the device in read-backs so far (None: the
    /// backend does not count them, e.g. the CPU, where there is nothing to wait for).
    fn wait_secs(&self) -> Option<f64> {
        None
    }
}

impl DeviceLabel for CpuBackend {
    fn label(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({"device": "cpu", "threads": self.threads(), "isa": self.isa().name()});
        v.as_object().cloned().unwrap_or_default()
    }
}

#[cfg(feature = "cuda")]
impl DeviceLabel for crate::cuda::CudaBackend {
    fn label(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({"device": "cuda", "gpu": self.device_info().name, "dtype": self.activation_dtype().to_string()});
        v.as_object().cloned().unwrap_or_default()
    }

    fn wait_secs(&self) -> Option<f64> {
        Some(self.host_wait_secs())
    }
}

#[cfg(feature = "wgpu")]
impl DeviceLabel for tessera_core::backend::wgpu::WgpuBackend {
    fn label(&self) -> serde_json::Map<String, serde_json::Value> {
        let v = serde_json::json!({"device": "wgpu", "adapter": self.adapter_info().name, "dtype": self.activation_dtype().to_string()});
        v.as_object().cloned().unwrap_or_default()
    }
}

/// One line for humans from a [`DeviceLabel`].
pub(crate) fn label_text(l: &serde_json::Map<String, serde_json::Value>) -> String {
    l.iter().map(|(k, v)| format!("{k}={}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()))).collect::<Vec<_>>().join(" ")
}

/// `n` prompts of `len` random token ids below `vocab`.
pub(crate) fn random_prompts(rng: &mut Rng, n: usize, len: usize, vocab: usize) -> Vec<Vec<u32>> {
    (0..n).map(|_| (0..len).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()).collect()
}

/// Greedy, EOS ignored, exactly `output_len` tokens, no detokenization, final output only.
/// (No `min_tokens`: with EOS ignored it is redundant, and it is a logits processor, which
/// would send every step's logits to the host.)
pub(crate) fn bench_params(output_len: usize) -> SamplingParams {
    SamplingParams {
        max_tokens: Some(output_len),
        temperature: 0.0,
        ignore_eos: true,
        detokenize: false,
        output_kind: RequestOutputKind::FinalOnly,
        ..SamplingParams::default()
    }
}

/// A model-args copy whose max_model_len fits `tokens` (rounded up to a block) unless given.
pub(crate) fn bench_model_args(a: &ModelArgs, tokens: usize) -> ModelArgs {
    let mut m = a.clone();
    let bs = m.block_size.max(1);
    if m.max_model_len.is_none() {
        m.max_model_len = Some(tokens.div_ceil(bs) * bs);
    }
    m
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// What one iteration measured, in seconds.
#[derive(Clone, Copy, Debug)]
struct Iter {
    ttft: f64,
    decode: f64,
    total: f64,
    /// Seconds the host spent outside read-back waits (None: the backend does not count
    /// waits). On a GPU these are the gaps in which the device idles between steps.
    host: Option<f64>,
}

/// One batch through the engine: returns when every request has its `output_len` tokens.
fn run_once<B: Backend + DeviceLabel>(e: &mut Engine<B>, prompts: &[Vec<u32>], output_len: usize, next_id: &mut u64) -> Result<Iter> {
    let params = bench_params(output_len);
    let w0 = e.runner.backend.wait_secs();
    let t0 = Instant::now();
    let start = e.stats().generation_tokens_total;
    for p in prompts {
        e.add_request(format!("lat-{next_id}"), p.clone(), params.clone())?;
        *next_id += 1;
    }
    let mut ttft = None;
    let mut finished = 0;
    while finished < prompts.len() {
        let out = e.step()?;
        finished += out.iter().filter(|o| o.finished).count();
        if ttft.is_none() && e.stats().generation_tokens_total - start >= prompts.len() as u64 {
            ttft = Some(t0.elapsed().as_secs_f64());
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let ttft = ttft.unwrap_or(total);
    let generated = e.stats().generation_tokens_total - start;
    if generated != (prompts.len() * output_len) as u64 {
        bail!("the engine generated {generated} tokens, expected {} x {output_len}", prompts.len());
    }
    let host = e.runner.backend.wait_secs().zip(w0).map(|(w1, w0)| total - (w1 - w0));
    Ok(Iter { ttft, decode: total - ttft, total, host })
}

pub fn run(args: BenchLatencyArgs) -> Result<()> {
    if args.batch_size == 0 || args.input_len == 0 || args.output_len == 0 || args.num_iters == 0 {
        bail!("--batch-size, --input-len, --output-len and --num-iters must be at least 1");
    }
    if let Some(name) = &args.isa {
        let Some(level) = Level::from_name(name) else {
            bail!("--isa {name:?}: expected scalar, avx2 or avx512vnni");
        };
        set_default_isa(level)?;
    }
    init_global_threads(args.threads)?;
    let tokens = args.input_len + args.output_len;
    let mut margs = bench_model_args(&args.model, tokens);
    if matches!(resolve_device(margs.device), DeviceArg::Cpu) && margs.kv_cache_memory.is_none() {
        // The CPU gets a KV cache for exactly this batch (the default would take 4 GiB of RAM).
        let per_seq = tokens.div_ceil(margs.block_size.max(1));
        margs.num_gpu_blocks_override.get_or_insert(args.batch_size * per_seq + 1);
    }
    let load_start = Instant::now();
    crate::with_model!(&margs, |m| latency_on(&args, m, load_start))
}

fn latency_on<B: Backend + DeviceLabel>(args: &BenchLatencyArgs, m: LoadedModel<B>, load_start: Instant) -> Result<()> {
    let load_secs = load_start.elapsed().as_secs_f64();
    let vocab = m.config.vocab_size;
    if args.input_len + args.output_len > m.max_model_len {
        bail!("--input-len {} + --output-len {} exceed max_model_len {}", args.input_len, args.output_len, m.max_model_len);
    }
    let max_num_batched_tokens = args.engine.max_num_batched_tokens(UsageContext::Offline, &m);
    if args.batch_size * args.input_len > max_num_batched_tokens {
        tracing::warn!(
            tokens = args.batch_size * args.input_len,
            max_num_batched_tokens,
            "the prefill is chunked over several steps (raise --max-num-batched-tokens to prefill in one)"
        );
    }
    let label = m.runner.backend.label();
    let path = m.path.display().to_string();
    let mut llm = args.engine.build(m)?;
    let e = &mut llm.engine;
    if !args.json {
        eprintln!(
            "{path}: loaded in {load_secs:.2}s; {}; batch {} x ({} in + {} out)",
            label_text(&label),
            args.batch_size,
            args.input_len,
            args.output_len
        );
    }
    let mut rng = Rng::new(args.seed);
    let mut next_id = 0u64;
    for i in 0..args.num_iters_warmup {
        let prompts = random_prompts(&mut rng, args.batch_size, args.input_len, vocab);
        let it = run_once(e, &prompts, args.output_len, &mut next_id)?;
        if !args.json {
            eprintln!("warmup {}: {:.3}s", i + 1, it.total);
        }
    }
    let mut iters = Vec::with_capacity(args.num_iters);
    for i in 0..args.num_iters {
        let prompts = random_prompts(&mut rng, args.batch_size, args.input_len, vocab);
        let it = run_once(e, &prompts, args.output_len, &mut next_id)?;
        if !args.json {
            eprintln!("iter {}: ttft {:.3}s, decode {:.3}s, total {:.3}s", i + 1, it.ttft, it.decode, it.total);
        }
        iters.push(it);
    }

    let (b, inp, out) = (args.batch_size as f64, args.input_len as f64, args.output_len as f64);
    let steps = (out - 1.0).max(1.0);
    let ttft = median(iters.iter().map(|i| i.ttft).collect());
    let decode = median(iters.iter().map(|i| i.decode).collect());
    let totals: Vec<f64> = iters.iter().map(|i| i.total).collect();
    let prefill_tps = median(iters.iter().map(|i| b * inp / i.ttft).collect());
    let decode_tps = median(iters.iter().map(|i| b * steps / i.decode.max(1e-9)).collect());
    let tpot_ms = decode / steps * 1000.0;
    let avg = totals.iter().sum::<f64>() / totals.len() as f64;
    // Host time outside the device waits, per engine step (the prefill step + `steps`).
    let host_us = iters.iter().map(|i| i.host).collect::<Option<Vec<f64>>>().map(|h| median(h) / (steps + 1.0) * 1e6);
    let pcts = [10.0, 25.0, 50.0, 75.0, 90.0, 99.0];
    if args.json {
        let mut v = serde_json::json!({
            "model": path,
            "batch_size": args.batch_size,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "num_iters": args.num_iters,
            "prefill_tok_s": prefill_tps,
            "decode_tok_s": decode_tps,
            "ttft_s": ttft,
            "tpot_ms": tpot_ms,
            "avg_latency_s": avg,
            "avg_latency": avg,
            "latencies_s": totals,
            "latencies": totals,
            "percentiles": pcts.iter().map(|&p| (format!("{p:.0}"), serde_json::json!(percentile(totals.clone(), p)))).collect::<serde_json::Map<_, _>>(),
            "load_s": load_secs,
            "host_us_per_step": host_us,
        });
        if let Some(o) = v.as_object_mut() {
            o.extend(label);
        }
        println!("{v}");
    } else {
        println!("prefill:   {prefill_tps:>9.1} tok/s   (TTFT {:.1} ms for {} tokens)", ttft * 1000.0, args.batch_size * args.input_len);
        println!("decode:    {decode_tps:>9.1} tok/s   ({tpot_ms:.2} ms per token step, batch {})", args.batch_size);
        if let Some(h) = host_us {
            println!("host:      {h:>9.1} µs a step outside device waits (the device idles then)");
        }
        println!("Avg latency: {avg:.4} seconds");
        for p in pcts {
            println!("{p:.0}% percentile latency: {:.4} seconds", percentile(totals.clone(), p));
        }
    }
    Ok(())
}
