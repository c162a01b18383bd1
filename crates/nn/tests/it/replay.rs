//! Replayed training ([`tapegrad_nn::fit`]'s default) against eager
//! training: the same model, the same costs, bit for bit, for every head,
//! both element types, dropout, L2 and a last batch of another size.

use tapegrad_nn::{fit, optim, Architecture, History, Init, Loss, Model, TrainConfig};
use tapegrad_tensor::ndarray::Array2;
use tapegrad_tensor::Element;

/// Made-up data: the values do not matter, only that every path is taken.
fn data<T: Element>(rows: usize, m: usize) -> Array2<T> {
    Array2::from_shape_fn((rows, m), |(i, j)| T::cast((((i * 7 + j * 13) % 17) as f64) / 8.0 - 1.0))
}

fn train<T: Element>(
    arch: &Architecture,
    y: &Array2<T>,
    cfg: &TrainConfig,
    eager: bool,
) -> (Model<T>, History) {
    let x = data::<T>(3, y.ncols());
    let mut model = Model::<T>::new(arch, Init::HeNormal, 3).unwrap();
    let mut adam = optim::Adam::new(1e-2).unwrap();
    let cfg = TrainConfig { eager, ..cfg.clone() };
    let h = fit(&mut model, &mut adam, x.view(), y.view(), &cfg, |_| {}).unwrap();
    (model, h)
}

fn bits<T: Element>(v: impl Iterator<Item = T>) -> Vec<u64> {
    v.map(|x| x.as_f64().to_bits()).collect()
}

fn same_run<T: Element>(arch: &Architecture, y: &Array2<T>, cfg: &TrainConfig, what: &str) {
    let (replayed, hr) = train(arch, y, cfg, false);
    let (eager, he) = train(arch, y, cfg, true);
    let updates = hr.iteration_costs.len();
    assert_eq!(hr.replayed, updates, "{what}: every update replayed ({:?})", hr.replay_refused);
    assert_eq!(he.replayed, 0, "{what}: the eager run records every step");
    assert_eq!(
        bits(hr.iteration_costs.iter().copied()),
        bits(he.iteration_costs.iter().copied()),
        "{what}: costs"
    );
    for ((name, a), b) in replayed.params().iter().zip(eager.params().values()) {
        assert_eq!(bits(a.iter().copied()), bits(b.iter().copied()), "{what}: {name}");
    }
}

#[test]
fn replayed_training_equals_eager_training_bit_for_bit() {
    // 150 examples in batches of 64: two batch sizes, two plans.
    let m = 150;
    let binary = Array2::from_shape_fn((1, m), |(_, j)| (j % 3 == 0) as u8 as f64);
    let classes = Array2::from_shape_fn((1, m), |(_, j)| (j % 3) as f64);
    let cfg = TrainConfig { epochs: 3, batch_size: Some(64), seed: 5, ..Default::default() };
    let guide = Architecture::guide(3, &[20, 7, 5]);
    same_run::<f64>(&guide, &binary, &cfg, "guide f64");
    same_run::<f32>(&guide, &binary.mapv(|v| v as f32), &cfg, "guide f32");
    let full = TrainConfig { batch_size: None, ..cfg.clone() };
    same_run::<f64>(&guide, &binary, &full, "full batch");
    let dropout = TrainConfig { dropout: 0.3, ..cfg.clone() };
    same_run::<f64>(&guide, &binary, &dropout, "dropout f64");
    same_run::<f32>(&guide, &binary.mapv(|v| v as f32), &dropout, "dropout f32");
    let l2 = TrainConfig { loss: Loss::new(0.05, 2.0).unwrap(), ..cfg.clone() };
    same_run::<f64>(&guide, &binary, &l2, "L2 and a class weight");
    same_run::<f64>(&Architecture::softmax(3, &[6], 3), &classes, &dropout, "softmax");
    let target = data::<f64>(2, m);
    same_run::<f64>(&Architecture::regression(3, &[5], 2), &target, &cfg, "regression");
    let formula = guide.clone().with_hidden_activation("x * sigmoid(1.5 * x)");
    same_run::<f64>(&formula, &binary, &dropout, "a formula activation");
}
