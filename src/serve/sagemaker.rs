//! The Amazon SageMaker serving backend. A version is a SageMaker Model
//! (`<endpoint>-<version>`) behind a production (or shadow) variant named after
//! the version; every change writes a new endpoint configuration
//! (`<endpoint>-c<stamp>`) and points the endpoint at it with
//! CreateEndpoint/UpdateEndpoint. Traffic moves with
//! UpdateEndpointWeightsAndCapacities, one version is invoked through the
//! runtime API with `X-Amzn-SageMaker-Target-Variant`. mlcd never starts an
//! update while another one is under way: SageMaker would refuse it, and the
//! other deployment's state would be lost.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde_json::{json, Map, Value};

use super::{
    Answer, EndpointState, EndpointStatus, Invocation, ServingBackend, Variant, VersionSpec,
};
use crate::cloud::aws::{self, AwsClient, AwsCredentials, AwsError, ToSign};
use crate::cloud::sts;
use crate::config::values::Protocol;
use crate::error::UserError;
use crate::identity::Recorded;
use crate::plan::SagemakerPlan;
use crate::train::poll_interval_from_env;
use crate::train::sagemaker::{check_role, is_s3_uri, recorded_from_tags, sagemaker_tags};

/// How often an endpoint under change is described by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// How long a blue/green update watches its alarms before it shifts traffic
/// and before it terminates the old fleet, unless [`SagemakerServing::with_bake_time`].
pub const DEFAULT_BAKE_TIME: Duration = Duration::from_secs(300);

/// The SageMaker runtime API (`runtime.sagemaker.{region}.amazonaws.com`, signed
/// as `sagemaker`; overridden by `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`).
pub const RUNTIME: aws::Service = aws::Service {
    id: "SageMaker Runtime",
    signing_name: "sagemaker",
    host_prefix: "runtime.sagemaker",
};

const TARGET_PREFIX: &str = "SageMaker.";
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);
const BUSY: &str =
    "the endpoint is being updated by another deployment; mlcd does not start a second update";

/// One variant of an endpoint configuration, as mlcd rewrites it.
#[derive(Debug, Clone, PartialEq)]
struct Slot {
    version: String,
    model: String,
    instance_type: String,
    count: u64,
    weight: f64,
    shadow: bool,
}

/// An endpoint as it is now: its state and the variants of its configuration.
#[derive(Debug)]
struct Current {
    state: EndpointState,
    slots: Vec<Slot>,
}

/// The SageMaker serving backend for one region and execution role.
#[derive(Debug)]
pub struct SagemakerServing {
    client: AwsClient,
    credentials: AwsCredentials,
    http: reqwest::Client,
    api: String,
    runtime: String,
    /// CloudWatch's endpoint (the live guards' metrics).
    monitoring: String,
    region: String,
    role_arn: String,
    alarms: Vec<String>,
    bake_time: Duration,
    /// Whether the live guards read CloudWatch between steps (only when a
    /// `rollback.max-*` limit is set: it needs `cloudwatch:GetMetricData`).
    guarded: bool,
    /// Data capture on every endpoint configuration: (sampling %, S3 URI).
    capture: Option<(u8, String)>,
    poll_interval: Duration,
    /// Model name → image: models never change, so one DescribeModel each.
    images: Mutex<HashMap<String, String>>,
}

impl SagemakerServing {
    /// A backend for `plan`'s region and role, with credentials resolved from
    /// `env` (static keys, else a web identity through STS) and endpoints from
    /// `AWS_ENDPOINT_URL_SAGEMAKER` / `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` /
    /// `AWS_ENDPOINT_URL` when set. No SageMaker request is made here.
    pub async fn new(
        plan: &SagemakerPlan,
        env: &BTreeMap<String, String>,
    ) -> Result<Self, UserError> {
        let region = plan.region.trim();
        if region.is_empty() {
            return Err(UserError::invalid(
                "SageMaker needs a region: `sagemaker.region` is not set and neither is AWS_REGION",
            )
            .hint("set `sagemaker.region` in mlcd.yml, or AWS_REGION (aws-actions/configure-aws-credentials sets it)"));
        }
        if !aws::is_region(region) {
            return Err(UserError::invalid(format!(
                "`sagemaker.region` is `{region}`, which is not an AWS region name (like us-east-1)"
            ))
            .hint("set `sagemaker.region` or AWS_REGION to the region your endpoints run in"));
        }
        let api = aws::endpoint(&aws::SAGEMAKER, region, env)?;
        let runtime = aws::endpoint(&RUNTIME, region, env)?;
        let monitoring = aws::endpoint(&aws::CLOUDWATCH, region, env)?;
        let credentials = sts::resolve_credentials(env).await.map_err(|e| UserError {
            message: format!("cannot call SageMaker: {}", e.message),
            ..e
        })?;
        let client = AwsClient::new(credentials.clone(), region).map_err(UserError::from)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(INVOKE_TIMEOUT)
            .user_agent(concat!("mlcd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| UserError::failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(SagemakerServing {
            client,
            credentials,
            http,
            api: api.trim_end_matches('/').to_string(),
            runtime: runtime.trim_end_matches('/').to_string(),
            monitoring: monitoring.trim_end_matches('/').to_string(),
            region: region.to_string(),
            role_arn: plan.role_arn.trim().to_string(),
            alarms: Vec::new(),
            bake_time: DEFAULT_BAKE_TIME,
            guarded: false,
            capture: None,
            poll_interval: poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            images: Mutex::new(HashMap::new()),
        })
    }

