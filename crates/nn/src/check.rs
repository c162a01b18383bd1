//! Checking hand-written backprop: the guide's backward formulas as a
//! reference implementation, finite differences, a checker that compares
//! any user-supplied gradients with tapegrad's, and [`GradCheck`], which
//! runs all three on a model, and [`ExternalGradients`], which checks the
//! gradients of another implementation (numpy's, say) read from files.
//!
//! Every comparison fails on a NaN or an infinity in either gradient, and
//! reports NaN for it: a broken derivation must never read as correct.

mod external;

pub use external::{ExternalGradients, ExternalReport, ExternalRow};

use crate::activation::Activation;
use crate::error::NnError;
use crate::head::Head;
use crate::loss::Loss;
use crate::model::{Layer, Model, Params};
use std::fmt;
use tapegrad_tensor::ndarray::{Array2, ArrayView2, Axis, Ix2};
use tapegrad_tensor::{Element, Tape};

/// `g'(z)` for the activations the guide's formulas cover, from `z` and
/// `a = g(z)`. At a kink, the left side's slope, as autodiff (see
/// [the kink convention](crate::activation#derivatives-at-a-kink)).
/// `relu_at_zero` is relu's slope at exactly 0 (the guide's 0; another
/// implementation's mistake, 1, to recognise it).
fn derivative(act: &Activation<f64>, z: f64, a: f64, relu_at_zero: f64) -> Option<f64> {
    Some(match act {
        Activation::Relu => {
            if z > 0.0 {
                1.0
            } else if z == 0.0 {
                relu_at_zero
            } else {
                0.0
            }
        }
        Activation::Sigmoid => a * (1.0 - a),
        Activation::Tanh => 1.0 - a * a,
        Activation::LeakyRelu(alpha) => {
            if z > 0.0 {
                1.0
            } else {
                *alpha
            }
        }
        Activation::Identity => 1.0,
        _ => return None,
    })
}

/// The guide's hand-derived gradients of the cost (mean cross-entropy,
/// sigmoid output, plus `lambda / 2m sum ||W||^2`), computed in f64:
///
/// - `dZ[L] = A[L] - Y`
/// - `dW[l] = dZ[l] A[l-1]^T / m + lambda / m W[l]`
/// - `db[l] = row sums of dZ[l] / m`
/// - `dA[l-1] = W[l]^T dZ[l]`
/// - `dZ[l] = dA[l] * g'(Z[l])`, with `relu'(z) = 0` for `z <= 0` (at a
///   kink, the left side's slope: see
///   [the kink convention](crate::activation#derivatives-at-a-kink)).
///
/// The same formulas hold for the other heads (see [`Head`]) with their
/// own `dZ[L]`: `A[L] - Y` for a softmax head with categorical
/// cross-entropy (`A[L]` the softmax of each column, computed here by
/// hand, `Y` one-hot), and `2 (A[L] - Y) / n[L]` for a regression head
/// with mean squared error (`A[L] = Z[L]`). Labels are taken in any form
/// [`crate::fit`] takes.
///
/// Every layer `1..=L` is updated, not one more (the guide's update loop
/// runs past the last layer).
///
/// # Errors
/// When a binary head's output is not a sigmoid, a hidden activation is
/// not one whose derivative the guide gives (relu, sigmoid, tanh,
/// leaky_relu, identity), or the data or labels do not fit.
///
/// ```
/// use tapegrad_nn::{check::guide_backward, Architecture, Init, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let g = guide_backward(&model, array![[0.5, -1.0], [1.0, 2.0]].view(), array![[1.0, 0.0]].view(), 0.0).unwrap();
/// assert_eq!(g["W1"].dim(), (3, 2));
/// assert_eq!(g.len(), 4);
/// // Three classes, labels as class indices.
/// let model = Model::<f64>::new(&Architecture::softmax(2, &[3], 3), Init::HeNormal, 0).unwrap();
/// let g = guide_backward(&model, array![[0.5, -1.0], [1.0, 2.0]].view(), array![[2.0, 0.0]].view(), 0.0).unwrap();
/// assert_eq!(g["b2"].dim(), (3, 1));
/// ```
pub fn guide_backward<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    l2: f64,
) -> Result<Params<f64>, NnError> {
    guide_backward_with(model, x, y, l2, 0.0)
}

