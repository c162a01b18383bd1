//! Beyond first-order reverse mode: forward mode (JVP), Hessian-vector
//! products, Hessians, derivatives of any order of elementwise functions,
//! and a finite-difference check of second derivatives.

use crate::gradcheck::{GradcheckOptions, GradcheckReport, InputCheck};
use crate::{Element, IntoValue, Tape, Tensor, Value};
use ndarray::{Array2, ArrayD, IxDyn, Zip};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Forward mode: the value `f(x)` and the Jacobian-vector product
/// `J_f(x) v`, computed in one forward sweep that carries a tangent
/// through each op (no reverse pass).
///
/// # Panics
/// When the numbers of primals and tangents differ, or a tangent's shape
/// differs from its primal's.
///
/// ```
/// use tapegrad_tensor::{jvp, ndarray::arr1};
/// // f(x) = x^2 sin-free: d/dt f(x + t v) = 2 x v
/// let (y, dy) = jvp(|x| x[0] * x[0], &[arr1(&[3.0]).into_dyn()], &[arr1(&[0.5]).into_dyn()]);
/// assert_eq!((y[0], dy[0]), (9.0, 3.0));
/// ```
#[track_caller]
pub fn jvp<T: Element, F>(f: F, primals: &[ArrayD<T>], tangents: &[ArrayD<T>]) -> (Value<T>, Value<T>)
where
    F: for<'t> Fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
{
    if primals.len() != tangents.len() {
        panic!("jvp: {} primals and {} tangents", primals.len(), tangents.len());
    }
    for (p, t) in primals.iter().zip(tangents) {
        if p.shape() != t.shape() {
            panic!("jvp: tangent of shape {:?} for a primal of shape {:?}", t.shape(), p.shape());
        }
    }
    let tape = Tape::<T>::new();
    tape.set_forward_mode(true);
    let xs: Vec<Tensor<'_, T>> = primals
        .iter()
        .zip(tangents)
        .map(|(p, t)| {
            tape.push_leaf_with_tangent(p.clone().into_value(), false, "var", Some(t.clone().into_value()))
        })
        .collect();
    let y = f(&xs);
    let dy = tape.tangents.borrow()[y.id as usize].clone();
    let value = y.value();
    let dy = dy.unwrap_or_else(|| Value::zeros(value.raw_dim()));
    (value, dy)
}

/// The Hessian-vector product `H v` of a scalar function `f` at `x`, by
/// differentiating the recorded gradient: `H v = grad_x <grad_x f, v>`.
/// With several inputs, `v` has one part per input and so does the result.
///
/// # Panics
/// When `f` does not return one element, or the shapes of `v` differ from
/// those of `x`.
///
/// ```
/// use tapegrad_tensor::{hvp, ndarray::arr1};
/// // f = x0^2 x1: H = [[2 x1, 2 x0], [2 x0, 0]]
/// let x = [arr1(&[3.0]).into_dyn(), arr1(&[2.0]).into_dyn()];
/// let v = [arr1(&[1.0]).into_dyn(), arr1(&[0.0]).into_dyn()];
/// let hv = hvp(|x| (x[0] * x[0] * x[1]).sum(), &x, &v);
/// assert_eq!((hv[0][0], hv[1][0]), (4.0, 6.0));
/// ```
#[track_caller]
pub fn hvp<T: Element, F>(f: F, x: &[ArrayD<T>], v: &[ArrayD<T>]) -> Vec<Value<T>>
where
    F: for<'t> Fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
{
    if x.len() != v.len() || x.iter().zip(v).any(|(a, b)| a.shape() != b.shape()) {
        panic!("hvp: the vector's parts must have the inputs' shapes");
    }
    let tape = Tape::<T>::new();
    let xs: Vec<Tensor<'_, T>> = x.iter().map(|a| tape.var(a.clone())).collect();
    let y = f(&xs);
    let g = tape.grad_graph(y);
    let mut dot: Option<Tensor<'_, T>> = None;
    for (xi, vi) in xs.iter().zip(v) {
        if let Some(gi) = g.get(*xi) {
            let term = (gi * tape.constant(vi.clone())).sum();
            dot = Some(match dot {
                None => term,
                Some(d) => d + term,
            });
        }
    }
    let zeros = |a: &ArrayD<T>| Value::zeros(a.raw_dim());
    let Some(dot) = dot else { return x.iter().map(zeros).collect() };
    if !dot.requires_grad() {
        return x.iter().map(zeros).collect();
    }
    let hv = tape.backward(dot);
    xs.iter().zip(x).map(|(xi, a)| hv.get(*xi).cloned().unwrap_or_else(|| zeros(a))).collect()
}

