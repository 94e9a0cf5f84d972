//! The conformance suite every [`ServingBackend`] passes: create an endpoint
//! with one version, add a second beside it at 0%, shift traffic, invoke each
//! version, roll back, add a shadow, retire it, tear down. `base` is a spec the
//! backend can serve (the example model); `sample` a request it answers with 200.
//! A backend without traffic mirroring (KServe) passes the shadow part with a
//! version beside the live one that takes no traffic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mlcd::identity::Recorded;
use mlcd::serve::{EndpointState, EndpointStatus, Invocation, ServingBackend, VersionSpec};

const BOUND: Duration = Duration::from_secs(180);

fn version(base: &VersionSpec, v: &str) -> VersionSpec {
    let mut s = base.clone();
    s.version = v.to_string();
    s
}

/// Polls until `done` holds (bounded).
pub async fn until(
    backend: &dyn ServingBackend,
    endpoint: &str,
    what: &str,
    done: impl Fn(&EndpointStatus) -> bool,
) -> EndpointStatus {
    let start = Instant::now();
    loop {
        let s = backend.status(endpoint).await.expect("status");
        if let Some(s) = s {
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < BOUND,
                "endpoint {endpoint} never became {what}: {s:?}"
            );
        } else {
            assert!(
                start.elapsed() < BOUND,
                "endpoint {endpoint} does not exist"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn serving(s: &EndpointStatus, versions: &[&str]) -> bool {
    s.state == EndpointState::InService
        && versions
            .iter()
            .all(|v| s.variants.iter().any(|x| x.version == *v && x.ready))
}

fn weights(s: &EndpointStatus) -> BTreeMap<String, u8> {
    s.variants
        .iter()
        .filter(|v| !v.shadow)
        .map(|v| (v.version.clone(), v.weight))
        .collect()
}

/// Runs the suite on a fresh endpoint name.
#[allow(dead_code)]
pub async fn run(backend: &dyn ServingBackend, base: &VersionSpec, sample: &Invocation) {
    run_with(backend, base, sample, true).await;
}

async fn run_with(
    backend: &dyn ServingBackend,
    base: &VersionSpec,
    sample: &Invocation,
    shadow: bool,
) {
    let ep = base.endpoint.clone();
    assert!(
        backend.status(&ep).await.expect("status").is_none(),
        "a fresh endpoint does not exist"
    );
    assert_eq!(
        backend.owner(&ep).await.expect("owner"),
        Recorded::Absent,
        "a fresh endpoint has no owner"
    );
    backend.preflight(base).await.expect("preflight");

    // A new endpoint: its first version takes all the traffic.
    backend
        .deploy(&version(base, "v1"), false)
        .await
        .expect("deploy v1");
    let s = until(backend, &ep, "serving v1", |s| serving(s, &["v1"])).await;
    match backend.owner(&ep).await.expect("owner") {
        Recorded::Run(i) => assert_eq!(
            i.source, base.identity.source,
            "the endpoint records the run that created it"
        ),
        other => panic!("the endpoint records no owner: {other:?}"),
    }
    assert_eq!(weights(&s), BTreeMap::from([("v1".to_string(), 100)]));
    let a = backend.invoke(&ep, "v1", sample).await.expect("invoke v1");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.latency > Duration::ZERO);

    // A second version beside it, at 0%, then half the traffic.
    backend
        .deploy(&version(base, "v2"), false)
        .await
        .expect("deploy v2");
    let s = until(backend, &ep, "serving v1 and v2", |s| {
        serving(s, &["v1", "v2"])
    })
    .await;
    assert_eq!(
        weights(&s),
        BTreeMap::from([("v1".to_string(), 100), ("v2".to_string(), 0)])
    );
    let a = backend.invoke(&ep, "v2", sample).await.expect("invoke v2");
    assert_eq!(a.status, 200);
    let half = BTreeMap::from([("v1".to_string(), 50), ("v2".to_string(), 50)]);
    backend.set_traffic(&ep, &half).await.expect("set traffic");
    let s = until(backend, &ep, "50/50", |s| {
        s.state == EndpointState::InService && weights(s) == half
    })
    .await;
    assert_eq!(weights(&s), half);

    // Roll back: v1 alone again.
    backend.rollback(&ep, "v1").await.expect("rollback");
    let s = until(backend, &ep, "v1 alone", |s| {
        s.state == EndpointState::InService && s.variants.len() == 1
    })
    .await;
    assert_eq!(weights(&s), BTreeMap::from([("v1".to_string(), 100)]));

    if shadow {
        // A shadow beside it takes no live traffic; retiring it leaves v1.
        backend
            .deploy(&version(base, "v3"), true)
            .await
            .expect("deploy shadow v3");
        let s = until(backend, &ep, "serving a shadow", |s| {
            serving(s, &["v1", "v3"])
        })
        .await;
        let shadow = s.variants.iter().find(|v| v.version == "v3").unwrap();
        assert!(shadow.shadow && shadow.weight == 0, "{s:?}");
        let a = backend
            .invoke(&ep, "v3", sample)
            .await
            .expect("invoke the shadow");
        assert_eq!(a.status, 200);
        backend.retire(&ep, "v3").await.expect("retire v3");
        let s = until(backend, &ep, "v1 alone", |s| {
            s.state == EndpointState::InService && s.variants.len() == 1
        })
        .await;
        assert_eq!(s.variants[0].version, "v1");
    }

    // An unknown version cannot be invoked or retired.
    assert!(backend.invoke(&ep, "v9", sample).await.is_err());

    backend.teardown(&ep).await.expect("teardown");
    let start = Instant::now();
    while backend.status(&ep).await.expect("status").is_some() {
        assert!(start.elapsed() < BOUND, "the endpoint was not torn down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
