//! The differentiable ops. Each file holds a family of ops; each op is one
//! unit there: its struct, its forward kernel, its backward rule, the public
//! [`Tensor`](crate::Tensor) method with the formula and derivative in its
//! doc comment, and its gradcheck test.
//!
//! Backward rules are written once, against [`Backend`]: run on plain arrays
//! for an ordinary backward pass, or recorded on the tape as tensor ops for a
//! gradient that can itself be differentiated. Rules return the gradient of
//! each input, possibly in the broadcast shape; the engine reduces it to the
//! input's shape and accumulates it. Rules never accumulate.

pub(crate) mod arith;
pub(crate) mod backend;
pub(crate) mod custom;
pub(crate) mod index;
pub(crate) mod linalg;
pub(crate) mod loss;
pub(crate) mod reduce;
pub(crate) mod select;
pub(crate) mod unary;

use crate::repr::One;
use crate::{Element, Tensor, Value};
use backend::{ArrayBackend, Backend, ScalarBackend, TensorBackend};
use smallvec::SmallVec;
pub(crate) use tapegrad_kernels::elementwise::{map, zip};
use tapegrad_kernels::pool;

/// The gradients a rule returns, one per input (`None`: not needed or zero).
pub(crate) type Grads<V> = SmallVec<[Option<V>; 3]>;

/// A differentiable op: a forward kernel on values and a backward rule.
pub(crate) trait Op<T: Element>: 'static {
    /// The op's name, used in panics and DOT output.
    fn name(&self) -> &'static str;

    /// The op's label in DOT output (the name plus any parameters).
    fn label(&self) -> String {
        self.name().to_string()
    }

    /// Computes the output value from the input values.
    fn forward(&self, xs: &[&Value<T>]) -> Value<T>;

    /// The same function on one-element inputs, given as numbers, for the
    /// tape's scalar lane; `None` (the default) for an op that has no such
    /// form. Elementwise ops give their formula here, and their backward
    /// rule then also runs on numbers ([`ScalarBackend`]).
    #[inline]
    fn forward_scalar(&self, xs: &[T]) -> Option<T> {
        let _ = xs;
        None
    }

    /// Forward mode: the tangent of the output, `dy = sum_i J_i dx_i`,
    /// given the tangents of the inputs (`None`: zero). Called only when at
    /// least one tangent is given. Elementwise ops use
    /// [`jvp_elementwise`], linear ones [`jvp_linear`].
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T>;

    /// Given the inputs `xs`, the output `y` and the gradient `g` of the
    /// output, returns the gradient of each input for which `need` is true.
    fn backward<B: Backend<T>>(&self, b: &B, xs: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V>;

    /// Whether gradients flow through this op; false for an op whose output
    /// is a constant of its inputs (a stop-gradient, as the softmax
    /// family's shift): its node needs no gradient, though a replayed step
    /// computes it again.
    fn differentiable(&self) -> bool {
        true
    }

    /// Whether the rule begins `dZ = g * [y > 0]` (a ReLU's gate, read from
    /// the output): then the op that computes `g` may apply the gate for it
    /// (see [`Fusion`]).
    fn gated_output(&self) -> bool {
        false
    }

    /// Whether the rule can return the gradient of input `k` already
    /// multiplied by a gate (see [`Fusion`]).
    fn gateable_input(&self, k: usize) -> bool {
        let _ = k;
        false
    }

    /// [`backward`](Op::backward) on arrays with the fusion the engine asked
    /// for (none, for most calls); ops that declare no fusion never get
    /// asked for one and keep this plain backward.
    fn backward_fused(
        &self,
        xs: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        debug_assert!(!fusion.any(), "{}: asked for a fusion it does not declare", self.name());
        self.backward(&ArrayBackend, xs, y, g, need)
    }
}

/// What the engine asks of a rule beyond its plain backward, to skip a pass
/// over memory between two ops: when op P's rule begins by gating its
/// gradient (`dZ = g * [y > 0]`, P's [`gated_output`](Op::gated_output)),
/// and that gradient is computed by one op C alone (P's output has no other
/// use and no one asked for its gradient), C applies the gate as it writes
/// the gradient (C's [`gateable_input`](Op::gateable_input)) and P's rule
/// takes `g` as `dZ`. The gate is exact (each element kept or zeroed), so
/// the gradients are the same, bit for bit.
pub(crate) struct Fusion<'a, T: Element> {
    /// `g` has been multiplied by this op's gate already.
    pub(crate) pregated: bool,
    /// For each input, when given: return its gradient multiplied by
    /// `[gate > 0]` (the gate has the input's shape, in standard layout).
    pub(crate) gates: SmallVec<[Option<&'a Value<T>>; 3]>,
}

impl<T: Element> Fusion<'_, T> {
    /// Whether anything beyond the plain backward is asked.
    pub(crate) fn any(&self) -> bool {
        self.pregated || self.gates.iter().any(Option::is_some)
    }

    /// The gate for input `k`, if one is asked.
    pub(crate) fn gate(&self, k: usize) -> Option<&Value<T>> {
        self.gates.get(k).copied().flatten()
    }
}

