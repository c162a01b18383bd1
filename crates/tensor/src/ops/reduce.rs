//! Sums and means, and the shape ops that are their adjoints: reshape,
//! broadcast_to and sum_to.

use super::{map, unary_grad, zip, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use ndarray::{ArrayD, Axis, IxDyn};
use tapegrad_kernels::reduce::sum_to_shape;
use tapegrad_kernels::shape::broadcasts_to;
use tapegrad_kernels::Shape;

/// Sum over `axes` (sorted, distinct), keeping them as length 1 when
/// `keepdims`; da = g reshaped to keepdims form and broadcast to a's shape.
pub(crate) struct Sum {
    axes: Shape,
    keepdims: bool,
}
impl<T: Element> Op<T> for Sum {
    fn name(&self) -> &'static str {
        "sum"
    }
    fn label(&self) -> String {
        format!("sum(axes={:?}, keepdims={})", self.axes.as_slice(), self.keepdims)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let a = x[0];
        if self.axes.len() == a.ndim() && !self.keepdims {
            let total = a.sum();
            return tapegrad_kernels::pool::value_with(&[], |o| {
                o[0].write(total);
            });
        }
        let mut out: Shape = Shape::from_slice(a.shape());
        for &ax in self.axes.iter().rev() {
            if self.keepdims {
                out[ax] = 1;
            } else {
                out.remove(ax);
            }
        }
        tapegrad_kernels::reduce::sum_axes(a.view(), &self.axes, &out)
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || {
            let shape = b.shape(x[0]);
            let g = if self.keepdims {
                g.clone()
            } else {
                let mut kept = shape.clone();
                for &ax in &self.axes {
                    kept[ax] = 1;
                }
                b.reshape(g, &kept)
            };
            b.broadcast_to(&g, &shape)
        })
    }
}

/// The maximum (or, with `max` false, the minimum) over `axes` (sorted,
/// distinct), kept as length 1 when `keepdims`; NaN propagates. The
/// gradient is split evenly among the elements equal to the extreme:
/// da = g * [a == y] / count, broadcast (PyTorch's `amax` rule).
pub(crate) struct Extreme {
    axes: Shape,
    keepdims: bool,
    max: bool,
}
impl Extreme {
    /// The input's shape with the reduced axes as length 1.
    fn kept(&self, shape: &[usize]) -> Shape {
        let mut kept = Shape::from_slice(shape);
        for &ax in &self.axes {
            kept[ax] = 1;
        }
        kept
    }
}
impl<T: Element> Op<T> for Extreme {
    fn name(&self) -> &'static str {
        if self.max {
            "max_axes"
        } else {
            "min_axes"
        }
    }
    fn label(&self) -> String {
        format!("{}(axes={:?}, keepdims={})", Op::<T>::name(self), self.axes.as_slice(), self.keepdims)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let pick = if self.max { super::select::max_nan } else { super::select::min_nan };
        let mut v = x[0].to_owned();
        for &ax in &self.axes {
            v = v.fold_axis(Axis(ax), if self.max { T::neg_infinity() } else { T::infinity() }, |&a, &b| {
                pick(a, b)
            });
            v.insert_axis_inplace(Axis(ax));
        }
        let shape = if self.keepdims {
            self.kept(x[0].shape())
        } else {
            x[0].shape().iter().enumerate().filter(|(i, _)| !self.axes.contains(i)).map(|(_, &n)| n).collect()
        };
        v.into_shape_with_order(IxDyn(&shape)).expect("same length").into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // Linear in the tangent for a fixed input: the rule's own map.
        let kept = self.kept(xs[0].shape());
        let share = self.share(xs[0], y, &kept);
        let d = zip("max_axes jvp", dx[0].expect("one input, one tangent"), &share, |d, s| d * s);
        let s = tapegrad_kernels::reduce::sum_axes(d.view(), &self.axes, &kept);
        Op::<T>::forward(&Reshape(Shape::from_slice(y.shape())), &[&s])
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || {
            let kept = self.kept(&b.shape(x[0]));
            let share = b.constant(self.share(&b.value(x[0]), &b.value(y), &kept));
            b.mul(&b.reshape(g, &kept), &share)
        })
    }
}
/// The shift that keeps the softmax family's `exp` from overflowing:
/// `m = max(x)` over `axes` (kept), with a non-finite maximum replaced by 0
/// (a lane of `-inf` then stays `-inf`, as PyTorch's `logsumexp`). It
/// cancels in every formula that uses it (`logsumexp(x) = m +
/// log(sum(exp(x - m)))` for any `m`), so no gradient flows through it
/// (`dm/dx` is taken as 0) and its node needs none; it is an op, not a
/// constant, so a replayed step computes it again from its input.
pub(crate) struct StableShift {
    axes: Shape,
}
impl<T: Element> Op<T> for StableShift {
    fn name(&self) -> &'static str {
        "stable_shift"
    }
    fn label(&self) -> String {
        format!("stable_shift(axes={:?})", self.axes.as_slice())
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let m = Op::<T>::forward(&Extreme { axes: self.axes.clone(), keepdims: true, max: true }, x);
        map(&m, |v| if v.is_finite() { v } else { T::zero() })
    }
    fn differentiable(&self) -> bool {
        false
    }
    fn jvp(&self, _: &[&Value<T>], y: &Value<T>, _: &[Option<&Value<T>>]) -> Value<T> {
        Value::zeros(y.raw_dim())
    }
    fn backward<B: Backend<T>>(&self, _: &B, _: &[&B::V], _: &B::V, _: &B::V, _: &[bool]) -> Grads<B::V> {
        Grads::from_elem(None, 1)
    }
}

