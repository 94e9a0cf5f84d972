//! `mode: train`: submit the job (or attach to one: the `attach` input, or a
//! re-run of the same attempt), wait for it — bounded by `timeout`, stopping it
//! on timeout and on cancellation as configured — stream its log, then read its
//! metrics, apply the gates and the champion comparison, and register a passing
//! model. Written once above [`TrainingBackend`]; backends only talk to engines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::ModeEnv;
use crate::config::values::{Backend, Gate, OnStop};
use crate::context::Trigger;
use crate::error::{Outcome, UserError};
use crate::identity::{Purpose, Recorded};
use crate::image::auth::{self, Sources};
use crate::image::engine::Engine;
use crate::plan::{Plan, TrainPlan};
use crate::registry::{self, NewVersion};
use crate::report::commands::{Annotation, Level};
use crate::report::comment::{GateRow, VersionMetrics};
use crate::report::Reporter;
use crate::train::local::LocalTraining;
use crate::train::metrics::{self, Scanner, Verdict};
use crate::train::{Channel, JobSpec, JobState, JobStatus, LogCursor, Submitted, TrainingBackend};

/// How long mlcd waits for a stopped job to settle before it reports anyway.
const SETTLE: Duration = Duration::from_secs(90);

/// Opens the backend a plan trains on.
pub async fn backend(
    plan: &Plan,
    env: &ModeEnv<'_>,
) -> Result<Box<dyn TrainingBackend>, UserError> {
    match plan.backend {
        Backend::Local => {
            let engine = Engine::connect().await?;
            let t = plan.train.as_ref().expect("a train plan");
            // Credentials only matter when the image has to be pulled.
            let mut credentials = None;
            if engine.local(&t.image).await.is_none() {
                if let Some(host) = registry_host(&t.image) {
                    let resolved = auth::resolve(
                        host,
                        &Sources {
                            username: env.request.registry_username.as_deref(),
                            password: env.request.registry_password.as_ref(),
                            github_token: env.request.github_token.as_ref(),
                            env: env.env,
                        },
                    )
                    .await?;
                    log::info!("registry {host}: credentials from {}", resolved.source);
                    credentials = resolved.credentials;
                }
            }
            Ok(Box::new(
                LocalTraining::new(&engine, env.workspace.join(".mlcd").join("jobs"))
                    .with_pull_credentials(credentials),
            ))
        }
        Backend::Sagemaker => {
            let t = plan.train.as_ref().expect("a train plan");
            let sm = t
                .sagemaker
                .as_ref()
                .expect("a SageMaker plan for backend: sagemaker");
            Ok(Box::new(
                crate::train::sagemaker::SagemakerTraining::new(sm, env.env).await?,
            ))
        }
        Backend::Kubernetes => {
            let t = plan.train.as_ref().expect("a train plan");
            let k = t
                .kubernetes
                .as_ref()
                .expect("a Kubernetes plan for backend: kubernetes");
            Ok(Box::new(
                crate::train::kubernetes::KubernetesTraining::new(k, env.env).await?,
            ))
        }
        Backend::Vertex => {
            let t = plan.train.as_ref().expect("a train plan");
            let v = t
                .vertex
                .as_ref()
                .expect("a Vertex plan for backend: vertex");
            Ok(Box::new(crate::train::vertex::VertexTraining::new(
                v, env.env,
            )?))
        }
    }
}

