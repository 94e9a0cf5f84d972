//! The SageMaker training backend against real peers: the shared conformance
//! suite and retries against the scripted fake SageMaker (every request checked
//! against botocore's model), the happy path and the web-identity exchange
//! against moto, and bad setups refused before any request.

mod common;
#[path = "common/train_conformance.rs"]
mod train_conformance;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{testbed_env, unique, FakeSagemaker};
use mlcd::config::values::{Backend, InstanceType};
use mlcd::plan::SagemakerPlan;
use mlcd::train::sagemaker::SagemakerTraining;
use mlcd::train::{Channel, JobSpec, JobState, LogCursor, Submitted, TrainingBackend};

const ROLE: &str = "arn:aws:iam::123456789012:role/mlcd-train";

fn plan() -> SagemakerPlan {
    SagemakerPlan {
        region: "us-east-1".into(),
        role_arn: ROLE.into(),
        output_path: Some("s3://mlcd-test/output".into()),
        subnets: vec![],
        security_groups: vec![],
    }
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Static test keys, every AWS endpoint at `url`, fast polling.
fn env_for(url: &str) -> BTreeMap<String, String> {
    vars(&[
        ("AWS_ACCESS_KEY_ID", "AKIDMLCDTESTKEY0001"),
        ("AWS_SECRET_ACCESS_KEY", "mlcd-test-secret/0001"),
        ("AWS_ENDPOINT_URL", url),
        ("MLCD_POLL_INTERVAL_MS", "100"),
    ])
}

/// The example model as a SageMaker job: data in S3, the example's metric regex.
fn base_spec(name: &str) -> JobSpec {
    let instance: InstanceType = "cpu.small".parse().unwrap();
    JobSpec {
        name: name.to_string(),
        image: "123456789012.dkr.ecr.us-east-1.amazonaws.com/churn:0123456".into(),
        instance: mlcd::instance::resolve(&instance, Backend::Sagemaker).unwrap(),
        count: 1,
        hyperparameters: train_conformance::example_hyperparameters(),
        channels: [
            ("train", "s3://mlcd-test/churn/train/"),
            ("validation", "s3://mlcd-test/churn/validation/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Channel::Remote(v.to_string())))
        .collect(),
        env: vars(&[("LOG_LEVEL", "info")]),
        max_runtime: Duration::from_secs(600),
        metric_definitions: vars(&[("train-loss", "epoch=[0-9]+ loss=([0-9.]+)")]),
        output: None,
        tags: vars(&[
            ("mlcd:model", "churn"),
            ("mlcd:commit", "0123456789abcdef0123456789abcdef01234567"),
            (
                "mlcd:run-url",
                "https://github.com/acme/churn/actions/runs/4242",
            ),
        ]),
        identity: common::test_identity("github.com/acme/churn"),
    }
}

async fn backend(plan: &SagemakerPlan, env: &BTreeMap<String, String>) -> SagemakerTraining {
    SagemakerTraining::new(plan, env)
        .await
        .unwrap_or_else(|e| panic!("backend: {e} ({:?})", e.hint))
}

#[tokio::test(flavor = "current_thread")]
async fn the_backend_passes_the_conformance_suite_against_the_scripted_fake() {
    let fake = FakeSagemaker::start();
    let sm = backend(&plan(), &env_for(&fake.url)).await;
    assert_eq!(sm.name(), "sagemaker");
    assert_eq!(sm.poll_interval(), Duration::from_millis(100));
    assert_eq!(
        sm.job_url("churn-1").as_deref(),
        Some("https://us-east-1.console.aws.amazon.com/sagemaker/home?region=us-east-1#/jobs/churn-1")
    );
    let prefix = format!("conf{}", unique());
    train_conformance::run(&sm, &base_spec("unused"), &prefix).await;
    fake.assert_no_violations();

    // What reached SageMaker: the job as configured, signed for the right services.
    let created = fake.calls("CreateTrainingJob");
    let ok = created
        .iter()
        .find(|r| r["body"]["TrainingJobName"] == format!("{prefix}-ok").as_str())
        .expect("the completing job was created");
    let body = &ok["body"];
    assert_eq!(body["ResourceConfig"]["InstanceType"], "ml.m5.large");
    assert_eq!(
        body["OutputDataConfig"]["S3OutputPath"],
        "s3://mlcd-test/output"
    );
    assert_eq!(body["RoleArn"], ROLE);
    assert_eq!(body["HyperParameters"]["epochs"], "50");
    assert_eq!(body["InputDataConfig"].as_array().unwrap().len(), 2);
    assert_eq!(
        body["AlgorithmSpecification"]["MetricDefinitions"][0]["Regex"],
        "epoch=[0-9]+ loss=([0-9.]+)"
    );
    // model, commit and run url, plus the identity (source, image, config,
    // hyperparameters): the tags a re-run compares before it attaches.
    let tags = body["Tags"].as_array().unwrap();
    assert_eq!(tags.len(), 7, "{tags:?}");
    assert!(
        tags.iter()
            .any(|t| t["Key"] == "mlcd:source" && t["Value"] == "github.com/acme/churn"),
        "{tags:?}"
    );
    for r in fake.requests() {
        let expected = if r["service"] == "SageMaker" {
            "sagemaker"
        } else {
            "logs"
        };
        assert_eq!(r["scope"]["service"], expected, "{r}");
        assert_eq!(r["scope"]["region"], "us-east-1", "{r}");
    }
    assert!(!fake.calls("GetLogEvents").is_empty());
    assert!(!fake.calls("StopTrainingJob").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn a_completed_job_reports_the_final_metrics_and_the_artifact() {
    let fake = FakeSagemaker::start();
    let sm = backend(&plan(), &env_for(&fake.url)).await;
    let mut spec = base_spec(&format!("metrics{}", unique()));
    spec.hyperparameters.insert("sleep".into(), "1".into());
    assert_eq!(sm.submit(&spec).await.unwrap(), Submitted::Created);
    let first = sm.describe(&spec.name).await.unwrap().unwrap();
    assert_eq!(first.state, JobState::InProgress);
    assert_eq!(first.detail.as_deref(), Some("Starting"));
    assert_eq!(first.artifact, None);
    let mut cursor = LogCursor::default();
    assert!(
        sm.logs(&spec.name, &mut cursor).await.unwrap().is_empty(),
        "no log stream before the job starts: no lines, no error"
    );
    let start = Instant::now();
    let done = loop {
        let s = sm.describe(&spec.name).await.unwrap().unwrap();
        if s.state.is_terminal() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{s:?}");
        tokio::time::sleep(sm.poll_interval()).await;
    };
    assert_eq!(done.state, JobState::Completed);
    assert_eq!(done.detail.as_deref(), Some("Completed"));
    assert_eq!(
        done.artifact.as_deref(),
        Some(format!("s3://mlcd-test/output/{}/output/model.tar.gz", spec.name).as_str())
    );
    assert_eq!(done.image.as_deref(), Some(spec.image.as_str()));
    let loss = done.metrics.get("train-loss").copied().unwrap_or(f64::NAN);
    assert!((loss - 0.1667).abs() < 1e-3, "{:?}", done.metrics);
    let lines = sm.logs(&spec.name, &mut cursor).await.unwrap();
    assert!(
        lines.iter().any(|l| l == "epoch=1 loss=0.5000"),
        "{lines:?}"
    );
    fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn throttling_and_server_errors_on_describe_are_retried_and_the_job_still_completes() {
    let fake = FakeSagemaker::start();
    let sm = backend(&plan(), &env_for(&fake.url)).await;
    let spec = base_spec(&format!("retry{}", unique()));
    fake.fault("CreateTrainingJob", "503", 1);
    assert_eq!(sm.submit(&spec).await.unwrap(), Submitted::Created);

    fake.fault("DescribeTrainingJob", "throttle", 2);
    let s = sm
        .describe(&spec.name)
        .await
        .expect("retried past the throttling");
    assert_eq!(s.map(|s| s.state), Some(JobState::Completed));
    fake.fault("DescribeTrainingJob", "500", 1);
    fake.fault("DescribeTrainingJob", "503", 1);
    let s = sm.describe(&spec.name).await.expect("retried past the 5xx");
    assert_eq!(s.map(|s| s.state), Some(JobState::Completed));

    let faults: Vec<String> = fake
        .calls("DescribeTrainingJob")
        .iter()
        .map(|r| r["fault"].as_str().unwrap_or("ok").to_string())
        .collect();
    assert_eq!(faults, ["throttle", "throttle", "ok", "500", "503", "ok"]);
    let creates = fake.calls("CreateTrainingJob");
    assert_eq!(creates.len(), 2, "one 503, one retry: {creates:?}");
    fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn bad_setups_are_refused_before_any_request() {
    let fake = FakeSagemaker::start();
    let env = env_for(&fake.url);
    let spec = base_spec(&format!("bad{}", unique()));

    let e = SagemakerTraining::new(
        &SagemakerPlan {
            region: String::new(),
            ..plan()
        },
        &env,
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("sagemaker.region"), "{e}");
    assert!(e.hint.unwrap().contains("AWS_REGION"));

    let mut no_keys = env.clone();
    no_keys.remove("AWS_ACCESS_KEY_ID");
    no_keys.remove("AWS_SECRET_ACCESS_KEY");
    let e = SagemakerTraining::new(&plan(), &no_keys).await.unwrap_err();
    assert!(e.message.contains("no AWS credentials"), "{e}");
    assert!(e.hint.unwrap().contains("configure-aws-credentials"));

    let sm = backend(
        &SagemakerPlan {
            role_arn: String::new(),
            ..plan()
        },
        &env,
    )
    .await;
    for e in [
        sm.preflight(&spec).await.unwrap_err(),
        sm.submit(&spec).await.unwrap_err(),
    ] {
        assert!(e.message.contains("execution role"), "{e}");
        assert!(e.hint.unwrap().contains("sagemaker.role-arn"));
    }

    let sm = backend(
        &SagemakerPlan {
            output_path: None,
            ..plan()
        },
        &env,
    )
    .await;
    // No output location: the job will write to the default bucket (looked up
    // when it is staged), so the checks pass without a request.
    sm.preflight(&spec)
        .await
        .expect("the default bucket stands in for a missing output");
    let e = sm.submit(&spec).await.unwrap_err();
    assert!(e.message.contains("sagemaker.output-path"), "{e}");
    assert!(e.message.contains("train.output"), "{e}");
    let mut with_output = spec.clone();
    with_output.output = Some("s3://mlcd-test/elsewhere".into());
    sm.preflight(&with_output)
        .await
        .expect("train.output is enough");

    let sm = backend(&plan(), &env).await;
    let mut local = spec.clone();
    local
        .channels
        .insert("train".into(), Channel::Local("/work/data/train".into()));
    // A local channel that does not exist fails the checks, naming the key.
    let e = sm.preflight(&local).await.unwrap_err();
    assert!(e.message.contains("`train.channels.train`"), "{e}");
    assert!(e.message.contains("/work/data/train"), "{e}");
    assert!(e.hint.unwrap().contains("s3://"));
    // One that was not staged (uploaded) is never sent to SageMaker.
    let e = sm.submit(&local).await.unwrap_err();
    assert!(e.message.contains("not uploaded to S3 yet"), "{e}");

    let mut not_ml = spec.clone();
    not_ml.instance.native = "local_gpu".into();
    let e = sm.preflight(&not_ml).await.unwrap_err();
    assert!(e.message.contains("not a SageMaker instance type"), "{e}");

    assert!(
        fake.requests().is_empty(),
        "nothing may reach SageMaker: {:?}",
        fake.requests()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn create_and_describe_against_moto() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    let sm = backend(&plan(), &env_for(moto)).await;
    let spec = base_spec(&format!("moto{}", unique()));
    sm.preflight(&spec).await.unwrap();
    assert_eq!(sm.submit(&spec).await.unwrap(), Submitted::Created);
    let s = sm
        .describe(&spec.name)
        .await
        .unwrap()
        .expect("moto knows the job");
    assert_eq!(s.name, spec.name);
    assert_eq!(
        s.state,
        JobState::Completed,
        "moto completes at once: {s:?}"
    );
    assert_eq!(s.hyperparameters, spec.hyperparameters);
    assert_eq!(s.image.as_deref(), Some(spec.image.as_str()));
    assert!(
        s.artifact
            .as_deref()
            .is_some_and(|a| a.starts_with("s3://mlcd-test/output/")),
        "{s:?}"
    );
    assert_eq!(
        sm.describe(&format!("{}-never", spec.name)).await.unwrap(),
        None
    );
    // moto has no training logs: none, and no error.
    let mut cursor = LogCursor::default();
    assert!(sm.logs(&spec.name, &mut cursor).await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn buckets_are_created_once_and_large_files_go_up_in_parts_on_moto() {
    use mlcd::cloud::aws::{AwsClient, AwsCredentials};
    use mlcd::cloud::s3::{sha256_hex, BucketState, S3Client, MULTIPART_THRESHOLD};
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let env = env_for(&tb["MLCD_TESTBED_MOTO_URL"]);
    let creds = AwsCredentials::from_env(&env).unwrap();
    let s3 = S3Client::new(AwsClient::new(creds, "us-east-1").unwrap(), &env).unwrap();
    let bucket = format!("mlcd-s3-test-{}", unique());
    assert_eq!(s3.head_bucket(&bucket).await.unwrap(), BucketState::Missing);
    // us-east-1: no LocationConstraint (S3 refuses one there).
    s3.create_bucket(&bucket).await.unwrap();
    assert_eq!(s3.head_bucket(&bucket).await.unwrap(), BucketState::Ours);
    s3.create_bucket(&bucket)
        .await
        .expect("a bucket of our own is fine");

    // One byte over the threshold: two parts, the second of one byte.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let data: Vec<u8> = (0..MULTIPART_THRESHOLD + 1)
        .map(|i| (i % 253) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let key = "dir/big file.bin";
    assert_eq!(s3.head_object(&bucket, key).await.unwrap(), None);
    s3.put_file(&bucket, key, &path, data.len() as u64, &sha256_hex(&data))
        .await
        .unwrap();
    let info = s3
        .head_object(&bucket, key)
        .await
        .unwrap()
        .expect("uploaded");
    assert_eq!(info.size, data.len() as u64);
    assert!(
        info.etag.as_deref().is_some_and(|e| e.ends_with("-2\"")),
        "a multipart ETag names its 2 parts: {info:?}"
    );
    // A small one: one streamed PutObject.
    std::fs::write(dir.path().join("small"), b"hello").unwrap();
    s3.put_file(
        &bucket,
        "small",
        &dir.path().join("small"),
        5,
        &sha256_hex(b"hello"),
    )
    .await
    .unwrap();
    assert_eq!(
        s3.head_object(&bucket, "small")
            .await
            .unwrap()
            .unwrap()
            .size,
        5
    );
}

/// A web-identity environment (what EKS / GitHub OIDC leave) with a token file in `dir`.
fn web_identity_env(dir: &tempfile::TempDir, sts_url: &str) -> BTreeMap<String, String> {
    let token = dir.path().join("token");
    std::fs::write(
        &token,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUvY2h1cm4ifQ.c2lnbmF0dXJl\n",
    )
    .unwrap();
    vars(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/github-oidc"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ROLE_SESSION_NAME", "mlcd-test"),
        ("AWS_ENDPOINT_URL_STS", sts_url),
        ("MLCD_POLL_INTERVAL_MS", "100"),
    ])
}

#[tokio::test(flavor = "current_thread")]
async fn a_web_identity_is_exchanged_through_sts_and_creates_the_job() {
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    let dir = tempfile::tempdir().unwrap();

    // All of it against moto: STS then SageMaker.
    let mut env = web_identity_env(&dir, moto);
    env.insert("AWS_ENDPOINT_URL".into(), moto.clone());
    let sm = backend(&plan(), &env).await;
    let spec = base_spec(&format!("oidc{}", unique()));
    assert_eq!(sm.submit(&spec).await.unwrap(), Submitted::Created);
    assert!(sm.describe(&spec.name).await.unwrap().is_some());

    // SageMaker on the fake: the calls are signed with the temporary credentials.
    let fake = FakeSagemaker::start();
    let mut env = web_identity_env(&dir, moto);
    env.insert("AWS_ENDPOINT_URL_SAGEMAKER".into(), fake.url.clone());
    let sm = backend(&plan(), &env).await;
    assert_eq!(sm.submit(&spec).await.unwrap(), Submitted::Created);
    let create = &fake.calls("CreateTrainingJob")[0];
    assert_eq!(create["scope"]["temporary"], true, "{create}");
    assert_eq!(create["scope"]["session_token"], true, "{create}");
    fake.assert_no_violations();

    // A token file that is not there: a clear error naming the variable, no request.
    let mut env = web_identity_env(&dir, moto);
    env.insert(
        "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
        dir.path().join("missing").display().to_string(),
    );
    let e = SagemakerTraining::new(&plan(), &env).await.unwrap_err();
    assert!(e.message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
    assert!(
        !e.message.contains("eyJhbGci"),
        "the token never shows: {e}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn ecr_credentials_come_from_a_web_identity_too() {
    // The same resolver serves the ECR push path: STS then GetAuthorizationToken, on moto.
    let tb = testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    let moto = &tb["MLCD_TESTBED_MOTO_URL"];
    let dir = tempfile::tempdir().unwrap();
    let mut env = web_identity_env(&dir, moto);
    env.insert("AWS_ENDPOINT_URL".into(), moto.clone());
    let c = mlcd::image::ecr::credentials("123456789012.dkr.ecr.us-east-1.amazonaws.com", &env)
        .await
        .unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    assert_eq!(c.username, "AWS");
    assert!(!c.password.expose().is_empty());
}
