//! What the subcommands share: the argument groups for data and model,
//! the file helpers, the one check of a threshold, and the gradient
//! check's lines. Subcommand files import from here, never from each
//! other or from `main.rs`.

use crate::plots::{self, Series};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rain::data::{Classes, Missing, PositiveRule, Spec, Split, Target};
use rain::error::RainError;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tapegrad::nn::check::GradCheck;
use tapegrad::nn::{
    fit, Activation, Architecture, EarlyStopping, Head, History, Init, Loss, Model, NnError, Optimizer,
    Schedule, TrainConfig,
};
use tapegrad::tensor::ndarray::{s, Array2};
use tapegrad::tensor::Element;

/// The activations section of `train`, `check` and `activation --help`:
/// the built-in names and the formula grammar, from the library's own
/// lists.
pub fn activations_help() -> String {
    format!(
        "Activations: a built-in name ({}; leaky_relu:A, elu:A, snake:A and squareplus:B take a parameter) \
         or a formula in x: numbers, x, pi, e, + - * / ^, comparisons < <= > >= == != (1 or 0), parentheses \
         and the functions {}; e.g. \"x * sigmoid(1.702 * x)\" or \"where(x > 0, x, 0.1 * x)\". \
         Derivatives come from autodiff.",
        tapegrad::nn::BUILTIN_NAMES.join(", "),
        tapegrad::nn::Formula::functions().join(", ")
    )
}

/// Splits a comma-separated list at the commas outside parentheses, so
/// that a formula such as `max(x, 0)` stays one item; items are trimmed
/// and empty ones dropped.
pub fn split_top_level(text: &str) -> Vec<String> {
    let (mut items, mut depth, mut cur) = (Vec::new(), 0i32, String::new());
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth <= 0 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// The name a value enum is written with on the command line.
pub fn value_name<E: ValueEnum>(e: &E) -> String {
    e.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
}

/// The optimizers (see `tapegrad::nn::optim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerName {
    // No doc comments on the values: clap would list them one per line.
    Gd,
    Momentum,
    Nesterov,
    Rmsprop,
    Adam,
    Adamw,
}

/// The learning-rate schedules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScheduleName {
    Constant,
    Cosine,
    Step,
    Exp,
}

/// The weight initialisers (see `tapegrad::nn::Init`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum InitName {
    Zeros,
    Guide,
    He,
    HeUniform,
    Xavier,
    XavierUniform,
}

/// The element type of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    // No doc comments on the values: clap would list them in --help.
    F32,
    F64,
}

/// Where the data comes from and how it is cut.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// CSV file with a header row.
    #[arg(long, default_value_os_t = default_data())]
    pub data: PathBuf,
    /// Feature columns, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "COLUMN,...", default_value = "temp,humid,pressure")]
    pub features: Vec<String>,
    /// Label column.
    #[arg(long, default_value = "precip", value_name = "COLUMN")]
    pub label: String,
    /// Which label values are positive: >v, >=v, <v, <=v, =text, contains:text.
    #[arg(long, default_value = ">0", value_name = "RULE", allow_hyphen_values = true)]
    pub positive: String,
    /// Instead of --positive: classes of the label at increasing
    /// thresholds in inches per hour (class k: T_k < precip <= T_(k+1)),
    /// trained with a softmax head. Alone, --classes is 0,0.02: no rain,
    /// light (0.01-0.02) and heavy (0.03 and more), 0.02 being the median
    /// of the rainy training hours.
    #[arg(
        long,
        value_name = "T1,T2",
        value_parser = parse_classes,
        conflicts_with = "positive",
        num_args = 0..=1,
        default_missing_value = DEFAULT_CLASSES
    )]
    pub classes: Option<Classes>,
    /// Train where COLUMN is in LO-HI, test elsewhere; with :TLO-THI, test
    /// there only (a validation split: month:1-8:9-10).
    #[arg(
        long,
        default_value = "month:1-10",
        value_name = "COLUMN:LO-HI[:TLO-THI]",
        conflicts_with = "test_fraction"
    )]
    pub split: String,
    /// Instead of --split: a random share of rows for test.
    #[arg(long, value_name = "SHARE", allow_hyphen_values = true)]
    pub test_fraction: Option<f64>,
    /// Seed for the random split, initialisation, shuffles and dropout.
    #[arg(long, default_value_t = 0, value_name = "N", allow_hyphen_values = true)]
    pub seed: u64,
    /// Rows with a missing feature: drop them, or fill with the training mean.
    #[arg(long, value_enum, default_value_t = Missing::Drop)]
    pub missing: Missing,
}

