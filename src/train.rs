//! Training: vocabulary selection, tf-idf vectors, and one multinomial logistic regression
//! per axis fitted with linfa-logistic.
//!
//! Follows linfa's shape: [`TrainParams`] are checked into [`ValidTrainParams`] before any
//! work, and fitting is deterministic (sorted vocabulary, no randomness, no thread-dependent
//! reductions), so the same data and settings give byte-identical model files.

use crate::corpus::Example;
use crate::error::{Error, Result};
use crate::labels::{Axis, TOTAL_VALUES};
use crate::model::{FeatureConfig, FeatureSpace, LinearModel, SparseVec};
use crate::text::{normalize, parse_token_name, token_name, token_text, Token, Tokenizer};
use linfa::prelude::*;
use linfa_bayes::{MultinomialNb, NaiveBayes};
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2, ArrayView1};
use rustc_hash::FxHashMap;

/// The float type of the dense training matrix and of linfa's fit: f32 halves the memory
/// and time of the memory-bound matrix products; the serving model keeps f64.
pub type TrainFloat = f32;

/// Longest feature name kept in a vocabulary (a pathological "word" is not a feature).
pub const MAX_FEATURE_NAME_BYTES: usize = 256;

/// Hyper-parameters of a training run.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParams {
    /// L2 regularisation strength (linfa's `alpha`; the loss is summed over examples).
    pub alpha: f64,
    /// L-BFGS iteration cap per axis.
    pub max_iterations: u64,
    /// Gradient tolerance at which L-BFGS stops (the norm of the gradient of the loss summed
    /// over the statements, so the same value is a tighter stop on more data).
    pub gradient_tolerance: f64,
    /// A token must occur in at least this many training statements to become a feature.
    pub min_df: usize,
    /// At most this many features per axis, each axis choosing its own by chi-squared
    /// association with its labels (ties broken by name); the model's vocabulary is the union.
    pub max_features: FeatureBudget,
    /// Use jieba words as features besides character n-grams.
    pub jieba: bool,
    /// Additive (Laplace/Lidstone) smoothing of the naive Bayes feature counts.
    pub nb_alpha: f64,
    /// Weight of the naive Bayes log-likelihoods added to the logistic regression's
    /// log-probabilities (0: logistic regression alone).
    pub nb_weight: f64,
    /// Fraction of available memory the dense training matrix may use.
    pub memory_fraction: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            alpha: 0.3,
            max_iterations: 300,
            gradient_tolerance: 16.0,
            min_df: 2,
            max_features: FeatureBudget([24_000, 10_000, 10_000, 16_000]),
            jieba: true,
            nb_alpha: 0.03,
            nb_weight: 0.5,
            memory_fraction: 0.5,
        }
    }
}

/// Features per axis, in [`Axis::ALL`] order. The fit reads each axis's dense matrix once
/// per solver step, so the sum of the four sets the training time; the need level, with five
/// values and the hardest distinctions, gets the largest share by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureBudget(pub [usize; 4]);

impl FeatureBudget {
    /// The same number of features for every axis.
    pub fn uniform(n: usize) -> FeatureBudget {
        FeatureBudget([n; 4])
    }

    /// Features of `axis`.
    pub fn get(&self, axis: Axis) -> usize {
        self.0[axis.index()]
    }

    /// The sum over the axes (columns of all four dense matrices).
    pub fn total(&self) -> usize {
        self.0.iter().sum()
    }
}

impl std::fmt::Display for FeatureBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a},{b},{c},{d}")
    }
}

impl std::str::FromStr for FeatureBudget {
    type Err = String;

    /// One number for every axis, or four comma-separated numbers in axis order
    /// (need, explicitness, tier, gap).
    fn from_str(s: &str) -> std::result::Result<FeatureBudget, String> {
        let parts: Vec<usize> = s
            .split(',')
            .map(|p| {
                p.trim()
                    .parse::<usize>()
                    .map_err(|e| format!("{p:?} is not a feature count: {e}"))
            })
            .collect::<std::result::Result<_, _>>()?;
        match parts[..] {
            [n] => Ok(FeatureBudget::uniform(n)),
            [a, b, c, d] => Ok(FeatureBudget([a, b, c, d])),
            _ => Err(format!(
                "expected one number or four (need,explicitness,tier,gap), got {}",
                parts.len()
            )),
        }
    }
}

/// Checked hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTrainParams(TrainParams);

