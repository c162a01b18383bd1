//! The softmax and regression heads: the cost from the logits at +-1000,
//! autodiff against the guide-style formulas and finite differences, the
//! checker catching planted mistakes in a hand-written softmax backward,
//! and training.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapegrad_nn::check::{check_gradients, finite_difference_gradients, guide_backward, GradCheck};
use tapegrad_nn::{fit, one_hot, Adam, Architecture, Head, Init, Loss, Model, NnError, Params, TrainConfig};
use tapegrad_tensor::ndarray::{array, Array2, Axis};
use tapegrad_tensor::{Element, Tape};

/// Inputs `(n_x, m)` in [-2, 2] and class indices `(1, m)` in `0..k`.
fn data(n_x: usize, m: usize, k: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = Array2::from_shape_simple_fn((n_x, m), || rng.random_range(-2.0..2.0));
    let y = Array2::from_shape_simple_fn((1, m), || rng.random_range(0..k) as f64);
    (x, y)
}

fn indices(y: &Array2<f64>) -> Vec<usize> {
    y.iter().map(|&v| v as usize).collect()
}

/// A softmax model with logits exactly `[1000, 0, -1000]` for `x = 1` and
/// the reverse for `x = -1`, labels class 2 for both: the first example's
/// cross-entropy is 2000, the second's 0 (`e^-2000` is far below an ulp).
fn cost_and_gradients_at_logits_of_1000<T: Element>() -> (f64, Params<f64>) {
    let mut model = Model::<T>::new(&Architecture::softmax(1, &[], 3), Init::Zeros, 0).unwrap();
    model.params_mut()["W1"].assign(&array![[1000.0], [0.0], [-1000.0]].mapv(T::cast));
    let x = array![[1.0, -1.0]].mapv(T::cast);
    let y = array![[2.0, 2.0]].mapv(T::cast);
    let cost = tapegrad_nn::cost_of(&model, &Loss::default(), x.view(), y.view());
    let g = tapegrad_nn::check::autodiff_gradients(&model, x.view(), y.view(), &Loss::default()).unwrap();
    (cost, g)
}

#[test]
fn cross_entropy_is_finite_and_right_at_logits_of_1000_in_f32_and_f64() {
    for (cost, g) in
        [cost_and_gradients_at_logits_of_1000::<f32>(), cost_and_gradients_at_logits_of_1000::<f64>()]
    {
        // Mean of 2000 and 0; log(1 + e^-1000 + e^-2000) rounds to 0 even
        // in f64, so both precisions give exactly 1000.
        approx::assert_abs_diff_eq!(cost, 1000.0, epsilon = 0.0);
        // dZ = (softmax - Y) / m: column 1 is ([1, 0, 0] - [0, 0, 1]) / 2,
        // column 2 is 0; dW = dZ x^T and db = row sums of dZ, exact.
        for (name, want) in [("W1", array![[0.5], [0.0], [-0.5]]), ("b1", array![[0.5], [0.0], [-0.5]])] {
            assert!(g[name].iter().all(|v| v.is_finite()), "{name}: {}", g[name]);
            approx::assert_abs_diff_eq!(g[name], want, epsilon = 0.0);
        }
    }
}

#[test]
fn the_naive_log_of_softmax_would_not_be_finite_there() {
    // What the loss avoids: log(softmax(z)) underflows to log(0) = -inf.
    let tape = Tape::<f64>::new();
    let z = tape.var(array![[1000.0], [0.0], [-1000.0]]);
    assert_eq!(z.softmax(0).log().value()[[2, 0]], f64::NEG_INFINITY);
    assert_eq!(z.log_softmax(0).value()[[2, 0]], -2000.0);
}

fn softmax_architectures() -> Vec<Architecture> {
    vec![
        Architecture::softmax(3, &[], 3),
        Architecture::softmax(2, &[5], 4),
        Architecture::softmax(4, &[8, 6], 3).with_hidden_activation("tanh"),
        Architecture::softmax(3, &[7], 2).with_hidden_activation("leaky_relu"),
    ]
}

fn regression_architectures() -> Vec<Architecture> {
    vec![Architecture::regression(3, &[], 1), Architecture::regression(2, &[6, 4], 3)]
}

