//! `mode: deploy`: find the version to serve (the one trained for this commit,
//! or a named image), put it beside the live version, verify it (readiness,
//! smoke tests), then move traffic by the strategy's steps — verifying after
//! each — or roll back to the live version and fail. Shadow runs it beside the
//! live version and reports agreement and latency. `rollback` puts the previous
//! version back. Reported as a GitHub deployment. Written once above
//! [`ServingBackend`]; backends only talk to engines.

use std::time::Instant;

mod candidate;
mod github;
mod history;
mod rollback;
mod rollout;
mod shadow;
mod summary;
mod wait;

pub(crate) use candidate::choose;
pub use candidate::Candidate;
use candidate::{check_owner, spec, version_from_image};
pub(crate) use github::GitHub;
use history::{promoted, read_history, record};
use rollback::rollback;
use rollout::{rollout, Failure};
use shadow::shadow;
use summary::{failures, passed, summary_smoke};
use wait::{live_version, ready, settled};

use super::ModeEnv;
use crate::config::values::{Backend, Strategy};
use crate::error::{Outcome, UserError};
use crate::plan::Plan;
use crate::registry;
use crate::report::deployments;
use crate::report::Reporter;
use crate::serve::verify;
use crate::serve::ServingBackend;

/// Opens the backend a plan serves on.
pub async fn backend(plan: &Plan, env: &ModeEnv<'_>) -> Result<Box<dyn ServingBackend>, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    match plan.backend {
        Backend::Local => {
            let engine = crate::image::engine::Engine::connect().await?;
            Ok(Box::new(
                crate::serve::local::LocalServing::new(&engine).with_capture(
                    d.capture
                        .as_ref()
                        .map(|c| (c.router_settings(), env.workspace.join(&c.path))),
                ),
            ))
        }
        Backend::Sagemaker => {
            let sm = d.sagemaker.as_ref().expect("a SageMaker plan");
            Ok(Box::new(
                crate::serve::sagemaker::SagemakerServing::new(sm, env.env)
                    .await?
                    .with_alarms(d.rollback_alarms.clone())
                    .with_bake_time(d.interval.0)
                    .with_guards(
                        d.rollback_max_error_rate.is_some() || d.rollback_max_p95_latency.is_some(),
                    )
                    .with_capture(d.capture.as_ref().map(|c| (c.sample, c.path.clone()))),
            ))
        }
        Backend::Kubernetes => {
            let k = d.kubernetes.as_ref().expect("a Kubernetes plan");
            Ok(Box::new(
                crate::serve::kserve::backend::KserveServing::new(k, env.env)
                    .await?
                    .with_ready_timeout(d.ready_timeout.0)
                    .with_strategy(d.strategy),
            ))
        }
        Backend::Vertex => {
            let v = d.vertex.as_ref().expect("a Vertex AI plan");
            Ok(Box::new(
                crate::serve::vertex::VertexServing::new(v, env.env)?
                    .with_ready_timeout(d.ready_timeout.0),
            ))
        }
    }
}

/// The KServe InferenceService `backend: kubernetes` would apply for this plan,
/// as YAML: the image named (or built for this commit) behind the endpoint, with
/// the identity this run records. Needs no cluster and reads no registry.
pub fn render(plan: &Plan) -> Result<String, UserError> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    let Some(k) = d.kubernetes.as_ref() else {
        return Err(UserError::invalid(format!(
            "`mlcd render deploy` prints Kubernetes objects, but the backend is `{}`",
            plan.backend
        ))
        .hint("set `backend: kubernetes` in mlcd.yml, or pass --backend kubernetes"));
    };
    let candidate = Candidate {
        version: version_from_image(&d.image),
        image: d.image.clone(),
        model_data: k.storage_uri.clone(),
        commit: plan.source.commit.clone(),
        registered: None,
    };
    let spec = spec(plan, d, &candidate);
    let canary = crate::serve::kserve::canary_traffic(d.strategy, &d.steps)?;
    let isvc = crate::serve::kserve::inference_service(&spec, canary, k)?;
    Ok(crate::train::kubernetes::to_yaml(&[isvc]))
}

