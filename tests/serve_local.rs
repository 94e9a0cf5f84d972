//! Local serving against the real Docker engine of the test bed, with the
//! bundled example image and a model trained by the example's own train.py: the
//! serving conformance suite; live traffic through the endpoint's router follows
//! the weights and shadows get copies; a version answering errors is an answer,
//! not an error; a version that cannot start turns the endpoint Failed with its
//! log, and rolling back recovers it; another process sees the same endpoint;
//! nothing is left running after teardown; a serving image without glibc
//! (busybox) serves too, the router running from mlcd's own image.
//!
//! Needs `scripts/testbed up docker base-image` (scripts/test does it).

mod common;
#[path = "common/serve_conformance.rs"]
mod serve_conformance;

use common::*;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mlcd::config::values::{Backend, Protocol};
use mlcd::image::engine::Engine;
use mlcd::serve::local::LocalServing;
use mlcd::serve::{EndpointState, Invocation, ServingBackend, VersionSpec};

const NEED: &[&str] = &["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"];
const IMAGE: &str = "mlcd-test/churn:serve";

/// Builds the example image once per test process.
fn example_image(tb: &BTreeMap<String, String>) -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE, "--build-arg"])
            .arg(format!("BASE_IMAGE={}", tb["MLCD_TESTBED_BASE_IMAGE"]))
            .arg(root().join("fixtures/example"))
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .output()
            .expect("docker runs");
        assert!(
            out.status.success(),
            "building the example image failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    IMAGE
}

/// A model.tar.gz trained by the example's train.py (`entry.py train`) on
/// this machine, once.
fn model_tar_gz() -> &'static str {
    static MODEL: OnceLock<String> = OnceLock::new();
    MODEL.get_or_init(|| {
        let base = tempfile::tempdir().unwrap().keep();
        for ch in ["train", "validation"] {
            copy_dir(
                &root().join("fixtures/example/data").join(ch),
                &base.join("input/data").join(ch),
            );
        }
        let out = Command::new("python3")
            .arg(root().join("fixtures/example/entry.py"))
            .arg("train")
            .env("SM_BASE_DIR", &base)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "train.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tgz = base.join("model.tar.gz");
        let out = Command::new("tar")
            .arg("czf")
            .arg(&tgz)
            .arg("-C")
            .arg(base.join("model"))
            .arg(".")
            .output()
            .unwrap();
        assert!(out.status.success());
        tgz.display().to_string()
    })
}

fn docker(tb: &BTreeMap<String, String>, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &tb["DOCKER_HOST"])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The containers of `endpoint` that exist, running or not.
fn containers_of(tb: &BTreeMap<String, String>, endpoint: &str) -> String {
    docker(
        tb,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label=dev.mlcd.endpoint={endpoint}"),
            "--format",
            "{{.Names}}",
        ],
    )
    .trim()
    .to_string()
}

struct Bed {
    tb: BTreeMap<String, String>,
    engine: Engine,
}

impl Bed {
    async fn new() -> Bed {
        let tb = testbed_env(NEED);
        example_image(&tb);
        model_tar_gz();
        std::env::set_var("DOCKER_HOST", &tb["DOCKER_HOST"]);
        std::env::set_var("MLCD_POLL_INTERVAL_MS", "200");
        let engine = Engine::connect().await.unwrap();
        Bed { tb, engine }
    }

    fn backend(&self) -> LocalServing {
        LocalServing::new(&self.engine)
            .with_router_binary(PathBuf::from(env!("CARGO_BIN_EXE_mlcd")))
    }

    /// Removes the endpoint's containers when the test ends, even by a panic
    /// (a passing test has torn down already and checked it).
    fn cleanup(&self, endpoint: &str) -> Cleanup {
        Cleanup {
            tb: self.tb.clone(),
            endpoint: endpoint.to_string(),
        }
    }
}

struct Cleanup {
    tb: BTreeMap<String, String>,
    endpoint: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in containers_of(&self.tb, &self.endpoint).lines() {
            docker(&self.tb, &["rm", "-f", name]);
        }
    }
}

