//! One sample's columns, accumulated row by row without keeping the rows:
//! per column a bounded uniform sample of its numbers (exact up to
//! [`NUMERIC_CAP`] values, a seeded reservoir beyond), exact counts of its
//! values while there are few of them, and what type its values say it is.
//!
//! The error the reservoir allows: a uniform sample of k values estimates the
//! column's CDF within ε = sqrt(ln(2/α) / 2k) everywhere with probability 1-α
//! (the Dvoretzky-Kiefer-Wolfowitz inequality). With k = 200 000 and α = 0.001
//! that is ε ≈ 0.0044, so a KS distance moves by at most 0.009 and a Wasserstein
//! distance by at most 0.009 × the value range. The KS p-value is computed for
//! the sample sizes actually kept, so it stays a valid test (with less power).

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Numbers kept per column and sample before the reservoir starts replacing them.
pub const NUMERIC_CAP: usize = 200_000;
/// Distinct values counted per column; a column with more is not categorical.
pub const CATEGORY_CAP: usize = 10_000;
/// Distinct numbers counted exactly (Evidently bins numbers by value up to 20).
const NUMBER_COUNT_CAP: usize = 21;

/// Where a value was read: the file (an index into the sample's files) and line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index into [`Sample::files`].
    pub file: usize,
    /// 1-based line.
    pub line: u64,
}

/// The type a column is analysed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Numbers.
    Numeric,
    /// Categories (text, booleans, or numbers declared categorical).
    Categorical,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Numeric => "numeric",
            Kind::Categorical => "categorical",
        })
    }
}

/// One column of one sample.
#[derive(Debug)]
pub struct Column {
    /// Values seen, missing ones included.
    pub rows: u64,
    /// Missing values (empty, null, NaN, NA).
    pub missing: u64,
    /// Numbers seen (all of them, also those the reservoir dropped).
    pub numbers_seen: u64,
    numbers: Option<Vec<f64>>,
    number_counts: Option<HashMap<u64, u64>>,
    counts: Option<HashMap<String, u64>>,
    /// The first value that is not a number, and where.
    pub first_text: Option<(String, Origin)>,
    /// The first number, and where (for type-mismatch errors).
    pub first_number: Option<(String, Origin)>,
    /// The counts overflowed [`CATEGORY_CAP`].
    pub too_many_categories: bool,
    rng: StdRng,
    sorted: std::cell::OnceCell<Vec<f64>>,
}

impl Column {
    /// An empty column; `declared` skips what the declared type does not need.
    pub fn new(declared: Option<Kind>, seed: u64) -> Self {
        Column {
            rows: 0,
            missing: 0,
            numbers_seen: 0,
            numbers: (declared != Some(Kind::Categorical)).then(Vec::new),
            number_counts: (declared != Some(Kind::Categorical)).then(HashMap::new),
            counts: (declared != Some(Kind::Numeric)).then(HashMap::new),
            first_text: None,
            first_number: None,
            too_many_categories: false,
            rng: StdRng::seed_from_u64(seed),
            sorted: std::cell::OnceCell::new(),
        }
    }

    /// Adds one value as read (text; JSON numbers and booleans as their text).
    pub fn push(&mut self, raw: &str, origin: Origin) {
        self.rows += 1;
        let v = raw.trim();
        if is_missing(v) {
            self.missing += 1;
            return;
        }
        match parse_number(v) {
            Some(x) => {
                if self.first_number.is_none() {
                    self.first_number = Some((v.to_string(), origin));
                }
                self.push_number(x);
            }
            None => {
                if self.first_text.is_none() {
                    self.first_text = Some((v.to_string(), origin));
                }
                self.numbers = None;
                self.number_counts = None;
            }
        }
        if let Some(c) = &mut self.counts {
            if let Some(n) = c.get_mut(v) {
                *n += 1;
            } else if c.len() >= CATEGORY_CAP {
                self.counts = None;
                self.too_many_categories = true;
            } else {
                c.insert(v.to_string(), 1);
            }
        }
    }

