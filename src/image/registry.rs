//! The OCI distribution API (registry v2) client: token and Basic auth, manifest
//! lookups, re-tagging a manifest by digest and a push-permission check. Every
//! request goes through the shared retry (transient failures only); credentials
//! and bearer tokens never reach an error message or a log line.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::cloud::retry::{retry, Backoff};
use crate::error::UserError;
use crate::secrets::{redact, Secret};

/// Media types a manifest lookup accepts: image indexes and manifests, OCI and Docker.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

const DIGEST_HEADER: &str = "docker-content-digest";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CREDENTIALS_HINT: &str = "check registry-username / registry-password";

/// A username and password (or token) for one registry.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user name (`AWS` for ECR, `oauth2accesstoken` for Artifact Registry …).
    pub username: String,
    /// The password or token; printed as `***`.
    pub password: Secret,
}

/// What went wrong talking to a registry, by what a caller does about it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry (or its token service) refused the credentials or the access
    /// asked for, after authenticating. Never retried.
    #[error("registry {host} {message} — {CREDENTIALS_HINT}")]
    Unauthorized {
        /// The registry, `host[:port]`.
        host: String,
        /// What was refused and the registry's own message (never a credential).
        message: String,
    },
    /// The manifest (or the repository) does not exist.
    #[error("manifest not found in the registry")]
    NotFound,
    /// The registry could not be reached or was overloaded (connection refused or
    /// reset, timeout, HTTP 5xx or 429), still so after the bounded retries.
    #[error("{0}")]
    Transient(String),
    /// Anything else: bad input, an unexpected answer, an untrusted certificate.
    #[error("{0}")]
    Other(String),
}

impl RegistryError {
    /// Whether retrying may help (what [`retry`] asks).
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Transient(_))
    }
}

impl From<RegistryError> for UserError {
    fn from(e: RegistryError) -> Self {
        let hint = match &e {
            RegistryError::Unauthorized { .. } => Some(
                "the credentials come from registry-username / registry-password, else DOCKER_CONFIG, \
                 the github-token for ghcr.io, or cloud credentials for ECR / Artifact Registry",
            ),
            RegistryError::Transient(_) => Some(
                "the registry did not answer in time; re-run later, or raise MLCD_RETRY_ATTEMPTS / \
                 MLCD_RETRY_INITIAL_MS for a flaky registry",
            ),
            _ => None,
        };
        let err = UserError::failed(e.to_string());
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

/// A manifest as the registry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRef {
    /// `sha256:…` content digest.
    pub digest: String,
    /// The manifest's media type (index or image manifest, OCI or Docker).
    pub media_type: String,
    /// Size of the manifest in bytes.
    pub size: u64,
}

/// How a request authenticates.
#[derive(Clone)]
enum Auth {
    Basic,
    Bearer(Secret),
}

/// What the registry asked for in `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// One registry request, replayable on retry.
struct Req {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    /// The token scope: `repository:<repo>:pull` or `…:pull,push`.
    scope: String,
    /// The access asked for, for messages: `pull` or `push`.
    access: &'static str,
    repo: String,
}

/// A client for one registry host (OCI distribution API v2).
pub struct Registry {
    host: String,
    base: Url,
    https: bool,
    ca_given: bool,
    client: reqwest::Client,
    creds: Option<Credentials>,
    backoff: Backoff,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, Secret>>,
    /// The last auth challenge seen, to authenticate up front next time.
    challenge: Mutex<Option<Challenge>>,
    requests: AtomicUsize,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("base", &self.base.as_str())
            .field("user", &self.creds.as_ref().map(|c| c.username.as_str()))
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// A client for `host` (`host[:port]`). Plain HTTP for 127.0.0.0/8, localhost
    /// and `[::1]` (like dockerd's insecure-registry default), HTTPS otherwise;
    /// `docker.io` means Docker Hub's API host. `ca_pem`: extra CA certificates
    /// (PEM bytes) to trust, for registries with a self-signed certificate.
    pub fn new(
        host: &str,
        creds: Option<Credentials>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Registry, RegistryError> {
        let host = host.trim();
        let hostname = split_host(host).ok_or_else(|| {
            RegistryError::Other(format!(
                "`{host}` is not a registry host: expected `host[:port]` such as `ghcr.io` or `127.0.0.1:5000`"
            ))
        })?;
        let loopback = is_loopback(hostname);
        let api_host = match host {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            h => h,
        };
        let https = !loopback;
        let base = base_url(api_host, https)?;
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("mlcd/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.no_proxy();
        }
        if let Some(pem) = ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                RegistryError::Other(format!(
                    "the CA certificate given for registry {host} is not valid PEM: {e}"
                ))
            })?;
            if certs.is_empty() {
                return Err(RegistryError::Other(format!(
                    "the CA certificate given for registry {host} holds no PEM certificate"
                )));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| {
            RegistryError::Other(format!(
                "cannot set up an HTTP client for registry {host}: {}",
                error_chain(&e)
            ))
        })?;
        Ok(Registry {
            host: host.to_string(),
            base,
            https,
            ca_given: ca_pem.is_some(),
            client,
            creds,
            backoff: Backoff::from_env(),
            tokens: Mutex::new(HashMap::new()),
            challenge: Mutex::new(None),
            requests: AtomicUsize::new(0),
        })
    }

