//! The KServe serving backend: one InferenceService per endpoint, applied
//! server-side under mlcd's field manager, behind [`ServingBackend`].
//!
//! Serverless (Knative) mode: a new version is applied with
//! `canaryTrafficPercent: 0` beside the rolled-out one — Knative makes a revision
//! for it, tagged `latest`, reachable at its tag URL, taking no traffic — so it is
//! smoke-tested before any traffic; the strategy's steps set the percentage;
//! promotion removes it; rollback applies the previous version's spec again
//! (at 0% until its new revision is ready, then 100%), so the spec in the
//! cluster never names the bad image. KServe reports revisions, not versions:
//! mlcd records which revision it caused for which version in a ConfigMap
//! `<endpoint>-mlcd-revisions` owned by the InferenceService (deleted with it).
//!
//! Standard (RawDeployment) mode ignores `canaryTrafficPercent`: a new version
//! replaces the old by a rolling update, so canary and linear are refused there,
//! and all-at-once and blue-green go through.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::Client;
use serde_json::{json, Value};

use super::state::{self, RevisionInfo, Revisions};
use super::{inference_service, resource};
use crate::cloud::kube::{self as k, ApiFailure};
use crate::cloud::kube_follow::Followed;
use crate::config::types::KserveMode;
use crate::config::values::{Protocol, Strategy};
use crate::error::UserError;
use crate::identity::Recorded;
use crate::plan::ServingKubernetesPlan;
use crate::serve::{
    Answer, EndpointState, EndpointStatus, Invocation, ServingBackend, VersionSpec,
};
use crate::train::kubernetes::recorded_from_annotations;

/// Between two reads of an InferenceService while a change is under way.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// The ConfigMap recording which revision serves which version.
pub fn record_name(endpoint: &str) -> String {
    format!("{endpoint}-mlcd-revisions")
}

/// KServe InferenceServices in one namespace.
pub struct KserveServing {
    client: Client,
    plan: ServingKubernetesPlan,
    poll: Duration,
    ready_timeout: Duration,
    strategy: Strategy,
    http: reqwest::Client,
    /// The InferenceServices, read through watches.
    followed: Followed,
    /// The revision records read or written by this process, per endpoint
    /// (mlcd is their only writer, and never runs two changes of one endpoint).
    records: Arc<Mutex<HashMap<String, Revisions>>>,
}

