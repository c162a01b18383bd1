//! report.html: one self-contained page per run, written with the run's
//! other files or not at all.

use super::{rain, scratch, slice, text};
use std::path::Path;

/// Checks that `page` refers to nothing outside itself and holds `sections`.
fn self_contained(page: &str, sections: &[&str]) {
    let lower = page.to_lowercase();
    for bad in ["src=\"http", "href=\"http", "src='http", "href=\"//", "url(", "@import", "<script", "<link"]
    {
        assert!(!lower.contains(bad), "the page refers outside itself: {bad}");
    }
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"));
    for s in sections {
        assert!(page.contains(&format!("<h2>{s}</h2>")), "no section '{s}'");
    }
}

fn run(args: &[&str], data: &Path, out: &Path) -> (bool, String) {
    let o = rain().args(args).arg("--data").arg(data).arg("--out").arg(out).output().unwrap();
    (o.status.success(), text(&o).1)
}

/// The report.html of a run that must succeed.
fn page_of(args: &[&str], data: &Path, out: &Path) -> String {
    let (ok, err) = run(args, data, out);
    assert!(ok, "{err}");
    std::fs::read_to_string(out.join("report.html")).unwrap()
}

#[test]
fn every_run_writes_one_self_contained_page() {
    let d = scratch("report");
    let data = slice(&d);
    let out = d.join("train");
    let page = page_of(&["train", "--epochs", "2", "--quiet", "--activation", "x * sigmoid(x)"], &data, &out);
    self_contained(
        &page,
        &[
            "Reproduce this run",
            "Data and cleaning",
            "Gradient check",
            "Training curve",
            "Test metrics beside the baselines",
            "ROC and precision-recall, test split",
            "Configuration",
        ],
    );
    // The plots are the run's own files, inline.
    assert_eq!(page.matches("<svg").count(), 3);
    let cost = std::fs::read_to_string(out.join("cost.svg")).unwrap();
    assert!(page.contains(&cost[cost.find("<svg").unwrap()..]));
    // The command, quoted as a shell reads it back.
    assert!(page.contains("--activation &#39;x * sigmoid(x)&#39;"), "command not quoted");
    assert!(page.contains("logistic regression") && page.contains("gradients agree"));

    let out = d.join("classes");
    let page = page_of(&["train", "--classes", "--epochs", "2", "--quiet", "--no-check"], &data, &out);
    self_contained(&page, &["Data and cleaning", "Training curve", "Test metrics beside the baselines"]);
    assert!(page.contains("macro-F1") && page.contains("confusion matrix"));

    let out = d.join("compare");
    let page = page_of(
        &["compare", "--activations", "relu,tanh", "--seeds", "2", "--epochs", "2", "--quiet"],
        &data,
        &out,
    );
    self_contained(
        &page,
        &[
            "Data and cleaning",
            "Comparison",
            "Training curves",
            "Configuration (each entry changes the compared part)",
        ],
    );
    assert!(page.contains("4 runs (2 activations x 2 seeds)"));
}

#[test]
fn a_failed_run_leaves_the_previous_page() {
    let d = scratch("report-failed");
    let data = slice(&d);
    let out = d.join("run");
    let (ok, err) = run(&["train", "--epochs", "1", "--quiet"], &data, &out);
    assert!(ok, "{err}");
    let before = std::fs::read(out.join("report.html")).unwrap();
    // Fails after loading the data: a gradient check that cannot pass.
    let (ok, _) = run(
        &[
            "train",
            "--epochs",
            "1",
            "--quiet",
            "--strict-check",
            "--activation",
            "sin(100000 * x)",
            "--layers",
            "4",
        ],
        &data,
        &out,
    );
    assert!(!ok);
    assert_eq!(std::fs::read(out.join("report.html")).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "staging left behind: {names:?}");
}
