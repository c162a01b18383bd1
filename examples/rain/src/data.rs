//! Loading the weather CSV into the guide's layout: features as rows,
//! examples as columns, with every cleaning step counted.

use crate::error::RainError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::fmt;
use std::path::{Path, PathBuf};
use tapegrad::tensor::ndarray::Array2;

/// Which label values count as positive (rain).
#[derive(Clone, Debug, PartialEq)]
pub enum PositiveRule {
    /// `> v`
    Gt(f64),
    /// `>= v`
    Ge(f64),
    /// `< v`
    Lt(f64),
    /// `<= v`
    Le(f64),
    /// equal to the text
    Eq(String),
    /// contains the text
    Contains(String),
}

impl PositiveRule {
    /// Parses `>v`, `>=v`, `<v`, `<=v`, `=text` or `contains:text`.
    ///
    /// ```
    /// assert_eq!(rain::data::PositiveRule::parse(">0").unwrap(), rain::data::PositiveRule::Gt(0.0));
    /// assert!(rain::data::PositiveRule::parse("~0").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, RainError> {
        let num = |t: &str| {
            t.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or_else(|| {
                RainError::bad(
                    "--positive rule",
                    s,
                    "expected a number after the comparison, e.g. '>0' or '>=0.1'",
                )
            })
        };
        if let Some(t) = s.strip_prefix("contains:") {
            Ok(PositiveRule::Contains(t.to_string()))
        } else if let Some(t) = s.strip_prefix(">=") {
            Ok(PositiveRule::Ge(num(t)?))
        } else if let Some(t) = s.strip_prefix("<=") {
            Ok(PositiveRule::Le(num(t)?))
        } else if let Some(t) = s.strip_prefix('>') {
            Ok(PositiveRule::Gt(num(t)?))
        } else if let Some(t) = s.strip_prefix('<') {
            Ok(PositiveRule::Lt(num(t)?))
        } else if let Some(t) = s.strip_prefix('=') {
            Ok(PositiveRule::Eq(t.to_string()))
        } else {
            Err(RainError::bad("--positive rule", s, "use >v, >=v, <v, <=v, =text or contains:text"))
        }
    }

    fn is_numeric(&self) -> bool {
        !matches!(self, PositiveRule::Eq(_) | PositiveRule::Contains(_))
    }

    /// `Some(label)`, or `Err(())` when a numeric rule meets a non-number.
    fn apply(&self, raw: &str) -> Result<bool, ()> {
        let v = || raw.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or(());
        Ok(match self {
            PositiveRule::Gt(t) => v()? > *t,
            PositiveRule::Ge(t) => v()? >= *t,
            PositiveRule::Lt(t) => v()? < *t,
            PositiveRule::Le(t) => v()? <= *t,
            PositiveRule::Eq(t) => raw == t,
            PositiveRule::Contains(t) => raw.contains(t.as_str()),
        })
    }
}

impl fmt::Display for PositiveRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PositiveRule::Gt(v) => write!(f, "> {v}"),
            PositiveRule::Ge(v) => write!(f, ">= {v}"),
            PositiveRule::Lt(v) => write!(f, "< {v}"),
            PositiveRule::Le(v) => write!(f, "<= {v}"),
            PositiveRule::Eq(t) => write!(f, "= '{t}'"),
            PositiveRule::Contains(t) => write!(f, "contains '{t}'"),
        }
    }
}

/// Classes cut from a numeric label at thresholds: with thresholds
/// `t_1 < ... < t_(K-1)`, a value `v` is in class `k` when
/// `t_k < v <= t_(k+1)` (class 0 is `v <= t_1`, the last `v > t_(K-1)`).
/// For precipitation with thresholds `0, t`: no rain, light, heavy.
///
/// ```
/// let c = rain::data::Classes::parse("0,0.02").unwrap();
/// assert_eq!(c.count(), 3);
/// assert_eq!([0.0, 0.01, 0.02, 0.03].map(|v| c.class_of(v)), [0, 1, 1, 2]);
/// assert_eq!(c.name(1), "light (0, 0.02]");
/// assert!(rain::data::Classes::parse("0.1,0.05").is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    thresholds: Vec<f64>,
}

