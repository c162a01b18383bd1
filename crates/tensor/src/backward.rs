//! The engine: one reverse walk over the tape that calls each op's rule,
//! reduces broadcast gradients to their input's shape and sums the
//! gradients of values used more than once. This is the only place that
//! accumulates or un-broadcasts.

use crate::ops::backend::{ArrayBackend, Backend, TensorBackend};
use crate::ops::Fusion;
use crate::repr::Repr;
use crate::tape::Node;
use crate::trace::Phase;
use crate::{Element, IntoValue, Tape, Tensor, Value};
use ndarray::{ArcArray, IxDyn};
use smallvec::SmallVec;
use tapegrad_kernels::Shape;

#[cfg(test)]
thread_local! {
    /// How many ReLU gates the engine has had applied by the op computing
    /// the gradient (tests check that fusion happens where it should).
    pub(crate) static GATES_FUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How the engine sums gradients of type `G`: on arrays and numbers
/// ([`Repr`], an ordinary backward pass) or on tensors (a recorded one).
pub(crate) trait Accumulator<G> {
    /// Whether `g` has the shape `shape`.
    fn has_shape(&self, g: &G, shape: &[usize]) -> bool;
    /// `g` summed down to `shape`, the inverse of broadcasting.
    fn sum_to(&self, g: &G, shape: &[usize]) -> G;
    /// Adds `g` into an accumulated gradient.
    fn accumulate(&self, acc: &mut G, g: G);
    /// Gives back a gradient no one will read.
    fn release(&self, g: G) {
        drop(g);
    }
}

impl<T: Element> Accumulator<Repr<T>> for ArrayBackend {
    #[inline]
    fn has_shape(&self, g: &Repr<T>, shape: &[usize]) -> bool {
        g.has_shape(shape)
    }
    fn sum_to(&self, g: &Repr<T>, shape: &[usize]) -> Repr<T> {
        g.sum_to(shape)
    }
    #[inline]
    fn accumulate(&self, acc: &mut Repr<T>, g: Repr<T>) {
        acc.accumulate(g)
    }
    fn release(&self, g: Repr<T>) {
        tapegrad_kernels::pool::recycle_boxes(g.into_box().into_iter());
    }
}

impl<'t, T: Element> Accumulator<Tensor<'t, T>> for TensorBackend<'t, T> {
    fn has_shape(&self, g: &Tensor<'t, T>, shape: &[usize]) -> bool {
        g.shape_small().as_slice() == shape
    }
    fn sum_to(&self, g: &Tensor<'t, T>, shape: &[usize]) -> Tensor<'t, T> {
        Backend::sum_to(self, g, shape)
    }
    fn accumulate(&self, acc: &mut Tensor<'t, T>, g: Tensor<'t, T>) {
        *acc = self.add(acc, &g);
    }
}

/// Walks nodes `seed_id..=0` in reverse. `step(i, g, emit)` runs node
/// `i`'s rule on its gradient `g` and calls `emit(input, gradient, input's
/// shape)` for each input that needs a gradient; the engine sums that
/// gradient to the input's shape and accumulates it. Inputs precede the
/// nodes that use them, so the gradient of node `i` is complete when `i` is
/// reached and is lent to `step` without a copy. With `keep`, the gradient
/// of each node not kept is given back as soon as its rule has run.
fn run<G>(
    acc: &impl Accumulator<G>,
    seed_id: usize,
    seed: G,
    keep: Option<&[bool]>,
    step: impl FnMut(usize, &G, &mut dyn FnMut(u32, G, &[usize])),
) -> Vec<Option<G>> {
    let mut grads = Vec::with_capacity(seed_id + 1);
    run_into(acc, seed_id, seed, keep, &mut grads, step);
    grads
}

/// [`run`] into `grads`, which is emptied first and reused (a replayed
/// step keeps one table across runs: no allocation once it has grown).
pub(crate) fn run_into<G>(
    acc: &impl Accumulator<G>,
    seed_id: usize,
    seed: G,
    keep: Option<&[bool]>,
    grads: &mut Vec<Option<G>>,
    mut step: impl FnMut(usize, &G, &mut dyn FnMut(u32, G, &[usize])),
) {
    for g in grads.drain(..).flatten() {
        acc.release(g);
    }
    grads.resize_with(seed_id, || None);
    grads.push(Some(seed));
    for i in (0..=seed_id).rev() {
        let (before, from_i) = grads.split_at_mut(i);
        let Some(g) = &from_i[0] else { continue };
        step(i, g, &mut |j, gj, shape| {
            let gj = if acc.has_shape(&gj, shape) {
                gj
            } else {
                let summed = acc.sum_to(&gj, shape);
                acc.release(gj);
                summed
            };
            match &mut before[j as usize] {
                Some(a) => acc.accumulate(a, gj),
                slot @ None => *slot = Some(gj),
            }
        });
        if keep.is_some_and(|k| !k[i])
            && let Some(g) = from_i[0].take()
        {
            acc.release(g);
        }
    }
}

/// The gradients from one backward pass, looked up by tensor.
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(arr1(&[2.0]));
/// let g = tape.backward((x * x * x).sum());
/// assert_eq!(g[x][0], 12.0); // d(x^3)/dx = 3x^2
/// ```
pub struct Gradients<T: Element> {
    grads: Vec<Option<Repr<T>>>,
    /// From [`Tape::backward_for`]: which tensors were asked for.
    asked: Option<Vec<bool>>,
    tape: *const Tape<T>,
    generation: u32,
}

impl<T: Element> Gradients<T> {
    /// The gradient of `x`, with `x`'s shape; `None` when `x` is a constant or
    /// the output does not depend on it.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let (a, b) = (tape.var(arr1(&[1.0])), tape.var(arr1(&[1.0])));
    /// let g = tape.backward(a.sum());
    /// assert!(g.get(a).is_some() && g.get(b).is_none());
    /// ```
    #[track_caller]
    pub fn get(&self, x: Tensor<'_, T>) -> Option<&Value<T>> {
        if !std::ptr::eq(self.tape, x.tape) || x.generation != self.generation {
            panic!("gradients: tensor #{} is not from the tape these gradients came from", x.id);
        }
        self.grads.get(x.id as usize).and_then(Option::as_ref).map(Repr::value)
    }
}

impl<T: Element> Drop for Gradients<T> {
    /// Hands the gradient buffers back to the pool for the next iteration.
    fn drop(&mut self) {
        tapegrad_kernels::pool::recycle_boxes(self.grads.drain(..).flatten().filter_map(Repr::into_box));
    }
}

impl<T: Element> std::ops::Index<Tensor<'_, T>> for Gradients<T> {
    type Output = Value<T>;
    #[track_caller]
    fn index(&self, x: Tensor<'_, T>) -> &Value<T> {
        self.get(x).unwrap_or_else(|| {
            if self.asked.as_ref().is_some_and(|a| !a.get(x.id as usize).copied().unwrap_or(false)) {
                panic!("gradients: tensor #{} was not among the tensors passed to backward_for", x.id)
            }
            panic!(
                "gradients: tensor #{} has no gradient (a constant, or the output does not depend on it)",
                x.id
            )
        })
    }
}