/// The registry host of an image reference (`ghcr.io/acme/churn:1` → `ghcr.io`);
/// None for Docker Hub's short names.
fn registry_host(image: &str) -> Option<&str> {
    let (first, rest) = image.split_once('/')?;
    (!rest.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost"))
        .then_some(first)
}

/// The job a plan describes, as a backend receives it.
pub fn job_spec(plan: &Plan, t: &TrainPlan, env: &ModeEnv<'_>) -> JobSpec {
    let channels = t
        .channels
        .iter()
        .map(|(k, v)| {
            let ch = if v.contains("://") {
                Channel::Remote(v.clone())
            } else {
                Channel::Local(env.workspace.join(v))
            };
            (k.clone(), ch)
        })
        .collect();
    let mut tags = BTreeMap::new();
    if let Some(r) = &plan.source.repository {
        tags.insert("mlcd:repository".into(), r.clone());
    }
    JobSpec {
        name: t.attach.clone().unwrap_or_else(|| t.job_name.clone()),
        image: t.image.clone(),
        instance: t.instance.clone(),
        count: t.count,
        hyperparameters: t.hyperparameters.clone(),
        channels,
        env: t.env.clone(),
        max_runtime: t.max_runtime.0,
        metric_definitions: t.metrics.clone(),
        output: t.output.clone(),
        tags,
        identity: t.identity.clone(),
    }
}

/// The Kubernetes objects `backend: kubernetes` would apply for this plan, as
/// a YAML stream: the same [`manifests`](crate::train::kubernetes::manifests)
/// `submit` applies. Needs no cluster.
pub fn render(plan: &Plan, env: &ModeEnv<'_>) -> Result<String, UserError> {
    let t = plan.train.as_ref().expect("a train plan");
    let Some(k) = t.kubernetes.as_ref() else {
        return Err(UserError::invalid(format!(
            "`mlcd render train` prints Kubernetes objects, but the backend is `{}`",
            plan.backend
        ))
        .hint("set `backend: kubernetes` in mlcd.yml, or pass --backend kubernetes"));
    };
    let spec = job_spec(plan, t, env);
    let objects = crate::train::kubernetes::manifests(&spec, k)?;
    Ok(crate::train::kubernetes::to_yaml(&objects))
}

/// The ClusterTrainingRuntime with mlcd's storage containers (`mlcd render
/// runtime`), for an administrator to install once: TrainJobs with `s3://`
/// channels or storage need it. Needs no cluster.
pub fn render_runtime(plan: &Plan) -> Result<String, UserError> {
    let t = plan.train.as_ref().expect("a train plan");
    let Some(k) = t.kubernetes.as_ref() else {
        return Err(UserError::invalid(format!(
            "`mlcd render runtime` prints a Kubernetes object, but the backend is `{}`",
            plan.backend
        ))
        .hint("set `backend: kubernetes` in mlcd.yml, or pass --backend kubernetes"));
    };
    let runtime = crate::train::kubernetes::storage::runtime(k);
    Ok(crate::train::kubernetes::to_yaml(&[runtime]))
}

/// How the wait ended.
enum Waited {
    Done(JobStatus),
    TimedOut(JobStatus),
    Cancelled(JobStatus),
}

/// Runs the training mode.
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let t = plan.train.as_ref().expect("a train plan");
    let mut scanner = Scanner::new(&t.metrics).map_err(|e| {
        let e = UserError::invalid(format!("`train.metrics`: {e}"));
        match env.config.and_then(|c| c.locate(&["train", "metrics"])) {
            Some(l) => e.at(l),
            None => e,
        }
    })?;
    let gates: BTreeMap<String, Gate> = t
        .gates
        .iter()
        .map(|(k, g)| {
            (
                k.clone(),
                g.parse().expect("gates were parsed with the config"),
            )
        })
        .collect();
    let backend = backend(plan, env).await?;
    // The registry is opened before anything is submitted: a bad registry
    // setting must not cost a training run.
    let registry =
        registry::open(&t.registry, env.workspace, t.sagemaker.as_ref(), env.env).await?;
    let spec = job_spec(plan, t, env);
    let name = spec.name.clone();
    // A retraining a monitor (or any webhook) asked for says why it runs.
    if let Trigger::RepositoryDispatch { .. } = &plan.source.trigger {
        let why = crate::plan::render::trigger_text(&plan.source.trigger);
        reporter.info(&format!("started by {why}"));
        reporter.add_summary(&format!("Started by {why}.\n\n"));
    }

    // Submit, or attach: an `attach` id, or a job of this name (a re-run). A job
    // found by name is attached to only when it was started for this run.
    let purpose = if t.attach.is_some() {
        Purpose::Attach
    } else {
        Purpose::Rerun
    };
    let recorded = backend.identity(&name).await?;
    if let (Some(id), Recorded::Absent) = (&t.attach, &recorded) {
        return Err(UserError::invalid(format!(
            "input `attach`: no training job named `{id}` on backend {}",
            backend.name()
        ))
        .hint("attach takes the `job-id` output of the step that submitted the job")
        .into());
    }
    t.identity
        .check("training job", &name, &recorded, purpose)?;
    reporter.set_output("job-id", name.clone());
    if let Some(url) = backend.job_url(&name) {
        reporter.set_output("job-url", url);
    }
    if recorded == Recorded::Absent {
        backend.preflight(&spec).await?;
        let spec = {
            let shown: &Reporter = reporter;
            backend.stage(&spec, &|line: &str| shown.info(line)).await?
        };
        match backend.submit(&spec).await? {
            Submitted::Created => reporter.info(&format!(
                "submitted training job {name} on {} ({} × {}, image {})",
                backend.name(),
                spec.count,
                spec.instance.native,
                spec.image
            )),
            Submitted::AlreadyExists => {
                let recorded = backend.identity(&name).await?;
                t.identity
                    .check("training job", &name, &recorded, Purpose::Rerun)?;
                reporter.info(&format!(
                    "training job {name} was started meanwhile by another run of this attempt: attaching to it"
                ));
            }
        }
        // Engines that choose the job's id (Vertex AI) know its page only now.
        if let Some(url) = backend.job_url(&name) {
            reporter.set_output("job-url", url);
        }
    } else {
        let state = backend
            .describe(&name)
            .await?
            .map_or("state unknown".to_string(), |s| s.state.to_string());
        if t.attach.is_some() {
            reporter.info(&format!("attaching to training job {name} ({state})"));
        } else {
            reporter.info(&format!(
                "training job {name} exists already ({state}) and was started for this run: a re-run of the same attempt attaches to it instead of training again"
            ));
        }
    }

    if !t.wait {
        reporter.add_summary(&format!(
            "### Training job `{name}` submitted\n\nmlcd did not wait (`wait: false`). Attach to it in a later step or job with `attach: {name}` (CLI: `mlcd train --attach {name}`).\n"
        ));
        return Ok(Outcome::Submitted);
    }

    let started = Instant::now();
    let waited = wait(&*backend, &name, t, &mut scanner, reporter).await?;
    let elapsed = started.elapsed();
    let status = match waited {
        Waited::Done(s) => s,
        Waited::TimedOut(s) => {
            report_status(reporter, &s, t, &BTreeMap::new(), &[], None, elapsed);
            let left = match t.on_timeout {
                OnStop::Stop => format!("it was stopped ({})", s.state),
                OnStop::Leave => format!(
                    "it was left running ({}); attach to it later with `attach: {name}`",
                    s.state
                ),
            };
            return Err(UserError::new(
                Outcome::TimedOut,
                format!(
                    "training job {name} did not finish within {}: {left}",
                    humantime::format_duration(t.timeout.0)
                ),
            )
            .hint("raise `train.timeout` (or the `timeout` input), or submit with `wait: false` and attach in a later job")
            .into());
        }
        Waited::Cancelled(s) => {
            report_status(reporter, &s, t, &BTreeMap::new(), &[], None, elapsed);
            let left = match t.on_cancel {
                OnStop::Stop => "it was asked to stop".to_string(),
                OnStop::Leave => {
                    format!("it was left running; attach to it later with `attach: {name}`")
                }
            };
            return Err(UserError::new(
                Outcome::Cancelled,
                format!("cancelled while waiting for training job {name}: {left}"),
            )
            .into());
        }
    };

    gather_for_comment(&*registry, t, &name, &scanner, reporter).await;
    let mut found = scanner.found().clone();
    // metrics.json / the engine's final metrics win over values read from the log.
    found.extend(status.metrics.clone());
    if !found.is_empty() {
        let shown: Vec<String> = found
            .iter()
            .map(|(k, v)| format!("{k}={}", metrics::show(*v)))
            .collect();
        reporter.info(&format!("metrics of {name}: {}", shown.join(" ")));
    }
    reporter.set_output("metrics", serde_json::to_value(&found).unwrap_or_default());
    if let Some(a) = &status.artifact {
        reporter.set_output("artifact", a.clone());
    }

    match status.state {
        JobState::Completed => {}
        JobState::Failed => {
            report_status(reporter, &status, t, &found, &[], None, elapsed);
            let reason = status
                .failure_reason
                .clone()
                .unwrap_or_else(|| "the backend gave no reason".into());
            return Err(
                UserError::failed(format!("training job {name} failed: {reason}"))
                    .hint("the job's log is above, in the training group")
                    .into(),
            );
        }
        other => {
            report_status(reporter, &status, t, &found, &[], None, elapsed);
            let why = status
                .failure_reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            return Err(UserError::failed(format!(
                "training job {name} ended {other}{why}; no model was registered"
            ))
            .into());
        }
    }

    // Gates, then the champion.
    let mut verdicts = metrics::check_gates(&gates, &found);
    let mut champion_line = None;
    if let Some(c) = &t.champion {
        match registry.by_alias(&t.registry.model_name, &c.alias).await? {
            Some(champ) => match champ.metrics.get(&c.metric) {
                Some(v) => {
                    let who = format!("champion v{} `{}`", champ.version, c.alias);
                    verdicts.push(metrics::against_champion(
                        &c.metric,
                        c.better,
                        found.get(&c.metric).copied(),
                        *v,
                        &who,
                    ));
                    champion_line = Some(format!("{who}: {} = {}", c.metric, metrics::show(*v)));
                }
                None => {
                    reporter.warn(format!(
                        "the champion (version {} of {}, alias `{}`) has no metric `{}`: no comparison made",
                        champ.version, t.registry.model_name, c.alias, c.metric
                    ));
                }
            },
            None => {
                champion_line = Some(format!(
                    "no version of {} has the alias `{}` yet: this one is the first challenger",
                    t.registry.model_name, c.alias
                ));
            }
        }
    }
    for v in &verdicts {
        reporter.info(&format!(
            "gate {} {}: {}",
            v.metric,
            v.condition,
            if v.passed { "pass" } else { "FAIL" }
        ));
    }
    let failed: Vec<&Verdict> = verdicts.iter().filter(|v| !v.passed).collect();
    if !failed.is_empty() {
        for v in &failed {
            let value = v.value.map_or("not reported".to_string(), metrics::show);
            reporter.annotate(Annotation {
                level: Level::Error,
                title: "mlcd: gate failed".into(),
                message: format!(
                    "metric `{}` = {value} does not pass `{}`: training job {name} is not registered",
                    v.metric, v.condition
                ),
                location: env
                    .config
                    .and_then(|c| c.locate(&["train", "gates", &v.metric]))
                    .or_else(|| env.config.and_then(|c| c.locate(&["train", "champion"]))),
            });
        }
        report_status(
            reporter,
            &status,
            t,
            &found,
            &verdicts,
            champion_line.as_deref(),
            elapsed,
        );
        let names: Vec<String> = failed
            .iter()
            .map(|v| {
                format!(
                    "{} = {} (needs {})",
                    v.metric,
                    v.value.map_or("not reported".to_string(), metrics::show),
                    v.condition
                )
            })
            .collect();
        return Err(UserError::failed(format!(
            "training job {name} completed but failed its gates: {}; nothing was registered",
            names.join(", ")
        ))
        .into());
    }

    // Register (once: a re-run finds the version its job registered).
    let version = match registry.find_by_job(&t.registry.model_name, &name).await? {
        Some(v) => {
            reporter.info(&format!(
                "job {name} is already registered as version {} of {} ({})",
                v.version, v.model_name, v.uri
            ));
            v
        }
        None => {
            let new = NewVersion {
                model_name: t.registry.model_name.clone(),
                job_id: name.clone(),
                backend: backend.name().to_string(),
                commit: plan.source.commit.clone(),
                image: status.image.clone().unwrap_or_else(|| t.image.clone()),
                artifact: status.artifact.clone(),
                hyperparameters: status.hyperparameters.clone(),
                metrics: found.clone(),
                channels: t.channels.clone(),
                run_url: plan.source.run_url.clone(),
                alias: t.registry.alias.clone(),
            };
            let v = registry.register(&new).await?;
            reporter.info(&format!(
                "registered {} version {} in the {} registry ({})",
                v.model_name,
                v.version,
                registry.name(),
                v.uri
            ));
            v
        }
    };
    reporter.set_output("model-version", version.version.clone());
    let registered = format!(
        "{} version {} (`{}`, {} registry)",
        version.model_name,
        version.version,
        version.uri,
        registry.name()
    );
    report_status(
        reporter,
        &status,
        t,
        &found,
        &verdicts,
        champion_line.as_deref(),
        elapsed,
    );
    reporter.add_summary(&format!("\nRegistered as {registered}.\n"));
    Ok(Outcome::Succeeded)
}

