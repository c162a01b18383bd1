//! tapegrad's benchmark of the shared workloads (../shared/bench/WORKLOADS.md).
//! Prints one JSON line per figure, in the schema of the reference programs:
//! `{"impl", "workload", "metric", "value", "threads", "note"}`.
//!
//! Usage: `cargo run --release -p tapebench -- [W4 ...]`

use std::time::Instant;
use tapegrad::tensor::{ndarray::arr2, Tape};

fn emit(workload: &str, metric: &str, value: f64, threads: usize, note: &str) {
    println!(
        "{{\"impl\": \"tapegrad\", \"workload\": \"{workload}\", \"metric\": \"{metric}\", \"value\": {value}, \"threads\": {threads}, \"note\": \"{}\"}}",
        note.replace('"', "'")
    );
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// W4: a chain of 10,000 ops on (1, 1) f64 tensors, forward and backward.
fn w4() {
    const REPEATS: usize = 2500;
    let mut tape = Tape::<f64>::new();
    let once = |tape: &mut Tape<f64>| -> (f64, [f64; 4]) {
        tape.clear();
        let x0 = tape.var(arr2(&[[0.5]]));
        let a = tape.var(arr2(&[[1.0]]));
        let b = tape.var(arr2(&[[0.1]]));
        let c = tape.var(arr2(&[[0.1]]));
        let mut x = x0;
        for _ in 0..REPEATS {
            x = ((x * a + b).tanh()) - c;
        }
        let g = tape.backward(x);
        (x.item(), [g[x0][[0, 0]], g[a][[0, 0]], g[b][[0, 0]], g[c][[0, 0]]])
    };
    for _ in 0..3 {
        once(&mut tape);
    }
    let mut times = Vec::new();
    let mut last = (0.0, [0.0; 4]);
    for _ in 0..20 {
        let t = Instant::now();
        last = once(&mut tape);
        times.push(t.elapsed().as_secs_f64());
    }
    let ns = median(&mut times) * 1e9 / (4 * REPEATS) as f64;
    let (y, g) = last;
    emit(
        "W4",
        "ns_per_op",
        (ns * 10.0).round() / 10.0,
        1,
        &format!(
            "f64 (1,1) tensors; median of 20 repeats of 10,000 ops fwd+bwd; y={y:.7}, dy/d(x0,a,b,c)=[{:.6e}, {:.5}, {:.5}, {:.5}]",
            g[0], g[1], g[2], g[3]
        ),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = args.is_empty();
    let want = |w: &str| all || args.iter().any(|a| a == w);
    if want("W4") {
        w4();
    }
}
