//! A small AWS client, shared by everything that calls AWS (the ECR token exchange
//! now, the SageMaker train/deploy backends and registry later): credentials from
//! the environment as aws-actions/configure-aws-credentials leaves them, region
//! and endpoint resolution (honouring `AWS_ENDPOINT_URL_<SERVICE>` /
//! `AWS_ENDPOINT_URL`, which is how tests point at moto), SigV4 signing with the
//! `aws-sigv4` crate over `reqwest` (not the SDK: far cheaper to build), the AWS
//! JSON 1.1 protocol, and AWS error bodies parsed into an [`AwsError`] a caller
//! can branch on. Calls go through the shared [`retry`]; credential values are
//! [`Secret`]s and reach no log line, error or `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::Url;
use serde_json::Value;

use crate::cloud::retry::{retry, Backoff};
use crate::error::UserError;
use crate::secrets::{redact, Secret};

/// The content type of the AWS JSON 1.1 protocol (ECR, SageMaker, …).
pub const JSON_1_1: &str = "application/x-amz-json-1.1";
/// The AWS JSON 1.0 protocol's content type (CloudWatch).
pub const JSON_1_0: &str = "application/x-amz-json-1.0";

const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the credentials come from, for hints.
const CREDENTIALS_HINT: &str =
    "use aws-actions/configure-aws-credentials in a step before this one \
(it sets AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN), \
or export them outside GitHub Actions; a web identity (EKS, GitHub OIDC) works too: \
AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE";

/// An AWS service: how its endpoint is found and how requests to it are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The service id of the SDKs, which names the endpoint variable
    /// (`ECR` → `AWS_ENDPOINT_URL_ECR`, `SageMaker` → `AWS_ENDPOINT_URL_SAGEMAKER`).
    pub id: &'static str,
    /// The SigV4 signing name (`ecr`, `sagemaker`).
    pub signing_name: &'static str,
    /// The first labels of the default host, before `.{region}.amazonaws.com`.
    pub host_prefix: &'static str,
}

/// Amazon ECR's API (`api.ecr.{region}.amazonaws.com`, signed as `ecr`).
pub const ECR: Service = Service {
    id: "ECR",
    signing_name: "ecr",
    host_prefix: "api.ecr",
};

/// The SageMaker API (`api.sagemaker.{region}.amazonaws.com`, signed as `sagemaker`).
pub const SAGEMAKER: Service = Service {
    id: "SageMaker",
    signing_name: "sagemaker",
    host_prefix: "api.sagemaker",
};

/// CloudWatch Logs (`logs.{region}.amazonaws.com`, signed as `logs`): training logs.
pub const LOGS: Service = Service {
    id: "CloudWatch Logs",
    signing_name: "logs",
    host_prefix: "logs",
};

/// Amazon CloudWatch metrics (`monitoring.{region}.amazonaws.com`, signed as
/// `monitoring`, JSON 1.0): the endpoint variants' metrics for the live guards.
pub const CLOUDWATCH: Service = Service {
    id: "CloudWatch",
    signing_name: "monitoring",
    host_prefix: "monitoring",
};

/// Amazon S3 (`s3.{region}.amazonaws.com`, signed as `s3`): uploaded channels.
pub const S3: Service = Service {
    id: "S3",
    signing_name: "s3",
    host_prefix: "s3",
};

/// AWS STS (`sts.{region}.amazonaws.com`, signed as `sts`): web-identity exchange.
pub const STS: Service = Service {
    id: "STS",
    signing_name: "sts",
    host_prefix: "sts",
};

impl Service {
    /// The service-specific endpoint variable, `AWS_ENDPOINT_URL_<ID>`.
    pub fn endpoint_variable(&self) -> String {
        format!(
            "AWS_ENDPOINT_URL_{}",
            self.id.to_ascii_uppercase().replace([' ', '-'], "_")
        )
    }
}

