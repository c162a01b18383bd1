//! The op registry: one test-only table of every op the crate defines (and
//! of a few composites built from them), and the cross-op checks, each of
//! which runs over the whole table.
//!
//! Adding an op takes its unit in its family file and one line in
//! [`registry`]. A forgotten line fails
//! `the_registry_lists_every_op_the_crate_defines_and_no_other`, which reads
//! the op names out of the crate's source (every `Op` impl's `name`), and a
//! line whose function does not record the op it names fails
//! `every_entry_records_the_op_it_names`.
//!
//! Each entry gives the op's name, the case it covers, the function (written
//! once, generic over the element type), the input shapes (broadcast cases
//! among them), the domain to draw each input from (away from the op's
//! kinks) and its flags. The checks:
//! - gradcheck: f64 reverse mode against central differences, with a random
//!   upstream gradient; each gradient has its input's shape;
//! - f32 forward and gradients against f64;
//! - [`SCALAR`] entries: the scalar lane against the array lane, bit for
//!   bit, in f64 and f32;
//! - JVP (forward mode) against the reverse-mode Jacobian;
//! - gradgradcheck, of the entry and of its square;
//! - [`LINEAR`] entries: linear, and their JVP is the function of the
//!   tangent.

use crate::testutil::user::{self, USER};
use crate::testutil::{random, Domain};
use crate::{gradcheck, gradgradcheck, jvp, Element, Tape, Tensor};
use ndarray::{arr2, ArrayD, IxDyn, Zip};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

type Fn64 = for<'t> fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>;
type Fn32 = for<'t> fn(&[Tensor<'t, f32>]) -> Tensor<'t, f32>;

/// Every op in the entry has a scalar form (`Op::forward_scalar`): on
/// one-element inputs it runs in the scalar lane.
const SCALAR: u8 = 1;
/// Linear in all its inputs jointly: `f(x + c v) = f(x) + c f(v)`.
const LINEAR: u8 = 2;
/// Built from other ops: `name` is not an op's name.
const COMPOSITE: u8 = 4;
/// A [`crate::FirstOrderOp`]: no second derivatives (gradgradcheck must
/// panic naming it instead).
const FIRST_ORDER: u8 = 8;

/// One line of the registry.
pub(crate) struct Entry {
    /// The op's name (as `Op::name` gives it), or the composite's name.
    name: &'static str,
    /// What this line covers beyond the others for the same op.
    case: &'static str,
    f64: Fn64,
    f32: Fn32,
    shapes: &'static [&'static [usize]],
    /// One domain per input; the last one stands for the rest.
    domains: &'static [Domain],
    flags: u8,
}

impl Entry {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn label(&self) -> String {
        format!("{} ({})", self.name, self.case)
    }

    /// Inputs of the given shapes, each from its domain.
    fn inputs_of(&self, shapes: &[&[usize]]) -> Vec<ArrayD<f64>> {
        let domain = |i: usize| self.domains[i.min(self.domains.len() - 1)];
        shapes.iter().enumerate().map(|(i, s)| random(s, domain(i), 17 + i as u64)).collect()
    }

    fn inputs(&self) -> Vec<ArrayD<f64>> {
        self.inputs_of(self.shapes)
    }
}

/// One registry line: the function body is written once, over `T`.
macro_rules! op {
    ($name:expr, $case:literal, |$x:ident| $body:expr, $shapes:expr, $domains:expr, $flags:expr) => {{
        fn f<'t, T: Element>($x: &[Tensor<'t, T>]) -> Tensor<'t, T> {
            $body
        }
        Entry {
            name: $name,
            case: $case,
            f64: f::<f64>,
            f32: f::<f32>,
            shapes: $shapes,
            domains: $domains,
            flags: $flags,
        }
    }};
}

const N: &[Domain] = &[Domain::Normal];
const P: &[Domain] = &[Domain::Positive];
const Z: &[Domain] = &[Domain::AwayFromZero];
/// A normal numerator over a positive denominator.
const NP: &[Domain] = &[Domain::Normal, Domain::Positive];
/// A positive base to a normal exponent (the exponent's gradient takes ln).
const PN: &[Domain] = &[Domain::Positive, Domain::Normal];
/// Logits and 0/1 targets.
const NL: &[Domain] = &[Domain::Normal, Domain::Labels];
/// Away from the bounds of `clamp(-0.7, 0.9)`.
const CLAMP: &[Domain] = &[Domain::AwayFrom(&[-0.7, 0.9])];

/// `pick`'s adjoint applied to `g`, as tape ops: the recorded gradient of
/// `sum(pick(z) * g)` with respect to a fresh `z` of shape `shape`. This is
/// how the ops that only backward rules record (sum_to, index_add,
/// pad_axis) are reached through the public API.
fn adjoint<'t, T: Element>(
    g: Tensor<'t, T>,
    shape: &[usize],
    pick: impl Fn(Tensor<'t, T>) -> Tensor<'t, T>,
) -> Tensor<'t, T> {
    let tape = g.tape();
    let z = tape.var(ArrayD::<T>::zeros(IxDyn(shape)));
    tape.grad_graph((pick(z) * g).sum()).get(z).expect("z is used")
}

