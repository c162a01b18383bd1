//! RMSprop: steps scaled by a running root mean square of the gradient.

use super::{check_beta, check_lr, entry_at, state_at, Optimizer};
use crate::error::NnError;
use crate::model::Params;
use tapegrad_tensor::ndarray::Zip;
use tapegrad_tensor::Element;

/// `s <- rho s + (1 - rho) g^2`, `p <- p - lr g / (sqrt(s) + eps)`.
///
/// ```
/// assert!(tapegrad_nn::RmsProp::new(0.01, 0.9, 1e-8).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct RmsProp {
    lr: f64,
    rho: f64,
    eps: f64,
    s: Params<f64>,
}

impl RmsProp {
    /// With learning rate `lr`, decay `rho` in `[0, 1)` and `eps > 0`.
    ///
    /// # Errors
    /// When a value is out of range.
    ///
    /// ```
    /// assert!(tapegrad_nn::RmsProp::new(0.01, 1.5, 1e-8).is_err());
    /// ```
    pub fn new(lr: f64, rho: f64, eps: f64) -> Result<Self, NnError> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(NnError::InvalidHyperParameter {
                name: "epsilon",
                value: eps.to_string(),
                reason: "must be > 0".into(),
            });
        }
        Ok(RmsProp { lr: check_lr(lr)?, rho: check_beta("rho", rho)?, eps, s: Params::new() })
    }
}

impl<T: Element> Optimizer<T> for RmsProp {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        let (lr, rho, eps) = (self.lr, self.rho, self.eps);
        for (i, (name, p)) in params.iter_mut().enumerate() {
            if let Some(g) = entry_at(grads, i, name) {
                let s = state_at(&mut self.s, i, name, g.raw_dim());
                Zip::from(p).and(s).and(g).for_each(|p, s, &g| {
                    let g = g.as_f64();
                    *s = rho * *s + (1.0 - rho) * g * g;
                    *p = *p - T::cast(lr * g / (s.sqrt() + eps));
                });
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
        "rmsprop"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn two_steps_match_hand_computation() {
        let got = crate::optim::tests::two_steps(&mut RmsProp::new(0.1, 0.9, 1e-8).unwrap());
        // Step 1: s = 0.1 g^2, so g / sqrt(s) = sqrt(10) sign(g), and eps
        // shifts it by a relative eps / sqrt(s) < 1e-7.
        let r = 10f64.sqrt();
        assert_relative_eq!(got[0][0], 1.0 - 0.1 * r, max_relative = 1e-7);
        assert_relative_eq!(got[0][1], -2.0 + 0.1 * r, max_relative = 1e-7);
        // Step 2 by hand from the exact step-1 values.
        let p1 = got[0];
        let g1 = [1.0, -8.0];
        let g2 = [p1[0], 4.0 * p1[1]];
        for i in 0..2 {
            let s = 0.9 * (0.1 * g1[i] * g1[i]) + 0.1 * g2[i] * g2[i];
            assert_relative_eq!(got[1][i], p1[i] - 0.1 * g2[i] / (s.sqrt() + 1e-8), max_relative = 1e-14);
        }
    }
}
