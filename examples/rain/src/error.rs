//! The CLI's errors: each is one line for the user, exit status 2 (1 for a
//! failed gradient check, see [`RainError::exit_code`]).

use std::path::PathBuf;
use tapegrad::nn::NnError;

/// Everything that can go wrong with outside input.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // each variant's message is its documentation
pub enum RainError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: PathBuf, offset: usize },
    #[error("{path} is not valid CSV: {detail}")]
    NotCsv { path: PathBuf, detail: String },
    #[error("{path} has no column '{column}' (available: {available})")]
    MissingColumn { path: PathBuf, column: String, available: String },
    #[error("{path}, line {row}, column '{column}': '{value}' is not a number")]
    NonNumeric { path: PathBuf, row: usize, column: String, value: String },
    #[error("{path}: the header names column '{column}' twice (columns {first} and {second}); rename one")]
    DuplicateColumn { path: PathBuf, column: String, first: usize, second: usize },
    #[error("the label '{label}' is also feature {position} of {count} in --features: the model would read the answer from its input; remove it from --features")]
    LabelIsFeature { label: String, position: usize, count: usize },
    #[error("--features names '{feature}' twice (features {first} and {second}); list each column once")]
    DuplicateFeature { feature: String, first: usize, second: usize },
    #[error("no {which} rows left after cleaning {path} ({why})")]
    NoRows { path: PathBuf, which: &'static str, why: String },
    #[error(
        "the training labels are all {class}: a classifier needs both classes (check --label and --positive)"
    )]
    OneClass { class: &'static str },
    #[error("no training rows in class '{class}' (--classes {classes}; training rows per class: {counts}); every class needs training rows")]
    EmptyClass { class: String, classes: String, counts: String },
    #[error("invalid {what} '{value}': {reason}")]
    BadArgument { what: &'static str, value: String, reason: String },
    #[error(
        "the model expects {expected} features ({names}), the data has {found} of them (missing: {missing})"
    )]
    FeatureCount { expected: usize, found: usize, names: String, missing: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Nn(#[from] NnError),
    #[error("{path}: metadata '{key}' {reason}")]
    BadModelMetadata { path: PathBuf, key: String, reason: String },
    #[error("gradients disagree {when}: {detail} (exit status 1)")]
    GradientsDisagree { when: &'static str, detail: String },
}

impl RainError {
    /// The process's exit status for this error: 1 when a check ran and
    /// failed (the input was fine), 2 for bad input.
    ///
    /// ```
    /// let e = rain::RainError::GradientsDisagree { when: "before training", detail: "W1".into() };
    /// assert_eq!(e.exit_code(), 1);
    /// assert_eq!(rain::RainError::bad("--lr", -1, "must be positive").exit_code(), 2);
    /// ```
    pub fn exit_code(&self) -> u8 {
        match self {
            RainError::GradientsDisagree { .. } => 1,
            _ => 2,
        }
    }

    /// A bad command-line value.
    pub fn bad(what: &'static str, value: impl ToString, reason: impl ToString) -> Self {
        RainError::BadArgument { what, value: value.to_string(), reason: reason.to_string() }
    }
}