/// The network.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Hidden layer sizes, comma-separated ("none" for logistic regression).
    #[arg(long, default_value = "16", value_name = "N,N,...|none", value_parser = parse_layers)]
    pub layers: Layers,
    /// Hidden activation: a built-in name or a formula in x (see "Activations" below).
    #[arg(long, default_value = "relu", value_name = "NAME|FORMULA", allow_hyphen_values = true)]
    pub activation: String,
    /// Weight initialiser ("guide" is the guide's randn * 0.01).
    #[arg(long, value_enum, default_value_t = InitName::He)]
    pub init: InitName,
}

/// Hidden layer sizes, each at least 1.
#[derive(Clone, Debug, PartialEq)]
pub struct Layers(pub Vec<usize>);

/// Examples per update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Batch {
    /// The whole training set (the guide's loop).
    Full,
    /// Mini-batches of this size.
    Size(usize),
}

/// The shipped weather data, the default `--data`.
pub fn default_data() -> PathBuf {
    rain::default_data()
}

/// The thresholds of `--classes` given without a value: no rain, light
/// (0.01-0.02 in/h), heavy (0.03 in/h and more). The data records
/// precipitation in steps of 0.01 inches; 0.02 is the median of the rainy
/// training hours, so the two rain classes are nearly equal (333 and 322
/// of the 655 rainy training hours).
pub const DEFAULT_CLASSES: &str = "0,0.02";

/// Parses `--classes` (see [`Classes::parse`]).
pub fn parse_classes(s: &str) -> Result<Classes, String> {
    Classes::parse(s)
}

