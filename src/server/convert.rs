//! Conversion of core results into wire messages. The proto enums list the values of every
//! axis in the core's canonical order, so value index `i` is enum value `i + 1` (0 is
//! `*_UNSPECIFIED`); the unit tests hold the names to that, one to one.

use super::pb;
use crate::classifier::{Classification, ModelInfo, Span};
use crate::labels::{Axis, Lang};
use crate::rules::Effect;

/// The wire enum value of value index `i` of any axis.
fn enum_value(i: usize) -> i32 {
    i as i32 + 1
}

/// The wire axis.
pub fn axis(a: Axis) -> pb::Axis {
    match a {
        Axis::Need => pb::Axis::NeedLevel,
        Axis::Explicitness => pb::Axis::Explicitness,
        Axis::Tier => pb::Axis::Tier,
        Axis::Gap => pb::Axis::Gap,
    }
}

/// The wire language.
pub fn language(l: Lang) -> pb::Language {
    match l {
        Lang::ZhHans => pb::Language::ZhHans,
        Lang::ZhHant => pb::Language::ZhHant,
        Lang::En => pb::Language::En,
        Lang::Mixed => pb::Language::Mixed,
    }
}

fn spans(s: &[Span]) -> Vec<pb::Span> {
    s.iter()
        .map(|s| pb::Span {
            start: s.start,
            end: s.end,
        })
        .collect()
}

fn axis_detail(c: &Classification, a: Axis) -> pb::AxisDetail {
    let r = &c.axes[a.index()];
    pb::AxisDetail {
        axis: axis(a) as i32,
        uncertain: r.uncertain,
        decided_by_rule: r.decided_by.as_deref().unwrap_or_default().to_string(),
        model_probabilities: c.model_probs(a).iter().map(|&p| p as f32).collect(),
        final_probabilities: c.final_probs(a).iter().map(|&p| p as f32).collect(),
    }
}

/// The wire form of a classification.
pub fn classification(c: &Classification) -> pb::Classification {
    pb::Classification {
        need_level: enum_value(c.axes[Axis::Need.index()].label),
        explicitness: enum_value(c.axes[Axis::Explicitness.index()].label),
        tier: enum_value(c.axes[Axis::Tier.index()].label),
        gap: enum_value(c.axes[Axis::Gap.index()].label),
        need_level_detail: Some(axis_detail(c, Axis::Need)),
        explicitness_detail: Some(axis_detail(c, Axis::Explicitness)),
        tier_detail: Some(axis_detail(c, Axis::Tier)),
        gap_detail: Some(axis_detail(c, Axis::Gap)),
        rule_hits: c
            .rules
            .iter()
            .map(|h| {
                let (effect, weight, priority) = match h.effect {
                    Effect::Boost(w) => (pb::RuleEffect::Boost, w, 0),
                    Effect::Override(p) => (pb::RuleEffect::Override, 0.0, p),
                };
                pb::RuleHit {
                    rule_id: h.rule_id.to_string(),
                    axis: axis(h.axis) as i32,
                    value: h.axis.values()[h.value].to_string(),
                    effect: effect as i32,
                    weight,
                    priority,
                    spans: spans(&h.spans),
                }
            })
            .collect(),
        contributions: c
            .contributions
            .iter()
            .map(|t| pb::TokenContribution {
                feature: t.feature.clone(),
                contribution: t.contribution,
                spans: spans(&t.spans),
            })
            .collect(),
        language: language(c.lang) as i32,
        content_free: c.content_free,
        model_version: c.model_version.to_string(),
    }
}

/// The wire form of a model description.
pub fn model_info(info: &ModelInfo) -> pb::GetModelInfoResponse {
    let m = &info.manifest;
    let metrics = |name: &str| {
        m.metrics
            .get(name)
            .map(|v| v.iter().map(|(k, x)| (k.clone(), *x)).collect())
            .unwrap_or_default()
    };
    pb::GetModelInfoResponse {
        model_version: m.model_version.clone(),
        created_at: m.created_at.clone(),
        label_sets: Axis::ALL
            .iter()
            .map(|a| pb::LabelSet {
                axis: axis(*a) as i32,
                name: a.name().to_string(),
                values: a.values().iter().map(|v| (*v).to_string()).collect(),
            })
            .collect(),
        dev_metrics: metrics("dev"),
        challenge_metrics: metrics("challenge"),
        rule_count: u32::try_from(info.rule_count).unwrap_or(u32::MAX),
        feature_count: u32::try_from(info.feature_count).unwrap_or(u32::MAX),
        bundle_path: info.bundle_path.display().to_string(),
        corpus_hash: m.corpus_hash.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_name(a: Axis, i: usize) -> Option<&'static str> {
        let v = enum_value(i);
        match a {
            Axis::Need => pb::NeedLevel::try_from(v).ok().map(|e| e.as_str_name()),
            Axis::Explicitness => pb::Explicitness::try_from(v).ok().map(|e| e.as_str_name()),
            Axis::Tier => pb::ExpectationTier::try_from(v)
                .ok()
                .map(|e| e.as_str_name()),
            Axis::Gap => pb::ExpectationGap::try_from(v)
                .ok()
                .map(|e| e.as_str_name()),
        }
    }

    #[test]
    fn enum_values_match_label_names_one_to_one() {
        let prefix = |a: Axis| match a {
            Axis::Need => "NEED_LEVEL_",
            Axis::Explicitness => "EXPLICITNESS_",
            Axis::Tier => "EXPECTATION_TIER_",
            Axis::Gap => "EXPECTATION_GAP_",
        };
        for a in Axis::ALL {
            for (i, v) in a.values().iter().enumerate() {
                assert_eq!(wire_name(a, i), Some(format!("{}{v}", prefix(a)).as_str()));
            }
            // no wire value beyond the core's
            assert_eq!(wire_name(a, a.len()), None);
        }
        for l in Lang::ALL {
            let want = format!("LANGUAGE_{}", l.as_str().replace('-', "_").to_uppercase());
            assert_eq!(language(l).as_str_name(), want);
            assert_eq!(
                super::super::validate::language_from_pb(language(l) as i32),
                Ok(Some(l))
            );
        }
    }
}
