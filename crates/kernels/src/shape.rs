//! Shapes: numpy broadcasting of two shapes, and shape equality. Pure
//! shape logic: no arrays.

use smallvec::SmallVec;

/// A shape stored inline for up to 4 axes.
///
/// ```
/// let s: tapegrad_kernels::Shape = [2, 3].into_iter().collect();
/// assert_eq!(s.len(), 2);
/// ```
pub type Shape = SmallVec<[usize; 4]>;

/// The numpy broadcast of two shapes: axes are aligned from the right, and a
/// pair is compatible when equal or when one of them is 1.
///
/// # Panics
/// When the shapes are incompatible, naming `op` and both shapes.
///
/// ```
/// use tapegrad_kernels::shape::broadcast_shapes;
/// assert_eq!(broadcast_shapes("add", &[3, 1], &[4]).as_slice(), &[3, 4]);
/// ```
#[track_caller]
pub fn broadcast_shapes(op: &str, a: &[usize], b: &[usize]) -> Shape {
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
///
/// ```
/// use tapegrad_kernels::shape::broadcasts_to;
/// assert!(broadcasts_to(&[3, 1], &[2, 3, 4]));
/// assert!(!broadcasts_to(&[3, 2], &[3, 4]));
/// ```
pub fn broadcasts_to(from: &[usize], to: &[usize]) -> bool {
    from.len() <= to.len() && from.iter().rev().zip(to.iter().rev()).all(|(&f, &t)| f == t || f == 1)
}

/// Whether two shapes are equal: a plain loop, cheaper than a call to
/// `memcmp` for the few dimensions a shape has.
///
/// ```
/// assert!(tapegrad_kernels::shape::same(&[2, 3], &[2, 3]));
/// assert!(!tapegrad_kernels::shape::same(&[2, 3], &[3, 2]));
/// ```
#[inline(always)]
pub fn same(a: &[usize], b: &[usize]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut eq = true;
    for i in 0..a.len() {
        eq &= a[i] == b[i];
    }
    eq
}
