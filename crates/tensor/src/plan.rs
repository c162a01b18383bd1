//! Record once, replay many: a step (a forward pass and its loss) recorded
//! on a tape once, then run again on new argument values without recording
//! anything.
//!
//! A [`Plan`] keeps the recorded nodes, each with its op, and the engine's
//! working tables. Running it computes every node that depends on an
//! argument again, in the recorded order, with the same forward kernels,
//! then walks the same backward pass as [`Tape::backward_for`]: the
//! replayed values and gradients are the eager ones, bit for bit (the
//! invariant the tests hold every registry op and the guide's network to).
//! What a replay skips is the recording: building the graph in the user's
//! code, boxing each op, the shape checks of each op, the bookkeeping of
//! the backward pass, and the allocations of all of these.

use crate::backward::{backward_nodes, Scratch};
use crate::ops::DynOp;
use crate::repr::{One, Repr};
use crate::tape::Node;
use crate::{Element, IntoValue, Tape, Tensor, Value};
use ndarray::{ArrayViewD, ArrayViewMutD};
use smallvec::SmallVec;
use std::panic::Location;
use tapegrad_kernels::Shape;

/// A step to record: called once by [`Plan::compile`] on the plan's tape,
/// and again by [`Plan::check`] on a scratch tape, with one tensor per
/// argument, in the order given; returns the loss (one element).
pub type StepFn<'f, T> = dyn for<'t> Fn(&'t Tape<T>, &[Tensor<'t, T>]) -> Tensor<'t, T> + 'f;

/// One argument of a [`Plan`]: an input (data, labels, a dropout mask: no
/// gradient) or a parameter (its gradient is computed on every run).
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Arg};
/// let a = Arg::param(arr1(&[1.0f64, 2.0]));
/// assert!(a.is_param());
/// assert!(!Arg::input(arr1(&[0.5f64])).is_param());
/// ```
pub struct Arg<T: Element> {
    value: Value<T>,
    param: bool,
}

impl<T: Element> Arg<T> {
    /// An argument without a gradient.
    ///
    /// ```
    /// let x = tapegrad_tensor::Arg::input(tapegrad_tensor::ndarray::arr2(&[[1.0f32]]));
    /// assert!(!x.is_param());
    /// ```
    pub fn input(value: impl IntoValue<T>) -> Self {
        Arg { value: value.into_value(), param: false }
    }

    /// An argument whose gradient every run computes.
    ///
    /// ```
    /// let w = tapegrad_tensor::Arg::param(tapegrad_tensor::ndarray::arr2(&[[1.0f32]]));
    /// assert!(w.is_param());
    /// ```
    pub fn param(value: impl IntoValue<T>) -> Self {
        Arg { value: value.into_value(), param: true }
    }

    /// Whether this is a parameter.
    ///
    /// ```
    /// assert!(tapegrad_tensor::Arg::param(tapegrad_tensor::ndarray::arr1(&[0.0f64])).is_param());
    /// ```
    pub fn is_param(&self) -> bool {
        self.param
    }
}

/// Why a step cannot be compiled, or a replay was refused.
///
/// ```
/// use tapegrad_tensor::{ndarray::{arr1, arr2}, Arg, Plan, PlanError};
/// let mut plan = Plan::compile(vec![Arg::param(arr1(&[1.0f64, 2.0]))], |_, a| (a[0] * a[0]).sum()).unwrap();
/// let e = plan.set(0, arr2(&[[1.0, 2.0]])).unwrap_err();
/// assert!(matches!(e, PlanError::ArgShape { arg: 0, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// An argument index past the plan's arguments.
    #[error("argument {arg} does not exist: the plan has {count}")]
    NoSuchArg {
        /// The index given.
        arg: usize,
        /// How many arguments the plan has.
        count: usize,
    },
    /// A value of another shape than the one recorded.
    #[error("argument {arg} has shape {given:?}, the plan was recorded for {recorded:?}: compile a plan for this shape")]
    ArgShape {
        /// The argument.
        arg: usize,
        /// The recorded shape.
        recorded: Vec<usize>,
        /// The shape given.
        given: Vec<usize>,
    },
    /// The step returned a value of more than one element.
    #[error("the step returned a value of shape {shape:?}, not a one-element loss")]
    NotALoss {
        /// Its shape.
        shape: Vec<usize>,
    },
    /// The step read a value that depends on an argument while it was
    /// recorded: whatever it did with it (a branch, a constant made from
    /// it) would be frozen into every replay.
    #[error(
        "the step read the value of tensor #{node} ({op}, recorded at {location}) at {read_at} while it was being recorded; \
         a branch or constant made from a value would be frozen into the replay: compute it with tensor ops, or run this step eagerly"
    )]
    ReadsValue {
        /// The node read.
        node: usize,
        /// Its op.
        op: &'static str,
        /// Where it was recorded.
        location: String,
        /// Where it was read.
        read_at: String,
    },
    /// The step, recorded again eagerly on the current arguments, recorded
    /// other ops than the plan holds: its ops depend on something other
    /// than its arguments' shapes.
    #[error("the step records other ops than the plan at node #{node}: the plan has {planned}, the step now records {eager}; its ops depend on more than its arguments' shapes, so it cannot be replayed")]
    Structure {
        /// The first node that differs.
        node: usize,
        /// What the plan holds there.
        planned: String,
        /// What the eager step recorded there.
        eager: String,
    },
    /// A replayed value or gradient differs from the eager one.
    #[error("the replay differs from the eager step at tensor #{node} ({op}, recorded at {location}): its {what} differs")]
    Diverged {
        /// The first node that differs.
        node: usize,
        /// Its op.
        op: &'static str,
        /// Where it was recorded.
        location: String,
        /// `"value"` or `"gradient"`.
        what: &'static str,
    },
}

