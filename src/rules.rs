//! Hand-written rules: keywords (Aho-Corasick) and regexes matched against the normalised
//! statement, with guards that cancel a hit, and an effect on one value of one axis.
//!
//! A rules file is TOML written for people (see `models/default/rules.toml`). Loading checks
//! every rule and refuses the file with its name, the rule's line and the reason. This module
//! owns parsing, validation and matching; how effects combine with the model is the
//! classifier's business.

use crate::error::{Error, Result};
use crate::labels::Axis;
use crate::text::normalize;
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use std::sync::Arc;

/// Cache of each regex's lazy DFA (per thread that uses it). The default 2 MiB filled up
/// and was cleared over and over on varied Chinese text, rebuilding the same states:
/// 12% of classification time was DFA construction. Dev statements of up to 60 characters
/// per second, one thread: 85k at 2 MiB, 104k at 4, 138k at 8, 126k at 16. The bound is
/// per regex and classifying thread: the shipped 19 (the set, 11 regexes, 7 guards) can
/// hold at most 152 MiB per thread, reached only on adversarial text.
const LAZY_DFA_CACHE: usize = 8 << 20;

/// Version of the rules file format this build reads.
pub const RULES_FORMAT_VERSION: u32 = 1;

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Effect {
    /// Adds `weight` to the model's log-score of the target value.
    Boost(f64),
    /// Decides the label; among several, the highest priority wins (then the earlier rule).
    Override(i32),
}

/// Where a guard looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GuardScope {
    /// A guard match cancels only the hits that lie inside it.
    #[default]
    Overlap,
    /// A guard match anywhere in the statement cancels the rule.
    Statement,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format_version: u32,
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: String,
    description: String,
    axis: String,
    value: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    guards: Vec<String>,
    #[serde(default)]
    guard_scope: GuardScope,
    effect: String,
    weight: Option<f64>,
    priority: Option<i32>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id.
    pub id: Arc<str>,
    /// What the rule is for, in words.
    pub description: String,
    /// The axis it targets.
    pub axis: Axis,
    /// The value index it targets on that axis.
    pub value: usize,
    /// Its effect.
    pub effect: Effect,
    /// 1-based line of the rule in its file.
    pub line: usize,
    /// Number of keywords.
    pub keyword_count: usize,
    regexes: Vec<Regex>,
    guards: Vec<Regex>,
    guard_scope: GuardScope,
}

/// A rule that fired on a statement, with the spans (normalised character positions) of
/// the keywords or regex matches that made it fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// Index of the rule in its set.
    pub rule: usize,
    /// Half-open spans in normalised character positions.
    pub spans: Vec<(u32, u32)>,
}

/// A compiled rules file.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<Rule>,
    keywords: Option<AhoCorasick>,
    /// For each keyword pattern: (rule index, whether it must sit on Latin word boundaries).
    keyword_rule: Vec<(usize, bool)>,
    regex_set: RegexSet,
    /// For each regex in `regex_set`: (rule index, regex index within the rule).
    regex_rule: Vec<(usize, usize)>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

