//! Which commits a GitOps rollout makes: the strategy as the manifests can
//! express it. Only KServe InferenceServices carry a traffic split in their
//! spec (`spec.predictor.canaryTrafficPercent`), so canary, linear and
//! blue-green are one commit per traffic step there (format `manifests`, or
//! `yaml` with a key receiving `traffic`); a Deployment, Helm values, a
//! kustomization's image or Flux markers name one image for every replica, so
//! a commit replaces the version everywhere: `all-at-once` only. Decided from
//! the settings alone, before anything is read or written.

use crate::config::values::{GitopsFormat, Strategy};

/// The traffic each commit gives the new version, in order: `Some(p)` writes
/// `canaryTrafficPercent: p`; `None` writes the version with no percentage
/// (all of the traffic once ready). The last entry is the promotion.
pub type Commits = Vec<Option<u8>>;

/// How the manifests take the traffic percentage, when they can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrafficField {
    /// mlcd writes the whole InferenceService (`manifests`): promotion removes
    /// the percentage, as KServe documents.
    Rendered,
    /// A key of a hand-kept file (`yaml`) receives `traffic`: promotion sets it
    /// to 100 — the key stays in the file, so the next deploy finds it again.
    Key,
}

/// Whether (and how) `format` with a `traffic` key can express traffic steps.
pub fn traffic_field(format: GitopsFormat, has_traffic_key: bool) -> Option<TrafficField> {
    match format {
        GitopsFormat::Manifests => Some(TrafficField::Rendered),
        GitopsFormat::Yaml if has_traffic_key => Some(TrafficField::Key),
        _ => None,
    }
}

/// The commits of `strategy` with `steps` (rising percentages) in `format`;
/// an error says why the manifests cannot do it and what to do instead.
pub fn commits(
    strategy: Strategy,
    steps: &[u8],
    format: GitopsFormat,
    has_traffic_key: bool,
) -> Result<Commits, (String, String)> {
    if strategy == Strategy::AllAtOnce {
        return Ok(vec![None]);
    }
    if strategy == Strategy::Shadow {
        return Err((
            format!("`deploy.strategy: shadow` cannot be done through `deploy.gitops` (format `{format}`): a shadow needs traffic mirroring, which no manifest mlcd writes (nor KServe) expresses"),
            "run the shadow on `backend: local` or `backend: sagemaker`, then deploy through GitOps with `canary` or `all-at-once`".into(),
        ));
    }
    let Some(field) = traffic_field(format, has_traffic_key) else {
        let why = match format {
            GitopsFormat::Yaml => "no `deploy.gitops.keys` entry receives `traffic`, so the file holds no traffic split".to_string(),
            _ => format!("the `{format}` format sets the image of a Deployment (or a chart's values), and a commit of it replaces the version in every replica at once: the manifests cannot express traffic steps"),
        };
        return Err((
            format!("`deploy.strategy: {strategy}` cannot be done through `deploy.gitops` (format `{format}`): {why}; only `all-at-once` is possible"),
            "set `deploy.strategy: all-at-once` (or the `strategy` input); for traffic steps by commits deploy a KServe InferenceService with `format: manifests`, or `format: yaml` with a key like `spec.predictor.canaryTrafficPercent: traffic`".into(),
        ));
    };
    let promote = match field {
        TrafficField::Rendered => None,
        TrafficField::Key => Some(100),
    };
    let mut out: Commits = match strategy {
        Strategy::BlueGreen => vec![Some(0)],
        _ => steps
            .iter()
            .filter(|&&p| p < 100)
            .map(|&p| Some(p))
            .collect(),
    };
    out.push(promote);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kserve_manifests_take_one_commit_per_step_and_promotion_removes_the_percentage() {
        assert_eq!(
            commits(
                Strategy::Canary,
                &[10, 50, 100],
                GitopsFormat::Manifests,
                false
            )
            .unwrap(),
            vec![Some(10), Some(50), None]
        );
        assert_eq!(
            commits(
                Strategy::Linear,
                &[25, 50, 75],
                GitopsFormat::Manifests,
                false
            )
            .unwrap(),
            vec![Some(25), Some(50), Some(75), None]
        );
        assert_eq!(
            commits(Strategy::BlueGreen, &[100], GitopsFormat::Manifests, false).unwrap(),
            vec![Some(0), None]
        );
        assert_eq!(
            commits(Strategy::Canary, &[10, 100], GitopsFormat::Yaml, true).unwrap(),
            vec![Some(10), Some(100)]
        );
    }

    #[test]
    fn formats_without_a_traffic_split_take_all_at_once_only() {
        for f in [
            GitopsFormat::Kustomize,
            GitopsFormat::Helm,
            GitopsFormat::Flux,
        ] {
            assert_eq!(
                commits(Strategy::AllAtOnce, &[100], f, false).unwrap(),
                vec![None]
            );
            let (msg, hint) = commits(Strategy::Canary, &[10, 100], f, false).unwrap_err();
            assert!(msg.contains("cannot express traffic steps"), "{msg}");
            assert!(hint.contains("all-at-once"), "{hint}");
        }
        let (msg, _) =
            commits(Strategy::Linear, &[50, 100], GitopsFormat::Yaml, false).unwrap_err();
        assert!(msg.contains("receives `traffic`"), "{msg}");
        let (msg, _) =
            commits(Strategy::Shadow, &[10], GitopsFormat::Manifests, false).unwrap_err();
        assert!(msg.contains("mirroring"), "{msg}");
    }
}
