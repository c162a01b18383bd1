//! Plain gradient descent, the guide's update: `p <- p - lr g`.

use super::{check_lr, entry_at, Optimizer};
use crate::error::NnError;
use crate::model::Params;
use tapegrad_tensor::Element;

/// `p <- p - lr g`, for every parameter (the guide's loop, without its
/// off-by-one: all L layers, no more).
///
/// ```
/// let opt = tapegrad_nn::GradientDescent::new(0.1).unwrap();
/// assert_eq!(tapegrad_nn::Optimizer::<f64>::learning_rate(&opt), 0.1);
/// ```
#[derive(Clone, Debug)]
pub struct GradientDescent {
    lr: f64,
}

impl GradientDescent {
    /// With learning rate `lr`.
    ///
    /// # Errors
    /// When `lr` is not a positive finite number.
    ///
    /// ```
    /// assert!(tapegrad_nn::GradientDescent::new(-0.1).is_err());
    /// ```
    pub fn new(lr: f64) -> Result<Self, NnError> {
        Ok(GradientDescent { lr: check_lr(lr)? })
    }
}

impl<T: Element> Optimizer<T> for GradientDescent {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        let lr = T::cast(self.lr);
        for (i, (name, p)) in params.iter_mut().enumerate() {
            if let Some(g) = entry_at(grads, i, name) {
                p.zip_mut_with(g, |p, &g| *p = *p - lr * g);
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
        "gd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_steps_match_hand_computation() {
        // p1: 1 -> 1 - 0.1*1 = 0.9 -> 0.9 - 0.09 = 0.81
        // p2: -2 -> -2 + 0.1*8 = -1.2 -> -1.2 + 0.1*4.8 = -0.72
        let got = crate::optim::tests::two_steps(&mut GradientDescent::new(0.1).unwrap());
        approx::assert_relative_eq!(got[0][0], 0.9, max_relative = 1e-15);
        approx::assert_relative_eq!(got[0][1], -1.2, max_relative = 1e-15);
        approx::assert_relative_eq!(got[1][0], 0.81, max_relative = 1e-15);
        approx::assert_relative_eq!(got[1][1], -0.72, max_relative = 1e-15);
    }
}
