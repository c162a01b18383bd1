//! Activation functions: the built-ins, formulas parsed from strings, and
//! closures. None has a derivative written: the tape differentiates them.
//!
//! # Derivatives at a kink
//!
//! This is the one statement of the convention; the variants, the
//! guide's reference backward (`check::guide_backward`) and the tests
//! refer to it. As PyTorch does, the gradient of a piecewise activation at
//! its kink is the slope of the **left** side:
//!
//! | activation | at `x = 0` |
//! |---|---|
//! | `relu` | `relu'(0) = 0` (the guide's `relu_backward`, `dZ[Z <= 0] = 0`) |
//! | `leaky_relu:alpha` | `alpha` |
//! | `elu:alpha` | `alpha` (so 1 for `elu`, whose two sides meet with slope 1) |
//! | `selu` | `scale alpha = 1.7581...` (the left side of `scale elu:alpha`) |
//! | `hardswish` | at `x = -3`: `-0.5`; at `x = 3`: `1.5` (see below) |
//!
//! `hardswish` is the one exception to "the left side", and it is
//! PyTorch's: its middle piece `x (x + 3) / 6` covers the closed interval
//! `[-3, 3]`, so at `-3` the slope is the middle piece's (`-0.5`, the right
//! side), at `3` also the middle piece's (`1.5`, the left side).
//!
//! The same holds in formulas, whose `relu(x)` is the tensor op `relu`.
//! A formula's `abs(x)` has derivative `sign(0) = 0` at 0, as PyTorch's
//! `abs`: the mean of the two slopes, not a one-sided one. The built-ins
//! `sigmoid`, `tanh`, `softplus`, `swish`, `gelu`, `gelu_tanh`, `mish`,
//! `snake`, `squareplus`, `log_sigmoid` and `identity` are smooth and have
//! no kink.
//!
//! # `gelu` and `gelu_tanh`
//!
//! `gelu` is the exact GELU, `0.5 x (1 + erf(x / sqrt 2))` (PyTorch's
//! `GELU()`); `gelu_tanh` is the tanh approximation (PyTorch's
//! `GELU(approximate='tanh')`). Before model files of version 2, `gelu`
//! named the tanh form: loading a model file (`io::load`) reads `gelu` in a
//! version-1 file as `gelu_tanh`, so an old model computes what it computed
//! when it was saved.
//!
//! ```
//! use tapegrad_nn::Activation;
//! use tapegrad_tensor::{ndarray::arr1, Tape};
//! for (name, slope_at_0) in [("relu", 0.0), ("leaky_relu:0.2", 0.2), ("elu", 1.0), ("elu:0.5", 0.5)] {
//!     let tape = Tape::<f64>::new();
//!     let z = tape.var(arr1(&[0.0]));
//!     let act = Activation::<f64>::parse(name).unwrap();
//!     assert_eq!(tape.backward(act.apply(z).sum())[z][0], slope_at_0, "{name}");
//! }
//! ```

use crate::formula::{Formula, FormulaError};
use std::fmt;
use std::sync::Arc;
use tapegrad_tensor::{Element, Tensor};

/// A user activation written in Rust with tensor ops.
type Closure<T> = Arc<dyn for<'t> Fn(Tensor<'t, T>) -> Tensor<'t, T> + Send + Sync>;

