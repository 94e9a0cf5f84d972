//! The manifests repository through GitHub's contents API (octocrab): read a
//! file with its blob SHA, write it back as one commit naming that SHA — GitHub
//! refuses (409) when the file moved meanwhile, which is how a concurrent push is
//! noticed. No git binary, no clone.

use std::time::Duration;

use base64::Engine as _;
use octocrab::Octocrab;
use serde_json::{json, Value};

use crate::secrets::{redact, Secret};

/// No single GitHub call may hold the deploy up longer than this.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call failed, as far as the caller branches on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    /// 409 / 422 on a stale SHA: someone else pushed; re-read and re-apply.
    #[error("{0}")]
    Conflict(String),
    /// 403 (or 404 on a private repository the token cannot see).
    #[error("{0}")]
    Forbidden(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// A file as read: its text and the blob SHA a write must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAt {
    /// The blob SHA.
    pub sha: String,
    /// The file's text.
    pub text: String,
}

/// The manifests repository.
pub struct Repo {
    pub(super) octo: Octocrab,
    /// The API's base URL (for the calls octocrab takes absolute URIs for).
    pub(super) api: String,
    /// `owner/name`.
    pub name: String,
    /// API calls made.
    pub calls: usize,
}

fn classify(e: octocrab::Error) -> RepoError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let msg = format!("HTTP {status}: {}", source.message.trim());
            match status {
                409 => RepoError::Conflict(msg),
                422 if source.message.contains("does not match")
                    || source.message.contains("fast forward") =>
                {
                    RepoError::Conflict(msg)
                }
                403 => RepoError::Forbidden(msg),
                _ => RepoError::Other(msg),
            }
        }
        other => RepoError::Other(redact(&other.to_string())),
    }
}

pub(super) async fn bounded<T>(
    fut: impl std::future::Future<Output = octocrab::Result<T>>,
) -> Result<T, RepoError> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(classify),
        Err(_) => Err(RepoError::Other(format!(
            "GitHub did not answer within {}s",
            CALL_TIMEOUT.as_secs()
        ))),
    }
}

/// A path for a URL: each segment percent-encoded, the slashes kept.
pub(super) fn url_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl Repo {
    /// A client for `owner/name` at `api_url`.
    pub fn client(api_url: &str, token: &Secret, name: &str) -> Result<Repo, String> {
        let octo = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| format!("GITHUB_API_URL `{api_url}`: {e}"))?
            .personal_token(token.expose().to_string())
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(CALL_TIMEOUT))
            .build()
            .map_err(|e| redact(&e.to_string()))?;
        Ok(Repo {
            octo,
            api: api_url.trim_end_matches('/').to_string(),
            name: name.to_string(),
            calls: 0,
        })
    }

    /// The file at `path` on `branch`; `None` when there is none.
    pub async fn read(&mut self, path: &str, branch: &str) -> Result<Option<FileAt>, RepoError> {
        self.calls += 1;
        let route = format!(
            "/repos/{}/contents/{}?ref={}",
            self.name,
            url_path(path),
            url_path(branch)
        );
        let v: Value = match bounded(self.octo.get(route, None::<&()>)).await {
            Ok(v) => v,
            Err(RepoError::Other(m)) if m.starts_with("HTTP 404") => return Ok(None),
            Err(e) => return Err(e),
        };
        if v.is_array() || v["type"] != "file" {
            return Err(RepoError::Other(format!(
                "`{path}` in {} is a {}, not a file",
                self.name,
                if v.is_array() {
                    "directory"
                } else {
                    "non-file"
                }
            )));
        }
        let sha = v["sha"].as_str().unwrap_or_default().to_string();
        let b64: String = v["content"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| {
                RepoError::Other(format!("GitHub sent `{path}` as invalid Base64: {e}"))
            })?;
        let text = String::from_utf8(bytes).map_err(|_| {
            RepoError::Other(format!("`{path}` in {} is not UTF-8 text", self.name))
        })?;
        Ok(Some(FileAt { sha, text }))
    }

    /// Whether commit `head` is `base` or a later commit containing it (GitHub's
    /// compare: `ahead` or `identical`).
    pub async fn contains(&mut self, head: &str, base: &str) -> Result<bool, RepoError> {
        self.calls += 1;
        let route = format!(
            "/repos/{}/compare/{}...{}?per_page=1",
            self.name,
            url_path(base),
            url_path(head)
        );
        let v: Value = bounded(self.octo.get(route, None::<&()>)).await?;
        Ok(matches!(v["status"].as_str(), Some("ahead" | "identical")))
    }

    /// Commits `text` at `path` on `branch` (replacing the blob `sha`, or creating
    /// the file when `None`); returns the commit's SHA.
    pub async fn write(
        &mut self,
        path: &str,
        branch: &str,
        text: &str,
        message: &str,
        sha: Option<&str>,
    ) -> Result<String, RepoError> {
        self.calls += 1;
        let mut body = json!({
            "message": message,
            "content": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            "branch": branch,
        });
        if let Some(s) = sha {
            body["sha"] = s.into();
        }
        let route = format!("/repos/{}/contents/{}", self.name, url_path(path));
        let v: Value = bounded(self.octo.put(route, Some(&body))).await?;
        v["commit"]["sha"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                RepoError::Other(format!("GitHub answered the commit without a SHA: {v}"))
            })
    }
}