    /// Adds a value already read as a number (Parquet): what [`Column::push`]
    /// does with its text, without writing and parsing the text. `text` writes
    /// it, and is called only when the text is kept (the first number, the
    /// value counts while there are few values). Non-finite numbers are missing.
    pub fn push_f64(
        &mut self,
        x: f64,
        origin: Origin,
        buf: &mut String,
        text: impl FnOnce(&mut String),
    ) {
        self.rows += 1;
        if !x.is_finite() {
            self.missing += 1;
            return;
        }
        let first = self.first_number.is_none();
        if first || self.counts.is_some() {
            buf.clear();
            text(buf);
        }
        if first {
            self.first_number = Some((buf.clone(), origin));
        }
        self.push_number(x);
        if let Some(c) = &mut self.counts {
            if let Some(n) = c.get_mut(buf.as_str()) {
                *n += 1;
            } else if c.len() >= CATEGORY_CAP {
                self.counts = None;
                self.too_many_categories = true;
            } else {
                c.insert(buf.clone(), 1);
            }
        }
    }

    fn push_number(&mut self, x: f64) {
        self.numbers_seen += 1;
        let x = if x == 0.0 { 0.0 } else { x };
        if let Some(nc) = &mut self.number_counts {
            *nc.entry(x.to_bits()).or_insert(0) += 1;
            if nc.len() > NUMBER_COUNT_CAP {
                self.number_counts = None;
            }
        }
        if let Some(vals) = &mut self.numbers {
            if vals.len() < NUMERIC_CAP {
                vals.push(x);
            } else {
                // Algorithm R: keep each of the n values seen with probability cap/n.
                let j = self.rng.gen_range(0..self.numbers_seen);
                if (j as usize) < NUMERIC_CAP {
                    vals[j as usize] = x;
                }
            }
        }
    }

    /// Non-missing values.
    pub fn present(&self) -> u64 {
        self.rows - self.missing
    }

    /// Whether every present value was a number (and some were).
    pub fn is_numeric(&self) -> bool {
        self.first_text.is_none() && self.numbers_seen > 0
    }

    /// The kept numbers, sorted once when first asked for (None when the column
    /// is not numeric or was declared categorical). Read them after the last push.
    pub fn sorted_numbers(&self) -> Option<&[f64]> {
        let nums = self.numbers.as_ref()?;
        Some(self.sorted.get_or_init(|| {
            let mut v = nums.clone();
            v.sort_unstable_by(f64::total_cmp);
            v
        }))
    }

    /// Whether the kept numbers are all of them (no reservoir sampling happened).
    pub fn numbers_exact(&self) -> bool {
        self.numbers_seen as usize <= NUMERIC_CAP
    }

    /// Exact counts per number, when the column has at most 21 distinct numbers.
    pub fn number_counts(&self) -> Option<&HashMap<u64, u64>> {
        self.number_counts.as_ref()
    }

    /// Exact counts per value text (None when declared numeric or over the cap).
    pub fn counts(&self) -> Option<&HashMap<String, u64>> {
        self.counts.as_ref()
    }
}

/// Empty, `null`, `NaN`, `NA`, `N/A`, `None`: a missing value (dropped, as Evidently drops NaN).
pub fn is_missing(v: &str) -> bool {
    matches!(
        v,
        "" | "null" | "NULL" | "nan" | "NaN" | "NAN" | "NA" | "N/A" | "n/a" | "None"
    )
}

/// A finite number written as decimal text.
pub fn parse_number(v: &str) -> Option<f64> {
    let b = v.as_bytes();
    // Fast reject: numbers start with a digit, a sign or a point.
    if !matches!(b.first(), Some(b'0'..=b'9' | b'-' | b'+' | b'.')) {
        return None;
    }
    v.parse::<f64>().ok().filter(|x| x.is_finite())
}

