//! tapegrad's benchmark of the shared workloads (`WORKLOADS.md` of the
//! shared bench folder; its initial weights are copied into `data/`).
//! Prints one JSON line per figure, in the reference programs' schema:
//! `{"impl", "workload", "metric", "value", "threads", "note"}`.
//!
//! Usage: `cargo run --release -p tapebench -- [W1 W2 W3 W4 Q1 P]` (all by default;
//! `W1q` is a one-repeat, 20-iteration W1 for instruction counts; `W3p` times
//! W3's products one by one).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tapegrad::nn::metrics::{self, Metrics};
use tapegrad::nn::{
    cost_of, fit, Adam, Architecture, GradientDescent, Init, Loss, Model, Params, TrainConfig,
};
use tapegrad::tensor::ndarray::{arr2, Array2};
use tapegrad::tensor::{Arg, Element, Plan, Tape};

/// Counts heap allocations (one relaxed atomic add each), for the
/// replayed and eager steps' allocation figures.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; the counter never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// The two ways tapegrad runs a training step: replayed from a plan
/// recorded once (the default, reported as `tapegrad`) or recorded anew
/// every step (`tapegrad-eager`).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Replayed,
    Eager,
}

impl Mode {
    const BOTH: [Mode; 2] = [Mode::Replayed, Mode::Eager];

    fn name(self) -> &'static str {
        match self {
            Mode::Replayed => "tapegrad",
            Mode::Eager => "tapegrad-eager",
        }
    }

    fn eager(self) -> bool {
        self == Mode::Eager
    }
}

fn emit(workload: &str, metric: &str, value: f64, threads: usize, note: &str) {
    emit_as(Mode::Replayed, workload, metric, value, threads, note);
}

