//! KServe on Kubernetes: the `InferenceService` (serving.kserve.io/v1beta1) mlcd
//! applies for a deploy, built by [`inference_service`] — the one function
//! `mlcd render deploy` uses and the backend ([`backend::KserveServing`])
//! applies, so what a user reviews is what is applied. [`state`] reads an
//! InferenceService's status back as the endpoint mlcd's strategies see.
//!
//! The predictor is a custom container that keeps the SageMaker serving
//! contract, as the local and SageMaker backends run the same image: `serve`,
//! `GET /ping` and `POST /invocations` on port 8080 (or the Open Inference
//! Protocol v2 paths), the model in `/opt/ml/model` — KServe's storage
//! initializer downloads `kubernetes.storage-uri` there (`storageUris` with that
//! mount path). The identity is recorded as `mlcd.dev/*` annotations, exactly as
//! on training jobs; lineage goes in labels, on the object and on its pods.

use serde_json::{json, Map, Value};

use crate::cloud::kube as k;
use crate::config::types::KserveMode;
use crate::config::values::{Protocol, Strategy};
use crate::error::UserError;
use crate::instance;
use crate::plan::kubernetes::check_kserve_storage_uri;
use crate::plan::ServingKubernetesPlan;
use crate::serve::VersionSpec;
use crate::train::kubernetes::{annotation_key, label_value, LABEL_MODEL};

/// The API version of the InferenceService mlcd targets (KServe v0.20).
pub const API_VERSION: &str = "serving.kserve.io/v1beta1";
/// Its kind.
pub const KIND: &str = "InferenceService";
/// The field manager mlcd applies InferenceServices under (the same as for
/// training jobs: `kubectl apply --server-side --field-manager mlcd` of
/// `mlcd render deploy` is what mlcd itself does).
pub const FIELD_MANAGER: &str = k::FIELD_MANAGER;
/// The name KServe gives a custom predictor's serving container (its storage
/// initializer and the `STORAGE_URI` convention look for it).
pub const CONTAINER: &str = "kserve-container";
/// The port of the SageMaker serving contract.
pub const PORT: u16 = 8080;
/// Where the SageMaker contract keeps the model, and where KServe puts it.
pub const MODEL_DIR: &str = "/opt/ml/model";
/// Label: the endpoint.
pub const LABEL_ENDPOINT: &str = "mlcd.dev/endpoint";
/// Label: the version id behind the endpoint.
pub const LABEL_VERSION: &str = "mlcd.dev/version";
/// Label: the commit the version was built (and trained) from.
pub const LABEL_COMMIT: &str = "mlcd.dev/commit";

pub mod backend;
pub mod shadow;
pub mod state;

/// The annotation naming KServe's deployment mode.
pub const MODE_ANNOTATION: &str = "serving.kserve.io/deploymentMode";
/// Its value for Standard mode (KServe's `RawDeployment`; v0.15 and later also
/// read `Standard`).
pub const RAW_MODE: &str = "RawDeployment";
/// The annotation that gives each traffic target its own tag URL (`latest`,
/// `prev`): how mlcd smoke-tests a new revision before it takes traffic.
pub const TAG_ROUTING_ANNOTATION: &str = "serving.kserve.io/enable-tag-routing";

/// The InferenceService resource.
pub fn resource() -> kube::api::ApiResource {
    k::resource(API_VERSION, KIND, "inferenceservices")
}

/// The traffic the new revision takes when applied: the first step of a
/// `canary` or `linear` rollout; none (all of it, once ready) otherwise.
pub fn canary_traffic(strategy: Strategy, steps: &[u8]) -> Result<Option<u8>, UserError> {
    match strategy {
        Strategy::Canary | Strategy::Linear => Ok(steps.first().copied()),
        Strategy::AllAtOnce | Strategy::BlueGreen => Ok(None),
        // Beside the live revision, taking none of the traffic (see `shadow`).
        Strategy::Shadow => Ok(Some(0)),
    }
}

