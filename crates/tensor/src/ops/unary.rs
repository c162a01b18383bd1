//! Elementwise functions of one tensor. Each rule is written from the
//! output `y` where that is cheapest (exp, tanh, sigmoid, sqrt).

use super::{map, unary_grad, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use std::f64::consts::FRAC_2_SQRT_PI;

macro_rules! unary_op {
    ($ty:ident, $name:literal, |$a:ident| $fwd:expr, |$b:ident, $x:ident, $y:ident, $g:ident| $bwd:expr) => {
        pub(crate) struct $ty;
        impl<T: Element> Op<T> for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn forward(&self, x: &[&Value<T>]) -> Value<T> {
                map(x[0], |$a: T| $fwd)
            }
            #[inline]
            fn forward_scalar(&self, x: &[T]) -> Option<T> {
                let $a = x[0];
                Some($fwd)
            }
            fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
                super::jvp_elementwise(self, xs, y, dx)
            }
            fn backward<B: Backend<T>>(
                &self,
                $b: &B,
                xs: &[&B::V],
                $y: &B::V,
                $g: &B::V,
                need: &[bool],
            ) -> Grads<B::V> {
                let $x = xs[0];
                let _ = (&$x, &$y);
                unary_grad(need, || $bwd)
            }
        }
    };
}

unary_op!(Exp, "exp", |a| a.exp(), |b, x, y, g| b.mul(g, y));
unary_op!(Log, "log", |a| a.ln(), |b, x, y, g| b.div(g, x));
unary_op!(Sqrt, "sqrt", |a| a.sqrt(), |b, x, y, g| {
    // g / (2 y)
    b.fuse2(g, y, |g, y| g * T::cast(0.5) / y, |b| b.scale(&b.div(g, y), T::cast(0.5)))
});
unary_op!(Abs, "abs", |a| a.abs(), |b, x, y, g| {
    b.fuse2(g, x, |g, x| g * sign(x), |b| b.mul(g, &b.map_const(x, sign)))
});
unary_op!(Tanh, "tanh", |a| a.tanh(), |b, x, y, g| {
    // g (1 - y^2)
    b.fuse2(g, y, |g, y| g * (T::one() - y * y), |b| b.mul(g, &b.add_scalar(&b.neg(&b.mul(y, y)), T::one())))
});
unary_op!(Sigmoid, "sigmoid", |a| sigmoid(a), |b, x, y, g| {
    // g y (1 - y)
    b.fuse2(g, y, |g, y| g * y * (T::one() - y), |b| b.mul(g, &b.mul(y, &b.add_scalar(&b.neg(y), T::one()))))
});
// relu'(0) = 0, as the guide's relu_backward: the mask is x > 0, strictly.
unary_op!(Relu, "relu", |a| if a <= T::zero() { T::zero() } else { a }, |b, x, y, g| {
    b.fuse2(g, x, |g, x| if x > T::zero() { g } else { T::zero() }, |b| b.mul(g, &b.map_const(x, step)))
});
unary_op!(Softplus, "softplus", |a| softplus(a), |b, x, y, g| {
    b.fuse2(g, x, |g, x| g * sigmoid(x), |b| b.mul(g, &b.sigmoid(x)))
});

