//! `rain check --params`'s reader on any bytes as the parameters file (the
//! gradients are the correct fixture): arrays or a typed error, never a
//! panic, and never an allocation the file's bytes do not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use tapegrad::nn::{check::ExternalGradients, io, Loss};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("tapegrad-fuzz-npz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("params.npz");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let _ = io::read_npz(&path);
    let grads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/gradients/good.npz");
    if let Ok(given) = ExternalGradients::from_npz(&path, &grads) {
        let _ = given.check("relu", None, &Loss::default());
    }
});
