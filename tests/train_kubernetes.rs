//! Kubernetes training against the fake API server (tests/fake_kube): the
//! conformance suite for TrainJob and PyTorchJob, `mlcd train --backend
//! kubernetes` end to end through the binary, `mlcd render train`, bad input that
//! fails before anything is applied — and the real `kubectl` agreeing with the
//! fake: it applies what `mlcd render train` prints, reads the job back, waits for
//! it, and sees an invalid object refused. Every object the fake received is
//! checked against the pinned CRD schemas and `kubernetes-validate`; each test
//! asserts there was no violation.
//!
//! Needs python3 with PyYAML and `kubernetes-validate` (scripts/testbed up pydeps)
//! and kubectl on PATH for the kubectl tests.

mod common;
#[path = "common/train_conformance.rs"]
mod conformance;
#[path = "common/fake_kube.rs"]
mod fake_kube;
use common::*;
use fake_kube::FakeKube;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mlcd::config::types::KubeTrainer;
use mlcd::config::values::Backend;
use mlcd::plan::KubernetesPlan;
use mlcd::train::kubernetes::KubernetesTraining;
use mlcd::train::{Channel, JobSpec, TrainingBackend};

fn plan(trainer: KubeTrainer) -> KubernetesPlan {
    KubernetesPlan {
        namespace: "ml".into(),
        context: None,
        eks: None,
        trainer,
        runtime: "torch-distributed".into(),
        storage_uri: Some("pvc://models/churn".into()),
        service_account: None,
        mlcd_image: "ghcr.io/mlcd-dev/mlcd:0.1.0".into(),
        aws_secret: None,
    }
}

fn base_spec(source: &str) -> JobSpec {
    let instance = mlcd::instance::resolve(&"gpu.t4.xl".parse().unwrap(), Backend::Kubernetes)
        .expect("a portable name");
    JobSpec {
        name: "unused".into(),
        image: "127.0.0.1:15000/mlcd/churn:test".into(),
        instance,
        count: 1,
        hyperparameters: conformance::example_hyperparameters(),
        channels: BTreeMap::from([(
            "train".to_string(),
            Channel::Remote("pvc://data/churn/train".into()),
        )]),
        env: BTreeMap::from([("LOG_LEVEL".to_string(), "info".to_string())]),
        max_runtime: Duration::from_secs(3600),
        metric_definitions: BTreeMap::new(),
        output: None,
        tags: BTreeMap::new(),
        identity: test_identity(source),
    }
}

async fn conformance_for(trainer: KubeTrainer, prefix: &str) {
    let fake = FakeKube::start();
    let backend = KubernetesTraining::new(&plan(trainer), &fake.env())
        .await
        .expect("a backend for the fake cluster");
    conformance::run(&backend, &base_spec("github.com/acme/churn"), prefix).await;
    fake.assert_no_violations();
    // Every apply was server-side, under mlcd's manager, strictly validated.
    let applies: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r["content_type"] == "application/apply-patch+yaml")
        .collect();
    assert!(!applies.is_empty());
    for a in &applies {
        assert_eq!(a["query"]["fieldManager"], "mlcd", "{a}");
        assert_eq!(a["query"]["fieldValidation"], "Strict", "{a}");
    }
}

#[tokio::test]
async fn the_kubernetes_backend_passes_the_conformance_suite_with_trainjobs() {
    conformance_for(KubeTrainer::Trainjob, "conf-tj").await;
}

#[tokio::test]
async fn the_kubernetes_backend_passes_the_conformance_suite_with_pytorchjobs() {
    conformance_for(KubeTrainer::Pytorchjob, "conf-pt").await;
}