    /// CloudWatch alarms (`rollback.alarms`) that roll an update back: every
    /// UpdateEndpoint then carries a blue/green DeploymentConfig (all at once,
    /// baked for [`Self::with_bake_time`]) with these alarms for auto-rollback.
    pub fn with_alarms(mut self, alarms: Vec<String>) -> Self {
        self.alarms = alarms
            .into_iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        self
    }

    /// Data capture (`deploy.capture`): every endpoint configuration mlcd
    /// writes carries a `DataCaptureConfig` capturing this share of requests
    /// and their answers to `s3_uri` (JSON and CSV as text, like the local
    /// endpoint's capture files).
    pub fn with_capture(mut self, capture: Option<(u8, String)>) -> Self {
        self.capture = capture;
        self
    }

    /// The `DataCaptureConfig` of a new endpoint configuration.
    pub fn data_capture_config(&self) -> Option<Value> {
        let (sample, uri) = self.capture.as_ref()?;
        Some(json!({
            "EnableCapture": true,
            "InitialSamplingPercentage": sample,
            "DestinationS3Uri": uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {
                "CsvContentTypes": crate::serve::capture::CSV_CONTENT_TYPES,
                "JsonContentTypes": crate::serve::capture::JSON_CONTENT_TYPES,
            },
        }))
    }

    /// Reads the variants' CloudWatch metrics for the live guards between
    /// steps (`rollback.max-error-rate` / `max-p95-latency` set).
    pub fn with_guards(mut self, guarded: bool) -> Self {
        self.guarded = guarded;
        self
    }

    /// How long SageMaker watches the alarms before shifting traffic, and
    /// before it terminates the old fleet (0 to 3600 s; default 5 min).
    pub fn with_bake_time(mut self, bake_time: Duration) -> Self {
        self.bake_time = bake_time;
        self
    }

    async fn call(&self, operation: &str, body: &Value) -> Result<Value, AwsError> {
        self.client
            .json_call(
                aws::SAGEMAKER.signing_name,
                &self.api,
                &format!("{TARGET_PREFIX}{operation}"),
                body,
            )
            .await
    }

    /// The failed call, with what to do about it.
    fn error(&self, operation: &str, name: &str, e: AwsError) -> UserError {
        let hint = match (&e, e.code()) {
            (AwsError::Auth { .. }, _) => Some(
                "the AWS credentials were refused or may not make this call: check the role \
                 aws-actions/configure-aws-credentials assumed (it needs sagemaker:*Model*, \
                 sagemaker:*Endpoint*, sagemaker:InvokeEndpoint and iam:PassRole on the execution \
                 role), and that its session has not expired"
                    .to_string(),
            ),
            (_, Some("ResourceLimitExceeded")) => Some(format!(
                "your account's SageMaker quota in {} is used up: delete unused endpoints, or \
                 request an increase in Service Quotas (endpoint usage for the instance type)",
                self.region
            )),
            (_, Some("ValidationException")) => Some(
                "SageMaker refused the request: check the instance type (`deploy.instance`), the \
                 execution role (`sagemaker.role-arn`), the image and the model data location"
                    .to_string(),
            ),
            (AwsError::Throttled { .. } | AwsError::Transient(_), _) => Some(
                "SageMaker did not answer in time; re-run later, or raise MLCD_RETRY_ATTEMPTS / \
                 MLCD_RETRY_INITIAL_MS"
                    .to_string(),
            ),
            _ => None,
        };
        let base = UserError::from(e);
        let err = UserError::failed(format!(
            "SageMaker {operation} for `{name}`: {}",
            base.message
        ));
        match hint.or(base.hint) {
            Some(h) => err.hint(h),
            None => err,
        }
    }

    /// The CreateModel request for `spec`, or why SageMaker would refuse it.
    pub fn model_request(&self, spec: &VersionSpec) -> Result<Value, UserError> {
        self.check(spec)?;
        let mut container = json!({ "Image": spec.image });
        if let Some(data) = &spec.model_data {
            container["ModelDataUrl"] = json!(data);
        }
        let environment = environment(spec)?;
        if !environment.is_empty() {
            container["Environment"] = Value::Object(environment);
        }
        let mut body = json!({
            "ModelName": model_name(&spec.endpoint, &spec.version),
            "PrimaryContainer": container,
            "ExecutionRoleArn": self.role_arn,
        });
        let tags = sagemaker_tags(&spec.all_tags())?;
        if !tags.is_empty() {
            body["Tags"] = Value::Array(tags);
        }
        Ok(body)
    }

