//! `mode: train` on the local backend, against the real Docker engine of the test
//! bed with the bundled example image (a real pure-Python model trained on the
//! CSVs under fixtures/example/data): the backend conformance suite, then the
//! binary end to end — success with metrics and a registered version, a re-run
//! that attaches, a failing script, a timeout, wait false then attach, SIGTERM,
//! a failing gate, and a GPU instance on an engine without GPUs.
//!
//! Needs `scripts/testbed up docker base-image` (scripts/test does it).

mod common;
#[path = "common/train_conformance.rs"]
mod train_conformance;

use common::*;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mlcd::config::values::Backend;
use mlcd::train::local::LocalTraining;
use mlcd::train::{Channel, JobSpec};

const NEED: &[&str] = &["DOCKER_HOST", "MLCD_TESTBED_BASE_IMAGE"];
const IMAGE: &str = "mlcd-test/churn:train";

/// Builds the example image once per test process (the engine's layer cache
/// makes later processes fast).
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

fn docker(tb: &BTreeMap<String, String>, args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &tb["DOCKER_HOST"])
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn base_spec(image: &str) -> JobSpec {
    let data = root().join("fixtures/example/data");
    JobSpec {
        name: String::new(),
        image: image.to_string(),
        instance: mlcd::instance::resolve(&"cpu.small".parse().unwrap(), Backend::Local).unwrap(),
        count: 1,
        hyperparameters: train_conformance::example_hyperparameters(),
        channels: [
            ("train".to_string(), Channel::Local(data.join("train"))),
            (
                "validation".to_string(),
                Channel::Local(data.join("validation")),
            ),
        ]
        .into(),
        env: BTreeMap::new(),
        max_runtime: Duration::from_secs(600),
        metric_definitions: BTreeMap::new(),
        output: None,
        tags: BTreeMap::new(),
        identity: test_identity("github.com/acme/churn"),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_local_backend_passes_the_conformance_suite() {
    let tb = testbed_env(NEED);
    let image = example_image(&tb);
    std::env::set_var("DOCKER_HOST", &tb["DOCKER_HOST"]);
    let engine = mlcd::image::engine::Engine::connect().await.unwrap();
    let store = tempfile::tempdir().unwrap();
    let backend = LocalTraining::new(&engine, store.path().to_path_buf());
    let prefix = format!("conf{}", unique());
    train_conformance::run(&backend, &base_spec(image), &prefix).await;
    // The completed job's artifact is SageMaker's model.tar.gz with the model at its root.
    let tgz = store.path().join(format!("{prefix}-ok/model.tar.gz"));
    let listing = Command::new("tar").arg("tzf").arg(&tgz).output().unwrap();
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        names
            .lines()
            .any(|l| l.trim_start_matches("./") == "model.json"),
        "{names}"
    );
    // Finished jobs leave no container behind.
    let left = docker(
        &tb,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name=mlcd-train-{prefix}"),
            "-q",
        ],
    );
    assert!(left.trim().is_empty(), "containers left: {left}");
}

/// `mlcd train` in a GitHub-like environment on a copy of the example.
struct Train {
    ws: Workspace,
    tb: BTreeMap<String, String>,
    run_id: String,
}

