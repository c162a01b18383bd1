//! Where backward rules run: on plain arrays ([`ArrayBackend`], an ordinary
//! backward pass) or as recorded tensor ops ([`TensorBackend`], a gradient
//! that can be differentiated again).

use super::arith::{Add, AddScalar, Div, Mul, MulScalar, Neg, Sub};
use super::custom::{checked, UserRule};
use super::linalg::{MatMul, Transpose};
use super::reduce::{BroadcastTo, Reshape, SumTo};
use super::unary::{PowScalar, Sigmoid};
use super::{map, zip, Grads, Op};
use crate::repr::{One, Repr};
use crate::{Element, Tape, Tensor, Value};
use smallvec::SmallVec;
use tapegrad_kernels::Shape;

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
    /// `(A B) * [gate > 0]`, the gate applied as the product is stored on
    /// arrays (see [`crate::ops::Fusion`]).
    fn matmul_gated(&self, a: &Self::V, b: &Self::V, gate: &Self::V) -> Self::V {
        let p = self.matmul(a, b);
        let mask = self.map_const(gate, |v| if v > T::zero() { T::one() } else { T::zero() });
        self.mul(&p, &mask)
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
    /// [`fuse2`](Backend::fuse2), and with it, when `bias` is the shape
    /// (n, 1) of a bias, the result summed to that shape (the row sums: the
    /// guide's db). Arrays do both in one pass over (n, m) values, with the
    /// same sums, bit for bit, as `sum_to` on the result; elsewhere the two
    /// are composed.
    fn fuse2_row_sums(
        &self,
        a: &Self::V,
        b: &Self::V,
        f: impl Fn(T, T) -> T + Sync,
        composed: impl FnOnce(&Self) -> Self::V,
        bias: Option<&[usize]>,
    ) -> (Self::V, Option<Self::V>) {
        fuse2_then_sum(self, a, b, f, composed, bias)
    }
    /// Gives back a temporary the rule no longer needs, so its buffer is
    /// reused (on arrays, through the pool when nothing else holds it).
    fn release(&self, v: Self::V) {
        drop(v);
    }
    /// Runs a user's rule (see [`super::custom`]) on this backend, checking
    /// the shapes it returns.
    fn user_rule(
        &self,
        rule: &dyn UserRule<T>,
        xs: &[&Self::V],
        y: &Self::V,
        g: &Self::V,
        need: &[bool],
    ) -> Grads<Self::V>;
    /// A constant computed elementwise from the value of `x`.
    fn map_const(&self, x: &Self::V, f: impl Fn(T) -> T + Sync) -> Self::V {
        self.constant(map(&self.value(x), f))
    }
    /// A constant computed elementwise from the values of `a` and `b`.
    fn zip_const(&self, a: &Self::V, b: &Self::V, f: impl Fn(T, T) -> T + Sync) -> Self::V {
        self.constant(zip("zip_const", &self.value(a), &self.value(b), f))
    }
}

/// [`Backend::fuse2_row_sums`] as two steps: `fuse2`, then `sum_to` the bias
/// shape (the default, and the array backend's way for other shapes).
fn fuse2_then_sum<T: Element, B: Backend<T> + ?Sized>(
    b: &B,
    x: &B::V,
    y: &B::V,
    f: impl Fn(T, T) -> T + Sync,
    composed: impl FnOnce(&B) -> B::V,
    bias: Option<&[usize]>,
) -> (B::V, Option<B::V>) {
    let r = b.fuse2(x, y, f, composed);
    let s = bias.map(|shape| b.sum_to(&r, shape));
    (r, s)
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
    fn fuse2_row_sums(
        &self,
        a: &Value<T>,
        b: &Value<T>,
        f: impl Fn(T, T) -> T + Sync,
        composed: impl FnOnce(&Self) -> Value<T>,
        bias: Option<&[usize]>,
    ) -> (Value<T>, Option<Value<T>>) {
        if let (Some(&[n, 1]), &[n2, m], Some(sa), Some(sb)) = (bias, a.shape(), a.as_slice(), b.as_slice())
            && n == n2
            && m > 1
            && a.shape() == b.shape()
        {
            let (r, s) = tapegrad_kernels::reduce::zip_row_sums(sa, sb, n, m, f);
            return (r, Some(s));
        }
        fuse2_then_sum(self, a, b, f, composed, bias)
    }
    fn release(&self, v: Value<T>) {
        tapegrad_kernels::pool::recycle(v);
    }
    fn matmul_gated(&self, a: &Value<T>, b: &Value<T>, gate: &Value<T>) -> Value<T> {
        super::linalg::matmul_gated(a, b, gate)
    }
    fn user_rule(
        &self,
        rule: &dyn UserRule<T>,
        xs: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
    ) -> Grads<Value<T>> {
        checked(rule.name(), rule.on_arrays(xs, y, g), |d| Shape::from_slice(d.shape()), xs, y, need)
    }
}

