//! Adam with bias correction, and AdamW (decoupled weight decay).

use super::{check_beta, check_lr, entry_at, state_at, Optimizer};
use crate::error::NnError;
use crate::model::Params;
use tapegrad_tensor::ndarray::Zip;
use tapegrad_tensor::Element;

/// Adam: `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
/// `p <- p - lr m^ / (sqrt(v^) + eps)` with `m^ = m / (1 - b1^t)` and
/// `v^ = v / (1 - b2^t)`. The first step is `lr g / (|g| + eps)`, about
/// `lr sign(g)`.
///
/// ```
/// let adam = tapegrad_nn::Adam::new(1e-3).unwrap();
/// assert_eq!(adam.betas(), (0.9, 0.999));
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    lr: f64,
    b1: f64,
    b2: f64,
    eps: f64,
    t: i32,
    m: Params<f64>,
    v: Params<f64>,
}

impl Adam {
    /// With learning rate `lr` and the usual betas (0.9, 0.999), eps 1e-8.
    ///
    /// # Errors
    /// When `lr` is not a positive finite number.
    ///
    /// ```
    /// assert!(tapegrad_nn::Adam::new(f64::NAN).is_err());
    /// ```
    pub fn new(lr: f64) -> Result<Self, NnError> {
        Self::with_betas(lr, 0.9, 0.999, 1e-8)
    }

    /// With chosen betas in `[0, 1)` and `eps > 0`.
    ///
    /// # Errors
    /// When a value is out of range.
    ///
    /// ```
    /// assert!(tapegrad_nn::Adam::with_betas(1e-3, 0.9, 1.0, 1e-8).is_err());
    /// ```
    pub fn with_betas(lr: f64, b1: f64, b2: f64, eps: f64) -> Result<Self, NnError> {
        if !(eps > 0.0 && eps.is_finite()) {
            return Err(NnError::InvalidHyperParameter {
                name: "epsilon",
                value: eps.to_string(),
                reason: "must be > 0".into(),
            });
        }
        Ok(Adam {
            lr: check_lr(lr)?,
            b1: check_beta("beta1", b1)?,
            b2: check_beta("beta2", b2)?,
            eps,
            t: 0,
            m: Params::new(),
            v: Params::new(),
        })
    }

    /// `(beta1, beta2)`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::Adam::new(0.1).unwrap().betas().0, 0.9);
    /// ```
    pub fn betas(&self) -> (f64, f64) {
        (self.b1, self.b2)
    }

    fn update<T: Element>(&mut self, params: &mut Params<T>, grads: &Params<T>, decay: f64) {
        self.t += 1;
        let (lr, b1, b2, eps) = (self.lr, self.b1, self.b2, self.eps);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        for (i, (name, p)) in params.iter_mut().enumerate() {
            let Some(g) = entry_at(grads, i, name) else { continue };
            let m = state_at(&mut self.m, i, name, g.raw_dim());
            let v = state_at(&mut self.v, i, name, g.raw_dim());
            let rule = |p: &mut T, m: &mut f64, v: &mut f64, g: T| {
                let g = g.as_f64();
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let pv = p.as_f64() * (1.0 - lr * decay);
                *p = T::cast(pv - lr * (*m / c1) / ((*v / c2).sqrt() + eps));
            };
            // The same rule over plain slices where the arrays are
            // contiguous, which the compiler vectorises (square roots and
            // divisions four at a time); Zip's loop it did not.
            match (p.as_slice_mut(), m.as_slice_mut(), v.as_slice_mut(), g.as_slice()) {
                (Some(ps), Some(ms), Some(vs), Some(gs)) => {
                    for (((p, m), v), &g) in ps.iter_mut().zip(ms).zip(vs).zip(gs) {
                        rule(p, m, v, g);
                    }
                }
                _ => Zip::from(p).and(m).and(v).and(g).for_each(|p, m, v, &g| rule(p, m, v, g)),
            }
        }
    }
}

impl<T: Element> Optimizer<T> for Adam {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        self.update(params, grads, 0.0);
    }
    fn learning_rate(&self) -> f64 {
        self.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn name(&self) -> &'static str {
        "adam"
    }
}

