//! The classifier core: text in, four labels out, with probabilities, rule hits, uncertainty
//! and an optional explanation.
//!
//! Transport-neutral: the gRPC service, the CLI and the benches all call
//! [`Classifier::classify`]. It owns the combination of model scores and rule effects and
//! the uncertainty decision; it does not validate request sizes (the caller's boundary does).

use crate::bundle::{self, BundleFiles, Manifest};
use crate::error::{Error, Result};
use crate::labels::{Axis, LabelSet, Lang};
use crate::model::{probabilities, LinearModel, Scores, SparseVec};
use crate::rules::{Effect, Fired, RuleSet};
use crate::text::{detect_language, normalize::normalize_into, Normalized, Token, Tokenizer};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Uncertainty thresholds of one axis.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisThresholds {
    /// An axis whose top final probability is below this is uncertain.
    pub min_probability: f64,
    /// An axis whose top-two final probability margin is below this is uncertain.
    pub min_margin: f64,
}

/// Uncertainty thresholds for every axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds(pub [AxisThresholds; 4]);

impl Thresholds {
    /// The thresholds of `axis`.
    pub fn get(&self, axis: Axis) -> AxisThresholds {
        self.0[axis.index()]
    }

    /// Checks every value lies in 0..=1.
    pub fn validate(&self) -> Result<()> {
        for a in Axis::ALL {
            let t = self.get(a);
            for (name, v) in [
                ("min_probability", t.min_probability),
                ("min_margin", t.min_margin),
            ] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(Error::InvalidInput(format!(
                        "{a} {name} must be within 0..=1, got {v}"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    uncertainty: UncertaintySection,
    content_free: ContentFreeSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UncertaintySection {
    min_probability: f64,
    min_margin: f64,
    #[serde(default)]
    axes: BTreeMap<String, AxisThresholds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentFreeSection {
    phrases: Vec<String>,
}

/// Parses a bundle's thresholds file into thresholds and the content-free phrase list.
pub fn parse_thresholds(text: &str, file: &str) -> Result<(Thresholds, ContentFree)> {
    let bad = |r: String| Error::bundle(file, r);
    let f: ThresholdsFile = toml::from_str(text).map_err(|e| bad(e.message().to_string()))?;
    let default = AxisThresholds {
        min_probability: f.uncertainty.min_probability,
        min_margin: f.uncertainty.min_margin,
    };
    let mut t = Thresholds([default; 4]);
    for (name, v) in f.uncertainty.axes {
        let a = Axis::from_name(&name).ok_or_else(|| bad(format!("unknown axis {name:?}")))?;
        t.0[a.index()] = v;
    }
    t.validate().map_err(|e| bad(e.to_string()))?;
    Ok((t, ContentFree::new(&f.content_free.phrases)))
}

/// Detects content-free statements: greetings, acknowledgements and fillers alone.
#[derive(Debug, Clone, Default)]
pub struct ContentFree {
    phrases: HashSet<String>,
    longest: usize,
}

const CONTENT_FREE_MAX_CHARS: usize = 40;

impl ContentFree {
    /// Builds a detector from filler phrases (normalised here).
    pub fn new(phrases: &[String]) -> ContentFree {
        let phrases: HashSet<String> = phrases
            .iter()
            .map(|p| strip(&normalize_text(p)))
            .filter(|p| !p.is_empty())
            .collect();
        let longest = phrases.iter().map(|p| p.chars().count()).max().unwrap_or(0);
        ContentFree { phrases, longest }
    }

    /// Whether a normalised text consists only of filler phrases, punctuation and emoji.
    pub fn is_content_free(&self, normalized: &[char]) -> bool {
        // most statements are longer than any run of fillers: count before collecting
        let mut letters = normalized.iter().filter(|&&c| is_letter_or_digit(c));
        if letters.clone().nth(CONTENT_FREE_MAX_CHARS).is_some() {
            return false;
        }
        let core: Vec<char> = letters.by_ref().copied().collect();
        if core.is_empty() {
            return true;
        }
        if self.phrases.is_empty() {
            return false;
        }
        // can `core` be split into filler phrases? Search forward from the positions already
        // reached, so a statement that does not start with a filler is rejected at once.
        let n = core.len();
        let mut reached = vec![false; n + 1];
        reached[0] = true;
        let mut buf = String::new();
        for start in 0..n {
            if !reached[start] {
                continue;
            }
            for len in 1..=self.longest.min(n - start) {
                buf.clear();
                buf.extend(&core[start..start + len]);
                if self.phrases.contains(&buf) {
                    reached[start + len] = true;
                }
            }
        }
        reached[n]
    }
}

/// `char::is_alphanumeric`, with the common CJK ideographs answered by a range test instead
/// of Unicode's (slow) alphabetic table: every code point of CJK Unified Ideographs and
/// extension A is assigned and alphabetic.
fn is_letter_or_digit(c: char) -> bool {
    let u = c as u32;
    (0x4E00..=0x9FFF).contains(&u) || (0x3400..=0x4DBF).contains(&u) || c.is_alphanumeric()
}

fn normalize_text(s: &str) -> String {
    crate::text::normalize(s).as_string()
}

fn strip(s: &str) -> String {
    s.chars().filter(|&c| is_letter_or_digit(c)).collect()
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct ClassifyOptions {
    /// Compute per-token contributions to the need level.
    pub explain: bool,
    /// Override the bundle's uncertainty thresholds.
    pub thresholds: Option<Thresholds>,
    /// A language the caller knows the text is in; reported instead of the detected one.
    pub language_hint: Option<Lang>,
}

/// A half-open range of Unicode code points in the original text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    /// First code point.
    pub start: u32,
    /// One past the last code point.
    pub end: u32,
}

/// The outcome on one axis.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisResult {
    /// The final value index.
    pub label: usize,
    /// The rule that decided the label, if an override did.
    pub decided_by: Option<Arc<str>>,
    /// Whether the result is uncertain on this axis.
    pub uncertain: bool,
}

/// A rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    /// The rule's id.
    pub rule_id: Arc<str>,
    /// The targeted axis.
    pub axis: Axis,
    /// The targeted value index.
    pub value: usize,
    /// The rule's effect.
    pub effect: Effect,
    /// Where it matched in the original text.
    pub spans: Vec<Span>,
}

/// One feature's contribution to the predicted need level.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    /// The feature, as named in the vocabulary (`c:价`, `w:refund`, ...).
    pub feature: String,
    /// Weight times feature value for the predicted need level.
    pub contribution: f64,
    /// Where the feature's tokens are in the original text.
    pub spans: Vec<Span>,
}

/// The full result for one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Per axis, in [`Axis::ALL`] order.
    pub axes: [AxisResult; 4],
    /// Model probabilities (before rules), flat in [`Axis::offset`] order.
    pub model_probabilities: Scores,
    /// Final probabilities (after rule boosts), flat.
    pub final_probabilities: Scores,
    /// Rules that fired, in rule-file order.
    pub rules: Vec<RuleHit>,
    /// Contributions to the need level, largest magnitude first (only with `explain`).
    pub contributions: Vec<Contribution>,
    /// Detected (or hinted) language.
    pub lang: Lang,
    /// The statement carries no need (greeting, acknowledgement).
    pub content_free: bool,
    /// Version of the model that produced it.
    pub model_version: Arc<str>,
}

impl Classification {
    /// The four final labels.
    pub fn labels(&self) -> LabelSet {
        LabelSet([
            self.axes[0].label,
            self.axes[1].label,
            self.axes[2].label,
            self.axes[3].label,
        ])
    }

    /// Model probabilities of one axis.
    pub fn model_probs(&self, axis: Axis) -> &[f64] {
        &self.model_probabilities[axis.offset()..axis.offset() + axis.len()]
    }

    /// Final probabilities of one axis.
    pub fn final_probs(&self, axis: Axis) -> &[f64] {
        &self.final_probabilities[axis.offset()..axis.offset() + axis.len()]
    }
}

/// Summary of a loaded model, for `GetModelInfo` and the CLI.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The manifest.
    pub manifest: Manifest,
    /// Where the bundle was loaded from.
    pub bundle_path: PathBuf,
    /// Number of rules.
    pub rule_count: usize,
    /// Number of features.
    pub feature_count: usize,
}

#[derive(Default)]
struct Scratch {
    norm: Normalized,
    tokens: Vec<Token>,
    sparse: SparseVec,
    text: String,
    jieba_buf: String,
    fired: Vec<Fired>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A loaded bundle ready to classify. Immutable and `Sync`: share it in an `Arc`.
#[derive(Debug)]
pub struct Classifier {
    model: LinearModel,
    rules: RuleSet,
    tokenizer: Tokenizer,
    thresholds: Thresholds,
    content_free: ContentFree,
    info: ModelInfo,
    version: Arc<str>,
}

impl Classifier {
    /// Loads and verifies a bundle directory.
    pub fn load(dir: &Path) -> Result<Classifier> {
        let files = bundle::read_verified(dir)?;
        Classifier::from_files(&files)
    }

    /// Builds a classifier from verified bundle files.
    pub fn from_files(files: &BundleFiles) -> Result<Classifier> {
        let dir = &files.dir;
        let model_bytes = files
            .contents
            .get(bundle::MODEL_FILE)
            .ok_or_else(|| Error::bundle(dir, "model.bin is missing"))?;
        let model = LinearModel::from_bytes(model_bytes, &dir.join(bundle::MODEL_FILE))?;
        let rules = RuleSet::parse(
            files.text(bundle::RULES_FILE)?,
            &dir.join(bundle::RULES_FILE).display().to_string(),
        )?;
        let (thresholds, content_free) = parse_thresholds(
            files.text(bundle::THRESHOLDS_FILE)?,
            &dir.join(bundle::THRESHOLDS_FILE).display().to_string(),
        )?;
        let tokenizer = if model.features.config.jieba {
            Tokenizer::with_jieba(Some(files.text(bundle::USER_DICT_FILE)?))
                .map_err(|e| Error::bundle(dir.join(bundle::USER_DICT_FILE), e))?
        } else {
            Tokenizer::chars_only()
        };
        Ok(Classifier::assemble(
            model,
            rules,
            tokenizer,
            thresholds,
            content_free,
            files.manifest.clone(),
            dir.clone(),
        ))
    }

    /// Builds a classifier from parts (training and tests use this).
    pub fn assemble(
        model: LinearModel,
        rules: RuleSet,
        tokenizer: Tokenizer,
        thresholds: Thresholds,
        content_free: ContentFree,
        manifest: Manifest,
        bundle_path: PathBuf,
    ) -> Classifier {
        let info = ModelInfo {
            bundle_path,
            rule_count: rules.len(),
            feature_count: model.features.len(),
            manifest,
        };
        let version = Arc::from(info.manifest.model_version.as_str());
        Classifier {
            model,
            rules,
            tokenizer,
            thresholds,
            content_free,
            info,
            version,
        }
    }

    /// The same model with another rule set.
    pub fn with_rules(mut self, rules: RuleSet) -> Classifier {
        self.info.rule_count = rules.len();
        self.rules = rules;
        self
    }

    /// What is loaded.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model version.
    pub fn version(&self) -> &Arc<str> {
        &self.version
    }

    /// The rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The linear model.
    pub fn model(&self) -> &LinearModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The bundle's default thresholds.
    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// Sparse features of a text (for training-time checks and evaluation).
    pub fn features(&self, text: &str) -> SparseVec {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            normalize_into(text, &mut s.norm);
            self.tokenizer
                .tokenize_into(&s.norm, &mut s.tokens, &mut s.jieba_buf);
            let mut out = SparseVec::new();
            self.model.features.vectorize_into(&s.tokens, &mut out);
            out
        })
    }

    /// Classifies one statement. Empty or whitespace-only text is an error; any other text
    /// gets a result.
    pub fn classify(&self, text: &str, opts: &ClassifyOptions) -> Result<Classification> {
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut s) => self.classify_with(text, opts, &mut s),
            Err(_) => self.classify_with(text, opts, &mut Scratch::default()),
        })
    }

    fn classify_with(
        &self,
        text: &str,
        opts: &ClassifyOptions,
        s: &mut Scratch,
    ) -> Result<Classification> {
        normalize_into(text, &mut s.norm);
        if s.norm.is_empty() {
            return Err(Error::InvalidInput(
                "text is empty or whitespace only".into(),
            ));
        }
        let lang = opts.language_hint.unwrap_or_else(|| detect_language(text));
        self.tokenizer
            .tokenize_into(&s.norm, &mut s.tokens, &mut s.jieba_buf);
        self.model.features.vectorize_into(&s.tokens, &mut s.sparse);
        let mut logits = self.model.logits(&s.sparse);
        let model_probabilities = probabilities(logits);

        s.text.clear();
        s.text.extend(&s.norm.chars);
        self.rules.apply_into(&s.norm.chars, &s.text, &mut s.fired);
        let mut overrides: [Option<(i32, usize)>; 4] = [None; 4];
        let mut hits = Vec::with_capacity(s.fired.len());
        for f in &s.fired {
            let r = &self.rules.rules()[f.rule];
            match r.effect {
                Effect::Boost(w) => logits[r.axis.offset() + r.value] += w,
                Effect::Override(p) => {
                    let slot = &mut overrides[r.axis.index()];
                    if slot.is_none_or(|(best, _)| p > best) {
                        *slot = Some((p, f.rule));
                    }
                }
            }
            hits.push(RuleHit {
                rule_id: r.id.clone(),
                axis: r.axis,
                value: r.value,
                effect: r.effect,
                spans: f
                    .spans
                    .iter()
                    .filter_map(|&(a, b)| map_span(&s.norm, a, b))
                    .collect(),
            });
        }
        let final_probabilities = probabilities(logits);
        let content_free = self.content_free.is_content_free(&s.norm.chars);
        let thresholds = opts.thresholds.unwrap_or(self.thresholds);
        let axes = Axis::ALL.map(|a| {
            let p = &final_probabilities[a.offset()..a.offset() + a.len()];
            let (top, second) = top_two(p);
            match overrides[a.index()] {
                Some((_, rule)) => AxisResult {
                    label: self.rules.rules()[rule].value,
                    decided_by: Some(self.rules.rules()[rule].id.clone()),
                    uncertain: content_free,
                },
                None => {
                    let t = thresholds.get(a);
                    AxisResult {
                        label: top.0,
                        decided_by: None,
                        uncertain: content_free
                            || top.1 < t.min_probability
                            || top.1 - second < t.min_margin,
                    }
                }
            }
        });
        let contributions = if opts.explain {
            self.explain(s, axes[0].label)
        } else {
            Vec::new()
        };
        Ok(Classification {
            axes,
            model_probabilities,
            final_probabilities,
            rules: hits,
            contributions,
            lang,
            content_free,
            model_version: self.version.clone(),
        })
    }

    fn explain(&self, s: &Scratch, need: usize) -> Vec<Contribution> {
        let v = Axis::Need.offset() + need;
        let mut out: Vec<Contribution> = s
            .sparse
            .iter()
            .map(|&(f, x)| Contribution {
                feature: self.model.features.name(f).to_string(),
                contribution: self.model.weight(f, v) * x,
                spans: s
                    .tokens
                    .iter()
                    .filter(|t| self.model.features.lookup(t.hash) == Some(f))
                    .filter_map(|t| map_span(&s.norm, t.start, t.end))
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| {
            b.contribution
                .abs()
                .total_cmp(&a.contribution.abs())
                .then_with(|| a.feature.cmp(&b.feature))
        });
        out
    }
}

