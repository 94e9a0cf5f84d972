//! `backend: local`: a training job is a container on the local Docker engine,
//! run with the SageMaker training-container contract. Inputs are copied in as
//! tar streams (never bind mounts, which name host paths the engine may not
//! see); when the container ends, its model is collected into `model.tar.gz`,
//! its metrics, failure reason and log into a job record under
//! `.mlcd/jobs/<job>/`, and the container is removed. The record is what a
//! later `describe` (an attach, a re-run) reads.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bollard::models::{ContainerCreateBody, ContainerStateStatusEnum, DeviceRequest, HostConfig};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    KillContainerOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Channel, JobSpec, JobState, JobStatus, LogCursor, Submitted, TrainingBackend};
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::image::engine::Engine;
use crate::image::registry::Credentials;

/// How long a stopped job has to exit after SIGTERM before it is killed (the
/// SageMaker contract gives 120 s; jobs here are local and smaller).
const STOP_GRACE: Duration = Duration::from_secs(30);

const LABEL_JOB: &str = "dev.mlcd.job";
const LABEL_HP: &str = "dev.mlcd.hyperparameters";
const LABEL_IMAGE: &str = "dev.mlcd.image";
const LABEL_MAX_RUNTIME: &str = "dev.mlcd.max-runtime-seconds";
/// Prefix of the labels that carry a job's tags (its identity among them).
const LABEL_TAG: &str = "dev.mlcd.tag.";

/// The identity a container's labels carry.
fn identity_of(labels: &HashMap<String, String>) -> Option<Identity> {
    Identity::from_tags(
        labels
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(LABEL_TAG)?, v.as_str()))),
    )
}

/// How a training container ended, as the engine reports it.
struct Exit {
    code: Option<i64>,
    oom: bool,
    /// When it exited (the engine's clock).
    finished_at: Option<String>,
}

/// The local Docker engine as a training backend.
pub struct LocalTraining {
    engine: Engine,
    pull_credentials: Option<Credentials>,
    docker: Docker,
    host: String,
    store: PathBuf,
    poll: Duration,
}

/// What the job store keeps of a finished job.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    status: JobStatus,
    exit_code: Option<i64>,
    /// When the container exited (the engine's clock).
    finished_at: Option<String>,
    /// When mlcd collected it.
    collected_at: String,
    /// The run the job was started for (from its container's labels).
    #[serde(default)]
    identity: Option<Identity>,
}

impl LocalTraining {
    /// A backend on `engine` keeping finished jobs under `store`
    /// (`<workspace>/.mlcd/jobs`).
    pub fn new(engine: &Engine, store: PathBuf) -> Self {
        LocalTraining {
            engine: engine.clone(),
            pull_credentials: None,
            docker: engine.docker().clone(),
            host: engine.host().to_string(),
            store,
            poll: super::poll_interval_from_env(
                &std::env::vars().collect(),
                Duration::from_millis(500),
            ),
        }
    }

    /// The credentials a missing image is pulled with.
    pub fn with_pull_credentials(mut self, credentials: Option<Credentials>) -> Self {
        self.pull_credentials = credentials;
        self
    }

    fn container(name: &str) -> String {
        format!("mlcd-train-{name}")
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.store.join(name)
    }

    fn stop_marker(&self, name: &str) -> PathBuf {
        self.dir(name).join("stop-requested")
    }

    fn engine_error(&self, what: &str, e: impl std::fmt::Display) -> UserError {
        UserError::failed(format!("Docker engine at {}: {what}: {e}", self.host))
    }

