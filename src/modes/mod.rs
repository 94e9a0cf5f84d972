//! Mode runners: they execute a [`Plan`] through the engines. Orchestration only;
//! the engines live in image/ (and, with training and serving, train/ and serve/).

pub mod build;
pub mod deploy;
pub mod monitor;
pub mod train;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::values::Mode;
use crate::config::LoadedConfig;
use crate::error::{Outcome, UserError};
use crate::inputs::Request;
use crate::plan::Plan;
use crate::report::Reporter;

/// How long a build and its pushes may take when `timeout` is not given.
pub const DEFAULT_BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// What a mode runner needs besides the plan.
pub struct ModeEnv<'a> {
    /// The workspace (plan paths are relative to it).
    pub workspace: &'a Path,
    /// The typed inputs (credentials).
    pub request: &'a Request,
    /// Environment variables.
    pub env: &'a BTreeMap<String, String>,
    /// The config file, when one was read (for error locations).
    pub config: Option<&'a LoadedConfig>,
}

/// Executes a plan that is not a dry run.
///
/// `build` runs on the Docker engine; `train` and `deploy` on their backends
/// (their waits are bounded inside, by `timeout` and `ready-timeout`).
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    match plan.mode {
        Mode::Build => {
            // Every wait is bounded: the whole build and push, by `timeout` (default 1h).
            let limit = env.request.timeout.map_or(DEFAULT_BUILD_TIMEOUT, |t| t.0);
            match tokio::time::timeout(limit, build::run(plan, env, reporter)).await {
                Ok(r) => r,
                Err(_) => Err(UserError::new(
                    Outcome::TimedOut,
                    format!(
                        "the build of `{}` did not finish within {}",
                        plan.model_id,
                        humantime::format_duration(limit)
                    ),
                )
                .hint("raise the `timeout` input (like `timeout: 2h`), or make the build faster")
                .into()),
            }
        }
        Mode::Train => train::run(plan, env, reporter).await,
        Mode::Deploy => deploy::run(plan, env, reporter).await,
        Mode::Monitor => monitor::run(plan, env, reporter).await,
    }
}
