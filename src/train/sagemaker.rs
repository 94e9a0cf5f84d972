//! The Amazon SageMaker training backend: CreateTrainingJob / DescribeTrainingJob /
//! StopTrainingJob over the shared AWS JSON 1.1 client, and the job's CloudWatch
//! Logs (`/aws/sagemaker/TrainingJobs`, one stream per instance). Every request is
//! checked against SageMaker's own limits before it is sent, so a bad spec fails
//! in `preflight` with the key to change, not as a `ValidationException` later.
//!
//! One config trains on every backend: `stage` uploads local channel directories
//! to S3, content-addressed ([`upload`](super::upload)), and without an output
//! location the job writes to the SageMaker SDK's default bucket
//! `s3://sagemaker-<region>-<account>/` — both in that bucket, created when missing
//! as the SDK does (the account from STS GetCallerIdentity).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};

use super::{
    poll_interval_from_env, Channel, JobSpec, JobState, JobStatus, LogCursor, Submitted,
    TrainingBackend,
};
use crate::cloud::aws::{self, AwsClient, AwsError};
use crate::cloud::s3::{BucketState, S3Client};
use crate::cloud::sts;
use crate::error::UserError;
use crate::identity::{Identity, Recorded};
use crate::plan::SagemakerPlan;

/// How often a running SageMaker job is described by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// SageMaker's default ceiling on `MaxRuntimeInSeconds` (28 days).
pub const MAX_RUNTIME_LIMIT: Duration = Duration::from_secs(28 * 24 * 3600);

/// The training volume each instance gets, in GB.
const VOLUME_SIZE_GB: u64 = 30;

/// Where SageMaker writes training logs.
pub const LOG_GROUP: &str = "/aws/sagemaker/TrainingJobs";

const TARGET_PREFIX: &str = "SageMaker.";
const LOGS_TARGET_PREFIX: &str = "Logs_20140328.";

/// How many pages of log events one `logs` call reads per stream at most.
const MAX_LOG_PAGES: usize = 50;

/// The SageMaker training backend for one region and execution role.
#[derive(Debug, Clone)]
pub struct SagemakerTraining {
    client: AwsClient,
    sagemaker_endpoint: String,
    logs_endpoint: String,
    sts_endpoint: String,
    s3: S3Client,
    region: String,
    role_arn: String,
    output_path: Option<String>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    poll_interval: Duration,
    /// What `describe` last saw of each job, for the log follower.
    seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, Seen>>>,
    /// The zero of the follower's clock (cursors hold milliseconds since it).
    origin: std::time::Instant,
}

