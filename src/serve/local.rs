//! `backend: local` serving on the Docker engine. Each version is a container
//! `mlcd-serve-<endpoint>-<version>` on the host network with a port of its own
//! and its model copied in as a tar stream (never a bind mount); the endpoint is
//! a router container `mlcd-endpoint-<endpoint>` running this very binary's
//! hidden `mlcd route` on a stable port, from mlcd's own tiny image (see
//! router_image.rs; never from the serving image), with the live weights in its
//! `/mlcd/routes.json`. The containers, their labels and that file are the whole
//! state: no state file, so any process (a later step, a rollback) sees the same
//! endpoint.
//!
//! Capture files are written by the router inside its container
//! (`/mlcd/capture`), never to a bind mount: bind-mount paths are the daemon
//! host's, which mlcd running in an action container does not know. They are
//! copied out through the engine's archive API ([`LocalServing::pull_capture`]),
//! the same way the routes file goes in. The live counters the rollout guards
//! read come from the router's `GET /_mlcd/stats`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, DeviceRequest, HostConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use super::capture::{self, CaptureSettings};
use super::router::{RouteConfig, RouterStats, Upstream, STATS_PATH};
use super::router_image::RouterImage;
use super::stats::{TrafficMark, VersionStats};
use super::{
    Answer, EndpointState, EndpointStatus, Invocation, ServingBackend, Variant, VersionSpec,
};
use crate::config::values::Protocol;
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::image::engine::Engine;
use crate::image::registry::Credentials;

const LABEL_ENDPOINT: &str = "dev.mlcd.endpoint";
const LABEL_ROLE: &str = "dev.mlcd.role";
const LABEL_VERSION: &str = "dev.mlcd.version";
const LABEL_PORT: &str = "dev.mlcd.port";
const LABEL_WEIGHT: &str = "dev.mlcd.weight";
const LABEL_SHADOW: &str = "dev.mlcd.shadow";
const LABEL_IMAGE: &str = "dev.mlcd.image";
const LABEL_PROTOCOL: &str = "dev.mlcd.protocol";
const LABEL_MODEL_NAME: &str = "dev.mlcd.model-name";
/// Prefix of the labels that carry a version's tags (its identity among them).
const LABEL_TAG: &str = "dev.mlcd.tag.";
const LABEL_TIMEOUT_MS: &str = "dev.mlcd.request-timeout-ms";

const ROLE_ROUTER: &str = "router";
const ROLE_VERSION: &str = "version";

/// Where the router's files live inside its container.
const ROUTER_DIR: &str = "/mlcd";
const ROUTES_FILE: &str = "/mlcd/routes.json";

/// How long a readiness probe or the router's accept check may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How many log lines of a crashed container make its failure reason.
const FAILURE_LOG_LINES: &str = "15";

/// The local Docker engine as a serving backend.
pub struct LocalServing {
    engine: Engine,
    docker: Docker,
    host: String,
    pull_credentials: Option<Credentials>,
    router_binary: Option<PathBuf>,
    router_image: tokio::sync::OnceCell<RouterImage>,
    http: reqwest::Client,
    poll: Duration,
    capture: Option<CaptureSettings>,
    capture_dest: Option<PathBuf>,
}

/// What [`LocalServing::pull_capture`] copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturePull {
    /// Capture files written on this machine (new or grown since the last pull).
    pub files: usize,
    /// Records (lines) in those files.
    pub records: usize,
}

/// A version's container, as its labels and state describe it.
#[derive(Debug, Clone)]
struct VersionBox {
    version: String,
    container: String,
    port: u16,
    image: String,
    protocol: Protocol,
    model_name: String,
    timeout: Duration,
    weight: u8,
    shadow: bool,
    state: ContainerSummaryStateEnum,
}

/// The endpoint's router container.
#[derive(Debug, Clone)]
struct RouterBox {
    container: String,
    port: u16,
    state: ContainerSummaryStateEnum,
}

/// Everything the engine holds for one endpoint.
#[derive(Debug, Default)]
struct Found {
    router: Option<RouterBox>,
    versions: Vec<VersionBox>,
}

impl Found {
    fn version(&self, v: &str) -> Option<&VersionBox> {
        self.versions.iter().find(|b| b.version == v)
    }

    fn names(&self) -> String {
        if self.versions.is_empty() {
            return "none".into();
        }
        self.versions
            .iter()
            .map(|b| format!("`{}`", b.version))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn running(s: ContainerSummaryStateEnum) -> bool {
    s == ContainerSummaryStateEnum::RUNNING
}

fn ended(s: ContainerSummaryStateEnum) -> bool {
    matches!(
        s,
        ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD
    )
}

/// Checks an endpoint name: it names containers (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn check_endpoint(endpoint: &str) -> Result<(), UserError> {
    let ok = endpoint
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && endpoint
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && endpoint.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "endpoint `{endpoint}`: expected letters, digits, `-`, `_` or `.`, starting with a letter or digit, at most 63 characters (it names the endpoint's containers)"
        ))
        .hint("set `deploy.endpoint` in mlcd.yml to a name like `churn`"))
    }
}

