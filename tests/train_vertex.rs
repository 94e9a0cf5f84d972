//! The Vertex AI training backend against the fake Vertex AI (every request and
//! answer validated against Google's pinned discovery documents): the shared
//! conformance suite, the three credential sources (access token, service-account
//! key, Workload Identity Federation with token refresh), `mlcd train --backend
//! vertex` through the binary (success, a failed job's reason, timeout → cancelled,
//! a re-run attaches, bad setups refused before any request), and the real `gcloud`
//! agreeing with the fake on custom jobs.

mod common;
#[path = "common/train_conformance.rs"]
mod train_conformance;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use mlcd::config::values::{Backend, InstanceType};
use mlcd::plan::VertexPlan;
use mlcd::train::vertex::VertexTraining;
use mlcd::train::{Channel, JobSpec, Submitted, TrainingBackend};

fn plan() -> VertexPlan {
    VertexPlan {
        project: "mlcd-test".into(),
        region: "us-central1".into(),
        staging_bucket: "gs://mlcd-test-staging".into(),
        service_account: Some("trainer@mlcd-test.iam.gserviceaccount.com".into()),
        api_endpoint: None,
    }
}

fn vars(pairs: &[(String, String)], extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = pairs.iter().cloned().collect();
    for (k, v) in extra {
        m.insert(k.to_string(), v.to_string());
    }
    m
}

