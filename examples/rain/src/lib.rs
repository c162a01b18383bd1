//! The rain task's data loading, shared by the `rain` binary and the
//! benchmark: the weather CSV in the guide's layout (features as rows,
//! examples as columns) with every cleaning step counted.

#![warn(missing_docs)]

pub mod data;
pub mod error;

pub use error::RainError;

/// The weather data shipped with the example.
pub fn default_data() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data").join("nyc-weather-2013.csv")
}

/// The rain task as WORKLOADS.md defines it: features temp, humid,
/// pressure; label precip > 0; rows with a missing value dropped; train
/// months 1-10, test months 11-12.
pub fn task_spec(path: std::path::PathBuf) -> data::Spec {
    data::Spec {
        path,
        features: vec!["temp".into(), "humid".into(), "pressure".into()],
        label: "precip".into(),
        positive: data::PositiveRule::Gt(0.0),
        split: data::Split::Range { column: "month".into(), lo: 1.0, hi: 10.0 },
        missing: data::Missing::Drop,
    }
}
