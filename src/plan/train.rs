//! The training plan: image, job name, instance, hyperparameters, channels,
//! waits and gates, and the registry a passing model goes to.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use super::paths::inside_workspace;
use super::Inputs;
use crate::config::types::Better;
use crate::config::values::{Backend, DurationSpec, ModelId, OnStop, RegistryType};
use crate::error::UserError;
use crate::identity::{self as ident, Identity};
use crate::instance::{self, Resolved};

/// What `mode: train` will run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainPlan {
    /// The training image.
    pub image: String,
    /// The job's name: derived from model, run and attempt, so a re-run attaches.
    pub job_name: String,
    /// The run this job is for, recorded with the job and compared before
    /// attaching to a job found by name.
    pub identity: Identity,
    /// A job to attach to instead of submitting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach: Option<String>,
    /// The instance type, resolved for the backend.
    pub instance: Resolved,
    /// Instance count.
    pub count: u32,
    /// Hyperparameters as the container receives them (strings).
    pub hyperparameters: BTreeMap<String, String>,
    /// Input channels: name → workspace path or URI.
    pub channels: BTreeMap<String, String>,
    /// Container environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Wait for the job.
    pub wait: bool,
    /// Bound on the wait.
    pub timeout: DurationSpec,
    /// The job's own maximum runtime.
    pub max_runtime: DurationSpec,
    /// What happens to the job when the wait times out.
    pub on_timeout: OnStop,
    /// What happens to the job when the workflow is cancelled.
    pub on_cancel: OnStop,
    /// Metric gates: metric → condition.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gates: BTreeMap<String, String>,
    /// Metrics read from logs: name → regex.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, String>,
    /// Champion/challenger comparison, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub champion: Option<ChampionPlan>,
    /// Where remote backends write the model artifact (`train.output`, else
    /// `sagemaker.output-path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Where a passing model is registered.
    pub registry: RegistryPlan,
    /// SageMaker settings, for that backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SagemakerPlan>,
    /// Kubernetes settings, for that backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<super::KubernetesPlan>,
    /// Vertex AI settings, for that backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertex: Option<super::VertexPlan>,
}

/// The champion/challenger comparison: the new model must be at least as good
/// as the version the alias points to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ChampionPlan {
    /// The metric compared.
    pub metric: String,
    /// Which direction is better.
    pub better: Better,
    /// The alias marking the champion.
    pub alias: String,
}

/// Where a model version is recorded.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryPlan {
    /// `local`, `mlflow`, `sagemaker` or `vertex`.
    #[serde(rename = "type")]
    pub kind: RegistryType,
    /// The registered model's name.
    pub model_name: String,
    /// The directory or tracking URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The alias a passing version gets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// The Vertex AI project and region (`registry.type: vertex`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vertex: Option<super::VertexPlan>,
}

/// The SageMaker settings a job needs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SagemakerPlan {
    /// AWS region.
    pub region: String,
    /// Execution role.
    pub role_arn: String,
    /// Where job output goes (`s3://…`): `sagemaker.output-path`, else `train.output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    /// VPC subnets jobs run in (`sagemaker.subnets`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subnets: Vec<String>,
    /// VPC security groups (`sagemaker.security-groups`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
}

