//! The rain task's data loading, shared by the `rain` binary and the
//! benchmark: the weather CSV in the guide's layout (features as rows,
//! examples as columns) with every cleaning step counted.

#![warn(missing_docs)]

pub mod data;
pub mod error;
pub mod output;

pub use error::RainError;

/// The weather data shipped with the example, built into the binary (so
/// that it runs wherever it is copied): reading this path reads the built-in
/// copy of `examples/rain/data/nyc-weather-2013.csv`.
///
/// ```
/// let spec = rain::task_spec(rain::default_data());
/// let ds = rain::data::load(&spec).unwrap();
/// assert_eq!(ds.train_x.nrows(), 3);
/// assert_eq!(rain::default_data().display().to_string(), "<shipped>/nyc-weather-2013.csv");
/// ```
pub fn default_data() -> std::path::PathBuf {
    std::path::PathBuf::from("<shipped>/nyc-weather-2013.csv")
}

/// The rain task as WORKLOADS.md defines it: features temp, humid,
/// pressure; label precip > 0; rows with a missing value dropped; train
/// months 1-10, test months 11-12.
pub fn task_spec(path: std::path::PathBuf) -> data::Spec {
    data::Spec {
        path,
        features: vec!["temp".into(), "humid".into(), "pressure".into()],
        label: "precip".into(),
        target: data::Target::Binary(data::PositiveRule::Gt(0.0)),
        split: data::Split::Range { column: "month".into(), lo: 1.0, hi: 10.0, test: None },
        missing: data::Missing::Drop,
    }
}

/// Lets a closed pipe on standard output (`rain check | head -3`) end the
/// program quietly, as it ends other Unix tools. Rust's runtime ignores
/// SIGPIPE, so writing to a closed pipe returns an error, which `println!`
/// turns into a panic; with the signal's default action the process ends
/// without a word. Call it first thing in `main`, before other threads
/// start. Files are written whole or not at all either way (they are
/// renamed into place once complete).
///
/// ```
/// rain::end_quietly_on_closed_pipe();
/// println!("still printing");
/// ```
pub fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: sets the disposition of one signal to its default, before
    // the program starts other threads; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