#[test]
fn softmax_autodiff_equals_the_guides_formula_for_indices_and_one_hot() {
    for (k, arch) in softmax_architectures().iter().enumerate() {
        let classes = arch.layers.last().unwrap().units;
        for l2 in [0.0, 0.7] {
            let model = Model::<f64>::new(arch, Init::HeNormal, k as u64).unwrap();
            let (x, y) = data(arch.input, 29, classes, 10 + k as u64);
            let y1 = one_hot::<f64>(&indices(&y), classes);
            let loss = Loss::new(l2, 1.0).unwrap();
            for labels in [&y, &y1] {
                let guide = guide_backward(&model, x.view(), labels.view(), l2).unwrap();
                // The same sums in other orders (the tape's softmax comes
                // from exp(z - logsumexp), the guide's from e^(z - max) /
                // sum): a few ulps of each gradient's scale.
                let report = check_gradients(&model, x.view(), labels.view(), &loss, &guide, 1e-12).unwrap();
                assert!(report.passed(), "{:?} l2={l2}\n{report}", arch.sizes());
            }
        }
    }
}

#[test]
fn regression_autodiff_equals_the_formula() {
    for (k, arch) in regression_architectures().iter().enumerate() {
        let outputs = arch.layers.last().unwrap().units;
        let model = Model::<f64>::new(arch, Init::HeNormal, k as u64).unwrap();
        let (x, _) = data(arch.input, 31, 1, 20 + k as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(k as u64);
        let y = Array2::from_shape_simple_fn((outputs, 31), || rng.random_range(-3.0..3.0));
        let guide = guide_backward(&model, x.view(), y.view(), 0.3).unwrap();
        // As for softmax: the same sums in other orders.
        let loss = Loss::new(0.3, 1.0).unwrap();
        let report = check_gradients(&model, x.view(), y.view(), &loss, &guide, 1e-12).unwrap();
        assert!(report.passed(), "{:?}\n{report}", arch.sizes());
    }
}

#[test]
fn softmax_and_regression_autodiff_equal_finite_differences() {
    let mut cases: Vec<(Architecture, Array2<f64>, Array2<f64>)> = Vec::new();
    for (k, arch) in softmax_architectures().into_iter().enumerate() {
        let classes = arch.layers.last().unwrap().units;
        let (x, y) = data(arch.input, 17, classes, 30 + k as u64);
        cases.push((arch, x, y));
    }
    for (k, arch) in regression_architectures().into_iter().enumerate() {
        let outputs = arch.layers.last().unwrap().units;
        let (x, _) = data(arch.input, 17, 1, 40 + k as u64);
        let y = Array2::from_shape_fn((outputs, 17), |(r, c)| (r as f64 - c as f64 / 5.0).sin());
        cases.push((arch, x, y));
    }
    for (k, (arch, x, y)) in cases.iter().enumerate() {
        let model = Model::<f64>::new(arch, Init::HeNormal, k as u64).unwrap();
        let loss = Loss::new(0.2, 1.0).unwrap();
        // Central differences with eps 1e-6: truncation ~1e-12, rounding
        // ~1e-10 relative to the cost (as in guide_formulas.rs).
        let fd = finite_difference_gradients(&model, x.view(), y.view(), &loss, 1e-6).unwrap();
        let report = check_gradients(&model, x.view(), y.view(), &loss, &fd, 1e-6).unwrap();
        assert!(report.passed(), "{:?} {}\n{report}", arch.sizes(), arch.head);
    }
}

#[test]
fn the_pre_training_check_runs_on_both_heads_with_the_guides_formulas() {
    let (x, y) = data(3, 40, 3, 7);
    let model = Model::<f32>::new(&Architecture::softmax(3, &[6], 3), Init::HeNormal, 3).unwrap();
    let check = GradCheck::run(&model, x.view(), y.view(), &Loss::new(0.1, 1.0).unwrap()).unwrap();
    assert!(check.passed() && check.vs_guide().is_some(), "{check}");
    let model = Model::<f64>::new(&Architecture::regression(3, &[6], 2), Init::HeNormal, 3).unwrap();
    let targets = Array2::from_shape_fn((2, 40), |(r, c)| (r + c) as f64 / 10.0);
    let check = GradCheck::run(&model, x.view(), targets.view(), &Loss::default()).unwrap();
    assert!(check.passed() && check.vs_guide().is_some(), "{check}");
}

/// A mistake planted in [`manual_softmax_backward`].
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mistake {
    None,
    /// `dZ[L] = Z[L] - Y`: the softmax left out.
    LogitsInPlaceOfProbabilities,
    /// `dZ[L] = A (1 - A) (A - Y)`: the sigmoid's chain factor, which
    /// softmax with cross-entropy cancels.
    SigmoidFactor,
    /// `db[2] = sum(dZ[2])`, without the `1/m`.
    DbWithoutOneOverM,
    /// `dZ[L] = A - y` with `y` the class index broadcast over the rows,
    /// not one-hot.
    IndicesInPlaceOfOneHot,
}

/// A user's hand-written backward for a 1-hidden-layer ReLU net with a
/// softmax head, with an optional planted mistake.
fn manual_softmax_backward(
    model: &Model<f64>,
    x: &Array2<f64>,
    y: &Array2<f64>,
    mistake: Mistake,
) -> Params<f64> {
    let p = model.params();
    let m = x.ncols() as f64;
    let k = p["b2"].nrows();
    let z1 = p["W1"].dot(x) + &p["b1"];
    let a1 = z1.mapv(|v| v.max(0.0));
    let z2 = p["W2"].dot(&a1) + &p["b2"];
    let mut a2 = z2.clone();
    for mut col in a2.columns_mut() {
        let max = col.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        col.mapv_inplace(|v| (v - max).exp());
        let s = col.sum();
        col.mapv_inplace(|v| v / s);
    }
    let y1 = one_hot::<f64>(&indices(y), k);
    let dz2 = match mistake {
        Mistake::LogitsInPlaceOfProbabilities => &z2 - &y1,
        Mistake::SigmoidFactor => &a2 * &a2.mapv(|a| 1.0 - a) * (&a2 - &y1),
        Mistake::IndicesInPlaceOfOneHot => &a2 - y,
        _ => &a2 - &y1,
    };
    let db_scale = if mistake == Mistake::DbWithoutOneOverM { 1.0 } else { 1.0 / m };
    let dw2 = dz2.dot(&a1.t()) / m;
    let db2 = dz2.sum_axis(Axis(1)).insert_axis(Axis(1)) * db_scale;
    let dz1 = p["W2"].t().dot(&dz2) * z1.mapv(|z| if z > 0.0 { 1.0 } else { 0.0 });
    let dw1 = dz1.dot(&x.t()) / m;
    let db1 = dz1.sum_axis(Axis(1)).insert_axis(Axis(1)) / m;
    [("W1", dw1), ("b1", db1), ("W2", dw2), ("b2", db2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn softmax_failures(mistake: Mistake) -> Vec<String> {
    let model = Model::<f64>::new(&Architecture::softmax(3, &[5], 4), Init::HeNormal, 8).unwrap();
    let (x, y) = data(3, 24, 4, 9);
    let mine = manual_softmax_backward(&model, &x, &y, mistake);
    // 1e-10: the correct backward agrees to a few ulps; every mistake
    // below changes gradients by O(1) relative.
    let report = check_gradients(&model, x.view(), y.view(), &Loss::default(), &mine, 1e-10).unwrap();
    report.failures().iter().map(|r| r.name.clone()).collect()
}

#[test]
fn a_correct_hand_written_softmax_backward_passes() {
    assert!(softmax_failures(Mistake::None).is_empty());
}

#[test]
fn the_checker_catches_planted_softmax_mistakes() {
    let all = ["W1", "b1", "W2", "b2"];
    assert_eq!(softmax_failures(Mistake::LogitsInPlaceOfProbabilities), all);
    assert_eq!(softmax_failures(Mistake::SigmoidFactor), all);
    assert_eq!(softmax_failures(Mistake::IndicesInPlaceOfOneHot), all);
    // The 1/m of db2 is only in db2 (db1 is computed from dZ1).
    assert_eq!(softmax_failures(Mistake::DbWithoutOneOverM), ["b2"]);
}

/// Three well-separated clusters in the plane, labelled 0, 1, 2.
fn clusters(m: usize, seed: u64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres = [(-2.0, 0.0), (2.0, 0.0), (0.0, 2.5)];
    let labels: Vec<usize> = (0..m).map(|i| i % 3).collect();
    let x = Array2::from_shape_fn((2, m), |(r, c)| {
        let (cx, cy) = centres[labels[c]];
        (if r == 0 { cx } else { cy }) + rng.random_range(-0.6..0.6)
    });
    (x, labels)
}

#[test]
fn a_softmax_head_learns_three_clusters() {
    let (x, labels) = clusters(90, 1);
    let y = Array2::from_shape_vec((1, 90), labels.iter().map(|&c| c as f64).collect()).unwrap();
    for hidden in [&[][..], &[8][..]] {
        let mut model = Model::<f64>::new(&Architecture::softmax(2, hidden, 3), Init::HeNormal, 0).unwrap();
        let cfg = TrainConfig { epochs: 200, batch_size: Some(30), ..Default::default() };
        let h = fit(&mut model, &mut Adam::new(0.05).unwrap(), x.view(), y.view(), &cfg, |_| {}).unwrap();
        assert!(h.epoch_costs.last().unwrap() < &0.1, "{hidden:?}: {:?}", h.epoch_costs.last());
        let predicted = model.predict_classes(x.view()).unwrap();
        let m = tapegrad_nn::metrics::MulticlassMetrics::compute(&labels, &predicted, 3);
        // The clusters are 2.8 apart with noise of at most 0.6: separable.
        assert_eq!(m.accuracy, 1.0, "{hidden:?}: {:?}", m.confusion);
        // Every column of probabilities sums to 1 (rounding of 3 terms).
        for s in model.predict(x.view()).unwrap().sum_axis(Axis(0)) {
            approx::assert_abs_diff_eq!(s, 1.0, epsilon = 4.0 * f64::EPSILON);
        }
    }
}

#[test]
fn a_regression_head_recovers_a_linear_function() {
    // y = 1.5 x1 - 2 x2 + 0.5, no noise: least squares recovers it.
    let (x, _) = data(2, 200, 1, 5);
    let y = x.map_axis(Axis(0), |c| 1.5 * c[0] - 2.0 * c[1] + 0.5).insert_axis(Axis(0));
    let mut model = Model::<f64>::new(&Architecture::regression(2, &[], 1), Init::Zeros, 0).unwrap();
    let cfg = TrainConfig { epochs: 400, batch_size: Some(50), ..Default::default() };
    fit(&mut model, &mut Adam::new(0.05).unwrap(), x.view(), y.view(), &cfg, |_| {}).unwrap();
    // Adam at a constant rate of 0.05 hovers around the optimum: within
    // 1e-3 of each coefficient after 1,600 updates on exact data.
    approx::assert_abs_diff_eq!(model.params()["W1"], array![[1.5, -2.0]], epsilon = 1e-3);
    approx::assert_abs_diff_eq!(model.params()["b1"], array![[0.5]], epsilon = 1e-3);
    let mse = tapegrad_nn::cost_of(&model, &Loss::default(), x.view(), y.view());
    assert!(mse < 1e-5, "{mse}");
}

#[test]
fn the_mse_is_the_mean_over_every_element() {
    // Zero weights predict 0: the cost is the mean of the squared targets
    // over both outputs and all three examples.
    let model = Model::<f64>::new(&Architecture::regression(1, &[], 2), Init::Zeros, 0).unwrap();
    let y = array![[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]];
    let c = tapegrad_nn::cost_of(&model, &Loss::default(), Array2::zeros((1, 3)).view(), y.view());
    // Sums of small integers, exact; the mean over the 2 outputs and then
    // over the 3 examples rounds twice where the test divides once.
    approx::assert_relative_eq!(
        c,
        (1.0 + 4.0 + 9.0 + 1.0 + 0.0 + 16.0) / 6.0,
        max_relative = 2.0 * f64::EPSILON
    );
}

#[test]
fn heads_refuse_what_they_cannot_do() {
    let (x, y) = data(2, 10, 3, 1);
    let mut model = Model::<f64>::new(&Architecture::softmax(2, &[], 3), Init::HeNormal, 0).unwrap();
    let e = model.predict_proba(x.view()).unwrap_err();
    assert!(matches!(e, NnError::WrongHead { found: Head::Softmax, .. }), "{e}");
    let cfg = TrainConfig { loss: Loss::new(0.0, 3.0).unwrap(), ..Default::default() };
    let e = fit(&mut model, &mut Adam::new(0.01).unwrap(), x.view(), y.view(), &cfg, |_| {}).unwrap_err();
    assert!(e.to_string().contains("applies to a binary head only"), "{e}");
    let e = fit(
        &mut model,
        &mut Adam::new(0.01).unwrap(),
        x.view(),
        array![[0.0, 1.0]].view(),
        &TrainConfig::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(e.to_string().contains("class indices (1, 10) or one-hot (3, 10)"), "{e}");
    let reg = Model::<f64>::new(&Architecture::regression(2, &[], 1), Init::HeNormal, 0).unwrap();
    assert!(matches!(reg.predict_classes(x.view()), Err(NnError::WrongHead { .. })));
    // A softmax head of one unit, and a binary head of two.
    let bad = Architecture::softmax(2, &[], 1);
    assert!(Model::<f64>::new(&bad, Init::HeNormal, 0).is_err());
    let bad = Architecture::guide(2, &[]).with_output(Head::Binary, 2);
    assert!(Model::<f64>::new(&bad, Init::HeNormal, 0).is_err());
}
