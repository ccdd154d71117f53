//! The labelled corpus obeys its contract: schema and labels, no duplicates or
//! near-duplicates, no template families, groups on one side of the split, a challenge set
//! independent of training, and the coverage minimums of the corpus card.

use needscope::labels::{Axis, Lang};
use needscope::text::{detect_language, normalize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

const FIELDS: [&str; 10] = [
    "id",
    "group",
    "text",
    "need",
    "explicitness",
    "tier",
    "gap",
    "lang",
    "domain",
    "style",
];
const STYLES: [&str; 11] = [
    "chat",
    "review",
    "transcript",
    "visit_note",
    "question",
    "sarcasm",
    "typo",
    "negation",
    "no_cue",
    "email",
    "social",
];

#[derive(Debug, Clone)]
struct Row {
    file: &'static str,
    line: usize,
    f: HashMap<String, String>,
}

impl Row {
    fn get(&self, k: &str) -> &str {
        self.f.get(k).map(String::as_str).unwrap_or("")
    }
    fn loc(&self) -> String {
        format!("{}:{} ({})", self.file, self.line, self.get("id"))
    }
}

fn load(file: &'static str) -> (Vec<Row>, Vec<String>) {
    let path = format!("{}/models/corpus/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let v: Value = match serde_json::from_str(l) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!("{file}:{line}: invalid JSON: {e}"));
                continue;
            }
        };
        let mut f = HashMap::new();
        for k in FIELDS {
            match v.get(k).and_then(Value::as_str) {
                Some(s) if !s.trim().is_empty() => {
                    f.insert(k.to_string(), s.to_string());
                }
                _ => errors.push(format!("{file}:{line}: missing or empty field {k}")),
            }
        }
        let row = Row { file, line, f };
        for a in Axis::ALL {
            if a.value_index(row.get(a.name())).is_none() {
                errors.push(format!(
                    "{}: unknown {} {:?}",
                    row.loc(),
                    a,
                    row.get(a.name())
                ));
            }
        }
        if Lang::parse(row.get("lang")).is_none() {
            errors.push(format!("{}: unknown lang {:?}", row.loc(), row.get("lang")));
        }
        if !STYLES.contains(&row.get("style")) {
            errors.push(format!(
                "{}: unknown style {:?}",
                row.loc(),
                row.get("style")
            ));
        }
        rows.push(row);
    }
    (rows, errors)
}

struct Corpus {
    train: Vec<Row>,
    dev: Vec<Row>,
    challenge: Vec<Row>,
}

fn corpus() -> Corpus {
    let (train, mut e1) = load("train.jsonl");
    let (dev, e2) = load("dev.jsonl");
    let (challenge, e3) = load("challenge.jsonl");
    e1.extend(e2);
    e1.extend(e3);
    assert!(
        e1.is_empty(),
        "{} schema errors:\n{}",
        e1.len(),
        e1.join("\n")
    );
    Corpus {
        train,
        dev,
        challenge,
    }
}

/// Normalised text reduced to letters, digits and Han characters.
fn key(text: &str) -> Vec<char> {
    normalize(text)
        .chars
        .into_iter()
        .filter(|c| c.is_alphanumeric())
        .collect()
}

fn trigrams(k: &[char]) -> Vec<String> {
    if k.len() < 3 {
        return vec![k.iter().collect()];
    }
    let mut g: Vec<String> = k.windows(3).map(|w| w.iter().collect()).collect();
    g.sort();
    g.dedup();
    g
}

