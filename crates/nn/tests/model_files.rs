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
        io::load::<f64>(&write("v2.json", &text.replace("\"version\": 1", "\"version\": 2"))).unwrap_err();
    assert!(matches!(&e, NnError::UnsupportedVersion { found, supported: 1, .. } if found == "2"), "{e}");

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
