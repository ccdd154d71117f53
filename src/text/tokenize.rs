//! Tokenisation of normalised text into feature tokens.
//!
//! Chinese runs give character unigrams and bigrams and, when a jieba segmenter is present,
//! its multi-character words; Latin runs give words, their Snowball stems and word bigrams; digit runs collapse to
//! one number token; emoji and the marks `?` and `!` are tokens of their own. Every token
//! carries a stable 64-bit hash of its kind and text (no allocation on the hot path) and its
//! half-open span in normalised character positions.

use super::convert::is_han;
use super::normalize::Normalized;
use jieba_rs::Jieba;
use rust_stemmers::{Algorithm, Stemmer};
use rustc_hash::FxHasher;
use std::hash::Hasher;

/// The kinds of feature tokens; the letter is the prefix of the token's name in a vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// One Han character (`c`).
    Char,
    /// Two adjacent Han characters (`b`).
    CharBigram,
    /// A jieba word of two or more Han characters (`j`).
    Word,
    /// A Latin-script word (`w`).
    Latin,
    /// Two adjacent Latin words (`v`).
    LatinBigram,
    /// The Snowball (Porter 2) stem of a Latin word (`s`): "delayed" and "delays" share one.
    Stem,
    /// A run of digits (`n`).
    Number,
    /// An emoji or pictograph (`e`).
    Emoji,
    /// A question or exclamation mark (`p`).
    Mark,
}

impl TokenKind {
    /// The one-letter prefix of this kind in vocabulary names.
    pub fn prefix(self) -> char {
        match self {
            TokenKind::Char => 'c',
            TokenKind::CharBigram => 'b',
            TokenKind::Word => 'j',
            TokenKind::Latin => 'w',
            TokenKind::LatinBigram => 'v',
            TokenKind::Stem => 's',
            TokenKind::Number => 'n',
            TokenKind::Emoji => 'e',
            TokenKind::Mark => 'p',
        }
    }

    /// The kind for a vocabulary prefix.
    pub fn from_prefix(c: char) -> Option<TokenKind> {
        Some(match c {
            'c' => TokenKind::Char,
            'b' => TokenKind::CharBigram,
            'j' => TokenKind::Word,
            'w' => TokenKind::Latin,
            'v' => TokenKind::LatinBigram,
            's' => TokenKind::Stem,
            'n' => TokenKind::Number,
            'e' => TokenKind::Emoji,
            'p' => TokenKind::Mark,
            _ => return None,
        })
    }
}

/// A feature token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// What kind of unit it is.
    pub kind: TokenKind,
    /// Stable hash of kind and text, see [`token_hash`].
    pub hash: u64,
    /// First normalised character position.
    pub start: u32,
    /// One past the last normalised character position.
    pub end: u32,
}

/// The stable hash of a token of `kind` whose text is `chars` (spaces inside bigrams kept).
pub fn token_hash(kind: TokenKind, chars: impl IntoIterator<Item = char>) -> u64 {
    let mut h = FxHasher::default();
    h.write_u32(kind.prefix() as u32);
    for c in chars {
        h.write_u32(c as u32);
    }
    h.finish()
}

/// The vocabulary name of a token: its kind's prefix, a colon, its text.
pub fn token_name(kind: TokenKind, text: &str) -> String {
    format!("{}:{}", kind.prefix(), text)
}

/// Parses a vocabulary name back into kind and the hash it has at run time.
pub fn parse_token_name(name: &str) -> Option<(TokenKind, u64)> {
    let mut it = name.chars();
    let kind = TokenKind::from_prefix(it.next()?)?;
    if it.next()? != ':' {
        return None;
    }
    let text: Vec<char> = it.collect();
    if text.is_empty() {
        return None;
    }
    Some((kind, token_hash(kind, text.iter().copied())))
}

fn is_emoji(c: char) -> bool {
    matches!(c as u32, 0x1F000..=0x1FAFF | 0x2600..=0x27BF | 0x2B00..=0x2BFF)
}

fn is_latin(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || c == '\''
        // below the CJK blocks (no Han character is); the cheap range test first, Unicode's
        // alphabetic table is a slow lookup
        || ((c as u32) < 0x2E80 && c.is_alphabetic())
}

/// Whether `chars[k]` is a point between two digits ("3.5", "2.4ghz"): part of a number or
/// of an alphanumeric word.
fn is_decimal_point(chars: &[char], k: usize) -> bool {
    chars[k] == '.'
        && k > 0
        && chars[k - 1].is_ascii_digit()
        && chars.get(k + 1).is_some_and(char::is_ascii_digit)
}

