//! The plots as a user reads them: fonts large enough, whole-number ticks
//! for counts, labels that say what is plotted, the run that made each
//! chart, poles clipped and said so, and nothing to plot as an error.

use super::{rain, scratch, slice, text};
use std::path::Path;

/// The text of every `<text>` element and the smallest font size.
fn texts(svg: &str) -> (Vec<String>, f64) {
    let mut out = Vec::new();
    let mut smallest = f64::INFINITY;
    for part in svg.split("<text").skip(1) {
        let (attrs, rest) = part.split_once('>').unwrap();
        let size = attrs.split("font-size=\"").nth(1).unwrap().split('"').next().unwrap();
        smallest = smallest.min(size.parse::<f64>().unwrap());
        let raw = rest.split("</text>").next().unwrap().trim();
        out.push(
            raw.replace("&apos;", "'")
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        );
    }
    (out, smallest)
}

fn train(dir: &Path, data: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let o = rain()
        .args(["--data", data.to_str().unwrap(), "--quiet", "--no-check", "--out"])
        .arg(&out)
        .args(if extra.contains(&"--epochs") { &[][..] } else { &["--epochs", "3"][..] })
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    out
}

#[test]
fn training_plots_say_what_they_plot_and_which_run_made_them() {
    let d = scratch("plots");
    let data = slice(&d);
    let out = train(&d, &data, "mini", &["--seed", "7"]);
    let (t, smallest) = texts(&std::fs::read_to_string(out.join("cost.svg")).unwrap());
    // 13 px at the least (plotters writes sizes in its own unit: 17 / 1.24).
    assert!(smallest >= 13.0, "font {smallest}");
    assert!(t.iter().any(|s| s == "cross-entropy + L2 penalty"), "{t:?}");
    assert!(t.iter().any(|s| s.contains("seed 7")) && t.iter().any(|s| s.contains("relu hidden")), "{t:?}");
    assert!(
        t.iter().any(|s| s.starts_with("per update")) && t.iter().any(|s| s.starts_with("mean of the last")),
        "{t:?}"
    );
    // Update counts are whole numbers: no "100.0".
    let ticks: Vec<&String> = t.iter().filter(|s| s.parse::<f64>().is_ok()).collect();
    assert!(!ticks.is_empty());
    assert!(ticks.iter().filter(|s| !s.contains('.')).count() >= 3, "{ticks:?}");
    assert!(
        !ticks.iter().any(|s| s.ends_with(".0") && s.len() > 3 && s.parse::<f64>().unwrap() >= 10.0),
        "{ticks:?}"
    );
    let (pr, _) = texts(&std::fs::read_to_string(out.join("pr.svg")).unwrap());
    assert!(pr.iter().any(|s| s.starts_with("no skill (prevalence 0.")), "{pr:?}");
    assert!(!pr.iter().any(|s| s.contains("always no rain")), "{pr:?}");
    let (roc, _) = texts(&std::fs::read_to_string(out.join("roc.svg")).unwrap());
    assert!(roc.iter().any(|s| s == "no skill (AUC 0.5)"), "{roc:?}");

    // Without L2 the label is the cross-entropy alone; a full batch has one
    // curve, and the legend names only it.
    let out =
        train(&d, &data, "full", &["--l2", "0", "--batch-size", "full", "--optimizer", "gd", "--lr", "0.1"]);
    let (t, _) = texts(&std::fs::read_to_string(out.join("cost.svg")).unwrap());
    assert!(t.iter().any(|s| s == "cross-entropy") && !t.iter().any(|s| s.contains("L2")), "{t:?}");
    assert!(t.iter().any(|s| s.starts_with("cost per epoch (full batch")), "{t:?}");
    assert!(!t.iter().any(|s| s.starts_with("per update") || s.starts_with("mean of the last")), "{t:?}");

    // The y axis follows the steady part: the first updates' cost is above
    // it, and the header says how high it goes.
    let out = train(&d, &data, "steady", &["--epochs", "10"]);
    let (t, _) = texts(&std::fs::read_to_string(out.join("cost.svg")).unwrap());
    let note =
        t.iter().find(|s| s.starts_with("y axis fitted from update ")).unwrap_or_else(|| panic!("{t:?}"));
    let first: f64 = note.rsplit("reach ").next().unwrap().split(',').next().unwrap().parse().unwrap();
    let top = t.iter().filter_map(|s| s.parse::<f64>().ok()).filter(|v| *v < 1.0).fold(0.0f64, f64::max);
    assert!(top < first, "the top tick {top} is not below the first cost {first}");

    // Early stopping: the validation curve and the kept epoch.
    let out = train(&d, &data, "early", &["--early-stopping", "1", "--epochs", "20"]);
    let (t, _) = texts(&std::fs::read_to_string(out.join("cost.svg")).unwrap());
    assert!(t.iter().any(|s| s == "validation, per epoch"), "{t:?}");
    assert!(t.iter().any(|s| s.starts_with("kept: epoch ")), "{t:?}");
}

#[test]
fn activation_plots_name_the_formula_clip_poles_and_refuse_nothing_to_plot() {
    let d = scratch("plots-activation");
    let plot = |args: &[&str]| -> (Option<i32>, String, String) {
        let o = rain().arg("activation").args(args).arg("--out").arg(&d).output().unwrap();
        let (_, err) = text(&o);
        let svg = std::fs::read_to_string(d.join("activation.svg")).unwrap_or_default();
        (o.status.code(), svg, err)
    };
    let (code, svg, err) = plot(&["gelu"]);
    assert_eq!(code, Some(0), "{err}");
    let (t, _) = texts(&svg);
    assert!(t.iter().any(|s| s == "gelu: f(x) = 0.5 x (1 + erf(x / sqrt 2))"), "{t:?}");
    assert!(!t.iter().any(|s| s.contains("clipped")), "{t:?}");
    // Small values get their digits, not 0.0 everywhere.
    let (code, svg, _) = plot(&["0.001 * x", "--range", "-0.1:0.1"]);
    assert_eq!(code, Some(0));
    let (t, _) = texts(&svg);
    let ticks: Vec<&String> = t.iter().filter(|s| s.parse::<f64>().is_ok()).collect();
    let distinct: std::collections::BTreeSet<&String> = ticks.iter().copied().collect();
    assert!(distinct.len() >= 6, "{ticks:?}");
    // A pole: the y range is the percentiles', and the chart says so.
    let (code, svg, _) = plot(&["1/x"]);
    assert_eq!(code, Some(0));
    let (t, _) = texts(&svg);
    assert!(t.iter().any(|s| s.contains("the rest is clipped")), "{t:?}");
    let top = t.iter().filter_map(|s| s.parse::<f64>().ok()).fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(top < 100.0, "the y ticks reach {top}: the pole squashes the chart");
    // Nothing finite on the range: an error, and the last chart stays.
    let before = std::fs::read(d.join("activation.svg")).unwrap();
    let (code, _, err) = plot(&["log(x)", "--range", "-3:-1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("has no finite value on it"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(d.join("activation.svg")).unwrap(), before);
}
