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

/// Ops with planted wrong backward rules, to show that the checkers fail
/// on them (a checker that always passed would pass every op test).
pub(crate) mod planted {
    use crate::ops::backend::Backend;
    use crate::ops::{Grads, Op};
    use crate::{Element, Tensor, Value};
    use ndarray::{ArcArray, IxDyn};
    use smallvec::smallvec;

    /// Which rule a planted op has.
    #[derive(Clone, Copy, Debug)]
    pub(crate) enum Plant {
        /// The right rule.
        Right,
        /// Twice the right gradient.
        Twice,
        /// The scale `c` forgotten: a mean's missing `1/m`.
        Unscaled,
        /// NaN wherever the input exceeds 1, the right gradient elsewhere.
        Nan,
    }

    /// `y = c x` elementwise, with the backward rule `plant` says (the
    /// right one is `dx = c g`).
    struct Scale<T> {
        c: T,
        plant: Plant,
    }
    impl<T: Element> Op<T> for Scale<T> {
        fn name(&self) -> &'static str {
            "planted_scale"
        }
        fn forward(&self, x: &[&Value<T>]) -> Value<T> {
            let c = self.c;
            x[0].mapv(|a| a * c).into_shared()
        }
        fn jvp(&self, xs: &[&Value<T>], y: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
            // Elementwise: the (planted) rule applied to the tangent.
            crate::ops::jvp_elementwise(self, xs, y, dx)
        }
        fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, _: &[bool]) -> Grads<B::V> {
            let c = self.c;
            let dx = match self.plant {
                Plant::Right => b.scale(g, c),
                Plant::Twice => b.scale(g, c + c),
                Plant::Unscaled => g.clone(),
                Plant::Nan => {
                    let nan = b.map_const(x[0], |v| if v > T::one() { T::nan() } else { T::one() });
                    b.mul(&b.scale(g, c), &nan)
                }
            };
            smallvec![Some(dx)]
        }
    }

    /// `c x` with the rule `plant` says: with [`Plant::Right`] an ordinary
    /// scaling, otherwise a wrong first derivative.
    #[track_caller]
    pub(crate) fn scale<'t, T: Element>(x: Tensor<'t, T>, c: T, plant: Plant) -> Tensor<'t, T> {
        x.tape().record(Scale { c, plant }, &[&x])
    }

    /// `y = sum(x^2) / m` over the `m` elements of `x`, with the right
    /// gradient `2 x / m` computed as `scale(2 x, 1 / m, plant)`: the value
    /// is right whatever the plant, so the first derivative is right, and
    /// the plant is in the derivative of the rule, the second derivative.
    struct MeanSquare {
        plant: Plant,
    }
    impl<T: Element> Op<T> for MeanSquare {
        fn name(&self) -> &'static str {
            "planted_mean_square"
        }
        fn forward(&self, x: &[&Value<T>]) -> Value<T> {
            let m = T::cast(x[0].len() as f64);
            ArcArray::from_elem(IxDyn(&[]), x[0].iter().fold(T::zero(), |s, &a| s + a * a) / m)
        }
        fn jvp(&self, xs: &[&Value<T>], _: &Value<T>, dx: &[Option<&Value<T>>]) -> Value<T> {
            // d(sum x^2 / m) = 2/m sum x dx (the true derivative; only the
            // backward rule is planted).
            let m = T::cast(xs[0].len() as f64);
            let d = dx[0].expect("called with a tangent");
            let s = xs[0].iter().zip(d.iter()).fold(T::zero(), |s, (&a, &t)| s + a * t);
            ArcArray::from_elem(IxDyn(&[]), T::cast(2.0) * s / m)
        }
        fn backward<B: Backend<T>>(&self, b: &B, x: &[&B::V], _: &B::V, g: &B::V, _: &[bool]) -> Grads<B::V> {
            let shape = b.shape(x[0]);
            let m = T::cast(shape.iter().product::<usize>() as f64);
            let two_x = b.scale(x[0], T::cast(2.0));
            let d = b.apply(Scale { c: T::one() / m, plant: self.plant }, &[&two_x]);
            smallvec![Some(b.mul(&b.broadcast_to(g, &shape), &d))]
        }
    }

    /// `sum(x^2) / m` with a right first derivative and the second
    /// derivative `plant` says.
    #[track_caller]
    pub(crate) fn mean_square<'t, T: Element>(x: Tensor<'t, T>, plant: Plant) -> Tensor<'t, T> {
        x.tape().record(MeanSquare { plant }, &[&x])
    }
}