/// A recorded step that runs again on new argument values: JAX's `jit` or
/// a CUDA graph for the tape. [`Plan::compile`] records the step once;
/// [`Plan::run`] then replays it on the current arguments and gives the
/// loss, and [`Plan::grad`] each parameter's gradient, with no recording,
/// no op boxed and no shape checked beyond one per argument.
///
/// **Correct by construction, checked by default.** A replay computes
/// the recorded ops again with the same kernels and walks the same
/// backward pass as the tape, so its values and gradients equal the eager
/// ones bit for bit. The first run is checked, and a difference is an
/// error naming the first op that differs: on the arguments the step was
/// recorded with, each value it computes is compared with the recorded
/// one (the backward pass is then the tape's own on the same values); on
/// other arguments, the step is recorded again eagerly and compared node
/// by node, gradients included ([`Plan::check`]).
///
/// **What a plan cannot capture** (as with JAX's `jit`): the recorded ops
/// must depend on the arguments' shapes alone. Reading a value of the step
/// while it is recorded (`item`, `value`, the comparisons that make
/// masks, `detach`) is refused by [`Plan::compile`], since a branch or a
/// constant made from it would be frozen. Values the step takes from
/// elsewhere (a random mask, a counter) must come in as arguments, drawn
/// fresh before each run; a constant the step makes from its own captured
/// state is frozen, and [`Plan::check`] finds it when it changes. A new
/// shape (the last, smaller mini-batch) needs a plan of its own.
///
/// ```
/// use tapegrad_tensor::{ndarray::arr2, Arg, Plan};
/// let mut plan = Plan::compile(
///     vec![Arg::param(arr2(&[[2.0f64]])), Arg::input(arr2(&[[3.0]]))],
///     |_, a| (a[0] * a[1]).tanh().sum(),
/// )
/// .unwrap();
/// let loss = plan.run().unwrap();
/// assert_eq!(loss, 6.0f64.tanh());
/// plan.set(1, arr2(&[[0.5]])).unwrap(); // a new input, the same shape
/// let loss = plan.run().unwrap();
/// assert_eq!(loss, 1.0f64.tanh());
/// let dw = plan.grad(0).unwrap()[[0, 0]];
/// assert_eq!(dw, 0.5 * (1.0 - 1.0f64.tanh().powi(2)));
/// ```
pub struct Plan<'f, T: Element> {
    /// The recorded nodes, each with its op; argument `k` is node `k`.
    nodes: Vec<Node<T>>,
    step: Box<StepFn<'f, T>>,
    args: Vec<Slot>,
    loss: u32,
    /// The nodes computed again on every run, in order: those with an op
    /// that depend on an argument.
    steps: Vec<u32>,
    /// The nodes whose gradients are kept: the parameters.
    keep: Vec<bool>,
    scratch: Scratch,
    grads: Vec<Option<Repr<T>>>,
    /// When every step is in the scalar lane: its backward pass on plain
    /// numbers.
    numbers: Option<Numbers<T>>,
    /// Whether the gradients in `grads` belong to the current arguments.
    fresh: bool,
    checked: bool,
    /// Whether the arguments are still those the step was recorded with.
    as_recorded: bool,
}

struct Slot {
    shape: Shape,
    param: bool,
}

impl<'f, T: Element> Plan<'f, T> {
    /// Records `step` on `args` and returns its plan. The step is not yet
    /// run: [`Plan::run`] does that (and checks its first run).
    ///
    /// # Errors
    /// [`PlanError::ReadsValue`] when the step reads a value that depends
    /// on an argument; [`PlanError::NotALoss`] when it returns more than
    /// one element.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan, PlanError};
    /// // A branch on a value cannot be replayed: it is refused.
    /// let e = Plan::compile(vec![Arg::param(arr1(&[1.0f64]))], |_, a| {
    ///     if a[0].item() > 0.0 { a[0].sum() } else { (-a[0]).sum() }
    /// });
    /// assert!(matches!(e.err(), Some(PlanError::ReadsValue { node: 0, .. })));
    /// ```
    pub fn compile(
        args: Vec<Arg<T>>,
        step: impl for<'t> Fn(&'t Tape<T>, &[Tensor<'t, T>]) -> Tensor<'t, T> + 'f,
    ) -> Result<Self, PlanError> {
        let tape = Tape::new();
        let slots: Vec<Slot> =
            args.iter().map(|a| Slot { shape: Shape::from_slice(a.value.shape()), param: a.param }).collect();
        tape.capture.set(true);
        let loss = {
            let leaves: Vec<Tensor<'_, T>> = args
                .into_iter()
                .map(|a| if a.param { tape.var(a.value) } else { tape.constant(a.value) })
                .collect();
            let loss = step(&tape, &leaves);
            tape.check(&loss, "compile");
            loss.id
        };
        tape.capture.set(false);
        let reads = std::mem::take(&mut *tape.reads.borrow_mut());
        let nodes = std::mem::take(&mut *tape.nodes.borrow_mut());
        let shape = nodes[loss as usize].value.shape_ref().to_vec();
        if shape.iter().product::<usize>() != 1 {
            return Err(PlanError::NotALoss { shape });
        }
        // Which nodes depend on an argument: those are computed again.
        let n_args = slots.len();
        let mut depends = vec![false; nodes.len()];
        let mut steps = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            depends[i] = i < n_args || node.inputs.iter().any(|&j| depends[j as usize]);
            if i >= n_args && depends[i] {
                debug_assert!(node.op.is_some(), "a captured node with inputs keeps its op");
                steps.push(i as u32);
            }
        }
        if let Some(&(node, read_at)) = reads.iter().find(|(j, _)| depends[*j as usize]) {
            let n = &nodes[node as usize];
            return Err(PlanError::ReadsValue {
                node: node as usize,
                op: n.name,
                location: location(n.location),
                read_at: location(read_at),
            });
        }
        let mut keep = vec![false; nodes.len()];
        for (k, s) in slots.iter().enumerate() {
            keep[k] = s.param;
        }
        let numbers = Numbers::compile(&nodes, &steps);
        Ok(Plan {
            nodes,
            numbers,
            step: Box::new(step),
            args: slots,
            loss,
            steps,
            keep,
            scratch: Scratch::default(),
            grads: Vec::new(),
            fresh: false,
            checked: false,
            as_recorded: true,
        })
    }

