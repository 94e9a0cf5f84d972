//! The `deploy.gitops` section: a deploy is a commit to a manifests repository
//! (which file, in which format, pushed or proposed), followed through Argo CD.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::values::{DurationSpec, GitopsFormat, KeySource};

/// Deploy through GitOps: write the new version into a manifests repository and
/// follow the commit to a healthy rollout.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GitopsConfig {
    /// The manifests repository, `owner/name` (may be another repository than
    /// this one: give it a token with the `gitops-token` input).
    pub repo: String,
    /// The branch Argo CD (or Flux) follows. Default: `main`.
    pub branch: Option<String>,
    /// The file to edit, relative to the repository's root (for `manifests`: the
    /// directory the objects are written into, as `<endpoint>.yaml`).
    pub path: String,
    /// `kustomize` (the `images:` entry), `helm` (a values file), `yaml` (fields by
    /// path), `flux` (setter markers) or `manifests` (`mlcd render deploy`'s objects).
    pub format: GitopsFormat,
    /// For `helm` and `yaml`: key path → the value it receives (`image`,
    /// `repository`, `tag`, `digest`, `version`, `storage-uri`, `traffic`). Helm's
    /// default: `image.repository: repository`, `image.tag: tag`,
    /// `image.digest: digest`. Paths are dotted with `[n]` for list items.
    #[serde(default)]
    pub keys: BTreeMap<String, KeySource>,
    /// For `kustomize`: the `images[].name` to edit (default: the entry named
    /// after the model or its repository). For `flux`: the image policy
    /// `namespace:name` whose markers are set (default: any policy named after
    /// the model).
    pub image: Option<String>,
    /// Open (or update) a pull request from a branch per environment and model
    /// instead of pushing to `branch`. Default: false.
    pub pull_request: Option<bool>,
    /// The Argo CD application to wait on after the commit; without it mlcd
    /// reports the commit and says it did not verify the rollout.
    pub argocd: Option<ArgocdConfig>,
    /// The Argo Rollouts `Rollout` (in `kubernetes.namespace`) the manifests
    /// deploy: after Argo CD syncs the commit, mlcd follows the Rollout's own
    /// status (its canary steps, pauses, Healthy or Degraded) on the cluster.
    /// The Rollout's `spec.strategy.canary.steps` decide the traffic, so
    /// `deploy.steps` must not be set with it.
    pub rollout: Option<String>,
}

/// The Argo CD application that deploys the manifests repository.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ArgocdConfig {
    /// The Argo CD API server, like `https://argocd.acme.dev`.
    pub server: String,
    /// The application's name.
    pub app: String,
    /// The environment variable holding an Argo CD API token (masked). Default:
    /// `ARGOCD_TOKEN`.
    pub token_env: Option<String>,
    /// How long the application must stay Healthy at the commit before the
    /// rollout counts as done. Default: `10s`.
    pub cool_down: Option<DurationSpec>,
}

impl ArgocdConfig {
    /// The application's page in Argo CD's web UI (a deployment's log URL).
    pub fn app_url(&self) -> String {
        format!(
            "{}/applications/{}",
            self.server.trim_end_matches('/'),
            self.app
        )
    }
}