    /// Everything checked before a request: names, role, instance, model data.
    fn check(&self, spec: &VersionSpec) -> Result<(), UserError> {
        check_name(
            &spec.endpoint,
            "the endpoint name (`deploy.endpoint` / `model-id`)",
        )?;
        check_name(&spec.version, "the version id")?;
        check_name(
            &model_name(&spec.endpoint, &spec.version),
            "the SageMaker model name `<endpoint>-<version>`",
        )?;
        if self.role_arn.is_empty() {
            return Err(UserError::invalid(
                "SageMaker endpoints need an execution role: `sagemaker.role-arn` is not set",
            )
            .hint("set `sagemaker.role-arn` or the `iam-role-arn` input to the role SageMaker assumes to pull the image and the model data, like arn:aws:iam::123456789012:role/sagemaker-serve"));
        }
        check_role(&self.role_arn)?;
        let native = spec.instance.native.as_str();
        if !native.starts_with("ml.") {
            return Err(UserError::invalid(format!(
                "instance `{}` runs as `{native}`, which is not a SageMaker instance type (they start with `ml.`, like ml.m5.large)",
                spec.instance.requested
            ))
            .hint("set `deploy.instance` (or the `instance` input) to a portable name like cpu.small or a native ml.* type"));
        }
        if spec.replicas == 0 {
            return Err(UserError::invalid(
                "`deploy.replicas` is 0: a SageMaker variant needs at least one instance",
            ));
        }
        if let Some(data) = &spec.model_data {
            if !is_s3_uri(data) {
                return Err(UserError::invalid(format!(
                    "the model data `{data}` is not an s3:// URI: SageMaker downloads model.tar.gz from S3"
                ))
                .hint("deploy a model trained on SageMaker (its artifact is in S3), or upload model.tar.gz to s3://<bucket>/<key> and give that"));
            }
        }
        if spec.image.trim().is_empty() || spec.image.len() > 255 {
            return Err(UserError::invalid(format!(
                "the serving image `{}` must be 1 to 255 characters for SageMaker",
                spec.image
            ))
            .hint("give the image as <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> or @digest"));
        }
        if spec.protocol != Protocol::Sagemaker {
            return Err(UserError::invalid(
                "SageMaker endpoints call the container's `GET /ping` and `POST /invocations`: the Open Inference Protocol v2 (`protocol: v2`) is not served by this backend",
            )
            .hint("use `protocol: sagemaker` with backend sagemaker, or serve v2 with the local or kubernetes backend"));
        }
        environment(spec)?;
        sagemaker_tags(&spec.all_tags())?;
        Ok(())
    }

