//! Weight initialisers, seeded and reproducible bit for bit: every draw
//! is made in f64 from a ChaCha stream, then cast, so f32 and f64 models
//! from the same seed start from the same numbers (rounded).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::fmt;
use std::str::FromStr;
use tapegrad_tensor::ndarray::Array2;

/// How weights `W[l]` of shape `(n[l], n[l-1])` are drawn. Biases always
/// start at zero.
///
/// ```
/// use tapegrad_nn::Init;
/// assert_eq!("he".parse::<Init>().unwrap(), Init::HeNormal);
/// assert_eq!(Init::XavierUniform.to_string(), "xavier-uniform");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// All zeros. Every unit of a layer then computes the same thing and
    /// gets the same gradient, so they stay identical forever: symmetry is
    /// never broken. Shown for teaching; do not train with it.
    Zeros,
    /// The guide's `np.random.randn(n[l], n[l-1]) * 0.01`.
    GuideRandom,
    /// He normal: `N(0, 2 / n[l-1])`, for ReLU layers.
    HeNormal,
    /// He uniform: `U(-b, b)` with `b = sqrt(6 / n[l-1])`.
    HeUniform,
    /// Xavier/Glorot normal: `N(0, 2 / (n[l-1] + n[l]))`, for tanh and sigmoid.
    XavierNormal,
    /// Xavier/Glorot uniform: `U(-b, b)` with `b = sqrt(6 / (n[l-1] + n[l]))`.
    XavierUniform,
}

impl Init {
    /// Draws a `(rows, cols)` weight matrix: `rows = n[l]`, `cols = n[l-1]`.
    ///
    /// ```
    /// use rand::SeedableRng;
    /// use tapegrad_nn::Init;
    /// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    /// let w = Init::HeNormal.sample(4, 3, &mut rng);
    /// assert_eq!(w.dim(), (4, 3));
    /// ```
    pub fn sample(self, rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
        let fan_in = cols as f64;
        let fan_sum = (rows + cols) as f64;
        let normal = |rng: &mut ChaCha8Rng, std: f64| {
            Array2::from_shape_simple_fn((rows, cols), || {
                let z: f64 = StandardNormal.sample(&mut *rng);
                std * z
            })
        };
        let uniform = |rng: &mut ChaCha8Rng, b: f64| {
            Array2::from_shape_simple_fn((rows, cols), || rng.random_range(-b..b))
        };
        match self {
            Init::Zeros => Array2::zeros((rows, cols)),
            Init::GuideRandom => normal(rng, 0.01),
            Init::HeNormal => normal(rng, (2.0 / fan_in).sqrt()),
            Init::HeUniform => uniform(rng, (6.0 / fan_in).sqrt()),
            Init::XavierNormal => normal(rng, (2.0 / fan_sum).sqrt()),
            Init::XavierUniform => uniform(rng, (6.0 / fan_sum).sqrt()),
        }
    }
}

const NAMES: [(&str, Init); 6] = [
    ("zeros", Init::Zeros),
    ("guide", Init::GuideRandom),
    ("he", Init::HeNormal),
    ("he-uniform", Init::HeUniform),
    ("xavier", Init::XavierNormal),
    ("xavier-uniform", Init::XavierUniform),
];

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = NAMES.iter().find(|(_, i)| i == self).map(|(n, _)| *n).unwrap_or("?");
        f.write_str(name)
    }
}

impl FromStr for Init {
    type Err = String;
    /// Parses `zeros`, `guide`, `he`, `he-uniform`, `xavier`, `xavier-uniform`.
    fn from_str(s: &str) -> Result<Self, String> {
        NAMES.iter().find(|(n, _)| *n == s).map(|(_, i)| *i).ok_or_else(|| {
            format!("unknown initialiser '{s}' (one of: {})", NAMES.map(|(n, _)| n).join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn seeded_draws_repeat_bit_for_bit() {
        for (_, init) in NAMES {
            let a = init.sample(20, 7, &mut ChaCha8Rng::seed_from_u64(3));
            let b = init.sample(20, 7, &mut ChaCha8Rng::seed_from_u64(3));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn scales_match_their_definitions() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let w = Init::HeNormal.sample(400, 100, &mut rng);
        let var = w.mapv(|v| v * v).mean().unwrap();
        // 40,000 draws: the sample variance is within ~1.4% (one sd) of 2/100.
        assert!((var / 0.02 - 1.0).abs() < 0.05, "{var}");
        let u = Init::XavierUniform.sample(50, 50, &mut rng);
        let b = (6.0f64 / 100.0).sqrt();
        assert!(u.iter().all(|v| v.abs() <= b));
        assert!(Init::Zeros.sample(3, 3, &mut rng).iter().all(|&v| v == 0.0));
    }
}
