//! A KServe traffic step of a GitOps rollout verified on the cluster itself,
//! after Argo CD reports the step's commit synced and Healthy: Argo CD's health
//! of an InferenceService reads only its Ready condition, which still describes
//! the OLD revision right after a sync (KServe's `observedGeneration` even moves
//! first), so mlcd reads the InferenceService the way the KServe backend does
//! ([`crate::serve::kserve::state`]): a new revision made since the deploy
//! began, ready, routed, with the split the commit asks for — then smoke-tests
//! the new version through its revision's tag URL ([`crate::serve::verify`]).
//! mlcd writes nothing to the cluster here: Argo CD applies the objects.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::values::Protocol;
use crate::error::UserError;
use crate::plan::ServingKubernetesPlan;
use crate::serve::kserve::backend::KserveServing;
use crate::serve::kserve::state::{self, RevisionInfo, Revisions};
use crate::serve::verify::{self, Smoke, SmokeResult};
use crate::serve::EndpointState;

/// The version a step verifies.
pub struct Version {
    /// mlcd's version id.
    pub id: String,
    /// Its image.
    pub image: String,
    /// The protocol it speaks.
    pub protocol: Protocol,
    /// The model's name (v2 paths).
    pub model_name: String,
}

/// Verifies the steps of one rollout of one InferenceService.
pub struct StepCheck {
    backend: KserveServing,
    endpoint: String,
    namespace: String,
    version: Version,
    smokes: Vec<Smoke>,
    /// The latest revision before the rollout's first commit.
    before: Option<String>,
    /// The revision the rollout made, once seen.
    ours: Option<String>,
}

/// What a verified step saw.
pub struct StepReport {
    /// The new version's share of the traffic, as KServe routes it.
    pub weight: u8,
    /// Its revision.
    pub revision: String,
    /// The smoke tests through its tag URL.
    pub smoke: Vec<SmokeResult>,
}

impl StepCheck {
    /// Connects to the cluster and notes the InferenceService's latest revision
    /// before anything is committed.
    pub async fn open(
        kube: &ServingKubernetesPlan,
        env: &BTreeMap<String, String>,
        endpoint: &str,
        version: Version,
        smokes: Vec<Smoke>,
    ) -> Result<StepCheck, UserError> {
        let backend = KserveServing::new(kube, env).await?;
        let before = backend
            .object(endpoint)
            .await?
            .and_then(|o| state::predictor(&o).latest_created);
        Ok(StepCheck {
            backend,
            endpoint: endpoint.to_string(),
            namespace: kube.namespace.clone(),
            version,
            smokes,
            before,
            ours: None,
        })
    }

    /// Whether the InferenceService did not exist before the rollout: its first
    /// version has nothing to share the traffic with.
    pub fn is_new(&self) -> bool {
        self.before.is_none()
    }

    /// Waits (bounded by `timeout`) until the cluster serves the step that asks
    /// `traffic` for the new version, then runs the smoke tests through its tag
    /// URL. `Ok(Err(why))`: the step failed (KServe's reason, a smoke test).
    pub async fn verify(
        &mut self,
        traffic: Option<u8>,
        timeout: Duration,
        poll: Duration,
        mut log: impl FnMut(&str),
    ) -> Result<Result<StepReport, String>, UserError> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        let (revision, weight) = loop {
            match self.look(traffic).await? {
                Look::Ready(r, w) => break (r, w),
                Look::Failed(why) => return Ok(Err(why)),
                Look::Wait(why) => {
                    if why != last {
                        log(&format!(
                            "InferenceService {}/{}: {why}",
                            self.namespace, self.endpoint
                        ));
                        last = why;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Ok(Err(format!(
                    "InferenceService {}/{} did not serve the step within {} (ready-timeout): {last}",
                    self.namespace,
                    self.endpoint,
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(poll).await;
        };
        let smoke = verify::smoke(
            &self.backend,
            &self.endpoint,
            &self.version.id,
            &self.smokes,
        )
        .await;
        if let Some(f) = smoke.iter().find(|r| !r.passed) {
            return Ok(Err(format!(
                "smoke test `{}` failed against {} (revision {revision}): {}",
                f.name,
                self.version.id,
                f.reason.as_deref().unwrap_or("failed")
            )));
        }
        Ok(Ok(StepReport {
            weight,
            revision,
            smoke,
        }))
    }

    async fn look(&mut self, traffic: Option<u8>) -> Result<Look, UserError> {
        let Some(obj) = self.backend.object(&self.endpoint).await? else {
            return Ok(Look::Wait("not on the cluster yet".into()));
        };
        let asked = obj["spec"]["predictor"]["canaryTrafficPercent"]
            .as_u64()
            .map(|p| p.min(100) as u8);
        if asked != traffic {
            return Ok(Look::Wait(format!(
                "the spec asks canaryTrafficPercent {}, the step {}: Argo CD has not applied it yet",
                show(asked),
                show(traffic)
            )));
        }
        let p = state::predictor(&obj);
        let Some(latest) = p.latest_created.clone() else {
            return Ok(Look::Wait("KServe has made no revision yet".into()));
        };
        match &self.ours {
            Some(o) if *o != latest => {
                return Ok(Look::Failed(format!(
                    "the latest revision is now {latest}, not {o} which this rollout made: someone else changed the InferenceService"
                )))
            }
            None if self.before.as_ref() == Some(&latest) => {
                return Ok(Look::Wait(format!(
                    "KServe has not made the new version's revision yet (latest: {latest})"
                )))
            }
            _ => self.ours = Some(latest.clone()),
        }
        let record = self.record(&latest, &obj);
        self.backend.remember(&self.endpoint, record.clone());
        let s = state::endpoint_status(&obj, &record);
        let ours = s.variants.iter().find(|v| v.version == self.version.id);
        Ok(match s.state {
            EndpointState::Failed => Look::Failed(format!(
                "KServe reports the new revision {latest} failed: {}",
                s.failure_reason.unwrap_or_else(|| "Ready is False".into())
            )),
            EndpointState::InService if ours.is_some_and(|v| v.ready) => {
                Look::Ready(latest, ours.map_or(0, |v| v.weight))
            }
            other => Look::Wait(format!(
                "{other:?}: {}",
                state::condition(&obj, "Ready")
                    .map(|(st, why)| format!("Ready {st} {why}"))
                    .unwrap_or_else(|| "no Ready condition yet".into())
            )),
        })
    }

    /// What mlcd knows of the revision: the version it serves.
    fn record(&self, revision: &str, obj: &Value) -> Revisions {
        Revisions::from([(
            revision.to_string(),
            RevisionInfo {
                version: self.version.id.clone(),
                image: self.version.image.clone(),
                protocol: self.version.protocol,
                model_name: self.version.model_name.clone(),
                object: obj.clone(),
                shadow: false,
            },
        )])
    }
}

enum Look {
    Ready(String, u8),
    Failed(String),
    Wait(String),
}

fn show(p: Option<u8>) -> String {
    p.map_or_else(|| "none".into(), |p| p.to_string())
}