/// Plans a training job.
pub fn plan(inputs: &Inputs, model: &ModelId, backend: Backend) -> Result<TrainPlan, UserError> {
    let cfg = &inputs.cfg().train;
    let req = inputs.request;
    let ctx = inputs.context;

    let image = match (&req.image, &req.build_id, &cfg.image) {
        (Some(i), _, _) => i.to_string(),
        (None, Some(b), _) => b.clone(),
        (None, None, Some(i)) => i.to_string(),
        (None, None, None) => inputs
            .commit_image(model)
            .map(|i| i.to_string())
            .ok_or_else(|| {
                UserError::invalid("no image to train: no `image` or `build-id` input, no `train.image`, and no commit to find the image built for it")
                    .hint("give `image` (CLI: --image 127.0.0.1:5000/churn:abc1234) or run inside a git checkout")
            })?,
    };

    let instance_name = req
        .instance
        .clone()
        .or_else(|| cfg.instance.clone())
        .unwrap_or_else(|| "cpu.small".parse().expect("a valid instance name"));
    let instance = instance::resolve(&instance_name, backend).map_err(|e| {
        let e = if req.instance.is_some() {
            UserError::invalid(format!("input `instance`: {e}"))
        } else {
            inputs.config_error(&["train", "instance"], format!("`train.instance`: {e}"))
        };
        e.hint("use a portable name (see README: instance types) or the backend's native type")
    })?;

    let mut hyperparameters: BTreeMap<String, String> = cfg
        .hyperparameters
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    for (k, v) in &req.params {
        hyperparameters.insert(k.clone(), v.clone());
    }

    let ws = &ctx.workspace;
    let base = inputs.config.map_or(ws.as_path(), |c| c.dir.as_path());
    let mut channels = BTreeMap::new();
    for (name, src) in &cfg.channels {
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(inputs.config_error(
                &["train", "channels", name],
                format!("channel name `{name}` must be letters, digits, `-` and `_` (it becomes /opt/ml/input/data/{name}/)"),
            ));
        }
        let value = if src.contains("://") {
            src.clone()
        } else {
            let what = format!("`train.channels.{name}`");
            let p = inside_workspace(ws, base, Path::new(src), &what)
                .map_err(|e| inputs.config_error(&["train", "channels", name], e))?;
            if !p.abs.exists() {
                return Err(inputs.config_error(
                    &["train", "channels", name],
                    format!("{what}: `{src}` does not exist (resolved to {})", p.display),
                ));
            }
            p.display
        };
        channels.insert(name.clone(), value);
    }

    let mut env = cfg.env.clone();
    env.extend(req.env_vars.iter().cloned());

    let timeout = req
        .timeout
        .or(cfg.timeout)
        .unwrap_or(DurationSpec(Duration::from_secs(3600)));
    let max_runtime = cfg.max_runtime.unwrap_or(timeout);

    let identity = Identity::new(
        ctx,
        model.as_str(),
        &image,
        inputs.config.map(|c| c.digest.as_str()),
        Some(&hyperparameters),
    );
    let job_name = job_name(inputs, model, &identity);

    let registry = registry_plan(inputs, model)?;
    let sagemaker = sagemaker_plan(inputs, backend, registry.kind, "training")?;
    let kubernetes = match backend {
        Backend::Kubernetes => Some(super::kubernetes::plan(inputs)?),
        _ => None,
    };
    let vertex = match backend {
        Backend::Vertex => {
            super::vertex::check_train(inputs, &channels, &instance, req.instance.is_some())?;
            Some(super::vertex::plan(inputs, "training", true)?)
        }
        _ => None,
    };

    Ok(TrainPlan {
        image,
        job_name,
        identity,
        attach: req.attach.clone(),
        instance,
        count: cfg.count.unwrap_or(1).max(1),
        hyperparameters,
        channels,
        env,
        wait: req.wait.or(cfg.wait).unwrap_or(true),
        timeout,
        max_runtime,
        on_timeout: cfg.on_timeout.unwrap_or(OnStop::Stop),
        on_cancel: cfg.on_cancel.unwrap_or(OnStop::Stop),
        gates: cfg
            .gates
            .iter()
            .map(|(k, g)| (k.clone(), g.to_string()))
            .collect(),
        metrics: cfg
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.regex.clone()))
            .collect(),
        champion: cfg.champion.as_ref().map(|c| ChampionPlan {
            metric: c.metric.clone(),
            better: c.better,
            alias: c.alias.clone().unwrap_or_else(|| "production".into()),
        }),
        output: cfg
            .output
            .clone()
            .or_else(|| inputs.cfg().sagemaker.output_path.clone()),
        registry,
        sagemaker,
        kubernetes,
        vertex,
    })
}

/// The longest job name every backend takes (SageMaker and Kubernetes: 63).
const MAX_JOB_NAME: usize = 63;

