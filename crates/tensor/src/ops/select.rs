//! Ops that pick between values: maximum, minimum, clamp and where.
//! Their gradients are masks (constants), so they have kinks; the rule at
//! each kink is documented on the method.

use super::{map, zip, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use ndarray::{ArcArray, ArrayBase, ArrayD, Data, Dimension, IxDyn, Zip};
use smallvec::smallvec;
use tapegrad_kernels::shape::broadcast_shapes;

/// The share of the gradient that goes to `a` in `max(a, b)`: all of it
/// where `a > b`, none where `a < b`, half at a tie.
fn max_share<T: Element>(a: T, b: T) -> T {
    if a > b {
        T::one()
    } else if a < b {
        T::zero()
    } else {
        T::cast(0.5)
    }
}

/// `max(a, b)` elementwise with NaN propagated.
pub(crate) fn max_nan<T: Element>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a + b
    } else if a >= b {
        a
    } else {
        b
    }
}

pub(crate) fn min_nan<T: Element>(a: T, b: T) -> T {
    if a.is_nan() || b.is_nan() {
        a + b
    } else if a <= b {
        a
    } else {
        b
    }
}

/// Elementwise maximum; see [`Tensor::maximum`].
pub(crate) struct Maximum;
impl<T: Element> Op<T> for Maximum {
    fn name(&self) -> &'static str {
        "maximum"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("maximum", x[0], x[1], max_nan)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(max_nan(x[0], x[1]))
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![
            need[0].then(|| b.mul(g, &b.zip_const(x[0], x[1], max_share))),
            need[1].then(|| b.mul(g, &b.zip_const(x[1], x[0], max_share))),
        ]
    }
}

/// Elementwise minimum; see [`Tensor::minimum`].
pub(crate) struct Minimum;
impl<T: Element> Op<T> for Minimum {
    fn name(&self) -> &'static str {
        "minimum"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        zip("minimum", x[0], x[1], min_nan)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(min_nan(x[0], x[1]))
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![
            need[0].then(|| b.mul(g, &b.zip_const(x[1], x[0], max_share))),
            need[1].then(|| b.mul(g, &b.zip_const(x[0], x[1], max_share))),
        ]
    }
}

/// Clamp to `[lo, hi]`; da = g where lo <= a <= hi, else 0.
pub(crate) struct Clamp<T>(T, T);
impl<T: Element> Clamp<T> {
    #[inline]
    fn clamp(&self, a: T) -> T {
        if a < self.0 {
            self.0
        } else if a > self.1 {
            self.1
        } else {
            a
        }
    }
}
impl<T: Element> Op<T> for Clamp<T> {
    fn name(&self) -> &'static str {
        "clamp"
    }
    fn label(&self) -> String {
        format!("clamp({}, {})", self.0, self.1)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        map(x[0], |a| self.clamp(a))
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(self.clamp(x[0]))
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        let (lo, hi) = (self.0, self.1);
        super::unary_grad(need, || {
            b.mul(g, &b.map_const(x[0], |a| if a >= lo && a <= hi { T::one() } else { T::zero() }))
        })
    }
}

/// `mask ? a : b`, all three broadcast; da = g mask, db = g (1 - mask).
pub(crate) struct Where(ArcArray<bool, IxDyn>);
impl<T: Element> Op<T> for Where {
    fn name(&self) -> &'static str {
        "where"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let shape = broadcast_shapes("where", x[0].shape(), x[1].shape());
        let shape = broadcast_shapes("where", self.0.shape(), &shape);
        let m = self.0.broadcast(IxDyn(&shape)).expect("checked");
        let a = x[0].broadcast(IxDyn(&shape)).expect("checked");
        let c = x[1].broadcast(IxDyn(&shape)).expect("checked");
        Zip::from(&m).and(&a).and(&c).map_collect(|&m, &a, &c| if m { a } else { c }).into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        let pick = |on: bool| {
            let mask = self.0.map(|&m| if m == on { T::one() } else { T::zero() }).into_shared();
            b.mul(g, &b.constant(mask))
        };
        smallvec![need[0].then(|| pick(true)), need[1].then(|| pick(false))]
    }
}