/// Every op, one line per case.
#[rustfmt::skip]
pub(crate) fn registry() -> Vec<Entry> {
    vec![
        // arith.rs
        op!("add", "same shapes", |x| x[0] + x[1], &[&[3, 4], &[3, 4]], N, SCALAR | LINEAR),
        op!("add", "broadcast (3, 1) + (1, 4)", |x| x[0] + x[1], &[&[3, 1], &[1, 4]], N, SCALAR | LINEAR),
        op!("add", "the guide's bias (5, 7) + (5, 1)", |x| x[0] + x[1], &[&[5, 7], &[5, 1]], N, SCALAR | LINEAR),
        op!("add", "across ranks (2, 3, 4) + (4)", |x| x[0] + x[1], &[&[2, 3, 4], &[4]], N, SCALAR | LINEAR),
        op!("sub", "broadcast (3, 1) - (1, 4)", |x| x[0] - x[1], &[&[3, 1], &[1, 4]], N, SCALAR | LINEAR),
        op!("mul", "broadcast (3, 1) * (1, 4)", |x| x[0] * x[1], &[&[3, 1], &[1, 4]], N, SCALAR),
        op!("mul", "the guide's bias (5, 7) * (5, 1)", |x| x[0] * x[1], &[&[5, 7], &[5, 1]], N, SCALAR),
        op!("mul", "by a rank-0 tensor (3, 4) * ()", |x| x[0] * x[1], &[&[3, 4], &[]], N, SCALAR),
        op!("div", "broadcast (3, 1) / (1, 4)", |x| x[0] / x[1], &[&[3, 1], &[1, 4]], NP, SCALAR),
        op!("neg", "-x", |x| -x[0], &[&[2, 3]], N, SCALAR | LINEAR),
        op!("add_scalar", "x + 1.5", |x| x[0] + T::cast(1.5), &[&[2, 3]], N, SCALAR),
        op!("add_scalar", "x - 1.5", |x| x[0] - T::cast(1.5), &[&[2, 3]], N, SCALAR),
        op!("mul_scalar", "x * -2.5", |x| x[0] * T::cast(-2.5), &[&[2, 3]], N, SCALAR | LINEAR),
        op!("mul_scalar", "x / 4", |x| x[0] / T::cast(4.0), &[&[2, 3]], N, SCALAR | LINEAR),
        op!("pow", "broadcast (3, 1) ^ (1, 4)", |x| x[0].pow(x[1]), &[&[3, 1], &[1, 4]], PN, SCALAR),
        // unary.rs
        op!("exp", "e^x", |x| x[0].exp(), &[&[3, 4]], N, SCALAR),
        op!("log", "ln x", |x| x[0].log(), &[&[3, 4]], P, SCALAR),
        op!("sqrt", "sqrt x", |x| x[0].sqrt(), &[&[3, 4]], P, SCALAR),
        op!("abs", "|x|", |x| x[0].abs(), &[&[3, 4]], Z, SCALAR),
        op!("tanh", "tanh x", |x| x[0].tanh(), &[&[3, 4]], N, SCALAR),
        op!("sigmoid", "sigmoid x", |x| x[0].sigmoid(), &[&[3, 4]], N, SCALAR),
        op!("relu", "max(x, 0)", |x| x[0].relu(), &[&[3, 4]], Z, SCALAR),
        op!("softplus", "ln(1 + e^x)", |x| x[0].softplus(), &[&[3, 4]], N, SCALAR),
        op!("sin", "sin x", |x| x[0].sin(), &[&[3, 4]], N, SCALAR),
        op!("cos", "cos x", |x| x[0].cos(), &[&[3, 4]], N, SCALAR),
        op!("erf", "erf x", |x| x[0].erf(), &[&[3, 4]], N, SCALAR),
        op!("log1p", "ln(1 + x)", |x| x[0].log1p(), &[&[3, 4]], P, SCALAR),
        op!("expm1", "e^x - 1", |x| x[0].expm1(), &[&[3, 4]], N, SCALAR),
        op!("square", "x^2", |x| x[0].square(), &[&[3, 4]], N, SCALAR),
        op!("recip", "1 / x", |x| x[0].recip(), &[&[3, 4]], Z, SCALAR),
        op!("powf", "x^2.5", |x| x[0].powf(T::cast(2.5)), &[&[3, 4]], P, SCALAR),
        op!("powf", "x^2 (the squaring path)", |x| x[0].powf(T::cast(2.0)), &[&[3, 4]], N, SCALAR),
        op!("powf", "x^3 of negatives", |x| x[0].powf(T::cast(3.0)), &[&[3, 4]], Z, SCALAR),
        op!("powf", "2 x^-1 (a scalar over a tensor)", |x| x[0].powf(T::cast(-1.0)) * T::cast(2.0), &[&[3]], P, SCALAR),
        op!("log_sigmoid", "-softplus(-x)", |x| x[0].log_sigmoid(), &[&[3, 4]], N, COMPOSITE | SCALAR),
        // reduce.rs
        op!("sum", "all axes", |x| x[0].sum(), &[&[3, 4]], N, LINEAR),
        op!("sum", "axis 1 kept", |x| x[0].sum_axes(&[1], true), &[&[3, 4]], N, LINEAR),
        op!("sum", "axes 0 and 2 dropped", |x| x[0].sum_axes(&[0, 2], false), &[&[2, 3, 4]], N, LINEAR),
        op!("max_axes", "axis 1 kept", |x| x[0].max_axes(&[1], true), &[&[3, 4]], N, 0),
        op!("max_axes", "axes 0 and 2 dropped", |x| x[0].max_axes(&[0, 2], false), &[&[2, 3, 4]], N, 0),
        op!("min_axes", "axis 0 dropped", |x| x[0].min_axes(&[0], false), &[&[3, 4]], N, 0),
        op!("stable_shift", "inside logsumexp over axis 1", |x| x[0].logsumexp(&[1], true), &[&[3, 4]], N, 0),
        op!("logsumexp", "axis 1 dropped", |x| x[0].logsumexp(&[1], false), &[&[3, 4]], N, COMPOSITE),
        op!("softmax", "axis 0 (classes are rows)", |x| x[0].softmax(0), &[&[4, 3]], N, COMPOSITE),
        op!("log_softmax", "axis 0", |x| x[0].log_softmax(0), &[&[4, 3]], N, COMPOSITE),
        op!("mean", "all axes", |x| x[0].mean(), &[&[3, 4]], N, COMPOSITE | LINEAR),
        op!("mean_axes", "axis 0 kept", |x| x[0].mean_axes(&[0], true), &[&[3, 4]], N, COMPOSITE | LINEAR),
        op!("reshape", "(3, 4) to (2, 6)", |x| x[0].reshape(&[2, 6]), &[&[3, 4]], N, LINEAR),
        op!("reshape", "of a transpose (strided)", |x| x[0].t().reshape(&[12]), &[&[3, 4]], N, LINEAR),
        op!("broadcast_to", "(3, 1) to (2, 3, 4)", |x| x[0].broadcast_to(&[2, 3, 4]), &[&[3, 1]], N, LINEAR),
        op!("sum_to", "(2, 3, 4) to (3, 1), broadcast_to's rule", |x| adjoint(x[0], &[3, 1], |z| z.broadcast_to(&[2, 3, 4])), &[&[2, 3, 4]], N, LINEAR),
        // index.rs
        op!("index_select", "axis 1 with repeats", |x| x[0].index_select(1, &[3, 0, 3, 2]), &[&[2, 4]], N, LINEAR),
        op!("index_select", "axis 0", |x| x[0].index_select(0, &[1, 1]), &[&[3, 2]], N, LINEAR),
        op!("index_add", "index_select's rule", |x| adjoint(x[0], &[2, 4], |z| z.index_select(1, &[3, 0, 3, 2])), &[&[2, 4]], N, LINEAR),
        op!("slice_axis", "axis 1, 1..3", |x| x[0].slice_axis(1, 1..3), &[&[2, 4]], N, LINEAR),
        op!("pad_axis", "slice_axis's rule", |x| adjoint(x[0], &[2, 4], |z| z.slice_axis(1, 1..3)), &[&[2, 2]], N, LINEAR),
        op!("concat", "axis 1, one input twice", |x| Tensor::concat(&[x[0], x[1], x[0]], 1), &[&[2, 1], &[2, 3]], N, LINEAR),
        op!("concat", "axis 0", |x| Tensor::concat(&[x[0], x[1]], 0), &[&[1, 3], &[2, 3]], N, LINEAR),
        // select.rs
        op!("maximum", "broadcast (3, 1), (1, 4)", |x| x[0].maximum(x[1]), &[&[3, 1], &[1, 4]], N, SCALAR),
        op!("minimum", "broadcast (3, 1), (1, 4)", |x| x[0].minimum(x[1]), &[&[3, 1], &[1, 4]], N, SCALAR),
        op!("clamp", "to [-0.7, 0.9]", |x| x[0].clamp(T::cast(-0.7), T::cast(0.9)), &[&[4, 5]], CLAMP, SCALAR),
        op!("where", "(3, 4), (1, 4), mask (3, 1)", |x| Tensor::where_(&arr2(&[[true], [false], [true]]), x[0], x[1]), &[&[3, 4], &[1, 4]], N, LINEAR),
        // linalg.rs
        op!("matmul", "(3, 4) (4, 2)", |x| x[0].matmul(x[1]), &[&[3, 4], &[4, 2]], N, 0),
        op!("matmul", "transposed left", |x| x[0].t().matmul(x[1]), &[&[4, 3], &[4, 2]], N, 0),
        op!("matmul", "transposed right", |x| x[0].matmul(x[1].t()), &[&[3, 4], &[2, 4]], N, 0),
        op!("matmul", "the thin kernel (5, 3) (3, 70)", |x| x[0].matmul(x[1]), &[&[5, 3], &[3, 70]], N, 0),
        op!("matmul", "the dots kernel (3, 80) (80, 2)", |x| x[0].matmul(x[1].t()), &[&[3, 80], &[2, 80]], N, 0),
        op!("affine", "(5, 3) (3, 70) (5, 1)", |x| x[0].affine(x[1], x[2]), &[&[5, 3], &[3, 70], &[5, 1]], N, 0),
        op!("affine_relu", "(5, 3) (3, 70) (5, 1)", |x| x[0].affine_relu(x[1], x[2]), &[&[5, 3], &[3, 70], &[5, 1]], N, 0),
        op!("affine_relu", "wide k (2, 40) (40, 3)", |x| x[0].affine_relu(x[1], x[2]), &[&[2, 40], &[40, 3], &[2, 1]], N, 0),
        op!("transpose", "(3, 4)", |x| x[0].t(), &[&[3, 4]], N, LINEAR),
        // loss.rs
        op!("bce_with_logits", "logits, labels", |x| x[0].bce_with_logits(x[1]), &[&[3, 4], &[3, 4]], NL, SCALAR),
        op!("bce_with_logits", "broadcast logits (3, 1)", |x| x[0].bce_with_logits(x[1]), &[&[3, 1], &[3, 4]], NL, SCALAR),
        op!("bce", "of sigmoid, labels", |x| x[0].sigmoid().bce(x[1]), &[&[3, 4], &[3, 4]], NL, COMPOSITE | SCALAR),
        // custom.rs: users' ops, written as a user would.
        op!(USER, "CustomOp: a hand-written sigmoid", |x| user::sigmoid(x[0]), &[&[3, 4]], N, 0),
        op!(USER, "CustomOp: a b broadcast, rule in the output's shape", |x| user::times(x[0], x[1]), &[&[3, 1], &[1, 4]], N, 0),
        op!(USER, "FirstOrderOp: x^3 on arrays, with a jvp", |x| user::cube(x[0]), &[&[3, 4]], N, FIRST_ORDER),
        // Composites that chain ops: shared inputs, mixed families.
        op!("swish", "x sigmoid(x)", |x| x[0] * x[0].sigmoid(), &[&[3, 4]], N, COMPOSITE | SCALAR),
        op!("w4 chain", "((a b + b).tanh() - a) a", |x| ((x[0] * x[1] + x[1]).tanh() - x[0]) * x[0], &[&[3, 4], &[3, 4]], N, COMPOSITE | SCALAR),
        op!("guide layer", "W X + b", |x| x[0].matmul(x[1]) + x[2], &[&[5, 3], &[3, 7], &[5, 1]], N, COMPOSITE),
        op!("tanh layer", "tanh(A B + c) sum(A)", |x| (x[0].matmul(x[1]) + x[2]).tanh() * x[0].sum(), &[&[3, 4], &[4, 5], &[3, 1]], N, COMPOSITE),
        op!("relu layer", "mean of sigmoid(affine_relu)", |x| x[0].affine_relu(x[1], x[2]).sigmoid().mean_axes(&[1], true), &[&[2, 3], &[3, 70], &[2, 1]], N, COMPOSITE),
        op!("positive chain", "exp, sigmoid, sqrt, pow, softplus, log", |x| (x[0].exp() * x[1].sigmoid() / x[0].sqrt()).pow(x[1]).softplus() + x[0].log(), &[&[2, 3], &[2, 3]], P, COMPOSITE),
        op!("shape chain", "concat, index_select, reshape, maximum", |x| Tensor::concat(&[x[0].t(), x[1]], 0).index_select(1, &[1, 0, 1]).reshape(&[18]).reshape(&[6, 3]).maximum(x[1].t().reshape(&[6, 1]) * T::cast(0.5)), &[&[2, 3], &[3, 2]], N, COMPOSITE),
        op!("loss chain", "bce sum times broadcast sums", |x| x[0].bce_with_logits(x[1].sigmoid()).sum() * x[0].broadcast_to(&[2, 2, 2]).sum_axes(&[0, 2], false).mean(), &[&[2, 2], &[2, 2]], N, COMPOSITE),
        op!("gelu", "exact, 0.5 x (1 + erf(x / sqrt 2))", |x| x[0] * T::cast(0.5) * ((x[0] * T::cast(std::f64::consts::FRAC_1_SQRT_2)).erf() + T::one()), &[&[3, 4]], N, COMPOSITE | SCALAR),
        op!("user chain", "user sigmoid(cos x) sin x, over a max", |x| user::sigmoid(x[0].cos()) * x[0].sin().max_axes(&[0], true), &[&[3, 4]], N, COMPOSITE),
        op!("shared input", "affine_relu(x^T, x, x^T[:, 0])^2", |x| x[0].t().affine_relu(x[0], x[0].t().slice_axis(1, 0..1)).powf(T::cast(2.0)), &[&[3, 2]], N, COMPOSITE),
    ]
}

