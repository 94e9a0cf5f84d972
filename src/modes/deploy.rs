//! `mode: deploy`: find the version to serve (the one trained for this commit,
//! or a named image), put it beside the live version, verify it (readiness,
//! smoke tests), then move traffic by the strategy's steps — verifying after
//! each — or roll back to the live version and fail. Shadow runs it beside the
//! live version and reports agreement and latency. `rollback` puts the previous
//! version back. Reported as a GitHub deployment. Written once above
//! [`ServingBackend`]; backends only talk to engines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::ModeEnv;
use crate::config::values::{Backend, Strategy};
use crate::error::{Outcome, UserError};
use crate::identity::{Identity, Purpose, Recorded};
use crate::plan::{DeployPlan, Plan};
use crate::registry::{self, ModelRegistry};
use crate::report::deployments::{self, Deployment};
use crate::report::Reporter;
use crate::serve::verify::{self, Smoke, SmokeResult};
use crate::serve::{EndpointState, EndpointStatus, ServingBackend, VersionSpec};

/// How many times the shadow replays each sample request.
const SHADOW_ROUNDS: usize = 5;

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
        other => Err(UserError::invalid(format!(
            "serving on `backend: {other}` is not available in mlcd {}",
            env!("CARGO_PKG_VERSION")
        ))
        .hint("deploy with `backend: local`, `backend: sagemaker` or `backend: kubernetes`")),
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

/// What is deployed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct Candidate {
    /// The version's id behind the endpoint.
    pub version: String,
    /// The serving image.
    pub image: String,
    /// The model artifact, when the registry holds one.
    pub model_data: Option<String>,
    /// The commit it was trained from.
    pub commit: Option<String>,
    /// The registry's version number, when it came from the registry.
    pub registered: Option<String>,
}

/// A version id from an image reference: the digest's first 12 hex digits, or
/// the tag, made safe for container and SageMaker names.
fn version_from_image(image: &str) -> String {
    let raw = match image.split_once("@sha256:") {
        Some((_, d)) => d.chars().take(12).collect::<String>(),
        None => image.rsplit(':').next().unwrap_or(image).to_string(),
    };
    let safe: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(24)
        .collect();
    format!("i-{}", safe.trim_matches('-'))
}

/// The version to serve: the newest registered for this commit, else the named image.
pub(crate) async fn choose(
    plan: &Plan,
    d: &DeployPlan,
    registry: &dyn ModelRegistry,
    reporter: &mut Reporter,
) -> Result<Candidate, UserError> {
    let found = match &plan.source.commit {
        Some(c) => registry.find_by_commit(&d.registry.model_name, c).await?,
        None => None,
    };
    match found {
        Some(v) => {
            reporter.info(&format!(
                "deploying {} version {} ({}), trained for this commit",
                v.model_name, v.version, v.uri
            ));
            Ok(Candidate {
                version: format!("v{}", v.version),
                image: if d.image_given {
                    d.image.clone()
                } else {
                    v.image.clone().unwrap_or_else(|| d.image.clone())
                },
                model_data: v.artifact.clone(),
                commit: v.commit.clone(),
                registered: Some(v.version.clone()),
            })
        }
        None if d.image_given => {
            reporter.warn(format!(
                "no version of {} in the {} registry was trained for this commit: deploying the image `{}` alone (it must carry its model)",
                d.registry.model_name,
                registry.name(),
                d.image
            ));
            Ok(Candidate {
                version: version_from_image(&d.image),
                image: d.image.clone(),
                model_data: None,
                commit: plan.source.commit.clone(),
                registered: None,
            })
        }
        None => Err(UserError::failed(format!(
            "no version of {} in the {} registry was trained for commit {}: nothing to deploy",
            d.registry.model_name,
            registry.name(),
            plan.source.commit.as_deref().unwrap_or("(none: not a git checkout)")
        ))
        .hint("train it first (`mode: train` for this commit), or give `image` for an image that carries its model")),
    }
}

/// The identity this run records on an endpoint it creates and on each version.
fn identity(plan: &Plan, d: &DeployPlan, c: Option<&Candidate>) -> Identity {
    use crate::identity::tag_safe;
    Identity {
        source: d.source.clone(),
        model: tag_safe(plan.model_id.as_str()),
        commit: c
            .and_then(|c| c.commit.as_deref())
            .or(plan.source.commit.as_deref())
            .map(tag_safe),
        image: tag_safe(c.map_or(d.image.as_str(), |c| c.image.as_str())),
        config: tag_safe(plan.config.as_ref().map_or("none", |c| c.digest.as_str())),
        hyperparameters: "none".into(),
    }
}