fn emit_as(mode: Mode, workload: &str, metric: &str, value: f64, threads: usize, note: &str) {
    let line = serde_json::json!({"impl": mode.name(), "workload": workload, "metric": metric, "value": value, "threads": threads, "note": note});
    println!("{line}");
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn threads() -> usize {
    tapegrad::tensor::threads()
}

/// The rain task's data, standardised as WORKLOADS.md says.
struct Data {
    xtr: Array2<f64>,
    ytr: Array2<f64>,
    xte: Array2<f64>,
    yte: Array2<f64>,
}

fn load_data() -> Data {
    let spec = rain::task_spec(rain::default_data());
    let ds = rain::data::load(&spec).expect("the shipped data loads");
    let s = tapegrad::nn::Standardization::fit(ds.train_x.view(), &spec.features).expect("standardisation");
    Data {
        xtr: s.apply(ds.train_x.view()).unwrap(),
        ytr: ds.train_y,
        xte: s.apply(ds.test_x.view()).unwrap(),
        yte: ds.test_y,
    }
}

/// The shared He initial weights for [3, 20, 7, 5, 1], cast to `T`.
fn shared_init<T: Element>() -> Model<T> {
    let text = include_str!("../data/init-he-3-20-7-5-1-seed0.json");
    let v: serde_json::Value = serde_json::from_str(text).expect("init json");
    let mut params = Params::new();
    for (name, rows) in v["params"].as_object().expect("params") {
        let rows: Vec<Vec<f64>> = serde_json::from_value(rows.clone()).expect("matrix");
        let (r, c) = (rows.len(), rows[0].len());
        let a =
            Array2::from_shape_vec((r, c), rows.into_iter().flatten().map(T::cast).collect()).expect("shape");
        params.insert(name.clone(), a);
    }
    Model::from_params(&Architecture::guide(3, &[20, 7, 5]), params).expect("architecture")
}

/// W1: the guide's loop in f64, full batch, gradient descent 0.1, replayed
/// and eager, the repeats alternating between the two. `quick` runs one
/// repeat of 5 + 20 iterations (for instruction counts under callgrind).
fn w1(d: &Data, quick: bool) {
    let (repeats, warm_n, timed_n) = if quick { (1, 5, 20) } else { (3, 20, 500) };
    let mut times = [Vec::new(), Vec::new()];
    let mut costs = [(0.0, 0.0); 2];
    for _ in 0..repeats {
        for (i, mode) in Mode::BOTH.into_iter().enumerate() {
            // One run: the warm-up iterations, then the timed ones (from
            // the end of the last warm-up update).
            let mut model = shared_init::<f64>();
            let mut gd = GradientDescent::new(0.1).unwrap();
            let cfg = TrainConfig { epochs: warm_n + timed_n, eager: mode.eager(), ..Default::default() };
            let mut start = Instant::now();
            let h = fit(&mut model, &mut gd, d.xtr.view(), d.ytr.view(), &cfg, |p| {
                if p.iteration == warm_n {
                    start = Instant::now();
                }
            })
            .unwrap();
            times[i].push(start.elapsed().as_secs_f64() * 1e6 / timed_n as f64);
            costs[i] = (
                h.iteration_costs[warm_n + timed_n - 1],
                cost_of(&model, &Loss::default(), d.xtr.view(), d.ytr.view()),
            );
        }
    }
    for (i, mode) in Mode::BOTH.into_iter().enumerate() {
        let note = format!(
            "f64; median of {repeats} repeats {:?}, alternating replayed and eager",
            times[i].iter().map(|t| (t * 10.0).round() / 10.0).collect::<Vec<_>>()
        );
        emit_as(mode, "W1", "us_per_iter", (median(&times[i]) * 100.0).round() / 100.0, threads(), &note);
        let (cost520, after) = costs[i];
        emit_as(
            mode,
            "W1",
            "cost_iter520",
            cost520,
            threads(),
            "cost computed in iteration 520 (before its update)",
        );
        let rel = (after - 0.0907248263417013f64).abs() / 0.0907248263417013;
        emit_as(
            mode,
            "W1",
            "cost_after_520_updates",
            after,
            threads(),
            &format!("relative difference from the references' 0.0907248263417013: {rel:.2e}"),
        );
    }
}

/// Adam with mini-batches of 64 from the shared weights; returns the
/// model, the timed seconds, the timed steps and their heap allocations.
fn adam_run<T: Element>(
    d: &Data,
    epochs_warm: usize,
    epochs: usize,
    seed: u64,
    mode: Mode,
) -> (Model<T>, f64, usize, usize) {
    let (x, y) = (d.xtr.mapv(T::cast), d.ytr.mapv(T::cast));
    let mut model = shared_init::<T>();
    let mut adam = Adam::new(1e-3).unwrap();
    // One run: the warm-up epochs, then the timed ones (epoch e shuffled
    // with seed + e either way). Timed from the end of the last warm-up
    // update; the allocations counted from the end of the first timed one.
    let cfg = TrainConfig {
        epochs: epochs_warm + epochs,
        batch_size: Some(64),
        seed,
        eager: mode.eager(),
        ..Default::default()
    };
    let (mut steps, mut first) = (0, None);
    let mut start = Instant::now();
    fit(&mut model, &mut adam, x.view(), y.view(), &cfg, |p| {
        if p.epoch > epochs_warm {
            steps += 1;
            first.get_or_insert_with(allocations);
        } else if p.epoch_cost.is_some() && p.epoch == epochs_warm {
            start = Instant::now();
        }
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    let allocs = allocations() - first.unwrap_or(0);
    (model, secs, steps, allocs)
}

/// W2: per-step overhead, f32, Adam, batches of 64: replayed and eager
/// alternately, three runs each.
fn w2(d: &Data) {
    let mut us = [Vec::new(), Vec::new()];
    let mut allocs = [0.0; 2];
    let mut last = None;
    for _ in 0..3 {
        for (i, mode) in Mode::BOTH.into_iter().enumerate() {
            let (model, secs, steps, a) = adam_run::<f32>(d, 1, 5, 0, mode);
            us[i].push(secs * 1e6 / steps as f64);
            allocs[i] = a as f64 / (steps - 1) as f64;
            if mode == Mode::Replayed {
                last = Some((model, steps));
            }
        }
    }
    let (model, steps) = last.expect("three runs");
    for (i, mode) in Mode::BOTH.into_iter().enumerate() {
        emit_as(
            mode,
            "W2",
            "us_per_step",
            (median(&us[i]) * 100.0).round() / 100.0,
            threads(),
            &format!(
                "f32; {steps} steps in 5 timed epochs; tapegrad Adam; median of 3 runs {:?}, alternating replayed and eager",
                us[i].iter().map(|t| (t * 100.0).round() / 100.0).collect::<Vec<_>>()
            ),
        );
        emit_as(
            mode,
            "W2",
            "allocs_per_step",
            (allocs[i] * 100.0).round() / 100.0,
            threads(),
            "heap allocations per step, over the timed steps after the first",
        );
    }
    let c =
        cost_of(&model, &Loss::default(), d.xtr.mapv(|v| v as f32).view(), d.ytr.mapv(|v| v as f32).view());
    emit(
        "W2",
        "train_cost_after_6_epochs",
        c,
        threads(),
        "full-batch cost after the warm-up + timed epochs (sanity)",
    );
}

/// W3: a wide network, f32, full batch: matrix-multiply efficiency;
/// replayed, then eager.
fn w3(d: &Data) {
    let arch = Architecture::guide(3, &[512, 512, 512]);
    let (x, y) = (d.xtr.mapv(|v| v as f32), d.ytr.mapv(|v| v as f32));
    for mode in Mode::BOTH {
        // One run: 2 warm-up iterations, then the 10 timed ones.
        let mut model = Model::<f32>::new(&arch, Init::HeNormal, 0).unwrap();
        let mut gd = GradientDescent::new(0.01).unwrap();
        let cfg = TrainConfig { epochs: 12, eager: mode.eager(), ..Default::default() };
        let mut times = Vec::new();
        let mut last = std::time::Instant::now();
        fit(&mut model, &mut gd, x.view(), y.view(), &cfg, |p| {
            if p.iteration > 2 {
                times.push(last.elapsed().as_secs_f64());
            }
            last = Instant::now();
        })
        .unwrap();
        let sizes = arch.sizes();
        let flops: f64 = 6.0 * sizes.windows(2).map(|w| (w[0] * w[1]) as f64).sum::<f64>() * x.ncols() as f64;
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        emit_as(
            mode,
            "W3",
            "ms_per_iter",
            (mean * 1e5).round() / 100.0,
            threads(),
            &format!(
                "f32; mean of 10 timed iterations (median {:.3} ms, fastest {:.3} ms)",
                median(&times) * 1e3,
                times.iter().copied().fold(f64::INFINITY, f64::min) * 1e3
            ),
        );
        emit_as(
            mode,
            "W3",
            "gflops",
            (flops / mean / 1e9 * 100.0).round() / 100.0,
            threads(),
            &format!("{flops:.2e} flop per iteration (6*sum(n[l]*n[l-1])*m)"),
        );
    }
}

/// W4: a chain of 10,000 ops on (1, 1) f64 tensors, forward and backward:
/// recorded anew each repeat (eager) and replayed from a plan recorded
/// once, the repeats alternating.
fn w4() {
    const REPEATS: usize = 2500;
    fn chain<'t>(a: &[tapegrad::tensor::Tensor<'t, f64>]) -> tapegrad::tensor::Tensor<'t, f64> {
        let mut x = a[0];
        for _ in 0..REPEATS {
            x = ((x * a[1] + a[2]).tanh()) - a[3];
        }
        x
    }
    let start = [0.5, 1.0, 0.1, 0.1];
    let mut tape = Tape::<f64>::new();
    let eager = |tape: &mut Tape<f64>| -> (f64, [f64; 4]) {
        tape.clear();
        let xs: Vec<_> = start.iter().map(|&v| tape.var(arr2(&[[v]]))).collect();
        let x = chain(&xs);
        let g = tape.backward(x);
        (x.item(), [g[xs[0]][[0, 0]], g[xs[1]][[0, 0]], g[xs[2]][[0, 0]], g[xs[3]][[0, 0]]])
    };
    let mut plan = Plan::compile(start.iter().map(|&v| Arg::param(arr2(&[[v]]))).collect(), |_, a| chain(a))
        .expect("the chain compiles");
    let replayed = |plan: &mut Plan<'_, f64>| -> (f64, [f64; 4]) {
        for (k, &v) in start.iter().enumerate() {
            plan.write(k, |x| x.fill(v)).expect("an argument");
        }
        let y = plan.run().expect("the chain replays");
        let g = |k: usize| plan.grad(k).expect("a gradient")[[0, 0]];
        (y, [g(0), g(1), g(2), g(3)])
    };
    for _ in 0..3 {
        eager(&mut tape);
        replayed(&mut plan);
    }
    let mut times = [Vec::new(), Vec::new()];
    let mut last = [(0.0, [0.0; 4]); 2];
    let mut allocs = 0;
    for _ in 0..20 {
        let (t, a) = (Instant::now(), allocations());
        last[0] = replayed(&mut plan);
        times[0].push(t.elapsed().as_secs_f64());
        allocs = allocations() - a;
        let t = Instant::now();
        last[1] = eager(&mut tape);
        times[1].push(t.elapsed().as_secs_f64());
    }
    for (i, mode) in Mode::BOTH.into_iter().enumerate() {
        let ns = median(&times[i]) * 1e9 / (4 * REPEATS) as f64;
        let (y, g) = last[i];
        emit_as(
            mode,
            "W4",
            "ns_per_op",
            (ns * 10.0).round() / 10.0,
            1,
            &format!(
                "f64 (1,1) tensors; median of 20 repeats of 10,000 ops fwd+bwd, alternating replayed and eager; y={y:.7}, dy/d(x0,a,b,c)=[{:.6e}, {:.5}, {:.5}, {:.5}]",
                g[0], g[1], g[2], g[3]
            ),
        );
    }
    emit("W4", "allocs_per_run", allocs as f64, 1, "heap allocations of one replayed run of the chain");
}

