//! Normalisation, span mapping, tokenisation, language detection, rules and the whole
//! classification on arbitrary input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needscope::classifier::{Classifier, ClassifyOptions};
use needscope::text::{detect_language, normalize, tokenize};
use std::sync::OnceLock;

fn classifier() -> &'static Classifier {
    static C: OnceLock<Classifier> = OnceLock::new();
    C.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default");
        Classifier::load(&dir).expect("default bundle")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let n = normalize(&text);
    let len = text.chars().count() as u32;
    for i in 0..n.chars.len() {
        assert!(n.start[i] < n.end[i] && n.end[i] <= len);
    }
    let _ = detect_language(&text);
    let c = classifier();
    for t in tokenize(c.tokenizer(), &n) {
        assert!(n.original_span(t.start as usize, t.end as usize).is_some());
    }
    for f in c.rules().apply(&text) {
        for (a, b) in f.spans {
            assert!(a < b && (b as usize) <= n.chars.len());
        }
    }
    if let Ok(r) = c.classify(&text, &ClassifyOptions { explain: true, ..Default::default() }) {
        assert!(r.final_probabilities.iter().all(|p| p.is_finite()));
        for h in &r.rules {
            for s in &h.spans {
                assert!(s.start < s.end && s.end <= len);
            }
        }
    }
});
