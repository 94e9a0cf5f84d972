//! ECR registry credentials against a real moto server (`scripts/testbed up moto`):
//! the AWS credentials in the environment are exchanged for a registry password
//! through a SigV4-signed `GetAuthorizationToken`; missing credentials fail before
//! any request; hosts that are not ECR never touch AWS.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mlcd::image::auth::{resolve, Sources};
use mlcd::image::ecr;

const ECR_HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sources(env: &BTreeMap<String, String>) -> Sources<'_> {
    Sources {
        username: None,
        password: None,
        github_token: None,
        env,
    }
}

/// A TCP listener that counts the connections it gets, standing in for an AWS
/// endpoint that must not be called.
struct Tripwire {
    url: String,
    hits: Arc<AtomicUsize>,
}

impl Tripwire {
    fn start() -> Tripwire {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s) = stream {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = s.read(&mut [0u8; 1024]);
                }
            }
        });
        Tripwire { url, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ecr_token_is_obtained_from_moto_with_aws_credentials_from_the_environment() {
    let bed = common::testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &bed["MLCD_TESTBED_MOTO_URL"];
    let env = vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAMLCDTESTKEY00001"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "mlcdTestSecretAccessKey/0000000000000001",
        ),
        ("AWS_SESSION_TOKEN", "mlcdTestSessionToken0001"),
        // A region other than the registry's: the registry's own region is used.
        ("AWS_REGION", "us-west-2"),
        ("AWS_ENDPOINT_URL_ECR", moto),
    ]);
    let resolved = resolve(ECR_HOST, &sources(&env)).await.unwrap();
    assert_eq!(
        resolved.source,
        "ECR GetAuthorizationToken (AWS credentials from the environment)"
    );
    let creds = resolved.credentials.expect("credentials for ECR");
    assert_eq!(creds.username, "AWS");
    let password = creds.password.expose();
    assert!(!password.is_empty());
    // moto's token is `AWS:<account>-auth-token` for the account asked for.
    assert!(
        password.contains("123456789012"),
        "password for the account"
    );
    assert_eq!(format!("{:?}", creds.password), "***");
    assert_eq!(
        mlcd::secrets::redact(&format!("password {password}")),
        "password ***"
    );

    // The generic AWS_ENDPOINT_URL works too, through ecr::credentials directly.
    let env = vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAMLCDTESTKEY00002"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "mlcdTestSecretAccessKey/0000000000000002",
        ),
        ("AWS_ENDPOINT_URL", moto),
    ]);
    let c = ecr::credentials("210987654321.dkr.ecr.us-east-1.amazonaws.com", &env)
        .await
        .unwrap();
    assert_eq!(c.username, "AWS");
    assert!(c.password.expose().contains("210987654321"));
}

#[tokio::test(flavor = "current_thread")]
async fn missing_aws_credentials_fail_clearly_before_any_request() {
    let aws = Tripwire::start();
    let env = vars(&[
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
        ("AWS_SESSION_TOKEN", "orphanSessionToken0001"),
    ]);
    let err = match resolve(ECR_HOST, &sources(&env)).await {
        Ok(_) => panic!("resolved ECR credentials without AWS credentials"),
        Err(e) => e,
    };
    assert_eq!(err.kind, mlcd::error::Outcome::Invalid);
    assert!(err.message.contains(ECR_HOST), "{}", err.message);
    assert!(
        err.message.contains("no AWS credentials"),
        "{}",
        err.message
    );
    assert!(
        err.hint
            .as_deref()
            .unwrap_or_default()
            .contains("aws-actions/configure-aws-credentials"),
        "{:?}",
        err.hint
    );
    assert!(!err.message.contains("orphanSessionToken0001"));

    let env = vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAMLCDHALFSET00001"),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
    ]);
    let err = ecr::credentials(ECR_HOST, &env).await.unwrap_err();
    assert!(
        err.message.contains("AWS_SECRET_ACCESS_KEY is not"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("AKIAMLCDHALFSET00001"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(aws.hits(), 0, "no request may reach AWS");
}

#[tokio::test(flavor = "current_thread")]
async fn hosts_that_are_not_ecr_never_call_aws() {
    let aws = Tripwire::start();
    let env = vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIAMLCDTESTKEY00003"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "mlcdTestSecretAccessKey/0000000000000003",
        ),
        ("AWS_ENDPOINT_URL_ECR", &aws.url),
        ("AWS_ENDPOINT_URL", &aws.url),
    ]);
    for host in ["registry.example.com", "127.0.0.1:15000", "public.ecr.aws"] {
        let r = resolve(host, &sources(&env)).await.unwrap();
        assert!(r.credentials.is_none(), "{host}");
        assert!(r.source.contains("anonymous"), "{host}: {}", r.source);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(aws.hits(), 0, "no request may reach AWS");
}

#[test]
fn is_ecr_host_recognises_private_ecr_registries_only() {
    assert_eq!(
        ecr::is_ecr_host(ECR_HOST),
        Some(("123456789012".to_string(), "eu-west-1".to_string()))
    );
    assert_eq!(
        ecr::is_ecr_host("123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn"),
        Some(("123456789012".to_string(), "cn-northwest-1".to_string()))
    );
    assert_eq!(ecr::is_ecr_host("ghcr.io"), None);
    assert_eq!(
        ecr::is_ecr_host("123456789012.dkr.ecr.eu-west-1.amazonaws.com.example.org"),
        None
    );
}
