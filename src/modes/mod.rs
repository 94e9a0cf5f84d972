//! Mode runners: they execute a [`Plan`] through the backends. Orchestration only;
//! the engines live in image/, train/ and serve/.

use crate::error::{Outcome, UserError};
use crate::plan::Plan;
use crate::report::Reporter;

/// Executes a plan that is not a dry run.
///
/// This release plans every mode but executes none yet: the Docker-engine build,
/// training and serving backends land with the build, train and deploy work.
/// Rather than pretend, a real run fails with a clear message and exit code 1.
pub async fn run(plan: &Plan, _reporter: &mut Reporter) -> anyhow::Result<Outcome> {
    Err(UserError::failed(format!(
        "mlcd {} can plan `{}` runs but cannot execute them yet: nothing was built, trained or deployed",
        env!("CARGO_PKG_VERSION"),
        plan.mode
    ))
    .hint("run with `dry-run: true` (CLI: `mlcd plan MODE` or --dry-run) to see the plan")
    .into())
}
