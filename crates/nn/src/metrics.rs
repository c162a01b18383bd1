//! Classification metrics for imbalanced binary tasks (the confusion
//! counts and what follows from them, ROC-AUC, average precision, and the
//! threshold with the best F1) and for multi-class ones (the confusion
//! matrix, accuracy, per-class precision, recall and F1, macro-F1).

use serde::Serialize;

/// Counts of a binary confusion matrix.
///
/// ```
/// use tapegrad_nn::metrics::Confusion;
/// let c = Confusion::from_labels(&[true, true, false, false], &[true, false, true, false]);
/// assert_eq!((c.tp, c.fn_, c.fp, c.tn), (1, 1, 1, 1));
/// assert_eq!(c.accuracy(), 0.5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Confusion {
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives (`"fn"` when serialised).
    #[serde(rename = "fn")]
    pub fn_: usize,
}

impl Confusion {
    /// Counts from true labels and predicted labels.
    ///
    /// # Panics
    /// When the lengths differ.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::Confusion::from_labels(&[true], &[true]);
    /// assert_eq!(c.tp, 1);
    /// ```
    #[track_caller]
    pub fn from_labels(truth: &[bool], predicted: &[bool]) -> Self {
        assert_eq!(
            truth.len(),
            predicted.len(),
            "confusion: {} labels and {} predictions",
            truth.len(),
            predicted.len()
        );
        let mut c = Confusion::default();
        for (&t, &p) in truth.iter().zip(predicted) {
            match (t, p) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (false, false) => c.tn += 1,
                (true, false) => c.fn_ += 1,
            }
        }
        c
    }

    /// `(tp + tn) / n` (0 for no examples).
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::metrics::Confusion { tp: 1, tn: 2, fp: 1, fn_: 0 }.accuracy(), 0.75);
    /// ```
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }

    /// `tp / (tp + fp)`; 0 when nothing is predicted positive (sklearn's
    /// `zero_division=0`).
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::metrics::Confusion { tp: 0, tn: 5, fp: 0, fn_: 2 }.precision(), 0.0);
    /// ```
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// `tp / (tp + fn)`; 0 when there are no positives.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::metrics::Confusion { tp: 1, tn: 0, fp: 0, fn_: 3 }.recall(), 0.25);
    /// ```
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// The harmonic mean of precision and recall, `2 tp / (2 tp + fp + fn)`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::metrics::Confusion { tp: 1, tn: 0, fp: 1, fn_: 0 }.f1(), 2.0 / 3.0);
    /// ```
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Example indices sorted by descending score, with NaN scores last.
fn by_score(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// The points `(threshold, tp, fp)` at each distinct score, descending:
/// everything with a score >= threshold is predicted positive.
fn operating_points(labels: &[bool], scores: &[f64]) -> Vec<(f64, usize, usize)> {
    let idx = by_score(scores);
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1;
        } else {
            fp += 1;
        }
        let last_of_tie = k + 1 == idx.len() || scores[idx[k + 1]] != scores[i];
        if last_of_tie {
            out.push((scores[i], tp, fp));
        }
    }
    out
}

/// The area under the ROC curve: the probability that a random positive
/// scores above a random negative, ties counted half (Mann-Whitney).
/// `None` when either class is absent.
///
/// # Panics
/// When the lengths differ.
///
/// ```
/// use tapegrad_nn::metrics::roc_auc;
/// assert_eq!(roc_auc(&[false, true, false, true], &[0.1, 0.9, 0.4, 0.4]), Some(0.875));
/// assert_eq!(roc_auc(&[true, true], &[0.1, 0.9]), None);
/// ```
#[track_caller]
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len(), "roc_auc: lengths differ");
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Area under the ROC polyline through the tie groups (trapezoids).
    let (mut area, mut prev_tp, mut prev_fp) = (0.0, 0usize, 0usize);
    for (_, tp, fp) in operating_points(labels, scores) {
        area += (fp - prev_fp) as f64 * (tp + prev_tp) as f64 / 2.0;
        prev_tp = tp;
        prev_fp = fp;
    }
    Some(area / (pos as f64 * neg as f64))
}