/// Runs `check` on every entry that `keep` keeps and fails once, listing
/// every entry that failed (a panic inside a check counts as a failure of
/// its entry). Returns the number of entries checked.
fn check_each(keep: impl Fn(&Entry) -> bool, check: impl Fn(&Entry) -> Result<(), String>) -> usize {
    let mut failures = Vec::new();
    let mut count = 0;
    for e in registry().iter().filter(|e| keep(e)) {
        count += 1;
        match catch_unwind(AssertUnwindSafe(|| check(e))) {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failures.push(format!("{}: {msg}", e.label())),
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
                failures.push(format!("{}: panicked: {}", e.label(), msg.unwrap_or_default()));
            }
        }
    }
    assert!(count > 0, "no entry to check");
    assert!(failures.is_empty(), "{} of {count} entries failed:\n{}", failures.len(), failures.join("\n"));
    count
}

fn all(_: &Entry) -> bool {
    true
}

/// Whether `got` is within `atol + rtol |want|` of `want` everywhere (NaN
/// is not); the error names `what` and the worst element's error in units
/// of its tolerance.
fn close(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, atol: f64, rtol: f64) -> Result<(), String> {
    if got.shape() != want.shape() {
        return Err(format!("{what}: shapes {:?} and {:?}", got.shape(), want.shape()));
    }
    let mut worst = 0.0f64;
    Zip::from(got).and(want).for_each(|&a, &b| {
        let r = (a - b).abs() / (atol + rtol * b.abs());
        worst = if r.is_nan() || worst.is_nan() { f64::NAN } else { worst.max(r) };
    });
    if worst.is_nan() || worst > 1.0 {
        return Err(format!("{what} off by {worst:.3e} times the tolerance"));
    }
    Ok(())
}