fn base_spec(name: &str) -> JobSpec {
    let instance: InstanceType = "gpu.t4.xl".parse().unwrap();
    JobSpec {
        name: name.to_string(),
        image: "us-central1-docker.pkg.dev/mlcd-test/ml/churn:0123456".into(),
        instance: mlcd::instance::resolve(&instance, Backend::Vertex).unwrap(),
        count: 1,
        hyperparameters: train_conformance::example_hyperparameters(),
        channels: [("train", "gs://mlcd-test-data/churn/train/")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Channel::Remote(v.to_string())))
            .collect(),
        env: [("LOG_LEVEL".to_string(), "info".to_string())].into(),
        max_runtime: Duration::from_secs(600),
        metric_definitions: BTreeMap::new(),
        output: None,
        tags: BTreeMap::new(),
        identity: common::test_identity("github.com/acme/churn"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_backend_passes_the_conformance_suite_against_the_fake() {
    let fake = FakeVertex::start();
    let env = vars(&fake.token_env(), &[("MLCD_POLL_INTERVAL_MS", "100")]);
    let vx = VertexTraining::new(&plan(), &env).unwrap();
    assert_eq!(vx.name(), "vertex");
    assert_eq!(vx.poll_interval(), Duration::from_millis(100));
    let prefix = format!("conf{}", unique());
    train_conformance::run(&vx, &base_spec("unused"), &prefix).await;
    fake.assert_no_violations();

    // What reached Vertex: the job as the container contract maps it.
    let creates = fake.calls("customJobs.create");
    let ok = creates
        .iter()
        .find(|r| r["body"]["displayName"] == format!("{prefix}-ok").as_str())
        .expect("the completing job was created");
    let body = &ok["body"];
    let pool = &body["jobSpec"]["workerPoolSpecs"][0];
    assert_eq!(pool["machineSpec"]["machineType"], "n1-standard-4");
    assert_eq!(pool["machineSpec"]["acceleratorType"], "NVIDIA_TESLA_T4");
    assert_eq!(pool["machineSpec"]["acceleratorCount"], 1);
    assert_eq!(pool["replicaCount"], "1", "int64 as a string");
    assert_eq!(pool["containerSpec"]["args"][0], "train");
    assert_eq!(body["jobSpec"]["scheduling"]["timeout"], "600s");
    assert_eq!(
        body["jobSpec"]["serviceAccount"],
        "trainer@mlcd-test.iam.gserviceaccount.com"
    );
    assert_eq!(
        body["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"],
        format!("gs://mlcd-test-staging/{prefix}-ok/").as_str()
    );
    let env: BTreeMap<&str, &str> = pool["containerSpec"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["SM_CHANNEL_TRAIN"], "/gcs/mlcd-test-data/churn/train/");
    assert_eq!(
        env["SM_MODEL_DIR"],
        format!("/gcs/mlcd-test-staging/{prefix}-ok/model")
    );
    assert_eq!(env["LOG_LEVEL"], "info");
    assert!(env["SM_HPS"].contains("\"epochs\":\"50\""), "{env:?}");
    assert_eq!(body["labels"]["mlcd-job"], format!("{prefix}-ok").as_str());
    // Every create was preceded by a filtered list (a re-run finds its job).
    assert!(fake.calls("customJobs.list").len() >= creates.len() * 2);
    assert!(!fake.calls("customJobs.cancel").is_empty());
    assert!(!fake.calls("entries.list").is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn quota_and_internal_errors_are_retried_and_the_job_is_created_once() {
    let fake = FakeVertex::start();
    let env = vars(
        &fake.token_env(),
        &[
            ("MLCD_POLL_INTERVAL_MS", "100"),
            ("MLCD_RETRY_INITIAL_MS", "20"),
        ],
    );
    let vx = VertexTraining::new(&plan(), &env).unwrap();
    fake.fault("customJobs.create", "quota", 1);
    fake.fault("customJobs.list", "internal", 1);
    let spec = base_spec(&format!("retry{}", unique()));
    assert_eq!(vx.submit(&spec).await.unwrap(), Submitted::Created);
    let created: Vec<_> = fake
        .calls("customJobs.create")
        .into_iter()
        .filter(|r| r["status"] == 200)
        .collect();
    assert_eq!(created.len(), 1);
    // A quota error that lasts is reported with what to do.
    fake.fault("customJobs.create", "quota", 10);
    let e = vx
        .submit(&base_spec(&format!("quota{}", unique())))
        .await
        .unwrap_err();
    assert!(e.message.contains("RESOURCE_EXHAUSTED"), "{e}");
    assert!(e.hint.unwrap_or_default().contains("quota"));
    fake.assert_no_violations();
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_account_key_file_signs_its_own_token_request() {
    let fake = FakeVertex::start();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    let public = dir.path().join("pub.pem");
    let k = key.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        k,
    ]);
    openssl(&[
        "pkey",
        "-in",
        k,
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    fake.config(serde_json::json!({"sa_key": {
        "kid": "key-1", "public_pem": std::fs::read_to_string(&public).unwrap()}}));
    let file = dir.path().join("sa.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "type": "service_account",
            "project_id": "mlcd-test",
            "private_key_id": "key-1",
            "private_key": std::fs::read_to_string(&key).unwrap(),
            "client_email": "ci@mlcd-test.iam.gserviceaccount.com",
            "token_uri": format!("{}/token", fake.url),
        })
        .to_string(),
    )
    .unwrap();
    let env = vars(
        &fake.token_env()[1..],
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
    );
    let vx = VertexTraining::new(&plan(), &env).unwrap();
    assert_eq!(vx.describe("never-submitted").await.unwrap(), None);
    let oauth = fake.calls("oauth.token");
    assert_eq!(oauth.len(), 1, "one token, signature checked by the fake");
    assert_eq!(oauth[0]["status"], 200);
    let listed = fake.calls("customJobs.list");
    assert_eq!(listed[0]["status"], 200);
    fake.assert_no_violations();
}

/// The external_account file google-github-actions/auth writes, pointing at the fake.
fn wif_file(dir: &Path, fake: &FakeVertex) -> String {
    let file = dir.join("gha-creds-0123456789abcdef.json");
    let audience = "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/github/providers/acme";
    std::fs::write(
        &file,
        serde_json::json!({
            "type": "external_account",
            "audience": audience,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("{}/v1/token", fake.url),
            "service_account_impersonation_url": format!(
                "{}/v1/projects/-/serviceAccounts/ci@mlcd-test.iam.gserviceaccount.com:generateAccessToken", fake.url),
            "credential_source": {
                "url": format!("{}/_oidc/token?api-version=2.0&audience=https%3A%2F%2Fiam.googleapis.com%2Fprojects%2F424242424242", fake.url),
                "headers": {"Authorization": "Bearer ghs-oidc-request-token"},
                "format": {"type": "json", "subject_token_field_name": "value"},
            },
        })
        .to_string(),
    )
    .unwrap();
    file.display().to_string()
}

/// The example's config on Vertex AI.
const CONFIG: &str = "model: churn
backend: vertex
train:
  image: us-central1-docker.pkg.dev/mlcd-test/ml/churn:0123456
  instance: cpu.small
  hyperparameters: {epochs: 50, lr: 0.1}
  channels:
    train: gs://mlcd-test-data/churn/train/
  timeout: 10m
  metrics:
    - name: train-loss
      regex: \"loss=([0-9.]+)\"
vertex:
  project: mlcd-test
  region: us-central1
  staging-bucket: gs://mlcd-test-staging
";

fn run_train(
    ws: &Workspace,
    env_extra: &[(String, String)],
    extra: &[(&str, &str)],
) -> (Run, BTreeMap<String, String>) {
    let _ = std::fs::remove_file(ws.path().join("out/output"));
    let mut env = actions_env(ws);
    let mut add = |k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    };
    add("GITHUB_RUN_ID", &unique().to_string());
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("MLCD_POLL_INTERVAL_MS", "100"),
        ("MLCD_RETRY_INITIAL_MS", "50"),
    ] {
        add(k, v);
    }
    for (k, v) in env_extra {
        add(k, v);
    }
    for (k, v) in extra {
        add(k, v);
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = mlcd(ws.path(), &[], &env);
    let out = parse_outputs(&ws.read("out/output"));
    (r, out)
}

#[test]
fn the_example_trains_on_vertex_through_the_binary_with_workload_identity_and_refreshed_tokens() {
    let fake = FakeVertex::start();
    // Tokens live 3 s; the job runs 5 s: the chain must be walked again in time.
    fake.config(serde_json::json!({"token_lifetime": 3}));
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &format!("{CONFIG}registry:\n  type: vertex\n  alias: staging\n"),
    );
    let creds = wif_file(ws.path(), &fake);
    let env = vec![
        ("GOOGLE_APPLICATION_CREDENTIALS".to_string(), creds),
        (
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM".to_string(),
            format!("{}/", fake.url),
        ),
        (
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING".to_string(),
            format!("{}/", fake.url),
        ),
    ];
    let (r, out) = run_train(&ws, &env, &[("INPUT_PARAM-LIST", "sleep=5")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    let job = &out["job-id"];
    assert!(job.starts_with("churn-"), "{out:?}");
    assert_eq!(
        out["artifact"],
        format!("gs://mlcd-test-staging/{job}/model/")
    );
    assert!(
        out["job-url"].starts_with(
            "https://console.cloud.google.com/vertex-ai/locations/us-central1/training/"
        ),
        "{out:?}"
    );
    assert!(out["metrics"].contains("\"train-loss\":0.1667"), "{out:?}");
    // Registered in the Vertex AI Model Registry: the model directory, the
    // serving contract, the alias.
    assert_eq!(out["model-version"], "1", "{out:?}");
    let uploads = fake.calls("models.upload");
    assert_eq!(uploads.len(), 1);
    let model = &uploads[0]["body"]["model"];
    assert_eq!(model["artifactUri"], out["artifact"].as_str());
    assert_eq!(model["versionAliases"][0], "staging");
    assert_eq!(model["labels"]["mlcd-job"], job.as_str());
    assert!(r.stderr.contains("epoch=5 loss=0.1667"), "{}", r.stderr);
    // The chain: OIDC → STS → impersonation, walked again before the token expired.
    let sts = fake.calls("v1.token");
    let iam = fake.calls("generateAccessToken");
    assert!(
        sts.len() >= 2 && iam.len() >= 2,
        "{} STS, {} IAM",
        sts.len(),
        iam.len()
    );
    let all = fake.requests();
    let expired: Vec<_> = all.iter().filter(|q| q["expired"] == true).collect();
    assert!(expired.is_empty(), "an expired token was used: {expired:?}");
    assert!(
        all.iter().all(|q| q["status"] == 200
            || (q["status"] == 404
                && q["method"].as_str().is_some_and(
                    |m| m.ends_with("models.get") || m.ends_with("models.listVersions")
                ))),
        "{all:#?}"
    );
    // Every token is masked as it arrives (`::add-mask::`, which GitHub hides),
    // and appears nowhere else.
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("::add-mask::ya29.iam-")),
        "{}",
        r.stdout
    );
    for text in [
        &r.stdout,
        &r.stderr,
        &ws.read("out/output"),
        &ws.read("out/summary"),
    ] {
        for line in text.lines().filter(|l| !l.starts_with("::add-mask::")) {
            assert!(!line.contains("ya29."), "a token leaked: {line}");
            assert!(!line.contains("ghs-oidc-request-token"), "{line}");
        }
    }
    fake.assert_no_violations();
}

#[test]
fn a_failed_vertex_job_fails_the_step_with_its_error_and_the_containers_reason() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let (r, out) = run_train(
        &ws,
        &fake.token_env(),
        &[("INPUT_PARAM-LIST", "fail=true,sleep=0.3")],
    );
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    for text in [
        "exited with a non-zero status of 1",
        "AlgorithmError: fail requested by hyperparameter",
    ] {
        assert!(r.stdout.contains(text), "{text}: {}", r.stdout);
    }
    assert!(
        !ws.path().join(".mlcd/registry/churn").exists(),
        "nothing registered"
    );
    fake.assert_no_violations();
}

