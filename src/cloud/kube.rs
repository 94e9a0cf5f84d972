//! Cluster access for the Kubernetes backends (kube-rs): the kubeconfig from
//! `KUBECONFIG` (a `:`-separated list, as kubectl reads it) or `~/.kube/config`,
//! the `kubernetes.context` in it, else the in-cluster service account; server-side
//! apply under mlcd's own field manager with strict field validation; and the API
//! server's errors turned into messages a person can act on. Tokens and client keys
//! in the kubeconfig are never printed: only which file and context were chosen.
//! For EKS (`kubernetes.eks-cluster`, or a context whose user runs `aws eks
//! get-token`), the kubeconfig gives the server and its CA and mlcd makes the
//! bearer tokens itself (`cloud::eks`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::cloud::eks::{self, EksCluster};
use crate::config::suggest;
use crate::error::UserError;

/// The field manager mlcd applies under (`kubectl get … --show-managed-fields`).
pub const FIELD_MANAGER: &str = "mlcd";

/// Where the cluster's credentials came from, for the log (never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig file and the context used in it.
    Kubeconfig {
        /// The file(s) read.
        files: String,
        /// The context.
        context: String,
    },
    /// The pod's service account (`KUBERNETES_SERVICE_HOST`).
    InCluster,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Kubeconfig { files, context } => {
                write!(f, "context `{context}` of the kubeconfig {files}")
            }
            Source::InCluster => f.write_str("the in-cluster service account"),
        }
    }
}

/// The kubeconfig files to read: `KUBECONFIG` (a list), else `$HOME/.kube/config`
/// when it exists.
fn kubeconfig_files(env: &BTreeMap<String, String>) -> (Vec<PathBuf>, bool) {
    if let Some(list) = env.get("KUBECONFIG").filter(|v| !v.trim().is_empty()) {
        let files = list
            .split(':')
            .filter(|p| !p.trim().is_empty())
            .map(PathBuf::from)
            .collect();
        return (files, true);
    }
    let home = env
        .get("HOME")
        .map(|h| PathBuf::from(h).join(".kube").join("config"));
    (home.into_iter().filter(|p| p.is_file()).collect(), false)
}

