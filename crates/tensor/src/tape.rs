//! The tape: a define-by-run record of every op, and the tensor handles that
//! point into it.

use crate::ops::{DynOp, Op};
use crate::repr::Repr;
use crate::trace::{NonFiniteReport, Phase};
use crate::{Element, Value};
use ndarray::{ArcArray, ArrayBase, Data, Dimension, IxDyn, OwnedArcRepr, OwnedRepr};
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::panic::Location;
use tapegrad_kernels::Shape;

/// One recorded value: a leaf (no op) or the result of an op on earlier nodes.
pub(crate) struct Node<T: Element> {
    /// The value: a number when it has one element.
    pub(crate) value: Repr<T>,
    /// The op that produced this value; `None` for leaves, constants and
    /// values recorded with gradients off. A node with an op requires grad.
    pub(crate) op: Option<Box<dyn DynOp<T>>>,
    pub(crate) inputs: SmallVec<[u32; 4]>,
    pub(crate) requires_grad: bool,
    /// Computed in the scalar lane (an op with a scalar form, on numbers),
    /// so its backward rule runs on numbers too.
    pub(crate) scalar: bool,
    pub(crate) name: &'static str,
    pub(crate) location: &'static Location<'static>,
}

/// A define-by-run tape: every op on its [`Tensor`]s is computed at once and
/// recorded, and [`Tape::backward`] replays the record in reverse to get
/// gradients by the chain rule.
///
/// A tape is cheap to reuse: [`Tape::clear`] drops the record but keeps its
/// storage, so a training loop allocates the node list once.
///
/// ```
/// use tapegrad_tensor::{ndarray::arr2, Tape};
///
/// let tape = Tape::<f64>::new();
/// let w = tape.var(arr2(&[[2.0]]));
/// let x = tape.constant(arr2(&[[3.0]]));
/// let y = (w * x + 1.0).tanh().sum();
/// let grads = tape.backward(y);
/// let expected = 3.0 * (1.0 - 7.0f64.tanh().powi(2));
/// assert!((grads[w][[0, 0]] - expected).abs() < 1e-15);
/// assert!(grads.get(x).is_none()); // a constant gets no gradient
/// ```
pub struct Tape<T: Element> {
    pub(crate) nodes: RefCell<Vec<Node<T>>>,
    generation: Cell<u32>,
    grad_enabled: Cell<bool>,
    /// True when forward mode or NaN tracing is on: the one flag `record`
    /// tests, so both cost a single branch when off.
    observed: Cell<bool>,
    forward_mode: Cell<bool>,
    /// Tangents by node, in forward mode.
    pub(crate) tangents: RefCell<Vec<Option<Value<T>>>>,
    pub(crate) trace: Cell<bool>,
    pub(crate) report: RefCell<Option<NonFiniteReport>>,
    /// True while a [`crate::Plan`] records its step: every op is kept
    /// (also those that need no gradient, to be computed again on replay)
    /// and every read of a value is noted in `reads`.
    pub(crate) capture: Cell<bool>,
    /// The nodes whose values were read while capturing, and where.
    pub(crate) reads: RefCell<Vec<(u32, &'static Location<'static>)>>,
}

impl<T: Element> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A handle to a value recorded on a [`Tape`]. It is `Copy`, so expressions
/// read like their formulas: `x * x.sigmoid()`.
///
/// A handle is valid until its tape is [cleared](Tape::clear); using it after
/// that panics.
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let tape = Tape::<f32>::new();
/// let x = tape.var(arr1(&[1.0, 2.0]));
/// let y = 2.0 * x - 1.0;
/// assert_eq!(y.value().as_slice().unwrap(), &[1.0, 3.0]);
/// ```
#[derive(Clone, Copy)]
pub struct Tensor<'t, T: Element> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) id: u32,
    pub(crate) generation: u32,
}

/// Conversion of an ndarray array into a tape value ([`Value`]): owned and
/// shared arrays move in without a copy, views are copied.
///
/// ```
/// use tapegrad_tensor::{ndarray::{arr2, Array2}, IntoValue};
/// let v = arr2(&[[1.0f64, 2.0]]).into_value();
/// assert_eq!(v.shape(), &[1, 2]);
/// ```
pub trait IntoValue<T: Element> {
    /// Converts into a dynamic-rank, reference-counted array.
    fn into_value(self) -> Value<T>;
}