    fn read_record(&self, name: &str) -> Result<Option<Record>, UserError> {
        let path = self.dir(name).join("job.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                UserError::failed(format!("the job record {} is damaged: {e}", path.display()))
                    .hint("remove that directory to forget the job")
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(UserError::failed(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// The network training containers join: the engine's default bridge when it
    /// has one, else the host's (engines started with `--bridge=none`).
    async fn network(&self) -> Result<String, UserError> {
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| self.engine_error("cannot list networks", e))?;
        let has_bridge = networks.iter().any(|n| n.name.as_deref() == Some("bridge"));
        Ok(if has_bridge { "bridge" } else { "host" }.to_string())
    }

    /// Downloads `path` from the container as a tar archive (None when absent).
    async fn download(&self, container: &str, path: &str) -> Result<Option<Vec<u8>>, UserError> {
        let opts = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let mut stream = self.docker.download_from_container(container, Some(opts));
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(b) => out.extend_from_slice(&b),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(None),
                Err(e) => return Err(self.engine_error(&format!("cannot copy {path} out"), e)),
            }
        }
        Ok(Some(out))
    }

    /// Every log line of the container, with Docker's fixed-width timestamps.
    async fn all_logs(&self, container: &str, since: i32) -> Result<Vec<String>, UserError> {
        let opts = LogsOptionsBuilder::default()
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut stream = self.docker.logs(container, Some(opts));
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(o) => text.push_str(&String::from_utf8_lossy(&o.into_bytes())),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => return Ok(Vec::new()),
                Err(e) => return Err(self.engine_error("cannot read the job's log", e)),
            }
        }
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Collects a finished container into the job record and removes it.
    async fn collect(
        &self,
        name: &str,
        container: &str,
        mut status: JobStatus,
        exit: Exit,
        identity: Option<Identity>,
    ) -> Result<JobStatus, UserError> {
        let Exit {
            code: exit_code,
            oom,
            finished_at,
        } = exit;
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| UserError::failed(format!("cannot create {}: {e}", dir.display())))?;
        let stopped = self.stop_marker(name).exists();
        let output = self.download(container, "/opt/ml/output").await?;
        let files = output.as_deref().map(files_of).unwrap_or_default();
        if let Some(m) = files.get("output/metrics.json") {
            status.metrics = parse_metrics(m);
        }
        let failure = files
            .get("output/failure")
            .map(|b| String::from_utf8_lossy(b).trim().to_string())
            .filter(|s| !s.is_empty());
        status.state = match (exit_code, stopped) {
            (_, true) => JobState::Stopped,
            (Some(0), false) => JobState::Completed,
            _ => JobState::Failed,
        };
        match status.state {
            JobState::Completed => {
                let model = self.download(container, "/opt/ml/model").await?;
                let target = dir.join("model.tar.gz");
                let tar = model.unwrap_or_default();
                let t = target.clone();
                tokio::task::spawn_blocking(move || model_tar_gz(&tar, &t))
                    .await
                    .map_err(|e| UserError::failed(format!("collecting the model: {e}")))?
                    .map_err(|e| {
                        UserError::failed(format!("cannot write {}: {e}", target.display()))
                    })?;
                status.artifact = Some(target.display().to_string());
            }
            JobState::Failed => {
                status.failure_reason = Some(failure.unwrap_or_else(|| {
                    let code = exit_code.map_or("unknown".into(), |c| c.to_string());
                    if oom {
                        format!("the container ran out of memory (exit code {code})")
                    } else {
                        format!("the training container exited with code {code} and wrote no /opt/ml/output/failure")
                    }
                }));
            }
            _ => {
                status.failure_reason = std::fs::read_to_string(self.stop_marker(name))
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_string());
            }
        }
        status.detail = Some(status.state.to_string());
        let logs = self.all_logs(container, 0).await?;
        write_atomic(&dir.join("log.txt"), logs.join("\n").as_bytes())?;
        let record = Record {
            status: status.clone(),
            exit_code,
            finished_at,
            collected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            identity,
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
        write_atomic(&dir.join("job.json"), &json)?;
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        match self.docker.remove_container(container, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(e) => log::warn!("could not remove the finished container {container}: {e}"),
        }
        Ok(status)
    }

    /// The tar archive put at `/` before the container starts: the contract's
    /// config files, the channels, and writable model/output directories.
    fn input_tar(spec: &JobSpec) -> Result<Vec<u8>, UserError> {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(true);
        let dir = |b: &mut tar::Builder<Vec<u8>>, path: &str| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o777);
            h.set_size(0);
            h.set_mtime(0);
            b.append_data(&mut h, path, std::io::empty())
        };
        let io =
            |e: std::io::Error| UserError::failed(format!("cannot pack the job's inputs: {e}"));
        for d in [
            "opt/ml/",
            "opt/ml/input/",
            "opt/ml/input/config/",
            "opt/ml/input/data/",
            "opt/ml/model/",
            "opt/ml/output/",
            "opt/ml/output/data/",
            "opt/ml/code/",
        ] {
            dir(&mut b, d).map_err(io)?;
        }
        let channels: serde_json::Map<String, serde_json::Value> = spec
            .channels
            .keys()
            .map(|c| {
                (
                    c.clone(),
                    serde_json::json!({"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}),
                )
            })
            .collect();
        let files = [
            (
                "opt/ml/input/config/hyperparameters.json",
                serde_json::to_vec_pretty(&spec.hyperparameters),
            ),
            (
                "opt/ml/input/config/inputdataconfig.json",
                serde_json::to_vec_pretty(&channels),
            ),
            (
                "opt/ml/input/config/resourceconfig.json",
                serde_json::to_vec_pretty(&serde_json::json!({
                    "current_host": "algo-1",
                    "hosts": ["algo-1"],
                    "network_interface_name": "eth0",
                })),
            ),
        ];
        for (path, body) in files {
            let body = body.expect("JSON of strings serializes");
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_mtime(0);
            b.append_data(&mut h, path, body.as_slice()).map_err(io)?;
        }
        for (name, ch) in &spec.channels {
            let Channel::Local(src) = ch else { continue };
            let at = format!("opt/ml/input/data/{name}");
            if src.is_dir() {
                b.append_dir_all(&at, src).map_err(io)?;
            } else {
                let file = src.file_name().map(|f| f.to_string_lossy().into_owned());
                b.append_path_with_name(src, format!("{at}/{}", file.unwrap_or_default()))
                    .map_err(io)?;
            }
        }
        b.into_inner().map_err(io)
    }
}

