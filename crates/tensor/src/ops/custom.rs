//! Ops defined by their users: a forward function and a backward rule of
//! the user's, recorded on the tape like a built-in op.
//!
//! A [`CustomOp`] writes its rule in tensor ops, so it is recorded like a
//! built-in rule: grad-of-grad, [`hvp`](crate::hvp),
//! [`gradgradcheck`](crate::gradgradcheck) and forward mode all work
//! through it. A [`FirstOrderOp`] writes its rule on plain arrays: first
//! derivatives only, and a second derivative through it panics naming the
//! op. The engine checks the shapes a rule returns, sums broadcast
//! gradients down and accumulates, as for every op.

use super::{Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tape, Tensor, Value};
use ndarray::{ArrayD, ArrayViewD};
use smallvec::SmallVec;
use tapegrad_kernels::shape::broadcasts_to;
use tapegrad_kernels::Shape;

/// An op of your own, with its backward rule written in tensor ops.
///
/// `forward` computes the output from the input values; `backward` gets the
/// inputs `xs`, the output `y` and the gradient `g` of the output as
/// tensors and returns the gradient of each input (`None`: zero), of the
/// input's shape or of the output's shape when the input was broadcast to
/// it. Because the rule is made of tensor ops, it is recorded when a
/// gradient is to be differentiated again, so second derivatives,
/// [`hvp`](crate::hvp) and [`gradgradcheck`](crate::gradgradcheck) work
/// through the op, and forward mode ([`jvp`](crate::jvp)) is derived from
/// the rule. Record it with [`Tape::custom`]; check it with
/// [`gradcheck`](crate::gradcheck).
///
/// A hand-written sigmoid, `y = 1 / (1 + e^-x)` with `dy/dx = y (1 - y)`,
/// checked against finite differences to first and second order:
///
/// ```
/// use tapegrad_tensor::{gradcheck, gradgradcheck, ndarray::{arr1, ArrayD, ArrayViewD}};
/// use tapegrad_tensor::{CustomOp, Tensor};
///
/// struct MySigmoid;
/// impl CustomOp<f64> for MySigmoid {
///     fn name(&self) -> &'static str {
///         "my_sigmoid"
///     }
///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
///         xs[0].mapv(|x| 1.0 / (1.0 + (-x).exp()))
///     }
///     fn backward<'t>(
///         &self,
///         _xs: &[Tensor<'t, f64>],
///         y: Tensor<'t, f64>,
///         g: Tensor<'t, f64>,
///     ) -> Vec<Option<Tensor<'t, f64>>> {
///         vec![Some(g * y * (-y + 1.0))]
///     }
/// }
///
/// let x = [arr1(&[-2.0, 0.0, 0.5, 3.0]).into_dyn()];
/// fn f<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
///     x[0].tape().custom(MySigmoid, &[x[0]])
/// }
/// assert!(gradcheck(f, &x).passed());
/// assert!(gradgradcheck(f, &x).passed());
/// ```
///
/// The same op with a planted mistake (the rule forgets the `1 - y`) is
/// caught:
///
/// ```
/// # use tapegrad_tensor::{gradcheck, ndarray::{arr1, ArrayD, ArrayViewD}, CustomOp, Tensor};
/// struct Wrong;
/// impl CustomOp<f64> for Wrong {
///     fn name(&self) -> &'static str {
///         "wrong_sigmoid"
///     }
///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
///         xs[0].mapv(|x| 1.0 / (1.0 + (-x).exp()))
///     }
///     fn backward<'t>(&self, _: &[Tensor<'t, f64>], y: Tensor<'t, f64>, g: Tensor<'t, f64>) -> Vec<Option<Tensor<'t, f64>>> {
///         vec![Some(g * y)]
///     }
/// }
/// let x = [arr1(&[-2.0, 0.0, 0.5, 3.0]).into_dyn()];
/// let report = gradcheck(|x| x[0].tape().custom(Wrong, &[x[0]]), &x);
/// assert!(!report.passed());
/// ```
pub trait CustomOp<T: Element>: 'static {
    /// The op's name, used in panics, error reports and DOT output.
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{ArrayD, ArrayViewD}, CustomOp, Tensor};
    /// struct Double;
    /// impl CustomOp<f32> for Double {
    ///     fn name(&self) -> &'static str { "double" }
    ///     fn forward(&self, xs: &[ArrayViewD<'_, f32>]) -> ArrayD<f32> { &xs[0] * 2.0 }
    ///     fn backward<'t>(&self, _: &[Tensor<'t, f32>], _: Tensor<'t, f32>, g: Tensor<'t, f32>) -> Vec<Option<Tensor<'t, f32>>> {
    ///         vec![Some(g * 2.0)]
    ///     }
    /// }
    /// assert_eq!(Double.name(), "double");
    /// ```
    fn name(&self) -> &'static str;

    /// The output, from the input values.
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, CustomOp, Tensor};
    /// # struct Double;
    /// # impl CustomOp<f32> for Double {
    /// #     fn name(&self) -> &'static str { "double" }
    /// fn forward(&self, xs: &[ArrayViewD<'_, f32>]) -> ArrayD<f32> { &xs[0] * 2.0 }
    /// #     fn backward<'t>(&self, _: &[Tensor<'t, f32>], _: Tensor<'t, f32>, g: Tensor<'t, f32>) -> Vec<Option<Tensor<'t, f32>>> {
    /// #         vec![Some(g * 2.0)]
    /// #     }
    /// # }
    /// let x = arr1(&[1.0f32]).into_dyn();
    /// assert_eq!(Double.forward(&[x.view()])[0], 2.0);
    /// ```
    fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T>;

    /// The gradient of each input given the gradient `g` of the output, in
    /// tensor ops (one entry per input; `None` for zero).
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, CustomOp, Tape, Tensor};
    /// # struct Double;
    /// # impl CustomOp<f32> for Double {
    /// #     fn name(&self) -> &'static str { "double" }
    /// #     fn forward(&self, xs: &[ArrayViewD<'_, f32>]) -> ArrayD<f32> { &xs[0] * 2.0 }
    /// fn backward<'t>(&self, _: &[Tensor<'t, f32>], _: Tensor<'t, f32>, g: Tensor<'t, f32>) -> Vec<Option<Tensor<'t, f32>>> {
    ///     vec![Some(g * 2.0)]
    /// }
    /// # }
    /// let tape = Tape::<f32>::new();
    /// let x = tape.var(arr1(&[1.0f32, 5.0]));
    /// assert_eq!(tape.backward(tape.custom(Double, &[x]).sum())[x].as_slice().unwrap(), &[2.0, 2.0]);
    /// ```
    fn backward<'t>(
        &self,
        xs: &[Tensor<'t, T>],
        y: Tensor<'t, T>,
        g: Tensor<'t, T>,
    ) -> Vec<Option<Tensor<'t, T>>>;
}

