//! What the subcommands share: the argument groups for data and model,
//! the file helpers, the one check of a threshold, and the gradient
//! check's lines. Subcommand files import from here, never from each
//! other or from `main.rs`.

use crate::plots::{self, Series};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rain::data::{Classes, Missing, PositiveRule, Spec, Split, Target};
use rain::error::RainError;
use std::path::{Path, PathBuf};
use tapegrad::nn::check::GradCheck;
use tapegrad::nn::{
    fit, Activation, Architecture, Head, History, Init, Model, NnError, Optimizer, TrainConfig,
};
use tapegrad::tensor::ndarray::Array2;
use tapegrad::tensor::Element;

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
    #[arg(long, value_delimiter = ',', default_value = "temp,humid,pressure")]
    pub features: Vec<String>,
    /// Label column.
    #[arg(long, default_value = "precip")]
    pub label: String,
    /// Which label values are positive: >v, >=v, <v, <=v, =text, contains:text.
    #[arg(long, default_value = ">0", allow_hyphen_values = true)]
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
    /// Train where COLUMN is in LO-HI, test elsewhere.
    #[arg(long, default_value = "month:1-10", conflicts_with = "test_fraction")]
    pub split: String,
    /// Instead of --split: a random share of rows for test.
    #[arg(long)]
    pub test_fraction: Option<f64>,
    /// Seed for the random split, initialisation, shuffles and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rows with a missing feature: drop them, or fill with the training mean.
    #[arg(long, value_enum, default_value_t = Missing::Drop)]
    pub missing: Missing,
}

/// The network.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Hidden layer sizes, comma-separated ("none" for logistic regression).
    #[arg(long, default_value = "16", value_parser = parse_layers)]
    pub layers: Layers,
    /// Hidden activation: a built-in name or a formula in x, e.g. "x * sigmoid(1.702 * x)".
    #[arg(long, default_value = "relu", allow_hyphen_values = true)]
    pub activation: String,
    /// Weight initialiser: zeros, guide, he, he-uniform, xavier, xavier-uniform.
    #[arg(long, default_value = "he")]
    pub init: String,
    /// Element type.
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    pub dtype: Dtype,
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
    if t == "none" || t.is_empty() {
        return Ok(Layers(Vec::new()));
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
        self.init.parse::<Init>().map_err(|e| RainError::bad("--init", &self.init, e))
    }
}

/// Writes `text` to `path` atomically, mapping errors.
pub fn write_file(path: &Path, text: &[u8]) -> Result<(), RainError> {
    tapegrad::nn::io::write_atomic(path, text).map_err(|e| match e {
        NnError::Io { path, source } => RainError::Write { path, source },
        other => RainError::Nn(other),
    })
}

/// Creates `dir` and its parents, mapping errors.
pub fn create_dir(dir: &Path) -> Result<(), RainError> {
    std::fs::create_dir_all(dir).map_err(|source| RainError::Write { path: dir.to_path_buf(), source })
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

/// One line per layer: the largest relative differences of autodiff
/// against the guide's formulas and against finite differences.
pub fn grad_lines(check: &GradCheck) -> String {
    let mut s = String::new();
    for (l, layer) in check.layers().iter().enumerate() {
        let g = layer.vs_guide.map_or("n/a".to_string(), |v| format!("{v:.1e}"));
        s += &format!(
            "    layer {}: max rel diff autodiff vs guide {g}, vs finite differences {:.1e}\n",
            l + 1,
            layer.vs_finite_differences
        );
    }
    s
}

/// Whether the gradients agree, with the tolerances.
pub fn grad_verdict(check: &GradCheck) -> String {
    let (guide, fd) = (GradCheck::GUIDE_TOLERANCE, GradCheck::FINITE_DIFFERENCE_TOLERANCE);
    if check.passed() {
        format!("gradients agree (guide <= {guide:.0e}, finite differences <= {fd:.0e})")
    } else {
        format!("GRADIENTS DISAGREE beyond the tolerances (guide {guide:.0e}, finite differences {fd:.0e})")
    }
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

/// The gradient check's figures per layer, for metrics.json.
pub fn grad_json(check: &GradCheck) -> serde_json::Value {
    serde_json::json!(check
        .layers()
        .iter()
        .map(
            |l| serde_json::json!({"vs_guide": l.vs_guide, "vs_finite_differences": l.vs_finite_differences})
        )
        .collect::<Vec<_>>())
}

/// The training cost per update and per epoch, as an SVG.
pub fn cost_svg(history: &History, y_label: &str) -> Result<String, RainError> {
    let iters: Vec<(f64, f64)> =
        history.iteration_costs.iter().enumerate().map(|(i, &c)| ((i + 1) as f64, c)).collect();
    let per_epoch = history.iteration_costs.len() as f64 / history.epoch_costs.len().max(1) as f64;
    let epochs: Vec<(f64, f64)> =
        history.epoch_costs.iter().enumerate().map(|(e, &c)| ((e + 1) as f64 * per_epoch, c)).collect();
    plots::lines(
        "training cost",
        "update",
        y_label,
        &[Series::new("per update (batch)", &iters), Series::new("per epoch (mean)", &epochs)],
        false,
    )
    .map_err(|e| RainError::bad("plot", "svg", e))
}

/// The head of a model, for messages.
pub fn head_name(head: Head) -> &'static str {
    match head {
        Head::Binary => "sigmoid output",
        Head::Softmax => "softmax output",
        Head::Regression => "identity output",
    }
}