/// Writes a file through a temporary one, so a reader never sees half of it.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UserError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| UserError::failed(format!("cannot write {}: {e}", path.display())))
}

/// The regular files of a tar archive Docker sent for one directory, keyed by
/// their path below that directory's parent (`output/metrics.json`).
fn files_of(tar: &[u8]) -> HashMap<String, Vec<u8>> {
    let mut out = HashMap::new();
    let mut a = tar::Archive::new(tar);
    let Ok(entries) = a.entries() else { return out };
    for mut e in entries.flatten() {
        if e.header().entry_type() != tar::EntryType::Regular || e.size() > 16 << 20 {
            continue;
        }
        let Ok(p) = e.path().map(|p| p.to_string_lossy().into_owned()) else {
            continue;
        };
        let mut buf = Vec::new();
        if e.read_to_end(&mut buf).is_ok() {
            out.insert(p, buf);
        }
    }
    out
}

/// Metrics from `metrics.json`: an object of numbers (other values are skipped
/// with a warning).
pub fn parse_metrics(bytes: &[u8]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                match v.as_f64() {
                    Some(n) if n.is_finite() => {
                        out.insert(k, n);
                    }
                    _ => log::warn!("metrics.json: `{k}` is not a finite number ({v}); skipped"),
                }
            }
        }
        Ok(_) => log::warn!(
            "/opt/ml/output/metrics.json does not hold a JSON object; no metrics read from it"
        ),
        Err(e) => {
            log::warn!("/opt/ml/output/metrics.json is not JSON ({e}); no metrics read from it")
        }
    }
    out
}

/// Re-packs the `/opt/ml/model` archive Docker sent (entries under `model/`)
/// as SageMaker's `model.tar.gz` (entries at the root).
fn model_tar_gz(tar: &[u8], target: &Path) -> std::io::Result<()> {
    let tmp = target.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut out = tar::Builder::new(gz);
    let mut a = tar::Archive::new(tar);
    for e in a.entries()? {
        let mut e = e?;
        let path = e.path()?.into_owned();
        let Ok(rel) = path.strip_prefix("model") else {
            continue;
        };
        if rel.as_os_str().is_empty() {
            continue;
        }
        let mut h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        out.append_data(&mut h, rel, data.as_slice())?;
    }
    out.into_inner()?.finish()?;
    std::fs::rename(tmp, target)
}