#[test]
fn every_entry_gradient_matches_finite_differences() {
    check_each(all, |e| {
        let inputs = e.inputs();
        let report = gradcheck(e.f64, &inputs);
        if !report.passed() {
            return Err(format!("gradcheck failed\n{report}"));
        }
        // Every input gets a gradient, of its own shape (broadcast
        // gradients are summed back).
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|a| tape.var(a.clone())).collect();
        let g = tape.backward((e.f64)(&xs).sum());
        for (i, (x, a)) in xs.iter().zip(&inputs).enumerate() {
            match g.get(*x) {
                Some(gx) if gx.shape() == a.shape() => {}
                Some(gx) => {
                    return Err(format!("gradient {i} of shape {:?} for {:?}", gx.shape(), a.shape()))
                }
                None => return Err(format!("no gradient for input {i}")),
            }
        }
        Ok(())
    });
}

#[test]
fn every_entry_in_f32_matches_f64() {
    check_each(all, |e| {
        let inputs = e.inputs();
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|a| tape.var(a.clone())).collect();
        let y = (e.f64)(&xs);
        let u = random(&y.shape(), Domain::Normal, 5);
        let g = tape.backward((y * tape.constant(u.clone())).sum());
        let tape32 = Tape::<f32>::new();
        let xs32: Vec<_> = inputs.iter().map(|a| tape32.var(a.mapv(|v| v as f32))).collect();
        let y32 = (e.f32)(&xs32);
        let g32 = tape32.backward((y32 * tape32.constant(u.mapv(|v| v as f32))).sum());
        let to64 = |v: &crate::Value<f32>| v.mapv(f64::from);
        // Inputs of order 1 rounded to f32 (6e-8 relative), then a few ops
        // each rounding once more, and sums of at most 80 products of order
        // 1 (the dots kernel): errors of a few 1e-7 relative to the terms
        // summed, so 1e-5 relative plus 1e-5 absolute (for results near 0
        // made of terms of order 1) leaves room without hiding a wrong
        // f32 kernel, whose errors are of the order of the values.
        close("f32 forward", &to64(&y32.value()), &y.value().to_owned(), 1e-5, 1e-5)?;
        // The gradients are a few more roundings of the same size (a
        // product with the upstream gradient, sums of the same lengths):
        // the same bound.
        for (i, (x, x32)) in xs.iter().zip(&xs32).enumerate() {
            close(&format!("f32 gradient {i}"), &to64(&g32[*x32]), &g[*x].to_owned(), 1e-5, 1e-5)?;
        }
        Ok(())
    });
}

/// The value and the gradients of `f` at `inputs`, and whether every op
/// was recorded in the scalar lane. With `arrays`, non-finite tracing is
/// on, which keeps every op on arrays (forward and backward).
fn run_lane<T: Element>(
    f: for<'t> fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
    inputs: &[ArrayD<T>],
    arrays: bool,
) -> (T, Vec<T>, bool) {
    let tape = Tape::<T>::new();
    tape.trace_nonfinite(arrays);
    let xs: Vec<_> = inputs.iter().map(|a| tape.var(a.clone())).collect();
    let y = f(&xs);
    let lane = tape.nodes.borrow().iter().all(|n| n.op.is_none() || n.scalar);
    let g = tape.backward(y);
    let grads =
        xs.iter().map(|&x| g.get(x).and_then(|v| v.iter().next().copied()).unwrap_or(T::zero())).collect();
    (y.item(), grads, lane)
}

/// The two lanes of `f` at `inputs`: the same formulas in the same order,
/// so the same bits (compared as f64, to which f32 converts exactly).
fn lanes_agree<T: Element>(
    f: for<'t> fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
    inputs: &[ArrayD<T>],
) -> Result<(), String> {
    let (y, g, lane) = run_lane(f, inputs, false);
    let (ya, ga, lane_a) = run_lane(f, inputs, true);
    if !lane || lane_a {
        return Err(format!("{}: not every op ran in the scalar lane ({lane}, arrays {lane_a})", T::NAME));
    }
    let bits = |v: T| v.as_f64().to_bits();
    if bits(y) != bits(ya) {
        return Err(format!("{}: value {y} in the scalar lane, {ya} on arrays", T::NAME));
    }
    for (i, (a, b)) in g.iter().zip(&ga).enumerate() {
        if bits(*a) != bits(*b) {
            return Err(format!("{}: gradient {i}: {a} in the scalar lane, {b} on arrays", T::NAME));
        }
    }
    Ok(())
}

