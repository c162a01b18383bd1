//! Gradients from another implementation, most often a numpy backward
//! pass, given as the guide's dicts: `parameters` (`W1`, `b1`, ..., `WL`,
//! `bL`) and `grads` (`dW1`, `db1`, ...), saved with `np.savez`.
//!
//! Names and shapes are checked first, each problem a one-line
//! [`NnError::Npz`] naming the file and the array; then the given
//! gradients are compared with autodiff (the reference: every op's
//! gradient is itself checked against finite differences) and with
//! central finite differences (an independent witness).

use super::{
    compare_entries, finite_differences_at, guide_backward_with, max_or_nan, GradCheck, ParamCheck, Tolerance,
};
use crate::error::NnError;
use crate::io::{read_npz, NpyArray};
use crate::loss::Loss;
use crate::model::{Architecture, Layer, Model, Params};
use indexmap::IndexMap;
use std::fmt;
use std::path::{Path, PathBuf};
use tapegrad_tensor::ndarray::{Array2, ArrayView2, Ix2};
use tapegrad_tensor::Tape;

/// A network's parameters and another implementation's gradients of its
/// cost, read from the guide's dicts and checked for names and shapes
/// (see [`ExternalGradients::from_npz`]). [`ExternalGradients::check`]
/// compares the gradients with autodiff and finite differences.
///
/// ```
/// use tapegrad_nn::check::ExternalGradients;
/// use tapegrad_nn::{Architecture, Init, Loss, Model, check::guide_backward};
/// use tapegrad_tensor::ndarray::array;
/// // The guide's formulas stand in for a numpy implementation here.
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let (x, y) = (array![[0.5, -1.0, 0.2], [1.0, 2.0, -0.3]], array![[1.0, 0.0, 1.0]]);
/// let grads = guide_backward(&model, x.view(), y.view(), 0.0).unwrap();
/// let given = ExternalGradients::new(model.params().clone(), grads, false).unwrap();
/// let report = given.check("relu", Some((x.view(), y.view())), &Loss::default()).unwrap();
/// assert!(report.passed(), "{report}");
/// ```
#[derive(Clone, Debug)]
pub struct ExternalGradients {
    params: Params<f64>,
    /// Keyed by the parameter's name (`W1`, not `dW1`).
    grads: Params<f64>,
    float32: bool,
    data: Option<(Array2<f64>, Array2<f64>)>,
    source: Option<(PathBuf, PathBuf)>,
    ignored: Vec<String>,
}

/// One parameter's line of an [`ExternalReport`].
///
/// ```
/// use tapegrad_nn::check::{ExternalRow, ParamCheck};
/// let ok = ParamCheck { name: "dW1".into(), shape: (2, 3), checked: 6, max_abs_diff: 0.0, max_rel_diff: 0.0, passed: true };
/// let row = ExternalRow { vs_autodiff: ok.clone(), vs_finite_differences: ok, hint: None };
/// assert!(row.vs_autodiff.passed);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalRow {
    /// The given gradient against autodiff, on every element: the verdict.
    pub vs_autodiff: ParamCheck,
    /// The given gradient against central finite differences, on every
    /// element or a seeded sample (see [`GradCheck`]).
    pub vs_finite_differences: ParamCheck,
    /// What the difference looks like, when it looks like a classic
    /// mistake (a missing `1/m`, a transposed `dW`, a flipped sign).
    pub hint: Option<String>,
}