    /// DescribeEndpoint; `None` when there is no such endpoint.
    async fn describe(&self, endpoint: &str) -> Result<Option<Value>, UserError> {
        match self
            .call("DescribeEndpoint", &json!({ "EndpointName": endpoint }))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("DescribeEndpoint", endpoint, e)),
        }
    }

    /// The endpoint's state and configuration variants, with their live
    /// weights and instance counts.
    async fn current(&self, endpoint: &str) -> Result<Option<Current>, UserError> {
        let Some(d) = self.describe(endpoint).await? else {
            return Ok(None);
        };
        let state = parse_state(&d)?;
        let config_name = d["EndpointConfigName"].as_str().unwrap_or_default();
        let config = self
            .call(
                "DescribeEndpointConfig",
                &json!({ "EndpointConfigName": config_name }),
            )
            .await
            .map_err(|e| self.error("DescribeEndpointConfig", config_name, e))?;
        let live = |list: &str, name: &str| -> Option<Value> {
            d[list]
                .as_array()?
                .iter()
                .find(|v| v["VariantName"] == name)
                .cloned()
        };
        let mut slots = Vec::new();
        for (list, shadow) in [
            ("ProductionVariants", false),
            ("ShadowProductionVariants", true),
        ] {
            for v in config[list].as_array().into_iter().flatten() {
                let version = v["VariantName"].as_str().unwrap_or_default().to_string();
                let now = live(list, &version).unwrap_or(Value::Null);
                slots.push(Slot {
                    model: v["ModelName"].as_str().unwrap_or_default().to_string(),
                    instance_type: v["InstanceType"].as_str().unwrap_or_default().to_string(),
                    count: now["CurrentInstanceCount"]
                        .as_u64()
                        .or(v["InitialInstanceCount"].as_u64())
                        .unwrap_or(1)
                        .max(1),
                    weight: now["CurrentWeight"]
                        .as_f64()
                        .or(v["InitialVariantWeight"].as_f64())
                        .unwrap_or(1.0),
                    shadow,
                    version,
                });
            }
        }
        Ok(Some(Current { state, slots }))
    }

    /// The endpoint's current state allows a change, or a clear refusal.
    fn may_change(&self, endpoint: &str, state: EndpointState) -> Result<(), UserError> {
        if state == EndpointState::InService {
            return Ok(());
        }
        if state.is_changing() {
            return Err(UserError::failed(format!(
                "SageMaker endpoint `{endpoint}` is {state:?}: {BUSY}"
            ))
            .hint("wait until the endpoint is InService again (see it in the SageMaker console), then re-run the deployment"));
        }
        Err(UserError::failed(format!(
            "SageMaker endpoint `{endpoint}` is {state:?}: it cannot be updated"
        ))
        .hint("look at its FailureReason in the SageMaker console; delete the endpoint (mlcd teardown) and deploy again, or fix it by hand"))
    }

    /// A new endpoint configuration holding `slots`; returns its name.
    async fn write_config(
        &self,
        endpoint: &str,
        slots: &[Slot],
        tags: &[Value],
    ) -> Result<String, UserError> {
        let name = config_name(endpoint);
        let entry = |s: &Slot| {
            json!({
                "VariantName": s.version,
                "ModelName": s.model,
                "InstanceType": s.instance_type,
                "InitialInstanceCount": s.count,
                "InitialVariantWeight": s.weight,
            })
        };
        let production: Vec<Value> = slots.iter().filter(|s| !s.shadow).map(entry).collect();
        let shadows: Vec<Value> = slots.iter().filter(|s| s.shadow).map(entry).collect();
        let mut body = json!({
            "EndpointConfigName": name,
            "ProductionVariants": production,
        });
        if !shadows.is_empty() {
            body["ShadowProductionVariants"] = Value::Array(shadows);
        }
        if let Some(capture) = self.data_capture_config() {
            body["DataCaptureConfig"] = capture;
        }
        if !tags.is_empty() {
            body["Tags"] = Value::Array(tags.to_vec());
        }
        self.call("CreateEndpointConfig", &body)
            .await
            .map_err(|e| self.error("CreateEndpointConfig", &name, e))?;
        Ok(name)
    }

    /// The UpdateEndpoint request pointing `endpoint` at `config`.
    pub fn update_request(&self, endpoint: &str, config: &str) -> Value {
        let mut body = json!({ "EndpointName": endpoint, "EndpointConfigName": config });
        if !self.alarms.is_empty() {
            let bake = self.bake_time.as_secs().min(3600);
            body["DeploymentConfig"] = json!({
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "ALL_AT_ONCE",
                        "WaitIntervalInSeconds": bake,
                    },
                    "TerminationWaitInSeconds": bake,
                },
                "AutoRollbackConfiguration": {
                    "Alarms": self.alarms.iter().map(|a| json!({ "AlarmName": a })).collect::<Vec<_>>(),
                },
            });
        }
        body
    }

    /// Replaces the endpoint's configuration with `slots` (the endpoint was
    /// seen InService just before).
    async fn update(
        &self,
        endpoint: &str,
        slots: &[Slot],
        tags: &[Value],
    ) -> Result<(), UserError> {
        let config = self.write_config(endpoint, slots, tags).await?;
        match self
            .call("UpdateEndpoint", &self.update_request(endpoint, &config))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_busy(&e) => {
                // Someone started an update between our describe and ours.
                let _ = self
                    .call(
                        "DeleteEndpointConfig",
                        &json!({ "EndpointConfigName": config }),
                    )
                    .await;
                Err(UserError::failed(format!(
                    "SageMaker endpoint `{endpoint}` started changing just now: {BUSY}"
                ))
                .hint("wait until the endpoint is InService again, then re-run the deployment"))
            }
            Err(e) => Err(self.error("UpdateEndpoint", endpoint, e)),
        }
    }

    /// CreateModel, or the same model again on a re-run.
    async fn ensure_model(&self, spec: &VersionSpec) -> Result<(), UserError> {
        let body = self.model_request(spec)?;
        let name = model_name(&spec.endpoint, &spec.version);
        match self.call("CreateModel", &body).await {
            Ok(_) => Ok(()),
            Err(e)
                if e.code() == Some("ValidationException")
                    && e.to_string().contains("already existing model") =>
            {
                let image = self.model_image(&name).await?;
                if image == spec.image {
                    log::info!(
                        "SageMaker model `{name}` exists already with the same image: reused"
                    );
                    Ok(())
                } else {
                    Err(UserError::failed(format!(
                        "SageMaker model `{name}` exists already with image `{image}`, not `{}`",
                        spec.image
                    ))
                    .hint("deploy under a new version id, or delete the model `{name}` in SageMaker first".replace("{name}", &name)))
                }
            }
            Err(e) => Err(self.error("CreateModel", &name, e)),
        }
    }

    /// The image of a model (cached: models are immutable).
    async fn model_image(&self, model: &str) -> Result<String, UserError> {
        if let Some(i) = self.images.lock().unwrap().get(model) {
            return Ok(i.clone());
        }
        let d = self
            .call("DescribeModel", &json!({ "ModelName": model }))
            .await
            .map_err(|e| self.error("DescribeModel", model, e))?;
        let image = d["PrimaryContainer"]["Image"]
            .as_str()
            .or(d["Containers"][0]["Image"].as_str())
            .unwrap_or_default()
            .to_string();
        self.images
            .lock()
            .unwrap()
            .insert(model.to_string(), image.clone());
        Ok(image)
    }

    /// The images of the endpoint's variants that DescribeEndpoint did not name
    /// (it lists DeployedImages only once instances run).
    async fn variant_images(&self, d: &Value) -> Result<HashMap<String, String>, UserError> {
        let config_name = d["EndpointConfigName"].as_str().unwrap_or_default();
        let config = self
            .call(
                "DescribeEndpointConfig",
                &json!({ "EndpointConfigName": config_name }),
            )
            .await
            .map_err(|e| self.error("DescribeEndpointConfig", config_name, e))?;
        let mut out = HashMap::new();
        for list in ["ProductionVariants", "ShadowProductionVariants"] {
            for v in config[list].as_array().into_iter().flatten() {
                if let (Some(variant), Some(model)) =
                    (v["VariantName"].as_str(), v["ModelName"].as_str())
                {
                    out.insert(variant.to_string(), self.model_image(model).await?);
                }
            }
        }
        Ok(out)
    }

    /// Deletes one resource, logging (not failing) when it cannot.
    async fn delete_quietly(&self, operation: &str, member: &str, name: &str) {
        if let Err(e) = self.call(operation, &json!({ member: name })).await {
            if !is_not_found(&e) {
                log::warn!("SageMaker {operation} for `{name}` failed (left behind): {e}");
            }
        }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/endpoints/{endpoint}/invocations", self.runtime)
    }
}