/// [`guide_backward`] with relu's slope at exactly 0 given.
fn guide_backward_with<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    l2: f64,
    relu_at_zero: f64,
) -> Result<Params<f64>, NnError> {
    let model = model.cast::<f64>()?;
    let x = x.mapv(|v| v.as_f64());
    model.check_input(x.nrows())?;
    let y = model.targets(y.mapv(|v| v.as_f64()).view(), x.ncols())?;
    let acts = model.activations();
    let l_count = acts.len();
    let head = model.head();
    if head == Head::Binary && !acts[l_count - 1].is_sigmoid() {
        return Err(NnError::InvalidHyperParameter {
            name: "output activation",
            value: acts[l_count - 1].name(),
            reason: "the guide's formula dZ[L] = A[L] - Y needs a sigmoid output".into(),
        });
    }
    let layers: Vec<Layer<&Array2<f64>>> = model.layers().collect();
    let m = x.ncols() as f64;
    // Forward, keeping the caches (Z[l], A[l]).
    let mut a_cache = vec![x];
    let mut z_cache = Vec::new();
    for (l, (act, Layer { w, b })) in acts.iter().zip(&layers).enumerate() {
        let z = w.dot(&a_cache[l]) + *b;
        let a = if act.is_sigmoid() {
            z.mapv(|v| 1.0 / (1.0 + (-v).exp()))
        } else if matches!(act, Activation::Softmax) {
            softmax_columns(&z)
        } else {
            let tape = Tape::<f64>::new();
            act.apply(tape.constant(z.clone())).value().into_dimensionality::<Ix2>().expect("2-D").to_owned()
        };
        z_cache.push(z);
        a_cache.push(a);
    }
    // Backward.
    let mut grads = Params::new();
    let mut dz = &a_cache[l_count] - &y;
    if head == Head::Regression {
        dz *= 2.0 / y.nrows() as f64;
    }
    for l in (1..=l_count).rev() {
        let w = layers[l - 1].w;
        let dw = dz.dot(&a_cache[l - 1].t()) / m + w * (l2 / m);
        let db = dz.sum_axis(Axis(1)).insert_axis(Axis(1)) / m;
        let names = Layer::names(l);
        grads.insert(names.b, db);
        grads.insert(names.w, dw);
        if l > 1 {
            let da = w.t().dot(&dz);
            let act = &acts[l - 2];
            let mut out = da;
            for ((d, &z), &a) in out.iter_mut().zip(z_cache[l - 2].iter()).zip(a_cache[l - 1].iter()) {
                let g = derivative(act, z, a, relu_at_zero).ok_or_else(|| NnError::InvalidHyperParameter {
                    name: "hidden activation",
                    value: act.name(),
                    reason: "the guide's reference backward knows relu, sigmoid, tanh, leaky_relu and identity; check other activations against autodiff or finite differences".into(),
                })?;
                *d *= g;
            }
            dz = out;
        }
    }
    // Insertion order W1, b1, ... as the model's.
    Ok(model.params().keys().map(|k| (k.clone(), grads.swap_remove(k).expect("every parameter"))).collect())
}

/// `e^(z - max) / sum e^(z - max)` of each column, by hand.
fn softmax_columns(z: &Array2<f64>) -> Array2<f64> {
    let mut a = z.clone();
    for mut col in a.columns_mut() {
        let max = col.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        col.mapv_inplace(|v| (v - max).exp());
        let sum = col.sum();
        col.mapv_inplace(|v| v / sum);
    }
    a
}

/// tapegrad's gradients of `loss` at the model's parameters, as f64.
/// Labels are taken in any form [`crate::fit`] takes.
///
/// # Errors
/// When the data or labels do not fit the model, or the loss does not fit
/// its head.
///
/// ```
/// use tapegrad_nn::{check::autodiff_gradients, Architecture, Init, Loss, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f32>::new(&Architecture::guide(1, &[2]), Init::HeNormal, 0).unwrap();
/// let g = autodiff_gradients(&model, array![[1.0f32, -1.0]].view(), array![[1.0f32, 0.0]].view(), &Loss::default()).unwrap();
/// assert_eq!(g["W2"].dim(), (1, 2));
/// ```
pub fn autodiff_gradients<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    loss: &Loss,
) -> Result<Params<f64>, NnError> {
    model.check_input(x.nrows())?;
    let y = model.targets(y, x.ncols())?;
    loss.check_head(model.head())?;
    let tape = Tape::new();
    let fwd = model.forward(&tape, tape.constant(x.to_owned()), None);
    let cost = loss.cost(model, &fwd, tape.constant(y));
    let grads = tape.backward(cost);
    Ok(fwd
        .params
        .iter()
        .map(|(k, t)| {
            let g = grads[*t].mapv(|v| v.as_f64()).into_dimensionality::<Ix2>().expect("2-D");
            (k.clone(), g)
        })
        .collect())
}

/// Central finite differences of the cost in f64, one parameter element at
/// a time: `(J(p + eps) - J(p - eps)) / 2 eps`. Labels are taken in any
/// form [`crate::fit`] takes.
///
/// # Errors
/// When the data or labels do not fit, the loss does not fit the head, or
/// the model cannot be cast to f64.
///
/// ```
/// use tapegrad_nn::{check::finite_difference_gradients, Architecture, Init, Loss, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(1, &[]), Init::Zeros, 0).unwrap();
/// let g = finite_difference_gradients(&model, array![[2.0]].view(), array![[1.0]].view(), &Loss::default(), 1e-6).unwrap();
/// assert!((g["W1"][[0, 0]] - (0.5 - 1.0) * 2.0).abs() < 1e-9);
/// ```
pub fn finite_difference_gradients<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    loss: &Loss,
    eps: f64,
) -> Result<Params<f64>, NnError> {
    let model = model.cast::<f64>()?;
    let x = x.mapv(|v| v.as_f64());
    let y = y.mapv(|v| v.as_f64());
    let entries: Vec<Vec<usize>> = model.params().values().map(|p| (0..p.len()).collect()).collect();
    let values = finite_differences_at(model, x.view(), y.view(), loss, eps, &entries, &mut |_, _| {})?;
    Ok(values
        .into_iter()
        .map(|(name, shape, v)| (name, Array2::from_shape_vec(shape, v).expect("one value per element")))
        .collect())
}