#[tokio::test]
async fn waiting_on_a_running_job_is_a_watch_and_a_log_read_every_10_seconds() {
    let fake = FakeKube::start();
    let backend = KubernetesTraining::new(&plan(KubeTrainer::Trainjob), &fake.env())
        .await
        .unwrap();
    let mut spec = base_spec("github.com/acme/churn");
    spec.name = "quiet-1".into();
    spec.hyperparameters.insert("sleep".into(), "4".into());
    backend.submit(&spec).await.unwrap();
    let mut cursor = mlcd::train::LogCursor::default();
    // Until it runs and its first lines were read.
    for _ in 0..100 {
        let s = backend.describe(&spec.name).await.unwrap().unwrap();
        let lines = backend.logs(&spec.name, &mut cursor).await.unwrap();
        if s.state == mlcd::train::JobState::InProgress && !lines.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Polls every 100 ms until it completes: answered from the watch.
    let before = fake.requests().len();
    let started = std::time::Instant::now();
    let done = loop {
        let s = backend.describe(&spec.name).await.unwrap().unwrap();
        let lines = backend.logs(&spec.name, &mut cursor).await.unwrap();
        if s.state.is_terminal() {
            break (s, lines);
        }
        assert!(lines.is_empty(), "no new lines while it sleeps: {lines:?}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        done.0.state,
        mlcd::train::JobState::Completed,
        "{:?}",
        done.0
    );
    let during: Vec<_> = fake.requests()[before..].to_vec();
    // Tens of polls; the requests: the final log read and the hyperparameters.
    let reads: Vec<String> = during
        .iter()
        .map(|r| format!("{} {}", r["method"], r["path"]))
        .collect();
    assert!(
        during.len() <= 3,
        "a watched job must not be read on every poll: {reads:#?}"
    );
    let watches = fake
        .requests()
        .iter()
        .filter(|r| r["query"]["watch"] == "true" || r["query"]["watch"] == "1")
        .count();
    assert_eq!(watches, 1, "one watch request");
    // It started at once: the Events (the why of a job that waits) were never
    // read, for the job nor for its pods.
    let events: Vec<_> = fake
        .requests()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/events"))
        .map(|r| r["query"].to_string())
        .collect();
    assert!(
        events.is_empty(),
        "Events read for a job that ran: {events:?}"
    );
    fake.assert_no_violations();
}

/// A workspace whose mlcd.yml trains on the fake cluster.
fn kube_workspace(extra_kubernetes: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "mlcd.yml",
        &format!(
            "model: churn
backend: kubernetes
train:
  image: 127.0.0.1:15000/mlcd/churn:test
  instance: gpu.t4.xl
  hyperparameters: {{epochs: 4, lr: 0.1}}
  channels:
    train: pvc://data/churn/train
  timeout: 2m
  metrics:
    - name: train-loss
      regex: \"epoch=[0-9]+ loss=([0-9.]+)\"
  gates:
    train-loss: \"<= 0.5\"
kubernetes:
  namespace: ml
  storage-uri: pvc://models/churn
{extra_kubernetes}"
        ),
    );
    ws
}

fn run_train(
    ws: &Workspace,
    fake: &FakeKube,
    run_id: &str,
    extra: &[(&str, &str)],
) -> (Run, BTreeMap<String, String>) {
    let _ = std::fs::remove_file(ws.path().join("out/output"));
    let mut env = actions_env(ws);
    let kubeconfig = fake.kubeconfig().display().to_string();
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("GITHUB_RUN_ID", run_id),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("MLCD_POLL_INTERVAL_MS", "200"),
    ]
    .iter()
    .chain(extra)
    {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = mlcd(ws.path(), &[], &env);
    let out = parse_outputs(&ws.read("out/output"));
    (r, out)
}

#[test]
fn a_trainjob_completes_with_metrics_and_is_registered() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    let run_id = unique().to_string();
    let (r, out) = run_train(&ws, &fake, &run_id, &[]);
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    let job = &out["job-id"];
    assert!(job.starts_with(&format!("churn-{run_id}-1-")), "{out:?}");
    assert_eq!(
        out["artifact"],
        format!("pvc://models/churn/{job}/model"),
        "{out:?}"
    );
    let metrics: serde_json::Value = serde_json::from_str(&out["metrics"]).unwrap();
    assert_eq!(metrics["train-loss"], 0.175, "{metrics}");
    assert_eq!(out["model-version"], "1", "{out:?}");
    // The log was followed: the epochs are on stderr, once each.
    assert_eq!(
        r.stderr.matches("epoch=2 loss=0.3500").count(),
        1,
        "{}",
        r.stderr
    );
    // What the cluster holds: the TrainJob with lineage, its ConfigMap owned by it.
    let tj = fake.get(&format!(
        "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/{job}"
    ));
    assert_eq!(tj["metadata"]["labels"]["mlcd.dev/model"], "churn");
    assert_eq!(tj["metadata"]["annotations"]["mlcd.dev/commit"], SHA);
    assert_eq!(
        tj["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"],
        "1"
    );
    assert_eq!(tj["spec"]["activeDeadlineSeconds"], 120);
    let cm = fake.get(&format!(
        "/api/v1/namespaces/ml/configmaps/{job}-hyperparameters"
    ));
    assert_eq!(cm["metadata"]["ownerReferences"][0]["kind"], "TrainJob");
    assert!(
        cm["data"]["hyperparameters.json"]
            .as_str()
            .unwrap()
            .contains("\"epochs\": \"4\""),
        "{cm}"
    );
    // The kubeconfig's token never shows.
    assert!(!r.stderr.contains("kube-secret-token-0001"));
    assert!(!r.stdout.contains("kube-secret-token-0001"));
    fake.assert_no_violations();
}