/// An activation `g` in `A = g(Z)`.
///
/// Built-ins are parsed from their names by [`Activation::parse`], which also
/// accepts any formula in `x` (see [`Formula`]); [`Activation::custom`] wraps a
/// Rust closure.
///
/// ```
/// use tapegrad_nn::Activation;
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let gelu = Activation::<f64>::parse("gelu").unwrap();
/// let mine = Activation::<f64>::parse("x * sigmoid(1.702 * x)").unwrap();
/// let tape = Tape::<f64>::new();
/// let z = tape.var(arr1(&[1.0]));
/// assert!((gelu.apply(z).item() - mine.apply(z).item()).abs() < 0.02);
/// ```
#[derive(Clone)]
pub enum Activation<T: Element> {
    /// `1 / (1 + e^-x)`, the guide's output activation.
    Sigmoid,
    /// `max(x, 0)`, the guide's hidden activation; `relu'(0) = 0` (see
    /// [the kink convention](crate::activation#derivatives-at-a-kink)).
    Relu,
    /// `tanh x`.
    Tanh,
    /// `x` for `x > 0`, `alpha x` otherwise; the derivative at 0 is
    /// `alpha` (see [the kink convention](crate::activation#derivatives-at-a-kink)).
    LeakyRelu(f64),
    /// `x` for `x > 0`, `alpha (e^x - 1)` otherwise; the derivative at 0 is
    /// `alpha` (see [the kink convention](crate::activation#derivatives-at-a-kink)).
    Elu(f64),
    /// `ln(1 + e^x)`.
    Softplus,
    /// `x sigmoid(x)` (also called SiLU).
    Swish,
    /// `0.5 x (1 + erf(x / sqrt 2))`, the exact GELU (PyTorch's `GELU()`).
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, the tanh
    /// approximation of GELU (PyTorch's `GELU(approximate='tanh')`; what
    /// `gelu` meant in model files of version 1).
    GeluTanh,
    /// `scale x` for `x > 0`, `scale alpha (e^x - 1)` otherwise, with
    /// PyTorch's `alpha = 1.6732632423543772` and `scale = 1.0507009873554805`
    /// ([`SELU_ALPHA`], [`SELU_SCALE`]); the derivative at 0 is
    /// `scale alpha` (see [the kink convention](crate::activation#derivatives-at-a-kink)).
    Selu,
    /// `x relu6(x + 3) / 6`: 0 below -3, `x` above 3, `x (x + 3) / 6`
    /// between (PyTorch's `Hardswish`; its slopes at -3 and 3 are in
    /// [the kink convention](crate::activation#derivatives-at-a-kink)).
    Hardswish,
    /// `x + sin(a x)^2 / a` with frequency `a > 0` (Ziyin et al. 2020);
    /// `snake` has `a = 1`.
    Snake(f64),
    /// `(x + sqrt(x^2 + b)) / 2` with `b > 0` (So 2021); `squareplus` has
    /// `b = 4`. Computed as `b / (2 (sqrt(x^2 + b) - x))` for `x < 0`, the
    /// same function without the cancellation of `x + sqrt(x^2 + b)`.
    Squareplus(f64),
    /// `ln sigmoid(x) = -softplus(-x)`, finite for large negative `x`.
    LogSigmoid,
    /// `x tanh(softplus(x))`.
    Mish,
    /// `x` (no activation; a linear layer).
    Identity,
    /// A formula in `x`.
    Formula(Formula),
    /// A closure with a name.
    Custom(String, Closure<T>),
    /// `softmax(z)` over the rows of `z` (the classes, one column per
    /// example): the output of a [`crate::Head::Softmax`] model, set by
    /// the head. Not an elementwise function, so [`Activation::parse`]
    /// does not accept it and `rain activation` cannot plot it.
    Softmax,
}

/// SELU's `alpha`, PyTorch's constant (Klambauer et al. 2017).
///
/// ```
/// assert_eq!(tapegrad_nn::activation::SELU_ALPHA, 1.6732632423543772);
/// ```
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;
/// SELU's `scale`, PyTorch's constant.
///
/// ```
/// assert_eq!(tapegrad_nn::activation::SELU_SCALE, 1.0507009873554805);
/// ```
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;

/// The built-in names accepted by [`Activation::parse`]. Four take a
/// parameter after a colon: `leaky_relu:alpha` (default 0.01),
/// `elu:alpha` (1), `snake:a` (1) and `squareplus:b` (4).
///
/// ```
/// assert!(tapegrad_nn::BUILTIN_NAMES.contains(&"gelu_tanh"));
/// ```
pub const BUILTIN_NAMES: [&str; 17] = [
    "sigmoid",
    "relu",
    "tanh",
    "leaky_relu",
    "elu",
    "selu",
    "softplus",
    "swish",
    "silu",
    "gelu",
    "gelu_tanh",
    "mish",
    "hardswish",
    "snake",
    "squareplus",
    "log_sigmoid",
    "identity",
];

