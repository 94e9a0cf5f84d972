//! The Kubernetes training backend: a Kubeflow Trainer v2 `TrainJob`
//! (trainer.kubeflow.org/v1alpha1) on a `ClusterTrainingRuntime`, or a Training
//! Operator v1 `PyTorchJob` (kubeflow.org/v1), applied server-side under mlcd's
//! field manager. The objects are built by [`manifests`], the one function both
//! `submit` and `mlcd render train` use, so what a user reviews is what is applied.
//!
//! The SageMaker container contract is kept: the hyperparameters are a ConfigMap
//! mounted at `/opt/ml/input/config/hyperparameters.json`, channels are
//! `pvc://claim/path` mounts under `/opt/ml/input/data/<channel>/` or `s3://`
//! prefixes copied there, and `/opt/ml/model` is a directory of a `pvc://`
//! `kubernetes.storage-uri` or uploaded as `model.tar.gz` under an `s3://` one
//! (mlcd's storage containers: [`storage`]). CRD objects
//! are plain JSON (`DynamicObject`): the pinned CRD schemas are what the test bed's
//! fake API server validates them against. Stopping a job suspends it (see [`stop`]).
//!
//! [`stop`]: KubernetesTraining::stop

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Map, Value};

use super::{
    poll_interval_from_env, Channel, JobSpec, JobState, JobStatus, LogCursor, Submitted,
    TrainingBackend,
};
use crate::cloud::kube::{self as k, ApiFailure};
use crate::cloud::kube_follow::Followed;
use crate::config::types::KubeTrainer;
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::instance;
use crate::plan::kubernetes::parse_pvc;
use crate::plan::KubernetesPlan;
use crate::train::pod_storage::parse_s3;

pub mod storage;
use storage::S3Storage;

/// How often mlcd looks at a job by default. Cheap: `describe` answers from the
/// job's watch, so a change is seen within this interval without a request.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How often a running job's log (and a pending job's Events) is read at most;
/// the rest of the log is read as soon as the job has ended.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a job may wait without a condition before its Events are read for
/// the why: most jobs start within it, and reading the Events of the job and
/// of each of its pods at the first look cost a short job most of its calls.
pub const EVENTS_AFTER: Duration = Duration::from_secs(2);

/// When a job's log and Events were last read (the job itself is followed by a
/// watch: [`Followed`]).
#[derive(Debug, Default)]
struct Watched {
    /// When the log was last read.
    log_read: Option<Instant>,
    /// When the Events were last read, and the reason they gave.
    reason: Option<(Instant, Option<String>)>,
    /// When mlcd first saw the job waiting (Events are read from
    /// [`EVENTS_AFTER`] on).
    pending_since: Option<Instant>,
}

type WatchMap = Arc<Mutex<HashMap<String, Watched>>>;

/// Label on every object mlcd makes, and on the job's pods: the job's name.
pub const LABEL_JOB: &str = "mlcd.dev/job";
/// Label: the model.
pub const LABEL_MODEL: &str = "mlcd.dev/model";
/// The annotation prefix identity tags are recorded under (`mlcd:source` →
/// `mlcd.dev/source`): label values cannot hold `/` or `:`.
const ANNOTATION_PREFIX: &str = "mlcd.dev/";

/// The replicated job and container of the runtime's trainer step that mlcd
/// patches (`torch-distributed` and the other Kubeflow runtimes name both `node`).
pub const TRAINER_STEP: &str = "node";
/// The container PyTorchJob requires its training container to be named.
const PYTORCH_CONTAINER: &str = "pytorch";
/// Where the container contract puts the failure reason; PyTorchJob pods use it
/// as their termination message path.
const FAILURE_FILE: &str = "/opt/ml/output/failure";

/// The TrainJob resource.
pub fn trainjob_resource() -> ApiResource {
    k::resource("trainer.kubeflow.org/v1alpha1", "TrainJob", "trainjobs")
}

/// The PyTorchJob resource.
pub fn pytorchjob_resource() -> ApiResource {
    k::resource("kubeflow.org/v1", "PyTorchJob", "pytorchjobs")
}

/// The ClusterTrainingRuntime resource (cluster-scoped).
pub fn runtime_resource() -> ApiResource {
    k::resource(
        "trainer.kubeflow.org/v1alpha1",
        "ClusterTrainingRuntime",
        "clustertrainingruntimes",
    )
}

/// The ConfigMap holding a job's hyperparameters.
pub fn hyperparameters_config_map(job: &str) -> String {
    format!("{job}-hyperparameters")
}

/// A tag key as an annotation key: `mlcd:source` → `mlcd.dev/source`.
pub(crate) fn annotation_key(tag: &str) -> String {
    let bare = tag.strip_prefix("mlcd:").unwrap_or(tag);
    let clean: String = bare
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{ANNOTATION_PREFIX}{}", clean.trim_matches('-'))
}

