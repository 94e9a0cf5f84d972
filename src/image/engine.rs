//! The Docker engine through bollard: connect (bounded), build from a context tar
//! streamed as the engine reads it (never held whole), reading the build output to its end (an error item is a failure, pointed at the
//! failing Dockerfile instruction), tag, and push with retries on transient errors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::cloud::retry::{retry, Backoff};
use crate::error::{Location, UserError};
use crate::image::context::{spawn_tar, BuildContext, StreamError};
use crate::image::labels;
use crate::image::registry::Credentials;

/// How long connecting to the engine may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to the Docker engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    host: String,
}

/// What to build.
pub struct BuildSpec<'a> {
    /// The Dockerfile's path inside the context tar.
    pub dockerfile: &'a str,
    /// The Dockerfile on disk, relative to the workspace (for error locations).
    pub dockerfile_display: &'a str,
    /// The Dockerfile's text (to map a failing step to its line).
    pub dockerfile_text: &'a str,
    /// The stage to build.
    pub target: Option<&'a str>,
    /// Build arguments.
    pub args: &'a BTreeMap<String, String>,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The platform, if one.
    pub platform: Option<&'a str>,
    /// The first `repository:tag` to name the image.
    pub name: &'a str,
}

/// A built image.
pub struct Built {
    /// The image id (`sha256:…`).
    pub id: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The registry refused the credentials: never retried.
    #[error("{0}")]
    Unauthorized(String),
    /// A failure that may pass (5xx, 429, connection reset or refused).
    #[error("{0}")]
    Transient(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

impl PushError {
    fn classify(message: String) -> PushError {
        let m = message.to_ascii_lowercase();
        if [
            "unauthorized",
            "authentication required",
            "denied",
            "forbidden",
            "no basic auth credentials",
        ]
        .iter()
        .any(|k| m.contains(k))
        {
            PushError::Unauthorized(message)
        } else if [
            "connection refused",
            "connection reset",
            "broken pipe",
            "eof",
            "timeout",
            "timed out",
            "tls handshake",
            "500 internal",
            "502",
            "503",
            "504",
            "429",
            "too many requests",
            // A 429 with the registry's JSON error body, as dockerd reports it
            // (`toomanyrequests: <message>`); dockerd itself never retries it.
            "toomanyrequests",
            "no such host",
            "i/o timeout",
            "unavailable",
        ]
        .iter()
        .any(|k| m.contains(k))
        {
            PushError::Transient(message)
        } else {
            PushError::Other(message)
        }
    }
}

/// One instruction of a Dockerfile, with the line it starts on.
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if current.is_none() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        let (start, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if line.starts_with('#') {
            current = Some((start, acc));
            continue;
        }
        let (body, cont) = match line.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (line, false),
        };
        if !acc.is_empty() {
            acc.push(' ');
        }
        acc.push_str(body);
        if cont {
            current = Some((start, acc));
        } else {
            out.push((start, acc));
        }
    }
    if let Some(c) = current {
        out.push(c);
    }
    out
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// The Dockerfile line of the instruction a classic-builder step printed
/// (`Step 3/7 : RUN make`), matched by its text, else by its position.
pub fn step_line(dockerfile: &str, step: &str) -> Option<usize> {
    let (num, text) = step.strip_prefix("Step ")?.split_once(" : ")?;
    let n: usize = num.split('/').next()?.trim().parse().ok()?;
    let ins = instructions(dockerfile);
    let want = normalize(text);
    ins.iter()
        .find(|(_, t)| normalize(t) == want)
        .or_else(|| {
            ins.iter().find(|(_, t)| {
                want.len() > 10 && normalize(t).starts_with(&want[..want.len().min(60)])
            })
        })
        .or_else(|| ins.get(n.checked_sub(1)?))
        .map(|(l, _)| *l)
}

impl Engine {
    /// Connects to the engine at `DOCKER_HOST` (or the default socket) and checks it answers.
    pub async fn connect() -> Result<Engine, UserError> {
        let host =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let hint = "start the Docker engine (on this project's test machines: `scripts/testbed up docker` then `. .testbed/env`), or point DOCKER_HOST at it";
        let docker = Docker::connect_with_defaults().map_err(|e| {
            UserError::failed(format!(
                "cannot connect to the Docker engine at {host}: {e}"
            ))
            .hint(hint)
        })?;
        match tokio::time::timeout(CONNECT_TIMEOUT, docker.ping()).await {
            Ok(Ok(_)) => Ok(Engine { docker, host }),
            Ok(Err(e)) => Err(UserError::failed(format!(
                "the Docker engine at {host} does not answer: {e}"
            ))
            .hint(hint)),
            Err(_) => Err(UserError::failed(format!(
                "the Docker engine at {host} did not answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))
            .hint(hint)),
        }
    }

    /// The engine's address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The bollard client, for the training and serving backends.
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// Builds `context`, streaming its tar to the engine as it reads it; every line
    /// of output goes to `log`. A failing instruction becomes an error located on
    /// its Dockerfile line; a context file that changed since it was hashed stops
    /// the build.
    pub async fn build(
        &self,
        context: std::sync::Arc<BuildContext>,
        spec: &BuildSpec<'_>,
        log: &mut dyn FnMut(&str),
    ) -> Result<Built, UserError> {
        let args: HashMap<String, String> = spec.args.clone().into_iter().collect();
        // No `labels` here: the engine's classic builder turns each one into a LABEL
        // instruction of its own, a commit each, and under a copying storage driver
        // (vfs) every commit copies the whole root filesystem. They are applied
        // after, without a commit ([`Engine::label`]).
        let mut opts = BuildImageOptionsBuilder::default()
            .dockerfile(spec.dockerfile)
            .t(spec.name)
            .buildargs(&args)
            .rm(true)
            .forcerm(true);
        if let Some(t) = spec.target {
            opts = opts.target(t);
        }
        if let Some(p) = spec.platform {
            opts = opts.platform(p);
        }
        let (body, sender) = spawn_tar(context);
        let mut stream =
            self.docker
                .build_image(opts.build(), None, Some(bollard::body_try_stream(body)));
        let mut last_step: Option<String> = None;
        let mut tail: Vec<String> = Vec::new();
        let mut id: Option<String> = None;
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream.as_deref() {
                        for line in s.lines().filter(|l| !l.trim().is_empty()) {
                            log(line);
                            if line.starts_with("Step ") {
                                last_step = Some(line.to_string());
                                tail.clear();
                            } else {
                                tail.push(line.to_string());
                                if tail.len() > 20 {
                                    tail.remove(0);
                                }
                            }
                        }
                    }
                    if let Some(aux) = info.aux.as_ref().and_then(|a| a.id.clone()) {
                        id = Some(aux);
                    }
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        failure.get_or_insert(e);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        drop(stream);
        // The context's own failure (a file changed or unreadable) says more than
        // the engine's view of a truncated upload; a sender that stopped because the
        // engine stopped reading defers to the engine's error.
        match sender.await {
            Ok(Ok(())) | Ok(Err(StreamError::Aborted(_))) if failure.is_some() => {}
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(e) => {
                return Err(UserError::failed(format!(
                    "the task sending the build context failed: {e}"
                )))
            }
        }
        if let Some(message) = failure {
            let mut text = format!("the image build failed: {message}");
            if let Some(step) = &last_step {
                text.push_str(&format!("\nat {step}"));
            }
            if !tail.is_empty() {
                text.push_str(&format!("\nlast output:\n{}", tail.join("\n")));
            }
            let mut err = UserError::failed(text).hint("fix the failing Dockerfile instruction; the full build log is in the `Build` log group");
            if let Some(line) = last_step
                .as_deref()
                .and_then(|s| step_line(spec.dockerfile_text, s))
            {
                err = err.at(Location {
                    file: Path::new(spec.dockerfile_display).to_path_buf(),
                    line,
                    column: None,
                });
            }
            return Err(err);
        }
        let id = id.ok_or_else(|| {
            UserError::failed("the Docker engine finished the build without reporting an image id")
        })?;
        let id = if spec.labels.is_empty() {
            id
        } else {
            self.label(&id, spec.labels, spec.name).await?
        };
        let size = self.size(&id).await;
        Ok(Built { id, size })
    }

    /// Adds `labels` to the image `id` and names the result `name`; returns the
    /// labelled image's id. Loads the labelled config alone (no commit, nothing
    /// copied); an engine that cannot (one that stores images elsewhere, such as
    /// the containerd image store) gets one LABEL instruction instead.
    async fn label(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<String, UserError> {
        match self.label_by_load(id, labels, name).await {
            Ok(labelled) => return Ok(labelled),
            Err(e) => log::info!(
                "labelling {name} by loading its config failed ({e}): adding a LABEL instruction"
            ),
        }
        self.label_by_commit(id, labels, name).await
    }

    /// [`Engine::label`] by loading a config-only archive, checked: the engine
    /// must report the config's id for `name`, with the labels.
    async fn label_by_load(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<String, String> {
        let inspect = self
            .docker
            .inspect_image(id)
            .await
            .map_err(|e| e.to_string())?;
        let history = self
            .docker
            .image_history(id)
            .await
            .map_err(|e| e.to_string())?;
        let layers = inspect
            .root_fs
            .as_ref()
            .and_then(|r| r.layers.as_ref())
            .map_or(0, Vec::len);
        let config = labels::labelled_config(&inspect, &history, labels)
            .ok_or("the engine did not describe the image fully")?;
        let archive =
            labels::config_only_archive(&config, name, layers).map_err(|e| e.to_string())?;
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::default()
            .quiet(true)
            .build();
        let mut stream = self
            .docker
            .import_image(opts, bollard::body_full(archive.into()), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| e.to_string())?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(e);
            }
        }
        let want = labels::image_id(&config);
        let loaded = self
            .docker
            .inspect_image(name)
            .await
            .map_err(|e| e.to_string())?;
        let got = loaded.config.and_then(|c| c.labels).unwrap_or_default();
        if loaded.id.as_deref() != Some(want.as_str())
            || labels.iter().any(|(k, v)| got.get(k) != Some(v))
        {
            return Err(format!(
                "the engine holds {name} as {:?}, not {want}",
                loaded.id
            ));
        }
        Ok(want)
    }

    /// [`Engine::label`] in one LABEL instruction (one commit).
    async fn label_by_commit(
        &self,
        id: &str,
        labels: &BTreeMap<String, String>,
        name: &str,
    ) -> Result<String, UserError> {
        let dockerfile = labelling_dockerfile(id, labels);
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(dockerfile.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        let failed = |e: &dyn std::fmt::Display| {
            UserError::failed(format!("labelling the built image failed: {e}"))
        };
        tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
            .map_err(|e| failed(&e))?;
        let body = tar.into_inner().map_err(|e| failed(&e))?;
        let opts = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(name)
            .rm(true)
            .forcerm(true);
        let mut stream =
            self.docker
                .build_image(opts.build(), None, Some(bollard::body_full(body.into())));
        let mut labelled = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| failed(&e))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(failed(&e));
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                labelled = Some(aux);
            }
        }
        labelled.ok_or_else(|| failed(&"the engine reported no image id"))
    }

