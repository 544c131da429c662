//! The `tessera` command line: one module per subcommand.

pub mod generate;

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
}
