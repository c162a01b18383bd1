//! `rain compare`: several activations, or several optimizers, each
//! trained on the same split and standardisation with the same network and
//! N seeds; one table of test figures (mean and standard deviation over the
//! seeds) sorted by the chosen metric, `compare.json`, and `compare.svg`
//! with every entry's cost curve (mean over seeds, band from the lowest to
//! the highest). Runs go to as many threads as `--jobs` (default: the
//! cores); a run's figures do not depend on how many run at once.

use super::common::{
    adjusted, best_tau_on_training, check_fits, scores, split_top_level, threshold_on_training, value_name,
    Dtype, OptimizerName, TrainArgs, TrainSetup, COMPARE_FILES,
};
use crate::plots::{self, Band};
use clap::{Args as ClapArgs, ValueEnum};
use rain::data::{self, Dataset, Target};
use rain::error::RainError;
use rain::output::Staged;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;
use tapegrad::nn::metrics::{Metrics, MulticlassMetrics};
use tapegrad::nn::{Activation, Model, NnError, Standardization};
use tapegrad::tensor::ndarray::Array2;
use tapegrad::tensor::Element;

/// Examples in `rain compare --help`.
pub const EXAMPLES: &str = "\
Examples:
  rain compare --activations relu,tanh,swish,\"x * tanh(softplus(x))\"
  rain compare --optimizers gd,momentum,adam --lr 0.01 --seeds 3
  rain compare --activations relu,gelu --metric ap --layers 32,16 --epochs 10

Outputs: DIR/compare.json and compare.svg (default DIR: rain-compare), written together.";

/// The metric the table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Metric {
    RocAuc,
    Ap,
    F1,
    /// The multi-class runs' (`--classes`) default.
    MacroF1,
    /// Multi-class runs only.
    Accuracy,
}

impl Metric {
    /// Its key in compare.json and the table's column.
    fn key(self) -> &'static str {
        match self {
            Metric::RocAuc => "roc_auc",
            Metric::Ap => "average_precision",
            Metric::F1 => "f1",
            Metric::MacroF1 => "macro_f1",
            Metric::Accuracy => "accuracy",
        }
    }
}

/// The arguments of `rain compare`.
#[derive(ClapArgs, Debug, Clone)]
pub struct Args {
    /// Activations to compare, comma-separated; a formula may hold commas
    /// inside parentheses (`max(x, 0)`).
    #[arg(
        long,
        value_name = "A,B,...",
        conflicts_with = "optimizers",
        required_unless_present = "optimizers"
    )]
    pub activations: Option<String>,
    /// Instead of --activations: optimizers to compare (with --activation).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "NAME,...")]
    pub optimizers: Vec<OptimizerName>,
    /// Seeds per entry: --seed, --seed + 1, ...
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub seeds: usize,
    /// The metric the table is sorted by (test split) [default: roc-auc;
    /// with --classes, macro-f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Also score each entry's seed ensemble: the mean of its seeds'
    /// probabilities (its threshold chosen on the training rows, as each
    /// run's).
    #[arg(long)]
    pub ensemble: bool,
    /// Runs at a time [default: the number of cores].
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// One entry of the comparison: an activation or an optimizer.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    activation: String,
    optimizer: String,
}

/// One trained run.
#[derive(Clone, Debug)]
struct Run {
    seed: u64,
    scored: Scored,
    seconds: f64,
    epoch_costs: Vec<f64>,
}

/// A run's test figures, with its probabilities on the training and the
/// test rows (which an ensemble averages).
#[derive(Clone, Debug)]
enum Scored {
    Binary { metrics: Metrics, train: Vec<f64>, test: Vec<f64> },
    Classes { metrics: MulticlassMetrics, train: Array2<f64>, test: Array2<f64> },
}

impl Scored {
    /// The table's figures: (compare.json key, column header, value).
    fn figures(&self) -> Vec<(&'static str, &'static str, f64)> {
        match self {
            Scored::Binary { metrics: m, .. } => vec![
                ("roc_auc", "ROC-AUC", m.roc_auc.unwrap_or(f64::NAN)),
                ("average_precision", "avg precision", m.average_precision.unwrap_or(f64::NAN)),
                ("f1", "F1", m.f1),
            ],
            Scored::Classes { metrics: m, .. } => {
                vec![("macro_f1", "macro-F1", m.macro_f1), ("accuracy", "accuracy", m.accuracy)]
            }
        }
    }

    fn metrics_json(&self) -> serde_json::Value {
        match self {
            Scored::Binary { metrics, .. } => serde_json::json!(metrics),
            Scored::Classes { metrics, .. } => serde_json::json!(metrics),
        }
    }
}

