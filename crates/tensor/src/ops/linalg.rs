//! Matrix product and transpose. Transposes are views of the same buffer,
//! so `a.t().matmul(b)` multiplies without copying `a`.

use super::backend::{ArrayBackend, Backend};
use super::{Fusion, Grads, Op};
use crate::{Element, Tensor, Value};
use ndarray::Ix2;
use smallvec::smallvec;
use tapegrad_kernels::pool;
use tapegrad_kernels::product::product_value;

/// `a @ b` for 2-D `a` (n, k) and `b` (k, m); da = g b^T, db = a^T g.
pub(crate) struct MatMul;
impl<T: Element> Op<T> for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let (a, b) = (x[0], x[1]);
        if a.ndim() != 2 || b.ndim() != 2 || a.shape()[1] != b.shape()[0] {
            panic!("matmul: shapes {:?} and {:?} are not (n, k) and (k, m)", a.shape(), b.shape());
        }
        let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
        let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
        product_value(a2, b2, None, false, None)
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // d(AB) = dA B + A dB
        let mut out: Option<Value<T>> = None;
        if let Some(da) = dx[0] {
            out = Some(self.forward(&[da, xs[1]]));
        }
        if let Some(db) = dx[1] {
            let t = self.forward(&[xs[0], db]);
            out = Some(match out {
                Some(o) => super::zip("matmul", &o, &t, |a, b| a + b),
                None => t,
            });
        }
        out.expect("called with a tangent")
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![need[0].then(|| b.matmul(g, &b.t(x[1]))), need[1].then(|| b.matmul(&b.t(x[0]), g)),]
    }
    fn gateable_input(&self, k: usize) -> bool {
        k < 2
    }
    fn backward_fused(
        &self,
        x: &[&Value<T>],
        _: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        let b = &ArrayBackend;
        let product = |l: &Value<T>, r: &Value<T>, gate: Option<&Value<T>>| match gate {
            Some(gate) => b.matmul_gated(l, r, gate),
            None => b.matmul(l, r),
        };
        smallvec![
            need[0].then(|| product(g, &b.t(x[1]), fusion.gate(0))),
            need[1].then(|| product(&b.t(x[0]), g, fusion.gate(1))),
        ]
    }
}

/// `(A B) * [gate > 0]` for 2-D values, the gate applied to each block of
/// the product as it is stored (see [`Fusion`]).
///
/// # Panics
/// When the gate does not have the product's shape in standard layout.
pub(crate) fn matmul_gated<T: Element>(a: &Value<T>, b: &Value<T>, gate: &Value<T>) -> Value<T> {
    let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
    let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
    let gate = match gate.as_slice() {
        Some(s) if gate.shape() == [a2.nrows(), b2.ncols()] => s,
        _ => panic!(
            "matmul_gated: gate of shape {:?} for a product of shape {:?}",
            gate.shape(),
            [a2.nrows(), b2.ncols()]
        ),
    };
    product_value(a2, b2, None, false, Some(gate))
}

