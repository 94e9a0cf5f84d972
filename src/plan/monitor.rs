//! The monitoring plan: which data is compared with which (paths resolved in the
//! workspace, `capture` and `s3://` sources named), how, the quality check, what
//! happens on drift, and where the report goes. Every value is checked here,
//! with the config line it came from, before anything is read.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::paths::inside_workspace;
use super::train::{registry_plan, RegistryPlan};
use super::{Backend, Inputs};
use crate::config::values::{ColumnType, DriftMethod, ModelId, OnDrift, PredictionsFrom};
use crate::error::UserError;
use crate::monitor::column::Kind;
use crate::monitor::drift::check_threshold;
use crate::monitor::{Settings, DEFAULT_CAPTURE_DIR};

/// Default `monitor.min-rows`.
pub const DEFAULT_MIN_ROWS: u64 = 30;
/// Default `monitor.drift-share` (Evidently's).
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;
/// Default `monitor.event-type`.
pub const DEFAULT_EVENT_TYPE: &str = "retrain";

/// Where a sample is read from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum SourcePlan {
    /// A file or directory in the workspace.
    Path {
        /// Relative to the workspace.
        path: String,
    },
    /// The local endpoint's captured traffic (a directory of data capture JSON
    /// lines), copied out of the endpoint's router first when it runs.
    Capture {
        /// Relative to the workspace.
        path: String,
        /// The endpoint whose router holds the capture files.
        endpoint: String,
    },
    /// An S3 prefix (SageMaker data capture, or any CSV / JSON lines objects).
    S3 {
        /// `s3://bucket/prefix`.
        uri: String,
    },
}

impl SourcePlan {
    /// How the source is shown in reports.
    pub fn display(&self) -> String {
        match self {
            SourcePlan::Path { path } => path.clone(),
            SourcePlan::Capture { path, .. } => format!("capture ({path})"),
            SourcePlan::S3 { uri } => uri.clone(),
        }
    }
}

/// The model-quality check.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct QualityPlan {
    /// The label column.
    pub labels: String,
    /// The prediction column.
    pub predictions: String,
    /// The metric.
    pub metric: String,
    /// How far below the production version's metric is still fine.
    pub tolerance: f64,
    /// The registry holding the production version.
    pub registry: RegistryPlan,
    /// The alias of the production version.
    pub alias: String,
    /// Where the predictions come from.
    pub from: PredictionsFrom,
    /// `predictions-from: endpoint`: the endpoint asked, at most `max-rows` rows,
    /// at most `rate` requests a second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<PredictEndpoint>,
    /// `predictions-from: capture`: the capture read, and the id column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<PredictCapture>,
}

/// Predictions read from the endpoint's captured responses.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PredictCapture {
    /// The capture: the local endpoint's directory, or on SageMaker the
    /// endpoint's `s3://` data capture prefix.
    pub source: SourcePlan,
    /// The labelled data's column of inference ids.
    pub id_column: String,
}

/// Predictions asked of the live endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PredictEndpoint {
    /// The endpoint.
    pub name: String,
    /// At most this many rows are sent.
    pub max_rows: u64,
    /// At most this many requests a second.
    pub rate: f64,
}

/// Default `monitor.predict-max-rows`.
pub const DEFAULT_PREDICT_MAX_ROWS: u64 = 1000;
/// Default `monitor.predict-rate` (requests a second).
pub const DEFAULT_PREDICT_RATE: f64 = 20.0;

/// What `mode: monitor` will do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct MonitorPlan {
    /// The reference data.
    pub reference: SourcePlan,
    /// The recent data.
    pub current: SourcePlan,
    /// How they are compared.
    pub settings: Settings,
    /// The quality check, when labels are given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality: Option<QualityPlan>,
    /// What happens on drift.
    pub on_drift: OnDrift,
    /// The `repository_dispatch` event type.
    pub event_type: String,
    /// The HTML report, relative to the workspace.
    pub report: String,
    /// The AWS region for `s3://` sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The metrics the quality check computes, and whether higher is better.