/// Parses `--layers`: sizes separated by commas, or `none`.
pub fn parse_layers(s: &str) -> Result<Layers, String> {
    let t = s.trim();
    if t == "none" {
        return Ok(Layers(Vec::new()));
    }
    if t.is_empty() {
        return Err(
            "empty layer list: give sizes such as 16 or 20,7,5, or \"none\" for logistic regression".into()
        );
    }
    t.split(',')
        .map(|p| match p.trim().parse::<usize>() {
            Ok(0) => Err(format!("bad layer list '{s}': a layer needs at least one unit")),
            Ok(n) if n > 100_000 => Err(format!("bad layer list '{s}': {n} units is too many")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!(
                "bad layer list '{s}': '{}' is not a positive whole number (e.g. 20,7,5)",
                p.trim()
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Layers)
}

/// Parses `--batch-size`: a whole number of at least 1, or `full`.
pub fn parse_batch(s: &str) -> Result<Batch, String> {
    if s == "full" {
        return Ok(Batch::Full);
    }
    match s.parse::<usize>() {
        Ok(0) => Err("batch size 0: must be at least 1 (or \"full\")".into()),
        Ok(n) => Ok(Batch::Size(n)),
        Err(_) => Err(format!("'{s}' is not a batch size (a positive whole number or \"full\")")),
    }
}

impl DataArgs {
    /// The data request these arguments describe.
    pub fn spec(&self) -> Result<Spec, RainError> {
        let split = match self.test_fraction {
            Some(f) => Split::fraction(f, self.seed)?,
            None => Split::parse_range(&self.split)?,
        };
        Ok(Spec {
            path: self.data.clone(),
            features: self.features.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
            label: self.label.clone(),
            target: match &self.classes {
                Some(c) => Target::Classes(c.clone()),
                None => Target::Binary(PositiveRule::parse(&self.positive)?),
            },
            split,
            missing: self.missing,
        })
    }
}

impl ModelArgs {
    /// The guide's network for `inputs` features with these hidden layers,
    /// and the head the target needs: binary, or softmax over its classes.
    pub fn architecture(&self, inputs: usize, target: &Target) -> Result<Architecture, RainError> {
        // Parse once here so a bad formula fails before any work.
        Activation::<f64>::parse(&self.activation).map_err(NnError::from)?;
        let arch = match target {
            Target::Binary(_) => Architecture::guide(inputs, &self.layers.0),
            Target::Classes(c) => Architecture::softmax(inputs, &self.layers.0, c.count()),
        };
        Ok(arch.with_hidden_activation(&self.activation))
    }
    /// The weight initialiser.
    pub fn init(&self) -> Result<Init, RainError> {
        let name = value_name(&self.init);
        name.parse::<Init>().map_err(|e| RainError::bad("--init", name, e))
    }
}

/// The one check of a label threshold, from the command line or a model
/// file: a probability.
pub fn threshold(t: f64) -> Result<f64, RainError> {
    if (0.0..=1.0).contains(&t) {
        Ok(t)
    } else {
        Err(RainError::bad("--threshold", t, "must be in [0, 1]"))
    }
}

/// One line per layer: the largest differences of autodiff against the
/// guide's formulas and against finite differences, and the verdict.
pub fn grad_lines(check: &GradCheck) -> String {
    let mut s = String::new();
    for (l, layer) in check.layers().iter().enumerate() {
        let g = layer.vs_guide.map_or("n/a".to_string(), |v| format!("{v:.1e}"));
        s += &format!(
            "    layer {}: max rel diff autodiff vs guide {g}, vs finite differences {:.1e}: {}\n",
            l + 1,
            layer.vs_finite_differences,
            if layer.passed { "ok" } else { "FAIL" }
        );
    }
    s
}

/// Whether the gradients agree, with the tolerances.
pub fn grad_verdict(check: &GradCheck) -> String {
    let (guide, fd) = (GradCheck::GUIDE_TOLERANCE, GradCheck::FINITE_DIFFERENCE_TOLERANCE);
    let how = format!("guide: {guide}; finite differences: {fd}; scale: the largest gradient element");
    if check.passed() {
        format!("gradients agree ({how})")
    } else {
        format!("GRADIENTS DISAGREE beyond the tolerances ({how})")
    }
}

/// Runs the gradient check on the first `n` columns (at most 64) of the
/// training data, with a progress bar on stderr once it has taken a second
/// (when `human`).
pub fn gradient_check<T: Element>(
    model: &Model<T>,
    x: &Array2<f64>,
    y: &Array2<f64>,
    loss: &tapegrad::nn::Loss,
    n: usize,
    human: bool,
) -> Result<GradCheck, RainError> {
    let n = n.min(x.ncols());
    let (xc, yc) = (x.slice(s![.., ..n]), y.slice(s![.., ..n]));
    let bar = ProgressBar::hidden();
    bar.set_style(
        ProgressStyle::with_template("  gradient check {bar:30} {pos}/{len} cost evaluations [{elapsed}]")
            .expect("valid template"),
    );
    let (t0, mut shown) = (Instant::now(), false);
    let check = GradCheck::run_with_progress(model, xc, yc, loss, |done, total| {
        if human && !shown && t0.elapsed() > Duration::from_secs(1) {
            bar.set_draw_target(ProgressDrawTarget::stderr());
            shown = true;
        }
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(check)
}

/// The bytes of memory training `arch` in `T` takes, roughly: the
/// parameters with their gradients and optimizer state, and a batch's
/// activations and their gradients.
pub fn training_bytes(arch: &Architecture, batch: usize, element: usize) -> f64 {
    let sizes = arch.sizes();
    let params: f64 = sizes.windows(2).map(|w| (w[1] * (w[0] + 1)) as f64).sum();
    let units: f64 = sizes.iter().map(|&n| n as f64).sum();
    (params * 6.0 + units * batch as f64 * 6.0) * element as f64
}

/// Refuses a network that would not fit in the memory this machine has
/// available (read from /proc/meminfo; no check where it cannot be read).
pub fn check_fits(arch: &Architecture, batch: usize, element: usize) -> Result<(), RainError> {
    let need = training_bytes(arch, batch, element);
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        let line = t.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024.0)
    });
    match available {
        Some(have) if need > have => Err(RainError::bad(
            "--layers",
            arch.sizes().iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            format!(
                "training this network on batches of {batch} needs about {:.1} GB, and this machine has {:.1} GB available; \
                 use fewer or narrower layers or a smaller --batch-size",
                need / 1e9,
                have / 1e9
            ),
        )),
        _ => Ok(()),
    }
}

/// The files `rain train` writes into its folder (and may replace there).
pub const TRAIN_FILES: &[&str] =
    &["model.json", "metrics.json", "cost.svg", "roc.svg", "pr.svg", "report.html"];

/// The files `rain compare` writes into its folder.
pub const COMPARE_FILES: &[&str] = &["compare.json", "compare.svg", "report.html"];

/// A binary model's probability of the positive class for each column of
/// standardised inputs `x`.
pub fn scores<T: Element>(model: &Model<T>, x: &Array2<f64>) -> Result<Vec<f64>, RainError> {
    Ok(model.predict_proba(x.mapv(T::cast).view())?.iter().map(|v| v.as_f64()).collect())
}

/// The label threshold rain uses when none is given: the best F1 on the
/// training rows (never the test split), 0.5 when no row is positive.
pub fn best_f1_on_training<T: Element>(
    model: &Model<T>,
    x_train: &Array2<f64>,
    train_labels: &[bool],
) -> Result<f64, RainError> {
    Ok(threshold_on_training(train_labels, &scores(model, x_train)?))
}

/// [`best_f1_on_training`] from the training rows' probabilities.
pub fn threshold_on_training(labels: &[bool], scores: &[f64]) -> f64 {
    tapegrad::nn::metrics::best_f1_threshold(labels, scores).map_or(0.5, |(t, _)| t)
}

/// The class of each column of probabilities `p` `(K, m)` after logit
/// adjustment: `argmax_k ln p_k - tau ln prior_k` (the same as `z_k - tau
/// ln prior_k`, since `ln p_k = z_k - logsumexp(z)`). The first of equals.
pub fn adjusted(p: &Array2<f64>, log_prior: &[f64], tau: f64) -> Vec<usize> {
    p.columns()
        .into_iter()
        .map(|col| {
            let score = |k: usize| col[k].ln() - tau * log_prior[k];
            (1..col.len()).fold(0, |best, k| if score(k) > score(best) { k } else { best })
        })
        .collect()
}

/// The logit adjustment `tau` in `0..=2` (step 0.05) with the best
/// macro-F1 on the training rows, from their probabilities `p` `(K, m)`
/// and classes: the first of equals, so the smallest adjustment.
pub fn best_tau_on_training(p: &Array2<f64>, truth: &[usize], log_prior: &[f64]) -> f64 {
    let k = log_prior.len();
    let mut best = (0.0, f64::NEG_INFINITY);
    for step in 0..=40 {
        let tau = step as f64 * 0.05;
        let f1 = tapegrad::nn::metrics::MulticlassMetrics::compute(truth, &adjusted(p, log_prior, tau), k)
            .macro_f1;
        if f1 > best.1 {
            best = (tau, f1);
        }
    }
    best.0
}

/// What to do with the gradient check around training.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckMode {
    /// No check (`--no-check`).
    Skip,
    /// Check and report; a disagreement is printed, training goes on.
    Report,
    /// Check; a disagreement ends the run with exit status 1
    /// (`--strict-check`).
    Strict,
}

/// What a training run was asked for, checked, shared by the binary and
/// the multi-class runs of `rain train`.
pub struct TrainSetup {
    /// The data request.
    pub spec: Spec,
    /// The network.
    pub arch: Architecture,
    /// The weight initialiser.
    pub init: Init,
    /// Training configuration (loss, schedule, batches, ...).
    pub cfg: TrainConfig,
    /// The optimizer's name and learning rate (for fresh optimizers).
    pub optimizer: String,
    /// The learning rate.
    pub lr: f64,
    /// Print the human report.
    pub human: bool,
    /// Print the full gradient tables.
    pub check_grads: bool,
    /// The gradient check around training.
    pub check: CheckMode,
    /// The updates the run will make, for the progress bar.
    pub updates: u64,
    /// The output folder.
    pub out: PathBuf,
    /// The `config` object of metrics.json.
    pub config_json: serde_json::Value,
    /// One line describing the model and its training.
    pub model_line: String,
}

impl TrainSetup {
    /// Which run made a chart: the model line and the seed, on two lines
    /// when long.
    pub fn run_line(&self) -> String {
        let line = self.model_line.trim_start_matches("model: ");
        let seed = format!("seed {}", self.cfg.seed);
        match line.split_once("; ") {
            Some((net, rest)) if line.len() > 80 => format!("{net}\n{rest}; {seed}"),
            _ => format!("{line}; {seed}"),
        }
    }

    /// Prints a line of the human report.
    pub fn say(&self, s: &str) {
        if self.human {
            println!("{s}");
        }
    }

    /// A fresh optimizer of the run's kind.
    pub fn optimizer<T: Element>(&self) -> Result<Box<dyn Optimizer<T>>, RainError> {
        Ok(tapegrad::nn::optim::by_name::<T>(&self.optimizer, self.lr)?)
    }
}

/// A trained model's record: the training history, the two gradient
/// checks (unless skipped) and the training time.
pub struct Trained {
    /// Costs per update and epoch, validation costs, early stopping.
    pub history: History,
    /// The check before training.
    pub before: Option<GradCheck>,
    /// The check after training.
    pub after: Option<GradCheck>,
    /// Seconds of training.
    pub seconds: f64,
}

/// The examples of the gradient check.
const CHECK_EXAMPLES: usize = 64;

/// Checks gradients (as `setup.check` says), trains `model` on standardised
/// inputs `x` and labels `y`, and checks again, reporting each step.
pub fn check_and_train<T: Element>(
    setup: &TrainSetup,
    model: &mut Model<T>,
    x: &Array2<f64>,
    y: &Array2<f64>,
) -> Result<Trained, RainError> {
    let n = CHECK_EXAMPLES.min(x.ncols());
    let check = |model: &Model<T>, when: &'static str| -> Result<Option<GradCheck>, RainError> {
        if setup.check == CheckMode::Skip {
            return Ok(None);
        }
        let c = gradient_check(model, x, y, &setup.cfg.loss, n, setup.human)?;
        setup.say(&format!("gradient check {when} ({n} training examples, f64):"));
        setup.say(&if setup.check_grads { c.to_string() } else { grad_lines(&c) });
        setup.say(&format!("  {}", grad_verdict(&c)));
        if setup.check == CheckMode::Strict && !c.passed() {
            return Err(RainError::GradientsDisagree { when, detail: failures(&c) });
        }
        Ok(Some(c))
    };
    setup.say(&format!("\n{}", setup.model_line));
    if setup.check == CheckMode::Skip {
        setup.say("gradient check skipped (--no-check)");
    }
    let before = check(model, "before training")?;
    let (xt, yt) = (x.mapv(T::cast), y.mapv(T::cast));
    let mut opt = setup.optimizer::<T>()?;
    let t0 = Instant::now();
    let history = train_with_progress(setup, model, opt.as_mut(), &xt, &yt)?;
    let seconds = t0.elapsed().as_secs_f64();
    setup.say(&format!(
        "  trained in {seconds:.1} s: {} updates, {} epochs, final epoch cost {:.5}",
        history.iteration_costs.len(),
        history.epoch_costs.len(),
        history.epoch_costs.last().copied().unwrap_or(f64::NAN)
    ));
    if let Some(line) = early_stopping_line(&setup.cfg, &history) {
        setup.say(&format!("  {line}"));
    }
    let after = check(model, "after training")?;
    Ok(Trained { history, before, after, seconds })
}