impl RuleSet {
    /// An empty rule set.
    pub fn empty() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            keywords: None,
            keyword_rule: Vec::new(),
            regex_set: RegexSet::empty(),
            regex_rule: Vec::new(),
        }
    }

    /// Parses and validates a rules file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<RuleSet> {
        let err = |line: usize, reason: String| Error::Rules {
            file: file.to_string(),
            line,
            reason,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
            err(line, e.message().trim().to_string())
        })?;
        if raw.format_version != RULES_FORMAT_VERSION {
            return Err(err(
                1,
                format!(
                    "format_version {} is not supported (this build reads {RULES_FORMAT_VERSION})",
                    raw.format_version
                ),
            ));
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut patterns: Vec<String> = Vec::new();
        let mut keyword_rule = Vec::new();
        let mut regex_src = Vec::new();
        let mut regex_rule = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for spanned in raw.rule {
            let line = line_of(text, spanned.span().start);
            let r = spanned.into_inner();
            if !valid_id(&r.id) {
                return Err(err(
                    line,
                    format!(
                        "rule id {:?} must be 1-64 characters of a-z, 0-9, '.', '_', '-'",
                        r.id
                    ),
                ));
            }
            if !ids.insert(r.id.clone()) {
                return Err(err(line, format!("duplicate rule id {:?}", r.id)));
            }
            if r.description.trim().is_empty() {
                return Err(err(
                    line,
                    format!("rule {:?} has an empty description", r.id),
                ));
            }
            let axis = Axis::from_name(&r.axis).ok_or_else(|| {
                err(
                    line,
                    format!(
                        "rule {:?}: unknown axis {:?} (need, explicitness, tier, gap)",
                        r.id, r.axis
                    ),
                )
            })?;
            let value = axis.value_index(&r.value).ok_or_else(|| {
                err(
                    line,
                    format!(
                        "rule {:?}: {:?} is not a value of {} ({})",
                        r.id,
                        r.value,
                        axis,
                        axis.values().join(", ")
                    ),
                )
            })?;
            if r.keywords.is_empty() && r.regexes.is_empty() {
                return Err(err(
                    line,
                    format!("rule {:?} has neither keywords nor regexes", r.id),
                ));
            }
            let effect = match (r.effect.as_str(), r.weight, r.priority) {
                ("boost", Some(w), None) if w.is_finite() && w != 0.0 && w.abs() <= 20.0 => {
                    Effect::Boost(w)
                }
                ("boost", Some(w), None) => {
                    return Err(err(
                        line,
                        format!(
                            "rule {:?}: weight {w} must be finite, non-zero and within -20..=20",
                            r.id
                        ),
                    ))
                }
                ("boost", None, _) => {
                    return Err(err(
                        line,
                        format!("rule {:?}: a boost needs a weight", r.id),
                    ))
                }
                ("override", None, Some(p)) => Effect::Override(p),
                ("override", None, None) => {
                    return Err(err(
                        line,
                        format!("rule {:?}: an override needs a priority", r.id),
                    ))
                }
                ("boost", _, Some(_)) | ("override", Some(_), _) => {
                    return Err(err(
                        line,
                        format!(
                            "rule {:?}: a boost takes a weight, an override a priority, not both",
                            r.id
                        ),
                    ))
                }
                (other, _, _) => {
                    return Err(err(
                        line,
                        format!(
                            "rule {:?}: unknown effect {other:?} (boost or override)",
                            r.id
                        ),
                    ))
                }
            };
            let idx = rules.len();
            let mut keyword_count = 0;
            for k in &r.keywords {
                let n = normalize(k).as_string();
                if n.is_empty() {
                    return Err(err(line, format!("rule {:?}: empty keyword", r.id)));
                }
                let latin = n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " '-".contains(c));
                patterns.push(n);
                keyword_rule.push((idx, latin));
                keyword_count += 1;
            }
            let compile = |src: &str, what: &str| {
                regex::RegexBuilder::new(src)
                    .size_limit(1 << 20)
                    .dfa_size_limit(LAZY_DFA_CACHE)
                    .build()
                    .map_err(|e| err(line, format!("rule {:?}: bad {what} {src:?}: {e}", r.id)))
            };
            let mut regexes = Vec::new();
            for (i, src) in r.regexes.iter().enumerate() {
                regexes.push(compile(src, "regex")?);
                regex_src.push(src.clone());
                regex_rule.push((idx, i));
            }
            let guards = r
                .guards
                .iter()
                .map(|g| compile(g, "guard"))
                .collect::<Result<Vec<_>>>()?;
            rules.push(Rule {
                id: Arc::from(r.id.as_str()),
                description: r.description,
                axis,
                value,
                effect,
                line,
                keyword_count,
                regexes,
                guards,
                guard_scope: r.guard_scope,
            });
        }
        let keywords = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::Standard)
                    // a few hundred keywords: the DFA is small and the fastest to search
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(&patterns)
                    .map_err(|e| err(1, format!("keywords: {e}")))?,
            )
        };
        let regex_set = regex::RegexSetBuilder::new(&regex_src)
            .dfa_size_limit(LAZY_DFA_CACHE)
            .build()
            .map_err(|e| err(1, format!("regexes: {e}")))?;
        Ok(RuleSet {
            rules,
            keywords,
            keyword_rule,
            regex_set,
            regex_rule,
        })
    }

    /// Reads and parses a rules file.
    pub fn load(path: &std::path::Path) -> Result<RuleSet> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RuleSet::parse(&text, &path.display().to_string())
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Matches every rule against a normalised statement (`chars` and the same text as a
    /// string) and returns the rules that fired, in rule order. `fired` is cleared first.
    pub fn apply_into(&self, chars: &[char], text: &str, fired: &mut Vec<Fired>) {
        fired.clear();
        if self.rules.is_empty() || text.is_empty() {
            return;
        }
        let mut byte_to_char: Vec<u32> = Vec::new();
        let char_pos = |byte: usize, map: &mut Vec<u32>| -> u32 {
            if map.is_empty() {
                map.resize(text.len() + 1, 0);
                let mut ci = 0u32;
                for (bi, c) in text.char_indices() {
                    for k in 0..c.len_utf8() {
                        map[bi + k] = ci;
                    }
                    ci += 1;
                }
                map[text.len()] = ci;
            }
            map[byte]
        };
        let mut hits: Vec<(usize, u32, u32)> = Vec::new();
        if let Some(ac) = &self.keywords {
            for m in ac.find_overlapping_iter(text) {
                let (rule, latin) = self.keyword_rule[m.pattern().as_usize()];
                let (s, e) = (
                    char_pos(m.start(), &mut byte_to_char),
                    char_pos(m.end(), &mut byte_to_char),
                );
                if latin {
                    let before = s.checked_sub(1).and_then(|i| chars.get(i as usize));
                    let after = chars.get(e as usize);
                    let word =
                        |c: Option<&char>| c.is_some_and(|c| c.is_alphanumeric() && c.is_ascii());
                    if word(before) || word(after) {
                        continue;
                    }
                }
                hits.push((rule, s, e));
            }
        }
        if !self.regex_rule.is_empty() {
            for i in self.regex_set.matches(text).iter() {
                let (rule, ri) = self.regex_rule[i];
                for m in self.rules[rule].regexes[ri].find_iter(text) {
                    if m.start() == m.end() {
                        continue;
                    }
                    let (s, e) = (
                        char_pos(m.start(), &mut byte_to_char),
                        char_pos(m.end(), &mut byte_to_char),
                    );
                    hits.push((rule, s, e));
                }
            }
        }
        if hits.is_empty() {
            return;
        }
        hits.sort_unstable();
        hits.dedup();
        let mut i = 0;
        while i < hits.len() {
            let rule = hits[i].0;
            let mut j = i;
            while j < hits.len() && hits[j].0 == rule {
                j += 1;
            }
            let r = &self.rules[rule];
            let mut spans: Vec<(u32, u32)> = hits[i..j].iter().map(|h| (h.1, h.2)).collect();
            if !r.guards.is_empty() {
                let guard_spans: Vec<(u32, u32)> = r
                    .guards
                    .iter()
                    .flat_map(|g| {
                        g.find_iter(text)
                            .map(|m| (m.start(), m.end()))
                            .collect::<Vec<_>>()
                    })
                    .map(|(a, b)| {
                        (
                            char_pos(a, &mut byte_to_char),
                            char_pos(b, &mut byte_to_char),
                        )
                    })
                    .collect();
                match r.guard_scope {
                    GuardScope::Statement if !guard_spans.is_empty() => spans.clear(),
                    GuardScope::Statement => {}
                    GuardScope::Overlap => {
                        spans.retain(|&(s, e)| {
                            !guard_spans.iter().any(|&(gs, ge)| gs <= s && e <= ge)
                        });
                    }
                }
            }
            if !spans.is_empty() {
                fired.push(Fired { rule, spans });
            }
            i = j;
        }
    }

    /// Convenience for tools and tests: normalises `text` and applies the rules.
    pub fn apply(&self, text: &str) -> Vec<Fired> {
        let n = normalize(text);
        let s = n.as_string();
        let mut fired = Vec::new();
        self.apply_into(&n.chars, &s, &mut fired);
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
format_version = 1

[[rule]]
id = "price"
description = "price complaints are about the product"
axis = "need"
value = "PRODUCT"
keywords = ["价格", "Price"]
guards = ["不是[^,。]{0,6}的问题"]
effect = "boost"
weight = 1.0

[[rule]]
id = "refund-request"
description = "asking for a refund states the requirement"
axis = "explicitness"
value = "EXPLICIT"
regexes = ["(请|麻烦).{0,8}退款", "\\brefund\\b"]
effect = "override"
priority = 5
"#;

    #[test]
    fn parses_and_matches_with_guards() {
        let rs = RuleSet::parse(GOOD, "good.toml").unwrap();
        assert_eq!(rs.len(), 2);
        assert_eq!(rs.rules()[1].line, 14);
        let f = rs.apply("價格太高了");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].spans, vec![(0, 2)]);
        assert!(rs.apply("不是价格的问题,是售后").is_empty());
        assert!(rs.apply("the prices are ok").is_empty(), "word boundary");
        assert_eq!(rs.apply("PRICE is high")[0].spans, vec![(0, 5)]);
        let f = rs.apply("麻烦尽快给我退款");
        assert_eq!(f[0].rule, 1);
    }

    #[test]
    fn refuses_bad_rules_with_line() {
        let bad_axis = GOOD.replace("axis = \"explicitness\"", "axis = \"mood\"");
        let e = RuleSet::parse(&bad_axis, "r.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("r.toml:14:") && e.contains("unknown axis"),
            "{e}"
        );
        let bad_re = GOOD.replace("(请|麻烦)", "(请|麻烦");
        let e = RuleSet::parse(&bad_re, "r.toml").unwrap_err().to_string();
        assert!(e.contains("r.toml:14:") && e.contains("bad regex"), "{e}");
        let dup = GOOD.replace("id = \"refund-request\"", "id = \"price\"");
        assert!(RuleSet::parse(&dup, "r.toml")
            .unwrap_err()
            .to_string()
            .contains("duplicate rule id"));
        let syntax = GOOD.replace("weight = 1.0", "weight = ");
        let e = RuleSet::parse(&syntax, "r.toml").unwrap_err().to_string();
        assert!(e.starts_with("r.toml:12:"), "{e}");
        let both = GOOD.replace("priority = 5", "priority = 5\nweight = 2.0");
        assert!(RuleSet::parse(&both, "r.toml").is_err());
        let unknown = GOOD.replace("weight = 1.0", "weight = 1.0\ncolour = \"red\"");
        assert!(RuleSet::parse(&unknown, "r.toml")
            .unwrap_err()
            .to_string()
            .contains("colour"));
    }
}
