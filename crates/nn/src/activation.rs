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
//!
//! The same holds in formulas, whose `relu(x)` is the tensor op `relu`.
//! A formula's `abs(x)` has derivative `sign(0) = 0` at 0, as PyTorch's
//! `abs`: the mean of the two slopes, not a one-sided one. The built-ins
//! `sigmoid`, `tanh`, `softplus`, `swish`, `gelu`, `mish` and `identity`
//! are smooth and have no kink.
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
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, the tanh form.
    Gelu,
    /// `x tanh(softplus(x))`.
    Mish,
    /// `x` (no activation; a linear layer).
    Identity,
    /// A formula in `x`.
    Formula(Formula),
    /// A closure with a name.
    Custom(String, Closure<T>),
}

/// The built-in names accepted by [`Activation::parse`].
pub const BUILTIN_NAMES: [&str; 11] =
    ["sigmoid", "relu", "tanh", "leaky_relu", "elu", "softplus", "swish", "silu", "gelu", "mish", "identity"];

impl<T: Element> Activation<T> {
    /// A built-in by name (`leaky_relu` has alpha 0.01, `elu` alpha 1;
    /// `leaky_relu:0.2` and `elu:0.5` choose alpha), or else a formula in `x`.
    ///
    /// # Errors
    /// When the text is neither a built-in name nor a formula that parses.
    ///
    /// ```
    /// use tapegrad_nn::Activation;
    /// assert_eq!(Activation::<f32>::parse("relu").unwrap().name(), "relu");
    /// assert_eq!(Activation::<f32>::parse("leaky_relu:0.2").unwrap().name(), "leaky_relu:0.2");
    /// assert!(Activation::<f32>::parse("x *").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, FormulaError> {
        let t = text.trim();
        let with_alpha = |prefix: &str, default: f64| -> Option<f64> {
            let rest = t.strip_prefix(prefix)?;
            if rest.is_empty() {
                Some(default)
            } else {
                rest.strip_prefix(':')?.parse().ok().filter(|a: &f64| a.is_finite())
            }
        };
        Ok(match t {
            "sigmoid" => Activation::Sigmoid,
            "relu" => Activation::Relu,
            "tanh" => Activation::Tanh,
            "softplus" => Activation::Softplus,
            "swish" | "silu" => Activation::Swish,
            "gelu" => Activation::Gelu,
            "mish" => Activation::Mish,
            "identity" | "linear" => Activation::Identity,
            _ => {
                if let Some(a) = with_alpha("leaky_relu", 0.01) {
                    Activation::LeakyRelu(a)
                } else if let Some(a) = with_alpha("elu", 1.0) {
                    Activation::Elu(a)
                } else {
                    Activation::Formula(Formula::parse(t)?)
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
            Activation::Gelu => "gelu".into(),
            Activation::Mish => "mish".into(),
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
            Activation::Elu(a) => {
                let neg = z.value().mapv(|v| v <= T::zero());
                // exp of min(z, 0), with the minimum taken by the mask: the
                // tie rule of `minimum` would halve the slope at 0, and an
                // exp of the unused positive side could overflow, giving
                // 0 * inf = NaN in the backward pass.
                let z_neg = Tensor::where_(&neg, z, z.tape().scalar(T::zero()));
                let e = (z_neg.exp() - T::one()) * c(*a);
                Tensor::where_(&neg, e, z)
            }
            Activation::Softplus => z.softplus(),
            Activation::Swish => z * z.sigmoid(),
            Activation::Gelu => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                let inner = (z + z.powf(c(3.0)) * c(0.044715)) * c(k);
                z * (inner.tanh() + T::one()) * c(0.5)
            }
            Activation::Mish => z * z.softplus().tanh(),
            Activation::Identity => z,
            Activation::Formula(f) => f.apply(z),
            Activation::Custom(_, f) => f(z),
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

impl<T: Element> fmt::Debug for Activation<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Activation({})", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapegrad_tensor::{gradcheck, ndarray::ArrayD, ndarray::IxDyn, Tape};

    /// Points away from the kinks of relu, leaky relu and elu at 0.
    fn grid() -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(&[2, 9]), |i| -2.05 + 0.5 * (i[0] * 9 + i[1]) as f64 / 2.0)
    }

    #[test]
    fn every_activation_passes_gradcheck() {
        let names =
            BUILTIN_NAMES.iter().copied().chain(["leaky_relu:0.2", "elu:0.5", "x^3 - 2*x", "log(1 + x^2)"]);
        for name in names {
            let act = Activation::<f64>::parse(name).unwrap();
            let report = gradcheck(|x| act.apply(x[0]), &[grid()]);
            assert!(report.passed(), "{name}\n{report}");
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
        check("gelu", &|x| {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        });
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
        for name in BUILTIN_NAMES.iter().copied().chain(["leaky_relu:0.2", "x * sigmoid(1.702 * x)"]) {
            let a = Activation::<f32>::parse(name).unwrap();
            assert_eq!(Activation::<f32>::parse(&a.name()).unwrap().name(), a.name());
        }
    }
}