/// Refuses to touch an endpoint another repository (or workspace) created. An
/// endpoint that records no owner (made before mlcd recorded one, or by hand) is
/// changed with a warning: refusing would strand every endpoint made by an
/// earlier release, and its name was given on purpose in `deploy.endpoint`.
async fn check_owner(
    backend: &dyn ServingBackend,
    plan: &Plan,
    d: &DeployPlan,
    reporter: &mut Reporter,
) -> Result<(), UserError> {
    let recorded = backend.owner(&d.endpoint).await?;
    if recorded == Recorded::Unknown {
        reporter.warn(format!(
            "endpoint `{}` records no owner (it was made before mlcd recorded one, or by hand): mlcd changes it as `deploy.endpoint` asks; versions deployed now record {} as its owner",
            d.endpoint, d.source
        ));
        return Ok(());
    }
    identity(plan, d, None).check("endpoint", &d.endpoint, &recorded, Purpose::Endpoint)
}

fn spec(plan: &Plan, d: &DeployPlan, c: &Candidate) -> VersionSpec {
    let identity = identity(plan, d, Some(c));
    VersionSpec {
        endpoint: d.endpoint.clone(),
        version: c.version.clone(),
        image: c.image.clone(),
        model_data: c.model_data.clone(),
        model_name: d.registry.model_name.clone(),
        instance: d.instance.clone(),
        replicas: d.replicas,
        env: d.env.clone(),
        workers: d.workers,
        batching: d.batching_limits,
        request_timeout: d.request_timeout.0,
        protocol: d.protocol,
        tags: BTreeMap::new(),
        identity,
    }
}

/// The production version taking the most traffic.
fn live_version(s: &EndpointStatus) -> Option<String> {
    s.variants
        .iter()
        .filter(|v| !v.shadow)
        .max_by_key(|v| v.weight)
        .map(|v| v.version.clone())
}

/// Waits (bounded) until no change is under way; refuses to race another one.
async fn settled(
    backend: &dyn ServingBackend,
    endpoint: &str,
    bound: Duration,
    reporter: &Reporter,
) -> Result<Option<EndpointStatus>, UserError> {
    let deadline = Instant::now() + bound;
    let mut said = false;
    loop {
        let Some(s) = backend.status(endpoint).await? else {
            return Ok(None);
        };
        if !s.state.is_changing() {
            return Ok(Some(s));
        }
        if !said {
            reporter.info(&format!(
                "endpoint {endpoint} is {:?}: waiting for that change to finish (up to {})",
                s.state,
                humantime::format_duration(bound)
            ));
            said = true;
        }
        if Instant::now() >= deadline {
            return Err(UserError::failed(format!(
                "endpoint {endpoint} is still {:?} after {}: another change is under way, and mlcd never starts a second concurrent update",
                s.state,
                humantime::format_duration(bound)
            ))
            .hint("wait for the other deployment to finish, then run this one again"));
        }
        tokio::time::sleep(backend.poll_interval()).await;
    }
}

/// Waits (bounded) until `version` is ready behind an endpoint in service.
async fn ready(
    backend: &dyn ServingBackend,
    endpoint: &str,
    version: &str,
    bound: Duration,
) -> Result<EndpointStatus, String> {
    let deadline = Instant::now() + bound;
    let mut last: Option<EndpointStatus>;
    loop {
        match backend.status(endpoint).await {
            Ok(Some(s)) => {
                if matches!(
                    s.state,
                    EndpointState::Failed | EndpointState::UpdateRollbackFailed
                ) {
                    return Err(format!(
                        "endpoint {endpoint} is {:?}: {}",
                        s.state,
                        s.failure_reason.as_deref().unwrap_or("no reason given")
                    ));
                }
                if s.state == EndpointState::InService
                    && s.variants.iter().any(|v| v.version == version && v.ready)
                {
                    return Ok(s);
                }
                last = Some(s);
            }
            Ok(None) => return Err(format!("endpoint {endpoint} disappeared")),
            Err(e) => return Err(e.message),
        }
        if Instant::now() >= deadline {
            let state = last.map_or("unknown".to_string(), |s| format!("{:?}", s.state));
            return Err(format!(
                "version {version} did not become ready within {} (endpoint {state})",
                humantime::format_duration(bound)
            ));
        }
        tokio::time::sleep(backend.poll_interval()).await;
    }
}

