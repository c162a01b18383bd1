//! `rain check`: verify gradients, autodiff against the guide's formulas
//! and against finite differences, per parameter; with `--params` and
//! `--grads`, the gradients of another implementation (numpy's `.npz`
//! files) against both. Exit status 0 when they agree, 1 when they do not,
//! 2 for bad input.

use super::common::{failures, grad_verdict, gradient_check, DataArgs, ModelArgs};
use clap::Args as ClapArgs;
use rain::data;
use rain::error::RainError;
use std::path::{Path, PathBuf};
use tapegrad::nn::check::ExternalGradients;
use tapegrad::tensor::ndarray::s;

/// Examples in `rain check --help`.
pub const EXAMPLES: &str = "\
Examples:
  rain check --layers 20,7,5 --activation tanh
  rain check --layers 8 --l2 0.5 --batch 128
  rain check --activation \"x * sigmoid(x)\" --init guide
  rain check --params params.npz --grads grads.npz

With --params and --grads, the gradients of your own implementation are checked
against autodiff and finite differences, at your parameters. The files hold the
guide's dicts: np.savez(\"params.npz\", **parameters, X=X, Y=Y) and
np.savez(\"grads.npz\", **grads), with W1, b1, ... and dW1, db1, ... (b of shape
(n, 1)); X (features, m) and Y (1, m) are the examples the gradients were computed
on (without them, the first --batch training rows of --data). The architecture
comes from the shapes; --activation names the hidden layers' activation; --l2
adds the guide's L2 penalty to the cost. scripts/guide_gradients.py writes such
files from the guide's numpy network.

Exit status: 0 when the gradients agree, 1 when they do not, 2 for bad input.";

/// The arguments of `rain check`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Examples in the checked batch (the first N training rows).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: usize,
    /// L2 strength included in the cost.
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA", allow_hyphen_values = true)]
    pub l2: f64,
    /// A numpy .npz file of parameters W1, b1, ... (and the data X, Y):
    /// check the gradients in --grads at these parameters.
    #[arg(long, value_name = "FILE", requires = "grads", conflicts_with_all = ["layers", "init"])]
    pub params: Option<PathBuf>,
    /// A numpy .npz file of gradients dW1, db1, ... of the cost at --params.
    #[arg(long, value_name = "FILE", requires = "params")]
    pub grads: Option<PathBuf>,
}

/// Runs `rain check`.
pub fn run(args: &Args) -> Result<(), RainError> {
    if args.batch == 0 {
        return Err(RainError::bad("--batch", 0, "must be at least 1"));
    }
    if let (Some(params), Some(grads)) = (&args.params, &args.grads) {
        return run_external(args, params, grads);
    }
    let spec = args.data.spec()?;
    let arch = args.model.architecture(spec.features.len(), &spec.target)?;
    let loss = tapegrad::nn::Loss::new(args.l2, 1.0)?;
    let init = args.model.init()?;
    let ds = data::load(&spec)?;
    let std = tapegrad::nn::Standardization::fit(ds.train_x.view(), &spec.features)?;
    let x = std.apply(ds.train_x.view())?;
    let n = args.batch.min(x.ncols());
    let model = tapegrad::nn::Model::<f64>::new(&arch, init, args.data.seed)?;
    let g = gradient_check(&model, &x, &ds.train_y, &loss, n, true)?;
    println!("gradient check of {:?} ({} hidden), {} examples, f64:", arch.sizes(), args.model.activation, n);
    print!("{g}");
    println!("{}", grad_verdict(&g));
    if g.passed() {
        Ok(())
    } else {
        Err(RainError::GradientsDisagree { when: "at the initial weights", detail: failures(&g) })
    }
}

/// `rain check --params P --grads G`: another implementation's gradients
/// against autodiff and finite differences.
fn run_external(args: &Args, params: &Path, grads: &Path) -> Result<(), RainError> {
    let loss = tapegrad::nn::Loss::new(args.l2, 1.0)?;
    let given = ExternalGradients::from_npz(params, grads)?;
    let from_data;
    let (data, source) = match given.data() {
        Some(_) if args.data.data != super::common::default_data() => {
            return Err(RainError::bad(
                "--data",
                args.data.data.display(),
                format!("{} holds the data (X, Y); give one or the other", params.display()),
            ));
        }
        Some(_) => (None, format!("X, Y from {}", params.display())),
        None => {
            let spec = args.data.spec()?;
            let ds = data::load(&spec)?;
            let std = tapegrad::nn::Standardization::fit(ds.train_x.view(), &spec.features)?;
            let x = std.apply(ds.train_x.view())?;
            let n = args.batch.min(x.ncols());
            from_data = (x.slice_move(s![.., ..n]), ds.train_y.slice(s![.., ..n]).to_owned());
            let what = format!("the first {n} training rows of {}, standardised", args.data.data.display());
            (Some((from_data.0.view(), from_data.1.view())), what)
        }
    };
    let report = given.check(&args.model.activation, data, &loss)?;
    println!(
        "gradients in {} at the parameters in {}: {}; {} examples ({source}); cost: mean cross-entropy{}",
        grads.display(),
        params.display(),
        report.network,
        report.examples,
        if args.l2 > 0.0 { format!(" + L2 (lambda {})", args.l2) } else { String::new() },
    );
    print!("{report}");
    if !given.ignored().is_empty() {
        println!("ignored (not parameters, gradients or data): {}", given.ignored().join(", "));
    }
    if report.passed() {
        println!("your gradients agree with autodiff");
        return Ok(());
    }
    let detail = report
        .rows
        .iter()
        .filter(|r| !r.vs_autodiff.passed)
        .map(|r| {
            let hint = r.hint.as_deref().map(|h| format!(", {h}")).unwrap_or_default();
            format!("{} (max rel diff {:.2e}{hint})", r.vs_autodiff.name, r.vs_autodiff.max_rel_diff)
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!("YOUR GRADIENTS DISAGREE with autodiff: {}", report.failures().join(", "));
    Err(RainError::GradientsDisagree { when: "with autodiff", detail })
}
