//! Training end to end: a seeded synthetic two-class set is learned.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tapegrad_nn::{
    fit, metrics, optim, Architecture, EarlyStopping, Init, Loss, Model, NnError, Schedule, TrainConfig,
};
use tapegrad_tensor::ndarray::Array2;

/// Two interleaved half-moons with noise, features in rows.
fn two_moons(m: usize, seed: u64) -> (Array2<f64>, Array2<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Array2::zeros((2, m));
    let mut y = Array2::zeros((1, m));
    for i in 0..m {
        let t: f64 = rng.random_range(0.0..std::f64::consts::PI);
        let (px, py, label) =
            if i % 2 == 0 { (t.cos(), t.sin(), 0.0) } else { (1.0 - t.cos(), 0.5 - t.sin(), 1.0) };
        x[[0, i]] = px + rng.random_range(-0.1..0.1);
        x[[1, i]] = py + rng.random_range(-0.1..0.1);
        y[[0, i]] = label;
    }
    (x, y)
}

fn accuracy(model: &Model<f64>, x: &Array2<f64>, y: &Array2<f64>) -> f64 {
    let p = model.predict_proba(x.view()).unwrap();
    let truth: Vec<bool> = y.iter().map(|&v| v == 1.0).collect();
    let pred: Vec<bool> = p.iter().map(|&v| v >= 0.5).collect();
    metrics::Confusion::from_labels(&truth, &pred).accuracy()
}

#[test]
fn every_optimizer_learns_two_moons() {
    let (x, y) = two_moons(400, 1);
    for (name, lr) in [
        ("gd", 0.5),
        ("momentum", 0.5),
        ("nesterov", 0.5),
        ("rmsprop", 0.01),
        ("adam", 0.01),
        ("adamw", 0.01),
    ] {
        let mut model = Model::<f64>::new(&Architecture::guide(2, &[16, 8]), Init::HeNormal, 3).unwrap();
        let mut opt = optim::by_name::<f64>(name, lr).unwrap();
        let cfg = TrainConfig { epochs: 150, batch_size: Some(32), seed: 2, ..Default::default() };
        let mut calls = 0;
        let h = fit(&mut model, opt.as_mut(), x.view(), y.view(), &cfg, |_| calls += 1).unwrap();
        assert_eq!(calls, 150 * 13, "400/32 -> 12 full batches and the smaller last one");
        assert_eq!(h.iteration_costs.len(), calls);
        let acc = accuracy(&model, &x, &y);
        assert!(h.epoch_costs.last().unwrap() < &0.1, "{name}: cost {:?}", h.epoch_costs.last());
        assert!(acc > 0.95, "{name}: accuracy {acc}");
    }
}

#[test]
fn f32_training_works_too() {
    let (x, y) = two_moons(200, 4);
    let (x, y) = (x.mapv(|v| v as f32), y.mapv(|v| v as f32));
    let mut model = Model::<f32>::new(&Architecture::guide(2, &[16, 8]), Init::HeNormal, 3).unwrap();
    let cfg = TrainConfig { epochs: 200, batch_size: Some(16), ..Default::default() };
    let h = fit(&mut model, &mut tapegrad_nn::Adam::new(0.01).unwrap(), x.view(), y.view(), &cfg, |_| {})
        .unwrap();
    assert!(h.epoch_costs.last().unwrap() < &0.1);
}

#[test]
fn training_is_reproducible_bit_for_bit() {
    let (x, y) = two_moons(100, 5);
    let run = || {
        let mut model = Model::<f64>::new(&Architecture::guide(2, &[8]), Init::HeNormal, 3).unwrap();
        let cfg =
            TrainConfig { epochs: 5, batch_size: Some(10), dropout: 0.2, seed: 9, ..Default::default() };
        fit(&mut model, &mut tapegrad_nn::Adam::new(0.01).unwrap(), x.view(), y.view(), &cfg, |_| {})
            .unwrap();
        model.params().clone()
    };
    assert_eq!(run(), run());
}