unary_op!(Sin, "sin", |a| a.sin(), |b, x, y, g| {
    b.fuse2(g, x, |g, x| g * x.cos(), |b| b.mul(g, &b.apply(Cos, &[x])))
});
unary_op!(Cos, "cos", |a| a.cos(), |b, x, y, g| {
    // -g sin x
    b.fuse2(g, x, |g, x| -(g * x.sin()), |b| b.neg(&b.mul(g, &b.apply(Sin, &[x]))))
});
unary_op!(Erf, "erf", |a| erf(a), |b, x, y, g| {
    // g (2 / sqrt(pi)) e^(-x^2)
    b.fuse2(
        g,
        x,
        |g, x| g * ((-(x * x)).exp() * T::cast(FRAC_2_SQRT_PI)),
        |b| b.mul(g, &b.scale(&b.apply(Exp, &[&b.neg(&b.mul(x, x))]), T::cast(FRAC_2_SQRT_PI))),
    )
});
unary_op!(Log1p, "log1p", |a| a.ln_1p(), |b, x, y, g| {
    b.fuse2(g, x, |g, x| g / (x + T::one()), |b| b.div(g, &b.add_scalar(x, T::one())))
});
unary_op!(Expm1, "expm1", |a| a.exp_m1(), |b, x, y, g| {
    // g e^x = g (y + 1)
    b.fuse2(g, y, |g, y| g * (y + T::one()), |b| b.mul(g, &b.add_scalar(y, T::one())))
});
unary_op!(Square, "square", |a| a * a, |b, x, y, g| {
    // g 2 x
    b.fuse2(g, x, |g, x| g * (x * T::cast(2.0)), |b| b.mul(g, &b.scale(x, T::cast(2.0))))
});
unary_op!(Recip, "recip", |a| T::one() / a, |b, x, y, g| {
    // -g y^2
    b.fuse2(g, y, |g, y| -(g * (y * y)), |b| b.neg(&b.mul(g, &b.mul(y, y))))
});

/// The error function, from `libm` (to the last bit or so of each type).
#[inline]
pub(crate) fn erf<T: Element>(a: T) -> T {
    if T::NAME == "f32" {
        T::cast(f64::from(libm::erff(a.as_f64() as f32)))
    } else {
        T::cast(libm::erf(a.as_f64()))
    }
}

/// The step function `x > 0`, as 1 or 0.
fn step<T: Element>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else {
        T::zero()
    }
}

/// `sign(v)` with `sign(0) = 0`.
fn sign<T: Element>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else if v < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// The logistic function, computed without overflow for either sign.
#[inline]
pub(crate) fn sigmoid<T: Element>(a: T) -> T {
    if a >= T::zero() {
        T::one() / (T::one() + (-a).exp())
    } else {
        let e = a.exp();
        e / (T::one() + e)
    }
}

/// `ln(1 + e^a)` without overflow: `max(a, 0) + ln(1 + e^-|a|)`.
#[inline]
pub(crate) fn softplus<T: Element>(a: T) -> T {
    a.max(T::zero()) + (-a.abs()).exp().ln_1p()
}