/// Average precision (the area under the precision-recall curve as
/// sklearn's `average_precision_score` computes it):
/// `sum_n (R_n - R_(n-1)) P_n` over the distinct thresholds. `None` when
/// there are no positives.
///
/// # Panics
/// When the lengths differ.
///
/// ```
/// use tapegrad_nn::metrics::average_precision;
/// // sklearn: average_precision_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.8333...
/// let ap = average_precision(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
/// assert!((ap - 0.8333333333333333).abs() < 1e-15);
/// ```
#[track_caller]
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    assert_eq!(labels.len(), scores.len(), "average_precision: lengths differ");
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (_, tp, fp) in operating_points(labels, scores) {
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

/// The ROC curve as `(false positive rate, true positive rate)` points,
/// from `(0, 0)` to `(1, 1)`. Empty when either class is absent.
///
/// ```
/// let c = tapegrad_nn::metrics::roc_curve(&[false, true], &[0.2, 0.8]);
/// assert_eq!(c, vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
/// ```
pub fn roc_curve(labels: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return Vec::new();
    }
    std::iter::once((0.0, 0.0))
        .chain(
            operating_points(labels, scores)
                .into_iter()
                .map(|(_, tp, fp)| (fp as f64 / neg, tp as f64 / pos)),
        )
        .collect()
}

/// The precision-recall curve as `(recall, precision)` points in order of
/// descending threshold. Empty when there are no positives.
///
/// ```
/// let c = tapegrad_nn::metrics::pr_curve(&[false, true], &[0.2, 0.8]);
/// assert_eq!(c, vec![(1.0, 1.0), (1.0, 0.5)]);
/// ```
pub fn pr_curve(labels: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    if pos == 0.0 {
        return Vec::new();
    }
    operating_points(labels, scores)
        .into_iter()
        .map(|(_, tp, fp)| (tp as f64 / pos, tp as f64 / (tp + fp) as f64))
        .collect()
}

/// The threshold with the highest F1 (predict positive when score >=
/// threshold) and that F1. `None` when there are no positives.
///
/// ```
/// let (t, f1) = tapegrad_nn::metrics::best_f1_threshold(&[false, true, true], &[0.1, 0.3, 0.7]).unwrap();
/// assert_eq!((t, f1), (0.3, 1.0));
/// ```
pub fn best_f1_threshold(labels: &[bool], scores: &[f64]) -> Option<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 {
        return None;
    }
    operating_points(labels, scores)
        .into_iter()
        .map(|(t, tp, fp)| (t, 2.0 * tp as f64 / (2 * tp + fp + (pos - tp)) as f64))
        .fold(None, |best: Option<(f64, f64)>, p| match best {
            Some(b) if b.1 >= p.1 => Some(b),
            _ => Some(p),
        })
}

/// The usual figures for a binary classifier on one data set.
///
/// ```
/// let m = tapegrad_nn::metrics::Metrics::compute(&[false, true, false], &[0.1, 0.8, 0.6], 0.5);
/// assert_eq!(m.confusion.fp, 1);
/// assert_eq!(m.roc_auc, Some(1.0));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// The threshold used for the labels.
    pub threshold: f64,
    /// Counts at that threshold.
    pub confusion: Confusion,
    /// Accuracy at the threshold.
    pub accuracy: f64,
    /// Precision at the threshold.
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// ROC-AUC (threshold-free).
    pub roc_auc: Option<f64>,
    /// Average precision (threshold-free).
    pub average_precision: Option<f64>,
    /// The threshold with the best F1, and that F1 (serialised as
    /// `{"threshold": t, "f1": f}`).
    #[serde(serialize_with = "threshold_and_f1")]
    pub best_f1: Option<(f64, f64)>,
}

fn threshold_and_f1<S: serde::Serializer>(v: &Option<(f64, f64)>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    match v {
        None => s.serialize_none(),
        Some((threshold, f1)) => {
            let mut st = s.serialize_struct("BestF1", 2)?;
            st.serialize_field("threshold", threshold)?;
            st.serialize_field("f1", f1)?;
            st.end()
        }
    }
}

impl Metrics {
    /// All figures for labels and scores, with labels at `threshold`.
    ///
    /// ```
    /// let m = tapegrad_nn::metrics::Metrics::compute(&[true], &[0.4], 0.5);
    /// assert_eq!(m.recall, 0.0);
    /// ```
    pub fn compute(labels: &[bool], scores: &[f64], threshold: f64) -> Self {
        let predicted: Vec<bool> = scores.iter().map(|&s| s >= threshold).collect();
        let c = Confusion::from_labels(labels, &predicted);
        Metrics {
            threshold,
            confusion: c,
            accuracy: c.accuracy(),
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            roc_auc: roc_auc(labels, scores),
            average_precision: average_precision(labels, scores),
            best_f1: best_f1_threshold(labels, scores),
        }
    }
}

