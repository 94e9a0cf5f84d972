//! `mode: monitor`: read the reference and the recent data, score drift per
//! column, check the model's metric against the production version, report
//! (outputs, step summary, HTML report, check run) and act (`on-drift`).
//! Orchestration only: the statistics and readers live in monitor/.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::ModeEnv;
use crate::config::values::{Backend, OnDrift};
use crate::error::{Outcome, UserError};
use crate::image::engine::Engine;
use crate::monitor::column::Sample;
use crate::monitor::quality::{self, Quality};
use crate::monitor::read::Positional;
use crate::monitor::report::{self, Status};
use crate::monitor::{analyse, dispatch, predict, source};
use crate::plan::monitor::{MonitorPlan, SourcePlan};
use crate::plan::Plan;
use crate::registry;
use crate::report::Reporter;
use crate::serve::local::LocalServing;
use crate::serve::ServingBackend;

/// Runs a monitoring plan.
pub async fn run(
    plan: &Plan,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let m = plan
        .monitor
        .as_ref()
        .ok_or_else(|| UserError::invalid("a monitor run without a monitor plan"))?;
    let ws = env.workspace;
    let region = m.region.as_deref();

    let mut reference = Sample::new(&m.settings.types);
    // A current sample of CSV files takes nothing from the reference (its header
    // names the columns): with a local reference, both are read at once, a core
    // each.
    let reading_reference = match &m.reference {
        SourcePlan::Path { path } if source::local_csv_only(&m.current, ws) => {
            let (abs, path, types) = (ws.join(path), path.clone(), m.settings.types.clone());
            Some(tokio::task::spawn_blocking(move || {
                let mut r = Sample::new(&types);
                source::read_local(&mut r, &abs, &path, "reference", &Positional::default())
                    .map(|()| r)
            }))
        }
        _ => {
            source::read_source(
                &mut reference,
                &m.reference,
                "reference",
                ws,
                region,
                env.env,
                &Positional::default(),
            )
            .await?;
            None
        }
    };
    let skip: BTreeSet<&String> = m
        .settings
        .not_features
        .iter()
        .chain(&m.settings.exclude)
        .collect();
    let positional = Positional {
        all: reference.names.clone(),
        features: reference
            .names
            .iter()
            .filter(|n| !skip.contains(n))
            .cloned()
            .collect(),
    };
    pull_capture(plan, &m.current, ws, reporter).await;
    let mut current = Sample::new(&m.settings.types);
    if let Some(q) = &m.quality {
        current = current.with_pairs(&q.labels, &q.predictions);
        if let Some(c) = &q.capture {
            let by_id = captured_predictions(plan, c, &q.labels, env, reporter).await?;
            if let Some(p) = current.pairs.as_mut() {
                p.lookup = Some((c.id_column.clone(), by_id));
            }
        }
        if let Some(e) = &q.endpoint {
            current = current.keeping_rows(usize::try_from(e.max_rows).unwrap_or(usize::MAX));
        }
    }
    let read_current = source::read_source(
        &mut current,
        &m.current,
        "current",
        ws,
        region,
        env.env,
        &positional,
    )
    .await;
    if let Some(task) = reading_reference {
        reference = task
            .await
            .map_err(|e| UserError::failed(format!("reading the reference failed: {e}")))??;
    }
    read_current?;
    reporter.info(&format!(
        "read {} reference rows from {} and {} current rows from {}",
        reference.rows,
        m.reference.display(),
        current.rows,
        m.current.display()
    ));

    if let (Some(c), Some(p)) = (
        m.quality.as_ref().and_then(|q| q.capture.as_ref()),
        current.pairs.as_ref(),
    ) {
        reporter.info(&format!(
            "joined {} labelled row(s) to captured predictions by `{}`; {} without a match",
            p.n, c.id_column, p.incomplete
        ));
    }
    let analysis = analyse(&reference, &current, &m.settings)?;
    if let (Some(q), Some(target)) = (
        &m.quality,
        m.quality.as_ref().and_then(|q| q.endpoint.as_ref()),
    ) {
        ask_endpoint(plan, env, &mut current, q, target, reporter).await?;
    }
    let quality = match (&m.quality, current.rows) {
        (Some(q), n) if n > 0 => Some(check_quality(plan, q, &current, env, reporter).await?),
        _ => None,
    };
    let status = report::status(&analysis, quality.as_ref());
    let headline = report::headline(status, &analysis, quality.as_ref());
    let (ref_name, cur_name) = (m.reference.display(), m.current.display());

    // The HTML report.
    let html = report::html(
        plan.model_id.as_str(),
        status,
        &analysis,
        quality.as_ref(),
        &ref_name,
        &cur_name,
    );
    let path = ws.join(&m.report);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| UserError::failed(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&path, html)
        .map_err(|e| UserError::failed(format!("cannot write the report {}: {e}", m.report)))?;

    let drifted_columns = analysis.drifted_columns();
    reporter.set_output("drifted", analysis.drifted.to_string());
    reporter.set_output("drift-share", report::num(analysis.drift_share));
    reporter.set_output(
        "drifted-columns",
        serde_json::to_string(&drifted_columns).unwrap_or_default(),
    );
    reporter.set_output("report-path", m.report.clone());
    reporter.add_summary(&report::markdown(
        status,
        &analysis,
        quality.as_ref(),
        &ref_name,
        &cur_name,
        &m.report,
    ));
    for c in &analysis.columns {
        reporter.info(&format!(
            "  {:<24} {:<11} {:<13} score {:<10} threshold {:<6} {}",
            c.column,
            c.kind.to_string(),
            c.method.to_string(),
            report::num(c.score),
            report::num(c.threshold),
            if c.drifted { "DRIFTED" } else { "ok" }
        ));
    }
    reporter.info(&format!("{headline} — report: {}", m.report));

    let mut outcome = Outcome::Succeeded;
    match status {
        Status::Ok => {}
        Status::Inconclusive => reporter.warn(format!(
            "monitor `{}`: {headline}; no verdict on drift (never read as \"no drift\")",
            plan.model_id
        )),
        Status::Drifted | Status::Degraded => match m.on_drift {
            OnDrift::Report => reporter.warn(format!("monitor `{}`: {headline}", plan.model_id)),
            OnDrift::Fail => {
                reporter.annotate(crate::report::commands::Annotation {
                    level: crate::report::commands::Level::Error,
                    title: format!("mlcd monitor: {}", status.as_str()),
                    message: format!("monitor `{}`: {headline}", plan.model_id),
                    location: None,
                });
                outcome = Outcome::Failed;
            }
            OnDrift::Dispatch => {
                let why = dispatch::Why {
                    reason: if status == Status::Degraded {
                        "degraded".into()
                    } else {
                        "drift".into()
                    },
                    model_id: plan.model_id.to_string(),
                    status: status.as_str().into(),
                    drift_share: analysis.drift_share,
                    drifted_columns: drifted_columns.clone(),
                    run_url: plan.source.run_url.clone(),
                    commit: plan.source.commit.clone(),
                    quality: quality.as_ref().map(|q| {
                        json!({"metric": q.metric, "value": q.value, "baseline": q.baseline, "tolerance": q.tolerance})
                    }),
                };
                send_dispatch(plan, m, &why, env).await?;
                reporter.info(&format!(
                    "sent repository_dispatch `{}` to {}",
                    m.event_type,
                    plan.source.repository.as_deref().unwrap_or_default()
                ));
                reporter.add_summary(&format!(
                    "\nSent `repository_dispatch` `{}` (reason `{}`) to start retraining.\n",
                    m.event_type, why.reason
                ));
            }
        },
    }
    reporter.set_verdict(status.as_str(), &format!("mlcd monitor: {headline}"));
    Ok(outcome)
}

