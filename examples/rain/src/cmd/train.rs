//! `rain train`: load, clean and standardise the data, check gradients,
//! train, and report test metrics beside two baselines. With `--classes`,
//! the multi-class run of `classes.rs`.

use super::classes;
pub use super::common::TrainArgs as Args;
use super::common::{
    best_f1_on_training, check_and_train, check_fits, checks_json, cost_svg, scores, threshold,
    training_json, updates,
};
use super::common::{
    published_baselines, report_page, scored_rows, standardisation_line, Batch, Dtype, TrainSetup,
    TRAIN_FILES,
};
use crate::plots::{self, Series};
use crate::report::command_line;
use rain::data::{self, Report, Target};
use rain::error::RainError;
use rain::output::Staged;
use tapegrad::nn::metrics::{self, Metrics};
use tapegrad::nn::{io, Architecture, History, Model, Standardization, TrainConfig};
use tapegrad::tensor::Element;

/// Examples in `rain train --help`.
pub const EXAMPLES: &str = "\
Examples:
  rain train                                  the defaults: 16 relu units, Adam, mini-batches of 64
  rain train --layers 20,7,5 --activation \"x * tanh(softplus(x))\"
  rain train --iterations 2500 --batch-size full --optimizer gd --lr 0.1 --schedule constant
  rain train --early-stopping 5 --epochs 100
  rain train --classes                        no rain / light / heavy, softmax head
  rain train --strict-check --json            exit status 1 if the gradient check fails

Outputs: DIR/model.json, metrics.json (schema: docs/metrics-json.md), cost.svg, roc.svg, pr.svg,
written together at the end; the folder is replaced as a whole.";

/// Runs `rain train`.
pub fn run(args: &Args) -> Result<(), RainError> {
    match args.dtype {
        Dtype::F32 => run_typed::<f32>(args),
        Dtype::F64 => run_typed::<f64>(args),
    }
}

struct Outcome {
    metrics: Metrics,
    roc: Vec<(f64, f64)>,
    pr: Vec<(f64, f64)>,
}

fn evaluate(labels: &[bool], scores: &[f64], threshold: f64) -> Outcome {
    Outcome {
        metrics: Metrics::compute(labels, scores, threshold),
        roc: metrics::roc_curve(labels, scores),
        pr: metrics::pr_curve(labels, scores),
    }
}

