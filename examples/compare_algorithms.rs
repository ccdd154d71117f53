//! Compares linfa algorithms on the shipped corpus, on the same features (each axis's
//! chi-squared vocabulary, sub-linear tf-idf, L2-normalised), by macro-F1 on the dev split:
//! linfa-logistic's multinomial logistic regression alone, linfa-bayes' multinomial naive
//! Bayes alone (three smoothings), and the two combined as `needscope train` ships them
//! (the logistic regression's log-probabilities plus `nb_weight` times naive Bayes' joint
//! log-likelihoods). The README's "Choosing the algorithm" table comes from
//!
//! ```text
//! cargo run --release --example compare_algorithms 2>/dev/null
//! ```
//!
//! (linfa-bayes 0.8 prints a leftover `dbg!` of every class to stderr while fitting.)

use linfa::prelude::*;
use linfa_bayes::MultinomialNb;
use ndarray::Array1;
use needscope::corpus::{read_labelled, Example};
use needscope::eval::axis_metrics;
use needscope::labels::Axis;
use needscope::model::SparseVec;
use needscope::text::{normalize, Tokenizer};
use needscope::train::{densify, fit, TrainParams, Trained};
use std::path::Path;
use std::time::Instant;

fn rows(examples: &[Example], tokenizer: &Tokenizer, trained: &Trained) -> Vec<SparseVec> {
    let (mut toks, mut scratch) = (Vec::new(), String::new());
    examples
        .iter()
        .map(|e| {
            tokenizer.tokenize_into(&normalize(e.text()), &mut toks, &mut scratch);
            let mut v = SparseVec::new();
            trained.model.features.vectorize_into(&toks, &mut v);
            v
        })
        .collect()
}

fn macro_f1(axis: Axis, gold: &[Example], pred: &[usize]) -> f64 {
    let g: Vec<usize> = gold.iter().map(|e| e.labels.get(axis)).collect();
    axis_metrics(axis, &g, pred, &vec![1.0; pred.len()]).macro_f1
}

fn row(name: &str, seconds: Option<f64>, scores: &[f64]) {
    let cells: Vec<String> = scores.iter().map(|s| format!("{s:.3}")).collect();
    let seconds = seconds.map_or("-".to_string(), |s| format!("{s:.1}"));
    println!("| {name} | {seconds} | {} |", cells.join(" | "));
}

fn main() -> anyhow::Result<()> {
    let train = read_labelled(Path::new("models/corpus/train.jsonl"))?;
    let dev = read_labelled(Path::new("models/corpus/dev.jsonl"))?;
    let userdict = std::fs::read_to_string("models/userdict.txt")?;
    let tokenizer = Tokenizer::with_jieba(Some(&userdict)).map_err(anyhow::Error::msg)?;
    let params = TrainParams::default();

    let started = Instant::now();
    let trained = fit(&train, &tokenizer, &params.clone().check()?, &|_| {})?;
    let fit_seconds = started.elapsed().as_secs_f64();
    let train_rows = rows(&train, &tokenizer, &trained);
    let dev_rows = rows(&dev, &tokenizer, &trained);

    println!("| algorithm | fit (s) | need | explicitness | tier | gap |");
    println!("|---|---|---|---|---|---|");
    let logistic: Vec<f64> = Axis::ALL
        .iter()
        .map(|&a| {
            let x = densify(&dev_rows, &trained.axis_features[a.index()]);
            let pred = trained.linfa[a.index()].logistic.predict(&x).to_vec();
            macro_f1(a, &dev, &pred)
        })
        .collect();
    row(
        &format!("linfa-logistic multinomial, alpha {}", params.alpha),
        None,
        &logistic,
    );
    for alpha in [params.nb_alpha, 0.1, 1.0] {
        let started = Instant::now();
        let mut scores = Vec::new();
        for a in Axis::ALL {
            let columns = &trained.axis_features[a.index()];
            let x = densify::<f64>(&train_rows, columns);
            let y: Array1<usize> = train.iter().map(|e| e.labels.get(a)).collect();
            let nb = MultinomialNb::params()
                .alpha(alpha)
                .fit(&DatasetBase::new(x, y))?;
            let pred = nb.predict(&densify::<f64>(&dev_rows, columns)).to_vec();
            scores.push(macro_f1(a, &dev, &pred));
        }
        row(
            &format!("linfa-bayes multinomial naive Bayes, alpha {alpha}"),
            Some(started.elapsed().as_secs_f64()),
            &scores,
        );
    }
    let combined: Vec<f64> = Axis::ALL
        .iter()
        .map(|&a| {
            let pred: Vec<usize> = dev_rows
                .iter()
                .map(|r| {
                    let logits = trained.model.logits(r);
                    let s = &logits[a.offset()..a.offset() + a.len()];
                    (0..a.len())
                        .max_by(|&i, &j| s[i].total_cmp(&s[j]))
                        .unwrap_or(0)
                })
                .collect();
            macro_f1(a, &dev, &pred)
        })
        .collect();
    row(
        &format!(
            "shipped: logistic + {} x naive Bayes (alpha {}), whole `fit`",
            params.nb_weight, params.nb_alpha
        ),
        Some(fit_seconds),
        &combined,
    );
    Ok(())
}
