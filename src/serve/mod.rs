//! Serving backends: the [`ServingBackend`] trait (deploy a version beside the
//! live one, read status, set traffic, invoke one version, retire, roll back,
//! tear down) and the endpoint types every backend shares. The rollout
//! strategies (all-at-once, canary, linear, blue-green, shadow), verification
//! and rollback are written once above this trait, in `modes/deploy.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::values::Protocol;
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::instance::Resolved;

pub mod capture;
pub mod kserve;
pub mod local;
pub mod router;
pub mod router_image;
pub mod sagemaker;
pub mod sagemaker_metrics;
pub mod stats;
pub mod verify;
pub mod vertex;

/// One model version to put behind an endpoint.
#[derive(Debug, Clone)]
pub struct VersionSpec {
    /// The endpoint's name.
    pub endpoint: String,
    /// The version's id, unique per endpoint: letters, digits and `-`, at most
    /// 32 characters (it names containers, SageMaker models and variants).
    pub version: String,
    /// The serving image.
    pub image: String,
    /// The model artifact (`model.tar.gz`): a local path (local backend) or an
    /// `s3://` URI (SageMaker); unpacked into `/opt/ml/model`. None when the image
    /// carries its model.
    pub model_data: Option<String>,
    /// The model's name (Open Inference Protocol v2 paths: `/v2/models/{name}/infer`).
    pub model_name: String,
    /// The instance type, resolved for the backend.
    pub instance: Resolved,
    /// Serving replicas (instances).
    pub replicas: u32,
    /// Container environment.
    pub env: BTreeMap<String, String>,
    /// Server worker processes per replica (`SAGEMAKER_MODEL_SERVER_WORKERS`).
    pub workers: Option<u32>,
    /// Batching: the largest batch and the longest wait for it to fill.
    pub batching: Option<(u32, Duration)>,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// The protocol the container speaks.
    pub protocol: Protocol,
    /// Tags/labels recorded on what the backend creates (lineage).
    pub tags: BTreeMap<String, String>,
    /// The run deploying this version; its tags are merged into `tags`, and an
    /// endpoint this spec creates records it as the endpoint's owner.
    pub identity: Identity,
}

impl VersionSpec {
    /// The serving container contract's environment every backend sets (request
    /// timeout, workers, batching), with `deploy.env` over it: a value the user
    /// sets wins. Each backend then adds what it owns (the port to bind).
    pub fn contract_env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "SAGEMAKER_MODEL_SERVER_TIMEOUT".to_string(),
            self.request_timeout.as_secs().max(1).to_string(),
        );
        if let Some(w) = self.workers {
            env.insert("SAGEMAKER_MODEL_SERVER_WORKERS".into(), w.to_string());
        }
        if let Some((size, wait)) = self.batching {
            env.insert("SAGEMAKER_TS_BATCH_SIZE".into(), size.to_string());
            env.insert(
                "SAGEMAKER_TS_MAX_BATCH_DELAY".into(),
                wait.as_millis().to_string(),
            );
        }
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }

    /// The tags a backend records on what it creates: `tags` with the identity's
    /// tags (which win), so that [`ServingBackend::owner`] can read it back.
    pub fn all_tags(&self) -> BTreeMap<String, String> {
        let mut t = self.tags.clone();
        t.extend(self.identity.tags());
        t
    }
}

/// An endpoint's state, as SageMaker names them (every backend maps onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointState {
    /// Being created.
    Creating,
    /// Serving; changes may be made.
    InService,
    /// A change is under way (ours or someone else's).
    Updating,
    /// A failed change is being undone by the engine.
    RollingBack,
    /// The last change failed; the endpoint may still serve the old version.
    Failed,
    /// A rollback failed: the endpoint needs a person.
    UpdateRollbackFailed,
    /// Being deleted.
    Deleting,
    /// Not serving.
    OutOfService,
}

impl EndpointState {
    /// Whether a change is under way (a new change must wait or be refused).
    pub fn is_changing(self) -> bool {
        matches!(
            self,
            EndpointState::Creating
                | EndpointState::Updating
                | EndpointState::RollingBack
                | EndpointState::Deleting
        )
    }
}