async fn send_dispatch(
    plan: &Plan,
    m: &MonitorPlan,
    why: &dispatch::Why,
    env: &ModeEnv<'_>,
) -> Result<(), UserError> {
    let repo = plan.source.repository.as_deref().ok_or_else(|| {
        UserError::invalid("`on-drift: dispatch` needs the repository to dispatch to: GITHUB_REPOSITORY is not set")
            .hint("run inside GitHub Actions, or set GITHUB_REPOSITORY=owner/repo (and GITHUB_TOKEN) for the CLI")
    })?;
    let token = env.request.github_token.as_ref().ok_or_else(|| {
        UserError::invalid("`on-drift: dispatch` needs a GitHub token: the `github-token` input is empty")
            .hint("the action passes `github.token` by default; the CLI reads --github-token or $GITHUB_TOKEN. The token needs `contents: write`")
    })?;
    let api = env
        .env
        .get("GITHUB_API_URL")
        .filter(|v| !v.is_empty())
        .cloned()
        .unwrap_or_else(|| "https://api.github.com".into());
    dispatch::send(&api, token, repo, &m.event_type, &dispatch::payload(why)).await
}

async fn check_quality(
    plan: &Plan,
    q: &crate::plan::monitor::QualityPlan,
    current: &Sample,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> Result<Quality, UserError> {
    let (value, rows) = quality::compute(current, q)?;
    // A SageMaker registry takes its region from AWS_REGION here.
    let reg = registry::open(&q.registry, env.workspace, None, env.env).await?;
    let prod = reg.by_alias(&q.registry.model_name, &q.alias).await?;
    let (baseline, version, note) = match prod {
        None => (
            None,
            None,
            Some(format!(
                "no version of `{}` has the alias `{}` in the {} registry: no baseline to compare with",
                q.registry.model_name,
                q.alias,
                reg.name()
            )),
        ),
        Some(v) => match v.metrics.get(&q.metric) {
            Some(b) => (Some(*b), Some(v.version.clone()), None),
            None => (
                None,
                Some(v.version.clone()),
                Some(format!(
                    "the production version {} of `{}` has no metric `{}` recorded: no baseline to compare with",
                    v.version, q.registry.model_name, q.metric
                )),
            ),
        },
    };
    if let Some(n) = &note {
        reporter.warn(format!("monitor `{}`: {n}", plan.model_id));
    }
    let degraded = baseline.is_some_and(|b| quality::degraded(&q.metric, value, b, q.tolerance));
    Ok(Quality {
        metric: q.metric.clone(),
        value,
        rows,
        baseline,
        baseline_version: version,
        tolerance: q.tolerance,
        degraded,
        note,
    })
}

/// `predictions-from: capture`: the endpoint's captured responses by inference
/// id — the local capture (copied out of the router first, as for `current:
/// capture`), or SageMaker's data capture files under the endpoint's S3 prefix.
async fn captured_predictions(
    plan: &Plan,
    c: &crate::plan::monitor::PredictCapture,
    label: &str,
    env: &ModeEnv<'_>,
    reporter: &mut Reporter,
) -> Result<std::collections::HashMap<String, String>, UserError> {
    let ws = env.workspace;
    let (got, shown) = match &c.source {
        SourcePlan::Capture { path, .. } => {
            // `current: capture` copied it out of the router already.
            let pulled = matches!(
                plan.monitor.as_ref().map(|m| &m.current),
                Some(SourcePlan::Capture { .. })
            );
            if !pulled {
                pull_capture(plan, &c.source, ws, reporter).await;
            }
            let dir = ws.join(path);
            if !dir.is_dir() {
                return Err(UserError::invalid(format!(
                    "`monitor.predictions-from: capture`: no captured traffic at `{path}/`"
                ))
                .hint("deploy the endpoint with capture on (`deploy.capture`) and let callers send the X-Amzn-SageMaker-Inference-Id header; or use `predictions-from: endpoint`"));
            }
            (
                predict::captured_predictions(&dir, path, label)?,
                format!("{path}/"),
            )
        }
        SourcePlan::S3 { uri } => {
            let region = plan.monitor.as_ref().and_then(|m| m.region.as_deref());
            let got = predict::captured_predictions_s3(uri, region, env.env, label).await?;
            if got.files == 0 {
                return Err(UserError::invalid(format!(
                    "`monitor.predictions-from: capture`: no data capture file (.jsonl) under `{uri}`"
                ))
                .hint("SageMaker writes them under <deploy.capture.path>/<endpoint>/<variant>/yyyy/mm/dd/hh/ once the endpoint has served requests; or use `predictions-from: endpoint`"));
            }
            (got, uri.clone())
        }
        SourcePlan::Path { path } => {
            return Err(UserError::invalid(format!(
                "`monitor.predictions-from: capture` reads an endpoint's capture, not `{path}`"
            )))
        }
    };
    reporter.info(&format!(
        "read {} captured response(s) under {shown}: {} with an inference id{}",
        got.records,
        got.by_id.len(),
        if got.unusable > 0 {
            format!(
                ", {} without an inference id or a response (not joinable)",
                got.unusable
            )
        } else {
            String::new()
        }
    ));
    if got.by_id.is_empty() && got.records > 0 {
        return Err(UserError::invalid(format!(
            "`monitor.predictions-from: capture`: none of the {} captured record(s) under {shown} has an inference id (`eventMetadata.inferenceId`), so no labelled row can be joined to a prediction",
            got.records
        ))
        .hint("callers must send an inference id with each request (the X-Amzn-SageMaker-Inference-Id header, InferenceId in InvokeEndpoint) and keep it beside the label; or use `predictions-from: endpoint`"));
    }
    Ok(got.by_id)
}

/// `predictions-from: endpoint`: the live endpoint predicts the labelled rows
/// the reader kept — the local router's live version, or on SageMaker the
/// variant taking most traffic through InvokeEndpoint (the planner allows no
/// other backend).
async fn ask_endpoint(
    plan: &Plan,
    env: &ModeEnv<'_>,
    current: &mut Sample,
    q: &crate::plan::monitor::QualityPlan,
    target: &crate::plan::monitor::PredictEndpoint,
    reporter: &mut Reporter,
) -> Result<(), UserError> {
    let (Some(kept), Some(pairs)) = (current.kept.as_ref(), current.pairs.as_mut()) else {
        return Ok(());
    };
    if kept.rows.is_empty() {
        return Ok(());
    }
    let backend: Box<dyn ServingBackend> = match plan.backend {
        Backend::Sagemaker => {
            let region = plan
                .monitor
                .as_ref()
                .and_then(|m| m.region.clone())
                .unwrap_or_default();
            // InvokeEndpoint needs a region and credentials, no execution role.
            let sm = crate::plan::SagemakerPlan {
                region,
                role_arn: String::new(),
                output_path: None,
                subnets: Vec::new(),
                security_groups: Vec::new(),
            };
            Box::new(crate::serve::sagemaker::SagemakerServing::new(&sm, env.env).await?)
        }
        _ => Box::new(LocalServing::new(&Engine::connect().await?)),
    };
    reporter.info(&format!(
        "asking endpoint `{}` on {} for the predictions of {} labelled row(s), at most {} a second",
        target.name,
        backend.name(),
        kept.rows.len(),
        report::num(target.rate)
    ));
    let asked = predict::ask_endpoint(backend.as_ref(), target, kept, &q.labels, pairs).await?;
    reporter.info(&format!(
        "version {} of endpoint `{}` answered {} request(s){}",
        asked.version,
        target.name,
        asked.requests,
        if asked.left_out > 0 {
            format!(
                "; {} more labelled row(s) left out (`monitor.predict-max-rows`)",
                asked.left_out
            )
        } else {
            String::new()
        }
    ));
    Ok(())
}

/// With `current: capture` on the local backend, copies the endpoint's capture
/// files out of its router first, so the check reads the latest traffic. When
/// that cannot be done (no such endpoint, no engine), says so and reads what is
/// already in the capture directory.
async fn pull_capture(plan: &Plan, source: &SourcePlan, ws: &Path, reporter: &mut Reporter) {
    let SourcePlan::Capture { path, endpoint } = source else {
        return;
    };
    if plan.backend != Backend::Local {
        return;
    }
    let pulled = match Engine::connect().await {
        Ok(engine) => {
            LocalServing::new(&engine)
                .pull_capture(endpoint, &ws.join(path))
                .await
        }
        Err(e) => Err(e),
    };
    match pulled {
        Ok(p) => reporter.info(&format!(
            "copied the capture of endpoint `{endpoint}` out of its router into {path}/: {} new or grown file(s), {} record(s)",
            p.files, p.records
        )),
        Err(e) => reporter.warn(format!(
            "could not copy the capture of endpoint `{endpoint}` out of its router ({}): reading what {path}/ already holds",
            e.message
        )),
    }
}
