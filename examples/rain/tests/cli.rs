//! The `rain` binary end to end on a small slice of the shipped data: the
//! happy path of each subcommand and every bad-input case, each of which
//! must print one line, exit with status 2 and leave no output files.

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

/// Runs a failing case: status 2, one line on stderr containing `want`,
/// no panic, and the output folder not created.
fn fails(args: &[&str], dir: &Path, want: &str) {
    let out_dir = dir.join("out");
    let o = rain().args(args).arg("--out").arg(&out_dir).output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}\nstdout: {stdout}\nstderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line:\n{stderr}");
    assert!(stderr.contains(want), "{args:?}: expected '{want}' in: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"), "{stderr}");
    assert!(!out_dir.exists(), "{args:?}: output folder was created");
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
    assert_eq!(m["gradient_check"]["passed"], true);
    assert!(std::fs::read_to_string(out.join("roc.svg")).unwrap().starts_with("<svg"));
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
        assert!(svg.contains(&format!("{name}&apos; (autodiff)")), "{name}' not in the legend");
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
    assert_eq!(m["gradient_check"]["passed"], true);
    let counts = &m["test"]["model"]["confusion"]["counts"];
    assert_eq!(counts.as_array().unwrap().len(), 3);
    let total: u64 = counts
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
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

#[test]
fn bad_class_thresholds_are_one_line_and_exit_2() {
    let d = scratch("bad-classes");
    let data = slice(&d);
    let q = quick(&data);
    let run = |extra: &[&str], want: &str| {
        let mut a: Vec<&str> = q.iter().map(|s| s.as_str()).collect();
        a.extend(extra);
        fails(&a, &d, want);
    };
    run(&["--classes", "0.05,0.01"], "thresholds must increase strictly, and 0.01 follows 0.05");
    run(&["--classes", "0,0"], "thresholds must increase strictly");
    run(&["--classes", "0,-0.05"], "threshold -0.05 is negative");
    run(&["--classes=-0.01,0.02"], "threshold -0.01 is negative");
    run(&["--classes", "0,abc"], "'abc' is not a number");
    run(&["--classes", "0,,0.1"], "has an empty threshold");
    run(&["--classes", "0,inf"], "is not a finite number");
    // The largest precipitation in the data is 1.21 in/h: nothing above 5.
    run(&["--classes", "0,5"], "no training rows in class 'heavy (> 5)'");
    run(&["--classes", "0,0.02", "--positive", ">0.1"], "cannot be used with");
    run(&["--classes", "0,0.02", "--pos-weight", "3"], "cannot be used with");
    run(&["--classes", "0,0.02", "--threshold", "0.3"], "cannot be used with");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = scratch("bad");
    let data = slice(&d);
    let q = quick(&data);
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v = q.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>, want: &str| {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        fails(&a, &d, want);
    };

    run(vec!["--data".into(), d.join("nope.csv").to_str().unwrap().into()], "cannot read");
    let bin = d.join("binary.csv");
    std::fs::write(&bin, b"temp,humid\n\xff\xfe,1\n").unwrap();
    run(vec!["--data".into(), bin.to_str().unwrap().into()], "is not UTF-8");
    let ragged = d.join("ragged.csv");
    std::fs::write(&ragged, "a,b,c\n1,2,3\n4,5\n").unwrap();
    run(vec!["--data".into(), ragged.to_str().unwrap().into()], "is not valid CSV");
    run(with(&["--features", "temp,foo"]), "has no column 'foo' (available: origin, year");
    let bad_num = d.join("badnum.csv");
    let txt = std::fs::read_to_string(&data).unwrap();
    let mut lines: Vec<String> = txt.lines().map(String::from).collect();
    let mut f: Vec<String> = lines[3].split(',').map(String::from).collect();
    f[5] = "warm".into();
    lines[3] = f.join(",");
    std::fs::write(&bad_num, lines.join("\n")).unwrap();
    run(
        vec!["--data".into(), bad_num.to_str().unwrap().into()],
        "row 4, column 'temp': 'warm' is not a number",
    );
    run(with(&["--split", "month:13-14"]), "no training rows left");
    run(with(&["--positive", ">100"]), "training labels are all negative");
    run(with(&["--features", "year,temp"]), "feature 'year' has zero variance");
    run(with(&["--activation", "swoosh"]), "unknown function or variable 'swoosh'");
    run(with(&["--activation", "x * (1 +"]), "column 9");
    run(with(&["--layers", "20,,5"]), "bad layer list");
    run(with(&["--layers", "20,0"]), "bad layer list");
    run(with(&["--lr", "-1"]), "invalid learning rate -1");
    run(with(&["--lr", "NaN"]), "invalid learning rate NaN");
    run(with(&["--lr", "0"]), "invalid learning rate 0");
    run(with(&["--batch-size", "0"]), "batch size 0");
    run(with(&["--optimizer", "lbfgs"]), "invalid optimizer lbfgs");
    run(with(&["--dropout", "1.5"]), "invalid dropout rate");
    let zero_epochs = ["--data", data.to_str().unwrap(), "--epochs", "0", "--quiet"];
    run(zero_epochs.iter().map(|s| s.to_string()).collect(), "invalid number of epochs 0");
    run(with(&["--early-stopping", "0"]), "invalid early-stopping patience 0");
    run(with(&["--threshold", "1.5"]), "invalid --threshold '1.5': must be in [0, 1]");

    // A model whose features the data lacks.
    let out = d.join("model-out");
    assert!(rain().args(&q).arg("--out").arg(&out).status().unwrap().success());
    let two = d.join("two.csv");
    std::fs::write(&two, "temp,humid\n50,60\n").unwrap();
    let o = rain()
        .args([
            "predict",
            "--model",
            out.join("model.json").to_str().unwrap(),
            "--data",
            two.to_str().unwrap(),
            "--out",
        ])
        .arg(d.join("p.csv"))
        .output()
        .unwrap();
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("the model expects 3 features (temp, humid, pressure), the data has 2 of them (missing: pressure)"), "{stderr}");
    assert!(!d.join("p.csv").exists());
    // A corrupt model file.
    let bad_model = d.join("bad-model.json");
    std::fs::write(&bad_model, "{\"format\": \"tapegrad-model\", \"vers").unwrap();
    let o = rain()
        .args(["predict", "--model", bad_model.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("corrupt or truncated"));
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
