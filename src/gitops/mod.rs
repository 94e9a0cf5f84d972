//! GitOps deploys: a deploy is a commit to a manifests repository. Edit the file
//! keeping its comments ([`edit`]), commit it through GitHub's API, then follow
//! Argo CD until the commit is synced and healthy (and an Argo Rollouts Rollout
//! through its own steps, [`argo_rollout`]).

pub mod argo_rollout;
pub mod argocd;
pub mod cluster;
pub mod commit;
pub mod deploy;
pub mod edit;
pub mod follow;
pub mod github;
pub mod github_pr;
pub mod plan;
pub mod pull;
pub mod rollout;
pub mod rollout_deploy;
pub mod steps;