    /// The number of arguments.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let plan = Plan::compile(vec![Arg::param(arr1(&[1.0f32]))], |_, a| a[0].sum()).unwrap();
    /// assert_eq!(plan.num_args(), 1);
    /// ```
    pub fn num_args(&self) -> usize {
        self.args.len()
    }

    /// The number of ops a run computes again (the rest of the recorded
    /// nodes are arguments and constants).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let plan = Plan::compile(vec![Arg::param(arr1(&[1.0f32]))], |_, a| (a[0] * 2.0).sum()).unwrap();
    /// assert_eq!(plan.num_ops(), 2);
    /// ```
    pub fn num_ops(&self) -> usize {
        self.steps.len()
    }

    /// The shape argument `k` was recorded with.
    ///
    /// # Panics
    /// When `k` is not an argument.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::Array2, Arg, Plan};
    /// let plan = Plan::compile(vec![Arg::input(Array2::<f64>::zeros((3, 64)))], |_, a| a[0].sum()).unwrap();
    /// assert_eq!(plan.arg_shape(0), &[3, 64]);
    /// ```
    #[track_caller]
    pub fn arg_shape(&self, k: usize) -> &[usize] {
        &self.args[k].shape
    }

    /// Sets argument `k` to `value`, shared, not copied (an owned or shared
    /// array moves in; a view is copied).
    ///
    /// # Errors
    /// When there is no argument `k`, or `value` has another shape than
    /// the recorded one.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let mut plan = Plan::compile(vec![Arg::param(arr1(&[1.0f64, 2.0]))], |_, a| (a[0] * a[0]).sum()).unwrap();
    /// plan.set(0, arr1(&[3.0, 4.0])).unwrap();
    /// assert_eq!(plan.run().unwrap(), 25.0);
    /// ```
    pub fn set(&mut self, k: usize, value: impl IntoValue<T>) -> Result<(), PlanError> {
        let value = value.into_value();
        self.check_arg(k, value.shape())?;
        let node = &mut self.nodes[k];
        let old = std::mem::replace(&mut node.value, Repr::new(value));
        release(old);
        self.fresh = false;
        self.as_recorded = false;
        Ok(())
    }

    /// Lets `fill` write argument `k` in place, in the recorded shape: no
    /// allocation (a mini-batch gathered, a mask drawn, parameters copied
    /// in).
    ///
    /// # Errors
    /// When there is no argument `k`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let mut plan = Plan::compile(vec![Arg::param(arr1(&[1.0f64, 2.0]))], |_, a| a[0].sum()).unwrap();
    /// plan.write(0, |v| v.fill(5.0)).unwrap();
    /// assert_eq!(plan.run().unwrap(), 10.0);
    /// ```
    pub fn write(&mut self, k: usize, fill: impl FnOnce(&mut ArrayViewMutD<'_, T>)) -> Result<(), PlanError> {
        if k >= self.args.len() {
            return Err(PlanError::NoSuchArg { arg: k, count: self.args.len() });
        }
        self.fresh = false;
        self.as_recorded = false;
        let node = &mut self.nodes[k];
        match &mut node.value {
            Repr::Many(v) => fill(&mut v.view_mut()),
            Repr::One(one, cell) => {
                let _ = cell.get_or_init(|| tapegrad_kernels::pool::boxed(one.to_value()));
                let v = cell.get_mut().expect("initialised above");
                fill(&mut v.view_mut());
                one.v = *v.iter().next().expect("one element");
            }
        }
        Ok(())
    }

    /// The current value of argument `k`.
    ///
    /// # Errors
    /// When there is no argument `k`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let plan = Plan::compile(vec![Arg::input(arr1(&[1.0f64, 2.0]))], |_, a| a[0].sum()).unwrap();
    /// assert_eq!(plan.arg(0).unwrap()[1], 2.0);
    /// ```
    pub fn arg(&self, k: usize) -> Result<ArrayViewD<'_, T>, PlanError> {
        if k >= self.args.len() {
            return Err(PlanError::NoSuchArg { arg: k, count: self.args.len() });
        }
        Ok(self.nodes[k].value.value().view())
    }