#[async_trait]
impl ServingBackend for SagemakerServing {
    fn name(&self) -> &'static str {
        "sagemaker"
    }

    /// The variants' CloudWatch metrics since the mark (sagemaker_metrics.rs).
    async fn version_stats(
        &self,
        endpoint: &str,
        mark: &super::stats::TrafficMark,
    ) -> Result<Option<BTreeMap<String, super::stats::VersionStats>>, UserError> {
        if !self.guarded {
            return Ok(None);
        }
        let Some(status) = self.status(endpoint).await? else {
            return Ok(None);
        };
        let variants: Vec<String> = status.variants.iter().map(|v| v.version.clone()).collect();
        let (stats, p95_error) = super::sagemaker_metrics::variant_stats(
            &self.client,
            &self.monitoring,
            endpoint,
            &variants,
            mark.at,
            std::time::SystemTime::now(),
        )
        .await?;
        if let Some(e) = p95_error {
            log::warn!(
                "CloudWatch did not answer the p95 of ModelLatency for {endpoint} ({e}): `rollback.max-p95-latency` is not applied to this step"
            );
        }
        Ok(Some(stats))
    }

    async fn preflight(&self, spec: &VersionSpec) -> Result<(), UserError> {
        self.check(spec)
    }

    async fn owner(&self, endpoint: &str) -> Result<Recorded, UserError> {
        let Some(d) = self.describe(endpoint).await? else {
            return Ok(Recorded::Absent);
        };
        let arn = d["EndpointArn"].as_str().unwrap_or_default();
        let tags = self
            .call(
                "ListTags",
                &json!({ "ResourceArn": arn, "MaxResults": 100 }),
            )
            .await
            .map_err(|e| self.error("ListTags", endpoint, e))?;
        Ok(recorded_from_tags(&tags))
    }

    async fn status(&self, endpoint: &str) -> Result<Option<EndpointStatus>, UserError> {
        let Some(d) = self.describe(endpoint).await? else {
            return Ok(None);
        };
        let state = parse_state(&d)?;
        let deployed = |v: &Value| {
            v["DeployedImages"][0]["SpecifiedImage"]
                .as_str()
                .map(str::to_string)
        };
        let lists = [
            ("ProductionVariants", false),
            ("ShadowProductionVariants", true),
        ];
        let all_named = lists.iter().all(|(list, _)| {
            d[*list]
                .as_array()
                .into_iter()
                .flatten()
                .all(|v| deployed(v).is_some())
        });
        let images = if all_named {
            HashMap::new()
        } else {
            self.variant_images(&d).await?
        };
        let production_total: f64 = d["ProductionVariants"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| v["CurrentWeight"].as_f64().unwrap_or(0.0))
            .sum();
        let mut variants = Vec::new();
        for (list, shadow) in lists {
            for v in d[list].as_array().into_iter().flatten() {
                let version = v["VariantName"].as_str().unwrap_or_default().to_string();
                let weight = if shadow || production_total <= 0.0 {
                    0
                } else {
                    let w = v["CurrentWeight"].as_f64().unwrap_or(0.0);
                    (w / production_total * 100.0).round().clamp(0.0, 100.0) as u8
                };
                let ready = match v["CurrentInstanceCount"].as_u64() {
                    Some(n) => n >= 1,
                    None => state == EndpointState::InService,
                };
                variants.push(Variant {
                    image: deployed(v)
                        .or_else(|| images.get(&version).cloned())
                        .unwrap_or_default(),
                    version,
                    weight,
                    shadow,
                    ready,
                    url: None,
                });
            }
        }
        Ok(Some(EndpointStatus {
            name: endpoint.to_string(),
            state,
            failure_reason: d["FailureReason"].as_str().map(str::to_string),
            url: Some(self.url(endpoint)),
            variants,
        }))
    }

    async fn deploy(&self, spec: &VersionSpec, shadow: bool) -> Result<(), UserError> {
        self.check(spec)?;
        let endpoint = spec.endpoint.as_str();
        let current = self.current(endpoint).await?;
        let tags = sagemaker_tags(&spec.all_tags())?;
        let mut new = Slot {
            version: spec.version.clone(),
            model: model_name(endpoint, &spec.version),
            instance_type: spec.instance.native.clone(),
            count: u64::from(spec.replicas),
            weight: 1.0,
            shadow,
        };
        let Some(current) = current else {
            if shadow {
                return Err(UserError::invalid(format!(
                    "SageMaker endpoint `{endpoint}` does not exist: a shadow version needs a live version to copy traffic from"
                ))
                .hint("deploy a first version without `shadow`, then the shadow beside it"));
            }
            self.ensure_model(spec).await?;
            let config = self.write_config(endpoint, &[new], &tags).await?;
            let mut body = json!({ "EndpointName": endpoint, "EndpointConfigName": config });
            if !tags.is_empty() {
                body["Tags"] = Value::Array(tags);
            }
            return match self.call("CreateEndpoint", &body).await {
                Ok(_) => Ok(()),
                Err(e) if is_busy(&e) => Err(UserError::failed(format!(
                    "SageMaker endpoint `{endpoint}` was created by someone else just now: {BUSY}"
                ))),
                Err(e) => Err(self.error("CreateEndpoint", endpoint, e)),
            };
        };
        self.may_change(endpoint, current.state)?;
        if let Some(s) = current.slots.iter().find(|s| s.version == spec.version) {
            if s.model == new.model && s.shadow == shadow {
                log::info!(
                    "version `{}` is already behind SageMaker endpoint `{endpoint}`: nothing to deploy",
                    spec.version
                );
                return Ok(());
            }
            return Err(UserError::invalid(format!(
                "version `{}` is already behind SageMaker endpoint `{endpoint}` ({})",
                spec.version,
                if s.shadow {
                    "as a shadow"
                } else {
                    "in production"
                }
            ))
            .hint("retire it first, or deploy under a new version id"));
        }
        let production: Vec<&Slot> = current.slots.iter().filter(|s| !s.shadow).collect();
        if shadow {
            if production.len() != 1 || current.slots.iter().any(|s| s.shadow) {
                return Err(UserError::invalid(format!(
                    "SageMaker endpoint `{endpoint}` has {} production and {} shadow versions: SageMaker takes a shadow beside exactly one production version and no other shadow",
                    production.len(),
                    current.slots.len() - production.len()
                ))
                .hint("finish or roll back the running rollout first, so one version takes all the traffic"));
            }
            // The shadow's weight is relative to the production variant's: equal
            // weights copy all the traffic.
            new.weight = production[0].weight.max(f64::MIN_POSITIVE);
        } else {
            new.weight = 0.0;
        }
        self.ensure_model(spec).await?;
        let mut slots = current.slots.clone();
        slots.push(new);
        self.update(endpoint, &slots, &tags).await
    }

    async fn set_traffic(
        &self,
        endpoint: &str,
        weights: &BTreeMap<String, u8>,
    ) -> Result<(), UserError> {
        let total: u32 = weights.values().map(|w| u32::from(*w)).sum();
        if total != 100 {
            return Err(UserError::invalid(format!(
                "traffic weights for `{endpoint}` sum to {total}%, not 100%: {weights:?}"
            ))
            .hint("give every live version its percent so that they sum to 100 (check `deploy.steps`)"));
        }
        let current = self.current(endpoint).await?.ok_or_else(|| {
            UserError::failed(format!(
                "SageMaker endpoint `{endpoint}` does not exist: no traffic to set"
            ))
        })?;
        self.may_change(endpoint, current.state)?;
        let production: Vec<&Slot> = current.slots.iter().filter(|s| !s.shadow).collect();
        if let Some(unknown) = weights
            .keys()
            .find(|v| !production.iter().any(|s| &s.version == *v))
        {
            return Err(UserError::failed(format!(
                "version `{unknown}` is not a production version of SageMaker endpoint `{endpoint}` (it has: {})",
                production.iter().map(|s| s.version.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .hint("deploy the version first (a shadow takes no live traffic)"));
        }
        let desired: Vec<Value> = production
            .iter()
            .map(|s| {
                json!({
                    "VariantName": s.version,
                    "DesiredWeight": f64::from(weights.get(&s.version).copied().unwrap_or(0)),
                })
            })
            .collect();
        self.call(
            "UpdateEndpointWeightsAndCapacities",
            &json!({ "EndpointName": endpoint, "DesiredWeightsAndCapacities": desired }),
        )
        .await
        .map_err(|e| {
            if is_busy(&e) {
                UserError::failed(format!(
                    "SageMaker endpoint `{endpoint}` started changing just now: {BUSY}"
                ))
            } else {
                self.error("UpdateEndpointWeightsAndCapacities", endpoint, e)
            }
        })?;
        Ok(())
    }

    async fn invoke(
        &self,
        endpoint: &str,
        version: &str,
        request: &Invocation,
    ) -> Result<Answer, UserError> {
        check_name(endpoint, "the endpoint name")?;
        check_name(version, "the version id")?;
        let url = self.url(endpoint);
        let headers = [
            ("content-type", request.content_type.as_str()),
            ("x-amzn-sagemaker-target-variant", version),
        ];
        let signed = aws::sign_headers(
            &self.credentials,
            &self.region,
            RUNTIME.signing_name,
            &ToSign {
                method: "POST",
                url: &url,
                headers: &headers,
                body: &request.body,
            },
            SystemTime::now(),
        )
        .map_err(|e| self.error("InvokeEndpoint", endpoint, e))?;
        let mut req = self
            .http
            .post(&url)
            .header(CONTENT_TYPE, request.content_type.as_str())
            .header("x-amzn-sagemaker-target-variant", version)
            .body(request.body.clone());
        for (name, value, sensitive) in signed {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| UserError::failed("the signed header is not a valid header value"))?;
            value.set_sensitive(sensitive || name == "authorization");
            req = req.header(name, value);
        }
        let what = format!("SageMaker InvokeEndpoint for `{endpoint}` version `{version}`");
        let start = Instant::now();
        let resp = req.send().await.map_err(|e| {
            UserError::failed(format!("{what}: {}", crate::secrets::redact(&e.to_string())))
                .hint("check the network path to the SageMaker runtime (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME when set)")
        })?;
        let status = resp.status().as_u16();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .bytes()
            .await
            .map_err(|e| UserError::failed(format!("{what}: reading the answer: {e}")))?
            .to_vec();
        let latency = start.elapsed().max(Duration::from_nanos(1));
        if (200..300).contains(&status) {
            return Ok(Answer {
                status,
                body,
                latency,
            });
        }
        let err = aws::parse_error(status, error_type.as_deref(), &body);
        if err.code() == Some("ModelError") {
            // The container answered with an error: that is the model's answer.
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let original = json["OriginalStatusCode"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500);
            let message = json["OriginalMessage"]
                .as_str()
                .map(|m| m.as_bytes().to_vec())
                .unwrap_or(body);
            return Ok(Answer {
                status: original,
                body: message,
                latency,
            });
        }
        Err(self.error(
            "InvokeEndpoint",
            &format!("{endpoint}` version `{version}"),
            err,
        ))
    }

    async fn retire(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let current = self.current(endpoint).await?.ok_or_else(|| {
            UserError::failed(format!(
                "SageMaker endpoint `{endpoint}` does not exist: nothing to retire"
            ))
        })?;
        self.may_change(endpoint, current.state)?;
        let Some(slot) = current.slots.iter().find(|s| s.version == version) else {
            return Err(UserError::failed(format!(
                "version `{version}` is not behind SageMaker endpoint `{endpoint}` (it has: {})",
                current
                    .slots
                    .iter()
                    .map(|s| s.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        let production_total: f64 = current
            .slots
            .iter()
            .filter(|s| !s.shadow)
            .map(|s| s.weight)
            .sum();
        if !slot.shadow && slot.weight > 0.0 && production_total > 0.0 {
            return Err(UserError::failed(format!(
                "version `{version}` still takes {:.0}% of the live traffic of SageMaker endpoint `{endpoint}`",
                slot.weight / production_total * 100.0
            ))
            .hint("move its traffic to the other versions first (set its weight to 0)"));
        }
        let rest: Vec<Slot> = current
            .slots
            .iter()
            .filter(|s| s.version != version)
            .cloned()
            .collect();
        if !rest.iter().any(|s| !s.shadow) {
            return Err(UserError::failed(format!(
                "version `{version}` is the last production version of SageMaker endpoint `{endpoint}`"
            ))
            .hint("tear the endpoint down instead"));
        }
        self.update(endpoint, &rest, &[]).await
    }

    async fn rollback(&self, endpoint: &str, version: &str) -> Result<(), UserError> {
        let current = self.current(endpoint).await?.ok_or_else(|| {
            UserError::failed(format!(
                "SageMaker endpoint `{endpoint}` does not exist: nothing to roll back"
            ))
        })?;
        self.may_change(endpoint, current.state)?;
        let slot = match current.slots.iter().find(|s| s.version == version) {
            Some(s) => s.clone(),
            None => {
                // Retired already: its model is still there; serve it as the
                // current production fleet is sized.
                let model = model_name(endpoint, version);
                self.model_image(&model).await.map_err(|e| {
                    UserError::failed(format!(
                        "cannot roll SageMaker endpoint `{endpoint}` back to `{version}`: {}",
                        e.message
                    ))
                })?;
                let like = current.slots.iter().find(|s| !s.shadow).ok_or_else(|| {
                    UserError::failed(format!(
                        "SageMaker endpoint `{endpoint}` has no production variant to size the rollback on"
                    ))
                })?;
                Slot {
                    version: version.to_string(),
                    model,
                    instance_type: like.instance_type.clone(),
                    count: like.count,
                    weight: 1.0,
                    shadow: false,
                }
            }
        };
        if current.slots.len() == 1
            && !current.slots[0].shadow
            && current.slots[0].version == version
        {
            log::info!("SageMaker endpoint `{endpoint}` serves only `{version}` already");
            return Ok(());
        }
        let only = Slot {
            weight: 1.0,
            shadow: false,
            ..slot
        };
        self.update(endpoint, &[only], &[]).await
    }

    async fn teardown(&self, endpoint: &str) -> Result<(), UserError> {
        let mut configs: Vec<String> = Vec::new();
        if let Some(d) = self.describe(endpoint).await? {
            if let Some(c) = d["EndpointConfigName"].as_str() {
                configs.push(c.to_string());
            }
            if parse_state(&d)? != EndpointState::Deleting {
                match self
                    .call("DeleteEndpoint", &json!({ "EndpointName": endpoint }))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(self.error("DeleteEndpoint", endpoint, e)),
                }
            }
        }
        // Every configuration mlcd wrote for this endpoint, and their models.
        let prefix = config_prefix(endpoint);
        let mut next: Option<String> = None;
        for _ in 0..20 {
            let mut body = json!({ "NameContains": prefix, "MaxResults": 100 });
            if let Some(t) = &next {
                body["NextToken"] = json!(t);
            }
            let page = match self.call("ListEndpointConfigs", &body).await {
                Ok(p) => p,
                Err(e) => {
                    log::warn!("listing the endpoint configurations of `{endpoint}` failed, old ones are left behind: {e}");
                    break;
                }
            };
            for c in page["EndpointConfigs"].as_array().into_iter().flatten() {
                if let Some(name) = c["EndpointConfigName"].as_str() {
                    if is_config_of(endpoint, name) && !configs.iter().any(|n| n == name) {
                        configs.push(name.to_string());
                    }
                }
            }
            match page["NextToken"].as_str() {
                Some(t) if Some(t) != next.as_deref() => next = Some(t.to_string()),
                _ => break,
            }
        }
        let mut models: Vec<String> = Vec::new();
        for config in &configs {
            if let Ok(c) = self
                .call(
                    "DescribeEndpointConfig",
                    &json!({ "EndpointConfigName": config }),
                )
                .await
            {
                for list in ["ProductionVariants", "ShadowProductionVariants"] {
                    for v in c[list].as_array().into_iter().flatten() {
                        if let Some(m) = v["ModelName"].as_str() {
                            if !models.iter().any(|x| x == m) {
                                models.push(m.to_string());
                            }
                        }
                    }
                }
            }
            self.delete_quietly("DeleteEndpointConfig", "EndpointConfigName", config)
                .await;
        }
        for model in &models {
            self.delete_quietly("DeleteModel", "ModelName", model).await;
            self.images.lock().unwrap().remove(model);
        }
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }
}

/// The SageMaker model of one version.
pub fn model_name(endpoint: &str, version: &str) -> String {
    format!("{endpoint}-{version}")
}

/// What every configuration name of `endpoint` starts with (before the stamp).
fn config_prefix(endpoint: &str) -> String {
    let cut: String = endpoint.chars().take(63 - 16).collect();
    format!("{}-c", cut.trim_end_matches('-'))
}

/// Whether `name` is one of the configurations [`config_name`] made for `endpoint`.
fn is_config_of(endpoint: &str, name: &str) -> bool {
    name.strip_prefix(&config_prefix(endpoint))
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

/// A new, unique endpoint configuration name: `<endpoint>-c<milliseconds>`
/// (63 characters at most; the stamp grows by one within a millisecond).
pub fn config_name(endpoint: &str) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(p) => prev = p,
        }
    };
    format!("{}{stamp}", config_prefix(endpoint))
}

/// SageMaker's name rule (endpoints, models, variants): `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
fn check_name(name: &str, what: &str) -> Result<(), UserError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        return Ok(());
    }
    Err(UserError::invalid(format!(
        "{what} `{name}` is not a valid SageMaker name: 1 to 63 letters, digits and `-`, starting and ending with a letter or digit"
    ))
    .hint("shorten `deploy.endpoint` (or `model-id`) and the version id; together they name the SageMaker model"))
}

/// The container environment: the server settings mlcd knows, then `deploy.env`
/// (which wins).
fn environment(spec: &VersionSpec) -> Result<Map<String, Value>, UserError> {
    crate::train::sagemaker::container_environment(spec.contract_env().iter(), "deploy.env", 1024)
}

/// EndpointStatus as an [`EndpointState`].
fn parse_state(d: &Value) -> Result<EndpointState, UserError> {
    let s = d["EndpointStatus"].as_str().unwrap_or_default();
    Ok(match s {
        "Creating" => EndpointState::Creating,
        "InService" => EndpointState::InService,
        "Updating" | "SystemUpdating" => EndpointState::Updating,
        "RollingBack" => EndpointState::RollingBack,
        "Failed" => EndpointState::Failed,
        "UpdateRollbackFailed" => EndpointState::UpdateRollbackFailed,
        "Deleting" => EndpointState::Deleting,
        "OutOfService" => EndpointState::OutOfService,
        other => {
            return Err(UserError::failed(format!(
                "SageMaker answered an endpoint status mlcd does not know: `{other}`"
            ))
            .hint("update mlcd; meanwhile look at the endpoint in the SageMaker console"))
        }
    })
}

/// Whether an error says that there is no such endpoint, configuration or model.
fn is_not_found(e: &AwsError) -> bool {
    match (e.code(), e) {
        (Some("ResourceNotFound" | "ResourceNotFoundException"), _) => true,
        (Some("ValidationException"), AwsError::Other { message, .. }) => {
            let m = message.to_ascii_lowercase();
            m.contains("could not find") || m.contains("not found")
        }
        _ => false,
    }
}

/// Whether an error says that the endpoint is changing already.
fn is_busy(e: &AwsError) -> bool {
    match (e.code(), e) {
        (Some("ValidationException"), AwsError::Other { message, .. }) => {
            let m = message.to_ascii_lowercase();
            m.contains("in-progress")
                || m.contains("cannot update")
                || m.contains("already existing endpoint")
                || m.contains("status updating")
                || m.contains("status creating")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_names_are_unique_valid_and_recognised() {
        let a = config_name("churn");
        let b = config_name("churn");
        assert_ne!(a, b);
        assert!(is_config_of("churn", &a), "{a}");
        assert!(!is_config_of("churn-v2", &a));
        assert!(!is_config_of("churn", "churn-v1"));
        let long = "e".repeat(63);
        let c = config_name(&long);
        assert!(c.len() <= 63, "{c}");
        check_name(&c, "config").unwrap();
    }

    #[test]
    fn states_map_and_unknown_ones_are_errors() {
        for (s, want) in [
            ("SystemUpdating", EndpointState::Updating),
            ("RollingBack", EndpointState::RollingBack),
            ("UpdateRollbackFailed", EndpointState::UpdateRollbackFailed),
        ] {
            assert_eq!(parse_state(&json!({ "EndpointStatus": s })).unwrap(), want);
        }
        assert!(parse_state(&json!({ "EndpointStatus": "Sleeping" })).is_err());
    }
}
