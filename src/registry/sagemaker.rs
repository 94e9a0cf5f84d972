//! The SageMaker model registry: one model package group per model (created when
//! missing), one versioned model package per registration. The package's
//! InferenceSpecification names the image (and the artifact as ModelDataUrl when
//! it is an `s3://` URI); its CustomerMetadataProperties carry the lineage
//! (`mlcd.job-id`, `mlcd.commit`, `mlcd.run-url`, `mlcd.metric.<name>`, …) within
//! SageMaker's limits (50 entries, keys ≤ 128 and values ≤ 256 characters of a
//! restricted set: other characters become `_`, longer values are cut).
//!
//! SageMaker has no aliases, so:
//! - `production` is the approval status. Setting it approves the version and
//!   marks every other Approved version of the group `Rejected` (with an
//!   ApprovalDescription naming the version that superseded it), so exactly one
//!   version is Approved and SageMaker's own "latest approved" deploy pipelines
//!   agree with mlcd. `by_alias(production)` is the newest Approved version.
//! - any other alias is a `mlcd.alias.<name>` metadata property, moved off the
//!   version that held it.
//!
//! New packages are `PendingManualApproval`. Lookups list the group newest first
//! and describe packages, bounded to [`MAX_SCAN`] packages.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{check_alias, check_commit, check_new, ModelRegistry, NewVersion, Version};
use crate::cloud::aws::{self, AwsClient, AwsCredentials, AwsError};
use crate::error::UserError;

const NAME: &str = "sagemaker";
/// The alias that maps to ModelApprovalStatus `Approved`.
pub const PRODUCTION: &str = "production";
/// How many packages (newest first) a lookup examines at most.
pub const MAX_SCAN: usize = 500;
const PAGE: usize = 100;
const MAX_PROPERTIES: usize = 50;
/// Entries kept free for aliases.
const ALIAS_RESERVE: usize = 8;
const MAX_KEY: usize = 128;
const MAX_VALUE: usize = 256;
const JOB_KEY: &str = "mlcd.job-id";
const COMMIT_KEY: &str = "mlcd.commit";
const METRIC_PREFIX: &str = "mlcd.metric.";
const ALIAS_PREFIX: &str = "mlcd.alias.";

/// Checks that `model` can name a model package group (SageMaker's EntityName:
/// 1 to 63 letters, digits and hyphens, starting and ending with a letter or digit).
pub fn check_group_name(model: &str) -> Result<(), UserError> {
    let b = model.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "`{model}` cannot name a SageMaker model package group: it must be 1 to 63 letters, digits and `-`, starting and ending with a letter or digit"
        ))
        .hint("set `registry.model-name` to such a name (default: the model id)"))
    }
}

/// A model registry in SageMaker model package groups.
#[derive(Debug, Clone)]
pub struct SagemakerRegistry {
    client: AwsClient,
    endpoint: String,
}