/// Gradients recorded on the tape as tensors, so they can be differentiated
/// again. Made by [`Tape::grad_graph`].
///
/// ```
/// use tapegrad_tensor::{ndarray::arr1, Tape};
/// let tape = Tape::<f64>::new();
/// let x = tape.var(arr1(&[2.0]));
/// let dy = tape.grad_graph((x * x * x).sum())[x]; // 3x^2, on the tape
/// let d2y = tape.backward(dy.sum());
/// assert_eq!(d2y[x][0], 12.0); // 6x
/// ```
pub struct GradGraph<'t, T: Element> {
    grads: Vec<Option<Tensor<'t, T>>>,
}

impl<'t, T: Element> GradGraph<'t, T> {
    /// The gradient of `x` as a tensor on the tape, or `None` when the
    /// output does not depend on `x`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0]));
    /// let c = tape.constant(arr1(&[1.0]));
    /// assert!(tape.grad_graph((x * c).sum()).get(c).is_none());
    /// ```
    pub fn get(&self, x: Tensor<'t, T>) -> Option<Tensor<'t, T>> {
        self.grads.get(x.id as usize).copied().flatten()
    }
}

impl<'t, T: Element> std::ops::Index<Tensor<'t, T>> for GradGraph<'t, T> {
    type Output = Tensor<'t, T>;
    #[track_caller]
    fn index(&self, x: Tensor<'t, T>) -> &Tensor<'t, T> {
        self.grads.get(x.id as usize).and_then(Option::as_ref).unwrap_or_else(|| {
            panic!("grad_graph: tensor #{} has no gradient (the output does not depend on it)", x.id)
        })
    }
}

impl<T: Element> Tape<T> {
    /// Backpropagates from a one-element output `y` (seed gradient 1) and
    /// returns the gradient of every tensor that requires one.
    ///
    /// # Panics
    /// When `y` has more than one element: use [`Tape::backward_with`] and
    /// pass the seed gradient.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr2, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(arr2(&[[1.0, 2.0]]));
    /// let x = tape.constant(arr2(&[[3.0], [4.0]]));
    /// let g = tape.backward(w.matmul(x).sum());
    /// assert_eq!(g[w], arr2(&[[3.0, 4.0]]).into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn backward(&self, y: Tensor<'_, T>) -> Gradients<T> {
        let shape = y.shape_small();
        if shape.iter().product::<usize>() != 1 {
            panic!(
                "backward: the output has shape {:?}, not one element; reduce it (sum, mean) or pass a seed gradient to backward_with",
                shape.as_slice()
            );
        }
        self.backward_with(y, ArcArray::from_elem(IxDyn(&shape), T::one()))
    }

