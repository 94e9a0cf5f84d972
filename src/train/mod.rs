//! Training backends: the [`TrainingBackend`] trait (submit, describe, logs, stop)
//! and the job types every backend shares. Waiting, attaching, timeouts,
//! cancellation, metrics and gates are written once, in `modes/train.rs`, above
//! this trait; a backend only talks to its engine.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::instance::Resolved;

pub mod kubernetes;
pub mod local;
pub mod metrics;
pub mod pod_storage;
pub mod sagemaker;
pub mod upload;
pub mod vertex;

/// Everything a backend needs to start one training job.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// The job's name (unique per model, run and attempt): the backend's job id.
    pub name: String,
    /// The training image.
    pub image: String,
    /// The instance type, resolved for this backend.
    pub instance: Resolved,
    /// Instance count.
    pub count: u32,
    /// Hyperparameters as the container receives them (strings).
    pub hyperparameters: BTreeMap<String, String>,
    /// Input channels: name → where the data is.
    pub channels: BTreeMap<String, Channel>,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// The job's own maximum runtime on the backend.
    pub max_runtime: Duration,
    /// Metrics read from the logs: name → regex (SageMaker MetricDefinitions).
    pub metric_definitions: BTreeMap<String, String>,
    /// Where remote backends put model artifacts (`s3://…`).
    pub output: Option<String>,
    /// Tags/labels recorded on the job (lineage: model, commit, run URL).
    pub tags: BTreeMap<String, String>,
    /// The run this job is for; recorded with the job (its tags are merged into
    /// `tags`) and read back by [`TrainingBackend::identity`].
    pub identity: Identity,
}

impl JobSpec {
    /// The tags a backend records on the job: `tags` with the identity's tags
    /// (which win), so that [`TrainingBackend::identity`] can read it back.
    pub fn all_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.tags.clone();
        t.extend(self.identity.tags());
        t
    }
}

/// Where an input channel's data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    /// A directory on this machine (absolute path).
    Local(PathBuf),
    /// A remote URI (`s3://…`, `gs://…`).
    Remote(String),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Local(p) => write!(f, "{}", p.display()),
            Channel::Remote(u) => f.write_str(u),
        }
    }
}

/// A job's state, as SageMaker names them (every backend maps onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Accepted, not running yet.
    Pending,
    /// Running.
    InProgress,
    /// A stop was requested and is under way.
    Stopping,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped before it finished.
    Stopped,
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Stopped
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobState::Pending => "Pending",
            JobState::InProgress => "InProgress",
            JobState::Stopping => "Stopping",
            JobState::Completed => "Completed",
            JobState::Failed => "Failed",
            JobState::Stopped => "Stopped",
        })
    }
}

/// What a backend knows about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// The backend's finer status (SageMaker's SecondaryStatus: `Downloading`, `Training`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why it failed (SageMaker FailureReason; `/opt/ml/output/failure` locally).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Final metrics the backend reports (metrics.json, FinalMetricDataList).
    pub metrics: BTreeMap<String, f64>,
    /// Where the model artifact (model.tar.gz) is, once the job completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// The training image the job ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The hyperparameters the job ran with (an attached job's own, not ours).
    pub hyperparameters: BTreeMap<String, String>,
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Submitted {
    /// A new job was started.
    Created,
    /// A job of that name already existed (a re-run of the same attempt): nothing
    /// was started; the caller attaches to it.
    AlreadyExists,
}

/// Where a job's log stream continues from. Opaque to callers.
#[derive(Debug, Clone, Default)]
pub struct LogCursor(pub Option<String>);

/// One training engine.
///
/// Errors are [`UserError`]s with the engine's message and a hint; transient
/// failures are retried inside the backend (through `cloud::retry`), so an error
/// returned here is final for that call.
#[async_trait]
pub trait TrainingBackend: Send + Sync {
    /// The backend's name for messages (`local`, `sagemaker`).
    fn name(&self) -> &'static str;

    /// Checks, before anything is submitted, that the spec can run here
    /// (instance type known, GPUs available, channels reachable, output set).
    async fn preflight(&self, spec: &JobSpec) -> Result<(), UserError>;

    /// Makes the job's inputs reachable by the engine and returns the spec to
    /// submit: SageMaker uploads local channel directories to S3 (skipping what is
    /// there already) and fills in the default output location. Called once, after
    /// [`preflight`](Self::preflight) and before [`submit`](Self::submit), only when
    /// a job is to be started; `say` prints a progress line. Default: the spec as is.
    async fn stage(
        &self,
        spec: &JobSpec,
        _say: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<JobSpec, UserError> {
        Ok(spec.clone())
    }

    /// Starts the job, or reports that a job of that name exists already.
    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, UserError>;

    /// What the backend recorded about who started the job `name`: absent, a job
    /// without an mlcd identity, or the [`Identity`] it was started for. Called
    /// before mlcd attaches to a job it found by name, and before `describe`
    /// (which may collect a finished job), so that another run's job is never
    /// touched. Must not change the job.
    async fn identity(&self, name: &str) -> Result<Recorded, UserError>;

    /// The job's status; `None` when no job has that name.
    async fn describe(&self, name: &str) -> Result<Option<JobStatus>, UserError>;

    /// Log lines written since `cursor` (which is advanced). A backend without
    /// logs for the job (yet) returns none.
    async fn logs(&self, name: &str, cursor: &mut LogCursor) -> Result<Vec<String>, UserError>;

    /// Asks the engine to stop the job; returns once the request is accepted.
    async fn stop(&self, name: &str) -> Result<(), UserError>;

    /// The job's page (console URL), if the engine has one.
    fn job_url(&self, name: &str) -> Option<String>;

    /// How long to wait between two `describe` calls while a job runs.
    fn poll_interval(&self) -> Duration;

    /// The longest the interval grows to while nothing changes (it backs off
    /// from [`poll_interval`](Self::poll_interval) by half each quiet poll and
    /// starts over on every state change). Default: no back-off.
    fn max_poll_interval(&self) -> Duration {
        self.poll_interval()
    }
}

/// How long a backend waits between two `describe` calls: `default`, unless
/// `MLCD_POLL_INTERVAL_MS` in `env` says otherwise (tests shorten it; a user
/// polling a slow engine may lengthen it). Read here, once, for every backend.
pub fn poll_interval_from_env(env: &BTreeMap<String, String>, default: Duration) -> Duration {
    env.get("MLCD_POLL_INTERVAL_MS")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map_or(default, Duration::from_millis)
}