impl ValidTrainParams {
    /// The parameters.
    pub fn get(&self) -> &TrainParams {
        &self.0
    }
}

impl TrainParams {
    /// Validates the parameters.
    pub fn check(self) -> Result<ValidTrainParams> {
        let bad = |m: String| Err(Error::Training(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return bad(format!("alpha must be positive, got {}", self.alpha));
        }
        if self.max_iterations == 0 {
            return bad("max_iterations must be at least 1".into());
        }
        if !(self.gradient_tolerance.is_finite() && self.gradient_tolerance > 0.0) {
            return bad("gradient_tolerance must be positive".into());
        }
        if self.min_df == 0 || self.max_features.0.contains(&0) {
            return bad("min_df and max_features must be at least 1".into());
        }
        if !(self.nb_alpha.is_finite() && self.nb_alpha > 0.0) {
            return bad(format!("nb_alpha must be positive, got {}", self.nb_alpha));
        }
        if !(self.nb_weight.is_finite() && self.nb_weight >= 0.0) {
            return bad(format!(
                "nb_weight must be zero or positive, got {}",
                self.nb_weight
            ));
        }
        if !(self.memory_fraction > 0.0 && self.memory_fraction <= 0.9) {
            return bad("memory_fraction must be within (0, 0.9]".into());
        }
        Ok(ValidTrainParams(self))
    }
}

/// Bytes of memory available to this process (MemAvailable on Linux; 4 GiB elsewhere).
pub fn available_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

/// Bytes per training row and feature (of the sum over the axes) at the peak of a fit: the
/// logistic regressions hold the f32 matrices of as many axes as there are cores, all four
/// on a four-core machine (4 bytes a cell); naive Bayes then fits one axis at a time on an
/// f64 matrix of at most half the features, plus linfa-bayes' copy of one class's rows.
/// Measured: 2.2 to 3.0 GB peak at 8,849 statements and 60,000 features (4.2 to 5.7 bytes a
/// cell, four threads on two cores), 2.84 GB at 10,773 statements (4.4 bytes a cell, one
/// worker per core); 6 leaves a margin.
const BYTES_PER_CELL: f64 = 6.0;

/// Largest number of features (summed over the axes) whose training matrices for `rows`
/// statements fit in `budget` bytes.
pub fn feature_cap_for_memory(rows: usize, budget: u64) -> usize {
    (budget as f64 / (rows.max(1) as f64 * BYTES_PER_CELL)) as usize
}

/// Most training statements whose matrices for `features` (summed over the axes) fit in
/// `budget` bytes; beyond them the vocabulary shrinks.
pub fn rows_for_memory(features: usize, budget: u64) -> usize {
    (budget as f64 / (features.max(1) as f64 * BYTES_PER_CELL)) as usize
}

/// Progress callback stages.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Tokenised `done` of `total` statements.
    Tokenized { done: usize, total: usize },
    /// Vocabulary of `features` chosen.
    Vocabulary { features: usize },
    /// Finished fitting one axis.
    AxisFitted(Axis),
}

/// linfa-bayes' multinomial naive Bayes of one axis, with the linear parameters its joint
/// log-likelihood applies: `jll[c] = log_prior[c] + sum_j x[j] * log_prob[j][c]`.
pub struct NaiveBayesAxis {
    /// The fitted model.
    pub model: MultinomialNb<f64, usize>,
    /// Log prior per value.
    pub log_prior: Vec<f64>,
    /// Feature log-probabilities, row-major `columns x values`.
    pub log_prob: Vec<f64>,
}