impl SagemakerTraining {
    /// A backend for `plan`'s region and role, with credentials resolved from
    /// `env` (static keys, else a web identity through STS) and endpoints from
    /// `AWS_ENDPOINT_URL_SAGEMAKER` / `AWS_ENDPOINT_URL_CLOUDWATCH_LOGS` /
    /// `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL_STS` / `AWS_ENDPOINT_URL` when set.
    /// No AWS request is made here.
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
            .hint(
                "set `sagemaker.region` or AWS_REGION to the region your SageMaker jobs run in",
            ));
        }
        let sagemaker_endpoint = aws::endpoint(&aws::SAGEMAKER, region, env)?;
        let logs_endpoint = aws::endpoint(&aws::LOGS, region, env)?;
        let credentials = sts::resolve_credentials(env).await.map_err(|e| UserError {
            message: format!("cannot call SageMaker: {}", e.message),
            ..e
        })?;
        let client = AwsClient::new(credentials, region).map_err(UserError::from)?;
        let sts_endpoint = aws::endpoint(&aws::STS, region, env)?;
        let s3 = S3Client::new(client.clone(), env)?;
        Ok(SagemakerTraining {
            client,
            sagemaker_endpoint,
            logs_endpoint,
            sts_endpoint,
            s3,
            region: region.to_string(),
            role_arn: plan.role_arn.trim().to_string(),
            output_path: plan.output_path.clone(),
            subnets: plan.subnets.clone(),
            security_groups: plan.security_groups.clone(),
            poll_interval: poll_interval_from_env(env, DEFAULT_POLL_INTERVAL),
            seen: Default::default(),
            origin: std::time::Instant::now(),
        })
    }

    async fn call(&self, operation: &str, body: &Value) -> Result<Value, AwsError> {
        self.client
            .json_call(
                aws::SAGEMAKER.signing_name,
                &self.sagemaker_endpoint,
                &format!("{TARGET_PREFIX}{operation}"),
                body,
            )
            .await
    }

    async fn logs_call(&self, operation: &str, body: &Value) -> Result<Value, AwsError> {
        self.client
            .json_call(
                aws::LOGS.signing_name,
                &self.logs_endpoint,
                &format!("{LOGS_TARGET_PREFIX}{operation}"),
                body,
            )
            .await
    }

    /// The CreateTrainingJob request for `spec`, or why SageMaker would refuse it.
    pub fn create_request(&self, spec: &JobSpec) -> Result<Value, UserError> {
        check_job_name(&spec.name)?;
        check_role(&self.role_arn)?;
        let native = spec.instance.native.as_str();
        if !native.starts_with("ml.") {
            return Err(UserError::invalid(format!(
                "instance `{}` runs as `{native}`, which is not a SageMaker instance type (they start with `ml.`, like ml.m5.xlarge)",
                spec.instance.requested
            ))
            .hint("set `train.instance` (or the `instance` input) to a portable name like gpu.t4.xl or a native ml.* type; `local` mode is the SageMaker SDK's, not the service's"));
        }
        if spec.count == 0 {
            return Err(UserError::invalid(
                "`train.count` is 0: SageMaker needs at least one instance",
            ));
        }
        if spec.image.trim().is_empty() || spec.image.len() > 255 {
            return Err(UserError::invalid(format!(
                "the training image `{}` must be 1 to 255 characters for SageMaker",
                spec.image
            ))
            .hint("give the image as <account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> or @digest"));
        }

        let mut channels = Vec::new();
        for (name, channel) in &spec.channels {
            channels.push(channel_entry(name, channel)?);
        }

        let output = self.output_of(spec).ok_or_else(|| {
            UserError::invalid(
                "no output location for the model artifacts: neither `sagemaker.output-path` nor `train.output` is set, and the default bucket was not looked up (the job was not staged)",
            )
            .hint("set `sagemaker.output-path: s3://<bucket>/<prefix>` (or `train.output`)")
        })?;
        if !is_s3_uri(output) {
            return Err(UserError::invalid(format!(
                "the output location `{output}` (`sagemaker.output-path` / `train.output`) is not an s3:// URI"
            ))
            .hint("SageMaker writes model.tar.gz to S3: give s3://<bucket>/<prefix>"));
        }

        let hyperparameters = check_hyperparameters(&spec.hyperparameters)?;
        let environment = container_environment(spec.env.iter(), "train.env", 512)?;
        let metrics = metric_definitions(&spec.metric_definitions)?;
        let tags = sagemaker_tags(&spec.all_tags())?;

        let mut algorithm = json!({
            "TrainingImage": spec.image,
            "TrainingInputMode": "File",
        });
        if !metrics.is_empty() {
            algorithm["MetricDefinitions"] = Value::Array(metrics);
        }
        let mut body = json!({
            "TrainingJobName": spec.name,
            "AlgorithmSpecification": algorithm,
            "RoleArn": self.role_arn,
            "OutputDataConfig": { "S3OutputPath": output },
            "ResourceConfig": {
                "InstanceType": native,
                "InstanceCount": spec.count,
                "VolumeSizeInGB": VOLUME_SIZE_GB,
            },
            "StoppingCondition": { "MaxRuntimeInSeconds": max_runtime_seconds(spec.max_runtime) },
        });
        if !hyperparameters.is_empty() {
            body["HyperParameters"] = Value::Object(hyperparameters);
        }
        if !channels.is_empty() {
            body["InputDataConfig"] = Value::Array(channels);
        }
        if !environment.is_empty() {
            body["Environment"] = Value::Object(environment);
        }
        if !tags.is_empty() {
            body["Tags"] = Value::Array(tags);
        }
        if let Some(vpc) = self.vpc_config()? {
            body["VpcConfig"] = vpc;
        }
        Ok(body)
    }

    /// The configured output location (`train.output`, else `sagemaker.output-path`).
    fn output_of<'a>(&'a self, spec: &'a JobSpec) -> Option<&'a str> {
        spec.output
            .as_deref()
            .or(self.output_path.as_deref())
            .map(str::trim)
            .filter(|o| !o.is_empty())
    }

    /// Checks `spec` as it will be once staged: local channels must be
    /// directories, and stand in for their S3 prefixes, a missing output for the
    /// default bucket. Makes no request.
    fn check(&self, spec: &JobSpec) -> Result<Value, UserError> {
        let mut staged = spec.clone();
        for (name, channel) in &mut staged.channels {
            if let Channel::Local(dir) = channel {
                check_local_channel(name, dir)?;
                *channel = Channel::Remote(format!(
                    "s3://sagemaker-{}-000000000000/mlcd/channels/{}/{name}/0/",
                    self.region, spec.identity.model
                ));
            }
        }
        if self.output_of(spec).is_none() {
            staged.output = Some(format!("s3://sagemaker-{}-000000000000/", self.region));
        }
        self.create_request(&staged)
    }

    /// The SageMaker SDK's default bucket, `sagemaker-<region>-<account>`, created
    /// when missing; `say` tells when it is created.
    async fn default_bucket(
        &self,
        say: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<String, UserError> {
        let account = sts::caller_account(&self.client, &self.sts_endpoint).await?;
        let bucket = format!("sagemaker-{}-{account}", self.region);
        let bucket_error = |what: &str, e: AwsError| {
            let hint = match &e {
                AwsError::Auth { .. } => format!(
                    "the bucket {bucket} is another account's, or these credentials may not use it: \
                     allow s3:ListBucket, s3:CreateBucket, s3:GetObject and s3:PutObject on it, \
                     or set `sagemaker.output-path` and give the channels as s3:// URIs"
                ),
                _ => "set `sagemaker.output-path` and give the channels as s3:// URIs to use a bucket of your own".to_string(),
            };
            let base = UserError::from(e);
            UserError::failed(format!(
                "SageMaker's default bucket {bucket} ({what}): {}",
                base.message
            ))
            .hint(hint)
        };
        match self
            .s3
            .head_bucket(&bucket)
            .await
            .map_err(|e| bucket_error("HeadBucket", e))?
        {
            BucketState::Ours => {}
            BucketState::Missing => {
                self.s3
                    .create_bucket(&bucket)
                    .await
                    .map_err(|e| bucket_error("CreateBucket", e))?;
                say(&format!(
                    "created the S3 bucket {bucket} in {} (SageMaker's default bucket, as the SageMaker SDK creates it)",
                    self.region
                ));
            }
        }
        Ok(bucket)
    }

    fn vpc_config(&self) -> Result<Option<Value>, UserError> {
        match (self.subnets.is_empty(), self.security_groups.is_empty()) {
            (true, true) => return Ok(None),
            (false, true) => {
                return Err(UserError::invalid(
                    "`sagemaker.subnets` is set but `sagemaker.security-groups` is not: a SageMaker job in a VPC needs both",
                )
                .hint("add `sagemaker.security-groups: [sg-…]`, or remove `sagemaker.subnets` to run outside a VPC"))
            }
            (true, false) => {
                return Err(UserError::invalid(
                    "`sagemaker.security-groups` is set but `sagemaker.subnets` is not: a SageMaker job in a VPC needs both",
                )
                .hint("add `sagemaker.subnets: [subnet-…]`, or remove `sagemaker.security-groups`"))
            }
            (false, false) => {}
        }
        let id_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 32
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        for (key, list, max) in [
            ("sagemaker.subnets", &self.subnets, 16),
            ("sagemaker.security-groups", &self.security_groups, 5),
        ] {
            if list.len() > max {
                return Err(UserError::invalid(format!(
                    "`{key}` has {} entries; SageMaker takes at most {max}",
                    list.len()
                )));
            }
            if let Some(bad) = list.iter().find(|s| !id_ok(s)) {
                return Err(UserError::invalid(format!(
                    "`{key}` entry `{bad}` is not an id like subnet-0abc… / sg-0abc…"
                )));
            }
        }
        Ok(Some(json!({
            "Subnets": self.subnets,
            "SecurityGroupIds": self.security_groups,
        })))
    }

    /// The failed call, with what to do about it.
    fn error(&self, operation: &str, name: &str, e: AwsError) -> UserError {
        let hint = match (&e, e.code()) {
            (AwsError::Auth { .. }, _) => Some(
                "the AWS credentials were refused or may not make this call: check the role \
                 aws-actions/configure-aws-credentials assumed (it needs sagemaker:*TrainingJob* \
                 and iam:PassRole on the execution role), and that its session has not expired"
                    .to_string(),
            ),
            (_, Some("ResourceLimitExceeded")) => Some(format!(
                "your account's SageMaker quota in {} is used up: stop other jobs, or request an \
                 increase in Service Quotas (training job usage for the instance type)",
                self.region
            )),
            (_, Some("ValidationException")) => Some(
                "SageMaker refused the request: check the instance type, the execution role \
                 (`sagemaker.role-arn`), the image and the S3 locations"
                    .to_string(),
            ),
            (AwsError::Throttled { .. } | AwsError::Transient(_), _) => Some(
                "SageMaker did not answer in time; re-run later (a re-run attaches to the job), \
                 or raise MLCD_RETRY_ATTEMPTS / MLCD_RETRY_INITIAL_MS"
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

    /// The job's log stream names (one per instance), oldest first.
    async fn log_streams(&self, name: &str) -> Result<Vec<String>, UserError> {
        let mut streams = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_LOG_PAGES {
            let mut body = json!({
                "logGroupName": LOG_GROUP,
                "logStreamNamePrefix": format!("{name}/"),
            });
            if let Some(t) = &next {
                body["nextToken"] = json!(t);
            }
            let answer = match self.logs_call("DescribeLogStreams", &body).await {
                Ok(a) => a,
                // No log group yet (no job in the account has logged): no logs yet.
                Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(Vec::new()),
                Err(e) => return Err(self.logs_error(name, e)),
            };
            for s in answer["logStreams"].as_array().into_iter().flatten() {
                if let Some(n) = s["logStreamName"].as_str() {
                    streams.push(n.to_string());
                }
            }
            match answer["nextToken"].as_str() {
                Some(t) if Some(t) != next.as_deref() => next = Some(t.to_string()),
                _ => break,
            }
        }
        streams.sort();
        streams.dedup();
        Ok(streams)
    }

    fn logs_error(&self, name: &str, e: AwsError) -> UserError {
        let hint = match &e {
            AwsError::Auth { .. } => Some(
                "the AWS credentials may not read CloudWatch Logs: allow logs:DescribeLogStreams \
                 and logs:GetLogEvents on /aws/sagemaker/TrainingJobs",
            ),
            _ => None,
        };
        let base = UserError::from(e);
        let err = UserError::failed(format!(
            "reading the CloudWatch logs of SageMaker job `{name}`: {}",
            base.message
        ));
        match hint.map(str::to_string).or(base.hint) {
            Some(h) => err.hint(h),
            None => err,
        }
    }
}

/// The log follower's budget: a running job is described at most once a poll
/// interval (6 times a minute at the default 10 s, fewer as the interval backs off
/// to 30 s); its log calls (DescribeLogStreams + GetLogEvents) are held to
/// `LOG_CALLS_PER_WINDOW` in any `LOG_WINDOW_POLLS` poll intervals — together at
/// most 11 calls a minute.
const LOG_WINDOW_POLLS: u64 = 6;
/// See [`LOG_WINDOW_POLLS`].
const LOG_CALLS_PER_WINDOW: usize = 5;
/// Streams known and the status unchanged: listed again after this many poll
/// intervals (2 minutes at the default), in case an instance started late.
const RELIST_POLLS: u64 = 12;
/// The longest a quiet stream waits between two reads, and a job without streams
/// between two listings, in poll intervals (1 minute at the default).
const MAX_QUIET_POLLS: u64 = 6;
/// GetLogEvents' largest page: a page this full means more is waiting.
const LOG_PAGE: usize = 10_000;

/// What `describe` last saw of a job.
#[derive(Debug, Clone)]
struct Seen {
    /// State and secondary status, as one key.
    status: String,
    /// The job has ended.
    ended: bool,
}

/// The log follower's state, kept in the [`LogCursor`] between calls (times
/// are milliseconds on the backend's clock).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Follow {
    /// Each stream's forward token.
    #[serde(default)]
    tokens: BTreeMap<String, String>,
    /// The job's streams, as last listed.
    #[serde(default)]
    streams: Vec<String>,
    /// When they were listed, and under which status.
    #[serde(default)]
    listed: Option<(u64, String)>,
    /// The status the back-offs below were counted under (a change resets them).
    #[serde(default)]
    status: Option<String>,
    /// How long after an empty listing the next one waits.
    #[serde(default)]
    list_wait: u64,
    /// Per stream: when it is read next, and how long it waits after the next
    /// empty read.
    #[serde(default)]
    next_read: BTreeMap<String, (u64, u64)>,
    /// When the log calls of the current window were made.
    #[serde(default)]
    calls: Vec<u64>,
}

impl SagemakerTraining {
    /// Records what `describe` saw of `name`, for the log follower.
    fn saw(&self, name: &str, status: &JobStatus) {
        let seen = Seen {
            status: format!(
                "{}/{}",
                status.state,
                status.detail.as_deref().unwrap_or("")
            ),
            ended: status.state.is_terminal(),
        };
        if let Ok(mut map) = self.seen.lock() {
            map.insert(name.to_string(), seen);
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn follow_logs(
        &self,
        name: &str,
        cursor: &mut LogCursor,
    ) -> Result<Vec<String>, UserError> {
        let now = self.now_ms();
        let poll = u64::try_from(self.poll_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut f: Follow = cursor
            .0
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default();
        let seen = self.seen.lock().ok().and_then(|m| m.get(name).cloned());
        // A job not described here, or ended: read all there is, no budget.
        let unbounded = seen.as_ref().is_none_or(|s| s.ended);
        let status = seen.map(|s| s.status);
        if f.status != status {
            // A new phase may bring new streams and new lines: look again soon.
            f.status = status.clone();
            f.next_read.clear();
            f.list_wait = 0;
        }
        let window = LOG_WINDOW_POLLS.saturating_mul(poll);
        f.calls.retain(|t| now.saturating_sub(*t) < window);
        let room = |f: &Follow| unbounded || f.calls.len() < LOG_CALLS_PER_WINDOW;

        let want_list = match &f.listed {
            None => true,
            Some((at, _)) if f.streams.is_empty() => now.saturating_sub(*at) >= f.list_wait,
            Some((at, under)) => {
                Some(under) != status.as_ref()
                    || now.saturating_sub(*at) >= RELIST_POLLS.saturating_mul(poll)
            }
        };
        if want_list && room(&f) {
            f.calls.push(now);
            let listed = self.log_streams(name).await?;
            f.listed = Some((now, status.clone().unwrap_or_default()));
            f.list_wait = if listed.is_empty() {
                (f.list_wait * 2).clamp(poll, MAX_QUIET_POLLS.saturating_mul(poll))
            } else {
                0
            };
            for s in listed {
                if !f.streams.contains(&s) {
                    f.streams.push(s);
                }
            }
            f.streams.sort();
        }

        // The stream waiting longest goes first, so a tight budget reads them in turn.
        let mut order: Vec<String> = f.streams.clone();
        order.sort_by_key(|s| f.next_read.get(s).map_or(0, |r| r.0));
        let several = f.streams.len() > 1;
        let mut lines = Vec::new();
        'streams: for stream in &order {
            let (due, wait) = f.next_read.get(stream).copied().unwrap_or((0, 0));
            if !unbounded && due > now {
                continue;
            }
            let label = stream.rsplit('/').next().unwrap_or(stream).to_string();
            let mut got = 0;
            for _ in 0..MAX_LOG_PAGES {
                if !room(&f) {
                    break 'streams;
                }
                f.calls.push(now);
                let sent = f.tokens.get(stream).cloned();
                let mut body = json!({
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": true,
                });
                if let Some(t) = &sent {
                    body["nextToken"] = json!(t);
                }
                let answer = match self.logs_call("GetLogEvents", &body).await {
                    Ok(a) => a,
                    Err(e) if e.code() == Some("ResourceNotFoundException") => break,
                    Err(e) => return Err(self.logs_error(name, e)),
                };
                let events = answer["events"].as_array().cloned().unwrap_or_default();
                for ev in &events {
                    if let Some(m) = ev["message"].as_str() {
                        let m = m.trim_end_matches(['\n', '\r']);
                        lines.push(if several {
                            format!("[{label}] {m}")
                        } else {
                            m.to_string()
                        });
                    }
                }
                got += events.len();
                let next = answer["nextForwardToken"].as_str().map(str::to_string);
                if let Some(n) = &next {
                    f.tokens.insert(stream.clone(), n.clone());
                }
                // The end of the stream: no events, or the token we sent comes
                // back; while the job runs, also a page that is not full (the
                // rest, if any, comes with the next poll).
                if events.is_empty()
                    || next.is_none()
                    || next == sent
                    || (!unbounded && events.len() < LOG_PAGE)
                {
                    break;
                }
            }
            let next = if got > 0 {
                (0, 0)
            } else {
                let wait = (wait * 2).clamp(2 * poll, MAX_QUIET_POLLS.saturating_mul(poll));
                (now.saturating_add(wait), wait)
            };
            f.next_read.insert(stream.clone(), next);
        }
        cursor.0 = Some(serde_json::to_string(&f).unwrap_or_default());
        Ok(lines)
    }
}

/// `s3://bucket/…` (what SageMaker's S3Uri pattern admits, without https).
pub(crate) fn is_s3_uri(s: &str) -> bool {
    s.len() <= 1024
        && s.strip_prefix("s3://")
            .and_then(|rest| rest.split('/').next())
            .is_some_and(|bucket| !bucket.is_empty())
}

/// A channel as SageMaker takes it, or why it cannot.
fn channel_entry(name: &str, channel: &Channel) -> Result<Value, UserError> {
    let name_ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !name_ok {
        return Err(UserError::invalid(format!(
            "channel name `{name}` (`train.channels`) must be 1 to 64 letters, digits, `.`, `-` or `_` on SageMaker"
        )));
    }
    let uri = match channel {
        Channel::Local(path) => {
            return Err(UserError::failed(format!(
                "channel `{name}` is the local directory {}, not uploaded to S3 yet (the job was not staged)",
                path.display()
            ))
            .hint(format!(
                "mlcd uploads local channels before it submits; set `train.channels.{name}` to an s3:// URI to give the data yourself"
            )))
        }
        Channel::Remote(uri) => uri,
    };
    if !is_s3_uri(uri) {
        return Err(UserError::invalid(format!(
            "channel `{name}` is `{uri}`: SageMaker reads input channels from S3 (s3://bucket/prefix)"
        ))
        .hint(format!("copy the data to S3 and set `train.channels.{name}` to its s3:// URI")));
    }
    Ok(json!({
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "InputMode": "File",
    }))
}

/// A local channel must be a directory (it is uploaded before the job starts).
fn check_local_channel(name: &str, dir: &std::path::Path) -> Result<(), UserError> {
    let key = format!("`train.channels.{name}`");
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(UserError::invalid(format!(
            "channel `{name}` ({key}) is {}, a file: a channel is a directory",
            dir.display()
        ))
        .hint(format!("point {key} at the directory holding the file"))),
        Err(e) => Err(UserError::invalid(format!(
            "channel `{name}` ({key}): cannot read {}: {e}",
            dir.display()
        ))
        .hint(format!(
            "set {key} to a directory of the workspace, or to an s3:// URI"
        ))),
    }
}

/// SageMaker's job-name rule: `[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}`.
fn check_job_name(name: &str) -> Result<(), UserError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-';
    if ok {
        Ok(())
    } else {
        Err(UserError::invalid(format!(
            "`{name}` is not a valid SageMaker training job name: 1 to 63 letters, digits and `-`, starting and ending with a letter or digit"
        ))
        .hint("the name comes from `model-id` and the run: use a model id of letters, digits and `-`"))
    }
}

/// SageMaker's execution-role rule: `arn:aws[a-z-]*:iam::<12 digits>:role/<path/name>`.
pub(crate) fn check_role(role: &str) -> Result<(), UserError> {
    if role.is_empty() {
        return Err(UserError::invalid(
            "SageMaker training needs an execution role: `sagemaker.role-arn` is not set",
        )
        .hint("set `sagemaker.role-arn` or the `iam-role-arn` input to the role SageMaker assumes, like arn:aws:iam::123456789012:role/sagemaker-train"));
    }
    let ok = (|| {
        let rest = role.strip_prefix("arn:aws")?;
        let (partition, rest) = rest.split_once(":iam::")?;
        if !partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-')
        {
            return None;
        }
        let (account, name) = rest.split_once(":role/")?;
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b));
        (account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && name_ok
            && role.len() <= 2048)
            .then_some(())
    })();
    ok.ok_or_else(|| {
        UserError::invalid(format!(
            "`{role}` (`sagemaker.role-arn` / `iam-role-arn`) is not an IAM role ARN (expected arn:aws:iam::<12-digit account>:role/<name>)"
        ))
    })
}