impl Classes {
    /// Parses thresholds separated by commas: finite numbers, at least 0
    /// (amounts of precipitation), strictly increasing, at least one.
    ///
    /// # Errors
    /// A message naming the bad threshold (for the command line, one
    /// line).
    ///
    /// ```
    /// let e = rain::data::Classes::parse("0,-0.1").unwrap_err();
    /// assert!(e.contains("-0.1 is negative"), "{e}");
    /// ```
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut thresholds: Vec<f64> = Vec::new();
        for part in s.split(',') {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!(
                    "'{s}' has an empty threshold; give numbers separated by commas, e.g. 0,0.02"
                ));
            }
            let t: f64 = p
                .parse()
                .map_err(|_| format!("'{p}' is not a number (thresholds in inches per hour, e.g. 0,0.02)"))?;
            if !t.is_finite() {
                return Err(format!("threshold '{p}' is not a finite number"));
            }
            if t < 0.0 {
                return Err(format!(
                    "threshold {p} is negative; precipitation is at least 0 inches per hour"
                ));
            }
            if let Some(&before) = thresholds.last().filter(|&&before| t <= before) {
                return Err(format!("thresholds must increase strictly, and {p} follows {before}"));
            }
            thresholds.push(t);
        }
        Ok(Classes { thresholds })
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The number of classes `K`, one more than the thresholds.
    pub fn count(&self) -> usize {
        self.thresholds.len() + 1
    }

    /// The class of a value: the number of thresholds below it.
    pub fn class_of(&self, v: f64) -> usize {
        self.thresholds.iter().filter(|&&t| t < v).count()
    }

    /// A short name for class `k`, for CSV headers: `none`, `light` and
    /// `heavy` for the three classes of thresholds `0, t`, else `class0`,
    /// `class1`, ...
    pub fn short_name(&self, k: usize) -> String {
        if self.count() == 3 && self.thresholds[0] == 0.0 {
            ["none", "light", "heavy"][k].to_string()
        } else {
            format!("class{k}")
        }
    }

    /// The name of class `k` with its interval: `no rain (<= 0)`,
    /// `light (0, 0.02]`, `heavy (> 0.02)`.
    pub fn name(&self, k: usize) -> String {
        let t = &self.thresholds;
        let word = match self.short_name(k).as_str() {
            "none" => "no rain".to_string(),
            other => other.to_string(),
        };
        if k == 0 {
            format!("{word} (<= {})", t[0])
        } else if k == t.len() {
            format!("{word} (> {})", t[k - 1])
        } else {
            format!("{word} ({}, {}]", t[k - 1], t[k])
        }
    }

    /// Every class's name, in order.
    pub fn names(&self) -> Vec<String> {
        (0..self.count()).map(|k| self.name(k)).collect()
    }
}

impl fmt::Display for Classes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t: Vec<String> = self.thresholds.iter().map(|t| t.to_string()).collect();
        f.write_str(&t.join(","))
    }
}

/// What the label column becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// Two classes: 1 where the rule holds, else 0.
    Binary(PositiveRule),
    /// `K` classes at thresholds on a numeric label.
    Classes(Classes),
}

impl Target {
    fn is_numeric(&self) -> bool {
        match self {
            Target::Binary(rule) => rule.is_numeric(),
            Target::Classes(_) => true,
        }
    }

    /// The class of a raw label value, or `Err(())` when a numeric target
    /// meets a non-number.
    fn apply(&self, raw: &str) -> Result<usize, ()> {
        match self {
            Target::Binary(rule) => rule.apply(raw).map(usize::from),
            Target::Classes(c) => {
                let v = raw.trim().parse::<f64>().ok().filter(|v| v.is_finite()).ok_or(())?;
                Ok(c.class_of(v))
            }
        }
    }

