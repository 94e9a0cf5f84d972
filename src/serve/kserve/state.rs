//! An InferenceService read back as the endpoint mlcd's strategies see: its
//! revisions mapped to mlcd's versions (the record mlcd keeps beside it), the
//! traffic split, and readiness judged from the conditions of THIS generation —
//! KServe's `observedGeneration` moves before Knative has made the revision of
//! the new spec, and a latest revision that is not ready is silently not routed
//! to (its traffic target names the latest READY revision instead), so neither
//! `observedGeneration` nor `Ready` alone says the new version serves.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MODE_ANNOTATION, RAW_MODE};
use crate::config::values::Protocol;
use crate::serve::{EndpointState, EndpointStatus, Variant};

/// What mlcd recorded about one revision it caused (or, in Standard mode, one
/// generation): the version, and the object applied for it, so that a rollback
/// can apply the same spec again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct RevisionInfo {
    /// mlcd's version id.
    pub version: String,
    /// The serving image.
    pub image: String,
    /// The protocol the container speaks.
    pub protocol: Protocol,
    /// The model's name (v2 paths).
    pub model_name: String,
    /// The InferenceService as mlcd applied it for this version.
    pub object: Value,
    /// Deployed as a shadow: beside the live revision at 0%, compared with it on
    /// replayed samples (KServe cannot mirror live traffic).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// Revision name (or `generation-N` in Standard mode) → what mlcd recorded.
pub type Revisions = BTreeMap<String, RevisionInfo>;

/// The key a Standard-mode generation is recorded under.
pub fn generation_key(generation: i64) -> String {
    format!("generation-{generation}")
}

/// Whether KServe runs `obj` in Standard (RawDeployment) mode: by its annotation,
/// or by the mode its status reports (the cluster's default applies otherwise).
pub fn is_raw(obj: &Value) -> bool {
    let raw = |v: &Value| matches!(v.as_str(), Some(RAW_MODE) | Some("Standard"));
    raw(&obj["metadata"]["annotations"][MODE_ANNOTATION]) || raw(&obj["status"]["deploymentMode"])
}

/// A condition of the InferenceService: (status, "reason: message").
pub fn condition(obj: &Value, kind: &str) -> Option<(String, String)> {
    let c = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)?;
    let why = match (c["reason"].as_str(), c["message"].as_str()) {
        (Some(r), Some(m)) => format!("{r}: {m}"),
        (Some(r), None) => r.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => String::new(),
    };
    Some((c["status"].as_str().unwrap_or("Unknown").to_string(), why))
}

/// What changes make a new revision: the predictor without its traffic
/// percentage, and the labels and annotations KServe copies onto the revision.
pub fn template(obj: &Value) -> Value {
    let mut p = obj["spec"]["predictor"].clone();
    if let Some(m) = p.as_object_mut() {
        m.remove("canaryTrafficPercent");
    }
    let mut annotations = obj["metadata"]["annotations"].clone();
    if let Some(m) = annotations.as_object_mut() {
        m.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    serde_json::json!({
        "predictor": p,
        "labels": obj["metadata"]["labels"],
        "annotations": annotations,
    })
}

/// One traffic target of the predictor.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The revision it routes to.
    pub revision: String,
    /// Its share.
    pub percent: u8,
    /// Whether it follows the latest revision (tag `latest`).
    pub latest: bool,
    /// Its tag URL, with tag routing on.
    pub url: Option<String>,
}

/// The predictor's status, as KServe reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictor {
    /// `latestCreatedRevision`.
    pub latest_created: Option<String>,
    /// `latestRolledoutRevision`.
    pub rolled_out: Option<String>,
    /// `traffic[]`.
    pub targets: Vec<Target>,
}

