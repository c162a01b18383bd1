//! `rain train`: the main job.

use crate::plots::{self, Series};
use crate::{create_dir, write_file, Batch, Dtype, TrainArgs};
use indicatif::{ProgressBar, ProgressStyle};
use rain::data::{self, Report, Spec};
use rain::error::RainError;
use std::time::Instant;
use tapegrad::nn::check::{
    autodiff_gradients, compare_gradients, finite_difference_gradients, guide_backward,
};
use tapegrad::nn::metrics::{self, Metrics};
use tapegrad::nn::{
    fit, io, optim, Architecture, EarlyStopping, History, Loss, Model, Schedule, Standardization, TrainConfig,
};
use tapegrad::tensor::ndarray::{s, Array2};
use tapegrad::tensor::Element;

/// Autodiff vs the guide's formulas vs finite differences, in f64.
pub struct GradCheck {
    /// Per layer: (autodiff vs guide, autodiff vs finite differences), the
    /// max relative difference over W[l] and b[l]. Guide is None when the
    /// activation is not one of the guide's.
    pub layers: Vec<(Option<f64>, f64)>,
    pub table: String,
}

/// Tolerances: the guide's formulas and the tape do the same arithmetic in
/// different orders (a few ulps); finite differences with eps 1e-6 carry
/// ~1e-10 of rounding and ~1e-12 of truncation, relative.
const GUIDE_TOL: f64 = 1e-10;
const FD_TOL: f64 = 1e-6;