impl KserveServing {
    /// A backend on the cluster `plan.context` names (see [`k::connect`]).
    pub async fn new(
        plan: &ServingKubernetesPlan,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, UserError> {
        let (client, source) = k::connect(plan.context.as_deref(), plan.eks.as_ref(), env).await?;
        log::info!("kubernetes: credentials from {source}");
        Ok(Self::with_client(client, plan, env))
    }

    /// A backend over an existing client.
    pub fn with_client(
        client: Client,
        plan: &ServingKubernetesPlan,
        env: &BTreeMap<String, String>,
    ) -> Self {
        KserveServing {
            plan: plan.clone(),
            poll: crate::train::poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            ready_timeout: Duration::from_secs(600),
            strategy: Strategy::AllAtOnce,
            http: reqwest::Client::new(),
            followed: Followed::new(Api::namespaced_with(
                client.clone(),
                &plan.namespace,
                &resource(),
            )),
            records: Arc::default(),
            client,
        }
    }

    /// How long a new revision may take to appear and become ready inside one
    /// call (`deploy.ready-timeout`).
    pub fn with_ready_timeout(mut self, bound: Duration) -> Self {
        self.ready_timeout = bound;
        self
    }

    /// The strategy of this rollout (canary and linear need serverless mode).
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The InferenceService `endpoint` as the cluster has it now (read through
    /// the watch), or `None`.
    pub async fn object(&self, endpoint: &str) -> Result<Option<Value>, UserError> {
        self.get(endpoint).await
    }

    /// What mlcd knows about `endpoint`'s revisions when it keeps no record on
    /// the cluster (GitOps: Argo CD applies the objects, mlcd writes nothing
    /// there); used instead of the ConfigMap by [`ServingBackend::status`] and
    /// [`ServingBackend::invoke`].
    pub fn remember(&self, endpoint: &str, revisions: Revisions) {
        self.records
            .lock()
            .expect("not poisoned")
            .insert(endpoint.to_string(), revisions);
    }

    fn ns(&self) -> &str {
        &self.plan.namespace
    }

    fn err(&self, doing: String, e: &kube::Error) -> UserError {
        k::error(&doing, self.ns(), e)
    }

    async fn get(&self, endpoint: &str) -> Result<Option<Value>, UserError> {
        self.followed.get(endpoint).await.map_err(|e| {
            self.err(
                format!("reading InferenceService {}/{endpoint}", self.ns()),
                &e,
            )
        })
    }

    async fn must_get(&self, endpoint: &str) -> Result<Value, UserError> {
        self.get(endpoint).await?.ok_or_else(|| {
            UserError::failed(format!(
                "InferenceService {}/{endpoint} does not exist",
                self.ns()
            ))
        })
    }

    async fn revisions(&self, endpoint: &str) -> Result<Revisions, UserError> {
        if let Some(r) = self.records.lock().expect("not poisoned").get(endpoint) {
            return Ok(r.clone());
        }
        let cm = k::resource("v1", "ConfigMap", "configmaps");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), self.ns(), &cm);
        let name = record_name(endpoint);
        let found = api
            .get_opt(&name)
            .await
            .map_err(|e| self.err(format!("reading ConfigMap {}/{name}", self.ns()), &e))?;
        let data = found
            .and_then(|f| f.data["data"].as_object().cloned())
            .unwrap_or_default();
        let revisions: Revisions = data
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_str(v.as_str()?).ok()?)))
            .collect();
        self.records
            .lock()
            .expect("not poisoned")
            .insert(endpoint.to_string(), revisions.clone());
        Ok(revisions)
    }

    /// Records `info` for `key` (a revision, or a Standard-mode generation) in
    /// the ConfigMap the InferenceService `owner` owns.
    async fn record(&self, owner: &Value, key: &str, info: RevisionInfo) -> Result<(), UserError> {
        let endpoint = owner["metadata"]["name"].as_str().unwrap_or_default();
        let mut all = self.revisions(endpoint).await?;
        all.insert(key.to_string(), info);
        let data: serde_json::Map<String, Value> = all
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    json!(serde_json::to_string(v).expect("serializes")),
                )
            })
            .collect();
        let name = record_name(endpoint);
        let cm = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": self.ns(),
                "labels": {"app.kubernetes.io/managed-by": "mlcd", super::LABEL_ENDPOINT: crate::train::kubernetes::label_value(endpoint)},
                "ownerReferences": [{
                    "apiVersion": super::API_VERSION,
                    "kind": super::KIND,
                    "name": endpoint,
                    "uid": owner["metadata"]["uid"],
                }],
            },
            "data": data,
        });
        k::apply(
            &self.client,
            self.ns(),
            &k::resource("v1", "ConfigMap", "configmaps"),
            &cm,
        )
        .await
        .map_err(|e| {
            self.err(
                format!("recording the revisions in ConfigMap {}/{name}", self.ns()),
                &e,
            )
        })?;
        self.records
            .lock()
            .expect("not poisoned")
            .insert(endpoint.to_string(), all);
        Ok(())
    }

    async fn apply(&self, obj: &Value) -> Result<Value, UserError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let stored = k::apply(&self.client, self.ns(), &resource(), obj)
            .await
            .map_err(|e| {
                self.err(
                    format!("applying InferenceService {}/{name}", self.ns()),
                    &e,
                )
            })?;
        let stored = serde_json::to_value(stored).expect("serializes");
        self.followed.saw(&stored);
        Ok(stored)
    }

    /// Whether the endpoint runs (or will run) in Standard mode.
    fn raw(&self, current: Option<&Value>) -> bool {
        self.plan.deployment_mode == Some(KserveMode::Standard)
            || current.is_some_and(state::is_raw)
    }

    /// Applies `obj` and records what KServe made of it: in serverless mode the
    /// revision created for it (waited for, bounded: `observedGeneration` alone
    /// does not say Knative made it), in Standard mode the generation.
    async fn apply_and_record(
        &self,
        obj: &Value,
        current: Option<&Value>,
        info: RevisionInfo,
    ) -> Result<(), UserError> {
        let endpoint = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let before = current.and_then(|c| state::predictor(c).latest_created);
        let known = self.revisions(&endpoint).await?;
        let new_template = current.is_none_or(|c| state::template(c) != state::template(obj));
        let stored = self.apply(obj).await?;
        if self.raw(Some(&stored)) {
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
            return self
                .record(&stored, &state::generation_key(generation), info)
                .await;
        }
        if !new_template {
            // No new revision: the latest one is this spec's already (recorded
            // again when it was a shadow and no longer is, or the reverse).
            if let Some(rev) =
                before.filter(|r| known.get(r).is_none_or(|k| k.shadow != info.shadow))
            {
                self.record(&stored, &rev, info).await?;
            }
            return Ok(());
        }
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let now = self.must_get(&endpoint).await?;
            if state::is_raw(&now) {
                // The cluster's default mode is Standard: no revisions to wait for.
                let generation = stored["metadata"]["generation"].as_i64().unwrap_or(1);
                return self
                    .record(&stored, &state::generation_key(generation), info)
                    .await;
            }
            let latest = state::predictor(&now).latest_created;
            if let Some(rev) =
                latest.filter(|r| Some(r) != before.as_ref() && !known.contains_key(r))
            {
                return self.record(&stored, &rev, info).await;
            }
            if Instant::now() >= deadline {
                let why = state::condition(&now, "Ready")
                    .map(|(s, why)| format!(" (Ready: {s} {why})"))
                    .unwrap_or_default();
                return Err(UserError::failed(format!(
                    "KServe made no new revision of InferenceService {}/{endpoint} within {}{why}",
                    self.ns(),
                    humantime::format_duration(self.ready_timeout)
                ))
                .hint(format!("`kubectl describe inferenceservice {endpoint} -n {}` and the KServe controller's log show why", self.ns())));
            }
            self.followed.changed(self.poll).await;
        }
    }

    fn info(spec: &VersionSpec, obj: &Value) -> RevisionInfo {
        RevisionInfo {
            version: spec.version.clone(),
            image: spec.image.clone(),
            protocol: spec.protocol,
            model_name: spec.model_name.clone(),
            object: obj.clone(),
            shadow: false,
        }
    }

    /// Waits (bounded) until the latest revision is ready, routed and of the
    /// spec as it is now; the condition's reason when it fails.
    async fn wait_latest_ready(&self, endpoint: &str) -> Result<(), UserError> {
        let deadline = Instant::now() + self.ready_timeout;
        loop {
            let obj = self.must_get(endpoint).await?;
            let revs = self.revisions(endpoint).await?;
            let s = state::endpoint_status(&obj, &revs);
            let p = state::predictor(&obj);
            let latest_version = p
                .latest_created
                .as_deref()
                .map(|r| state::version_of(&revs, r));
            if s.state == EndpointState::Failed {
                return Err(UserError::failed(format!(
                    "InferenceService {}/{endpoint}: {}",
                    self.ns(),
                    s.failure_reason.unwrap_or_default()
                )));
            }
            if s.state != EndpointState::Updating
                && s.variants
                    .iter()
                    .any(|v| Some(&v.version) == latest_version.as_ref() && v.ready)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(UserError::failed(format!(
                    "the latest revision of InferenceService {}/{endpoint} did not become ready within {}",
                    self.ns(),
                    humantime::format_duration(self.ready_timeout)
                )));
            }
            self.followed.changed(self.poll).await;
        }
    }

    fn no_endpoint(&self, endpoint: &str) -> UserError {
        UserError::failed(format!(
            "there is no InferenceService {}/{endpoint}",
            self.ns()
        ))
    }
}

