//! Model registries: the [`ModelRegistry`] trait and the version types shared by
//! `local` (a directory), `mlflow` (MLflow's REST API) and `sagemaker` (model
//! package groups). A passing model is registered with its lineage; a champion
//! is looked up by alias.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::UserError;

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

    /// The version an alias points to (the champion is `production`), if any.
    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError>;

    /// Points `alias` at `version` (moving it off any other version).
    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError>;
}