    /// Replays the step on the current arguments: every op that depends on
    /// an argument is computed again, then the backward pass runs, keeping
    /// the parameters' gradients ([`Plan::grad`]). Returns the loss. The
    /// first run is checked: against the recording when the arguments are
    /// still the recorded ones, else against the step recorded again
    /// eagerly ([`Plan::check`]).
    ///
    /// # Errors
    /// From the first run's check.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let mut plan = Plan::compile(vec![Arg::param(arr1(&[3.0f64]))], |_, a| (a[0] * a[0]).sum()).unwrap();
    /// assert_eq!(plan.run().unwrap(), 9.0);
    /// assert_eq!(plan.grad(0).unwrap()[0], 6.0);
    /// ```
    pub fn run(&mut self) -> Result<T, PlanError> {
        if !self.checked && self.as_recorded {
            // On the arguments it was recorded with, the replay must
            // compute every recorded value again, bit for bit; the
            // backward pass is the engine's own on those values.
            self.forward_against_record()?;
            self.backward();
            self.checked = true;
            return Ok(self.loss());
        }
        self.forward();
        self.backward();
        if !self.checked {
            self.check()?;
            self.checked = true;
        }
        Ok(self.loss())
    }

    /// The first replay on the recorded arguments, each new value compared
    /// with the recorded one before it replaces it.
    fn forward_against_record(&mut self) -> Result<(), PlanError> {
        let recorded: Vec<Repr<T>> = self
            .steps
            .iter()
            .map(|&i| {
                std::mem::replace(&mut self.nodes[i as usize].value, Repr::one(One { v: T::zero(), ndim: 0 }))
            })
            .collect();
        // A step reads only arguments, constants and steps before it,
        // computed again before it: the placeholders are never read.
        self.forward();
        if let Some(numbers) = &self.numbers {
            numbers.sync(&mut self.nodes);
        }
        for (&i, r) in self.steps.iter().zip(recorded) {
            let n = &self.nodes[i as usize];
            let same = match (n.value.as_one(), r.as_one()) {
                (Some(a), Some(b)) => a.v.as_f64().to_bits() == b.v.as_f64().to_bits(),
                _ => same_bits(n.value.value(), r.value()),
            };
            release(r);
            if !same {
                return Err(PlanError::Diverged {
                    node: i as usize,
                    op: n.name,
                    location: location(n.location),
                    what: "value",
                });
            }
        }
        Ok(())
    }

    /// The loss of the last run (or of the recording, before any run).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let plan = Plan::compile(vec![Arg::input(arr1(&[1.0f32, 2.0]))], |_, a| a[0].sum()).unwrap();
    /// assert_eq!(plan.loss(), 3.0);
    /// ```
    pub fn loss(&self) -> T {
        if let Some(numbers) = &self.numbers {
            return numbers.vals[self.loss as usize];
        }
        let v = &self.nodes[self.loss as usize].value;
        match v.as_one() {
            Some(one) => one.v,
            None => *v.value().iter().next().expect("one element"),
        }
    }

