//! The new ops' values (and the elementwise ones' derivatives) against an
//! independent reference: Python's math module, frozen in
//! `tests/it/reference/values.rs` by `scripts/reference_values.py`.

use approx::assert_relative_eq;
use tapegrad_tensor::ndarray::{Array2, ArrayD, IxDyn};
use tapegrad_tensor::{Element, Tape, Tensor};

#[allow(
    dead_code,
    clippy::type_complexity,
    clippy::approx_constant,
    reason = "generated data: read in part by each test, with the digits Python printed"
)]
mod values {
    include!("reference/values.rs");
}

fn unary<'t, T: Element>(name: &str, x: Tensor<'t, T>) -> Tensor<'t, T> {
    match name {
        "sin" => x.sin(),
        "cos" => x.cos(),
        "erf" => x.erf(),
        "log1p" => x.log1p(),
        "expm1" => x.expm1(),
        "square" => x.square(),
        "recip" => x.recip(),
        other => panic!("no op {other} in this test: add it"),
    }
}

/// f and f' at the reference points, in `T`, as f64.
fn values_and_slopes<T: Element>(name: &str, xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let tape = Tape::<T>::new();
    let x = tape
        .var(ArrayD::from_shape_vec(IxDyn(&[xs.len()]), xs.iter().map(|&v| T::cast(v)).collect()).unwrap());
    let y = unary(name, x);
    let g = tape.backward(y.sum());
    (y.value().iter().map(|v| v.as_f64()).collect(), g[x].iter().map(|v| v.as_f64()).collect())
}

#[test]
fn elementwise_ops_match_pythons_math_module() {
    for &(name, rows) in values::UNARY {
        let xs: Vec<f64> = rows.iter().map(|r| r.0).collect();
        let (y, d) = values_and_slopes::<f64>(name, &xs);
        for (i, &(x, fx, dfx)) in rows.iter().enumerate() {
            // libm and the C library are each within an ulp or so; the
            // derivatives add two or three roundings: 4 ulps.
            assert_relative_eq!(y[i], fx, max_relative = 9e-16, epsilon = 0.0);
            assert_relative_eq!(d[i], dfx, max_relative = 9e-16, epsilon = 0.0);
            let _ = x;
        }
        let (y, d) = values_and_slopes::<f32>(name, &xs);
        for (i, &(x, fx, dfx)) in rows.iter().enumerate() {
            // x rounded to f32 (6e-8 relative) moves f by at most its
            // condition number (under 4 at these points) times that, plus
            // f32's own roundings: 1e-6 relative. Tiny values (1e-9, 1e-12)
            // keep their relative accuracy in f32.
            assert_relative_eq!(y[i], fx, max_relative = 1e-6);
            assert_relative_eq!(d[i], dfx, max_relative = 1e-6);
            let _ = x;
        }
    }
}

fn logits<T: Element>(tape: &Tape<T>) -> Tensor<'_, T> {
    let rows = values::LOGITS;
    tape.var(Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| T::cast(rows[i][j])))
}

fn as_f64<T: Element>(t: Tensor<'_, T>) -> Vec<f64> {
    t.value().iter().map(|v| v.as_f64()).collect()
}

fn flat(rows: &[&[f64]]) -> Vec<f64> {
    rows.iter().flat_map(|r| r.iter().copied()).collect()
}

/// `got` against `want` within `abs + rel |want|`.
fn close(what: &str, got: &[f64], want: &[f64], abs: f64, rel: f64) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= abs + rel * w.abs(), "{what}: {g} against {w}");
    }
}

fn reductions_match<T: Element>(abs_log: f64, rel: f64) {
    let tape = Tape::<T>::new();
    let z = logits(&tape);
    let what = |op: &str| format!("{op} in {}", T::NAME);
    // Values of order 1 from logits of order 1000: the shift is exact, the
    // exponentials and one log round once or twice each (rel); log-space
    // values near 1000 carry the ulp of 1000 (abs_log).
    close(&what("logsumexp"), &as_f64(z.logsumexp(&[0], false)), values::LOGSUMEXP, abs_log, rel);
    close(&what("softmax"), &as_f64(z.softmax(0)), &flat(values::SOFTMAX), 0.0, 4.0 * rel);
    close(&what("log_softmax"), &as_f64(z.log_softmax(0)), &flat(values::LOG_SOFTMAX), abs_log, rel);
    // max and min pick an element: exact.
    close(&what("max_axes"), &as_f64(z.max_axes(&[0], false)), values::MAX, 0.0, 0.0);
    close(&what("min_axes"), &as_f64(z.min_axes(&[0], false)), values::MIN, 0.0, 0.0);
}

#[test]
fn axis_reductions_match_pythons_math_module_at_logits_of_1000() {
    // f64: an ulp of 1000 is 1.1e-13.
    reductions_match::<f64>(5e-13, 2e-15);
    // f32: an ulp of 1000 is 6.1e-5.
    reductions_match::<f32>(2e-4, 1e-6);
}
