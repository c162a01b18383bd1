//! Matrix product and transpose. Transposes are views of the same buffer,
//! so `a.t().matmul(b)` multiplies without copying `a`.

use super::{Grads, Op};
use crate::backend::Backend;
use crate::{Element, Tensor, Value};
use ndarray::Ix2;
use smallvec::smallvec;

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
        a2.dot(&b2).into_dyn().into_shared()
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![need[0].then(|| b.matmul(g, &b.t(x[1]))), need[1].then(|| b.matmul(&b.t(x[0]), g)),]
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
    fn backward<B: Backend<T>>(&self, b: &B, _: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        super::unary_grad(need, || b.t(g))
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// Matrix product of 2-D tensors: `(n, k) @ (k, m) -> (n, m)`.
    /// Gradients: `dA = G B^T`, `dB = A^T G`, computed on transposed views
    /// without copies. Multiplication runs on `matrixmultiply`'s kernels.
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
    use crate::testutil::op_test;

    op_test!(matmul_grad_matches_finite_difference, |x| x[0].matmul(x[1]), &[&[3, 4], &[4, 2]]);
    op_test!(matmul_transposed_left, |x| x[0].t().matmul(x[1]), &[&[4, 3], &[4, 2]]);
    op_test!(matmul_transposed_right, |x| x[0].matmul(x[1].t()), &[&[3, 4], &[2, 4]]);
    op_test!(matmul_guide_layer, |x| x[0].matmul(x[1]) + x[2], &[&[5, 3], &[3, 7], &[5, 1]]);
    op_test!(transpose_grad_matches_finite_difference, |x| x[0].t() * x[1], &[&[3, 4], &[4, 3]]);

    #[test]
    #[should_panic(expected = "matmul: shapes [3, 4] and [3, 4] are not (n, k) and (k, m)")]
    fn matmul_shape_mismatch_names_both_shapes() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        let _ = a.matmul(a);
    }

    #[test]
    fn transpose_shares_the_buffer() {
        let tape = crate::Tape::<f64>::new();
        let a = tape.var(ndarray::Array2::<f64>::zeros((3, 4)));
        assert_eq!(a.value().as_ptr(), a.t().value().as_ptr());
    }
}