#[test]
fn a_timeout_cancels_the_vertex_job_and_reports_timed_out() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let (r, out) = run_train(
        &ws,
        &fake.token_env(),
        &[("INPUT_PARAM-LIST", "sleep=600"), ("INPUT_TIMEOUT", "2s")],
    );
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out");
    let cancels = fake.calls("customJobs.cancel");
    assert_eq!(cancels.len(), 1, "{cancels:?}");
    let state = fake.call("GET", "/_fake/state", None);
    let states: Vec<&str> = state["jobs"]
        .as_object()
        .unwrap()
        .values()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["JOB_STATE_CANCELLED"]);
    fake.assert_no_violations();
}

#[test]
fn a_re_run_of_the_same_attempt_attaches_to_the_vertex_job() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let run_id = unique().to_string();
    let pinned = [
        ("GITHUB_RUN_ID", run_id.as_str()),
        ("INPUT_PARAM-LIST", "sleep=0.2"),
    ];
    let (r1, out1) = run_train(&ws, &fake.token_env(), &pinned);
    r1.assert_code(0);
    let (r2, out2) = run_train(&ws, &fake.token_env(), &pinned);
    r2.assert_code(0);
    assert_eq!(out1["job-id"], out2["job-id"]);
    assert!(r2.stderr.contains("exists already"), "{}", r2.stderr);
    assert_eq!(fake.calls("customJobs.create").len(), 1, "one job, not two");
    fake.assert_no_violations();
}

