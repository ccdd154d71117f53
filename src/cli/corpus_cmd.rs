//! `needscope corpus split`.

use clap::Subcommand;
use needscope::corpus::{read_labelled, stratified_split, write_jsonl};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum CorpusCommand {
    /// Split labelled files into train and dev: whole groups on one side, stratified by need
    /// level and language.
    Split {
        /// Input files.
        #[arg(required = true)]
        input: Vec<PathBuf>,
        /// Where to write the training part.
        #[arg(long)]
        train: PathBuf,
        /// Where to write the dev part.
        #[arg(long)]
        dev: PathBuf,
        /// Fraction held out for dev.
        #[arg(long, default_value_t = 0.18)]
        fraction: f64,
        /// Seed of the shuffle.
        #[arg(long, default_value_t = 20261122)]
        seed: u64,
    },
}

pub fn run(c: CorpusCommand) -> anyhow::Result<()> {
    match c {
        CorpusCommand::Split {
            input,
            train,
            dev,
            fraction,
            seed,
        } => {
            anyhow::ensure!(
                (0.0..1.0).contains(&fraction),
                "fraction must be within 0..1"
            );
            let mut all = Vec::new();
            for p in &input {
                all.extend(read_labelled(p)?);
            }
            let (t, d) = stratified_split(&all, fraction, seed);
            write_jsonl(&train, &t)?;
            write_jsonl(&dev, &d)?;
            println!(
                "{} statements: {} train, {} dev",
                all.len(),
                t.len(),
                d.len()
            );
            Ok(())
        }
    }
}