/// A parameter's name, shape, and values at its checked elements.
type Sampled = (String, (usize, usize), Vec<f64>);

/// Central differences at the listed elements (row-major indices) of each
/// parameter, in the order of `model.params()`: per parameter its name,
/// shape and one value per listed element. `on_progress(done, total)`
/// follows the cost evaluations.
fn finite_differences_at(
    mut model: Model<f64>,
    x: ArrayView2<'_, f64>,
    y: ArrayView2<'_, f64>,
    loss: &Loss,
    eps: f64,
    entries: &[Vec<usize>],
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Sampled>, NnError> {
    model.check_input(x.nrows())?;
    let y = model.targets(y, x.ncols())?;
    loss.check_head(model.head())?;
    let names: Vec<String> = model.params().keys().cloned().collect();
    let total = entries.iter().map(Vec::len).sum::<usize>();
    let mut done = 0;
    let mut out = Vec::with_capacity(names.len());
    for (name, idx) in names.into_iter().zip(entries) {
        let shape = model.params()[&name].dim();
        let mut values = Vec::with_capacity(idx.len());
        for &i in idx {
            let (r, c) = (i / shape.1, i % shape.1);
            let orig = model.params()[&name][[r, c]];
            model.params_mut()[&name][[r, c]] = orig + eps;
            let fp = crate::train::cost_on_targets(&model, loss, x, y.view());
            model.params_mut()[&name][[r, c]] = orig - eps;
            let fm = crate::train::cost_on_targets(&model, loss, x, y.view());
            model.params_mut()[&name][[r, c]] = orig;
            values.push((fp - fm) / (2.0 * eps));
            done += 1;
            on_progress(done, total);
        }
        out.push((name, shape, values));
    }
    Ok(out)
}

/// How close two gradients must be: `max |given - reference| <= abs + rel *
/// scale`, `scale` being the largest magnitude on either side. The
/// relative part follows the gradient's size; the absolute floor is what a
/// measurement can resolve at all (finite differences carry rounding error
/// of about `machine epsilon * |cost| / step` whatever the gradient's
/// size, so a tiny gradient cannot be held to a relative bound).
///
/// A bare `f64` converts to a purely relative tolerance (no floor).
///
/// ```
/// use tapegrad_nn::check::Tolerance;
/// let t = Tolerance::new(1e-9, 1e-6);
/// assert!(t.allows(1e-9, 0.0));     // within the floor
/// assert!(t.allows(1e-6, 1.0));     // within the relative part
/// assert!(!t.allows(1e-5, 1.0));
/// assert!(!t.allows(f64::NAN, 1.0));
/// assert_eq!(Tolerance::from(1e-6), Tolerance::new(0.0, 1e-6));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// The absolute floor.
    pub abs: f64,
    /// The bound relative to the gradient's scale.
    pub rel: f64,
}

impl Tolerance {
    /// A tolerance of `abs + rel * scale`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::check::Tolerance::new(1e-9, 1e-6).rel, 1e-6);
    /// ```
    pub const fn new(abs: f64, rel: f64) -> Self {
        Tolerance { abs, rel }
    }

    /// Whether a largest difference `max_abs_diff` is within the tolerance
    /// for gradients of magnitude up to `scale` (never for a NaN).
    ///
    /// ```
    /// assert!(tapegrad_nn::check::Tolerance::new(0.0, 1e-3).allows(1e-3, 1.0));
    /// ```
    pub fn allows(&self, max_abs_diff: f64, scale: f64) -> bool {
        max_abs_diff <= self.abs + self.rel * scale
    }
}

impl From<f64> for Tolerance {
    fn from(rel: f64) -> Self {
        Tolerance { abs: 0.0, rel }
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.abs == 0.0 {
            write!(f, "|diff| <= {:.0e} x scale", self.rel)
        } else {
            write!(f, "|diff| <= {:.0e} + {:.0e} x scale", self.abs, self.rel)
        }
    }
}

/// One row of a [`GradientReport`].
///
/// ```
/// let r = tapegrad_nn::check::ParamCheck {
///     name: "W1".into(), shape: (2, 3), checked: 6, max_abs_diff: 0.0, max_rel_diff: 0.0, passed: true,
/// };
/// assert!(r.passed);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    /// The parameter's name.
    pub name: String,
    /// Its shape.
    pub shape: (usize, usize),
    /// How many of its elements were compared: all of them, or a seeded
    /// sample when a full finite-difference check would take too long
    /// (see [`GradCheck`]).
    pub checked: usize,
    /// `max |user - reference|` over its elements; NaN when a difference
    /// is NaN.
    pub max_abs_diff: f64,
    /// `max |user - reference| / max(max |user|, max |reference|)`: the
    /// difference relative to the parameter gradient's scale, so that an
    /// element that is tiny by cancellation does not dominate. NaN when
    /// either side holds a NaN or an infinity; infinite when a gradient is
    /// missing or of the wrong shape.
    pub max_rel_diff: f64,
    /// Whether every element on both sides is finite and the largest
    /// difference is within the [`Tolerance`].
    pub passed: bool,
}

