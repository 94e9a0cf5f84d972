//! The Vertex AI serving backend against the fake Vertex AI (tests/fake_vertex:
//! every request and answer validated against the pinned discovery document; each
//! deployed model served by a real container of the example model on the test
//! bed's Docker engine, its deployModel operation done only once the container
//! answers its health route): the serving conformance suite with its shadow part
//! (a shadow endpoint), a candidate that never gets healthy (the operation's error
//! surfaced, the live version untouched), a change while the endpoint has another
//! operation in progress (waited for, bounded, then refused), and a deployed
//! model mlcd did not make (refused).
//!
//! Needs `scripts/testbed up docker base-image pydeps`.

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;
#[path = "common/serve_conformance.rs"]
mod serve_conformance;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use fake_kube::kserve_image;
use mlcd::config::values::{Backend, Protocol};
use mlcd::plan::VertexPlan;
use mlcd::serve::vertex::VertexServing;
use mlcd::serve::{Invocation, ServingBackend, VersionSpec};

const PARENT: &str = "v1/projects/mlcd-test/locations/us-central1";

fn plan() -> VertexPlan {
    VertexPlan {
        project: "mlcd-test".into(),
        region: "us-central1".into(),
        staging_bucket: "gs://mlcd-test-staging".into(),
        service_account: None,
        api_endpoint: None,
    }
}

fn spec(image: &str, endpoint: &str, version: &str) -> VersionSpec {
    VersionSpec {
        endpoint: endpoint.to_string(),
        version: version.to_string(),
        image: image.to_string(),
        model_data: None,
        model_name: "churn".into(),
        instance: mlcd::instance::resolve(&"cpu.small".parse().unwrap(), Backend::Vertex).unwrap(),
        replicas: 1,
        env: BTreeMap::new(),
        workers: Some(1),
        batching: None,
        request_timeout: Duration::from_secs(20),
        protocol: Protocol::Sagemaker,
        tags: BTreeMap::new(),
        identity: test_identity("github.com/acme/churn"),
    }
}

fn sample() -> Invocation {
    Invocation {
        body: std::fs::read(root().join("fixtures/example/tests/sample.json")).unwrap(),
        content_type: "application/json".into(),
    }
}

struct Bed {
    fake: FakeVertex,
    image: String,
}

fn bed() -> Bed {
    let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let image = kserve_image(&tb);
    Bed {
        fake: FakeVertex::with_docker(&tb["DOCKER_HOST"]),
        image,
    }
}

fn backend(b: &Bed, ready: Duration) -> VertexServing {
    let mut env: BTreeMap<String, String> = b.fake.token_env().into_iter().collect();
    env.insert("MLCD_POLL_INTERVAL_MS".into(), "200".into());
    VertexServing::new(&plan(), &env)
        .expect("a client for the fake")
        .with_ready_timeout(ready)
}

