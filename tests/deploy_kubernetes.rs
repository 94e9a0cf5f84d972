//! Serving on Kubernetes with KServe, as far as this release goes: `mlcd render
//! deploy` prints the InferenceService `backend: kubernetes` would apply, needing
//! no cluster — and the real `kubectl` agrees with the fake API server
//! (tests/fake_kube, which validates every object against the pinned KServe
//! v0.20.0 CRD): what render prints is accepted by a server-side apply and reads
//! back with its fields, and an invalid InferenceService is refused with 422 as
//! a cluster refuses it. Bad input fails through the binary, naming the key.
//!
//! Needs python3 with PyYAML and `kubernetes-validate` (scripts/testbed up pydeps)
//! and kubectl on PATH for the kubectl tests.

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;
use common::*;
use fake_kube::FakeKube;

fn kube_workspace() -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        "model: churn
backend: kubernetes
deploy:
  image: 127.0.0.1:15000/mlcd/churn:test
  endpoint: churn
  instance: gpu.t4.xl
  replicas: 2
  strategy: canary
  steps: [10, 50, 100]
  env: {LOG_LEVEL: info}
kubernetes:
  namespace: ml
  storage-uri: s3://acme-models/churn
",
    );
    ws
}

fn render(ws: &Workspace) -> Run {
    mlcd(
        ws.path(),
        &["render", "deploy", "--config", "mlcd.yml"],
        &[("GITHUB_SHA", SHA)],
    )
}

fn docs(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn kubectl_ok(fake: &FakeKube, args: &[&str]) -> String {
    let r = fake.kubectl(args);
    assert_eq!(r.code, 0, "kubectl {args:?}\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

#[test]
fn render_deploy_prints_one_inference_service_and_needs_no_cluster() {
    let ws = kube_workspace();
    // No kubeconfig anywhere: rendering contacts nothing.
    let r = render(&ws);
    r.assert_code(0);
    let d = docs(&r.stdout);
    assert_eq!(d.len(), 1, "{}", r.stdout);
    let isvc = &d[0];
    assert_eq!(isvc["apiVersion"], "serving.kserve.io/v1beta1");
    assert_eq!(isvc["kind"], "InferenceService");
    assert_eq!(isvc["metadata"]["name"], "churn");
    assert_eq!(isvc["metadata"]["namespace"], "ml");
    assert_eq!(isvc["metadata"]["annotations"]["mlcd.dev/commit"], SHA);
    let p = &isvc["spec"]["predictor"];
    assert_eq!(p["canaryTrafficPercent"], 10);
    assert_eq!(p["minReplicas"], 2);
    assert_eq!(p["storageUris"][0]["uri"], "s3://acme-models/churn");
    assert_eq!(
        p["containers"][0]["image"],
        "127.0.0.1:15000/mlcd/churn:test"
    );

    // All at once (and blue-green) leave the traffic to KServe: no canary.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("strategy: canary", "strategy: blue-green")
            .replace("  steps: [10, 50, 100]\n", ""),
    );
    let r = render(&ws);
    r.assert_code(0);
    let d = docs(&r.stdout);
    assert!(
        d[0]["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none(),
        "{}",
        r.stdout
    );

    // Another backend has no Kubernetes objects to print.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("backend: kubernetes", "backend: local"),
    );
    let r = render(&ws);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("backend: kubernetes"), "{all}");
}

#[test]
fn bad_kubernetes_deploy_input_names_the_key() {
    // A shadow has no KServe rendering yet.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("strategy: canary", "strategy: shadow")
            .replace("steps: [10, 50, 100]", "traffic: 20"),
    );
    let r = render(&ws);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`deploy.strategy`"), "{all}");
    assert!(all.contains("`shadow`"), "{all}");
    assert!(all.contains("backend: kubernetes"), "{all}");
    assert!(all.contains("mlcd.yml:8:"), "{all}");

    // The same through an input.
    let ws = kube_workspace();
    let r = mlcd(
        ws.path(),
        &[
            "render",
            "deploy",
            "--config",
            "mlcd.yml",
            "--strategy",
            "shadow",
        ],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("input `strategy`"), "{all}");

    // A storage URI KServe cannot read.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("s3://acme-models/churn", "file:///srv/models/churn"),
    );
    let r = render(&ws);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`kubernetes.storage-uri`"), "{all}");
    assert!(all.contains("`file://`"), "{all}");

    // An endpoint name KServe refuses.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("endpoint: churn", "endpoint: Churn_v2"),
    );
    let r = render(&ws);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`deploy.endpoint`"), "{all}");
    assert!(all.contains("InferenceService name"), "{all}");

    // Deploying (rather than rendering) needs a cluster: without credentials it
    // fails before anything is made, naming what to set.
    let ws = kube_workspace();
    let home = ws.path().display().to_string();
    let r = mlcd(
        ws.path(),
        &["deploy", "--config", "mlcd.yml"],
        &[("GITHUB_SHA", SHA), ("HOME", &home)],
    );
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("no Kubernetes cluster credentials"), "{all}");
    assert!(all.contains("KUBECONFIG"), "{all}");
}