    /// Backpropagates from `y` with the seed gradient `seed` (the gradient
    /// of some scalar with respect to `y`, of `y`'s shape).
    ///
    /// # Panics
    /// When `seed`'s shape differs from `y`'s.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0, 2.0]));
    /// let g = tape.backward_with(x * 3.0, arr1(&[1.0, -1.0]));
    /// assert_eq!(g[x].as_slice().unwrap(), &[3.0, -3.0]);
    /// ```
    #[track_caller]
    pub fn backward_with(&self, y: Tensor<'_, T>, seed: impl IntoValue<T>) -> Gradients<T> {
        self.backward_arrays(y, seed.into_value(), None)
    }

    /// Backpropagates from a one-element output `y`, like
    /// [`Tape::backward`], and keeps the gradients of `wrt` alone (PyTorch's
    /// `torch.autograd.grad`): what a training step needs. Each other
    /// gradient is given back to the buffer pool as soon as it has been
    /// used, and where a layer's ReLU gate can be applied by the op that
    /// computes the layer's gradient, it is (one pass over memory fewer per
    /// layer, the same gradients bit for bit).
    ///
    /// # Panics
    /// When `y` has more than one element, or a tensor is from another
    /// tape; indexing the result by a tensor not in `wrt` panics.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr2, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(arr2(&[[1.0, -2.0]]));
    /// let x = tape.constant(arr2(&[[3.0], [1.0]]));
    /// let b = tape.var(arr2(&[[0.5]]));
    /// let h = w.affine_relu(x, b); // relu(3 - 2 + 0.5) = 1.5
    /// let g = tape.backward_for((h * h).sum(), &[w, b]);
    /// assert_eq!(g[w], arr2(&[[9.0, 3.0]]).into_dyn().into_shared()); // 2h x^T
    /// assert_eq!(g[b][[0, 0]], 3.0);
    /// assert!(g.get(h).is_none());
    /// ```
    #[track_caller]
    pub fn backward_for(&self, y: Tensor<'_, T>, wrt: &[Tensor<'_, T>]) -> Gradients<T> {
        let shape = y.shape_small();
        if shape.iter().product::<usize>() != 1 {
            panic!(
                "backward_for: the output has shape {:?}, not one element; reduce it (sum, mean)",
                shape.as_slice()
            );
        }
        // Sized for every tensor asked for, even one recorded after `y`
        // (it gets no gradient, and is still known to have been asked for).
        let len = wrt.iter().map(|x| x.id).chain([y.id]).max().unwrap_or(0) as usize + 1;
        let mut keep = vec![false; len];
        for x in wrt {
            self.check(x, "backward_for");
            keep[x.id as usize] = true;
        }
        self.backward_arrays(y, ArcArray::from_elem(IxDyn(&shape), T::one()), Some(keep))
    }

    /// The backward pass on arrays from `y` with gradient `seed`; with
    /// `keep`, only the gradients of the nodes it marks are kept, and the
    /// ReLU gates are fused (see [`crate::ops::Fusion`]).
    #[track_caller]
    fn backward_arrays(&self, y: Tensor<'_, T>, seed: Value<T>, keep: Option<Vec<bool>>) -> Gradients<T> {
        self.check(&y, "backward");
        let shape = y.shape_small();
        if seed.shape() != shape.as_slice() {
            panic!(
                "backward: seed gradient of shape {:?} for an output of shape {:?}",
                seed.shape(),
                shape.as_slice()
            );
        }
        let nodes = self.nodes.borrow();
        let trace = self.trace.get().then_some(self);
        let mut grads = Vec::with_capacity(y.id as usize + 1);
        backward_nodes(
            &nodes,
            y.id as usize,
            Repr::new(seed),
            keep.as_deref(),
            trace,
            &mut Scratch::default(),
            &mut grads,
        );
        Gradients { grads, asked: keep, tape: self, generation: self.generation() }
    }

    /// Backpropagates from a one-element `y` with every step of the backward
    /// pass recorded on this tape (PyTorch's `create_graph=True`), so each
    /// gradient is a tensor that can be differentiated again, to any order.
    ///
    /// # Panics
    /// When `y` has more than one element.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[0.3]));
    /// let s = x.sigmoid();
    /// let ds = tape.grad_graph(s.sum())[x];
    /// let d2s = tape.grad_graph(ds.sum())[x];
    /// let v = 0.3f64;
    /// let sv = 1.0 / (1.0 + (-v).exp());
    /// assert!((d2s.item() - sv * (1.0 - sv) * (1.0 - 2.0 * sv)).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn grad_graph<'t>(&'t self, y: Tensor<'t, T>) -> GradGraph<'t, T> {
        let shape = y.shape_small();
        if shape.iter().product::<usize>() != 1 {
            panic!("grad_graph: the output has shape {:?}, not one element", shape.as_slice());
        }
        let seed = self.constant(ArcArray::from_elem(IxDyn(&shape), T::one()));
        self.grad_graph_with(y, seed)
    }

    /// [`Tape::grad_graph`] from a seed gradient that is itself a tensor
    /// (it may depend on other tensors; the result is differentiable in it).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::arr1, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[1.0, 2.0]));
    /// let v = tape.constant(arr1(&[1.0, 0.0]));
    /// let g = tape.grad_graph_with(x * x, v)[x]; // 2 x v
    /// assert_eq!(g.value().as_slice().unwrap(), &[2.0, 0.0]);
    /// ```
    #[track_caller]
    pub fn grad_graph_with<'t>(&'t self, y: Tensor<'t, T>, seed: Tensor<'t, T>) -> GradGraph<'t, T> {
        self.check(&y, "grad_graph");
        self.check(&seed, "grad_graph");
        let (ys, ss) = (y.shape_small(), seed.shape_small());
        if ys != ss {
            panic!(
                "grad_graph: seed gradient of shape {:?} for an output of shape {:?}",
                ss.as_slice(),
                ys.as_slice()
            );
        }
        let b = TensorBackend { tape: self };
        let generation = self.generation();
        let tensor = |id: u32| Tensor { tape: self, id, generation };
        let grads = run(&b, y.id as usize, seed, None, |i, g, emit| {
            // Take the op out while its rule records new nodes on the tape.
            let (op, inputs, need, shapes) = {
                let mut nodes = self.nodes.borrow_mut();
                let op = nodes[i].op.take();
                let inputs = nodes[i].inputs.clone();
                let need: SmallVec<[bool; 4]> =
                    inputs.iter().map(|&j| nodes[j as usize].requires_grad).collect();
                let shapes: SmallVec<[Shape; 2]> =
                    inputs.iter().map(|&j| nodes[j as usize].value.shape()).collect();
                (op, inputs, need, shapes)
            };
            let Some(op) = op else { return };
            let xs: SmallVec<[Tensor<'_, T>; 2]> = inputs.iter().map(|&j| tensor(j)).collect();
            let xr: SmallVec<[&Tensor<'_, T>; 2]> = xs.iter().collect();
            let gs = op.backward_tensors(&b, &xr, &tensor(i as u32), g, &need);
            self.nodes.borrow_mut()[i].op = Some(op);
            for (k, gk) in gs.into_iter().enumerate() {
                if let (true, Some(gk)) = (need[k], gk) {
                    emit(inputs[k], gk, &shapes[k]);
                }
            }
        });
        GradGraph { grads }
    }
}

