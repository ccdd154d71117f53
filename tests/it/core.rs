//! The classifier core: the shipped bundle, training determinism and agreement with linfa,
//! bundle verification, rules and the CLI's JSON lines.

use needscope::bundle::{self, corpus_hash, read_verified, sha256_hex, CorpusFile};
use needscope::classifier::{Classifier, ClassifyOptions};
use needscope::corpus::read_labelled;
use needscope::labels::{Axis, Lang};
use needscope::pipeline::{run, TrainJob};
use needscope::train::{fit, max_probability_difference, FeatureBudget, TrainParams};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

fn shipped() -> &'static Classifier {
    super::core_shipped()
}

fn quick_params() -> TrainParams {
    TrainParams {
        max_features: FeatureBudget::uniform(2_000),
        max_iterations: 60,
        ..TrainParams::default()
    }
}

fn slice_job(out: &Path, limit: usize) -> TrainJob {
    let mut job = TrainJob::new(vec![repo("models/corpus/train.jsonl")], out.to_path_buf());
    job.dev = Some(repo("models/corpus/dev.jsonl"));
    job.rules = repo("models/rules.toml");
    job.userdict = repo("models/userdict.txt");
    job.thresholds = repo("models/thresholds.toml");
    job.params = quick_params();
    job.limit = Some(limit);
    job
}

#[test]
fn shipped_manifest_matches_the_repository_corpus() {
    let files = read_verified(&repo("models/default")).unwrap();
    let m = &files.manifest;
    assert!(!m.corpus_files.is_empty());
    let mut recomputed = Vec::new();
    for f in &m.corpus_files {
        let bytes = std::fs::read(repo(&f.path)).unwrap_or_else(|e| panic!("{}: {e}", f.path));
        assert_eq!(
            sha256_hex(&bytes),
            f.sha256,
            "{} changed since the shipped model was trained",
            f.path
        );
        recomputed.push(CorpusFile {
            path: f.path.clone(),
            sha256: sha256_hex(&bytes),
            rows: f.rows,
        });
    }
    assert_eq!(corpus_hash(&recomputed), m.corpus_hash);
    for key in ["dev", "challenge"] {
        assert!(
            m.metrics
                .get(key)
                .is_some_and(|x| x.contains_key("need_macro_f1")),
            "manifest lacks {key} metrics"
        );
    }
}