#[test]
fn a_local_channel_is_uploaded_to_the_staging_bucket_once_and_read_under_gcs() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("data/train/part-0.csv", "tenure,churn\n1,0\n2,1\n");
    ws.write("data/train/nested/part 1.csv", "tenure,churn\n3,0\n");
    ws.write(
        "mlcd.yml",
        &CONFIG.replace("gs://mlcd-test-data/churn/train/", "data/train"),
    );
    let (r, out) = run_train(&ws, &fake.token_env(), &[("INPUT_PARAM-LIST", "sleep=0.2")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{}", r.stderr);
    // Both files and, last, the manifest, under the staging bucket's mlcd/channels/.
    let objects = fake.call("GET", "/_fake/state", None)["objects"].clone();
    let names: Vec<String> = objects.as_object().unwrap().keys().cloned().collect();
    let prefix = "gs://mlcd-test-staging/mlcd/channels/churn/train/";
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with(prefix)), "{names:?}");
    let data: Vec<&String> = names.iter().filter(|n| !n.ends_with(".complete")).collect();
    assert!(data.iter().any(|n| n.ends_with("/part-0.csv")), "{names:?}");
    assert!(
        data.iter().any(|n| n.ends_with("/nested/part 1.csv")),
        "{names:?}"
    );
    assert!(objects[data[0].as_str()]["size"]
        .as_u64()
        .is_some_and(|n| n > 0));
    let uploads = fake.calls("objects.insert");
    assert_eq!(uploads.len(), 3);
    assert_eq!(
        uploads.last().unwrap()["query"]["name"]
            .as_str()
            .unwrap()
            .rsplit('.')
            .next(),
        Some("complete"),
        "the manifest is written last"
    );
    // The job reads it through the Cloud Storage FUSE mount.
    let job = &fake.calls("customJobs.create")[0]["body"];
    let env = &job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"];
    let channel = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "SM_CHANNEL_TRAIN")
        .expect("SM_CHANNEL_TRAIN")["value"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = data[0]
        .trim_start_matches("gs://")
        .rsplit_once('/')
        .unwrap()
        .0
        .trim_end_matches("/nested")
        .to_string();
    assert_eq!(channel, format!("/gcs/{dir}/"));
    assert!(
        r.stderr.contains("channel `train`: uploading 2 files"),
        "{}",
        r.stderr
    );
    // The real gcloud reads the uploaded object back from the fake.
    let config = tempfile::tempdir().unwrap();
    let part0 = data.iter().find(|n| n.ends_with("/part-0.csv")).unwrap();
    let (ok, stdout, stderr) = fake.gcloud(
        config.path(),
        &["storage", "objects", "describe", part0, "--format=json"],
    );
    assert!(ok, "{stderr}");
    let described: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let size = std::fs::metadata(ws.path().join("data/train/part-0.csv"))
        .unwrap()
        .len();
    assert_eq!(described["size"], size, "{stdout}");
    assert_eq!(
        described["storage_url"]
            .as_str()
            .map(|u| u.split('#').next().unwrap()),
        Some(part0.as_str())
    );

    // The same data again (a new run): one read of the manifest, nothing uploaded.
    let (r2, out2) = run_train(&ws, &fake.token_env(), &[("INPUT_PARAM-LIST", "sleep=0.2")]);
    r2.assert_code(0);
    assert_eq!(out2["status"], "succeeded");
    assert_eq!(
        fake.calls("objects.insert").len(),
        3,
        "nothing uploaded again"
    );
    assert!(
        r2.stderr.contains("already in Cloud Storage"),
        "{}",
        r2.stderr
    );
    fake.assert_no_violations();
}

