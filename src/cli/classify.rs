//! `needscope classify`.

use super::model_arg_default;
use anyhow::Context;
use clap::Args;
use needscope::classifier::{Classification, Classifier, ClassifyOptions};
use needscope::labels::Axis;
use needscope::output::ResultJson;
use std::io::{BufRead, Write};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ClassifyArgs {
    /// The statement; without it, statements are read from stdin, one per line (plain text
    /// or JSON `{"id"?, "text"}`), and results written as JSON lines.
    text: Option<String>,
    /// The model bundle.
    #[arg(long, default_value_os_t = model_arg_default())]
    model: PathBuf,
    /// Include per-token contributions to the need level.
    #[arg(long)]
    explain: bool,
    /// Print JSON for a single statement too.
    #[arg(long)]
    json: bool,
    /// Uncertainty: minimum top probability on every axis (default: the bundle's).
    #[arg(long)]
    min_probability: Option<f64>,
    /// Uncertainty: minimum top-two margin on every axis (default: the bundle's).
    #[arg(long)]
    min_margin: Option<f64>,
}

#[derive(serde::Deserialize)]
struct InputLine {
    id: Option<serde_json::Value>,
    text: String,
}

pub fn run(a: ClassifyArgs) -> anyhow::Result<()> {
    let c = Classifier::load(&a.model)
        .with_context(|| format!("loading bundle {}", a.model.display()))?;
    let thresholds = match (a.min_probability, a.min_margin) {
        (None, None) => None,
        (p, m) => {
            let mut t = c.thresholds();
            for axis in t.0.iter_mut() {
                axis.min_probability = p.unwrap_or(axis.min_probability);
                axis.min_margin = m.unwrap_or(axis.min_margin);
            }
            t.validate()?;
            Some(t)
        }
    };
    let opts = ClassifyOptions {
        explain: a.explain,
        thresholds,
        ..Default::default()
    };
    match a.text {
        Some(text) => {
            let r = c.classify(&text, &opts)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&ResultJson::new(None, &text, &r))?
                );
            } else {
                print!("{}", readable(&text, &r));
            }
            Ok(())
        }
        None => stream(&c, &opts),
    }
}

fn stream(c: &Classifier, opts: &ClassifyOptions) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (n, line) in stdin.lock().lines().enumerate() {
        let line_no = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"line": line_no, "error": format!("unreadable line: {e}")})
                )?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let parsed = if line.trim_start().starts_with('{') {
            match serde_json::from_str::<InputLine>(&line) {
                Ok(i) => Ok((
                    i.id.map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    }),
                    i.text,
                )),
                Err(e) => Err(format!("invalid JSON line: {e}")),
            }
        } else {
            Ok((None, line.clone()))
        };
        let v = match parsed {
            Err(e) => serde_json::json!({"line": line_no, "error": e}),
            Ok((id, text)) => match c.classify(&text, opts) {
                Ok(r) => serde_json::to_value(ResultJson::new(id.as_deref(), &text, &r))?,
                Err(e) => serde_json::json!({"line": line_no, "id": id, "error": e.to_string()}),
            },
        };
        writeln!(out, "{v}")?;
    }
    out.flush()?;
    Ok(())
}

fn readable(text: &str, r: &Classification) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "statement: {text}");
    let _ = writeln!(s, "language:  {}   model: {}", r.lang, r.model_version);
    if r.content_free {
        let _ = writeln!(s, "content-free: carries no need; every axis is uncertain");
    }
    for a in Axis::ALL {
        let ax = &r.axes[a.index()];
        let p = r.final_probs(a)[ax.label];
        let _ = write!(
            s,
            "{:<13} {:<13} p={:.2}",
            a.name(),
            a.values()[ax.label],
            p
        );
        if let Some(rule) = &ax.decided_by {
            let _ = write!(s, "  decided by rule {rule}");
        }
        if ax.uncertain {
            let _ = write!(s, "  (uncertain)");
        }
        s.push('\n');
    }
    let chars: Vec<char> = text.chars().collect();
    let span_text = |a: u32, b: u32| chars[a as usize..b as usize].iter().collect::<String>();
    for h in &r.rules {
        let spans: Vec<String> = h
            .spans
            .iter()
            .map(|sp| {
                format!(
                    "\"{}\"@{}..{}",
                    span_text(sp.start, sp.end),
                    sp.start,
                    sp.end
                )
            })
            .collect();
        let _ = writeln!(
            s,
            "rule {} -> {} {}: {}",
            h.rule_id,
            h.axis,
            h.axis.values()[h.value],
            spans.join(", ")
        );
    }
    if !r.contributions.is_empty() {
        let _ = writeln!(s, "top contributions to the need level:");
        for c in r.contributions.iter().take(10) {
            let where_: Vec<String> = c
                .spans
                .iter()
                .map(|sp| format!("{}..{}", sp.start, sp.end))
                .collect();
            let _ = writeln!(
                s,
                "  {:+.3}  {}  at {}",
                c.contribution,
                c.feature,
                where_.join(",")
            );
        }
    }
    s
}
