//! Posting the comment through GitHub's REST API (octocrab): find the pull
//! requests the run belongs to (the `pull_request` event's, a `workflow_run`'s
//! `pull_requests`, else `GET /repos/{o}/{r}/commits/{sha}/pulls`), list their
//! comments, edit the one carrying this model's marker or create it; with no
//! pull request, the same on the commit's comments. Every call is bounded.

use octocrab::Octocrab;
use serde_json::{json, Value};

use super::body::{self, Header, Section};
use crate::context::PullRef;
use crate::report::checks::{self, CheckError};
use crate::secrets::Secret;

/// At most this many pull requests of one commit get the comment.
const MAX_PULLS: usize = 3;
/// Comments are listed 100 a page, at most this many pages.
const MAX_PAGES: u32 = 30;

/// Where the comment goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Place {
    /// These pull requests (from the event).
    Pulls(Vec<PullRef>),
    /// The pull requests GitHub associates with the commit, else the commit.
    LookUp,
    /// The commit itself (a schedule, a dispatch).
    Commit,
}

/// Everything needed to post a model's comment.
#[derive(Debug, Clone)]
pub struct Target {
    /// GitHub's API (`GITHUB_API_URL`).
    pub api_url: String,
    /// `https://github.com` (for commit links).
    pub server_url: String,
    /// The token.
    pub token: Secret,
    /// `owner/repo`.
    pub repository: String,
    /// The commit the run acted on (full SHA).
    pub sha: String,
    /// Where the comment goes.
    pub place: Place,
    /// The model's slug (the marker).
    pub model: String,
    /// The run's page.
    pub run_url: Option<String>,
}

/// Why the comment was not posted.
#[derive(Debug, thiserror::Error)]
pub enum CommentError {
    /// The token may not write comments (HTTP 403/404).
    #[error("HTTP {status} from {what}: {message}")]
    Forbidden {
        /// 403 or 404.
        status: u16,
        /// GitHub's message.
        message: String,
        /// The call refused (`GET /repos/o/r/commits/…/pulls`).
        what: String,
    },
    /// Any other failure.
    #[error("{0}")]
    Other(String),
}

/// A comment written.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    /// Its page.
    pub html_url: String,
    /// Whether an existing comment was edited (else one was created).
    pub edited: bool,
}

fn classify(what: String) -> impl FnOnce(CheckError) -> CommentError {
    move |e| match e {
        CheckError::Forbidden { status, message } => CommentError::Forbidden {
            status,
            message,
            what,
        },
        CheckError::Other(m) => CommentError::Other(format!("{what}: {m}")),
    }
}

struct Api<'a> {
    octo: Octocrab,
    repo: &'a str,
    calls: usize,
}

impl Api<'_> {
    async fn get(&mut self, path: &str, page: u32) -> Result<Value, CommentError> {
        self.calls += 1;
        let route = format!("/repos/{}{path}", self.repo);
        let q = [("per_page", "100".to_string()), ("page", page.to_string())];
        checks::bounded(self.octo.get::<Value, _, _>(&route, Some(&q)))
            .await
            .map_err(classify(format!("GET {route}")))
    }

    async fn send(&mut self, method: &str, path: &str, text: &str) -> Result<Value, CommentError> {
        self.calls += 1;
        let route = format!("/repos/{}{path}", self.repo);
        let b = json!({ "body": text });
        let r = if method == "PATCH" {
            checks::bounded(self.octo.patch::<Value, _, _>(&route, Some(&b))).await
        } else {
            checks::bounded(self.octo.post::<_, Value>(&route, Some(&b))).await
        };
        r.map_err(classify(format!("{method} {route}")))
    }

    /// Every item of a listing, page by page.
    async fn all(&mut self, path: &str) -> Result<Vec<Value>, CommentError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let items = self.get(path, page).await?;
            let items = items.as_array().cloned().unwrap_or_default();
            let n = items.len();
            out.extend(items);
            if n < 100 {
                break;
            }
        }
        Ok(out)
    }

    /// Edits the comment carrying `marker` among `list`, else creates one.
    async fn upsert(
        &mut self,
        list: &str,
        create: &str,
        edit: &str,
        marker: &str,
        render: impl FnOnce(Option<&str>) -> String,
    ) -> Result<Posted, CommentError> {
        let ours = self
            .all(list)
            .await?
            .into_iter()
            .filter(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
            .min_by_key(|c| c["id"].as_u64().unwrap_or(u64::MAX));
        let (answer, edited) = match ours {
            Some(c) => {
                let text = render(c["body"].as_str());
                let id = c["id"].as_u64().unwrap_or_default();
                (
                    self.send("PATCH", &format!("{edit}/{id}"), &text).await?,
                    true,
                )
            }
            None => (self.send("POST", create, &render(None)).await?, false),
        };
        Ok(Posted {
            html_url: answer["html_url"].as_str().unwrap_or_default().to_string(),
            edited,
        })
    }
}