impl NaiveBayesAxis {
    /// Fits naive Bayes on the `columns` of `rows` and reads its linear parameters back
    /// through linfa-bayes' public `joint_log_likelihood` (of an all-zero row: the log
    /// priors; of unit rows: each feature's log-probabilities).
    fn fit(
        rows: &[SparseVec],
        columns: &[u32],
        y: ArrayView1<usize>,
        values: usize,
        alpha: f64,
    ) -> Result<NaiveBayesAxis> {
        let x = densify::<f64>(rows, columns);
        let model = MultinomialNb::params()
            .alpha(alpha)
            .fit(&DatasetBase::new(x.view(), y))
            .map_err(|e| Error::Training(format!("naive Bayes: {e}")))?;
        drop(x);
        let d = columns.len();
        let jll_rows = |x: &Array2<f64>| -> Result<Vec<Array1<f64>>> {
            let jll = model.joint_log_likelihood(x.view());
            (0..values)
                .map(|c| {
                    jll.get(&c)
                        .cloned()
                        .ok_or_else(|| Error::Training(format!("naive Bayes has no class {c}")))
                })
                .collect()
        };
        let prior = jll_rows(&Array2::zeros((1, d)))?;
        let log_prior: Vec<f64> = prior.iter().map(|p| p[0]).collect();
        let mut log_prob = vec![0.0; d * values];
        const CHUNK: usize = 512;
        for start in (0..d).step_by(CHUNK) {
            let m = CHUNK.min(d - start);
            let mut unit = Array2::<f64>::zeros((m, d));
            for i in 0..m {
                unit[[i, start + i]] = 1.0;
            }
            for (c, jll) in jll_rows(&unit)?.iter().enumerate() {
                for i in 0..m {
                    log_prob[(start + i) * values + c] = jll[i] - log_prior[c];
                }
            }
        }
        Ok(NaiveBayesAxis {
            model,
            log_prior,
            log_prob,
        })
    }
}

/// One axis's fitted linfa models.
pub struct AxisModels {
    /// The logistic regression.
    pub logistic: MultiFittedLogisticRegression<TrainFloat, usize>,
    /// The naive Bayes model, when its weight is positive.
    pub naive_bayes: Option<NaiveBayesAxis>,
}

/// A training result: the serving model plus linfa's fitted models (for verification).
pub struct Trained {
    /// The serving model.
    pub model: LinearModel,
    /// linfa's models per axis, in [`Axis::ALL`] order.
    pub linfa: Vec<AxisModels>,
    /// Weight of the naive Bayes log-likelihoods in the serving scores.
    pub nb_weight: f64,
    /// Per axis, the vocabulary indices of the columns its linfa model was fitted on.
    pub axis_features: Vec<Vec<u32>>,
    /// Eligible features left out because of the memory cap (0 when none).
    pub capped_by_memory: usize,
}

/// Tokenises every example; returns token lists and a name for every token hash seen.
fn tokenize_all(
    examples: &[Example],
    tokenizer: &Tokenizer,
    progress: &(dyn Fn(Stage) + Sync),
) -> (Vec<Vec<Token>>, FxHashMap<u64, String>) {
    let mut names: FxHashMap<u64, String> = FxHashMap::default();
    let mut all = Vec::with_capacity(examples.len());
    let mut scratch = String::new();
    for (i, e) in examples.iter().enumerate() {
        let n = normalize(e.text());
        let mut toks = Vec::new();
        tokenizer.tokenize_into(&n, &mut toks, &mut scratch);
        for t in &toks {
            names
                .entry(t.hash)
                .or_insert_with(|| token_name(t.kind, &token_text(&n, t)));
        }
        all.push(toks);
        if i % 256 == 0 || i + 1 == examples.len() {
            progress(Stage::Tokenized {
                done: i + 1,
                total: examples.len(),
            });
        }
    }
    (all, names)
}

/// The chosen vocabulary: the union of the axes' features, and which of them each axis uses.
struct Vocabulary {
    features: FeatureSpace,
    /// Per axis, the sorted indices into `features` of the columns its model sees.
    per_axis: Vec<Vec<u32>>,
}

