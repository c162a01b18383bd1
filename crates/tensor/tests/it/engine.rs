//! The engine's contract: accumulation for fan-out, constants, no-grad,
//! detach, reuse of a cleared tape, and the shape rules as properties.

use approx::assert_relative_eq;
use ndarray::{arr1, arr2, ArrayD, IxDyn};
use proptest::prelude::*;
use tapegrad_tensor::{gradcheck, Tape, Tensor};

#[test]
fn fan_out_sums_the_gradients() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[0.7, -1.3]));
    // x used three times: d/dx (x*x + sin-free exp(x) + 3x) = 2x + e^x + 3.
    let y = (x * x + x.exp() + x * 3.0).sum();
    let g = tape.backward(y);
    for (k, &v) in [0.7f64, -1.3].iter().enumerate() {
        // Same operations in the same order as the rules: exact up to the
        // last bit of each term, so a relative 1e-15 is ample.
        assert_relative_eq!(g[x][k], 2.0 * v + v.exp() + 3.0, max_relative = 1e-15);
    }
}

#[test]
fn constants_and_no_grad_get_no_gradient() {
    let tape = Tape::<f64>::new();
    let w = tape.var(arr1(&[2.0]));
    let c = tape.constant(arr1(&[5.0]));
    let n = tape.no_grad(|| w * 10.0);
    let y = (w * c + n + w.detach() * w).sum();
    let g = tape.backward(y);
    assert!(g.get(c).is_none());
    assert!(g.get(n).is_none());
    assert!(!n.requires_grad());
    // d/dw (w c + const + stop(w) w) = c + w
    assert_eq!(g[w][0], 7.0);
}

#[test]
fn cleared_and_reused_tape_gives_bit_identical_gradients() {
    let x0 = arr2(&[[0.3, -0.2, 0.9], [1.1, -0.4, 0.05]]);
    let w0 = arr2(&[[0.5, -1.0], [0.25, 0.75], [-0.3, 0.2]]);
    let mut tape = Tape::<f64>::new();
    let mut results = Vec::new();
    for _ in 0..2 {
        let x = tape.constant(x0.clone());
        let w = tape.var(w0.clone());
        let loss = x.matmul(w).tanh().sigmoid().mean();
        let g = tape.backward(loss);
        results.push((loss.item().to_bits(), g[w].iter().map(|v| v.to_bits()).collect::<Vec<_>>()));
        tape.clear();
    }
    assert_eq!(results[0], results[1]);
}

#[test]
#[should_panic(expected = "is not from the tape these gradients came from")]
fn gradients_from_before_a_clear_refuse_new_tensors() {
    // Tensors cannot outlive a clear (clear takes `&mut Tape`), but
    // gradients can: looking one up with a tensor of the next iteration panics.
    let mut tape = Tape::<f64>::new();
    let g = {
        let x = tape.var(arr1(&[1.0]));
        tape.backward(x.sum())
    };
    tape.clear();
    let x = tape.var(arr1(&[1.0]));
    let _ = g.get(x);
}

/// `backward_for` gives the gradients asked for, equal to `backward`'s bit
/// for bit (through fan-out, broadcasting and ReLU layers), and nothing for
/// the rest.
#[test]
fn backward_for_keeps_what_was_asked_for() {
    let tape = Tape::<f64>::new();
    let w = tape.var(arr2(&[[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]]));
    let b = tape.var(arr2(&[[0.1], [-0.2]]));
    let x = tape.var(arr2(&[[1.0, -2.0], [0.5, 3.0], [-1.0, 0.5]]));
    let h = w.affine_relu(x, b);
    let y = ((h * h).sum() + (h + b).tanh().sum()) * x.sum();
    let all = tape.backward(y);
    let some = tape.backward_for(y, &[w, x]);
    assert_eq!(some[w], all[w]);
    assert_eq!(some[x], all[x]);
    assert!(some.get(b).is_none() && some.get(h).is_none());
    assert!(all.get(b).is_some());
    // A tensor recorded after the output was asked for: no gradient, and
    // looking it up says so (it is not "not asked for").
    let later = tape.var(arr1(&[1.0]));
    let g = tape.backward_for(y, &[w, later]);
    assert!(g.get(later).is_none());
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g[later].clone()))
        .err()
        .and_then(|e| e.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(msg.contains("has no gradient"), "{msg}");
}

#[test]
#[should_panic(expected = "was not among the tensors passed to backward_for")]
fn backward_for_names_a_tensor_not_asked_for() {
    let tape = Tape::<f64>::new();
    let (a, b) = (tape.var(arr1(&[1.0])), tape.var(arr1(&[2.0])));
    let g = tape.backward_for((a * b).sum(), &[a]);
    let _ = &g[b];
}