/// Buffers the backward pass on arrays works in, kept by a replayed step
/// across runs.
#[derive(Default)]
pub(crate) struct Scratch {
    /// How many ops use each node's value.
    uses: Vec<u32>,
    /// Whether each node's gradient has been gated by the op computing it.
    gated: Vec<bool>,
}

/// The backward pass on arrays over `nodes` from node `seed_id` with
/// gradient `seed`, into `grads`: the one walk behind [`Tape::backward`],
/// [`Tape::backward_for`] and a replayed step ([`crate::Plan`]), so their
/// gradients agree bit for bit. With `keep`, only the gradients of the
/// nodes it marks are kept, and the ReLU gates are fused (see
/// [`crate::ops::Fusion`]); with `trace`, each gradient is checked for
/// non-finite values on that tape.
pub(crate) fn backward_nodes<T: Element>(
    nodes: &[Node<T>],
    seed_id: usize,
    seed: Repr<T>,
    keep: Option<&[bool]>,
    trace: Option<&Tape<T>>,
    scratch: &mut Scratch,
    grads: &mut Vec<Option<Repr<T>>>,
) {
    // Gate fusion needs to know that a value's gradient comes from one
    // op alone (one use) and that no one asked for it; the trace checks
    // each op's own gradients, unfused.
    let fuse = keep.filter(|_| trace.is_none());
    let Scratch { uses, gated } = scratch;
    uses.clear();
    uses.resize(if fuse.is_some() { seed_id + 1 } else { 0 }, 0);
    if fuse.is_some() {
        for node in &nodes[..=seed_id] {
            for &j in &node.inputs {
                uses[j as usize] += 1;
            }
        }
    }
    gated.clear();
    gated.resize(uses.len(), false);
    run_into(&ArrayBackend, seed_id, seed, keep, grads, |i, g, emit| {
        let node = &nodes[i];
        let Some(op) = &node.op else { return };
        let n = node.inputs.len();
        if let (true, false, true, Some(g), Some(y)) =
            (node.scalar, trace.is_some(), n <= 4, g.as_one(), node.value.as_one())
        {
            // The scalar lane (recorded only for ops of at most 4
            // inputs): the rule runs on numbers.
            let mut need = [false; 4];
            let mut xs = [y; 4];
            for (k, &j) in node.inputs.iter().enumerate() {
                let input = &nodes[j as usize];
                need[k] = input.requires_grad;
                xs[k] = input.value.as_one().expect("scalar-lane inputs are numbers");
            }
            let xr = [&xs[0], &xs[1], &xs[2], &xs[3]];
            let gs = op.backward_scalars(&xr[..n], &y, &g, &need[..n]);
            for (k, gk) in gs.into_iter().enumerate() {
                if let (true, Some(gk)) = (need[k], gk) {
                    emit(node.inputs[k], Repr::one(gk), xs[k].shape());
                }
            }
            return;
        }
        let need: SmallVec<[bool; 4]> =
            node.inputs.iter().map(|&j| nodes[j as usize].requires_grad).collect();
        let xs: SmallVec<[&Value<T>; 4]> =
            node.inputs.iter().map(|&j| nodes[j as usize].value.value()).collect();
        let mut fusion = Fusion { pregated: gated.get(i).copied().unwrap_or(false), gates: SmallVec::new() };
        if let Some(keep) = fuse {
            for (k, &j) in node.inputs.iter().enumerate() {
                let (j, input) = (j as usize, &nodes[j as usize]);
                let gate = need[k]
                    && op.gateable_input(k)
                    && !keep[j]
                    && uses[j] == 1
                    && !input.scalar
                    && input.op.as_ref().is_some_and(|o| o.gated_output())
                    && input.value.value().is_standard_layout();
                gated[j] |= gate;
                #[cfg(test)]
                if gate {
                    GATES_FUSED.with(|c| c.set(c.get() + 1));
                }
                fusion.gates.push(gate.then(|| input.value.value()));
            }
        }
        let gs = op.backward_values(&xs, node.value.value(), g.value(), &need, &fusion);
        for (k, gk) in gs.into_iter().enumerate() {
            if let (true, Some(gk)) = (need[k], gk) {
                if let Some(tape) = trace {
                    let shapes: Vec<Vec<usize>> = xs.iter().map(|x| x.shape().to_vec()).collect();
                    tape.check_finite(&gk, op.name(), i, &shapes, Phase::Backward, node.location);
                }
                emit(node.inputs[k], Repr::new(gk), xs[k].shape());
            }
        }
    });
}
