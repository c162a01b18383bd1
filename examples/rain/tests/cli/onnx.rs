//! `rain export --onnx` checked by an independent runtime: tract, an ONNX
//! runtime written in Rust, runs each exported file on the raw test-split
//! rows, and its probabilities must equal `rain predict`'s.

use super::{rain, scratch, slice, text};
use std::path::Path;
use tract_onnx::prelude::*;

/// The rows of `data` in the test split (months 11 and 12, the default
/// `--split month:1-10` leaves out).
fn test_split(data: &Path, out: &Path) {
    let csv = std::fs::read_to_string(data).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let month = header.split(',').position(|c| c == "month").unwrap();
    let mut text = format!("{header}\n");
    for l in lines.filter(|l| l.split(',').nth(month).is_some_and(|m| m == "11" || m == "12")) {
        text += l;
        text.push('\n');
    }
    std::fs::write(out, text).unwrap();
}

/// Raw features (temp, humid, pressure) of the rows `rain predict` gave
/// probabilities for, and those probabilities (one column per output).
fn rows_and_predictions(data: &Path, preds: &Path) -> (Vec<[f64; 3]>, Vec<Vec<f64>>) {
    let mut d = csv::Reader::from_path(data).unwrap();
    let head = d.headers().unwrap().clone();
    let col = |name: &str| head.iter().position(|c| c == name).unwrap();
    let (t, h, p) = (col("temp"), col("humid"), col("pressure"));
    let rows: Vec<csv::StringRecord> = d.records().map(Result::unwrap).collect();
    let mut q = csv::Reader::from_path(preds).unwrap();
    let qhead = q.headers().unwrap().clone();
    let prob_cols: Vec<usize> = qhead
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == "probability" || c.starts_with("p_"))
        .map(|(i, _)| i)
        .collect();
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for (r, pr) in rows.iter().zip(q.records().map(Result::unwrap)) {
        if pr[prob_cols[0]].is_empty() {
            continue; // a row with a missing feature
        }
        x.push([t, h, p].map(|i| r[i].parse::<f64>().unwrap()));
        y.push(prob_cols.iter().map(|&i| pr[i].parse::<f64>().unwrap()).collect());
    }
    (x, y)
}

/// tract's outputs for `x`, one row per example.
fn run_tract(onnx: &Path, x: &[[f64; 3]], f32_model: bool) -> Vec<Vec<f64>> {
    let n = x.len();
    let flat: Vec<f64> = x.iter().flatten().copied().collect();
    let (fact, input): (InferenceFact, Tensor) = if f32_model {
        let a =
            tract_ndarray::Array2::from_shape_vec((n, 3), flat.iter().map(|&v| v as f32).collect()).unwrap();
        (f32::fact([n, 3]).into(), a.into())
    } else {
        let a = tract_ndarray::Array2::from_shape_vec((n, 3), flat).unwrap();
        (f64::fact([n, 3]).into(), a.into())
    };
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .unwrap()
        .with_input_fact(0, fact)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let out = model.run(tvec!(input.into())).unwrap();
    let out = out[0].cast_to::<f64>().unwrap();
    let view = out.to_array_view::<f64>().unwrap();
    assert_eq!(view.shape()[0], n);
    view.outer_iter().map(|r| r.iter().copied().collect()).collect()
}

#[test]
fn tract_runs_the_exported_model_as_rain_predict_does() {
    let dir = scratch("onnx");
    let data = slice(&dir);
    let test = dir.join("test.csv");
    test_split(&data, &test);
    for (activation, dtype, extra) in [
        ("relu", "f32", &[][..]),
        ("tanh", "f64", &[][..]),
        ("x * tanh(softplus(x))", "f32", &[][..]),
        ("x * tanh(softplus(x))", "f64", &[][..]),
        // Erf, and the softmax head over three classes.
        ("gelu", "f64", &["--classes"][..]),
        ("where(x > 0, x, 0.1 * expm1(x))", "f32", &["--layers", "6,4"][..]),
    ] {
        let case = format!("{activation} {dtype} {extra:?}");
        let out = dir.join("run");
        let o = rain()
            .args(["--data", data.to_str().unwrap(), "--epochs", "2", "--quiet", "--no-check"])
            .args(["--activation", activation, "--dtype", dtype])
            .args(extra)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{case}: {}", text(&o).1);
        let onnx = dir.join("m.onnx");
        let o = rain()
            .arg("export")
            .arg("--model")
            .arg(out.join("model.json"))
            .arg("--onnx")
            .arg(&onnx)
            .output()
            .unwrap();
        assert!(o.status.success(), "{case}: {}", text(&o).1);
        let preds = dir.join("preds.csv");
        let o = rain()
            .arg("predict")
            .arg("--model")
            .arg(out.join("model.json"))
            .arg("--data")
            .arg(&test)
            .arg("--out")
            .arg(&preds)
            .output()
            .unwrap();
        assert!(o.status.success(), "{case}: {}", text(&o).1);
        let (x, want) = rows_and_predictions(&test, &preds);
        assert!(x.len() > 300, "{case}: {} test rows", x.len());
        let got = run_tract(&onnx, &x, dtype == "f32");
        let mut worst = 0.0f64;
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.len(), w.len(), "{case}: outputs");
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((a - b).abs());
            }
        }
        // rain predict prints probabilities with enough digits to round
        // trip; float32 rounding of the two runtimes' different operation
        // orders stays near 1e-6.
        assert!(worst <= 1e-5, "{case}: max |tract - rain| = {worst:e}");
        eprintln!("{case}: {} rows, max |tract - rain| = {worst:.3e}", x.len());
    }
}

#[test]
fn bad_export_arguments_are_one_line_and_write_nothing() {
    let dir = scratch("onnx-bad");
    let data = slice(&dir);
    let out = dir.join("run");
    let o = rain()
        .args(["--data", data.to_str().unwrap(), "--epochs", "1", "--quiet", "--no-check", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let model = out.join("model.json");
    let m = model.to_str().unwrap().to_string();
    let missing = dir.join("no-such-folder/m.onnx").to_str().unwrap().to_string();
    let same = dir.join("m.bin").to_str().unwrap().to_string();
    let ok_st = dir.join("ok.safetensors").to_str().unwrap().to_string();
    let none = dir.join("none.json").to_str().unwrap().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--model", &m], "the following required arguments were not provided"),
        (vec!["--model", &m, "--onnx", &missing], "--onnx"),
        (vec!["--model", &m, "--onnx", &missing, "--safetensors", &ok_st], "its folder does not exist"),
        (vec!["--model", &m, "--onnx", &m], "is the --model file"),
        (vec!["--model", &m, "--onnx", &same, "--safetensors", &same], "is also the --safetensors file"),
        (vec!["--model", &none, "--onnx", &same], "none.json"),
    ];
    for (args, expected) in cases {
        let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        let o = rain().arg("export").args(&args).output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: expected '{expected}' in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        let after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "{args:?} wrote files");
    }
}
