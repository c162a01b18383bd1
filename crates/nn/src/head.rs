//! Heads: what the output layer computes, what its labels look like, and
//! which cost trains it. The cost itself is in [`crate::Loss`]; this
//! module checks labels and puts them in the form the cost reads.

use crate::error::NnError;
use serde::{Deserialize, Serialize};
use std::fmt;
use tapegrad_tensor::ndarray::{Array2, ArrayView2};
use tapegrad_tensor::Element;

/// The output layer `L` of a network and its cost. Every head keeps the
/// guide's layout: one column per example.
///
/// | head | output `A[L]` | labels `y` | cost (before L2) |
/// |---|---|---|---|
/// | `Binary` (the guide's) | one unit, `sigmoid(Z[L])` (or the layer's activation) | `(1, m)`, 0 or 1 | mean binary cross-entropy, from the logits for a sigmoid |
/// | `Softmax` | `K >= 2` units, `softmax(Z[L])` over the rows | `(1, m)` class indices `0..K`, or `(K, m)` one-hot | mean categorical cross-entropy `-1/m sum_i sum_k Y[k,i] log_softmax(Z[L])[k,i]`, from the logits |
/// | `Regression` | any number of units, `Z[L]` (identity) | `(n[L], m)` targets | mean squared error over all `n[L] m` elements |
///
/// For `Binary` with a sigmoid and for `Softmax`, the cost's gradient
/// with respect to the logits is `dZ[L] = (A[L] - Y) / m` (the guide's
/// formula, divided by `m` in `dW` and `db`); for `Regression` it is
/// `2 (A[L] - Y) / (n[L] m)`. `check::guide_backward` uses
/// these.
///
/// In model files the head is the architecture's `head` field; files
/// without one (all files of version 1) are `Binary`.
///
/// ```
/// use tapegrad_nn::{Architecture, Head};
/// let a = Architecture::softmax(3, &[8], 4);
/// assert_eq!(a.head, Head::Softmax);
/// assert_eq!(a.sizes(), vec![3, 8, 4]);
/// assert_eq!(Head::default(), Head::Binary);
/// assert_eq!(Head::Regression.to_string(), "regression");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// One output unit and binary cross-entropy: the guide's classifier.
    #[default]
    Binary,
    /// `K >= 2` output units, softmax over them, categorical
    /// cross-entropy.
    Softmax,
    /// Identity outputs and mean squared error.
    Regression,
}

impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Head::Binary => "binary",
            Head::Softmax => "softmax",
            Head::Regression => "regression",
        })
    }
}

