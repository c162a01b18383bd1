//! Reductions: sums over axes, the inverse of broadcasting, and row sums
//! fused with an elementwise pass. Every lane-summed reduction folds its
//! eight lane sums in one order ([`fold8`]), so each gives the same bits on
//! every path.

use crate::par::{self, SendPtr};
use crate::{pool, Element, Value};
use ndarray::{Axis, IxDyn};
use smallvec::SmallVec;

/// The fold of eight lane sums, `((s0 + s4) + (s1 + s5)) + ((s2 + s6) +
/// (s3 + s7))`: the one order of every lane-summed reduction (dot products,
/// with or without intrinsics, and row sums).
#[inline(always)]
pub(crate) fn fold8<T: Element>(s: [T; 8]) -> T {
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

/// Sums `g` down to `shape`, the inverse of broadcasting `shape` up to
/// `g.shape()`: leading axes are summed away and axes of length 1 in `shape`
/// are summed with their length kept.
///
/// ```
/// use tapegrad_kernels::{ndarray::array, reduce::sum_to_shape};
/// let g = array![[1.0, 2.0], [3.0, 4.0]].into_dyn().into_shared();
/// assert_eq!(sum_to_shape(&g, &[2, 1]), array![[3.0], [7.0]].into_dyn());
/// assert_eq!(sum_to_shape(&g, &[2]), array![4.0, 6.0].into_dyn());
/// ```
pub fn sum_to_shape<T: Element>(g: &Value<T>, shape: &[usize]) -> Value<T> {
    if g.shape() == shape {
        return g.clone();
    }
    if let ([n, m], [n2, 1], Some(s)) = (g.shape(), shape, g.as_slice())
        && n == n2
        && *m > 1
    {
        return row_sums(s, *n, *m);
    }
    // Axes to sum: the leading extra ones, and those of length 1 in `shape`.
    let lead = g.ndim() - shape.len();
    let axes: SmallVec<[usize; 4]> =
        (0..g.ndim()).filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)).collect();
    sum_axes(g.view(), &axes, shape)
}

/// The sums of the rows of a row-major (n, m) array, as an (n, 1) array
/// (the guide's db), by [`row_sum`]; blocks of rows on separate cores
/// when large.
fn row_sums<T: Element>(s: &[T], n: usize, m: usize) -> Value<T> {
    pool::value_with(&[n, 1], |out| {
        let dst = SendPtr(out.as_mut_ptr().cast::<T>());
        par::rows(n, m, &|r0, r1| {
            for r in r0..r1 {
                let t = row_sum(&s[r * m..(r + 1) * m]);
                // SAFETY: row r of `out` (length n) is written by this
                // block only; every row is written (m > 1 here).
                unsafe { *dst.get().add(r) = t };
            }
        });
    })
}

/// The sum of one row: eight partial sums (lane `l` takes the terms
/// `8q + l`), so the loop vectorises, folded by
/// [`fold8`](fold8), then the tail in order. One order for
/// every row sum, fused or not.
#[inline(always)]
fn row_sum<T: Element>(row: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] = acc[l] + c[l];
        }
    }
    let mut t = fold8(acc);
    for &v in chunks.remainder() {
        t = t + v;
    }
    t
}

/// `r = f(a, b)` elementwise over row-major (n, m) slices, and the row
/// sums of `r` as an (n, 1) array, in one pass over memory: each row of
/// `r` is summed by [`row_sum`] right after it is written, while it is
/// still in cache, so the sums equal [`sum_to_shape`] on `r` bit for bit.
/// Blocks of rows run on separate cores when large. For backward rules
/// that need a gradient and its bias gradient (affine_relu's
/// `dZ = G * [A > 0]` and `db`).
///
/// # Panics
/// When `a` or `b` does not hold `n * m` elements.
///
/// ```
/// use tapegrad_kernels::reduce::zip_row_sums;
/// let (r, s) = zip_row_sums(&[1.0, 2.0, 3.0, 4.0], &[1.0, 0.0, 1.0, 1.0], 2, 2, |g, y| g * y);
/// assert_eq!(r.as_slice(), Some(&[1.0, 0.0, 3.0, 4.0][..]));
/// assert_eq!(s.as_slice(), Some(&[1.0, 7.0][..]));
/// ```
pub fn zip_row_sums<T: Element>(
    a: &[T],
    b: &[T],
    n: usize,
    m: usize,
    f: impl Fn(T, T) -> T + Sync,
) -> (Value<T>, Value<T>) {
    assert!(a.len() == n * m && b.len() == n * m, "zip_row_sums: length mismatch");
    let mut rows = None;
    let sums = pool::value_with(&[n, 1], |sums| {
        rows = Some(pool::value_with(&[n, m], |r| zip_rows(a, b, r, sums, n, m, &f)));
    });
    (rows.expect("written above"), sums)
}

