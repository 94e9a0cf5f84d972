//! The GitOps part of a deploy's plan (`mlcd plan deploy`, `dry-run`): which
//! commits mlcd would make to the manifests repository — per step the file, the
//! values it sets and the traffic — decided by [`super::deploy::commits`] (the
//! same function the deploy runs) from the settings alone: no network.
//! Settings a GitOps deploy cannot honour are refused here, so a dry run shows
//! the same error the deploy would.

use serde::Serialize;

use super::edit::keys::{value_of, HELM_DEFAULT_KEYS};
use super::edit::Change;
use crate::config::gitops::GitopsConfig;
use crate::config::values::{GitopsFormat, ImageRef, KeySource};
use crate::error::UserError;
use crate::modes::ModeEnv;
use crate::plan::Plan;

/// What a GitOps deploy will commit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GitopsPlan {
    /// The manifests repository, `owner/name`.
    pub repo: String,
    /// The branch committed to (or the pull request's base).
    pub branch: String,
    /// The file edited.
    pub file: String,
    /// The format of the edit.
    pub format: GitopsFormat,
    /// A pull request instead of a push.
    pub pull_request: bool,
    /// The Argo CD application followed; none: the rollout is not verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argocd_app: Option<String>,
    /// The Argo Rollouts Rollout followed after the sync.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// The commits, in order.
    pub commits: Vec<CommitPlan>,
}

/// One commit of the rollout.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CommitPlan {
    /// 1-based.
    pub step: usize,
    /// The new version's traffic after this commit, as the manifests say it.
    pub traffic: String,
    /// The values the commit sets (`key: value`).
    pub sets: Vec<String>,
}

/// The GitOps plan of `plan`'s deploy under `g`, or the error the deploy would
/// stop with before any commit.
pub fn describe(plan: &Plan, g: &GitopsConfig, env: &ModeEnv<'_>) -> Result<GitopsPlan, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    refuse_live_guards(d, env)?;
    let editor = super::deploy::editor(plan, g, env)?;
    let commits = super::deploy::commits(plan, g, env)?;
    let image: ImageRef = d.image.parse().map_err(|e: String| {
        UserError::invalid(format!("the image to deploy, `{}`: {e}", d.image))
    })?;
    let mut change = Change::for_image(plan.model_id.as_str(), "(version)", &image);
    let n = commits.len();
    let commits = commits
        .iter()
        .enumerate()
        .map(|(i, traffic)| {
            change.traffic = *traffic;
            let traffic_text = match (traffic, &g.rollout) {
                (_, Some(r)) => format!("as Rollout `{r}`'s own canary steps move it"),
                (Some(p), _) if i + 1 == n => format!("{p}% (promotion)"),
                (Some(p), _) => format!("{p}%"),
                (None, _) if n == 1 => "100% (all at once)".to_string(),
                (None, _) => "100% (promotion: canaryTrafficPercent removed)".to_string(),
            };
            CommitPlan {
                step: i + 1,
                traffic: traffic_text,
                sets: sets(g, &change, d.endpoint.as_str()),
            }
        })
        .collect();
    Ok(GitopsPlan {
        repo: g.repo.clone(),
        branch: g.branch.clone().unwrap_or_else(|| "main".into()),
        file: editor.file(&g.path),
        format: g.format,
        pull_request: g.pull_request == Some(true),
        argocd_app: g.argocd.as_ref().map(|a| a.app.clone()),
        rollout: g.rollout.clone(),
        commits,
    })
}

/// The values one commit sets, as `key: value`.
fn sets(g: &GitopsConfig, change: &Change, endpoint: &str) -> Vec<String> {
    let image_parts = || {
        let mut v = vec![format!("newName: {}", change.repository)];
        if let Some(t) = &change.tag {
            v.push(format!("newTag: {t}"));
        }
        if let Some(dg) = &change.digest {
            v.push(format!("digest: {dg}"));
        }
        v
    };
    match g.format {
        GitopsFormat::Kustomize => {
            let name = g.image.clone().unwrap_or_else(|| change.model.clone());
            image_parts()
                .into_iter()
                .map(|s| format!("images[{name}].{s}"))
                .collect()
        }
        GitopsFormat::Helm | GitopsFormat::Yaml => {
            let keys: Vec<(String, KeySource)> = if g.keys.is_empty() {
                HELM_DEFAULT_KEYS
                    .iter()
                    .map(|(p, s)| (p.to_string(), *s))
                    .collect()
            } else {
                g.keys.iter().map(|(p, s)| (p.clone(), *s)).collect()
            };
            keys.into_iter()
                .map(|(path, source)| match value_of(source, change) {
                    Some(v) => format!("{path}: {}", v.as_text()),
                    None if source == KeySource::Version => {
                        format!("{path}: the version found at deploy time")
                    }
                    None => format!("{path}: (left as it is: no {source} for this image)"),
                })
                .collect()
        }
        GitopsFormat::Flux => {
            let policy = g.image.clone().unwrap_or_else(|| change.model.clone());
            vec![format!(
                "$imagepolicy markers of `{policy}`: image {} (and its :name / :tag / :digest parts)",
                change.image()
            )]
        }
        GitopsFormat::Manifests => {
            let mut v = vec![format!(
                "InferenceService {endpoint}: spec.predictor.containers[0].image: {}",
                change.image()
            )];
            match change.traffic {
                Some(p) => v.push(format!(
                    "InferenceService {endpoint}: spec.predictor.canaryTrafficPercent: {p}"
                )),
                None => v.push(format!(
                    "InferenceService {endpoint}: no spec.predictor.canaryTrafficPercent"
                )),
            }
            v
        }
    }
}

/// `deploy.rollback.max-error-rate` / `max-p95-latency` judge a version on its
/// share of live traffic, read from the serving backend per version. Through
/// GitOps mlcd writes files and reads Argo CD's health and the cluster's
/// objects: no per-revision request metrics come back that way, so the
/// guards would silently never fire. Refused, naming the key and its line.
fn refuse_live_guards(d: &crate::plan::DeployPlan, env: &ModeEnv<'_>) -> Result<(), UserError> {
    for (set, key) in [
        (d.rollback_max_error_rate.is_some(), "max-error-rate"),
        (d.rollback_max_p95_latency.is_some(), "max-p95-latency"),
    ] {
        if !set {
            continue;
        }
        let e = UserError::invalid(format!(
            "`deploy.rollback.{key}` is set together with `deploy.gitops`: the guard judges the new version on its live traffic, and through GitOps mlcd sees only Argo CD's health and the cluster's objects — no per-revision error rate or latency — so it would never fire"
        ))
        .hint("remove `deploy.rollback.max-error-rate` / `max-p95-latency` (each GitOps step is gated by Argo CD's health, the cluster's state and the smoke tests), or put the guard in the manifests (an Argo Rollouts AnalysisTemplate on your metrics provider)");
        return Err(
            match env
                .config
                .and_then(|c| c.locate(&["deploy", "rollback", key]))
            {
                Some(l) => e.at(l),
                None => e,
            },
        );
    }
    Ok(())
}