fn check_hyperparameters(hp: &BTreeMap<String, String>) -> Result<Map<String, Value>, UserError> {
    if hp.len() > 100 {
        return Err(UserError::invalid(format!(
            "{} hyperparameters: SageMaker takes at most 100",
            hp.len()
        ))
        .hint("pass the rest in a config file inside an input channel"));
    }
    let mut out = Map::new();
    for (k, v) in hp {
        if k.len() > 256 || v.len() > 2500 {
            return Err(UserError::invalid(format!(
                "hyperparameter `{}`: SageMaker takes names up to 256 and values up to 2500 characters",
                k.chars().take(60).collect::<String>()
            ))
            .hint("pass large values in a file inside an input channel"));
        }
        out.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(out)
}

/// A container's environment as SageMaker takes it (training and serving alike):
/// at most 100 variables, names of letters, digits and `_` not starting with a
/// digit, names and values up to `max_len` characters (512 for training jobs,
/// 1024 for models). `key` is the config key named in the errors.
pub(crate) fn container_environment<'a>(
    env: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
    key: &str,
    max_len: usize,
) -> Result<Map<String, Value>, UserError> {
    if env.len() > 100 {
        return Err(UserError::invalid(format!(
            "the container gets {} environment variables (`{key}` included): SageMaker takes at most 100",
            env.len()
        )));
    }
    let mut out = Map::new();
    for (k, v) in env {
        let key_ok = k.len() <= max_len
            && k.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(UserError::invalid(format!(
                "`{key}` variable `{k}`: SageMaker takes names of letters, digits and `_`, not starting with a digit"
            )));
        }
        if v.len() > max_len {
            return Err(UserError::invalid(format!(
                "`{key}` variable `{k}` is {} characters long: SageMaker takes values up to {max_len}",
                v.len()
            )));
        }
        out.insert(k.clone(), Value::String(v.clone()));
    }
    Ok(out)
}