#[async_trait]
impl TrainingBackend for LocalTraining {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn preflight(&self, spec: &JobSpec) -> Result<(), UserError> {
        for (name, ch) in &spec.channels {
            match ch {
                Channel::Remote(uri) => {
                    return Err(UserError::invalid(format!(
                        "channel `{name}` is `{uri}`, but the local backend reads channels from this machine only"
                    ))
                    .hint("download the data into the workspace and point the channel at that directory, or train with `backend: sagemaker`"))
                }
                Channel::Local(p) if !p.exists() => {
                    return Err(UserError::invalid(format!(
                        "channel `{name}`: {} does not exist",
                        p.display()
                    )))
                }
                Channel::Local(_) => {}
            }
        }
        self.engine.require_gpus(&spec.instance, "train").await?;
        self.engine
            .ensure_image(&spec.image, self.pull_credentials.as_ref())
            .await?;
        Ok(())
    }

    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, UserError> {
        if self.identity(&spec.name).await? != Recorded::Absent {
            return Ok(Submitted::AlreadyExists);
        }
        let container = Self::container(&spec.name);
        let hp = serde_json::to_string(&spec.hyperparameters).expect("strings serialize");
        let mut labels: HashMap<String, String> = spec
            .all_tags()
            .into_iter()
            .map(|(k, v)| (format!("{LABEL_TAG}{k}"), v))
            .collect();
        labels.insert(LABEL_JOB.into(), spec.name.clone());
        labels.insert(LABEL_HP.into(), hp);
        labels.insert(LABEL_IMAGE.into(), spec.image.clone());
        labels.insert(
            LABEL_MAX_RUNTIME.into(),
            spec.max_runtime.as_secs().max(1).to_string(),
        );
        let device_requests = (spec.instance.gpus > 0).then(|| {
            vec![DeviceRequest {
                driver: Some("nvidia".into()),
                count: Some(i64::from(spec.instance.gpus)),
                capabilities: Some(vec![vec!["gpu".into()]]),
                ..Default::default()
            }]
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(vec!["train".into()]),
            env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(self.network().await?),
                device_requests,
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&container)
            .build();
        match self.docker.create_container(Some(opts), body).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => return Ok(Submitted::AlreadyExists),
            Err(e) => return Err(self.engine_error("cannot create the training container", e)),
        }
        let started = async {
            let tar = {
                let s = spec.clone();
                tokio::task::spawn_blocking(move || Self::input_tar(&s))
                    .await
                    .map_err(|e| UserError::failed(format!("packing the job's inputs: {e}")))??
            };
            let opts = UploadToContainerOptionsBuilder::default().path("/").build();
            self.docker
                .upload_to_container(&container, Some(opts), bollard::body_full(tar.into()))
                .await
                .map_err(|e| self.engine_error("cannot copy the job's inputs in", e))?;
            self.docker
                .start_container(&container, None)
                .await
                .map_err(|e| self.engine_error("cannot start the training container", e))
        }
        .await;
        if let Err(e) = started {
            let opts = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = self.docker.remove_container(&container, Some(opts)).await;
            return Err(e);
        }
        Ok(Submitted::Created)
    }

