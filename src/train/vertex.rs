//! Training on Google Vertex AI: one `CustomJob` per mlcd job, on the regional
//! endpoint. Vertex chooses the job id, so the job carries mlcd's name twice: as
//! its `displayName` and as the label `mlcd-job` (label-safe), which a filtered
//! list finds before a create (a re-run attaches) and after it (of two jobs that
//! raced, the younger is cancelled). The run's identity rides in the container's
//! environment (`MLCD_IDENTITY`), which `customJobs.get` returns.
//!
//! The SageMaker container contract is mapped onto what Vertex gives a container
//! (Cloud Storage FUSE under `/gcs/`, `AIP_*` variables): the container is started
//! with the argument `train` and the variables `SM_HPS` (hyperparameters, JSON),
//! `SM_CHANNEL_<NAME>` (the `gs://` channel as its `/gcs/` path), `SM_CHANNELS`,
//! `SM_MODEL_DIR` (`/gcs/<staging>/<job>/model`, where Vertex's own `AIP_MODEL_DIR`
//! points) and `SM_OUTPUT_DATA_DIR`. The artifact is that model directory. Logs come
//! from Cloud Logging (`resource.type="ml_job"`, the job id label); a failed job's
//! reason is Vertex's `error` plus the container's last ERROR line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};

use super::{
    poll_interval_from_env, Channel, JobSpec, JobState, JobStatus, LogCursor, Submitted,
    TrainingBackend,
};
use crate::cloud::gcp::auth::TokenSource;
use crate::cloud::gcp::client::{GcpClient, GcpError};
use crate::cloud::gcp::storage::Storage;
use crate::cloud::gcp::{self, Api};
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::plan::VertexPlan;

/// Vertex jobs take minutes to start: a describe every 20 s, 60 s at most when
/// nothing changes (with the log read, at most 6 calls a minute while waiting).
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(20);
/// The label holding mlcd's job name.
pub const JOB_LABEL: &str = "mlcd-job";
/// The container variable holding the run's identity.
const IDENTITY_VAR: &str = "MLCD_IDENTITY";

/// The accelerator types `MachineSpec.acceleratorType` takes (aiplatform v1
/// discovery document, revision 20261106; a test keeps this list in step with
/// fixtures/google/aiplatform.v1.json), and the machine families each attaches to.
pub const ACCELERATORS: &[(&str, &[&str])] = &[
    ("NVIDIA_TESLA_K80", &["n1"]),
    ("NVIDIA_TESLA_P100", &["n1"]),
    ("NVIDIA_TESLA_V100", &["n1"]),
    ("NVIDIA_TESLA_P4", &["n1"]),
    ("NVIDIA_TESLA_T4", &["n1"]),
    ("NVIDIA_TESLA_A100", &["a2"]),
    ("NVIDIA_A100_80GB", &["a2"]),
    ("NVIDIA_L4", &["g2"]),
    ("NVIDIA_H100_80GB", &["a3"]),
    ("NVIDIA_H100_MEGA_80GB", &["a3"]),
    ("NVIDIA_H200_141GB", &["a3"]),
    ("NVIDIA_B200", &["a4"]),
    ("NVIDIA_GB200", &["a4x"]),
    ("NVIDIA_RTX_PRO_6000", &["g4"]),
    ("TPU_V2", &["cloud-tpu"]),
    ("TPU_V3", &["cloud-tpu"]),
    ("TPU_V4_POD", &["ct4p"]),
    ("TPU_V5_LITEPOD", &["ct5lp"]),
];

/// The Vertex AI training backend.
pub struct VertexTraining {
    client: GcpClient,
    project: String,
    region: String,
    parent_url: String,
    logging_url: String,
    staging: String,
    /// Cloud Storage, where local channels are uploaded (under the staging bucket).
    storage: Storage,
    service_account: Option<String>,
    poll_interval: Duration,
    /// mlcd job name → Vertex resource name, once known.
    ids: Arc<Mutex<BTreeMap<String, String>>>,
}