/// [`zip_row_sums`] into `r` (n * m) and `sums` (n), every element of both
/// written.
fn zip_rows<T: Element>(
    a: &[T],
    b: &[T],
    r: &mut [std::mem::MaybeUninit<T>],
    sums: &mut [std::mem::MaybeUninit<T>],
    n: usize,
    m: usize,
    f: &(impl Fn(T, T) -> T + Sync),
) {
    if m == 0 {
        for s in sums.iter_mut() {
            s.write(T::zero());
        }
        return;
    }
    let (rp, sp) = (SendPtr(r.as_mut_ptr().cast::<T>()), SendPtr(sums.as_mut_ptr().cast::<T>()));
    par::rows(n, m, &|r0, r1| {
        for row in r0..r1 {
            let (ar, br) = (&a[row * m..(row + 1) * m], &b[row * m..(row + 1) * m]);
            // SAFETY: `r` holds n * m elements, and row `row` of it (m
            // elements from row * m) is written by this block only.
            let out = unsafe {
                std::slice::from_raw_parts_mut(rp.get().add(row * m).cast::<std::mem::MaybeUninit<T>>(), m)
            };
            for ((o, &x), &y) in out.iter_mut().zip(ar).zip(br) {
                o.write(f(x, y));
            }
            // SAFETY: every element of the row was written just above.
            let done = unsafe { std::slice::from_raw_parts(rp.get().add(row * m), m) };
            let t = row_sum(done);
            // SAFETY: sums[row] (length n) is written by this block only.
            unsafe { *sp.get().add(row) = t };
        }
    });
}

/// Sums `x` over `axes` (sorted) and gives the result `shape` (which must
/// hold the same number of elements as the reduced array). Works on the
/// view: nothing is copied before reducing.
///
/// ```
/// use tapegrad_kernels::{ndarray::array, reduce::sum_axes};
/// let x = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// assert_eq!(sum_axes(x.view(), &[0], &[1, 2]), array![[4.0, 6.0]].into_dyn());
/// ```
pub fn sum_axes<T: Element>(x: ndarray::ArrayViewD<'_, T>, axes: &[usize], shape: &[usize]) -> Value<T> {
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

#[cfg(test)]
mod tests {
    use crate::testutil::random;

    /// The fused pass gives the same values as `zip` and the same row sums
    /// as `sum_to_shape` on them, bit for bit: rows shorter than a lane
    /// block, with a tail, exact multiples of 8, and large enough to be
    /// split across cores; with a relu mask, as affine_relu uses it.
    #[test]
    fn zip_row_sums_matches_zip_then_sum_to() {
        let mask = |g: f64, y: f64| if y > 0.0 { g } else { 0.0 };
        for (i, &(n, m)) in [(1, 2), (3, 5), (4, 8), (7, 61), (40, 2_000), (300, 1_001)].iter().enumerate() {
            let g = random(&[n, m], 500 + i as u64).into_shared();
            let y = random(&[n, m], 600 + i as u64).into_shared();
            let (r, s) = super::zip_row_sums(g.as_slice().unwrap(), y.as_slice().unwrap(), n, m, mask);
            let want = crate::elementwise::zip("test", &g, &y, mask);
            assert_eq!(r, want, "values, ({n}, {m})");
            assert_eq!(s, super::sum_to_shape(&want, &[n, 1]), "row sums, ({n}, {m})");
            assert_eq!(s.shape(), &[n, 1]);
        }
    }
}