/// The report page's sections every training run shares: the data, the
/// gradient checks and the training curve.
pub fn report_page(
    title: &str,
    setup: &TrainSetup,
    ds: &rain::data::Dataset,
    stdz: &tapegrad::nn::Standardization,
    trained: &Trained,
    cost_svg: &str,
) -> crate::report::Page {
    let mut page = crate::report::Page::new(title);
    page.text("Data and cleaning", &data_text(setup, ds, stdz));
    let mut checks = String::new();
    for (when, c) in [("before training", &trained.before), ("after training", &trained.after)] {
        if let Some(c) = c {
            checks += &format!("gradient check {when} (f64):\n{c}  {}\n\n", grad_verdict(c));
        }
    }
    if checks.is_empty() {
        checks = "skipped (--no-check)".into();
    }
    page.text("Gradient check", &checks);
    let mut training = format!(
        "{}\ntrained in {:.1} s: {} updates, {} epochs, final epoch cost {:.5}",
        setup.model_line,
        trained.seconds,
        trained.history.iteration_costs.len(),
        trained.history.epoch_costs.len(),
        trained.history.epoch_costs.last().copied().unwrap_or(f64::NAN)
    );
    if let Some(line) = early_stopping_line(&setup.cfg, &trained.history) {
        training += &format!("\n{line}");
    }
    page.text("Training", &training);
    page.plots("Training curve", &[cost_svg]);
    page
}

