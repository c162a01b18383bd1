//! The compute layer of tapegrad: what runs when an op computes a value or
//! a backward rule computes a gradient, with no notion of either.
//!
//! This crate knows nothing of tapes, tensors, ops or gradients: it takes
//! arrays and gives arrays. `tapegrad-tensor` builds the autodiff on it.
//!
//! - [`Element`]: the element types, `f32` and `f64` (sealed);
//! - [`shape`]: numpy broadcasting of shapes;
//! - [`elementwise`]: `map` and `zip` (broadcasting), on all cores when
//!   large;
//! - [`reduce`]: sums over axes, the inverse of broadcasting, row sums
//!   fused with an elementwise pass;
//! - [`product`]: matrix products with a bias, relu or gate applied as they
//!   are stored, on the kernels the shape and the CPU call for;
//! - [`pool`]: per-thread buffers, reused instead of allocated;
//! - [`threads`]: how many threads large loops are split across;
//! - [`cpu`]: which kernels this CPU runs, and the switch that forces a
//!   path (`TAPEGRAD_KERNELS`).
//!
//! ```
//! use tapegrad_kernels::{elementwise::zip, ndarray::array, product::affine};
//! let w = array![[1.0, 2.0]];
//! let x = array![[1.0, -1.0], [1.0, 0.0]];
//! let z = affine(w.view(), x.view(), Some(array![[0.5]].view()), true);
//! assert_eq!(z, array![[3.5, 0.0]]);
//! let twice = zip("add", &z.clone().into_dyn().into_shared(), &z.into_dyn().into_shared(), |a, b| a + b);
//! assert_eq!(twice[[0, 0]], 7.0);
//! ```
#![warn(missing_docs)]

mod cache;
pub mod cpu;
mod element;
pub mod elementwise;
mod operand;
mod par;
pub mod pool;
pub mod product;
pub mod reduce;
pub mod shape;
#[cfg(test)]
mod testutil;
mod thin;
mod tiled;

pub use element::Element;
pub use ndarray;
pub use shape::Shape;

/// A value: a dynamic-rank array whose buffer is shared by reference
/// count, so handing it out, transposing it or slicing it does not copy
/// the data.
///
/// ```
/// use tapegrad_kernels::{ndarray::IxDyn, Value};
/// let v = Value::<f64>::zeros(IxDyn(&[2, 3]));
/// let shared = v.clone(); // the same buffer
/// assert_eq!(shared.as_ptr(), v.as_ptr());
/// ```
pub type Value<T> = ndarray::ArcArray<T, ndarray::IxDyn>;

/// How many threads large loops use: the calling thread plus a pool of
/// workers. Elementwise loops over at least 64 Ki elements and matrix
/// products of at least 128 Ki multiply-adds are split across them; smaller
/// work runs on the caller alone. One per core unless the environment
/// variable `TAPEGRAD_THREADS` (read once, at the first large loop) gives a
/// positive number; `TAPEGRAD_THREADS=1` makes every loop single-threaded.
/// Results never depend on the number of threads.
///
/// ```
/// assert!(tapegrad_kernels::threads() >= 1);
/// ```
pub fn threads() -> usize {
    par::threads()
}