/// Runs `rain compare`.
pub fn run(args: &Args) -> Result<(), RainError> {
    match args.train.dtype {
        Dtype::F32 => run_typed::<f32>(args),
        Dtype::F64 => run_typed::<f64>(args),
    }
}

fn entries(args: &Args) -> Result<Vec<Entry>, RainError> {
    let list: Vec<Entry> = match &args.activations {
        Some(text) => split_top_level(text)
            .into_iter()
            .map(|a| {
                // Every name is parsed before any work, so a bad one fails alone.
                Activation::<f64>::parse(&a).map_err(NnError::from)?;
                Ok(Entry { name: a.clone(), activation: a, optimizer: value_name(&args.train.optimizer) })
            })
            .collect::<Result<_, RainError>>()?,
        None => args
            .optimizers
            .iter()
            .map(|o| Entry {
                name: value_name(o),
                activation: args.train.model.activation.clone(),
                optimizer: value_name(o),
            })
            .collect(),
    };
    if list.is_empty() {
        return Err(RainError::bad("--activations", "", "name at least one activation or optimizer"));
    }
    for (i, e) in list.iter().enumerate() {
        if list[..i].iter().any(|f| f.name == e.name) {
            return Err(RainError::bad("compare list", &e.name, "is listed twice"));
        }
    }
    Ok(list)
}

