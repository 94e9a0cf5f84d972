//! The end of a GitOps deploy whose manifests hold an Argo Rollouts Rollout
//! (`deploy.gitops.rollout`): after the commit, wait for Argo CD to sync it,
//! then follow the Rollout's own status ([`super::argo_rollout`]) bounded by
//! ready-timeout. Healthy → done; Degraded or aborted, or the timeout → the
//! revert commit of [`super::deploy::roll_back`]; paused until a person
//! promotes it → stop at once with the command that promotes it (exit 0,
//! status `submitted`: not deployed yet, not failed either).

use std::time::Instant;

use super::argo_rollout::{self, Outcome as Seen, RolloutWatch};
use super::commit::Target;
use super::deploy::{roll_back, short, Follow, Undo};
use super::edit::Change;
use super::follow::{self, Followed};
use super::github::Repo;
use crate::config::gitops::GitopsConfig;
use crate::error::{Outcome, UserError};
use crate::modes::deploy::GitHub;
use crate::modes::ModeEnv;
use crate::plan::Plan;
use crate::report::deployments::State;
use crate::report::Reporter;

/// mlcd's commit in this run: its sha and the file before and after it.
pub(super) struct Commit {
    pub(super) sha: String,
    pub(super) before: Option<String>,
    pub(super) after: String,
}

/// One deploy of a Rollout, after the commit (or with nothing to commit).
pub(super) struct RolloutDeploy<'a> {
    pub(super) plan: &'a Plan,
    pub(super) g: &'a GitopsConfig,
    pub(super) env: &'a ModeEnv<'a>,
    pub(super) repo: &'a mut Repo,
    pub(super) target: &'a Target<'a>,
    pub(super) change: &'a Change,
    pub(super) follow: &'a mut Follow,
    pub(super) gh: &'a mut GitHub,
    /// The Rollout's name.
    pub(super) name: &'a str,
    /// `None`: the file already held the version (a re-run, e.g. after a promote).
    pub(super) commit: Option<Commit>,
    /// The change came through a merged pull request.
    pub(super) merged: bool,
}

