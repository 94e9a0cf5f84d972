//! Canary, linear and blue-green through GitOps: one commit per traffic step of
//! a KServe InferenceService ([`super::steps`]), each verified before the next —
//! Argo CD synced and Healthy at that commit, then the cluster serving the new
//! revision at that split and its smoke tests passing through the revision's
//! tag URL ([`super::cluster`]) — then held for `deploy.interval`. The last
//! commit promotes. A failed step reverts mlcd's commits (one commit restoring
//! the file as it was before the first; Argo CD refuses its own rollback while
//! auto-sync is on) and waits for Healthy again.

use super::cluster::{StepCheck, Version};
use super::commit::{self, Committed, Target};
use super::deploy::{message, roll_back, short, Follow, Undo};
use super::edit::{Change, Edited, Editor};
use super::follow::{self, Followed};
use super::github::Repo;
use super::steps::Commits;
use crate::config::gitops::GitopsConfig;
use crate::error::{Outcome, UserError};
use crate::modes::deploy::GitHub;
use crate::modes::ModeEnv;
use crate::plan::Plan;
use crate::report::deployments::State;
use crate::report::Reporter;

/// One rollout by commits.
pub(super) struct Rollout<'a> {
    pub(super) plan: &'a Plan,
    pub(super) g: &'a GitopsConfig,
    pub(super) env: &'a ModeEnv<'a>,
    pub(super) editor: &'a dyn Editor,
    pub(super) repo: &'a mut Repo,
    pub(super) target: &'a Target<'a>,
    pub(super) change: Change,
    pub(super) follow: &'a mut Follow,
    pub(super) gh: &'a mut GitHub,
    pub(super) commits: Commits,
}

fn step_name(traffic: Option<u8>, last: bool) -> String {
    match (traffic, last) {
        (Some(100), true) | (None, _) => "promotion".to_string(),
        (Some(0), _) => "0% beside the live version".to_string(),
        (Some(p), _) => format!("{p}% of the traffic"),
    }
}