/// `obj` with `canaryTrafficPercent` set (or removed with `None`).
fn with_canary(obj: &Value, pct: Option<u8>) -> Value {
    let mut o = obj.clone();
    let p = o["spec"]["predictor"]
        .as_object_mut()
        .expect("an InferenceService has a predictor");
    match pct {
        Some(v) => {
            p.insert("canaryTrafficPercent".into(), json!(v));
        }
        None => {
            p.remove("canaryTrafficPercent");
        }
    }
    o
}

#[async_trait]
impl ServingBackend for KserveServing {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn preflight(&self, spec: &VersionSpec) -> Result<(), UserError> {
        inference_service(spec, None, &self.plan)?;
        let current = self.get(&spec.endpoint).await?;
        if self.strategy == Strategy::Shadow {
            if let Some(c) = current.as_ref().filter(|c| state::is_raw(c)) {
                super::shadow::check(
                    &spec.endpoint,
                    self.ns(),
                    true,
                    state::predictor(c).rolled_out.is_some(),
                )?;
            }
        }
        if matches!(self.strategy, Strategy::Canary | Strategy::Linear)
            && current.as_ref().is_some_and(state::is_raw)
        {
            return Err(UserError::invalid(format!(
                "the `{}` strategy cannot run on InferenceService {}/{}: KServe runs it in Standard (RawDeployment) mode, which ignores `canaryTrafficPercent` and would send all the traffic to the new version at once",
                self.strategy, self.ns(), spec.endpoint
            ))
            .hint("use `strategy: all-at-once` or `blue-green` for this endpoint, or run it in serverless mode (`kubernetes.deployment-mode: serverless`)"));
        }
        Ok(())
    }

