//! Predictions for the quality check asked of the live endpoint: the labelled
//! rows the reader kept (at most `predict-max-rows`) are sent one a request to
//! the version taking most of the live traffic, directly (not through the
//! router, so they are neither captured nor counted as live traffic), at most
//! `predict-rate` requests a second; each answer's prediction is folded into the
//! label/prediction pairs (any [`ServingBackend`]: the local router's version,
//! or a SageMaker variant through InvokeEndpoint). Or, with no extra load on the
//! endpoint, the predictions its capture recorded (the local capture directory,
//! or SageMaker's data capture files in S3): each captured response's
//! prediction under the request's inference id, joined to the labelled rows by
//! their id column.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use serde_json::{json, Value};

use super::column::{Kept, Pairs};
use crate::error::UserError;
use crate::plan::monitor::PredictEndpoint;
use crate::serve::{Invocation, ServingBackend};

/// What was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The version that answered.
    pub version: String,
    /// Requests sent.
    pub requests: u64,
    /// Labelled rows not sent (over `predict-max-rows`).
    pub left_out: u64,
}

/// Sends the kept rows to the endpoint's live version and folds the answers
/// into `pairs`. `label` names the label column: an answer row that is an
/// object gives its field of that name.
pub async fn ask_endpoint(
    backend: &dyn ServingBackend,
    target: &PredictEndpoint,
    kept: &Kept,
    label: &str,
    pairs: &mut Pairs,
) -> Result<Asked, UserError> {
    let endpoint = &target.name;
    let status = backend.status(endpoint).await?.ok_or_else(|| {
        UserError::invalid(format!(
            "`monitor.predictions-from: endpoint`: endpoint `{endpoint}` does not exist on the {} backend",
            backend.name()
        ))
        .hint("deploy the model first (`mlcd deploy`), or give the predictions in a column of the recent data (`monitor.predictions`)")
    })?;
    let version = status
        .variants
        .iter()
        .filter(|v| !v.shadow && v.weight > 0)
        .max_by_key(|v| v.weight)
        .map(|v| v.version.clone())
        .ok_or_else(|| {
            UserError::failed(format!(
                "`monitor.predictions-from: endpoint`: no version of endpoint `{endpoint}` takes live traffic"
            ))
        })?;
    let gap = Duration::from_secs_f64(1.0 / target.rate);
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut requests = 0;
    for (row, l, origin) in &kept.rows {
        tick.tick().await;
        let body = json!({ "instances": [row] }).to_string().into_bytes();
        let answer = backend
            .invoke(
                endpoint,
                &version,
                &Invocation {
                    body,
                    content_type: "application/json".into(),
                },
            )
            .await?;
        requests += 1;
        let text = String::from_utf8_lossy(&answer.body);
        if answer.status != 200 {
            return Err(UserError::failed(format!(
                "`monitor.predictions-from: endpoint`: version `{version}` of endpoint `{endpoint}` answered HTTP {} to the row at line {}: {}",
                answer.status,
                origin.line,
                crate::secrets::redact(&text).chars().take(200).collect::<String>()
            )));
        }
        let prediction = prediction_of(&text, label).map_err(|why| {
            UserError::failed(format!(
                "`monitor.predictions-from: endpoint`: the answer of endpoint `{endpoint}` to the row at line {} {why}: {}",
                origin.line,
                crate::secrets::redact(&text).chars().take(200).collect::<String>()
            ))
            .hint(format!("the quality check reads `{{\"predictions\": [p]}}` (or `[p]`, or `p`) where p is a value or an object with a field `{label}` (the label column's name)"))
        })?;
        pairs.fold(Some(l.clone()), Some(prediction), *origin);
    }
    Ok(Asked {
        version,
        requests,
        left_out: kept.left_out,
    })
}

/// What a capture held: inference id → prediction, and the records without an
/// inference id or a response (not usable for the join).
#[derive(Debug, Default)]
pub struct Captured {
    /// Inference id → prediction.
    pub by_id: HashMap<String, String>,
    /// Records read.
    pub records: u64,
    /// Records without an inference id or an `endpointOutput`.
    pub unusable: u64,
    /// S3 objects read (0 for a local directory).
    pub files: u64,
}

/// Reads the capture files under `dir` (`display` in errors): each record's
/// `eventMetadata.inferenceId` and the prediction in its `endpointOutput`.
pub fn captured_predictions(dir: &Path, display: &str, label: &str) -> Result<Captured, UserError> {
    let mut out = Captured::default();
    for file in super::read::files_of(dir, "`monitor.predictions-from: capture`")? {
        let shown = match file.strip_prefix(dir) {
            Ok(rel) => format!("{display}/{}", rel.display()),
            Err(_) => display.to_string(),
        };
        let f = std::fs::File::open(&file)
            .map_err(|e| UserError::invalid(format!("cannot open `{shown}`: {e}")))?;
        fold_capture(std::io::BufReader::new(f), &shown, label, &mut out)?;
    }
    Ok(out)
}