/// What a tensor is compared with in [`Tensor::gt`] and its kin: another
/// tensor (the two broadcast together) or a number.
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(arr1(&[-1.0, 2.0]));
/// assert_eq!(x.gt(0.0), x.gt(tape.constant(arr1(&[0.0, 0.0]))));
/// ```
pub trait Comparand<T: Element>: comparand::Sealed {
    /// The value compared with.
    #[doc(hidden)]
    fn comparand(&self) -> Value<T>;
}
mod comparand {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl<T: crate::Element> Sealed for crate::Tensor<'_, T> {}
}
impl Comparand<f32> for f32 {
    fn comparand(&self) -> Value<f32> {
        ArcArray::from_elem(IxDyn(&[]), *self)
    }
}
impl Comparand<f64> for f64 {
    fn comparand(&self) -> Value<f64> {
        ArcArray::from_elem(IxDyn(&[]), *self)
    }
}
impl<T: Element> Comparand<T> for Tensor<'_, T> {
    fn comparand(&self) -> Value<T> {
        self.value()
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// `self > other` elementwise, broadcast, as a mask for
    /// [`Tensor::where_`]: a boolean array computed from the values, through
    /// which no gradient flows. NaN compares false, as in IEEE arithmetic
    /// (so `x.gt(0.0)` and `x.le(0.0)` are both false at NaN).
    ///
    /// # Panics
    /// When the shapes do not broadcast.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-2.0, 3.0]));
    /// let y = Tensor::where_(&x.gt(0.0), x, x * 0.1); // leaky ReLU
    /// assert_eq!(y.value().as_slice().unwrap(), &[-0.2, 3.0]);
    /// assert_eq!(tape.backward(y.sum())[x].as_slice().unwrap(), &[0.1, 1.0]);
    /// ```
    #[track_caller]
    pub fn gt(&self, other: impl Comparand<T>) -> ArrayD<bool> {
        self.compare("gt", &other, |a, b| a > b)
    }

    /// `self >= other` elementwise, as [`Tensor::gt`].
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(arr1(&[0.0, 1.0])).ge(1.0).as_slice().unwrap(), &[false, true]);
    /// ```
    #[track_caller]
    pub fn ge(&self, other: impl Comparand<T>) -> ArrayD<bool> {
        self.compare("ge", &other, |a, b| a >= b)
    }

    /// `self < other` elementwise, as [`Tensor::gt`].
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(arr1(&[0.0, 1.0])).lt(1.0).as_slice().unwrap(), &[true, false]);
    /// ```
    #[track_caller]
    pub fn lt(&self, other: impl Comparand<T>) -> ArrayD<bool> {
        self.compare("lt", &other, |a, b| a < b)
    }

    /// `self <= other` elementwise, as [`Tensor::gt`].
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(arr1(&[0.0, 2.0])).le(1.0).as_slice().unwrap(), &[true, false]);
    /// ```
    #[track_caller]
    pub fn le(&self, other: impl Comparand<T>) -> ArrayD<bool> {
        self.compare("le", &other, |a, b| a <= b)
    }

    /// `self == other` elementwise, as [`Tensor::gt`] (NaN equals nothing).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [2.0, f64::NAN]]);
    /// let row = tape.constant(array![[2.0, 2.0]]);
    /// assert_eq!(x.eq(row), array![[false, true], [true, false]].into_dyn());
    /// ```
    #[track_caller]
    #[allow(clippy::should_implement_trait, reason = "a mask, not PartialEq: numpy's and PyTorch's name")]
    pub fn eq(&self, other: impl Comparand<T>) -> ArrayD<bool> {
        self.compare("eq", &other, |a, b| a == b)
    }

    #[track_caller]
    fn compare(&self, op: &str, other: &impl Comparand<T>, f: impl Fn(T, T) -> bool) -> ArrayD<bool> {
        let (a, b) = (self.value(), other.comparand());
        let shape = broadcast_shapes(op, a.shape(), b.shape());
        let a = a.broadcast(IxDyn(&shape)).expect("checked");
        let b = b.broadcast(IxDyn(&shape)).expect("checked");
        Zip::from(&a).and(&b).map_collect(|&a, &b| f(a, b))
    }

    /// Elementwise `max(a, b)`, broadcast. The gradient goes to the larger
    /// input; at a tie (`a == b`) it is split evenly, half to each (as
    /// PyTorch's `maximum`), so the sum of the two is always `g`. NaN in
    /// either input gives NaN.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(arr1(&[1.0, 2.0, 3.0]));
    /// let b = tape.var(arr1(&[2.0, 2.0, 2.0]));
    /// let g = tape.backward(a.maximum(b).sum());
    /// assert_eq!(g[a].as_slice().unwrap(), &[0.0, 0.5, 1.0]);
    /// assert_eq!(g[b].as_slice().unwrap(), &[1.0, 0.5, 0.0]);
    /// ```
    #[track_caller]
    pub fn maximum(self, other: Tensor<'t, T>) -> Self {
        self.tape.record(Maximum, &[&self, &other])
    }

    /// Elementwise `min(a, b)`, broadcast; the gradient goes to the smaller
    /// input and is split evenly at a tie, as in [`Tensor::maximum`].
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(arr1(&[1.0, 2.0]));
    /// let b = tape.var(arr1(&[2.0, 2.0]));
    /// assert_eq!(tape.backward(a.minimum(b).sum())[a].as_slice().unwrap(), &[1.0, 0.5]);
    /// ```
    #[track_caller]
    pub fn minimum(self, other: Tensor<'t, T>) -> Self {
        self.tape.record(Minimum, &[&self, &other])
    }

    /// Clamps to `[lo, hi]`. The gradient passes where `lo <= x <= hi`
    /// (boundaries included, as PyTorch) and is 0 outside.
    ///
    /// # Panics
    /// When `lo > hi` or either bound is NaN.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[-2.0, 0.5, 2.0]));
    /// let y = x.clamp(0.0, 1.0);
    /// assert_eq!(y.value().as_slice().unwrap(), &[0.0, 0.5, 1.0]);
    /// assert_eq!(tape.backward(y.sum())[x].as_slice().unwrap(), &[0.0, 1.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn clamp(self, lo: T, hi: T) -> Self {
        let interval = lo <= hi; // false for NaN bounds too
        if !interval {
            panic!("clamp: bounds [{lo}, {hi}] are not an interval");
        }
        self.tape.record(Clamp(lo, hi), &[&self])
    }

    /// `mask ? on_true : on_false` elementwise (numpy's `where`), with the
    /// mask, `on_true` and `on_false` broadcast together. The gradient of
    /// each branch is `g` where it was picked and 0 elsewhere.
    ///
    /// # Panics
    /// When the three shapes do not broadcast.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(arr1(&[1.0, 2.0]));
    /// let b = tape.var(arr1(&[10.0, 20.0]));
    /// let y = Tensor::where_(&arr1(&[true, false]), a, b);
    /// assert_eq!(y.value().as_slice().unwrap(), &[1.0, 20.0]);
    /// assert_eq!(tape.backward(y.sum())[b].as_slice().unwrap(), &[0.0, 1.0]);
    /// ```
    #[track_caller]
    pub fn where_<S, D>(mask: &ArrayBase<S, D>, on_true: Tensor<'t, T>, on_false: Tensor<'t, T>) -> Self
    where
        S: Data<Elem = bool>,
        D: Dimension,
    {
        let mask = mask.view().into_dyn().to_shared();
        on_true.tape.record(Where(mask), &[&on_true, &on_false])
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use ndarray::arr1;

    #[test]
    fn maximum_tie_splits_gradient() {
        let tape = Tape::<f64>::new();
        let a = tape.var(arr1(&[1.0]));
        let g = tape.backward(a.maximum(a).sum());
        assert_eq!(g[a][0], 1.0);
    }

    #[test]
    fn nan_is_not_masked_by_maximum_or_clamp() {
        let tape = Tape::<f64>::new();
        let a = tape.var(arr1(&[f64::NAN]));
        let z = tape.constant(arr1(&[0.0]));
        assert!(a.maximum(z).item().is_nan());
        assert!(z.minimum(a).item().is_nan());
        assert!(a.clamp(0.0, 1.0).item().is_nan());
    }

    #[test]
    #[should_panic(expected = "maximum: shapes [2] and [3] cannot be broadcast together")]
    fn maximum_shape_mismatch() {
        let tape = Tape::<f64>::new();
        let _ = tape.var(arr1(&[1.0, 2.0])).maximum(tape.var(arr1(&[1.0, 2.0, 3.0])));
    }
}
