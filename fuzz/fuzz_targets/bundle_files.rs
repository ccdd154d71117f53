//! Bundle loading on arbitrary bytes: the model file, the rules file, the thresholds file
//! and the manifest must be refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use needscope::bundle::Manifest;
use needscope::classifier::parse_thresholds;
use needscope::model::LinearModel;
use needscope::rules::RuleSet;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 4 {
        0 => {
            if let Ok(m) = LinearModel::from_bytes(rest, Path::new("fuzz")) {
                // a model that loads round-trips exactly
                assert_eq!(m.to_bytes(), rest);
            }
        }
        1 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                if let Ok(rs) = RuleSet::parse(s, "fuzz.toml") {
                    let _ = rs.apply("老客户说价格太贵 please refund");
                }
            }
        }
        2 => {
            if let Ok(s) = std::str::from_utf8(rest) {
                let _ = parse_thresholds(s, "fuzz.toml");
            }
        }
        _ => {
            let _ = serde_json::from_slice::<Manifest>(rest);
        }
    }
});