#[test]
fn kubectl_applies_what_render_deploy_prints() {
    let fake = FakeKube::start();
    let ws = kube_workspace();
    let r = render(&ws);
    r.assert_code(0);
    let file = ws.write("isvc.yaml", &r.stdout).display().to_string();
    let out = kubectl_ok(
        &fake,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "mlcd",
            "-f",
            &file,
        ],
    );
    assert!(out.contains("serverside-applied"), "{out}");
    let got = kubectl_ok(
        &fake,
        &[
            "get",
            "inferenceservice",
            "churn",
            "-n",
            "ml",
            "-o",
            "yaml",
            "--show-managed-fields",
        ],
    );
    let got: serde_yaml::Value = serde_yaml::from_str(&got).unwrap();
    let p = &got["spec"]["predictor"];
    assert_eq!(p["canaryTrafficPercent"], 10);
    assert_eq!(p["containers"][0]["name"], "kserve-container");
    assert_eq!(p["containers"][0]["ports"][0]["containerPort"], 8080);
    assert_eq!(
        p["containers"][0]["readinessProbe"]["httpGet"]["path"],
        "/ping"
    );
    assert_eq!(
        p["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(p["storageUris"][0]["mountPath"], "/opt/ml/model");
    assert_eq!(got["metadata"]["annotations"]["mlcd.dev/commit"], SHA);
    assert_eq!(got["metadata"]["labels"]["mlcd.dev/endpoint"], "churn");
    let managers: Vec<&str> = got["metadata"]["managedFields"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(managers, ["mlcd"]);
    // By its short name, and listed by its lineage label.
    let names = kubectl_ok(
        &fake,
        &[
            "get",
            "isvc",
            "-n",
            "ml",
            "-l",
            "mlcd.dev/model=churn",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        names.trim(),
        "inferenceservice.serving.kserve.io/churn",
        "{names}"
    );
    // Re-applying the same object is accepted and changes nothing.
    kubectl_ok(
        &fake,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "mlcd",
            "-f",
            &file,
        ],
    );
    kubectl_ok(&fake, &["delete", "-f", &file]);
    fake.assert_no_violations();
}

#[test]
fn the_fake_refuses_an_invalid_inference_service_with_422() {
    let fake = FakeKube::start();
    let ws = kube_workspace();
    let r = render(&ws);
    r.assert_code(0);
    let mut d = docs(&r.stdout);
    d[0]["spec"]["predictor"]["canaryTrafficPercent"] = "ten".into();
    d[0]["spec"]["predictor"]["replicas"] = 2.into();
    let bad = ws.write("bad.yaml", &serde_yaml::to_string(&d[0]).unwrap());
    let r = fake.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager",
        "mlcd",
        "-f",
        &bad.display().to_string(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("is invalid"), "{}", r.stderr);
    assert!(
        r.stderr.contains("spec.predictor.canaryTrafficPercent"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("spec.predictor.replicas: field not declared in schema"),
        "{}",
        r.stderr
    );
    let v = fake.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["kind"], "InferenceService");
    // The answer was 422 Invalid, as a real API server's.
    let status = fake.apply_raw(
        "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/churn",
        &serde_yaml::to_string(&d[0]).unwrap(),
    );
    assert_eq!(status, 422);
    // Nothing was stored.
    let r = fake.kubectl(&["get", "isvc", "churn", "-n", "ml"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("NotFound") || r.stderr.contains("not found"));
}
