//! Optimizers behind one trait, learning-rate schedules and gradient
//! clipping. A new optimizer is one small file implementing [`Optimizer`].

mod adam;
mod momentum;
mod rmsprop;
mod sgd;

pub use adam::{Adam, AdamW};
pub use momentum::{Momentum, Nesterov};
pub use rmsprop::RmsProp;
pub use sgd::GradientDescent;

use crate::error::NnError;
use crate::model::Params;
use tapegrad_tensor::ndarray::{Array2, Ix2};
use tapegrad_tensor::Element;

/// An update rule: given the gradients, changes the parameters in place.
/// State (velocities, moments) is kept per parameter name.
///
/// ```
/// use tapegrad_nn::{GradientDescent, Optimizer, Params};
/// use tapegrad_tensor::ndarray::arr2;
/// let mut p = Params::<f64>::new();
/// p.insert("W1".into(), arr2(&[[1.0]]));
/// let mut g = Params::<f64>::new();
/// g.insert("W1".into(), arr2(&[[0.5]]));
/// let mut opt = GradientDescent::new(0.1).unwrap();
/// opt.step(&mut p, &g);
/// assert_eq!(p["W1"][[0, 0]], 0.95);
/// ```
pub trait Optimizer<T: Element> {
    /// Applies one update. Parameters without a gradient are left alone.
    fn step(&mut self, params: &mut Params<T>, grads: &Params<T>);
    /// The current learning rate.
    fn learning_rate(&self) -> f64;
    /// Sets the learning rate (for schedules).
    fn set_learning_rate(&mut self, lr: f64);
    /// A short name, e.g. `"adam"`.
    fn name(&self) -> &'static str;
}

/// Where `name` is in `map`, tried at position `i` first. The maps an
/// optimizer reads (parameters, gradients, its own state) list the same
/// names in the same order, so the usual look-up is one string comparison,
/// with no hash and no copy of the name (Adam had cloned two names and
/// hashed three per parameter per step).
fn position_of<V>(map: &Params<V>, i: usize, name: &str) -> Option<usize> {
    match map.get_index(i) {
        Some((k, _)) if k == name => Some(i),
        _ => map.get_index_of(name),
    }
}

/// The entry `name` of `map` (see [`position_of`]).
pub(crate) fn entry_at<'a, V>(map: &'a Params<V>, i: usize, name: &str) -> Option<&'a Array2<V>> {
    position_of(map, i, name).map(|j| &map[j])
}

/// The optimizer state named `name` (see [`position_of`]), zeros of shape
/// `dim` when there is none yet.
pub(crate) fn state_at<'a>(
    state: &'a mut Params<f64>,
    i: usize,
    name: &str,
    dim: Ix2,
) -> &'a mut Array2<f64> {
    let at = match position_of(state, i, name) {
        Some(j) => j,
        None => state.insert_full(name.to_string(), Array2::zeros(dim)).0,
    };
    &mut state[at]
}

/// Checks a learning rate: positive and finite.
pub(crate) fn check_lr(lr: f64) -> Result<f64, NnError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(lr)
    } else {
        Err(NnError::InvalidHyperParameter {
            name: "learning rate",
            value: lr.to_string(),
            reason: "must be a positive finite number".into(),
        })
    }
}

/// Checks a decay factor in `[0, 1)`.
pub(crate) fn check_beta(name: &'static str, b: f64) -> Result<f64, NnError> {
    if (0.0..1.0).contains(&b) {
        Ok(b)
    } else {
        Err(NnError::InvalidHyperParameter { name, value: b.to_string(), reason: "must be in [0, 1)".into() })
    }
}

/// The names [`by_name`] accepts.
pub const OPTIMIZER_NAMES: [&str; 6] = ["gd", "momentum", "nesterov", "rmsprop", "adam", "adamw"];

/// An optimizer by name with its usual defaults (momentum 0.9; Adam betas
/// 0.9 and 0.999, eps 1e-8; AdamW weight decay 0.01; RMSprop rho 0.9).
///
/// # Errors
/// An unknown name or an invalid learning rate.
///
/// ```
/// let opt = tapegrad_nn::optim::by_name::<f32>("adam", 1e-3).unwrap();
/// assert_eq!(opt.name(), "adam");
/// assert!(tapegrad_nn::optim::by_name::<f32>("lbfgs", 1e-3).is_err());
/// ```
pub fn by_name<T: Element>(name: &str, lr: f64) -> Result<Box<dyn Optimizer<T>>, NnError> {
    Ok(match name {
        "gd" | "sgd" => Box::new(GradientDescent::new(lr)?),
        "momentum" => Box::new(Momentum::new(lr, 0.9)?),
        "nesterov" => Box::new(Nesterov::new(lr, 0.9)?),
        "rmsprop" => Box::new(RmsProp::new(lr, 0.9, 1e-8)?),
        "adam" => Box::new(Adam::new(lr)?),
        "adamw" => Box::new(AdamW::new(lr, 0.01)?),
        _ => {
            return Err(NnError::InvalidHyperParameter {
                name: "optimizer",
                value: name.to_string(),
                reason: format!("must be one of {}", OPTIMIZER_NAMES.join(", ")),
            })
        }
    })
}