/// A label value Vertex takes: lowercase letters, digits, `-` and `_`, 63 at most.
pub fn label_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect()
}

/// The `/gcs/` FUSE path of a `gs://` URI.
pub fn fuse_path(uri: &str) -> Option<String> {
    uri.strip_prefix("gs://").map(|rest| format!("/gcs/{rest}"))
}

/// Splits a resolved instance (`n1-standard-4+NVIDIA_TESLA_T4`) into the machine
/// type and accelerator, checking the accelerator against the machine family.
pub fn machine_spec(native: &str, gpus: u32) -> Result<Value, String> {
    let (machine, accel) = match native.split_once('+') {
        Some((m, a)) => (m, Some(a)),
        None => (native, None),
    };
    let mut spec = json!({ "machineType": machine });
    if let Some(a) = accel {
        let Some((_, families)) = ACCELERATORS.iter().find(|(n, _)| *n == a) else {
            let names: Vec<&str> = ACCELERATORS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "`{a}` is not a Vertex AI accelerator type; it takes {}",
                names.join(", ")
            ));
        };
        let family = machine.split('-').next().unwrap_or_default();
        if !families.contains(&family) {
            return Err(format!(
                "the accelerator {a} attaches to {} machine types, not to `{machine}`",
                families.join(", ")
            ));
        }
        spec["acceleratorType"] = json!(a);
        spec["acceleratorCount"] = json!(gpus.max(1));
    }
    Ok(spec)
}

fn state_of(s: &str) -> JobState {
    match s {
        "JOB_STATE_RUNNING" | "JOB_STATE_UPDATING" | "JOB_STATE_PAUSED" => JobState::InProgress,
        "JOB_STATE_CANCELLING" => JobState::Stopping,
        "JOB_STATE_SUCCEEDED" | "JOB_STATE_PARTIALLY_SUCCEEDED" => JobState::Completed,
        "JOB_STATE_FAILED" | "JOB_STATE_EXPIRED" => JobState::Failed,
        "JOB_STATE_CANCELLED" => JobState::Stopped,
        _ => JobState::Pending,
    }
}