/// Posts (or edits) the model's comment with this run's `section` (Markdown),
/// keeping the sections other runs wrote. Returns what was written and the
/// number of API calls made.
pub async fn publish(
    t: &Target,
    mode: &str,
    section: &str,
) -> (Result<Vec<Posted>, CommentError>, usize) {
    let octo = match checks::client(&t.api_url, &t.token) {
        Ok(o) => o,
        Err(e) => return (Err(CommentError::Other(e.to_string())), 0),
    };
    let mut api = Api {
        octo,
        repo: &t.repository,
        calls: 0,
    };
    let r = publish_with(&mut api, t, mode, section).await;
    (r, api.calls)
}

async fn publish_with(
    api: &mut Api<'_>,
    t: &Target,
    mode: &str,
    section: &str,
) -> Result<Vec<Posted>, CommentError> {
    let pulls: Vec<PullRef> = match &t.place {
        Place::Pulls(p) => p.clone(),
        Place::Commit => Vec::new(),
        Place::LookUp => {
            let found = api.get(&format!("/commits/{}/pulls", t.sha), 1).await?;
            let mut prs: Vec<&Value> = found
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            // Open pull requests first, then the ones merged with this commit.
            prs.sort_by_key(|p| p["state"].as_str() != Some("open"));
            prs.iter()
                .filter_map(|p| p["number"].as_u64())
                .map(|number| PullRef {
                    number,
                    head_sha: None,
                })
                .take(MAX_PULLS)
                .collect()
        }
    };
    let marker = body::marker(&t.model);
    let mut posted = Vec::new();
    if pulls.is_empty() {
        let h = header(t, &t.sha);
        let p = api
            .upsert(
                &format!("/commits/{}/comments", t.sha),
                &format!("/commits/{}/comments", t.sha),
                "/comments",
                &marker,
                |old| body::assemble(&h, old, section_of(mode, &t.sha, section)),
            )
            .await?;
        posted.push(p);
        return Ok(posted);
    }
    for pr in pulls.iter().take(MAX_PULLS) {
        let commit = pr.head_sha.clone().unwrap_or_else(|| t.sha.clone());
        let h = header(t, &commit);
        let list = format!("/issues/{}/comments", pr.number);
        let p = api
            .upsert(&list, &list, "/issues/comments", &marker, |old| {
                body::assemble(&h, old, section_of(mode, &commit, section))
            })
            .await?;
        posted.push(p);
    }
    Ok(posted)
}

fn header<'a>(t: &'a Target, commit: &'a str) -> Header<'a> {
    Header {
        model: &t.model,
        commit,
        commit_url: Some(format!("{}/{}/commit/{commit}", t.server_url, t.repository)),
        run_url: t.run_url.clone(),
    }
}

fn section_of(mode: &str, commit: &str, body: &str) -> Section {
    Section {
        mode: mode.to_string(),
        commit: commit.to_string(),
        body: body.to_string(),
    }
}