/// The full Hessian of a scalar function of one (small) input, as an
/// `(n, n)` matrix over the input's elements in row-major order: one
/// Hessian-vector product per element.
///
/// # Panics
/// When `f` does not return one element.
///
/// ```
/// use tapegrad_tensor::{hessian, ndarray::arr1};
/// let h = hessian(|x| (x[0] * x[0] * x[0]).sum(), &arr1(&[1.0, 2.0]).into_dyn());
/// assert_eq!(h, tapegrad_tensor::ndarray::arr2(&[[6.0, 0.0], [0.0, 12.0]]));
/// ```
#[track_caller]
pub fn hessian<T: Element, F>(f: F, x: &ArrayD<T>) -> Array2<T>
where
    F: for<'t> Fn(&[Tensor<'t, T>]) -> Tensor<'t, T>,
{
    let x = x.as_standard_layout().into_owned();
    let n = x.len();
    let mut h = Array2::zeros((n, n));
    for i in 0..n {
        let mut e = ArrayD::zeros(x.raw_dim());
        e.as_slice_mut().expect("standard layout")[i] = T::one();
        let col = hvp(&f, std::slice::from_ref(&x), &[e]).remove(0);
        for (j, v) in col.iter().enumerate() {
            h[[j, i]] = *v;
        }
    }
    h
}

/// The derivatives `f, f', f'', ..., f^(order)` of an elementwise function
/// at each element of `x`, each by differentiating the previous one's
/// recorded graph again. (For an elementwise `f`, the gradient of
/// `sum f(x)` is `f'(x)` elementwise.)
///
/// ```
/// use tapegrad_tensor::{derivatives, ndarray::arr1};
/// let d = derivatives(|x| x * x * x, &arr1(&[2.0]).into_dyn(), 3);
/// let at = |k: usize| d[k][0];
/// assert_eq!((at(0), at(1), at(2), at(3)), (8.0, 12.0, 12.0, 6.0));
/// ```
pub fn derivatives<T: Element, F>(f: F, x: &ArrayD<T>, order: usize) -> Vec<Value<T>>
where
    F: for<'t> Fn(Tensor<'t, T>) -> Tensor<'t, T>,
{
    let tape = Tape::<T>::new();
    let xt = tape.var(x.clone());
    let mut cur = f(xt);
    let mut out = vec![cur.value()];
    for _ in 0..order {
        let next = if cur.requires_grad() { tape.grad_graph(cur.sum()).get(xt) } else { None };
        match next {
            Some(d) => {
                out.push(d.value());
                cur = d;
            }
            None => {
                // Constant from here on: every further derivative is zero.
                out.push(Value::zeros(x.raw_dim()));
                cur = tape.constant(Value::zeros(x.raw_dim()));
            }
        }
    }
    out
}

/// Checks second derivatives against finite differences of gradients, in
/// f64. For `s(x) = sum(f(x) * u)` with a random upstream `u`, and a random
/// direction `v`, it compares the Hessian-vector product from grad of grad
/// with `(grad s(x + eps v) - grad s(x - eps v)) / 2 eps`, per input.
///
/// The differences are of the reverse-mode gradients, so this checks the
/// derivatives of the backward rules (as [`Tape::grad_graph`] records
/// them) against the rules themselves, not the rules against `f`: a wrong
/// first derivative that is differentiated consistently passes here and
/// fails [`gradcheck`](crate::gradcheck). Run both.
///
/// ```
/// use tapegrad_tensor::{gradgradcheck, ndarray::arr1};
/// let r = gradgradcheck(|x| x[0].tanh() * x[1], &[arr1(&[0.3, -0.7]).into_dyn(), arr1(&[1.5, 0.2]).into_dyn()]);
/// assert!(r.passed(), "{r}");
/// ```
pub fn gradgradcheck<F>(f: F, inputs: &[ArrayD<f64>]) -> GradcheckReport
where
    F: for<'t> Fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
{
    // Differences of gradients lose one more order than differences of
    // values: eps 1e-5 balances truncation (~eps^2) and rounding (~1e-16/eps).
    let opts = GradcheckOptions { eps: 1e-5, atol: 1e-6, rtol: 1e-5, seed: 1 };
    let inputs: Vec<ArrayD<f64>> = inputs.iter().map(|a| a.as_standard_layout().into_owned()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut normal = |shape: &[usize]| -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || StandardNormal.sample(&mut rng))
    };
    let y_shape = {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = inputs.iter().map(|a| tape.constant(a.clone())).collect();
        f(&xs).shape()
    };
    let u = normal(&y_shape);
    let v: Vec<ArrayD<f64>> = inputs.iter().map(|a| normal(a.shape())).collect();
    let s = as_fn(|x| {
        let y = f(x);
        (y * x[0].tape().constant(u.clone())).sum()
    });
    let analytic = hvp_dyn(&s, &inputs, &v);
    let grad_at = |x: &[ArrayD<f64>]| -> Vec<ArrayD<f64>> {
        let tape = Tape::<f64>::new();
        let xs: Vec<_> = x.iter().map(|a| tape.var(a.clone())).collect();
        let g = tape.backward(s(&xs));
        xs.iter()
            .zip(x)
            .map(|(t, a)| g.get(*t).map(|g| g.to_owned()).unwrap_or_else(|| ArrayD::zeros(a.raw_dim())))
            .collect()
    };
    let shifted = |sign: f64| -> Vec<ArrayD<f64>> {
        inputs.iter().zip(&v).map(|(x, d)| x + &(d * (sign * opts.eps))).collect()
    };
    let (gp, gm) = (grad_at(&shifted(1.0)), grad_at(&shifted(-1.0)));
    let checks = (0..inputs.len())
        .map(|i| {
            let mut c = InputCheck::new();
            Zip::from(&analytic[i]).and(&gp[i]).and(&gm[i]).for_each(|&a, &p, &m| {
                c.add(a, (p - m) / (2.0 * opts.eps), opts.atol, opts.rtol);
            });
            c
        })
        .collect();
    GradcheckReport { inputs: checks }
}

