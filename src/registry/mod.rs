//! Model registries: the [`ModelRegistry`] trait and the version types shared by
//! `local` (a directory), `mlflow` (MLflow's REST API) and `sagemaker` (model
//! package groups). A passing model is registered with its lineage; a champion
//! is looked up by alias, the version to deploy by the commit it was trained from.

pub mod local;
pub mod mlflow;
pub mod sagemaker;
pub mod vertex;

use std::collections::BTreeMap;
use std::path::Path;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cloud::aws;
use crate::config::values::RegistryType;
use crate::error::UserError;
use crate::plan::{RegistryPlan, SagemakerPlan};

/// The local registry's directory when the plan names none, relative to the workspace.
pub const DEFAULT_LOCAL_DIR: &str = ".mlcd/registry";

/// A trained model to record, with its lineage.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct NewVersion {
    /// The registered model's name.
    pub model_name: String,
    /// The training job that produced it (a re-run finds the version by it).
    pub job_id: String,
    /// The backend that trained it (`local`, `sagemaker`).
    pub backend: String,
    /// The commit it was trained from.
    pub commit: Option<String>,
    /// The training image (`repo@digest` when known).
    pub image: String,
    /// Where the model artifact (model.tar.gz) is.
    pub artifact: Option<String>,
    /// The hyperparameters it was trained with.
    pub hyperparameters: BTreeMap<String, String>,
    /// Its final metrics.
    pub metrics: BTreeMap<String, f64>,
    /// Its input channels: name → path or URI.
    pub channels: BTreeMap<String, String>,
    /// The workflow run that trained it.
    pub run_url: Option<String>,
    /// An alias the new version gets (like `staging`).
    pub alias: Option<String>,
}

/// A version the registry holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Version {
    /// The registered model's name.
    pub model_name: String,
    /// The version (`1`, `2`, …; SageMaker: the package version).
    pub version: String,
    /// How to refer to it outside mlcd (`models:/churn/3`, a package ARN, a path).
    pub uri: String,
    /// The job that produced it.
    pub job_id: Option<String>,
    /// Its metrics.
    pub metrics: BTreeMap<String, f64>,
    /// The image it serves with.
    pub image: Option<String>,
    /// Where its artifact is.
    pub artifact: Option<String>,
    /// The commit it was trained from, when its lineage records one.
    #[serde(default)]
    pub commit: Option<String>,
    /// Its aliases.
    pub aliases: Vec<String>,
}

/// One model registry.
#[async_trait]
pub trait ModelRegistry: Send + Sync {
    /// The registry's kind for messages (`local`, `mlflow`, `sagemaker`).
    fn name(&self) -> &'static str;

    /// Records a new version (and its alias, when given).
    async fn register(&self, version: &NewVersion) -> Result<Version, UserError>;

    /// The version a job registered before, if any (so a re-run registers nothing twice).
    async fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError>;

    /// The newest version (highest version number) trained from `commit`, if
    /// any: what a deploy without an explicit version ships. `commit` is a full
    /// commit SHA, compared exactly.
    async fn find_by_commit(&self, model: &str, commit: &str)
        -> Result<Option<Version>, UserError>;

    /// The version an alias points to (the champion is `production`), if any.
    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError>;

    /// Points `alias` at `version` (moving it off any other version).
    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError>;

    /// The newest `n` versions, oldest first: what the report comment charts. A
    /// registry that cannot list its versions cheaply answers none (and the
    /// comment leaves that chart out).
    async fn recent(&self, model: &str, n: usize) -> Result<Vec<Version>, UserError> {
        let _ = (model, n);
        Ok(Vec::new())
    }
}

