//! The KServe serving backend against the fake API server (tests/fake_kube: every
//! object validated against the pinned KServe v0.20.0 CRD and the Kubernetes
//! OpenAPI, its KServe controller serving each revision from a real container of
//! the example model on the test bed's Docker engine): the serving conformance
//! suite (its shadow part: KServe cannot mirror traffic, so the shadow is a
//! revision beside the live one at 0%, reached at its tag URL), a revision that
//! never becomes ready (failed with KServe's reason, the old version still
//! serving, rolled back), and Standard mode (which refuses canaries and shadows).
//!
//! Needs `scripts/testbed up docker base-image pydeps`.

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;
#[path = "common/serve_conformance.rs"]
mod serve_conformance;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use fake_kube::{kserve_image, FakeKube};
use mlcd::config::types::KserveMode;
use mlcd::config::values::{Backend, Protocol, Strategy};
use mlcd::plan::ServingKubernetesPlan;
use mlcd::serve::kserve::backend::KserveServing;
use mlcd::serve::{EndpointState, Invocation, ServingBackend, VersionSpec};

fn plan(mode: Option<KserveMode>) -> ServingKubernetesPlan {
    ServingKubernetesPlan {
        namespace: "ml".into(),
        context: None,
        eks: None,
        storage_uri: None,
        service_account: None,
        deployment_mode: mode,
    }
}