#[test]
fn bad_vertex_setups_are_refused_before_any_request() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    // No staging bucket: the config line is named.
    ws.write(
        "mlcd.yml",
        &CONFIG.replace("  staging-bucket: gs://mlcd-test-staging\n", ""),
    );
    let (r, _) = run_train(&ws, &fake.token_env(), &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("file=mlcd.yml,line=13") && r.stdout.contains("vertex.staging-bucket"),
        "{}",
        r.stdout
    );
    // Another cloud's storage: a Vertex AI job reads Cloud Storage only.
    ws.write(
        "mlcd.yml",
        &CONFIG.replace(
            "gs://mlcd-test-data/churn/train/",
            "s3://mlcd-test-data/churn/train/",
        ),
    );
    let (r, _) = run_train(&ws, &fake.token_env(), &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("`train.channels.train`")
            && r.stdout.contains("not from other clouds' storage")
            && r.stdout.contains("gcloud storage cp"),
        "{}",
        r.stdout
    );
    // An accelerator the machine family cannot take.
    ws.write(
        "mlcd.yml",
        &CONFIG.replace(
            "instance: cpu.small",
            "instance: e2-standard-4+NVIDIA_TESLA_T4",
        ),
    );
    let (r, _) = run_train(&ws, &fake.token_env(), &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("attaches to n1 machine types"),
        "{}",
        r.stdout
    );
    // No credentials: the three ways.
    ws.write("mlcd.yml", CONFIG);
    let endpoint_only = vec![fake.token_env()[1].clone()];
    let (r, _) = run_train(&ws, &endpoint_only, &[]);
    r.assert_code(2);
    for text in [
        "google-github-actions/auth",
        "service-account key file",
        "GOOGLE_OAUTH_ACCESS_TOKEN",
    ] {
        assert!(r.stdout.contains(text), "{text}: {}", r.stdout);
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

/// gcloud with its endpoint override pointed at the fake and a private config.
fn gcloud(fake: &FakeVertex, config: &Path, args: &[&str]) -> (bool, String, String) {
    fake.gcloud(config, args)
}

#[test]
fn gcloud_agrees_with_the_fake_on_custom_jobs() {
    let fake = FakeVertex::start();
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = gcloud(
        &fake,
        dir.path(),
        &[
            "ai", "custom-jobs", "create", "--region=us-central1", "--display-name=gcloud-job",
            "--worker-pool-spec=machine-type=n1-standard-4,accelerator-type=NVIDIA_TESLA_T4,accelerator-count=1,replica-count=1,container-image-uri=us-docker.pkg.dev/mlcd-test/ml/churn:1",
            "--labels=mlcd-job=gcloud-job", "--format=json",
        ],
    );
    assert!(ok, "{err}");
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = job["name"].as_str().unwrap();
    assert!(
        name.starts_with("projects/424242424242/locations/us-central1/customJobs/"),
        "{name}"
    );
    assert_eq!(job["state"], "JOB_STATE_QUEUED");
    std::thread::sleep(Duration::from_millis(600));
    let id = name.rsplit('/').next().unwrap();
    let (ok, out, err) = gcloud(
        &fake,
        dir.path(),
        &[
            "ai",
            "custom-jobs",
            "describe",
            id,
            "--region=us-central1",
            "--format=json",
        ],
    );
    assert!(ok, "{err}");
    let job: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["state"], "JOB_STATE_SUCCEEDED");
    assert_eq!(
        job["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorCount"],
        1
    );
    // mlcd finds the job gcloud made by its label, and reads its state the same way.
    let env = vars(&fake.token_env(), &[]);
    let vx = VertexTraining::new(&plan(), &env).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(vx.describe("gcloud-job"))
        .unwrap()
        .expect("found by its label");
    assert_eq!(s.state, mlcd::train::JobState::Completed);
    assert_eq!(
        rt.block_on(vx.identity("gcloud-job")).unwrap(),
        mlcd::identity::Recorded::Unknown,
        "a job made by hand carries no mlcd identity"
    );
    fake.assert_no_violations();
}