fn map_span(n: &Normalized, a: u32, b: u32) -> Option<Span> {
    n.original_span(a as usize, b as usize)
        .map(|(start, end)| Span { start, end })
}

/// (index, probability) of the best value and the second-best probability.
fn top_two(p: &[f64]) -> ((usize, f64), f64) {
    let mut best = (0usize, f64::NEG_INFINITY);
    let mut second = f64::NEG_INFINITY;
    for (i, &x) in p.iter().enumerate() {
        if x > best.1 {
            second = best.1;
            best = (i, x);
        } else if x > second {
            second = x;
        }
    }
    if second == f64::NEG_INFINITY {
        second = 0.0;
    }
    (best, second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_free_detection() {
        let cf = ContentFree::new(&[
            "在吗".into(),
            "好的".into(),
            "谢谢".into(),
            "ok".into(),
            "thanks".into(),
        ]);
        let t = |s: &str| cf.is_content_free(&crate::text::normalize(s).chars);
        assert!(t("在吗?"));
        assert!(t("好的，謝謝！"));
        assert!(t("OK thanks 👍"));
        assert!(t("???"));
        assert!(!t("好的,但是发票呢"));
        assert!(!t("ok but the invoice is wrong"));
    }

    #[test]
    fn letter_or_digit_agrees_with_the_standard_library() {
        let sample = (0u32..0x3_0000).step_by(7).chain(0x3400..=0x9FFF);
        for c in sample.filter_map(char::from_u32) {
            assert_eq!(is_letter_or_digit(c), c.is_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn top_two_picks_margin() {
        assert_eq!(top_two(&[0.2, 0.5, 0.3]), ((1, 0.5), 0.3));
    }
}
