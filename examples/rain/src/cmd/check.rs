//! `rain check`: verify gradients, autodiff against the guide's formulas
//! and against finite differences, per parameter. Exit status 0 when they
//! agree, 1 when they do not, 2 for bad input.

use super::common::{failures, grad_verdict, gradient_check, DataArgs, ModelArgs};
use clap::Args as ClapArgs;
use rain::data;
use rain::error::RainError;

/// Examples in `rain check --help`.
pub const EXAMPLES: &str = "\
Examples:
  rain check --layers 20,7,5 --activation tanh
  rain check --layers 8 --l2 0.5 --batch 128
  rain check --activation \"x * sigmoid(x)\" --init guide

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
}

/// Runs `rain check`.
pub fn run(args: &Args) -> Result<(), RainError> {
    if args.batch == 0 {
        return Err(RainError::bad("--batch", 0, "must be at least 1"));
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
