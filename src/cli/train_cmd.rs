//! `needscope train`.

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use needscope::labels::Axis;
use needscope::pipeline::{run as run_job, Event, TrainJob};
use needscope::train::{FeatureBudget, Stage, TrainParams};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Labelled training files (JSONL or CSV with `text`, `need`, `explicitness`, `tier`,
    /// `gap`); several are concatenated.
    #[arg(long, required = true, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Dev file for evaluation; without it a stratified hold-out is taken.
    #[arg(long)]
    dev: Option<PathBuf>,
    /// Challenge file, reported beside dev.
    #[arg(long)]
    challenge: Option<PathBuf>,
    /// Output bundle directory.
    #[arg(long)]
    out: PathBuf,
    /// Rules file to ship in the bundle.
    #[arg(long, default_value = "models/rules.toml")]
    rules: PathBuf,
    /// jieba user dictionary to ship in the bundle.
    #[arg(long, default_value = "models/userdict.txt")]
    userdict: PathBuf,
    /// Thresholds file to ship in the bundle.
    #[arg(long, default_value = "models/thresholds.toml")]
    thresholds: PathBuf,
    /// L2 regularisation strength.
    #[arg(long, default_value_t = TrainParams::default().alpha)]
    alpha: f64,
    /// L-BFGS iteration cap per axis.
    #[arg(long, default_value_t = TrainParams::default().max_iterations)]
    max_iterations: u64,
    /// Gradient norm at which L-BFGS stops (the loss is summed over statements).
    #[arg(long, default_value_t = TrainParams::default().gradient_tolerance)]
    gradient_tolerance: f64,
    /// Minimum document frequency of a feature.
    #[arg(long, default_value_t = TrainParams::default().min_df)]
    min_df: usize,
    /// Features per axis: one number for every axis, or four comma-separated in axis order
    /// (need,explicitness,tier,gap); each axis picks its own by chi-squared.
    #[arg(long, default_value_t = TrainParams::default().max_features)]
    max_features: FeatureBudget,
    /// Smoothing of the naive Bayes feature counts.
    #[arg(long, default_value_t = TrainParams::default().nb_alpha)]
    nb_alpha: f64,
    /// Weight of the naive Bayes log-likelihoods added to the logistic regression's
    /// log-probabilities; 0 for logistic regression alone.
    #[arg(long, default_value_t = TrainParams::default().nb_weight)]
    nb_weight: f64,
    /// Character n-grams only, no jieba words.
    #[arg(long)]
    no_jieba: bool,
    /// k-fold cross-validation on the training data, reported in the model card.
    #[arg(long)]
    folds: Option<usize>,
    /// Model version (default: `ns-` and a prefix of the model file's sha256).
    #[arg(long)]
    model_version: Option<String>,
    /// Hold-out fraction when no --dev is given.
    #[arg(long, default_value_t = 0.15)]
    holdout: f64,
    /// Seed of the hold-out and fold shuffles.
    #[arg(long, default_value_t = 20261122)]
    seed: u64,
    /// Train on a stratified slice of at most this many statements.
    #[arg(long)]
    limit: Option<usize>,
}

pub fn run(a: TrainArgs) -> anyhow::Result<()> {
    let job = TrainJob {
        corpus: a.corpus,
        dev: a.dev,
        challenge: a.challenge,
        out: a.out,
        rules: a.rules,
        userdict: a.userdict,
        thresholds: a.thresholds,
        params: TrainParams {
            alpha: a.alpha,
            max_iterations: a.max_iterations,
            gradient_tolerance: a.gradient_tolerance,
            min_df: a.min_df,
            max_features: a.max_features,
            jieba: !a.no_jieba,
            nb_alpha: a.nb_alpha,
            nb_weight: a.nb_weight,
            ..TrainParams::default()
        },
        folds: a.folds,
        model_version: a.model_version,
        holdout: a.holdout,
        seed: a.seed,
        limit: a.limit,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let on_event = |e: Event| match e {
        Event::Note(m) => bar.println(m),
        Event::Stage(Stage::Tokenized { done, total }) => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            bar.set_message("tokenising");
        }
        Event::Stage(Stage::Vocabulary { features }) => {
            bar.println(format!("vocabulary: {features} features"));
            bar.set_length(4);
            bar.set_position(0);
            bar.set_message("fitting axes");
        }
        Event::Stage(Stage::AxisFitted(ax)) => {
            bar.inc(1);
            bar.println(format!("fitted {ax}"));
        }
    };
    let s = run_job(&job, &on_event)?;
    bar.finish_and_clear();
    println!(
        "wrote {} (model {}), fit {:.1}s",
        job.out.display(),
        s.manifest.model_version,
        s.fit_seconds
    );
    println!(
        "serving vs linfa probabilities on dev: max difference {:.2e}",
        s.max_probability_difference
    );
    println!(
        "{:<13} {:>10} {:>12} {:>10} {:>12}",
        "macro-F1", "dev model", "dev +rules", "chal model", "chal +rules"
    );
    for ax in Axis::ALL {
        let i = ax.index();
        let (cm, cr) = s
            .challenge
            .as_ref()
            .map(|c| {
                (
                    format!("{:.3}", c.model[i].macro_f1),
                    format!("{:.3}", c.model_rules[i].macro_f1),
                )
            })
            .unwrap_or(("-".into(), "-".into()));
        println!(
            "{:<13} {:>10.3} {:>12.3} {:>10} {:>12}",
            ax.name(),
            s.dev.model[i].macro_f1,
            s.dev.model_rules[i].macro_f1,
            cm,
            cr
        );
    }
    Ok(())
}
