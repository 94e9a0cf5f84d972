//! all-at-once, blue-green, canary and linear: the candidate beside the live
//! version at 0 %, verified, then each traffic step verified and measured;
//! any failure rolls back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{failures, passed, ready, settled, summary_smoke};
use crate::plan::DeployPlan;
use crate::report::Reporter;
use crate::serve::verify::{self, Smoke, SmokeResult};
use crate::serve::{ServingBackend, VersionSpec};

/// A failed verification, with what to report.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) results: Vec<SmokeResult>,
}

/// Puts the live version back (or removes the endpoint a first deploy created).
pub(super) async fn roll_back(
    backend: &dyn ServingBackend,
    endpoint: &str,
    live: Option<&str>,
    bound: Duration,
    reporter: &mut Reporter,
) -> String {
    let done = match live {
        Some(l) => backend
            .rollback(endpoint, l)
            .await
            .map(|()| format!("rolled back: {l} serves all the traffic again")),
        None => backend.teardown(endpoint).await.map(|()| {
            "the new endpoint was removed (there was no version to roll back to)".to_string()
        }),
    };
    match done {
        Ok(msg) => {
            if live.is_some() {
                if let Err(e) = settled(backend, endpoint, bound, reporter).await {
                    return format!("the rollback did not settle: {}", e.message);
                }
            }
            reporter.info(&msg);
            msg
        }
        Err(e) => format!("the rollback failed too: {}", e.message),
    }
}

/// A rollout under way: what an abort needs to put things back and report.
struct Steps<'a> {
    backend: &'a dyn ServingBackend,
    ep: &'a str,
    live: Option<&'a str>,
    bound: Duration,
    /// The summary's step table so far.
    md: String,
    /// Every smoke result so far.
    results: Vec<SmokeResult>,
}

impl Steps<'_> {
    /// Ends a failed rollout: rolls back (unless `roll` is false, when
    /// `rollback.on-smoke-failure: false` asks to leave the new version where
    /// it is — the step still fails), closes the log group and keeps the summary.
    async fn abort(self, reporter: &mut Reporter, why: String, roll: bool) -> Failure {
        let after = if roll {
            roll_back(self.backend, self.ep, self.live, self.bound, reporter).await
        } else {
            "not rolled back (`rollback.on-smoke-failure: false`): the new version stays where it is"
                .to_string()
        };
        reporter.end_group();
        reporter.add_summary(&self.md);
        Failure {
            message: format!("{why}; {after}"),
            results: self.results,
        }
    }
}