/// A client for the cluster, the way kubectl would find it: the kubeconfig's
/// `context` (or its current one), else the in-cluster service account. With
/// `eks` (or a context whose user is an `aws eks get-token` exec entry) the
/// requests carry EKS tokens mlcd makes from the run's AWS credentials instead of
/// the kubeconfig user's. Checks the configuration only; no request is made.
pub async fn connect(
    context: Option<&str>,
    eks: Option<&EksCluster>,
    env: &BTreeMap<String, String>,
) -> Result<(Client, Source), UserError> {
    let (files, from_env) = kubeconfig_files(env);
    let missing: Vec<&PathBuf> = files.iter().filter(|f| !f.is_file()).collect();
    if from_env && !missing.is_empty() {
        return Err(UserError::invalid(format!(
            "KUBECONFIG names {}, which does not exist",
            missing
                .iter()
                .map(|p| format!("`{}`", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .hint("point KUBECONFIG at the cluster's kubeconfig file (in Actions, write it from a secret in an earlier step)"));
    }
    if files.is_empty() {
        if let Some(cluster) = eks {
            return Err(UserError::invalid(format!(
                "`kubernetes.eks-cluster` is `{}`: mlcd makes its tokens, but the cluster's API server address and CA come from a kubeconfig, and there is none (KUBECONFIG is not set, no ~/.kube/config)",
                cluster.name
            ))
            .hint(format!("in a step before mlcd run `aws eks update-kubeconfig --name {} --kubeconfig $RUNNER_TEMP/kubeconfig` and export KUBECONFIG=$RUNNER_TEMP/kubeconfig (mlcd replaces its `aws eks get-token` entry, so the aws binary is not needed inside the action)", cluster.name)));
        }
        if env.contains_key("KUBERNETES_SERVICE_HOST") && context.is_none() {
            let config = Config::incluster().map_err(|e| {
                UserError::invalid(format!("cannot use the in-cluster service account: {e}"))
                    .hint("mount the service account token, or set KUBECONFIG")
            })?;
            let client = Client::try_from(config)
                .map_err(|e| UserError::failed(format!("cannot make a Kubernetes client: {e}")))?;
            return Ok((client, Source::InCluster));
        }
        return Err(UserError::invalid(
            "no Kubernetes cluster credentials: KUBECONFIG is not set, there is no ~/.kube/config, and mlcd is not running in a pod",
        )
        .hint("set KUBECONFIG to a kubeconfig file (in Actions: write the secret to a file in an earlier step and export KUBECONFIG), or run in the cluster with a service account"));
    }
    let shown = files
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let mut merged: Option<Kubeconfig> = None;
    for f in &files {
        let k = Kubeconfig::read_from(f).map_err(|e| {
            UserError::invalid(format!(
                "cannot read the kubeconfig `{}`: {}",
                f.display(),
                redact_error(&e.to_string())
            ))
            .hint("check that the file is a kubeconfig (`kubectl config view --kubeconfig FILE`)")
        })?;
        merged = Some(match merged {
            None => k,
            Some(m) => m.merge(k).map_err(|e| {
                UserError::invalid(format!("cannot merge the kubeconfigs {shown}: {e}"))
            })?,
        });
    }
    let kubeconfig = merged.expect("at least one file");
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let chosen = match context {
        Some(c) => {
            if !names.contains(&c) {
                return Err(UserError::invalid(format!(
                    "`kubernetes.context`: {} in the kubeconfig {shown}",
                    suggest::unknown_word("context", c, &names)
                ))
                .hint(format!(
                    "the contexts there are: {}; list them with `kubectl config get-contexts`",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                )));
            }
            c.to_string()
        }
        None => match &kubeconfig.current_context {
            Some(c) if !c.is_empty() => c.clone(),
            _ => {
                return Err(UserError::invalid(format!(
                "the kubeconfig {shown} has no current context and `kubernetes.context` is not set"
            ))
                .hint(format!(
                    "set `kubernetes.context` to one of: {}",
                    names.join(", ")
                )))
            }
        },
    };
    let eks = match eks {
        Some(c) => Some(c.clone()),
        None => exec_of(&kubeconfig, &chosen).and_then(eks::from_exec),
    };
    let options = KubeConfigOptions {
        context: Some(chosen.clone()),
        ..Default::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| {
            UserError::invalid(format!(
                "the kubeconfig {shown}, context `{chosen}`: {}",
                redact_error(&e.to_string())
            ))
            .hint("check the context's cluster and user entries (`kubectl config view --minify`)")
        })?;
    let client = match eks {
        None => Client::try_from(config)
            .map_err(|e| UserError::failed(format!("cannot make a Kubernetes client: {e}")))?,
        Some(cluster) => {
            let source = Arc::new(eks::token_source(&cluster, env).await?);
            log::info!(
                "kubernetes: bearer tokens for the EKS cluster `{}` ({}) made by mlcd, as `aws eks get-token` makes them; the kubeconfig user's own credentials are not used",
                cluster.name,
                cluster.region.as_deref().unwrap_or("region from AWS_REGION")
            );
            config.auth_info = Default::default();
            ClientBuilder::try_from(config)
                .map_err(|e| UserError::failed(format!("cannot make a Kubernetes client: {e}")))?
                .with_layer(&eks::auth_layer::<kube::client::Body>(source))
                .build()
        }
    };
    Ok((
        client,
        Source::Kubeconfig {
            files: shown,
            context: chosen,
        },
    ))
}

/// The exec entry of the user the context `context` names, if it has one.
fn exec_of<'a>(kubeconfig: &'a Kubeconfig, context: &str) -> Option<&'a kube::config::ExecConfig> {
    let user = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context)?
        .context
        .as_ref()?
        .user
        .clone()?;
    kubeconfig
        .auth_infos
        .iter()
        .find(|a| a.name == user)?
        .auth_info
        .as_ref()?
        .exec
        .as_ref()
}

/// Keeps a kubeconfig error message from echoing a token.
fn redact_error(msg: &str) -> String {
    msg.split_whitespace()
        .map(|w| {
            if w.len() > 40
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
            {
                "[redacted]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The API resource of `kind` in `api_version` (`group/version` or `v1`).
pub fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// The kind of failure a caller branches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiFailure {
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 401/403.
    Forbidden,
    /// 400/422: the object was refused.
    Invalid,
    /// Anything else (network, 5xx).
    Other,
}

/// What kind of failure `e` is.
pub fn failure(e: &kube::Error) -> ApiFailure {
    match e {
        kube::Error::Api(r) => match r.code {
            404 => ApiFailure::NotFound,
            409 => ApiFailure::Conflict,
            401 | 403 => ApiFailure::Forbidden,
            400 | 422 => ApiFailure::Invalid,
            _ => ApiFailure::Other,
        },
        _ => ApiFailure::Other,
    }
}

/// An API error as a message naming what was being done and a hint.
pub fn error(doing: &str, namespace: &str, e: &kube::Error) -> UserError {
    match e {
        kube::Error::Api(r) => {
            let msg = format!(
                "{doing}: the API server answered {} {}: {}",
                r.code, r.reason, r.message
            );
            match r.code {
                401 => UserError::invalid(msg).hint("the kubeconfig's credentials were refused: refresh the token or the client certificate"),
                403 => UserError::invalid(msg).hint(format!(
                    "the identity mlcd uses may not do this in namespace `{namespace}`: grant it a Role (see README: Kubernetes permissions) or set `kubernetes.namespace`"
                )),
                400 | 422 => UserError::failed(msg).hint("the cluster refused the object: compare its CRD version with the one mlcd targets (README: Kubernetes versions), and see `mlcd render train`"),
                _ => UserError::failed(msg),
            }
        }
        other => UserError::failed(format!(
            "{doing}: cannot reach the Kubernetes API server: {}",
            redact_error(&other.to_string())
        ))
        .hint(
            "check the kubeconfig's server address and that the cluster is up (`kubectl version`)",
        ),
    }
}

/// Server-side apply of `obj` (a full object with apiVersion, kind and
/// metadata.name) under [`FIELD_MANAGER`], strictly validated, forcing
/// ownership of the fields mlcd sets. Returns the object as stored.
pub async fn apply(
    client: &Client,
    namespace: &str,
    ar: &ApiResource,
    obj: &Value,
) -> Result<DynamicObject, kube::Error> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    let params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    api.patch(name, &params, &Patch::Apply(obj)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tokens_are_redacted_from_errors() {
        let m = redact_error("bad token eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMzQ1Njc4OTAifQ.abc here");
        assert!(!m.contains("eyJ"), "{m}");
        assert!(m.contains("bad token"));
    }

    #[test]
    fn kubeconfig_comes_from_the_variable_or_home() {
        let env = BTreeMap::from([("KUBECONFIG".to_string(), "/a:/b".to_string())]);
        assert_eq!(
            kubeconfig_files(&env).0,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        let env = BTreeMap::from([("HOME".to_string(), "/nonexistent".to_string())]);
        assert!(kubeconfig_files(&env).0.is_empty());
    }
}
