//! Google OAuth access tokens, from the three sources Google's tooling hands over:
//! a plain access token (`GOOGLE_OAUTH_ACCESS_TOKEN` / `CLOUDSDK_AUTH_ACCESS_TOKEN`,
//! also what Artifact Registry pushes use), a service-account key file (the JWT
//! bearer grant, RS256-signed with `ring`, already in the dependency tree through
//! rustls), or the `external_account` file google-github-actions/auth writes for
//! Workload Identity Federation: the GitHub OIDC token read from its URL, exchanged
//! at STS, then (optionally) a service account impersonated through IAM
//! Credentials `generateAccessToken`. Tokens are [`Secret`]s from the moment they
//! are read, cached, and fetched again before they expire (long waits outlive the
//! one-hour token). Hand-written on reqwest like `cloud::sts`: Google's auth crates
//! bring their own HTTP and TLS stacks for four small requests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::GcpError;
use crate::error::UserError;
use crate::secrets::Secret;

/// The scope every token is asked for.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Refresh this long before expiry at most (less for short-lived tokens).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// What to tell a user who gave no usable credentials.
pub const THREE_WAYS: &str = "give Google credentials in one of three ways: \
(1) the google-github-actions/auth step before this one (Workload Identity Federation; \
it sets GOOGLE_APPLICATION_CREDENTIALS to an external_account file), \
(2) GOOGLE_APPLICATION_CREDENTIALS naming a service-account key file, or \
(3) an access token in GOOGLE_OAUTH_ACCESS_TOKEN or CLOUDSDK_AUTH_ACCESS_TOKEN \
(for example from `gcloud auth print-access-token`)";

fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Where the subject token of an `external_account` file comes from.
#[derive(Debug)]
enum Subject {
    /// GET a URL (GitHub's ACTIONS_ID_TOKEN_REQUEST_URL) with headers.
    Url {
        url: String,
        headers: Vec<(String, Secret)>,
        field: Option<String>,
    },
    /// Read a file.
    File {
        path: PathBuf,
        field: Option<String>,
    },
}

enum Kind {
    Static {
        token: Secret,
        var: &'static str,
    },
    ServiceAccount {
        email: String,
        key: ring::signature::RsaKeyPair,
        kid: String,
        token_uri: String,
    },
    External {
        audience: String,
        subject_token_type: String,
        token_url: String,
        impersonation_url: Option<String>,
        subject: Subject,
    },
}

struct Cached {
    token: Secret,
    /// When to fetch a new one (None: never, a static token).
    refresh_at: Option<Instant>,
}

/// An access-token source with its cache. Cheap to share behind an `Arc`.
pub struct TokenSource {
    kind: Kind,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenSource({})", self.describe())
    }
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    // service_account
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    token_uri: Option<String>,
    // external_account
    audience: Option<String>,
    subject_token_type: Option<String>,
    token_url: Option<String>,
    service_account_impersonation_url: Option<String>,
    credential_source: Option<CredentialSource>,
}

#[derive(Deserialize)]
struct CredentialSource {
    url: Option<String>,
    file: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    format: Option<SourceFormat>,
}

#[derive(Deserialize)]
struct SourceFormat {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject_token_field_name: Option<String>,
}

/// The credentials file `GOOGLE_APPLICATION_CREDENTIALS` names. Inside a container
/// action the runner's path does not exist; google-github-actions/auth writes the
/// file into the workspace, so the same file name under `GITHUB_WORKSPACE` is used.
fn credentials_path(env: &BTreeMap<String, String>) -> Option<PathBuf> {
    let given = PathBuf::from(var(env, "GOOGLE_APPLICATION_CREDENTIALS")?);
    if given.exists() {
        return Some(given);
    }
    if let (Some(ws), Some(name)) = (var(env, "GITHUB_WORKSPACE"), given.file_name()) {
        let p = Path::new(ws).join(name);
        if p.exists() {
            log::info!(
                "GOOGLE_APPLICATION_CREDENTIALS {} is not here (a container action); using {}",
                given.display(),
                p.display()
            );
            return Some(p);
        }
    }
    Some(given)
}