    /// The number of classes.
    pub fn count(&self) -> usize {
        match self {
            Target::Binary(_) => 2,
            Target::Classes(c) => c.count(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Binary(rule) => write!(f, "{rule}"),
            Target::Classes(c) => write!(f, "classes at {c}"),
        }
    }
}

/// How rows are split into train and test.
#[derive(Clone, Debug, PartialEq)]
pub enum Split {
    /// Train where `column` is in `lo..=hi`; test where it is in `test`
    /// when given (the other rows are left out: a validation split), else
    /// everywhere else.
    Range {
        /// A numeric column.
        column: String,
        /// Lowest training value.
        lo: f64,
        /// Highest training value.
        hi: f64,
        /// The test rows' range, when not every other row.
        test: Option<(f64, f64)>,
    },
    /// A seeded random share of the rows for test.
    Fraction {
        /// Share of rows in the test split.
        fraction: f64,
        /// Seed of the draw.
        seed: u64,
    },
}

impl Split {
    /// Parses `COLUMN:LO-HI` (test on every other row) or
    /// `COLUMN:LO-HI:TLO-THI` (test where the column is in TLO-THI; rows
    /// in neither range are left out).
    ///
    /// ```
    /// use rain::data::Split;
    /// assert!(Split::parse_range("month:1-10").is_ok());
    /// let v = Split::parse_range("month:1-8:9-10").unwrap();
    /// assert_eq!(v, Split::Range { column: "month".into(), lo: 1.0, hi: 8.0, test: Some((9.0, 10.0)) });
    /// assert!(Split::parse_range("month").is_err());
    /// assert!(Split::parse_range("month:1-8:8-10").is_err()); // the ranges overlap
    /// ```
    pub fn parse_range(s: &str) -> Result<Self, RainError> {
        let err = || {
            RainError::bad(
                "--split",
                s,
                "expected COLUMN:LO-HI or COLUMN:LO-HI:TLO-THI, e.g. month:1-10 or month:1-8:9-10",
            )
        };
        let mut parts = s.split(':');
        let column = parts.next().filter(|c| !c.is_empty()).ok_or_else(err)?;
        let range = |p: Option<&str>| -> Result<(f64, f64), RainError> {
            let (lo, hi) = p.and_then(|r| r.split_once('-')).ok_or_else(err)?;
            let lo: f64 = lo.trim().parse().map_err(|_| err())?;
            let hi: f64 = hi.trim().parse().map_err(|_| err())?;
            if !lo.is_finite() || !hi.is_finite() || lo > hi {
                return Err(err());
            }
            Ok((lo, hi))
        };
        let (lo, hi) = range(parts.next())?;
        let test = match parts.next() {
            None => None,
            Some(t) => Some(range(Some(t))?),
        };
        if parts.next().is_some() {
            return Err(err());
        }
        if let Some((tlo, thi)) = test
            && tlo <= hi
            && thi >= lo
        {
            return Err(RainError::bad("--split", s, "the training and test ranges overlap"));
        }
        Ok(Split::Range { column: column.to_string(), lo, hi, test })
    }

    /// A random split with `fraction` of the rows for test.
    ///
    /// ```
    /// assert!(rain::data::Split::fraction(1.5, 0).is_err());
    /// ```
    pub fn fraction(fraction: f64, seed: u64) -> Result<Self, RainError> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(RainError::bad("--test-fraction", fraction, "must be between 0 and 1"));
        }
        Ok(Split::Fraction { fraction, seed })
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Split::Range { column, lo, hi, test: None } => write!(f, "{column} {lo}-{hi}"),
            Split::Range { column, lo, hi, test: Some((tlo, thi)) } => {
                write!(f, "{column} {lo}-{hi}, test {tlo}-{thi}")
            }
            Split::Fraction { fraction, seed } => {
                write!(f, "random {:.0}% test, seed {seed}", fraction * 100.0)
            }
        }
    }
}

/// Which side of the split a row is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Train,
    Test,
    /// Outside both ranges of a validation split.
    Out,
}

/// What to do with rows that lack a feature value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Drop the row.
    Drop,
    /// Fill with the training rows' mean of that feature.
    Mean,
}

/// The data request.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The CSV file.
    pub path: PathBuf,
    /// Feature columns, in order.
    pub features: Vec<String>,
    /// The label column.
    pub label: String,
    /// What the label becomes: two classes by a rule, or K at thresholds.
    pub target: Target,
    /// Train/test split.
    pub split: Split,
    /// Rows with a missing feature.
    pub missing: Missing,
}

/// What cleaning did, for the user.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// Data rows in the file.
    pub rows_read: usize,
    /// Rows dropped, and the columns whose missing values caused it.
    pub rows_dropped: usize,
    /// Missing values per column.
    pub missing_by_column: Vec<(String, usize)>,
    /// Of the dropped rows whose label is known, how many were positive.
    pub dropped_positive: usize,
    /// Dropped rows whose label is known.
    pub dropped_labelled: usize,
    /// Rows outside both ranges of a validation split (`--split
    /// month:1-8:9-10`), left out.
    pub rows_outside: usize,
    /// Values filled with the training mean (`--missing mean`).
    pub imputed: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Positive training rows.
    pub train_positive: usize,
    /// Test rows.
    pub test_rows: usize,
    /// Positive test rows.
    pub test_positive: usize,
    /// Training rows per class (for a binary target: negative, positive).
    pub train_classes: Vec<usize>,
    /// Test rows per class.
    pub test_classes: Vec<usize>,
}

