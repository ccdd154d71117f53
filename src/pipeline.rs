//! The training pipeline behind `needscope train`: read labelled files, hold out dev when
//! none is given, fit, verify the serving model against linfa, evaluate dev and challenge
//! with and without rules, optionally cross-validate, and write a bundle with its manifest
//! and model card.

use crate::bundle::{self, corpus_hash, label_sets, sha256_hex, CorpusFile, Manifest};
use crate::classifier::{parse_thresholds, Classifier};
use crate::corpus::{read_labelled, stratified_split, Example};
use crate::error::{Error, Result};
use crate::eval::{evaluate, render_markdown, Report};
use crate::labels::Axis;
use crate::rules::RuleSet;
use crate::text::Tokenizer;
use crate::train::{fit, max_probability_difference, Stage, TrainParams};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Largest difference allowed between linfa's probabilities and the serving model's.
pub const MAX_PROBABILITY_DIFFERENCE: f64 = 1e-6;

/// Everything a training run needs.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// Labelled training files (JSONL or CSV).
    pub corpus: Vec<PathBuf>,
    /// Dev file; without it a stratified hold-out of the training data is used.
    pub dev: Option<PathBuf>,
    /// Challenge file, reported beside dev, never trained on.
    pub challenge: Option<PathBuf>,
    /// Output bundle directory.
    pub out: PathBuf,
    /// Rules file copied into the bundle.
    pub rules: PathBuf,
    /// jieba user dictionary copied into the bundle.
    pub userdict: PathBuf,
    /// Thresholds file copied into the bundle.
    pub thresholds: PathBuf,
    /// Hyper-parameters.
    pub params: TrainParams,
    /// k-fold cross-validation on the training data (k >= 2), reported in the card.
    pub folds: Option<usize>,
    /// Explicit model version; default `ns-` plus the model file's hash prefix.
    pub model_version: Option<String>,
    /// Hold-out fraction when no dev file is given.
    pub holdout: f64,
    /// Seed of the hold-out and fold shuffles.
    pub seed: u64,
    /// Train on at most this many statements (a slice, for quick runs).
    pub limit: Option<usize>,
}

impl TrainJob {
    /// A job with the shipped defaults for rules, dictionary and thresholds.
    pub fn new(corpus: Vec<PathBuf>, out: PathBuf) -> TrainJob {
        TrainJob {
            corpus,
            dev: None,
            challenge: None,
            out,
            rules: PathBuf::from("models/rules.toml"),
            userdict: PathBuf::from("models/userdict.txt"),
            thresholds: PathBuf::from("models/thresholds.toml"),
            params: TrainParams::default(),
            folds: None,
            model_version: None,
            holdout: 0.15,
            seed: 20261122,
            limit: None,
        }
    }
}

/// Progress events of a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message for the user.
    Note(String),
    /// A training stage.
    Stage(Stage),
}

/// What a run produced.
#[derive(Debug)]
pub struct TrainSummary {
    /// The manifest written.
    pub manifest: Manifest,
    /// Dev report.
    pub dev: Report,
    /// Challenge report, if a challenge file was given.
    pub challenge: Option<Report>,
    /// Largest linfa-vs-serving probability difference on dev.
    pub max_probability_difference: f64,
    /// Seconds spent fitting (tokenising included).
    pub fit_seconds: f64,
}

fn read_files(paths: &[PathBuf]) -> Result<(Vec<Example>, Vec<CorpusFile>)> {
    let mut all = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| Error::io(p, e))?;
        let ex = read_labelled(p)?;
        files.push(CorpusFile {
            path: p.display().to_string(),
            sha256: sha256_hex(&bytes),
            rows: ex.len(),
        });
        all.extend(ex);
    }
    Ok((all, files))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Runs a training job.
