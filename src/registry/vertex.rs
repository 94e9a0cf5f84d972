//! The Vertex AI Model Registry: one Vertex model per mlcd model (its id is the
//! label-safe model name), one model version per registration. `models.upload`
//! is a long-running operation, polled to `done` (its `error` surfaced) within a
//! bound; new versions name the model as `parentModel`. The serving container is
//! the training image with the SageMaker serving contract (`/invocations`,
//! `/ping`, port 8080). Lineage is in labels (`mlcd-job`, `mlcd-commit`, which
//! the filtered `listVersions` finds) and, in full (metrics, hyperparameters,
//! channels, run URL), as JSON in the version description. Aliases are Vertex's
//! version aliases (`production`, `staging`), moved with `mergeVersionAliases`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{check_alias, check_commit, check_new, ModelRegistry, NewVersion, Version};
use crate::cloud::gcp::auth::TokenSource;
use crate::cloud::gcp::client::GcpClient;
use crate::cloud::gcp::{self, Api};
use crate::error::UserError;
use crate::plan::VertexPlan;
use crate::train::vertex::label_value;

/// How long an upload may take before mlcd gives up on it.
const UPLOAD_BOUND: Duration = Duration::from_secs(600);

/// The lineage kept in a version's description.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Lineage {
    job_id: String,
    backend: String,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    hyperparameters: BTreeMap<String, String>,
    #[serde(default)]
    channels: BTreeMap<String, String>,
    #[serde(default)]
    run_url: Option<String>,
}

/// The Vertex AI Model Registry of one project and region.
pub struct VertexRegistry {
    client: GcpClient,
    parent_url: String,
    operations_root: String,
    poll: Duration,
}

impl VertexRegistry {
    /// A registry for `plan`'s project and region, credentials from `env`.
    pub fn new(plan: &VertexPlan, env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let auth = TokenSource::from_env(env).map_err(|e| UserError {
            message: format!("cannot call the Vertex AI Model Registry: {}", e.message),
            ..e
        })?;
        let root = gcp::root_url(
            Api::Aiplatform,
            &plan.region,
            plan.api_endpoint.as_deref(),
            env,
        );
        Ok(VertexRegistry {
            client: GcpClient::new(Arc::new(auth))?,
            parent_url: format!(
                "{root}v1/projects/{}/locations/{}",
                plan.project, plan.region
            ),
            operations_root: format!("{root}v1/"),
            poll: crate::train::poll_interval_from_env(env, Duration::from_secs(5)),
        })
    }

    fn model_url(&self, model: &str, at: Option<&str>) -> String {
        let id = label_value(model);
        match at {
            Some(v) => format!("{}/models/{id}@{v}", self.parent_url),
            None => format!("{}/models/{id}", self.parent_url),
        }
    }

    async fn get(&self, url: &str) -> Result<Option<Value>, UserError> {
        match self.client.call("models.get", Method::GET, url, None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.user("reading the Vertex AI model")),
        }
    }

    /// The versions labelled `key=value`, newest first.
    async fn versions_with(
        &self,
        model: &str,
        key: &str,
        value: &str,
    ) -> Result<Vec<Value>, UserError> {
        let filter = format!("labels.{key}=\"{}\"", label_value(value));
        self.versions(model, Some(&filter)).await
    }

    /// The model's versions (those `filter` selects), newest first.
    async fn versions(&self, model: &str, filter: Option<&str>) -> Result<Vec<Value>, UserError> {
        let base = format!("{}:listVersions", self.model_url(model, None));
        let url = match filter {
            Some(f) => reqwest::Url::parse_with_params(&base, &[("filter", f)]),
            None => reqwest::Url::parse(&base),
        }
        .map_err(|e| UserError::failed(e.to_string()))?;
        let v = match self
            .client
            .call("models.listVersions", Method::GET, url.as_str(), None)
            .await
        {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => {
                return Err(e.user(&format!("listing the versions of Vertex AI model {model}")))
            }
        };
        let mut out: Vec<Value> = v["models"].as_array().cloned().unwrap_or_default();
        out.sort_by_key(|m| {
            std::cmp::Reverse(
                m["versionId"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0),
            )
        });
        Ok(out)
    }

    fn version_of(model: &str, m: &Value) -> Version {
        let lineage: Lineage = m["versionDescription"]
            .as_str()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        let name = m["name"].as_str().unwrap_or_default();
        let version = m["versionId"].as_str().unwrap_or_default().to_string();
        Version {
            model_name: model.to_string(),
            uri: format!("{name}@{version}"),
            version,
            job_id: (!lineage.job_id.is_empty()).then_some(lineage.job_id),
            metrics: lineage.metrics,
            image: m["containerSpec"]["imageUri"].as_str().map(str::to_string),
            artifact: m["artifactUri"].as_str().map(str::to_string),
            commit: lineage.commit,
            aliases: m["versionAliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|a| *a != "default")
                .map(str::to_string)
                .collect(),
        }
    }

    /// Polls a long-running operation to `done`, bounded; its `response`.
    async fn wait_operation(&self, op: Value, what: &str) -> Result<Value, UserError> {
        gcp::operation::wait(
            &self.client,
            &self.operations_root,
            op,
            what,
            self.poll,
            UPLOAD_BOUND,
        )
        .await
    }
}

