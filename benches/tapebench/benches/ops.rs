//! Per-op micro-benchmarks behind the workload figures: each times one op
//! (forward, or forward and backward) at the shapes the workloads produce,
//! so a change to a kernel can be measured on its own.
//!
//! `cargo bench -p tapebench --bench ops [-- FILTER]`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::hint::black_box;
use std::time::Duration;
use tapegrad::tensor::ndarray::{ArcArray, Array2, ArrayD, IxDyn};
use tapegrad::tensor::{Element, Tape};

/// A shared array, so putting it on a tape costs no copy.
fn random<T: Element>(shape: &[usize], seed: u64) -> ArcArray<T, IxDyn> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    ArrayD::from_shape_simple_fn(IxDyn(shape), || T::cast(StandardNormal.sample(&mut rng))).into_shared()
}

/// Matrix products at the workloads' shapes: (m, k, n, transposed right
/// operand). W3's 512-wide layers are the GEMM-bound ones; W1's are thin.
fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let cases: [(&str, usize, usize, usize, bool); 6] = [
        ("w3_forward_f32", 512, 512, 19_600, false),
        ("w3_da_f32", 512, 512, 19_600, false),
        ("w3_dw_f32", 512, 19_600, 512, true),
        ("w3_dw_first_f32", 512, 19_600, 3, true),
        ("w1_dw_f32", 7, 19_600, 20, true),
        ("w1_forward_f32", 20, 3, 19_600, false),
    ];
    for (name, m, k, n, transposed) in cases {
        // dA = W^T dZ reads its left operand transposed.
        let left_t = name == "w3_da_f32";
        let a = random::<f32>(&[m, k], 1);
        let a = if left_t { a.t().as_standard_layout().into_shared() } else { a };
        let b = if transposed { random::<f32>(&[n, k], 2) } else { random::<f32>(&[k, n], 2) };
        let mut tape = Tape::<f32>::new();
        g.bench_function(BenchmarkId::from_parameter(name), |bench| {
            bench.iter(|| {
                tape.clear();
                let (x, y) = (tape.constant(a.clone()), tape.constant(b.clone()));
                let x = if left_t { x.t() } else { x };
                let y = if transposed { y.t() } else { y };
                black_box(x.matmul(y).value());
            })
        });
    }
    g.finish();
}

/// One layer of the guide's network, forward and backward, fused
/// (`affine_relu`) and composed (`(W A + b).relu()`), in f64 at W1's
/// widest layer.
fn layer(c: &mut Criterion) {
    let mut g = c.benchmark_group("layer_fwd_bwd");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    let (w0, a0, b0) =
        (random::<f64>(&[20, 3], 1), random::<f64>(&[3, 19_600], 2), random::<f64>(&[20, 1], 3));
    let u0 = random::<f64>(&[20, 19_600], 4);
    let mut tape = Tape::<f64>::new();
    for fused in [true, false] {
        g.bench_function(if fused { "fused" } else { "composed" }, |bench| {
            bench.iter(|| {
                tape.clear();
                let (w, a, b) = (tape.var(w0.clone()), tape.constant(a0.clone()), tape.var(b0.clone()));
                let z = if fused { w.affine_relu(a, b) } else { (w.matmul(a) + b).relu() };
                let loss = (z * tape.constant(u0.clone())).sum();
                let grads = tape.backward(loss);
                black_box(grads[w][[0, 0]]);
            })
        });
    }
    g.finish();
}

/// Elementwise work at W1's (20, 19,600) and W3's (512, 19,600) sizes:
/// a fused backward rule (tanh), a broadcast add and a bias row sum.
fn elementwise(c: &mut Criterion) {
    let mut g = c.benchmark_group("elementwise");
    g.sample_size(20).measurement_time(Duration::from_secs(3));
    for rows in [20, 512] {
        let x0 = random::<f32>(&[rows, 19_600], 1);
        let b0 = random::<f32>(&[rows, 1], 2);
        let mut tape = Tape::<f32>::new();
        g.bench_function(BenchmarkId::new("tanh_fwd_bwd", rows), |bench| {
            bench.iter(|| {
                tape.clear();
                let x = tape.var(x0.clone());
                let y = x.tanh();
                let grads = tape.backward_with(y, x0.clone());
                black_box(grads[x][[0, 0]]);
            })
        });
        g.bench_function(BenchmarkId::new("add_bias_fwd_bwd", rows), |bench| {
            bench.iter(|| {
                tape.clear();
                let (x, b) = (tape.constant(x0.clone()), tape.var(b0.clone()));
                let grads = tape.backward_with(x + b, x0.clone());
                black_box(grads[b][[0, 0]]);
            })
        });
    }
    g.finish();
}

/// W4's chain on (1, 1) tensors: the fixed cost of recording and
/// replaying one op, per 100 ops.
fn overhead(c: &mut Criterion) {
    let mut g = c.benchmark_group("tape_overhead");
    let one = |v: f64| Array2::from_elem((1, 1), v);
    let mut tape = Tape::<f64>::new();
    g.bench_function("chain_100_ops", |bench| {
        bench.iter(|| {
            tape.clear();
            let (a, b, c) = (tape.var(one(1.0)), tape.var(one(0.1)), tape.var(one(0.1)));
            let x0 = tape.var(one(0.5));
            let mut x = x0;
            for _ in 0..25 {
                x = (x * a + b).tanh() - c;
            }
            let grads = tape.backward(x.sum());
            black_box(grads[x0][[0, 0]]);
        })
    });
    g.finish();
}

criterion_group!(benches, matmul, layer, elementwise, overhead);
criterion_main!(benches);