/// The same from SageMaker's data capture files under an `s3://` prefix (the
/// endpoint's DataCaptureConfig destination): every `.jsonl` object listed,
/// fetched and read in turn.
pub async fn captured_predictions_s3(
    uri: &str,
    region: Option<&str>,
    env: &BTreeMap<String, String>,
    label: &str,
) -> Result<Captured, UserError> {
    let (s3, bucket, prefix) =
        super::source::open_s3(uri, "predictions-from: capture", region, env).await?;
    let objects = s3
        .list_objects(&bucket, &prefix)
        .await
        .map_err(UserError::from)?;
    let mut out = Captured::default();
    for (object, _) in objects.iter().filter(|(k, _)| k.ends_with(".jsonl")) {
        let body = s3
            .get_object(&bucket, object)
            .await
            .map_err(UserError::from)?;
        let shown = format!("s3://{bucket}/{object}");
        fold_capture(body.as_slice(), &shown, label, &mut out)?;
        out.files += 1;
    }
    Ok(out)
}

/// Folds one capture file's records (`shown` in errors) into `out`.
fn fold_capture(
    reader: impl BufRead,
    shown: &str,
    label: &str,
    out: &mut Captured,
) -> Result<(), UserError> {
    for (n, line) in reader.lines().enumerate() {
        let line =
            line.map_err(|e| UserError::invalid(format!("{shown}:{}: cannot read: {e}", n + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| {
            UserError::invalid(format!(
                "{shown}:{}: not a data capture record ({e})",
                n + 1
            ))
        })?;
        out.records += 1;
        let id = v["eventMetadata"]["inferenceId"].as_str();
        let output = &v["captureData"]["endpointOutput"];
        let (Some(id), Some(data)) = (id, output["data"].as_str()) else {
            out.unusable += 1;
            continue;
        };
        let text = if output["encoding"] == "BASE64" {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    UserError::invalid(format!(
                        "{shown}:{}: `endpointOutput.data` is not base64 ({e})",
                        n + 1
                    ))
                })?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            data.to_string()
        };
        let p = prediction_of(&text, label).map_err(|why| {
            UserError::invalid(format!(
                "{shown}:{}: the captured response {why}",
                n + 1
            ))
            .hint(format!("the quality check reads `{{\"predictions\": [p]}}` (or `[p]`, or `p`) where p is a value or an object with a field `{label}`: one row a request"))
        })?;
        out.by_id.insert(id.to_string(), p);
    }
    Ok(())
}

/// The one prediction in an answer: `{"predictions": [p]}`, `[p]` or `p`, where
/// `p` is a scalar or an object holding the field `label`.
pub fn prediction_of(body: &str, label: &str) -> Result<String, String> {
    let v: Value = serde_json::from_str(body.trim())
        .or_else(|_| Ok::<_, String>(Value::String(body.trim().into())))?;
    let first = match &v {
        Value::Object(m) if m.contains_key("predictions") => match &m["predictions"] {
            Value::Array(a) if a.len() == 1 => a[0].clone(),
            other => {
                return Err(format!(
                    "has `predictions` that is not a list of one ({other})"
                ))
            }
        },
        Value::Array(a) if a.len() == 1 => a[0].clone(),
        Value::Array(a) => return Err(format!("is a list of {} values, not one", a.len())),
        other => other.clone(),
    };
    let p = match &first {
        Value::Object(m) => m
            .get(label)
            .cloned()
            .ok_or_else(|| format!("has no field `{label}` in its prediction"))?,
        other => other.clone(),
    };
    match p {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("has a prediction that is not a value ({other})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prediction_is_found_in_the_usual_answer_shapes() {
        let label = "churn";
        assert_eq!(
            prediction_of(
                r#"{"predictions":[{"churn_probability":0.8,"churn":1}]}"#,
                label
            )
            .unwrap(),
            "1"
        );
        assert_eq!(prediction_of("[0.5]", label).unwrap(), "0.5");
        assert_eq!(prediction_of("yes", label).unwrap(), "yes");
        assert!(prediction_of(r#"{"predictions":[{"p":1}]}"#, label)
            .unwrap_err()
            .contains("no field `churn`"));
        assert!(prediction_of("[1,2]", label)
            .unwrap_err()
            .contains("2 values"));
    }
}