impl Extreme {
    /// `[a == y] / count` along the reduced axes: each element's share of
    /// the gradient (NaN where the extreme is NaN).
    fn share<T: Element>(&self, a: &Value<T>, y: &Value<T>, kept: &[usize]) -> Value<T> {
        let y = y.view().into_shape_with_order(IxDyn(kept)).expect("y has the kept shape's length");
        let hit = zip("max_axes", a, &y.to_shared(), |a, m| if a == m { T::one() } else { T::zero() });
        let count = tapegrad_kernels::reduce::sum_axes(hit.view(), &self.axes, kept);
        zip("max_axes", &hit, &count, |h, c| h / c)
    }
}

/// Sums a broadcast value back to `shape`; da = broadcast_to(g, a's shape).
pub(crate) struct SumTo(pub(crate) Shape);
impl<T: Element> Op<T> for SumTo {
    fn name(&self) -> &'static str {
        "sum_to"
    }
    fn label(&self) -> String {
        format!("sum_to({:?})", self.0.as_slice())
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        if !broadcasts_to(&self.0, x[0].shape()) {
            panic!("sum_to: shape {:?} cannot be summed to {:?}", x[0].shape(), self.0.as_slice());
        }
        sum_to_shape(x[0], &self.0)
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.broadcast_to(g, &b.shape(x[0])))
    }
}

/// Broadcasts to `shape` by numpy's rules; da = sum_to(g, a's shape).
pub(crate) struct BroadcastTo(pub(crate) Shape);
impl<T: Element> Op<T> for BroadcastTo {
    fn name(&self) -> &'static str {
        "broadcast_to"
    }
    fn label(&self) -> String {
        format!("broadcast_to({:?})", self.0.as_slice())
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        match x[0].broadcast(IxDyn(&self.0)) {
            Some(v) if broadcasts_to(x[0].shape(), &self.0) => tapegrad_kernels::pool::to_value(v),
            _ => panic!(
                "broadcast_to: shape {:?} cannot be broadcast to {:?}",
                x[0].shape(),
                self.0.as_slice()
            ),
        }
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.sum_to(g, &b.shape(x[0])))
    }
}