#[test]
fn divergence_stops_with_an_error_naming_the_iteration() {
    let err = diverge(TrainConfig { epochs: 50, loss: Loss::new(0.0, 1.0).unwrap(), ..Default::default() });
    match &err {
        NnError::NonFinite { iteration, trace, .. } => {
            assert!(*iteration > 1);
            // Without tracing on, the failing step is recorded again with
            // it, so the message still names the op.
            assert!(trace.as_deref().is_some_and(|t| t.contains(" produced ")), "{err}");
        }
        e => panic!("unexpected {e}"),
    }
    assert!(err.to_string().contains("try a smaller learning rate"), "{err}");
}

#[test]
fn a_nan_before_any_update_blames_the_function_not_the_learning_rate() {
    // Issue 21, defect 7: log(x) on negative inputs said "try a smaller
    // learning rate", at iteration 1, before any update.
    let (x, y) = two_moons(40, 2);
    let arch = Architecture::guide(2, &[4]).with_hidden_activation("log(x)");
    let mut model = Model::<f64>::new(&arch, Init::HeNormal, 0).unwrap();
    let cfg = TrainConfig { epochs: 1, ..Default::default() };
    let err = fit(&mut model, &mut tapegrad_nn::Adam::new(0.01).unwrap(), x.view(), y.view(), &cfg, |_| {})
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("at iteration 1 ") && msg.contains("log produced NaN"), "{msg}");
    assert!(msg.contains("not the learning rate") && !msg.contains("try a smaller"), "{msg}");
}

#[test]
fn divergence_under_tracing_names_the_op_and_line() {
    let err = diverge(TrainConfig { epochs: 50, trace_nonfinite: true, ..Default::default() });
    let NnError::NonFinite { trace: Some(trace), .. } = &err else { panic!("no trace in {err}") };
    // The first non-finite value appears inside the library's layer code.
    assert!(trace.contains(" produced ") && trace.contains(".rs:"), "{trace}");
    assert!(err.to_string().contains("the first non-finite value: "), "{err}");
}

#[test]
fn early_stopping_restores_the_best_epoch() {
    let (x, y) = two_moons(200, 7);
    let mut model = Model::<f64>::new(&Architecture::guide(2, &[32, 32]), Init::HeNormal, 0).unwrap();
    let cfg = TrainConfig {
        epochs: 300,
        batch_size: Some(8),
        early_stopping: Some(EarlyStopping { validation_fraction: 0.25, patience: 3 }),
        schedule: Schedule::Constant,
        ..Default::default()
    };
    let h = fit(&mut model, &mut tapegrad_nn::Adam::new(0.05).unwrap(), x.view(), y.view(), &cfg, |_| {})
        .unwrap();
    assert_eq!(h.validation_costs.len(), h.epoch_costs.len());
    let best = h.validation_costs.iter().cloned().fold(f64::INFINITY, f64::min);
    assert_eq!(h.validation_costs[h.best_epoch - 1], best);
    if h.stopped_early {
        assert!(h.epoch_costs.len() < 300);
    }
}

#[test]
fn bad_hyper_parameters_are_typed_errors() {
    let (x, y) = two_moons(10, 8);
    let mut model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
    let mut opt = tapegrad_nn::Adam::new(0.01).unwrap();
    for cfg in [
        TrainConfig { epochs: 0, ..Default::default() },
        TrainConfig { batch_size: Some(0), ..Default::default() },
        TrainConfig { dropout: 1.0, ..Default::default() },
        TrainConfig { dropout: f64::NAN, ..Default::default() },
        TrainConfig { dropout: -0.1, ..Default::default() },
        TrainConfig { clip_norm: Some(-1.0), ..Default::default() },
        TrainConfig { max_iterations: Some(0), ..Default::default() },
        TrainConfig {
            early_stopping: Some(EarlyStopping { validation_fraction: 1.0, patience: 3 }),
            ..Default::default()
        },
        TrainConfig {
            early_stopping: Some(EarlyStopping { validation_fraction: 0.2, patience: 0 }),
            ..Default::default()
        },
    ] {
        // One check, the same error from validate and from fit.
        let before = cfg.validate().unwrap_err().to_string();
        let e = fit(&mut model, &mut opt, x.view(), y.view(), &cfg, |_| {}).unwrap_err();
        assert!(matches!(e, NnError::InvalidHyperParameter { .. }), "{e}");
        assert_eq!(e.to_string(), before);
    }
    let bad_x = Array2::<f64>::zeros((3, 10));
    let e = fit(&mut model, &mut opt, bad_x.view(), y.view(), &TrainConfig::default(), |_| {}).unwrap_err();
    assert!(e.to_string().contains("the data has 3 features"), "{e}");
}