/// Runs the steps; the outcome, or the error the deploy ends with.
pub(super) async fn run(r: Rollout<'_>, reporter: &mut Reporter) -> anyhow::Result<Outcome> {
    let d = r.plan.deploy.as_ref().expect("a deploy plan");
    let kube = d
        .kubernetes
        .as_ref()
        .expect("steps::commits requires the Kubernetes settings");
    let (target, file, branch) = (r.target, r.target.file, r.target.branch);
    let mut change = r.change;
    let smokes = crate::serve::verify::load(r.env.workspace, &d.smoke)?;
    let mut check = StepCheck::open(
        kube,
        r.env.env,
        &d.endpoint,
        Version {
            id: change.version.clone(),
            image: change.image(),
            protocol: d.protocol,
            model_name: d.registry.model_name.clone(),
        },
        smokes,
    )
    .await?;

    // A first version has nothing to split the traffic with (KServe gives the
    // only revision all of it, as the KServe backend's first deploy does):
    // one commit, the promotion, verified the same way.
    let mut commits = r.commits;
    if check.is_new() && commits.len() > 1 {
        reporter.info(&format!(
            "InferenceService {}/{} does not exist yet: its first version takes all the traffic, so `{}` is one commit",
            kube.namespace, d.endpoint, d.strategy
        ));
        commits = vec![*commits.last().expect("at least the promotion")];
    }

    // A re-run after a finished rollout: the file already holds the promoted version.
    let current = r.repo.read(file, branch).await.map_err(|e| {
        UserError::failed(format!(
            "reading `{file}` from {} (branch `{branch}`): {e}",
            r.g.repo
        ))
    })?;
    change.traffic = *commits.last().expect("at least the promotion");
    let done = current
        .as_ref()
        .map(|c| r.editor.edit(file, Some(&c.text), &change))
        .transpose()?;
    if done == Some(Edited::Unchanged) {
        reporter.info(&format!(
            "{}@{branch}:{file} already deploys {} ({}), promoted: nothing committed",
            r.g.repo,
            change.version,
            change.image()
        ));
        reporter.add_summary(&format!(
            "### GitOps deploy of `{}` {}: nothing to commit\n\n`{file}` in `{}` (branch `{branch}`) already holds `{}`, promoted.\n",
            change.model, change.version, r.g.repo, change.image()
        ));
        r.gh.finish(
            State::InProgress,
            "already in the manifests repository: nothing committed",
            None,
            reporter,
        )
        .await;
        return Ok(Outcome::Submitted);
    }

    let timeout = d.ready_timeout.0;
    let mut shas: Vec<String> = Vec::new();
    let mut before: Option<Option<String>> = None;
    let mut after = String::new();
    let mut rows = String::new();
    let n = commits.len();
    for (i, traffic) in commits.iter().copied().enumerate() {
        let last = i + 1 == n;
        let name = step_name(traffic, last);
        change.traffic = traffic;
        let msg = message(r.plan, &change, &d.environment).replacen(
            "\n\n",
            &format!(" ({}: {name})\n\n", d.strategy),
            1,
        );
        let sha = match commit::commit_change(r.repo, r.editor, target, &change, &msg).await? {
            Committed::Unchanged => {
                reporter.info(&format!(
                    "step {}/{n} ({name}): {file} already says so; nothing committed",
                    i + 1
                ));
                None
            }
            Committed::Commit {
                sha,
                changes,
                before: b,
                after: a,
                ..
            } => {
                reporter.info(&format!(
                    "step {}/{n} ({name}): committed {} to {}@{branch}: {}",
                    i + 1,
                    short(&sha),
                    r.g.repo,
                    changes.join("; ")
                ));
                before.get_or_insert(b);
                after = a;
                shas.push(sha.clone());
                reporter.set_output("gitops-commit", sha.clone());
                Some(sha)
            }
        };
        let failure = match &sha {
            Some(sha) => match follow::follow(
                &mut r.follow.argo,
                r.repo,
                &r.follow.app,
                sha,
                timeout,
                r.follow.cooldown,
                r.follow.poll,
                |l| reporter.info(l),
            )
            .await
            .map_err(UserError::failed)?
            {
                Followed::Healthy { .. } => None,
                Followed::Failed(why) => Some((why, Outcome::Failed)),
                Followed::TimedOut(l) => Some((
                    format!(
                        "Argo CD did not report {} synced and Healthy within {} (ready-timeout); last: {l}",
                        short(sha),
                        humantime::format_duration(timeout)
                    ),
                    Outcome::TimedOut,
                )),
            },
            None => None,
        };
        let failure = match failure {
            Some(f) => Some(f),
            None => match check
                .verify(traffic, timeout, r.follow.poll, |l| reporter.info(l))
                .await?
            {
                Ok(seen) => {
                    let smoke = if seen.smoke.is_empty() {
                        "no smoke tests configured".to_string()
                    } else {
                        seen.smoke
                            .iter()
                            .map(|s| format!("{} {} ({:.0} ms)", s.name, s.status, s.latency_ms))
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    reporter.info(&format!(
                        "step {}/{n} ({name}) verified: Argo CD Healthy, revision {} takes {}% of the traffic; smoke: {smoke}",
                        i + 1,
                        seen.revision,
                        seen.weight
                    ));
                    rows.push_str(&format!(
                        "| {} | {name} | `{}` | {}% | {smoke} |\n",
                        i + 1,
                        sha.as_deref().map_or("(unchanged)", short),
                        seen.weight
                    ));
                    None
                }
                Err(why) => Some((why, Outcome::Failed)),
            },
        };
        if let Some((why, outcome)) = failure {
            if !rows.is_empty() {
                reporter.add_summary(&steps_table(&change, &rows));
            }
            return roll_back(
                Undo {
                    repo: r.repo,
                    target,
                    follow: r.follow,
                    change: &change,
                    environment: &d.environment,
                    timeout,
                    commits: &shas,
                    before: before.unwrap_or(None),
                    after,
                    merged: false,
                },
                format!("step {}/{n} ({name}): {why}", i + 1),
                outcome,
                r.gh,
                reporter,
            )
            .await;
        }
        if !last {
            let hold = d.interval.0;
            reporter.info(&format!(
                "holding {name} for {} (deploy.interval)",
                humantime::format_duration(hold)
            ));
            tokio::time::sleep(hold).await;
        }
    }
    reporter.add_summary(&steps_table(&change, &rows));
    r.gh.finish(
        State::Success,
        &format!(
            "{} promoted by {} commits, each synced by Argo CD, Healthy and smoke-tested",
            change.version,
            shas.len()
        ),
        r.g.argocd
            .as_ref()
            .map(crate::config::gitops::ArgocdConfig::app_url)
            .as_deref(),
        reporter,
    )
    .await;
    Ok(Outcome::Succeeded)
}

fn steps_table(change: &Change, rows: &str) -> String {
    format!(
        "### GitOps rollout of `{}` {} by commits\n\n| step | | commit | traffic (as KServe routes it) | smoke |\n|---|---|---|---|---|\n{rows}\n",
        change.model, change.version
    )
}
