//! mlcd's storage containers in a Kubernetes training pod, for `s3://` channels
//! and an `s3://` `kubernetes.storage-uri`: the init container `mlcd-fetch`
//! copies the channels into an emptyDir the trainer mounts under
//! `/opt/ml/input/data/<channel>`, and the native sidecar `mlcd-keep-model`
//! (an init container with `restartPolicy: Always`, Kubernetes ≥ 1.29) uploads
//! `/opt/ml/model` as `model.tar.gz` once the trainer has ended, saying what it
//! did in its termination message. Both run `mlcd pod-storage` from
//! `kubernetes.mlcd-image` and read their work from the environment, the one
//! thing a TrainJob's `runtimePatches` may set on a runtime's containers; a
//! PyTorchJob carries them in its own pod template, a TrainJob needs a runtime
//! that has them ([`runtime`] prints one).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use crate::plan::KubernetesPlan;
use crate::train::pod_storage::{DATA_DIR, FETCH_ENV, MODEL_DIR, MODEL_ENV};

/// The init container that copies `s3://` channels in.
pub const FETCH: &str = "mlcd-fetch";
/// The sidecar that uploads the model.
pub const KEEP: &str = "mlcd-keep-model";
/// The emptyDir the channels are copied into.
pub const DATA_VOLUME: &str = "mlcd-data";
/// The emptyDir the trainer writes its model into.
pub const MODEL_VOLUME: &str = "mlcd-model";
/// The emptyDir of `/opt/ml/output` (the failure file, the sidecar's message).
pub const OUTPUT_VOLUME: &str = "mlcd-output";
/// The trainer's output directory.
pub const OUTPUT_DIR: &str = "/opt/ml/output";
/// Where the sidecar writes what it did: its `terminationMessagePath`, which
/// the kubelet copies into the pod's status for mlcd to read.
pub const KEEP_MESSAGE: &str = "/opt/ml/output/.mlcd-keep-model";
/// How long the sidecar may take to upload after the trainer ended (the pod's
/// `terminationGracePeriodSeconds`).
pub const GRACE_SECONDS: i64 = 600;
/// The name `mlcd render runtime` gives its ClusterTrainingRuntime when
/// `kubernetes.runtime` is not set.
pub const MLCD_RUNTIME: &str = "mlcd-torch-distributed";

/// What mlcd's storage containers do for one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Storage {
    /// `s3://` channels: name → URI.
    pub channels: BTreeMap<String, String>,
    /// Where the model goes: `s3://bucket/prefix/<job>/model.tar.gz`.
    pub model: Option<String>,
}

