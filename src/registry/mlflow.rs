//! The MLflow model registry over MLflow's REST API (`/api/2.0/mlflow/…`, MLflow
//! 2.x and 3.x). A registration records a run in the experiment `mlcd/<model>`
//! (hyperparameters as params, metrics, lineage tags such as
//! `mlflow.source.git.commit` and `mlcd.job-id`, ended `FINISHED`), then a model
//! version of the registered model pointing at the artifact (or the run's
//! artifact URI), tagged with the job id. Aliases are MLflow's own
//! (`registered-models/alias`; stages are deprecated and unused). A commit's
//! version is found through the runs carrying its `mlflow.source.git.commit`
//! tag and their model versions.
//!
//! Auth: `MLFLOW_TRACKING_TOKEN` (Bearer) or `MLFLOW_TRACKING_USERNAME` /
//! `MLFLOW_TRACKING_PASSWORD` (Basic), held as [`Secret`]s. Calls go through the
//! shared [`retry`]: connection errors, 5xx and 429 are retried, other answers
//! are not. Errors carry MLflow's `error_code` and message.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use super::{
    check_alias, check_commit, check_model_name, check_new, ModelRegistry, NewVersion, Version,
};
use crate::cloud::retry::{retry, Backoff};
use crate::error::UserError;
use crate::secrets::{redact, Secret};

const NAME: &str = "mlflow";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// MLflow's limits (mlflow/utils/validation.py).
const MAX_PARAM_VALUE: usize = 6000;
const MAX_TAG_VALUE: usize = 8000;
const MAX_KEY: usize = 250;
const MAX_PARAMS_PER_BATCH: usize = 100;
const MAX_METRICS_PER_BATCH: usize = 1000;
/// Model versions scanned when the server cannot filter them by tag.
const MAX_SCAN_PAGES: usize = 20;
/// Runs of one commit a lookup examines at most (newest first).
const MAX_COMMIT_RUNS: usize = 100;
/// The tag holding the job id, on the run and on the model version.
pub const JOB_TAG: &str = "mlcd.job-id";
/// MLflow's own tag for the commit a run was trained from (shown in its UI).
pub const COMMIT_TAG: &str = "mlflow.source.git.commit";

/// What went wrong calling MLflow, by what a caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlflowError {
    /// MLflow could not be reached or failed on its side (connection error,
    /// timeout, HTTP 5xx or 429). Retried.
    #[error("{0}")]
    Transient(String),
    /// MLflow answered with an error (`RESOURCE_DOES_NOT_EXIST`,
    /// `RESOURCE_ALREADY_EXISTS`, `INVALID_PARAMETER_VALUE`, …). Never retried.
    #[error("MLflow error {code} (HTTP {status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code`, or `HTTP <status>` when the body had none.
        code: String,
        /// MLflow's message.
        message: String,
    },
}

impl MlflowError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, MlflowError::Transient(_))
    }

    /// MLflow's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            MlflowError::Api { code, .. } => Some(code),
            MlflowError::Transient(_) => None,
        }
    }
}

/// How requests authenticate.
#[derive(Clone)]
enum Auth {
    None,
    Bearer(Secret),
    Basic(String, Secret),
}

/// A model registry on an MLflow tracking server.
#[derive(Clone)]
pub struct MlflowRegistry {
    /// The tracking URI as given (no credentials in it), for messages.
    uri: String,
    /// `<uri>/api/2.0/mlflow/`.
    api: Url,
    http: reqwest::Client,
    auth: Auth,
    backoff: Backoff,
}

impl fmt::Debug for MlflowRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Bearer(_) => "MLFLOW_TRACKING_TOKEN",
            Auth::Basic(..) => "MLFLOW_TRACKING_USERNAME/PASSWORD",
        };
        f.debug_struct("MlflowRegistry")
            .field("uri", &self.uri)
            .field("auth", &auth)
            .finish_non_exhaustive()
    }
}

fn var<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

