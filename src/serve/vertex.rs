//! Serving on Vertex AI behind [`ServingBackend`]: one Vertex endpoint per mlcd
//! endpoint (endpoint id = the endpoint's name, so a re-run finds it with one
//! `get` and two runs cannot create two), each version a Model version of
//! `<endpoint>-serving` (the image with the SageMaker serving contract:
//! `/invocations`, `/ping`, port 8080) deployed to it; traffic moved by patching
//! `trafficSplit`.
//!
//! Verification before traffic: Vertex routes every request of an endpoint by
//! its split and offers no call to one deployed model of a shared endpoint (the
//! pinned v1 API has `predict`/`rawPredict` on the endpoint only). So a new
//! version is first deployed alone on the endpoint's *candidate* endpoint
//! (`<endpoint>-candidate`), where `invoke` reaches it, and on the live endpoint
//! at 0% (`trafficSplit` `"0": 0`); the strategy's smoke tests call the candidate
//! endpoint, before and during the traffic steps. Promotion or rollback empties
//! the candidate endpoint (an endpoint without deployed models costs nothing).
//! A shadow is a third endpoint (`<endpoint>-shadow`) holding the shadow version;
//! the shared shadow code replays the samples to it and to the live version.
//!
//! Concurrent changes: Vertex refuses a change while an endpoint has an
//! operation in progress (FAILED_PRECONDITION); mlcd waits for it, bounded by
//! `ready-timeout`, then refuses. mlcd records which deployed model serves which
//! version in the endpoint's labels (`mlcd-dm-<id>: <version>`); a deployed model
//! it did not record (deployed by hand or another tool) makes mlcd refuse to
//! change the endpoint. Every long-running operation is polled to `done` with its
//! `error` surfaced, bounded by `ready-timeout`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::cloud::gcp::auth::TokenSource;
use crate::cloud::gcp::client::{GcpClient, GcpError};
use crate::cloud::gcp::{self, operation, Api};
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::plan::VertexPlan;
use crate::serve::{
    Answer, EndpointState, EndpointStatus, Invocation, ServingBackend, Variant, VersionSpec,
};
use crate::train::vertex::{label_value, machine_spec};

/// Between two reads of an operation while a change is under way (a Vertex
/// deployment takes minutes: six calls a minute).
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
/// The label prefix recording which version a deployed model serves.
const DM_LABEL: &str = "mlcd-dm-";
/// The longest endpoint name: the candidate endpoint's id `<name>-candidate`
/// must stay within Vertex's 63 characters.
pub const MAX_ENDPOINT_NAME: usize = 63 - "-candidate".len();

/// The three Vertex endpoints behind one mlcd endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    /// The endpoint clients call.
    Live,
    /// Holds the version being rolled out, alone, so that it can be called.
    Candidate,
    /// Holds a shadow version.
    Shadow,
}

