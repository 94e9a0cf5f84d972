//! Argo CD's REST API, the one call mlcd needs: `GET /api/v1/applications/{name}`
//! with `refresh=normal` (Argo CD re-reads the repository), read into the fields a
//! rollout is judged by — sync status and revision, the last operation's phase,
//! health. Bearer token from the environment variable the config names, masked.

use std::time::Duration;

use serde_json::Value;

use crate::secrets::{redact, Secret};

/// What the application reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppStatus {
    /// `status.sync.status`: `Synced`, `OutOfSync`, `Unknown`.
    pub sync: String,
    /// `status.sync.revision`: the commit last compared and synced.
    pub revision: Option<String>,
    /// `status.operationState.phase`: `Running`, `Succeeded`, `Failed`, `Error`, `Terminating`.
    pub phase: Option<String>,
    /// `status.operationState.syncResult.revision` (else the operation's revision).
    pub operation_revision: Option<String>,
    /// `status.operationState.message`.
    pub message: Option<String>,
    /// `status.health.status`: `Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`, `Unknown`.
    pub health: String,
    /// `status.health.message`.
    pub health_message: Option<String>,
}

impl AppStatus {
    /// Reads the fields from an Application object.
    pub fn from_json(v: &Value) -> AppStatus {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_string);
        AppStatus {
            sync: s("/status/sync/status").unwrap_or_else(|| "Unknown".into()),
            revision: s("/status/sync/revision"),
            phase: s("/status/operationState/phase"),
            operation_revision: s("/status/operationState/syncResult/revision")
                .or_else(|| s("/status/operationState/operation/sync/revision")),
            message: s("/status/operationState/message"),
            health: s("/status/health/status").unwrap_or_else(|| "Unknown".into()),
            health_message: s("/status/health/message"),
        }
    }

    /// One line for logs: `Synced at 3f9a2c1d, Succeeded, Healthy`.
    pub fn line(&self) -> String {
        format!(
            "{} at {}, operation {}, {}",
            self.sync,
            self.revision
                .as_deref()
                .map_or("(none)", |r| &r[..r.len().min(12)]),
            self.phase.as_deref().unwrap_or("(none)"),
            self.health
        )
    }
}

/// A client for one Argo CD server.
pub struct ArgoCd {
    http: reqwest::Client,
    server: String,
    token: Secret,
    /// API calls made.
    pub calls: usize,
}

impl ArgoCd {
    /// A client for `server` (`https://argocd.acme.dev`) with a bearer `token`.
    pub fn new(server: &str, token: Secret) -> Result<ArgoCd, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ArgoCd {
            http,
            server: server.trim_end_matches('/').to_string(),
            token,
            calls: 0,
        })
    }

    /// The application `app`, refreshed.
    pub async fn get(&mut self, app: &str) -> Result<AppStatus, String> {
        self.calls += 1;
        let url = format!("{}/api/v1/applications/{app}?refresh=normal", self.server);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| redact(&format!("Argo CD at {}: {e}", self.server)))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["message"].as_str().unwrap_or("").to_string();
            let hint = match status.as_u16() {
                401 | 403 => " (check the token in the variable `deploy.gitops.argocd.token-env` names: it needs `applications, get` on the application)",
                404 => " (check `deploy.gitops.argocd.app`)",
                _ => "",
            };
            return Err(redact(&format!(
                "Argo CD answered HTTP {} for application `{app}`: {msg}{hint}",
                status.as_u16()
            )));
        }
        Ok(AppStatus::from_json(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_come_from_their_documented_places() {
        let v = serde_json::json!({"status": {
            "sync": {"status": "Synced", "revision": "abc"},
            "health": {"status": "Degraded", "message": "timed out"},
            "operationState": {"phase": "Succeeded", "message": "ok", "syncResult": {"revision": "abc"}}
        }});
        let s = AppStatus::from_json(&v);
        assert_eq!(s.sync, "Synced");
        assert_eq!(s.revision.as_deref(), Some("abc"));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(s.operation_revision.as_deref(), Some("abc"));
        assert_eq!(s.health, "Degraded");
        assert_eq!(
            AppStatus::from_json(&serde_json::json!({})).health,
            "Unknown"
        );
    }
}