/// A `K`-class confusion matrix: `count(t, p)` examples of true class `t`
/// were predicted as class `p` (rows are the truth, columns the
/// predictions, as sklearn's `confusion_matrix`).
///
/// Per-class figures treat class `k` as the positive class against all
/// others ([`ConfusionMatrix::one_vs_rest`]) and share the binary
/// definitions of [`Confusion`], including sklearn's `zero_division=0`: a
/// class never predicted has precision 0, a class that never occurs has
/// recall 0.
///
/// ```
/// use tapegrad_nn::metrics::ConfusionMatrix;
/// let c = ConfusionMatrix::from_labels(&[0, 0, 1, 2, 2], &[0, 1, 1, 2, 0], 3);
/// assert_eq!(c.counts(), &[vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 1]]);
/// assert_eq!(c.accuracy(), 0.6);
/// assert_eq!(c.recall(2), 0.5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Counts from true and predicted class indices in `0..classes`.
    ///
    /// # Panics
    /// When the lengths differ or an index is not below `classes`.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[1], &[0], 2);
    /// assert_eq!(c.count(1, 0), 1);
    /// ```
    #[track_caller]
    pub fn from_labels(truth: &[usize], predicted: &[usize], classes: usize) -> Self {
        assert_eq!(
            truth.len(),
            predicted.len(),
            "confusion matrix: {} labels and {} predictions",
            truth.len(),
            predicted.len()
        );
        let mut counts = vec![vec![0; classes]; classes];
        for (i, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            assert!(
                t < classes && p < classes,
                "confusion matrix: example {i} has class {t} predicted as {p}, not both below {classes}"
            );
            counts[t][p] += 1;
        }
        ConfusionMatrix { counts }
    }

    /// The number of classes `K`.
    ///
    /// ```
    /// assert_eq!(tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[], &[], 4).classes(), 4);
    /// ```
    pub fn classes(&self) -> usize {
        self.counts.len()
    }

    /// The counts, `counts()[t][p]` for true class `t` predicted as `p`.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1], &[1, 1], 2);
    /// assert_eq!(c.counts()[0][1], 1);
    /// ```
    pub fn counts(&self) -> &[Vec<usize>] {
        &self.counts
    }

    /// Examples of true class `truth` predicted as `predicted`.
    ///
    /// # Panics
    /// When a class is not below `K`.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1], &[1, 1], 2);
    /// assert_eq!(c.count(1, 1), 1);
    /// ```
    #[track_caller]
    pub fn count(&self, truth: usize, predicted: usize) -> usize {
        self.counts[truth][predicted]
    }

    /// Examples of true class `k` (its row's sum): sklearn's `support`.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 1], &[1, 1, 0], 2);
    /// assert_eq!(c.support(1), 2);
    /// ```
    #[track_caller]
    pub fn support(&self, k: usize) -> usize {
        self.counts[k].iter().sum()
    }

    /// Class `k` against the rest, as binary counts.
    ///
    /// # Panics
    /// When `k` is not below `K`.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 2], &[1, 1, 1], 3);
    /// let one = c.one_vs_rest(1);
    /// assert_eq!((one.tp, one.fp, one.fn_, one.tn), (1, 2, 0, 0));
    /// ```
    #[track_caller]
    pub fn one_vs_rest(&self, k: usize) -> Confusion {
        let total: usize = self.counts.iter().flatten().sum();
        let tp = self.counts[k][k];
        let fn_ = self.support(k) - tp;
        let fp = self.counts.iter().map(|row| row[k]).sum::<usize>() - tp;
        Confusion { tp, fp, fn_, tn: total - tp - fp - fn_ }
    }

    /// The share of examples on the diagonal (0 for none).
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 2, 2], &[0, 1, 2, 0], 3);
    /// assert_eq!(c.accuracy(), 0.75);
    /// ```
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.counts.iter().flatten().sum();
        ratio((0..self.classes()).map(|k| self.counts[k][k]).sum(), total)
    }

    /// Class `k`'s precision: of the examples predicted `k`, the share
    /// that are `k` (0 when none is predicted `k`).
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 1], &[1, 1, 0], 2);
    /// assert_eq!(c.precision(1), 0.5);
    /// ```
    #[track_caller]
    pub fn precision(&self, k: usize) -> f64 {
        self.one_vs_rest(k).precision()
    }

    /// Class `k`'s recall: of the examples of class `k`, the share
    /// predicted `k` (0 when there are none).
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 1], &[1, 1, 0], 2);
    /// assert_eq!(c.recall(1), 0.5);
    /// ```
    #[track_caller]
    pub fn recall(&self, k: usize) -> f64 {
        self.one_vs_rest(k).recall()
    }

    /// Class `k`'s F1, `2 tp / (2 tp + fp + fn)` (0 when the class is
    /// neither present nor predicted).
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 1, 1], &[1, 1, 0], 2);
    /// assert_eq!(c.f1(1), 0.5);
    /// ```
    #[track_caller]
    pub fn f1(&self, k: usize) -> f64 {
        self.one_vs_rest(k).f1()
    }

    /// The unweighted mean of the `K` per-class F1 scores (sklearn's
    /// `f1_score(average='macro', labels=range(K))`): every class counts
    /// the same however rare, so always predicting the majority class
    /// scores at most `1 / K` of a perfect model.
    ///
    /// ```
    /// let c = tapegrad_nn::metrics::ConfusionMatrix::from_labels(&[0, 0, 0, 1], &[0, 0, 0, 0], 2);
    /// assert_eq!(c.macro_f1(), (6.0 / 7.0 + 0.0) / 2.0);
    /// ```
    pub fn macro_f1(&self) -> f64 {
        if self.classes() == 0 {
            return 0.0;
        }
        (0..self.classes()).map(|k| self.f1(k)).sum::<f64>() / self.classes() as f64
    }
}

