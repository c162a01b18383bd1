//! The formula parser on any text: it returns a formula or an error and
//! never panics, overflows its stack or runs away; a formula that parses
//! records and differentiates on a tape in f64 and f32 without panicking
//! (NaN and infinities are allowed results).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad::nn::Formula;
use tapegrad::tensor::{ndarray::arr1, Element, Tape};

fn run<T: Element>(f: &Formula) {
    let tape = Tape::<T>::new();
    let c = |v: f64| T::cast(v);
    let x = tape.var(arr1(&[c(-2.5), c(0.0), c(0.7), c(1e3), c(f64::INFINITY)]));
    let y = f.apply(x);
    let _ = tape.backward(y.sum());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Formula::parse(text) {
        Ok(f) => {
            run::<f64>(&f);
            run::<f32>(&f);
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.column();
        }
    }
});
