//! How the tape holds a value or a gradient: a one-element value as the
//! number itself, anything else as an array.
//!
//! A one-element value (every axis of length 1) is held as its number and
//! its rank, so an op on such values (W4's chain of (1, 1) tensors, a loss,
//! a user's scalar experiment) computes and records a number: no array, no
//! reference count, no pool. Its array is built only when someone asks
//! for it ([`Repr::value`]), once, and then kept with the number.

use crate::{Element, Value};
use ndarray::IxDyn;
use std::cell::OnceCell;
use tapegrad_kernels::Shape;

/// The largest rank a one-element value is held inline with; higher ranks
/// stay arrays.
pub(crate) const MAX_NDIM: usize = 16;

/// The shape of a one-element value of rank `ndim` (at most [`MAX_NDIM`]).
static ONES: [usize; MAX_NDIM] = [1; MAX_NDIM];

/// A one-element value: the number and the rank (every axis has length 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct One<T> {
    pub(crate) v: T,
    pub(crate) ndim: u32,
}

impl<T: Element> One<T> {
    /// Its shape: `ndim` ones.
    #[inline]
    pub(crate) fn shape(&self) -> &'static [usize] {
        &ONES[..self.ndim as usize]
    }

    /// A new array holding the number.
    pub(crate) fn to_value(self) -> Value<T> {
        tapegrad_kernels::pool::fill_small(self.shape(), |o| o[0] = self.v)
            .unwrap_or_else(|| Value::from_elem(IxDyn(self.shape()), self.v))
    }
}

/// A value or gradient as the tape holds it: 32 bytes (arrays are boxed),
/// so the tape's nodes and the engine's gradient slots stay small.
pub(crate) enum Repr<T: Element> {
    /// One element: the number, and its array once one has been asked for.
    One(One<T>, OnceCell<Box<Value<T>>>),
    /// Any other value.
    Many(Box<Value<T>>),
}

impl<T: Element> Repr<T> {
    /// Holds `v`, as a number when it has one element.
    #[inline]
    pub(crate) fn new(v: Value<T>) -> Self {
        if v.len() == 1 && v.ndim() <= MAX_NDIM {
            let one = One { v: *v.iter().next().expect("one element"), ndim: v.ndim() as u32 };
            Repr::One(one, OnceCell::from(tapegrad_kernels::pool::boxed(v)))
        } else {
            Repr::Many(tapegrad_kernels::pool::boxed(v))
        }
    }

    /// Holds a number.
    #[inline]
    pub(crate) fn one(one: One<T>) -> Self {
        Repr::One(one, OnceCell::new())
    }

    /// The number, when the value has one element.
    #[inline]
    pub(crate) fn as_one(&self) -> Option<One<T>> {
        match self {
            Repr::One(one, _) => Some(*one),
            Repr::Many(_) => None,
        }
    }

    /// The value as an array, built on first use for a number.
    #[inline]
    pub(crate) fn value(&self) -> &Value<T> {
        match self {
            Repr::One(one, cell) => cell.get_or_init(|| tapegrad_kernels::pool::boxed(one.to_value())),
            Repr::Many(v) => v,
        }
    }

    /// The shape.
    #[inline]
    pub(crate) fn shape(&self) -> Shape {
        Shape::from_slice(self.shape_ref())
    }

    /// The shape, borrowed.
    #[inline]
    pub(crate) fn shape_ref(&self) -> &[usize] {
        match self {
            Repr::One(one, _) => one.shape(),
            Repr::Many(v) => v.shape(),
        }
    }

    /// The boxed array this holds, if any, for the pool.
    #[inline]
    pub(crate) fn into_box(self) -> Option<Box<Value<T>>> {
        match self {
            Repr::One(_, cell) => cell.into_inner(),
            Repr::Many(v) => Some(v),
        }
    }

    /// Whether this has the shape `shape`.
    #[inline]
    pub(crate) fn has_shape(&self, shape: &[usize]) -> bool {
        match self {
            Repr::One(one, _) => one.ndim as usize == shape.len() && shape.iter().all(|&d| d == 1),
            Repr::Many(v) => tapegrad_kernels::shape::same(v.shape(), shape),
        }
    }

    /// This gradient summed down to `shape` (see
    /// [`sum_to_shape`](tapegrad_kernels::reduce::sum_to_shape)).
    pub(crate) fn sum_to(&self, shape: &[usize]) -> Self {
        match self {
            Repr::One(one, _) if shape.len() <= MAX_NDIM && shape.iter().all(|&d| d == 1) => {
                Repr::one(One { v: one.v, ndim: shape.len() as u32 })
            }
            _ => Repr::new(tapegrad_kernels::reduce::sum_to_shape(self.value(), shape)),
        }
    }

