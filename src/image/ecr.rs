//! Amazon ECR registry credentials: recognise an ECR registry host and exchange
//! the AWS credentials in the environment for a registry password through ECR's
//! `GetAuthorizationToken` (what `aws ecr get-login-password` does), signed with
//! SigV4 by the shared [`crate::cloud::aws`] client. The token and the password
//! are [`Secret`]s from the moment they arrive.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::json;

use crate::cloud::aws::{self, AwsClient, AwsError};
use crate::cloud::sts;
use crate::error::UserError;
use crate::image::registry::Credentials;
use crate::secrets::Secret;

/// Where ECR credentials come from, for the log.
pub const SOURCE: &str = "ECR GetAuthorizationToken (AWS credentials from the environment)";

/// The `X-Amz-Target` of ECR's `GetAuthorizationToken`.
const GET_AUTHORIZATION_TOKEN: &str = "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken";

/// The account id and region of an ECR registry host
/// (`<12 digits>.dkr.ecr.<region>.amazonaws.com`, or `.amazonaws.com.cn`), else None.
pub fn is_ecr_host(host: &str) -> Option<(String, String)> {
    let host = host.trim().to_ascii_lowercase();
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let (account, rest) = rest.split_once('.')?;
    let region = rest.strip_prefix("dkr.ecr.")?;
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !aws::is_region(region) {
        return None;
    }
    Some((account.to_string(), region.to_string()))
}

/// Registry credentials (user `AWS`, a 12-hour password) for the ECR registry
/// `host`, from the AWS credentials in `env`. Missing AWS credentials are an
/// error before any request.
pub async fn credentials(
    host: &str,
    env: &BTreeMap<String, String>,
) -> Result<Credentials, UserError> {
    let (account, region) = is_ecr_host(host).ok_or_else(|| {
        UserError::invalid(format!(
            "`{host}` is not an ECR registry host (<account>.dkr.ecr.<region>.amazonaws.com)"
        ))
    })?;
    let aws_credentials = sts::resolve_credentials(env).await.map_err(|e| UserError {
        message: format!("cannot push to ECR ({host}): {}", e.message),
        ..e
    })?;
    // The registry's own region: a token is valid only there, whatever AWS_REGION says.
    let endpoint = aws::endpoint(&aws::ECR, &region, env)?;
    let client = AwsClient::new(aws_credentials, region.as_str()).map_err(UserError::from)?;
    let answer = client
        .json_call(
            aws::ECR.signing_name,
            &endpoint,
            GET_AUTHORIZATION_TOKEN,
            &json!({ "registryIds": [account] }),
        )
        .await
        .map_err(|e| exchange_error(e, host, &account))?;
    let token = answer["authorizationData"]
        .as_array()
        .and_then(|data| {
            data.iter()
                .find(|d| {
                    d["proxyEndpoint"]
                        .as_str()
                        .is_some_and(|p| p.contains(account.as_str()))
                })
                .or_else(|| data.first())
        })
        .and_then(|d| d["authorizationToken"].as_str())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            UserError::failed(format!(
                "ECR GetAuthorizationToken for {host} answered without an authorizationToken"
            ))
        })?;
    // base64("AWS:<password>"), the very value a Basic auth header carries: mask it too.
    let token = Secret::new(token);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.expose())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            UserError::failed(format!(
                "ECR GetAuthorizationToken for {host} answered with a token that is not base64 of user:password"
            ))
        })?;
    let decoded = Secret::new(decoded);
    let (user, password) = decoded
        .expose()
        .split_once(':')
        .filter(|(u, p)| !u.is_empty() && !p.is_empty())
        .ok_or_else(|| {
            UserError::failed(format!(
                "ECR GetAuthorizationToken for {host} answered with a token that is not user:password"
            ))
        })?;
    Ok(Credentials {
        username: user.to_string(),
        password: Secret::new(password),
    })
}

/// The failed exchange, in terms of what to do about it.
fn exchange_error(e: AwsError, host: &str, account: &str) -> UserError {
    let hint = match &e {
        AwsError::Auth { .. } => format!(
            "the AWS credentials in the environment were refused or may not call \
             ecr:GetAuthorizationToken for account {account}: check the role that \
             aws-actions/configure-aws-credentials assumed, and that its session has not expired"
        ),
        AwsError::Throttled { .. } | AwsError::Transient(_) => {
            "ECR did not answer in time; re-run later, or raise MLCD_RETRY_ATTEMPTS / MLCD_RETRY_INITIAL_MS"
                .to_string()
        }
        AwsError::Other { .. } => {
            "check the registry host, and AWS_ENDPOINT_URL_ECR / AWS_ENDPOINT_URL if set".to_string()
        }
    };
    let base = UserError::from(e);
    UserError::failed(format!(
        "cannot get ECR credentials for {host} (GetAuthorizationToken): {}",
        base.message
    ))
    .hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_hosts_give_their_account_and_region() {
        assert_eq!(
            is_ecr_host("123456789012.dkr.ecr.us-east-1.amazonaws.com"),
            Some(("123456789012".into(), "us-east-1".into()))
        );
        assert_eq!(
            is_ecr_host("210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(("210987654321".into(), "cn-north-1".into()))
        );
        assert_eq!(
            is_ecr_host("123456789012.DKR.ECR.eu-west-3.AMAZONAWS.COM"),
            Some(("123456789012".into(), "eu-west-3".into()))
        );
        for not_ecr in [
            "ghcr.io",
            "127.0.0.1:5000",
            "public.ecr.aws",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            "12345678901x.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.us_east_1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "123456789012.dkr.ecr.us-east-1.example.com",
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(is_ecr_host(not_ecr), None, "{not_ecr}");
        }
    }
}
