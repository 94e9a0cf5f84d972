//! `rollback`: the previous version recorded for an endpoint back with all
//! the traffic.

use super::{live_version, read_history, ready, record, settled, spec, Candidate, GitHub, ModeEnv};
use crate::error::{Outcome, UserError};
use crate::plan::{DeployPlan, Plan};
use crate::report::deployments;
use crate::report::Reporter;
use crate::serve::ServingBackend;

/// `rollback`: the previous version back with all the traffic.
pub(super) async fn rollback(
    plan: &Plan,
    d: &DeployPlan,
    env: &ModeEnv<'_>,
    backend: &dyn ServingBackend,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let ep = &d.endpoint;
    let Some(now) = settled(backend, ep, d.ready_timeout.0, reporter).await? else {
        return Err(UserError::invalid(format!(
            "rollback: there is no endpoint named `{ep}` on backend {}",
            backend.name()
        ))
        .hint("rollback takes the endpoint's name (`deploy.endpoint`, default the model id)")
        .into());
    };
    let live = live_version(&now);
    let history = read_history(env.workspace, ep);
    let previous = history
        .iter()
        .rev()
        .find(|c| Some(c.version.as_str()) != live.as_deref())
        .cloned()
        .or_else(|| {
            now.variants
                .iter()
                .find(|v| Some(&v.version) != live.as_ref() && !v.shadow)
                .map(|v| Candidate {
                    version: v.version.clone(),
                    image: v.image.clone(),
                    model_data: None,
                    commit: None,
                    registered: None,
                })
        });
    let Some(prev) = previous else {
        return Err(UserError::failed(format!(
            "rollback: endpoint {ep} serves {} and no earlier version is recorded for it",
            live.as_deref().unwrap_or("nothing")
        ))
        .hint("mlcd records the versions it deployed in .mlcd/endpoints/; deploy the version you want with `image`")
        .into());
    };
    if let Some(l) = &live {
        reporter.set_output("previous-version", l.clone());
    }
    let mut gh = GitHub::start(plan, d, env, &prev, reporter).await;
    if !now.variants.iter().any(|v| v.version == prev.version) {
        reporter.info(&format!("starting {} again ({})", prev.version, prev.image));
        let started = match backend.deploy(&spec(plan, d, &prev), false).await {
            Ok(()) => ready(backend, ep, &prev.version, d.ready_timeout.0).await,
            Err(e) => Err(e.message),
        };
        if let Err(why) = started {
            gh.finish(deployments::State::Failure, &why, None, reporter)
                .await;
            return Err(UserError::failed(format!(
                "rollback: {why}; {} still serves",
                live.as_deref().unwrap_or("nothing")
            ))
            .into());
        }
    }
    let moved = match backend.rollback(ep, &prev.version).await {
        Ok(()) => settled(backend, ep, d.ready_timeout.0, reporter).await,
        Err(e) => Err(e),
    };
    let s = match moved {
        Ok(s) => s,
        Err(e) => {
            let why = format!("rollback: {}", e.message);
            gh.finish(deployments::State::Failure, &why, None, reporter)
                .await;
            return Err(e.into());
        }
    };
    let url = s.and_then(|s| s.url);
    if let Some(u) = &url {
        reporter.set_output("url", u.clone());
    }
    reporter.set_output("traffic", "100");
    record(env.workspace, ep, &prev);
    let msg = format!(
        "rolled back {ep} to {} (was {})",
        prev.version,
        live.as_deref().unwrap_or("nothing")
    );
    gh.finish(deployments::State::Success, &msg, url.as_deref(), reporter)
        .await;
    reporter.info(&msg);
    reporter.add_summary(&format!(
        "### Rollback of `{ep}`\n\n`{}` serves 100% again; `{}` was removed.\n",
        prev.version,
        live.as_deref().unwrap_or("nothing")
    ));
    Ok(Outcome::Succeeded)
}
