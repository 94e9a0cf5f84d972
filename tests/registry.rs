//! The model registries against real peers: a temp directory, the test bed's
//! MLflow server and moto's SageMaker. One conformance suite every registry
//! passes, then what is particular to each (MLflow's run contents, concurrent
//! local registrations, errors and retries).

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlcd::cloud::aws::{self, AwsClient, AwsCredentials};
use mlcd::cloud::retry::Backoff;
use mlcd::config::values::RegistryType;
use mlcd::error::Outcome;
use mlcd::plan::{RegistryPlan, SagemakerPlan, VertexPlan};
use mlcd::registry::local::LocalRegistry;
use mlcd::registry::mlflow::MlflowRegistry;
use mlcd::registry::{self, ModelRegistry, NewVersion, Version};
use serde_json::Value;

const IMAGE: &str =
    "127.0.0.1:15000/churn@sha256:4b1d9f0c8f4e4a2d8a0a1d1f6c9e7b5a3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
/// Another commit: job-b is trained from it.
const COMMIT_B: &str = "fedcba9876543210fedcba9876543210fedcba98";
/// A commit nothing was trained from.
const COMMIT_UNKNOWN: &str = "1111111111111111111111111111111111111111";
const RUN_URL: &str = "https://github.com/acme/churn/actions/runs/4242";

fn fast() -> Backoff {
    Backoff {
        attempts: 3,
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
    }
}

