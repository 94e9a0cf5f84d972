//! Drift per column and for the dataset: each method as a small named test with
//! its default threshold, the direction that means drift and the thresholds it
//! accepts; `auto` chooses as Evidently does (by column type, distinct values
//! and reference size); the data each test needs (sorted numbers, counts, or
//! Evidently's bins) is prepared here from the accumulated columns.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use super::column::{Column, Kind};
use super::stats;
use crate::config::values::DriftMethod;

/// Evidently switches from tests to distances above this many reference rows.
pub const AUTO_SMALL_REFERENCE: u64 = 1000;
/// Bins Evidently uses for PSI (and L-infinity) on numbers.
const PSI_BINS: usize = 10;
/// Bins Evidently uses for Jensen-Shannon on numbers.
const JS_BINS: usize = 30;
/// Bars in a chart.
const CHART_BINS: usize = 20;

/// What a method's score is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// A p-value: drift when below the threshold.
    PValue,
    /// A distance: drift when at or above the threshold.
    Distance,
}

/// How a method scores, its default threshold, and the thresholds it accepts.
pub fn score_kind(m: DriftMethod) -> Score {
    match m {
        DriftMethod::Ks | DriftMethod::Chisquare | DriftMethod::Z => Score::PValue,
        _ => Score::Distance,
    }
}

/// Evidently's default threshold for a method.
pub fn default_threshold(m: DriftMethod) -> f64 {
    match score_kind(m) {
        Score::PValue => 0.05,
        Score::Distance => 0.1,
    }
}

/// Checks a threshold against the method's range: p-values in (0, 1); the
/// Jensen-Shannon and L-infinity distances in (0, 1]; Wasserstein and PSI above 0.
pub fn check_threshold(m: DriftMethod, t: f64) -> Result<(), String> {
    let ok = match m {
        DriftMethod::Auto => t > 0.0 && t <= 1.0,
        DriftMethod::Ks | DriftMethod::Chisquare | DriftMethod::Z => t > 0.0 && t < 1.0,
        DriftMethod::Jensenshannon | DriftMethod::Linf => t > 0.0 && t <= 1.0,
        DriftMethod::Wasserstein | DriftMethod::Psi => t > 0.0 && t.is_finite(),
    };
    if ok {
        return Ok(());
    }
    Err(match m {
        DriftMethod::Auto => format!("threshold {t} is outside (0, 1]: with `auto` a threshold is a p-value below 1 or a distance of at most 1"),
        DriftMethod::Ks | DriftMethod::Chisquare | DriftMethod::Z => format!("threshold {t} is outside (0, 1): `{m}` scores a p-value (drift below the threshold; default 0.05)"),
        DriftMethod::Jensenshannon | DriftMethod::Linf => format!("threshold {t} is outside (0, 1]: `{m}` is a distance between 0 and 1 (default 0.1)"),
        _ => format!("threshold {t} must be above 0: `{m}` is a distance (default 0.1)"),
    })
}

/// Whether a score means drift.
pub fn is_drift(m: DriftMethod, score: f64, threshold: f64) -> bool {
    match score_kind(m) {
        Score::PValue => score < threshold,
        Score::Distance => score >= threshold,
    }
}

/// A reference-against-current chart: one bar pair per bin or category.
#[derive(Debug, Clone, Serialize)]
pub struct Chart {
    /// Bin or category labels.
    pub labels: Vec<String>,
    /// Reference shares (sum 1 over the shown bins, or less with categories cut).
    pub reference: Vec<f64>,
    /// Current shares.
    pub current: Vec<f64>,
}

/// One column's verdict.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ColumnDrift {
    /// The column.
    pub column: String,
    /// The type it was analysed as.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The method used (never `auto`).
    pub method: DriftMethod,
    /// The score: a p-value or a distance.
    pub score: f64,
    /// The threshold applied.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
    /// Present values in the reference.
    pub reference_rows: u64,
    /// Present values in the current sample.
    pub current_rows: u64,
    /// Something to know about the numbers (sampling, fallbacks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Distributions for the report.
    #[serde(skip)]
    pub chart: Option<Chart>,
}

/// What a column is compared with.
pub struct Pair<'a> {
    /// The column's name.
    pub name: &'a str,
    /// The type it is analysed as.
    pub kind: Kind,
    /// The reference column.
    pub reference: &'a Column,
    /// The current column.
    pub current: &'a Column,
}

/// Evidently's choice for `auto`.
pub fn auto_method(kind: Kind, reference_rows: u64, distinct: Option<usize>) -> DriftMethod {
    // `distinct`: distinct values over both samples; None = more than 21.
    let n = distinct.unwrap_or(usize::MAX);
    let small = reference_rows <= AUTO_SMALL_REFERENCE;
    match (kind, small) {
        (Kind::Numeric, true) if n > 5 => DriftMethod::Ks,
        (Kind::Numeric, false) if n > 5 => DriftMethod::Wasserstein,
        (Kind::Numeric, false) => DriftMethod::Jensenshannon,
        (_, true) if n > 2 => DriftMethod::Chisquare,
        (_, true) => DriftMethod::Z,
        (Kind::Categorical, false) => DriftMethod::Jensenshannon,
    }
}