impl Train {
    fn new(config_extra: &str) -> Train {
        let tb = testbed_env(NEED);
        example_image(&tb);
        let ws = Workspace::with_example();
        if !config_extra.is_empty() {
            let cfg = ws
                .read("example/mlcd.yml")
                .replace("train:\n", &format!("train:\n{config_extra}"));
            ws.write("example/mlcd.yml", &cfg);
        }
        Train {
            ws,
            tb,
            run_id: unique().to_string(),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = actions_env(&self.ws);
        env.retain(|(k, _)| k != "GITHUB_RUN_ID");
        env.push(("GITHUB_RUN_ID".into(), self.run_id.clone()));
        env.push(("DOCKER_HOST".into(), self.tb["DOCKER_HOST"].clone()));
        env.push(("MLCD_POLL_INTERVAL_MS".into(), "200".into()));
        env
    }

    fn inputs<'a>(&self, extra: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
        let mut env = self.env();
        for (k, v) in [
            ("INPUT_MODE", "train"),
            ("INPUT_CONFIG", "example/mlcd.yml"),
            ("INPUT_IMAGE", IMAGE),
        ]
        .iter()
        .chain(extra)
        {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        env
    }

    fn run(&self, extra: &[(&str, &str)]) -> (Run, BTreeMap<String, String>) {
        let _ = std::fs::remove_file(self.ws.path().join("out/output"));
        let _ = std::fs::remove_file(self.ws.path().join("out/summary"));
        let env = self.inputs(extra);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let r = mlcd(self.ws.path(), &[], &env);
        let outputs = parse_outputs(&self.ws.read("out/output"));
        (r, outputs)
    }

    /// The job name mlcd derives for this run (from a dry run with the same
    /// inputs; call it before a real run: it replaces out/output and out/summary).
    fn job_name(&self, extra: &[(&str, &str)]) -> String {
        let mut extra = extra.to_vec();
        extra.push(("INPUT_DRY-RUN", "true"));
        let (r, out) = self.run(&extra);
        r.assert_code(0);
        let plan: serde_json::Value = serde_json::from_str(&out["plan"]).unwrap();
        let name = plan["train"]["job-name"].as_str().unwrap().to_string();
        assert!(
            name.starts_with(&format!("churn-{}-1-", self.run_id)),
            "{name}"
        );
        name
    }

    fn job(&self, name: &str) -> serde_json::Value {
        let p = self.ws.path().join(format!(".mlcd/jobs/{name}/job.json"));
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default()).unwrap_or_default()
    }