/// Polls the job until it is terminal, the timeout passes, or a signal arrives;
/// streams its log in a group and shows state transitions.
async fn wait(
    backend: &dyn TrainingBackend,
    name: &str,
    t: &TrainPlan,
    scanner: &mut Scanner,
    reporter: &mut Reporter,
) -> anyhow::Result<Waited> {
    let deadline = Instant::now() + t.timeout.0;
    let started = Instant::now();
    let mut cursor = LogCursor::default();
    let mut last: Option<(JobState, Option<String>)> = None;
    let mut log_error_shown = false;
    let mut interval = backend.poll_interval();
    let mut signals = Signals::new()?;
    reporter.group(&format!("Training job {name} ({})", backend.name()));
    let result = loop {
        let status = backend.describe(name).await?.ok_or_else(|| {
            UserError::failed(format!(
                "training job {name} disappeared from backend {} while mlcd waited for it",
                backend.name()
            ))
        })?;
        match backend.logs(name, &mut cursor).await {
            Ok(lines) => {
                for l in lines {
                    scanner.scan(&l);
                    reporter.info(&l);
                }
            }
            Err(e) if !log_error_shown => {
                log_error_shown = true;
                reporter.warn(format!(
                    "cannot read the log of {name}: {e}; waiting without it"
                ));
            }
            Err(_) => {}
        }
        let now = (status.state, status.detail.clone());
        if last.as_ref() != Some(&now) {
            let detail = status
                .detail
                .as_deref()
                .filter(|d| *d != status.state.to_string())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            reporter.info(&format!(
                "[{:>4}s] job {name}: {}{detail}",
                started.elapsed().as_secs(),
                status.state
            ));
            last = Some(now);
            interval = backend.poll_interval();
        } else {
            interval =
                (interval * 3 / 2).min(backend.max_poll_interval().max(backend.poll_interval()));
        }
        if status.state.is_terminal() {
            break Waited::Done(status);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            reporter.info(&format!(
                "job {name} did not finish within {}",
                humantime::format_duration(t.timeout.0)
            ));
            let s = match t.on_timeout {
                OnStop::Stop => stop_and_settle(backend, name, status, reporter).await,
                OnStop::Leave => status,
            };
            break Waited::TimedOut(s);
        }
        tokio::select! {
            () = tokio::time::sleep(interval.min(left)) => {}
            sig = signals.next() => {
                reporter.info(&format!("received {sig} while waiting for job {name}"));
                let s = match t.on_cancel {
                    OnStop::Stop => {
                        if let Err(e) = backend.stop(name).await {
                            reporter.warn(format!("could not stop training job {name}: {e}"));
                        } else {
                            reporter.info(&format!("asked backend {} to stop job {name}", backend.name()));
                        }
                        status
                    }
                    OnStop::Leave => status,
                };
                break Waited::Cancelled(s);
            }
        }
    };
    reporter.end_group();
    Ok(result)
}