pub fn run(job: &TrainJob, progress: &(dyn Fn(Event) + Sync)) -> Result<TrainSummary> {
    let params = job.params.clone().check()?;
    if let Some(k) = job.folds {
        if k < 2 {
            return Err(Error::Training("folds must be at least 2".into()));
        }
    }
    if !(0.0..0.9).contains(&job.holdout) {
        return Err(Error::Training("holdout must be within 0..0.9".into()));
    }
    // read and check everything cheap before fitting
    let rules_text = read(&job.rules)?;
    let rules = RuleSet::parse(
        std::str::from_utf8(&rules_text)
            .map_err(|_| Error::Training("rules file is not UTF-8".into()))?,
        &job.rules.display().to_string(),
    )?;
    let userdict = read(&job.userdict)?;
    let thresholds_text = read(&job.thresholds)?;
    let (thresholds, content_free) = parse_thresholds(
        std::str::from_utf8(&thresholds_text)
            .map_err(|_| Error::Training("thresholds file is not UTF-8".into()))?,
        &job.thresholds.display().to_string(),
    )?;
    let (mut train, corpus_files) = read_files(&job.corpus)?;
    let dev = match &job.dev {
        Some(p) => read_labelled(p)?,
        None => {
            let (t, d) = stratified_split(&train, job.holdout, job.seed);
            progress(Event::Note(format!(
                "no --dev given: holding out {} of {} statements ({:.0}%, stratified by need level and language, whole groups)",
                d.len(),
                train.len(),
                job.holdout * 100.0
            )));
            train = t;
            d
        }
    };
    if let Some(limit) = job.limit {
        if limit < train.len() {
            let (_, slice) = stratified_split(&train, limit as f64 / train.len() as f64, job.seed);
            progress(Event::Note(format!(
                "training on a slice of {} of {} statements",
                slice.len(),
                train.len()
            )));
            train = slice;
        }
    }
    let challenge = match &job.challenge {
        Some(p) => Some(read_labelled(p)?),
        None => None,
    };
    let tokenizer = if params.get().jieba {
        Tokenizer::with_jieba(Some(
            std::str::from_utf8(&userdict)
                .map_err(|_| Error::Training("user dictionary is not UTF-8".into()))?,
        ))
        .map_err(Error::Training)?
    } else {
        Tokenizer::chars_only()
    };

    let started = Instant::now();
    let stage = |s: Stage| progress(Event::Stage(s));
    let trained = fit(&train, &tokenizer, &params, &stage)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    if trained.capped_by_memory > 0 {
        progress(Event::Note(format!(
            "available memory capped the vocabulary: {} fewer features than asked for",
            trained.capped_by_memory
        )));
    }
    let model_bytes = trained.model.to_bytes();
    let model_version = job
        .model_version
        .clone()
        .unwrap_or_else(|| format!("ns-{}", &sha256_hex(&model_bytes)[..12]));

    let mut manifest = Manifest {
        format_version: bundle::BUNDLE_FORMAT_VERSION,
        model_version,
        created_at: now_rfc3339(),
        corpus_hash: corpus_hash(&corpus_files),
        corpus_files,
        labels: label_sets(),
        files: BTreeMap::new(),
        training: training_settings(job, train.len(), trained.model.features.len()),
        metrics: BTreeMap::new(),
    };
    let classifier = Classifier::assemble(
        trained.model.clone(),
        rules.clone(),
        tokenizer,
        thresholds,
        content_free,
        manifest.clone(),
        job.out.clone(),
    );
    let dev_rows: Vec<_> = dev.iter().map(|e| classifier.features(e.text())).collect();
    let diff = max_probability_difference(&trained, &dev_rows);
    if diff > MAX_PROBABILITY_DIFFERENCE {
        return Err(Error::Training(format!(
            "serving probabilities differ from linfa's by {diff:e} on dev"
        )));
    }
    let dev_report = evaluate(&classifier, "dev", &dev);
    let challenge_report = challenge
        .as_ref()
        .map(|c| evaluate(&classifier, "challenge", c));
    manifest.metrics.insert("dev".into(), dev_report.summary());
    if let Some(c) = &challenge_report {
        manifest.metrics.insert("challenge".into(), c.summary());
    }
    let cv = match job.folds {
        Some(k) => Some(cross_validate(
            &train,
            k,
            job,
            &params,
            &classifier,
            progress,
        )?),
        None => None,
    };
    let card = model_card(
        &manifest,
        &dev_report,
        challenge_report.as_ref(),
        diff,
        cv.as_deref(),
        &classifier,
        job,
    );
    let mut files = BTreeMap::new();
    files.insert(bundle::MODEL_FILE.to_string(), model_bytes);
    files.insert(bundle::RULES_FILE.to_string(), rules_text);
    files.insert(bundle::USER_DICT_FILE.to_string(), userdict);
    files.insert(bundle::THRESHOLDS_FILE.to_string(), thresholds_text);
    files.insert(bundle::MODEL_CARD_FILE.to_string(), card.into_bytes());
    let manifest = bundle::write_bundle(&job.out, &files, manifest)?;
    Ok(TrainSummary {
        manifest,
        dev: dev_report,
        challenge: challenge_report,
        max_probability_difference: diff,
        fit_seconds,
    })
}