fn run_typed<T: Element>(args: &Args) -> Result<(), RainError> {
    let mut setup = TrainSetup::new(args, "rain-out")?;
    let ds = data::load(&setup.spec)?;
    let m = ds.train_x.ncols();
    setup.updates = updates(args, m);
    let batch = match args.batch_size {
        Batch::Full => m,
        Batch::Size(b) => b.min(m),
    };
    check_fits(&setup.arch, batch, std::mem::size_of::<T>())?;
    // Refused before any work: the previous output stays as it is.
    let staged = Staged::folder(&setup.out, TRAIN_FILES)?;
    if let Target::Classes(c) = &setup.spec.target {
        let c = c.clone();
        return classes::run::<T>(&setup, &c, &ds, staged, args.json);
    }
    let given_threshold = args.threshold.map(threshold).transpose()?;
    let (spec, arch, init, cfg) = (&setup.spec, &setup.arch, setup.init, &setup.cfg);
    let say = |s: &str| setup.say(s);
    say(&ds.report.describe(spec));
    let stdz = Standardization::fit(ds.train_x.view(), &spec.features)?;
    let xtr = stdz.apply(ds.train_x.view())?;
    let xte = stdz.apply(ds.test_x.view())?;
    say(&standardisation_line(&stdz));

    let mut model = Model::<T>::new(arch, init, args.data.seed)?;
    let trained = check_and_train(&setup, &mut model, &xtr, &ds.train_y)?;

    // Baseline: logistic regression, the same code with no hidden layer.
    let xt = xtr.mapv(T::cast);
    let yt = ds.train_y.mapv(T::cast);
    let lr_arch = Architecture::guide(spec.features.len(), &[]);
    let mut lr_model = Model::<T>::new(&lr_arch, init, args.data.seed)?;
    let mut lr_opt = setup.optimizer::<T>()?;
    let lr_cfg = TrainConfig { dropout: 0.0, ..cfg.clone() };
    let lr_hist = tapegrad::nn::fit(&mut lr_model, lr_opt.as_mut(), xt.view(), yt.view(), &lr_cfg, |_| {})?;

    let labels: Vec<bool> = ds.test_y.iter().map(|&v| v == 1.0).collect();
    let train_labels: Vec<bool> = ds.train_y.iter().map(|&v| v == 1.0).collect();
    let threshold_for = |m: &Model<T>| -> Result<f64, RainError> {
        match given_threshold {
            Some(t) => Ok(t),
            None => best_f1_on_training(m, &xtr, &train_labels),
        }
    };
    let (t_ours, t_lr) = (threshold_for(&model)?, threshold_for(&lr_model)?);
    let ours = evaluate(&labels, &scores(&model, &xte)?, t_ours);
    let logreg = evaluate(&labels, &scores(&lr_model, &xte)?, t_lr);
    let no_rain = evaluate(&labels, &vec![0.0; labels.len()], 0.5);

    let table = results_table(&[
        ("this model", &ours.metrics),
        ("logistic regression", &logreg.metrics),
        ("always no rain", &no_rain.metrics),
    ]);
    let how = if args.threshold.is_some() { "given" } else { "best F1 on the training rows" };
    say(&format!(
        "\ntest split ({} rows); labels at threshold {t_ours:.4} for this model, {t_lr:.4} for logistic regression ({how}):\n{table}",
        labels.len()
    ));
    if let Some((t, f1)) = ours.metrics.best_f1 {
        say(&format!(
            "  (hindsight: the best F1 this model could reach on the test split is {f1:.4}, at {t:.4})"
        ));
    }

    // Outputs, staged, and moved into place together at the end.
    let mut config = setup.config_json.clone();
    config["threshold"] = serde_json::json!(t_ours);
    config["threshold_rule"] = serde_json::json!(how);
    let summary = serde_json::json!({
        "schema": "rain-metrics/1",
        "data": {"file": spec.path, "report": ds.report, "features": spec.features, "label": spec.label,
                 "positive": spec.target.to_string(), "split": spec.split.to_string(), "missing": spec.missing},
        "config": config,
        "training": training_json(cfg, &trained),
        "logistic_regression_final_epoch_cost": lr_hist.epoch_costs.last(),
        "gradient_check": checks_json(&trained),
        "test": {"model": ours.metrics, "logistic_regression": logreg.metrics, "always_no_rain": no_rain.metrics},
    });
    let files = render_outputs(&setup, &trained.history, &ours, &logreg, &ds.report)?;
    let svg = |name: &str| files.iter().find(|f| f.0 == name).map_or("", |f| f.1.as_str());
    let mut page = report_page(
        &format!("rain train: {}", setup.out.display()),
        &setup,
        &ds,
        &stdz,
        &trained,
        svg("cost.svg"),
    );
    let mut results = format!(
        "{} ({} rows); labels at threshold {t_ours:.4} for this model, {t_lr:.4} for logistic regression ({how}):\n{table}",
        scored_rows(spec),
        labels.len()
    );
    if let Some(b) = published_baselines(spec) {
        results += &format!("\n{b}");
    }
    page.text("Test metrics beside the baselines", &results);
    page.plots(&format!("ROC and precision-recall, {}", scored_rows(spec)), &[svg("roc.svg"), svg("pr.svg")]);
    page.config("Configuration", &config);
    let meta =
        serde_json::json!({"threshold": t_ours, "label": spec.label, "positive": spec.target.to_string()});
    staged.write("model.json", io::to_json(&model, Some(&stdz), meta)?.as_bytes())?;
    staged.write("metrics.json", serde_json::to_string_pretty(&summary).expect("json").as_bytes())?;
    for (name, svg) in &files {
        staged.write(name, svg.as_bytes())?;
    }
    staged.write("report.html", page.render(&command_line()).as_bytes())?;
    staged.commit()?;
    say(&format!(
        "\nwrote {}/{{model.json, metrics.json, cost.svg, roc.svg, pr.svg, report.html}}",
        setup.out.display()
    ));
    if args.json {
        println!("{}", serde_json::to_string(&summary).expect("json"));
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

fn results_table(rows: &[(&str, &Metrics)]) -> String {
    let mut s = format!(
        "  {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "", "accuracy", "precision", "recall", "F1", "ROC-AUC", "avg prec"
    );
    for (name, m) in rows {
        s += &format!(
            "  {:<20} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>9} {:>9}\n",
            name,
            m.accuracy,
            m.precision,
            m.recall,
            m.f1,
            fmt_opt(m.roc_auc),
            fmt_opt(m.average_precision)
        );
    }
    s
}

fn render_outputs(
    setup: &TrainSetup,
    history: &History,
    ours: &Outcome,
    logreg: &Outcome,
    report: &Report,
) -> Result<Vec<(&'static str, String)>, RainError> {
    let plot_err = |e: String| RainError::bad("plot", "svg", e);
    let cost = cost_svg(history, setup)?;
    let run = setup.run_line();
    let scored = scored_rows(&setup.spec);
    let (roc_title, pr_title) = (format!("ROC, {scored}"), format!("precision-recall, {scored}"));
    let diag = [(0.0, 0.0), (1.0, 1.0)];
    let roc = plots::lines(
        &plots::Frame {
            unit_square: true,
            ..plots::Frame::new(&roc_title, &run, "false positive rate", "true positive rate")
        },
        &[
            Series::new(format!("this model (AUC {})", fmt_opt(ours.metrics.roc_auc)), &ours.roc),
            Series::new(
                format!("logistic regression (AUC {})", fmt_opt(logreg.metrics.roc_auc)),
                &logreg.roc,
            ),
            Series { dashed: true, ..Series::new("no skill (AUC 0.5)", &diag) },
        ],
    )
    .map_err(plot_err)?;
    let rate = report.test_positive as f64 / report.test_rows.max(1) as f64;
    let flat = [(0.0, rate), (1.0, rate)];
    let pr = plots::lines(
        &plots::Frame { unit_square: true, ..plots::Frame::new(&pr_title, &run, "recall", "precision") },
        &[
            Series::new(format!("this model (AP {})", fmt_opt(ours.metrics.average_precision)), &ours.pr),
            Series::new(
                format!("logistic regression (AP {})", fmt_opt(logreg.metrics.average_precision)),
                &logreg.pr,
            ),
            Series { dashed: true, ..Series::new(format!("no skill (prevalence {rate:.3})"), &flat) },
        ],
    )
    .map_err(plot_err)?;
    Ok(vec![("cost.svg", cost), ("roc.svg", roc), ("pr.svg", pr)])
}
