//! Language detection: `zh-Hans`, `zh-Hant`, `en` or `mixed`.
//!
//! The rule is the corpus's: no Han character is English; Han characters together with a
//! Latin word of two or more letters is mixed; otherwise traditional when traditional-only
//! characters are present, simplified when not.

use super::convert::{is_han, traditional_only};
use crate::labels::Lang;

/// Detects the language tag of `text` (original, not normalised, text).
pub fn detect_language(text: &str) -> Lang {
    let mut han = 0usize;
    let mut trad = 0usize;
    let mut latin_run = 0usize;
    let mut latin_word = false;
    for c in text.chars() {
        let c = fold_fullwidth(c);
        if c.is_ascii_alphabetic() {
            latin_run += 1;
            if latin_run >= 2 {
                latin_word = true;
            }
            continue;
        }
        latin_run = 0;
        if is_han(c) {
            han += 1;
            if traditional_only(c) {
                trad += 1;
            }
        }
    }
    if han == 0 {
        Lang::En
    } else if latin_word {
        Lang::Mixed
    } else if trad > 0 {
        Lang::ZhHant
    } else {
        Lang::ZhHans
    }
}

fn fold_fullwidth(c: char) -> char {
    let u = c as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        char::from_u32(u - 0xFEE0).unwrap_or(c)
    } else {
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_tag() {
        assert_eq!(detect_language("送货太慢了"), Lang::ZhHans);
        assert_eq!(detect_language("送貨太慢了"), Lang::ZhHant);
        assert_eq!(detect_language("The courier was rude"), Lang::En);
        assert_eq!(detect_language("这个App老是闪退"), Lang::Mixed);
        assert_eq!(detect_language("这个ＡＰＰ老是闪退"), Lang::Mixed);
        assert_eq!(detect_language("4S店的服务不错"), Lang::ZhHans);
        assert_eq!(detect_language("😡😡"), Lang::En);
    }
}