/// The identity an object records in its `mlcd.dev/*` annotations (jobs and
/// InferenceServices alike): [`Recorded::Unknown`] when it records none.
pub(crate) fn recorded_from_annotations(obj: &Value) -> Recorded {
    let tags: Vec<(String, String)> = obj["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let bare = k.strip_prefix(ANNOTATION_PREFIX)?;
                    Some((format!("mlcd:{bare}"), v.as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    match Identity::from_tags(tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Some(id) => Recorded::Run(id),
        None => Recorded::Unknown,
    }
}

/// A value as a label value: at most 63 of `[A-Za-z0-9-_.]`, alphanumeric at
/// both ends.
pub(crate) fn label_value(v: &str) -> String {
    let s: String = v
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn labels(spec: &JobSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("app.kubernetes.io/managed-by".into(), json!("mlcd"));
    m.insert(LABEL_JOB.into(), json!(label_value(&spec.name)));
    m.insert(LABEL_MODEL.into(), json!(label_value(&spec.identity.model)));
    m
}

fn annotations(spec: &JobSpec) -> Map<String, Value> {
    spec.all_tags()
        .into_iter()
        .map(|(k, v)| (annotation_key(&k), json!(v)))
        .collect()
}

/// The volumes and mounts of the container contract.
struct Mounts {
    volumes: Vec<Value>,
    mounts: Vec<Value>,
    artifact: String,
    /// What mlcd's storage containers do (nothing for PVCs only).
    s3: S3Storage,
}

/// The volume of one mount of a claim: one volume per mount (`data-<channel>`,
/// `model-store`), since Kubeflow Trainer's `runtimePatches` key a container's
/// volumeMounts by volume name, so two mounts of one volume are refused.
fn volume_name(purpose: &str) -> String {
    let n: String = purpose
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    n.trim_matches('-').to_string()
}

fn mounts(spec: &JobSpec, plan: &KubernetesPlan) -> Result<Mounts, UserError> {
    let mut claims: Vec<(String, String)> = Vec::new();
    let mut s3 = S3Storage::default();
    let mut mounts = vec![json!({
        "name": "hyperparameters",
        "mountPath": "/opt/ml/input/config",
        "readOnly": true,
    })];
    for (ch, src) in &spec.channels {
        let uri = match src {
            Channel::Remote(u) => u,
            Channel::Local(p) => {
                return Err(UserError::invalid(format!(
                    "`train.channels.{ch}` is `{}`, a directory on this machine: a Kubernetes job cannot read it",
                    p.display()
                ))
                .hint(format!("copy the data to a PersistentVolumeClaim and give `train.channels.{ch}: pvc://claim/path`")));
            }
        };
        if uri.starts_with("s3://") {
            parse_s3(uri).map_err(|e| {
                UserError::invalid(format!("`train.channels.{ch}`: {e}"))
                    .hint(format!("give `train.channels.{ch}: s3://bucket/prefix`"))
            })?;
            s3.channels.insert(ch.clone(), uri.clone());
            continue;
        }
        let (claim, path) = parse_pvc(uri).map_err(|e| {
            UserError::invalid(format!("`train.channels.{ch}`: {e}")).hint(format!(
                "give `train.channels.{ch}: pvc://claim/path` or `s3://bucket/prefix`"
            ))
        })?;
        let vol = volume_name(&format!("data-{ch}"));
        claims.push((claim, vol.clone()));
        let mut m = json!({
            "name": vol,
            "mountPath": format!("/opt/ml/input/data/{ch}"),
            "readOnly": true,
        });
        if !path.is_empty() {
            m["subPath"] = json!(path);
        }
        mounts.push(m);
    }
    let storage = plan.storage_uri.as_deref().ok_or_else(|| {
        UserError::invalid(
            "`kubernetes.storage-uri` is not set: the job's /opt/ml/model would be lost with its pod",
        )
        .hint("set `kubernetes.storage-uri: pvc://claim/path` (a PersistentVolumeClaim the job's namespace can mount) or `s3://bucket/prefix`")
    })?;
    let artifact = if storage.starts_with("s3://") {
        let (bucket, prefix) = parse_s3(storage).map_err(|e| {
            UserError::invalid(format!("`kubernetes.storage-uri`: {e}"))
                .hint("give `kubernetes.storage-uri: s3://bucket/prefix`")
        })?;
        let prefix = prefix.trim_matches('/');
        let key = if prefix.is_empty() {
            format!("{}/model.tar.gz", spec.name)
        } else {
            format!("{prefix}/{}/model.tar.gz", spec.name)
        };
        let uri = format!("s3://{bucket}/{key}");
        s3.model = Some(uri.clone());
        uri
    } else {
        let (claim, path) = parse_pvc(storage).map_err(|e| {
            UserError::invalid(format!("`kubernetes.storage-uri`: {e}"))
                .hint("give `kubernetes.storage-uri: pvc://claim/path` or `s3://bucket/prefix`")
        })?;
        let sub = if path.is_empty() {
            format!("{}/model", spec.name)
        } else {
            format!("{path}/{}/model", spec.name)
        };
        let vol = volume_name("model-store");
        claims.push((claim.clone(), vol.clone()));
        mounts.push(json!({ "name": vol, "mountPath": "/opt/ml/model", "subPath": sub }));
        format!("pvc://{claim}/{sub}")
    };
    // The fetched channels' directory first: the claims' channel mounts nest in it.
    let (data, rest) = s3.trainer_mounts();
    if let Some(d) = data {
        mounts.insert(1, d);
    }
    mounts.extend(rest);
    let mut volumes = vec![json!({
        "name": "hyperparameters",
        "configMap": { "name": hyperparameters_config_map(&spec.name) },
    })];
    for (claim, vol) in claims {
        // Another channel on this claim has its own volume (see volume_name).
        volumes.push(json!({ "name": vol, "persistentVolumeClaim": { "claimName": claim } }));
    }
    // A TrainJob's runtime carries the storage volumes (with its containers).
    if !s3.is_empty() && plan.trainer == KubeTrainer::Pytorchjob {
        volumes.extend(storage::volumes());
    }
    Ok(Mounts {
        volumes,
        mounts,
        artifact,
        s3,
    })
}

fn resources(spec: &JobSpec) -> Result<Value, UserError> {
    let list = instance::kubernetes_resources(&spec.instance.native)
        .map_err(|e| UserError::invalid(format!("`train.instance`: {e}")))?;
    let q: Map<String, Value> = list.into_iter().map(|(k, v)| (k, json!(v))).collect();
    Ok(json!({ "requests": q.clone(), "limits": q }))
}

fn env_list(spec: &JobSpec) -> Vec<Value> {
    spec.env
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect()
}

fn metadata(spec: &JobSpec, plan: &KubernetesPlan, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": plan.namespace,
        "labels": labels(spec),
        "annotations": annotations(spec),
    })
}

/// The objects a job is made of, in the order they are applied: the
/// hyperparameters ConfigMap, then the TrainJob or PyTorchJob. Touches nothing.
pub fn manifests(spec: &JobSpec, plan: &KubernetesPlan) -> Result<Vec<Value>, UserError> {
    let m = mounts(spec, plan)?;
    let resources = resources(spec)?;
    let hp = serde_json::to_string_pretty(&spec.hyperparameters).expect("strings serialize");
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(spec, plan, &hyperparameters_config_map(&spec.name)),
        "data": { "hyperparameters.json": hp },
    });
    let deadline = spec.max_runtime.as_secs().max(1);
    let pod_labels = labels(spec);
    let job = match plan.trainer {
        KubeTrainer::Trainjob => {
            let mut pod_spec = json!({
                "volumes": m.volumes,
                "containers": [{ "name": TRAINER_STEP, "volumeMounts": m.mounts }],
            });
            // The runtime's storage containers get their work as env.
            let mut inits = Vec::new();
            if !m.s3.channels.is_empty() {
                inits.push(json!({ "name": storage::FETCH, "env": m.s3.fetch_env(plan) }));
            }
            if m.s3.model.is_some() {
                inits.push(json!({ "name": storage::KEEP, "env": m.s3.keep_env(plan) }));
            }
            if !inits.is_empty() {
                pod_spec["initContainers"] = json!(inits);
            }
            if let Some(sa) = &plan.service_account {
                pod_spec["serviceAccountName"] = json!(sa);
            }
            let mut trainer = json!({
                "image": spec.image,
                "args": ["train"],
                "numNodes": spec.count,
                "resourcesPerNode": resources,
            });
            let env = env_list(spec);
            if !env.is_empty() {
                trainer["env"] = json!(env);
            }
            json!({
                "apiVersion": "trainer.kubeflow.org/v1alpha1",
                "kind": "TrainJob",
                "metadata": metadata(spec, plan, &spec.name),
                "spec": {
                    "runtimeRef": {
                        "apiGroup": "trainer.kubeflow.org",
                        "kind": "ClusterTrainingRuntime",
                        "name": plan.runtime,
                    },
                    "activeDeadlineSeconds": deadline,
                    "trainer": trainer,
                    "runtimePatches": [{
                        "manager": "mlcd.dev/mlcd",
                        "trainingRuntimeSpec": { "template": { "spec": { "replicatedJobs": [{
                            "name": TRAINER_STEP,
                            "template": { "spec": { "template": {
                                "metadata": { "labels": pod_labels },
                                "spec": pod_spec,
                            }}},
                        }]}}},
                    }],
                },
            })
        }
        KubeTrainer::Pytorchjob => {
            let mut container = json!({
                "name": PYTORCH_CONTAINER,
                "image": spec.image,
                "args": ["train"],
                "resources": resources,
                "volumeMounts": m.mounts,
                "terminationMessagePolicy": "FallbackToLogsOnError",
            });
            // The failure file as the termination message: the kubelet
            // bind-mounts a file of its own there, so with an s3:// model the
            // sidecar could not see the file; it relays the reason instead.
            if m.s3.model.is_none() {
                container["terminationMessagePath"] = json!(FAILURE_FILE);
            }
            let env = env_list(spec);
            if !env.is_empty() {
                container["env"] = json!(env);
            }
            let mut pod_spec = json!({ "containers": [container], "volumes": m.volumes });
            if let Some(sa) = &plan.service_account {
                pod_spec["serviceAccountName"] = json!(sa);
            }
            // Every replica fetches the channels; the Master alone keeps the model.
            let mut worker_spec = pod_spec.clone();
            if !m.s3.channels.is_empty() {
                let fetch = storage::fetch_container(&plan.mlcd_image, Some(m.s3.fetch_env(plan)));
                pod_spec["initContainers"] = json!([fetch.clone()]);
                worker_spec["initContainers"] = json!([fetch]);
            }
            if m.s3.model.is_some() {
                let keep = storage::keep_container(&plan.mlcd_image, Some(m.s3.keep_env(plan)));
                match pod_spec["initContainers"].as_array_mut() {
                    Some(list) => list.push(keep),
                    None => pod_spec["initContainers"] = json!([keep]),
                }
                pod_spec["terminationGracePeriodSeconds"] = json!(storage::GRACE_SECONDS);
            }
            let replica = |n: u32, pod_spec: &Value| {
                json!({
                    "replicas": n,
                    "restartPolicy": "Never",
                    "template": { "metadata": { "labels": pod_labels }, "spec": pod_spec },
                })
            };
            let mut replicas = json!({ "Master": replica(1, &pod_spec) });
            if spec.count > 1 {
                replicas["Worker"] = replica(spec.count - 1, &worker_spec);
            }
            json!({
                "apiVersion": "kubeflow.org/v1",
                "kind": "PyTorchJob",
                "metadata": metadata(spec, plan, &spec.name),
                "spec": {
                    "runPolicy": {
                        "activeDeadlineSeconds": deadline,
                        "backoffLimit": 0,
                        "suspend": false,
                    },
                    "pytorchReplicaSpecs": replicas,
                },
            })
        }
    };
    Ok(vec![config_map, job])
}

