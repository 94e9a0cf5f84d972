//! Shadow: the candidate beside the live version on a copy of the traffic,
//! compared on the sample requests (agreement, p50/p95).

use super::{failures, ready, summary_smoke, Failure};
use crate::plan::DeployPlan;
use crate::report::Reporter;
use crate::serve::verify::{self, Smoke};
use crate::serve::{ServingBackend, VersionSpec};

/// How many times the shadow replays each sample request.
pub(super) const SHADOW_ROUNDS: usize = 5;

/// Shadow: the candidate beside the live version, receiving a copy of the
/// traffic; verified, then compared with the live version on the samples.
pub(super) async fn shadow(
    d: &DeployPlan,
    spec: &VersionSpec,
    live: &str,
    backend: &dyn ServingBackend,
    smokes: &[Smoke],
    reporter: &mut Reporter,
) -> Result<u8, Failure> {
    let ep = &d.endpoint;
    let v = &spec.version;
    let bound = d.ready_timeout.0;
    reporter.group(&format!(
        "Shadow {v} beside {live} on {ep} ({})",
        backend.name()
    ));
    let retire = |why: String| async move {
        match backend.retire(ep, v).await {
            Ok(()) => format!("{why}; the shadow was removed, {live} serves untouched"),
            Err(e) => format!("{why}; removing the shadow failed too: {}", e.message),
        }
    };
    if let Err(e) = backend.deploy(spec, true).await {
        reporter.end_group();
        return Err(Failure {
            message: format!("deploying the shadow {v} failed: {}", e.message),
            results: Vec::new(),
        });
    }
    if let Err(why) = ready(backend, ep, v, bound).await {
        let m = retire(why).await;
        reporter.end_group();
        return Err(Failure {
            message: m,
            results: Vec::new(),
        });
    }
    let results = verify::smoke(backend, ep, v, smokes).await;
    if !results.iter().all(|r| r.passed) {
        let m = retire(format!(
            "smoke tests failed on the shadow {v}: {}",
            failures(&results)
        ))
        .await;
        reporter.end_group();
        return Err(Failure {
            message: m,
            results,
        });
    }
    let r = verify::shadow(backend, ep, live, v, smokes, SHADOW_ROUNDS).await;
    reporter.end_group();
    let agree = if r.requests == 0 {
        100.0
    } else {
        100.0 * r.agreeing as f64 / r.requests as f64
    };
    reporter.info(&format!(
        "shadow {v}: {}/{} answers agree with {live} ({agree:.0}%), p50/p95 {:.1}/{:.1} ms vs {:.1}/{:.1} ms",
        r.agreeing, r.requests, r.candidate_ms.0, r.candidate_ms.1, r.live_ms.0, r.live_ms.1
    ));
    let fed = if backend.mirrors_traffic() {
        "receives a copy of the live traffic and answers nobody"
    } else {
        "runs beside it and takes no traffic (this backend cannot mirror traffic): it answered only the replayed samples"
    };
    reporter.add_summary(&format!(
        "### Shadow `{v}` beside `{live}` on `{ep}`\n\n`{v}` {fed}.\n\n| | `{live}` (live) | `{v}` (shadow) |\n|---|---|---|\n| p50 latency | {:.1} ms | {:.1} ms |\n| p95 latency | {:.1} ms | {:.1} ms |\n| errors | | {} |\n\nOutput agreement: {}/{} ({agree:.0}%) over {} rounds of the sample requests.\n",
        r.live_ms.0, r.candidate_ms.0, r.live_ms.1, r.candidate_ms.1, r.candidate_errors, r.agreeing, r.requests, SHADOW_ROUNDS
    ));
    summary_smoke(reporter, &results);
    Ok(0)
}
