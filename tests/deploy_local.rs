//! `mlcd deploy` on the local backend, the binary end to end against the real
//! Docker engine of the test bed and the fake GitHub (every request validated
//! against GitHub's OpenAPI description): the example model is trained (its
//! version registered for the commit), deployed, then a second version goes out
//! as a canary step by step; a version whose smoke tests fail is rolled back
//! with the previous one still serving; a version that never becomes ready is
//! rolled back within the bound; a shadow is reported; `rollback` restores the
//! previous version; a canary answering 5xx to a share of live traffic (its
//! smoke test passing) is rolled back by `rollback.max-error-rate`, a slow one
//! by `rollback.max-p95-latency`, a healthy
//! one is promoted with its live numbers in the summary, and the endpoint's
//! captured traffic is read back as SageMaker capture records.
//!
//! Needs `scripts/testbed up docker base-image` (scripts/test does it).

mod common;
use common::*;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

/// The example image's tag: named by a digest of fixtures/example, so that
/// test runs of different checkouts sharing one engine never swap each
/// other's example under the same tag.
fn image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        use sha2::{Digest, Sha256};
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(&root().join("fixtures/example"), &mut files);
        files.retain(|f| !f.to_string_lossy().contains("__pycache__"));
        files.sort();
        let mut h = Sha256::new();
        for f in files {
            h.update(f.to_string_lossy().as_bytes());
            h.update(std::fs::read(&f).unwrap());
        }
        let hex: String = h
            .finalize()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("mlcd-test/churn:train-{hex}")
    })
}

fn example_image(tb: &BTreeMap<String, String>) {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new("docker")
            .args(["build", "-q", "-t", image(), "--build-arg"])
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
}

/// A copy of the example, trained and deployed through the binary as a
/// container action would run it.
struct Pipeline {
    ws: Workspace,
    tb: BTreeMap<String, String>,
    gh: FakeGitHub,
    endpoint: String,
}

impl Pipeline {
    fn new() -> Pipeline {
        let tb = testbed_env(&[
            "DOCKER_HOST",
            "MLCD_TESTBED_BASE_IMAGE",
            "MLCD_TESTBED_BUSYBOX_IMAGE",
        ]);
        example_image(&tb);
        let ws = Workspace::with_example();
        let endpoint = format!("churn-{}", unique());
        let cfg = ws
            .read("example/mlcd.yml")
            .replace("  endpoint: churn\n", &format!("  endpoint: {endpoint}\n"))
            .replace(
                "  interval: 30s\n",
                "  interval: 1s\n  ready-timeout: 60s\n",
            );
        ws.write("example/mlcd.yml", &cfg);
        Pipeline {
            ws,
            tb,
            gh: FakeGitHub::start(),
            endpoint,
        }
    }

