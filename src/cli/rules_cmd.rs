//! `needscope rules lint` and `needscope rules report`.

use clap::Subcommand;
use needscope::corpus::read_labelled;
use needscope::rules::{Effect, RuleSet};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rules file without loading a model.
    Lint {
        /// The rules file.
        file: PathBuf,
    },
    /// Per rule: coverage, precision against gold labels, overlaps and conflicts with
    /// other rules on the same axis (a labelling-function analysis).
    Report {
        /// Labelled data (JSONL or CSV).
        #[arg(long)]
        data: PathBuf,
        /// The rules file.
        #[arg(long, default_value = "models/rules.toml")]
        rules: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Statistics of one rule over a data set.
#[derive(Debug, serde::Serialize)]
pub struct RuleStats {
    id: String,
    target: String,
    effect: String,
    fires: usize,
    coverage: f64,
    precision: Option<f64>,
    overlaps: usize,
    conflicts: usize,
    conflicts_with: BTreeMap<String, usize>,
}

pub fn run(c: RulesCommand) -> anyhow::Result<()> {
    match c {
        RulesCommand::Lint { file } => {
            let rs = RuleSet::load(&file)?;
            let (boost, over) = rs.rules().iter().fold((0, 0), |(b, o), r| match r.effect {
                Effect::Boost(_) => (b + 1, o),
                Effect::Override(_) => (b, o + 1),
            });
            println!(
                "ok: {} rules ({boost} boosts, {over} overrides) in {}",
                rs.len(),
                file.display()
            );
            Ok(())
        }
        RulesCommand::Report { data, rules, json } => {
            let rs = RuleSet::load(&rules)?;
            let data = read_labelled(&data)?;
            let stats = report(&rs, &data);
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                println!(
                    "{:<34} {:<24} {:>6} {:>8} {:>9} {:>8} {:>9}  top conflicts",
                    "rule", "target", "fires", "coverage", "precision", "overlaps", "conflicts"
                );
                for s in &stats {
                    let top: Vec<String> = s
                        .conflicts_with
                        .iter()
                        .take(3)
                        .map(|(k, v)| format!("{k}({v})"))
                        .collect();
                    println!(
                        "{:<34} {:<24} {:>6} {:>8.3} {:>9} {:>8} {:>9}  {}",
                        s.id,
                        s.target,
                        s.fires,
                        s.coverage,
                        s.precision
                            .map(|p| format!("{p:.3}"))
                            .unwrap_or_else(|| "-".into()),
                        s.overlaps,
                        s.conflicts,
                        top.join(" ")
                    );
                }
                println!("{} statements, {} rules", data.len(), rs.len());
            }
            Ok(())
        }
    }
}

fn report(rs: &RuleSet, data: &[needscope::corpus::Example]) -> Vec<RuleStats> {
    let rules = rs.rules();
    let mut fires = vec![0usize; rules.len()];
    let mut correct = vec![0usize; rules.len()];
    let mut overlaps = vec![0usize; rules.len()];
    let mut conflicts = vec![0usize; rules.len()];
    let mut conflicts_with: Vec<BTreeMap<String, usize>> = vec![BTreeMap::new(); rules.len()];
    for e in data {
        let fired: Vec<usize> = rs.apply(e.text()).iter().map(|f| f.rule).collect();
        for &i in &fired {
            let r = &rules[i];
            fires[i] += 1;
            if e.labels.get(r.axis) == r.value {
                correct[i] += 1;
            }
            let same_axis: Vec<usize> = fired
                .iter()
                .copied()
                .filter(|&j| j != i && rules[j].axis == r.axis)
                .collect();
            if !same_axis.is_empty() {
                overlaps[i] += 1;
            }
            let mut conflicted = false;
            for j in same_axis {
                if rules[j].value != r.value {
                    conflicted = true;
                    *conflicts_with[i]
                        .entry(rules[j].id.to_string())
                        .or_insert(0) += 1;
                }
            }
            if conflicted {
                conflicts[i] += 1;
            }
        }
    }
    let n = data.len().max(1) as f64;
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| RuleStats {
            id: r.id.to_string(),
            target: format!("{}={}", r.axis, r.axis.values()[r.value]),
            effect: match r.effect {
                Effect::Boost(w) => format!("boost {w:+}"),
                Effect::Override(p) => format!("override p{p}"),
            },
            fires: fires[i],
            coverage: fires[i] as f64 / n,
            precision: (fires[i] > 0).then(|| correct[i] as f64 / fires[i] as f64),
            overlaps: overlaps[i],
            conflicts: conflicts[i],
            conflicts_with: std::mem::take(&mut conflicts_with[i]),
        })
        .collect()
}
