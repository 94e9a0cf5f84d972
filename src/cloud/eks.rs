//! Amazon EKS bearer tokens without the `aws` binary: the token `aws eks get-token`
//! prints (`k8s-aws-v1.` + the unpadded base64url of an STS `GetCallerIdentity`
//! URL presigned with SigV4 for 60 s, signing the header `x-k8s-aws-id: <cluster>`),
//! made from the AWS credentials mlcd already resolves (`cloud::sts`), renewed
//! before EKS stops accepting it (15 minutes after it was signed), and set on
//! every request of the kube client by a tower layer. Which cluster: the
//! `kubernetes.eks-cluster` setting, or the `aws eks get-token --cluster-name …`
//! exec entry of a kubeconfig `aws eks update-kubeconfig` wrote (that binary is
//! not in mlcd's container). Tokens are [`Secret`]s: never logged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::header::{HeaderValue, AUTHORIZATION};
use kube::config::ExecConfig;
use serde::Serialize;

use crate::cloud::aws::{self, AwsCredentials, AwsError};
use crate::cloud::sts;
use crate::error::UserError;
use crate::secrets::Secret;

/// The header naming the cluster, signed into the URL.
pub const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// The token's prefix (aws-iam-authenticator's version 1).
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// How long the presigned URL says it is valid (`X-Amz-Expires`), as the CLI.
pub const URL_EXPIRES: Duration = Duration::from_secs(60);
/// A token is made again once it is this old: EKS accepts one for 15 minutes
/// after its `X-Amz-Date`, so a request never carries one near its end.
pub const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);

/// An EKS cluster whose tokens mlcd makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct EksCluster {
    /// The cluster's name (`kubernetes.eks-cluster`).
    pub name: String,
    /// Its region (`kubernetes.eks-region`); none: `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The token for `cluster` signed at `time` with `credentials`, for STS at
/// `sts_endpoint` in `region` — byte for byte what `aws eks get-token` prints for
/// the same inputs.
pub fn token(
    credentials: &AwsCredentials,
    region: &str,
    cluster: &str,
    sts_endpoint: &str,
    time: SystemTime,
) -> Result<Secret, AwsError> {
    let url = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        sts_endpoint.trim_end_matches('/')
    );
    let signed = aws::presign_url(
        credentials,
        region,
        aws::STS.signing_name,
        &url,
        &[(CLUSTER_HEADER, cluster)],
        URL_EXPIRES,
        time,
    )?;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signed);
    Ok(Secret::new(format!("{TOKEN_PREFIX}{encoded}")))
}

/// The presigned URL inside a token (for checks: it holds a signature).
pub fn url_of(token: &str) -> Option<String> {
    let b = token.strip_prefix(TOKEN_PREFIX)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Tokens for one cluster, made again when the last one is [`REFRESH_AFTER`] old.
pub struct TokenSource {
    credentials: AwsCredentials,
    region: String,
    cluster: String,
    sts_endpoint: String,
    cached: Mutex<Option<(SystemTime, Secret)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `cluster` in `region` signing with `credentials` for STS at
    /// `sts_endpoint`.
    pub fn new(
        credentials: AwsCredentials,
        region: impl Into<String>,
        cluster: impl Into<String>,
        sts_endpoint: impl Into<String>,
    ) -> Self {
        TokenSource {
            credentials,
            region: region.into(),
            cluster: cluster.into(),
            sts_endpoint: sts_endpoint.into(),
            cached: Mutex::new(None),
        }
    }

    /// The token to send at `now`: the cached one while it is younger than
    /// [`REFRESH_AFTER`] (and not from the future: a clock set back), else a new one.
    pub fn at(&self, now: SystemTime) -> Result<Secret, AwsError> {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((made, t)) = cached.as_ref() {
            if now
                .duration_since(*made)
                .is_ok_and(|age| age < REFRESH_AFTER)
            {
                return Ok(t.clone());
            }
        }
        let t = token(
            &self.credentials,
            &self.region,
            &self.cluster,
            &self.sts_endpoint,
            now,
        )?;
        *cached = Some((now, t.clone()));
        Ok(t)
    }

    /// When the cached token was made.
    pub fn made_at(&self) -> Option<SystemTime> {
        self.cached
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(t, _)| *t)
    }
}

/// A tower layer setting `Authorization: Bearer <token>` (marked sensitive) on
/// every request, the token from `source` at the time of the request.
pub fn auth_layer<B>(
    source: Arc<TokenSource>,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<B>) -> http::Request<B> + Clone> {
    tower::util::MapRequestLayer::new(move |mut req: http::Request<B>| {
        match source.at(SystemTime::now()) {
            Ok(t) => {
                if let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {}", t.expose())) {
                    v.set_sensitive(true);
                    req.headers_mut().insert(AUTHORIZATION, v);
                }
            }
            Err(e) => log::error!("cannot make the EKS token: {e}"),
        }
        req
    })
}

