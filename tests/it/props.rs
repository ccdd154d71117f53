//! Property tests: normalisation, tokenisation, span mapping, rules and classification hold
//! their invariants on arbitrary text.

use needscope::classifier::ClassifyOptions;
use needscope::rules::RuleSet;
use needscope::text::{normalize, parse_token_name, token_name, token_text, tokenize, Tokenizer};
use proptest::prelude::*;
use std::sync::OnceLock;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ,.!?'’，。！？、～\u{3000}\u{ff01}-\u{ff5e}]{0,60}",
        "[\u{4e00}-\u{4e80}\u{8a00}-\u{8a40}a-z ]{0,40}",
        "[\u{1f600}-\u{1f64f}\u{200b}-\u{200f}\u{fe0f}\u{0300}-\u{036f}e ]{0,20}",
    ]
}

fn tokenizer() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::with_jieba(None).unwrap())
}

fn rules() -> &'static RuleSet {
    static R: OnceLock<RuleSet> = OnceLock::new();
    R.get_or_init(|| {
        RuleSet::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/rules.toml"))
            .unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_maps_every_character_back(s in text()) {
        let n = normalize(&s);
        let len = s.chars().count() as u32;
        prop_assert_eq!(n.original_len, len);
        prop_assert_eq!(n.chars.len(), n.start.len());
        prop_assert_eq!(n.chars.len(), n.end.len());
        let mut last = 0;
        for i in 0..n.chars.len() {
            prop_assert!(n.start[i] < n.end[i] && n.end[i] <= len);
            prop_assert!(n.start[i] >= last);
            last = n.start[i];
        }
        let st = n.as_string();
        prop_assert!(!st.starts_with(' ') && !st.ends_with(' ') && !st.contains("  "));
        // case-folded: no character left that has a lowercase form (a few symbols such as
        // the negative circled letter 🅐 count as uppercase but have none)
        prop_assert!(!st
            .chars()
            .any(|c| c.is_control() || c.is_uppercase() && c.to_lowercase().ne(std::iter::once(c))));
    }

    #[test]
    fn normalisation_is_idempotent(s in text()) {
        let once = normalize(&s).as_string();
        prop_assert_eq!(normalize(&once).as_string(), once);
    }

    #[test]
    fn tokens_lie_inside_the_text_and_hash_like_their_names(s in text()) {
        let n = normalize(&s);
        for t in tokenize(tokenizer(), &n) {
            prop_assert!(t.start < t.end && (t.end as usize) <= n.chars.len());
            let name = token_name(t.kind, &token_text(&n, &t));
            let parsed = parse_token_name(&name);
            prop_assert_eq!(parsed, Some((t.kind, t.hash)), "{}", name);
            prop_assert!(n.original_span(t.start as usize, t.end as usize).is_some());
        }
    }

    #[test]
    fn rule_spans_lie_inside_the_normalised_text(s in text(), kw in prop::sample::select(vec!["老客户", "利润", "please", "说好的", "还可以", "not bad"])) {
        let joined = format!("{s}{kw}{s}");
        let n = normalize(&joined);
        let fired = rules().apply(&joined);
        for f in fired {
            prop_assert!(f.rule < rules().len());
            for (a, b) in f.spans {
                prop_assert!(a < b && (b as usize) <= n.chars.len());
            }
        }
    }
}

#[test]
fn keyword_rules_fire_inside_arbitrary_context() {
    // a deterministic companion to the property above: the keyword itself is found
    let f = rules().apply("xx老客户yy");
    assert!(f
        .iter()
        .any(|f| rules().rules()[f.rule].id.contains("relationship")));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn classification_never_panics_and_is_well_formed(s in text()) {
        let c = super::core_shipped();
        match c.classify(&s, &ClassifyOptions { explain: true, ..Default::default() }) {
            Ok(r) => {
                let len = s.chars().count() as u32;
                for a in needscope::labels::Axis::ALL {
                    let sum: f64 = r.final_probs(a).iter().sum();
                    prop_assert!((sum - 1.0).abs() < 1e-9);
                    prop_assert!(r.axes[a.index()].label < a.len());
                }
                for h in &r.rules {
                    for sp in &h.spans {
                        prop_assert!(sp.start < sp.end && sp.end <= len);
                    }
                }
                for ct in &r.contributions {
                    prop_assert!(ct.contribution.is_finite());
                    for sp in &ct.spans {
                        prop_assert!(sp.start < sp.end && sp.end <= len);
                    }
                }
            }
            Err(e) => prop_assert!(normalize(&s).is_empty(), "unexpected error {}", e),
        }
    }
}