impl GradCheck {
    /// Checks at the model's parameters with every bias moved by a small
    /// seeded amount (|jitter| <= 1e-3). With zero biases (as initialised)
    /// a unit whose inputs are all switched off has Z exactly 0, on relu's
    /// kink, where a central difference measures the mean of the two
    /// one-sided slopes and cannot check anything; the jitter moves every Z
    /// off the kink without changing what is being verified.
    pub fn run<T: Element>(
        model: &Model<T>,
        x: &Array2<f64>,
        y: &Array2<f64>,
        loss: &Loss,
    ) -> Result<Self, RainError> {
        let mut m64 = model.cast::<f64>()?;
        let mut k = 0u64;
        for (name, p) in m64.params_mut().iter_mut() {
            if name.starts_with('b') {
                p.mapv_inplace(|v| {
                    // A deterministic spread in [-1e-3, 1e-3].
                    k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    v + 1e-3 * (((k >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
                });
            }
        }
        let auto = autodiff_gradients(&m64, x.view(), y.view(), loss)?;
        let guide = guide_backward(&m64, x.view(), y.view(), loss.l2()).ok();
        let fd = finite_difference_gradients(&m64, x.view(), y.view(), loss, 1e-6)?;
        let vs_fd = compare_gradients(&fd, &auto, FD_TOL);
        let vs_guide = guide.as_ref().map(|g| compare_gradients(g, &auto, GUIDE_TOL));
        let per_layer = |rep: &tapegrad::nn::check::GradientReport| -> Vec<f64> {
            rep.rows.chunks(2).map(|c| c.iter().map(|r| r.max_rel_diff).fold(0.0, f64::max)).collect()
        };
        let fd_l = per_layer(&vs_fd);
        let guide_l = vs_guide.as_ref().map(per_layer);
        let layers = (0..fd_l.len()).map(|l| (guide_l.as_ref().map(|g| g[l]), fd_l[l])).collect();
        let mut table = String::new();
        if let Some(g) = &vs_guide {
            table += &format!("autodiff vs the guide's formulas:\n{g}");
        } else {
            table +=
                "autodiff vs the guide's formulas: n/a (the guide gives no derivative for this activation)\n";
        }
        table += &format!("autodiff vs finite differences:\n{vs_fd}");
        Ok(GradCheck { layers, table })
    }

    pub fn lines(&self) -> String {
        let mut s = String::new();
        for (l, (g, f)) in self.layers.iter().enumerate() {
            let g = g.map_or("n/a".to_string(), |v| format!("{v:.1e}"));
            s += &format!(
                "    layer {}: max rel diff autodiff vs guide {g}, vs finite differences {f:.1e}\n",
                l + 1
            );
        }
        s
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn passed(&self) -> bool {
        self.layers.iter().all(|(g, f)| g.is_none_or(|g| g <= GUIDE_TOL) && *f <= FD_TOL)
    }

    pub fn verdict(&self) -> String {
        if self.passed() {
            format!("gradients agree (guide <= {GUIDE_TOL:.0e}, finite differences <= {FD_TOL:.0e})")
        } else {
            format!("GRADIENTS DISAGREE beyond the tolerances (guide {GUIDE_TOL:.0e}, finite differences {FD_TOL:.0e})")
        }
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!(self
            .layers
            .iter()
            .map(|(g, f)| serde_json::json!({"vs_guide": g, "vs_finite_differences": f}))
            .collect::<Vec<_>>())
    }
}

pub fn run(args: &TrainArgs) -> Result<(), RainError> {
    match args.model.dtype {
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

fn run_typed<T: Element>(args: &TrainArgs) -> Result<(), RainError> {
    let human = !args.quiet && !args.json;
    let say = |s: &str| {
        if human {
            println!("{s}");
        }
    };
    // Everything that can be checked before reading data is checked here.
    let spec: Spec = args.data.spec()?;
    let arch = args.model.architecture(spec.features.len())?;
    let init = args.model.init()?;
    let loss = Loss::new(args.l2, args.pos_weight)?;
    let mut opt = optim::by_name::<T>(&args.optimizer, args.lr)?;
    if let Some(t) = args.threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(RainError::bad("--threshold", t, "must be in [0, 1]"));
    }
    let cfg = TrainConfig {
        epochs: if args.iterations.is_some() { usize::MAX } else { args.epochs },
        batch_size: match args.batch_size {
            Batch::Full => None,
            Batch::Size(n) => Some(n),
        },
        seed: args.data.seed,
        loss,
        dropout: args.dropout,
        max_iterations: args.iterations,
        trace_nonfinite: args.trace_nonfinite,
        schedule: match args.schedule.as_str() {
            "constant" => Schedule::Constant,
            "cosine" => Schedule::Cosine { epochs: args.epochs, min_lr: 0.0 },
            "step" => Schedule::Step { every: 10, gamma: 0.5 },
            "exp" => Schedule::Exponential { gamma: 0.95 },
            other => return Err(RainError::bad("--schedule", other, "use constant, cosine, step or exp")),
        },
        early_stopping: match args.early_stopping {
            Some(0) => {
                return Err(RainError::bad("--early-stopping", 0, "patience must be at least 1 epoch"))
            }
            Some(patience) => Some(EarlyStopping { validation_fraction: 0.1, patience }),
            None => None,
        },
        ..Default::default()
    };
    tapegrad::nn::Dropout::new(args.dropout, 0)?;
    if args.epochs == 0 {
        return Err(RainError::bad("--epochs", 0, "must be at least 1"));
    }

    let ds = data::load(&spec)?;
    say(&ds.report.describe(&spec));
    let stdz = Standardization::fit(ds.train_x.view(), &spec.features)?;
    let xtr = stdz.apply(ds.train_x.view())?;
    let xte = stdz.apply(ds.test_x.view())?;
    say(&format!(
        "  standardised with the training rows' mean {:?} and std {:?}",
        stdz.mean.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        stdz.std.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>()
    ));

    let mut model = Model::<T>::new(&arch, init, args.data.seed)?;
    let n_check = 64.min(xtr.ncols());
    let (xc, yc) = (xtr.slice(s![.., ..n_check]).to_owned(), ds.train_y.slice(s![.., ..n_check]).to_owned());
    let before = GradCheck::run(&model, &xc, &yc, &loss)?;
    say(&format!(
        "\nmodel: layers {:?}, {} hidden, {} output; {} init; {} (lr {}), batch {}, {}, {}",
        arch.sizes(),
        args.model.activation,
        arch.layers.last().map(|l| l.activation.as_str()).unwrap_or("?"),
        init,
        args.optimizer,
        args.lr,
        match args.batch_size {
            Batch::Full => "full".to_string(),
            Batch::Size(n) => n.to_string(),
        },
        match args.iterations {
            Some(n) => format!("{n} iterations"),
            None => format!("{} epochs", args.epochs),
        },
        T::NAME
    ));
    say(&format!("gradient check before training ({n_check} training examples, f64):"));
    say(&if args.check_grads { before.table().to_string() } else { before.lines() });

    let xt = xtr.mapv(T::cast);
    let yt = ds.train_y.mapv(T::cast);
    let batches = match args.batch_size {
        Batch::Full => 1,
        Batch::Size(b) => xt.ncols().div_ceil(b),
    };
    let total = args.iterations.unwrap_or(args.epochs * batches) as u64;
    let bar = if human { ProgressBar::new(total) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "  training {bar:30} {pos}/{len} updates, epoch {prefix}, cost {msg} [{elapsed}]",
        )
        .expect("valid template"),
    );
    let t0 = Instant::now();
    let history = fit(&mut model, opt.as_mut(), xt.view(), yt.view(), &cfg, |p| {
        bar.set_position(p.iteration as u64);
        if p.iteration % 16 == 0 || p.epoch_cost.is_some() {
            bar.set_prefix(p.epoch.to_string());
            bar.set_message(format!("{:.5}", p.cost));
        }
    });
    bar.finish_and_clear();
    let history = history?;
    let train_secs = t0.elapsed().as_secs_f64();
    say(&format!(
        "  trained in {train_secs:.1} s: {} updates, final epoch cost {:.5}",
        history.iteration_costs.len(),
        history.epoch_costs.last().copied().unwrap_or(f64::NAN)
    ));
    let after = GradCheck::run(&model, &xc, &yc, &loss)?;
    say("gradient check after training:");
    say(&if args.check_grads { after.table().to_string() } else { after.lines() });
    say(&format!("  {}", after.verdict()));

    // Baseline: logistic regression, the same code with no hidden layer.
    let lr_arch = Architecture::guide(spec.features.len(), &[]);
    let mut lr_model = Model::<T>::new(&lr_arch, init, args.data.seed)?;
    let mut lr_opt = optim::by_name::<T>(&args.optimizer, args.lr)?;
    let lr_cfg = TrainConfig { dropout: 0.0, ..cfg.clone() };
    let lr_hist = fit(&mut lr_model, lr_opt.as_mut(), xt.view(), yt.view(), &lr_cfg, |_| {})?;

    let labels: Vec<bool> = ds.test_y.iter().map(|&v| v == 1.0).collect();
    let train_labels: Vec<bool> = ds.train_y.iter().map(|&v| v == 1.0).collect();
    let scores = |m: &Model<T>, x: &Array2<f64>| -> Result<Vec<f64>, RainError> {
        Ok(m.predict_proba(x.mapv(T::cast).view())?.iter().map(|v| v.as_f64()).collect())
    };
    // The threshold is chosen on the training rows, never on the test split.
    let threshold_for = |m: &Model<T>| -> Result<f64, RainError> {
        Ok(match args.threshold {
            Some(t) => t,
            None => metrics::best_f1_threshold(&train_labels, &scores(m, &xtr)?).map_or(0.5, |(t, _)| t),
        })
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

    // Outputs, written only now that everything succeeded.
    let summary = serde_json::json!({
        "data": {"file": spec.path, "report": ds.report, "features": spec.features, "label": spec.label,
                 "positive": spec.positive.to_string(), "split": spec.split.to_string(), "missing": spec.missing},
        "config": {"layers": arch.sizes(), "activation": args.model.activation, "init": init.to_string(),
                   "optimizer": args.optimizer, "lr": args.lr, "epochs": args.epochs, "iterations": args.iterations,
                   "batch_size": format!("{:?}", args.batch_size), "l2": args.l2, "dropout": args.dropout,
                   "pos_weight": args.pos_weight, "dtype": T::NAME, "seed": args.data.seed, "threshold": t_ours,
                   "threshold_rule": how},
        "train_seconds": train_secs,
        "final_epoch_cost": history.epoch_costs.last(),
        "logistic_regression_final_epoch_cost": lr_hist.epoch_costs.last(),
        "gradient_check": {"before": before.json(), "after": after.json(), "passed": before.passed() && after.passed()},
        "test": {"model": ours.metrics, "logistic_regression": logreg.metrics, "always_no_rain": no_rain.metrics},
    });
    let files = render_outputs(&history, &ours, &logreg, &ds.report)?;
    create_dir(&args.out)?;
    let meta =
        serde_json::json!({"threshold": t_ours, "label": spec.label, "positive": spec.positive.to_string()});
    io::save(&args.out.join("model.json"), &model, Some(&stdz), meta)?;
    write_file(
        &args.out.join("metrics.json"),
        serde_json::to_string_pretty(&summary).expect("json").as_bytes(),
    )?;
    for (name, svg) in files {
        write_file(&args.out.join(name), svg.as_bytes())?;
    }
    say(&format!("\nwrote {}/{{model.json, metrics.json, cost.svg, roc.svg, pr.svg}}", args.out.display()));
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
    history: &History,
    ours: &Outcome,
    logreg: &Outcome,
    report: &Report,
) -> Result<Vec<(&'static str, String)>, RainError> {
    let plot_err = |e: String| RainError::bad("plot", "svg", e);
    let iters: Vec<(f64, f64)> =
        history.iteration_costs.iter().enumerate().map(|(i, &c)| ((i + 1) as f64, c)).collect();
    let per_epoch = history.iteration_costs.len() as f64 / history.epoch_costs.len().max(1) as f64;
    let epochs: Vec<(f64, f64)> =
        history.epoch_costs.iter().enumerate().map(|(e, &c)| ((e + 1) as f64 * per_epoch, c)).collect();
    let cost = plots::lines(
        "training cost",
        "update",
        "cross-entropy",
        &[
            Series { name: "per update (batch)".into(), points: &iters },
            Series { name: "per epoch (mean)".into(), points: &epochs },
        ],
        false,
    )
    .map_err(plot_err)?;
    let diag = [(0.0, 0.0), (1.0, 1.0)];
    let roc = plots::lines(
        "ROC, test split",
        "false positive rate",
        "true positive rate",
        &[
            Series { name: format!("this model (AUC {})", fmt_opt(ours.metrics.roc_auc)), points: &ours.roc },
            Series {
                name: format!("logistic regression (AUC {})", fmt_opt(logreg.metrics.roc_auc)),
                points: &logreg.roc,
            },
            Series { name: "always no rain (AUC 0.5)".into(), points: &diag },
        ],
        true,
    )
    .map_err(plot_err)?;
    let rate = report.test_positive as f64 / report.test_rows.max(1) as f64;
    let flat = [(0.0, rate), (1.0, rate)];
    let pr = plots::lines(
        "precision-recall, test split",
        "recall",
        "precision",
        &[
            Series {
                name: format!("this model (AP {})", fmt_opt(ours.metrics.average_precision)),
                points: &ours.pr,
            },
            Series {
                name: format!("logistic regression (AP {})", fmt_opt(logreg.metrics.average_precision)),
                points: &logreg.pr,
            },
            Series { name: format!("always no rain (AP {rate:.3})"), points: &flat },
        ],
        true,
    )
    .map_err(plot_err)?;
    Ok(vec![("cost.svg", cost), ("roc.svg", roc), ("pr.svg", pr)])
}