/// Chooses the vocabulary and idf from tokenised training statements: among tokens in at
/// least `min_df` statements, each axis keeps the `budget` with the largest chi-squared
/// association with its labels (ties by name); the vocabulary is their union.
fn choose_vocabulary(
    tokens: &[Vec<Token>],
    examples: &[Example],
    names: &FxHashMap<u64, String>,
    min_df: usize,
    budget: FeatureBudget,
    config: FeatureConfig,
) -> Result<Vocabulary> {
    // per token: document frequency and per-value document counts
    let mut counts: FxHashMap<u64, [u32; TOTAL_VALUES + 1]> = FxHashMap::default();
    let mut class_totals = [0u32; TOTAL_VALUES];
    for (toks, e) in tokens.iter().zip(examples) {
        for a in Axis::ALL {
            class_totals[a.offset() + e.labels.get(a)] += 1;
        }
        let mut seen: Vec<u64> = toks.iter().map(|t| t.hash).collect();
        seen.sort_unstable();
        seen.dedup();
        for h in seen {
            let c = counts.entry(h).or_insert([0; TOTAL_VALUES + 1]);
            c[TOTAL_VALUES] += 1;
            for a in Axis::ALL {
                c[a.offset() + e.labels.get(a)] += 1;
            }
        }
    }
    let n = tokens.len() as f64;
    let cand: Vec<(&str, [f64; 4], u32)> = counts
        .iter()
        .filter(|(_, c)| c[TOTAL_VALUES] as usize >= min_df)
        .filter_map(|(h, c)| {
            names
                .get(h)
                // the model file stores names with a u16 length; real tokens are far shorter
                .filter(|name| name.len() <= MAX_FEATURE_NAME_BYTES)
                .map(|name| {
                    let chi = Axis::ALL.map(|a| chi2(c, &class_totals, n, a));
                    (name.as_str(), chi, c[TOTAL_VALUES])
                })
        })
        .collect();
    let mut chosen: Vec<Vec<usize>> = Vec::with_capacity(4);
    for a in Axis::ALL {
        let mut order: Vec<usize> = (0..cand.len()).collect();
        let i = a.index();
        order.sort_by(|&x, &y| {
            cand[y].1[i]
                .total_cmp(&cand[x].1[i])
                .then_with(|| cand[x].0.cmp(cand[y].0))
        });
        order.truncate(budget.get(a));
        chosen.push(order);
    }
    let mut union: Vec<usize> = chosen.iter().flatten().copied().collect();
    union.sort_unstable();
    union.dedup();
    let entries = union
        .iter()
        .map(|&c| {
            let (name, _, d) = cand[c];
            (name.to_string(), ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0)
        })
        .collect();
    let features = FeatureSpace::new(entries, config)?;
    let per_axis = chosen
        .iter()
        .map(|cols| {
            let mut idx: Vec<u32> = cols
                .iter()
                .filter_map(|&c| parse_token_name(cand[c].0).and_then(|(_, h)| features.lookup(h)))
                .collect();
            idx.sort_unstable();
            idx
        })
        .collect();
    Ok(Vocabulary { features, per_axis })
}

/// The chi-squared statistic of a token's presence against one axis's labels.
fn chi2(c: &[u32; TOTAL_VALUES + 1], class_totals: &[u32; TOTAL_VALUES], n: f64, a: Axis) -> f64 {
    let df = c[TOTAL_VALUES] as f64;
    (0..a.len())
        .map(|v| {
            let total = class_totals[a.offset() + v] as f64;
            let present = c[a.offset() + v] as f64;
            let e_present = df * total / n;
            let e_absent = (n - df) * total / n;
            let absent = total - present;
            let mut x = 0.0;
            if e_present > 0.0 {
                x += (present - e_present).powi(2) / e_present;
            }
            if e_absent > 0.0 {
                x += (absent - e_absent).powi(2) / e_absent;
            }
            x
        })
        .sum()
}

/// Dense matrix of the columns `columns` (sorted vocabulary indices) of sparse rows.
pub fn densify<F: linfa::Float>(rows: &[SparseVec], columns: &[u32]) -> Array2<F> {
    let mut x = Array2::<F>::zeros((rows.len(), columns.len()));
    for (r, row) in rows.iter().enumerate() {
        for &(f, v) in row {
            if let Ok(j) = columns.binary_search(&f) {
                x[[r, j]] = F::cast(v);
            }
        }
    }
    x
}

