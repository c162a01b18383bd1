//! A finite-difference gradient checker for any function built from tensor
//! ops: the one checker every op test uses, public so that users can check
//! their own functions too.

use crate::{Tape, Tensor};
use ndarray::{ArrayD, IxDyn, Zip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;

/// Settings for [`gradcheck_with`].
///
/// The defaults suit smooth functions of inputs of order 1 in `f64`: with
/// a step of `1e-6` central differences have a truncation error of about
/// `eps^2 * |f'''| / 6 ~ 1e-13` and a rounding error of about
/// `1e-16 * |f| / eps ~ 1e-10 * |f|`, both far below the tolerances.
///
/// ```
/// use tapegrad_tensor::GradcheckOptions;
/// let opts = GradcheckOptions { rtol: 1e-4, ..GradcheckOptions::default() };
/// assert_eq!(opts.eps, 1e-6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradcheckOptions {
    /// Step of the central difference `(f(x + eps) - f(x - eps)) / 2 eps`.
    pub eps: f64,
    /// Absolute tolerance: an element passes when
    /// `|analytic - numeric| <= atol + rtol * |numeric|`.
    pub atol: f64,
    /// Relative tolerance (see `atol`).
    pub rtol: f64,
    /// Seed of the random upstream gradient.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-6, atol: 1e-7, rtol: 1e-6, seed: 0 }
    }
}

/// The result of a check for one input. A NaN in either gradient makes
/// both errors NaN (and the check fail), so a report never shows a NaN
/// gradient as a small error.
///
/// ```
/// use tapegrad_tensor::{gradcheck, ndarray::arr1};
/// let r = gradcheck(|x| x[0].exp(), &[arr1(&[0.5]).into_dyn()]);
/// assert!(r.inputs[0].max_abs_err < 1e-8);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputCheck {
    /// Largest `|analytic - numeric|` over the input's elements.
    pub max_abs_err: f64,
    /// Largest `|analytic - numeric| / max(|analytic|, |numeric|)` (0 where
    /// both are 0).
    pub max_rel_err: f64,
    /// Whether every element met the tolerance.
    pub passed: bool,
}

impl InputCheck {
    /// A check of no elements yet.
    pub(crate) fn new() -> Self {
        InputCheck { max_abs_err: 0.0, max_rel_err: 0.0, passed: true }
    }

    /// Adds one element: `analytic` against `numeric`, which it meets when
    /// `|analytic - numeric| <= atol + rtol * |numeric|`. NaN is kept in
    /// the maxima (`f64::max` would drop it) and fails the tolerance.
    pub(crate) fn add(&mut self, analytic: f64, numeric: f64, atol: f64, rtol: f64) {
        let abs = (analytic - numeric).abs();
        let scale = analytic.abs().max(numeric.abs());
        // An infinite error against a finite value is all of it: 1.
        let rel = if abs.is_infinite() {
            1.0
        } else if abs.is_nan() || scale > 0.0 {
            abs / scale
        } else {
            0.0
        };
        let max = |acc: f64, v: f64| if acc.is_nan() || v.is_nan() { f64::NAN } else { acc.max(v) };
        self.max_abs_err = max(self.max_abs_err, abs);
        self.max_rel_err = max(self.max_rel_err, rel);
        // NaN fails: it is not less than or equal to the tolerance.
        let within = abs <= atol + rtol * numeric.abs();
        if !within {
            self.passed = false;
        }
    }
}

/// The result of [`gradcheck`]: one [`InputCheck`] per input, in order.
/// `Display` prints a table.
///
/// ```
/// use tapegrad_tensor::{gradcheck, ndarray::arr1};
/// let r = gradcheck(|x| x[0] * x[1], &[arr1(&[2.0]).into_dyn(), arr1(&[3.0]).into_dyn()]);
/// assert!(r.passed());
/// assert!(r.to_string().contains("input 1"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GradcheckReport {
    /// One entry per input.
    pub inputs: Vec<InputCheck>,
}