/// A variable's trimmed value; an empty one counts as unset.
fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// AWS credentials from the environment. Every value is a [`Secret`] (the access
/// key id too, as configure-aws-credentials masks it): `Debug` prints `***`.
#[derive(Clone, Debug)]
pub struct AwsCredentials {
    access_key_id: Secret,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

impl AwsCredentials {
    /// Credentials from a key pair and an optional session token.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        AwsCredentials {
            access_key_id: Secret::new(access_key_id),
            secret_access_key: Secret::new(secret_access_key),
            session_token: session_token.map(Secret::new),
        }
    }

    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and the optional
    /// `AWS_SESSION_TOKEN`, as aws-actions/configure-aws-credentials exports them.
    /// Missing or half-set credentials are an error that says what to do.
    pub fn from_env(env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let id = var(env, "AWS_ACCESS_KEY_ID");
        let secret = var(env, "AWS_SECRET_ACCESS_KEY");
        let token = var(env, "AWS_SESSION_TOKEN");
        match (id, secret) {
            (Some(id), Some(secret)) => {
                Ok(AwsCredentials::new(id, secret, token.map(str::to_string)))
            }
            (Some(_), None) => Err(UserError::invalid(
                "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not",
            )
            .hint(CREDENTIALS_HINT)),
            (None, Some(_)) => Err(UserError::invalid(
                "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
            )
            .hint(CREDENTIALS_HINT)),
            (None, None) => {
                let mut message = String::from(
                    "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
                );
                if var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
                    message.push_str(
                        " (AWS_WEB_IDENTITY_TOKEN_FILE is: web-identity tokens are exchanged by cloud::sts::resolve_credentials, not here)",
                    );
                } else if var(env, "AWS_PROFILE").is_some() {
                    message.push_str(" (AWS_PROFILE is, but mlcd does not read ~/.aws profiles)");
                }
                Err(UserError::invalid(message).hint(CREDENTIALS_HINT))
            }
        }
    }

    /// Whether a session token (temporary credentials) is present.
    pub fn has_session_token(&self) -> bool {
        self.session_token.is_some()
    }
}

/// The region from `AWS_REGION`, else `AWS_DEFAULT_REGION` (both set by
/// configure-aws-credentials).
pub fn region_from_env(env: &BTreeMap<String, String>) -> Option<String> {
    var(env, "AWS_REGION")
        .or_else(|| var(env, "AWS_DEFAULT_REGION"))
        .map(str::to_string)
}

/// Whether `region` looks like an AWS region name (`us-east-1`, `cn-north-1`).
pub fn is_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
}

/// The DNS suffix of a region's endpoints.
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The endpoint URL of `service` in `region`: `AWS_ENDPOINT_URL_<SERVICE>`, else
/// `AWS_ENDPOINT_URL` (both ignored when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is
/// true), else `https://{host_prefix}.{region}.amazonaws.com` (`.com.cn` in China).
pub fn endpoint(
    service: &Service,
    region: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, UserError> {
    if !is_region(region) {
        return Err(UserError::invalid(format!(
            "`{region}` is not an AWS region name (like us-east-1)"
        ))
        .hint("set AWS_REGION, or the region in the config file"));
    }
    let ignore = var(env, "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !ignore {
        let specific = service.endpoint_variable();
        for name in [specific.as_str(), "AWS_ENDPOINT_URL"] {
            if let Some(url) = var(env, name) {
                return match Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        Ok(url.to_string())
                    }
                    _ => Err(UserError::invalid(format!(
                        "{name} is `{url}`, which is not an http(s) URL"
                    ))
                    .hint("give a URL like https://host:port, or unset it to use AWS itself")),
                };
            }
        }
    }
    Ok(format!(
        "https://{}.{region}.{}",
        service.host_prefix,
        dns_suffix(region)
    ))
}