/// The error of a run made to diverge: inputs of order 1000 and a learning
/// rate of a million.
fn diverge(cfg: TrainConfig) -> NnError {
    let (x, y) = two_moons(100, 6);
    let x = x * 1e3;
    let mut model = Model::<f64>::new(&Architecture::guide(2, &[8]), Init::HeNormal, 0).unwrap();
    let mut gd = tapegrad_nn::GradientDescent::new(1e6).unwrap();
    fit(&mut model, &mut gd, x.view(), y.view(), &cfg, |_| {}).unwrap_err()
}

/// An optimizer that records the learning rate of every update.
struct RecordRates(Vec<f64>, f64);

impl tapegrad_nn::Optimizer<f64> for RecordRates {
    fn step(&mut self, _: &mut tapegrad_nn::Params<f64>, _: &tapegrad_nn::Params<f64>) {
        self.0.push(self.1);
    }
    fn learning_rate(&self) -> f64 {
        self.1
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.1 = lr;
    }
    fn name(&self) -> &'static str {
        "record"
    }
}

fn rates_of(cfg: &TrainConfig, m: usize) -> Vec<f64> {
    let (x, y) = two_moons(m, 3);
    let mut model = Model::<f64>::new(&Architecture::guide(2, &[3]), Init::HeNormal, 0).unwrap();
    let mut opt = RecordRates(Vec::new(), 1.0);
    fit(&mut model, &mut opt, x.view(), y.view(), cfg, |_| {}).unwrap();
    opt.0
}

#[test]
fn cosine_annealing_ends_with_the_epochs() {
    // 6 epochs of 4 batches: one rate per epoch, from 1 down towards 0.
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: Some(10),
        schedule: Schedule::Cosine { min_lr: 0.0 },
        ..Default::default()
    };
    let rates = rates_of(&cfg, 40);
    assert_eq!(rates.len(), 24);
    for e in 0..6 {
        let expect = 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / 6.0).cos());
        for r in &rates[4 * e..4 * e + 4] {
            approx::assert_relative_eq!(*r, expect, max_relative = 1e-15); // the same formula
        }
    }
}

#[test]
fn cosine_annealing_ends_with_the_updates_when_they_end_the_run() {
    // Issue 21, defect 6: with --iterations the schedule ran over the
    // default 30 epochs, and every update after epoch 30 had rate 0. Full
    // batch, 300 updates: the rate falls over all 300 and is never 0
    // before the last.
    let cfg = TrainConfig {
        epochs: usize::MAX,
        max_iterations: Some(300),
        schedule: Schedule::Cosine { min_lr: 0.0 },
        ..Default::default()
    };
    let rates = rates_of(&cfg, 20);
    assert_eq!(rates.len(), 300);
    for (i, r) in rates.iter().enumerate() {
        let expect = 0.5 * (1.0 + (std::f64::consts::PI * i as f64 / 300.0).cos());
        approx::assert_relative_eq!(*r, expect, max_relative = 1e-12, epsilon = 1e-15);
    }
    assert!(rates[299] > 1e-5 && rates[150] < 0.6 && rates[150] > 0.4, "{:?}", &rates[295..]);
    // Mini-batches with the iterations ending the run mid-epoch: the same.
    let cfg = TrainConfig { batch_size: Some(7), epochs: 30, max_iterations: Some(50), ..cfg };
    let rates = rates_of(&cfg, 20);
    assert_eq!(rates.len(), 50);
    assert!(rates.windows(2).all(|w| w[1] < w[0]), "{rates:?}");
}