impl GradcheckReport {
    /// Whether every input passed.
    ///
    /// ```
    /// use tapegrad_tensor::{gradcheck, ndarray::arr1};
    /// assert!(gradcheck(|x| x[0].tanh(), &[arr1(&[0.1, -0.2]).into_dyn()]).passed());
    /// ```
    pub fn passed(&self) -> bool {
        self.inputs.iter().all(|c| c.passed)
    }
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<10} {:>12} {:>12}  result", "input", "max abs err", "max rel err")?;
        for (i, c) in self.inputs.iter().enumerate() {
            let r = if c.passed { "ok" } else { "FAIL" };
            writeln!(
                f,
                "{:<10} {:>12.3e} {:>12.3e}  {r}",
                format!("input {i}"),
                c.max_abs_err,
                c.max_rel_err
            )?;
        }
        Ok(())
    }
}

/// Checks the reverse-mode gradients of `f` against central finite
/// differences, in `f64`, with [`GradcheckOptions::default`].
///
/// `f` receives one tensor per input and may return any shape: the checked
/// scalar is `sum(f(x) * u)` with a random normal upstream gradient `u`
/// (seeded), so that every output element is weighted differently and a
/// rule that mixes up elements is caught.
///
/// ```
/// use tapegrad_tensor::{gradcheck, ndarray::array, Tensor};
/// fn swish<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
///     x[0] * x[0].sigmoid()
/// }
/// let report = gradcheck(swish, &[array![[0.3, -1.2], [2.0, 0.7]].into_dyn()]);
/// assert!(report.passed(), "{report}");
/// ```
pub fn gradcheck<F>(f: F, inputs: &[ArrayD<f64>]) -> GradcheckReport
where
    F: for<'t> Fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
{
    gradcheck_with(f, inputs, GradcheckOptions::default())
}

