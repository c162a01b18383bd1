//! Helpers for op tests: random inputs drawn from a domain.

use ndarray::{ArrayD, IxDyn};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// Where random test inputs are drawn from: each op's inputs come from a
/// domain where it is smooth, away from its kinks by much more than the
/// finite-difference steps (1e-6 for gradcheck, 1e-5 for gradgradcheck).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Domain {
    /// Standard normal.
    Normal,
    /// Uniform on [0.5, 2]: for log, sqrt and fractional powers.
    Positive,
    /// |x| uniform on [0.2, 2] with a random sign: away from kinks at 0.
    AwayFromZero,
    /// Standard normal, redrawn while within 0.05 of one of the points:
    /// away from kinks elsewhere than at 0 (clamp's bounds).
    AwayFrom(&'static [f64]),
    /// 0 or 1 with equal odds: the targets of a cross-entropy.
    Labels,
}

pub(crate) fn random(shape: &[usize], domain: Domain, seed: u64) -> ArrayD<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || match domain {
        Domain::Normal => StandardNormal.sample(&mut rng),
        Domain::Positive => rng.random_range(0.5..2.0),
        Domain::AwayFromZero => {
            let m: f64 = rng.random_range(0.2..2.0);
            if rng.random_bool(0.5) {
                m
            } else {
                -m
            }
        }
        Domain::AwayFrom(points) => loop {
            let v: f64 = StandardNormal.sample(&mut rng);
            if points.iter().all(|p| (v - p).abs() >= 0.05) {
                break v;
            }
        },
        Domain::Labels => {
            if rng.random_bool(0.5) {
                1.0
            } else {
                0.0
            }
        }
    })
}