/// Where a completed job's model is, as [`manifests`] mounts it.
pub fn artifact(spec: &JobSpec, plan: &KubernetesPlan) -> Option<String> {
    mounts(spec, plan).ok().map(|m| m.artifact)
}

/// The objects as a YAML stream (`---` between documents), as `mlcd render` prints them.
pub fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values serialize as YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One condition of a job's status.
#[derive(Debug, Clone, PartialEq)]
struct Condition {
    kind: String,
    status: bool,
    reason: String,
    message: String,
}

fn conditions(obj: &Value) -> Vec<Condition> {
    obj["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| Condition {
                    kind: c["type"].as_str().unwrap_or_default().to_string(),
                    status: c["status"].as_str() == Some("True"),
                    reason: c["reason"].as_str().unwrap_or_default().to_string(),
                    message: c["message"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A job's state from its conditions (and, for a TrainJob, its jobs' counts).
fn state_of(trainer: KubeTrainer, obj: &Value) -> (JobState, Option<String>) {
    let cs = conditions(obj);
    let on = |k: &str| cs.iter().find(|c| c.kind == k && c.status);
    let suspend_asked = match trainer {
        KubeTrainer::Trainjob => obj["spec"]["suspend"].as_bool(),
        KubeTrainer::Pytorchjob => obj["spec"]["runPolicy"]["suspend"].as_bool(),
    }
    .unwrap_or(false);
    let (done, failed) = match trainer {
        KubeTrainer::Trainjob => ("Complete", "Failed"),
        KubeTrainer::Pytorchjob => ("Succeeded", "Failed"),
    };
    let detail = |c: &Condition| {
        Some(if c.reason.is_empty() {
            c.kind.clone()
        } else {
            c.reason.clone()
        })
    };
    if let Some(c) = on(done) {
        return (JobState::Completed, detail(c));
    }
    if let Some(c) = on(failed) {
        return (JobState::Failed, detail(c));
    }
    if let Some(c) = on("Suspended") {
        return (JobState::Stopped, detail(c));
    }
    if suspend_asked {
        return (JobState::Stopping, Some("Suspending".into()));
    }
    let running = match trainer {
        KubeTrainer::Trainjob => obj["status"]["jobsStatus"]
            .as_array()
            .is_some_and(|js| js.iter().any(|j| j["active"].as_i64().unwrap_or(0) > 0)),
        KubeTrainer::Pytorchjob => on("Running").is_some(),
    };
    if running {
        return (JobState::InProgress, Some("Running".into()));
    }
    let created = on("Created");
    (JobState::Pending, created.and_then(detail))
}

/// Why a pod's training container ended, from its terminated state: the
/// termination message (`/opt/ml/output/failure` for PyTorchJob pods), else the
/// reason and exit code.
fn pod_termination(pod: &Pod) -> Option<(String, Option<String>)> {
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        let term = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| cs.last_state.as_ref().and_then(|s| s.terminated.as_ref()));
        if let Some(t) = term {
            if t.exit_code == 0 {
                continue;
            }
            let why = format!(
                "container {} {} (exit code {})",
                cs.name,
                t.reason.as_deref().unwrap_or("terminated"),
                t.exit_code
            );
            let msg = t
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string);
            return Some((why, msg));
        }
    }
    None
}

