//! Tensors, the tape, the differentiable ops and gradcheck of tapegrad.
//!
//! Write the forward computation with tensor ops; each op is computed at
//! once and recorded on a [`Tape`]; [`Tape::backward`] walks the record in
//! reverse and returns every gradient by the chain rule. A new activation
//! needs no derivative: swish is `x * sigmoid(x)`, and its gradient comes
//! out right.
//!
//! ```
//! use tapegrad_tensor::{ndarray::array, Tape};
//!
//! let tape = Tape::<f64>::new();
//! let x = tape.var(array![[-2.0, -0.5, 0.0, 0.5, 3.0]]);
//! let swish = x * x.sigmoid();
//! let grads = tape.backward(swish.sum());
//!
//! // Analytic: d/dx x s(x) = s(x) + x s(x) (1 - s(x)).
//! for (&v, &g) in x.value().iter().zip(grads[x].iter()) {
//!     let s = 1.0 / (1.0 + (-v).exp());
//!     approx::assert_abs_diff_eq!(g, s + v * s * (1.0 - s), epsilon = 1e-15);
//! }
//! ```
//!
//! Values are [`ndarray`] arrays of `f32` or `f64` ([`Element`]) of any rank,
//! combined by numpy's broadcasting rules. A shape mismatch inside an
//! expression is a programming error: the op panics at once, naming itself
//! and both shapes, at the caller's line.
//!
//! Gradients of gradients: [`Tape::grad_graph`] records the backward pass
//! on the tape, so a gradient can be differentiated again, to any order;
//! [`hvp`], [`hessian`] and [`derivatives`] are built on it, and
//! [`gradgradcheck`] checks second derivatives. Forward mode: [`jvp`]
//! carries tangents through each op. When training diverges,
//! [`Tape::trace_nonfinite`] names the first op (and its source line) that
//! produced a NaN or an infinity.
//!
//! Check any function's gradients with [`gradcheck`], and look at what was
//! recorded with [`Tape::to_dot`].
#![warn(missing_docs)]

mod backward;
mod gradcheck;
mod higher;
mod ops;
mod plan;
#[cfg(test)]
mod registry;
mod repr;
mod tape;
#[cfg(test)]
mod testutil;
mod trace;

pub use ndarray;

pub use backward::{GradGraph, Gradients};
pub use gradcheck::{gradcheck, gradcheck_with, GradcheckOptions, GradcheckReport, InputCheck};
pub use higher::{derivatives, gradgradcheck, hessian, hvp, jvp};
pub use ops::custom::{CustomOp, FirstOrderOp};
pub use ops::select::Comparand;
pub use plan::{Arg, Plan, PlanError, StepFn};
pub use tape::{IntoValue, Tape, Tensor};
pub use tapegrad_kernels::{cpu, threads, Element, Value};
pub use trace::{NonFiniteReport, Phase};