    /// The gradient of the loss with respect to parameter `k` from the last
    /// run, in `k`'s shape; `None` when the loss does not depend on it.
    ///
    /// # Errors
    /// When there is no argument `k`.
    ///
    /// # Panics
    /// When `k` is an input, not a parameter, or before the first run.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan};
    /// let mut plan = Plan::compile(
    ///     vec![Arg::param(arr1(&[1.0f64])), Arg::param(arr1(&[2.0]))],
    ///     |_, a| (a[0] * 3.0).sum(),
    /// )
    /// .unwrap();
    /// plan.run().unwrap();
    /// assert_eq!(plan.grad(0).unwrap()[0], 3.0);
    /// assert!(plan.grad(1).is_none());
    /// ```
    #[track_caller]
    pub fn grad(&self, k: usize) -> Option<ArrayViewD<'_, T>> {
        assert!(k < self.args.len(), "grad: argument {k} does not exist: the plan has {}", self.args.len());
        assert!(self.args[k].param, "grad: argument {k} is an input, not a parameter: it has no gradient");
        assert!(self.fresh, "grad: the plan has not run on its current arguments");
        self.grads.get(k).and_then(Option::as_ref).map(|g| g.value().view())
    }

    /// Records the step again eagerly on a scratch tape, on the current
    /// arguments, and compares it with the last replay node by node: the
    /// same ops, the same values and the same parameter gradients, bit for
    /// bit. [`Plan::run`] calls it on its first run when the arguments
    /// have changed since the recording; call it again when
    /// the step may have changed (say after its captured state changed).
    /// Replays first if the arguments changed since the last run.
    ///
    /// # Errors
    /// [`PlanError::Structure`] when the step records other ops (its
    /// control flow depends on more than its arguments' shapes),
    /// [`PlanError::Diverged`] naming the first value or gradient that
    /// differs.
    ///
    /// ```
    /// use std::cell::Cell;
    /// use tapegrad_tensor::{ndarray::arr1, Arg, Plan, PlanError};
    /// // The step makes a constant from state it captured: frozen in the plan.
    /// let scale = Cell::new(2.0);
    /// let mut plan = Plan::compile(vec![Arg::param(arr1(&[1.0f64]))], |tape, a| {
    ///     (a[0] * tape.scalar(scale.get())).sum()
    /// })
    /// .unwrap();
    /// plan.run().unwrap();
    /// scale.set(3.0);
    /// assert!(matches!(plan.check(), Err(PlanError::Diverged { .. })));
    /// ```
    pub fn check(&mut self) -> Result<(), PlanError> {
        if !self.fresh {
            self.forward();
            self.backward();
        }
        if let Some(numbers) = &self.numbers {
            numbers.sync(&mut self.nodes);
        }
        let eager = Tape::<T>::new();
        let planned = &self.nodes;
        let leaves: Vec<Tensor<'_, T>> = self
            .args
            .iter()
            .zip(planned.iter())
            .map(|(s, n)| {
                let v = n.value.value().clone();
                if s.param {
                    eager.var(v)
                } else {
                    eager.constant(v)
                }
            })
            .collect();
        let loss = (self.step)(&eager, &leaves);
        let wrt: Vec<Tensor<'_, T>> =
            leaves.iter().zip(&self.args).filter(|(_, s)| s.param).map(|(t, _)| *t).collect();
        let shape = loss.shape_small();
        let eager_grads = (shape.iter().product::<usize>() == 1).then(|| eager.backward_for(loss, &wrt));
        let en = eager.nodes.borrow();
        let describe = |n: &Node<T>| format!("{} {:?}", n.name, n.value.shape_ref());
        for i in 0..planned.len().max(en.len()) {
            match (planned.get(i), en.get(i)) {
                (Some(p), Some(e))
                    if p.name == e.name
                        && p.inputs == e.inputs
                        && p.value.shape_ref() == e.value.shape_ref() => {}
                (p, e) => {
                    return Err(PlanError::Structure {
                        node: i,
                        planned: p.map_or("nothing".into(), describe),
                        eager: e.map_or("nothing".into(), describe),
                    })
                }
            }
        }
        if loss.id != self.loss {
            let (p, e) = (&planned[self.loss as usize], &en[loss.id as usize]);
            return Err(PlanError::Structure {
                node: self.loss as usize,
                planned: format!("the loss {}", describe(p)),
                eager: format!("the loss at node #{}, {}", loss.id, describe(e)),
            });
        }
        let diverged = |i: usize, what| {
            let n = &planned[i];
            Err(PlanError::Diverged { node: i, op: n.name, location: location(n.location), what })
        };
        for (i, (p, e)) in planned.iter().zip(en.iter()).enumerate() {
            if !same_bits(p.value.value(), e.value.value()) {
                return diverged(i, "value");
            }
        }
        let eager_grads = eager_grads.expect("the loss has one element, as when compiled");
        for (k, t) in leaves.iter().enumerate().filter(|(k, _)| self.args[*k].param) {
            let mine = self.grads.get(k).and_then(Option::as_ref).map(Repr::value);
            let same = match (mine, eager_grads.get(*t)) {
                (Some(a), Some(b)) => same_bits(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                return diverged(k, "gradient");
            }
        }
        Ok(())
    }

    /// Computes every step node again from its inputs' current values.
    fn forward(&mut self) {
        if let Some(numbers) = &mut self.numbers {
            numbers.forward(&self.nodes, self.args.len());
            return;
        }
        let nodes = &mut self.nodes;
        for &i in &self.steps {
            let (before, rest) = nodes.split_at_mut(i as usize);
            let node = &mut rest[0];
            let op = node.op.as_deref().expect("a step node keeps its op");
            // The old value goes back to the pool first, so the new one
            // can take its buffer.
            let old = std::mem::replace(&mut node.value, Repr::one(One { v: T::zero(), ndim: 0 }));
            if !matches!(old, Repr::One(_, ref cell) if cell.get().is_none()) {
                release(old);
            }
            node.value = if node.scalar {
                let mut xs = [T::zero(); 4];
                let mut ndim = 0;
                for (k, &j) in node.inputs.iter().enumerate() {
                    let x = before[j as usize].value.as_one().expect("a scalar-lane input is a number");
                    xs[k] = x.v;
                    ndim = ndim.max(x.ndim);
                }
                let v =
                    op.forward_numbers(&xs[..node.inputs.len()]).expect("a scalar-lane op has a scalar form");
                Repr::one(One { v, ndim })
            } else {
                let xs: SmallVec<[&Value<T>; 4]> =
                    node.inputs.iter().map(|&j| before[j as usize].value.value()).collect();
                Repr::new(op.forward_values(&xs))
            };
        }
    }

    /// The backward pass from the loss, keeping the parameters' gradients.
    fn backward(&mut self) {
        if let Some(numbers) = &mut self.numbers {
            numbers.backward(self.loss, &self.args, &mut self.grads);
            self.fresh = true;
            return;
        }
        let nodes = &self.nodes;
        let ndim = nodes[self.loss as usize].value.shape_ref().len() as u32;
        let seed = Repr::one(One { v: T::one(), ndim });
        backward_nodes(
            nodes,
            self.loss as usize,
            seed,
            Some(&self.keep),
            None,
            &mut self.scratch,
            &mut self.grads,
        );
        self.fresh = true;
    }

    fn check_arg(&self, k: usize, shape: &[usize]) -> Result<(), PlanError> {
        let slot = self.args.get(k).ok_or(PlanError::NoSuchArg { arg: k, count: self.args.len() })?;
        if slot.shape.as_slice() != shape {
            return Err(PlanError::ArgShape { arg: k, recorded: slot.shape.to_vec(), given: shape.to_vec() });
        }
        Ok(())
    }
}