fn training_settings(
    job: &TrainJob,
    rows: usize,
    features: usize,
) -> BTreeMap<String, serde_json::Value> {
    let p = &job.params;
    let mut m = BTreeMap::new();
    m.insert(
        "algorithm".into(),
        if p.nb_weight > 0.0 {
            "per axis: linfa-logistic multinomial logistic regression plus nb_weight times \
             linfa-bayes multinomial naive Bayes log-likelihoods"
        } else {
            "per axis: linfa-logistic multinomial logistic regression"
        }
        .into(),
    );
    m.insert("nb_alpha".into(), p.nb_alpha.into());
    m.insert("nb_weight".into(), p.nb_weight.into());
    m.insert("alpha".into(), p.alpha.into());
    m.insert("max_iterations".into(), p.max_iterations.into());
    m.insert("gradient_tolerance".into(), p.gradient_tolerance.into());
    m.insert("min_df".into(), p.min_df.into());
    m.insert(
        "max_features".into(),
        p.max_features
            .0
            .iter()
            .map(|&n| serde_json::Value::from(n))
            .collect(),
    );
    m.insert("features".into(), features.into());
    m.insert("jieba".into(), p.jieba.into());
    m.insert("training_statements".into(), rows.into());
    m
}

fn cross_validate(
    train: &[Example],
    k: usize,
    job: &TrainJob,
    params: &crate::train::ValidTrainParams,
    base: &Classifier,
    progress: &(dyn Fn(Event) + Sync),
) -> Result<Vec<[f64; 4]>> {
    // assign whole groups to folds round-robin after a seeded shuffle
    let (_, shuffled) = stratified_split(train, 1.0 - 1e-9, job.seed);
    let mut group_fold: BTreeMap<String, usize> = BTreeMap::new();
    let mut next = 0;
    for e in &shuffled {
        group_fold
            .entry(e.group_key().to_string())
            .or_insert_with(|| {
                next += 1;
                (next - 1) % k
            });
    }
    let mut out = Vec::new();
    for fold in 0..k {
        let (tr, te): (Vec<Example>, Vec<Example>) = train
            .iter()
            .cloned()
            .partition(|e| group_fold.get(e.group_key()).copied() != Some(fold));
        progress(Event::Note(format!(
            "cross-validation fold {}/{k}: {} train, {} test",
            fold + 1,
            tr.len(),
            te.len()
        )));
        let tokenizer = if params.get().jieba {
            Tokenizer::with_jieba(None).map_err(Error::Training)?
        } else {
            Tokenizer::chars_only()
        };
        let t = fit(&tr, &tokenizer, params, &|_| {})?;
        let c = Classifier::assemble(
            t.model,
            base.rules().clone(),
            tokenizer,
            base.thresholds(),
            crate::classifier::ContentFree::default(),
            base.info().manifest.clone(),
            job.out.clone(),
        );
        let r = evaluate(&c, "fold", &te);
        out.push([0, 1, 2, 3].map(|i| r.model_rules[i].macro_f1));
    }
    Ok(out)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

fn model_card(
    m: &Manifest,
    dev: &Report,
    challenge: Option<&Report>,
    diff: f64,
    cv: Option<&[[f64; 4]]>,
    c: &Classifier,
    job: &TrainJob,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Model card: {}\n", m.model_version);
    let _ = writeln!(s, "Generated by `needscope train`; do not edit by hand.\n");
    let _ = writeln!(s, "## Model\n");
    let p = &job.params;
    let nb = p.nb_weight > 0.0;
    let _ = writeln!(
        s,
        "Per axis (need level, explicitness, tier, gap), two linfa models on the same features, combined \
         log-linearly: a multinomial logistic regression fitted with linfa-logistic in f32 (L-BFGS, L2 \
         regularisation alpha = {}, gradient tolerance {}, at most {} iterations){}. Features: sub-linear \
         tf-idf, L2-normalised, of Chinese character unigrams and bigrams{}, English words, their Snowball \
         stems and word bigrams, number, emoji and `?`/`!` tokens. Vocabulary: {} features, the union of each \
         axis's own choice among tokens in at least {} training statements by chi-squared association with \
         that axis's labels (need, explicitness, tier, gap: at most {} each; each axis's models see only \
         their own). Rules ({} in `rules.toml`) add boosts to the log-scores or override a label.\n",
        p.alpha,
        p.gradient_tolerance,
        p.max_iterations,
        if nb {
            format!(
                ", plus {} times the joint log-likelihoods of a multinomial naive Bayes fitted with \
                 linfa-bayes (smoothing alpha = {}); the sum is again linear in the features, so serving \
                 keeps one weight per feature and value",
                p.nb_weight, p.nb_alpha
            )
        } else {
            String::new()
        },
        if p.jieba { ", jieba words (with the bundle's user dictionary)" } else { "" },
        c.info().feature_count,
        p.min_df,
        p.max_features,
        c.info().rule_count
    );
    let gib = 1u64 << 30;
    let _ = writeln!(
        s,
        "Memory: a fit peaks at up to 6 bytes per training statement and feature (summed over \
         the axes: {} here), so a 24 GiB machine giving training half of it (the default share of \
         available memory) fits {} training statements before `train` shrinks the vocabulary to \
         fit, and all 24 GiB fit {}.\n",
        p.max_features.total(),
        crate::train::rows_for_memory(p.max_features.total(), 12 * gib),
        crate::train::rows_for_memory(p.max_features.total(), 24 * gib),
    );
    let _ = writeln!(
        s,
        "Why these: logistic regression gives per-class probabilities (the service reports them and \
         derives `uncertain` from them), its weights times feature values are the per-token contributions \
         `explain` shows, and linear scores are evaluated on sparse features in microseconds. On the dev \
         split, naive Bayes alone is about as good as logistic regression on the need level and worse on \
         the other axes, but adding half its log-likelihood to the logistic regression's log-probabilities \
         beats both (README, \"Choosing the algorithm\", reproduced by `cargo run --release --example \
         compare_algorithms`). linfa-bayes' own probabilities are not used: its 0.8 release exponentiates \
         without the log-sum-exp shift (zero, infinite or NaN on long statements); its joint \
         log-likelihoods are finite and are what the combination uses. Hyper-parameters were chosen on the \
         dev split.\n"
    );
    let _ = writeln!(s, "Serving evaluates the weights directly on sparse features; on the dev split the largest difference from the probabilities computed from linfa's own outputs (linfa-logistic's `predict_probabilities`{}) is {diff:.2e} (checked <= {MAX_PROBABILITY_DIFFERENCE:e} at every training run).\n", if nb { " with linfa-bayes' `joint_log_likelihood`" } else { "" });
    let _ = writeln!(s, "## Data\n");
    for f in &m.corpus_files {
        let _ = writeln!(
            s,
            "- `{}`: {} statements, sha256 `{}`",
            f.path, f.rows, f.sha256
        );
    }
    let _ = writeln!(s, "- corpus hash `{}`", m.corpus_hash);
    if let Some(d) = &job.dev {
        let _ = writeln!(
            s,
            "- dev: `{}` ({} statements)",
            d.display(),
            dev.statements
        );
    } else {
        let _ = writeln!(
            s,
            "- dev: stratified hold-out of {:.0}% ({} statements)",
            job.holdout * 100.0,
            dev.statements
        );
    }
    if let (Some(p), Some(ch)) = (&job.challenge, challenge) {
        let _ = writeln!(
            s,
            "- challenge: `{}` ({} statements; never used for training, model selection or rules)",
            p.display(),
            ch.statements
        );
    }
    let _ = writeln!(s, "\n## Summary (macro-F1)\n");
    let _ = writeln!(
        s,
        "| axis | dev: model | dev: model + rules | challenge: model | challenge: model + rules |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for a in Axis::ALL {
        let i = a.index();
        let (cm, cr) = challenge
            .map(|c| {
                (
                    format!("{:.3}", c.model[i].macro_f1),
                    format!("{:.3}", c.model_rules[i].macro_f1),
                )
            })
            .unwrap_or(("-".into(), "-".into()));
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {} | {} |",
            a.name(),
            dev.model[i].macro_f1,
            dev.model_rules[i].macro_f1,
            cm,
            cr
        );
    }
    let _ = writeln!(
        s,
        "\nCalibration (expected calibration error of the final top probability, 10 bins):\n"
    );
    let _ = writeln!(s, "| axis | dev ECE | challenge ECE |");
    let _ = writeln!(s, "|---|---|---|");
    for a in Axis::ALL {
        let i = a.index();
        let ch = challenge
            .map(|c| format!("{:.3}", c.model_rules[i].ece))
            .unwrap_or("-".into());
        let _ = writeln!(
            s,
            "| {} | {:.3} | {} |",
            a.name(),
            dev.model_rules[i].ece,
            ch
        );
    }
    if let Some(cv) = cv {
        let _ = writeln!(
            s,
            "\n## {}-fold cross-validation on the training data (macro-F1, model + rules)\n",
            cv.len()
        );
        let _ = writeln!(s, "| fold | need | explicitness | tier | gap |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for (i, f) in cv.iter().enumerate() {
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                i + 1,
                f[0],
                f[1],
                f[2],
                f[3]
            );
        }
    }
    let _ = writeln!(s, "\n## Dev split in detail\n\n{}", render_markdown(dev));
    if let Some(ch) = challenge {
        let _ = writeln!(s, "\n## Challenge set in detail\n\n{}", render_markdown(ch));
    }
    s
}