/// Splits normalised text into tokens, with an optional jieba segmenter for Chinese words.
pub struct Tokenizer {
    jieba: Option<Jieba>,
    stemmer: Stemmer,
}

fn english_stemmer() -> Stemmer {
    Stemmer::create(Algorithm::English)
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("jieba", &self.jieba.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// A tokenizer with jieba's default dictionary plus the given user dictionary
    /// (jieba's format: `word [freq] [tag]` per line).
    pub fn with_jieba(user_dict: Option<&str>) -> Result<Tokenizer, String> {
        let mut jieba = Jieba::new();
        if let Some(dict) = user_dict {
            let mut reader = std::io::BufReader::new(dict.as_bytes());
            jieba
                .load_dict(&mut reader)
                .map_err(|e| format!("user dictionary: {e}"))?;
        }
        Ok(Tokenizer {
            jieba: Some(jieba),
            stemmer: english_stemmer(),
        })
    }

    /// A tokenizer with character n-grams only.
    pub fn chars_only() -> Tokenizer {
        Tokenizer {
            jieba: None,
            stemmer: english_stemmer(),
        }
    }

    /// Whether jieba words are produced.
    pub fn has_jieba(&self) -> bool {
        self.jieba.is_some()
    }

    /// Tokenises `n` into `out` (cleared first). `scratch` is a reusable string buffer.
    pub fn tokenize_into(&self, n: &Normalized, out: &mut Vec<Token>, scratch: &mut String) {
        out.clear();
        let chars = &n.chars;
        let len = chars.len();
        let mut i = 0usize;
        let mut prev_latin: Option<(usize, usize)> = None;
        while i < len {
            let c = chars[i];
            if is_han(c) {
                let s = i;
                while i < len && is_han(chars[i]) {
                    i += 1;
                }
                for k in s..i {
                    out.push(tok(TokenKind::Char, &chars[k..k + 1], k, k + 1));
                    if k + 1 < i {
                        out.push(tok(TokenKind::CharBigram, &chars[k..k + 2], k, k + 2));
                    }
                }
                if i - s >= 2 {
                    if let Some(j) = &self.jieba {
                        scratch.clear();
                        scratch.extend(&chars[s..i]);
                        for w in j.cut(scratch, false) {
                            if w.end - w.start >= 2 {
                                let (a, b) = (s + w.start, s + w.end);
                                out.push(tok(TokenKind::Word, &chars[a..b], a, b));
                            }
                        }
                    }
                }
                prev_latin = None;
            } else if c.is_ascii_digit() {
                let s = i;
                while i < len && (chars[i].is_ascii_digit() || is_decimal_point(chars, i)) {
                    i += 1;
                }
                if i < len && is_latin(chars[i]) {
                    // alphanumeric word such as 5g or 4s
                    while i < len && is_latin(chars[i]) {
                        i += 1;
                    }
                    self.push_latin(out, chars, s, i, &mut prev_latin, scratch);
                } else {
                    out.push(Token {
                        kind: TokenKind::Number,
                        hash: token_hash(TokenKind::Number, "#".chars()),
                        start: s as u32,
                        end: i as u32,
                    });
                }
            } else if is_latin(c) {
                let s = i;
                while i < len && is_latin(chars[i]) {
                    i += 1;
                }
                self.push_latin(out, chars, s, i, &mut prev_latin, scratch);
            } else {
                if is_emoji(c) {
                    out.push(tok(TokenKind::Emoji, &chars[i..i + 1], i, i + 1));
                } else if c == '?' || c == '!' {
                    out.push(tok(TokenKind::Mark, &chars[i..i + 1], i, i + 1));
                }
                if c != ' ' {
                    prev_latin = None;
                }
                i += 1;
            }
        }
    }

    fn push_latin(
        &self,
        out: &mut Vec<Token>,
        chars: &[char],
        s: usize,
        e: usize,
        prev: &mut Option<(usize, usize)>,
        scratch: &mut String,
    ) {
        // trim apostrophes at the edges ("'ok'")
        let (mut a, mut b) = (s, e);
        while a < b && chars[a] == '\'' {
            a += 1;
        }
        while b > a && chars[b - 1] == '\'' {
            b -= 1;
        }
        if a == b {
            return;
        }
        out.push(tok(TokenKind::Latin, &chars[a..b], a, b));
        scratch.clear();
        scratch.extend(&chars[a..b]);
        out.push(Token {
            kind: TokenKind::Stem,
            hash: token_hash(TokenKind::Stem, self.stemmer.stem(scratch).chars()),
            start: a as u32,
            end: b as u32,
        });
        if let Some((pa, pb)) = *prev {
            let text = chars[pa..pb]
                .iter()
                .copied()
                .chain(std::iter::once(' '))
                .chain(chars[a..b].iter().copied());
            out.push(Token {
                kind: TokenKind::LatinBigram,
                hash: token_hash(TokenKind::LatinBigram, text),
                start: pa as u32,
                end: b as u32,
            });
        }
        *prev = Some((a, b));
    }
}

fn tok(kind: TokenKind, text: &[char], start: usize, end: usize) -> Token {
    Token {
        kind,
        hash: token_hash(kind, text.iter().copied()),
        start: start as u32,
        end: end as u32,
    }
}

/// The text of a token as it appears in a vocabulary (bigrams of words joined by one space).
pub fn token_text(n: &Normalized, t: &Token) -> String {
    match t.kind {
        TokenKind::Number => "#".to_string(),
        TokenKind::LatinBigram => {
            let cs = &n.chars[t.start as usize..t.end as usize];
            // a word's characters as the tokenizer reads them: Latin letters, digits,
            // apostrophes, and a point between digits ("2.4ghz")
            let in_word = |k: usize| is_latin(cs[k]) || is_decimal_point(cs, k);
            let first_end = (0..cs.len()).find(|&k| !in_word(k)).unwrap_or(cs.len());
            let last_start = (0..cs.len())
                .rev()
                .find(|&k| !in_word(k))
                .map_or(0, |k| k + 1);
            if first_end < last_start {
                // collapse the separator between the two words to one space
                let first: String = cs[..first_end].iter().collect();
                let last: String = cs[last_start..].iter().collect();
                format!("{} {}", first.trim_matches('\''), last.trim_matches('\''))
            } else {
                cs.iter().collect()
            }
        }
        TokenKind::Stem => {
            let word: String = n.chars[t.start as usize..t.end as usize].iter().collect();
            english_stemmer().stem(&word).into_owned()
        }
        _ => n.chars[t.start as usize..t.end as usize].iter().collect(),
    }
}

/// Convenience: tokenises a normalised text.
pub fn tokenize(tokenizer: &Tokenizer, n: &Normalized) -> Vec<Token> {
    let mut out = Vec::new();
    let mut scratch = String::new();
    tokenizer.tokenize_into(n, &mut out, &mut scratch);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::normalize;

    fn names(t: &Tokenizer, s: &str) -> Vec<String> {
        let n = normalize(s);
        tokenize(t, &n)
            .iter()
            .map(|x| token_name(x.kind, &token_text(&n, x)))
            .collect()
    }

    #[test]
    fn chinese_and_latin() {
        let t = Tokenizer::chars_only();
        let v = names(&t, "App很卡, late delivery!");
        assert!(v.contains(&"w:app".to_string()));
        assert!(v.contains(&"b:很卡".to_string()));
        assert!(v.contains(&"c:卡".to_string()));
        assert!(v.contains(&"v:late delivery".to_string()));
        assert!(names(&t, "2.4ghz wifi").contains(&"v:2.4ghz wifi".to_string()));
        assert!(v.contains(&"p:!".to_string()));
        // no bigram across the comma and the Chinese run
        assert!(!v.iter().any(|x| x == "v:app late"));
    }

    #[test]
    fn hashes_agree_with_names() {
        let t = Tokenizer::chars_only();
        // "2.4ghz" and "0.0'" are words with a point inside (proptest found the second)
        let n =
            normalize("it's not the price, 价格 3.5 元 😡 2.4ghz wifi, 0.0' a, v2.5 next, x 0.0'");
        for x in tokenize(&t, &n) {
            let name = token_name(x.kind, &token_text(&n, &x));
            let (kind, h) = parse_token_name(&name).unwrap();
            assert_eq!(kind, x.kind);
            assert_eq!(h, x.hash, "{name}");
        }
    }

    #[test]
    fn jieba_words() {
        let t = Tokenizer::with_jieba(Some("性价比 100 n\n")).unwrap();
        let v = names(&t, "这款的性价比很高");
        assert!(v.contains(&"j:性价比".to_string()), "{v:?}");
    }
}