    async fn identity(&self, name: &str) -> Result<Recorded, UserError> {
        let container = Self::container(name);
        match self.docker.inspect_container(&container, None).await {
            Ok(i) => {
                let labels = i.config.and_then(|c| c.labels).unwrap_or_default();
                Ok(identity_of(&labels).map_or(Recorded::Unknown, Recorded::Run))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(match self.read_record(name)? {
                None => Recorded::Absent,
                Some(r) => r.identity.map_or(Recorded::Unknown, Recorded::Run),
            }),
            Err(e) => Err(self.engine_error("cannot inspect the training container", e)),
        }
    }

    async fn describe(&self, name: &str) -> Result<Option<JobStatus>, UserError> {
        let container = Self::container(name);
        let inspect = match self.docker.inspect_container(&container, None).await {
            Ok(i) => i,
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => return Ok(self.read_record(name)?.map(|r| r.status)),
            Err(e) => return Err(self.engine_error("cannot inspect the training container", e)),
        };
        let config = inspect.config.unwrap_or_default();
        let labels = config.labels.unwrap_or_default();
        let hyperparameters = labels
            .get(LABEL_HP)
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let state = inspect.state.unwrap_or_default();
        let mut status = JobStatus {
            name: name.to_string(),
            state: JobState::Pending,
            detail: state.status.map(|s| s.to_string()),
            failure_reason: None,
            metrics: BTreeMap::new(),
            artifact: None,
            image: labels.get(LABEL_IMAGE).cloned().or(config.image),
            hyperparameters,
        };
        let stop_requested = self.stop_marker(name).exists();
        match state.status {
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                let oom = state.oom_killed.unwrap_or(false);
                return self
                    .collect(
                        name,
                        &container,
                        status,
                        Exit {
                            code: state.exit_code,
                            oom,
                            finished_at: state.finished_at,
                        },
                        identity_of(&labels),
                    )
                    .await
                    .map(Some);
            }
            Some(ContainerStateStatusEnum::CREATED) => status.state = JobState::Pending,
            _ if stop_requested => {
                status.state = JobState::Stopping;
                let asked = std::fs::metadata(self.stop_marker(name))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or_default();
                if asked > STOP_GRACE {
                    let opts = KillContainerOptionsBuilder::default()
                        .signal("SIGKILL")
                        .build();
                    let _ = self.docker.kill_container(&container, Some(opts)).await;
                }
            }
            _ => {
                status.state = JobState::InProgress;
                // The job's own runtime bound, as SageMaker enforces MaxRuntimeInSeconds.
                let max = labels
                    .get(LABEL_MAX_RUNTIME)
                    .and_then(|s| s.parse::<u64>().ok());
                let started = state
                    .started_at
                    .as_deref()
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
                if let (Some(max), Some(started)) = (max, started) {
                    let ran = chrono::Utc::now().signed_duration_since(started);
                    if ran.num_seconds() >= i64::try_from(max).unwrap_or(i64::MAX) {
                        self.request_stop(name, &format!("MaxRuntimeExceeded: the job ran longer than its max-runtime of {max}s")).await?;
                        status.state = JobState::Stopping;
                        status.detail = Some("MaxRuntimeExceeded".into());
                    }
                }
            }
        }
        Ok(Some(status))
    }

    async fn logs(&self, name: &str, cursor: &mut LogCursor) -> Result<Vec<String>, UserError> {
        let container = Self::container(name);
        let since = cursor
            .0
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| i32::try_from(t.timestamp()).unwrap_or(0));
        let mut lines = self.all_logs(&container, since).await?;
        if lines.is_empty()
            && self
                .docker
                .inspect_container(&container, None)
                .await
                .is_err()
        {
            lines = std::fs::read_to_string(self.dir(name).join("log.txt"))
                .map(|t| t.lines().map(str::to_string).collect())
                .unwrap_or_default();
        }
        let mut out = Vec::new();
        for line in lines {
            let (ts, msg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            if cursor.0.as_deref().is_some_and(|c| ts <= c) {
                continue;
            }
            cursor.0 = Some(ts.to_string());
            out.push(msg.to_string());
        }
        Ok(out)
    }

    async fn stop(&self, name: &str) -> Result<(), UserError> {
        self.request_stop(name, "stopped on request").await
    }

    fn job_url(&self, _name: &str) -> Option<String> {
        None
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }
}

impl LocalTraining {
    /// Marks the job as stopped on purpose (so its exit reads `Stopped`, not
    /// `Failed`) and sends SIGTERM; `describe` kills it after [`STOP_GRACE`].
    async fn request_stop(&self, name: &str, reason: &str) -> Result<(), UserError> {
        let container = Self::container(name);
        match self.docker.inspect_container(&container, None).await {
            Ok(i) => {
                let running = i.state.and_then(|s| s.status).is_some_and(|s| {
                    !matches!(
                        s,
                        ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
                    )
                });
                if !running {
                    return Ok(());
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return match self.read_record(name)? {
                    Some(_) => Ok(()),
                    None => Err(UserError::failed(format!(
                        "no local training job named `{name}` (no container {container}, no record under {})",
                        self.store.display()
                    ))),
                };
            }
            Err(e) => return Err(self.engine_error("cannot inspect the training container", e)),
        }
        let dir = self.dir(name);
        if !self.stop_marker(name).exists() {
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(self.stop_marker(name), reason))
                .map_err(|e| UserError::failed(format!("cannot write {}: {e}", dir.display())))?;
        }
        let opts = KillContainerOptionsBuilder::default()
            .signal("SIGTERM")
            .build();
        match self.docker.kill_container(&container, Some(opts)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => Ok(()),
            Err(e) => Err(self.engine_error("cannot stop the training container", e)),
        }
    }
}