impl TokenSource {
    /// The source `env` provides: an access-token variable wins, else the file
    /// `GOOGLE_APPLICATION_CREDENTIALS` names. Errors name the variable or file
    /// and the three ways to give credentials; no request is made here.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| UserError::failed(format!("cannot build an HTTP client: {e}")))?;
        for name in ["GOOGLE_OAUTH_ACCESS_TOKEN", "CLOUDSDK_AUTH_ACCESS_TOKEN"] {
            if let Some(t) = var(env, name) {
                return Ok(Self::new(
                    Kind::Static {
                        token: Secret::new(t),
                        var: name,
                    },
                    http,
                ));
            }
        }
        let Some(path) = credentials_path(env) else {
            return Err(UserError::invalid(
                "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS, GOOGLE_OAUTH_ACCESS_TOKEN and CLOUDSDK_AUTH_ACCESS_TOKEN are all unset",
            )
            .hint(THREE_WAYS));
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            UserError::invalid(format!(
                "cannot read the Google credentials file {shown} (GOOGLE_APPLICATION_CREDENTIALS): {e}"
            ))
            .hint(THREE_WAYS)
        })?;
        let file: CredentialsFile = serde_json::from_str(&text).map_err(|e| {
            UserError::invalid(format!(
                "the Google credentials file {shown} (GOOGLE_APPLICATION_CREDENTIALS) is not a credentials JSON file: line {}: {}",
                e.line(),
                e.to_string().split(" at line").next().unwrap_or_default()
            ))
            .hint(THREE_WAYS)
        })?;
        let missing = |field: &str, kind: &str| {
            UserError::invalid(format!(
                "the {kind} credentials file {shown} (GOOGLE_APPLICATION_CREDENTIALS) has no `{field}`"
            ))
            .hint("download the file again (IAM → service accounts → keys), or let google-github-actions/auth write it")
        };
        let kind = match file.kind.as_deref() {
            Some("service_account") => {
                let pem_text = file
                    .private_key
                    .ok_or_else(|| missing("private_key", "service_account"))?;
                let secret = Secret::new(pem_text.trim());
                let der = pem::parse(secret.expose()).map_err(|e| {
                    UserError::invalid(format!(
                        "the `private_key` of {shown} (GOOGLE_APPLICATION_CREDENTIALS) is not a PEM key: {e}"
                    ))
                })?;
                let key = ring::signature::RsaKeyPair::from_pkcs8(der.contents()).map_err(|e| {
                    UserError::invalid(format!(
                        "the `private_key` of {shown} (GOOGLE_APPLICATION_CREDENTIALS) is not an RSA PKCS#8 key: {e}"
                    ))
                })?;
                Kind::ServiceAccount {
                    email: file
                        .client_email
                        .ok_or_else(|| missing("client_email", "service_account"))?,
                    key,
                    kid: file.private_key_id.unwrap_or_default(),
                    token_uri: file
                        .token_uri
                        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                }
            }
            Some("external_account") => {
                let src = file
                    .credential_source
                    .ok_or_else(|| missing("credential_source", "external_account"))?;
                let field = src
                    .format
                    .filter(|f| f.kind.as_deref() == Some("json"))
                    .and_then(|f| f.subject_token_field_name);
                let subject = match (src.url, src.file) {
                    (Some(url), _) => {
                        let mut headers: Vec<(String, Secret)> = src
                            .headers
                            .into_iter()
                            .map(|(k, v)| (k, Secret::new(v)))
                            .collect();
                        if !headers
                            .iter()
                            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                        {
                            if let Some(t) = var(env, "ACTIONS_ID_TOKEN_REQUEST_TOKEN") {
                                headers.push((
                                    "Authorization".into(),
                                    Secret::new(format!("Bearer {t}")),
                                ));
                            }
                        }
                        Subject::Url {
                            url,
                            headers,
                            field,
                        }
                    }
                    (None, Some(f)) => Subject::File {
                        path: PathBuf::from(f),
                        field,
                    },
                    (None, None) => {
                        return Err(UserError::invalid(format!(
                            "the external_account credentials file {shown} has a `credential_source` with neither `url` nor `file`; mlcd reads those two (GitHub OIDC, a token file)"
                        ))
                        .hint(THREE_WAYS))
                    }
                };
                Kind::External {
                    audience: file
                        .audience
                        .ok_or_else(|| missing("audience", "external_account"))?,
                    subject_token_type: file
                        .subject_token_type
                        .unwrap_or_else(|| "urn:ietf:params:oauth:token-type:jwt".into()),
                    token_url: file
                        .token_url
                        .unwrap_or_else(|| "https://sts.googleapis.com/v1/token".into()),
                    impersonation_url: file.service_account_impersonation_url,
                    subject,
                }
            }
            other => {
                return Err(UserError::invalid(format!(
                    "the Google credentials file {shown} (GOOGLE_APPLICATION_CREDENTIALS) is of type `{}`; mlcd takes `service_account` and `external_account` files",
                    other.unwrap_or("(none)")
                ))
                .hint(THREE_WAYS))
            }
        };
        Ok(Self::new(kind, http))
    }

    fn new(kind: Kind, http: reqwest::Client) -> Self {
        TokenSource {
            kind,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Which source this is, for the log (never a value).
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Static { var, .. } => format!("the access token in {var}"),
            Kind::ServiceAccount { email, .. } => {
                format!("the service-account key of {email} (GOOGLE_APPLICATION_CREDENTIALS)")
            }
            Kind::External {
                impersonation_url,
                subject,
                ..
            } => {
                let from = match subject {
                    Subject::Url { .. } => "an OIDC token from its URL",
                    Subject::File { .. } => "a token file",
                };
                match impersonation_url {
                    Some(u) => format!(
                        "Workload Identity Federation ({from}, STS, then impersonating {})",
                        u.rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .trim_end_matches(":generateAccessToken")
                    ),
                    None => format!("Workload Identity Federation ({from}, STS)"),
                }
            }
        }
    }

    /// A valid access token: the cached one, or a new one when it is near expiry.
    pub async fn token(&self) -> Result<Secret, GcpError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if c.refresh_at.is_none_or(|t| Instant::now() < t) {
                return Ok(c.token.clone());
            }
            log::info!("Google access token: refreshing before it expires");
        }
        let (token, lifetime) = self.fetch().await?;
        let refresh_at = lifetime.map(|l| Instant::now() + l - (l / 4).min(REFRESH_MARGIN));
        *cache = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
        Ok(token)
    }

    /// Forgets the cached token (after the API refused it), so the next call fetches one.
    pub async fn invalidate(&self) {
        *self.cache.lock().await = None;
    }

    /// Whether a new token can be fetched (not a static one).
    pub fn can_refresh(&self) -> bool {
        !matches!(self.kind, Kind::Static { .. })
    }

    async fn fetch(&self) -> Result<(Secret, Option<Duration>), GcpError> {
        match &self.kind {
            Kind::Static { token, .. } => Ok((token.clone(), None)),
            Kind::ServiceAccount {
                email,
                key,
                kid,
                token_uri,
            } => {
                let assertion = sign_jwt(key, kid, email, token_uri)?;
                let body = self
                    .post_form(
                        "the service-account token request",
                        token_uri,
                        &[
                            ("grant_type", JWT_BEARER),
                            ("assertion", assertion.expose()),
                        ],
                    )
                    .await?;
                token_answer(
                    &body,
                    "access_token",
                    "expires_in",
                    "the OAuth token endpoint",
                )
            }
            Kind::External {
                audience,
                subject_token_type,
                token_url,
                impersonation_url,
                subject,
            } => {
                let subject_token = self.subject_token(subject).await?;
                let sts = self
                    .post_json(
                        "the STS token exchange",
                        token_url,
                        None,
                        &json!({
                            "grantType": TOKEN_EXCHANGE,
                            "audience": audience,
                            "scope": CLOUD_PLATFORM,
                            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
                            "subjectToken": subject_token.expose(),
                            "subjectTokenType": subject_token_type,
                        }),
                    )
                    .await?;
                let (federated, lifetime) =
                    token_answer(&sts, "access_token", "expires_in", "STS")?;
                let Some(url) = impersonation_url else {
                    return Ok((federated, lifetime));
                };
                let iam = self
                    .post_json(
                        "IAM Credentials generateAccessToken",
                        url,
                        Some(&federated),
                        &json!({"scope": [CLOUD_PLATFORM], "lifetime": "3600s"}),
                    )
                    .await?;
                let token = iam
                    .get("accessToken")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        GcpError::auth("IAM Credentials answered without an accessToken")
                    })?;
                let token = Secret::new(token);
                let lifetime = iam
                    .get("expireTime")
                    .and_then(Value::as_str)
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| {
                        let secs = t.timestamp() - chrono::Utc::now().timestamp();
                        Duration::from_secs(secs.max(1) as u64)
                    })
                    .or(Some(Duration::from_secs(3600)));
                Ok((token, lifetime))
            }
        }
    }

    async fn subject_token(&self, subject: &Subject) -> Result<Secret, GcpError> {
        let (text, field) = match subject {
            Subject::Url {
                url,
                headers,
                field,
            } => {
                let mut req = self.http.get(url);
                for (k, v) in headers {
                    req = req.header(k.as_str(), v.expose());
                }
                let resp = req.send().await.map_err(|e| {
                    GcpError::Transient(format!("cannot fetch the OIDC token: {e}"))
                })?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    return Err(GcpError::auth(format!(
                        "the OIDC token URL of the external_account file answered HTTP {}: does the workflow grant `permissions: id-token: write`?",
                        status.as_u16()
                    )));
                }
                (text, field.clone())
            }
            Subject::File { path, field } => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    GcpError::auth(format!(
                        "cannot read the subject token file {} of the external_account credentials: {e}",
                        path.display()
                    ))
                })?;
                (text, field.clone())
            }
        };
        let token = match field {
            Some(f) => serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get(&f).and_then(Value::as_str).map(str::to_string))
                .ok_or_else(|| {
                    GcpError::auth(format!("the OIDC token answer has no `{f}` field"))
                })?,
            None => text.trim().to_string(),
        };
        Ok(Secret::new(token))
    }

    async fn post_form(
        &self,
        what: &str,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Value, GcpError> {
        let resp = self.http.post(url).form(form).send().await;
        answer(what, resp).await
    }

    async fn post_json(
        &self,
        what: &str,
        url: &str,
        bearer: Option<&Secret>,
        body: &Value,
    ) -> Result<Value, GcpError> {
        let mut req = self.http.post(url).json(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t.expose());
        }
        answer(what, req.send().await).await
    }
}

