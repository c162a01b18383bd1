//! `rain check --params P.npz --grads G.npz` on the fixtures written by
//! scripts/guide_gradients.py: the guide's numpy network, correct and
//! with each classic mistake; and each bad file as one line, status 2.

use super::{rain, scratch, slice, text};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/gradients")).join(name)
}

fn check(params: &str, grads: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = rain()
        .arg("check")
        .arg("--params")
        .arg(fixture(params))
        .arg("--grads")
        .arg(fixture(grads))
        .args(extra)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

#[test]
fn numpy_gradients_are_checked_per_parameter_and_mistakes_named() {
    let (code, out, err) = check("params.npz", "good.npz", &[]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("3 -> 4 -> 4 -> 1, relu hidden, sigmoid output; 65 examples (X, Y from"), "{out}");
    assert!(out.contains("your gradients agree with autodiff") && !out.contains("FAIL"), "{out}");
    assert!(out.contains("ignored (not parameters, gradients or data): dA2, dA1, dA0"), "{out}");
    assert!(err.is_empty(), "{err}");
    for (grads, failing, hint) in [
        ("db_without_mean.npz", "db1, db2, db3", "the 1/m is missing"),
        ("relu_prime_at_zero.npz", "db1, db2", "relu'(0) = 1"),
        ("transposed_dw.npz", "dW2", "dW = dZ A_prev^T / m"),
    ] {
        let (code, out, err) = check("params.npz", grads, &[]);
        assert_eq!(code, Some(1), "{grads}\n{out}\n{err}");
        assert!(
            out.contains(&format!("YOUR GRADIENTS DISAGREE with autodiff: {failing}\n")),
            "{grads}\n{out}"
        );
        assert!(out.contains("FAIL: ") && out.contains(hint), "{grads}\n{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: gradients disagree with autodiff: ") && err.contains(hint), "{err}");
    }
    let (code, out, _) = check("params_f32.npz", "good_f32.npz", &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("1e-6 + 1e-4 x scale"), "float32 tolerance named: {out}");
    // An L2 penalty the numpy cost did not have: the dW fail.
    let (code, out, _) = check("params.npz", "good.npz", &["--l2", "0.7"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("DISAGREE with autodiff: dW1, dW2, dW3\n"), "{out}");
}

#[test]
fn numpy_gradients_without_data_in_the_file_use_the_data_given() {
    // The parameters alone (no X, Y) and rain's own batch: the gradients
    // are not of that batch, and the check says which parameters differ.
    let dir = scratch("npz-data");
    let data = slice(&dir);
    // The fixture without X and Y, copied entry by entry.
    let src = std::fs::read(fixture("params.npz")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(src)).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(dir.join("p.npz")).unwrap());
    for i in 0..archive.len() {
        let entry = archive.by_index_raw(i).unwrap();
        if !entry.name().starts_with('X') && !entry.name().starts_with('Y') {
            w.raw_copy_file(entry).unwrap();
        }
    }
    w.finish().unwrap();
    let o = rain()
        .args(["check", "--params"])
        .arg(dir.join("p.npz"))
        .arg("--grads")
        .arg(fixture("good.npz"))
        .arg("--data")
        .arg(&data)
        .args(["--batch", "32"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(out.contains("32 examples (the first 32 training rows of"), "{out}");
    // Both --data and X, Y in the file: which one is meant is unclear.
    let (code, _, err) = check("params.npz", "good.npz", &["--data", data.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("holds the data (X, Y); give one or the other"), "{err}");
}

#[test]
fn bad_npz_input_is_one_line_and_status_2() {
    let dir = scratch("npz-bad");
    let w = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let text_file = w("text.npz", b"W1,b1\n");
    let good = std::fs::read(fixture("params.npz")).unwrap();
    let cut = w("cut.npz", &good[..good.len() / 2]);
    let p = fixture("params.npz");
    let g = fixture("good.npz");
    let missing = dir.join("missing.npz");
    let cases: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (
            vec!["--params".into(), missing.clone().into(), "--grads".into(), g.clone().into()],
            "missing.npz: cannot read it",
        ),
        (
            vec!["--params".into(), p.clone().into(), "--grads".into(), text_file.into()],
            "text.npz: not a .npz file",
        ),
        (vec!["--params".into(), cut.into(), "--grads".into(), g.clone().into()], "cut.npz: not a .npz file"),
        // The gradients file given as the parameters: no W1 in it.
        (vec!["--params".into(), g.clone().into(), "--grads".into(), g.clone().into()], "no array 'W1'"),
        // The parameters given as the gradients: no dW1.
        (vec!["--params".into(), p.clone().into(), "--grads".into(), p.clone().into()], "no array 'dW1'"),
        (vec!["--params".into(), p.clone().into()], "--grads <FILE>"),
        (
            vec![
                "--params".into(),
                p.clone().into(),
                "--grads".into(),
                g.clone().into(),
                "--layers".into(),
                "8".into(),
            ],
            "cannot be used with",
        ),
        (
            vec![
                "--params".into(),
                p.clone().into(),
                "--grads".into(),
                g.clone().into(),
                "--activation".into(),
                "relux".into(),
            ],
            "relux",
        ),
    ];
    for (args, expected) in cases {
        let before: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        let o = rain().arg("check").args(&args).output().unwrap();
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}\n{out}\n{err}");
        assert!(err.contains(expected), "{args:?}: expected '{expected}' in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"), "{err}");
        let after: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before, after, "{args:?} wrote files");
    }
}