/// Counts per value key: numbers by their bits, categories by their text.
type Counts = HashMap<String, f64>;

fn number_key(bits: u64) -> String {
    format!("{}", f64::from_bits(bits))
}

/// Exact value counts of a column as analysed (None: too many distinct values).
fn value_counts(col: &Column, kind: Kind) -> Option<Counts> {
    match kind {
        Kind::Categorical => col
            .counts()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), *v as f64)).collect()),
        Kind::Numeric => {
            if let Some(nc) = col.number_counts() {
                return Some(
                    nc.iter()
                        .map(|(k, v)| (number_key(*k), *v as f64))
                        .collect(),
                );
            }
            None
        }
    }
}

/// Value counts from the kept numbers, scaled to every number seen.
fn counts_from_numbers(col: &Column) -> Counts {
    let nums = col.sorted_numbers().unwrap_or_default();
    let scale = col.numbers_seen as f64 / nums.len().max(1) as f64;
    let mut c = Counts::new();
    for &x in nums {
        *c.entry(number_key(x.to_bits())).or_insert(0.0) += scale;
    }
    c
}

fn counts_for(col: &Column, kind: Kind) -> Counts {
    value_counts(col, kind).unwrap_or_else(|| counts_from_numbers(col))
}

/// Union of keys, in a stable order.
fn keys(a: &Counts, b: &Counts) -> Vec<String> {
    let set: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    set.into_iter().cloned().collect()
}

/// Evidently's `get_binned_data`: shares per bin over both samples' range (numbers
/// with more than 20 distinct reference values) or per value.
fn binned(p: &Pair, bins: usize) -> (Vec<f64>, Vec<f64>) {
    let ref_distinct = p.reference.number_counts().map(|c| c.len());
    if p.kind == Kind::Numeric && ref_distinct.is_none_or(|n| n > 20) {
        let a = p.reference.sorted_numbers().unwrap_or_default();
        let b = p.current.sorted_numbers().unwrap_or_default();
        let lo = a[0].min(b[0]);
        let hi = a[a.len() - 1].max(b[b.len() - 1]);
        let edges = stats::bin_edges(lo, hi, bins);
        let (ha, hb) = (stats::histogram(a, &edges), stats::histogram(b, &edges));
        let (na, nb) = (a.len() as f64, b.len() as f64);
        return (
            ha.iter().map(|c| c / na).collect(),
            hb.iter().map(|c| c / nb).collect(),
        );
    }
    let (ca, cb) = (
        counts_for(p.reference, p.kind),
        counts_for(p.current, p.kind),
    );
    let (na, nb) = (ca.values().sum::<f64>(), cb.values().sum::<f64>());
    let ks = keys(&ca, &cb);
    (
        ks.iter()
            .map(|k| ca.get(k).copied().unwrap_or(0.0) / na)
            .collect(),
        ks.iter()
            .map(|k| cb.get(k).copied().unwrap_or(0.0) / nb)
            .collect(),
    )
}

/// Distinct values over both samples, when both are countable.
pub fn distinct(p: &Pair) -> Option<usize> {
    let (a, b) = (
        value_counts(p.reference, p.kind)?,
        value_counts(p.current, p.kind)?,
    );
    Some(keys(&a, &b).len())
}

/// Scores one column with `method` (not `auto`).
pub fn score(p: &Pair, method: DriftMethod) -> Result<f64, String> {
    let numbers = || -> Result<(&[f64], &[f64]), String> {
        match (
            p.reference.sorted_numbers(),
            p.current.sorted_numbers(),
            p.kind,
        ) {
            (Some(a), Some(b), Kind::Numeric) if !a.is_empty() && !b.is_empty() => Ok((a, b)),
            _ => Err(format!(
                "`{method}` compares numbers, and column `{}` is categorical",
                p.name
            )),
        }
    };
    Ok(match method {
        DriftMethod::Auto => unreachable!("auto is resolved before scoring"),
        DriftMethod::Ks => {
            let (a, b) = numbers()?;
            stats::ks_2samp(a, b).1
        }
        DriftMethod::Wasserstein => {
            let (a, b) = numbers()?;
            stats::wasserstein_normed(a, b)
        }
        DriftMethod::Psi => {
            let (a, b) = binned(p, PSI_BINS);
            stats::psi(&a, &b)
        }
        DriftMethod::Jensenshannon => {
            let (a, b) = binned(p, JS_BINS);
            stats::jensenshannon(&a, &b)
        }
        DriftMethod::Linf => {
            let (a, b) = binned(p, PSI_BINS);
            stats::linf(&a, &b)
        }
        DriftMethod::Chisquare => {
            let (ca, cb) = (
                counts_for(p.reference, p.kind),
                counts_for(p.current, p.kind),
            );
            let ks = keys(&ca, &cb);
            if ks.len() < 2 {
                return Ok(1.0);
            }
            let (na, nb) = (ca.values().sum::<f64>(), cb.values().sum::<f64>());
            let k_norm = nb / na;
            let expected: Vec<f64> = ks
                .iter()
                .map(|k| ca.get(k).copied().unwrap_or(0.0) * k_norm)
                .collect();
            let observed: Vec<f64> = ks
                .iter()
                .map(|k| cb.get(k).copied().unwrap_or(0.0))
                .collect();
            stats::chisquare(&observed, &expected)
        }
        DriftMethod::Z => {
            let (ca, cb) = (
                counts_for(p.reference, p.kind),
                counts_for(p.current, p.kind),
            );
            let ks = keys(&ca, &cb);
            if ks.len() > 2 {
                return Err(format!(
                    "`z` compares two categories, and column `{}` has {} distinct values",
                    p.name,
                    ks.len()
                ));
            }
            if ks.len() < 2 {
                return Ok(1.0);
            }
            let (na, nb) = (ca.values().sum::<f64>(), cb.values().sum::<f64>());
            let k = &ks[0];
            stats::z_test(
                ca.get(k).copied().unwrap_or(0.0),
                na,
                cb.get(k).copied().unwrap_or(0.0),
                nb,
            )
        }
    })
}

