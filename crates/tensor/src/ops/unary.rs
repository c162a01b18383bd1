//! Elementwise functions of one tensor. Each rule is written from the
//! output `y` where that is cheapest (exp, tanh, sigmoid, sqrt).

use super::{map, unary_grad, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};

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