    async fn owner(&self, endpoint: &str) -> Result<Recorded, UserError> {
        Ok(match self.get(endpoint).await? {
            None => Recorded::Absent,
            Some(obj) => recorded_from_annotations(&obj),
        })
    }

    async fn status(&self, endpoint: &str) -> Result<Option<EndpointStatus>, UserError> {
        let Some(obj) = self.get(endpoint).await? else {
            return Ok(None);
        };
        let revs = self.revisions(endpoint).await?;
        Ok(Some(state::endpoint_status(&obj, &revs)))
    }

    async fn deploy(&self, spec: &VersionSpec, shadow: bool) -> Result<(), UserError> {
        let current = self.get(&spec.endpoint).await?;
        let rolled = current
            .as_ref()
            .and_then(|c| state::predictor(c).rolled_out);
        if shadow {
            super::shadow::check(
                &spec.endpoint,
                self.ns(),
                self.raw(current.as_ref()),
                rolled.is_some(),
            )?;
        }
        // Beside the live revision at 0%: reachable at its tag URL only.
        let canary = (!self.raw(current.as_ref()) && rolled.is_some()).then_some(0);
        let obj = inference_service(spec, canary, &self.plan)?;
        let mut info = Self::info(spec, &with_canary(&obj, None));
        info.shadow = shadow;
        self.apply_and_record(&obj, current.as_ref(), info).await
    }

    fn mirrors_traffic(&self) -> bool {
        false
    }

