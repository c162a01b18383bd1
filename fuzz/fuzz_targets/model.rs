//! The model-file loader on any bytes, as f64 and as f32: a model or a
//! typed error, never a panic, and never an allocation the file's sizes do
//! not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tapegrad::nn::io;
use tapegrad::tensor::ndarray::Array2;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("tapegrad-fuzz-model-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("model.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(saved) = io::load::<f64>(&path) {
        // A loaded model runs on a batch of its own input width.
        let n = saved.model.architecture().input;
        let _ = saved.model.predict_proba(Array2::<f64>::zeros((n, 2)).view());
    }
    let _ = io::load::<f32>(&path);
});
