//! The `tessera` command line: one module per subcommand.

pub mod args;
pub mod bench;
pub mod bench_serve;
pub mod bench_throughput;
pub mod chat;
pub mod export;
pub mod generate;
pub mod serve;

use clap::{Parser, Subcommand};

/// tessera: run Hugging Face models (safetensors) with a paged KV cache, vLLM-style.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate continuations of prompts (text or token ids) and print them.
    Generate(generate::GenerateArgs),
    /// Chat with a model in the terminal (streams the replies, keeps the history).
    Chat(chat::ChatArgs),
    /// Write a GGUF model as a Hugging Face folder (config.json, safetensors, tokenizer files).
    ExportHf(export::ExportArgs),
    /// Serve the model over an OpenAI-compatible HTTP API (like `vllm serve`).
    Serve(serve::ServeArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Load-test a running OpenAI-compatible server (like `vllm bench serve`).
    Serve(bench_serve::BenchServeArgs),
    /// Latency of one batch, prefill and decode (like `vllm bench latency`).
    Latency(bench::BenchLatencyArgs),
    /// Offline throughput of many requests at once (like `vllm bench throughput`).
    Throughput(bench_throughput::BenchThroughputArgs),
}
