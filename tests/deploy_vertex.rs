//! `mlcd` through the binary on Vertex AI, end to end against the fake Vertex AI
//! (every request validated against the pinned discovery document; each deployed
//! model served by a real container of the example model on the test bed's Docker
//! engine): train → register → deploy (the first version creates the endpoint),
//! train again → canary deploy promoted, a re-run changes nothing, a candidate
//! failing its smoke test rolled back with the old version serving — and the real
//! gcloud reading the endpoint mlcd made.
//!
//! Needs `scripts/testbed up docker base-image pydeps` and google-cloud-cli.

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use std::collections::BTreeMap;

use common::*;
use fake_kube::kserve_image;

/// The example's config on Vertex AI; `{image}` is the example's image with its
/// trained model inside (the fake runs no training container; the serving one is
/// real), `{smoke}` the smoke test's expected status.
fn config(image: &str, smoke: u16) -> String {
    format!(
        "model: churn
backend: vertex
train:
  image: {image}
  instance: cpu.small
  hyperparameters: {{epochs: 50, lr: 0.1}}
  channels:
    train: gs://mlcd-test-data/churn/train/
  timeout: 10m
deploy:
  endpoint: churn
  instance: cpu.small
  strategy: canary
  steps: [10, 100]
  interval: 1s
  ready-timeout: 2m
  smoke:
    - request: tests/sample.json
      expect-status: {smoke}
registry:
  type: vertex
vertex:
  project: mlcd-test
  region: us-central1
  staging-bucket: gs://mlcd-test-staging
"
    )
}