/// Pairs (i, j) with character 3-gram Jaccard >= `t`, found with a prefix-filter index
/// (grams ordered rarest first; two sets with Jaccard >= t share a gram in their prefixes).
fn near_pairs(texts: &[Vec<char>], t: f64) -> Vec<(usize, usize, f64)> {
    let sets: Vec<Vec<String>> = texts.iter().map(|k| trigrams(k)).collect();
    let mut freq: HashMap<&str, usize> = HashMap::new();
    for s in &sets {
        for g in s {
            *freq.entry(g).or_insert(0) += 1;
        }
    }
    let ordered: Vec<Vec<&str>> = sets
        .iter()
        .map(|s| {
            let mut v: Vec<&str> = s.iter().map(String::as_str).collect();
            v.sort_by(|a, b| freq[a].cmp(&freq[b]).then_with(|| a.cmp(b)));
            v
        })
        .collect();
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut out = Vec::new();
    for (i, s) in ordered.iter().enumerate() {
        let prefix = s.len() - (t * s.len() as f64).ceil() as usize + 1;
        let mut cands: HashSet<usize> = HashSet::new();
        for g in &s[..prefix.min(s.len())] {
            if let Some(v) = index.get(g) {
                cands.extend(v.iter().copied());
            }
        }
        let mine: HashSet<&str> = s.iter().copied().collect();
        for j in cands {
            let inter = ordered[j].iter().filter(|g| mine.contains(*g)).count();
            let jac = inter as f64 / (s.len() + ordered[j].len() - inter) as f64;
            if jac >= t {
                out.push((j, i, jac));
            }
        }
        for g in &s[..prefix.min(s.len())] {
            index.entry(g).or_default().push(i);
        }
    }
    out
}

#[test]
fn near_duplicate_index_finds_what_all_pairs_finds() {
    let texts: Vec<Vec<char>> = [
        "送货太慢了等了一周还没到",
        "送货太慢了等了一周还没到啊",
        "完全不同的一句话在这里",
        "the courier was rude to me",
        "the courier was rude to me!!",
        "price",
    ]
    .iter()
    .map(|s| key(s))
    .collect();
    let fast: HashSet<(usize, usize)> = near_pairs(&texts, 0.8)
        .into_iter()
        .map(|(a, b, _)| (a, b))
        .collect();
    let mut brute = HashSet::new();
    for i in 0..texts.len() {
        for j in 0..i {
            let (a, b) = (trigrams(&texts[i]), trigrams(&texts[j]));
            let inter = a.iter().filter(|g| b.contains(g)).count();
            if inter as f64 / (a.len() + b.len() - inter) as f64 >= 0.8 {
                brute.insert((j, i));
            }
        }
    }
    assert_eq!(fast, brute);
    assert!(brute.contains(&(0, 1)));
}

#[test]
fn schema_and_labels_are_valid() {
    let c = corpus();
    let mut ids = HashSet::new();
    for r in c.train.iter().chain(&c.dev).chain(&c.challenge) {
        assert!(
            ids.insert(r.get("id").to_string()),
            "duplicate id {}",
            r.loc()
        );
    }
}

