//! The `rain` binary end to end on a small slice of the shipped data: the
//! happy path of each subcommand. The bad-input cases are in
//! `bad_input.rs`, the interrupts in `interrupts.rs`.

mod bad_input;
mod gradients;
mod interrupts;
mod onnx;
mod plots;
mod report;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rain() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rain"))
}

/// `rain predict` with the model a run wrote to `out`, on `data`.
fn predict(out: &Path, data: &Path) -> Command {
    let mut c = rain();
    c.arg("predict").arg("--model").arg(out.join("model.json")).arg("--data").arg(data);
    c
}

/// A scratch folder per test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rain-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every 8th row of the shipped data: ~3,300 rows, all months, both classes.
fn slice(dir: &Path) -> PathBuf {
    let full =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/nyc-weather-2013.csv")).unwrap();
    let mut lines = full.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for l in lines.step_by(8) {
        out += l;
        out.push('\n');
    }
    let p = dir.join("slice.csv");
    std::fs::write(&p, out).unwrap();
    p
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The sum of a confusion matrix's counts (rows of a JSON array).
fn confusion_total(counts: &serde_json::Value) -> u64 {
    counts.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum()
}

/// Runs `c`, which must succeed, and reads the JSON file it wrote.
fn json_written(c: &mut Command, file: &Path) -> serde_json::Value {
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn quick(data: &Path) -> Vec<String> {
    ["--data", data.to_str().unwrap(), "--epochs", "2", "--quiet"].iter().map(|s| s.to_string()).collect()
}

#[test]
fn train_writes_model_metrics_and_plots() {
    let (out, _, stdout) = train_on_the_slice("train", &[]);
    for needle in [
        "rows read",
        "dropped",
        "not random",
        "gradient check before training",
        "layer 1:",
        "logistic regression",
        "always no rain",
        "ROC-AUC",
    ] {
        assert!(stdout.contains(needle), "missing '{needle}' in:\n{stdout}");
    }
    for f in ["model.json", "metrics.json", "cost.svg", "roc.svg", "pr.svg"] {
        let p = out.join(f);
        assert!(p.exists() && std::fs::metadata(&p).unwrap().len() > 100, "{f}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(m["test"]["model"]["roc_auc"].as_f64().unwrap() > 0.8);
    assert_eq!(m["gradient_check"]["before"]["passed"], true);
    assert_eq!(m["gradient_check"]["after"]["passed"], true);
    assert!(std::fs::read_to_string(out.join("roc.svg")).unwrap().starts_with("<svg"));
    // No temporary files beside the output.
    let parent: Vec<_> =
        std::fs::read_dir(out.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(parent.iter().all(|n| !n.to_string_lossy().starts_with('.')), "{parent:?}");
}

#[test]
fn bare_rain_trains_and_json_goes_to_stdout() {
    let d = scratch("json");
    let data = slice(&d);
    let o = rain()
        .args(["--data", data.to_str().unwrap(), "--epochs", "1", "--json", "--dtype", "f32", "--out"])
        .arg(d.join("o"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("stdout is one JSON document");
    assert_eq!(v["config"]["dtype"], "f32");
}

#[test]
fn guide_faithful_full_batch_gradient_descent_runs() {
    let d = scratch("guide");
    let data = slice(&d);
    let o = rain()
        .args([
            "--data",
            data.to_str().unwrap(),
            "--layers",
            "20,7,5",
            "--optimizer",
            "gd",
            "--lr",
            "0.1",
            "--batch-size",
            "full",
        ])
        .args([
            "--iterations",
            "20",
            "--init",
            "guide",
            "--l2",
            "0",
            "--dropout",
            "0",
            "--schedule",
            "constant",
            "--json",
            "--out",
        ])
        .arg(d.join("o"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["config"]["iterations"], 20);
}

#[test]
fn predict_applies_the_saved_standardisation() {
    let d = scratch("predict");
    let data = slice(&d);
    let out = d.join("out");
    assert!(rain().args(quick(&data)).arg("--out").arg(&out).status().unwrap().success());
    let preds = d.join("preds.csv");
    let o = predict(&out, &data).arg("--out").arg(&preds).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let csv = std::fs::read_to_string(&preds).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("row,probability,label"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), std::fs::read_to_string(&data).unwrap().lines().count() - 1);
    let p: f64 = rows[0].split(',').nth(1).unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn check_prints_the_gradient_table() {
    let d = scratch("check");
    let data = slice(&d);
    for act in ["relu", "x * sigmoid(x)"] {
        let o = rain()
            .args(["check", "--data", data.to_str().unwrap(), "--activation", act, "--layers", "5,3"])
            .output()
            .unwrap();
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{stderr}");
        assert!(stdout.contains("autodiff vs finite differences"), "{stdout}");
        assert!(stdout.contains("gradients agree"), "{stdout}");
    }
}

#[test]
fn activation_plots_value_and_two_derivatives() {
    let d = scratch("activation");
    let o = rain()
        .args(["activation", "x * tanh(softplus(x))", "--range", "-3:3", "--out"])
        .arg(d.join("o"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("f''(x)"));
    let svg = std::fs::read_to_string(d.join("o").join("activation.svg")).unwrap();
    assert!(svg.contains("grad of grad"));
}

/// `rain ... | head`: once the reader has gone, rain ends quietly (killed
/// by SIGPIPE, as other Unix tools are) instead of panicking in println!.
#[cfg(unix)]
#[test]
fn a_closed_stdout_pipe_ends_rain_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let d = scratch("pipe");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader); // closed before rain writes a byte
    let o = rain()
        .args(["activation", "tanh(x)", "--range", "-3:3", "--out"])
        .arg(d.join("o"))
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", o.status);
}

#[test]
fn activation_compares_several_on_one_chart() {
    let d = scratch("activations");
    let names = [
        "gelu",
        "gelu_tanh",
        "selu",
        "hardswish",
        "snake:0.5",
        "squareplus",
        "log_sigmoid",
        "x * sigmoid(x)",
    ];
    let o = rain()
        .arg("activation")
        .args(names)
        .args(["--range", "-5:5", "--out"])
        .arg(d.join("o"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let svg = std::fs::read_to_string(d.join("o").join("activation.svg")).unwrap();
    for name in names {
        // Each is tabulated and named in the legend, with its derivative.
        assert!(stdout.contains(&format!("{name}:")), "{name} not tabulated:\n{stdout}");
        assert!(svg.contains(&format!(">\n{name}\n<")), "{name} not in the legend");
        assert!(svg.contains(&format!(">\n{name}&apos;\n<")), "{name}' not in the legend");
    }
    // And every built-in can be plotted by name.
    for name in tapegrad::nn::BUILTIN_NAMES {
        let o = rain().args(["activation", name, "--out"]).arg(d.join(name)).output().unwrap();
        assert!(o.status.success(), "{name}: {}", text(&o).1);
    }
}

#[test]
fn train_with_classes_reports_the_confusion_matrix_and_baselines() {
    let (out, data, stdout) = train_on_the_slice("classes", &["--classes"]);
    for needle in [
        "no rain (<= 0)",
        "light (0, 0.02]",
        "heavy (> 0.02)",
        "softmax output",
        "macro-F1",
        "logistic regression",
        "always no rain",
        "confusion matrix of this model",
        "precision / recall / F1",
        "autodiff vs guide",
        "gradients agree",
    ] {
        assert!(stdout.contains(needle), "missing '{needle}' in:\n{stdout}");
    }
    for f in ["model.json", "metrics.json", "cost.svg"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["gradient_check"]["after"]["passed"], true);
    let counts = &m["test"]["model"]["confusion"]["counts"];
    assert_eq!(counts.as_array().unwrap().len(), 3);
    let total = confusion_total(counts);
    assert_eq!(total, m["data"]["report"]["test_rows"].as_u64().unwrap());
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(model["architecture"]["head"], "softmax");
    // The saved model predicts a class per row.
    let o = predict(&out, &data).output().unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert_eq!(stdout.lines().next(), Some("row,p_none,p_light,p_heavy,class"));
    let row = stdout.lines().skip(1).find(|l| !l.ends_with(",,,,")).unwrap();
    assert!(row.ends_with(",none") || row.ends_with(",light") || row.ends_with(",heavy"), "{row}");
}

/// `rain train` for 20 epochs on the data slice in a scratch folder named
/// `name`, with `extra` arguments; it must succeed. Returns the output
/// folder, the data slice and standard output.
fn train_on_the_slice(name: &str, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let d = scratch(name);
    let data = slice(&d);
    let out = d.join("out");
    let o = rain()
        .arg("train")
        .args(extra)
        .args(["--data", data.to_str().unwrap(), "--epochs", "20", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    (out, data, stdout)
}

#[test]
fn early_stopping_shows_in_the_console_metrics_and_plot() {
    // Issue 21, defect 11.
    let (out, _, stdout) = train_on_the_slice("early", &["--early-stopping", "2"]);
    assert!(stdout.contains("early stopping: "), "{stdout}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let es = &m["training"]["early_stopping"];
    assert!(es["stopped_early"].is_boolean() && es["best_epoch"].as_u64().unwrap() >= 1, "{es}");
    assert!(es["best_validation_cost"].as_f64().unwrap() > 0.0, "{es}");
    let epochs = m["training"]["epochs"].as_u64().unwrap();
    assert_eq!(es["validation_costs"].as_array().unwrap().len() as u64, epochs);
    let stopped = es["stopped_early"].as_bool().unwrap();
    assert_eq!(stopped, epochs < 20, "{es}");
    let svg = std::fs::read_to_string(out.join("cost.svg")).unwrap();
    assert!(svg.contains("validation, per epoch") && svg.contains("kept: epoch"), "no validation curve");
}

#[test]
fn metrics_json_follows_its_schema() {
    // Issue 21, defect 11: no Rust Debug strings or field names, labelled
    // pairs, and the run's real length.
    let d = scratch("schema");
    let data = slice(&d);
    let out = d.join("out");
    let o = rain()
        .args(["--data", data.to_str().unwrap(), "--iterations", "70", "--quiet", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let raw = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    for debug in ["Size(", "Some(", "fn_", "Binary(", "Range {"] {
        assert!(!raw.contains(debug), "'{debug}' in metrics.json");
    }
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["schema"], "rain-metrics/1");
    assert_eq!(m["config"]["batch_size"], 64);
    assert_eq!(m["config"]["iterations"], 70);
    assert!(m["config"]["epochs"].is_null(), "epochs recorded for an iteration-bound run");
    assert_eq!(m["training"]["updates"], 70);
    assert_eq!(m["training"]["epochs"], 2); // 41 batches an epoch
    let best = &m["test"]["model"]["best_f1"];
    assert!(best["threshold"].is_f64() && best["f1"].is_f64(), "{best}");
    assert!(m["test"]["model"]["confusion"]["fn"].is_u64());
    // Every key the schema document lists is present.
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics-json.md")).unwrap();
    for line in doc.lines().filter_map(|l| l.strip_prefix("| `")) {
        let pointer = line.split('`').next().unwrap();
        assert!(m.pointer(pointer).is_some(), "{pointer} (in docs/metrics-json.md) is not in metrics.json");
    }
}

#[test]
fn the_cosine_schedule_ends_with_the_iterations() {
    // Issue 21, defect 6: with --iterations the schedule ran over the 30
    // default epochs (one full batch each), so every update after the 30th
    // had rate 0 and 300 or 600 iterations gave the same model.
    let d = scratch("schedule");
    let data = slice(&d);
    let model = |n: &str| -> serde_json::Value {
        let out = d.join(format!("out-{n}"));
        let c = &mut rain();
        c.args(["--data", data.to_str().unwrap(), "--batch-size", "full", "--iterations", n])
            .args([
                "--dropout",
                "0",
                "--l2",
                "0",
                "--lr",
                "0.1",
                "--optimizer",
                "gd",
                "--quiet",
                "--no-check",
            ])
            .arg("--out")
            .arg(&out);
        json_written(c, &out.join("model.json"))
    };
    let (a, b) = (model("300"), model("600"));
    assert_ne!(a["params"], b["params"], "600 iterations changed nothing after 300");
}

#[test]
fn help_lists_subcommands_examples_values_and_no_build_paths() {
    let help = |args: &[&str]| {
        let o = rain().args(args).output().unwrap();
        assert!(o.status.success(), "{args:?}");
        text(&o).0
    };
    let top = help(&["--help"]);
    for needle in ["train", "predict", "check", "activation", "Examples:", "Exit status"] {
        assert!(top.contains(needle), "'{needle}' not in rain --help:\n{top}");
    }
    assert!(!top.contains("--lr") && !top.contains("--dropout"), "rain --help dumps the training options");
    let train = help(&["train", "--help"]);
    for needle in [
        "<N|full>",
        "<PATIENCE>",
        "[possible values: gd, momentum, nesterov, rmsprop, adam, adamw]",
        "[possible values: constant, cosine, step, exp]",
        "Activations: a built-in name (sigmoid, relu,",
        "log_sigmoid",
        "Examples:",
        "--no-check",
        "[default: <shipped>/nyc-weather-2013.csv]",
    ] {
        assert!(train.contains(needle), "'{needle}' not in rain train --help:\n{train}");
    }
    assert!(help(&["predict", "--help"]).contains("Output columns"));
    assert!(help(&["check", "--help"]).contains("Exit status: 0 when the gradients agree, 1"));
    assert!(help(&["activation", "--help"]).contains("Activations:"));
    // Nothing points into the build tree: a copied binary's help stays true.
    for args in [&["--help"][..], &["train", "--help"], &["predict", "--help"], &["check", "--help"]] {
        assert!(!help(args).contains(env!("CARGO_MANIFEST_DIR")), "{args:?} shows a build path");
    }
}

#[test]
fn compare_trains_every_entry_with_every_seed_and_sorts_the_table() {
    let d = scratch("compare");
    let data = slice(&d);
    let out = d.join("cmp");
    let o = rain()
        .args(["compare", "--activations", "relu,tanh,max(x, 0.1 * x)", "--seeds", "2", "--epochs", "2"])
        .args(["--data", data.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for name in [
        "relu",
        "tanh",
        "max(x, 0.1 * x)",
        "ROC-AUC",
        "+-",
        "6 runs (3 activations x 2 seeds)",
        "each activation below",
    ] {
        assert!(stdout.contains(name), "'{name}' not in:\n{stdout}");
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    let auc: Vec<f64> = entries.iter().map(|e| e["roc_auc"]["mean"].as_f64().unwrap()).collect();
    assert!(auc.windows(2).all(|w| w[0] >= w[1]), "not sorted: {auc:?}");
    for e in entries {
        let runs = e["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0]["seed"], 0);
        assert_eq!(runs[1]["seed"], 1);
        // The mean is the mean of the runs.
        let m: f64 = runs.iter().map(|r| r["metrics"]["roc_auc"].as_f64().unwrap()).sum::<f64>() / 2.0;
        approx::assert_relative_eq!(m, e["roc_auc"]["mean"].as_f64().unwrap(), max_relative = 1e-12);
        // two additions
    }
    let svg = std::fs::read_to_string(out.join("compare.svg")).unwrap();
    assert!(svg.contains("relu") && svg.contains("tanh") && svg.contains("<polygon"), "no bands");
    // One seed on one thread gives the same figures as on two: runs are independent.
    let one = |jobs: &str| -> serde_json::Value {
        let out = d.join(format!("j{jobs}"));
        let o = rain()
            .args([
                "compare",
                "--optimizers",
                "gd,adam",
                "--seeds",
                "2",
                "--epochs",
                "1",
                "--jobs",
                jobs,
                "--quiet",
            ])
            .args(["--data", data.to_str().unwrap(), "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
        v["entries"].as_array().unwrap().iter().map(|e| e["runs"].clone()).collect()
    };
    let (a, b) = (one("1"), one("2"));
    let strip = |v: &serde_json::Value| -> String {
        // Training times differ; everything else must not.
        let mut v = v.clone();
        for runs in v.as_array_mut().unwrap() {
            for r in runs.as_array_mut().unwrap() {
                r.as_object_mut().unwrap().remove("train_seconds");
            }
        }
        v.to_string()
    };
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn a_wide_network_is_checked_on_a_sample_and_the_check_can_be_skipped() {
    // Issue 21, defect 9: --layers 100000 sat for minutes in the
    // finite-difference check, which grew with the square of the width.
    let d = scratch("wide");
    let data = slice(&d);
    let o = rain().args(["check", "--data", data.to_str().unwrap(), "--layers", "20000"]).output().unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("of 60000 entries sampled") && stdout.contains("gradients agree"), "{stdout}");
    let o = rain()
        .args(["--data", data.to_str().unwrap(), "--epochs", "1", "--no-check", "--out"])
        .arg(d.join("o"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("gradient check skipped (--no-check)") && !stdout.contains("layer 1:"),
        "{stdout}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("o").join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["gradient_check"]["skipped"], true);
}

#[test]
fn export_writes_the_weights_as_pytorch_names_them() {
    use safetensors::{Dtype, SafeTensors};
    let d = scratch("export");
    let data = slice(&d);
    for (dtype, st_dtype, act) in [("f64", Dtype::F64, "relu"), ("f32", Dtype::F32, "x * sigmoid(x)")] {
        let out = d.join(format!("out-{dtype}"));
        let o = rain()
            .args(["--data", data.to_str().unwrap(), "--epochs", "1", "--quiet", "--layers", "5,3"])
            .args(["--dtype", dtype, "--activation", act, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let file = d.join(format!("m-{dtype}.safetensors"));
        let o = rain()
            .arg("export")
            .arg("--model")
            .arg(out.join("model.json"))
            .arg("--safetensors")
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let bytes = std::fs::read(&file).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let model: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("model.json")).unwrap()).unwrap();
        for (l, (name, shape)) in
            [("0", vec![5, 3]), ("2", vec![3, 5]), ("4", vec![1, 3])].into_iter().enumerate()
        {
            let w = st.tensor(&format!("{name}.weight")).unwrap();
            let b = st.tensor(&format!("{name}.bias")).unwrap();
            assert_eq!((w.shape(), b.shape(), w.dtype()), (&shape[..], &shape[..1], st_dtype));
            // The values are the model file's, in its element type.
            let saved: Vec<f64> = model["params"][format!("W{}", l + 1)]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let read: Vec<f64> = if st_dtype == Dtype::F32 {
                w.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
            } else {
                w.data().chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
            };
            assert_eq!(read, saved, "{name}.weight");
        }
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["format"], "tapegrad-safetensors");
        assert_eq!(meta["activations"], format!("{act},{act},sigmoid"));
        let stdz: serde_json::Value = serde_json::from_str(&meta["standardization"]).unwrap();
        assert_eq!(stdz["features"], serde_json::json!(["temp", "humid", "pressure"]));
    }
}

/// The default run on the shipped data, replayed (the default) and eager
/// (`--eager`), in f64 and f32: the same model file, byte for byte, and
/// the same costs; metrics.json says how each ran.
#[test]
fn replayed_and_eager_runs_write_the_same_model() {
    let d = scratch("replay");
    for dtype in ["f64", "f32"] {
        let run = |name: &str, extra: &[&str]| {
            let out = d.join(format!("{dtype}-{name}"));
            let o = rain()
                .args(["train", "--quiet", "--dtype", dtype, "--out", out.to_str().unwrap()])
                .args(extra)
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o).1);
            let metrics: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
            (std::fs::read(out.join("model.json")).unwrap(), metrics)
        };
        let (replayed, mr) = run("replayed", &[]);
        let (eager, me) = run("eager", &["--eager"]);
        assert!(replayed == eager, "{dtype}: the replayed and eager runs wrote different models");
        assert_eq!(mr["training"]["epoch_costs"], me["training"]["epoch_costs"], "{dtype}");
        assert_eq!(mr["config"]["eager"], false);
        assert_eq!(me["config"]["eager"], true);
        assert_eq!(mr["training"]["replayed_updates"], mr["training"]["updates"]);
        assert_eq!(me["training"]["replayed_updates"], 0);
        assert!(mr["training"]["replay_refused"].is_null());
    }
}

/// `rain compare --classes` sorts by macro-F1; `--ensemble` scores the
/// mean of the seeds' probabilities; a validation split scores its own
/// rows only.
#[test]
fn compare_scores_classes_ensembles_and_a_validation_split() {
    let d = scratch("compare-classes");
    let data = slice(&d);
    let out = d.join("cmp");
    let o = rain()
        .args([
            "compare",
            "--classes",
            "--activations",
            "relu,tanh",
            "--seeds",
            "2",
            "--epochs",
            "2",
            "--ensemble",
        ])
        .args(["--split", "month:1-8:9-10", "--data", data.to_str().unwrap(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for s in
        ["macro-F1", "accuracy", "ensemble macro-F1 / accuracy", "scored on month 9-10", "sorted by macro-f1"]
    {
        assert!(stdout.contains(s), "'{s}' not in:\n{stdout}");
    }
    assert!(stdout.contains("left out") && stdout.contains("test (month 9-10)"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("compare.json")).unwrap()).unwrap();
    assert_eq!(v["metric"], "macro-f1");
    let entries = v["entries"].as_array().unwrap();
    let f1: Vec<f64> = entries.iter().map(|e| e["macro_f1"]["mean"].as_f64().unwrap()).collect();
    assert!(f1.windows(2).all(|w| w[0] >= w[1]), "not sorted: {f1:?}");
    for e in entries {
        let runs = e["runs"].as_array().unwrap();
        let m: f64 = runs.iter().map(|r| r["metrics"]["macro_f1"].as_f64().unwrap()).sum::<f64>() / 2.0;
        approx::assert_relative_eq!(m, e["macro_f1"]["mean"].as_f64().unwrap(), max_relative = 1e-12);
        let ens = e["ensemble"]["macro_f1"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ens), "{e}");
        // Three classes: the confusion matrix of the ensemble is 3 x 3.
        assert_eq!(e["ensemble"]["per_class"].as_array().unwrap().len(), 3, "{e}");
    }
    // The scored rows are months 9 and 10 only: the confusion counts add
    // up to the validation rows the data report gives.
    let rows = stdout.lines().find(|l| l.contains("test (month 9-10):")).unwrap();
    let n: u64 = rows.split(':').nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let counts = &entries[0]["ensemble"]["confusion"]["counts"];
    let total = confusion_total(counts);
    assert_eq!(total, n, "confusion {counts} against {n} rows");
}

/// A binary `--ensemble` of one seed is that seed's run; of several, its
/// figures are those of the mean probabilities, not the mean of figures.
#[test]
fn a_binary_ensemble_of_one_seed_is_its_run() {
    let d = scratch("compare-ensemble");
    let data = slice(&d);
    let json = |seeds: &str| -> serde_json::Value {
        let out = d.join(format!("cmp{seeds}"));
        let c = &mut rain();
        c.args([
            "compare",
            "--activations",
            "relu",
            "--seeds",
            seeds,
            "--epochs",
            "2",
            "--ensemble",
            "--quiet",
        ])
        .args(["--data", data.to_str().unwrap(), "--out"])
        .arg(&out);
        json_written(c, &out.join("compare.json"))
    };
    let one = json("1");
    let e = &one["entries"][0];
    for key in ["roc_auc", "average_precision", "f1", "threshold"] {
        assert_eq!(e["ensemble"][key], e["runs"][0]["metrics"][key], "{key}");
    }
    let three = json("3");
    let e = &three["entries"][0];
    let auc = e["ensemble"]["roc_auc"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&auc), "{e}");
    // Scored on the test rows: the confusion counts add up to them.
    let cells = |c: &serde_json::Value| -> u64 {
        ["tp", "fp", "tn", "fn"].iter().map(|k| c[*k].as_u64().unwrap()).sum()
    };
    assert_eq!(cells(&e["ensemble"]["confusion"]), cells(&e["runs"][0]["metrics"]["confusion"]));
}