/// Follows the Rollout; the outcome or the error the deploy ends with.
pub(super) async fn run(r: RolloutDeploy<'_>, reporter: &mut Reporter) -> anyhow::Result<Outcome> {
    let d = r.plan.deploy.as_ref().expect("a deploy plan");
    let kube = d
        .kubernetes
        .as_ref()
        .expect("deploy::commits requires the Kubernetes settings with a Rollout");
    let timeout = d.ready_timeout.0;
    let start = Instant::now();
    let watch = RolloutWatch::open(kube, r.env.env, r.name).await?;
    let image = r.change.image();
    let (app, poll, cooldown) = (r.follow.app.clone(), r.follow.poll, r.follow.cooldown);

    if let Some(c) = &r.commit {
        let synced = follow::follow_synced(
            &mut r.follow.argo,
            r.repo,
            &app,
            &c.sha,
            timeout,
            poll,
            |l| reporter.info(l),
        )
        .await
        .map_err(UserError::failed)?;
        let failed = match synced {
            Followed::Healthy { .. } => None,
            Followed::Failed(why) => Some((why, Outcome::Failed)),
            Followed::TimedOut(l) => Some((
                format!(
                    "Argo CD did not sync {} within {} (ready-timeout); last: {l}",
                    short(&c.sha),
                    humantime::format_duration(timeout)
                ),
                Outcome::TimedOut,
            )),
        };
        if let Some((why, outcome)) = failed {
            return undo(r, why, outcome, reporter).await;
        }
        reporter.info(&format!(
            "Argo CD synced {}; following Rollout {}/{} on the cluster",
            short(&c.sha),
            watch.namespace,
            watch.name
        ));
    } else {
        reporter.info(&format!(
            "nothing to commit: following Rollout {}/{} on the cluster as it is",
            watch.namespace, watch.name
        ));
    }

    let left = timeout.saturating_sub(start.elapsed());
    let seen = watch
        .follow(&image, left, cooldown, poll, |l| reporter.info(l))
        .await?;
    match seen {
        Seen::Healthy(trail) => {
            reporter.info(&format!(
                "Rollout {}/{}: {} is stable and Healthy, held for {}s; done",
                watch.namespace,
                watch.name,
                r.change.version,
                cooldown.as_secs()
            ));
            reporter.add_summary(&format!(
                "Rollout `{}/{}`: **Healthy** at {}.\n\n{}",
                watch.namespace,
                watch.name,
                r.change.version,
                argo_rollout::trail_table(r.name, &trail)
            ));
            r.gh.finish(
                State::Success,
                &format!("Rollout {} Healthy at {}", r.name, r.change.version),
                r.g.argocd
                    .as_ref()
                    .map(crate::config::gitops::ArgocdConfig::app_url)
                    .as_deref(),
                reporter,
            )
            .await;
            Ok(Outcome::Succeeded)
        }
        Seen::Human(pos, trail) => {
            let promote = watch.promote_command();
            let msg = format!(
                "Rollout {}/{} is paused at step {}/{} ({}) with the canary at {}%: a pause without a duration waits for a person, so mlcd stops here instead of waiting out the ready-timeout. Promote it with `{promote}` (or abort it with `kubectl argo rollouts abort {} -n {}`), then run this deploy again: it commits nothing and follows the Rollout to Healthy",
                watch.namespace,
                watch.name,
                pos.step,
                pos.of,
                pos.what,
                pos.weight,
                watch.name,
                watch.namespace
            );
            reporter.warn(msg.clone());
            reporter.add_summary(&format!(
                "Rollout `{}/{}`: **paused, waiting for a person** at step {}/{} (canary {}%). Not deployed yet and not failed: promote it with `{promote}`, then run the deploy again.\n\n{}",
                watch.namespace,
                watch.name,
                pos.step,
                pos.of,
                pos.weight,
                argo_rollout::trail_table(r.name, &trail)
            ));
            r.gh.finish(
                State::InProgress,
                &format!(
                    "paused at step {}/{} ({}%): `{promote}`",
                    pos.step, pos.of, pos.weight
                ),
                None,
                reporter,
            )
            .await;
            Ok(Outcome::Submitted)
        }
        Seen::Failed(why, trail) => {
            reporter.add_summary(&argo_rollout::trail_table(r.name, &trail));
            let why = format!("Rollout {}/{}: {why}", watch.namespace, watch.name);
            undo(r, why, Outcome::Failed, reporter).await
        }
        Seen::TimedOut(last, trail) => {
            reporter.add_summary(&argo_rollout::trail_table(r.name, &trail));
            let why = format!(
                "Rollout {}/{} was not Healthy at {} within {} (ready-timeout); last: {last}",
                watch.namespace,
                watch.name,
                r.change.version,
                humantime::format_duration(timeout)
            );
            undo(r, why, Outcome::TimedOut, reporter).await
        }
    }
}

/// The revert of this run's commit, or (nothing committed in this run) the
/// error saying which commit to revert.
async fn undo(
    r: RolloutDeploy<'_>,
    why: String,
    outcome: Outcome,
    reporter: &mut Reporter,
) -> anyhow::Result<Outcome> {
    let d = r.plan.deploy.as_ref().expect("a deploy plan");
    let Some(c) = r.commit else {
        r.gh.finish(State::Failure, &why, None, reporter).await;
        return Err(UserError::new(
            outcome,
            format!("{why}; this run committed nothing (the file already held {}), so it reverts nothing", r.change.version),
        )
        .hint("revert the commit that deployed it in the manifests repository (Argo CD refuses its own rollback while auto-sync is on)")
        .into());
    };
    roll_back(
        Undo {
            repo: r.repo,
            target: r.target,
            follow: r.follow,
            change: r.change,
            environment: &d.environment,
            timeout: d.ready_timeout.0,
            commits: std::slice::from_ref(&c.sha),
            before: c.before,
            after: c.after,
            merged: r.merged,
        },
        why,
        outcome,
        r.gh,
        reporter,
    )
    .await
}