/// Users' ops, written through the public traits only, as a user would.
pub(crate) mod user {
    /// The name the registry's source scan gives the one `Op` impl of
    /// users' ops (custom.rs), whose name is the user's: the registry's
    /// user-op lines use test ops of this name.
    pub(crate) const USER: &str = "user-defined";

    use crate::{CustomOp, Element, FirstOrderOp, Tensor};
    use ndarray::{ArrayD, ArrayViewD, Zip};

    /// `y = 1 / (1 + e^-x)`, `dy/dx = y (1 - y)`, the rule in tensor ops.
    struct Sigmoid;
    impl<T: Element> CustomOp<T> for Sigmoid {
        fn name(&self) -> &'static str {
            USER
        }
        fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
            xs[0].mapv(|x| T::one() / (T::one() + (-x).exp()))
        }
        fn backward<'t>(
            &self,
            _: &[Tensor<'t, T>],
            y: Tensor<'t, T>,
            g: Tensor<'t, T>,
        ) -> Vec<Option<Tensor<'t, T>>> {
            vec![Some(g * y * (-y + T::one()))]
        }
    }

    /// `y = a b`, broadcast; the rule returns gradients of the output's
    /// shape, which the engine sums to each input's.
    struct Times;
    impl<T: Element> CustomOp<T> for Times {
        fn name(&self) -> &'static str {
            USER
        }
        fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
            &xs[0] * &xs[1]
        }
        fn backward<'t>(
            &self,
            xs: &[Tensor<'t, T>],
            _: Tensor<'t, T>,
            g: Tensor<'t, T>,
        ) -> Vec<Option<Tensor<'t, T>>> {
            vec![Some(g * xs[1]), Some(g * xs[0])]
        }
    }

    /// `y = x^3`, `dy/dx = 3 x^2`, on arrays, with a forward rule.
    struct Cube;
    impl<T: Element> FirstOrderOp<T> for Cube {
        fn name(&self) -> &'static str {
            USER
        }
        fn forward(&self, xs: &[ArrayViewD<'_, T>]) -> ArrayD<T> {
            xs[0].mapv(|x| x * x * x)
        }
        fn backward(
            &self,
            xs: &[ArrayViewD<'_, T>],
            _: ArrayViewD<'_, T>,
            g: ArrayViewD<'_, T>,
        ) -> Vec<Option<ArrayD<T>>> {
            vec![Some(Zip::from(&g).and(&xs[0]).map_collect(|&g, &x| g * T::cast(3.0) * x * x))]
        }
        fn jvp(&self, xs: &[ArrayViewD<'_, T>], dx: &[Option<ArrayViewD<'_, T>>]) -> Option<ArrayD<T>> {
            let d = dx[0].as_ref()?;
            Some(Zip::from(d).and(&xs[0]).map_collect(|&d, &x| d * T::cast(3.0) * x * x))
        }
    }

    pub(crate) fn sigmoid<'t, T: Element>(x: Tensor<'t, T>) -> Tensor<'t, T> {
        x.tape().custom(Sigmoid, &[x])
    }
    pub(crate) fn times<'t, T: Element>(a: Tensor<'t, T>, b: Tensor<'t, T>) -> Tensor<'t, T> {
        a.tape().custom(Times, &[a, b])
    }
    pub(crate) fn cube<'t, T: Element>(x: Tensor<'t, T>) -> Tensor<'t, T> {
        x.tape().custom_first_order(Cube, &[x])
    }
}
