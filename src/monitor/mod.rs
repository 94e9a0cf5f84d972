//! Monitoring: drift of recent data against the training data, the model's
//! quality on labelled recent data, and what to do about it. Readers stream
//! files into per-column sketches (column.rs, read.rs, parquet.rs, source.rs); drift.rs and
//! stats.rs score them; quality.rs checks the metric; report.rs writes the
//! summary table and the HTML report; dispatch.rs asks for retraining;
//! predict.rs asks the live endpoint for predictions of labelled rows.

pub mod column;
pub mod dispatch;
pub mod drift;
pub mod parquet;
pub mod predict;
pub mod quality;
pub mod read;
pub mod report;
pub mod source;
pub mod stats;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::values::DriftMethod;
use crate::error::UserError;
use column::{Kind, Sample};
use drift::{ColumnDrift, Pair};

/// Where the local endpoint's captured traffic is, under the workspace:
/// `<this>/<endpoint>/*.jsonl` (the default of `deploy.capture.path`).
pub const DEFAULT_CAPTURE_DIR: &str = ".mlcd/capture";

/// How the samples are compared.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Settings {
    /// Only these columns (empty: every column both samples have).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Never these columns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Declared column types.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub types: BTreeMap<String, Kind>,
    /// The method for every column.
    pub method: DriftMethod,
    /// Per-column methods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, DriftMethod>,
    /// The threshold for every column (default: the method's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Per-column thresholds.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, f64>,
    /// The dataset drifts when this share of its columns drifts.
    pub drift_share: f64,
    /// Fewer rows on either side: inconclusive.
    pub min_rows: u64,
    /// Columns that are not features (labels, predictions): never compared.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_features: Vec<String>,
}

/// What the comparison found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Analysis {
    /// One verdict per compared column.
    pub columns: Vec<ColumnDrift>,
    /// The share of compared columns that drifted.
    pub drift_share: f64,
    /// Whether the dataset drifted (share ≥ `drift-share`).
    pub drifted: bool,
    /// Why no verdict can be given, when none can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inconclusive: Option<String>,
    /// Rows in the reference.
    pub reference_rows: u64,
    /// Rows in the current sample.
    pub current_rows: u64,
}

impl Analysis {
    /// The names of the drifted columns.
    pub fn drifted_columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| c.column.clone())
            .collect()
    }
}

fn kind_of(
    name: &str,
    reference: &Sample,
    current: &Sample,
    declared: Option<Kind>,
) -> Result<Kind, UserError> {
    let (r, c) = (reference.column(name), current.column(name));
    let (Some(r), Some(c)) = (r, c) else {
        return Ok(Kind::Categorical);
    };
    if let Some(k) = declared {
        if k == Kind::Numeric {
            for (side, s, col) in [("reference", reference, r), ("current", current, c)] {
                if let Some((v, at)) = &col.first_text {
                    return Err(UserError::invalid(format!(
                        "column `{name}` is declared numeric, but the {side} sample holds `{v}` at {}",
                        s.at(*at)
                    ))
                    .hint(format!("fix the data, or declare it categorical: `monitor.types: {{{name}: categorical}}`")));
                }
            }
        } else if r.too_many_categories || c.too_many_categories {
            return Err(UserError::invalid(format!(
                "column `{name}` is declared categorical but has more than {} distinct values",
                column::CATEGORY_CAP
            ))
            .hint(format!(
                "declare it numeric, or leave it out with `monitor.exclude: [{name}]`"
            )));
        }
        return Ok(k);
    }
    let (rn, cn) = (r.is_numeric(), c.is_numeric());
    let r_empty = r.present() == 0;
    let c_empty = c.present() == 0;
    if (rn && (cn || c_empty)) || (cn && r_empty) {
        return Ok(Kind::Numeric);
    }
    if rn != cn && !r_empty && !c_empty {
        let (num_side, num_s, num_col, txt_side, txt_s, txt_col) = if rn {
            ("reference", reference, r, "current", current, c)
        } else {
            ("current", current, c, "reference", reference, r)
        };
        let (tv, tat) = txt_col.first_text.clone().unwrap_or_default_origin();
        let (nv, nat) = num_col.first_number.clone().unwrap_or_default_origin();
        return Err(UserError::invalid(format!(
            "column `{name}` is numeric in the {num_side} sample (like `{nv}` at {}) but text in the {txt_side} sample (`{tv}` at {})",
            num_s.at(nat),
            txt_s.at(tat)
        ))
        .hint(format!("fix the data that changed type, or compare it as categories: `monitor.types: {{{name}: categorical}}`")));
    }
    if r.too_many_categories || c.too_many_categories {
        return Err(UserError::invalid(format!(
            "column `{name}` holds text with more than {} distinct values: it is neither numeric nor categorical",
            column::CATEGORY_CAP
        ))
        .hint(format!("leave it out with `monitor.exclude: [{name}]`")));
    }
    Ok(Kind::Categorical)
}

