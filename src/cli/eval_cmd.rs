//! `needscope eval`.

use super::model_arg_default;
use anyhow::Context;
use clap::Args;
use needscope::classifier::Classifier;
use needscope::corpus::read_labelled;
use needscope::eval::{evaluate, render_svg, render_text};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model bundle.
    #[arg(long, default_value_os_t = model_arg_default())]
    model: PathBuf,
    /// Labelled data (JSONL or CSV).
    #[arg(long)]
    data: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// Write a confusion-matrix heatmap (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Evaluate with this rules file instead of the bundle's (to try rule changes without
    /// retraining).
    #[arg(long)]
    rules: Option<PathBuf>,
}

pub fn run(a: EvalArgs) -> anyhow::Result<()> {
    let mut c = Classifier::load(&a.model)
        .with_context(|| format!("loading bundle {}", a.model.display()))?;
    if let Some(r) = &a.rules {
        c = c.with_rules(needscope::rules::RuleSet::load(r)?);
    }
    let data = read_labelled(&a.data)?;
    let name = a
        .data
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("data")
        .to_string();
    let report = evaluate(&c, &name, &data);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_text(&report));
    }
    if let Some(p) = a.svg {
        let svg = render_svg(&report).map_err(|e| anyhow::anyhow!("rendering svg: {e}"))?;
        std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
