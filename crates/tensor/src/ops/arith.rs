//! Elementwise arithmetic: `+ - * /`, negation, scalar add and multiply, and
//! powers with a tensor exponent. Binary ops broadcast by numpy's rules; the
//! engine sums each gradient back to its input's shape.

use super::{map, unary_grad, zip, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use smallvec::smallvec;
use std::ops;

fn two<V>(need: &[bool], a: impl FnOnce() -> V, b: impl FnOnce() -> V) -> Grads<V> {
    smallvec![need[0].then(a), need[1].then(b)]
}

/// `a + b`; da = g, db = g.
pub(crate) struct Add;
impl<T: Element> Op<T> for Add {
    fn name(&self) -> &'static str {
        "add"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("add", x[0], x[1], |a, b| a + b)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] + x[1])
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, _: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        two(need, || g.clone(), || g.clone())
    }
}

/// `a - b`; da = g, db = -g.
pub(crate) struct Sub;
impl<T: Element> Op<T> for Sub {
    fn name(&self) -> &'static str {
        "sub"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("sub", x[0], x[1], |a, b| a - b)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] - x[1])
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        two(need, || g.clone(), || b.neg(g))
    }
}

/// `a * b`; da = g b, db = g a.
pub(crate) struct Mul;
impl<T: Element> Op<T> for Mul {
    fn name(&self) -> &'static str {
        "mul"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("mul", x[0], x[1], |a, b| a * b)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] * x[1])
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        two(need, || b.mul(g, x[1]), || b.mul(g, x[0]))
    }
}

/// `a / b`; da = g / b, db = -g a / b^2 = -g y / b.
pub(crate) struct Div;
impl<T: Element> Op<T> for Div {
    fn name(&self) -> &'static str {
        "div"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("div", x[0], x[1], |a, b| a / b)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] / x[1])
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        two(need, || b.div(g, x[1]), || b.neg(&b.div(&b.mul(g, y), x[1])))
    }
}

/// `-a`; da = -g.
pub(crate) struct Neg;
impl<T: Element> Op<T> for Neg {
    fn name(&self) -> &'static str {
        "neg"
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        map(x[0], |a| -a)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(-x[0])
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.neg(g))
    }
}

/// `a + c` for a scalar `c`; da = g.
pub(crate) struct AddScalar<T>(pub(crate) T);
impl<T: Element> Op<T> for AddScalar<T> {
    fn name(&self) -> &'static str {
        "add_scalar"
    }
    fn label(&self) -> String {
        format!("add_scalar({})", self.0)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let c = self.0;
        map(x[0], |a| a + c)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] + self.0)
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, _: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || g.clone())
    }
}

/// `a * c` for a scalar `c`; da = g c.
pub(crate) struct MulScalar<T>(pub(crate) T);
impl<T: Element> Op<T> for MulScalar<T> {
    fn name(&self) -> &'static str {
        "mul_scalar"
    }
    fn label(&self) -> String {
        format!("mul_scalar({})", self.0)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let c = self.0;
        map(x[0], |a| a * c)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0] * self.0)
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.scale(g, self.0))
    }
}

/// `a ^ e` with a tensor exponent; da = g e a^(e-1), de = g y ln(a).
pub(crate) struct Pow;
impl<T: Element> Op<T> for Pow {
    fn name(&self) -> &'static str {
        "pow"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("pow", x[0], x[1], |a, e| a.powf(e))
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(x[0].powf(x[1]))
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        two(
            need,
            || {
                let em1 = b.add_scalar(x[1], -T::one());
                b.mul(g, &b.mul(x[1], &b.apply(Pow, &[x[0], &em1])))
            },
            || b.mul(g, &b.mul(y, &b.apply(super::unary::Log, &[x[0]]))),
        )
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// Elementwise power with a tensor exponent, broadcast:
    /// `y = a^e`, `dy/da = e a^(e-1)`, `dy/de = a^e ln a` (so `a` must be
    /// positive where the exponent's gradient is wanted).
    ///
    /// # Panics
    /// When the shapes do not broadcast.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(arr1(&[2.0]));
    /// let e = tape.var(arr1(&[3.0]));
    /// let g = tape.backward(a.pow(e).sum());
    /// assert_eq!(g[a][0], 12.0);
    /// assert!((g[e][0] - 8.0 * 2f64.ln()).abs() < 1e-14);
    /// ```
    #[track_caller]
    pub fn pow(self, exponent: Tensor<'t, T>) -> Tensor<'t, T> {
        self.tape.record(Pow, &[&self, &exponent])
    }
}

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:ident, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Panics
        /// When the shapes do not broadcast by numpy's rules; the message
        /// names the op and both shapes.
        impl<'t, T: Element> ops::$trait<Tensor<'t, T>> for Tensor<'t, T> {
            type Output = Tensor<'t, T>;
            #[track_caller]
            fn $method(self, rhs: Tensor<'t, T>) -> Tensor<'t, T> {
                self.tape.record($op, &[&self, &rhs])
            }
        }
    };
}
binary_operator!(Add, add, Add, "`a + b`, broadcast; `da = g`, `db = g` (each summed to its input's shape).");
binary_operator!(Sub, sub, Sub, "`a - b`, broadcast; `da = g`, `db = -g`.");
binary_operator!(Mul, mul, Mul, "`a * b` elementwise, broadcast; `da = g b`, `db = g a`.");
binary_operator!(Div, div, Div, "`a / b` elementwise, broadcast; `da = g / b`, `db = -g a / b^2`.");

