//! Shared test helpers: run the real `mlcd` binary in a scratch workspace with a
//! clean environment, and start the fake GitHub API (validated against GitHub's
//! OpenAPI description) as a child process.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An identity for backend-level tests: a run of `source` for the model `churn`.
pub fn test_identity(source: &str) -> mlcd::identity::Identity {
    mlcd::identity::Identity {
        source: source.to_string(),
        model: "churn".into(),
        commit: Some(SHA.into()),
        image: "127.0.0.1:15000/mlcd/churn:test".into(),
        config: "none".into(),
        hyperparameters: "sha256:0123456789abcdef".into(),
    }
}

/// What a run printed and how it exited.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `mlcd args…` in `dir` with only PATH, HOME and `env` set.
pub fn mlcd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mlcd"));
    cmd.args(args).current_dir(dir).env_clear();
    for k in ["PATH", "HOME"] {
        if let Ok(v) = std::env::var(k) {
            cmd.env(k, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd.output().expect("mlcd runs").into()
}

/// A scratch workspace (a temp dir) with files written into it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    /// The GitHub run id runs in this workspace get (unique per workspace, so
    /// that tests running side by side never derive the same job names; the
    /// same for every run in it, so a re-run is a re-run).
    pub run_id: String,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
            run_id: unique().to_string(),
        }
    }

    /// A workspace holding a copy of the bundled example under `example/`.
    pub fn with_example() -> Self {
        let ws = Workspace::new();
        copy_dir(&root().join("fixtures/example"), &ws.path().join("example"));
        ws
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            if e.file_name() == "__pycache__" {
                continue;
            }
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A commit SHA used as GITHUB_SHA in tests.
pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// The variables GitHub's runner sets for a container action, pointing at files
/// in `ws` (`out/output`, `out/summary`).
pub fn actions_env(ws: &Workspace) -> Vec<(String, String)> {
    std::fs::create_dir_all(ws.path().join("out")).unwrap();
    let p = |r: &str| ws.path().join(r).display().to_string();
    vec![
        ("GITHUB_ACTIONS".into(), "true".into()),
        ("GITHUB_EVENT_NAME".into(), "push".into()),
        ("GITHUB_WORKSPACE".into(), p("")),
        ("GITHUB_REPOSITORY".into(), "acme/churn".into()),
        ("GITHUB_SHA".into(), SHA.into()),
        ("GITHUB_REF".into(), "refs/heads/main".into()),
        ("GITHUB_RUN_ID".into(), ws.run_id.clone()),
        ("GITHUB_RUN_ATTEMPT".into(), "1".into()),
        ("GITHUB_SERVER_URL".into(), "https://github.com".into()),
        ("GITHUB_OUTPUT".into(), p("out/output")),
        ("GITHUB_STEP_SUMMARY".into(), p("out/summary")),
    ]
}

/// Runs mlcd as the runner runs a container action: no arguments, INPUT_* variables.
pub fn action(ws: &Workspace, extra: &[(&str, &str)]) -> Run {
    let mut env = actions_env(ws);
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    mlcd(ws.path(), &[], &env)
}

/// Parses a `$GITHUB_OUTPUT` file written in the heredoc form.
pub fn parse_outputs(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let (name, delim) = line.split_once("<<").expect("heredoc form");
        let mut value = Vec::new();
        for l in lines.by_ref() {
            if l == delim {
                break;
            }
            value.push(l);
        }
        out.insert(name.to_string(), value.join("\n"));
    }
    out
}

/// The fake GitHub API, stopped when dropped.
pub struct FakeGitHub {
    child: Child,
    pub url: String,
}

impl FakeGitHub {
    pub fn start() -> Self {
        let spec = root().join("fixtures/github/openapi-subset.json");
        let (child, url) = spawn_fake(
            "fake GitHub",
            "tests/fake_github/server.py",
            &[
                "--port".as_ref(),
                "0".as_ref(),
                "--quiet".as_ref(),
                "--spec".as_ref(),
                spec.as_os_str(),
            ],
            "",
        );
        FakeGitHub { child, url }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        control_call("fake GitHub", &self.url, method, path, body)
    }

    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn violations(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/violations", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn state(&self) -> serde_json::Value {
        self.call("GET", "/_fake/state", None)
    }

