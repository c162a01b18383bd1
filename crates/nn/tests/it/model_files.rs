//! Model files: bit-for-bit round trips and one typed error per way a file
//! can be wrong.

use tapegrad_nn::{io, Activation, Architecture, Init, Model, NnError, Standardization};

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tapegrad-model-files-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sample_model() -> Model<f64> {
    let arch = Architecture::guide(3, &[5, 4]).with_hidden_activation("x * sigmoid(1.702 * x)");
    Model::new(&arch, Init::HeNormal, 11).unwrap()
}

fn standardization() -> Standardization {
    Standardization {
        features: vec!["temp".into(), "humid".into(), "pressure".into()],
        mean: vec![55.2, 62.1, 1017.3],
        std: vec![17.1, 19.5, 7.4],
    }
}

#[test]
fn round_trip_is_bit_for_bit_in_f64_and_f32() {
    let d = dir("roundtrip");
    let m = sample_model();
    let path = d.join("m.json");
    io::save(&path, &m, Some(&standardization()), serde_json::json!({"threshold": 0.3})).unwrap();
    let back = io::load::<f64>(&path).unwrap();
    for (k, v) in m.params() {
        let w = &back.model.params()[k];
        assert!(v.iter().zip(w.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "{k}");
    }
    assert_eq!(back.model.architecture(), m.architecture());
    assert_eq!(back.standardization.unwrap(), standardization());
    assert_eq!(back.metadata["threshold"], 0.3);

    let m32 = m.cast::<f32>().unwrap();
    io::save(&path, &m32, None, serde_json::Value::Null).unwrap();
    let back32 = io::load::<f32>(&path).unwrap();
    assert_eq!(back32.model.params(), m32.params());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn each_corrupt_file_gets_its_own_error() {
    let d = dir("corrupt");
    let good = d.join("good.json");
    io::save(&good, &sample_model(), Some(&standardization()), serde_json::Value::Null).unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };

    let e = io::load::<f64>(&d.join("missing.json")).unwrap_err();
    assert!(matches!(e, NnError::Io { .. }), "{e}");

    let e = io::load::<f64>(&write("truncated.json", &text[..text.len() / 2])).unwrap_err();
    assert!(matches!(&e, NnError::Corrupt { detail, .. } if detail.contains("ends early")), "{e}");

    let e = io::load::<f64>(&write("garbage.json", "\u{1}not json")).unwrap_err();
    assert!(matches!(e, NnError::Corrupt { .. }), "{e}");

    let e = io::load::<f64>(&write("other.json", r#"{"hello": 1}"#)).unwrap_err();
    assert!(matches!(e, NnError::WrongFormat { .. }), "{e}");

    let e =
        io::load::<f64>(&write("v3.json", &text.replace("\"version\": 2", "\"version\": 3"))).unwrap_err();
    assert!(matches!(&e, NnError::UnsupportedVersion { found, supported: 2, .. } if found == "3"), "{e}");

    // Architecture says 5 hidden units in layer 1, parameters say otherwise.
    let e = io::load::<f64>(&write("mismatch.json", &text.replacen("\"units\": 5", "\"units\": 6", 1)))
        .unwrap_err();
    assert!(matches!(&e, NnError::Mismatch { detail, .. } if detail.contains("W1")), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["standardization"]["mean"] = serde_json::json!([1.0]);
    let e = io::load::<f64>(&write("std.json", &v.to_string())).unwrap_err();
    assert!(matches!(&e, NnError::Mismatch { detail, .. } if detail.contains("standardisation")), "{e}");

    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["architecture"]["layers"][0]["activation"] = serde_json::json!("x *");
    let e = io::load::<f64>(&write("act.json", &v.to_string())).unwrap_err();
    assert!(matches!(&e, NnError::Mismatch { detail, .. } if detail.contains("'x *' does not parse")), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn closure_models_refuse_to_save_and_leave_no_file() {
    let d = dir("closure");
    let mut m = sample_model();
    m.set_activation(1, Activation::custom("cube", |z| z * z * z));
    let path = d.join("m.json");
    assert!(matches!(io::save(&path, &m, None, serde_json::Value::Null), Err(NnError::Unsaveable(_))));
    assert!(std::fs::read_dir(&d).unwrap().next().is_none());
    std::fs::remove_dir_all(d).unwrap();
}

/// A model file of version 1, as builds before the heads wrote it: no
/// `head` field, and `gelu` meaning the tanh form. Written by hand in that
/// format (the fields of the version-1 struct), with parameters chosen so
/// that the hidden pre-activations reach |z| > 2, where the two GELUs
/// differ by ~1e-3.
const V1_FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/fixtures/v1-gelu-binary.json");

/// The fixture's network by hand, with `g` as the hidden activation.
fn v1_by_hand(x: [f64; 2], g: fn(f64) -> f64) -> f64 {
    let w1 = [[1.25, -0.5], [-2.0, 0.75], [0.5, 1.5]];
    let b1 = [0.1, -0.2, 0.3];
    let w2 = [0.8, -1.1, 0.6];
    let z2: f64 = (0..3).map(|i| w2[i] * g(w1[i][0] * x[0] + w1[i][1] * x[1] + b1[i])).sum::<f64>() - 0.05;
    1.0 / (1.0 + (-z2).exp())
}

fn gelu_tanh(z: f64) -> f64 {
    0.5 * z * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (z + 0.044715 * z.powi(3))).tanh())
}

#[test]
fn a_version_1_file_loads_as_a_binary_model_with_the_tanh_gelu() {
    let saved = io::load::<f64>(std::path::Path::new(V1_FIXTURE)).unwrap();
    let m = &saved.model;
    assert_eq!(m.head(), tapegrad_nn::Head::Binary);
    assert_eq!(m.architecture().layers[0].activation, "gelu_tanh");
    assert!(m.activations()[1].is_sigmoid());
    assert_eq!(saved.metadata["threshold"], 0.3);
    let xs = [[1.5, -1.0], [-1.2, 0.4], [0.3, 2.0]];
    let x = tapegrad_tensor::ndarray::Array2::from_shape_fn((2, 3), |(r, c)| xs[c][r]);
    let p = m.predict_proba(x.view()).unwrap();
    for (k, x) in xs.iter().enumerate() {
        // The same arithmetic in another order: a few ulps of 1.
        approx::assert_abs_diff_eq!(p[k], v1_by_hand(*x, gelu_tanh), epsilon = 1e-14);
    }
    // And the exact GELU would have given something else: the test can
    // tell the two apart (the difference is ~1e-4 here, far above 1e-14).
    let exact = Model::<f64>::from_params(
        &Architecture::guide(2, &[3]).with_hidden_activation("gelu"),
        m.params().clone(),
    )
    .unwrap();
    let q = exact.predict_proba(x.view()).unwrap();
    assert!((0..3).any(|k| (p[k] - q[k]).abs() > 1e-5), "{p} vs {q}");
}

#[test]
fn a_version_2_file_keeps_gelu_exact_and_records_the_head() {
    let d = dir("v2");
    let path = d.join("m.json");
    let arch = tapegrad_nn::Architecture::softmax(3, &[4], 3).with_hidden_activation("gelu");
    let m = Model::<f64>::new(&arch, Init::HeNormal, 2).unwrap();
    io::save(&path, &m, None, serde_json::Value::Null).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"head\": \"softmax\"") && text.contains("\"version\": 2"), "{text}");
    let back = io::load::<f64>(&path).unwrap();
    assert_eq!(back.model.architecture(), &arch);
    assert_eq!(back.model.architecture().layers[0].activation, "gelu");
    // A version-2 file's "gelu" is not rewritten: gelu_tanh would differ.
    let x = tapegrad_tensor::ndarray::Array2::from_shape_fn((3, 4), |(r, c)| (r as f64 - c as f64) * 0.7);
    assert_eq!(back.model.predict(x.view()).unwrap(), m.predict(x.view()).unwrap());
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn version_0_and_a_bad_head_are_errors() {
    let d = dir("badhead");
    let good = d.join("good.json");
    io::save(
        &good,
        &Model::<f64>::new(&Architecture::softmax(2, &[], 3), Init::HeNormal, 0).unwrap(),
        None,
        serde_json::Value::Null,
    )
    .unwrap();
    let text = std::fs::read_to_string(&good).unwrap();
    let write = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let e =
        io::load::<f64>(&write("v0.json", &text.replace("\"version\": 2", "\"version\": 0"))).unwrap_err();
    assert!(matches!(&e, NnError::UnsupportedVersion { found, .. } if found == "0"), "{e}");
    let e =
        io::load::<f64>(&write("h.json", &text.replace("\"head\": \"softmax\"", "\"head\": \"ordinal\"")))
            .unwrap_err();
    assert!(matches!(&e, NnError::Mismatch { detail, .. } if detail.contains("ordinal")), "{e}");
    // A softmax head whose output layer says sigmoid.
    let e = io::load::<f64>(&write(
        "s.json",
        &text.replace("\"activation\": \"softmax\"", "\"activation\": \"sigmoid\""),
    ))
    .unwrap_err();
    assert!(
        e.to_string().contains("a softmax head has at least 2 units and the activation 'softmax'"),
        "{e}"
    );
    std::fs::remove_dir_all(d).unwrap();
}