fn spec(image: &str, endpoint: &str, version: &str) -> VersionSpec {
    VersionSpec {
        endpoint: endpoint.to_string(),
        version: version.to_string(),
        image: image.to_string(),
        model_data: None,
        model_name: "churn".into(),
        instance: mlcd::instance::resolve(&"cpu.small".parse().unwrap(), Backend::Kubernetes)
            .unwrap(),
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
    fake: FakeKube,
    image: String,
}

fn bed() -> Bed {
    let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let image = kserve_image(&tb);
    Bed {
        fake: FakeKube::with_docker(&tb),
        image,
    }
}

async fn backend(b: &Bed, mode: Option<KserveMode>, strategy: Strategy) -> KserveServing {
    KserveServing::new(&plan(mode), &b.fake.env())
        .await
        .expect("a client for the fake")
        .with_ready_timeout(Duration::from_secs(90))
        .with_strategy(strategy)
}

#[tokio::test(flavor = "current_thread")]
async fn kserve_passes_the_serving_conformance_suite_with_a_shadow_beside_the_live_revision() {
    let b = bed();
    let k = backend(&b, None, Strategy::Canary).await;
    let base = spec(&b.image, &format!("conf-{}", unique()), "v1");
    serve_conformance::run(&k, &base, &sample()).await;
    b.fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn a_broken_revision_fails_with_kserves_reason() {
    let b = bed();
    let k = backend(&b, None, Strategy::Canary).await;
    let ep = format!("broken-{}", unique());
    k.deploy(&spec(&b.image, &ep, "v1"), false).await.unwrap();
    serve_conformance::until(&k, &ep, "serving v1", |s| {
        s.state == EndpointState::InService && s.variants.iter().any(|v| v.ready)
    })
    .await;

    // The next revision never becomes ready; KServe keeps the traffic on v1 and
    // says why in the Ready condition.
    b.fake.call(
        "POST",
        "/_fake/kserve",
        Some(&format!(
            r#"{{"name": "{ep}", "broken": true, "message": "Back-off pulling image \"churn:v2\""}}"#
        )),
    );
    k.deploy(&spec(&b.image, &ep, "v2"), false).await.unwrap();
    let s = serve_conformance::until(&k, &ep, "failed", |s| s.state == EndpointState::Failed).await;
    let why = s.failure_reason.clone().unwrap_or_default();
    assert!(why.contains("RevisionFailed"), "{why}");
    assert!(why.contains("Back-off pulling image"), "{why}");
    let v1 = s.variants.iter().find(|v| v.version == "v1").unwrap();
    assert_eq!(v1.weight, 100, "{s:?}");
    let v2 = s.variants.iter().find(|v| v.version == "v2").unwrap();
    assert!(!v2.ready && v2.weight == 0, "{s:?}");
    // v1 still answers; v2 cannot be reached.
    assert_eq!(k.invoke(&ep, "v1", &sample()).await.unwrap().status, 200);
    assert!(k.invoke(&ep, "v2", &sample()).await.is_err());

    // Rolled back: v1's spec again, v1 alone, serving.
    b.fake.call(
        "POST",
        "/_fake/kserve",
        Some(&format!(r#"{{"name": "{ep}"}}"#)),
    );
    k.rollback(&ep, "v1").await.unwrap();
    let s = serve_conformance::until(&k, &ep, "v1 alone", |s| {
        s.state == EndpointState::InService && s.variants.len() == 1
    })
    .await;
    assert_eq!(s.variants[0].version, "v1");
    assert_eq!(k.invoke(&ep, "v1", &sample()).await.unwrap().status, 200);
    let isvc = b.fake.get(&format!(
        "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{ep}"
    ));
    assert!(
        isvc["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none(),
        "{isvc}"
    );
    assert_eq!(isvc["metadata"]["labels"]["mlcd.dev/version"], "v1");
    k.teardown(&ep).await.unwrap();
    b.fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn standard_mode_refuses_a_canary_and_replaces_the_version_all_at_once() {
    let b = bed();
    let ep = format!("raw-{}", unique());
    let k = backend(&b, Some(KserveMode::Standard), Strategy::AllAtOnce).await;
    k.deploy(&spec(&b.image, &ep, "v1"), false).await.unwrap();
    let s = serve_conformance::until(&k, &ep, "serving v1", |s| {
        s.state == EndpointState::InService && s.variants.iter().any(|v| v.ready)
    })
    .await;
    assert_eq!(s.variants.len(), 1);
    assert_eq!(s.variants[0].version, "v1");
    let isvc = b.fake.get(&format!(
        "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{ep}"
    ));
    assert_eq!(
        isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"],
        "RawDeployment"
    );

    // A canary on an endpoint KServe runs in Standard mode is refused, naming it,
    // even when this run's config does not say so.
    let canary = backend(&b, None, Strategy::Canary).await;
    let e = canary
        .preflight(&spec(&b.image, &ep, "v2"))
        .await
        .expect_err("a canary in Standard mode is refused");
    assert!(
        e.message.contains("Standard (RawDeployment) mode"),
        "{}",
        e.message
    );
    assert!(e.message.contains("`canary`"), "{}", e.message);
    // So is a shadow: Standard mode runs one version at a time.
    let shadow = backend(&b, None, Strategy::Shadow).await;
    let e = shadow
        .preflight(&spec(&b.image, &ep, "v2"))
        .await
        .expect_err("a shadow in Standard mode is refused");
    assert!(
        e.message.contains("Standard (RawDeployment)"),
        "{}",
        e.message
    );
    let e = k
        .deploy(&spec(&b.image, &ep, "v2"), true)
        .await
        .expect_err("a shadow in Standard mode is refused");
    assert!(e.message.contains("no second revision"), "{}", e.message);

    // All at once: v2 replaces v1.
    k.preflight(&spec(&b.image, &ep, "v2")).await.unwrap();
    k.deploy(&spec(&b.image, &ep, "v2"), false).await.unwrap();
    let s = serve_conformance::until(&k, &ep, "serving v2", |s| {
        s.state == EndpointState::InService
            && s.variants.iter().any(|v| v.version == "v2" && v.ready)
    })
    .await;
    assert_eq!(s.variants.len(), 1);
    assert_eq!(k.invoke(&ep, "v2", &sample()).await.unwrap().status, 200);
    k.rollback(&ep, "v1").await.unwrap();
    serve_conformance::until(&k, &ep, "serving v1 again", |s| {
        s.state == EndpointState::InService
            && s.variants.iter().any(|v| v.version == "v1" && v.ready)
    })
    .await;
    k.teardown(&ep).await.unwrap();
    b.fake.assert_no_violations();
}

#[tokio::test(flavor = "current_thread")]
async fn waiting_for_a_revision_follows_a_watch_instead_of_polling() {
    let b = bed();
    let ep = format!("slow-{}", unique());
    // The revision's container starts 8 s late (a slow image pull).
    b.fake.call(
        "POST",
        "/_fake/kserve",
        Some(&format!(r#"{{"name": "{ep}", "start_delay": 8}}"#)),
    );
    // The default poll interval (2 s), as in production.
    let mut env = b.fake.env();
    env.remove("MLCD_POLL_INTERVAL_MS");
    let k = KserveServing::new(&plan(None), &env)
        .await
        .unwrap()
        .with_ready_timeout(Duration::from_secs(90));
    let before = b.fake.requests().len();
    let started = std::time::Instant::now();
    k.deploy(&spec(&b.image, &ep, "v1"), false).await.unwrap();
    // The conductor asks for the status every poll; here every 200 ms.
    serve_conformance::until(&k, &ep, "serving v1", |s| {
        s.state == EndpointState::InService && s.variants.iter().any(|v| v.ready)
    })
    .await;
    let waited = started.elapsed();
    let calls: Vec<String> = b.fake.requests()[before..]
        .iter()
        .map(|r| {
            format!(
                "{} {}{}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                if r["query"]["watch"] == "true" || r["query"]["watch"] == "1" {
                    " (watch)"
                } else {
                    ""
                }
            )
        })
        .collect();
    eprintln!(
        "measured: {} API calls over {:.1} s of deploy + wait: {calls:#?}",
        calls.len(),
        waited.as_secs_f64()
    );
    assert!(waited >= Duration::from_secs(8), "{waited:?}");
    // apply, read, watch, record: a fixed handful, not one per poll.
    assert!(calls.len() <= 8, "{calls:#?}");
    assert_eq!(
        calls.iter().filter(|c| c.ends_with("(watch)")).count(),
        1,
        "{calls:#?}"
    );
    k.teardown(&ep).await.unwrap();
}