/// The rows a run is scored on, for titles: the test split, or the
/// second range of a validation split.
pub fn scored_rows(spec: &Spec) -> String {
    match &spec.split {
        Split::Range { column, test: Some((lo, hi)), .. } => format!("scored on {column} {lo}-{hi}"),
        _ => "test split".to_string(),
    }
}

/// The standardisation's line of the data report, to three decimals.
pub fn standardisation_line(stdz: &tapegrad::nn::Standardization) -> String {
    let rounded = |v: &[f64]| v.iter().map(|v| (v * 1000.0).round() / 1000.0).collect::<Vec<_>>();
    format!(
        "  standardised with the training rows' mean {:?} and std {:?}",
        rounded(&stdz.mean),
        rounded(&stdz.std)
    )
}

/// The data report of a run, with its standardisation (a report page's
/// first section).
pub fn data_text(
    setup: &TrainSetup,
    ds: &rain::data::Dataset,
    stdz: &tapegrad::nn::Standardization,
) -> String {
    format!("{}\n{}", ds.report.describe(&setup.spec), standardisation_line(stdz))
}

/// Published figures on the task's own split (train months 1-10, test
/// 11-12, rain's features and label), to read a run against; `None` for
/// another split or task, where they do not apply.
pub fn published_baselines(spec: &Spec) -> Option<&'static str> {
    let task = rain::task_spec(spec.path.clone());
    (spec.split == task.split && spec.features == task.features && spec.label == task.label
        && spec.target.to_string() == task.target.to_string())
    .then_some(
        "On this split, published figures: scikit-learn's MLPClassifier ROC-AUC 0.9334, average precision 0.399; \
         the guide's numpy network 0.9293, 0.375.",
    )
}

/// What early stopping did, in one line (`None` without it).
pub fn early_stopping_line(cfg: &TrainConfig, h: &History) -> Option<String> {
    let es = cfg.early_stopping?;
    let best = h.validation_costs.get(h.best_epoch.checked_sub(1)?).copied().unwrap_or(f64::NAN);
    Some(if h.stopped_early {
        format!(
            "early stopping: stopped after epoch {} (no lower validation cost for {} epochs); kept epoch {}, validation cost {best:.5}",
            h.epoch_costs.len(),
            es.patience,
            h.best_epoch
        )
    } else {
        format!(
            "early stopping: did not trigger in {} epochs; kept epoch {}, validation cost {best:.5}",
            h.epoch_costs.len(),
            h.best_epoch
        )
    })
}

