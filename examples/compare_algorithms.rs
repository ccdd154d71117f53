//! Compares linfa algorithms on the shipped corpus: the multinomial logistic regression
//! `needscope train` uses against linfa-bayes' multinomial naive Bayes, on the same features
//! (each axis's chi-squared vocabulary, sub-linear tf-idf, L2-normalised), scored by
//! macro-F1 on the dev split. The figures in the README's "Choosing the algorithm" come from
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
use needscope::train::{densify, fit, TrainParams};
use std::path::Path;
use std::time::Instant;

fn rows(
    examples: &[Example],
    tokenizer: &Tokenizer,
    trained: &needscope::train::Trained,
) -> Vec<SparseVec> {
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

fn main() -> anyhow::Result<()> {
    let train = read_labelled(Path::new("models/corpus/train.jsonl"))?;
    let dev = read_labelled(Path::new("models/corpus/dev.jsonl"))?;
    let userdict = std::fs::read_to_string("models/userdict.txt")?;
    let tokenizer = Tokenizer::with_jieba(Some(&userdict)).map_err(anyhow::Error::msg)?;
    let params = TrainParams::default();

    let started = Instant::now();
    let trained = fit(&train, &tokenizer, &params.clone().check()?, &|_| {})?;
    let logistic_seconds = started.elapsed().as_secs_f64();
    let train_rows = rows(&train, &tokenizer, &trained);
    let dev_rows = rows(&dev, &tokenizer, &trained);

    println!("| algorithm | fit (s) | need | explicitness | tier | gap |");
    println!("|---|---|---|---|---|---|");
    let mut line = format!(
        "| linfa-logistic multinomial, alpha {} | {logistic_seconds:.1} |",
        params.alpha
    );
    for (a, m) in Axis::ALL.iter().zip(&trained.linfa) {
        let x = densify(&dev_rows, &trained.axis_features[a.index()]);
        let pred = m.predict(&x).to_vec();
        line += &format!(" {:.3} |", macro_f1(*a, &dev, &pred));
    }
    println!("{line}");

    for alpha in [1.0f32, 0.1, 0.01] {
        let started = Instant::now();
        let mut scores = Vec::new();
        for a in Axis::ALL {
            let columns = &trained.axis_features[a.index()];
            let x = densify(&train_rows, columns);
            let y: Array1<usize> = train.iter().map(|e| e.labels.get(a)).collect();
            let nb = MultinomialNb::params()
                .alpha(alpha)
                .fit(&DatasetBase::new(x, y))?;
            let pred = nb.predict(&densify(&dev_rows, columns));
            scores.push(macro_f1(a, &dev, &pred.to_vec()));
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "| linfa-bayes multinomial naive Bayes, alpha {alpha} | {seconds:.1} | {} |",
            scores
                .iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    Ok(())
}