    /// The size of a local image in bytes (0 when unknown).
    pub async fn size(&self, image: &str) -> u64 {
        self.docker
            .inspect_image(image)
            .await
            .ok()
            .and_then(|i| i.size)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0)
    }

    /// A local image's id and size, if the engine has it.
    pub async fn local(&self, image: &str) -> Option<Built> {
        let i = self.docker.inspect_image(image).await.ok()?;
        Some(Built {
            id: i.id?,
            size: i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        })
    }

    /// Tags a local image as `repo:tag`.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), UserError> {
        let opts = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(opts))
            .await
            .map_err(|e| UserError::failed(format!("tagging {image} as {repo}:{tag} failed: {e}")))
    }

    /// Fails clearly, before anything runs, when `instance` asks for GPUs and the
    /// engine has no GPU runtime. `what` is `train` or `serve`, for the hint.
    pub async fn require_gpus(
        &self,
        instance: &crate::instance::Resolved,
        what: &str,
    ) -> Result<(), UserError> {
        if instance.gpus == 0 {
            return Ok(());
        }
        let info = self.docker.info().await.map_err(|e| {
            UserError::failed(format!(
                "Docker engine at {}: cannot read the engine's info: {e}",
                self.host
            ))
        })?;
        let has_gpu_runtime = info
            .runtimes
            .as_ref()
            .is_some_and(|r| r.keys().any(|k| k.contains("nvidia")));
        if has_gpu_runtime {
            return Ok(());
        }
        Err(UserError::failed(format!(
            "instance `{}` needs {} GPU(s), but the Docker engine at {} has no GPU runtime (no `nvidia` runtime is registered)",
            instance.requested, instance.gpus, self.host
        ))
        .hint(format!("{what} on a cpu.* instance locally, install the NVIDIA Container Toolkit on this machine, or use `backend: sagemaker`")))
    }

    /// Makes sure `image` is on the engine, pulling it with `creds` (and the
    /// shared retries) when it is not.
    pub async fn ensure_image(
        &self,
        image: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), UserError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        log::info!("the image {image} is not on the engine: pulling it");
        self.pull(image, creds, &Backoff::from_env()).await.map_err(|e| {
            UserError::failed(format!(
                "the image `{image}` is not on the Docker engine at {} and pulling it failed: {e}",
                self.host
            ))
            .hint("build it first (`mlcd build`, or `mode: build` in an earlier step), or give `registry-username`/`registry-password` (or `github-token` for ghcr.io) so it can be pulled")
        })
    }

    /// Pulls `image` (`repo:tag` or `repo@digest`), reading the stream to its
    /// end; transient failures are retried with backoff, refused credentials are not.
    pub async fn pull(
        &self,
        image: &str,
        creds: Option<&Credentials>,
        backoff: &Backoff,
    ) -> Result<(), PushError> {
        let what = format!("pull of {image}");
        retry(
            &what,
            backoff,
            |e| matches!(e, PushError::Transient(_)),
            || self.pull_once(image, creds),
        )
        .await
    }

    async fn pull_once(&self, image: &str, creds: Option<&Credentials>) -> Result<(), PushError> {
        let auth = creds.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.expose().to_string()),
            serveraddress: image.split('/').next().map(str::to_string),
            ..Default::default()
        });
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
            .from_image(image)
            .build();
        let mut stream = self.docker.create_image(Some(opts), None, auth);
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        failure.get_or_insert(e);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        match failure {
            Some(m) => Err(PushError::classify(crate::secrets::redact(&m))),
            None => Ok(()),
        }
    }

    /// Pushes `repo:tag`, reading the stream to its end; transient failures are
    /// retried with backoff, refused credentials are not.
    pub async fn push(
        &self,
        repo: &str,
        tag: &str,
        creds: Option<&Credentials>,
        backoff: &Backoff,
    ) -> Result<(), PushError> {
        let what = format!("push of {repo}:{tag}");
        retry(
            &what,
            backoff,
            |e| matches!(e, PushError::Transient(_)),
            || self.push_once(repo, tag, creds),
        )
        .await
    }

    async fn push_once(
        &self,
        repo: &str,
        tag: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), PushError> {
        let auth = creds.map(|c| bollard::auth::DockerCredentials {
            username: Some(c.username.clone()),
            password: Some(c.password.expose().to_string()),
            serveraddress: repo.split('/').next().map(str::to_string),
            ..Default::default()
        });
        let opts = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = self.docker.push_image(repo, Some(opts), auth);
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(e) = info.error_detail.and_then(|d| d.message) {
                        failure.get_or_insert(e);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e.to_string());
                }
            }
        }
        match failure {
            Some(m) => Err(PushError::classify(crate::secrets::redact(&m))),
            None => Ok(()),
        }
    }
}