/// A learning-rate schedule. Step and exponential decay count epochs
/// (0-based); cosine annealing follows the run's length, whichever ends
/// training: over the epochs, one step per epoch, or, when
/// [`crate::TrainConfig::max_iterations`] ends the run first, over the
/// updates, one step per update. [`crate::fit`] computes the progress.
///
/// ```
/// use tapegrad_nn::Schedule;
/// assert_eq!(Schedule::Step { every: 10, gamma: 0.5 }.learning_rate(0.1, 25, 0.0), 0.025);
/// assert_eq!(Schedule::Constant.learning_rate(0.1, 99, 0.5), 0.1);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Multiplied by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// The factor.
        gamma: f64,
    },
    /// Multiplied by `gamma` every epoch.
    Exponential {
        /// The factor.
        gamma: f64,
    },
    /// Cosine annealing from the base rate, at the start of the run, to
    /// `min_lr`, at its end: `min_lr + (base - min_lr) (1 + cos(pi t)) / 2`
    /// with `t` the share of the run done.
    Cosine {
        /// The final rate.
        min_lr: f64,
    },
}

impl Schedule {
    /// The rate given the base rate, the epoch (0-based) and `progress`,
    /// the share of the run done in `[0, 1]` (see the type's doc).
    ///
    /// ```
    /// use tapegrad_nn::Schedule;
    /// let s = Schedule::Cosine { min_lr: 0.0 };
    /// assert_eq!(s.learning_rate(1.0, 0, 0.0), 1.0);
    /// assert!((s.learning_rate(1.0, 3, 0.5) - 0.5).abs() < 1e-15);
    /// assert!(s.learning_rate(1.0, 9, 1.0) < 1e-12);
    /// ```
    pub fn learning_rate(&self, base: f64, epoch: usize, progress: f64) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Exponential { gamma } => base * gamma.powi(epoch as i32),
            Schedule::Cosine { min_lr } => {
                let t = progress.clamp(0.0, 1.0);
                min_lr + 0.5 * (base - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

/// Scales all gradients together so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping.
///
/// ```
/// use tapegrad_nn::{optim::clip_grad_norm, Params};
/// use tapegrad_tensor::ndarray::arr2;
/// let mut g = Params::<f64>::new();
/// g.insert("W1".into(), arr2(&[[3.0, 4.0]]));
/// assert_eq!(clip_grad_norm(&mut g, 1.0), 5.0);
/// assert!((g["W1"][[0, 0]] - 0.6).abs() < 1e-15);
/// ```
pub fn clip_grad_norm<T: Element>(grads: &mut Params<T>, max_norm: f64) -> f64 {
    let total: f64 =
        grads.values().flat_map(|g| g.iter()).map(|&v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
    if total > max_norm {
        let s = T::cast(max_norm / total);
        for g in grads.values_mut() {
            g.mapv_inplace(|v| v * s);
        }
    }
    total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tapegrad_tensor::ndarray::arr2;

    /// Runs two steps on f(p) = 0.5 * (a p1^2 + b p2^2), grad = (a p1, b p2),
    /// from p = (1, -2) with a = 1, b = 4, and returns p after each step.
    pub(crate) fn two_steps(opt: &mut dyn Optimizer<f64>) -> [[f64; 2]; 2] {
        let mut p = Params::new();
        p.insert("W1".to_string(), arr2(&[[1.0, -2.0]]));
        let mut out = [[0.0; 2]; 2];
        for o in &mut out {
            let w = &p["W1"];
            let mut g = Params::new();
            g.insert("W1".to_string(), arr2(&[[w[[0, 0]], 4.0 * w[[0, 1]]]]));
            opt.step(&mut p, &g);
            *o = [p["W1"][[0, 0]], p["W1"][[0, 1]]];
        }
        out
    }

    /// Two parameters on f = 0.5 (a^2 + 4 b^2) after three steps, the
    /// gradients listed in `grad_order` and the parameters themselves
    /// re-listed in reverse order after the first step.
    fn three_steps(name: &str, grad_order: [&str; 2], reorder_params: bool) -> Params<f64> {
        let mut opt = by_name::<f64>(name, 0.1).unwrap();
        let mut p = Params::new();
        p.insert("a".to_string(), arr2(&[[1.0, -2.0]]));
        p.insert("b".to_string(), arr2(&[[0.5], [3.0]]));
        for step in 0..3 {
            let mut g = Params::new();
            for k in grad_order {
                let scale = if k == "a" { 1.0 } else { 4.0 };
                g.insert(k.to_string(), p[k].mapv(|v| scale * v));
            }
            opt.step(&mut p, &g);
            if reorder_params && step == 0 {
                p.reverse();
            }
        }
        p.sort_keys();
        p
    }

    #[test]
    fn state_follows_names_not_positions() {
        // The look-up tries a position first and falls back to the name:
        // gradients in another order, or parameters re-listed between
        // steps, must give the same updates (bit for bit: the same
        // arithmetic on the same numbers).
        for name in OPTIMIZER_NAMES {
            let same = three_steps(name, ["a", "b"], false);
            assert_eq!(three_steps(name, ["b", "a"], false), same, "{name}");
            assert_eq!(three_steps(name, ["a", "b"], true), same, "{name}");
            assert_ne!(same["a"], arr2(&[[1.0, -2.0]]), "{name} made no update");
        }
    }

    #[test]
    fn by_name_rejects_bad_learning_rates() {
        for lr in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(by_name::<f64>("adam", lr).is_err());
        }
    }
}