/// The cleaned data in the guide's layout: features as rows, examples as
/// columns; labels in a (1, m) row: 0 or 1 for a binary target, the class
/// index `0..K` for classes.
pub struct Dataset {
    /// Training features (n_x, m).
    pub train_x: Array2<f64>,
    /// Training labels (1, m).
    pub train_y: Array2<f64>,
    /// Test features.
    pub test_x: Array2<f64>,
    /// Test labels.
    pub test_y: Array2<f64>,
    /// What cleaning did.
    pub report: Report,
}

/// The file's text ([`crate::default_data`] is the built-in copy of the
/// shipped file); an error names a missing, unreadable or non-UTF-8 file.
pub fn read_text(path: &Path) -> Result<String, RainError> {
    if path == crate::default_data() {
        return Ok(SHIPPED_CSV.to_string());
    }
    let bytes = std::fs::read(path).map_err(|source| RainError::Read { path: path.to_path_buf(), source })?;
    String::from_utf8(bytes)
        .map_err(|e| RainError::NotUtf8 { path: path.to_path_buf(), offset: e.utf8_error().valid_up_to() })
}

/// The shipped weather data, inside the binary: `rain` runs wherever it is
/// copied.
static SHIPPED_CSV: &str = include_str!("../data/nyc-weather-2013.csv");

fn is_missing(v: &str) -> bool {
    let t = v.trim();
    t.is_empty() || t == "NA" || t == "NaN" || t == "nan"
}

/// A CSV file as header and records, with a column lookup that names the
/// available columns when one is missing, and the file line of each record
/// for messages.
pub struct Table {
    path: PathBuf,
    /// Column names, unique (unnamed columns aside).
    pub header: Vec<String>,
    /// Data rows.
    pub records: Vec<csv::StringRecord>,
    /// The file line on which each record starts, 1-based.
    lines: Vec<usize>,
}

/// Line numbers of byte offsets in a text, for offsets met in increasing
/// order (a reader's records), counting `\n`, `\r\n` and a lone `\r` as a
/// line break, as the CSV reader does.
struct LineCounter<'a> {
    text: &'a [u8],
    /// Where the count stopped: every break before `at` is counted.
    at: usize,
    /// The line of byte `at`, 1-based.
    line: usize,
}

impl LineCounter<'_> {
    /// The line of the record that the reader places at `byte`.
    ///
    /// The reader skips empty lines before a record but leaves its
    /// position where the skipping began, and with `\r\n` endings just
    /// after the `\r`, so `csv::Position::line` names an earlier line
    /// there (rust-csv issues 208 and 395). The record starts at the first
    /// byte from `byte` on that ends no line; its line is counted here.
    fn line_of(&mut self, byte: u64) -> usize {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).clamp(self.at, self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        let span = &self.text[self.at..start];
        self.line += span
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && span.get(i + 1) != Some(&b'\n')))
            .count();
        self.at = start;
        self.line
    }
}