/// The result of [`ExternalGradients::check`]: one row per parameter, and
/// a table when displayed.
///
/// ```
/// # use tapegrad_nn::check::{ExternalGradients, guide_backward};
/// # use tapegrad_nn::{Architecture, Init, Loss, Model};
/// # use tapegrad_tensor::ndarray::array;
/// let model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
/// let (x, y) = (array![[0.5, -1.0, 0.2], [1.0, 2.0, -0.3]], array![[1.0, 0.0, 1.0]]);
/// let mut grads = guide_backward(&model, x.view(), y.view(), 0.0).unwrap();
/// grads["b1"] *= 3.0; // db1 without the 1/m, on m = 3 examples
/// let given = ExternalGradients::new(model.params().clone(), grads, false).unwrap();
/// let report = given.check("relu", Some((x.view(), y.view())), &Loss::default()).unwrap();
/// assert_eq!(report.failures(), vec!["db1"]);
/// assert!(report.rows[1].hint.as_deref().unwrap().contains("1/m"), "{report}");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ExternalReport {
    /// One row per parameter, in order (named as the gradients: `dW1`, `db1`, ...).
    pub rows: Vec<ExternalRow>,
    /// The tolerance against autodiff: tighter for float64 gradients than
    /// for float32 ones (see [`ExternalGradients::tolerance`]).
    pub tolerance: Tolerance,
    /// Autodiff against finite differences on the same elements, per
    /// parameter: where they disagree, finite differences are no witness
    /// for that parameter (see [`ExternalReport::kinks`]).
    pub autodiff_vs_finite_differences: Vec<ParamCheck>,
    /// Hidden pre-activations within `1e-4` of 0 (the kink of relu and its
    /// kin): central differences there mix both slopes, autodiff takes the
    /// left one, as the guide (`relu'(0) = 0`).
    pub kinks: usize,
    /// The network checked, as `3 -> 4 -> 1, relu hidden, sigmoid output`.
    pub network: String,
    /// How many examples the cost averaged.
    pub examples: usize,
}

impl ExternalGradients {
    /// The tolerance against autodiff for float64 gradients. Another
    /// implementation sums in another order (numpy's BLAS, with or without
    /// FMA), so the two differ by a few ulps of the terms summed into each
    /// element: relative to the gradient's scale, or an absolute floor for
    /// elements that are tiny by cancellation. Every classic mistake is
    /// orders of magnitude beyond it.
    ///
    /// ```
    /// use tapegrad_nn::check::ExternalGradients;
    /// assert!(ExternalGradients::F64_TOLERANCE.rel < ExternalGradients::F32_TOLERANCE.rel);
    /// ```
    pub const F64_TOLERANCE: Tolerance = Tolerance::new(1e-10, 1e-8);
    /// The tolerance against autodiff when any array is float32: float32's
    /// epsilon (1.2e-7) times the terms summed into an element, with a
    /// margin; the reference is computed in f64 on the same float32 values.
    ///
    /// ```
    /// use tapegrad_nn::check::ExternalGradients;
    /// assert!(ExternalGradients::F32_TOLERANCE.rel > 1.2e-7);
    /// ```
    pub const F32_TOLERANCE: Tolerance = Tolerance::new(1e-6, 1e-4);