#[test]
fn a_failed_job_fails_the_step_with_the_containers_reason() {
    let fake = FakeKube::start();
    let ws = kube_workspace("  trainer: pytorchjob\n");
    // A master and a worker: the reason is the master's.
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("instance: gpu.t4.xl", "instance: gpu.t4.xl\n  count: 2"),
    );
    let (r, out) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[("INPUT_PARAM-LIST", "fail=true")],
    );
    r.assert_code(1);
    assert_eq!(out["status"], "failed", "{out:?}");
    // The termination message (the container wrote /opt/ml/output/failure).
    assert!(
        r.stdout.contains("fail requested by hyperparameter"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert!(r.stdout.contains("exit code 1"), "{}", r.stdout);
    assert!(!ws.path().join(".mlcd/registry/churn").exists());
    fake.assert_no_violations();
}

#[test]
fn an_oom_killed_trainjob_says_so() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    // Two nodes: the first node's pod is the one read.
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("instance: gpu.t4.xl", "instance: gpu.t4.xl\n  count: 2"),
    );
    let (r, out) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[("INPUT_PARAM-LIST", "oom=true")],
    );
    r.assert_code(1);
    assert_eq!(out["status"], "failed");
    assert!(
        r.stdout.contains("OOMKilled (exit code 137)"),
        "{}",
        r.stdout
    );
    let job = &out["job-id"];
    let pods = fake.get(&format!(
        "/api/v1/namespaces/ml/pods?labelSelector=mlcd.dev/job%3D{job}"
    ));
    assert_eq!(pods["items"].as_array().unwrap().len(), 2, "{pods}");
    fake.assert_no_violations();
}

#[test]
fn a_timeout_suspends_the_job_and_fails_the_step() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    let (r, out) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[("INPUT_PARAM-LIST", "sleep=120"), ("INPUT_TIMEOUT", "3s")],
    );
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out", "{out:?}");
    let job = &out["job-id"];
    let tj = fake.get(&format!(
        "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/{job}"
    ));
    assert_eq!(tj["spec"]["suspend"], true, "{tj}");
    let suspended = tj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Suspended" && c["status"] == "True");
    assert!(suspended, "{tj}");
    // Its pods are gone.
    let pods = fake.get(&format!(
        "/api/v1/namespaces/ml/pods?labelSelector=mlcd.dev/job%3D{job}"
    ));
    assert_eq!(pods["items"].as_array().unwrap().len(), 0, "{pods}");
    fake.assert_no_violations();
}

