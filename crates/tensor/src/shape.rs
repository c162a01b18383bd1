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
    if let ([n, m], [n2, 1], Some(s)) = (g.shape(), shape, g.as_slice()) {
        if n == n2 && *m > 1 {
            return row_sums(s, *n, *m);
        }
    }
    // Axes to sum: the leading extra ones, and those of length 1 in `shape`.
    let lead = g.ndim() - shape.len();
    let axes: SmallVec<[usize; 4]> =
        (0..g.ndim()).filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)).collect();
    sum_axes(g.view(), &axes, shape)
}

/// Whether two shapes are equal: a plain loop, cheaper than a call to
/// `memcmp` for the few dimensions a shape has.
#[inline(always)]
pub(crate) fn same(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut eq = true;
    for i in 0..a.len() {
        eq &= a[i] == b[i];
    }
    eq
}

/// The sums of the rows of a row-major (n, m) array, as an (n, 1) array
/// (the guide's db): eight partial sums per row, so the loop vectorises,
/// and blocks of rows on separate cores when large.
fn row_sums<T: Element>(s: &[T], n: usize, m: usize) -> Value<T> {
    let mut out = vec![T::zero(); n];
    let dst = crate::par::SendPtr(out.as_mut_ptr());
    crate::par::rows(n, m, &|r0, r1| {
        for r in r0..r1 {
            let row = &s[r * m..(r + 1) * m];
            let mut acc = [T::zero(); 8];
            let mut chunks = row.chunks_exact(8);
            for c in &mut chunks {
                for l in 0..8 {
                    acc[l] = acc[l] + c[l];
                }
            }
            let mut t = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            for &v in chunks.remainder() {
                t = t + v;
            }
            // SAFETY: row r of `out` (length n) is written by this block only.
            unsafe { *dst.get().add(r) = t };
        }
    });
    Value::from_shape_vec(IxDyn(&[n, 1]), out).expect("n elements")
}

/// Sums `x` over `axes` (sorted) and gives the result `shape` (which must
/// hold the same number of elements as the reduced array). Works on the
/// view: nothing is copied before reducing.
pub(crate) fn sum_axes<T: Element>(
    x: ndarray::ArrayViewD<'_, T>,
    axes: &[usize],
    shape: &[usize],
) -> Value<T> {
    let mut acc: Option<ndarray::ArrayD<T>> = None;
    for &ax in axes.iter().rev() {
        acc = Some(match acc {
            None => x.sum_axis(Axis(ax)),
            Some(a) => a.sum_axis(Axis(ax)),
        });
    }
    let acc = acc.unwrap_or_else(|| x.to_owned());
    let acc = if acc.is_standard_layout() { acc } else { acc.as_standard_layout().into_owned() };
    acc.into_shape_with_order(IxDyn(shape)).expect("same number of elements").into_shared()
}