#[test]
#[should_panic(expected = "backward_for: the output has shape [2], not one element")]
fn backward_for_of_non_scalar_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[1.0, 2.0]));
    let _ = tape.backward_for(x * 2.0, &[x]);
}

#[test]
#[should_panic(expected = "backward: the output has shape [2], not one element")]
fn backward_of_non_scalar_without_seed_panics() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[1.0, 2.0]));
    let _ = tape.backward(x * 2.0);
}

#[test]
fn dot_export_has_one_node_per_op_with_shapes() {
    let tape = Tape::<f32>::new();
    let w = tape.var(arr2(&[[1.0f32, 2.0]]));
    let x = tape.constant(arr2(&[[1.0f32], [3.0]]));
    let _ = w.matmul(x).relu().sum();
    let dot = tape.to_dot();
    assert_eq!(dot.matches("label=").count(), 5);
    assert!(dot.contains("matmul\\n[1, 1]"));
    assert!(dot.contains("n0 -> n2") && dot.contains("n1 -> n2"));
}

#[test]
fn second_derivative_through_grad_graph() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[0.4, -1.5]));
    let d1 = tape.grad_graph(x.tanh().sum())[x];
    let d2 = tape.backward(d1.sum());
    for (k, &v) in [0.4f64, -1.5].iter().enumerate() {
        let t = v.tanh();
        // analytic: d2/dx2 tanh = -2 t (1 - t^2); a few roundings apart.
        assert_relative_eq!(d2[x][k], -2.0 * t * (1.0 - t * t), max_relative = 1e-13);
    }
}

/// A pair of shapes that numpy broadcasts: start from a common shape and
/// set some axes of either side to 1, or drop leading axes.
fn broadcastable_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(1usize..4, 1..4)
        .prop_flat_map(|base| {
            let n = base.len();
            (Just(base), prop::collection::vec(0u8..3, n), prop::collection::vec(0u8..3, n), 0..n, 0..n)
        })
        .prop_map(|(base, ma, mb, drop_a, drop_b)| {
            let a: Vec<usize> = base.iter().zip(&ma).map(|(&d, &m)| if m == 0 { 1 } else { d }).collect();
            let b: Vec<usize> = base.iter().zip(&mb).map(|(&d, &m)| if m == 0 { 1 } else { d }).collect();
            (a[drop_a.min(a.len() - 1)..].to_vec(), b[drop_b..].to_vec())
        })
}

fn filled(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut k = seed;
    ArrayD::from_shape_simple_fn(IxDyn(shape), || {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        0.5 + ((k >> 33) as f64 / (1u64 << 31) as f64) // in [0.5, 1.5): safe for div
    })
}

fn add<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
    x[0] + x[1]
}
fn sub<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
    x[0] - x[1]
}
fn mul<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
    x[0] * x[1]
}
fn div<'t>(x: &[Tensor<'t, f64>]) -> Tensor<'t, f64> {
    x[0] / x[1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn broadcast_gradients_have_input_shapes_and_pass_gradcheck((sa, sb) in broadcastable_pair(), seed in 0u64..1000) {
        let a = filled(&sa, seed);
        let b = filled(&sb, seed + 1);
        for f in [add, sub, mul, div] {
            let tape = Tape::<f64>::new();
            let (ta, tb) = (tape.var(a.clone()), tape.var(b.clone()));
            let g = tape.backward(f(&[ta, tb]).sum());
            prop_assert_eq!(g[ta].shape(), a.shape());
            prop_assert_eq!(g[tb].shape(), b.shape());
            let report = gradcheck(f, &[a.clone(), b.clone()]);
            prop_assert!(report.passed(), "{:?} {:?}\n{}", sa, sb, report);
        }
    }
}

/// Tiny values are reused whole after a clear, but never one that the user
/// still holds: a kept value keeps its elements while later ops run.
#[test]
fn small_values_are_reused_only_when_nobody_holds_them() {
    let mut tape = Tape::<f64>::new();
    let x = tape.var(arr2(&[[3.0]]));
    let kept = (x * x + 1.0).value();
    let freed = (x * 2.0).value().as_ptr(); // nobody keeps this value
    tape.clear();
    // The pool is per thread and last in, first out: the first tiny op
    // after the clear gets the last value given back, the one of x * 2.
    let x = tape.var(arr2(&[[4.0]]));
    let y = x * 2.0;
    assert_eq!(y.value().as_ptr(), freed);
    assert_eq!(y.item(), 8.0);
    let mut z = y;
    for _ in 0..100 {
        z = (z * x).tanh() - x;
    }
    let g = tape.backward(z.sum());
    assert!(g[x][[0, 0]].is_finite());
    assert_eq!(kept[[0, 0]], 10.0, "a held value was overwritten");
    assert_ne!(kept.as_ptr(), freed);
}
