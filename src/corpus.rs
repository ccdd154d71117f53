//! Labelled data: reading JSONL or CSV files with `text` and the four labels (other corpus
//! fields optional), and the stratified, group-preserving split.
//!
//! Owns the corpus schema (`docs/labels.md`); knows nothing of features or models.

use crate::error::{Error, Result};
use crate::labels::{Axis, LabelSet, Lang};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// One labelled statement as the corpus files store it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Statements written as variants of one idea share a group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The statement.
    pub text: String,
    /// Need level.
    pub need: String,
    /// Explicitness.
    pub explicitness: String,
    /// Tier.
    pub tier: String,
    /// Gap.
    pub gap: String,
    /// Language tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// Business domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Writing style.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
}

/// A validated labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The record as read.
    pub record: Record,
    /// Its labels as indices.
    pub labels: LabelSet,
    /// Its language tag, if the record has a valid one.
    pub lang: Option<Lang>,
}

impl Example {
    /// The statement text.
    pub fn text(&self) -> &str {
        &self.record.text
    }

    /// The group key (the id, or the text, when the record has no group).
    pub fn group_key(&self) -> &str {
        self.record
            .group
            .as_deref()
            .or(self.record.id.as_deref())
            .unwrap_or(&self.record.text)
    }
}

impl Record {
    /// Validates the labels (and `lang`, when present) of a record.
    pub fn validate(self) -> std::result::Result<Example, String> {
        if self.text.trim().is_empty() {
            return Err("text is empty".into());
        }
        let mut idx = [0usize; 4];
        for a in Axis::ALL {
            let v = match a {
                Axis::Need => &self.need,
                Axis::Explicitness => &self.explicitness,
                Axis::Tier => &self.tier,
                Axis::Gap => &self.gap,
            };
            idx[a.index()] = a
                .value_index(v)
                .ok_or_else(|| format!("{a} {v:?} is not one of {}", a.values().join(", ")))?;
        }
        let lang =
            match &self.lang {
                Some(l) => Some(Lang::parse(l).ok_or_else(|| {
                    format!("lang {l:?} is not one of zh-Hans, zh-Hant, en, mixed")
                })?),
                None => None,
            };
        Ok(Example {
            record: self,
            labels: LabelSet(idx),
            lang,
        })
    }
}

/// Reads a labelled file: JSON lines (`.jsonl`, `.json`, `.ndjson`) or CSV with a header
/// (`.csv`). Blank lines are skipped; any bad record is an error naming file and line.
pub fn read_labelled(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let file = path.display().to_string();
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let data_err = |line: usize, reason: String| Error::Data {
        file: file.clone(),
        line,
        reason,
    };
    let mut out = Vec::new();
    if is_csv {
        let mut rdr = csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(text.as_bytes());
        for (i, rec) in rdr.deserialize::<Record>().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| data_err(line, e.to_string()))?;
            out.push(rec.validate().map_err(|r| data_err(line, r))?);
        }
    } else {
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let line = i + 1;
            let rec: Record = serde_json::from_str(l).map_err(|e| data_err(line, e.to_string()))?;
            out.push(rec.validate().map_err(|r| data_err(line, r))?);
        }
    }
    Ok(out)
}

/// Splits examples into (train, held-out) with whole groups on one side, stratified by need
/// level and language (of each group's first statement). Deterministic for a seed.
pub fn stratified_split(
    examples: &[Example],
    held_out_fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        groups.entry(e.group_key()).or_default().push(i);
    }
    let mut strata: BTreeMap<(usize, &str), Vec<Vec<usize>>> = BTreeMap::new();
    for members in groups.into_values() {
        let first = &examples[members[0]];
        let lang = first.lang.map(|l| l.as_str()).unwrap_or("");
        strata
            .entry((first.labels.get(Axis::Need), lang))
            .or_default()
            .push(members);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut held = vec![false; examples.len()];
    for mut gs in strata.into_values() {
        gs.shuffle(&mut rng);
        let total: usize = gs.iter().map(|g| g.len()).sum();
        let want = (total as f64 * held_out_fraction).round() as usize;
        let mut taken = 0;
        for g in gs {
            if taken >= want {
                break;
            }
            taken += g.len();
            for i in g {
                held[i] = true;
            }
        }
    }
    let mut train = Vec::new();
    let mut dev = Vec::new();
    for (e, h) in examples.iter().zip(held) {
        if h {
            dev.push(e.clone())
        } else {
            train.push(e.clone())
        }
    }
    (train, dev)
}

/// Writes records as JSON lines.
pub fn write_jsonl(path: &Path, examples: &[Example]) -> Result<()> {
    let mut s = String::new();
    for e in examples {
        s.push_str(&serde_json::to_string(&e.record).map_err(|e| Error::Training(e.to_string()))?);
        s.push('\n');
    }
    std::fs::write(path, s).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(id: usize, group: usize, need: &str, lang: &str) -> Example {
        Record {
            id: Some(format!("t-{id}")),
            group: Some(format!("g-{group}")),
            text: format!("statement {id}"),
            need: need.into(),
            explicitness: "EXPLICIT".into(),
            tier: "BASIC".into(),
            gap: "NONE".into(),
            lang: Some(lang.into()),
            domain: None,
            style: None,
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn split_keeps_groups_whole_and_stratifies() {
        let mut v = Vec::new();
        for i in 0..400 {
            let need = Axis::Need.values()[i % 5];
            let lang = ["zh-Hans", "en"][i % 2];
            v.push(ex(i, i / 2, need, lang));
        }
        let (train, dev) = stratified_split(&v, 0.2, 7);
        assert_eq!(train.len() + dev.len(), 400);
        assert!((70..=90).contains(&dev.len()), "{}", dev.len());
        let tg: std::collections::HashSet<_> =
            train.iter().map(|e| e.group_key().to_string()).collect();
        assert!(dev.iter().all(|e| !tg.contains(e.group_key())));
        for need in 0..5 {
            assert!(
                dev.iter()
                    .filter(|e| e.labels.get(Axis::Need) == need)
                    .count()
                    >= 10
            );
        }
        let (train2, _) = stratified_split(&v, 0.2, 7);
        assert_eq!(train, train2);
    }

    #[test]
    fn bad_labels_are_refused() {
        let r = Record {
            need: "PRICE".into(),
            ..ex(1, 1, "PRODUCT", "en").record
        };
        assert!(r.validate().unwrap_err().contains("need \"PRICE\""));
    }
}