#[test]
fn scalar_lane_matches_array_lane_bit_for_bit() {
    check_each(
        |e| e.has(SCALAR),
        |e| {
            let n = e.shapes.len();
            // Ranks mixed both ways: the result takes the largest.
            let rank2_first: Vec<&[usize]> =
                (0..n).map(|i| if i == 0 { &[1, 1][..] } else { &[][..] }).collect();
            let rank0_first: Vec<&[usize]> =
                (0..n).map(|i| if i == 0 { &[][..] } else { &[1][..] }).collect();
            for shapes in [rank2_first, rank0_first] {
                let inputs = e.inputs_of(&shapes);
                lanes_agree(e.f64, &inputs)?;
                let inputs32: Vec<_> = inputs.iter().map(|a| a.mapv(|v| v as f32)).collect();
                lanes_agree(e.f32, &inputs32)?;
                // And against finite differences, in the scalar lane.
                let report = gradcheck(e.f64, &inputs);
                if !report.passed() {
                    return Err(format!("gradcheck in the scalar lane at {shapes:?}\n{report}"));
                }
            }
            Ok(())
        },
    );
}

/// The entries whose step reads a value while it is recorded (a mask or a
/// shift computed from values), which [`crate::Plan::compile`] refuses
/// rather than freezing; every other entry must replay.
const NOT_REPLAYED: &[&str] = &[];

