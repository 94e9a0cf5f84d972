//! The pull-request comment: one per model, found again by a hidden marker and
//! edited in place by every later run. Each mode writes its own section (build,
//! train, deploy); sections other runs wrote for the same commit are kept, those
//! about an older commit are marked stale. The whole stays under GitHub's limit.

pub mod body;
pub mod chart;
pub mod fit;
pub mod post;
pub mod sections;

use std::collections::BTreeMap;

/// GitHub refuses a comment body above 65,536 characters; mlcd counts bytes,
/// which is never fewer.
pub const LIMIT: usize = 65_536;

/// What a run gathered for its section beyond its outputs and step summary.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Train: the job, its metrics against production, the gates, the curves.
    pub train: Option<TrainFacts>,
}

/// The training part of a comment.
#[derive(Debug, Clone, Default)]
pub struct TrainFacts {
    /// The job's name.
    pub job: String,
    /// How the job ended (`Completed`, `Failed`, …).
    pub state: String,
    /// The job's final metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Every gate's verdict (the champion comparison included).
    pub gates: Vec<GateRow>,
    /// The registry's `production` version, when there is one.
    pub production: Option<VersionMetrics>,
    /// The last versions in the registry, oldest first (for a chart).
    pub recent: Vec<VersionMetrics>,
    /// Each metric's values in log order, as the metric regexes read them.
    pub curves: BTreeMap<String, Vec<f64>>,
}

/// One gate's verdict, as the comment shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRow {
    /// The metric.
    pub metric: String,
    /// The job's value, when it reported one.
    pub value: Option<f64>,
    /// The threshold (`>= 0.9`).
    pub condition: String,
    /// Whether it passed.
    pub passed: bool,
}

/// A registry version's metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionMetrics {
    /// The version (`3`).
    pub version: String,
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
}