/// Checks a version id: letters, digits and `-`, at most 32 characters.
fn check_version(version: &str) -> Result<(), UserError> {
    let ok = !version.is_empty()
        && version.len() <= 32
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "version `{version}`: expected letters, digits and `-`, at most 32 characters"
        )))
    }
}

/// A port nobody listens on now (bound and released; the container takes it
/// next), and none of `taken` (ports promised to containers still starting).
fn free_port(taken: &[u16]) -> Result<u16, UserError> {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| UserError::failed(format!("cannot find a free port on 127.0.0.1: {e}")))?;
        if !taken.contains(&port) {
            return Ok(port);
        }
    }
    Err(UserError::failed(
        "cannot find a free port on 127.0.0.1 that no mlcd container holds",
    ))
}

fn dir_header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(now_secs());
    h
}

fn file_header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(now_secs());
    h
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tar put at `/` of a version container: `/opt/ml/model` holding the
/// model artifact's files (a `model.tar.gz`, a plain tar, or a directory).
fn model_tar(model_data: Option<&str>) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut b = tar::Builder::new(Vec::new());
    for d in ["opt/", "opt/ml/", "opt/ml/model/"] {
        b.append_data(&mut dir_header(), d, std::io::empty())?;
    }
    let Some(path) = model_data else {
        return b.into_inner();
    };
    let path = Path::new(path);
    if path.is_dir() {
        b.follow_symlinks(true);
        b.append_dir_all("opt/ml/model", path)?;
        return b.into_inner();
    }
    let mut raw = Vec::new();
    std::fs::File::open(path)?.read_to_end(&mut raw)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out)?;
        out
    } else {
        raw
    };
    let mut archive = tar::Archive::new(bytes.as_slice());
    let mut files = 0;
    for entry in archive.entries()? {
        let mut e = entry?;
        let rel = e.path()?.into_owned();
        let rel: PathBuf = rel
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        b.append_data(&mut h, Path::new("opt/ml/model").join(rel), data.as_slice())?;
        files += 1;
    }
    if files == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the archive holds no files",
        ));
    }
    b.into_inner()
}

/// The router's route config, at `/mlcd/routes.json` (the image holds the rest).
fn router_tar(routes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(
        &mut file_header(routes.len() as u64, 0o644),
        "mlcd/routes.json",
        routes,
    )?;
    b.into_inner()
}

/// Writes the capture files of a tar Docker sent into `dest`.
fn unpack_capture(tar_bytes: &[u8], dest: &Path) -> Result<CapturePull, UserError> {
    use std::io::Read;
    let fail = |e: std::io::Error| {
        UserError::failed(format!(
            "cannot write capture files to {}: {e}",
            dest.display()
        ))
        .hint("set `deploy.capture.path` to a writable directory")
    };
    std::fs::create_dir_all(dest).map_err(fail)?;
    let mut pulled = CapturePull::default();
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().map_err(fail)? {
        let mut e = e.map_err(fail)?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .unwrap_or_default();
        if !capture::is_capture_file(&name) {
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(fail)?;
        let whole = capture::complete_lines(&data);
        let target = dest.join(&name);
        let have = std::fs::metadata(&target).map_or(0, |m| m.len());
        if whole.is_empty() || whole.len() as u64 <= have {
            continue;
        }
        let tmp = dest.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, whole)
            .and_then(|()| std::fs::rename(&tmp, &target))
            .map_err(fail)?;
        pulled.files += 1;
        pulled.records += whole.iter().filter(|b| **b == b'\n').count();
    }
    Ok(pulled)
}

/// The one file in a tar archive Docker sent.
fn first_file(tar_bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar_bytes);
    for e in a.entries().ok()? {
        let mut e = e.ok()?;
        if e.header().entry_type().is_file() {
            let mut out = Vec::new();
            e.read_to_end(&mut out).ok()?;
            return Some(out);
        }
    }
    None
}

fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

