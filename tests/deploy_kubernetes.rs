//! Serving on Kubernetes with KServe through the binary: `mlcd render deploy`
//! prints the InferenceService `backend: kubernetes` applies, needing no cluster,
//! and the real `kubectl` agrees with the fake API server (tests/fake_kube, which
//! validates every object against the pinned KServe v0.20.0 CRD): what render
//! prints is accepted by a server-side apply and reads back with its fields; an
//! invalid InferenceService is refused with 422; kubectl waits for Ready and
//! patches a canary. `mlcd deploy` against the fake, whose KServe controller runs
//! each revision as a real container of the example model: a canary 10 → 50 →
//! 100 promoted, a re-run that changes nothing, a revision that never serves and
//! a version failing its smoke tests rolled back with the old one serving, an
//! endpoint of another repository left alone, the rollback command, and a canary
//! refused in Standard (RawDeployment) mode. Bad input fails, naming the key.
//!
//! Needs python3 with PyYAML and `kubernetes-validate` (scripts/testbed up pydeps),
//! kubectl on PATH for the kubectl tests, and the test bed's Docker engine and
//! base image for the serving ones.

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
    // A shadow cannot take a share of the traffic: KServe cannot mirror it.
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
    assert!(all.contains("`deploy.traffic`"), "{all}");
    assert!(all.contains("cannot mirror"), "{all}");
    assert!(all.contains("20%"), "{all}");
    assert!(all.contains("mlcd.yml:"), "{all}");

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
            "--traffic",
            "30",
        ],
        &[("GITHUB_SHA", SHA)],
    );
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("input `traffic`"), "{all}");

    // Without a share it renders: the candidate beside the live one at 0%.
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
    r.assert_code(0);
    assert!(r.stdout.contains("canaryTrafficPercent: 0"), "{}", r.stdout);

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

/// The example deployed through the binary on `backend: kubernetes`, against the
/// fake API server whose KServe controller runs each revision as a real
/// container of the example model on the test bed's Docker engine.
struct KubePipeline {
    ws: Workspace,
    fake: FakeKube,
    tb: std::collections::BTreeMap<String, String>,
    image: String,
    endpoint: String,
}

impl KubePipeline {
    fn new(extra_config: &str) -> KubePipeline {
        let tb = testbed_env(&["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"]);
        let image = fake_kube::kserve_image(&tb);
        let fake = FakeKube::with_docker(&tb);
        let ws = Workspace::with_example();
        let endpoint = format!("churn-{}", unique());
        let cfg = ws
            .read("example/mlcd.yml")
            .replace("backend: local", "backend: kubernetes")
            .replace("  endpoint: churn\n", &format!("  endpoint: {endpoint}\n"))
            .replace(
                "  interval: 30s\n",
                "  interval: 1s\n  ready-timeout: 60s\n",
            )
            // The fake's proxy is a Python server on a shared, busy machine:
            // latency is not what these tests are about.
            .replace("max-latency: 500ms", "max-latency: 10s")
            + "kubernetes:\n  namespace: ml\n"
            + extra_config;
        ws.write("example/mlcd.yml", &cfg);
        KubePipeline {
            ws,
            fake,
            tb,
            image,
            endpoint,
        }
    }

    /// `image` under another tag: another version id for mlcd.
    fn tagged(&self, tag: &str) -> String {
        let to = format!("mlcd-test/churn:{tag}");
        let out = std::process::Command::new("docker")
            .args(["tag", &self.image, &to])
            .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        to
    }

    fn deploy(
        &self,
        image: &str,
        extra: &[(&str, &str)],
    ) -> (Run, std::collections::BTreeMap<String, String>) {
        let _ = std::fs::remove_file(self.ws.path().join("out/output"));
        let _ = std::fs::remove_file(self.ws.path().join("out/summary"));
        let kubeconfig = self.fake.kubeconfig().display().to_string();
        let mut env = vec![
            ("INPUT_MODE", "deploy"),
            ("INPUT_CONFIG", "example/mlcd.yml"),
            ("INPUT_IMAGE", image),
            ("KUBECONFIG", kubeconfig.as_str()),
            ("MLCD_POLL_INTERVAL_MS", "200"),
        ];
        env.extend_from_slice(extra);
        let r = action(&self.ws, &env);
        let out = parse_outputs(&self.ws.read("out/output"));
        (r, out)
    }

    fn isvc(&self) -> serde_json::Value {
        self.fake.get(&format!(
            "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/{}",
            self.endpoint
        ))
    }

