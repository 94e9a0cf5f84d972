//! The GitHub context: which commit a run acts on, which event triggered it, and
//! (for `workflow_run`) how the upstream run ended. Read from the runner's
//! `GITHUB_*` variables and the event payload; outside GitHub, from git.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::error::UserError;

/// What triggered the run, with the parts of the payload mlcd acts on.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Trigger {
    /// Not in GitHub Actions: the CLI on a laptop or another CI.
    Local,
    /// A push to a branch or tag.
    Push,
    /// A pull request event.
    PullRequest {
        /// The PR number.
        number: u64,
        /// `opened`, `synchronize`, `closed`, …
        action: String,
        /// Closed by merging.
        merged: bool,
        /// The branch merged into.
        base_ref: String,
    },
    /// Another workflow's run completed.
    WorkflowRun {
        /// The upstream workflow's name: the run's name, else the workflow's name,
        /// else its file (`.github/workflows/ci.yml`).
        workflow: String,
        /// The upstream run's conclusion (`success`, `failure`, `cancelled`, …).
        conclusion: String,
        /// The upstream run's id.
        run_id: u64,
        /// The upstream run's page.
        html_url: String,
    },
    /// A manual run with inputs.
    WorkflowDispatch {
        /// The inputs the run was dispatched with.
        inputs: BTreeMap<String, Value>,
    },
    /// A `repository_dispatch`, e.g. from a monitoring webhook asking to retrain.
    RepositoryDispatch {
        /// The dispatch's `event_type`.
        action: String,
        /// `client_payload.reason`, when the sender said why.
        reason: Option<String>,
        /// `client_payload.model-id`, when the sender named the model.
        model_id: Option<String>,
    },
    /// A scheduled run.
    Schedule {
        /// The cron expression.
        cron: String,
    },
    /// Any other event.
    Other {
        /// The event's name.
        name: String,
    },
}

/// A pull request the run belongs to, as the event names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullRef {
    /// Its number.
    pub number: u64,
    /// Its head commit, when the event names it.
    pub head_sha: Option<String>,
}

/// Everything about the run's surroundings that plans and reports need.
#[derive(Debug, Clone, Serialize)]
pub struct GitHubContext {
    /// Running inside GitHub Actions (`GITHUB_ACTIONS=true`).
    pub in_actions: bool,
    /// The workspace: `GITHUB_WORKSPACE`, or the current directory.
    pub workspace: PathBuf,
    /// `owner/repo`.
    pub repository: Option<String>,
    /// The commit acted on (for `workflow_run`, the upstream run's `head_sha`).
    pub sha: Option<String>,
    /// The branch acted on, if any.
    pub branch: Option<String>,
    /// The tag pushed, if any (`v1.2.3`).
    pub tag: Option<String>,
    /// The repository's default branch, when the payload says it.
    pub default_branch: Option<String>,
    /// `GITHUB_RUN_ID`.
    pub run_id: Option<String>,
    /// `GITHUB_RUN_ATTEMPT`.
    pub run_attempt: Option<String>,
    /// `https://github.com` or a GHES host.
    pub server_url: String,
    /// `https://api.github.com` or a GHES API.
    pub api_url: String,
    /// The trigger.
    pub trigger: Trigger,
    /// The pull requests the event names: a `pull_request`'s own, a
    /// `workflow_run`'s `pull_requests` (empty for a fork's).
    #[serde(skip)]
    pub pull_requests: Vec<PullRef>,
}

impl GitHubContext {
    /// The run's page, when known.
    pub fn run_url(&self) -> Option<String> {
        Some(format!(
            "{}/{}/actions/runs/{}",
            self.server_url,
            self.repository.as_ref()?,
            self.run_id.as_ref()?
        ))
    }

    /// For `workflow_run`: why the upstream run is not one to act on, if it is not.
    pub fn upstream_failure(&self) -> Option<String> {
        match &self.trigger {
            Trigger::WorkflowRun {
                workflow,
                conclusion,
                html_url,
                ..
            } if conclusion != "success" => Some(format!(
                "the upstream workflow run `{workflow}` ended `{conclusion}` ({html_url})"
            )),
            _ => None,
        }
    }

