//! The one error type of wembed. Every message says what went wrong, where, and what to do.

use std::fmt;

/// Everything that can go wrong in wembed. No path a user input can reach panics: it ends here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file is missing or unreadable.
    #[error("cannot read {file}: {reason}")]
    Io { file: String, reason: String },

    /// A model file is present but its content is wrong (malformed JSON, bad safetensors header…).
    #[error("{file} is not valid: {reason}")]
    BadFile { file: String, reason: String },

    /// A weight is missing, has the wrong shape or a dtype we cannot read.
    #[error("weight `{name}`: {reason}")]
    Weight { name: String, reason: String },

    /// The model declares something wembed does not implement.
    #[error("unsupported model: {0}")]
    Unsupported(String),

    /// The caller passed something unusable.
    #[error("invalid input: {0}")]
    Input(String),

    /// The tokenizer failed on a text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A compute backend failed (device lost, out of memory…).
    #[error("backend: {0}")]
    Backend(String),
}

impl Error {
    /// A stable code for programs to branch on (the JavaScript API exposes it as `error.code`).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "IO",
            Error::BadFile { .. } => "BAD_FILE",
            Error::Weight { .. } => "BAD_WEIGHTS",
            Error::Unsupported(_) => "UNSUPPORTED",
            Error::Input(_) => "INPUT",
            Error::Tokenizer(_) => "TOKENIZER",
            Error::Backend(_) => "BACKEND",
        }
    }

    pub(crate) fn io(file: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::Io { file: file.to_string(), reason: err.to_string() }
    }
    pub(crate) fn bad_file(file: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Error::BadFile { file: file.to_string(), reason: reason.to_string() }
    }
    pub(crate) fn weight(name: impl fmt::Display, reason: impl fmt::Display) -> Self {
        Error::Weight { name: name.to_string(), reason: reason.to_string() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