impl<T: Element, D: Dimension> IntoValue<T> for ArrayBase<OwnedRepr<T>, D> {
    fn into_value(self) -> Value<T> {
        self.into_dyn().into_shared()
    }
}

impl<T: Element, D: Dimension> IntoValue<T> for ArrayBase<OwnedArcRepr<T>, D> {
    fn into_value(self) -> Value<T> {
        self.into_dyn()
    }
}

impl<T: Element, D: Dimension> IntoValue<T> for ndarray::ArrayView<'_, T, D> {
    fn into_value(self) -> Value<T> {
        tapegrad_kernels::pool::to_value(self.into_dyn())
    }
}

impl<T: Element, S: Data<Elem = T>, D: Dimension> IntoValue<T> for &ArrayBase<S, D> {
    fn into_value(self) -> Value<T> {
        tapegrad_kernels::pool::to_value(self.view().into_dyn())
    }
}

impl<T: Element> Tape<T> {
    /// An empty tape with gradients enabled.
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f64>::new();
    /// assert!(tape.is_empty());
    /// ```
    pub fn new() -> Self {
        Tape {
            nodes: RefCell::new(Vec::with_capacity(64)),
            generation: Cell::new(0),
            grad_enabled: Cell::new(true),
            observed: Cell::new(false),
            forward_mode: Cell::new(false),
            tangents: RefCell::new(Vec::new()),
            trace: Cell::new(false),
            report: RefCell::new(None),
            capture: Cell::new(false),
            reads: RefCell::new(Vec::new()),
        }
    }

