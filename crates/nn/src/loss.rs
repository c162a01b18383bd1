//! The cost of each head (binary cross-entropy, categorical
//! cross-entropy, mean squared error), an optional weight on the positive
//! class of a binary head, and L2 regularisation.

use crate::error::NnError;
use crate::head::Head;
use crate::model::{Forward, Layer, Model};
use tapegrad_tensor::{Element, Tensor};

/// The training cost
/// `J = 1/m sum_i w_i l_i + lambda / (2m) sum_l ||W[l]||_F^2`,
/// where `l_i` is the loss of example `i` for the model's [`Head`]:
///
/// - binary: the binary cross-entropy; `w_i` is `pos_weight` for
///   positive examples and 1 for negatives. When the output layer is a
///   sigmoid, `l_i` is computed from the logits `Z[L]`
///   (`bce_with_logits`), which stays finite however saturated the output
///   is; otherwise from the probabilities `A[L]`, clamped.
/// - softmax: the categorical cross-entropy
///   `-sum_k Y[k,i] log_softmax(Z[L])[k,i]`, from the logits (finite at
///   logits of +-1000); `w_i = 1`.
/// - regression: the mean over the `n[L]` outputs of `(A[L] - Y)^2`, so
///   that `J` without L2 is the mean squared error over all elements;
///   `w_i = 1`.
///
/// ```
/// use tapegrad_nn::Loss;
/// let loss = Loss::new(0.1, 1.0).unwrap();
/// assert_eq!(loss.l2(), 0.1);
/// assert!(Loss::new(-1.0, 1.0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loss {
    l2: f64,
    pos_weight: f64,
}

impl Default for Loss {
    /// The guide's plain cost: no L2, no class weight.
    fn default() -> Self {
        Loss { l2: 0.0, pos_weight: 1.0 }
    }
}

impl Loss {
    /// A cost with L2 strength `l2 >= 0` (the guide's lambda) and positive
    /// class weight `pos_weight > 0`.
    ///
    /// # Errors
    /// When either is negative, zero (`pos_weight`) or not finite.
    ///
    /// ```
    /// assert!(tapegrad_nn::Loss::new(0.0, 0.0).is_err());
    /// ```
    pub fn new(l2: f64, pos_weight: f64) -> Result<Self, NnError> {
        if !(l2.is_finite() && l2 >= 0.0) {
            return Err(NnError::InvalidHyperParameter {
                name: "L2 strength",
                value: l2.to_string(),
                reason: "must be a finite number >= 0".into(),
            });
        }
        if !(pos_weight.is_finite() && pos_weight > 0.0) {
            return Err(NnError::InvalidHyperParameter {
                name: "positive-class weight",
                value: pos_weight.to_string(),
                reason: "must be a positive finite number".into(),
            });
        }
        Ok(Loss { l2, pos_weight })
    }

    /// The L2 strength lambda.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Loss::default().l2(), 0.0);
    /// ```
    pub fn l2(&self) -> f64 {
        self.l2
    }

    /// The positive-class weight.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Loss::default().pos_weight(), 1.0);
    /// ```
    pub fn pos_weight(&self) -> f64 {
        self.pos_weight
    }

    /// Checks that this cost can train a model with `head`: a
    /// positive-class weight other than 1 needs a binary head.
    pub(crate) fn check_head(&self, head: Head) -> Result<(), NnError> {
        if self.pos_weight != 1.0 && head != Head::Binary {
            return Err(NnError::InvalidHyperParameter {
                name: "positive-class weight",
                value: self.pos_weight.to_string(),
                reason: format!("applies to a binary head only; this model has a {head} head"),
            });
        }
        Ok(())
    }

    /// Records the cost of a forward pass against labels `y` in the form
    /// [`Head::targets`] gives them: `(1, m)` for a binary head, one-hot
    /// `(K, m)` for a softmax head, `(n[L], m)` for regression.
    /// A positive-class weight other than 1 applies to a binary head only
    /// (training another head with one is refused by [`crate::fit`]).
    ///
    /// # Panics
    /// When `y`'s shape does not fit the outputs.
    ///
    /// ```
    /// use tapegrad_nn::{Architecture, Init, Loss, Model};
    /// use tapegrad_tensor::{ndarray::Array2, Tape};
    /// let model = Model::<f64>::new(&Architecture::guide(2, &[]), Init::Zeros, 0).unwrap();
    /// let tape = Tape::new();
    /// let fwd = model.forward(&tape, tape.constant(Array2::<f64>::zeros((2, 4))), None);
    /// let j = Loss::default().cost(&model, &fwd, tape.constant(Array2::<f64>::ones((1, 4))));
    /// assert!((j.item() - 2f64.ln()).abs() < 1e-15);
    /// ```
    pub fn cost<'t, T: Element>(
        &self,
        model: &Model<T>,
        fwd: &Forward<'t, T>,
        y: Tensor<'t, T>,
    ) -> Tensor<'t, T> {
        let head = model.head();
        // Broadcasting would hide class indices given where one-hot labels
        // belong: the shapes must be equal.
        assert_eq!(
            y.shape(),
            fwd.logits().shape(),
            "cost: labels of shape {:?} for outputs of shape {:?}",
            y.shape(),
            fwd.logits().shape()
        );
        let per_example = match head {
            Head::Binary if model.activations().last().is_some_and(|a| a.is_sigmoid()) => {
                fwd.logits().bce_with_logits(y)
            }
            Head::Binary => fwd.output().bce(y),
            // -sum_k y_k log_softmax(z)_k: the log-sum-exp is shifted by the
            // maximum, so no exp overflows; the one-hot zeros multiply
            // finite log-probabilities.
            Head::Softmax => -(y * fwd.logits().log_softmax(0)).sum_axes(&[0], true),
            Head::Regression => (fwd.output() - y).square().mean_axes(&[0], true),
        };
        let m = y.shape().last().copied().unwrap_or(1);
        let weighted = if self.pos_weight != 1.0 && head == Head::Binary {
            per_example * (y * T::cast(self.pos_weight - 1.0) + T::one())
        } else {
            per_example
        };
        let mut cost = weighted.mean();
        if self.l2 > 0.0 {
            // Weights only: the guide does not regularise biases.
            let mut sq = None;
            for &Layer { w, .. } in &fwd.layers {
                let s = (w * w).sum();
                sq = Some(match sq {
                    None => s,
                    Some(acc) => acc + s,
                });
            }
            if let Some(sq) = sq {
                cost = cost + sq * T::cast(self.l2 / (2.0 * m as f64));
            }
        }
        cost
    }
}