/// A plan whose every step ran in the scalar lane, run on plain numbers:
/// the steps as a compact program over a dense table of values (by node),
/// a dense table of gradients (`grad`, given where `has`), each op's
/// scalar form forward and its rule on numbers backward. The same
/// formulas, rules and sums, in the same order, as the tape's scalar lane
/// and the engine's walk on numbers, so the same bits; what it saves is
/// the engine's bookkeeping of values that are numbers, and the passes
/// over the node list (which, for a long chain, does not fit in cache).
struct Numbers<T: Element> {
    prog: Vec<NumStep<T>>,
    vals: Vec<T>,
    grad: Vec<T>,
    has: Vec<bool>,
    /// Each node's rank (every axis of length 1).
    ndim: Vec<u32>,
}

/// One op of a [`Numbers`] program.
struct NumStep<T: Element> {
    /// The op of node `id`, boxed in the plan's node list, which is never
    /// changed after compiling: the box outlives the program.
    op: *const dyn DynOp<T>,
    id: u32,
    inputs: [u32; 4],
    n: usize,
    /// Whether each input requires a gradient.
    need: [bool; 4],
    /// The ranks of the inputs and of the output.
    ndims: [u32; 4],
    ndim: u32,
}

impl<T: Element> Numbers<T> {
    /// The program of `steps`, when every one ran in the scalar lane.
    fn compile(nodes: &[Node<T>], steps: &[u32]) -> Option<Self> {
        let mut prog = Vec::with_capacity(steps.len());
        for &i in steps {
            let node = &nodes[i as usize];
            if !node.scalar || node.inputs.len() > 4 {
                return None;
            }
            let mut inputs = [0; 4];
            let mut need = [false; 4];
            let mut ndims = [0; 4];
            for (k, &j) in node.inputs.iter().enumerate() {
                inputs[k] = j;
                need[k] = nodes[j as usize].requires_grad;
                ndims[k] = nodes[j as usize].value.shape_ref().len() as u32;
            }
            let op: &dyn DynOp<T> = node.op.as_deref().expect("a step node keeps its op");
            let ndim = node.value.shape_ref().len() as u32;
            prog.push(NumStep { op, id: i, inputs, n: node.inputs.len(), need, ndims, ndim });
        }
        let vals = nodes.iter().map(|n| n.value.as_one().map_or(T::zero(), |o| o.v)).collect();
        let ndim = nodes.iter().map(|n| n.value.shape_ref().len() as u32).collect();
        Some(Numbers { prog, vals, grad: vec![T::zero(); nodes.len()], has: vec![false; nodes.len()], ndim })
    }

    fn one(&self, i: u32) -> One<T> {
        One { v: self.vals[i as usize], ndim: self.ndim[i as usize] }
    }

    fn forward(&mut self, nodes: &[Node<T>], args: usize) {
        for (k, node) in nodes[..args].iter().enumerate() {
            self.vals[k] = node.value.as_one().expect("a scalar-lane argument is a number").v;
        }
        for s in &self.prog {
            let mut xs = [T::zero(); 4];
            for (x, &j) in xs.iter_mut().zip(&s.inputs[..s.n]) {
                *x = self.vals[j as usize];
            }
            // SAFETY: the op's box lives in the plan's node list, never
            // changed after compiling (see `NumStep::op`).
            let op = unsafe { &*s.op };
            self.vals[s.id as usize] =
                op.forward_numbers(&xs[..s.n]).expect("a scalar-lane op has a scalar form");
        }
    }

    fn backward(&mut self, loss: u32, args: &[Slot], grads: &mut Vec<Option<Repr<T>>>) {
        self.has.fill(false);
        self.grad[loss as usize] = T::one();
        self.has[loss as usize] = true;
        for s in self.prog.iter().rev() {
            let i = s.id as usize;
            if !self.has[i] {
                continue;
            }
            let y = One { v: self.vals[i], ndim: s.ndim };
            let g = One { v: self.grad[i], ndim: s.ndim };
            let mut xs = [y; 4];
            for ((x, &j), &ndim) in xs.iter_mut().zip(&s.inputs[..s.n]).zip(&s.ndims) {
                *x = One { v: self.vals[j as usize], ndim };
            }
            let xr = [&xs[0], &xs[1], &xs[2], &xs[3]];
            // SAFETY: as in `forward`.
            let op = unsafe { &*s.op };
            let mut out = [T::zero(); 4];
            let given = op.backward_numbers(&xr[..s.n], &y, &g, &s.need[..s.n], &mut out);
            for (k, (&j, &gk)) in s.inputs[..s.n].iter().zip(&out).enumerate() {
                if s.need[k] && given & (1 << k) != 0 {
                    let j = j as usize;
                    if self.has[j] {
                        self.grad[j] = self.grad[j] + gk;
                    } else {
                        self.grad[j] = gk;
                        self.has[j] = true;
                    }
                }
            }
        }
        // The parameters' gradients, as the engine leaves them.
        grads.resize_with(args.len(), || None);
        for (k, slot) in args.iter().enumerate() {
            let g = (slot.param && self.has[k]).then(|| Repr::one(self.grad_one(k)));
            if let Some(old) = std::mem::replace(&mut grads[k], g) {
                release(old);
            }
        }
    }