/// Q1: what the model learns: f64, Adam, batches of 64, 20 epochs, seed 0.
fn q1(d: &Data) {
    let (model, secs, _, _) = adam_run::<f64>(d, 0, 20, 0, Mode::Replayed);
    let p = model.predict_proba(d.xte.view()).unwrap();
    let labels: Vec<bool> = d.yte.iter().map(|&v| v == 1.0).collect();
    let m = Metrics::compute(&labels, p.as_slice().unwrap(), 0.5);
    let note = format!("f64; Adam, 20 epochs, seed 0; train {secs:.2} s");
    emit("Q1", "roc_auc", m.roc_auc.unwrap_or(f64::NAN), threads(), &note);
    emit("Q1", "average_precision", m.average_precision.unwrap_or(f64::NAN), threads(), &note);
    let (t, f1) = metrics::best_f1_threshold(&labels, p.as_slice().unwrap()).unwrap_or((f64::NAN, f64::NAN));
    emit("Q1", "best_f1", f1, threads(), &format!("threshold {t:.4}; {note}"));
    emit("Q1", "accuracy_at_0.5", m.accuracy, threads(), &note);
}

/// P: one (512 x 512) times (512 x 19,600) product.
fn p() {
    fn run<T: Element>() -> (f64, f64) {
        // tapegrad's own product (the one W3 runs), on shared arrays so
        // that putting them on the tape copies nothing. Standard normal
        // values, as numpy's P multiplies: on some CPUs the clock depends
        // on the data (constant operands let it run faster).
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let mut normal = |shape: (usize, usize)| {
            Array2::<T>::from_shape_simple_fn(shape, || {
                let z: f64 = rand_distr::StandardNormal.sample(&mut rng);
                T::cast(z)
            })
            .into_shared()
        };
        let a = normal((512, 512));
        let b = normal((512, 19_600));
        let mut tape = Tape::<T>::new();
        let mut times = Vec::new();
        for _ in 0..10 {
            tape.clear();
            let (ta, tb) = (tape.constant(a.clone()), tape.constant(b.clone()));
            let t = Instant::now();
            let c = ta.matmul(tb);
            times.push(t.elapsed().as_secs_f64());
            std::hint::black_box(c);
        }
        let flops = 2.0 * 512.0 * 512.0 * 19_600.0;
        let best = times.iter().cloned().fold(f64::INFINITY, f64::min);
        (flops / best / 1e9, flops / median(&times) / 1e9)
    }
    // The path, tiles and block sizes (from this CPU's caches) it ran on.
    let kernel = tapegrad::tensor::cpu::kernel();
    let (b32, m32) = run::<f32>();
    emit(
        "P",
        "gflops_f32",
        (b32 * 100.0).round() / 100.0,
        threads(),
        &format!(
            "best of 10 (median {m32:.1} GFLOP/s); Tensor::matmul, split across cores; kernels {kernel}"
        ),
    );
    let (b64, m64) = run::<f64>();
    emit(
        "P",
        "gflops_f64",
        (b64 * 100.0).round() / 100.0,
        threads(),
        &format!(
            "best of 10 (median {m64:.1} GFLOP/s); Tensor::matmul, split across cores; kernels {kernel}"
        ),
    );
}