/// The result of [`check_gradients`]: one row per parameter, and a table
/// when displayed.
///
/// ```
/// use tapegrad_nn::{check::{check_gradients, guide_backward}, Architecture, Init, Loss, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let (x, y) = (array![[0.5, -1.0], [1.0, 2.0]], array![[1.0, 0.0]]);
/// let mine = guide_backward(&model, x.view(), y.view(), 0.0).unwrap();
/// let report = check_gradients(&model, x.view(), y.view(), &Loss::default(), &mine, 1e-10).unwrap();
/// assert!(report.passed(), "{report}");
/// println!("{report}");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GradientReport {
    /// One row per model parameter, in order.
    pub rows: Vec<ParamCheck>,
    /// The tolerance applied.
    pub tolerance: Tolerance,
}

impl GradientReport {
    /// Whether every parameter passed.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradientReport { rows: vec![], tolerance: 1e-9.into() }.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed)
    }

    /// The rows that failed.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradientReport { rows: vec![], tolerance: 1e-9.into() }.failures().is_empty());
    /// ```
    pub fn failures(&self) -> Vec<&ParamCheck> {
        self.rows.iter().filter(|r| !r.passed).collect()
    }
}

impl fmt::Display for GradientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>11} {:>13} {:>13}  result (pass: {})",
            "parameter", "shape", "max |diff|", "max rel diff", self.tolerance
        )?;
        for r in &self.rows {
            let total = r.shape.0 * r.shape.1;
            let shape = format!("{}x{}", r.shape.0, r.shape.1);
            let result = if r.passed { "ok" } else { "FAIL" };
            let sampled = if r.checked < total {
                format!(" ({} of {total} entries sampled)", r.checked)
            } else {
                String::new()
            };
            writeln!(
                f,
                "{:<10} {:>11} {:>13.3e} {:>13.3e}  {result}{sampled}",
                r.name, shape, r.max_abs_diff, r.max_rel_diff
            )?;
        }
        Ok(())
    }
}

/// The largest of `values` (0 for none), and NaN if any is NaN.
/// `f64::max` returns the other operand when one is NaN, so a fold with it
/// would report a NaN gradient as a difference of 0.
fn max_or_nan(values: impl IntoIterator<Item = f64>) -> f64 {
    values.into_iter().fold(0.0, |m, v| if m.is_nan() || v.is_nan() { f64::NAN } else { m.max(v) })
}

/// Compares gradients given by parameter name (from a hand-written backward
/// pass, or anywhere) with `reference`, and reports per parameter.
/// Parameters missing from `given` fail, and so does any parameter with a
/// NaN or an infinity on either side (reported as a relative difference of
/// NaN). A parameter passes when its largest difference is within
/// `tolerance` ([`Tolerance`]; a bare `f64` is relative, with no floor).
///
/// ```
/// use tapegrad_nn::{check::{compare_gradients, Tolerance}, Params};
/// use tapegrad_tensor::ndarray::arr2;
/// let mut a = Params::new();
/// a.insert("W1".to_string(), arr2(&[[1.0, 2.0]]));
/// let mut b = a.clone();
/// b["W1"][[0, 1]] = 2.1;
/// let r = compare_gradients(&b, &a, 1e-6);
/// assert!(!r.passed());
/// assert!((r.rows[0].max_rel_diff - 0.1 / 2.1).abs() < 1e-12);
/// // Gradients of 1e-9 that differ by 1e-10: relative 0.1, within a floor of 1e-9.
/// let (tiny, off) = (params(1e-9), params(1.1e-9));
/// # fn params(v: f64) -> Params<f64> { let mut p = Params::new(); p.insert("b1".into(), arr2(&[[v]])); p }
/// assert!(!compare_gradients(&off, &tiny, 1e-6).passed());
/// assert!(compare_gradients(&off, &tiny, Tolerance::new(1e-9, 1e-6)).passed());
/// ```
pub fn compare_gradients(
    given: &Params<f64>,
    reference: &Params<f64>,
    tolerance: impl Into<Tolerance>,
) -> GradientReport {
    let tolerance = tolerance.into();
    let rows = reference
        .iter()
        .map(|(name, r)| match given.get(name) {
            Some(g) if g.dim() == r.dim() => {
                compare_entries(name, r.dim(), g.iter().copied().zip(r.iter().copied()), tolerance)
            }
            _ => ParamCheck {
                name: name.clone(),
                shape: r.dim(),
                checked: 0,
                max_abs_diff: f64::INFINITY,
                max_rel_diff: f64::INFINITY,
                passed: false,
            },
        })
        .collect();
    GradientReport { rows, tolerance }
}

