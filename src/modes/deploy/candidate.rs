//! What a deploy serves: the candidate version (registered for this commit,
//! or a named image), its spec for the backend and the identity it records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::UserError;
use crate::identity::{Identity, Purpose, Recorded};
use crate::plan::{DeployPlan, Plan};
use crate::registry::ModelRegistry;
use crate::report::Reporter;
use crate::serve::{ServingBackend, VersionSpec};

/// What is deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Candidate {
    /// The version's id behind the endpoint.
    pub version: String,
    /// The serving image.
    pub image: String,
    /// The model artifact, when the registry holds one.
    pub model_data: Option<String>,
    /// The commit it was trained from.
    pub commit: Option<String>,
    /// The registry's version number, when it came from the registry.
    pub registered: Option<String>,
}

/// A version id from an image reference: the digest's first 12 hex digits, or
/// the tag, made safe for container and SageMaker names.
pub(super) fn version_from_image(image: &str) -> String {
    let raw = match image.split_once("@sha256:") {
        Some((_, d)) => d.chars().take(12).collect::<String>(),
        None => image.rsplit(':').next().unwrap_or(image).to_string(),
    };
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    format!("i-{}", safe.trim_matches('-'))
}

/// The version to serve: the newest registered for this commit, else the named image.
pub(crate) async fn choose(
    plan: &Plan,
    d: &DeployPlan,
    registry: &dyn ModelRegistry,
    reporter: &mut Reporter,
) -> Result<Candidate, UserError> {
    let found = match &plan.source.commit {
        Some(c) => registry.find_by_commit(&d.registry.model_name, c).await?,
        None => None,
    };
    match found {
        Some(v) => {
            reporter.info(&format!(
                "deploying {} version {} ({}), trained for this commit",
                v.model_name, v.version, v.uri
            ));
            Ok(Candidate {
                version: format!("v{}", v.version),
                image: if d.image_given {
                    d.image.clone()
                } else {
                    v.image.clone().unwrap_or_else(|| d.image.clone())
                },
                model_data: v.artifact.clone(),
                commit: v.commit.clone(),
                registered: Some(v.version.clone()),
            })
        }
        None if d.image_given => {
            reporter.warn(format!(
                "no version of {} in the {} registry was trained for this commit: deploying the image `{}` alone (it must carry its model)",
                d.registry.model_name,
                registry.name(),
                d.image
            ));
            Ok(Candidate {
                version: version_from_image(&d.image),
                image: d.image.clone(),
                model_data: None,
                commit: plan.source.commit.clone(),
                registered: None,
            })
        }
        None => Err(UserError::failed(format!(
            "no version of {} in the {} registry was trained for commit {}: nothing to deploy",
            d.registry.model_name,
            registry.name(),
            plan.source.commit.as_deref().unwrap_or("(none: not a git checkout)")
        ))
        .hint("train it first (`mode: train` for this commit), or give `image` for an image that carries its model")),
    }
}

/// The identity this run records on an endpoint it creates and on each version.
pub(super) fn identity(plan: &Plan, d: &DeployPlan, c: Option<&Candidate>) -> Identity {
    use crate::identity::tag_safe;
    Identity {
        source: d.source.clone(),
        model: tag_safe(plan.model_id.as_str()),
        commit: c
            .and_then(|c| c.commit.as_deref())
            .or(plan.source.commit.as_deref())
            .map(tag_safe),
        image: tag_safe(c.map_or(d.image.as_str(), |c| c.image.as_str())),
        config: tag_safe(plan.config.as_ref().map_or("none", |c| c.digest.as_str())),
        hyperparameters: "none".into(),
    }
}

/// Refuses to touch an endpoint another repository (or workspace) created. An
/// endpoint that records no owner (made before mlcd recorded one, or by hand) is
/// changed with a warning: refusing would strand every endpoint made by an
/// earlier release, and its name was given on purpose in `deploy.endpoint`.
pub(super) async fn check_owner(
    backend: &dyn ServingBackend,
    plan: &Plan,
    d: &DeployPlan,
    reporter: &mut Reporter,
) -> Result<(), UserError> {
    let recorded = backend.owner(&d.endpoint).await?;
    if recorded == Recorded::Unknown {
        reporter.warn(format!(
            "endpoint `{}` records no owner (it was made before mlcd recorded one, or by hand): mlcd changes it as `deploy.endpoint` asks; versions deployed now record {} as its owner",
            d.endpoint, d.source
        ));
        return Ok(());
    }
    identity(plan, d, None).check("endpoint", &d.endpoint, &recorded, Purpose::Endpoint)
}

pub(super) fn spec(plan: &Plan, d: &DeployPlan, c: &Candidate) -> VersionSpec {
    let identity = identity(plan, d, Some(c));
    VersionSpec {
        endpoint: d.endpoint.clone(),
        version: c.version.clone(),
        image: c.image.clone(),
        model_data: c.model_data.clone(),
        model_name: d.registry.model_name.clone(),
        instance: d.instance.clone(),
        replicas: d.replicas,
        env: d.env.clone(),
        workers: d.workers,
        batching: d.batching_limits,
        request_timeout: d.request_timeout.0,
        protocol: d.protocol,
        tags: BTreeMap::new(),
        identity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_from_images_are_safe_names() {
        assert_eq!(
            version_from_image("r.io/a/churn@sha256:0123456789abcdef0123"),
            "i-0123456789ab"
        );
        assert_eq!(
            version_from_image("127.0.0.1:5000/a/churn:V1.2_x"),
            "i-v1-2-x"
        );
    }
}