    /// Records a leaf that requires a gradient (a parameter or an input to
    /// differentiate with respect to).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// assert!(x.requires_grad());
    /// ```
    #[track_caller]
    pub fn var(&self, value: impl IntoValue<T>) -> Tensor<'_, T> {
        let rg = self.grad_enabled.get();
        self.push_leaf(value.into_value(), rg, "var")
    }

    /// Records a leaf that never gets a gradient (data, labels, masks).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.constant(arr1(&[1.0]));
    /// assert!(!x.requires_grad());
    /// ```
    #[track_caller]
    pub fn constant(&self, value: impl IntoValue<T>) -> Tensor<'_, T> {
        self.push_leaf(value.into_value(), false, "constant")
    }

    /// Records a constant scalar of shape `[]`.
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f32>::new();
    /// assert_eq!(tape.scalar(2.5).item(), 2.5);
    /// ```
    #[track_caller]
    pub fn scalar(&self, v: T) -> Tensor<'_, T> {
        self.push_leaf(ArcArray::from_elem(IxDyn(&[]), v), false, "constant")
    }

    /// Runs `f` with recording off: tensors made inside are constants and
    /// no gradient flows through them. Nesting is allowed.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// let y = tape.no_grad(|| x * 2.0);
    /// assert!(!y.requires_grad());
    /// ```
    pub fn no_grad<R>(&self, f: impl FnOnce() -> R) -> R {
        struct Restore<'a>(&'a Cell<bool>, bool);
        impl Drop for Restore<'_> {
            fn drop(&mut self) {
                self.0.set(self.1);
            }
        }
        let _restore = Restore(&self.grad_enabled, self.grad_enabled.replace(false));
        f()
    }

    /// Whether ops are being recorded for gradients (false inside
    /// [`Tape::no_grad`]).
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f64>::new();
    /// assert!(tape.is_grad_enabled());
    /// assert!(!tape.no_grad(|| tape.is_grad_enabled()));
    /// ```
    pub fn is_grad_enabled(&self) -> bool {
        self.grad_enabled.get()
    }

    /// Drops every recorded node but keeps the storage, so the next
    /// iteration of a training loop records into the same memory.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let mut tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// let _ = x.exp();
    /// assert_eq!(tape.len(), 2);
    /// tape.clear();
    /// assert!(tape.is_empty());
    /// ```
    ///
    /// A tensor from before the clear cannot be used after it: the tensor
    /// borrows the tape and `clear` takes the tape mutably, so the use does
    /// not compile (error E0502).
    ///
    /// ```compile_fail,E0502
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let mut tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// tape.clear();
    /// let _ = x.exp(); // x still borrows the tape that clear took mutably
    /// ```
    pub fn clear(&mut self) {
        tapegrad_kernels::pool::recycle_boxes(
            self.nodes.get_mut().drain(..).filter_map(|node| node.value.into_box()),
        );
        self.tangents.get_mut().clear();
        *self.report.get_mut() = None;
        self.generation.set(self.generation.get().wrapping_add(1));
    }

    /// The number of recorded nodes (leaves included).
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f64>::new();
    /// assert_eq!(tape.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether nothing is recorded.
    ///
    /// ```
    /// assert!(tapegrad_tensor::Tape::<f32>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The recorded graph in Graphviz DOT: one node per recorded value with
    /// its op, shape and whether it requires a gradient, and an edge from
    /// each input to the op that used it.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr2, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr2(&[[1.0, 2.0]]));
    /// let _y = x.sigmoid().sum();
    /// let dot = tape.to_dot();
    /// assert!(dot.starts_with("digraph tape {"));
    /// assert!(dot.contains("sigmoid\\n[1, 2]"));
    /// assert!(dot.contains("n0 -> n1"));
    /// ```
    pub fn to_dot(&self) -> String {
        let nodes = self.nodes.borrow();
        let mut s =
            String::from("digraph tape {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n");
        for (i, n) in nodes.iter().enumerate() {
            let label = match &n.op {
                Some(op) => op.label(),
                None => n.name.to_string(),
            };
            let style = if n.requires_grad { "" } else { ", style=dashed" };
            let _ = writeln!(
                s,
                "  n{i} [label=\"{label}\\n{:?}\", tooltip=\"{}:{}\"{style}];",
                n.value.shape_ref(),
                n.location.file(),
                n.location.line()
            );
            for &j in &n.inputs {
                let _ = writeln!(s, "  n{j} -> n{i};");
            }
        }
        s.push_str("}\n");
        s
    }

    #[track_caller]
    fn push_leaf(&self, value: Value<T>, requires_grad: bool, name: &'static str) -> Tensor<'_, T> {
        self.push_leaf_with_tangent(value, requires_grad, name, None)
    }

    #[track_caller]
    pub(crate) fn push_leaf_with_tangent(
        &self,
        value: Value<T>,
        requires_grad: bool,
        name: &'static str,
        tangent: Option<Value<T>>,
    ) -> Tensor<'_, T> {
        if self.observed.get() {
            if self.forward_mode.get() {
                self.tangents.borrow_mut().push(tangent);
            }
            let id = self.nodes.borrow().len();
            self.check_finite(&value, name, id, &[], Phase::Forward, Location::caller());
        }
        let mut nodes = self.nodes.borrow_mut();
        let id = nodes.len() as u32;
        nodes.push(Node {
            value: Repr::new(value),
            op: None,
            inputs: SmallVec::new(),
            requires_grad,
            scalar: false,
            name,
            location: Location::caller(),
        });
        Tensor { tape: self, id, generation: self.generation.get() }
    }

    /// Computes `op` on the inputs' values and records it. When every
    /// input is a number and the op has a scalar form, it is computed on
    /// the numbers (the scalar lane); otherwise on arrays.
    #[track_caller]
    pub(crate) fn record<O: Op<T>>(&self, op: O, xs: &[&Tensor<'_, T>]) -> Tensor<'_, T> {
        let location = Location::caller();
        let mut nodes = self.nodes.borrow_mut();
        let generation = self.generation.get();
        let mut requires_grad = false;
        let mut inputs = SmallVec::<[u32; 4]>::new();
        for x in xs {
            self.check(x, op.name());
            requires_grad |= nodes[x.id as usize].requires_grad;
            inputs.push(x.id);
        }
        let lane = if self.observed.get() {
            None
        } else {
            crate::ops::run_scalar(&op, inputs.iter().map(|&j| nodes[j as usize].value.as_one()))
        };
        let scalar = lane.is_some();
        let value = match lane {
            Some(one) => Repr::one(one),
            None => {
                let vals: SmallVec<[&Value<T>; 4]> =
                    inputs.iter().map(|&j| nodes[j as usize].value.value()).collect();
                let value = op.forward(&vals);
                if self.observed.get() {
                    self.observe(&op, &vals, &inputs, &value, nodes.len(), location);
                }
                Repr::new(value)
            }
        };
        requires_grad &= self.grad_enabled.get() && op.differentiable();
        let name = op.name();
        let id = nodes.len() as u32;
        nodes.push(Node {
            value,
            op: if requires_grad || self.capture.get() { Some(Box::new(op)) } else { None },
            inputs,
            requires_grad,
            scalar,
            name,
            location,
        });
        Tensor { tape: self, id, generation }
    }

    /// The slow path of `record`, taken only in forward mode or while
    /// tracing non-finite values.
    #[cold]
    fn observe<O: Op<T>>(
        &self,
        op: &O,
        xs: &[&Value<T>],
        inputs: &[u32],
        value: &Value<T>,
        id: usize,
        location: &'static Location<'static>,
    ) {
        if self.forward_mode.get() {
            let tangent = {
                let tans = self.tangents.borrow();
                let dx: SmallVec<[Option<&Value<T>>; 4]> =
                    inputs.iter().map(|&j| tans.get(j as usize).and_then(Option::as_ref)).collect();
                (op.differentiable() && dx.iter().any(Option::is_some)).then(|| op.jvp(xs, value, &dx))
            };
            self.tangents.borrow_mut().push(tangent);
        }
        let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
        self.check_finite(value, op.name(), id, &shapes, Phase::Forward, location);
    }

    /// Records the first non-finite value seen while tracing.
    pub(crate) fn check_finite(
        &self,
        value: &Value<T>,
        op: &'static str,
        node: usize,
        input_shapes: &[Vec<usize>],
        phase: Phase,
        location: &'static Location<'static>,
    ) {
        if !self.trace.get() || self.report.borrow().is_some() {
            return;
        }
        if let Some(bad) = value.iter().find(|v| !v.is_finite()) {
            *self.report.borrow_mut() = Some(NonFiniteReport {
                op,
                phase,
                node,
                value: bad.as_f64(),
                input_shapes: input_shapes.to_vec(),
                output_shape: value.shape().to_vec(),
                location,
            });
        }
    }

    /// Turns tracing of non-finite values on or off (off by default; when
    /// off it costs one branch per op). While on, the first op whose
    /// forward value, or whose gradient in a backward pass, holds a NaN or
    /// an infinity is kept as a [`NonFiniteReport`]: its name, shapes and
    /// the source line that recorded it.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// tape.trace_nonfinite(true);
    /// let x = tape.var(arr1(&[1.0, 0.0]));
    /// let y = x.exp();
    /// let line = line!() + 1;
    /// let z = (x * 0.0).log(); // the line that breaks
    /// let _ = (y + z).sum();
    /// let report = tape.nonfinite().unwrap();
    /// assert_eq!(report.op, "log");
    /// assert_eq!(report.location.line(), line);
    /// ```
    pub fn trace_nonfinite(&self, on: bool) {
        self.trace.set(on);
        self.observed.set(on || self.forward_mode.get());
    }

    /// The first non-finite value recorded while tracing (see
    /// [`Tape::trace_nonfinite`]); cleared by [`Tape::clear`].
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f32>::new();
    /// assert!(tape.nonfinite().is_none());
    /// ```
    pub fn nonfinite(&self) -> Option<NonFiniteReport> {
        self.report.borrow().clone()
    }

    pub(crate) fn set_forward_mode(&self, on: bool) {
        self.forward_mode.set(on);
        self.observed.set(on || self.trace.get());
    }

    #[track_caller]
    #[inline]
    pub(crate) fn check(&self, x: &Tensor<'_, T>, op: &str) {
        if !std::ptr::eq(x.tape, self) {
            panic!("{op}: tensor #{} belongs to another tape", x.id);
        }
        if x.generation != self.generation.get() {
            panic!("{op}: tensor #{} was recorded before its tape was cleared", x.id);
        }
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation.get()
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// The tape this tensor was recorded on, to make constants that mix
    /// with it.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// let one = x.tape().scalar(1.0);
    /// assert_eq!((x + one).item(), 2.0);
    /// ```
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// The value, shared with the tape (no copy; a one-element value, which
    /// the tape holds as a number, gets its array on the first call).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0, 4.0]));
    /// assert_eq!(x.sqrt().value().as_slice().unwrap(), &[1.0, 2.0]);
    /// ```
    #[track_caller]
    pub fn value(&self) -> Value<T> {
        self.with_value(|v| v.clone())
    }

    /// The shape of the value.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::Array2, Tape};
    /// let tape = Tape::<f32>::new();
    /// assert_eq!(tape.var(Array2::<f32>::zeros((2, 3))).shape(), vec![2, 3]);
    /// ```
    #[track_caller]
    pub fn shape(&self) -> Vec<usize> {
        self.tape.check(self, "shape");
        self.tape.nodes.borrow()[self.id as usize].value.shape_ref().to_vec()
    }

    /// The only element of a one-element tensor.
    ///
    /// # Panics
    /// When the tensor has more or fewer than one element.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr2, Tape};
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(tape.var(arr2(&[[1.0, 2.0]])).sum().item(), 3.0);
    /// ```
    #[track_caller]
    pub fn item(&self) -> T {
        self.tape.check(self, "item");
        self.note_read();
        if let Some(one) = self.tape.nodes.borrow()[self.id as usize].value.as_one() {
            return one.v;
        }
        self.with_value(|v| {
            if v.len() != 1 {
                panic!("item: tensor of shape {:?} has {} elements, not 1", v.shape(), v.len());
            }
            *v.iter().next().expect("one element")
        })
    }

    /// Whether gradients flow to this tensor.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let c = tape.constant(arr1(&[1.0]));
    /// assert!(!(c * 2.0).requires_grad());
    /// ```
    #[track_caller]
    pub fn requires_grad(&self) -> bool {
        self.tape.check(self, "requires_grad");
        self.tape.nodes.borrow()[self.id as usize].requires_grad
    }

    /// The same value as a new constant: no gradient flows back through it.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[3.0]));
    /// let y = x * x.detach(); // d/dx = x, not 2x
    /// assert_eq!(tape.backward(y.sum())[x][0], 3.0);
    /// ```
    #[track_caller]
    pub fn detach(&self) -> Tensor<'t, T> {
        let v = self.value();
        self.tape.push_leaf(v, false, "detach")
    }

    /// The position of this tensor on its tape (for reading DOT output).
    ///
    /// ```
    /// let tape = tapegrad_tensor::Tape::<f64>::new();
    /// assert_eq!(tape.scalar(1.0).id(), 0);
    /// ```
    pub fn id(&self) -> usize {
        self.id as usize
    }

    #[track_caller]
    pub(crate) fn with_value<R>(&self, f: impl FnOnce(&Value<T>) -> R) -> R {
        self.tape.check(self, "value");
        self.note_read();
        f(self.tape.nodes.borrow()[self.id as usize].value.value())
    }

    /// Notes a read of this value while a plan captures its step.
    #[track_caller]
    #[inline]
    fn note_read(&self) {
        if self.tape.capture.get() {
            self.tape.reads.borrow_mut().push((self.id, Location::caller()));
        }
    }

    #[track_caller]
    pub(crate) fn shape_small(&self) -> Shape {
        self.tape.check(self, "shape");
        self.tape.nodes.borrow()[self.id as usize].value.shape()
    }
}

impl<T: Element> std::fmt::Debug for Tensor<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes = self.tape.nodes.borrow();
        match nodes.get(self.id as usize) {
            Some(n) if self.generation == self.tape.generation.get() => {
                write!(f, "Tensor#{}({}, {:?})", self.id, n.name, n.value.value())
            }
            _ => write!(f, "Tensor#{}(cleared)", self.id),
        }
    }
}