/// One parameter's row from pairs `(given, reference)` of its elements
/// (all of them, or a sample).
fn compare_entries(
    name: &str,
    shape: (usize, usize),
    pairs: impl Iterator<Item = (f64, f64)> + Clone,
    tolerance: Tolerance,
) -> ParamCheck {
    let finite = pairs.clone().all(|(a, b)| a.is_finite() && b.is_finite());
    let max_abs_diff = max_or_nan(pairs.clone().map(|(a, b)| (a - b).abs()));
    let scale = max_or_nan(pairs.clone().map(|(a, b)| a.abs().max(b.abs())));
    let max_rel_diff = if !finite {
        f64::NAN
    } else if max_abs_diff == 0.0 {
        0.0
    } else {
        max_abs_diff / scale
    };
    let passed = finite && tolerance.allows(max_abs_diff, scale);
    ParamCheck { name: name.to_string(), shape, checked: pairs.count(), max_abs_diff, max_rel_diff, passed }
}

/// Compares user-supplied gradients with tapegrad's autodiff gradients of
/// `loss` on `(x, y)`.
///
/// # Errors
/// When the data does not fit the model.
///
/// ```
/// use tapegrad_nn::{check::check_gradients, Architecture, Init, Loss, Model, Params};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(1, &[]), Init::Zeros, 0).unwrap();
/// let r = check_gradients(&model, array![[1.0]].view(), array![[1.0]].view(), &Loss::default(), &Params::new(), 1e-9).unwrap();
/// assert_eq!(r.failures().len(), 2); // W1 and b1 missing
/// ```
pub fn check_gradients<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    loss: &Loss,
    given: &Params<f64>,
    tolerance: impl Into<Tolerance>,
) -> Result<GradientReport, NnError> {
    let reference = autodiff_gradients(model, x, y, loss)?;
    Ok(compare_gradients(given, &reference, tolerance))
}

/// One layer's line of a [`GradCheck`]: the largest relative difference
/// over `W[l]` and `b[l]` (NaN if either has a non-finite value), and
/// whether both passed their tolerances.
///
/// ```
/// let l = tapegrad_nn::check::LayerCheck { vs_guide: None, vs_finite_differences: 1e-9, passed: true };
/// assert!(l.vs_guide.is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerCheck {
    /// Autodiff against the guide's formulas; `None` when the guide gives
    /// no formula for the model (see [`guide_backward`]).
    pub vs_guide: Option<f64>,
    /// Autodiff against central finite differences.
    pub vs_finite_differences: f64,
    /// Whether `W[l]` and `b[l]` are within the tolerances, both ways.
    pub passed: bool,
}

/// A model's gradients checked three ways, in f64: tapegrad's autodiff
/// against the guide's hand-derived formulas ([`guide_backward`], when the
/// model's activations are the guide's) and against central finite
/// differences ([`finite_difference_gradients`]), per parameter and per
/// layer. Displayed, it is both tables.
///
/// The check runs at the model's parameters with every bias moved by a
/// small seeded amount (`|jitter| <= 1e-3`; the model itself is not
/// changed). With zero biases (as initialised), a unit whose inputs are all
/// switched off has `Z` exactly 0, on relu's kink, where a central
/// difference measures the mean of the two one-sided slopes and cannot
/// check anything; the jitter moves every `Z` off the kink without
/// changing what is being verified.
///
/// Finite differences cost two evaluations of the cost per parameter
/// element, so for a wide network they would take minutes. Beyond
/// [`GradCheck::FINITE_DIFFERENCE_BUDGET`] multiply-adds, each parameter
/// is checked at a seeded random sample of its elements (at least
/// [`GradCheck::MIN_SAMPLE`] of them); the table says how many. The
/// guide's formulas are always compared in full.
///
/// # Errors
/// When the data does not fit the model or the model cannot be cast to
/// f64 (a closure activation).
///
/// ```
/// use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f32>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let (x, y) = (array![[0.5, -1.0, 0.0], [1.0, 2.0, 0.0]], array![[1.0, 0.0, 1.0]]);
/// let check = GradCheck::run(&model, x.view(), y.view(), &Loss::new(0.1, 1.0).unwrap()).unwrap();
/// assert!(check.passed(), "{check}");
/// assert_eq!(check.layers().len(), 2);
/// assert!(check.to_string().contains("autodiff vs finite differences"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheck {
    layers: Vec<LayerCheck>,
    vs_guide: Option<GradientReport>,
    vs_finite_differences: GradientReport,
}

