//! The deploy plan: which version goes behind which endpoint, the traffic steps
//! of the strategy, smoke tests and rollback triggers.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::kubernetes::ServingKubernetesPlan;
use super::paths::inside_workspace;
use super::train::{RegistryPlan, SagemakerPlan};
use super::Inputs;
use crate::config::suggest;
use crate::config::values::{
    Backend, ByteSize, DurationSpec, InstanceType, ModelId, Percent, Protocol, Steps, Strategy,
};
use crate::error::UserError;
use crate::instance::{self, Resolved};

/// The deploy settings `param-list` takes in deploy mode (Qwak's deploy action took
/// them this way), besides `from-file`.
pub const DEPLOY_PARAMS: &[&str] = &[
    "endpoint",
    "instance",
    "replicas",
    "workers",
    "strategy",
    "traffic",
    "steps",
    "interval",
    "variation-name",
    "environment",
    "protocol",
    "request-timeout",
    "ready-timeout",
    "max-batch-size",
    "max-batch-latency",
    "from-file",
];

/// What `mode: deploy` will do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DeployPlan {
    /// The image (model version) to deploy.
    pub image: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// Where this run comes from (`github.com/owner/repo`, or a machine's
    /// workspace): recorded as the owner of an endpoint this run creates, and
    /// compared before this run changes an existing one.
    pub source: String,
    /// The variation's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variation: Option<String>,
    /// The rollout strategy.
    pub strategy: Strategy,
    /// Traffic percentages the candidate takes, in order (for shadow: the share
    /// of requests copied to it).
    pub steps: Vec<u8>,
    /// Time between steps.
    pub interval: DurationSpec,
    /// The serving instance, resolved for the backend.
    pub instance: Resolved,
    /// Replicas.
    pub replicas: u32,
    /// Worker processes per replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Batching: max size and max latency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batching: Option<String>,
    /// Per-request timeout.
    pub request_timeout: DurationSpec,
    /// Bound on waiting for the new version to become ready.
    pub ready_timeout: DurationSpec,
    /// The serving protocol.
    pub protocol: Protocol,
    /// Container environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Smoke tests run against every new version.
    pub smoke: Vec<SmokePlan>,
    /// Roll back when a smoke test fails.
    pub rollback_on_smoke_failure: bool,
    /// Alarms that roll back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollback_alarms: Vec<String>,
    /// Roll back when the new version's share of 5xx answers to live traffic
    /// during a step's interval is above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_max_error_rate: Option<f64>,
    /// Roll back when the new version's p95 latency on live traffic during a
    /// step's interval is above this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_max_p95_latency: Option<DurationSpec>,
    /// Traffic capture.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CapturePlan>,
    /// The GitHub environment reported to.
    pub environment: String,
    /// Wait for the rollout to finish.
    pub wait: bool,
    /// Where the version to serve is found (the one trained for this commit).
    pub registry: RegistryPlan,
    /// SageMaker settings, for that backend or registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SagemakerPlan>,
    /// Kubernetes settings of the KServe InferenceService, for that backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<ServingKubernetesPlan>,
    /// Vertex AI settings, for that backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertex: Option<super::VertexPlan>,
    /// What a GitOps deploy (`deploy.gitops`) commits, step by step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gitops: Option<crate::gitops::plan::GitopsPlan>,
    /// Batching as numbers: the largest batch and its longest wait.
    #[serde(skip)]
    pub batching_limits: Option<(u32, Duration)>,
    /// Whether the image was named (input or `deploy.image`) rather than derived
    /// from the commit.
    #[serde(skip)]
    pub image_given: bool,
}

/// Traffic capture on the endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CapturePlan {
    /// The share of requests captured, 0 to 100.
    pub sample: u8,
    /// Where the capture files go: a directory relative to the workspace
    /// (local) or an `s3://` prefix (SageMaker).
    pub path: String,
    /// A local capture file is closed at this size.
    pub rotate_size: ByteSize,
    /// The most capture data the local router keeps.
    pub max_size: ByteSize,
    /// Records waiting to be written before new ones are dropped.
    pub queue: u32,
}

