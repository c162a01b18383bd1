//! Gradients from another implementation: the fixtures written by
//! scripts/guide_gradients.py (the guide's numpy network, correct and with
//! each classic mistake), planted NaN, and every way the files can be bad.

use ndarray_npy::WriteNpyExt;
use std::io::Write;
use std::path::{Path, PathBuf};
use tapegrad_nn::check::ExternalGradients;
use tapegrad_nn::io::read_npz;
use tapegrad_nn::Loss;
use tapegrad_tensor::ndarray::{Array1, Array2, ArrayD};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gradients").join(name)
}

fn check(params: &str, grads: &str) -> tapegrad_nn::check::ExternalReport {
    let given = ExternalGradients::from_npz(&fixture(params), &fixture(grads)).unwrap();
    given.check("relu", None, &Loss::default()).unwrap()
}

#[test]
fn the_correct_numpy_gradients_pass_and_each_mistake_fails_where_it_is() {
    let good = check("params.npz", "good.npz");
    assert!(good.passed(), "{good}");
    assert_eq!(good.network, "3 -> 4 -> 4 -> 1, relu hidden, sigmoid output");
    assert_eq!(good.examples, 65);
    // numpy and the tape sum in other orders: a few ulps, far below the
    // tolerance (1e-8 relative).
    assert!(good.rows.iter().all(|r| r.vs_autodiff.max_rel_diff < 1e-14), "{good}");
    // The example at zero puts pre-activations on relu's kink: finite
    // differences disagree with autodiff on the biases before it, and the
    // report says why instead of blaming the user's gradients.
    assert!(good.kinks > 0);
    assert_eq!(good.witness_disagrees(), ["db1", "db2"]);
    assert!(good.to_string().contains("kink"), "{good}");

    for (grads, failing, hint) in [
        ("db_without_mean.npz", vec!["db1", "db2", "db3"], "the 1/m is missing"),
        ("relu_prime_at_zero.npz", vec!["db1", "db2"], "relu'(0) = 1"),
        ("transposed_dw.npz", vec!["dW2"], "transpose"),
    ] {
        let r = check("params.npz", grads);
        assert!(!r.passed(), "{grads}\n{r}");
        assert_eq!(r.failures(), failing, "{grads}\n{r}");
        for row in r.rows.iter().filter(|row| !row.vs_autodiff.passed) {
            assert!(row.hint.as_deref().is_some_and(|h| h.contains(hint)), "{grads}\n{r}");
            // By how much: far beyond any rounding.
            assert!(row.vs_autodiff.max_rel_diff > 1e-3, "{grads}\n{r}");
        }
        assert!(r.to_string().contains("FAIL"), "{r}");
    }
}

#[test]
fn float32_gradients_are_held_to_float32_rounding() {
    let r = check("params_f32.npz", "good_f32.npz");
    assert_eq!(r.tolerance, ExternalGradients::F32_TOLERANCE);
    assert!(r.passed(), "{r}");
    // They are float32 results: beyond the float64 tolerance, which would
    // call them wrong.
    let worst = r.rows.iter().map(|row| row.vs_autodiff.max_rel_diff).fold(0.0, f64::max);
    assert!(worst > ExternalGradients::F64_TOLERANCE.rel, "{r}");
}

