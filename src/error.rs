//! The core's error type. Transport layers map it to their own codes in one place each
//! (`server::status` for gRPC, `anyhow` at the CLI edge).

use std::path::PathBuf;

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the classifier core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is not acceptable (empty text, text too long, bad parameter).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A model bundle could not be loaded or verified.
    #[error("bundle {path}: {reason}")]
    Bundle {
        /// The bundle directory or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A rules file is invalid.
    #[error("{file}:{line}: {reason}")]
    Rules {
        /// The rules file.
        file: String,
        /// 1-based line of the offending rule or syntax error.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Labelled data could not be read.
    #[error("{file}:{line}: {reason}")]
    Data {
        /// The data file.
        file: String,
        /// 1-based line (or record) number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Training failed or its parameters are invalid.
    #[error("training: {0}")]
    Training(String),
    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A bundle error.
    pub fn bundle(path: impl Into<PathBuf>, reason: impl Into<String>) -> Error {
        Error::Bundle {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