/// The failing parameters of a check, for one line.
pub fn failures(check: &GradCheck) -> String {
    let mut out = Vec::new();
    let reports = check.vs_guide().into_iter().map(|r| ("guide", r));
    for (what, report) in reports.chain([("finite differences", check.vs_finite_differences())]) {
        for r in report.failures() {
            out.push(format!(
                "{} vs {what} (max |diff| {:.2e}, rel {:.2e})",
                r.name, r.max_abs_diff, r.max_rel_diff
            ));
        }
    }
    out.join(", ")
}

/// Trains `model` with a progress bar (when the report is printed).
pub fn train_with_progress<T: Element>(
    setup: &TrainSetup,
    model: &mut Model<T>,
    opt: &mut dyn Optimizer<T>,
    x: &Array2<T>,
    y: &Array2<T>,
) -> Result<History, NnError> {
    let bar = if setup.human { ProgressBar::new(setup.updates) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template(
            "  training {bar:30} {pos}/{len} updates, epoch {prefix}, cost {msg} [{elapsed}]",
        )
        .expect("valid template"),
    );
    let history = fit(model, opt, x.view(), y.view(), &setup.cfg, |p| {
        bar.set_position(p.iteration as u64);
        if p.iteration % 16 == 0 || p.epoch_cost.is_some() {
            bar.set_prefix(p.epoch.to_string());
            bar.set_message(format!("{:.5}", p.cost));
        }
    });
    bar.finish_and_clear();
    history
}

/// The gradient checks for metrics.json (see docs/metrics-json.md).
pub fn checks_json(t: &Trained) -> serde_json::Value {
    let one = |c: &Option<GradCheck>| {
        c.as_ref().map(|c| {
            serde_json::json!({
                "passed": c.passed(),
                "layers": c.layers().iter().map(|l| serde_json::json!({
                    "vs_guide_max_rel_diff": l.vs_guide,
                    "vs_finite_differences_max_rel_diff": l.vs_finite_differences,
                    "passed": l.passed,
                })).collect::<Vec<_>>(),
            })
        })
    };
    let tol = |t: tapegrad::nn::check::Tolerance| serde_json::json!({"abs": t.abs, "rel": t.rel});
    serde_json::json!({
        "skipped": t.before.is_none(),
        "tolerances": {"guide": tol(GradCheck::GUIDE_TOLERANCE), "finite_differences": tol(GradCheck::FINITE_DIFFERENCE_TOLERANCE)},
        "before": one(&t.before),
        "after": one(&t.after),
    })
}

/// The training record for metrics.json (see docs/metrics-json.md).
pub fn training_json(cfg: &TrainConfig, t: &Trained) -> serde_json::Value {
    let h = &t.history;
    let es = cfg.early_stopping.map(|es| {
        serde_json::json!({
            "patience": es.patience,
            "validation_fraction": es.validation_fraction,
            "stopped_early": h.stopped_early,
            "best_epoch": h.best_epoch,
            "best_validation_cost": h.best_epoch.checked_sub(1).and_then(|i| h.validation_costs.get(i)),
            "validation_costs": h.validation_costs,
        })
    });
    serde_json::json!({
        "updates": h.iteration_costs.len(),
        "epochs": h.epoch_costs.len(),
        "seconds": t.seconds,
        "final_epoch_cost": h.epoch_costs.last(),
        "epoch_costs": h.epoch_costs,
        "early_stopping": es,
        "replayed_updates": h.replayed,
        "replay_refused": h.replay_refused,
    })
}

