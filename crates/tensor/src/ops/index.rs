//! Picking and joining along an axis: index_select (to cut shuffled
//! mini-batches), slice_axis, concat, and their adjoints index_add and
//! pad_axis.

use super::{unary_grad, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use ndarray::{ArcArray, ArrayD, Axis, IxDyn, Slice};
use std::sync::Arc;

/// Rows `indices` of axis `axis`; da = index_add(g) into zeros of a's shape.
pub(crate) struct IndexSelect {
    axis: usize,
    indices: Arc<[usize]>,
}
impl<T: Element> Op<T> for IndexSelect {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn label(&self) -> String {
        format!("index_select(axis={}, n={})", self.axis, self.indices.len())
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        x[0].select(Axis(self.axis), &self.indices).into_dyn().into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || {
            let len = b.shape(x[0])[self.axis];
            b.apply(IndexAdd { axis: self.axis, indices: self.indices.clone(), len }, &[g])
        })
    }
}

/// Zeros of length `len` on `axis` with slice k of `a` added at
/// `indices[k]`; da = index_select(g).
pub(crate) struct IndexAdd {
    axis: usize,
    indices: Arc<[usize]>,
    len: usize,
}
impl<T: Element> Op<T> for IndexAdd {
    fn name(&self) -> &'static str {
        "index_add"
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let mut shape = x[0].shape().to_vec();
        shape[self.axis] = self.len;
        let mut out = ArrayD::<T>::zeros(IxDyn(&shape));
        for (k, &i) in self.indices.iter().enumerate() {
            let src = x[0].index_axis(Axis(self.axis), k);
            out.index_axis_mut(Axis(self.axis), i).zip_mut_with(&src, |o, &s| *o = *o + s);
        }
        out.into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || b.apply(IndexSelect { axis: self.axis, indices: self.indices.clone() }, &[g]))
    }
}

/// `a[start..end]` along `axis`, sharing the buffer; da = pad_axis(g).
pub(crate) struct SliceAxis {
    axis: usize,
    start: usize,
    end: usize,
}
impl<T: Element> Op<T> for SliceAxis {
    fn name(&self) -> &'static str {
        "slice_axis"
    }
    fn label(&self) -> String {
        format!("slice_axis(axis={}, {}..{})", self.axis, self.start, self.end)
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let mut y: ArcArray<T, IxDyn> = x[0].clone();
        y.slice_axis_inplace(Axis(self.axis), Slice::from(self.start..self.end));
        y
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || {
            let len = b.shape(x[0])[self.axis];
            b.apply(PadAxis { axis: self.axis, start: self.start, len }, &[g])
        })
    }
}

/// Zeros of length `len` on `axis` with `a` written at `start..`; da =
/// slice_axis(g).
pub(crate) struct PadAxis {
    axis: usize,
    start: usize,
    len: usize,
}
impl<T: Element> Op<T> for PadAxis {
    fn name(&self) -> &'static str {
        "pad_axis"
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let mut shape = x[0].shape().to_vec();
        let n = shape[self.axis];
        shape[self.axis] = self.len;
        let mut out = ArrayD::<T>::zeros(IxDyn(&shape));
        out.slice_axis_mut(Axis(self.axis), Slice::from(self.start..self.start + n)).assign(x[0]);
        out.into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        unary_grad(need, || {
            let n = b.shape(x[0])[self.axis];
            b.apply(SliceAxis { axis: self.axis, start: self.start, end: self.start + n }, &[g])
        })
    }
}