impl MlflowRegistry {
    /// A registry on the tracking server at `uri` (`http(s)://host[:port][/path]`),
    /// authenticating with `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME` /
    /// `MLFLOW_TRACKING_PASSWORD` from `env`; retries with [`Backoff::from_env`].
    pub fn new(uri: &str, env: &BTreeMap<String, String>) -> Result<Self, UserError> {
        let uri = uri.trim().trim_end_matches('/').to_string();
        let parsed = Url::parse(&uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        let Some(parsed) = parsed else {
            return Err(UserError::invalid(format!(
                "the MLflow tracking URI `{}` is not an http(s) URL; mlcd talks to a tracking server over its REST API",
                redact(&uri)
            ))
            .hint("give the server's URL, like http://mlflow.internal:5000 (file:, databricks and sqlite: URIs are not supported)"));
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UserError::invalid(
                "the MLflow tracking URI carries credentials; mlcd does not take them from the URI",
            )
            .hint("remove them from the URI and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) as secrets"));
        }
        let api = Url::parse(&format!("{uri}/api/2.0/mlflow/")).map_err(|e| {
            UserError::invalid(format!(
                "the MLflow tracking URI `{uri}` is not usable: {e}"
            ))
        })?;
        let auth = match (
            var(env, "MLFLOW_TRACKING_TOKEN"),
            var(env, "MLFLOW_TRACKING_USERNAME"),
            var(env, "MLFLOW_TRACKING_PASSWORD"),
        ) {
            (Some(token), _, _) => Auth::Bearer(Secret::new(token)),
            (None, Some(user), Some(pass)) => Auth::Basic(user.to_string(), Secret::new(pass)),
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(UserError::invalid(
                    "MLflow Basic auth needs both MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; only one is set",
                )
                .hint("set both (as secrets), or MLFLOW_TRACKING_TOKEN instead"));
            }
            (None, None, None) => Auth::None,
        };
        let loopback = parsed
            .host_str()
            .is_some_and(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]");
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("mlcd/", env!("CARGO_PKG_VERSION")));
        if loopback {
            builder = builder.no_proxy();
        }
        let http = builder
            .build()
            .map_err(|e| UserError::failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(MlflowRegistry {
            uri,
            api,
            http,
            auth,
            backoff: Backoff::from_env(),
        })
    }

    /// The same registry with another retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The tracking URI.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// One REST call (`GET` with query parameters, or `POST` with a JSON body),
    /// retried on transient failures; the answer's JSON.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, MlflowError> {
        let mut url = self
            .api
            .join(path)
            .map_err(|e| MlflowError::Transient(format!("bad MLflow path {path}: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let what = format!("MLflow {method} {path}");
        retry(&what, &self.backoff, MlflowError::is_transient, || {
            self.once(method.clone(), url.clone(), body)
        })
        .await
    }

    async fn once(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Value, MlflowError> {
        let path = url.path().to_string();
        let mut req = self.http.request(method.clone(), url);
        if let Some(b) = body {
            req = req.json(b);
        }
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        MlflowError::Transient(
                            "MLFLOW_TRACKING_TOKEN is not a valid header value".into(),
                        )
                    })?;
                v.set_sensitive(true);
                req = req.header(AUTHORIZATION, v);
            }
            Auth::Basic(user, pass) => req = req.basic_auth(user, Some(pass.expose())),
        }
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "could not connect"
            } else {
                "failed"
            };
            MlflowError::Transient(redact(&format!(
                "MLflow {method} {path} {kind}: {}",
                error_chain(&e)
            )))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| {
            MlflowError::Transient(format!(
                "reading MLflow's answer to {method} {path} failed: {e}"
            ))
        })?;
        let json: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return if json.is_null() && !bytes.is_empty() {
                Err(MlflowError::Api {
                    status,
                    code: "NOT_JSON".into(),
                    message: format!(
                        "the answer to {method} {path} is not JSON; is this an MLflow tracking server?"
                    ),
                })
            } else {
                Ok(json)
            };
        }
        let message = json["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                if text.is_empty() || text.starts_with('<') {
                    "(no message)".into()
                } else {
                    text.chars().take(300).collect()
                }
            });
        let message = redact(&message);
        let code = json["error_code"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        if status >= 500 || status == 429 {
            return Err(MlflowError::Transient(format!(
                "MLflow answered {method} {path} with HTTP {status} ({code}): {message}"
            )));
        }
        Err(MlflowError::Api {
            status,
            code,
            message,
        })
    }

    /// Turns an error into one that names the registry, the model and the step.
    fn fail(&self, model: &str, doing: &str, e: MlflowError) -> UserError {
        let hint = match &e {
            MlflowError::Transient(_) => format!(
                "is the MLflow server at {} up and reachable from here? Re-run later, or raise MLCD_RETRY_ATTEMPTS / MLCD_RETRY_INITIAL_MS",
                self.uri
            ),
            MlflowError::Api { status: 401 | 403, .. } => String::from(
                "check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, and that the user may write to the registry",
            ),
            MlflowError::Api { status: 404, code, .. } if code.starts_with("HTTP") => format!(
                "{} does not serve MLflow's REST API; check registry.tracking-uri / MLFLOW_TRACKING_URI",
                self.uri
            ),
            MlflowError::Api { .. } => String::from("see MLflow's message above"),
        };
        UserError::failed(redact(&format!(
            "the MLflow registry at {} could not {doing} for model `{model}`: {e}",
            self.uri
        )))
        .hint(hint)
    }

    async fn experiment_id(&self, model: &str) -> Result<String, UserError> {
        let name = format!("mlcd/{model}");
        let get = || async {
            match self
                .call(
                    Method::GET,
                    "experiments/get-by-name",
                    &[("experiment_name", &name)],
                    None,
                )
                .await
            {
                Ok(v) if v["experiment"]["lifecycle_stage"] == "deleted" => Err(UserError::failed(
                    format!(
                        "the MLflow registry at {} could not record a run for model `{model}`: experiment `{name}` is deleted",
                        self.uri
                    ),
                )
                .hint(format!(
                    "restore it (`mlflow experiments restore --experiment-id {}`) or delete it for good from the tracking server's store",
                    v["experiment"]["experiment_id"].as_str().unwrap_or("<id>")
                ))),
                Ok(v) => Ok(v["experiment"]["experiment_id"]
                    .as_str()
                    .map(str::to_string)),
                Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
                Err(e) => Err(self.fail(model, &format!("look up experiment `{name}`"), e)),
            }
        };
        if let Some(id) = get().await? {
            return Ok(id);
        }
        match self
            .call(Method::POST, "experiments/create", &[], Some(&json!({ "name": name })))
            .await
        {
            Ok(v) => v["experiment_id"].as_str().map(str::to_string).ok_or_else(|| {
                UserError::failed(format!(
                    "the MLflow registry at {} created experiment `{name}` but returned no id",
                    self.uri
                ))
            }),
            // Created meanwhile by a concurrent run.
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => get().await?.ok_or_else(|| {
                UserError::failed(format!(
                    "the MLflow registry at {} says experiment `{name}` exists but cannot find it (deleted? restore it with `mlflow experiments restore`)",
                    self.uri
                ))
            }),
            Err(e) => Err(self.fail(model, &format!("create experiment `{name}`"), e)),
        }
    }

    /// Records the run: params, metrics, lineage tags; ends it FINISHED.
    async fn record_run(&self, v: &NewVersion) -> Result<(String, String), UserError> {
        let model = v.model_name.as_str();
        let experiment_id = self.experiment_id(model).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut tags: Vec<(String, String)> = vec![
            (JOB_TAG.into(), v.job_id.clone()),
            ("mlcd.backend".into(), v.backend.clone()),
            ("mlflow.source.type".into(), "JOB".into()),
        ];
        if !v.image.is_empty() {
            tags.push(("mlcd.image".into(), v.image.clone()));
        }
        if let Some(c) = &v.commit {
            tags.push((COMMIT_TAG.into(), c.clone()));
        }
        if let Some(u) = &v.run_url {
            tags.push(("mlcd.run-url".into(), u.clone()));
            tags.push(("mlflow.source.name".into(), u.clone()));
        }
        if let Some(a) = &v.artifact {
            tags.push(("mlcd.artifact".into(), a.clone()));
        }
        if !v.channels.is_empty() {
            let channels = serde_json::to_string(&v.channels).unwrap_or_default();
            tags.push(("mlcd.channels".into(), channels));
        }
        let tags: Vec<Value> = tags
            .into_iter()
            .map(|(k, val)| json!({ "key": k, "value": fit(&k, &val, MAX_TAG_VALUE) }))
            .collect();
        let run = self
            .call(
                Method::POST,
                "runs/create",
                &[],
                Some(&json!({
                    "experiment_id": experiment_id,
                    "run_name": v.job_id,
                    "start_time": now,
                    "tags": tags,
                })),
            )
            .await
            .map_err(|e| self.fail(model, &format!("create a run for job {}", v.job_id), e))?;
        let info = &run["run"]["info"];
        let run_id = info["run_id"]
            .as_str()
            .or_else(|| info["run_uuid"].as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                UserError::failed(format!(
                    "the MLflow registry at {} created a run for model `{model}` but returned no run id",
                    self.uri
                ))
            })?;
        let artifact_uri = info["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string();

        let mut params = Vec::new();
        for (k, val) in &v.hyperparameters {
            if k.chars().count() > MAX_KEY {
                log::warn!("MLflow: hyperparameter name longer than {MAX_KEY} characters not logged as a param: {k:.40}…");
                continue;
            }
            params.push(json!({ "key": k, "value": fit(k, val, MAX_PARAM_VALUE) }));
        }
        let metrics: Vec<Value> = v
            .metrics
            .iter()
            .map(|(k, m)| json!({ "key": k, "value": m, "timestamp": now, "step": 0 }))
            .collect();
        let doing = format!("log the params and metrics of job {}", v.job_id);
        for chunk in params.chunks(MAX_PARAMS_PER_BATCH) {
            self.call(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(&json!({ "run_id": run_id, "params": chunk })),
            )
            .await
            .map_err(|e| self.fail(model, &doing, e))?;
        }
        for chunk in metrics.chunks(MAX_METRICS_PER_BATCH) {
            self.call(
                Method::POST,
                "runs/log-batch",
                &[],
                Some(&json!({ "run_id": run_id, "metrics": chunk })),
            )
            .await
            .map_err(|e| self.fail(model, &doing, e))?;
        }
        self.call(
            Method::POST,
            "runs/update",
            &[],
            Some(&json!({
                "run_id": run_id,
                "status": "FINISHED",
                "end_time": chrono::Utc::now().timestamp_millis(),
            })),
        )
        .await
        .map_err(|e| self.fail(model, &format!("finish the run of job {}", v.job_id), e))?;
        Ok((run_id, artifact_uri))
    }

    /// A version as the server describes it, with its run's metrics.
    async fn to_version(&self, model: &str, mv: &Value) -> Result<Version, UserError> {
        let version = match &mv["version"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let tags: BTreeMap<String, String> = mv["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| {
                Some((
                    t["key"].as_str()?.to_string(),
                    t["value"].as_str()?.to_string(),
                ))
            })
            .collect();
        let mut metrics = BTreeMap::new();
        let mut commit = None;
        if let Some(run_id) = mv["run_id"].as_str().filter(|r| !r.is_empty()) {
            let run = self
                .call(Method::GET, "runs/get", &[("run_id", run_id)], None)
                .await
                .map_err(|e| {
                    self.fail(model, &format!("read run {run_id} of version {version}"), e)
                })?;
            for m in run["run"]["data"]["metrics"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if let (Some(k), Some(val)) = (m["key"].as_str(), m["value"].as_f64()) {
                    metrics.insert(k.to_string(), val);
                }
            }
            commit = run["run"]["data"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["key"] == COMMIT_TAG)
                .and_then(|t| t["value"].as_str())
                .map(str::to_string);
        }
        let aliases = mv["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect();
        Ok(Version {
            model_name: model.to_string(),
            uri: format!("models:/{model}/{version}"),
            version,
            job_id: tags.get(JOB_TAG).cloned(),
            metrics,
            image: tags.get("mlcd.image").cloned(),
            artifact: tags
                .get("mlcd.artifact")
                .cloned()
                .or_else(|| mv["source"].as_str().map(str::to_string)),
            commit: commit.or_else(|| tags.get("mlcd.commit").cloned()),
            aliases,
        })
    }

    async fn model_version(&self, model: &str, version: &str) -> Result<Option<Value>, UserError> {
        match self
            .call(
                Method::GET,
                "model-versions/get",
                &[("name", model), ("version", version)],
                None,
            )
            .await
        {
            Ok(v) => Ok(Some(v["model_version"].clone())),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(self.fail(model, &format!("read version {version}"), e)),
        }
    }

    /// The id of experiment `mlcd/<model>`, if it exists (a lookup creates nothing).
    async fn existing_experiment(&self, model: &str) -> Result<Option<String>, UserError> {
        let name = format!("mlcd/{model}");
        match self
            .call(
                Method::GET,
                "experiments/get-by-name",
                &[("experiment_name", &name)],
                None,
            )
            .await
        {
            Ok(v) => Ok(v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string)),
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => Ok(None),
            Err(e) => Err(self.fail(model, &format!("look up experiment `{name}`"), e)),
        }
    }

    /// The ids of the runs in `experiment_id` trained from `commit` (a full SHA,
    /// checked), newest first, up to [`MAX_COMMIT_RUNS`].
    async fn runs_of_commit(
        &self,
        model: &str,
        experiment_id: &str,
        commit: &str,
    ) -> Result<Vec<String>, UserError> {
        let page = self
            .call(
                Method::POST,
                "runs/search",
                &[],
                Some(&json!({
                    "experiment_ids": [experiment_id],
                    "filter": format!("tags.`{COMMIT_TAG}` = '{commit}'"),
                    "max_results": MAX_COMMIT_RUNS,
                    "order_by": ["attributes.start_time DESC"],
                })),
            )
            .await
            .map_err(|e| self.fail(model, &format!("search the runs of commit {commit}"), e))?;
        if page["next_page_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            log::warn!(
                "MLflow: commit {commit} has more than {MAX_COMMIT_RUNS} runs for model `{model}`; only the newest {MAX_COMMIT_RUNS} were examined"
            );
        }
        Ok(page["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                r["info"]["run_id"]
                    .as_str()
                    .or_else(|| r["info"]["run_uuid"].as_str())
            })
            // Run ids are hex; anything else cannot go into a filter unquoted.
            .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
            .map(str::to_string)
            .collect())
    }

    /// The highest version of `model` among those registered from `run_id`.
    async fn newest_of_run(
        &self,
        model: &str,
        run_id: &str,
    ) -> Result<Option<(u64, Value)>, UserError> {
        // Filtered on the run only, the name is compared here: no model name
        // needs quoting inside a filter.
        let filter = format!("run_id='{run_id}'");
        let mut newest: Option<(u64, Value)> = None;
        let mut token = String::new();
        for _ in 0..MAX_SCAN_PAGES {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page = self
                .call(Method::GET, "model-versions/search", &query, None)
                .await
                .map_err(|e| {
                    self.fail(model, &format!("search the versions of run {run_id}"), e)
                })?;
            for mv in page["model_versions"].as_array().into_iter().flatten() {
                if mv["name"] != model {
                    continue;
                }
                if let Some(n) = version_number(mv) {
                    if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                        newest = Some((n, mv.clone()));
                    }
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => break,
            }
        }
        Ok(newest)
    }

    /// Finds a version by job with a client-side scan of the model's versions
    /// (for servers whose search does not filter on tags).
    async fn scan_for_job(&self, model: &str, job_id: &str) -> Result<Option<Value>, UserError> {
        let filter = format!("name='{}'", model.replace('\'', "\\'"));
        let mut token = String::new();
        for _ in 0..MAX_SCAN_PAGES {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page = self
                .call(Method::GET, "model-versions/search", &query, None)
                .await
                .map_err(|e| {
                    self.fail(model, &format!("search the versions for job {job_id}"), e)
                })?;
            for mv in page["model_versions"].as_array().into_iter().flatten() {
                let has = mv["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["key"] == JOB_TAG && t["value"] == job_id);
                if has {
                    return Ok(Some(mv.clone()));
                }
            }
            match page["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = t.to_string(),
                _ => return Ok(None),
            }
        }
        log::warn!(
            "MLflow: stopped looking for job {job_id} after {} versions of model `{model}`",
            MAX_SCAN_PAGES * 200
        );
        Ok(None)
    }
}