#[test]
fn a_job_that_cannot_be_scheduled_says_why_and_is_suspended_on_timeout() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    let (r, out) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[("INPUT_PARAM-LIST", "stuck=true"), ("INPUT_TIMEOUT", "3s")],
    );
    r.assert_code(3);
    assert_eq!(out["status"], "timed_out", "{out:?}");
    // The scheduler's Warning Event is what the user sees while it waits.
    assert!(
        r.stderr.contains(
            "Pending (FailedScheduling: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu"
        ),
        "{}",
        r.stderr
    );
    let tj = fake.get(&format!(
        "/apis/trainer.kubeflow.org/v1alpha1/namespaces/ml/trainjobs/{}",
        out["job-id"]
    ));
    assert_eq!(tj["spec"]["suspend"], true, "{tj}");
    fake.assert_no_violations();
}

#[test]
fn sigterm_suspends_the_pytorchjob_and_reports_cancelled() {
    let fake = FakeKube::start();
    let ws = kube_workspace("  trainer: pytorchjob\n");
    let mut env = actions_env(&ws);
    let kubeconfig = fake.kubeconfig().display().to_string();
    let run_id = unique().to_string();
    for (k, v) in [
        ("INPUT_MODE", "train"),
        ("INPUT_PARAM-LIST", "sleep=600"),
        ("GITHUB_RUN_ID", run_id.as_str()),
        ("KUBECONFIG", kubeconfig.as_str()),
        ("MLCD_POLL_INTERVAL_MS", "200"),
    ] {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_mlcd"))
        .current_dir(ws.path())
        .env_clear()
        .envs(env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        seen.push_str(&l);
        seen.push('\n');
        if l.contains(": InProgress") {
            break;
        }
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(4), "{seen}{}", rest.join("\n"));
    let out = parse_outputs(&ws.read("out/output"));
    let job = fake.get(&format!(
        "/apis/kubeflow.org/v1/namespaces/ml/pytorchjobs/{}",
        out["job-id"]
    ));
    assert_eq!(job["spec"]["runPolicy"]["suspend"], true, "{job}");
    fake.assert_no_violations();
}

#[test]
fn a_rerun_attaches_to_its_own_job_and_never_to_another_runs() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    let run_id = unique().to_string();
    let (r, out) = run_train(&ws, &fake, &run_id, &[]);
    r.assert_code(0);
    let job = out["job-id"].clone();
    let applies = |f: &FakeKube| {
        f.requests()
            .iter()
            .filter(|r| r["content_type"] == "application/apply-patch+yaml")
            .count()
    };
    let before = applies(&fake);
    // The same run again: attaches, applies nothing.
    let (r2, out2) = run_train(&ws, &fake, &run_id, &[]);
    r2.assert_code(0);
    assert_eq!(out2["job-id"], job);
    assert!(r2.stderr.contains("attaches to it"), "{}", r2.stderr);
    assert_eq!(applies(&fake), before, "a re-run applied objects");
    // A job of that name made by someone else (another repository) is refused.
    let ws2 = kube_workspace("");
    let mut env = vec![("GITHUB_REPOSITORY", "someone/else")];
    env.push(("INPUT_ATTACH", job.as_str()));
    let (r3, _) = run_train(&ws2, &fake, &run_id, &env);
    assert_ne!(r3.code, 0, "{}", r3.stderr);
    assert!(r3.stdout.contains(&job), "{}", r3.stdout);
    fake.assert_no_violations();
}

