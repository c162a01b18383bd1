//! Checking hand-written backprop: the guide's backward formulas as a
//! reference implementation, finite differences, and a checker that
//! compares any user-supplied gradients with tapegrad's.

use crate::activation::Activation;
use crate::error::NnError;
use crate::loss::Loss;
use crate::model::{Model, Params};
use std::fmt;
use tapegrad_tensor::ndarray::{Array2, ArrayView2, Axis, Ix2};
use tapegrad_tensor::{Element, Tape};

/// `g'(z)` for the activations the guide's formulas cover, from `z` and
/// `a = g(z)`.
fn derivative(act: &Activation<f64>, z: f64, a: f64) -> Option<f64> {
    Some(match act {
        // relu'(0) = 0, as the guide's relu_backward (dZ[Z <= 0] = 0).
        Activation::Relu => {
            if z > 0.0 {
                1.0
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
/// - `dZ[l] = dA[l] * g'(Z[l])`, with `relu'(z) = 0` for `z <= 0`.
///
/// Every layer `1..=L` is updated, not one more (the guide's update loop
/// runs past the last layer).
///
/// # Errors
/// When the output is not a sigmoid, a hidden activation is not one whose
/// derivative the guide gives (relu, sigmoid, tanh, leaky_relu, identity),
/// or the data does not fit.
///
/// ```
/// use tapegrad_nn::{check::guide_backward, Architecture, Init, Model};
/// use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let g = guide_backward(&model, array![[0.5, -1.0], [1.0, 2.0]].view(), array![[1.0, 0.0]].view(), 0.0).unwrap();
/// assert_eq!(g["W1"].dim(), (3, 2));
/// assert_eq!(g.len(), 4);
/// ```
pub fn guide_backward<T: Element>(
    model: &Model<T>,
    x: ArrayView2<'_, T>,
    y: ArrayView2<'_, T>,
    l2: f64,
) -> Result<Params<f64>, NnError> {
    let model = model.cast::<f64>()?;
    let x = x.mapv(|v| v.as_f64());
    let y = y.mapv(|v| v.as_f64());
    model.check_input(x.nrows())?;
    if y.dim() != (1, x.ncols()) {
        return Err(NnError::DataShape(format!("labels of shape {:?} for {} examples", y.dim(), x.ncols())));
    }
    let acts = model.activations();
    let l_count = acts.len();
    if !acts[l_count - 1].is_sigmoid() {
        return Err(NnError::InvalidHyperParameter {
            name: "output activation",
            value: acts[l_count - 1].name(),
            reason: "the guide's formula dZ[L] = A[L] - Y needs a sigmoid output".into(),
        });
    }
    let p = model.params();
    let m = x.ncols() as f64;
    // Forward, keeping the caches (Z[l], A[l]).
    let mut a_cache = vec![x];
    let mut z_cache = Vec::new();
    for (l, act) in acts.iter().enumerate() {
        let w = &p[format!("W{}", l + 1).as_str()];
        let b = &p[format!("b{}", l + 1).as_str()];
        let z = w.dot(&a_cache[l]) + b;
        let a = if act.is_sigmoid() {
            z.mapv(|v| 1.0 / (1.0 + (-v).exp()))
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
    for l in (1..=l_count).rev() {
        let w = &p[format!("W{l}").as_str()];
        let dw = dz.dot(&a_cache[l - 1].t()) / m + w * (l2 / m);
        let db = dz.sum_axis(Axis(1)).insert_axis(Axis(1)) / m;
        grads.insert(format!("b{l}"), db);
        grads.insert(format!("W{l}"), dw);
        if l > 1 {
            let da = w.t().dot(&dz);
            let act = &acts[l - 2];
            let mut out = da;
            for ((d, &z), &a) in out.iter_mut().zip(z_cache[l - 2].iter()).zip(a_cache[l - 1].iter()) {
                let g = derivative(act, z, a).ok_or_else(|| NnError::InvalidHyperParameter {
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
    Ok(p.keys().map(|k| (k.clone(), grads.swap_remove(k).expect("every parameter"))).collect())
}

/// tapegrad's gradients of `loss` at the model's parameters, as f64.
///
/// # Errors
/// When the data does not fit the model.
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
    if y.dim() != (1, x.ncols()) {
        return Err(NnError::DataShape(format!("labels of shape {:?} for {} examples", y.dim(), x.ncols())));
    }
    let tape = Tape::new();
    let fwd = model.forward(&tape, tape.constant(x.to_owned()), None);
    let cost = loss.cost(model, &fwd, tape.constant(y.to_owned()));
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
/// a time: `(J(p + eps) - J(p - eps)) / 2 eps`.
///
/// # Errors
/// When the data does not fit or the model cannot be cast to f64.
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
    let mut model = model.cast::<f64>()?;
    let x = x.mapv(|v| v.as_f64());
    let y = y.mapv(|v| v.as_f64());
    model.check_input(x.nrows())?;
    let names: Vec<String> = model.params().keys().cloned().collect();
    let mut out = Params::new();
    for name in names {
        let shape = model.params()[&name].raw_dim();
        let mut g = Array2::zeros(shape);
        for idx in 0..g.len() {
            let (r, c) = (idx / g.ncols(), idx % g.ncols());
            let orig = model.params()[&name][[r, c]];
            model.params_mut()[&name][[r, c]] = orig + eps;
            let fp = crate::train::cost_of(&model, loss, x.view(), y.view());
            model.params_mut()[&name][[r, c]] = orig - eps;
            let fm = crate::train::cost_of(&model, loss, x.view(), y.view());
            model.params_mut()[&name][[r, c]] = orig;
            g[[r, c]] = (fp - fm) / (2.0 * eps);
        }
        out.insert(name, g);
    }
    Ok(out)
}

/// One row of a [`GradientReport`].
///
/// ```
/// let r = tapegrad_nn::check::ParamCheck { name: "W1".into(), shape: (2, 3), max_abs_diff: 0.0, max_rel_diff: 0.0, passed: true };
/// assert!(r.passed);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ParamCheck {
    /// The parameter's name.
    pub name: String,
    /// Its shape.
    pub shape: (usize, usize),
    /// `max |user - reference|` over its elements.
    pub max_abs_diff: f64,
    /// `max |user - reference| / max(max |user|, max |reference|)`: the
    /// difference relative to the parameter gradient's scale, so that an
    /// element that is tiny by cancellation does not dominate. Infinite
    /// when a gradient is missing or of the wrong shape.
    pub max_rel_diff: f64,
    /// Whether `max_rel_diff <= tolerance`.
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
    pub tolerance: f64,
}

impl GradientReport {
    /// Whether every parameter passed.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradientReport { rows: vec![], tolerance: 1e-9 }.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.passed)
    }

    /// The rows that failed.
    ///
    /// ```
    /// assert!(tapegrad_nn::check::GradientReport { rows: vec![], tolerance: 1e-9 }.failures().is_empty());
    /// ```
    pub fn failures(&self) -> Vec<&ParamCheck> {
        self.rows.iter().filter(|r| !r.passed).collect()
    }
}

impl fmt::Display for GradientReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>9} {:>13} {:>13}  result (tolerance {:.0e})",
            "parameter", "shape", "max |diff|", "max rel diff", self.tolerance
        )?;
        for r in &self.rows {
            let shape = format!("{}x{}", r.shape.0, r.shape.1);
            let result = if r.passed { "ok" } else { "FAIL" };
            writeln!(
                f,
                "{:<10} {:>9} {:>13.3e} {:>13.3e}  {result}",
                r.name, shape, r.max_abs_diff, r.max_rel_diff
            )?;
        }
        Ok(())
    }
}

/// Compares gradients given by parameter name (from a hand-written backward
/// pass, or anywhere) with `reference`, and reports per parameter.
/// Parameters missing from `given` fail.
///
/// ```
/// use tapegrad_nn::{check::compare_gradients, Params};
/// use tapegrad_tensor::ndarray::arr2;
/// let mut a = Params::new();
/// a.insert("W1".to_string(), arr2(&[[1.0, 2.0]]));
/// let mut b = a.clone();
/// b["W1"][[0, 1]] = 2.1;
/// let r = compare_gradients(&b, &a, 1e-6);
/// assert!(!r.passed());
/// assert!((r.rows[0].max_rel_diff - 0.1 / 2.1).abs() < 1e-12);
/// ```
pub fn compare_gradients(given: &Params<f64>, reference: &Params<f64>, tolerance: f64) -> GradientReport {
    let rows = reference
        .iter()
        .map(|(name, r)| {
            let shape = r.dim();
            match given.get(name) {
                Some(g) if g.dim() == shape => {
                    let max_abs_diff = g.iter().zip(r.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
                    let scale = g.iter().chain(r.iter()).map(|v| v.abs()).fold(0.0, f64::max);
                    let max_rel_diff = if max_abs_diff == 0.0 { 0.0 } else { max_abs_diff / scale };
                    // NaN fails.
                    let passed = max_rel_diff <= tolerance;
                    ParamCheck { name: name.clone(), shape, max_abs_diff, max_rel_diff, passed }
                }
                _ => ParamCheck {
                    name: name.clone(),
                    shape,
                    max_abs_diff: f64::INFINITY,
                    max_rel_diff: f64::INFINITY,
                    passed: false,
                },
            }
        })
        .collect();
    GradientReport { rows, tolerance }
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
    tolerance: f64,
) -> Result<GradientReport, NnError> {
    let reference = autodiff_gradients(model, x, y, loss)?;
    Ok(compare_gradients(given, &reference, tolerance))
}
