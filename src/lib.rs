//! tapegrad: tape-based reverse-mode automatic differentiation over
//! [`ndarray`](tensor::ndarray), and the guide's L-layer network built on it.
//!
//! This facade re-exports the member crates:
//! - [`tensor`]: tensors, the tape, the ops and [`tensor::gradcheck`];
//! - [`nn`]: the model, activations, losses, initialisers, optimizers,
//!   metrics and model files.
//!
//! ```
//! use tapegrad::tensor::{ndarray::arr2, Tape};
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.var(arr2(&[[0.5, -1.0]]));
//! let y = (x * x.sigmoid()).sum(); // swish, no derivative written
//! let grads = tape.backward(y);
//! assert_eq!(grads[x].shape(), &[1, 2]);
//! ```
#![warn(missing_docs)]

pub use tapegrad_nn as nn;
pub use tapegrad_tensor as tensor;

/// The README's Rust examples, compiled and run as doctests so they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
