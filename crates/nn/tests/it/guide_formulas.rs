//! Model gradients: autodiff against the guide's hand-written formulas and
//! against finite differences, and the checker catching planted mistakes.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapegrad_nn::check::{
    autodiff_gradients, check_gradients, finite_difference_gradients, guide_backward, GradientReport,
};
use tapegrad_nn::{Architecture, Init, Loss, Model, Params};
use tapegrad_tensor::ndarray::{Array2, Axis};

fn data(n_x: usize, m: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n_x, m), || rng.random_range(-2.0..2.0));
    let y = Array2::from_shape_simple_fn((1, m), || if rng.random_bool(0.4) { 1.0 } else { 0.0 });
    (x, y)
}

/// Architectures from 1 to 5 layers, widths 1 to 32.
fn architectures() -> Vec<Architecture> {
    vec![
        Architecture::guide(3, &[]),
        Architecture::guide(1, &[1]),
        Architecture::guide(3, &[20, 7, 5]),
        Architecture::guide(4, &[32, 16, 8, 2]),
        Architecture::guide(2, &[5, 5]).with_hidden_activation("tanh"),
        Architecture::guide(3, &[6, 4]).with_hidden_activation("sigmoid"),
        Architecture::guide(3, &[8]).with_hidden_activation("leaky_relu"),
    ]
}

#[test]
fn autodiff_equals_the_guides_formulas_within_1e_12() {
    for (k, arch) in architectures().iter().enumerate() {
        for l2 in [0.0, 0.7] {
            let model = Model::<f64>::new(arch, Init::HeNormal, k as u64).unwrap();
            let (x, y) = data(arch.input, 37, 100 + k as u64);
            let guide = guide_backward(&model, x.view(), y.view(), l2).unwrap();
            let loss = Loss::new(l2, 1.0).unwrap();
            // Both compute the same sums in slightly different orders (the
            // tape's sigmoid - y comes from the fused BCE rule, the guide's
            // from A - Y): differences are a few ulps of each gradient's
            // scale, far inside 1e-12.
            let report = check_gradients(&model, x.view(), y.view(), &loss, &guide, 1e-12).unwrap();
            assert!(report.passed(), "{:?} l2={l2}\n{report}", arch.sizes());
        }
    }
}

#[test]
fn autodiff_equals_finite_differences_within_1e_6() {
    for (k, arch) in architectures().iter().enumerate() {
        for l2 in [0.0, 0.7] {
            let model = Model::<f64>::new(arch, Init::HeNormal, k as u64).unwrap();
            let (x, y) = data(arch.input, 23, 200 + k as u64);
            let loss = Loss::new(l2, 1.0).unwrap();
            // Central differences with eps 1e-6: truncation ~1e-12, rounding
            // ~1e-16/1e-6 = 1e-10 relative to the cost; relu kinks are not
            // crossed with probability ~1 (no Z within 1e-6 of 0 here).
            let fd = finite_difference_gradients(&model, x.view(), y.view(), &loss, 1e-6).unwrap();
            let report = check_gradients(&model, x.view(), y.view(), &loss, &fd, 1e-6).unwrap();
            assert!(report.passed(), "{:?} l2={l2}\n{report}", arch.sizes());
        }
    }
}

/// A mistake planted in [`manual_backward`], each of which the checker
/// must report.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mistake {
    /// None: the right gradients.
    None,
    /// `db = sum(dZ)`, without the `1/m`.
    DbWithoutOneOverM,
    /// `relu'(0) = 1` instead of 0.
    ReluPrimeOfZeroIsOne,
    /// `dZ1 = dA1 * A1`: relu(z) where relu'(z) belongs.
    ReluInPlaceOfItsDerivative,
    /// One element of `dW1` is NaN.
    NanInOneElement,
    /// Every gradient is NaN.
    AllNan,
}