pub const METRICS: &[(&str, bool)] = &[
    ("accuracy", true),
    ("error-rate", false),
    ("mae", false),
    ("rmse", false),
];

fn source(
    inputs: &Inputs,
    key: &str,
    value: &str,
    capture: &SourcePlan,
) -> Result<SourcePlan, UserError> {
    if value == "capture" {
        return Ok(capture.clone());
    }
    if let Some(rest) = value.strip_prefix("s3://") {
        if rest.split('/').next().is_none_or(str::is_empty) {
            return Err(inputs.config_error(
                &["monitor", key],
                format!("`monitor.{key}`: `{value}` names no bucket: expected s3://bucket/prefix"),
            ));
        }
        return Ok(SourcePlan::S3 {
            uri: value.to_string(),
        });
    }
    if value.contains("://") {
        return Err(inputs.config_error(
            &["monitor", key],
            format!("`monitor.{key}`: `{value}`: only files in the workspace, `capture` and `s3://` prefixes are read"),
        ));
    }
    let ws = &inputs.context.workspace;
    let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());
    let what = format!("`monitor.{key}`");
    let p = inside_workspace(ws, base, Path::new(value), &what)
        .map_err(|e| inputs.config_error(&["monitor", key], e))?;
    if !p.abs.exists() {
        return Err(inputs
            .config_error(
                &["monitor", key],
                format!(
                    "{what}: `{value}` does not exist (resolved to {})",
                    p.display
                ),
            )
            .hint("paths in mlcd.yml are relative to the file's directory"));
    }
    Ok(SourcePlan::Path { path: p.display })
}

/// The training channel the reference defaults to: `train`, or the only channel.
fn training_channel(inputs: &Inputs) -> Result<String, UserError> {
    let ch = &inputs.cfg().train.channels;
    if let Some(t) = ch.get("train") {
        return Ok(t.clone());
    }
    if ch.len() == 1 {
        return Ok(ch.values().next().cloned().unwrap_or_default());
    }
    Err(UserError::invalid(
        "`mode: monitor` needs reference data: no `monitor.reference`, and no training channel to default to (`train.channels.train`)",
    )
    .hint("set `monitor.reference: data/train` (the data the production model was trained on)"))
}

