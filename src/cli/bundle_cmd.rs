//! `needscope bundle verify`.

use clap::Subcommand;
use needscope::classifier::Classifier;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Verify a bundle's manifest, file hashes, model file, rules and thresholds.
    Verify {
        /// The bundle directory.
        dir: PathBuf,
    },
}

pub fn run(c: BundleCommand) -> anyhow::Result<()> {
    match c {
        BundleCommand::Verify { dir } => {
            let cl = Classifier::load(&dir)?;
            let info = cl.info();
            println!(
                "ok: {} model {} ({} features, {} rules, created {})",
                dir.display(),
                info.manifest.model_version,
                info.feature_count,
                info.rule_count,
                info.manifest.created_at
            );
            Ok(())
        }
    }
}
