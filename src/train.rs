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
use crate::text::{normalize, token_name, token_text, Token, Tokenizer};
use linfa::prelude::*;
use linfa_logistic::{MultiFittedLogisticRegression, MultiLogisticRegression};
use ndarray::{Array1, Array2};
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
    /// Gradient tolerance at which L-BFGS stops.
    pub gradient_tolerance: f64,
    /// A token must occur in at least this many training statements to become a feature.
    pub min_df: usize,
    /// At most this many features (the most frequent; ties broken by name).
    pub max_features: usize,
    /// Use jieba words as features besides character n-grams.
    pub jieba: bool,
    /// Fraction of available memory the dense training matrix may use.
    pub memory_fraction: f64,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            alpha: 0.3,
            max_iterations: 300,
            gradient_tolerance: 0.5,
            min_df: 2,
            max_features: 15_000,
            jieba: true,
            memory_fraction: 0.5,
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
        if self.min_df == 0 || self.max_features == 0 {
            return bad("min_df and max_features must be at least 1".into());
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

/// Largest number of features whose dense `rows x features` matrix fits in `budget`
/// bytes (the matrix plus the solver's per-class working arrays, about 1.1 times it).
pub fn feature_cap_for_memory(rows: usize, budget: u64) -> usize {
    let per_feature = (rows.max(1) as u64) * std::mem::size_of::<TrainFloat>() as u64 * 11 / 10;
    (budget / per_feature) as usize
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

/// A training result: the serving model plus linfa's fitted models (for verification).
pub struct Trained {
    /// The serving model.
    pub model: LinearModel,
    /// linfa's model per axis, in [`Axis::ALL`] order.
    pub linfa: Vec<MultiFittedLogisticRegression<TrainFloat, usize>>,
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

/// Chooses the vocabulary and idf from tokenised training statements: tokens in at least
/// `min_df` statements, ranked by their best chi-squared association with any axis's labels
/// (ties by name), the top `max_features` kept.
fn choose_vocabulary(
    tokens: &[Vec<Token>],
    examples: &[Example],
    names: &FxHashMap<u64, String>,
    min_df: usize,
    max_features: usize,
    config: FeatureConfig,
) -> Result<(FeatureSpace, usize)> {
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
    let mut cand: Vec<(&str, f64, u32)> = counts
        .iter()
        .filter(|(_, c)| c[TOTAL_VALUES] as usize >= min_df)
        // the model file stores names with a u16 length; real tokens are far shorter
        .filter(|(h, _)| {
            names
                .get(h)
                .is_some_and(|n| n.len() <= MAX_FEATURE_NAME_BYTES)
        })
        .filter_map(|(h, c)| {
            names.get(h).map(|name| {
                (
                    name.as_str(),
                    best_chi2(c, &class_totals, n),
                    c[TOTAL_VALUES],
                )
            })
        })
        .collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let eligible = cand.len();
    cand.truncate(max_features);
    let entries = cand
        .into_iter()
        .map(|(name, _, d)| (name.to_string(), ((1.0 + n) / (1.0 + d as f64)).ln() + 1.0))
        .collect();
    Ok((FeatureSpace::new(entries, config)?, eligible))
}

/// The largest chi-squared statistic of a token's presence against any axis's labels.
fn best_chi2(c: &[u32; TOTAL_VALUES + 1], class_totals: &[u32; TOTAL_VALUES], n: f64) -> f64 {
    let df = c[TOTAL_VALUES] as f64;
    Axis::ALL
        .iter()
        .map(|a| {
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
                .sum::<f64>()
        })
        .fold(0.0, f64::max)
}

/// Dense matrix of sparse rows.
pub fn densify(rows: &[SparseVec], n_features: usize) -> Array2<TrainFloat> {
    let mut x = Array2::<TrainFloat>::zeros((rows.len(), n_features));
    for (r, row) in rows.iter().enumerate() {
        for &(f, v) in row {
            x[[r, f as usize]] = v as TrainFloat;
        }
    }
    x
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
    let cap = feature_cap_for_memory(examples.len(), budget);
    let max_features = p.max_features.min(cap);
    if max_features == 0 {
        return Err(Error::Training(format!(
            "{} statements do not fit in memory",
            examples.len()
        )));
    }
    let (features, eligible) = choose_vocabulary(
        &tokens,
        examples,
        &names,
        p.min_df,
        max_features,
        FeatureConfig {
            jieba: tokenizer.has_jieba(),
        },
    )?;
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
    let x = densify(&rows, features.len());
    let fitted: Vec<Result<MultiFittedLogisticRegression<TrainFloat, usize>>> =
        std::thread::scope(|s| {
            let handles: Vec<_> = Axis::ALL
                .iter()
                .map(|&a| {
                    let x = &x;
                    s.spawn(move || {
                        let y: Array1<usize> = examples.iter().map(|e| e.labels.get(a)).collect();
                        let ds = DatasetBase::new(x.view(), y);
                        let r = MultiLogisticRegression::default()
                            .alpha(p.alpha as TrainFloat)
                            .max_iterations(p.max_iterations)
                            .gradient_tolerance(p.gradient_tolerance as TrainFloat)
                            .fit(&ds)
                            .map_err(|e| Error::Training(format!("{a}: {e}")));
                        progress(Stage::AxisFitted(a));
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::Training("a fitting thread panicked".into()))
                    })
                })
                .collect()
        });
    let linfa: Vec<MultiFittedLogisticRegression<TrainFloat, usize>> =
        fitted.into_iter().collect::<Result<_>>()?;
    let nf = features.len();
    let mut weights = vec![0.0; nf * TOTAL_VALUES];
    let mut bias = [0.0; TOTAL_VALUES];
    for (a, m) in Axis::ALL.iter().zip(&linfa) {
        let w = m.params();
        for (k, &class) in m.classes().iter().enumerate() {
            let col = a.offset() + class;
            bias[col] = f64::from(m.intercept()[k]);
            for f in 0..nf {
                weights[f * TOTAL_VALUES + col] = f64::from(w[[f, k]]);
            }
        }
    }
    let model = LinearModel::new(features, weights, bias)?;
    Ok(Trained {
        model,
        linfa,
        capped_by_memory: if cap < p.max_features {
            eligible.saturating_sub(nf)
        } else {
            0
        },
    })
}

/// Largest absolute difference between linfa's probabilities and the serving model's on
/// `rows` (sparse, already vectorised by the serving model's feature space).
pub fn max_probability_difference(trained: &Trained, rows: &[SparseVec]) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    let x = densify(rows, trained.model.features.len());
    let mut worst: f64 = 0.0;
    for (a, m) in Axis::ALL.iter().zip(&trained.linfa) {
        let linfa_p = m.predict_probabilities(&x);
        for (r, row) in rows.iter().enumerate() {
            let ours = crate::model::probabilities(trained.model.logits(row));
            for (k, &class) in m.classes().iter().enumerate() {
                worst = worst.max((f64::from(linfa_p[[r, k]]) - ours[a.offset() + class]).abs());
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
            max_features: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(TrainParams::default().check().is_ok());
    }

    #[test]
    fn memory_cap_scales_with_rows() {
        let gib = 1u64 << 30;
        assert!(feature_cap_for_memory(4_000, 12 * gib) > 300_000);
        assert!(feature_cap_for_memory(1_000_000, 12 * gib) < 4_000);
    }
}