impl CapturePlan {
    /// The router's capture settings (the backend sets the directory it writes to).
    pub fn router_settings(&self) -> crate::serve::capture::CaptureSettings {
        crate::serve::capture::CaptureSettings {
            sample_percent: self.sample,
            dir: crate::serve::capture::ROUTER_CAPTURE_DIR.to_string(),
            rotate_bytes: self.rotate_size.0,
            max_bytes: self.max_size.0,
            queue: self.queue,
        }
    }
}

/// The capture plan of `deploy.capture`, checked for the backend (also where
/// `mode: monitor` finds captured traffic).
pub(crate) fn capture_plan(
    inputs: &Inputs,
    backend: Backend,
    endpoint: &str,
) -> Result<Option<CapturePlan>, UserError> {
    let Some(c) = &inputs.cfg().deploy.capture else {
        return Ok(None);
    };
    let key = ["deploy", "capture", "path"];
    let path = match (backend, c.path.as_deref().map(str::trim)) {
        (Backend::Sagemaker, Some(p)) if p.starts_with("s3://") && p.len() > 5 => p.to_string(),
        (Backend::Sagemaker, given) => {
            return Err(inputs
                .config_error(
                    &key,
                    format!(
                        "`deploy.capture.path`: SageMaker writes capture files to S3, so it needs an `s3://bucket/prefix`, found {}",
                        given.map_or("nothing".to_string(), |g| format!("`{g}`"))
                    ),
                )
                .hint("set `deploy.capture.path: s3://<bucket>/<prefix>` (SageMaker adds `<endpoint>/<variant>/yyyy/mm/dd/hh/`)"))
        }
        (_, Some(p)) if p.contains("://") => {
            return Err(inputs
                .config_error(
                    &key,
                    format!(
                        "`deploy.capture.path` `{p}`: `backend: {backend}` copies capture files to a directory on this machine, not to a URL"
                    ),
                )
                .hint("give a directory (relative to mlcd.yml, inside the workspace), or leave it out for `.mlcd/capture/<endpoint>`"))
        }
        (_, Some(p)) if !p.is_empty() => {
            // Like every path in the file: relative to it, inside the workspace.
            let ws = &inputs.context.workspace;
            let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());
            inside_workspace(ws, base, Path::new(p), "`deploy.capture.path`")
                .map_err(|e| inputs.config_error(&key, e))?
                .display
        }
        _ => format!(".mlcd/capture/{endpoint}"),
    };
    let rotate_size = c.rotate_size.unwrap_or(ByteSize(16_000_000));
    let max_size = c.max_size.unwrap_or(ByteSize(256_000_000));
    if max_size < rotate_size {
        return Err(inputs.config_error(
            &["deploy", "capture", "max-size"],
            format!(
                "`deploy.capture.max-size` ({max_size}) is below `rotate-size` ({rotate_size}): the endpoint keeps at least one whole file"
            ),
        ));
    }
    let queue = c.queue.unwrap_or(1024);
    if queue == 0 {
        return Err(inputs.config_error(
            &["deploy", "capture", "queue"],
            "`deploy.capture.queue` must be at least 1",
        ));
    }
    Ok(Some(CapturePlan {
        sample: c.sample.map_or(100, |p| p.0),
        path,
        rotate_size,
        max_size,
        queue,
    }))
}

/// One smoke test.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SmokePlan {
    /// The request file, relative to the workspace.
    pub request: String,
    /// Expected status.
    pub expect_status: u16,
    /// Expected output file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect_output: Option<String>,
    /// Latency budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<DurationSpec>,
}

fn param_err(key: &str, e: impl std::fmt::Display) -> UserError {
    UserError::invalid(format!("param-list `{key}`: {e}"))
}