/// `<model>-<run id>-<attempt>-<h>` in GitHub (a re-run of the same attempt
/// attaches); outside GitHub `<model>-<short sha>-<h>`. `h` tells apart the
/// sources (repository, or machine and workspace) and the hyperparameters, so
/// two repositories with the same model id and run id never share a name.
fn job_name(inputs: &Inputs, model: &ModelId, identity: &Identity) -> String {
    let ctx = inputs.context;
    let h = ident::short_hash(&[&identity.source, &identity.hyperparameters]);
    let suffix = match &ctx.run_id {
        Some(run) => format!("{run}-{}-{h}", ctx.run_attempt.as_deref().unwrap_or("1")),
        None => {
            let sha = inputs.short_sha().unwrap_or_else(|| "nocommit".into());
            format!("{sha}-{h}")
        }
    };
    ident::fit_name(model.as_str(), &suffix, MAX_JOB_NAME)
}

/// Where versions are recorded (train registers; deploy finds the version to serve).
pub(super) fn registry_plan(inputs: &Inputs, model: &ModelId) -> Result<RegistryPlan, UserError> {
    let reg = &inputs.cfg().registry;
    let kind = reg.kind.unwrap_or(RegistryType::Local);
    Ok(RegistryPlan {
        kind,
        model_name: reg.model_name.clone().unwrap_or_else(|| model.to_string()),
        location: match kind {
            RegistryType::Local => Some(reg.path.clone().unwrap_or_else(|| ".mlcd/registry".into())),
            RegistryType::Mlflow => Some(
                reg.tracking_uri
                    .clone()
                    .or_else(|| inputs.env.get("MLFLOW_TRACKING_URI").cloned())
                    .ok_or_else(|| {
                        inputs.config_error(&["registry", "type"], "`registry.type: mlflow` needs `registry.tracking-uri` or the MLFLOW_TRACKING_URI variable")
                    })?,
            ),
            RegistryType::Sagemaker | RegistryType::Vertex => None,
        },
        alias: reg.alias.clone(),
        vertex: match kind {
            RegistryType::Vertex => Some(super::vertex::plan(inputs, "the model registry", false)?),
            _ => None,
        },
    })
}

/// The SageMaker settings, when the backend or the registry is SageMaker.
/// `what` names the use in errors (`training`, `serving`).
pub(super) fn sagemaker_plan(
    inputs: &Inputs,
    backend: Backend,
    registry: RegistryType,
    what: &str,
) -> Result<Option<SagemakerPlan>, UserError> {
    if backend != Backend::Sagemaker && registry != RegistryType::Sagemaker {
        return Ok(None);
    }
    let sm = &inputs.cfg().sagemaker;
    let region = sm
        .region
        .clone()
        .or_else(|| inputs.env.get("AWS_REGION").cloned())
        .or_else(|| inputs.env.get("AWS_DEFAULT_REGION").cloned())
        .ok_or_else(|| {
            inputs
                .config_error(
                    &["sagemaker"],
                    "SageMaker needs a region: set `sagemaker.region` or AWS_REGION",
                )
                .hint("aws-actions/configure-aws-credentials sets AWS_REGION for you")
        })?;
    let role_arn = inputs
        .request
        .iam_role_arn
        .clone()
        .or_else(|| sm.role_arn.clone())
        .ok_or_else(|| {
            inputs
                .config_error(&["sagemaker"], format!("SageMaker {what} needs an execution role: set `sagemaker.role-arn` or the `iam-role-arn` input"))
                .hint("the role SageMaker assumes, like arn:aws:iam::123456789012:role/sagemaker-train")
        })?;
    if !role_arn.starts_with("arn:aws") || !role_arn.contains(":role/") {
        return Err(inputs.config_error(
            &["sagemaker", "role-arn"],
            format!(
                "`{role_arn}` is not an IAM role ARN (expected arn:aws:iam::<account>:role/<name>)"
            ),
        ));
    }
    Ok(Some(SagemakerPlan {
        region,
        role_arn,
        output_path: sm
            .output_path
            .clone()
            .or_else(|| inputs.cfg().train.output.clone()),
        subnets: sm.subnets.clone(),
        security_groups: sm.security_groups.clone(),
    }))
}
