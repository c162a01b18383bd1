//! Bad input, case by case: each must exit with status 2, print one line
//! on stderr that names the problem, never a panic or a backtrace, and
//! leave every file of the scene as it was: the previous run's output
//! folder, its predictions, the inputs, and no new or temporary files.

use super::{rain, scratch, slice, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A folder with the data slice, a previous run's output (`prev`), its
/// predictions (`preds.csv`), and hostile inputs beside them.
struct Scene {
    dir: PathBuf,
    problems: std::cell::RefCell<Vec<String>>,
    cases: std::cell::Cell<usize>,
}

impl Scene {
    fn new(name: &str) -> Scene {
        let dir = scratch(name);
        let data = slice(&dir);
        let prev = dir.join("prev");
        let o = rain()
            .args(["--data", data.to_str().unwrap(), "--epochs", "1", "--quiet", "--out"])
            .arg(&prev)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let o = rain()
            .args(["predict", "--model"])
            .arg(prev.join("model.json"))
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.join("preds.csv"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        let w = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).unwrap();
        w("binary.csv", b"temp,humid\n\xff\xfe,1\n");
        w("ragged.csv", b"a,b,c\n1,2,3\n4,5\n");
        w("header-only.csv", b"temp,humid,pressure,precip,month\n");
        w("one-column.csv", b"temp\n1\n2\n");
        w("two.csv", b"temp,humid\n50,60\n");
        let txt = std::fs::read_to_string(&data).unwrap();
        let mut lines: Vec<String> = txt.lines().map(String::from).collect();
        let header = lines[0].clone();
        let mut f: Vec<String> = lines[3].split(',').map(String::from).collect();
        f[5] = "warm".into();
        lines[3] = f.join(",");
        w("badnum.csv", lines.join("\n").as_bytes());
        // Blank lines before the bad record: the message gives its line.
        let mut blank = lines.clone();
        blank.insert(2, String::new());
        blank.insert(2, String::new());
        w("blank-lines.csv", blank.join("\n").as_bytes());
        w("dupcol.csv", format!("{header},temp\n").as_bytes());
        let model: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(prev.join("model.json")).unwrap()).unwrap();
        let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut m = model.clone();
            edit(&mut m);
            w(name, m.to_string().as_bytes());
        };
        variant("v999.json", &|m| m["version"] = serde_json::json!(999999999999u64));
        variant("vstr.json", &|m| m["version"] = serde_json::json!("2"));
        variant("dtype.json", &|m| m["dtype"] = serde_json::json!("f16"));
        variant("threshold.json", &|m| m["metadata"]["threshold"] = serde_json::json!("high"));
        variant("formula.json", &|m| {
            m["architecture"]["layers"][0]["activation"] = serde_json::json!("x $ 2")
        });
        variant("overflow.json", &|m| {
            m["params"]["W1"] = serde_json::json!({"shape": [4294967296u64, 4294967296u64], "data": []})
        });
        variant("classes.json", &|m| m["metadata"]["classes"] = serde_json::json!(5));
        variant("comma.json", &|m| m["metadata"]["classes"] = serde_json::json!({"short_names": ["a,b"]}));
        w("corrupt.json", b"{\"format\": \"tapegrad-model\", \"vers");
        w("afile", b"not a folder");
        std::fs::create_dir_all(dir.join("foreign")).unwrap();
        w("foreign/notes.txt", b"mine");
        std::fs::create_dir_all(dir.join("blocked/roc.svg")).unwrap();
        Scene { dir, problems: Default::default(), cases: Default::default() }
    }

    /// `{data}`, `{prev}`, `{dir}` in `args` replaced by the scene's paths.
    fn args(&self, args: &[&str]) -> Vec<String> {
        let d = self.dir.to_str().unwrap();
        args.iter()
            .map(|a| {
                a.replace("{data}", &format!("{d}/slice.csv"))
                    .replace("{prev}", &format!("{d}/prev"))
                    .replace("{dir}", d)
            })
            .collect()
    }

    /// Runs a failing case and checks everything the module doc says;
    /// what went wrong is kept in `problems`, to report every case at once.
    fn fails(&self, args: &[&str], want: &str) {
        self.cases.set(self.cases.get() + 1);
        let args = self.args(args);
        let before = snapshot(&self.dir);
        let o = rain().args(&args).output().unwrap();
        let (stdout, stderr) = text(&o);
        let mut problems = Vec::new();
        if o.status.code() != Some(2) {
            problems.push(format!("status {:?}, stdout {stdout}", o.status.code()));
        }
        if stderr.trim_end().lines().count() != 1 {
            problems.push("not one line".to_string());
        }
        if !stderr.contains(want) {
            problems.push(format!("expected '{want}'"));
        }
        if ["panicked", "backtrace", "RUST_BACKTRACE"].iter().any(|b| stderr.contains(b)) {
            problems.push("a panic".to_string());
        }
        if before != snapshot(&self.dir) {
            problems.push("the scene's files changed".to_string());
        }
        if !problems.is_empty() {
            self.problems.borrow_mut().push(format!("{args:?}: {}\n  stderr: {stderr}", problems.join("; ")));
        }
    }

    /// Fails the test with every problem found.
    fn report(&self) {
        let p = self.problems.borrow();
        assert!(p.is_empty(), "{} case(s) failed:\n{}", p.len(), p.join("\n"));
    }

    /// A training run's arguments: the slice, 2 epochs, quiet, `extra`,
    /// and the previous run's folder as the output.
    fn train<'a>(&self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["--epochs", "2", "--quiet", "--out", "{prev}"];
        if !extra.contains(&"--data") {
            v.extend(["--data", "{data}"]);
        }
        v.extend_from_slice(extra);
        v
    }
}

