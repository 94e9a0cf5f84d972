//! The fake Kubernetes API server (tests/fake_kube/server.py) for the tests that
//! need one: started on a free port with a kubeconfig for it, its control
//! endpoints (violations, requests, scripts), and the real kubectl pointed at it.
//! Needs python3 with PyYAML and `kubernetes-validate` (scripts/testbed up
//! pydeps); kubectl on PATH for the kubectl tests. Given the test bed's Docker
//! engine ([`FakeKube::with_docker`]) its KServe controller serves revisions from
//! real containers; [`kserve_image`] is the example model in an image that
//! carries its trained model (what KServe's storage initializer would fetch).
//! [`FakeKube::with_containers`] also runs the TrainJob/PyTorchJob pods as real
//! containers on that engine, like a kubelet (tests/fake_kube/kubelet.py: volumes,
//! env from Secrets, init containers and native sidecars in order, termination
//! messages, per-container logs) instead of scripting them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::common::{control_call, root, Run};

/// The fake API server and a kubeconfig for it; stopped when dropped.
pub struct FakeKube {
    child: Child,
    /// The server's base URL.
    pub url: String,
    dir: tempfile::TempDir,
}

/// Runs `docker ARGS…` on the test bed's engine; panics with its stderr on failure.
pub fn docker(tb: &BTreeMap<String, String>, args: &[&str]) {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", &tb["DOCKER_HOST"])
        .output()
        .expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bundled example's image (`train` and `serve`, no model in it), built
/// once per test process; returns its reference.
pub fn example_image(tb: &BTreeMap<String, String>) -> &'static str {
    const IMAGE: &str = "mlcd-test/churn:train";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let base = format!("BASE_IMAGE={}", tb["MLCD_TESTBED_BASE_IMAGE"]);
        let example = root().join("fixtures/example").display().to_string();
        docker(
            tb,
            &["build", "-q", "-t", IMAGE, "--build-arg", &base, &example],
        );
    });
    IMAGE
}

/// The example model's image with its model trained in at /opt/ml/model, built
/// once per test process on the test bed's engine; returns its reference.
pub fn kserve_image(tb: &BTreeMap<String, String>) -> String {
    const IMAGE: &str = "mlcd-test/churn:kserve";
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let train = example_image(tb);
        let dir = tempfile::tempdir().unwrap();
        crate::common::copy_dir(&root().join("fixtures/example/data"), &dir.path().join("data"));
        std::fs::write(
            dir.path().join("Dockerfile"),
            format!("FROM {train}\nCOPY data /opt/ml/input/data\nRUN [\"python3\", \"/opt/program/entry.py\", \"train\"]\n"),
        )
        .unwrap();
        docker(tb, &["build", "-q", "-t", IMAGE, &dir.path().display().to_string()]);
    });
    IMAGE.to_string()
}

impl FakeKube {
    /// The fake without a Docker engine: InferenceService revisions fail, saying so.
    pub fn start() -> Self {
        Self::launch(None, &[])
    }

    /// The fake whose KServe controller runs revisions on `tb`'s Docker engine.
    pub fn with_docker(tb: &BTreeMap<String, String>) -> Self {
        Self::launch(Some(&tb["DOCKER_HOST"]), &[])
    }

    /// The fake whose training jobs' pods run as real containers on `tb`'s Docker
    /// engine (server.py --run-containers), as well as its KServe revisions. Images
    /// are never pulled: they must be on that engine.
    pub fn with_containers(tb: &BTreeMap<String, String>) -> Self {
        Self::launch(Some(&tb["DOCKER_HOST"]), &["--run-containers"])
    }

    fn launch(docker_host: Option<&str>, extra: &[&str]) -> Self {
        let mut cmd = Command::new("python3");
        match docker_host {
            Some(h) => cmd.env("DOCKER_HOST", h),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        let mut child = cmd
            .arg(root().join("tests/fake_kube/server.py"))
            .args(["--port", "0", "--quiet"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake API server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| {
                panic!("the fake API server did not start (is kubernetes-validate installed?): {line:?}")
            })
            .to_string();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kubeconfig"),
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {{server: \"{url}\"}}
- name: other
  cluster: {{server: \"http://127.0.0.1:1\"}}
users:
- name: ci
  user: {{token: kube-secret-token-0001}}
contexts:
- name: fake
  context: {{cluster: fake, user: ci, namespace: ml}}
- name: other
  context: {{cluster: other, user: ci}}
current-context: fake
"
            ),
        )
        .unwrap();
        FakeKube { child, url, dir }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn env(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "KUBECONFIG".to_string(),
                self.kubeconfig().display().to_string(),
            ),
            ("MLCD_POLL_INTERVAL_MS".to_string(), "200".to_string()),
        ])
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        control_call("fake API", &self.url, method, path, body)
    }

    pub fn violations(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/violations", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "objects broke the Kubernetes/CRD schemas: {v:#?}"
        );
    }

    pub fn get(&self, path: &str) -> serde_json::Value {
        self.call("GET", path, None)
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A server-side apply of `yaml` at `path` under mlcd's field manager, as
    /// kube-rs sends it; returns the HTTP status.
    pub fn apply_raw(&self, path: &str, yaml: &str) -> u16 {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "PATCH",
                "-H",
                "content-type: application/apply-patch+yaml",
                "--data-binary",
                yaml,
                &format!(
                    "{}{path}?fieldManager=mlcd&fieldValidation=Strict&force=true",
                    self.url
                ),
            ])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// The real kubectl against the fake, with its own HOME (discovery cache).
    pub fn kubectl(&self, args: &[&str]) -> Run {
        Command::new("kubectl")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", self.kubeconfig())
            .output()
            .expect("kubectl runs")
            .into()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