/// Plans a rollout.
pub fn plan(inputs: &Inputs, model: &ModelId, backend: Backend) -> Result<DeployPlan, UserError> {
    let cfg = &inputs.cfg().deploy;
    let req = inputs.request;
    let params: BTreeMap<&str, &str> = req
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for k in params.keys() {
        if !DEPLOY_PARAMS.contains(k) {
            return Err(UserError::invalid(format!(
                "param-list: {}",
                suggest::unknown_word("deploy setting", k, DEPLOY_PARAMS)
            )));
        }
    }
    let p = |k: &str| params.get(k).copied();
    let parse_p = |k: &str| -> Result<Option<DurationSpec>, UserError> {
        p(k).map(|v| v.parse().map_err(|e| param_err(k, e)))
            .transpose()
    };
    let u32_p = |k: &str| -> Result<Option<u32>, UserError> {
        p(k).map(|v| {
            v.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                param_err(
                    k,
                    format!("expected a whole number of at least 1, found `{v}`"),
                )
            })
        })
        .transpose()
    };

    let image_given = req.image.is_some() || req.build_id.is_some() || cfg.image.is_some();
    let registry = super::train::registry_plan(inputs, model)?;
    let image = match (&req.image, &req.build_id, &cfg.image) {
        (Some(i), _, _) => i.to_string(),
        (None, Some(b), _) => b.clone(),
        (None, None, Some(i)) => i.to_string(),
        (None, None, None) => inputs
            .commit_image(model)
            .map(|i| i.to_string())
            .ok_or_else(|| {
                UserError::invalid("no version to deploy: no `image` or `build-id` input, no `deploy.image`, and no commit to find the model trained for it")
                    .hint("give `image` (CLI: --image …) or run inside a git checkout")
            })?,
    };

    let strategy_overridden = p("strategy").is_some() || req.strategy.is_some();
    let strategy = match p("strategy") {
        Some(s) => s.parse().map_err(|e| param_err("strategy", e))?,
        None => req.strategy.or(cfg.strategy).unwrap_or(Strategy::AllAtOnce),
    };
    let traffic: Option<Percent> = match p("traffic") {
        Some(t) => Some(t.parse().map_err(|e| param_err("traffic", e))?),
        None => req.traffic.or(cfg.traffic),
    };
    // Steps written in the config belong to the config's strategy: when an input
    // switches to a strategy without steps (shadow, all-at-once, blue-green), they
    // no longer apply; steps given with the override still must fit it.
    let stepped = matches!(strategy, Strategy::Canary | Strategy::Linear);
    let config_steps: Option<Steps> = match p("steps") {
        Some(s) => Some(s.parse().map_err(|e| param_err("steps", e))?),
        None if strategy_overridden && !stepped => None,
        None => cfg.steps.clone(),
    };
    let steps = steps_for(strategy, traffic, config_steps.as_ref()).map_err(|e| {
        if req.traffic.is_some() {
            UserError::invalid(format!("input `traffic`: {e}"))
        } else {
            inputs.config_error(&["deploy", "steps"], format!("`deploy`: {e}"))
        }
    })?;

    let instance_name: InstanceType = match p("instance") {
        Some(i) => i.parse().map_err(|e| param_err("instance", e))?,
        None => req
            .instance
            .clone()
            .or_else(|| cfg.instance.clone())
            .unwrap_or_else(|| "cpu.small".parse().expect("valid")),
    };
    let instance = instance::resolve(&instance_name, backend).map_err(|e| {
        inputs.config_error(&["deploy", "instance"], format!("deploy instance: {e}"))
    })?;

    let max_batch_size = u32_p("max-batch-size")?;
    let max_batch_latency = parse_p("max-batch-latency")?;
    let batching_limits = match (&cfg.batching, max_batch_size, max_batch_latency) {
        (_, Some(s), Some(l)) => Some((s, l.0)),
        (Some(b), s, l) => Some((s.unwrap_or(b.max_batch_size), l.unwrap_or(b.max_latency).0)),
        _ => None,
    };
    let batching = match (&cfg.batching, max_batch_size, max_batch_latency) {
        (_, Some(s), Some(l)) => Some(format!("{s} requests or {l}")),
        (Some(b), s, l) => Some(format!(
            "{} requests or {}",
            s.unwrap_or(b.max_batch_size),
            l.unwrap_or(b.max_latency)
        )),
        (None, None, None) => None,
        (None, _, _) => {
            return Err(UserError::invalid(
                "param-list: batching needs both `max-batch-size` and `max-batch-latency`",
            ))
        }
    };

    let ws = &inputs.context.workspace;
    let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());
    let mut smoke = Vec::new();
    for (i, t) in cfg.smoke.iter().enumerate() {
        let key = ["deploy", "smoke", "request"];
        let what = format!("`deploy.smoke[{i}].request`");
        let req_path = inside_workspace(ws, base, Path::new(&t.request), &what)
            .map_err(|e| inputs.config_error(&key, e))?;
        if !req_path.abs.is_file() {
            return Err(inputs
                .config_error(
                    &key,
                    format!(
                        "{what}: the sample request file `{}` does not exist",
                        t.request
                    ),
                )
                .hint("smoke-test request paths are relative to the config file"));
        }
        let expect_output = match &t.expect_output {
            Some(o) => {
                let what = format!("`deploy.smoke[{i}].expect-output`");
                let op = inside_workspace(ws, base, Path::new(o), &what)
                    .map_err(|e| inputs.config_error(&["deploy", "smoke", "expect-output"], e))?;
                if !op.abs.is_file() {
                    return Err(inputs.config_error(
                        &["deploy", "smoke", "expect-output"],
                        format!("{what}: the expected output file `{o}` does not exist"),
                    ));
                }
                Some(op.display)
            }
            None => None,
        };
        smoke.push(SmokePlan {
            request: req_path.display,
            expect_status: t.expect_status.unwrap_or(200),
            expect_output,
            max_latency: t.max_latency,
        });
    }

    let mut env = cfg.env.clone();
    env.extend(req.env_vars.iter().cloned());

    let endpoint = p("endpoint")
        .map(str::to_string)
        .or_else(|| cfg.endpoint.clone())
        .unwrap_or_else(|| model.to_string());
    if let Some(r) = cfg.rollback.max_error_rate {
        if !(0.0..=1.0).contains(&r) || r.is_nan() {
            return Err(inputs
                .config_error(
                    &["deploy", "rollback", "max-error-rate"],
                    format!("`deploy.rollback.max-error-rate` is {r}: expected a share from 0 to 1, like 0.01 for 1%"),
                )
                .hint("write the share, not the percentage: 0.05 means 5%"));
        }
    }
    let capture = capture_plan(inputs, backend, &endpoint)?;
    let kubernetes = if backend == Backend::Kubernetes {
        if strategy == Strategy::Shadow && steps != [100] {
            // KServe cannot mirror: the shadow answers only the replayed samples.
            let e = format!("a shadow on `backend: kubernetes` takes no share of the live traffic (KServe cannot mirror traffic: the shadow revision runs beside the live one and answers only the replayed sample requests), so a `traffic` share of {}% cannot be honoured", steps[0]);
            return Err(if req.traffic.is_some() || p("traffic").is_some() {
                UserError::invalid(format!("input `traffic`: {e}"))
            } else {
                inputs.config_error(&["deploy", "traffic"], format!("`deploy.traffic`: {e}"))
            }
            .hint("leave `traffic` out for a shadow on Kubernetes, or run the shadow on `backend: local` or `backend: sagemaker` to mirror a share of live traffic"));
        }
        check_inference_service_name(&endpoint).map_err(|e| {
            if p("endpoint").is_some() {
                param_err("endpoint", e)
            } else if cfg.endpoint.is_some() {
                inputs.config_error(&["deploy", "endpoint"], format!("`deploy.endpoint`: {e}"))
            } else {
                UserError::invalid(format!(
                    "the endpoint name (the model id, as `deploy.endpoint` is not set): {e}"
                ))
                .hint("set `deploy.endpoint` to a name like `churn`")
            }
        })?;
        let k = super::kubernetes::serving_plan(inputs)?;
        if k.deployment_mode == Some(crate::config::types::KserveMode::Standard)
            && matches!(
                strategy,
                Strategy::Canary | Strategy::Linear | Strategy::Shadow
            )
        {
            let e = if strategy == Strategy::Shadow {
                "the `shadow` strategy needs KServe's serverless mode, but `kubernetes.deployment-mode` is `standard`: KServe's Standard (RawDeployment) mode runs one version at a time, so there is no second revision to compare".to_string()
            } else {
                format!("the `{strategy}` strategy needs KServe's serverless mode, but `kubernetes.deployment-mode` is `standard`: KServe's Standard (RawDeployment) mode ignores `canaryTrafficPercent` and would send all the traffic to the new version at once")
            };
            return Err(if strategy_overridden {
                UserError::invalid(format!("input `strategy`: {e}"))
            } else {
                inputs.config_error(&["kubernetes", "deployment-mode"], e)
            }
            .hint("use `strategy: all-at-once` or `blue-green` in standard mode, or `kubernetes.deployment-mode: serverless` (Knative) for canary and linear steps"));
        }
        Some(k)
    } else {
        None
    };

    let vertex = if backend == Backend::Vertex {
        if capture.is_some() {
            return Err(inputs
                .config_error(
                    &["deploy", "capture"],
                    "`deploy.capture`: mlcd does not capture traffic on `backend: vertex` (Vertex logs requests to BigQuery, which mlcd does not read)",
                )
                .hint("remove `deploy.capture`, or turn on Vertex's request-response logging to BigQuery yourself"));
        }
        crate::serve::vertex::check_endpoint_name(&endpoint).map_err(|e| {
            if p("endpoint").is_some() {
                param_err("endpoint", e)
            } else if cfg.endpoint.is_some() {
                inputs.config_error(&["deploy", "endpoint"], format!("`deploy.endpoint`: {e}"))
            } else {
                UserError::invalid(format!(
                    "the endpoint name (the model id, as `deploy.endpoint` is not set): {e}"
                ))
                .hint("set `deploy.endpoint` to a name like `churn`")
            }
        })?;
        Some(super::vertex::plan(inputs, "serving", false)?)
    } else {
        None
    };
    Ok(DeployPlan {
        image,
        endpoint,
        source: crate::identity::source_of(inputs.context),
        variation: p("variation-name")
            .map(str::to_string)
            .or_else(|| cfg.variation.clone()),
        strategy,
        steps,
        interval: parse_p("interval")?
            .or(cfg.interval)
            .unwrap_or(DurationSpec(Duration::from_secs(300))),
        instance,
        replicas: u32_p("replicas")?
            .or(req.replicas)
            .or(cfg.replicas)
            .unwrap_or(1),
        workers: u32_p("workers")?.or(cfg.workers),
        batching,
        request_timeout: parse_p("request-timeout")?
            .or(cfg.request_timeout)
            .unwrap_or(DurationSpec(Duration::from_secs(60))),
        ready_timeout: parse_p("ready-timeout")?
            .or(req.timeout)
            .or(cfg.ready_timeout)
            .unwrap_or(DurationSpec(Duration::from_secs(600))),
        protocol: match p("protocol") {
            Some(v) => v.parse().map_err(|e| param_err("protocol", e))?,
            None => cfg.protocol.unwrap_or(Protocol::Sagemaker),
        },
        env,
        smoke,
        rollback_on_smoke_failure: cfg.rollback.on_smoke_failure.unwrap_or(true),
        rollback_alarms: cfg.rollback.alarms.clone(),
        rollback_max_error_rate: cfg.rollback.max_error_rate,
        rollback_max_p95_latency: cfg.rollback.max_p95_latency,
        capture,
        environment: p("environment")
            .map(str::to_string)
            .or_else(|| req.environment.clone())
            .or_else(|| cfg.environment.clone())
            .unwrap_or_else(|| "production".into()),
        wait: req.wait.unwrap_or(true),
        registry: registry.clone(),
        sagemaker: super::train::sagemaker_plan(inputs, backend, registry.kind, "serving")?,
        kubernetes,
        vertex,
        gitops: None,
        batching_limits,
        image_given,
    })
}