impl Table {
    /// Reads and parses the file.
    ///
    /// # Errors
    /// A missing, unreadable or non-UTF-8 file; text that is not CSV (a
    /// record whose field count differs from the header's, naming its
    /// line); a header with fewer than two columns, or naming a column
    /// twice ([`RainError::DuplicateColumn`]; columns without a name may
    /// repeat, nothing can ask for them).
    pub fn read(path: &Path) -> Result<Table, RainError> {
        let text = read_text(path)?;
        let not_csv = |detail: String| RainError::NotCsv { path: path.to_path_buf(), detail };
        let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(text.as_bytes());
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| not_csv(e.to_string()))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if header.len() < 2 {
            return Err(not_csv(format!(
                "the header has {} column(s); expected comma-separated names",
                header.len()
            )));
        }
        for (second, name) in header.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
            if let Some(first) = header[..second].iter().position(|h| h == name) {
                return Err(RainError::DuplicateColumn {
                    path: path.to_path_buf(),
                    column: name.clone(),
                    first: first + 1,
                    second: second + 1,
                });
            }
        }
        let mut counter = LineCounter { text: text.as_bytes(), at: 0, line: 1 };
        let mut records = Vec::new();
        let mut lines = Vec::new();
        loop {
            let mut record = csv::StringRecord::new();
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    let byte = record.position().map_or(0, |p| p.byte());
                    lines.push(counter.line_of(byte));
                    records.push(record);
                }
                Err(e) => {
                    return Err(not_csv(match e.kind() {
                        csv::ErrorKind::UnequalLengths { pos: Some(pos), len, .. } => format!(
                            "line {} has {len} fields, the header has {}",
                            counter.line_of(pos.byte()),
                            header.len()
                        ),
                        _ => e.to_string(),
                    }))
                }
            }
        }
        Ok(Table { path: path.to_path_buf(), header, records, lines })
    }

    /// The file line (1-based) on which record `row` (0-based) starts,
    /// blank lines and line breaks inside quoted fields counted.
    ///
    /// # Panics
    /// If `row` is not below the number of records.
    #[track_caller]
    pub fn line(&self, row: usize) -> usize {
        self.lines[row]
    }

    /// The index of a column; the error lists the available ones.
    pub fn column(&self, name: &str) -> Result<usize, RainError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| RainError::MissingColumn {
            path: self.path.clone(),
            column: name.to_string(),
            available: self.header.join(", "),
        })
    }

    /// The number in `row` (0-based record) at `col`, `None` if missing.
    ///
    /// # Errors
    /// [`RainError::NonNumeric`], naming the record's file line.
    pub fn number(&self, row: usize, col: usize) -> Result<Option<f64>, RainError> {
        let raw = self.records[row].get(col).unwrap_or("");
        if is_missing(raw) {
            return Ok(None);
        }
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(RainError::NonNumeric {
                path: self.path.clone(),
                row: self.line(row),
                column: self.header[col].clone(),
                value: raw.to_string(),
            }),
        }
    }

    /// Features as rows, one column per record; `None` for missing values.
    pub fn features(&self, names: &[String]) -> Result<Vec<Vec<Option<f64>>>, RainError> {
        let cols: Vec<usize> = names.iter().map(|n| self.column(n)).collect::<Result<_, _>>()?;
        (0..self.records.len()).map(|r| cols.iter().map(|&c| self.number(r, c)).collect()).collect()
    }
}