/// Runs backward rules on numbers: the scalar lane, for an elementwise op
/// whose inputs and output each have one element. Ops with a
/// [`forward_scalar`](Op::forward_scalar) run on the numbers; any other op a
/// rule uses runs on one-element arrays built for it.
pub(crate) struct ScalarBackend;

impl<T: Element> Backend<T> for ScalarBackend {
    type V = One<T>;

    #[inline]
    fn apply<O: Op<T>>(&self, op: O, xs: &[&One<T>]) -> One<T> {
        if let Some(y) = super::run_scalar(&op, xs.iter().map(|x| Some(**x))) {
            return y;
        }
        let arrays: SmallVec<[Value<T>; 4]> = xs.iter().map(|x| x.to_value()).collect();
        let refs: SmallVec<[&Value<T>; 4]> = arrays.iter().collect();
        self.constant(op.forward(&refs))
    }
    #[track_caller]
    fn constant(&self, a: Value<T>) -> One<T> {
        match Repr::new(a).as_one() {
            Some(one) => one,
            None => panic!("scalar lane: a rule made a value of more than one element"),
        }
    }
    fn value(&self, v: &One<T>) -> Value<T> {
        v.to_value()
    }
    fn shape(&self, v: &One<T>) -> Shape {
        Shape::from_slice(v.shape())
    }
    #[inline]
    fn fuse2(
        &self,
        a: &One<T>,
        b: &One<T>,
        f: impl Fn(T, T) -> T + Sync,
        _: impl FnOnce(&Self) -> One<T>,
    ) -> One<T> {
        self.zip_const(a, b, f)
    }
    #[inline]
    fn map_const(&self, x: &One<T>, f: impl Fn(T) -> T + Sync) -> One<T> {
        One { v: f(x.v), ndim: x.ndim }
    }
    #[inline]
    fn zip_const(&self, a: &One<T>, b: &One<T>, f: impl Fn(T, T) -> T + Sync) -> One<T> {
        One { v: f(a.v, b.v), ndim: a.ndim.max(b.ndim) }
    }
    fn user_rule(
        &self,
        rule: &dyn UserRule<T>,
        xs: &[&One<T>],
        y: &One<T>,
        g: &One<T>,
        need: &[bool],
    ) -> Grads<One<T>> {
        // User ops have no scalar form; should a rule get here, it runs on
        // one-element arrays.
        let arrays: SmallVec<[Value<T>; 4]> = xs.iter().map(|x| x.to_value()).collect();
        let refs: SmallVec<[&Value<T>; 4]> = arrays.iter().collect();
        let grads = ArrayBackend.user_rule(rule, &refs, &y.to_value(), &g.to_value(), need);
        grads.into_iter().map(|d| d.map(|d| self.constant(d))).collect()
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
    fn user_rule(
        &self,
        rule: &dyn UserRule<T>,
        xs: &[&Tensor<'t, T>],
        y: &Tensor<'t, T>,
        g: &Tensor<'t, T>,
        need: &[bool],
    ) -> Grads<Tensor<'t, T>> {
        checked(rule.name(), rule.on_tensors(xs, y, g), Tensor::shape_small, xs, y, need)
    }
}