/// The same elements in row-major order with a new shape; da = g reshaped
/// back.
pub(crate) struct Reshape(pub(crate) Shape);
impl<T: Element> Op<T> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }
    fn label(&self) -> String {
        format!("reshape({:?})", self.0.as_slice())
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let a = x[0];
        if a.len() != self.0.iter().product::<usize>() {
            panic!("reshape: shape {:?} cannot be reshaped to {:?}", a.shape(), self.0.as_slice());
        }
        let standard =
            if a.is_standard_layout() { a.clone() } else { tapegrad_kernels::pool::to_value(a.view()) };
        standard.into_shape_with_order(IxDyn(&self.0)).expect("checked size, standard layout")
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.reshape(g, &b.shape(x[0])))
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// The sum of all elements, shape `[]`; `dx = g` broadcast to x's
    /// shape.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(x.sum().item(), 10.0);
    /// ```
    #[track_caller]
    pub fn sum(self) -> Self {
        let n = self.shape_small().len();
        self.tape.record(Sum { axes: (0..n).collect(), keepdims: false }, &[&self])
    }

    /// The sum over `axes`, kept as length-1 axes when `keepdims` (numpy's
    /// `sum(axis=..., keepdims=...)`); `dx = g` broadcast back.
    ///
    /// # Panics
    /// When an axis is out of range or repeated.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let dz = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]);
    /// let db = dz.sum_axes(&[1], true); // the guide's np.sum(dZ, axis=1, keepdims=True)
    /// assert_eq!(db.shape(), vec![2, 1]);
    /// assert_eq!(dz.sum_axes(&[0], false).shape(), vec![3]);
    /// ```
    #[track_caller]
    pub fn sum_axes(self, axes: &[usize], keepdims: bool) -> Self {
        let shape = self.shape_small();
        let mut sorted = Shape::from_slice(axes);
        sorted.sort_unstable();
        if sorted.iter().any(|&a| a >= shape.len()) || sorted.windows(2).any(|w| w[0] == w[1]) {
            panic!("sum_axes: axes {axes:?} are out of range or repeated for shape {:?}", shape.as_slice());
        }
        self.tape.record(Sum { axes: sorted, keepdims }, &[&self])
    }

    /// The maximum over `axes`, kept as length-1 axes when `keepdims`
    /// (PyTorch's `amax`, numpy's `max(axis=...)`); NaN propagates. The
    /// gradient goes to the elements equal to the maximum and is split
    /// evenly among them at a tie, as in PyTorch's `amax`.
    ///
    /// # Panics
    /// When an axis is out of range, repeated, or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 3.0, 3.0], [4.0, 0.0, 2.0]]);
    /// let m = x.max_axes(&[1], false);
    /// assert_eq!(m.value().as_slice().unwrap(), &[3.0, 4.0]);
    /// let g = tape.backward(m.sum());
    /// assert_eq!(g[x], array![[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn max_axes(self, axes: &[usize], keepdims: bool) -> Self {
        let axes = self.reduced_axes("max_axes", axes);
        self.tape.record(Extreme { axes, keepdims, max: true }, &[&self])
    }

    /// The minimum over `axes`; the gradient rule is that of
    /// [`Tensor::max_axes`].
    ///
    /// # Panics
    /// When an axis is out of range, repeated, or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, -3.0], [4.0, 0.0]]);
    /// assert_eq!(x.min_axes(&[0, 1], false).item(), -3.0);
    /// ```
    #[track_caller]
    pub fn min_axes(self, axes: &[usize], keepdims: bool) -> Self {
        let axes = self.reduced_axes("min_axes", axes);
        self.tape.record(Extreme { axes, keepdims, max: false }, &[&self])
    }

    /// The index of the largest element along `axis` (that axis removed);
    /// the first one at a tie, and the first NaN if there is one (numpy's
    /// `argmax`). Indices carry no gradient.
    ///
    /// # Panics
    /// When `axis` is out of range or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let logits = tape.var(array![[0.1, 2.0], [3.0, -1.0], [0.5, 2.0]]);
    /// assert_eq!(logits.argmax(0).as_slice().unwrap(), &[1, 0]);
    /// ```
    #[track_caller]
    pub fn argmax(&self, axis: usize) -> ArrayD<usize> {
        self.arg_extreme("argmax", axis, |a, b| a > b)
    }

    /// The index of the smallest element along `axis`, as
    /// [`Tensor::argmax`].
    ///
    /// # Panics
    /// When `axis` is out of range or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[0.1, 2.0, -4.0]]);
    /// assert_eq!(x.argmin(1).as_slice().unwrap(), &[2]);
    /// ```
    #[track_caller]
    pub fn argmin(&self, axis: usize) -> ArrayD<usize> {
        self.arg_extreme("argmin", axis, |a, b| a < b)
    }

    /// `ln sum(e^x)` over `axes`, computed as `m + ln sum(e^(x - m))` with
    /// `m` the maximum, so that it neither overflows nor underflows (a
    /// logit of 1000 gives 1000, not inf); `dx = g softmax(x)`. The shift
    /// is held constant: the function does not depend on it, so no
    /// derivative of any order does. A composite.
    ///
    /// # Panics
    /// When an axis is out of range, repeated, or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1000.0, 1000.0], [0.0, f64::ln(3.0)]]);
    /// let l = x.logsumexp(&[1], false);
    /// approx::assert_abs_diff_eq!(l.value()[0], 1000.0 + 2f64.ln(), epsilon = 1e-12);
    /// approx::assert_abs_diff_eq!(l.value()[1], 4f64.ln(), epsilon = 1e-15);
    /// ```
    #[track_caller]
    pub fn logsumexp(self, axes: &[usize], keepdims: bool) -> Self {
        let m = self.stable_shift("logsumexp", axes);
        let l = (self - m).exp().sum_axes(axes, true).log() + m;
        if keepdims {
            l
        } else {
            let shape: Vec<usize> =
                l.shape().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &n)| n).collect();
            l.reshape(&shape)
        }
    }

    /// `e^x / sum(e^x)` along `axis` (the guide's layout puts classes on
    /// axis 0), computed as `e^(x - m) / sum(e^(x - m))` with `m` the
    /// maximum, so large logits do not overflow; `dx = y (g - sum(g y))`.
    /// A composite.
    ///
    /// # Panics
    /// When `axis` is out of range or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f32>::new();
    /// let z = tape.var(array![[1000.0f32, 0.0], [1000.0, 0.0]]);
    /// let p = z.softmax(0);
    /// assert_eq!(p.value(), array![[0.5f32, 0.5], [0.5, 0.5]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn softmax(self, axis: usize) -> Self {
        let m = self.stable_shift("softmax", &[axis]);
        let e = (self - m).exp();
        e / e.sum_axes(&[axis], true)
    }

    /// `x - logsumexp(x)` along `axis`: the log of [`Tensor::softmax`],
    /// finite for any finite logits (where `softmax(x).log()` gives
    /// `-inf`); `dx = g - softmax(x) sum(g)`. A composite.
    ///
    /// # Panics
    /// When `axis` is out of range or of length 0.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let z = tape.var(array![[1000.0], [-1000.0]]);
    /// assert_eq!(z.log_softmax(0).value().as_slice().unwrap(), &[0.0, -2000.0]);
    /// ```
    #[track_caller]
    pub fn log_softmax(self, axis: usize) -> Self {
        self - self.logsumexp(&[axis], true)
    }

    /// The maximum over `axes` (kept), with non-finite entries replaced
    /// by 0, through which no gradient flows (see [`StableShift`]).
    #[track_caller]
    fn stable_shift(&self, op: &str, axes: &[usize]) -> Self {
        let axes = self.reduced_axes(op, axes);
        self.tape.record(StableShift { axes }, &[self])
    }

    /// `axes` sorted, after checking them against the shape.
    #[track_caller]
    fn reduced_axes(&self, op: &str, axes: &[usize]) -> Shape {
        let shape = self.shape_small();
        let mut sorted = Shape::from_slice(axes);
        sorted.sort_unstable();
        if sorted.iter().any(|&a| a >= shape.len() || shape[a] == 0)
            || sorted.windows(2).any(|w| w[0] == w[1])
        {
            panic!(
                "{op}: axes {axes:?} are out of range, empty or repeated for shape {:?}",
                shape.as_slice()
            );
        }
        sorted
    }

    #[track_caller]
    fn arg_extreme(&self, op: &str, axis: usize, better: fn(T, T) -> bool) -> ArrayD<usize> {
        self.reduced_axes(op, &[axis]);
        let v = self.value();
        v.map_axis(Axis(axis), |lane| {
            let mut best = 0;
            for (i, &a) in lane.iter().enumerate() {
                let b = lane[best];
                if b.is_nan() {
                    break;
                }
                if a.is_nan() || better(a, b) {
                    best = i;
                }
            }
            best
        })
    }

    /// The mean of all elements: `sum(x) / n`; `dx = g / n`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![1.0, 2.0, 3.0, 6.0]);
    /// assert_eq!(x.mean().item(), 3.0);
    /// assert_eq!(tape.backward(x.mean())[x][0], 0.25);
    /// ```
    #[track_caller]
    pub fn mean(self) -> Self {
        let n = self.shape_small().iter().product::<usize>();
        self.sum() * (T::one() / T::cast(n as f64))
    }

    /// The mean over `axes` (see [`Tensor::sum_axes`]); `dx = g / n` with
    /// `n` the number of elements averaged.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 3.0], [5.0, 7.0]]);
    /// assert_eq!(x.mean_axes(&[1], true).value(), array![[2.0], [6.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn mean_axes(self, axes: &[usize], keepdims: bool) -> Self {
        let shape = self.shape_small();
        let n: usize = axes.iter().map(|&a| shape.get(a).copied().unwrap_or(1)).product();
        self.sum_axes(axes, keepdims) * (T::one() / T::cast(n as f64))
    }

    /// The same elements, in row-major order, with a new shape; `dx` is `g`
    /// reshaped back. Free for contiguous values.
    ///
    /// # Panics
    /// When the element counts differ.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// assert_eq!(x.reshape(&[4]).shape(), vec![4]);
    /// ```
    #[track_caller]
    pub fn reshape(self, shape: &[usize]) -> Self {
        self.tape.record(Reshape(Shape::from_slice(shape)), &[&self])
    }

    /// Broadcasts to `shape` by numpy's rules (materialised); `dx` is `g`
    /// summed back to x's shape.
    ///
    /// # Panics
    /// When numpy would refuse the broadcast.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let b = tape.var(array![[1.0], [2.0]]);
    /// assert_eq!(b.broadcast_to(&[2, 3]).shape(), vec![2, 3]);
    /// assert_eq!(tape.backward(b.broadcast_to(&[2, 3]).sum())[b][[0, 0]], 3.0);
    /// ```
    #[track_caller]
    pub fn broadcast_to(self, shape: &[usize]) -> Self {
        self.tape.record(BroadcastTo(Shape::from_slice(shape)), &[&self])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "broadcast_to: shape [3, 2] cannot be broadcast to [3, 4]")]
    fn broadcast_to_refuses_what_numpy_refuses() {
        let tape = crate::Tape::<f64>::new();
        let _ = tape.var(ndarray::Array2::<f64>::zeros((3, 2))).broadcast_to(&[3, 4]);
    }

    #[test]
    #[should_panic(expected = "reshape: shape [3, 2] cannot be reshaped to [4]")]
    fn reshape_size_mismatch_panics() {
        let tape = crate::Tape::<f64>::new();
        let _ = tape.var(ndarray::Array2::<f64>::zeros((3, 2))).reshape(&[4]);
    }
}

