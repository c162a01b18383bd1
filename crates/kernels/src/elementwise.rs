//! Elementwise kernels: one function of one value, or of two values
//! broadcast together by numpy's rules, into pooled buffers, on all cores
//! when large. Results do not depend on how a loop is split.

use crate::shape::{self, broadcast_shapes};
use crate::{par, pool, Element, Value};
use ndarray::{Axis, IxDyn, Zip};

/// Applies `f` to every element (on all cores when large), into a pooled
/// buffer in standard layout.
///
/// ```
/// use tapegrad_kernels::{elementwise::map, ndarray::array};
/// let x = array![[1.0, -2.0]].into_dyn().into_shared();
/// assert_eq!(map(&x, |v: f64| v.abs()), array![[1.0, 2.0]].into_dyn());
/// ```
#[inline]
pub fn map<T: Element>(x: &Value<T>, f: impl Fn(T) -> T + Sync) -> Value<T> {
    match x.as_slice() {
        Some(s) => pool::value_with(x.shape(), |out| {
            par::fill(out, |start, out| {
                let src = &s[start..start + out.len()];
                for (o, &a) in out.iter_mut().zip(src) {
                    o.write(f(a));
                }
            })
        }),
        // In logical (row-major) order, as the result is laid out.
        None => pool::value_with(x.shape(), |out| {
            for (o, &a) in out.iter_mut().zip(x.iter()) {
                o.write(f(a));
            }
        }),
    }
}

/// Applies `f` elementwise to `a` and `b` broadcast together (numpy rules),
/// on all cores when large.
///
/// # Panics
/// When the shapes do not broadcast, naming `op` and both shapes.
///
/// ```
/// use tapegrad_kernels::{elementwise::zip, ndarray::array};
/// let z = array![[1.0, 2.0], [3.0, 4.0]].into_dyn().into_shared();
/// let b = array![[10.0], [20.0]].into_dyn().into_shared();
/// assert_eq!(zip("add", &z, &b, |x, y| x + y), array![[11.0, 12.0], [23.0, 24.0]].into_dyn());
/// ```
#[track_caller]
#[inline]
pub fn zip<T: Element>(op: &str, a: &Value<T>, b: &Value<T>, f: impl Fn(T, T) -> T + Sync) -> Value<T> {
    if shape::same(a.shape(), b.shape())
        && let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice())
    {
        return pool::value_with(a.shape(), |out| {
            par::fill(out, |start, out| {
                let end = start + out.len();
                for ((o, &x), &y) in out.iter_mut().zip(&sa[start..end]).zip(&sb[start..end]) {
                    o.write(f(x, y));
                }
            })
        });
    }
    let shape = broadcast_shapes(op, a.shape(), b.shape());
    let av = a.broadcast(IxDyn(&shape)).expect("checked broadcast");
    let bv = b.broadcast(IxDyn(&shape)).expect("checked broadcast");
    if shape.len() == 2 {
        // Row by row: each row of either side is contiguous or a repeated
        // value (the guide's (n, m) + (n, 1) bias), so the inner loop is a
        // plain slice loop into a pooled buffer.
        let (n, m) = (shape[0], shape[1]);
        return pool::value_with(&shape, |v| {
            let out = par::SendPtr(v.as_mut_ptr().cast::<T>());
            par::rows(n, m, &|r0, r1| {
                for r in r0..r1 {
                    let (ra, rb) = (av.index_axis(Axis(0), r), bv.index_axis(Axis(0), r));
                    // SAFETY: row r of the (n, m) buffer; each row is written
                    // by one worker only.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.get().add(r * m) as *mut std::mem::MaybeUninit<T>,
                            m,
                        )
                    };
                    match (ra.as_slice(), rb.as_slice(), ra.strides()[0] == 0, rb.strides()[0] == 0) {
                        (Some(sa), Some(sb), _, _) => {
                            for ((o, &x), &y) in dst.iter_mut().zip(sa).zip(sb) {
                                o.write(f(x, y));
                            }
                        }
                        (Some(sa), _, _, true) => {
                            let y = rb[0];
                            for (o, &x) in dst.iter_mut().zip(sa) {
                                o.write(f(x, y));
                            }
                        }
                        (_, Some(sb), true, _) => {
                            let x = ra[0];
                            for (o, &y) in dst.iter_mut().zip(sb) {
                                o.write(f(x, y));
                            }
                        }
                        _ => {
                            for ((o, &x), &y) in dst.iter_mut().zip(ra.iter()).zip(rb.iter()) {
                                o.write(f(x, y));
                            }
                        }
                    }
                }
            });
        });
    }
    Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)).into_shared()
}