fn spec(endpoint: &str, version: &str) -> VersionSpec {
    VersionSpec {
        endpoint: endpoint.to_string(),
        version: version.to_string(),
        image: IMAGE.to_string(),
        model_data: Some(model_tar_gz().to_string()),
        model_name: "churn".into(),
        instance: mlcd::instance::resolve(&"cpu.small".parse().unwrap(), Backend::Local).unwrap(),
        replicas: 1,
        env: BTreeMap::new(),
        workers: Some(1),
        batching: None,
        request_timeout: Duration::from_secs(20),
        protocol: Protocol::Sagemaker,
        tags: BTreeMap::from([("model".to_string(), "churn".to_string())]),
        identity: test_identity("github.com/acme/churn"),
    }
}

fn sample() -> Invocation {
    Invocation {
        body: std::fs::read(root().join("fixtures/example/tests/sample.json")).unwrap(),
        content_type: "application/json".into(),
    }
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(root().join("fixtures/example/tests/expected.json")).unwrap(),
    )
    .unwrap()
}

/// Tears down and checks that nothing of the endpoint is left.
async fn teardown_leaves_nothing(bed: &Bed, backend: &LocalServing, endpoint: &str) {
    backend.teardown(endpoint).await.expect("teardown");
    assert_eq!(containers_of(&bed.tb, endpoint), "", "containers left");
    assert!(backend.status(endpoint).await.unwrap().is_none());
}

