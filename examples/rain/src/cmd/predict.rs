//! `rain predict`: apply a saved model (and its standardisation) to a CSV
//! file: a probability and a label per row for a binary model, the class
//! probabilities and the class for a softmax model (`rain train
//! --classes`), the outputs for a regression model.
//!
//! The `row` column is the line number in the input file on which the
//! record starts (the header is line 1; blank lines and line breaks inside
//! quoted fields are counted), so a row can be found in an editor.

use super::common::threshold;
use clap::Args as ClapArgs;
use rain::data;
use rain::error::RainError;
use rain::output::Staged;
use std::path::PathBuf;
use tapegrad::nn::Head;
use tapegrad::tensor::ndarray::Array2;

/// The text after the options in `rain predict --help`.
pub const HELP: &str = "\
Output columns (CSV): row, the line of the input file the record starts on; then
  binary model:     probability (of the positive class), label (1 when probability >= threshold)
  softmax model:    p_CLASS for each class, class (the predicted class's short name)
  regression model: y1, y2, ... (the outputs)
A row with a missing feature gets its row number and empty fields.

Examples:
  rain predict --model rain-out/model.json --data new.csv
  rain predict --model rain-out/model.json --data new.csv --out predictions.csv --threshold 0.3";

/// The arguments of `rain predict`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A model file written by `rain train`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// CSV with the model's feature columns.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Output CSV (default: stdout), written whole or not at all.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Threshold for the label of a binary model (default: the one saved
    /// with the model).
    #[arg(long, value_name = "P", allow_hyphen_values = true)]
    pub threshold: Option<f64>,
}

/// Runs `rain predict`.
pub fn run(args: &Args) -> Result<(), RainError> {
    if let Some(out) = &args.out {
        // Writing over an input would destroy it.
        let same = |p: &std::path::Path| match (out.canonicalize(), p.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        for (what, input) in [("--data", &args.data), ("--model", &args.model)] {
            if same(input) {
                return Err(RainError::bad(
                    "--out",
                    out.display(),
                    format!("is the {what} file; the predictions would overwrite it"),
                ));
            }
        }
    }
    let saved = tapegrad::nn::io::load::<f64>(&args.model)?;
    let bad_meta = |key: &str, why: &str| RainError::BadModelMetadata {
        path: args.model.clone(),
        key: key.to_string(),
        reason: why.to_string(),
    };
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
    let head = saved.model.head();
    if head != Head::Binary && args.threshold.is_some() {
        return Err(RainError::bad(
            "--threshold",
            args.threshold.unwrap_or(0.0),
            format!("applies to binary models; this one has a {head} head"),
        ));
    }
    let saved_threshold = match saved.metadata.get("threshold") {
        None => None,
        Some(v) => match v.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => Some(t),
            _ => return Err(bad_meta("threshold", &format!("{v} is not a probability in [0, 1]"))),
        },
    };
    let threshold = threshold(args.threshold.or(saved_threshold).unwrap_or(0.5))?;
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
    let outputs = saved.model.predict(x.view())?;
    let n_out = outputs.nrows();
    // Class names and the logit adjustment saved by `rain train --classes`.
    let classes = saved.metadata.get("classes");
    if classes.is_some_and(|c| !c.is_object()) {
        return Err(bad_meta("classes", "must be an object"));
    }
    let list = |key: &str| -> Option<Vec<serde_json::Value>> { classes?.get(key)?.as_array().cloned() };
    // Absent: plain names and argmax; present but malformed: an error.
    let present = |key: &str| classes.and_then(|c| c.get(key)).is_some();
    let short: Vec<String> = match list("short_names") {
        // Names go into the CSV header and rows as they are: no separators.
        Some(v)
            if v.len() == n_out
                && v.iter().all(|s| {
                    s.as_str().is_some_and(|s| !s.is_empty() && !s.contains([',', '"', '\n', '\r']))
                }) =>
        {
            v.iter().map(|s| s.as_str().unwrap_or_default().to_string()).collect()
        }
        None if !present("short_names") => (0..n_out).map(|k| format!("class{k}")).collect(),
        _ => {
            return Err(bad_meta(
                "classes.short_names",
                &format!("must be {n_out} names, one per output, without commas, quotes or line breaks"),
            ))
        }
    };
    let log_prior: Vec<f64> = match list("log_prior") {
        Some(v) if v.len() == n_out && v.iter().all(|p| p.as_f64().is_some_and(f64::is_finite)) => {
            v.iter().map(|p| p.as_f64().unwrap_or_default()).collect()
        }
        None if !present("log_prior") => vec![0.0; n_out],
        _ => return Err(bad_meta("classes.log_prior", &format!("must be {n_out} finite numbers"))),
    };
    let tau = match classes.and_then(|c| c.get("tau")) {
        None => 0.0,
        Some(t) => t
            .as_f64()
            .filter(|t| t.is_finite())
            .ok_or_else(|| bad_meta("classes.tau", "must be a finite number"))?,
    };
    let mut out = match head {
        Head::Binary => String::from("row,probability,label\n"),
        Head::Softmax => {
            format!("row,{},class\n", short.iter().map(|s| format!("p_{s}")).collect::<Vec<_>>().join(","))
        }
        Head::Regression => {
            format!("row,{}\n", (1..=n_out).map(|k| format!("y{k}")).collect::<Vec<_>>().join(","))
        }
    };
    let blanks = match head {
        Head::Binary => 2,
        Head::Softmax => n_out + 1,
        Head::Regression => n_out,
    };
    let mut k = 0;
    for r in 0..rows.len() {
        let line = table.line(r);
        if complete.get(k) != Some(&r) {
            out += &format!("{}{}\n", line, ",".repeat(blanks));
            continue;
        }
        let col = outputs.column(k);
        match head {
            Head::Binary => out += &format!("{},{},{}\n", line, col[0], u8::from(col[0] >= threshold)),
            Head::Softmax => {
                // argmax_k ln p_k - tau ln prior_k, the rule rain train
                // chose (plain argmax for tau 0), the first of equals.
                let score = |c: usize| col[c].ln() - tau * log_prior[c];
                let class = (1..n_out).fold(0, |best, c| if score(c) > score(best) { c } else { best });
                let ps: Vec<String> = col.iter().map(|p| p.to_string()).collect();
                out += &format!("{},{},{}\n", line, ps.join(","), short[class]);
            }
            Head::Regression => {
                let ys: Vec<String> = col.iter().map(|y| y.to_string()).collect();
                out += &format!("{},{}\n", line, ys.join(","));
            }
        }
        k += 1;
    }
    match &args.out {
        Some(path) => {
            let staged = Staged::file(path)?;
            staged.write("", out.as_bytes())?;
            staged.commit()?;
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
