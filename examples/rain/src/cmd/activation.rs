//! `rain activation`: plot activations with their derivatives, computed
//! by autodiff. One name or formula: `f`, `f'` and `f''` on one chart.
//! Several: every `f` (solid) and `f'` (dashed) on one chart, to compare.

use crate::plots::{self, Series};
use clap::Args as ClapArgs;
use rain::error::RainError;
use rain::output::Staged;
use std::path::PathBuf;
use tapegrad::nn::{Activation, NnError};
use tapegrad::tensor::ndarray::Array1;

/// Examples in `rain activation --help`.
pub const EXAMPLES: &str = "\
Examples:
  rain activation gelu                     f, f' and f'' on one chart
  rain activation relu gelu swish \"x * tanh(softplus(x))\" --range -6:6
  rain activation -- \"-x * sigmoid(-x)\"    a formula that starts with '-'";

/// The arguments of `rain activation`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Built-in names or formulas in x, one or more (e.g. gelu gelu_tanh
    /// "x * sigmoid(1.702 * x)"); several are drawn on one chart. A
    /// formula that starts with '-' goes after a "--".
    #[arg(required = true, num_args = 1..)]
    pub expr: Vec<String>,
    /// Plot range A:B.
    #[arg(long, default_value = "-4:4", value_name = "A:B", allow_hyphen_values = true)]
    pub range: String,
    /// Output folder for activation.svg (only that file is replaced).
    #[arg(long, default_value = "rain-activation", value_name = "DIR")]
    pub out: PathBuf,
}

/// The (x, y) points of a curve.
type Points = Vec<(f64, f64)>;

/// One activation on the grid: its name, `f`, `f'` and `f''`.
struct Curves {
    name: String,
    f: Array1<f64>,
    d1: Array1<f64>,
    d2: Array1<f64>,
}

/// Runs `rain activation`.
pub fn run(args: &Args) -> Result<(), RainError> {
    // Every name is parsed before any work, so a bad one fails alone.
    let acts = args
        .expr
        .iter()
        .map(|e| Activation::<f64>::parse(e).map_err(NnError::from))
        .collect::<Result<Vec<_>, _>>()?;
    let (a, b) = args
        .range
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .filter(|(a, b)| a.is_finite() && b.is_finite() && a < b)
        .ok_or_else(|| RainError::bad("--range", &args.range, "expected A:B with A < B, e.g. -4:4"))?;
    let n = 401;
    let xs = Array1::linspace(a, b, n);
    let curves: Vec<Curves> = acts
        .iter()
        .map(|act| {
            // f, f' by backward and f'' by differentiating the recorded backward pass.
            let d = tapegrad::tensor::derivatives(|z| act.apply(z), &xs.clone().into_dyn(), 2);
            let flat = |v: &tapegrad::tensor::Value<f64>| v.iter().copied().collect::<Array1<f64>>();
            Curves { name: act.name(), f: flat(&d[0]), d1: flat(&d[1]), d2: flat(&d[2]) }
        })
        .collect();
    if let Some(c) = curves.iter().find(|c| c.f.iter().all(|v| !v.is_finite())) {
        return Err(RainError::bad(
            "--range",
            &args.range,
            format!("{} has no finite value on it (nothing to plot)", c.name),
        ));
    }
    for c in &curves {
        if curves.len() > 1 {
            println!("{}:", c.name);
        }
        println!("{:>8} {:>14} {:>14} {:>14}", "x", "f(x)", "f'(x)", "f''(x)");
        for k in (0..n).step_by(50) {
            println!("{:>8.3} {:>14.6} {:>14.6} {:>14.6}", xs[k], c.f[k], c.d1[k], c.d2[k]);
        }
    }
    let pts = |v: &Array1<f64>| xs.iter().zip(v.iter()).map(|(&x, &y)| (x, y)).collect::<Vec<_>>();
    let run = format!(
        "x from {a} to {b}, {n} points; derivatives by autodiff (f'' differentiates the recorded backward pass)"
    );
    let svg = if let [c] = curves.as_slice() {
        let (pf, p1, p2) = (pts(&c.f), pts(&c.d1), pts(&c.d2));
        let title = match formula_of(&acts[0]) {
            Some(f) if f != c.name => format!("{}: f(x) = {f}", c.name),
            _ => format!("f(x) = {}", c.name),
        };
        plots::lines(
            &plots::Frame { robust_y: true, ..plots::Frame::new(&title, &run, "x", "value") },
            &[
                Series::new("f(x)", &pf),
                Series::new("f'(x) (autodiff)", &p1),
                Series::new("f''(x) (grad of grad)", &p2),
            ],
        )
    } else {
        let points: Vec<[Points; 2]> = curves.iter().map(|c| [pts(&c.f), pts(&c.d1)]).collect();
        let mut series = Vec::new();
        for (i, (c, [pf, p1])) in curves.iter().zip(&points).enumerate() {
            series.push(Series { color: Some(i), ..Series::new(c.name.clone(), pf) });
            series.push(Series { color: Some(i), dashed: true, ..Series::new(format!("{}'", c.name), p1) });
        }
        let formulas: Vec<String> = acts
            .iter()
            .zip(&curves)
            .filter_map(|(a, c)| formula_of(a).filter(|f| *f != c.name).map(|f| format!("{} = {f}", c.name)))
            .collect();
        let run = if formulas.is_empty() { run } else { format!("{}\n{run}", formulas.join("; ")) };
        plots::lines(
            &plots::Frame {
                robust_y: true,
                ..plots::Frame::new("activations (solid) and their derivatives (dashed)", &run, "x", "value")
            },
            &series,
        )
    }
    .map_err(|e| RainError::bad("plot", "activation", e))?;
    let path = args.out.join("activation.svg");
    let staged = Staged::file(&path)?;
    staged.write("", svg.as_bytes())?;
    staged.commit()?;
    println!("wrote {}", path.display());
    Ok(())
}

/// A built-in's formula in x, as the chart's title gives it (`None` for
/// a closure; a formula is its own text).
fn formula_of(act: &Activation<f64>) -> Option<String> {
    use tapegrad::nn::activation::{SELU_ALPHA, SELU_SCALE};
    Some(match act {
        Activation::Sigmoid => "1 / (1 + e^-x)".into(),
        Activation::Relu => "max(x, 0)".into(),
        Activation::Tanh => "tanh(x)".into(),
        Activation::LeakyRelu(a) => format!("x if x > 0, else {a} x"),
        Activation::Elu(a) => format!("x if x > 0, else {a} (e^x - 1)"),
        Activation::Selu => format!("{SELU_SCALE:.4} (x if x > 0, else {SELU_ALPHA:.4} (e^x - 1))"),
        Activation::Softplus => "ln(1 + e^x)".into(),
        Activation::Swish => "x sigmoid(x)".into(),
        Activation::Gelu => "0.5 x (1 + erf(x / sqrt 2))".into(),
        Activation::GeluTanh => "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))".into(),
        Activation::Hardswish => "x relu6(x + 3) / 6".into(),
        Activation::Snake(a) => format!("x + sin({a} x)^2 / {a}"),
        Activation::Squareplus(b) => format!("(x + sqrt(x^2 + {b})) / 2"),
        Activation::LogSigmoid => "ln sigmoid(x)".into(),
        Activation::Mish => "x tanh(softplus(x))".into(),
        Activation::Identity => "x".into(),
        Activation::Formula(f) => f.source().to_string(),
        Activation::Softmax | Activation::Custom(..) => return None,
    })
}