impl Head {
    /// The labels `y` for `m` examples and `outputs = n[L]` output units,
    /// checked and put in the form the cost reads: `(1, m)` of 0s and 1s
    /// for `Binary` (soft labels in `[0, 1]` are kept as they are), `(K,
    /// m)` one-hot for `Softmax` (from class indices `(1, m)` or one-hot
    /// `(K, m)`), `(n[L], m)` for `Regression`.
    ///
    /// # Errors
    /// [`NnError::DataShape`] for labels of another shape, and
    /// [`NnError::Labels`] naming the first bad value: a class index that
    /// is not a whole number in `0..K`, a one-hot column that is not
    /// exactly one 1 among 0s, a binary label outside `[0, 1]`, a
    /// non-finite target.
    ///
    /// ```
    /// use tapegrad_nn::Head;
    /// use tapegrad_tensor::ndarray::array;
    /// let y = Head::Softmax.targets(array![[2.0, 0.0]].view(), 3, 2).unwrap();
    /// assert_eq!(y, array![[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]]);
    /// let e = Head::Softmax.targets(array![[3.0, 0.0]].view(), 3, 2).unwrap_err();
    /// assert_eq!(e.to_string(), "bad label in column 0, row 0: 3; a class index is a whole number in 0..3");
    /// ```
    pub fn targets<T: Element>(
        self,
        y: ArrayView2<'_, T>,
        outputs: usize,
        m: usize,
    ) -> Result<Array2<T>, NnError> {
        let shape_error = |expected: String| {
            NnError::DataShape(format!("labels of shape {:?} for {m} examples; expected {expected}", y.dim()))
        };
        let bad = |col: usize, row: usize, value: T, why: &str| NnError::Labels {
            example: col,
            row,
            value: value.as_f64(),
            reason: why.to_string(),
        };
        match self {
            Head::Binary => {
                if y.dim() != (1, m) {
                    return Err(shape_error(format!("(1, {m})")));
                }
                if let Some((col, &v)) =
                    y.iter().enumerate().find(|(_, v)| !(**v >= T::zero() && **v <= T::one()))
                {
                    return Err(bad(col, 0, v, "a binary label is 0 or 1 (or a probability between)"));
                }
                Ok(y.to_owned())
            }
            Head::Softmax => {
                let k = outputs;
                if y.dim() == (1, m) && k > 1 {
                    let mut out = Array2::zeros((k, m));
                    for (col, &v) in y.iter().enumerate() {
                        let c = v.as_f64();
                        if !(c >= 0.0 && c < k as f64 && c.fract() == 0.0) {
                            return Err(bad(
                                col,
                                0,
                                v,
                                &format!("a class index is a whole number in 0..{k}"),
                            ));
                        }
                        out[[c as usize, col]] = T::one();
                    }
                    Ok(out)
                } else if y.dim() == (k, m) {
                    for (col, column) in y.columns().into_iter().enumerate() {
                        let mut ones = 0;
                        for (row, &v) in column.iter().enumerate() {
                            if v == T::one() {
                                ones += 1;
                            } else if v != T::zero() {
                                return Err(bad(col, row, v, "a one-hot label holds only 0s and 1s"));
                            }
                        }
                        if ones != 1 {
                            return Err(NnError::Labels {
                                example: col,
                                row: 0,
                                value: ones as f64,
                                reason: "a one-hot column holds exactly one 1 (this many)".into(),
                            });
                        }
                    }
                    Ok(y.to_owned())
                } else {
                    Err(shape_error(format!("class indices (1, {m}) or one-hot ({k}, {m})")))
                }
            }
            Head::Regression => {
                if y.dim() != (outputs, m) {
                    return Err(shape_error(format!("({outputs}, {m})")));
                }
                for ((row, col), &v) in y.indexed_iter() {
                    if !v.is_finite() {
                        return Err(bad(col, row, v, "a regression target is a finite number"));
                    }
                }
                Ok(y.to_owned())
            }
        }
    }
}

/// The one-hot matrix `(K, m)` of class indices: column `i` has its 1 in
/// row `classes[i]`.
///
/// # Panics
/// When an index is not below `k`.
///
/// ```
/// use tapegrad_tensor::ndarray::array;
/// assert_eq!(tapegrad_nn::one_hot::<f64>(&[1, 0, 1], 2), array![[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]);
/// ```
#[track_caller]
pub fn one_hot<T: Element>(classes: &[usize], k: usize) -> Array2<T> {
    let mut out = Array2::zeros((k, classes.len()));
    for (i, &c) in classes.iter().enumerate() {
        assert!(c < k, "one_hot: class {c} of example {i} is not below {k}");
        out[[c, i]] = T::one();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tapegrad_tensor::ndarray::array;

    #[test]
    fn indices_and_one_hot_give_the_same_targets() {
        let from_indices = Head::Softmax.targets(array![[1.0, 2.0, 0.0, 1.0]].view(), 3, 4).unwrap();
        let one = one_hot::<f64>(&[1, 2, 0, 1], 3);
        assert_eq!(from_indices, one);
        assert_eq!(Head::Softmax.targets(one.view(), 3, 4).unwrap(), one);
    }

    #[test]
    fn bad_labels_name_the_example_and_the_value() {
        let cases: [(Head, Array2<f64>, usize, &str); 7] = [
            (Head::Softmax, array![[0.0, 1.5]], 3, "column 1, row 0: 1.5"),
            (Head::Softmax, array![[0.0, -1.0]], 3, "whole number in 0..3"),
            (Head::Softmax, array![[1.0, 0.0], [0.0, 0.0]], 2, "exactly one 1"),
            (Head::Softmax, array![[1.0, 0.5], [0.0, 0.5]], 2, "only 0s and 1s"),
            (Head::Softmax, array![[0.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], 3, "one-hot (3, 2)"),
            (Head::Binary, array![[0.0, 2.0]], 1, "a binary label is 0 or 1"),
            (Head::Regression, array![[0.0, f64::NAN]], 1, "finite"),
        ];
        for (head, y, k, want) in cases {
            let e = head.targets(y.view(), k, 2).unwrap_err();
            assert!(e.to_string().contains(want), "{head}: {e}");
        }
    }
}