/// `FROM <id>` and every label in one LABEL instruction, each key and value
/// double-quoted with `\`, `"` and `$` escaped (LABEL expands variables) and line
/// breaks as spaces (an instruction is one line).
fn labelling_dockerfile(id: &str, labels: &BTreeMap<String, String>) -> String {
    fn quote(s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '\\' | '"' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                '\n' | '\r' => out.push(' '),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}={}", quote(k), quote(v)))
        .collect();
    format!("FROM {id}\nLABEL {}\n", pairs.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_go_in_one_instruction_quoted_so_nothing_is_expanded() {
        let labels = BTreeMap::from([
            ("a.b".to_string(), "plain".to_string()),
            ("c".to_string(), "say \"$HOME\" \\ now\nnext".to_string()),
        ]);
        assert_eq!(
            labelling_dockerfile("sha256:abc", &labels),
            "FROM sha256:abc\nLABEL \"a.b\"=\"plain\" \"c\"=\"say \\\"\\$HOME\\\" \\\\ now next\"\n"
        );
    }

    const DOCKERFILE: &str = "# syntax comment\nARG BASE=local/python:3.11\nFROM ${BASE}\n\nCOPY . /app\nRUN python3 -c \\\n  'import sys; sys.exit(3)'\nENTRYPOINT [\"python3\"]\n";

    #[test]
    fn steps_map_to_their_dockerfile_lines() {
        assert_eq!(
            step_line(DOCKERFILE, "Step 1/5 : ARG BASE=local/python:3.11"),
            Some(2)
        );
        assert_eq!(step_line(DOCKERFILE, "Step 3/5 : COPY . /app"), Some(5));
        assert_eq!(
            step_line(
                DOCKERFILE,
                "Step 4/5 : RUN python3 -c   'import sys; sys.exit(3)'"
            ),
            Some(6)
        );
        assert_eq!(
            step_line(DOCKERFILE, "Step 5/5 : something unknown"),
            Some(8)
        );
        assert_eq!(step_line(DOCKERFILE, "not a step"), None);
    }

    #[test]
    fn push_errors_are_classified() {
        assert!(matches!(
            PushError::classify("unauthorized: authentication required".into()),
            PushError::Unauthorized(_)
        ));
        assert!(matches!(
            PushError::classify(
                "Get \"http://127.0.0.1:1/v2/\": dial tcp: connect: connection refused".into()
            ),
            PushError::Transient(_)
        ));
        assert!(matches!(
            PushError::classify("manifest invalid".into()),
            PushError::Other(_)
        ));
    }

    #[test]
    fn failures_dockerd_reports_from_a_failing_registry_are_transient() {
        // What dockerd 20.10 reports (measured through a fault-injecting proxy):
        // a 5xx, a dropped connection, a 429 with the registry's JSON error body.
        for m in [
            "Docker stream error: received unexpected HTTP status: 503 Service Unavailable",
            "Docker stream error: received unexpected HTTP status: 502 Bad Gateway",
            "Docker stream error: EOF",
            "Docker stream error: toomanyrequests: rate limit exceeded, slow down",
            "toomanyrequests: You have reached your pull rate limit. You may increase the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit",
        ] {
            assert!(
                matches!(PushError::classify(m.into()), PushError::Transient(_)),
                "{m}"
            );
        }
    }
}
