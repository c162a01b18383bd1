//! The built-in activations against an independent reference: values and
//! first derivatives from Python's math module, frozen in
//! `tests/it/reference/activations.rs` by `scripts/reference_activations.py`.

mod reference {
    pub mod activations {
        include!("reference/activations.rs");
    }
}

use reference::activations::{ACTIVATIONS, POINTS};
use tapegrad_nn::Activation;
use tapegrad_tensor::ndarray::{arr1, ArrayD};
use tapegrad_tensor::{Element, Tape};

/// `f` and `f'` (by autodiff) at the reference points, as f64.
fn evaluate<T: Element>(name: &str) -> (Vec<f64>, Vec<f64>) {
    let act = Activation::<T>::parse(name).unwrap();
    let tape = Tape::<T>::new();
    let x = tape.var(arr1(&POINTS.map(T::cast)).into_dyn());
    let y = act.apply(x);
    let g: ArrayD<T> = tape.backward(y.sum())[x].to_owned();
    (y.value().iter().map(|v| v.as_f64()).collect(), g.iter().map(|v| v.as_f64()).collect())
}

#[test]
fn f64_values_and_derivatives_match_the_reference() {
    for (name, f, d) in ACTIVATIONS {
        let (got_f, got_d) = evaluate::<f64>(name);
        for k in 0..POINTS.len() {
            // Each activation is a handful of ops (erf, exp, tanh, sin,
            // sqrt, products), each within an ulp or two: 1e-14 relative
            // is ~50 ulps. Where a result is small because two O(1) terms
            // cancel (1 + erf(x / sqrt 2) in gelu at -3.5, 1 + x / sqrt(x^2
            // + b) in squareplus' at -20, as in PyTorch), the error is a
            // few ulps of 1 instead: the absolute 1e-15.
            approx::assert_relative_eq!(got_f[k], f[k], max_relative = 1e-14, epsilon = 1e-15);
            approx::assert_relative_eq!(got_d[k], d[k], max_relative = 1e-14, epsilon = 1e-15);
        }
    }
}

#[test]
fn f32_values_and_derivatives_match_the_reference() {
    for (name, f, d) in ACTIVATIONS {
        let (got_f, got_d) = evaluate::<f32>(name);
        for k in 0..POINTS.len() {
            // f32 rounds at 6e-8 relative per op; a few ops stay within
            // 1e-6 relative. Where O(1) terms cancel (see the f64 test), a
            // few f32 ulps of 1: the absolute 5e-7.
            approx::assert_relative_eq!(got_f[k], f[k], max_relative = 1e-6, epsilon = 5e-7);
            approx::assert_relative_eq!(got_d[k], d[k], max_relative = 1e-6, epsilon = 5e-7);
        }
    }
}

#[test]
fn every_new_builtin_has_a_reference() {
    for name in ["gelu", "gelu_tanh", "selu", "hardswish", "snake", "squareplus", "log_sigmoid"] {
        assert!(ACTIVATIONS.iter().any(|(n, _, _)| *n == name), "{name}");
        assert!(tapegrad_nn::BUILTIN_NAMES.contains(&name), "{name}");
    }
}