/// Gives a closure the higher-ranked signature the tape functions need.
fn as_fn<F>(f: F) -> F
where
    F: for<'t> Fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
{
    f
}

/// [`hvp`] for a closure borrowed by reference.
fn hvp_dyn<F>(f: &F, x: &[ArrayD<f64>], v: &[ArrayD<f64>]) -> Vec<ArrayD<f64>>
where
    F: for<'t> Fn(&[Tensor<'t, f64>]) -> Tensor<'t, f64>,
{
    hvp(f, x, v).into_iter().map(|a| a.to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use crate::testutil::planted::{mean_square, Plant};
    use ndarray::arr2;

    /// Three of the six elements exceed 0.5, where [`Plant::Nan`]'s scale
    /// (of `2 x`) gives NaN.
    fn x() -> ArrayD<f64> {
        arr2(&[[0.3, -1.2, 1.5], [2.0, 0.7, -0.4]]).into_dyn()
    }

    #[test]
    fn gradgradcheck_passes_the_right_second_derivative() {
        let r = gradgradcheck(|x| mean_square(x[0], Plant::Right), &[x()]);
        assert!(r.passed(), "{r}");
        assert!(r.inputs[0].max_rel_err < 1e-8, "{r}");
    }

    #[test]
    fn gradgradcheck_fails_a_second_derivative_twice_too_large() {
        let r = gradgradcheck(|x| mean_square(x[0], Plant::Twice), &[x()]);
        assert!(!r.passed(), "{r}");
        // |2 h - h| / |2 h| = 1/2; the difference of gradients of a
        // quadratic is exact up to rounding (~1e-11 with eps 1e-5).
        approx::assert_abs_diff_eq!(r.inputs[0].max_rel_err, 0.5, epsilon = 1e-6);
    }

    #[test]
    fn gradgradcheck_fails_a_second_derivative_without_its_1_over_m() {
        let r = gradgradcheck(|x| mean_square(x[0], Plant::Unscaled), &[x()]);
        assert!(!r.passed(), "{r}");
        // 2 instead of 2/m with m = 6: relative error 1 - 1/6.
        approx::assert_abs_diff_eq!(r.inputs[0].max_rel_err, 5.0 / 6.0, epsilon = 1e-6);
    }

    #[test]
    fn gradgradcheck_fails_a_nan_second_derivative_and_reports_the_nan() {
        let r = gradgradcheck(|x| mean_square(x[0], Plant::Nan), &[x()]);
        assert!(!r.passed(), "{r}");
        assert!(r.inputs[0].max_abs_err.is_nan() && r.inputs[0].max_rel_err.is_nan(), "{r}");
        assert!(r.to_string().contains("NaN          NaN  FAIL"), "{r}");
    }

    #[test]
    fn a_wrong_second_derivative_passes_gradcheck_and_fails_gradgradcheck() {
        for plant in [Plant::Twice, Plant::Unscaled, Plant::Nan] {
            // The first derivative is right whatever the plant.
            let first = gradcheck(|x| mean_square(x[0], plant), &[x()]);
            assert!(first.passed(), "{plant:?}: {first}");
            let second = gradgradcheck(|x| mean_square(x[0], plant), &[x()]);
            assert!(!second.passed(), "{plant:?}: {second}");
        }
    }
}
