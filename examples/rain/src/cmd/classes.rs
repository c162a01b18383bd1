//! `rain train --classes`: the multi-class task. Precipitation cut into
//! classes at thresholds, a softmax head trained on them, and its test
//! confusion matrix and per-class figures beside multinomial logistic
//! regression and the majority class.
//!
//! With 96.7% of the training hours dry, the most probable class is "no
//! rain" for nearly every hour, and plain argmax never predicts rain.
//! As the binary run picks its probability threshold on the training
//! rows, this run adjusts the logits for the class priors (logit
//! adjustment, Menon et al. 2021): it predicts `argmax_k z_k - tau ln
//! pi_k`, with `pi` the training class shares and `tau` in `0..=2` the
//! value with the best macro-F1 on the training rows, chosen per model,
//! never on the test split. `tau = 0` is plain argmax, reported too.

use super::common::{
    adjusted, best_tau_on_training, check_and_train, checks_json, cost_svg, report_page, training_json,
    TrainSetup,
};
use crate::report::command_line;
use rain::data::{Classes, Dataset};
use rain::error::RainError;
use rain::output::Staged;
use tapegrad::nn::metrics::MulticlassMetrics;
use tapegrad::nn::{io, Architecture, Model, Standardization, TrainConfig};
use tapegrad::tensor::ndarray::Array2;
use tapegrad::tensor::Element;

/// Runs the multi-class task on loaded data.
pub fn run<T: Element>(
    setup: &TrainSetup,
    classes: &Classes,
    ds: &Dataset,
    staged: Staged,
    json: bool,
) -> Result<(), RainError> {
    let (spec, arch, cfg) = (&setup.spec, &setup.arch, &setup.cfg);
    let k = classes.count();
    let names = classes.names();
    let say = |s: &str| setup.say(s);
    say(&ds.report.describe(spec));
    let stdz = Standardization::fit(ds.train_x.view(), &spec.features)?;
    let xtr = stdz.apply(ds.train_x.view())?;
    let xte = stdz.apply(ds.test_x.view())?;
    let seed = cfg.seed;

    let mut model = Model::<T>::new(arch, setup.init, seed)?;
    // Labels as class indices (1, m): the softmax head takes them as they are.
    let trained = check_and_train(setup, &mut model, &xtr, &ds.train_y)?;
    let (xt, yt) = (xtr.mapv(T::cast), ds.train_y.mapv(T::cast));

    // Baseline: multinomial logistic regression, the same code with no
    // hidden layer (and so no dropout).
    let lr_arch = Architecture::softmax(spec.features.len(), &[], k);
    let mut lr_model = Model::<T>::new(&lr_arch, setup.init, seed)?;
    let mut lr_opt = setup.optimizer::<T>()?;
    let lr_cfg = TrainConfig { dropout: 0.0, ..cfg.clone() };
    let lr_hist = tapegrad::nn::fit(&mut lr_model, lr_opt.as_mut(), xt.view(), yt.view(), &lr_cfg, |_| {})?;

    // Baseline: the most frequent training class, for every row (the
    // first of equals).
    let counts = &ds.report.train_classes;
    let majority = (0..k).fold(0, |best, c| if counts[c] > counts[best] { c } else { best });

    let truth: Vec<usize> = ds.test_y.iter().map(|&v| v as usize).collect();
    let train_truth: Vec<usize> = ds.train_y.iter().map(|&v| v as usize).collect();
    let m_train = train_truth.len() as f64;
    let log_prior: Vec<f64> = counts.iter().map(|&n| (n as f64 / m_train).ln()).collect();
    let probabilities = |m: &Model<T>, x: &Array2<f64>| -> Result<Array2<f64>, RainError> {
        Ok(m.predict(x.mapv(T::cast).view())?.mapv(|v| v.as_f64()))
    };
    let tau_for = |m: &Model<T>| -> Result<f64, RainError> {
        Ok(best_tau_on_training(&probabilities(m, &xtr)?, &train_truth, &log_prior))
    };
    let (tau_ours, tau_lr) = (tau_for(&model)?, tau_for(&lr_model)?);
    let (p_ours, p_lr) = (probabilities(&model, &xte)?, probabilities(&lr_model, &xte)?);
    let test =
        |p: &Array2<f64>, tau: f64| MulticlassMetrics::compute(&truth, &adjusted(p, &log_prior, tau), k);
    let ours = test(&p_ours, tau_ours);
    let logreg = test(&p_lr, tau_lr);
    let (ours_argmax, logreg_argmax) = (test(&p_ours, 0.0), test(&p_lr, 0.0));
    let base = MulticlassMetrics::compute(&truth, &vec![majority; truth.len()], k);
    let majority_name = format!("always {}", classes.short_name(majority).replace("none", "no rain"));
    let (ours_name, lr_name) =
        (format!("this model, tau {tau_ours:.2}"), format!("logistic regression, tau {tau_lr:.2}"));
    let rows: [(&str, &MulticlassMetrics); 3] =
        [(&ours_name, &ours), (&lr_name, &logreg), (&majority_name, &base)];
    let argmax_rows: [(&str, &MulticlassMetrics); 2] =
        [("this model, argmax", &ours_argmax), ("logistic regression, argmax", &logreg_argmax)];

    let test_text = [
        format!(
            "test split ({} rows), classes of {} at {classes}; predicted class argmax_k z_k - tau ln prior_k, tau with the best macro-F1 on the training rows:\n{}{}",
            truth.len(),
            spec.label,
            summary_table(&rows, classes),
            summary_table(&argmax_rows, classes).lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()
        ),
        format!("per class (precision / recall / F1):\n{}", per_class_table(&rows, &names)),
        format!(
            "confusion matrix of this model (rows: true class, columns: predicted):\n{}",
            confusion_table(&ours, classes)
        ),
        format!("confusion matrix of logistic regression:\n{}", confusion_table(&logreg, classes)),
    ];
    say(&format!("\n{}", test_text[0]));
    for t in &test_text[1..] {
        say(t);
    }
    let test_text = test_text.join("\n");

    // Outputs, staged, and moved into place together at the end.
    let mut config = setup.config_json.clone();
    config["classes"] = serde_json::json!({"thresholds": classes.thresholds(), "names": names});
    let summary = serde_json::json!({
        "schema": "rain-metrics/1",
        "data": {"file": spec.path, "report": ds.report, "features": spec.features, "label": spec.label,
                 "target": spec.target.to_string(), "split": spec.split.to_string(), "missing": spec.missing},
        "config": config,
        "training": training_json(cfg, &trained),
        "logistic_regression_final_epoch_cost": lr_hist.epoch_costs.last(),
        "gradient_check": checks_json(&trained),
        "decision": {"rule": "argmax_k z_k - tau ln prior_k, tau in 0..=2 (step 0.05) with the best macro-F1 on the training rows",
                     "log_prior": log_prior, "tau_model": tau_ours, "tau_logistic_regression": tau_lr},
        "test": {"classes": names, "model": ours, "logistic_regression": logreg,
                 "model_argmax": ours_argmax, "logistic_regression_argmax": logreg_argmax,
                 "majority": {"class": majority, "metrics": base}},
    });
    let cost = cost_svg(&trained.history, setup)?;
    let short: Vec<String> = (0..k).map(|c| classes.short_name(c)).collect();
    let meta = serde_json::json!({"label": spec.label, "classes": {"thresholds": classes.thresholds(), "names": names,
        "short_names": short, "log_prior": log_prior, "tau": tau_ours}});
    staged.write("model.json", io::to_json(&model, Some(&stdz), meta)?.as_bytes())?;
    staged.write("metrics.json", serde_json::to_string_pretty(&summary).expect("json").as_bytes())?;
    staged.write("cost.svg", cost.as_bytes())?;
    let mut page = report_page(
        &format!("rain train --classes: {}", setup.out.display()),
        setup,
        ds,
        &stdz,
        &trained,
        &cost,
    );
    page.text("Test metrics beside the baselines", &test_text);
    page.config("Configuration", &config);
    staged.write("report.html", page.render(&command_line()).as_bytes())?;
    staged.commit()?;
    say(&format!("\nwrote {}/{{model.json, metrics.json, cost.svg, report.html}}", setup.out.display()));
    if json {
        println!("{}", serde_json::to_string(&summary).expect("json"));
    }
    Ok(())
}

