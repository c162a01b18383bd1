//! Helpers for op tests: random inputs and the standard op check.

use crate::{gradcheck, Element, Tape, Tensor};
use ndarray::{ArrayD, IxDyn, Zip};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Where random test inputs are drawn from.
#[derive(Clone, Copy)]
pub(crate) enum Domain {
    /// Standard normal.
    Normal,
    /// Uniform on [0.5, 2]: for log, sqrt and fractional powers.
    Positive,
    /// |x| uniform on [0.2, 2] with a random sign: away from kinks at 0.
    AwayFromZero,
}

pub(crate) fn random(shape: &[usize], domain: Domain, seed: u64) -> ArrayD<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || match domain {
        Domain::Normal => StandardNormal.sample(&mut rng),
        Domain::Positive => rng.random_range(0.5..2.0),
        Domain::AwayFromZero => {
            let m: f64 = rng.random_range(0.2..2.0);
            if rng.random_bool(0.5) {
                m
            } else {
                -m
            }
        }
    })
}

/// Checks an op written as a generic function: its f64 gradient against
/// finite differences (random upstream gradient), and its f32 forward
/// against the f64 forward.
pub(crate) fn check_op(
    f64_fn: for<'t> fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
    f32_fn: for<'t> fn(&[Tensor<'t, f32>]) -> Tensor<'t, f32>,
    shapes: &[&[usize]],
    domain: Domain,
) {
    let inputs: Vec<ArrayD<f64>> =
        shapes.iter().enumerate().map(|(i, s)| random(s, domain, 17 + i as u64)).collect();
    check_op_at(f64_fn, f32_fn, &inputs);
}

/// [`check_op`] at given inputs.
pub(crate) fn check_op_at(
    f64_fn: for<'t> fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
    f32_fn: for<'t> fn(&[Tensor<'t, f32>]) -> Tensor<'t, f32>,
    inputs: &[ArrayD<f64>],
) {
    let report = gradcheck(f64_fn, inputs);
    assert!(report.passed(), "gradient check failed:\n{report}");
    // Every gradient has its input's shape.
    let tape = Tape::<f64>::new();
    let xs: Vec<_> = inputs.iter().map(|a| tape.var(a.clone())).collect();
    let y = f64_fn(&xs);
    let want = y.value();
    let g = tape.backward(y.sum());
    for (x, a) in xs.iter().zip(inputs) {
        if let Some(gx) = g.get(*x) {
            assert_eq!(gx.shape(), a.shape(), "gradient shape");
        }
    }
    // f32 forward agrees with f64 to f32 precision: inputs of order 1 and a
    // few ops give relative errors of a few f32 ulps (1.2e-7 each).
    let tape32 = Tape::<f32>::new();
    let xs32: Vec<_> = inputs.iter().map(|a| tape32.var(a.mapv(|v| v as f32))).collect();
    let got = f32_fn(&xs32).value();
    assert_eq!(got.shape(), want.shape());
    Zip::from(&got).and(&want).for_each(|&a, &b| {
        assert!(
            approx::relative_eq!(a.as_f64(), b, epsilon = 1e-5, max_relative = 1e-5),
            "f32 forward {a} vs f64 {b}"
        );
    });
}

/// Defines a test that checks an op expression with [`check_op`].
macro_rules! op_test {
    ($name:ident, |$x:ident| $body:expr, $shapes:expr) => {
        op_test!($name, |$x| $body, $shapes, $crate::testutil::Domain::Normal);
    };
    ($name:ident, |$x:ident| $body:expr, $shapes:expr, $domain:expr) => {
        #[test]
        fn $name() {
            #[allow(unused_imports)]
            use $crate::Element;
            fn f<'t, T: $crate::Element>($x: &[$crate::Tensor<'t, T>]) -> $crate::Tensor<'t, T> {
                $body
            }
            $crate::testutil::check_op(f::<f64>, f::<f32>, $shapes, $domain);
        }
    };
}
pub(crate) use op_test;