    fn run(&self, mode: &str, extra: &[(&str, &str)]) -> (Run, BTreeMap<String, String>) {
        let _ = std::fs::remove_file(self.ws.path().join("out/output"));
        let _ = std::fs::remove_file(self.ws.path().join("out/summary"));
        let mut env = actions_env(&self.ws);
        env.retain(|(k, _)| k != "GITHUB_RUN_ID");
        for (k, v) in [
            ("GITHUB_RUN_ID", unique().to_string()),
            ("GITHUB_API_URL", self.gh.url.clone()),
            ("INPUT_GITHUB-TOKEN", "ghs_faketoken0123456789".into()),
            ("DOCKER_HOST", self.tb["DOCKER_HOST"].clone()),
            ("MLCD_POLL_INTERVAL_MS", "200".into()),
            ("INPUT_MODE", mode.into()),
            ("INPUT_CONFIG", "example/mlcd.yml".into()),
            ("INPUT_IMAGE", image().into()),
        ] {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v));
        }
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = mlcd(self.ws.path(), &[], &env);
        let out = parse_outputs(&self.ws.read("out/output"));
        (r, out)
    }

    /// Serving containers of this endpoint (version containers and the router).
    fn containers(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["ps", "--format", "{{.Names}}", "--filter"])
            .arg(format!("name={}", self.endpoint))
            .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Which version answers through the endpoint URL.
    fn served_by(&self, url: &str) -> String {
        let out = Command::new("curl")
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
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-mlcd-version:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_default()
    }

    fn deployments(&self) -> Vec<serde_json::Value> {
        self.gh.state()["deployments"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn teardown(&self) {
        let names = self.containers();
        if !names.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f"])
                .args(&names)
                .env("DOCKER_HOST", &self.tb["DOCKER_HOST"])
                .output();
        }
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[test]
fn train_deploy_canary_with_rollbacks_and_the_rollback_command() {
    let p = Pipeline::new();
    // v1: trained for this commit, registered, then deployed to a new endpoint.
    let (r, out) = p.run("train", &[]);
    r.assert_code(0);
    assert_eq!(out["model-version"], "1");
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    assert_eq!(out["endpoint"], p.endpoint);
    assert_eq!(out["traffic"], "100");
    let url = out["url"].clone();
    assert!(url.starts_with("http://127.0.0.1:"), "{out:?}");
    assert_eq!(p.served_by(&url), "v1");
    assert!(
        r.stderr.contains(&format!(
            "v1 is ready: the first version of endpoint `{}` (no live version to shift traffic from)",
            p.endpoint
        )),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("beside nothing"), "{}", r.stderr);
    let deps = p.deployments();
    assert_eq!(deps.len(), 1, "{deps:?}");
    let create =
        p.gh.requests()
            .into_iter()
            .find(|r| r["operation_id"] == "repos/create-deployment")
            .expect("a deployment was created");
    assert_eq!(create["body"]["required_contexts"], serde_json::json!([]));
    assert_eq!(create["body"]["auto_merge"], false);
    assert_eq!(create["body"]["ref"], SHA);
    let states: Vec<&str> = deps[0]["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["in_progress", "success"]);
    assert_eq!(out["deployment-id"], deps[0]["id"].to_string());

    // v2: trained again (another run), rolled out as a canary 10 → 50 → 100.
    let (r, out) = p.run("train", &[("INPUT_PARAM-LIST", "sleep=0")]);
    r.assert_code(0);
    assert_eq!(out["model-version"], "2");
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    assert_eq!(out["previous-version"], "v1");
    assert!(r.stderr.contains("v2 is ready beside v1"), "{}", r.stderr);
    assert_eq!(out["traffic"], "100");
    assert_eq!(p.served_by(&out["url"]), "v2");
    let summary = p.ws.read("out/summary");
    for step in ["| 1 | 10% |", "| 2 | 50% |", "| 3 | 100% |"] {
        assert!(summary.contains(step), "{summary}");
    }
    assert!(
        r.stderr.contains("v2 takes 10% of the traffic"),
        "{}",
        r.stderr
    );
    assert!(
        !p.containers().iter().any(|c| c.ends_with("-v1")),
        "v1 was retired: {:?}",
        p.containers()
    );

    // v3 fails its smoke tests: rolled back, v2 still serving, deployment failure, exit 1.
    let (r, _) = p.run("train", &[("INPUT_PARAM-LIST", "sleep=0")]);
    r.assert_code(0);
    let (r, out) = p.run("deploy", &[("INPUT_ENV-VARS", "MODEL_FAIL_SMOKE=true")]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(
        r.stdout.contains("smoke tests failed on v3"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("rolled back: v2 serves all the traffic again"),
        "{}",
        r.stdout
    );
    assert_eq!(p.served_by(&url), "v2");
    let last = p.deployments().pop().unwrap();
    assert_eq!(
        last["statuses"].as_array().unwrap().last().unwrap()["state"],
        "failure"
    );

    // v3 as an image that never serves: bounded wait, rolled back.
    let busybox = p.tb["MLCD_TESTBED_BUSYBOX_IMAGE"].clone();
    let (r, _) = p.run(
        "deploy",
        &[
            ("INPUT_IMAGE", busybox.as_str()),
            ("INPUT_PARAM-LIST", "ready-timeout=15s"),
        ],
    );
    r.assert_code(1);
    assert!(r.stdout.contains("rolled back: v2"), "{}", r.stdout);
    assert_eq!(p.served_by(&url), "v2");

    // The rollback command: v1 (the version before v2) serves again.
    let (r, out) = p.run("deploy", &[("INPUT_ROLLBACK", "true")]);
    r.assert_code(0);
    assert_eq!(out["previous-version"], "v2");
    assert_eq!(p.served_by(&out["url"]), "v1");
    assert_eq!(p.gh.violations(), Vec::<serde_json::Value>::new());
}

#[test]
fn a_shadow_runs_beside_the_live_version_and_is_reported() {
    let p = Pipeline::new();
    p.run("train", &[]).0.assert_code(0);
    p.run("deploy", &[]).0.assert_code(0);
    // Shadowing with no live version is refused; here v1 is live.
    p.run("train", &[("INPUT_PARAM-LIST", "sleep=0")])
        .0
        .assert_code(0);
    let (r, out) = p.run("deploy", &[("INPUT_STRATEGY", "shadow")]);
    r.assert_code(0);
    assert_eq!(out["traffic"], "0");
    assert_eq!(p.served_by(&out["url"]), "v1", "the shadow answers nobody");
    let summary = p.ws.read("out/summary");
    assert!(summary.contains("### Shadow `v2` beside `v1`"), "{summary}");
    assert!(summary.contains("p95 latency"), "{summary}");
    assert!(summary.contains("Output agreement:"), "{summary}");
    assert!(
        p.containers().iter().any(|c| c.ends_with("-v2")),
        "{:?}",
        p.containers()
    );
}

#[test]
fn shadow_without_a_live_version_is_skipped_and_rollback_of_an_unknown_endpoint_refused() {
    let p = Pipeline::new();
    p.run("train", &[]).0.assert_code(0);
    // A pipeline's first merge: shadow has nothing to compare with, says so, starts nothing.
    let (r, out) = p.run("deploy", &[("INPUT_STRATEGY", "shadow")]);
    r.assert_code(0);
    assert!(
        r.stdout
            .contains("serves nothing yet, so there is nothing to shadow"),
        "{}",
        r.stdout
    );
    assert_eq!(out["traffic"], "0");
    let (r, _) = p.run("deploy", &[("INPUT_ROLLBACK", "true")]);
    r.assert_code(2);
    assert!(
        r.stdout
            .contains(&format!("no endpoint named `{}`", p.endpoint)),
        "{}",
        r.stdout
    );
    assert!(
        p.containers().is_empty(),
        "nothing was started: {:?}",
        p.containers()
    );
}

#[test]
fn an_endpoint_of_another_repository_is_never_changed() {
    let p = Pipeline::new();
    let (r, _) = p.run("train", &[]);
    r.assert_code(0);
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    let url = out["url"].clone();
    let serving = p.served_by(&url);
    assert!(!serving.is_empty(), "the endpoint answers");
    let before = p.containers();

    // Another repository with an endpoint of the same name on the same engine.
    let theirs = [("GITHUB_REPOSITORY", "other/churn")];
    let (r, out) = p.run("deploy", &theirs);
    r.assert_code(1);
    assert!(
        r.stdout
            .contains(&format!("endpoint `{}` belongs to another run", p.endpoint)),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("source `github.com/acme/churn` (this run: `github.com/other/churn`)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("deploy.endpoint"),
        "the fix is named: {}",
        r.stdout
    );
    assert_eq!(out.get("previous-version"), None, "nothing of it reported");
    // Its rollback input is refused the same way.
    let (r, _) = p.run("deploy", &[theirs[0], ("INPUT_ROLLBACK", "true")]);
    r.assert_code(1);
    assert!(r.stdout.contains("belongs to another run"), "{}", r.stdout);
    // Nothing changed: the same containers, the same version answering.
    let mut after = p.containers();
    let mut b = before.clone();
    after.sort();
    b.sort();
    assert_eq!(after, b);
    assert_eq!(p.served_by(&url), serving);
}

/// Inference requests sent to an endpoint from a thread until stopped.
struct Traffic {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<(u64, u64)>>,
}

/// One `POST /invocations` over a plain socket: the status, or 0 when the
/// connection failed.
fn invoke(url: &str, body: &str) -> u16 {
    invoke_with(url, body, "")
}

/// [`invoke`] with extra header lines (each ending in `\r\n`).
fn invoke_with(url: &str, body: &str, headers: &str) -> u16 {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let req = format!(
        "POST /invocations HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(req.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

impl Traffic {
    fn start(url: &str, body: String) -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let url = url.to_string();
        let handle = std::thread::spawn(move || {
            let (mut sent, mut errors) = (0, 0);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                sent += 1;
                if invoke(&url, &body) >= 500 {
                    errors += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
            (sent, errors)
        });
        Traffic {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops sending; returns (requests sent, 5xx answers).
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies the endpoint's capture files into `dest`; returns every record there.
fn pull_capture(p: &Pipeline, dest: &std::path::Path) -> Vec<serde_json::Value> {
    std::env::set_var("DOCKER_HOST", &p.tb["DOCKER_HOST"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let engine = mlcd::image::engine::Engine::connect().await.unwrap();
        mlcd::serve::local::LocalServing::new(&engine)
            .pull_capture(&p.endpoint, dest)
            .await
            .unwrap();
    });
    let mut out = Vec::new();
    for e in std::fs::read_dir(dest).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                out.push(serde_json::from_str(line).unwrap());
            }
        }
    }
    out
}

#[test]
fn live_traffic_guards_roll_back_a_failing_canary_and_capture_records_the_traffic() {
    let p = Pipeline::new();
    let cfg = p
        .ws
        .read("example/mlcd.yml")
        .replace("  steps: [10, 50, 100]\n", "  steps: [50, 100]\n")
        .replace(
            "  interval: 1s\n",
            "  interval: 4s\n  rollback: {max-error-rate: 0.1, max-p95-latency: 250ms}\n  capture: {sample: 100%, rotate-size: 4KB}\n",
        );
    p.ws.write("example/mlcd.yml", &cfg);
    p.run("train", &[]).0.assert_code(0);
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    let url = out["url"].clone();
    let sample = p.ws.read("example/tests/sample.json");

    // v2 passes its smoke test but fails half of its live requests: during the
    // 50% step the error-rate guard sees it and rolls back.
    p.run("train", &[("INPUT_PARAM-LIST", "sleep=0")])
        .0
        .assert_code(0);
    let traffic = Traffic::start(&url, sample.clone());
    let (r, out) = p.run("deploy", &[("INPUT_ENV-VARS", "MODEL_FAIL_RATE=0.5")]);
    let (sent, errors) = traffic.stop();
    if r.code != 1 {
        eprintln!(
            "{sent} requests sent, {errors} 5xx; the summary:\n{}",
            p.ws.read("out/summary")
        );
    }
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(sent > 50 && errors > 0, "{sent} sent, {errors} 5xx");
    assert!(
        r.stdout.contains("v2 on live traffic: its error rate"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("is above `rollback.max-error-rate: 0.1`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("rolled back: v1 serves all the traffic again"),
        "{}",
        r.stdout
    );
    let summary = p.ws.read("out/summary");
    assert!(
        summary.contains("| before traffic | 0% | ✅ 1/1 |"),
        "{summary}"
    );
    assert!(summary.contains("| 1 | 50% | not run |"), "{summary}");
    eprintln!("the rolled-back rollout's summary:\n{summary}");
    assert!(summary.contains("❌ `v2`: "), "{summary}");
    assert!(summary.contains("% 5xx"), "{summary}");
    assert_eq!(p.served_by(&url), "v1");

    // v2 answering in 400 ms passes its smoke test (max-latency 500ms) but
    // breaks `max-p95-latency: 250ms` on live traffic.
    let traffic = Traffic::start(&url, sample.clone());
    let (r, _) = p.run("deploy", &[("INPUT_ENV-VARS", "MODEL_DELAY_MS=400")]);
    traffic.stop();
    r.assert_code(1);
    assert!(
        r.stdout.contains("v2 on live traffic: its p95 latency"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("is above `rollback.max-p95-latency: 250ms`"),
        "{}",
        r.stdout
    );
    assert_eq!(p.served_by(&url), "v1");

    // The same version without failures is promoted; the step's numbers show.
    let traffic = Traffic::start(&url, sample.clone());
    let (r, out) = p.run("deploy", &[]);
    let (sent, errors) = traffic.stop();
    r.assert_code(0);
    assert_eq!(out["traffic"], "100");
    assert!(sent > 50, "{sent}");
    assert_eq!(errors, 0);
    let summary = p.ws.read("out/summary");
    let step = summary
        .lines()
        .find(|l| l.starts_with("| 1 | 50% | ✅ 1/1 |"))
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(
        step.contains("`v2`: ") && step.contains("0.0% 5xx (0), p95 "),
        "{step}"
    );
    assert!(step.contains("`v1`: "), "{step}");
    eprintln!("the promoted rollout's step: {step}");
    assert_eq!(p.served_by(&url), "v2");

    // Capture: every request through the endpoint is a record, read back out
    // of the router as SageMaker capture records.
    let dest = p.ws.path().join("captured");
    let before = pull_capture(&p, &dest).len();
    assert!(before > 0, "the traffic above was captured");
    for i in 0..25 {
        let body = format!("{{\"instances\":[{{\"tenure_months\":{i},\"monthly_charges\":70.5,\"support_calls\":1,\"contract_monthly\":1}}]}}");
        invoke(&url, &body);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut records = pull_capture(&p, &dest);
    while records.len() < before + 25 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        records = pull_capture(&p, &dest);
    }
    assert_eq!(records.len(), before + 25);
    let ours: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| {
            r["captureData"]["endpointInput"]["data"]
                .as_str()
                .is_some_and(|d| d.contains("\"tenure_months\":7,"))
        })
        .collect();
    assert_eq!(ours.len(), 1, "{records:?}");
    let r = ours[0];
    assert_eq!(r["captureData"]["endpointInput"]["encoding"], "JSON");
    assert_eq!(r["captureData"]["endpointOutput"]["mode"], "OUTPUT");
    assert!(r["captureData"]["endpointOutput"]["data"]
        .as_str()
        .unwrap()
        .contains("predictions"));
    assert_eq!(r["eventVersion"], "0");
    let files = std::fs::read_dir(&dest).unwrap().count();
    assert!(files > 1, "rotated at 4KB: {files} files");
}

/// The loop on the embedded default: deploy with capture on, traffic whose
/// distribution has shifted from the training data, `mlcd monitor` copies the
/// capture out of the router itself, finds the drift and dispatches the
/// retraining (validated by the fake GitHub), which `mlcd train` then reads.
#[test]
fn deploy_capture_monitor_dispatch_closes_the_loop() {
    let p = Pipeline::new();
    let cfg =
        p.ws.read("example/mlcd.yml")
            .replace("  interval: 1s\n", "  interval: 1s\n  capture: {}\n")
            + "\nmonitor:\n  exclude: [churn]\n  on-drift: dispatch\n";
    p.ws.write("example/mlcd.yml", &cfg);
    p.run("train", &[]).0.assert_code(0);
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    let url = out["url"].clone();

    // Traffic unlike the training data: long tenure, high charges.
    let train = p.ws.read("example/data/train/churn.csv");
    for line in train.lines().skip(1).take(120) {
        let c: Vec<f64> = line.split(',').map(|v| v.parse().unwrap()).collect();
        let body = format!(
            "{{\"instances\":[{{\"tenure_months\":{},\"monthly_charges\":{},\"support_calls\":{},\"contract_monthly\":{}}}]}}",
            c[0] + 40.0,
            c[1] * 1.5,
            c[2],
            c[3]
        );
        assert_eq!(invoke(&url, &body), 200);
    }
    // The router writes capture records every 100 ms.
    std::thread::sleep(std::time::Duration::from_millis(600));

    let (r, out) = p.run("monitor", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "drifted", "{}", r.stdout);
    // The monitor copied the capture out of the router itself (nothing else
    // did: the endpoint still runs).
    let dir = p.ws.path().join(".mlcd/capture").join(&p.endpoint);
    let files = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}{}", dir.display(), r.stdout, r.stderr))
        .filter(|f| {
            f.as_ref()
                .is_ok_and(|f| f.path().extension().is_some_and(|x| x == "jsonl"))
        })
        .count();
    assert!(files > 0, "{}", dir.display());
    let drifted: Vec<String> = serde_json::from_str(&out["drifted-columns"]).unwrap();
    assert!(
        drifted.contains(&"tenure_months".to_string())
            && drifted.contains(&"monthly_charges".to_string()),
        "{drifted:?}"
    );
    assert_eq!(p.gh.violations(), Vec::<serde_json::Value>::new());
    let state = p.gh.state();
    let d = &state["dispatches"][0];
    assert_eq!(d["event_type"], "retrain");
    assert_eq!(d["client_payload"]["model-id"], "churn");

    // The retraining run: GitHub delivers the dispatch as a repository_dispatch
    // event (its own example payload, with this action and client_payload).
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("fixtures/events/repository_dispatch.json")).unwrap(),
    )
    .unwrap();
    event["action"] = d["event_type"].clone();
    event["client_payload"] = d["client_payload"].clone();
    p.ws.write("event.json", &event.to_string());
    let event = p.ws.path().join("event.json").display().to_string();
    let (r, out) = p.run(
        "train",
        &[
            ("GITHUB_EVENT_NAME", "repository_dispatch"),
            ("GITHUB_EVENT_PATH", event.as_str()),
            ("INPUT_DRY-RUN", "true"),
        ],
    );
    r.assert_code(0);
    let plan: serde_json::Value = serde_json::from_str(&out["plan"]).unwrap();
    assert_eq!(plan["model-id"], "churn");
    assert_eq!(plan["source"]["trigger"]["action"], "retrain");
    assert_eq!(plan["source"]["trigger"]["reason"], "drift");
}

/// The quality check on labelled recent data without a predictions column:
/// `predictions-from: endpoint` asks the live endpoint (the real router's
/// version on the engine) for each row, rate-limited and bounded; the accuracy
/// of its answers on the validation data is the accuracy training recorded for
/// the production version, and labels turned upside down make it `degraded`.
#[test]
fn quality_predictions_are_asked_of_the_live_endpoint() {
    let p = Pipeline::new();
    let base = p.ws.read("example/mlcd.yml");
    p.run("train", &[]).0.assert_code(0);
    let (r, _) = p.run("deploy", &[]);
    r.assert_code(0);
    let cfg = |current: &str, max_rows: u32| {
        format!(
            "{base}\nmonitor:\n  current: {current}\n  labels: churn\n  predictions-from: endpoint\n  predict-max-rows: {max_rows}\n  predict-rate: 50\n  metric-below-baseline: 0.02\n"
        )
    };

    // The validation data as it is: the endpoint's answers are as good as training said.
    p.ws.write("example/mlcd.yml", &cfg("data/validation", 1000));
    let started = std::time::Instant::now();
    let (r, out) = p.run("monitor", &[]);
    r.assert_code(0);
    let took = started.elapsed();
    assert_eq!(out["status"], "ok", "{}", r.stderr);
    assert!(r.stderr.contains("answered 100 request(s)"), "{}", r.stderr);
    let summary = p.ws.read("out/summary");
    assert!(summary.contains("0.93"), "{summary}");
    // 100 requests at 50 a second take at least 2 s.
    assert!(took >= std::time::Duration::from_secs(2), "{took:?}");

    // The same rows with their labels flipped: the model now looks wrong.
    let flipped: String =
        p.ws.read("example/data/validation/churn.csv")
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i == 0 {
                    format!("{l}\n")
                } else {
                    let (rest, y) = l.rsplit_once(',').unwrap();
                    format!("{rest},{}\n", if y == "1" { 0 } else { 1 })
                }
            })
            .collect();
    p.ws.write("example/recent/flipped.csv", &flipped);
    p.ws.write("example/mlcd.yml", &cfg("recent", 40));
    let (r, out) = p.run("monitor", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "degraded", "{}", r.stderr);
    assert!(
        r.stderr
            .contains("answered 40 request(s); 60 more labelled row(s) left out"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("against 0.93 for the production version"),
        "{}",
        r.stderr
    );
}

/// `predictions-from: capture`: callers send an inference id with each request;
/// the labels arrive later with those ids; `mlcd monitor` joins them to the
/// predictions the endpoint's capture recorded (no request to the endpoint) —
/// on the validation data, the accuracy training recorded.
#[test]
fn quality_predictions_are_read_from_the_capture_by_inference_id() {
    let p = Pipeline::new();
    let cfg =
        p.ws.read("example/mlcd.yml")
            .replace("  interval: 1s\n", "  interval: 1s\n  capture: {}\n");
    p.ws.write("example/mlcd.yml", &cfg);
    p.run("train", &[]).0.assert_code(0);
    let (r, out) = p.run("deploy", &[]);
    r.assert_code(0);
    let url = out["url"].clone();

    // Production traffic: the validation rows without their label, each with an id.
    let validation = p.ws.read("example/data/validation/churn.csv");
    let mut labelled = String::from(
        "inference_id,tenure_months,monthly_charges,support_calls,contract_monthly,churn\n",
    );
    for (i, line) in validation.lines().skip(1).enumerate() {
        let c: Vec<&str> = line.split(',').collect();
        let body = format!(
            "{{\"instances\":[{{\"tenure_months\":{},\"monthly_charges\":{},\"support_calls\":{},\"contract_monthly\":{}}}]}}",
            c[0], c[1], c[2], c[3]
        );
        let header = format!("X-Amzn-SageMaker-Inference-Id: req-{i}\r\n");
        assert_eq!(invoke_with(&url, &body, &header), 200);
        labelled.push_str(&format!("req-{i},{line}\n"));
    }
    // A label for a request never made: counted, not joined.
    labelled.push_str("req-unknown,10,50.0,1,1,1\n");
    p.ws.write("example/labels/labelled.csv", &labelled);
    std::thread::sleep(std::time::Duration::from_millis(600));

    p.ws.write(
        "example/mlcd.yml",
        &format!("{cfg}\nmonitor:\n  current: labels\n  labels: churn\n  predictions-from: capture\n  metric-below-baseline: 0.02\n"),
    );
    let (r, out) = p.run("monitor", &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "ok", "{}", r.stderr);
    assert!(
        r.stderr.contains("100 with an inference id"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("joined 100 labelled row(s) to captured predictions by `inference_id`; 1 without a match"),
        "{}",
        r.stderr
    );
    let summary = p.ws.read("out/summary");
    assert!(summary.contains("0.93"), "{summary}");
    // No request was sent to the endpoint for it: the capture still holds the
    // 100 requests only (plus the deploy's smoke tests, which carry no id).
    assert!(!r.stderr.contains("asking endpoint"), "{}", r.stderr);
}