#[test]
fn bad_cluster_settings_fail_before_anything_is_applied() {
    let fake = FakeKube::start();
    // No kubeconfig at all.
    let ws = kube_workspace("");
    let (r, _) = run_train(
        &ws,
        &fake,
        "1",
        &[("KUBECONFIG", ""), ("HOME", "/nonexistent")],
    );
    r.assert_code(2);
    assert!(
        r.stdout.contains("no Kubernetes cluster credentials"),
        "{}",
        r.stdout
    );
    // An unknown context, with a suggestion.
    let ws = kube_workspace("  context: fak\n");
    let (r, _) = run_train(&ws, &fake, "2", &[]);
    r.assert_code(2);
    assert!(r.stdout.contains("did you mean `fake`"), "{}", r.stdout);
    assert!(r.stdout.contains("kubernetes.context"), "{}", r.stdout);
    // A runtime the cluster does not have.
    let ws = kube_workspace("  runtime: torch-tune\n");
    let (r, _) = run_train(&ws, &fake, "3", &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("no ClusterTrainingRuntime `torch-tune`"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("torch-distributed"), "{}", r.stdout);
    // Storage settings that cannot work, each at its own key and line.
    for (from, to, says, line) in [
        (
            "storage-uri: pvc://models/churn",
            "storage-uri: gs://acme/models",
            "mount the bucket as a PersistentVolumeClaim",
            "file=mlcd.yml,line=17,",
        ),
        (
            "storage-uri: pvc://models/churn",
            "storage-uri: s3://models/churn\n  aws-secret: S3_Creds",
            "`kubernetes.aws-secret` is `S3_Creds`, which is not a Secret name",
            "file=mlcd.yml,line=18,",
        ),
        (
            "storage-uri: pvc://models/churn",
            "storage-uri: s3://models/churn\n  mlcd-image: \"ghcr.io/x/mlcd :1\"",
            "`kubernetes.mlcd-image` is `ghcr.io/x/mlcd :1`, which is not an image reference",
            "file=mlcd.yml,line=18,",
        ),
    ] {
        let ws = kube_workspace("");
        let cfg = ws.read("mlcd.yml").replace(from, to);
        let at = line;
        ws.write("mlcd.yml", &cfg);
        let (r, _) = run_train(&ws, &fake, "6", &[]);
        r.assert_code(2);
        assert!(r.stdout.contains(says), "{cfg}\n{}", r.stdout);
        assert!(r.stdout.contains(at), "{cfg}\n{}", r.stdout);
    }
    // A local channel cannot reach a cluster.
    let ws = kube_workspace("");
    std::fs::create_dir_all(ws.path().join("data/train")).unwrap();
    let cfg = ws
        .read("mlcd.yml")
        .replace("pvc://data/churn/train", "data/train");
    ws.write("mlcd.yml", &cfg);
    let (r, _) = run_train(&ws, &fake, "5", &[]);
    r.assert_code(2);
    assert!(r.stdout.contains("train.channels.train"), "{}", r.stdout);
    // A namespace mlcd may not use.
    fake.call(
        "POST",
        "/_fake/deny",
        Some(r#"{"namespace": "ml", "status": 403}"#),
    );
    let ws = kube_workspace("");
    let (r, _) = run_train(&ws, &fake, "4", &[]);
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains("403"), "{}", r.stdout);
    assert!(r.stdout.contains("namespace `ml`"), "{}", r.stdout);
    // Nothing was ever applied.
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r["method"] != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:#?}");
}

fn render(ws: &Workspace, extra: &[(&str, &str)]) -> Run {
    let mut args = vec!["render", "train", "--config", "mlcd.yml"];
    for (k, v) in extra {
        args.push(k);
        args.push(v);
    }
    mlcd(ws.path(), &args, &[("GITHUB_SHA", SHA)])
}

#[test]
fn render_prints_the_objects_and_touches_nothing() {
    let ws = kube_workspace("");
    let r = render(&ws, &[]);
    r.assert_code(0);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&r.stdout)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    assert_eq!(docs.len(), 2, "{}", r.stdout);
    assert_eq!(docs[0]["kind"], "ConfigMap");
    assert_eq!(docs[1]["kind"], "TrainJob");
    assert_eq!(docs[1]["spec"]["runtimeRef"]["name"], "torch-distributed");
    // Needs no cluster: there is no kubeconfig here at all.
    let ws = kube_workspace("");
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("backend: kubernetes", "backend: local"),
    );
    let r = render(&ws, &[]);
    r.assert_code(2);
    assert!(
        r.stdout.contains("backend: kubernetes") || r.stderr.contains("backend: kubernetes"),
        "{}{}",
        r.stdout,
        r.stderr
    );
}