/// `f` at `inputs` (all parameters), reduced with the upstream gradient
/// `u` to a loss, compiled into a plan, run on `inputs`, then on `other`;
/// each run's loss and gradients must equal the eager ones bit for bit.
/// `Ok(false)` when the plan is refused for reading a value.
fn replays_bit_for_bit<T: Element>(
    f: for<'t> fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
    inputs: &[ArrayD<T>],
    other: &[ArrayD<T>],
) -> Result<bool, String> {
    use crate::{Arg, Plan, PlanError};
    let n = inputs.len();
    let out_shape = {
        let tape = Tape::<T>::new();
        let xs: Vec<_> = inputs.iter().map(|a| tape.var(a.clone())).collect();
        f(&xs).shape()
    };
    let u = random(&out_shape, Domain::Normal, 99).mapv(T::cast);
    let eager = |xs_in: &[ArrayD<T>]| {
        let tape = Tape::<T>::new();
        let xs: Vec<_> = xs_in.iter().map(|a| tape.var(a.clone())).collect();
        let loss = (f(&xs) * tape.constant(u.clone())).sum();
        let g = tape.backward_for(loss, &xs);
        let grads: Vec<Option<ArrayD<T>>> = xs.iter().map(|&x| g.get(x).map(|v| v.to_owned())).collect();
        (loss.item(), grads)
    };
    let mut args: Vec<Arg<T>> = inputs.iter().map(|a| Arg::param(a.clone())).collect();
    args.push(Arg::input(u.clone()));
    let mut plan = match Plan::compile(args, move |_, a| (f(&a[..n]) * a[n]).sum()) {
        Ok(p) => p,
        Err(PlanError::ReadsValue { .. }) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let bits = |v: T| v.as_f64().to_bits();
    for (round, xs) in [inputs, other, inputs].into_iter().enumerate() {
        for (k, x) in xs.iter().enumerate() {
            plan.set(k, x.clone()).map_err(|e| e.to_string())?;
        }
        let loss = plan.run().map_err(|e| format!("{}: run {round}: {e}", T::NAME))?;
        let (want, grads) = eager(xs);
        if bits(loss) != bits(want) {
            return Err(format!("{}: run {round}: loss {loss}, eager {want}", T::NAME));
        }
        for (k, g) in grads.iter().enumerate() {
            let same = match (plan.grad(k), g) {
                (Some(a), Some(b)) => {
                    a.shape() == b.shape() && a.iter().zip(b).all(|(x, y)| bits(*x) == bits(*y))
                }
                (None, None) => true,
                _ => false,
            };
            if !same {
                return Err(format!("{}: run {round}: gradient {k} differs from the eager one", T::NAME));
            }
        }
    }
    Ok(true)
}

/// Every entry replayed from a plan equals its eager run bit for bit, in
/// f64 and f32, on the inputs it was recorded with and on others; entries
/// with a scalar form also in the scalar lane.
#[test]
fn every_entry_replays_bit_for_bit() {
    let refused = std::sync::Mutex::new(Vec::new());
    check_each(all, |e| {
        let other_of = |shapes: &[&[usize]]| -> Vec<ArrayD<f64>> {
            let domain = |i: usize| e.domains[i.min(e.domains.len() - 1)];
            shapes.iter().enumerate().map(|(i, s)| random(s, domain(i), 1000 + i as u64)).collect()
        };
        let ones: Vec<&[usize]> = e.shapes.iter().map(|_| &[1, 1][..]).collect();
        let mut cases = vec![e.shapes.to_vec()];
        if e.has(SCALAR) {
            cases.push(ones);
        }
        for shapes in cases {
            let (a, b) = (e.inputs_of(&shapes), other_of(&shapes));
            let replayed = replays_bit_for_bit(e.f64, &a, &b)?;
            let to32 = |v: &[ArrayD<f64>]| v.iter().map(|x| x.mapv(|v| v as f32)).collect::<Vec<_>>();
            let replayed32 = replays_bit_for_bit(e.f32, &to32(&a), &to32(&b))?;
            if replayed != replayed32 {
                return Err("refused in one precision only".into());
            }
            if !replayed {
                refused.lock().unwrap().push(e.name);
                if !NOT_REPLAYED.contains(&e.name) {
                    return Err("refused by Plan::compile: it reads a value while recorded".into());
                }
            }
        }
        Ok(())
    });
    let refused = refused.into_inner().unwrap();
    for name in NOT_REPLAYED {
        assert!(
            refused.contains(name),
            "{name} is listed as not replayed, but it replays: remove it from the list"
        );
    }
}

/// The reverse-mode Jacobian of `f` at `x` (one backward pass per output
/// element), times `v`.
fn reverse_jv(f: Fn64, x: &[ArrayD<f64>], v: &[ArrayD<f64>]) -> ArrayD<f64> {
    let tape = Tape::<f64>::new();
    let xs: Vec<_> = x.iter().map(|a| tape.var(a.clone())).collect();
    let y = f(&xs);
    let shape = y.shape();
    let mut out = ArrayD::zeros(IxDyn(&shape));
    for k in 0..out.len() {
        let mut seed = ArrayD::zeros(IxDyn(&shape));
        seed.as_slice_mut().expect("standard layout")[k] = 1.0;
        let g = tape.backward_with(y, seed);
        let mut s = 0.0;
        for (xi, vi) in xs.iter().zip(v) {
            if let Some(gi) = g.get(*xi) {
                s += Zip::from(gi).and(vi).fold(0.0, |acc, &a, &b| acc + a * b);
            }
        }
        out.as_slice_mut().expect("standard layout")[k] = s;
    }
    out
}

/// Random tangents, one per input, of the inputs' shapes.
fn tangents(inputs: &[ArrayD<f64>]) -> Vec<ArrayD<f64>> {
    inputs.iter().enumerate().map(|(i, a)| random(a.shape(), Domain::Normal, 101 + i as u64)).collect()
}

#[test]
fn every_entry_jvp_matches_reverse_mode() {
    check_each(all, |e| {
        let x = e.inputs();
        let v = tangents(&x);
        let (_, dy) = jvp(e.f64, &x, &v);
        let want = reverse_jv(e.f64, &x, &v);
        // The same derivatives, summed in different orders: a few roundings
        // of values of order 1.
        close("jvp", &dy.to_owned(), &want, 1e-12, 1e-12)?;
        Ok(())
    });
}

#[test]
fn every_entry_and_its_square_pass_gradgradcheck() {
    check_each(
        |e| !e.has(FIRST_ORDER),
        |e| {
            let inputs = e.inputs();
            let r = gradgradcheck(e.f64, &inputs);
            if !r.passed() {
                return Err(format!("gradgradcheck failed\n{r}"));
            }
            // Squared, so that linear ops (whose Hessian is 0) and piecewise
            // linear ones have a second derivative to check: the rules
            // recorded by grad_graph are differentiated again.
            let f = e.f64;
            let r = gradgradcheck(
                move |x| {
                    let y = f(x);
                    y * y
                },
                &inputs,
            );
            if !r.passed() {
                return Err(format!("gradgradcheck of the square failed\n{r}"));
            }
            Ok(())
        },
    );
}

#[test]
fn linear_entries_are_linear_and_their_jvp_is_the_function_of_the_tangent() {
    check_each(
        |e| e.has(LINEAR),
        |e| {
            let x = e.inputs();
            let v = tangents(&x);
            let value = |a: &[ArrayD<f64>]| {
                let tape = Tape::<f64>::new();
                let xs: Vec<_> = a.iter().map(|a| tape.constant(a.clone())).collect();
                (e.f64)(&xs).value().to_owned()
            };
            let (_, dy) = jvp(e.f64, &x, &v);
            // A linear op's tangent is the op applied to the tangent (or,
            // for elementwise ones, the same sums and exact 0/1 masks):
            // equal up to the rounding of a mean's 1/n.
            let fv = value(&v);
            close("the jvp against f(v)", &dy.to_owned(), &fv, 1e-15, 1e-15)?;
            // f(x - 1.5 v) = f(x) - 1.5 f(v), up to a few roundings.
            let shifted: Vec<_> = x.iter().zip(&v).map(|(a, d)| a - &(d * 1.5)).collect();
            close(
                "f(x - 1.5 v) against f(x) - 1.5 f(v)",
                &value(&shifted),
                &(value(&x) - &(fv * 1.5)),
                1e-13,
                1e-13,
            )?;
            Ok(())
        },
    );
}

#[test]
fn every_entry_records_the_op_it_names() {
    check_each(
        |e| !e.has(COMPOSITE),
        |e| {
            let tape = Tape::<f64>::new();
            let xs: Vec<_> = e.inputs().into_iter().map(|a| tape.var(a)).collect();
            let _ = (e.f64)(&xs);
            let names: BTreeSet<&str> =
                tape.nodes.borrow().iter().filter(|n| !n.inputs.is_empty()).map(|n| n.name).collect();
            if names.contains(e.name) {
                Ok(())
            } else {
                Err(format!("records {names:?}, not {}", e.name))
            }
        },
    );
}

#[test]
fn registry_lines_are_distinct_and_well_formed() {
    let mut seen = BTreeSet::new();
    for e in registry() {
        assert!(seen.insert(e.label()), "{} is listed twice", e.label());
        assert!(!e.shapes.is_empty() && !e.domains.is_empty(), "{}: no inputs", e.label());
        assert!(e.domains.len() <= e.shapes.len(), "{}: more domains than inputs", e.label());
    }
}

/// What the source says about one op.
#[derive(Debug)]
struct OpSource {
    /// The impl has a `forward_scalar`.
    scalar: bool,
    /// The impl's forward mode is `jvp_linear`.
    linear: bool,
    file: String,
}

/// Every op the crate defines, read from its source: the name each `Op`
/// impl's `fn name` returns (for users' ops, [`USER`]). Test modules (`#[cfg(test)] mod ...`) are left
/// out, and so are this file and testutil.rs. A `name` written as a macro
/// parameter (`$name`) is read from the first string literal of each of
/// the macro's invocations in the same file; a `name` read in any other
/// way fails, so that a new way of naming ops is noticed, not skipped.
fn ops_in_source() -> BTreeMap<String, OpSource> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("the crate's source") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    let mut ops = BTreeMap::new();
    for path in files {
        let file = path.file_name().expect("a file name").to_string_lossy().to_string();
        if file == "registry.rs" || file == "testutil.rs" {
            continue;
        }
        let src = strip_test_modules(&std::fs::read_to_string(&path).expect("readable source"));
        for (name, scalar, linear) in op_impls(&src, &file).unwrap_or_else(|e| panic!("{e}")) {
            let again = ops.insert(name.clone(), OpSource { scalar, linear, file: file.clone() });
            assert!(again.is_none(), "op name {name} is defined twice");
        }
    }
    ops
}