    /// Reads the parameters (and optionally the data, as arrays `X`, `Y`)
    /// from one `.npz` file and the gradients from another, as the guide's
    /// dicts: `np.savez("P.npz", **parameters, X=X, Y=Y)` and
    /// `np.savez("G.npz", **grads)`.
    ///
    /// - `params_file`: `W1`, `b1`, ..., `WL`, `bL`, each 2-D float
    ///   (`b` of shape `(n, 1)`, as the guide's `np.zeros((n, 1))`), shapes
    ///   chained (`W[l]` has as many columns as `W[l-1]` has rows); and
    ///   optionally `X` `(features, m)` and `Y` `(1, m)`, labels 0 and 1 (or
    ///   class indices for a network of several outputs), any numeric dtype.
    ///   Other arrays are ignored, and listed.
    /// - `grads_file`: `dW1`, `db1`, ... of the parameters' shapes. The
    ///   guide's `dA1`, ... and any other arrays are ignored, and listed.
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("tapegrad-doc-ext-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir).unwrap();
    /// use tapegrad_nn::check::ExternalGradients;
    /// let e = ExternalGradients::from_npz(&dir.join("P.npz"), &dir.join("G.npz")).unwrap_err();
    /// assert!(e.to_string().contains("P.npz: cannot read it"), "{e}");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`NnError::Npz`], naming the file and the array: a file that cannot
    /// be read, an array missing, of the wrong dtype or rank, or of a shape
    /// that does not fit the others.
    pub fn from_npz(params_file: &Path, grads_file: &Path) -> Result<Self, NnError> {
        let params = read_npz(params_file)?;
        let grads = read_npz(grads_file)?;
        Self::from_arrays(params, grads, params_file, grads_file)
    }

    /// From parameters and gradients already in memory, both keyed by the
    /// parameter's name (`W1`, `b1`, ...), as [`crate::check::guide_backward`]
    /// returns them; `float32` when they were computed in float32 (the
    /// looser tolerance).
    ///
    /// ```
    /// use tapegrad_nn::{check::ExternalGradients, Params};
    /// use tapegrad_tensor::ndarray::Array2;
    /// let mut p = Params::new();
    /// p.insert("W1".into(), Array2::zeros((2, 3)));
    /// p.insert("b1".into(), Array2::zeros((2, 1)));
    /// let mut g = p.clone();
    /// g["W1"] = Array2::zeros((3, 2));
    /// let e = ExternalGradients::new(p, g, false).unwrap_err().to_string();
    /// assert!(e.contains("dW1 has shape (3, 2), W1 (2, 3): transposed?"), "{e}");
    /// ```
    ///
    /// # Errors
    /// As [`ExternalGradients::from_npz`], naming no file.
    pub fn new(params: Params<f64>, grads: Params<f64>, float32: bool) -> Result<Self, NnError> {
        let wrap = |m: Params<f64>, prefix: &str| -> IndexMap<String, NpyArray> {
            let dtype = if float32 { "float32" } else { "float64" };
            m.into_iter()
                .map(|(k, v)| (format!("{prefix}{k}"), NpyArray { dtype, values: v.into_dyn() }))
                .collect()
        };
        let mut given = Self::from_arrays(wrap(params, ""), wrap(grads, "d"), Path::new(""), Path::new(""))?;
        given.source = None;
        Ok(given)
    }

    fn from_arrays(
        mut params: IndexMap<String, NpyArray>,
        mut grads: IndexMap<String, NpyArray>,
        params_file: &Path,
        grads_file: &Path,
    ) -> Result<Self, NnError> {
        let err = |file: &Path, detail: String| NnError::Npz { path: file.to_path_buf(), detail };
        let perr = |detail: String| err(params_file, detail);
        let gerr = |detail: String| err(grads_file, detail);
        let layers = (1..).take_while(|l| params.contains_key(&format!("W{l}"))).count();
        if layers == 0 {
            let found = params.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(perr(format!(
                "no array 'W1' (the guide's parameters: W1, b1, W2, b2, ...; the file has: {})",
                if found.is_empty() { "nothing".into() } else { found }
            )));
        }
        let mut float32 = false;
        let mut out = Params::new();
        let mut units = None::<usize>;
        for l in 1..=layers {
            let names = Layer::names(l);
            let w = take_2d(&mut params, &names.w, true).map_err(perr)?.expect("counted");
            if let Some(prev) = units
                && w.1.ncols() != prev
            {
                let (r, c) = w.1.dim();
                return Err(perr(format!(
                    "{} is {r}x{c}, but W{} gives {prev} units: {} needs {prev} columns",
                    names.w,
                    l - 1,
                    names.w
                )));
            }
            let b = take_2d(&mut params, &names.b, true)
                .map_err(perr)?
                .ok_or_else(|| perr(format!("no array '{}' (W{l} has no bias)", names.b)))?;
            if b.1.dim() != (w.1.nrows(), 1) {
                return Err(perr(format!(
                    "{} has shape {:?}; beside {} ({} rows) it must be ({}, 1), as the guide's np.zeros((n, 1))",
                    names.b,
                    b.1.shape(),
                    names.w,
                    w.1.nrows(),
                    w.1.nrows()
                )));
            }
            units = Some(w.1.nrows());
            float32 |= w.0 || b.0;
            out.insert(names.w, w.1);
            out.insert(names.b, b.1);
        }
        let stray: Vec<String> = params
            .keys()
            .filter(|k| k.starts_with(['W', 'b']) && k[1..].parse::<usize>().is_ok())
            .cloned()
            .collect();
        if !stray.is_empty() {
            return Err(perr(format!(
                "no array 'W{}', but the file has {}: the guide numbers the layers 1 to L without a gap",
                layers + 1,
                stray.join(", ")
            )));
        }
        let data = match (
            take_any_2d(&mut params, "X").map_err(perr)?,
            take_any_2d(&mut params, "Y").map_err(perr)?,
        ) {
            (Some(x), Some(y)) => Some((x, y)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(perr("has X but no Y (give both, or neither and the data apart)".into()))
            }
            (None, Some(_)) => {
                return Err(perr("has Y but no X (give both, or neither and the data apart)".into()))
            }
        };
        let mut ordered = Params::new();
        for (name, p) in &out {
            let key = format!("d{name}");
            let g = take_2d(&mut grads, &key, true).map_err(gerr)?.ok_or_else(|| {
                gerr(format!(
                    "no array '{key}' (the guide's grads: dW1, db1, ..., dW{layers}, db{layers}; the file has: {})",
                    grads.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            if g.1.dim() != p.dim() {
                let transposed = g.1.dim() == (p.ncols(), p.nrows());
                return Err(gerr(format!(
                    "{key} has shape {:?}, {name} {:?}{}",
                    g.1.dim(),
                    p.dim(),
                    if transposed { ": transposed? (dW = dZ A_prev^T / m)" } else { "" }
                )));
            }
            float32 |= g.0;
            ordered.insert(name.clone(), g.1);
        }
        let ignored = params.keys().chain(grads.keys()).cloned().collect();
        Ok(ExternalGradients {
            params: out,
            grads: ordered,
            float32,
            data,
            source: Some((params_file.to_path_buf(), grads_file.to_path_buf())),
            ignored,
        })
    }

    /// The layer sizes `[n0, n1, ..., nL]` the parameters give.
    ///
    /// ```
    /// # use tapegrad_nn::{check::ExternalGradients, Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
    /// let given = ExternalGradients::new(m.params().clone(), m.params().clone(), false).unwrap();
    /// assert_eq!(given.sizes(), vec![3, 4, 1]);
    /// ```
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![self.params["W1"].ncols()];
        sizes.extend(self.params.iter().step_by(2).map(|(_, w)| w.nrows()));
        sizes
    }

    /// The data `(X, Y)` read with the parameters, if the file had it.
    ///
    /// ```
    /// # use tapegrad_nn::{check::ExternalGradients, Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 0).unwrap();
    /// let given = ExternalGradients::new(m.params().clone(), m.params().clone(), false).unwrap();
    /// assert!(given.data().is_none());
    /// ```
    pub fn data(&self) -> Option<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)> {
        self.data.as_ref().map(|(x, y)| (x.view(), y.view()))
    }

    /// The arrays that are not parameters, gradients or data (the guide's
    /// `dA1`, ..., say), which the check ignores.
    ///
    /// ```
    /// # use tapegrad_nn::{check::ExternalGradients, Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[]), Init::HeNormal, 0).unwrap();
    /// let mut g = m.params().clone();
    /// g.insert("A0".into(), g["W1"].clone()); // read as dA0
    /// assert_eq!(ExternalGradients::new(m.params().clone(), g, false).unwrap().ignored(), ["dA0"]);
    /// ```
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The tolerance against autodiff: [`Self::F32_TOLERANCE`] when any
    /// parameter or gradient is float32, else [`Self::F64_TOLERANCE`].
    ///
    /// ```
    /// # use tapegrad_nn::{check::ExternalGradients, Architecture, Init, Model};
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[]), Init::HeNormal, 0).unwrap();
    /// let given = ExternalGradients::new(m.params().clone(), m.params().clone(), true).unwrap();
    /// assert_eq!(given.tolerance(), ExternalGradients::F32_TOLERANCE);
    /// ```
    pub fn tolerance(&self) -> Tolerance {
        if self.float32 {
            Self::F32_TOLERANCE
        } else {
            Self::F64_TOLERANCE
        }
    }

    /// Compares the gradients with autodiff and with central finite
    /// differences of `loss` (mean cross-entropy and the L2 penalty, as
    /// the guide) at the given parameters, on `data` or, when it is
    /// `None`, on the `X`, `Y` read with the parameters. The hidden layers
    /// use `activation` (a name or a formula); the output is a sigmoid for
    /// one output unit, a softmax for several.
    ///
    /// # Errors
    /// [`NnError::Npz`] when there is no data, or the data does not fit the
    /// parameters (features, examples, labels); an activation that does
    /// not parse.
    ///
    /// ```
    /// # use tapegrad_nn::{check::ExternalGradients, Architecture, Init, Loss, Model};
    /// # use tapegrad_tensor::ndarray::array;
    /// let m = Model::<f64>::new(&Architecture::guide(3, &[]), Init::HeNormal, 0).unwrap();
    /// let given = ExternalGradients::new(m.params().clone(), m.params().clone(), false).unwrap();
    /// let e = given.check("relu", Some((array![[1.0]].view(), array![[1.0]].view())), &Loss::default()).unwrap_err();
    /// assert!(e.to_string() == "W1 takes 3 inputs, the data given has 1 feature (rows)", "{e}");
    /// ```
    pub fn check(
        &self,
        activation: &str,
        data: Option<(ArrayView2<'_, f64>, ArrayView2<'_, f64>)>,
        loss: &Loss,
    ) -> Result<ExternalReport, NnError> {
        // Data given apart is not the file's: its errors name no file.
        let file = if data.is_some() { None } else { self.source.as_ref().map(|s| s.0.clone()) };
        let err = |detail: String| NnError::Npz { path: file.clone().unwrap_or_default(), detail };
        let (x, y) = data.or_else(|| self.data()).ok_or_else(|| {
            err("has no X and Y arrays, and no other data was given (save X=X, Y=Y with the parameters)"
                .into())
        })?;
        let sizes = self.sizes();
        let (n0, outputs) = (sizes[0], *sizes.last().expect("a layer"));
        if x.nrows() != n0 {
            let s = if x.nrows() == 1 { "" } else { "s" };
            let what = if data.is_some() { "the data given" } else { "X" };
            return Err(err(format!("W1 takes {n0} inputs, {what} has {} feature{s} (rows)", x.nrows())));
        }
        if x.ncols() == 0 {
            return Err(err("X has no examples (columns)".into()));
        }
        if y.ncols() != x.ncols() {
            return Err(err(format!("Y has {} examples (columns), X {}", y.ncols(), x.ncols())));
        }
        let hidden = &sizes[1..sizes.len() - 1];
        let arch = if outputs == 1 {
            Architecture::guide(n0, hidden)
        } else {
            Architecture::softmax(n0, hidden, outputs)
        }
        .with_hidden_activation(activation);
        let model = Model::<f64>::from_params(&arch, self.params.clone())?;
        let autodiff = super::autodiff_gradients(&model, x, y, loss).map_err(|e| err(format!("Y: {e}")))?;
        let entries = GradCheck::sample(&model, x.ncols());
        let kinks = count_kinks(&model, x);
        // The guide's formulas with relu'(0) = 1, to recognise that mistake.
        let relu_one = if kinks > 0 && activation == "relu" {
            guide_backward_with(&model, x, y, loss.l2(), 1.0).ok()
        } else {
            None
        };
        let fd = finite_differences_at(model.clone(), x, y, loss, GradCheck::STEP, &entries, &mut |_, _| {})?;
        let tolerance = self.tolerance();
        let fdt = GradCheck::FINITE_DIFFERENCE_TOLERANCE;
        let fd_tolerance = Tolerance::new(fdt.abs.max(tolerance.abs), fdt.rel.max(tolerance.rel));
        let mut rows = Vec::new();
        let mut witness = Vec::new();
        for ((name, shape, values), idx) in fd.iter().zip(&entries) {
            let (g, a) = (&self.grads[name], &autodiff[name]);
            let label = format!("d{name}");
            let at = |i: usize| (i / shape.1, i % shape.1);
            let vs_autodiff =
                compare_entries(&label, *shape, g.iter().copied().zip(a.iter().copied()), tolerance);
            let pairs = values.iter().zip(idx);
            let vs_fd =
                compare_entries(&label, *shape, pairs.clone().map(|(&v, &i)| (g[at(i)], v)), fd_tolerance);
            let fdt = GradCheck::FINITE_DIFFERENCE_TOLERANCE;
            witness.push(compare_entries(&label, *shape, pairs.map(|(&v, &i)| (a[at(i)], v)), fdt));
            let relu_one = relu_one.as_ref().map(|r| &r[name]);
            let hint = if vs_autodiff.passed { None } else { hint(g, a, relu_one, x.ncols(), tolerance) };
            rows.push(ExternalRow { vs_autodiff, vs_finite_differences: vs_fd, hint });
        }
        let network = format!(
            "{}, {activation} hidden, {} output",
            sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(" -> "),
            if outputs == 1 { "sigmoid" } else { "softmax" }
        );
        Ok(ExternalReport {
            rows,
            tolerance,
            autodiff_vs_finite_differences: witness,
            kinks,
            network,
            examples: x.ncols(),
        })
    }
}

/// `name` as a 2-D float array (`Some((is_float32, array))`), `None` when
/// absent.
fn take_2d(
    arrays: &mut IndexMap<String, NpyArray>,
    name: &str,
    float: bool,
) -> Result<Option<(bool, Array2<f64>)>, String> {
    let Some(a) = arrays.shift_remove(name) else { return Ok(None) };
    if float && !a.is_float() {
        return Err(format!("{name} has dtype {}; the guide's arrays are float64 (or float32)", a.dtype));
    }
    let shape = a.values.shape().to_vec();
    let values = a.values.into_dimensionality::<Ix2>().map_err(|_| {
        let s = if shape.len() == 1 { "" } else { "s" };
        let b = if name.starts_with('b') { " (b of shape (n, 1), as np.zeros((n, 1)))" } else { "" };
        format!("{name} has {} dimension{s} (shape {shape:?}); the guide's arrays are 2-D{b}", shape.len())
    })?;
    Ok(Some((a.dtype == "float32", values)))
}

/// `name` as a 2-D array of any numeric dtype (the data), `None` when absent.
fn take_any_2d(arrays: &mut IndexMap<String, NpyArray>, name: &str) -> Result<Option<Array2<f64>>, String> {
    Ok(take_2d(arrays, name, false)?.map(|(_, a)| a))
}

/// Hidden pre-activations within `1e-4` of 0.
fn count_kinks(model: &Model<f64>, x: ArrayView2<'_, f64>) -> usize {
    let tape = Tape::new();
    let fwd = model.forward(&tape, tape.constant(x.to_owned()), None);
    let hidden = fwd.z.len() - 1;
    fwd.z[..hidden].iter().map(|z| z.value().iter().filter(|v| v.abs() <= 1e-4).count()).sum()
}

/// What a failed gradient `g` looks like against autodiff's `a`, on `m`
/// examples, when it is a classic mistake; `relu_one` is the guide's
/// gradient with relu'(0) = 1, when that differs from autodiff's.
fn hint(
    g: &Array2<f64>,
    a: &Array2<f64>,
    relu_one: Option<&Array2<f64>>,
    m: usize,
    tolerance: Tolerance,
) -> Option<String> {
    let close = |other: &Array2<f64>| {
        let scale = max_or_nan(g.iter().chain(other.iter()).map(|v| v.abs()));
        let diff = max_or_nan(g.iter().zip(other.iter()).map(|(p, q)| (p - q).abs()));
        tolerance.allows(diff, scale)
    };
    let m = m as f64;
    if m > 1.0 && close(&(a * m)) {
        return Some(format!("{m} (m) times autodiff's: the 1/m is missing"));
    }
    if m > 1.0 && close(&(a / m)) {
        return Some("autodiff's divided by m (m examples): divided by m twice".into());
    }
    if close(&(-a)) {
        return Some("autodiff's with the sign flipped".into());
    }
    if g.is_square() && close(&a.t().to_owned()) {
        return Some("autodiff's transpose: dW = dZ A_prev^T / m".into());
    }
    if let Some(r) = relu_one
        && close(r)
    {
        return Some("relu'(0) = 1 where Z = 0 exactly: the guide's relu'(0) = 0, dZ = dA * (Z > 0)".into());
    }
    if close(&(a * 2.0)) {
        return Some("twice autodiff's".into());
    }
    None
}

impl ExternalReport {
    /// Whether every given gradient is within the tolerance of autodiff's.
    ///
    /// ```
    /// let r = tapegrad_nn::check::ExternalReport {
    ///     rows: vec![], tolerance: 1e-9.into(), autodiff_vs_finite_differences: vec![],
    ///     kinks: 0, network: "3 -> 1".into(), examples: 1,
    /// };
    /// assert!(r.passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.rows.iter().all(|r| r.vs_autodiff.passed)
    }

