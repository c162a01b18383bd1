//! Sums and means, and the shape ops that are their adjoints: reshape,
//! broadcast_to and sum_to.

use super::{unary_grad, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use ndarray::{ArcArray, IxDyn};
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
            return ArcArray::from_elem(IxDyn(&[]), a.sum());
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