fn labels(spec: &VersionSpec) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("app.kubernetes.io/managed-by".into(), json!("mlcd"));
    m.insert(LABEL_MODEL.into(), json!(label_value(&spec.identity.model)));
    m.insert(LABEL_ENDPOINT.into(), json!(label_value(&spec.endpoint)));
    m.insert(LABEL_VERSION.into(), json!(label_value(&spec.version)));
    if let Some(c) = &spec.identity.commit {
        m.insert(LABEL_COMMIT.into(), json!(label_value(c)));
    }
    m
}

/// The serving container's environment: the server settings mlcd knows, then
/// `deploy.env` (which wins, as on SageMaker), then the port the contract binds,
/// which must stay the container's port.
fn environment(spec: &VersionSpec) -> Vec<Value> {
    let mut env = spec.contract_env();
    env.entry("MODEL_NAME".to_string())
        .or_insert_with(|| spec.model_name.clone());
    env.insert("SAGEMAKER_BIND_TO_PORT".into(), PORT.to_string());
    env.into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect()
}

/// Where KServe's storage initializer fetches this version's model from: the
/// registered version's own artifact (the `model.tar.gz` a Kubernetes training
/// uploaded, which the initializer unpacks, or its directory on a claim), else
/// `kubernetes.storage-uri`; none: the image carries its model.
fn model_location<'a>(
    spec: &'a VersionSpec,
    plan: &'a ServingKubernetesPlan,
) -> Result<Option<&'a str>, UserError> {
    match spec.model_data.as_deref() {
        Some(m) if check_kserve_storage_uri(m).is_ok() => Ok(Some(m)),
        Some(m) => Err(UserError::invalid(format!(
            "version {} of the model has its artifact at `{m}`, which KServe cannot read: {}",
            spec.version,
            check_kserve_storage_uri(m).expect_err("checked")
        ))
        .hint("train it with `backend: kubernetes` (its model goes to `kubernetes.storage-uri`), or deploy an image that carries its model (`deploy.image`)")),
        None => Ok(plan.storage_uri.as_deref()),
    }
}