/// W3p: W3's products one at a time, with the shapes, layouts and
/// epilogues its training step gives them (not run by default): where a
/// W3 iteration's time goes, product by product. Milliseconds, best of
/// 10, each product's output given back to the pool as the step does.
fn w3p() {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    use tapegrad_kernels::{pool, product::product_value};
    let (n, m) = (512, 19_600);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // In pooled buffers, as the step's values are (on Linux, large ones
    // are asked to be on huge pages).
    let mut normal = |shape: (usize, usize)| {
        let v = Array2::<f32>::from_shape_simple_fn(shape, || rand_distr::StandardNormal.sample(&mut rng));
        pool::to_value(v.into_dyn().view())
            .into_dimensionality::<tapegrad::tensor::ndarray::Ix2>()
            .expect("2-D")
    };
    let (w, a, dz, bias, gate) =
        (normal((n, n)), normal((n, m)), normal((n, m)), normal((n, 1)), normal((n, m)));
    let (w1, x, w4, b4, dz4) =
        (normal((n, 3)), normal((3, m)), normal((1, n)), normal((1, 1)), normal((1, m)));
    let gate = gate.as_slice().expect("standard layout");
    let dzv = dz.clone().into_dyn();
    type Run<'a> = Box<dyn Fn() -> tapegrad_kernels::Value<f32> + 'a>;
    let parts: Vec<(&str, Run<'_>)> = vec![
        (
            "layer 1 forward: relu(W1 X + b1), k = 3",
            Box::new(|| product_value(w1.view(), x.view(), Some(bias.view()), true, None)),
        ),
        (
            "hidden forward: relu(W A + b)",
            Box::new(|| product_value(w.view(), a.view(), Some(bias.view()), true, None)),
        ),
        (
            "output forward: W4 A3 + b4, one row",
            Box::new(|| product_value(w4.view(), a.view(), Some(b4.view()), false, None)),
        ),
        ("output dW4 = dZ4 A3^T", Box::new(|| product_value(dz4.view(), a.t(), None, false, None))),
        (
            "output dA3 = (W4^T dZ4) * [A3 > 0], k = 1",
            Box::new(|| product_value(w4.t(), dz4.view(), None, false, Some(gate))),
        ),
        ("hidden dW = dZ A^T", Box::new(|| product_value(dz.view(), a.t(), None, false, None))),
        (
            "hidden dA = (W^T dZ) * [A > 0]",
            Box::new(|| product_value(w.t(), dz.view(), None, false, Some(gate))),
        ),
        ("hidden W^T dZ, ungated", Box::new(|| product_value(w.t(), dz.view(), None, false, None))),
        ("layer 1 dW1 = dZ1 X^T", Box::new(|| product_value(dz.view(), x.t(), None, false, None))),
        ("hidden db = row sums of dZ", Box::new(|| tapegrad_kernels::reduce::sum_to_shape(&dzv, &[n, 1]))),
    ];
    let mut best = vec![f64::INFINITY; parts.len()];
    for _ in 0..10 {
        for (k, (_, run)) in parts.iter().enumerate() {
            let t = Instant::now();
            let v = run();
            best[k] = best[k].min(t.elapsed().as_secs_f64());
            pool::recycle(std::hint::black_box(v));
        }
    }
    let kernel = tapegrad::tensor::cpu::kernel();
    for ((name, _), t) in parts.iter().zip(best) {
        emit(
            "W3p",
            "ms",
            (t * 1e5).round() / 100.0,
            threads(),
            &format!("{name}; best of 10; kernels {kernel}"),
        );
    }
}

fn main() {
    rain::end_quietly_on_closed_pipe();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |w: &str| args.is_empty() || args.iter().any(|a| a == w);
    let needs_data = ["W1", "W1q", "W2", "W3", "Q1"].iter().any(|w| want(w));
    let d = needs_data.then(load_data);
    if let Some(d) = &d {
        if want("W1") {
            w1(d, false);
        }
        if args.iter().any(|a| a == "W1q") {
            w1(d, true);
        }
        if want("W2") {
            w2(d);
        }
        if want("W3") {
            w3(d);
        }
        if want("Q1") {
            q1(d);
        }
    }
    if want("W4") {
        w4();
    }
    if want("P") {
        p();
    }
    if args.iter().any(|a| a == "W3p") {
        w3p();
    }
}