/// The index just past the end of the literal, comment or lifetime that
/// starts at `i`, or `i + 1` for anything else.
fn skip_token(s: &[u8], i: usize) -> usize {
    let find = |from: usize, pat: &[u8]| {
        (from..s.len()).find(|&k| s[k..].starts_with(pat)).map_or(s.len(), |k| k + pat.len())
    };
    match (s[i], s.get(i + 1).copied()) {
        (b'/', Some(b'/')) => find(i, b"\n"),
        (b'/', Some(b'*')) => find(i + 2, b"*/"),
        (b'"', _) => {
            let mut k = i + 1;
            while k < s.len() && s[k] != b'"' {
                k += if s[k] == b'\\' { 2 } else { 1 };
            }
            k + 1
        }
        (b'\'', Some(b'\\')) => find(i + 2, b"'"),
        (b'\'', _) if s.get(i + 2) == Some(&b'\'') => i + 3,
        _ => i + 1,
    }
}

/// The index of the bracket that closes the one at `open`, skipping
/// literals and comments.
fn closing(s: &[u8], open: usize) -> usize {
    let (o, c) = match s[open] {
        b'{' => (b'{', b'}'),
        b'(' => (b'(', b')'),
        other => panic!("not an opening bracket: {}", other as char),
    };
    let (mut depth, mut i) = (0usize, open);
    while i < s.len() {
        if s[i] == o {
            depth += 1;
        } else if s[i] == c {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
        i = skip_token(s, i);
    }
    panic!("unbalanced brackets")
}

/// The string literals in `s`, in order.
fn literals(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        let next = skip_token(b, i);
        if b[i] == b'"' {
            out.push(s[i + 1..next - 1].to_string());
        }
        i = next;
    }
    out
}

/// Positions of `pat` in `s` outside literals and comments.
fn code_positions(s: &str, pat: &str) -> Vec<usize> {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < b.len() {
        if b[i..].starts_with(pat.as_bytes()) {
            out.push(i);
        }
        i = skip_token(b, i);
    }
    out
}

/// `src` without its `#[cfg(test)] mod name { ... }` blocks.
fn strip_test_modules(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::new();
    let mut from = 0;
    for at in code_positions(src, "#[cfg(test)]") {
        if at < from {
            continue;
        }
        let rest = src[at + "#[cfg(test)]".len()..].trim_start();
        if !rest.starts_with("mod ") {
            continue;
        }
        let start = src.len() - rest.len();
        let Some(brace) = (start..b.len()).find(|&k| b[k] == b'{' || b[k] == b';') else { continue };
        if b[brace] == b';' {
            continue;
        }
        out.push_str(&src[from..at]);
        from = closing(b, brace) + 1;
    }
    out.push_str(&src[from..]);
    out
}

/// The ops whose `impl ... Op<..> for ...` blocks are in `src`: each name,
/// whether it has a scalar form and whether it is linear in forward mode.
fn op_impls(src: &str, file: &str) -> Result<Vec<(String, bool, bool)>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    for at in code_positions(src, "impl") {
        let word = |k: usize| b.get(k).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if (at > 0 && word(at - 1)) || (word(at + 4) && b[at + 4] != b'<') {
            continue;
        }
        let Some(open) = (at..b.len()).find(|&k| b[k] == b'{' || b[k] == b';') else { continue };
        if b[open] == b';' {
            continue;
        }
        let header = &src[at..open];
        let Some((tr, _)) = header.rsplit_once(" for ") else { continue };
        let tr = tr.trim_end();
        let last = tr.rsplit([' ', '>']).find(|t| !t.is_empty()).unwrap_or("");
        let last = last.rsplit("::").next().unwrap_or(last);
        // The header's last token is split at '>', so `Op<T>` shows as `Op<T`.
        if !last.starts_with("Op<") {
            continue;
        }
        let body = &src[open..=closing(b, open)];
        let line = src[..at].lines().count() + 1;
        let fn_at = body
            .find("fn name(&self)")
            .ok_or_else(|| format!("{file}:{line}: an Op impl without fn name"))?;
        let fn_open = fn_at + body[fn_at..].find('{').expect("fn name has a body");
        let name_body = &body[fn_open..=closing(body.as_bytes(), fn_open)];
        let (scalar, linear) = (body.contains("fn forward_scalar"), body.contains("jvp_linear"));
        let names = literals(name_body);
        if name_body.contains("self.0.name()") && file == "custom.rs" {
            // The wrapper of users' ops: each names itself.
            out.push((USER.to_string(), scalar, linear));
        } else if !names.is_empty() {
            out.extend(names.into_iter().map(|n| (n, scalar, linear)));
        } else if name_body.contains('$') {
            // Inside a macro: its invocations in this file name the ops.
            let def = src[..at]
                .rfind("macro_rules!")
                .ok_or_else(|| format!("{file}:{line}: `$` outside a macro"))?;
            let mac: String = src[def + "macro_rules!".len()..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let calls = code_positions(src, &format!("{mac}!("));
            if calls.is_empty() {
                return Err(format!("{file}: macro {mac} defines ops but is never invoked"));
            }
            for call in calls {
                let paren = call + mac.len() + 1;
                let args = &src[paren..=closing(b, paren)];
                let name = literals(args).into_iter().next();
                out.push((
                    name.ok_or_else(|| format!("{file}: a call of {mac} without a name literal"))?,
                    scalar,
                    linear,
                ));
            }
        } else {
            return Err(format!("{file}:{line}: cannot read this Op impl's name from {name_body}"));
        }
    }
    Ok(out)
}

#[test]
fn the_source_scan_finds_ops_of_every_kind() {
    let ops = ops_in_source();
    // A literal name, names from a macro's invocations, names chosen by a
    // branch: each way an op is named today.
    for name in ["add", "exp", "softplus", "affine", "affine_relu", "where", "index_add"] {
        assert!(ops.contains_key(name), "{name} not found in {:?}", ops.keys());
    }
    assert!(ops["exp"].scalar && !ops["exp"].linear, "{:?}", ops["exp"]);
    assert!(ops["reshape"].linear && !ops["reshape"].scalar, "{:?}", ops["reshape"]);
    assert_eq!(ops["exp"].file, "unary.rs");
    // Test modules are left out: gradcheck.rs's planted ops are not ops.
    assert!(ops.keys().all(|n| !n.starts_with("planted")), "{:?}", ops.keys());
    assert!(ops.len() >= 35, "{} ops", ops.len());
}