/// The API resource of `trainer`'s jobs.
fn resource_of(trainer: KubeTrainer) -> ApiResource {
    match trainer {
        KubeTrainer::Trainjob => trainjob_resource(),
        KubeTrainer::Pytorchjob => pytorchjob_resource(),
    }
}

/// The Kubernetes training backend for one namespace and trainer.
#[derive(Clone)]
pub struct KubernetesTraining {
    client: Client,
    plan: KubernetesPlan,
    poll_interval: Duration,
    watched: WatchMap,
    followed: Followed,
}

impl KubernetesTraining {
    /// A backend on the cluster `plan.context` names (see [`k::connect`]). Makes
    /// no request.
    pub async fn new(
        plan: &KubernetesPlan,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, UserError> {
        let (client, source) = k::connect(plan.context.as_deref(), plan.eks.as_ref(), env).await?;
        log::info!("kubernetes: credentials from {source}");
        Ok(Self::with_client(client, plan, env))
    }

    /// A backend over an existing client.
    pub fn with_client(
        client: Client,
        plan: &KubernetesPlan,
        env: &BTreeMap<String, String>,
    ) -> Self {
        KubernetesTraining {
            followed: Followed::new(Api::namespaced_with(
                client.clone(),
                &plan.namespace,
                &resource_of(plan.trainer),
            )),
            client,
            plan: plan.clone(),
            poll_interval: poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            watched: WatchMap::default(),
        }
    }

    /// The job as its watch last saw it, or read now (and watched from then on).
    async fn current_job(&self, name: &str) -> Result<Option<Value>, UserError> {
        self.followed.get(name).await.map_err(|e| {
            self.err(
                format!("reading {} {}/{name}", self.kind(), self.plan.namespace),
                &e,
            )
        })
    }

    /// Whether a read of `what` for `name` is due: always once the job ended or
    /// when it is not watched, else every [`LOG_EVERY`].
    fn due(&self, name: &str, pick: impl Fn(&mut Watched) -> &mut Option<Instant>) -> bool {
        let Some((latest, live)) = self.followed.peek(name) else {
            return true;
        };
        let ended = latest
            .as_ref()
            .is_none_or(|o| state_of(self.plan.trainer, o).0.is_terminal());
        let mut map = self.watched.lock().expect("not poisoned");
        let last = pick(map.entry(name.to_string()).or_default());
        if !live || ended || last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            *last = Some(Instant::now());
            true
        } else {
            false
        }
    }

    fn resource(&self) -> ApiResource {
        resource_of(self.plan.trainer)
    }