/// A formula error for a bare word that is close to a built-in name or a
/// function gets a "did you mean" (`reul` -> relu).
fn suggest(text: &str, mut e: FormulaError) -> FormulaError {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        let best = BUILTIN_NAMES
            .iter()
            .chain(Formula::functions())
            .map(|n| (strsim::jaro_winkler(text, n), *n))
            .fold((0.0, ""), |a, b| if b.0 > a.0 { b } else { a });
        if best.0 > 0.8 {
            e.message = format!("did you mean {}? {}", best.1, e.message);
        }
    }
    e
}

impl<T: Element> Activation<T> {
    /// A built-in by name (see [`BUILTIN_NAMES`]; `leaky_relu:0.2`,
    /// `elu:0.5`, `snake:0.5` and `squareplus:1` choose the parameter), or
    /// else a formula in `x`.
    ///
    /// # Errors
    /// When the text is neither a built-in name nor a formula that parses,
    /// or a built-in's parameter is not a finite number in its domain
    /// (`snake`'s `a` and `squareplus`'s `b` must be positive).
    ///
    /// ```
    /// use tapegrad_nn::Activation;
    /// assert_eq!(Activation::<f32>::parse("relu").unwrap().name(), "relu");
    /// assert_eq!(Activation::<f32>::parse("leaky_relu:0.2").unwrap().name(), "leaky_relu:0.2");
    /// assert_eq!(Activation::<f32>::parse("snake:0.5").unwrap().name(), "snake:0.5");
    /// assert!(Activation::<f32>::parse("x *").is_err());
    /// let e = Activation::<f32>::parse("squareplus:-1").unwrap_err();
    /// assert!(e.to_string().contains("must be a positive number"), "{e}");
    /// ```
    pub fn parse(text: &str) -> Result<Self, FormulaError> {
        let t = text.trim();
        Ok(match t {
            "sigmoid" => Activation::Sigmoid,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "selu" => Activation::Selu,
            "softplus" => Activation::Softplus,
            "swish" | "silu" => Activation::Swish,
            "gelu" => Activation::Gelu,
            "gelu_tanh" => Activation::GeluTanh,
            "mish" => Activation::Mish,
            "hardswish" => Activation::Hardswish,
            "log_sigmoid" => Activation::LogSigmoid,
            "identity" | "linear" => Activation::Identity,
            _ => {
                // name or name:parameter, for the built-ins with one.
                let (name, param) = match t.split_once(':') {
                    Some((n, p)) => (n.trim_end(), Some(p)),
                    None => (t, None),
                };
                let positive = |v: f64| v > 0.0;
                let any = |_: f64| true;
                let (default, ok, domain): (f64, &dyn Fn(f64) -> bool, &str) = match name {
                    "leaky_relu" => (0.01, &any, "a finite number"),
                    "elu" => (1.0, &any, "a finite number"),
                    "snake" => (1.0, &positive, "a positive number"),
                    "squareplus" => (4.0, &positive, "a positive number"),
                    _ => return Formula::parse(t).map(Activation::Formula).map_err(|e| suggest(t, e)),
                };
                let value = match param {
                    None => default,
                    Some(p) => match p.trim().parse::<f64>() {
                        Ok(v) if v.is_finite() && ok(v) => v,
                        _ => {
                            return Err(FormulaError {
                                formula: t.to_string(),
                                position: name.len() + 1,
                                message: format!(
                                    "the parameter of {name} must be {domain}, e.g. {name}:{default}"
                                ),
                            })
                        }
                    },
                };
                match name {
                    "leaky_relu" => Activation::LeakyRelu(value),
                    "elu" => Activation::Elu(value),
                    "snake" => Activation::Snake(value),
                    _ => Activation::Squareplus(value),
                }
            }
        })
    }

