//! Model files come from outside: every field of a valid file, set to
//! hostile values (huge, negative, of the wrong type, non-finite, missing,
//! nested), gives a model or a typed error, never a panic; and the errors
//! name what was found.

use serde_json::{json, Value};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tapegrad_nn::{io, Architecture, Init, Model, NnError, Standardization};

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tapegrad-hostile-models-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A valid file as JSON.
fn valid(name: &str) -> Value {
    let model = Model::<f64>::new(&Architecture::guide(3, &[4]), Init::HeNormal, 3).unwrap();
    let s = Standardization {
        features: vec!["a".into(), "b".into(), "c".into()],
        mean: vec![0.0; 3],
        std: vec![1.0; 3],
    };
    let path = dir().join(format!("valid-{name}.json"));
    io::save(&path, &model, Some(&s), json!({"threshold": 0.5})).unwrap();
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every path to a leaf or container of `v`, as JSON pointers.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// Loads `text` as f64 and as f32; a panic is reported as an error string.
fn load(text: &str, name: &str) -> Result<(), String> {
    let path = dir().join(name);
    std::fs::write(&path, text).unwrap();
    for f32_too in [false, true] {
        let r = catch_unwind(AssertUnwindSafe(|| {
            if f32_too {
                io::load::<f32>(&path).map(|_| ())
            } else {
                io::load::<f64>(&path).map(|_| ())
            }
        }));
        match r {
            Err(_) => return Err(format!("panicked on {text}")),
            Ok(Err(e)) if e.to_string().contains('\n') => {
                return Err(format!("a message of several lines: {e}"))
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

#[test]
fn every_field_set_to_a_hostile_value_is_an_error_or_a_model_never_a_panic() {
    let base = valid("sweep");
    let mut paths = Vec::new();
    pointers(&base, String::new(), &mut paths);
    let hostile = [
        json!(4294967296u64),
        json!(18446744073709551615u64),
        json!(1e300),
        json!(-1),
        json!(-1e300),
        json!(0),
        json!("a string"),
        json!(null),
        json!(true),
        json!([]),
        json!([[1.0, 2.0], [3.0]]),
        json!({}),
        json!([4294967296u64, 4294967296u64]),
    ];
    let mut failures = Vec::new();
    let mut cases = 0;
    for p in paths.iter().filter(|p| !p.is_empty()) {
        for h in &hostile {
            let mut v = base.clone();
            *v.pointer_mut(p).unwrap() = h.clone();
            cases += 1;
            if let Err(e) = load(&v.to_string(), "sweep.json") {
                failures.push(format!("{p} = {h}: {e}"));
            }
        }
        // The field missing.
        let mut v = base.clone();
        let (parent, key) = p.rsplit_once('/').unwrap();
        match v.pointer_mut(if parent.is_empty() { "" } else { parent }) {
            Some(Value::Object(m)) => {
                m.remove(key);
            }
            Some(Value::Array(a)) => {
                a.pop();
            }
            _ => {}
        }
        cases += 1;
        if let Err(e) = load(&v.to_string(), "sweep.json") {
            failures.push(format!("{p} missing: {e}"));
        }
    }
    assert!(cases > 300, "{cases} cases");
    assert!(failures.is_empty(), "{} of {cases} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_shape_whose_product_overflows_is_an_error() {
    // Defect 1 of issue 21: 2^32 x 2^32 wraps to 0 and matched no data.
    let mut v = valid("overflow");
    let w1 = v["params"]["W1"].as_object_mut().unwrap();
    w1.insert("shape".into(), json!([4294967296u64, 4294967296u64]));
    w1.insert("data".into(), json!([]));
    let path = dir().join("overflow.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = io::load::<f64>(&path).unwrap_err();
    assert!(matches!(e, NnError::Mismatch { .. }) && e.to_string().contains("W1"), "{e}");
}

#[test]
fn a_bad_formula_in_a_model_file_is_one_line_naming_the_file() {
    let mut v = valid("formula");
    v["architecture"]["layers"][0]["activation"] = json!("x $ 2");
    let path = dir().join("formula.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let e = io::load::<f64>(&path).unwrap_err().to_string();
    assert!(!e.contains('\n') && e.contains("formula.json") && e.contains("'x $ 2'"), "{e}");
}

#[test]
fn a_version_is_reported_as_written() {
    // Defect 7 of issue 21: 999999999999 was shown as 3567587327 and a
    // string as 0.
    for (version, shown) in
        [(json!(999999999999u64), "999999999999"), (json!("1"), "\"1\""), (json!(-3), "-3")]
    {
        let mut v = valid("version");
        v["version"] = version;
        let path = dir().join("version.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let e = io::load::<f64>(&path).unwrap_err();
        assert!(e.to_string().contains(&format!("format version {shown};")), "{e}");
    }
    let mut v = valid("no-version");
    v.as_object_mut().unwrap().remove("version");
    let path = dir().join("no-version.json");
    std::fs::write(&path, v.to_string()).unwrap();
    assert!(io::load::<f64>(&path).unwrap_err().to_string().contains("format version none;"));
}

#[test]
fn an_unknown_dtype_is_an_error() {
    // Defect 8 of issue 21: a dtype that no tapegrad writes was ignored.
    for dtype in ["f16", "float64", ""] {
        let mut v = valid("dtype");
        v["dtype"] = json!(dtype);
        let path = dir().join("dtype.json");
        std::fs::write(&path, v.to_string()).unwrap();
        let e = io::load::<f64>(&path).unwrap_err();
        assert!(
            matches!(e, NnError::Mismatch { .. }) && e.to_string().contains(&format!("'{dtype}'")),
            "{e}"
        );
    }
    let mut v = valid("dtype-f32");
    v["dtype"] = json!("f32");
    let path = dir().join("dtype-f32.json");
    std::fs::write(&path, v.to_string()).unwrap();
    io::load::<f64>(&path).unwrap();
}
