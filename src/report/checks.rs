//! Check runs through octocrab: created `in_progress` when a mode starts, completed
//! with a conclusion, title, summary and annotations (at most 50 a request, so
//! more go in further updates). Every call is bounded; a token without
//! `checks: write` gets one clear warning and the run carries on.

use std::time::Duration;

use octocrab::models::CheckRunId;
use octocrab::params::checks::{
    CheckRunConclusion, CheckRunOutput, CheckRunOutputAnnotation, CheckRunOutputAnnotationLevel,
    CheckRunStatus,
};
use octocrab::Octocrab;

use super::commands::{Annotation, Level};
use crate::error::Outcome;
use crate::secrets::Secret;

/// GitHub takes at most 50 annotations per create or update request.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;
/// GitHub's limit on `output.summary` and `output.text`.
const OUTPUT_LIMIT: usize = 65_535;
/// No single GitHub call may hold the run up longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a check-run call did not go through.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The token may not write checks (fork pull requests, missing `permissions:`).
    #[error("the token cannot write check runs (HTTP {status}: {message})")]
    Forbidden {
        /// 403 or 404.
        status: u16,
        /// GitHub's message.
        message: String,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

/// A check run on one commit.
pub struct CheckRun {
    octo: Octocrab,
    owner: String,
    repo: String,
    id: Option<CheckRunId>,
    /// The check run's page, once created.
    pub html_url: Option<String>,
    /// API calls made so far.
    pub calls: usize,
}

fn classify(e: octocrab::Error) -> CheckError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            if status == 403 || status == 404 {
                CheckError::Forbidden {
                    status,
                    message: source.message.clone(),
                }
            } else {
                CheckError::Other(format!("HTTP {status}: {}", source.message))
            }
        }
        other => CheckError::Other(crate::secrets::redact(&other.to_string())),
    }
}

fn conclusion(outcome: Outcome) -> CheckRunConclusion {
    match outcome {
        Outcome::Succeeded => CheckRunConclusion::Success,
        Outcome::Planned | Outcome::Submitted => CheckRunConclusion::Neutral,
        Outcome::Failed | Outcome::Invalid => CheckRunConclusion::Failure,
        Outcome::TimedOut => CheckRunConclusion::TimedOut,
        Outcome::Cancelled => CheckRunConclusion::Cancelled,
    }
}

fn cut(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit - 40;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n\n…(cut at GitHub's limit)", &s[..end])
}

fn to_github(a: &Annotation) -> Option<CheckRunOutputAnnotation> {
    let l = a.location.as_ref()?;
    let line = u32::try_from(l.line).ok()?;
    Some(CheckRunOutputAnnotation {
        path: l.file.display().to_string(),
        start_line: line,
        end_line: line,
        // Columns are only allowed on single-line annotations, as here.
        start_column: l.column.and_then(|c| u32::try_from(c).ok()),
        end_column: l.column.and_then(|c| u32::try_from(c).ok()),
        annotation_level: match a.level {
            Level::Notice => CheckRunOutputAnnotationLevel::Notice,
            Level::Warning => CheckRunOutputAnnotationLevel::Warning,
            Level::Error => CheckRunOutputAnnotationLevel::Failure,
        },
        message: cut(&a.message, OUTPUT_LIMIT),
        title: Some(a.title.chars().take(255).collect()),
        raw_details: None,
    })
}

/// One GitHub call, bounded by [`CALL_TIMEOUT`], its error classified (shared
/// with the pull-request comment).
pub(crate) async fn bounded<T>(
    fut: impl std::future::Future<Output = octocrab::Result<T>>,
) -> Result<T, CheckError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(CheckError::Other(format!(
            "GitHub did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// An octocrab client for `api_url` (GitHub, GHES, or a test fake) with the
/// token and bounded connect and read timeouts.
pub(crate) fn client(api_url: &str, token: &Secret) -> Result<Octocrab, CheckError> {
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| CheckError::Other(format!("GITHUB_API_URL `{api_url}`: {e}")))?
        .personal_token(token.expose().to_string())
        .set_connect_timeout(Some(Duration::from_secs(10)))
        .set_read_timeout(Some(CALL_TIMEOUT))
        .build()
        .map_err(|e| CheckError::Other(e.to_string()))
}

impl CheckRun {
    /// A client for `owner/repo` at `api_url` (GitHub, GHES, or a test fake).
    pub fn client(api_url: &str, token: &Secret, repository: &str) -> Result<CheckRun, CheckError> {
        let (owner, repo) = repository.split_once('/').ok_or_else(|| {
            CheckError::Other(format!(
                "GITHUB_REPOSITORY `{repository}` is not owner/repo"
            ))
        })?;
        let octo = client(api_url, token)?;
        Ok(CheckRun {
            octo,
            owner: owner.to_string(),
            repo: repo.to_string(),
            id: None,
            html_url: None,
            calls: 0,
        })
    }

    /// Creates the check run, `in_progress`.
    pub async fn start(
        &mut self,
        name: &str,
        head_sha: &str,
        details_url: Option<&str>,
    ) -> Result<(), CheckError> {
        self.calls += 1;
        let checks = self.octo.checks(&self.owner, &self.repo);
        let mut b = checks
            .create_check_run(name, head_sha)
            .status(CheckRunStatus::InProgress);
        if let Some(u) = details_url {
            b = b.details_url(u);
        }
        let run = bounded(b.send()).await?;
        self.id = Some(run.id);
        self.html_url = run.html_url;
        Ok(())
    }

    /// Whether the run was created.
    pub fn started(&self) -> bool {
        self.id.is_some()
    }

    /// Completes the run with the outcome, and sends every annotation in batches of 50.
    pub async fn complete(
        &mut self,
        outcome: Outcome,
        title: &str,
        summary: &str,
        text: Option<&str>,
        annotations: &[Annotation],
    ) -> Result<(), CheckError> {
        let Some(id) = self.id else {
            return Ok(());
        };
        let all: Vec<CheckRunOutputAnnotation> = annotations.iter().filter_map(to_github).collect();
        let mut batches: Vec<Vec<CheckRunOutputAnnotation>> = Vec::new();
        let mut it = all.into_iter().peekable();
        while it.peek().is_some() {
            batches.push(it.by_ref().take(ANNOTATIONS_PER_REQUEST).collect());
        }
        if batches.is_empty() {
            batches.push(Vec::new());
        }
        let title = cut(title, 1000);
        let summary = cut(summary, OUTPUT_LIMIT);
        let text = text.map(|t| cut(t, OUTPUT_LIMIT));
        let last = batches.len() - 1;
        // Annotation batches first; the last request completes the run, so a
        // completed run always holds every annotation.
        for (i, batch) in batches.into_iter().enumerate() {
            let output = CheckRunOutput {
                title: title.clone(),
                summary: summary.clone(),
                text: text.clone(),
                annotations: batch,
                images: Vec::new(),
            };
            let checks = self.octo.checks(&self.owner, &self.repo);
            let mut b = checks.update_check_run(id).output(output);
            if i == last {
                b = b
                    .status(CheckRunStatus::Completed)
                    .conclusion(conclusion(outcome))
                    .completed_at(chrono::Utc::now());
            }
            self.calls += 1;
            bounded(b.send()).await?;
        }
        Ok(())
    }
}
