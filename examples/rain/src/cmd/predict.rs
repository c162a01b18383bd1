//! `rain predict`: apply a saved model (and its standardisation) to a CSV
//! file.

use super::common::{threshold, write_file};
use clap::Args as ClapArgs;
use rain::data;
use rain::error::RainError;
use std::path::PathBuf;
use tapegrad::tensor::ndarray::Array2;

/// The arguments of `rain predict`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A model file written by `rain train`.
    #[arg(long)]
    pub model: PathBuf,
    /// CSV with the model's feature columns.
    #[arg(long)]
    pub data: PathBuf,
    /// Output CSV (default: stdout).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Threshold for the label (default: the one saved with the model).
    #[arg(long)]
    pub threshold: Option<f64>,
}

/// Runs `rain predict`.
pub fn run(args: &Args) -> Result<(), RainError> {
    let saved = tapegrad::nn::io::load::<f64>(&args.model)?;
    let arch = saved.model.architecture().clone();
    let std = saved.standardization.as_ref();
    let features: Vec<String> = match std {
        Some(s) => s.features.clone(),
        None => (0..arch.input).map(|i| format!("x{}", i + 1)).collect(),
    };
    let table = data::Table::read(&args.data)?;
    // A model/data mismatch is one clear error naming what is missing.
    let missing: Vec<String> = features.iter().filter(|f| !table.header.contains(f)).cloned().collect();
    if !missing.is_empty() {
        return Err(RainError::FeatureCount {
            expected: arch.input,
            found: features.len() - missing.len(),
            names: features.join(", "),
            missing: missing.join(", "),
        });
    }
    let rows = table.features(&features)?;
    let threshold = threshold(match args.threshold {
        Some(t) => t,
        None => saved.metadata.get("threshold").and_then(|v| v.as_f64()).unwrap_or(0.5),
    })?;
    let complete: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].iter().all(|v| v.is_some())).collect();
    let mut x = Array2::zeros((features.len(), complete.len()));
    for (j, &r) in complete.iter().enumerate() {
        for k in 0..features.len() {
            x[[k, j]] = rows[r][k].expect("complete row");
        }
    }
    let x = match std {
        Some(s) => s.apply(x.view())?,
        None => x,
    };
    let p = saved.model.predict_proba(x.view())?;
    let mut out = String::from("row,probability,label\n");
    let mut k = 0;
    for r in 0..rows.len() {
        if complete.get(k) == Some(&r) {
            out += &format!("{},{},{}\n", r + 2, p[k], u8::from(p[k] >= threshold));
            k += 1;
        } else {
            out += &format!("{},,\n", r + 2);
        }
    }
    match &args.out {
        Some(path) => {
            write_file(path, out.as_bytes())?;
            eprintln!(
                "wrote {} predictions to {} ({} rows with a missing feature left blank)",
                complete.len(),
                path.display(),
                rows.len() - complete.len()
            );
        }
        None => print!("{out}"),
    }
    Ok(())
}