    pub fn deny(&self, path_prefix: &str, status: u16) {
        let body = serde_json::json!({
            "path_prefix": path_prefix,
            "status": status,
            "message": "Resource not accessible by integration"
        });
        self.call("POST", "/_fake/deny", Some(&body.to_string()));
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// The test bed's variables (from the environment, else `.testbed/env`); panics
/// with the command to run when one of `required` is missing.
pub fn testbed_env(required: &[&str]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let file = std::env::var("MLCD_TESTBED_DIR")
        .map(|d| Path::new(&d).join("env"))
        .unwrap_or_else(|_| root().join(".testbed/env"));
    if let Ok(text) = std::fs::read_to_string(&file) {
        for line in text.lines() {
            if let Some((k, v)) = line.strip_prefix("export ").and_then(|l| l.split_once('=')) {
                env.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    for (k, v) in std::env::vars() {
        if k == "DOCKER_HOST" || k.starts_with("MLCD_TESTBED_") {
            env.insert(k, v);
        }
    }
    for k in required {
        assert!(
            env.contains_key(*k),
            "{k} is not set: start the test bed first with `scripts/testbed up` (the README's test command, scripts/test, does it)"
        );
    }
    env
}

/// A number that differs between calls and test processes (namespaces, cache busters).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    std::process::id() as u64 * 1_000_000 + nanos % 997 + N.fetch_add(1, Ordering::SeqCst) * 1000
}

/// A copy of the bundled example whose config pushes to a namespace of its own
/// (`<prefix><unique>`) under `registry` and builds FROM `base`; returns the
/// workspace and the namespace.
pub fn example_pushing_to(registry: &str, base: &str, prefix: &str) -> (Workspace, String) {
    let ws = Workspace::with_example();
    let ns = format!("{prefix}{}", unique());
    let cfg = ws
        .read("example/mlcd.yml")
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("registry: 127.0.0.1") {
                format!("  registry: {registry}/{ns}")
            } else if l.trim_start().starts_with("BASE_IMAGE:") {
                format!("    BASE_IMAGE: \"{base}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    ws.write("example/mlcd.yml", &cfg);
    (ws, ns)
}

/// Starts a Python fake (`script` under tests/, with `args`) that prints
/// `LISTENING <url>` once it serves; its process and URL. `hint` says what to
/// check when it does not start.
pub fn spawn_fake(
    what: &str,
    script: &str,
    args: &[&std::ffi::OsStr],
    hint: &str,
) -> (Child, String) {
    spawn_fake_env(what, script, args, hint, &[])
}

/// [`spawn_fake`] with variables set (`Some`) or removed (`None`) for the fake.
pub fn spawn_fake_env(
    what: &str,
    script: &str,
    args: &[&std::ffi::OsStr],
    hint: &str,
    env: &[(&str, Option<&str>)],
) -> (Child, String) {
    let mut cmd = Command::new("python3");
    for (k, v) in env {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let mut child = cmd
        .arg(root().join(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 runs the {what}: {e}"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("LISTENING ")
        .unwrap_or_else(|| panic!("{what} did not start{hint}: {line:?}"))
        .to_string();
    (child, url)
}

/// The scripted fake SageMaker + CloudWatch Logs (tests/fake_sagemaker), every
/// request validated against botocore's models; stopped when dropped.
pub struct FakeSagemaker {
    child: Child,
    pub url: String,
}

impl FakeSagemaker {
    pub fn start() -> Self {
        let (child, url) = spawn_fake(
            "fake SageMaker",
            "tests/fake_sagemaker/server.py",
            &["--port".as_ref(), "0".as_ref(), "--quiet".as_ref()],
            " (is botocore installed?)",
        );
        FakeSagemaker { child, url }
    }

    /// The fake whose InvokeEndpoint is answered by a real container of the
    /// variant's image on the test bed's Docker engine (`docker_host`); the
    /// image must hold its model (ModelDataUrl is not downloaded).
    pub fn with_containers(docker_host: &str) -> Self {
        let (child, url) = spawn_fake_env(
            "fake SageMaker",
            "tests/fake_sagemaker/server.py",
            &[
                "--port".as_ref(),
                "0".as_ref(),
                "--quiet".as_ref(),
                "--run-containers".as_ref(),
            ],
            " (is botocore installed?)",
            &[("DOCKER_HOST", Some(docker_host))],
        );
        FakeSagemaker { child, url }
    }

    fn call(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        control_call("fake SageMaker", &self.url, method, path, body)
    }

    /// Every request so far: `{seq, service, operation, body, scope, fault}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The requests of one operation (`CreateTrainingJob`, `GetLogEvents`, …).
    pub fn calls(&self, operation: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["operation"] == operation)
            .collect()
    }

    pub fn violations(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/violations", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Asserts that no request broke botocore's model of the service.
    pub fn assert_no_violations(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests broke the SageMaker/Logs contract: {v:#?}"
        );
    }

    /// The next `times` calls of `operation` fail: `throttle`, `500` or `503`.
    pub fn fault(&self, operation: &str, kind: &str, times: u32) {
        let body = serde_json::json!({ "operation": operation, "kind": kind, "times": times });
        self.call("POST", "/_fake/fault", Some(&body.to_string()));
    }
}

impl Drop for FakeSagemaker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A control call to one of the test fakes (`what` names it in the failure),
/// with an optional JSON body; the answer as JSON (Null when it is not JSON).
pub fn control_call(
    what: &str,
    url: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> serde_json::Value {
    let mut args = vec![
        "-sf".to_string(),
        "-X".into(),
        method.into(),
        format!("{url}{path}"),
    ];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            b.into(),
        ]);
    }
    let out = Command::new("curl")
        .args(&args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{what} control call {path} failed");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The fake Vertex AI (with STS, IAM Credentials, Cloud Logging, the OAuth token
/// endpoint and GitHub's OIDC token URL), every request validated against the
/// pinned discovery documents in fixtures/google (tests/fake_vertex/server.py).
pub struct FakeVertex {
    child: Child,
    pub url: String,
}

impl FakeVertex {
    /// The fake without a Docker engine: deployed models answer what
    /// `/_fake/serving` scripts.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// The fake serving each deployed model from a real container of its Model's
    /// image on the test bed's Docker engine (`docker_host`).
    pub fn with_docker(docker_host: &str) -> Self {
        Self::launch(Some(docker_host))
    }

    fn launch(docker_host: Option<&str>) -> Self {
        let (child, url) = spawn_fake_env(
            "fake Vertex AI",
            "tests/fake_vertex/server.py",
            &["--port".as_ref(), "0".as_ref(), "--quiet".as_ref()],
            "",
            &[("DOCKER_HOST", docker_host)],
        );
        FakeVertex { child, url }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        control_call("fake Vertex AI", &self.url, method, path, body)
    }

    /// Every request so far: `{seq, method, http, path, query, body, status, token, expired, time}`.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        self.call("GET", "/_fake/requests", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The requests whose discovery method id ends with `suffix` (`customJobs.create`).
    pub fn calls(&self, suffix: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["method"].as_str().is_some_and(|m| m.ends_with(suffix)))
            .collect()
    }

    /// Asserts that no request broke the discovery documents (nor an answer of the fake's).
    pub fn assert_no_violations(&self) {
        let v = self.call("GET", "/_fake/violations", None);
        assert_eq!(
            v.as_array().map_or(0, Vec::len),
            0,
            "requests broke the Google API contract: {v:#}"
        );
    }

    /// The next `times` calls of the method ending with `method` fail:
    /// `quota` (429), `internal` (500) or `unavailable` (503).
    pub fn fault(&self, method: &str, kind: &str, times: u32) {
        let body = serde_json::json!({ "method": method, "kind": kind, "times": times });
        self.call("POST", "/_fake/fault", Some(&body.to_string()));
    }

    /// Changes the fake's settings (`token_lifetime`, `operation_polls`, `sa_key` …).
    pub fn config(&self, body: serde_json::Value) {
        self.call("POST", "/_fake/config", Some(&body.to_string()));
    }

    /// Runs the real gcloud with its endpoint override pointed at this fake, a
    /// plain access token and the private config directory `config`; (success,
    /// stdout, stderr).
    pub fn gcloud(&self, config: &Path, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("gcloud")
            .args(args)
            .env("CLOUDSDK_CONFIG", config)
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM",
                format!("{}/", self.url),
            )
            .env(
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE",
                format!("{}/", self.url),
            )
            .env("CLOUDSDK_AUTH_ACCESS_TOKEN", "ya29.gcloud-test")
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .env("CLOUDSDK_CORE_PROJECT", "mlcd-test")
            .output()
            .expect("gcloud runs (google-cloud-cli)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Environment reaching this fake with a plain access token, as gcloud's tests do.
    pub fn token_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "CLOUDSDK_AUTH_ACCESS_TOKEN".into(),
                "ya29.mlcd-test-token".into(),
            ),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM".into(),
                format!("{}/", self.url),
            ),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_LOGGING".into(),
                format!("{}/", self.url),
            ),
            (
                "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE".into(),
                format!("{}/", self.url),
            ),
        ]
    }
}

impl Drop for FakeVertex {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