/// One class's figures in [`MulticlassMetrics`].
///
/// ```
/// let c = tapegrad_nn::metrics::ClassMetrics { precision: 1.0, recall: 0.5, f1: 2.0 / 3.0, support: 4 };
/// assert_eq!(c.support, 4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// Of the examples predicted this class, the share that are.
    pub precision: f64,
    /// Of the examples of this class, the share predicted so.
    pub recall: f64,
    /// The harmonic mean of the two.
    pub f1: f64,
    /// Examples of this class.
    pub support: usize,
}

/// The usual figures for a multi-class classifier on one data set.
///
/// ```
/// let m = tapegrad_nn::metrics::MulticlassMetrics::compute(&[0, 1, 2, 2], &[0, 1, 2, 1], 3);
/// assert_eq!(m.accuracy, 0.75);
/// assert_eq!(m.per_class[2].recall, 0.5);
/// assert_eq!(m.confusion.count(2, 1), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MulticlassMetrics {
    /// The confusion matrix.
    pub confusion: ConfusionMatrix,
    /// The share of examples predicted right.
    pub accuracy: f64,
    /// Per class `0..K`.
    pub per_class: Vec<ClassMetrics>,
    /// The unweighted mean of the per-class F1 scores.
    pub macro_f1: f64,
}