#[test]
fn no_duplicates_or_near_duplicates() {
    let c = corpus();
    let all: Vec<&Row> = c.train.iter().chain(&c.dev).chain(&c.challenge).collect();
    let keys: Vec<Vec<char>> = all.iter().map(|r| key(r.get("text"))).collect();
    let mut seen: HashMap<&Vec<char>, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(j) = seen.insert(k, i) {
            problems.push(format!(
                "exact duplicate: {} = {}",
                all[i].loc(),
                all[j].loc()
            ));
        }
    }
    for (i, j, jac) in near_pairs(&keys, 0.8) {
        problems.push(format!(
            "near-duplicate ({jac:.2}): {} ~ {}",
            all[i].loc(),
            all[j].loc()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The sentence skeleton: nouns, numerals, measure words, time words and foreign words
/// masked (jieba's part-of-speech tags for Chinese; for English, digits and the word after a
/// determiner), runs of masks collapsed.
fn skeleton(jieba: &jieba_rs::Jieba, text: &str) -> Vec<String> {
    let n = normalize(text).as_string();
    let mut out: Vec<String> = Vec::new();
    let has_han = n.chars().any(needscope::text::is_han);
    if has_han {
        for t in jieba.tag(&n, true) {
            let masked = t.tag.starts_with('n')
                || matches!(t.tag, "m" | "eng" | "q" | "t" | "x")
                    && t.word.chars().any(|c| c.is_alphanumeric());
            if masked {
                out.push("N".into());
            } else if !t.word.trim().is_empty() {
                out.push(t.word.to_string());
            }
        }
    } else {
        const DET: [&str; 14] = [
            "the", "a", "an", "our", "your", "my", "this", "that", "these", "those", "their",
            "his", "her", "its",
        ];
        let mut prev = String::new();
        for w in n
            .split(|c: char| !(c.is_alphanumeric() || c == '\''))
            .filter(|w| !w.is_empty())
        {
            if w.chars().all(|c| c.is_ascii_digit()) || DET.contains(&prev.as_str()) {
                out.push("N".into());
            } else {
                out.push(w.to_string());
            }
            prev = w.to_string();
        }
    }
    out.dedup_by(|a, b| a == "N" && b == "N");
    out
}

#[test]
fn no_template_families() {
    let c = corpus();
    let jieba = jieba_rs::Jieba::new();
    let mut families: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for r in c.train.iter().chain(&c.dev).chain(&c.challenge) {
        let s = skeleton(&jieba, r.get("text"));
        if s.len() >= 4 {
            families.entry(s).or_default().push(r.loc());
        }
    }
    let bad: Vec<String> = families
        .iter()
        .filter(|(_, v)| v.len() > 3)
        .map(|(k, v)| format!("{} x{}: {}", k.join(" "), v.len(), v.join(", ")))
        .collect();
    assert!(
        bad.is_empty(),
        "template-like families:\n{}",
        bad.join("\n")
    );
}

#[test]
fn skeleton_masks_swapped_nouns() {
    let jieba = jieba_rs::Jieba::new();
    assert_eq!(
        skeleton(&jieba, "The delivery was late again"),
        skeleton(&jieba, "The invoice was late again")
    );
    assert_ne!(
        skeleton(&jieba, "The delivery was late again"),
        skeleton(&jieba, "Nobody answered the hotline")
    );
    assert_eq!(
        skeleton(&jieba, "这批饮料的质量太差了"),
        skeleton(&jieba, "这批手机的质量太差了")
    );
}

#[test]
fn groups_stay_on_one_side_of_the_split() {
    let c = corpus();
    let train_groups: HashSet<&str> = c.train.iter().map(|r| r.get("group")).collect();
    let split: Vec<String> = c
        .dev
        .iter()
        .filter(|r| train_groups.contains(r.get("group")))
        .map(|r| r.loc())
        .collect();
    assert!(split.is_empty(), "groups in both train and dev: {split:?}");
    let ch: Vec<String> = c
        .challenge
        .iter()
        .filter(|r| train_groups.contains(r.get("group")))
        .map(|r| r.loc())
        .collect();
    assert!(
        ch.is_empty(),
        "challenge rows share a training group: {ch:?}"
    );
}

#[test]
fn challenge_is_not_near_training() {
    let c = corpus();
    let train: Vec<&Row> = c.train.iter().chain(&c.dev).collect();
    let mut keys: Vec<Vec<char>> = train.iter().map(|r| key(r.get("text"))).collect();
    let n = keys.len();
    keys.extend(c.challenge.iter().map(|r| key(r.get("text"))));
    let close: Vec<String> = near_pairs(&keys, 0.8)
        .into_iter()
        .filter(|&(i, j, _)| (i < n) != (j < n))
        .map(|(i, j, jac)| {
            let (t, ch) = if i < n { (i, j - n) } else { (j, i - n) };
            format!("{} ~ {} ({jac:.2})", c.challenge[ch].loc(), train[t].loc())
        })
        .collect();
    assert!(
        close.is_empty(),
        "challenge statements near training ones:\n{}",
        close.join("\n")
    );
}

fn share(rows: &[&Row], pred: impl Fn(&Row) -> bool) -> f64 {
    rows.iter().filter(|r| pred(r)).count() as f64 / rows.len().max(1) as f64
}

#[test]
fn coverage_minimums_hold() {
    let c = corpus();
    let all: Vec<&Row> = c.train.iter().chain(&c.dev).collect();
    let mut failures = Vec::new();
    let mut need = |ok: bool, what: String| {
        if !ok {
            failures.push(what)
        }
    };
    need(
        all.len() >= 4000,
        format!("train+dev has {} statements, needs 4000", all.len()),
    );
    let dev_share = c.dev.len() as f64 / all.len() as f64;
    need(
        dev_share >= 0.15,
        format!("dev is {:.1}% of train+dev, needs 15%", dev_share * 100.0),
    );
    need(
        c.challenge.len() >= 300,
        format!("challenge has {}, needs 300", c.challenge.len()),
    );
    let zh = share(&all, |r| r.get("lang") != "en");
    need(zh >= 0.60, format!("Chinese share {zh:.3} < 0.60"));
    let hant = share(&all, |r| r.get("lang") == "zh-Hant");
    need(hant >= 0.05, format!("traditional share {hant:.3} < 0.05"));
    let en = share(&all, |r| r.get("lang") == "en");
    need(en >= 0.25, format!("English share {en:.3} < 0.25"));
    let mixed = share(&all, |r| r.get("lang") == "mixed");
    need(mixed >= 0.03, format!("mixed share {mixed:.3} < 0.03"));
    for a in Axis::ALL {
        let min = if a == Axis::Need { 0.12 } else { 0.10 };
        for v in a.values() {
            let s = share(&all, |r| r.get(a.name()) == *v);
            need(s >= min, format!("{a} {v} share {s:.3} < {min}"));
        }
    }
    let domains: HashSet<&str> = all.iter().map(|r| r.get("domain")).collect();
    need(
        domains.len() >= 12,
        format!("{} domains, needs 12", domains.len()),
    );
    for st in STYLES {
        let s = share(&all, |r| r.get("style") == st);
        need(s >= 0.03, format!("style {st} share {s:.3} < 0.03"));
    }
    // the split is stratified: dev's need-level and language shares track train's
    let train: Vec<&Row> = c.train.iter().collect();
    let dev: Vec<&Row> = c.dev.iter().collect();
    for v in Axis::Need.values() {
        let (a, b) = (
            share(&train, |r| r.get("need") == *v),
            share(&dev, |r| r.get("need") == *v),
        );
        need(
            (a - b).abs() < 0.03,
            format!("need {v}: train {a:.3} vs dev {b:.3}"),
        );
    }
    for l in Lang::ALL {
        let (a, b) = (
            share(&train, |r| r.get("lang") == l.as_str()),
            share(&dev, |r| r.get("lang") == l.as_str()),
        );
        need(
            (a - b).abs() < 0.03,
            format!("lang {l}: train {a:.3} vs dev {b:.3}"),
        );
    }
    assert!(failures.is_empty(), "coverage:\n{}", failures.join("\n"));
}

#[test]
fn language_detection_agrees_with_the_corpus() {
    let c = corpus();
    let all: Vec<&Row> = c.train.iter().chain(&c.dev).chain(&c.challenge).collect();
    let wrong: Vec<String> = all
        .iter()
        .filter(|r| detect_language(r.get("text")).as_str() != r.get("lang"))
        .map(|r| {
            format!(
                "{} {} -> {}",
                r.loc(),
                r.get("lang"),
                detect_language(r.get("text"))
            )
        })
        .collect();
    let agreement = 1.0 - wrong.len() as f64 / all.len() as f64;
    assert!(
        agreement >= 0.99,
        "agreement {agreement:.4}; disagreements:\n{}",
        wrong.join("\n")
    );
}