/// The waiting cost, counted by the fake: with the test poll interval of 100 ms
/// standing for the default 20 s (200 times faster), a "minute" is 0.3 s.
#[test]
fn a_running_vertex_job_costs_at_most_12_api_calls_a_minute() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let (r, out) = run_train(&ws, &fake.token_env(), &[("INPUT_PARAM-LIST", "sleep=12")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    fake.assert_no_violations();
    let requests = fake.requests();
    let created = requests
        .iter()
        .find(|q| {
            q["method"]
                .as_str()
                .is_some_and(|m| m.ends_with("customJobs.create"))
        })
        .and_then(|q| q["time"].as_f64())
        .expect("the job was created");
    let ended = created + 0.4 + 12.0;
    let running: Vec<f64> = requests
        .iter()
        .filter_map(|q| q["time"].as_f64())
        .filter(|t| *t > created + 0.5 && *t < ended)
        .collect();
    let minute = 0.3;
    let busiest = running
        .iter()
        .map(|s| {
            running
                .iter()
                .filter(|t| **t >= *s && **t < s + minute)
                .count()
        })
        .max()
        .unwrap_or(0);
    let span = ended - created - 0.5;
    let per_minute = running.len() as f64 / (span / minute);
    let count = |m: &str| {
        requests
            .iter()
            .filter(|q| q["method"].as_str().is_some_and(|x| x.ends_with(m)))
            .count()
    };
    // How soon the end was reported: the last poll before the job ended and
    // the first after it are at most one (backed-off) interval apart.
    let gets: Vec<f64> = requests
        .iter()
        .filter(|q| {
            q["method"]
                .as_str()
                .is_some_and(|m| m.ends_with("customJobs.get"))
        })
        .filter_map(|q| q["time"].as_f64())
        .collect();
    let after = gets
        .iter()
        .copied()
        .find(|t| *t >= ended)
        .unwrap_or(f64::NAN);
    let seen = format!(
        "{} calls while the job ran {span:.1}s ({per_minute:.1} a scaled minute on average, {busiest} in the busiest): \
         {} customJobs.get, {} entries.list, {} customJobs.list; end seen {:.2}s after it happened",
        running.len(),
        count("customJobs.get"),
        count("entries.list"),
        count("customJobs.list"),
        after - ended
    );
    eprintln!("{seen}");
    assert!(busiest <= 12, "{seen}");
    assert!(per_minute <= 12.0, "{seen}");
    assert!(
        // one max poll interval (0.3 s scaled: 60 s real) plus the poll's own
        // two requests to the fake on a busy machine
        after - ended <= 0.3 + 0.15,
        "job end → seen within one max poll interval: {seen}"
    );
}

/// gcloud through the model and endpoint flows the serving backend will use:
/// upload (a long-running operation), endpoint create, deploy with a split that
/// names the new model `"0"`, traffic updates (a bad sum refused), undeploy only
/// without traffic. The fake's answers satisfy gcloud, and its rules reach it.
#[test]
fn gcloud_agrees_with_the_fake_on_models_and_endpoint_traffic() {
    let fake = FakeVertex::start();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["ai"];
        all.extend_from_slice(args);
        all.push("--region=us-central1");
        gcloud(&fake, dir.path(), &all)
    };
    for m in ["m1", "m2"] {
        let (ok, _, err) = run(&[
            "models",
            "upload",
            "--display-name",
            m,
            "--model-id",
            m,
            "--container-image-uri=us-docker.pkg.dev/mlcd-test/ml/churn:1",
            "--artifact-uri=gs://mlcd-test-staging/job/model/",
            "--container-predict-route=/invocations",
            "--container-health-route=/ping",
            "--container-ports=8080",
        ]);
        assert!(ok, "upload {m}: {err}");
    }
    let (ok, out, err) = run(&["models", "describe", "m1", "--format=json"]);
    assert!(ok, "{err}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(m["containerSpec"]["predictRoute"], "/invocations");
    assert_eq!(m["versionId"], "1");
    let (ok, _, err) = run(&[
        "endpoints",
        "create",
        "--display-name=churn",
        "--endpoint-id=111",
    ]);
    assert!(ok, "{err}");
    let deploy = |model: &str, split: &str| {
        run(&[
            "endpoints",
            "deploy-model",
            "111",
            "--model",
            model,
            "--display-name",
            model,
            "--traffic-split",
            split,
            "--machine-type=n1-standard-2",
        ])
    };
    let (ok, _, err) = deploy("m1", "0=100");
    assert!(ok, "{err}");
    let describe = || {
        let (ok, out, err) = run(&["endpoints", "describe", "111", "--format=json"]);
        assert!(ok, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let ep = describe();
    let old = ep["deployedModels"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(ep["trafficSplit"][&old], 100);
    let (ok, _, err) = deploy("m2", &format!("0=10,{old}=90"));
    assert!(ok, "{err}");
    let ep = describe();
    let new = ep["deployedModels"][1]["id"].as_str().unwrap().to_string();
    assert_eq!(ep["trafficSplit"][&new], 10, "{ep}");
    assert_eq!(ep["trafficSplit"][&old], 90, "{ep}");
    // A split that does not sum to 100 is refused, as Vertex refuses it.
    let (ok, _, err) = run(&[
        "endpoints",
        "update",
        "111",
        &format!("--traffic-split={new}=60,{old}=50"),
    ]);
    assert!(!ok && err.contains("must sum to 100"), "{err}");
    let (ok, _, err) = run(&[
        "endpoints",
        "update",
        "111",
        &format!("--traffic-split={new}=100"),
    ]);
    assert!(ok, "{err}");
    // A model with traffic is not undeployed; one without is.
    let (ok, _, err) = run(&[
        "endpoints",
        "undeploy-model",
        "111",
        &format!("--deployed-model-id={new}"),
    ]);
    assert!(!ok && err.contains("FAILED_PRECONDITION"), "{err}");
    let (ok, _, err) = run(&[
        "endpoints",
        "undeploy-model",
        "111",
        &format!("--deployed-model-id={old}"),
    ]);
    assert!(ok, "{err}");
    let ep = describe();
    assert_eq!(
        ep["deployedModels"].as_array().map(Vec::len),
        Some(1),
        "{ep}"
    );
    assert_eq!(ep["trafficSplit"][&new], 100, "{ep}");
    // rawPredict's body is the payload itself (google.api.HttpBody over REST), as
    // mlcd sends it: gcloud sends the request file unchanged.
    let req = dir.path().join("req.json");
    std::fs::write(&req, r#"{"instances": [[1, 2]]}"#).unwrap();
    let (ok, out, err) = run(&[
        "endpoints",
        "raw-predict",
        "111",
        &format!("--request=@{}", req.display()),
    ]);
    assert!(ok && out.contains("predictions"), "{out}{err}");
    let raw = fake.calls("endpoints.rawPredict");
    assert_eq!(raw.last().unwrap()["body"], r#"{"instances": [[1, 2]]}"#);
    // An endpoint with a deployed model is not deleted; an empty one is.
    let (ok, _, err) = run(&["endpoints", "delete", "111"]);
    assert!(!ok && err.contains("has deployed models"), "{err}");
    let (ok, _, err) = run(&[
        "endpoints",
        "undeploy-model",
        "111",
        &format!("--deployed-model-id={new}"),
    ]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["endpoints", "delete", "111"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(&["endpoints", "describe", "111"]);
    assert!(!ok && err.contains("NOT_FOUND"), "{err}");
    // gcloud polled the endpoint operations where it does (v1beta1).
    assert!(fake.requests().iter().any(|r| r["path"]
        .as_str()
        .is_some_and(|p| p.starts_with("/v1beta1/"))));
    fake.assert_no_violations();
}

/// The Workload Identity chain costs three requests (OIDC, STS, IAM), once: the
/// token is cached. A token Google refuses (revoked, 401) is replaced once, and
/// the call goes through. Prints the chain's time against the fakes.
#[tokio::test(flavor = "current_thread")]
async fn the_workload_identity_chain_is_walked_once_and_again_after_a_401() {
    use mlcd::cloud::gcp::auth::TokenSource;
    let fake = FakeVertex::start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = vars(&fake.token_env()[1..], &[]);
    env.insert(
        "GOOGLE_APPLICATION_CREDENTIALS".into(),
        wif_file(dir.path(), &fake),
    );
    let source = TokenSource::from_env(&env).unwrap();
    assert!(
        source
            .describe()
            .contains("impersonating ci@mlcd-test.iam.gserviceaccount.com"),
        "{}",
        source.describe()
    );
    let start = std::time::Instant::now();
    let first = source.token().await.unwrap();
    let chain = start.elapsed();
    let again = source.token().await.unwrap();
    assert_eq!(first.expose(), again.expose(), "cached");
    let methods: Vec<String> = fake
        .requests()
        .iter()
        .map(|r| r["method"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        methods,
        [
            "oidc.token",
            "sts.v1.token",
            "iamcredentials.projects.serviceAccounts.generateAccessToken"
        ]
    );
    eprintln!(
        "Workload Identity chain (OIDC → STS → generateAccessToken) against the fakes: {chain:?}"
    );

    // Revoked: the next API call is refused once, the chain walked again, the call done.
    let vx = VertexTraining::new(&plan(), &env).unwrap();
    assert_eq!(vx.describe("never-submitted").await.unwrap(), None);
    fake.config(serde_json::json!({"revoke": true}));
    assert_eq!(vx.describe("never-submitted").await.unwrap(), None);
    let lists = fake.calls("customJobs.list");
    let statuses: Vec<i64> = lists
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 401, 200]);
    assert_eq!(
        fake.calls("v1.token").len(),
        3,
        "walked again once after the 401"
    );
    fake.assert_no_violations();
}

#[test]
fn sigterm_cancels_the_vertex_job_and_reports_cancelled() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let mut env = actions_env(&ws);
    env.extend(fake.token_env());
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("INPUT_PARAM-LIST", "sleep=600"),
        ("MLCD_POLL_INTERVAL_MS", "100"),
    ] {
        env.push((k.into(), v.into()));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlcd"))
        .current_dir(ws.path())
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains(": InProgress") {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(4), "{seen}{}", rest.join("\n"));
    assert_eq!(
        fake.calls("customJobs.cancel").len(),
        1,
        "the job was cancelled"
    );
    let state = fake.call("GET", "/_fake/state", None);
    let job = state["jobs"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert!(
        ["JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED"].contains(&job["state"].as_str().unwrap()),
        "{job}"
    );
    fake.assert_no_violations();
}

#[test]
fn wait_false_submits_and_a_later_step_attaches_by_job_id() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    ws.write("mlcd.yml", CONFIG);
    let (r1, out1) = run_train(
        &ws,
        &fake.token_env(),
        &[("INPUT_WAIT", "false"), ("INPUT_PARAM-LIST", "sleep=1")],
    );
    r1.assert_code(0);
    assert_eq!(out1["status"], "submitted", "{out1:?}");
    let job = out1["job-id"].clone();
    // A later step (here another run of the same repository and commit: attach
    // compares source, model and commit) collects it without creating another.
    let (r2, out2) = run_train(
        &ws,
        &fake.token_env(),
        &[
            ("INPUT_ATTACH", job.as_str()),
            ("INPUT_PARAM-LIST", "sleep=1"),
        ],
    );
    r2.assert_code(0);
    assert_eq!(out2["status"], "succeeded", "{}", r2.stderr);
    assert_eq!(out2["job-id"], job);
    assert!(
        r2.stderr.contains("attaching to training job"),
        "{}",
        r2.stderr
    );
    assert_eq!(fake.calls("customJobs.create").len(), 1);
    fake.assert_no_violations();
}

/// Artifact Registry pushes use the same Google credentials: here the Workload
/// Identity chain of google-github-actions/auth, walked against the fakes.
#[tokio::test(flavor = "current_thread")]
async fn artifact_registry_credentials_come_from_the_same_workload_identity_chain() {
    use mlcd::image::auth::{resolve, Sources};
    let fake = FakeVertex::start();
    let dir = tempfile::tempdir().unwrap();
    let env: BTreeMap<String, String> = [(
        "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
        wif_file(dir.path(), &fake),
    )]
    .into();
    let sources = Sources {
        username: None,
        password: None,
        github_token: None,
        env: &env,
    };
    let r = resolve("us-central1-docker.pkg.dev", &sources)
        .await
        .unwrap();
    assert!(
        r.source.contains("Workload Identity Federation"),
        "{}",
        r.source
    );
    let c = r.credentials.expect("credentials");
    assert_eq!(c.username, "oauth2accesstoken");
    assert!(
        c.password.expose().starts_with("ya29.iam-"),
        "the impersonated token"
    );
    assert_eq!(fake.calls("generateAccessToken").len(), 1);
    // Without any Google credentials, Artifact Registry is anonymous as before.
    let none = BTreeMap::new();
    let r = resolve(
        "us-central1-docker.pkg.dev",
        &Sources {
            username: None,
            password: None,
            github_token: None,
            env: &none,
        },
    )
    .await
    .unwrap();
    assert!(r.credentials.is_none());
    fake.assert_no_violations();
}