impl GradCheck {
    /// The tolerance against the guide's formulas: they and the tape do
    /// the same arithmetic in different orders, so they differ by a few
    /// ulps of each gradient's scale, or of the terms summed into it when
    /// the gradient itself is tiny (the floor).
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradCheck::GUIDE_TOLERANCE.rel < 1e-9);
    /// ```
    pub const GUIDE_TOLERANCE: Tolerance = Tolerance::new(1e-12, 1e-10);
    /// The tolerance against finite differences: with a step of `1e-6`, a
    /// central difference carries truncation error of about `1e-12`
    /// relative, and rounding error of about `1e-16 |cost| / 1e-6`, near
    /// `1e-10` absolute whatever the gradient's size (the floor, with a
    /// margin).
    ///
    /// ```
    /// use tapegrad_nn::check::GradCheck;
    /// assert!(GradCheck::FINITE_DIFFERENCE_TOLERANCE.abs > GradCheck::GUIDE_TOLERANCE.abs);
    /// ```
    pub const FINITE_DIFFERENCE_TOLERANCE: Tolerance = Tolerance::new(1e-8, 1e-6);
    /// The multiply-adds of the products in all the finite-difference
    /// evaluations together, beyond which parameters are sampled. With a
    /// sample, the cost is this budget, or the [`GradCheck::MIN_SAMPLE`]
    /// floor per parameter when that is more: it grows with the network's
    /// size, not with its square.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradCheck::FINITE_DIFFERENCE_BUDGET >= 1e8);
    /// ```
    pub const FINITE_DIFFERENCE_BUDGET: f64 = 2e8;
    /// The fewest elements of a parameter that a sampled check compares.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradCheck::MIN_SAMPLE >= 1);
    /// ```
    pub const MIN_SAMPLE: usize = 8;
    /// The finite-difference step.
    const STEP: f64 = 1e-6;
    /// The largest bias jitter: far larger than the step (so that no `Z`
    /// is within a step of a kink), far smaller than the biases' effect.
    const JITTER: f64 = 1e-3;

    /// Checks `model`'s gradients of `loss` on inputs `x` `(n[0], m)` and
    /// labels `y` in any form [`crate::fit`] takes (see the type's doc).
    ///
    /// # Errors
    /// When the data does not fit or the model cannot be cast to f64.
    ///
    /// ```
    /// use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// use tapegrad_tensor::ndarray::array;
    /// let model = Model::<f64>::new(&Architecture::guide(1, &[2]), Init::HeNormal, 0).unwrap();
    /// let check = GradCheck::run(&model, array![[1.0, -1.0]].view(), array![[1.0, 0.0]].view(), &Loss::default()).unwrap();
    /// assert!(check.vs_guide().is_some());
    /// ```
    pub fn run<T: Element>(
        model: &Model<T>,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        loss: &Loss,
    ) -> Result<Self, NnError> {
        Self::run_with_progress(model, x, y, loss, |_, _| {})
    }

    /// [`GradCheck::run`], calling `on_progress(done, total)` as the
    /// finite-difference evaluations proceed (for a progress bar).
    ///
    /// # Errors
    /// As [`GradCheck::run`].
    ///
    /// ```
    /// use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// use tapegrad_tensor::ndarray::Array2;
    /// // 3 -> 2000 -> 1: 10,001 parameters, sampled.
    /// let model = Model::<f64>::new(&Architecture::guide(3, &[2000]), Init::HeNormal, 0).unwrap();
    /// let (x, y) = (Array2::from_elem((3, 64), 0.5), Array2::from_elem((1, 64), 1.0));
    /// let mut last = (0, 0);
    /// let check = GradCheck::run_with_progress(&model, x.view(), y.view(), &Loss::default(), |d, t| last = (d, t)).unwrap();
    /// assert!(check.passed(), "{check}");
    /// assert_eq!(last.0, last.1);
    /// assert!(check.vs_finite_differences().rows.iter().any(|r| r.checked < r.shape.0 * r.shape.1));
    /// ```
    pub fn run_with_progress<T: Element>(
        model: &Model<T>,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        loss: &Loss,
        mut on_progress: impl FnMut(usize, usize),
    ) -> Result<Self, NnError> {
        let mut m64 = model.cast::<f64>()?;
        let mut k = 0u64;
        for layer in m64.layers_mut() {
            layer.b.mapv_inplace(|v| {
                // A deterministic spread in [-JITTER, JITTER].
                k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                v + Self::JITTER * (((k >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0)
            });
        }
        let auto = autodiff_gradients(&m64, x, y, loss)?;
        // No guide formula for this model (another activation): n/a. The
        // data was checked by autodiff_gradients above.
        let guide = guide_backward(&m64, x, y, loss.l2()).ok();
        let entries = Self::sample(&m64, x.ncols());
        let num_layers = m64.num_layers();
        let fd = finite_differences_at(m64, x, y, loss, Self::STEP, &entries, &mut on_progress)?;
        let rows = fd
            .iter()
            .zip(&entries)
            .map(|((name, shape, values), idx)| {
                let a = &auto[name];
                let pairs = values.iter().zip(idx).map(|(&v, &i)| (v, a[[i / shape.1, i % shape.1]]));
                compare_entries(name, *shape, pairs, Self::FINITE_DIFFERENCE_TOLERANCE)
            })
            .collect();
        let vs_finite_differences = GradientReport { rows, tolerance: Self::FINITE_DIFFERENCE_TOLERANCE };
        let vs_guide = guide.as_ref().map(|g| compare_gradients(g, &auto, Self::GUIDE_TOLERANCE));
        let per_layer = |report: &GradientReport, l: usize| {
            let names = Layer::names(l);
            max_or_nan(
                report.rows.iter().filter(|r| r.name == names.w || r.name == names.b).map(|r| r.max_rel_diff),
            )
        };
        let layer_passed = |report: &GradientReport, l: usize| {
            let names = Layer::names(l);
            report.rows.iter().filter(|r| r.name == names.w || r.name == names.b).all(|r| r.passed)
        };
        let layers = (1..=num_layers)
            .map(|l| LayerCheck {
                vs_guide: vs_guide.as_ref().map(|g| per_layer(g, l)),
                vs_finite_differences: per_layer(&vs_finite_differences, l),
                passed: layer_passed(&vs_finite_differences, l)
                    && vs_guide.as_ref().is_none_or(|g| layer_passed(g, l)),
            })
            .collect();
        Ok(GradCheck { layers, vs_guide, vs_finite_differences })
    }

    /// The elements each parameter is checked at: all of them within the
    /// budget, else a seeded sample of an equal share of it per parameter
    /// (sorted, at least [`GradCheck::MIN_SAMPLE`]).
    fn sample(model: &Model<f64>, m: usize) -> Vec<Vec<usize>> {
        use rand::SeedableRng;
        let sizes: Vec<usize> = model.params().values().map(|p| p.len()).collect();
        let total: usize = sizes.iter().sum();
        // Each evaluation multiplies every weight by every example once.
        let per_eval = (total as f64) * (m.max(1) as f64);
        let affordable = Self::FINITE_DIFFERENCE_BUDGET / (2.0 * per_eval);
        if (total as f64) <= affordable {
            return sizes.iter().map(|&n| (0..n).collect()).collect();
        }
        let share = ((affordable / sizes.len().max(1) as f64) as usize).max(Self::MIN_SAMPLE);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x9e37_79b9);
        sizes
            .iter()
            .map(|&n| {
                if n <= share {
                    (0..n).collect()
                } else {
                    let mut v = rand::seq::index::sample(&mut rng, n, share).into_vec();
                    v.sort_unstable();
                    v
                }
            })
            .collect()
    }

    /// Per layer `1..=L` (index `l - 1`), the largest relative differences.
    ///
    /// ```
    /// # use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// # use tapegrad_tensor::ndarray::array;
    /// let model = Model::<f64>::new(&Architecture::guide(1, &[2, 2]), Init::HeNormal, 0).unwrap();
    /// let check = GradCheck::run(&model, array![[1.0, -1.0]].view(), array![[1.0, 0.0]].view(), &Loss::default()).unwrap();
    /// assert!(check.layers().iter().all(|l| l.passed));
    /// ```
    pub fn layers(&self) -> &[LayerCheck] {
        &self.layers
    }

    /// Autodiff against the guide's formulas, per parameter; `None` when
    /// the guide gives no formula for the model.
    ///
    /// ```
    /// # use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// # use tapegrad_tensor::ndarray::array;
    /// let arch = Architecture::guide(1, &[2]).with_hidden_activation("gelu");
    /// let model = Model::<f64>::new(&arch, Init::HeNormal, 0).unwrap();
    /// let check = GradCheck::run(&model, array![[1.0, -1.0]].view(), array![[1.0, 0.0]].view(), &Loss::default()).unwrap();
    /// assert!(check.vs_guide().is_none());
    /// assert!(check.passed());
    /// ```
    pub fn vs_guide(&self) -> Option<&GradientReport> {
        self.vs_guide.as_ref()
    }

    /// Autodiff against finite differences, per parameter.
    ///
    /// ```
    /// # use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// # use tapegrad_tensor::ndarray::array;
    /// let model = Model::<f64>::new(&Architecture::guide(1, &[]), Init::Zeros, 0).unwrap();
    /// let check = GradCheck::run(&model, array![[2.0]].view(), array![[1.0]].view(), &Loss::default()).unwrap();
    /// assert_eq!(check.vs_finite_differences().rows.len(), 2);
    /// ```
    pub fn vs_finite_differences(&self) -> &GradientReport {
        &self.vs_finite_differences
    }

    /// Whether every parameter is within both tolerances (a NaN anywhere
    /// fails).
    ///
    /// ```
    /// # use tapegrad_nn::{check::GradCheck, Architecture, Init, Loss, Model};
    /// # use tapegrad_tensor::ndarray::array;
    /// let mut model = Model::<f64>::new(&Architecture::guide(1, &[]), Init::Zeros, 0).unwrap();
    /// model.params_mut()["W1"][[0, 0]] = f64::NAN;
    /// let check = GradCheck::run(&model, array![[2.0]].view(), array![[1.0]].view(), &Loss::default()).unwrap();
    /// assert!(!check.passed());
    /// assert!(check.layers()[0].vs_finite_differences.is_nan());
    /// ```
    pub fn passed(&self) -> bool {
        self.vs_finite_differences.passed() && self.vs_guide.as_ref().is_none_or(GradientReport::passed)
    }
}