/// Makes the monitoring plan.
pub fn plan(inputs: &Inputs, model: &ModelId, backend: Backend) -> Result<MonitorPlan, UserError> {
    let cfg = &inputs.cfg().monitor;
    let endpoint = inputs
        .cfg()
        .deploy
        .endpoint
        .clone()
        .unwrap_or_else(|| model.to_string());
    // Where `deploy.capture` puts the endpoint's traffic: SageMaker under
    // `<path>/<endpoint>/`, locally the directory mlcd copies the router's files to.
    let capture = match super::deploy::capture_plan(inputs, backend, &endpoint)? {
        Some(c) if c.path.starts_with("s3://") => SourcePlan::S3 {
            uri: format!("{}/{endpoint}/", c.path.trim_end_matches('/')),
        },
        Some(c) => SourcePlan::Capture {
            path: c.path,
            endpoint: endpoint.clone(),
        },
        None => SourcePlan::Capture {
            path: format!("{DEFAULT_CAPTURE_DIR}/{endpoint}"),
            endpoint: endpoint.clone(),
        },
    };

    let reference = match &cfg.reference {
        Some(r) => source(inputs, "reference", r, &capture)?,
        None => {
            let ch = training_channel(inputs)?;
            if ch.contains("://") && !ch.starts_with("s3://") {
                return Err(inputs
                    .config_error(
                        &["train", "channels"],
                        format!("the training channel `{ch}` is not readable by mlcd monitor"),
                    )
                    .hint(
                        "set `monitor.reference` to a copy of the data in the workspace or on S3",
                    ));
            }
            let key_src = if ch.starts_with("s3://") {
                SourcePlan::S3 { uri: ch }
            } else {
                let ws = &inputs.context.workspace;
                let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());
                let p = inside_workspace(ws, base, Path::new(&ch), "the training channel")
                    .map_err(|e| inputs.config_error(&["train", "channels"], e))?;
                SourcePlan::Path { path: p.display }
            };
            key_src
        }
    };
    if matches!(reference, SourcePlan::Capture { .. }) {
        return Err(inputs.config_error(
            &["monitor", "reference"],
            "`monitor.reference: capture`: the reference is the data the model was trained on, not captured traffic",
        ));
    }
    let current = source(
        inputs,
        "current",
        cfg.current.as_deref().unwrap_or("capture"),
        &capture,
    )?;

    let method = cfg.method.unwrap_or(DriftMethod::Auto);
    if let Some(t) = cfg.threshold {
        check_threshold(method, t).map_err(|e| {
            inputs.config_error(
                &["monitor", "threshold"],
                format!("`monitor.threshold`: {e}"),
            )
        })?;
    }
    for (col, t) in &cfg.thresholds {
        let m = cfg.methods.get(col).copied().unwrap_or(method);
        check_threshold(m, *t).map_err(|e| {
            inputs.config_error(
                &["monitor", "thresholds", col],
                format!("`monitor.thresholds.{col}`: {e}"),
            )
        })?;
    }
    let drift_share = cfg.drift_share.unwrap_or(DEFAULT_DRIFT_SHARE);
    if !(drift_share > 0.0 && drift_share <= 1.0) {
        return Err(inputs.config_error(
            &["monitor", "drift-share"],
            format!("`monitor.drift-share` is {drift_share}: expected a share of columns above 0 and at most 1 (default 0.5)"),
        ));
    }
    let min_rows = cfg.min_rows.unwrap_or(DEFAULT_MIN_ROWS);
    if min_rows == 0 {
        return Err(inputs.config_error(
            &["monitor", "min-rows"],
            "`monitor.min-rows` is 0: expected at least 1 row (default 30)",
        ));
    }
    let types: BTreeMap<String, Kind> = cfg
        .types
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    ColumnType::Numeric => Kind::Numeric,
                    ColumnType::Categorical => Kind::Categorical,
                },
            )
        })
        .collect();

    let quality = match &cfg.labels {
        None => None,
        Some(labels) => {
            let metric = cfg.metric.clone().unwrap_or_else(|| "accuracy".into());
            if !METRICS.iter().any(|(m, _)| *m == metric) {
                return Err(inputs.config_error(
                    &["monitor", "metric"],
                    format!(
                        "`monitor.metric` is `{metric}`: expected one of {}",
                        METRICS
                            .iter()
                            .map(|(m, _)| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let tolerance = cfg.metric_below_baseline.unwrap_or(0.0);
            if !(tolerance >= 0.0 && tolerance.is_finite()) {
                return Err(inputs.config_error(
                    &["monitor", "metric-below-baseline"],
                    format!("`monitor.metric-below-baseline` is {tolerance}: expected 0 or more (in the metric's units)"),
                ));
            }
            let predictions = cfg
                .predictions
                .clone()
                .unwrap_or_else(|| "prediction".into());
            let from = cfg.predictions_from.unwrap_or(PredictionsFrom::Column);
            if from != PredictionsFrom::Column
                && !matches!(backend, Backend::Local | Backend::Sagemaker)
            {
                return Err(inputs.config_error(
                    &["monitor", "predictions-from"],
                    format!("`monitor.predictions-from: {from}` is supported with backends `local` and `sagemaker`; backend `{backend}` is not supported yet"),
                ).hint("give the predictions in a column of the recent data (`monitor.predictions`, `predictions-from: column`)"));
            }
            let capture_from = match from {
                PredictionsFrom::Capture => {
                    if backend == Backend::Sagemaker && !matches!(capture, SourcePlan::S3 { .. }) {
                        return Err(inputs.config_error(
                            &["monitor", "predictions-from"],
                            "`monitor.predictions-from: capture` on SageMaker reads the endpoint's data capture files in S3, but `deploy.capture` is not set",
                        ).hint("set `deploy.capture: {path: s3://<bucket>/<prefix>}` (the endpoint's DataCaptureConfig), or use `predictions-from: endpoint`"));
                    }
                    Some(PredictCapture {
                        source: capture.clone(),
                        id_column: cfg
                            .id_column
                            .clone()
                            .unwrap_or_else(|| "inference_id".into()),
                    })
                }
                _ => None,
            };
            let endpoint = match from {
                PredictionsFrom::Column | PredictionsFrom::Capture => None,
                PredictionsFrom::Endpoint => {
                    let max_rows = cfg.predict_max_rows.unwrap_or(DEFAULT_PREDICT_MAX_ROWS);
                    if max_rows == 0 {
                        return Err(inputs.config_error(
                            &["monitor", "predict-max-rows"],
                            "`monitor.predict-max-rows` is 0: expected at least 1 row",
                        ));
                    }
                    let rate = cfg.predict_rate.unwrap_or(DEFAULT_PREDICT_RATE);
                    if !(rate > 0.0 && rate <= 10_000.0) {
                        return Err(inputs.config_error(
                            &["monitor", "predict-rate"],
                            format!("`monitor.predict-rate` is {rate}: expected more than 0 and at most 10000 requests a second"),
                        ));
                    }
                    Some(PredictEndpoint {
                        name: endpoint.clone(),
                        max_rows,
                        rate,
                    })
                }
            };
            Some(QualityPlan {
                from,
                endpoint,
                capture: capture_from,
                labels: labels.clone(),
                predictions,
                metric,
                tolerance,
                registry: registry_plan(inputs, model)?,
                alias: inputs
                    .cfg()
                    .train
                    .champion
                    .as_ref()
                    .and_then(|c| c.alias.clone())
                    .unwrap_or_else(|| "production".into()),
            })
        }
    };
    let mut not_features: Vec<String> = Vec::new();
    if let Some(q) = &quality {
        not_features.push(q.labels.clone());
        not_features.push(q.predictions.clone());
        if let Some(c) = &q.capture {
            not_features.push(c.id_column.clone());
        }
    }

    let event_type = cfg
        .event_type
        .clone()
        .unwrap_or_else(|| DEFAULT_EVENT_TYPE.into());
    if event_type.trim().is_empty() || event_type.len() > 100 {
        return Err(inputs.config_error(
            &["monitor", "event-type"],
            "`monitor.event-type` must be 1 to 100 characters (GitHub's limit for a repository_dispatch event type)",
        ));
    }
    let report = match &cfg.report {
        Some(r) => {
            let ws = &inputs.context.workspace;
            inside_workspace(ws, ws, Path::new(r), "`monitor.report`")
                .map_err(|e| inputs.config_error(&["monitor", "report"], e))?
                .display
        }
        None => format!(".mlcd/monitor/{model}.html"),
    };
    let region = inputs
        .cfg()
        .sagemaker
        .region
        .clone()
        .or_else(|| crate::cloud::aws::region_from_env(inputs.env));
    Ok(MonitorPlan {
        reference,
        current,
        settings: Settings {
            columns: cfg.columns.clone(),
            exclude: cfg.exclude.clone(),
            types,
            method,
            methods: cfg.methods.clone(),
            threshold: cfg.threshold,
            thresholds: cfg.thresholds.clone(),
            drift_share,
            min_rows,
            not_features,
        },
        quality,
        on_drift: cfg.on_drift.unwrap_or(OnDrift::Report),
        event_type,
        report,
        region,
    })
}
