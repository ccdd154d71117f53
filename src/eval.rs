//! Evaluation: per-axis accuracy, per-class precision/recall/F1, macro-F1, confusion
//! matrices and expected calibration error, for the model alone and for model plus rules.
//!
//! Pure computation over (gold, predicted, probability) triples; rendering to the terminal,
//! Markdown and SVG lives here too so the CLI and the model card share it.

use crate::classifier::{Classifier, ClassifyOptions};
use crate::corpus::Example;
use crate::labels::Axis;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Scores of one class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScores {
    /// The value name.
    pub label: String,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// Gold count.
    pub support: usize,
}

/// Metrics of one axis.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AxisMetrics {
    /// The axis name.
    pub axis: String,
    /// Accuracy.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1.
    pub macro_f1: f64,
    /// Per class.
    pub classes: Vec<ClassScores>,
    /// `confusion[gold][predicted]`.
    pub confusion: Vec<Vec<usize>>,
    /// Expected calibration error of the top probability (10 equal-width bins).
    pub ece: f64,
}

/// Metrics of one axis from predictions and the probability given to each prediction.
pub fn axis_metrics(axis: Axis, gold: &[usize], pred: &[usize], conf: &[f64]) -> AxisMetrics {
    let k = axis.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (&g, &p) in gold.iter().zip(pred) {
        confusion[g][p] += 1;
    }
    let n = gold.len().max(1) as f64;
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let classes: Vec<ClassScores> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|g| confusion[g][c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let recall = if support > 0 {
                tp / support as f64
            } else {
                0.0
            };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassScores {
                label: axis.values()[c].to_string(),
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let macro_f1 = classes.iter().map(|c| c.f1).sum::<f64>() / k as f64;
    AxisMetrics {
        axis: axis.name().to_string(),
        accuracy: correct as f64 / n,
        macro_f1,
        classes,
        confusion,
        ece: expected_calibration_error(gold, pred, conf, 10),
    }
}

/// ECE with `bins` equal-width confidence bins.
pub fn expected_calibration_error(
    gold: &[usize],
    pred: &[usize],
    conf: &[f64],
    bins: usize,
) -> f64 {
    let mut count = vec![0usize; bins];
    let mut acc = vec![0.0; bins];
    let mut sum_conf = vec![0.0; bins];
    for ((&g, &p), &c) in gold.iter().zip(pred).zip(conf) {
        let b = ((c * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        sum_conf[b] += c;
        if g == p {
            acc[b] += 1.0;
        }
    }
    let n = gold.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            (count[b] as f64 / n) * (acc[b] / count[b] as f64 - sum_conf[b] / count[b] as f64).abs()
        })
        .sum()
}

/// Evaluation of a data set for the model alone and for model plus rules.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Data set name.
    pub name: String,
    /// Number of statements.
    pub statements: usize,
    /// Model alone (argmax of model probabilities).
    pub model: Vec<AxisMetrics>,
    /// Model plus rules (final labels).
    pub model_rules: Vec<AxisMetrics>,
    /// Statements whose need level was marked uncertain.
    pub uncertain_need: usize,
}

impl Report {
    /// Flat summary for manifests: `<axis>_macro_f1`, `<axis>_accuracy`, `<axis>_ece`, plus
    /// `model_only_<axis>_macro_f1`.
    pub fn summary(&self) -> BTreeMap<String, f64> {
        let mut m = BTreeMap::new();
        m.insert("statements".into(), self.statements as f64);
        for a in &self.model_rules {
            m.insert(format!("{}_macro_f1", a.axis), round4(a.macro_f1));
            m.insert(format!("{}_accuracy", a.axis), round4(a.accuracy));
            m.insert(format!("{}_ece", a.axis), round4(a.ece));
        }
        for a in &self.model {
            m.insert(
                format!("model_only_{}_macro_f1", a.axis),
                round4(a.macro_f1),
            );
        }
        m
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Classifies every example and scores the results.
pub fn evaluate(classifier: &Classifier, name: &str, data: &[Example]) -> Report {
    let opts = ClassifyOptions::default();
    let mut gold = vec![Vec::new(); 4];
    let mut model_pred = vec![Vec::new(); 4];
    let mut model_conf = vec![Vec::new(); 4];
    let mut final_pred = vec![Vec::new(); 4];
    let mut final_conf = vec![Vec::new(); 4];
    let mut uncertain_need = 0;
    for e in data {
        let Ok(c) = classifier.classify(e.text(), &opts) else {
            continue;
        };
        if c.axes[0].uncertain {
            uncertain_need += 1;
        }
        for a in Axis::ALL {
            let i = a.index();
            gold[i].push(e.labels.get(a));
            let mp = c.model_probs(a);
            let (mi, mv) = argmax(mp);
            model_pred[i].push(mi);
            model_conf[i].push(mv);
            final_pred[i].push(c.axes[i].label);
            final_conf[i].push(c.final_probs(a)[c.axes[i].label]);
        }
    }
    let per = |pred: &Vec<Vec<usize>>, conf: &Vec<Vec<f64>>| {
        Axis::ALL
            .iter()
            .map(|&a| axis_metrics(a, &gold[a.index()], &pred[a.index()], &conf[a.index()]))
            .collect()
    };
    Report {
        name: name.to_string(),
        statements: gold[0].len(),
        model: per(&model_pred, &model_conf),
        model_rules: per(&final_pred, &final_conf),
        uncertain_need,
    }
}

fn argmax(p: &[f64]) -> (usize, f64) {
    p.iter().copied().enumerate().fold(
        (0, f64::NEG_INFINITY),
        |b, (i, x)| if x > b.1 { (i, x) } else { b },
    )
}

/// Renders a report for the terminal.
pub fn render_text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}: {} statements", r.name, r.statements);
    for (m, mr) in r.model.iter().zip(&r.model_rules) {
        let _ = writeln!(
            s,
            "\n{}: accuracy {:.3}  macro-F1 {:.3} (model alone {:.3})  ECE {:.3}",
            mr.axis, mr.accuracy, mr.macro_f1, m.macro_f1, mr.ece
        );
        let _ = writeln!(
            s,
            "  {:<14} {:>9} {:>9} {:>9} {:>8}",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &mr.classes {
            let _ = writeln!(
                s,
                "  {:<14} {:>9.3} {:>9.3} {:>9.3} {:>8}",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        s.push_str(&confusion_text(mr));
    }
    s
}

fn short(label: &str) -> String {
    label.chars().take(5).collect()
}

fn confusion_text(m: &AxisMetrics) -> String {
    let mut s = String::from("  confusion (rows gold, columns predicted)\n  ");
    let _ = write!(s, "{:<14}", "");
    for c in &m.classes {
        let _ = write!(s, " {:>6}", short(&c.label));
    }
    s.push('\n');
    for (g, row) in m.confusion.iter().enumerate() {
        let _ = write!(s, "  {:<14}", m.classes[g].label);
        for v in row {
            let _ = write!(s, " {v:>6}");
        }
        s.push('\n');
    }
    s
}

/// Renders a report as Markdown (for the model card).
pub fn render_markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| axis | accuracy | macro-F1 (model + rules) | macro-F1 (model alone) | ECE |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (m, mr) in r.model.iter().zip(&r.model_rules) {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            mr.axis, mr.accuracy, mr.macro_f1, m.macro_f1, mr.ece
        );
    }
    for mr in &r.model_rules {
        let _ = writeln!(s, "\n**{}** per class (model + rules)\n", mr.axis);
        let _ = writeln!(s, "| class | precision | recall | F1 | support |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for c in &mr.classes {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {} |",
                c.label, c.precision, c.recall, c.f1, c.support
            );
        }
        let _ = writeln!(
            s,
            "\nConfusion (rows gold, columns predicted):\n\n```\n{}```",
            confusion_text(mr)
        );
    }
    s
}

/// Renders the confusion matrices of a report as one SVG heatmap (one panel per axis).
pub fn render_svg(r: &Report) -> Result<String, String> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1200, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, 4));
        for (panel, m) in panels.iter().zip(&r.model_rules) {
            let k = m.classes.len();
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("{} (macro-F1 {:.2})", m.axis, m.macro_f1),
                    ("sans-serif", 16),
                )
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0..k, 0..k)
                .map_err(|e| e.to_string())?;
            let labels: Vec<String> = m.classes.iter().map(|c| short(&c.label)).collect();
            let l2 = labels.clone();
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(k)
                .y_labels(k)
                .x_label_formatter(&move |x| labels.get(*x).cloned().unwrap_or_default())
                .y_label_formatter(&move |y| {
                    k.checked_sub(1 + *y)
                        .and_then(|i| l2.get(i))
                        .cloned()
                        .unwrap_or_default()
                })
                .x_desc("predicted")
                .y_desc("gold")
                .draw()
                .map_err(|e| e.to_string())?;
            for (g, row) in m.confusion.iter().enumerate() {
                let total: usize = row.iter().sum::<usize>().max(1);
                for (p, &v) in row.iter().enumerate() {
                    let share = v as f64 / total as f64;
                    let shade = (255.0 * (1.0 - share)) as u8;
                    let y = k - 1 - g;
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(p, y), (p + 1, y + 1)],
                            RGBColor(shade, shade, 255).filled(),
                        )))
                        .map_err(|e| e.to_string())?;
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{v}"),
                            (p, y + 1),
                            ("sans-serif", 13),
                        )))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_a_known_confusion() {
        let gold = [0, 0, 1, 1];
        let pred = [0, 1, 1, 1];
        let m = axis_metrics(Axis::Explicitness, &gold, &pred, &[0.9, 0.6, 0.8, 0.7]);
        assert_eq!(m.confusion, vec![vec![1, 1], vec![0, 2]]);
        assert!((m.accuracy - 0.75).abs() < 1e-12);
        // class 0: p=1, r=.5, f1=.667; class 1: p=.667, r=1, f1=.8
        assert!((m.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn ece_of_perfect_calibration_is_zero() {
        let gold = [0, 0, 0, 0];
        let pred = [0, 0, 0, 1];
        let conf = [0.75, 0.75, 0.75, 0.75];
        assert!(expected_calibration_error(&gold, &pred, &conf, 10).abs() < 1e-12);
    }
}