/// Accuracy, macro-F1 and each class's F1, one row per model.
fn summary_table(rows: &[(&str, &MulticlassMetrics)], classes: &Classes) -> String {
    let k = classes.count();
    let mut s = format!("  {:<32} {:>9} {:>9}", "", "accuracy", "macro-F1");
    for c in 0..k {
        s += &format!(" {:>10}", format!("F1 {}", classes.short_name(c)));
    }
    s.push('\n');
    for (name, m) in rows {
        s += &format!("  {:<32} {:>9.4} {:>9.4}", name, m.accuracy, m.macro_f1);
        for c in &m.per_class {
            s += &format!(" {:>10.4}", c.f1);
        }
        s.push('\n');
    }
    s
}

/// Precision, recall and F1 of each class, the models side by side.
fn per_class_table(rows: &[(&str, &MulticlassMetrics)], names: &[String]) -> String {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0).max(5);
    let mut s = format!("  {:<width$} {:>8}", "class", "support");
    for (name, _) in rows {
        s += &format!("  {:>22}", name.split(',').next().unwrap_or(name));
    }
    s.push('\n');
    for (c, class) in names.iter().enumerate() {
        s += &format!("  {class:<width$} {:>8}", rows[0].1.per_class[c].support);
        for (_, m) in rows {
            let p = &m.per_class[c];
            s += &format!("  {:>22}", format!("{:.3} / {:.3} / {:.3}", p.precision, p.recall, p.f1));
        }
        s.push('\n');
    }
    s
}

/// The confusion matrix with class names, rows true, columns predicted.
fn confusion_table(m: &MulticlassMetrics, classes: &Classes) -> String {
    let k = classes.count();
    let names = classes.names();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut s = format!("  {:<width$}", "");
    for c in 0..k {
        s += &format!(" {:>9}", classes.short_name(c));
    }
    s.push('\n');
    for (t, name) in names.iter().enumerate() {
        s += &format!("  {name:<width$}");
        for p in 0..k {
            s += &format!(" {:>9}", m.confusion.count(t, p));
        }
        s.push('\n');
    }
    s
}
