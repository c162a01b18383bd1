//! `rain`: the guide's rain task on real weather data, as a command-line
//! program. `cargo run --release -p rain` trains with good defaults.

mod plots;
mod train;

use rain::{data, error};

use clap::{Args, Parser, Subcommand, ValueEnum};
use data::{Missing, PositiveRule, Spec, Split};
use error::RainError;
use std::path::PathBuf;
use std::process::ExitCode;
use tapegrad::nn::{Activation, Architecture, Init};
use tapegrad::tensor::ndarray::{Array1, Array2};

/// The guide's deep network on hourly NYC weather: will it rain this hour?
#[derive(Parser, Debug)]
#[command(name = "rain", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load, clean and standardise the data, check gradients, train, and
    /// report test metrics beside two baselines (the default command).
    Train(TrainArgs),
    /// Apply a saved model (and its standardisation) to a CSV file.
    Predict(PredictArgs),
    /// Verify gradients: autodiff vs the guide's formulas vs finite
    /// differences, per parameter.
    Check(CheckArgs),
    /// Plot an activation (name or formula in x) with its first and second
    /// derivatives, computed by autodiff.
    Activation(ActivationArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Dtype {
    F32,
    F64,
}

/// Where the data comes from and how it is cut.
#[derive(Args, Debug, Clone)]
struct DataArgs {
    /// CSV file with a header row.
    #[arg(long, default_value_os_t = default_data())]
    data: PathBuf,
    /// Feature columns, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "temp,humid,pressure")]
    features: Vec<String>,
    /// Label column.
    #[arg(long, default_value = "precip")]
    label: String,
    /// Which label values are positive: >v, >=v, <v, <=v, =text, contains:text.
    #[arg(long, default_value = ">0", allow_hyphen_values = true)]
    positive: String,
    /// Train where COLUMN is in LO-HI, test elsewhere.
    #[arg(long, default_value = "month:1-10", conflicts_with = "test_fraction")]
    split: String,
    /// Instead of --split: a random share of rows for test.
    #[arg(long)]
    test_fraction: Option<f64>,
    /// Seed for the random split, initialisation, shuffles and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rows with a missing feature: drop them, or fill with the training mean.
    #[arg(long, value_enum, default_value_t = Missing::Drop)]
    missing: Missing,
}

/// The network.
#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// Hidden layer sizes, comma-separated ("none" for logistic regression).
    #[arg(long, default_value = "16", value_parser = parse_layers)]
    layers: Layers,
    /// Hidden activation: a built-in name or a formula in x, e.g. "x * sigmoid(1.702 * x)".
    #[arg(long, default_value = "relu", allow_hyphen_values = true)]
    activation: String,
    /// Weight initialiser: zeros, guide, he, he-uniform, xavier, xavier-uniform.
    #[arg(long, default_value = "he")]
    init: String,
    /// Element type.
    #[arg(long, value_enum, default_value_t = Dtype::F64)]
    dtype: Dtype,
}

#[derive(Args, Debug, Clone)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Optimizer: gd, momentum, nesterov, rmsprop, adam, adamw.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 0.003, allow_hyphen_values = true)]
    lr: f64,
    /// Passes over the training data.
    #[arg(long, default_value_t = 30, conflicts_with = "iterations")]
    epochs: usize,
    /// Instead of --epochs: the number of updates.
    #[arg(long)]
    iterations: Option<usize>,
    /// Learning-rate schedule over the epochs: constant, cosine (to 0),
    /// step (x0.5 every 10 epochs) or exp (x0.95 per epoch).
    #[arg(long, default_value = "cosine")]
    schedule: String,
    /// Stop when the cost on a held-out 10% of the training rows has not
    /// improved for this many epochs, and keep the best epoch's weights.
    #[arg(long)]
    early_stopping: Option<usize>,
    /// Examples per update, or "full" for the guide's full batch.
    #[arg(long, default_value = "64", value_parser = parse_batch)]
    batch_size: Batch,
    /// L2 strength lambda (cost + lambda/2m sum ||W||^2, m = batch size).
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    l2: f64,
    /// Dropout rate on hidden layers, in [0, 1).
    #[arg(long, default_value_t = 0.1, allow_hyphen_values = true)]
    dropout: f64,
    /// Weight of positive examples in the cost (imbalanced classes).
    #[arg(long, default_value_t = 1.0, allow_hyphen_values = true)]
    pos_weight: f64,
    /// Threshold on the probability for the rain label. Default: for each
    /// model, the threshold with the best F1 on the training rows (with 3%
    /// rain, 0.5 would almost never say rain).
    #[arg(long)]
    threshold: Option<f64>,
    /// Output folder for the model, metrics and plots.
    #[arg(long, default_value = "rain-out")]
    out: PathBuf,
    /// When the cost turns NaN or infinite, name the first op (and source
    /// line) that produced a non-finite value.
    #[arg(long)]
    trace_nonfinite: bool,
    /// Print the full gradient table, not one line per layer.
    #[arg(long)]
    check_grads: bool,
    /// Print only errors.
    #[arg(long)]
    quiet: bool,
    /// Print a machine-readable summary on stdout (and nothing else).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// A model file written by `rain train`.
    #[arg(long)]
    model: PathBuf,
    /// CSV with the model's feature columns.
    #[arg(long)]
    data: PathBuf,
    /// Output CSV (default: stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Threshold for the label (default: the one saved with the model).
    #[arg(long)]
    threshold: Option<f64>,
}

