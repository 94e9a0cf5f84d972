//! One JSON client for Google APIs: bearer tokens from [`TokenSource`], retries
//! through `cloud::retry` for 429 / 5xx / connection failures, one fresh token
//! after a 401, and Google's error body (`{"error": {code, message, status}}`)
//! turned into a [`GcpError`] a caller can branch on (NOT_FOUND → absent,
//! ALREADY_EXISTS, FAILED_PRECONDITION …).

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::auth::TokenSource;
use crate::cloud::retry::{retry, Backoff};
use crate::error::UserError;
use crate::secrets::redact;

/// A request body: JSON, or raw bytes / a file's bytes with their content type.
enum Body<'a> {
    Json(&'a Value),
    Bytes(&'a [u8], &'a str),
    File(&'a std::path::Path, &'a str),
}

/// What went wrong calling Google, by what a caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcpError {
    /// No token could be had, or it was refused. Never retried.
    #[error("Google refused the credentials: {0}")]
    Auth(String),
    /// Google could not be reached (connection error, timeout). Retried.
    #[error("{0}")]
    Transient(String),
    /// Google answered with an error: the HTTP status, the canonical status name
    /// (`NOT_FOUND`, `RESOURCE_EXHAUSTED` …) and its message. 429 and 5xx are retried.
    #[error("Google API error {code} (HTTP {status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The canonical status name.
        code: String,
        /// Google's message.
        message: String,
    },
}

impl GcpError {
    /// An authentication failure with `message`.
    pub fn auth(message: impl Into<String>) -> Self {
        GcpError::Auth(message.into())
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        match self {
            GcpError::Transient(_) => true,
            GcpError::Api { status, .. } => *status == 429 || *status >= 500,
            GcpError::Auth(_) => false,
        }
    }

    /// The canonical status name, when Google answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            GcpError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether Google said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GcpError::Api { status: 404, .. })
    }

    /// A [`UserError`] saying `what` failed, with a hint for the kinds a user can fix.
    pub fn user(&self, what: &str) -> UserError {
        let e = UserError::failed(format!("{what}: {self}"));
        match self {
            GcpError::Auth(_) | GcpError::Api { status: 401, .. } => e.hint(super::auth::THREE_WAYS),
            GcpError::Api { status: 403, .. } => e.hint(
                "the identity needs roles/aiplatform.user on the project (and roles/iam.serviceAccountUser on the service account jobs run as); see README: Vertex AI",
            ),
            GcpError::Api { status: 429, .. } => e.hint(
                "a Vertex AI quota is exhausted (see the message): wait, use a smaller machine, or ask for more quota in the console (IAM & Admin → Quotas)",
            ),
            GcpError::Api { status, .. } if *status >= 500 => {
                e.hint("Google failed on its side, still so after retries: run the step again later")
            }
            GcpError::Transient(_) => e.hint("check the network and the API endpoint (vertex.api-endpoint, CLOUDSDK_API_ENDPOINT_OVERRIDES_*)"),
            _ => e,
        }
    }
}

/// A client for Google JSON APIs, sharing one token source.
#[derive(Clone)]
pub struct GcpClient {
    http: reqwest::Client,
    auth: Arc<TokenSource>,
    backoff: Backoff,
}

impl GcpClient {
    /// A client using `auth`, with the retry settings from the environment.
    pub fn new(auth: Arc<TokenSource>) -> Result<Self, UserError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| UserError::failed(format!("cannot build an HTTP client: {e}")))?;
        Ok(GcpClient {
            http,
            auth,
            backoff: Backoff::from_env(),
        })
    }

    /// The token source.
    pub fn auth(&self) -> &TokenSource {
        &self.auth
    }

    /// Calls `method url` with an optional JSON body, retrying transient failures;
    /// the answer's JSON (`{}` for an empty body).
    pub async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, GcpError> {
        let body = body.map(Body::Json);
        self.with_retries(what, method, url, body.as_ref()).await
    }

    /// POSTs the file at `path` as the raw body (a Cloud Storage media upload),
    /// streamed from disk again on each attempt; the answer's JSON.
    pub async fn upload_file(
        &self,
        what: &str,
        url: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> Result<Value, GcpError> {
        let body = Body::File(path, content_type);
        self.with_retries(what, Method::POST, url, Some(&body))
            .await
    }

    /// POSTs `bytes` as the raw body; the answer's JSON.
    pub async fn upload_bytes(
        &self,
        what: &str,
        url: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> Result<Value, GcpError> {
        let body = Body::Bytes(bytes, content_type);
        self.with_retries(what, Method::POST, url, Some(&body))
            .await
    }

    async fn with_retries(
        &self,
        what: &str,
        method: Method,
        url: &str,
        body: Option<&Body<'_>>,
    ) -> Result<Value, GcpError> {
        retry(what, &self.backoff, GcpError::is_transient, || async {
            match self.once(method.clone(), url, body).await {
                Err(GcpError::Api { status: 401, .. }) if self.auth.can_refresh() => {
                    log::info!("{what}: the access token was refused; fetching a new one");
                    self.auth.invalidate().await;
                    self.once(method.clone(), url, body).await
                }
                other => other,
            }
        })
        .await
    }

    async fn once(
        &self,
        method: Method,
        url: &str,
        body: Option<&Body<'_>>,
    ) -> Result<Value, GcpError> {
        let token = self.auth.token().await?;
        let mut req = self.http.request(method, url).bearer_auth(token.expose());
        match body {
            Some(Body::Json(b)) => req = req.json(b),
            Some(Body::Bytes(b, ct)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *ct)
                    .body(b.to_vec())
            }
            Some(Body::File(path, ct)) => {
                let len = tokio::fs::metadata(path)
                    .await
                    .map_err(|e| GcpError::Api {
                        status: 0,
                        code: "LOCAL_FILE".into(),
                        message: format!("cannot read {}: {e}", path.display()),
                    })?
                    .len();
                req = req
                    .header(reqwest::header::CONTENT_TYPE, *ct)
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(crate::cloud::store::file_body(path.to_path_buf(), 0, len));
            }
            None => {}
        }
        let resp = req
            .send()
            .await
            .map_err(|e| GcpError::Transient(format!("cannot reach {}: {e}", host(url))))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| {
            GcpError::Transient(format!("reading the answer of {}: {e}", host(url)))
        })?;
        if (200..300).contains(&status) {
            if text.trim().is_empty() {
                return Ok(Value::Object(Default::default()));
            }
            return serde_json::from_str(&text).map_err(|e| GcpError::Api {
                status,
                code: "BAD_ANSWER".into(),
                message: format!("the answer is not JSON: {e}"),
            });
        }
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(GcpError::Api {
            status,
            code: v["error"]["status"]
                .as_str()
                .unwrap_or("UNKNOWN")
                .to_string(),
            message: redact(&message),
        })
    }
}

fn host(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or(url)
}