/// The cluster (and region) of a kubeconfig user entry that runs
/// `aws eks get-token --cluster-name NAME [--region R]`, as
/// `aws eks update-kubeconfig` writes it.
pub fn from_exec(exec: &ExecConfig) -> Option<EksCluster> {
    let command = exec.command.as_deref()?;
    let program = command.rsplit('/').next().unwrap_or(command);
    if program != "aws" && program != "aws.exe" {
        return None;
    }
    let args = exec.args.clone().unwrap_or_default();
    if !(args.iter().any(|a| a == "eks") && args.iter().any(|a| a == "get-token")) {
        return None;
    }
    let value = |flag: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            a.strip_prefix(&format!("{flag}="))
                .map(str::to_string)
                .or_else(|| (a == flag).then(|| args.get(i + 1).cloned()).flatten())
        })
    };
    let name = value("--cluster-name").or_else(|| value("--cluster-id"))?;
    Some(EksCluster {
        name,
        region: value("--region"),
    })
}

/// The token source for `cluster`: its region (else `AWS_REGION` /
/// `AWS_DEFAULT_REGION`), the run's AWS credentials, STS's endpoint
/// (`AWS_ENDPOINT_URL_STS` honoured). Checks the settings; makes no request.
pub async fn token_source(
    cluster: &EksCluster,
    env: &BTreeMap<String, String>,
) -> Result<TokenSource, UserError> {
    let region = cluster
        .region
        .clone()
        .or_else(|| aws::region_from_env(env))
        .ok_or_else(|| {
            UserError::invalid(format!(
                "the EKS cluster `{}` has no region: `kubernetes.eks-region` is not set, nor AWS_REGION",
                cluster.name
            ))
            .hint("set `kubernetes.eks-region` (like us-east-1), or AWS_REGION as aws-actions/configure-aws-credentials does")
        })?;
    let endpoint = aws::endpoint(&aws::STS, &region, env)?;
    let credentials = sts::resolve_credentials(env).await.map_err(|mut e| {
        e.message = format!(
            "EKS cluster `{}`: its tokens are signed with the run's AWS credentials, and {}",
            cluster.name, e.message
        );
        e
    })?;
    Ok(TokenSource::new(
        credentials,
        region,
        &cluster.name,
        endpoint,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by botocore 1.43.11 (`generate_presigned_url('get_caller_identity',
    /// ExpiresIn=60, HttpMethod='GET')` with the `x-k8s-aws-id` header added before
    /// signing, as awscli's `eks get-token` does), with these credentials and
    /// `datetime.utcnow()` fixed at 2026-11-29T07:00:00Z.
    const BOTOCORE_TOKEN: &str = "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtd2VzdC0yLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjYxMTI5JTJGdXMtd2VzdC0yJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNjExMjlUMDcwMDAwWiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TZWN1cml0eS1Ub2tlbj1zZXNzaW9uLXRva2VuLWV4YW1wbGUmWC1BbXotU2lnbmF0dXJlPWJjMmY5NWJkNTE3ZWJkNzk2ZDcwZDM4NjU5YTZjNDhhMzI0MTkzYmZlYjg3MGJkMzRmNzg1MjVlNDc3OWVlMWQ";

    fn credentials() -> AwsCredentials {
        AwsCredentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session-token-example".into()),
        )
    }

    fn at_seven() -> SystemTime {
        // 2026-11-29T07:00:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_935_600)
    }

    #[test]
    fn the_token_is_the_one_aws_eks_get_token_makes() {
        let t = token(
            &credentials(),
            "us-west-2",
            "prod-cluster",
            "https://sts.us-west-2.amazonaws.com",
            at_seven(),
        )
        .unwrap();
        assert_eq!(url_of(t.expose()).unwrap(), url_of(BOTOCORE_TOKEN).unwrap());
        assert_eq!(t.expose(), BOTOCORE_TOKEN);
    }

    #[test]
    fn another_cluster_or_time_signs_differently() {
        let a = token(
            &credentials(),
            "us-west-2",
            "prod-cluster",
            "https://sts.us-west-2.amazonaws.com",
            at_seven(),
        )
        .unwrap();
        let b = token(
            &credentials(),
            "us-west-2",
            "dev-cluster",
            "https://sts.us-west-2.amazonaws.com",
            at_seven(),
        )
        .unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(!a.expose().contains('='), "unpadded");
    }

    #[test]
    fn tokens_are_renewed_before_eks_stops_accepting_them() {
        let s = TokenSource::new(
            credentials(),
            "us-west-2",
            "prod-cluster",
            "https://sts.us-west-2.amazonaws.com",
        );
        let first = s.at(at_seven()).unwrap();
        let later = s.at(at_seven() + Duration::from_secs(9 * 60)).unwrap();
        assert_eq!(first.expose(), later.expose(), "reused while young");
        let renewed = s.at(at_seven() + Duration::from_secs(10 * 60)).unwrap();
        assert_ne!(first.expose(), renewed.expose());
        assert!(url_of(renewed.expose())
            .unwrap()
            .contains("X-Amz-Date=20261129T071000Z"));
        assert_eq!(s.made_at(), Some(at_seven() + Duration::from_secs(10 * 60)));
    }

    #[test]
    fn update_kubeconfig_exec_entries_name_the_cluster() {
        let exec: ExecConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["--region", "eu-west-1", "eks", "get-token", "--cluster-name", "prod", "--output", "json"]
        }))
        .unwrap();
        assert_eq!(
            from_exec(&exec),
            Some(EksCluster {
                name: "prod".into(),
                region: Some("eu-west-1".into())
            })
        );
        let other: ExecConfig = serde_json::from_value(serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin"
        }))
        .unwrap();
        assert_eq!(from_exec(&other), None);
    }
}