/// The longest InferenceService name: KServe names the predictor's Service
/// `<name>-predictor`, and a Service name is a DNS label of at most 63.
pub const MAX_INFERENCE_SERVICE_NAME: usize = 63 - "-predictor".len();

/// Checks that `name` can name a KServe InferenceService: a DNS-1035 label
/// (KServe's own rule: a lowercase letter first, then lowercase letters, digits
/// and `-`, alphanumeric last), short enough for its predictor's Service name.
pub fn check_inference_service_name(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if !ok {
        return Err(format!(
            "`{name}` is not a KServe InferenceService name: a lowercase letter first, then lowercase letters, digits and `-`, ending with a letter or digit"
        ));
    }
    if name.len() > MAX_INFERENCE_SERVICE_NAME {
        return Err(format!(
            "`{name}` is {} characters: an InferenceService name takes at most {MAX_INFERENCE_SERVICE_NAME} (its predictor's Service is `<name>-predictor`, at most 63)",
            name.len()
        ));
    }
    Ok(())
}

/// The traffic steps a strategy takes. `traffic` sets the first step; the
/// configured steps above it follow.
fn steps_for(
    strategy: Strategy,
    traffic: Option<Percent>,
    steps: Option<&Steps>,
) -> Result<Vec<u8>, String> {
    let configured: Vec<u8> = steps
        .map(|s| s.0.iter().map(|p| p.0).collect())
        .unwrap_or_default();
    match strategy {
        Strategy::AllAtOnce | Strategy::BlueGreen => {
            if let Some(t) = traffic.filter(|t| t.0 != 100) {
                return Err(format!(
                    "`{strategy}` moves all traffic at once, so a first step of {t}% does not apply: use `canary` or `linear` for partial traffic"
                ));
            }
            if !configured.is_empty() && configured != [100] {
                return Err(format!(
                    "`{strategy}` takes no traffic steps: use `canary` or `linear` for steps"
                ));
            }
            Ok(vec![100])
        }
        Strategy::Shadow => {
            if configured.len() > 1 {
                return Err("`shadow` copies a share of the traffic and takes no steps: give one `traffic` percentage".into());
            }
            let share = traffic
                .map(|t| t.0)
                .or(configured.first().copied())
                .unwrap_or(100);
            if share == 0 {
                return Err("a shadow copy of 0% of the traffic would test nothing".into());
            }
            Ok(vec![share])
        }
        Strategy::Canary | Strategy::Linear => {
            let default: &[u8] = if strategy == Strategy::Canary {
                &[10, 50, 100]
            } else {
                &[25, 50, 75, 100]
            };
            let base: Vec<u8> = if configured.is_empty() {
                default.to_vec()
            } else {
                configured
            };
            let mut out = Vec::new();
            if let Some(t) = traffic {
                if t.0 == 0 {
                    return Err("the first traffic step must be above 0%".into());
                }
                out.push(t.0);
            }
            for s in base {
                if out.last().is_none_or(|l| s > *l) {
                    out.push(s);
                }
            }
            if out.last() != Some(&100) {
                out.push(100);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_steps_start_at_the_traffic_input() {
        let steps: Steps = "10,50,100".parse().unwrap();
        assert_eq!(
            steps_for(Strategy::Canary, None, Some(&steps)).unwrap(),
            [10, 50, 100]
        );
        assert_eq!(
            steps_for(Strategy::Canary, Some(Percent(20)), Some(&steps)).unwrap(),
            [20, 50, 100]
        );
        assert_eq!(
            steps_for(Strategy::Canary, Some(Percent(60)), Some(&steps)).unwrap(),
            [60, 100]
        );
        assert_eq!(
            steps_for(Strategy::Linear, None, None).unwrap(),
            [25, 50, 75, 100]
        );
        let partial: Steps = "5,20".parse().unwrap();
        assert_eq!(
            steps_for(Strategy::Canary, None, Some(&partial)).unwrap(),
            [5, 20, 100]
        );
    }

    #[test]
    fn partial_traffic_with_all_at_once_is_refused() {
        assert!(steps_for(Strategy::AllAtOnce, Some(Percent(10)), None).is_err());
        assert_eq!(steps_for(Strategy::BlueGreen, None, None).unwrap(), [100]);
    }

    #[test]
    fn inference_service_names_are_dns_1035_labels() {
        assert!(check_inference_service_name("churn-v2").is_ok());
        assert!(check_inference_service_name("2churn").is_err());
        assert!(check_inference_service_name("Churn").is_err());
        assert!(check_inference_service_name("churn_v2").is_err());
        assert!(check_inference_service_name("churn-").is_err());
        assert!(check_inference_service_name(&"a".repeat(53)).is_ok());
        assert!(check_inference_service_name(&"a".repeat(54)).is_err());
    }

    #[test]
    fn shadow_takes_one_share() {
        assert_eq!(steps_for(Strategy::Shadow, None, None).unwrap(), [100]);
        assert_eq!(
            steps_for(Strategy::Shadow, Some(Percent(30)), None).unwrap(),
            [30]
        );
        let two: Steps = "10,50".parse().unwrap();
        assert!(steps_for(Strategy::Shadow, None, Some(&two)).is_err());
    }
}