/// `act(W X + b)` with `b` of shape (n, 1) and `act` the identity or relu,
/// in one pass; see [`Tensor::affine`].
/// `RELU` is a type parameter, not a field, so the op is zero-sized and
/// recording it allocates nothing.
pub(crate) struct Affine<const RELU: bool>;
impl<T: Element, const RELU: bool> Op<T> for Affine<RELU> {
    fn name(&self) -> &'static str {
        if RELU {
            "affine_relu"
        } else {
            "affine"
        }
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        let (w, a, b) = (x[0], x[1], x[2]);
        if w.ndim() != 2 || a.ndim() != 2 || w.shape()[1] != a.shape()[0] {
            panic!(
                "{}: shapes {:?} and {:?} are not (n, k) and (k, m)",
                Op::<T>::name(self),
                w.shape(),
                a.shape()
            );
        }
        if b.shape() != [w.shape()[0], 1] {
            panic!(
                "{}: bias of shape {:?} for weights of shape {:?}; expected ({}, 1)",
                Op::<T>::name(self),
                b.shape(),
                w.shape(),
                w.shape()[0]
            );
        }
        let w2 = w.view().into_dimensionality::<Ix2>().expect("2-D");
        let a2 = a.view().into_dimensionality::<Ix2>().expect("2-D");
        let b2 = b.view().into_dimensionality::<Ix2>().expect("2-D");
        product_value(w2, a2, Some(b2), RELU, None)
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        // dZ = dW X + W dX + db; with relu, dY = dZ * [Y > 0].
        let lin = Affine::<false>;
        let zero_b = || Value::zeros(xs[2].raw_dim());
        let mut dz: Option<Value<T>> = None;
        if let Some(dw) = dx[0] {
            let b0 = dx[2].cloned().unwrap_or_else(zero_b);
            dz = Some(lin.forward(&[dw, xs[1], &b0]));
        }
        if let Some(dxx) = dx[1] {
            let b0 = if dz.is_none() { dx[2].cloned().unwrap_or_else(zero_b) } else { zero_b() };
            let t = lin.forward(&[xs[0], dxx, &b0]);
            dz = Some(match dz {
                Some(o) => super::zip("affine", &o, &t, |a, b| a + b),
                None => t,
            });
        }
        let dz = match dz {
            Some(d) => d,
            None => {
                let db = dx[2].expect("called with a tangent");
                pool::to_value(db.broadcast(y.raw_dim()).expect("bias broadcasts").view())
            }
        };
        if RELU {
            super::zip("affine_relu", &dz, y, |d, y| if y > T::zero() { d } else { T::zero() })
        } else {
            dz
        }
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], y: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        self.rule(b, x, y, g, need, false, None)
    }
    fn gated_output(&self) -> bool {
        RELU
    }
    fn gateable_input(&self, k: usize) -> bool {
        k == 1
    }
    fn backward_fused(
        &self,
        x: &[&Value<T>],
        y: &Value<T>,
        g: &Value<T>,
        need: &[bool],
        fusion: &Fusion<'_, T>,
    ) -> Grads<Value<T>> {
        self.rule(&ArrayBackend, x, y, g, need, fusion.pregated, fusion.gate(1))
    }
}

impl<const RELU: bool> Affine<RELU> {
    /// The backward rule; `pregated`: `g` is `dZ` already (see
    /// [`Fusion`]); `gate_x`: return `dX` multiplied by `[gate_x > 0]`.
    #[allow(clippy::too_many_arguments)]
    fn rule<T: Element, B: Backend<T>>(
        &self,
        b: &B,
        x: &[&B::V],
        y: &B::V,
        g: &B::V,
        need: &[bool],
        pregated: bool,
        gate_x: Option<&B::V>,
    ) -> Grads<B::V> {
        // dZ = g * relu'(Z); relu'(Z) = [Z > 0] = [Y > 0], read from the
        // output. db = row sums of dZ, summed as dZ is written.
        let bias = need[2].then(|| b.shape(x[2]));
        let fresh = RELU && !pregated;
        let (dz, db) = if fresh {
            b.fuse2_row_sums(
                g,
                y,
                |g, y| if y > T::zero() { g } else { T::zero() },
                |b| b.mul(g, &b.map_const(y, |v| if v > T::zero() { T::one() } else { T::zero() })),
                bias.as_deref(),
            )
        } else {
            (g.clone(), bias.map(|s| b.sum_to(g, &s)))
        };
        let grads = smallvec![
            need[0].then(|| b.matmul(&dz, &b.t(x[1]))),
            need[1].then(|| match gate_x {
                Some(gate) => b.matmul_gated(&b.t(x[0]), &dz, gate),
                None => b.matmul(&b.t(x[0]), &dz),
            }),
            db,
        ];
        if fresh {
            // dZ is a fresh (n, m) buffer: back to the pool, or every
            // iteration maps new pages for it.
            b.release(dz);
        }
        grads
    }
}

