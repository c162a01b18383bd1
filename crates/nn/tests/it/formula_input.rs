//! Formulas from outside: hostile or pasted text gives a clear
//! `FormulaError`, never a panic or a stack overflow (issue 21), and a
//! constant formula is that constant everywhere (issue 17, defect 4).
//!
//! Only `parse`, `apply`, `position` and `message` are used, so these tests
//! also run against the parser before the fixes (where they fail).

use tapegrad_nn::Formula;
use tapegrad_tensor::{ndarray::arr1, Tape};

fn err(src: &str) -> tapegrad_nn::FormulaError {
    Formula::parse(src).expect_err("should not parse")
}

#[test]
fn constant_formula_is_the_constant_at_infinities() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[f64::NEG_INFINITY, -1.0, 0.0, 3.0, f64::INFINITY, f64::NAN]));
    let y = Formula::parse("2").unwrap().apply(x);
    assert_eq!(y.value().as_slice().unwrap(), &[2.0; 6]);
    // x stays on the graph (a model's parameters keep a gradient) with
    // gradient exactly 0, infinities included.
    let g = tape.backward(y.sum());
    assert_eq!(g[x].as_slice().unwrap(), &[0.0; 6]);
}

#[test]
fn folded_constant_formula_is_the_constant_at_infinities_in_f32() {
    let tape = Tape::<f32>::new();
    let x = tape.var(arr1(&[f32::NEG_INFINITY, f32::INFINITY]));
    let y = Formula::parse("2 * (1 + 0.5)").unwrap().apply(x);
    assert_eq!(y.value().as_slice().unwrap(), &[3.0, 3.0]);
}

#[test]
fn unicode_whitespace_is_whitespace() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[1.5]));
    // No-break space, em space, ideographic space, tab and newline.
    for src in ["x\u{a0}* 2", "x\u{2003}*\u{3000}2", "\tx *\n2\u{a0}"] {
        let f = Formula::parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        assert_eq!(f.apply(x).item(), 3.0, "{src:?}");
    }
}

#[test]
fn non_ascii_character_is_an_error_at_its_place() {
    // '×' (U+00D7) is two bytes, after "x " (bytes 0 and 1).
    let e = err("x × 2");
    assert_eq!(e.position, 2);
    assert!(e.message.contains('×'), "{}", e.message);
    // After a multi-byte space: "x", U+00A0 (2 bytes), "*", U+00A0, then U+2212.
    let e = err("x\u{a0}*\u{a0}\u{2212}x");
    assert_eq!(e.position, 6);
    assert!(e.message.contains('\u{2212}'), "{}", e.message);
    // A non-ASCII letter inside a name.
    let e = err("x * sigmoïd(x)");
    assert!(e.message.contains("unknown function") || e.message.contains('ï'), "{}", e.message);
    // Every error still displays (the caret line used to slice by bytes).
    for src in ["x × 2", "é", "x\u{a0}\u{a0}$", "\u{a0}"] {
        assert!(err(src).to_string().contains('^'), "{src:?}");
    }
}

#[test]
fn ten_thousand_nested_parentheses_are_an_error() {
    let src = "(".repeat(10_000) + "x" + &")".repeat(10_000);
    let e = err(&src);
    assert!(e.message.contains("longer than") || e.message.contains("deep"), "{}", e.message);
}

#[test]
fn hundred_thousand_leading_minus_signs_are_an_error() {
    let e = err(&("-".repeat(100_000) + "x"));
    assert!(e.message.contains("longer than") || e.message.contains("deep"), "{}", e.message);
}

#[test]
fn a_sum_of_forty_thousand_terms_is_an_error() {
    let src = vec!["x"; 40_000].join(" + ");
    let e = err(&src);
    assert!(e.message.contains("longer than"), "{}", e.message);
}

#[test]
fn nesting_past_the_depth_limit_is_an_error_for_each_kind_of_level() {
    // Short enough for the length limit: only the depth limit can refuse these.
    let deep = [
        "(".repeat(200) + "x" + &")".repeat(200),
        "-".repeat(200) + "x",
        "x^".repeat(200) + "x",
        "exp(".repeat(200) + "x" + &")".repeat(200),
    ];
    for src in &deep {
        let e = err(src);
        assert!(e.message.contains("deep"), "{}: {}", &src[..10], e.message);
    }
}

#[test]
fn deep_and_long_formulas_within_the_limits_parse_and_record() {
    let tape = Tape::<f64>::new();
    let x = tape.var(arr1(&[0.5]));
    // 99 levels of parentheses and one of unary minus: 100, the limit.
    let nested = "-".to_string() + &"(".repeat(99) + "x" + &")".repeat(99);
    assert_eq!(Formula::parse(&nested).unwrap().apply(x).item(), -0.5);
    // A long flat sum stays flat: no recursion in recording it.
    let sum = vec!["x"; 2_000].join("+");
    let y = Formula::parse(&sum).unwrap().apply(x);
    assert_eq!(y.item(), 1000.0);
    assert_eq!(tape.backward(y)[x][0], 2000.0);
}