/// The chart of a column: 20 equal bins over both samples' range for numbers
/// with many values, else the 20 most frequent values.
pub fn chart(p: &Pair) -> Chart {
    let many = p.reference.number_counts().is_none() || p.current.number_counts().is_none();
    if p.kind == Kind::Numeric && many {
        let a = p.reference.sorted_numbers().unwrap_or_default();
        let b = p.current.sorted_numbers().unwrap_or_default();
        let lo = a[0].min(b[0]);
        let hi = a[a.len() - 1].max(b[b.len() - 1]);
        let edges = stats::bin_edges(lo, hi, CHART_BINS);
        let (ha, hb) = (stats::histogram(a, &edges), stats::histogram(b, &edges));
        return Chart {
            labels: edges[..CHART_BINS].iter().map(|e| short(*e)).collect(),
            reference: ha.iter().map(|c| c / a.len() as f64).collect(),
            current: hb.iter().map(|c| c / b.len() as f64).collect(),
        };
    }
    let (ca, cb) = (
        counts_for(p.reference, p.kind),
        counts_for(p.current, p.kind),
    );
    let (na, nb) = (ca.values().sum::<f64>(), cb.values().sum::<f64>());
    let mut ks = keys(&ca, &cb);
    let total = |k: &String| {
        ca.get(k).copied().unwrap_or(0.0) / na + cb.get(k).copied().unwrap_or(0.0) / nb
    };
    ks.sort_by(|x, y| total(y).total_cmp(&total(x)).then(x.cmp(y)));
    ks.truncate(CHART_BINS);
    if p.kind == Kind::Numeric {
        ks.sort_by(|x, y| {
            let (a, b) = (
                x.parse::<f64>().unwrap_or(0.0),
                y.parse::<f64>().unwrap_or(0.0),
            );
            a.total_cmp(&b)
        });
    }
    Chart {
        reference: ks
            .iter()
            .map(|k| ca.get(k).copied().unwrap_or(0.0) / na)
            .collect(),
        current: ks
            .iter()
            .map(|k| cb.get(k).copied().unwrap_or(0.0) / nb)
            .collect(),
        labels: ks,
    }
}

/// A number in few characters, for chart labels.
pub fn short(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (0.01..100_000.0).contains(&a) {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.2e}")
    }
}

/// Scores a column, choosing the method when `auto`.
pub fn column_drift(
    p: &Pair,
    method: DriftMethod,
    threshold: Option<f64>,
) -> Result<ColumnDrift, String> {
    let m = match method {
        DriftMethod::Auto => auto_method(p.kind, p.reference.present(), distinct(p)),
        m => m,
    };
    let threshold = threshold.unwrap_or_else(|| default_threshold(m));
    check_threshold(m, threshold).map_err(|e| format!("column `{}`: {e}", p.name))?;
    let score = score(p, m)?;
    let mut notes = Vec::new();
    if p.kind == Kind::Numeric && (!p.reference.numbers_exact() || !p.current.numbers_exact()) {
        notes.push(format!(
            "numbers sampled: a uniform reservoir of {} values per side (see the README for the error this allows)",
            super::column::NUMERIC_CAP
        ));
    }
    Ok(ColumnDrift {
        column: p.name.to_string(),
        kind: p.kind,
        method: m,
        score,
        threshold,
        drifted: score.is_nan() || is_drift(m, score, threshold),
        reference_rows: p.reference.present(),
        current_rows: p.current.present(),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        chart: Some(chart(p)),
    })
}

/// The dataset's verdict: drift when the share of drifted columns reaches `drift_share`.
pub fn dataset_drift(columns: &[ColumnDrift], drift_share: f64) -> (bool, f64) {
    if columns.is_empty() {
        return (false, 0.0);
    }
    let share = columns.iter().filter(|c| c.drifted).count() as f64 / columns.len() as f64;
    (share >= drift_share, share)
}
