//! What the subcommands share: the argument groups for data and model,
//! the file helpers, the one check of a threshold, and the gradient
//! check's lines. Subcommand files import from here, never from each
//! other or from `main.rs`.

use clap::{Args, ValueEnum};
use rain::data::{Missing, PositiveRule, Spec, Split};
use rain::error::RainError;
use std::path::{Path, PathBuf};
use tapegrad::nn::check::GradCheck;
use tapegrad::nn::{Activation, Architecture, Init, NnError};

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
            positive: PositiveRule::parse(&self.positive)?,
            split,
            missing: self.missing,
        })
    }
}

impl ModelArgs {
    /// The guide's network for `inputs` features with these hidden layers.
    pub fn architecture(&self, inputs: usize) -> Result<Architecture, RainError> {
        // Parse once here so a bad formula fails before any work.
        Activation::<f64>::parse(&self.activation).map_err(NnError::from)?;
        Ok(Architecture::guide(inputs, &self.layers.0).with_hidden_activation(&self.activation))
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