fn run_typed<T: Element>(args: &Args) -> Result<(), RainError> {
    if !(1..=1000).contains(&args.seeds) {
        return Err(RainError::bad("--seeds", args.seeds, "must be from 1 to 1000"));
    }
    if args.train.data.seed.checked_add(args.seeds as u64 - 1).is_none() {
        return Err(RainError::bad("--seed", args.train.data.seed, "leaves no room for --seeds more seeds"));
    }
    // Flags of `rain train` that a comparison does not use: refused, not ignored.
    for (given, flag) in [
        (args.train.threshold.is_some(), "--threshold"),
        (args.train.strict_check, "--strict-check"),
        (args.train.check_grads, "--check-grads"),
    ] {
        if given {
            return Err(RainError::bad(flag, "", "rain compare does not use it (thresholds are chosen per run by F1 on the training rows; no gradient check runs)"));
        }
    }
    if args.jobs == Some(0) {
        return Err(RainError::bad("--jobs", 0, "must be at least 1"));
    }
    let list = entries(args)?;
    let setup = TrainSetup::new(&args.train, "rain-compare")?;
    let classes = matches!(setup.spec.target, Target::Classes(_));
    let metric = args.metric.unwrap_or(if classes { Metric::MacroF1 } else { Metric::RocAuc });
    let multiclass_metric = matches!(metric, Metric::MacroF1 | Metric::Accuracy);
    if classes != multiclass_metric {
        let why = if classes {
            "scores a --classes comparison by macro-f1 or accuracy"
        } else {
            "is a multi-class metric: compare --classes runs with it"
        };
        return Err(RainError::bad("--metric", value_name(&metric), why));
    }
    // Each entry's network and optimizer, checked before any work.
    let setups: Vec<TrainSetup> = list
        .iter()
        .map(|e| {
            let mut a = args.train.clone();
            a.model.activation = e.activation.clone();
            a.optimizer = OptimizerName::from_str(&e.optimizer, false).expect("a listed optimizer");
            a.quiet = true;
            a.no_check = true;
            TrainSetup::new(&a, "rain-compare")
        })
        .collect::<Result<_, _>>()?;
    let ds = data::load(&setup.spec)?;
    let m = ds.train_x.ncols();
    let batch = setup.cfg.batch_size.unwrap_or(m).min(m);
    let threads = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // Up to `threads` runs are in memory at once.
    check_fits(&setup.arch, batch * threads, std::mem::size_of::<T>())?;
    let staged = Staged::folder(&setup.out, COMPARE_FILES)?;
    if !args.train.quiet && !args.train.json {
        println!("{}", ds.report.describe(&setup.spec));
    }
    let stdz = Standardization::fit(ds.train_x.view(), &setup.spec.features)?;
    let data = Prepared::new(&ds, &stdz, classes)?;

    let jobs: Vec<(usize, u64)> = (0..list.len())
        .flat_map(|e| (0..args.seeds as u64).map(move |k| (e, args.train.data.seed + k)))
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Run, RainError>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    let bar = if args.train.quiet || args.train.json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(jobs.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("  training {bar:30} {pos}/{len} runs [{elapsed}]")
            .expect("template"),
    );
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(e, seed)) = jobs.get(i) else { break };
                    let r = one_run::<T>(&setups[e], seed, &data);
                    let failed = r.is_err();
                    results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                    bar.inc(1);
                    if failed {
                        // The first error ends the comparison: no more runs.
                        next.store(jobs.len(), Ordering::Relaxed);
                    }
                }
            });
        }
    });
    bar.finish_and_clear();
    let wall = t0.elapsed().as_secs_f64();
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); list.len()];
    for (slot, &(e, _)) in results.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().zip(&jobs) {
        match slot {
            Some(Ok(run)) => runs[e].push(run),
            Some(Err(err)) => return Err(err),
            None => {}
        }
    }

    let summary: Vec<Summary> = list
        .iter()
        .zip(&runs)
        .map(|(e, r)| Summary::of(e, r, (args.ensemble && !r.is_empty()).then(|| ensemble(r, &data))))
        .collect();
    let mut order: Vec<usize> = (0..summary.len()).collect();
    let key = |s: &Summary| s.mean_of(metric.key());
    // Best first; an undefined metric (NaN) last.
    order.sort_by(|&a, &b| {
        let (x, y) = (key(&summary[a]), key(&summary[b]));
        x.is_nan().cmp(&y.is_nan()).then(y.total_cmp(&x))
    });
    let table = table(&summary, &order, args.seeds);
    let what = if args.activations.is_some() { "activations" } else { "optimizers" };
    let scored = super::common::scored_rows(&setup.spec);
    let how = format!(
        "{} runs ({} {what} x {} seeds) on {threads} thread(s) in {wall:.1} s; {scored}, mean +- sd over the seeds, sorted by {}",
        jobs.len(),
        list.len(),
        args.seeds,
        value_name(&metric)
    );
    // The shared model line, with the compared part named as such.
    let line = if args.activations.is_some() {
        setup.model_line.replacen(
            &format!(", {} hidden,", args.train.model.activation),
            ", each activation below,",
            1,
        )
    } else {
        setup.model_line.replacen(
            &format!("; {} (lr", value_name(&args.train.optimizer)),
            "; each optimizer below (lr",
            1,
        )
    };
    if !args.train.quiet && !args.train.json {
        println!("\n{line}\n{how}:\n{table}");
    }

    let bands: Vec<Band> = order.iter().map(|&i| band_of(&summary[i].name, &runs[i])).collect();
    let title = format!("training cost per epoch, {} seeds (mean; band: lowest to highest)", args.seeds);
    let seeds = format!("seeds {} to {}", args.train.data.seed, args.train.data.seed + args.seeds as u64 - 1);
    let run = format!("{}\n{scored}; {seeds}", line.trim_start_matches("model: "));
    let y_label = if setup.cfg.loss.l2() > 0.0 { "training cost (+ L2 penalty)" } else { "training cost" };
    let frame = plots::Frame { integer_x: true, ..plots::Frame::new(&title, &run, "epoch", y_label) };
    let svg = plots::bands(&frame, &bands).map_err(|e| RainError::bad("plot", "compare.svg", e))?;
    let json = serde_json::json!({
        "schema": "rain-compare/1",
        "compared": what,
        "metric": value_name(&metric),
        "config": setup.config_json,
        "seeds": (0..args.seeds as u64).map(|k| args.train.data.seed + k).collect::<Vec<_>>(),
        "threads": threads,
        "wall_seconds": wall,
        "entries": order.iter().map(|&i| summary[i].json(&runs[i])).collect::<Vec<_>>(),
    });
    staged.write("compare.json", serde_json::to_string_pretty(&json).expect("json").as_bytes())?;
    staged.write("compare.svg", svg.as_bytes())?;
    let mut page = crate::report::Page::new(&format!("rain compare: {}", setup.out.display()));
    page.text("Data and cleaning", &super::common::data_text(&setup, &ds, &stdz));
    let mut results = format!("{line}\n{how}:\n{table}");
    if let Some(b) = super::common::published_baselines(&setup.spec) {
        results += &format!("\n{b}");
    }
    page.text("Comparison", &results);
    page.plots("Training curves", &[&svg]);
    page.config("Configuration (each entry changes the compared part)", &setup.config_json);
    staged.write("report.html", page.render(&crate::report::command_line()).as_bytes())?;
    staged.commit()?;
    if args.train.json {
        println!("{}", serde_json::to_string(&json).expect("json"));
    } else if !args.train.quiet {
        println!("wrote {}/{{compare.json, compare.svg, report.html}}", setup.out.display());
    }
    Ok(())
}