#[async_trait]
impl ModelRegistry for MlflowRegistry {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn register(&self, v: &NewVersion) -> Result<Version, UserError> {
        check_new(NAME, v)?;
        let model = v.model_name.as_str();
        let (run_id, run_artifacts) = self.record_run(v).await?;
        match self
            .call(
                Method::POST,
                "registered-models/create",
                &[],
                Some(&json!({ "name": model })),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("RESOURCE_ALREADY_EXISTS") => {}
            Err(e) => return Err(self.fail(model, "create the registered model", e)),
        }
        // A URI (s3://, gs://, https://) is a source the server accepts; a local
        // path is not (it must lie inside the run's artifacts), so the version then
        // points at the run's artifacts and the path stays in the `mlcd.artifact` tag.
        let source = match &v.artifact {
            Some(a) if a.contains("://") => a.clone(),
            _ if !run_artifacts.is_empty() => run_artifacts,
            _ => format!("runs:/{run_id}/model"),
        };
        let mut tags = vec![json!({ "key": JOB_TAG, "value": v.job_id })];
        if !v.image.is_empty() {
            tags.push(json!({ "key": "mlcd.image", "value": v.image }));
        }
        if let Some(a) = &v.artifact {
            tags.push(json!({ "key": "mlcd.artifact", "value": a }));
        }
        if let Some(c) = &v.commit {
            tags.push(json!({ "key": "mlcd.commit", "value": c }));
        }
        let mut body = json!({
            "name": model,
            "source": source,
            "run_id": run_id,
            "tags": tags,
            "description": format!("trained by mlcd job {}", v.job_id),
        });
        if let Some(u) = &v.run_url {
            body["run_link"] = json!(u);
        }
        let created = self
            .call(Method::POST, "model-versions/create", &[], Some(&body))
            .await
            .map_err(|e| self.fail(model, &format!("create a version for job {}", v.job_id), e))?;
        let mut mv = created["model_version"].clone();
        let version = match &mv["version"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if let Some(alias) = &v.alias {
            self.set_alias(model, &version, alias).await?;
            mv["aliases"] = json!([alias]);
        }
        self.to_version(model, &mv).await
    }

