//! The Plan: what a mode will do, computed from inputs + config + event before
//! anything is touched. `dry-run` prints it; the mode runners execute it.

mod build;
mod deploy;
pub mod kubernetes;
pub mod monitor;
pub(crate) mod paths;
pub mod render;
pub mod tags;
mod train;
pub mod vertex;

use std::collections::BTreeMap;

use serde::Serialize;

pub use build::BuildPlan;
pub use deploy::{DeployPlan, SmokePlan};
pub use kubernetes::{KubernetesPlan, ServingKubernetesPlan};
pub use monitor::MonitorPlan;
pub use train::{ChampionPlan, RegistryPlan, SagemakerPlan, TrainPlan};
pub use vertex::VertexPlan;

use crate::config::values::{Backend, ImageRef, Mode, ModelId};
use crate::config::{Config, LoadedConfig};
use crate::context::{GitHubContext, Trigger};
use crate::error::{Location, UserError};
use crate::inputs::Request;

/// What a run will do.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Plan {
    /// The mode.
    pub mode: Mode,
    /// The model.
    pub model_id: ModelId,
    /// Where it runs.
    pub backend: Backend,
    /// Plan only.
    pub dry_run: bool,
    /// What the run acts on.
    pub source: SourcePlan,
    /// The config file, when one was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigRef>,
    /// The build, for `mode: build`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildPlan>,
    /// The training job, for `mode: train`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainPlan>,
    /// The rollout, for `mode: deploy`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployPlan>,
    /// The drift and quality check, for `mode: monitor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorPlan>,
}

/// The commit and trigger a run acts on.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SourcePlan {
    /// `owner/repo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// What triggered the run.
    pub trigger: Trigger,
    /// The workflow run's page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_url: Option<String>,
}

/// The config file a plan was made from.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigRef {
    /// Path relative to the workspace.
    pub path: String,
    /// `sha256:` of its bytes.
    pub digest: String,
}

/// Everything a plan is made from.
pub struct Inputs<'a> {
    /// The typed inputs.
    pub request: &'a Request,
    /// The config file, if any.
    pub config: Option<&'a LoadedConfig>,
    /// The GitHub context.
    pub context: &'a GitHubContext,
    /// Environment variables (region defaults and the like).
    pub env: &'a BTreeMap<String, String>,
}

impl Inputs<'_> {
    fn cfg(&self) -> &Config {
        static EMPTY: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        self.config
            .map(|c| &c.config)
            .unwrap_or_else(|| EMPTY.get_or_init(Config::default))
    }

    /// Where a config key is written, for errors found after parsing.
    fn at(&self, key: &[&str]) -> Option<Location> {
        self.config.and_then(|c| c.locate(key))
    }

    /// An invalid-config error pointing at `key` when it is written in the file.
    fn config_error(&self, key: &[&str], message: impl Into<String>) -> UserError {
        let e = UserError::invalid(message);
        match self.at(key) {
            Some(l) => e.at(l),
            None => e,
        }
    }

    fn model_id(&self) -> Result<ModelId, UserError> {
        if let Some(m) = &self.request.model_id {
            return Ok(m.clone());
        }
        if let Trigger::RepositoryDispatch {
            model_id: Some(m), ..
        } = &self.context.trigger
        {
            return m.parse().map_err(|e| {
                UserError::invalid(format!(
                    "repository_dispatch client_payload `model-id`: {e}"
                ))
            });
        }
        self.cfg().model.clone().ok_or_else(|| {
            UserError::invalid(
                "missing model-id: no `model-id` input and no `model` key in the config file",
            )
            .hint("set the `model-id` input (CLI: --model-id churn) or `model: churn` in mlcd.yml")
        })
    }

    fn backend(&self) -> Backend {
        self.request
            .backend
            .or(self.cfg().backend)
            .unwrap_or(Backend::Local)
    }

    fn short_sha(&self) -> Option<String> {
        self.context
            .sha
            .as_ref()
            .map(|s| s.chars().take(7).collect())
    }

    /// The image built for this commit: `<registry>/<model>:<sha>`, or the
    /// local-only `<model>:<sha>` when no registry is configured.
    fn commit_image(&self, model: &ModelId) -> Option<ImageRef> {
        let sha = self.context.sha.as_ref()?;
        let repo = match &self.cfg().build.registry {
            Some(r) => r.repository(model),
            None => model.to_string(),
        };
        format!("{repo}:{sha}").parse().ok()
    }
}

/// Makes the plan for `mode`.
pub fn make(mode: Mode, inputs: &Inputs) -> Result<Plan, UserError> {
    let model_id = inputs.model_id()?;
    let backend = inputs.backend();
    let ctx = inputs.context;
    let mut plan = Plan {
        mode,
        model_id: model_id.clone(),
        backend,
        dry_run: inputs.request.dry_run,
        source: SourcePlan {
            repository: ctx.repository.clone(),
            commit: ctx.sha.clone(),
            branch: ctx.branch.clone(),
            tag: ctx.tag.clone(),
            trigger: ctx.trigger.clone(),
            run_url: ctx.run_url(),
        },
        config: inputs.config.map(|c| ConfigRef {
            path: c.path.display().to_string(),
            digest: c.digest.clone(),
        }),
        build: None,
        train: None,
        deploy: None,
        monitor: None,
    };
    match mode {
        Mode::Build => plan.build = Some(build::plan(inputs, &model_id)?),
        Mode::Train => plan.train = Some(train::plan(inputs, &model_id, backend)?),
        Mode::Deploy => plan.deploy = Some(deploy::plan(inputs, &model_id, backend)?),
        Mode::Monitor => plan.monitor = Some(monitor::plan(inputs, &model_id, backend)?),
    }
    Ok(plan)
}