/// An op of your own whose backward rule works on plain arrays: first
/// derivatives only. Asking for a second derivative through it (a
/// [`Tape::grad_graph`], [`hvp`](crate::hvp),
/// [`gradgradcheck`](crate::gradgradcheck)) panics naming the op, never a
/// silently wrong number; write a [`CustomOp`] for those. Forward mode
/// works when [`jvp`](FirstOrderOp::jvp) is given and panics naming the op
/// otherwise. Record it with [`Tape::custom_first_order`].
///
/// ```
/// use tapegrad_tensor::{gradcheck, ndarray::{arr1, ArrayD, ArrayViewD}, FirstOrderOp};
///
/// /// `y = x^3`, `dy/dx = 3 x^2`, on arrays.
/// struct Cube;
/// impl FirstOrderOp<f64> for Cube {
///     fn name(&self) -> &'static str {
///         "cube"
///     }
///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
///         xs[0].mapv(|x| x * x * x)
///     }
///     fn backward(
///         &self,
///         xs: &[ArrayViewD<'_, f64>],
///         _y: ArrayViewD<'_, f64>,
///         g: ArrayViewD<'_, f64>,
///     ) -> Vec<Option<ArrayD<f64>>> {
///         vec![Some(&g * &xs[0].mapv(|x| 3.0 * x * x))]
///     }
/// }
///
/// let x = [arr1(&[-1.5, 0.5, 2.0]).into_dyn()];
/// assert!(gradcheck(|x| x[0].tape().custom_first_order(Cube, &[x[0]]), &x).passed());
/// ```
pub trait FirstOrderOp<T: Element>: 'static {
    /// The op's name, used in panics, error reports and DOT output.
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{ArrayD, ArrayViewD}, FirstOrderOp};
    /// struct Id;
    /// impl FirstOrderOp<f64> for Id {
    ///     fn name(&self) -> &'static str { "id" }
    ///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { xs[0].to_owned() }
    ///     fn backward(&self, _: &[ArrayViewD<'_, f64>], _: ArrayViewD<'_, f64>, g: ArrayViewD<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
    ///         vec![Some(g.to_owned())]
    ///     }
    /// }
    /// assert_eq!(Id.name(), "id");
    /// ```
    fn name(&self) -> &'static str;

    /// The output, from the input values.
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, FirstOrderOp};
    /// # struct Id;
    /// # impl FirstOrderOp<f64> for Id {
    /// #     fn name(&self) -> &'static str { "id" }
    /// fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { xs[0].to_owned() }
    /// #     fn backward(&self, _: &[ArrayViewD<'_, f64>], _: ArrayViewD<'_, f64>, g: ArrayViewD<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
    /// #         vec![Some(g.to_owned())]
    /// #     }
    /// # }
    /// assert_eq!(Id.forward(&[arr1(&[4.0]).into_dyn().view()])[0], 4.0);
    /// ```
    fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T>;

    /// The gradient of each input given the gradient `g` of the output, on
    /// arrays (one entry per input; `None` for zero).
    ///
    /// ```
    /// # use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, FirstOrderOp};
    /// # struct Id;
    /// # impl FirstOrderOp<f64> for Id {
    /// #     fn name(&self) -> &'static str { "id" }
    /// #     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { xs[0].to_owned() }
    /// fn backward(&self, _: &[ArrayViewD<'_, f64>], _: ArrayViewD<'_, f64>, g: ArrayViewD<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
    ///     vec![Some(g.to_owned())]
    /// }
    /// # }
    /// let g = arr1(&[1.0]).into_dyn();
    /// assert_eq!(Id.backward(&[g.view()], g.view(), g.view())[0].as_ref().unwrap()[0], 1.0);
    /// ```
    fn backward(
        &self,
        xs: &[ArrayViewD<'_, T>],
        y: ArrayViewD<'_, T>,
        g: ArrayViewD<'_, T>,
    ) -> Vec<Option<ArrayD<T>>>;

    /// Forward mode: the output's tangent `sum_i J_i dx_i` from the inputs'
    /// tangents (`None`: zero), or `None` (the default) when the op has no
    /// forward rule; [`jvp`](crate::jvp) through it then panics naming the
    /// op.
    ///
    /// ```
    /// # use tapegrad_tensor::{jvp, ndarray::{arr1, ArrayD, ArrayViewD}, FirstOrderOp};
    /// # struct Id;
    /// # impl FirstOrderOp<f64> for Id {
    /// #     fn name(&self) -> &'static str { "id" }
    /// #     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { xs[0].to_owned() }
    /// #     fn backward(&self, _: &[ArrayViewD<'_, f64>], _: ArrayViewD<'_, f64>, g: ArrayViewD<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
    /// #         vec![Some(g.to_owned())]
    /// #     }
    /// fn jvp(&self, _: &[ArrayViewD<'_, f64>], dx: &[Option<ArrayViewD<'_, f64>>]) -> Option<ArrayD<f64>> {
    ///     dx[0].as_ref().map(|d| d.to_owned())
    /// }
    /// # }
    /// let (x, v) = (arr1(&[2.0]).into_dyn(), arr1(&[0.5]).into_dyn());
    /// let (_, dy) = jvp(|x| x[0].tape().custom_first_order(Id, &[x[0]]), &[x], &[v]);
    /// assert_eq!(dy[0], 0.5);
    /// ```
    fn jvp(&self, xs: &[ArrayViewD<'_, T>], dx: &[Option<ArrayViewD<'_, T>>]) -> Option<ArrayD<T>> {
        let _ = (xs, dx);
        None
    }
}