    async fn set_traffic(
        &self,
        endpoint: &str,
        weights: &BTreeMap<String, u8>,
    ) -> Result<(), UserError> {
        let obj = self
            .get(endpoint)
            .await?
            .ok_or_else(|| self.no_endpoint(endpoint))?;
        let revs = self.revisions(endpoint).await?;
        let p = state::predictor(&obj);
        if self.raw(Some(&obj)) {
            let s = state::endpoint_status(&obj, &revs);
            let serving = &s.variants[0].version;
            if weights.get(serving).copied() == Some(100) {
                return Ok(());
            }
            return Err(UserError::invalid(format!(
                "InferenceService {}/{endpoint} runs in Standard (RawDeployment) mode, which cannot split traffic ({weights:?} asked)",
                self.ns()
            )));
        }
        let latest = p.latest_created.clone().unwrap_or_default();
        let info = revs.get(&latest).ok_or_else(|| {
            UserError::failed(format!(
                "the latest revision of InferenceService {}/{endpoint} ({latest}) was not made by mlcd: its traffic is left alone",
                self.ns()
            ))
            .hint("deploy the version again with mlcd, or change the traffic with kubectl")
        })?;
        let rolled_version = p.rolled_out.as_deref().map(|r| state::version_of(&revs, r));
        for (v, w) in weights {
            if *w > 0 && v != &info.version && Some(v) != rolled_version.as_ref() {
                return Err(UserError::failed(format!(
                    "KServe splits traffic between the latest revision ({}) and the rolled-out one ({}) only: {v} cannot take {w}%",
                    info.version,
                    rolled_version.as_deref().unwrap_or("none")
                )));
            }
        }
        let pct = weights.get(&info.version).copied().unwrap_or(0);
        let canary = (pct < 100).then_some(pct);
        self.apply(&with_canary(&info.object, canary)).await?;
        Ok(())
    }