    fn grad_one(&self, k: usize) -> One<T> {
        One { v: self.grad[k], ndim: self.ndim[k] }
    }

    /// Writes the values of the last run into the node list (for
    /// [`Plan::check`], which compares nodes).
    fn sync(&self, nodes: &mut [Node<T>]) {
        for s in &self.prog {
            let i = s.id as usize;
            release(std::mem::replace(&mut nodes[i].value, Repr::one(self.one(s.id))));
        }
    }
}

impl<T: Element> std::fmt::Debug for Plan<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("args", &self.args.len())
            .field("nodes", &self.nodes.len())
            .field("ops", &self.steps.len())
            .field("checked", &self.checked)
            .finish()
    }
}

/// Gives a node's old value back to the pool.
impl<T: Element> Drop for Plan<'_, T> {
    /// Hands the values and gradients back to the pool.
    fn drop(&mut self) {
        tapegrad_kernels::pool::recycle_boxes(
            self.nodes
                .drain(..)
                .filter_map(|n| n.value.into_box())
                .chain(self.grads.drain(..).flatten().filter_map(Repr::into_box)),
        );
    }
}

fn release<T: Element>(r: Repr<T>) {
    tapegrad_kernels::pool::recycle_boxes(r.into_box().into_iter());
}

fn location(l: &Location<'_>) -> String {
    format!("{}:{}", l.file(), l.line())
}