trait OrDefaultOrigin {
    fn unwrap_or_default_origin(self) -> (String, column::Origin);
}

impl OrDefaultOrigin for Option<(String, column::Origin)> {
    fn unwrap_or_default_origin(self) -> (String, column::Origin) {
        self.unwrap_or((String::new(), column::Origin { file: 0, line: 0 }))
    }
}

/// Compares the current sample with the reference, column by column.
pub fn analyse(reference: &Sample, current: &Sample, s: &Settings) -> Result<Analysis, UserError> {
    let names: Vec<String> = if s.columns.is_empty() {
        let common: Vec<String> = reference
            .names
            .iter()
            .filter(|n| current.column(n).is_some())
            .filter(|n| !s.exclude.contains(n) && !s.not_features.contains(n))
            .cloned()
            .collect();
        if common.is_empty() && current.rows > 0 {
            let list = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.iter()
                        .take(20)
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            };
            return Err(UserError::invalid(format!(
                "the reference and current samples have no column in common to compare: reference has {}; current has {}",
                list(&reference.names),
                list(&current.names)
            ))
            .hint("compare data with the same column names (the model's features), or check `monitor.reference`, `monitor.current` and `monitor.exclude`"));
        }
        common
    } else {
        for n in &s.columns {
            if reference.column(n).is_none() {
                return Err(UserError::invalid(format!(
                    "`monitor.columns` names `{n}`, which the reference sample does not have (it has {})",
                    reference.names.join(", ")
                )));
            }
            if current.rows > 0 && current.column(n).is_none() {
                return Err(UserError::invalid(format!(
                    "`monitor.columns` names `{n}`, which the current sample does not have (it has {})",
                    current.names.join(", ")
                )));
            }
        }
        s.columns.clone()
    };

    let mut inconclusive = None;
    if current.rows == 0 {
        inconclusive = Some("the current sample has no rows".to_string());
    } else if current.rows < s.min_rows {
        inconclusive = Some(format!(
            "the current sample has {} rows, fewer than `min-rows` ({})",
            current.rows, s.min_rows
        ));
    } else if reference.rows < s.min_rows {
        inconclusive = Some(format!(
            "the reference has {} rows, fewer than `min-rows` ({})",
            reference.rows, s.min_rows
        ));
    }

    let mut columns = Vec::new();
    if inconclusive.is_none() {
        for name in &names {
            let kind = kind_of(name, reference, current, s.types.get(name).copied())?;
            let (r, c) = (
                reference.column(name).expect("checked above"),
                current.column(name).expect("checked above"),
            );
            if r.present() == 0 || c.present() == 0 {
                let side = if r.present() == 0 {
                    "reference"
                } else {
                    "current"
                };
                inconclusive = Some(format!(
                    "column `{name}` has no values in the {side} sample"
                ));
                break;
            }
            let method = s.methods.get(name).copied().unwrap_or(s.method);
            let threshold = s.thresholds.get(name).copied().or(s.threshold);
            let pair = Pair {
                name,
                kind,
                reference: r,
                current: c,
            };
            let d = drift::column_drift(&pair, method, threshold).map_err(|e| {
                UserError::invalid(e).hint("choose a method that suits the column's type in `monitor.methods`, or declare its type in `monitor.types`")
            })?;
            columns.push(d);
        }
    }
    let (drifted, share) = drift::dataset_drift(&columns, s.drift_share);
    Ok(Analysis {
        drifted: drifted && inconclusive.is_none(),
        drift_share: share,
        columns,
        inconclusive,
        reference_rows: reference.rows,
        current_rows: current.rows,
    })
}
