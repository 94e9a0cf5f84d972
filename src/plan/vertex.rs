//! The Vertex AI settings a plan carries (`vertex:` in mlcd.yml, with the
//! variables google-github-actions/auth exports as fallbacks), checked before any
//! request: project, region, staging bucket, service account, API endpoint.

use serde::Serialize;

use super::Inputs;
use crate::error::UserError;

/// What `backend: vertex` needs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct VertexPlan {
    /// The Google Cloud project (id or number).
    pub project: String,
    /// The region, like `us-central1`.
    pub region: String,
    /// Where job output goes (`gs://bucket[/prefix]`): the model lands in
    /// `<staging-bucket>/<job>/model/`.
    pub staging_bucket: String,
    /// The service account jobs run as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The Vertex AI endpoint (`vertex.api-endpoint`), for Private Service Connect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_endpoint: Option<String>,
}

/// The Vertex AI settings, checked (`what` names the use: `training`, `serving`).
/// `staging` says whether the staging bucket is needed (training writes there; the
/// registry does not).
pub(super) fn plan(inputs: &Inputs, what: &str, staging: bool) -> Result<VertexPlan, UserError> {
    let v = &inputs.cfg().vertex;
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| inputs.env.get(*n).map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
    };
    let project = v
        .project
        .clone()
        .or_else(|| env(&["GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT", "GCLOUD_PROJECT"]))
        .ok_or_else(|| {
            inputs
                .config_error(&["vertex"], format!("Vertex AI {what} needs a project: set `vertex.project` or GOOGLE_CLOUD_PROJECT"))
                .hint("google-github-actions/auth exports GOOGLE_CLOUD_PROJECT for you")
        })?;
    if !valid_project(&project) {
        return Err(inputs.config_error(
            &["vertex", "project"],
            format!("`{project}` is not a Google Cloud project id (6 to 30 lowercase letters, digits and hyphens, starting with a letter) nor a project number"),
        ));
    }
    let region = v
        .region
        .clone()
        .or_else(|| env(&["CLOUDSDK_AI_REGION", "GOOGLE_CLOUD_REGION"]))
        .ok_or_else(|| {
            inputs
                .config_error(&["vertex"], format!("Vertex AI {what} needs a region: set `vertex.region` (like us-central1) or CLOUDSDK_AI_REGION"))
        })?;
    if !region.contains('-')
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(inputs.config_error(
            &["vertex", "region"],
            format!("`{region}` is not a Google Cloud region (like us-central1 or europe-west4)"),
        ));
    }
    let staging_bucket = v.staging_bucket.clone().or_else(|| (!staging).then(String::new)).ok_or_else(|| {
        inputs
            .config_error(&["vertex"], format!("Vertex AI {what} needs `vertex.staging-bucket` (gs://bucket): the trained model is written there"))
            .hint("create a bucket in the job's region (gcloud storage buckets create gs://NAME --location REGION) and name it here")
    })?;
    if (staging || !staging_bucket.is_empty())
        && (!staging_bucket.starts_with("gs://") || staging_bucket.len() <= 5)
    {
        return Err(inputs.config_error(
            &["vertex", "staging-bucket"],
            format!("`vertex.staging-bucket` is `{staging_bucket}`: expected a Cloud Storage URI like gs://acme-ml-staging"),
        ));
    }
    if let Some(u) = &v.api_endpoint {
        if !(u.starts_with("https://") || u.starts_with("http://")) {
            return Err(inputs.config_error(
                &["vertex", "api-endpoint"],
                format!("`vertex.api-endpoint` is `{u}`: expected a URL like https://us-central1-aiplatform.googleapis.com/"),
            ));
        }
    }
    Ok(VertexPlan {
        project,
        region,
        staging_bucket: staging_bucket.trim_end_matches('/').to_string(),
        service_account: v.service_account.clone(),
        api_endpoint: v.api_endpoint.clone(),
    })
}

/// Checks what a Vertex AI training job takes, before any request: channels in
/// Cloud Storage or local (uploaded to the staging bucket), and an accelerator
/// the machine type's family can take.
pub(super) fn check_train(
    inputs: &Inputs,
    channels: &std::collections::BTreeMap<String, String>,
    instance: &crate::instance::Resolved,
    instance_from_input: bool,
) -> Result<(), UserError> {
    for (name, src) in channels {
        // gs:// is read in place; a local directory is uploaded to the staging
        // bucket; another cloud's URI cannot be read by a Vertex AI job.
        if src.contains("://") && !src.starts_with("gs://") {
            return Err(inputs
                .config_error(
                    &["train", "channels", name],
                    format!("`train.channels.{name}` is `{src}`: Vertex AI reads channels from Cloud Storage (gs://bucket/path, mounted under /gcs/) or from a local directory mlcd uploads to `vertex.staging-bucket`, not from other clouds' storage"),
                )
                .hint(format!("copy the data to Cloud Storage (gcloud storage cp -r … gs://BUCKET/{name}/) and set `train.channels.{name}: gs://BUCKET/{name}/`")));
        }
    }
    if let Err(e) = crate::train::vertex::machine_spec(&instance.native, instance.gpus) {
        let msg = format!("instance `{}`: {e}", instance.requested);
        return Err(if instance_from_input {
            UserError::invalid(format!("input {msg}"))
        } else {
            inputs.config_error(&["train", "instance"], format!("`train.instance`: {msg}"))
        });
    }
    Ok(())
}

fn valid_project(p: &str) -> bool {
    if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    (6..=30).contains(&p.len())
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !p.ends_with('-')
}