/// Stops the job and waits (bounded) until it is terminal.
async fn stop_and_settle(
    backend: &dyn TrainingBackend,
    name: &str,
    status: JobStatus,
    reporter: &mut Reporter,
) -> JobStatus {
    if let Err(e) = backend.stop(name).await {
        reporter.warn(format!("could not stop training job {name}: {e}"));
        return status;
    }
    reporter.info(&format!(
        "asked backend {} to stop job {name}",
        backend.name()
    ));
    let until = Instant::now() + SETTLE;
    let mut last = status;
    while Instant::now() < until {
        match backend.describe(name).await {
            Ok(Some(s)) if s.state.is_terminal() => return s,
            Ok(Some(s)) => last = s,
            Ok(None) | Err(_) => {}
        }
        tokio::time::sleep(backend.poll_interval()).await;
    }
    last
}

/// SIGTERM and SIGINT, the runner's ways of cancelling a step.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// How many registry versions the report comment charts.
const CHARTED_VERSIONS: usize = 10;

/// What the report comment compares with: the `production` version's metrics,
/// the last versions', and the metric curves read from the log. The registry
/// failing here costs the comparison only (it is logged).
async fn gather_for_comment(
    registry: &dyn registry::ModelRegistry,
    t: &TrainPlan,
    job: &str,
    scanner: &Scanner,
    reporter: &mut Reporter,
) {
    let model = &t.registry.model_name;
    let as_metrics = |v: registry::Version| VersionMetrics {
        version: v.version,
        metrics: v.metrics,
    };
    let production = match registry.by_alias(model, "production").await {
        Ok(v) => v.map(as_metrics),
        Err(e) => {
            log::info!("no production version to compare with: {e}");
            None
        }
    };
    let recent = match registry.recent(model, CHARTED_VERSIONS).await {
        // A re-run's own version is "this commit" in the chart, not a bar of its own.
        Ok(vs) => vs
            .into_iter()
            .filter(|v| v.job_id.as_deref() != Some(job))
            .map(as_metrics)
            .collect(),
        Err(e) => {
            log::info!("no registry versions to chart: {e}");
            Vec::new()
        }
    };
    let facts = reporter
        .facts_mut()
        .train
        .get_or_insert_with(Default::default);
    facts.production = production;
    facts.recent = recent;
    facts.curves = scanner.curves().clone();
}