/// `a^p` for a scalar `p`; da = g p a^(p-1).
pub(crate) struct PowScalar<T>(pub(crate) T);
impl<T: Element> Op<T> for PowScalar<T> {
    fn name(&self) -> &'static str {
        "powf"
    }
    fn label(&self) -> String {
        format!("powf({})", self.0)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let p = self.0;
        if p == T::cast(2.0) {
            map(x[0], |a| a * a)
        } else {
            map(x[0], |a| a.powf(p))
        }
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        let (a, p) = (x[0], self.0);
        Some(if p == T::cast(2.0) { a * a } else { a.powf(p) })
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        let p = self.0;
        unary_grad(need, || {
            if p == T::one() {
                g.clone()
            } else {
                b.mul(g, &b.scale(&b.powf(x[0], p - T::one()), p))
            }
        })
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// `y = e^x`; `dy/dx = y`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.0, 1.0]));
    /// assert_eq!(tape.backward(x.exp().sum())[x].as_slice().unwrap(), &[1.0, 1f64.exp()]);
    /// ```
    #[track_caller]
    pub fn exp(self) -> Self {
        self.tape.record(Exp, &[&self])
    }

    /// Natural logarithm: `y = ln x`; `dy/dx = 1/x`. `ln 0 = -inf` and a
    /// negative `x` gives NaN, as in IEEE arithmetic.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[2.0]));
    /// assert_eq!(tape.backward(x.log().sum())[x][0], 0.5);
    /// ```
    #[track_caller]
    pub fn log(self) -> Self {
        self.tape.record(Log, &[&self])
    }

    /// `y = sqrt(x)`; `dy/dx = 1 / (2 y)`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[4.0]));
    /// assert_eq!(tape.backward(x.sqrt().sum())[x][0], 0.25);
    /// ```
    #[track_caller]
    pub fn sqrt(self) -> Self {
        self.tape.record(Sqrt, &[&self])
    }

    /// `y = |x|`; `dy/dx = sign(x)`, taken as 0 at `x = 0`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-2.0, 0.0, 3.0]));
    /// assert_eq!(tape.backward(x.abs().sum())[x].as_slice().unwrap(), &[-1.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn abs(self) -> Self {
        self.tape.record(Abs, &[&self])
    }

    /// Power with a scalar exponent: `y = x^p`; `dy/dx = p x^(p-1)`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[3.0]));
    /// assert_eq!(tape.backward(x.powf(2.0).sum())[x][0], 6.0);
    /// ```
    #[track_caller]
    pub fn powf(self, p: T) -> Self {
        self.tape.record(PowScalar(p), &[&self])
    }

    /// `y = tanh x`; `dy/dx = 1 - y^2`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.0]));
    /// assert_eq!(tape.backward(x.tanh().sum())[x][0], 1.0);
    /// ```
    #[track_caller]
    pub fn tanh(self) -> Self {
        self.tape.record(Tanh, &[&self])
    }

    /// The logistic function `y = 1 / (1 + e^-x)`, computed without
    /// overflow for large `|x|`; `dy/dx = y (1 - y)`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.0, -1000.0]));
    /// assert_eq!(x.sigmoid().value().as_slice().unwrap(), &[0.5, 0.0]);
    /// assert_eq!(tape.backward(x.sigmoid().sum())[x][0], 0.25);
    /// ```
    #[track_caller]
    pub fn sigmoid(self) -> Self {
        self.tape.record(Sigmoid, &[&self])
    }

    /// `y = max(x, 0)`; `dy/dx = 1` for `x > 0` and `0` for `x <= 0`: the
    /// derivative at 0 is taken as 0, as in the guide's `relu_backward`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-1.0, 0.0, 2.0]));
    /// assert_eq!(tape.backward(x.relu().sum())[x].as_slice().unwrap(), &[0.0, 0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn relu(self) -> Self {
        self.tape.record(Relu, &[&self])
    }

    /// `y = ln(1 + e^x)`, computed as `max(x, 0) + ln(1 + e^-|x|)` so it
    /// neither overflows nor loses small values; `dy/dx = sigmoid(x)`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1000.0, 0.0]));
    /// assert_eq!(x.softplus().value()[0], 1000.0);
    /// assert_eq!(tape.backward(x.softplus().sum())[x][1], 0.5);
    /// ```
    #[track_caller]
    pub fn softplus(self) -> Self {
        self.tape.record(Softplus, &[&self])
    }

    /// `y = sin x`; `dy/dx = cos x`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.0]));
    /// assert_eq!(x.sin().item(), 0.0);
    /// assert_eq!(tape.backward(x.sin().sum())[x][0], 1.0);
    /// ```
    #[track_caller]
    pub fn sin(self) -> Self {
        self.tape.record(Sin, &[&self])
    }

    /// `y = cos x`; `dy/dx = -sin x`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[std::f64::consts::FRAC_PI_2]));
    /// assert_eq!(tape.backward(x.cos().sum())[x][0], -1.0);
    /// ```
    #[track_caller]
    pub fn cos(self) -> Self {
        self.tape.record(Cos, &[&self])
    }

    /// The error function `y = erf x = (2 / sqrt(pi)) int_0^x e^(-t^2) dt`
    /// (from the `libm` crate, accurate to about one unit in the last place
    /// of each type); `dy/dx = (2 / sqrt(pi)) e^(-x^2)`. Exact GELU is
    /// `0.5 x (1 + erf(x / sqrt 2))`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.0, 10.0]));
    /// assert_eq!(x.erf().value().as_slice().unwrap(), &[0.0, 1.0]);
    /// let g = tape.backward(x.erf().sum());
    /// assert_eq!(g[x][0], std::f64::consts::FRAC_2_SQRT_PI);
    /// ```
    #[track_caller]
    pub fn erf(self) -> Self {
        self.tape.record(Erf, &[&self])
    }

    /// `y = ln(1 + x)`, accurate for small `x` (where `(1 + x).log()`
    /// loses the digits of `x`); `dy/dx = 1 / (1 + x)`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1e-20, 1.0]));
    /// assert_eq!(x.log1p().value()[0], 1e-20);
    /// assert_eq!(tape.backward(x.log1p().sum())[x][1], 0.5);
    /// ```
    #[track_caller]
    pub fn log1p(self) -> Self {
        self.tape.record(Log1p, &[&self])
    }

    /// `y = e^x - 1`, accurate for small `x`; `dy/dx = e^x = y + 1`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1e-20, 0.0]));
    /// assert_eq!(x.expm1().value()[0], 1e-20);
    /// assert_eq!(tape.backward(x.expm1().sum())[x][1], 1.0);
    /// ```
    #[track_caller]
    pub fn expm1(self) -> Self {
        self.tape.record(Expm1, &[&self])
    }

    /// `y = x^2`; `dy/dx = 2 x`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-3.0]));
    /// assert_eq!(x.square().item(), 9.0);
    /// assert_eq!(tape.backward(x.square().sum())[x][0], -6.0);
    /// ```
    #[track_caller]
    pub fn square(self) -> Self {
        self.tape.record(Square, &[&self])
    }

    /// The reciprocal `y = 1 / x` (`inf` at 0, as in IEEE arithmetic);
    /// `dy/dx = -1 / x^2 = -y^2`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[2.0]));
    /// assert_eq!(x.recip().item(), 0.5);
    /// assert_eq!(tape.backward(x.recip().sum())[x][0], -0.25);
    /// ```
    #[track_caller]
    pub fn recip(self) -> Self {
        self.tape.record(Recip, &[&self])
    }

    /// `y = ln sigmoid(x) = -softplus(-x)`, finite for any finite `x`;
    /// `dy/dx = sigmoid(-x) = 1 - sigmoid(x)`. A composite: no rule of its
    /// own.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-1000.0, 0.0]));
    /// let y = x.log_sigmoid();
    /// assert_eq!(y.value()[0], -1000.0);
    /// assert_eq!(tape.backward(y.sum())[x].as_slice().unwrap(), &[1.0, 0.5]);
    /// ```
    #[track_caller]
    pub fn log_sigmoid(self) -> Self {
        -(-self).softplus()
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use ndarray::arr1;

    #[test]
    fn relu_derivative_at_zero_is_zero() {
        let tape = Tape::<f64>::new();
        let x = tape.var(arr1(&[0.0]));
        assert_eq!(tape.backward(x.relu().sum())[x][0], 0.0);
    }

    #[test]
    fn sigmoid_softplus_log_sigmoid_are_finite_at_extremes() {
        let tape = Tape::<f32>::new();
        let x = tape.var(arr1(&[-1000.0f32, 1000.0]));
        for y in [x.sigmoid(), x.softplus(), x.log_sigmoid()] {
            assert!(y.value().iter().all(|v| v.is_finite()), "{y:?}");
            let g = tape.backward(y.sum());
            assert!(g[x].iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn nan_propagates() {
        let tape = Tape::<f64>::new();
        let x = tape.var(arr1(&[f64::NAN, 1.0]));
        let y = x.relu().tanh().exp();
        assert!(y.value()[0].is_nan());
        assert!(!y.value()[1].is_nan());
    }
}