#[cfg(test)]
mod extreme_tests {
    use crate::Tape;
    use ndarray::{arr1, array};

    #[test]
    fn max_axes_splits_the_gradient_among_ties_and_propagates_nan() {
        let tape = Tape::<f64>::new();
        let x = tape.var(array![[2.0, 2.0, 2.0, 1.0]]);
        let g = tape.backward(x.max_axes(&[1], false).sum());
        let third = 1.0 / 3.0;
        assert_eq!(g[x].as_slice().unwrap(), &[third, third, third, 0.0]);
        let y = tape.var(array![[1.0, f64::NAN], [0.0, -1.0]]);
        let m = y.max_axes(&[1], false);
        assert!(m.value()[0].is_nan() && m.value()[1] == 0.0);
        assert_eq!(y.argmax(1).as_slice().unwrap(), &[1, 0]);
        assert_eq!(tape.var(arr1(&[f64::NAN, 5.0, f64::NAN])).argmin(0)[[]], 0);
    }

    #[test]
    fn softmax_log_softmax_logsumexp_are_finite_and_right_at_logits_of_1000() {
        fn check<T: crate::Element>() {
            let tape = Tape::<T>::new();
            let c = |v: f64| T::cast(v);
            let z = tape.var(array![[c(1000.0), c(-1000.0)], [c(-1000.0), c(1000.0)], [c(0.0), c(0.0)]]);
            let p = z.softmax(0);
            let lp = z.log_softmax(0);
            let l = z.logsumexp(&[0], false);
            for v in p.value().iter().chain(lp.value().iter()).chain(l.value().iter()) {
                assert!(v.is_finite(), "{}: {v}", T::NAME);
            }
            assert_eq!(p.value()[[0, 0]], T::one());
            assert_eq!(lp.value()[[0, 0]], T::zero());
            assert_eq!(lp.value()[[1, 0]], c(-2000.0));
            assert_eq!(l.value()[0], c(1000.0));
            // d/dz sum(log_softmax * w) = w - softmax sum(w): finite.
            let g = tape.backward(lp.sum() + p.sum() + l.sum());
            assert!(g[z].iter().all(|v| v.is_finite()), "{}", T::NAME);
            // A lane of -inf stays -inf (PyTorch's rule), not NaN.
            let n = tape.var(array![[T::neg_infinity()], [T::neg_infinity()]]);
            assert_eq!(n.logsumexp(&[0], false).value()[0], T::neg_infinity());
        }
        check::<f32>();
        check::<f64>();
    }

    #[test]
    #[should_panic(expected = "max_axes: axes [2] are out of range, empty or repeated for shape [2, 3]")]
    fn max_axes_refuses_an_axis_out_of_range() {
        let tape = Tape::<f64>::new();
        let _ = tape.var(ndarray::Array2::<f64>::zeros((2, 3))).max_axes(&[2], false);
    }
}
