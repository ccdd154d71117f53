//! Text handling: normalisation with a map back to the original text, language detection and
//! tokenisation into features.
//!
//! Owns everything that turns a raw statement into comparable units. It knows nothing about
//! labels, models or rules.

mod convert;
mod lang;
pub mod normalize;
mod tokenize;

pub use convert::{is_han, simplified, traditional_only};
pub use lang::detect_language;
pub use normalize::{normalize, Normalized};
pub use tokenize::{
    parse_token_name, token_hash, token_name, token_text, tokenize, Token, TokenKind, Tokenizer,
};