/// One sample (reference or current): its columns by name, in first-seen order.
#[derive(Debug, Default)]
pub struct Sample {
    /// The files read, for error locations.
    pub files: Vec<String>,
    /// Column names in first-seen order.
    pub names: Vec<String>,
    /// Columns, parallel to `names`.
    pub columns: Vec<Column>,
    index: HashMap<String, usize>,
    /// Rows read.
    pub rows: u64,
    declared: HashMap<String, Kind>,
    /// Label and prediction pairs, when the quality check is on.
    pub pairs: Option<Pairs>,
    pending: [Option<String>; 2],
    /// The labelled rows kept to ask the endpoint for predictions, when asked to.
    pub kept: Option<Kept>,
}

/// Labelled rows kept whole (features as a JSON object, the label, where the row
/// is), up to a cap: what `predictions-from: endpoint` sends to the endpoint.
#[derive(Debug, Default)]
pub struct Kept {
    /// At most this many rows are kept.
    pub cap: usize,
    /// The kept rows.
    pub rows: Vec<(serde_json::Map<String, serde_json::Value>, String, Origin)>,
    /// Labelled rows seen beyond the cap.
    pub left_out: u64,
    row: serde_json::Map<String, serde_json::Value>,
    label: Option<String>,
}

/// Label and prediction of each row, folded into the metrics as rows end.
#[derive(Debug, Default)]
pub struct Pairs {
    /// The label column.
    pub labels: String,
    /// The prediction column.
    pub predictions: String,
    /// Rows with both values.
    pub n: u64,
    /// Rows where the prediction equals the label.
    pub correct: u64,
    /// Sum of |prediction - label| (numeric rows).
    pub abs_err: f64,
    /// Sum of (prediction - label)².
    pub sq_err: f64,
    /// The first row whose label or prediction is not a number, and where.
    pub first_text: Option<(String, Origin)>,
    /// Rows missing the label or the prediction.
    pub incomplete: u64,
    /// Predictions looked up by the value of a column (an inference id) instead
    /// of read from the predictions column: (column, id → prediction).
    pub lookup: Option<(String, HashMap<String, String>)>,
}

impl Sample {
    /// An empty sample; `declared` types skip work the type does not need.
    pub fn new(declared: &std::collections::BTreeMap<String, Kind>) -> Self {
        Sample {
            declared: declared.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            ..Sample::default()
        }
    }