/// The same shape and the same bits in every element.
fn same_bits<T: Element>(a: &Value<T>, b: &Value<T>) -> bool {
    let bits = |x: &T, y: &T| x.as_f64().to_bits() == y.as_f64().to_bits();
    a.shape() == b.shape()
        && match (a.as_slice(), b.as_slice()) {
            // Contiguous (nearly always): a plain loop over the slices.
            (Some(x), Some(y)) => x.iter().zip(y).fold(true, |same, (x, y)| same & bits(x, y)),
            _ => a.iter().zip(b.iter()).all(|(x, y)| bits(x, y)),
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr2, Array2};
    use std::cell::Cell;

    /// W4's chain: every op in the scalar lane. The replay, on new leaf
    /// values, gives the eager value and gradients bit for bit.
    #[test]
    fn a_chain_of_numbers_replays_as_its_eager_run() {
        fn chain<'t>(a: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
            let mut x = a[0];
            for _ in 0..50 {
                x = ((x * a[1] + a[2]).tanh()) - a[3];
            }
            x
        }
        let start = [0.5, 1.0, 0.1, 0.1];
        let args = start.iter().map(|&v| Arg::param(arr2(&[[v]]))).collect();
        let mut plan = Plan::compile(args, |_, a| chain(a)).unwrap();
        assert_eq!(plan.num_ops(), 200);
        for values in [[0.5, 1.0, 0.1, 0.1], [-0.3, 0.7, 0.2, -0.05]] {
            for (k, &v) in values.iter().enumerate() {
                plan.write(k, |x| x.fill(v)).unwrap();
            }
            let y = plan.run().unwrap();
            let tape = Tape::<f64>::new();
            let xs: Vec<_> = values.iter().map(|&v| tape.var(arr2(&[[v]]))).collect();
            let out = chain(&xs);
            assert!(tape.nodes.borrow().iter().all(|n| n.op.is_none() || n.scalar));
            let g = tape.backward_for(out, &xs);
            assert_eq!(y.to_bits(), out.item().to_bits());
            for (k, x) in xs.iter().enumerate() {
                assert_eq!(plan.grad(k).unwrap()[[0, 0]].to_bits(), g[*x][[0, 0]].to_bits());
            }
        }
    }

    /// A step whose ops depend on captured state is found out by the check
    /// when that state changes: other ops than the plan's.
    #[test]
    fn a_step_that_records_other_ops_fails_its_check() {
        let relu = Cell::new(true);
        let mut plan = Plan::compile(vec![Arg::param(arr2(&[[1.0f64, -2.0]]))], |_, a| {
            if relu.get() {
                a[0].relu().sum()
            } else {
                a[0].tanh().sum()
            }
        })
        .unwrap();
        plan.run().unwrap();
        relu.set(false);
        let e = plan.check().unwrap_err();
        assert!(matches!(&e, PlanError::Structure { node: 1, .. }), "{e}");
        assert!(e.to_string().contains("the plan has relu [1, 2], the step now records tanh [1, 2]"), "{e}");
    }

    /// Reading a value to branch on is refused when compiling, naming the
    /// node and both places; reading a constant's value is not.
    #[test]
    fn reading_a_value_of_the_step_is_refused_and_a_constant_is_not() {
        let e = Plan::compile(vec![Arg::param(arr2(&[[1.0f64]])), Arg::input(arr2(&[[2.0]]))], |_, a| {
            let y = a[0] * a[1];
            if y.item() > 0.0 {
                y.sum()
            } else {
                (-y).sum()
            }
        })
        .unwrap_err();
        let PlanError::ReadsValue { node, op, location, read_at } = &e else { panic!("{e}") };
        assert_eq!((*node, *op), (2, "mul"));
        assert!(location.contains("plan.rs") && read_at.contains("plan.rs"), "{e}");
        // A constant's value may be read: it is the same on every run.
        let mut plan = Plan::compile(vec![Arg::param(arr2(&[[3.0f64]]))], |tape, a| {
            let c = tape.constant(arr2(&[[2.0]]));
            let k = c.item();
            (a[0] * k).sum()
        })
        .unwrap();
        assert_eq!(plan.run().unwrap(), 6.0);
    }

    /// Ops that need no gradient (inside no_grad, or on inputs alone) are
    /// computed again too; ops on constants alone are not.
    #[test]
    fn ops_without_gradients_are_replayed_and_constants_are_folded() {
        let mut plan = Plan::compile(
            vec![Arg::param(arr2(&[[1.0f64, 2.0]])), Arg::input(arr2(&[[3.0, 4.0]]))],
            |tape, a| {
                let scale = tape.no_grad(|| a[1].exp()); // needs no gradient, depends on an input
                let c = tape.constant(arr2(&[[1.0, 1.0]])) * 2.0; // constants alone
                (a[0] * scale * c).sum()
            },
        )
        .unwrap();
        assert_eq!(plan.num_ops(), 4); // exp, the two muls and the sum
        plan.set(1, arr2(&[[0.0, 1.0]])).unwrap();
        let loss = plan.run().unwrap();
        assert_eq!(loss, 2.0 * (1.0 + 2.0 * 1f64.exp()));
        assert_eq!(plan.grad(0).unwrap().iter().copied().collect::<Vec<_>>(), vec![2.0, 2.0 * 1f64.exp()]);
    }

    /// Arguments are checked once each, when set: the shape and the index.
    #[test]
    fn arguments_of_another_shape_or_index_are_refused() {
        let mut plan =
            Plan::compile(vec![Arg::input(Array2::<f32>::zeros((3, 64)))], |_, a| a[0].sum()).unwrap();
        let e = plan.set(0, Array2::<f32>::zeros((3, 50))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "argument 0 has shape [3, 50], the plan was recorded for [3, 64]: compile a plan for this shape"
        );
        assert_eq!(
            plan.set(1, Array2::<f32>::zeros((3, 64))).unwrap_err(),
            PlanError::NoSuchArg { arg: 1, count: 1 }
        );
        assert!(plan.write(2, |_| ()).is_err());
        let e = Plan::compile(vec![Arg::input(Array2::<f32>::zeros((2, 2)))], |_, a| a[0] * 2.0).unwrap_err();
        assert_eq!(e, PlanError::NotALoss { shape: vec![2, 2] });
    }

    /// The check can fail: a planted wrong gradient (one ulp off) and a
    /// planted NaN value are each found and named.
    #[test]
    fn the_check_finds_a_planted_wrong_gradient_and_a_nan() {
        let args = || vec![Arg::param(arr2(&[[1.0f64, 2.0]])), Arg::input(arr2(&[[0.5, 0.25]]))];
        fn step<'t>(_: &'t Tape<f64>, a: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
            (a[0] * a[1]).tanh().sum()
        }
        let mut plan = Plan::compile(args(), step).unwrap();
        plan.run().unwrap();
        let g = plan.grads[0].as_mut().unwrap();
        let Repr::Many(v) = g else { panic!("a (1, 2) gradient is an array") };
        v[[0, 1]] = f64::from_bits(v[[0, 1]].to_bits() + 1);
        let e = plan.check().unwrap_err();
        assert!(matches!(&e, PlanError::Diverged { node: 0, what: "gradient", .. }), "{e}");
        let mut plan = Plan::compile(args(), step).unwrap();
        plan.run().unwrap();
        let Repr::Many(v) = &mut plan.nodes[3].value else { panic!("tanh's value is an array") };
        v[[0, 0]] = f64::NAN;
        let e = plan.check().unwrap_err();
        assert!(matches!(&e, PlanError::Diverged { node: 3, op: "tanh", what: "value", .. }), "{e}");
    }

    /// The first run on the recorded arguments compares each value it
    /// computes with the recorded one: a planted wrong value is found.
    #[test]
    fn the_first_run_on_the_recorded_arguments_finds_a_planted_wrong_value() {
        let args = vec![Arg::param(arr2(&[[1.0f64, 2.0]])), Arg::input(arr2(&[[0.5, 0.25]]))];
        let mut plan = Plan::compile(args, |_, a| (a[0] * a[1]).tanh().sum()).unwrap();
        let Repr::Many(v) = &mut plan.nodes[2].value else { panic!("the product is an array") };
        v[[0, 1]] += 1e-12;
        let e = plan.run().unwrap_err();
        assert!(matches!(&e, PlanError::Diverged { node: 2, op: "mul", what: "value", .. }), "{e}");
    }

    #[test]
    #[should_panic(expected = "grad: argument 0 is an input, not a parameter")]
    fn an_input_has_no_gradient() {
        let mut plan = Plan::compile(vec![Arg::input(arr2(&[[1.0f64]]))], |_, a| a[0].sum()).unwrap();
        plan.run().unwrap();
        let _ = plan.grad(0);
    }
}