/// Reverses the axes (for 2-D, the matrix transpose); da = g^T.
pub(crate) struct Transpose;
impl<T: Element> Op<T> for Transpose {
    fn name(&self) -> &'static str {
        "transpose"
    }
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        // Shares the buffer: only the strides change.
        x[0].clone().reversed_axes()
    }
    fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_linear(self, xs, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        super::unary_grad(need, || b.t(g))
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// Matrix product of 2-D tensors: `(n, k) @ (k, m) -> (n, m)`.
    /// Gradients: `dA = G B^T`, `dB = A^T G`, computed on transposed views
    /// without copies.
    ///
    /// # Panics
    /// When either operand is not 2-D or the inner sizes differ; the message
    /// names both shapes.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0], [3.0, 4.0]]);
    /// let x = tape.constant(array![[1.0], [1.0]]);
    /// assert_eq!(w.matmul(x).value(), array![[3.0], [7.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn matmul(self, other: Tensor<'t, T>) -> Self {
        self.tape.record(MatMul, &[&self, &other])
    }

    /// The guide's linear step `Z = W X + b` (self is `W`, (n, k); `x` is
    /// (k, m); `b` is (n, 1)), computed in one pass with the bias added as
    /// the product is stored. Same value and gradients as
    /// `w.matmul(x) + b`: `dW = G X^T`, `dX = W^T G`, `db = row sums of G`.
    ///
    /// # Panics
    /// When the shapes are not (n, k), (k, m) and (n, 1).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0]]);
    /// let x = tape.constant(array![[1.0, 0.0], [1.0, -1.0]]);
    /// let b = tape.var(array![[0.5]]);
    /// assert_eq!(w.affine(x, b).value(), array![[3.5, -1.5]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn affine(self, x: Tensor<'t, T>, b: Tensor<'t, T>) -> Self {
        self.tape.record(Affine::<false>, &[&self, &x, &b])
    }

    /// A ReLU layer `A = relu(W X + b)` in one pass: the product, the bias
    /// and the ReLU are applied as each tile of the output is stored, and
    /// the pre-activation is never materialised. Same value and gradients
    /// as `w.matmul(x) + b` then `.relu()`: with `dZ = G * [A > 0]`
    /// (relu'(0) = 0, and `A > 0` exactly when `Z > 0`), `dW = dZ X^T`,
    /// `dX = W^T dZ`, `db = row sums of dZ`.
    ///
    /// # Panics
    /// When the shapes are not (n, k), (k, m) and (n, 1).
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let w = tape.var(array![[1.0, 2.0]]);
    /// let x = tape.constant(array![[1.0, 0.0], [1.0, -1.0]]);
    /// let b = tape.var(array![[0.5]]);
    /// assert_eq!(w.affine_relu(x, b).value(), array![[3.5, 0.0]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn affine_relu(self, x: Tensor<'t, T>, b: Tensor<'t, T>) -> Self {
        self.tape.record(Affine::<true>, &[&self, &x, &b])
    }

    /// The transpose (axes reversed), sharing the buffer; `dA = G^T`.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let x = tape.var(array![[1.0, 2.0, 3.0]]);
    /// assert_eq!(x.t().shape(), vec![3, 1]);
    /// ```
    #[track_caller]
    pub fn t(self) -> Self {
        self.tape.record(Transpose, &[&self])
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{random, Domain};

    #[test]
    #[should_panic(expected = "matmul: shapes [3, 4] and [3, 4] are not (n, k) and (k, m)")]
    fn matmul_shape_mismatch_names_both_shapes() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        let _ = a.matmul(a);
    }

    /// The fused layer and the composed one agree: values and every
    /// gradient, on shapes that take each kernel path.
    #[test]
    fn fused_affine_relu_matches_composition() {
        for (n, k, m) in [(20, 3, 300), (7, 20, 65), (3, 40, 9), (4, 70, 100), (1, 5, 64)] {
            let tape = crate::Tape::<f64>::new();
            let w = tape.var(random(&[n, k], Domain::Normal, 1));
            let x = tape.var(random(&[k, m], Domain::Normal, 2));
            let b = tape.var(random(&[n, 1], Domain::Normal, 3));
            let fused = w.affine_relu(x, b);
            let composed = (w.matmul(x) + b).relu();
            approx::assert_relative_eq!(
                fused.value(),
                composed.value(),
                max_relative = 1e-13,
                epsilon = 1e-13
            );
            let u = tape.constant(random(&[n, m], Domain::Normal, 4));
            let (gf, gc) = (tape.backward((fused * u).sum()), tape.backward((composed * u).sum()));
            for p in [w, x, b] {
                // Different summation orders: a few ulps of each sum.
                approx::assert_relative_eq!(gf[p], gc[p], max_relative = 1e-12, epsilon = 1e-12);
            }
        }
    }

    /// A guide-style network with gemm-sized and thin layers, ReLU layers
    /// feeding `affine`, `affine_relu` and `matmul` (from either side):
    /// `backward_for` applies every ReLU gate in the op that computes the
    /// gradient, and its gradients are those of `backward`, bit for bit.
    /// A ReLU output that is asked for, or used twice, is left unfused and
    /// its gradient is the full one.
    #[test]
    fn backward_for_fuses_relu_gates_and_changes_no_gradient() {
        use crate::backward::GATES_FUSED;
        let tape = crate::Tape::<f64>::new();
        let p = |shape: &[usize], seed| tape.var(random(shape, Domain::Normal, seed));
        let x = tape.constant(random(&[3, 300], Domain::Normal, 1));
        let (w1, b1, w2, b2) = (p(&[64, 3], 2), p(&[64, 1], 3), p(&[48, 64], 4), p(&[48, 1], 5));
        let (w3, b3, v, w4, b4) =
            (p(&[5, 48], 6), p(&[5, 1], 7), p(&[300, 2], 8), p(&[1, 5], 9), p(&[1, 1], 10));
        let h1 = w1.affine_relu(x, b1); // small_k forward; dX not needed
        let h2 = w2.affine_relu(h1, b2); // gemm: dX = W^T dZ gated by h1
        let h3 = w3.affine_relu(h2, b3); // gated by h2
        let out = w4.affine(h3, b4); // k = 1 outer product gated by h3
        let side = h2.matmul(v); // matmul, the ReLU output on the left
        let side2 = w3.matmul(w2.affine_relu(h1, b2)); // and on the right
        let loss = (out * out).sum() + side.tanh().sum() + side2.sigmoid().sum();
        let params = [w1, b1, w2, b2, w3, b3, v, w4, b4];
        let full = tape.backward(loss);
        let fused_before = GATES_FUSED.with(|c| c.get());
        let g = tape.backward_for(loss, &params);
        // h1 is used twice (no gate for it); h2 by affine_relu and matmul
        // is used twice too; h3 by affine, and the second h2 by matmul.
        assert_eq!(GATES_FUSED.with(|c| c.get()) - fused_before, 2);
        for t in params {
            assert_eq!(g[t], full[t]);
        }
        assert!(g.get(h3).is_none());
        // A chain without fan-out: every gate fuses.
        let chain = w4.affine(w3.affine_relu(w2.affine_relu(h1, b2), b3), b4).sum();
        let (full, before) = (tape.backward(chain), GATES_FUSED.with(|c| c.get()));
        let g = tape.backward_for(chain, &params);
        assert_eq!(GATES_FUSED.with(|c| c.get()) - before, 2);
        for t in params {
            assert_eq!(g.get(t), full.get(t));
        }
        // Asking for a ReLU output keeps its gradient whole (no gate).
        let h = w2.affine_relu(h1, b2);
        let y = w4.affine(w3.affine_relu(h, b3), b4).sum();
        let (full, before) = (tape.backward(y), GATES_FUSED.with(|c| c.get()));
        let g = tape.backward_for(y, &[h, w2]);
        assert_eq!(GATES_FUSED.with(|c| c.get()) - before, 1);
        assert_eq!(g[h], full[h]);
        assert_eq!(g[w2], full[w2]);
    }

    /// The (n, m) dZ that affine_relu's backward makes goes back to the
    /// pool when the rule is done with it.
    #[test]
    fn affine_relu_backward_gives_its_temporary_back() {
        let tape = crate::Tape::<f64>::new();
        let w = tape.var(random(&[4, 3], Domain::Normal, 1));
        let x = tape.var(random(&[3, 50], Domain::Normal, 2));
        let b = tape.var(random(&[4, 1], Domain::Normal, 3));
        let y = w.affine_relu(x, b).sum();
        let before = tapegrad_kernels::pool::free_count::<f64>(200);
        let g = tape.backward(y);
        assert_eq!(tapegrad_kernels::pool::free_count::<f64>(200), before + 1);
        assert_eq!(g[x].shape(), &[3, 50]);
    }

    #[test]
    #[should_panic(expected = "affine: bias of shape [3] for weights of shape [2, 3]; expected (2, 1)")]
    fn affine_bias_shape_is_checked() {
        let tape = crate::Tape::<f64>::new();
        let w = tape.var(ndarray::Array2::<f64>::zeros((2, 3)));
        let x = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        let _ = w.affine(x, tape.var(ndarray::Array1::<f64>::zeros(3)));
    }

    #[test]
    fn transpose_shares_the_buffer() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        assert_eq!(a.value().as_ptr(), a.t().value().as_ptr());
    }
}