    async fn find_by_job(&self, model: &str, job_id: &str) -> Result<Option<Version>, UserError> {
        check_model_name(NAME, model)?;
        let quoted = |s: &str| !s.contains(['\'', '"', '`', '\\']);
        let found = if quoted(model) && quoted(job_id) {
            let filter = format!("name='{model}' and tags.`{JOB_TAG}`='{job_id}'");
            match self
                .call(
                    Method::GET,
                    "model-versions/search",
                    &[("filter", filter.as_str()), ("max_results", "10")],
                    None,
                )
                .await
            {
                Ok(page) => page["model_versions"]
                    .as_array()
                    .and_then(|a| {
                        a.iter().min_by_key(|mv| {
                            mv["version"]
                                .as_str()
                                .and_then(|v| v.parse::<u64>().ok())
                                .unwrap_or(u64::MAX)
                        })
                    })
                    .cloned(),
                // Servers before 2.x filter model versions on name and run_id only.
                Err(e) if e.code() == Some("INVALID_PARAMETER_VALUE") => {
                    self.scan_for_job(model, job_id).await?
                }
                Err(e) => {
                    return Err(self.fail(model, &format!("search the version of job {job_id}"), e))
                }
            }
        } else {
            self.scan_for_job(model, job_id).await?
        };
        let Some(mv) = found else { return Ok(None) };
        // Search results carry no aliases: read the version itself.
        let version = mv["version"].as_str().unwrap_or_default().to_string();
        let mv = self.model_version(model, &version).await?.unwrap_or(mv);
        Ok(Some(self.to_version(model, &mv).await?))
    }