async fn answer(
    what: &str,
    resp: Result<reqwest::Response, reqwest::Error>,
) -> Result<Value, GcpError> {
    let resp = resp.map_err(|e| GcpError::Transient(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    if status >= 500 || status == 429 {
        return Err(GcpError::Transient(format!("{what}: HTTP {status}")));
    }
    if status >= 400 {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let msg = v["error"]["message"]
            .as_str()
            .or(v["error_description"].as_str())
            .or(v["error"].as_str())
            .unwrap_or("no message")
            .to_string();
        return Err(GcpError::auth(format!(
            "{what} was refused (HTTP {status}): {}",
            crate::secrets::redact(&msg)
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| GcpError::auth(format!("{what} answered something that is not JSON: {e}")))
}

fn token_answer(
    v: &Value,
    token_field: &str,
    expires_field: &str,
    who: &str,
) -> Result<(Secret, Option<Duration>), GcpError> {
    let token = v
        .get(token_field)
        .and_then(Value::as_str)
        .ok_or_else(|| GcpError::auth(format!("{who} answered without `{token_field}`")))?;
    let secs = v.get(expires_field).and_then(Value::as_u64).unwrap_or(3600);
    Ok((Secret::new(token), Some(Duration::from_secs(secs.max(1)))))
}

/// The RS256-signed JWT assertion of the service-account grant (RFC 7523).
fn sign_jwt(
    key: &ring::signature::RsaKeyPair,
    kid: &str,
    email: &str,
    aud: &str,
) -> Result<Secret, GcpError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid});
    let claims =
        json!({"iss": email, "scope": CLOUD_PLATFORM, "aud": aud, "iat": now, "exp": now + 3600});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .map_err(|_| GcpError::auth("cannot sign the service-account assertion"))?;
    Ok(Secret::new(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(sig)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_credentials_names_the_three_ways() {
        let e = TokenSource::from_env(&env(&[])).unwrap_err();
        assert!(e.message.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{e}");
        let hint = e.hint.unwrap();
        assert!(hint.contains("google-github-actions/auth"), "{hint}");
        assert!(hint.contains("service-account key file"), "{hint}");
        assert!(hint.contains("GOOGLE_OAUTH_ACCESS_TOKEN"), "{hint}");
    }

    #[test]
    fn an_unreadable_or_foreign_file_is_named() {
        let e = TokenSource::from_env(&env(&[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            "/nonexistent/gha-creds-1.json",
        )]))
        .unwrap_err();
        assert!(e.message.contains("/nonexistent/gha-creds-1.json"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("adc.json");
        std::fs::write(&p, r#"{"type": "authorized_user", "client_id": "x"}"#).unwrap();
        let e = TokenSource::from_env(&env(&[(
            "GOOGLE_APPLICATION_CREDENTIALS",
            p.to_str().unwrap(),
        )]))
        .unwrap_err();
        assert!(e.message.contains("`authorized_user`"), "{e}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_access_token_variable_wins_and_is_masked() {
        let s = TokenSource::from_env(&env(&[
            ("CLOUDSDK_AUTH_ACCESS_TOKEN", "ya29.static-test-token"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent"),
        ]))
        .unwrap();
        assert_eq!(
            s.describe(),
            "the access token in CLOUDSDK_AUTH_ACCESS_TOKEN"
        );
        assert!(!s.can_refresh());
        let t = s.token().await.unwrap();
        assert_eq!(t.expose(), "ya29.static-test-token");
        assert_eq!(format!("{t} {t:?}"), "*** ***");
        assert_eq!(
            crate::secrets::redact("token ya29.static-test-token here"),
            "token *** here"
        );
    }
}
