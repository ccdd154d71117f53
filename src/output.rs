//! The JSON form of a classification, in the project's one schema (field names and label
//! values as in the corpus; see `docs/labels.md`). The CLI writes it; tests read it.

use crate::classifier::{Classification, Span};
use crate::labels::Axis;
use crate::rules::Effect;
use serde::Serialize;
use std::collections::BTreeMap;

/// One result line of `needscope classify`.
#[derive(Debug, Serialize)]
pub struct ResultJson<'a> {
    /// The caller's id, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    /// The statement.
    pub text: &'a str,
    /// Need level.
    pub need: &'static str,
    /// Explicitness.
    pub explicitness: &'static str,
    /// Tier.
    pub tier: &'static str,
    /// Gap.
    pub gap: &'static str,
    /// `model` (before rules) and `final` probabilities: axis to value to probability.
    pub probabilities: BTreeMap<&'static str, BTreeMap<&'static str, BTreeMap<&'static str, f64>>>,
    /// Axis to whether it is uncertain.
    pub uncertain: BTreeMap<&'static str, bool>,
    /// Axis to the rule id that decided it (only axes an override decided).
    pub decided_by: BTreeMap<&'static str, String>,
    /// Rules that fired.
    pub rules: Vec<RuleJson>,
    /// Token contributions to the need level (with explain).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contributions: Vec<ContributionJson>,
    /// Language tag.
    pub lang: &'static str,
    /// The statement carries no need.
    pub content_free: bool,
    /// Model version.
    pub model_version: String,
}

/// A fired rule.
#[derive(Debug, Serialize)]
pub struct RuleJson {
    /// Rule id.
    pub id: String,
    /// Target axis.
    pub axis: &'static str,
    /// Target value.
    pub value: &'static str,
    /// `boost` or `override`.
    pub effect: &'static str,
    /// Code-point spans `[start, end)` in the original text.
    pub spans: Vec<[u32; 2]>,
}

/// A token contribution.
#[derive(Debug, Serialize)]
pub struct ContributionJson {
    /// Feature name.
    pub feature: String,
    /// Weight times value for the predicted need level.
    pub contribution: f64,
    /// Code-point spans in the original text.
    pub spans: Vec<[u32; 2]>,
}

fn spans(s: &[Span]) -> Vec<[u32; 2]> {
    s.iter().map(|s| [s.start, s.end]).collect()
}

fn per_axis(flat: &[f64]) -> BTreeMap<&'static str, BTreeMap<&'static str, f64>> {
    Axis::ALL
        .iter()
        .map(|a| {
            let vals = a
                .values()
                .iter()
                .enumerate()
                .map(|(i, v)| (*v, flat[a.offset() + i]))
                .collect();
            (a.name(), vals)
        })
        .collect()
}

impl<'a> ResultJson<'a> {
    /// Builds the JSON form of `c` for `text`.
    pub fn new(id: Option<&'a str>, text: &'a str, c: &Classification) -> ResultJson<'a> {
        let l = c.labels();
        let mut probabilities = BTreeMap::new();
        probabilities.insert("model", per_axis(&c.model_probabilities));
        probabilities.insert("final", per_axis(&c.final_probabilities));
        ResultJson {
            id,
            text,
            need: l.name(Axis::Need),
            explicitness: l.name(Axis::Explicitness),
            tier: l.name(Axis::Tier),
            gap: l.name(Axis::Gap),
            probabilities,
            uncertain: Axis::ALL
                .iter()
                .map(|a| (a.name(), c.axes[a.index()].uncertain))
                .collect(),
            decided_by: Axis::ALL
                .iter()
                .filter_map(|a| {
                    c.axes[a.index()]
                        .decided_by
                        .as_ref()
                        .map(|r| (a.name(), r.to_string()))
                })
                .collect(),
            rules: c
                .rules
                .iter()
                .map(|h| RuleJson {
                    id: h.rule_id.to_string(),
                    axis: h.axis.name(),
                    value: h.axis.values()[h.value],
                    effect: match h.effect {
                        Effect::Boost(_) => "boost",
                        Effect::Override(_) => "override",
                    },
                    spans: spans(&h.spans),
                })
                .collect(),
            contributions: c
                .contributions
                .iter()
                .map(|x| ContributionJson {
                    feature: x.feature.clone(),
                    contribution: x.contribution,
                    spans: spans(&x.spans),
                })
                .collect(),
            lang: c.lang.as_str(),
            content_free: c.content_free,
            model_version: c.model_version.to_string(),
        }
    }
}
