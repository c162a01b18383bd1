//! The typed errors of the nn crate: everything that depends on outside
//! input (hyper-parameters, data, model files) is reported here, never by a
//! panic.

use crate::formula::FormulaError;
use std::path::PathBuf;

/// An error from building, training, saving or loading a model.
///
/// ```
/// use tapegrad_nn::NnError;
/// let e = NnError::InvalidHyperParameter { name: "learning rate", value: "-1".into(), reason: "must be a positive finite number".into() };
/// assert_eq!(e.to_string(), "invalid learning rate -1: must be a positive finite number");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A hyper-parameter outside its domain.
    #[error("invalid {name} {value}: {reason}")]
    InvalidHyperParameter {
        /// Which hyper-parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What it must be.
        reason: String,
    },
    /// An activation that is neither a built-in name nor a valid formula.
    #[error("{0}")]
    Activation(#[from] FormulaError),
    /// Data whose shape does not fit the model or the labels.
    #[error("data shape: {0}")]
    DataShape(String),
    /// A label that the model's head cannot train on (see
    /// [`crate::Head::targets`]).
    #[error("bad label in column {example}, row {row}: {value}; {reason}")]
    Labels {
        /// The example (column, 0-based).
        example: usize,
        /// The row (0-based; 0 for class indices).
        row: usize,
        /// The value found.
        value: f64,
        /// What a label must be.
        reason: String,
    },
    /// An operation that the model's head does not support (such as one
    /// probability per example from a softmax head).
    #[error("{op} needs a {needs} head; this model has a {found} head{hint}")]
    WrongHead {
        /// The operation.
        op: &'static str,
        /// The head it needs.
        needs: &'static str,
        /// The model's head.
        found: crate::Head,
        /// What to use instead (empty or starting with "; ").
        hint: &'static str,
    },
    /// The cost became NaN or infinite during training.
    #[error("{}", non_finite(*cost, *iteration, *epoch, *learning_rate, trace.as_deref()))]
    NonFinite {
        /// The 1-based iteration (update) at which it happened.
        iteration: usize,
        /// The 1-based epoch.
        epoch: usize,
        /// The cost value (NaN or infinite).
        cost: f64,
        /// The learning rate in force.
        learning_rate: f64,
        /// With tracing on, the first op that produced a NaN or infinity.
        trace: Option<String>,
    },
    /// A model file that cannot be read or written.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file that is not valid JSON (truncated or corrupt).
    #[error("model file {path} is corrupt or truncated: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        detail: String,
    },
    /// A JSON file that is not a tapegrad model.
    #[error("{path} is not a tapegrad model file (format field {found:?})")]
    WrongFormat {
        /// The file.
        path: PathBuf,
        /// What the format field held.
        found: String,
    },
    /// A model file from another format version.
    #[error("model file {path} has format version {found}; this build reads versions 1 to {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The file's version field as written (`none` when it has none).
        found: String,
        /// The newest version this build reads (it reads every version
        /// from 1).
        supported: u32,
    },
    /// A model file whose parts disagree (a parameter's shape and the
    /// architecture, a missing parameter, standardisation of the wrong size).
    #[error("model file {path} is inconsistent: {detail}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// What disagrees.
        detail: String,
    },
    /// A numpy `.npz` file that cannot be used: unreadable, corrupt, an
    /// array of the wrong dtype or rank, a missing or unexpected array, or
    /// arrays whose shapes do not fit together.
    #[error("{}{detail}", if path.as_os_str().is_empty() { String::new() } else { format!("{}: ", path.display()) })]
    Npz {
        /// The file (empty for arrays given in memory, or data given apart).
        path: PathBuf,
        /// What is wrong, naming the array.
        detail: String,
    },
    /// A model that cannot be saved (a closure activation).
    #[error("cannot save the model: {0}")]
    Unsaveable(String),
}

/// The message of [`NnError::NonFinite`]: what happened, the first op that
/// produced a non-finite value when known, and the likely cause. Before the
/// first update the learning rate cannot be the cause.
fn non_finite(cost: f64, iteration: usize, epoch: usize, learning_rate: f64, trace: Option<&str>) -> String {
    let what = format!("the cost became {cost} at iteration {iteration} (epoch {epoch}); training stopped");
    let first = trace.map(|t| format!("; the first non-finite value: {t}")).unwrap_or_default();
    let cause = if iteration == 1 {
        "; this is before any update, so not the learning rate: a function is applied outside its domain \
         (such as log or sqrt of a negative number) or overflows on this data"
            .to_string()
    } else if trace.is_some() {
        format!(
            "; if that function's input is outside its domain (such as log or sqrt of a negative number), \
             change it; if values grew until they overflowed, try a smaller learning rate (it was {learning_rate})"
        )
    } else {
        format!("; try a smaller learning rate (it was {learning_rate})")
    };
    format!("{what}{first}{cause}")
}