/// Joins along `axis`; each input's gradient is its slice of g.
pub(crate) struct Concat {
    axis: usize,
}
impl<T: Element> Op<T> for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let views: Vec<_> = x.iter().map(|v| v.view()).collect();
        match ndarray::concatenate(Axis(self.axis), &views) {
            Ok(a) => a.into_shared(),
            Err(_) => {
                let shapes: Vec<&[usize]> = x.iter().map(|v| v.shape()).collect();
                panic!("concat: shapes {shapes:?} differ off axis {}", self.axis)
            }
        }
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        let mut start = 0;
        let mut out = Grads::new();
        for (xi, &nd) in x.iter().zip(need) {
            let n = b.shape(xi)[self.axis];
            out.push(nd.then(|| b.apply(SliceAxis { axis: self.axis, start, end: start + n }, &[g])));
            start += n;
        }
        out
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// The slices at `indices` along `axis`, in that order (repeats
    /// allowed): `y[.., k, ..] = x[.., indices[k], ..]`. The gradient adds
    /// each slice of `g` back at its index. This is how a shuffled
    /// mini-batch is cut: `x.index_select(1, &batch)` for the guide's
    /// column-per-example layout.
    ///
    /// # Panics
    /// When `axis` is out of range or an index is out of bounds.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0]]);
    /// let y = x.index_select(1, &[2, 0, 2]);
    /// assert_eq!(y.value(), array![[3.0, 1.0, 3.0]].into_dyn().into_shared());
    /// assert_eq!(tape.backward(y.sum())[x], array![[1.0, 0.0, 2.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn index_select(self, axis: usize, indices: &[usize]) -> Self {
        let shape = self.shape_small();
        if axis >= shape.len() || indices.iter().any(|&i| i >= shape[axis]) {
            panic!(
                "index_select: axis {axis} or an index in {indices:?} is out of range for shape {:?}",
                shape.as_slice()
            );
        }
        self.tape.record(IndexSelect { axis, indices: indices.into() }, &[&self])
    }

    /// `x[start..end]` along `axis`, sharing the buffer; the gradient is `g`
    /// padded with zeros.
    ///
    /// # Panics
    /// When the range or axis is out of bounds.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0, 4.0]]);
    /// assert_eq!(x.slice_axis(1, 1..3).value(), array![[2.0, 3.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn slice_axis(self, axis: usize, range: std::ops::Range<usize>) -> Self {
        let shape = self.shape_small();
        if axis >= shape.len() || range.start > range.end || range.end > shape[axis] {
            panic!(
                "slice_axis: axis {axis} range {range:?} is out of bounds for shape {:?}",
                shape.as_slice()
            );
        }
        self.tape.record(SliceAxis { axis, start: range.start, end: range.end }, &[&self])
    }

    /// Joins tensors along `axis`; each input's gradient is its slice of `g`.
    ///
    /// # Panics
    /// When `parts` is empty or the shapes differ off `axis`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape, Tensor};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(array![[1.0], [2.0]]);
    /// let b = tape.var(array![[3.0, 4.0], [5.0, 6.0]]);
    /// assert_eq!(Tensor::concat(&[a, b], 1).shape(), vec![2, 3]);
    /// ```
    #[track_caller]
    pub fn concat(parts: &[Tensor<'t, T>], axis: usize) -> Self {
        let Some(first) = parts.first() else { panic!("concat: no tensors to join") };
        let refs: Vec<&Tensor<'t, T>> = parts.iter().collect();
        first.tape.record(Concat { axis }, &refs)
    }
}

#[cfg(test)]
mod tests {
    use crate::Tensor;

    #[test]
    #[should_panic(expected = "concat: shapes [[2, 1], [3, 1]] differ off axis 1")]
    fn concat_shape_mismatch() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((2, 1)));
        let b = tape.var(ndarray::Array2::<f64>::zeros((3, 1)));
        let _ = Tensor::concat(&[a, b], 1);
    }

    #[test]
    #[should_panic(expected = "index_select: axis 1 or an index in [5] is out of range for shape [2, 4]")]
    fn index_select_out_of_range() {
        let tape = crate::Tape::<f64>::new();
        let _ = tape.var(ndarray::Array2::<f64>::zeros((2, 4))).index_select(1, &[5]);
    }
}
