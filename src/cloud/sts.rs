//! Which AWS credentials a run uses: static keys as aws-actions/configure-aws-credentials
//! exports them, else a web-identity token (EKS IRSA, GitHub OIDC: `AWS_ROLE_ARN` +
//! `AWS_WEB_IDENTITY_TOKEN_FILE`) exchanged for temporary credentials through STS
//! `AssumeRoleWithWebIdentity` (query protocol, unsigned, XML answer). The token and
//! the credentials are [`Secret`]s from the moment they are read. Also the account
//! the credentials belong to (`GetCallerIdentity`), which names SageMaker's default bucket.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::cloud::aws::{self, AwsClient, AwsCredentials, AwsError, Payload, Signing};
use crate::cloud::retry::{retry, Backoff};
use crate::error::UserError;
use crate::secrets::{redact, Secret};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The region STS is called in when the environment names none.
const DEFAULT_STS_REGION: &str = "us-east-1";

const WEB_IDENTITY_HINT: &str =
    "a web-identity exchange needs AWS_ROLE_ARN (the role to assume) and \
AWS_WEB_IDENTITY_TOKEN_FILE (a file holding the OIDC token), as EKS or \
aws-actions/configure-aws-credentials with role-to-assume leave them; \
or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead";

/// A variable's trimmed value; an empty one counts as unset.
fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Where credentials came from, for the log (never a value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`).
    Environment,
    /// `AWS_ROLE_ARN` + `AWS_WEB_IDENTITY_TOKEN_FILE` through STS.
    WebIdentity,
}

/// Which source `env` provides: static keys win when either key variable is set
/// (a half-set pair is then reported by [`AwsCredentials::from_env`]); else a web
/// identity when its token file or role is set.
pub fn source(env: &BTreeMap<String, String>) -> Source {
    let keys =
        var(env, "AWS_ACCESS_KEY_ID").is_some() || var(env, "AWS_SECRET_ACCESS_KEY").is_some();
    let web = var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").is_some();
    if !keys && web {
        Source::WebIdentity
    } else {
        Source::Environment
    }
}

/// The AWS credentials of this run: static keys from the environment, else the
/// temporary credentials of `AWS_ROLE_ARN` assumed with the web-identity token in
/// `AWS_WEB_IDENTITY_TOKEN_FILE` (STS endpoint: `AWS_ENDPOINT_URL_STS` /
/// `AWS_ENDPOINT_URL`, else the regional one). Errors say which variable to set.
pub async fn resolve_credentials(
    env: &BTreeMap<String, String>,
) -> Result<AwsCredentials, UserError> {
    match source(env) {
        Source::Environment => {
            let c = AwsCredentials::from_env(env)?;
            log::info!(
                "AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the environment"
            );
            Ok(c)
        }
        Source::WebIdentity => web_identity(env).await,
    }
}

async fn web_identity(env: &BTreeMap<String, String>) -> Result<AwsCredentials, UserError> {
    let file = var(env, "AWS_WEB_IDENTITY_TOKEN_FILE").unwrap_or_default();
    let role = var(env, "AWS_ROLE_ARN").ok_or_else(|| {
        UserError::invalid("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not: no role to assume with the token")
            .hint(WEB_IDENTITY_HINT)
    })?;
    if !role.starts_with("arn:") || !role.contains(":role/") {
        return Err(UserError::invalid(format!(
            "AWS_ROLE_ARN is `{role}`, which is not an IAM role ARN (expected arn:aws:iam::<account>:role/<name>)"
        ))
        .hint(WEB_IDENTITY_HINT));
    }
    let token = std::fs::read_to_string(file).map_err(|e| {
        UserError::invalid(format!(
            "cannot read the web-identity token file {file} (AWS_WEB_IDENTITY_TOKEN_FILE): {e}"
        ))
        .hint("the file is written by EKS or by the OIDC step before this one; check the path and that this step runs after it")
    })?;
    let token = token.trim();
    if token.len() < 4 {
        return Err(UserError::invalid(format!(
            "the web-identity token file {file} (AWS_WEB_IDENTITY_TOKEN_FILE) is empty"
        ))
        .hint(WEB_IDENTITY_HINT));
    }
    let token = Secret::new(token);
    let session = match var(env, "AWS_ROLE_SESSION_NAME") {
        Some(s) => {
            if !valid_session_name(s) {
                return Err(UserError::invalid(format!(
                    "AWS_ROLE_SESSION_NAME is `{s}`: STS wants 2 to 64 letters, digits or +=,.@_-"
                ))
                .hint("unset it to let mlcd name the session mlcd-<time>"));
            }
            s.to_string()
        }
        None => default_session_name(SystemTime::now()),
    };
    let region = aws::region_from_env(env).unwrap_or_else(|| DEFAULT_STS_REGION.to_string());
    let endpoint = aws::endpoint(&aws::STS, &region, env)?;
    log::info!("AWS credentials: web identity (AWS_WEB_IDENTITY_TOKEN_FILE) for {role} through STS AssumeRoleWithWebIdentity");

    let http = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("mlcd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UserError::failed(format!("cannot set up the HTTP client: {e}")))?;
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session.as_str()),
        ("WebIdentityToken", token.expose()),
    ];
    let what = "AWS STS AssumeRoleWithWebIdentity";
    let backoff = Backoff::from_env();
    let body = retry(what, &backoff, AwsError::is_transient, || async {
        let resp = http
            .post(endpoint.as_str())
            .form(&form)
            .send()
            .await
            .map_err(|e| AwsError::Transient(redact(&format!("{what}: {e}"))))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| AwsError::Transient(redact(&format!("{what}: {e}"))))?;
        if !(200..300).contains(&status) {
            return Err(xml_error(status, &text));
        }
        Ok(text)
    })
    .await
    .map_err(|e| exchange_error(e, role))?;
    let answer: AssumeResponse = quick_xml::de::from_str(&body).map_err(|_| {
        UserError::failed(format!(
            "{what} for {role} answered with XML that holds no Credentials"
        ))
    })?;
    let c = answer.result.credentials;
    let token = (!c.session_token.is_empty()).then_some(c.session_token);
    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
        return Err(UserError::failed(format!(
            "{what} for {role} answered with empty credentials"
        )));
    }
    let credentials = AwsCredentials::new(c.access_key_id, c.secret_access_key, token);
    if let Some(exp) = c.expiration {
        log::info!("AWS credentials: assumed {role}, valid until {exp}");
    }
    Ok(credentials)
}

/// The 12-digit id of the account `client`'s credentials belong to, from STS
/// `GetCallerIdentity` at `endpoint` (see [`aws::endpoint`]). Needs no
/// permission: every identity may ask.
pub async fn caller_account(client: &AwsClient, endpoint: &str) -> Result<String, UserError> {
    let url = reqwest::Url::parse(endpoint)
        .map_err(|e| UserError::invalid(format!("the STS endpoint `{endpoint}`: {e}")))?;
    let what = "AWS STS GetCallerIdentity";
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    let text = retry(what, client.backoff(), AwsError::is_transient, || async {
        let req = client.signed(
            aws::STS.signing_name,
            Signing::Standard,
            reqwest::Method::POST,
            &url,
            &headers,
            Payload::Bytes(body.as_bytes()),
        )?;
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| aws::send_error(what, &e))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| aws::send_error(what, &e))?;
        if !(200..300).contains(&status) {
            return Err(xml_error(status, &text));
        }
        Ok(text)
    })
    .await
    .map_err(|e| {
        let base = UserError::from(e);
        let err = UserError::failed(format!(
            "cannot find the AWS account of these credentials ({what}): {}",
            base.message
        ));
        match base.hint {
            Some(h) => err.hint(h),
            None => err,
        }
    })?;
    account_from_answer(&text).ok_or_else(|| {
        UserError::failed(format!("{what} answered without a 12-digit Account"))
            .hint("check AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL if set")
    })
}

/// The `Account` of a GetCallerIdentity answer, when it is 12 digits.
fn account_from_answer(xml: &str) -> Option<String> {
    let answer: CallerIdentityResponse = quick_xml::de::from_str(xml).ok()?;
    let account = answer.result.account.trim().to_string();
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

#[derive(Deserialize)]
struct CallerIdentityResponse {
    #[serde(rename = "GetCallerIdentityResult")]
    result: CallerIdentityResult,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CallerIdentityResult {
    #[serde(default)]
    account: String,
}

/// STS's rule for session names: `[\w+=,.@-]{2,64}`.
fn valid_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

/// `mlcd-<unix seconds>`.
fn default_session_name(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("mlcd-{secs}")
}

#[derive(Deserialize)]
struct AssumeResponse {
    #[serde(rename = "AssumeRoleWithWebIdentityResult")]
    result: AssumeResult,
}

#[derive(Deserialize)]
struct AssumeResult {
    #[serde(rename = "Credentials")]
    credentials: StsCredentials,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StsCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: String,
    expiration: Option<String>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(rename = "Error")]
    error: ErrorBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// STS's XML error answer as an [`AwsError`], classified like every AWS error
/// (`IDPCommunicationError` is retryable, as the SDKs treat it).
fn xml_error(status: u16, text: &str) -> AwsError {
    let (code, message) = match quick_xml::de::from_str::<ErrorResponse>(text) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (String::new(), String::new()),
    };
    if code == "IDPCommunicationError" {
        return AwsError::Transient(redact(&format!("STS: {code}: {message}")));
    }
    let json = serde_json::json!({ "__type": code, "message": message });
    let body = if code.is_empty() {
        // Not STS's XML (a proxy's page): classified by the status alone.
        Vec::new()
    } else {
        json.to_string().into_bytes()
    };
    aws::parse_error(status, None, &body)
}

fn exchange_error(e: AwsError, role: &str) -> UserError {
    let hint = match e.code() {
        Some("InvalidIdentityToken" | "ExpiredTokenException" | "IDPRejectedClaim") => format!(
            "STS refused the web-identity token: check that the role {role} trusts the token's \
             issuer and audience (its trust policy), and that the token is fresh"
        ),
        Some(c) if c.starts_with("AccessDenied") => format!(
            "the role {role} does not allow sts:AssumeRoleWithWebIdentity for this token: check its trust policy"
        ),
        _ => match &e {
            AwsError::Throttled { .. } | AwsError::Transient(_) => {
                "STS did not answer in time; re-run later, or raise MLCD_RETRY_ATTEMPTS / MLCD_RETRY_INITIAL_MS".to_string()
            }
            _ => "check AWS_ROLE_ARN, and AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL if set".to_string(),
        },
    };
    let base = UserError::from(e);
    UserError::failed(format!(
        "cannot assume {role} with the web-identity token (STS AssumeRoleWithWebIdentity): {}",
        base.message
    ))
    .hint(hint)
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
    fn static_keys_win_over_a_web_identity() {
        let both = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
        ]);
        assert_eq!(source(&both), Source::Environment);
        let web = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/r"),
        ]);
        assert_eq!(source(&web), Source::WebIdentity);
        assert_eq!(source(&env(&[("AWS_ROLE_ARN", "x")])), Source::Environment);
    }

    #[test]
    fn session_names_follow_the_sts_rule() {
        assert!(valid_session_name("mlcd-1700000000"));
        assert!(valid_session_name("a.b@c=d,e+f_g"));
        assert!(!valid_session_name("x"));
        assert!(!valid_session_name("has space"));
        assert!(!valid_session_name(&"a".repeat(65)));
        let name = default_session_name(SystemTime::UNIX_EPOCH + Duration::from_secs(42));
        assert_eq!(name, "mlcd-42");
        assert!(valid_session_name(&name));
    }

    #[test]
    fn sts_xml_errors_are_classified() {
        let xml = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>No OpenIDConnect provider found</Message></Error>
  <RequestId>abc</RequestId></ErrorResponse>"#;
        let e = xml_error(400, xml);
        assert_eq!(e.code(), Some("InvalidIdentityToken"));
        assert!(!e.is_transient());
        assert!(
            e.to_string().contains("No OpenIDConnect provider found"),
            "{e}"
        );
        let xml = xml.replace("InvalidIdentityToken", "IDPCommunicationError");
        assert!(xml_error(400, &xml).is_transient());
        let xml = r#"<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"#;
        assert!(matches!(xml_error(400, xml), AwsError::Throttled { .. }));
        assert!(xml_error(503, "<html>busy</html>").is_transient());
        let user = exchange_error(
            xml_error(400, &xml.replace("Throttling", "InvalidIdentityToken")),
            "arn:aws:iam::123456789012:role/ci",
        );
        assert!(user.hint.unwrap().contains("trust policy"));
    }

    #[test]
    fn credentials_parse_from_the_sts_answer() {
        let xml = r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIAPARSETEST0001</AccessKeyId><SecretAccessKey>parsesecret/0001</SecretAccessKey><SessionToken>parsetoken0001</SessionToken><Expiration>2026-11-27T04:10:04Z</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/ci/s</Arn></AssumedRoleUser></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"#;
        let a: AssumeResponse = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(a.result.credentials.access_key_id, "ASIAPARSETEST0001");
        assert_eq!(a.result.credentials.session_token, "parsetoken0001");
        assert_eq!(
            a.result.credentials.expiration.as_deref(),
            Some("2026-11-27T04:10:04Z")
        );
    }

    #[test]
    fn the_account_is_read_from_get_caller_identity() {
        let xml = r#"<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>arn:aws:iam::123456789012:user/ci</Arn>
    <UserId>AIDAEXAMPLE</UserId>
    <Account>123456789012</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"#;
        assert_eq!(account_from_answer(xml).as_deref(), Some("123456789012"));
        assert_eq!(
            account_from_answer(&xml.replace("123456789012<", "12345<")),
            None
        );
        assert_eq!(account_from_answer("<html>proxy</html>"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_half_set_web_identity_says_what_is_missing() {
        let e = resolve_credentials(&env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent")]))
            .await
            .unwrap_err();
        assert!(e.message.contains("AWS_ROLE_ARN is not"), "{e}");
        let e = resolve_credentials(&env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci"),
        ]))
        .await
        .unwrap_err();
        assert!(e.message.contains("/nonexistent/token"), "{e}");
        assert!(e.message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
    }
}
