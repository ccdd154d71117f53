//! The `needscope` command line: argument parsing and the commands' edges. `anyhow` lives
//! here only; the core returns its own errors.

mod bundle_cmd;
mod classify;
mod corpus_cmd;
mod eval_cmd;
mod rules_cmd;
pub mod train_cmd;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The default bundle directory.
pub const DEFAULT_MODEL: &str = "models/default";

/// needscope: tags customer statements with need level, expectation and expectation gap.
#[derive(Debug, Parser)]
#[command(name = "needscope", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the classifier over gRPC.
    Serve(Box<needscope::server::cli::ServeArgs>),
    /// Load-test a running server (closed or open loop; unary, batch or stream).
    Bench(Box<needscope::server::cli::BenchArgs>),
    /// Classify a statement, or JSON/plain lines from stdin.
    Classify(classify::ClassifyArgs),
    /// Train a model bundle from labelled data.
    Train(Box<train_cmd::TrainArgs>),
    /// Evaluate a bundle on labelled data.
    Eval(eval_cmd::EvalArgs),
    /// Check or analyse a rules file.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// Verify a model bundle.
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCommand),
    /// Work with the labelled corpus.
    #[command(subcommand)]
    Corpus(corpus_cmd::CorpusCommand),
}

/// Runs the command line; returns the process exit code.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => needscope::server::cli::run_serve(*a),
        Command::Bench(a) => needscope::server::cli::run_bench(*a),
        Command::Classify(a) => classify::run(a),
        Command::Train(a) => train_cmd::run(*a),
        Command::Eval(a) => eval_cmd::run(a),
        Command::Rules(c) => rules_cmd::run(c),
        Command::Bundle(c) => bundle_cmd::run(c),
        Command::Corpus(c) => corpus_cmd::run(c),
    }
}

fn model_arg_default() -> PathBuf {
    PathBuf::from(DEFAULT_MODEL)
}
