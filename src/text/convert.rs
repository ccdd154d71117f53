//! Character-level traditional to simplified conversion for features and language detection.
//!
//! The tables are derived once, at first use, from the OpenCC dictionaries that ship inside
//! the `ferrous-opencc` crate: every CJK code point of the basic plane is converted on its own
//! and kept when the conversion maps one character to one character.

use ferrous_opencc::config::BuiltinConfig;
use ferrous_opencc::OpenCC;
use std::sync::OnceLock;

const HAN_RANGES: [(u32, u32); 3] = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)];

/// Whether `c` is a CJK ideograph (unified, extension A or compatibility).
pub fn is_han(c: char) -> bool {
    let u = c as u32;
    HAN_RANGES.iter().any(|&(a, b)| (a..=b).contains(&u)) || (0x20000..=0x3134F).contains(&u)
}

struct Tables {
    /// t2s mapping for basic-plane Han characters, indexed by code point minus 0x3400.
    t2s: Vec<char>,
    /// Whether the character exists only in traditional form (t2s changes it).
    trad_only: Vec<bool>,
}

const BASE: u32 = 0x3400;
const END: u32 = 0xFAFF;

fn convert_each(cc: &OpenCC, chars: &[char]) -> Vec<Option<char>> {
    let mut joined = String::with_capacity(chars.len() * 4);
    for c in chars {
        joined.push(*c);
        joined.push('\n');
    }
    let out = cc.convert(&joined);
    let lines: Vec<&str> = out.split('\n').collect();
    chars
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let line = lines.get(i)?;
            let mut it = line.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        })
        .collect()
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let chars: Vec<char> = (BASE..=END).filter_map(char::from_u32).collect();
        let mut t2s: Vec<char> = (BASE..=END)
            .map(|u| char::from_u32(u).unwrap_or(' '))
            .collect();
        let mut trad_only = vec![false; t2s.len()];
        if let Ok(cc) = OpenCC::from_config(BuiltinConfig::T2s) {
            let han: Vec<char> = chars.iter().copied().filter(|c| is_han(*c)).collect();
            for (c, conv) in han.iter().zip(convert_each(&cc, &han)) {
                if let Some(s) = conv {
                    if s != *c {
                        let i = (*c as u32 - BASE) as usize;
                        t2s[i] = s;
                        trad_only[i] = true;
                    }
                }
            }
        }
        Tables { t2s, trad_only }
    })
}

/// The simplified form of `c` (itself when it has none or is not Han).
#[inline]
pub fn simplified(c: char) -> char {
    let u = c as u32;
    if (BASE..=END).contains(&u) {
        tables().t2s[(u - BASE) as usize]
    } else {
        c
    }
}

/// Whether `c` is a traditional-only character (its simplified form differs).
#[inline]
pub fn traditional_only(c: char) -> bool {
    let u = c as u32;
    (BASE..=END).contains(&u) && tables().trad_only[(u - BASE) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_common_traditional_characters() {
        let s: String = "這個產品質量還不錯".chars().map(simplified).collect();
        assert_eq!(s, "这个产品质量还不错");
        assert!(traditional_only('這'));
        assert!(!traditional_only('这'));
        assert!(!traditional_only('a'));
        assert_eq!(simplified('a'), 'a');
    }
}