/// Every file under `dir` (hidden ones included) with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(p, bytes);
            }
        }
    }
    out
}

#[test]
fn bad_data_and_hyper_parameters() {
    let s = Scene::new("bad-train");
    let cases: &[(&[&str], &str)] = &[
        (&["--data", "{dir}/nope.csv"], "cannot read"),
        (&["--data", "{dir}/binary.csv"], "is not UTF-8"),
        (&["--data", "{dir}/ragged.csv"], "is not valid CSV"),
        (&["--data", "{dir}/one-column.csv"], "the header has 1 column"),
        (&["--data", "{dir}/header-only.csv"], "no training rows"),
        (&["--data", "{dir}/badnum.csv"], "line 4, column 'temp': 'warm' is not a number"),
        // Issue 21, defect 10: the line in the file, blank lines counted.
        (&["--data", "{dir}/blank-lines.csv"], "line 6, column 'temp': 'warm' is not a number"),
        // Defect 8: a duplicate column, the label as a feature, a feature twice.
        (&["--data", "{dir}/dupcol.csv"], "names column 'temp' twice"),
        (&["--features", "temp,humid,pressure,precip"], "the label 'precip' is also feature 4"),
        (&["--features", "temp,temp"], "names 'temp' twice"),
        (&["--features", "temp,foo"], "has no column 'foo' (available: origin, year"),
        (&["--features", ""], "name at least one column"),
        (&["--features", "year,temp"], "feature 'year' has zero variance"),
        (&["--label", "nope"], "has no column 'nope'"),
        (&["--split", "month:13-14"], "no training rows left"),
        (&["--split", "month"], "--split"),
        (&["--test-fraction", "1.5"], "--test-fraction"),
        (&["--positive", ">100"], "training labels are all negative"),
        (&["--positive", "~3"], "--positive"),
        (&["--missing", "guess"], "invalid value 'guess' for '--missing"),
        (&["--activation", "swoosh"], "unknown function or variable 'swoosh'"),
        (&["--activation", "reul"], "did you mean relu?"),
        (&["--activation", "x * (1 +"], "column 9"),
        (&["--activation", "snake:-1"], "the parameter of snake must be a positive number"),
        (&["--layers", "20,,5"], "bad layer list"),
        (&["--layers", "20,0"], "bad layer list"),
        // Defect 8: an empty list trained logistic regression.
        (&["--layers", ""], "empty layer list"),
        (&["--lr", "-1"], "invalid learning rate -1"),
        (&["--lr", "NaN"], "invalid learning rate NaN"),
        (&["--lr", "0"], "invalid learning rate 0"),
        (&["--lr", "fast"], "invalid value 'fast' for '--lr"),
        (&["--batch-size", "0"], "batch size 0"),
        (&["--batch-size", "half"], "is not a batch size"),
        // Defect 7: value enums list their values and suggest a near one.
        (&["--optimizer", "lbfgs"], "[possible values: gd, momentum, nesterov, rmsprop, adam, adamw]"),
        (&["--optimizer", "adma"], "a similar value exists: 'adam'"),
        (&["--schedule", "cosin"], "a similar value exists: 'cosine'"),
        (&["--init", "kaiming"], "[possible values: zeros, guide, he"),
        (&["--dtype", "f16"], "[possible values: f32, f64]"),
        (&["--dropout", "1.5"], "invalid dropout rate"),
        (&["--dropout", "-0.1"], "invalid dropout rate"),
        (&["--l2", "-1"], "L2"),
        (&["--pos-weight", "0"], "weight"),
        (&["--early-stopping", "0"], "invalid early-stopping patience 0"),
        (&["--iterations", "0"], "iterations"),
        (&["--iterations", "5"], "cannot be used with"),
        (&["--threshold", "1.5"], "invalid --threshold '1.5': must be in [0, 1]"),
        // Defect 7: negative numbers reach their own check.
        (&["--threshold", "-0.1"], "invalid --threshold '-0.1': must be in [0, 1]"),
        (&["--seed", "-1"], "invalid value '-1' for '--seed"),
        (&["--no-check", "--strict-check"], "cannot be used with"),
        (&["--frobnicate"], "unexpected argument '--frobnicate'"),
        // The classes of the multi-class task.
        (&["--classes", "0.05,0.01"], "thresholds must increase strictly, and 0.01 follows 0.05"),
        (&["--classes", "0,-0.05"], "threshold -0.05 is negative"),
        (&["--classes", "0,abc"], "'abc' is not a number"),
        (&["--classes", "0,,0.1"], "has an empty threshold"),
        (&["--classes", "0,inf"], "is not a finite number"),
        (&["--classes", "0,5"], "no training rows in class 'heavy (> 5)'"),
        (&["--classes", "0,0.02", "--pos-weight", "3"], "cannot be used with"),
        (&["--classes", "0,0.02", "--threshold", "0.3"], "cannot be used with"),
    ];
    for (extra, want) in cases {
        s.fails(&s.train(extra), want);
    }
    // About 1 TB for the weights and their optimizer state: refused where
    // the available memory can be read (elsewhere rain does not check).
    if std::fs::read_to_string("/proc/meminfo").is_ok_and(|t| t.contains("MemAvailable:")) {
        s.fails(&s.train(&["--layers", "100000,100000,100000"]), "GB available");
    }
    // A NaN in the first forward pass names the op, not the learning rate.
    s.fails(&s.train(&["--activation", "log(x)", "--no-check"]), "log produced NaN");
    s.fails(&s.train(&["--activation", "log(x)", "--no-check"]), "so not the learning rate");
    // Output folders that a run must not replace.
    let out = |path: &'static str| -> Vec<&'static str> {
        vec!["--data", "{data}", "--epochs", "1", "--quiet", "--out", path]
    };
    s.fails(&out("{dir}/afile"), "is a file, not a folder");
    s.fails(&out("{dir}/foreign"), "holds files this command did not write (notes.txt)");
    s.fails(&out("{dir}/blocked"), "holds files this command did not write (roc.svg)");
    s.fails(&["trian", "--out", "{prev}"], "a similar subcommand exists: 'train'");
    s.report();
    assert!(s.cases.get() >= 60, "{} cases", s.cases.get());
}

