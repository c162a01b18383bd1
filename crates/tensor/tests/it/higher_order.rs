//! Higher order: second and third derivatives against analytic forms,
//! Hessians of a small network, and NaN tracing. (JVP against reverse mode
//! and gradgradcheck of every op run over the op registry, in
//! `src/registry.rs`.)

use approx::assert_abs_diff_eq;
use ndarray::{arr1, Array1, ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapegrad_tensor::{derivatives, gradgradcheck, hessian, Phase, Tape, Tensor};

fn grid() -> ArrayD<f64> {
    Array1::linspace(-4.0, 4.0, 81).into_dyn()
}

fn sig(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks f'' (and optionally f''') from grad of grad against analytic
/// forms on the grid. Tolerance 1e-10 absolute: the recorded rules repeat
/// the analytic arithmetic up to a few roundings of values of order 1.
fn check(
    name: &str,
    f: impl for<'t> Fn(Tensor<'t, f64>) -> Tensor<'t, f64>,
    d2: impl Fn(f64) -> f64,
    d3: Option<&dyn Fn(f64) -> f64>,
) {
    let x = grid();
    let d = derivatives(f, &x, if d3.is_some() { 3 } else { 2 });
    for (k, &v) in x.iter().enumerate() {
        assert_abs_diff_eq!(d[2][k], d2(v), epsilon = 1e-10);
        if let Some(d3) = d3 {
            assert_abs_diff_eq!(d[3][k], d3(v), epsilon = 1e-10);
        }
    }
    eprintln!("{name}: ok");
}

#[test]
fn second_derivatives_match_analytic_forms() {
    let s3 = |x: f64| {
        let s = sig(x);
        s * (1.0 - s) * (1.0 - 6.0 * s + 6.0 * s * s)
    };
    check("sigmoid", |x| x.sigmoid(), |x| sig(x) * (1.0 - sig(x)) * (1.0 - 2.0 * sig(x)), Some(&s3));
    check("tanh", |x| x.tanh(), |x| -2.0 * x.tanh() * (1.0 - x.tanh().powi(2)), None);
    check("softplus", |x| x.softplus(), |x| sig(x) * (1.0 - sig(x)), None);
    check(
        "swish",
        |x| x * x.sigmoid(),
        |x| {
            let s = sig(x);
            2.0 * s * (1.0 - s) + x * s * (1.0 - s) * (1.0 - 2.0 * s)
        },
        None,
    );
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let c = 0.044715;
    check(
        "gelu",
        move |x| x * ((x + x.powf(3.0) * c) * k).tanh() * 0.5 + x * 0.5,
        move |x| {
            let u = k * (x + c * x.powi(3));
            let t = u.tanh();
            let (du, d2u) = (k * (1.0 + 3.0 * c * x * x), 6.0 * k * c * x);
            (1.0 - t * t) * du + 0.5 * x * (1.0 - t * t) * (d2u - 2.0 * t * du * du)
        },
        None,
    );
    check("x^3", |x| x * x * x, |x| 6.0 * x, Some(&|_| 6.0));
}

/// A 2-layer tanh network's loss as a function of all its parameters,
/// packed into one vector of 3*4 + 3 + 3 + 1 = 19 numbers.
fn net_loss<'t>(p: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
    let p = p[0];
    let tape = p.tape();
    let w1 = p.slice_axis(0, 0..12).reshape(&[3, 4]);
    let b1 = p.slice_axis(0, 12..15).reshape(&[3, 1]);
    let w2 = p.slice_axis(0, 15..18).reshape(&[1, 3]);
    let b2 = p.slice_axis(0, 18..19).reshape(&[1, 1]);
    let x = tape.constant(ndarray::Array2::from_shape_fn((4, 6), |(i, j)| ((i * 6 + j) as f64 * 0.37).sin()));
    let y = tape.constant(ndarray::arr2(&[[1.0, 0.0, 1.0, 1.0, 0.0, 0.0]]));
    let a1 = (w1.matmul(x) + b1).tanh();
    w2.affine(a1, b2).bce_with_logits(y).mean()
}

fn params() -> ArrayD<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    ArrayD::from_shape_simple_fn(IxDyn(&[19]), || rng.random_range(-1.0..1.0))
}

#[test]
fn network_hessian_is_symmetric_and_hvp_matches_finite_differences() {
    let h = hessian(net_loss, &params());
    for i in 0..19 {
        for j in 0..19 {
            // Symmetric up to rounding of the two different orders of
            // differentiation.
            assert_abs_diff_eq!(h[[i, j]], h[[j, i]], epsilon = 1e-10);
        }
    }
    assert!(h.iter().any(|&v| v.abs() > 1e-3), "a non-trivial Hessian");
    let r = gradgradcheck(net_loss, &[params()]);
    assert!(r.passed(), "{r}");
    // Differences of gradients with eps 1e-5: agreement to ~1e-9.
    assert!(r.inputs[0].max_abs_err < 1e-6, "{r}");
}

#[test]
fn a_planted_log_of_zero_is_traced_to_its_op_and_line() {
    let tape = Tape::<f64>::new();
    tape.trace_nonfinite(true);
    let x = tape.constant(ndarray::Array2::from_shape_fn((3, 8), |(i, j)| (i + j) as f64 * 0.1));
    let w1 = tape.var(ndarray::Array2::from_shape_fn((4, 3), |(i, j)| 0.1 * (i as f64 - j as f64)));
    let b1 = tape.var(ndarray::Array2::<f64>::zeros((4, 1)));
    let a1 = w1.affine_relu(x, b1);
    let dead = a1.slice_axis(0, 0..1); // unit 0: w = [0, -0.1, -0.2] on x >= 0 -> relu gives 0
    let line = line!() + 1;
    let planted = dead.log();
    let a2 = (a1.sum_axes(&[0], true) + planted).sigmoid();
    let loss = a2.mean();
    // sigmoid(-inf) = 0: the -inf never reaches the loss, yet it is found.
    assert!(loss.item().is_finite());
    let r = tape.nonfinite().expect("a report");
    assert_eq!(r.op, "log");
    assert_eq!(r.phase, Phase::Forward);
    assert_eq!(r.location.line(), line);
    assert!(r.location.file().ends_with("higher_order.rs"));
    assert_eq!(r.value, f64::NEG_INFINITY);
    assert!(r.to_string().contains("log produced -inf in the forward pass"), "{r}");
}

#[test]
fn a_nan_gradient_is_traced_to_its_op() {
    let tape = Tape::<f64>::new();
    tape.trace_nonfinite(true);
    let x = tape.var(arr1(&[0.0, 4.0]));
    let line = line!() + 1; // d sqrt(x)/dx = inf at 0
    let y = x.sqrt();
    assert!(tape.nonfinite().is_none(), "the forward values are finite");
    let _ = tape.backward(y.sum());
    let r = tape.nonfinite().expect("a report");
    assert_eq!((r.op, r.phase, r.location.line()), ("sqrt", Phase::Backward, line));
}

#[test]
fn tracing_is_off_by_default() {
    let tape = Tape::<f64>::new();
    let _ = tape.var(arr1(&[0.0])).log();
    assert!(tape.nonfinite().is_none());
}