impl S3Storage {
    /// Whether the job needs no storage container.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.model.is_none()
    }

    /// The trainer's mounts of the storage volumes: the data directory (all
    /// fetched channels, one mount: a TrainJob's patch may mount a volume once;
    /// writable, so that channels on claims can nest in it), and the rest.
    pub fn trainer_mounts(&self) -> (Option<Value>, Vec<Value>) {
        let data = (!self.channels.is_empty())
            .then(|| json!({ "name": DATA_VOLUME, "mountPath": DATA_DIR }));
        let mut rest = Vec::new();
        if self.model.is_some() {
            rest.push(json!({ "name": MODEL_VOLUME, "mountPath": MODEL_DIR }));
            rest.push(json!({ "name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR }));
        }
        (data, rest)
    }

    /// The `mlcd-fetch` container's environment.
    pub fn fetch_env(&self, plan: &KubernetesPlan) -> Vec<Value> {
        let channels = serde_json::to_string(&self.channels).expect("strings serialize");
        let mut env = vec![json!({ "name": FETCH_ENV, "value": channels })];
        env.extend(credentials_env(plan));
        env
    }

    /// The `mlcd-keep-model` container's environment.
    pub fn keep_env(&self, plan: &KubernetesPlan) -> Vec<Value> {
        let mut env =
            vec![json!({ "name": MODEL_ENV, "value": self.model.clone().unwrap_or_default() })];
        env.extend(credentials_env(plan));
        env
    }
}

/// The S3 credentials from `kubernetes.aws-secret`; none: the pod's service
/// account's identity (EKS IRSA and Pod Identity inject it into every container).
fn credentials_env(plan: &KubernetesPlan) -> Vec<Value> {
    let Some(secret) = &plan.aws_secret else {
        return Vec::new();
    };
    [
        ("AWS_ACCESS_KEY_ID", false),
        ("AWS_SECRET_ACCESS_KEY", false),
        ("AWS_SESSION_TOKEN", true),
        ("AWS_REGION", true),
        ("AWS_ENDPOINT_URL", true),
    ]
    .iter()
    .map(|(key, optional)| {
        json!({
            "name": key,
            "valueFrom": { "secretKeyRef": { "name": secret, "key": key, "optional": optional } },
        })
    })
    .collect()
}

/// The `mlcd-fetch` init container, whole (for a pod template or a runtime).
pub fn fetch_container(image: &str, env: Option<Vec<Value>>) -> Value {
    let mut c = json!({
        "name": FETCH,
        "image": image,
        "args": ["pod-storage", "fetch"],
        "volumeMounts": [{ "name": DATA_VOLUME, "mountPath": DATA_DIR }],
    });
    if let Some(env) = env {
        c["env"] = json!(env);
    }
    c
}

/// The `mlcd-keep-model` native sidecar, whole.
pub fn keep_container(image: &str, env: Option<Vec<Value>>) -> Value {
    let mut c = json!({
        "name": KEEP,
        "image": image,
        "restartPolicy": "Always",
        "args": ["pod-storage", "keep-model", "--message-file", KEEP_MESSAGE],
        "terminationMessagePath": KEEP_MESSAGE,
        "volumeMounts": [
            { "name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": true },
            { "name": OUTPUT_VOLUME, "mountPath": OUTPUT_DIR },
        ],
    });
    if let Some(env) = env {
        c["env"] = json!(env);
    }
    c
}

/// The three emptyDir volumes the storage containers share with the trainer.
pub fn volumes() -> Vec<Value> {
    [DATA_VOLUME, MODEL_VOLUME, OUTPUT_VOLUME]
        .iter()
        .map(|v| json!({ "name": v, "emptyDir": {} }))
        .collect()
}

/// The name of the runtime `mlcd render runtime` prints: `kubernetes.runtime`
/// unless it is Kubeflow's default.
pub fn runtime_name(plan: &KubernetesPlan) -> String {
    if plan.runtime == crate::plan::kubernetes::DEFAULT_RUNTIME {
        MLCD_RUNTIME.to_string()
    } else {
        plan.runtime.clone()
    }
}

/// A ClusterTrainingRuntime shaped like Kubeflow Trainer v2.3's
/// `torch-distributed`, with mlcd's storage containers, volumes and the grace
/// period the upload needs. Installed once per cluster by an administrator.
pub fn runtime(plan: &KubernetesPlan) -> Value {
    json!({
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": runtime_name(plan),
            "labels": {
                "trainer.kubeflow.org/framework": "torch",
                "app.kubernetes.io/managed-by": "mlcd",
            },
        },
        "spec": {
            "mlPolicy": { "numNodes": 1, "torch": {} },
            "template": { "spec": { "replicatedJobs": [{
                "name": super::TRAINER_STEP,
                "template": {
                    "metadata": { "labels": { "trainer.kubeflow.org/trainjob-ancestor-step": "trainer" } },
                    "spec": { "template": { "spec": {
                        "terminationGracePeriodSeconds": GRACE_SECONDS,
                        "initContainers": [
                            fetch_container(&plan.mlcd_image, None),
                            keep_container(&plan.mlcd_image, None),
                        ],
                        "containers": [{
                            "name": super::TRAINER_STEP,
                            "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime",
                        }],
                        "volumes": volumes(),
                    }}},
                },
            }]}},
        },
    })
}

/// The storage containers `needed` that the runtime's trainer step lacks.
pub fn runtime_lacks<'a>(runtime: &Value, needed: &[&'a str]) -> Vec<&'a str> {
    let inits: Vec<&str> = runtime["spec"]["template"]["spec"]["replicatedJobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rj| rj["name"] == super::TRAINER_STEP)
        .flat_map(|rj| {
            rj["template"]["spec"]["template"]["spec"]["initContainers"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|c| c["name"].as_str())
        .collect();
    needed
        .iter()
        .copied()
        .filter(|n| !inits.contains(n))
        .collect()
}

/// How the pod's `mlcd-keep-model` sidecar ended: (exit code, its message);
/// none while it runs or when the pod has none.
pub fn keep_outcome(pod: &Pod) -> Option<(i32, String)> {
    let status = pod.status.as_ref()?;
    let cs = status
        .init_container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == KEEP)?;
    let t = cs.state.as_ref()?.terminated.as_ref()?;
    Some((
        t.exit_code,
        t.message.as_deref().unwrap_or_default().trim().to_string(),
    ))
}

/// The reason a failed training gave, as the sidecar relays it from
/// `/opt/ml/output/failure` (the trainer's own termination message cannot
/// carry it when the sidecar must see the file: see [`super::manifests`]).
pub fn training_failure(message: &str) -> Option<String> {
    let rest = message.strip_prefix(crate::train::pod_storage::FAILED_PREFIX)?;
    let reason = rest
        .strip_suffix(crate::train::pod_storage::NOT_UPLOADED_SUFFIX)
        .unwrap_or(rest);
    Some(reason.trim().to_string()).filter(|r| !r.is_empty())
}

/// The model's destination a job's spec gives its sidecar (`MLCD_MODEL_URI`
/// in the `mlcd-keep-model` container's env), for `attach`.
pub fn model_of(pod_spec: &Value) -> Option<String> {
    pod_spec["initContainers"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == KEEP)?["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == MODEL_ENV)?["value"]
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}