/// The standardised data every run shares.
struct Prepared {
    x_train: Array2<f64>,
    y_train: Array2<f64>,
    x_test: Array2<f64>,
    train_labels: Vec<bool>,
    test_labels: Vec<bool>,
    /// For `--classes`: the classes of the training and test rows, and the
    /// log of each class's training share (the logit adjustment's prior).
    classes: Option<(Vec<usize>, Vec<usize>, Vec<f64>)>,
}

impl Prepared {
    fn new(ds: &Dataset, stdz: &Standardization, classes: bool) -> Result<Self, RainError> {
        let truth = |y: &Array2<f64>| y.iter().map(|&v| v as usize).collect::<Vec<usize>>();
        let classes = classes.then(|| {
            let m = ds.train_y.len() as f64;
            let log_prior = ds.report.train_classes.iter().map(|&n| (n as f64 / m).ln()).collect();
            (truth(&ds.train_y), truth(&ds.test_y), log_prior)
        });
        Ok(Prepared {
            x_train: stdz.apply(ds.train_x.view())?,
            y_train: ds.train_y.clone(),
            x_test: stdz.apply(ds.test_x.view())?,
            train_labels: ds.train_y.iter().map(|&v| v == 1.0).collect(),
            test_labels: ds.test_y.iter().map(|&v| v == 1.0).collect(),
            classes,
        })
    }

    /// Test figures from probabilities on the training and test rows, the
    /// decision chosen on the training rows as `rain train` chooses it.
    fn score_binary(&self, train: Vec<f64>, test: Vec<f64>) -> Scored {
        let threshold = threshold_on_training(&self.train_labels, &train);
        Scored::Binary { metrics: Metrics::compute(&self.test_labels, &test, threshold), train, test }
    }

    fn score_classes(&self, train: Array2<f64>, test: Array2<f64>) -> Scored {
        let (train_truth, test_truth, log_prior) = self.classes.as_ref().expect("a --classes comparison");
        let tau = best_tau_on_training(&train, train_truth, log_prior);
        let metrics =
            MulticlassMetrics::compute(test_truth, &adjusted(&test, log_prior, tau), log_prior.len());
        Scored::Classes { metrics, train, test }
    }
}