/// The training curve: each update's mini-batch cost faint, its moving
/// mean over one epoch's updates bold (a full batch: the one cost per
/// epoch), the validation cost and the kept epoch with early stopping.
/// The y axis follows the bold curves; the label says whether the cost
/// holds the L2 penalty.
pub fn cost_svg(history: &History, setup: &TrainSetup) -> Result<String, RainError> {
    let n = history.iteration_costs.len();
    let epochs = history.epoch_costs.len().max(1);
    let per_epoch = n as f64 / epochs as f64;
    let iters: Vec<(f64, f64)> =
        history.iteration_costs.iter().enumerate().map(|(i, &c)| ((i + 1) as f64, c)).collect();
    let at_epochs = |v: &[f64]| -> Vec<(f64, f64)> {
        v.iter().enumerate().map(|(e, &c)| ((e + 1) as f64 * per_epoch, c)).collect()
    };
    let (epoch_points, validation) = (at_epochs(&history.epoch_costs), at_epochs(&history.validation_costs));
    // The mean of the last `window` updates (fewer at the start).
    let window = (per_epoch.round() as usize).max(1);
    let mut smooth = Vec::with_capacity(n);
    let mut sum = 0.0;
    for (i, &c) in history.iteration_costs.iter().enumerate() {
        sum += c;
        if i >= window {
            sum -= history.iteration_costs[i - window];
        }
        smooth.push(((i + 1) as f64, sum / (i + 1).min(window) as f64));
    }
    let full_batch = n <= epochs;
    let mut series = if full_batch {
        vec![Series::new("cost per epoch (full batch: one update per epoch)", &epoch_points)]
    } else {
        vec![
            Series { faint: true, ..Series::new("per update (one mini-batch)", &iters) },
            Series::new(format!("mean of the last {window} updates (one epoch)"), &smooth),
        ]
    };
    let mut title = "training cost".to_string();
    let kept;
    if !validation.is_empty() {
        series.push(Series { color: Some(2), ..Series::new("validation, per epoch", &validation) });
        let x = history.best_epoch as f64 * per_epoch;
        let shown = if full_batch { &epoch_points } else { &smooth };
        // Over the part that sets the y axis (see below).
        let (lo, hi) = shown
            .iter()
            .chain(&validation)
            .filter(|p| n < 20 || p.0 >= (n / 10) as f64)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        kept = [(x, lo), (x, hi)];
        series.push(Series {
            color: Some(3),
            dashed: true,
            ..Series::new(format!("kept: epoch {} (lowest validation cost)", history.best_epoch), &kept)
        });
        title = if history.stopped_early {
            format!("training cost (early stopping after epoch {})", history.epoch_costs.len())
        } else {
            format!("training cost (early stopping did not trigger in {} epochs)", history.epoch_costs.len())
        };
    }
    let cost = match setup.arch.head {
        Head::Softmax => "categorical cross-entropy",
        Head::Regression => "mean squared error",
        Head::Binary => "cross-entropy",
    };
    let y_label = if setup.cfg.loss.l2() > 0.0 { format!("{cost} + L2 penalty") } else { cost.to_string() };
    let run = setup.run_line();
    // The steady part sets the y axis: the first tenth of the updates
    // (the cost falling from its start) would squash it.
    let frame = plots::Frame {
        integer_x: true,
        y_from: (n >= 20).then_some((n / 10) as f64),
        ..plots::Frame::new(&title, &run, "update", &y_label)
    };
    plots::lines(&frame, &series).map_err(|e| RainError::bad("plot", "svg", e))
}

/// The head of a model, for messages.
pub fn head_name(head: Head) -> &'static str {
    match head {
        Head::Binary => "sigmoid output",
        Head::Softmax => "softmax output",
        Head::Regression => "identity output",
    }
}

/// The arguments of a training run: `rain train` (and bare `rain`), and
/// each run of `rain compare`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Element type of the model and its training.
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerName::Adam)]
    pub optimizer: OptimizerName,
    /// Learning rate.
    #[arg(long, default_value_t = 0.003, value_name = "RATE", allow_hyphen_values = true)]
    pub lr: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 30, value_name = "N", conflicts_with = "iterations")]
    pub epochs: usize,
    /// Instead of --epochs: the number of updates.
    #[arg(long, value_name = "N")]
    pub iterations: Option<usize>,
    /// Learning-rate schedule over the run (its epochs, or its updates with
    /// --iterations): cosine (to 0 at the end), constant, step (x0.5 every
    /// 10 epochs) or exp (x0.95 per epoch).
    #[arg(long, value_enum, default_value_t = ScheduleName::Cosine)]
    pub schedule: ScheduleName,
    /// Stop when the cost on a held-out 10% of the training rows has not
    /// improved for PATIENCE epochs, and keep the best epoch's weights.
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Examples per update, or "full" for the guide's full batch.
    #[arg(long, default_value = "64", value_name = "N|full", value_parser = parse_batch)]
    pub batch_size: Batch,
    /// L2 strength lambda (cost + lambda/2m sum ||W||^2, m = batch size).
    #[arg(long, default_value_t = 0.1, value_name = "LAMBDA", allow_hyphen_values = true)]
    pub l2: f64,
    /// Dropout rate on hidden layers, in [0, 1).
    #[arg(long, default_value_t = 0.1, value_name = "RATE", allow_hyphen_values = true)]
    pub dropout: f64,
    /// Weight of positive examples in the cost (imbalanced classes; not
    /// with --classes).
    #[arg(
        long,
        default_value_t = 1.0,
        value_name = "W",
        allow_hyphen_values = true,
        conflicts_with = "classes"
    )]
    pub pos_weight: f64,
    /// Threshold on the probability for the rain label. Default: for each
    /// model, the threshold with the best F1 on the training rows (with 3%
    /// rain, 0.5 would almost never say rain). Not with --classes.
    #[arg(long, value_name = "P", allow_hyphen_values = true, conflicts_with = "classes")]
    pub threshold: Option<f64>,
    /// Output folder [default: rain-out; rain-compare for compare]; a run
    /// replaces it as a whole, once everything succeeded.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// When the cost turns NaN or infinite, name the first op (and source
    /// line) that produced a non-finite value.
    #[arg(long)]
    pub trace_nonfinite: bool,
    /// Record every training step anew instead of replaying the step
    /// recorded once per batch size (the default): the same model, bit for
    /// bit, more slowly. For comparing the two, or when a step cannot be
    /// replayed (it then runs eagerly by itself).
    #[arg(long)]
    pub eager: bool,
    /// Print the full gradient tables, not one line per layer.
    #[arg(long)]
    pub check_grads: bool,
    /// Skip the gradient checks before and after training.
    #[arg(long, conflicts_with_all = ["check_grads", "strict_check"])]
    pub no_check: bool,
    /// End the run with exit status 1, writing nothing, when a gradient
    /// check fails.
    #[arg(long)]
    pub strict_check: bool,
    /// Print only errors.
    #[arg(long)]
    pub quiet: bool,
    /// Print a machine-readable summary on stdout (and nothing else): the
    /// contents of metrics.json on one line.
    #[arg(long)]
    pub json: bool,
}

