//! `tessera bench throughput`: offline throughput like `vllm bench throughput` with its random
//! dataset: `--num-prompts` prompts of `--input-len` random token ids, all queued at once,
//! `--output-len` greedy tokens each (EOS ignored), through the real engine (continuous
//! batching, chunked prefill, paged KV cache, preemption when the cache is full).
//!
//! ```text
//! load ─ warm-up (one short request, unmeasured) ─ t0 ─ add N requests ─ step … step ─ t1
//! requests/s = N / (t1-t0); total tok/s = N·(in+out) / (t1-t0); output tok/s = N·out / (t1-t0)
//! ```

use std::time::Instant;

use anyhow::{bail, Result};
use tessera_core::backend::cpu::init_global_threads;
use tessera_core::backend::Backend;
use tessera_core::engine::Prompt;
use tessera_core::sample::Rng;

use super::args::{EngineArgs, UsageContext};
use super::bench::{bench_model_args, bench_params, label_text, random_prompts, DeviceLabel};
use crate::load::{LoadedModel, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct BenchThroughputArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Prompt length in tokens (random ids).
    #[arg(long, default_value_t = 512)]
    pub input_len: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 256)]
    pub output_len: usize,
    /// Requests, all queued at the start.
    #[arg(long, default_value_t = 256)]
    pub num_prompts: usize,
    /// CPU worker threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Seed of the random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchThroughputArgs) -> Result<()> {
    if args.input_len == 0 || args.output_len == 0 || args.num_prompts == 0 {
        bail!("--input-len, --output-len and --num-prompts must be at least 1");
    }
    init_global_threads(args.threads)?;
    let margs = bench_model_args(&args.model, args.input_len + args.output_len);
    let load_start = Instant::now();
    crate::with_model!(&margs, |m| throughput_on(&args, m, load_start))
}

fn throughput_on<B: Backend + DeviceLabel>(args: &BenchThroughputArgs, m: LoadedModel<B>, load_start: Instant) -> Result<()> {
    let load_secs = load_start.elapsed().as_secs_f64();
    if args.input_len + args.output_len > m.max_model_len {
        bail!("--input-len {} + --output-len {} exceed max_model_len {}", args.input_len, args.output_len, m.max_model_len);
    }
    let vocab = m.config.vocab_size;
    let label = m.runner.backend.label();
    let path = m.path.display().to_string();
    let kv_blocks = m.runner.num_blocks();
    let block_size = m.runner.block_size();
    let max_num_batched_tokens = args.engine.max_num_batched_tokens(UsageContext::Offline, &m);
    let mut llm = args.engine.build(m)?;
    let mut rng = Rng::new(args.seed);
    if !args.json {
        eprintln!(
            "{path}: loaded in {load_secs:.2}s; {}; KV cache {} blocks x {block_size} tokens; {} prompts x ({} in + {} out)",
            label_text(&label),
            kv_blocks,
            args.num_prompts,
            args.input_len,
            args.output_len
        );
    }
    // Warm-up: cuBLAS heuristics, first launches, memory pool growth (not measured).
    let warm = random_prompts(&mut rng, 1, args.input_len.min(32), vocab);
    llm.generate(warm.into_iter().map(Prompt::Tokens), &bench_params(args.output_len.min(4)))?;

    let prompts = random_prompts(&mut rng, args.num_prompts, args.input_len, vocab);
    let prompt_tokens: usize = prompts.iter().map(Vec::len).sum();
    let params = bench_params(args.output_len);
    let e = &mut llm.engine;
    let before = e.stats();
    let t0 = Instant::now();
    for (i, p) in prompts.into_iter().enumerate() {
        e.add_request(format!("thr-{i}"), p, params.clone())?;
    }
    // Per step: decode-only steps (every scheduled token a decode) vs steps with prefill.
    let (mut finished, mut output_tokens) = (0usize, 0usize);
    let (mut decode_steps, mut decode_secs, mut mixed_secs) = (0u64, 0f64, 0f64);
    // Decode-only steps by batch size: the largest batch's mean step time is the one to set
    // against a profiled batch-`max_num_seqs` decode graph.
    let mut by_batch = std::collections::BTreeMap::<usize, (u64, f64, f64)>::new();
    while finished < args.num_prompts {
        let w0 = e.runner.backend.wait_secs();
        let ts = Instant::now();
        let out = e.step()?;
        let dt = ts.elapsed().as_secs_f64();
        let waited = e.runner.backend.wait_secs().zip(w0).map_or(0.0, |(a, b)| a - b);
        let s = e.stats();
        if s.last_step_tokens == s.num_running + out.iter().filter(|o| o.finished).count() && s.num_waiting == 0 {
            decode_steps += 1;
            decode_secs += dt;
            let e = by_batch.entry(s.last_step_tokens).or_default();
            e.0 += 1;
            e.1 += dt;
            e.2 += waited;
        } else {
            mixed_secs += dt;
        }
        for o in out.iter().filter(|o| o.finished) {
            finished += 1;
            output_tokens += o.outputs.iter().map(|c| c.token_ids.len()).sum::<usize>();
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let after = e.stats();
    if output_tokens != args.num_prompts * args.output_len {
        bail!("the engine generated {output_tokens} tokens, expected {} x {}", args.num_prompts, args.output_len);
    }
    let total = prompt_tokens + output_tokens;
    let (full_batch, (full_steps, full_secs, full_wait)) = by_batch.last_key_value().map_or((0, (0, 0.0, 0.0)), |(&b, &v)| (b, v));
    let steps = after.num_steps_total - before.num_steps_total;
    let preemptions = after.num_preemptions_total - before.num_preemptions_total;
    let (rps, tps, ops) = (args.num_prompts as f64 / elapsed, total as f64 / elapsed, output_tokens as f64 / elapsed);
    if args.json {
        let mut v = serde_json::json!({
            "model": path,
            "num_prompts": args.num_prompts,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "elapsed_time": elapsed,
            "num_requests": args.num_prompts,
            "total_num_tokens": total,
            "total_output_tokens": output_tokens,
            "requests_per_second": rps,
            "tokens_per_second": tps,
            "output_tokens_per_second": ops,
            "steps": steps,
            "decode_only_steps": decode_steps,
            "decode_only_secs": decode_secs,
            "prefill_steps_secs": mixed_secs,
            "decode_full_batch": full_batch,
            "decode_full_steps": full_steps,
            "decode_full_secs": full_secs,
            "decode_full_wait_secs": full_wait,
            "preemptions": preemptions,
            "kv_blocks": kv_blocks,
            "block_size": block_size,
            "max_num_seqs": args.engine.max_num_seqs,
            "max_num_batched_tokens": max_num_batched_tokens,
            "load_s": load_secs,
        });
        if let Some(o) = v.as_object_mut() {
            o.extend(label);
        }
        println!("{v}");
    } else {
        println!("Throughput: {rps:.2} requests/s, {tps:.2} total tokens/s, {ops:.2} output tokens/s");
        println!("Total num prompt tokens:  {prompt_tokens}");
        println!("Total num output tokens:  {output_tokens}");
        println!("Elapsed: {elapsed:.2} s over {steps} engine steps ({preemptions} preemptions)");
        println!("  {decode_steps} decode-only steps: {decode_secs:.2} s; steps with prefill: {mixed_secs:.2} s");
        println!("  of which {full_steps} at batch {full_batch}: {full_secs:.3} s ({full_wait:.3} s waiting for the device)");
    }
    Ok(())
}
