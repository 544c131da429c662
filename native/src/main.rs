//! The `tessera` binary: parses the command line and runs a subcommand.

use clap::Parser;
use tessera::cli::{BenchCommand, Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(args) => tessera::cli::generate::run(args),
        Command::Chat(args) => tessera::cli::chat::run(args),
        Command::ExportHf(args) => tessera::cli::export::run(args),
        Command::Serve(args) => tessera::cli::serve::run(args),
        Command::Bench { command: BenchCommand::Serve(args) } => tessera::cli::bench_serve::run(args),
        Command::Bench { command: BenchCommand::Latency(args) } => tessera::cli::bench::run(args),
        Command::Bench { command: BenchCommand::Throughput(args) } => tessera::cli::bench_throughput::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
