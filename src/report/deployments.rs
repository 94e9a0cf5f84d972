//! GitHub Deployments: one deployment per rollout (`auto_merge: false`,
//! `required_contexts: []`, so GitHub never merges or waits on checks), with
//! statuses `in_progress` → `success` / `failure`, and `inactive` on the
//! version a rollback replaced. Every call is bounded; a token without
//! `deployments: write` gets one warning and the rollout carries on.

use std::time::Duration;

use octocrab::Octocrab;
use serde_json::{json, Value};

use crate::secrets::{redact, Secret};

/// No single GitHub call may hold the rollout up longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A deployment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The rollout is under way.
    InProgress,
    /// Waiting on someone else (a GitOps pull request to be merged).
    Queued,
    /// The version serves.
    Success,
    /// The rollout failed (and was rolled back).
    Failure,
    /// Replaced: a rollback took this version out.
    Inactive,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::InProgress => "in_progress",
            State::Queued => "queued",
            State::Success => "success",
            State::Failure => "failure",
            State::Inactive => "inactive",
        }
    }
}

/// A GitHub deployment being reported.
pub struct Deployment {
    octo: Octocrab,
    route: String,
    /// The deployment's id, once created.
    pub id: Option<u64>,
    /// API calls made.
    pub calls: usize,
}

async fn bounded<T>(
    fut: impl std::future::Future<Output = octocrab::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(octocrab::Error::GitHub { source, .. })) => {
            let status = source.status_code.as_u16();
            let hint = if status == 403 || status == 404 {
                ": the token lacks `deployments: write` (add `permissions: { deployments: write }` to the job)"
            } else {
                ""
            };
            Err(format!("HTTP {status}: {}{hint}", source.message))
        }
        Ok(Err(e)) => Err(redact(&e.to_string())),
        Err(_) => Err(format!(
            "GitHub did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        )),
    }
}

impl Deployment {
    /// A client for `owner/repo` at `api_url`.
    pub fn client(api_url: &str, token: &Secret, repository: &str) -> Result<Deployment, String> {
        if repository.split_once('/').is_none() {
            return Err(format!(
                "GITHUB_REPOSITORY `{repository}` is not owner/repo"
            ));
        }
        let octo = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| format!("GITHUB_API_URL `{api_url}`: {e}"))?
            .personal_token(token.expose().to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Deployment {
            octo,
            route: format!("/repos/{repository}/deployments"),
            id: None,
            calls: 0,
        })
    }

    /// Creates the deployment of `sha` to `environment`.
    pub async fn create(
        &mut self,
        sha: &str,
        environment: &str,
        description: &str,
        payload: Value,
    ) -> Result<u64, String> {
        let body = json!({
            "ref": sha,
            "task": "deploy",
            "auto_merge": false,
            "required_contexts": [],
            "environment": environment,
            "description": description.chars().take(140).collect::<String>(),
            "payload": payload,
            "production_environment": environment == "production",
        });
        self.calls += 1;
        let v: Value = bounded(self.octo.post(self.route.clone(), Some(&body))).await?;
        let id = v["id"]
            .as_u64()
            .ok_or_else(|| format!("GitHub answered the deployment without an id: {v}"))?;
        self.id = Some(id);
        Ok(id)
    }

    /// Adds a status to deployment `id` (this rollout's, or an earlier one's).
    pub async fn status(
        &mut self,
        id: u64,
        state: State,
        description: &str,
        environment_url: Option<&str>,
        log_url: Option<&str>,
    ) -> Result<(), String> {
        let mut body = json!({
            "state": state.as_str(),
            "description": description.chars().take(140).collect::<String>(),
        });
        if let Some(u) = environment_url {
            body["environment_url"] = u.into();
        }
        if let Some(u) = log_url {
            body["log_url"] = u.into();
        }
        self.calls += 1;
        let _: Value = bounded(
            self.octo
                .post(format!("{}/{id}/statuses", self.route), Some(&body)),
        )
        .await?;
        Ok(())
    }
}