/// What went wrong calling AWS, by what a caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AwsError {
    /// AWS asked us to slow down (`ThrottlingException`, HTTP 429 …). Retried.
    #[error("AWS throttled the request ({code}): {message}")]
    Throttled {
        /// The AWS error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// The credentials were refused, or do not allow the call
    /// (`UnrecognizedClientException`, `InvalidSignatureException`,
    /// `AccessDenied*`, `ExpiredTokenException` …). Never retried.
    #[error("AWS refused the credentials ({code}): {message}")]
    Auth {
        /// The AWS error code.
        code: String,
        /// AWS's message.
        message: String,
    },
    /// AWS could not be reached or failed on its side (connection error,
    /// timeout, HTTP 5xx), still so after the retries.
    #[error("{0}")]
    Transient(String),
    /// Anything else: a validation error, a missing resource, an answer that is
    /// not JSON. `code` is AWS's error code (empty for local failures), so a
    /// caller can branch on it (`ResourceNotFoundException` → create).
    #[error("{}", other_message(*status, code, message))]
    Other {
        /// The HTTP status, when AWS answered.
        status: Option<u16>,
        /// The AWS error code, or empty.
        code: String,
        /// What happened.
        message: String,
    },
}

fn other_message(status: Option<u16>, code: &str, message: &str) -> String {
    match (status, code.is_empty()) {
        (Some(s), false) => format!("AWS error {code} (HTTP {s}): {message}"),
        (Some(s), true) => format!("AWS answered HTTP {s}: {message}"),
        (None, _) => message.to_string(),
    }
}

impl AwsError {
    /// Whether retrying may help (what [`retry`] asks): throttling and transient failures.
    pub fn is_transient(&self) -> bool {
        matches!(self, AwsError::Throttled { .. } | AwsError::Transient(_))
    }

    /// The AWS error code, when AWS answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Throttled { code, .. } | AwsError::Auth { code, .. } => Some(code),
            AwsError::Other { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }

    /// A local failure (no AWS answer) with `message`.
    pub fn other(message: impl Into<String>) -> Self {
        AwsError::Other {
            status: None,
            code: String::new(),
            message: message.into(),
        }
    }
}

