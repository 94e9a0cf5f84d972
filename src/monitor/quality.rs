//! The model-quality check: the metric of the predictions on labelled recent
//! data (accuracy, error rate, MAE, RMSE), compared with the metric the
//! registry recorded for the production version, with a tolerance.

use serde::Serialize;

use super::column::{Pairs, Sample};
use crate::error::UserError;
use crate::plan::monitor::{QualityPlan, METRICS};

/// The check's result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Quality {
    /// The metric.
    pub metric: String,
    /// Its value on the recent data.
    pub value: f64,
    /// Labelled rows it was computed on.
    pub rows: u64,
    /// The production version's value, when the registry has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    /// The production version compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_version: Option<String>,
    /// The tolerance.
    pub tolerance: f64,
    /// Worse than the baseline by more than the tolerance.
    pub degraded: bool,
    /// Why no comparison was made, when none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Whether higher values of `metric` are better.
pub fn higher_is_better(metric: &str) -> bool {
    METRICS
        .iter()
        .find(|(m, _)| *m == metric)
        .is_none_or(|(_, h)| *h)
}

/// The metric over the sample's label/prediction pairs.
pub fn compute(sample: &Sample, plan: &QualityPlan) -> Result<(f64, u64), UserError> {
    let Some(p) = &sample.pairs else {
        return Err(UserError::failed(
            "the quality check found no label/prediction pairs",
        ));
    };
    let from_endpoint = plan.endpoint.is_some();
    let not_a_column = from_endpoint || plan.capture.is_some();
    for col in [&plan.labels, &plan.predictions] {
        if not_a_column && *col == plan.predictions {
            continue;
        }
        if sample.column(col).is_none() {
            let key = if *col == plan.labels {
                "labels"
            } else {
                "predictions"
            };
            return Err(UserError::invalid(format!(
                "`monitor.{key}`: the current sample has no column `{col}` (it has {})",
                sample.names.join(", ")
            ))
            .hint("the quality check needs labelled recent data with the model's predictions in a column (or `monitor.predictions-from: endpoint`); leave `monitor.labels` out to check drift only"));
        }
    }
    if let Some(c) = &plan.capture {
        if sample.column(&c.id_column).is_none() {
            return Err(UserError::invalid(format!(
                "`monitor.id-column`: the current sample has no column `{}` (it has {})",
                c.id_column,
                sample.names.join(", ")
            ))
            .hint("`predictions-from: capture` joins the labelled rows to the captured requests by inference id: the labelled data needs a column of them"));
        }
    }
    if let (Some(c), 0) = (&plan.capture, p.n) {
        return Err(UserError::invalid(format!(
            "`monitor.predictions-from: capture`: no labelled row's `{}` matches the inference id of a captured request",
            c.id_column
        ))
        .hint("callers send the id as the X-Amzn-SageMaker-Inference-Id header; the labelled data carries it in `monitor.id-column`. Check that the capture holds the traffic those labels are for"));
    }
    if p.n == 0 {
        return Err(UserError::invalid(if from_endpoint {
            format!(
                "no row of the current sample has a `{}` label to ask the endpoint about",
                plan.labels
            )
        } else {
            format!(
                "no row of the current sample has both `{}` and `{}`",
                plan.labels, plan.predictions
            )
        }));
    }
    let value = metric_value(p, &plan.metric).map_err(|e| match &p.first_text {
        Some((v, at)) => UserError::invalid(format!("{e}: `{v}` at {}", sample.at(*at))),
        None => UserError::invalid(e),
    })?;
    Ok((value, p.n))
}

fn metric_value(p: &Pairs, metric: &str) -> Result<f64, String> {
    let n = p.n as f64;
    Ok(match metric {
        "accuracy" => p.correct as f64 / n,
        "error-rate" => 1.0 - p.correct as f64 / n,
        "mae" | "rmse" if p.first_text.is_some() => {
            return Err(format!("`{metric}` needs numeric labels and predictions"))
        }
        "mae" => p.abs_err / n,
        "rmse" => (p.sq_err / n).sqrt(),
        other => return Err(format!("unknown metric `{other}`")),
    })
}

/// Compares `value` with the baseline: degraded when worse by more than the tolerance.
pub fn degraded(metric: &str, value: f64, baseline: f64, tolerance: f64) -> bool {
    if higher_is_better(metric) {
        value < baseline - tolerance
    } else {
        value > baseline + tolerance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worse_by_more_than_the_tolerance_is_degraded() {
        assert!(degraded("accuracy", 0.80, 0.90, 0.05));
        assert!(!degraded("accuracy", 0.86, 0.90, 0.05));
        assert!(degraded("mae", 2.0, 1.0, 0.5));
        assert!(!degraded("rmse", 1.2, 1.0, 0.5));
    }
}