impl SagemakerRegistry {
    /// A registry in `region`, reached at the SageMaker endpoint `env` resolves
    /// (`AWS_ENDPOINT_URL_SAGEMAKER` / `AWS_ENDPOINT_URL` override it).
    pub fn new(
        credentials: AwsCredentials,
        region: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, UserError> {
        let endpoint = aws::endpoint(&aws::SAGEMAKER, region, env)?;
        let client = AwsClient::new(credentials, region)?;
        Ok(SagemakerRegistry { client, endpoint })
    }

    /// The same registry with another client (another retry policy, say).
    pub fn with_client(mut self, client: AwsClient) -> Self {
        self.client = client;
        self
    }

    async fn call(&self, op: &str, body: Value) -> Result<Value, AwsError> {
        self.client
            .json_call(
                aws::SAGEMAKER.signing_name,
                &self.endpoint,
                &format!("SageMaker.{op}"),
                &body,
            )
            .await
    }

    fn fail(&self, model: &str, doing: &str, e: AwsError) -> UserError {
        let mut err = UserError::from(e);
        err.message = format!(
            "the SageMaker registry ({}) could not {doing} for model `{model}`: {}",
            self.client.region(),
            err.message
        );
        err
    }

    async fn ensure_group(&self, model: &str) -> Result<(), UserError> {
        match self
            .call(
                "DescribeModelPackageGroup",
                json!({ "ModelPackageGroupName": model }),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(self.fail(model, "look up its model package group", e)),
        }
        match self
            .call(
                "CreateModelPackageGroup",
                json!({
                    "ModelPackageGroupName": model,
                    "ModelPackageGroupDescription": format!("Versions of model {model}, registered by mlcd"),
                }),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Created meanwhile by a concurrent registration.
            Err(e) if e.to_string().to_ascii_lowercase().contains("already exists") => Ok(()),
            Err(e) => Err(self.fail(model, "create its model package group", e)),
        }
    }

    /// Package summaries of the group, newest first, up to [`MAX_SCAN`];
    /// `approved` keeps only Approved ones.
    async fn summaries(&self, model: &str, approved: bool) -> Result<Vec<Value>, UserError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < MAX_SCAN {
            let mut body = json!({
                "ModelPackageGroupName": model,
                "SortBy": "CreationTime",
                "SortOrder": "Descending",
                "MaxResults": PAGE,
            });
            if approved {
                body["ModelApprovalStatus"] = json!("Approved");
            }
            if let Some(t) = &token {
                body["NextToken"] = json!(t);
            }
            let page = match self.call("ListModelPackages", body).await {
                Ok(p) => p,
                Err(e) if is_missing(&e) => return Ok(Vec::new()),
                Err(e) => return Err(self.fail(model, "list its model packages", e)),
            };
            out.extend(
                page["ModelPackageSummaryList"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .cloned(),
            );
            match page["NextToken"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(MAX_SCAN);
        Ok(out)
    }

    async fn describe(&self, model: &str, arn: &str) -> Result<Value, UserError> {
        self.call("DescribeModelPackage", json!({ "ModelPackageName": arn }))
            .await
            .map_err(|e| self.fail(model, &format!("describe model package {arn}"), e))
    }

    /// The package of version `version`, described.
    async fn package(&self, model: &str, version: &str) -> Result<Value, UserError> {
        let summaries = self.summaries(model, false).await?;
        let summary = summaries
            .iter()
            .find(|s| number(&s["ModelPackageVersion"]).as_deref() == Some(version))
            .ok_or_else(|| {
                UserError::invalid(format!(
                    "the SageMaker registry ({}) has no version {version} of model `{model}` (among its newest {MAX_SCAN} packages)",
                    self.client.region()
                ))
                .hint("versions are the model package versions of the group named after the model")
            })?;
        let arn = summary["ModelPackageArn"].as_str().unwrap_or_default();
        self.describe(model, arn).await
    }

    /// Applies `change` to a package. Sends the full metadata and the status
    /// every time: AWS merges metadata and keeps an absent status, moto replaces
    /// both; sending everything ends the same on either.
    async fn update(&self, model: &str, package: &Value, change: Change) -> Result<(), UserError> {
        let status = change.status.unwrap_or_else(|| {
            package["ModelApprovalStatus"]
                .as_str()
                .unwrap_or("PendingManualApproval")
                .to_string()
        });
        let mut body = json!({
            "ModelPackageArn": package["ModelPackageArn"],
            "ModelApprovalStatus": status,
        });
        if let Some(d) = change.description {
            body["ApprovalDescription"] = json!(d);
        }
        if !change.properties.is_empty() {
            body["CustomerMetadataProperties"] = Value::Object(change.properties);
        }
        if !change.remove.is_empty() {
            body["CustomerMetadataPropertiesToRemove"] = json!(change.remove);
        }
        self.call("UpdateModelPackage", body)
            .await
            .map_err(|e| self.fail(model, &change.doing, e))?;
        Ok(())
    }

    async fn approve(&self, model: &str, package: &Value) -> Result<(), UserError> {
        let version = number(&package["ModelPackageVersion"]).unwrap_or_default();
        let change = Change {
            status: Some("Approved".into()),
            description: Some("production alias set by mlcd".into()),
            properties: properties(package),
            remove: Vec::new(),
            doing: format!("approve version {version}"),
        };
        self.update(model, package, change).await?;
        for s in self.summaries(model, true).await? {
            if number(&s["ModelPackageVersion"]).as_deref() == Some(version.as_str()) {
                continue;
            }
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            let old = self.describe(model, arn).await?;
            let old_version = number(&old["ModelPackageVersion"]).unwrap_or_default();
            let change = Change {
                status: Some("Rejected".into()),
                description: Some(format!(
                    "superseded as production by version {version} (mlcd)"
                )),
                properties: properties(&old),
                remove: Vec::new(),
                doing: format!("retire version {old_version} as production"),
            };
            self.update(model, &old, change).await?;
        }
        Ok(())
    }

    async fn tag_alias(&self, model: &str, package: &Value, alias: &str) -> Result<(), UserError> {
        let key = format!("{ALIAS_PREFIX}{alias}");
        let version = number(&package["ModelPackageVersion"]).unwrap_or_default();
        for s in self.summaries(model, false).await? {
            if number(&s["ModelPackageVersion"]).as_deref() == Some(version.as_str()) {
                continue;
            }
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            let other = self.describe(model, arn).await?;
            let mut props = properties(&other);
            if props.remove(&key).is_some() {
                let old = number(&other["ModelPackageVersion"]).unwrap_or_default();
                let change = Change {
                    status: None,
                    description: None,
                    properties: props,
                    remove: vec![key.clone()],
                    doing: format!("move alias `{alias}` off version {old}"),
                };
                self.update(model, &other, change).await?;
            }
        }
        let mut props = properties(package);
        if props.len() >= MAX_PROPERTIES && !props.contains_key(&key) {
            return Err(UserError::failed(format!(
                "cannot point alias `{alias}` at version {version} of model `{model}` in the SageMaker registry: the package already has SageMaker's maximum of {MAX_PROPERTIES} metadata properties"
            )));
        }
        props.insert(key, json!("true"));
        let change = Change {
            status: None,
            description: None,
            properties: props,
            remove: Vec::new(),
            doing: format!("point alias `{alias}` at version {version}"),
        };
        self.update(model, package, change).await
    }

    async fn set_alias_on(
        &self,
        model: &str,
        package: &Value,
        alias: &str,
    ) -> Result<(), UserError> {
        if alias == PRODUCTION {
            self.approve(model, package).await
        } else {
            self.tag_alias(model, package, alias).await
        }
    }
}

#[async_trait]
impl ModelRegistry for SagemakerRegistry {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn register(&self, v: &NewVersion) -> Result<Version, UserError> {
        check_new(NAME, v)?;
        let model = v.model_name.as_str();
        check_group_name(model)?;
        if v.image.trim().is_empty() {
            return Err(UserError::invalid(format!(
                "cannot register job {} of model `{model}` in the SageMaker registry without an image: a model package names its inference image",
                v.job_id
            )));
        }
        self.ensure_group(model).await?;
        let mut container = json!({ "Image": v.image });
        if let Some(a) = v.artifact.as_deref().filter(|a| a.starts_with("s3://")) {
            container["ModelDataUrl"] = json!(a);
        }
        let created = self
            .call(
                "CreateModelPackage",
                json!({
                    "ModelPackageGroupName": model,
                    "ModelPackageDescription": description(&v.job_id),
                    "InferenceSpecification": {
                        "Containers": [container],
                        "SupportedContentTypes": ["application/json"],
                        "SupportedResponseMIMETypes": ["application/json"],
                    },
                    "ModelApprovalStatus": "PendingManualApproval",
                    "CustomerMetadataProperties": lineage(v),
                }),
            )
            .await
            .map_err(|e| {
                self.fail(
                    model,
                    &format!("create a model package for job {}", v.job_id),
                    e,
                )
            })?;
        let arn = created["ModelPackageArn"].as_str().unwrap_or_default();
        let mut package = self.describe(model, arn).await?;
        if let Some(alias) = &v.alias {
            self.set_alias_on(model, &package, alias).await?;
            package = self.describe(model, arn).await?;
        }
        Ok(to_version(model, &package))
    }

    async fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError> {
        check_group_name(model)?;
        let wanted = description(job_id);
        let job = clean(job_id, MAX_VALUE);
        let mut found = None;
        // Oldest match: the version the job registered first.
        for s in self.summaries(model, false).await?.iter().rev() {
            if s["ModelPackageDescription"].as_str() != Some(wanted.as_str()) {
                continue;
            }
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            let p = self.describe(model, arn).await?;
            if p["CustomerMetadataProperties"][JOB_KEY].as_str() == Some(job.as_str()) {
                found = Some(to_version(model, &p));
                break;
            }
        }
        Ok(found)
    }

    async fn find_by_commit(
        &self,
        model: &str,
        commit: &str,
    ) -> Result<Option<Version>, UserError> {
        check_group_name(model)?;
        check_commit(NAME, commit)?;
        // List summaries carry no metadata: describe them, highest version first,
        // and stop at the first that records the commit.
        let mut summaries = self.summaries(model, false).await?;
        summaries.sort_by_key(|s| {
            std::cmp::Reverse(number(&s["ModelPackageVersion"]).and_then(|v| v.parse::<u64>().ok()))
        });
        for s in &summaries {
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            let p = self.describe(model, arn).await?;
            if p["CustomerMetadataProperties"][COMMIT_KEY].as_str() == Some(commit) {
                return Ok(Some(to_version(model, &p)));
            }
        }
        Ok(None)
    }

    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError> {
        check_group_name(model)?;
        check_alias(NAME, alias)?;
        if alias == PRODUCTION {
            let Some(s) = self.summaries(model, true).await?.into_iter().next() else {
                return Ok(None);
            };
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            return Ok(Some(to_version(model, &self.describe(model, arn).await?)));
        }
        let key = format!("{ALIAS_PREFIX}{alias}");
        for s in self.summaries(model, false).await? {
            let arn = s["ModelPackageArn"].as_str().unwrap_or_default();
            let p = self.describe(model, arn).await?;
            if p["CustomerMetadataProperties"].get(&key).is_some() {
                return Ok(Some(to_version(model, &p)));
            }
        }
        Ok(None)
    }

    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError> {
        check_group_name(model)?;
        check_alias(NAME, alias)?;
        let package = self.package(model, version.trim()).await?;
        self.set_alias_on(model, &package, alias).await
    }
}

/// One UpdateModelPackage.
struct Change {
    /// The new approval status; `None` keeps the current one.
    status: Option<String>,
    description: Option<String>,
    /// The package's whole metadata after the change.
    properties: Map<String, Value>,
    /// Keys to remove.
    remove: Vec<String>,
    /// What this does, for errors.
    doing: String,
}

/// Whether an error means the group (or package) does not exist.
fn is_missing(e: &AwsError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    matches!(
        e.code(),
        Some("ResourceNotFound" | "ResourceNotFoundException")
    ) || (e.code() == Some("ValidationException")
        && (text.contains("does not exist") || text.contains("not found")))
}

/// The package description, which list summaries carry: a cheap filter for jobs.
fn description(job_id: &str) -> String {
    format!("mlcd job {}", job_id.chars().take(1000).collect::<String>())
}

/// A JSON number or string as a string.
fn number(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `text` in SageMaker's metadata alphabet (letters, digits, spaces, `_.:/=+-@`),
/// at most `max` characters.
fn clean(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// The lineage as metadata properties, within SageMaker's limits.
fn lineage(v: &NewVersion) -> Map<String, Value> {
    let mut props = Map::new();
    let put = |props: &mut Map<String, Value>, key: String, value: &str| {
        let key = clean(&key, MAX_KEY);
        let cleaned = clean(value, MAX_VALUE);
        if cleaned.is_empty() {
            return true;
        }
        if props.len() >= MAX_PROPERTIES - ALIAS_RESERVE {
            return false;
        }
        if cleaned.len() < value.len() || cleaned != value {
            log::warn!(
                "SageMaker registry: `{key}` recorded in SageMaker's metadata alphabet / length"
            );
        }
        props.insert(key, json!(cleaned));
        true
    };
    put(&mut props, JOB_KEY.into(), &v.job_id);
    put(&mut props, "mlcd.backend".into(), &v.backend);
    if let Some(c) = &v.commit {
        put(&mut props, COMMIT_KEY.into(), c);
    }
    if let Some(u) = &v.run_url {
        put(&mut props, "mlcd.run-url".into(), u);
    }
    if let Some(a) = &v.artifact {
        put(&mut props, "mlcd.artifact".into(), a);
    }
    let mut dropped = Vec::new();
    for (k, m) in &v.metrics {
        if !put(&mut props, format!("{METRIC_PREFIX}{k}"), &m.to_string()) {
            dropped.push(k.as_str());
        }
    }
    for (k, h) in &v.hyperparameters {
        if !put(&mut props, format!("mlcd.hp.{k}"), h) {
            dropped.push(k.as_str());
        }
    }
    if !dropped.is_empty() {
        log::warn!(
            "SageMaker registry: metadata holds at most {MAX_PROPERTIES} entries; not recorded: {}",
            dropped.join(", ")
        );
    }
    props
}

fn properties(package: &Value) -> Map<String, Value> {
    package["CustomerMetadataProperties"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn to_version(model: &str, p: &Value) -> Version {
    let props = properties(p);
    let text = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_string);
    let metrics = props
        .iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix(METRIC_PREFIX)?;
            Some((name.to_string(), v.as_str()?.parse::<f64>().ok()?))
        })
        .collect();
    let mut aliases: Vec<String> = Vec::new();
    if p["ModelApprovalStatus"] == "Approved" {
        aliases.push(PRODUCTION.into());
    }
    aliases.extend(
        props
            .keys()
            .filter_map(|k| k.strip_prefix(ALIAS_PREFIX).map(str::to_string)),
    );
    let container = &p["InferenceSpecification"]["Containers"][0];
    Version {
        model_name: model.to_string(),
        version: number(&p["ModelPackageVersion"]).unwrap_or_default(),
        uri: p["ModelPackageArn"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        job_id: text(JOB_KEY),
        metrics,
        image: container["Image"].as_str().map(str::to_string),
        artifact: text("mlcd.artifact")
            .or_else(|| container["ModelDataUrl"].as_str().map(str::to_string)),
        commit: text(COMMIT_KEY),
        aliases,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_follow_sagemaker_entity_names() {
        check_group_name("churn-2").unwrap();
        for bad in ["", "churn_2", "-churn", "churn-", "a.b", &"x".repeat(64)] {
            assert!(check_group_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lineage_fits_sagemaker_metadata_limits() {
        let mut v = NewVersion {
            job_id: "churn-42-1".into(),
            run_url: Some("https://github.com/acme/churn/actions/runs/42?check=1#x".into()),
            ..NewVersion::default()
        };
        for i in 0..100 {
            v.metrics.insert(format!("m{i:03}"), f64::from(i) / 3.0);
        }
        v.hyperparameters.insert("text".into(), "y".repeat(400));
        let props = lineage(&v);
        assert!(props.len() <= MAX_PROPERTIES - ALIAS_RESERVE);
        assert_eq!(props[JOB_KEY], "churn-42-1");
        assert_eq!(
            props["mlcd.run-url"],
            "https://github.com/acme/churn/actions/runs/42_check=1_x"
        );
        for (k, val) in &props {
            assert!(k.len() <= MAX_KEY && val.as_str().unwrap().chars().count() <= MAX_VALUE);
        }
        let m: f64 = props["mlcd.metric.m001"].as_str().unwrap().parse().unwrap();
        assert_eq!(m, 1.0 / 3.0);
    }
}