    /// Reads the context from environment variables (a snapshot, for testability).
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<GitHubContext, UserError> {
        let var = |k: &str| {
            env.get(k)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        let in_actions = var("GITHUB_ACTIONS").as_deref() == Some("true");
        let workspace = match var("GITHUB_WORKSPACE") {
            Some(w) => PathBuf::from(w),
            None => std::env::current_dir().map_err(|e| {
                UserError::invalid(format!("cannot read the current directory: {e}"))
            })?,
        };
        let event_name = var("GITHUB_EVENT_NAME");
        let payload = match var("GITHUB_EVENT_PATH") {
            Some(p) => Some(read_event(Path::new(&p))?),
            None => None,
        };
        let payload = payload.unwrap_or(Value::Null);

        let mut sha = var("GITHUB_SHA");
        let (mut branch, mut tag) = match var("GITHUB_REF") {
            Some(r) => split_ref(&r),
            None => (None, None),
        };
        let default_branch = payload
            .pointer("/repository/default_branch")
            .and_then(Value::as_str)
            .map(str::to_string);
        let s = |v: &Value, p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };

        let trigger = match event_name.as_deref() {
            None => Trigger::Local,
            Some("push") => Trigger::Push,
            Some("pull_request") | Some("pull_request_target") => {
                let merged = payload
                    .pointer("/pull_request/merged")
                    .and_then(Value::as_bool)
                    == Some(true);
                let base_ref = s(&payload, "/pull_request/base/ref");
                if merged {
                    // A merged PR acts on the merge commit on the base branch.
                    if let Some(m) = payload
                        .pointer("/pull_request/merge_commit_sha")
                        .and_then(Value::as_str)
                    {
                        sha = Some(m.to_string());
                    }
                    branch = Some(base_ref.clone());
                    tag = None;
                } else if let Some(h) = payload
                    .pointer("/pull_request/head/ref")
                    .and_then(Value::as_str)
                {
                    branch = Some(h.to_string());
                }
                Trigger::PullRequest {
                    number: payload
                        .pointer("/pull_request/number")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    action: s(&payload, "/action"),
                    merged,
                    base_ref,
                }
            }
            Some("workflow_run") => {
                let run = payload.get("workflow_run").ok_or_else(|| {
                    UserError::invalid(
                        "the workflow_run event payload has no `workflow_run` object (GITHUB_EVENT_PATH)",
                    )
                })?;
                if let Some(h) = run.get("head_sha").and_then(Value::as_str) {
                    sha = Some(h.to_string());
                }
                branch = run
                    .get("head_branch")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                tag = None;
                Trigger::WorkflowRun {
                    // A run can have an empty name (a workflow file without
                    // `name:`, or a `run-name:` that evaluated to nothing): then the
                    // workflow's name, else its file.
                    workflow: [
                        s(run, "/name"),
                        s(&payload, "/workflow/name"),
                        s(run, "/path"),
                        s(&payload, "/workflow/path"),
                    ]
                    .into_iter()
                    .map(|n| n.trim().to_string())
                    .find(|n| !n.is_empty())
                    .unwrap_or_else(|| {
                        let id = run.get("id").and_then(Value::as_u64).unwrap_or(0);
                        format!("#{id}")
                    }),
                    conclusion: run
                        .get("conclusion")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                        .to_string(),
                    run_id: run.get("id").and_then(Value::as_u64).unwrap_or(0),
                    html_url: s(run, "/html_url"),
                }
            }
            Some("workflow_dispatch") => Trigger::WorkflowDispatch {
                inputs: payload
                    .get("inputs")
                    .and_then(Value::as_object)
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            },
            Some("repository_dispatch") => {
                let cp = payload
                    .get("client_payload")
                    .cloned()
                    .unwrap_or(Value::Null);
                Trigger::RepositoryDispatch {
                    action: s(&payload, "/action"),
                    reason: cp.get("reason").and_then(Value::as_str).map(str::to_string),
                    model_id: cp
                        .get("model-id")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                }
            }
            Some("schedule") => Trigger::Schedule {
                cron: s(&payload, "/schedule"),
            },
            Some(other) => Trigger::Other {
                name: other.to_string(),
            },
        };

        let pull_requests = match &trigger {
            Trigger::PullRequest { number, .. } => vec![PullRef {
                number: *number,
                head_sha: payload
                    .pointer("/pull_request/head/sha")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }],
            Trigger::WorkflowRun { .. } => payload
                .pointer("/workflow_run/pull_requests")
                .and_then(Value::as_array)
                .map(|prs| {
                    prs.iter()
                        .filter_map(|p| {
                            Some(PullRef {
                                number: p.get("number")?.as_u64()?,
                                head_sha: p
                                    .pointer("/head/sha")
                                    .and_then(Value::as_str)
                                    .map(str::to_string),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };

        if sha.is_none() && !in_actions {
            sha = git(&workspace, &["rev-parse", "HEAD"]);
            if branch.is_none() && tag.is_none() {
                branch =
                    git(&workspace, &["rev-parse", "--abbrev-ref", "HEAD"]).filter(|b| b != "HEAD");
            }
        }

        Ok(GitHubContext {
            in_actions,
            workspace,
            repository: var("GITHUB_REPOSITORY"),
            sha,
            branch,
            tag,
            default_branch,
            run_id: var("GITHUB_RUN_ID"),
            run_attempt: var("GITHUB_RUN_ATTEMPT"),
            server_url: var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into()),
            api_url: var("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            trigger,
            pull_requests,
        })
    }
}

fn split_ref(r: &str) -> (Option<String>, Option<String>) {
    if let Some(b) = r.strip_prefix("refs/heads/") {
        (Some(b.to_string()), None)
    } else if let Some(t) = r.strip_prefix("refs/tags/") {
        (None, Some(t.to_string()))
    } else {
        (None, None)
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Reads the event payload file, with errors naming `GITHUB_EVENT_PATH`.
pub fn read_event(path: &Path) -> Result<Value, UserError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UserError::invalid(format!(
            "cannot read the event payload {} (GITHUB_EVENT_PATH): {e}",
            path.display()
        ))
        .hint("the runner sets GITHUB_EVENT_PATH; when running mlcd by hand, unset it or point it at a JSON payload")
    })?;
    serde_json::from_str(&text).map_err(|e| {
        UserError::invalid(format!(
            "the event payload {} (GITHUB_EVENT_PATH) is not JSON: {e}",
            path.display()
        ))
        .at(crate::error::Location {
            file: path.to_path_buf(),
            line: e.line(),
            column: Some(e.column()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(payload: serde_json::Value) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event.json");
        std::fs::write(&path, payload.to_string()).unwrap();
        let env: BTreeMap<String, String> = [
            ("GITHUB_EVENT_NAME", "workflow_run"),
            ("GITHUB_EVENT_PATH", path.to_str().unwrap()),
            ("GITHUB_WORKSPACE", dir.path().to_str().unwrap()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        GitHubContext::from_env(&env)
            .unwrap()
            .upstream_failure()
            .unwrap()
    }

    #[test]
    fn an_upstream_run_without_a_name_is_called_by_its_workflow_name_or_file() {
        let run = |name: &str| {
            serde_json::json!({"id": 7, "name": name, "conclusion": "failure",
                "path": ".github/workflows/ci.yml", "html_url": "https://github.com/a/b/actions/runs/7"})
        };
        assert_eq!(
            upstream(serde_json::json!({"workflow_run": run("CI"), "workflow": {"name": "Build"}})),
            "the upstream workflow run `CI` ended `failure` (https://github.com/a/b/actions/runs/7)"
        );
        assert!(upstream(
            serde_json::json!({"workflow_run": run(""), "workflow": {"name": "Build"}})
        )
        .contains("run `Build` ended"));
        assert!(upstream(serde_json::json!({"workflow_run": run("  ")}))
            .contains("run `.github/workflows/ci.yml` ended"));
    }
}