fn metric_definitions(defs: &BTreeMap<String, String>) -> Result<Vec<Value>, UserError> {
    if defs.len() > 40 {
        return Err(UserError::invalid(format!(
            "`train.metrics` has {} entries: SageMaker takes at most 40",
            defs.len()
        )));
    }
    defs.iter()
        .map(|(name, regex)| {
            if name.is_empty() || name.len() > 255 || regex.is_empty() || regex.len() > 500 {
                return Err(UserError::invalid(format!(
                    "`train.metrics` entry `{name}`: SageMaker takes names of 1 to 255 and regexes of 1 to 500 characters"
                )));
            }
            Ok(json!({ "Name": name, "Regex": regex }))
        })
        .collect()
}

/// A tag key or value in SageMaker's alphabet (letters, digits, spaces and
/// `_.:/=+-@`), other characters replaced by `_`, cut to `max` characters.
fn tag_text(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric()
                || c == ' '
                || (c.is_whitespace() && !c.is_control())
                || "_.:/=+-@".contains(c)
            {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// The job's tags as SageMaker takes them: keys and values in its alphabet and
/// lengths (128 / 256), `aws:` keys (reserved) left out with a warning, at most 50.
pub(crate) fn sagemaker_tags(tags: &BTreeMap<String, String>) -> Result<Vec<Value>, UserError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in tags {
        let key = tag_text(k.trim(), 128);
        if key.is_empty() {
            continue;
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            log::warn!(
                "tag `{k}` left off the SageMaker job: keys starting with aws: are reserved by AWS"
            );
            continue;
        }
        let value = tag_text(v, 256);
        if key != *k || value != *v {
            log::info!("tag `{k}` adjusted to SageMaker's tag rules (letters, digits, spaces, _.:/=+-@; key ≤ 128, value ≤ 256)");
        }
        out.insert(key, value);
    }
    if out.len() > 50 {
        return Err(UserError::invalid(format!(
            "{} tags for the SageMaker job: SageMaker takes at most 50",
            out.len()
        ))
        .hint("give fewer `tags`"));
    }
    Ok(out
        .into_iter()
        .map(|(k, v)| json!({ "Key": k, "Value": v }))
        .collect())
}

/// The identity a ListTags answer carries (its first page: mlcd's tags are few).
pub(crate) fn recorded_from_tags(answer: &Value) -> Recorded {
    let pairs = answer["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["Key"].as_str()?, t["Value"].as_str()?)));
    Identity::from_tags(pairs).map_or(Recorded::Unknown, Recorded::Run)
}

/// `MaxRuntimeInSeconds`: at least 1 (rounded up), at most SageMaker's default
/// ceiling of 28 days (a longer one is capped, with a warning).
fn max_runtime_seconds(max_runtime: Duration) -> u64 {
    let secs = max_runtime.as_secs() + u64::from(max_runtime.subsec_nanos() > 0);
    let limit = MAX_RUNTIME_LIMIT.as_secs();
    if secs > limit {
        log::warn!(
            "the job's maximum runtime ({secs} s) is longer than SageMaker's 28 days: capped at {limit} s"
        );
    }
    secs.clamp(1, limit)
}

/// Whether an error says that no job has the name.
fn is_not_found(e: &AwsError) -> bool {
    match (e.code(), e) {
        (Some("ResourceNotFound" | "ResourceNotFoundException"), _) => true,
        (Some("ValidationException"), AwsError::Other { message, .. }) => {
            // SageMaker says "Requested resource not found."; moto "Could not find training job …".
            let m = message.to_ascii_lowercase();
            m.contains("not found") || m.contains("could not find")
        }
        _ => false,
    }
}

/// A DescribeTrainingJob answer as a [`JobStatus`].
pub fn status_from_describe(name: &str, answer: &Value) -> Result<JobStatus, UserError> {
    let raw = answer["TrainingJobStatus"].as_str().unwrap_or_default();
    let state = match raw {
        "InProgress" => JobState::InProgress,
        "Completed" => JobState::Completed,
        "Failed" => JobState::Failed,
        "Stopping" => JobState::Stopping,
        "Stopped" => JobState::Stopped,
        other => {
            return Err(UserError::failed(format!(
            "SageMaker DescribeTrainingJob for `{name}` answered with the unknown status `{other}`"
        ))
            .hint("mlcd knows InProgress, Completed, Failed, Stopping and Stopped; update mlcd"))
        }
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let metrics = answer["FinalMetricDataList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["MetricName"].as_str()?.to_string(), m["Value"].as_f64()?)))
        .collect();
    let hyperparameters = answer["HyperParameters"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    Ok(JobStatus {
        name: text(&answer["TrainingJobName"]).unwrap_or_else(|| name.to_string()),
        state,
        detail: text(&answer["SecondaryStatus"]),
        failure_reason: text(&answer["FailureReason"]),
        metrics,
        artifact: text(&answer["ModelArtifacts"]["S3ModelArtifacts"]),
        image: text(&answer["AlgorithmSpecification"]["TrainingImage"]),
        hyperparameters,
    })
}

#[async_trait]
impl TrainingBackend for SagemakerTraining {
    fn name(&self) -> &'static str {
        "sagemaker"
    }

    async fn preflight(&self, spec: &JobSpec) -> Result<(), UserError> {
        self.check(spec).map(|_| ())
    }

    /// Uploads the local channels (content-addressed: what S3 holds already is
    /// skipped) and sets the default output, both in the default bucket; with only
    /// S3 channels and an output location, makes no request.
    async fn stage(
        &self,
        spec: &JobSpec,
        say: &(dyn for<'l> Fn(&'l str) + Sync),
    ) -> Result<JobSpec, UserError> {
        let needs_upload = spec
            .channels
            .values()
            .any(|c| matches!(c, Channel::Local(_)));
        let needs_output = self.output_of(spec).is_none();
        if !needs_upload && !needs_output {
            return Ok(spec.clone());
        }
        let bucket = self.default_bucket(say).await?;
        let mut staged = super::upload::stage_channels(&self.s3, &bucket, spec, say).await?;
        if needs_output {
            let output = format!("s3://{bucket}/");
            say(&format!(
                "output: {output} (SageMaker's default bucket; set `sagemaker.output-path` to choose)"
            ));
            staged.output = Some(output);
        }
        Ok(staged)
    }

    async fn submit(&self, spec: &JobSpec) -> Result<Submitted, UserError> {
        let body = self.create_request(spec)?;
        match self.call("CreateTrainingJob", &body).await {
            Ok(_) => Ok(Submitted::Created),
            Err(e) if e.code() == Some("ResourceInUse") => Ok(Submitted::AlreadyExists),
            Err(e) => Err(self.error("CreateTrainingJob", &spec.name, e)),
        }
    }

    async fn identity(&self, name: &str) -> Result<Recorded, UserError> {
        let answer = match self
            .call("DescribeTrainingJob", &json!({ "TrainingJobName": name }))
            .await
        {
            Ok(a) => a,
            Err(e) if is_not_found(&e) => return Ok(Recorded::Absent),
            Err(e) => return Err(self.error("DescribeTrainingJob", name, e)),
        };
        let arn = answer["TrainingJobArn"].as_str().unwrap_or_default();
        let tags = self
            .call(
                "ListTags",
                &json!({ "ResourceArn": arn, "MaxResults": 100 }),
            )
            .await
            .map_err(|e| self.error("ListTags", name, e))?;
        Ok(recorded_from_tags(&tags))
    }

    async fn describe(&self, name: &str) -> Result<Option<JobStatus>, UserError> {
        match self
            .call("DescribeTrainingJob", &json!({ "TrainingJobName": name }))
            .await
        {
            Ok(answer) => {
                let status = status_from_describe(name, &answer)?;
                self.saw(name, &status);
                Ok(Some(status))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("DescribeTrainingJob", name, e)),
        }
    }

    /// Reads the job's new log lines within a budget (see [`Follow`]): the log
    /// streams are listed when the job's status changes (or every few minutes), a
    /// stream that had nothing new is read less and less often, and the log calls
    /// of a running job stay under [`LOG_CALLS_PER_WINDOW`] per
    /// [`LOG_WINDOW_POLLS`] poll intervals. Once `describe` has seen the job end
    /// (or for a job it has not described), everything left is read.
    async fn logs(&self, name: &str, cursor: &mut LogCursor) -> Result<Vec<String>, UserError> {
        self.follow_logs(name, cursor).await
    }

    async fn stop(&self, name: &str) -> Result<(), UserError> {
        match self
            .call("StopTrainingJob", &json!({ "TrainingJobName": name }))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Err(UserError::failed(format!(
                "cannot stop SageMaker job `{name}`: no training job has that name in {}",
                self.region
            ))),
            // Stopping a job that is no longer running is refused with a
            // ValidationException: harmless when it is stopping or has ended.
            Err(e) if e.code() == Some("ValidationException") => match self.describe(name).await {
                Ok(Some(s)) if s.state.is_terminal() || s.state == JobState::Stopping => Ok(()),
                _ => Err(self.error("StopTrainingJob", name, e)),
            },
            Err(e) => Err(self.error("StopTrainingJob", name, e)),
        }
    }

    fn job_url(&self, name: &str) -> Option<String> {
        let r = &self.region;
        let host = if r.starts_with("cn-") {
            "console.amazonaws.cn".to_string()
        } else {
            format!("{r}.console.aws.amazon.com")
        };
        Some(format!(
            "https://{host}/sagemaker/home?region={r}#/jobs/{name}"
        ))
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// A long quiet job is polled every 30 s at most (3 describes a minute),
    /// every 10 s after each state change.
    fn max_poll_interval(&self) -> Duration {
        self.poll_interval * 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Resolved;
    use std::path::PathBuf;

    fn plan() -> SagemakerPlan {
        SagemakerPlan {
            region: "eu-west-1".into(),
            role_arn: "arn:aws:iam::123456789012:role/train".into(),
            output_path: Some("s3://bucket/out".into()),
            subnets: vec![],
            security_groups: vec![],
        }
    }

    fn keys() -> BTreeMap<String, String> {
        [
            ("AWS_ACCESS_KEY_ID", "AKIAUNITTEST00001"),
            ("AWS_SECRET_ACCESS_KEY", "unittestsecret/0001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn spec() -> JobSpec {
        JobSpec {
            name: "churn-4242-1".into(),
            image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:abc".into(),
            instance: Resolved {
                requested: "cpu.small".into(),
                native: "ml.m5.large".into(),
                gpus: 0,
                cpus: Some(2),
                memory_gib: Some(8),
            },
            count: 1,
            hyperparameters: [("epochs".to_string(), "5".to_string())].into(),
            channels: [(
                "train".to_string(),
                Channel::Remote("s3://bucket/data/train".into()),
            )]
            .into(),
            env: [("LOG_LEVEL".to_string(), "info".to_string())].into(),
            max_runtime: Duration::from_millis(1500),
            metric_definitions: [("loss".to_string(), "loss=([0-9.]+)".to_string())].into(),
            output: None,
            tags: [
                ("mlcd:model".to_string(), "churn".to_string()),
                (
                    "run url".to_string(),
                    "https://github.com/acme/churn/actions/runs/1?x=1".to_string(),
                ),
                ("aws:reserved".to_string(), "x".to_string()),
            ]
            .into(),
            identity: crate::identity::Identity {
                source: "github.com/acme/churn".into(),
                model: "churn".into(),
                commit: Some("abc".into()),
                image: "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn:abc".into(),
                config: "none".into(),
                hyperparameters: "sha256:0123456789abcdef".into(),
            },
        }
    }

    async fn backend(p: SagemakerPlan) -> SagemakerTraining {
        SagemakerTraining::new(&p, &keys()).await.unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_create_request_follows_sagemakers_shapes() {
        let b = backend(plan()).await;
        let r = b.create_request(&spec()).unwrap();
        assert_eq!(r["ResourceConfig"]["InstanceType"], "ml.m5.large");
        assert_eq!(r["ResourceConfig"]["VolumeSizeInGB"], 30);
        assert_eq!(
            r["StoppingCondition"]["MaxRuntimeInSeconds"], 2,
            "rounded up"
        );
        assert_eq!(r["OutputDataConfig"]["S3OutputPath"], "s3://bucket/out");
        assert_eq!(
            r["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3DataDistributionType"],
            "FullyReplicated"
        );
        assert_eq!(
            r["AlgorithmSpecification"]["MetricDefinitions"][0]["Name"],
            "loss"
        );
        let tags = r["Tags"].as_array().unwrap();
        // model and run url, plus the identity's source, commit, image, config and
        // hyperparameters (model is shared): the aws: key is left out.
        assert_eq!(tags.len(), 7, "the aws: key is left out: {tags:?}");
        assert!(tags
            .iter()
            .any(|t| t["Key"] == "mlcd:source" && t["Value"] == "github.com/acme/churn"));
        assert!(tags
            .iter()
            .any(|t| t["Value"] == "https://github.com/acme/churn/actions/runs/1_x=1"));
        assert!(r.get("VpcConfig").is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bad_specs_fail_with_the_key_to_change() {
        let b = backend(plan()).await;
        // A local channel must be a directory; it is uploaded by `stage`.
        let mut s = spec();
        s.channels.insert(
            "local".into(),
            Channel::Local(PathBuf::from("/nonexistent/data")),
        );
        let e = b.check(&s).unwrap_err();
        assert!(e.message.contains("`train.channels.local`"), "{e}");
        assert!(e.message.contains("/nonexistent/data"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.csv"), "1\n").unwrap();
        s.channels
            .insert("local".into(), Channel::Local(dir.path().join("f.csv")));
        let e = b.check(&s).unwrap_err();
        assert!(e.message.contains("a file"), "{e}");
        s.channels
            .insert("local".into(), Channel::Local(dir.path().to_path_buf()));
        b.check(&s).expect("a local directory passes the checks");
        let e = b.create_request(&s).unwrap_err();
        assert!(e.message.contains("not uploaded to S3 yet"), "{e}");

        let mut s = spec();
        s.instance.native = "local".into();
        assert!(b.create_request(&s).unwrap_err().message.contains("ml."));

        let b = backend(SagemakerPlan {
            output_path: None,
            ..plan()
        })
        .await;
        // No output: the default bucket, once staged.
        let r = b.check(&spec()).unwrap();
        assert_eq!(
            r["OutputDataConfig"]["S3OutputPath"],
            "s3://sagemaker-eu-west-1-000000000000/"
        );
        let e = b.create_request(&spec()).unwrap_err();
        assert!(e.message.contains("sagemaker.output-path"), "{e}");
        let mut s = spec();
        s.output = Some("gs://bucket/out".into());
        assert!(b.create_request(&s).unwrap_err().message.contains("s3://"));
        assert!(b.check(&s).unwrap_err().message.contains("s3://"));

        let b = backend(SagemakerPlan {
            role_arn: String::new(),
            ..plan()
        })
        .await;
        let e = b.create_request(&spec()).unwrap_err();
        assert!(e.message.contains("sagemaker.role-arn"), "{e}");

        let b = backend(SagemakerPlan {
            subnets: vec!["subnet-0abc".into()],
            ..plan()
        })
        .await;
        let e = b.create_request(&spec()).unwrap_err();
        assert!(e.message.contains("sagemaker.security-groups"), "{e}");
        let b = backend(SagemakerPlan {
            subnets: vec!["subnet-0abc".into()],
            security_groups: vec!["sg-0abc".into()],
            ..plan()
        })
        .await;
        let r = b.create_request(&spec()).unwrap();
        assert_eq!(r["VpcConfig"]["Subnets"][0], "subnet-0abc");

        let mut s = spec();
        s.name = "churn_1".into();
        assert!(b
            .create_request(&s)
            .unwrap_err()
            .message
            .contains("job name"));
        let mut s = spec();
        s.env.insert("1BAD".into(), "x".into());
        assert!(b
            .create_request(&s)
            .unwrap_err()
            .message
            .contains("train.env"));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_missing_region_or_credentials_fails_before_any_request() {
        let e = SagemakerTraining::new(
            &SagemakerPlan {
                region: String::new(),
                ..plan()
            },
            &keys(),
        )
        .await
        .unwrap_err();
        assert!(e.message.contains("sagemaker.region"), "{e}");
        let e = SagemakerTraining::new(&plan(), &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(e.message.contains("no AWS credentials"), "{e}");
    }

    #[test]
    fn runtimes_are_at_least_a_second_and_at_most_28_days() {
        assert_eq!(max_runtime_seconds(Duration::ZERO), 1);
        assert_eq!(max_runtime_seconds(Duration::from_secs(3600)), 3600);
        assert_eq!(
            max_runtime_seconds(Duration::from_secs(60 * 24 * 3600)),
            28 * 24 * 3600
        );
    }

    #[test]
    fn describe_answers_map_onto_job_states() {
        let s = status_from_describe(
            "j",
            &json!({
                "TrainingJobName": "j",
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "FinalMetricDataList": [{"MetricName": "accuracy", "Value": 0.9, "Timestamp": 1.0}],
                "ModelArtifacts": {"S3ModelArtifacts": "s3://b/j/output/model.tar.gz"},
                "AlgorithmSpecification": {"TrainingImage": "img", "TrainingInputMode": "File"},
                "HyperParameters": {"epochs": "5"}
            }),
        )
        .unwrap();
        assert_eq!(s.state, JobState::Completed);
        assert_eq!(s.metrics.get("accuracy"), Some(&0.9));
        assert_eq!(s.artifact.as_deref(), Some("s3://b/j/output/model.tar.gz"));
        assert_eq!(s.image.as_deref(), Some("img"));
        assert_eq!(
            s.hyperparameters.get("epochs").map(String::as_str),
            Some("5")
        );
        for (raw, state) in [
            ("InProgress", JobState::InProgress),
            ("Failed", JobState::Failed),
            ("Stopping", JobState::Stopping),
            ("Stopped", JobState::Stopped),
        ] {
            let s = status_from_describe("j", &json!({ "TrainingJobStatus": raw })).unwrap();
            assert_eq!(s.state, state);
        }
        assert!(status_from_describe("j", &json!({ "TrainingJobStatus": "Weird" })).is_err());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_job_url_is_the_console_page() {
        let b = backend(plan()).await;
        assert_eq!(
            b.job_url("churn-1").unwrap(),
            "https://eu-west-1.console.aws.amazon.com/sagemaker/home?region=eu-west-1#/jobs/churn-1"
        );
        assert_eq!(b.poll_interval(), DEFAULT_POLL_INTERVAL);
    }

    #[test]
    fn not_found_is_recognised() {
        let e = aws::parse_error(
            400,
            None,
            br#"{"__type":"ValidationException","message":"Requested resource not found."}"#,
        );
        assert!(is_not_found(&e));
        let e = aws::parse_error(
            400,
            None,
            br#"{"__type":"ValidationException","message":"bad name"}"#,
        );
        assert!(!is_not_found(&e));
    }
}