fn run(
    ws: &Workspace,
    fake: &FakeVertex,
    mode: &str,
    run_id: &str,
) -> (Run, BTreeMap<String, String>) {
    let _ = std::fs::remove_file(ws.path().join("out/output"));
    let mut env = actions_env(ws);
    env.retain(|(k, _)| k != "GITHUB_RUN_ID");
    env.extend(fake.token_env());
    for (k, v) in [
        ("GITHUB_RUN_ID", run_id),
        ("INPUT_MODE", mode),
        ("MLCD_POLL_INTERVAL_MS", "100"),
        ("MLCD_RETRY_INITIAL_MS", "50"),
    ] {
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = mlcd(ws.path(), &[], &env);
    let out = parse_outputs(&ws.read("out/output"));
    (r, out)
}

/// The live endpoint's deployed models as (display name, percent).
fn live(fake: &FakeVertex) -> Vec<(String, u64)> {
    let state = fake.call("GET", "/_fake/state", None);
    let ep = &state["endpoints"]["churn"];
    ep["deployedModels"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            let id = d["id"].as_str().unwrap();
            (
                d["displayName"].as_str().unwrap().to_string(),
                ep["trafficSplit"][id].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn train_register_and_canary_deploy_on_vertex_then_a_failing_candidate_is_rolled_back() {
    let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
    let image = kserve_image(&tb);
    let fake = FakeVertex::with_docker(&tb["DOCKER_HOST"]);
    let ws = Workspace::new();
    ws.write("mlcd.yml", &config(&image, 200));
    ws.write(
        "tests/sample.json",
        &std::fs::read_to_string(root().join("fixtures/example/tests/sample.json")).unwrap(),
    );

    // The first version: trained, registered, deployed (the endpoint is created).
    let (r, out) = run(&ws, &fake, "train", "101");
    r.assert_code(0);
    assert_eq!(out["model-version"], "1", "{out:?}");
    let (r, out) = run(&ws, &fake, "deploy", "102");
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert_eq!(out["traffic"], "100", "{out:?}");
    assert_eq!(live(&fake), vec![("v1".to_string(), 100)]);

    // A second version: a canary, verified alone on the candidate endpoint
    // before traffic, 10% then 100%, v1 undeployed after promotion.
    let (r, out) = run(&ws, &fake, "train", "103");
    r.assert_code(0);
    assert_eq!(out["model-version"], "2", "{out:?}");
    let before = fake.requests().len();
    let (r, out) = run(&ws, &fake, "deploy", "104");
    r.assert_code(0);
    assert_eq!(out["previous-version"], "v1", "{out:?}");
    assert_eq!(live(&fake), vec![("v2".to_string(), 100)]);
    let calls: Vec<serde_json::Value> = fake.requests()[before..].to_vec();
    let patched: Vec<String> = calls
        .iter()
        .filter(|c| {
            c["method"]
                .as_str()
                .unwrap_or("")
                .ends_with("endpoints.patch")
        })
        .filter(|c| c["query"]["updateMask"] == "traffic_split")
        .map(|c| c["body"]["trafficSplit"].to_string())
        .collect();
    assert_eq!(patched.len(), 2, "the 10% and 100% steps: {patched:?}");
    let smoke: Vec<&str> = calls
        .iter()
        .filter(|c| c["method"].as_str().unwrap_or("").ends_with("rawPredict"))
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        smoke
            .first()
            .is_some_and(|p| p.ends_with("/endpoints/churn-candidate:rawPredict")),
        "the first smoke test calls the candidate alone: {smoke:?}"
    );
    let summary = ws.read("out/summary");
    assert!(
        summary.contains("| before traffic | 0% | ✅ 1/1"),
        "{summary}"
    );
    let state = fake.call("GET", "/_fake/state", None);
    assert!(
        state["endpoints"]["churn-candidate"]["deployedModels"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "the candidate endpoint is emptied after promotion: {state:#}"
    );

    // A re-run changes nothing.
    let before = fake.requests().len();
    let (r, out) = run(&ws, &fake, "deploy", "104");
    r.assert_code(0);
    assert_eq!(out["traffic"], "100", "{out:?}");
    assert!(
        r.stderr.contains("already serves version v2"),
        "{}",
        r.stderr
    );
    let changes: Vec<serde_json::Value> = fake.requests()[before..]
        .iter()
        .filter(|c| c["http"] != "GET")
        .cloned()
        .collect();
    assert!(
        changes.is_empty(),
        "a re-run changed something: {changes:#?}"
    );

    // A third version whose smoke test fails before traffic: rolled back, v2 serves.
    let (r, _) = run(&ws, &fake, "train", "105");
    r.assert_code(0);
    ws.write("mlcd.yml", &config(&image, 201));
    let (r, out) = run(&ws, &fake, "deploy", "106");
    assert_ne!(r.code, 0, "{}", r.stderr);
    assert_eq!(out["status"], "failed", "{out:?}");
    assert!(
        r.stdout
            .contains("smoke tests failed on v3 before it took traffic"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr
            .contains("rolled back: v2 serves all the traffic again"),
        "{}",
        r.stderr
    );
    assert_eq!(live(&fake), vec![("v2".to_string(), 100)]);
    let answer = std::process::Command::new("curl")
        .args(["-sf", "-X", "POST"])
        .arg(format!(
            "{}/v1/projects/mlcd-test/locations/us-central1/endpoints/churn:rawPredict",
            fake.url
        ))
        .args([
            "-H",
            "authorization: Bearer ya29.client",
            "-H",
            "content-type: application/json",
        ])
        .arg("--data-binary")
        .arg(format!(
            "@{}",
            root().join("fixtures/example/tests/sample.json").display()
        ))
        .output()
        .unwrap();
    assert!(answer.status.success(), "v2 still answers");
    assert!(String::from_utf8_lossy(&answer.stdout).contains("churn_probability"));

    // gcloud reads the endpoint mlcd made as mlcd sees it.
    let dir = tempfile::tempdir().unwrap();
    let (ok, text, err) = fake.gcloud(
        dir.path(),
        &[
            "ai",
            "endpoints",
            "describe",
            "churn",
            "--region=us-central1",
            "--format=json",
        ],
    );
    assert!(ok, "{err}");
    let ep: serde_json::Value = serde_json::from_str(&text).unwrap();
    let id = ep["deployedModels"][0]["id"].as_str().unwrap();
    assert_eq!(ep["deployedModels"][0]["displayName"], "v2");
    assert_eq!(ep["trafficSplit"][id], 100);
    assert_eq!(ep["labels"][format!("mlcd-dm-{id}")], "v2");
    fake.assert_no_violations();
}

#[test]
fn bad_vertex_deploy_setups_are_refused_before_any_request() {
    let fake = FakeVertex::start();
    let ws = Workspace::new();
    let base = config("mlcd-test/churn:kserve", 200);
    ws.write("tests/sample.json", "{}");
    // An endpoint name Vertex cannot take as an id.
    ws.write(
        "mlcd.yml",
        &base.replace("endpoint: churn", "endpoint: Churn_Prod"),
    );
    let (r, _) = run(&ws, &fake, "deploy", "201");
    assert_ne!(r.code, 0);
    assert!(
        r.stdout.contains("file=mlcd.yml,line=11")
            && r.stdout
                .contains("`Churn_Prod` cannot name a Vertex AI endpoint"),
        "{}",
        r.stdout
    );
    // Traffic capture, which mlcd cannot read on Vertex.
    ws.write(
        "mlcd.yml",
        &base.replace(
            "  ready-timeout: 2m\n",
            "  ready-timeout: 2m\n  capture: {sample: 100%}\n",
        ),
    );
    let (r, _) = run(&ws, &fake, "deploy", "202");
    assert_ne!(r.code, 0);
    assert!(
        r.stdout
            .contains("does not capture traffic on `backend: vertex`"),
        "{}",
        r.stdout
    );
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
}