#[test]
fn shipped_model_classifies_with_spans_on_the_original_text() {
    let c = shipped();
    let text = "　合作十年了，客户經理換了以後就沒人理我們了";
    let r = c
        .classify(
            text,
            &ClassifyOptions {
                explain: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(r.lang, Lang::ZhHant);
    let chars: Vec<char> = text.chars().collect();
    for h in &r.rules {
        for s in &h.spans {
            assert!(s.start < s.end && s.end as usize <= chars.len());
        }
    }
    assert!(!r.contributions.is_empty());
    for ct in &r.contributions {
        for s in &ct.spans {
            let piece: String = chars[s.start as usize..s.end as usize].iter().collect();
            // the span covers the feature's text in the original (traditional) form
            let norm = needscope::text::normalize(&piece).as_string();
            let feature_text = ct.feature.split_once(':').unwrap().1;
            assert!(
                feature_text == "#" || norm.replace(' ', "") == feature_text.replace(' ', ""),
                "{piece:?} vs {}",
                ct.feature
            );
        }
    }
    for a in Axis::ALL {
        let p: f64 = r.final_probs(a).iter().sum();
        assert!((p - 1.0).abs() < 1e-9);
    }
}

#[test]
fn content_free_input_is_uncertain_on_every_axis() {
    let c = shipped();
    for t in ["在吗?", "好的，谢谢！", "ok 👍", "😂😂😂"] {
        let r = c.classify(t, &ClassifyOptions::default()).unwrap();
        assert!(r.content_free, "{t}");
        assert!(r.axes.iter().all(|a| a.uncertain), "{t}");
    }
    let r = c
        .classify("发票到现在还没开,麻烦尽快处理", &ClassifyOptions::default())
        .unwrap();
    assert!(!r.content_free);
    assert!(c.classify(" \n\t", &ClassifyOptions::default()).is_err());
}

#[test]
fn hostile_inputs_get_a_result_or_a_clear_error() {
    let c = shipped();
    let long = "客户说".repeat(350_000);
    let inputs = [
        long.as_str(),
        "\u{0}\u{1}\u{7f}",
        "🙂🙃😡👍🏽‍♂️",
        "混合 mixed テキスト 텍스트 текст",
        "\u{202e}abc\u{200b}",
        "\u{fffd}\u{fffd}",
    ];
    for t in inputs {
        match c.classify(
            t,
            &ClassifyOptions {
                explain: true,
                ..Default::default()
            },
        ) {
            Ok(r) => assert!(r.final_probabilities.iter().all(|p| p.is_finite())),
            Err(e) => assert!(e.to_string().contains("empty")),
        }
    }
}

#[test]
fn serving_probabilities_match_linfa_on_the_whole_dev_split() {
    let train = read_labelled(&repo("models/corpus/train.jsonl")).unwrap();
    let dev = read_labelled(&repo("models/corpus/dev.jsonl")).unwrap();
    let (_, slice) = needscope::corpus::stratified_split(&train, 0.2, 1);
    let params = quick_params().check().unwrap();
    let tok = needscope::text::Tokenizer::chars_only();
    let trained = fit(&slice, &tok, &params, &|_| {}).unwrap();
    let mut scratch = String::new();
    let rows: Vec<_> = dev
        .iter()
        .map(|e| {
            let n = needscope::text::normalize(e.text());
            let mut toks = Vec::new();
            tok.tokenize_into(&n, &mut toks, &mut scratch);
            let mut v = Vec::new();
            trained.model.features.vectorize_into(&toks, &mut v);
            v
        })
        .collect();
    assert_eq!(rows.len(), dev.len());
    let diff = max_probability_difference(&trained, &rows);
    assert!(diff <= 1e-6, "max difference {diff:e}");
}

#[test]
fn training_is_deterministic_and_bundles_verify() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let sa = run(&slice_job(a.path(), 500), &|_| {}).unwrap();
    let sb = run(&slice_job(b.path(), 500), &|_| {}).unwrap();
    for f in [
        bundle::MODEL_FILE,
        bundle::MODEL_CARD_FILE,
        bundle::RULES_FILE,
    ] {
        let x = std::fs::read(a.path().join(f)).unwrap();
        let y = std::fs::read(b.path().join(f)).unwrap();
        assert!(x == y, "{f} differs between two runs");
    }
    let (mut ma, mut mb) = (sa.manifest.clone(), sb.manifest.clone());
    ma.created_at.clear();
    mb.created_at.clear();
    assert_eq!(ma, mb, "manifests differ beyond created_at");
    assert!(Classifier::load(a.path()).is_ok());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn damaged_bundles_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("b");
    copy_dir(&repo("models/default"), &dir);
    let model = dir.join(bundle::MODEL_FILE);
    let original = std::fs::read(&model).unwrap();

    std::fs::write(&model, &original[..original.len() / 2]).unwrap();
    let e = Classifier::load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.bin is corrupt"), "{e}");

    std::fs::write(&model, &original).unwrap();
    std::fs::write(
        dir.join(bundle::RULES_FILE),
        "format_version = 1\n[[rule]]\nid = \"x\"\n",
    )
    .unwrap();
    let e = Classifier::load(&dir).unwrap_err().to_string();
    assert!(e.contains("rules.toml is corrupt"), "{e}");

    copy_dir(&repo("models/default"), &dir);
    let m = std::fs::read_to_string(dir.join(bundle::MANIFEST)).unwrap();
    std::fs::write(
        dir.join(bundle::MANIFEST),
        m.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    let e = Classifier::load(&dir).unwrap_err().to_string();
    assert!(e.contains("format version 99"), "{e}");

    std::fs::remove_file(dir.join(bundle::MANIFEST)).unwrap();
    assert!(Classifier::load(&dir)
        .unwrap_err()
        .to_string()
        .contains("no manifest.json"));
    assert!(Classifier::load(&tmp.path().join("missing")).is_err());
}

/// Runs a command that must succeed and parses its standard output as JSON.
fn stdout_json<T: serde::de::DeserializeOwned>(cmd: &mut Command) -> T {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn needscope() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_needscope"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

#[test]
fn cli_classify_streams_json_lines_and_survives_bad_lines() {
    use std::io::Write;
    let mut child = needscope()
        .args(["classify"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = "送货太慢了,等了一周\n{\"id\": \"a1\", \"text\": \"Please send a technician before Friday.\"}\n{not json\n{\"id\": 7, \"text\": \"   \"}\n合作八年了,换了经理就没人理我们\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[1]["id"], "a1");
    assert!(Axis::Need
        .values()
        .contains(&lines[1]["need"].as_str().unwrap()));
    for k in [
        "explicitness",
        "tier",
        "gap",
        "probabilities",
        "uncertain",
        "rules",
        "lang",
        "model_version",
    ] {
        assert!(lines[0].get(k).is_some(), "missing {k}");
    }
    assert!(lines[2]["error"].as_str().unwrap().contains("invalid JSON"));
    assert_eq!(lines[3]["id"], "7");
    assert!(lines[3]["error"].as_str().unwrap().contains("empty"));
    assert_eq!(lines[4]["lang"], "zh-Hans");
}

#[test]
fn cli_bundle_verify_and_rules_lint() {
    let ok = needscope()
        .args(["bundle", "verify", "models/default"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "format_version = 1\n\n[[rule]]\nid = \"a\"\ndescription = \"d\"\naxis = \"need\"\nvalue = \"PRICE\"\nkeywords = [\"x\"]\neffect = \"boost\"\nweight = 1.0\n").unwrap();
    let out = needscope()
        .args(["rules", "lint"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:") && err.contains("PRICE"),
        "{err}"
    );
    let good = needscope()
        .args(["rules", "lint", "models/rules.toml"])
        .output()
        .unwrap();
    assert!(good.status.success());
}

#[test]
fn cli_eval_reports_json_and_svg_and_rules_report_scores_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("few.jsonl");
    let dev = std::fs::read_to_string(repo("models/corpus/dev.jsonl")).unwrap();
    std::fs::write(&data, dev.lines().take(60).collect::<Vec<_>>().join("\n")).unwrap();
    let svg = tmp.path().join("cm.svg");
    let report: serde_json::Value = stdout_json(
        needscope()
            .args(["eval", "--json", "--data"])
            .arg(&data)
            .arg("--svg")
            .arg(&svg),
    );
    assert_eq!(report["statements"], 60);
    let need = &report["model_rules"][0];
    assert_eq!(need["axis"], "need");
    let confusion_total: u64 = need["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(confusion_total, 60);
    let f1 = need["macro_f1"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&f1));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.starts_with("<svg") && svg_text.contains("need (macro-F1"));

    let stats: Vec<serde_json::Value> = stdout_json(
        needscope()
            .args(["rules", "report", "--json", "--data"])
            .arg(&data),
    );
    let rules = needscope::rules::RuleSet::load(&repo("models/rules.toml")).unwrap();
    assert_eq!(stats.len(), rules.len());
    for s in &stats {
        let fires = s["fires"].as_u64().unwrap();
        assert!(fires <= 60);
        if fires > 0 {
            let p = s["precision"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&p));
        }
    }
}

#[test]
fn cli_uncertainty_thresholds_are_overridable_at_run_time() {
    let strict = needscope()
        .args([
            "classify",
            "--json",
            "--min-probability",
            "0.999999",
            "送货太慢了,等了一周",
        ])
        .output()
        .unwrap();
    assert!(strict.status.success());
    let v: serde_json::Value = serde_json::from_slice(&strict.stdout).unwrap();
    for a in Axis::ALL {
        assert_eq!(v["uncertain"][a.name()], true, "{a}");
    }
    let bad = needscope()
        .args(["classify", "--min-margin", "2", "x"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("min_margin"));
}