/// Opens the registry a plan names. Everything that can be checked without a call
/// is checked here: an MLflow registry needs a tracking URI, a SageMaker one a
/// region and AWS credentials, and the model name must suit the registry.
///
/// `workspace` anchors a relative local directory; `sagemaker` gives the region
/// (else `AWS_REGION` / `AWS_DEFAULT_REGION`); `env` holds the variables the
/// registries read: `MLFLOW_TRACKING_TOKEN`, `MLFLOW_TRACKING_USERNAME`,
/// `MLFLOW_TRACKING_PASSWORD`, the `AWS_*` credentials and endpoint overrides.
pub async fn open(
    plan: &RegistryPlan,
    workspace: &Path,
    sagemaker: Option<&SagemakerPlan>,
    env: &BTreeMap<String, String>,
) -> Result<Box<dyn ModelRegistry>, UserError> {
    match plan.kind {
        RegistryType::Local => {
            let dir = workspace.join(plan.location.as_deref().unwrap_or(DEFAULT_LOCAL_DIR));
            let reg = local::LocalRegistry::new(dir);
            local::check_model_name(&plan.model_name)?;
            Ok(Box::new(reg))
        }
        RegistryType::Mlflow => {
            let uri = plan
                .location
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    UserError::invalid(format!(
                        "the MLflow registry for model `{}` has no tracking URI",
                        plan.model_name
                    ))
                    .hint("set `registry.tracking-uri` in mlcd.yml or the MLFLOW_TRACKING_URI variable (like http://mlflow.internal:5000)")
                })?;
            check_model_name("mlflow", &plan.model_name)?;
            Ok(Box::new(mlflow::MlflowRegistry::new(uri, env)?))
        }
        RegistryType::Sagemaker => {
            let region = sagemaker
                .map(|s| s.region.clone())
                .or_else(|| aws::region_from_env(env))
                .ok_or_else(|| {
                    UserError::invalid(format!(
                        "the SageMaker registry for model `{}` needs an AWS region",
                        plan.model_name
                    ))
                    .hint("set `sagemaker.region` in mlcd.yml or AWS_REGION (aws-actions/configure-aws-credentials sets it)")
                })?;
            sagemaker::check_group_name(&plan.model_name)?;
            let credentials = aws::AwsCredentials::from_env(env).map_err(|e| UserError {
                message: format!(
                    "the SageMaker registry for model `{}`: {}",
                    plan.model_name, e.message
                ),
                ..e
            })?;
            Ok(Box::new(sagemaker::SagemakerRegistry::new(
                credentials,
                &region,
                env,
            )?))
        }
        RegistryType::Vertex => {
            let v = plan.vertex.as_ref().ok_or_else(|| {
                UserError::invalid(format!(
                    "the Vertex AI registry for model `{}` needs `vertex.project` and `vertex.region`",
                    plan.model_name
                ))
            })?;
            check_model_name("vertex", &plan.model_name)?;
            Ok(Box::new(vertex::VertexRegistry::new(v, env)?))
        }
    }
}

/// A model name every registry accepts at least: not empty, no control characters.
pub(crate) fn check_model_name(registry: &str, model: &str) -> Result<(), UserError> {
    if model.trim().is_empty() || model.chars().any(char::is_control) || model.len() > 256 {
        return Err(UserError::invalid(format!(
            "`{model}` cannot name a model in the {registry} registry: it must be 1 to 256 printable characters"
        ))
        .hint("set `registry.model-name` (default: the model id)"));
    }
    Ok(())
}

/// An alias every registry accepts: 1 to 63 letters, digits, `-` and `_`, starting
/// with a letter, and not MLflow's reserved `latest` or `v<number>`.
pub fn check_alias(registry: &str, alias: &str) -> Result<(), UserError> {
    let valid = !alias.is_empty()
        && alias.len() <= 63
        && alias.starts_with(|c: char| c.is_ascii_alphabetic())
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let lower = alias.to_ascii_lowercase();
    let reserved = lower == "latest"
        || (lower.len() > 1
            && lower.starts_with('v')
            && lower[1..].bytes().all(|b| b.is_ascii_digit()));
    if !valid || reserved {
        return Err(UserError::invalid(format!(
            "`{alias}` cannot be an alias in the {registry} registry: an alias is 1 to 63 letters, digits, `-` and `_`, starting with a letter, and not `latest` or `v<number>`"
        ))
        .hint("use a name like `production`, `staging` or `challenger`"));
    }
    Ok(())
}

/// A commit a lookup can match: a full commit SHA (40 hex digits, or 64 in a
/// SHA-256 repository), as registrations record it. An abbreviated SHA would
/// match nothing, so it is refused rather than answered with "no version".
pub fn check_commit(registry: &str, commit: &str) -> Result<(), UserError> {
    let ok = matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "`{commit:.80}` is not a full commit SHA, so the {registry} registry cannot look up the version trained from it: it must be 40 (or 64) hex digits"
        ))
        .hint("use the full SHA (`git rev-parse HEAD`, GITHUB_SHA), not an abbreviation"))
    }
}

/// Checks a new version before anything is written: a model name, a job id, finite
/// metrics (no registry stores NaN) and a valid alias.
pub(crate) fn check_new(registry: &str, v: &NewVersion) -> Result<(), UserError> {
    check_model_name(registry, &v.model_name)?;
    if v.job_id.trim().is_empty() {
        return Err(UserError::invalid(format!(
            "cannot register a version of model `{}` in the {registry} registry without the job id that produced it",
            v.model_name
        )));
    }
    if let Some((name, value)) = v.metrics.iter().find(|(_, m)| !m.is_finite()) {
        return Err(UserError::invalid(format!(
            "cannot register job {} of model `{}` in the {registry} registry: metric `{name}` is {value}, and registries store finite numbers only",
            v.job_id, v.model_name
        ))
        .hint("a NaN or infinite metric usually means training diverged: add a gate on it (train.gates) so such a model never reaches the registry"));
    }
    if let Some(alias) = &v.alias {
        check_alias(registry, alias)?;
    }
    Ok(())
}