/// all-at-once, blue-green, canary and linear: the new version beside the live
/// one at 0%, verified, then each traffic step verified; any failure rolls back.
/// Returns the candidate's final traffic.
pub(super) async fn rollout(
    d: &DeployPlan,
    spec: &VersionSpec,
    live: Option<&str>,
    backend: &dyn ServingBackend,
    smokes: &[Smoke],
    reporter: &mut Reporter,
) -> Result<u8, Failure> {
    let ep = d.endpoint.as_str();
    let v = &spec.version;
    let bound = d.ready_timeout.0;
    let started = Instant::now();
    let limits = crate::serve::stats::Limits {
        max_error_rate: d.rollback_max_error_rate,
        max_p95: d.rollback_max_p95_latency.map(|l| l.0),
    };

    reporter.group(&format!(
        "Deploy {v} to {ep} ({}, {})",
        d.strategy,
        backend.name()
    ));
    let half_made = match backend.deploy(spec, false).await {
        Err(e) => Some(format!("deploying {v} to {ep} failed: {}", e.message)),
        Ok(()) => ready(backend, ep, v, bound).await.err(),
    };
    if let Some(why) = half_made {
        // Whatever the engine left half-made goes; the live version keeps serving.
        let rb = roll_back(backend, ep, live, bound, reporter).await;
        reporter.end_group();
        return Err(Failure {
            message: format!("{why}; {rb}"),
            results: Vec::new(),
        });
    }
    reporter.info(&match live {
        Some(l) => format!("{v} is ready beside {l}"),
        None => format!("{v} is ready: the first version of endpoint `{ep}` (no live version to shift traffic from)"),
    });
    let mut run = Steps {
        backend,
        ep,
        live,
        bound,
        md: format!(
            "### Deploy `{v}` → `{ep}` ({})\n\n| step | traffic to `{v}` | smoke tests | time | live traffic during the step |\n|---|---|---|---|---|\n",
            d.strategy
        ),
        results: Vec::new(),
    };
    let steps: Vec<u8> = if live.is_some() {
        d.steps.clone()
    } else {
        vec![100]
    };
    // Verified before it takes any traffic.
    let first = verify::smoke(backend, ep, v, smokes).await;
    run.md.push_str(&format!(
        "| before traffic | 0% | {} | {} s | |\n",
        passed(&first),
        started.elapsed().as_secs()
    ));
    run.results.extend(first.clone());
    if !first.iter().all(|r| r.passed) {
        let why = format!(
            "smoke tests failed on {v} before it took traffic: {}",
            failures(&first)
        );
        return Err(run.abort(reporter, why, d.rollback_on_smoke_failure).await);
    }
    for (i, step) in steps.iter().enumerate() {
        if let Some(l) = live {
            let weights = BTreeMap::from([(l.to_string(), 100 - step), (v.clone(), *step)]);
            if let Err(e) = backend.set_traffic(ep, &weights).await {
                let why = format!(
                    "setting {step}% of the traffic on {v} failed: {}",
                    e.message
                );
                return Err(run.abort(reporter, why, true).await);
            }
            if let Err(e) = settled(backend, ep, bound, reporter).await {
                return Err(run.abort(reporter, e.message, true).await);
            }
        }
        reporter.info(&format!("{v} takes {step}% of the traffic"));
        // The step's interval, measured: live error rate and p95 against the limits.
        let mut live_traffic = crate::serve::stats::Bake::default();
        if *step < 100 && i + 1 < steps.len() {
            live_traffic =
                crate::serve::stats::bake(backend, ep, v, live, d.interval.0, &limits).await;
        }
        if let Some(why) = live_traffic.breach {
            run.md.push_str(&format!(
                "| {} | {step}% | not run | {} s | ❌ {} |\n",
                i + 1,
                started.elapsed().as_secs(),
                live_traffic.cell
            ));
            return Err(run.abort(reporter, why, true).await);
        }
        let results = verify::smoke(backend, ep, v, smokes).await;
        run.md.push_str(&format!(
            "| {} | {step}% | {} | {} s | {} |\n",
            i + 1,
            passed(&results),
            started.elapsed().as_secs(),
            live_traffic.cell
        ));
        run.results.extend(results.clone());
        if !results.iter().all(|r| r.passed) {
            let why = format!(
                "smoke tests failed on {v} at {step}% of the traffic: {}",
                failures(&results)
            );
            return Err(run.abort(reporter, why, d.rollback_on_smoke_failure).await);
        }
    }
    // Promoted: the old version goes (blue-green stops blue), and mlcd waits for
    // that change too, so success is reported on a settled endpoint.
    if let Some(l) = live {
        match backend.retire(ep, l).await {
            Ok(()) => {
                if let Err(e) = settled(backend, ep, bound, reporter).await {
                    reporter.warn(format!(
                        "{v} serves, but retiring {l} did not settle: {}",
                        e.message
                    ));
                }
            }
            Err(e) => reporter.warn(format!(
                "{v} serves, but retiring {l} failed: {}",
                e.message
            )),
        }
    }
    reporter.end_group();
    run.md.push_str(&format!(
        "\n`{v}` serves 100% of `{ep}`; previous version: `{}`.\n",
        live.unwrap_or("none")
    ));
    reporter.add_summary(&run.md);
    summary_smoke(reporter, &run.results);
    Ok(100)
}