/// Reads `status.components.predictor`.
pub fn predictor(obj: &Value) -> Predictor {
    let p = &obj["status"]["components"]["predictor"];
    let s = |k: &str| p[k].as_str().map(str::to_string);
    Predictor {
        latest_created: s("latestCreatedRevision"),
        rolled_out: s("latestRolledoutRevision"),
        targets: p["traffic"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .filter_map(|t| {
                        Some(Target {
                            revision: t["revisionName"].as_str()?.to_string(),
                            percent: t["percent"].as_u64().unwrap_or(0).min(100) as u8,
                            latest: t["latestRevision"].as_bool().unwrap_or(false),
                            url: t["url"].as_str().map(str::to_string),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl Predictor {
    /// Whether the latest created revision really takes the latest traffic
    /// target (Knative routes a not-ready latest revision's share elsewhere).
    pub fn latest_routed(&self) -> bool {
        match (&self.latest_created, self.targets.iter().find(|t| t.latest)) {
            (Some(l), Some(t)) => &t.revision == l,
            _ => false,
        }
    }
}

/// Whether everything KServe reports is about the spec as it is now: the
/// generation observed, and the latest created revision the one mlcd recorded
/// for this very spec (when mlcd recorded it), and the traffic as the spec asks.
fn current(obj: &Value, p: &Predictor, revisions: &Revisions) -> bool {
    let generation = obj["metadata"]["generation"].as_i64();
    if generation.is_none() || obj["status"]["observedGeneration"].as_i64() != generation {
        return false;
    }
    if let Some(info) = p.latest_created.as_ref().and_then(|l| revisions.get(l)) {
        if template(&info.object) != template(obj) {
            return false;
        }
    }
    if p.latest_routed() {
        let want = match (
            obj["spec"]["predictor"]["canaryTrafficPercent"].as_u64(),
            p.rolled_out.as_ref(),
        ) {
            (Some(pct), Some(rolled)) if Some(rolled) != p.latest_created.as_ref() => pct,
            _ => 100,
        };
        let got: u64 = p
            .targets
            .iter()
            .filter(|t| t.latest)
            .map(|t| u64::from(t.percent))
            .sum();
        if got != want {
            return false;
        }
    }
    true
}

/// The version a revision serves: what mlcd recorded, else the revision's name.
pub fn version_of(revisions: &Revisions, revision: &str) -> String {
    revisions
        .get(revision)
        .map_or_else(|| revision.to_string(), |i| i.version.clone())
}

/// Whether mlcd applied `revision` as a shadow (it takes no traffic then: a
/// step that gives it some applies it again without the mark).
fn is_shadow(revisions: &Revisions, revision: &str) -> bool {
    revisions.get(revision).is_some_and(|i| i.shadow)
}

/// The endpoint `obj` is, as mlcd's strategies see it.
pub fn endpoint_status(obj: &Value, revisions: &Revisions) -> EndpointStatus {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let url = obj["status"]["url"].as_str().map(str::to_string);
    let ready = condition(obj, "Ready");
    let ready_true = ready.as_ref().is_some_and(|(s, _)| s == "True");
    let failed = ready
        .as_ref()
        .filter(|(s, _)| s == "False")
        .map(|(_, why)| why.clone());
    if is_raw(obj) {
        return raw_status(obj, revisions, name, url, ready_true, failed);
    }
    let p = predictor(obj);
    let current = current(obj, &p, revisions);
    let mut variants: Vec<Variant> = Vec::new();
    for t in &p.targets {
        let version = version_of(revisions, &t.revision);
        let image = revisions
            .get(&t.revision)
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let is_latest = Some(&t.revision) == p.latest_created.as_ref();
        let ok = !is_latest || (current && ready_true);
        let shadow = is_latest && is_shadow(revisions, &t.revision);
        match variants.iter_mut().find(|v| v.version == version) {
            Some(v) => {
                v.shadow = v.shadow && shadow;
                v.weight = v.weight.saturating_add(t.percent).min(100);
                v.ready = v.ready || ok;
                if t.latest || v.url.is_none() {
                    v.url = t.url.clone().or(v.url.take());
                }
            }
            None => variants.push(Variant {
                version,
                image,
                weight: t.percent,
                shadow,
                ready: ok,
                url: t.url.clone(),
            }),
        }
    }
    if let Some(latest) = p.latest_created.as_ref().filter(|_| !p.latest_routed()) {
        let version = version_of(revisions, latest);
        if !variants.iter().any(|v| v.version == version) {
            variants.push(Variant {
                version,
                image: revisions
                    .get(latest)
                    .map(|i| i.image.clone())
                    .unwrap_or_default(),
                weight: 0,
                shadow: is_shadow(revisions, latest),
                ready: false,
                url: None,
            });
        }
    }
    let state = if obj["metadata"]["deletionTimestamp"].is_string() {
        EndpointState::Deleting
    } else if !current {
        EndpointState::Updating
    } else if failed.is_some() {
        EndpointState::Failed
    } else if ready_true && p.latest_routed() {
        EndpointState::InService
    } else if p.targets.is_empty() {
        EndpointState::Creating
    } else {
        EndpointState::Updating
    };
    EndpointStatus {
        name,
        state,
        failure_reason: if state == EndpointState::Failed {
            failed
        } else {
            None
        },
        url,
        variants,
    }
}

/// Standard mode: one Deployment, rolled over; the version is the one mlcd
/// recorded for the generation KServe last observed.
fn raw_status(
    obj: &Value,
    revisions: &Revisions,
    name: String,
    url: Option<String>,
    ready_true: bool,
    failed: Option<String>,
) -> EndpointStatus {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    let observed = obj["status"]["observedGeneration"].as_i64();
    let current = observed == Some(generation);
    let info = revisions.get(&generation_key(generation));
    let state = if obj["metadata"]["deletionTimestamp"].is_string() {
        EndpointState::Deleting
    } else if !current {
        EndpointState::Updating
    } else if failed.is_some() {
        EndpointState::Failed
    } else if ready_true {
        EndpointState::InService
    } else {
        EndpointState::Updating
    };
    let variants = vec![Variant {
        version: info.map_or_else(|| generation_key(generation), |i| i.version.clone()),
        image: info.map(|i| i.image.clone()).unwrap_or_default(),
        weight: 100,
        shadow: false,
        ready: current && ready_true,
        url: url.clone(),
    }];
    EndpointStatus {
        name,
        state,
        failure_reason: if state == EndpointState::Failed {
            failed
        } else {
            None
        },
        url,
        variants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(version: &str, image: &str) -> RevisionInfo {
        RevisionInfo {
            version: version.into(),
            image: image.into(),
            protocol: Protocol::Sagemaker,
            model_name: "churn".into(),
            object: isvc(image, None, 1, json!({})),
            shadow: false,
        }
    }

    fn isvc(image: &str, canary: Option<u8>, generation: i64, status: Value) -> Value {
        let mut p = json!({"containers": [{"name": "kserve-container", "image": image}]});
        if let Some(c) = canary {
            p["canaryTrafficPercent"] = json!(c);
        }
        json!({
            "metadata": {"name": "churn", "generation": generation, "labels": {}, "annotations": {}},
            "spec": {"predictor": p},
            "status": status,
        })
    }

    fn ready(status: &str, observed: i64, latest: &str, traffic: Value) -> Value {
        json!({
            "observedGeneration": observed,
            "url": "http://churn.ml",
            "conditions": [{"type": "Ready", "status": status, "reason": "RevisionFailed", "message": "boom"}],
            "components": {"predictor": {
                "latestCreatedRevision": latest,
                "latestRolledoutRevision": "churn-predictor-00001",
                "traffic": traffic,
            }},
        })
    }

    fn revisions() -> Revisions {
        Revisions::from([
            ("churn-predictor-00001".to_string(), info("v1", "img:1")),
            ("churn-predictor-00002".to_string(), info("v2", "img:2")),
        ])
    }

    #[test]
    fn a_canary_at_ten_percent_is_two_ready_versions() {
        let traffic = json!([
            {"revisionName": "churn-predictor-00002", "percent": 10, "latestRevision": true, "tag": "latest", "url": "http://latest"},
            {"revisionName": "churn-predictor-00001", "percent": 90, "latestRevision": false, "tag": "prev", "url": "http://prev"},
        ]);
        let obj = isvc(
            "img:2",
            Some(10),
            2,
            ready("True", 2, "churn-predictor-00002", traffic),
        );
        let s = endpoint_status(&obj, &revisions());
        assert_eq!(s.state, EndpointState::InService);
        let w: Vec<(&str, u8, bool)> = s
            .variants
            .iter()
            .map(|v| (v.version.as_str(), v.weight, v.ready))
            .collect();
        assert_eq!(w, [("v2", 10, true), ("v1", 90, true)]);
        assert_eq!(s.variants[0].url.as_deref(), Some("http://latest"));
    }

    #[test]
    fn a_latest_revision_knative_does_not_route_to_is_not_ready() {
        // The latest target resolves to the old revision: v2 takes nothing.
        let traffic = json!([
            {"revisionName": "churn-predictor-00001", "percent": 0, "latestRevision": true},
            {"revisionName": "churn-predictor-00001", "percent": 100, "latestRevision": false},
        ]);
        let obj = isvc(
            "img:2",
            Some(0),
            2,
            ready("Unknown", 2, "churn-predictor-00002", traffic.clone()),
        );
        let s = endpoint_status(&obj, &revisions());
        assert_eq!(s.state, EndpointState::Updating);
        let v2 = s.variants.iter().find(|v| v.version == "v2").unwrap();
        assert!(!v2.ready && v2.weight == 0, "{s:?}");
        // Failed: the reason is surfaced, v1 still takes everything.
        let obj = isvc(
            "img:2",
            Some(0),
            2,
            ready("False", 2, "churn-predictor-00002", traffic),
        );
        let s = endpoint_status(&obj, &revisions());
        assert_eq!(s.state, EndpointState::Failed);
        assert_eq!(s.failure_reason.as_deref(), Some("RevisionFailed: boom"));
        assert_eq!(s.variants[0].version, "v1");
        assert_eq!(s.variants[0].weight, 100);
    }

    #[test]
    fn an_observed_generation_before_the_new_revision_is_not_trusted() {
        // observedGeneration is 2 already, but the latest revision is still v1's
        // (recorded for another spec) and Ready describes it.
        let traffic = json!([{"revisionName": "churn-predictor-00001", "percent": 100, "latestRevision": true}]);
        let obj = isvc(
            "img:2",
            Some(0),
            2,
            ready("True", 2, "churn-predictor-00001", traffic),
        );
        let s = endpoint_status(&obj, &revisions());
        assert_eq!(s.state, EndpointState::Updating);
        // A spec not yet observed is not current either.
        let traffic = json!([{"revisionName": "churn-predictor-00002", "percent": 100, "latestRevision": true}]);
        let obj = isvc(
            "img:2",
            None,
            3,
            ready("True", 2, "churn-predictor-00002", traffic),
        );
        assert_eq!(
            endpoint_status(&obj, &revisions()).state,
            EndpointState::Updating
        );
    }

    #[test]
    fn standard_mode_is_one_version_per_generation() {
        let mut obj = isvc(
            "img:2",
            None,
            2,
            json!({"observedGeneration": 2, "deploymentMode": "RawDeployment",
                   "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert!(is_raw(&obj));
        let r = Revisions::from([(generation_key(2), info("v2", "img:2"))]);
        let s = endpoint_status(&obj, &r);
        assert_eq!(s.state, EndpointState::InService);
        assert_eq!(s.variants.len(), 1);
        assert_eq!(s.variants[0].version, "v2");
        obj["status"]["observedGeneration"] = json!(1);
        assert_eq!(endpoint_status(&obj, &r).state, EndpointState::Updating);
    }
}