/// The InferenceService for `spec` behind its endpoint: one object per endpoint,
/// named after it, in `plan.namespace`. `canary` is the traffic the new revision
/// takes at first ([`canary_traffic`]). Touches nothing.
pub fn inference_service(
    spec: &VersionSpec,
    canary: Option<u8>,
    plan: &ServingKubernetesPlan,
) -> Result<Value, UserError> {
    let quantities = instance::kubernetes_resources(&spec.instance.native)
        .map_err(|e| UserError::invalid(format!("`deploy.instance`: {e}")))?;
    let q: Map<String, Value> = quantities.into_iter().map(|(k, v)| (k, json!(v))).collect();
    let ready_path = match spec.protocol {
        Protocol::Sagemaker => "/ping",
        Protocol::V2 => "/v2/health/ready",
    };
    let container = json!({
        "name": CONTAINER,
        "image": spec.image,
        "args": ["serve"],
        "ports": [{ "containerPort": PORT, "protocol": "TCP" }],
        "env": environment(spec),
        "resources": { "requests": q.clone(), "limits": q },
        "readinessProbe": { "httpGet": { "path": ready_path, "port": PORT } },
    });
    let labels = labels(spec);
    let mut predictor = Map::new();
    predictor.insert("minReplicas".into(), json!(spec.replicas));
    predictor.insert("maxReplicas".into(), json!(spec.replicas));
    if let Some(pct) = canary {
        predictor.insert("canaryTrafficPercent".into(), json!(pct));
    }
    predictor.insert(
        "timeout".into(),
        json!(spec.request_timeout.as_secs().max(1)),
    );
    if let Some(sa) = &plan.service_account {
        predictor.insert("serviceAccountName".into(), json!(sa));
    }
    if let Some(uri) = model_location(spec, plan)? {
        predictor.insert(
            "storageUris".into(),
            json!([{ "uri": uri, "mountPath": MODEL_DIR }]),
        );
    }
    predictor.insert("labels".into(), Value::Object(labels.clone()));
    predictor.insert("containers".into(), json!([container]));
    let mut annotations: Map<String, Value> = spec
        .all_tags()
        .into_iter()
        .map(|(k, v)| (annotation_key(&k), json!(v)))
        .collect();
    match plan.deployment_mode {
        Some(KserveMode::Standard) => {
            annotations.insert(MODE_ANNOTATION.into(), json!(RAW_MODE));
        }
        Some(KserveMode::Serverless) => {
            annotations.insert(MODE_ANNOTATION.into(), json!("Serverless"));
            annotations.insert(TAG_ROUTING_ANNOTATION.into(), json!("true"));
        }
        None => {
            annotations.insert(TAG_ROUTING_ANNOTATION.into(), json!("true"));
        }
    }
    Ok(json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": spec.endpoint,
            "namespace": plan.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": { "predictor": predictor },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::values::Backend;
    use crate::identity::Identity;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn spec() -> VersionSpec {
        VersionSpec {
            endpoint: "churn".into(),
            version: "i-0123456".into(),
            image: "ghcr.io/acme/churn:0123456".into(),
            model_data: None,
            model_name: "churn".into(),
            instance: instance::resolve(&"gpu.t4.xl".parse().unwrap(), Backend::Kubernetes)
                .unwrap(),
            replicas: 2,
            env: BTreeMap::from([
                ("LOG_LEVEL".to_string(), "info".to_string()),
                ("SAGEMAKER_BIND_TO_PORT".to_string(), "9000".to_string()),
            ]),
            workers: Some(3),
            batching: None,
            request_timeout: Duration::from_secs(60),
            protocol: Protocol::Sagemaker,
            tags: BTreeMap::new(),
            identity: Identity {
                source: "github.com/acme/churn".into(),
                model: "churn".into(),
                commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                image: "ghcr.io/acme/churn:0123456".into(),
                config: "none".into(),
                hyperparameters: "none".into(),
            },
        }
    }

    fn plan(storage: Option<&str>) -> ServingKubernetesPlan {
        ServingKubernetesPlan {
            namespace: "ml".into(),
            context: None,
            eks: None,
            storage_uri: storage.map(str::to_string),
            service_account: None,
            deployment_mode: None,
        }
    }

    #[test]
    fn the_predictor_keeps_the_sagemaker_contract() {
        let o = inference_service(&spec(), Some(10), &plan(Some("s3://m/churn"))).unwrap();
        let p = &o["spec"]["predictor"];
        assert_eq!(p["canaryTrafficPercent"], 10);
        assert_eq!(p["minReplicas"], 2);
        assert_eq!(p["storageUris"][0]["mountPath"], "/opt/ml/model");
        let c = &p["containers"][0];
        assert_eq!(c["args"][0], "serve");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ping");
        assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
        let env: BTreeMap<&str, &str> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
            .collect();
        // The port stays the container's, whatever deploy.env says.
        assert_eq!(env["SAGEMAKER_BIND_TO_PORT"], "8080");
        assert_eq!(env["SAGEMAKER_MODEL_SERVER_WORKERS"], "3");
        assert_eq!(env["LOG_LEVEL"], "info");
        assert_eq!(
            o["metadata"]["annotations"]["mlcd.dev/source"],
            "github.com/acme/churn"
        );
    }

    #[test]
    fn all_at_once_takes_no_canary_and_a_shadow_starts_at_zero() {
        assert_eq!(canary_traffic(Strategy::AllAtOnce, &[100]).unwrap(), None);
        assert_eq!(
            canary_traffic(Strategy::Linear, &[25, 50, 100]).unwrap(),
            Some(25)
        );
        assert_eq!(canary_traffic(Strategy::Shadow, &[100]).unwrap(), Some(0));
        let o = inference_service(&spec(), None, &plan(None)).unwrap();
        assert!(o["spec"]["predictor"].get("canaryTrafficPercent").is_none());
        assert!(o["spec"]["predictor"].get("storageUris").is_none());
    }
}