    /// Force HTTPS even on loopback (a local registry with TLS).
    pub fn with_https(mut self) -> Self {
        if !self.https {
            self.https = true;
            let _ = self.base.set_scheme("https");
        }
        self
    }

    /// Use this backoff instead of [`Backoff::from_env`].
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The credentials this client uses (the push through the engine uses the same).
    pub fn credentials(&self) -> Option<&Credentials> {
        self.creds.as_ref()
    }

    /// The registry's `host[:port]`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// HEAD `/v2/<repo>/manifests/<reference>` (a tag or a digest); None when the
    /// registry says the manifest or the repository does not exist.
    pub async fn manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<ManifestRef>, RegistryError> {
        check_repo(repo)?;
        check_reference(reference)?;
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let req = self.req(
            Method::HEAD,
            repo,
            &format!("manifests/{reference}"),
            headers,
            None,
            false,
        )?;
        let resp = self.execute(&req).await?;
        match resp.status() {
            s if s.is_success() => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(self.failure(&req, resp).await),
        }
        let digest = header(&resp, DIGEST_HEADER);
        let media_type = header(&resp, CONTENT_TYPE.as_str());
        let size = header(&resp, CONTENT_LENGTH.as_str()).and_then(|s| s.parse::<u64>().ok());
        if let (Some(digest), Some(media_type), Some(size)) = (digest, media_type.clone(), size) {
            return Ok(Some(ManifestRef {
                digest,
                media_type,
                size,
            }));
        }
        // Some registries leave the digest out of a HEAD answer: read the manifest.
        match self.get_manifest(repo, reference, false).await {
            Ok((bytes, media_type)) => Ok(Some(ManifestRef {
                digest: sha256_digest(&bytes),
                media_type,
                size: bytes.len() as u64,
            })),
            Err(RegistryError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Adds `tag` to the manifest `digest` already in `repo`: GETs the manifest
    /// bytes by digest (with their media type) and PUTs them unchanged under the
    /// tag, then checks the digest the registry reports (`Docker-Content-Digest`)
    /// is `digest`. `NotFound` when `repo` holds no such manifest.
    pub async fn tag(&self, repo: &str, digest: &str, tag: &str) -> Result<(), RegistryError> {
        check_repo(repo)?;
        check_digest(digest)?;
        check_tag(tag)?;
        let (bytes, media_type) = self.get_manifest(repo, digest, true).await?;
        if let Some(hex) = digest.strip_prefix("sha256:") {
            let got = sha256_digest(&bytes);
            if got.strip_prefix("sha256:") != Some(hex) {
                return Err(RegistryError::Other(format!(
                    "registry {} returned a manifest for {repo}@{digest} whose content has digest {got}",
                    self.host
                )));
            }
        }
        let mut headers = HeaderMap::new();
        let ct = HeaderValue::from_str(&media_type).map_err(|_| {
            RegistryError::Other(format!("registry {} sent an invalid media type", self.host))
        })?;
        headers.insert(CONTENT_TYPE, ct);
        let req = self.req(
            Method::PUT,
            repo,
            &format!("manifests/{tag}"),
            headers,
            Some(bytes),
            true,
        )?;
        let resp = self.execute(&req).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&req, resp).await);
        }
        match header(&resp, DIGEST_HEADER) {
            Some(d) if d != digest => Err(RegistryError::Other(format!(
                "registry {} stored {repo}:{tag} as {d}, expected {digest}",
                self.host
            ))),
            _ => Ok(()),
        }
    }