/// Runs the deploy mode.
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let d = plan.deploy.as_ref().expect("a deploy plan");
    if let Some(g) = env.config.and_then(|c| c.config.deploy.gitops.as_ref()) {
        // A deploy is a commit to the manifests repository: its own conductor.
        return crate::gitops::deploy::run(plan, g, env, reporter).await;
    }
    let smokes = verify::load(env.workspace, &d.smoke)?;
    let backend = backend(plan, env).await?;
    reporter.set_output("endpoint", d.endpoint.clone());
    check_owner(&*backend, plan, d, reporter).await?;
    if env.request.rollback {
        return rollback(plan, d, env, &*backend, reporter).await;
    }
    let registry =
        registry::open(&d.registry, env.workspace, d.sagemaker.as_ref(), env.env).await?;
    let candidate = choose(plan, d, &*registry, reporter).await?;
    let spec = spec(plan, d, &candidate);
    backend.preflight(&spec).await?;

    let before = settled(&*backend, &d.endpoint, d.ready_timeout.0, reporter).await?;
    let live = before.as_ref().and_then(live_version);
    if let Some(l) = &live {
        reporter.set_output("previous-version", l.clone());
    }
    if live.as_deref() == Some(candidate.version.as_str()) && d.strategy != Strategy::Shadow {
        let url = before.as_ref().and_then(|s| s.url.clone());
        if let Some(u) = &url {
            reporter.set_output("url", u.clone());
        }
        reporter.set_output("traffic", "100");
        reporter.info(&format!(
            "endpoint {} already serves version {}: nothing to do",
            d.endpoint, candidate.version
        ));
        reporter.add_summary(&format!(
            "### Deploy `{}`: already serving `{}`\n\nNothing changed.\n",
            d.endpoint, candidate.version
        ));
        return Ok(Outcome::Succeeded);
    }
    if d.strategy == Strategy::Shadow && live.is_none() {
        // Nothing serves, so there is nothing to shadow: a pipeline's first merge
        // (shadow, then canary) goes on to the canary step, which creates it.
        reporter.warn(format!(
            "endpoint {} serves nothing yet, so there is nothing to shadow: {} was not started (the next rollout step creates the endpoint)",
            d.endpoint, candidate.version
        ));
        reporter.set_output("traffic", "0");
        reporter.add_summary(&format!(
            "### Shadow of `{}` on `{}`: skipped\n\nThe endpoint serves nothing yet, so there is nothing to compare with.\n",
            candidate.version, d.endpoint
        ));
        return Ok(Outcome::Succeeded);
    }

    let mut gh = GitHub::start(plan, d, env, &candidate, reporter).await;
    let started = Instant::now();
    let result = if d.strategy == Strategy::Shadow {
        shadow(
            d,
            &spec,
            live.as_deref().unwrap_or_default(),
            &*backend,
            &smokes,
            reporter,
        )
        .await
    } else {
        rollout(d, &spec, live.as_deref(), &*backend, &smokes, reporter).await
    };
    let after = backend.status(&d.endpoint).await.ok().flatten();
    let url = after.as_ref().and_then(|s| s.url.clone());
    if let Some(u) = &url {
        reporter.set_output("url", u.clone());
    }
    match result {
        Ok(traffic) => {
            reporter.set_output("traffic", traffic.to_string());
            if d.strategy != Strategy::Shadow {
                promoted(env.workspace, d, &*registry, &candidate, reporter).await;
            }
            let desc = format!(
                "{} serves {} ({}% of traffic)",
                d.endpoint, candidate.version, traffic
            );
            gh.finish(deployments::State::Success, &desc, url.as_deref(), reporter)
                .await;
            reporter.info(&format!("{desc}, in {} s", started.elapsed().as_secs()));
            Ok(Outcome::Succeeded)
        }
        Err(f) => {
            summary_smoke(reporter, &f.results);
            gh.finish(
                deployments::State::Failure,
                &f.message,
                url.as_deref(),
                reporter,
            )
            .await;
            Err(UserError::failed(f.message).into())
        }
    }
}