impl Role {
    fn id(self, endpoint: &str) -> String {
        match self {
            Role::Live => endpoint.to_string(),
            Role::Candidate => format!("{endpoint}-candidate"),
            Role::Shadow => format!("{endpoint}-shadow"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Role::Live => "live",
            Role::Candidate => "candidate",
            Role::Shadow => "shadow",
        }
    }
}

/// A Vertex endpoint as mlcd reads it.
#[derive(Debug, Clone)]
struct Ep {
    /// The resource name (`projects/N/locations/R/endpoints/ID`).
    name: String,
    labels: BTreeMap<String, String>,
    /// Deployed models: (id, version, model resource name).
    models: Vec<(String, String, String)>,
    /// Deployed model id → percent.
    split: BTreeMap<String, u8>,
    description: Option<String>,
}

impl Ep {
    fn parse(v: &Value) -> Ep {
        let labels: BTreeMap<String, String> = v["labels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let models = v["deployedModels"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                let id = d["id"].as_str().unwrap_or_default().to_string();
                let version = labels
                    .get(&format!("{DM_LABEL}{id}"))
                    .cloned()
                    .unwrap_or_else(|| d["displayName"].as_str().unwrap_or(&id).to_string());
                (
                    id,
                    version,
                    d["model"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let split = v["trafficSplit"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, p)| (k.clone(), p.as_u64().unwrap_or(0).min(100) as u8))
            .collect();
        Ep {
            name: v["name"].as_str().unwrap_or_default().to_string(),
            labels,
            models,
            split,
            description: v["description"].as_str().map(str::to_string),
        }
    }

    fn id_of(&self, version: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|(_, v, _)| v == version)
            .map(|(id, _, _)| id.as_str())
    }

    /// Deployed models mlcd did not record (id, display).
    fn foreign(&self) -> Vec<&str> {
        self.models
            .iter()
            .filter(|(id, _, _)| !self.labels.contains_key(&format!("{DM_LABEL}{id}")))
            .map(|(id, _, _)| id.as_str())
            .collect()
    }
}

/// Vertex AI endpoints of one project and region.
pub struct VertexServing {
    client: GcpClient,
    auth: Arc<TokenSource>,
    /// `https://…/` (the API root).
    root: String,
    /// `projects/P/locations/R`.
    parent: String,
    poll: Duration,
    ready_timeout: Duration,
    http: reqwest::Client,
    /// Model resource name → image, as read or uploaded by this process.
    images: Mutex<HashMap<String, String>>,
}

impl VertexServing {
    /// A backend for `plan`'s project and region, credentials from `env`.
    pub fn new(plan: &VertexPlan, env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let auth = Arc::new(TokenSource::from_env(env).map_err(|e| UserError {
            message: format!("cannot call Vertex AI endpoints: {}", e.message),
            ..e
        })?);
        let root = gcp::root_url(
            Api::Aiplatform,
            &plan.region,
            plan.api_endpoint.as_deref(),
            env,
        );
        Ok(VertexServing {
            client: GcpClient::new(auth.clone())?,
            auth,
            root,
            parent: format!("projects/{}/locations/{}", plan.project, plan.region),
            poll: crate::train::poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            ready_timeout: Duration::from_secs(600),
            http: reqwest::Client::new(),
            images: Mutex::default(),
        })
    }

    /// How long one change (a deployment, an undeployment, the wait for another
    /// change to finish) may take (`deploy.ready-timeout`).
    pub fn with_ready_timeout(mut self, t: Duration) -> Self {
        self.ready_timeout = t;
        self
    }

    fn url(&self, name: &str) -> String {
        format!("{}v1/{name}", self.root)
    }

    fn ep_name(&self, endpoint: &str, role: Role) -> String {
        format!("{}/endpoints/{}", self.parent, role.id(endpoint))
    }

    async fn get(&self, endpoint: &str, role: Role) -> Result<Option<Ep>, UserError> {
        let name = self.ep_name(endpoint, role);
        match self
            .client
            .call("endpoints.get", Method::GET, &self.url(&name), None)
            .await
        {
            Ok(v) => Ok(Some(Ep::parse(&v))),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.user(&format!("reading Vertex AI endpoint {name}"))),
        }
    }

    async fn must_get(&self, endpoint: &str) -> Result<Ep, UserError> {
        self.get(endpoint, Role::Live).await?.ok_or_else(|| {
            UserError::failed(format!(
                "there is no Vertex AI endpoint {}",
                self.ep_name(endpoint, Role::Live)
            ))
        })
    }