    /// Checks the credentials may push to `repo`: asks for a token with scope
    /// `repository:<repo>:pull,push` (or uses Basic auth), starts a blob upload
    /// and cancels it. `Unauthorized` with the registry's message otherwise.
    pub async fn check_push_access(&self, repo: &str) -> Result<(), RegistryError> {
        check_repo(repo)?;
        let req = self.req(
            Method::POST,
            repo,
            "blobs/uploads/",
            HeaderMap::new(),
            Some(Vec::new()),
            true,
        )?;
        let resp = self.execute(&req).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&req, resp).await);
        }
        // Cancel the upload session; a failure here does not matter.
        if let Some(url) = header(&resp, LOCATION.as_str()).and_then(|l| self.base.join(&l).ok()) {
            let cancel = Req {
                method: Method::DELETE,
                url,
                headers: HeaderMap::new(),
                body: None,
                scope: req.scope.clone(),
                access: "push",
                repo: repo.to_string(),
            };
            match self.execute(&cancel).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => log::debug!("cancelling the test upload to {repo}: HTTP {}", r.status()),
                Err(e) => log::debug!("cancelling the test upload to {repo}: {e}"),
            }
        }
        Ok(())
    }

    /// HTTP requests made so far, retries and token requests included.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// GET a manifest: its bytes and media type.
    async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        push: bool,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let req = self.req(
            Method::GET,
            repo,
            &format!("manifests/{reference}"),
            headers,
            None,
            push,
        )?;
        let resp = self.execute(&req).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&req, resp).await);
        }
        let content_type = header(&resp, CONTENT_TYPE.as_str());
        let bytes = resp.bytes().await.map_err(|e| {
            RegistryError::Transient(format!(
                "reading {repo}@{reference} from registry {}: {}",
                self.host,
                error_chain(&e)
            ))
        })?;
        let media_type = content_type
            .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|c| c.starts_with("application/vnd."))
            .or_else(|| {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "registry {} sent {repo}@{reference} without a manifest media type",
                    self.host
                ))
            })?;
        Ok((bytes.to_vec(), media_type))
    }

    fn req(
        &self,
        method: Method,
        repo: &str,
        rest: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
        push: bool,
    ) -> Result<Req, RegistryError> {
        let url = self.base.join(&format!("/v2/{repo}/{rest}")).map_err(|e| {
            RegistryError::Other(format!("bad registry URL for {repo}/{rest}: {e}"))
        })?;
        let actions = if push { "pull,push" } else { "pull" };
        Ok(Req {
            method,
            url,
            headers,
            body,
            scope: format!("repository:{repo}:{actions}"),
            access: if push { "push" } else { "pull" },
            repo: repo.to_string(),
        })
    }

    /// Sends `req`, authenticating as the registry asks: Basic, or a bearer token
    /// for the request's scope (cached). Returns any answer but 401 (and 5xx/429,
    /// which are retried, then `Transient`); a 401 after authenticating is
    /// `Unauthorized`.
    async fn execute(&self, req: &Req) -> Result<reqwest::Response, RegistryError> {
        let (mut auth, mut fresh) = self.initial_auth(req).await?;
        loop {
            let resp = self.send(req, auth.as_ref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(parse_challenge);
            let Some(challenge) = challenge.filter(|_| !fresh) else {
                return Err(self.failure(req, resp).await);
            };
            auth = match &challenge {
                Challenge::Basic if self.creds.is_some() => Some(Auth::Basic),
                Challenge::Basic => return Err(self.failure(req, resp).await),
                Challenge::Bearer { realm, service, .. } => {
                    lock(&self.tokens).remove(&req.scope);
                    Some(Auth::Bearer(
                        self.fetch_token(req, realm, service.as_deref()).await?,
                    ))
                }
            };
            *lock(&self.challenge) = Some(challenge);
            fresh = true;
        }
    }

    /// The auth to send first, and whether it was obtained just now (a refusal of
    /// fresh auth is final; a cached token may have expired).
    async fn initial_auth(&self, req: &Req) -> Result<(Option<Auth>, bool), RegistryError> {
        if let Some(token) = lock(&self.tokens).get(&req.scope) {
            return Ok((Some(Auth::Bearer(token.clone())), false));
        }
        let known = lock(&self.challenge).clone();
        match known {
            Some(Challenge::Basic) if self.creds.is_some() => Ok((Some(Auth::Basic), true)),
            Some(Challenge::Bearer { realm, service, .. }) => {
                let token = self.fetch_token(req, &realm, service.as_deref()).await?;
                Ok((Some(Auth::Bearer(token)), true))
            }
            _ => Ok((None, false)),
        }
    }

    /// GET a bearer token for the request's scope from the challenge's realm, with
    /// Basic credentials if any (anonymous otherwise), and cache it.
    async fn fetch_token(
        &self,
        req: &Req,
        realm: &str,
        service: Option<&str>,
    ) -> Result<Secret, RegistryError> {
        let mut url = Url::parse(realm)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "registry {} names an invalid token service `{}`",
                    self.host,
                    redact(realm)
                ))
            })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            q.append_pair("scope", &req.scope);
            if let Some(c) = &self.creds {
                q.append_pair("account", &c.username);
            }
        }
        let token_req = Req {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            scope: req.scope.clone(),
            access: req.access,
            repo: req.repo.clone(),
        };
        let auth = self.creds.as_ref().map(|_| Auth::Basic);
        let resp = self.send(&token_req, auth.as_ref()).await?;
        if !resp.status().is_success() {
            return Err(self.failure(&token_req, resp).await);
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
        }
        let answer: TokenAnswer = resp.json().await.map_err(|e| {
            RegistryError::Other(format!(
                "the token service of registry {} sent an unreadable answer: {}",
                self.host,
                error_chain(&e)
            ))
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                RegistryError::Other(format!(
                    "the token service of registry {} answered without a token",
                    self.host
                ))
            })?;
        let token = Secret::new(token);
        lock(&self.tokens).insert(req.scope.clone(), token.clone());
        Ok(token)
    }

    /// One request through the retry: connection failures, timeouts, 5xx and 429
    /// are `Transient` and retried; any other answer is returned.
    async fn send(
        &self,
        req: &Req,
        auth: Option<&Auth>,
    ) -> Result<reqwest::Response, RegistryError> {
        let what = format!("{} {}", req.method, req.url.path());
        let what = &what;
        let result = retry(
            what,
            &self.backoff,
            RegistryError::is_transient,
            || async move {
                self.requests.fetch_add(1, Ordering::Relaxed);
                let mut rb = self
                    .client
                    .request(req.method.clone(), req.url.clone())
                    .headers(req.headers.clone());
                match auth {
                    Some(Auth::Basic) => {
                        if let Some(c) = &self.creds {
                            rb = rb.basic_auth(&c.username, Some(c.password.expose()));
                        }
                    }
                    Some(Auth::Bearer(t)) => rb = rb.bearer_auth(t.expose()),
                    None => {}
                }
                if let Some(body) = &req.body {
                    rb = rb.body(body.clone());
                }
                let resp = rb.send().await.map_err(|e| self.send_error(what, &e))?;
                let status = resp.status();
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    let (_, message) = error_body(resp).await;
                    return Err(RegistryError::Transient(format!(
                        "registry {} answered {what} with HTTP {status}{}",
                        self.host,
                        colon(&message)
                    )));
                }
                Ok(resp)
            },
        )
        .await;
        result.map_err(|e| match e {
            RegistryError::Transient(m) => RegistryError::Transient(format!(
                "{m} (gave up after {} attempt{})",
                self.backoff.attempts,
                if self.backoff.attempts == 1 { "" } else { "s" }
            )),
            e => e,
        })
    }

    fn send_error(&self, what: &str, e: &reqwest::Error) -> RegistryError {
        // The causes, without reqwest's "error sending request for url (…)" and
        // hyper's "client error (Connect)" wrappers.
        let chain = match std::error::Error::source(e) {
            Some(cause) => error_chain(cause)
                .split(": ")
                .filter(|p| !p.starts_with("client error ("))
                .collect::<Vec<_>>()
                .join(": "),
            None => error_chain(e),
        };
        let lower = chain.to_ascii_lowercase();
        if lower.contains("certificate") {
            let hint = if self.ca_given {
                "the CA certificate given does not vouch for it"
            } else {
                "pass the registry's CA certificate, or add it to the system's trust store"
            };
            return RegistryError::Other(format!(
                "cannot verify the TLS certificate of registry {}: {chain} — {hint}",
                self.host
            ));
        }
        if self.https && (lower.contains("corrupt message") || lower.contains("invalidcontenttype"))
        {
            return RegistryError::Other(format!(
                "TLS handshake with registry {} failed ({chain}); does it serve plain HTTP?",
                self.host
            ));
        }
        if e.is_builder() || e.is_redirect() {
            return RegistryError::Other(format!("{what} to registry {}: {chain}", self.host));
        }
        let kind = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else {
            "connection failed"
        };
        let scheme = if self.https { "https" } else { "http" };
        RegistryError::Transient(format!(
            "registry {} {kind} ({what} over {scheme}): {chain}",
            self.host
        ))
    }

    /// The error for a final answer that is not a success.
    async fn failure(&self, req: &Req, resp: reqwest::Response) -> RegistryError {
        let status = resp.status();
        let is_token = !req.url.path().starts_with("/v2/");
        let (codes, message) = error_body(resp).await;
        let who = match &self.creds {
            Some(c) => format!("user `{}`", c.username),
            None => "anonymous access".to_string(),
        };
        let ghcr = if self.host == "ghcr.io" {
            " (for ghcr.io the github-token needs `packages: write` to push)"
        } else {
            ""
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                let what = if is_token {
                    let service = req.url.host_str().unwrap_or("?");
                    format!("token service {service}")
                } else {
                    "registry".to_string()
                };
                let message =
                    match (&self.creds, status) {
                        (Some(c), StatusCode::UNAUTHORIZED)
                            if !codes.iter().any(|c| c == "DENIED") =>
                        {
                            format!(
                        "refused the credentials for user `{}` ({} access to `{}`{}){}{ghcr}",
                        c.username,
                        req.access,
                        req.repo,
                        if is_token { format!(", via its {what}") } else { String::new() },
                        colon(&message)
                    )
                        }
                        (None, StatusCode::UNAUTHORIZED) => format!(
                            "requires credentials for {} access to `{}` and none were given{}",
                            req.access,
                            req.repo,
                            colon(&message)
                        ),
                        _ => format!(
                            "denied {} access to `{}` for {who}{}{ghcr}",
                            req.access,
                            req.repo,
                            colon(&message)
                        ),
                    };
                RegistryError::Unauthorized {
                    host: self.host.clone(),
                    message,
                }
            }
            StatusCode::NOT_FOUND
                if !is_token
                    && (codes.is_empty()
                        || codes
                            .iter()
                            .any(|c| c == "MANIFEST_UNKNOWN" || c == "NAME_UNKNOWN")) =>
            {
                RegistryError::NotFound
            }
            _ => RegistryError::Other(format!(
                "registry {} answered {} {} with HTTP {status}{}",
                self.host,
                req.method,
                req.url.path(),
                colon(&message)
            )),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn colon(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// The error codes and messages of a registry error body
/// (`{"errors":[{"code":…,"message":…}]}`), or the start of a non-JSON body;
/// registered secrets are redacted.
async fn error_body(resp: reqwest::Response) -> (Vec<String>, String) {
    let text = resp.text().await.unwrap_or_default();
    let (codes, message) = parse_error_body(&text);
    (codes, redact(&message))
}

fn parse_error_body(text: &str) -> (Vec<String>, String) {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_str::<Body>(text) {
        Ok(b) if !b.errors.is_empty() => {
            let codes = b.errors.iter().map(|e| e.code.clone()).collect();
            let mut messages: Vec<&str> = Vec::new();
            for e in &b.errors {
                let m = if e.message.is_empty() {
                    &e.code
                } else {
                    &e.message
                };
                if !m.is_empty() && !messages.contains(&m.as_str()) {
                    messages.push(m);
                }
            }
            (codes, messages.join("; "))
        }
        _ => {
            let t = text.trim();
            let short: String = t.chars().take(200).collect();
            let short = short.split_whitespace().collect::<Vec<_>>().join(" ");
            (
                Vec::new(),
                if t.chars().count() > 200 {
                    format!("{short}…")
                } else {
                    short
                },
            )
        }
    }
}

/// The whole source chain of an error, each distinct message once.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    redact(&parts.join(": "))
}

/// Parses one `WWW-Authenticate` value: `Basic realm="…"` or
/// `Bearer realm="…",service="…",scope="…"`.
fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge::Bearer {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// `k="v", k2=v2` → pairs; quoted values may hold commas and `\"`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

/// The host name of `host[:port]` (brackets kept off an IPv6 literal), if the
/// whole is well formed.
fn split_host(host: &str) -> Option<&str> {
    if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (name, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        name.parse::<std::net::Ipv6Addr>().ok()?;
        (name, port)
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if name.is_empty() || port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return None;
    }
    Some(name)
}

fn is_loopback(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn base_url(host: &str, https: bool) -> Result<Url, RegistryError> {
    let scheme = if https { "https" } else { "http" };
    Url::parse(&format!("{scheme}://{host}/"))
        .map_err(|e| RegistryError::Other(format!("`{host}` is not a registry host: {e}")))
}

fn sha256_digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A repository name: lowercase path components of `[a-z0-9._-]`.
fn check_repo(repo: &str) -> Result<(), RegistryError> {
    let ok = !repo.is_empty()
        && repo.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Other(format!(
            "`{repo}` is not a repository name: lowercase letters, digits and `._-`, components separated by `/`"
        )))
    }
}

fn check_tag(tag: &str) -> Result<(), RegistryError> {
    let ok = (1..=128).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && (tag.as_bytes()[0].is_ascii_alphanumeric() || tag.as_bytes()[0] == b'_');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Other(format!(
            "`{tag}` is not a valid tag: up to 128 letters, digits and `._-`, not starting with `.` or `-`"
        )))
    }
}

