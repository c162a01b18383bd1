//! Momentum and Nesterov momentum, in the guide's exponentially weighted
//! form: `v <- beta v + (1 - beta) g`.

use super::{check_beta, check_lr, entry_at, state_at, Optimizer};
use crate::error::NnError;
use crate::model::Params;
use tapegrad_tensor::ndarray::Array2;
use tapegrad_tensor::Element;

/// Momentum as the guide recommends: `v <- beta v + (1 - beta) g`,
/// `p <- p - lr v`. (PyTorch's SGD momentum omits the `1 - beta`; its
/// learning rate is then `1 / (1 - beta)` times smaller for the same step.)
///
/// ```
/// assert!(tapegrad_nn::Momentum::new(0.1, 1.0).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Momentum {
    lr: f64,
    beta: f64,
    v: Params<f64>,
}

/// Nesterov momentum in the same form: `v <- beta v + (1 - beta) g`,
/// `p <- p - lr (beta v + (1 - beta) g)`, a look-ahead along the velocity.
///
/// ```
/// assert!(tapegrad_nn::Nesterov::new(0.1, 0.9).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct Nesterov {
    inner: Momentum,
}

impl Momentum {
    /// With learning rate `lr` and decay `beta` in `[0, 1)`.
    ///
    /// # Errors
    /// When either is out of range.
    ///
    /// ```
    /// assert!(tapegrad_nn::Momentum::new(0.1, 0.9).is_ok());
    /// ```
    pub fn new(lr: f64, beta: f64) -> Result<Self, NnError> {
        Ok(Momentum { lr: check_lr(lr)?, beta: check_beta("momentum", beta)?, v: Params::new() })
    }

    /// Updates the velocity of `name` with `g` and returns it with `g`.
    fn velocity<T: Element>(&mut self, i: usize, name: &str, g: &Array2<T>) -> &Array2<f64> {
        let b = self.beta;
        let v = state_at(&mut self.v, i, name, g.raw_dim());
        v.zip_mut_with(g, |v, &g| *v = b * *v + (1.0 - b) * g.as_f64());
        v
    }
}

impl Nesterov {
    /// With learning rate `lr` and decay `beta` in `[0, 1)`.
    ///
    /// # Errors
    /// When either is out of range.
    ///
    /// ```
    /// assert!(tapegrad_nn::Nesterov::new(0.0, 0.9).is_err());
    /// ```
    pub fn new(lr: f64, beta: f64) -> Result<Self, NnError> {
        Ok(Nesterov { inner: Momentum::new(lr, beta)? })
    }
}

impl<T: Element> Optimizer<T> for Momentum {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        let lr = self.lr;
        for (i, (name, p)) in params.iter_mut().enumerate() {
            if let Some(g) = entry_at(grads, i, name) {
                let v = self.velocity(i, name, g);
                p.zip_mut_with(v, |p, &v| *p = *p - T::cast(lr * v));
            }
        }
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn name(&self) -> &'static str {
        "momentum"
    }
}

impl<T: Element> Optimizer<T> for Nesterov {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        let (lr, b) = (self.inner.lr, self.inner.beta);
        for (i, (name, p)) in params.iter_mut().enumerate() {
            if let Some(g) = entry_at(grads, i, name) {
                let v = self.inner.velocity(i, name, g).clone();
                tapegrad_tensor::ndarray::Zip::from(p).and(&v).and(g).for_each(|p, &v, &g| {
                    *p = *p - T::cast(lr * (b * v + (1.0 - b) * g.as_f64()));
                });
            }
        }
    }
    fn learning_rate(&self) -> f64 {
        self.inner.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.inner.lr = lr;
    }
    fn name(&self) -> &'static str {
        "nesterov"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::two_steps;
    use approx::assert_relative_eq;

    // Hand computation, lr 0.1, beta 0.9, p0 = (1, -2), g = (p1, 4 p2):
    // a few roundings in each step, so 1e-14 relative.
    #[test]
    fn momentum_two_steps_match_hand_computation() {
        let got = two_steps(&mut Momentum::new(0.1, 0.9).unwrap());
        // v1 = (0.1, -0.8), p1 = (0.99, -1.92)
        // g2 = (0.99, -7.68), v2 = (0.189, -1.488), p2 = (0.9711, -1.7712)
        assert_relative_eq!(
            got.as_flattened(),
            [[0.99, -1.92], [0.9711, -1.7712]].as_flattened(),
            max_relative = 1e-14
        );
    }

    #[test]
    fn nesterov_two_steps_match_hand_computation() {
        let got = two_steps(&mut Nesterov::new(0.1, 0.9).unwrap());
        // step 1: v = (0.1, -0.8), look-ahead (0.19, -1.52), p = (0.981, -1.848)
        // step 2: g = (0.981, -7.392), v = (0.1881, -1.4592),
        //         look-ahead (0.26739, -2.05248), p = (0.954261, -1.642752)
        assert_relative_eq!(
            got.as_flattened(),
            [[0.981, -1.848], [0.954261, -1.642752]].as_flattened(),
            max_relative = 1e-14
        );
    }
}
