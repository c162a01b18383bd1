//! Binary cross-entropy: the stable form from logits (a fused op, for
//! stability) and the guide's form on probabilities (a composite).

use super::unary::softplus;
use super::{zip, Grads, Op};
use crate::ops::backend::Backend;
use crate::{Element, Tensor, Value};
use smallvec::smallvec;

/// Elementwise `l(z, y) = max(z, 0) - z y + ln(1 + e^-|z|)`, the binary
/// cross-entropy of `sigmoid(z)` against `y`; dz = g (sigmoid(z) - y),
/// dy = -g z.
pub(crate) struct BceWithLogits;
impl<T: Element> Op<T> for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }
    #[track_caller]
    fn forward(&self, x: &[&Value<T>]) -> Value<T> {
        // max(z,0) + ln(1+e^-|z|) = softplus(z).
        zip("bce_with_logits", x[0], x[1], |z, y| softplus(z) - z * y)
    }
    #[inline]
    fn forward_scalar(&self, x: &[T]) -> Option<T> {
        Some(softplus(x[0]) - x[0] * x[1])
    }
    fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
        super::jvp_elementwise(self, xs, y, dx)
    }
    fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, need: &[bool]) -> Grads<B::V> {
        smallvec![
            need[0].then(|| {
                let p = b.sigmoid(x[0]);
                let d = b.sub(&p, x[1]);
                b.release(p);
                let dz = b.mul(g, &d);
                b.release(d);
                dz
            }),
            need[1].then(|| b.neg(&b.mul(g, x[0]))),
        ]
    }
}

impl<'t, T: Element> Tensor<'t, T> {
    /// Elementwise binary cross-entropy of `p = sigmoid(z)` (self holds the
    /// logits `z`) against targets `y`:
    /// `-(y ln p + (1 - y) ln(1 - p)) = max(z, 0) - z y + ln(1 + e^-|z|)`.
    /// Finite for any finite logit (also +-1000, where `ln p` itself would
    /// be `-inf`). Gradients: `dz = sigmoid(z) - y`, `dy = -z`. Reduce with
    /// `.mean()` for the guide's cost.
    ///
    /// # Panics
    /// When the shapes do not broadcast.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let z = tape.var(array![[1000.0, -1000.0, 0.0]]);
    /// let y = tape.constant(array![[0.0, 0.0, 1.0]]);
    /// let l = z.bce_with_logits(y);
    /// assert_eq!(l.value(), array![[1000.0, 0.0, 2f64.ln()]].into_dyn().into_shared());
    /// let g = tape.backward(l.sum());
    /// assert_eq!(g[z], array![[1.0, 0.0, -0.5]].into_dyn().into_shared());
    /// ```
    #[track_caller]
    pub fn bce_with_logits(self, targets: Tensor<'t, T>) -> Self {
        self.tape.record(BceWithLogits, &[&self, &targets])
    }

    /// The guide's elementwise cross-entropy on probabilities `a` (self)
    /// against targets `y`: `-(y ln a + (1 - y) ln(1 - a))`, with `a`
    /// clamped to `[eps, 1 - eps]` (`eps = 1e-7` in f32, `1e-15` in f64) so a
    /// saturated output gives a large finite loss instead of `inf`; the
    /// gradient is 0 where the clamp is active. Prefer
    /// [`Tensor::bce_with_logits`] when the logits are at hand. A composite:
    /// no rule of its own.
    ///
    /// ```
    /// use tapegrad_tensor::{ndarray::array, Tape};
    /// let tape = Tape::<f64>::new();
    /// let a = tape.var(array![[1.0, 0.5]]);
    /// let y = tape.constant(array![[0.0, 1.0]]);
    /// let l = a.bce(y).value();
    /// assert!(l[[0, 0]].is_finite() && l[[0, 0]] > 30.0);
    /// assert!((l[[0, 1]] - 2f64.ln()).abs() < 1e-15);
    /// ```
    #[track_caller]
    pub fn bce(self, targets: Tensor<'t, T>) -> Self {
        let eps = if T::NAME == "f32" { T::cast(1e-7) } else { T::cast(1e-15) };
        let a = self.clamp(eps, T::one() - eps);
        -(targets * a.log() + (-targets + T::one()) * (-a + T::one()).log())
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{random, Domain};
    use crate::Tape;
    use ndarray::{arr2, ArrayD};

    fn labels() -> ArrayD<f64> {
        arr2(&[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]]).into_dyn()
    }

    #[test]
    fn fused_and_composed_cross_entropy_agree() {
        let tape = Tape::<f64>::new();
        let z = tape.var(random(&[3, 4], Domain::Normal, 5));
        let y = tape.constant(labels());
        let fused = z.bce_with_logits(y).mean();
        let composed = z.sigmoid().bce(y).mean();
        approx::assert_relative_eq!(fused.item(), composed.item(), max_relative = 1e-14);
        let (gf, gc) = (tape.backward(fused), tape.backward(composed));
        approx::assert_relative_eq!(gf[z], gc[z], max_relative = 1e-12);
    }

    #[test]
    fn bce_with_logits_is_finite_at_plus_minus_1000() {
        for dtype_f32 in [false, true] {
            let z = arr2(&[[1000.0, -1000.0, 1000.0, -1000.0]]);
            let y = arr2(&[[1.0, 1.0, 0.0, 0.0]]);
            let want = [0.0, 1000.0, 1000.0, 0.0];
            let want_g = [0.0, -1.0, 1.0, 0.0];
            if dtype_f32 {
                let tape = Tape::<f32>::new();
                let zt = tape.var(z.mapv(|v| v as f32));
                let l = zt.bce_with_logits(tape.constant(y.mapv(|v| v as f32)));
                let g = tape.backward(l.sum());
                for k in 0..4 {
                    assert_eq!(l.value()[[0, k]] as f64, want[k]);
                    assert_eq!(g[zt][[0, k]] as f64, want_g[k]);
                }
            } else {
                let tape = Tape::<f64>::new();
                let zt = tape.var(z.clone());
                let l = zt.bce_with_logits(tape.constant(y.clone()));
                let g = tape.backward(l.sum());
                for k in 0..4 {
                    assert_eq!(l.value()[[0, k]], want[k]);
                    assert_eq!(g[zt][[0, k]], want_g[k]);
                }
            }
        }
    }
}