    /// Adds `g`, of the same shape, into this gradient: in place for an
    /// unshared array, as a number for a number.
    pub(crate) fn accumulate(&mut self, g: Self) {
        match (&mut *self, g) {
            (Repr::One(acc, cell), Repr::One(g, gcell)) => {
                acc.v = acc.v + g.v;
                // The array, if one was built, no longer matches the number.
                if cell.get().is_some() || gcell.get().is_some() {
                    tapegrad_kernels::pool::recycle_boxes(cell.take().into_iter().chain(gcell.into_inner()));
                }
            }
            (Repr::Many(acc), Repr::Many(g)) => {
                if tapegrad_kernels::shape::same(acc.shape(), g.shape()) {
                    if let (Some(a), Some(b)) = (acc.as_slice_mut(), g.as_slice()) {
                        // Copy-on-write (as_slice_mut): in place unless the
                        // buffer is shared. Contiguous, so a plain loop.
                        for (a, &b) in a.iter_mut().zip(b) {
                            *a = *a + b;
                        }
                        tapegrad_kernels::pool::recycle_boxes(std::iter::once(g));
                        return;
                    }
                    acc.zip_mut_with(&g, |a, &b| *a = *a + b);
                } else {
                    **acc = tapegrad_kernels::elementwise::zip("accumulate", acc, &g, |a, b| a + b);
                }
            }
            (acc, g) => {
                let sum =
                    tapegrad_kernels::elementwise::zip("accumulate", acc.value(), g.value(), |a, b| a + b);
                *acc = Repr::new(sum);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tape;
    use ndarray::{arr0, arr2};

    #[test]
    fn numbers_mix_with_arrays_and_keep_their_shape() {
        let tape = Tape::<f64>::new();
        let a = tape.var(arr2(&[[2.0]]));
        let m = tape.var(arr2(&[[1.0, 2.0], [3.0, 4.0]]));
        let s = tape.var(arr0(0.5));
        let y = (m * a + s).sum();
        assert_eq!(y.shape(), Vec::<usize>::new());
        let g = tape.backward(y);
        // Each one-element input gets its gradient summed to its own shape.
        assert_eq!(g[a], arr2(&[[10.0]]).into_dyn().into_shared());
        assert_eq!(g[s].shape(), &[] as &[usize]);
        assert_eq!(g[s][[]], 4.0);
        assert_eq!(g[m], arr2(&[[2.0, 2.0], [2.0, 2.0]]).into_dyn().into_shared());
        // A number's array is built once and then shared.
        let z = a * a;
        assert_eq!(z.value().as_ptr(), z.value().as_ptr());
        assert_eq!(z.value(), arr2(&[[4.0]]).into_dyn().into_shared());
    }

    #[test]
    fn one_element_values_are_held_as_numbers_of_their_rank() {
        let r = Repr::new(arr2(&[[2.5f64]]).into_dyn().into_shared());
        assert_eq!(r.as_one(), Some(One { v: 2.5, ndim: 2 }));
        assert_eq!(r.shape_ref(), &[1, 1]);
        let s = Repr::<f64>::new(arr0(1.0).into_dyn().into_shared());
        assert_eq!(s.shape_ref(), &[] as &[usize]);
        let m = Repr::new(arr2(&[[1.0f64, 2.0]]).into_dyn().into_shared());
        assert!(m.as_one().is_none());
        // Built on demand, once.
        let n = Repr::<f32>::one(One { v: 3.0, ndim: 3 });
        assert_eq!(n.value().shape(), &[1, 1, 1]);
        assert_eq!(n.value().as_ptr(), n.value().as_ptr());
        assert_eq!(n.value()[[0, 0, 0]], 3.0);
    }

    #[test]
    fn accumulating_a_number_drops_its_stale_array() {
        let mut acc = Repr::<f64>::one(One { v: 1.0, ndim: 2 });
        let _ = acc.value();
        acc.accumulate(Repr::one(One { v: 2.0, ndim: 2 }));
        assert_eq!(acc.value()[[0, 0]], 3.0);
        assert!(acc.has_shape(&[1, 1]) && !acc.has_shape(&[1]));
        let back = acc.sum_to(&[1]);
        assert_eq!(back.as_one(), Some(One { v: 3.0, ndim: 1 }));
    }
}