/// Trains one entry with one seed and scores it on the test split, the
/// threshold chosen on the training rows (as `rain train` does).
fn one_run<T: Element>(setup: &TrainSetup, seed: u64, data: &Prepared) -> Result<Run, RainError> {
    let mut model = Model::<T>::new(&setup.arch, setup.init, seed)?;
    let mut opt = setup.optimizer::<T>()?;
    let cfg = tapegrad::nn::TrainConfig { seed, ..setup.cfg.clone() };
    let (x, y) = (data.x_train.mapv(T::cast), data.y_train.mapv(T::cast));
    let t0 = Instant::now();
    let history = tapegrad::nn::fit(&mut model, opt.as_mut(), x.view(), y.view(), &cfg, |_| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    let scored = if data.classes.is_some() {
        let p = |x: &Array2<f64>| -> Result<Array2<f64>, RainError> {
            Ok(model.predict(x.mapv(T::cast).view())?.mapv(|v| v.as_f64()))
        };
        data.score_classes(p(&data.x_train)?, p(&data.x_test)?)
    } else {
        data.score_binary(scores(&model, &data.x_train)?, scores(&model, &data.x_test)?)
    };
    Ok(Run { seed, scored, seconds, epoch_costs: history.epoch_costs })
}

/// The seed ensemble of `runs` (at least one): the mean of their
/// probabilities, scored as one run.
fn ensemble(runs: &[Run], data: &Prepared) -> Scored {
    let n = runs.len() as f64;
    match &runs[0].scored {
        Scored::Binary { .. } => {
            let mean = |test: bool| -> Vec<f64> {
                let mut sum: Vec<f64> = Vec::new();
                for r in runs {
                    let Scored::Binary { train, test: t, .. } = &r.scored else { unreachable!("one kind") };
                    let v = if test { t } else { train };
                    sum.resize(v.len(), 0.0);
                    sum.iter_mut().zip(v).for_each(|(s, x)| *s += x / n);
                }
                sum
            };
            data.score_binary(mean(false), mean(true))
        }
        Scored::Classes { train, test, .. } => {
            let (mut tr, mut te) = (Array2::zeros(train.dim()), Array2::zeros(test.dim()));
            for r in runs {
                let Scored::Classes { train, test, .. } = &r.scored else { unreachable!("one kind") };
                tr.scaled_add(1.0 / n, train);
                te.scaled_add(1.0 / n, test);
            }
            data.score_classes(tr, te)
        }
    }
}

/// An entry's figures over its seeds: (mean, standard deviation).
struct Summary {
    name: String,
    /// (compare.json key, column header, (mean, sd)).
    figures: Vec<(&'static str, &'static str, (f64, f64))>,
    seconds: (f64, f64),
    /// The seed ensemble's figures (`--ensemble`).
    ensemble: Option<Scored>,
}

/// Mean and sample standard deviation (0 for one value); NaN if any is.
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

impl Summary {
    /// `runs` holds at least one run.
    fn of(e: &Entry, runs: &[Run], ensemble: Option<Scored>) -> Self {
        let per_run: Vec<Vec<(&'static str, &'static str, f64)>> =
            runs.iter().map(|r| r.scored.figures()).collect();
        let figures = per_run[0]
            .iter()
            .enumerate()
            .map(|(i, &(key, header, _))| {
                (key, header, mean_sd(&per_run.iter().map(|f| f[i].2).collect::<Vec<_>>()))
            })
            .collect();
        Summary {
            name: e.name.clone(),
            figures,
            seconds: mean_sd(&runs.iter().map(|r| r.seconds).collect::<Vec<_>>()),
            ensemble,
        }
    }

    /// The mean of the figure `key` over the seeds.
    fn mean_of(&self, key: &str) -> f64 {
        self.figures.iter().find(|f| f.0 == key).map_or(f64::NAN, |f| f.2 .0)
    }

    fn json(&self, runs: &[Run]) -> serde_json::Value {
        let mut out = serde_json::json!({ "name": self.name });
        for (key, _, (mean, sd)) in &self.figures {
            out[*key] = serde_json::json!({"mean": mean, "sd": sd});
        }
        out["train_seconds"] = serde_json::json!({"mean": self.seconds.0, "sd": self.seconds.1});
        out["ensemble"] = self.ensemble.as_ref().map_or(serde_json::Value::Null, Scored::metrics_json);
        out["runs"] = runs
            .iter()
            .map(|r| {
                serde_json::json!({
                    "seed": r.seed, "metrics": r.scored.metrics_json(), "train_seconds": r.seconds,
                    "epoch_costs": r.epoch_costs,
                })
            })
            .collect();
        out
    }
}

fn table(s: &[Summary], order: &[usize], seeds: usize) -> String {
    let width = s.iter().map(|e| e.name.chars().count()).max().unwrap_or(5).max(5);
    let mut out = format!("  {:<width$}", "entry");
    for (_, header, _) in &s[0].figures {
        out += &format!("  {header:>17}");
    }
    out += &format!("  {:>9}", "train s");
    // The ensemble's first two figures (ROC-AUC / AP, or macro-F1 / accuracy).
    let ensemble_header = s[0].ensemble.as_ref().map(|m| {
        let f = m.figures();
        let short = |h: &'static str| if h == "avg precision" { "AP" } else { h };
        format!("ensemble {} / {}", short(f[0].1), short(f[1].1))
    });
    if let Some(h) = &ensemble_header {
        out += &format!("  {h:>28}");
    }
    out.push('\n');
    let pm = |(m, sd): (f64, f64)| if seeds > 1 { format!("{m:.4} +- {sd:.4}") } else { format!("{m:.4}") };
    for &i in order {
        let e = &s[i];
        out += &format!("  {:<width$}", e.name);
        for (_, _, v) in &e.figures {
            out += &format!("  {:>17}", pm(*v));
        }
        out += &format!("  {:>9.2}", e.seconds.0);
        if let Some(m) = &e.ensemble {
            let f = m.figures();
            out += &format!("  {:>28}", format!("{:.4} / {:.4}", f[0].2, f[1].2));
        }
        out.push('\n');
    }
    out
}

/// An entry's epoch costs over its seeds: mean, lowest and highest per
/// epoch (over the runs that reached that epoch).
fn band_of(name: &str, runs: &[Run]) -> Band {
    let epochs = runs.iter().map(|r| r.epoch_costs.len()).max().unwrap_or(0);
    let mut band = Band { name: name.to_string(), mean: Vec::new(), lo: Vec::new(), hi: Vec::new() };
    for e in 0..epochs {
        let v: Vec<f64> = runs.iter().filter_map(|r| r.epoch_costs.get(e).copied()).collect();
        let x = (e + 1) as f64;
        band.mean.push((x, v.iter().sum::<f64>() / v.len() as f64));
        band.lo.push((x, v.iter().copied().fold(f64::INFINITY, f64::min)));
        band.hi.push((x, v.iter().copied().fold(f64::NEG_INFINITY, f64::max)));
    }
    band
}