/// Runs `f` for the four axes on at most as many scoped threads as the machine has cores,
/// the most expensive axes first (`cost` of an axis, e.g. its feature count), so that the
/// largest fit is not left running alone at the end; results in [`Axis::ALL`] order.
fn for_each_axis<T: Send>(
    cost: impl Fn(Axis) -> usize,
    f: impl Fn(Axis) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let mut order = Axis::ALL;
    order.sort_by_key(|&a| std::cmp::Reverse(cost(a)));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(order.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<(Axis, Result<T>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    while let Some(&a) =
                        order.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        out.push((a, f(a)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            // a panicked worker's axes stay empty and are reported below
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut slots: Vec<Option<Result<T>>> = Axis::ALL.iter().map(|_| None).collect();
    for (a, r) in done {
        slots[a.index()] = Some(r);
    }
    slots
        .into_iter()
        .zip(Axis::ALL)
        .map(|(r, a)| {
            r.unwrap_or_else(|| Err(Error::Training(format!("{a}: the fitting thread panicked"))))
        })
        .collect()
}

/// Fits the model on `examples`.
pub fn fit(
    examples: &[Example],
    tokenizer: &Tokenizer,
    params: &ValidTrainParams,
    progress: &(dyn Fn(Stage) + Sync),
) -> Result<Trained> {
    let p = params.get();
    if examples.is_empty() {
        return Err(Error::Training("no training statements".into()));
    }
    for a in Axis::ALL {
        for (v, name) in a.values().iter().enumerate() {
            if !examples.iter().any(|e| e.labels.get(a) == v) {
                return Err(Error::Training(format!(
                    "no training statement has {a} {name}: every value needs examples"
                )));
            }
        }
    }
    let (tokens, names) = tokenize_all(examples, tokenizer, progress);
    let budget = (available_memory() as f64 * p.memory_fraction) as u64;
    // budgeted as if the four axes' matrices were alive together (they are on four cores)
    let cap = feature_cap_for_memory(examples.len(), budget);
    let wanted = p.max_features.total();
    let scale = if wanted > cap {
        cap as f64 / wanted as f64
    } else {
        1.0
    };
    let max_features = FeatureBudget(p.max_features.0.map(|n| (n as f64 * scale) as usize));
    if max_features.0.contains(&0) {
        return Err(Error::Training(format!(
            "{} statements do not fit in memory",
            examples.len()
        )));
    }
    let vocabulary = choose_vocabulary(
        &tokens,
        examples,
        &names,
        p.min_df,
        max_features,
        FeatureConfig {
            jieba: tokenizer.has_jieba(),
        },
    )?;
    let features = vocabulary.features;
    let axis_features = vocabulary.per_axis;
    if features.is_empty() {
        return Err(Error::Training(
            "empty vocabulary: too few statements for min_df".into(),
        ));
    }
    progress(Stage::Vocabulary {
        features: features.len(),
    });
    let rows: Vec<SparseVec> = tokens
        .iter()
        .map(|t| {
            let mut v = SparseVec::new();
            features.vectorize_into(t, &mut v);
            v
        })
        .collect();
    let logistic = for_each_axis(
        |a| axis_features[a.index()].len(),
        |a| {
            let y: Array1<usize> = examples.iter().map(|e| e.labels.get(a)).collect();
            let x = densify::<TrainFloat>(&rows, &axis_features[a.index()]);
            let fitted = MultiLogisticRegression::default()
                .alpha(p.alpha as TrainFloat)
                .max_iterations(p.max_iterations)
                .gradient_tolerance(p.gradient_tolerance as TrainFloat)
                .fit(&DatasetBase::new(x.view(), y))
                .map_err(|e| Error::Training(format!("{a}: {e}")));
            progress(Stage::AxisFitted(a));
            fitted
        },
    )?;
    // linfa-bayes 0.8 prints a leftover `dbg!` of every class it fits, feature arrays and
    // all, to stderr: silence the process's stderr while it fits (when it can be)
    let quiet = (p.nb_weight > 0.0).then(|| gag::Gag::stderr().ok());
    let mut linfa = Vec::with_capacity(Axis::ALL.len());
    // naive Bayes one axis at a time: each fit takes seconds, and its f64 matrix is the
    // memory peak
    for (a, logistic) in Axis::ALL.into_iter().zip(logistic) {
        let naive_bayes = if p.nb_weight > 0.0 {
            let y: Array1<usize> = examples.iter().map(|e| e.labels.get(a)).collect();
            let columns = &axis_features[a.index()];
            Some(
                NaiveBayesAxis::fit(&rows, columns, y.view(), a.len(), p.nb_alpha)
                    .map_err(|e| Error::Training(format!("{a}: {e}")))?,
            )
        } else {
            None
        };
        linfa.push(AxisModels {
            logistic,
            naive_bayes,
        });
    }
    drop(quiet);
    let nf = features.len();
    let mut weights = vec![0.0; nf * TOTAL_VALUES];
    let mut bias = [0.0; TOTAL_VALUES];
    for ((a, m), columns) in Axis::ALL.iter().zip(&linfa).zip(&axis_features) {
        let w = m.logistic.params();
        for (k, &class) in m.logistic.classes().iter().enumerate() {
            let col = a.offset() + class;
            bias[col] = f64::from(m.logistic.intercept()[k]);
            for (j, &f) in columns.iter().enumerate() {
                weights[f as usize * TOTAL_VALUES + col] = f64::from(w[[j, k]]);
            }
        }
        if let Some(nb) = &m.naive_bayes {
            let k = a.len();
            for class in 0..k {
                let col = a.offset() + class;
                bias[col] += p.nb_weight * nb.log_prior[class];
                for (j, &f) in columns.iter().enumerate() {
                    weights[f as usize * TOTAL_VALUES + col] +=
                        p.nb_weight * nb.log_prob[j * k + class];
                }
            }
        }
    }
    // Softmax per axis is unchanged by adding the same amount to every value of an axis, so
    // each feature's weights (and the intercepts) are centred per axis: naive Bayes'
    // log-probabilities share a large negative offset that would otherwise swamp the
    // per-token contributions `explain` shows, and small weights keep their precision in f32.
    for row in weights
        .chunks_exact_mut(TOTAL_VALUES)
        .chain(std::iter::once(&mut bias[..]))
    {
        for a in Axis::ALL {
            let r = &mut row[a.offset()..a.offset() + a.len()];
            let mean = r.iter().sum::<f64>() / r.len() as f64;
            r.iter_mut().for_each(|w| *w -= mean);
        }
    }
    let model = LinearModel::new(features, weights, bias)?;
    Ok(Trained {
        model,
        linfa,
        nb_weight: p.nb_weight,
        axis_features,
        capped_by_memory: if scale < 1.0 {
            wanted - max_features.total()
        } else {
            0
        },
    })
}

/// Largest absolute difference between linfa's probabilities and the serving model's on
/// `rows` (sparse, already vectorised by the serving model's feature space). linfa's side is
/// linfa-logistic's `predict_probabilities`, combined, when naive Bayes is used, with
/// linfa-bayes' `joint_log_likelihood` as the serving model combines them:
/// `softmax(ln p_logistic + nb_weight * jll)`.
pub fn max_probability_difference(trained: &Trained, rows: &[SparseVec]) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let mut worst: f64 = 0.0;
    for ((a, m), columns) in Axis::ALL
        .iter()
        .zip(&trained.linfa)
        .zip(&trained.axis_features)
    {
        let k = a.len();
        let logistic = m
            .logistic
            .predict_probabilities(&densify::<TrainFloat>(rows, columns));
        // linfa's scores per row and value: ln p, plus the weighted jll
        let mut scores = Array2::<f64>::zeros((rows.len(), k));
        for (j, &class) in m.logistic.classes().iter().enumerate() {
            scores
                .column_mut(class)
                .assign(&logistic.column(j).mapv(|p| f64::from(p).ln()));
        }
        if let Some(nb) = &m.naive_bayes {
            let jll = nb
                .model
                .joint_log_likelihood(densify::<f64>(rows, columns).view());
            for (&class, v) in jll {
                let mut col = scores.column_mut(class);
                col.scaled_add(trained.nb_weight, &v);
            }
        }
        for (r, row) in rows.iter().enumerate() {
            let ours = crate::model::probabilities(trained.model.logits(row));
            let mut theirs = scores.row(r).to_vec();
            crate::model::softmax_in_place(&mut theirs);
            for (class, t) in theirs.iter().enumerate() {
                worst = worst.max((t - ours[a.offset() + class]).abs());
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_checked_before_work() {
        assert!(TrainParams {
            alpha: 0.0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(TrainParams {
            max_features: FeatureBudget([10, 0, 10, 10]),
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(TrainParams::default().check().is_ok());
    }

    #[test]
    fn feature_budget_parses_one_or_four_numbers() {
        assert_eq!("500".parse(), Ok(FeatureBudget([500; 4])));
        assert_eq!("4,3,2,1".parse(), Ok(FeatureBudget([4, 3, 2, 1])));
        assert!("1,2".parse::<FeatureBudget>().is_err());
        assert!("x".parse::<FeatureBudget>().is_err());
        assert_eq!(FeatureBudget([4, 3, 2, 1]).to_string(), "4,3,2,1");
    }

    #[test]
    fn memory_cap_scales_with_rows() {
        let gib = 1u64 << 30;
        assert!(feature_cap_for_memory(4_000, 12 * gib) > 300_000);
        assert!(feature_cap_for_memory(1_000_000, 12 * gib) < 4_000);
        let rows = rows_for_memory(60_000, 24 * gib);
        assert!(feature_cap_for_memory(rows, 24 * gib) >= 59_999);
        assert!(feature_cap_for_memory(rows + 100, 24 * gib) < 60_000);
    }
}