    async fn find_by_commit(
        &self,
        model: &str,
        commit: &str,
    ) -> Result<Option<Version>, UserError> {
        check_model_name(NAME, model)?;
        check_commit(NAME, commit)?;
        let Some(experiment_id) = self.existing_experiment(model).await? else {
            return Ok(None);
        };
        let mut newest: Option<(u64, Value)> = None;
        for run_id in self.runs_of_commit(model, &experiment_id, commit).await? {
            if let Some((n, mv)) = self.newest_of_run(model, &run_id).await? {
                if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                    newest = Some((n, mv));
                }
            }
        }
        let Some((n, mv)) = newest else {
            return Ok(None);
        };
        // Search results carry no aliases: read the version itself.
        let mv = self
            .model_version(model, &n.to_string())
            .await?
            .unwrap_or(mv);
        Ok(Some(self.to_version(model, &mv).await?))
    }

    async fn by_alias(&self, model: &str, alias: &str) -> Result<Option<Version>, UserError> {
        check_model_name(NAME, model)?;
        check_alias(NAME, alias)?;
        // registered-models/get lists the aliases; a missing alias is not an error
        // there (`registered-models/alias` answers INVALID_PARAMETER_VALUE for it).
        let rm = match self
            .call(
                Method::GET,
                "registered-models/get",
                &[("name", model)],
                None,
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.code() == Some("RESOURCE_DOES_NOT_EXIST") => return Ok(None),
            Err(e) => return Err(self.fail(model, &format!("look up alias `{alias}`"), e)),
        };
        let version = rm["registered_model"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["alias"] == alias)
            .and_then(|a| match &a["version"] {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
        let Some(version) = version else {
            return Ok(None);
        };
        match self.model_version(model, &version).await? {
            Some(mv) => Ok(Some(self.to_version(model, &mv).await?)),
            None => Ok(None),
        }
    }

    async fn recent(&self, model: &str, n: usize) -> Result<Vec<Version>, UserError> {
        check_model_name(NAME, model)?;
        // Model names are checked slugs: nothing in them needs quoting in a filter.
        let filter = format!("name='{model}'");
        let max = n.clamp(1, 200).to_string();
        let page = self
            .call(
                Method::GET,
                "model-versions/search",
                &[
                    ("filter", filter.as_str()),
                    ("max_results", max.as_str()),
                    ("order_by", "version_number DESC"),
                ],
                None,
            )
            .await
            .map_err(|e| self.fail(model, "list the newest versions", e))?;
        let mut newest: Vec<(u64, Value)> = page["model_versions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|mv| mv["name"] == model)
            .filter_map(|mv| Some((version_number(mv)?, mv.clone())))
            .collect();
        newest.sort_by_key(|(v, _)| *v);
        let skip = newest.len().saturating_sub(n);
        let mut out = Vec::new();
        for (_, mv) in newest.into_iter().skip(skip) {
            out.push(self.to_version(model, &mv).await?);
        }
        Ok(out)
    }

    async fn set_alias(&self, model: &str, version: &str, alias: &str) -> Result<(), UserError> {
        check_model_name(NAME, model)?;
        check_alias(NAME, alias)?;
        self.call(
            Method::POST,
            "registered-models/alias",
            &[],
            Some(&json!({ "name": model, "alias": alias, "version": version })),
        )
        .await
        .map_err(|e| {
            self.fail(
                model,
                &format!("point alias `{alias}` at version {version}"),
                e,
            )
        })?;
        Ok(())
    }
}

/// `value`, cut to `max` characters (MLflow refuses longer ones), with a warning.
fn fit(key: &str, value: &str, max: usize) -> String {
    if value.chars().count() <= max {
        return value.to_string();
    }
    log::warn!("MLflow: `{key}` is longer than MLflow's {max} characters; recorded cut short");
    let mut cut: String = value.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// A model version's number (the REST API gives it as a string).
fn version_number(mv: &Value) -> Option<u64> {
    match &mv["version"] {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

/// An error and its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tracking_uris_must_be_http_without_credentials() {
        MlflowRegistry::new("http://127.0.0.1:5000/", &env(&[])).unwrap();
        let err = MlflowRegistry::new("file:///tmp/mlruns", &env(&[])).unwrap_err();
        assert!(err.message.contains("not an http(s) URL"), "{err}");
        let err =
            MlflowRegistry::new("https://bob:hunter2secret@mlflow.example", &env(&[])).unwrap_err();
        assert!(!err.to_string().contains("hunter2secret"), "{err}");
        assert!(err.hint.unwrap().contains("MLFLOW_TRACKING_USERNAME"));
    }

    #[test]
    fn credentials_never_print() {
        let r = MlflowRegistry::new(
            "http://127.0.0.1:5000",
            &env(&[("MLFLOW_TRACKING_TOKEN", "tok-very-secret-123")]),
        )
        .unwrap();
        assert!(!format!("{r:?}").contains("tok-very-secret-123"));
        let err = MlflowRegistry::new(
            "http://127.0.0.1:5000",
            &env(&[("MLFLOW_TRACKING_USERNAME", "bob")]),
        )
        .unwrap_err();
        assert!(err.message.contains("MLFLOW_TRACKING_PASSWORD"), "{err}");
    }

    #[test]
    fn long_values_are_cut_to_mlflow_limits() {
        let long = "x".repeat(MAX_PARAM_VALUE + 10);
        assert_eq!(
            fit("k", &long, MAX_PARAM_VALUE).chars().count(),
            MAX_PARAM_VALUE
        );
        assert_eq!(fit("k", "short", MAX_PARAM_VALUE), "short");
    }
}