    fn kind(&self) -> &'static str {
        match self.plan.trainer {
            KubeTrainer::Trainjob => "TrainJob",
            KubeTrainer::Pytorchjob => "PyTorchJob",
        }
    }

    fn jobs(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.plan.namespace, &self.resource())
    }

    fn err(&self, doing: String, e: &kube::Error) -> UserError {
        k::error(&doing, &self.plan.namespace, e)
    }

    async fn get_job(&self, name: &str) -> Result<Option<Value>, UserError> {
        match self.jobs().get_opt(name).await {
            Ok(o) => Ok(o.map(|o| serde_json::to_value(o).expect("objects serialize"))),
            Err(e) => Err(self.err(
                format!("reading {} {}/{name}", self.kind(), self.plan.namespace),
                &e,
            )),
        }
    }

    /// The job's pods, the newest first.
    async fn pods(&self, name: &str) -> Result<Vec<Pod>, UserError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.plan.namespace);
        let lp = ListParams::default().labels(&format!("{LABEL_JOB}={}", label_value(name)));
        let mut pods = api
            .list(&lp)
            .await
            .map_err(|e| self.err(format!("listing the pods of {} {name}", self.kind()), &e))?
            .items;
        pods.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        });
        Ok(pods)
    }

    /// The pod whose log is the job's: rank 0 (the PyTorchJob master, the
    /// TrainJob's first node), the newest of them.
    /// The model's sidecar is a native sidecar container: Kubernetes 1.29 or
    /// later (SidecarContainers on by default). Older clusters would run it as
    /// an init container that never ends, and the job would never start.
    async fn check_sidecars(&self) -> Result<(), UserError> {
        let v = self
            .client
            .apiserver_version()
            .await
            .map_err(|e| self.err("reading the cluster's version".to_string(), &e))?;
        let minor: u32 = v
            .minor
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(0);
        if v.major == "1" && minor < 29 {
            return Err(UserError::invalid(format!(
                "`kubernetes.storage-uri` is an s3:// URI: mlcd uploads the model from a native sidecar container, which needs Kubernetes 1.29 or later, and the cluster runs {}.{}",
                v.major, v.minor
            ))
            .hint("keep the model on a PersistentVolumeClaim (`kubernetes.storage-uri: pvc://claim/path`), or upgrade the cluster"));
        }
        Ok(())
    }

    /// A completed job whose model should have been uploaded: did the
    /// lead pod's `mlcd-keep-model` upload it? `Some(why)` when it did not.
    async fn model_not_kept(&self, name: &str) -> Option<String> {
        let pod = self.lead_pod(name).await.ok()??;
        let (code, message) = storage::keep_outcome(&pod)?;
        let kept = message.starts_with(crate::train::pod_storage::UPLOADED_PREFIX);
        if code == 0 && kept {
            return None;
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        Some(format!(
            "the training completed, but its model was not kept: {} (container {} of pod {pod_name}, exit code {code}; `kubectl logs {pod_name} -c {}`)",
            if message.is_empty() { "no message" } else { message.as_str() },
            storage::KEEP,
            storage::KEEP,
        ))
    }

    async fn lead_pod(&self, name: &str) -> Result<Option<Pod>, UserError> {
        let pods = self.pods(name).await?;
        let is_lead = |p: &Pod| {
            let l = p.metadata.labels.clone().unwrap_or_default();
            l.get("training.kubeflow.org/replica-type")
                .map(String::as_str)
                == Some("master")
                || l.get("batch.kubernetes.io/job-completion-index")
                    .map(String::as_str)
                    == Some("0")
        };
        Ok(pods
            .iter()
            .find(|p| is_lead(p))
            .or_else(|| pods.first())
            .cloned())
    }

    async fn pod_log(&self, pod: &str) -> Result<Vec<String>, UserError> {
        Ok(self.pod_log_opt(pod).await?.unwrap_or_default())
    }

    /// The pod's log; `None` when the pod is gone.
    async fn pod_log_opt(&self, pod: &str) -> Result<Option<Vec<String>>, UserError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.plan.namespace);
        let lp = LogParams {
            container: Some(
                match self.plan.trainer {
                    KubeTrainer::Trainjob => TRAINER_STEP,
                    KubeTrainer::Pytorchjob => PYTORCH_CONTAINER,
                }
                .to_string(),
            ),
            ..LogParams::default()
        };
        match api.logs(pod, &lp).await {
            Ok(text) => Ok(Some(text.lines().map(str::to_string).collect())),
            Err(e) if k::failure(&e) == ApiFailure::NotFound => Ok(None),
            // Not started yet (400 "waiting to start"): no lines.
            Err(e) if k::failure(&e) == ApiFailure::Invalid => Ok(Some(Vec::new())),
            Err(e) => Err(self.err(format!("reading the log of pod {pod}"), &e)),
        }
    }

    /// Why a failed job failed: the condition's message, and the pod's
    /// termination message or its last log line.
    async fn failure_reason(&self, name: &str, obj: &Value) -> String {
        let cs = conditions(obj);
        let cond = cs
            .iter()
            .find(|c| c.kind == "Failed" && c.status)
            .map(|c| {
                if c.message.is_empty() {
                    c.reason.clone()
                } else {
                    format!("{}: {}", c.reason, c.message)
                }
            })
            .unwrap_or_else(|| "Failed".into());
        let Ok(Some(pod)) = self.lead_pod(name).await else {
            return cond;
        };
        if let Some(reason) =
            storage::keep_outcome(&pod).and_then(|(_, m)| storage::training_failure(&m))
        {
            return match pod_termination(&pod) {
                Some((why, _)) => format!("{reason} ({why}; {cond})"),
                None => format!("{reason} ({cond})"),
            };
        }
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        match pod_termination(&pod) {
            Some((why, Some(msg))) => format!("{msg} ({why}; {cond})"),
            Some((why, None)) => {
                let last = self
                    .pod_log(&pod_name)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .rev()
                    .find(|l| !l.trim().is_empty());
                match last {
                    Some(l) => format!(
                        "{} ({why}; {cond}; last log line of pod {pod_name})",
                        l.trim()
                    ),
                    None => format!("{why}; {cond}"),
                }
            }
            None => cond,
        }
    }

    /// Why a job that has not started waits: the newest Warning Event about
    /// the job or its pods (`FailedScheduling: 0/3 nodes are available: …`).
    async fn waiting_reason(&self, name: &str) -> Option<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.plan.namespace);
        let mut subjects = vec![name.to_string()];
        if let Ok(pods) = self.pods(name).await {
            subjects.extend(pods.into_iter().filter_map(|p| p.metadata.name));
        }
        let mut newest: Option<Event> = None;
        for subject in subjects {
            let lp = ListParams::default().fields(&format!("involvedObject.name={subject}"));
            let Ok(list) = api.list(&lp).await else {
                continue;
            };
            for ev in list.items {
                if ev.type_.as_deref() != Some("Warning") {
                    continue;
                }
                let newer = match &newest {
                    None => true,
                    Some(n) => {
                        ev.last_timestamp.as_ref().map(|t| t.0)
                            >= n.last_timestamp.as_ref().map(|t| t.0)
                    }
                };
                if newer {
                    newest = Some(ev);
                }
            }
        }
        let ev = newest?;
        Some(format!(
            "{}: {}",
            ev.reason.unwrap_or_else(|| "Warning".into()),
            ev.message.unwrap_or_default().trim()
        ))
    }

    async fn hyperparameters(&self, name: &str) -> BTreeMap<String, String> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.plan.namespace);
        match api.get_opt(&hyperparameters_config_map(name)).await {
            Ok(Some(cm)) => cm
                .data
                .and_then(|d| d.get("hyperparameters.json").cloned())
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    }
}

fn image_of(trainer: KubeTrainer, obj: &Value) -> Option<String> {
    match trainer {
        KubeTrainer::Trainjob => obj["spec"]["trainer"]["image"].as_str(),
        KubeTrainer::Pytorchjob => obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
            ["containers"][0]["image"]
            .as_str(),
    }
    .map(str::to_string)
}