    /// A named activation from a closure of tensor ops; no derivative
    /// needed. Models with a custom activation cannot be saved (use a
    /// formula for that).
    ///
    /// ```
    /// use tapegrad_nn::Activation;
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let square = Activation::<f64>::custom("square", |z| z * z);
    /// let tape = Tape::<f64>::new();
    /// let z = tape.var(arr1(&[3.0]));
    /// assert_eq!(tape.backward(square.apply(z).sum())[z][0], 6.0);
    /// ```
    pub fn custom(
        name: &str,
        f: impl for<'t> Fn(Tensor<'t, T>) -> Tensor<'t, T> + Send + Sync + 'static,
    ) -> Self {
        Activation::Custom(name.to_string(), Arc::new(f))
    }

    /// The name that [`Activation::parse`] turns back into this activation
    /// (the formula's text for a formula).
    ///
    /// ```
    /// use tapegrad_nn::Activation;
    /// assert_eq!(Activation::<f64>::parse(" x^2 ").unwrap().name(), "x^2");
    /// ```
    pub fn name(&self) -> String {
        match self {
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Relu => "relu".into(),
            Activation::Tanh => "tanh".into(),
            Activation::LeakyRelu(a) if *a == 0.01 => "leaky_relu".into(),
            Activation::LeakyRelu(a) => format!("leaky_relu:{a}"),
            Activation::Elu(a) if *a == 1.0 => "elu".into(),
            Activation::Elu(a) => format!("elu:{a}"),
            Activation::Softplus => "softplus".into(),
            Activation::Swish => "swish".into(),
            Activation::Selu => "selu".into(),
            Activation::Gelu => "gelu".into(),
            Activation::GeluTanh => "gelu_tanh".into(),
            Activation::Mish => "mish".into(),
            Activation::Hardswish => "hardswish".into(),
            Activation::Snake(a) if *a == 1.0 => "snake".into(),
            Activation::Snake(a) => format!("snake:{a}"),
            Activation::Squareplus(b) if *b == 4.0 => "squareplus".into(),
            Activation::Squareplus(b) => format!("squareplus:{b}"),
            Activation::LogSigmoid => "log_sigmoid".into(),
            Activation::Softmax => "softmax".into(),
            Activation::Identity => "identity".into(),
            Activation::Formula(f) => f.source().to_string(),
            Activation::Custom(name, _) => name.clone(),
        }
    }

    /// Records `g(z)` on `z`'s tape.
    ///
    /// ```
    /// use tapegrad_nn::Activation;
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let a = Activation::<f64>::LeakyRelu(0.1).apply(tape.var(arr1(&[-2.0, 3.0])));
    /// assert_eq!(a.value().as_slice().unwrap(), &[-0.2, 3.0]);
    /// ```
    pub fn apply<'t>(&self, z: Tensor<'t, T>) -> Tensor<'t, T> {
        let c = T::cast;
        match self {
            Activation::Sigmoid => z.sigmoid(),
            Activation::Relu => z.relu(),
            Activation::Tanh => z.tanh(),
            // Each side picked by a mask that puts 0 on the left side, whose
            // slope is then the derivative at 0 (the module's kink
            // convention). Not max(x, 0) + alpha min(x, 0): both relus have
            // slope 0 at 0, which would give 0 there.
            Activation::LeakyRelu(a) => {
                let pos = z.value().mapv(|v| v > T::zero());
                Tensor::where_(&pos, z, z * c(*a))
            }
            Activation::Elu(a) => elu(z, *a),
            Activation::Selu => elu(z, SELU_ALPHA) * c(SELU_SCALE),
            Activation::Softplus => z.softplus(),
            Activation::Swish => z * z.sigmoid(),
            Activation::Gelu => z * ((z * c(std::f64::consts::FRAC_1_SQRT_2)).erf() + T::one()) * c(0.5),
            Activation::GeluTanh => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                let inner = (z + z.powf(c(3.0)) * c(0.044715)) * c(k);
                z * (inner.tanh() + T::one()) * c(0.5)
            }
            Activation::Hardswish => {
                // PyTorch's pieces: x > 3, -3 <= x <= 3, x < -3 (the kink
                // convention's exception, in the module doc).
                let v = z.value();
                let above = v.mapv(|x| x > c(3.0));
                let middle = v.mapv(|x| x >= c(-3.0));
                let zero = z.tape().scalar(T::zero());
                let inner = Tensor::where_(&middle, z * (z + c(3.0)) * c(1.0 / 6.0), zero);
                Tensor::where_(&above, z, inner)
            }
            Activation::Snake(a) => z + (z * c(*a)).sin().square() * c(1.0 / a),
            Activation::Squareplus(b) => {
                let root = (z.square() + c(*b)).sqrt();
                let neg = z.value().mapv(|x| x < T::zero());
                // Both forms are the same smooth function, so picking one
                // per element changes no derivative.
                let stable = (root - z).recip() * c(*b / 2.0);
                Tensor::where_(&neg, stable, (z + root) * c(0.5))
            }
            Activation::LogSigmoid => z.log_sigmoid(),
            Activation::Mish => z * z.softplus().tanh(),
            Activation::Identity => z,
            Activation::Formula(f) => f.apply(z),
            Activation::Custom(_, f) => f(z),
            Activation::Softmax => z.softmax(0),
        }
    }

    /// Whether this is the sigmoid, so that the cost can use the stable
    /// cross-entropy from logits.
    ///
    /// ```
    /// assert!(tapegrad_nn::Activation::<f64>::Sigmoid.is_sigmoid());
    /// ```
    pub fn is_sigmoid(&self) -> bool {
        matches!(self, Activation::Sigmoid)
    }
}

