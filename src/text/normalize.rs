//! Normalisation for features: NFKC (which folds full-width forms to half-width), case
//! folding, traditional to simplified, whitespace collapsed, invisible format characters
//! dropped. Emoji are kept as characters of their own.
//!
//! Every normalised character remembers the half-open range of code points of the original
//! text it came from, so spans found on the normalised text map back to the original.

use super::convert::{is_han, simplified};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// A normalised statement with its map back to the original text.
#[derive(Debug, Default, Clone)]
pub struct Normalized {
    /// The normalised characters.
    pub chars: Vec<char>,
    /// For each normalised character, the first original code point it came from.
    pub start: Vec<u32>,
    /// For each normalised character, one past the last original code point it came from.
    pub end: Vec<u32>,
    /// Number of code points in the original text.
    pub original_len: u32,
    /// The original text's characters, kept between calls so reuse does not allocate.
    scratch: Vec<char>,
}

impl Normalized {
    /// The normalised text as a string.
    pub fn as_string(&self) -> String {
        self.chars.iter().collect()
    }

    /// Maps a half-open range of normalised character positions to the half-open range of
    /// original code points it covers. Returns `None` for an empty or out-of-range span.
    pub fn original_span(&self, from: usize, to: usize) -> Option<(u32, u32)> {
        if from >= to || to > self.chars.len() {
            return None;
        }
        Some((self.start[from], self.end[to - 1]))
    }

    /// Whether the normalised text is empty.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    fn push(&mut self, c: char, from: u32, to: u32) {
        if c.is_whitespace() {
            // collapse runs and drop leading whitespace
            if self.chars.last().is_none_or(|l| *l == ' ') {
                return;
            }
            self.chars.push(' ');
        } else {
            self.chars.push(c);
        }
        self.start.push(from);
        self.end.push(to);
    }

    fn clear(&mut self) {
        self.chars.clear();
        self.start.clear();
        self.end.clear();
        self.original_len = 0;
    }
}

/// Characters that carry nothing visible: zero-width joiners and spaces, variation
/// selectors, the byte-order mark, bidi controls.
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0xFE00..=0xFE0F | 0xFEFF
        | 0xE0100..=0xE01EF | 0xE0020..=0xE007F)
}

/// Whether `c` belongs to the cluster of the character before it (a combining mark or an
/// invisible format character). ASCII and Han never do, which skips the table look-up.
fn joins_cluster(c: char) -> bool {
    !c.is_ascii() && !is_han(c) && (is_combining_mark(c) || is_invisible(c))
}

/// The ASCII character a full-width form (U+FF01..U+FF5E) is NFKC-equivalent to.
fn fullwidth_ascii(c: char) -> Option<char> {
    let u = c as u32;
    (0xFF01..=0xFF5E)
        .contains(&u)
        .then(|| char::from_u32(u - 0xFEE0))
        .flatten()
}

fn push_folded(out: &mut Normalized, c: char, from: u32, to: u32) {
    if c.is_control() {
        out.push(' ', from, to);
    } else if c.is_uppercase() {
        for l in c.to_lowercase() {
            out.push(l, from, to);
        }
    } else if is_han(c) {
        out.push(simplified(c), from, to);
    } else {
        out.push(c, from, to);
    }
}

/// Normalises `text` into `out`, reusing its buffers.
pub fn normalize_into(text: &str, out: &mut Normalized) {
    out.clear();
    let mut chars = std::mem::take(&mut out.scratch);
    chars.clear();
    chars.extend(text.chars());
    out.original_len = chars.len() as u32;
    let mut i = 0usize;
    let mut cluster = String::new();
    while i < chars.len() {
        let c = chars[i];
        let from = i as u32;
        // a base character and the combining marks that follow it form one cluster
        let mut j = i + 1;
        while j < chars.len() && joins_cluster(chars[j]) {
            j += 1;
        }
        let to = j as u32;
        if j == i + 1 && (c.is_ascii() || is_han(c) && !(0xF900..=0xFAFF).contains(&(c as u32))) {
            // fast path: already NFKC-stable
            if c.is_ascii_uppercase() {
                out.push(c.to_ascii_lowercase(), from, to);
            } else {
                push_folded(out, c, from, to);
            }
        } else if let Some(ascii) = (j == i + 1).then(|| fullwidth_ascii(c)).flatten() {
            // fast path: full-width forms (，！？ＡＰＰ) are NFKC-equivalent to ASCII
            push_folded(out, ascii, from, to);
        } else if is_invisible(c) && j == i + 1 {
            // dropped
        } else {
            cluster.clear();
            cluster.extend(chars[i..j].iter().filter(|c| !is_invisible(**c)));
            for n in cluster.nfkc() {
                if !is_invisible(n) {
                    push_folded(out, n, from, to);
                }
            }
        }
        i = j;
    }
    while out.chars.last() == Some(&' ') {
        out.chars.pop();
        out.start.pop();
        out.end.pop();
    }
    out.scratch = chars;
}

/// Normalises `text`.
pub fn normalize(text: &str) -> Normalized {
    let mut n = Normalized::default();
    normalize_into(text, &mut n);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_width_case_and_script() {
        let n = normalize("  ＡＰＰ  閃退了，ＯＫ？ ");
        assert_eq!(n.as_string(), "app 闪退了,ok?");
    }

    #[test]
    fn spans_map_back_to_original() {
        let text = "　客戶說ＡＰＰ很卡";
        let n = normalize(text);
        let s = n.as_string();
        let pos = s.chars().collect::<Vec<_>>();
        let at = pos.iter().position(|c| *c == 'a').unwrap();
        let (a, b) = n.original_span(at, at + 3).unwrap();
        let orig: String = text
            .chars()
            .skip(a as usize)
            .take((b - a) as usize)
            .collect();
        assert_eq!(orig, "ＡＰＰ");
    }

    #[test]
    fn expanding_characters_share_their_origin() {
        // U+FB01 (fi ligature) expands to two characters
        let n = normalize("ﬁne");
        assert_eq!(n.as_string(), "fine");
        assert_eq!(n.original_span(0, 2), Some((0, 1)));
        assert_eq!(n.original_span(2, 4), Some((1, 3)));
    }

    #[test]
    fn combining_sequences_compose() {
        let n = normalize("cafe\u{301} ok");
        assert_eq!(n.as_string(), "café ok");
        assert_eq!(n.original_span(3, 4), Some((3, 5)));
    }

    #[test]
    fn controls_and_invisibles() {
        let n = normalize("a\u{0}\u{200b}b\u{feff}\n\tc");
        assert_eq!(n.as_string(), "a b c");
        assert!(normalize(" \t\n ").is_empty());
        let e = normalize("👍\u{fe0f}好");
        assert_eq!(e.as_string(), "👍好");
    }
}
