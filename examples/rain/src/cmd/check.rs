//! `rain check`: verify gradients, autodiff against the guide's formulas
//! and against finite differences, per parameter.

use super::common::{grad_verdict, DataArgs, ModelArgs};
use clap::Args as ClapArgs;
use rain::data;
use rain::error::RainError;
use tapegrad::nn::check::GradCheck;

/// The arguments of `rain check`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Examples in the checked batch.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// L2 strength included in the cost.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub l2: f64,
}

/// Runs `rain check`.
pub fn run(args: &Args) -> Result<(), RainError> {
    let spec = args.data.spec()?;
    let ds = data::load(&spec)?;
    let std = tapegrad::nn::Standardization::fit(ds.train_x.view(), &spec.features)?;
    let x = std.apply(ds.train_x.view())?;
    let arch = args.model.architecture(spec.features.len(), &spec.target)?;
    let loss = tapegrad::nn::Loss::new(args.l2, 1.0)?;
    if args.batch == 0 {
        return Err(RainError::bad("--batch", 0, "must be at least 1"));
    }
    let n = args.batch.min(x.ncols());
    let xb = x.slice(tapegrad::tensor::ndarray::s![.., ..n]).to_owned();
    let yb = ds.train_y.slice(tapegrad::tensor::ndarray::s![.., ..n]).to_owned();
    let model = tapegrad::nn::Model::<f64>::new(&arch, args.model.init()?, args.data.seed)?;
    let g = GradCheck::run(&model, xb.view(), yb.view(), &loss)?;
    println!("gradient check of {:?} ({} hidden), {} examples, f64:", arch.sizes(), args.model.activation, n);
    print!("{g}");
    println!("{}", grad_verdict(&g));
    Ok(())
}