    /// Runs a change, waiting (bounded by `ready-timeout`) while Vertex refuses
    /// it because the endpoint has another operation in progress.
    async fn change<F, Fut>(&self, what: &str, f: F) -> Result<Value, UserError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Value, GcpError>>,
    {
        let deadline = Instant::now() + self.ready_timeout;
        let mut said = false;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.code() == Some("FAILED_PRECONDITION") && busy(&e) => {
                    if Instant::now() >= deadline {
                        return Err(UserError::failed(format!(
                            "{what}: the endpoint still has another operation in progress after {}, and mlcd never starts a second concurrent change ({e})",
                            humantime::format_duration(self.ready_timeout)
                        ))
                        .hint("wait for the other change to finish (`gcloud ai operations list`), then run this step again"));
                    }
                    if !said {
                        log::info!(
                            "{what}: the endpoint has another operation in progress; waiting for it (up to {})",
                            humantime::format_duration(self.ready_timeout)
                        );
                        said = true;
                    }
                    tokio::time::sleep(self.poll).await;
                }
                Err(e) => return Err(e.user(what)),
            }
        }
    }

    async fn wait(&self, op: Value, what: &str) -> Result<Value, UserError> {
        operation::wait(
            &self.client,
            &format!("{}v1/", self.root),
            op,
            what,
            self.poll,
            self.ready_timeout,
        )
        .await
    }

    /// The endpoint of `role`, created (labelled with the run's identity) when absent.
    async fn ensure(&self, spec: &VersionSpec, role: Role) -> Result<Ep, UserError> {
        if let Some(ep) = self.get(&spec.endpoint, role).await? {
            return Ok(ep);
        }
        let id = role.id(&spec.endpoint);
        let body = json!({
            "displayName": id,
            "description": serde_json::to_string(&spec.identity).unwrap_or_default(),
            "labels": {
                "mlcd-endpoint": label_value(&spec.endpoint),
                "mlcd-role": role.label(),
                "mlcd-model": label_value(&spec.identity.model),
            },
        });
        let what = format!("creating Vertex AI endpoint {id}");
        let url = format!(
            "{}?endpointId={id}",
            self.url(&format!("{}/endpoints", self.parent))
        );
        match self
            .client
            .call("endpoints.create", Method::POST, &url, Some(&body))
            .await
        {
            Ok(op) => {
                self.wait(op, &what).await?;
            }
            Err(e) if e.code() == Some("ALREADY_EXISTS") => {} // another run made it: use it
            Err(e) => return Err(e.user(&what)),
        }
        self.get(&spec.endpoint, role).await?.ok_or_else(|| {
            UserError::failed(format!(
                "{what}: the endpoint is not there after its creation"
            ))
        })
    }

    /// The Model version serving `spec`: an existing version of
    /// `<endpoint>-serving` with the same container and artifact, else a new one.
    async fn model_for(&self, spec: &VersionSpec) -> Result<String, UserError> {
        let model_id = format!("{}-serving", label_value(&spec.endpoint));
        let mut env: Vec<Value> = spec
            .contract_env()
            .into_iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect();
        env.push(json!({"name": "MODEL_NAME", "value": spec.model_name}));
        let container = json!({
            "imageUri": spec.image,
            "args": ["serve"],
            "env": env,
            "predictRoute": match spec.protocol {
                crate::config::values::Protocol::Sagemaker => "/invocations".to_string(),
                crate::config::values::Protocol::V2 => format!("/v2/models/{}/infer", spec.model_name),
            },
            "healthRoute": match spec.protocol {
                crate::config::values::Protocol::Sagemaker => "/ping",
                crate::config::values::Protocol::V2 => "/v2/health/ready",
            },
            "ports": [{"containerPort": 8080}],
        });
        let model_name = format!("{}/models/{model_id}", self.parent);
        let list = format!("{}:listVersions", self.url(&model_name));
        let existing = match self
            .client
            .call("models.listVersions", Method::GET, &list, None)
            .await
        {
            Ok(v) => v["models"].as_array().cloned().unwrap_or_default(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.user(&format!("listing the versions of {model_name}"))),
        };
        let same = existing.iter().find(|m| {
            m["containerSpec"] == container
                && m["artifactUri"].as_str() == spec.model_data.as_deref()
                && m["labels"]["mlcd-version"].as_str() == Some(&label_value(&spec.version))
        });
        if let Some(m) = same {
            let r = format!("{model_name}@{}", m["versionId"].as_str().unwrap_or("1"));
            self.remember(&r, &spec.image);
            return Ok(r);
        }
        let mut labels = BTreeMap::from([
            ("mlcd-model".to_string(), label_value(&spec.identity.model)),
            ("mlcd-endpoint".to_string(), label_value(&spec.endpoint)),
            ("mlcd-version".to_string(), label_value(&spec.version)),
        ]);
        if let Some(c) = &spec.identity.commit {
            labels.insert("mlcd-commit".into(), label_value(c));
        }
        let mut m = json!({
            "displayName": format!("{} {}", spec.endpoint, spec.version),
            "containerSpec": container,
            "labels": labels,
        });
        if let Some(a) = &spec.model_data {
            if !a.starts_with("gs://") {
                return Err(UserError::invalid(format!(
                    "the model artifact of version {} is `{a}`: Vertex AI serves models from Cloud Storage (gs://…)",
                    spec.version
                ))
                .hint("train with `backend: vertex` (its model lands under vertex.staging-bucket), or deploy an image that carries its model with `image`"));
            }
            m["artifactUri"] = json!(a);
        }
        let mut body = json!({ "model": m });
        if existing.is_empty() {
            body["modelId"] = json!(model_id);
        } else {
            body["parentModel"] = json!(model_name);
        }
        let what = format!(
            "uploading the serving model of {} to {model_name}",
            spec.version
        );
        let op = self
            .client
            .call(
                "models.upload",
                Method::POST,
                &self.url(&format!("{}/models:upload", self.parent)),
                Some(&body),
            )
            .await
            .map_err(|e| e.user(&what))?;
        let r = self.wait(op, &what).await?;
        let resource = format!(
            "{}@{}",
            r["model"].as_str().unwrap_or(&model_name),
            r["modelVersionId"].as_str().unwrap_or("1")
        );
        self.remember(&resource, &spec.image);
        Ok(resource)
    }

    fn remember(&self, model: &str, image: &str) {
        self.images
            .lock()
            .expect("not poisoned")
            .insert(model.to_string(), image.to_string());
    }

    /// The image of a deployed model's Model (read once per process).
    async fn image_of(&self, model: &str) -> String {
        if let Some(i) = self.images.lock().expect("not poisoned").get(model) {
            return i.clone();
        }
        match self
            .client
            .call("models.get", Method::GET, &self.url(model), None)
            .await
        {
            Ok(m) => {
                let image = m["containerSpec"]["imageUri"]
                    .as_str()
                    .unwrap_or(model)
                    .to_string();
                self.remember(model, &image);
                image
            }
            Err(_) => model.to_string(),
        }
    }

    /// Deploys `model` as `spec.version` to `ep` with `split` (`"0"` the new
    /// one), waits for the operation, and records the deployed model's id.
    async fn deploy_to(
        &self,
        ep: &Ep,
        spec: &VersionSpec,
        model: &str,
        split: BTreeMap<String, u8>,
    ) -> Result<(), UserError> {
        let machine = machine_spec(&spec.instance.native, spec.instance.gpus)
            .map_err(|e| UserError::invalid(format!("`deploy.instance`: {e}")))?;
        let body = json!({
            "deployedModel": {
                "model": model,
                "displayName": spec.version,
                "dedicatedResources": {
                    "machineSpec": machine,
                    "minReplicaCount": spec.replicas.max(1),
                    "maxReplicaCount": spec.replicas.max(1),
                },
            },
            "trafficSplit": split,
        });
        let what = format!(
            "deploying {} to Vertex AI endpoint {}",
            spec.version, ep.name
        );
        let url = format!("{}:deployModel", self.url(&ep.name));
        let op = self
            .change(&what, || {
                self.client
                    .call("endpoints.deployModel", Method::POST, &url, Some(&body))
            })
            .await?;
        let r = self.wait(op, &what).await?;
        let id = r["deployedModel"]["id"].as_str().unwrap_or_default();
        // Recorded in the endpoint's labels: which deployed model is which version.
        let now = self.get_by_name(&ep.name).await?;
        let mut labels = now.labels.clone();
        labels.retain(|k, _| {
            !k.starts_with(DM_LABEL)
                || now
                    .models
                    .iter()
                    .any(|(i, _, _)| *k == format!("{DM_LABEL}{i}"))
        });
        labels.insert(format!("{DM_LABEL}{id}"), label_value(&spec.version));
        self.patch(&ep.name, "labels", json!({ "labels": labels }), &what)
            .await
    }

    async fn get_by_name(&self, name: &str) -> Result<Ep, UserError> {
        self.client
            .call("endpoints.get", Method::GET, &self.url(name), None)
            .await
            .map(|v| Ep::parse(&v))
            .map_err(|e| e.user(&format!("reading Vertex AI endpoint {name}")))
    }

    async fn patch(
        &self,
        name: &str,
        mask: &str,
        body: Value,
        what: &str,
    ) -> Result<(), UserError> {
        let url = format!("{}?updateMask={mask}", self.url(name));
        self.change(what, || {
            self.client
                .call("endpoints.patch", Method::PATCH, &url, Some(&body))
        })
        .await
        .map(|_| ())
    }

    async fn undeploy(&self, ep: &Ep, id: &str) -> Result<(), UserError> {
        let what = format!(
            "undeploying deployed model {id} from Vertex AI endpoint {}",
            ep.name
        );
        let url = format!("{}:undeployModel", self.url(&ep.name));
        let body = json!({ "deployedModelId": id });
        let op = self
            .change(&what, || {
                self.client
                    .call("endpoints.undeployModel", Method::POST, &url, Some(&body))
            })
            .await?;
        self.wait(op, &what).await?;
        Ok(())
    }

    /// Undeploys everything from the endpoint of `role`, when it exists.
    async fn empty(&self, endpoint: &str, role: Role) -> Result<Option<Ep>, UserError> {
        let Some(ep) = self.get(endpoint, role).await? else {
            return Ok(None);
        };
        // Models without traffic first, so that the last one may keep its 100%.
        let mut ids: Vec<&(String, String, String)> = ep.models.iter().collect();
        ids.sort_by_key(|(id, _, _)| ep.split.get(id).copied().unwrap_or(0));
        for (id, _, _) in ids {
            self.undeploy(&ep, id).await?;
        }
        Ok(Some(ep))
    }

    fn refuse_foreign(&self, ep: &Ep) -> Result<(), UserError> {
        let foreign = ep.foreign();
        if foreign.is_empty() {
            return Ok(());
        }
        Err(UserError::failed(format!(
            "Vertex AI endpoint {} has deployed model(s) {} that mlcd did not deploy: mlcd does not change an endpoint someone else is changing",
            ep.name,
            foreign.join(", ")
        ))
        .hint("undeploy them (`gcloud ai endpoints undeploy-model`) or let that change finish, then run this step again"))
    }

    async fn raw_predict(&self, name: &str, request: &Invocation) -> Result<Answer, UserError> {
        let url = format!("{}:rawPredict", self.url(name));
        let fail = |e: String| {
            UserError::failed(format!("calling Vertex AI endpoint {name}: {e}"))
                .hint("the endpoint's logs are in Cloud Logging (resource.type=\"aiplatform.googleapis.com/Endpoint\")")
        };
        let token = self.auth.token().await.map_err(|e| fail(e.to_string()))?;
        let started = Instant::now();
        let resp = self
            .http
            .post(&url)
            .bearer_auth(token.expose())
            .header(reqwest::header::CONTENT_TYPE, &request.content_type)
            .body(request.body.clone())
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_vec();
        Ok(Answer {
            status,
            body,
            latency: started.elapsed(),
        })
    }
}