impl TrainSetup {
    /// Everything of a run that can be checked before reading data, checked;
    /// the output goes to `--out` or `default_out`.
    pub fn new(args: &TrainArgs, default_out: &str) -> Result<TrainSetup, RainError> {
        let spec: Spec = args.data.spec()?;
        let arch = args.model.architecture(spec.features.len(), &spec.target)?;
        let init = args.model.init()?;
        let loss = Loss::new(args.l2, args.pos_weight)?;
        let optimizer = value_name(&args.optimizer);
        // The optimizer's rate, checked once here.
        tapegrad::nn::optim::by_name::<f64>(&optimizer, args.lr)?;
        args.threshold.map(threshold).transpose()?;
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
            eager: args.eager,
            schedule: match args.schedule {
                ScheduleName::Constant => Schedule::Constant,
                ScheduleName::Cosine => Schedule::Cosine { min_lr: 0.0 },
                ScheduleName::Step => Schedule::Step { every: 10, gamma: 0.5 },
                ScheduleName::Exp => Schedule::Exponential { gamma: 0.95 },
            },
            early_stopping: args
                .early_stopping
                .map(|patience| EarlyStopping { validation_fraction: 0.1, patience }),
            ..Default::default()
        };
        // Epochs, dropout, patience and the rest, checked once by the library
        // (and again by fit): here so that a bad value fails before any work.
        cfg.validate()?;
        let dtype = value_name(&args.dtype);
        let model_line = format!(
            "model: layers {:?}, {} hidden, {}; {} init; {} (lr {}), batch {}, {}, {}",
            arch.sizes(),
            args.model.activation,
            head_name(arch.head),
            init,
            optimizer,
            args.lr,
            match args.batch_size {
                Batch::Full => "full".to_string(),
                Batch::Size(n) => n.to_string(),
            },
            match args.iterations {
                Some(n) => format!("{n} iterations"),
                None => format!("{} epochs", args.epochs),
            },
            dtype
        );
        // The `config` object of metrics.json (docs/metrics-json.md).
        let config_json = serde_json::json!({"layers": arch.sizes(), "activation": args.model.activation,
        "head": arch.head, "init": init.to_string(), "optimizer": optimizer, "lr": args.lr,
        "schedule": value_name(&args.schedule),
        "epochs": if args.iterations.is_some() { None } else { Some(args.epochs) }, "iterations": args.iterations,
        "batch_size": match args.batch_size { Batch::Full => serde_json::json!("full"), Batch::Size(n) => serde_json::json!(n) },
        "l2": args.l2, "dropout": args.dropout, "pos_weight": args.pos_weight, "dtype": dtype, "eager": args.eager,
        "seed": args.data.seed, "early_stopping_patience": args.early_stopping});
        Ok(TrainSetup {
            spec,
            arch,
            init,
            cfg,
            optimizer,
            lr: args.lr,
            human: !args.quiet && !args.json,
            check_grads: args.check_grads,
            check: if args.no_check {
                CheckMode::Skip
            } else if args.strict_check {
                CheckMode::Strict
            } else {
                CheckMode::Report
            },
            updates: 0,
            out: args.out.clone().unwrap_or_else(|| default_out.into()),
            config_json,
            model_line,
        })
    }
}

/// The number of updates training will make on `m` examples.
pub fn updates(args: &TrainArgs, m: usize) -> u64 {
    let batches = match args.batch_size {
        Batch::Full => 1,
        Batch::Size(b) => m.div_ceil(b),
    };
    args.iterations.unwrap_or(args.epochs * batches) as u64
}
