//! Reports of the first NaN or infinity seen while tracing.

use std::fmt;
use std::panic::Location;

/// Whether a non-finite value appeared computing a value or a gradient.
///
/// ```
/// assert_eq!(tapegrad_tensor::Phase::Forward.to_string(), "forward pass");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// In an op's value.
    Forward,
    /// In a gradient computed by an op's backward rule.
    Backward,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Forward => "forward pass",
            Phase::Backward => "backward pass",
        })
    }
}

/// The first op that produced a NaN or an infinity while tracing was on
/// (see [`Tape::trace_nonfinite`](crate::Tape::trace_nonfinite)).
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let tape = Tape::<f64>::new();
/// tape.trace_nonfinite(true);
/// let x = tape.var(arr1(&[-1.0]));
/// let _ = x.sqrt();
/// let r = tape.nonfinite().unwrap();
/// assert!(r.to_string().starts_with("sqrt produced NaN in the forward pass at "));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NonFiniteReport {
    /// The op's name (`"log"`, `"div"`, ...), or `"var"`/`"constant"` for a
    /// leaf that was given a non-finite value.
    pub op: &'static str,
    /// Forward value or gradient.
    pub phase: Phase,
    /// The node's position on the tape.
    pub node: usize,
    /// The first non-finite element (NaN, inf or -inf).
    pub value: f64,
    /// The shapes of the op's inputs.
    pub input_shapes: Vec<Vec<usize>>,
    /// The shape of the value (or gradient) that held it.
    pub output_shape: Vec<usize>,
    /// Where the op was recorded: the line that called it.
    pub location: &'static Location<'static>,
}

impl fmt::Display for NonFiniteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} produced {} in the {} at {}:{}:{} (node #{}, inputs {:?}, output {:?})",
            self.op,
            self.value,
            self.phase,
            self.location.file(),
            self.location.line(),
            self.location.column(),
            self.node,
            self.input_shapes,
            self.output_shape
        )
    }
}