/// One version behind an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Variant {
    /// The version's id.
    pub version: String,
    /// Its image.
    pub image: String,
    /// Its share of live traffic, 0 to 100.
    pub weight: u8,
    /// A shadow receives a copy of the traffic and answers nobody.
    pub shadow: bool,
    /// Whether it passes its readiness check (`/ping` or `/v2/health/ready`).
    pub ready: bool,
    /// Where it answers directly, when the backend exposes that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// What a backend knows about an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub name: String,
    /// Its state.
    pub state: EndpointState,
    /// The backend's reason for a failed state (SageMaker FailureReason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The stable URL clients call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The versions behind it.
    pub variants: Vec<Variant>,
}

/// A request to send to one version.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The body.
    pub body: Vec<u8>,
    /// Its content type.
    pub content_type: String,
}

/// A version's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Time from sending to the whole answer, as measured by mlcd.
    pub latency: Duration,
}

/// One serving engine.
///
/// Errors are [`UserError`]s with the engine's message and a hint; transient
/// failures are retried inside the backend, so an error returned here is final.
#[async_trait]
pub trait ServingBackend: Send + Sync {
    /// The backend's name for messages (`local`, `sagemaker`).
    fn name(&self) -> &'static str;

    /// Checks, before anything changes, that the spec can be served here.
    async fn preflight(&self, spec: &VersionSpec) -> Result<(), UserError>;

    /// Who created the endpoint: absent, an endpoint without an mlcd identity, or
    /// the [`Identity`] of the run that created it (only its `source` is
    /// compared: versions from other commits of the same repository are normal).
    /// Checked before a rollout or rollback changes anything.
    async fn owner(&self, endpoint: &str) -> Result<Recorded, UserError>;

    /// The endpoint as it is now; `None` when it does not exist.
    async fn status(&self, endpoint: &str) -> Result<Option<EndpointStatus>, UserError>;

    /// Starts `spec` beside the versions already behind the endpoint (creating
    /// the endpoint when it does not exist, in which case the version takes 100%
    /// of the traffic), taking no live traffic — or, with `shadow`, a copy of it.
    /// Returns once the engine accepted the change; readiness shows in `status`.
    async fn deploy(&self, spec: &VersionSpec, shadow: bool) -> Result<(), UserError>;

    /// Whether a shadow receives a copy of the live traffic (local, SageMaker); a
    /// backend that cannot mirror (KServe, Vertex AI) runs the shadow beside the live
    /// version, reached only by the replayed sample requests.
    fn mirrors_traffic(&self) -> bool {
        true
    }

    /// Sets the live traffic of the endpoint's production versions: version →
    /// percent, summing to 100. Versions not named get 0.
    async fn set_traffic(
        &self,
        endpoint: &str,
        weights: &BTreeMap<String, u8>,
    ) -> Result<(), UserError>;

    /// Sends one request to one version directly (smoke tests, shadow replays).
    async fn invoke(
        &self,
        endpoint: &str,
        version: &str,
        request: &Invocation,
    ) -> Result<Answer, UserError>;

    /// Removes one version from the endpoint (it must take no live traffic).
    async fn retire(&self, endpoint: &str, version: &str) -> Result<(), UserError>;

    /// Puts `version` back as the only production version with 100% of the
    /// traffic and removes every other version.
    async fn rollback(&self, endpoint: &str, version: &str) -> Result<(), UserError>;

    /// Deletes the endpoint and everything behind it.
    async fn teardown(&self, endpoint: &str) -> Result<(), UserError>;

    /// How long to wait between two `status` calls while a change is under way.
    fn poll_interval(&self) -> Duration;

    /// Waits before the next `status` call of a wait loop: the poll interval,
    /// or less where the backend learns of changes as they happen (KServe's
    /// watches).
    async fn pause(&self, _endpoint: &str) {
        tokio::time::sleep(self.poll_interval()).await;
    }

    /// The start of an interval whose live traffic [`ServingBackend::version_stats`]
    /// then measures (the local backend reads its router's counters here).
    async fn traffic_mark(&self, _endpoint: &str) -> Result<stats::TrafficMark, UserError> {
        Ok(stats::TrafficMark::now())
    }

    /// Each version's live requests, 5xx answers and p95 latency since `mark`;
    /// None when the backend does not measure live traffic.
    async fn version_stats(
        &self,
        _endpoint: &str,
        _mark: &stats::TrafficMark,
    ) -> Result<Option<BTreeMap<String, stats::VersionStats>>, UserError> {
        Ok(None)
    }
}