impl MulticlassMetrics {
    /// All figures for true and predicted class indices in `0..classes`.
    ///
    /// # Panics
    /// When the lengths differ or an index is not below `classes`.
    ///
    /// ```
    /// let m = tapegrad_nn::metrics::MulticlassMetrics::compute(&[0, 1], &[0, 0], 2);
    /// assert_eq!(m.per_class[1].f1, 0.0);
    /// ```
    #[track_caller]
    pub fn compute(truth: &[usize], predicted: &[usize], classes: usize) -> Self {
        let confusion = ConfusionMatrix::from_labels(truth, predicted, classes);
        let per_class = (0..classes)
            .map(|k| ClassMetrics {
                precision: confusion.precision(k),
                recall: confusion.recall(k),
                f1: confusion.f1(k),
                support: confusion.support(k),
            })
            .collect();
        MulticlassMetrics {
            accuracy: confusion.accuracy(),
            macro_f1: confusion.macro_f1(),
            per_class,
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiclass_figures_match_a_hand_count() {
        // truth 0 0 0 0 1 1 2 2, predicted 0 0 0 1 1 2 2 2:
        // rows (truth) [3 1 0], [0 1 1], [0 0 2].
        let m = MulticlassMetrics::compute(&[0, 0, 0, 0, 1, 1, 2, 2], &[0, 0, 0, 1, 1, 2, 2, 2], 3);
        assert_eq!(m.confusion.counts(), &[vec![3, 1, 0], vec![0, 1, 1], vec![0, 0, 2]]);
        // Every figure is a ratio of small counts: exact up to the one
        // rounding of the division, and the mean of three of them.
        let eps = 4.0 * f64::EPSILON;
        approx::assert_abs_diff_eq!(m.accuracy, 6.0 / 8.0, epsilon = eps);
        // class 0: tp 3, fp 0, fn 1; class 1: tp 1, fp 1, fn 1;
        // class 2: tp 2, fp 1, fn 0.
        let want = [(1.0, 0.75, 6.0 / 7.0, 4), (0.5, 0.5, 0.5, 2), (2.0 / 3.0, 1.0, 0.8, 2)];
        for (got, (p, r, f1, n)) in m.per_class.iter().zip(want) {
            approx::assert_abs_diff_eq!(got.precision, p, epsilon = eps);
            approx::assert_abs_diff_eq!(got.recall, r, epsilon = eps);
            approx::assert_abs_diff_eq!(got.f1, f1, epsilon = eps);
            assert_eq!(got.support, n);
        }
        approx::assert_abs_diff_eq!(m.macro_f1, (6.0 / 7.0 + 0.5 + 0.8) / 3.0, epsilon = eps);
    }

    #[test]
    fn absent_and_never_predicted_classes_score_zero_and_count_in_the_mean() {
        // Four classes; class 3 never occurs and is never predicted, class
        // 2 occurs but is never predicted.
        let m = MulticlassMetrics::compute(&[0, 1, 2, 0], &[0, 1, 0, 0], 4);
        assert_eq!(m.per_class[2], ClassMetrics { precision: 0.0, recall: 0.0, f1: 0.0, support: 1 });
        assert_eq!(m.per_class[3], ClassMetrics { precision: 0.0, recall: 0.0, f1: 0.0, support: 0 });
        // class 0: tp 2, fp 1, fn 0 -> F1 4/5; class 1: 1.
        let eps = 4.0 * f64::EPSILON; // a ratio and a mean of four
        approx::assert_abs_diff_eq!(m.macro_f1, (0.8 + 1.0) / 4.0, epsilon = eps);
    }

    #[test]
    fn the_majority_class_baseline_scores_its_share_of_macro_f1() {
        // 90 of class 0, 10 of class 1, 0 of class 2, all predicted 0:
        // F1 of class 0 is 2 * 90 / (180 + 10) = 18/19, the others 0.
        let truth: Vec<usize> = (0..100).map(|i| usize::from(i >= 90)).collect();
        let c = ConfusionMatrix::from_labels(&truth, &[0; 100], 3);
        approx::assert_abs_diff_eq!(c.macro_f1(), 18.0 / 19.0 / 3.0, epsilon = 4.0 * f64::EPSILON);
        approx::assert_abs_diff_eq!(c.accuracy(), 0.9, epsilon = f64::EPSILON);
    }

    #[test]
    fn one_vs_rest_counts_add_up() {
        let c = ConfusionMatrix::from_labels(&[0, 1, 2, 2, 1, 0, 2], &[1, 1, 2, 0, 2, 0, 2], 3);
        for k in 0..3 {
            let b = c.one_vs_rest(k);
            assert_eq!(b.tp + b.fp + b.tn + b.fn_, 7);
            assert_eq!(b.tp + b.fn_, c.support(k));
        }
    }

    // Values counted by hand from the definitions (pairs won for ROC-AUC,
    // recall steps times precision for AP).
    const Y: [bool; 10] = [false, true, true, false, true, false, false, true, false, false];
    const S: [f64; 10] = [0.1, 0.9, 0.35, 0.35, 0.8, 0.2, 0.6, 0.35, 0.05, 0.7];

    #[test]
    fn roc_auc_counts_ties_half() {
        // positives: .9 .35 .8 .35; negatives: .1 .35 .2 .6 .05 .7
        // pairs won: .9 -> 6, .8 -> 6, each .35 -> 3 + 0.5 (tie) = 3.5
        let want = (6.0 + 6.0 + 3.5 + 3.5) / 24.0;
        assert!((roc_auc(&Y, &S).unwrap() - want).abs() < 1e-15);
    }

    #[test]
    fn average_precision_matches_its_definition() {
        // thresholds: .9 (tp1 fp0) .8 (2,0) .7 (2,1) .6 (2,2) .35 (4,3) ...
        // AP = .25*1 + .25*1 + .5*(4/7)
        let want = 0.25 + 0.25 + 0.5 * 4.0 / 7.0;
        assert!((average_precision(&Y, &S).unwrap() - want).abs() < 1e-15);
    }

    #[test]
    fn constant_scores_give_chance_figures() {
        let s = [0.0; 10];
        assert_eq!(roc_auc(&Y, &s), Some(0.5));
        assert!((average_precision(&Y, &s).unwrap() - 0.4).abs() < 1e-15);
    }
}