/// `-a`; `da = -g`.
impl<'t, T: Element> ops::Neg for Tensor<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn neg(self) -> Tensor<'t, T> {
        self.tape.record(Neg, &[&self])
    }
}

/// `a + c` for a scalar `c`; `da = g`.
impl<'t, T: Element> ops::Add<T> for Tensor<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn add(self, c: T) -> Tensor<'t, T> {
        self.tape.record(AddScalar(c), &[&self])
    }
}

/// `a - c` for a scalar `c`; `da = g`.
impl<'t, T: Element> ops::Sub<T> for Tensor<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn sub(self, c: T) -> Tensor<'t, T> {
        self.tape.record(AddScalar(-c), &[&self])
    }
}

/// `a * c` for a scalar `c`; `da = g c`.
impl<'t, T: Element> ops::Mul<T> for Tensor<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn mul(self, c: T) -> Tensor<'t, T> {
        self.tape.record(MulScalar(c), &[&self])
    }
}

/// `a / c` for a scalar `c`, computed as `a * (1/c)`; `da = g / c`.
impl<'t, T: Element> ops::Div<T> for Tensor<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn div(self, c: T) -> Tensor<'t, T> {
        self.tape.record(MulScalar(T::one() / c), &[&self])
    }
}

macro_rules! scalar_lhs {
    ($t:ty) => {
        /// `c + a`; `da = g`.
        impl<'t> ops::Add<Tensor<'t, $t>> for $t {
            type Output = Tensor<'t, $t>;
            #[track_caller]
            fn add(self, a: Tensor<'t, $t>) -> Tensor<'t, $t> {
                a + self
            }
        }
        /// `c - a`; `da = -g`.
        impl<'t> ops::Sub<Tensor<'t, $t>> for $t {
            type Output = Tensor<'t, $t>;
            #[track_caller]
            fn sub(self, a: Tensor<'t, $t>) -> Tensor<'t, $t> {
                -a + self
            }
        }
        /// `c * a`; `da = g c`.
        impl<'t> ops::Mul<Tensor<'t, $t>> for $t {
            type Output = Tensor<'t, $t>;
            #[track_caller]
            fn mul(self, a: Tensor<'t, $t>) -> Tensor<'t, $t> {
                a * self
            }
        }
        /// `c / a`, computed as `c * a^-1`; `da = -g c / a^2`.
        impl<'t> ops::Div<Tensor<'t, $t>> for $t {
            type Output = Tensor<'t, $t>;
            #[track_caller]
            fn div(self, a: Tensor<'t, $t>) -> Tensor<'t, $t> {
                a.powf(-1.0) * self
            }
        }
    };
}
scalar_lhs!(f32);
scalar_lhs!(f64);

#[cfg(test)]
mod tests {
    #[test]
    fn scalar_on_the_left() {
        let tape = crate::Tape::<f64>::new();
        let x = tape.var(ndarray::arr1(&[2.0, 4.0]));
        let y = 1.0 - x;
        let z = 8.0 / x;
        let w = 3.0 * x + 1.0;
        assert_eq!(y.value().as_slice().unwrap(), &[-1.0, -3.0]);
        assert_eq!(z.value().as_slice().unwrap(), &[4.0, 2.0]);
        assert_eq!(w.value().as_slice().unwrap(), &[7.0, 13.0]);
        let g = tape.backward((y + z + w).sum());
        // d/dx (1 - x + 8/x + 3x + 1) = 2 - 8/x^2
        assert_eq!(g[x].as_slice().unwrap(), &[0.0, 1.5]);
    }

    #[test]
    #[should_panic(expected = "add: shapes [3, 2] and [4, 2] cannot be broadcast together")]
    fn add_shape_mismatch_names_op_and_shapes() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 2)));
        let b = tape.var(ndarray::Array2::<f64>::zeros((4, 2)));
        let _ = a + b;
    }

    #[test]
    #[should_panic(expected = "mul: shapes [2] and [3] cannot be broadcast together")]
    fn mul_shape_mismatch_names_op_and_shapes() {
        let tape = crate::Tape::<f32>::new();
        let a = tape.var(ndarray::Array1::<f32>::zeros(2));
        let b = tape.var(ndarray::Array1::<f32>::zeros(3));
        let _ = a * b;
    }
}