impl LocalServing {
    /// A backend on `engine`; the router runs this process's own executable.
    pub fn new(engine: &Engine) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a plain HTTP client builds");
        LocalServing {
            engine: engine.clone(),
            docker: engine.docker().clone(),
            host: engine.host().to_string(),
            pull_credentials: None,
            router_binary: None,
            router_image: tokio::sync::OnceCell::new(),
            http,
            // The engine and the probes are on this machine: asking often is
            // cheap, and a deploy notices a ready version sooner.
            poll: crate::train::poll_interval_from_env(
                &std::env::vars().collect(),
                Duration::from_millis(100),
            ),
            capture: None,
            capture_dest: None,
        }
    }

    /// Turns traffic capture on for endpoints this backend deploys to (the
    /// router writes into its container, see capture.rs); None turns it off
    /// at the next deploy. `dest` is where [`ServingBackend::teardown`] copies
    /// the capture files before the router goes.
    pub fn with_capture(mut self, settings: Option<(CaptureSettings, PathBuf)>) -> Self {
        match settings {
            Some((mut c, dest)) => {
                c.dir = capture::ROUTER_CAPTURE_DIR.to_string();
                self.capture = Some(c);
                self.capture_dest = Some(dest);
            }
            None => {
                self.capture = None;
                self.capture_dest = None;
            }
        }
        self
    }

    /// The router's counters, read from its `GET /_mlcd/stats`.
    async fn router_stats(&self, endpoint: &str) -> Result<RouterStats, UserError> {
        let found = self.find(endpoint).await?;
        let router = found.router.ok_or_else(|| self.no_endpoint(endpoint))?;
        let url = format!("http://127.0.0.1:{}{STATS_PATH}", router.port);
        let fail = |e: &dyn std::fmt::Display| {
            UserError::failed(format!(
                "cannot read the live counters of endpoint `{endpoint}` from its router at {url}: {e}"
            ))
            .hint(format!("`docker logs {}` shows what the router did", router.container))
        };
        let resp = self
            .http
            .get(&url)
            .timeout(PROBE_TIMEOUT * 5)
            .send()
            .await
            .map_err(|e| fail(&e))?;
        if !resp.status().is_success() {
            return Err(fail(&format!(
                "HTTP {} (a router from an mlcd release before live counters? deploy again to replace it)",
                resp.status()
            )));
        }
        resp.json().await.map_err(|e| fail(&e))
    }

    /// Copies the endpoint's capture files out of its router into `dest`
    /// (created when missing): each `*.jsonl` file whole lines only, written
    /// again when it grew since the last copy. The router keeps its files (up
    /// to `deploy.capture.max-size`), so a copy can be taken again any time.
    pub async fn pull_capture(
        &self,
        endpoint: &str,
        dest: &Path,
    ) -> Result<CapturePull, UserError> {
        let found = self.find(endpoint).await?;
        let router = found.router.ok_or_else(|| self.no_endpoint(endpoint))?;
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(capture::ROUTER_CAPTURE_DIR)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&router.container, Some(opts));
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => tar_bytes.extend_from_slice(&b),
                // Capture never wrote anything (off, or no traffic yet).
                Err(e) if not_found(&e) => return Ok(CapturePull::default()),
                Err(e) => {
                    return Err(self.engine_error(
                        &format!(
                            "cannot copy {} out of {}",
                            capture::ROUTER_CAPTURE_DIR,
                            router.container
                        ),
                        e,
                    ))
                }
            }
        }
        let dest = dest.to_path_buf();
        tokio::task::spawn_blocking(move || unpack_capture(&tar_bytes, &dest))
            .await
            .map_err(|e| UserError::failed(format!("copying capture files: {e}")))?
    }

    /// The credentials a missing image is pulled with.
    pub fn with_pull_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.pull_credentials = credentials;
        self
    }

    /// The `mlcd` executable the router image is made of (default: the
    /// running executable; tests, which run inside a test harness, name the
    /// built `mlcd`).
    pub fn with_router_binary(mut self, path: PathBuf) -> Self {
        self.router_binary = Some(path);
        self
    }

    /// The container serving `version` of `endpoint`.
    pub fn version_container(endpoint: &str, version: &str) -> String {
        format!("mlcd-serve-{endpoint}-{version}")
    }

    /// The endpoint's router container.
    pub fn router_container(endpoint: &str) -> String {
        format!("mlcd-endpoint-{endpoint}")
    }

    fn router_binary(&self) -> Result<PathBuf, UserError> {
        match &self.router_binary {
            Some(p) => Ok(p.clone()),
            None => std::env::current_exe().map_err(|e| {
                UserError::failed(format!(
                    "cannot find the running mlcd executable to start the endpoint's router: {e}"
                ))
            }),
        }
    }

    fn engine_error(&self, what: &str, e: impl std::fmt::Display) -> UserError {
        UserError::failed(format!("Docker engine at {}: {what}: {e}", self.host))
    }

    fn no_endpoint(&self, endpoint: &str) -> UserError {
        UserError::failed(format!(
            "no local endpoint named `{endpoint}` on the Docker engine at {} (no container {})",
            self.host,
            Self::router_container(endpoint)
        ))
        .hint("deploy a first version to create it")
    }

    fn no_version(&self, endpoint: &str, version: &str, found: &Found) -> UserError {
        UserError::failed(format!(
            "endpoint `{endpoint}` has no version `{version}` (its versions: {})",
            found.names()
        ))
    }

    /// Every container (running or not) carrying all of `labels` (`key=value`).
    async fn labelled(&self, labels: Vec<String>) -> Result<Vec<ContainerSummary>, UserError> {
        let filters: HashMap<&str, Vec<String>> = HashMap::from([("label", labels)]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.engine_error("cannot list containers", e))
    }

    /// The endpoint's containers, read from their labels.
    async fn find(&self, endpoint: &str) -> Result<Found, UserError> {
        let list = self
            .labelled(vec![format!("{LABEL_ENDPOINT}={endpoint}")])
            .await?;
        let mut found = Found::default();
        for c in list {
            let ContainerSummary {
                names,
                labels,
                state,
                ..
            } = c;
            let labels = labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let container = names
                .unwrap_or_default()
                .first()
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let state = state.unwrap_or(ContainerSummaryStateEnum::EMPTY);
            let port = label(LABEL_PORT).parse().unwrap_or(0);
            match label(LABEL_ROLE).as_str() {
                ROLE_ROUTER => {
                    found.router = Some(RouterBox {
                        container,
                        port,
                        state,
                    })
                }
                ROLE_VERSION => found.versions.push(VersionBox {
                    version: label(LABEL_VERSION),
                    container,
                    port,
                    image: label(LABEL_IMAGE),
                    protocol: label(LABEL_PROTOCOL).parse().unwrap_or(Protocol::Sagemaker),
                    model_name: label(LABEL_MODEL_NAME),
                    timeout: Duration::from_millis(
                        label(LABEL_TIMEOUT_MS).parse().unwrap_or(60_000),
                    ),
                    weight: label(LABEL_WEIGHT).parse().unwrap_or(0),
                    shadow: label(LABEL_SHADOW) == "true",
                    state,
                }),
                _ => {}
            }
        }
        found.versions.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(found)
    }

    /// The ports every mlcd serving container on the engine holds (a container
    /// still starting does not listen yet, so a bind test alone would miss it).
    async fn taken_ports(&self) -> Result<Vec<u16>, UserError> {
        let filters: HashMap<&str, Vec<String>> =
            HashMap::from([("label", vec![LABEL_PORT.to_string()])]);
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| self.engine_error("cannot list containers", e))?;
        Ok(list
            .iter()
            .filter_map(|c| c.labels.as_ref()?.get(LABEL_PORT)?.parse().ok())
            .collect())
    }

    /// The router's live routes (None when the file cannot be read back).
    async fn read_routes(&self, router: &RouterBox) -> Result<Option<RouteConfig>, UserError> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(ROUTES_FILE)
            .build();
        let mut stream = self
            .docker
            .download_from_container(&router.container, Some(opts));
        let mut tar_bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => tar_bytes.extend_from_slice(&b),
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => {
                    return Err(self.engine_error(
                        &format!("cannot read {ROUTES_FILE} from {}", router.container),
                        e,
                    ))
                }
            }
        }
        Ok(first_file(&tar_bytes).and_then(|b| RouteConfig::parse(&b).ok()))
    }

    /// The routes, or an error saying the endpoint is not in a state to change.
    async fn routes_for_change(
        &self,
        endpoint: &str,
        found: &Found,
    ) -> Result<(RouterBox, RouteConfig), UserError> {
        let router = found
            .router
            .clone()
            .ok_or_else(|| self.no_endpoint(endpoint))?;
        let routes = self.read_routes(&router).await?.ok_or_else(|| {
            UserError::failed(format!(
                "the router of endpoint `{endpoint}` ({}) holds no readable {ROUTES_FILE}",
                router.container
            ))
            .hint(format!(
                "tear the endpoint down and deploy again (`docker rm -f {}` removes the router)",
                router.container
            ))
        })?;
        Ok((router, routes))
    }

    /// Replaces the router's routes (it reloads them within ~150 ms).
    async fn write_routes(
        &self,
        router: &RouterBox,
        routes: &RouteConfig,
    ) -> Result<(), UserError> {
        let json = routes.to_json();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut file_header(json.len() as u64, 0o644),
            "routes.json",
            json.as_slice(),
        )
        .map_err(|e| UserError::failed(format!("cannot pack the routes: {e}")))?;
        let tar_bytes = b
            .into_inner()
            .map_err(|e| UserError::failed(format!("cannot pack the routes: {e}")))?;
        let opts = UploadToContainerOptionsBuilder::default()
            .path(ROUTER_DIR)
            .build();
        self.docker
            .upload_to_container(
                &router.container,
                Some(opts),
                bollard::body_full(tar_bytes.into()),
            )
            .await
            .map_err(|e| {
                self.engine_error(
                    &format!("cannot update the routes of {}", router.container),
                    e,
                )
            })
    }

    async fn remove(&self, container: &str) -> Result<(), UserError> {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(self.engine_error(&format!("cannot remove {container}"), e)),
        }
    }

    /// The last lines a container logged.
    async fn last_logs(&self, container: &str) -> String {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .tail(FAILURE_LOG_LINES)
            .build();
        let mut stream = self.docker.logs(container, Some(opts));
        let mut text = String::new();
        while let Some(Ok(o)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&o.into_bytes()));
        }
        text.trim().to_string()
    }

    async fn exit_code(&self, container: &str) -> Option<i64> {
        self.docker
            .inspect_container(container, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.exit_code)
    }

    async fn crash_reason(&self, what: &str, container: &str) -> String {
        let code = self
            .exit_code(container)
            .await
            .map_or("unknown".to_string(), |c| c.to_string());
        let logs = self.last_logs(container).await;
        if logs.is_empty() {
            format!("{what} (container {container}) exited with code {code} and logged nothing")
        } else {
            format!("{what} (container {container}) exited with code {code}; its last log lines:\n{logs}")
        }
    }

    /// Whether a version answers its readiness check.
    async fn probe(&self, b: &VersionBox) -> bool {
        if !running(b.state) {
            return false;
        }
        let path = match b.protocol {
            Protocol::Sagemaker => "/ping",
            Protocol::V2 => "/v2/health/ready",
        };
        self.http
            .get(format!("http://127.0.0.1:{}{path}", b.port))
            .timeout(PROBE_TIMEOUT)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Whether the router accepts connections.
    async fn router_answers(&self, r: &RouterBox) -> bool {
        running(r.state)
            && matches!(
                tokio::time::timeout(
                    PROBE_TIMEOUT,
                    tokio::net::TcpStream::connect(("127.0.0.1", r.port))
                )
                .await,
                Ok(Ok(_))
            )
    }

    /// Creates and starts a container, removing it again when a step fails.
    async fn start_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
        files: Vec<u8>,
    ) -> Result<(), UserError> {
        let opts = CreateContainerOptionsBuilder::default().name(name).build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .map_err(|e| self.engine_error(&format!("cannot create the container {name}"), e))?;
        let started = async {
            let opts = UploadToContainerOptionsBuilder::default().path("/").build();
            self.docker
                .upload_to_container(name, Some(opts), bollard::body_full(files.into()))
                .await
                .map_err(|e| self.engine_error(&format!("cannot copy files into {name}"), e))?;
            self.docker
                .start_container(name, None)
                .await
                .map_err(|e| self.engine_error(&format!("cannot start {name}"), e))
        }
        .await;
        if started.is_err() {
            let _ = self.remove(name).await;
        }
        started
    }

    fn version_body(
        &self,
        spec: &VersionSpec,
        port: u16,
        weight: u8,
        shadow: bool,
    ) -> ContainerCreateBody {
        let mut env = spec.contract_env();
        env.entry("MODEL_NAME".to_string())
            .or_insert_with(|| spec.model_name.clone());
        env.insert("SAGEMAKER_BIND_TO_PORT".into(), port.to_string());
        let mut labels: HashMap<String, String> = spec
            .all_tags()
            .into_iter()
            .map(|(k, v)| (format!("{LABEL_TAG}{k}"), v))
            .collect();
        for (k, v) in [
            (LABEL_ENDPOINT, spec.endpoint.clone()),
            (LABEL_ROLE, ROLE_VERSION.to_string()),
            (LABEL_VERSION, spec.version.clone()),
            (LABEL_PORT, port.to_string()),
            (LABEL_WEIGHT, weight.to_string()),
            (LABEL_SHADOW, shadow.to_string()),
            (LABEL_IMAGE, spec.image.clone()),
            (LABEL_PROTOCOL, spec.protocol.as_str().to_string()),
            (LABEL_MODEL_NAME, spec.model_name.clone()),
            (
                LABEL_TIMEOUT_MS,
                spec.request_timeout.as_millis().to_string(),
            ),
        ] {
            labels.insert(k.to_string(), v);
        }
        let device_requests = (spec.instance.gpus > 0).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(i64::from(spec.instance.gpus)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec!["serve".into()]),
            env: Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                device_requests,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// mlcd's own router image, made on the engine once per executable.
    async fn router_image(&self) -> Result<String, UserError> {
        let image = self
            .router_image
            .get_or_try_init(|| async {
                let binary = self.router_binary()?;
                tokio::task::spawn_blocking(move || RouterImage::for_executable(&binary))
                    .await
                    .map_err(|e| UserError::failed(format!("making the router image: {e}")))?
            })
            .await?;
        image.ensure(&self.docker, &self.host).await
    }

    /// Starts the endpoint's router with `routes`, from mlcd's own image.
    async fn create_router(
        &self,
        endpoint: &str,
        routes: &RouteConfig,
        taken: &[u16],
    ) -> Result<(), UserError> {
        let port = free_port(taken)?;
        let image = self.router_image().await?;
        let files = router_tar(&routes.to_json())
            .map_err(|e| UserError::failed(format!("cannot pack the routes: {e}")))?;
        let labels = HashMap::from([
            (LABEL_ENDPOINT.to_string(), endpoint.to_string()),
            (LABEL_ROLE.to_string(), ROLE_ROUTER.to_string()),
            (LABEL_PORT.to_string(), port.to_string()),
            (LABEL_IMAGE.to_string(), image.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image),
            cmd: Some(vec![
                "route".into(),
                "--config".into(),
                ROUTES_FILE.into(),
                "--listen".into(),
                format!("127.0.0.1:{port}"),
            ]),
            env: Some(vec!["MLCD_LOG=info".into()]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.start_container(&Self::router_container(endpoint), body, files)
            .await
    }
}

#[async_trait]
impl ServingBackend for LocalServing {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn preflight(&self, spec: &VersionSpec) -> Result<(), UserError> {
        check_endpoint(&spec.endpoint)?;
        check_version(&spec.version)?;
        if let Some(m) = &spec.model_data {
            if m.contains("://") {
                return Err(UserError::invalid(format!(
                    "model `{m}`: the local backend reads model artifacts from this machine only"
                ))
                .hint("download the model.tar.gz into the workspace and give its path, or deploy with `backend: sagemaker`"));
            }
            if !Path::new(m).exists() {
                return Err(UserError::invalid(format!(
                    "model `{m}` does not exist: expected a model.tar.gz (or a directory) on this machine"
                ))
                .hint("train first (`mode: train` writes .mlcd/jobs/<job>/model.tar.gz), or give the path of a model.tar.gz"));
            }
        }
        if spec.replicas > 1 {
            log::warn!(
                "the local backend runs one container per version: replicas {} is served by one",
                spec.replicas
            );
        }
        let binary = self.router_binary()?;
        if !binary.is_file() {
            return Err(UserError::failed(format!(
                "the mlcd executable {} (the endpoint's router image is made of it) is not a file",
                binary.display()
            )));
        }
        self.engine.require_gpus(&spec.instance, "serve").await?;
        self.engine
            .ensure_image(&spec.image, self.pull_credentials.as_ref())
            .await?;
        Ok(())
    }

    async fn owner(&self, endpoint: &str) -> Result<Recorded, UserError> {
        let list = self
            .labelled(vec![
                format!("{LABEL_ENDPOINT}={endpoint}"),
                format!("{LABEL_ROLE}={ROLE_VERSION}"),
            ])
            .await?;
        if list.is_empty() {
            return Ok(Recorded::Absent);
        }
        // Every version of an endpoint is deployed by its owner (others are
        // refused), so any version's identity names it.
        Ok(list
            .iter()
            .filter_map(|c| {
                Identity::from_tags(
                    c.labels
                        .iter()
                        .flatten()
                        .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_TAG)?, v.as_str()))),
                )
            })
            .next()
            .map_or(Recorded::Unknown, Recorded::Run))
    }

    async fn status(&self, endpoint: &str) -> Result<Option<EndpointStatus>, UserError> {
        let found = self.find(endpoint).await?;
        if found.router.is_none() && found.versions.is_empty() {
            return Ok(None);
        }
        let routes = match &found.router {
            Some(r) => self.read_routes(r).await?,
            None => None,
        };
        let readiness =
            futures_util::future::join_all(found.versions.iter().map(|b| self.probe(b))).await;
        let mut variants = Vec::new();
        let mut failures = Vec::new();
        for (b, ready) in found.versions.iter().zip(readiness) {
            let routed = routes
                .as_ref()
                .and_then(|r| r.upstreams.iter().find(|u| u.version == b.version));
            let (weight, shadow) = match (routed, &routes) {
                (Some(u), _) => (u.weight, u.shadow),
                // Routes in force that do not name it: a deploy is half-way.
                (None, Some(_)) => (0, b.shadow),
                (None, None) => (b.weight, b.shadow),
            };
            if ended(b.state) {
                failures.push(
                    self.crash_reason(&format!("version `{}`", b.version), &b.container)
                        .await,
                );
            }
            variants.push(Variant {
                version: b.version.clone(),
                image: b.image.clone(),
                weight,
                shadow,
                ready,
                url: Some(format!("http://127.0.0.1:{}", b.port)),
            });
        }
        if let Some(r) = &routes {
            for u in &r.upstreams {
                if found.version(&u.version).is_none() {
                    failures.push(format!(
                        "version `{}` is routed to but its container {} is gone",
                        u.version,
                        Self::version_container(endpoint, &u.version)
                    ));
                    variants.push(Variant {
                        version: u.version.clone(),
                        image: String::new(),
                        weight: u.weight,
                        shadow: u.shadow,
                        ready: false,
                        url: Some(u.url.clone()),
                    });
                }
            }
        }
        let mut state = EndpointState::InService;
        let mut url = None;
        match &found.router {
            None => state = EndpointState::Creating,
            Some(r) => {
                url = Some(format!("http://127.0.0.1:{}", r.port));
                if ended(r.state) {
                    let reason = self.crash_reason("the router", &r.container).await;
                    failures.insert(0, reason);
                } else if r.state == ContainerSummaryStateEnum::CREATED {
                    // Being set up by a deploy in another process.
                    state = EndpointState::Creating;
                } else if routes.is_none() {
                    failures.insert(
                        0,
                        format!(
                            "the router ({}) holds no readable {ROUTES_FILE}",
                            r.container
                        ),
                    );
                } else if !self.router_answers(r).await {
                    state = EndpointState::Creating;
                }
            }
        }
        if state == EndpointState::InService
            && found
                .versions
                .iter()
                .any(|b| !running(b.state) && !ended(b.state))
        {
            state = EndpointState::Updating;
        }
        let failure_reason = if failures.is_empty() {
            None
        } else {
            state = EndpointState::Failed;
            Some(failures.join("\n"))
        };
        Ok(Some(EndpointStatus {
            name: endpoint.to_string(),
            state,
            failure_reason,
            url,
            variants,
        }))
    }

    async fn deploy(&self, spec: &VersionSpec, shadow: bool) -> Result<(), UserError> {
        check_endpoint(&spec.endpoint)?;
        check_version(&spec.version)?;
        let endpoint = &spec.endpoint;
        let found = self.find(endpoint).await?;
        if let Some(b) = found.version(&spec.version) {
            if b.image == spec.image {
                // A re-run: the version is already there.
                return Ok(());
            }
            return Err(UserError::failed(format!(
                "endpoint `{endpoint}` already has a version `{}` serving {}, not {}",
                spec.version, b.image, spec.image
            ))
            .hint("deploy under a new version id, or retire that version first"));
        }
        let creating = found.router.is_none();
        if creating && shadow {
            return Err(UserError::invalid(format!(
                "endpoint `{endpoint}` does not exist: a shadow needs a live version beside it"
            ))
            .hint("deploy a first version without shadow"));
        }
        if creating && !found.versions.is_empty() {
            return Err(UserError::failed(format!(
                "endpoint `{endpoint}` has version containers ({}) but no router container {}",
                found.names(),
                Self::router_container(endpoint)
            ))
            .hint("tear the endpoint down and deploy again"));
        }
        // Read the routes before anything starts: a broken router stops the deploy.
        let existing = match creating {
            true => None,
            false => Some(self.routes_for_change(endpoint, &found).await?),
        };
        let weight = if creating { 100 } else { 0 };
        let mut taken = self.taken_ports().await?;
        let port = free_port(&taken)?;
        taken.push(port);
        let files = {
            let m = spec.model_data.clone();
            tokio::task::spawn_blocking(move || model_tar(m.as_deref()))
                .await
                .map_err(|e| UserError::failed(format!("packing the model: {e}")))?
                .map_err(|e| {
                    UserError::invalid(format!(
                        "model `{}`: cannot read it as a model.tar.gz: {e}",
                        spec.model_data.as_deref().unwrap_or_default()
                    ))
                    .hint("give the model.tar.gz a training job wrote (a gzip'd tar with model files at its root)")
                })?
        };
        let container = Self::version_container(endpoint, &spec.version);
        let body = self.version_body(spec, port, weight, shadow);
        let upstream = Upstream {
            version: spec.version.clone(),
            url: format!("http://127.0.0.1:{port}"),
            weight,
            shadow,
        };
        let timeout_ms = u64::try_from(spec.request_timeout.as_millis()).unwrap_or(u64::MAX);
        match existing {
            None => {
                // A new endpoint: the version and the router start side by side
                // (the router only forwards; readiness is probed on the version).
                let routes = RouteConfig {
                    upstreams: vec![upstream],
                    timeout_ms: Some(timeout_ms.max(1)),
                    capture: self.capture.clone(),
                };
                let (version, router) = tokio::join!(
                    self.start_container(&container, body, files),
                    self.create_router(endpoint, &routes, &taken)
                );
                match (version, router) {
                    (Ok(()), Ok(())) => Ok(()),
                    (Err(e), router) => {
                        if router.is_ok() {
                            let _ = self.remove(&Self::router_container(endpoint)).await;
                        }
                        Err(e)
                    }
                    (Ok(()), Err(e)) => {
                        let _ = self.remove(&container).await;
                        Err(e)
                    }
                }
            }
            Some((router, mut routes)) => {
                self.start_container(&container, body, files).await?;
                routes.upstreams.push(upstream);
                routes.timeout_ms = Some(routes.timeout_ms.unwrap_or(0).max(timeout_ms).max(1));
                // The capture settings of the latest deploy are in force.
                routes.capture = self.capture.clone();
                let routed = self.write_routes(&router, &routes).await;
                if routed.is_err() {
                    let _ = self.remove(&container).await;
                }
                routed
            }
        }
    }

    async fn set_traffic(
        &self,
        endpoint: &str,
        weights: &BTreeMap<String, u8>,
    ) -> Result<(), UserError> {
        let total: u32 = weights.values().map(|w| u32::from(*w)).sum();
        if total != 100 {
            let listed = weights
                .iter()
                .map(|(v, w)| format!("{v}={w}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(UserError::invalid(format!(
                "traffic for endpoint `{endpoint}` ({listed}) sums to {total}%: expected 100%"
            )));
        }
        let found = self.find(endpoint).await?;
        let (router, mut routes) = self.routes_for_change(endpoint, &found).await?;
        for v in weights.keys() {
            match routes.upstreams.iter().find(|u| &u.version == v) {
                Some(u) if u.shadow => {
                    return Err(UserError::invalid(format!(
                    "version `{v}` of endpoint `{endpoint}` is a shadow: it takes no live traffic"
                ))
                    .hint("deploy it as a production version to give it traffic"))
                }
                Some(_) => {}
                None => return Err(self.no_version(endpoint, v, &found)),
            }
        }
        for u in routes.upstreams.iter_mut().filter(|u| !u.shadow) {
            u.weight = weights.get(&u.version).copied().unwrap_or(0);
        }
        self.write_routes(&router, &routes).await
    }

    async fn invoke(
        &self,
        endpoint: &str,
        version: &str,
        request: &Invocation,
    ) -> Result<Answer, UserError> {
        let found = self.find(endpoint).await?;
        let b = found
            .version(version)
            .ok_or_else(|| self.no_version(endpoint, version, &found))?;
        let path = match b.protocol {
            Protocol::Sagemaker => "/invocations".to_string(),
            Protocol::V2 => format!("/v2/models/{}/infer", b.model_name),
        };
        let url = format!("http://127.0.0.1:{}{path}", b.port);
        let started = Instant::now();
        let fail = |e: reqwest::Error| {
            let what = if e.is_timeout() {
                format!(
                    "did not answer within {}",
                    humantime::format_duration(b.timeout)
                )
            } else {
                format!("failed: {e}")
            };
            UserError::failed(format!(
                "invoking version `{version}` of endpoint `{endpoint}` at {url} {what}"
            ))
            .hint(format!(
                "`docker logs {}` shows what the model server did",
                b.container
            ))
        };
        let resp = self
            .http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, &request.content_type)
            .body(request.body.clone())
            .timeout(b.timeout)
            .send()
            .await
            .map_err(fail)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(fail)?.to_vec();
        Ok(Answer {
            status,
            body,
            latency: started.elapsed(),
        })
    }

    async fn retire(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let found = self.find(endpoint).await?;
        let (router, mut routes) = self.routes_for_change(endpoint, &found).await?;
        let routed = routes.upstreams.iter().find(|u| u.version == version);
        if found.version(version).is_none() && routed.is_none() {
            return Err(self.no_version(endpoint, version, &found));
        }
        if let Some(u) = routed.filter(|u| !u.shadow && u.weight > 0) {
            return Err(UserError::failed(format!(
                "version `{version}` of endpoint `{endpoint}` takes {}% of the live traffic: it cannot be retired",
                u.weight
            ))
            .hint("move its traffic to another version first (or roll back to another version)"));
        }
        if routed.is_some() {
            routes.upstreams.retain(|u| u.version != version);
            self.write_routes(&router, &routes).await?;
        }
        self.remove(&Self::version_container(endpoint, version))
            .await
    }

    async fn rollback(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let found = self.find(endpoint).await?;
        let target = found
            .version(version)
            .ok_or_else(|| self.no_version(endpoint, version, &found))?;
        if !running(target.state) {
            return Err(UserError::failed(format!(
                "cannot roll endpoint `{endpoint}` back to version `{version}`: its container {} is not running",
                target.container
            ))
            .hint(format!("`docker logs {}` shows why", target.container)));
        }
        let (router, mut routes) = self.routes_for_change(endpoint, &found).await?;
        routes.upstreams = vec![Upstream {
            version: version.to_string(),
            url: format!("http://127.0.0.1:{}", target.port),
            weight: 100,
            shadow: false,
        }];
        self.write_routes(&router, &routes).await?;
        for b in found.versions.iter().filter(|b| b.version != version) {
            self.remove(&b.container).await?;
        }
        Ok(())
    }

    async fn teardown(&self, endpoint: &str) -> Result<(), UserError> {
        let found = self.find(endpoint).await?;
        if let (Some(_), Some(dest)) = (&found.router, &self.capture_dest) {
            // The capture files live in the router: saved before it goes.
            match self.pull_capture(endpoint, dest).await {
                Ok(p) if p.files > 0 => log::info!(
                    "{} capture records of endpoint `{endpoint}` copied to {}",
                    p.records,
                    dest.display()
                ),
                Ok(_) => {}
                Err(e) => log::warn!(
                    "the capture files of endpoint `{endpoint}` could not be saved before teardown: {}",
                    e.message
                ),
            }
        }
        if let Some(r) = &found.router {
            self.remove(&r.container).await?;
        }
        for b in &found.versions {
            self.remove(&b.container).await?;
        }
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }

    async fn traffic_mark(&self, endpoint: &str) -> Result<TrafficMark, UserError> {
        let stats = self.router_stats(endpoint).await?;
        Ok(TrafficMark {
            at: std::time::SystemTime::now(),
            counters: stats.versions,
        })
    }

    async fn version_stats(
        &self,
        endpoint: &str,
        mark: &TrafficMark,
    ) -> Result<Option<BTreeMap<String, VersionStats>>, UserError> {
        let now = self.router_stats(endpoint).await?;
        Ok(Some(
            now.versions
                .iter()
                .map(|(v, c)| (v.clone(), VersionStats::between(mark.counters.get(v), c)))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_created() {
        assert!(check_endpoint("churn-prod.v1").is_ok());
        let e = check_endpoint("-churn").unwrap_err();
        assert!(e.message.contains("endpoint `-churn`"), "{}", e.message);
        assert!(check_endpoint("chu rn").is_err());
        assert!(check_version("v1-abc").is_ok());
        assert!(check_version("v1.0").is_err());
        assert!(check_version(&"a".repeat(33)).is_err());
    }

    #[test]
    fn a_model_tar_gz_lands_under_opt_ml_model() {
        let dir = tempfile::tempdir().unwrap();
        let tgz = dir.path().join("model.tar.gz");
        {
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&tgz).unwrap(),
                flate2::Compression::default(),
            );
            let mut b = tar::Builder::new(gz);
            let data = br#"{"w": 1}"#;
            b.append_data(
                &mut file_header(data.len() as u64, 0o644),
                "./model.json",
                &data[..],
            )
            .unwrap();
            b.into_inner().unwrap().finish().unwrap();
        }
        let out = model_tar(Some(tgz.to_str().unwrap())).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(out.as_slice()).entries().unwrap() {
            names.push(e.unwrap().path().unwrap().display().to_string());
        }
        assert!(
            names.contains(&"opt/ml/model/model.json".to_string()),
            "{names:?}"
        );
        // Not an archive: a clear error.
        let bad = dir.path().join("bad.tar.gz");
        std::fs::write(&bad, b"not a tar").unwrap();
        assert!(model_tar(Some(bad.to_str().unwrap())).is_err());
    }
}