    /// The names of the gradients that failed (`dW1`, `db1`, ...).
    ///
    /// ```
    /// let r = tapegrad_nn::check::ExternalReport {
    ///     rows: vec![], tolerance: 1e-9.into(), autodiff_vs_finite_differences: vec![],
    ///     kinks: 0, network: "3 -> 1".into(), examples: 1,
    /// };
    /// assert!(r.failures().is_empty());
    /// ```
    pub fn failures(&self) -> Vec<&str> {
        self.rows.iter().filter(|r| !r.vs_autodiff.passed).map(|r| r.vs_autodiff.name.as_str()).collect()
    }

    /// The parameters where autodiff and finite differences disagree (at
    /// a kink, when [`ExternalReport::kinks`] is not 0).
    ///
    /// ```
    /// let r = tapegrad_nn::check::ExternalReport {
    ///     rows: vec![], tolerance: 1e-9.into(), autodiff_vs_finite_differences: vec![],
    ///     kinks: 0, network: "3 -> 1".into(), examples: 1,
    /// };
    /// assert!(r.witness_disagrees().is_empty());
    /// ```
    pub fn witness_disagrees(&self) -> Vec<&str> {
        self.autodiff_vs_finite_differences.iter().filter(|r| !r.passed).map(|r| r.name.as_str()).collect()
    }
}

