//! `tessera bench latency`: the latency of one batch end to end, like `vllm bench latency`:
//! `--batch-size` random prompts of `--input-len` tokens prefilled in one step, then
//! `--output-len` greedy tokens each, one decode step per token. Prints the median prefill
//! throughput, TTFT, decode throughput and per-token latency over `--num-iters` runs.
//!
//! ```text
//! iteration:  [prefill B×input_len tokens -> argmax]  [decode step -> argmax] × (output_len-1)
//!              └──────────── TTFT ──────────────┘      └── per-token latency = mean step ──┘
//! ```
//! The loop drives the model runner directly (what the engine's steps run, without
//! scheduling), on a KV cache sized for exactly this batch.

use std::time::Instant;

use anyhow::{bail, Result};
use tessera_core::backend::cpu::{init_global_threads, set_default_isa};
use tessera_core::backend::Backend;
use tessera_core::models::BatchInput;
use tessera_core::quant::isa::Level;
use tessera_core::sample::Rng;

use crate::load::{load, LoadedModel, ModelArgs};

#[derive(Debug, clap::Args)]
pub struct BenchLatencyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
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

/// What one iteration measured, in seconds.
#[derive(Clone, Copy, Debug)]
struct Iter {
    ttft: f64,
    decode: f64,
    total: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

/// Greedy ids of every row of `logits`.
fn argmax_ids(m: &LoadedModel, logits: &<tessera_core::backend::cpu::CpuBackend as Backend>::Tensor) -> Result<Vec<u32>> {
    let b = &m.runner.backend;
    Ok(pollster::block_on(b.to_host(&b.argmax(logits)?))?.to_u32())
}

/// One prefill + decode run of `prompts`; blocks of sequence `s` are `tables[s]`.
fn run_once(m: &mut LoadedModel, prompts: &[Vec<u32>], tables: &[Vec<u32>], output_len: usize) -> Result<Iter> {
    let bs = m.runner.block_size() as u32;
    let slot = |s: usize, pos: u32| tables[s][(pos / bs) as usize] * bs + pos % bs;
    let t0 = Instant::now();
    let mut input = BatchInput { query_start_loc: vec![0], ..Default::default() };
    for (s, p) in prompts.iter().enumerate() {
        for (pos, &t) in p.iter().enumerate() {
            input.input_ids.push(t);
            input.positions.push(pos as u32);
            input.slot_mapping.push(slot(s, pos as u32));
        }
        input.query_start_loc.push(input.input_ids.len() as u32);
        input.seq_lens.push(p.len() as u32);
        input.block_tables.push(tables[s].clone());
        input.logits_indices.push(input.input_ids.len() as u32 - 1);
    }
    let logits = m.runner.execute(&input)?;
    let mut next = argmax_ids(m, &logits)?;
    let ttft = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for step in 1..output_len {
        let mut input = BatchInput { query_start_loc: vec![0], ..Default::default() };
        for (s, p) in prompts.iter().enumerate() {
            let pos = (p.len() + step - 1) as u32;
            input.input_ids.push(next[s]);
            input.positions.push(pos);
            input.slot_mapping.push(slot(s, pos));
            input.query_start_loc.push(s as u32 + 1);
            input.seq_lens.push(pos + 1);
            input.block_tables.push(tables[s].clone());
            input.logits_indices.push(s as u32);
        }
        let logits = m.runner.execute(&input)?;
        next = argmax_ids(m, &logits)?;
    }
    let decode = t1.elapsed().as_secs_f64();
    Ok(Iter { ttft, decode, total: t0.elapsed().as_secs_f64() })
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
    // A KV cache for exactly this batch: B sequences of input + output tokens (+ null block).
    let mut margs = args.model.clone();
    let per_seq = (args.input_len + args.output_len).div_ceil(margs.block_size.max(1));
    margs.max_model_len = Some(per_seq * margs.block_size.max(1));
    margs.num_gpu_blocks_override = Some(args.batch_size * per_seq + 1);
    let load_start = Instant::now();
    let mut m = load(&margs)?;
    let load_secs = load_start.elapsed().as_secs_f64();
    let vocab = m.config.vocab_size as u64;
    if args.input_len + args.output_len > m.config.max_position_embeddings {
        bail!(
            "--input-len {} + --output-len {} exceed the model's {} positions",
            args.input_len,
            args.output_len,
            m.config.max_position_embeddings
        );
    }
    // Blocks 1.. (0 is the null block), per_seq each.
    let tables: Vec<Vec<u32>> = (0..args.batch_size).map(|s| (0..per_seq).map(|i| (1 + s * per_seq + i) as u32).collect()).collect();
    let mut rng = Rng::new(args.seed);
    let prompts: Vec<Vec<u32>> =
        (0..args.batch_size).map(|_| (0..args.input_len).map(|_| (rng.next_u64() % vocab) as u32).collect()).collect();
    let (threads, isa) = (m.runner.backend.threads(), m.runner.backend.isa());
    if !args.json {
        eprintln!(
            "{}: loaded in {load_secs:.2}s; cpu, {threads} threads, {isa} kernels; batch {} x ({} in + {} out)",
            m.path.display(),
            args.batch_size,
            args.input_len,
            args.output_len
        );
    }
    for i in 0..args.num_iters_warmup {
        let it = run_once(&mut m, &prompts, &tables, args.output_len)?;
        if !args.json {
            eprintln!("warmup {}: {:.3}s", i + 1, it.total);
        }
    }
    let mut iters = Vec::with_capacity(args.num_iters);
    for i in 0..args.num_iters {
        let it = run_once(&mut m, &prompts, &tables, args.output_len)?;
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
    let decode_tps = median(iters.iter().map(|i| b * steps / i.decode).collect());
    let tpot_ms = decode / steps * 1000.0;
    let avg = totals.iter().sum::<f64>() / totals.len() as f64;
    if args.json {
        let v = serde_json::json!({
            "model": m.path.display().to_string(),
            "device": "cpu",
            "threads": threads,
            "isa": isa.name(),
            "batch_size": args.batch_size,
            "input_len": args.input_len,
            "output_len": args.output_len,
            "num_iters": args.num_iters,
            "prefill_tok_s": prefill_tps,
            "decode_tok_s": decode_tps,
            "ttft_s": ttft,
            "tpot_ms": tpot_ms,
            "avg_latency_s": avg,
            "latencies_s": totals,
            "load_s": load_secs,
        });
        println!("{v}");
    } else {
        println!("prefill:   {prefill_tps:>9.1} tok/s   (TTFT {:.1} ms for {} tokens)", ttft * 1000.0, args.batch_size * args.input_len);
        println!("decode:    {decode_tps:>9.1} tok/s   ({tpot_ms:.2} ms per token step, batch {})", args.batch_size);
        println!("Avg latency: {avg:.4} seconds");
        for p in [10.0, 25.0, 50.0, 75.0, 90.0, 99.0] {
            println!("{p:.0}% percentile latency: {:.4} seconds", percentile(totals.clone(), p));
        }
    }
    Ok(())
}
