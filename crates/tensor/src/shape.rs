//! Shape logic shared by every op: numpy broadcasting and its inverse.

use crate::{Element, Value};
use ndarray::{Axis, IxDyn};
use smallvec::SmallVec;

/// A shape stored inline for up to 4 axes.
pub(crate) type Shape = SmallVec<[usize; 4]>;

/// The numpy broadcast of two shapes: axes are aligned from the right, and a
/// pair is compatible when equal or when one of them is 1.
///
/// # Panics
/// When the shapes are incompatible, naming `op` and both shapes.
#[track_caller]
pub(crate) fn broadcast_shapes(op: &str, a: &[usize], b: &[usize]) -> Shape {
    let n = a.len().max(b.len());
    let mut out: Shape = SmallVec::from_elem(1, n);
    for i in 0..n {
        let da = if i < n - a.len() { 1 } else { a[i - (n - a.len())] };
        let db = if i < n - b.len() { 1 } else { b[i - (n - b.len())] };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            panic!("{op}: shapes {a:?} and {b:?} cannot be broadcast together");
        };
    }
    out
}

/// Whether `from` broadcasts to exactly `to` (numpy's rule, one way).
pub(crate) fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(&f, &t)| f == t || f == 1)
}

/// Sums `g` down to `shape`, the inverse of broadcasting `shape` up to
/// `g.shape()`: leading axes are summed away and axes of length 1 in `shape`
/// are summed with their length kept.
pub(crate) fn sum_to_shape<T: Element>(g: &Value<T>, shape: &[usize]) -> Value<T> {
    if g.shape() == shape {
        return g.clone();
    }
    let lead = g.ndim() - shape.len();
    let mut acc = g.view().to_owned();
    for _ in 0..lead {
        acc = acc.sum_axis(Axis(0));
    }
    for (i, &s) in shape.iter().enumerate() {
        if s == 1 && acc.shape()[i] != 1 {
            acc = acc.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    debug_assert_eq!(acc.shape(), shape);
    acc.into_dimensionality::<IxDyn>().expect("dynamic dimension").into_shared()
}