/// The step summary: the job, its metrics and the gates (and the same for the
/// report comment).
fn report_status(
    reporter: &mut Reporter,
    s: &JobStatus,
    t: &TrainPlan,
    found: &BTreeMap<String, f64>,
    verdicts: &[Verdict],
    champion: Option<&str>,
    elapsed: Duration,
) {
    let facts = reporter
        .facts_mut()
        .train
        .get_or_insert_with(Default::default);
    facts.job = s.name.clone();
    facts.state = s.state.to_string();
    facts.metrics = found.clone();
    facts.gates = verdicts
        .iter()
        .map(|v| GateRow {
            metric: v.metric.clone(),
            value: v.value,
            condition: v.condition.clone(),
            passed: v.passed,
        })
        .collect();
    let mut md = format!(
        "### Training job `{}`: {}\n\n| | |\n|---|---|\n",
        s.name, s.state
    );
    let mut row = |k: &str, v: &str| md.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    row(
        "image",
        &format!("`{}`", s.image.as_deref().unwrap_or(&t.image)),
    );
    row(
        "instance",
        &format!(
            "`{}` × {} (`{}`)",
            t.instance.native, t.count, t.instance.requested
        ),
    );
    row("waited", &format!("{} s", elapsed.as_secs()));
    if let Some(r) = &s.failure_reason {
        row("reason", r);
    }
    if let Some(a) = &s.artifact {
        row("artifact", &format!("`{a}`"));
    }
    if !found.is_empty() || !verdicts.is_empty() {
        md.push_str("\n#### Metrics\n\n| metric | value | gate | |\n|---|---|---|---|\n");
        let mut names: Vec<&String> = found.keys().collect();
        for v in verdicts {
            if !names.contains(&&v.metric) {
                names.push(&v.metric);
            }
        }
        for m in names {
            let value = found.get(m).map_or("—".to_string(), |v| metrics::show(*v));
            let mine: Vec<&Verdict> = verdicts.iter().filter(|v| &v.metric == m).collect();
            if mine.is_empty() {
                md.push_str(&format!("| {m} | {value} | | |\n"));
            }
            for v in mine {
                let mark = if v.passed { "✅ pass" } else { "❌ fail" };
                md.push_str(&format!("| {m} | {value} | `{}` | {mark} |\n", v.condition));
            }
        }
    }
    if let Some(c) = champion {
        md.push_str(&format!("\nChampion: {c}.\n"));
    }
    reporter.add_summary(&md);
}