/// The pod spec mlcd wrote into a job: the runtime patch's or the Master's.
fn own_pod_spec(trainer: KubeTrainer, obj: &Value) -> Value {
    match trainer {
        KubeTrainer::Trainjob => obj["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
            ["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
            .clone(),
        KubeTrainer::Pytorchjob => {
            obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"].clone()
        }
    }
}

/// The artifact a job's own spec says: the `model.tar.gz` its sidecar
/// uploads, or its `/opt/ml/model` mount.
fn artifact_of(trainer: KubeTrainer, obj: &Value) -> Option<String> {
    let pod_spec = own_pod_spec(trainer, obj);
    if let Some(uri) = storage::model_of(&pod_spec) {
        return Some(uri);
    }
    let mount = pod_spec["containers"][0]["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["mountPath"] == "/opt/ml/model")?
        .clone();
    let claim = pod_spec["volumes"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == mount["name"])?["persistentVolumeClaim"]["claimName"]
        .as_str()?
        .to_string();
    Some(format!(
        "pvc://{claim}/{}",
        mount["subPath"].as_str().unwrap_or_default()
    ))
}

#[async_trait]
impl TrainingBackend for KubernetesTraining {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn preflight(&self, spec: &JobSpec) -> Result<(), UserError> {
        manifests(spec, &self.plan)?;
        let s3 = mounts(spec, &self.plan)?.s3;
        let ns = &self.plan.namespace;
        // The namespace is readable (403 names the permission) and the CRD served.
        let probe = self.jobs().list(&ListParams::default().limit(1)).await;
        if let Err(e) = probe {
            return Err(match k::failure(&e) {
                ApiFailure::NotFound => UserError::invalid(format!(
                    "the cluster does not serve {}s ({}): {} is not installed",
                    self.kind(),
                    self.resource().api_version,
                    match self.plan.trainer {
                        KubeTrainer::Trainjob => "Kubeflow Trainer v2",
                        KubeTrainer::Pytorchjob => "the Kubeflow Training Operator v1",
                    }
                ))
                .hint("install it (README: Kubernetes), or choose the other with `kubernetes.trainer: trainjob|pytorchjob`"),
                _ => self.err(format!("listing {}s in namespace `{ns}`", self.kind()), &e),
            });
        }
        if self.plan.trainer == KubeTrainer::Trainjob {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &runtime_resource());
            match api.get_opt(&self.plan.runtime).await {
                Ok(Some(rt)) => {
                    let rt = serde_json::to_value(rt).expect("objects serialize");
                    let has_step = rt["spec"]["template"]["spec"]["replicatedJobs"]
                        .as_array()
                        .is_some_and(|rjs| {
                            rjs.iter().any(|rj| {
                                rj["name"] == TRAINER_STEP
                                    && rj["template"]["spec"]["template"]["spec"]["containers"]
                                        .as_array()
                                        .is_some_and(|cs| {
                                            cs.iter().any(|c| c["name"] == TRAINER_STEP)
                                        })
                            })
                        });
                    if !has_step {
                        return Err(UserError::invalid(format!(
                            "`kubernetes.runtime`: the ClusterTrainingRuntime `{}` has no replicated job `{TRAINER_STEP}` with a container `{TRAINER_STEP}`, which mlcd patches with the job's volumes",
                            self.plan.runtime
                        ))
                        .hint("use a runtime shaped like Kubeflow's `torch-distributed`"));
                    }
                    let mut needed = Vec::new();
                    if !s3.channels.is_empty() {
                        needed.push(storage::FETCH);
                    }
                    if s3.model.is_some() {
                        needed.push(storage::KEEP);
                    }
                    let lacks = storage::runtime_lacks(&rt, &needed);
                    if !lacks.is_empty() {
                        return Err(UserError::invalid(format!(
                            "`kubernetes.runtime`: the ClusterTrainingRuntime `{}` has no `{}` init container in its `{TRAINER_STEP}` step, which {} need: a TrainJob cannot add containers, so mlcd's storage containers must be in the runtime",
                            self.plan.runtime,
                            lacks.join("` or `"),
                            if s3.channels.is_empty() { "an s3:// `kubernetes.storage-uri` does" } else if s3.model.is_none() { "s3:// channels" } else { "s3:// channels and an s3:// storage URI" },
                        ))
                        .hint(format!(
                            "install mlcd's runtime once, as a cluster administrator: `mlcd render runtime | kubectl apply --server-side -f -`, then set `kubernetes.runtime: {}`; or use `pvc://` storage",
                            storage::runtime_name(&self.plan)
                        )));
                    }
                }
                Ok(None) => {
                    let names: Vec<String> = api
                        .list(&ListParams::default())
                        .await
                        .map(|l| {
                            l.items
                                .into_iter()
                                .filter_map(|o| o.metadata.name)
                                .collect()
                        })
                        .unwrap_or_default();
                    return Err(UserError::invalid(format!(
                        "`kubernetes.runtime`: the cluster has no ClusterTrainingRuntime `{}` (it has: {})",
                        self.plan.runtime,
                        if names.is_empty() { "none".to_string() } else { names.join(", ") }
                    ))
                    .hint("set `kubernetes.runtime` to one of them, or install Kubeflow Trainer's runtimes (`kubectl get clustertrainingruntimes`)"));
                }
                Err(e) => {
                    return Err(self.err(
                        format!("reading ClusterTrainingRuntime `{}`", self.plan.runtime),
                        &e,
                    ))
                }
            }
        }
        if s3.model.is_some() {
            self.check_sidecars().await?;
        }
        Ok(())
    }

    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, UserError> {
        if self.get_job(&spec.name).await?.is_some() {
            return Ok(Submitted::AlreadyExists);
        }
        let objects = manifests(spec, &self.plan)?;
        let ns = &self.plan.namespace;
        let cm_resource = k::resource("v1", "ConfigMap", "configmaps");
        let mut config_map = objects[0].clone();
        k::apply(&self.client, ns, &cm_resource, &config_map)
            .await
            .map_err(|e| {
                self.err(
                    format!(
                        "applying ConfigMap {ns}/{}",
                        hyperparameters_config_map(&spec.name)
                    ),
                    &e,
                )
            })?;
        let job = k::apply(&self.client, ns, &self.resource(), &objects[1])
            .await
            .map_err(|e| self.err(format!("applying {} {ns}/{}", self.kind(), spec.name), &e))?;
        // The ConfigMap goes with the job: owned by it, deleted with it.
        if let Some(uid) = job.metadata.uid {
            config_map["metadata"]["ownerReferences"] = json!([{
                "apiVersion": self.resource().api_version,
                "kind": self.kind(),
                "name": spec.name,
                "uid": uid,
            }]);
            k::apply(&self.client, ns, &cm_resource, &config_map)
                .await
                .map_err(|e| self.err(format!("making {} own its ConfigMap", spec.name), &e))?;
        }
        Ok(Submitted::Created)
    }

    async fn identity(&self, name: &str) -> Result<Recorded, UserError> {
        let Some(obj) = self.get_job(name).await? else {
            return Ok(Recorded::Absent);
        };
        Ok(recorded_from_annotations(&obj))
    }

    async fn describe(&self, name: &str) -> Result<Option<JobStatus>, UserError> {
        let Some(obj) = self.current_job(name).await? else {
            return Ok(None);
        };
        let (mut state, mut detail) = state_of(self.plan.trainer, &obj);
        let mut not_kept = None;
        if state == JobState::Completed
            && storage::model_of(&own_pod_spec(self.plan.trainer, &obj)).is_some()
        {
            not_kept = self.model_not_kept(name).await;
            if not_kept.is_some() {
                state = JobState::Failed;
                detail = Some("ModelNotKept".into());
            }
        }
        if state == JobState::Pending {
            let (cached, waited) = {
                let mut map = self.watched.lock().expect("not poisoned");
                let w = map.entry(name.to_string()).or_default();
                let since = *w.pending_since.get_or_insert_with(Instant::now);
                let cached = w.reason.clone().filter(|(t, _)| t.elapsed() < LOG_EVERY);
                (cached, since.elapsed())
            };
            let why = match cached {
                Some((_, why)) => why,
                None if waited < EVENTS_AFTER => None,
                None => {
                    let why = self.waiting_reason(name).await;
                    let mut map = self.watched.lock().expect("not poisoned");
                    map.entry(name.to_string()).or_default().reason =
                        Some((Instant::now(), why.clone()));
                    why
                }
            };
            if let Some(why) = why {
                detail = Some(why);
            }
        }
        let failure_reason = match (state, not_kept) {
            (JobState::Failed, Some(why)) => Some(why),
            (JobState::Failed, None) => Some(self.failure_reason(name, &obj).await),
            _ => None,
        };
        Ok(Some(JobStatus {
            name: name.to_string(),
            state,
            detail,
            failure_reason,
            metrics: BTreeMap::new(),
            artifact: (state == JobState::Completed)
                .then(|| artifact_of(self.plan.trainer, &obj))
                .flatten(),
            image: image_of(self.plan.trainer, &obj),
            // Read once the job has ended: a running job's poll stays one request.
            hyperparameters: if state.is_terminal() {
                self.hyperparameters(name).await
            } else {
                BTreeMap::new()
            },
        }))
    }

    async fn logs(&self, name: &str, cursor: &mut LogCursor) -> Result<Vec<String>, UserError> {
        if !self.due(name, |w| &mut w.log_read) {
            return Ok(Vec::new());
        }
        // The cursor: the pod read and how many of its lines were returned. The
        // pods are listed again only when there is none yet or it is gone.
        let (seen_pod, seen): (String, usize) = cursor
            .0
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let known = if seen_pod.is_empty() {
            None
        } else {
            self.pod_log_opt(&seen_pod).await?
        };
        let (pod_name, skip, lines) = match known {
            Some(lines) => (seen_pod, seen, lines),
            None => {
                let Some(pod) = self.lead_pod(name).await? else {
                    return Ok(Vec::new());
                };
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let skip = if pod_name == seen_pod { seen } else { 0 };
                let lines = self.pod_log(&pod_name).await?;
                (pod_name, skip, lines)
            }
        };
        let new: Vec<String> = lines.iter().skip(skip).cloned().collect();
        cursor.0 = Some(
            serde_json::to_string(&(pod_name, lines.len().max(skip))).expect("a tuple serializes"),
        );
        Ok(new)
    }

    /// Suspends the job (`spec.suspend` / `spec.runPolicy.suspend`): the
    /// controller deletes its pods, freeing the nodes, and the job stays with
    /// its status and identity, so `describe`, attach and a re-run still see it
    /// (as Stopped). Deleting it would lose that record.
    async fn stop(&self, name: &str) -> Result<(), UserError> {
        let Some(obj) = self.get_job(name).await? else {
            return Err(UserError::failed(format!(
                "cannot stop {} {}/{name}: it does not exist",
                self.kind(),
                self.plan.namespace
            )));
        };
        if state_of(self.plan.trainer, &obj).0.is_terminal() {
            return Ok(());
        }
        let patch = match self.plan.trainer {
            KubeTrainer::Trainjob => json!({ "spec": { "suspend": true } }),
            KubeTrainer::Pytorchjob => json!({ "spec": { "runPolicy": { "suspend": true } } }),
        };
        let params = PatchParams {
            field_manager: Some(k::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        self.jobs()
            .patch(name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| self.err(format!("suspending {} {name}", self.kind()), &e))?;
        Ok(())
    }

    fn job_url(&self, _name: &str) -> Option<String> {
        None
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn max_poll_interval(&self) -> Duration {
        self.poll_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::instance::Resolved;

    fn spec() -> JobSpec {
        JobSpec {
            name: "churn-42-1-abc".into(),
            image: "ghcr.io/acme/churn:1".into(),
            instance: Resolved {
                requested: "gpu.t4.xl".into(),
                native: "cpu=4 memory=16Gi nvidia.com/gpu=1".into(),
                gpus: 1,
                cpus: Some(4),
                memory_gib: Some(16),
            },
            count: 2,
            hyperparameters: BTreeMap::from([("epochs".into(), "5".into())]),
            channels: BTreeMap::from([(
                "train".into(),
                Channel::Remote("pvc://data/churn/train".into()),
            )]),
            env: BTreeMap::new(),
            max_runtime: Duration::from_secs(3600),
            metric_definitions: BTreeMap::new(),
            output: None,
            tags: BTreeMap::new(),
            identity: Identity {
                source: "github.com/acme/churn".into(),
                model: "churn".into(),
                commit: Some("abc".into()),
                image: "ghcr.io/acme/churn:1".into(),
                config: "none".into(),
                hyperparameters: "sha256:00".into(),
            },
        }
    }

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

    #[test]
    fn a_trainjob_carries_the_container_contract_and_the_identity() {
        let objs = manifests(&spec(), &plan(KubeTrainer::Trainjob)).unwrap();
        assert_eq!(objs[0]["kind"], "ConfigMap");
        assert_eq!(
            objs[0]["data"]["hyperparameters.json"],
            "{\n  \"epochs\": \"5\"\n}"
        );
        let job = &objs[1];
        assert_eq!(job["kind"], "TrainJob");
        assert_eq!(job["spec"]["trainer"]["numNodes"], 2);
        assert_eq!(
            job["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"],
            "1"
        );
        assert_eq!(job["spec"]["activeDeadlineSeconds"], 3600);
        assert_eq!(
            job["metadata"]["annotations"]["mlcd.dev/source"],
            "github.com/acme/churn"
        );
        assert_eq!(job["metadata"]["labels"]["mlcd.dev/model"], "churn");
        assert_eq!(
            artifact_of(KubeTrainer::Trainjob, job).as_deref(),
            Some("pvc://models/churn/churn-42-1-abc/model")
        );
        let yaml = to_yaml(&objs);
        assert!(yaml.contains("---\n"), "{yaml}");
    }

    #[test]
    fn a_pytorchjob_has_a_master_and_workers() {
        let objs = manifests(&spec(), &plan(KubeTrainer::Pytorchjob)).unwrap();
        let r = &objs[1]["spec"]["pytorchReplicaSpecs"];
        assert_eq!(r["Master"]["replicas"], 1);
        assert_eq!(r["Worker"]["replicas"], 1);
        assert_eq!(
            r["Master"]["template"]["spec"]["containers"][0]["terminationMessagePath"],
            FAILURE_FILE
        );
        assert_eq!(
            image_of(KubeTrainer::Pytorchjob, &objs[1]).as_deref(),
            Some("ghcr.io/acme/churn:1")
        );
    }

    fn s3_spec_plan(trainer: KubeTrainer) -> (JobSpec, KubernetesPlan) {
        let mut s = spec();
        s.channels.insert(
            "train".into(),
            Channel::Remote("s3://acme-data/churn/train".into()),
        );
        let mut p = plan(trainer);
        p.storage_uri = Some("s3://acme-models/churn/".into());
        p.aws_secret = Some("s3-creds".into());
        (s, p)
    }

    #[test]
    fn a_pytorchjob_with_s3_storage_carries_mlcds_storage_containers() {
        let (s, p) = s3_spec_plan(KubeTrainer::Pytorchjob);
        let objs = manifests(&s, &p).unwrap();
        let master = &objs[1]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"];
        let names: Vec<&str> = master["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [storage::FETCH, storage::KEEP]);
        let keep = &master["initContainers"][1];
        assert_eq!(keep["restartPolicy"], "Always");
        assert_eq!(keep["image"], "ghcr.io/mlcd-dev/mlcd:0.1.0");
        assert_eq!(
            master["terminationGracePeriodSeconds"],
            storage::GRACE_SECONDS
        );
        // The credentials are references to the Secret, never values.
        let env = keep["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "AWS_SECRET_ACCESS_KEY"
            && e["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"));
        assert_eq!(
            artifact_of(KubeTrainer::Pytorchjob, &objs[1]).as_deref(),
            Some("s3://acme-models/churn/churn-42-1-abc/model.tar.gz")
        );
        let fetch_env = &master["initContainers"][0]["env"][0];
        assert_eq!(fetch_env["name"], "MLCD_FETCH");
        assert_eq!(
            fetch_env["value"],
            "{\"train\":\"s3://acme-data/churn/train\"}"
        );
        // The trainer sees the channel where SageMaker puts it, and the model dir.
        let mounts = master["containers"][0]["volumeMounts"].as_array().unwrap();
        assert_eq!(mounts[1]["mountPath"], "/opt/ml/input/data");
        assert_eq!(mounts[1]["name"], storage::DATA_VOLUME);
        // The sidecar must see the failure file: no termination message there.
        assert!(master["containers"][0]
            .get("terminationMessagePath")
            .is_none());
        assert!(mounts.iter().any(|m| m["mountPath"] == "/opt/ml/model"));
        // Workers fetch, only the Master keeps the model.
        let worker = &objs[1]["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"];
        assert_eq!(worker["initContainers"].as_array().unwrap().len(), 1);
        assert_eq!(worker["initContainers"][0]["name"], storage::FETCH);
    }

    #[test]
    fn a_trainjob_with_s3_storage_patches_the_runtimes_storage_containers() {
        let (s, p) = s3_spec_plan(KubeTrainer::Trainjob);
        let objs = manifests(&s, &p).unwrap();
        let patch = own_pod_spec(KubeTrainer::Trainjob, &objs[1]);
        let inits = patch["initContainers"].as_array().unwrap();
        // Only what a runtime patch may set: the name, env (and mounts).
        assert!(inits.iter().all(|c| c.get("image").is_none()));
        assert_eq!(
            storage::model_of(&patch).as_deref(),
            Some("s3://acme-models/churn/churn-42-1-abc/model.tar.gz")
        );
        // The runtime carries the volumes, so the patch does not repeat them.
        assert!(!patch["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == storage::MODEL_VOLUME));
        let rt = storage::runtime(&p);
        assert_eq!(rt["metadata"]["name"], storage::MLCD_RUNTIME);
        assert!(storage::runtime_lacks(&rt, &[storage::FETCH, storage::KEEP]).is_empty());
        let theirs = json!({"spec": {"template": {"spec": {"replicatedJobs": [
            {"name": "node", "template": {"spec": {"template": {"spec": {"containers": [{"name": "node"}]}}}}}
        ]}}}});
        assert_eq!(
            storage::runtime_lacks(&theirs, &[storage::FETCH, storage::KEEP]),
            [storage::FETCH, storage::KEEP]
        );
    }

    #[test]
    fn gs_channels_are_refused_with_the_way_round() {
        let mut s = spec();
        s.channels
            .insert("v".into(), Channel::Remote("gs://b/v".into()));
        let e = manifests(&s, &plan(KubeTrainer::Trainjob)).unwrap_err();
        assert!(e.message.contains("train.channels.v"), "{}", e.message);
        assert!(e.message.contains("Cloud Storage FUSE"), "{}", e.message);
    }

    #[test]
    fn local_channels_and_missing_storage_are_refused() {
        let mut s = spec();
        s.channels
            .insert("v".into(), Channel::Local("/data/v".into()));
        let e = manifests(&s, &plan(KubeTrainer::Trainjob)).unwrap_err();
        assert!(e.message.contains("train.channels.v"), "{}", e.message);
        let mut p = plan(KubeTrainer::Trainjob);
        p.storage_uri = None;
        let e = manifests(&spec(), &p).unwrap_err();
        assert!(
            e.message.contains("kubernetes.storage-uri"),
            "{}",
            e.message
        );
    }

    #[test]
    fn conditions_map_onto_states() {
        let with = |conds: Value, extra: Value| {
            let mut o = json!({ "spec": {}, "status": { "conditions": conds } });
            if let Some(m) = extra.as_object() {
                for (k, v) in m {
                    o["status"][k] = v.clone();
                }
            }
            o
        };
        let t = KubeTrainer::Trainjob;
        assert_eq!(
            state_of(t, &with(json!([]), json!({}))).0,
            JobState::Pending
        );
        assert_eq!(
            state_of(
                t,
                &with(
                    json!([]),
                    json!({"jobsStatus": [{"name": "node", "active": 1}]})
                )
            )
            .0,
            JobState::InProgress
        );
        assert_eq!(
            state_of(
                t,
                &with(json!([{"type": "Complete", "status": "True"}]), json!({}))
            )
            .0,
            JobState::Completed
        );
        assert_eq!(
            state_of(
                t,
                &with(
                    json!([{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]),
                    json!({})
                )
            ),
            (JobState::Failed, Some("DeadlineExceeded".into()))
        );
        assert_eq!(
            state_of(
                t,
                &with(json!([{"type": "Suspended", "status": "True"}]), json!({}))
            )
            .0,
            JobState::Stopped
        );
        let mut asked = with(json!([]), json!({}));
        asked["spec"]["suspend"] = json!(true);
        assert_eq!(state_of(t, &asked).0, JobState::Stopping);
        let p = KubeTrainer::Pytorchjob;
        assert_eq!(
            state_of(
                p,
                &with(json!([{"type": "Running", "status": "True"}]), json!({}))
            )
            .0,
            JobState::InProgress
        );
        assert_eq!(
            state_of(
                p,
                &with(json!([{"type": "Succeeded", "status": "True"}]), json!({}))
            )
            .0,
            JobState::Completed
        );
    }

    #[test]
    fn identity_tags_become_annotation_keys() {
        assert_eq!(annotation_key("mlcd:source"), "mlcd.dev/source");
        assert_eq!(annotation_key("mlcd:repository"), "mlcd.dev/repository");
        assert_eq!(label_value("a/b:c"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