fn env_of(job: &Value) -> BTreeMap<String, String> {
    job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| {
                    Some((
                        e["name"].as_str()?.to_string(),
                        e["value"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl VertexTraining {
    /// A backend for `plan`, with credentials from `env` (no request is made here).
    pub fn new(plan: &VertexPlan, env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let auth = TokenSource::from_env(env).map_err(|e| UserError {
            message: format!("cannot call Vertex AI: {}", e.message),
            ..e
        })?;
        log::info!("Google credentials: {}", auth.describe());
        let client = GcpClient::new(Arc::new(auth))?;
        let storage = Storage::new(
            client.clone(),
            gcp::root_url(Api::Storage, &plan.region, None, env),
        );
        let root = gcp::root_url(
            Api::Aiplatform,
            &plan.region,
            plan.api_endpoint.as_deref(),
            env,
        );
        Ok(VertexTraining {
            client,
            parent_url: format!(
                "{root}v1/projects/{}/locations/{}",
                plan.project, plan.region
            ),
            logging_url: format!(
                "{}v2/entries:list",
                gcp::root_url(Api::Logging, &plan.region, None, env)
            ),
            project: plan.project.clone(),
            region: plan.region.clone(),
            staging: plan.staging_bucket.clone(),
            storage,
            service_account: plan.service_account.clone(),
            poll_interval: poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            ids: Default::default(),
        })
    }

    fn job_url_of(&self, resource: &str) -> String {
        // The resource name's project is a number; the API takes it anywhere.
        let tail = resource.split("/locations/").nth(1).unwrap_or_default();
        let root = self.parent_url.split("/v1/").next().unwrap_or_default();
        format!("{root}/v1/projects/{}/locations/{tail}", self.project)
    }

    /// The jobs labelled with `name`, oldest first.
    async fn list_by_label(&self, name: &str) -> Result<Vec<Value>, GcpError> {
        let filter = format!("labels.{JOB_LABEL}=\"{}\"", label_value(name));
        let url = reqwest::Url::parse_with_params(
            &format!("{}/customJobs", self.parent_url),
            &[("filter", filter.as_str())],
        )
        .map_err(|e| GcpError::Transient(e.to_string()))?;
        let v = self
            .client
            .call("customJobs.list", Method::GET, url.as_str(), None)
            .await?;
        let mut jobs: Vec<Value> = v["customJobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|j| j["displayName"].as_str() == Some(name))
            .collect();
        jobs.sort_by(|a, b| {
            a["createTime"]
                .as_str()
                .cmp(&b["createTime"].as_str())
                .then(a["name"].as_str().cmp(&b["name"].as_str()))
        });
        Ok(jobs)
    }

    /// The job called `name` (mlcd's name, a Vertex job id, or a resource name).
    async fn find(&self, name: &str) -> Result<Option<Value>, GcpError> {
        let known = self.ids.lock().expect("ids").get(name).cloned();
        let direct = known.or_else(|| {
            if name.starts_with("projects/") {
                Some(name.to_string())
            } else if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
                Some(format!(
                    "projects/{}/locations/{}/customJobs/{name}",
                    self.project, self.region
                ))
            } else {
                None
            }
        });
        if let Some(resource) = direct {
            return match self
                .client
                .call(
                    "customJobs.get",
                    Method::GET,
                    &self.job_url_of(&resource),
                    None,
                )
                .await
            {
                Ok(v) => Ok(Some(v)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(e),
            };
        }
        let jobs = self.list_by_label(name).await?;
        let Some(first) = jobs.into_iter().next() else {
            return Ok(None);
        };
        if let Some(r) = first["name"].as_str() {
            self.ids
                .lock()
                .expect("ids")
                .insert(name.to_string(), r.to_string());
        }
        Ok(Some(first))
    }

    fn body(&self, spec: &JobSpec) -> Result<Value, UserError> {
        let machine = machine_spec(&spec.instance.native, spec.instance.gpus).map_err(|e| {
            UserError::invalid(format!("instance `{}`: {e}", spec.instance.requested))
        })?;
        let out = format!("{}/{}", self.staging, spec.name);
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert(
            "SM_HPS".into(),
            serde_json::to_string(&spec.hyperparameters).unwrap_or_default(),
        );
        let mut names = Vec::new();
        for (k, ch) in &spec.channels {
            let Channel::Remote(uri) = ch else {
                return Err(local_channel(k, ch));
            };
            let path = fuse_path(uri).ok_or_else(|| local_channel(k, ch))?;
            env.insert(
                format!("SM_CHANNEL_{}", k.to_uppercase().replace('-', "_")),
                path,
            );
            names.push(k.clone());
        }
        env.insert(
            "SM_CHANNELS".into(),
            serde_json::to_string(&names).unwrap_or_default(),
        );
        env.insert(
            "SM_MODEL_DIR".into(),
            format!("{}/model", fuse_path(&out).unwrap_or_default()),
        );
        env.insert(
            "SM_OUTPUT_DATA_DIR".into(),
            format!("{}/output", fuse_path(&out).unwrap_or_default()),
        );
        env.insert(
            IDENTITY_VAR.into(),
            serde_json::to_string(&spec.identity).unwrap_or_default(),
        );
        let env: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        let mut labels = BTreeMap::new();
        labels.insert(JOB_LABEL.to_string(), label_value(&spec.name));
        labels.insert("mlcd-model".to_string(), label_value(&spec.identity.model));
        if let Some(c) = &spec.identity.commit {
            labels.insert("mlcd-commit".to_string(), label_value(c));
        }
        let mut job_spec = json!({
            "workerPoolSpecs": [{
                "machineSpec": machine,
                "replicaCount": spec.count.max(1).to_string(),
                "containerSpec": {"imageUri": spec.image, "args": ["train"], "env": env},
            }],
            "scheduling": {"timeout": format!("{}s", spec.max_runtime.as_secs().max(1))},
            "baseOutputDirectory": {"outputUriPrefix": format!("{out}/")},
        });
        if let Some(sa) = &self.service_account {
            job_spec["serviceAccount"] = json!(sa);
        }
        Ok(json!({"displayName": spec.name, "jobSpec": job_spec, "labels": labels}))
    }

    /// The container's last ERROR line, for a failed job's reason.
    async fn last_error_line(&self, job_id: &str) -> Option<String> {
        let body = json!({
            "resourceNames": [format!("projects/{}", self.project)],
            "filter": format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{job_id}\" AND severity>=\"ERROR\""),
            "orderBy": "timestamp desc",
            "pageSize": 1,
        });
        let v = self
            .client
            .call("entries.list", Method::POST, &self.logging_url, Some(&body))
            .await
            .ok()?;
        v["entries"][0]["textPayload"]
            .as_str()
            .map(|s| s.trim().to_string())
    }

    fn status_of(&self, name: &str, job: &Value) -> JobStatus {
        let state = state_of(job["state"].as_str().unwrap_or_default());
        let env = env_of(job);
        let hyperparameters = env
            .get("SM_HPS")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let artifact = (state == JobState::Completed).then(|| {
            let base = job["jobSpec"]["baseOutputDirectory"]["outputUriPrefix"]
                .as_str()
                .unwrap_or_default();
            format!("{}/model/", base.trim_end_matches('/'))
        });
        JobStatus {
            name: name.to_string(),
            state,
            detail: job["state"]
                .as_str()
                .map(|s| s.trim_start_matches("JOB_STATE_").to_string()),
            failure_reason: job["error"]["message"].as_str().map(str::to_string),
            metrics: BTreeMap::new(),
            artifact,
            image: job["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"]
                .as_str()
                .map(str::to_string),
            hyperparameters,
        }
    }
}

fn local_channel(name: &str, ch: &Channel) -> UserError {
    UserError::invalid(format!(
        "`train.channels.{name}` is `{ch}`: Vertex AI reads channels from Cloud Storage (gs://bucket/path, mounted under /gcs/); mlcd uploads local directories there, but cannot read other clouds' storage"
    ))
    .hint(format!("copy the data to Cloud Storage (gcloud storage cp -r … gs://BUCKET/{name}/) and set `train.channels.{name}: gs://BUCKET/{name}/`, or point it at a directory of the workspace"))
}

fn job_id(job: &Value) -> &str {
    job["name"]
        .as_str()
        .and_then(|n| n.rsplit('/').next())
        .unwrap_or_default()
}

#[async_trait]
impl TrainingBackend for VertexTraining {
    fn name(&self) -> &'static str {
        "vertex"
    }

    async fn preflight(&self, spec: &JobSpec) -> Result<(), UserError> {
        // Local channels are uploaded by `stage`: checked here as where they will be.
        let mut staged = spec.clone();
        for ch in staged.channels.values_mut() {
            if let Channel::Local(_) = ch {
                *ch = Channel::Remote(format!("{}/mlcd/channels/", self.staging));
            }
        }
        self.body(&staged).map(|_| ())
    }

    /// Uploads the local channels to the staging bucket's `mlcd/channels/`
    /// (content-addressed: what Cloud Storage holds already is skipped), so the
    /// job reads them under `/gcs/`; with only `gs://` channels, makes no request.
    async fn stage(
        &self,
        spec: &JobSpec,
        say: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<JobSpec, UserError> {
        let bucket = self
            .staging
            .trim_start_matches("gs://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        super::upload::stage_channels(&self.storage, &bucket, spec, say).await
    }

    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, UserError> {
        let what = format!("Vertex AI job {}", spec.name);
        if let Some(existing) = self
            .find(&spec.name)
            .await
            .map_err(|e| e.user(&format!("looking for {what}")))?
        {
            log::info!("{what} exists already ({}): attaching", job_id(&existing));
            return Ok(Submitted::AlreadyExists);
        }
        let body = self.body(spec)?;
        let created = self
            .client
            .call(
                "customJobs.create",
                Method::POST,
                &format!("{}/customJobs", self.parent_url),
                Some(&body),
            )
            .await
            .map_err(|e| e.user(&format!("creating {what}")))?;
        let ours = created["name"].as_str().unwrap_or_default().to_string();
        // Two runs may have listed at the same moment: the oldest job of the name
        // wins, and the one we just made is cancelled if it is not that one.
        let jobs = self
            .list_by_label(&spec.name)
            .await
            .map_err(|e| e.user(&format!("listing {what}")))?;
        let oldest = jobs
            .first()
            .and_then(|j| j["name"].as_str())
            .unwrap_or(&ours)
            .to_string();
        self.ids
            .lock()
            .expect("ids")
            .insert(spec.name.clone(), oldest.clone());
        if oldest != ours {
            log::warn!(
                "{what}: another run created it at the same time; cancelling the duplicate {ours}"
            );
            let _ = self
                .client
                .call(
                    "customJobs.cancel",
                    Method::POST,
                    &format!("{}:cancel", self.job_url_of(&ours)),
                    Some(&json!({})),
                )
                .await;
            return Ok(Submitted::AlreadyExists);
        }
        log::info!("{what} created: {ours}");
        Ok(Submitted::Created)
    }

    async fn identity(&self, name: &str) -> Result<Recorded, UserError> {
        let job = self
            .find(name)
            .await
            .map_err(|e| e.user(&format!("reading Vertex AI job {name}")))?;
        Ok(match job {
            None => Recorded::Absent,
            Some(j) => match env_of(&j)
                .get(IDENTITY_VAR)
                .and_then(|s| serde_json::from_str::<Identity>(s).ok())
            {
                Some(i) => Recorded::Run(i),
                None => Recorded::Unknown,
            },
        })
    }

    async fn describe(&self, name: &str) -> Result<Option<JobStatus>, UserError> {
        let Some(job) = self
            .find(name)
            .await
            .map_err(|e| e.user(&format!("reading Vertex AI job {name}")))?
        else {
            return Ok(None);
        };
        let mut status = self.status_of(name, &job);
        if status.state == JobState::Failed {
            if let Some(line) = self.last_error_line(job_id(&job)).await {
                let base = status.failure_reason.take().unwrap_or_default();
                status.failure_reason = Some(if base.is_empty() {
                    line
                } else {
                    format!("{base} {line}")
                });
            }
        }
        Ok(Some(status))
    }

    async fn logs(&self, name: &str, cursor: &mut LogCursor) -> Result<Vec<String>, UserError> {
        // The job id is all a log read needs: known after the first describe, so
        // following the log costs no extra customJobs.get per poll.
        let known = self.ids.lock().expect("ids").get(name).cloned();
        let id = match known {
            Some(resource) => resource.rsplit('/').next().unwrap_or_default().to_string(),
            None => match self
                .find(name)
                .await
                .map_err(|e| e.user(&format!("reading Vertex AI job {name}")))?
            {
                Some(job) => job_id(&job).to_string(),
                None => return Ok(Vec::new()),
            },
        };
        // The cursor is `<timestamp> <insertId>` of the last entry returned: ask
        // from that timestamp on and drop what was returned already.
        let (after_ts, after_id) = match cursor.0.as_deref().and_then(|c| c.split_once(' ')) {
            Some((t, i)) => (Some(t.to_string()), i.to_string()),
            None => (None, String::new()),
        };
        let mut filter = format!("resource.type=\"ml_job\" AND resource.labels.job_id=\"{id}\"");
        if let Some(t) = &after_ts {
            filter.push_str(&format!(" AND timestamp>=\"{t}\""));
        }
        let mut lines = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..10 {
            let mut body = json!({
                "resourceNames": [format!("projects/{}", self.project)],
                "filter": filter,
                "orderBy": "timestamp asc",
                "pageSize": 1000,
            });
            if let Some(p) = &page {
                body["pageToken"] = json!(p);
            }
            let v = self
                .client
                .call("entries.list", Method::POST, &self.logging_url, Some(&body))
                .await
                .map_err(|e| e.user(&format!("reading the log of Vertex AI job {name}")))?;
            for e in v["entries"].as_array().into_iter().flatten() {
                let ts = e["timestamp"].as_str().unwrap_or_default();
                let iid = e["insertId"].as_str().unwrap_or_default();
                if let Some(t) = &after_ts {
                    if (ts, iid) <= (t.as_str(), after_id.as_str()) {
                        continue;
                    }
                }
                if let Some(text) = e["textPayload"]
                    .as_str()
                    .or(e["jsonPayload"]["message"].as_str())
                {
                    lines.push(text.trim_end().to_string());
                }
                cursor.0 = Some(format!("{ts} {iid}"));
            }
            page = v["nextPageToken"].as_str().map(str::to_string);
            if page.is_none() {
                break;
            }
        }
        Ok(lines)
    }

    async fn stop(&self, name: &str) -> Result<(), UserError> {
        let Some(job) = self
            .find(name)
            .await
            .map_err(|e| e.user(&format!("reading Vertex AI job {name}")))?
        else {
            return Err(UserError::failed(format!(
                "cannot stop Vertex AI job {name}: it does not exist"
            )));
        };
        if state_of(job["state"].as_str().unwrap_or_default()).is_terminal() {
            return Ok(());
        }
        let resource = job["name"].as_str().unwrap_or_default();
        match self
            .client
            .call(
                "customJobs.cancel",
                Method::POST,
                &format!("{}:cancel", self.job_url_of(resource)),
                Some(&json!({})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("FAILED_PRECONDITION") => Ok(()),
            Err(e) => Err(e.user(&format!("cancelling Vertex AI job {name}"))),
        }
    }

    fn job_url(&self, name: &str) -> Option<String> {
        let known = self.ids.lock().expect("ids").get(name).cloned();
        Some(match known.as_deref().map(|r| r.rsplit('/').next().unwrap_or_default().to_string()) {
            Some(id) => format!(
                "https://console.cloud.google.com/vertex-ai/locations/{}/training/{id}/cpu?project={}",
                self.region, self.project
            ),
            None => format!(
                "https://console.cloud.google.com/vertex-ai/training/custom-jobs?project={}",
                self.project
            ),
        })
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn max_poll_interval(&self) -> Duration {
        self.poll_interval * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_specs_split_the_accelerator_and_check_its_family() {
        assert_eq!(
            machine_spec("n1-standard-4+NVIDIA_TESLA_T4", 1).unwrap(),
            json!({"machineType": "n1-standard-4", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 1})
        );
        assert_eq!(
            machine_spec("g2-standard-4", 0).unwrap(),
            json!({"machineType": "g2-standard-4"})
        );
        let e = machine_spec("e2-standard-4+NVIDIA_TESLA_T4", 1).unwrap_err();
        assert!(
            e.contains("attaches to n1 machine types, not to `e2-standard-4`"),
            "{e}"
        );
        let e = machine_spec("n1-standard-4+NVIDIA_TESLA_T5", 1).unwrap_err();
        assert!(
            e.contains("`NVIDIA_TESLA_T5` is not a Vertex AI accelerator type"),
            "{e}"
        );
    }

    #[test]
    fn the_accelerator_list_is_the_discovery_documents() {
        let doc: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/google/aiplatform.v1.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let mut theirs: Vec<&str> = doc["schemas"]["GoogleCloudAiplatformV1MachineSpec"]
            ["properties"]["acceleratorType"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter(|a| *a != "ACCELERATOR_TYPE_UNSPECIFIED")
            .collect();
        let mut ours: Vec<&str> = ACCELERATORS.iter().map(|(n, _)| *n).collect();
        theirs.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn labels_and_fuse_paths() {
        assert_eq!(label_value("Churn-4242-1-AB.c"), "churn-4242-1-ab-c");
        assert_eq!(
            fuse_path("gs://b/data/train/").as_deref(),
            Some("/gcs/b/data/train/")
        );
        assert_eq!(fuse_path("s3://b/x"), None);
    }
}