    async fn invoke(
        &self,
        endpoint: &str,
        version: &str,
        request: &Invocation,
    ) -> Result<Answer, UserError> {
        let obj = self
            .get(endpoint)
            .await?
            .ok_or_else(|| self.no_endpoint(endpoint))?;
        let revs = self.revisions(endpoint).await?;
        let s = state::endpoint_status(&obj, &revs);
        let Some(v) = s.variants.iter().find(|v| v.version == version) else {
            return Err(UserError::failed(format!(
                "version `{version}` is not behind InferenceService {}/{endpoint} (it serves {})",
                self.ns(),
                s.variants
                    .iter()
                    .map(|v| v.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let url = match (&v.url, s.variants.len()) {
            (Some(u), _) => u.clone(),
            (None, 1) if v.ready => s.url.clone().unwrap_or_default(),
            _ => {
                return Err(UserError::failed(format!(
                    "version `{version}` of InferenceService {}/{endpoint} has no URL of its own: {}",
                    self.ns(),
                    if v.ready { "tag routing is off" } else { "KServe routes nothing to it (it is not ready)" }
                ))
                .hint(format!("mlcd sets `{}: \"true\"` on the InferenceServices it applies; check that the cluster's KServe honours it", super::TAG_ROUTING_ANNOTATION)))
            }
        };
        let info = revs.values().find(|i| i.version == version);
        let path = match info.map(|i| (i.protocol, i.model_name.as_str())) {
            Some((Protocol::V2, model)) => format!("/v2/models/{model}/infer"),
            _ => "/invocations".to_string(),
        };
        let timeout = Duration::from_secs(
            info.and_then(|i| i.object["spec"]["predictor"]["timeout"].as_u64())
                .unwrap_or(60),
        );
        let full = format!("{}{path}", url.trim_end_matches('/'));
        let started = Instant::now();
        let fail = |e: reqwest::Error| {
            UserError::failed(format!(
                "invoking version `{version}` of InferenceService {}/{endpoint} at {full} failed: {e}",
                self.ns()
            ))
            .hint(format!("`kubectl logs -n {} -l serving.kserve.io/inferenceservice={endpoint} -c kserve-container` shows what the model server did", self.ns()))
        };
        let resp = self
            .http
            .post(&full)
            .header(reqwest::header::CONTENT_TYPE, &request.content_type)
            .body(request.body.clone())
            .timeout(timeout)
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
        let obj = self
            .get(endpoint)
            .await?
            .ok_or_else(|| self.no_endpoint(endpoint))?;
        let revs = self.revisions(endpoint).await?;
        let p = state::predictor(&obj);
        let latest = p
            .latest_created
            .as_deref()
            .map(|r| state::version_of(&revs, r));
        let rolled = p.rolled_out.as_deref().map(|r| state::version_of(&revs, r));
        if latest.as_deref() == Some(version) && rolled.as_deref() != Some(version) {
            // The new revision goes: the rolled-out version alone again.
            let Some(r) = rolled else {
                return self.teardown(endpoint).await;
            };
            return self.rollback(endpoint, &r).await;
        }
        let s = state::endpoint_status(&obj, &revs);
        if let Some(v) = s
            .variants
            .iter()
            .find(|v| v.version == version && v.weight > 0)
        {
            return Err(UserError::failed(format!(
                "version `{version}` still takes {}% of InferenceService {}/{endpoint}: it cannot be retired",
                v.weight,
                self.ns()
            )));
        }
        // A revision without traffic is scaled to zero by Knative (and replaced
        // by the rolling update in Standard mode): nothing to remove.
        Ok(())
    }

    async fn rollback(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let obj = self
            .get(endpoint)
            .await?
            .ok_or_else(|| self.no_endpoint(endpoint))?;
        let revs = self.revisions(endpoint).await?;
        let p = state::predictor(&obj);
        let latest = p.latest_created.as_deref();
        if let Some(info) = latest.and_then(|l| revs.get(l)) {
            if info.version == version && p.latest_routed() {
                self.apply(&with_canary(&info.object, None)).await?;
                return Ok(());
            }
        }
        let key = if self.raw(Some(&obj)) {
            revs.iter()
                .filter(|(_, i)| i.version == version)
                .max_by_key(|(k, _)| {
                    k.trim_start_matches("generation-")
                        .parse::<i64>()
                        .unwrap_or(0)
                })
                .map(|(k, _)| k.clone())
        } else {
            revs.iter()
                .filter(|(_, i)| i.version == version)
                .map(|(k, _)| k.clone())
                .max()
        };
        let Some(info) = key.and_then(|k| revs.get(&k).cloned()) else {
            return Err(UserError::failed(format!(
                "InferenceService {}/{endpoint} has no record of version `{version}`: mlcd cannot apply its spec again",
                self.ns()
            ))
            .hint("deploy that version's image with `image`"));
        };
        if self.raw(Some(&obj)) {
            return self
                .apply_and_record(&info.object, Some(&obj), info.clone())
                .await;
        }
        // Its spec again at 0% (the rolled-out revision keeps serving while the
        // new revision starts), then all the traffic once it is ready.
        let at_zero = with_canary(&info.object, p.rolled_out.is_some().then_some(0));
        self.apply_and_record(&at_zero, Some(&obj), info.clone())
            .await?;
        self.wait_latest_ready(endpoint).await?;
        self.apply(&info.object).await?;
        Ok(())
    }

    async fn teardown(&self, endpoint: &str) -> Result<(), UserError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), self.ns(), &resource());
        self.records.lock().expect("not poisoned").remove(endpoint);
        let deleted = api.delete(endpoint, &DeleteParams::default()).await;
        self.followed.forget(endpoint);
        match deleted {
            Ok(_) => {}
            Err(e) if k::failure(&e) == ApiFailure::NotFound => {}
            Err(e) => {
                return Err(self.err(
                    format!("deleting InferenceService {}/{endpoint}", self.ns()),
                    &e,
                ))
            }
        }
        let cm = k::resource("v1", "ConfigMap", "configmaps");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), self.ns(), &cm);
        match api
            .delete(&record_name(endpoint), &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if k::failure(&e) == ApiFailure::NotFound => Ok(()),
            Err(e) => Err(self.err(
                format!("deleting ConfigMap {}/{}", self.ns(), record_name(endpoint)),
                &e,
            )),
        }
    }

    fn poll_interval(&self) -> Duration {
        self.poll
    }

    async fn pause(&self, _endpoint: &str) {
        self.followed.changed(self.poll).await;
    }
}