fn new_version(
    model: &str,
    job: &str,
    metrics: &[(&str, f64)],
    artifact: Option<&str>,
) -> NewVersion {
    NewVersion {
        model_name: model.to_string(),
        job_id: job.to_string(),
        backend: "local".into(),
        commit: Some(COMMIT.into()),
        image: IMAGE.into(),
        artifact: artifact.map(str::to_string),
        hyperparameters: [("epochs", "5"), ("lr", "0.01")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        channels: [("train".to_string(), "data/train".to_string())].into(),
        run_url: Some(RUN_URL.into()),
        alias: None,
    }
}

fn num(v: &Version) -> u64 {
    v.version
        .parse()
        .unwrap_or_else(|_| panic!("version `{}` is not a number", v.version))
}

/// The conformance suite: every registry passes it. `model` must be fresh;
/// `artifact` is the artifact each version records (a URI the registry accepts).
async fn conformance(reg: &dyn ModelRegistry, model: &str, artifact: &str) {
    let name = reg.name();
    // Nothing yet: lookups answer None, not errors.
    assert_eq!(
        reg.by_alias(model, "production").await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        reg.find_by_job(model, "job-none").await.unwrap(),
        None,
        "{name}"
    );
    assert_eq!(
        reg.find_by_commit(model, COMMIT).await.unwrap(),
        None,
        "{name}"
    );

    let m1 = [
        ("accuracy", 0.9),
        ("loss", 0.1 + 0.2),
        ("tiny", 1e-7),
        ("delta", -2.5),
    ];
    let first = reg
        .register(&new_version(model, "job-a", &m1, Some(artifact)))
        .await
        .unwrap_or_else(|e| panic!("{name}: register: {e} ({:?})", e.hint));
    let mut b = new_version(model, "job-b", &[("accuracy", 0.95)], Some(artifact));
    b.commit = Some(COMMIT_B.into());
    let second = reg.register(&b).await.unwrap();
    assert!(
        num(&second) > num(&first),
        "{name}: {first:?} then {second:?}"
    );
    assert_eq!(first.model_name, model);
    assert_eq!(first.job_id.as_deref(), Some("job-a"), "{name}");
    let expected: BTreeMap<String, f64> = m1.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(first.metrics, expected, "{name}: metrics round-trip");
    assert_eq!(first.image.as_deref(), Some(IMAGE), "{name}");
    assert_eq!(first.artifact.as_deref(), Some(artifact), "{name}");
    assert_eq!(
        first.commit.as_deref(),
        Some(COMMIT),
        "{name}: commit round-trips"
    );
    assert_eq!(second.commit.as_deref(), Some(COMMIT_B), "{name}");
    assert!(first.aliases.is_empty(), "{name}: {first:?}");
    assert!(!first.uri.is_empty());

    // find_by_job: the first by its job id, None for an unknown job.
    let found = reg
        .find_by_job(model, "job-a")
        .await
        .unwrap()
        .expect("job-a found");
    assert_eq!(found.version, first.version, "{name}");
    assert_eq!(found.metrics, expected, "{name}");
    assert_eq!(found.job_id.as_deref(), Some("job-a"));
    assert_eq!(
        reg.find_by_job(model, "job-unknown").await.unwrap(),
        None,
        "{name}"
    );

    // An alias: None before, then the version it was set on, with its metrics.
    assert_eq!(
        reg.by_alias(model, "production").await.unwrap(),
        None,
        "{name}"
    );
    reg.set_alias(model, &first.version, "production")
        .await
        .unwrap();
    let champ = reg
        .by_alias(model, "production")
        .await
        .unwrap()
        .expect("alias set");
    assert_eq!(champ.version, first.version, "{name}");
    assert_eq!(champ.metrics, expected, "{name}");
    assert!(
        champ.aliases.contains(&"production".to_string()),
        "{name}: {champ:?}"
    );
    assert_eq!(champ.commit.as_deref(), Some(COMMIT), "{name}: {champ:?}");

    // Moving it to the newer version, and back (a rollback).
    reg.set_alias(model, &second.version, "production")
        .await
        .unwrap();
    let champ = reg.by_alias(model, "production").await.unwrap().unwrap();
    assert_eq!(champ.version, second.version, "{name}");
    assert_eq!(champ.metrics.get("accuracy"), Some(&0.95));
    let old = reg.find_by_job(model, "job-a").await.unwrap().unwrap();
    assert!(
        !old.aliases.contains(&"production".to_string()),
        "{name}: {old:?}"
    );
    reg.set_alias(model, &first.version, "production")
        .await
        .unwrap();
    let champ = reg.by_alias(model, "production").await.unwrap().unwrap();
    assert_eq!(champ.version, first.version, "{name}: rolled back");

    // Registering with an alias; moving that alias too.
    let mut third = new_version(model, "job-c", &[("accuracy", 0.97)], Some(artifact));
    third.alias = Some("staging".into());
    let third = reg.register(&third).await.unwrap();
    assert!(num(&third) > num(&second), "{name}");
    assert!(
        third.aliases.contains(&"staging".to_string()),
        "{name}: {third:?}"
    );
    let staged = reg.by_alias(model, "staging").await.unwrap().unwrap();
    assert_eq!(staged.version, third.version, "{name}");
    assert_eq!(staged.job_id.as_deref(), Some("job-c"));

    // find_by_commit: two versions of COMMIT (job-a, job-c), one of COMMIT_B
    // (job-b): the newer of COMMIT's, with its lineage and aliases.
    let trained = reg
        .find_by_commit(model, COMMIT)
        .await
        .unwrap_or_else(|e| panic!("{name}: find_by_commit: {e} ({:?})", e.hint))
        .expect("a version of COMMIT");
    assert_eq!(
        trained.version, third.version,
        "{name}: the newest of the commit"
    );
    assert_eq!(trained.commit.as_deref(), Some(COMMIT), "{name}");
    assert_eq!(trained.job_id.as_deref(), Some("job-c"), "{name}");
    assert_eq!(trained.metrics.get("accuracy"), Some(&0.97), "{name}");
    assert!(
        trained.aliases.contains(&"staging".to_string()),
        "{name}: {trained:?}"
    );
    let b = reg.find_by_commit(model, COMMIT_B).await.unwrap().unwrap();
    assert_eq!(b.version, second.version, "{name}");
    assert_eq!(b.commit.as_deref(), Some(COMMIT_B), "{name}");
    assert_eq!(
        reg.find_by_commit(model, COMMIT_UNKNOWN).await.unwrap(),
        None,
        "{name}: an unknown commit"
    );
    let err = reg.find_by_commit(model, "0123456").await.unwrap_err();
    assert_eq!(err.kind, Outcome::Invalid, "{name}: {err}");
    assert!(err.message.contains("full commit SHA"), "{name}: {err}");
    reg.set_alias(model, &second.version, "staging")
        .await
        .unwrap();
    assert_eq!(
        reg.by_alias(model, "staging")
            .await
            .unwrap()
            .unwrap()
            .version,
        second.version,
        "{name}"
    );
    let c = reg.find_by_job(model, "job-c").await.unwrap().unwrap();
    assert!(!c.aliases.contains(&"staging".to_string()), "{name}: {c:?}");
    // The other alias stayed where it was.
    assert_eq!(
        reg.by_alias(model, "production")
            .await
            .unwrap()
            .unwrap()
            .version,
        first.version,
        "{name}"
    );

    // The newest versions, oldest first, with their metrics (what the report
    // comment charts). SageMaker's registry does not list them (none, by the
    // trait's contract: the chart is left out).
    let recent = reg.recent(model, 2).await.unwrap();
    if name == "sagemaker" {
        assert!(recent.is_empty(), "{name}: {recent:?}");
    } else {
        let got: Vec<(&str, Option<&f64>)> = recent
            .iter()
            .map(|v| (v.version.as_str(), v.metrics.get("accuracy")))
            .collect();
        assert_eq!(
            got,
            [
                (second.version.as_str(), Some(&0.95)),
                (third.version.as_str(), Some(&0.97))
            ],
            "{name}"
        );
        assert_eq!(reg.recent(model, 10).await.unwrap().len(), 3, "{name}");
    }

    // Bad input is an error, not a silent no-op.
    let err = reg.set_alias(model, "999", "production").await.unwrap_err();
    assert!(err.to_string().contains(model), "{name}: {err}");
    let err = reg
        .set_alias(model, &first.version, "latest")
        .await
        .unwrap_err();
    assert_eq!(err.kind, Outcome::Invalid, "{name}: {err}");
    let mut nan = new_version(model, "job-nan", &[("loss", f64::NAN)], Some(artifact));
    nan.alias = None;
    let err = reg.register(&nan).await.unwrap_err();
    assert!(err.message.contains("`loss`"), "{name}: {err}");
    assert_eq!(reg.find_by_job(model, "job-nan").await.unwrap(), None);
}

// ---------------------------------------------------------------- local

#[tokio::test(flavor = "current_thread")]
async fn local_registry_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let reg = registry::open(
        &RegistryPlan {
            kind: RegistryType::Local,
            model_name: "churn".into(),
            location: None,
            alias: None,
            vertex: None,
        },
        dir.path(),
        None,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    conformance(reg.as_ref(), "churn", "/work/jobs/churn-1/model.tar.gz").await;

    // Human-readable files where the design says.
    let base = dir.path().join(".mlcd/registry/churn");
    let v1: Value =
        serde_json::from_str(&std::fs::read_to_string(base.join("versions/1.json")).unwrap())
            .unwrap();
    assert_eq!(v1["job-id"], "job-a");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["commit"], COMMIT);
    assert_eq!(v1["hyperparameters"]["lr"], "0.01");
    assert_eq!(v1["aliases"], serde_json::json!(["production"]));
    assert!(v1["created"].as_str().unwrap().ends_with('Z'));
    let text = std::fs::read_to_string(base.join("aliases.json")).unwrap();
    assert!(text.contains('\n'), "pretty-printed: {text}");
    let aliases: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(aliases, serde_json::json!({"production": 1, "staging": 2}));
    let leftovers: Vec<_> = std::fs::read_dir(base.join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".json"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn concurrent_local_registrations_get_distinct_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        // A registry value per task, as separate processes would have.
        let reg = LocalRegistry::new(dir.path().join("reg"));
        tasks.push(tokio::spawn(async move {
            let v = new_version(
                "churn",
                &format!("job-{i}"),
                &[("accuracy", f64::from(i))],
                None,
            );
            reg.register(&v).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(num(&t.await.unwrap()));
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<_>>());
    // Each job landed in its own file, intact.
    let reg = LocalRegistry::new(dir.path().join("reg"));
    for i in 0..8 {
        let v = reg
            .find_by_job("churn", &format!("job-{i}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.metrics["accuracy"], f64::from(i));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn versions_recorded_without_a_commit_read_with_none() {
    // A Version serialized before it had a commit.
    let old: Version = serde_json::from_value(serde_json::json!({
        "model-name": "churn", "version": "1", "uri": "models:/churn/1",
        "job-id": "job-1", "metrics": {}, "image": null, "artifact": null,
        "aliases": [],
    }))
    .unwrap();
    assert_eq!(old.commit, None);

    // A local version file written without one, then a registration without one.
    let dir = tempfile::tempdir().unwrap();
    let versions = dir.path().join("churn/versions");
    std::fs::create_dir_all(&versions).unwrap();
    std::fs::write(
        versions.join("1.json"),
        r#"{"model-name": "churn", "version": 1, "created": "2026-01-01T00:00:00.000Z",
            "job-id": "job-old", "backend": "local", "image": ""}"#,
    )
    .unwrap();
    let reg = LocalRegistry::new(dir.path());
    let v = reg.find_by_job("churn", "job-old").await.unwrap().unwrap();
    assert_eq!(v.commit, None);
    let mut new = new_version("churn", "job-2", &[], None);
    new.commit = None;
    let v = reg.register(&new).await.unwrap();
    assert_eq!((v.version.as_str(), v.commit), ("2", None));
    assert_eq!(reg.find_by_commit("churn", COMMIT).await.unwrap(), None);
}

#[tokio::test(flavor = "current_thread")]
async fn local_registry_refuses_model_names_that_escape_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let reg = LocalRegistry::new(dir.path());
    let err = reg
        .register(&new_version("../outside", "job-1", &[], None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, Outcome::Invalid);
    assert!(err.message.contains("local registry"), "{err}");
    assert!(!dir.path().parent().unwrap().join("outside").exists());
}

// ---------------------------------------------------------------- MLflow

fn mlflow_url() -> String {
    common::testbed_env(&["MLCD_TESTBED_MLFLOW_URL"])["MLCD_TESTBED_MLFLOW_URL"].clone()
}

fn mlflow_plan(model: &str, uri: Option<&str>) -> RegistryPlan {
    RegistryPlan {
        kind: RegistryType::Mlflow,
        model_name: model.into(),
        location: uri.map(str::to_string),
        alias: None,
        vertex: None,
    }
}

async fn rest(url: &str) -> Value {
    let resp = reqwest::get(url).await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_registry_passes_the_conformance_suite() {
    let url = mlflow_url();
    let model = format!("churn-{}", common::unique());
    let reg = registry::open(
        &mlflow_plan(&model, Some(&url)),
        Path::new("."),
        None,
        &BTreeMap::new(),
    )
    .await
    .unwrap();
    conformance(reg.as_ref(), &model, "s3://models/churn/model.tar.gz").await;
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_run_holds_the_params_metrics_and_lineage_tags() {
    let url = mlflow_url();
    let model = format!("churn-run-{}", common::unique());
    let reg = MlflowRegistry::new(&url, &BTreeMap::new()).unwrap();
    let mut v = new_version(
        &model,
        "job-run-1",
        &[("accuracy", 0.91), ("f1", 0.8)],
        Some("/tmp/local/model.tar.gz"),
    );
    v.hyperparameters.insert("notes".into(), "n".repeat(7000));
    let version = reg.register(&v).await.unwrap();
    assert_eq!(version.uri, format!("models:/{model}/{}", version.version));
    // A local path is not a source MLflow accepts: the version points at the
    // run's artifacts and the path stays in a tag.
    assert_eq!(version.artifact.as_deref(), Some("/tmp/local/model.tar.gz"));

    let api = format!("{url}/api/2.0/mlflow");
    let mv = rest(&format!(
        "{api}/model-versions/get?name={model}&version={}",
        version.version
    ))
    .await;
    let mv = &mv["model_version"];
    let run_id = mv["run_id"].as_str().unwrap();
    let run = rest(&format!("{api}/runs/get?run_id={run_id}")).await;
    let run = &run["run"];
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "job-run-1");
    assert!(mv["source"].as_str().unwrap().contains(run_id), "{mv}");
    let pairs = |v: &Value| -> BTreeMap<String, Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p["key"].as_str().unwrap().to_string(), p["value"].clone()))
            .collect()
    };
    let params = pairs(&run["data"]["params"]);
    assert_eq!(params["lr"], "0.01");
    assert_eq!(params["epochs"], "5");
    assert_eq!(
        params["notes"].as_str().unwrap().chars().count(),
        6000,
        "cut to MLflow's limit"
    );
    let metrics = pairs(&run["data"]["metrics"]);
    assert_eq!(metrics["accuracy"], 0.91);
    assert_eq!(metrics["f1"], 0.8);
    let tags = pairs(&run["data"]["tags"]);
    assert_eq!(tags["mlflow.source.git.commit"], COMMIT);
    assert_eq!(tags["mlcd.job-id"], "job-run-1");
    assert_eq!(tags["mlcd.image"], IMAGE);
    assert_eq!(tags["mlcd.run-url"], RUN_URL);
    assert_eq!(tags["mlcd.backend"], "local");
    assert_eq!(tags["mlcd.channels"], r#"{"train":"data/train"}"#);
    let exp = rest(&format!(
        "{api}/experiments/get-by-name?experiment_name=mlcd/{model}"
    ))
    .await;
    assert_eq!(
        exp["experiment"]["experiment_id"],
        run["info"]["experiment_id"]
    );
    let vtags = pairs(&mv["tags"]);
    assert_eq!(vtags["mlcd.job-id"], "job-run-1");
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_mlflow_fails_clearly_within_the_retry_bound() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("http://127.0.0.1:{port}");
    let reg = MlflowRegistry::new(&uri, &BTreeMap::new())
        .unwrap()
        .with_backoff(fast());
    let start = Instant::now();
    let err = reg
        .register(&new_version("churn", "job-1", &[("accuracy", 0.9)], None))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(err.kind, Outcome::Failed);
    assert!(
        err.message.contains(&format!("MLflow registry at {uri}")),
        "{err}"
    );
    assert!(err.message.contains("model `churn`"), "{err}");
    assert!(err.message.contains("could not connect"), "{err}");
    assert!(
        err.hint.as_deref().unwrap().contains("reachable"),
        "{:?}",
        err.hint
    );
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_without_a_uri_or_with_bad_auth_settings_fails_before_any_call() {
    let err = registry::open(
        &mlflow_plan("churn", None),
        Path::new("."),
        None,
        &BTreeMap::new(),
    )
    .await
    .err()
    .expect("no tracking URI is an error");
    assert_eq!(err.kind, Outcome::Invalid);
    assert!(err.message.contains("tracking URI"), "{err}");
    assert!(err.hint.unwrap().contains("MLFLOW_TRACKING_URI"));
    let env: BTreeMap<String, String> = [(
        "MLFLOW_TRACKING_PASSWORD".to_string(),
        "pw-only-secret".to_string(),
    )]
    .into();
    let err = registry::open(
        &mlflow_plan("churn", Some("http://127.0.0.1:1")),
        Path::new("."),
        None,
        &env,
    )
    .await
    .err()
    .expect("half-set Basic auth is an error");
    assert!(err.message.contains("MLFLOW_TRACKING_USERNAME"), "{err}");
    assert!(!err.to_string().contains("pw-only-secret"));
}

/// A proxy in front of the real MLflow that counts requests, records their
/// heads, and answers the first `fail_first` requests itself with HTTP 503.
struct CountingProxy {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

impl CountingProxy {
    fn start(upstream: &str, fail_first: usize) -> Self {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let failed = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (seen, failed, upstream) = (seen.clone(), failed.clone(), upstream.clone());
                std::thread::spawn(move || proxy_one(conn, &upstream, &seen, &failed, fail_first));
            }
        });
        CountingProxy { url, requests }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves one request of a client connection over its own upstream connection,
/// then closes both (the answer says `connection: close`).
fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    seen: &Mutex<Vec<String>>,
    failed: &AtomicUsize,
    fail_first: usize,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head_text = String::from_utf8_lossy(&head).to_string();
    let length: usize = head_text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    if client.read_exact(&mut body).is_err() {
        return;
    }
    seen.lock().unwrap().push(head_text.clone());
    let answer = if failed.fetch_add(1, Ordering::SeqCst) < fail_first {
        let msg = r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"scripted outage"}"#;
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{msg}",
            msg.len()
        )
        .into_bytes()
    } else {
        let mut up = TcpStream::connect(upstream).unwrap();
        let mut forwarded = String::new();
        for line in head_text.trim_end().lines() {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                forwarded.push_str(line);
                forwarded.push_str("\r\n");
            }
        }
        forwarded.push_str("connection: close\r\n\r\n");
        up.write_all(forwarded.as_bytes()).unwrap();
        up.write_all(&body).unwrap();
        let mut answer = Vec::new();
        up.read_to_end(&mut answer).unwrap();
        answer
    };
    // One request per client connection: the answer says so.
    let text = String::from_utf8_lossy(&answer).to_string();
    let answer = if text.to_ascii_lowercase().contains("\r\nconnection: close") {
        answer
    } else {
        text.replacen("\r\n", "\r\nconnection: close\r\n", 1)
            .into_bytes()
    };
    let _ = client.write_all(&answer);
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_4xx_is_not_retried_and_names_the_error_code() {
    let proxy = CountingProxy::start(&mlflow_url(), 0);
    let env: BTreeMap<String, String> = [(
        "MLFLOW_TRACKING_TOKEN".to_string(),
        "tok-registry-test-5e3a".to_string(),
    )]
    .into();
    let reg = MlflowRegistry::new(&proxy.url, &env)
        .unwrap()
        .with_backoff(Backoff {
            attempts: 5,
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
        });
    let model = format!("churn-missing-{}", common::unique());
    let err = reg.set_alias(&model, "3", "production").await.unwrap_err();
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "a 4xx answer is final: {requests:?}");
    assert!(
        requests[0].starts_with("POST /api/2.0/mlflow/registered-models/alias "),
        "{}",
        requests[0]
    );
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer tok-registry-test-5e3a"),
        "the token is sent"
    );
    assert!(err.message.contains("RESOURCE_DOES_NOT_EXIST"), "{err}");
    assert!(err.message.contains(&model), "{err}");
    assert!(!format!("{err} {:?}", err.hint).contains("tok-registry-test-5e3a"));
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_5xx_is_retried_until_the_server_answers() {
    let proxy = CountingProxy::start(&mlflow_url(), 2);
    let reg = MlflowRegistry::new(&proxy.url, &BTreeMap::new())
        .unwrap()
        .with_backoff(Backoff {
            attempts: 4,
            initial: Duration::from_millis(20),
            max: Duration::from_millis(50),
        });
    let model = format!("churn-flaky-{}", common::unique());
    assert_eq!(reg.by_alias(&model, "production").await.unwrap(), None);
    assert_eq!(proxy.requests().len(), 3, "two 503s, then the real answer");
}

// ---------------------------------------------------------------- SageMaker

fn moto_env() -> BTreeMap<String, String> {
    let tb = common::testbed_env(&["MLCD_TESTBED_MOTO_URL"]);
    [
        ("AWS_ACCESS_KEY_ID", "AKIAREGISTRYTEST0001"),
        ("AWS_SECRET_ACCESS_KEY", "registry-test-secret-key"),
        ("AWS_REGION", "us-east-1"),
        (
            "AWS_ENDPOINT_URL_SAGEMAKER",
            tb["MLCD_TESTBED_MOTO_URL"].as_str(),
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn sagemaker_plan(model: &str) -> RegistryPlan {
    RegistryPlan {
        kind: RegistryType::Sagemaker,
        model_name: model.into(),
        location: None,
        alias: None,
        vertex: None,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn sagemaker_registry_passes_the_conformance_suite() {
    let env = moto_env();
    let model = format!("churn-{}", common::unique());
    let sm = SagemakerPlan {
        region: "us-east-1".into(),
        role_arn: "arn:aws:iam::123456789012:role/train".into(),
        output_path: None,
        subnets: Vec::new(),
        security_groups: Vec::new(),
    };
    let reg = registry::open(&sagemaker_plan(&model), Path::new("."), Some(&sm), &env)
        .await
        .unwrap();
    conformance(reg.as_ref(), &model, "s3://models/churn/model.tar.gz").await;

    // What SageMaker itself holds: one Approved version (production), the
    // superseded ones Rejected; the image and model data in the package.
    let client = AwsClient::new(AwsCredentials::from_env(&env).unwrap(), "us-east-1").unwrap();
    let endpoint = aws::endpoint(&aws::SAGEMAKER, "us-east-1", &env).unwrap();
    let list = client
        .json_call(
            "sagemaker",
            &endpoint,
            "SageMaker.ListModelPackages",
            &serde_json::json!({"ModelPackageGroupName": model, "SortBy": "CreationTime"}),
        )
        .await
        .unwrap();
    let statuses: Vec<(String, String)> = list["ModelPackageSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["ModelPackageVersion"].to_string(),
                s["ModelApprovalStatus"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        vec![
            ("1".into(), "Approved".into()),
            ("2".into(), "Rejected".into()),
            ("3".into(), "PendingManualApproval".into()),
        ]
    );
    let arn = list["ModelPackageSummaryList"][0]["ModelPackageArn"].clone();
    let p = client
        .json_call(
            "sagemaker",
            &endpoint,
            "SageMaker.DescribeModelPackage",
            &serde_json::json!({"ModelPackageName": arn}),
        )
        .await
        .unwrap();
    let c = &p["InferenceSpecification"]["Containers"][0];
    assert_eq!(c["Image"], IMAGE);
    assert_eq!(c["ModelDataUrl"], "s3://models/churn/model.tar.gz");
    assert_eq!(
        p["InferenceSpecification"]["SupportedContentTypes"],
        serde_json::json!(["application/json"])
    );
    let meta = &p["CustomerMetadataProperties"];
    assert_eq!(meta["mlcd.job-id"], "job-a");
    assert_eq!(meta["mlcd.commit"], COMMIT);
    assert_eq!(meta["mlcd.run-url"], RUN_URL);
    assert_eq!(meta["mlcd.hp.lr"], "0.01");
}

#[tokio::test(flavor = "current_thread")]
async fn sagemaker_without_region_or_credentials_fails_before_any_call() {
    let err = registry::open(
        &sagemaker_plan("churn"),
        Path::new("."),
        None,
        &BTreeMap::new(),
    )
    .await
    .err()
    .expect("no region");
    assert_eq!(err.kind, Outcome::Invalid);
    assert!(err.message.contains("region"), "{err}");
    let env: BTreeMap<String, String> =
        [("AWS_REGION".to_string(), "us-east-1".to_string())].into();
    let err = registry::open(&sagemaker_plan("churn"), Path::new("."), None, &env)
        .await
        .err()
        .expect("no credentials");
    assert!(
        err.message.contains("SageMaker registry for model `churn`"),
        "{err}"
    );
    assert!(err.message.contains("AWS_ACCESS_KEY_ID"), "{err}");
    let err = registry::open(
        &sagemaker_plan("churn_v2"),
        Path::new("."),
        None,
        &moto_env(),
    )
    .await
    .err()
    .expect("a name SageMaker refuses");
    assert!(err.message.contains("model package group"), "{err}");
}

#[tokio::test(flavor = "current_thread")]
async fn mlflow_names_a_deleted_experiment_and_how_to_restore_it() {
    let url = mlflow_url();
    let model = format!("churn-deleted-{}", common::unique());
    let api = format!("{url}/api/2.0/mlflow");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{api}/experiments/create"))
        .json(&serde_json::json!({ "name": format!("mlcd/{model}") }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["experiment_id"].as_str().unwrap().to_string();
    let deleted = http
        .post(format!("{api}/experiments/delete"))
        .json(&serde_json::json!({ "experiment_id": id }))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());
    let reg = MlflowRegistry::new(&url, &BTreeMap::new()).unwrap();
    let err = reg
        .register(&new_version(&model, "job-1", &[("accuracy", 0.9)], None))
        .await
        .unwrap_err();
    assert!(err.message.contains("is deleted"), "{err}");
    assert!(err.hint.unwrap().contains(&format!("--experiment-id {id}")));
}

// ---------------------------------------------------------------- vertex

#[tokio::test(flavor = "current_thread")]
async fn vertex_registry_passes_the_conformance_suite_against_the_fake() {
    let fake = common::FakeVertex::start();
    let mut env: BTreeMap<String, String> = fake.token_env().into_iter().collect();
    env.insert("MLCD_POLL_INTERVAL_MS".into(), "50".into());
    let model = format!("churn-{}", common::unique());
    let plan = RegistryPlan {
        kind: RegistryType::Vertex,
        model_name: model.clone(),
        location: None,
        alias: None,
        vertex: Some(VertexPlan {
            project: "mlcd-test".into(),
            region: "us-central1".into(),
            staging_bucket: String::new(),
            service_account: None,
            api_endpoint: None,
        }),
    };
    let reg = registry::open(&plan, Path::new("."), None, &env)
        .await
        .unwrap();
    assert_eq!(reg.name(), "vertex");
    conformance(
        reg.as_ref(),
        &model,
        "gs://mlcd-test-staging/churn-job/model/",
    )
    .await;
    fake.assert_no_violations();

    // What Vertex holds: one model, its versions uploaded as children, each
    // upload polled to done, the serving contract in the container spec.
    let uploads = fake.calls("models.upload");
    assert_eq!(
        uploads.len(),
        3,
        "three registrations (the NaN one refused before any call)"
    );
    assert_eq!(uploads[0]["body"]["modelId"], model.as_str());
    assert!(uploads[1]["body"]["parentModel"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/models/{model}")));
    let spec = &uploads[0]["body"]["model"]["containerSpec"];
    assert_eq!(spec["predictRoute"], "/invocations");
    assert_eq!(spec["healthRoute"], "/ping");
    assert_eq!(spec["ports"][0]["containerPort"], 8080);
    assert!(
        fake.calls("operations.get").len() >= 3,
        "every upload polled to done"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_failed_vertex_upload_surfaces_the_operations_error() {
    let fake = common::FakeVertex::start();
    let mut env: BTreeMap<String, String> = fake.token_env().into_iter().collect();
    env.insert("MLCD_POLL_INTERVAL_MS".into(), "50".into());
    fake.config(serde_json::json!({"fail_operation": {
        "method": "models.upload", "message": "Model server never became ready"}}));
    let reg = mlcd::registry::vertex::VertexRegistry::new(
        &VertexPlan {
            project: "mlcd-test".into(),
            region: "us-central1".into(),
            staging_bucket: String::new(),
            service_account: None,
            api_endpoint: None,
        },
        &env,
    )
    .unwrap();
    let err = reg
        .register(&new_version(
            "churn",
            "job-a",
            &[("accuracy", 0.9)],
            Some("gs://b/m/"),
        ))
        .await
        .unwrap_err();
    assert!(
        err.message.contains("Model server never became ready"),
        "{err}"
    );
    fake.assert_no_violations();
}