impl fmt::Display for GradCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vs_guide {
            Some(g) => write!(f, "autodiff vs the guide's formulas:\n{g}")?,
            None => writeln!(
                f,
                "autodiff vs the guide's formulas: n/a (the guide gives no derivative for this activation)"
            )?,
        }
        write!(f, "autodiff vs finite differences:\n{}", self.vs_finite_differences)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapegrad_tensor::ndarray::arr2;

    fn params(w1: Array2<f64>) -> Params<f64> {
        let mut p = Params::new();
        p.insert("W1".to_string(), w1);
        p
    }

    #[test]
    fn a_nan_gradient_fails_and_is_reported_as_nan() {
        // Defect 1 of issue 17: folding with f64::max dropped the NaN, and
        // this reported "0.000e0 ok".
        let reference = params(arr2(&[[1.0, 2.0]]));
        let report = compare_gradients(&params(arr2(&[[f64::NAN, 2.0]])), &reference, 1e-6);
        assert!(!report.passed(), "{report}");
        assert!(report.rows[0].max_abs_diff.is_nan() && report.rows[0].max_rel_diff.is_nan());
        assert!(report.to_string().contains("NaN") && report.to_string().contains("FAIL"), "{report}");
    }

    #[test]
    fn an_all_nan_gradient_fails() {
        let reference = params(arr2(&[[1.0, 2.0]]));
        let report = compare_gradients(&params(arr2(&[[f64::NAN, f64::NAN]])), &reference, 1e-6);
        assert!(!report.passed() && report.rows[0].max_rel_diff.is_nan(), "{report}");
    }

    #[test]
    fn a_non_finite_value_on_either_side_fails() {
        let finite = params(arr2(&[[1.0, 2.0]]));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let broken = params(arr2(&[[1.0, bad]]));
            for (given, reference) in [(&broken, &finite), (&finite, &broken), (&broken, &broken)] {
                let report = compare_gradients(given, reference, 1e-6);
                assert!(!report.passed(), "{bad}\n{report}");
                assert!(report.rows[0].max_rel_diff.is_nan(), "{bad}\n{report}");
            }
        }
    }

    #[test]
    fn a_finite_difference_passes_and_a_larger_one_fails() {
        // The tolerance is relative to the largest magnitude, 2.
        let reference = params(arr2(&[[1.0, 2.0]]));
        let close = compare_gradients(&params(arr2(&[[1.0, 2.0 + 1e-9]])), &reference, 1e-6);
        assert!(close.passed(), "{close}");
        // |diff| / scale = 1e-9 / (2 + 1e-9): the ratio of two exact-ish
        // values, off by rounding of the 1e-9 step only.
        approx::assert_relative_eq!(close.rows[0].max_rel_diff, 5e-10, max_relative = 1e-6);
        let far = compare_gradients(&params(arr2(&[[1.0, 2.0 + 1e-3]])), &reference, 1e-6);
        assert!(!far.passed(), "{far}");
    }

    #[test]
    fn max_or_nan_keeps_a_nan_wherever_it_is() {
        for values in [[f64::NAN, 1.0, 2.0], [1.0, f64::NAN, 2.0], [1.0, 2.0, f64::NAN]] {
            assert!(max_or_nan(values).is_nan(), "{values:?}");
        }
        approx::assert_abs_diff_eq!(max_or_nan([1.0, 3.0, 2.0]), 3.0); // a pick, no arithmetic
        approx::assert_abs_diff_eq!(max_or_nan([]), 0.0);
    }

    #[test]
    fn the_absolute_floor_passes_rounding_and_still_fails_a_real_error() {
        // Issue 21, defect 5: the guide's initialisation gives gradients of
        // 1e-9, where finite differences' rounding (1e-10) was 10% "off".
        let reference = params(arr2(&[[1e-9, -2e-9]]));
        let rounding = params(arr2(&[[1.1e-9, -2e-9]]));
        let tol = GradCheck::FINITE_DIFFERENCE_TOLERANCE;
        assert!(!compare_gradients(&rounding, &reference, tol.rel).passed());
        assert!(compare_gradients(&rounding, &reference, tol).passed());
        // A wrong gradient of ordinary size fails with the floor too.
        let reference = params(arr2(&[[0.5, -0.25]]));
        let wrong = params(arr2(&[[0.5, -0.5]]));
        assert!(!compare_gradients(&wrong, &reference, tol).passed());
    }

    #[test]
    fn a_sampled_check_still_fails_on_a_nan() {
        use crate::{Architecture, Init};
        // 1 -> 1000 -> 1 on 64 examples is beyond the budget: sampled.
        let mut model = Model::<f64>::new(&Architecture::guide(1, &[1000]), Init::HeNormal, 0).unwrap();
        let (x, y) = (Array2::from_elem((1, 64), 0.3), Array2::from_elem((1, 64), 1.0));
        let check = GradCheck::run(&model, x.view(), y.view(), &Loss::default()).unwrap();
        assert!(check.passed(), "{check}");
        let w1 = check.vs_finite_differences().rows.iter().find(|r| r.name == "W1").unwrap();
        assert!(w1.checked < 1000 && w1.checked >= GradCheck::MIN_SAMPLE, "{check}");
        // A NaN in one weight makes the cost NaN: every sampled entry sees it.
        model.params_mut()["W2"][[0, 123]] = f64::NAN;
        let check = GradCheck::run(&model, x.view(), y.view(), &Loss::default()).unwrap();
        assert!(!check.passed() && check.layers().iter().all(|l| !l.passed), "{check}");
    }
}