    /// The index of a column, created on first sight.
    pub fn column_index(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let i = self.columns.len();
        let seed = 0x6d6c_6364 ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.columns
            .push(Column::new(self.declared.get(name).copied(), seed));
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), i);
        i
    }

    /// Turns on the label/prediction pairing for the quality check.
    pub fn with_pairs(mut self, labels: &str, predictions: &str) -> Self {
        self.pairs = Some(Pairs {
            labels: labels.to_string(),
            predictions: predictions.to_string(),
            ..Pairs::default()
        });
        self
    }

    /// Keeps up to `cap` labelled rows whole (every column but the label and
    /// predictions columns) to ask the endpoint for their predictions.
    pub fn keeping_rows(mut self, cap: usize) -> Self {
        self.kept = Some(Kept {
            cap,
            ..Kept::default()
        });
        self
    }

    /// Adds a value of column `i` in the current row.
    pub fn push(&mut self, i: usize, raw: &str, origin: Origin) {
        self.columns[i].push(raw, origin);
        if let Some(p) = &self.pairs {
            let name = &self.names[i];
            let is_label = *name == p.labels;
            if is_label {
                self.pending[0] = Some(raw.trim().to_string());
            } else if let Some((id_col, by_id)) = &p.lookup {
                if name == id_col {
                    self.pending[1] = by_id.get(raw.trim()).cloned();
                }
            } else if *name == p.predictions {
                self.pending[1] = Some(raw.trim().to_string());
            }
            if let Some(k) = &mut self.kept {
                if is_label {
                    k.label = Some(raw.trim().to_string());
                } else if *name != p.predictions && k.rows.len() < k.cap && !is_missing(raw) {
                    let v = match parse_number(raw) {
                        Some(x) => serde_json::Number::from_f64(x)
                            .map_or_else(|| raw.into(), serde_json::Value::Number),
                        None => raw.trim().into(),
                    };
                    k.row.insert(name.clone(), v);
                }
            }
        }
    }

    /// Adds a number of column `i` in the current row (see [`Column::push_f64`]);
    /// with the quality check on, as its text through [`Sample::push`].
    pub fn push_f64(
        &mut self,
        i: usize,
        x: f64,
        origin: Origin,
        buf: &mut String,
        text: impl FnOnce(&mut String),
    ) {
        if self.pairs.is_some() {
            buf.clear();
            if x.is_finite() {
                text(buf);
            }
            let raw = std::mem::take(buf);
            self.push(i, &raw, origin);
            *buf = raw;
        } else {
            self.columns[i].push_f64(x, origin, buf, text);
        }
    }

    /// Ends the current row.
    pub fn end_row(&mut self, origin: Origin) {
        self.rows += 1;
        if let Some(k) = &mut self.kept {
            let row = std::mem::take(&mut k.row);
            match k.label.take() {
                Some(l) if !is_missing(&l) && k.rows.len() < k.cap => k.rows.push((row, l, origin)),
                Some(l) if !is_missing(&l) => k.left_out += 1,
                _ => {}
            }
            // The predictions come later, from the endpoint.
            self.pending = [None, None];
            return;
        }
        let Some(p) = &mut self.pairs else { return };
        let (l, pr) = (self.pending[0].take(), self.pending[1].take());
        p.fold(l, pr, origin);
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.index.get(name).map(|&i| &self.columns[i])
    }

    /// `file:line` of an origin.
    pub fn at(&self, o: Origin) -> String {
        format!(
            "{}:{}",
            self.files.get(o.file).map(String::as_str).unwrap_or("?"),
            o.line
        )
    }
}

impl Pairs {
    /// Folds one row's label and prediction into the metrics.
    pub fn fold(&mut self, l: Option<String>, pr: Option<String>, origin: Origin) {
        let p = self;
        match (l, pr) {
            (Some(l), Some(pr)) if !is_missing(&l) && !is_missing(&pr) => {
                p.n += 1;
                match (parse_number(&l), parse_number(&pr)) {
                    (Some(a), Some(b)) => {
                        if a == b {
                            p.correct += 1;
                        }
                        p.abs_err += (b - a).abs();
                        p.sq_err += (b - a).powi(2);
                    }
                    _ => {
                        if l == pr {
                            p.correct += 1;
                        }
                        if p.first_text.is_none() {
                            let v = if parse_number(&l).is_none() { l } else { pr };
                            p.first_text = Some((v, origin));
                        }
                    }
                }
            }
            _ => p.incomplete += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservoir_stays_bounded_and_uniform() {
        let mut c = Column::new(Some(Kind::Numeric), 1);
        let o = Origin { file: 0, line: 1 };
        for i in 0..(NUMERIC_CAP as u64 * 3) {
            c.push(&i.to_string(), o);
        }
        let v = c.sorted_numbers().unwrap();
        assert_eq!(v.len(), NUMERIC_CAP);
        assert!(!c.numbers_exact());
        // A uniform sample of 0..3cap has its median near 1.5 cap.
        let median = v[v.len() / 2];
        let want = NUMERIC_CAP as f64 * 1.5;
        assert!((median - want).abs() < want * 0.01, "median {median}");
    }

    #[test]
    fn a_text_value_makes_a_column_categorical_and_is_remembered() {
        let mut c = Column::new(None, 1);
        c.push("1.5", Origin { file: 0, line: 2 });
        c.push("", Origin { file: 0, line: 3 });
        c.push("abc", Origin { file: 0, line: 4 });
        assert!(!c.is_numeric());
        assert_eq!(c.missing, 1);
        assert_eq!(c.first_text.as_ref().unwrap().1.line, 4);
        assert_eq!(c.counts().unwrap().len(), 2);
    }
}