impl fmt::Display for ExternalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<10} {:>11} {:>13} {:>15}  result (max rel diff; pass vs autodiff: {})",
            "gradient", "shape", "vs autodiff", "vs finite diff", self.tolerance
        )?;
        for r in &self.rows {
            let a = &r.vs_autodiff;
            let total = a.shape.0 * a.shape.1;
            let shape = format!("{}x{}", a.shape.0, a.shape.1);
            let result = match (&r.hint, a.passed) {
                (_, true) => "ok".to_string(),
                (Some(h), false) => format!("FAIL: {h}"),
                (None, false) => "FAIL".to_string(),
            };
            let fd = &r.vs_finite_differences;
            let sampled = if fd.checked < total {
                format!(" (finite diff: {} of {total} sampled)", fd.checked)
            } else {
                String::new()
            };
            writeln!(
                f,
                "{:<10} {:>11} {:>13.3e} {:>15.3e}  {result}{sampled}",
                a.name, shape, a.max_rel_diff, fd.max_rel_diff
            )?;
        }
        let disagree = self.witness_disagrees();
        if !disagree.is_empty() {
            let why = if self.kinks > 0 {
                format!(
                    "{} hidden pre-activations lie within 1e-4 of relu's kink at 0, where central differences \
                     mix both slopes; autodiff takes relu'(0) = 0, as the guide",
                    self.kinks
                )
            } else {
                "the activation may not be smooth on this data".to_string()
            };
            writeln!(
                f,
                "note: finite differences disagree with autodiff on {} ({why}); autodiff is the reference",
                disagree.join(", ")
            )?;
        }
        Ok(())
    }
}
