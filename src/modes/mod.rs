//! Mode runners: they execute a [`Plan`] through the engines. Orchestration only;
//! the engines live in image/ (and, with training and serving, train/ and serve/).

pub mod build;

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::values::Mode;
use crate::error::{Outcome, UserError};
use crate::inputs::Request;
use crate::plan::Plan;
use crate::report::Reporter;

/// What a mode runner needs besides the plan.
pub struct ModeEnv<'a> {
    /// The workspace (plan paths are relative to it).
    pub workspace: &'a Path,
    /// The typed inputs (credentials).
    pub request: &'a Request,
    /// Environment variables.
    pub env: &'a BTreeMap<String, String>,
}

/// Executes a plan that is not a dry run.
///
/// `build` runs on the Docker engine. Training and serving are not in this
/// release: rather than pretend, they fail with a clear message and exit code 1.
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    match plan.mode {
        Mode::Build => build::run(plan, env, reporter).await,
        Mode::Train | Mode::Deploy => Err(UserError::failed(format!(
            "mlcd {} can plan `{}` runs but cannot execute them yet: nothing was trained or deployed",
            env!("CARGO_PKG_VERSION"),
            plan.mode
        ))
        .hint("run with `dry-run: true` (CLI: `mlcd plan MODE` or --dry-run) to see the plan")
        .into()),
    }
}