/// The object-safe face of [`Op`], stored on the tape. Each method runs the
/// op's one generic backward rule on one backend.
pub(crate) trait DynOp<T: Element> {
    fn label(&self) -> String;
    fn name(&self) -> &'static str;
    /// [`Op::forward`], for a replayed step ([`crate::Plan`]).
    fn forward_values(&self, xs: &[&Value<T>]) -> Value<T>;
    /// [`Op::forward_scalar`], for a replayed step's scalar lane.
    fn forward_numbers(&self, xs: &[T]) -> Option<T>;
    fn gated_output(&self) -> bool;
    fn gateable_input(&self, k: usize) -> bool;
    fn backward_values(
        &self,
        xs: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>>;
    fn backward_tensors<'t>(
        &self,
        b: &TensorBackend<'t, T>,
        xs: &[&Tensor<'t, T>],
        y: &Tensor<'t, T>,
        g: &Tensor<'t, T>,
        need: &[bool],
    ) -> Grads<Tensor<'t, T>>;
    fn backward_scalars(&self, xs: &[&One<T>], y: &One<T>, g: &One<T>, need: &[bool]) -> Grads<One<T>>;
    /// [`DynOp::backward_scalars`] with the numbers written to `out` (a
    /// bit set in the result for each gradient given): a replayed step's
    /// scalar lane, without moving a vector of results out of the call.
    fn backward_numbers(&self, xs: &[&One<T>], y: &One<T>, g: &One<T>, need: &[bool], out: &mut [T; 4])
        -> u8;
}

impl<T: Element, O: Op<T>> DynOp<T> for O {
    fn label(&self) -> String {
        Op::label(self)
    }
    fn name(&self) -> &'static str {
        Op::name(self)
    }
    fn forward_values(&self, xs: &[&Value<T>]) -> Value<T> {
        Op::forward(self, xs)
    }
    fn forward_numbers(&self, xs: &[T]) -> Option<T> {
        Op::forward_scalar(self, xs)
    }
    fn gated_output(&self) -> bool {
        Op::gated_output(self)
    }
    fn gateable_input(&self, k: usize) -> bool {
        Op::gateable_input(self, k)
    }
    fn backward_values(
        &self,
        xs: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        self.backward_fused(xs, y, g, need, fusion)
    }
    fn backward_tensors<'t>(
        &self,
        b: &TensorBackend<'t, T>,
        xs: &[&Tensor<'t, T>],
        y: &Tensor<'t, T>,
        g: &Tensor<'t, T>,
        need: &[bool],
    ) -> Grads<Tensor<'t, T>> {
        self.backward(b, xs, y, g, need)
    }
    fn backward_scalars(&self, xs: &[&One<T>], y: &One<T>, g: &One<T>, need: &[bool]) -> Grads<One<T>> {
        self.backward(&ScalarBackend, xs, y, g, need)
    }
    fn backward_numbers(
        &self,
        xs: &[&One<T>],
        y: &One<T>,
        g: &One<T>,
        need: &[bool],
        out: &mut [T; 4],
    ) -> u8 {
        let mut given = 0;
        for (k, gk) in self.backward(&ScalarBackend, xs, y, g, need).into_iter().enumerate().take(4) {
            if let Some(gk) = gk {
                out[k] = gk.v;
                given |= 1 << k;
            }
        }
        given
    }
}

/// `op` on one-element inputs given as numbers: `None` when an input is
/// not a number, when there are more than 4 inputs, or when the op has no
/// scalar form. The result has the largest rank among the inputs.
#[inline]
pub(crate) fn run_scalar<T: Element, O: Op<T>>(
    op: &O,
    xs: impl IntoIterator<Item = Option<One<T>>>,
) -> Option<One<T>> {
    let mut numbers = [T::zero(); 4];
    let (mut count, mut ndim) = (0, 0);
    for x in xs {
        let x = x?;
        *numbers.get_mut(count)? = x.v;
        count += 1;
        ndim = ndim.max(x.ndim);
    }
    Some(One { v: op.forward_scalar(&numbers[..count])?, ndim })
}

/// The gradients of a unary op whose rule is `g * d`, where `d` is computed
/// by `d` only when the input needs a gradient.
#[inline]
pub(crate) fn unary_grad<V>(need: &[bool], d: impl FnOnce() -> V) -> Grads<V> {
    let mut out = Grads::new();
    out.push(if need[0] { Some(d()) } else { None });
    out
}

/// Forward mode for an elementwise op (its Jacobian with respect to each
/// input is diagonal in the broadcast shape): the backward rule applied to
/// the tangent gives the tangent's image, `dy = sum_i rule_i(dx_i)`.
pub(crate) fn jvp_elementwise<T: Element, O: Op<T>>(
    op: &O,
    xs: &[&Value<T>],
    y: &Value<T>,
    dx: &[Option<&Value<T>>],
) -> Value<T> {
    let b = ArrayBackend;
    let mut out: Option<Value<T>> = None;
    for (i, d) in dx.iter().enumerate() {
        let Some(d) = d else { continue };
        let mut need: SmallVec<[bool; 2]> = SmallVec::from_elem(false, xs.len());
        need[i] = true;
        let g = if d.shape() == y.shape() {
            (*d).clone()
        } else {
            pool::to_value(d.broadcast(y.raw_dim()).expect("an input broadcasts to the output").view())
        };
        let gi =
            op.backward(&b, xs, y, &g, &need).swap_remove(i).expect("the rule returns the needed gradient");
        out = Some(match out {
            None => gi,
            Some(acc) => zip("jvp", &acc, &gi, |a, b| a + b),
        });
    }
    out.expect("jvp is called with at least one tangent")
}

/// Forward mode for a linear op: the op itself applied to the tangents
/// (zeros for inputs without one).
pub(crate) fn jvp_linear<T: Element, O: Op<T>>(
    op: &O,
    xs: &[&Value<T>],
    dx: &[Option<&Value<T>>],
) -> Value<T> {
    let filled: SmallVec<[Value<T>; 2]> = xs
        .iter()
        .zip(dx)
        .map(|(x, d)| match d {
            Some(d) => (*d).clone(),
            None => Value::zeros(x.raw_dim()),
        })
        .collect();
    let refs: SmallVec<[&Value<T>; 2]> = filled.iter().collect();
    op.forward(&refs)
}