fn check_digest(digest: &str) -> Result<(), RegistryError> {
    let ok = digest.split_once(':').is_some_and(|(alg, hex)| {
        !alg.is_empty()
            && alg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b))
            && hex.len() >= 32
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Other(format!(
            "`{digest}` is not a digest: expected `sha256:` and 64 hex digits"
        )))
    }
}

fn check_reference(reference: &str) -> Result<(), RegistryError> {
    if reference.contains(':') {
        check_digest(reference)
    } else {
        check_tag(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_and_its_futures_can_move_between_threads() {
        fn send<T: Send + Sync>(_: &T) {}
        fn send_future<T: Send>(_: T) {}
        let r = Registry::new("127.0.0.1:1", None, None).unwrap();
        send(&r);
        send_future(r.manifest("a", "b"));
        send_future(r.tag("a", "sha256:00", "b"));
        send_future(r.check_push_access("a"));
    }

    #[test]
    fn challenges_are_parsed_with_quoted_commas() {
        assert_eq!(
            parse_challenge(r#"Basic realm="mlcd-testbed""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"bearer realm=https://x/t, error="insufficient_scope""#),
            Some(Challenge::Bearer {
                realm: "https://x/t".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn loopback_hosts_use_plain_http_and_others_https() {
        for (host, scheme) in [
            ("127.0.0.1:15000", "http"),
            ("127.1.2.3", "http"),
            ("localhost:5000", "http"),
            ("[::1]:5000", "http"),
            ("ghcr.io", "https"),
            ("10.0.0.1:5000", "https"),
            ("registry.example:443", "https"),
        ] {
            let r = Registry::new(host, None, None).unwrap();
            assert_eq!(r.base.scheme(), scheme, "{host}");
        }
        let r = Registry::new("127.0.0.1:15443", None, None)
            .unwrap()
            .with_https();
        assert_eq!(r.base.as_str(), "https://127.0.0.1:15443/");
        let hub = Registry::new("docker.io", None, None).unwrap();
        assert_eq!(hub.base.as_str(), "https://registry-1.docker.io/");
        assert_eq!(hub.host(), "docker.io");
    }

    #[test]
    fn malformed_hosts_and_ca_files_are_refused_with_the_input_named() {
        for bad in [
            "",
            "https://ghcr.io",
            "ghcr.io/acme",
            "host:notaport",
            "[::1",
            "user@host",
        ] {
            let e = Registry::new(bad, None, None).unwrap_err();
            assert!(matches!(e, RegistryError::Other(_)), "{bad}");
        }
        let e = Registry::new("127.0.0.1:1", None, Some(b"not a pem")).unwrap_err();
        assert!(e.to_string().contains("CA certificate"), "{e}");
    }

    #[test]
    fn registry_error_bodies_give_codes_and_messages() {
        let (codes, msg) = parse_error_body(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository"}]}]}"#,
        );
        assert_eq!(codes, vec!["UNAUTHORIZED"]);
        assert_eq!(msg, "authentication required");
        let (codes, msg) = parse_error_body("<html>\n  502 Bad Gateway\n</html>");
        assert!(codes.is_empty());
        assert_eq!(msg, "<html> 502 Bad Gateway </html>");
    }

    #[test]
    fn names_tags_and_digests_are_checked() {
        assert!(check_repo("it/busybox-1.x_y").is_ok());
        assert!(
            check_repo("It/x").is_err() && check_repo("a//b").is_err() && check_repo("").is_err()
        );
        assert!(
            check_tag("v1.2_3-rc").is_ok() && check_tag("-x").is_err() && check_tag("a:b").is_err()
        );
        let d = sha256_digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(check_reference(&d).is_ok() && check_reference("sha256:xyz").is_err());
    }

    #[test]
    fn unauthorized_names_the_user_and_the_fix_but_never_the_password() {
        let pw = Secret::new("hunter2-registry-pw");
        let e = RegistryError::Unauthorized {
            host: "127.0.0.1:15000".into(),
            message: "refused the credentials for user `mlcd`: authentication required".into(),
        };
        let text = e.to_string();
        assert_eq!(
            text,
            "registry 127.0.0.1:15000 refused the credentials for user `mlcd`: authentication required \
             — check registry-username / registry-password"
        );
        assert!(!text.contains(pw.expose()));
        let user: UserError = e.into();
        assert!(user.hint.is_some());
    }
}