/// Where rollbacks find the versions an endpoint served.
fn history_path(workspace: &Path, endpoint: &str) -> PathBuf {
    workspace
        .join(".mlcd")
        .join("endpoints")
        .join(format!("{endpoint}.json"))
}

fn read_history(workspace: &Path, endpoint: &str) -> Vec<Candidate> {
    std::fs::read(history_path(workspace, endpoint))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn record(workspace: &Path, endpoint: &str, c: &Candidate) {
    let mut h = read_history(workspace, endpoint);
    h.retain(|x| x.version != c.version);
    h.push(c.clone());
    let path = history_path(workspace, endpoint);
    let write = std::fs::create_dir_all(path.parent().expect("a parent")).and_then(|()| {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&h).expect("serializes"))?;
        std::fs::rename(tmp, &path)
    });
    if let Err(e) = write {
        log::warn!(
            "cannot record the endpoint history in {}: {e}",
            path.display()
        );
    }
}

/// The GitHub deployment of this rollout, when running in Actions with a token
/// (GitOps deploys report through it too).
pub(crate) struct GitHub {
    client: Option<Deployment>,
    id: Option<u64>,
    log_url: Option<String>,
}

impl GitHub {
    pub(crate) async fn start(
        plan: &Plan,
        d: &DeployPlan,
        env: &ModeEnv<'_>,
        c: &Candidate,
        reporter: &mut Reporter,
    ) -> GitHub {
        let mut g = GitHub {
            client: None,
            id: None,
            log_url: plan.source.run_url.clone(),
        };
        let in_actions = env.env.get("GITHUB_ACTIONS").map(String::as_str) == Some("true");
        let (Some(token), Some(repo), Some(sha)) = (
            env.request.github_token.as_ref(),
            plan.source.repository.as_deref(),
            plan.source.commit.as_deref(),
        ) else {
            return g;
        };
        if !in_actions {
            return g;
        }
        let api = env
            .env
            .get("GITHUB_API_URL")
            .cloned()
            .unwrap_or_else(|| "https://api.github.com".into());
        let mut client = match Deployment::client(&api, token, repo) {
            Ok(c) => c,
            Err(e) => {
                reporter.warn(format!("mlcd could not report a GitHub deployment: {e}"));
                return g;
            }
        };
        let payload = serde_json::json!({
            "endpoint": d.endpoint, "version": c.version, "image": c.image,
            "strategy": d.strategy.to_string(),
        });
        let desc = format!("{} {} → {}", d.strategy, c.version, d.endpoint);
        match client.create(sha, &d.environment, &desc, payload).await {
            Ok(id) => {
                g.id = Some(id);
                reporter.set_output("deployment-id", id.to_string());
                if let Err(e) = client
                    .status(
                        id,
                        deployments::State::InProgress,
                        &desc,
                        None,
                        g.log_url.as_deref(),
                    )
                    .await
                {
                    reporter.warn(format!("mlcd could not update the GitHub deployment: {e}"));
                }
                g.client = Some(client);
            }
            Err(e) => reporter.warn(format!(
                "mlcd could not create a GitHub deployment: {e}; the rollout carries on"
            )),
        }
        g
    }

    pub(crate) async fn finish(
        &mut self,
        state: deployments::State,
        desc: &str,
        url: Option<&str>,
        reporter: &mut Reporter,
    ) {
        if let (Some(c), Some(id)) = (self.client.as_mut(), self.id) {
            if let Err(e) = c
                .status(id, state, desc, url, self.log_url.as_deref())
                .await
            {
                reporter.warn(format!("mlcd could not update the GitHub deployment: {e}"));
            }
        }
    }
}

