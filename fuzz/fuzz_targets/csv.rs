//! The weather CSV loader and its cleaning report on any bytes: a dataset
//! or a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("tapegrad-fuzz-csv-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("data.csv");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(d) = rain::data::load(&rain::task_spec(path)) {
        let _ = format!("{:?}", d.report);
    }
});