/// A user's op as the tape runs it: a [`CustomOp`] or a [`FirstOrderOp`].
pub(crate) trait UserRule<T: Element>: 'static {
    fn name(&self) -> &'static str;
    fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T>;
    /// The rule on arrays: an ordinary backward pass.
    fn on_arrays(&self, xs: &[&Value<T>], y: &Value<T>, g: &Value<T>) -> Vec<Option<Value<T>>>;
    /// The rule recorded on the tape, to be differentiated again.
    fn on_tensors<'t>(
        &self,
        xs: &[&Tensor<'t, T>],
        y: &Tensor<'t, T>,
        g: &Tensor<'t, T>,
    ) -> Vec<Option<Tensor<'t, T>>>;
    /// Forward mode: the output's tangent.
    fn tangent(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T>;
}

/// A [`CustomOp`] as a [`UserRule`].
pub(crate) struct Custom<C>(pub(crate) C);
/// A [`FirstOrderOp`] as a [`UserRule`].
pub(crate) struct FirstOrder<C>(pub(crate) C);

impl<T: Element, C: CustomOp<T>> UserRule<T> for Custom<C> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
        self.0.forward(xs)
    }
    fn on_arrays(&self, xs: &[&Value<T>], y: &Value<T>, g: &Value<T>) -> Vec<Option<Value<T>>> {
        // The rule is tensor ops: run it on a scratch tape of constants.
        let tape = Tape::<T>::new();
        let xs: Vec<Tensor<'_, T>> = xs.iter().map(|&x| tape.constant(x.clone())).collect();
        let out = self.0.backward(&xs, tape.constant(y.clone()), tape.constant(g.clone()));
        out.into_iter().map(|d| d.map(|d| d.value())).collect()
    }
    fn on_tensors<'t>(
        &self,
        xs: &[&Tensor<'t, T>],
        y: &Tensor<'t, T>,
        g: &Tensor<'t, T>,
    ) -> Vec<Option<Tensor<'t, T>>> {
        let xs: Vec<Tensor<'t, T>> = xs.iter().map(|&&x| x).collect();
        self.0.backward(&xs, *y, *g)
    }
    fn tangent(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // The rule is linear in g, u -> J^T u; J dx is the gradient of
        // <J^T u, dx> with respect to u, at any u (zeros here).
        let tape = Tape::<T>::new();
        let u = tape.var(Value::<T>::zeros(y.raw_dim()));
        let consts: Vec<Tensor<'_, T>> = xs.iter().map(|&x| tape.constant(x.clone())).collect();
        let grads = self.0.backward(&consts, tape.constant(y.clone()), u);
        let mut total: Option<Tensor<'_, T>> = None;
        for (gi, d) in grads.into_iter().zip(dx) {
            if let (Some(gi), Some(d)) = (gi, d) {
                let term = (gi * tape.constant((*d).clone())).sum();
                total = Some(total.map_or(term, |t| t + term));
            }
        }
        let dy = total.and_then(|t| tape.backward_for(t, &[u]).get(u).cloned());
        dy.unwrap_or_else(|| Value::zeros(y.raw_dim()))
    }
}