/// What is wrong between the ops the source defines and the registry: ops
/// without a line, lines for no op, composites named as ops, and flags
/// that disagree with the source (SCALAR exactly for ops with a scalar
/// form; a LINEAR line for every op whose forward mode is `jvp_linear`, so
/// that the linearity `jvp_linear` assumes is checked).
fn registry_problems(ops: &BTreeMap<String, OpSource>, reg: &[Entry]) -> Vec<String> {
    let mut problems = Vec::new();
    let listed: BTreeSet<&str> = reg.iter().filter(|e| !e.has(COMPOSITE)).map(|e| e.name).collect();
    for name in ops.keys().filter(|n| !listed.contains(n.as_str())) {
        problems.push(format!("{name} (in {}) has no registry line: add one to registry.rs", ops[name].file));
    }
    for e in reg {
        match (ops.get(e.name), e.has(COMPOSITE)) {
            (None, false) => problems.push(format!("{}: the crate defines no op {}", e.label(), e.name)),
            (Some(_), true) => problems.push(format!("{}: {} is an op, not a composite", e.label(), e.name)),
            (Some(op), false) if op.scalar != e.has(SCALAR) => problems.push(format!(
                "{}: SCALAR is {} but the op's forward_scalar is {}",
                e.label(),
                e.has(SCALAR),
                op.scalar
            )),
            _ => {}
        }
    }
    for (name, op) in ops {
        if op.linear && !reg.iter().any(|e| e.name == name && e.has(LINEAR)) {
            problems.push(format!("{name} uses jvp_linear but has no LINEAR registry line"));
        }
    }
    problems
}

#[test]
fn the_registry_lists_every_op_the_crate_defines_and_no_other() {
    let ops = ops_in_source();
    let problems = registry_problems(&ops, &registry());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let reg = registry();
    let primitives: BTreeSet<&str> = reg.iter().filter(|e| !e.has(COMPOSITE)).map(|e| e.name).collect();
    eprintln!(
        "registry: {} ops, {} lines ({} composites), {} SCALAR, {} LINEAR",
        primitives.len(),
        reg.len(),
        reg.iter().filter(|e| e.has(COMPOSITE)).count(),
        reg.iter().filter(|e| e.has(SCALAR)).count(),
        reg.iter().filter(|e| e.has(LINEAR)).count()
    );
}

#[test]
fn a_forgotten_or_wrong_registry_line_is_reported() {
    let ops = ops_in_source();
    let problems = |keep: &dyn Fn(&Entry) -> bool, change: &dyn Fn(&mut Entry)| {
        let mut reg: Vec<Entry> = registry().into_iter().filter(|e| keep(e)).collect();
        reg.iter_mut().for_each(change);
        registry_problems(&ops, &reg).join("\n")
    };
    let same = |e: &mut Entry| {
        let _ = e;
    };
    // A new op without its line.
    let p = problems(&|e| e.name != "pad_axis", &same);
    assert!(p.contains("pad_axis (in index.rs) has no registry line"), "{p}");
    // A line for an op that does not exist (a typo, or a removed op).
    let p = problems(&|_| true, &|e| {
        if e.name == "tanh" {
            e.name = "tanh2";
        }
    });
    assert!(p.contains("the crate defines no op tanh2") && p.contains("tanh (in unary.rs) has no"), "{p}");
    // A composite named like an op.
    let p = problems(&|_| true, &|e| {
        if e.name == "exp" {
            e.flags |= COMPOSITE;
        }
    });
    assert!(p.contains("exp is an op, not a composite"), "{p}");
    // A scalar form left unflagged, and a flag for a form that is not there.
    let p = problems(&|_| true, &|e| e.flags ^= if matches!(e.name, "exp" | "sum") { SCALAR } else { 0 });
    assert!(p.contains("exp (e^x): SCALAR is false") && p.contains("sum (all axes): SCALAR is true"), "{p}");
    // A jvp_linear op without a LINEAR line.
    let p = problems(&|_| true, &|e| {
        if e.name == "reshape" {
            e.flags &= !LINEAR;
        }
    });
    assert!(p.contains("reshape uses jvp_linear but has no LINEAR registry line"), "{p}");
}

#[test]
fn the_source_scan_reads_literal_branch_and_macro_names_and_skips_test_modules() {
    let src = r#"
        macro_rules! unary {
            ($ty:ident, $name:literal) => {
                impl<T: Element> Op<T> for $ty {
                    fn name(&self) -> &'static str {
                        $name
                    }
                    fn forward_scalar(&self, x: &[T]) -> Option<T> { None }
                }
            };
        }
        unary!(A, "a_op");
        unary!(B, "b_op");
        impl<T: Element, const R: bool> crate::ops::Op<T> for C<R> {
            fn name(&self) -> &'static str {
                if R { "c_relu" } else { "c" } // "not a name" in a comment
            }
            fn jvp(&self) { super::jvp_linear(self, xs, dx) }
        }
        impl<T: Element, O: Op<T>> DynOp<T> for O {
            fn name(&self) -> &'static str { Op::name(self) }
        }
        #[cfg(test)]
        mod tests {
            impl<T: Element> Op<T> for Planted {
                fn name(&self) -> &'static str { "planted" }
            }
        }
    "#;
    let found = op_impls(&strip_test_modules(src), "synthetic.rs").expect("readable names");
    let want = [("a_op", true, false), ("b_op", true, false), ("c_relu", false, true), ("c", false, true)];
    let want: Vec<(String, bool, bool)> = want.iter().map(|&(n, s, l)| (n.to_string(), s, l)).collect();
    assert_eq!(found, want);
    // A name the scan cannot read fails loudly instead of being skipped.
    let opaque = "impl<T: Element> Op<T> for D { fn name(&self) -> &'static str { NAME } }";
    let err = op_impls(opaque, "opaque.rs").expect_err("an unreadable name");
    assert!(err.contains("opaque.rs:1: cannot read this Op impl's name"), "{err}");
}

#[test]
fn first_order_entries_refuse_second_derivatives_naming_the_op() {
    check_each(
        |e| e.has(FIRST_ORDER),
        |e| {
            let inputs = e.inputs();
            match catch_unwind(AssertUnwindSafe(|| gradgradcheck(e.f64, &inputs))) {
                Ok(_) => Err("gradgradcheck did not panic".into()),
                Err(p) => {
                    let msg = p.downcast_ref::<String>().cloned().unwrap_or_default();
                    if msg.contains(e.name) && msg.contains("cannot be differentiated again") {
                        Ok(())
                    } else {
                        Err(format!("panicked with {msg:?}"))
                    }
                }
            }
        },
    );
}