    /// The revisions the fake's KServe made for the endpoint.
    fn revisions(&self) -> Vec<serde_json::Value> {
        self.fake.get("/_fake/kserve")[format!("ml/{}", self.endpoint)]["revisions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Posts the sample to `url`: the status and the revision that answered.
    fn call(&self, url: &str) -> (u16, String) {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-H",
                "content-type: application/json",
                "--data-binary",
            ])
            .arg(format!(
                "@{}",
                self.ws.path().join("example/tests/sample.json").display()
            ))
            .arg(format!("{url}/invocations"))
            .output()
            .unwrap();
        let head = String::from_utf8_lossy(&out.stdout).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let rev = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-fake-kserve-revision:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default();
        (status, rev)
    }
}

#[test]
fn a_canary_is_promoted_and_broken_versions_are_rolled_back_through_the_binary() {
    let p = KubePipeline::new("");
    // v1: a new InferenceService, all the traffic once ready.
    let (r, out) = p.deploy(&p.image, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["endpoint"], p.endpoint);
    assert_eq!(out["traffic"], "100");
    let url = out["url"].clone();
    assert!(
        url.contains(&format!("/proxy/ml/{}", p.endpoint)),
        "{out:?}"
    );
    let (status, rev1) = p.call(&url);
    assert_eq!(status, 200);
    assert_eq!(rev1, format!("{}-predictor-00001", p.endpoint));
    assert!(
        r.stderr.contains("is ready: the first version of endpoint"),
        "{}",
        r.stderr
    );

    // The same version again: nothing to do, no second revision.
    let (r, _) = p.deploy(&p.image, &[]);
    r.assert_code(0);
    assert!(
        r.stderr
            .contains("already serves version i-kserve: nothing to do"),
        "{}",
        r.stderr
    );
    assert_eq!(p.revisions().len(), 1, "{:?}", p.revisions());

    // v2 as a canary 10 → 50 → 100: smoke-tested through its tag URL before any
    // traffic, then at each step; promoted by removing canaryTrafficPercent.
    let v2 = p.tagged("kserve-v2");
    let (r, out) = p.deploy(&v2, &[]);
    r.assert_code(0);
    assert_eq!(out["previous-version"], "i-kserve");
    assert_eq!(out["traffic"], "100");
    assert!(
        r.stderr.contains("i-kserve-v2 is ready beside i-kserve"),
        "{}",
        r.stderr
    );
    for step in ["10", "50", "100"] {
        assert!(
            r.stderr
                .contains(&format!("i-kserve-v2 takes {step}% of the traffic")),
            "{}",
            r.stderr
        );
    }
    let summary = p.ws.read("out/summary");
    for row in [
        "| before traffic | 0% | ✅ 1/1 |",
        "| 1 | 10% | ✅ 1/1 |",
        "| 2 | 50% | ✅ 1/1 |",
        "| 3 | 100% | ✅ 1/1 |",
    ] {
        assert!(summary.contains(row), "{summary}");
    }
    let isvc = p.isvc();
    assert!(
        isvc["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none(),
        "promoted: {isvc}"
    );
    let rev2 = format!("{}-predictor-00002", p.endpoint);
    let pred = &isvc["status"]["components"]["predictor"];
    assert_eq!(pred["latestRolledoutRevision"], rev2.as_str());
    assert_eq!(pred["traffic"][0]["percent"], 100);
    assert_eq!(p.call(&url), (200, rev2.clone()));

    // A version whose container never serves (busybox has no `serve`): KServe
    // reports the revision failed, mlcd says why, rolls back, v2 still serves.
    let busybox = p.tagged("kserve-broken");
    let out = std::process::Command::new("docker")
        .args(["tag", &p.tb["MLCD_TESTBED_BUSYBOX_IMAGE"], &busybox])
        .env("DOCKER_HOST", &p.tb["DOCKER_HOST"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (r, out) = p.deploy(&busybox, &[]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(r.stdout.contains("RevisionFailed"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("rolled back: i-kserve-v2 serves all the traffic again"),
        "{}",
        r.stdout
    );
    let (status, rev) = p.call(&url);
    assert_eq!(status, 200);
    let isvc = p.isvc();
    assert_eq!(
        isvc["spec"]["predictor"]["containers"][0]["image"],
        v2.as_str(),
        "the spec names v2's image again"
    );
    assert_eq!(
        rev,
        isvc["status"]["components"]["predictor"]["latestCreatedRevision"]
            .as_str()
            .unwrap()
    );

    // A version that fails its smoke tests through its tag URL, before any
    // traffic: rolled back, v2 still serving.
    let v3 = p.tagged("kserve-v3");
    let (r, _) = p.deploy(&v3, &[("INPUT_ENV-VARS", "MODEL_FAIL_SMOKE=true")]);
    r.assert_code(1);
    assert!(
        r.stdout
            .contains("smoke tests failed on i-kserve-v3 before it took traffic"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("rolled back: i-kserve-v2"),
        "{}",
        r.stdout
    );
    assert_eq!(p.call(&url).0, 200);
    assert_eq!(
        p.isvc()["metadata"]["labels"]["mlcd.dev/version"],
        "i-kserve-v2"
    );

    // Another repository's run never changes the endpoint.
    let (r, _) = p.deploy(&v3, &[("GITHUB_REPOSITORY", "other/churn")]);
    r.assert_code(1);
    assert!(
        r.stdout
            .contains(&format!("endpoint `{}` belongs to another run", p.endpoint)),
        "{}",
        r.stdout
    );
    assert_eq!(
        p.isvc()["metadata"]["labels"]["mlcd.dev/version"],
        "i-kserve-v2"
    );

    // The rollback command: the version before v2 serves again.
    let (r, out) = p.deploy(&p.image, &[("INPUT_ROLLBACK", "true")]);
    r.assert_code(0);
    assert_eq!(out["previous-version"], "i-kserve-v2");
    let isvc = p.isvc();
    assert_eq!(isvc["metadata"]["labels"]["mlcd.dev/version"], "i-kserve");
    assert!(
        isvc["spec"]["predictor"]
            .get("canaryTrafficPercent")
            .is_none(),
        "{isvc}"
    );
    let (status, rev) = p.call(&out["url"]);
    assert_eq!(status, 200);
    assert_eq!(
        rev,
        isvc["status"]["components"]["predictor"]["latestCreatedRevision"]
            .as_str()
            .unwrap()
    );
    p.fake.assert_no_violations();
}

#[test]
fn a_canary_in_standard_mode_is_refused() {
    // Configured: refused before anything is made, naming the key and its line.
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &(ws.read("mlcd.yml") + "  deployment-mode: standard\n"),
    );
    let r = render(&ws);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`kubernetes.deployment-mode`"), "{all}");
    assert!(all.contains("Standard (RawDeployment) mode"), "{all}");
    assert!(all.contains("mlcd.yml:14:"), "{all}");

    // Found on the cluster: an endpoint KServe runs in Standard mode refuses a
    // canary even when this run's config does not name the mode.
    let p = KubePipeline::new("  deployment-mode: standard\n");
    let (r, out) = p.deploy(&p.image, &[("INPUT_STRATEGY", "all-at-once")]);
    r.assert_code(0);
    assert_eq!(out["traffic"], "100");
    assert_eq!(p.call(&out["url"]).0, 200);
    let cfg =
        p.ws.read("example/mlcd.yml")
            .replace("  deployment-mode: standard\n", "");
    p.ws.write("example/mlcd.yml", &cfg);
    let v2 = p.tagged("kserve-raw-v2");
    let (r, _) = p.deploy(&v2, &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("Standard (RawDeployment) mode"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("`canary`"), "{}", r.stdout);
    assert_eq!(
        p.isvc()["spec"]["predictor"]["containers"][0]["image"],
        p.image.as_str(),
        "nothing changed"
    );
    p.fake.assert_no_violations();
}

#[test]
fn kubectl_waits_for_and_patches_a_served_inference_service() {
    let p = KubePipeline::new("");
    let ws = kube_workspace();
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("127.0.0.1:15000/mlcd/churn:test", &p.image)
            .replace("instance: gpu.t4.xl", "instance: cpu.small")
            .replace("replicas: 2", "replicas: 1")
            .replace("endpoint: churn", &format!("endpoint: {}", p.endpoint)),
    );
    let r = render(&ws);
    r.assert_code(0);
    let file = ws.write("isvc.yaml", &r.stdout).display().to_string();
    kubectl_ok(
        &p.fake,
        &[
            "apply",
            "--server-side",
            "--field-manager",
            "mlcd",
            "-f",
            &file,
        ],
    );
    let isvc = format!("isvc/{}", p.endpoint);
    let out = kubectl_ok(
        &p.fake,
        &[
            "wait",
            "--for=condition=Ready",
            &isvc,
            "-n",
            "ml",
            "--timeout=90s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let url = kubectl_ok(
        &p.fake,
        &["get", &isvc, "-n", "ml", "-o", "jsonpath={.status.url}"],
    );
    assert_eq!(p.call(&url).0, 200);
    // A canary of 0% by hand, as KServe's docs pin the previous model.
    kubectl_ok(
        &p.fake,
        &[
            "patch",
            &isvc,
            "-n",
            "ml",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"predictor":{"canaryTrafficPercent":0,"minReplicas":1,"maxReplicas":2}}}"#,
        ],
    );
    let rev2 = format!("{}-predictor-00002", p.endpoint);
    let out = kubectl_ok(
        &p.fake,
        &[
            "wait",
            &format!("--for=jsonpath={{.status.components.predictor.latestReadyRevision}}={rev2}"),
            &isvc,
            "-n",
            "ml",
            "--timeout=90s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    let split = kubectl_ok(
        &p.fake,
        &[
            "get",
            &isvc,
            "-n",
            "ml",
            "-o",
            "jsonpath={range .status.components.predictor.traffic[*]}{.tag}={.revisionName}:{.percent} {end}",
        ],
    );
    let rev1 = format!("{}-predictor-00001", p.endpoint);
    assert_eq!(split.trim(), format!("latest={rev2}:0 prev={rev1}:100"));
    // The new revision answers at its tag URL only; the service stays on the old.
    let tag_url = kubectl_ok(
        &p.fake,
        &[
            "get",
            &isvc,
            "-n",
            "ml",
            "-o",
            "jsonpath={.status.components.predictor.traffic[0].url}",
        ],
    );
    assert_eq!(p.call(&tag_url), (200, rev2));
    assert_eq!(p.call(&url), (200, rev1));
    kubectl_ok(&p.fake, &["delete", &isvc, "-n", "ml"]);
    p.fake.assert_no_violations();
}

#[test]
fn a_namespace_without_permission_fails_before_anything_is_made() {
    let fake = FakeKube::start();
    fake.call("POST", "/_fake/deny", Some(r#"{"namespace": "ml"}"#));
    let ws = kube_workspace();
    let kubeconfig = fake.kubeconfig().display().to_string();
    let r = mlcd(
        ws.path(),
        &["deploy", "--config", "mlcd.yml"],
        &[("GITHUB_SHA", SHA), ("KUBECONFIG", &kubeconfig)],
    );
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("403 Forbidden"), "{all}");
    assert!(all.contains("InferenceService ml/churn"), "{all}");
    assert!(all.contains("grant it a Role"), "{all}");
    assert!(!all.contains("kube-secret-token-0001"), "{all}");
    let writes: Vec<serde_json::Value> = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(writes.is_empty(), "nothing was written: {writes:#?}");
}

#[test]
fn a_shadow_runs_beside_the_live_revision_and_is_compared_on_the_samples() {
    let p = KubePipeline::new("");
    let (r, _) = p.deploy(&p.image, &[]);
    r.assert_code(0);
    let rev1 = format!("{}-predictor-00001", p.endpoint);

    // v2 as a shadow: a revision of its own at 0%, compared with v1 on the
    // replayed samples; v1 keeps all the traffic.
    let v2 = p.tagged("kserve-shadow");
    let (r, out) = p.deploy(&v2, &[("INPUT_STRATEGY", "shadow")]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert!(
        r.stderr
            .contains("shadow i-kserve-shadow: 5/5 answers agree with i-kserve"),
        "{}",
        r.stderr
    );
    let summary = p.ws.read("out/summary");
    assert!(
        summary.contains("### Shadow `i-kserve-shadow` beside `i-kserve`"),
        "{summary}"
    );
    assert!(summary.contains("cannot mirror traffic"), "{summary}");
    let isvc = p.isvc();
    assert_eq!(
        isvc["spec"]["predictor"]["canaryTrafficPercent"], 0,
        "{isvc}"
    );
    let pred = &isvc["status"]["components"]["predictor"];
    assert_eq!(pred["latestRolledoutRevision"], rev1.as_str());
    assert_eq!(
        pred["latestCreatedRevision"],
        format!("{}-predictor-00002", p.endpoint)
    );
    // Live traffic still goes to v1 only.
    assert_eq!(p.call(&out["url"]), (200, rev1.clone()));
    // The revision record marks it a shadow.
    let record = p.fake.get(&format!(
        "/api/v1/namespaces/ml/configmaps/{}-mlcd-revisions",
        p.endpoint
    ));
    let shadows: Vec<String> = record["data"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| serde_json::from_str::<serde_json::Value>(v.as_str()?).ok())
        .filter(|i| i["shadow"] == true)
        .map(|i| i["version"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(shadows, ["i-kserve-shadow"], "{record}");
    p.fake.assert_no_violations();
}