/// Writes `arrays` as an uncompressed .npz (what np.savez writes), each
/// as `name.npy`, or as `name` when it starts with `=`.
fn npz(path: &Path, arrays: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in arrays {
        let entry = name.strip_prefix('=').map_or(format!("{name}.npy"), str::to_string);
        zip.start_file(entry, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

fn npy<A: WriteNpyExt>(a: &A) -> Vec<u8> {
    let mut out = Vec::new();
    a.write_npy(&mut out).unwrap();
    out
}

/// The fixture's arrays as .npy bytes, in the file's order.
fn arrays_of(name: &str) -> Vec<(String, Vec<u8>)> {
    read_npz(&fixture(name))
        .unwrap()
        .into_iter()
        .map(|(k, a)| {
            let bytes = match a.dtype {
                "float64" => npy(&a.values),
                "float32" => npy(&a.values.mapv(|v| v as f32)),
                other => panic!("{other}"),
            };
            (k, bytes)
        })
        .collect()
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-external-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The error of checking (params with `edit_p`, grads with `edit_g`).
fn error_with(
    edit_p: impl Fn(&mut Vec<(String, Vec<u8>)>),
    edit_g: impl Fn(&mut Vec<(String, Vec<u8>)>),
) -> String {
    let dir = scratch();
    let id = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_alphanumeric(), "");
    let (p, g) = (dir.join(format!("p{id}.npz")), dir.join(format!("g{id}.npz")));
    let (mut pa, mut ga) = (arrays_of("params.npz"), arrays_of("good.npz"));
    edit_p(&mut pa);
    edit_g(&mut ga);
    let as_refs =
        |v: &Vec<(String, Vec<u8>)>| v.iter().map(|(k, b)| (k.clone(), b.clone())).collect::<Vec<_>>();
    let write = |path: &Path, v: Vec<(String, Vec<u8>)>| {
        let refs: Vec<(&str, Vec<u8>)> = v.iter().map(|(k, b)| (k.as_str(), b.clone())).collect();
        npz(path, &refs);
    };
    write(&p, as_refs(&pa));
    write(&g, as_refs(&ga));
    let result = ExternalGradients::from_npz(&p, &g).and_then(|e| e.check("relu", None, &Loss::default()));
    result.expect_err("a bad file must be an error").to_string()
}

fn set(v: &mut [(String, Vec<u8>)], key: &str, bytes: Vec<u8>) {
    v.iter_mut().find(|(k, _)| k == key).unwrap().1 = bytes;
}

fn remove(v: &mut Vec<(String, Vec<u8>)>, key: &str) {
    v.retain(|(k, _)| k != key);
}

#[test]
fn each_bad_array_is_one_error_naming_the_file_and_the_array() {
    let none = |_: &mut Vec<(String, Vec<u8>)>| {};
    let cases: Vec<(&str, String)> = vec![
        ("no array 'W2'", error_with(|p| remove(p, "W2"), none)),
        ("no array 'b3'", error_with(|p| remove(p, "b3"), none)),
        ("no array 'W1'", error_with(|p| p.retain(|(k, _)| k.starts_with('b')), none)),
        ("no array 'dW2'", error_with(none, |g| remove(g, "dW2"))),
        (
            "no array 'W4', but the file has W5",
            error_with(|p| p.push(("W5".into(), npy(&Array2::<f64>::zeros((1, 1))))), none),
        ),
        (
            "b1 has 1 dimension (shape [4]); the guide's arrays are 2-D (b of shape (n, 1)",
            error_with(|p| set(p, "b1", npy(&Array1::<f64>::zeros(4))), none),
        ),
        ("b2 has shape [3, 1]", error_with(|p| set(p, "b2", npy(&Array2::<f64>::zeros((3, 1)))), none)),
        (
            "W2 is 4x5, but W1 gives 4 units",
            error_with(|p| set(p, "W2", npy(&Array2::<f64>::zeros((4, 5)))), none),
        ),
        (
            "dW1 has shape (3, 4), W1 (4, 3): transposed?",
            error_with(none, |g| set(g, "dW1", npy(&Array2::<f64>::zeros((3, 4))))),
        ),
        (
            "dW3 has shape (1, 3), W3 (1, 4)",
            error_with(none, |g| set(g, "dW3", npy(&Array2::<f64>::zeros((1, 3))))),
        ),
        ("W1 has dtype int64", error_with(|p| set(p, "W1", npy(&Array2::<i64>::zeros((4, 3)))), none)),
        ("db1 has dtype bool", error_with(none, |g| set(g, "db1", npy(&Array2::from_elem((4, 1), true))))),
        (
            "W1 has 3 dimensions",
            error_with(|p| set(p, "W1", npy(&ArrayD::<f64>::zeros(vec![4, 3, 1]))), none),
        ),
        ("has X but no Y", error_with(|p| remove(p, "Y"), none)),
        ("has Y but no X", error_with(|p| remove(p, "X"), none)),
        (
            "W1 takes 3 inputs, X has 2 features",
            error_with(|p| set(p, "X", npy(&Array2::<f64>::zeros((2, 65)))), none),
        ),
        (
            "Y has 64 examples (columns), X 65",
            error_with(|p| set(p, "Y", npy(&Array2::<f64>::zeros((1, 64)))), none),
        ),
        ("Y: ", error_with(|p| set(p, "Y", npy(&Array2::<f64>::from_elem((1, 65), 2.0))), none)),
        (
            "two arrays are named 'W1'",
            error_with(|p| p.push(("=W1".into(), npy(&Array2::<f64>::zeros((4, 3))))), none),
        ),
        ("array 'W1': not a .npy array", error_with(|p| set(p, "W1", b"W1 = [[1, 2]]".to_vec()), none)),
        (
            "but 24 bytes follow (truncated or corrupt)",
            error_with(
                |p| {
                    let mut b = npy(&Array2::<f64>::zeros((4, 3)));
                    b.truncate(b.len() - 72);
                    set(p, "W1", b)
                },
                none,
            ),
        ),
        ("is not a float, integer or bool type", error_with(|p| set(p, "W1", complex_npy()), none)),
        // A header that claims 2^40 elements and holds none: an error
        // before anything is allocated for them.
        ("gives shape [1099511627776]", error_with(|p| set(p, "W1", huge_header_npy()), none)),
    ];
    for (expected, message) in cases {
        assert!(message.contains(expected), "expected '{expected}' in: {message}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains(".npz") || message.starts_with("Y"), "names the file: {message}");
    }
}

/// A .npy of dtype complex128: a valid file of a dtype the check refuses.
fn complex_npy() -> Vec<u8> {
    npy_with_header("{'descr': '<c16', 'fortran_order': False, 'shape': (4, 3), }", 4 * 3 * 16)
}

fn huge_header_npy() -> Vec<u8> {
    npy_with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }", 0)
}

/// A version-1.0 .npy with `dict` as its header and `data` zero bytes.
fn npy_with_header(dict: &str, data: usize) -> Vec<u8> {
    let mut header = dict.to_string();
    // Magic (6) + version (2) + length (2) + header, padded to 64 with a newline.
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data));
    out
}

#[test]
fn files_that_are_not_npz_archives_are_errors() {
    let dir = scratch();
    let missing = dir.join("missing.npz");
    let e = ExternalGradients::from_npz(&missing, &fixture("good.npz")).unwrap_err().to_string();
    assert!(e.contains("missing.npz: cannot read it"), "{e}");
    let text = dir.join("text.npz");
    std::fs::write(&text, "W1,b1\n1,2\n").unwrap();
    let e = ExternalGradients::from_npz(&fixture("params.npz"), &text).unwrap_err().to_string();
    assert!(e.contains("text.npz: not a .npz file"), "{e}");
    // The fixture cut short: the archive's directory is gone.
    let cut = dir.join("cut.npz");
    let bytes = std::fs::read(fixture("params.npz")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = ExternalGradients::from_npz(&cut, &fixture("good.npz")).unwrap_err().to_string();
    assert!(e.contains("cut.npz: not a .npz file"), "{e}");
    // One byte of an array's data flipped: the zip checksum fails.
    let flipped = dir.join("flipped.npz");
    let mut bytes = std::fs::read(fixture("params.npz")).unwrap();
    bytes[200] ^= 0x55;
    std::fs::write(&flipped, &bytes).unwrap();
    let e = ExternalGradients::from_npz(&flipped, &fixture("good.npz")).unwrap_err().to_string();
    assert!(e.contains("flipped.npz") && e.contains("corrupt"), "{e}");
}

#[test]
fn a_nan_in_the_given_gradients_fails_and_reads_nan() {
    let dir = scratch();
    let g = dir.join("nan.npz");
    let mut ga = arrays_of("good.npz");
    let mut dw2: Array2<f64> =
        read_npz(&fixture("good.npz")).unwrap()["dW2"].values.clone().into_dimensionality().unwrap();
    dw2[[1, 2]] = f64::NAN;
    set(&mut ga, "dW2", npy(&dw2));
    let refs: Vec<(&str, Vec<u8>)> = ga.iter().map(|(k, b)| (k.as_str(), b.clone())).collect();
    npz(&g, &refs);
    let r = ExternalGradients::from_npz(&fixture("params.npz"), &g)
        .unwrap()
        .check("relu", None, &Loss::default())
        .unwrap();
    assert_eq!(r.failures(), ["dW2"], "{r}");
    assert!(r.rows[2].vs_autodiff.max_rel_diff.is_nan(), "{r}");
    assert!(r.to_string().contains("NaN"), "{r}");
}

#[test]
fn data_given_apart_replaces_the_files_and_must_fit() {
    let given = ExternalGradients::from_npz(&fixture("params.npz"), &fixture("good.npz")).unwrap();
    let (x, y) = given.data().unwrap();
    let (x, y) = (x.to_owned(), y.to_owned());
    // The same data given apart: the same verdict.
    assert!(given.check("relu", Some((x.view(), y.view())), &Loss::default()).unwrap().passed());
    // Other examples: the gradients were not computed on them.
    let (x2, y2) = (
        x.slice(tapegrad_tensor::ndarray::s![.., ..32]).to_owned(),
        y.slice(tapegrad_tensor::ndarray::s![.., ..32]).to_owned(),
    );
    let r = given.check("relu", Some((x2.view(), y2.view())), &Loss::default()).unwrap();
    assert!(!r.passed(), "{r}");
    // Another hidden activation: not the network the gradients are of.
    let r = given.check("tanh", None, &Loss::default()).unwrap();
    assert!(!r.passed(), "{r}");
    // An L2 penalty the numpy cost did not have: dW fails, db does not.
    let r = given.check("relu", None, &Loss::new(0.7, 1.0).unwrap()).unwrap();
    assert_eq!(r.failures(), ["dW1", "dW2", "dW3"], "{r}");
    let e = given.check("relux", None, &Loss::default()).unwrap_err().to_string();
    assert!(e.contains("relux"), "{e}");
}