#[tokio::test(flavor = "current_thread")]
async fn the_local_backend_passes_the_conformance_suite() {
    let bed = Bed::new().await;
    let backend = bed.backend();
    let ep = format!("conf{}", unique());
    let _cleanup = bed.cleanup(&ep);
    serve_conformance::run(&backend, &spec(&ep, "base"), &sample()).await;
    assert_eq!(
        containers_of(&bed.tb, &ep),
        "",
        "containers left after teardown"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn live_traffic_follows_the_weights_and_shadows_get_copies() {
    let bed = Bed::new().await;
    let backend = bed.backend();
    let ep = format!("split{}", unique());
    let _cleanup = bed.cleanup(&ep);
    backend.deploy(&spec(&ep, "v1"), false).await.unwrap();
    backend.deploy(&spec(&ep, "v2"), false).await.unwrap();
    // A re-run of the same deploy attaches instead of failing.
    backend.deploy(&spec(&ep, "v2"), false).await.unwrap();
    // The shadow speaks v2 (the example serves both protocols).
    let mut v3 = spec(&ep, "v3");
    v3.protocol = Protocol::V2;
    backend.deploy(&v3, true).await.unwrap();
    let s = serve_conformance::until(&backend, &ep, "three ready versions", |s| {
        s.state == EndpointState::InService && s.variants.iter().filter(|v| v.ready).count() == 3
    })
    .await;
    let url = s.url.clone().expect("the endpoint has a url");
    backend
        .set_traffic(&ep, &BTreeMap::from([("v1".into(), 80), ("v2".into(), 20)]))
        .await
        .unwrap();

    // Another process (a later step) sees the same endpoint, weights included.
    let other = bed.backend();
    let seen = other
        .status(&ep)
        .await
        .unwrap()
        .expect("the endpoint exists");
    assert_eq!(seen.url.as_deref(), Some(url.as_str()));
    let w: BTreeMap<_, _> = seen
        .variants
        .iter()
        .map(|v| (v.version.as_str(), (v.weight, v.shadow)))
        .collect();
    assert_eq!(
        w,
        BTreeMap::from([("v1", (80, false)), ("v2", (20, false)), ("v3", (0, true))])
    );

    // The router reloads within a few polls; then 100 requests split exactly.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let mut counts = BTreeMap::<String, usize>::new();
    for _ in 0..100 {
        let r = client
            .post(format!("{url}/invocations"))
            .header("content-type", "application/json")
            .body(sample().body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v = r.headers()["x-mlcd-version"].to_str().unwrap().to_string();
        assert_eq!(r.json::<serde_json::Value>().await.unwrap(), expected());
        *counts.entry(v).or_default() += 1;
    }
    assert_eq!(
        counts,
        BTreeMap::from([("v1".to_string(), 80), ("v2".to_string(), 20)])
    );

    // The shadow got copies of the live requests, though it answered nobody.
    let shadow = LocalServing::version_container(&ep, "v3");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("docker")
            .args(["logs", &shadow])
            .env("DOCKER_HOST", &bed.tb["DOCKER_HOST"])
            .output()
            .unwrap();
        let copies = String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.contains("\"POST /invocations\" 200"))
            .count();
        if copies == 100 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the shadow saw {copies} of 100 requests"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Invoking the v2-protocol version uses its own path.
    let v2_request = Invocation {
        body: serde_json::to_vec(&serde_json::json!({"inputs": [
            {"name": "tenure_months", "shape": [1], "datatype": "FP64", "data": [3]},
            {"name": "monthly_charges", "shape": [1], "datatype": "FP64", "data": [89.5]},
            {"name": "support_calls", "shape": [1], "datatype": "FP64", "data": [3]},
            {"name": "contract_monthly", "shape": [1], "datatype": "FP64", "data": [1]},
        ]}))
        .unwrap(),
        content_type: "application/json".into(),
    };
    let a = backend.invoke(&ep, "v3", &v2_request).await.unwrap();
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        body["outputs"][0]["data"][0],
        expected()["predictions"][0]["churn_probability"]
    );

    // Traffic must sum to 100 and name live versions only.
    let e = backend
        .set_traffic(&ep, &BTreeMap::from([("v1".into(), 50)]))
        .await
        .unwrap_err();
    assert!(e.message.contains("sums to 50%"), "{}", e.message);
    let e = backend
        .set_traffic(&ep, &BTreeMap::from([("v1".into(), 50), ("v3".into(), 50)]))
        .await
        .unwrap_err();
    assert!(e.message.contains("is a shadow"), "{}", e.message);
    // A version with live traffic cannot be retired.
    let e = backend.retire(&ep, "v2").await.unwrap_err();
    assert!(
        e.message.contains("20% of the live traffic"),
        "{}",
        e.message
    );

    teardown_leaves_nothing(&bed, &backend, &ep).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_version_answering_errors_is_an_answer_not_an_error() {
    let bed = Bed::new().await;
    let backend = bed.backend();
    let ep = format!("smoke{}", unique());
    let _cleanup = bed.cleanup(&ep);
    backend.deploy(&spec(&ep, "v1"), false).await.unwrap();
    let mut bad = spec(&ep, "v2");
    bad.env.insert("MODEL_FAIL_SMOKE".into(), "true".into());
    backend.deploy(&bad, false).await.unwrap();
    serve_conformance::until(&backend, &ep, "both ready", |s| {
        s.state == EndpointState::InService && s.variants.iter().all(|v| v.ready)
    })
    .await;
    let a = backend.invoke(&ep, "v2", &sample()).await.unwrap();
    assert_eq!(a.status, 500);
    assert!(
        String::from_utf8_lossy(&a.body).contains("MODEL_FAIL_SMOKE"),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert!(a.latency > Duration::ZERO);
    let a = backend.invoke(&ep, "v1", &sample()).await.unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&a.body).unwrap(),
        expected()
    );
    // An unknown version is an error that lists the real ones.
    let e = backend.invoke(&ep, "v7", &sample()).await.unwrap_err();
    assert!(e.message.contains("`v1`, `v2`"), "{}", e.message);
    teardown_leaves_nothing(&bed, &backend, &ep).await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_version_that_cannot_start_fails_the_endpoint_with_its_log_and_rollback_recovers() {
    let bed = Bed::new().await;
    let backend = bed.backend();
    let ep = format!("crash{}", unique());
    let _cleanup = bed.cleanup(&ep);
    backend.deploy(&spec(&ep, "v1"), false).await.unwrap();
    serve_conformance::until(&backend, &ep, "v1 ready", |s| {
        s.state == EndpointState::InService && s.variants.iter().all(|v| v.ready)
    })
    .await;
    // No model: the example server exits at once ("cannot start").
    let mut broken = spec(&ep, "v2");
    broken.model_data = None;
    backend.deploy(&broken, false).await.unwrap();
    let start = Instant::now();
    let s = serve_conformance::until(&backend, &ep, "Failed", |s| {
        s.state == EndpointState::Failed
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    let reason = s.failure_reason.clone().unwrap_or_default();
    assert!(
        reason.contains("version `v2`") && reason.contains("cannot start"),
        "{reason}"
    );
    let v = |name: &str| {
        s.variants
            .iter()
            .find(|v| v.version == name)
            .unwrap()
            .clone()
    };
    assert!(!v("v2").ready);
    assert!(v("v1").ready && v("v1").weight == 100);
    // Live traffic still reaches v1 through the router meanwhile.
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/invocations", s.url.clone().unwrap()))
        .body(sample().body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mlcd-version"], "v1");

    // Rolling back needs only the endpoint's name: a fresh backend does it.
    bed.backend().rollback(&ep, "v1").await.unwrap();
    let s = serve_conformance::until(&backend, &ep, "InService again", |s| {
        s.state == EndpointState::InService
    })
    .await;
    assert_eq!(s.variants.len(), 1);
    assert!(s.failure_reason.is_none());
    // Rolling back to a version that does not exist says which exist.
    let e = backend.rollback(&ep, "v2").await.unwrap_err();
    assert!(
        e.message
            .contains("has no version `v2` (its versions: `v1`)"),
        "{}",
        e.message
    );
    teardown_leaves_nothing(&bed, &backend, &ep).await;
}

#[tokio::test(flavor = "current_thread")]
async fn preflight_refuses_what_cannot_be_served_here_before_anything_starts() {
    let bed = Bed::new().await;
    let backend = bed.backend();
    let ep = format!("pre{}", unique());
    let mut s3 = spec(&ep, "v1");
    s3.model_data = Some("s3://bucket/model.tar.gz".into());
    let e = backend.preflight(&s3).await.unwrap_err();
    assert!(e.message.contains("this machine only"), "{}", e.message);
    let mut missing = spec(&ep, "v1");
    missing.model_data = Some("/nonexistent/model.tar.gz".into());
    let e = backend.preflight(&missing).await.unwrap_err();
    assert!(e.message.contains("does not exist"), "{}", e.message);
    let mut gpu = spec(&ep, "v1");
    gpu.instance = mlcd::instance::resolve(&"gpu.t4.xl".parse().unwrap(), Backend::Local).unwrap();
    let e = backend.preflight(&gpu).await.unwrap_err();
    assert!(e.message.contains("no GPU runtime"), "{}", e.message);
    assert!(e.hint.unwrap().contains("cpu."));
    let bad = spec(&ep, "v1.0");
    let e = backend.preflight(&bad).await.unwrap_err();
    assert!(e.message.contains("version `v1.0`"), "{}", e.message);
    // A shadow cannot create an endpoint.
    let e = backend.deploy(&spec(&ep, "v1"), true).await.unwrap_err();
    assert!(
        e.message.contains("a shadow needs a live version"),
        "{}",
        e.message
    );
    assert_eq!(containers_of(&bed.tb, &ep), "");
    assert!(backend.status(&ep).await.unwrap().is_none());
}

/// A model server in busybox's `sh` behind `nc -ll`: `GET /ping` and
/// `POST /invocations` (answering `{"served-by": "busybox"}`) on
/// `$SAGEMAKER_BIND_TO_PORT`, one connection at a time.
const BUSYBOX_SERVER: &str = r#"#!/bin/sh
read -r method path _
len=0
while read -r line; do
  line=$(printf '%s' "$line" | tr -d '\r')
  [ -z "$line" ] && break
  case "$line" in [Cc]ontent-[Ll]ength:*) len=$(echo "${line#*:}" | tr -d ' ') ;; esac
done
[ "$len" -gt 0 ] && head -c "$len" >/dev/null
case "$method $path" in
  "GET /ping") status="200 OK"; body='' ;;
  "POST /invocations") status="200 OK"; body='{"served-by": "busybox"}' ;;
  *) status="404 Not Found"; body='' ;;
esac
printf 'HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "$status" "${#body}" "$body"
"#;

/// A serving image with no glibc and no mlcd in it (busybox, static): the
/// router runs from mlcd's own image, so the endpoint serves like any other.
#[tokio::test(flavor = "current_thread")]
async fn a_serving_image_without_glibc_serves_behind_the_endpoint() {
    let bed = Bed::new().await;
    let busybox = bed
        .tb
        .get("MLCD_TESTBED_BUSYBOX_IMAGE")
        .cloned()
        .unwrap_or_else(|| "local/busybox:latest".into());
    let image = "mlcd-test/busybox-server:serve";
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("serve.sh"), BUSYBOX_SERVER).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {busybox}\nCOPY serve.sh /serve.sh\nRUN chmod +x /serve.sh\n\
             ENTRYPOINT [\"/bin/sh\", \"-c\", \"exec nc -ll -p \\\"$SAGEMAKER_BIND_TO_PORT\\\" -e /serve.sh\", \"--\"]\n"
        ),
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", image])
        .arg(ctx.path())
        .env("DOCKER_HOST", &bed.tb["DOCKER_HOST"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let backend = bed.backend();
    let ep = format!("busybox{}", unique());
    let _cleanup = bed.cleanup(&ep);
    let mut s = spec(&ep, "v1");
    s.image = image.into();
    s.model_data = None;
    backend.preflight(&s).await.expect("preflight");
    backend.deploy(&s, false).await.expect("deploy");
    let st = serve_conformance::until(&backend, &ep, "InService", |s| {
        s.state == EndpointState::InService && s.variants.iter().all(|v| v.ready)
    })
    .await;
    assert_eq!(st.failure_reason, None);

    // Through the endpoint's URL, as a client of the endpoint sees it.
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("{}/invocations", st.url.clone().unwrap()))
        .header("content-type", "application/json")
        .body(sample().body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-mlcd-version"], "v1");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({"served-by": "busybox"})
    );
    // The router runs from mlcd's own image, not from the serving image.
    let router_image = docker(
        &bed.tb,
        &[
            "inspect",
            "--format",
            "{{.Config.Image}}",
            &LocalServing::router_container(&ep),
        ],
    );
    assert!(
        router_image.trim().starts_with("mlcd-router:"),
        "{router_image}"
    );
    teardown_leaves_nothing(&bed, &backend, &ep).await;
}

#[tokio::test(flavor = "current_thread")]
async fn capture_files_are_saved_when_the_endpoint_is_torn_down() {
    let bed = Bed::new().await;
    let dest = tempfile::tempdir().unwrap();
    let settings = mlcd::serve::capture::CaptureSettings {
        sample_percent: 100,
        dir: String::new(),
        rotate_bytes: 4096,
        max_bytes: 1 << 20,
        queue: 64,
    };
    let backend = bed
        .backend()
        .with_capture(Some((settings, dest.path().join("capture"))));
    let ep = format!("cap{}", unique());
    let _cleanup = bed.cleanup(&ep);
    backend
        .deploy(&spec(&ep, "v1"), false)
        .await
        .expect("deploy");
    let s = serve_conformance::until(&backend, &ep, "v1 ready", |s| {
        s.state == EndpointState::InService && s.variants.iter().all(|v| v.ready)
    })
    .await;
    let url = s.url.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    for _ in 0..12 {
        let r = http
            .post(format!("{url}/invocations"))
            .header("content-type", "application/json")
            .body(sample().body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // The writer writes what queued up every 100 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    teardown_leaves_nothing(&bed, &backend, &ep).await;
    let mut lines = 0;
    for e in std::fs::read_dir(dest.path().join("capture")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["captureData"]["endpointInput"]["encoding"], "JSON");
            lines += 1;
        }
    }
    assert_eq!(lines, 12, "every request was saved before the router went");
}
