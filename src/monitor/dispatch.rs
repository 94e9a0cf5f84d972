//! `on-drift: dispatch`: a `repository_dispatch` to this repository
//! (`POST /repos/{owner}/{repo}/dispatches`) that starts the retraining
//! workflow. The `client_payload` stays inside GitHub's limits (at most 10
//! top-level keys, 64 KB): the drifted columns are cut to fit, their count kept.

use std::time::Duration;

use octocrab::Octocrab;
use serde_json::{json, Value};

use crate::error::UserError;
use crate::secrets::{redact, Secret};

/// GitHub's limit on `client_payload`'s top-level keys.
pub const MAX_KEYS: usize = 10;
/// GitHub's limit on `client_payload`'s size (bytes of JSON).
pub const MAX_BYTES: usize = 64 * 1024;
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What the retraining workflow is told.
#[derive(Debug, Clone)]
pub struct Why {
    /// `drift` or `degraded`.
    pub reason: String,
    /// The model.
    pub model_id: String,
    /// `drifted` or `degraded`.
    pub status: String,
    /// The share of drifted columns.
    pub drift_share: f64,
    /// The drifted columns.
    pub drifted_columns: Vec<String>,
    /// This run's page.
    pub run_url: Option<String>,
    /// The commit monitored.
    pub commit: Option<String>,
    /// The quality check's numbers, when it ran.
    pub quality: Option<Value>,
}

/// The `client_payload`: at most [`MAX_KEYS`] keys and [`MAX_BYTES`] bytes.
pub fn payload(why: &Why) -> Value {
    let mut cols = why.drifted_columns.clone();
    loop {
        let mut p = json!({
            "reason": why.reason,
            "model-id": why.model_id,
            "status": why.status,
            "drift-share": why.drift_share,
            "drifted-columns": cols,
            "drifted-count": why.drifted_columns.len(),
        });
        let m = p.as_object_mut().expect("an object");
        if let Some(u) = &why.run_url {
            m.insert("run-url".into(), json!(u));
        }
        if let Some(c) = &why.commit {
            m.insert("commit".into(), json!(c));
        }
        if let Some(q) = &why.quality {
            m.insert("quality".into(), q.clone());
        }
        debug_assert!(m.len() <= MAX_KEYS);
        // Leave room for the event type and the envelope.
        if p.to_string().len() <= MAX_BYTES - 1024 || cols.is_empty() {
            return p;
        }
        let keep = cols.len() / 2;
        cols.truncate(keep);
    }
}

/// Sends the dispatch: `event_type` with the payload, to `repository` at `api_url`.
pub async fn send(
    api_url: &str,
    token: &Secret,
    repository: &str,
    event_type: &str,
    client_payload: &Value,
) -> Result<(), UserError> {
    if repository.split_once('/').is_none() {
        return Err(UserError::invalid(format!(
            "GITHUB_REPOSITORY `{repository}` is not owner/repo"
        )));
    }
    let octo = Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| UserError::invalid(format!("GITHUB_API_URL `{api_url}`: {e}")))?
        .personal_token(token.expose().to_string())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(CALL_TIMEOUT))
        .build()
        .map_err(|e| UserError::failed(format!("a GitHub client: {}", redact(&e.to_string()))))?;
    let url = format!(
        "{}/repos/{repository}/dispatches",
        api_url.trim_end_matches('/')
    );
    let body = json!({"event_type": event_type, "client_payload": client_payload});
    let fut = async {
        let resp = octo._post(url.as_str(), Some(&body)).await?;
        octocrab::map_github_error(resp).await
    };
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(octocrab::Error::GitHub { source, .. })) => {
            let status = source.status_code.as_u16();
            let e = UserError::failed(format!(
                "the repository_dispatch `{event_type}` to {repository} was refused (HTTP {status}: {})",
                source.message
            ));
            Err(if status == 403 || status == 404 {
                e.hint("the token needs `contents: write` on the repository (add `permissions: { contents: write }` to the job; a fine-grained token needs Contents read and write)")
            } else {
                e
            })
        }
        Ok(Err(e)) => Err(UserError::failed(format!(
            "the repository_dispatch `{event_type}` to {repository} failed: {}",
            redact(&e.to_string())
        ))),
        Err(_) => Err(UserError::failed(format!(
            "GitHub did not answer the repository_dispatch within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_stays_under_githubs_limits_with_many_columns() {
        let why = Why {
            reason: "drift".into(),
            model_id: "churn".into(),
            status: "drifted".into(),
            drift_share: 1.0,
            drifted_columns: (0..20_000)
                .map(|i| format!("a_rather_long_column_name_{i}"))
                .collect(),
            run_url: Some("https://github.com/o/r/actions/runs/1".into()),
            commit: Some("a".repeat(40)),
            quality: Some(json!({"metric": "accuracy", "value": 0.7, "baseline": 0.9})),
        };
        let p = payload(&why);
        assert!(p.as_object().unwrap().len() <= MAX_KEYS);
        assert!(p.to_string().len() <= MAX_BYTES);
        assert_eq!(p["drifted-count"], 20_000);
        assert!(!p["drifted-columns"].as_array().unwrap().is_empty());
    }
}