#[async_trait]
impl ModelRegistry for VertexRegistry {
    fn name(&self) -> &'static str {
        "vertex"
    }

    async fn register(&self, v: &NewVersion) -> Result<Version, UserError> {
        check_new("vertex", v)?;
        if let Some(a) = &v.alias {
            check_alias("vertex", a)?;
        }
        let model = &v.model_name;
        let lineage = Lineage {
            job_id: v.job_id.clone(),
            backend: v.backend.clone(),
            commit: v.commit.clone(),
            metrics: v.metrics.clone(),
            hyperparameters: v.hyperparameters.clone(),
            channels: v.channels.clone(),
            run_url: v.run_url.clone(),
        };
        let mut labels = BTreeMap::from([
            ("mlcd-job".to_string(), label_value(&v.job_id)),
            ("mlcd-model".to_string(), label_value(model)),
        ]);
        if let Some(c) = &v.commit {
            labels.insert("mlcd-commit".into(), label_value(c));
        }
        let mut body_model = json!({
            "displayName": model,
            "containerSpec": {
                "imageUri": v.image,
                "predictRoute": "/invocations",
                "healthRoute": "/ping",
                "ports": [{"containerPort": 8080}],
            },
            "labels": labels,
            "versionDescription": serde_json::to_string(&lineage).unwrap_or_default(),
        });
        if let Some(a) = &v.artifact {
            body_model["artifactUri"] = json!(a);
        }
        if let Some(a) = &v.alias {
            body_model["versionAliases"] = json!([a]);
        }
        let mut body = json!({ "model": body_model });
        if self.get(&self.model_url(model, None)).await?.is_some() {
            body["parentModel"] = json!(format!(
                "{}/models/{}",
                self.parent_url.split("/v1/").nth(1).unwrap_or_default(),
                label_value(model)
            ));
        } else {
            body["modelId"] = json!(label_value(model));
        }
        let what = format!("uploading a version of Vertex AI model {model}");
        let op = self
            .client
            .call(
                "models.upload",
                Method::POST,
                &format!("{}/models:upload", self.parent_url),
                Some(&body),
            )
            .await
            .map_err(|e| e.user(&what))?;
        let response = self.wait_operation(op, &what).await?;
        let version = response["modelVersionId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let m = self
            .get(&self.model_url(model, Some(&version)))
            .await?
            .ok_or_else(|| {
                UserError::failed(format!(
                    "{what}: version {version} is not there after the upload"
                ))
            })?;
        Ok(Self::version_of(model, &m))
    }

    async fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError> {
        Ok(self
            .versions_with(model, "mlcd-job", job_id)
            .await?
            .iter()
            .map(|m| Self::version_of(model, m))
            .find(|v| v.job_id.as_deref() == Some(job_id)))
    }

    async fn find_by_commit(
        &self,
        model: &str,
        commit: &str,
    ) -> Result<Option<Version>, UserError> {
        check_commit("vertex", commit)?;
        Ok(self
            .versions_with(model, "mlcd-commit", commit)
            .await?
            .iter()
            .map(|m| Self::version_of(model, m))
            .find(|v| v.commit.as_deref() == Some(commit)))
    }

    async fn recent(&self, model: &str, n: usize) -> Result<Vec<Version>, UserError> {
        let mut newest: Vec<Version> = self
            .versions(model, None)
            .await?
            .iter()
            .take(n)
            .map(|m| Self::version_of(model, m))
            .collect();
        newest.reverse();
        Ok(newest)
    }

    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError> {
        check_alias("vertex", alias)?;
        Ok(self
            .get(&self.model_url(model, Some(alias)))
            .await?
            .map(|m| Self::version_of(model, &m)))
    }

    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError> {
        check_alias("vertex", alias)?;
        if !version.bytes().all(|b| b.is_ascii_digit())
            || self
                .get(&self.model_url(model, Some(version)))
                .await?
                .is_none()
        {
            return Err(UserError::invalid(format!(
                "model {model} has no version {version} in the Vertex AI Model Registry"
            )));
        }
        self.client
            .call(
                "models.mergeVersionAliases",
                Method::POST,
                &format!(
                    "{}:mergeVersionAliases",
                    self.model_url(model, Some(version))
                ),
                Some(&json!({ "versionAliases": [alias] })),
            )
            .await
            .map_err(|e| {
                e.user(&format!(
                    "pointing alias {alias} of Vertex AI model {model} at version {version}"
                ))
            })?;
        Ok(())
    }
}