impl<T: Element, C: FirstOrderOp<T>> UserRule<T> for FirstOrder<C> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
        self.0.forward(xs)
    }
    fn on_arrays(&self, xs: &[&Value<T>], y: &Value<T>, g: &Value<T>) -> Vec<Option<Value<T>>> {
        let views: SmallVec<[ArrayViewD<'_, T>; 4]> = xs.iter().map(|x| x.view()).collect();
        let out = self.0.backward(&views, y.view(), g.view());
        out.into_iter().map(|d| d.map(ArrayD::into_shared)).collect()
    }
    fn on_tensors<'t>(
        &self,
        _: &[&Tensor<'t, T>],
        _: &Tensor<'t, T>,
        _: &Tensor<'t, T>,
    ) -> Vec<Option<Tensor<'t, T>>> {
        panic!(
            "{}: a FirstOrderOp's backward works on arrays and cannot be differentiated again; \
             write it as a CustomOp (a backward in tensor ops) for second derivatives",
            self.0.name()
        )
    }
    fn tangent(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        let name = self.0.name();
        let views: SmallVec<[ArrayViewD<'_, T>; 4]> = xs.iter().map(|x| x.view()).collect();
        let tangents: SmallVec<[Option<ArrayViewD<'_, T>>; 4]> =
            dx.iter().map(|d| d.map(|d| d.view())).collect();
        match self.0.jvp(&views, &tangents) {
            Some(t) if t.shape() == y.shape() => t.into_shared(),
            Some(t) => panic!("{name}: jvp returned a tangent of shape {:?} for an output of shape {:?}", t.shape(), y.shape()),
            None => panic!("{name}: this FirstOrderOp has no forward rule (FirstOrderOp::jvp), so forward mode cannot pass it"),
        }
    }
}

/// Checks what a user's rule returned against the inputs and the output,
/// and keeps the gradients asked for.
pub(crate) fn checked<V>(
    name: &str,
    out: Vec<Option<V>>,
    shape: impl Fn(&V) -> Shape,
    xs: &[&V],
    y: &V,
    need: &[bool],
) -> Grads<V> {
    let y = shape(y);
    if out.len() != xs.len() {
        panic!("{name}: the backward returned {} gradients for {} inputs", out.len(), xs.len());
    }
    out.into_iter()
        .zip(xs)
        .zip(need)
        .enumerate()
        .map(|(i, ((d, x), &need))| {
            let d = d?;
            let (s, x) = (shape(&d), shape(x));
            let fits = s == x || (s == y && broadcasts_to(&x, &y));
            if !fits {
                panic!(
                    "{name}: the backward returned a gradient of shape {:?} for input {i} of shape {:?}",
                    s.as_slice(),
                    x.as_slice()
                );
            }
            need.then_some(d)
        })
        .collect()
}

/// A user's op on the tape.
pub(crate) struct User<R>(pub(crate) R);

impl<T: Element, R: UserRule<T>> Op<T> for User<R> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn forward(&self, xs: &[&Value<T>]) -> Value<T> {
        let views: SmallVec<[ArrayViewD<'_, T>; 4]> = xs.iter().map(|x| x.view()).collect();
        self.0.forward(&views).into_shared()
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        self.0.tangent(xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, xs: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        b.user_rule(&self.0, xs, y, g, need)
    }
}

impl<T: Element> Tape<T> {
    /// Records a [`CustomOp`] of yours on `inputs` (all on this tape): its
    /// forward runs now; its backward rule runs in every backward pass,
    /// and is recorded when the gradient is to be differentiated again.
    ///
    /// # Panics
    /// When an input is from another tape, or (in a backward pass) when the
    /// rule returns a gradient whose shape is neither its input's nor the
    /// output's, naming the op and both shapes.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, CustomOp, Tape, Tensor};
    /// /// `y = a b` for two tensors of one shape.
    /// struct Times;
    /// impl CustomOp<f64> for Times {
    ///     fn name(&self) -> &'static str { "times" }
    ///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { &xs[0] * &xs[1] }
    ///     fn backward<'t>(&self, xs: &[Tensor<'t, f64>], _: Tensor<'t, f64>, g: Tensor<'t, f64>) -> Vec<Option<Tensor<'t, f64>>> {
    ///         vec![Some(g * xs[1]), Some(g * xs[0])]
    ///     }
    /// }
    /// let tape = Tape::<f64>::new();
    /// let (a, b) = (tape.var(arr1(&[2.0])), tape.var(arr1(&[3.0])));
    /// let y = tape.custom(Times, &[a, b]);
    /// let g = tape.backward(y.sum());
    /// assert_eq!((y.item(), g[a][0], g[b][0]), (6.0, 3.0, 2.0));
    /// ```
    #[track_caller]
    pub fn custom<C: CustomOp<T>>(&self, op: C, inputs: &[Tensor<'_, T>]) -> Tensor<'_, T> {
        let refs: SmallVec<[&Tensor<'_, T>; 4]> = inputs.iter().collect();
        self.record(User(Custom(op)), &refs)
    }

    /// Records a [`FirstOrderOp`] of yours on `inputs` (all on this
    /// tape), as [`Tape::custom`]; a second derivative through it panics.
    ///
    /// # Panics
    /// As [`Tape::custom`], and when a gradient through the op is to be
    /// differentiated again.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::{arr1, ArrayD, ArrayViewD}, FirstOrderOp, Tape};
    /// struct Half;
    /// impl FirstOrderOp<f64> for Half {
    ///     fn name(&self) -> &'static str { "half" }
    ///     fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> { &xs[0] * 0.5 }
    ///     fn backward(&self, _: &[ArrayViewD<'_, f64>], _: ArrayViewD<'_, f64>, g: ArrayViewD<'_, f64>) -> Vec<Option<ArrayD<f64>>> {
    ///         vec![Some(&g * 0.5)]
    ///     }
    /// }
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(arr1(&[4.0]));
    /// assert_eq!(tape.backward(tape.custom_first_order(Half, &[x]).sum())[x][0], 0.5);
    /// ```
    #[track_caller]
    pub fn custom_first_order<C: FirstOrderOp<T>>(&self, op: C, inputs: &[Tensor<'_, T>]) -> Tensor<'_, T> {
        let refs: SmallVec<[&Tensor<'_, T>; 4]> = inputs.iter().collect();
        self.record(User(FirstOrder(op)), &refs)
    }
}

#[cfg(test)]
mod tests {
    use crate::{gradcheck, gradgradcheck, jvp, CustomOp, FirstOrderOp, Tape, Tensor};
    use ndarray::{arr1, arr2, ArrayD, ArrayViewD};
    use std::panic::{catch_unwind, AssertUnwindSafe};

    /// The panic message of `f`, which must panic.
    fn panic_message(f: impl FnOnce()) -> String {
        let p = catch_unwind(AssertUnwindSafe(f)).expect_err("should panic");
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap()
    }

    /// `y = x^2` with a backward that returns `shape`-shaped zeros or the
    /// wrong number of gradients.
    struct Bad {
        shape: Vec<usize>,
        count: usize,
    }
    impl CustomOp<f64> for Bad {
        fn name(&self) -> &'static str {
            "bad_square"
        }
        fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
            xs[0].mapv(|v| v * v)
        }
        fn backward<'t>(
            &self,
            _: &[Tensor<'t, f64>],
            y: Tensor<'t, f64>,
            _: Tensor<'t, f64>,
        ) -> Vec<Option<Tensor<'t, f64>>> {
            let z = y.tape().constant(ArrayD::<f64>::zeros(self.shape.as_slice()));
            vec![Some(z); self.count]
        }
    }

    #[test]
    fn a_gradient_of_the_wrong_shape_or_count_panics_naming_the_op_and_shapes() {
        let run = |shape: &[usize], count| {
            panic_message(|| {
                let tape = Tape::<f64>::new();
                let x = tape.var(arr2(&[[1.0, 2.0, 3.0]]));
                let _ = tape.backward(tape.custom(Bad { shape: shape.to_vec(), count }, &[x]).sum());
            })
        };
        let m = run(&[3, 1], 1);
        assert!(m.contains("bad_square") && m.contains("[3, 1]") && m.contains("[1, 3]"), "{m}");
        let m = run(&[1, 3], 2);
        assert!(m.contains("bad_square: the backward returned 2 gradients for 1 inputs"), "{m}");
        // The input's own shape is fine, and so is the output's.
        let tape = Tape::<f64>::new();
        let x = tape.var(arr2(&[[1.0, 2.0, 3.0]]));
        assert_eq!(
            tape.backward(tape.custom(Bad { shape: vec![1, 3], count: 1 }, &[x]).sum())[x][[0, 1]],
            0.0
        );
    }

    /// `y = 2 x` on arrays, with no forward rule.
    struct Double;
    impl FirstOrderOp<f64> for Double {
        fn name(&self) -> &'static str {
            "double_on_arrays"
        }
        fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
            &xs[0] * 2.0
        }
        fn backward(
            &self,
            _: &[ArrayViewD<'_, f64>],
            _: ArrayViewD<'_, f64>,
            g: ArrayViewD<'_, f64>,
        ) -> Vec<Option<ArrayD<f64>>> {
            vec![Some(&g * 2.0)]
        }
    }

    #[test]
    fn a_first_order_op_refuses_second_derivatives_and_forward_mode_by_name() {
        let x = [arr1(&[0.5, -1.0]).into_dyn()];
        fn f<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
            let y = x[0].tape().custom_first_order(Double, &[x[0]]);
            y * y
        }
        assert!(gradcheck(f, &x).passed());
        let m = panic_message(|| {
            let _ = gradgradcheck(f, &x);
        });
        assert!(m.contains("double_on_arrays") && m.contains("cannot be differentiated again"), "{m}");
        let m = panic_message(|| {
            let _ = jvp(f, &x, &x);
        });
        assert!(m.contains("double_on_arrays: this FirstOrderOp has no forward rule"), "{m}");
    }

    /// A sigmoid whose rule holds `y` constant: the first derivative is
    /// right and the second is not.
    struct DetachedSigmoid;
    impl CustomOp<f64> for DetachedSigmoid {
        fn name(&self) -> &'static str {
            "detached_sigmoid"
        }
        fn forward(&self, xs: &[ArrayViewD<'_, f64>]) -> ArrayD<f64> {
            xs[0].mapv(|v| 1.0 / (1.0 + (-v).exp()))
        }
        fn backward<'t>(
            &self,
            _: &[Tensor<'t, f64>],
            y: Tensor<'t, f64>,
            g: Tensor<'t, f64>,
        ) -> Vec<Option<Tensor<'t, f64>>> {
            let y = y.detach();
            vec![Some(g * y * (-y + 1.0))]
        }
    }

    #[test]
    fn a_wrong_second_derivative_in_a_user_rule_is_caught_by_gradgradcheck() {
        let x = [arr1(&[-1.0, 0.3, 2.0]).into_dyn()];
        fn f<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
            x[0].tape().custom(DetachedSigmoid, &[x[0]])
        }
        assert!(gradcheck(f, &x).passed());
        assert!(!gradgradcheck(f, &x).passed());
    }

    #[test]
    fn forward_mode_through_a_custom_op_is_derived_from_its_rule() {
        // d/dt sigmoid(x + t v) = sigmoid'(x) v.
        let x = arr1(&[0.0, 1.0]).into_dyn();
        let v = arr1(&[2.0, -1.0]).into_dyn();
        let (_, dy) = jvp(
            |x| x[0].tape().custom(DetachedSigmoid, &[x[0]]),
            std::slice::from_ref(&x),
            std::slice::from_ref(&v),
        );
        for i in 0..2 {
            let s = 1.0 / (1.0 + (-x[i]).exp());
            approx::assert_abs_diff_eq!(dy[i], s * (1.0 - s) * v[i], epsilon = 1e-15);
        }
    }
}
