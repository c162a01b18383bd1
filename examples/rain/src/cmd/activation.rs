//! `rain activation`: plot an activation with its first and second
//! derivatives, computed by autodiff.

use super::common::{create_dir, write_file};
use crate::plots;
use clap::Args as ClapArgs;
use rain::error::RainError;
use std::path::PathBuf;
use tapegrad::nn::{Activation, NnError};
use tapegrad::tensor::ndarray::Array1;

/// The arguments of `rain activation`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A built-in name or a formula in x.
    #[arg(allow_hyphen_values = true)]
    pub expr: String,
    /// Plot range A:B.
    #[arg(long, default_value = "-4:4", allow_hyphen_values = true)]
    pub range: String,
    /// Output folder for activation.svg.
    #[arg(long, default_value = "rain-out")]
    pub out: PathBuf,
}

/// Runs `rain activation`.
pub fn run(args: &Args) -> Result<(), RainError> {
    let act = Activation::<f64>::parse(&args.expr).map_err(NnError::from)?;
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