#[test]
fn bad_models_and_predictions() {
    let s = Scene::new("bad-predict");
    let predict = |model: &'static str, extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["predict", "--model", model, "--data", "{data}", "--out", "{dir}/preds.csv"];
        v.extend_from_slice(extra);
        v
    };
    // Defect 7: the missing names on the one line.
    s.fails(&["predict"], "required arguments were not provided: --model <FILE>, --data <FILE>");
    s.fails(&["predict", "--data", "{data}"], "required arguments were not provided: --model <FILE>");
    s.fails(&predict("{dir}/nope.json", &[]), "nope.json: No such file");
    s.fails(&predict("{dir}/corrupt.json", &[]), "corrupt or truncated");
    s.fails(&predict("{data}", &[]), "corrupt or truncated");
    s.fails(&predict("{dir}/v999.json", &[]), "format version 999999999999;");
    s.fails(&predict("{dir}/vstr.json", &[]), "format version \"2\";");
    s.fails(&predict("{dir}/dtype.json", &[]), "unknown dtype 'f16'");
    s.fails(&predict("{dir}/threshold.json", &[]), "metadata 'threshold' \"high\" is not a probability");
    s.fails(&predict("{dir}/formula.json", &[]), "formula.json");
    s.fails(&predict("{dir}/classes.json", &[]), "metadata 'classes' must be an object");
    s.fails(&predict("{dir}/comma.json", &[]), "without commas, quotes or line breaks");
    s.fails(&predict("{dir}/overflow.json", &[]), "parameter W1");
    s.fails(&predict("{prev}/model.json", &["--threshold", "2"]), "must be in [0, 1]");
    // Defect 8: predictions over an input.
    s.fails(
        &["predict", "--model", "{prev}/model.json", "--data", "{data}", "--out", "{data}"],
        "is the --data file",
    );
    s.fails(
        &["predict", "--model", "{prev}/model.json", "--data", "{data}", "--out", "{prev}/model.json"],
        "is the --model file",
    );
    s.fails(
        &["predict", "--model", "{prev}/model.json", "--data", "{dir}/two.csv", "--out", "{dir}/preds.csv"],
        "the model expects 3 features (temp, humid, pressure), the data has 2 of them (missing: pressure)",
    );
    s.fails(
        &["predict", "--model", "{prev}/model.json", "--data", "{dir}/nope.csv", "--out", "{dir}/preds.csv"],
        "cannot read",
    );
    s.fails(
        &["predict", "--model", "{prev}/model.json", "--data", "{data}", "--out", "{dir}/foreign"],
        "is a folder",
    );
    // export.
    let export =
        |model: &'static str, to: &'static str| vec!["export", "--model", model, "--safetensors", to];
    s.fails(&export("{prev}/model.json", "{dir}/no-such-folder/m.safetensors"), "its folder does not exist");
    s.fails(&export("{prev}/model.json", "{prev}/model.json"), "is the --model file");
    s.fails(&export("{dir}/nope.json", "{dir}/m.safetensors"), "nope.json: No such file");
    s.fails(&export("{dir}/dtype.json", "{dir}/m.safetensors"), "unknown dtype 'f16'");
    s.fails(&["export", "--model", "{prev}/model.json"], "required arguments were not provided: --onnx");
    // check and activation.
    s.fails(&["check", "--data", "{data}", "--dtype", "f32"], "unexpected argument '--dtype'");
    s.fails(&["check", "--data", "{data}", "--batch", "0"], "--batch");
    s.fails(&["check", "--data", "{data}", "--activation", "x +"], "column");
    s.fails(&["activation", "--out", "{prev}"], "required arguments were not provided");
    s.fails(&["activation", "tanh", "--range", "4:-4", "--out", "{prev}"], "expected A:B with A < B");
    s.fails(&["activation", "nope", "--out", "{prev}"], "unknown function or variable 'nope'");
    s.fails(&["activation", "tanh", "--out", "{dir}/afile"], "afile");
    // compare.
    let cmp = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["compare", "--data", "{data}", "--epochs", "1", "--quiet", "--out", "{prev}"];
        v.extend_from_slice(extra);
        v
    };
    s.fails(&cmp(&[]), "required arguments were not provided: --activations");
    s.fails(&cmp(&["--activations", " , "]), "name at least one activation or optimizer");
    s.fails(&cmp(&["--activations", "relu,swoosh"]), "unknown function or variable 'swoosh'");
    s.fails(&cmp(&["--activations", "relu,relu"]), "is listed twice");
    s.fails(&cmp(&["--optimizers", "adam,lbfgs"]), "invalid value 'lbfgs' for '--optimizers");
    s.fails(&cmp(&["--activations", "relu", "--optimizers", "adam"]), "cannot be used with");
    s.fails(&cmp(&["--activations", "relu", "--seeds", "0"]), "--seeds");
    s.fails(&cmp(&["--activations", "relu", "--jobs", "0"]), "--jobs");
    s.fails(
        &cmp(&["--activations", "relu", "--classes", "--metric", "ap"]),
        "scores a --classes comparison by macro-f1",
    );
    s.fails(&cmp(&["--activations", "relu", "--metric", "macro-f1"]), "is a multi-class metric");
    s.fails(
        &cmp(&["--activations", "relu", "--split", "month:1-8:8-10"]),
        "the training and test ranges overlap",
    );
    s.fails(
        &cmp(&["--activations", "relu", "--split", "month:1-8:9-10:11-12"]),
        "expected COLUMN:LO-HI or COLUMN:LO-HI:TLO-THI",
    );
    s.fails(&cmp(&["--activations", "relu", "--lr", "-1"]), "invalid learning rate -1");
    s.fails(&cmp(&["--activations", "relu", "--threshold", "0.3"]), "rain compare does not use it");
    s.fails(
        &cmp(&["--activations", "relu", "--seeds", "2", "--seed", "18446744073709551615"]),
        "leaves no room",
    );
    // A training run's folder is not a comparison's to replace.
    s.fails(
        &cmp(&["--activations", "relu"]),
        "holds files this command did not write (cost.svg, metrics.json",
    );
    s.report();
}

#[test]
fn a_failed_gradient_check_exits_1_and_a_passed_one_0() {
    // Issue 21, defect 5. sin(1e5 x) is exact by autodiff, but a central
    // difference with step 1e-6 cannot follow it: the check must fail,
    // with status 1, and `train --strict-check` must write nothing.
    let s = Scene::new("check-status");
    let wild = ["--activation", "sin(100000 * x)", "--layers", "4"];
    let before = snapshot(&s.dir);
    let o = rain().args(s.args(&["check", "--data", "{data}"])).args(wild).output().unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("GRADIENTS DISAGREE") && stderr.contains("gradients disagree"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let o = rain().args(s.args(&s.train(&["--strict-check"]))).args(wild).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o).1);
    assert!(text(&o).1.contains("gradients disagree before training"), "{}", text(&o).1);
    assert!(before == snapshot(&s.dir), "a failed strict check changed files");
    // The guide's own initialisation (weights of 0.01, tiny gradients in
    // the deep layers) agrees: the absolute floor keeps rounding from
    // reading as a disagreement.
    let o = rain()
        .args(s.args(&["check", "--data", "{data}", "--layers", "20,7,5", "--init", "guide"]))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("gradients agree") && !stdout.contains("FAIL"), "{stdout}");
}