#[derive(Args, Debug)]
struct CheckArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Examples in the checked batch.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// L2 strength included in the cost.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    l2: f64,
}

#[derive(Args, Debug)]
struct ActivationArgs {
    /// A built-in name or a formula in x.
    #[arg(allow_hyphen_values = true)]
    expr: String,
    /// Plot range A:B.
    #[arg(long, default_value = "-4:4", allow_hyphen_values = true)]
    range: String,
    /// Output folder for activation.svg.
    #[arg(long, default_value = "rain-out")]
    out: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
struct Layers(Vec<usize>);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Batch {
    Full,
    Size(usize),
}

fn default_data() -> PathBuf {
    rain::default_data()
}

fn parse_layers(s: &str) -> Result<Layers, String> {
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

fn parse_batch(s: &str) -> Result<Batch, String> {
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
    fn spec(&self) -> Result<Spec, RainError> {
        let split = match self.test_fraction {
            Some(f) => Split::fraction(f, self.seed)?,
            None => Split::parse_range(&self.split)?,
        };
        Ok(Spec {
            path: self.data.clone(),
            features: self.features.iter().map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect(),
            label: self.label.clone(),
            positive: PositiveRule::parse(&self.positive)?,
            split,
            missing: self.missing,
        })
    }
}

impl ModelArgs {
    fn architecture(&self, inputs: usize) -> Result<Architecture, RainError> {
        // Parse once here so a bad formula fails before any work.
        Activation::<f64>::parse(&self.activation).map_err(tapegrad::nn::NnError::from)?;
        Ok(Architecture::guide(inputs, &self.layers.0).with_hidden_activation(&self.activation))
    }
    fn init(&self) -> Result<Init, RainError> {
        self.init.parse::<Init>().map_err(|e| RainError::bad("--init", &self.init, e))
    }
}

fn main() -> ExitCode {
    rain::end_quietly_on_closed_pipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line: clap's first line names the argument and the problem.
            let text = e.render().to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments").trim_end());
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        None => train::run(&cli.train),
        Some(Command::Train(a)) => train::run(&a),
        Some(Command::Predict(a)) => predict(&a),
        Some(Command::Check(a)) => check(&a),
        Some(Command::Activation(a)) => activation(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.to_string().lines().collect::<Vec<_>>().join(" | "));
            ExitCode::from(2)
        }
    }
}

/// Writes `text` to `path` atomically, mapping errors.
fn write_file(path: &std::path::Path, text: &[u8]) -> Result<(), RainError> {
    tapegrad::nn::io::write_atomic(path, text).map_err(|e| match e {
        tapegrad::nn::NnError::Io { path, source } => RainError::Write { path, source },
        other => RainError::Nn(other),
    })
}

fn create_dir(dir: &std::path::Path) -> Result<(), RainError> {
    std::fs::create_dir_all(dir).map_err(|source| RainError::Write { path: dir.to_path_buf(), source })
}