/// AdamW: Adam with decoupled weight decay, `p <- p (1 - lr wd)` before
/// the Adam step (as PyTorch's AdamW).
///
/// ```
/// assert!(tapegrad_nn::AdamW::new(1e-3, 0.01).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct AdamW {
    adam: Adam,
    weight_decay: f64,
}

impl AdamW {
    /// With learning rate `lr` and weight decay `wd >= 0`.
    ///
    /// # Errors
    /// When a value is out of range.
    ///
    /// ```
    /// assert!(tapegrad_nn::AdamW::new(1e-3, -1.0).is_err());
    /// ```
    pub fn new(lr: f64, weight_decay: f64) -> Result<Self, NnError> {
        if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
            return Err(NnError::InvalidHyperParameter {
                name: "weight decay",
                value: weight_decay.to_string(),
                reason: "must be a finite number >= 0".into(),
            });
        }
        Ok(AdamW { adam: Adam::new(lr)?, weight_decay })
    }
}

impl<T: Element> Optimizer<T> for AdamW {
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>) {
        let wd = self.weight_decay;
        self.adam.update(params, grads, wd);
    }
    fn learning_rate(&self) -> f64 {
        self.adam.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.adam.lr = lr;
    }
    fn name(&self) -> &'static str {
        "adamw"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::tests::two_steps;
    use approx::assert_relative_eq;
    use tapegrad_tensor::ndarray::Array2;

    /// Adam by hand for the test quadratic (g = (p1, 4 p2)), two steps.
    fn by_hand(lr: f64, wd: f64) -> [[f64; 2]; 2] {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let mut p = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        let mut out = [[0.0; 2]; 2];
        for t in 1..=2 {
            let g = [p[0], 4.0 * p[1]];
            for i in 0..2 {
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = m[i] / (1.0 - b1.powi(t));
                let vh = v[i] / (1.0 - b2.powi(t));
                p[i] = p[i] * (1.0 - lr * wd) - lr * mh / (vh.sqrt() + eps);
            }
            out[t as usize - 1] = p;
        }
        out
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let got = two_steps(&mut Adam::new(0.1).unwrap());
        // lr g / (|g| + eps): sign(g) lr up to a relative 1e-8 (eps / |g|).
        assert_relative_eq!(got[0][0], 0.9, max_relative = 1e-8);
        assert_relative_eq!(got[0][1], -1.9, max_relative = 1e-8);
    }

    #[test]
    fn adam_two_steps_match_hand_computation() {
        let got = two_steps(&mut Adam::new(0.1).unwrap());
        // The same arithmetic in the same order: equal to the last bit or two.
        assert_relative_eq!(got.as_flattened(), by_hand(0.1, 0.0).as_flattened(), max_relative = 1e-15);
    }

    #[test]
    fn column_major_parameters_take_the_same_steps() {
        // Contiguous row-major arrays go through the slice loop, others
        // through Zip: the same rule, so the same numbers.
        use tapegrad_tensor::ndarray::ShapeBuilder;
        let run = |p0: Array2<f64>| {
            let mut adam = Adam::new(0.1).unwrap();
            let mut p = Params::new();
            p.insert("W1".to_string(), p0);
            for _ in 0..3 {
                let mut g = Params::new();
                g.insert("W1".to_string(), p["W1"].mapv(|v| 2.0 * v - 0.5));
                adam.step(&mut p, &g);
            }
            p["W1"].as_standard_layout().to_owned()
        };
        let rows = Array2::from_shape_fn((2, 3), |(i, j)| i as f64 - j as f64 * 0.7);
        let mut cols = Array2::zeros((2, 3).f());
        cols.assign(&rows);
        assert!(cols.as_slice().is_none());
        assert_eq!(run(cols), run(rows));
    }

    #[test]
    fn adamw_two_steps_match_hand_computation() {
        let got = two_steps(&mut AdamW::new(0.1, 0.5).unwrap());
        assert_relative_eq!(got.as_flattened(), by_hand(0.1, 0.5).as_flattened(), max_relative = 1e-15);
        assert!(got[1][0] < two_steps(&mut Adam::new(0.1).unwrap())[1][0]);
    }
}