/// A failed verification, with what to report.
struct Failure {
    message: String,
    results: Vec<SmokeResult>,
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
                record(env.workspace, &d.endpoint, &candidate);
                if let Some(v) = &candidate.registered {
                    if d.environment == "production" {
                        match registry
                            .set_alias(&d.registry.model_name, v, "production")
                            .await
                        {
                            Ok(()) => reporter.info(&format!(
                                "{} version {v} is now `production` in the {} registry",
                                d.registry.model_name,
                                registry.name()
                            )),
                            Err(e) => {
                                reporter.warn(format!("could not move the `production` alias: {e}"))
                            }
                        }
                    }
                }
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

/// Puts the live version back (or removes the endpoint a first deploy created).
async fn roll_back(
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

/// all-at-once, blue-green, canary and linear: the new version beside the live
/// one at 0%, verified, then each traffic step verified; any failure rolls back.
/// Returns the candidate's final traffic.
async fn rollout(
    d: &DeployPlan,
    spec: &VersionSpec,
    live: Option<&str>,
    backend: &dyn ServingBackend,
    smokes: &[Smoke],
    reporter: &mut Reporter,
) -> Result<u8, Failure> {
    let ep = &d.endpoint;
    let v = &spec.version;
    let bound = d.ready_timeout.0;
    let mut md = format!(
        "### Deploy `{}` → `{ep}` ({})\n\n| step | traffic to `{v}` | smoke tests | time | live traffic during the step |\n|---|---|---|---|---|\n",
        v, d.strategy
    );
    let started = Instant::now();
    let fail = |message: String, results: Vec<SmokeResult>| Failure { message, results };
    let limits = crate::serve::stats::Limits {
        max_error_rate: d.rollback_max_error_rate,
        max_p95: d.rollback_max_p95_latency.map(|l| l.0),
    };

    reporter.group(&format!(
        "Deploy {v} to {ep} ({}, {})",
        d.strategy,
        backend.name()
    ));
    if let Err(e) = backend.deploy(spec, false).await {
        // Whatever the engine left half-made goes; the live version keeps serving.
        let rb = roll_back(backend, ep, live, bound, reporter).await;
        reporter.end_group();
        return Err(fail(
            format!("deploying {v} to {ep} failed: {}; {rb}", e.message),
            Vec::new(),
        ));
    }
    if let Err(why) = ready(backend, ep, v, bound).await {
        let rb = roll_back(backend, ep, live, bound, reporter).await;
        reporter.end_group();
        return Err(fail(format!("{why}; {rb}"), Vec::new()));
    }
    reporter.info(&match live {
        Some(l) => format!("{v} is ready beside {l}"),
        None => format!("{v} is ready: the first version of endpoint `{ep}` (no live version to shift traffic from)"),
    });
    let steps: Vec<u8> = if live.is_some() {
        d.steps.clone()
    } else {
        vec![100]
    };
    let mut all_results = Vec::new();
    // Verified before it takes any traffic.
    let first = verify::smoke(backend, ep, v, smokes).await;
    md.push_str(&format!(
        "| before traffic | 0% | {} | {} s | |\n",
        passed(&first),
        started.elapsed().as_secs()
    ));
    all_results.extend(first.clone());
    if !first.iter().all(|r| r.passed) {
        let why = format!(
            "smoke tests failed on {v} before it took traffic: {}",
            failures(&first)
        );
        let roll = d.rollback_on_smoke_failure;
        return Err(abort(
            backend,
            ep,
            live,
            bound,
            reporter,
            &md,
            why,
            all_results,
            roll,
        )
        .await);
    }
    for (i, step) in steps.iter().enumerate() {
        if let Some(l) = live {
            let weights = BTreeMap::from([(l.to_string(), 100 - step), (v.clone(), *step)]);
            if let Err(e) = backend.set_traffic(ep, &weights).await {
                let why = format!(
                    "setting {step}% of the traffic on {v} failed: {}",
                    e.message
                );
                return Err(abort(
                    backend,
                    ep,
                    live,
                    bound,
                    reporter,
                    &md,
                    why,
                    all_results,
                    true,
                )
                .await);
            }
            if let Err(e) = settled(backend, ep, bound, reporter).await {
                return Err(abort(
                    backend,
                    ep,
                    live,
                    bound,
                    reporter,
                    &md,
                    e.message,
                    all_results,
                    true,
                )
                .await);
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
            md.push_str(&format!(
                "| {} | {step}% | not run | {} s | ❌ {} |\n",
                i + 1,
                started.elapsed().as_secs(),
                live_traffic.cell
            ));
            return Err(abort(
                backend,
                ep,
                live,
                bound,
                reporter,
                &md,
                why,
                all_results,
                true,
            )
            .await);
        }
        let results = verify::smoke(backend, ep, v, smokes).await;
        md.push_str(&format!(
            "| {} | {step}% | {} | {} s | {} |\n",
            i + 1,
            passed(&results),
            started.elapsed().as_secs(),
            live_traffic.cell
        ));
        all_results.extend(results.clone());
        if !results.iter().all(|r| r.passed) {
            let why = format!(
                "smoke tests failed on {v} at {step}% of the traffic: {}",
                failures(&results)
            );
            let roll = d.rollback_on_smoke_failure;
            return Err(abort(
                backend,
                ep,
                live,
                bound,
                reporter,
                &md,
                why,
                all_results,
                roll,
            )
            .await);
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
    md.push_str(&format!(
        "\n`{v}` serves 100% of `{ep}`; previous version: `{}`.\n",
        live.unwrap_or("none")
    ));
    reporter.add_summary(&md);
    summary_smoke(reporter, &all_results);
    Ok(100)
}

/// Ends a failed rollout: rolls back (unless `roll` is false, when
/// `rollback.on-smoke-failure: false` asks to leave the new version where it
/// is — the step still fails), closes the log group and keeps the summary.
#[allow(clippy::too_many_arguments)]
async fn abort(
    backend: &dyn ServingBackend,
    ep: &str,
    live: Option<&str>,
    bound: Duration,
    reporter: &mut Reporter,
    md: &str,
    why: String,
    results: Vec<SmokeResult>,
    roll: bool,
) -> Failure {
    let after = if roll {
        roll_back(backend, ep, live, bound, reporter).await
    } else {
        "not rolled back (`rollback.on-smoke-failure: false`): the new version stays where it is"
            .to_string()
    };
    reporter.end_group();
    reporter.add_summary(md);
    Failure {
        message: format!("{why}; {after}"),
        results,
    }
}

/// Shadow: the candidate beside the live version, receiving a copy of the
/// traffic; verified, then compared with the live version on the samples.
async fn shadow(
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
    reporter.add_summary(&format!(
        "### Shadow `{v}` beside `{live}` on `{ep}`\n\n`{v}` receives a copy of the live traffic and answers nobody.\n\n| | `{live}` (live) | `{v}` (shadow) |\n|---|---|---|\n| p50 latency | {:.1} ms | {:.1} ms |\n| p95 latency | {:.1} ms | {:.1} ms |\n| errors | | {} |\n\nOutput agreement: {}/{} ({agree:.0}%) over {} rounds of the sample requests.\n",
        r.live_ms.0, r.candidate_ms.0, r.live_ms.1, r.candidate_ms.1, r.candidate_errors, r.agreeing, r.requests, SHADOW_ROUNDS
    ));
    summary_smoke(reporter, &results);
    Ok(0)
}

/// `rollback`: the previous version back with all the traffic.
async fn rollback(
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
        backend.deploy(&spec(plan, d, &prev), false).await?;
        if let Err(why) = ready(backend, ep, &prev.version, d.ready_timeout.0).await {
            gh.finish(deployments::State::Failure, &why, None, reporter)
                .await;
            return Err(UserError::failed(format!(
                "rollback: {why}; {} still serves",
                live.as_deref().unwrap_or("nothing")
            ))
            .into());
        }
    }
    backend.rollback(ep, &prev.version).await?;
    let s = settled(backend, ep, d.ready_timeout.0, reporter).await?;
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

fn passed(r: &[SmokeResult]) -> String {
    if r.is_empty() {
        return "none configured".into();
    }
    let ok = r.iter().filter(|x| x.passed).count();
    if ok == r.len() {
        format!("✅ {ok}/{}", r.len())
    } else {
        format!("❌ {ok}/{}", r.len())
    }
}

fn failures(r: &[SmokeResult]) -> String {
    r.iter()
        .filter(|x| !x.passed)
        .map(|x| format!("{}: {}", x.name, x.reason.as_deref().unwrap_or("failed")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn summary_smoke(reporter: &mut Reporter, results: &[SmokeResult]) {
    if results.is_empty() {
        return;
    }
    let mut md = String::from("\n#### Smoke tests\n\n| request | version | status | latency | result |\n|---|---|---|---|---|\n");
    for r in results {
        md.push_str(&format!(
            "| `{}` | `{}` | {} | {:.1} ms | {} |\n",
            r.name,
            r.version,
            r.status,
            r.latency_ms,
            if r.passed {
                "✅ pass".to_string()
            } else {
                format!(
                    "❌ {}",
                    r.reason
                        .as_deref()
                        .unwrap_or("failed")
                        .trim()
                        .replace('|', "\\|")
                        .replace('\n', " ")
                )
            }
        ));
    }
    reporter.add_summary(&md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ids_from_images_are_safe_names() {
        assert_eq!(
            version_from_image("r.io/a/churn@sha256:0123456789abcdef0123"),
            "i-0123456789ab"
        );
        assert_eq!(
            version_from_image("127.0.0.1:5000/a/churn:V1.2_x"),
            "i-v1-2-x"
        );
    }
}