/// `x` for `x > 0`, `alpha (e^x - 1)` otherwise.
fn elu<'t, T: Element>(z: Tensor<'t, T>, alpha: f64) -> Tensor<'t, T> {
    let neg = z.value().mapv(|v| v <= T::zero());
    // exp of min(z, 0), with the minimum taken by the mask: the tie rule
    // of `minimum` would halve the slope at 0, and an exp of the unused
    // positive side could overflow, giving 0 * inf = NaN in the backward
    // pass. The mask puts 0 on the left side, whose slope is then the
    // derivative at 0 (the module's kink convention).
    let z_neg = Tensor::where_(&neg, z, z.tape().scalar(T::zero()));
    let e = (z_neg.exp() - T::one()) * T::cast(alpha);
    Tensor::where_(&neg, e, z)
}

impl<T: Element> fmt::Debug for Activation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Activation({})", self.name())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_misspelt_name_gets_a_did_you_mean() {
        // Issue 21, defect 7: `rain trian`-style typos named nothing close.
        let e = Activation::<f64>::parse("reul").unwrap_err();
        assert!(e.message.starts_with("did you mean relu?"), "{e}");
        let e = Activation::<f64>::parse("sigmod").unwrap_err();
        assert!(e.message.starts_with("did you mean sigmoid?"), "{e}");
        // Nothing close, or not a bare word: no guess.
        assert!(!Activation::<f64>::parse("zzzz").unwrap_err().message.contains("did you mean"));
        assert!(!Activation::<f64>::parse("x * reul").unwrap_err().message.contains("did you mean"));
    }

    use super::*;
    use tapegrad_tensor::{gradcheck, ndarray::ArrayD, ndarray::IxDyn, Tape};

    /// Points away from the kinks of relu, leaky relu, elu and selu at 0.
    fn grid() -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(&[2, 9]), |i| -2.05 + 0.5 * (i[0] * 9 + i[1]) as f64 / 2.0)
    }

    /// From -4.05 to 4.45 in steps of 0.5: every piece of hardswish, and
    /// no point within 0.05 of a kink (0, -3, 3).
    fn wide_grid() -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(&[3, 6]), |i| -4.05 + 0.5 * (i[0] * 6 + i[1]) as f64)
    }

    #[test]
    fn every_activation_passes_gradcheck() {
        // gradcheck: central differences in f64 against a random upstream
        // gradient (not all ones), at its default tolerances.
        let names = BUILTIN_NAMES.iter().copied().chain([
            "leaky_relu:0.2",
            "elu:0.5",
            "snake:0.5",
            "snake:3",
            "squareplus:1",
            "squareplus:0.01",
            "x^3 - 2*x",
            "log(1 + x^2)",
        ]);
        for name in names {
            let act = Activation::<f64>::parse(name).unwrap();
            for x in [grid(), wide_grid()] {
                let report = gradcheck(|x| act.apply(x[0]), &[x]);
                assert!(report.passed(), "{name}\n{report}");
            }
        }
    }

    #[test]
    fn softmax_output_passes_gradcheck_over_the_rows() {
        let act = Activation::<f64>::Softmax;
        let report = gradcheck(|x| act.apply(x[0]), &[wide_grid()]);
        assert!(report.passed(), "{report}");
        // Each column (example) sums to 1; the sum of 6 terms rounds by a
        // few ulps.
        let tape = Tape::<f64>::new();
        let p = act.apply(tape.constant(wide_grid())).value();
        for s in p.sum_axis(tapegrad_tensor::ndarray::Axis(0)).iter() {
            approx::assert_abs_diff_eq!(*s, 1.0, epsilon = 4.0 * f64::EPSILON);
        }
    }

    #[test]
    fn swish_formula_matches_builtin_in_values_and_gradients() {
        let builtin = Activation::<f64>::Swish;
        let formula = Activation::<f64>::parse("x * sigmoid(x)").unwrap();
        let tape = Tape::<f64>::new();
        let z = tape.var(grid());
        let (a, b) = (builtin.apply(z), formula.apply(z));
        // The same ops in the same order: bit-identical.
        assert_eq!(a.value(), b.value());
        assert_eq!(tape.backward(a.sum())[z], tape.backward(b.sum())[z]);
    }

    #[test]
    fn builtins_match_their_formulas() {
        let tape = Tape::<f64>::new();
        let z = tape.var(grid());
        let v = z.value();
        let check = |name: &str, f: &dyn Fn(f64) -> f64| {
            let got = Activation::<f64>::parse(name).unwrap().apply(z).value();
            for (&x, &y) in v.iter().zip(got.iter()) {
                approx::assert_relative_eq!(y, f(x), max_relative = 1e-12, epsilon = 1e-15);
            }
        };
        check("leaky_relu", &|x| if x > 0.0 { x } else { 0.01 * x });
        check("elu", &|x| if x > 0.0 { x } else { x.exp() - 1.0 });
        check("mish", &|x| x * (1.0 + x.exp()).ln().tanh());
        check("gelu_tanh", &|x| {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        });
        check("selu", &|x| SELU_SCALE * if x > 0.0 { x } else { SELU_ALPHA * (x.exp() - 1.0) });
        check("hardswish", &|x| x * (x + 3.0).clamp(0.0, 6.0) / 6.0);
        check("snake", &|x| x + x.sin().powi(2));
        check("snake:0.5", &|x| x + (0.5 * x).sin().powi(2) / 0.5);
        check("squareplus", &|x| (x + (x * x + 4.0).sqrt()) / 2.0);
        check("squareplus:0.5", &|x| (x + (x * x + 0.5).sqrt()) / 2.0);
        check("log_sigmoid", &|x| -(1.0 + (-x).exp()).ln());
        check("softplus", &|x| (1.0 + x.exp()).ln());
    }

    /// `f'(0)` by autodiff, with an upstream gradient of 3 (not 1), so that
    /// a rule that dropped the upstream factor would show.
    fn slope_at_zero(name: &str) -> f64 {
        let act = Activation::<f64>::parse(name).unwrap();
        let tape = Tape::<f64>::new();
        let z = tape.var(ArrayD::zeros(IxDyn(&[1])));
        tape.backward((act.apply(z) * 3.0).sum())[z][0] / 3.0
    }

    #[test]
    fn kinks_take_the_left_sides_slope_as_pytorch() {
        // The module doc's table. Every product here is of exact binary
        // values (3, alpha, e^0 = 1), so the results are exact; the margin
        // is one ulp of 1, for the division by 3.
        for (name, want) in [
            ("relu", 0.0),
            ("relu(x)", 0.0),
            ("leaky_relu", 0.01),
            ("leaky_relu:0.2", 0.2),
            ("elu", 1.0),
            ("elu:0.5", 0.5),
            ("abs(x)", 0.0),
        ] {
            approx::assert_abs_diff_eq!(slope_at_zero(name), want, epsilon = f64::EPSILON);
        }
        // SELU: scale alpha, the left side; the products by 3, alpha and
        // scale and the division by 3 round: 4 ulps.
        approx::assert_relative_eq!(
            slope_at_zero("selu"),
            SELU_SCALE * SELU_ALPHA,
            max_relative = 4.0 * f64::EPSILON
        );
    }

    /// `f'(x)` by autodiff at one point, with an upstream gradient of 3.
    fn slope_at(name: &str, x: f64) -> f64 {
        let act = Activation::<f64>::parse(name).unwrap();
        let tape = Tape::<f64>::new();
        let z = tape.var(ArrayD::from_elem(IxDyn(&[1]), x));
        tape.backward((act.apply(z) * 3.0).sum())[z][0] / 3.0
    }

    #[test]
    fn hardswish_takes_pytorchs_slopes_at_its_kinks() {
        // PyTorch's hardswish_backward: 0 for x < -3, x / 3 + 0.5 for
        // -3 <= x <= 3, 1 above. The middle piece's slope (2x + 3) / 6 is
        // computed from x (x + 3) / 6 in a few roundings: 4 ulps.
        for (x, want) in [(-3.0, -0.5), (3.0, 1.5), (-3.5, 0.0), (3.5, 1.0), (0.0, 0.5)] {
            approx::assert_abs_diff_eq!(slope_at("hardswish", x), want, epsilon = 4.0 * f64::EPSILON);
        }
    }

    #[test]
    fn a_bad_parameter_is_an_error_naming_the_domain() {
        for (text, want) in [
            ("snake:0", "the parameter of snake must be a positive number"),
            ("snake:-1", "positive"),
            ("squareplus:0", "the parameter of squareplus must be a positive number"),
            ("squareplus:inf", "positive"),
            ("elu:abc", "the parameter of elu must be a finite number"),
            ("leaky_relu:NaN", "leaky_relu"),
        ] {
            let e = Activation::<f64>::parse(text).unwrap_err();
            assert!(e.to_string().contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn squareplus_has_no_cancellation_for_large_negative_inputs() {
        // (x + sqrt(x^2 + b)) / 2 at x = -1e4 in f32 keeps 2 digits of
        // b / (2 (sqrt(x^2 + b) - x)) = 1e-4; the stable form all of them.
        let tape = Tape::<f32>::new();
        let z = tape.var(ArrayD::from_elem(IxDyn(&[1]), -1e4f32));
        let y = Activation::<f32>::parse("squareplus").unwrap().apply(z);
        let want = 4.0 / (2.0 * ((1e8f64 + 4.0).sqrt() + 1e4));
        // f32: a few roundings of 6e-8 relative each.
        approx::assert_relative_eq!(y.item() as f64, want, max_relative = 1e-6);
        let g = tape.backward(y.sum())[z][0] as f64;
        // d/dx = (1 + x / sqrt(x^2 + b)) / 2 = b / (4 (x^2 + b)) for
        // large |x|, after cancellation: 1e-8, relative 1e-5 in f32.
        approx::assert_relative_eq!(g, 4.0 / (4.0 * (1e8 + 4.0)), max_relative = 1e-5);
    }

    #[test]
    fn elu_with_alpha_one_has_slope_one_at_zero() {
        // Defect 2 of issue 17: the tie rule of minimum(z, 0) gave 0.5.
        // Exact: alpha * e^0 = 1; the margin allows the division by 3.
        approx::assert_abs_diff_eq!(slope_at_zero("elu"), 1.0, epsilon = f64::EPSILON);
    }

    #[test]
    fn leaky_relu_has_slope_alpha_at_zero() {
        // Defect 3 of issue 17: relu(z) - alpha relu(-z) gave 0, the guide
        // and PyTorch alpha. Exact up to the division by 3.
        approx::assert_abs_diff_eq!(slope_at_zero("leaky_relu:0.3"), 0.3, epsilon = f64::EPSILON);
    }

    #[test]
    fn elu_gradient_is_finite_for_huge_inputs() {
        // The unused exp side must not overflow into the backward pass.
        let tape = Tape::<f64>::new();
        let z = tape.var(ArrayD::from_shape_vec(IxDyn(&[3]), vec![1e300, f64::MAX, -1e300]).unwrap());
        let g = tape.backward(Activation::<f64>::Elu(1.0).apply(z).sum())[z].clone();
        // Exact: the positive side's slope is the upstream 1 itself, the
        // negative side's e^-1e300 underflows to 0.
        for (got, want) in g.iter().zip([1.0, 1.0, 0.0]) {
            approx::assert_abs_diff_eq!(*got, want, epsilon = 0.0);
        }
    }

    #[test]
    fn names_round_trip() {
        for name in BUILTIN_NAMES.iter().copied().chain([
            "leaky_relu:0.2",
            "snake:0.25",
            "squareplus:2",
            "x * sigmoid(1.702 * x)",
        ]) {
            let a = Activation::<f32>::parse(name).unwrap();
            assert_eq!(Activation::<f32>::parse(&a.name()).unwrap().name(), a.name());
        }
    }
}