impl From<AwsError> for UserError {
    fn from(e: AwsError) -> Self {
        let hint = match &e {
            AwsError::Auth { .. } => Some(
                "check the AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, \
                 AWS_SESSION_TOKEN: expired?) and that the role may make this call",
            ),
            AwsError::Throttled { .. } | AwsError::Transient(_) => Some(
                "AWS did not answer in time; re-run later, or raise MLCD_RETRY_ATTEMPTS / MLCD_RETRY_INITIAL_MS",
            ),
            AwsError::Other { .. } => None,
        };
        let err = UserError::failed(redact(&e.to_string()));
        match hint {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

/// Error codes that mean "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "BandwidthLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes that mean the credentials were refused or are not allowed.
const AUTH_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "IncompleteSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AuthFailure",
    "NotAuthorized",
    "UnauthorizedOperation",
];

/// Error codes that mean AWS failed on its side.
const SERVER_CODES: &[&str] = &[
    "InternalFailure",
    "InternalError",
    "InternalServerError",
    "InternalServerException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// `com.amazonaws.ecr#ThrottlingException` or `ThrottlingException:http://…`
/// → `ThrottlingException`.
fn normalize_code(raw: &str) -> &str {
    let code = raw.rsplit('#').next().unwrap_or(raw);
    code.split(':').next().unwrap_or(code).trim()
}

/// Turns an AWS error answer (status, `x-amzn-ErrorType`, body) into an [`AwsError`].
pub fn parse_error(status: u16, error_type_header: Option<&str>, body: &[u8]) -> AwsError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = ["__type", "code", "Code"]
        .iter()
        .find_map(|k| json[*k].as_str())
        .or(error_type_header)
        .map(normalize_code)
        .unwrap_or("")
        .to_string();
    let message = ["message", "Message", "errorMessage"]
        .iter()
        .find_map(|k| json[*k].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| {
            // Not JSON (a proxy's page, moto's HTML 500): a short text, never markup.
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() || text.starts_with('<') || json.is_object() {
                String::from("(no message)")
            } else {
                text.chars().take(300).collect()
            }
        });
    let message = redact(&message);
    if THROTTLING_CODES.contains(&code.as_str()) || status == 429 {
        let code = if code.is_empty() {
            "HTTP 429".into()
        } else {
            code
        };
        return AwsError::Throttled { code, message };
    }
    if AUTH_CODES.contains(&code.as_str())
        || code.starts_with("AccessDenied")
        || (code.is_empty() && (status == 401 || status == 403))
    {
        let code = if code.is_empty() {
            format!("HTTP {status}")
        } else {
            code
        };
        return AwsError::Auth { code, message };
    }
    if status >= 500 || SERVER_CODES.contains(&code.as_str()) {
        let code = if code.is_empty() {
            String::new()
        } else {
            format!(" {code}")
        };
        return AwsError::Transient(format!("AWS failed with HTTP {status}{code}: {message}"));
    }
    AwsError::Other {
        status: Some(status),
        code,
        message,
    }
}

/// An HTTP request to sign.
#[derive(Debug, Clone, Copy)]
pub struct ToSign<'a> {
    /// `GET`, `POST` …
    pub method: &'a str,
    /// The full URL, already percent-encoded.
    pub url: &'a str,
    /// The headers to sign besides `host` (taken from `url`), names in lower case.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// What the signature says about a request's body.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// The body itself (hashed while signing).
    Bytes(&'a [u8]),
    /// The hex SHA-256 of a body streamed from elsewhere (a file), computed beforehand.
    Sha256(&'a str),
}

/// How a service wants its requests signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// The JSON and query protocols (ECR, SageMaker, STS …).
    Standard,
    /// S3's variant: the path encoded once and not normalised, and the payload's
    /// hash sent as `x-amz-content-sha256`.
    S3,
}

/// The SigV4 headers (`x-amz-date`, `authorization`, `x-amz-security-token`) for
/// one request, and whether each is sensitive.
pub fn sign_headers(
    credentials: &AwsCredentials,
    region: &str,
    signing_name: &str,
    request: &ToSign<'_>,
    time: SystemTime,
) -> Result<Vec<(&'static str, String, bool)>, AwsError> {
    sign_request(
        credentials,
        region,
        signing_name,
        Signing::Standard,
        request.method,
        request.url,
        request.headers,
        Payload::Bytes(request.body),
        time,
    )
}

/// The SigV4 headers for one request whose body is described by `payload`, signed
/// the way `signing` says (with [`Signing::S3`], `x-amz-content-sha256` is among them).
#[allow(clippy::too_many_arguments)]
pub fn sign_request(
    credentials: &AwsCredentials,
    region: &str,
    signing_name: &str,
    signing: Signing,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    payload: Payload<'_>,
    time: SystemTime,
) -> Result<Vec<(&'static str, String, bool)>, AwsError> {
    let identity = signing_identity(credentials).into();
    let mut settings = SigningSettings::default();
    if signing == Signing::S3 {
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::other(format!("cannot sign the AWS request: {e}")))?
        .into();
    let body = match payload {
        Payload::Bytes(b) => SignableBody::Bytes(b),
        Payload::Sha256(h) => SignableBody::Precomputed(h.to_string()),
    };
    let request = SignableRequest::new(method, url, headers.iter().copied(), body)
        .map_err(|e| AwsError::other(format!("cannot sign the AWS request to {url}: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| AwsError::other(format!("cannot sign the AWS request to {url}: {e}")))?
        .into_parts();
    let (signed, _params) = instructions.into_parts();
    Ok(signed
        .into_iter()
        .map(|h| (h.name(), h.value().to_string(), h.sensitive()))
        .collect())
}

/// mlcd's credentials as the identity aws-sigv4 signs with.
fn signing_identity(credentials: &AwsCredentials) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        credentials.access_key_id.expose(),
        credentials.secret_access_key.expose(),
        credentials
            .session_token
            .as_ref()
            .map(|t| t.expose().to_string()),
        None,
        "environment",
    )
}

/// `url` presigned with SigV4 query parameters (`X-Amz-Algorithm` …
/// `X-Amz-Signature`, valid for `expires`), the way botocore's
/// `generate_presigned_url` makes it; `headers` are signed (the caller of the URL
/// must send them). The URL holds a signature: keep it out of logs (the caller
/// wraps what it makes of it in a [`Secret`]).
pub fn presign_url(
    credentials: &AwsCredentials,
    region: &str,
    signing_name: &str,
    url: &str,
    headers: &[(&str, &str)],
    expires: Duration,
    time: SystemTime,
) -> Result<String, AwsError> {
    let identity = signing_identity(credentials).into();
    let mut settings = SigningSettings::default();
    settings.signature_location = aws_sigv4::http_request::SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::other(format!("cannot presign the AWS request: {e}")))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| AwsError::other(format!("cannot presign the AWS request to {url}: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| AwsError::other(format!("cannot presign the AWS request to {url}: {e}")))?
        .into_parts();
    let (_headers, mut query) = instructions.into_parts();
    // The signature last, as botocore orders them (aws-sigv4 puts the session
    // token after it): EKS token consumers compare URLs byte for byte in tests.
    query.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    let mut out = url.to_string();
    let mut sep = if out.contains('?') { '&' } else { '?' };
    for (name, value) in query {
        out.push(sep);
        out.push_str(name);
        out.push('=');
        out.push_str(&crate::cloud::s3::encode(&value, true));
        sep = '&';
    }
    Ok(out)
}

/// A signing AWS client for one region. Cheap to clone.
#[derive(Clone)]
pub struct AwsClient {
    http: reqwest::Client,
    credentials: AwsCredentials,
    region: String,
    backoff: Backoff,
}

impl fmt::Debug for AwsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsClient")
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl AwsClient {
    /// A client signing with `credentials` for `region`, retrying with
    /// [`Backoff::from_env`].
    pub fn new(credentials: AwsCredentials, region: impl Into<String>) -> Result<Self, AwsError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mlcd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AwsError::other(format!("cannot set up the HTTP client: {e}")))?;
        Ok(AwsClient {
            http,
            credentials,
            region: region.into(),
            backoff: Backoff::from_env(),
        })
    }

    /// The same client with another retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The retry policy calls through this client follow.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// A request to `url`, signed now for `signing_name` with `headers` (names in
    /// lower case; they are set on the request too) and `payload` describing the
    /// body, which the caller attaches. For protocols other than JSON 1.1 (S3's
    /// REST-XML, STS's query); send it once, and build it again for a retry.
    #[allow(clippy::too_many_arguments)]
    pub fn signed(
        &self,
        signing_name: &str,
        signing: Signing,
        method: reqwest::Method,
        url: &Url,
        headers: &[(&str, &str)],
        payload: Payload<'_>,
    ) -> Result<reqwest::RequestBuilder, AwsError> {
        let signed = sign_request(
            &self.credentials,
            &self.region,
            signing_name,
            signing,
            method.as_str(),
            url.as_str(),
            headers,
            payload,
            SystemTime::now(),
        )?;
        let mut req = self.http.request(method, url.clone());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        for (name, value, sensitive) in signed {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| AwsError::other("the signed header is not a valid header value"))?;
            value.set_sensitive(sensitive || name == "authorization");
            req = req.header(name, value);
        }
        Ok(req)
    }

    /// One call of the AWS JSON 1.1 protocol: `POST {endpoint}/` with
    /// `X-Amz-Target: {target}` and `body`, signed for `service_signing_name`;
    /// the answer's JSON body. Throttling and transient failures are retried
    /// (re-signed each time); auth and other errors are returned at once.
    pub async fn json_call(
        &self,
        service_signing_name: &str,
        endpoint: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, AwsError> {
        self.json_call_as(JSON_1_1, service_signing_name, endpoint, target, body)
            .await
    }

    /// [`AwsClient::json_call`] with another JSON protocol version's content
    /// type ([`JSON_1_0`] for CloudWatch).
    pub async fn json_call_as(
        &self,
        content_type: &'static str,
        service_signing_name: &str,
        endpoint: &str,
        target: &str,
        body: &Value,
    ) -> Result<Value, AwsError> {
        let url = Url::parse(endpoint)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| AwsError::other(format!("`{endpoint}` is not an http(s) URL")))?;
        let payload = serde_json::to_vec(body)
            .map_err(|e| AwsError::other(format!("cannot encode the request: {e}")))?;
        let operation = target.rsplit('.').next().unwrap_or(target);
        let what = format!("AWS {operation} ({})", url.host_str().unwrap_or("?"));
        retry(&what, &self.backoff, AwsError::is_transient, || {
            self.json_once(
                content_type,
                service_signing_name,
                &url,
                target,
                &payload,
                &what,
            )
        })
        .await
    }

    async fn json_once(
        &self,
        content_type: &'static str,
        signing_name: &str,
        url: &Url,
        target: &str,
        payload: &[u8],
        what: &str,
    ) -> Result<Value, AwsError> {
        let headers = [("content-type", content_type), ("x-amz-target", target)];
        let signed = sign_headers(
            &self.credentials,
            &self.region,
            signing_name,
            &ToSign {
                method: "POST",
                url: url.as_str(),
                headers: &headers,
                body: payload,
            },
            SystemTime::now(),
        )?;
        let mut req = self
            .http
            .post(url.clone())
            .header(CONTENT_TYPE, content_type)
            .header("x-amz-target", target)
            .body(payload.to_vec());
        for (name, value, sensitive) in signed {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| AwsError::other("the signed header is not a valid header value"))?;
            value.set_sensitive(sensitive || name == "authorization");
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| send_error(what, &e))?;
        let status = resp.status();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().await.map_err(|e| send_error(what, &e))?;
        if !status.is_success() {
            return Err(parse_error(status.as_u16(), error_type.as_deref(), &bytes));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Object(Default::default()));
        }
        serde_json::from_slice(&bytes).map_err(|e| AwsError::Other {
            status: Some(status.as_u16()),
            code: String::new(),
            message: format!("{what}: the answer is not JSON ({e})"),
        })
    }
}

