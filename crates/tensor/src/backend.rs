//! Where backward rules run: on plain arrays ([`ArrayBackend`], an ordinary
//! backward pass) or as recorded tensor ops ([`TensorBackend`], a gradient
//! that can be differentiated again).

use crate::ops::arith::{Add, AddScalar, Div, Mul, MulScalar, Neg, Sub};
use crate::ops::linalg::{MatMul, Transpose};
use crate::ops::reduce::{BroadcastTo, Reshape, SumTo};
use crate::ops::unary::{PowScalar, Sigmoid};
use crate::ops::{map, zip, Op};
use crate::shape::Shape;
use crate::{Element, Tape, Tensor, Value};

/// The operations a backward rule may use. `apply` runs any op; the rest are
/// shorthands over it, so a rule reads like its formula.
pub(crate) trait Backend<T: Element> {
    /// A value on this backend: an array, or a tensor on the tape.
    type V: Clone;

    /// Runs `op` on `xs`.
    fn apply<O: Op<T>>(&self, op: O, xs: &[&Self::V]) -> Self::V;
    /// A value through which no gradient flows (a mask, a sign).
    fn constant(&self, a: Value<T>) -> Self::V;
    /// The array behind `v`, shared, not copied.
    fn value(&self, v: &Self::V) -> Value<T>;
    /// The shape of `v`.
    fn shape(&self, v: &Self::V) -> Shape;
    /// Whether `v` has the shape `shape`.
    fn has_shape(&self, v: &Self::V, shape: &[usize]) -> bool {
        self.shape(v).as_slice() == shape
    }
    /// Adds `g` into an accumulated gradient.
    fn accumulate(&self, acc: &mut Self::V, g: Self::V) {
        *acc = self.add(acc, &g);
    }

    fn add(&self, a: &Self::V, b: &Self::V) -> Self::V {
        self.apply(Add, &[a, b])
    }
    fn sub(&self, a: &Self::V, b: &Self::V) -> Self::V {
        self.apply(Sub, &[a, b])
    }
    fn mul(&self, a: &Self::V, b: &Self::V) -> Self::V {
        self.apply(Mul, &[a, b])
    }
    fn div(&self, a: &Self::V, b: &Self::V) -> Self::V {
        self.apply(Div, &[a, b])
    }
    fn neg(&self, a: &Self::V) -> Self::V {
        self.apply(Neg, &[a])
    }
    fn scale(&self, a: &Self::V, c: T) -> Self::V {
        self.apply(MulScalar(c), &[a])
    }
    fn add_scalar(&self, a: &Self::V, c: T) -> Self::V {
        self.apply(AddScalar(c), &[a])
    }
    fn powf(&self, a: &Self::V, p: T) -> Self::V {
        self.apply(PowScalar(p), &[a])
    }
    fn sigmoid(&self, a: &Self::V) -> Self::V {
        self.apply(Sigmoid, &[a])
    }
    fn matmul(&self, a: &Self::V, b: &Self::V) -> Self::V {
        self.apply(MatMul, &[a, b])
    }
    fn t(&self, a: &Self::V) -> Self::V {
        self.apply(Transpose, &[a])
    }
    fn reshape(&self, a: &Self::V, shape: &[usize]) -> Self::V {
        self.apply(Reshape(Shape::from_slice(shape)), &[a])
    }
    fn broadcast_to(&self, a: &Self::V, shape: &[usize]) -> Self::V {
        self.apply(BroadcastTo(Shape::from_slice(shape)), &[a])
    }
    fn sum_to(&self, a: &Self::V, shape: &[usize]) -> Self::V {
        self.apply(SumTo(Shape::from_slice(shape)), &[a])
    }
    /// An elementwise expression of two values: computed in one pass by
    /// `f` on arrays, or recorded as the differentiable ops of `composed`
    /// on the tape. Both must compute the same function.
    fn fuse2(
        &self,
        a: &Self::V,
        b: &Self::V,
        f: impl Fn(T, T) -> T + Sync,
        composed: impl FnOnce(&Self) -> Self::V,
    ) -> Self::V;
    /// A constant computed elementwise from the value of `x`.
    fn map_const(&self, x: &Self::V, f: impl Fn(T) -> T + Sync) -> Self::V {
        self.constant(map(&self.value(x), f))
    }
    /// A constant computed elementwise from the values of `a` and `b`.
    fn zip_const(&self, a: &Self::V, b: &Self::V, f: impl Fn(T, T) -> T + Sync) -> Self::V {
        self.constant(zip("zip_const", &self.value(a), &self.value(b), f))
    }
}

/// Runs backward rules on arrays: the ordinary backward pass.
pub(crate) struct ArrayBackend;

impl<T: Element> Backend<T> for ArrayBackend {
    type V = Value<T>;

    #[inline]
    fn apply<O: Op<T>>(&self, op: O, xs: &[&Value<T>]) -> Value<T> {
        op.forward(xs)
    }
    #[inline]
    fn constant(&self, a: Value<T>) -> Value<T> {
        a
    }
    #[inline]
    fn value(&self, v: &Value<T>) -> Value<T> {
        v.clone()
    }
    #[inline]
    fn shape(&self, v: &Value<T>) -> Shape {
        Shape::from_slice(v.shape())
    }
    #[inline]
    fn fuse2(
        &self,
        a: &Value<T>,
        b: &Value<T>,
        f: impl Fn(T, T) -> T + Sync,
        _: impl FnOnce(&Self) -> Value<T>,
    ) -> Value<T> {
        zip("fuse2", a, b, f)
    }
    #[inline]
    fn has_shape(&self, v: &Value<T>, shape: &[usize]) -> bool {
        crate::shape::same(v.shape(), shape)
    }
    #[inline]
    fn accumulate(&self, acc: &mut Value<T>, g: Value<T>) {
        if crate::shape::same(acc.shape(), g.shape()) {
            if let (Some(a), Some(b)) = (acc.as_slice_mut(), g.as_slice()) {
                // Copy-on-write as below; contiguous, so a plain loop.
                for (a, &b) in a.iter_mut().zip(b) {
                    *a = *a + b;
                }
                crate::pool::recycle(g);
                return;
            }
            // Copy-on-write: in place unless the buffer is shared.
            acc.zip_mut_with(&g, |a, &b| *a = *a + b);
        } else {
            *acc = zip("accumulate", acc, &g, |a, b| a + b);
        }
    }
}

/// Runs backward rules as tensor ops recorded on the tape, so the gradient
/// is itself differentiable (grad of grad).
pub(crate) struct TensorBackend<'t, T: Element> {
    pub(crate) tape: &'t Tape<T>,
}

impl<'t, T: Element> Backend<T> for TensorBackend<'t, T> {
    type V = Tensor<'t, T>;

    #[track_caller]
    fn apply<O: Op<T>>(&self, op: O, xs: &[&Tensor<'t, T>]) -> Tensor<'t, T> {
        self.tape.record(op, xs)
    }
    fn constant(&self, a: Value<T>) -> Tensor<'t, T> {
        self.tape.constant(a)
    }
    fn value(&self, v: &Tensor<'t, T>) -> Value<T> {
        v.value()
    }
    fn shape(&self, v: &Tensor<'t, T>) -> Shape {
        v.shape_small()
    }
    fn fuse2(
        &self,
        _: &Tensor<'t, T>,
        _: &Tensor<'t, T>,
        _: impl Fn(T, T) -> T + Sync,
        composed: impl FnOnce(&Self) -> Tensor<'t, T>,
    ) -> Tensor<'t, T> {
        composed(self)
    }
}