    fn versions(&self) -> usize {
        std::fs::read_dir(self.ws.path().join(".mlcd/registry/churn/versions"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

#[test]
fn trains_the_example_reports_metrics_registers_it_and_a_rerun_attaches() {
    let t = Train::new("");
    let job = t.job_name(&[]);
    let (r, out) = t.run(&[]);
    r.assert_code(0);
    assert_eq!(out["job-id"], job);
    assert_eq!(out["status"], "succeeded");
    let metrics: serde_json::Value = serde_json::from_str(&out["metrics"]).unwrap();
    let acc = metrics["accuracy"]
        .as_f64()
        .expect("accuracy from metrics.json");
    assert!((0.8..=1.0).contains(&acc), "{metrics}");
    assert!(
        metrics["train-loss"].as_f64().is_some(),
        "the log regex metric: {metrics}"
    );
    assert!(
        out["artifact"].ends_with(&format!(".mlcd/jobs/{job}/model.tar.gz")),
        "{out:?}"
    );
    assert!(std::path::Path::new(&out["artifact"]).is_file());
    assert_eq!(out["model-version"], "1");
    // The log streamed live, and the summary holds the metrics and the gate.
    assert!(r.stderr.contains("epoch="), "{}", r.stderr);
    let summary = t.ws.read("out/summary");
    assert!(
        summary.contains("| accuracy |") && summary.contains("✅ pass"),
        "{summary}"
    );
    // The registered version carries the lineage.
    let v: serde_json::Value =
        serde_json::from_str(&t.ws.read(".mlcd/registry/churn/versions/1.json")).unwrap();
    let text = v.to_string();
    assert!(
        text.contains(SHA) && text.contains(&job) && text.contains("\"lr\""),
        "{text}"
    );

    // Re-running the same attempt attaches: no second job, no second version.
    let (r2, out2) = t.run(&[]);
    r2.assert_code(0);
    assert!(r2.stderr.contains("exists already"), "{}", r2.stderr);
    assert_eq!(out2["model-version"], "1");
    assert_eq!(t.versions(), 1);
    assert_eq!(out2["metrics"], out["metrics"]);
}

#[test]
fn a_failing_training_script_fails_the_step_with_its_reason_and_registers_nothing() {
    let t = Train::new("");
    let (r, out) = t.run(&[("INPUT_PARAM-LIST", "fail=true")]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(
        r.stdout.contains("fail requested by hyperparameter")
            || r.stderr.contains("fail requested by hyperparameter"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(t.versions(), 0);
}

#[test]
fn a_timeout_stops_the_job_and_reports_timed_out() {
    let t = Train::new("");
    let started = Instant::now();
    let (r, out) = t.run(&[("INPUT_PARAM-LIST", "sleep=120"), ("INPUT_TIMEOUT", "4s")]);
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "{:?}",
        started.elapsed()
    );
    let job = t.job(&out["job-id"]);
    assert_eq!(job["status"]["state"], "stopped", "{job}");
    assert!(r.stdout.contains("it was stopped") || r.stderr.contains("it was stopped"));
    assert_eq!(t.versions(), 0);
}

#[test]
fn wait_false_submits_and_a_later_attach_collects_the_results() {
    let t = Train::new("");
    let (r, out) = t.run(&[("INPUT_WAIT", "false")]);
    r.assert_code(0);
    assert_eq!(out["status"], "submitted");
    let job = out["job-id"].clone();
    assert_eq!(
        t.versions(),
        0,
        "nothing registered before the job is collected"
    );
    // Another job (another run id) attaches by id.
    let t2 = Train {
        ws: t.ws,
        tb: t.tb.clone(),
        run_id: unique().to_string(),
    };
    let (r2, out2) = t2.run(&[("INPUT_ATTACH", &job)]);
    r2.assert_code(0);
    assert_eq!(out2["job-id"], job);
    assert_eq!(out2["model-version"], "1");
    assert!(out2["metrics"].contains("accuracy"));
    // Attaching to a job that does not exist is refused.
    let (r3, _) = t2.run(&[("INPUT_ATTACH", "churn-no-such-job")]);
    r3.assert_code(2);
    assert!(
        r3.stdout
            .contains("no training job named `churn-no-such-job`"),
        "{}",
        r3.stdout
    );
}

#[test]
fn sigterm_while_waiting_stops_the_job_and_reports_cancelled() {
    let t = Train::new("");
    let job = t.job_name(&[("INPUT_PARAM-LIST", "sleep=120")]);
    let env = t.inputs(&[("INPUT_PARAM-LIST", "sleep=120")]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlcd"));
    cmd.current_dir(t.ws.path())
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = String::new();
    // Wait until the job runs (its log says it sleeps), then cancel as the runner does.
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains("sleeping 120s") {
            break;
        }
    }
    assert!(seen.contains("sleeping 120s"), "{seen}");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4), "{seen}{}", rest.join("\n"));
    // The job was asked to stop; describing it (as an attach would) settles it as Stopped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = docker(
            &t.tb,
            &["ps", "-q", "--filter", &format!("name=mlcd-train-{job}")],
        );
        if running.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container still runs after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(t
        .ws
        .path()
        .join(format!(".mlcd/jobs/{job}/stop-requested"))
        .is_file());
    let (r, out) = t.run(&[("INPUT_ATTACH", &job)]);
    r.assert_code(1);
    assert!(r.stdout.contains("ended Stopped"), "{}", r.stdout);
    assert_eq!(out["status"], "failed");
}

#[test]
fn a_failing_gate_fails_the_step_names_the_metric_and_registers_nothing() {
    let t = Train::new("");
    let cfg =
        t.ws.read("example/mlcd.yml")
            .replace("accuracy: \">= 0.80\"", "accuracy: \">= 0.999\"");
    t.ws.write("example/mlcd.yml", &cfg);
    let (r, out) = t.run(&[]);
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    // The annotation names the metric, its value and the threshold, on the gate's line.
    let ann = r
        .stdout
        .lines()
        .find(|l| l.starts_with("::error") && l.contains("gate failed"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        ann.contains("accuracy")
            && ann.contains(">= 0.999")
            && ann.contains("file=example/mlcd.yml"),
        "{ann}"
    );
    assert!(out["metrics"].contains("accuracy"));
    assert_eq!(t.versions(), 0);
}

#[test]
fn a_gpu_instance_fails_clearly_on_an_engine_without_gpus_before_anything_runs() {
    let t = Train::new("");
    let (r, _) = t.run(&[("INPUT_INSTANCE", "gpu.t4.xl")]);
    r.assert_code(1);
    assert!(
        r.stdout.contains("needs 1 GPU") && r.stdout.contains("no GPU runtime"),
        "{}",
        r.stdout
    );
    let job = t.job_name(&[]);
    let any = docker(
        &t.tb,
        &[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("name=mlcd-train-{job}"),
        ],
    );
    assert!(any.trim().is_empty());
}

#[test]
fn an_image_missing_from_the_engine_is_pulled_with_the_registry_credentials() {
    let tb = testbed_env(&[
        "DOCKER_HOST",
        "MLCD_TESTBED_BASE_IMAGE",
        "MLCD_TESTBED_REGISTRY",
        "MLCD_TESTBED_REGISTRY_USER",
        "MLCD_TESTBED_REGISTRY_PASSWORD",
    ]);
    example_image(&tb);
    let remote = format!(
        "{}/pull{}/churn:train",
        tb["MLCD_TESTBED_REGISTRY"],
        unique()
    );
    let config = tempfile::tempdir().unwrap();
    let docker_in = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", &tb["DOCKER_HOST"])
            .env("DOCKER_CONFIG", config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    docker_in(
        &[
            "login",
            "-u",
            &tb["MLCD_TESTBED_REGISTRY_USER"],
            "--password-stdin",
            &tb["MLCD_TESTBED_REGISTRY"],
        ],
        Some(&tb["MLCD_TESTBED_REGISTRY_PASSWORD"]),
    );
    docker_in(&["tag", IMAGE, &remote], None);
    docker_in(&["push", &remote], None);
    docker_in(&["rmi", &remote], None);

    let t = Train::new("");
    let (r, out) = t.run(&[
        ("INPUT_IMAGE", remote.as_str()),
        (
            "INPUT_REGISTRY-USERNAME",
            tb["MLCD_TESTBED_REGISTRY_USER"].as_str(),
        ),
        (
            "INPUT_REGISTRY-PASSWORD",
            tb["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str(),
        ),
    ]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded");
    let pw = tb["MLCD_TESTBED_REGISTRY_PASSWORD"].as_str();
    assert!(
        r.stdout
            .lines()
            .all(|l| !l.contains(pw) || l.starts_with("::add-mask::")),
        "the password leaked: {}",
        r.stdout.replace(pw, "<PASSWORD>")
    );
    assert!(
        !r.stderr.contains(pw),
        "{}",
        r.stderr.replace(pw, "<PASSWORD>")
    );
    docker_in(&["rmi", &remote], None);
}

#[test]
fn a_job_of_another_workspace_with_the_same_name_is_never_taken_for_ours() {
    // Two checkouts on one engine with the same model id and run id (what two
    // act runs of run id 1 were): the second must not attach to the first's job.
    let first = Train::new("");
    let mut second = Train::new("");
    second.run_id = first.run_id.clone();
    let slow = [("INPUT_PARAM-LIST", "sleep=120"), ("INPUT_WAIT", "false")];
    let (r1, out1) = first.run(&slow);
    r1.assert_code(0);
    let job = out1["job-id"].clone();

    let other_sha = "fedcba9876543210fedcba9876543210fedcba98";
    let (r2, out2) = second.run(&[("INPUT_PARAM-LIST", "sleep=120"), ("GITHUB_SHA", other_sha)]);
    r2.assert_code(1);
    assert!(
        r2.stdout
            .contains(&format!("training job `{job}` belongs to another run")),
        "{}",
        r2.stdout
    );
    assert!(
        r2.stdout
            .contains(&format!("commit `{SHA}` (this run: `{other_sha}`)")),
        "{}",
        r2.stdout
    );
    assert_eq!(out2.get("metrics"), None, "none of its results reported");
    assert_eq!(second.versions(), 0, "nothing registered");
    assert!(
        !second.ws.path().join(format!(".mlcd/jobs/{job}")).exists(),
        "the other job is not collected into this workspace"
    );
    // The first run's job was left alone: still running, and its own run attaches.
    let running = docker(
        &first.tb,
        &["ps", "-q", "--filter", &format!("name=mlcd-train-{job}")],
    );
    assert!(!running.trim().is_empty(), "the first job keeps running");
    let (r3, out3) = first.run(&[
        ("INPUT_ATTACH", job.as_str()),
        ("INPUT_TIMEOUT", "1s"),
        ("INPUT_PARAM-LIST", "sleep=120"),
    ]);
    assert_eq!(out3["job-id"], job, "{}", r3.stderr);
    assert!(
        r3.stderr.contains("attaching to training job"),
        "{}",
        r3.stderr
    );
    // timed out → the job is stopped (on-timeout: stop), nothing left running.
    r3.assert_code(3);
}