/// A reqwest failure as an [`AwsError`]: connection problems and timeouts are
/// transient; a bad request (never sent) is not.
pub fn send_error(what: &str, e: &reqwest::Error) -> AwsError {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !s.is_empty() && !s.starts_with("client error (") && !parts.iter().any(|p| p == &s) {
            parts.push(s);
        }
        cur = err.source();
    }
    let chain = redact(&parts.join(": "));
    if e.is_builder() {
        return AwsError::other(format!("{what}: {chain}"));
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    };
    AwsError::Transient(format!("{what} {kind}: {chain}"))
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

    /// 2015-08-30T12:36:00Z, the time of AWS's SigV4 test suite.
    fn suite_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)
    }

    fn get(url: &str) -> ToSign<'_> {
        ToSign {
            method: "GET",
            url,
            headers: &[],
            body: b"",
        }
    }

    const SUITE_KEY: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn authorization<'a>(signed: &'a [(&'static str, String, bool)]) -> &'a str {
        signed
            .iter()
            .find(|(n, _, _)| *n == "authorization")
            .map(|(_, v, _)| v.as_str())
            .expect("an authorization header")
    }

    #[test]
    fn signing_matches_the_aws_sigv4_test_suite() {
        // get-vanilla and get-vanilla-with-session-token from AWS's SigV4 suite.
        let c = AwsCredentials::new("AKIDEXAMPLE", SUITE_KEY, None);
        let url = "https://example.amazonaws.com/";
        let s = sign_headers(&c, "us-east-1", "service", &get(url), suite_time()).unwrap();
        assert_eq!(
            authorization(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert!(s
            .iter()
            .any(|(n, v, _)| *n == "x-amz-date" && v == "20150830T123600Z"));
        let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
        let c = AwsCredentials::new("AKIDEXAMPLE", SUITE_KEY, Some(token.into()));
        let s = sign_headers(&c, "us-east-1", "service", &get(url), suite_time()).unwrap();
        assert!(authorization(&s).ends_with(
            "SignedHeaders=host;x-amz-date;x-amz-security-token, \
             Signature=07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        ));
        assert!(s
            .iter()
            .any(|(n, v, sensitive)| *n == "x-amz-security-token" && v == token && *sensitive));
    }

    #[test]
    fn a_json_call_signs_like_botocore() {
        // Expected values computed with botocore's SigV4Auth (botocore 1.43) for the
        // same request at the same time.
        let headers = [
            ("content-type", JSON_1_1),
            (
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
            ),
        ];
        let body = br#"{"registryIds":["123456789012"]}"#;
        let post = ToSign {
            method: "POST",
            url: "https://api.ecr.us-east-1.amazonaws.com/",
            headers: &headers,
            body,
        };
        let c = AwsCredentials::new("AKIDEXAMPLE", SUITE_KEY, None);
        let s = sign_headers(&c, "us-east-1", "ecr", &post, suite_time()).unwrap();
        assert_eq!(
            authorization(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=a319693d5b44a9df7eaed9d9b1e9035b22ef7839621896473f27d5e9f4cc060d"
        );
        // The same input signs identically.
        let again = sign_headers(&c, "us-east-1", "ecr", &post, suite_time()).unwrap();
        assert_eq!(s, again);
        let c = AwsCredentials::new(
            "AKIDEXAMPLE",
            SUITE_KEY,
            Some("FQoGZXIvYXdzEXAMPLESESSIONTOKEN".into()),
        );
        let s = sign_headers(&c, "us-east-1", "ecr", &post, suite_time()).unwrap();
        assert_eq!(
            authorization(&s),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/ecr/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, \
             Signature=d693dd7b31edc97d19386cf92af7180b1db7b5624a126c8a2f8a3ef58646af9c"
        );
    }

    #[test]
    fn credentials_come_from_the_environment_and_never_print() {
        let e = env(&[
            ("AWS_ACCESS_KEY_ID", " AKIAENVEXAMPLE0001 "),
            ("AWS_SECRET_ACCESS_KEY", "envsecretvalue/0001"),
            ("AWS_SESSION_TOKEN", ""),
        ]);
        let c = AwsCredentials::from_env(&e).unwrap();
        assert!(!c.has_session_token(), "an empty token counts as unset");
        assert_eq!(c.access_key_id.expose(), "AKIAENVEXAMPLE0001");
        let shown = format!("{c:?}");
        assert!(!shown.contains("AKIAENVEXAMPLE0001") && !shown.contains("envsecretvalue"));
        let client = AwsClient::new(c, "eu-west-1").unwrap();
        assert!(!format!("{client:?}").contains("envsecretvalue"));
        assert_eq!(
            redact("key AKIAENVEXAMPLE0001 secret envsecretvalue/0001"),
            "key *** secret ***"
        );
    }

    #[test]
    fn missing_or_half_set_credentials_say_what_to_do() {
        let err = AwsCredentials::from_env(&env(&[])).unwrap_err();
        assert!(err.message.starts_with("no AWS credentials"), "{err}");
        assert!(err
            .hint
            .unwrap()
            .contains("aws-actions/configure-aws-credentials"));
        let err = AwsCredentials::from_env(&env(&[("AWS_ACCESS_KEY_ID", "AKIAHALFSET00001")]))
            .unwrap_err();
        assert!(
            err.message.contains("AWS_SECRET_ACCESS_KEY is not"),
            "{err}"
        );
        let err =
            AwsCredentials::from_env(&env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")]))
                .unwrap_err();
        assert!(err.message.contains("web-identity"), "{err}");
    }

    #[test]
    fn regions_and_endpoints_resolve_with_overrides() {
        let e = env(&[("AWS_DEFAULT_REGION", "eu-west-1")]);
        assert_eq!(region_from_env(&e).as_deref(), Some("eu-west-1"));
        let e = env(&[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_REGION", "us-east-2"),
        ]);
        assert_eq!(region_from_env(&e).as_deref(), Some("us-east-2"));
        assert_eq!(region_from_env(&env(&[("AWS_REGION", " ")])), None);

        let none = env(&[]);
        assert_eq!(
            endpoint(&ECR, "us-east-1", &none).unwrap(),
            "https://api.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            endpoint(&SAGEMAKER, "cn-north-1", &none).unwrap(),
            "https://api.sagemaker.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(ECR.endpoint_variable(), "AWS_ENDPOINT_URL_ECR");
        assert_eq!(SAGEMAKER.endpoint_variable(), "AWS_ENDPOINT_URL_SAGEMAKER");
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ENDPOINT_URL_ECR", "http://127.0.0.1:2"),
        ]);
        assert_eq!(
            endpoint(&ECR, "us-east-1", &e).unwrap(),
            "http://127.0.0.1:2"
        );
        assert_eq!(
            endpoint(&SAGEMAKER, "us-east-1", &e).unwrap(),
            "http://127.0.0.1:1"
        );
        let mut ignored = e.clone();
        ignored.insert("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS".into(), "TRUE".into());
        assert_eq!(
            endpoint(&ECR, "us-east-1", &ignored).unwrap(),
            "https://api.ecr.us-east-1.amazonaws.com"
        );
        let bad = env(&[("AWS_ENDPOINT_URL_ECR", "localhost:4566")]);
        let err = endpoint(&ECR, "us-east-1", &bad).unwrap_err();
        assert!(err.message.contains("AWS_ENDPOINT_URL_ECR"), "{err}");
        assert!(endpoint(&ECR, "US East", &none).is_err());
    }

    #[test]
    fn error_bodies_become_errors_a_caller_can_branch_on() {
        let throttled = parse_error(
            400,
            None,
            br#"{"__type":"com.amazonaws.ecr#ThrottlingException","message":"Rate exceeded"}"#,
        );
        assert_eq!(
            throttled,
            AwsError::Throttled {
                code: "ThrottlingException".into(),
                message: "Rate exceeded".into()
            }
        );
        assert!(throttled.is_transient());
        for (body, code) in [
            (
                r#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#,
                "UnrecognizedClientException",
            ),
            (
                r#"{"__type":"InvalidSignatureException","Message":"Signature expired"}"#,
                "InvalidSignatureException",
            ),
            (
                r#"{"__type":"AccessDeniedException:http://internal.amazon.com/","Message":"not authorized to perform: ecr:GetAuthorizationToken"}"#,
                "AccessDeniedException",
            ),
        ] {
            let e = parse_error(400, None, body.as_bytes());
            assert!(matches!(e, AwsError::Auth { .. }), "{e:?}");
            assert_eq!(e.code(), Some(code));
            assert!(!e.is_transient());
        }
        let e = parse_error(500, None, b"<!doctype html><title>500</title>");
        assert!(
            matches!(e, AwsError::Transient(_)) && e.is_transient(),
            "{e:?}"
        );
        let e = parse_error(429, None, b"");
        assert!(matches!(e, AwsError::Throttled { .. }), "{e:?}");
        let e = parse_error(
            400,
            Some("ResourceNotFoundException:http://internal.amazon.com/"),
            br#"{"message":"no such thing"}"#,
        );
        assert_eq!(e.code(), Some("ResourceNotFoundException"));
        assert_eq!(
            e.to_string(),
            "AWS error ResourceNotFoundException (HTTP 400): no such thing"
        );
        let e = parse_error(
            400,
            None,
            br#"{"__type":"ValidationException","message":"bad"}"#,
        );
        assert!(matches!(e, AwsError::Other { .. }) && !e.is_transient());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connection_errors_are_retried_then_reported_as_transient() {
        // A port nobody listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = AwsCredentials::new("AKIDEXAMPLE", SUITE_KEY, None);
        let client = AwsClient::new(c, "us-east-1")
            .unwrap()
            .with_backoff(Backoff {
                attempts: 2,
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
            });
        let err = client
            .json_call(
                "ecr",
                &format!("http://127.0.0.1:{port}"),
                "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
                &serde_json::json!({}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, AwsError::Transient(_)), "{err:?}");
        assert!(err.to_string().contains("GetAuthorizationToken"), "{err}");
        assert!(!err.to_string().contains(SUITE_KEY));
    }
}