/// [`gradcheck`] with chosen step, tolerances and seed.
///
/// ```
/// use tapegrad_tensor::{gradcheck_with, GradcheckOptions, ndarray::arr1};
/// let opts = GradcheckOptions { eps: 1e-5, ..Default::default() };
/// let r = gradcheck_with(|x| x[0].powf(3.0), &[arr1(&[1.5]).into_dyn()], opts);
/// assert!(r.passed());
/// ```
pub fn gradcheck_with<F>(f: F, inputs: &[ArrayD<f64>], opts: GradcheckOptions) -> GradcheckReport
where
    F: for<'t> Fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
{
    let inputs: Vec<ArrayD<f64>> = inputs.iter().map(|a| a.as_standard_layout().into_owned()).collect();
    // Analytic gradients with a random upstream gradient.
    let tape = Tape::<f64>::new();
    let xs: Vec<Tensor<'_, f64>> = inputs.iter().map(|a| tape.var(a.clone())).collect();
    let y = f(&xs);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let u: ArrayD<f64> = ArrayD::from_shape_simple_fn(IxDyn(&y.shape()), || StandardNormal.sample(&mut rng));
    let grads = tape.backward_with(y, u.clone());

    let objective = |args: &[ArrayD<f64>]| -> f64 {
        let tape = Tape::<f64>::new();
        let xs: Vec<Tensor<'_, f64>> = args.iter().map(|a| tape.constant(a.clone())).collect();
        let v = f(&xs).value();
        Zip::from(&v).and(&u).fold(0.0, |acc, &a, &b| acc + a * b)
    };

    let mut args: Vec<ArrayD<f64>> = inputs.clone();
    let mut report = Vec::with_capacity(inputs.len());
    for (i, x) in xs.iter().enumerate() {
        let analytic = grads
            .get(*x)
            .map(|g| g.as_standard_layout().into_owned())
            .unwrap_or_else(|| ArrayD::zeros(inputs[i].raw_dim()));
        let mut check = InputCheck::new();
        for k in 0..inputs[i].len() {
            let x0 = inputs[i].as_slice().expect("standard layout")[k];
            let at = |args: &mut Vec<ArrayD<f64>>, v: f64| {
                args[i].as_slice_mut().expect("standard layout")[k] = v;
            };
            at(&mut args, x0 + opts.eps);
            let fp = objective(&args);
            at(&mut args, x0 - opts.eps);
            let fm = objective(&args);
            at(&mut args, x0);
            let numeric = (fp - fm) / (2.0 * opts.eps);
            let a = analytic.as_slice().expect("standard layout")[k];
            check.add(a, numeric, opts.atol, opts.rtol);
        }
        report.push(check);
    }
    GradcheckReport { inputs: report }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::planted::{mean_square, scale, Plant};
    use ndarray::arr2;

    /// Two of the six elements exceed 1, where [`Plant::Nan`] gives NaN.
    fn x() -> ArrayD<f64> {
        arr2(&[[0.3, -1.2, 1.5], [2.0, 0.7, -0.4]]).into_dyn()
    }

    #[test]
    fn gradcheck_passes_the_right_rules_of_the_planted_ops() {
        for r in [
            gradcheck(|x| scale(x[0], 0.5, Plant::Right), &[x()]),
            gradcheck(|x| scale(x[0].sum(), 1.0 / 6.0, Plant::Right), &[x()]),
            gradcheck(|x| mean_square(x[0], Plant::Right), &[x()]),
        ] {
            assert!(r.passed(), "{r}");
            assert!(r.inputs[0].max_rel_err < 1e-8, "{r}");
        }
    }

    #[test]
    fn gradcheck_fails_a_gradient_twice_too_large_on_its_input_only() {
        let r = gradcheck(|x| scale(x[0], 0.5, Plant::Twice) + x[1], &[x(), x()]);
        assert!(!r.passed() && !r.inputs[0].passed && r.inputs[1].passed, "{r}");
        // |2 d - d| / |2 d| = 1/2, up to the central difference's error
        // (~1e-10 for a linear function): 1e-6 leaves room.
        approx::assert_abs_diff_eq!(r.inputs[0].max_rel_err, 0.5, epsilon = 1e-6);
        assert!(r.to_string().contains("input 0") && r.to_string().contains("FAIL"), "{r}");
    }

    #[test]
    fn gradcheck_fails_a_mean_without_its_1_over_m() {
        let r = gradcheck(|x| scale(x[0].sum(), 1.0 / 6.0, Plant::Unscaled), &[x()]);
        assert!(!r.passed(), "{r}");
        // The analytic gradient is m = 6 times the numeric one: relative
        // error 1 - 1/6, to the finite difference's ~1e-10.
        approx::assert_abs_diff_eq!(r.inputs[0].max_rel_err, 5.0 / 6.0, epsilon = 1e-6);
    }

    #[test]
    fn gradcheck_fails_a_nan_gradient_and_reports_the_nan() {
        // Two NaN elements among four finite and right ones: the maxima are
        // NaN, not the largest finite error (f64::max drops NaN, which made
        // the report read "0.000e0 0.000e0 FAIL").
        let r = gradcheck(|x| scale(x[0], 0.5, Plant::Nan), &[x()]);
        assert!(!r.passed(), "{r}");
        assert!(r.inputs[0].max_abs_err.is_nan() && r.inputs[0].max_rel_err.is_nan(), "{r}");
        let line = r.to_string().lines().nth(1).expect("a line for input 0").to_string();
        assert_eq!(line.split_whitespace().collect::<Vec<_>>(), ["input", "0", "NaN", "NaN", "FAIL"], "{r}");
    }

    #[test]
    fn input_check_keeps_nan_and_infinity_in_its_maxima() {
        let mut c = InputCheck::new();
        c.add(1.0, 1.0, 1e-7, 1e-6);
        assert!(c.passed && c.max_abs_err == 0.0 && c.max_rel_err == 0.0);
        c.add(f64::NAN, 0.0, 1e-7, 1e-6); // NaN against 0: no scale to divide by
        c.add(2.0, 2.0, 1e-7, 1e-6); // a later right element does not hide it
        assert!(!c.passed && c.max_abs_err.is_nan() && c.max_rel_err.is_nan(), "{c:?}");
        let mut c = InputCheck::new();
        c.add(f64::INFINITY, 1.0, 1e-7, 1e-6);
        assert!(!c.passed && c.max_abs_err == f64::INFINITY && c.max_rel_err == 1.0, "{c:?}");
    }
}
