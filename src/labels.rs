//! The label schema: the four axes and their values, spelled as in the corpus and CLI.
//!
//! This module owns the one schema of the project (`docs/labels.md`); the proto has its own
//! enum spellings, mapped one to one in the server's conversion code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the four classification axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Axis {
    /// Need level: product, service, experience, relationship, success.
    Need,
    /// Whether the requirement is stated or implied.
    Explicitness,
    /// Basic or enhanced expectation.
    Tier,
    /// Perception against expectation.
    Gap,
}

impl Axis {
    /// All axes in their canonical order.
    pub const ALL: [Axis; 4] = [Axis::Need, Axis::Explicitness, Axis::Tier, Axis::Gap];

    /// The field name used in the corpus, the CLI output and the rules file.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Need => "need",
            Axis::Explicitness => "explicitness",
            Axis::Tier => "tier",
            Axis::Gap => "gap",
        }
    }

    /// The label values of this axis, in their canonical order (lowest need level first).
    pub fn values(self) -> &'static [&'static str] {
        match self {
            Axis::Need => &[
                "PRODUCT",
                "SERVICE",
                "EXPERIENCE",
                "RELATIONSHIP",
                "SUCCESS",
            ],
            Axis::Explicitness => &["EXPLICIT", "IMPLICIT"],
            Axis::Tier => &["BASIC", "ENHANCED"],
            Axis::Gap => &["BELOW", "MET", "ABOVE", "NONE"],
        }
    }

    /// Number of values of this axis.
    #[allow(clippy::len_without_is_empty)] // an axis always has values
    pub fn len(self) -> usize {
        self.values().len()
    }

    /// Position of this axis in [`Axis::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Parses an axis name as written in the corpus (`need`, `explicitness`, `tier`, `gap`).
    pub fn from_name(name: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Index of `value` among this axis's values.
    pub fn value_index(self, value: &str) -> Option<usize> {
        self.values().iter().position(|v| *v == value)
    }

    /// Offset of this axis's first value in a flat array holding every value of every axis.
    pub fn offset(self) -> usize {
        Axis::ALL[..self.index()].iter().map(|a| a.len()).sum()
    }
}

/// Total number of values across all axes (5 + 2 + 2 + 4).
pub const TOTAL_VALUES: usize = 13;

impl fmt::Display for Axis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A statement's four labels as value indices into [`Axis::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LabelSet(pub [usize; 4]);

impl LabelSet {
    /// The value index on `axis`.
    pub fn get(&self, axis: Axis) -> usize {
        self.0[axis.index()]
    }

    /// The value name on `axis`.
    pub fn name(&self, axis: Axis) -> &'static str {
        axis.values()[self.get(axis)]
    }
}

/// The language tags the corpus and the detector use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Lang {
    /// Simplified Chinese.
    #[serde(rename = "zh-Hans")]
    ZhHans,
    /// Traditional Chinese.
    #[serde(rename = "zh-Hant")]
    ZhHant,
    /// English (no Chinese characters).
    #[serde(rename = "en")]
    En,
    /// Chinese with English words.
    #[serde(rename = "mixed")]
    Mixed,
}

impl Lang {
    /// All tags.
    pub const ALL: [Lang; 4] = [Lang::ZhHans, Lang::ZhHant, Lang::En, Lang::Mixed];

    /// The tag as written in the corpus.
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::ZhHans => "zh-Hans",
            Lang::ZhHant => "zh-Hant",
            Lang::En => "en",
            Lang::Mixed => "mixed",
        }
    }

    /// Parses a corpus tag.
    pub fn parse(s: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// Whether the tag denotes Chinese text (mixed included).
    pub fn is_chinese(self) -> bool {
        !matches!(self, Lang::En)
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_cover_all_values() {
        let total: usize = Axis::ALL.iter().map(|a| a.len()).sum();
        assert_eq!(total, TOTAL_VALUES);
        assert_eq!(Axis::Gap.offset() + Axis::Gap.len(), TOTAL_VALUES);
        assert_eq!(Axis::Tier.offset(), 7);
    }

    #[test]
    fn names_round_trip() {
        for a in Axis::ALL {
            assert_eq!(Axis::from_name(a.name()), Some(a));
            for (i, v) in a.values().iter().enumerate() {
                assert_eq!(a.value_index(v), Some(i));
            }
        }
        assert_eq!(Lang::parse("zh-Hant"), Some(Lang::ZhHant));
        assert_eq!(Lang::parse("zh"), None);
    }
}