/// Loads, cleans and splits the data as `spec` says, counting every step.
///
/// # Errors
/// Before reading the file: no features, a feature named twice
/// ([`RainError::DuplicateFeature`]), or the label among the features
/// ([`RainError::LabelIsFeature`]: the model would be perfect and
/// useless). Then everything [`Table::read`] refuses, a missing column, a
/// value that is not a number (naming its file line), and too few rows or
/// classes left after cleaning.
pub fn load(spec: &Spec) -> Result<Dataset, RainError> {
    if spec.features.is_empty() {
        return Err(RainError::bad("--features", "", "name at least one column"));
    }
    for (second, name) in spec.features.iter().enumerate() {
        if let Some(first) = spec.features[..second].iter().position(|f| f == name) {
            return Err(RainError::DuplicateFeature {
                feature: name.clone(),
                first: first + 1,
                second: second + 1,
            });
        }
    }
    if let Some(k) = spec.features.iter().position(|f| *f == spec.label) {
        return Err(RainError::LabelIsFeature {
            label: spec.label.clone(),
            position: k + 1,
            count: spec.features.len(),
        });
    }
    let table = Table::read(&spec.path)?;
    let label_col = table.column(&spec.label)?;
    let feats = table.features(&spec.features)?;
    let split_col = match &spec.split {
        Split::Range { column, .. } => Some(table.column(column)?),
        Split::Fraction { .. } => None,
    };
    let n = table.records.len();
    let mut report = Report { rows_read: n, ..Default::default() };
    let mut missing_by_column = vec![0usize; spec.features.len() + 2];

    // Labels and split sides; None where missing.
    let mut labels = Vec::with_capacity(n);
    let mut is_train = Vec::with_capacity(n);
    for r in 0..n {
        let raw = table.records[r].get(label_col).unwrap_or("");
        let label = if is_missing(raw) && spec.target.is_numeric() {
            None
        } else {
            Some(spec.target.apply(raw).map_err(|_| RainError::NonNumeric {
                path: spec.path.clone(),
                row: table.line(r),
                column: spec.label.clone(),
                value: raw.to_string(),
            })?)
        };
        labels.push(label);
        is_train.push(match (&spec.split, split_col) {
            (Split::Range { lo, hi, test, .. }, Some(c)) => table.number(r, c)?.map(|v| {
                if v >= *lo && v <= *hi {
                    Side::Train
                } else if test.is_none_or(|(tlo, thi)| v >= tlo && v <= thi) {
                    Side::Test
                } else {
                    Side::Out
                }
            }),
            _ => Some(Side::Train),
        });
    }
    if let Split::Fraction { fraction, seed } = spec.split {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let n_test = ((n as f64) * fraction).round() as usize;
        for &i in &order[..n_test] {
            is_train[i] = Some(Side::Test);
        }
    }

    // Which rows are kept.
    let mut keep = vec![true; n];
    for r in 0..n {
        if is_train[r] == Some(Side::Out) {
            // Outside both ranges: left out before cleaning, so that its
            // missing values are not counted.
            keep[r] = false;
            report.rows_outside += 1;
            continue;
        }
        let mut drop = false;
        for (k, v) in feats[r].iter().enumerate() {
            if v.is_none() {
                missing_by_column[k] += 1;
                drop |= spec.missing == Missing::Drop;
            }
        }
        if labels[r].is_none() {
            missing_by_column[spec.features.len()] += 1;
            drop = true;
        }
        if is_train[r].is_none() {
            missing_by_column[spec.features.len() + 1] += 1;
            drop = true;
        }
        if drop {
            keep[r] = false;
            report.rows_dropped += 1;
            if let Some(l) = labels[r] {
                report.dropped_labelled += 1;
                report.dropped_positive += usize::from(l != 0);
            }
        }
    }
    let mut names: Vec<String> = spec.features.clone();
    names.push(spec.label.clone());
    names.push(match &spec.split {
        Split::Range { column, .. } => column.clone(),
        Split::Fraction { .. } => "split".into(),
    });
    report.missing_by_column = names.into_iter().zip(missing_by_column).filter(|(_, c)| *c > 0).collect();

    // Training means for imputation.
    let nf = spec.features.len();
    let mut means = vec![0.0; nf];
    if spec.missing == Missing::Mean {
        for (k, mean) in means.iter_mut().enumerate() {
            let vals: Vec<f64> = (0..n)
                .filter(|&r| keep[r] && is_train[r] == Some(Side::Train))
                .filter_map(|r| feats[r][k])
                .collect();
            if vals.is_empty() {
                return Err(RainError::NoRows {
                    path: spec.path.clone(),
                    which: "training",
                    why: format!("feature '{}' has no value in any training row", spec.features[k]),
                });
            }
            *mean = vals.iter().sum::<f64>() / vals.len() as f64;
        }
    }

    let build = |train: bool, report: &mut Report| {
        let side = if train { Side::Train } else { Side::Test };
        let rows: Vec<usize> = (0..n).filter(|&r| keep[r] && is_train[r] == Some(side)).collect();
        let mut x = Array2::zeros((nf, rows.len()));
        let mut y = Array2::zeros((1, rows.len()));
        for (j, &r) in rows.iter().enumerate() {
            for k in 0..nf {
                x[[k, j]] = match feats[r][k] {
                    Some(v) => v,
                    None => {
                        report.imputed += 1;
                        means[k]
                    }
                };
            }
            y[[0, j]] = labels[r].unwrap_or(0) as f64;
        }
        (x, y)
    };
    let (train_x, train_y) = build(true, &mut report);
    let (test_x, test_y) = build(false, &mut report);
    report.train_rows = train_x.ncols();
    report.test_rows = test_x.ncols();
    let per_class = |y: &Array2<f64>| {
        let mut counts = vec![0; spec.target.count()];
        for &v in y {
            counts[v as usize] += 1;
        }
        counts
    };
    report.train_classes = per_class(&train_y);
    report.test_classes = per_class(&test_y);
    // "Positive": any class but the first (rain, for precipitation).
    report.train_positive = report.train_rows - report.train_classes[0];
    report.test_positive = report.test_rows - report.test_classes[0];
    let why = || {
        format!(
            "{} rows read, {} dropped for missing values, split by {}",
            report.rows_read, report.rows_dropped, spec.split
        )
    };
    if report.train_rows == 0 {
        return Err(RainError::NoRows { path: spec.path.clone(), which: "training", why: why() });
    }
    if report.test_rows == 0 {
        return Err(RainError::NoRows { path: spec.path.clone(), which: "test", why: why() });
    }
    match &spec.target {
        Target::Binary(_) => {
            if report.train_positive == 0 {
                return Err(RainError::OneClass { class: "negative (no rain)" });
            }
            if report.train_positive == report.train_rows {
                return Err(RainError::OneClass { class: "positive (rain)" });
            }
        }
        Target::Classes(c) => {
            if let Some(k) = report.train_classes.iter().position(|&n| n == 0) {
                return Err(RainError::EmptyClass {
                    class: c.name(k),
                    classes: c.to_string(),
                    counts: c
                        .names()
                        .iter()
                        .zip(&report.train_classes)
                        .map(|(name, n)| format!("{name}: {n}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(Dataset { train_x, train_y, test_x, test_y, report })
}

impl Report {
    /// The human summary, a few lines.
    pub fn describe(&self, spec: &Spec) -> String {
        let pct = |a: usize, b: usize| if b == 0 { 0.0 } else { 100.0 * a as f64 / b as f64 };
        let mut s = format!("data: {} rows read from {}\n", self.rows_read, spec.path.display());
        if self.rows_dropped > 0 {
            let cols: Vec<String> = self.missing_by_column.iter().map(|(c, k)| format!("{c}: {k}")).collect();
            let kept_pos = self.train_positive + self.test_positive;
            let kept = self.train_rows + self.test_rows;
            s += &format!(
                "  dropped {} rows with a missing value (missing {}); {:.1}% of them are positive against {:.1}% of the kept rows, so the missingness is not random\n",
                self.rows_dropped,
                cols.join(", "),
                pct(self.dropped_positive, self.dropped_labelled),
                pct(kept_pos, kept)
            );
        }
        if self.imputed > 0 {
            let cols: Vec<String> = self.missing_by_column.iter().map(|(c, k)| format!("{c}: {k}")).collect();
            s += &format!(
                "  filled {} missing feature values with the training mean ({})\n",
                self.imputed,
                cols.join(", ")
            );
        }
        let split = match &spec.split {
            Split::Range { column, lo, hi, .. } => format!("{column} {lo}-{hi}"),
            Split::Fraction { .. } => "random".into(),
        };
        let test = match &spec.split {
            Split::Range { column, test: Some((lo, hi)), .. } => format!("test ({column} {lo}-{hi})"),
            _ => "test".into(),
        };
        if self.rows_outside > 0 {
            s += &format!("  left out {} rows outside both ranges of the split\n", self.rows_outside);
        }
        match &spec.target {
            Target::Binary(rule) => {
                s += &format!(
                    "  train ({split}): {} rows, positive ({} {rule}) rate {:.2}%\n",
                    self.train_rows,
                    spec.label,
                    pct(self.train_positive, self.train_rows)
                );
                s += &format!(
                    "  {test}: {} rows, positive rate {:.2}%",
                    self.test_rows,
                    pct(self.test_positive, self.test_rows)
                );
            }
            Target::Classes(c) => {
                let shares = |counts: &[usize], rows: usize| {
                    c.names()
                        .iter()
                        .zip(counts)
                        .map(|(name, &n)| format!("{name} {n} ({:.2}%)", pct(n, rows)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                s += &format!(
                    "  train ({split}): {} rows; classes of {}: {}\n",
                    self.train_rows,
                    spec.label,
                    shares(&self.train_classes, self.train_rows)
                );
                s += &format!(
                    "  {test}: {} rows; {}",
                    self.test_rows,
                    shares(&self.test_classes, self.test_rows)
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch CSV file, unique to the test, with `text` in it.
    fn csv_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rain-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.csv"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The error of `Table::read` and then `Table::features(names)`.
    fn features_error(name: &str, text: &str, names: &[&str]) -> String {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let result = Table::read(&csv_file(name, text)).and_then(|t| t.features(&names));
        match result {
            Ok(_) => panic!("{name}: no error"),
            Err(e) => e.to_string(),
        }
    }

    /// Months 1-2 train, month 3 test, both classes in each.
    const GOOD: &str = "month,temp,humid,pressure,precip\n\
        1,30,50,1010,0\n1,31,60,1011,0.1\n2,32,55,1012,0\n2,33,65,1013,0.2\n\
        3,34,52,1014,0\n3,35,66,1015,0.3\n";

    fn spec(path: PathBuf, features: &[&str], label: &str) -> Spec {
        Spec {
            path,
            features: features.iter().map(|f| f.to_string()).collect(),
            label: label.into(),
            target: Target::Binary(PositiveRule::Gt(0.0)),
            split: Split::Range { column: "month".into(), lo: 1.0, hi: 2.0, test: None },
            missing: Missing::Drop,
        }
    }

    fn load_error(spec: &Spec) -> String {
        match load(spec) {
            Ok(_) => panic!("{}: no error", spec.path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_file_loads() {
        let ds = load(&spec(csv_file("good", GOOD), &["temp", "humid"], "precip")).unwrap();
        assert_eq!((ds.report.train_rows, ds.report.test_rows), (4, 2));
    }

    #[test]
    fn non_numeric_error_names_the_file_line_after_blank_lines() {
        // Line 1 header, 2 data, 3 and 4 blank, 5 data, 6 blank, 7 bad.
        let e = features_error("blank", "a,b\n1,2\n\n\n3,4\n\n5,warm\n", &["a", "b"]);
        assert!(e.contains("line 7, column 'b': 'warm' is not a number"), "{e}");
    }

    #[test]
    fn non_numeric_error_counts_quoted_newlines() {
        // The record on line 2 spans lines 2-4; the bad one is on line 5.
        let e = features_error("quoted", "a,b,note\n1,2,\"one\ntwo\nthree\"\n3,x,ok\n", &["a", "b"]);
        assert!(e.contains("line 5, column 'b': 'x' is not a number"), "{e}");
    }

    #[test]
    fn non_numeric_error_names_the_line_with_crlf_endings() {
        let e = features_error("crlf", "a,b\r\n1,2\r\n\r\n3,4\r\nfive,6\r\n", &["a", "b"]);
        assert!(e.contains("line 5, column 'a': 'five' is not a number"), "{e}");
    }

    #[test]
    fn non_numeric_label_error_names_the_file_line() {
        let text = GOOD.replace("3,35,66,1015,0.3\n", "\n\n3,35,66,1015,lots\n");
        let e = load_error(&spec(csv_file("label", &text), &["temp", "humid"], "precip"));
        assert!(e.contains("line 9, column 'precip': 'lots' is not a number"), "{e}");
    }

    #[test]
    fn non_numeric_split_error_names_the_file_line() {
        let text = GOOD.replace("3,35,66,1015,0.3\n", "\nmarch,35,66,1015,0.3\n");
        let e = load_error(&spec(csv_file("split", &text), &["temp", "humid"], "precip"));
        assert!(e.contains("line 8, column 'month': 'march' is not a number"), "{e}");
    }

    #[test]
    fn table_line_is_each_records_file_line() {
        // Blank lines, a quoted field over three lines, \r\n and a lone \r.
        let text = "a,b\n\n1,2\n\"x\ny\nz\",3\r\n\r\n4,5\r6,7\n\n\n8,9";
        let t = Table::read(&csv_file("lines", text)).unwrap();
        let lines: Vec<usize> = (0..t.records.len()).map(|r| t.line(r)).collect();
        assert_eq!(lines, [3, 4, 8, 9, 12]);
        assert_eq!(t.records[1].get(0), Some("x\ny\nz"));
    }

    #[test]
    fn ragged_record_error_names_the_file_line() {
        let e = features_error("ragged", "a,b,c\n1,2,3\n\n\n4,5\n", &["a"]);
        assert!(e.contains("is not valid CSV: line 5 has 2 fields, the header has 3"), "{e}");
    }

    #[test]
    fn duplicate_header_column_is_refused() {
        let e = features_error("dup-header", "temp,humid,temp\n1,2,3\n", &["humid"]);
        assert!(e.contains("the header names column 'temp' twice (columns 1 and 3)"), "{e}");
    }

    #[test]
    fn unnamed_header_columns_may_repeat() {
        // Nothing can ask for a column without a name, so it is not ambiguous.
        let t = Table::read(&csv_file("unnamed", "a,,b,\n1,2,3,4\n")).unwrap();
        assert_eq!(t.header, ["a", "", "b", ""]);
    }

    #[test]
    fn label_among_the_features_is_refused() {
        let s = spec(csv_file("label-feature", GOOD), &["temp", "humid", "pressure", "precip"], "precip");
        let e = load_error(&s);
        assert!(e.contains("the label 'precip' is also feature 4 of 4"), "{e}");
    }

    #[test]
    fn duplicate_feature_is_refused() {
        let e = load_error(&spec(csv_file("dup-feature", GOOD), &["temp", "humid", "temp"], "precip"));
        assert!(e.contains("--features names 'temp' twice (features 1 and 3)"), "{e}");
    }

    #[test]
    fn zero_features_are_refused() {
        let e = load_error(&spec(csv_file("no-features", GOOD), &[], "precip"));
        assert!(e.contains("invalid --features ''"), "{e}");
    }
}