/// An endpoint call made straight to the fake (another tool's change), with a
/// plain access token; the answer.
fn api(b: &Bed, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-s", "-X", method, &format!("{}/{path}", b.fake.url)])
        .args(["-H", "authorization: Bearer ya29.someone-else"])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn vertex_passes_the_serving_conformance_suite() {
    let b = bed();
    let v = backend(&b, Duration::from_secs(120));
    let base = spec(&b.image, &format!("conf-{}", unique()), "v1");
    serve_conformance::run(&v, &base, &sample()).await;
    // Every answer came from a real container behind rawPredict: v1 on the live
    // endpoint, v2 alone on the candidate endpoint, v3 on the shadow endpoint.
    let raw: Vec<String> = b
        .fake
        .calls("endpoints.rawPredict")
        .iter()
        .map(|r| format!("{} {}", r["status"], r["path"].as_str().unwrap()))
        .collect();
    let ep = &base.endpoint;
    assert_eq!(raw.len(), 3, "{raw:#?}");
    assert!(
        raw[0].starts_with("200 ") && raw[0].ends_with(&format!("/{ep}:rawPredict")),
        "{raw:#?}"
    );
    assert!(
        raw[1].starts_with("200 ") && raw[1].ends_with(&format!("/{ep}-candidate:rawPredict")),
        "{raw:#?}"
    );
    assert!(
        raw[2].starts_with("200 ") && raw[2].ends_with(&format!("/{ep}-shadow:rawPredict")),
        "{raw:#?}"
    );
    b.fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn a_candidate_is_called_alone_before_traffic_and_a_broken_one_fails_with_vertexs_error() {
    let b = bed();
    let v = backend(&b, Duration::from_secs(120));
    let ep = format!("cand-{}", unique());
    v.deploy(&spec(&b.image, &ep, "v1"), false).await.unwrap();
    v.deploy(&spec(&b.image, &ep, "v2"), false).await.unwrap();
    // v2 at 0% on the live endpoint, alone on the candidate endpoint.
    let state = b.fake.call("GET", "/_fake/state", None);
    let live = &state["endpoints"][&ep];
    assert_eq!(
        live["deployedModels"].as_array().unwrap().len(),
        2,
        "{live:#}"
    );
    let cand = &state["endpoints"][format!("{ep}-candidate")];
    assert_eq!(
        cand["deployedModels"].as_array().unwrap().len(),
        1,
        "{cand:#}"
    );
    let before = b.fake.calls("endpoints.rawPredict").len();
    assert_eq!(v.invoke(&ep, "v2", &sample()).await.unwrap().status, 200);
    let call = &b.fake.calls("endpoints.rawPredict")[before];
    assert!(
        call["path"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{ep}-candidate:rawPredict")),
        "{call:#}"
    );
    // A run that stopped after the candidate endpoint was emptied: deploying v2
    // again puts it back there, so it can still be called alone.
    let cand_id = cand["deployedModels"][0]["id"].as_str().unwrap();
    let op = api(
        &b,
        "POST",
        &format!("{PARENT}/endpoints/{ep}-candidate:undeployModel"),
        serde_json::json!({ "deployedModelId": cand_id }),
    );
    let name = op["name"].as_str().unwrap();
    while api(&b, "GET", &format!("v1/{name}"), serde_json::json!({}))["done"] != true {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(v.invoke(&ep, "v2", &sample()).await.is_err());
    v.deploy(&spec(&b.image, &ep, "v2"), false).await.unwrap();
    assert_eq!(v.invoke(&ep, "v2", &sample()).await.unwrap().status, 200);
    let state = b.fake.call("GET", "/_fake/state", None);
    assert_eq!(
        state["endpoints"][&ep]["deployedModels"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "v2 is not deployed twice to the live endpoint"
    );

    // v1 takes all the traffic, so the live endpoint reaches it alone; once it
    // shares the traffic with v2 it cannot be called alone.
    assert_eq!(v.invoke(&ep, "v1", &sample()).await.unwrap().status, 200);
    let half = BTreeMap::from([("v1".to_string(), 50), ("v2".to_string(), 50)]);
    v.set_traffic(&ep, &half).await.unwrap();
    let e = v.invoke(&ep, "v1", &sample()).await.unwrap_err();
    assert!(
        e.message.contains("cannot be called alone"),
        "{}",
        e.message
    );
    v.rollback(&ep, "v1").await.unwrap();

    // A candidate whose image has no model server: the deployment's error, v1 serving.
    let mut broken = spec("mlcd-test/no-such-image:v3", &ep, "v3");
    broken.image = "mlcd-test/no-such-image:v3".into();
    let e = v.deploy(&broken, false).await.unwrap_err();
    assert!(e.message.contains("failed"), "{}", e.message);
    assert!(
        e.message.contains("Model server failed to start"),
        "{}",
        e.message
    );
    let s = v.status(&ep).await.unwrap().unwrap();
    assert_eq!(s.variants.len(), 1, "{s:?}");
    assert_eq!(
        (s.variants[0].version.as_str(), s.variants[0].weight),
        ("v1", 100)
    );
    assert_eq!(v.invoke(&ep, "v1", &sample()).await.unwrap().status, 200);
    v.teardown(&ep).await.unwrap();
    b.fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn another_change_in_progress_is_waited_for_then_refused_and_foreign_models_are_refused() {
    let b = bed();
    let ep = format!("busy-{}", unique());
    let v = backend(&b, Duration::from_secs(120));
    v.deploy(&spec(&b.image, &ep, "v1"), false).await.unwrap();

    // Someone else deploys a model to the endpoint and nobody polls the operation,
    // so the endpoint stays busy.
    let model = b.fake.call("GET", "/_fake/state", None)["models"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let v1_id = b.fake.call("GET", "/_fake/state", None)["endpoints"][&ep]["deployedModels"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut split = serde_json::json!({"0": 0});
    split[&v1_id] = serde_json::json!(100);
    let op = api(
        &b,
        "POST",
        &format!("{PARENT}/endpoints/{ep}:deployModel"),
        serde_json::json!({
            "deployedModel": {"model": format!("projects/mlcd-test/locations/us-central1/models/{model}"),
                              "displayName": "by-hand",
                              "dedicatedResources": {"machineSpec": {"machineType": "n1-standard-2"},
                                                     "minReplicaCount": 1}},
            "trafficSplit": split,
        }),
    );
    assert_eq!(op["done"], false, "{op:#}");
    let short = backend(&b, Duration::from_secs(2));
    let started = Instant::now();
    let e = short
        .set_traffic(&ep, &BTreeMap::from([("v1".to_string(), 100)]))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert!(
        e.message
            .contains("never starts a second concurrent change"),
        "{}",
        e.message
    );
    // Once that deployment is done, its model is one mlcd did not record: refused.
    let name = op["name"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while api(&b, "GET", &format!("v1/{name}"), serde_json::json!({}))["done"] != true {
        assert!(
            Instant::now() < deadline,
            "the other deployment never finished"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let e = v
        .preflight(&spec(&b.image, &ep, "v2"))
        .await
        .expect_err("a deployed model mlcd did not make is refused");
    assert!(
        e.message.contains("that mlcd did not deploy"),
        "{}",
        e.message
    );
    b.fake.assert_no_violations();
}

/// Calls a minute while mlcd waits on Vertex: every long-running operation (model
/// upload, endpoint create, deployModel) takes 15 polls. The poll interval is
/// scaled (200 ms standing for the 10 s default), so a real minute is 1.2 s here.
#[tokio::test(flavor = "current_thread")]
async fn a_deploy_waiting_on_vertex_costs_at_most_12_api_calls_a_minute() {
    let fake = FakeVertex::start();
    fake.config(serde_json::json!({"operation_polls": 15}));
    let mut env: BTreeMap<String, String> = fake.token_env().into_iter().collect();
    env.insert("MLCD_POLL_INTERVAL_MS".into(), "200".into());
    let v = VertexServing::new(&plan(), &env)
        .unwrap()
        .with_ready_timeout(Duration::from_secs(60));
    let started = Instant::now();
    v.deploy(&spec("img:1", &format!("bench-{}", unique()), "v1"), false)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    let calls = fake.requests();
    let polls = calls
        .iter()
        .filter(|r| {
            r["method"]
                .as_str()
                .unwrap_or("")
                .ends_with("operations.get")
        })
        .count();
    let scale = Duration::from_secs(10).as_secs_f64() / 0.2;
    let real_minutes = elapsed.as_secs_f64() * scale / 60.0;
    let per_minute = calls.len() as f64 / real_minutes;
    eprintln!(
        "measured: {} API calls ({polls} operations.get) in {:.1} s at a 200 ms poll = {:.1} min at the 10 s default: {per_minute:.1} calls a minute",
        calls.len(),
        elapsed.as_secs_f64(),
        real_minutes
    );
    assert!(polls >= 45, "three operations of 15 polls: {polls}");
    assert!(per_minute <= 12.0, "{per_minute:.1} calls a minute");
    fake.assert_no_violations();
}