/// A user's hand-written backward for a 1-hidden-layer ReLU net, with
/// an optional planted mistake.
fn manual_backward(model: &Model<f64>, x: &Array2<f64>, y: &Array2<f64>, mistake: Mistake) -> Params<f64> {
    let p = model.params();
    let m = x.ncols() as f64;
    let z1 = p["W1"].dot(x) + &p["b1"];
    let a1 = z1.mapv(|v| v.max(0.0));
    let z2 = p["W2"].dot(&a1) + &p["b2"];
    let a2 = z2.mapv(|v| 1.0 / (1.0 + (-v).exp()));
    let dz2 = &a2 - y;
    let db_scale = if mistake == Mistake::DbWithoutOneOverM { 1.0 } else { 1.0 / m };
    let dw2 = dz2.dot(&a1.t()) / m;
    let db2 = dz2.sum_axis(Axis(1)).insert_axis(Axis(1)) * db_scale;
    let da1 = p["W2"].t().dot(&dz2);
    let relu_prime_at_zero = if mistake == Mistake::ReluPrimeOfZeroIsOne { 1.0 } else { 0.0 };
    let g_prime = z1.mapv(|z| match mistake {
        Mistake::ReluInPlaceOfItsDerivative => z.max(0.0),
        _ if z > 0.0 => 1.0,
        _ if z == 0.0 => relu_prime_at_zero,
        _ => 0.0,
    });
    let dz1 = &da1 * &g_prime;
    let mut dw1 = dz1.dot(&x.t()) / m;
    let db1 = dz1.sum_axis(Axis(1)).insert_axis(Axis(1)) * db_scale;
    if mistake == Mistake::NanInOneElement {
        dw1[[1, 2]] = f64::NAN;
    }
    let mut grads: Params<f64> = [("W1", dw1), ("b1", db1), ("W2", dw2), ("b2", db2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    if mistake == Mistake::AllNan {
        grads.values_mut().for_each(|g| g.fill(f64::NAN));
    }
    grads
}

fn planted_setup() -> (Model<f64>, Array2<f64>, Array2<f64>) {
    let mut model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 9).unwrap();
    // Unit 2 of layer 1 has Z = 0 for every example: relu'(0) decides.
    model.params_mut()["W1"].row_mut(2).fill(0.0);
    model.params_mut()["b1"][[2, 0]] = 0.0;
    let (x, y) = data(3, 16, 5);
    (model, x, y)
}

/// The names of the parameters the checker fails with `mistake` planted,
/// and its report.
fn failures_with(mistake: Mistake, tolerance: f64) -> (Vec<String>, GradientReport) {
    let (model, x, y) = planted_setup();
    let mine = manual_backward(&model, &x, &y, mistake);
    let report = check_gradients(&model, x.view(), y.view(), &Loss::default(), &mine, tolerance).unwrap();
    (report.failures().iter().map(|r| r.name.clone()).collect(), report)
}

#[test]
fn correct_manual_backward_passes() {
    // The same sums as the tape in another order: a few ulps.
    let (failed, report) = failures_with(Mistake::None, 1e-12);
    assert!(failed.is_empty(), "{report}");
}

#[test]
fn checker_catches_db_without_one_over_m() {
    // m = 16: a factor of 16, far beyond any tolerance (1e-8 here).
    let (failed, report) = failures_with(Mistake::DbWithoutOneOverM, 1e-8);
    assert_eq!(failed, ["b1", "b2"], "{report}");
}

#[test]
fn checker_catches_relu_prime_of_zero_equal_to_one() {
    let (failed, report) = failures_with(Mistake::ReluPrimeOfZeroIsOne, 1e-8);
    // dZ1 of the dead unit becomes non-zero: its row of dW1 and db1 change;
    // layer 2 is untouched.
    assert_eq!(failed, ["W1", "b1"], "{report}");
    assert!(report.to_string().contains("FAIL"));
}

#[test]
fn checker_catches_a_wrong_derivative() {
    let (failed, report) = failures_with(Mistake::ReluInPlaceOfItsDerivative, 1e-8);
    assert_eq!(failed, ["W1", "b1"], "{report}");
}

#[test]
fn checker_catches_a_nan_and_shows_it() {
    // Defect 1 of issue 17: one NaN element passed as "0.000e0 ok".
    let (failed, report) = failures_with(Mistake::NanInOneElement, 1e-8);
    assert_eq!(failed, ["W1"], "{report}");
    assert!(report.rows[0].max_rel_diff.is_nan(), "{report}");
    assert!(report.to_string().lines().any(|l| l.starts_with("W1") && l.contains("NaN")), "{report}");
}

#[test]
fn checker_catches_an_all_nan_gradient() {
    let (failed, report) = failures_with(Mistake::AllNan, 1e-8);
    assert_eq!(failed, ["W1", "b1", "W2", "b2"], "{report}");
}

#[test]
fn leaky_relu_on_an_all_zero_example_agrees_with_the_guide() {
    // Defect 3 of issue 17: with zero biases, an example whose features
    // are all 0 has Z[1] = 0 exactly; autodiff took leaky_relu'(0) as 0,
    // the guide (and PyTorch) as alpha, and b1 failed.
    let arch = Architecture::guide(3, &[5]).with_hidden_activation("leaky_relu:0.1");
    let model = Model::<f64>::new(&arch, Init::HeNormal, 4).unwrap();
    let (mut x, y) = data(3, 12, 6);
    x.column_mut(3).fill(0.0);
    let guide = guide_backward(&model, x.view(), y.view(), 0.0).unwrap();
    // The same sums in another order: a few ulps (see
    // autodiff_equals_the_guides_formulas_within_1e_12).
    let report = check_gradients(&model, x.view(), y.view(), &Loss::default(), &guide, 1e-12).unwrap();
    assert!(report.passed(), "{report}");
}

#[test]
fn f32_autodiff_is_close_to_f64() {
    let arch = Architecture::guide(3, &[20, 7, 5]);
    let m64 = Model::<f64>::new(&arch, Init::HeNormal, 0).unwrap();
    let m32 = m64.cast::<f32>().unwrap();
    let (x, y) = data(3, 50, 1);
    let g64 = autodiff_gradients(&m64, x.view(), y.view(), &Loss::default()).unwrap();
    let g32 =
        autodiff_gradients(&m32, x.mapv(|v| v as f32).view(), y.mapv(|v| v as f32).view(), &Loss::default())
            .unwrap();
    // f32 rounding of weights (6e-8) and of sums over 50 examples.
    let report = tapegrad_nn::check::compare_gradients(&g32, &g64, 1e-4);
    assert!(report.passed(), "{report}");
}