/// Writes `mlcd render train`'s output to a file for kubectl.
fn rendered(ws: &Workspace, trainer: &str) -> PathBuf {
    let cfg = ws.read("mlcd.yml");
    ws.write("mlcd.yml", &format!("{cfg}  trainer: {trainer}\n"));
    let r = render(ws, &[]);
    r.assert_code(0);
    ws.write(&format!("{trainer}.yaml"), &r.stdout)
}

fn kubectl_ok(fake: &FakeKube, args: &[&str]) -> String {
    let r = fake.kubectl(args);
    assert_eq!(r.code, 0, "kubectl {args:?}\n{}\n{}", r.stdout, r.stderr);
    r.stdout
}

fn job_name_in(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    docs[1]["metadata"]["name"].as_str().unwrap().to_string()
}

#[test]
fn kubectl_applies_what_render_prints_and_sees_the_job_through() {
    let fake = FakeKube::start();
    for trainer in ["trainjob", "pytorchjob"] {
        let ws = kube_workspace("");
        let file = rendered(&ws, trainer);
        let file = file.display().to_string();
        let name = job_name_in(Path::new(&file));
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
        let resource = format!(
            "{trainer}.{}",
            if trainer == "trainjob" {
                "trainer.kubeflow.org"
            } else {
                "kubeflow.org"
            }
        );
        let got = kubectl_ok(&fake, &["get", &resource, &name, "-o", "json"]);
        let got: serde_json::Value = serde_json::from_str(&got).unwrap();
        let source = got["metadata"]["annotations"]["mlcd.dev/source"]
            .as_str()
            .unwrap_or_default();
        assert!(
            std::fs::read_to_string(&file).unwrap().contains(source),
            "{got}"
        );
        assert_eq!(got["metadata"]["annotations"]["mlcd.dev/commit"], SHA);
        let done = if trainer == "trainjob" {
            "Complete"
        } else {
            "Succeeded"
        };
        let waited = kubectl_ok(
            &fake,
            &[
                "wait",
                &format!("--for=condition={done}"),
                &format!("{resource}/{name}"),
                "--timeout=60s",
            ],
        );
        assert!(waited.contains("condition met"), "{waited}");
        let logs = kubectl_ok(&fake, &["logs", "-l", &format!("mlcd.dev/job={name}")]);
        assert!(logs.contains("epoch=1 loss="), "{logs}");
        // Re-applying the same objects changes nothing and is accepted.
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
    }
    fake.assert_no_violations();
}

#[test]
fn kubectl_suspends_with_a_patch_and_a_stale_replace_conflicts() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    ws.write(
        "mlcd.yml",
        &ws.read("mlcd.yml")
            .replace("epochs: 4", "epochs: 4, sleep: 300"),
    );
    let file = rendered(&ws, "trainjob").display().to_string();
    let name = job_name_in(Path::new(&file));
    let tj = format!("trainjob.trainer.kubeflow.org/{name}");
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
    // A merge patch, as mlcd's stop sends it: the job suspends and its pods go.
    kubectl_ok(
        &fake,
        &[
            "patch",
            &tj,
            "--type=merge",
            "-p",
            r#"{"spec":{"suspend":true}}"#,
        ],
    );
    let waited = kubectl_ok(
        &fake,
        &["wait", "--for=condition=Suspended", &tj, "--timeout=30s"],
    );
    assert!(waited.contains("condition met"), "{waited}");
    let pods = kubectl_ok(
        &fake,
        &[
            "get",
            "pods",
            "-l",
            &format!("mlcd.dev/job={name}"),
            "-o",
            "name",
        ],
    );
    assert!(pods.trim().is_empty(), "{pods}");
    // An update from a stale read is refused with a conflict.
    let current = kubectl_ok(&fake, &["get", &tj, "-o", "json"]);
    let stale = ws.write("stale.json", &current);
    let mut changed: serde_json::Value = serde_json::from_str(&current).unwrap();
    changed["metadata"]["labels"]["team"] = "ml".into();
    let fresh = ws.write("fresh.json", &changed.to_string());
    kubectl_ok(&fake, &["replace", "-f", &fresh.display().to_string()]);
    let r = fake.kubectl(&["replace", "-f", &stale.display().to_string()]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("the object has been modified"),
        "{}",
        r.stderr
    );
    fake.assert_no_violations();
}