/// Whether Google refused a change because another one is in progress.
fn busy(e: &GcpError) -> bool {
    let GcpError::Api { message, .. } = e else {
        return false;
    };
    let m = message.to_ascii_lowercase();
    m.contains("in progress")
}

/// Checks that `name` can name the Vertex endpoints mlcd makes for it.
pub fn check_endpoint_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_ENDPOINT_NAME
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a Vertex AI endpoint: expected a lowercase letter, then lowercase letters, digits and `-`, at most {MAX_ENDPOINT_NAME} characters, not ending in `-` (mlcd uses it as the endpoint id and adds `-candidate` / `-shadow`)"
        ))
    }
}

#[async_trait]
impl ServingBackend for VertexServing {
    fn name(&self) -> &'static str {
        "vertex"
    }

    /// The shadow is its own endpoint: Vertex cannot mirror, so it answers only
    /// the replayed sample requests.
    fn mirrors_traffic(&self) -> bool {
        false
    }

    async fn preflight(&self, spec: &VersionSpec) -> Result<(), UserError> {
        check_endpoint_name(&spec.endpoint).map_err(|e| {
            UserError::invalid(e).hint("set `deploy.endpoint` to a name like `churn`")
        })?;
        machine_spec(&spec.instance.native, spec.instance.gpus)
            .map_err(|e| UserError::invalid(format!("`deploy.instance`: {e}")))?;
        if let Some(ep) = self.get(&spec.endpoint, Role::Live).await? {
            self.refuse_foreign(&ep)?;
        }
        Ok(())
    }

    async fn owner(&self, endpoint: &str) -> Result<Recorded, UserError> {
        Ok(match self.get(endpoint, Role::Live).await? {
            None => Recorded::Absent,
            Some(ep) => match ep
                .description
                .as_deref()
                .and_then(|d| serde_json::from_str::<Identity>(d).ok())
            {
                Some(i) => Recorded::Run(i),
                None => Recorded::Unknown,
            },
        })
    }

    async fn status(&self, endpoint: &str) -> Result<Option<EndpointStatus>, UserError> {
        let Some(live) = self.get(endpoint, Role::Live).await? else {
            return Ok(None);
        };
        let mut variants = Vec::new();
        for (id, version, model) in &live.models {
            variants.push(Variant {
                version: version.clone(),
                image: self.image_of(model).await,
                weight: live.split.get(id).copied().unwrap_or(0),
                shadow: false,
                ready: true,
                url: None,
            });
        }
        if let Some(sh) = self.get(endpoint, Role::Shadow).await? {
            for (_, version, model) in &sh.models {
                variants.push(Variant {
                    version: version.clone(),
                    image: self.image_of(model).await,
                    weight: 0,
                    shadow: true,
                    ready: true,
                    url: Some(format!("{}:rawPredict", self.url(&sh.name))),
                });
            }
        }
        Ok(Some(EndpointStatus {
            name: endpoint.to_string(),
            // Vertex endpoints have no state: a change in progress shows as a
            // refused change (waited for in `change`), a deployed model appears
            // once its deployment is done.
            state: EndpointState::InService,
            failure_reason: None,
            url: Some(format!("{}:rawPredict", self.url(&live.name))),
            variants,
        }))
    }

    async fn deploy(&self, spec: &VersionSpec, shadow: bool) -> Result<(), UserError> {
        self.preflight(spec).await?;
        let live = self.get(&spec.endpoint, Role::Live).await?;
        if shadow {
            if live.is_none() {
                return Err(UserError::failed(format!(
                    "there is no Vertex AI endpoint {} to shadow",
                    self.ep_name(&spec.endpoint, Role::Live)
                )));
            }
            let model = self.model_for(spec).await?;
            self.empty(&spec.endpoint, Role::Shadow).await?;
            let ep = self.ensure(spec, Role::Shadow).await?;
            return self
                .deploy_to(&ep, spec, &model, BTreeMap::from([("0".into(), 100)]))
                .await;
        }
        let model = self.model_for(spec).await?;
        let Some(live) = live else {
            let ep = self.ensure(spec, Role::Live).await?;
            return self
                .deploy_to(&ep, spec, &model, BTreeMap::from([("0".into(), 100)]))
                .await;
        };
        if live.id_of(&spec.version).is_some() {
            // Already beside the live version (a re-run): it must still be
            // callable alone when it shares the endpoint.
            let alone = self
                .get(&spec.endpoint, Role::Candidate)
                .await?
                .is_some_and(|c| c.models.len() == 1 && c.models[0].1 == spec.version);
            if live.models.len() > 1 && !alone {
                self.empty(&spec.endpoint, Role::Candidate).await?;
                let cand = self.ensure(spec, Role::Candidate).await?;
                self.deploy_to(&cand, spec, &model, BTreeMap::from([("0".into(), 100)]))
                    .await?;
            }
            return Ok(());
        }
        if live.models.is_empty() {
            return self
                .deploy_to(&live, spec, &model, BTreeMap::from([("0".into(), 100)]))
                .await;
        }
        // Alone on the candidate endpoint, where smoke tests reach it …
        self.empty(&spec.endpoint, Role::Candidate).await?;
        let cand = self.ensure(spec, Role::Candidate).await?;
        self.deploy_to(&cand, spec, &model, BTreeMap::from([("0".into(), 100)]))
            .await?;
        // … and beside the live version at 0%.
        let mut split: BTreeMap<String, u8> = live
            .split
            .iter()
            .filter(|(_, p)| **p > 0)
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        split.insert("0".into(), 0);
        self.deploy_to(&live, spec, &model, split).await
    }

    async fn set_traffic(
        &self,
        endpoint: &str,
        weights: &BTreeMap<String, u8>,
    ) -> Result<(), UserError> {
        let live = self.must_get(endpoint).await?;
        self.refuse_foreign(&live)?;
        let mut split = Map::new();
        for (v, w) in weights {
            if *w == 0 {
                continue;
            }
            let Some(id) = live.id_of(v) else {
                return Err(UserError::failed(format!(
                    "version `{v}` is not deployed to Vertex AI endpoint {}: it cannot take {w}%",
                    live.name
                )));
            };
            split.insert(id.to_string(), json!(w));
        }
        self.patch(
            &live.name,
            "traffic_split",
            json!({ "trafficSplit": split }),
            &format!(
                "setting the traffic split of Vertex AI endpoint {}",
                live.name
            ),
        )
        .await
    }

    async fn invoke(
        &self,
        endpoint: &str,
        version: &str,
        request: &Invocation,
    ) -> Result<Answer, UserError> {
        for role in [Role::Shadow, Role::Candidate] {
            if let Some(ep) = self.get(endpoint, role).await? {
                if ep.models.len() == 1 && ep.models[0].1 == version {
                    return self.raw_predict(&ep.name, request).await;
                }
            }
        }
        let live = self.must_get(endpoint).await?;
        let Some(id) = live.id_of(version) else {
            return Err(UserError::failed(format!(
                "version `{version}` is not behind Vertex AI endpoint {} (it serves {})",
                live.name,
                live.models
                    .iter()
                    .map(|(_, v, _)| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        if live.split.get(id).copied() == Some(100) {
            return self.raw_predict(&live.name, request).await;
        }
        Err(UserError::failed(format!(
            "version `{version}` shares Vertex AI endpoint {} with other deployed models, and Vertex routes each request by the traffic split: it cannot be called alone",
            live.name
        ))
        .hint("mlcd calls a new version on its candidate endpoint; deploy it again with mlcd to put it there"))
    }

    async fn retire(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        if let Some(sh) = self.get(endpoint, Role::Shadow).await? {
            if let Some(id) = sh.id_of(version) {
                let id = id.to_string();
                return self.undeploy(&sh, &id).await;
            }
        }
        let live = self.must_get(endpoint).await?;
        let Some(id) = live.id_of(version) else {
            return Err(UserError::failed(format!(
                "version `{version}` is not behind Vertex AI endpoint {}",
                live.name
            )));
        };
        if let Some(w) = live.split.get(id).filter(|w| **w > 0) {
            return Err(UserError::failed(format!(
                "version `{version}` still takes {w}% of Vertex AI endpoint {}: it cannot be retired",
                live.name
            )));
        }
        self.undeploy(&live, id).await?;
        // The rollout is over: its candidate endpoint is emptied.
        self.empty(endpoint, Role::Candidate).await?;
        Ok(())
    }

    async fn rollback(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let live = self.must_get(endpoint).await?;
        let Some(keep) = live.id_of(version).map(str::to_string) else {
            return Err(UserError::failed(format!(
                "version `{version}` is not deployed to Vertex AI endpoint {}: mlcd deploys it again first",
                live.name
            )));
        };
        if live.split.get(&keep).copied() != Some(100) {
            self.patch(
                &live.name,
                "traffic_split",
                json!({ "trafficSplit": { keep.clone(): 100 } }),
                &format!(
                    "moving all the traffic of Vertex AI endpoint {} back to {version}",
                    live.name
                ),
            )
            .await?;
        }
        for (id, _, _) in live.models.iter().filter(|(id, _, _)| *id != keep) {
            self.undeploy(&live, id).await?;
        }
        self.empty(endpoint, Role::Candidate).await?;
        self.empty(endpoint, Role::Shadow).await?;
        Ok(())
    }

    async fn teardown(&self, endpoint: &str) -> Result<(), UserError> {
        for role in [Role::Shadow, Role::Candidate, Role::Live] {
            let Some(ep) = self.empty(endpoint, role).await? else {
                continue;
            };
            let what = format!("deleting Vertex AI endpoint {}", ep.name);
            let url = self.url(&ep.name);
            let op = self
                .change(&what, || {
                    self.client
                        .call("endpoints.delete", Method::DELETE, &url, None)
                })
                .await?;
            self.wait(op, &what).await?;
        }
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_names_leave_room_for_the_candidate_endpoint() {
        assert!(check_endpoint_name("churn").is_ok());
        assert!(check_endpoint_name("churn-2").is_ok());
        for bad in ["Churn", "1churn", "churn-", "", "churn_x"] {
            assert!(check_endpoint_name(bad).is_err(), "{bad}");
        }
        assert!(check_endpoint_name(&"a".repeat(MAX_ENDPOINT_NAME)).is_ok());
        assert!(check_endpoint_name(&"a".repeat(MAX_ENDPOINT_NAME + 1)).is_err());
    }

    #[test]
    fn deployed_models_mlcd_did_not_record_are_foreign() {
        let ep = Ep::parse(&json!({
            "name": "projects/1/locations/r/endpoints/churn",
            "labels": {"mlcd-dm-11": "v1"},
            "deployedModels": [
                {"id": "11", "displayName": "v1", "model": "m@1"},
                {"id": "12", "displayName": "hand-made", "model": "m@2"},
            ],
            "trafficSplit": {"11": 90, "12": 10},
        }));
        assert_eq!(ep.id_of("v1"), Some("11"));
        assert_eq!(ep.foreign(), vec!["12"]);
        assert_eq!(ep.split["12"], 10);
    }
}