fn predict(args: &PredictArgs) -> Result<(), RainError> {
    let saved = tapegrad::nn::io::load::<f64>(&args.model)?;
    let arch = saved.model.architecture().clone();
    let std = saved.standardization.as_ref();
    let features: Vec<String> = match std {
        Some(s) => s.features.clone(),
        None => (0..arch.input).map(|i| format!("x{}", i + 1)).collect(),
    };
    let table = data::Table::read(&args.data)?;
    // A model/data mismatch is one clear error naming what is missing.
    let missing: Vec<String> = features.iter().filter(|f| !table.header.contains(f)).cloned().collect();
    if !missing.is_empty() {
        return Err(RainError::FeatureCount {
            expected: arch.input,
            found: features.len() - missing.len(),
            names: features.join(", "),
            missing: missing.join(", "),
        });
    }
    let rows = table.features(&features)?;
    let threshold = match args.threshold {
        Some(t) => t,
        None => saved.metadata.get("threshold").and_then(|v| v.as_f64()).unwrap_or(0.5),
    };
    if !(0.0..=1.0).contains(&threshold) {
        return Err(RainError::bad("--threshold", threshold, "must be in [0, 1]"));
    }
    let complete: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].iter().all(|v| v.is_some())).collect();
    let mut x = Array2::zeros((features.len(), complete.len()));
    for (j, &r) in complete.iter().enumerate() {
        for k in 0..features.len() {
            x[[k, j]] = rows[r][k].expect("complete row");
        }
    }
    let x = match std {
        Some(s) => s.apply(x.view())?,
        None => x,
    };
    let p = saved.model.predict_proba(x.view())?;
    let mut out = String::from("row,probability,label\n");
    let mut k = 0;
    for r in 0..rows.len() {
        if complete.get(k) == Some(&r) {
            out += &format!("{},{},{}\n", r + 2, p[k], u8::from(p[k] >= threshold));
            k += 1;
        } else {
            out += &format!("{},,\n", r + 2);
        }
    }
    match &args.out {
        Some(path) => {
            write_file(path, out.as_bytes())?;
            eprintln!(
                "wrote {} predictions to {} ({} rows with a missing feature left blank)",
                complete.len(),
                path.display(),
                rows.len() - complete.len()
            );
        }
        None => print!("{out}"),
    }
    Ok(())
}

fn check(args: &CheckArgs) -> Result<(), RainError> {
    let spec = args.data.spec()?;
    let ds = data::load(&spec)?;
    let std = tapegrad::nn::Standardization::fit(ds.train_x.view(), &spec.features)?;
    let x = std.apply(ds.train_x.view())?;
    let arch = args.model.architecture(spec.features.len())?;
    let loss = tapegrad::nn::Loss::new(args.l2, 1.0)?;
    if args.batch == 0 {
        return Err(RainError::bad("--batch", 0, "must be at least 1"));
    }
    let n = args.batch.min(x.ncols());
    let xb = x.slice(tapegrad::tensor::ndarray::s![.., ..n]).to_owned();
    let yb = ds.train_y.slice(tapegrad::tensor::ndarray::s![.., ..n]).to_owned();
    let model = tapegrad::nn::Model::<f64>::new(&arch, args.model.init()?, args.data.seed)?;
    let g = train::GradCheck::run(&model, &xb, &yb, &loss)?;
    println!("gradient check of {:?} ({} hidden), {} examples, f64:", arch.sizes(), args.model.activation, n);
    print!("{}", g.table());
    println!("{}", g.verdict());
    Ok(())
}

fn activation(args: &ActivationArgs) -> Result<(), RainError> {
    let act = Activation::<f64>::parse(&args.expr).map_err(tapegrad::nn::NnError::from)?;
    let (a, b) = args
        .range
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite() && a < b)
        .ok_or_else(|| RainError::bad("--range", &args.range, "expected A:B with A < B, e.g. -4:4"))?;
    let n = 401;
    let xs = Array1::linspace(a, b, n);
    // f, f' by backward and f'' by differentiating the recorded backward pass.
    let d = tapegrad::tensor::derivatives(|z| act.apply(z), &xs.clone().into_dyn(), 2);
    let flat = |v: &tapegrad::tensor::Value<f64>| v.iter().copied().collect::<Array1<f64>>();
    let (f, d1, d2) = (flat(&d[0]), flat(&d[1]), flat(&d[2]));
    println!("{:>8} {:>14} {:>14} {:>14}", "x", "f(x)", "f'(x)", "f''(x)");
    for k in (0..n).step_by(50) {
        println!("{:>8.3} {:>14.6} {:>14.6} {:>14.6}", xs[k], f[k], d1[k], d2[k]);
    }
    let pts = |v: &Array1<f64>| xs.iter().zip(v.iter()).map(|(&x, &y)| (x, y)).collect::<Vec<_>>();
    let (pf, p1, p2) = (pts(&f), pts(&d1), pts(&d2));
    let svg = plots::lines(
        &format!("activation {}", act.name()),
        "x",
        "value",
        &[
            plots::Series { name: "f(x)".into(), points: &pf },
            plots::Series { name: "f'(x) (autodiff)".into(), points: &p1 },
            plots::Series { name: "f''(x) (grad of grad)".into(), points: &p2 },
        ],
        false,
    )
    .map_err(|e| RainError::bad("plot", "activation", e))?;
    create_dir(&args.out)?;
    let path = args.out.join("activation.svg");
    write_file(&path, svg.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}