#[test]
fn the_fake_refuses_an_invalid_trainjob_as_a_cluster_would() {
    let fake = FakeKube::start();
    let ws = kube_workspace("");
    let file = rendered(&ws, "trainjob");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    // An unknown field and a type error.
    let trainer = &mut docs[1]["spec"]["trainer"];
    trainer["numNodes"] = "one".into();
    trainer["argz"] = serde_yaml::Value::Sequence(vec!["x".into()]);
    let bad = docs
        .iter()
        .map(|d| serde_yaml::to_string(d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let bad_file = ws.write("bad.yaml", &bad);
    let r = fake.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &bad_file.display().to_string(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("is invalid"), "{}", r.stderr);
    assert!(r.stderr.contains("spec.trainer.numNodes"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("spec.trainer.argz: field not declared in schema"),
        "{}",
        r.stderr
    );
    let v = fake.violations();
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0]["kind"], "TrainJob");
    // A core object is checked with kubernetes-validate.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: ml}\ndata: {a: 1}\nimmutable: maybe\n";
    let cm_file = ws.write("cm.yaml", cm);
    let r = fake.kubectl(&[
        "apply",
        "--server-side",
        "-f",
        &cm_file.display().to_string(),
    ]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(r.stderr.contains("is invalid"), "{}", r.stderr);
    assert_eq!(fake.violations().len(), 2);
}

// --- EKS: bearer tokens made by mlcd, checked by the fake as the authenticator does

/// The key pair the EKS tests give mlcd; the fake verifies the tokens' signatures with it.
const EKS_KEY_ID: &str = "AKIAEKSTEST00000001";
const EKS_SECRET: &str = "eks-test-secret-key-never-printed-0001";

/// Makes the fake require EKS tokens for `cluster` in `region`, signed with `secret`.
fn require_eks(fake: &FakeKube, cluster: &str, region: &str) {
    fake.call(
        "POST",
        "/_fake/eks",
        Some(
            &serde_json::json!({
                "cluster": cluster,
                "region": region,
                "sts_endpoint": format!("https://sts.{region}.amazonaws.com"),
                "access_key_id": EKS_KEY_ID,
                "secret_access_key": EKS_SECRET,
            })
            .to_string(),
        ),
    );
}

/// A kubeconfig like `aws eks update-kubeconfig` writes: the fake as the server and
/// an exec entry running `aws eks get-token`, here a script that leaves a mark.
fn eks_kubeconfig(fake: &FakeKube, dir: &Path) -> (PathBuf, PathBuf) {
    let marker = dir.join("aws-was-run");
    let aws = dir.join("aws");
    std::fs::write(
        &aws,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
  cluster: {{server: \"{}\"}}
users:
- name: arn:aws:eks:eu-west-1:123456789012:cluster/prod
  user:
    exec:
      apiVersion: client.authentication.k8s.io/v1beta1
      command: {}
      args: [--region, eu-west-1, eks, get-token, --cluster-name, prod, --output, json]
contexts:
- name: prod
  context: {{cluster: \"arn:aws:eks:eu-west-1:123456789012:cluster/prod\", user: \"arn:aws:eks:eu-west-1:123456789012:cluster/prod\"}}
current-context: prod
",
            fake.url,
            aws.display()
        ),
    )
    .unwrap();
    (path, marker)
}

#[tokio::test]
async fn an_aws_eks_get_token_kubeconfig_works_without_the_aws_binary() {
    let fake = FakeKube::start();
    require_eks(&fake, "prod", "eu-west-1");
    let dir = tempfile::tempdir().unwrap();
    let (kubeconfig, marker) = eks_kubeconfig(&fake, dir.path());
    let env = |secret: &str| {
        BTreeMap::from([
            ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
            ("AWS_ACCESS_KEY_ID".to_string(), EKS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY".to_string(), secret.to_string()),
        ])
    };
    let (client, _) = mlcd::cloud::kube::connect(None, None, &env(EKS_SECRET))
        .await
        .expect("a client");
    let version = client
        .apiserver_version()
        .await
        .expect("the fake accepts mlcd's EKS token");
    assert_eq!(version.major, "1");
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(client, "ml");
    cms.list(&Default::default())
        .await
        .expect("a second request with the (cached) token");
    assert!(!marker.exists(), "the kubeconfig's aws binary was run");

    // Signed with another key: the cluster refuses it, and the error says 401.
    let (client, _) = mlcd::cloud::kube::connect(None, None, &env("wrong-secret"))
        .await
        .unwrap();
    let e = client.apiserver_version().await.unwrap_err();
    let msg = mlcd::cloud::kube::error("reading the version", "ml", &e).to_string();
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("signature does not match"), "{msg}");
    assert!(!msg.contains("wrong-secret"), "{msg}");
    // No AWS credentials at all: a clear error naming the cluster, before any request.
    let bare = BTreeMap::from([("KUBECONFIG".to_string(), kubeconfig.display().to_string())]);
    let Err(e) = mlcd::cloud::kube::connect(None, None, &bare).await else {
        panic!("a client without AWS credentials");
    };
    assert!(e.message.contains("EKS cluster `prod`"), "{}", e.message);
    assert!(e.message.contains("AWS_ACCESS_KEY_ID"), "{}", e.message);
}

#[test]
fn mlcd_train_on_eks_makes_its_own_tokens_from_the_config() {
    let fake = FakeKube::start();
    require_eks(&fake, "prod", "eu-west-1");
    // The kubeconfig's own user (a static token) is not what EKS gets.
    let ws = kube_workspace("  eks-cluster: prod\n  eks-region: eu-west-1\n");
    let (r, out) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[
            ("AWS_ACCESS_KEY_ID", EKS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EKS_SECRET),
            ("MLCD_LOG", "info"),
        ],
    );
    r.assert_code(0);
    assert_eq!(out["status"], "succeeded", "{out:?}");
    assert!(r.stderr.contains("EKS cluster `prod`"), "{}", r.stderr);
    // Secrets show only in the `::add-mask::` commands that hide them.
    let shown = |s: &str| {
        format!("{}\n{}", r.stdout, r.stderr)
            .lines()
            .any(|l| l.contains(s) && !l.starts_with("::add-mask::"))
    };
    for secret in [
        EKS_SECRET,
        "k8s-aws-v1.",
        "X-Amz-Signature",
        "kube-secret-token-0001",
    ] {
        assert!(!shown(secret), "{secret} in {}{}", r.stdout, r.stderr);
    }
    assert!(
        r.stdout.contains("::add-mask::k8s-aws-v1."),
        "the token is masked"
    );
    fake.assert_no_violations();
    // The wrong region: every request is refused with 401, the step fails saying so.
    let ws = kube_workspace("  eks-cluster: prod\n  eks-region: us-east-1\n");
    let (r, _) = run_train(
        &ws,
        &fake,
        &unique().to_string(),
        &[
            ("AWS_ACCESS_KEY_ID", EKS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", EKS_SECRET),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stdout.contains("401"), "{}", r.stdout);
    // Bad settings, named with their line, before any cluster is contacted.
    let ws = kube_workspace("  eks-cluster: \"prod/cluster\"\n");
    let r = render(&ws, &[]);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("`kubernetes.eks-cluster` is `prod/cluster`"),
        "{all}"
    );
    assert!(all.contains("mlcd.yml:18:3"), "{all}");
    let ws = kube_workspace("  eks-region: eu-west-1\n");
    let r = render(&ws, &[]);
    r.assert_code(2);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("`kubernetes.eks-cluster` is not"), "{all}");
}
